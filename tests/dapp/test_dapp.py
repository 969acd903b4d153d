"""The dApp end to end in a real browser over the demo's whole network (anvil, Redis, Docker,
keepers, agents, facilitator, gateway): every flow is driven through the page's test ids with
the test wallet, and checked on the chain to the base unit. One file, so that one network
serves every test (make test gives each file to one worker)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from dapp_steps import (
    REJECTED,
    events,
    expect_text,
    fill,
    open_page,
    poll,
    skip_challenge_window,
    status_of,
    text_of,
    wait_number,
    wallet_requests,
    wallet_script,
)

from computenet.explain import PLAIN

# `make screenshots` refreshes the README's pictures (docs/img/); a plain run keeps them in /tmp,
# so `make test` leaves the tree as it found it.
IMG = Path(os.environ.get("COMPUTENET_SCREENSHOTS") or Path(tempfile.gettempdir()) / "computenet-dapp-screenshots")
CHALLENGE_WINDOW = 60  # demo/network.py's, the market's minimum
JOB_S = 150  # upload, x402 settlement, assignment, a container run, finalization, the refund payout
INPUT = b"hello from the browser\n"
# Upper-cases the uploaded file into /out, deterministic; it runs ~2 s so that the metered
# seconds, and so the provider's payment, are not zero.
COMMAND = (
    '["python3", "-c", "import pathlib, time; time.sleep(2.2); '
    "pathlib.Path('/out/upper.txt').write_bytes(pathlib.Path('/in/words.txt').read_bytes().upper())\"]"
)
JOB_FORM = {
    "job-command": COMMAND,
    "job-shards": 1,
    "job-replication": 1,
    "job-verification": "optimistic",
    "job-deadline-minutes": 60,
    "job-max-price": 20_000,  # base units per second, above every demo asset's price
    "job-max-seconds": 30,
    "job-min-vram": 0,
    "job-gpus": 0,
    "job-cpu-cores": 1,
    "job-memory": 256,
    "job-disk": 256,
}


def screenshot(page, name: str) -> None:
    """The view as it is now, into IMG (overwritten each run)."""
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / name), full_page=True)


def job_form(page, net, folder: Path, changes: dict | None = None) -> None:
    """Fills the client view's form for the upper-casing job (with `changes` to its fields) and
    uploads its one input file."""
    page.get_by_test_id("nav-client").click()
    (folder / "words.txt").write_bytes(INPUT)
    fill(page, {"job-image": net.info["image"], **JOB_FORM, **(changes or {})})
    page.get_by_test_id("job-inputs").set_input_files(str(folder / "words.txt"))
    page.get_by_test_id("quote-button").click()


def pay(page, net, button: str) -> int:
    """Clicks `button` (pay-x402 or pay-onchain); the id of the job it posts on chain."""
    jobs = net.reader.job_count()
    page.get_by_test_id(button).click()
    return poll(
        lambda: net.reader.job_count() > jobs and net.reader.job_count(),
        60,
        "the job on chain",
        lambda: status_of(page),
    )


def open_job(page, job: int) -> str:
    """Opens job-<id> from the page's list once it is listed there; the row's text then."""
    row = page.get_by_test_id(f"job-{job}").first
    poll(lambda: row.count() and row.is_visible(), 30, f"job-{job} in the page's list", lambda: status_of(page))
    listed = row.inner_text()
    row.click()
    return listed


def rejected(page, method: str, button: str) -> None:
    """The wallet rejects the next `method` request; `button` asks for it; the page says so."""
    page.evaluate(f"() => {{ window.__wallet.rejectNext = {json.dumps(method)}; }}")
    page.get_by_test_id(button).click()
    expect_text(page, "error", REJECTED)
    assert [r.get("rejected") for r in wallet_requests(page, method)] == [True]


def shard_states(page) -> list[str]:
    rows = page.locator('[data-testid^="shard-"]')
    return [rows.nth(i).inner_text().lower() for i in range(rows.count())]


def money(net, *accounts: str) -> dict[str, int]:
    """Token balances of `accounts` and the market, and the market's escrow and credits owed."""
    market = net.info["addresses"]["market"]
    figures = {a: net.token_balance(a) for a in (*accounts, market)}
    figures["owed"] = net.reader.calls.market.functions.owed().call()
    return figures


