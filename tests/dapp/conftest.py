"""The dApp's browser tests run over the demo's whole network, started once per session as its
own process (`python -m demo --serve`, its own anvil, Redis, Docker engine, agents, keepers,
facilitator and gateway), and drive the page in Debian's chromium with the test wallet
(wallet.js) injected before the page loads. The network is reached over its own RPC URL with
web3, not through ape's `chain` (that is ape's separate test anvil)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dapp_steps import open_page
from served_demo import served_demo

CHROMIUM = "/usr/bin/chromium"


@dataclass
class DemoNet:
    """The running network as its --serve file describes it, with a web3 and the SDK's reader on it."""

    info: dict[str, Any]
    web3: Any
    reader: Any  # computenet.market.Market over web3

    @property
    def dapp_url(self) -> str:
        return self.info["dapp_url"]

    @property
    def rpc_url(self) -> str:
        return self.info["rpc_url"]

    @property
    def chain_id(self) -> int:
        return int(self.info["chain_id"])

    def account(self, role: str, which: int = 0) -> str:
        entry = self.info["accounts"][role]
        return (entry[which] if isinstance(entry, list) else entry)["address"]

    def rpc(self, method: str, params: list | None = None) -> Any:
        return self.web3.provider.make_request(method, params or [])["result"]

    def token_balance(self, address: str) -> int:
        return self.reader.balance(address)

    def eth_balance(self, address: str) -> int:
        return int(self.web3.eth.get_balance(address))


def demo_net_over(info: dict[str, Any]) -> DemoNet:
    from web3 import Web3

    from computenet.market import Market

    web3 = Web3(Web3.HTTPProvider(info["rpc_url"], request_kwargs={"timeout": 30}))
    return DemoNet(info, web3, Market.over_web3(web3, info["addresses"]["market"]))


@pytest.fixture(scope="module")
def demo_net(tmp_path_factory) -> Iterator[DemoNet]:
    """The demo network for the module's tests, stopped after them (not left running beside
    the rest of a test worker's files); COMPUTENET_DAPP_TEST_NETWORK=<serve file> reuses one
    already started with `python -m demo --serve <file>` (left running afterwards)."""
    if reuse := os.environ.get("COMPUTENET_DAPP_TEST_NETWORK"):
        yield demo_net_over(json.loads(Path(reuse).read_text()))
        return
    with served_demo(tmp_path_factory.mktemp("dapp-net")) as info:
        yield demo_net_over(info)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
        pytest.fail(f"{CHROMIUM} not found: `make test` installs chromium (Debian's package)")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium's sandbox refuses to run as root
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def open_dapp(browser, demo_net):
    """A factory of dApp pages (open_page's arguments, less the browser and the network); every
    context it opened is closed after the test."""
    pages = []

    def open_(account: str | None = None, **options: Any) -> Any:
        pages.append(open_page(browser, demo_net, account, **options))
        return pages[-1]

    yield open_
    for page in pages:
        page.context.close()
