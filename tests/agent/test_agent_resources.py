"""A container gets exactly what its lease holds: the job's CPU cores, memory and disk, read
from inside a real container (cgroup v2, or v1), and the disk limit enforced by killing a
writer; a lease asking more than the machine has is declined. An Agent runs in this process
against the session's anvil, real Docker engine and content store; the test plays the keeper."""

import json

import pytest
from test_agent_failures import canonical, ending, manifest_body, py, run_one

from agent import execute, plan
from computenet import sandbox
from computenet.domain import Requirements

LIMITS_FROM_INSIDE = r"""
import json, os
def read(path):
    try:
        return open(path).read().strip()
    except OSError:
        return None
facts = {
    "cpu.max": read("/sys/fs/cgroup/cpu.max"),
    "memory.max": read("/sys/fs/cgroup/memory.max"),
    "memory.swap.max": read("/sys/fs/cgroup/memory.swap.max"),
    "cfs_quota": read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or read("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"),
    "cfs_period": read("/sys/fs/cgroup/cpu/cpu.cfs_period_us") or read("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us"),
    "v1_memory": read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
}
st = os.statvfs("/tmp")
facts["tmp_bytes"] = st.f_blocks * st.f_frsize
print(json.dumps(facts))
"""


def cpu_and_memory(facts):
    """(CPUs, memory bytes) as the container's cgroup states them."""
    if facts["cpu.max"] is not None:  # cgroup v2
        quota, period = facts["cpu.max"].split()
        return int(quota) / int(period), int(facts["memory.max"])
    return int(facts["cfs_quota"]) / int(facts["cfs_period"]), int(facts["v1_memory"])


def test_a_container_gets_the_cpu_memory_and_tmp_its_lease_holds(docker_engine, job_image, tmp_path):
    req = Requirements(0, 0, 1, 1, 1, cpu_cores=2, memory_mib=96, disk_mib=64)
    limits = sandbox.Limits.for_lease(req, sandbox.Limits())
    assert (limits.cpus, limits.memory_bytes, limits.disk_bytes) == (2.0, 96 << 20, 64 << 20)
    assert limits.tmp_bytes == 16 << 20 and limits.output_disk_bytes == 48 << 20
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir(), outputs.mkdir()
    spec = sandbox.RunSpec(
        name=f"computenet-limits-{tmp_path.name}",
        image=job_image.rsplit("@", 1)[1],
        command=py(LIMITS_FROM_INSIDE),
        env={},
        shard=0,
        shard_count=1,
        inputs=inputs,
        outputs=outputs,
        output_path="/out",
        timeout_seconds=30,
        limits=limits,
    )
    result = sandbox.run(docker_engine.client, spec)
    assert result.exit_code == 0, result.logs
    facts = json.loads(result.logs.decode().strip().splitlines()[-1])
    cpus, memory = cpu_and_memory(facts)
    assert cpus == 2.0
    assert memory == 96 << 20
    if facts["memory.swap.max"] is not None:
        assert facts["memory.swap.max"] == "0"  # memswap_limit == mem_limit: no swap beyond it
    assert facts["tmp_bytes"] == 16 << 20


def test_the_agent_gives_a_container_its_lease_not_its_own_settings(inline_agent, cpu_asset, agents):
    agent = inline_agent(agents[0], [cpu_asset(agents[0])], memory_mib=256, cpus=1.0)
    req = Requirements(0, 0, 1, 1, 1, cpu_cores=2, memory_mib=700, disk_mib=2_048)
    limits = agent.settings.limits(req)
    assert (limits.cpus, limits.memory_bytes, limits.disk_bytes, limits.tmp_bytes) == (
        2.0,
        700 << 20,
        2 << 30,
        64 << 20,
    )
    assert agent.settings.limits().memory_bytes == 256 << 20  # the fallback, for a job that names none


WRITER = (
    "import time\nfor i in range(200):\n    open(f'/out/{i}', 'wb').write(b'x' * (1 << 20))\n    time.sleep(0.05)\n"
)


