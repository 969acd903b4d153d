"""`python -m demo --ai` (make demo-ai): real AI work on the network.

A client runs `ape run job pipeline` over the ML image (examples/ml, docs/ai.md): ROUNDS rounds
of DiLoCo-style data-parallel training of a digits classifier, each a job of SHARDS shards
spread over the nodes (each shard trains from the average of the last round's models, staged
from their verified outputs), then batch inference with the trained model. At the end: the
held-out accuracy reached, the GPU-seconds (CPU-seconds on this machine) paid per provider, and
the time taken.

`python -m demo --ai --faults` (make demo-ai-faults): one long training shard; its agent is killed
after its first checkpoint, a keeper relays the agent's last signed checkpoint from its heartbeat
and reclaims the lease, and another node resumes the shard from that checkpoint. Each provider is
paid for what it contributed, and the total is well under twice the shard's own.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from computenet.cli import format_amount
from computenet.localnet import wait_until
from demo import run
from demo.network import Network
from examples import workloads

ROOT = Path(__file__).resolve().parent.parent
ROUNDS, SHARDS = 3, 4
MAX_PRICE = "0.02"  # tokens per second: above every demo node's price
# The fault run's shard: 240,000 SGD steps (about 24 CPU-seconds here), a checkpoint every 12,000.
SLOW_STEPS, CHECKPOINT_EVERY = 240_000, 12_000


def build_image(net: Network, say: Callable[[str], None]) -> str:
    from agent import image

    say("building the ML job image (Debian's NumPy and scikit-learn, imported without a registry)...")
    started = time.monotonic()
    ref = image.build(net.docker, image.ML_TAG, ml=True)
    say(f"ML image {ref}: {image.size(net.docker, ref) / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    return ref


def write_inputs(folder: Path, workload: workloads.Workload) -> dict[str, str]:
    """The workload's own files (its script and mlcore.py; not the previous stage's, which the
    pipeline stages) under `folder`; returns its env."""
    _, env, files = workload
    for path, data in files.items():
        if not path.startswith("prev/"):
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
    return env


def pipeline_toml(image: str, train_env: dict[str, str], infer_env: dict[str, str], rounds: int, shards: int) -> str:
    def env(values: dict[str, str]) -> str:
        return "{ " + ", ".join(f'{k} = "{v}"' for k, v in sorted(values.items())) + " }"

    lines = [
        'name = "digits"',
        "[defaults]",
        f'image = "{image}"',
        f'max_price = "{MAX_PRICE}"',
        "max_gpu_seconds = 60",
        "cpu_cores = 1",
        "memory_mib = 256",
        "disk_mib = 64",
        "hours = 1",
        "timeout_seconds = 30",
    ]
    for r in range(rounds):
        lines += ["[[stage]]", f'name = "train-{r}"', 'command = ["python3", "/in/train.py"]', 'inputs = ["train/"]']
        lines += [f"shards = {shards}", f"env = {env(train_env)}"]
    lines += ["[[stage]]", 'name = "infer"', 'command = ["python3", "/in/infer.py"]', 'inputs = ["infer/"]']
    lines += ["shards = 2", f"env = {env(infer_env)}"]
    return "\n".join(lines) + "\n"


def pipeline_jobs(out: Path) -> dict[str, int]:
    state = json.loads((out / "pipeline-state.json").read_text())
    return {s["name"]: int(s["job"]) for s in state["stages"]}


def accuracy(out: Path) -> tuple[int, int, str]:
    """(correct, total, device) from the inference stage's verified counts."""
    correct = total = 0
    devices = set()
    for counts in sorted(out.glob("infer/*/out/counts.json")):
        entry = json.loads(counts.read_text())
        correct, total = correct + entry["correct"], total + entry["total"]
        devices.add(str(entry.get("device", "?")))
    return correct, total, ", ".join(sorted(devices))


def round_table(out: Path, rounds: int) -> Table:
    """Per round: the held-out accuracy of the averaged model it started from, its shards' mean
    loss before and after their local steps, and each shard's own held-out accuracy."""
    table = Table(
        "round", "started from (averaged)", "loss (mean)", "each shard's model", title="training", title_justify="left"
    )
    for r in range(rounds):
        metrics = [json.loads(p.read_text()) for p in sorted(out.glob(f"train-{r}/*/out/metrics.json"))]
        if not metrics:
            continue
        before = sum(m["loss_start"] for m in metrics) / len(metrics)
        after = sum(m["loss"] for m in metrics) / len(metrics)
        table.add_row(
            str(r),
            f"{metrics[0]['held_out_accuracy_start']:.4f}",
            f"{before:.4f} -> {after:.4f}",
            " ".join(f"{m['held_out_accuracy']:.3f}" for m in metrics),
        )
    return table


