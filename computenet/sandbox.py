"""One shard's container: how it is confined (pure) and running it with the Docker SDK.

The container gets no network, a read-only root filesystem, a small tmpfs at /tmp, memory
(swap included), PID and CPU limits, the unprivileged user `nobody`, no capabilities and no
privilege escalation. An agent's container gets exactly what its lease holds
(`Limits.for_lease`): the job's CPU cores, its memory, and its disk for everything it can
write, /tmp (a tmpfs of part of it) and the output folder (the rest, measured by the agent
on each poll: `disk_usage`; over it the container is killed). Inputs are mounted read-only at /in, the output folder read-write at
the manifest's output path; GPUs are passed through `device_requests` only for GPU assets,
by device index where the agent pinned them (`gpu_indices`), else by count. An agent's run
also gets a writable checkpoint folder at /checkpoint and a read-only resume folder at
/resume (computenet.checkpoints: the protocol), both named in its environment. Each file the
job writes is capped by RLIMIT_FSIZE (`max_file_bytes`), and its log is kept by the engine
up to LOG_BYTES (json-file, one file) and read back at most LOG_BYTES.
The wall-clock limit is enforced by the agent: past it the container is killed.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from computenet.checkpoints import CHECKPOINT_DIR, CHECKPOINT_ENV, RESUME_DIR, RESUME_ENV
from computenet.meter import engine_seconds  # the engine's RFC 3339 stamps, in Unix seconds

INPUT_PATH = "/in"
NOBODY = "65534:65534"
SHARD_INDEX, SHARD_COUNT = "COMPUTENET_SHARD_INDEX", "COMPUTENET_SHARD_COUNT"
KILLED = 137  # 128 + SIGKILL: the exit code of a container killed for memory or time
LOG_BYTES = 1 << 20  # the most of a container's log kept and read
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"  # the container's /etc/hosts


@dataclass(frozen=True)
class Limits:
    """Resources one container may use."""

    memory_bytes: int = 1 << 30
    pids: int = 256
    cpus: float = 1.0
    tmp_bytes: int = 64 << 20
    disk_bytes: int = 0  # all it may write, /tmp included; 0: no limit beyond /tmp's size

    @classmethod
    def for_lease(cls, requirements: Any, fallback: Limits) -> Limits:
        """What one lease of a job holds: its cpu_cores, memory_mib (swap included) and disk_mib,
        of which /tmp gets at most `fallback.tmp_bytes` and a quarter; a field the job leaves
        at 0 takes `fallback`'s."""
        disk = requirements.disk_mib << 20
        return cls(
            memory_bytes=(requirements.memory_mib << 20) or fallback.memory_bytes,
            pids=fallback.pids,
            cpus=float(requirements.cpu_cores) or fallback.cpus,
            tmp_bytes=max(1 << 20, min(fallback.tmp_bytes, disk // 4)) if disk else fallback.tmp_bytes,
            disk_bytes=disk,
        )

    @property
    def output_disk_bytes(self) -> int:
        """What the output folder may hold on disk: the lease's disk less /tmp's (0: no limit)."""
        return max(0, self.disk_bytes - self.tmp_bytes) if self.disk_bytes else 0


def disk_usage(folder: Path) -> int:
    """Bytes the files under `folder` take on disk (allocated blocks, as `du`); files that
    vanish while it walks count nothing."""
    total = 0
    for root, dirs, files in os.walk(folder):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


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
    gpu_indices: tuple[int, ...] = ()  # the GPUs pinned to this run (by index); overrides gpu_count
    max_file_bytes: int = 0  # RLIMIT_FSIZE, the most bytes in any file it writes; 0: no limit
    limits: Limits = field(default_factory=Limits)
    labels: dict[str, str] = field(default_factory=dict)
    checkpoints: Path | None = None  # mounted rw at /checkpoint (with `resume` ro at /resume)
    resume: Path | None = None


@functools.cache
def _private_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="computenet-sandbox-"))


def hosts_file() -> Path:
    """A file holding HOSTS, mounted read-only at every container's /etc/hosts: the engine
    writes none for a container it sets up no network for, and a job still reaches its own
    loopback by name (torchrun's localhost rendezvous, say). Written once per process, in a
    folder of its own, and again should something remove it."""
    path = _private_folder() / "hosts"
    if not path.exists():
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(HOSTS)
        path.chmod(0o644)
    return path


