"""keepers.decisions: what each keeper task does with the state it re-read (pure)."""

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from computenet.domain import Asset, Job, Parameters, Replica, ReplicaState, Requirements, Shard, Spec, Stake
from keepers.decisions import (
    IN_FLIGHT,
    NO_OPEN_DISPUTE,
    NO_OPEN_REPLICA,
    NOT_ATTESTED,
    RULING_PENDING,
    Done,
    Send,
    Wait,
    checkpoint_to_relay,
    decide_assign,
    decide_expire,
    decide_finalize,
    decide_reclaim,
    max_keeper_fee,
    newer_checkpoint,
)
from keepers.scheduler import NodeState, Policy

NOW = 1_000_000
PARAMS = Parameters(100, 50, 1000, 600, 60, 300, 100, 10)
S = ReplicaState


def job(shards=2, replication=1, deadline=NOW + 86_400):
    req = Requirements(40_000, 1, 200, 3_600, deadline, shards, replication, 1 if replication > 1 else 0)
    return Job(1, "0x" + "c1" * 20, 0, b"\x01" * 32, req, 100, 50, shards * replication)


def rep(shard, index, state=S.OPEN, asset=0, deadline=0, root=b"\x00" * 32):
    return Replica(1, shard, index, asset, 0, state, 0, 0, deadline, 0, 0, root)


def shards(j, states=None):
    states = states or {}
    return [
        Shard(1, s, tuple(rep(s, r, *states.get((s, r), (S.OPEN, 0))) for r in range(j.requirements.replication)))
        for s in range(j.requirements.shard_count)
    ]


def asset(id, price=100, owner=None):
    spec = Spec(1, 80_000, 1, 8, 0, price, NOW + 30 * 86_400, True, 16)
    return Asset(id, owner or f"0x{id:040x}", f"0x{id + 99:040x}", spec, b"", Stake(1_000, 0, 0, 0, 0))


def nodes(*ids):
    return {i: NodeState(i, 10, 80_000, 0, 4, NOW) for i in ids}


def assign(j, shard=0, state=None, assets=(asset(1), asset(2)), node_ids=(1, 2), **kw):
    return decide_assign(j, shard, shards(j, state), list(assets), nodes(*node_ids), {}, PARAMS, NOW, **kw)


def test_the_cheapest_fresh_asset_gets_the_open_replica():
    d = assign(job(), assets=[asset(1, price=150), asset(2, price=100)])
    assert isinstance(d, Send) and d.call == "assign" and d.args == (1, 0, 2)


def test_a_tee_job_goes_only_to_an_attested_asset_even_a_dearer_one():
    tee = dataclasses.replace(job(), requirements=dataclasses.replace(job().requirements, verification=4))
    cheap, dear = asset(1, price=100), asset(2, price=150)
    assert assign(tee, assets=[cheap, dear], attested={2}).args == (1, 0, 2)
    assert assign(tee, assets=[cheap, dear]) == Wait(NOT_ATTESTED)
    assert assign(job(), assets=[cheap, dear], attested={2}).args == (1, 0, 1)  # other levels: any asset


def test_a_shard_with_no_open_replica_is_done_and_unknown_ids_are_done():
    j = job()
    assert assign(j, state={(0, 0): (S.ASSIGNED, 1)}) == Done(NO_OPEN_REPLICA)
    assert decide_assign(None, 0, [], [], {}, {}, PARAMS, NOW) == Done("job_market: unknown job")
    assert assign(j, shard=5) == Done("job_market: unknown shard")


def test_a_replica_sent_but_not_mined_is_not_sent_again():
    j = job()
    assert assign(j, pending={(0, 0): 1}) == Wait(IN_FLIGHT)


def test_pending_assignments_count_as_made_for_the_next_replica():
    j = job(replication=2)
    d = assign(j, pending={(0, 0): 2}, assets=[asset(1, price=150), asset(2, price=100)])
    assert d.args == (1, 0, 1)  # asset 2 already (pending) runs replica 0


def test_another_shard_of_the_job_pending_on_an_asset_steers_away_from_it():
    j = job(shards=2)
    d = assign(j, shard=1, pending={(0, 0): 2}, assets=[asset(1, price=150), asset(2, price=100)])
    assert d.args == (1, 1, 1)


def test_no_eligible_asset_waits_for_the_next_sweep():
    assert assign(job(), node_ids=()) == Wait("scheduler: no eligible asset")
    no_heartbeat_needed = Policy(require_heartbeat=False, assumed_capacity=4)
    assert isinstance(assign(job(), node_ids=(), policy=no_heartbeat_needed), Send)


