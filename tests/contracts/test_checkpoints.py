"""JobMarket checkpoints: commit_checkpoint, adoption on reclaim, and contributions paid at
finalize (who gains and loses exactly what, to the base unit)."""

import ape
import pytest
from eth_utils import keccak

from computenet.checkpoints import MAX_CONTRIBUTORS
from computenet.domain import ReplicaState, settle_amounts

TOKEN = 10**6
STAKE = 1_000 * TOKEN
PRICE = 100  # make_spec's default
CKPT = keccak(b"checkpoint 1")
CKPT2 = keccak(b"checkpoint 2")
ZERO32 = b"\x00" * 32


def only(tx, event):
    logs = tx.events.filter(event)
    assert len(logs) == 1, f"expected one {event.name}, got {len(logs)}"
    return logs[0]


@pytest.fixture
def assigned(market, job, asset, registered_keeper, keeper):
    market.assign(job, 0, asset, sender=keeper)
    return job


def expire(chain, market, job, shard=0, replica=0):
    chain.pending_timestamp = market.replica(job, shard, replica).deadline + 1


def book(market, job, shard=0, replica=0):
    return market.checkpoint(job, shard, replica)


# ---------------------------------------------------------------- commit_checkpoint


def test_commit_checkpoint(market, assigned, asset, agent, stranger, commit_checkpoint):
    job = assigned
    tx = commit_checkpoint(agent, job, 0, 0, CKPT, 500, sender=stranger)
    ev = only(tx, market.CheckpointCommitted)
    assert (ev.job, ev.shard, ev.replica, ev.asset, ev.lease, ev.checkpoint, ev.gpu_seconds) == (
        job,
        0,
        0,
        asset,
        1,
        CKPT,
        500,
    )
    c = book(market, job)
    assert (c.resume_point, c.pending, c.pending_lease, c.pending_gpu_seconds) == (ZERO32, CKPT, 1, 500)
    assert (c.contributors, c.contributed) == (0, 0)
    # a newer one replaces it
    commit_checkpoint(agent, job, 0, 0, CKPT2, 600)
    c = book(market, job)
    assert (c.pending, c.pending_gpu_seconds) == (CKPT2, 600)


def test_commit_checkpoint_wrong_signer(chain, market, assigned, agents, sign_checkpoint, run_for, stranger):
    run_for(assigned, 0, 0, 100)
    chain.mine()  # the claim fits the latest block's time, whatever block estimates run at
    signed = sign_checkpoint(agents[1], assigned, 0, 0, CKPT, 100)
    with ape.reverts("job_market: checkpoint not signed by the asset's agent"):
        market.commit_checkpoint(*signed.market_args(), sender=stranger)


def test_commit_checkpoint_garbage_signature(chain, market, assigned, run_for, stranger):
    run_for(assigned, 0, 0, 100)
    chain.mine()  # the claim fits the latest block's time, whatever block estimates run at
    with ape.reverts("job_market: checkpoint not signed by the asset's agent"):
        market.commit_checkpoint(assigned, 0, 0, CKPT, 100, b"\x01" * 65, sender=stranger)


@pytest.mark.parametrize("field", ["lease", "asset", "manifest_hash"])
def test_commit_checkpoint_signed_for_another_lease(
    chain, market, assigned, agent, sign_checkpoint, run_for, stranger, field
):
    run_for(assigned, 0, 0, 100)
    chain.mine()  # the claim fits the latest block's time, whatever block estimates run at
    other = {"lease": 2, "asset": 999, "manifest_hash": keccak(b"other")}[field]
    signed = sign_checkpoint(agent, assigned, 0, 0, CKPT, 100, **{field: other})
    with ape.reverts("job_market: checkpoint not signed by the asset's agent"):
        market.commit_checkpoint(*signed.market_args(), sender=stranger)


def test_commit_checkpoint_signature_bound_to_replica_fields(
    chain, market, post_job, register_asset, agent, registered_keeper, keeper, sign_checkpoint, run_for, stranger
):
    """A signature for one shard is worthless for another, even on the same asset and lease."""
    asset = register_asset(gpu_count=2)
    job = post_job(shard_count=2, gpu_count=1)
    market.assign(job, 0, asset, sender=keeper)
    market.assign(job, 1, asset, sender=keeper)
    run_for(job, 1, 0, 100)  # shard 1 was assigned last: the claim then fits both shards' time
    chain.mine()  # the claim fits the latest block's time, whatever block estimates run at
    signed = sign_checkpoint(agent, job, 0, 0, CKPT, 100)
    args = list(signed.market_args())
    args[1] = 1  # shard 1
    with ape.reverts("job_market: checkpoint not signed by the asset's agent"):
        market.commit_checkpoint(*args, sender=stranger)


