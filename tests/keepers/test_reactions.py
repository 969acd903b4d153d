"""keepers.reactions: each market event's effect on the keeper's projection (pure)."""

import pytest

from computenet import events as ev
from keepers.reactions import expire_member, finalize_member, parse_member, react, reclaim_member

A = "0x" + "aa" * 20
ZERO = "0x" + "00" * 20


def posted(job=1, shards=2, replication=1):
    return ev.JobPosted(
        block=1,
        tx="",
        index=0,
        job=job,
        client=A,
        manifest_hash=b"",
        budget=0,
        min_vram_mib=0,
        gpu_count=0,
        max_price=1,
        max_gpu_seconds=1,
        deadline=0,
        shard_count=shards,
        replication=replication,
        verification=0,
        keeper_fee_bps=0,
        protocol_fee_bps=0,
        cpu_cores=1,
        memory_mib=1,
        disk_mib=1,
    )


def assigned(job=1, shard=0, replica=0, asset=7, lease_end=500):
    return ev.ShardAssigned(
        block=2,
        tx="",
        index=0,
        job=job,
        shard=shard,
        replica=replica,
        asset=asset,
        keeper=A,
        lease=1,
        lease_end=lease_end,
        price=1,
    )


def submitted(job=1, shard=0, replica=0, challenge_end=900):
    return ev.ResultSubmitted(
        block=3,
        tx="",
        index=0,
        job=job,
        shard=shard,
        replica=replica,
        asset=7,
        output_root=b"",
        gpu_seconds=1,
        exit_code=0,
        challenge_end=challenge_end,
    )


def test_a_posted_job_opens_every_replica_of_every_shard_and_assigns_at_once():
    r = react([posted(shards=3, replication=2)])
    assert r.open == {"1:0": 2, "1:1": 2, "1:2": 2}
    assert r.tasks == [("assign", 1, 0), ("assign", 1, 1), ("assign", 1, 2)]


def test_an_assignment_closes_a_replica_and_makes_its_lease_due_for_reclaim():
    r = react([posted(shards=1), assigned()])
    assert r.open == {"1:0": 0}
    assert r.due == {reclaim_member(1, 0, 0): 500}


def test_a_result_replaces_the_reclaim_with_a_finalize_at_the_window_end():
    r = react([posted(shards=1), assigned(), submitted()])
    assert r.due == {finalize_member(1, 0): 900}
    assert reclaim_member(1, 0, 0) in r.undue


def test_the_latest_challenge_window_of_a_shards_replicas_counts():
    r = react([submitted(replica=0, challenge_end=900), submitted(replica=1, challenge_end=950)])
    assert r.due[finalize_member(1, 0)] == 950


@pytest.mark.parametrize("cls", [ev.ShardReclaimed, ev.ShardDeclined])
def test_a_reclaimed_or_declined_lease_reopens_its_replica(cls):
    extra = {"caller": A, "slashed": 5} if cls is ev.ShardReclaimed else {"reason": b""}
    event = cls(block=4, tx="", index=0, job=1, shard=0, replica=0, asset=7, **extra)
    r = react([posted(shards=1), assigned(), event])
    assert r.open == {"1:0": 1}
    assert reclaim_member(1, 0, 0) in r.undue and r.tasks[-1] == ("assign", 1, 0)
    assert r.reputation == ({(7, "reclaimed"): 1} if cls is ev.ShardReclaimed else {})
    assert r.wake


def test_declines_are_kept_per_shard_for_the_backoff_until_the_shard_fails():
    def declined(block, asset):
        return ev.ShardDeclined(block=block, tx="", index=0, job=1, shard=0, replica=0, asset=asset, reason=b"oom")

    r = react([posted(shards=1), assigned(), declined(4, 7), assigned(asset=8), declined(6, 8)])
    assert r.declines == {"1:0": [f"7:4:{b'oom'.hex()}", f"8:6:{b'oom'.hex()}"]} and not r.forget_declines
    failed = ev.ShardFailed(block=9, tx="", index=1, job=1, shard=0, declines=3)
    cancelled = ev.ShardCancelled(block=9, tx="", index=2, job=1, shard=0, replicas=1)
    r = react([assigned(), declined(9, 7), failed, cancelled])
    assert r.forget_declines == {"1:0"} and r.open == {"1:0": -1}


def test_dispute_flow_counts_the_loser_and_finalizes_after_the_ruling():
    opened = ev.DisputeOpened(block=5, tx="", index=0, job=1, shard=0, challenger=A, bond=1)
    rejected = ev.ReplicaRejected(block=6, tx="", index=0, job=1, shard=0, replica=1, asset=8, slashed=3)
    resolved = ev.DisputeResolved(
        block=6, tx="", index=1, job=1, shard=0, facilitator=A, rejected_replicas=0, upheld=1, rejected=1
    )
    r = react([submitted(), opened])
    assert finalize_member(1, 0) in r.undue and finalize_member(1, 0) not in r.due
    r = react([rejected, resolved])
    assert r.reputation == {(8, "disputes_lost"): 1}
    assert r.open == {"1:0": 1} and r.due == {finalize_member(1, 0): 0}
    assert expire_member(1, 0) in r.undue
    assert ("finalize", 1, 0) in r.tasks and ("assign", 1, 0) in r.tasks


