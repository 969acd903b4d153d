"""`python -m demo --faults` (make demo-faults): the network under faults, and proof that no money
appeared or vanished.

1. A dishonest agent (demo/dishonest_agent.py) serves one asset; a replication-2 job lands on it
   and on an honest one, the roots differ and a dispute opens by itself; nobody asks, the
   facilitator's arbiter finds it, re-runs the shard itself (verifier/reexecute.py), upholds the
   honest replica and slashes the dishonest one; the node is then fixed and the replica runs again.
2. One keeper is killed; the other carries on alone.
3. An agent is killed in the middle of a shard; its lease runs out, a keeper reclaims it (the
   stake is slashed) and reassigns it, and the job completes.
4. Redis is restarted, empty: the keeper rebuilds its state from the chain, no event is lost.

Conservation: the token balances of every account and contract add up to the same before and after.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import requests
from rich.console import Console
from rich.table import Table

from computenet.cli import format_amount
from computenet.domain import Requirements, Verification
from computenet.localnet import wait_until
from computenet.manifest import build_manifest, canonical_json, manifest_hash
from computenet.web3calls import Sender
from demo import run
from demo.network import CLIENT, KEEPERS, Network
from examples import workloads

SLOW = 6  # seconds each shard of the slow job sleeps first, so an agent can be killed mid-shard


def with_faults(net: Network, console: Console, say: Callable[[str], None], *, shards: int, timeout: float) -> bool:
    chain = run.Chain(net)
    before = run.Balances(net, chain)
    client = Sender(chain.web3, net.test[CLIENT].private_key)
    cheapest = sorted(net.assets, key=lambda a: net.assets[a].price)
    honest, liar = cheapest[0], cheapest[1]
    happened: list[tuple[str, str]] = []

    # 1. a dishonest agent and a replicated job
    net.groups[f"agent-{liar}"].stop()
    net.start_agent(liar, argv=[*_python(), "-m", "demo.dishonest_agent"])
    say(f"asset {liar} ({net.assets[liar].name}) now runs a dishonest agent that alters its outputs")
    net.kill(f"keeper-{len(KEEPERS)}")
    say(f"killed keeper-{len(KEEPERS)} (listener and workers, SIGKILL); keeper-1 carries on alone")
    happened.append(("keeper killed", f"keeper-{len(KEEPERS)} stopped with SIGKILL; keeper-1 did the rest"))
    replicated = _post(
        net,
        chain,
        client,
        "replicated hashing",
        workloads.hashing(files=4, rounds=500),
        shards=1,
        replication=2,
        max_price=net.assets[liar].price,
        max_gpu_seconds=30,
        timeout_seconds=12,
    )
    say(
        f"job {replicated}: 1 shard x 2 replicas, price cap {net.assets[liar].price}: only assets {honest} and {liar} qualify"
    )
    opened = wait_until(lambda: chain.logs("DisputeOpened", job=replicated), 120, "the replicas' dispute", 0.5)
    say(
        f"job {replicated}: the replicas' roots differ; dispute opened by the market itself (challenger "
        f"{opened[0]['args']['challenger']})"
    )
    ruling = _ruling(net, replicated)
    rejected = chain.logs("ReplicaRejected", job=replicated)
    say(
        f"facilitator ruled unasked, from its own re-execution: valid root {ruling['valid_root'][:18]}..., "
        f"replica(s) {ruling['upheld']} upheld, {len(rejected)} rejected and slashed "
        f"{format_amount(sum(e['args']['slashed'] for e in rejected))} (tx {ruling['transaction'][:18]}...)"
    )
    happened.append(
        (
            "dishonest agent",
            f"asset {liar}'s result differed; disputed; the facilitator re-ran it and "
            f"ruled; slashed {format_amount(sum(e['args']['slashed'] for e in rejected))}",
        )
    )
    net.groups[f"agent-{liar}"].stop()
    net.start_agent(liar)
    say(f"asset {liar}'s node is fixed (an honest agent again); its replica runs again")

    # 2. an agent killed mid-shard, then Redis restarted
    slow_command = [
        "python3",
        "-c",
        f"import runpy, time; time.sleep({SLOW}); runpy.run_path('/in/hash_shard.py', run_name='__main__')",
    ]
    _, env, inputs = workloads.hashing(files=4, rounds=500)
    slow = _post(
        net,
        chain,
        client,
        "slow hashing",
        (slow_command, env, inputs),
        shards=shards,
        replication=1,
        max_price=max(p.price for p in net.assets.values()),
        max_gpu_seconds=30,
        timeout_seconds=12,
    )
    say(f"job {slow}: {shards} shards that each take over {SLOW} s")
    victim = wait_until(lambda: _running_on(net, slow, exclude={liar}), 120, "a shard running", 0.2)
    net.kill(f"agent-{victim}")
    say(f"killed asset {victim}'s agent mid-shard (SIGKILL); its lease will run out")
    restarted = time.time()
    net.restart_redis()
    say("restarted Redis, empty: the keepers reconnect")
    replay = wait_until(lambda: _replay_after(net, restarted), 120, "keeper-1 to replay the chain", 0.5)
    say(
        f"keeper-1 found its cursor gone and replayed blocks 0-{replay['to']} ({replay['events']} events) from the chain"
    )
    reclaimed = wait_until(lambda: chain.logs("ShardReclaimed", job=slow), 180, "the expired lease's reclaim", 1)
    say(
        f"job {slow}: shard {reclaimed[0]['args']['shard']} reclaimed from asset {victim}, stake slashed "
        f"{format_amount(reclaimed[0]['args']['slashed'])}; it is reassigned"
    )
    net.start_agent(victim)
    say(f"asset {victim}'s agent is back (its finished results are served again; the reclaimed lease is dropped)")
    happened.append(
        (
            "agent killed mid-shard",
            f"asset {victim}'s lease expired; reclaimed; slashed "
            f"{format_amount(reclaimed[0]['args']['slashed'])}; reassigned",
        )
    )
    happened.append(
        ("Redis restarted", f"emptied; keeper-1 replayed blocks 0-{replay['to']} from the chain; no event lost")
    )

    jobs = {replicated: "replicated hashing (a dishonest replica)", slow: "slow hashing (an agent killed)"}
    run.follow(net, chain, console, jobs, timeout)
    say("every job finished")
    checked = run.verify_outputs(net, chain, jobs)
    say(f"[green]outputs verified:[/green] {checked} files, each in its replica's on-chain Merkle root")
    upheld = [e for e in chain.logs("ShardFinalized", job=replicated)]
    assert {e["args"]["asset"] for e in upheld} == {honest, liar}, "both replicas finalize once the node is fixed"

    table = Table("fault", "what happened", title="faults", title_justify="left")
    for fault, what in happened:
        table.add_row(fault, what)
    console.print(table)
    console.print(run.settlement_table(net, chain, jobs))
    return run.conserved(before, run.Balances(net, chain), console, say)


def _python() -> list[str]:
    import sys

    return [sys.executable]


def _post(
    net: Network,
    chain: run.Chain,
    client: Sender,
    name: str,
    workload: tuple,
    *,
    shards: int,
    replication: int,
    max_price: int,
    max_gpu_seconds: int,
    timeout_seconds: int,
) -> int:
    from computenet.store import StoreClient

    command, env, inputs = workload
    store = StoreClient(net.store.url)
    manifest = build_manifest(
        net.image, command, inputs, timeout_seconds=timeout_seconds, max_output_bytes=1 << 20, env=env
    )
    for data in inputs.values():
        store.put(data)
    store.put(canonical_json(manifest))
    now = chain.web3.eth.get_block("latest")["timestamp"]
    req = Requirements(
        min_vram_mib=0,
        gpu_count=0,
        max_price=max_price,
        max_gpu_seconds=max_gpu_seconds,
        deadline=now + 3_600,
        shard_count=shards,
        replication=replication,
        verification=Verification.REPLICATED if replication > 1 else Verification.OPTIMISTIC,
    )
    receipt = client.send(chain.market.functions.post_job(manifest_hash(manifest), req.as_tuple()))
    from web3.logs import DISCARD

    return int(chain.market.events.JobPosted().process_receipt(receipt, errors=DISCARD)[0]["args"]["job"])


def _running_on(net: Network, job: int, exclude: set[int]) -> int | None:
    """An asset (not in `exclude`) whose agent has a container of `job` running."""
    for container in net.docker.containers.list(filters={"label": "computenet.lease"}):
        _, job_id, shard, replica, lease = container.labels["computenet.lease"].rsplit("-", 4)
        if int(job_id) != job:
            continue
        for asset in net.assets:
            if asset not in exclude and f"computenet-{job}-{shard}-{replica}-{lease}" in _leases_of(net, asset):
                return asset
    return None


def _replay_after(net: Network, since: float) -> dict | None:
    """keeper-1's listener log line for a replay from block 0 that began after `since`."""
    for line in (net.logdir / "keeper-1-listen-0.log").read_text(errors="replace").splitlines():
        if line.startswith("{") and '"from": 0,' in line:
            entry = json.loads(line)
            if entry["ts"] > since:
                return entry
    return None


def _leases_of(net: Network, asset: int) -> str:
    return "".join(p.read_text(errors="replace") for p in net.logdir.glob(f"agent-{asset}-*.log"))


def _ruling(net: Network, job: int) -> dict:
    """The facilitator's ruling on `job`'s dispute, from its audit log: its arbiter rules on
    every open dispute by itself, so the demo only waits."""

    def ruled() -> dict | None:
        entries = requests.get(f"{net.facilitator_url}/disputes", timeout=10).json()
        return next((e for e in entries if e["job"] == job and e["decision"] == "resolved"), None)

    return wait_until(ruled, 180, "the facilitator's ruling", 0.5)