def _paid_rows(net: Network, chain: run.Chain, jobs: dict[int, str]) -> tuple[Table, int]:
    seconds: Counter = Counter()
    paid: Counter = Counter()
    runs: Counter = Counter()
    for job in jobs:
        prices = {
            (e["args"]["shard"], e["args"]["replica"], e["args"]["asset"]): e["args"]["price"]
            for e in chain.logs("ShardAssigned", job=job)
        }
        for event in chain.logs("ShardFinalized", job=job):
            a = event["args"]
            price = prices[(a["shard"], a["replica"], a["asset"])]
            seconds[a["provider"]] += a["payment"] // price if price else 0
            paid[a["provider"]] += a["payment"]
            runs[a["provider"]] += 1
        for event in chain.logs("ContributionPaid", job=job):
            a = event["args"]
            seconds[a["provider"]] += a["gpu_seconds"]
            paid[a["provider"]] += a["payment"]
            runs[a["provider"]] += 1
    table = Table("provider", "shard runs paid", "GPU-seconds", "paid", title="paid per provider", title_justify="left")
    for provider in sorted(paid):
        table.add_row(provider, str(runs[provider]), str(seconds[provider]), format_amount(paid[provider]))
    return table, sum(seconds.values())


def pipeline(net: Network, console: Console, say: Callable[[str], None], *, shards: int, timeout: float) -> bool:
    """Training rounds then inference, by `ape run job pipeline`; see the module's docstring."""
    chain = run.Chain(net)
    before = run.Balances(net, chain)
    image = build_image(net, say)
    folder = net.logdir / "ai"
    train_env = write_inputs(folder / "train", workloads.ml_train())
    infer_env = write_inputs(folder / "infer", workloads.ml_infer([]))
    file = folder / "digits.toml"
    file.write_text(pipeline_toml(image, train_env, infer_env, ROUNDS, shards))
    out = folder / "outputs"
    started = time.monotonic()
    run.ape_run(
        net,
        ["job", "pipeline", str(file), "--out", str(out), "--store", net.store.url],
        say,
        folder / "pipeline.log",
        timeout,
    )
    took = time.monotonic() - started

    jobs = {job: name for name, job in pipeline_jobs(out).items()}
    correct, total, device = accuracy(out)
    console.print(round_table(out, ROUNDS))
    table, seconds = _paid_rows(net, chain, jobs)
    console.print(table)
    console.print(run.settlement_table(net, chain, jobs))
    say(
        f"[green]trained and evaluated:[/green] held-out accuracy {correct}/{total} = {correct / max(total, 1):.4f} "
        f"on {device}, after {ROUNDS} rounds of {shards} shards and inference over 2; {seconds} GPU-seconds paid "
        f"(CPU-seconds here); {took:.0f} s for the pipeline's {len(jobs)} jobs"
    )
    return correct / max(total, 1) >= 0.95 and run.conserved(before, run.Balances(net, chain), console, say)


