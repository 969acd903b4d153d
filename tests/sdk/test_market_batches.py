"""The SDK's batched steps: a job's shards assigned, submitted and finalized through the
relay, each call telling which items went through, and refusals before anything is sent."""

import pytest

from computenet.domain import ReplicaState, settle_amounts
from computenet.errors import ContractRevert, KeeperError
from computenet.market import RELAY_BATCH, Market

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
