"""Scale simulation: N simulated agents, several keepers and a stream of jobs on one anvil.

    .venv/bin/python bench/bench_scale.py [--agents 10,100,1000] [--keepers 2] [--rates 0.5,1,2,4,8,16]
        [--step-seconds 30] [--step-latencies 3] [--max-ramp-seconds 360] [--quick] [--out FILE] [--no-plots]

For each N a fresh anvil (block gas limit 30,000,000, a block every second) gets the stack
and N registered, staked one-GPU assets, each with its own agent key. Keepers (a process
each: the real keeper's projection, chain view and decisions, no Celery or Redis) assign and
finalize; the agents (a few processes: the real agent's reads, EIP-712 receipt and
submission, a null workload instead of Docker) submit; two clients post jobs of
`--shards-per-job` shards. One job goes through first, alone (its time, post to final, sets
each step's length: at least `--step-latencies` times it, and `--step-seconds`); then the
offered load steps up through `--rates` (shards/s) until a step leaves the queue of shards
not yet finalized grown well beyond what keeping up would (by 30 % of the step's shards), or
the ramp has run `--max-ramp-seconds`;
then every posted shard is left to finish and the market's books are checked. The challenge
window is the contracts' minimum, 60 s, and the chain's clock runs `--chain-seconds-per-block`
per block so it passes in a few blocks (bench/scale/net.py).

Per N and step: shards posted, assigned, submitted and finalized per minute (the step's own
shards, bench/scale/analysis.py); block gas used against the limit; each role's CPU and the
rest of the machine's; where each shard's time went (keepers, agents, waiting for inclusion,
the window); keepers' and agents' time by kind of step; per N the gas per shard from the
receipts and where it saturates (finalized under 85 % of what was posted), with the evidence.
Figures go to bench/results/scale.json and bench/plots/scale*.png; each run's raw record
stays in its log folder (`--reanalyse FOLDER` recomputes the figures from it).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.chdir(ROOT)  # ape finds the project (and its compiled contracts) from the working directory

# Base mainnet, for what the measured gas per shard means there: docs.base.org's Throughput and
# Limits page gives a "Full block gas budget ~400M gas" per 2-second block.
BASE = {
    "block_gas_limit": 400_000_000,
    "block_time_s": 2,
    "source": "https://docs.base.org/base-chain/network-information/throughput-and-limits",
    "target_note": (
        "the page gives no gas target; Base's status page put the target at 30 Mgas/s in March 2025 "
        "(https://base-l2.statuspage.io/incidents/m9j1sgzvk9vc), when the limit was far lower"
    ),
}
QUICK = {"agents": "10", "rates": "1,4", "step_seconds": 16.0, "step_latencies": 2.0, "drain_timeout": 60.0}
READY_TIMEOUT = 240  # seconds for the worker processes to join (each imports ape and connects)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used (all but idle and I/O wait): the
    simulation's share of the machine is told apart from whatever else runs on it."""
    user, nice, system, idle, iowait, *rest = (
        int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]
    )
    return (user + nice + system + sum(rest[:3])) / os.sysconf("SC_CLK_TCK")


class Poster(threading.Thread):
    """The clients: post_job at `rate` shards a second (a job every shards_per_job / rate s),
    from two client accounts in turn, through scale.chain.Chain."""

    def __init__(self, market, plan) -> None:
        super().__init__(daemon=True, name="poster")
        self.market, self.plan = market, plan
        self.rate = 0.0
        self.sent: dict[str, float] = {}
        self.refused: list[str] = []
        self.seconds: list[float] = []  # each post's time to send
        self.stopped = threading.Event()
        self.error = ""

    def run(self) -> None:
        from ape import accounts
        from scale.chain import Chain, Sent
        from scale.net import CLIENTS, MANIFEST, requirements

        chain, clients = Chain(self.market), [accounts.test_accounts[i] for i in CLIENTS]
        due, n = time.monotonic(), 0
        try:
            while not self.stopped.is_set():
                rate = self.rate  # set by the main thread between steps
                if rate <= 0:
                    self.stopped.wait(0.05)
                    due = time.monotonic()
                    continue
                if due > time.monotonic():
                    self.stopped.wait(due - time.monotonic())  # pacing the offered load
                    continue
                began = time.perf_counter()
                [sent] = chain.post(clients[n % len(clients)], [(MANIFEST, requirements(self.plan, self.market.now()))])
                self.seconds.append(time.perf_counter() - began)
                n += 1
                if isinstance(sent, Sent):
                    self.sent[sent.tx] = sent.at
                else:
                    self.refused.append(sent.reason)
                # Late (the machine is saturated): catch up at most a second's worth.
                due = max(due + self.plan.shards_per_job / rate, time.monotonic() - 1)
        except Exception as error:  # the run checks `error` and stops
            self.error = f"{type(error).__name__}: {error}"