def test_commit_checkpoint_too_many_seconds(chain, market, assigned, agent, sign_checkpoint, stranger):
    since = market.replica(assigned, 0, 0).since
    chain.pending_timestamp = since + 100
    signed = sign_checkpoint(agent, assigned, 0, 0, CKPT, 101)
    with ape.reverts("job_market: gpu_seconds exceed the lease's time"):
        market.commit_checkpoint(*signed.market_args(), sender=stranger)
    chain.pending_timestamp = since + 101
    market.commit_checkpoint(*signed.market_args(), sender=stranger)


def test_commit_checkpoint_after_deadline_counts_only_the_lease(
    chain, market, assigned, agent, sign_checkpoint, stranger
):
    """Until reclaimed, a checkpoint may still be relayed after the deadline, but its seconds
    are bounded by the lease's own time, not the time since."""
    rep = market.replica(assigned, 0, 0)
    chain.pending_timestamp = rep.deadline + 1_000
    too_many = sign_checkpoint(agent, assigned, 0, 0, CKPT, rep.deadline - rep.since + 1)
    with ape.reverts("job_market: gpu_seconds exceed the lease's time"):
        market.commit_checkpoint(*too_many.market_args(), sender=stranger)
    fits = sign_checkpoint(agent, assigned, 0, 0, CKPT, rep.deadline - rep.since)
    market.commit_checkpoint(*fits.market_args(), sender=stranger)


def test_commit_checkpoint_older_than_committed(market, assigned, agent, commit_checkpoint, sign_checkpoint, stranger):
    commit_checkpoint(agent, assigned, 0, 0, CKPT2, 600)
    for seconds in (600, 599):
        older = sign_checkpoint(agent, assigned, 0, 0, CKPT, seconds)
        with ape.reverts("job_market: checkpoint not newer"):
            market.commit_checkpoint(*older.market_args(), sender=stranger)
    assert book(market, assigned).pending == CKPT2


def test_commit_checkpoint_zero_seconds(market, assigned, agent, sign_checkpoint, stranger):
    signed = sign_checkpoint(agent, assigned, 0, 0, CKPT, 0)
    with ape.reverts("job_market: checkpoint not newer"):
        market.commit_checkpoint(*signed.market_args(), sender=stranger)


def test_commit_checkpoint_zero_hash(chain, market, assigned, agent, sign_checkpoint, run_for, stranger):
    run_for(assigned, 0, 0, 100)
    chain.mine()  # the claim fits the latest block's time, whatever block estimates run at
    signed = sign_checkpoint(agent, assigned, 0, 0, ZERO32, 100)
    with ape.reverts("job_market: empty checkpoint"):
        market.commit_checkpoint(*signed.market_args(), sender=stranger)


def test_commit_checkpoint_not_assigned(
    market, job, asset, agent, sign_checkpoint, stranger, submit, registered_keeper, keeper
):
    signed = sign_checkpoint(agent, job, 0, 0, CKPT, 100, lease=0, asset=asset)
    with ape.reverts("job_market: replica not assigned"):  # open
        market.commit_checkpoint(*signed.market_args(), sender=stranger)
    market.assign(job, 0, asset, sender=keeper)
    submit(agent, job, 0, 0, gpu_seconds=200)
    signed = sign_checkpoint(agent, job, 0, 0, CKPT, 100)
    with ape.reverts("job_market: replica not assigned"):  # submitted
        market.commit_checkpoint(*signed.market_args(), sender=stranger)


def test_commit_checkpoint_unknown_replica(market, assigned, agent, sign_checkpoint, stranger):
    signed = sign_checkpoint(agent, assigned, 0, 0, CKPT, 1)
    args = list(signed.market_args())
    args[2] = 1
    with ape.reverts("job_market: unknown replica"):
        market.commit_checkpoint(*args, sender=stranger)


# ---------------------------------------------------------------- adoption


def test_reclaim_adopts_the_pending_checkpoint(chain, market, assigned, asset, agent, commit_checkpoint, keeper2):
    commit_checkpoint(agent, assigned, 0, 0, CKPT, 700)
    expire(chain, market, assigned)
    tx = market.reclaim(assigned, 0, 0, sender=keeper2)
    ev = only(tx, market.CheckpointAdopted)
    assert (ev.job, ev.shard, ev.replica, ev.asset, ev.checkpoint, ev.gpu_seconds) == (assigned, 0, 0, asset, CKPT, 700)
    assert only(tx, market.ShardReclaimed).slashed > 0  # the node still failed
    c = book(market, assigned)
    assert (c.resume_point, c.pending, c.pending_lease, c.contributors, c.contributed) == (CKPT, ZERO32, 0, 1, 700)


