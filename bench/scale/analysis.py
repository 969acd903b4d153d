"""The figures of one run (one N), from the chain's blocks and the roles' own records.

Every shard's life is cut at moments the chain or a role recorded, each in wall time:

    client sends post_job ─chain─▶ JobPosted seen ─keeper─▶ keeper sends assign ─chain─▶
    ShardAssigned seen ─agent─▶ agent sends its result(s) ─chain─▶ ResultSubmitted seen
    ─window─▶ the head from which a finalize can be mined ─keeper─▶ keeper sends finalize
    ─chain─▶ ShardFinalized seen

so the keepers' share (deciding, reading, sending), the agents', the chain's (waiting for
inclusion in a block) and the challenge window's add up to each shard's time.
"""

from __future__ import annotations

import statistics

SEGMENTS = {  # segment -> whose time it is
    "post_inclusion": "chain",
    "keeper_assign": "keeper",
    "assign_inclusion": "chain",
    "agent": "agent",
    "submit_inclusion": "chain",
    "window": "window",
    "keeper_finalize": "keeper",
    "finalize_inclusion": "chain",
}
# The market's steps: each on its own, and several in one call (an agent's results in
# submit_results, assignments and finalizations through the batch relay; submit_many, results
# through the relay, which the simulation's agents no longer send, stays counted).
MARKET_CALLS = (
    "post_job",
    "assign",
    "submit_result",
    "finalize",
    "assign_many",
    "submit_results",
    "submit_many",
    "finalize_many",
)
SATURATED = 0.85  # a step whose finalized rate is under this share of what it posted is saturated


def shard_timelines(blocks: dict, sent: dict[str, float]) -> dict[tuple[int, int], dict]:
    """(job, shard) -> its events' blocks and transactions, and its segments in seconds
    where every moment is known (`sent`: tx -> when its sender broadcast it)."""
    shards: dict[tuple[int, int], dict] = {}
    for n in sorted(blocks):
        for name, args, tx in blocks[n].events:
            job = int(args["job"])
            if name == "JobPosted":
                for s in range(int(args["shard_count"])):
                    shards[(job, s)] = {"post": n, "post_tx": tx}
            elif name in ("ShardAssigned", "ResultSubmitted", "ShardFinalized") and (job, int(args["shard"])) in shards:
                key = {"ShardAssigned": "assign", "ResultSubmitted": "submit", "ShardFinalized": "final"}[name]
                life = shards[(job, int(args["shard"]))]
                life[key], life[key + "_tx"] = n, tx
                if name == "ResultSubmitted":
                    life["challenge_end"] = int(args["challenge_end"])
                if name == "ShardFinalized":
                    life["payment"] = int(args["payment"])
    numbers = sorted(blocks)
    for life in shards.values():
        if "final" not in life:
            continue
        ready = next((b for b in numbers if b > life["submit"] and blocks[b].timestamp > life["challenge_end"]), None)
        moments = [
            sent.get(life["post_tx"]),
            blocks[life["post"]].seen,
            sent.get(life["assign_tx"]),
            blocks[life["assign"]].seen,
            sent.get(life["submit_tx"]),
            blocks[life["submit"]].seen,
            blocks[ready - 1].seen if ready is not None and ready - 1 in blocks else None,
            sent.get(life["final_tx"]),
            blocks[life["final"]].seen,
        ]
        if None not in moments:
            life["segments"] = {k: round(b - a, 3) for k, a, b in zip(SEGMENTS, moments, moments[1:])}
    return shards


def cpu_cores(start: dict, end: dict, seconds: float, roles: dict[str, str]) -> dict:
    """CPU cores each role used over a step ((CPU-seconds at the end - at the start) / wall
    seconds), theirs together, and what the rest of the machine used meanwhile ("other":
    anything else running on it)."""
    out: dict[str, float] = {}
    for name, role in roles.items():
        if name in start and name in end and role != "machine":
            out[role] = out.get(role, 0.0) + (end[name] - start[name]) / seconds
    total = sum(out.values())
    out = {k: round(v, 2) for k, v in out.items()} | {"total": round(total, 2)}
    if "machine" in start and "machine" in end:
        out["other"] = round(max(0.0, (end["machine"] - start["machine"]) / seconds - total), 2)
    return out


