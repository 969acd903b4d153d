"""The agent's parts: the container's confinement (real Docker), telemetry, the content store,
the journal, and the pure decisions."""

import json
import shutil
import threading
import urllib.request

import ape
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import gpu, plan
from agent.journal import Journal
from computenet import sandbox
from computenet.domain import ReplicaState, Spec
from computenet.manifest import build_manifest
from computenet.store import BadName, BlobNotFound, LocalStore, StoreError, digest


def _spec(tmp_path, job_image, code, **kw):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    for folder in (inputs, outputs):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    (inputs / "x.txt").write_text("input")
    fields = dict(
        name=f"computenet-test-{tmp_path.name}",
        image=job_image.rsplit("@", 1)[1],
        command=["python3", "-c", code],
        env={},
        shard=2,
        shard_count=4,
        inputs=inputs,
        outputs=outputs,
        output_path="/out",
        timeout_seconds=30,
    )
    fields.update(kw)
    return sandbox.RunSpec(**fields)


PROBE = """
import errno, json, os, socket
facts = {"interfaces": sorted(os.listdir("/sys/class/net")), "uid": os.getuid(),
         "shard": [os.environ["COMPUTENET_SHARD_INDEX"], os.environ["COMPUTENET_SHARD_COUNT"]],
         "input": open("/in/x.txt").read()}
facts["localhost"] = socket.gethostbyname("localhost")  # its own loopback, by name
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("10.1.2.3", 80))  # any address: with only loopback there is no route
    facts["connect"] = "connected"
except OSError as e:
    facts["connect"] = errno.errorcode.get(e.errno, str(e))
for path in ("/etc/owned", "/in/owned"):
    try:
        open(path, "w")
        facts[path] = "written"
    except OSError as e:
        facts[path] = errno.errorcode.get(e.errno, str(e))
open("/out/facts.json", "w").write(json.dumps(facts))
"""


def test_a_container_has_no_network_a_read_only_root_and_read_only_inputs(docker_engine, job_image, tmp_path):
    result = sandbox.run(docker_engine.client, _spec(tmp_path, job_image, PROBE))
    assert result.exit_code == 0, result.logs
    facts = json.loads((tmp_path / "out" / "facts.json").read_text())
    assert facts["interfaces"] == ["lo"] and facts["localhost"] == "127.0.0.1"
    assert facts["connect"] == "ENETUNREACH"
    assert facts["/etc/owned"] == "EROFS" and facts["/in/owned"] == "EROFS"
    assert facts["uid"] == 65534 and facts["shard"] == ["2", "4"] and facts["input"] == "input"


def test_the_wall_clock_limit_kills_the_container(docker_engine, job_image, tmp_path):
    result = sandbox.run(
        docker_engine.client, _spec(tmp_path, job_image, "import time; time.sleep(60)", timeout_seconds=2)
    )
    assert result.timed_out and result.exit_code == sandbox.KILLED and not result.oom_killed


def test_container_options_confine_and_pass_gpus_only_for_gpu_assets(tmp_path):
    spec = _spec(tmp_path, "x@sha256:" + "1" * 64, "pass")
    options = sandbox.container_options(spec)
    assert options["network_mode"] == "none" and options["read_only"] and options["cap_drop"] == ["ALL"]
    assert options["network_disabled"]  # the engine sets up no network for it (no libnetwork sandbox)
    assert options["volumes"][str(sandbox.hosts_file())] == {"bind": "/etc/hosts", "mode": "ro"}
    assert options["user"] == sandbox.NOBODY and options["mem_limit"] == options["memswap_limit"]
    assert options["volumes"][str(spec.inputs)]["mode"] == "ro" and "device_requests" not in options
    gpu_options = sandbox.container_options(_spec(tmp_path, "x@sha256:" + "1" * 64, "pass", gpu_count=2))
    assert gpu_options["device_requests"][0]["Count"] == 2


