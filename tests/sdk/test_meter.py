"""Measured metering (computenet.meter): the pure rules, the NVML accounting arithmetic
against a stand-in for a GPU (this machine has none), the fallbacks NVML's absence forces,
and real containers metered through their cgroups."""

import importlib.util
import json
import math
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computenet import meter, sandbox
from computenet.meter import CGROUP_CPU, CPU_ONLY, NVML_ACCOUNTING, WALL_CLOCK, GpuTime, Metering

REPO = Path(__file__).resolve().parents[2]
CID = "c0ffee" + "0" * 58  # a container id


def _real_nvml_works():
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


needs_no_gpu = pytest.mark.skipif(_real_nvml_works(), reason="NVML works here: the fallback is not taken")


# ---------------------------------------------------------------- stand-in NVML


class FakeNVMLError(Exception):
    def __init__(self, value):
        super().__init__(f"NVML error {value}")
        self.value = value


def stand_in_nvml(stats=None, accounting=None, init_error=None):
    """A pynvml stand-in: `stats` maps (gpu, pid) to (time_ms, utilization_pct, start_usec),
    pid "*" standing for any; `accounting` maps gpu to whether its accounting mode is on
    (default on)."""
    stats, accounting = dict(stats or {}), dict(accounting or {})
    nvml = types.SimpleNamespace(
        NVML_FEATURE_ENABLED=1,
        NVML_FEATURE_DISABLED=0,
        NVML_ERROR_NO_PERMISSION=4,
        NVML_ERROR_NOT_FOUND=6,
        NVMLError=FakeNVMLError,
        calls=[],
        permitted=True,
    )

    def init():
        if init_error:
            raise FakeNVMLError(init_error)
        nvml.calls.append("init")

    def set_mode(handle, mode):
        if not nvml.permitted:
            raise FakeNVMLError(nvml.NVML_ERROR_NO_PERMISSION)
        accounting[handle] = mode == 1

    def get_stats(handle, pid):
        entry = stats.get((handle, pid), stats.get((handle, "*")))
        if entry is None:
            raise FakeNVMLError(nvml.NVML_ERROR_NOT_FOUND)
        time_ms, utilization, start = entry
        return types.SimpleNamespace(
            time=time_ms,
            gpuUtilization=utilization,
            startTime=start,
            isRunning=0,
            memoryUtilization=30,
            maxMemoryUsage=1 << 30,
        )

    def energy(handle):
        nvml.energy += 3_000_000
        return nvml.energy

    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: nvml.calls.append("shutdown")
    nvml.nvmlDeviceGetHandleByIndex = lambda index: index
    nvml.nvmlDeviceGetAccountingMode = lambda handle: 1 if accounting.get(handle, True) else 0
    nvml.nvmlDeviceSetAccountingMode = set_mode
    nvml.nvmlDeviceGetAccountingStats = get_stats
    nvml.nvmlDeviceGetAccountingPids = lambda handle: sorted(pid for gpu, pid in stats if gpu == handle and pid != "*")
    nvml.nvmlDeviceGetCount = lambda: 1
    nvml.nvmlDeviceGetName = lambda handle: "Stand-in GPU"
    nvml.nvmlSystemGetDriverVersion = lambda: "0.0"
    nvml.energy = 10**9
    nvml.nvmlDeviceGetTotalEnergyConsumption = energy
    return nvml


@pytest.fixture
def use_nvml(monkeypatch):
    """Installs a stand-in pynvml (stand_in_nvml's arguments) for the test."""

    def install(**kw):
        nvml = stand_in_nvml(**kw)
        monkeypatch.setitem(sys.modules, "pynvml", nvml)
        return nvml

    return install


# ---------------------------------------------------------------- pure parts


def test_cpu_stat_gives_usage_usec():
    assert meter.parse_cpu_stat("usage_usec 1534021\nuser_usec 1500000\nsystem_usec 34021\n") == 1534021
    assert meter.parse_cpu_stat("nr_periods 0\nnr_throttled 0\nthrottled_time 0\n") is None  # a v1 cpu.stat


def test_cpuacct_usage_is_nanoseconds():
    assert meter.parse_cpuacct_usage("1534021999\n") == 1534021
    assert meter.parse_cpuacct_usage("") is None