# ----------------------------------------------------------------- the served network


def test_the_serve_file_names_the_chains_own_accounts_and_contracts(demo_net):
    net = demo_net
    assert int(net.rpc("eth_chainId"), 16) == net.chain_id
    dev = [net.web3.to_checksum_address(a) for a in net.rpc("eth_accounts")]  # anvil signs for these
    entries = [e for role in net.info["accounts"].values() for e in (role if isinstance(role, list) else [role])]
    signed_here = [e for e in entries if e["index"] < len(dev)]
    assert len(signed_here) >= 8 and all(dev[e["index"]] == e["address"] for e in signed_here)
    for name, address in net.info["addresses"].items():
        assert net.web3.eth.get_code(address), f"no contract at {name} {address}"
    assert net.reader.calls.market.address == net.info["addresses"]["market"]
    assert net.reader.asset_count() >= len(net.info["assets"])


# ----------------------------------------------------------------- the test wallet itself

# What the flows below rely on the test wallet for, checked in a page the gateway serves, so a
# failure there is not blamed on the dApp.

DISCOVER = """() => new Promise((resolve) => {
    window.addEventListener("eip6963:announceProvider", (e) => resolve(e.detail.info), { once: true });
    window.dispatchEvent(new Event("eip6963:requestProvider"));
})"""

SWITCH = """async () => {
    const provider = window.__wallet.provider, seen = [];
    provider.on("chainChanged", (id) => seen.push(id));
    const before = await provider.request({ method: "eth_chainId" });
    const accountsBefore = await provider.request({ method: "eth_accounts" });
    const accounts = await provider.request({ method: "eth_requestAccounts" });
    await provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: "0x7a69" }] });
    return { before, accountsBefore, accounts, after: await provider.request({ method: "eth_chainId" }), seen };
}"""

SEND = """async ([from, to, value]) => {
    try {
        return { hash: await window.__wallet.provider.request({
            method: "eth_sendTransaction", params: [{ from, to, value }] }) };
    } catch (error) {
        return { code: error.code, message: error.message };
    }
}"""


def test_the_wallet_announces_itself_switches_chain_forwards_to_anvil_and_rejects_on_request(browser, demo_net):
    owner, treasury = demo_net.account("owner"), demo_net.account("treasury")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script(script=wallet_script(demo_net.rpc_url, owner, demo_net.chain_id, chain_id=1))
        page.goto(demo_net.info["gateway_url"] + "/health")

        info = page.evaluate(DISCOVER)
        assert info["name"] == "computenet test wallet" and info["rdns"] == "org.computenet.testwallet"
        assert info["icon"].startswith("data:image/svg+xml,") and len(info["uuid"]) == 36

        chain = page.evaluate(SWITCH)
        assert chain == {
            "before": "0x1",
            "accountsBefore": [],
            "accounts": [owner],
            "after": hex(demo_net.chain_id),
            "seen": [hex(demo_net.chain_id)],
        }

        before = demo_net.eth_balance(treasury)
        sent = page.evaluate(SEND, [owner, treasury, hex(12_345)])
        assert "hash" in sent, sent
        receipt = demo_net.web3.eth.wait_for_transaction_receipt(sent["hash"], timeout=15)
        assert receipt["status"] == 1 and receipt["from"] == owner
        assert demo_net.eth_balance(treasury) - before == 12_345

        page.evaluate("() => { window.__wallet.rejectNext = true; }")
        rejected = page.evaluate(SEND, [owner, treasury, hex(1)])
        assert rejected["code"] == 4001
        assert demo_net.eth_balance(treasury) - before == 12_345
        requests = page.evaluate("() => window.__wallet.requests")
        assert [r["method"] for r in requests][-2:] == ["eth_sendTransaction", "eth_sendTransaction"]
        assert requests[-1].get("rejected") is True and "rejected" not in requests[-2]
    finally:
        context.close()


