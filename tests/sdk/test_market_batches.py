"""The SDK's batched steps: a job's shards assigned, submitted and finalized through the
relay, each call telling which items went through, and refusals before anything is sent."""

import pytest

from computenet.domain import ReplicaState, settle_amounts
from computenet.errors import ContractRevert, KeeperError
from computenet.market import LOGGED_ROOTS_LAG, RELAY_BATCH, Market

SHARDS = 3
GPU_SECONDS = 1_000


@pytest.fixture
def sdk(stack):
    return Market.from_stack(stack)


def test_a_job_assigned_submitted_and_finalized_in_three_transactions(
    sdk, chain, params, post_job, register_asset, registered_keeper, keeper, keeper2, agent, provider, run_for
):
    job = post_job(shard_count=SHARDS)
    asset = register_asset(gpu_count=SHARDS, max_leases=SHARDS)
    sdk.assign(job, 1, asset, sender=keeper2)  # another keeper took shard 1 first

    assert sdk.assign_many([(job, s, asset) for s in range(SHARDS)], sender=keeper) == [
        (job, 0, 0, asset),
        (job, 2, 0, asset),
    ]

    for s in (0, 1, 2):
        run_for(job, s, 0, GPU_SECONDS)
    results = [sdk.signed_result(job, s, 0, b"\x42" * 32, GPU_SECONDS, 0, agent.private_key) for s in (0, 2)]
    assert sdk.submit_many(results, sender=provider) == [(job, 0, 0), (job, 2, 0)]
    chain.mine(deltatime=params.challenge_window + 1)

    before = sdk.credits(provider)
    assert sdk.finalize_many([(job, s) for s in range(SHARDS)], sender=keeper) == [(job, 0), (job, 2)]
    pay = settle_amounts(100, GPU_SECONDS, params.keeper_fee_bps, params.protocol_fee_bps)[0]
    assert sdk.credits(provider) - before == 2 * pay
    assert [r.state for s in range(SHARDS) for r in sdk.shard(job, s).replicas] == [
        ReplicaState.FINALIZED,
        ReplicaState.ASSIGNED,
        ReplicaState.FINALIZED,
    ]


def test_batches_are_refused_before_sending(sdk, post_job, asset, stranger, agent, keeper, registered_keeper):
    job = post_job()
    with pytest.raises(KeeperError, match="not a keeper"):
        sdk.assign_many([(job, 0, asset)], sender=stranger)
    with pytest.raises(ValueError, match=f"at most {RELAY_BATCH}"):
        sdk.finalize_many([(job, 0)] * (RELAY_BATCH + 1), sender=stranger)
    with pytest.raises(ContractRevert, match="replica not assigned"):
        sdk.signed_result(job, 0, 0, b"\x42" * 32, 1, 0, agent.private_key)
    assert sdk.assign_many([], sender=keeper) == [] and sdk.submit_many([], sender=stranger) == []


def test_results_under_one_signature_and_their_roots_read_back(
    sdk, chain, post_job, register_asset, registered_keeper, keeper, agent, provider, stranger, run_for
):
    """One agent's results in one submit_results: every replica reads its root though the
    market stores none (filled in from its event), and a reveal puts one on chain."""
    job = post_job(shard_count=SHARDS)
    asset = register_asset(gpu_count=SHARDS, max_leases=SHARDS)
    sdk.assign_many([(job, s, asset) for s in range(SHARDS)], sender=keeper)
    for s in range(SHARDS):
        run_for(job, s, 0, GPU_SECONDS)
    results = [(job, s, 0, bytes([s + 1]) * 32, GPU_SECONDS, 0) for s in range(SHARDS)]
    signature = sdk.signed_results(results, agent.private_key)
    tx = sdk.submit_results(results, signature, sender=provider)
    assert len(tx.events.filter(sdk.market.ResultsCommitted)) == 1
    assert [sdk.market.output_root(job, s, 0) for s in range(SHARDS)] == [b"\x00" * 32] * SHARDS
    assert [r.output_root for s in range(SHARDS) for r in sdk.shard(job, s).replicas] == [r[3] for r in results]
    assert sdk.replica(job, 1, 0).output_root == results[1][3]
    assert [r.output_root for r in sdk.replicas(job, [(0, 0)], logged=False)] == [b"\x00" * 32]

    found = sdk.batched_result(job, 1, 0)
    assert found is not None and found[0] == results[1] and found[2] == 1
    sdk.reveal_result(job, 1, 0, sender=stranger)
    assert sdk.court.result_root(job, 1, 0) == results[1][3]
    assert sdk.batched_result(job, 1, 0) is None  # on chain now: nothing left to reveal
    assert sdk.reveal_result(job, 1, 0, sender=stranger) is None


def test_a_batch_is_refused_before_sending(sdk, post_job, register_asset, registered_keeper, keeper, agents, run_for):
    job = post_job(shard_count=2)
    for s in range(2):
        sdk.assign(job, s, register_asset(agent_account=agents[s]), sender=keeper)
        run_for(job, s, 0, GPU_SECONDS)
    results = [(job, s, 0, b"\x42" * 32, GPU_SECONDS, 0) for s in range(2)]
    with pytest.raises(ContractRevert, match="receipt not signed by the asset's agent"):
        sdk.signed_results(results, agents[0].private_key)  # shard 1's asset has another agent
    with pytest.raises(ValueError, match="at most 64"):
        sdk.submit_results([results[0]] * 65, b"\x00" * 65, sender=agents[0])


def test_logged_roots_are_read_once_and_follow_a_new_lease(
    sdk,
    chain,
    court,
    post_job,
    register_asset,
    registered_keeper,
    keeper,
    agent,
    verifier,
    facilitator,
    stranger,
    run_for,
):
    """The logs a batched root is read from are kept (but the last LOGGED_ROOTS_LAG blocks'),
    so a poll reads only the blocks since; a result of a later lease is still the one read."""
    job = post_job(shard_count=2)
    asset = register_asset(gpu_count=2, max_leases=2)
    sdk.assign_many([(job, s, asset) for s in range(2)], sender=keeper)
    for s in range(2):
        run_for(job, s, 0, GPU_SECONDS)
    first = [(job, s, 0, b"\x11" * 32, GPU_SECONDS, 0) for s in range(2)]
    sdk.submit_results(first, sdk.signed_results(first, agent.private_key), sender=agent)
    chain.mine(LOGGED_ROOTS_LAG + 10)
    assert [sdk.replica(job, s, 0).output_root for s in range(2)] == [b"\x11" * 32] * 2
    kept_from = sdk._roots_logged[job][0]
    assert kept_from == sdk.head() - LOGGED_ROOTS_LAG + 1  # what is kept is not read again

    # Shard 0's result is rejected, its replica leased again and its new result batched.
    court.challenge(job, 0, sender=verifier)
    sdk.reveal_result(job, 0, 0, sender=stranger)
    court.resolve(job, 0, b"\x22" * 32, sender=facilitator)
    sdk.assign(job, 0, asset, sender=keeper)
    run_for(job, 0, 0, GPU_SECONDS)
    again = [(job, 0, 0, b"\x22" * 32, GPU_SECONDS, 0)]
    sdk.submit_results(again, sdk.signed_results(again, agent.private_key), sender=agent)
    assert sdk.replica(job, 0, 0).output_root == b"\x22" * 32
    chain.mine(LOGGED_ROOTS_LAG + 10)
    assert [sdk.replica(job, s, 0).output_root for s in range(2)] == [b"\x22" * 32, b"\x11" * 32]