def test_procs_and_proc_cgroup_are_parsed():
    assert meter.parse_procs("12\n345\n") == {12, 345}
    v1 = "3:cpu,cpuacct:/docker/abc\n2:memory:/docker/abc\n0::/system.slice/x\n"
    assert meter.parse_proc_cgroup(v1) == {"cpu,cpuacct": "/docker/abc", "memory": "/docker/abc", "": "/system.slice/x"}


def test_candidates_cover_the_systemd_and_cgroupfs_layouts():
    root = Path("/sys/fs/cgroup")
    assert meter.cgroup_candidates(root, CID, unified=True) == [
        root / f"system.slice/docker-{CID}.scope",
        root / f"docker/{CID}",
    ]
    hybrid = meter.cgroup_candidates(root, CID, unified=False)
    assert root / f"unified/docker/{CID}" in hybrid and root / f"cpuacct/system.slice/docker-{CID}.scope" in hybrid
    assert hybrid.index(root / f"unified/docker/{CID}") < hybrid.index(root / f"cpuacct/docker/{CID}")  # v2 first


def test_candidates_add_the_init_process_cgroup_but_never_the_root():
    root = Path("/sys/fs/cgroup")
    paths = {"": "/kubepods/pod1/abc", "cpu,cpuacct": "/kubepods/pod1/abc", "memory": "/m"}
    found = meter.cgroup_candidates(root, CID, unified=False, proc_paths=paths)
    assert root / "unified/kubepods/pod1/abc" in found and root / "cpu,cpuacct/kubepods/pod1/abc" in found
    assert root / "m" not in found and root / "memory/m" not in found
    assert meter.cgroup_candidates(root, CID, unified=True, proc_paths={"": "/"}) == meter.cgroup_candidates(
        root, CID, unified=True
    )


def test_engine_stamps():
    assert meter.engine_seconds("1970-01-01T00:00:10.5Z") == 10.5
    assert meter.engine_seconds("0001-01-01T00:00:00Z") is None and meter.engine_seconds("") is None


def test_accounting_entries_sum_and_weight_utilisation_by_time():
    assert meter.sum_accounting([(3000, 90), (1000, 10)]) == GpuTime(4000, 70)
    assert meter.sum_accounting([]) == GpuTime(0, None)
    assert meter.sum_accounting([(0, 50)]) == GpuTime(0, None)


def _m(meter_name, gpu_ms=0, cpu_ms=0, wall_ms=0):
    return Metering(meter_name, gpu_ms, cpu_ms, wall_ms, None, "")


def test_gpu_work_claims_accounted_gpu_time_rounded_up():
    assert _m(NVML_ACCOUNTING, gpu_ms=6001, cpu_ms=9000, wall_ms=7000).seconds(1) == 7
    assert _m(NVML_ACCOUNTING, gpu_ms=6000, wall_ms=7000).seconds(1) == 6


def test_gpu_claim_is_capped_at_wall_time_times_gpus():
    assert _m(NVML_ACCOUNTING, gpu_ms=9000, wall_ms=4000).seconds(2) == 8  # overlapping processes


def test_gpu_work_without_accounting_claims_wall_time_times_gpus():
    assert _m(CGROUP_CPU, cpu_ms=500, wall_ms=2500).seconds(2) == 5
    assert _m(WALL_CLOCK, wall_ms=2500).seconds(1) == 3


def test_cpu_work_claims_cpu_time_all_cores_summed():
    assert _m(CGROUP_CPU, cpu_ms=3500, wall_ms=2000).seconds(0) == 4
    assert _m(WALL_CLOCK, wall_ms=2500).seconds(0) == 3


def test_a_claim_is_never_below_one_second():
    assert _m(NVML_ACCOUNTING, gpu_ms=0, wall_ms=5000).seconds(1) == 1
    assert _m(CGROUP_CPU, cpu_ms=0, wall_ms=0).seconds(0) == 1


@given(
    st.sampled_from(meter.METERS),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 8),
)
def test_claims_are_whole_positive_seconds_no_more_than_the_gpus_were_held(name, gpu_ms, cpu_ms, wall_ms, gpus):
    claim = _m(name, gpu_ms, cpu_ms, wall_ms).seconds(gpus)
    assert claim >= 1
    if gpus:
        assert claim <= max(1, math.ceil(wall_ms * gpus / 1000))


def test_choose_prefers_accounting_for_gpu_work():
    chosen = meter.choose((0,), 7.2, GpuTime(6100, 93), "", 800_001, "")
    assert chosen == Metering(NVML_ACCOUNTING, 6100, 801, 7200, 93, "")


