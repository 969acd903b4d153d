"""Scheduler benchmark: decisions per second on synthetic markets of 1k, 10k and 100k assets.

    .venv/bin/python bench/bench_scheduler.py [--sizes 1000,10000,100000] [--shards 1000] [--runs 5]

Each market is built from a fixed seed (mixed GPU counts, VRAM, prices, expiries and
deadlines; some nodes stale, overloaded, full, unstaked or paused; some replicated jobs
with a replica already leased). One run is one `schedule` round: the index is built,
then every open replica gets a decision (an assignment, or the conclusion that none
fits). Decisions per second is decisions over the median run's total time, index
included; the per-decision times are of `Batch.place` alone, over all runs.

The deployed path, on the same markets (`round`): placements (assignments) per second of
`keepers.decisions.decide_round` over every open shard, its per-shard rules, the index
build and every placement included; and of `keepers.actions.assign_round` with a runtime
whose chain view and keeper state are served from memory and no key (a dry run: each
assignment recorded, nothing sent). That second figure adds what the action does around the
decision (the open shards, pending assignments, replicas, assets, node states and
reputations handed over, each assignment recorded); it leaves out what a live keeper waits
for: JSON-RPC reads, Redis round trips, signing, broadcasting and mining. The figures go
to bench/results/scheduler.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.synthetic_market import MemoryChain  # noqa: E402
from computenet.domain import (  # noqa: E402
    Asset,
    Job,
    Parameters,
    Replica,
    ReplicaState,
    Requirements,
    Spec,
    Stake,
    Verification,
)
from keepers.decisions import decide_round  # noqa: E402
from keepers.scheduler import Batch, NodeState, OpenShard, Policy, Reputation, Skip, Weights, schedule  # noqa: E402

NOW = 1_700_000_000
DAY = 86_400
PARAMS = Parameters(
    keeper_fee_bps=100,
    protocol_fee_bps=50,
    slash_bps=1000,
    challenge_window=3600,
    decline_window=300,
    lease_grace=300,
    min_stake=1_000,
    challenge_bond=100,
)
GPU_COUNTS = ((1, 40), (2, 25), (4, 20), (8, 15))
# (VRAM per GPU in MiB, typical price per GPU-second in token base units)
VRAM_TIERS = ((16_384, 40), (24_576, 60), (40_960, 110), (49_152, 130), (81_920, 250), (144_384, 400))
VRAM_WEIGHTS = (15, 20, 15, 15, 25, 10)


def _pick(rng: random.Random, weighted):
    values, weights = zip(*weighted)
    return rng.choices(values, weights)[0]


def build_market(n_assets: int, n_shards: int, seed: int):
    """(shards, assets, nodes, reputations) for one synthetic market."""
    rng = random.Random(seed)
    owners = [f"0x{i:040x}" for i in range(1, max(n_assets // 4, 1) + 1)]
    assets, nodes, reputations = [], [], {}
    for asset_id in range(1, n_assets + 1):
        gpus = _pick(rng, GPU_COUNTS)
        tier = rng.choices(range(len(VRAM_TIERS)), VRAM_WEIGHTS)[0]
        vram, typical = VRAM_TIERS[tier]
        spec = Spec(
            gpu_model=tier + 1,
            vram_mib=vram,
            gpu_count=gpus,
            cpu_cores=8 * gpus,
            region=rng.randrange(8),
            price=int(typical * rng.uniform(0.6, 1.6)),
            expire=NOW + 30 * DAY if rng.random() < 0.9 else NOW + rng.randrange(6 * 3600),
            active=rng.random() < 0.97,
        )
        stake = Stake(
            amount=5_000 if rng.random() < 0.95 else 500, open_leases=0, gpus_leased=0, unbond_at=0, unbonding=0
        )
        assets.append(Asset(asset_id, rng.choice(owners), f"0x{asset_id:040x}", spec, b"\x00" * 32, stake))
        roll = rng.random()
        if roll < 0.94:
            capacity = rng.randint(1, 4)
            busy = rng.random() < 0.1
            nodes.append(
                NodeState(
                    asset=asset_id,
                    gpu_utilization_pct=rng.randint(91, 100) if busy else rng.randint(0, 90),
                    free_vram_mib=rng.randint(0, vram * gpus),
                    running_shards=rng.randint(0, capacity),
                    capacity=capacity,
                    last_seen=NOW - (rng.randrange(31, 600) if roll > 0.88 else rng.randrange(30)),
                )
            )
        if rng.random() < 0.7:
            reputations[asset_id] = Reputation(
                finalized=rng.randrange(200),
                reclaimed=rng.randrange(10),
                disputes_lost=rng.randrange(3) if rng.random() < 0.1 else 0,
            )

    shards = []
    job_id = 0
    while len(shards) < n_shards:
        job_id += 1
        count = min(rng.randint(1, 20), n_shards - len(shards))
        replication = _pick(rng, ((1, 75), (2, 15), (3, 10)))
        gpus = _pick(rng, ((1, 50), (2, 25), (4, 15), (8, 10)))
        tier = rng.choices(range(len(VRAM_TIERS)), VRAM_WEIGHTS)[0]
        vram, typical = VRAM_TIERS[tier]
        max_gpu_seconds = rng.randrange(600, 7200)
        lease = -(-max_gpu_seconds // gpus) + PARAMS.lease_grace
        tight = rng.random() < 0.03  # deadline passed while the job waited: nothing can take it
        req = Requirements(
            min_vram_mib=vram,
            gpu_count=gpus,
            max_price=int(typical * rng.uniform(0.8, 2.0)),
            max_gpu_seconds=max_gpu_seconds,
            deadline=NOW + lease - 1 if tight else NOW + lease + rng.randrange(12 * 3600),
            shard_count=count,
            replication=replication,
            verification=Verification.REPLICATED if replication > 1 else Verification.OPTIMISTIC,
        )
        job = Job(job_id, "0x" + "c1" * 20, 0, b"\x01" * 32, req, 100, 50, count * replication)
        for shard in range(count):
            replicas = []
            for index in range(replication):
                leased = replication > 1 and index == 0 and rng.random() < 0.2
                replicas.append(
                    Replica(
                        job=job_id,
                        shard=shard,
                        index=index,
                        asset=rng.randint(1, n_assets) if leased else 0,
                        keeper_id=1 if leased else 0,
                        state=ReplicaState.ASSIGNED if leased else ReplicaState.OPEN,
                        lease=1 if leased else 0,
                        price=0,
                        deadline=NOW + lease if leased else 0,
                        since=NOW if leased else 0,
                        gpu_seconds=0,
                    )
                )
            shards.append(OpenShard(job, shard, tuple(replicas)))
    return shards, assets, nodes, reputations


def run_once(market, weights: Weights, policy: Policy):
    """(total seconds, index seconds, per-decision seconds, assignments) for one round."""
    shards, assets, nodes, reputations = market
    clock = time.perf_counter
    start = clock()
    batch = Batch(shards, assets, nodes, reputations, PARAMS, NOW, weights, policy)
    indexed = clock()
    times, assigned = [], 0
    for job, shard in batch.order():
        while batch.has_open_replica(job, shard):
            t0 = clock()
            decision = batch.place(job, shard)
            times.append(clock() - t0)
            if isinstance(decision, Skip):
                break
            assigned += 1
    end = clock()
    return end - start, indexed - start, times, assigned


class MemoryState:
    """The keeper state an action reads and writes, in memory: no cursor, no declines, nothing pending."""

    def __init__(self, shards, nodes, reputations) -> None:
        self.work = sorted((s.job.id, s.shard) for s in shards)
        self._nodes = {n.asset: n for n in nodes}
        self._reputations = reputations
        self.records: list = []

    def open_shards(self):
        return self.work

    def pending(self):
        return []

    def nodes(self, clock_offset=0):
        return self._nodes

    def reputations(self):
        return self._reputations

    def declines(self, job, shard):
        return []

    def cursor(self):
        return None

    def send_lock(self, account, wait=60.0):
        return nullcontext()

    def record(self, kind, **fields):
        self.records.append((kind, fields))


def round_inputs(market):
    """decide_round's arguments for every open shard of the market."""
    shards, assets, nodes, reputations = market
    chain = MemoryChain.of_open_shards(shards, assets, PARAMS, NOW)
    work = [(s.job.id, s.shard) for s in shards]
    return work, chain.jobs, chain.shards, assets, {n.asset: n for n in nodes}, reputations


