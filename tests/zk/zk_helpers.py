"""A zk job with a proven shard, for tests of what other views show of it (the gateway's job
API, `ape run job status`): a plain module, not a conftest. Tests outside tests/zk load it by
its path (tests/zk is not on sys.path there, and `tests` names another package):

    spec = importlib.util.spec_from_file_location("zk_helpers", ROOT / "tests" / "zk" / "zk_helpers.py")

Everything goes through the SDK's Market, so it works on whichever deployment a test has; a
proof is real (EZKL, about 1.5 s) with the model `make zk` built in .zk/models/blobs."""

import dataclasses
from pathlib import Path

from eth_utils import keccak

from computenet import zk
from computenet.deploy import deploy_verifier
from computenet.domain import Requirements, Verification
from computenet.merkle import MerkleTree

GPU_SECONDS = 60
LOG = b"computenet: proven\n"


def register_model(sdk, artifacts, owner) -> bytes:
    """Deploys the model's EZKL verifier and registers the model at `sdk`'s registry, unless
    it already is there; its id."""
    known = sdk.zk_model_id(artifacts)
    if sdk.zk_model(known).registered:
        return known
    verifier = deploy_verifier(artifacts, owner)
    return sdk.register_model(
        artifacts.artifact_hash, verifier.address, artifacts.input_words, artifacts.output_words, sender=owner
    )


def post_zk_job(sdk, artifacts, model_id, client, req: Requirements, manifest=b"zk manifest"):
    """Binds a manifest whose inputs are one sample per shard to the model and posts a zk job
    with `req` (its verification made ZK); returns (job id, the inputs' files)."""
    samples = artifacts.samples()
    files = {
        zk.input_path(s): zk.encode_words(zk.quantize(samples[s]["x"], artifacts.input_scale))
        for s in range(req.shard_count)
    }
    digest = keccak(manifest)
    sdk.bind_zk(digest, model_id, MerkleTree.from_files(files).root, sender=client)
    req = dataclasses.replace(req, verification=Verification.ZK)
    return sdk.post_job(digest, req, sender=client), files


def prove_and_submit(sdk, chain, artifacts, files, job, shard, agent, sender, workdir) -> bytes:
    """Proves the assigned shard's replica 0 as an honest agent does and submits it through the
    model registry, which finalizes it; returns the output root."""
    lease = sdk.replica(job, shard, 0).lease
    binding = zk.binding(chain.chain_id, sdk.market.address, job, shard, 0, lease)
    words = zk.decode_words(files[zk.input_path(shard)])
    proof = zk.prove(artifacts, words, zk.tag_words(binding), Path(workdir))
    _, _, outputs, _ = artifacts.layout.split(proof.instances)
    out_tree = MerkleTree.from_files({zk.OUTPUT_LEAF: zk.encode_words(outputs), "log/container.log": LOG})
    run_for(sdk, chain, job, shard, GPU_SECONDS)
    receipt = sdk.receipt_for(job, shard, 0, out_tree.root, GPU_SECONDS, 0)
    signature = receipt.sign(agent.private_key, chain.chain_id, sdk.market.address)
    sdk.submit_proven(
        job,
        shard,
        0,
        out_tree.root,
        GPU_SECONDS,
        signature,
        proof.proof,
        proof.instances,
        MerkleTree.from_files(files).proof(zk.input_path(shard)),
        out_tree.proof(zk.OUTPUT_LEAF),
        sender=sender,
    )
    return out_tree.root


def run_for(sdk, chain, job, shard, gpu_seconds):
    """Moves the clock on until `gpu_seconds` fit the time replica 0 has been assigned."""
    needed = sdk.replica(job, shard, 0).since + gpu_seconds
    if chain.pending_timestamp < needed:
        chain.pending_timestamp = needed