def test_choose_falls_back_to_cpu_then_wall_clock_naming_why():
    assert meter.choose((0,), 2, None, "NVML unavailable: x", 5000, "") == Metering(
        CGROUP_CPU, 0, 5, 2000, None, "NVML unavailable: x"
    )
    walled = meter.choose((0,), 2, None, "NVML unavailable: x", None, "no cgroup found")
    assert walled.meter == WALL_CLOCK and walled.reason == "NVML unavailable: x; no cgroup found"


def test_cpu_only_work_never_uses_nvml_and_says_so():
    chosen = meter.choose((), 2, GpuTime(100, 5), "", 1_500_000, "")
    assert chosen.meter == CGROUP_CPU and chosen.reason == CPU_ONLY and chosen.gpu_ms == 0


# ---------------------------------------------------------------- NVML, with a stand-in for a GPU


def test_accounting_sums_pids_with_a_stand_in_nvml(use_nvml):
    nvml = use_nvml(stats={(0, 10): (4000, 90, 0), (1, 10): (4000, 80, 0), (0, 11): (2000, 40, 0)})
    assert meter.measure_pids([10, 11, 12], (0, 1)) == GpuTime(10000, 76)  # pid 12 has no stats: skipped
    assert nvml.calls == ["init", "shutdown"]


def test_accounting_skips_an_earlier_process_with_the_same_pid_with_a_stand_in_nvml(use_nvml):
    use_nvml(stats={(0, 10): (4000, 90, 100 * 10**6), (0, 11): (2000, 40, 1000 * 10**6)})
    assert meter.measure_pids([10, 11], (0,), since=1000.5) == GpuTime(2000, 40)


def test_accounting_mode_off_is_named_with_a_stand_in_nvml(use_nvml):
    use_nvml(stats={(0, 10): (4000, 90, 0)}, accounting={1: False})
    with pytest.raises(meter.MeterUnavailable, match="accounting mode is off on GPU 1"):
        meter.measure_pids([10], (0, 1))
    chosen = meter.process_metering([10], (0, 1), 5, cpu_ms=1200)
    assert chosen.meter == CGROUP_CPU and "accounting mode is off on GPU 1" in chosen.reason


def test_pids_without_gpu_use_are_metered_as_zero_gpu_time_with_a_stand_in_nvml(use_nvml):
    use_nvml()
    chosen = meter.process_metering([10], (0,), 5, cpu_ms=1200)
    assert chosen.meter == NVML_ACCOUNTING and chosen.gpu_ms == 0 and chosen.seconds(1) == 1


def test_enable_accounting_reports_each_gpu_with_a_stand_in_nvml(use_nvml):
    nvml = use_nvml(accounting={0: True, 1: False})
    assert meter.enable_accounting((0, 1)) == "GPU 0: accounting already on; GPU 1: accounting turned on"
    assert nvml.nvmlDeviceGetAccountingMode(1) == 1
    nvml = use_nvml(accounting={0: False})
    nvml.permitted = False
    assert "needs root" in meter.enable_accounting((0,))
    assert meter.enable_accounting(()) == "no GPUs: nothing to enable"


def test_an_nvml_that_fails_to_start_is_named_with_a_stand_in_nvml(use_nvml):
    use_nvml(init_error="Driver Not Loaded")
    assert meter.enable_accounting((0,)) == "NVML unavailable: NVML error Driver Not Loaded"
    chosen = meter.process_metering([10], (0,), 3, cpu_ms=2100)
    assert chosen == Metering(CGROUP_CPU, 0, 2100, 3000, None, "NVML unavailable: NVML error Driver Not Loaded")


@needs_no_gpu
def test_without_nvml_the_cpu_fallback_is_named():
    chosen = meter.process_metering([1], (0,), 2.5, cpu_ms=1200)
    assert chosen.meter == CGROUP_CPU and chosen.reason.startswith("NVML unavailable: ")
    assert chosen.seconds(0) == 2 and chosen.seconds(1) == 3  # GPU work falls back to wall time × GPUs
    assert meter.enable_accounting((0,)).startswith("NVML unavailable: ")


@needs_no_gpu
def test_without_nvml_or_cpu_time_the_wall_clock_fallback_names_both():
    chosen = meter.process_metering([1], (0,), 2.5)
    assert chosen.meter == WALL_CLOCK and chosen.reason.startswith("NVML unavailable: ")
    assert chosen.reason.endswith("the CPU time was not given") and chosen.seconds(1) == 3


