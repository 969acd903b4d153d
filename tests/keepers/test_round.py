"""keepers.decisions.decide_round: a round places every open shard from one index, as placing
them one at a time with decide_assign would, under every per-shard rule (pure); and
keepers.actions.assign_round sends what it decides (a real Redis, the chain served from memory)."""

import dataclasses
import random
from contextlib import nullcontext
from types import SimpleNamespace

import pytest

from bench.synthetic_market import MemoryChain
from computenet.domain import (
    MAX_DECLINES,
    Asset,
    Job,
    Leased,
    Parameters,
    Replica,
    ReplicaState,
    Requirements,
    Shard,
    Spec,
    Stake,
    Verification,
)
from computenet.errors import ContractRevert
from computenet.waiting import BACKOFF_BASE, Decline, clock
from keepers import actions, decisions
from keepers.decisions import IN_FLIGHT, NO_OPEN_REPLICA, NOT_ATTESTED, NOT_SEEN, Done, Send, Wait, decide_assign
from keepers.decisions import decide_round as _decide_round
from keepers.runtime import Runtime
from keepers.scheduler import NO_ASSET, TOO_SMALL, NodeState, Policy, Reputation
from keepers.settings import KeeperSettings
from keepers.state import KeeperState

NOW = 1_700_000_000
MARKET = "0x" + "33" * 20
PARAMS = Parameters(100, 50, 1000, 600, 60, 300, 100, 10)
S = ReplicaState
TEE = Verification.TEE


def decide_round(work, jobs, shards, assets, nodes, **kw):
    return _decide_round(work, jobs, shards, assets, nodes, kw.pop("reputations", {}), PARAMS, NOW, **kw)


def make_job(id, shards=2, replication=1, gpus=1, vram=16_000, max_price=200, deadline=NOW + 86_400, **more):
    verification = more.pop("verification", Verification.REPLICATED if replication > 1 else Verification.OPTIMISTIC)
    req = Requirements(vram, gpus, max_price, 3_600, deadline, shards, replication, verification, **more)
    return Job(id, "0x" + "c1" * 20, 0, b"\x01" * 32, req, 100, 50, shards * replication)


def rep(job, shard, index, state=S.OPEN, asset=0, lease=0, since=0):
    return Replica(job, shard, index, asset, 0, state, lease, 0, 0, since, 0)


def shards_of(job, states=None):
    """The job's shards, every replica open unless `states` says otherwise: (shard, replica) ->
    (state, asset[, lease, since])."""
    states = states or {}
    req = job.requirements
    return [
        Shard(job.id, s, tuple(rep(job.id, s, r, *states.get((s, r), ())) for r in range(req.replication)))
        for s in range(req.shard_count)
    ]


def make_asset(id, owner=None, price=100, gpus=4, vram=80_000, max_leases=16, cpu=32):
    spec = Spec(1, vram, gpus, cpu, 0, price, NOW + 30 * 86_400, True, max_leases, 65_536, 262_144)
    return Asset(id, owner or f"0x{id:040x}", f"0x{id + 999:040x}", spec, b"", Stake(1_000, 0, 0))


def node(id, capacity=4, running=0, free=320_000, util=10):
    return NodeState(id, util, free, running, capacity, NOW)


# --- the reference: one shard at a time, each assignment as the chain will have it ----------


def leased(a, req):
    stake = dataclasses.replace(
        a.stake, open_leases=a.stake.open_leases + 1, gpus_leased=a.stake.gpus_leased + req.gpu_count
    )
    held = Leased(
        a.leased.cpu_cores + req.cpu_cores, a.leased.memory_mib + req.memory_mib, a.leased.disk_mib + req.disk_mib
    )
    return dataclasses.replace(a, stake=stake, leased=held)


