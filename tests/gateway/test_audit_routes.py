"""The audit routes over a real chain and a real HTTP server.

One run of the market: a job finalized on one shard while its other shard's lease expires,
is reclaimed (the lazy asset slashed to the treasury) and cancelled; a job whose wrong
result a challenger proves (reward, the treasury's share, the bond back) and which is then
run again and paid; a job whose challenger is wrong (the bond forfeited to the provider); a
job left open; a withdrawal and a stray transfer to the market. The
served ledger must list every line with its transaction, reconcile each job against its
escrow on chain, and split the market's token balance into escrow, credits (each equal to
the market's `credits`), bonds and surplus, to the base unit.
"""

import pytest
import requests
from eth_utils import keccak
from fastapi import FastAPI
from web3 import Web3

from computenet.domain import settle_amounts
from computenet.eip3009 import TransferAuthorization, random_nonce, split
from computenet.localnet import ServedApp
from computenet.market import Market
from gateway.audit_routes import audit_routes

TOKEN = 10**6
STAKE = 1_000 * TOKEN
GOOD = keccak(b"honest outputs")
BAD = keccak(b"forged outputs")
MANIFEST = keccak(b"manifest")
STRAY = 7  # base units sent to the market by hand: owed to no one


@pytest.fixture
def served(chain, stack):
    api = FastAPI()
    audit_routes(api, Market.over_web3(Web3(Web3.HTTPProvider(chain.provider.uri)), stack.market.address))
    app = ServedApp(api)
    yield app.url
    app.stop()


def tx_of(receipt):
    return str(receipt.txn_hash).lower()


def lines_of(job):
    """(kind, account, amount, asset, shard, replica, gpu_seconds, price, detail, transaction) per line."""
    keys = ("kind", "account", "amount", "asset", "shard", "replica", "gpu_seconds", "price", "detail")
    return [tuple(x[k] for k in keys) + (x["transaction"].lower(),) for x in job["lines"]]