# ----------------------------------------------------------------- the client's paid job


@pytest.fixture(scope="module")
def paid_job(browser, demo_net, tmp_path_factory):
    """A client with tokens and no ETH pays a one-shard job over x402 from the page and watches it
    to the end: finalized, refunded, outputs verified in the browser. The page stays open."""
    net = demo_net
    client = net.account("client")
    net.rpc("anvil_setBalance", [client, "0x0"])  # pays no gas: the facilitator posts the job
    before = money(net, client)

    page = open_page(browser, net, client)
    job_form(page, net, tmp_path_factory.mktemp("client"))
    quote = wait_number(page, "quote")
    job = pay(page, net, "pay-x402")
    listed = open_job(page, job)
    page.get_by_test_id("job-detail").wait_for()

    skipped = False

    def finished() -> bool:
        nonlocal skipped
        states = shard_states(page)
        if states and not skipped and all("submitted" in s for s in states):
            skip_challenge_window(net, CHALLENGE_WINDOW + 1)
            skipped = True
        return bool(states) and all("finalized" in s for s in states)

    poll(
        finished, JOB_S, f"job {job}'s shards finalized on the page", lambda: f"{shard_states(page)}; {status_of(page)}"
    )
    refund_shown = wait_number(page, "refund")
    # The facilitator pays an x402 payer's refund out of its credits (the payer has no gas).
    poll(lambda: events(net, "JobFinished", job=job) and net.reader.credits(client) == 0, 60, "the refund paid out")
    # The list of jobs follows the open job: its escrow is gone once it finished.
    row = page.get_by_test_id(f"job-{job}").first
    poll(lambda: "escrow 0, 0 unfinished" in row.inner_text(), 30, "the list of jobs up to date")

    page.get_by_test_id("verify-outputs").click()
    outputs = page.locator('[data-testid^="output-"]')
    poll(
        lambda: (
            outputs.count()
            and all(outputs.nth(i).get_attribute("data-verified") is not None for i in range(outputs.count()))
        ),
        30,
        "every output checked in the browser",
        lambda: status_of(page),
    )
    verified = {
        outputs.nth(i).get_attribute("data-testid"): outputs.nth(i).get_attribute("data-verified")
        for i in range(outputs.count())
    }
    screenshot(page, "dapp-client.png")
    yield SimpleNamespace(
        page=page,
        job=job,
        client=client,
        quote=quote,
        row=listed,
        refund_shown=refund_shown,
        verified=verified,
        before=before,
        after=money(net, client),
    )
    page.context.close()


def test_a_client_without_eth_pays_over_x402_watches_the_job_finish_and_verifies_its_outputs(paid_job, demo_net):
    net, job, client = demo_net, paid_job.job, paid_job.client
    [posted] = events(net, "JobPosted", job=job)
    [funded] = events(net, "JobFundedByAuthorization", "funder", job=job)
    [finished] = events(net, "JobFinished", job=job)
    assert posted["client"] == client and funded["payer"] == client
    assert paid_job.quote == posted["budget"]  # the page's quote is what the chain escrowed
    assert f"budget {posted['budget']}" in paid_job.row  # and its list of jobs says so
    assert paid_job.refund_shown == finished["refund"] > 0
    assert paid_job.after[client] - paid_job.before[client] == -(posted["budget"] - finished["refund"])
    assert net.eth_balance(client) == 0
    paid = sum(e["payment"] + e["keeper_fee"] + e["protocol_fee"] for e in events(net, "ShardFinalized", job=job))
    assert 0 < paid == posted["budget"] - finished["refund"]  # the client paid exactly for the work done
    assert paid_job.verified and set(paid_job.verified.values()) == {"true"}, paid_job.verified
    assert any(name.endswith("upper.txt") for name in paid_job.verified)
    assert net.reader.job(job).escrow == 0


