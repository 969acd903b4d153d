"""Measured metering: what a shard's run used, for the GPU-seconds an agent claims and a
verifier's re-execution checks. Stdlib only (pynvml is imported when first needed), and
nothing from agent/ or verifier/ or the rest of the SDK, so both use it and
bench/gpu_meter_check.py can load it from a bare copy of the tree.

API
---
`enable_accounting(gpu_indices) -> str`
    Turns NVML accounting mode on for those GPUs (needs root; it stays on until the driver
    unloads); the agent calls it once at start-up and logs the answer. Returns what it did
    per GPU, or why not; never raises.

`ContainerMeter(container, gpu_indices, cgroup_root="/sys/fs/cgroup")`
    `container`: a docker SDK Container, started. `gpu_indices`: NVML indices of the GPUs it
    was given, () for CPU-only work (pin them with `DeviceRequest(device_ids=[...])`: with
    `count=N` nothing says which GPUs the container got).
    `.sample()`: once per poll while the container runs (`sandbox.wait(on_poll=...)`); reads
    the cgroup's CPU usage and its processes' PIDs, remembered across samples since NVML
    keeps a process's accounting stats after it exits. Never raises.
    `.so_far(now=None) -> Metering`: while it runs, up to the last sample (a checkpoint's
    GPU-seconds). Never raises.
    `.finish(wall_seconds) -> Metering`: once the container has ended; `wall_seconds` is its
    run time (`RunResult.seconds`). Never raises.

`Metering(meter, gpu_ms, cpu_ms, wall_ms, gpu_utilization_pct, reason)` (frozen)
    The measurement. `.seconds(gpu_count) -> int` is the figure to claim (rules in
    `Metering.seconds`: NVML GPU time for GPU work, CPU time for CPU-only work, never < 1).

`measure_pids(pids, gpu_indices, since=None) -> GpuTime(gpu_ms, utilization_pct)`
    The PID-based NVML core of both paths, usable on a plain subprocess. Raises
    MeterUnavailable (its message is the reason) when NVML, or accounting mode on one of the
    GPUs, is not available. `since` (unix seconds) drops entries of an earlier process that
    had the same PID.

`process_metering(pids, gpu_indices, wall_seconds, cpu_ms=None, since=None) -> Metering`
    `measure_pids` plus the fallbacks, for plain processes that have ended (CPU time from
    their rusage).

Meters, strongest first
-----------------------
- "nvml-accounting": NVML accounting `time` (the milliseconds each process held a compute
  context on a GPU: not kernel time, which `gpu_utilization_pct` describes) summed over the
  container's processes and its GPUs. Needs the NVML library, accounting mode on
  (`enable_accounting`), and PIDs as NVML reports them, the host's: the agent must run in
  the host's PID namespace.
- "cgroup-cpu": CPU time of the container's cgroup (cgroup v2 `cpu.stat` usage_usec, or v1
  `cpuacct.usage`; hybrid hosts: v2 under root/unified first), under the systemd
  (`system.slice/docker-<id>.scope`) or cgroupfs (`docker/<id>`) layout, else wherever
  /proc/<init pid>/cgroup puts it. The cgroup goes when the container ends, so the figure
  is the last sample's: CPU used after it (at most one poll interval) is not counted. For
  CPU-only work this is the meter, and `reason` says so (CPU_ONLY).
- "wall-clock": the run time, when neither could be read.

`reason` says why a meter weaker than NVML accounting was used ("NVML unavailable: ...",
"NVML accounting mode is off on GPU 0 ...", CPU_ONLY; "; "-joined with why the CPU time
could not be read when it is "wall-clock"), and is "" for "nvml-accounting".

Not measured: a process that starts and ends between two samples is never seen, so its GPU
time is missed; a container that ends before its first sample has no CPU figure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

NVML_ACCOUNTING, CGROUP_CPU, WALL_CLOCK = "nvml-accounting", "cgroup-cpu", "wall-clock"
METERS = (NVML_ACCOUNTING, CGROUP_CPU, WALL_CLOCK)  # strongest first
CPU_ONLY = "no GPU pinned: CPU-only work is metered by its CPU time"
# Seconds an accounting entry may start before the container's start and still be its own
# (clocks of the engine and the driver); older entries belong to an earlier holder of the PID.
START_SLACK = 2.0
PROC = Path("/proc")  # where /proc/<pid>/cgroup is read


class MeterUnavailable(Exception):
    """A meter cannot measure; the message says why (it becomes `Metering.reason`)."""


@dataclass(frozen=True)
class Metering:
    """What one run used, by the strongest meter that worked.

    meter: "nvml-accounting", "cgroup-cpu" or "wall-clock" (METERS).
    gpu_ms: NVML accounting `time`, summed over the processes and the pinned GPUs (0 unless
        meter is "nvml-accounting").
    cpu_ms: CPU time of the processes, all cores summed (0 when it could not be read).
    wall_ms: the run's wall-clock time.
    gpu_utilization_pct: the GPUs' busy share while the processes held them, weighted by
        each entry's time; None when not measured.
    reason: why a weaker meter than NVML accounting was used ("" when it was not).
    """

    meter: str
    gpu_ms: int
    cpu_ms: int
    wall_ms: int
    gpu_utilization_pct: int | None
    reason: str

    def seconds(self, gpu_count: int) -> int:
        """The seconds to claim for a run on `gpu_count` GPUs, rounded up and never below 1:

        - GPU work, meter "nvml-accounting": ceil(gpu_ms / 1000), at most
          ceil(wall_ms × gpu_count / 1000) (processes sharing a GPU at once overlap);
        - GPU work, any weaker meter: ceil(wall_ms × gpu_count / 1000), since CPU time says
          nothing of GPU time and the GPUs were held for the whole run;
        - CPU-only work (gpu_count 0): ceil(cpu_ms / 1000), CPU-seconds over all cores;
          ceil(wall_ms / 1000) when the meter is "wall-clock".

        The job's cap (its max GPU-seconds) is the caller's to apply.
        """
        if gpu_count > 0:
            held = self.wall_ms * gpu_count
            ms = min(self.gpu_ms, held) if self.meter == NVML_ACCOUNTING else held
        else:
            ms = self.wall_ms if self.meter == WALL_CLOCK else self.cpu_ms
        return max(1, math.ceil(ms / 1000))


class GpuTime(NamedTuple):
    """NVML accounting over some processes and GPUs: `gpu_ms, utilization_pct = ...`."""

    gpu_ms: int
    utilization_pct: int | None


# ---------------------------------------------------------------- pure parts


def parse_cpu_stat(text: str) -> int | None:
    """usage_usec of a cgroup v2 `cpu.stat`; None when absent."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value)
    return None