class Workers:
    """The keeper and agent processes, and what they report on one queue. They start (and
    connect to anvil) while the main process deploys; `join` hands them the deployment."""

    def __init__(self, uri: str, plan, agent_procs: int) -> None:
        import multiprocessing

        from scale import agents, keepers

        ctx = multiprocessing.get_context("spawn")  # ape and threads in the parent: no fork
        self.stop, self.queue = ctx.Event(), ctx.Queue()
        self.procs, self.inboxes = {}, {}
        for k in range(plan.keepers):
            self._start(ctx, f"keeper-{k}", keepers.run, uri, k)
        for p in range(agent_procs):
            self._start(ctx, f"agents-{p}", agents.run, uri, list(range(p, plan.agents, agent_procs)))
        self.ready: set[str] = set()
        self.latest: dict[str, dict] = {}  # name -> its last timing snapshot
        self.done: dict[str, dict] = {}
        self.failed = ""
        threading.Thread(target=self._collect, daemon=True, name="collector").start()

    def _start(self, ctx, name: str, target, uri: str, which) -> None:
        self.inboxes[name] = ctx.Queue()
        args = (uri, self.inboxes[name], which, name, self.stop, self.queue)
        self.procs[name] = ctx.Process(target=target, args=args, name=name)
        self.procs[name].start()

    def join(self, record: dict) -> None:
        for inbox in self.inboxes.values():
            inbox.put(record)

    def _collect(self) -> None:
        while len(self.done) < len(self.procs) and not self.failed:
            try:
                kind, name, payload = self.queue.get(timeout=1)
            except Exception:  # queue.Empty: look again (the loop ends once all are done)
                continue
            if kind == "ready":
                self.ready.add(name)
            elif kind == "timings":
                self.latest[name] = payload
            elif kind == "done":
                self.latest[name] = payload["timings"]
                self.done[name] = payload
            elif kind == "failed":
                self.failed = f"{name} failed: {payload}"

    def check(self) -> None:
        if self.failed:
            raise RuntimeError(self.failed)
        dead = [n for n, p in self.procs.items() if p.exitcode not in (None, 0) and n not in self.done]
        if dead:
            raise RuntimeError(f"worker processes exited: {dead}")

    def wait_ready(self) -> None:
        from computenet.localnet import wait_until

        wait_until(
            lambda: self.check() or len(self.ready) == len(self.procs), READY_TIMEOUT, "the workers to join", 0.2
        )

    def finish(self, timeout: float = 120) -> dict[str, dict]:
        from computenet.localnet import wait_until

        self.stop.set()
        try:
            wait_until(lambda: self.failed or len(self.done) == len(self.procs), timeout, "the workers' reports", 0.2)
        finally:
            for proc in self.procs.values():
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.terminate()
        self.check()
        return self.done