def one_at_a_time(work, jobs, shards, assets, nodes, reputations, policy, pending, declines, attested, **kw):
    """decide_assign for each shard in the round's order until it stops sending, every
    assignment then pending, its asset's lease and its node's load counted."""
    assets, nodes, pending = {a.id: a for a in assets}, dict(nodes), dict(pending)
    sends, outcomes = [], {}

    def order(key):
        job = jobs.get(key[0])
        return (job.requirements.deadline if job else 0, *key)

    for key in sorted(set(work), key=order):
        job_id, shard = key
        job = jobs.get(job_id)
        while True:
            decision = decide_assign(
                job,
                shard,
                shards.get(job_id, []),
                list(assets.values()),
                nodes,
                reputations,
                PARAMS,
                NOW,
                pending={(s, r): a for (j, s, r), a in pending.items() if j == job_id},
                declines=declines.get(key, ()),
                attested=attested.get(job_id, ()),
                policy=policy,
                **kw,
            )
            if not isinstance(decision, Send):
                outcomes[key] = decision
                break
            sends.append(decision)
            a, req = decision.assignment, job.requirements
            pending[(job_id, shard, a.replica)] = a.asset
            asset = assets[a.asset]
            assets[a.asset] = leased(asset, req)
            need = req.min_vram_mib * req.gpu_count if policy.check_free_vram else 0
            n = nodes.get(a.asset) or NodeState(
                a.asset,
                policy.assumed_utilization_pct,
                asset.spec.vram_mib * asset.spec.gpu_count,
                0,
                policy.assumed_capacity,
                NOW,
            )
            nodes[a.asset] = dataclasses.replace(
                n, running_shards=n.running_shards + 1, free_vram_mib=max(0, n.free_vram_mib - need)
            )
    return sends, outcomes