def test_a_paused_market_waits_and_a_hopeless_deadline_is_done():
    assert assign(job(), paused=True) == Wait("market_params: paused")
    assert assign(job(deadline=NOW + 100)) == Done("job_market: lease would end after the deadline")


def test_jobs_paying_less_than_the_keepers_minimum_fee_are_skipped():
    j = job()
    fee = max_keeper_fee(j)
    assert fee == 200 * 3_600 * 100 // 10_000
    assert isinstance(assign(j, min_fee=fee), Send)
    assert isinstance(assign(j, min_fee=fee + 1), Done)


def _kept(lease=2, gpu_seconds=100, asset=1, **more):
    body = dict(job=1, shard=0, replica=0, lease=lease, asset=asset, checkpoint="0x" + "ab" * 32)
    return body | dict(gpu_seconds=gpu_seconds, signature="0x" + "cd" * 65) | more


def test_a_heartbeat_checkpoint_is_relayed_before_the_reclaim_only_when_newer_than_the_chains():
    live = Replica(1, 0, 0, 1, 0, S.ASSIGNED, 2, 0, NOW + 10, 0, 0)
    relay = checkpoint_to_relay(live, _kept(), chain_pending=0)
    assert relay == Send("commit_checkpoint", (1, 0, 0, "0x" + "ab" * 32, 100, "0x" + "cd" * 65))
    assert decide_reclaim(live, NOW + 11, relay) == relay  # first the relay; the reclaim once it is mined
    assert decide_reclaim(live, NOW, relay) == Wait("job_market: lease not expired")
    assert checkpoint_to_relay(live, _kept(), chain_pending=100) is None  # the chain has it already
    assert checkpoint_to_relay(live, _kept(), chain_pending=150) is None  # the chain has a newer one
    assert checkpoint_to_relay(live, _kept(lease=1), chain_pending=0) is None  # an earlier lease's
    assert checkpoint_to_relay(live, _kept(asset=2), chain_pending=0) is None  # another asset's
    assert checkpoint_to_relay(live, None, chain_pending=0) is None
    done = Replica(1, 0, 0, 1, 0, S.OPEN, 2, 0, NOW, 0, 0)
    assert checkpoint_to_relay(done, _kept(), chain_pending=0) is None


def test_the_newest_checkpoint_per_replica_is_kept():
    assert newer_checkpoint(None, _kept())
    assert newer_checkpoint(_kept(gpu_seconds=100), _kept(gpu_seconds=101))
    assert not newer_checkpoint(_kept(gpu_seconds=100), _kept(gpu_seconds=100))
    assert not newer_checkpoint(_kept(gpu_seconds=100), _kept(gpu_seconds=99))
    assert newer_checkpoint(_kept(lease=2, gpu_seconds=900), _kept(lease=3, gpu_seconds=1))  # a later lease
    assert not newer_checkpoint(_kept(lease=3, gpu_seconds=1), _kept(lease=2, gpu_seconds=900))


def test_reclaim_waits_for_the_lease_end_and_is_done_once_the_replica_moved_on():
    live = rep(0, 0, S.ASSIGNED, 1, deadline=NOW + 10)
    assert decide_reclaim(live, NOW) == Wait("job_market: lease not expired")
    assert decide_reclaim(live, NOW + 11) == Send("reclaim", (1, 0, 0))
    assert decide_reclaim(rep(0, 0, S.SUBMITTED, 1, deadline=NOW), NOW + 11) == Done("job_market: replica not assigned")


def test_finalize_waits_for_every_window_and_leaves_disagreement_to_the_facilitator():
    a, b = b"\x0a" * 32, b"\x0b" * 32
    done = [rep(0, 0, S.SUBMITTED, 1, NOW, a), rep(0, 1, S.SUBMITTED, 2, NOW + 5, a)]
    assert decide_finalize(1, 0, done, NOW + 3) == Wait("job_market: challenge window open")
    assert decide_finalize(1, 0, done, NOW + 6) == Send("finalize", (1, 0))
    split = [rep(0, 0, S.SUBMITTED, 1, NOW, a), rep(0, 1, S.SUBMITTED, 2, NOW, b)]
    assert decide_finalize(1, 0, split, NOW + 6) == Done("job_market: replica roots disagree")
    running = [rep(0, 0, S.SUBMITTED, 1, NOW, a), rep(0, 1, S.ASSIGNED, 2, NOW + 99)]
    assert decide_finalize(1, 0, running, NOW + 6) == Done("job_market: shard not ready")


