"""The `ape run` scripts as a user runs them: real subprocesses against this session's anvil.

The module deploys once with `ape run deploy` (recorded in a temporary deployments
file); ape's isolation then brings the chain back to that point after every test, so
each test starts from the freshly deployed market with asset and job ids from 1.
Every failure a user can cause must end in one `Error: ...` line and exit code 1.
"""

import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from web3 import Web3

from computenet.manifest import canonical_json, manifest_hash, parse_manifest
from computenet.market import Market
from computenet.merkle import MerkleTree

REPO = Path(__file__).resolve().parents[2]
ANVIL_BIN = REPO / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin"
TOKEN = 10**6
ZERO_ROOT = "0x" + "00" * 32
IMAGE = "ghcr.io/acme/train@sha256:" + "ab" * 32
MANIFEST = {
    "version": 1,
    "image": IMAGE,
    "command": ["python", "train.py"],
    "inputs": {"files": [], "root": ZERO_ROOT},
    "outputs": {"max_bytes": 1_000_000},
    "timeout_seconds": 600,
}


class ApeRun:
    """`ape run SCRIPT ARGS --network <this session's anvil> [--account TEST::n]`."""

    def __init__(self, uri: str, deployments: Path):
        self.uri = uri
        self.deployments = deployments
        self.env = os.environ | {
            "PATH": f"{REPO / '.venv' / 'bin'}:{ANVIL_BIN}:{os.environ.get('PATH', '')}",
            "COMPUTENET_DEPLOYMENTS": str(deployments),
        }

    def __call__(self, *args: str, account: int | None = None) -> subprocess.CompletedProcess:
        command = [str(REPO / ".venv" / "bin" / "ape"), "run", *args, "--network", self.uri]
        if account is not None:
            command += ["--account", f"TEST::{account}"]
        return subprocess.run(command, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120)

    def ok(self, *args: str, account: int | None = None) -> str:
        result = self(*args, account=account)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def fails(self, *args: str, account: int | None = None) -> str:
        """Runs a command that must fail cleanly; returns its one error message."""
        result = self(*args, account=account)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "Traceback" not in output
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("Error: "), result.stderr
        return errors[0].removeprefix("Error: ")


@pytest.fixture(scope="module")
def ape_run(networks, tmp_path_factory):
    return ApeRun(networks.provider.uri, tmp_path_factory.mktemp("scripts") / "deployments.json")


@pytest.fixture(scope="module")
def deployed(ape_run, accounts):
    """Deploys with the script, making accounts[7] a facilitator; returns (record, stdout)."""
    out = ape_run.ok("deploy", "--facilitator", accounts[7].address, account=0)
    records = json.loads(ape_run.deployments.read_text())
    assert len(records) == 1
    return next(iter(records.values())), out


@pytest.fixture
def sdk(deployed):
    return Market.at(deployed[0])


@pytest.fixture
def manifest_file(tmp_path):
    def write(**changes):
        path = tmp_path / f"manifest-{len(list(tmp_path.iterdir()))}.json"
        path.write_text(json.dumps(MANIFEST | changes))
        return path

    return write


def test_deploy_records_the_five_contracts(deployed, chain, sdk, accounts):
    record, out = deployed
    assert set(record) == {"token", "assets", "keepers", "market", "court", "chain_id", "block"}
    assert record["chain_id"] == chain.chain_id
    assert 0 < record["block"] <= chain.blocks.height
    for role in ("token", "assets", "keepers", "market", "court"):
        assert len(chain.provider.get_code(record[role])) > 0, role
        assert f"{role:8} {record[role]}" in out
    assert "recorded in" in out
    # linked to each other as deploy_stack promises
    assert sdk.market.TOKEN() == record["token"]
    assert sdk.market.ASSETS() == record["assets"]
    assert sdk.market.KEEPERS() == record["keepers"]
    assert sdk.market.COURT() == record["court"] == sdk.court.address
    assert sdk.court.MARKET() == record["market"]
    assert sdk.market.owner() == accounts[0].address
    assert sdk.market.is_facilitator(accounts[7].address)
    assert sdk.token.balanceOf(accounts[3]) == 0


