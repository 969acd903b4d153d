"""No lease is ever dropped: every malformed or hostile manifest, every failure of the
agent's own steps, ends on chain as a decline with a reason (before the container starts) or
a failed result (after). An Agent runs in this process against the session's anvil, real
Docker engine and content store; the test plays the keeper. Also: a job that writes far past
its output limit leaves the agent's memory flat and nothing of it on the provider's disk."""

import hashlib
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import execute
from computenet.domain import ReplicaState
from computenet.merkle import MerkleTree
from computenet.sandbox import LOG_BYTES
from computenet.staging import output_bytes
from computenet.store import LocalStore
from verifier.commitment import LOG_LEAF

OUT_LIMIT = 1 << 20


def manifest_body(
    image,
    command,
    files=None,
    *,
    sizes=None,
    root=None,
    output_path="/out",
    max_bytes=OUT_LIMIT,
    timeout=30,
    paths=None,
):
    """A manifest as JSON data, built by hand so that it may be wrong in any one way."""
    files = files or {}
    sizes, paths = sizes or {}, paths or {}
    items = [
        {"path": paths.get(p, p), "size": sizes.get(p, len(d)), "sha256": hashlib.sha256(d).hexdigest()}
        for p, d in sorted(files.items())
    ]
    if root is None:
        root = "0x" + MerkleTree.from_files(files).root.hex() if files else "0x" + "00" * 32
    return {
        "version": 1,
        "image": image,
        "command": command,
        "env": {},
        "inputs": {"files": items, "root": root},
        "outputs": {"path": output_path, "max_bytes": max_bytes},
        "timeout_seconds": timeout,
    }


def canonical(body):
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def run_one(agent, lease):
    """Runs a lease as the agent's dispatcher would, to its end, in this thread."""
    assert agent.journal.accept(*lease.key, lease.asset, lease.lease_end)
    with agent.count_lock:
        agent.served[lease.asset].running += 1
    agent._run_guarded(lease, None)


def ending(agent, market, lease, start_block):
    """How a lease ended: ("declined", reason) or ("failed"/"succeeded", exit code); fails
    the test on anything else (a dropped lease, a journal that disagrees with the chain)."""
    entry = agent.journal.get(lease.key)
    state = ReplicaState(int(market.replica(lease.job, lease.shard, lease.replica).state))
    head = market.chain_manager.blocks.height + 1
    if entry.state == "declined":
        assert state == ReplicaState.OPEN, entry
        [event] = [e for e in market.ShardDeclined.range(start_block, head) if int(e.job) == lease.job]
        return "declined", event.reason.rstrip(b"\x00").decode()
    assert entry.state == "done", entry  # never "dropped"
    assert state == ReplicaState.SUBMITTED
    [event] = [e for e in market.ResultSubmitted.range(start_block, head) if int(e.job) == lease.job]
    assert int(event.exit_code) == entry.exit_code
    return ("failed" if entry.exit_code else "succeeded"), entry.exit_code


def left_on_disk(agent, lease):
    """What remains of a lease on the provider's disk: its folder's entries, and whether an
    output tmpfs is still mounted."""
    folder = agent.work / lease.name
    mounted = f" {folder}/" in open("/proc/mounts").read()  # this agent's folder, not another run's lease
    return sorted(os.listdir(folder)) if folder.exists() else [], mounted


def py(code):
    return ["python3", "-c", code]


# ---------------------------------------------------------------- the table

SYMLINK_OUT = "import os; os.symlink('/etc/passwd', '/out/link')"
FIFO = "import os; os.mkfifo('/out/pipe')"
NON_UTF8 = "open(b'/out/\\xff\\xfe', 'w').write('x')"
NOT_PORTABLE = "open('/out/has space', 'w').write('x')"
DEEP = "import os; p = '/out/' + '/'.join(['d' * 200] * 25); os.makedirs(p); open(p + '/f', 'w').write('x')"
HUGE = (
    "import os\nfor i in range(300):\n    try:\n        open(f'/out/{i}', 'wb').write(b'x' * (1 << 20))\n"
    "    except OSError as e:\n        print(i, e)\n        break"
)
CRASH = "raise SystemExit(3)"
INPUT = {"data/a.txt": b"hello"}

