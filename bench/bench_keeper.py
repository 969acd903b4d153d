"""Keeper benchmark: event → assignment latency on anvil with 1 s blocks, with one and two keepers.

    .venv/bin/python bench/bench_keeper.py [--keepers 1,2] [--runs 3] [--jobs 20] [--shards 2]

A fresh anvil is deployed to and set up while it mines each transaction at once (8 staked
assets over two owners, bonded keepers), then switched to a block every second. Each keeper
is a real listener and two Celery worker processes (`python -m keepers`) with their own
redis-server database and default settings (confirmations 0, head polled every 0.2 s), fed
signed heartbeats for every asset. A client then posts jobs at random moments within the
blocks (0.3-1.7 s apart) with raw transactions, so nothing waits for a receipt.

For every shard: blocks from the JobPosted block to the ShardAssigned block (1 means the
assignment was mined in the very next block), the same in ms (from the moment each block was
first seen), and the keeper's reaction: JobPosted block seen → assignment transaction first
seen in the node's pool. A watcher thread polls the head and the pool every 10 ms.

The floor, in the same run: a bare bot that watches the head as a keeper does (every 0.2 s)
and, on each block with a JobPosted, at once sends a plain transfer from an idle account. Its
blocks from JobPosted to inclusion, and its reaction, are what any bot pays for the chain's
block interval and a transaction's inclusion; the keeper's figures are reported beside them
(blocks over the floor at p95). The figures (per run, and pooled over the runs) go to
bench/results/keeper.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # ape finds the project (and its compiled contracts) from the working directory

from figures import percentile  # noqa: E402  (bench/ is the script's folder)

from agent.outputs import heartbeats_app  # noqa: E402
from computenet.deploy import deploy_stack  # noqa: E402
from computenet.domain import Requirements, Spec  # noqa: E402
from computenet.heartbeat import Heartbeat  # noqa: E402
from computenet.localnet import Anvil, ProcessGroup, RedisServer, ServedApp, wait_until  # noqa: E402

TOKEN = 10**6
ASSETS = 8
MAX_LEASES = 256  # leases are never finalized here, so every run adds to them
MANIFEST = b"\x5a" * 32
WATCH_INTERVAL = 0.01
ASSIGN_TIMEOUT = 120  # seconds for one run's shards to be assigned, at most
# Test accounts (anvil's default mnemonic, ape's TEST::n): who plays which role.
OWNER, CLIENT, PROVIDERS, KEEPERS, AGENTS, FLOOR_BOT = 0, 1, (2, 3), (4, 5), (6, 7, 8, 9), 10
FLOOR_POLL = 0.2  # the keeper's default head poll (COMPUTENET_KEEPER_POLL_INTERVAL)
MEASURES = ("blocks", "ms", "reaction_ms", "floor_blocks", "floor_reaction_ms")


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
        "mean": round(statistics.fmean(values), 3),
    }


class Watcher(threading.Thread):
    """Records when each block, and each pool transaction from `senders`, was first seen."""

    def __init__(self, web3, senders: set[str]) -> None:
        super().__init__(daemon=True)
        self.web3, self.senders = web3, {s.lower() for s in senders}
        self.blocks: dict[int, float] = {}
        self.pool: dict[str, float] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        provider = self.web3.provider
        while not self.stopped.wait(WATCH_INTERVAL):
            now = time.time()
            head = int(provider.make_request("eth_blockNumber", [])["result"], 16)
            for number in range(max(self.blocks, default=head - 1) + 1, head + 1):
                self.blocks.setdefault(number, now)
            pending = provider.make_request("txpool_content", [])["result"]["pending"]
            for sender, by_nonce in pending.items():
                if sender.lower() in self.senders:
                    for tx in by_nonce.values():
                        self.pool.setdefault(tx["hash"], now)


class FloorBot(threading.Thread):
    """The floor: on each new block with a JobPosted, a plain transfer sent at once from an idle
    account; `sent` maps its hash to the JobPosted block it answers."""

    def __init__(self, web3, market: str, account) -> None:
        super().__init__(daemon=True)
        from computenet.market import Market

        self.web3, self.account = web3, account
        self.posted = Market.over_web3(web3, market).calls.market.events.JobPosted()
        self.sent: dict[str, int] = {}
        self.error = ""
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            self._answer()
        except Exception as error:  # surfaced by the run, which waits on the answers
            self.error = f"{type(error).__name__}: {error}"

    def _answer(self) -> None:
        seen = self.web3.eth.block_number
        nonce = self.web3.eth.get_transaction_count(self.account.address)
        while not self.stopped.wait(FLOOR_POLL):
            head = self.web3.eth.block_number
            for number in range(seen + 1, head + 1):
                if self.posted.get_logs(from_block=number, to_block=number):
                    tx = {"to": self.account.address, "value": 0, "gas": 21_000, "nonce": nonce, "chainId": 31337}
                    tx |= {"maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}
                    signed = self.web3.eth.account.sign_transaction(tx, self.account.private_key)
                    self.sent[self.web3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()] = number
                    nonce += 1
            seen = head


class Heartbeats(threading.Thread):
    """Plays the agents: a signed heartbeat for every asset every 0.5 s."""

    def __init__(self, chain_id: int, registry: str, agent_of: dict, board: dict) -> None:
        super().__init__(daemon=True)
        self.args = chain_id, registry
        self.agent_of, self.board, self.seq = agent_of, board, 0  # board: what the endpoint serves
        self.stopped = threading.Event()

    def beat(self) -> None:
        for asset, key in self.agent_of.items():
            self.seq += 1
            hb = Heartbeat(asset, int(time.time()), 10, 800_000, 0, MAX_LEASES, self.seq)
            self.board[asset] = hb.wire(key, *self.args)

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            self.beat()


class KeeperProcesses(ProcessGroup):
    """One keeper: a listener and `workers` Celery worker processes."""

    def __init__(self, name: str, account: int, redis_url: str, uri: str, deployments: Path, logdir: Path) -> None:
        super().__init__()
        self.env = os.environ | {
            "COMPUTENET_DEPLOYMENTS": str(deployments),
            "COMPUTENET_KEEPER_NETWORK": uri,
            "COMPUTENET_KEEPER_NAME": name,
            "COMPUTENET_KEEPER_ACCOUNT": f"TEST::{account}",
            "COMPUTENET_KEEPER_REDIS_URL": redis_url,
            "COMPUTENET_KEEPER_METRICS_PORT": "0",
        }
        self.name, self.logdir = name, logdir

    def start(self, workers: int = 2) -> KeeperProcesses:
        for command in ["listen"] + ["worker"] * workers:
            log = self.logdir / f"{self.name}-{command}-{len(self.processes)}.log"
            self.spawn([sys.executable, "-m", "keepers", command], log, self.env)
        return self


class Network:
    """The deployed stack on `anvil`, its assets and its heartbeat pump."""

    def __init__(self, anvil: Anvil, workdir: Path) -> None:
        from ape import accounts, chain, project

        self.anvil, self.workdir = anvil, workdir
        acct = accounts.test_accounts
        owner, self.client = acct[OWNER], acct[CLIENT]
        self.stack = deploy_stack(project, owner)
        token, assets, keepers, market = self.stack.token, self.stack.assets, self.stack.keepers, self.stack.market
        for i in (CLIENT, *PROVIDERS, *KEEPERS):
            token.faucet(acct[i], 1_000_000 * TOKEN, sender=acct[i])
            for spender in (market, assets, keepers):
                token.approve(spender, 2**256 - 1, sender=acct[i])
        for i in KEEPERS:
            keepers.register(100 * TOKEN, sender=acct[i])
        expire = chain.pending_timestamp + 30 * 86_400
        self.agent_of = {}
        self.board: dict[int, str] = {}  # every asset's heartbeats, at one endpoint recorded on chain
        self.endpoint = ServedApp(heartbeats_app(lambda: dict(self.board)))
        for n in range(ASSETS):
            # As many GPUs as a spec holds, and cores, memory and disk for every lease: leases are
            # never finalized here, and each holds one GPU, one core, 1 GiB and 1 GiB of disk.
            spec = Spec(
                gpu_model=1,
                vram_mib=81_920,
                gpu_count=255,
                cpu_cores=MAX_LEASES,
                region=276,
                price=100 + n,
                expire=expire,
                max_leases=MAX_LEASES,
                memory_mib=MAX_LEASES * 1_024,
                disk_mib=MAX_LEASES * 1_024,
            )
            agent = acct[AGENTS[n % len(AGENTS)]]
            receipt = assets.register(
                spec.as_tuple(), agent, b"\x11" * 32, self.endpoint.url, sender=acct[PROVIDERS[n % 2]]
            )
            asset = receipt.events.filter(assets.AssetRegistered)[0].asset
            assets.add_stake(asset, 1_000 * TOKEN, sender=acct[PROVIDERS[n % 2]])
            self.agent_of[asset] = agent.private_key
        self.chain_id = chain.chain_id
        self.deployments = workdir / "deployments.json"
        record = self.stack.addresses() | {"chain_id": chain.chain_id, "block": 0}
        self.deployments.write_text(json.dumps({"ethereum:local": record}))
        self.keeper_addresses = {str(acct[i].address) for i in KEEPERS}
        self.web3 = chain.provider.web3
        self.nonce = self.web3.eth.get_transaction_count(self.client.address)

    def post(self, shards: int) -> str:
        """Broadcasts a post_job from the client without waiting for it; returns the tx hash."""
        now = int(time.time())
        req = Requirements(
            min_vram_mib=40_960,
            gpu_count=1,
            max_price=200,
            max_gpu_seconds=3_600,
            deadline=now + 7 * 86_400,
            shard_count=shards,
        )
        txn = self.stack.market.post_job.as_transaction(
            MANIFEST, req.as_tuple(), sender=self.client, nonce=self.nonce, gas=400_000, sign=True
        )
        self.nonce += 1
        return self.web3.eth.send_raw_transaction(txn.serialize_transaction()).to_0x_hex()

    def logs(self, event: str, start: int) -> list:
        contract = self.stack.market
        return list(getattr(contract, event).range(start, self.web3.eth.block_number + 1))


def run_once(
    net: Network, redis: RedisServer, db: int, keepers: int, jobs: int, shards: int, rng: random.Random
) -> dict:
    """One measured run: fresh keepers on fresh Redis databases, `jobs` jobs posted, latencies back."""
    running = []
    for k in range(keepers):
        redis.client(db + k).flushdb()
    pump = Heartbeats(net.chain_id, str(net.stack.assets.address), net.agent_of, net.board)
    pump.beat()
    pump.start()
    web3 = net.web3
    try:
        for k in range(keepers):
            running.append(
                KeeperProcesses(
                    f"bench-{k}", KEEPERS[k], redis.url(db + k), net.anvil.uri, net.deployments, net.workdir
                ).start()
            )
        # Warm-up: keepers connected, projection rebuilt, first assignment mined.
        warm_start = web3.eth.block_number
        net.post(1)
        wait_until(lambda: net.logs("ShardAssigned", warm_start), 120, "the warm-up assignment", 0.1)

        from ape import accounts

        floor_account = accounts.test_accounts[FLOOR_BOT]
        watcher = Watcher(web3, net.keeper_addresses | {str(floor_account.address)})
        watcher.start()
        floor = FloorBot(web3, str(net.stack.market.address), floor_account)
        floor.start()
        wait_until(lambda: watcher.blocks, 5, "the watcher's first block")
        start = web3.eth.block_number + 1
        for _ in range(jobs):
            net.post(shards)
            time.sleep(rng.uniform(0.3, 1.7))
        expected = jobs * shards
        wait_until(
            lambda: len(net.logs("ShardAssigned", start)) >= expected, ASSIGN_TIMEOUT, f"{expected} assignments", 0.2
        )
        posted_blocks = {e.block_number for e in net.logs("JobPosted", start)}
        wait_until(lambda: floor.error or posted_blocks <= set(floor.sent.values()), 10, "the floor bot's answers")
        if floor.error:
            raise RuntimeError(f"the floor bot failed: {floor.error}")
        wait_until(
            lambda: all(web3.eth.get_transaction_receipt(tx) for tx in floor.sent), 10, "the floor's transfers mined"
        )
        wait_until(lambda: web3.eth.block_number in watcher.blocks, 5, "the watcher to catch up")
        floor.stopped.set()
        watcher.stopped.set()
        watcher.join()
    finally:
        pump.stopped.set()
        for keeper in running:
            keeper.stop()

    posted = {int(e.job): e.block_number for e in net.logs("JobPosted", start)}
    assigned = [e for e in net.logs("ShardAssigned", start) if int(e.job) in posted]
    assert len(assigned) == expected, f"{len(assigned)} of {expected} shards assigned"
    blocks, ms, reaction = [], [], []
    for e in assigned:
        b0, b1 = posted[int(e.job)], e.block_number
        blocks.append(b1 - b0)
        ms.append(round((watcher.blocks[b1] - watcher.blocks[b0]) * 1000, 1))
        tx = e.transaction_hash if isinstance(e.transaction_hash, str) else e.transaction_hash.to_0x_hex()
        if tx in watcher.pool:  # a transaction mined within one poll may be missed by the pool view
            reaction.append(round((watcher.pool[tx] - watcher.blocks[b0]) * 1000, 1))
    floor_blocks, floor_reaction = [], []
    for tx, b0 in floor.sent.items():
        if b0 not in posted.values():
            continue  # the warm-up's
        floor_blocks.append(web3.eth.get_transaction_receipt(tx)["blockNumber"] - b0)
        if tx in watcher.pool:
            floor_reaction.append(round((watcher.pool[tx] - watcher.blocks[b0]) * 1000, 1))
    reverted = 0
    for number in range(start, web3.eth.block_number + 1):
        for tx in web3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] in net.keeper_addresses and web3.eth.get_transaction_receipt(tx["hash"])["status"] != 1:
                reverted += 1
    return {
        "blocks": blocks,
        "ms": ms,
        "reaction_ms": reaction,
        "floor_blocks": floor_blocks,
        "floor_reaction_ms": floor_reaction,
        "reverted": reverted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keepers", default="1,2", help="keeper counts to measure, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20, help="jobs posted per run")
    parser.add_argument("--shards", type=int, default=2, help="shards per job")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "keeper.json")
    args = parser.parse_args()
    counts = [int(x) for x in args.keepers.split(",")]
    rng = random.Random(args.seed)

    from ape import networks
    from ape.logging import logger

    logger.set_level("ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="bench-keeper-"))
    print(f"logs in {workdir}", flush=True)
    results: dict = {}
    with (
        Anvil(log=workdir / "anvil.log", accounts=FLOOR_BOT + 1) as anvil,
        RedisServer(workdir, log=workdir / "redis.log") as redis,
    ):
        with networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": anvil.uri}):
            print("deploying and registering 8 assets (instant mining)...", flush=True)
            net = Network(anvil, workdir)
            anvil.interval_mining(1)
            print("anvil now mines a block every second", flush=True)
            db = 0
            for count in counts:
                runs = []
                for run in range(args.runs):
                    print(
                        f"{count} keeper(s), run {run + 1}/{args.runs}: {args.jobs} jobs x {args.shards} shards...",
                        flush=True,
                    )
                    runs.append(run_once(net, redis, db, count, args.jobs, args.shards, rng))
                    db += count
                    r = runs[-1]
                    print(
                        f"  blocks p50 {percentile(r['blocks'], 50)} p95 {percentile(r['blocks'], 95)} max "
                        f"{max(r['blocks'])}; ms p50 {percentile(r['ms'], 50)} p95 {percentile(r['ms'], 95)}; "
                        f"reaction ms p50 {percentile(r['reaction_ms'], 50)} p95 {percentile(r['reaction_ms'], 95)}; "
                        f"floor blocks p95 {percentile(r['floor_blocks'], 95)}, reaction ms p95 "
                        f"{percentile(r['floor_reaction_ms'], 95)}; reverted keeper txs {r['reverted']}",
                        flush=True,
                    )
                pooled = {k: summary([v for r in runs for v in r[k]]) for k in MEASURES if any(r[k] for r in runs)}
                results[str(count)] = {
                    "pooled": pooled,
                    "blocks_over_floor_p95": pooled["blocks"]["p95"] - pooled["floor_blocks"]["p95"],
                    "runs": [{k: summary(r[k]) for k in MEASURES if r[k]} | {"reverted": r["reverted"]} for r in runs],
                }

    print()
    print(
        f"{'keepers':>7}  {'blocks p50':>10}  {'p95':>4}  {'max':>4}  {'ms p50':>7}  {'p95':>7}  "
        f"{'reaction ms p50':>15}  {'p95':>7}  {'per-run blocks p95':>18}  {'floor blocks p95':>16}  {'over floor':>10}"
    )
    for count, res in results.items():
        p = res["pooled"]
        per_run = ",".join(str(r["blocks"]["p95"]) for r in res["runs"])
        print(
            f"{count:>7}  {p['blocks']['p50']:>10}  {p['blocks']['p95']:>4}  {p['blocks']['max']:>4}  "
            f"{p['ms']['p50']:>7}  {p['ms']['p95']:>7}  {p['reaction_ms']['p50']:>15}  {p['reaction_ms']['p95']:>7}  "
            f"{per_run:>18}  {p['floor_blocks']['p95']:>16}  {res['blocks_over_floor_p95']:>10}"
        )
    print("goal: event -> assignment <= 1 block at p95, within one block of the floor")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "keeper",
                "block_time_s": 1,
                "jobs_per_run": args.jobs,
                "shards_per_job": args.shards,
                "runs": args.runs,
                "assets": ASSETS,
                "workers_per_keeper": 2,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "results": results,
                "goal_blocks_p95": 1,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