def test_faucet_and_provider_commands(ape_run, sdk, accounts):
    provider, agent = accounts[3], accounts[10]
    out = ape_run.ok("faucet", "5000", account=3)
    assert f"{provider.address} now holds 5,000 cnUSD" in out
    assert sdk.token.balanceOf(provider) == 5_000 * TOKEN

    out = ape_run.ok(
        "provider",
        "register",
        "--agent",
        agent.address,
        "--gpu-model",
        "1",
        "--vram-mib",
        "81920",
        "--gpus",
        "8",
        "--cpu-cores",
        "64",
        "--region",
        "276",
        "--price",
        "0.0004",
        "--days",
        "30",
        "--stake",
        "500",
        account=3,
    )
    assert f"asset 1 registered to {provider.address}" in out
    assert "asset 1 stake: 500" in out
    asset = sdk.asset(1)
    assert (asset.owner, asset.agent) == (provider.address, agent.address)
    assert (asset.spec.gpu_count, asset.spec.vram_mib, asset.spec.cpu_cores, asset.spec.price) == (8, 81_920, 64, 400)
    assert asset.stake.amount == 500 * TOKEN

    listing = ape_run.ok("provider", "list", account=3).splitlines()
    row = next(line for line in listing if line.split()[:1] == ["1"])
    assert row.split()[:8] == ["1", "8", "81920", "64", "0.0004", "500", "0", "active"]

    assert "asset 1 price: 0.0005 per GPU-second" in ape_run.ok("provider", "price", "1", "0.0005", account=3)
    assert sdk.asset(1).spec.price == 500
    assert "asset 1 paused" in ape_run.ok("provider", "pause", "1", account=3)
    assert sdk.asset(1).spec.active is False
    assert "asset 1 resumed" in ape_run.ok("provider", "resume", "1", account=3)
    assert sdk.asset(1).spec.active is True
    assert "asset 1: 100 unbonding until" in ape_run.ok("provider", "unstake", "1", "100", account=3)
    assert sdk.stake(1).unbonding == 100 * TOKEN
    assert "asset 1 stake: 550" in ape_run.ok("provider", "stake", "1", "50", account=3)
    assert sdk.stake(1).amount == 550 * TOKEN


def test_job_commands(ape_run, sdk, accounts, manifest_file, chain):
    client = accounts[1]
    ape_run.ok("faucet", "100", account=1)
    out = ape_run.ok(
        "job",
        "post",
        str(manifest_file()),
        "--shards",
        "2",
        "--min-vram-mib",
        "16384",
        "--gpus",
        "1",
        "--max-price",
        "0.0005",
        "--max-gpu-seconds",
        "600",
        "--hours",
        "2",
        account=1,
    )
    # 500 base units per GPU-second × 600 × 2 shards, plus 1 % + 0.5 % fees
    assert "job 1 posted: 2 shard(s) × 1, budget 0.609 escrowed" in out
    job = sdk.job(1)
    assert job.client == client.address and job.escrow == 609_000
    assert job.requirements.shard_count == 2 and job.requirements.min_vram_mib == 16_384
    # two hours from when the script read the clock, a few blocks before the post landed
    assert 0 <= chain.blocks.head.timestamp + 7_200 - job.requirements.deadline <= 60
    assert f"manifest hash 0x{job.manifest_hash.hex()}" in out

    status = ape_run.ok("job", "status", "1").splitlines()
    assert any(f"job 1 by {client.address}: 2 shard(s) × 1, escrow 0.609, 2 unfinished" in line for line in status)
    assert [line.split() for line in status if line.lstrip().startswith("shard")] == [
        ["shard", "0", "open", "r0:open"],
        ["shard", "1", "open", "r0:open"],
    ]

    # someone else's job: refused before anything is sent
    assert ape_run.fails("job", "cancel", "1", "0", account=2) == "would revert: job_market: caller is not the client"
    assert "job 1: 1 shard(s) cancelled" in ape_run.ok("job", "cancel", "1", "0", account=1)
    status = ape_run.ok("job", "status", "1")
    assert "shard    0  cancelled  r0:cancelled" in status
    assert "1 unfinished" in status
    assert [sdk.replica(1, s, 0).state.name for s in (0, 1)] == ["CANCELLED", "OPEN"]


