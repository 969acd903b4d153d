"""Checkpoints: how a lease's work outlives the lease.

The workload ↔ agent protocol. The sandbox mounts a writable folder at `/checkpoint` and a
read-only one at `/resume` (env COMPUTENET_CHECKPOINT_DIR, COMPUTENET_RESUME_DIR; both always
set, /resume empty when the replica starts fresh). A workload writes each checkpoint as one file,
atomically: `/checkpoint/.<name>.tmp`, then a rename to `/checkpoint/<name>` (names not starting
with "."). The agent takes the newest completed file (by mtime, then name), uploads its bytes to
its content store, and signs an EIP-712 Checkpoint:

    struct_hash = keccak256(CHECKPOINT_TYPEHASH ‖ job ‖ shard ‖ replica ‖ lease ‖ asset ‖ manifest
                            ‖ checkpoint ‖ gpuSeconds)          # each a 32-byte word
    digest      = keccak256(0x1901 ‖ domain_separator("computenet JobMarket", "1", chainId, market)
                            ‖ struct_hash)

where `checkpoint` is keccak256 of the file's bytes and `gpuSeconds` the lease's metered use up
to it (JobMarket.commit_checkpoint rebuilds the same digest). Signed checkpoints travel in the
agent's heartbeats (`SignedCheckpoint.to_body`), each verifiable on its own, so any keeper can
relay one to the chain. When a lease runs out, `reclaim` adopts its committed checkpoint; the next
agent fetches it by keccak256, checks it, and places it at `/resume/checkpoint`.

The pure parts live here (which file is newest, the typed data, the wire form); the agent does
the I/O.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import keccak

from computenet.eip712 import TypedStruct
from computenet.errors import ComputenetError, InvalidSignature
from computenet.receipts import DOMAIN_NAME, DOMAIN_VERSION, _as_bytes32, _as_uint256

CHECKPOINT_DIR = "/checkpoint"
RESUME_DIR = "/resume"
RESUME_FILE = "checkpoint"  # the adopted checkpoint's name under RESUME_DIR
CHECKPOINT_ENV = "COMPUTENET_CHECKPOINT_DIR"
RESUME_ENV = "COMPUTENET_RESUME_DIR"
MAX_CONTRIBUTORS = 3  # JobMarket.MAX_CONTRIBUTORS: adopted checkpoints per replica that are paid

# The wire form: everything the chain call needs (the manifest it reads itself).
_WIRE = ("job", "shard", "replica", "lease", "asset", "checkpoint", "gpu_seconds", "signature")


class CheckpointError(ComputenetError, ValueError):
    """A checkpoint or its wire form is malformed."""


def checkpoint_hash(data: bytes) -> bytes:
    """The on-chain hash of a checkpoint: keccak256 of the file's bytes."""
    return keccak(bytes(data))


@dataclass(frozen=True)
class FileStat:
    """What `newest` needs of a file in the checkpoint folder."""

    name: str
    mtime_ns: int
    is_file: bool = True


def newest(files: list[FileStat]) -> str | None:
    """The name of the newest completed checkpoint: the latest mtime, then the greatest name;
    files being written (a leading ".") and anything not a plain file are skipped (pure)."""
    done = [f for f in files if f.is_file and f.name and not f.name.startswith(".")]
    if not done:
        return None
    return max(done, key=lambda f: (f.mtime_ns, f.name)).name


