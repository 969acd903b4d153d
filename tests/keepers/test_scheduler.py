"""The keeper's scheduler: every hard rule, the preferences, the ranking, determinism, and
the indexed search against a brute-force reference that tries every asset."""

import ast
import dataclasses
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.domain import Asset, Job, Leased, Parameters, Replica, ReplicaState, Requirements, Spec, Stake
from computenet.heartbeat import Heartbeat
from computenet.preflight import UINT32_MAX, assign_problem, open_replica
from keepers import scheduler
from keepers.scheduler import (
    HELD_JOB,
    NO_ASSET,
    TOO_SMALL,
    Assignment,
    Batch,
    NodeState,
    OpenShard,
    Policy,
    Reputation,
    Skip,
    Terms,
    Weights,
    combine,
    cost_term,
    load_term,
    schedule,
    slack_term,
)

NOW = 1_700_000_000
DAY = 86_400
GRACE = 300
PARAMS = Parameters(
    keeper_fee_bps=100,
    protocol_fee_bps=50,
    slash_bps=1000,
    challenge_window=600,
    decline_window=60,
    lease_grace=GRACE,
    min_stake=100,
    challenge_bond=10,
)
OWNER_A = "0x" + "aa" * 20
OWNER_B = "0x" + "bb" * 20
OWNER_C = "0x" + "cc" * 20
GPU_SECONDS = 3600  # with one GPU the lease is 3600 + 300 s
LEASE_END = NOW + GPU_SECONDS + GRACE


NO_AGENT = "0x" + "00" * 20


def asset(
    id,
    owner=None,
    gpus=1,
    vram=80_000,
    price=100,
    expire=NOW + DAY,
    active=True,
    stake=1_000,
    unbonding=0,
    max_leases=16,
    open_leases=0,
    gpus_leased=0,
    agent=None,
    cpu=8,
    memory=16_384,
    disk=65_536,
    held=(0, 0, 0),
):
    spec = Spec(
        gpu_model=1,
        vram_mib=vram,
        gpu_count=gpus,
        cpu_cores=cpu,
        region=0,
        price=price,
        expire=expire,
        active=active,
        max_leases=max_leases,
        memory_mib=memory,
        disk_mib=disk,
    )
    return Asset(
        id=id,
        owner=owner or f"0x{id:040x}",
        agent=agent or f"0x{id + 1000:040x}",
        spec=spec,
        commit=b"\x00" * 32,
        stake=Stake(amount=stake, open_leases=open_leases, gpus_leased=gpus_leased, unbond_at=0, unbonding=unbonding),
        leased=Leased(*held),
    )


def leased(a, req):
    """The asset as the chain has it once it takes one more lease of `req`."""
    stake = dataclasses.replace(
        a.stake, open_leases=a.stake.open_leases + 1, gpus_leased=a.stake.gpus_leased + req.gpu_count
    )
    held = Leased(
        a.leased.cpu_cores + req.cpu_cores, a.leased.memory_mib + req.memory_mib, a.leased.disk_mib + req.disk_mib
    )
    return dataclasses.replace(a, stake=stake, leased=held)


def node(id, util=10, free=80_000, running=0, capacity=4, last_seen=NOW):
    return NodeState(
        asset=id,
        gpu_utilization_pct=util,
        free_vram_mib=free,
        running_shards=running,
        capacity=capacity,
        last_seen=last_seen,
    )


def job(
    id=1,
    shards=1,
    replication=1,
    gpus=1,
    vram=40_000,
    max_price=200,
    gpu_seconds=GPU_SECONDS,
    deadline=NOW + DAY,
    cpu=1,
    memory=1_024,
    disk=1_024,
):
    req = Requirements(
        min_vram_mib=vram,
        gpu_count=gpus,
        max_price=max_price,
        max_gpu_seconds=gpu_seconds,
        deadline=deadline,
        shard_count=shards,
        replication=replication,
        verification=1 if replication > 1 else 0,
        cpu_cores=cpu,
        memory_mib=memory,
        disk_mib=disk,
    )
    return Job(id, "0x" + "c1" * 20, 0, b"\x01" * 32, req, 100, 50, shards * replication)


def replica(j, shard, index, state=ReplicaState.OPEN, asset_id=0):
    return Replica(
        job=j.id,
        shard=shard,
        index=index,
        asset=asset_id,
        keeper_id=0,
        state=state,
        lease=0,
        price=0,
        deadline=0,
        since=0,
        gpu_seconds=0,
    )


def open_shard(j, shard=0, states=None):
    """All replicas open, or `states`: a list of ReplicaState or (ReplicaState, asset id)."""
    states = states or [ReplicaState.OPEN] * j.requirements.replication
    reps = []
    for index, state in enumerate(states):
        state, asset_id = state if isinstance(state, tuple) else (state, 0)
        reps.append(replica(j, shard, index, state, asset_id))
    return OpenShard(j, shard, tuple(reps))


def run(shards, assets, nodes=None, reputations=None, weights=Weights(), policy=Policy(), **kwargs):
    if nodes is None:
        nodes = [node(a.id) for a in assets]
    return schedule(shards, assets, nodes, reputations or {}, PARAMS, NOW, weights, policy, **kwargs)


def picked(shards, assets, **kwargs):
    return [(a.job, a.shard, a.replica, a.asset) for a in run(shards, assets, **kwargs)]


# --- the brute-force reference --------------------------------------------------------