# ----------------------------------------------------------------- the provider


PROVIDER_FORM = {
    "reg-gpu-model": 0,
    "reg-gpus": 0,
    "reg-vram": 0,
    "reg-cpu-cores": 6,
    "reg-memory": 16_384,
    "reg-disk": 40_000,
    "reg-region": 250,
    # Above every job's max price here: the keepers never lease this agent-less node.
    "reg-price": 90_000,
    "reg-max-leases": 3,
    "reg-agent": "0x000000000000000000000000000000000000a9e7",
    "reg-endpoint": "http://127.0.0.1:9/browser-node",
}
STAKE = 250 * 10**6  # base units


def test_a_provider_registers_a_node_from_the_page(open_dapp, demo_net):
    net = demo_net
    provider = net.account("providers", 0)
    before, count = net.token_balance(provider), net.reader.asset_count()
    page = open_dapp(provider)
    page.get_by_test_id("nav-provider").click()
    fill(page, {**PROVIDER_FORM, "reg-stake": STAKE})
    page.get_by_test_id("register").click()

    asset_id = poll(
        lambda: net.reader.asset_count() > count and net.reader.asset_count(),
        60,
        "the new asset on chain",
        lambda: status_of(page),
    )
    asset = net.reader.asset(asset_id)
    assert asset.owner == provider
    assert asset.agent.lower() == PROVIDER_FORM["reg-agent"]
    assert asset.endpoint == PROVIDER_FORM["reg-endpoint"]
    spec = asset.spec
    assert (spec.gpu_model, spec.gpu_count, spec.vram_mib, spec.cpu_cores) == (0, 0, 0, 6)
    assert (spec.memory_mib, spec.disk_mib) == (16_384, 40_000)
    assert (spec.region, spec.price, spec.max_leases, spec.active) == (250, 90_000, 3, True)
    poll(lambda: net.reader.stake(asset_id).amount == STAKE, 30, "the stake on chain", lambda: status_of(page))
    assert before - net.token_balance(provider) == STAKE

    row = page.get_by_test_id(f"asset-{asset_id}")
    poll(lambda: row.count(), 30, f"asset-{asset_id} in the page's list", lambda: status_of(page))
    shown = {f: row.locator(f'[data-field="{f}"]').inner_text() for f in ("price", "endpoint", "stake")}
    assert shown == {"price": "90000", "endpoint": PROVIDER_FORM["reg-endpoint"], "stake": str(STAKE)}
    screenshot(page, "dapp-provider.png")


def test_a_rejected_register_transaction_registers_nothing_and_moves_nothing(open_dapp, demo_net):
    net = demo_net
    provider = net.account("providers", 1)
    page = open_dapp(provider)
    page.get_by_test_id("nav-provider").click()
    fill(page, {**PROVIDER_FORM, "reg-stake": STAKE})
    before, count = money(net, provider), net.reader.asset_count()
    rejected(page, "eth_sendTransaction", "register")
    assert net.reader.asset_count() == count
    assert money(net, provider) == before


