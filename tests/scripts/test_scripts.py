"""The `ape run` scripts as a user runs them: a process per command against this session's anvil
(forked with ape and the scripts' imports already loaded: see prewarmed.py).

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
from prewarmed import PrewarmedApe
from web3 import Web3

from agent.outputs import app as outputs_app
from computenet.domain import Requirements, Spec, Verification
from computenet.localnet import ServedApp
from computenet.manifest import build_manifest, canonical_json, manifest_hash, parse_manifest
from computenet.market import Market
from computenet.merkle import MerkleTree
from computenet.store import LocalStore

REPO = Path(__file__).resolve().parents[2]
ANVIL_BIN = REPO / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin"
TOKEN = 10**6
ZERO_ROOT = "0x" + "00" * 32
ENV = os.environ | {"PATH": f"{REPO / '.venv' / 'bin'}:{ANVIL_BIN}:{os.environ.get('PATH', '')}"}
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
    """`ape run SCRIPT ARGS --network URI [--account TEST::n]`, its deployments in `deployments`."""

    def __init__(self, uri: str, deployments: Path, ape: PrewarmedApe):
        self.uri = uri
        self.deployments = deployments
        self.ape = ape

    def __call__(self, *args: str, account: int | None = None) -> subprocess.CompletedProcess:
        command = ["run", *args, "--network", self.uri]
        if account is not None:
            command += ["--account", f"TEST::{account}"]
        return self.ape.run(command, env={"COMPUTENET_DEPLOYMENTS": str(self.deployments)}, timeout=120)

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
def ape_run(networks, tmp_path_factory, redis_server, content_store):
    # The session services start here, before the first snapshot: requested first by a late
    # test, they would make ape rebase its isolation snapshots.
    folder = tmp_path_factory.mktemp("scripts")
    ape = PrewarmedApe(REPO / ".venv" / "bin" / "python", REPO, ENV, folder / "commands")
    yield ApeRun(networks.provider.uri, folder / "deployments.json", ape)
    ape.close()


@pytest.fixture(scope="module")
def deployed(ape_run, accounts):
    """Deploys with the script, making accounts[7] a facilitator; returns (record, stdout)."""
    out = ape_run.ok("deploy", "--facilitator", accounts[7].address, account=0)
    records = json.loads(ape_run.deployments.read_text())
    assert list(records) == [ape_run.uri]  # under the network as it was given
    return records[ape_run.uri], out


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


def test_deploy_records_the_contracts(deployed, chain, sdk, accounts):
    record, out = deployed
    assert set(record) == {
        "token",
        "assets",
        "keepers",
        "market",
        "court",
        "models",
        "attestations",
        "relay",
        "funder",
        "chain_id",
        "block",
        "rpc",
    }
    assert record["chain_id"] == chain.chain_id and record["rpc"] == chain.provider.uri
    assert 0 < record["block"] <= chain.blocks.height
    for role in ("token", "assets", "keepers", "market", "court", "models", "attestations", "relay", "funder"):
        assert len(chain.provider.get_code(record[role])) > 0, role
        assert f"{role:8} {record[role]}" in out
    assert "recorded in" in out
    # linked to each other as deploy_stack promises
    assert sdk.market.TOKEN() == record["token"]
    assert sdk.market.ASSETS() == record["assets"]
    assert sdk.market.KEEPERS() == record["keepers"]
    assert sdk.market.COURT() == record["court"] == sdk.court.address
    assert sdk.court.MARKET() == record["market"]
    assert sdk.market.PROVER() == record["models"] == sdk.models.address
    assert sdk.models.MARKET() == record["market"]
    assert sdk.market.RELAY() == record["relay"] == sdk.relay.address
    assert sdk.market.FUNDER() == record["funder"] == sdk.funder.address
    assert (sdk.funder.MARKET(), sdk.funder.TOKEN()) == (record["market"], record["token"])
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
        "--memory-mib",
        "491520",
        "--disk-mib",
        "3500000",
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
    assert (asset.spec.memory_mib, asset.spec.disk_mib) == (491_520, 3_500_000)
    assert asset.stake.amount == 500 * TOKEN

    listing = ape_run.ok("provider", "list", account=3).splitlines()
    row = next(line for line in listing if line.split()[:1] == ["1"])
    assert row.split()[:10] == ["1", "8", "81920", "64", "491520", "3500000", "0.0004", "500", "0", "active"]

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
        "--cpu-cores",
        "4",
        "--memory-mib",
        "8192",
        "--disk-mib",
        "20000",
        account=1,
    )
    # 500 base units per GPU-second × 600 × 2 shards, plus 1 % + 0.5 % fees
    assert "job 1 posted: 2 shard(s) × 1, budget 0.609 escrowed" in out
    job = sdk.job(1)
    assert job.client == client.address and job.escrow == 609_000
    assert job.requirements.shard_count == 2 and job.requirements.min_vram_mib == 16_384
    assert job.requirements.demand() == (1, 4, 8_192, 20_000)
    # two hours from when the script read the clock, a few blocks before the post landed
    assert 0 <= chain.blocks.head.timestamp + 7_200 - job.requirements.deadline <= 60
    assert f"manifest hash 0x{job.manifest_hash.hex()}" in out

    status = ape_run.ok("job", "status", "1").splitlines()
    assert any(f"job 1 by {client.address}: 2 shard(s) × 1, escrow 0.609, 2 unfinished" in line for line in status)
    assert [line.split() for line in status if line.lstrip().startswith("shard")] == [
        ["shard", "0", "open", "r0:open"],
        ["shard", "1", "open", "r0:open"],
    ]
    # each open replica says why it waits: no asset here takes a 1-GPU job
    reasons = [line.strip() for line in status if line.lstrip().startswith("r0:")]
    assert len(reasons) == 2 and all(r.startswith("r0: no eligible asset: ") for r in reasons), status

    # someone else's job: refused before anything is sent
    assert ape_run.fails("job", "cancel", "1", "0", account=2) == "would revert: job_market: caller is not the client"
    assert "job 1: 1 shard(s) cancelled" in ape_run.ok("job", "cancel", "1", "0", account=1)
    status = ape_run.ok("job", "status", "1")
    assert "shard    0  cancelled  r0:cancelled\n         r0: cancelled" in status
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


def test_deploy_refuses_a_node_ape_would_throw_away(ape_run, tmp_path):
    """With no node at the configured host ape-foundry launches an anvil of its own, which
    stops when the command exits: the deployment would vanish, so the script refuses."""
    records = tmp_path / "deployments.json"
    env = ENV | {"COMPUTENET_DEPLOYMENTS": str(records)}
    command = [str(REPO / ".venv" / "bin" / "ape"), "run", "deploy", "--network", "ethereum:local:foundry"]
    done = subprocess.run(
        [*command, "--account", "TEST::0"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Start a node first (`anvil`), then deploy to it: ape run deploy --network http://127.0.0.1:8545" in (
        done.stderr
    )
    assert not records.exists()


def test_deploy_off_local_chain_requires_token(ape_run, sepolia_like_node, accounts):
    """`ape run deploy` on a public network without --token stops before sending anything."""
    uri, w3 = sepolia_like_node
    public = ApeRun(uri, ape_run.deployments.with_name("public.json"), ape_run.ape)
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
        env=ENV | {"COMPUTENET_DEPLOYMENTS": str(ape_run.deployments)},
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


# ---------------------------------------------------------------- every role's own commands
# One shard run through the scripts where they exist and the SDK where an agent or keeper
# bot would act: provider 3 (agent key 10) registers asset 1, client 1 posts job 1 (one
# shard), keeper 4 bonds and assigns it, and the agent submits a result of 100 GPU-seconds
# at 0.0004 per GPU-second: 40,000 base units to the provider, 400 to the keeper at
# finalization; the budget escrowed is 500 × 600 × 1.015 = 304,500.

PROVIDER, CLIENT, KEEPER, OUTSIDER, FACILITATOR, AGENT = 3, 1, 4, 5, 7, 10
OUTPUTS = {"result.txt": b"42\n", "logs/stdout.txt": b"trained\n", "model/weights.bin": bytes(range(256)) * 4}
ESCROW = 304_500
PAYMENT, KEEPER_FEE = 40_000, 400


def move_clock(chain, seconds):
    """Moves the chain's clock on and mines a block, so scripts read the new time too."""
    chain.mine(timestamp=chain.pending_timestamp + seconds)