def run_round(market, weights: Weights, policy: Policy):
    """(seconds, placements, shard outcomes) for one decide_round over every open shard."""
    inputs = round_inputs(market)
    start = time.perf_counter()
    plan = decide_round(*inputs, PARAMS, NOW, weights=weights, policy=policy)
    return time.perf_counter() - start, len(plan.sends), len(plan.outcomes)


def run_action(market, settings):
    """(seconds, placements) for one actions.assign_round, dry run, chain and state in memory."""
    from keepers import actions
    from keepers.runtime import Runtime

    shards, assets, nodes, reputations = market
    chain = MemoryChain.of_open_shards(shards, assets, PARAMS, NOW)
    state = MemoryState(shards, nodes, reputations)
    rt = Runtime(settings, chain, chain, None, None, state)
    start = time.perf_counter()
    outcome = actions.assign_round(rt)
    seconds = time.perf_counter() - start
    placements = sum(1 for kind, _ in state.records if kind == "dry_run")
    assert outcome == f"dry run: {placements} assignments", outcome
    return seconds, placements


def measure_round(market, args, n_assets: int, weights: Weights, policy: Policy) -> dict:
    from keepers.settings import KeeperSettings

    runs = args.runs if n_assets < 100_000 else min(args.runs, 3)
    rounds = [run_round(market, weights, policy) for _ in range(runs)]
    assert len({r[1:] for r in rounds}) == 1, "decide_round must be deterministic"
    # No keeper rule bites on these markets (no declines, tee jobs, pending or fee floor): the
    # round must place exactly what `schedule` does.
    plan = decide_round(*round_inputs(market), PARAMS, NOW, weights=weights, policy=policy)
    assert [s.assignment for s in plan.sends] == schedule(*market, PARAMS, NOW, weights, policy)
    _, placements, outcomes = rounds[0]
    # The action's settings: the same weights and heartbeat policy as above.
    settings = KeeperSettings(
        **{f"weight_{k}": v for k, v in vars(weights).items()},
        max_heartbeat_age=policy.max_heartbeat_age,
        max_utilization_pct=policy.max_utilization_pct,
        require_heartbeat=policy.require_heartbeat,
    )
    acts = [run_action(market, settings) for _ in range(runs)]
    assert {a[1] for a in acts} == {placements}, "the action must place what decide_round does"
    total = statistics.median(r[0] for r in rounds)
    action = statistics.median(a[0] for a in acts)
    return {
        "assets": n_assets,
        "open_shards": args.shards,
        "placements": placements,
        "shard_outcomes": outcomes,  # one per open shard: placed in full, waiting or done
        "runs": runs,
        "decide_round_median_s": round(total, 6),
        "placements_per_s": round(placements / total),
        "placements_per_s_min": round(placements / max(r[0] for r in rounds)),
        "placements_per_s_max": round(placements / min(r[0] for r in rounds)),
        "assign_round_median_s": round(action, 6),
        "assign_round_placements_per_s": round(placements / action),
    }