def run_n(n: int, args, workdir: Path) -> dict:
    """One N: set up, ramp the offered load, drain, check the books; the figures."""
    from ape import networks
    from scale.monitor import Monitor
    from scale.net import BLOCK_GAS_LIMIT, CHALLENGE_WINDOW, CLIENTS, KEEPERS, OWNER, PROVIDERS, Net, Plan

    from computenet.localnet import wait_until
    from computenet.web3calls import abi

    def say(text: str) -> None:
        print(f"  [{time.monotonic() - began:6.1f} s] {text}", flush=True)

    began = time.monotonic()
    plan = Plan(
        agents=n,
        keepers=args.keepers,
        leases_per_asset=args.leases_per_asset,
        chain_seconds_per_block=args.chain_seconds_per_block,
        shards_per_job=args.shards_per_job,
    )
    folder = workdir / f"agents-{n}"
    folder.mkdir(parents=True)
    net = Net(plan, folder, say)
    workers = poster = monitor = None
    try:
        with networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": net.anvil.uri}):
            procs = min(args.agent_procs, n)
            workers = Workers(net.anvil.uri, plan, procs)
            net.deploy()
            net.register_assets()
            say(f"deployed; {n} assets registered and staked, {plan.keepers} keepers bonded")
            workers.join(net.record())
            workers.wait_ready()
            say(f"{plan.keepers} keeper and {procs} agent processes ready")
            net.start_clock()
            market = net.market
            start = market.head()
            monitor = Monitor(
                net.anvil.rpc,
                abi("JobMarket"),
                market.addresses["market"],
                start + 1,
                relay=(abi("BatchRelay"), market.addresses["relay"]),
            )
            monitor.start()
            wait_until(lambda: monitor.head() >= start + 2, 10, "two interval-mined blocks", 0.05)
            limit = net.gas_limit()
            assert limit == BLOCK_GAS_LIMIT, f"block gas limit {limit}, not {BLOCK_GAS_LIMIT}"
            setup_s = round(time.monotonic() - began, 1)
            poster = Poster(market, plan)
            poster.start()
            pids = {"anvil": net.anvil.process.pid, "main": os.getpid()} | {k: p.pid for k, p in workers.procs.items()}
            roles = {"anvil": "anvil", "main": "main"} | {k: k.split("-")[0].rstrip("s") + "s" for k in workers.procs}
            roles["machine"] = "machine"

            def snapshot() -> tuple[dict, dict]:
                cpu = {k: cpu_seconds(p) for k, p in pids.items()} | {"machine": machine_cpu_seconds()}
                return cpu, {k: dict(v) for k, v in workers.latest.items()}

            def healthy() -> None:
                workers.check()
                if poster.error or monitor.error:
                    raise RuntimeError(poster.error or monitor.error)

            # Warm-up: one job through the whole pipeline at no load. Its time sets how long a
            # step runs (rates are read off the chain over a span shifted by a shard's delay,
            # so a step must outlast it); 0 --step-latencies skips it.
            warm = _warm_up(market, plan, poster, monitor, healthy) if args.step_latencies else 0.0
            step_s = max(args.step_seconds, args.step_latencies * warm)
            if warm:
                say(f"warm-up job finalized {warm:.1f} s after it was sent; steps of {step_s:.0f} s")
            steps, ramp_began = [], time.monotonic()
            before, last_rate = 0, 0.0  # the backlog when the step began, and the step's rate before
            for rate in [float(r) for r in args.rates.split(",")]:
                poster.rate = rate
                cpu0, timings0 = snapshot()
                step = {"rate": rate, "start_block": monitor.head() + 1, "start_time": time.time()}
                end = time.monotonic() + step_s
                wait_until(lambda: healthy() or time.monotonic() >= end, step_s + 5, "the step's end", 0.2)
                cpu1, timings1 = snapshot()
                step |= {"end_block": monitor.head(), "end_time": time.time(), "cpu_start": cpu0, "cpu_end": cpu1}
                step |= {"timings_start": timings0, "timings_end": timings1}
                steps.append(step)
                backlog, latency = _backlog(monitor.blocks)
                say(
                    f"offered {rate * 60:g} shards/min: {backlog} posted shards not finalized yet, "
                    f"post to final {latency:.1f} s lately"
                )
                # Keeping up holds about rate x (a shard's unloaded time) in flight, so a step
                # raises it by the rate's rise x that time. A queue grown by 30 % of the step's
                # shards more than that (give or take two jobs) is well past the report's
                # saturation (under 85 % of a step's shards through), which the analysis then
                # finds; higher loads would only lengthen the drain. (A 15 % rise can still be a
                # network keeping up at a longer delay per shard.)
                grew, before = backlog - before, backlog
                expected = (rate - last_rate) * warm + 0.3 * rate * (step["end_time"] - step["start_time"])
                last_rate = rate
                if grew > expected + 2 * plan.shards_per_job:
                    say(f"saturated: the queue grew by {grew} shards in the step; the ramp stops here")
                    break
                if time.monotonic() - ramp_began > args.max_ramp_seconds:
                    say(f"the ramp has run {args.max_ramp_seconds:g} s: it stops here")
                    break
            poster.rate = 0
            posted = len(poster.sent) * plan.shards_per_job
            say(f"draining: {posted} shards posted, waiting for all of them to be finalized")

            def drained() -> bool:
                healthy()
                events = [name for b in list(monitor.blocks.values()) for name, _, _ in b.events]
                # Counted from what the client sent by now: a post in flight when posting stopped counts too.
                posted_now = len(poster.sent) * plan.shards_per_job
                return events.count("JobPosted") == len(poster.sent) and events.count("ShardFinalized") >= posted_now

            cpu0, timings0 = snapshot()
            drain = {"start_time": time.time(), "cpu_start": cpu0, "timings_start": timings0}
            try:
                wait_until(drained, args.drain_timeout, f"all {posted} posted shards to be finalized", 0.5)
                say("every posted shard finalized; checking the books")
            except TimeoutError as error:  # the books then show what is left in escrow
                say(f"{error}: checking the books as they stand")
            cpu1, timings1 = snapshot()
            drain |= {"end_time": time.time(), "cpu_end": cpu1, "timings_end": timings1}
            poster.stopped.set()
            stats = workers.finish()
            accounts = [a.address for a in _test_accounts((OWNER, *CLIENTS, *PROVIDERS, *KEEPERS[: plan.keepers]))]
            books = _books(market, accounts, monitor.blocks)
            monitor.stopped.set()
            monitor.join(timeout=5)
    finally:
        if poster is not None:
            poster.stopped.set()
        if monitor is not None:
            monitor.stopped.set()
        if workers is not None and not workers.done:
            workers.stop.set()
            for proc in workers.procs.values():
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.terminate()
        net.stop()

    sent = dict(poster.sent)
    for s in stats.values():
        sent.update({tx: v[1] if isinstance(v, list | tuple) else v for tx, v in s["sent"].items()})
    outcomes: dict[str, int] = {}
    for s in stats.values():
        for reason, count in s.get("outcomes", {}).items():
            outcomes[reason] = outcomes.get(reason, 0) + count
    raw = {
        "plan": plan.__dict__,
        "blocks": monitor.blocks,
        "sent": sent,
        "steps": steps,
        "drain": drain,
        "roles": roles,
        "head": {
            "agents": n,
            "keepers": plan.keepers,
            "agent_processes": min(args.agent_procs, n),
            "leases_per_asset": plan.leases_per_asset,
            "setup_s": setup_s,
            "warm_up_s": round(warm, 2),
            "step_s": round(step_s, 1),
            "block_gas_limit": limit,
            "challenge_window_s": CHALLENGE_WINDOW,
        },
        "tail": {
            "books": books,
            "keeper_outcomes": outcomes,
            "agents_refused": sum(len(s.get("refused", [])) for s in stats.values()),
            "agents_dropped": sum(s.get("dropped", 0) for s in stats.values()),
            "clients_refused": len(poster.refused),
            "client_post_s": _spread(poster.seconds),
            "seconds": round(time.monotonic() - began, 1),
        },
    }
    with open(folder / "raw.pickle", "wb") as f:  # --reanalyse reads it back
        pickle.dump(raw, f)
    return summarise(raw)