# ---------------------------------------------------------------- ContainerMeter on a made-up cgroup tree


class FakeContainer:
    def __init__(self, pid=4242, started="2026-01-01T00:00:00Z"):
        self.id = CID
        self.attrs = {"State": {"Pid": pid, "StartedAt": started}}
        self.reloads = 0

    def reload(self):
        self.reloads += 1


def _cgroup(folder, usage_usec=None, cpuacct_ns=None, procs=()):
    folder.mkdir(parents=True, exist_ok=True)
    if usage_usec is not None:
        (folder / "cpu.stat").write_text(f"usage_usec {usage_usec}\nuser_usec 0\nsystem_usec 0\n")
    if cpuacct_ns is not None:
        (folder / "cpu.stat").write_text("nr_periods 0\nnr_throttled 0\nthrottled_time 0\n")
        (folder / "cpuacct.usage").write_text(f"{cpuacct_ns}\n")
    (folder / "cgroup.procs").write_text("".join(f"{p}\n" for p in procs))
    return folder


def test_container_meter_reads_a_systemd_v2_cgroup_with_a_stand_in_nvml(tmp_path, use_nvml):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    scope = _cgroup(tmp_path / f"system.slice/docker-{CID}.scope", usage_usec=400_000, procs=(4242, 4300))
    start = meter.engine_seconds("2026-01-01T00:00:00Z") * 10**6
    use_nvml(stats={(0, 4242): (100, 0, start), (0, 4300): (5900, 95, start + 10**6), (0, 4400): (7000, 99, start)})
    m = meter.ContainerMeter(FakeContainer(), (0,), tmp_path)
    m.sample()
    _cgroup(scope, usage_usec=900_000, procs=(4242, 4400))  # 4300 has ended, 4400 started
    m.sample()
    shutil.rmtree(scope)  # the container ended: its cgroup is gone
    result = m.finish(8.0)
    assert result == Metering(NVML_ACCOUNTING, 13000, 900, 8000, 96, "")
    assert result.seconds(1) == 8  # 13 s of contexts in 8 s on one GPU: capped


def test_container_meter_reads_a_cgroupfs_v1_cgroup(tmp_path):
    _cgroup(tmp_path / f"cpuacct/docker/{CID}", cpuacct_ns=1_600_000_000, procs=(7,))
    m = meter.ContainerMeter(FakeContainer(), (), tmp_path)
    m.sample()
    assert m.pids == {7, 4242} and m.cgroup == tmp_path / f"cpuacct/docker/{CID}"
    assert m.finish(2.0) == Metering(CGROUP_CPU, 0, 1600, 2000, None, CPU_ONLY)