def percentile(values, pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="asset counts, comma-separated")
    parser.add_argument("--shards", type=int, default=1000, help="open shards per market")
    parser.add_argument("--runs", type=int, default=5, help="rounds per size (3 for 100k and up)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scheduler.json"))
    args = parser.parse_args(argv)

    weights, policy = Weights(), Policy()
    results, round_rows = [], []
    print(
        f"{'assets':>8} {'decisions':>9} {'assigned':>8} {'index ms':>9} {'round ms':>9} "
        f"{'decisions/s':>12} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for n_assets in (int(size) for size in args.sizes.split(",")):
        market = build_market(n_assets, args.shards, args.seed)
        runs = args.runs if n_assets < 100_000 else min(args.runs, 3)
        rounds = [run_once(market, weights, policy) for _ in range(runs)]
        assigned = {r[3] for r in rounds}
        assert len(assigned) == 1, "the scheduler must be deterministic"
        total = statistics.median(r[0] for r in rounds)
        index = statistics.median(r[1] for r in rounds)
        times = [t for r in rounds for t in r[2]]
        decisions = len(rounds[0][2])
        row = {
            "assets": n_assets,
            "open_shards": args.shards,
            "decisions": decisions,
            "assignments": rounds[0][3],
            "runs": runs,
            "round_median_s": round(total, 6),
            "index_median_s": round(index, 6),
            "decisions_per_s": round(decisions / total),
            # the spread over the rounds: the slowest and the fastest round's rate
            "decisions_per_s_min": round(decisions / max(r[0] for r in rounds)),
            "decisions_per_s_max": round(decisions / min(r[0] for r in rounds)),
            "decisions_per_s_after_index": round(decisions / (total - index)),
            "p50_decision_ms": round(1000 * percentile(times, 50), 4),
            "p99_decision_ms": round(1000 * percentile(times, 99), 4),
        }
        results.append(row)
        print(
            f"{n_assets:>8} {decisions:>9} {row['assignments']:>8} {1000 * index:>9.1f} {1000 * total:>9.1f} "
            f"{row['decisions_per_s']:>12,.0f} {row['p50_decision_ms']:>7.3f} {row['p99_decision_ms']:>7.3f}"
        )
        round_rows.append(measure_round(market, args, n_assets, weights, policy))

    print("\nthe deployed path: one round over every open shard (index build included)")
    print(
        f"{'assets':>8} {'placements':>10} {'decide_round ms':>15} {'placements/s':>12} "
        f"{'assign_round ms':>15} {'placements/s':>12}"
    )
    for r in round_rows:
        print(
            f"{r['assets']:>8} {r['placements']:>10} {1000 * r['decide_round_median_s']:>15.1f} "
            f"{r['placements_per_s']:>12,} {1000 * r['assign_round_median_s']:>15.1f} "
            f"{r['assign_round_placements_per_s']:>12,}"
        )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "keepers.scheduler",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "seed": args.seed,
        "weights": vars(weights),
        "policy": vars(policy),
        "results": results,
        "round": round_rows,
        "round_includes": (
            "decide_round: its per-shard rules, the index build and every placement of every open shard; "
            "assign_round: that plus the action's reads and records, with the chain view and keeper state "
            "served from memory and no key (a dry run), so no JSON-RPC, Redis, signing, broadcast or mining"
        ),
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