def brute_force(shards, assets, nodes, reputations, params, now, weights, policy):
    """Try every asset for every replica with preflight's own rules, each asset's lease and GPU
    counts moving as the chain's would; the spec the index must meet."""
    assets = sorted(assets, key=lambda a: a.id)
    owner_of = {a.id: a.owner.lower() for a in assets}
    node_of = {n.asset: n for n in nodes}
    state = {}
    for a in assets:
        n = node_of.get(a.id)
        if n is None:
            if policy.require_heartbeat:
                continue
            free = a.spec.vram_mib * a.spec.gpu_count
            n = NodeState(a.id, policy.assumed_utilization_pct, free, 0, policy.assumed_capacity, now)
        if now - n.last_seen > policy.max_heartbeat_age or n.gpu_utilization_pct > policy.max_utilization_pct:
            continue
        state[a.id] = {
            "util": n.gpu_utilization_pct,
            "run": max(n.running_shards, a.stake.open_leases),
            "cap": min(n.capacity, a.spec.max_leases),
            "free": n.free_vram_mib,
        }
    replicas = {(s.job.id, s.shard): sorted(s.replicas, key=lambda r: r.index) for s in shards}
    jobs = {(s.job.id, s.shard): s.job for s in shards}
    holding = (ReplicaState.ASSIGNED, ReplicaState.SUBMITTED, ReplicaState.DISPUTED)
    held = {}
    for s in shards:
        held.setdefault(s.job.id, set()).update(r.asset for r in s.replicas if r.state in holding)
    order = sorted(
        (key for key, reps in replicas.items() if any(r.state == ReplicaState.OPEN for r in reps)),
        key=lambda key: (jobs[key].requirements.deadline, key[0], key[1]),
    )
    out = []
    for key in order:
        j, req = jobs[key], jobs[key].requirements
        lease_end = now + req.lease_seconds(params.lease_grace)
        need = req.min_vram_mib * req.gpu_count if policy.check_free_vram else 0
        while any(r.state == ReplicaState.OPEN for r in replicas[key]):
            reps = replicas[key]
            owners = {owner_of.get(r.asset) for r in reps if r.state not in (ReplicaState.OPEN, ReplicaState.CANCELLED)}
            best = {}
            for i, a in enumerate(assets):
                if assign_problem(j, key[1], reps, a, params, now) is not None or a.id not in state:
                    continue
                s = state[a.id]
                if s["run"] >= s["cap"] or (s["run"] and s["free"] < need) or a.owner.lower() in owners:
                    continue
                score = combine(
                    weights,
                    cost_term(a.spec.price, req.max_price),
                    slack_term(a.spec.expire, req.deadline, lease_end, now),
                    load_term(s["util"], s["run"], s["cap"]),
                    reputations.get(a.id, Reputation()).score(),
                )
                tier = a.id in held[j.id]
                if tier not in best or score > best[tier][0]:  # ids ascend: first of equals wins
                    best[tier] = (score, i)
            if not best:
                break
            tier = min(best)
            score, i = best[tier]
            a = assets[i]
            assets[i] = leased(a, req)
            slot, _ = open_replica(reps, a.id)
            out.append((j.id, key[1], slot, a.id, score, (HELD_JOB,) if tier else ()))
            replicas[key] = [
                dataclasses.replace(r, state=ReplicaState.ASSIGNED, asset=a.id) if r.index == slot else r for r in reps
            ]
            state[a.id]["run"] += 1
            state[a.id]["free"] -= need
            held[j.id].add(a.id)
    return out


def as_tuples(assignments):
    return [(a.job, a.shard, a.replica, a.asset, a.score, a.reasons) for a in assignments]


def replay(assignments, shards, assets, nodes, policy=Policy()):
    """Apply the assignments in order as the chain would, checking each against preflight and the node rules."""
    by_id = {a.id: a for a in assets}  # as the chain has them after the assignments so far
    node_of = {n.asset: n for n in nodes}
    replicas = {(s.job.id, s.shard): list(s.replicas) for s in shards}
    jobs = {(s.job.id, s.shard): s.job for s in shards}
    given = {}
    for a in assignments:
        key = (a.job, a.shard)
        reps, asset_ = replicas[key], by_id[a.asset]
        assert assign_problem(jobs[key], a.shard, reps, asset_, PARAMS, NOW) is None
        assert open_replica(reps, a.asset)[0] == a.replica
        live = [r.asset for r in reps if r.state not in (ReplicaState.OPEN, ReplicaState.CANCELLED)]
        live_owners = [by_id[id].owner.lower() for id in live if id in by_id]
        assert asset_.owner.lower() not in live_owners
        given[a.asset] = given.get(a.asset, 0) + 1
        by_id[a.asset] = leased(asset_, jobs[key].requirements)  # the next check sees its caps filling
        n = node_of.get(a.asset)
        if n is not None:
            assert NOW - n.last_seen <= policy.max_heartbeat_age
            assert n.gpu_utilization_pct <= policy.max_utilization_pct
            assert n.running_shards + given[a.asset] <= n.capacity
        else:
            assert not policy.require_heartbeat and given[a.asset] <= policy.assumed_capacity
        replicas[key] = [
            dataclasses.replace(r, state=ReplicaState.ASSIGNED, asset=a.asset) if r.index == a.replica else r
            for r in reps
        ]


# --- hypothesis markets -----------------------------------------------------------------

owners = st.sampled_from([OWNER_A, OWNER_B, OWNER_C, OWNER_C.upper().replace("0X", "0x")])


def mostly(usual, *others):
    """The usual value seven times in eight (and what hypothesis shrinks to), else one of the others."""
    return st.sampled_from([usual] * (7 * len(others)) + list(others))