CASES = [
    # id, raw manifest (image -> bytes or None: nothing published), inputs published, expected
    ("manifest missing", lambda img: None, (), ("declined", "manifest not found")),
    ("manifest not json", lambda img: b"{not json", (), ("declined", "manifest invalid")),
    ("manifest too large", lambda img: b" " * ((1 << 20) + 1), (), ("declined", "manifest too large")),
    (
        "manifest not canonical",
        lambda img: json.dumps(manifest_body(img, py("1")), indent=1).encode(),
        (),
        ("declined", "manifest not canonical"),
    ),
    (
        "input inside an input",
        lambda img: canonical(manifest_body(img, py("1"), {"a": b"1", "b": b"2"}, paths={"b": "a/b"})),
        (b"1", b"2"),
        ("declined", "manifest invalid"),
    ),
    (
        "output over the input mount",
        lambda img: canonical(manifest_body(img, py("1"), output_path="/in")),
        (),
        ("declined", "manifest invalid"),
    ),
    (
        "output over /proc",
        lambda img: canonical(manifest_body(img, py("1"), output_path="/proc/x")),
        (),
        ("declined", "manifest invalid"),
    ),
    (
        "input not portable",
        lambda img: canonical(manifest_body(img, py("1"), {"a\\b": b"1"})),
        (b"1",),
        ("declined", "manifest invalid"),
    ),
    (
        "input missing",
        lambda img: canonical(manifest_body(img, py("1"), {"gone": b"never published"})),
        (),
        ("declined", "input not found"),
    ),
    (
        "input smaller than said",
        lambda img: canonical(manifest_body(img, py("1"), INPUT, sizes={"data/a.txt": 3})),
        (INPUT["data/a.txt"],),
        ("declined", "input size mismatch"),
    ),
    (
        "input larger than said",
        lambda img: canonical(manifest_body(img, py("1"), INPUT, sizes={"data/a.txt": 9})),
        (INPUT["data/a.txt"],),
        ("declined", "input size mismatch"),
    ),
    (
        "input root wrong",
        lambda img: canonical(manifest_body(img, py("1"), INPUT, root="0x" + "ab" * 32)),
        (INPUT["data/a.txt"],),
        ("declined", "input root mismatch"),
    ),
    (
        "image missing",
        lambda img: canonical(manifest_body("computenet/python@sha256:" + "0" * 64, py("1"))),
        (),
        ("declined", "image not found"),
    ),
    (
        "lease too short",
        lambda img: canonical(manifest_body(img, py("1"), timeout=10**9)),
        (),
        ("declined", "lease too short"),
    ),
    (
        "no such executable",
        lambda img: canonical(manifest_body(img, ["/no/such/binary"])),
        (),
        ("declined", "engine refused container"),
    ),
    ("a crash", lambda img: canonical(manifest_body(img, py(CRASH))), (), ("failed", 3)),
    ("a symlink out of /out", lambda img: canonical(manifest_body(img, py(SYMLINK_OUT))), (), ("failed", 255)),
    ("a fifo", lambda img: canonical(manifest_body(img, py(FIFO))), (), ("failed", 255)),
    ("a name not UTF-8", lambda img: canonical(manifest_body(img, py(NON_UTF8))), (), ("failed", 255)),
    ("a name not portable", lambda img: canonical(manifest_body(img, py(NOT_PORTABLE))), (), ("failed", 255)),
    ("a tree too deep to name", lambda img: canonical(manifest_body(img, py(DEEP))), (), ("failed", 255)),
    ("outputs past the limit", lambda img: canonical(manifest_body(img, py(HUGE))), (), ("failed", 255)),
    (
        "a good run",
        lambda img: canonical(manifest_body(img, py("open('/out/ok', 'w').write('ok')"))),
        (),
        ("succeeded", 0),
    ),
]


@pytest.mark.parametrize("make_raw, inputs, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_failure_is_declined_with_a_reason_or_gets_a_failed_result(
    make_raw, inputs, expected, inline_agent, cpu_asset, agents, lease_for, market, job_image
):
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset])
    start = market.chain_manager.blocks.height
    lease = lease_for(asset, make_raw(job_image), inputs)
    run_one(agent, lease)
    assert ending(agent, market, lease, start) == expected
    files, mounted = left_on_disk(agent, lease)
    assert not mounted and files == ([] if expected[0] == "declined" else [execute.INDEX])
    if expected[0] == "failed" and expected[1] == 255:  # outputs refused: only the log is committed
        index = json.loads((agent.work / lease.name / execute.INDEX).read_text())
        assert list(index["files"]) == [LOG_LEAF] and index["note"]