def test_a_forged_receipt_is_rejected_on_chain(
    register_asset, agent, stranger, post_job, market, keeper, registered_keeper, sign_receipt
):
    asset = register_asset(agent_account=agent)
    job = post_job()
    market.assign(job, 0, asset, sender=keeper)
    forged = sign_receipt(stranger, job, 0, 0, b"\x42" * 32, 10)
    with ape.reverts("job_market: receipt not signed by the asset's agent"):
        market.submit_result(job, 0, 0, b"\x42" * 32, 10, 0, forged, sender=agent)
    honest = sign_receipt(agent, job, 0, 0, b"\x42" * 32, 10)
    with ape.reverts("job_market: receipt not signed by the asset's agent"):  # a changed claim breaks the signature
        market.submit_result(job, 0, 0, b"\x43" * 32, 10, 0, honest, sender=agent)
    market.submit_result(job, 0, 0, b"\x42" * 32, 10, 0, honest, sender=agent)
    assert ReplicaState(int(market.replica(job, 0, 0).state)) == ReplicaState.SUBMITTED


def test_the_agent_reads_the_assignments_of_its_own_assets_only(
    register_asset, agents, post_job, market, keeper, registered_keeper, stack
):
    from agent.node import Assignments
    from computenet.market import Market

    assets = [register_asset(agent_account=agents[n]) for n in (1, 0, 1)]  # one GPU, one lease each
    mine = assets[1]
    start = market.chain_manager.blocks.height + 1
    for asset in assets:
        market.assign(post_job(), 0, asset, sender=keeper)
    stop = market.chain_manager.blocks.height + 1
    reader = Market.from_stack(stack)
    every = reader.events(start, stop, roles=("market",), names=("ShardAssigned",))
    assert len(every) == 3 and Assignments(reader, [mine]).events(start, stop) == [e for e in every if e.asset == mine]


def test_head_notices_wake_the_loop_on_each_new_block(networks, chain):
    from agent.heads import HeadNotices
    from computenet.localnet import wait_until

    stop, woke = threading.Event(), threading.Event()
    notices = HeadNotices(networks.provider.ws_uri, woke, stop)
    notices.start()
    try:
        wait_until(notices.live.is_set, 10, "the subscription")
        woke.clear()
        chain.mine()
        wait_until(woke.is_set, 5, "the new head's notice")
    finally:
        stop.set()
        notices.join(5)
    assert not notices.is_alive()


def test_without_a_websocket_there_are_no_head_notices_and_the_thread_waits_to_try_again(caplog):
    from agent.heads import HeadNotices
    from computenet.localnet import free_port, wait_until

    stop, woke = threading.Event(), threading.Event()
    notices = HeadNotices(f"ws://127.0.0.1:{free_port()}", woke, stop)
    with caplog.at_level("WARNING", logger="agent.heads"):
        notices.start()
        wait_until(lambda: "no head notices: polling only" in caplog.text, 10, "the warning")
    assert notices.is_alive() and not notices.live.is_set() and not woke.is_set()
    stop.set()
    notices.join(5)
    assert not notices.is_alive()


def test_the_loop_runs_again_at_once_when_woken_not_after_its_interval():
    from agent.node import Agent
    from computenet.localnet import wait_until

    stop, woke, runs = threading.Event(), threading.Event(), []

    def work():
        runs.append(1)
        if len(runs) == 3:
            stop.set()

    loop = threading.Thread(target=Agent.loop, args=(stop, work, 60, woke))
    loop.start()
    for n in (1, 2):
        wait_until(lambda n=n: len(runs) == n, 5, f"run {n}")
        woke.set()
    loop.join(5)
    assert len(runs) == 3 and not loop.is_alive()


# ---------------------------------------------------------------- telemetry


def test_nvml_reports_each_gpu_where_one_exists():
    sample = gpu.probe()
    if sample.source != "nvml":
        pytest.skip(f"no GPU on this machine: {sample.reason}")
    assert sample.gpus and all(g.memory_total_mib > 0 and g.name for g in sample.gpus)
    assert 0 <= sample.utilization_pct <= 100 and sample.free_vram_mib > 0


def test_without_nvml_the_cpu_fallback_names_itself_and_why(monkeypatch):
    import pynvml

    def unavailable():  # mocked: stands for a machine with no NVIDIA driver
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", unavailable)
    sample = gpu.probe()
    assert sample.source == "cpu-fallback" and sample.gpus == () and "NVML unavailable" in sample.reason
    assert sample.cpu_count >= 1 and 0 <= sample.utilization_pct <= 100 and sample.free_vram_mib == 0