def test_reclaim_without_checkpoint_adopts_nothing(chain, market, assigned, keeper2):
    expire(chain, market, assigned)
    tx = market.reclaim(assigned, 0, 0, sender=keeper2)
    assert not tx.events.filter(market.CheckpointAdopted)
    assert book(market, assigned).resume_point == ZERO32


def test_declined_lease_never_adopts(chain, market, assigned, asset, agent, commit_checkpoint, keeper, keeper2):
    commit_checkpoint(agent, assigned, 0, 0, CKPT, 30)
    market.decline(assigned, 0, 0, b"no".ljust(32, b"\0"), sender=agent)
    market.assign(assigned, 0, asset, sender=keeper)  # lease 2, which commits nothing
    expire(chain, market, assigned)
    tx = market.reclaim(assigned, 0, 0, sender=keeper2)
    assert not tx.events.filter(market.CheckpointAdopted)
    c = book(market, assigned)
    assert (c.resume_point, c.contributors) == (ZERO32, 0)


def test_submitted_lease_never_adopts(chain, market, assigned, agent, commit_checkpoint, submit):
    commit_checkpoint(agent, assigned, 0, 0, CKPT, 300)
    submit(agent, assigned, 0, 0, gpu_seconds=400)
    assert book(market, assigned).resume_point == ZERO32
    assert market.replica(assigned, 0, 0).gpu_seconds == 400


# ---------------------------------------------------------------- payment


def test_contribution_paid_at_finalize_to_the_base_unit(
    stack,
    chain,
    market,
    token,
    job,
    register_asset,
    provider,
    provider2,
    agents,
    registered_keeper,
    keeper,
    keeper2,
    client,
    treasury,
    params,
    commit_checkpoint,
    submit,
    make_requirements,
):
    """Asset A (provider, price 100, assigned by keeper) checkpoints 1,000 GPU-seconds and is
    reclaimed; asset B (provider2, price 150, assigned by keeper2) resumes and claims 3,000 of
    which 2,600 are paid (3,600 cap less 1,000). Each party gains exactly its share."""
    a = register_asset(owner=provider, agent_account=agents[0], price=100)
    b = register_asset(owner=provider2, agent_account=agents[1], price=150)
    accounts = [provider, provider2, keeper, keeper2, client, treasury]
    before = {x.address: market.credits(x) for x in accounts}
    held_before = token.balanceOf(market)

    market.assign(job, 0, a, sender=keeper)
    commit_checkpoint(agents[0], job, 0, 0, CKPT, 1_000)
    expire(chain, market, job)
    slashed = only(market.reclaim(job, 0, 0, sender=keeper2), market.ShardReclaimed).slashed
    market.assign(job, 0, b, sender=keeper2)
    submit(agents[1], job, 0, 0, gpu_seconds=3_000)
    assert market.replica(job, 0, 0).gpu_seconds == 2_600
    chain.mine(deltatime=params.challenge_window + 1)
    tx = market.finalize(job, 0, sender=keeper)

    kb, pb = params.keeper_fee_bps, params.protocol_fee_bps
    pay_a, kfee_a, pfee_a = settle_amounts(100, 1_000, kb, pb)
    pay_b, kfee_b, pfee_b = settle_amounts(150, 2_600, kb, pb)
    contrib = only(tx, market.ContributionPaid)
    assert (contrib.job, contrib.shard, contrib.replica, contrib.asset, contrib["provider"], contrib.keeper) == (
        job,
        0,
        0,
        a,
        provider.address,
        keeper.address,
    )
    assert (contrib.gpu_seconds, contrib.payment, contrib.keeper_fee, contrib.protocol_fee) == (
        1_000,
        pay_a,
        kfee_a,
        pfee_a,
    )
    fin = only(tx, market.ShardFinalized)
    assert (fin.asset, fin["provider"], fin.keeper, fin.payment, fin.keeper_fee, fin.protocol_fee) == (
        b,
        provider2.address,
        keeper2.address,
        pay_b,
        kfee_b,
        pfee_b,
    )
    budget = make_requirements().quote(kb, pb)
    refund = budget - (pay_a + kfee_a + pfee_a + pay_b + kfee_b + pfee_b)
    gained = {x.address: market.credits(x) - before[x.address] for x in accounts}
    assert gained == {
        provider.address: pay_a,
        provider2.address: pay_b,
        keeper.address: kfee_a,
        keeper2.address: kfee_b,
        client.address: refund,
        treasury.address: slashed + pfee_a + pfee_b,
    }
    assert market.job(job).escrow == 0
    assert token.balanceOf(market) >= market.owed()
    # every token that came in (the slash) went to someone's credit
    assert token.balanceOf(market) - held_before == slashed
    # the audit ledger reconciles the job, counting the contribution as payment
    from computenet.market import Market

    ledger, _ = Market.from_stack(stack).audit()
    audited = ledger.jobs[job]
    assert audited.finished and audited.check(escrow=0) == [] and audited.problems == []
    paid = [(x.account, x.amount, x.asset, x.gpu_seconds, x.detail) for x in audited.lines if x.kind == "paid"]
    assert paid == [(provider.address, pay_a, a, 1_000, "checkpoint"), (provider2.address, pay_b, b, 2_600, "")]
    assert audited.totals()["paid"] == pay_a + pay_b and audited.totals()["refunded"] == refund


