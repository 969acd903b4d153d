"""One lease, from assignment to a signed result: fetch and check the manifest, make sure the
image is here by its digest, stage the inputs, run the container, Merkle-commit the outputs
(its log included) and sign the receipt. Each step that can be refused raises plan.Decline.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from computenet.errors import ManifestError
from computenet.manifest import Manifest, manifest_hash, parse_manifest
from computenet.merkle import MerkleTree
from agent import gpu, sandbox
from agent.journal import Lease
from agent.plan import Decline, metered_seconds
from agent.store import BlobNotFound, LocalStore, StoreClient, StoreError

LOG_LEAF = "log/container.log"
OUTPUT_PREFIX = "out/"


@dataclass(frozen=True)
class Result:
    output_root: bytes
    gpu_seconds: int
    exit_code: int
    oom_killed: bool
    timed_out: bool
    seconds: float
    files: dict[str, str]  # leaf path -> sha256 in the output store
    utilization_pct: int | None = None  # mean GPU (or CPU) utilisation sampled each second of the run


def fetch_manifest(store: StoreClient, committed: bytes) -> Manifest:
    """The manifest the job committed to, from the store (named by its keccak-256)."""
    try:
        raw = store.get("keccak256", committed.hex())
    except BlobNotFound:
        raise Decline("manifest not found", f"the store has no manifest 0x{committed.hex()}") from None
    except StoreError as error:
        raise Decline("manifest unavailable", str(error)) from None
    try:
        manifest = parse_manifest(raw)
    except ManifestError as error:
        raise Decline("manifest invalid", str(error)) from None
    if manifest_hash(manifest) != committed:
        raise Decline("manifest not canonical", "the stored bytes are not the canonical JSON of their manifest")
    return manifest


def ensure_image(client: Any, reference: str) -> str:
    """The local image id for `name@sha256:…`: an image whose id, or one of whose registry
    digests, is that digest; otherwise it is pulled by digest (never by tag)."""
    import docker.errors

    name, digest = reference.rsplit("@", 1)
    try:
        image = client.images.get(digest)  # an image id
        if image.id == digest:
            return image.id
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError:
        pass
    for image in client.images.list(name=name.split(":")[0]):
        if any(d.endswith("@" + digest) for d in image.attrs.get("RepoDigests") or []):
            return image.id
    try:
        image = client.images.pull(f"{name.split(':')[0]}@{digest}")
    except docker.errors.APIError as error:
        raise Decline("image not found", f"{reference}: not here and not pullable: {error.explanation or error}") from None
    return image.id


def stage_inputs(store: StoreClient, manifest: Manifest, folder: Path) -> None:
    """Fetches each input (checked by SHA-256 and size) under `folder`, then checks their root."""
    contents: dict[str, bytes] = {}
    for item in manifest.inputs.files:
        try:
            data = store.get("sha256", item.sha256)
        except BlobNotFound:
            raise Decline("input not found", f"the store has no input {item.path} (sha256 {item.sha256})") from None
        except StoreError as error:
            raise Decline("input unavailable", f"{item.path}: {error}") from None
        if len(data) != item.size:
            raise Decline("input size mismatch", f"{item.path}: {len(data)} bytes, the manifest says {item.size}")
        contents[item.path] = data
    if contents and "0x" + MerkleTree.from_files(contents).root.hex() != manifest.inputs.root:
        raise Decline("input root mismatch", "the inputs' Merkle root differs from the manifest's")
    for path, data in contents.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def lease_dirs(folder: Path) -> tuple[Path, Path]:
    """A lease folder's in/ (inputs) and out/ (outputs)."""
    return folder / "in", folder / "out"


def prepare(folder: Path) -> tuple[Path, Path]:
    """A clean lease folder; returns its (in/, out/)."""
    if folder.exists():
        shutil.rmtree(folder)
    inputs, outputs = lease_dirs(folder)
    inputs.mkdir(parents=True)
    outputs.mkdir()
    return inputs, outputs


def result_files(outputs: Path, logs: bytes, max_bytes: int) -> tuple[dict[str, bytes], bool]:
    """The leaves a result commits to: the output files (as out/<path>) and the log
    (log/container.log). Returns (leaf -> content, over_limit): past `max_bytes` the outputs
    are not committed, only the log (and the run counts as failed)."""
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(p for p in outputs.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        total += len(data)
        files[OUTPUT_PREFIX + path.relative_to(outputs).as_posix()] = data
    over = total > max_bytes
    if over:
        files = {}
    files[LOG_LEAF] = logs
    return files, over


def collect(outputs: Path, logs: bytes, max_bytes: int, store: LocalStore) -> tuple[bytes, dict[str, str], bool]:
    """The Merkle root over the result's files (`result_files`), each put into the agent's
    output store. Returns (root, leaf -> sha256, over_limit)."""
    files, over = result_files(outputs, logs, max_bytes)
    names = {leaf: str(store.put(data)["sha256"]) for leaf, data in files.items()}
    return MerkleTree.from_files(files).root, names, over


def execute(lease: Lease, manifest: Manifest, image_id: str, *, client: Any, inputs: Path, outputs: Path,
            shard_count: int, gpu_count: int, max_gpu_seconds: int, limits: sandbox.Limits, out_store: LocalStore,
            on_start: Callable[[str], None] = lambda name: None, container: Any = None) -> Result:  # fmt: skip
    """Runs the container (or waits for `container`, one found running after a restart) and
    commits to its outputs."""
    if container is None:
        spec = sandbox.RunSpec(
            name=lease.name, image=image_id, command=list(manifest.command), env=dict(manifest.env),
            shard=lease.shard, shard_count=shard_count, inputs=inputs, outputs=outputs,
            output_path=manifest.outputs.path, timeout_seconds=manifest.timeout_seconds, gpu_count=gpu_count,
            limits=limits, labels={"computenet.lease": lease.name},
        )  # fmt: skip
        on_start(lease.name)
        container = sandbox.start(client, spec)
    samples: list[int] = []  # utilisation while it runs: evidence next to the metered seconds
    try:
        run = sandbox.wait(container, manifest.timeout_seconds, started=sandbox.started_at(container),
                           on_poll=lambda: samples.append(gpu.probe().utilization_pct))  # fmt: skip
    finally:
        container.remove(force=True)
    root, names, over = collect(outputs, run.logs, manifest.outputs.max_bytes, out_store)
    exit_code = run.exit_code if not over else (run.exit_code or 1)
    return Result(
        output_root=root, gpu_seconds=metered_seconds(run.seconds, gpu_count, max_gpu_seconds),
        exit_code=min(exit_code, 255), oom_killed=run.oom_killed, timed_out=run.timed_out, seconds=run.seconds,
        files=names, utilization_pct=round(sum(samples) / len(samples)) if samples else None,
    )  # fmt: skip


def write_index(folder: Path, lease: Lease, result: Result) -> None:
    """The lease's output index (leaf path -> sha256) for serving outputs and proofs."""
    (folder / "outputs.json").write_text(json.dumps({
        "lease": lease.name, "root": "0x" + result.output_root.hex(), "files": result.files,
        "seconds": round(result.seconds, 3), "gpu_seconds": result.gpu_seconds, "exit_code": result.exit_code,
        "utilization_pct": result.utilization_pct}, indent=1))  # fmt: skip
