"""The agent's decisions, pure: whether a shard can run here, what a result is metered at,
and what to do with each journal entry after a restart. No Docker, chain or file access."""

from __future__ import annotations

import math
from dataclasses import dataclass

from computenet.domain import ReplicaState
from computenet.manifest import Manifest
from computenet.staging import REASON_BYTES, Decline  # noqa: F401 (the agent declines with it)

# Seconds kept between a container's wall-clock limit and the lease's end, for collecting
# outputs and getting the result mined.
SUBMIT_MARGIN = 30


def reason_bytes(reason: str) -> bytes:
    """The bytes32 form of a decline reason, right-padded with zeros."""
    return reason.encode().ljust(REASON_BYTES, b"\x00")


def check_runnable(manifest: Manifest, *, now: int, lease_end: int, job_gpu_count: int, asset_gpu_count: int) -> None:
    """Raises Decline when the shard cannot finish here inside its lease."""
    if manifest.timeout_seconds + SUBMIT_MARGIN > lease_end - now:
        raise Decline("lease too short", f"the job may run {manifest.timeout_seconds} s but the lease ends in "
                                         f"{lease_end - now} s (with {SUBMIT_MARGIN} s kept to submit)")  # fmt: skip
    if job_gpu_count > asset_gpu_count:
        raise Decline("not enough GPUs", f"the job needs {job_gpu_count} GPUs, this asset has {asset_gpu_count}")


def metered_seconds(run_seconds: float, gpu_count: int, cap: int) -> int:
    """GPU-seconds to claim: run time × GPUs in use (× 1 for CPU-only work), rounded up,
    at most the job's `cap` (the chain pays no more than that anyway)."""
    return min(cap, max(1, math.ceil(run_seconds * max(1, gpu_count))))


@dataclass(frozen=True)
class ChainReplica:
    """What the chain says of a replica now."""

    state: ReplicaState
    lease: int
    deadline: int


def recovery(entry_state: str, entry_lease: int, lease_end: int, chain: ChainReplica, now: int) -> str:
    """What a restarted agent does with one open journal entry:

    - "done": the chain already holds this lease's result;
    - "drop": the lease is no longer ours (reclaimed, cancelled, reassigned) or has ended;
    - "submit": the result was computed (or sent but not mined): send it;
    - "resume": the shard had not finished: run it again (or collect its container); a rerun
      that no longer fits in the lease is declined like a new one (plan.check_runnable).
    """
    if chain.lease != entry_lease:
        return "drop"
    if chain.state == ReplicaState.SUBMITTED or chain.state == ReplicaState.DISPUTED or chain.state == ReplicaState.FINALIZED:
        return "done"
    if chain.state != ReplicaState.ASSIGNED or now > lease_end:
        return "drop"
    if entry_state in ("computed", "submitted"):
        return "submit"
    return "resume"