def market(seed):
    """A random round: jobs of every kind, some shards leased, pending, declined, reopened, and
    work naming an unknown job and an unknown shard."""
    rng = random.Random(seed)
    n_assets = rng.choice([8, 20, 40])
    owners = [f"0x{o:040x}" for o in range(1, rng.randint(2, 6))]
    assets = [
        make_asset(
            i,
            owner=rng.choice(owners),
            price=rng.randrange(20, 260),
            gpus=rng.choice([1, 2, 4]),
            vram=rng.choice([16_000, 40_000, 80_000]),
            max_leases=rng.choice([1, 2, 16]),
            cpu=rng.choice([2, 8, 32]),
        )
        for i in range(1, n_assets + 1)
    ]
    nodes = {}
    for a in assets:
        if rng.random() < 0.85:
            cap = rng.randint(1, 4)
            running = rng.randint(0, cap) if rng.random() < 0.3 else 0
            nodes[a.id] = node(a.id, cap, running, rng.randrange(0, 200_000), rng.choice([10, 50, 50, 95]))
    reputations = {a.id: Reputation(rng.randrange(9), rng.randrange(3)) for a in assets if rng.random() < 0.5}
    jobs, shards, pending, declines, attested, work = {}, {}, {}, {}, {}, []
    for job_id in range(1, rng.randint(2, 7)):
        replication = rng.choice([1, 1, 2, 3])
        job = make_job(
            job_id,
            shards=rng.randint(1, 4),
            replication=replication,
            gpus=rng.choice([1, 1, 2]),
            vram=rng.choice([16_000, 40_000]),
            max_price=rng.choice([60, 150, 300]),
            deadline=NOW + rng.choice([86_400] * 4 + [20_000, 3_000]),  # 3,000 s: no lease fits
            verification=TEE if rng.random() < 0.2 else (Verification.REPLICATED if replication > 1 else 0),
            cpu_cores=rng.choice([1, 2, 2, 9]),
        )
        jobs[job_id] = job
        if job.requirements.verification == TEE:
            attested[job_id] = set(rng.sample([a.id for a in assets], rng.choice([0, 1, 3, n_assets // 2])))
        states = {}
        for s in range(job.requirements.shard_count):
            for r in range(replication):
                roll = rng.random()
                if roll < 0.15:
                    states[(s, r)] = (S.ASSIGNED, rng.randint(1, n_assets))
                elif roll < 0.2:
                    states[(s, r)] = (S.OPEN, 0, 1, NOW - rng.choice([5, 50]))  # reopened: NOT_SEEN at 5
                elif roll < 0.3:
                    pending[(job_id, s, r)] = rng.randint(1, n_assets)
            if rng.random() < 0.3:
                declines[(job_id, s)] = [
                    Decline(rng.randint(1, n_assets), "image not found", NOW - rng.choice([5, 100, 1_000]))
                    for _ in range(rng.choice([1, 2, MAX_DECLINES]))
                ]
            work.append((job_id, s))
        shards[job_id] = shards_of(job, states)
    work += [(99, 0), (1, 9)]  # an unknown job, an unknown shard
    jobs[99] = None
    policy = Policy(
        require_heartbeat=rng.random() < 0.8, assumed_capacity=rng.choice([1, 2]), check_free_vram=rng.random() < 0.5
    )
    return dict(
        work=work,
        jobs=jobs,
        shards=shards,
        assets=assets,
        nodes=nodes,
        reputations=reputations,
        policy=policy,
        pending=pending,
        declines=declines,
        attested=attested,
        seen_until=NOW - 10,
        min_fee=rng.choice([0, 0, 0, 5_000]),  # 5,000: more than a job capped at 60 pays its keeper
    )


def same_reason(decision):
    """An outcome up to the scheduler's two words for no asset: which one depends on whether
    the round counts an asset filled by it among those the job is too big for."""
    if isinstance(decision, Wait) and decision.reason == TOO_SMALL:
        return Wait(NO_ASSET)
    return decision


@pytest.mark.parametrize("seed", range(150))
def test_a_round_places_as_decide_assign_one_shard_at_a_time_would(seed):
    m = market(seed)
    got = decide_round(**m)
    sends, outcomes = one_at_a_time(**m)
    assert got.sends == sends
    assert {k: same_reason(d) for k, d in got.outcomes.items()} == {k: same_reason(d) for k, d in outcomes.items()}


RULES = (
    "job_market: unknown job",
    "job_market: unknown shard",
    NO_OPEN_REPLICA,
    "job_market: lease would end after the deadline",
    "keeper fee at most",
    "backing off until",
    "shard failed",
    NOT_SEEN,
    NOT_ATTESTED,
    IN_FLIGHT,
    "scheduler: ",
)


def test_the_random_rounds_exercise_every_rule():
    seen, held = set(), False
    for seed in range(150):
        got = decide_round(**market(seed))
        seen |= {rule for d in got.outcomes.values() for rule in RULES if d.reason.startswith(rule)}
        held |= any(s.assignment.reasons for s in got.sends)
    assert seen == set(RULES) and held


@pytest.mark.parametrize("seed", range(150))
def test_a_round_never_gives_an_owner_two_replicas_of_a_shard_or_an_asset_more_than_it_holds(seed):
    m = market(seed)
    got = decide_round(**m)
    by_id = {a.id: a for a in m["assets"]}
    owners = {}
    for job_id, shards in m["shards"].items():
        for shard in shards:
            live = [r.asset for r in shard.replicas if r.state not in (S.OPEN, S.CANCELLED)]
            live += [a for (j, s, _), a in m["pending"].items() if (j, s) == (job_id, shard.index)]
            owners[(job_id, shard.index)] = [by_id[a].owner for a in live if a in by_id]
    given = {}
    for send in got.sends:
        job_id, shard, asset = send.args
        assert by_id[asset].owner not in owners[(job_id, shard)]
        owners[(job_id, shard)].append(by_id[asset].owner)
        given[asset] = given.get(asset, 0) + 1
    policy = m["policy"]
    for asset, count in given.items():
        n = m["nodes"].get(asset)
        running, capacity = (n.running_shards, n.capacity) if n else (0, policy.assumed_capacity)
        assert max(running, by_id[asset].stake.open_leases) + count <= min(capacity, by_id[asset].spec.max_leases)


def test_the_index_is_built_once_per_round(monkeypatch):
    built = []

    class Counted(decisions.Batch):
        def __init__(self, *args, **kw):
            built.append(1)
            super().__init__(*args, **kw)

    monkeypatch.setattr(decisions, "Batch", Counted)
    jobs = {j: make_job(j, shards=4, replication=2) for j in (1, 2, 3)}
    assets = [make_asset(i) for i in range(1, 9)]
    nodes = {a.id: node(a.id, capacity=16) for a in assets}
    got = decide_round(
        [(j, s) for j in jobs for s in range(4)], jobs, {j: shards_of(job) for j, job in jobs.items()}, assets, nodes
    )
    assert len(got.sends) == 24 and built == [1]
    assert set(got.outcomes.values()) == {Wait(IN_FLIGHT)}  # every replica got one
    built.clear()
    assert decide_round([(1, 0)], jobs, {1: shards_of(jobs[1])}, assets, nodes, paused=True).sends == []
    assert built == []  # nothing to place: no index


def test_each_shard_of_a_round_keeps_its_own_rules():
    fresh = make_job(1, shards=2)
    cheap = make_job(2, shards=1, max_price=1)  # keeper fee below the minimum
    late = make_job(3, shards=1, deadline=NOW + 100)
    tee = make_job(4, shards=1, verification=TEE)
    dark = make_job(5, shards=1, verification=TEE)  # no attested asset
    declined = make_job(6, shards=3)
    reopened = make_job(7, shards=1)
    jobs = {j.id: j for j in (fresh, cheap, late, tee, dark, declined, reopened)} | {8: None}
    shards = {j.id: shards_of(j) for j in jobs.values() if j}
    shards[1] = shards_of(fresh, {(1, 0): (S.SUBMITTED, 3)})
    shards[7] = shards_of(reopened, {(0, 0): (S.OPEN, 0, 1, NOW - 5)})
    assets = [make_asset(1, price=100), make_asset(2, price=150), make_asset(3, price=120)]
    nodes = {a.id: node(a.id) for a in assets}
    declines = {
        (6, 0): [Decline(1, "image not found", NOW - 1)],  # backing off
        (6, 1): [Decline(1, "image not found", NOW - 100)] * MAX_DECLINES,  # failed
        (6, 2): [Decline(1, "image not found", NOW - 100)],  # backed off: to a non-decliner
    }
    work = [(1, 0), (1, 1), (1, 5), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (6, 1), (6, 2), (7, 0), (8, 0)]
    kw = dict(declines=declines, attested={4: {2}, 5: set()}, seen_until=NOW - 10, min_fee=1_000)
    got = decide_round(work, jobs, shards, assets, nodes, pending={(1, 0, 0): 1}, **kw)
    assert [s.args for s in got.sends] == [(4, 0, 2), (6, 2, 3)]  # tee: only the attested; 6/2: not asset 1
    assert got.outcomes == {
        (1, 0): Wait(IN_FLIGHT),
        (1, 1): Done(NO_OPEN_REPLICA),
        (1, 5): Done("job_market: unknown shard"),
        (2, 0): Done("keeper fee at most 36, below this keeper's minimum 1000"),
        (3, 0): Done("job_market: lease would end after the deadline"),
        (4, 0): Wait(IN_FLIGHT),
        (5, 0): Wait(NOT_ATTESTED),
        (6, 0): Wait(f"backing off until {clock(NOW - 1 + BACKOFF_BASE)} after 1 declines"),
        (6, 1): Done(f"shard failed: declined {MAX_DECLINES} times"),
        (6, 2): Wait(IN_FLIGHT),
        (7, 0): Wait(NOT_SEEN),
        (8, 0): Done("job_market: unknown job"),
    }
    paused = decide_round(work, jobs, shards, assets, nodes, paused=True, **kw)
    assert paused.sends == [] and paused.outcomes[(1, 0)] == Wait("market_params: paused")


def test_a_round_spreads_a_job_and_serves_the_earliest_deadline_first():
    soon, later = make_job(1, shards=1, deadline=NOW + 10_000), make_job(2, shards=3)
    assets = [make_asset(i, price=100 + i, max_leases=1) for i in range(1, 4)]  # one lease each
    jobs = {1: soon, 2: later}
    nodes = {a.id: node(a.id) for a in assets}
    got = decide_round([(2, 0), (2, 1), (2, 2), (1, 0)], jobs, {j: shards_of(jobs[j]) for j in jobs}, assets, nodes)
    assert [s.args for s in got.sends] == [(1, 0, 1), (2, 0, 2), (2, 1, 3)]
    assert got.outcomes[(2, 2)] == Wait(NO_ASSET)


# --- the action: a real Redis, the chain from memory, _send replaced ----------------------


@pytest.fixture
def runtime(redis_server):
    client = redis_server.client(30)
    client.flushdb()
    state = KeeperState(client, 31337, "0x" + "4d" * 20, "0x" + "5a" * 20, "round")
    jobs = {j: make_job(j, shards=2) for j in (1, 2)}
    assets = [make_asset(i) for i in range(1, 5)]
    chain = MemoryChain(jobs, {j: shards_of(job) for j, job in jobs.items()}, assets, PARAMS, NOW, address=MARKET)
    key = SimpleNamespace(address="0x" + "ee" * 20)
    rt = Runtime(KeeperSettings(require_heartbeat=False), chain, chain, key, client, state)
    state.send_lock = lambda account, wait=60: nullcontext()  # the real lock has its own tests
    for job in jobs:
        client.hset(state.key("open"), mapping={f"{job}:0": 1, f"{job}:1": 1})
    return rt


def test_a_round_sends_its_assignments_in_one_batch_each_with_its_pending_record(runtime, monkeypatch):
    sent_calls = []

    def send(rt, decision):
        sent_calls.append((decision.call, decision.args))
        return SimpleNamespace(to_0x_hex=lambda: "0x" + "ab" * 32)

    monkeypatch.setattr(actions, "_send", send)
    [sent] = actions.assign_round(runtime)
    [(call, (market, placements))] = sent_calls
    assert (call, market, sent.call, sent.task, sent.items()) == (
        "assign_many",
        MARKET,
        "assign_many",
        actions.ROUND,
        4,
    )
    assert sorted(runtime.state.pending()) == sorted((j, s, 0, a) for j, s, a in placements)
    assert sorted(sent.pending) == sorted(f"{j}:{s}:0:{a}" for j, s, a in placements)
    assert runtime.state.stats() == {"sent:assign": 4}
    assert actions.assign_round(runtime) == "nothing to send: 4 shards wait or are done"  # all in flight


def test_a_round_of_one_sends_a_plain_assign(runtime, monkeypatch):
    runtime.redis.hdel(runtime.state.key("open"), "1:0", "1:1", "2:1")
    monkeypatch.setattr(actions, "_send", lambda rt, d: SimpleNamespace(to_0x_hex=lambda: "0x" + "cd" * 32))
    [sent] = actions.assign_round(runtime)
    assert (sent.call, sent.args[:2], sent.items()) == ("assign", (2, 0), 1)


def test_the_one_shard_task_is_a_round_of_that_shard_alone(runtime, monkeypatch):
    monkeypatch.setattr(actions, "_send", lambda rt, d: SimpleNamespace(to_0x_hex=lambda: "0x" + "ef" * 32))
    [sent] = actions.assign(runtime, 2, 1)
    assert (sent.call, sent.args[:2], sent.task) == ("assign", (2, 1), ("assign", 2, 1))  # a failure runs it again
    assert runtime.state.pending() == [(2, 1, 0, sent.args[2])]
    assert actions.assign(runtime, 2, 1) == "nothing to send: 1 shard waits or is done"  # in flight
    assert actions.assign(runtime, 9, 0) == "nothing to send: 1 shard waits or is done"  # an unknown job
    runtime.account = None
    assert actions.assign(runtime, 1, 0) == "dry run: 1 assignments"


def test_a_refused_batch_leaves_nothing_pending_and_requeues_the_round(runtime, monkeypatch):
    def send(rt, decision):
        raise ContractRevert("job_market: asset not active")

    monkeypatch.setattr(actions, "_send", send)
    with pytest.raises(actions.Requeue):
        actions.assign_round(runtime)
    assert runtime.state.pending() == []
    assert runtime.state.stats() == {"refused:assign_many": 1}


def test_without_a_key_a_round_only_records_what_it_would_send(runtime, monkeypatch):
    monkeypatch.setattr(actions, "_send", lambda *_: pytest.fail("sent without a key"))
    runtime.account = None
    assert actions.assign_round(runtime) == "dry run: 4 assignments"
    assert runtime.state.stats() == {"dry_run:assign": 4} and runtime.state.pending() == []


def test_a_round_does_not_wait_for_a_held_send_lock(runtime):
    del runtime.state.send_lock  # KeeperState's own
    runtime.account = None
    with runtime.state.send_lock(runtime.address):  # another worker's round, or a send
        with pytest.raises(actions.Busy):
            actions.assign_round(runtime)
        with pytest.raises(actions.Busy):
            actions.assign(runtime, 1, 0)
    assert actions.assign_round(runtime) == "dry run: 4 assignments"


def test_the_round_task_comes_back_when_busy_or_full_without_piling_up(runtime, monkeypatch):
    from keepers import tasks

    class Task:
        def __init__(self):
            self.queued = []

        def apply_async(self, args, countdown, queue):
            self.queued.append((tuple(args), countdown))

    followed = []
    monkeypatch.setattr(tasks, "runtime", lambda: runtime)
    monkeypatch.setattr(tasks.confirm_all, "apply_async", lambda args, **_: followed.append(len(args[0])))
    task = Task()

    def busy(rt, queued_meanwhile=False):
        if queued_meanwhile:  # by the listener, while this one ran
            rt.state.mark_queued(actions.ROUND, ttl=10)
        raise actions.Busy("the send lock is held")

    monkeypatch.setattr(actions, "assign_round", busy)
    assert tasks._run(task, "assign_round") == "busy: runs again shortly"
    assert task.queued == [((), tasks.BUSY_POLL)]
    monkeypatch.setattr(actions, "assign_round", lambda rt: busy(rt, queued_meanwhile=True))
    assert tasks._run(task, "assign_round") == "busy: a round is queued already"
    assert len(task.queued) == 1

    n = actions.ROUND_SENDS
    full = [actions.Sent(f"0x{i:064x}", "assign", (1, i, 1), actions.ROUND, None, 0.0) for i in range(n)]
    monkeypatch.setattr(actions, "assign_round", lambda rt: full)
    runtime.state.clear_queued(actions.ROUND)
    task.queued.clear()
    assert tasks._run(task, "assign_round").startswith("sent 0x")
    assert followed == [n] and task.queued == [((), 0)]  # one confirmation task; the rest next round
    monkeypatch.setattr(actions, "assign_round", lambda rt: full[:-1])
    runtime.state.clear_queued(actions.ROUND)
    tasks._run(task, "assign_round")
    assert len(task.queued) == 1  # not full: nothing more to place

    monkeypatch.setattr(tasks.confirm, "apply_async", lambda args, **_: followed.append(1))
    batch = actions.Sent(
        "0x" + "ab" * 32, "assign_many", (MARKET, [(1, i, 1) for i in range(n)]), actions.ROUND, [], 0.0
    )
    monkeypatch.setattr(actions, "assign_round", lambda rt: [batch])
    runtime.state.clear_queued(actions.ROUND)
    task.queued.clear()
    tasks._run(task, "assign_round")
    assert task.queued == [((), 0)]  # a full batch: the rest next round


def test_the_listener_enqueues_one_round_for_the_open_shards_once_they_are_committed(runtime):
    from computenet import events as ev
    from keepers.listener import ROUND, Listener

    def posted(job, block):
        fields = dict.fromkeys(f.name for f in dataclasses.fields(ev.JobPosted))
        return ev.JobPosted(**fields | dict(block=block, job=job, shard_count=3, replication=1))

    runtime.redis.delete(runtime.state.key("open"))
    logs = {1: [posted(3, 1), posted(4, 1)], 2: [posted(5, 2)]}
    chain = SimpleNamespace(deployment_block=1, events=lambda first, end, **_: logs.get(first, []))
    queued = []  # each task with the open shards the projection held when it was enqueued
    enqueue = lambda task: queued.append((task, runtime.state.open_shards()))  # noqa: E731
    listener = Listener(KeeperSettings(), chain, runtime.state, enqueue, chain_now=lambda: NOW, head=lambda: 1)
    assert listener.step() == 2
    assert queued == [(ROUND, [(j, s) for j in (3, 4) for s in range(3)])]  # one task, after the commit
    listener.follower._head = lambda: 2
    assert listener.step() == 1
    assert len(queued) == 1  # the round still queued: not enqueued twice
    runtime.state.clear_queued(ROUND)  # a worker took it
    assert listener.sweep() == 1 and queued[-1][0] == ROUND


def test_a_finalize_round_sends_every_final_shard_due_in_one_batch(runtime, monkeypatch):
    def submitted(job, shard, deadline):
        return Replica(job, shard, 0, 1, 1, S.SUBMITTED, 1, 100, deadline, NOW - 700, 10, b"\x42" * 32)

    final = {(1, 0): NOW - 1, (1, 1): NOW - 1, (2, 0): NOW - 1, (2, 1): NOW + 10}  # the last window still open
    runtime.market.shards_of = lambda keys, roots, logged: [
        Shard(j, s, (submitted(j, s, final[(j, s)]),)) for j, s, _ in keys
    ]
    runtime.redis.zadd(runtime.state.key("due"), {f"finalize:{j}:{s}": NOW - 1 for j, s in final})
    sends = []
    monkeypatch.setattr(
        actions, "_send", lambda rt, d: sends.append(d) or SimpleNamespace(to_0x_hex=lambda: "0x" + "ef" * 32)
    )

    sent = actions.finalize_round(runtime)

    assert [(d.call, d.args) for d in sends] == [("finalize_many", (MARKET, [(1, 0), (1, 1), (2, 0)]))]
    assert (sent.task, sent.items()) == (actions.FINALIZE_ROUND, 3)
    runtime.redis.zrem(runtime.state.key("due"), "finalize:1:0", "finalize:1:1")
    assert actions.finalize_round(runtime).call == "finalize"  # one final shard: a plain finalize