def scan(folder: str | os.PathLike) -> list[FileStat]:
    """The folder's entries, for `newest` (no links followed); empty if it is missing."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    out = []
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:  # renamed away meanwhile
            continue
        out.append(FileStat(entry.name, st.st_mtime_ns, entry.is_file(follow_symlinks=False)))
    return out


def latest_file(folder: str | os.PathLike) -> Path | None:
    """The newest completed checkpoint file in `folder`, or None."""
    name = newest(scan(folder))
    return None if name is None else Path(folder) / name


@dataclass(frozen=True)
class Checkpoint(TypedStruct):
    """An agent's signed claim: lease `lease` of (job, shard, replica) on `asset` reached
    `checkpoint` (keccak256 of its bytes) after `gpu_seconds` of metered use."""

    EIP712_DOMAIN = (DOMAIN_NAME, DOMAIN_VERSION)
    EIP712_TYPE = (
        "Checkpoint(uint256 job,uint256 shard,uint256 replica,uint256 lease,uint256 asset,"
        "bytes32 manifest,bytes32 checkpoint,uint256 gpuSeconds)"
    )

    job: int
    shard: int
    replica: int
    lease: int
    asset: int
    manifest: bytes
    checkpoint: bytes
    gpu_seconds: int

    def __post_init__(self) -> None:
        for attr, _, abi_type in self.EIP712_MEMBERS:
            check = _as_bytes32 if abi_type == "bytes32" else _as_uint256
            object.__setattr__(self, attr, check(attr, getattr(self, attr)))

    def sign(self, private_key: Any, chain_id: int, contract: str | bytes) -> SignedCheckpoint:  # type: ignore[override]
        """Signed by `private_key` (65 bytes r ‖ s ‖ v, low s), with its signature."""
        return SignedCheckpoint(self, super().sign(private_key, chain_id, contract))


CHECKPOINT_TYPE = Checkpoint.EIP712_TYPE
CHECKPOINT_TYPEHASH = Checkpoint.EIP712_TYPEHASH


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint and its agent's signature: what a heartbeat carries and anyone may relay."""

    checkpoint: Checkpoint
    signature: bytes

    def market_args(self) -> tuple:
        """JobMarket.commit_checkpoint's arguments."""
        c = self.checkpoint
        return (c.job, c.shard, c.replica, c.checkpoint, c.gpu_seconds, self.signature)

    def to_body(self) -> dict[str, Any]:
        """The heartbeat's entry: {job, shard, replica, lease, asset, checkpoint, gpu_seconds,
        signature}, hashes as 0x-hex."""
        c = self.checkpoint
        return {
            "job": c.job,
            "shard": c.shard,
            "replica": c.replica,
            "lease": c.lease,
            "asset": c.asset,
            "checkpoint": "0x" + c.checkpoint.hex(),
            "gpu_seconds": c.gpu_seconds,
            "signature": "0x" + bytes(self.signature).hex(),
        }

    @classmethod
    def from_body(cls, body: Any, manifest: bytes) -> SignedCheckpoint:
        """From `to_body`'s form; `manifest` is the job's manifest hash (from the chain), which
        the signature covers but the wire leaves out. CheckpointError for anything else."""
        if not isinstance(body, dict) or set(body) != set(_WIRE):
            raise CheckpointError(f"checkpoint: wire form must be an object with exactly {list(_WIRE)}")
        signature = body["signature"]
        if not isinstance(signature, str) or not signature.startswith("0x"):
            raise CheckpointError("checkpoint.signature must be 0x-prefixed hex")
        try:
            raw = bytes.fromhex(signature[2:])
            fields = {k: body[k] for k in _WIRE if k != "signature"}
            return cls(Checkpoint(manifest=manifest, **fields), raw)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"checkpoint: {error}") from None

    def signer(self, chain_id: int, market: str | bytes) -> str | None:
        """Who signed it, or None for a signature the contract would refuse."""
        try:
            return self.checkpoint.recover(self.signature, chain_id, market)
        except InvalidSignature:
            return None


def check_signed(
    body: Any, asset: int, agent: str, manifest: bytes | None, chain_id: int, market: str | bytes
) -> SignedCheckpoint | None:
    """A heartbeat's checkpoint entry, if it is of `asset` and signed by `agent` (the asset's
    agent now) over the job's `manifest`; None for anything else (pure: the caller reads the
    agent and manifest from the chain). Entries are not covered by the heartbeat's signature,
    so each is checked on its own before a keeper keeps it."""
    if manifest is None or not isinstance(body, dict) or body.get("asset") != asset:
        return None
    try:
        signed = SignedCheckpoint.from_body(body, manifest)
    except CheckpointError:
        return None
    if signed.checkpoint.gpu_seconds == 0 or signed.checkpoint.checkpoint == b"\x00" * 32:
        return None
    signer = signed.signer(chain_id, market)
    return signed if signer is not None and signer.lower() == str(agent).lower() else None


def lease_key(job: int, shard: int, replica: int, lease: int) -> str:
    """A lease's key, as keepers file its newest checkpoint."""
    return f"{job}:{shard}:{replica}:{lease}"


def wire_key(body: Any) -> str | None:
    """`lease_key` of a heartbeat's checkpoint entry, None if it does not name a lease (pure)."""
    if not isinstance(body, dict):
        return None
    values = [body.get(k) for k in ("job", "shard", "replica", "lease")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        return None
    return lease_key(*values)