def test_a_crash_in_the_agent_before_the_container_starts_is_declined(
    inline_agent, cpu_asset, agents, lease_for, market, job_image, monkeypatch
):
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset])

    def broken(*args, **kwargs):  # stands for a bug in the agent's own staging code
        raise RuntimeError("a bug")

    monkeypatch.setattr(execute, "stage_inputs", broken)
    start = market.chain_manager.blocks.height
    lease = lease_for(asset, canonical(manifest_body(job_image, py("1"))))
    run_one(agent, lease)
    assert ending(agent, market, lease, start) == ("declined", "agent error")
    assert "RuntimeError: a bug" in agent.journal.get(lease.key).note


def test_a_crash_in_the_agent_after_the_container_ran_is_a_failed_result_that_says_why(
    inline_agent, cpu_asset, agents, lease_for, market, job_image, monkeypatch
):
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset])

    def broken(*args, **kwargs):  # stands for a bug in the agent's own collection code
        raise RuntimeError("a bug")

    monkeypatch.setattr(execute, "collect", broken)
    start = market.chain_manager.blocks.height
    lease = lease_for(asset, canonical(manifest_body(job_image, py("open('/out/x', 'w').write('x')"))))
    run_one(agent, lease)
    assert ending(agent, market, lease, start) == ("failed", 255)
    index = json.loads((agent.work / lease.name / execute.INDEX).read_text())
    log = agent.outputs.get("sha256", index["files"][LOG_LEAF])
    assert log.startswith(b"computenet agent: result not committed: RuntimeError: a bug")
    assert bytes(market.output_root(lease.job, 0, 0)) == MerkleTree.from_files({LOG_LEAF: log}).root
    assert left_on_disk(agent, lease) == ([execute.INDEX], False)


def test_a_decline_the_chain_refuses_falls_back_to_a_failed_result(
    inline_agent, cpu_asset, agents, lease_for, market, job_image, chain, params
):
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset])
    start = market.chain_manager.blocks.height
    lease = lease_for(asset, canonical(manifest_body("computenet/python@sha256:" + "0" * 64, py("1"))))
    chain.mine(deltatime=params.decline_window + 5)  # the decline window has closed
    run_one(agent, lease)
    assert ending(agent, market, lease, start) == ("failed", 255)
    assert agent.journal.get(lease.key).note.startswith("image not found: ")


def test_an_image_removed_after_a_lease_used_it_is_resolved_again_and_declined_when_gone(
    inline_agent, cpu_asset, agents, lease_for, market, job_image, docker_engine
):
    client = docker_engine.client
    base = client.containers.create(job_image.rsplit("@", 1)[1], ["true"])
    try:  # an image of this test's own, to remove
        copy = base.commit(repository="computenet/removed", changes=[f"LABEL test={base.id}"])
    finally:
        base.remove()
    reference = f"computenet/removed@{copy.id}"
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset])
    start = market.chain_manager.blocks.height
    first = lease_for(asset, canonical(manifest_body(reference, py("1"))))
    run_one(agent, first)
    assert ending(agent, market, first, start) == ("succeeded", 0) and agent.images == {reference: copy.id}
    client.images.remove(copy.id, force=True)
    second = lease_for(asset, canonical(manifest_body(reference, py("2"))))
    run_one(agent, second)  # the kept id is gone: resolved again, not pullable here
    assert ending(agent, market, second, start) == ("declined", "image not found") and agent.images == {}


def test_a_manifest_not_found_is_not_kept_and_a_checked_one_is(inline_agent, cpu_asset, agents, content_store):
    from eth_utils import keccak

    from computenet.staging import Decline

    agent = inline_agent(agents[0], [cpu_asset(agents[0])])
    raw = canonical(manifest_body("computenet/python@sha256:" + "2" * 64, py("'kept'")))
    with pytest.raises(Decline, match="manifest not found"):
        agent.manifest(keccak(raw))
    content_store.client.put(raw)  # uploaded after a lease was declined for it: the next one finds it
    assert agent.manifest(keccak(raw)) is agent.manifest(keccak(raw))
    assert (agent.manifest.cache_info().misses, agent.manifest.cache_info().hits) == (2, 1)


