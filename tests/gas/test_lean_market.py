"""The lean market (bench/lean/LeanMarket.vy) that the gas snapshot measures beside JobMarket:
it must keep JobMarket's money rules on the path it measures, and its terms, held only as a
hash, must bind every caller, or its figure would price a weaker market."""

import ape
import pytest
from lean_market import MANIFEST, lean_terms, snapshot_requirements

from computenet.domain import settle_amounts


def _credits(market, accounts) -> list[int]:
    return [market.credits(a) for a in accounts]


def test_lean_market_pays_everyone_what_job_market_pays_for_the_same_job(
    lean,
    lean_lifecycle,
    market,
    keeper,
    client,
    provider,
    treasury,
    agent,
    register_asset,
    submit,
    chain,
    params,
    make_spec,
):
    payees = [provider, keeper, treasury, client]
    gpu_seconds = 1_000

    before = _credits(lean.market, payees)
    lean_lifecycle(gpu_seconds)
    lean_gain = [after - b for after, b in zip(_credits(lean.market, payees), before)]

    asset = register_asset()
    before = _credits(market, payees)
    job = (
        market.post_job(MANIFEST, snapshot_requirements().as_tuple(), sender=client)
        .events.filter(market.JobPosted)[0]
        .job
    )
    market.assign(job, 0, asset, sender=keeper)
    submit(agent, job, 0, 0, gpu_seconds=gpu_seconds)
    chain.mine(deltatime=params.challenge_window + 1)
    market.finalize(job, 0, sender=keeper)
    market_gain = [after - b for after, b in zip(_credits(market, payees), before)]

    payment, keeper_fee, protocol_fee = settle_amounts(
        make_spec().price, gpu_seconds, params.keeper_fee_bps, params.protocol_fee_bps
    )
    budget = snapshot_requirements().quote(params.keeper_fee_bps, params.protocol_fee_bps)
    expected = [payment, keeper_fee, protocol_fee, budget - payment - keeper_fee - protocol_fee]
    assert lean_gain == market_gain == expected
    assert lean.market.owed() == sum(_credits(lean.market, payees))  # every escrowed token is owed to someone


@pytest.mark.parametrize(
    "lie",
    ["client", "manifest", "packed", "demand"],
)
def test_lean_market_refuses_terms_that_are_not_the_jobs(
    lean, keeper, registered_keeper, client, stranger, params, lie
):
    req = snapshot_requirements()
    job = lean.market.post_job(MANIFEST, req.as_tuple(), sender=client).events.filter(lean.market.JobPosted)[0].job
    terms = list(lean_terms(client.address, MANIFEST, req, params.keeper_fee_bps, params.protocol_fee_bps))
    # Each lie would pay off: the refund to someone else, a receipt for other work, a higher
    # price cap or later deadline, a lease that holds less of the asset than the job runs.
    index = ["client", "manifest", "packed", "demand"].index(lie)
    terms[index] = {
        "client": stranger.address,
        "manifest": b"\x01" * 32,
        "packed": terms[2] + (1 << 112),
        "demand": terms[3] - (1 << 24),
    }[lie]
    with ape.reverts("lean_market: not the job's terms"):
        lean.market.assign(job, tuple(terms), 0, lean.asset, sender=keeper)
    honest = lean_terms(client.address, MANIFEST, req, params.keeper_fee_bps, params.protocol_fee_bps)
    lean.market.assign(job, honest, 0, lean.asset, sender=keeper)