@pytest.fixture
def run_shard(sdk, accounts, manifest_file, chain):
    """Registers, posts, bonds, assigns and submits the shard above through the SDK (the
    commands that do each step have their own tests); returns the submitted root."""

    def run(outputs=OUTPUTS, endpoint=""):
        provider, client, keeper = accounts[PROVIDER], accounts[CLIENT], accounts[KEEPER]
        for who, tokens in ((provider, 5_000), (client, 100), (keeper, 1_000)):
            sdk.token.faucet(who, tokens * TOKEN, sender=who)
        spec = Spec(
            gpu_model=1,
            vram_mib=81_920,
            gpu_count=1,
            cpu_cores=8,
            region=0,
            price=400,  # 0.0004 per GPU-second
            expire=chain.pending_timestamp + 30 * 86_400,
            max_leases=1,
        )
        asset = sdk.register_asset(spec, accounts[AGENT], b"\x11" * 32, sender=provider, endpoint=endpoint)
        sdk.add_stake(asset, 500 * TOKEN, sender=provider)
        req = Requirements(
            min_vram_mib=16_384,
            gpu_count=1,
            max_price=500,  # 0.0005
            max_gpu_seconds=600,
            deadline=chain.pending_timestamp + 2 * 3_600,
            shard_count=1,
            replication=1,
            verification=Verification.OPTIMISTIC,
        )
        sdk.post_job(manifest_hash(parse_manifest(manifest_file().read_bytes())), req, sender=client)
        assert sdk.register_keeper(100 * TOKEN, sender=keeper) == 1
        sdk.assign(1, 0, asset, sender=keeper)
        move_clock(chain, 100)
        root = MerkleTree.from_files(outputs).root
        sdk.submit_result(1, 0, 0, root, 100, 0, accounts[AGENT].private_key, sender=provider)
        return root

    return run


