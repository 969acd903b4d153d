"""A zk lease in the agent (agent/zk.py): what it declines before running, and what proving one
writes and keeps. The proof is real (.zk/models/blobs, the prover in .venv-zk); the chain's side
is tests/zk/test_model_registry.py, and the whole path `make demo` (tests/demo)."""

import json

import pytest
from eth_utils import keccak
from test_agent_failures import run_one

from agent import execute
from agent import zk as zk_lease
from computenet import zk
from computenet.deploy import deploy_verifier
from computenet.domain import ReplicaState, Verification, ZkModel, ZkSpec
from computenet.manifest import build_manifest, canonical_json
from computenet.merkle import MerkleTree, leaf, verify
from computenet.staging import Decline

IMAGE = "computenet/python@sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def job_files(blobs):
    samples = blobs.samples()
    return {zk.input_path(s): zk.encode_words(zk.quantize(samples[s]["x"], blobs.input_scale)) for s in (0, 1)}


@pytest.fixture(scope="module")
def manifest(job_files):
    return build_manifest(IMAGE, ["true"], job_files, timeout_seconds=10, max_output_bytes=1 << 20)


def chain_view(blobs, manifest, *, root=None, artifact_hash=None):
    spec = ZkSpec(b"\x07" * 32, bytes.fromhex((root or manifest.inputs.root)[2:]))
    model = ZkModel(
        "0x" + "11" * 20, blobs.input_words, blobs.output_words, "0x" + "22" * 20, artifact_hash or blobs.artifact_hash
    )
    return spec, model


TAG = zk.tag_words(zk.binding(31337, "0x" + "33" * 20, 1, 0, 0, 1))


def same_id(artifacts):  # what Market.zk_model_id gives when the registered verifier is the local one
    return b"\x07" * 32


def test_a_bound_job_with_its_model_here_is_proven(blobs, manifest):
    spec, model = chain_view(blobs, manifest)
    lease = zk_lease.check(spec, model, manifest, 0, {blobs.artifact_hash: blobs}, TAG, same_id)
    assert lease.artifacts is blobs and lease.model == spec.model and lease.tag == TAG


@pytest.mark.parametrize(
    "case, reason",
    [
        ("unbound", "zk job not bound"),
        ("unregistered", "zk job not bound"),
        ("other inputs", "zk inputs differ"),
        ("no input for the shard", "zk input missing"),
        ("model not here", "zk model not here"),
        ("another verifier", "zk verifier differs"),
    ],
)
def test_a_lease_it_cannot_prove_is_declined_before_it_runs(blobs, manifest, case, reason):
    spec, model = chain_view(blobs, manifest)
    shard, local, model_id = 0, {blobs.artifact_hash: blobs}, same_id
    if case == "unbound":
        spec = ZkSpec(b"\x00" * 32, b"\x00" * 32)
    elif case == "unregistered":
        model = ZkModel("0x" + "00" * 20, 0, 0, "0x" + "00" * 20, b"\x00" * 32)
    elif case == "other inputs":
        spec = chain_view(blobs, manifest, root="0x" + "44" * 32)[0]
    elif case == "no input for the shard":
        shard = 2
    elif case == "model not here":
        local = {}
    else:  # the client registered the local artifacts with a verifier of its own, and bound that
        model_id = lambda artifacts: b"\x08" * 32  # noqa: E731
    with pytest.raises(Decline) as declined:
        zk_lease.check(spec, model, manifest, shard, local, TAG, model_id)
    assert declined.value.reason == reason and len(reason.encode()) <= 32