def summarise(raw: dict) -> dict:
    """One N's figures from what the run recorded (the chain's blocks, the roles' send times,
    the steps' boundaries, CPU and timings)."""
    from scale import analysis

    blocks = raw["blocks"]
    shards = analysis.shard_timelines(blocks, raw["sent"])
    figures, done = [], {}
    for step in raw["steps"]:
        figure, done = analysis.step_figures(step, blocks, shards, raw["plan"], raw["roles"], done)
        figures.append(figure)
    latencies = [sum(s["segments"].values()) for s in shards.values() if "segments" in s]
    drained_from = blocks[raw["steps"][-1]["end_block"]].seen  # posting stopped: the drain
    drain = raw.get("drain")
    if drain:  # what the machine did while the backlog was worked off
        seconds = drain["end_time"] - drain["start_time"]
        drain = {
            "seconds": round(seconds, 1),
            "cpu_cores": analysis.cpu_cores(drain["cpu_start"], drain["cpu_end"], seconds, raw["roles"]),
            "keeper_time": analysis.time_shares(drain["timings_start"], drain["timings_end"], seconds, "keeper"),
        }
    return (
        raw["head"]
        | {
            "steps": figures,
            "drain": drain,
            "saturation": analysis.saturation(figures, os.cpu_count() or 1, analysis.drain_rate(blocks, drained_from)),
            "gas": analysis.gas_figures(blocks, shards),
            "post_to_finalized_s": _spread(latencies),
            "post_to_final_floor_blocks": analysis.post_to_final_floor_blocks(
                raw["head"]["challenge_window_s"], raw["plan"]["chain_seconds_per_block"]
            ),
        }
        | raw["tail"]
    )