def finalize(sdk, chain, accounts):
    move_clock(chain, 601)  # past the challenge window
    sdk.finalize(1, 0, sender=accounts[KEEPER])


def test_keeper_bond_info_unbond_withdraw(ape_run, sdk, accounts, chain, run_shard):
    keeper = accounts[KEEPER]
    run_shard()
    finalize(sdk, chain, accounts)
    info = ape_run.ok("keeper", "info", account=KEEPER).splitlines()
    head = info.index(f"keeper 1: {keeper.address}")
    assert [line.split() for line in info[head + 1 :]] == [["bond", "100"], ["state", "active"], ["credits", "0.0004"]]

    # fees now; the bond only after unbonding and its delay
    before = sdk.token.balanceOf(keeper)
    out = ape_run.ok("keeper", "withdraw", account=KEEPER)
    assert f"fees: 0.0004 paid to {keeper.address}" in out
    assert sdk.token.balanceOf(keeper) - before == KEEPER_FEE
    assert sdk.credits(keeper) == 0
    out = ape_run.ok("keeper", "unbond", account=KEEPER)
    exit_at = sdk.keeper(keeper).exit_at
    assert f"keeper 1: stopped assigning; bond 100 withdrawable from {exit_at} (unix time)" in out
    assert exit_at > 0
    assert ape_run.fails("keeper", "unbond", account=KEEPER) == (
        f"keeper 1 is already unbonding; its bond can be withdrawn from {exit_at} (unix time)"
    )
    assert ape_run.fails("keeper", "withdraw", account=KEEPER) == (
        f"nothing to withdraw: no fee credits in the market, and the bond is unbonding until {exit_at} (unix time)"
    )
    assert "unbonding (exit at" in ape_run.ok("keeper", "info", account=KEEPER)
    move_clock(chain, 86_400)
    before = sdk.token.balanceOf(keeper)
    out = ape_run.ok("keeper", "withdraw", account=KEEPER)
    assert f"bond: 100 paid to {keeper.address}; keeper 1 deregistered" in out
    assert sdk.token.balanceOf(keeper) - before == 100 * TOKEN
    assert sdk.keeper(keeper).id == 0
    assert "is not a keeper (minimum bond 100)" in ape_run.ok("keeper", "info", account=KEEPER)


