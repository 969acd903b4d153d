"""JobMarket's owner functions: parameters within their hard bounds, treasury,
facilitators, the emergency pause and two-step ownership."""

from dataclasses import asdict, fields, replace

import ape
import pytest
from ape.utils import ZERO_ADDRESS
from eth_utils import keccak

from computenet.domain import Parameters, ReplicaState

TOKEN = 10**6
MAX_AMOUNT = 2**96 - 1
THIRTY_DAYS = 2_592_000


def as_parameters(struct) -> Parameters:
    return Parameters(**{f.name: getattr(struct, f.name) for f in fields(Parameters)})


NEW = Parameters(
    keeper_fee_bps=250,
    protocol_fee_bps=125,
    slash_bps=2_500,
    challenge_window=3_600,
    decline_window=120,
    lease_grace=600,
    min_stake=500 * TOKEN,
    challenge_bond=50 * TOKEN,
)


def test_initial_parameters(market, params, treasury, facilitator, owner):
    assert as_parameters(market.parameters()) == params
    assert market.min_stake() == params.min_stake
    assert market.challenge_bond() == params.challenge_bond
    assert market.treasury() == treasury.address
    assert market.is_facilitator(facilitator) is True
    assert market.paused() is False
    assert market.owner() == owner.address


# ---------------------------------------------------------------- set_parameters


def test_set_parameters(market, owner):
    receipt = market.set_parameters(NEW.as_tuple(), sender=owner)
    assert as_parameters(market.parameters()) == NEW
    assert market.min_stake() == NEW.min_stake
    assert market.challenge_bond() == NEW.challenge_bond
    (log,) = receipt.events.filter(market.ParametersUpdated)
    assert log.event_arguments == asdict(NEW)


def test_set_parameters_at_every_bound(market, owner):
    """Each bound is inclusive; the packed word keeps every field intact at its maximum."""
    high = Parameters(
        keeper_fee_bps=1_000,
        protocol_fee_bps=1_000,
        slash_bps=5_000,
        challenge_window=THIRTY_DAYS,
        decline_window=3_600,
        lease_grace=86_400,
        min_stake=MAX_AMOUNT,
        challenge_bond=MAX_AMOUNT,
    )
    market.set_parameters(high.as_tuple(), sender=owner)
    assert as_parameters(market.parameters()) == high
    low = Parameters(
        keeper_fee_bps=0,
        protocol_fee_bps=0,
        slash_bps=0,
        challenge_window=60,
        decline_window=1,
        lease_grace=0,
        min_stake=0,
        challenge_bond=1,
    )
    market.set_parameters(low.as_tuple(), sender=owner)
    assert as_parameters(market.parameters()) == low
    assert market.paused() is False


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("keeper_fee_bps", 1_001, "market_params: keeper fee too high"),
        ("protocol_fee_bps", 1_001, "market_params: protocol fee too high"),
        ("slash_bps", 5_001, "market_params: slash too high"),
        ("challenge_window", 59, "market_params: challenge window out of range"),
        ("challenge_window", THIRTY_DAYS + 1, "market_params: challenge window out of range"),
        ("decline_window", 0, "market_params: decline window out of range"),
        ("decline_window", 3_601, "market_params: decline window out of range"),
        ("lease_grace", 86_401, "market_params: lease grace too long"),
        ("min_stake", MAX_AMOUNT + 1, "market_params: min stake too large"),
        ("challenge_bond", 0, "market_params: challenge bond out of range"),
        ("challenge_bond", MAX_AMOUNT + 1, "market_params: challenge bond out of range"),
    ],
)
def test_set_parameters_out_of_bounds(market, owner, params, field, value, reason):
    with ape.reverts(reason):
        market.set_parameters(replace(params, **{field: value}).as_tuple(), sender=owner)
    assert as_parameters(market.parameters()) == params


def test_set_parameters_keeps_pause(market, owner):
    market.pause(sender=owner)
    market.set_parameters(NEW.as_tuple(), sender=owner)
    assert market.paused() is True
    assert as_parameters(market.parameters()) == NEW


def test_posted_job_keeps_its_fees(market, owner, client, params, post_job, make_requirements):
    """Fees are snapshotted at posting: new fees change quotes and new jobs only."""
    req = make_requirements()
    old_quote = req.quote(params.keeper_fee_bps, params.protocol_fee_bps)
    assert market.quote(req.as_tuple()) == old_quote
    job = post_job()
    market.set_parameters(NEW.as_tuple(), sender=owner)
    posted = market.job(job)
    assert (posted.keeper_fee_bps, posted.protocol_fee_bps) == (params.keeper_fee_bps, params.protocol_fee_bps)
    assert posted.escrow == old_quote
    new_quote = req.quote(NEW.keeper_fee_bps, NEW.protocol_fee_bps)
    assert new_quote != old_quote
    assert market.quote(req.as_tuple()) == new_quote
    later = market.job(post_job())
    assert (later.keeper_fee_bps, later.protocol_fee_bps) == (NEW.keeper_fee_bps, NEW.protocol_fee_bps)
    assert later.escrow == new_quote


