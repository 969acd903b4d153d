"""Checkpoints end to end: real agent processes, a real Docker engine running a checkpointing
script in the python job image, the session's content store and anvil. The test plays the
keeper (it assigns and reclaims).

Agent A runs the shard: each checkpoint its container writes is uploaded, signed and served
in A's heartbeat; as its lease is about to run out A commits the latest on chain. The lease is
reclaimed (the checkpoint is adopted) and the shard reassigned to agent B's asset: B stages
the adopted checkpoint at /resume/checkpoint, and the script's output says the step it
resumed from. Finalizing pays A's contribution and B's result.
"""

import json
import urllib.request

from computenet.checkpoints import check_signed, checkpoint_hash
from computenet.domain import SUBMIT_MARGIN, ReplicaState
from computenet.localnet import free_port
from computenet.staging import release
from computenet.store import LocalStore

SCRIPT = b"""
import json, os, time
saved, resume = os.environ["COMPUTENET_CHECKPOINT_DIR"], os.environ["COMPUTENET_RESUME_DIR"]
start = 0
if os.path.exists(os.path.join(resume, "checkpoint")):
    with open(os.path.join(resume, "checkpoint")) as f:
        start = json.load(f)["step"]
# fresh: run on (until the lease is taken away); resumed: three more steps
end = start + 3 if start else 10_000
step = start
while step < end:
    busy = time.time()
    while time.time() - busy < 0.3:
        pass
    step += 1
    tmp = os.path.join(saved, ".step.tmp")
    with open(tmp, "w") as f:
        json.dump({"step": step}, f)
    os.rename(tmp, os.path.join(saved, "step-%06d" % step))
    print("step", step, flush=True)
    time.sleep(0.7)
os.makedirs("/out", exist_ok=True)
with open("/out/result.json", "w") as f:
    json.dump({"started_from": start, "ended_at": step}, f)
"""


def state_of(market, job, shard=0, replica=0):
    return ReplicaState(int(market.replica(job, shard, replica).state))


def heartbeat_checkpoints(port, asset):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/heartbeats/{asset}", timeout=5) as response:
        return json.loads(response.read()).get("checkpoints", [])


def test_a_reclaimed_shard_resumes_on_another_agent_from_the_adopted_checkpoint(
    make_agent,
    cpu_asset,
    agents,
    provider,
    provider2,
    publish_job,
    post_job,
    market,
    keeper,
    registered_keeper,
    content_store,
    docker_engine,
    wait_for,
    chain,
    params,
):
    a = cpu_asset(agents[0], owner=provider)
    b = cpu_asset(agents[1], owner=provider2)
    manifest, mhash = publish_job(["python3", "/in/ckpt.py"], {"ckpt.py": SCRIPT}, timeout_seconds=120)
    job = post_job(manifest_hash=mhash, gpu_count=0, min_vram_mib=0)
    port = free_port()
    proc_a = make_agent(agents[0], [a], outputs_port=port, heartbeat_interval=0.5).start()
    market.assign(job, 0, a, sender=keeper)

    # A's heartbeat carries its lease's checkpoint, signed by A's agent key, its bytes in the store
    def served():
        try:
            found = heartbeat_checkpoints(port, a)
        except OSError:
            return None
        return found if found and found[0]["gpu_seconds"] >= 2 else None

    (entry,) = wait_for(served, timeout=120, what="a checkpoint in agent A's heartbeat")
    assert (entry["job"], entry["shard"], entry["replica"], entry["lease"], entry["asset"]) == (job, 0, 0, 1, a)
    signed = check_signed(entry, a, agents[0].address, mhash, chain.chain_id, market.address)
    assert signed is not None
    blob = content_store.client.get("keccak256", signed.checkpoint.checkpoint.hex())
    assert checkpoint_hash(blob) == signed.checkpoint.checkpoint and json.loads(blob)["step"] >= 1

    # its lease is about to run out while the container still runs: A commits the latest itself
    chain.pending_timestamp = int(market.replica(job, 0, 0).deadline) - SUBMIT_MARGIN + 5
    chain.mine()
    wait_for(lambda: list(market.CheckpointCommitted.range(0, chain.blocks.height + 1)), what="A's commit")
    (committed,) = list(market.CheckpointCommitted.range(0, chain.blocks.height + 1))
    assert int(committed.asset) == a and int(committed.gpu_seconds) >= int(entry["gpu_seconds"])
    proc_a.stop()  # node A goes away with its lease
    for container in docker_engine.client.containers.list(all=True, filters={"label": "computenet=shard"}):
        container.remove(force=True)
    release(proc_a.workdir / "leases" / f"computenet-{job}-0-0-1")  # its output tmpfs, left mounted

    # the lease runs out; its reclaim adopts the checkpoint; B takes the shard and resumes from it
    chain.pending_timestamp = int(market.replica(job, 0, 0).deadline) + 1
    chain.mine()
    adopted = market.reclaim(job, 0, 0, sender=keeper).events.filter(market.CheckpointAdopted)
    assert [bytes(e.checkpoint) for e in adopted] == [bytes(committed.checkpoint)]
    resumed_step = json.loads(content_store.client.get("keccak256", bytes(committed.checkpoint).hex()))["step"]
    proc_b = make_agent(agents[1], [b]).start()
    market.assign(job, 0, b, sender=keeper)
    wait_for(lambda: state_of(market, job) == ReplicaState.SUBMITTED, timeout=120, what="B's result")

    folder = proc_b.workdir / "leases" / f"computenet-{job}-0-0-2"
    index = json.loads((folder / "outputs.json").read_text())
    result = json.loads(LocalStore(proc_b.workdir / "outputs").get("sha256", index["files"]["out/result.json"]))
    assert result == {"started_from": resumed_step, "ended_at": resumed_step + 3}
    assert resumed_step >= 1

    # settlement: A's contribution (the committed seconds at A's price), then B's result
    chain.mine(deltatime=params.challenge_window + 1)
    tx = market.finalize(job, 0, sender=keeper)
    (paid,) = tx.events.filter(market.ContributionPaid)
    assert (int(paid.asset), paid["provider"], int(paid.gpu_seconds)) == (
        a,
        provider.address,
        int(committed.gpu_seconds),
    )
    (final,) = tx.events.filter(market.ShardFinalized)
    assert (int(final.asset), final["provider"]) == (b, provider2.address)
    assert "resuming" in proc_b.log()