def test_keeper_bond_refusals_change_nothing(ape_run, sdk, accounts):
    outsider = accounts[OUTSIDER]
    ape_run.ok("faucet", "500", account=OUTSIDER)
    assert ape_run.fails("keeper", "bond", "50", account=OUTSIDER) == (
        "a bond of 50 is below the registry's minimum of 100"
    )
    assert ape_run.fails("keeper", "bond", "600", account=OUTSIDER) == (
        "would revert: ERC20: transfer amount exceeds balance"
    )
    assert sdk.keeper(outsider).id == 0 and sdk.token.balanceOf(outsider) == 500 * TOKEN
    assert ape_run.fails("keeper", "unbond", account=OUTSIDER) == "would revert: keeper_registry: not a keeper"
    assert ape_run.fails("keeper", "withdraw", account=OUTSIDER) == (
        "nothing to withdraw: no fee credits in the market, and the account is not a keeper"
    )
    ape_run.ok("keeper", "bond", "200", account=OUTSIDER)
    assert sdk.keeper(outsider).bond == 200 * TOKEN and sdk.token.balanceOf(outsider) == 300 * TOKEN
    assert ape_run.fails("keeper", "bond", "100", account=OUTSIDER) == (
        f"{outsider.address} is already keeper 1 with a bond of 200; "
        "a bond cannot be topped up: unbond, withdraw and bond again"
    )
    assert sdk.keeper(outsider).bond == 200 * TOKEN and sdk.token.balanceOf(outsider) == 300 * TOKEN


def test_provider_endpoint_and_withdraw(ape_run, sdk, accounts, chain, run_shard):
    provider = accounts[PROVIDER]
    run_shard(OUTPUTS, endpoint="https://node1.example.com:8701")
    assert sdk.endpoint(1) == "https://node1.example.com:8701"
    listing = ape_run.ok("provider", "list", account=PROVIDER).splitlines()
    head = next(i for i, line in enumerate(listing) if line.split()[:1] == ["asset"])
    assert listing[head].split()[-2:] == ["expires", "endpoint"]
    assert listing[head + 1].split()[-1] == "https://node1.example.com:8701"

    assert ape_run.fails("provider", "set-endpoint", "1", "ftp://node1.example.com", account=PROVIDER) == (
        "endpoint 'ftp://node1.example.com' is not an http:// or https:// URL"
    )
    assert ape_run.fails("provider", "set-endpoint", "1", "https://elsewhere.example.com", account=OUTSIDER) == (
        "would revert: compute_asset: caller is not owner nor approved"
    )
    assert ape_run.fails("provider", "set-endpoint", "9", "https://elsewhere.example.com", account=PROVIDER) == (
        "would revert: erc721: unknown token"
    )
    assert sdk.endpoint(1) == "https://node1.example.com:8701"
    out = ape_run.ok("provider", "set-endpoint", "1", "http://10.0.0.7:8701", account=PROVIDER)
    assert "asset 1 endpoint: http://10.0.0.7:8701" in out
    assert sdk.endpoint(1) == "http://10.0.0.7:8701"
    listing = ape_run.ok("provider", "list", account=PROVIDER).splitlines()
    assert next(line for line in listing if line.split()[:1] == ["1"]).split()[-1] == "http://10.0.0.7:8701"

    assert ape_run.fails("provider", "withdraw", account=PROVIDER) == (
        f"nothing to withdraw: {provider.address} has no credits in the market"
    )
    finalize(sdk, chain, accounts)
    assert (
        ape_run.fails("provider", "withdraw", "--to", "0x1234", account=PROVIDER) == "--to '0x1234' is not an address"
    )
    before = sdk.token.balanceOf(provider)
    assert f"0.04 paid to {provider.address}" in ape_run.ok("provider", "withdraw", account=PROVIDER)
    assert sdk.token.balanceOf(provider) - before == PAYMENT
    assert sdk.credits(provider) == 0