def container_options(spec: RunSpec) -> dict[str, Any]:
    """The keyword arguments of `client.containers.create` for `spec` (pure, but for the one
    hosts file it names: `hosts_file`)."""
    from docker.types import DeviceRequest, LogConfig, Ulimit

    options: dict[str, Any] = dict(
        image=spec.image,
        command=list(spec.command),
        name=spec.name,
        environment={**spec.env, SHARD_INDEX: str(spec.shard), SHARD_COUNT: str(spec.shard_count)},
        network_mode="none",
        # The engine then sets up no libnetwork sandbox (runc still gives the container a network
        # namespace of its own, loopback only): about 90 ms less per start. /etc/hosts is ours.
        network_disabled=True,
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
            str(hosts_file()): {"bind": "/etc/hosts", "mode": "ro"},
        },
        working_dir="/tmp",
        labels={"computenet": "shard", **spec.labels},
        log_config=LogConfig(type="json-file", config={"max-size": str(LOG_BYTES), "max-file": "1"}),
        detach=True,
    )
    if spec.checkpoints is not None and spec.resume is not None:
        options["volumes"][str(spec.checkpoints)] = {"bind": CHECKPOINT_DIR, "mode": "rw"}
        options["volumes"][str(spec.resume)] = {"bind": RESUME_DIR, "mode": "ro"}
        options["environment"].update({CHECKPOINT_ENV: CHECKPOINT_DIR, RESUME_ENV: RESUME_DIR})
    if spec.max_file_bytes:
        options["ulimits"] = [Ulimit(name="fsize", soft=spec.max_file_bytes, hard=spec.max_file_bytes)]
    if spec.gpu_indices:
        ids = [str(i) for i in spec.gpu_indices]
        options["device_requests"] = [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
    elif spec.gpu_count:
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
    metering: Any = None  # computenet.meter.Metering when the run was metered


def started_at(container: Any) -> float | None:
    """When the engine started `container`, so a wall-clock limit survives an agent restart."""
    container.reload()
    return engine_seconds(container.attrs.get("State", {}).get("StartedAt", ""))


def _engine_seconds(state: dict[str, Any]) -> float | None:
    start, end = engine_seconds(state.get("StartedAt", "")), engine_seconds(state.get("FinishedAt", ""))
    return max(0.0, end - start) if start is not None and end is not None else None


def start(client: Any, spec: RunSpec) -> Any:
    """Creates and starts the container; the output folder is made writable for `nobody`.
    A container the engine creates but will not start is removed before the error rises."""
    spec.outputs.chmod(0o777)
    if spec.checkpoints is not None:
        spec.checkpoints.chmod(0o777)
    container = client.containers.create(**container_options(spec))
    try:
        container.start()
    except BaseException:
        container.remove(force=True)
        raise
    return container


def wait(
    container: Any,
    timeout_seconds: float,
    started: float | None = None,
    on_poll: Callable[[], None] | None = None,
    poll: float = 0.5,
    meter: Any = None,
) -> RunResult:
    """Waits for `container` to end, killing it once `timeout_seconds` have passed since
    `started` (default: now); `on_poll` runs between checks (telemetry sampling), and
    `meter` (a computenet.meter.ContainerMeter) samples its CPU time and processes then."""
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import ReadTimeout

    started = time.time() if started is None else started
    timed_out = False
    if meter is not None:
        meter.sample()
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
            if meter is not None:
                meter.sample()
            if on_poll is not None:
                on_poll()
    container.reload()
    state = container.attrs["State"]
    seconds = _engine_seconds(state)
    seconds = seconds if seconds is not None else time.time() - started
    return RunResult(
        exit_code=KILLED if timed_out else int(state["ExitCode"]),
        oom_killed=bool(state.get("OOMKilled")),
        timed_out=timed_out,
        seconds=seconds,
        logs=read_logs(container),
        container_id=container.id,
        metering=meter.finish(seconds) if meter is not None else None,
    )


def read_logs(container: Any, cap: int = LOG_BYTES) -> bytes:
    """The container's combined stdout and stderr, streamed, at most `cap` bytes."""
    kept = bytearray()
    stream = container.logs(stdout=True, stderr=True, stream=True, follow=False)
    try:
        for chunk in stream:
            kept += chunk[: cap - len(kept)]
            if len(kept) >= cap:
                break
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return bytes(kept)


def run(client: Any, spec: RunSpec, on_poll: Callable[[], None] | None = None) -> RunResult:
    """Runs `spec` to its end, metered (computenet.meter), and removes the container."""
    from computenet.meter import ContainerMeter

    container = start(client, spec)
    try:
        return wait(container, spec.timeout_seconds, on_poll=on_poll, meter=ContainerMeter(container, spec.gpu_indices))
    finally:
        container.remove(force=True)