def opened(job=1, shard=0, block=5):
    return ev.DisputeOpened(block=block, tx="", index=0, job=job, shard=shard, challenger=A, bond=1)


def resolved(job=1, shard=0, block=6, facilitator=ZERO, upheld=1):
    return ev.DisputeResolved(
        block=block,
        tx="",
        index=1,
        job=job,
        shard=shard,
        facilitator=facilitator,
        rejected_replicas=0,
        upheld=upheld,
        rejected=0,
    )


def test_an_open_dispute_is_due_for_expiry_at_once_the_task_reads_its_deadline():
    r = react([submitted(), opened()])
    assert r.due == {expire_member(1, 0): 0}
    assert r.tasks == []  # the sweep runs it; until the ruling deadline it only waits


@pytest.mark.parametrize("facilitator", [A, ZERO], ids=["ruling", "default outcome"])
def test_a_settled_dispute_is_no_longer_due_for_expiry_and_rearms_finalize(facilitator):
    r = react([opened(), resolved(facilitator=facilitator)])
    assert expire_member(1, 0) in r.undue and expire_member(1, 0) not in r.due
    assert r.due == {finalize_member(1, 0): 0}  # its decision waits for the extended window
    assert ("finalize", 1, 0) in r.tasks
    assert r.reputation == {}  # expiry rejects no one


def test_a_shard_disputed_again_after_a_ruling_is_due_for_expiry_again():
    r = react([submitted(), opened(), resolved(), opened(block=7)])
    assert r.due == {expire_member(1, 0): 0}
    assert r.undue == {reclaim_member(1, 0, 0), finalize_member(1, 0)}


def test_disputes_of_other_shards_stay_due():
    r = react([opened(shard=0), opened(shard=1, block=6), resolved(shard=0, block=7)])
    assert r.due == {expire_member(1, 1): 0, finalize_member(1, 0): 0}
    assert r.undue == {expire_member(1, 0), finalize_member(1, 1)}


def test_finalization_counts_for_the_asset_and_ends_the_due_work():
    fin = ev.ShardFinalized(
        block=7,
        tx="",
        index=0,
        job=1,
        shard=0,
        replica=0,
        asset=7,
        provider=A,
        keeper=A,
        payment=1,
        keeper_fee=0,
        protocol_fee=0,
    )
    r = react([submitted(), fin])
    assert r.reputation == {(7, "finalized"): 1} and finalize_member(1, 0) in r.undue and r.wake


def test_cancelled_replicas_leave_the_open_count():
    cancelled = ev.ShardCancelled(block=8, tx="", index=0, job=1, shard=0, replicas=2)
    assert react([posted(shards=1, replication=3), assigned(), cancelled]).open == {"1:0": 0}


def test_agents_are_tracked_and_a_new_agent_voids_the_old_heartbeat():
    reg = ev.AssetRegistered(
        block=1,
        tx="",
        index=0,
        asset=3,
        owner=A,
        agent="0x" + "01" * 20,
        gpu_model=1,
        vram_mib=1,
        gpu_count=1,
        cpu_cores=1,
        region=0,
        price=1,
        expire=9,
        max_leases=1,
        commit=b"",
        memory_mib=1,
        disk_mib=1,
    )
    changed = ev.AgentChanged(block=2, tx="", index=0, asset=3, agent="0x" + "02" * 20)
    assert react([reg]).agents == {3: "0x" + "01" * 20} and react([reg]).wake
    r = react([reg, changed])
    assert r.agents == {3: "0x" + "02" * 20} and r.forget_nodes == {3}


def test_events_that_change_nothing_the_keeper_tracks_leave_it_alone():
    r = react([ev.Withdrawn(block=1, tx="", index=0, account=A, receiver=A, amount=1)])
    assert (r.open, r.due, r.undue, r.tasks, r.wake) == ({}, {}, set(), [], False)


def test_due_members_parse_back_and_junk_is_refused():
    assert parse_member(reclaim_member(1, 2, 3)) == ("reclaim", (1, 2, 3))
    assert parse_member(finalize_member(4, 5)) == ("finalize", (4, 5))
    assert parse_member(expire_member(6, 7)) == ("expire", (6, 7))
    for junk in ("assign:1:2", "reclaim:1:2", "finalize:1", "expire:1", "expire:1:2:3", "expire:1:x", ""):
        with pytest.raises(ValueError, match="not a due member"):
            parse_member(junk)


def test_an_attested_tee_result_is_due_for_finalize_at_its_shortened_window_end():
    attested = ev.ResultAttested(
        block=6, tx="", index=0, job=1, shard=0, attestor=A, replica=0, asset=7, evidence_hash=b"", challenge_end=660
    )
    r = react([posted(shards=1), assigned(), submitted(), attested])
    assert r.due == {finalize_member(1, 0): 900} and r.sooner == {finalize_member(1, 0): 660}
    r = react([attested])  # in a later batch: only the earlier time, applied as "sooner" (ZADD LT)
    assert r.sooner == {finalize_member(1, 0): 660} and r.due == {}