@pytest.fixture
def serve_outputs(sdk, chain, tmp_path):
    """`serve(files)` serves `files` as job 1 shard 0 replica 0's result with the agent's own
    outputs service (agent/outputs.py), answering only the job's client; returns its URL."""
    served = []

    def serve(files):
        work = tmp_path / f"work-{len(served)}"
        store = LocalStore(tmp_path / f"store-{len(served)}")
        folder = work / "computenet-1-0-0-1"
        folder.mkdir(parents=True)
        index = {
            "root": "0x" + MerkleTree.from_files(files).root.hex(),
            "files": {path: store.put(data)["sha256"] for path, data in files.items()},
        }
        (folder / "outputs.json").write_text(json.dumps(index))

        def allowed(job, shard, replica, caller):
            return caller.lower() == sdk.job(job).client.lower()

        app = ServedApp(outputs_app(work, store, chain.chain_id, sdk.asset(1).agent, allowed))
        served.append(app)
        return app.url

    yield serve
    for app in served:
        app.stop()


def test_job_outputs_fetched_and_verified(ape_run, sdk, accounts, run_shard, serve_outputs, tmp_path):
    run_shard()
    url = serve_outputs(OUTPUTS)
    to = tmp_path / "results"
    assert ape_run.fails("job", "outputs", "1", "0", "--to", str(to), account=CLIENT) == (
        "asset 1 records no endpoint on chain; pass --endpoint URL"
    )
    out = ape_run.ok("job", "outputs", "1", "0", "--to", str(to), "--endpoint", url, account=CLIENT)
    for path, data in OUTPUTS.items():
        assert f"{path}  {len(data)} bytes  verified" in out
        assert (to / path).read_bytes() == data
    assert sorted(p.relative_to(to).as_posix() for p in to.rglob("*") if p.is_file()) == sorted(OUTPUTS)
    root = sdk.replica(1, 0, 0).output_root
    assert f"job 1 shard 0 replica 0: 3 file(s), 1035 bytes, all in the on-chain root 0x{root.hex()}" in out

    # the asset's on-chain endpoint serves as well; only the job's client may read
    sdk.set_endpoint(1, url, sender=accounts[PROVIDER])
    again = tmp_path / "again"
    assert "verified" in ape_run.ok("job", "outputs", "1", "0", "--replica", "0", "--to", str(again), account=CLIENT)
    assert (again / "result.txt").read_bytes() == b"42\n"
    stranger = tmp_path / "stranger"
    message = ape_run.fails("job", "outputs", "1", "0", "--to", str(stranger), account=OUTSIDER)
    assert message.startswith("asset 1's agent answered 403 to GET /outputs/1/0/0")
    assert not stranger.exists()


