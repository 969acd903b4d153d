"""A CPU-only asset's utilisation: the pure rate, and measured from a real busy container."""

import os
import shutil
import time

import pytest

from agent import cpu
from computenet import sandbox
from computenet.localnet import wait_until


def test_utilisation_is_the_containers_cpu_time_over_the_assets_cores():
    before = cpu.Sample(100.0, {"a": 1_000_000_000, "gone": 5})
    after = cpu.Sample(102.0, {"a": 2_000_000_000, "new": 1_000_000_000})
    # 1 s of "a" and 1 s of "new" (started meanwhile) in 2 s over 4 cores: 2 / 8.
    assert cpu.utilization(before, after, cores=4) == 25
    assert cpu.utilization(before, after, cores=1) == 100  # capped
    assert cpu.utilization(None, after, cores=4) == 0  # no rate from one sample
    assert cpu.utilization(after, after, cores=4) == 0  # no time between them
    assert cpu.utilization(after, cpu.Sample(103.0, {"a": 1}), cores=4) == 0  # a counter that went back
    assert cpu.utilization(before, cpu.Sample(101.0), cores=4) == 0  # nothing running
    assert cpu.asset_cores(2) == 2 and cpu.asset_cores(0) == (os.cpu_count() or 1)


def test_a_busy_container_of_the_asset_raises_its_utilisation_and_none_is_zero(docker_engine, job_image, tmp_path):
    asset = 900_000 + os.getpid() % 100_000  # no other container carries this label
    meter = cpu.Meter(docker_engine.client)
    assert meter.utilization(asset, 1, time.time()) == 0
    time.sleep(0.2)
    assert meter.utilization(asset, 1, time.time()) == 0  # nothing runs: 0, whatever the host does

    inputs, outputs = tmp_path / "in", tmp_path / "out"
    for folder in (inputs, outputs):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    spec = sandbox.RunSpec(
        name=f"computenet-cpu-test-{asset}",
        image=job_image.rsplit("@", 1)[1],
        command=["python3", "-c", "while True: pass"],
        env={},
        shard=0,
        shard_count=1,
        inputs=inputs,
        outputs=outputs,
        output_path="/out",
        timeout_seconds=60,
        labels={cpu.ASSET_LABEL: str(asset)},
    )
    container = sandbox.start(docker_engine.client, spec)
    try:
        # One core's worth (the container's limit) over the asset's one core: near 100 %.
        busy = wait_until(
            lambda: (u := meter.utilization(asset, 1, time.time())) >= 50 and u, 30, "utilisation to rise", 0.5
        )
        assert busy <= 100
        assert meter.utilization(asset + 1, 1, time.time()) == 0  # another asset's containers are not its own
    finally:
        container.remove(force=True)
    meter.utilization(asset, 1, time.time())
    time.sleep(0.2)
    assert meter.utilization(asset, 1, time.time()) == 0


@pytest.mark.parametrize("registered", [2, 8])
def test_a_busy_container_counts_against_the_registered_cores(registered):
    before, after = cpu.Sample(0.0, {"c": 0}), cpu.Sample(1.0, {"c": 1_000_000_000})
    assert cpu.utilization(before, after, cpu.asset_cores(registered)) == round(100 / registered)