def time_shares(start: dict, end: dict, seconds: float, prefix: str) -> dict:
    """Share of their time the processes named `prefix`* spent in each kind of step (their
    mean). A process reports between rounds, so its snapshots can lag a span's edges by a
    round: the shares are of the time it accounted for over the span (at least the span)."""
    names = [n for n in end if n.startswith(prefix) and n in start]
    if not names:
        return {}
    kinds = sorted({k for n in names for k in end[n]["seconds"]} - {"round"})
    spent = {
        k: statistics.fmean(end[n]["seconds"].get(k, 0.0) - start[n]["seconds"].get(k, 0.0) for n in names)
        for k in kinds
    }
    total = max(seconds, sum(spent.values()))
    return {k: round(v / total, 3) for k, v in spent.items()}


def _round_s(start: dict, end: dict) -> float | None:
    """The keepers' mean round (a new head read to its transactions sent) over a step."""
    spent = count = 0.0
    for name in (n for n in end if n.startswith("keeper") and n in start):
        spent += end[name]["seconds"].get("round", 0.0) - start[name]["seconds"].get("round", 0.0)
        count += end[name]["counts"].get("round", 0) - start[name]["counts"].get("round", 0)
    return round(spent / count, 2) if count else None


def step_figures(
    step: dict, blocks: dict, shards: dict, plan: dict, roles: dict[str, str], done_before: dict[str, float]
) -> tuple[dict, dict[str, float]]:
    """One offered-load step's figures, and when its shards got through each stage (for the
    next step). Each stage's rate, posting included, is the step's shards over the time from
    the moment the previous step's shards were all through that stage to the moment this
    step's were (`done_before`; for the first step, from its first job through to its last),
    so posted and finalized are measured alike: the same while the network keeps up, finalized
    slower once a stage queues (keepers serve the oldest shards first). Counting the step's own
    shards, not the events in a window, keeps the rate right when a job's shards straddle a
    step's edge; a stage that works in bursts (a keeper round every several blocks) is right
    to within a burst over the step."""
    first, last = step["start_block"], step["end_block"]
    whole = [blocks[n] for n in range(first, last + 1) if n in blocks]
    mine = [s for s in shards.values() if first <= s["post"] <= last]
    t0, t1 = whole[0].seen, whole[-1].seen
    rates, delays, done = {}, {}, {}
    for stage in ("post", "assign", "submit", "final"):
        reached = [s for s in mine if stage in s]
        if stage != "post":
            waits = [blocks[s[stage]].seen - blocks[s["post"]].seen for s in reached]
            delays[stage] = round(statistics.median(waits), 2) if waits else None
        if not mine or len(reached) < len(mine):
            rates[stage] = 0.0
            continue
        done[stage] = max(blocks[s[stage]].seen for s in mine)
        count, since = len(mine), done_before.get(stage)
        if since is None:  # the first step: from its first job through, the jobs after it
            jobs: dict[str, list[float]] = {}
            for s in mine:
                jobs.setdefault(s["post_tx"], []).append(blocks[s[stage]].seen)
            first_job = min(jobs.values(), key=max)
            count, since = len(mine) - len(first_job), max(first_job)
        rates[stage] = round(count / (done[stage] - since) * 60, 1) if done[stage] > since else 0.0
    limit = whole[-1].gas_limit
    txs = [t for b in whole for t in b.txs]
    reverted = [t for t in txs if not t.ok]
    capacity = plan["agents"] * plan["leases_per_asset"]
    busy = [sum(1 for s in shards.values() if s.get("assign", 1e18) <= b.number < s.get("submit", 1e18)) for b in whole]
    timed = [s for s in mine if "segments" in s]
    segments = {k: round(statistics.fmean(s["segments"][k] for s in timed), 3) for k in SEGMENTS} if timed else {}
    wall = step["end_time"] - step["start_time"]
    return {
        "offered_per_min": round(step["rate"] * 60, 1),
        "posted_per_min": rates["post"] or 0.0,
        "assigned_per_min": rates["assign"] or 0.0,
        "submitted_per_min": rates["submit"] or 0.0,
        "finalized_per_min": rates["final"] or 0.0,
        "jobs": len({s["post_tx"] for s in mine}),
        "delay_s": delays,
        "step_s": round(t1 - t0, 1),
        "end_seen": t1,
        "blocks": len(whole),
        "block_s": round((t1 - t0) / max(1, len(whole) - 1), 3),
        "block_gas_used_mean": round(statistics.fmean(b.gas_used for b in whole)),
        "block_gas_used_max": max(b.gas_used for b in whole),
        "block_gas_pct_mean": round(100 * statistics.fmean(b.gas_used for b in whole) / limit, 2),
        "block_gas_pct_max": round(100 * max(b.gas_used for b in whole) / limit, 2),
        "txs_per_block": round(len(txs) / len(whole), 1),
        "reverted_txs": len(reverted),
        "reverted_gas": sum(t.gas for t in reverted),
        "keepers": plan["keepers"],
        "lease_capacity": capacity,
        "leases_busy_mean": round(statistics.fmean(busy), 1),
        "cpu_cores": cpu_cores(step["cpu_start"], step["cpu_end"], wall, roles),
        "keeper_time": time_shares(step["timings_start"], step["timings_end"], wall, "keeper"),
        "keeper_round_s": (rounds := _round_s(step["timings_start"], step["timings_end"])),
        # A keeper round over a sixth of the step: its rates are good to a round, no better.
        "coarse": bool(rounds and rounds > (t1 - t0) / 6),
        "agent_time": time_shares(step["timings_start"], step["timings_end"], wall, "agents"),
        "segments_s": segments,
        "shares": _shares(segments),
    }, done