def test_job_outputs_refuses_a_file_not_in_the_root(ape_run, sdk, run_shard, serve_outputs, tmp_path):
    run_shard()
    tampered = OUTPUTS | {"logs/stdout.txt": b"trained well\n"}  # not what the agent committed to
    url = serve_outputs(tampered)
    to = tmp_path / "results"
    message = ape_run.fails("job", "outputs", "1", "0", "--to", str(to), "--endpoint", url, account=CLIENT)
    root = sdk.replica(1, 0, 0).output_root
    assert (
        message == f"asset 1's agent sent a logs/stdout.txt that is not in the replica's on-chain root 0x{root.hex()}"
    )
    assert not to.exists()  # nothing unverified is written
    assert ape_run.fails("job", "outputs", "1", "0", "--replica", "1", "--endpoint", url, account=CLIENT) == (
        "job 1 has no replica 1 (replication 1)"
    )
    assert ape_run.fails("job", "outputs", "9", "0", "--endpoint", url, account=CLIENT) == "no job 9"


def test_job_challenge_dispute_and_withdraw(ape_run, sdk, accounts, chain, run_shard):
    challenger, client = accounts[OUTSIDER], accounts[CLIENT]
    run_shard()
    assert "job 1 shard 0: no dispute" in ape_run.ok("job", "dispute", "1", "0")
    ape_run.ok("faucet", "100", account=OUTSIDER)
    # the shard's own provider may not challenge it: refused before anything is sent
    assert ape_run.fails("job", "challenge", "1", "0", account=PROVIDER) == (
        "would revert: dispute_court: provider cannot challenge its shard"
    )
    assert ape_run.fails("job", "challenge", "1", "1", account=OUTSIDER) == "would revert: dispute_court: unknown shard"
    assert sdk.replica(1, 0, 0).state.name == "SUBMITTED"
    assert sdk.token.balanceOf(challenger) == 100 * TOKEN

    out = ape_run.ok("job", "challenge", "1", "0", account=OUTSIDER)
    deadline = sdk.court.ruling_deadline(1, 0)
    assert f"job 1 shard 0 challenged: bond 10 posted, replica(s) r0 disputed, to be ruled on by {deadline}" in out
    assert sdk.token.balanceOf(challenger) == 90 * TOKEN
    status = ape_run.ok("job", "dispute", "1", "0").splitlines()
    head = status.index("job 1 shard 0: dispute open")
    assert [line.split() for line in status[head + 1 :]] == [
        ["challenger", challenger.address],
        ["bond", "10"],
        ["disputed", "r0"],
        ["ruling", "deadline", str(deadline)],
    ]
    assert ape_run.fails("job", "challenge", "1", "0", account=OUTSIDER) == (
        "would revert: job_market: dispute already open"
    )

    sdk.resolve_replicas(1, 0, [0], sender=accounts[FACILITATOR])
    status = ape_run.ok("job", "dispute", "1", "0").splitlines()
    head = status.index("job 1 shard 0: dispute resolved")
    assert [line.split() for line in status[head + 1 :]] == [
        ["challenger", challenger.address],
        ["bond", "10"],
        ["ruled", "by", accounts[FACILITATOR].address],
        ["upheld", "0"],
        ["rejected", "r0"],
    ]

    # the challenger proved the result wrong: its bond back plus the reward
    credited = sdk.credits(challenger)
    assert credited > 10 * TOKEN
    before = sdk.token.balanceOf(challenger)
    ape_run.ok("job", "withdraw", account=OUTSIDER)
    assert sdk.token.balanceOf(challenger) - before == credited

    # the client cancels the reopened shard: the whole budget comes back
    assert ape_run.fails("job", "withdraw", account=CLIENT) == (
        f"nothing to withdraw: {client.address} has no credits in the market"
    )
    ape_run.ok("job", "cancel", "1", "0", account=CLIENT)
    before = sdk.token.balanceOf(client)
    assert f"0.3045 paid to {client.address}" in ape_run.ok("job", "withdraw", account=CLIENT)
    assert sdk.token.balanceOf(client) - before == ESCROW
    assert ape_run.fails("job", "dispute", "9", "0") == "no job 9"