def test_posted_job_settles_at_its_fees(
    chain, market, owner, params, register_asset, registered_keeper, keeper, post_job, agent, submit
):
    """Raising fees after posting does not take more than the job's snapshot from its escrow."""
    asset = register_asset()
    job = post_job()
    market.assign(job, 0, asset, sender=keeper)
    submit(agent, job, 0, 0, gpu_seconds=1_000)
    market.set_parameters(NEW.as_tuple(), sender=owner)
    chain.mine(deltatime=params.challenge_window + 1)
    receipt = market.finalize(job, 0, sender=keeper)
    (log,) = receipt.events.filter(market.ShardFinalized)
    assert log.payment == 100 * 1_000
    assert log.keeper_fee == log.payment * params.keeper_fee_bps // 10_000
    assert log.protocol_fee == log.payment * params.protocol_fee_bps // 10_000


# ---------------------------------------------------------------- treasury and facilitators


def test_set_treasury(market, owner, stranger):
    receipt = market.set_treasury(stranger, sender=owner)
    assert market.treasury() == stranger.address
    (log,) = receipt.events.filter(market.TreasurySet)
    assert log.event_arguments == {"treasury": stranger.address}


def test_set_treasury_zero(market, owner, treasury):
    with ape.reverts("market_params: zero treasury"):
        market.set_treasury(ZERO_ADDRESS, sender=owner)
    assert market.treasury() == treasury.address


def test_set_facilitator(market, owner, stranger):
    receipt = market.set_facilitator(stranger, True, sender=owner)
    assert market.is_facilitator(stranger) is True
    (log,) = receipt.events.filter(market.FacilitatorSet)
    assert log.event_arguments == {"account": stranger.address, "enabled": True}
    receipt = market.set_facilitator(stranger, False, sender=owner)
    assert market.is_facilitator(stranger) is False
    (log,) = receipt.events.filter(market.FacilitatorSet)
    assert log.event_arguments == {"account": stranger.address, "enabled": False}


def test_set_facilitator_zero(market, owner):
    with ape.reverts("market_params: zero facilitator"):
        market.set_facilitator(ZERO_ADDRESS, True, sender=owner)


def test_removed_facilitator_cannot_resolve(market, court, owner, facilitator, post_job):
    market.set_facilitator(facilitator, False, sender=owner)
    with ape.reverts("dispute_court: caller is not a facilitator"):
        court.resolve(post_job(), 0, b"\x42" * 32, sender=facilitator)


# ---------------------------------------------------------------- pause


def test_pause_and_unpause(market, owner):
    receipt = market.pause(sender=owner)
    assert market.paused() is True
    (log,) = receipt.events.filter(market.Paused)
    assert log.event_arguments == {"account": owner.address}
    receipt = market.unpause(sender=owner)
    assert market.paused() is False
    (log,) = receipt.events.filter(market.Unpaused)
    assert log.event_arguments == {"account": owner.address}


def test_pause_twice(market, owner):
    market.pause(sender=owner)
    with ape.reverts("market_params: paused"):
        market.pause(sender=owner)


def test_unpause_when_not_paused(market, owner):
    with ape.reverts("market_params: not paused"):
        market.unpause(sender=owner)


def test_pause_keeps_parameters(market, owner, params):
    market.pause(sender=owner)
    assert as_parameters(market.parameters()) == params
    market.unpause(sender=owner)
    assert as_parameters(market.parameters()) == params


@pytest.fixture
def live_job(market, register_asset, registered_keeper, keeper, post_job):
    """A three-shard job: shards 0 and 1 assigned to one three-GPU asset, shard 2 open."""
    asset = register_asset(gpu_count=3)
    job = post_job(shard_count=3)
    market.assign(job, 0, asset, sender=keeper)
    market.assign(job, 1, asset, sender=keeper)
    return job, asset


def test_paused_stops_post_job(market, owner, client, make_requirements):
    market.pause(sender=owner)
    with ape.reverts("market_params: paused"):
        market.post_job(keccak(b"manifest"), make_requirements().as_tuple(), sender=client)
    market.unpause(sender=owner)
    market.post_job(keccak(b"manifest"), make_requirements().as_tuple(), sender=client)


def test_paused_stops_assign(market, owner, keeper, live_job):
    job, asset = live_job
    market.pause(sender=owner)
    with ape.reverts("market_params: paused"):
        market.assign(job, 2, asset, sender=keeper)
    market.unpause(sender=owner)
    market.assign(job, 2, asset, sender=keeper)
    assert market.replica(job, 2, 0).state == ReplicaState.ASSIGNED


def test_paused_reclaim_does_not_slash(
    chain, market, assets, owner, stranger, treasury, params, make_requirements, live_job
):
    """While paused an expired lease still reopens (so the client can cancel), unslashed;
    after unpausing, reclaims slash again, wholly to the treasury."""
    job, asset = live_job
    chain.mine(deltatime=make_requirements().lease_seconds(params.lease_grace) + 1)
    stake = assets.stake(asset).amount
    market.pause(sender=owner)
    market.reclaim(job, 1, 0, sender=stranger)
    assert market.replica(job, 1, 0).state == ReplicaState.OPEN
    assert assets.stake(asset).amount == stake
    assert market.credits(treasury) == 0
    market.unpause(sender=owner)
    market.reclaim(job, 0, 0, sender=stranger)
    slashed = stake * params.slash_bps // 10_000
    assert assets.stake(asset).amount == stake - slashed
    assert market.credits(treasury) == slashed
    assert market.credits(stranger) == 0