@st.composite
def markets(draw):
    """Small markets where most values pass the rules and every rule fails now and then."""
    ids = draw(st.lists(st.integers(1, 30), unique=True, min_size=1, max_size=12))
    if draw(mostly(False, True)):
        ids.append(UINT32_MAX + 1)
    assets, nodes, reputations = [], [], {}
    for id in ids:
        gpus = draw(mostly(1, 0, 2, 4))
        assets.append(
            asset(
                id,
                owner=draw(owners),
                gpus=gpus,
                vram=draw(mostly(24, 8, 16)),
                price=draw(st.sampled_from([0, 5, 10, 10, 20, 30])),
                expire=NOW + draw(mostly(DAY, 0, 500, 2_000, 4_000)),
                active=draw(mostly(True, False)),
                stake=draw(mostly(1_000, 0, 100)),
                unbonding=draw(mostly(0, 950)),
                max_leases=draw(mostly(16, 0, 1, 2)),
                open_leases=draw(mostly(0, 1, 2)),
                gpus_leased=min(gpus, draw(mostly(0, 1, 2))),
                agent=draw(mostly(None, NO_AGENT)),
                cpu=draw(mostly(4, 1, 2)),
                memory=draw(mostly(4_096, 1_024, 2_048)),
                disk=draw(mostly(4_096, 1_024)),
                held=(draw(mostly(0, 1, 4)), draw(mostly(0, 1_024, 3_072)), draw(mostly(0, 2_048))),
            )
        )
        if draw(mostly(True, False)):
            capacity = draw(mostly(3, 0, 1, 2))
            nodes.append(
                NodeState(
                    asset=id,
                    gpu_utilization_pct=draw(st.sampled_from([0, 30, 60, 90, 95])),
                    free_vram_mib=draw(st.sampled_from([0, 8, 16, 48, 100])),
                    running_shards=draw(mostly(0, 1, 2, 3)),
                    capacity=capacity,
                    last_seen=NOW - draw(mostly(0, -3, 10, 30, 31, 200)),
                )
            )
        if draw(st.booleans()):
            reputations[id] = Reputation(draw(st.integers(0, 5)), draw(st.integers(0, 3)), draw(st.integers(0, 2)))
    shards = []
    for job_id in draw(st.lists(st.integers(1, 6), unique=True, min_size=1, max_size=3)):
        count = draw(st.integers(1, 3))
        replication = draw(st.integers(1, 3))
        j = job(
            job_id,
            shards=count,
            replication=replication,
            gpus=draw(mostly(1, 0, 2)),
            vram=draw(mostly(16, 8, 24)),
            max_price=draw(mostly(20, 0, 5, 10)),
            gpu_seconds=draw(mostly(600, 1, 1_800)),
            deadline=NOW + draw(mostly(DAY, 0, 400, 1_000, 3_000)),
            cpu=draw(mostly(1, 2, 3, 5)),
            memory=draw(mostly(1_024, 2_048, 5_000)),
            disk=draw(mostly(1_024, 2_048, 5_000)),
        )
        indices = draw(st.lists(st.integers(0, count - 1), unique=True, min_size=1, max_size=count))
        if draw(mostly(False, True)):
            indices.append(count)  # an unknown shard
        for shard in indices:
            states = []
            for _ in range(replication):
                state = draw(mostly(ReplicaState.OPEN, *list(ReplicaState)[1:]))
                states.append((state, draw(st.sampled_from(ids)) if ids and state != ReplicaState.OPEN else 0))
            shards.append(open_shard(j, shard, states))
    weights = Weights(*(draw(st.sampled_from([0, 0.1, 0.25, 0.4, 1.0])) for _ in range(4)))
    policy = Policy(
        max_utilization_pct=draw(st.sampled_from([90, 100])),
        require_heartbeat=draw(st.booleans()),
        assumed_capacity=draw(st.integers(1, 2)),
        check_free_vram=draw(st.booleans()),
    )
    tuning = {"band_size": draw(st.integers(1, 3)), "max_bands": draw(st.sampled_from([1, 2, 100]))}
    return shards, assets, nodes, reputations, weights, policy, tuning


@given(markets())
@settings(max_examples=500, deadline=None)
def test_index_equals_brute_force(market):
    shards, assets, nodes, reputations, weights, policy, tuning = market
    got = schedule(shards, assets, nodes, reputations, PARAMS, NOW, weights, policy, **tuning)
    assert as_tuples(got) == brute_force(shards, assets, nodes, reputations, PARAMS, NOW, weights, policy)


@given(markets())
@settings(max_examples=300, deadline=None)
def test_every_assignment_passes_the_chain_rules_in_sequence(market):
    shards, assets, nodes, reputations, weights, policy, tuning = market
    got = schedule(shards, assets, nodes, reputations, PARAMS, NOW, weights, policy, **tuning)
    replay(got, shards, assets, nodes, policy)
    for a in got:
        assert a.score == combine(weights, a.terms.cost, a.terms.slack, a.terms.load, a.terms.reputation)
        assert all(0.0 <= t <= 1.0 for t in dataclasses.astuple(a.terms))