def parse_cpuacct_usage(text: str) -> int | None:
    """Microseconds from a cgroup v1 `cpuacct.usage` (nanoseconds); None when empty."""
    text = text.strip()
    return int(text) // 1000 if text else None


def parse_procs(text: str) -> set[int]:
    """The PIDs of a `cgroup.procs`."""
    return {int(line) for line in text.split() if line.isdigit()}


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup as {controllers: path}; the cgroup v2 line has controllers ""."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    return paths


def cgroup_candidates(
    root: Path, container_id: str, unified: bool, proc_paths: dict[str, str] | None = None
) -> list[Path]:
    """Folders that may hold the container's CPU accounting, most likely first. `unified`:
    `root` is a cgroup v2 mount (else v1 or hybrid, v2 at root/unified); `proc_paths`: the
    container's init process's /proc/<pid>/cgroup, parsed."""
    layouts = [f"system.slice/docker-{container_id}.scope", f"docker/{container_id}"]
    bases = [root] if unified else [root / "unified", root / "cpu,cpuacct", root / "cpuacct"]
    found = [base / rel for base in bases for rel in layouts]
    for controllers, path in (proc_paths or {}).items():
        rel = path.lstrip("/")
        if not rel:
            continue  # the root cgroup is the host's, not the container's
        if controllers == "":
            found.append((root if unified else root / "unified") / rel)
        elif "cpuacct" in controllers.split(","):
            found += [root / controllers / rel, root / "cpuacct" / rel]
    return list(dict.fromkeys(found))


