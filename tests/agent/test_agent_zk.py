"""A zk lease in the agent (agent/zk.py): what it declines before running, and what proving one
writes and keeps. The proof is real (.zk/models/blobs, the prover in .venv-zk); the chain's side
is tests/zk/test_model_registry.py, and the whole path `make demo` (tests/demo)."""

import json

import pytest

from agent import zk as zk_lease
from computenet import zk
from computenet.domain import ZkModel, ZkSpec
from computenet.manifest import build_manifest
from computenet.merkle import MerkleTree, leaf, verify
from computenet.staging import Decline

IMAGE = "computenet/python@sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def blobs():
    return zk.ModelArtifacts.load(zk.ROOT / ".zk" / "models" / "blobs")


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


def test_a_bound_job_with_its_model_here_is_proven(blobs, manifest):
    spec, model = chain_view(blobs, manifest)
    lease = zk_lease.check(spec, model, manifest, 0, {blobs.artifact_hash: blobs}, TAG)
    assert lease.artifacts is blobs and lease.model == spec.model and lease.tag == TAG


@pytest.mark.parametrize(
    "case, reason",
    [
        ("unbound", "zk job not bound"),
        ("unregistered", "zk job not bound"),
        ("other inputs", "zk inputs differ"),
        ("no input for the shard", "zk input missing"),
        ("model not here", "zk model not here"),
    ],
)
def test_a_lease_it_cannot_prove_is_declined_before_it_runs(blobs, manifest, case, reason):
    spec, model = chain_view(blobs, manifest)
    shard, local = 0, {blobs.artifact_hash: blobs}
    if case == "unbound":
        spec = ZkSpec(b"\x00" * 32, b"\x00" * 32)
    elif case == "unregistered":
        model = ZkModel("0x" + "00" * 20, 0, 0, "0x" + "00" * 20, b"\x00" * 32)
    elif case == "other inputs":
        spec = chain_view(blobs, manifest, root="0x" + "44" * 32)[0]
    elif case == "no input for the shard":
        shard = 2
    else:
        local = {}
    with pytest.raises(Decline) as declined:
        zk_lease.check(spec, model, manifest, shard, local, TAG)
    assert declined.value.reason == reason and len(reason.encode()) <= 32


def test_proving_writes_the_outputs_and_keeps_what_the_registry_takes(blobs, manifest, job_files, tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    for path, data in job_files.items():
        (inputs / path).parent.mkdir(parents=True, exist_ok=True)
        (inputs / path).write_bytes(data)
    outputs.mkdir()
    spec, model = chain_view(blobs, manifest)
    lease = zk_lease.check(spec, model, manifest, 1, {blobs.artifact_hash: blobs}, TAG)

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
