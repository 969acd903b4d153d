"""GPU telemetry through NVML (`nvidia-ml-py`), with a CPU fallback that names itself.

`probe()` reads every GPU's model, memory, utilisation, temperature and power, and
`Telemetry.only` narrows a sample to an asset's or a lease's devices. Where NVML
cannot load (no driver, no GPU), the fallback reports the CPU count and load instead and
says why, so the agent serves CPU-only assets and tells its operator.

`Allocator` pins GPUs to leases by index: an asset of N GPUs uses the machine's GPUs 0..N-1
(as `spec_mismatch` checks them), and no GPU is handed to two leases at once, whichever
assets they belong to.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from computenet.domain import Spec

# GPU model ids as registered on chain (Spec.gpu_model); 0 is CPU-only.
GPU_MODELS = {1: "H100", 2: "H200", 3: "A100", 4: "L40S", 5: "L4", 6: "A10", 7: "RTX 4090"}
# NVML reports a little less than the marketed memory (80 GB cards show about 81,559 MiB).
VRAM_TOLERANCE = 0.97


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_total_mib: int
    memory_used_mib: int
    utilization_pct: int
    temperature_c: int
    power_w: float


@dataclass(frozen=True)
class Telemetry:
    """One sample: `source` is "nvml" or "cpu-fallback"; `reason` says why there is no NVML."""

    source: str
    gpus: tuple[Gpu, ...]
    cpu_count: int
    cpu_load_pct: int
    reason: str = ""

    @property
    def utilization_pct(self) -> int:
        if not self.gpus:
            return self.cpu_load_pct
        return round(sum(g.utilization_pct for g in self.gpus) / len(self.gpus))

    @property
    def free_vram_mib(self) -> int:
        return sum(g.memory_total_mib - g.memory_used_mib for g in self.gpus)

    def only(self, indices: Sequence[int]) -> Telemetry:
        """This sample's view of the devices `indices` alone (an asset's GPUs, a lease's pinned
        ones), so one lease's or asset's figures never include another's GPUs (pure). No
        indices (CPU work): the sample unchanged."""
        if not indices:
            return self
        chosen = set(indices)
        return Telemetry(
            self.source,
            tuple(g for g in self.gpus if g.index in chosen),
            self.cpu_count,
            self.cpu_load_pct,
            self.reason,
        )


def _cpu(reason: str) -> Telemetry:
    count = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return Telemetry("cpu-fallback", (), count, min(100, round(100 * load / count)), reason)


def probe() -> Telemetry:
    """A telemetry sample from NVML, or the CPU fallback with the reason NVML failed."""
    try:
        import pynvml
    except ImportError as error:
        return _cpu(f"nvidia-ml-py not importable: {error}")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        return _cpu(f"NVML unavailable: {error}")
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
            try:
                power = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000
            except pynvml.NVMLError:  # not every board reports power
                power = 0.0
            gpus.append(
                Gpu(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else name,
                    memory_total_mib=memory.total >> 20,
                    memory_used_mib=memory.used >> 20,
                    utilization_pct=int(rates.gpu),
                    temperature_c=int(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
                    power_w=round(power, 1),
                )
            )
    finally:
        pynvml.nvmlShutdown()
    return Telemetry("nvml", tuple(gpus), os.cpu_count() or 1, 0)


def spec_mismatch(spec: Spec, sample: Telemetry) -> str | None:
    """What differs between a registered spec and this machine, or None (pure)."""
    if spec.gpu_count == 0:
        return None  # CPU-only: any machine serves it
    if not sample.gpus:
        return f"the asset is registered with {spec.gpu_count} GPU(s) but this machine has none ({sample.reason})"
    if len(sample.gpus) < spec.gpu_count:
        return f"the asset is registered with {spec.gpu_count} GPUs but NVML sees {len(sample.gpus)}"
    small = [g for g in sample.gpus[: spec.gpu_count] if g.memory_total_mib < spec.vram_mib * VRAM_TOLERANCE]
    if small:
        return (
            f"the asset is registered with {spec.vram_mib} MiB per GPU but GPU {small[0].index} "
            f"({small[0].name}) has {small[0].memory_total_mib} MiB"
        )
    model = GPU_MODELS.get(spec.gpu_model)
    if model is not None:
        wrong = [g for g in sample.gpus[: spec.gpu_count] if model.lower() not in g.name.lower()]
        if wrong:
            return f"the asset is registered as {model} but GPU {wrong[0].index} is {wrong[0].name}"
    return None


def asset_gpus(spec: Spec) -> tuple[int, ...]:
    """The device indices an asset's leases draw from (pure)."""
    return tuple(range(spec.gpu_count))


class Allocator:
    """GPU device indices held per lease; thread-safe (the shard threads share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: dict[int, str] = {}  # device index -> the lease holding it

    def acquire(self, lease: str, pool: Sequence[int], count: int) -> tuple[int, ...] | None:
        """`count` free indices of `pool` for `lease` (the ones it already holds, if any);
        None when too few are free. Zero GPUs is always granted: ()."""
        with self._lock:
            mine = tuple(i for i, holder in sorted(self._holder.items()) if holder == lease)
            if mine:
                return mine
            free = [i for i in pool if i not in self._holder]
            if len(free) < count:
                return None
            for index in free[:count]:
                self._holder[index] = lease
            return tuple(free[:count])

    def release(self, lease: str) -> tuple[int, ...]:
        """Frees what `lease` holds; returns those indices."""
        with self._lock:
            mine = tuple(i for i, holder in sorted(self._holder.items()) if holder == lease)
            for index in mine:
                del self._holder[index]
            return mine

    def held(self) -> dict[int, str]:
        with self._lock:
            return dict(self._holder)