def _reclaimed_with(chain, market, job, asset, agent, keeper, commit_checkpoint, seconds, checkpoint=CKPT):
    market.assign(job, 0, asset, sender=keeper)
    if seconds:
        commit_checkpoint(agent, job, 0, 0, checkpoint, seconds)
    expire(chain, market, job)
    return market.reclaim(job, 0, 0, sender=keeper)


def test_contributions_capped_at_max_gpu_seconds(
    chain, market, token, post_job, asset, agent, registered_keeper, keeper, params, commit_checkpoint, submit
):
    job = post_job(max_gpu_seconds=100)
    first = _reclaimed_with(chain, market, job, asset, agent, keeper, commit_checkpoint, 80)
    assert only(first, market.CheckpointAdopted).gpu_seconds == 80
    second = _reclaimed_with(chain, market, job, asset, agent, keeper, commit_checkpoint, 80, CKPT2)
    assert only(second, market.CheckpointAdopted).gpu_seconds == 20  # 100 - 80
    third = _reclaimed_with(chain, market, job, asset, agent, keeper, commit_checkpoint, 50)
    assert only(third, market.CheckpointAdopted).gpu_seconds == 0  # the cap is spent: unpaid
    c = book(market, job)
    assert (c.resume_point, c.contributors, c.contributed) == (CKPT, 2, 100)
    market.assign(job, 0, asset, sender=keeper)
    submit(agent, job, 0, 0, gpu_seconds=50)
    assert market.replica(job, 0, 0).gpu_seconds == 0  # nothing left of the cap
    chain.mine(deltatime=params.challenge_window + 1)
    tx = market.finalize(job, 0, sender=keeper)
    paid = [e.gpu_seconds for e in tx.events.filter(market.ContributionPaid)]
    assert paid == [80, 20]
    assert token.balanceOf(market) >= market.owed()


def test_max_contributors(chain, market, post_job, asset, agent, registered_keeper, keeper, params, commit_checkpoint):
    """Beyond MAX_CONTRIBUTORS adopted checkpoints the newest is still the resume point, unpaid."""
    job = post_job()
    for i in range(MAX_CONTRIBUTORS + 1):
        tx = _reclaimed_with(chain, market, job, asset, agent, keeper, commit_checkpoint, 10, keccak(bytes([i])))
        assert only(tx, market.CheckpointAdopted).gpu_seconds == (10 if i < MAX_CONTRIBUTORS else 0)
    c = book(market, job)
    assert (c.resume_point, c.contributors, c.contributed) == (keccak(bytes([MAX_CONTRIBUTORS])), 3, 30)


def test_cancelled_shard_pays_no_contribution(
    chain,
    market,
    token,
    job,
    asset,
    agent,
    registered_keeper,
    keeper,
    client,
    provider,
    commit_checkpoint,
    params,
    make_requirements,
):
    before = market.credits(provider), market.credits(client)
    _reclaimed_with(chain, market, job, asset, agent, keeper, commit_checkpoint, 500)
    tx = market.cancel(job, 0, sender=client)
    assert not tx.events.filter(market.ContributionPaid)
    refund = only(tx, market.JobFinished).refund
    assert refund == make_requirements().quote(params.keeper_fee_bps, params.protocol_fee_bps)  # all of it
    assert market.job(job).escrow == 0
    assert market.credits(provider) == before[0]
    assert market.credits(client) - before[1] == refund
    assert market.replica(job, 0, 0).state == ReplicaState.CANCELLED
    assert token.balanceOf(market) >= market.owed()