def engine_seconds(stamp: str) -> float | None:
    """Unix seconds of a Docker RFC 3339 stamp ("...T12:00:00.123456789Z"); None if unset."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        value = datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))
    except ValueError:
        return None
    return value if value > 0 else None


def sum_accounting(entries: Iterable[tuple[int, int]]) -> GpuTime:
    """(time_ms, gpu_utilization_pct) accounting entries → total time and the time-weighted
    utilisation (None when no entry has time)."""
    total = weighted = 0
    for time_ms, utilization in entries:
        total += time_ms
        weighted += time_ms * utilization
    return GpuTime(total, round(weighted / total) if total else None)


def choose(
    gpu_indices: tuple[int, ...],
    wall_seconds: float,
    gpu: GpuTime | None,
    gpu_reason: str,
    cpu_usec: int | None,
    cpu_reason: str,
) -> Metering:
    """The Metering of one run from what each meter gave: `gpu` (None: NVML failed, for
    `gpu_reason`), `cpu_usec` (None: not read, for `cpu_reason`). CPU-only work (no
    `gpu_indices`) never uses NVML."""
    wall_ms = max(0, round(wall_seconds * 1000))
    cpu_ms = math.ceil(cpu_usec / 1000) if cpu_usec is not None else 0
    why_not_gpu = gpu_reason if gpu_indices else CPU_ONLY
    if gpu_indices and gpu is not None:
        return Metering(NVML_ACCOUNTING, gpu.gpu_ms, cpu_ms, wall_ms, gpu.utilization_pct, "")
    if cpu_usec is not None:
        return Metering(CGROUP_CPU, 0, cpu_ms, wall_ms, None, why_not_gpu)
    return Metering(WALL_CLOCK, 0, 0, wall_ms, None, f"{why_not_gpu}; {cpu_reason}")


# ---------------------------------------------------------------- NVML


def _nvml() -> Any:
    """pynvml, initialised; the caller shuts it down. Raises MeterUnavailable."""
    try:
        import pynvml
    except ImportError as error:
        raise MeterUnavailable(f"NVML unavailable: {error}") from None
    try:
        pynvml.nvmlInit()
    except Exception as error:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        raise MeterUnavailable(f"NVML unavailable: {error}") from None
    return pynvml


def enable_accounting(gpu_indices: Iterable[int]) -> str:
    """Turns NVML accounting mode on for each GPU (root only; it stays on until the driver
    unloads). Returns what it did, or why not, one clause per GPU."""
    gpu_indices = tuple(gpu_indices)
    if not gpu_indices:
        return "no GPUs: nothing to enable"
    try:
        nvml = _nvml()
    except MeterUnavailable as error:
        return str(error)
    try:
        said = []
        for index in gpu_indices:
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                if nvml.nvmlDeviceGetAccountingMode(handle) == nvml.NVML_FEATURE_ENABLED:
                    said.append(f"GPU {index}: accounting already on")
                    continue
                nvml.nvmlDeviceSetAccountingMode(handle, nvml.NVML_FEATURE_ENABLED)
                said.append(f"GPU {index}: accounting turned on")
            except nvml.NVMLError as error:
                hint = " (needs root)" if getattr(error, "value", None) == nvml.NVML_ERROR_NO_PERMISSION else ""
                said.append(f"GPU {index}: accounting not turned on: {error}{hint}")
        return "; ".join(said)
    finally:
        nvml.nvmlShutdown()


def measure_pids(pids: Iterable[int], gpu_indices: Iterable[int], since: float | None = None) -> GpuTime:
    """NVML accounting of `pids` on each of `gpu_indices`, summed (`sum_accounting`). A PID
    without stats on a GPU is skipped (it did not use that GPU), as is an entry that started
    before `since` (unix seconds: an earlier process with the same PID). Stats `time` is only
    final once a process has ended. Raises MeterUnavailable when NVML cannot be used or
    accounting mode is off on one of the GPUs."""
    pids, gpu_indices = sorted(set(pids)), tuple(gpu_indices)
    nvml = _nvml()
    try:
        entries = []
        for index in gpu_indices:
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                enabled = nvml.nvmlDeviceGetAccountingMode(handle) == nvml.NVML_FEATURE_ENABLED
            except nvml.NVMLError as error:
                raise MeterUnavailable(f"NVML unavailable on GPU {index}: {error}") from None
            if not enabled:
                raise MeterUnavailable(f"NVML accounting mode is off on GPU {index} (enable_accounting, as root)")
            for pid in pids:
                try:
                    stats = nvml.nvmlDeviceGetAccountingStats(handle, pid)
                except nvml.NVMLError as error:
                    if getattr(error, "value", None) == nvml.NVML_ERROR_NOT_FOUND:
                        continue
                    raise MeterUnavailable(f"NVML accounting failed on GPU {index}: {error}") from None
                if since is not None and stats.startTime < (since - START_SLACK) * 1e6:
                    continue
                entries.append((int(stats.time), int(stats.gpuUtilization)))
        return sum_accounting(entries)
    finally:
        nvml.nvmlShutdown()


def process_metering(
    pids: Iterable[int],
    gpu_indices: tuple[int, ...],
    wall_seconds: float,
    cpu_ms: int | None = None,
    since: float | None = None,
) -> Metering:
    """The Metering of plain processes that have ended: NVML accounting of `pids`, else their
    CPU time `cpu_ms` (e.g. from rusage; meter "cgroup-cpu"), else wall-clock."""
    gpu, gpu_reason = _gpu_time(tuple(pids), gpu_indices, since)
    cpu_usec = cpu_ms * 1000 if cpu_ms is not None else None
    return choose(gpu_indices, wall_seconds, gpu, gpu_reason, cpu_usec, "the CPU time was not given")


def _gpu_time(pids: tuple[int, ...], gpu_indices: tuple[int, ...], since: float | None) -> tuple[GpuTime | None, str]:
    if not gpu_indices:
        return None, CPU_ONLY
    if not pids:
        return None, "no process of the run was seen, so NVML accounting had no PID to look up"
    try:
        return measure_pids(pids, gpu_indices, since), ""
    except MeterUnavailable as error:
        return None, str(error)


# ---------------------------------------------------------------- containers


class ContainerMeter:
    """Meters one container (a docker SDK Container) that runs on `gpu_indices` (NVML
    indices; empty for CPU-only work). See the module docstring."""

    def __init__(
        self, container: Any, gpu_indices: tuple[int, ...], cgroup_root: str | Path = "/sys/fs/cgroup"
    ) -> None:
        self.container = container
        self.gpu_indices = tuple(gpu_indices)
        self.root = Path(cgroup_root)
        self.pids: set[int] = set()  # every host PID seen in the container
        self.cpu_usec: int | None = None  # the last CPU usage read
        self.cgroup: Path | None = None  # where it was read
        self.since: float | None = None  # when the container started (unix seconds)
        self.samples = 0
        self._cpu_reason = "the container's cgroup was never sampled"

    def sample(self) -> None:
        """Reads the container's CPU usage and PIDs; call once per poll while it runs."""
        self.samples += 1
        try:
            self._sample()
        except Exception as error:  # a poll must never fail because of metering
            self._cpu_reason = f"reading the container's cgroup failed: {error}"

    def _sample(self) -> None:
        if self.cgroup is None:
            self.cgroup = self._find_cgroup()
            if self.cgroup is None:
                return
        usage = _read_usage(self.cgroup)
        if usage is None:  # the container ended and its cgroup went with it
            return
        self.cpu_usec = max(usage, self.cpu_usec or 0)
        try:
            self.pids |= parse_procs((self.cgroup / "cgroup.procs").read_text())
        except OSError:
            pass

    def _find_cgroup(self) -> Path | None:
        container_id = self.container.id
        unified = (self.root / "cgroup.controllers").exists()
        for folder in cgroup_candidates(self.root, container_id, unified):
            if _read_usage(folder) is not None:
                self._started()
                return folder
        pid = self._started()
        proc_paths = None
        if pid:
            self.pids.add(pid)
            try:
                proc_paths = parse_proc_cgroup((PROC / str(pid) / "cgroup").read_text())
            except OSError:
                pass
        for folder in cgroup_candidates(self.root, container_id, unified, proc_paths):
            if _read_usage(folder) is not None:
                return folder
        self._cpu_reason = (
            f"no cgroup with CPU usage found for container {container_id[:12]} under {self.root}"
            f" (init pid {pid or 'unknown'})"
        )
        return None

    def _started(self) -> int:
        """Reloads the container's state: remembers its start time and returns its init PID."""
        self.container.reload()
        state = self.container.attrs.get("State", {})
        if self.since is None:
            self.since = engine_seconds(state.get("StartedAt", "") or "")
        pid = int(state.get("Pid") or 0)
        if pid:
            self.pids.add(pid)
        return pid

    def so_far(self, now: float | None = None) -> Metering:
        """The Metering of the still running container up to the last sample (its wall time
        up to `now`, default the clock's): what a checkpoint taken now claims."""
        wall = max(0.0, (time.time() if now is None else now) - self.since) if self.since else 0.0
        gpu, gpu_reason = _gpu_time(tuple(self.pids), self.gpu_indices, self.since)
        return choose(self.gpu_indices, wall, gpu, gpu_reason, self.cpu_usec, self._cpu_reason)

    def finish(self, wall_seconds: float) -> Metering:
        """The Metering of the ended container, `wall_seconds` being its run time."""
        if self.cgroup is not None:
            self.sample()  # in case the cgroup outlived the container
        gpu, gpu_reason = _gpu_time(tuple(self.pids), self.gpu_indices, self.since)
        return choose(self.gpu_indices, wall_seconds, gpu, gpu_reason, self.cpu_usec, self._cpu_reason)


def _read_usage(folder: Path) -> int | None:
    """CPU usage (µs) of the cgroup at `folder`: v2 cpu.stat, else v1 cpuacct.usage."""
    try:
        usage = parse_cpu_stat((folder / "cpu.stat").read_text())
        if usage is not None:
            return usage
    except OSError:
        pass
    try:
        return parse_cpuacct_usage((folder / "cpuacct.usage").read_text())
    except (OSError, ValueError):
        return None
