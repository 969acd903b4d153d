"""`make bench`: runs every benchmark on the local stack and writes one report.

    .venv/bin/python bench/report.py [--quick] [--only gas,scheduler,...] [--report-only]

Each benchmark is its own script (bench/bench_*.py, and the gas test for gas); each writes
bench/results/<name>.json. This collects them into bench/results.json, bench/report.md and
PNG plots in bench/plots/, setting each figure next to its goal and anchor and saying by how
much a missed goal is missed. --report-only rebuilds the report from the JSON already there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PLOTS = ROOT / "bench" / "plots"
PYTHON = sys.executable

# Anchors: what comparable networks pay in gas (from their published contracts and receipts).
ANCHORS = {
    "iExec deal creation": 472_000,
    "Ritual Infernet create + deliver": 353_000,
    "USDC transferWithAuthorization": 85_700,
    "ERC-721 mint": 73_600,
}
GOALS = {
    "lifecycle_1_shard": 250_000,
    "shard_of_64": 80_000,
    "decisions_per_s_10k": 1_000,
    "keeper_blocks_p95": 1,
    "dispatch_p50_ms": 300,
    "overhead_pct": 1.0,
    "x402_over_plain": 10_000,
    "attacker_net_gain": 0,
    "honest_providers_slashed": 0,
    "disputes_open_past_deadline": 0,
}

# name -> (command, what it measures); --quick shortens the long ones.
BENCHES = {
    "gas": (
        [
            str(ROOT / ".venv" / "bin" / "ape"),
            "test",
            "tests/gas/test_gas_snapshot.py",
            "-q",
            "-k",
            "within",
            "--network",
            "ethereum:local:foundry",
        ],
        [],
    ),
    "scheduler": ([PYTHON, "bench/bench_scheduler.py"], ["--runs", "3"]),
    "keeper": ([PYTHON, "bench/bench_keeper.py"], ["--runs", "2", "--jobs", "10"]),
    "agent": ([PYTHON, "bench/bench_agent.py"], ["--shards", "8"]),  # reported as 4 runs of consecutive shards
    "throughput": ([PYTHON, "bench/bench_throughput.py"], ["--shards", "8", "--agents", "1,4"]),
    "x402": ([PYTHON, "bench/bench_x402.py"], ["--runs", "2", "--posts", "10"]),
    "dapp": ([PYTHON, "bench/bench_dapp.py"], ["--loads", "5"]),
    "economics": ([PYTHON, "bench/bench_economics.py"], ["--quick"]),  # exits 1 when an attacker ends ahead
    "verification": ([PYTHON, "bench/bench_verification.py"], ["--quick"]),  # exits 1 when a goal is missed
    "zk": ([PYTHON, "bench/bench_zk.py"], ["--proofs", "3"]),  # needs `make zk` (.zk/models/blobs, .venv-zk)
    "attestation": ([PYTHON, "bench/bench_attestation.py"], ["--runs", "50"]),
    "scale": ([PYTHON, "bench/bench_scale.py"], ["--quick"]),  # N = 10, 100, 1000: about 20 minutes
}


def run_benchmarks(names: list[str], quick: bool) -> dict[str, float]:
    env = os.environ | {
        "GAS_RESULTS": str(RESULTS / "gas.json"),
        "GAS_BREAKDOWN": str(RESULTS / "gas_breakdown.json"),
        "PATH": f"{ROOT / '.venv' / 'bin'}:{ROOT / 'node_modules/@foundry-rs/anvil-linux-amd64/bin'}:{os.environ['PATH']}",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)  # a fresh clone has none: git ignores the raw figures
    took = {}
    for name in names:
        command, short = BENCHES[name]
        start = time.monotonic()
        print(
            f"\n=== {name}: {' '.join(Path(c).name if c.startswith('/') else c for c in command + (short if quick else []))}",
            flush=True,
        )
        done = subprocess.run(command + (short if quick else []), cwd=ROOT, env=env)
        if done.returncode != 0:
            raise SystemExit(f"benchmark {name} failed (exit {done.returncode})")
        took[name] = round(time.monotonic() - start, 1)
    return took


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def collect() -> dict:
    return {name: load(name) for name in BENCHES} | {"gas_breakdown": load("gas_breakdown")}


def _miss(value: float, goal: float, lower_is_better: bool = True) -> str:
    if (value <= goal) if lower_is_better else (value >= goal):
        return "met"
    by = value - goal if lower_is_better else goal - value
    return f"missed by {by:,.0f}" if abs(by) >= 10 else f"missed by {by:,.2f}"


def _spread(results: dict, key: str) -> str:
    """The "(min–max over the runs)" suffix, when the benchmark reported runs."""
    runs = [run[key] for run in results.get("runs", [])]
    return f" ({min(runs)}–{max(runs)})" if runs else ""


LIFECYCLE_STEPS = ("post", "assign", "submit", "finalize")
LEAN_STEPS = tuple(f"lean_{step}" for step in LIFECYCLE_STEPS)
BATCH_STEPS = ("post_64 per item", "assign_many_64 per item", "submit_results_16 per item", "finalize_many_64 per item")


def lean_comparison(steps: dict, lean: dict, one: dict, life: int) -> list[str]:
    """The one-shard lifecycle beside the lean market's (bench/lean/LeanMarket.vy), by category and
    by whose storage, and what is left of the goal once everything a rule does not need is gone."""
    from gas_breakdown import CATEGORIES

    goal = GOALS["lifecycle_1_shard"]
    lean_life = sum(lean[c] for c in CATEGORIES) + lean["refund"]
    out = [
        "",
        f"The one-shard lifecycle misses its {goal:,} goal by {life - goal:,}. The lean market "
        "(`bench/lean/LeanMarket.vy`) measures what is left when a market stores only the three words a "
        "shard needs (the job's escrow, the lease, the output root) and takes the job's other terms back "
        "as calldata, checked against a hash. It runs the same job under the same rules, on the same "
        "token, keeper registry and asset contract, and pays everyone the same "
        "(`tests/gas/test_lean_market.py`):",
        "",
        "| | JobMarket | lean market |",
        "|---|---|---|",
    ]
    out += [f"| {c} | {one[c]:,} | {lean[c]:,} |" for c in CATEGORIES if one[c] or lean[c]]
    out.append(f"| **one-shard lifecycle** | **{life:,}** | **{lean_life:,}** |")
    by_contract = steps.get("storage by contract")
    if by_contract:

        def storage(prefix: str) -> dict[str, int]:
            total: dict[str, int] = {}
            for step in LIFECYCLE_STEPS:
                for name, gas in by_contract[prefix + step].items():
                    name = "the market" if name in ("JobMarket", "LeanMarket") else name
                    total[name] = total.get(name, 0) + gas
            return total

        mine, lean_storage = storage(""), storage("lean_")
        out += [
            "",
            "Storage reads and writes by whose storage they are:",
            "",
            "| | JobMarket | lean market |",
            "|---|---|---|",
        ]
        out += [f"| {name} | {mine.get(name, 0):,} | {lean_storage.get(name, 0):,} |" for name in mine]
        registries = lean_storage.get("ComputeAsset", 0) + lean_storage.get("KeeperRegistry", 0)
        registry_calls = lean["calls"] - steps["lean_post"]["calls"]  # posting calls only the token
        bound = lean_life - lean["execution"] - registries - registry_calls
        saved_at_post = sum(steps["post"][c] - steps["lean_post"][c] for c in CATEGORIES)
        out += [
            "",
            f"Three words instead of six save {life - lean_life:,}, {saved_at_post:,} of it at posting. "
            f"What remains is what the rules cost: four transactions and their calldata "
            f"({lean['intrinsic']:,}); the market's own storage (the params word, the job, the lease, the "
            "root, the job counter and what the market owes, four credits); the token's transfer into "
            "escrow; the events the network is rebuilt from; the agent's signature. Take away all "
            f"execution ({lean['execution']:,}: ABI decoding, hashing, packing) and let the asset and "
            f"keeper registries cost nothing, neither their storage ({registries:,}) nor the calls to them "
            f"({registry_calls:,}): the lean market would still spend {bound:,}, over the goal by "
            f"{bound - goal:,}. So no market that keeps these rules in four transactions a shard meets "
            f"{goal:,}. It takes fewer transactions a shard (the batched path above meets its goal), or "
            "fewer rules.",
        ]
    return out


def gas_breakdown(steps: dict | None, life: int, per_shard: int | None) -> list[str]:
    """Where the one-shard lifecycle's and a batched shard's gas goes (bench/gas_breakdown.py),
    and what that says of the goals they miss."""
    if not steps or not all(k in steps for k in LIFECYCLE_STEPS + BATCH_STEPS):
        return []
    from gas_breakdown import CATEGORIES

    def col(names):
        return {c: sum(steps[n][c] for n in names) for c in CATEGORIES + ("refund",)}

    one, batched = col(LIFECYCLE_STEPS), col(BATCH_STEPS)
    out = [
        "",
        "Where the gas goes (`bench/gas_breakdown.py`, from the node's opcode trace of the measured "
        "transactions; 'new slots' are storage slots written for the first time, 'execution' every "
        "opcode that is not storage, an event or a call):",
        "",
        "| | " + " | ".join(LIFECYCLE_STEPS) + " | **one-shard lifecycle** | post / 64 | assign_many item | "
        "submit_results item | finalize_many item | **batched shard** |",
        "|---|" + "---|" * 10,
    ]
    for c in CATEGORIES + ("refund",):
        if c == "refund" and not one[c] and not batched[c]:
            continue
        cells = [f"{steps[n][c]:,}" for n in LIFECYCLE_STEPS] + [f"**{one[c]:,}**"]
        cells += [f"{steps[n][c]:,}" for n in BATCH_STEPS] + [f"**{batched[c]:,}**"]
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    if life > GOALS["lifecycle_1_shard"] and all(k in steps for k in LEAN_STEPS):
        out += lean_comparison(steps, col(LEAN_STEPS), one, life)
    if per_shard and per_shard > GOALS["shard_of_64"]:
        floor = sum(batched[c] for c in CATEGORIES if c != "execution")
        out += [
            "",
            f"In batches a shard of a 64-shard job costs {per_shard:,} and misses the "
            f"{GOALS['shard_of_64']:,} goal. With no execution overhead at all it would still cost {floor:,}: "
            f"its first-time slots ({batched['new slots']:,}: the lease word at assign, and a share of each "
            f"result batch's commitment) and the events ({batched['events']:,}) the market is rebuilt from.",
        ]
    return out


def report(data: dict) -> str:
    out = [
        "# computenet benchmarks",
        "",
        f"Measured on this machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{time.strftime('%Y-%m-%d')}. Each benchmark is a script in `bench/`; `make bench` reruns them all.",
        "",
    ]
    gas = data.get("gas")
    if gas:
        life = gas["lifecycle_1_shard"]
        out += [
            "## Gas",
            "",
            "Receipt gas (21,000 per transaction included), a warm market; deterministic, so one run.",
            "",
            "| step | gas | anchor |",
            "|---|---|---|",
        ]
        rows = [
            (
                "register (first asset / later)",
                f"{gas['register_first_asset']:,} / {gas['register']:,}",
                "ERC-721 mint 73,600",
            ),
            ("post, 1 shard", f"{gas['post_1_shard']:,}", ""),
            (
                "post funded by x402 (EIP-3009)",
                f"{gas['post_1_shard_by_authorization']:,}",
                f"transferWithAuthorization + post: {gas['token_transfer_with_authorization'] + gas['post_1_shard']:,} here, "
                f"{ANCHORS['USDC transferWithAuthorization'] + gas['post_1_shard']:,} with USDC's 85,700",
            ),
            ("assign", f"{gas['assign']:,}", ""),
            ("submit_result", f"{gas['submit_result']:,}", ""),
            ("finalize (last shard)", f"{gas['finalize_last_shard']:,}", ""),
            (
                "**lifecycle, 1 shard** (post + assign + submit + finalize)",
                f"**{life:,}**",
                f"iExec deal 472,000; Ritual create + deliver 353,000; goal ≤ 250,000: {_miss(life, GOALS['lifecycle_1_shard'])}",
            ),
            ("lifecycle, 8 shards", f"{gas['lifecycle_8_shards']:,}", f"{gas['lifecycle_8_shards'] // 8:,} per shard"),
        ]
        if "lifecycle_64_shards_batched" in gas:
            per = gas["lifecycle_64_shards_batched_per_shard"]
            rows += [
                (
                    "**64 shards in batches** (post, assign_many, 4 agents' submit_results of 16, finalize_many)",
                    f"**{gas['lifecycle_64_shards_batched']:,}**",
                    f"{per:,} per shard; goal ≤ 80,000: {_miss(per, GOALS['shard_of_64'])}",
                ),
                (
                    "per item: assign_many / submit_results / finalize_many",
                    f"{gas['assign_many_per_item']:,} / {gas['submit_results_per_item']:,} / {gas['finalize_many_per_item']:,}",
                    "",
                ),
            ]
        rows += [
            ("lifecycle, 1 shard, replication 2", f"{gas['lifecycle_1_shard_replication_2']:,}", ""),
            ("withdraw", f"{gas['withdraw']:,}", ""),
            ("reclaim", f"{gas['reclaim']:,}", ""),
        ]
        out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
        out += gas_breakdown(data.get("gas_breakdown"), life, gas.get("lifecycle_64_shards_batched_per_shard"))
        out += ["", "![gas](plots/gas.png)", ""]
    sched = data.get("scheduler")
    if sched:
        out += [
            "## Scheduler",
            "",
            "Decisions per second over a market of 1,000 open shards (median round, and the "
            "slowest and fastest round).",
            "",
            "| assets | decisions/s (min–max) | p99 decision |",
            "|---|---|---|",
        ]
        for r in sched["results"]:
            spread = (
                f" ({r['decisions_per_s_min']:,}–{r['decisions_per_s_max']:,})" if "decisions_per_s_min" in r else ""
            )
            out.append(f"| {r['assets']:,} | {r['decisions_per_s']:,}{spread} | {r['p99_decision_ms']} ms |")
        ten = next((r for r in sched["results"] if r["assets"] == 10_000), None)
        if ten:
            out += [
                "",
                f"Goal ≥ 1,000/s at 10k assets: {_miss(ten['decisions_per_s'], 1_000, lower_is_better=False)} "
                "(Kubernetes' SLO with extended resources is 180 pods/s).",
            ]
        if sched.get("round"):  # the deployed path: the keeper's round, one index for every open shard
            out += [
                "",
                "The keeper's deployed path, a round (`keepers.decisions.decide_round`, and the action "
                f"`keepers.actions.assign_round` around it): {sched['round_includes']}.",
                "",
                "| assets | placements | decide_round | placements/s (min–max) | assign_round | placements/s |",
                "|---|---|---|---|---|---|",
            ]
            for r in sched["round"]:
                out.append(
                    f"| {r['assets']:,} | {r['placements']:,} | {r['decide_round_median_s'] * 1000:.1f} ms | "
                    f"{r['placements_per_s']:,} ({r['placements_per_s_min']:,}–{r['placements_per_s_max']:,}) | "
                    f"{r['assign_round_median_s'] * 1000:.1f} ms | {r['assign_round_placements_per_s']:,} |"
                )
            ten = next((r for r in sched["round"] if r["assets"] == 10_000), None)
            if ten:
                rate = ten["assign_round_placements_per_s"]
                out += [
                    "",
                    f"Goal ≥ 1,000 placements/s at 10k assets on the deployed path: {_miss(rate, 1_000, lower_is_better=False)}.",
                ]
        out += ["", "![scheduler](plots/scheduler.png)", ""]
    keeper = data.get("keeper")
    if keeper:
        out += [
            "## Keepers",
            "",
            "JobPosted → ShardAssigned mined, anvil with 1 s blocks (pooled over the runs; "
            "per-run p50 range in brackets). The floor, in the same runs: a bare bot watching the head "
            "as a keeper does that sends a plain transfer on each JobPosted block.",
            "",
            "| keepers | blocks p50 / p95 | ms p50 / p95 | reaction p50 / p95 | floor: blocks p95, reaction p95 | "
            "over the floor (blocks, p95) |",
            "|---|---|---|---|---|---|",
        ]
        for k, r in keeper["results"].items():
            p = r["pooled"]
            spread = [run["ms"]["p50"] for run in r["runs"]]
            floor = (
                f"{p['floor_blocks']['p95']}, {p['floor_reaction_ms']['p95']} ms | {r['blocks_over_floor_p95']}"
                if "floor_blocks" in p
                else "not measured | "
            )
            out.append(
                f"| {k} | {p['blocks']['p50']} / {p['blocks']['p95']} | {p['ms']['p50']} / {p['ms']['p95']} "
                f"({min(spread)}–{max(spread)}) | {p['reaction_ms']['p50']} / {p['reaction_ms']['p95']} ms | {floor} |"
            )
        worst = max(r["pooled"]["blocks"]["p95"] for r in keeper["results"].values())
        out += ["", f"Goal ≤ 1 block at p95: {_miss(worst, 1)}."]
        over = [r["blocks_over_floor_p95"] for r in keeper["results"].values() if "blocks_over_floor_p95" in r]
        if over:
            out += [f"Goal within one block of the floor at p95: {_miss(max(over), 1)}."]
        out += ["", "![keepers](plots/keepers.png)", ""]
    agent = data.get("agent")
    if agent:
        r = agent["results"]
        out += [
            "## Dispatch",
            "",
            f"Assignment mined → container running ({agent['shards']} shards, Docker storage "
            f"{agent.get('docker_storage', '?')}).",
            "",
            "| measure | p50 | p99 | goal |",
            "|---|---|---|---|",
            f"| dispatch | {r['dispatch_ms']['p50']} ms{_spread(r, 'dispatch_p50_ms')} | {r['dispatch_ms']['p99']} ms | "
            f"p50 ≤ 300 ms: {_miss(r['dispatch_ms']['p50'], 300)} |",
            f"| overhead per shard | {r['overhead_ms']['p50']} ms = {r['overhead_pct_of_60s']} % of 60 s | | ≤ 1 %: "
            f"{_miss(r['overhead_pct_of_60s'], 1.0)} |",
        ]
        if "floor_docker_run_ms" in r:  # the same run's floor: a plain docker run of the same container
            out += [
                f"| floor: plain `docker run` (same image, engine, run) | {r['floor_docker_run_ms']['p50']} ms"
                f"{_spread(r, 'floor_p50_ms')} | {r['floor_docker_run_ms']['p99']} ms | |",
                f"| dispatch / floor | {r['dispatch_floor_ratio_p50']}{_spread(r, 'dispatch_floor_ratio_p50')} | | "
                f"≤ 1.5: {_miss(r['dispatch_floor_ratio_p50'], 1.5)} |",
            ]
        out += [""]
    tp = data.get("throughput")
    if tp:
        out += [
            "## Throughput",
            "",
            f"One job of {tp['shards']} shards, each agent's asset holding up to {tp['capacity_per_agent']} "
            "leases, as many running at once as it has cores (each lease holds one: 2, 4, 8 and 16 for "
            "the demo's four assets), one keeper; all on this machine's cores. The floor, in the same run: "
            "the same shards run by Docker alone with the same sandbox options and as many at once.",
            "",
            "| agents | executed shards/min | finalised shards/min (end to end) | floor: Docker alone | "
            "Docker alone / executed |",
            "|---|---|---|---|---|",
        ]
        for r in tp["results"]:
            spread = [x["execution_per_min"] for x in r["runs"]]
            floor = "not measured | "
            if "docker_alone_per_min" in r:
                ratios = [x["floor_ratio"] for x in r["runs"]]
                floor = (
                    f"{r['docker_alone_per_min']:.1f} | {r['floor_ratio']:.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
                )
            out.append(
                f"| {r['agents']} | {r['execution_per_min']:.1f} ({min(spread):.1f}–{max(spread):.1f}) | "
                f"{r['end_to_end_per_min']:.1f} "
                f"| {floor} |"
            )
        rates = [r["execution_per_min"] for r in tp["results"]]
        out += [
            "",
            "End to end includes the market's 60 s challenge window, which every result waits before it is "
            "paid, so for one job it is about shards / (window + execution).",
        ]
        if max(rates) < 1.3 * min(rates):
            out += [
                "",
                f"How it scales: here it does not ({min(rates)}–{max(rates)} shards/min for every agent count). "
                "Each shard's work takes about a tenth of a second, so execution is bound by the chain's one-second "
                "blocks (an assignment and then a result each wait for one), and every agent, the keeper, the chain "
                "and the containers share this machine's cores. More agents add capacity only when the shards' own "
                "work, on separate machines, outweighs the two blocks each shard waits for.",
            ]
        out += ["", "![throughput](plots/throughput.png)", ""]
    x402 = data.get("x402")
    if x402:
        out += [
            "## x402",
            "",
            "A paid job post with the official `x402HttpxClient`: 402, signing, paid retry, verify, settle, 201. "
            "The floor, in the same run: the payer's EIP-3009 transfer signed and sent directly by a relayer, "
            "until its receipt.",
            "",
            "| blocks | p50 | p95 | per-run p50 | floor p50 | paid post / floor (per run) |",
            "|---|---|---|---|---|---|",
        ]
        for s in x402["settings"]:
            runs = [r["p50"] for r in s["runs"]]
            label = "a block per transaction" if not s["block_time_s"] else f"{s['block_time_s']} s"
            floor = "not measured | "
            if "floor_direct_transfer_ms" in s:
                ratios = [r["ratio_p50"] for r in s["runs"]]
                floor = f"{s['floor_direct_transfer_ms']['p50']} ms | {s['ratio_p50']} ({min(ratios)}–{max(ratios)})"
            out.append(
                f"| {label} | {s['latency_ms']['p50']} ms | {s['latency_ms']['p95']} ms | {min(runs)}–{max(runs)} ms "
                f"| {floor} |"
            )
        g = x402["gas"]
        out += [
            "",
            f"Gas of a funded post: {g['post_1_shard_by_authorization']:,} against {g['plain_transfer_plus_post']:,} "
            f"for a plain transfer plus a plain post ({g['funded_minus_plain']:+,}; goal ≤ +10,000: "
            f"{_miss(g['funded_minus_plain'], 10_000)}).",
            "",
        ]
    dapp = data.get("dapp")
    if dapp:
        size, connected = dapp["bundle"], dapp["load_to_connected_ms"]
        out += [
            "## dApp",
            "",
            "The page's bundle as `make dapp` builds it, and the time from loading the page (served by the gateway) "
            "to a connected wallet, in Debian's chromium with the tests' injected EIP-6963 wallet.",
            "",
            f"- bundle: {size['bytes']:,} bytes, {size['gzip_bytes']:,} gzipped",
            f"- page load → connected: p50 {connected['p50']} ms, p95 {connected['p95']} ms over {connected['n']} loads "
            f"(load → ready p50 {dapp['load_to_ready_ms']['p50']} ms; click → connected p50 "
            f"{dapp['click_to_connected_ms']['p50']} ms)",
        ]
        if "floor_ms" in dapp:
            floor, ratio = dapp["floor_ms"], dapp["connected_over_floor"]
            out.append(
                f"- floor, in the same loads (a plain file of the same origin, the config fetched and the same "
                f"wallet connected, no app): p50 {floor['p50']} ms, p95 {floor['p95']} ms; page load → connected "
                f"/ floor: {ratio['p50']} ({ratio['min']}–{ratio['max']} per load)"
            )
        out.append("")
    econ = data.get("economics")
    if econ:
        t, c = econ["totals"], econ["conservation"]
        out += [
            "## Economics",
            "",
            f"{t['jobs']} jobs ({t['shards']} shards, seed {econ['seed']}) on anvil with the "
            "default parameters and honest and dishonest participants, each with its own key: "
            f"{t['results']} results, {t['wrong_results']} of them wrong ({t['wrong_results_paid']} paid); "
            f"{t['disputes_opened']} disputes ({t['disputes_by_replica_mismatch']} replica mismatches), "
            f"{t['rulings']} ruled and {t['default_outcomes']} settled by the default outcome after the ruling "
            "deadline. The arbiter rules from the correct root, a stand-in for its own re-execution (which "
            f"tests/facilitator and tests/adversarial run for real), and is down for {econ['arbiter_down_share']:.0%} "
            "of disputes. Net gain: what the attacker's keys hold after (balance, market credits, stakes, keeper "
            "bond, all withdrawn at the end) less before, less its pay for correct results; token base units.",
            "",
            "| attacker | what it does | net gain | goal ≤ 0 |",
            "|---|---|---|---|",
        ]
        for name, gain in econ["attackers"].items():
            what = econ["participants"][name]["what"]
            out.append(f"| {name.replace('_', ' ')} | {what} | {gain:,} | {_miss(gain, GOALS['attacker_net_gain'])} |")
        slashed, late = econ["honest_providers_slashed"], econ["disputes_open_past_deadline"]
        out += [
            "",
            "| measure | value | goal |",
            "|---|---|---|",
            f"| honest providers slashed | {slashed} | 0: {_miss(slashed, GOALS['honest_providers_slashed'])} |",
            f"| disputes open past their ruling deadline | {late} | 0: {_miss(late, GOALS['disputes_open_past_deadline'])} |",
            f"| conservation | {c['before']['total']:,} before and {c['after']['total']:,} after (the supply); market "
            f"balance = owed: {c['market_balance_equals_owed']} | exact: {'met' if econ['conserved'] else 'missed'} |",
        ]
        sleeper = econ["participants"].get("unresponsive_provider")
        if sleeper:
            out += [
                "",
                f"The unresponsive asset lost {sleeper['slashed']:,} to {t['reclaims']} reclaims of piled leases, "
                "all to the treasury; the keeper and client that piled them gained "
                f"{econ['attackers'].get('keeper_client_lease_piling', 0):,}.",
            ]
        out.append("")
    ver = data.get("verification")
    if ver:
        m = ver["modes"]
        p = ver["spot_check_bps"] / 100
        out += [
            "## Verification under attack",
            "",
            f"{ver['shards_per_mode']} shards per mode, each a real container run; a quarter of the replicas on a "
            "provider that submits wrong roots, a quarter on one that claims four times its metered use plus five "
            "seconds; two verifier bots and the arbiter re-execute for real (bench/bench_verification.py). "
            f"Spot checks at {p:g} %, optimistic sampling {ver['optimistic_share_bps'] / 100:g} % per verifier, "
            f"metering tolerance {ver['metering_tolerance_bps'] / 100:g} %.",
            "",
            "| mode | wrong results caught | expected | inflated claims caught | paid beyond tolerance (goal 0) "
            "| honest challenged (goal 0) | honest slashed (goal 0) | re-executions | finality p50 (chain s) "
            "| gas per shard (verification) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in m.items():
            expected = (
                "100 %"
                if name == "replicated"
                else (
                    f"{r['expected_caught']} (3σ {r['expected_caught_interval_3sd'][0]}–{r['expected_caught_interval_3sd'][1]}; "
                    f"P(≥ 1) = 1 − (1 − p)^n = {r['p_at_least_one_caught']:.2f})"
                    if name == "spot_check"
                    else "sampled share"
                )
            )
            out.append(
                f"| {name.replace('_', ' ')} | {r['wrong_caught']}/{r['wrong_submitted']} | {expected} | "
                f"{r['inflated_caught']}/{r['inflated_submitted']} | {r['inflated_paid_beyond_tolerance']} | "
                f"{r['honest_challenged']} | {r['honest_slashed']} | {r['reexecutions']} | "
                f"{r['finality_seconds_p50']} | {r['gas_per_shard']:,} ({r['verification_gas_per_shard']:,}) |"
            )
        out += ["", f"Goals met: {ver['goals_met']}.", ""]
    zkr = data.get("zk")
    if zkr:
        out += _zk_section(zkr)
    att = data.get("attestation")
    if att:
        out += _attestation_section(att)
    scale = data.get("scale")
    if scale:
        out += _scale_section(scale)
    return "\n".join(out) + "\n"


def _scale_section(r: dict) -> list[str]:
    """The scale simulation (bench/bench_scale.py): throughput and its limits per N agents."""
    from scale.analysis import base_sentence, detail_table, markdown_table

    results = r["results"]
    limit = results[0]["block_gas_limit"]
    out = [
        "",
        "## Scale",
        "",
        f"N simulated agents on one anvil ({limit:,}-gas blocks, one a second; the chain's clock runs "
        f"{r['chain_seconds_per_block']} s a block so the contracts' minimum 60 s challenge window passes in a few "
        f"blocks), each a registered, staked one-GPU asset with its own agent key, running the real agent's reads, "
        f"EIP-712 receipt and submission with a null workload; {results[0]['keepers']} keepers racing "
        f"({r['keeper_mode']}); clients posting jobs of {r['shards_per_job']} shards at an offered load that steps "
        f"up through {', '.join(f'{x * 60:g}' for x in r['rates_per_s'])} shards/min until the network stops "
        "keeping up; every posted shard then finalized and the market's books checked. A step's rates are its own "
        "shards' (good to about a keeper round over the step); 'working off a backlog' is the rate once posting "
        "stopped, with the queue the ramp left (keepers' rounds then carry more work each). Shares: where a "
        "shard's time goes from post to final, the challenge window left out, at the most each N kept up with "
        "(keepers: from an event to their transaction, queueing for a free asset included; chain: waiting for "
        "inclusion)." + (" A quick run (--quick)." if r.get("quick") else ""),
        "",
        markdown_table(results),
        "",
        "Where the time and the machine went, at the step where each N saturated (else its last); "
        "'other' is CPU used by anything else running on the machine meanwhile, and a keeper's "
        "'assets re-read' is `ChainView.assets` keeping its asset index current (re-reading the assets each "
        "new block's events name):",
        "",
        detail_table(results),
        "",
    ]
    if r.get("base"):
        out += [base_sentence(r["base"], limit), ""]
    books = [x["books"]["conserved"] for x in results]
    out += [
        f"Books: every posted shard finalized and paid, and the market's token balance equal to what it owes, "
        f"at every N: {all(books)}.",
        "",
        "![scale](plots/scale.png)",
        "",
        "![scale shares](plots/scale_shares.png)",
        "",
    ]
    return out


def _attestation_section(r: dict) -> list[str]:
    """TEE evidence verification (bench/bench_attestation.py): milliseconds per quote, by kind."""
    out = [
        "",
        "## TEE evidence verification",
        "",
        "Real vendor-signed samples (tests/verifier/evidence/) verified as the attestor verifies them "
        "(`verifier/attestor.py`: dcap-qvl for Intel TDX and SGX quotes, `verifier/snp.py` for AMD "
        "SEV-SNP reports) at a pinned time inside their collateral's window. NVIDIA GPU evidence is "
        "not verified (docs/tee.md says why). The floor, interleaved in the same run: the signatures' "
        "cryptography alone on the same evidence (dcap-qvl's own `verify` for Intel quotes; for AMD reports the "
        "certificates loaded and their three RSA-PSS and one ECDSA signatures checked with `cryptography`).",
        "",
        "| kind | runs | min / median / p95 / max | floor: min / median / p95 / max | median / floor |",
        "|---|---|---|---|---|",
    ]

    def line(ms: dict) -> str:
        return f"{ms['min']:.2f} / {ms['median']:.2f} / {ms['p95']:.2f} / {ms['max']:.2f} ms"

    for kind, figures in r.items():
        floor = figures.get("floor_ms")
        cells = f"{line(floor)} | {figures['over_floor']}" if floor else "| "
        out.append(
            f"| {kind} ({figures['quote_bytes']:,}-byte evidence) | {figures['runs']} | {line(figures['ms'])} | {cells} |"
        )
    return out


def _zk_section(r: dict) -> list[str]:
    """The zk level (bench/bench_zk.py): min / median / max over the proven shards."""

    def mmm(s: dict, digits: int = 0) -> str:
        f = (lambda v: f"{v:,.{digits}f}") if digits else (lambda v: f"{round(v):,}")
        return f"{f(s['min'])} / {f(s['median'])} / {f(s['max'])}"

    v, f, o = r["verifier"], r["finality"], r["optimistic_gas"]
    out = [
        "## ZK verification",
        "",
        f"Model `{r['model']}` (EZKL Halo2, KZG on BN254), {r['proofs']} shards each proven for real and submitted "
        "through `ModelRegistry.submit_result`, which verifies the proof, submits and finalizes in one transaction; "
        "an optimistic job of as many shards on the same stack for comparison. Min / median / max.",
        "",
        "| measure | value | anchor (not measured here) |",
        "|---|---|---|",
        f"| `verifyProof` alone (eth_estimateGas: 21,000 base and calldata included) | {mmm(r['verify_proof_gas'])} gas "
        f"| {r['anchors']['EZKL Halo2 verifier, toy model (measured earlier)']} (EZKL Halo2, toy model); "
        f"Groth16 {r['anchors']['Groth16 verifier']}; RISC Zero {r['anchors']['RISC Zero verifier']} |",
        f"| `ModelRegistry.submit_result` (verify + submit + finalize + payment) | {mmm(r['submit_result_gas'])} gas | |",
        f"| optimistic `submit_result` + `finalize` | {mmm(o['submit_plus_finalize'])} gas "
        f"| zk costs {r['zk_minus_optimistic_gas']:+,.0f} (medians) |",
        f"| public instances | {r['public_instances']} | |",
        f"| verifier runtime code / deployment | {v['runtime_bytes']:,} bytes / {v['deployment_gas']:,} gas | |",
        f"| register_model / bind | {r['setup_gas']['register_model']:,} / {r['setup_gas']['bind']:,} gas | |",
        f"| proving (as `zk.prove` reports) | {mmm(r['prove_seconds'], 2)} s, peak {mmm(r['peak_mib'])} MiB | |",
        f"| proof size | {mmm(r['proof_bytes'])} bytes | |",
        f"| time to finality, zk: container end → final (proving + submit) | {mmm(f['zk_wall_seconds'], 2)} s; "
        f"the chain finalizes in the submit's block ({mmm(f['zk_chain_seconds'])} s) | |",
    ]
    if "floor_seconds" in f:
        out.append(
            f"| the same with the prover's start, against its floor in the same run: EZKL's own proving + a plain "
            f"transfer's inclusion | {mmm(f['zk_wall_seconds_with_prover_start'], 2)} s against "
            f"{mmm(f['floor_seconds'], 2)} s: {mmm(f['over_floor'], 2)}× | |"
        )
    out += [
        f"| time to finality, optimistic: submit → earliest finalize (chain time) | "
        f"{mmm(f['optimistic_chain_seconds'])} s (window {f['challenge_window']} s + 1 s) "
        f"| {f['optimistic_over_zk']:,}× the zk path |",
        "",
    ]
    return out


def plots(data: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    made = []

    def save(fig, name):
        path = PLOTS / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)

    gas = data.get("gas")
    if gas:
        fig, ax = plt.subplots(figsize=(8, 4))
        bars = {
            "computenet lifecycle (1 shard)": gas["lifecycle_1_shard"],
            "x402-funded post": gas["post_1_shard_by_authorization"],
            **ANCHORS,
        }
        ax.barh(list(bars), list(bars.values()), color=["C0", "C0"] + ["C7"] * len(ANCHORS))
        ax.axvline(GOALS["lifecycle_1_shard"], color="C3", linestyle="--", label="lifecycle goal 250k")
        ax.set_xlabel("gas")
        ax.legend()
        save(fig, "gas")
    sched = data.get("scheduler")
    if sched:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [r["assets"] for r in sched["results"]]
        ax.plot(xs, [r["decisions_per_s"] for r in sched["results"]], marker="o", label="computenet")
        ax.axhline(1_000, color="C3", linestyle="--", label="goal 1,000/s")
        ax.axhline(180, color="C7", linestyle=":", label="Kubernetes SLO 180/s")
        ax.set(xscale="log", yscale="log", xlabel="assets", ylabel="decisions per second")
        ax.legend()
        save(fig, "scheduler")
    keeper = data.get("keeper")
    if keeper:
        fig, ax = plt.subplots(figsize=(6, 4))
        for k, r in keeper["results"].items():
            ax.bar([f"{k} keeper(s) p50", f"{k} keeper(s) p95"], [r["pooled"]["ms"]["p50"], r["pooled"]["ms"]["p95"]])
        ax.axhline(1000, color="C3", linestyle="--", label="one block")
        ax.set_ylabel("JobPosted → ShardAssigned (ms)")
        ax.legend()
        save(fig, "keepers")
    tp = data.get("throughput")
    if tp:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [r["agents"] for r in tp["results"]]
        ax.plot(xs, [r["execution_per_min"] for r in tp["results"]], marker="o", label="executed")
        ax.plot(xs, [r["end_to_end_per_min"] for r in tp["results"]], marker="s", label="finalised (end to end)")
        ax.set(xlabel="agents", ylabel="shards per minute", xticks=xs)
        ax.legend()
        save(fig, "throughput")
    if data.get("scale"):
        from scale.plots import draw

        made += draw(data["scale"], PLOTS)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and shards (a few minutes)")
    parser.add_argument("--only", default=",".join(BENCHES), help="benchmarks to run, comma-separated")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from bench/results/*.json")
    args = parser.parse_args()
    took = {} if args.report_only else run_benchmarks([n for n in args.only.split(",") if n], args.quick)
    data = collect()
    missing = [name for name, value in data.items() if value is None]
    combined_path = ROOT / "bench" / "results.json"
    # A partial run (--only) keeps the other benchmarks' run times from the last report.
    previous = json.loads(combined_path.read_text()).get("seconds", {}) if combined_path.exists() else {}
    combined = {
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "seconds": previous | took,
        "goals": GOALS,
        "anchors": ANCHORS,
        **{k: v for k, v in data.items() if v is not None},
    }
    combined_path.write_text(json.dumps(combined, indent=2) + "\n")
    (ROOT / "bench" / "report.md").write_text(report(data))
    made = plots(data)
    print(f"\nwrote bench/results.json, bench/report.md and {len(made)} plots in bench/plots/")
    if missing:
        print(f"no results yet for: {', '.join(missing)} (run without --report-only)")


if __name__ == "__main__":
    main()