def test_expire_waits_through_the_ruling_deadline_and_is_sent_the_second_after():
    assert decide_expire(1, 0, NOW, NOW - 1) == Wait(RULING_PENDING)
    assert decide_expire(1, 0, NOW, NOW) == Wait(RULING_PENDING)  # the arbiter may still rule at the deadline
    assert decide_expire(1, 0, NOW, NOW + 1) == Send("expire", (1, 0))
    assert decide_expire(1, 0, None, NOW + 1) == Done(NO_OPEN_DISPUTE)  # ruled on, or expired by another keeper


@given(st.integers(0, 2**64), st.integers(0, 2**16), st.one_of(st.none(), st.integers(0, 2**64)), st.integers(0, 2**64))
def test_expire_is_sent_exactly_when_a_dispute_is_open_and_past_its_deadline(job_id, shard, deadline, now):
    decision = decide_expire(job_id, shard, deadline, now)
    if deadline is None:
        assert decision == Done(NO_OPEN_DISPUTE)
    elif now > deadline:
        assert decision == Send("expire", (job_id, shard))
    else:
        assert decision == Wait(RULING_PENDING)


def test_a_declined_shard_waits_out_its_backoff_then_prefers_an_asset_that_did_not_decline():
    from computenet.waiting import BACKOFF_BASE, Decline, clock

    cheap, dear = asset(1, price=100), asset(2, price=150)
    first = [Decline(1, "image not found", NOW - 1)]
    assert assign(job(), assets=[cheap, dear], declines=first) == Wait(
        f"backing off until {clock(NOW - 1 + BACKOFF_BASE)} after 1 declines"
    )
    two = [Decline(1, "image not found", NOW - 2 * BACKOFF_BASE), Decline(1, "image not found", NOW - 2 * BACKOFF_BASE)]
    assert isinstance(assign(job(), assets=[cheap, dear], declines=two[:1] + [Decline(1, "x", NOW - 29)]), Wait)
    d = assign(job(), assets=[cheap, dear], declines=two)
    assert isinstance(d, Send) and d.args == (1, 0, 2)  # the dearer asset that has not declined
    # only the decliner can take it: it gets it again
    d = assign(job(), assets=[cheap], node_ids=(1,), declines=two)
    assert isinstance(d, Send) and d.args == (1, 0, 1)


def test_a_failed_shard_is_done():
    from computenet.domain import MAX_DECLINES
    from computenet.waiting import Decline

    declines = [Decline(1, "image not found", NOW - 3_600)] * MAX_DECLINES
    assert assign(job(), declines=declines) == Done(f"shard failed: declined {MAX_DECLINES} times")


def test_a_replica_reopened_after_the_projection_waits_for_the_listener():
    from keepers.decisions import NOT_SEEN

    j = job(shards=1)
    reopened = [Shard(1, 0, (Replica(1, 0, 0, 1, 0, S.OPEN, 1, 0, 0, NOW - 5, 0),))]
    d = decide_assign(j, 0, reopened, [asset(1), asset(2)], nodes(1, 2), {}, PARAMS, NOW, seen_until=NOW - 10)
    assert d == Wait(NOT_SEEN)
    d = decide_assign(j, 0, reopened, [asset(1), asset(2)], nodes(1, 2), {}, PARAMS, NOW, seen_until=NOW - 5)
    assert isinstance(d, Send)


def test_node_verdicts_say_why_the_scheduler_skips_an_asset():
    from dataclasses import replace

    from keepers.decisions import node_verdicts

    fresh = nodes(1)[1]
    states = {
        1: fresh,
        2: replace(fresh, asset=2, last_seen=NOW - 100),
        3: replace(fresh, asset=3, gpu_utilization_pct=97),
        4: replace(fresh, asset=4, running_shards=4),
    }
    got = node_verdicts([asset(i) for i in range(1, 6)], states, Policy(max_heartbeat_age=30), NOW)
    assert got == {
        2: "last heartbeat 100 s old (> 30 s)",
        3: "over utilisation (97 % > 90 %)",
        4: "full (4 of 4 leases running)",
        5: "no heartbeat",
    }
    assert 5 not in node_verdicts([asset(5)], {}, Policy(require_heartbeat=False), NOW)