def test_a_provider_changes_price_and_endpoint_and_withdraws_its_earnings(paid_job, open_dapp, demo_net):
    """The owner of the asset that ran the paid job: its new price and endpoint land on chain,
    and its earnings (credited at finalization) come out to its wallet to the base unit."""
    net = demo_net
    [finalized] = events(net, "ShardFinalized", job=paid_job.job)
    [assigned] = events(net, "ShardAssigned", job=paid_job.job)
    asset = assigned["asset"]
    owner = net.reader.asset(asset).owner
    earned = net.reader.credits(owner)
    assert earned >= finalized["payment"] > 0
    page = open_dapp(owner)
    page.get_by_test_id("nav-provider").click()
    row = page.get_by_test_id(f"asset-{asset}")
    poll(lambda: row.count(), 30, f"asset-{asset} in the page's list", lambda: status_of(page))
    old = net.reader.asset(asset)

    def change(field: str, value: str, on_chain) -> None:
        """Enters `value` in the asset's `field` box; waits for the chain and for the row redrawn
        with it (a box filled before the redraw would be replaced under the test)."""
        page.get_by_test_id(f"set-{field}-{asset}").fill(value)
        page.get_by_test_id(f"set-{field}-{asset}-submit").click()
        poll(lambda: on_chain() == value, 30, f"the new {field} on chain", lambda: status_of(page))
        cell = row.locator(f'[data-field="{field}"]')
        poll(lambda: cell.inner_text() == value, 30, f"the new {field} on the page", lambda: status_of(page))

    change("price", str(old.spec.price + 1), lambda: str(net.reader.asset(asset).spec.price))
    # The same endpoint written back: the asset's agent keeps serving its keepers at it.
    change("endpoint", old.endpoint + "/", lambda: net.reader.asset(asset).endpoint)
    change("endpoint", old.endpoint, lambda: net.reader.asset(asset).endpoint)
    # An empty endpoint is refused on the page: it would take the asset out of work by a slip.
    page.get_by_test_id(f"set-endpoint-{asset}").fill("")
    page.get_by_test_id(f"set-endpoint-{asset}-submit").click()
    expect_text(page, "error", "endpoint: your agent's http(s) URL")
    assert net.reader.asset(asset).endpoint == old.endpoint

    expect_text(page, "provider-credits", str(earned))
    before = net.token_balance(owner)
    page.get_by_test_id("provider-withdraw").click()
    poll(lambda: net.reader.credits(owner) == 0, 30, "the credits withdrawn", lambda: status_of(page))
    assert net.token_balance(owner) - before == earned


def test_a_client_pays_on_chain_with_a_permit_and_cancels_a_job_no_asset_takes(open_dapp, demo_net, tmp_path):
    """A job priced below every asset waits, saying why; its client, out of ETH by then,
    cancels it from the page with a signature the gateway relays, and withdraws every base
    unit of its budget once it has gas again."""
    net = demo_net
    client = net.account("providers", 1)  # an account with tokens and ETH that runs no agent
    page = open_dapp(client)
    job_form(page, net, tmp_path, {"job-max-price": 1})
    budget = wait_number(page, "quote")
    before = net.token_balance(client)
    job = pay(page, net, "pay-onchain")
    [posted] = events(net, "JobPosted", job=job)
    assert posted["client"] == client and posted["budget"] == budget
    assert before - net.token_balance(client) == budget
    assert [r["method"] for r in wallet_requests(page, "eth_signTypedData_v4")] == ["eth_signTypedData_v4"]  # permit

    open_job(page, job)
    expect_text(page, "shard-0", "no eligible asset")

    gas = net.eth_balance(client)
    net.rpc("anvil_setBalance", [client, "0x0"])
    sent = len(wallet_requests(page, "eth_sendTransaction"))
    page.get_by_test_id("cancel-0").click()
    poll(lambda: events(net, "JobFinished", job=job), 30, "the job cancelled", lambda: status_of(page))
    [finished] = events(net, "JobFinished", job=job)
    assert finished["refund"] == budget and net.reader.credits(client) == budget
    assert wait_number(page, "refund") == budget
    signed = wallet_requests(page, "eth_signTypedData_v4")
    assert len(signed) == 2 and "CancelShard" in json.dumps(signed[-1])  # the cancel, signed, not sent
    assert len(wallet_requests(page, "eth_sendTransaction")) == sent and net.eth_balance(client) == 0

    net.rpc("anvil_setBalance", [client, hex(gas)])
    # Cancelling again: the page simulates the call and says why in plain words, before any wallet prompt.
    page.get_by_test_id("cancel-0").click()
    expect_text(page, "error", PLAIN["job_market: nothing to cancel"])
    assert len(wallet_requests(page, "eth_sendTransaction")) == sent
    expect_text(page, "client-credits", str(budget))
    page.get_by_test_id("withdraw-credits").click()
    poll(lambda: net.reader.credits(client) == 0, 30, "the refund withdrawn", lambda: status_of(page))
    assert net.token_balance(client) == before  # every base unit of the budget back