def test_market_decline_and_withdraw_many(ape_run, sdk, accounts, chain, run_shard, manifest_file):
    """The Market actions no command sends itself: an agent's decline, and a batch payout."""
    from computenet.errors import ContractRevert

    run_shard()
    finalize(sdk, chain, accounts)
    provider, keeper = accounts[PROVIDER], accounts[KEEPER]
    before = (sdk.token.balanceOf(provider), sdk.token.balanceOf(keeper))
    assert sdk.withdraw_many([provider, keeper], sender=accounts[OUTSIDER]) == PAYMENT + KEEPER_FEE
    assert (sdk.token.balanceOf(provider) - before[0], sdk.token.balanceOf(keeper) - before[1]) == (PAYMENT, KEEPER_FEE)
    with pytest.raises(ContractRevert, match="would revert: settlement: nothing to withdraw"):
        sdk.withdraw_many([provider, keeper], sender=accounts[OUTSIDER])

    ape_run.ok("faucet", "100", account=CLIENT)
    ape_run.ok(
        "job",
        "post",
        str(manifest_file()),
        "--gpus",
        "1",
        "--max-price",
        "0.0005",
        "--max-gpu-seconds",
        "60",
        account=CLIENT,
    )
    sdk.assign(2, 0, 1, sender=keeper)
    with pytest.raises(ContractRevert, match="would revert: job_market: caller is not the asset's agent"):
        sdk.decline(2, 0, 0, b"image not found", sender=provider)
    assert sdk.replica(2, 0, 0).state.name == "ASSIGNED"
    sdk.decline(2, 0, 0, b"image not found", sender=accounts[AGENT])
    assert sdk.replica(2, 0, 0).state.name == "OPEN"
    with pytest.raises(ContractRevert, match="would revert: job_market: replica not assigned"):
        sdk.decline(2, 0, 0, b"image not found", sender=accounts[AGENT])


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


