"""Re-executing a replica that resumed from an adopted checkpoint: the verifier stages the
checkpoint as an agent does and judges the replica against a run from it, not from scratch.

The job counts ten steps, adding each step to a total, and checkpoints after each; resumed, it
carries on from the checkpoint's step and total. An honest checkpoint gives the same bytes as
a run from scratch; an odd one (a total no honest run reaches, as a failing node might leave)
gives other bytes, which an honest provider that resumed from it must not be slashed for."""

import json
import secrets

import pytest

from agent import checkpoints, execute
from agent.journal import Lease
from computenet.checkpoints import checkpoint_hash
from computenet.domain import Replica, ReplicaState
from computenet.merkle import MerkleTree
from computenet.sandbox import Limits
from computenet.staging import NO_RESUME
from computenet.store import LocalStore, Mirrors
from verifier.arbiter import ChainFacts, Evidence, decide_each, resume_groups
from verifier.reexecute import Reexecution, ReexecutionError

GPU_SECONDS = 2
SCRIPT = b"""
import json, os
saved, resume = os.environ["COMPUTENET_CHECKPOINT_DIR"], os.environ["COMPUTENET_RESUME_DIR"]
state = {"step": 0, "total": 0}
if os.path.exists(os.path.join(resume, "checkpoint")):
    with open(os.path.join(resume, "checkpoint")) as f:
        state = json.load(f)
while state["step"] < 10:
    state["step"] += 1
    state["total"] += state["step"]
    with open(os.path.join(saved, ".tmp"), "w") as f:
        json.dump(state, f)
    os.rename(os.path.join(saved, ".tmp"), os.path.join(saved, "step-%02d" % state["step"]))
with open("/out/result.json", "w") as f:
    json.dump(state, f, sort_keys=True)
print("done", state["step"])
"""
HONEST = json.dumps({"step": 5, "total": 15}).encode()  # what a run from scratch checkpoints at step 5
ODD = json.dumps({"step": 5, "total": 1000}).encode()  # validly committed, but no honest run wrote it


def result(total: int) -> dict[str, bytes]:
    """The files a run that ends with `total` commits."""
    return {
        "out/result.json": json.dumps({"step": 10, "total": total}, sort_keys=True).encode(),
        "log/container.log": b"done 10\n",
    }


SCRATCH = result(55)
FROM_ODD = result(1040)
WRONG = result(54)


def root_of(files: dict[str, bytes]) -> bytes:
    return MerkleTree.from_files(files).root


def hx(value: bytes) -> str:
    return "0x" + bytes(value).hex()


@pytest.fixture
def counting_job(publish_job, content_store):
    """The counting job's manifest hash; the two checkpoints are in the content store."""
    for blob in (HONEST, ODD):
        content_store.client.put(blob)
    return publish_job(["python3", "/in/count.py"], {"count.py": SCRIPT}, timeout_seconds=30)[1]


@pytest.fixture
def agent_run(content_store, docker_engine, tmp_path):
    """`agent_run(manifest_hash, resume_point)`: the root an agent commits for shard 0 resumed
    from `resume_point`, staged and run by the agent's own steps (agent/node.py's run_lease)."""

    def run(manifest_hash, resume_point):
        lease = Lease(job=secrets.randbelow(10**9), shard=0, replica=0, lease=1, asset=1, lease_end=0)
        folder = tmp_path / lease.name
        manifest = execute.fetch_manifest(content_store.client, manifest_hash)
        inputs, outputs = execute.prepare(folder)
        execute.bound_outputs(outputs, manifest.outputs.max_bytes)
        execute.stage_inputs(content_store.client, manifest, inputs)
        saved, resume = checkpoints.make_dirs(folder)
        stores = Mirrors.of(content_store.client, manifest.stores)
        checkpoints.stage_resume(stores, resume_point, resume, execute.output_bytes(manifest.outputs.max_bytes))
        container = execute.start(
            lease,
            manifest,
            execute.ensure_image(docker_engine.client, manifest.image),
            client=docker_engine.client,
            inputs=inputs,
            outputs=outputs,
            shard_count=1,
            gpu_indices=(),
            limits=Limits(memory_bytes=256 << 20),
            checkpoints=saved,
            resume=resume,
        )
        try:
            done = execute.finish(
                container,
                manifest,
                outputs=outputs,
                gpu_count=0,
                max_gpu_seconds=3_600,
                out_store=LocalStore(tmp_path / f"{lease.name}-outputs"),
            )
        finally:
            execute.release(folder)
        return done.output_root

    return run


# ---------------------------------------------------------------- the re-execution


