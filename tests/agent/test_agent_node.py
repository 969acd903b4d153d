"""The agent as providers run it: `python -m agent run` processes against this session's
anvil, a real Docker engine and a real content store. The test plays the keeper (it assigns)."""

import hashlib
import json
import signal
import time
import urllib.error
import urllib.request

import pytest
from eth_utils import keccak

from agent.journal import Journal
from agent.outputs import sign_request
from computenet.domain import ReplicaState, Verification
from computenet.heartbeat import Heartbeat, check_heartbeat
from computenet.localnet import free_port
from computenet.merkle import MerkleTree
from computenet.store import LocalStore
from examples import workloads
from verifier.access import may_read


def state_of(market, job, shard, replica=0):
    return ReplicaState(int(market.replica(job, shard, replica).state))


def outputs_of(agent_proc, job, shard, replica, lease):
    """The files an agent committed to for a lease: {leaf path: bytes}, read from its output store."""
    folder = agent_proc.workdir / "leases" / f"computenet-{job}-{shard}-{replica}-{lease}"
    index = json.loads((folder / "outputs.json").read_text())
    store = LocalStore(agent_proc.workdir / "outputs")
    return {leaf: store.get("sha256", sha) for leaf, sha in index["files"].items()}


def test_a_four_shard_job_runs_on_two_agents_and_every_output_checks_on_chain(
    make_agent,
    cpu_asset,
    agents,
    publish_job,
    post_job,
    market,
    court,
    keeper,
    registered_keeper,
    wait_for,
    client,
    stranger,
    chain,
):
    a, b = cpu_asset(agents[0]), cpu_asset(agents[1])
    command, env, files = workloads.hashing(files=8, rounds=500)
    manifest, mhash = publish_job(command, files, env=env)
    job = post_job(manifest_hash=mhash, shard_count=4, gpu_count=0, min_vram_mib=0)
    ports = {a: free_port(), b: free_port()}
    procs = {x: make_agent(agents[i], [x], outputs_port=ports[x]).start() for i, x in enumerate((a, b))}
    placement = {0: a, 1: a, 2: b, 3: b}
    for shard, asset in placement.items():
        market.assign(job, shard, asset, sender=keeper)
    wait_for(
        lambda: all(state_of(market, job, s) == ReplicaState.SUBMITTED for s in range(4)), what="4 results submitted"
    )

    hashes = {}
    for shard, asset in placement.items():
        rep = market.replica(job, shard, 0)
        files_out = outputs_of(procs[asset], job, shard, 0, int(rep.lease))
        assert MerkleTree.from_files(files_out).root == bytes(market.output_root(job, shard, 0))
        for leaf, data in files_out.items():  # and each file checks on chain, by its proof
            proof = MerkleTree.from_files(files_out).proof(leaf)
            assert court.verify_output(job, shard, 0, keccak(leaf.encode()), keccak(data), proof)
        result = json.loads(files_out["out/result.json"])
        assert (result["shard"], result["of"]) == (shard, 4)
        hashes.update(result["hashes"])
        assert int(rep.gpu_seconds) >= 1 and b"hashed 2 of 8 files" in files_out["log/container.log"]
    # the four shards together hashed every input exactly as the job defines
    for path, data in files.items():
        if path.startswith("data/"):
            digest = data
            for _ in range(500):
                digest = hashlib.sha256(digest).digest()
            assert hashes[path.removeprefix("data/")] == digest.hex()
    assert len(hashes) == 8

    # the client reads a single output from the agent, with the proof that it is in the result
    def fetch(key, shard, path="out/result.json", headers=None):
        target = f"/outputs/{job}/{shard}/0/file?path={path}"
        headers = headers if headers is not None else sign_request(key, chain.chain_id, agents[0].address, target)
        request = urllib.request.Request(f"http://127.0.0.1:{ports[a]}{target}", headers=headers)
        return urllib.request.urlopen(request, timeout=10)

    response = fetch(client.private_key, 1)
    data, proof = response.read(), [bytes.fromhex(p[2:]) for p in json.loads(response.headers["X-Merkle-Proof"])]
    assert court.verify_output(job, 1, 0, keccak(b"out/result.json"), keccak(data), proof)
    for key, headers, code in [(stranger.private_key, None, 403), (client.private_key, {}, 401)]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(key, 1, headers=headers)
        assert refused.value.code == code
    # A bonded keeper reads a replica only where the draw after its submission samples it for
    # that keeper (verifier.access): the agents answer as the rule does, shard by shard.
    chain.mine()  # the block after the last result: its hash seeds the last draw
    for shard, asset in placement.items():
        (submitted,) = [
            e for e in market.ResultSubmitted.range(0, chain.blocks.height + 1) if (e.job, e.shard) == (job, shard)
        ]
        seed = bytes(chain.provider.web3.eth.get_block(submitted.block_number + 1)["hash"])
        expected = may_read(
            caller=keeper.address,
            job_client=client.address,
            mode=Verification.OPTIMISTIC,
            spot_check_bps=1_000,
            seed=seed,
            job=job,
            shard=shard,
            replica=0,
            is_bonded=True,
            is_facilitator=False,
            disputed=False,
            on_chain=True,
        )
        target = f"/outputs/{job}/{shard}/0"
        agent_address = agents[0 if asset == a else 1].address
        request = urllib.request.Request(
            f"http://127.0.0.1:{ports[asset]}{target}",
            headers=sign_request(keeper.private_key, chain.chain_id, agent_address, target),
        )
        try:
            code = urllib.request.urlopen(request, timeout=10).status
        except urllib.error.HTTPError as error:
            code = error.code
        assert code == (200 if expected else 403), (shard, expected, code)
    signed_for_shard_0 = sign_request(
        client.private_key, chain.chain_id, agents[0].address, f"/outputs/{job}/0/0/file?path=out/result.json"
    )
    with pytest.raises(urllib.error.HTTPError) as replayed:  # a signature serves one request only
        fetch(client.private_key, 1, headers=signed_for_shard_0)
    assert replayed.value.code == 401