def load_zk_helpers():
    """tests/zk/zk_helpers.py, by its path (tests/zk is not on sys.path here)."""
    import importlib.util

    found = importlib.util.spec_from_file_location("zk_helpers", REPO / "tests" / "zk" / "zk_helpers.py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def test_job_status_shows_a_zk_jobs_model_and_its_proven_shard(ape_run, sdk, accounts, chain, tmp_path):
    from computenet import zk

    blobs = zk.ModelArtifacts.load(zk.EXAMPLE_MODEL)  # not the session fixture: ape would rebase isolation
    zk_helpers = load_zk_helpers()
    provider, client, keeper, agent = (accounts[i] for i in (PROVIDER, CLIENT, KEEPER, AGENT))
    for who, tokens in ((provider, 5_000), (client, 100), (keeper, 1_000)):
        sdk.token.faucet(who, tokens * TOKEN, sender=who)
    expire = chain.pending_timestamp + 86_400
    spec = Spec(gpu_model=1, vram_mib=81_920, gpu_count=1, cpu_cores=8, region=0, price=400, expire=expire)
    asset = sdk.register_asset(spec, agent, b"\x11" * 32, sender=provider)
    sdk.add_stake(asset, 500 * TOKEN, sender=provider)
    sdk.register_keeper(100 * TOKEN, sender=keeper)
    model = zk_helpers.register_model(sdk, blobs, accounts[0])
    req = Requirements(
        min_vram_mib=16_384,
        gpu_count=1,
        max_price=500,
        max_gpu_seconds=600,
        deadline=chain.pending_timestamp + 2 * 3_600,
        shard_count=2,
        replication=1,
        verification=Verification.ZK,
    )
    job, files = zk_helpers.post_zk_job(sdk, blobs, model, client, req)
    sdk.assign(job, 0, asset, sender=keeper)
    zk_helpers.prove_and_submit(sdk, chain, blobs, files, job, 0, agent, provider, tmp_path)

    status = ape_run.ok("job", "status", str(job)).splitlines()

    assert any(f"job {job} by {client.address}: 2 shard(s) × 1, verification zk, escrow " in line for line in status)
    assert f"  model 0x{model.hex()}" in status
    assert [line.split() for line in status if line.lstrip().startswith("shard")] == [
        ["shard", "0", "finalized", f"r0:proven@asset{asset}"],
        ["shard", "1", "open", "r0:open"],
    ]


def test_job_post_refuses_a_zk_job_its_agents_could_not_prove(ape_run, sdk, accounts, tmp_path):
    from computenet import zk

    blobs = zk.ModelArtifacts.load(zk.EXAMPLE_MODEL)

    zk_helpers = load_zk_helpers()
    words = zk.quantize(blobs.samples()[0]["x"], blobs.input_scale)
    files = {zk.input_path(0): zk.encode_words(words), zk.input_path(1): zk.encode_words(words[:3])}
    for path, data in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    manifest = tmp_path / "manifest.json"
    built = build_manifest(IMAGE, ["true"], files, timeout_seconds=10, max_output_bytes=1024)
    manifest.write_bytes(canonical_json(built))
    post = ("job", "post", str(manifest), "--max-price", "0.0001", "--max-gpu-seconds", "60", "--verification", "zk")
    count = sdk.job_count()

    assert ape_run.fails(*post, account=CLIENT) == "--model goes with --verification zk, and zk needs it"
    unregistered = "0x" + "ab" * 32
    assert ape_run.fails(*post, "--model", unregistered, account=CLIENT) == (
        f"--model: no model {unregistered} is registered on this chain"
    )
    model = zk_helpers.register_model(sdk, blobs, accounts[0])
    too_few = ape_run.fails(*post, "--shards", "2", "--model", "0x" + model.hex(), account=CLIENT)
    assert too_few == f"zk: input zk/1.bin has 3 words, the model takes {blobs.input_words}"
    missing = ape_run.fails(*post, "--shards", "3", "--model", "0x" + model.hex(), account=CLIENT)
    assert missing == "zk: the manifest has no input zk/2.bin for shard 2"
    assert sdk.job_count() == count  # nothing posted, nothing bound
    assert not sdk.zk_spec(accounts[CLIENT].address, manifest_hash(parse_manifest(manifest.read_bytes()))).bound


def test_tee_attestor_window_and_show(ape_run, sdk, accounts, chain):
    """The registry's owner names an attestor and sets the short window; anyone else is refused
    in one line; `tee show` prints an asset's verdict once an attestor recorded one."""
    attestor, provider, agent = accounts[OUTSIDER], accounts[PROVIDER], accounts[AGENT]
    assert ape_run.fails("tee", "attestor", attestor.address, account=OUTSIDER).startswith(
        "would revert: ownable: caller is not the owner"
    )
    assert "named attestor" in ape_run.ok("tee", "attestor", attestor.address, account=0)
    assert "stay open 30 s" in ape_run.ok("tee", "window", "30", account=0)
    assert sdk.attestations.short_window() == 30
    spec = Spec(
        gpu_model=1,
        vram_mib=81_920,
        gpu_count=1,
        cpu_cores=8,
        region=0,
        price=400,
        expire=chain.pending_timestamp + 86_400,
    )
    sdk.token.faucet(provider, 100 * TOKEN, sender=provider)
    asset = sdk.register_asset(spec, agent, b"\x11" * 32, sender=provider)
    assert ape_run.fails("tee", "show", str(asset)) == f"asset {asset} has no TEE verdict"
    now = chain.pending_timestamp
    binding = sdk.node_report_data(asset, agent.address)
    sdk.attestations.attest_node(asset, b"\x01" * 32, 1, bytes(48), 0, now - 60, now + 86_400, binding, sender=attestor)
    shown = ape_run.ok("tee", "show", str(asset))
    assert f"asset {asset}: attested" in shown and "kind        tdx" in shown and "tcb         UpToDate" in shown
    assert f"attestor    {attestor.address}" in shown