def test_a_reexecution_from_a_resume_point_is_an_agents_resumed_run(reexecutor, counting_job, agent_run):
    scratch = reexecutor.run(counting_job, 0, 1)
    honest = reexecutor.run(counting_job, 0, 1, resume_point=checkpoint_hash(HONEST))
    odd = reexecutor.run(counting_job, 0, 1, resume_point=checkpoint_hash(ODD))

    assert (scratch.root, scratch.resume_point) == (root_of(SCRATCH), NO_RESUME)
    assert scratch.files == SCRATCH  # a fresh run gets an empty /resume and a writable /checkpoint
    # an honest checkpoint resumes to the bytes of a run from scratch; the odd one to its own
    assert (honest.root, honest.resume_point) == (root_of(SCRATCH), checkpoint_hash(HONEST))
    assert (odd.files, odd.resume_point) == (FROM_ODD, checkpoint_hash(ODD))
    assert agent_run(counting_job, checkpoint_hash(ODD)) == odd.root
    assert agent_run(counting_job, NO_RESUME) == scratch.root


def test_a_missing_resume_blob_is_a_reexecution_error_naming_it(reexecutor, counting_job):
    missing = checkpoint_hash(b'{"step": 5, "total": 7}')  # committed, say, but never uploaded
    with pytest.raises(ReexecutionError, match=f"checkpoint not found: no store has checkpoint {hx(missing)}"):
        reexecutor.run(counting_job, 0, 1, resume_point=missing)


# ---------------------------------------------------------------- the arbiter


@pytest.fixture
def resumed_from_odd(
    chain,
    market,
    counting_job,
    post_job,
    register_asset,
    provider2,
    agents,
    keeper,
    registered_keeper,
    commit_checkpoint,
    submit,
):
    """`resumed_from_odd(cheat=False)`: a counting job whose replica 0 resumed from ODD; returns
    (job, the honest asset). A node (agents[0]) checkpoints ODD on replica 0 and fails; its
    lease is reclaimed and the checkpoint adopted; an honest node resumes from it and submits
    FROM_ODD. The honest node is provider2's (agents[1]); with `cheat` the job has two
    replicas, provider2's node takes replica 1 and submits WRONG before the reclaim, and the
    honest node is the provider's (agents[2])."""

    def resume(cheat=False):
        job = post_job(manifest_hash=counting_job, gpu_count=0, min_vram_mib=0, replication=2 if cheat else 1)
        failing = register_asset(agent_account=agents[0])
        second = register_asset(owner=provider2, agent_account=agents[1])
        honest, honest_agent = (register_asset(agent_account=agents[2]), agents[2]) if cheat else (second, agents[1])
        market.assign(job, 0, failing, sender=keeper)
        if cheat:
            market.assign(job, 0, second, sender=keeper)
        commit_checkpoint(agents[0], job, 0, 0, checkpoint_hash(ODD), 5)
        if cheat:
            submit(agents[1], job, 0, 1, output_root=root_of(WRONG), gpu_seconds=GPU_SECONDS)
        chain.pending_timestamp = int(market.replica(job, 0, 0).deadline) + 1
        chain.mine()
        market.reclaim(job, 0, 0, sender=keeper)
        assert bytes(market.checkpoint(job, 0, 0).resume_point) == checkpoint_hash(ODD)
        market.assign(job, 0, honest, sender=keeper)
        submit(honest_agent, job, 0, 0, output_root=root_of(FROM_ODD), gpu_seconds=GPU_SECONDS)
        return job, honest

    return resume


def test_the_arbiter_upholds_an_honest_replica_resumed_from_an_odd_checkpoint(
    market, court, assets, make_arbiter, reexecutor, counting_job, resumed_from_odd, verifier
):
    """A node checkpoints ODD and fails; its lease is reclaimed and the checkpoint adopted; an
    honest provider resumes from it and submits FROM_ODD, which a verifier running from scratch
    challenges. The arbiter runs from the adopted checkpoint and upholds it."""
    job, honest = resumed_from_odd()
    assert reexecutor.run(counting_job, 0, 1).root != root_of(FROM_ODD)  # from scratch it looks wrong
    court.challenge(job, 0, sender=verifier)
    stake = assets.stake(honest).amount

    answer = make_arbiter().arbitrate(Evidence(job=job, shard=0))

    assert (answer["upheld"], answer["rejected"], answer["runs"]) == ([0], [], [hx(root_of(FROM_ODD))])
    assert (answer["ruling"], answer["valid_root"]) == ("resolve", hx(root_of(FROM_ODD)))
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED
    assert assets.stake(honest).amount == stake
    (entry,) = [e for e in make_arbiter().entries() if e["job"] == job]
    assert entry["run_resume_points"] == [hx(checkpoint_hash(ODD))]
    assert entry["parts"] == [
        {
            "resume_point": hx(checkpoint_hash(ODD)),
            "replicas": [0],
            "valid_root": hx(root_of(FROM_ODD)),
            "runs": [hx(root_of(FROM_ODD))],
        }
    ]


