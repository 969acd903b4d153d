"""Agent benchmark: dispatch latency (assignment mined → container running) and the agent's
overhead per shard, with a real agent process, Docker engine and content store.

    .venv/bin/python bench/bench_agent.py [--shards 20] [--run-seconds 1] [--poll-only]

One CPU-only asset on a fresh anvil (a block per transaction); the agent runs with default
settings: anvil announces each new head over its websocket and the agent looks at once
(agent.heads), polling every 0.05 s beside it (`--poll-only`: no head notices, what a node
without a websocket gives).
Shards are assigned one at a time, each a container that sleeps `--run-seconds`. Measured:

- dispatch: assignment mined (anvil's announcement of the block holding it, on a websocket
  of the bench's own, or the receipt's return if that comes first) → the engine's `start`
  event for the shard's container, and where it goes: `watch` (mined → the agent has read
  the assignment and handed it to a lease thread), the agent's steps (agent.execute.Phases,
  from its "started" log line), then `create` (the create call → the engine's `create`
  event) and `start` (→ its `start` event);
- after-run: the engine's `die` event → the agent's "submitted" log line (outputs
  committed, receipt signed, result mined);
- overhead per shard = dispatch + after-run, also as a share of a 60 s shard (what the
  agent adds does not grow with the run time; the container's own start-up counts as run);
- the floor, in the same run: after each shard, a plain `docker run` of the same image and
  command on the same engine (call → the engine's `start` event, split the same way into
  `create` and `start`), and dispatch's ratio to it.
  Absolute times move with the machine; the ratio says what the network adds.

Docker: the engine DOCKER_HOST names, else a private dockerd (root). Figures go to
bench/results/agent.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from figures import percentile  # noqa: E402  (bench/ is the script's folder)

from agent import image  # noqa: E402
from computenet.deploy import deploy_stack  # noqa: E402
from computenet.domain import Requirements, Spec  # noqa: E402
from computenet.localnet import Anvil, DockerEngine, ProcessGroup, ServedApp, docker_reachable, wait_until  # noqa: E402
from computenet.manifest import build_manifest, canonical_json, manifest_hash  # noqa: E402
from computenet.store import LocalStore, StoreClient, app  # noqa: E402

TOKEN = 10**6
SHARD_SECONDS = 60  # the reference shard length for the overhead share
BATCHES = 4  # the shards are reported as this many consecutive runs too


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
        "mean": round(statistics.fmean(values), 1),
    }


class Heads(threading.Thread):
    """Records when the node announced each block (newHeads on its websocket), by number."""

    def __init__(self, uri: str) -> None:
        super().__init__(daemon=True)
        self.uri, self.seen, self.subscribed = uri, {}, threading.Event()

    def run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        with connect(self.uri) as ws:
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
            ws.recv()
            self.subscribed.set()
            try:
                for message in ws:
                    self.seen[int(json.loads(message)["params"]["result"]["number"], 16)] = time.time()
            except ConnectionClosed:  # anvil stopped: the run is over
                pass


class DockerEvents(threading.Thread):
    """Records when each container (by name) was created, started and died, by the engine's clock."""

    def __init__(self, client) -> None:
        super().__init__(daemon=True)
        self.client, self.created, self.started, self.died = client, {}, {}, {}

    def run(self) -> None:
        kinds = {"create": self.created, "start": self.started, "die": self.died}
        for event in self.client.events(decode=True, filters={"type": "container", "event": list(kinds)}):
            name = event.get("Actor", {}).get("Attributes", {}).get("name", "")
            kinds[event["status"]][name] = event["timeNano"] / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--run-seconds", type=float, default=1.0)
    parser.add_argument("--poll-only", action="store_true", help="the agent polls the head, without head notices")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "agent.json")
    args = parser.parse_args()

    import docker
    from ape import accounts, chain, networks, project
    from ape.logging import logger

    logger.set_level("ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    print(f"logs in {workdir}", flush=True)
    engine = None
    if docker_reachable():
        client, host = docker.from_env(), os.environ.get("DOCKER_HOST", "")
    else:
        engine = DockerEngine(workdir / "docker", log=workdir / "dockerd.log")
        client, host = engine.client(), engine.url
    store = ServedApp(app(LocalStore(workdir / "store")))
    driver = client.info().get("Driver", "?")
    agent_proc = ProcessGroup()
    try:
        print("building the job image...", flush=True)
        reference = image.build(client)
        with (
            Anvil(log=workdir / "anvil.log") as anvil,
            networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": anvil.uri}),
        ):
            acct = accounts.test_accounts
            owner, client_acct, provider, keeper, agent_key = acct[0], acct[1], acct[2], acct[4], acct[6]
            stack = deploy_stack(project, owner)
            for who in (client_acct, provider, keeper):
                stack.token.faucet(who, 1_000_000 * TOKEN, sender=who)
                for spender in (stack.market, stack.assets, stack.keepers):
                    stack.token.approve(spender, 2**256 - 1, sender=who)
            stack.keepers.register(100 * TOKEN, sender=keeper)
            spec = Spec(
                gpu_model=0,
                vram_mib=0,
                gpu_count=0,
                cpu_cores=2,
                region=0,
                price=100,
                expire=chain.pending_timestamp + 30 * 86_400,
                max_leases=256,
            )  # leases stay open: none is finalized
            receipt = stack.assets.register(spec.as_tuple(), agent_key, b"\x11" * 32, sender=provider)
            asset = receipt.events.filter(stack.assets.AssetRegistered)[0].asset
            stack.assets.add_stake(asset, 1_000 * TOKEN, sender=provider)
            deployments = workdir / "deployments.json"
            deployments.write_text(
                json.dumps({"ethereum:local": stack.addresses() | {"chain_id": chain.chain_id, "block": 0}})
            )

            manifest = build_manifest(
                reference,
                ["python3", "-c", f"import time; time.sleep({args.run_seconds})"],
                {},
                timeout_seconds=600,
                max_output_bytes=1 << 20,
            )
            StoreClient(store.url).put(canonical_json(manifest))
            env = os.environ | {
                "COMPUTENET_DEPLOYMENTS": str(deployments),
                "COMPUTENET_AGENT_NETWORK": anvil.uri,
                "COMPUTENET_AGENT_ACCOUNT": "TEST::6",
                "COMPUTENET_AGENT_ASSETS": str(asset),
                "COMPUTENET_AGENT_STORE_URL": store.url,
                "COMPUTENET_AGENT_WORK_DIR": str(workdir / "agent"),
                "COMPUTENET_AGENT_OUTPUTS_PORT": "0",
                "COMPUTENET_AGENT_CAPACITY": "4",
            }
            if args.poll_only:
                env["COMPUTENET_AGENT_HEAD_NOTICES"] = "false"
            if host:
                env["COMPUTENET_AGENT_DOCKER_HOST"] = host
            log = workdir / "agent.log"
            agent_proc.spawn([sys.executable, "-m", "agent", "run"], log, env)
            wait_until(lambda: '"msg": "serving"' in log.read_text(), 60, "the agent to start", 0.1)
            events = DockerEvents(client)
            events.start()
            heads = Heads("ws" + anvil.uri[4:])  # anvil serves its websocket on its HTTP port
            heads.start()
            wait_until(heads.subscribed.is_set, 10, "the bench's head subscription")

            req = Requirements(
                min_vram_mib=0,
                gpu_count=0,
                max_price=200,
                max_gpu_seconds=600,
                deadline=chain.pending_timestamp + 86_400,
                shard_count=1,
            )
            dispatch, after, run, floor = [], [], [], []
            phases: dict[str, list[float]] = {}  # dispatch's parts, per shard
            floor_phases: dict[str, list[float]] = {"create": [], "start": []}
            for n in range(args.shards):
                job = stack.market.post_job(manifest_hash(manifest), req.as_tuple(), sender=client_acct)
                job_id = job.events.filter(stack.market.JobPosted)[0].job
                receipt = stack.market.assign(job_id, 0, asset, sender=keeper)
                returned = time.time()
                block = receipt.block_number
                wait_until(lambda: block in heads.seen, 10, f"block {block}'s announcement", 0.005)
                assigned = min(returned, heads.seen[block])  # mined: the first sign of it
                lease = int(stack.market.replica(job_id, 0, 0).lease)
                name = f"computenet-{job_id}-0-0-{lease}"
                wait_until(
                    lambda: f'"job": {job_id}, "shard": 0, "replica": 0, "tx"' in log.read_text(),
                    120,
                    f"shard {n}'s result",
                    0.02,
                )
                submitted = _log_time(log, f'"msg": "submitted", "job": {job_id},')
                wait_until(lambda: name in events.died, 10, "the engine's die event")
                dispatch.append((events.started[name] - assigned) * 1000)
                after.append((submitted - events.died[name]) * 1000)
                run.append((events.died[name] - events.started[name]) * 1000)
                for phase, ms in dispatch_phases(log, name, assigned, events).items():
                    phases.setdefault(phase, []).append(ms)
                floor.append(plain_docker_run(client, events, reference, manifest.command, f"floor-{n}", floor_phases))
                print(
                    f"  shard {n + 1}/{args.shards}: dispatch {dispatch[-1]:.0f} ms, after-run {after[-1]:.0f} ms, "
                    f"plain docker run {floor[-1]:.0f} ms",
                    flush=True,
                )
    finally:
        agent_proc.stop()
        store.stop()
        if engine is not None:
            engine.stop()

    overhead = [d + a for d, a in zip(dispatch, after)]
    share = [o / (SHARD_SECONDS * 1000) * 100 for o in overhead]
    results = {
        "dispatch_ms": summary(dispatch),
        "after_run_ms": summary(after),
        "container_run_ms": summary(run),
        "overhead_ms": summary(overhead),
        "overhead_pct_of_60s": round(statistics.median(share), 3),
        "floor_docker_run_ms": summary(floor),
        "dispatch_floor_ratio_p50": round(percentile(dispatch, 50) / percentile(floor, 50), 2),
        "dispatch_floor_ratio_p95": round(percentile(dispatch, 95) / percentile(floor, 95), 2),
        # where dispatch goes, in order (p50 and mean of each part; the means add up to dispatch's)
        "dispatch_phases_ms": {
            p: {"p50": round(percentile(v, 50), 1), "mean": round(statistics.fmean(v), 1)} for p, v in phases.items()
        },
        "floor_phases_ms": {
            p: {"p50": round(percentile(v, 50), 1), "mean": round(statistics.fmean(v), 1)}
            for p, v in floor_phases.items()
        },
    }
    # The shards in consecutive batches, each a run: its p50s show the spread between runs.
    size = max(1, len(dispatch) // BATCHES)
    results["runs"] = [
        {
            "dispatch_p50_ms": round(percentile(dispatch[i : i + size], 50), 1),
            "overhead_p50_ms": round(percentile(overhead[i : i + size], 50), 1),
            "floor_p50_ms": round(percentile(floor[i : i + size], 50), 1),
            "dispatch_floor_ratio_p50": round(
                percentile(dispatch[i : i + size], 50) / percentile(floor[i : i + size], 50), 2
            ),
        }
        for i in range(0, size * BATCHES, size)
        if dispatch[i : i + size]
    ]
    print()
    print(f"Docker storage driver: {driver}")
    print(
        f"dispatch (assignment mined -> container running): p50 {results['dispatch_ms']['p50']} ms, "
        f"p95 {results['dispatch_ms']['p95']} ms, p99 {results['dispatch_ms']['p99']} ms   goal p50 <= 300 ms"
    )
    print(
        f"floor (plain docker run, same image and engine):   p50 {results['floor_docker_run_ms']['p50']} ms, "
        f"p95 {results['floor_docker_run_ms']['p95']} ms; dispatch / floor at p50: "
        f"{results['dispatch_floor_ratio_p50']}, at p95: {results['dispatch_floor_ratio_p95']}   goal <= 1.5"
    )
    print("where dispatch goes (ms):       p50    mean")
    for phase, ms in results["dispatch_phases_ms"].items():
        floor_ms = results["floor_phases_ms"].get(phase)
        beside = f"   plain docker run: p50 {floor_ms['p50']}, mean {floor_ms['mean']}" if floor_ms else ""
        print(f"  {phase:<26} {ms['p50']:>7} {ms['mean']:>7}{beside}")
    print(
        f"after-run (container exit -> result mined):       p50 {results['after_run_ms']['p50']} ms, "
        f"p99 {results['after_run_ms']['p99']} ms"
    )
    print(
        f"overhead per shard: p50 {results['overhead_ms']['p50']} ms = {results['overhead_pct_of_60s']} % "
        f"of a 60 s shard   goal <= 1 %"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "agent",
                "shards": args.shards,
                "run_seconds": args.run_seconds,
                "head_notices": not args.poll_only,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "docker_storage": driver,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


def dispatch_phases(log: Path, name: str, assigned: float, events: DockerEvents) -> dict[str, float]:
    """Milliseconds of each part of one lease's dispatch, in order: `watch` (assignment mined
    → handed to a lease thread), the agent's steps from its "started" log line, `create` (the
    rest → the engine's create event) and `start` (→ its start event). They add up to dispatch."""
    line = next(
        json.loads(text)
        for text in log.read_text().splitlines()
        if '"msg": "started"' in text and f'"lease": "{name}"' in text
    )
    steps = {k: v for k, v in line["phases"].items() if k != "container"}
    calling = line["began"] + sum(steps.values()) / 1000  # the create call
    return {
        "watch": (line["began"] - assigned) * 1000,
        **steps,
        "create": (events.created[name] - calling) * 1000,
        "start": (events.started[name] - events.created[name]) * 1000,
    }


def plain_docker_run(
    client, events: DockerEvents, reference: str, command: list[str], name: str, phases: dict[str, list[float]]
) -> float:
    """Milliseconds from a plain `docker run` call to the engine's `start` event (the floor of
    dispatch: what starting the same container costs with no chain, agent or store); its
    `create` and `start` parts go to `phases`."""
    from computenet.staging import ensure_image

    image_id = ensure_image(client, reference)  # the local image, as the agent resolves it (no pull)
    called = time.time()
    container = client.containers.run(image_id, command, name=name, detach=True, network_disabled=True)
    try:
        wait_until(lambda: name in events.started, 30, f"{name}'s start event", 0.005)
        phases["create"].append((events.created[name] - called) * 1000)
        phases["start"].append((events.started[name] - events.created[name]) * 1000)
        return (events.started[name] - called) * 1000
    finally:
        container.wait(timeout=120)
        container.remove(force=True)


def _log_time(log: Path, marker: str) -> float:
    for line in log.read_text().splitlines():
        if marker in line:
            return json.loads(line)["ts"]
    raise LookupError(marker)


if __name__ == "__main__":
    main()
