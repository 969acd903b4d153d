"""Steps the dApp's browser tests share: bounded waits on the page's test ids, form filling, and
the chain's own figures to compare the page's with (read over the network's RPC with web3)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from computenet.localnet import wait_until

T = TypeVar("T")
POLL_S = 0.2
REJECTED = "You rejected the request in your wallet"
WALLET_JS = (Path(__file__).parent / "wallet.js").read_text()


def poll(condition: Callable[[], T], timeout: float, what: str, describe: Callable[[], str] = lambda: "") -> T:
    """wait_until's bounded poll as a test failure naming `what`, with what the page says then."""
    try:
        return wait_until(condition, timeout, what, POLL_S)
    except TimeoutError as error:
        raise AssertionError(f"{error}. {describe()}") from None


def text_of(page: Any, testid: str) -> str:
    element = page.get_by_test_id(testid)
    return element.first.inner_text() if element.count() else ""


def status_of(page: Any) -> str:
    return f"status {text_of(page, 'status')!r}, error {text_of(page, 'error')!r}"


def expect_text(page: Any, testid: str, text: str, *, lower: bool = False, timeout: float = 20) -> str:
    """Waits (bounded) until [data-testid=testid] contains `text`; returns its whole text."""

    def shows() -> str:
        seen = text_of(page, testid)
        return seen if text in (seen.lower() if lower else seen) else ""

    return poll(shows, timeout, f"[data-testid={testid}] showing {text!r}", lambda: status_of(page))


def fill(page: Any, values: dict[str, Any]) -> None:
    """Fills each input (or picks each option of a select) by test id."""
    for testid, value in values.items():
        element = page.get_by_test_id(testid)
        if element.evaluate("e => e.tagName") == "SELECT":
            element.select_option(str(value))
        else:
            element.fill(str(value))


def wait_number(page: Any, testid: str, timeout: float = 30) -> int:
    """Waits (bounded) until [data-testid=testid] shows a number; returns it."""
    shown = poll(
        lambda: any(ch.isdigit() for ch in text_of(page, testid)) and text_of(page, testid),
        timeout,
        f"a number in [data-testid={testid}]",
        lambda: status_of(page),
    )
    return number(shown)


def number(text: str) -> int:
    """The integer a page shows as base units ("1,234,000" or "1234000 units")."""
    digits = "".join(ch for ch in text.split("(")[0] if ch.isdigit())
    if not digits:
        raise AssertionError(f"no number in {text!r}")
    return int(digits)


def wallet_requests(page: Any, method: str | None = None) -> list[dict]:
    requests = page.evaluate("() => window.__wallet.requests")
    return [r for r in requests if method is None or r["method"] == method]


def events(net: Any, name: str, contract: str = "market", **filters: Any) -> list[dict]:
    """The `contract`'s (market, court, ...) `name` events since block 0, their args as dicts."""
    event = getattr(getattr(net.reader.calls, contract).events, name)()
    return [dict(log["args"]) for log in event.get_logs(from_block=0, argument_filters=filters or None)]


def skip_challenge_window(net: Any, seconds: int) -> None:
    """Moves anvil's clock past the results' challenge window (the market's minimum is a minute),
    so the keepers finalize within the test; the next interval-mined block carries the new time."""
    net.rpc("evm_increaseTime", [seconds])
    net.rpc("evm_mine", [])


def wallet_script(rpc_url: str, account: str, rpc_chain_id: int, **options: Any) -> str:
    """wallet.js with its configuration; options: chain_id (the chain it pretends to be on),
    reject_next (True or a method name), known_chains."""
    config = {"rpcUrl": rpc_url, "account": account, "rpcChainId": rpc_chain_id}
    config["chainId"] = options.get("chain_id", rpc_chain_id)
    if options.get("reject_next"):
        config["rejectNext"] = options["reject_next"]
    if options.get("known_chains") is not None:
        config["knownChains"] = list(options["known_chains"])
    return f"window.__walletConfig = {json.dumps(config)};\n{WALLET_JS}"


def open_page(browser: Any, net: Any, account: str | None, *, connect: bool = True, **wallet: Any) -> Any:
    """A fresh browser context on the dApp with the test wallet as `account` (None: no wallet);
    `connect` clicks connect and waits for the account to show. Returns the page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    if account is not None:
        page.add_init_script(script=wallet_script(net.rpc_url, account, net.chain_id, **wallet))
    page.goto(net.dapp_url)
    page.locator('body[data-ready="true"]').wait_for()  # the page has its config and is wired
    if connect and account is not None:
        page.get_by_test_id("connect").click()
        expect_text(page, "account", account.lower(), lower=True)
    return page
