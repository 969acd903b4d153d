"""The agent's decisions, pure: whether a shard can run here, what a result is metered at,
what a failure leads to, and what to do with each journal entry after a restart. No
Docker, chain or file access.

A lease never ends in silence. A failure before its container starts is declined with a
short on-chain reason (the replica reopens, without penalty, inside the decline window); a
failure once the container has started is a failed result: a receipt with a non-zero exit
code over only a log leaf that explains it. A decline the chain refuses (the window closed)
falls back to a failed result too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from computenet.domain import SUBMIT_MARGIN, ReplicaState
from computenet.manifest import Manifest
from computenet.staging import REASON_BYTES, Decline  # noqa: F401 (the agent declines with it)

# Where a lease's run stands when something fails.
STAGING = "staging"  # manifest, image, GPUs, inputs: nothing has run
STARTING = "starting"  # the engine is creating and starting the container
RAN = "ran"  # the container started: whatever happens now is its result

AGENT_FAILURE_EXIT = 255  # a failed result's exit code when the container's own is 0 or unknown


def reason_bytes(reason: str) -> bytes:
    """The bytes32 form of a decline reason, right-padded with zeros."""
    return reason.encode().ljust(REASON_BYTES, b"\x00")


def check_runnable(manifest: Manifest, *, now: int, lease_end: int, job_gpu_count: int, asset_gpu_count: int) -> None:
    """Raises Decline when the shard cannot finish here inside its lease."""
    if manifest.timeout_seconds + SUBMIT_MARGIN > lease_end - now:
        raise Decline(
            "lease too short",
            f"the job may run {manifest.timeout_seconds} s but the lease ends in "
            f"{lease_end - now} s (with {SUBMIT_MARGIN} s kept to submit)",
        )
    if job_gpu_count > asset_gpu_count:
        raise Decline("not enough GPUs", f"the job needs {job_gpu_count} GPUs, this asset has {asset_gpu_count}")


def check_paid(max_gpu_seconds: int, contributed: int) -> None:
    """Raises Decline when the replica's earlier leases' adopted checkpoints already contributed
    the job's `max_gpu_seconds` (Market.checkpoint's `contributed`): the market pays the lease
    that finishes the replica at most max_gpu_seconds − contributed, so it would work for nothing."""
    if contributed >= max_gpu_seconds:
        raise Decline(
            "no gpu-seconds left to pay",
            f"the replica's earlier leases contributed {contributed} of the job's {max_gpu_seconds} "
            "GPU-seconds: a result now would be paid nothing",
        )


@dataclass(frozen=True)
class Machine:
    """What the machine the agent runs on has: CPU cores, memory (MiB), free disk (MiB)."""

    cpu_cores: int
    memory_mib: int
    disk_mib: int


def check_resources(requirements, machine: Machine) -> None:
    """Raises Decline when one lease of the job asks more CPU cores, memory or disk than this
    machine has at all (the chain only knows what the asset's spec declares)."""
    for need, have, what, reason in (
        (requirements.cpu_cores, machine.cpu_cores, "CPU cores", "not enough cpu cores"),
        (requirements.memory_mib, machine.memory_mib, "MiB of memory", "not enough memory"),
        (requirements.disk_mib, machine.disk_mib, "MiB of disk free", "not enough disk"),
    ):
        if need > have:
            raise Decline(reason, f"the job asks {need} {what} for each lease; this machine has {have}")


def spec_problems(spec, machine: Machine) -> list[str]:
    """What a registered spec declares beyond this machine (CPU cores, memory), for a warning
    at start: the chain would lease it work the agent must then decline."""
    problems = []
    if spec.cpu_cores > machine.cpu_cores:
        problems.append(f"declares {spec.cpu_cores} CPU cores, this machine has {machine.cpu_cores}")
    if spec.memory_mib > machine.memory_mib:
        problems.append(f"declares {spec.memory_mib} MiB of memory, this machine has {machine.memory_mib}")
    return problems


def check_gpus(granted: tuple[int, ...] | None, job_gpu_count: int, pool: tuple[int, ...]) -> tuple[int, ...]:
    """The GPUs pinned to a lease; Decline when the asset has too few free."""
    if granted is None:
        raise Decline(
            "no free GPU",
            f"the job needs {job_gpu_count} GPUs; of this asset's {list(pool)} too few are free (held by other leases)",
        )
    return granted


@dataclass(frozen=True)
class Outcome:
    """What a failure leads to: "decline" (reason on chain) or "fail" (a failed result)."""

    action: str
    reason: str  # ≤ 32 ASCII bytes
    detail: str


def on_failure(stage: str, error: BaseException) -> Outcome:
    """What a lease's failure at `stage` leads to (module docstring)."""
    detail = error.detail if isinstance(error, Decline) else f"{type(error).__name__}: {error}"
    if isinstance(error, Decline):
        reason = error.reason
    elif stage == STARTING:
        reason = "engine refused container"
    elif stage == RAN:
        reason = "result not committed"
    elif isinstance(error, OSError):
        reason = "agent storage error"
    else:
        reason = "agent error"
    return Outcome("fail" if stage == RAN else "decline", reason, detail[:2000])


def failed_exit_code(exit_code: int | None) -> int:
    """The exit code a failed result reports: the container's own when it failed, else
    AGENT_FAILURE_EXIT (a failed result never claims success)."""
    return min(exit_code, 255) if exit_code else AGENT_FAILURE_EXIT


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
    if (
        chain.state == ReplicaState.SUBMITTED
        or chain.state == ReplicaState.DISPUTED
        or chain.state == ReplicaState.FINALIZED
    ):
        return "done"
    if chain.state != ReplicaState.ASSIGNED or now > lease_end:
        return "drop"
    if entry_state in ("computed", "submitted"):
        return "submit"
    return "resume"
