"""GPU meter check: does NVML accounting (computenet.meter) measure a real GPU job?

    PYTHONPATH=. python3 bench/gpu_meter_check.py [OUT.json] [--seconds 6]

For a GPU machine with PyTorch, CUDA and nvidia-ml-py, run as root; it needs no Docker and
no network, and from this repository only computenet/meter.py (stdlib, pynvml and torch
otherwise). It turns accounting mode on for GPU 0 (`meter.enable_accounting`), runs a
subprocess that multiplies fp16 matrices on GPU 0 for `--seconds`, waits for it, and
meters it by its PID (`meter.process_metering`, the plain-process path of the agent's
container meter). Printed, and written as JSON to OUT.json (default $OUT/gpu_meter.json,
else bench/results/gpu_meter.json):

- the GPU model and driver; whether accounting mode was on before and after, and what
  enable_accounting said;
- the subprocess: wall seconds, CPU ms (rusage), and its own report (matmuls, seconds spent
  multiplying, TFLOP/s);
- measure_pids: gpu_ms and utilisation; the raw accounting entry of the PID, and those of
  the PIDs NVML added during the run (another PID there than the child's: this script does
  not run in the host's PID namespace, which the agent must);
- the GPU's total energy consumption before and after (mJ), the delta and mean watts;
- the Metering and the GPU-seconds it claims for one GPU;
- checks: accounting on, meter "nvml-accounting", the accounted time covers the seconds
  spent multiplying and is within the wall time, utilisation above 50 %.

Exit status: 0 when every check holds, 1 when one fails, 2 when the machine lacks a GPU,
NVML or PyTorch (the JSON then says which).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from computenet import meter  # noqa: E402  (stdlib only; nothing else from the repo is imported)

GPU = 0
CHILD = r"""
import json, sys, time
import torch

seconds = float(sys.argv[1])
begun = time.time()
a = torch.randn(8192, 8192, device="cuda:0", dtype=torch.float16)
b = torch.randn(8192, 8192, device="cuda:0", dtype=torch.float16)
torch.cuda.synchronize()
start, n = time.time(), 0
while time.time() - start < seconds:
    for _ in range(10):
        c = a @ b
    torch.cuda.synchronize()
    n += 10
busy = time.time() - start
print(json.dumps({"matmuls": n, "busy_seconds": round(busy, 3), "setup_seconds": round(start - begun, 3),
                  "tflops": round(2 * 8192**3 * n / busy / 1e12, 1), "device": torch.cuda.get_device_name(0)}))
"""


def missing() -> list[str]:
    """What this machine lacks for the check (empty: nothing)."""
    lacks = []
    try:
        import pynvml
    except ImportError:
        return ["pynvml (nvidia-ml-py) is not installed", *_torch_missing()]
    try:
        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() <= GPU:
                lacks.append(f"NVML sees no GPU {GPU}")
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError as error:
        lacks.append(f"NVML unavailable: {error} (no NVIDIA GPU or driver here)")
    return lacks + _torch_missing()


def _torch_missing() -> list[str]:
    return [] if importlib.util.find_spec("torch") else ["PyTorch (torch) is not installed"]


def gpu_facts() -> dict:
    import pynvml

    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(GPU)
        name = pynvml.nvmlDeviceGetName(handle)
        return {
            "gpu_model": name.decode() if isinstance(name, bytes) else name,
            "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
            "accounting_on": pynvml.nvmlDeviceGetAccountingMode(handle) == pynvml.NVML_FEATURE_ENABLED,
        }
    finally:
        pynvml.nvmlShutdown()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def energy_mj() -> int | None:
    """The GPU's total energy consumption since the driver loaded, mJ (None: not supported)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(GPU)))
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def raw_stats(pid: int) -> dict | str:
    """NVML's accounting entry for `pid` on the GPU, every field, or why there is none."""
    import pynvml

    pynvml.nvmlInit()
    try:
        stats = pynvml.nvmlDeviceGetAccountingStats(pynvml.nvmlDeviceGetHandleByIndex(GPU), pid)
        return {
            name: getattr(stats, name)
            for name in ("gpuUtilization", "memoryUtilization", "maxMemoryUsage", "time", "startTime", "isRunning")
        }
    except pynvml.NVMLError as error:
        return str(error)
    finally:
        pynvml.nvmlShutdown()