@given(markets(), st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_input_order_does_not_matter(market, rnd):
    shards, assets, nodes, reputations, weights, policy, tuning = market
    expected = schedule(shards, assets, nodes, reputations, PARAMS, NOW, weights, policy)
    shuffled = [list(x) for x in (shards, assets, nodes)]
    for items in shuffled:
        rnd.shuffle(items)
    shuffled = (
        [dataclasses.replace(s, replicas=tuple(rnd.sample(s.replicas, len(s.replicas)))) for s in shuffled[0]],
        shuffled[1],
        {n.asset: n for n in shuffled[2]},
    )
    reps = dict(rnd.sample(sorted(reputations.items()), len(reputations)))
    again = schedule(*shuffled, reps, PARAMS, NOW, weights, policy, **tuning)
    assert again == expected
    assert schedule(shards, assets, nodes, reputations, PARAMS, NOW, weights, policy) == expected


def left_out(batch, exclude, only):
    """Every placement of a batch with `exclude` and `only` (asset ids) left out of each."""
    got = []
    for job_id, shard in batch.order():
        while batch.has_open_replica(job_id, shard):
            decision = batch.place(job_id, shard, exclude=exclude, only=only)
            if isinstance(decision, Skip):
                break
            got.append(decision)
    return got


def paused(assets, ids):
    return [
        dataclasses.replace(a, spec=dataclasses.replace(a.spec, active=False)) if a.id in ids else a for a in assets
    ]


@given(markets(), st.data())
@settings(max_examples=200, deadline=None)
def test_assets_left_out_of_a_placement_are_as_if_paused(market, data):
    """`place`'s exclude and only keep the exhaustive argmax: the same winners as the brute
    force over a market where those assets are paused (still owners and holders)."""
    shards, assets, nodes, reputations, weights, policy, tuning = market
    ids = sorted(a.id for a in assets)
    exclude = data.draw(st.sets(st.sampled_from(ids)))
    only = data.draw(st.none() | st.sets(st.sampled_from(ids)))
    out = exclude | (set(ids) - only if only is not None else set())
    batch = Batch(shards, assets, nodes, reputations, PARAMS, NOW, weights, policy, **tuning)
    got = left_out(batch, exclude, only)
    expected = brute_force(shards, paused(assets, out), nodes, reputations, PARAMS, NOW, weights, policy)
    assert as_tuples(got) == expected


@pytest.mark.parametrize("allowed", [12, 300])  # few: scored one by one; many: searched
def test_only_equals_brute_force_on_a_larger_market(allowed):
    shards, assets, nodes, reputations = synthetic(random.Random(5), 400, 12)
    rng = random.Random(allowed)
    only = set(rng.sample(range(1, 401), allowed))
    exclude = set(rng.sample(range(1, 401), 20))
    batch = Batch(shards, assets, nodes, reputations, PARAMS, NOW, Weights(), Policy(), band_size=4)
    got = left_out(batch, exclude, only)
    assert len(got) >= 10
    expected = brute_force(
        shards,
        paused(assets, exclude | (set(range(1, 401)) - only)),
        nodes,
        reputations,
        PARAMS,
        NOW,
        Weights(),
        Policy(),
    )
    assert as_tuples(got) == expected


def test_a_job_too_big_for_every_allowed_asset_says_so():
    big, small = asset(1, cpu=16), asset(2, cpu=4)
    batch = Batch([open_shard(job(cpu=9))], [big, small], [node(1), node(2)], {}, PARAMS, NOW)
    assert batch.place(1, 0, only={2}) == Skip(1, 0, 0, TOO_SMALL)
    assert batch.place(1, 0, exclude={1}) == Skip(1, 0, 0, NO_ASSET)  # left out, not too small
    assert batch.place(1, 0).asset == 1


def synthetic(rng, n_assets, n_jobs):
    assets, nodes, reputations, shards = [], [], {}, []
    for id in range(1, n_assets + 1):
        assets.append(
            asset(
                id,
                owner=f"0x{rng.randrange(n_assets // 3 + 1):040x}",
                gpus=rng.choice([1, 1, 2, 4, 8]),
                vram=rng.choice([16_000, 24_000, 40_000, 80_000]),
                price=rng.randrange(10, 400),
                expire=NOW + rng.choice([DAY, DAY, 2 * 3600, 5_000]),
                active=rng.random() < 0.95,
            )
        )
        if rng.random() < 0.9:
            capacity = rng.randint(1, 3)
            nodes.append(
                node(
                    id,
                    util=rng.randrange(101),
                    free=rng.randrange(200_000),
                    running=rng.randint(0, capacity),
                    capacity=capacity,
                    last_seen=NOW - rng.randrange(40),
                )
            )
        if rng.random() < 0.7:
            reputations[id] = Reputation(rng.randrange(50), rng.randrange(5), rng.randrange(2))
    for job_id in range(1, n_jobs + 1):
        replication = rng.choice([1, 1, 1, 2, 3])
        count = rng.randint(1, 8)
        j = job(
            job_id,
            shards=count,
            replication=replication,
            gpus=rng.choice([1, 1, 2, 4]),
            vram=rng.choice([16_000, 24_000, 40_000, 80_000]),
            max_price=rng.randrange(50, 500),
            gpu_seconds=rng.randrange(600, 7_200),
            deadline=NOW + rng.randrange(3_000, DAY),
        )
        shards.extend(open_shard(j, shard) for shard in range(count))
    return shards, assets, nodes, reputations


@pytest.mark.parametrize("seed", range(3))
def test_index_equals_brute_force_on_a_larger_market(seed):
    shards, assets, nodes, reputations = synthetic(random.Random(seed), 400, 30)
    got = schedule(shards, assets, nodes, reputations, PARAMS, NOW, Weights(), Policy(), band_size=4)
    assert len(got) > 50
    assert as_tuples(got) == brute_force(shards, assets, nodes, reputations, PARAMS, NOW, Weights(), Policy())
    assert got == schedule(shards, assets, nodes, reputations, PARAMS, NOW, Weights(), Policy())
    replay(got, shards, assets, nodes)


# --- the chain's rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        asset(1, price=50, stake=99),  # asset_stakes: stake below minimum
        asset(1, price=50, stake=1_000, unbonding=901),  # unbonding stake does not count
        asset(1, price=50, agent=NO_AGENT),  # compute_asset: no agent (sold; the buyer has not set one)
        asset(1, price=50, max_leases=2, open_leases=2),  # asset_stakes: asset at lease capacity
        asset(1, price=50, gpus=2, gpus_leased=2),  # asset_stakes: asset gpus all leased
        asset(1, price=50, cpu=1, held=(1, 0, 0)),  # asset_stakes: asset cpu cores all leased
        asset(1, price=50, memory=1_500, held=(0, 1_000, 0)),  # asset_stakes: asset memory all leased
        asset(1, price=50, disk=1_500, held=(0, 0, 1_000)),  # asset_stakes: asset disk all leased
        asset(1, price=50, cpu=0),  # compute_asset: asset has too few cpu cores (job asks 1)
        asset(1, price=50, memory=1_023),  # compute_asset: asset has too little memory
        asset(1, price=50, disk=1_023),  # compute_asset: asset has too little disk
        asset(1, price=50, gpus=0),  # job_market: asset has too few gpus
        asset(1, price=50, active=False),  # job_market: asset is paused
        asset(1, price=50, vram=39_999),  # too little vram
        asset(1, price=201),  # price above cap
        asset(1, price=50, expire=LEASE_END - 1),  # expires before the lease ends
    ],
)
def test_assets_the_chain_would_refuse_are_never_chosen(bad):
    good = asset(2, price=150)
    assert picked([open_shard(job())], [bad, good]) == [(1, 0, 0, 2)]
    assert picked([open_shard(job())], [bad]) == []


