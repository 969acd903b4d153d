"""A zk lease (docs/zk.md). Before anything runs, the job's on-chain binding is checked against
its manifest and this agent's models, so a lease it could not prove is declined, not failed
later; once the container exits 0, the prover runs the model on the shard's input and writes
its outputs and proof into the outputs folder, where the result's Merkle root commits them;
the registry's submit_result then takes the proof, the instances and the two Merkle proofs,
kept in the lease folder (BUNDLE) so a restarted agent can still send them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from computenet import zk
from computenet.domain import ZkModel, ZkSpec
from computenet.manifest import Manifest
from computenet.merkle import MerkleTree
from computenet.staging import Decline

BUNDLE = "zk-proof.json"  # in the lease folder: what ModelRegistry.submit_result takes besides the receipt
PROOF_FILE = "zk/proof.json"  # in the outputs: the proof and instances, for anyone to check again
READABLE_FILE = "zk/outputs.json"  # in the outputs: the proven outputs as numbers, and the class


@dataclass(frozen=True)
class ZkLease:
    """What proving one lease needs."""

    artifacts: zk.ModelArtifacts
    model: bytes
    tag: list[int]


def local_models(folders: list[Path]) -> dict[bytes, zk.ModelArtifacts]:
    """This agent's model artifacts by artifact hash (how the registry names them)."""
    found = {}
    for folder in folders:
        artifacts = zk.ModelArtifacts.load(folder)
        found[artifacts.artifact_hash] = artifacts
    return found


def check(
    spec: ZkSpec,
    model: ZkModel | None,
    manifest: Manifest,
    shard: int,
    local: dict[bytes, zk.ModelArtifacts],
    tag: list[int],
    model_id: Callable[[zk.ModelArtifacts], bytes],
) -> ZkLease:
    """A zk lease this agent can prove, or Decline saying why not. `model_id(artifacts)` is the
    id the local artifacts have with the verifier compiled from them (Market.zk_model_id): a
    model registered under the same artifacts with another verifier, one that would refuse the
    proof, is declined here rather than proven and refused on chain (and the lease lost)."""
    if not spec.bound or model is None or not model.registered:
        raise Decline("zk job not bound", "the job's client bound no registered model to its manifest")
    if "0x" + spec.inputs_root.hex() != manifest.inputs.root:
        raise Decline(
            "zk inputs differ",
            f"the job is bound to inputs root 0x{spec.inputs_root.hex()}, its manifest has {manifest.inputs.root}",
        )
    if zk.input_path(shard) not in {file.path for file in manifest.inputs.files}:
        raise Decline("zk input missing", f"the manifest has no {zk.input_path(shard)} for shard {shard}")
    artifacts = local.get(model.artifact_hash)
    if artifacts is None:
        raise Decline(
            "zk model not here",
            f"this agent has no artifacts 0x{model.artifact_hash.hex()} for model 0x{spec.model.hex()} "
            "(COMPUTENET_AGENT_ZK_MODELS)",
        )
    if model_id(artifacts) != spec.model:
        raise Decline(
            "zk verifier differs",
            f"model 0x{spec.model.hex()} pairs {artifacts.name}'s artifacts with a verifier that is not the one "
            f"they compile to (0x{model_id(artifacts).hex()})",
        )
    return ZkLease(artifacts, spec.model, tag)


def prove_into(
    lease: ZkLease, manifest: Manifest, shard: int, inputs: Path, outputs: Path, work: Path
) -> dict[str, Any]:
    """Proves the shard and writes the outputs' zk files; returns the bundle (without the
    output proof, which needs the committed tree) and the proving's metering."""
    artifacts = lease.artifacts
    words = zk.decode_words((inputs / zk.input_path(shard)).read_bytes())
    proof = zk.prove(artifacts, words, lease.tag, work)
    _, _, output_words, _ = artifacts.layout.split(proof.instances)
    instances = [f"0x{word:064x}" for word in proof.instances]
    folder = outputs / "zk"
    folder.mkdir(parents=True, exist_ok=True)
    (outputs / zk.OUTPUT_FILE).write_bytes(zk.encode_words(output_words))
    (outputs / PROOF_FILE).write_text(json.dumps({"proof": "0x" + proof.proof.hex(), "instances": instances}))
    values = [zk.dequantize(word, artifacts.output_scale) for word in output_words]
    best = max(range(len(values)), key=values.__getitem__)
    label = artifacts.classes[best] if best < len(artifacts.classes) else str(best)
    (outputs / READABLE_FILE).write_text(
        json.dumps({"model": "0x" + lease.model.hex(), "outputs": values, "class": label}, indent=1)
    )
    files = {f.path: (inputs / f.path).read_bytes() for f in manifest.inputs.files}
    input_proof = MerkleTree.from_files(files).proof(zk.input_path(shard))
    return {
        "proof": "0x" + proof.proof.hex(),
        "instances": instances,
        "input_proof": ["0x" + p.hex() for p in input_proof],
        "proving": {"seconds": round(proof.seconds, 3), "peak_mib": proof.peak_mib, "proof_bytes": proof.size},
    }


def save_bundle(folder: Path, bundle: dict[str, Any], files: dict[str, bytes]) -> None:
    """Adds the output file's Merkle proof (over the committed files) and keeps the bundle."""
    proof = MerkleTree.from_files(files).proof(zk.OUTPUT_LEAF)
    (folder / BUNDLE).write_text(json.dumps({**bundle, "output_proof": ["0x" + p.hex() for p in proof]}))


def load_bundle(folder: Path) -> dict[str, Any] | None:
    path = folder / BUNDLE
    return json.loads(path.read_text()) if path.is_file() else None


def submit_args(bundle: dict[str, Any]) -> tuple[bytes, list[int], list[bytes], list[bytes]]:
    """The proof, instances and Merkle proofs as ModelRegistry.submit_result takes them."""

    def hexes(values: list[str]) -> list[bytes]:
        return [bytes.fromhex(v[2:]) for v in values]

    return (
        bytes.fromhex(bundle["proof"][2:]),
        [int(v, 16) for v in bundle["instances"]],
        hexes(bundle["input_proof"]),
        hexes(bundle["output_proof"]),
    )