def test_a_spec_that_does_not_match_the_machine_is_named():
    spec = Spec(gpu_model=1, vram_mib=81_920, gpu_count=2, cpu_cores=16, region=0, price=1, expire=0)
    h100 = gpu.Gpu(0, "NVIDIA H100 80GB HBM3", 81_559, 0, 0, 30, 70.0)
    a100 = gpu.Gpu(1, "NVIDIA A100-SXM4-40GB", 40_960, 0, 0, 30, 70.0)
    cpu = gpu.Telemetry("cpu-fallback", (), 4, 0, "NVML unavailable: Shared Library Not Found")
    assert "has none (NVML unavailable" in gpu.spec_mismatch(spec, cpu)
    assert "NVML sees 1" in gpu.spec_mismatch(spec, gpu.Telemetry("nvml", (h100,), 4, 0))
    assert "GPU 1 (NVIDIA A100-SXM4-40GB) has 40960 MiB" in gpu.spec_mismatch(
        spec, gpu.Telemetry("nvml", (h100, a100), 4, 0)
    )
    assert gpu.spec_mismatch(spec, gpu.Telemetry("nvml", (h100, h100), 4, 0)) is None
    assert gpu.spec_mismatch(Spec(0, 0, 0, 2, 0, 1, 0), cpu) is None  # CPU-only assets run anywhere


# ---------------------------------------------------------------- content store


def test_the_local_store_checks_every_read_and_survives_a_changed_byte(tmp_path):
    store = LocalStore(tmp_path)
    names = store.put(b"hello")
    assert store.get("sha256", names["sha256"]) == store.get("keccak256", names["keccak256"]) == b"hello"
    store.path("sha256", names["sha256"]).write_bytes(b"hellO")  # the disk changed a byte
    with pytest.raises(StoreError, match="does not match its content"):
        store.get("sha256", names["sha256"])
    with pytest.raises(BlobNotFound):
        store.get("sha256", digest("sha256", b"other"))
    with pytest.raises(BadName, match="64 hex digits"):
        store.get("sha256", "../../etc/passwd")


def test_the_http_store_round_trips_and_refuses_bad_names(content_store):
    names = content_store.client.put(b"blob over http")
    assert content_store.client.get("keccak256", names["keccak256"]) == b"blob over http"
    with pytest.raises(BlobNotFound):
        content_store.client.get("sha256", digest("sha256", b"never stored"))
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{content_store.url}/blobs/md5/{'0' * 64}")
    assert error.value.code == 400


# ---------------------------------------------------------------- journal and decisions