def test_a_wrong_image_digest_is_declined_with_its_reason(
    make_agent, cpu_asset, agents, publish_job, post_job, market, keeper, registered_keeper, wait_for
):
    asset = cpu_asset(agents[0])
    missing = "computenet/python@sha256:" + "0" * 64
    _, mhash = publish_job(["python3", "-c", "print(1)"], {}, image_ref=missing)
    job = post_job(manifest_hash=mhash, gpu_count=0, min_vram_mib=0)
    start = market.chain_manager.blocks.height
    proc = make_agent(agents[0], [asset]).start()
    market.assign(job, 0, asset, sender=keeper)
    declined = wait_for(
        lambda: list(market.ShardDeclined.range(start, market.chain_manager.blocks.height + 1)), what="the decline"
    )
    assert declined[0].reason.rstrip(b"\x00") == b"image not found"
    assert state_of(market, job, 0) == ReplicaState.OPEN  # handed back, no penalty
    assert "not here and not pullable" in proc.log()


def test_going_over_the_memory_limit_is_reported_as_oom_with_exit_code_137(
    make_agent, cpu_asset, agents, publish_job, post_job, market, keeper, registered_keeper, wait_for
):
    asset = cpu_asset(agents[0])
    _, mhash = publish_job(["python3", "-c", "x = bytearray(512 * 1024 * 1024)"], {})
    job = post_job(manifest_hash=mhash, gpu_count=0, min_vram_mib=0, memory_mib=64)  # the lease holds 64 MiB
    proc = make_agent(agents[0], [asset]).start()
    market.assign(job, 0, asset, sender=keeper)
    wait_for(lambda: state_of(market, job, 0) == ReplicaState.SUBMITTED, what="the failed run's result")
    submitted = list(market.ResultSubmitted.range(0, market.chain_manager.blocks.height + 1))
    assert [(int(e.job), int(e.exit_code)) for e in submitted if int(e.job) == job] == [(job, 137)]
    status = json.loads(proc.run_status())
    assert any(e["note"] == "oom" for e in status["latest"])


def test_an_agent_killed_mid_shard_resumes_it_and_submits_once(
    make_agent, cpu_asset, agents, publish_job, post_job, market, keeper, registered_keeper, wait_for, docker_engine
):
    asset = cpu_asset(agents[0])
    _, mhash = publish_job(["python3", "-c", "import time; time.sleep(4); open('/out/done', 'w').write('ok')"], {})
    job = post_job(manifest_hash=mhash, gpu_count=0, min_vram_mib=0)
    proc = make_agent(agents[0], [asset]).start()
    market.assign(job, 0, asset, sender=keeper)
    name = f"computenet-{job}-0-0-{int(market.replica(job, 0, 0).lease)}"
    wait_for(lambda: _container_status(docker_engine.client, name) == "running", what="the container to run")
    proc.stop(signal.SIGKILL)  # mid-shard; the container runs on
    assert state_of(market, job, 0) == ReplicaState.ASSIGNED
    proc.start()
    wait_for(lambda: state_of(market, job, 0) == ReplicaState.SUBMITTED, what="the resumed shard's result")
    submitted = [
        e for e in market.ResultSubmitted.range(0, market.chain_manager.blocks.height + 1) if int(e.job) == job
    ]
    assert len(submitted) == 1 and int(submitted[0].exit_code) == 0
    rep = market.replica(job, 0, 0)
    assert outputs_of(proc, job, 0, 0, int(rep.lease))["out/done"] == b"ok"