def test_edge_values_the_chain_accepts_are_used():
    edge = asset(1, price=200, vram=40_000, stake=100, expire=LEASE_END)
    assert picked([open_shard(job())], [edge]) == [(1, 0, 0, 1)]


def test_ids_beyond_32_bits_are_never_chosen():
    assert picked([open_shard(job())], [asset(UINT32_MAX + 1)]) == []
    assert picked([open_shard(job())], [asset(UINT32_MAX)]) == [(1, 0, 0, UINT32_MAX)]


def test_a_lease_that_would_end_after_the_deadline_is_not_proposed():
    late = job(deadline=LEASE_END - 1)
    assert picked([open_shard(late)], [asset(1)]) == []
    batch = Batch([open_shard(late)], [asset(1)], [node(1)], {}, PARAMS, NOW)
    assert batch.place(1, 0) == Skip(1, 0, 0, "job_market: lease would end after the deadline")
    assert picked([open_shard(job(deadline=LEASE_END))], [asset(1)]) == [(1, 0, 0, 1)]


def test_an_asset_never_runs_two_replicas_of_one_shard():
    j = job(replication=3)
    shard = open_shard(j, states=[(ReplicaState.ASSIGNED, 1), ReplicaState.OPEN, ReplicaState.OPEN])
    assets = [asset(1, owner=OWNER_A, price=1), asset(2, owner=OWNER_B, price=50)]
    assert picked([shard], assets) == [(1, 0, 1, 2)]  # asset 1 is the cheapest but already runs it


def test_finalized_replicas_block_their_asset_and_cancelled_ones_do_not():
    j = job(replication=2)
    done = open_shard(j, states=[(ReplicaState.FINALIZED, 1), ReplicaState.OPEN])
    assert picked([done], [asset(1)]) == []
    cancelled = open_shard(j, states=[(ReplicaState.CANCELLED, 1), ReplicaState.OPEN])
    assert picked([cancelled], [asset(1)]) == [(1, 0, 1, 1)]


def test_unknown_shard_index_is_skipped():
    bogus = open_shard(job(shards=1), shard=1)
    assert picked([bogus], [asset(1)]) == []
    batch = Batch([bogus], [asset(1)], [node(1)], {}, PARAMS, NOW)
    assert batch.place(1, 1) == Skip(1, 1, 0, "job_market: unknown shard")


# --- node state -----------------------------------------------------------------------


def test_stale_nodes_are_skipped():
    assets = [asset(1, price=10), asset(2, price=150)]
    nodes = [node(1, last_seen=NOW - 31), node(2, last_seen=NOW - 30)]
    assert picked([open_shard(job())], assets, nodes=nodes) == [(1, 0, 0, 2)]
    assert picked([open_shard(job())], assets, nodes=nodes, policy=Policy(max_heartbeat_age=31)) == [(1, 0, 0, 1)]


def test_nodes_without_heartbeat_need_the_policy_to_allow_them():
    assets = [asset(1)]
    assert picked([open_shard(job())], assets, nodes=[]) == []
    lenient = Policy(require_heartbeat=False, assumed_capacity=1, assumed_utilization_pct=50)
    got = run([open_shard(job(shards=2)), open_shard(job(shards=2), 1)], assets, nodes=[], policy=lenient)
    assert [(a.shard, a.asset) for a in got] == [(0, 1)]  # one assumed slot
    assert got[0].terms.load == load_term(50, 0, 1)


def test_overloaded_nodes_are_skipped():
    assets = [asset(1, price=10), asset(2, price=10), asset(3, price=150)]
    nodes = [node(1, util=91), node(2, running=2, capacity=2), node(3, util=90, running=1, capacity=2)]
    assert picked([open_shard(job())], assets, nodes=nodes) == [(1, 0, 0, 3)]
    assert picked([open_shard(job())], assets, nodes=[node(1, capacity=0)] + nodes[1:2]) == []


def test_capacity_is_consumed_within_the_batch():
    jobs = [job(id) for id in (1, 2, 3)]
    got = picked(
        [open_shard(j) for j in jobs], [asset(1, gpus=4)], nodes=[node(1, free=200_000, running=1, capacity=3)]
    )
    assert got == [(1, 0, 0, 1), (2, 0, 0, 1)]


def test_the_chains_lease_count_and_cap_bound_what_the_agent_reports():
    # The agent reports an idle node with four slots, but the chain already counts two open
    # leases against a registered cap of three: one more lease, then the asset is full.
    # (CPU work, so that no GPU count gets in the way.)
    j = job(shards=3, gpus=0)
    shards = [open_shard(j, s) for s in range(3)]
    full = asset(1, price=10, max_leases=3, open_leases=2)
    other = asset(2, price=90)
    assert [a for _, _, _, a in picked(shards, [full, other])] == [1, 2, 2]  # the third: 1 is full
    assert picked(shards, [asset(1, max_leases=2, open_leases=2)]) == []