def test_the_journal_keeps_each_step_across_a_reopen(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    assert journal.accept(1, 0, 0, 7, 3, 1_000) and not journal.accept(1, 0, 0, 7, 3, 1_000)
    journal.update((1, 0, 0, 7), "computed", output_root="0x" + "ab" * 32, gpu_seconds=5, signature="0x01")
    journal.set_meta("cursor", 42)
    journal.close()
    again = Journal(tmp_path / "j.sqlite")
    [entry] = again.open_entries()
    assert (entry.state, entry.gpu_seconds, entry.output_root) == ("computed", 5, "0x" + "ab" * 32)
    assert again.get_meta("cursor") == 42
    with pytest.raises(ValueError, match="unknown journal state"):
        again.update(entry.key, "finished")


def test_a_shard_that_cannot_finish_inside_its_lease_is_declined():
    manifest = build_manifest("x@sha256:" + "1" * 64, ["true"], {}, timeout_seconds=600, max_output_bytes=1)
    with pytest.raises(plan.Decline, match="lease too short"):
        plan.check_runnable(manifest, now=0, lease_end=600, job_gpu_count=0, asset_gpu_count=0)
    plan.check_runnable(manifest, now=0, lease_end=600 + plan.SUBMIT_MARGIN, job_gpu_count=0, asset_gpu_count=0)
    with pytest.raises(plan.Decline, match="not enough GPUs"):
        plan.check_runnable(manifest, now=0, lease_end=10_000, job_gpu_count=2, asset_gpu_count=1)
    assert plan.reason_bytes("image not found") == b"image not found".ljust(32, b"\x00")


def test_metering_rounds_up_counts_gpus_and_stops_at_the_cap():
    assert plan.metered_seconds(0.2, 0, 100) == 1
    assert plan.metered_seconds(10.1, 2, 100) == 21
    assert plan.metered_seconds(500, 1, 100) == 100


@pytest.mark.parametrize(
    "state, chain_state, chain_lease, now, expected",
    [
        ("running", ReplicaState.ASSIGNED, 7, 100, "resume"),
        ("accepted", ReplicaState.ASSIGNED, 7, 100, "resume"),
        ("computed", ReplicaState.ASSIGNED, 7, 100, "submit"),
        ("submitted", ReplicaState.ASSIGNED, 7, 100, "submit"),  # sent but never mined
        ("submitted", ReplicaState.SUBMITTED, 7, 100, "done"),
        ("running", ReplicaState.ASSIGNED, 8, 100, "drop"),  # reclaimed and leased again
        ("running", ReplicaState.OPEN, 7, 100, "drop"),  # reclaimed
        ("computed", ReplicaState.ASSIGNED, 7, 2_000, "drop"),  # the lease has ended
    ],
)
def test_recovery_after_a_restart(state, chain_state, chain_lease, now, expected):
    chain = plan.ChainReplica(chain_state, chain_lease, 1_000)
    assert plan.recovery(state, 7, 1_000, chain, now) == expected


def test_the_batch_inference_example_splits_its_records_over_shards(docker_engine, job_image, tmp_path):
    from examples import workloads

    command, env, files = workloads.batch_inference(records=50)
    predictions = []
    for shard in range(2):
        spec = _spec(tmp_path, job_image, "", command=command, env=env, shard=shard, shard_count=2)
        for path, data in files.items():
            (spec.inputs / path).write_bytes(data)
        result = sandbox.run(docker_engine.client, spec)
        assert result.exit_code == 0, result.logs
        assert f"shard {shard}/2: scored 25 of 50 records".encode() in result.logs
        predictions += [json.loads(line) for line in (spec.outputs / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["id"] for p in predictions) == list(range(50))
    assert all(p["label"] in ("cat", "dog", "bird") and abs(sum(p["p"]) - 1) < 1e-4 for p in predictions)


def test_outputs_over_the_manifests_limit_are_not_committed_only_the_log(tmp_path):
    from agent.execute import collect
    from computenet.merkle import MerkleTree
    from verifier.commitment import LOG_LEAF

    outputs = tmp_path / "out"
    (outputs / "sub").mkdir(parents=True)
    (outputs / "a.txt").write_bytes(b"a" * 10)
    (outputs / "sub" / "b.txt").write_bytes(b"b" * 10)
    store = LocalStore(tmp_path / "store")
    root, names, over = collect(outputs, b"the log", 20, store)
    assert not over and set(names) == {"out/a.txt", "out/sub/b.txt", LOG_LEAF}
    assert (
        root == MerkleTree.from_files({"out/a.txt": b"a" * 10, "out/sub/b.txt": b"b" * 10, LOG_LEAF: b"the log"}).root
    )
    root, names, over = collect(outputs, b"the log", 19, store)
    assert over and set(names) == {LOG_LEAF} and root == MerkleTree.from_files({LOG_LEAF: b"the log"}).root


# ---------------------------------------------------------------- failures, GPUs, bounds (pure and local)


def test_container_options_pin_gpus_by_index_options_without_a_gpu(tmp_path):
    # No GPU here: this checks only the options the engine would get.
    spec = _spec(tmp_path, "x@sha256:" + "1" * 64, "pass", gpu_indices=(1, 3), gpu_count=2)
    [request] = sandbox.container_options(spec)["device_requests"]
    assert request["DeviceIDs"] == ["1", "3"] and request["Count"] == 0 and request["Capabilities"] == [["gpu"]]
    cpu = sandbox.container_options(_spec(tmp_path, "x@sha256:" + "1" * 64, "pass"))
    assert "device_requests" not in cpu and "ulimits" not in cpu


def test_the_agent_looks_at_the_head_on_each_notice_and_every_50_ms_by_default(monkeypatch):
    from agent.settings import AgentSettings

    for name in ("POLL_INTERVAL", "HEAD_NOTICES"):
        monkeypatch.delenv(f"COMPUTENET_AGENT_{name}", raising=False)
    settings = AgentSettings(account="TEST::0", assets="1")
    assert settings.poll_interval == 0.05 and settings.head_notices


def test_the_hosts_file_is_written_again_when_something_removed_it():
    path = sandbox.hosts_file()
    path.unlink()
    assert sandbox.hosts_file() == path and path.read_text() == sandbox.HOSTS


def test_phases_time_each_step_and_add_up_a_repeated_one():
    from agent.execute import Phases

    phases = Phases()
    for name in ("a", "b", "a"):
        phases.lap(name)
    assert list(phases.ms) == ["a", "b"] and all(ms >= 0 for ms in phases.ms.values())


def test_container_options_cap_file_sizes_and_the_log(tmp_path):
    options = sandbox.container_options(_spec(tmp_path, "x@sha256:" + "1" * 64, "pass", max_file_bytes=5 << 20))
    [fsize] = options["ulimits"]
    assert (fsize["Name"], fsize["Soft"], fsize["Hard"]) == ("fsize", 5 << 20, 5 << 20)
    assert options["log_config"]["Type"] == "json-file"
    assert options["log_config"]["Config"] == {"max-size": str(sandbox.LOG_BYTES), "max-file": "1"}


def test_the_gpu_allocator_never_hands_one_gpu_to_two_leases():
    gpus = gpu.Allocator()
    assert gpus.acquire("a", (0, 1, 2), 2) == (0, 1)
    assert gpus.acquire("a", (0, 1, 2), 2) == (0, 1)  # asking again: the same ones
    assert gpus.acquire("b", (0, 1, 2), 2) is None  # only one free
    assert gpus.acquire("c", (0, 1, 2), 1) == (2,)
    assert gpus.acquire("d", (0, 1, 2), 0) == ()  # CPU-only work always fits
    assert gpus.release("a") == (0, 1) and gpus.release("a") == ()
    assert gpus.acquire("b", (0, 1, 2), 2) == (0, 1)
    assert gpus.held() == {0: "b", 1: "b", 2: "c"}
    assert gpu.asset_gpus(Spec(1, 81_920, 2, 16, 0, 1, 0)) == (0, 1) and gpu.asset_gpus(Spec(0, 0, 0, 2, 0, 1, 0)) == ()


def test_the_gpu_allocator_is_safe_across_threads():
    import threading

    gpus, clashes, barrier = gpu.Allocator(), [], threading.Barrier(16)

    def lease(name):
        barrier.wait()
        for _ in range(200):
            got = gpus.acquire(name, tuple(range(4)), 2)
            if got is not None:
                held = gpus.held()
                if any(held.get(i) != name for i in got):
                    clashes.append((name, got, held))
                gpus.release(name)

    threads = [threading.Thread(target=lease, args=(f"lease-{i}",)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clashes == [] and gpus.held() == {}


@given(st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 3), st.booleans()), max_size=40))
def test_gpu_allocations_stay_disjoint_and_within_the_pool(steps):
    gpus, model = gpu.Allocator(), {}
    for name, count, release in steps:
        if release:
            assert gpus.release(name) == model.pop(name, ())
            continue
        got = gpus.acquire(name, (0, 1, 2, 3), count)
        free = 4 - sum(len(v) for v in model.values())
        if name in model and model[name]:
            assert got == model[name]
        elif count > free:
            assert got is None
        else:
            assert len(got) == count and set(got) <= {0, 1, 2, 3}
            model[name] = got
        held = [i for v in model.values() for i in v]
        assert len(held) == len(set(held)) and gpus.held() == {i: n for n, v in model.items() for i in v}


@pytest.mark.parametrize(
    "stage, error, expected",
    [
        (plan.STAGING, plan.Decline("image not found", "detail"), ("decline", "image not found", "detail")),
        (plan.STAGING, RuntimeError("bug"), ("decline", "agent error", "RuntimeError: bug")),
        (plan.STAGING, PermissionError("no"), ("decline", "agent storage error", "PermissionError: no")),
        (
            plan.STARTING,
            RuntimeError("409 conflict"),
            ("decline", "engine refused container", "RuntimeError: 409 conflict"),
        ),
        (plan.RAN, RuntimeError("bug"), ("fail", "result not committed", "RuntimeError: bug")),
        (plan.RAN, plan.Decline("image not found"), ("fail", "image not found", "image not found")),
    ],
)
def test_a_failure_before_the_container_starts_is_declined_and_after_it_is_a_failed_result(stage, error, expected):
    outcome = plan.on_failure(stage, error)
    assert (outcome.action, outcome.reason, outcome.detail) == expected
    assert len(plan.reason_bytes(outcome.reason)) == plan.REASON_BYTES and outcome.reason.isascii()


def test_a_failed_result_never_reports_success():
    assert plan.failed_exit_code(None) == plan.failed_exit_code(0) == plan.AGENT_FAILURE_EXIT
    assert plan.failed_exit_code(3) == 3 and plan.failed_exit_code(137) == 137 and plan.failed_exit_code(999) == 255
    with pytest.raises(plan.Decline, match="no free GPU"):
        plan.check_gpus(None, 2, (0, 1))
    assert plan.check_gpus((1,), 1, (0, 1)) == (1,)


def test_the_local_store_streams_a_file_in_with_both_names_and_a_cap(tmp_path):
    import hashlib
    import os

    from eth_utils import keccak

    from computenet.store import BlobTooLarge

    store = LocalStore(tmp_path / "store")
    data = os.urandom(3 << 20)  # more than one chunk
    (tmp_path / "f").write_bytes(data)
    names = store.put_file(tmp_path / "f")
    assert names == {"sha256": hashlib.sha256(data).hexdigest(), "keccak256": keccak(data).hex(), "size": len(data)}
    assert store.get("keccak256", names["keccak256"]) == data
    with pytest.raises(BlobTooLarge):
        store.put_file(tmp_path / "f", limit=len(data) - 1)
    os.symlink(tmp_path / "f", tmp_path / "link")
    with pytest.raises(OSError):  # a link is not followed
        store.put_file(tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(StoreError, match="not a regular file"):  # and a fifo does not block
        store.put_file(tmp_path / "fifo")
    assert sorted(p.name for p in store.dir.iterdir() if p.name.startswith(".incoming")) == []


def test_the_http_store_streams_a_download_to_a_file_checked_and_capped(content_store, tmp_path):
    from computenet.store import BlobTooLarge

    names = content_store.client.put(b"x" * 5000)
    target = tmp_path / "got"
    assert content_store.client.download("sha256", names["sha256"], target, 5000)["size"] == 5000
    assert target.read_bytes() == b"x" * 5000
    with pytest.raises(BlobTooLarge):
        content_store.client.download("sha256", names["sha256"], tmp_path / "small", 4999)
    with pytest.raises(BlobNotFound):
        content_store.client.download("sha256", digest("sha256", b"never"), tmp_path / "none", 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["got"]  # nothing partial left


def test_an_output_tmpfs_bounds_what_a_job_writes_and_release_leaves_nothing(tmp_path):
    import os

    from computenet import staging

    inputs, outputs = staging.prepare(tmp_path / "lease")
    bound = staging.bound_outputs(outputs, 1 << 20)
    if os.geteuid() != 0:
        assert bound.startswith("not root")
        pytest.skip("mounting a tmpfs needs root")
    assert bound == f"outputs on a tmpfs of {staging.output_bytes(1 << 20)} bytes" and os.path.ismount(outputs)
    written = 0
    with pytest.raises(OSError, match="No space left"):
        with open(outputs / "big", "wb") as out:
            for _ in range(8):
                out.write(b"z" * (1 << 20))
                out.flush()
                written += 1 << 20
    assert written <= staging.output_bytes(1 << 20)
    (tmp_path / "lease" / "outputs.json").write_text("{}")
    staging.release(tmp_path / "lease", keep=("outputs.json",))
    assert not os.path.ismount(outputs) and sorted(os.listdir(tmp_path / "lease")) == ["outputs.json"]
    staging.release(tmp_path / "lease")
    assert not (tmp_path / "lease").exists()


def test_a_container_keeps_its_pinned_gpus_across_a_restart_options_without_a_gpu(docker_engine, job_image, tmp_path):
    import docker.errors

    from agent import execute

    spec = _spec(tmp_path, job_image, "pass", gpu_indices=(1, 3))
    created = docker_engine.client.containers.create(**sandbox.container_options(spec))
    try:  # what a restarted agent reads back from the engine
        created.reload()
        assert execute.pinned_gpus(created) == (1, 3)
    finally:
        created.remove(force=True)
    # This engine has no GPU: it creates the container but refuses to start it, and start() leaves nothing behind.
    with pytest.raises(docker.errors.APIError):
        sandbox.start(docker_engine.client, spec)
    assert docker_engine.client.containers.list(all=True, filters={"name": spec.name}) == []
    cpu = docker_engine.client.containers.create(**sandbox.container_options(_spec(tmp_path, job_image, "pass")))
    try:
        cpu.reload()
        assert execute.pinned_gpus(cpu) == ()
    finally:
        cpu.remove(force=True)


def test_where_no_tmpfs_can_be_mounted_the_bound_in_force_is_named(tmp_path, monkeypatch):
    import os

    from computenet import staging

    if os.geteuid() == 0:  # a mount that fails: its folder is not there
        bound = staging.bound_outputs(tmp_path / "missing", 1 << 20)
        assert bound.startswith("no tmpfs (") and "RLIMIT_FSIZE" in bound
    monkeypatch.setattr(staging.os, "geteuid", lambda: 1000)  # stands for an agent not run as root
    assert staging.bound_outputs(tmp_path, 1 << 20).startswith("not root: outputs bounded per file by RLIMIT_FSIZE")
    assert not os.path.ismount(tmp_path)


def test_the_http_store_spools_uploads_to_disk_and_refuses_one_over_its_limit(tmp_path):
    from computenet.localnet import ServedApp
    from computenet.store import StoreClient, app

    local = LocalStore(tmp_path / "store", max_bytes=1000)
    served = ServedApp(app(local))
    try:
        client = StoreClient(served.url)
        assert client.put(b"k" * 1000)["size"] == 1000
        with pytest.raises(StoreError, match="413"):
            client.put(b"k" * 1001)
        chunks = iter([b"c" * 600, b"c" * 600])  # no length declared: the limit holds while it streams
        request = urllib.request.Request(
            f"{served.url}/blobs", data=chunks, method="PUT", headers={"Transfer-Encoding": "chunked"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 413
    finally:
        served.stop()
    assert sorted(p.name for p in local.dir.iterdir() if p.name.startswith(".")) == []  # no spooled upload left


def test_telemetry_of_a_lease_or_asset_reads_only_its_pinned_devices_from_a_fabricated_nvml_sample():
    """No GPU here: the sample is built by hand as NVML would report four devices."""
    sample = gpu.Telemetry(
        "nvml",
        tuple(gpu.Gpu(i, "NVIDIA H200", 143_771, 1_000 * (i + 1), 10 * (i + 1), 40, 300.0) for i in range(4)),
        16,
        0,
    )
    pinned = sample.only((1, 3))
    assert [g.index for g in pinned.gpus] == [1, 3]
    assert pinned.utilization_pct == 30  # (20 + 40) / 2, not the machine's 25
    assert pinned.free_vram_mib == (143_771 - 2_000) + (143_771 - 4_000)
    assert sample.only(()) is sample  # CPU work: the machine's own figures
    asset = sample.only(
        gpu.asset_gpus(Spec(gpu_model=2, vram_mib=143_771, gpu_count=2, cpu_cores=8, region=0, price=1, expire=1))
    )
    assert [g.index for g in asset.gpus] == [0, 1] and asset.utilization_pct == 15
