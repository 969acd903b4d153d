"""Staging one shard for a run, the same for whoever runs it (an agent, a verifier, the
arbiter): the manifest fetched by the keccak-256 a job committed to and checked to be
canonical, the image found here or pulled by its digest (never by tag), and the inputs fetched
by SHA-256 and checked against the manifest's Merkle root. Each step that cannot be done
raises Decline with a short reason (an agent's on-chain decline reason) and the long story.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from computenet.errors import ManifestError
from computenet.manifest import Manifest, manifest_hash, parse_manifest
from computenet.merkle import MerkleTree
from computenet.store import BlobNotFound, StoreClient, StoreError

REASON_BYTES = 32  # decline reasons go on chain as bytes32


class Decline(Exception):
    """This shard cannot run here; the message is the on-chain reason (≤ 32 ASCII bytes),
    `detail` the longer story for the log."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if len(reason.encode()) > REASON_BYTES:
            raise ValueError(f"decline reason over {REASON_BYTES} bytes: {reason!r}")
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason


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
