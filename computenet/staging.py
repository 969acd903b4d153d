"""Staging one shard for a run, the same for whoever runs it (an agent, a verifier, the
arbiter): the manifest fetched by the keccak-256 a job committed to and checked to be
canonical, the image found here or pulled by its digest (never by tag) and checked to carry
it, the inputs fetched by SHA-256 and checked against the manifest's Merkle root, and the
replica's adopted checkpoint (its resume point, computenet.checkpoints) fetched by keccak256,
checked and placed in the lease's resume/ folder beside an empty checkpoint/ folder. Each
step that cannot be done raises Decline with a short reason (an agent's on-chain decline
reason) and the long story.

Where the bytes come from needs no trust: the manifest is read from the stager's own
store(s), the inputs from those and then the mirrors the manifest lists (`stores`), in
order, each read checked against its hash (computenet.store.Mirrors); a mirror that fails or
serves other bytes is skipped, and when none serves an input the Decline names each failure.

Inputs are streamed to disk, each capped at its declared size. A job's outputs are bounded
on disk: run as root, the lease's out/ folder is a tmpfs of the manifest's `max_bytes` plus
OUTPUT_SLACK (and at most OUTPUT_INODES files), unmounted once the result is committed; not
as root, the bounds are the container's RLIMIT_FSIZE and the commitment's size check
(`bound_outputs` says which). A tmpfs lives in memory (and swap), so a provider sizes its
memory for the output limits of the leases it runs at once. `release` leaves nothing of a
lease's in/ and out/ behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from eth_utils import keccak

from computenet.checkpoints import RESUME_FILE, checkpoint_hash
from computenet.errors import ManifestError
from computenet.manifest import Manifest, manifest_hash, parse_manifest
from computenet.merkle import MerkleTree, leaf_from_hashes
from computenet.store import BlobNotFound, BlobTooLarge, Mirrors, StoreClient, StoreError

log = logging.getLogger("computenet.staging")

REASON_BYTES = 32  # decline reasons go on chain as bytes32
MAX_MANIFEST_BYTES = 1 << 20  # a manifest names its inputs; it is never large
OUTPUT_SLACK = 1 << 20  # bytes of the output tmpfs over max_bytes: pages of small files, folders
OUTPUT_INODES = 20_000  # files and folders the output tmpfs holds (the commitment takes 10,000 files)
NO_RESUME = b"\x00" * 32  # a replica's resume point when it starts fresh


class Decline(Exception):
    """This shard cannot run here; the message is the on-chain reason (≤ 32 ASCII bytes),
    `detail` the longer story for the log."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if len(reason.encode()) > REASON_BYTES:
            raise ValueError(f"decline reason over {REASON_BYTES} bytes: {reason!r}")
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason


def fetch_manifest(store: StoreClient | Mirrors, committed: bytes) -> Manifest:
    """The manifest the job committed to, from the store or the first of the mirrors that
    has it (named by its keccak-256, and checked against it)."""
    try:
        raw = store.get("keccak256", committed.hex(), max_bytes=MAX_MANIFEST_BYTES)
    except BlobTooLarge:
        raise Decline(
            "manifest too large", f"the manifest 0x{committed.hex()} is over {MAX_MANIFEST_BYTES} bytes"
        ) from None
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
        raise Decline(
            "image not found", f"{reference}: not here and not pullable: {error.explanation or error}"
        ) from None
    if image.id != digest and not any(d.endswith("@" + digest) for d in image.attrs.get("RepoDigests") or []):
        raise Decline("image digest mismatch", f"{reference}: the pulled image does not carry that digest")
    return image.id


def stage_inputs(store: StoreClient | Mirrors, manifest: Manifest, folder: Path) -> None:
    """Streams each input to its place under `folder`, capped at and checked against its
    size and SHA-256, from `store` or else the manifest's mirrors; then checks their Merkle root."""
    store = Mirrors.of(store, manifest.stores)
    leaves = []
    for item in manifest.inputs.files:
        target = folder / item.path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            names = store.download("sha256", item.sha256, target, item.size)
        except BlobTooLarge as error:
            raise Decline(
                "input size mismatch", f"{item.path}: over the {item.size} bytes the manifest says ({error})"
            ) from None
        except BlobNotFound as error:
            raise Decline(
                "input not found", f"no store has input {item.path} (sha256 {item.sha256}): {error}"
            ) from None
        except StoreError as error:
            raise Decline("input unavailable", f"{item.path}: {error}") from None
        except OSError as error:
            raise Decline("input not writable", f"{item.path}: {error}") from None
        if names["size"] != item.size:
            raise Decline("input size mismatch", f"{item.path}: {names['size']} bytes, the manifest says {item.size}")
        leaves.append((item.path, leaf_from_hashes(keccak(item.path.encode()), bytes.fromhex(str(names["keccak256"])))))
    if leaves and "0x" + MerkleTree.from_leaves(leaves).root.hex() != manifest.inputs.root:
        raise Decline("input root mismatch", "the inputs' Merkle root differs from the manifest's")