def _container_status(client, name):
    import docker.errors

    try:
        return client.containers.get(name).status
    except docker.errors.NotFound:
        return None


def test_the_agent_serves_signed_heartbeats_at_its_endpoint_and_names_a_missing_one(
    make_agent, cpu_asset, agents, assets, provider, chain, wait_for
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    served, unlisted = cpu_asset(agents[0], max_leases=3), cpu_asset(agents[0], max_leases=2)
    assets.set_endpoint(served, url, sender=provider)  # the other records none
    proc = make_agent(agents[0], [served, unlisted], outputs_port=port, heartbeat_interval=0.5).start()

    def beats():
        try:
            with urllib.request.urlopen(f"{url}/heartbeats", timeout=2) as response:
                return [Heartbeat.from_body(b) for b in json.loads(response.read())]
        except OSError:
            return None

    first = wait_for(lambda: beats(), what="the agent's heartbeats")
    assert [hb.asset for hb, _ in first] == [served, unlisted]
    later = wait_for(lambda: (b := beats()) and b[0][0].seq > first[0][0].seq and b, what="a newer heartbeat")
    (hb, signature), (other, _) = later
    assert (hb.capacity, hb.running_shards, other.capacity) == (3, 0, 2)
    assert hb.gpu_utilization_pct == 0  # no container runs: the host's own load does not count
    problem = check_heartbeat(
        hb, signature, agents[0].address, int(time.time()), 30, first[0][0].seq, chain.chain_id, str(assets.address)
    )
    assert problem is None
    with urllib.request.urlopen(f"{url}/heartbeats/{served}", timeout=2) as response:
        assert Heartbeat.from_json(response.read())[0].asset == served
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"{url}/heartbeats/{served + 1000}", timeout=2)
    log = proc.log()
    assert f"asset {unlisted} records no endpoint on chain" in log
    assert f"ape run provider set-endpoint {unlisted} {url}" in log
    assert f"asset {served} records" not in log  # its recorded endpoint is this agent's


def test_an_agent_refuses_to_start_naming_what_differs(make_agent, cpu_asset, register_asset, agents):
    mine, theirs = cpu_asset(agents[0]), cpu_asset(agents[1])
    gpu_asset = register_asset(agent_account=agents[0])  # 1 × H100: this machine has no GPU
    proc = make_agent(agents[0], [mine, theirs, gpu_asset])
    done = proc.run_command("run")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (
        f"asset {theirs}: its registered agent is {agents[1].address}, not this key {agents[0].address}" in done.stderr
    )
    assert f"asset {gpu_asset}: the asset is registered with 1 GPU(s) but this machine has none (NVML" in done.stderr
    assert f"asset {mine}" not in done.stderr  # a CPU-only asset runs anywhere


def test_a_result_computed_before_a_crash_is_submitted_after_the_restart(
    make_agent, cpu_asset, agents, publish_job, post_job, market, keeper, registered_keeper, sign_receipt, wait_for
):
    asset = cpu_asset(agents[0])
    _, mhash = publish_job(["python3", "-c", "print(1)"], {})
    job = post_job(manifest_hash=mhash, gpu_count=0, min_vram_mib=0)
    market.assign(job, 0, asset, sender=keeper)
    rep = market.replica(job, 0, 0)
    root = b"\x5e" * 32
    signature = sign_receipt(agents[0], job, 0, 0, root, 7, manifest_hash=mhash)
    proc = make_agent(agents[0], [asset])
    # What the journal holds when an agent dies between computing a result and sending it.
    journal = Journal(proc.workdir / "journal.sqlite")
    journal.accept(job, 0, 0, int(rep.lease), asset, int(rep.deadline))
    journal.update(
        (job, 0, 0, int(rep.lease)),
        "computed",
        output_root="0x" + root.hex(),
        gpu_seconds=7,
        signature="0x" + bytes(signature).hex(),
    )
    journal.close()
    proc.start()
    wait_for(lambda: state_of(market, job, 0) == ReplicaState.SUBMITTED, what="the journaled result to be submitted")
    assert bytes(market.output_root(job, 0, 0)) == root and int(market.replica(job, 0, 0).gpu_seconds) == 7
    wait_for(lambda: json.loads(proc.run_status())["counts"] == {"done": 1}, what="the journal to say done")