def test_replicated_shard_pays_only_the_finalized_replicas_contributions(
    chain,
    market,
    token,
    post_job,
    register_asset,
    agents,
    registered_keeper,
    keeper,
    client,
    commit_checkpoint,
    submit,
    params,
):
    """Replication 2: replica 0 is checkpointed and reclaimed, then cancelled; replica 1
    finalizes. Replica 0's contribution is not paid and its share is refunded."""
    job = post_job(replication=2)
    a = register_asset(agent_account=agents[0])
    b = register_asset(agent_account=agents[1])
    market.assign(job, 0, a, sender=keeper)  # replica 0
    commit_checkpoint(agents[0], job, 0, 0, CKPT, 200)
    expire(chain, market, job, 0, 0)
    market.reclaim(job, 0, 0, sender=keeper)
    market.assign(job, 0, b, sender=keeper)  # replica 0 again (the first open one)
    market.assign(job, 0, a, sender=keeper)  # replica 1
    chain.mine(deltatime=params.decline_window + 1)
    submit(agents[1], job, 0, 0, gpu_seconds=300)
    submit(agents[0], job, 0, 1, gpu_seconds=300)
    chain.mine(deltatime=params.challenge_window + 1)
    tx = market.finalize(job, 0, sender=keeper)
    paid = [(e.replica, e.asset, e.gpu_seconds) for e in tx.events.filter(market.ContributionPaid)]
    assert paid == [(0, a, 200)]
    assert market.replica(job, 0, 0).gpu_seconds == 300  # 3,600 - 200 leaves room
    assert token.balanceOf(market) >= market.owed()


def test_conservation_over_a_checkpointed_job(
    chain, market, token, post_job, register_asset, agents, registered_keeper, keeper, commit_checkpoint, submit, params
):
    """Claims at every cap: contributions plus the final result never exceed the escrow."""
    job = post_job(max_gpu_seconds=500, shard_count=1)
    a = register_asset(agent_account=agents[0], price=200)
    for _ in range(MAX_CONTRIBUTORS):
        market.assign(job, 0, a, sender=keeper)
        rep = market.replica(job, 0, 0)
        commit_checkpoint(agents[0], job, 0, 0, CKPT, rep.deadline - rep.since)  # all the lease allows
        expire(chain, market, job)
        market.reclaim(job, 0, 0, sender=keeper)
    market.assign(job, 0, a, sender=keeper)
    submit(agents[0], job, 0, 0, gpu_seconds=500)
    chain.mine(deltatime=params.challenge_window + 1)
    tx = market.finalize(job, 0, sender=keeper)
    total = (
        sum(e.gpu_seconds for e in tx.events.filter(market.ContributionPaid)) + market.replica(job, 0, 0).gpu_seconds
    )
    assert total == 500
    assert only(tx, market.JobFinished).refund == 0  # every cap at max price: all of it paid
    assert token.balanceOf(market) >= market.owed()


# ---------------------------------------------------------------- the SDK seam


def test_market_checks_and_relays_a_checkpoint(stack, chain, market, assigned, agents, agent, stranger, run_for):
    """Market.commit_checkpoint refuses before sending what the chain would refuse, and relays
    the rest; Market.checkpoint reads the view."""
    from computenet.errors import ContractRevert
    from computenet.market import Market

    sdk = Market.from_stack(stack)
    run_for(assigned, 0, 0, 50)
    chain.mine()  # the claim fits the latest block's time, whatever block estimates run at
    forged = sdk.checkpoint_for(assigned, 0, 0, CKPT, 50).sign(agents[1].private_key, chain.chain_id, market.address)
    with pytest.raises(ContractRevert, match="checkpoint not signed by the asset's agent") as refused:
        sdk.commit_checkpoint(forged, sender=stranger)
    assert refused.value.preflight
    zero = sdk.checkpoint_for(assigned, 0, 0, ZERO32, 50).sign(agent.private_key, chain.chain_id, market.address)
    with pytest.raises(ContractRevert, match="empty checkpoint"):
        sdk.commit_checkpoint(zero, sender=stranger)
    signed = sdk.checkpoint_for(assigned, 0, 0, CKPT, 50).sign(agent.private_key, chain.chain_id, market.address)
    sdk.commit_checkpoint(signed, sender=stranger)
    with pytest.raises(ContractRevert, match="checkpoint not newer"):
        sdk.commit_checkpoint(signed, sender=stranger)
    c = sdk.checkpoint(assigned, 0, 0)
    assert (c.pending, c.pending_lease, c.pending_gpu_seconds, c.pending_of(1), c.pending_of(2)) == (CKPT, 1, 50, 50, 0)