def test_free_vram_is_checked_on_busy_nodes_only():
    big = job(gpus=2, vram=40_000)  # needs 80,000 MiB across the GPUs
    idle_low = node(1, free=1_000, running=0)
    assert picked([open_shard(big)], [asset(1, gpus=2)], nodes=[idle_low]) == [(1, 0, 0, 1)]
    busy_low = node(1, free=79_999, running=1)
    assert picked([open_shard(big)], [asset(1, gpus=2)], nodes=[busy_low]) == []
    unchecked = Policy(check_free_vram=False)
    assert picked([open_shard(big)], [asset(1, gpus=2)], nodes=[busy_low], policy=unchecked) == [(1, 0, 0, 1)]
    busy_ok = node(1, free=80_000, running=1)
    assert picked([open_shard(big)], [asset(1, gpus=2)], nodes=[busy_ok]) == [(1, 0, 0, 1)]


def test_free_vram_is_taken_by_leases_in_the_batch():
    jobs = [job(id, vram=40_000) for id in (1, 2, 3)]
    got = picked([open_shard(j) for j in jobs], [asset(1, gpus=4)], nodes=[node(1, free=90_000, capacity=4)])
    assert got == [(1, 0, 0, 1), (2, 0, 0, 1)]  # the second sees 50,000 free, the third 10,000


# --- GPUs and agents -------------------------------------------------------------------


@pytest.mark.parametrize(
    "need",
    [dict(cpu=3), dict(memory=6_000), dict(disk=6_000)],
)
def test_cpu_memory_and_disk_are_never_given_twice_in_a_batch(need):
    """An asset with 5 cores, 10,000 MiB of memory and disk and room for four leases takes
    one such lease; the next goes to the dearer asset, the one after waits."""
    jobs = [job(id, **need) for id in (1, 2, 3)]
    assets = [
        asset(1, price=10, gpus=4, max_leases=4, cpu=5, memory=10_000, disk=10_000),
        asset(2, price=150, gpus=4, max_leases=4, cpu=5, memory=10_000, disk=10_000),
    ]
    nodes = [node(1, free=400_000), node(2, free=400_000)]
    assert picked([open_shard(j) for j in jobs], assets, nodes=nodes) == [(1, 0, 0, 1), (2, 0, 0, 2)]


def test_cpu_memory_and_disk_leased_on_chain_are_not_free():
    busy = asset(1, price=10, cpu=8, memory=8_192, disk=8_192, held=(6, 6_000, 6_000), open_leases=1, gpus=2)
    other = asset(2, price=150)
    assert picked([open_shard(job(cpu=3))], [busy, other]) == [(1, 0, 0, 2)]
    assert picked([open_shard(job(memory=2_500))], [busy, other]) == [(1, 0, 0, 2)]
    assert picked([open_shard(job(disk=2_500))], [busy, other]) == [(1, 0, 0, 2)]
    assert picked([open_shard(job(cpu=2, memory=2_192, disk=2_192))], [busy, other]) == [(1, 0, 0, 1)]


@pytest.mark.parametrize("need", [dict(cpu=9), dict(memory=16_385), dict(disk=65_537)])
def test_a_job_bigger_than_every_asset_is_skipped_saying_so(need):
    """No asset has that much at all: the skip says so, rather than "no eligible asset"."""
    assets = [asset(1), asset(2)]
    batch = Batch([open_shard(job(**need))], assets, [node(a.id) for a in assets], {}, PARAMS, NOW)
    assert batch.place(1, 0) == Skip(1, 0, 0, TOO_SMALL)


def test_a_gpu_is_never_given_twice_in_a_batch():
    """One GPU and room for three leases: the second 1-GPU job goes to the dearer asset."""
    jobs = [job(id) for id in (1, 2)]
    assets = [asset(1, price=10, max_leases=3), asset(2, price=150)]
    assert picked([open_shard(j) for j in jobs], assets) == [(1, 0, 0, 1), (2, 0, 0, 2)]
    assert picked([open_shard(j) for j in jobs], assets[:1]) == [(1, 0, 0, 1)]


def test_a_four_gpu_asset_takes_two_two_gpu_leases():
    jobs = [job(id, gpus=2) for id in (1, 2, 3)]
    assets = [asset(1, price=10, gpus=4), asset(2, price=150, gpus=2)]
    nodes = [node(1, free=400_000), node(2)]
    got = picked([open_shard(j) for j in jobs], assets, nodes=nodes)
    assert got == [(1, 0, 0, 1), (2, 0, 0, 1), (3, 0, 0, 2)]


def test_gpus_leased_on_chain_are_not_free():
    half = asset(1, price=10, gpus=4, gpus_leased=3, open_leases=1)
    other = asset(2, price=150, gpus=2)
    assert picked([open_shard(job(gpus=2))], [half, other]) == [(1, 0, 0, 2)]
    assert picked([open_shard(job(gpus=1))], [half, other]) == [(1, 0, 0, 1)]


@pytest.mark.parametrize("leased_on_chain", [False, True])
def test_cpu_work_goes_to_an_asset_whose_gpus_are_all_leased(leased_on_chain):
    """CPU work holds no GPU, so the chain takes it on a GPU-full asset below max_leases,
    whether its GPU was leased earlier in this batch or on chain already."""
    cpu = open_shard(job(2, gpus=0))
    if leased_on_chain:
        shards, assets = [cpu], [asset(1, gpus_leased=1, open_leases=1)]
    else:
        shards, assets = [open_shard(job(1, deadline=NOW + 5_000)), cpu], [asset(1)]
    got = picked(shards, assets)
    assert got[-1] == (2, 0, 0, 1)
    assert len(got) == len(shards)