def test_a_job_writing_past_its_disk_limit_is_killed_and_fails_saying_so(
    inline_agent, cpu_asset, agents, lease_for, market, job_image
):
    """disk_mib 8: /tmp gets 2 MiB, the outputs 6 MiB; the writer would put 200 MiB there (its
    manifest allows 300 MiB). The agent measures, kills it, and submits a failed result."""
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset])
    start = market.chain_manager.blocks.height
    lease = lease_for(asset, canonical(manifest_body(job_image, py(WRITER), max_bytes=300 << 20)), disk_mib=8)
    run_one(agent, lease)
    assert ending(agent, market, lease, start) == ("failed", sandbox.KILLED)
    note = agent.journal.get(lease.key).note
    assert note.startswith(execute.DISK_LIMIT), note
    index = json.loads((agent.work / lease.name / execute.INDEX).read_text())
    assert index["note"].startswith("disk limit: the job wrote ")
    written = int(index["note"].split("wrote ")[1].split()[0])
    assert 6 << 20 < written < 40 << 20  # caught within a few polls of crossing it


def test_a_job_inside_its_disk_limit_succeeds(inline_agent, cpu_asset, agents, lease_for, market, job_image):
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset])
    start = market.chain_manager.blocks.height
    code = "open('/out/a', 'wb').write(b'x' * (2 << 20)); open('/tmp/b', 'wb').write(b'y' * (1 << 20))"
    lease = lease_for(asset, canonical(manifest_body(job_image, py(code), max_bytes=8 << 20)), disk_mib=8)
    run_one(agent, lease)
    assert ending(agent, market, lease, start) == ("succeeded", 0)


@pytest.mark.parametrize(
    "need, reason",
    [
        ("cpu_cores", "not enough cpu cores"),
        ("memory_mib", "not enough memory"),
        ("disk_mib", "not enough disk"),
    ],
)
def test_a_lease_asking_more_than_the_machine_has_is_declined(
    inline_agent, cpu_asset, agents, lease_for, market, job_image, need, reason
):
    """The asset's spec (as registered) allows it, this machine does not: declined with a reason,
    never dropped."""
    big = dict(cpu_cores=1_000, memory_mib=1 << 30, disk_mib=(1 << 32) - 1)
    asset = cpu_asset(agents[0], **big)
    agent = inline_agent(agents[0], [asset])
    start = market.chain_manager.blocks.height
    lease = lease_for(asset, canonical(manifest_body(job_image, py("1"))), **{need: big[need]})
    run_one(agent, lease)
    assert ending(agent, market, lease, start) == ("declined", reason)


def test_check_resources_and_spec_problems():
    machine = plan.Machine(cpu_cores=4, memory_mib=8_192, disk_mib=100_000)
    plan.check_resources(Requirements(0, 0, 1, 1, 1, cpu_cores=4, memory_mib=8_192, disk_mib=100_000), machine)
    with pytest.raises(plan.Decline, match="not enough cpu cores") as refused:
        plan.check_resources(Requirements(0, 0, 1, 1, 1, cpu_cores=5), machine)
    assert refused.value.detail == "the job asks 5 CPU cores for each lease; this machine has 4"
    from computenet.domain import Spec

    assert plan.spec_problems(Spec(0, 0, 0, 4, 0, 1, 0, memory_mib=8_192), machine) == []
    assert len(plan.spec_problems(Spec(0, 0, 0, 8, 0, 1, 0, memory_mib=9_000), machine)) == 2


def test_an_agent_warns_when_a_spec_declares_more_than_the_machine(inline_agent, cpu_asset, agents, caplog):
    asset = cpu_asset(agents[0], cpu_cores=1_000, memory_mib=1 << 30)
    with caplog.at_level("WARNING", logger="agent"):
        inline_agent(agents[0], [asset])
    text = " ".join(r.getMessage() for r in caplog.records)
    assert f"asset {asset} declares 1000 CPU cores" in text and "MiB of memory" in text