def test_container_meter_finds_the_cgroup_through_the_init_process(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242/cgroup").write_text("0::/kubepods/pod1/ctr\n")
    monkeypatch.setattr(meter, "PROC", proc)
    root = tmp_path / "cgroup"
    (root).mkdir()
    (root / "cgroup.controllers").write_text("cpu\n")
    _cgroup(root / "kubepods/pod1/ctr", usage_usec=2_000_000, procs=(4242, 4243))
    m = meter.ContainerMeter(FakeContainer(), (), root)
    m.sample()
    assert m.finish(3.0).cpu_ms == 2000 and m.pids == {4242, 4243}


def test_container_meter_without_any_cgroup_falls_back_to_wall_clock_naming_why(tmp_path, use_nvml):
    use_nvml(init_error="Driver Not Loaded")
    m = meter.ContainerMeter(FakeContainer(), (0,), tmp_path)
    m.sample()
    result = m.finish(2.5)
    assert result.meter == WALL_CLOCK and result.reason.startswith("NVML unavailable")
    assert f"no cgroup with CPU usage found for container {CID[:12]}" in result.reason
    never = meter.ContainerMeter(FakeContainer(), (), tmp_path).finish(1.0)
    assert never.reason == f"{CPU_ONLY}; the container's cgroup was never sampled"


# ---------------------------------------------------------------- real containers


def _spec(tmp_path, job_image, name, code):
    inputs, outputs = tmp_path / f"{name}-in", tmp_path / f"{name}-out"
    inputs.mkdir()
    outputs.mkdir()
    return sandbox.RunSpec(
        name=f"computenet-meter-{name}-{tmp_path.name}",
        image=job_image.rsplit("@", 1)[1],
        command=["python3", "-c", code],
        env={},
        shard=0,
        shard_count=1,
        inputs=inputs,
        outputs=outputs,
        output_path="/out",
        timeout_seconds=30,
    )


def _metered(client, spec, gpu_indices):
    container = sandbox.start(client, spec)
    try:
        container_meter = meter.ContainerMeter(container, gpu_indices)
        result = sandbox.wait(container, spec.timeout_seconds, on_poll=container_meter.sample, poll=0.2)
        return result, container_meter.finish(result.seconds), container_meter
    finally:
        container.remove(force=True)


BUSY = "import time\nwhile time.process_time() < 1.5: pass"  # 1.5 s of CPU however busy the host
SLEEPY = "import time; time.sleep(2)"


@needs_no_gpu
def test_without_nvml_a_busy_container_is_metered_by_its_cgroup_cpu(docker_engine, job_image, tmp_path):
    result, metering, container_meter = _metered(docker_engine.client, _spec(tmp_path, job_image, "busy", BUSY), (0,))
    assert result.exit_code == 0, result.logs
    assert metering.meter == CGROUP_CPU, metering.reason
    assert metering.reason.startswith("NVML unavailable: ")
    assert metering.cpu_ms >= 1000 and container_meter.samples >= 5 and container_meter.pids
    assert metering.seconds(0) == math.ceil(metering.cpu_ms / 1000) >= 1


def test_a_sleeping_cpu_only_container_is_metered_by_its_cgroup_cpu(docker_engine, job_image, tmp_path):
    result, metering, _ = _metered(docker_engine.client, _spec(tmp_path, job_image, "sleepy", SLEEPY), ())
    assert result.exit_code == 0, result.logs
    assert metering.meter == CGROUP_CPU and metering.reason == CPU_ONLY
    # A two-second sleep: little CPU, and wall time the meter sees from its first sample on (a
    # loaded machine starts sampling a little after the container started).
    assert metering.cpu_ms <= 300 and metering.wall_ms >= 1500 and metering.seconds(0) == 1


# ---------------------------------------------------------------- the module stands alone


def test_the_meter_imports_nothing_heavy():
    code = (
        "import sys, computenet.meter\n"
        "heavy = {'ape', 'web3', 'eth_utils', 'pydantic', 'docker', 'requests', 'pynvml', 'agent', 'verifier'}\n"
        "print(sorted(heavy & {name.split('.')[0] for name in sys.modules}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------- bench/gpu_meter_check.py


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_meter_check", REPO / "bench" / "gpu_meter_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_no_gpu
def test_the_gpu_check_says_what_this_machine_lacks(tmp_path):
    out = tmp_path / "gpu_meter.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_meter_check.py"), str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("cannot run the GPU meter check: NVML unavailable: ")
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["error"] in done.stderr


def test_the_gpu_check_meters_its_subprocess_with_a_stand_in_nvml_and_no_torch(tmp_path, use_nvml, monkeypatch):
    check = _gpu_check()
    use_nvml(stats={(0, "*"): (2500, 97, int(time.time() * 1e6))}, accounting={0: False})  # started now
    monkeypatch.setattr(check, "missing", lambda: [])
    monkeypatch.setattr(check, "CHILD", "import json, time; time.sleep(0.3); print(json.dumps({'busy_seconds': 2.0}))")
    monkeypatch.setenv("OUT", str(tmp_path))
    assert check.main(["--seconds", "0.1"]) == 1  # the stand-in's 2.5 s exceed the subprocess's wall time
    report = json.loads((tmp_path / "gpu_meter.json").read_text())
    assert report["accounting"] == {"before": False, "enable_accounting": "GPU 0: accounting turned on", "after": True}
    assert report["measure_pids"] == {"gpu_ms": 2500, "utilization_pct": 97, "attempts": 1}
    assert report["metering"]["meter"] == NVML_ACCOUNTING and report["metering"]["gpu_ms"] == 2500
    assert report["energy_mj"]["delta"] == 3_000_000 and report["accounting_entry"]["time"] == 2500
    assert report["subprocess"]["exit_code"] == 0 and report["subprocess"]["wall_seconds"] >= 0.3
    assert report["claim_seconds_one_gpu"] == 1  # capped at the wall time
    assert report["new_accounting_pids"] == {}
    failed = [name for name, held in report["checks"].items() if not held]
    assert failed == ["gpu_ms within the wall time"]