def test_assets_without_an_agent_are_skipped():
    sold = asset(1, price=10, agent=NO_AGENT)
    assert picked([open_shard(job())], [sold, asset(2, price=150)]) == [(1, 0, 0, 2)]
    assert picked([open_shard(job())], [sold]) == []


def test_node_state_from_a_heartbeat():
    hb = Heartbeat(
        asset=7, timestamp=NOW - 4, gpu_utilization_pct=20, free_vram_mib=1000, running_shards=1, capacity=2, seq=9
    )
    assert NodeState.from_heartbeat(hb) == NodeState(7, 20, 1000, 1, 2, NOW - 4)


@pytest.mark.parametrize(
    "fields", [{"gpu_utilization_pct": 101}, {"capacity": -1}, {"running_shards": -1}, {"free_vram_mib": -1}]
)
def test_node_state_refuses_impossible_values(fields):
    with pytest.raises(ValueError):
        dataclasses.replace(node(1), **fields)


# --- spreading ------------------------------------------------------------------------


def test_shards_of_a_job_spread_over_distinct_assets():
    j = job(shards=3)
    assets = [asset(1, price=10), asset(2, price=20), asset(3, price=30)]
    got = picked([open_shard(j, s) for s in range(3)], assets)
    assert got == [(1, 0, 0, 1), (1, 1, 0, 2), (1, 2, 0, 3)]


def test_an_asset_holding_the_job_is_a_last_resort():
    j = job(shards=2)
    got = run([open_shard(j, 0), open_shard(j, 1)], [asset(1, gpus=2)])
    assert [(a.shard, a.asset, a.reasons) for a in got] == [(0, 1, ()), (1, 1, (HELD_JOB,))]


def test_assets_holding_the_job_on_chain_are_avoided():
    j = job(shards=2)
    running = open_shard(j, 0, states=[(ReplicaState.ASSIGNED, 1)])  # no open replica: only tells who holds the job
    got = picked([running, open_shard(j, 1)], [asset(1, price=1), asset(2, price=150)])
    assert got == [(1, 1, 0, 2)]


def test_other_jobs_may_share_an_asset():
    got = picked([open_shard(job(1)), open_shard(job(2))], [asset(1, price=10, gpus=2), asset(2, price=150)])
    assert got == [(1, 0, 0, 1), (2, 0, 0, 1)]


def test_replicas_go_to_distinct_owners():
    j = job(replication=2)
    assets = [asset(1, owner=OWNER_A, price=10), asset(2, owner=OWNER_A, price=20), asset(3, owner=OWNER_B, price=190)]
    assert picked([open_shard(j)], assets) == [(1, 0, 0, 1), (1, 0, 1, 3)]


def test_owner_comparison_ignores_case():
    j = job(replication=2)
    assets = [asset(1, owner=OWNER_C, price=10), asset(2, owner=OWNER_C.upper().replace("0X", "0x"), price=20)]
    assert picked([open_shard(j)], assets) == [(1, 0, 0, 1)]


def test_a_replica_with_no_independent_owner_stays_open():
    j = job(replication=3)
    assets = [asset(1, owner=OWNER_A, price=10), asset(2, owner=OWNER_A), asset(3, owner=OWNER_B)]
    assert picked([open_shard(j)], assets) == [(1, 0, 0, 1), (1, 0, 1, 3)]
    batch = Batch([open_shard(j)], assets, [node(a.id) for a in assets], {}, PARAMS, NOW)
    assert [type(batch.place(1, 0)) for _ in range(3)] == [Assignment, Assignment, Skip]
    assert batch.place(1, 0) == Skip(1, 0, 2, NO_ASSET)


def test_owners_of_replicas_already_on_chain_are_excluded():
    j = job(replication=2)
    shard = open_shard(j, states=[(ReplicaState.SUBMITTED, 9), ReplicaState.OPEN])
    assets = [asset(9, owner=OWNER_A), asset(1, owner=OWNER_A, price=10), asset(2, owner=OWNER_B, price=150)]
    assert picked([shard], assets) == [(1, 0, 1, 2)]


# --- order and ranking ----------------------------------------------------------------


def test_earliest_deadline_first():
    late, soon = job(1, deadline=NOW + DAY), job(2, deadline=NOW + 5_000)
    got = picked([open_shard(late), open_shard(soon)], [asset(1)], nodes=[node(1, capacity=1)])
    assert got == [(2, 0, 0, 1)]
    also_soon = job(3, deadline=NOW + 5_000)
    batch = Batch([open_shard(late), open_shard(soon), open_shard(also_soon)], [asset(1)], [node(1)], {}, PARAMS, NOW)
    assert batch.order() == [(2, 0), (3, 0), (1, 0)]


def test_ties_go_to_the_lowest_asset_id():
    assets = [asset(id) for id in (5, 3, 9)]
    assert picked([open_shard(job())], assets) == [(1, 0, 0, 3)]


def test_score_terms_are_as_documented():
    j = job(max_price=200, deadline=NOW + 10_000)
    a = asset(1, price=50, expire=NOW + 8_000)
    n = node(1, util=40, running=1, capacity=4)
    got = run([open_shard(j)], [a], nodes=[n], reputations={1: Reputation(8, 1, 0)})
    terms = Terms(cost=0.75, slack=(8_000 - 3_900) / 10_000, load=1 - (0.4 + 0.25) / 2, reputation=9 / 11)
    assert got[0].terms == terms
    assert got[0].score == pytest.approx(0.4 * 0.75 + 0.1 * 0.41 + 0.25 * 0.675 + 0.25 * 9 / 11)