def lease_dirs(folder: Path) -> tuple[Path, Path]:
    """A lease folder's in/ (inputs) and out/ (outputs)."""
    return folder / "in", folder / "out"


def prepare(folder: Path) -> tuple[Path, Path]:
    """A clean lease folder; returns its (in/, out/)."""
    release(folder)
    inputs, outputs = lease_dirs(folder)
    inputs.mkdir(parents=True)
    outputs.mkdir()
    return inputs, outputs


def checkpoint_dirs(folder: Path) -> tuple[Path, Path]:
    """A lease folder's checkpoint/ (the container's /checkpoint) and resume/ (its /resume)."""
    return folder / "checkpoint", folder / "resume"


def make_dirs(folder: Path) -> tuple[Path, Path]:
    """Creates the lease's checkpoint/ and (empty) resume/ folders; returns them."""
    checkpoints, resume = checkpoint_dirs(folder)
    checkpoints.mkdir(parents=True, exist_ok=True)
    resume.mkdir(parents=True, exist_ok=True)
    resume.chmod(0o755)
    return checkpoints, resume


def stage_resume(store: StoreClient | Mirrors, resume_point: bytes, resume: Path, max_bytes: int) -> bool:
    """Places the adopted checkpoint `resume_point` (keccak256; zero: none) at
    resume/checkpoint, fetched from `store` and checked against its hash. Decline when no store
    has it or the bytes differ. Returns whether there was one."""
    if bytes(resume_point) == NO_RESUME:
        return False
    name = bytes(resume_point).hex()
    try:
        data = store.get("keccak256", name, max_bytes=max_bytes)
    except BlobTooLarge:
        raise Decline("checkpoint too large", f"checkpoint 0x{name} is over {max_bytes} bytes") from None
    except BlobNotFound as error:
        raise Decline("checkpoint not found", f"no store has checkpoint 0x{name}: {error}") from None
    except StoreError as error:
        raise Decline("checkpoint unavailable", f"checkpoint 0x{name}: {error}") from None
    if checkpoint_hash(data) != bytes(resume_point):
        raise Decline("checkpoint mismatch", f"the bytes served for checkpoint 0x{name} hash otherwise")
    target = resume / RESUME_FILE
    target.write_bytes(data)
    target.chmod(0o644)
    return True


def output_bytes(max_bytes: int) -> int:
    """The most bytes a job may put on disk for an output limit of `max_bytes`."""
    return max_bytes + OUTPUT_SLACK


def bound_outputs(outputs: Path, max_bytes: int) -> str:
    """Bounds what a job can write to `outputs` on disk: a tmpfs of `output_bytes(max_bytes)`
    mounted there when run as root; returns which bound is in force, for the log."""
    if os.geteuid() != 0:
        return "not root: outputs bounded per file by RLIMIT_FSIZE and in all by the commitment's check"
    options = f"size={output_bytes(max_bytes)},nr_inodes={OUTPUT_INODES},mode=0777,nosuid,nodev,noexec"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "computenet-out", str(outputs)], capture_output=True, text=True
    )
    if done.returncode != 0:
        return (
            f"no tmpfs ({done.stderr.strip() or done.returncode}): outputs bounded by RLIMIT_FSIZE and the commitment"
        )
    return f"outputs on a tmpfs of {output_bytes(max_bytes)} bytes"


def release(folder: Path, keep: tuple[str, ...] = ()) -> None:
    """Unmounts a lease's output tmpfs and removes everything in `folder` but `keep`."""
    _, outputs = lease_dirs(folder)
    if outputs.exists() and os.path.ismount(outputs):
        done = subprocess.run(["umount", str(outputs)], capture_output=True, text=True)
        if done.returncode != 0:  # still busy (a process holds it): detach it now, freed when let go
            subprocess.run(["umount", "-l", str(outputs)], capture_output=True, text=True)
    if not folder.exists():
        return
    for child in folder.iterdir():
        if child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    left = [c.name for c in folder.iterdir() if c.name not in keep]
    if left:
        log.warning("lease folder not fully removed", extra={"fields": {"folder": str(folder), "left": left}})
    if not keep:
        try:
            folder.rmdir()
        except OSError:
            pass