def test_proving_writes_the_outputs_and_keeps_what_the_registry_takes(blobs, manifest, job_files, tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    for path, data in job_files.items():
        (inputs / path).parent.mkdir(parents=True, exist_ok=True)
        (inputs / path).write_bytes(data)
    outputs.mkdir()
    spec, model = chain_view(blobs, manifest)
    lease = zk_lease.check(spec, model, manifest, 1, {blobs.artifact_hash: blobs}, TAG, same_id)

    bundle = zk_lease.prove_into(lease, manifest, 1, inputs, outputs, tmp_path / "work")

    words = zk.decode_words((outputs / zk.OUTPUT_FILE).read_bytes())
    proof, instances, input_proof, _ = zk_lease.submit_args({**bundle, "output_proof": []})
    assert blobs.layout.split(instances)[2] == words and len(proof) == bundle["proving"]["proof_bytes"]
    readable = json.loads((outputs / zk_lease.READABLE_FILE).read_text())
    assert readable["class"] == blobs.classes[max(range(len(words)), key=readable["outputs"].__getitem__)]
    # the input proof leads from the shard's file to the manifest's (the bound) inputs root
    root = bytes.fromhex(manifest.inputs.root[2:])
    assert verify(input_proof, root, leaf(zk.input_path(1), job_files[zk.input_path(1)]))
    assert bundle["proving"]["seconds"] > 0 and bundle["proving"]["peak_mib"] > 0

    committed = {"out/" + p.relative_to(outputs).as_posix(): p.read_bytes() for p in outputs.rglob("*") if p.is_file()}
    zk_lease.save_bundle(tmp_path, bundle, {**committed, "log/container.log": b"ok\n"})
    kept = zk_lease.load_bundle(tmp_path)
    output_proof = zk_lease.submit_args(kept)[3]
    tree = MerkleTree.from_files({**committed, "log/container.log": b"ok\n"})
    assert verify(output_proof, tree.root, leaf(zk.OUTPUT_LEAF, zk.encode_words(words)))


# ---------------------------------------------------------------- an agent in this process, real parts


@pytest.fixture
def zk_lease_for(stack, blobs, owner, client, lease_for, job_image):
    """A bound two-shard zk job on the example model (registered with `verifier`, default: the one
    its artifacts compile to) whose shard 0 is assigned to `asset`; returns the Lease."""

    def make(asset, verifier=None):
        verifier = verifier or deploy_verifier(blobs, owner)
        receipt = stack.models.register_model(
            blobs.artifact_hash, verifier, blobs.input_words, blobs.output_words, sender=owner
        )
        model = receipt.events.filter(stack.models.ModelRegistered)[0].model
        samples = blobs.samples()
        files = {zk.input_path(s): zk.encode_words(zk.quantize(samples[s]["x"], blobs.input_scale)) for s in (0, 1)}
        built = build_manifest(
            job_image, ["python3", "-c", "print('staged')"], files, timeout_seconds=30, max_output_bytes=1 << 20
        )
        raw = canonical_json(built)
        stack.models.bind(keccak(raw), model, bytes.fromhex(built.inputs.root[2:]), sender=client)
        return lease_for(asset, raw, inputs=files.values(), verification=Verification.ZK, shard_count=2)

    return make


def test_an_agent_proves_its_zk_lease_and_the_shard_is_final_at_once(
    stack, blobs, inline_agent, cpu_asset, agents, zk_lease_for, market
):
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset], zk_models=[blobs.folder])
    lease = zk_lease_for(asset)
    stake = stack.assets.stake(asset).amount

    run_one(agent, lease)

    assert agent.journal.get(lease.key).state == "done"
    assert market.replica(lease.job, 0, 0).state == ReplicaState.FINALIZED
    head = market.chain_manager.blocks.height + 1
    [proven] = [e for e in stack.models.ResultProven.range(0, head) if e.job == lease.job]
    assert proven.output_root == market.output_root(lease.job, 0, 0)
    index = json.loads((agent.work / lease.name / execute.INDEX).read_text())
    assert index["exit_code"] == 0 and {"zk/outputs.bin", "zk/proof.json", "zk/outputs.json"} <= {
        leaf.removeprefix("out/") for leaf in index["files"]
    }
    proving = index["metering"]["proving"]  # the prover's own time and memory, beside the container's
    assert proving["seconds"] > 0 and proving["peak_mib"] > 0 and proving["proof_bytes"] > 1000
    assert stack.assets.stake(asset).amount == stake


def test_a_client_binding_its_own_verifier_gets_a_decline_not_a_slash(
    stack, blobs, inline_agent, cpu_asset, agents, zk_lease_for, market, owner, project
):
    """The client registers the example model's artifacts with a verifier that refuses every
    proof (any other contract) and binds its job to that: the agent declines before running."""
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset], zk_models=[blobs.folder])
    lease = zk_lease_for(asset, verifier=owner.deploy(project.NoReceiverMock))
    stake = stack.assets.stake(asset).amount

    run_one(agent, lease)

    assert agent.journal.get(lease.key).state == "declined"
    assert market.replica(lease.job, 0, 0).state == ReplicaState.OPEN
    [declined] = [
        e for e in market.ShardDeclined.range(0, market.chain_manager.blocks.height + 1) if e.job == lease.job
    ]
    assert declined.reason.rstrip(b"\x00") == b"zk verifier differs"
    assert stack.assets.stake(asset).amount == stake


def test_a_proof_the_registry_refuses_becomes_a_failed_result_not_a_lost_lease(
    stack, blobs, inline_agent, cpu_asset, agents, zk_lease_for, market, monkeypatch
):
    """Whatever makes the chain refuse a proof the agent made (here: one bit of it flipped on its
    way), the lease is not left to run out and be slashed: the agent submits a failed result."""
    prove_into = zk_lease.prove_into

    def flipped(*args, **kwargs):
        bundle = prove_into(*args, **kwargs)
        proof = bytearray.fromhex(bundle["proof"][2:])
        proof[100] ^= 1
        return {**bundle, "proof": "0x" + proof.hex()}

    monkeypatch.setattr(zk_lease, "prove_into", flipped)
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset], zk_models=[blobs.folder])
    lease = zk_lease_for(asset)
    stake = stack.assets.stake(asset).amount

    run_one(agent, lease)

    entry = agent.journal.get(lease.key)
    assert entry.state == "done" and entry.note == "zk proof refused: model_registry: proof does not verify"
    rep = market.replica(lease.job, 0, 0)
    assert rep.state == ReplicaState.SUBMITTED and rep.deadline > rep.since  # the optimistic way
    head = market.chain_manager.blocks.height + 1
    [submitted] = [e for e in market.ResultSubmitted.range(0, head) if e.job == lease.job]
    assert submitted.exit_code == 255 and stack.assets.stake(asset).amount == stake