def _warm_up(market, plan, poster: Poster, monitor, healthy) -> float:
    """Posts one job and waits for all its shards to be final: seconds from its post_job
    being sent to its last ShardFinalized being seen."""
    from ape import accounts
    from scale.chain import Chain
    from scale.net import CLIENTS, MANIFEST, requirements

    from computenet.localnet import wait_until

    [sent] = Chain(market).post(accounts.test_accounts[CLIENTS[0]], [(MANIFEST, requirements(plan, market.now()))])
    poster.sent[sent.tx] = sent.at  # counted with the rest: drained and checked at the end

    def finalized() -> list:
        healthy()
        return [b.seen for b in list(monitor.blocks.values()) for n, _, _ in b.events if n == "ShardFinalized"]

    wait_until(lambda: len(finalized()) >= plan.shards_per_job, 300, "the warm-up job to be finalized", 0.2)
    return max(finalized()) - sent.at


def _backlog(blocks: dict, recent: int = 20) -> tuple[int, float]:
    """Shards posted and not finalized yet, by the chain, and the median time from post to
    final of the last `recent` finalized."""
    posted, finals = {}, []
    for b in list(blocks.values()):
        for name, args, _ in b.events:
            if name == "JobPosted":
                posted.update({(int(args["job"]), s): b.seen for s in range(int(args["shard_count"]))})
            elif name == "ShardFinalized":
                finals.append(b.seen - posted.get((int(args["job"]), int(args["shard"])), b.seen))
    return len(posted) - len(finals), (statistics.median(finals[-recent:]) if finals else 0.0)


def _spread(values: list[float]) -> dict:
    if not values:
        return {}
    from figures import percentile

    return {
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "max": round(max(values), 2),
    }


def _test_accounts(indices) -> list:
    from ape import accounts

    return [accounts.test_accounts[i] for i in indices]


def _books(market, accounts: list[str], blocks: dict) -> dict:
    """The market's books once every posted shard is final: its token balance equals what it
    owes, nothing is left in escrow (every job finished), and what it owes is the credits of
    the accounts it paid; every finalized shard paid its provider."""
    events = [(name, args) for b in blocks.values() for name, args, _ in b.events]
    jobs = {int(a["job"]) for name, a in events if name == "JobPosted"}
    finished = {int(a["job"]) for name, a in events if name == "JobFinished"}
    payments = [int(a["payment"]) for name, a in events if name == "ShardFinalized"]
    balance, owed = market.balance(market.addresses["market"]), int(market.market.owed())
    credits = sum(market.credits(a) for a in accounts)
    escrow = sum(j.escrow for j in market.jobs(sorted(jobs)).values()) if jobs else 0
    return {
        "market_balance": balance,
        "owed": owed,
        "credits": credits,
        "escrow_left": escrow,
        "jobs_posted": len(jobs),
        "jobs_finished": len(finished),
        "shards_posted": sum(int(a["shard_count"]) for name, a in events if name == "JobPosted"),
        "shards_finalized": len(payments),
        "shards_paid": sum(1 for p in payments if p > 0),
        "balance_equals_owed": balance == owed,
        "owed_equals_credits": owed == credits,
        "conserved": balance == owed == credits and escrow == 0 and finished == jobs,
    }