def test_replicas_from_different_resume_points_are_each_judged_by_a_run_from_their_own(
    market, make_arbiter, resumed_from_odd
):
    """Replica 0 resumed from ODD (honest: FROM_ODD); replica 1 ran from scratch and submitted
    WRONG. The roots differ, so a dispute opens by itself; the arbiter runs once from ODD (it
    agrees with replica 0) and twice from scratch (both agree with each other, not with
    replica 1), and rejects replica 1 alone."""
    job, _ = resumed_from_odd(cheat=True)
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.DISPUTED] * 2

    arbiter = make_arbiter()
    answer = arbiter.arbitrate(Evidence(job=job, shard=0))

    assert (answer["upheld"], [r["replica"] for r in answer["rejected"]]) == ([0], [1])
    assert (answer["ruling"], answer["rejected_mask"]) == ("resolve_replicas", 0b10)
    assert answer["runs"] == [hx(root_of(FROM_ODD)), hx(root_of(SCRATCH)), hx(root_of(SCRATCH))]
    assert answer["rejected"][0]["reason"].startswith(f"its root {hx(root_of(WRONG))} is not the arbiter's")
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED
    assert market.replica(job, 0, 1).state == ReplicaState.OPEN  # slashed and reopened
    (entry,) = [e for e in arbiter.entries() if e["job"] == job]
    assert entry["run_resume_points"] == [hx(checkpoint_hash(ODD)), hx(NO_RESUME), hx(NO_RESUME)]
    assert [(p["resume_point"], p["replicas"]) for p in entry["parts"]] == [
        (hx(checkpoint_hash(ODD)), [0]),
        (hx(NO_RESUME), [1]),
    ]


# ---------------------------------------------------------------- the decision (pure)


def replica(index, files):
    return Replica(
        job=1,
        shard=0,
        index=index,
        state=ReplicaState.DISPUTED,
        asset=index + 1,
        keeper_id=1,
        lease=1,
        price=100,
        deadline=0,
        since=0,
        gpu_seconds=GPU_SECONDS,
        output_root=root_of(files),
    )


def facts(*replicas, resume_points=()):
    return ChainFacts(
        chain_id=31337,
        market="0x" + "11" * 20,
        job=1,
        shard=0,
        manifest_hash=b"\x22" * 32,
        max_gpu_seconds=3_600,
        replicas=replicas,
        agents={},
        resume_points=resume_points,
    )


def run_of(files, point=NO_RESUME):
    return Reexecution(root_of(files), files, resume_point=point)


def test_resume_groups_put_each_replica_under_ruling_with_its_own_resume_point():
    odd = checkpoint_hash(ODD)
    assert resume_groups(facts(replica(0, SCRATCH), replica(1, SCRATCH))) == {NO_RESUME: (0, 1)}
    mixed = facts(replica(0, FROM_ODD), replica(1, SCRATCH), replica(2, FROM_ODD), resume_points=(odd, NO_RESUME, odd))
    assert resume_groups(mixed) == {odd: (0, 2), NO_RESUME: (1,)}


def test_one_resume_point_rules_as_before_and_says_which_point_it_ran_from():
    odd = checkpoint_hash(ODD)
    shard = facts(replica(0, FROM_ODD), resume_points=(odd,))
    decision = decide_each(shard, {odd: [run_of(FROM_ODD, odd)]})
    assert (decision.upheld, decision.rejected, decision.by_mask) == ((0,), (), False)
    assert (decision.valid_root, decision.resume_points) == (root_of(FROM_ODD), (odd,))
    # the same replica judged from scratch would have been rejected: the point decides
    with pytest.raises(ValueError, match="resume points"):
        decide_each(shard, {NO_RESUME: [run_of(SCRATCH)]})


def test_several_resume_points_rule_replica_by_replica():
    odd = checkpoint_hash(ODD)
    shard = facts(replica(0, FROM_ODD), replica(1, WRONG), resume_points=(odd, NO_RESUME))
    decision = decide_each(shard, {odd: [run_of(FROM_ODD, odd)], NO_RESUME: [run_of(SCRATCH), run_of(SCRATCH)]})
    assert (decision.upheld, [r.replica for r in decision.rejected]) == ((0,), [1])
    assert (decision.by_mask, decision.rejected_mask, decision.reproducible) == (True, 0b10, True)
    assert decision.runs == (root_of(FROM_ODD), root_of(SCRATCH), root_of(SCRATCH))
    assert decision.resume_points == (odd, NO_RESUME, NO_RESUME)
    # both honest: both stand, and the mask rejects no one
    both = facts(replica(0, FROM_ODD), replica(1, SCRATCH), resume_points=(odd, NO_RESUME))
    decision = decide_each(both, {odd: [run_of(FROM_ODD, odd)], NO_RESUME: [run_of(SCRATCH)]})
    assert (decision.upheld, decision.rejected, decision.rejected_mask) == ((0, 1), (), 0)
    # a resumed replica the run from its point disagrees with is told which point that was
    wrong = facts(replica(0, WRONG), resume_points=(odd,))
    decision = decide_each(wrong, {odd: [run_of(FROM_ODD, odd), run_of(FROM_ODD, odd)]})
    (rejection,) = decision.rejected
    assert f"(run from checkpoint {hx(odd)}, where the replica resumed)" in rejection.reason