@pytest.mark.usefixtures("registered_keeper")
def test_the_served_ledger_lists_every_line_and_reconciles_with_the_chain(
    chain,
    served,
    token,
    market,
    court,
    assets,
    params,
    make_requirements,
    register_asset,
    submit,
    client,
    provider,
    provider2,
    keeper,
    keeper2,
    verifier,
    facilitator,
    treasury,
    stranger,
    agents,
):
    fair = register_asset(owner=provider, agent_account=agents[0], price=100)
    lazy = register_asset(owner=provider, agent_account=agents[2], price=120)
    cheat_stake = STAKE // 2 + 123  # so that neither the slash nor its tenth is round
    cheat = register_asset(owner=provider2, agent_account=agents[1], price=150, stake=cheat_stake)

    def post(**req):
        receipt = market.post_job(MANIFEST, make_requirements(**req).as_tuple(), sender=client)
        event = receipt.events.filter(market.JobPosted)[0]
        return event.job, event.budget, tx_of(receipt)

    # Job 1: shard 0 is paid; shard 1's lease runs out, is reclaimed and cancelled.
    job1, budget1, posted1 = post(shard_count=2)
    market.assign(job1, 0, fair, sender=keeper)
    market.assign(job1, 1, lazy, sender=keeper2)
    submit(agents[0], job1, 0, 0, output_root=GOOD, gpu_seconds=1_234, sender=provider)
    chain.mine(deltatime=make_requirements().lease_seconds(params.lease_grace) + 1)
    reclaimed = market.reclaim(job1, 1, 0, sender=stranger)
    lazy_slash = STAKE * params.slash_bps // 10_000
    market.cancel(job1, 1, sender=client)
    finalized1 = market.finalize(job1, 0, sender=stranger)
    pay1 = settle_amounts(100, 1_234, params.keeper_fee_bps, params.protocol_fee_bps)
    refund1 = budget1 - sum(pay1)
    withdrawn = market.withdraw(provider, sender=provider)

    # Job 2: a challenger proves the cheat's result wrong; the shard runs again on `fair`.
    job2, budget2, posted2 = post()
    market.assign(job2, 0, cheat, sender=keeper)
    submit(agents[1], job2, 0, 0, output_root=BAD, gpu_seconds=1_000, sender=provider2)
    challenged = court.challenge(job2, 0, sender=verifier)
    ruled = court.resolve(job2, 0, GOOD, sender=facilitator)
    slash = cheat_stake * params.slash_bps // 10_000
    reward = min(slash // 10, params.challenge_bond)
    assert (slash, reward) == (50_000_012, 5_000_001)
    market.assign(job2, 0, fair, sender=keeper2)
    submit(agents[0], job2, 0, 0, output_root=GOOD, gpu_seconds=1_300, sender=provider)
    chain.mine(deltatime=params.challenge_window + 1)
    finalized2 = market.finalize(job2, 0, sender=stranger)
    pay2 = settle_amounts(100, 1_300, params.keeper_fee_bps, params.protocol_fee_bps)
    refund2 = budget2 - sum(pay2)

    # Job 3: a false challenge, whose bond goes to the provider accused; job 4 stays open.
    job3, budget3, posted3 = post()
    market.assign(job3, 0, fair, sender=keeper)
    submit(agents[0], job3, 0, 0, output_root=GOOD, gpu_seconds=10, sender=provider)
    false_challenge = court.challenge(job3, 0, sender=verifier)
    upheld = court.resolve(job3, 0, GOOD, sender=facilitator)
    job4, budget4, posted4 = post(shard_count=3)
    # Someone sends the market tokens it owes no one.
    token.transfer(market, STRAY, sender=client)

    answer = requests.get(served + "/audit", timeout=10).json()
    assert answer["problems"] == [] and answer["reconciled"] is True
    jobs = {j["job"]: j for j in answer["jobs"]}
    bond = params.challenge_bond
    t1, t2 = tx_of(finalized1), tx_of(finalized2)
    assert lines_of(jobs[job1]) == [
        ("escrowed", client.address, budget1, None, None, None, None, None, "post", posted1),
        ("slash", treasury.address, lazy_slash, lazy, 1, 0, None, None, "reclaim", tx_of(reclaimed)),
        ("paid", provider.address, pay1[0], fair, 0, 0, 1_234, 100, "", t1),
        ("keeper_fee", keeper.address, pay1[1], fair, 0, 0, None, None, "", t1),
        ("protocol_fee", treasury.address, pay1[2], fair, 0, 0, None, None, "", t1),
        ("refund", client.address, refund1, None, None, None, None, None, "", t1),
    ]
    assert lines_of(jobs[job2]) == [
        ("escrowed", client.address, budget2, None, None, None, None, None, "post", posted2),
        ("bond", verifier.address, bond, None, 0, None, None, None, "held", tx_of(challenged)),
        ("slash", verifier.address, reward, cheat, 0, 0, None, None, "reward", tx_of(ruled)),
        ("slash", treasury.address, slash - reward, cheat, 0, 0, None, None, "dispute", tx_of(ruled)),
        ("bond", verifier.address, bond, None, 0, None, None, None, "returned", tx_of(ruled)),
        ("paid", provider.address, pay2[0], fair, 0, 0, 1_300, 100, "", t2),
        ("keeper_fee", keeper2.address, pay2[1], fair, 0, 0, None, None, "", t2),
        ("protocol_fee", treasury.address, pay2[2], fair, 0, 0, None, None, "", t2),
        ("refund", client.address, refund2, None, None, None, None, None, "", t2),
    ]
    assert lines_of(jobs[job3]) == [
        ("escrowed", client.address, budget3, None, None, None, None, None, "post", posted3),
        ("bond", verifier.address, bond, None, 0, None, None, None, "held", tx_of(false_challenge)),
        ("bond", provider.address, bond, None, 0, None, None, None, "forfeited", tx_of(upheld)),
    ]
    assert lines_of(jobs[job4]) == [
        ("escrowed", client.address, budget4, None, None, None, None, None, "post", posted4)
    ]

    # Each job: escrowed = paid + fees + refunded + held, and held is its escrow on chain.
    for job_id in (job1, job2, job3, job4):
        t = jobs[job_id]["totals"]
        assert t["escrowed"] == t["paid"] + t["keeper_fees"] + t["protocol_fees"] + t["refunded"] + t["held"]
        assert t["held"] == t["escrow_on_chain"] == market.job(job_id).escrow
        assert jobs[job_id]["reconciled"] is True
    assert [jobs[j]["totals"]["held"] for j in (job1, job2, job3, job4)] == [0, 0, budget3, budget4]
    assert (jobs[job1]["totals"]["slashed"], jobs[job2]["totals"]["slashed"]) == (lazy_slash, slash)

    # The network: the market's balance is escrow + credits + bonds + the stray tokens, and
    # every account may withdraw exactly what the ledger says.
    balances = answer["balances"]
    assert balances["market"] == token.balanceOf(market)
    assert balances["escrow"] == sum(market.job(j).escrow for j in range(1, market.job_count() + 1))
    assert balances["bonds"] == 0 and balances["surplus"] == STRAY
    assert balances["settlement_owed"] == market.owed()
    assert balances["market"] == balances["escrow"] + balances["owed"] + balances["bonds"] + balances["surplus"]
    assert balances["stakes"] == balances["assets"] == token.balanceOf(assets)
    credits = answer["credits"]
    assert balances["owed"] == sum(credits.values())
    for who in (client, provider, provider2, keeper, keeper2, verifier, treasury, stranger):
        assert credits.get(who.address, 0) == market.credits(who), who
    assert credits[provider.address] == pay2[0] + bond  # job 1's payment was withdrawn
    assert withdrawn.events.filter(market.Withdrawn)[0].amount == pay1[0]
    assert credits[treasury.address] == lazy_slash + pay1[2] + slash - reward + pay2[2]
    assert credits[verifier.address] == reward + bond
    assert credits[client.address] == refund1 + refund2
    totals = answer["totals"]
    assert totals["withdrawn"] >= pay1[0] and totals["owed"] == balances["owed"]

    one = requests.get(f"{served}/audit/jobs/{job2}", timeout=10)
    assert one.status_code == 200
    assert one.json() == jobs[job2] | {"block": answer["block"]}
    missing = requests.get(f"{served}/audit/jobs/{market.job_count() + 1}", timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {"error": "unknown_job", "message": f"no job {market.job_count() + 1} on this market"}

    # Providers: each asset's leases, earnings, slashes and stake, as the chain has them.
    mine = requests.get(f"{served}/providers/{provider.address}", timeout=10).json()
    assets_of = {a["asset"]: a for a in mine["assets"]}
    assert set(assets_of) >= {fair, lazy}
    leases = [(x["job"], x["shard"], x["state"], x["gpu_seconds"], x["paid"]) for x in assets_of[fair]["leases"]]
    assert leases == [
        (job1, 0, "finalized", 1_234, pay1[0]),
        (job2, 0, "finalized", 1_300, pay2[0]),
        (job3, 0, "submitted", 10, 0),
    ]
    assert [x["amount"] for x in assets_of[fair]["earnings"]] == [pay1[0], pay2[0]]
    assert [(x["job"], x["state"], x["slashed"]) for x in assets_of[lazy]["leases"]] == [
        (job1, "reclaimed", lazy_slash)
    ]
    assert [(x["job"], x["amount"], x["cause"]) for x in assets_of[lazy]["slashes"]] == [(job1, lazy_slash, "reclaim")]
    for asset_id in (fair, lazy):
        assert assets_of[asset_id]["stake"] == assets.stake(asset_id).amount
    assert assets_of[lazy]["stake"] == STAKE - lazy_slash
    theirs = requests.get(f"{served}/providers/{provider2.address.lower()}", timeout=10).json()
    [cheated] = [a for a in theirs["assets"] if a["asset"] == cheat]
    assert [(x["state"], x["slashed"]) for x in cheated["leases"]] == [("rejected", slash)]
    assert cheated["stake"] == assets.stake(cheat).amount == cheat_stake - slash

    bad = requests.get(f"{served}/audit/jobs/one", timeout=10)
    assert bad.status_code == 422 and bad.json() == {
        "error": "invalid_job",
        "message": "'one' is not a job id (a whole number)",
    }
    bad = requests.get(f"{served}/providers/0x1234", timeout=10)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_address" and "0x1234" in bad.json()["message"]


def test_payments_by_authorization_are_escrowed_and_front_run_tokens_are_surplus_until_returned(
    chain, served, stack, token, market, make_requirements, client, facilitator, stranger
):
    """An x402 job is escrowed from its payer; an authorization executed straight at the token
    leaves its tokens in the market owed to no one (surplus) until the facilitator returns
    them to the payer, who may then withdraw them."""

    def signed(value):
        auth = TransferAuthorization(
            client.address, market.address, value, 0, chain.pending_timestamp + 3_600, random_nonce()
        )
        return auth, auth.sign(client.private_key, token.name(), token.version(), chain.chain_id, token.address)

    req = make_requirements().as_tuple()
    budget = market.quote(req)
    auth, signature = signed(budget)
    posted = stack.funder.post_job_with_authorization(
        MANIFEST, req, auth.market_args(), False, *split(signature), sender=facilitator
    )
    job = posted.events.filter(market.JobPosted)[0].job
    fronted, signature = signed(12_345)
    token.transferWithAuthorization(*fronted.token_args(signature), sender=stranger)

    answer = requests.get(served + "/audit", timeout=10).json()
    assert answer["problems"] == [] and answer["reconciled"] is True
    [mine] = [j for j in answer["jobs"] if j["job"] == job]
    assert lines_of(mine) == [
        ("escrowed", client.address, budget, None, None, None, None, None, "authorization", tx_of(posted))
    ]
    balances = answer["balances"]
    assert balances["market"] == token.balanceOf(market) == market.owed() + 12_345
    assert balances["surplus"] == 12_345 and balances["settlement_owed"] == market.owed()

    returned = stack.funder.return_unclaimed(fronted.market_args(), 12_345, *split(signature), sender=facilitator)
    answer = requests.get(served + "/audit", timeout=10).json()
    assert answer["problems"] == [] and answer["balances"]["surplus"] == 0
    assert [(x["kind"], x["account"], x["amount"], x["detail"], x["transaction"]) for x in answer["lines"]] == [
        ("refund", client.address, 12_345, "unclaimed authorization", tx_of(returned))
    ]
    assert answer["credits"][client.address] == market.credits(client) == 12_345
    assert answer["totals"]["unclaimed_returned"] == 12_345