def test_status_lists_assets_jobs_queues_and_settlements(ape_run, sdk, accounts, manifest_file, redis_server):
    ape_run.ok("faucet", "5000", account=3)
    ape_run.ok(
        "provider",
        "register",
        "--agent",
        accounts[10].address,
        "--gpu-model",
        "1",
        "--vram-mib",
        "81920",
        "--gpus",
        "8",
        "--cpu-cores",
        "64",
        "--region",
        "276",
        "--price",
        "0.0004",
        "--days",
        "30",
        "--stake",
        "500",
        account=3,
    )
    ape_run.ok("faucet", "100", account=1)
    ape_run.ok(
        "job",
        "post",
        str(manifest_file()),
        "--shards",
        "2",
        "--min-vram-mib",
        "16384",
        "--gpus",
        "1",
        "--max-price",
        "0.0005",
        "--max-gpu-seconds",
        "600",
        "--hours",
        "2",
        account=1,
    )
    redis_server.client(5).rpush("computenet-keeper-a", b"x", b"y")
    out = ape_run.ok("status", "--redis", redis_server.url(5), "--keepers", "keeper-a,keeper-b")
    assert (
        "assets" in out and "jobs (shards by state)" in out and "keeper queues" in out and "recent settlements" in out
    )
    asset = sdk.asset(1)
    assert asset.owner in out and "0.0004" in out  # the registered asset and its price
    job_rows = [line for line in out.splitlines() if line.startswith("│ 1 ") and sdk.job(1).client in line]
    assert job_rows and job_rows[0].split("│")[3].strip() == "2"  # two shards
    queue_rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip() for line in out.splitlines() if "keeper-" in line
    }
    assert queue_rows == {"keeper-a": "2", "keeper-b": "0"}


def test_error_paths_print_one_clear_line(ape_run, deployed, manifest_file):
    assert ape_run.fails("job", "status", "9") == "no job 9"
    assert ape_run.fails("job", "cancel", "9", account=1) == "no job 9"
    bad = manifest_file(image="ghcr.io/acme/train:latest")
    message = ape_run.fails("job", "post", str(bad), "--max-price", "0.0005", "--max-gpu-seconds", "600", account=1)
    assert message.startswith(f"{bad}: manifest.image: a digest is required")
    over_tmp = manifest_file(outputs={"path": "/tmp/out", "max_bytes": 1_000})
    message = ape_run.fails(
        "job", "post", str(over_tmp), "--max-price", "0.0005", "--max-gpu-seconds", "600", account=1
    )
    assert message.startswith(f"{over_tmp}: manifest.outputs.path: '/tmp/out' overlaps /tmp")
    nested = manifest_file(
        inputs={"files": [{"path": p, "size": 1, "sha256": "ab" * 32} for p in ("a", "a/b")], "root": "0x" + "cd" * 32}
    )
    message = ape_run.fails("job", "post", str(nested), "--max-price", "0.0005", "--max-gpu-seconds", "600", account=1)
    assert message.startswith(f"{nested}: manifest.inputs.files: 'a/b' lies inside the input file 'a'")
    # the faucet's limit is 1,000,000 tokens
    assert ape_run.fails("faucet", "1000001", account=1) == "at most 1,000,000 tokens per faucet call"