# ----------------------------------------------------------------- rejection, chain


def test_a_rejected_x402_signature_posts_no_job_and_moves_no_money(open_dapp, demo_net, tmp_path):
    net = demo_net
    client = net.account("client")
    page = open_dapp(client)
    job_form(page, net, tmp_path)
    wait_number(page, "quote")
    before, jobs = money(net, client), net.reader.job_count()
    rejected(page, "eth_signTypedData_v4", "pay-x402")
    assert net.reader.job_count() == jobs
    assert money(net, client) == before


@pytest.mark.parametrize("wallet_knows_the_chain", [True, False], ids=["switch", "add-then-switch"])
def test_a_wallet_on_the_wrong_chain_is_asked_to_switch(open_dapp, demo_net, wallet_knows_the_chain):
    net = demo_net
    known = [1, net.chain_id] if wallet_knows_the_chain else [1]
    page = open_dapp(net.account("owner"), connect=False, chain_id=1, known_chains=known)
    page.get_by_test_id("connect").click()

    expect_text(page, "chain", str(net.chain_id))
    switches = wallet_requests(page, "wallet_switchEthereumChain")
    assert switches[0]["params"] == [{"chainId": hex(net.chain_id)}]
    added = wallet_requests(page, "wallet_addEthereumChain")
    if wallet_knows_the_chain:
        assert added == []
    else:
        assert switches[0]["error"]["code"] == 4902
        assert [int(a["params"][0]["chainId"], 16) for a in added] == [net.chain_id]
        assert added[0]["params"][0]["rpcUrls"] == [net.rpc_url]
    assert page.evaluate("() => window.__wallet.chainId") == net.chain_id
    assert text_of(page, "wallet-name") == "computenet test wallet"
    assert text_of(page, "error").strip() == ""


# ----------------------------------------------------------------- audit


def test_the_audit_view_totals_equal_the_chains_balances(paid_job, open_dapp, demo_net):
    net = demo_net
    page = open_dapp(None)  # the audit view needs no wallet
    page.get_by_test_id("nav-audit").click()
    page.get_by_test_id(f"audit-job-{paid_job.job}").wait_for()
    totals = page.get_by_test_id("audit-totals")
    shown = {
        key: int(totals.get_attribute(f"data-{key}"))
        for key in ("escrowed", "paid", "fees", "refunded", "held", "market-balance")
    }

    finalized = events(net, "ShardFinalized")
    market = net.info["addresses"]["market"]
    assert shown == {
        "escrowed": sum(e["budget"] for e in events(net, "JobPosted")),
        "paid": sum(e["payment"] for e in finalized),
        "fees": sum(e["keeper_fee"] + e["protocol_fee"] for e in finalized),
        "refunded": sum(e["refund"] for e in events(net, "JobFinished")),
        "held": sum(net.reader.job(j).escrow for j in range(1, net.reader.job_count() + 1)),
        "market-balance": net.token_balance(market),
    }
    assert shown["escrowed"] == shown["paid"] + shown["fees"] + shown["refunded"] + shown["held"]
    # No dispute here, so no bond or surplus: every token the market holds is escrow or owed credit.
    assert shown["market-balance"] == shown["held"] + net.reader.calls.market.functions.owed().call()
    lines = page.get_by_test_id(f"audit-job-{paid_job.job}").locator("[data-tx]")
    assert lines.count() >= 3  # escrowed, paid, fees, refund: each linked to its transaction
    for i in range(lines.count()):
        assert net.web3.eth.get_transaction_receipt(lines.nth(i).get_attribute("data-tx"))["status"] == 1
    screenshot(page, "dapp-audit.png")


# ----------------------------------------------------------------- a challenge (last: it leaves a ruling under way)