def accounting_pids() -> list[int]:
    """The PIDs NVML holds accounting entries for on the GPU (to compare with the child's:
    they differ when this script's PID namespace is not the host's)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        return sorted(int(pid) for pid in pynvml.nvmlDeviceGetAccountingPids(pynvml.nvmlDeviceGetHandleByIndex(GPU)))
    except pynvml.NVMLError:
        return []
    finally:
        pynvml.nvmlShutdown()


def run_child(seconds: float) -> dict:
    """Runs the matmul subprocess on GPU 0 to its end: its PID, wall time, CPU time, report."""
    env = os.environ | {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": str(GPU)}  # NVML's GPU 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began_unix, began = time.time(), time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(seconds)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = child.communicate(timeout=seconds + 300)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = round((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    try:
        report = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        report = {"stdout": out[-2000:], "stderr": err[-4000:]}
    return {
        "pid": child.pid,
        "exit_code": child.returncode,
        "wall_seconds": round(wall, 3),
        "cpu_ms": cpu_ms,
        "started_unix": began_unix,
        "report": report,
    }


def measured(pid: int, since: float, tries: int = 10) -> dict:
    """measure_pids for the ended child, retried briefly: the driver may file the entry late."""
    for attempt in range(tries):
        try:
            gpu_ms, utilization = meter.measure_pids([pid], (GPU,), since=since)
        except meter.MeterUnavailable as error:
            return {"error": str(error)}
        if gpu_ms or attempt == tries - 1:
            return {"gpu_ms": gpu_ms, "utilization_pct": utilization, "attempts": attempt + 1}
        time.sleep(0.5)
    raise AssertionError("unreachable")


def checks(result: dict) -> dict[str, bool]:
    metering, child = result["metering"], result["subprocess"]
    busy = child["report"].get("busy_seconds", 0) if isinstance(child["report"], dict) else 0
    gpu_ms = result["measure_pids"].get("gpu_ms", 0)
    utilization = result["measure_pids"].get("utilization_pct") or 0
    return {
        "child exited 0": child["exit_code"] == 0,
        "accounting on": bool(result["accounting"]["after"]),
        "meter is nvml-accounting": metering["meter"] == meter.NVML_ACCOUNTING,
        "gpu_ms covers the seconds spent multiplying": gpu_ms >= busy * 1000 > 0,
        "gpu_ms within the wall time": gpu_ms <= child["wall_seconds"] * 1000,
        "utilisation above 50 %": utilization > 50,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="where the JSON goes (default $OUT/gpu_meter.json)")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long the subprocess multiplies")
    args = parser.parse_args(argv)
    default = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "bench" / "results"
    out = Path(args.out) if args.out else default / "gpu_meter.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict = {"host": platform.node(), "python": platform.python_version(), "root": os.geteuid() == 0}

    lacks = missing()
    if lacks:
        result |= {"ok": False, "error": "cannot run the GPU meter check: " + "; ".join(lacks)}
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(result["error"], file=sys.stderr)
        print(f"(written to {out})", file=sys.stderr)
        return 2

    facts = gpu_facts()
    enabled = meter.enable_accounting((GPU,))
    result |= {
        "gpu_model": facts["gpu_model"],
        "driver": facts["driver"],
        "accounting": {
            "before": facts["accounting_on"],
            "enable_accounting": enabled,
            "after": gpu_facts()["accounting_on"],
        },
    }
    pids_before = accounting_pids()
    energy_before = energy_mj()
    child = run_child(args.seconds)
    energy_after = energy_mj()
    result["subprocess"] = child
    result["measure_pids"] = measured(child["pid"], child["started_unix"])
    result["accounting_entry"] = raw_stats(child["pid"])
    new_pids = [pid for pid in accounting_pids() if pid not in pids_before]
    result["new_accounting_pids"] = {str(pid): raw_stats(pid) for pid in new_pids[-8:]}
    delta = energy_after - energy_before if energy_before is not None and energy_after is not None else None
    result["energy_mj"] = {
        "before": energy_before,
        "after": energy_after,
        "delta": delta,
        "mean_watts": round(delta / 1000 / child["wall_seconds"], 1) if delta else None,
    }
    metering = meter.process_metering(
        [child["pid"]], (GPU,), child["wall_seconds"], cpu_ms=child["cpu_ms"], since=child["started_unix"]
    )
    result["metering"] = dataclasses.asdict(metering)
    result["claim_seconds_one_gpu"] = metering.seconds(1)
    result["claim_seconds_wall_clock_rule"] = max(1, -(-round(child["wall_seconds"] * 1000) // 1000))
    result["checks"] = checks(result)
    result["ok"] = all(result["checks"].values())
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"(written to {out})")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