def _shares(segments: dict) -> dict:
    """Each party's share of a shard's time, the challenge window left out (it is a parameter)."""
    if not segments:
        return {}
    by: dict[str, float] = {}
    for k, v in segments.items():
        by[SEGMENTS[k]] = by.get(SEGMENTS[k], 0.0) + v
    active = sum(v for k, v in by.items() if k != "window") or 1.0
    return {k: round(v / active, 3) for k, v in by.items() if k != "window"} | {
        "active_s": round(active, 2),
        "window_s": round(by.get("window", 0.0), 2),
    }


def gas_figures(blocks: dict, shards: dict) -> dict:
    """Gas per finalized shard from the receipts: every market transaction, reverted ones
    included, and per call (mean of the successful ones)."""
    txs = [t for b in blocks.values() for t in b.txs if t.method in MARKET_CALLS]
    finalized = sum(1 for s in shards.values() if "final" in s)
    per_call = {}
    for call in MARKET_CALLS:
        ok = [t.gas for t in txs if t.method == call and t.ok]
        bad = [t.gas for t in txs if t.method == call and not t.ok]
        per_call[call] = {
            "mined": len(ok),
            "gas_mean": round(statistics.fmean(ok)) if ok else 0,
            "reverted": len(bad),
            "reverted_gas": sum(bad),
        }
    total = sum(t.gas for t in txs)
    wasted = sum(t.gas for t in txs if not t.ok)
    return {
        "finalized_shards": finalized,
        "per_shard": round(total / finalized) if finalized else None,
        "per_shard_without_reverts": round((total - wasted) / finalized) if finalized else None,
        "reverted_per_shard": round(wasted / finalized) if finalized else None,
        "per_call": per_call,
    }