def test_a_gpu_job_with_no_free_gpu_on_its_asset_is_declined(
    inline_agent, register_asset, agents, lease_for, market, job_image
):
    asset = register_asset(agent_account=agents[0], max_leases=4)  # one H100 (not here: no GPU is touched)
    agent = inline_agent(agents[0], [asset], require_gpu_match=False)
    assert agent.gpus.acquire("another lease", (0,), 1) == (0,)  # the asset's one GPU is busy
    start = market.chain_manager.blocks.height
    lease = lease_for(asset, canonical(manifest_body(job_image, py("1"))), gpu_count=1)
    run_one(agent, lease)
    assert ending(agent, market, lease, start) == ("declined", "no free GPU")
    assert agent.gpus.held() == {0: "another lease"}  # the other lease keeps its GPU


def test_a_job_that_logs_far_past_the_cap_commits_a_capped_log(
    inline_agent, cpu_asset, agents, lease_for, market, job_image
):
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset])
    flood = "import sys\nline = b'y' * 1023 + b'\\n'\nfor _ in range(16 * 1024):\n    sys.stdout.buffer.write(line)"
    start = market.chain_manager.blocks.height
    lease = lease_for(asset, canonical(manifest_body(job_image, py(flood))))
    run_one(agent, lease)
    assert ending(agent, market, lease, start) == ("succeeded", 0)
    index = json.loads((agent.work / lease.name / execute.INDEX).read_text())
    log = agent.outputs.get("sha256", index["files"][LOG_LEAF])
    assert 0 < len(log) <= LOG_BYTES and set(log) <= {ord("y"), ord("\n")}


# ---------------------------------------------------------------- fuzz

SNIPPETS = [
    "open('/out/a', 'w').write('a')",
    "import os; os.makedirs('/out/x/y/z', exist_ok=True); open('/out/x/y/z/f', 'wb').write(os.urandom(64))",
    "import os; os.symlink('/in', '/out/up')",
    "import os; os.symlink('../../../etc/shadow', '/out/s')",
    "import os; os.mkfifo('/out/p')",
    "open(b'/out/\\xc3\\x28', 'w')",
    "open('/out/tab\\there', 'w')",
    "open('/out/big', 'wb').write(b'z' * (3 << 20))",
    "import os; [os.makedirs('/out/' + '/'.join(['q'] * n), exist_ok=True) for n in range(1, 60)]",
    "print('x' * 100000)",
    "raise SystemExit(7)",
    "import os; os.kill(os.getpid(), 9)",
    "import sys; sys.stdout.buffer.write(bytes(range(256)))",
    "open('/in/written', 'w')",
    "import os; os.link('/out/a', '/out/b')",
    "x = bytearray(512 << 20)",
]
FLAWS = ["none"] * 14 + [
    "image missing",
    "output over a mount",
    "input inside an input",
    "input not portable",
    "input missing",
    "input size wrong",
    "input root wrong",
    "command not runnable",
]


@st.composite
def hostile_jobs(draw):
    """(raw manifest bytes, inputs to publish) for a job whose command does nasty things
    (SNIPPETS, up to three) and whose manifest, valid in shape, has at most one flaw."""
    flaw = draw(st.sampled_from(FLAWS))
    code = "; ".join(draw(st.lists(st.sampled_from(SNIPPETS), min_size=1, max_size=3)))
    command = {"command not runnable": draw(st.sampled_from([["/bin/sh", "-c", "true"], ["python3", "-c"]]))}.get(
        flaw, py(code)
    )
    files = {
        name: draw(st.binary(max_size=64))
        for name in draw(st.lists(st.sampled_from(["a", "d/e.txt", "f-1"]), max_size=2, unique=True))
    }
    if flaw in ("input inside an input", "input not portable", "input missing", "input size wrong", "input root wrong"):
        files.setdefault("a", b"first input")
    paths = {"input inside an input": {"d/e.txt": "a/e.txt"}, "input not portable": {"a": "a b"}}.get(flaw, {})
    if flaw == "input inside an input":
        files.setdefault("d/e.txt", b"second input")
    published = [data for name, data in files.items() if not (flaw == "input missing" and name == "a")]
    sizes = {"a": len(files["a"]) + draw(st.sampled_from([1, -1]))} if flaw == "input size wrong" else {}
    body = manifest_body(
        "computenet/python@sha256:" + "0" * 64 if flaw == "image missing" else "IMAGE",
        command,
        files,
        sizes=sizes,
        paths=paths,
        output_path=draw(st.sampled_from(["/in", "/tmp/o", "/proc/o", "/var"]))
        if flaw == "output over a mount"
        else draw(st.sampled_from(["/out", "/results/run"])),
        max_bytes=draw(st.sampled_from([1, 4096, OUT_LIMIT])),
        timeout=draw(st.sampled_from([5, 30])),
    )
    if flaw == "input root wrong":
        body["inputs"]["root"] = "0x" + "cd" * 32
    return canonical(body), published


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(job=hostile_jobs())
def test_hostile_manifests_are_always_declined_or_answered_with_a_result(
    job, inline_agent, cpu_asset, agents, lease_for, market, job_image
):
    raw, published = job
    raw = raw.replace(b'"IMAGE"', json.dumps(job_image).encode())
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset])
    start = market.chain_manager.blocks.height
    lease = lease_for(asset, raw, published)
    run_one(agent, lease)
    kind, detail = ending(agent, market, lease, start)  # fails on a dropped lease
    assert kind in ("declined", "failed", "succeeded")
    assert left_on_disk(agent, lease)[1] is False


