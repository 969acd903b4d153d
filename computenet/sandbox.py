"""One shard's container: how it is confined (pure) and running it with the Docker SDK.

The container gets no network, a read-only root filesystem, a small tmpfs at /tmp, memory
(swap included), PID and CPU limits, the unprivileged user `nobody`, no capabilities and no
privilege escalation. Inputs are mounted read-only at /in, the output folder read-write at
the manifest's output path; GPUs are passed through `device_requests` only for GPU assets.
The wall-clock limit is enforced by the agent: past it the container is killed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

INPUT_PATH = "/in"
NOBODY = "65534:65534"
SHARD_INDEX, SHARD_COUNT = "COMPUTENET_SHARD_INDEX", "COMPUTENET_SHARD_COUNT"
KILLED = 137  # 128 + SIGKILL: the exit code of a container killed for memory or time


@dataclass(frozen=True)
class Limits:
    """Resources one container may use."""

    memory_bytes: int = 1 << 30
    pids: int = 256
    cpus: float = 1.0
    tmp_bytes: int = 64 << 20


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to start one shard's container."""

    name: str
    image: str  # an image id, sha256:<64 hex>
    command: list[str]
    env: dict[str, str]
    shard: int
    shard_count: int
    inputs: Path
    outputs: Path
    output_path: str
    timeout_seconds: int
    gpu_count: int = 0  # 0: no GPU passed through
    limits: Limits = field(default_factory=Limits)
    labels: dict[str, str] = field(default_factory=dict)


def container_options(spec: RunSpec) -> dict[str, Any]:
    """The keyword arguments of `client.containers.create` for `spec` (pure)."""
    options: dict[str, Any] = dict(
        image=spec.image,
        command=list(spec.command),
        name=spec.name,
        environment={**spec.env, SHARD_INDEX: str(spec.shard), SHARD_COUNT: str(spec.shard_count)},
        network_mode="none",
        read_only=True,
        user=NOBODY,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit=spec.limits.memory_bytes,
        memswap_limit=spec.limits.memory_bytes,  # no swap beyond the memory limit
        pids_limit=spec.limits.pids,
        nano_cpus=int(spec.limits.cpus * 1e9),
        tmpfs={"/tmp": f"rw,noexec,nosuid,size={spec.limits.tmp_bytes}"},
        volumes={
            str(spec.inputs): {"bind": INPUT_PATH, "mode": "ro"},
            str(spec.outputs): {"bind": spec.output_path, "mode": "rw"},
        },
        working_dir="/tmp",
        labels={"computenet": "shard", **spec.labels},
        detach=True,
    )
    if spec.gpu_count:
        from docker.types import DeviceRequest

        options["device_requests"] = [DeviceRequest(count=spec.gpu_count, capabilities=[["gpu"]])]
    return options


@dataclass(frozen=True)
class RunResult:
    """How a container ended: its exit code (137 when killed), whether for memory or time,
    its run time by the engine's clock, and its combined stdout and stderr."""

    exit_code: int
    oom_killed: bool
    timed_out: bool
    seconds: float
    logs: bytes
    container_id: str


def engine_time(stamp: str) -> float | None:
    """Unix seconds of one of the engine's RFC 3339 stamps (nanoseconds, "Z"); None if unset."""
    from datetime import datetime

    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        value = datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))
    except ValueError:
        return None
    return value if value > 0 else None  # "0001-01-01T00:00:00Z": never happened


def started_at(container: Any) -> float | None:
    """When the engine started `container`, so a wall-clock limit survives an agent restart."""
    container.reload()
    return engine_time(container.attrs.get("State", {}).get("StartedAt", ""))


def _engine_seconds(state: dict[str, Any]) -> float | None:
    start, end = engine_time(state.get("StartedAt", "")), engine_time(state.get("FinishedAt", ""))
    return max(0.0, end - start) if start is not None and end is not None else None


def start(client: Any, spec: RunSpec) -> Any:
    """Creates and starts the container; the output folder is made writable for `nobody`."""
    spec.outputs.chmod(0o777)
    container = client.containers.create(**container_options(spec))
    container.start()
    return container


def wait(container: Any, timeout_seconds: float, started: float | None = None,
         on_poll: Callable[[], None] | None = None, poll: float = 1.0) -> RunResult:  # fmt: skip
    """Waits for `container` to end, killing it once `timeout_seconds` have passed since
    `started` (default: now); `on_poll` runs between checks (telemetry sampling)."""
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import ReadTimeout

    started = time.time() if started is None else started
    timed_out = False
    while True:
        left = started + timeout_seconds - time.time()
        if left <= 0:
            timed_out = True
            try:
                container.kill()
            except Exception:  # it ended in the meantime
                pass
            container.wait(timeout=30)
            break
        try:
            container.wait(timeout=min(poll, left))
            break
        except (ReadTimeout, RequestsConnectionError):
            if on_poll is not None:
                on_poll()
    container.reload()
    state = container.attrs["State"]
    seconds = _engine_seconds(state)
    return RunResult(
        exit_code=KILLED if timed_out else int(state["ExitCode"]),
        oom_killed=bool(state.get("OOMKilled")),
        timed_out=timed_out,
        seconds=seconds if seconds is not None else time.time() - started,
        logs=container.logs(stdout=True, stderr=True),
        container_id=container.id,
    )


def run(client: Any, spec: RunSpec, on_poll: Callable[[], None] | None = None) -> RunResult:
    """Runs `spec` to its end and removes the container."""
    container = start(client, spec)
    try:
        return wait(container, spec.timeout_seconds, on_poll=on_poll)
    finally:
        container.remove(force=True)