def drain_rate(blocks: dict, since: float, least: int = 20) -> float | None:
    """Finalized per minute while the network works off the backlog left when posting stopped
    (`since`): the most it sustains, over a span long enough for keeper rounds not to matter.
    Counted to the 90th percentile of the drain, so the last shards' own delay is left out;
    None when fewer than `least` shards were left (no backlog: it kept up)."""
    finals = sorted(b.seen for b in blocks.values() for n, _, _ in b.events if n == "ShardFinalized" and b.seen > since)
    if len(finals) < least:
        return None
    k = -(-9 * len(finals) // 10)
    return round(k / (finals[k - 1] - since) * 60, 1)


MIN_JOBS = 3  # a step's own rate is read from at least this many jobs


def _saturated(step: dict) -> bool:
    """The step's own jobs were finalized at under SATURATED of the pace they were posted at,
    by more than a keeper round's worth of the step (jobs get through a stage a round at a
    time, so a step's rate is good to about a round over its length)."""
    if step["jobs"] < MIN_JOBS or not step["posted_per_min"]:
        return False
    short = 1 - step["finalized_per_min"] / step["posted_per_min"]
    return short > max(1 - SATURATED, (step.get("keeper_round_s") or 0) / step["step_s"])


def saturation(steps: list[dict], cpus: int, capacity: float | None = None) -> dict:
    """Where finalized/min stops following the load posted, and why (the evidence with it);
    `capacity`: what the network finalized working off the backlog once posting stopped."""
    hit = next((s for s in steps if _saturated(s)), None)
    kept = steps[: steps.index(hit)] if hit else steps
    best = max(kept, key=lambda s: s["finalized_per_min"]) if kept else None
    out = {
        "kept_up_per_min": best["finalized_per_min"] if best else None,  # the most finalized while keeping up
        "kept_up_at_offered_per_min": best["offered_per_min"] if best else None,
        "capacity_per_min": capacity,
    }
    if hit is None:
        return out | {"saturated": False, "cause": f"not saturated up to {steps[-1]['offered_per_min']:g} offered/min"}
    cpu, kt = hit["cpu_cores"], hit["keeper_time"]
    causes = []
    if hit["block_gas_pct_max"] >= 90 or hit["block_gas_pct_mean"] >= 75:
        causes.append(
            f"block gas ({hit['block_gas_pct_mean']} % of the limit on average, {hit['block_gas_pct_max']} % at most)"
        )
    # A lease turns over at most once every two blocks: assigned in one, its result mined in
    # the next, and only then can a keeper see it free and assign it again.
    turnover = hit["lease_capacity"] * 60 / (2 * hit["block_s"])
    if hit["assigned_per_min"] >= 0.7 * turnover:
        causes.append(
            f"the assets' capacity ({hit['lease_capacity']:,} leases, each free again at most every two blocks: "
            f"{turnover:,.0f} assignments/min at most, {hit['assigned_per_min']:,} made)"
        )
    keeper_busy = round(1 - kt.get("idle", 0.0), 2) if kt else 0.0
    if keeper_busy >= 0.85:
        top = max((k for k in kt if k != "idle"), key=lambda k: kt[k])
        on_cpu = cpu.get("keepers", 0.0) / max(1, hit["keepers"])  # the rest: waiting for the CPU or the node
        causes.append(
            f"the keepers (busy {keeper_busy:.0%} of the time, on a core {on_cpu:.0%}; the most of it "
            f"'{top}': {kt[top]:.0%})"
        )
    machine = cpu.get("total", 0) + cpu.get("other", 0)
    if machine >= 0.85 * cpus:
        parts = ", ".join(f"{k} {v}" for k, v in cpu.items() if k != "total")
        causes.append(f"CPU ({machine:.2f} of {cpus} cores busy: {parts})")
    if not causes:
        causes.append("none of block gas, asset capacity, keeper time or CPU is at its limit: RPC latency")
    return out | {
        "saturated": True,
        "offered_per_min": hit["offered_per_min"],
        "posted_per_min": hit["posted_per_min"],
        "finalized_per_min": hit["finalized_per_min"],
        "cause": "; ".join(causes),
    }


def post_to_final_floor_blocks(window_s: int, chain_seconds_per_block: int) -> int:
    """The fewest blocks from a job's post to its shard's finalize: each of assign and submit
    one block after the event it answers, then the challenge window in blocks, the finalize
    mined in the first block past it (block.timestamp > the window's end)."""
    return 2 + window_s // chain_seconds_per_block + 1


def kept_up_step(r: dict) -> dict:
    """The step with the most finalized while the network kept up (else the first step)."""
    at = r["saturation"].get("kept_up_at_offered_per_min")
    return next((s for s in r["steps"] if s["offered_per_min"] == at), r["steps"][0])


def markdown_table(results: list[dict]) -> str:
    """One row per N: how much it kept up with, where it saturated, what it then sustained,
    and why (bench_scale prints it, bench/report.py puts it in the report)."""
    rows = [
        "| agents | kept up with, most (finalized/min) | saturates at offered/min (posted, finalized/min) | "
        "working off a backlog (finalized/min) | post → final p50 (kept up), against its floor | gas per shard (of it reverted) | "
        "block gas used, mean / max (peak step) | keepers / agents / chain (kept up) | cause |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        sat, g, step = r["saturation"], r["gas"], kept_up_step(r)
        sh = step["shares"]
        share = (
            f"{sh.get('keeper', 0):.0%} / {sh.get('agent', 0):.0%} / {sh.get('chain', 0):.0%} of {sh['active_s']} s"
            if sh
            else "n/a"
        )
        kept = f"{sat['kept_up_per_min']:g}" if sat.get("kept_up_per_min") else "none of the steps"
        hit = next((s for s in r["steps"] if s["offered_per_min"] == sat.get("offered_per_min")), None)
        at = (
            f"{sat['offered_per_min']:g} ({sat['posted_per_min']:g}, "
            + f"{sat['finalized_per_min']:g}"
            + (f"; keeper rounds of {hit['keeper_round_s']} s)" if hit["coarse"] else ")")
            if hit is not None
            else f"not reached by {r['steps'][-1]['offered_per_min']:g}"
        )
        held = sat.get("capacity_per_min")
        peak = max(r["steps"], key=lambda s: s["block_gas_pct_mean"])
        latency = step["delay_s"].get("final")
        floor = r.get("post_to_final_floor_blocks")
        if latency is not None and floor:  # the floor at the step's own block interval
            latency = f"{latency} s (floor {floor} blocks, {floor * step['block_s']:.2f} s: {latency / (floor * step['block_s']):.2f}×)"
        elif latency is not None:
            latency = f"{latency} s"
        rows.append(
            f"| {r['agents']:,} | {kept} | {at} | {held if held is not None else 'n/a'} | "
            f"{latency if latency is not None else 'n/a'} | {g['per_shard']:,} ({g['reverted_per_shard']:,}) | "
            f"{peak['block_gas_pct_mean']} % / {peak['block_gas_pct_max']} % | {share} | {sat['cause']} |"
        )
    return "\n".join(rows)


def detail_table(results: list[dict]) -> str:
    """Per N, at the step where it saturated (else its last): what the machine's cores did,
    and how the keepers spent their time."""
    rows = [
        "| agents | step (offered/min) | cores: anvil / keepers / agents / main / other | keepers' time: assets "
        "re-read / other reads / decisions / sending / idle | keeper round | reverted txs per shard | tx wait p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        sat = r["saturation"]
        step = next((s for s in r["steps"] if s["offered_per_min"] == sat.get("offered_per_min")), r["steps"][-1])
        c, k = step["cpu_cores"], step["keeper_time"]
        cores = " / ".join(f"{c.get(x, 0):.2f}" for x in ("anvil", "keepers", "agents", "main", "other"))
        spent = " / ".join(f"{k.get(x, 0):.0%}" for x in ("assets", "view", "decide", "send", "idle"))
        calls = r["gas"]["per_call"]
        reverted = sum(v["reverted"] for v in calls.values()) / max(1, r["gas"]["finalized_shards"])
        seg = step["segments_s"]
        waits = [seg[k] for k in SEGMENTS if k.endswith("_inclusion") and k in seg]
        wait = f"{statistics.median(waits):.2f} s" if waits else "n/a"
        rows.append(
            f"| {r['agents']:,} | {step['offered_per_min']:g} (posted {step['posted_per_min']:g}) | {cores} | "
            f"{spent} | {step.get('keeper_round_s') or 'n/a'} s | {reverted:.2f} | {wait} |"
        )
    return "\n".join(rows)


def base_sentence(base: dict, limit: int) -> str:
    """What the measured gas per shard means for a block of this anvil's and of Base's."""
    return (
        f"At {base['gas_per_shard']:,} gas per shard (every transaction, reverted ones included), a "
        f"{limit:,}-gas block a second holds {base['anvil_shards_per_min_at_limit']:,} shards/min; Base's "
        f"~{base['block_gas_limit'] // 10**6}M-gas block every {base['block_time_s']} s ({base['source']}) would hold "
        f"{base['base_shards_per_min_at_limit']:,} shards/min if this market had all of it; {base['target_note']}."
    )