def test_a_client_challenges_a_result_from_the_page_and_the_arbiter_rules(open_dapp, demo_net, tmp_path):
    """A result inside its challenge window is challenged from the page: the bond is approved and
    posted, the market opens the dispute, and the facilitator's arbiter re-runs the shard and
    rules. The result was right, so the bond goes to the provider accused."""
    net = demo_net
    client = net.account("client")
    net.rpc("anvil_setBalance", [client, hex(10**19)])  # this time it sends its own transactions
    page = open_dapp(client)
    job_form(page, net, tmp_path)
    budget = wait_number(page, "quote")
    job = pay(page, net, "pay-onchain")
    assert events(net, "JobPosted", job=job)[0]["budget"] == budget
    open_job(page, job)
    expect_text(page, "shard-0", "submitted", timeout=JOB_S)

    before = net.token_balance(client)
    page.get_by_test_id("challenge-0").click()
    poll(lambda: events(net, "DisputeOpened", job=job), 30, "the dispute opened", lambda: status_of(page))
    [opened] = events(net, "DisputeOpened", job=job)
    assert opened["challenger"] == client and opened["bond"] > 0
    assert before - net.token_balance(client) == opened["bond"]

    [ruled] = poll(lambda: events(net, "DisputeResolved", job=job), 120, "the arbiter's ruling")
    [settled] = events(net, "DisputeSettled", "court", job=job)
    assert ruled["rejected_replicas"] == 0  # the result was right
    assert int(settled["arbiter"], 16) != 0  # ruled by the arbiter, not by the deadline's default
    assert settled["challenger"] == client and settled["bond_returned"] is False and settled["slashed"] == 0
    assert net.token_balance(client) == before - opened["bond"]  # the bond went to the accused


def test_a_zk_jobs_shard_shows_proven_on_the_page(open_dapp, demo_net):
    """A zk job posted on chain (the example model registered with its verifier, the manifest
    bound, then posted): an agent proves its shard, the registry finalizes it at once, and the
    page shows the shard's result as proven."""
    from computenet import zk
    from computenet.domain import Requirements, Verification
    from computenet.manifest import build_manifest, canonical_json
    from computenet.store import StoreClient

    blobs = zk.ModelArtifacts.load(zk.EXAMPLE_MODEL)  # not the session fixture: ape would rebase isolation
    net, w3 = demo_net, demo_net.web3
    client = net.account("client")
    net.rpc("anvil_setBalance", [client, hex(10**19)])
    contracts = net.reader.calls

    def send(call):
        receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": client}))
        assert receipt["status"] == 1
        return receipt

    model = net.reader.zk_model_id(blobs)
    if not net.reader.zk_model(model).registered:
        deployed = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_transaction({"from": client, "data": "0x" + blobs.verifier_initcode().hex()})
        )
        args = (blobs.artifact_hash, deployed["contractAddress"], blobs.input_words, blobs.output_words)
        send(contracts.models.functions.register_model(*args))
    words = zk.quantize(blobs.samples()[0]["x"], blobs.input_scale)
    files = {zk.input_path(0): zk.encode_words(words)}
    manifest = build_manifest(
        net.info["image"], ["python3", "-c", "print(1)"], files, timeout_seconds=15, max_output_bytes=1 << 20
    )
    store = StoreClient(net.info["store_url"])
    raw = canonical_json(manifest)
    for data in (*files.values(), raw):
        store.put(data)
    digest = w3.keccak(raw)
    send(contracts.models.functions.bind(digest, model, bytes.fromhex(manifest.inputs.root[2:])))
    deadline = w3.eth.get_block("latest")["timestamp"] + 3_600
    req = Requirements(0, 0, 20_000, 30, deadline, verification=Verification.ZK)
    send(contracts.token.functions.approve(net.info["addresses"]["market"], net.reader.quote(req)))
    send(contracts.market.functions.post_job(digest, req.as_tuple()))
    job = net.reader.job_count()

    poll(lambda: (0, 0) in net.reader.proven(job), JOB_S, f"job {job}'s shard proven")
    page = open_dapp(client)
    open_job(page, job)
    expect_text(page, "shard-0", "proven")
