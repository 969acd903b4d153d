"""Throughput benchmark: shards finalised per minute end to end with 1, 2 and 4 agents.

    .venv/bin/python bench/bench_throughput.py [--agents 1,2,4] [--shards 24] [--runs 2]

For each agent count a fresh network (demo/network.py: anvil with 1 s blocks, Redis, Docker,
one keeper with two Celery workers, the facilitator and gateway) gets that many CPU assets,
each able to hold every shard's lease. A client posts one job of `--shards` shards
(each a deterministic hashing run of about a second) and the figures are read from the chain:

- end to end: shards / (last ShardFinalized − JobPosted), per minute; every result waits the
  market's 60 s challenge window, so this is bounded by the window for small jobs;
- execution: shards / (last ResultSubmitted − JobPosted), per minute: how fast the network
  runs the work, the part more agents could speed up;
- the floor, in the same run: the same shards (image, command, inputs, sandbox options) run
  by Docker alone on the same engine, as many at once as the agents' assets have cores (each
  lease holds one), first start to last exit; execution's ratio to it is what the network adds
  to the work itself.

Figures go to bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from computenet.localnet import wait_until  # noqa: E402
from computenet.web3calls import Sender  # noqa: E402
from demo import faults, run  # noqa: E402
from demo.network import ASSETS, CLIENT, Network  # noqa: E402
from examples import workloads  # noqa: E402

# Each agent may hold as many leases as the job has shards: a lease counts against an asset's
# capacity until its result is finalized, after the 60 s challenge window, so a small capacity
# would measure the window, not the agents.


def one_run(agents: int, shards: int, workdir: Path) -> dict:
    net = Network(
        workdir, say=lambda text: print(f"    {text}", flush=True), plans=ASSETS[:agents], keepers=1, max_leases=shards
    )
    try:
        net.start()
        chain = run.Chain(net)
        client = Sender(chain.web3, net.test[CLIENT].private_key)
        work = workloads.hashing(files=8, rounds=3000)
        job = faults._post(
            net,
            chain,
            client,
            "throughput",
            work,
            shards=shards,
            replication=1,
            max_price=max(p.price for p in ASSETS),
            max_gpu_seconds=30,
            timeout_seconds=15,
        )
        posted = _time(chain, chain.logs("JobPosted", job=job)[0])
        wait_until(lambda: chain.logs("JobFinished", job=job), 600, f"job {job} to finish", 1)
        submitted = max(_time(chain, e) for e in chain.logs("ResultSubmitted", job=job))
        finalized = max(_time(chain, e) for e in chain.logs("ShardFinalized", job=job))
        at_once = min(shards, sum(plan.cpu_cores for plan in ASSETS[:agents]))
        alone = docker_alone(net.docker, net.image, work, shards, at_once, workdir / "docker-alone")
    finally:
        net.stop()
    execution = shards / (submitted - posted) * 60
    return {
        "agents": agents,
        "shards": shards,
        "execution_s": submitted - posted,
        "end_to_end_s": finalized - posted,
        "execution_per_min": round(execution, 1),
        "end_to_end_per_min": round(shards / (finalized - posted) * 60, 1),
        "docker_alone_s": round(alone, 2),
        "docker_alone_per_min": round(shards / alone * 60, 1),
        "floor_ratio": round(shards / alone * 60 / execution, 2),  # how many times Docker alone is faster
    }


def docker_alone(client, reference: str, work: tuple, shards: int, at_once: int, folder: Path) -> float:
    """Seconds from the first start to the last exit of the job's shards run by Docker alone,
    `at_once` at a time, with the sandbox options an agent gives them (computenet.sandbox)."""
    from concurrent.futures import ThreadPoolExecutor

    from computenet.sandbox import Limits, RunSpec, container_options
    from computenet.staging import ensure_image

    command, env, inputs = work
    image_id = ensure_image(client, reference)
    staged = folder / "in"
    for path, data in inputs.items():
        (staged / path).parent.mkdir(parents=True, exist_ok=True)
        (staged / path).write_bytes(data)
    specs = []
    for shard in range(shards):
        out = folder / f"out-{shard}"
        out.mkdir(parents=True)
        out.chmod(0o777)  # the container runs as nobody
        name = f"alone-{folder.parent.name}-{shard}"
        specs.append(RunSpec(name, image_id, command, env, shard, shards, staged, out, "/out", 60, limits=Limits()))

    def run_one(spec: RunSpec) -> int:
        container = client.containers.run(**container_options(spec))
        try:
            return container.wait(timeout=300)["StatusCode"]
        finally:
            container.remove(force=True)

    start = time.monotonic()
    with ThreadPoolExecutor(at_once) as pool:
        codes = list(pool.map(run_one, specs))
    took = time.monotonic() - start
    assert codes == [0] * shards, f"Docker alone: exit codes {codes}"
    return took


def _time(chain: run.Chain, event) -> int:
    return int(chain.web3.eth.get_block(event["blockNumber"])["timestamp"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="1,2,4")
    parser.add_argument("--shards", type=int, default=24)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "throughput.json")
    args = parser.parse_args()
    from ape.logging import logger

    logger.set_level("ERROR")
    base = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    print(f"logs in {base}", flush=True)
    results = []
    for agents in (int(x) for x in args.agents.split(",")):
        runs = []
        for n in range(args.runs):
            print(f"{agents} agent(s), run {n + 1}/{args.runs}: {args.shards} shards", flush=True)
            runs.append(one_run(agents, args.shards, base / f"agents-{agents}-run-{n + 1}"))
            print(
                f"  execution {runs[-1]['execution_per_min']} shards/min, end to end {runs[-1]['end_to_end_per_min']} "
                f"shards/min; Docker alone {runs[-1]['docker_alone_per_min']} shards/min "
                f"({runs[-1]['floor_ratio']}x the network's execution)",
                flush=True,
            )
        results.append(
            {
                "agents": agents,
                "runs": runs,
                "execution_per_min": statistics.median(r["execution_per_min"] for r in runs),
                "end_to_end_per_min": statistics.median(r["end_to_end_per_min"] for r in runs),
                "docker_alone_per_min": round(statistics.median(r["docker_alone_per_min"] for r in runs), 1),
                "floor_ratio": round(statistics.median(r["floor_ratio"] for r in runs), 2),
            }
        )
    print()
    print("| agents | executed shards/min | finalised shards/min (end to end) | Docker alone | alone / executed |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['agents']} | {r['execution_per_min']} | {r['end_to_end_per_min']} | {r['docker_alone_per_min']} "
            f"| {r['floor_ratio']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "throughput",
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "capacity_per_agent": args.shards,
                "shards": args.shards,
                "results": results,
                "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