def test_paused_results_finalize_and_withdraw_go_on(
    chain, market, token, owner, provider, keeper, params, agent, submit, live_job
):
    """No one is slashed or stuck while paused: results, finalization and withdrawals work."""
    job, _ = live_job
    market.pause(sender=owner)
    submit(agent, job, 0, 0)
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED
    chain.mine(deltatime=params.challenge_window + 1)
    market.finalize(job, 0, sender=keeper)
    assert market.replica(job, 0, 0).state == ReplicaState.FINALIZED
    owed = market.credits(provider)
    assert owed > 0
    before = token.balanceOf(provider)
    market.withdraw(provider, sender=provider)
    assert token.balanceOf(provider) == before + owed
    assert market.paused() is True


def test_paused_cancel_goes_on(market, owner, client, live_job):
    job, _ = live_job
    market.pause(sender=owner)
    market.cancel(job, 2, sender=client)
    assert market.replica(job, 2, 0).state == ReplicaState.CANCELLED


def test_paused_decline_and_disputes_go_on(market, court, owner, agent, verifier, facilitator, submit, live_job):
    """Agents may still hand work back, and disputes open and resolve, while paused."""
    job, _ = live_job
    market.pause(sender=owner)
    market.decline(job, 1, 0, b"image not found".ljust(32, b"\x00"), sender=agent)
    assert market.replica(job, 1, 0).state == ReplicaState.OPEN
    submit(agent, job, 0, 0, output_root=b"\x42" * 32)
    court.challenge(job, 0, sender=verifier)
    assert market.replica(job, 0, 0).state == ReplicaState.DISPUTED
    court.resolve(job, 0, b"\x42" * 32, sender=facilitator)
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED


# ---------------------------------------------------------------- owner-only


OWNER_CALLS = {
    "set_parameters": lambda market, who, params: market.set_parameters(params.as_tuple(), sender=who),
    "set_treasury": lambda market, who, params: market.set_treasury(who, sender=who),
    "set_facilitator": lambda market, who, params: market.set_facilitator(who, True, sender=who),
    "pause": lambda market, who, params: market.pause(sender=who),
    "unpause": lambda market, who, params: market.unpause(sender=who),
    "transfer_ownership": lambda market, who, params: market.transfer_ownership(who, sender=who),
}


@pytest.mark.parametrize("name", list(OWNER_CALLS))
def test_owner_only(market, stranger, params, name):
    with ape.reverts("ownable: caller is not the owner"):
        OWNER_CALLS[name](market, stranger, params)


def test_unpause_only_owner_while_paused(market, owner, stranger):
    market.pause(sender=owner)
    with ape.reverts("ownable: caller is not the owner"):
        market.unpause(sender=stranger)
    assert market.paused() is True


def test_facilitator_is_not_owner(market, facilitator, params):
    """Arbitrating disputes grants no say over parameters."""
    with ape.reverts("ownable: caller is not the owner"):
        market.set_parameters(params.as_tuple(), sender=facilitator)


# ---------------------------------------------------------------- ownership


def test_transfer_ownership(market, owner, stranger, params):
    receipt = market.transfer_ownership(stranger, sender=owner)
    assert market.owner() == owner.address
    assert market.pending_owner() == stranger.address
    (log,) = receipt.events.filter(market.OwnershipTransferStarted)
    assert log.event_arguments == {"previous_owner": owner.address, "new_owner": stranger.address}
    market.pause(sender=owner)  # the old owner rules until the successor accepts
    receipt = market.accept_ownership(sender=stranger)
    assert market.owner() == stranger.address
    assert market.pending_owner() == ZERO_ADDRESS
    (log,) = receipt.events.filter(market.OwnershipTransferred)
    assert log.event_arguments == {"previous_owner": owner.address, "new_owner": stranger.address}
    market.unpause(sender=stranger)
    with ape.reverts("ownable: caller is not the owner"):
        market.set_parameters(params.as_tuple(), sender=owner)


def test_accept_ownership_only_pending_owner(market, owner, stranger, client):
    market.transfer_ownership(stranger, sender=owner)
    for who in (client, owner):
        with ape.reverts("ownable: caller is not the pending owner"):
            market.accept_ownership(sender=who)
    assert market.owner() == owner.address


def test_transfer_ownership_cancel(market, owner, stranger):
    market.transfer_ownership(stranger, sender=owner)
    market.transfer_ownership(ZERO_ADDRESS, sender=owner)
    assert market.pending_owner() == ZERO_ADDRESS
    with ape.reverts("ownable: caller is not the pending owner"):
        market.accept_ownership(sender=stranger)