@pytest.fixture
def sepolia_like_node(tmp_path):
    """A second anvil that reports Sepolia's chain id, so the scripts treat it as public."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    node = subprocess.Popen(
        [str(ANVIL_BIN / "anvil"), "--port", str(port), "--chain-id", "11155111", "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        w3 = Web3(Web3.HTTPProvider(uri))
        for _ in range(100):  # up to ~10 s for the node to answer
            try:
                if w3.eth.chain_id == 11155111:
                    break
            except Exception:
                time.sleep(0.1)
        else:
            pytest.fail("the second anvil did not start")
        yield uri, w3
    finally:
        node.terminate()
        node.wait(timeout=10)


def test_deploy_off_local_chain_requires_token(ape_run, sepolia_like_node, accounts):
    """`ape run deploy` on a public network without --token stops before sending anything."""
    uri, w3 = sepolia_like_node
    public = ApeRun(uri, ape_run.deployments.with_name("public.json"))
    assert (
        public.fails("deploy", account=0) == "ethereum:sepolia is not a local chain: pass --token with the USDC address"
    )
    assert w3.eth.get_transaction_count(accounts[0].address) == 0
    assert not public.deployments.exists()
    # The faucet refuses too: it exists only on local chains.
    assert public.fails("faucet", "1", account=1) == "the faucet exists only on local chains; chain 11155111 is not one"


def test_job_manifest_and_post_upload_the_inputs_checked_to_the_store(ape_run, sdk, content_store, tmp_path):
    inputs = tmp_path / "inputs"
    (inputs / "data").mkdir(parents=True)
    (inputs / "data" / "a.bin").write_bytes(b"\x01" * 100)
    (inputs / "run.py").write_text("print('hi')\n")
    manifest = tmp_path / "job.json"
    image = "computenet/python@sha256:" + "ab" * 32
    made = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ape"),
            "run",
            "job",
            "manifest",
            "--image",
            image,
            "--inputs",
            str(inputs),
            "--timeout",
            "120",
            "-o",
            str(manifest),
            "python3",
            "/in/run.py",
        ],
        cwd=REPO,
        env=ape_run.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    parsed = parse_manifest(manifest.read_bytes())
    assert [f.path for f in parsed.inputs.files] == ["data/a.bin", "run.py"] and parsed.command == [
        "python3",
        "/in/run.py",
    ]

    ape_run.ok("faucet", "100", account=1)
    (inputs / "run.py").write_text("print('changed')\n")  # no longer what the manifest names
    message = ape_run.fails(
        "job",
        "post",
        str(manifest),
        "--inputs",
        str(inputs),
        "--store",
        content_store.url,
        "--max-price",
        "0.0005",
        "--max-gpu-seconds",
        "60",
        account=1,
    )
    assert message == "input run.py: content differs from the manifest (size or sha256)"
    (inputs / "run.py").write_text("print('hi')\n")
    out = ape_run.ok(
        "job",
        "post",
        str(manifest),
        "--inputs",
        str(inputs),
        "--store",
        content_store.url,
        "--max-price",
        "0.0005",
        "--max-gpu-seconds",
        "60",
        account=1,
    )
    assert f"uploaded the manifest and 2 input(s) to {content_store.url}" in out
    assert content_store.local.get("keccak256", manifest_hash(parsed).hex()) == canonical_json(parsed)
    assert content_store.local.get("sha256", parsed.inputs.files[0].sha256) == b"\x01" * 100


def test_job_post_to_several_stores_uploads_to_each_and_lists_them_as_mirrors(
    ape_run, sdk, content_store, manifest_file, tmp_path
):
    from computenet.localnet import ServedApp
    from computenet.store import LocalStore, app

    second = ServedApp(app(LocalStore(tmp_path / "second")))
    try:
        ape_run.ok("faucet", "100", account=1)
        (tmp_path / "x.txt").write_text("input")
        files = [{"path": "x.txt", "size": 5, "sha256": hashlib.sha256(b"input").hexdigest()}]
        root = "0x" + MerkleTree.from_files({"x.txt": b"input"}).root.hex()
        path = manifest_file(inputs={"files": files, "root": root})
        out = ape_run.ok(
            "job",
            "post",
            str(path),
            "--store",
            f"{content_store.url},{second.url}",
            "--store",
            content_store.url,  # named twice: once is enough
            "--max-price",
            "0.0005",
            "--max-gpu-seconds",
            "60",
            account=1,
        )
        assert f"the manifest lists 2 mirrors: {content_store.url}, {second.url}" in out
        assert f"uploaded the manifest and 1 input(s) to {content_store.url}, {second.url}" in out
        posted = parse_manifest(path.read_bytes()).model_copy(update={"stores": [content_store.url, second.url]})
        mhash = manifest_hash(posted)
        job_id = int(out.split("job ", 1)[1].split(" posted", 1)[0])
        assert sdk.job(job_id).manifest_hash == mhash  # the mirrors are part of what the job commits to
        for store in (content_store.local, LocalStore(tmp_path / "second")):
            assert parse_manifest(store.get("keccak256", mhash.hex())).stores == [content_store.url, second.url]
            assert store.get("sha256", files[0]["sha256"]) == b"input"
    finally:
        second.stop()