def test_reputation_formula():
    assert Reputation().score() == 0.5
    assert Reputation(finalized=8, reclaimed=1).score() == 9 / 11
    assert Reputation(finalized=8, disputes_lost=1).score() == 9 / 13
    assert Reputation(finalized=1000).score() > Reputation(finalized=10).score()
    with pytest.raises(ValueError):
        Reputation(finalized=-1)


@pytest.mark.parametrize("bad", [{"cost": -0.1}, {"load": float("nan")}, {"slack": float("inf")}, {"reputation": "1"}])
def test_weights_must_be_finite_and_non_negative(bad):
    with pytest.raises(ValueError):
        Weights(**bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_heartbeat_age": -1},
        {"assumed_capacity": -1},
        {"max_utilization_pct": 101},
        {"assumed_utilization_pct": -1},
    ],
)
def test_policy_values_are_checked(bad):
    with pytest.raises(ValueError):
        Policy(**bad)


# One shard, three candidates that each win on one term.
CHEAP = asset(1, price=20, expire=LEASE_END)  # cheap, lapses right after the lease
IDLE = asset(2, price=150)
TRUSTED = asset(3, price=150)
NODES = [node(1, util=80, running=2, capacity=4), node(2, util=0, running=0), node(3, util=80, running=2, capacity=4)]
REPS = {1: Reputation(), 2: Reputation(), 3: Reputation(finalized=99)}


@pytest.mark.parametrize(
    ("weights", "winner"),
    [
        (Weights(), 1),  # the default leans on price
        (Weights(cost=1, slack=0, load=0, reputation=0), 1),
        (Weights(cost=0, slack=0, load=1, reputation=0), 2),
        (Weights(cost=0, slack=0, load=0, reputation=1), 3),
        (Weights(cost=0, slack=1, load=0, reputation=0), 2),  # 2 and 3 tie on slack: lower id
        (Weights(cost=0.1, slack=0.1, load=0.4, reputation=0.4), 2),
        (Weights(cost=0.1, slack=0.1, load=0.2, reputation=0.6), 3),
    ],
)
def test_weights_change_the_ranking(weights, winner):
    got = run([open_shard(job())], [CHEAP, IDLE, TRUSTED], nodes=NODES, reputations=REPS, weights=weights)
    assert got[0].asset == winner
    scores = {}
    for a, n in zip((CHEAP, IDLE, TRUSTED), NODES):
        scores[a.id] = combine(
            weights,
            cost_term(a.spec.price, 200),
            slack_term(a.spec.expire, NOW + DAY, LEASE_END, NOW),
            load_term(n.gpu_utilization_pct, n.running_shards, n.capacity),
            REPS[a.id].score(),
        )
    assert winner == min(scores, key=lambda id: (-scores[id], id))


def test_load_falls_as_a_node_fills_within_the_batch():
    jobs = [job(id) for id in (1, 2)]
    assets = [asset(1, price=100), asset(2, price=100)]
    got = run(
        [open_shard(j) for j in jobs],
        assets,
        nodes=[node(1, capacity=2), node(2, util=20, capacity=2)],
        weights=Weights(cost=0, slack=0, load=1, reputation=0),
    )
    assert [a.asset for a in got] == [1, 2]  # after one lease node 1 is half full, node 2 is idler


# --- determinism, shape, purity --------------------------------------------------------


def test_same_input_same_output():
    shards, assets, nodes, reputations = synthetic(random.Random(11), 300, 20)
    first = schedule(shards, assets, nodes, reputations, PARAMS, NOW)
    assert first and first == schedule(shards, assets, nodes, reputations, PARAMS, NOW)


def test_index_tuning_does_not_change_the_result():
    shards, assets, nodes, reputations = synthetic(random.Random(5), 300, 20)
    results = {
        tuple(schedule(shards, assets, nodes, reputations, PARAMS, NOW, band_size=b, max_bands=m))
        for b, m in ((1, 1000), (1, 1), (4, 3), (32, 16), (10_000, 1))
    }
    assert len(results) == 1


def test_duplicate_inputs_are_refused():
    with pytest.raises(ValueError, match="asset 1 given twice"):
        run([open_shard(job())], [asset(1), asset(1)])
    with pytest.raises(ValueError, match="node state"):
        run([open_shard(job())], [asset(1)], nodes=[node(1), node(1)])
    with pytest.raises(ValueError, match="shard"):
        run([open_shard(job()), open_shard(job())], [asset(1)])


def test_place_on_a_full_shard_says_so():
    batch = Batch([open_shard(job())], [asset(1)], [node(1)], {}, PARAMS, NOW)
    assert isinstance(batch.place(1, 0), Assignment)
    assert not batch.has_open_replica(1, 0)
    assert batch.place(1, 0) == Skip(1, 0, None, "job_market: shard has no open replica")


def test_nothing_to_do():
    assert run([], [asset(1)]) == []
    assert run([open_shard(job())], []) == []
    assert Batch([], [], [], {}, PARAMS, NOW).order() == []


def test_the_module_is_pure():
    source = Path(scheduler.__file__).read_text()
    imported = set()
    for stmt in ast.walk(ast.parse(source)):
        if isinstance(stmt, ast.Import):
            imported.update(alias.name for alias in stmt.names)
        elif isinstance(stmt, ast.ImportFrom):
            imported.add(stmt.module)
    stdlib = {"__future__", "heapq", "math", "bisect", "collections.abc", "dataclasses"}
    assert imported <= stdlib | {"computenet.domain", "computenet.preflight"}
    probe = (
        "import sys, keepers.scheduler; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ape', 'web3', 'redis', 'celery'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