def resume(net: Network, console: Console, say: Callable[[str], None], *, shards: int, timeout: float) -> bool:
    """One long training shard, its agent killed after a checkpoint, resumed on another node;
    the same shard run uninterrupted alongside as the reference."""
    chain = run.Chain(net)
    before = run.Balances(net, chain)
    image = build_image(net, say)
    folder = net.logdir / "ai-resume"
    workload = workloads.ml_train(steps=SLOW_STEPS, checkpoint_every=CHECKPOINT_EVERY)
    env = write_inputs(folder / "train", workload)
    manifest = folder / "train.json"
    args = ["job", "manifest", "--image", image, "--inputs", str(folder / "train"), "--timeout", "45"]
    args += [f"--env={k}={v}" for k, v in sorted(env.items())] + ["-o", str(manifest), "python3", "/in/train.py"]
    _ape_plain(args, folder / "manifest.log")
    post = ["job", "post", str(manifest), "--shards", "1", "--max-price", MAX_PRICE, "--max-gpu-seconds", "60"]
    post += ["--hours", "1", "--store", net.store.url, "--inputs", str(folder / "train")]
    post += ["--cpu-cores", "1", "--memory-mib", "256", "--disk-mib", "64"]
    run.ape_run(net, post, say, folder / "post.log", 120)
    job = int(chain.market.functions.job_count().call())

    asset, first = wait_until(lambda: _checkpointing(net, job), 120, "the shard's first checkpoint in a heartbeat", 0.5)
    say(f"asset {asset} ({net.assets[asset].name}) serves a signed checkpoint of job {job} in its heartbeats")
    # The node dies only once every keeper has taken that checkpoint in from a heartbeat poll,
    # so whichever keeper reclaims the lease has it to relay.
    wait_until(lambda: _keepers_hold(net, first), 60, "the keepers to keep the shard's checkpoint", 0.5)
    say(f"the keepers hold its checkpoint ({first['gpu_seconds']} GPU-seconds into lease {first['lease']} or later)")
    net.kill(f"agent-{asset}")
    if chain.logs("ResultSubmitted", job=job):
        raise RuntimeError(f"job {job}'s shard finished before its node was killed: raise SLOW_STEPS")
    say(f"killed the agent of asset {asset} mid-training (SIGKILL)")
    adopted = wait_until(lambda: chain.logs("CheckpointAdopted", job=job) or None, 240, "the checkpoint's adoption", 1)
    args = adopted[0]["args"]
    say(
        f"the lease ran out; a keeper relayed the agent's last signed checkpoint and reclaimed the lease: checkpoint "
        f"0x{bytes(args['checkpoint']).hex()[:16]}… adopted, {args['gpu_seconds']} GPU-seconds contributed"
    )
    # Now that the dead node is out of the keepers' choices, the same shard as the reference.
    run.ape_run(net, post, say, folder / "post-reference.log", 120)
    reference = job + 1
    say(f"job {reference}: the same shard, to run uninterrupted as the reference")
    for j in (job, reference):
        wait_until(lambda j=j: chain.logs("JobFinished", job=j) or None, timeout, f"job {j} to finish", 1)
    net.start_agent(asset)
    say(f"asset {asset}'s agent restarted")

    resumed_on = chain.logs("ShardAssigned", job=job)[-1]["args"]["asset"]
    roots = {j: bytes(chain.logs("ResultSubmitted", job=j)[-1]["args"]["output_root"]) for j in (job, reference)}
    table, seconds = _paid_rows(net, chain, {job: "resumed"})
    console.print(table)
    _, own = _paid_rows(net, chain, {reference: "reference"})
    same = roots[job] == roots[reference]
    say(
        f"[green]resumed:[/green] asset {resumed_on} ({net.assets[resumed_on].name}) started from the adopted "
        f"checkpoint; {seconds} GPU-seconds (CPU-seconds here) paid in all, to both providers, against {own} for the "
        f"same shard run uninterrupted ({seconds / max(own, 1):.2f}x); output root "
        f"{'equal to' if same else '[red]different from[/red]'} the uninterrupted run's (0x{roots[job].hex()[:16]}…)"
    )
    return same and seconds < 2 * own and run.conserved(before, run.Balances(net, chain), console, say)


def _ape_plain(argv: list[str], log: Path) -> None:
    command = [str(ROOT / ".venv" / "bin" / "ape"), "run", *argv]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"ape run {' '.join(argv[:2])} failed: {(done.stderr or done.stdout).strip()[-400:]}")


def _checkpointing(net: Network, job: int) -> tuple[int, dict] | None:
    """The asset running `job` and its checkpoint of it, once its agent has one (in its heartbeat)."""
    import requests

    for asset, url in net.outputs.items():
        try:
            body = requests.get(f"{url}/heartbeats/{asset}", timeout=2).json()
        except (requests.RequestException, ValueError):
            continue
        for checkpoint in body.get("checkpoints", []):
            if int(checkpoint["job"]) == job:
                return asset, checkpoint
    return None


def _keepers_hold(net: Network, checkpoint: dict) -> bool:
    """Does every keeper keep `checkpoint`, or a later one of the same lease, for its replica
    (keepers.state, in the keepers' Redis), ready to relay before a reclaim?"""
    import redis

    from keepers.state import KeeperState

    client = net.redis.client(0)  # the keepers' (COMPUTENET_KEEPER_REDIS_URL)
    try:
        for index in range(net.keeper_count):
            state = KeeperState(
                client,
                net.chain_id,
                str(net.stack.market.address),
                str(net.stack.assets.address),
                f"keeper-{index + 1}",
            )
            kept = state.checkpoint(int(checkpoint["job"]), int(checkpoint["shard"]), int(checkpoint["replica"]))
            if kept is None or kept["lease"] != checkpoint["lease"] or kept["gpu_seconds"] < checkpoint["gpu_seconds"]:
                return False
        return True
    except redis.RedisError:
        return False
    finally:
        client.close()