# ---------------------------------------------------------------- bounded resources


def _vm_hwm_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


WRITE_300_MIB = (
    "import os, sys\nwritten = 0\nfor i in range(300):\n    try:\n"
    "        with open(f'/out/part-{i}', 'wb') as f:\n            f.write(b'w' * (1 << 20))\n"
    "        written += 1 << 20\n    except OSError as error:\n        pass\n"
    "print('written', written)\nline = b'v' * 1023 + b'\\n'\n"
    "for _ in range(32 * 1024):\n    sys.stdout.buffer.write(line)"
)


def test_a_job_writing_far_past_its_limit_leaves_memory_flat_and_nothing_on_disk(
    make_agent, cpu_asset, agents, publish_job, post_job, market, keeper, registered_keeper, wait_for
):
    asset = cpu_asset(agents[0])
    proc = make_agent(agents[0], [asset]).start()
    pid = proc.processes[0].pid

    def run(code, max_bytes):
        _, mhash = publish_job(py(code), {}, max_output_bytes=max_bytes)
        job = post_job(manifest_hash=mhash, gpu_count=0, min_vram_mib=0)
        market.assign(job, 0, asset, sender=keeper)
        wait_for(lambda: int(market.replica(job, 0, 0).state) == ReplicaState.SUBMITTED, what=f"job {job}'s result")
        rep = market.replica(job, 0, 0)
        return job, proc.workdir / "leases" / f"computenet-{job}-0-0-{int(rep.lease)}"

    run("open('/out/warm', 'w').write('up')", OUT_LIMIT)  # the agent's whole path once, before measuring
    before = _vm_hwm_kib(pid)
    job, folder = run(WRITE_300_MIB, OUT_LIMIT)
    growth_mib = (_vm_hwm_kib(pid) - before) / 1024
    assert growth_mib < 32, f"the agent's peak memory grew by {growth_mib:.0f} MiB"
    submitted = [
        e for e in market.ResultSubmitted.range(0, market.chain_manager.blocks.height + 1) if int(e.job) == job
    ]
    assert int(submitted[0].exit_code) == 255  # over its limit: a failed result
    # nothing of it on the provider's disk but its index and its log
    wait_for(lambda: sorted(os.listdir(folder)) == [execute.INDEX], what="the lease folder to be cleared")
    assert str(folder) not in open("/proc/mounts").read()
    index = json.loads((folder / execute.INDEX).read_text())
    assert list(index["files"]) == [LOG_LEAF]
    store = LocalStore(proc.workdir / "outputs")
    log = store.get("sha256", index["files"][LOG_LEAF])
    assert len(log) <= LOG_BYTES and log.endswith(b"\n") and b"written " in log  # its last line survives
    written = int(log.rsplit(b"written ", 1)[1])
    assert 0 < written <= output_bytes(OUT_LIMIT)  # the tmpfs stopped it at its limit and slack
    warm_blobs = 2  # the warm-up's output and log
    assert len(os.listdir(store.dir / "sha256")) == warm_blobs + 1