def base_projection(results: list[dict]) -> dict:
    """What the measured gas per shard means for this anvil's block and for Base's."""
    gas = [r["gas"]["per_shard"] for r in results if r["gas"]["per_shard"]]
    if not gas:
        return {}
    per_shard = round(statistics.median(gas))
    base_per_s = BASE["block_gas_limit"] / BASE["block_time_s"]
    limit = results[0]["block_gas_limit"]
    return BASE | {
        "gas_per_shard": per_shard,
        "anvil_shards_per_min_at_limit": round(limit / per_shard * 60),
        "base_gas_per_s": round(base_per_s),
        "base_shards_per_min_at_limit": round(base_per_s / per_shard * 60),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default="10,100,1000", help="N values, comma-separated")
    parser.add_argument("--keepers", type=int, default=2, help="keeper processes (2 or 3)")
    parser.add_argument("--agent-procs", type=int, default=2, help="processes the agents are spread over")
    parser.add_argument("--rates", default="0.5,1,2,4,8,16,32", help="offered load steps, shards per second")
    parser.add_argument("--step-seconds", type=float, default=30.0, help="each step's length, at least")
    parser.add_argument(
        "--step-latencies",
        type=float,
        default=3.0,
        help="and at least this many times the warm-up job's time (0: no warm-up)",
    )
    parser.add_argument("--max-ramp-seconds", type=float, default=360.0, help="no step starts after this long")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds for the posted shards to finish")
    parser.add_argument("--shards-per-job", type=int, default=4)
    parser.add_argument("--leases-per-asset", type=int, default=1)
    parser.add_argument("--chain-seconds-per-block", type=int, default=20, help="chain clock per 1 s block")
    parser.add_argument("--quick", action="store_true", help="N=10 (unless --agents), two short steps: about a minute")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    parser.add_argument("--plots", type=Path, default=ROOT / "bench" / "plots")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--reanalyse", type=Path, help="a past run's log folder: its figures again, nothing run")
    args = parser.parse_args()
    if args.quick:
        given = {a.split("=")[0] for a in sys.argv[1:]}
        for key, value in QUICK.items():
            if f"--{key.replace('_', '-')}" not in given:
                setattr(args, key, value)
    if not 1 <= args.keepers <= 3:
        raise SystemExit("--keepers must be 1, 2 or 3 (test accounts 4-6)")

    from ape.logging import logger
    from scale import analysis

    logger.set_level("ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"logs in {workdir}", flush=True)
    started = time.monotonic()
    results = []
    for n in (int(x) for x in args.agents.split(",")):
        if args.reanalyse:
            with open(args.reanalyse / f"agents-{n}" / "raw.pickle", "rb") as f:
                results.append(summarise(pickle.load(f)))
            continue
        print(f"N = {n} agents, {args.keepers} keepers, offered load steps {args.rates} shards/s", flush=True)
        results.append(run_n(n, args, workdir))
        r, sat = results[-1], results[-1]["saturation"]
        print(
            f"  kept up with {sat['kept_up_per_min']} finalized/min at most; working off a backlog "
            f"{sat['capacity_per_min']}/min; {sat['cause']}; gas per shard {r['gas']['per_shard']:,}; "
            f"books conserved: {r['books']['conserved']}",
            flush=True,
        )
    out = {
        "benchmark": "scale",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "quick": args.quick,
        "block_time_s": 1,
        "chain_seconds_per_block": args.chain_seconds_per_block,
        "shards_per_job": args.shards_per_job,
        "step_seconds": args.step_seconds,
        "step_latencies": args.step_latencies,
        "rates_per_s": [float(r) for r in args.rates.split(",")],
        "keeper_mode": "each a process looping over keepers.reactions, keepers.runtime.ChainView (its asset "
        "index and a round's reads in one batch) and keepers.decisions.decide_round, as the deployed keeper's "
        "round; no Celery, Redis or heartbeats",
        "results": results,
        "base": base_projection(results),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(time.monotonic() - started, 1),
    }
    if args.reanalyse:  # the figures of a past run: its time, not this one's
        measured = (args.reanalyse / f"agents-{results[0]['agents']}" / "raw.pickle").stat().st_mtime
        out["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(measured))
        out["seconds"] = round(sum(r["seconds"] for r in results), 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print()
    print(analysis.markdown_table(results))
    if out["base"]:
        print("\n" + analysis.base_sentence(out["base"], results[0]["block_gas_limit"]))
    if not args.no_plots:
        from scale.plots import draw

        made = draw(out, args.plots)
        print(f"plots: {', '.join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in made)}")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out} in {out['seconds']} s")


if __name__ == "__main__":
    main()
