"""The README's manual path, command by command, as a user types it: a node started by hand,
`ape run` for every on-chain step, a content store, one agent serving its signed heartbeats
and outputs at the endpoint recorded on chain, and two keepers of different operators that
share nothing but the chain (each its own key, name and Redis). The job completes, its
outputs are fetched and checked against the chain, and the provider withdraws its pay.

Every command runs as its own subprocess with the environment a user would have; the only
shortcut is that the test polls the chain directly between commands instead of re-running
`ape run job status` in a loop (it runs it once, at the end)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from chain_clock import WindowSkipper

from computenet.localnet import Anvil, ProcessGroup, RedisServer, free_port, http_ok, wait_until
from computenet.market import Market

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
ANVIL_DIR = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin"
TOKEN = 10**6

# anvil's default test keys (ape's TEST::n): the roles of the README's walk-through.
DEPLOYER, CLIENT, PROVIDER, KEEPER_A, KEEPER_B, AGENT = 0, 1, 2, 4, 5, 6


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{ANVIL_DIR}:{env.get('PATH', '')}"
    env.update(extra)
    return env


class Shell:
    """Runs commands as a user would, each a subprocess in the repository root; a failing one
    fails the test with its output."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env, self.logdir, self.group = env, logdir, ProcessGroup()
        self.transcript: list[str] = []
        self.names: list[str] = []  # of the background processes, in the group's order

    def run(self, *argv: str, timeout: float = 180, env: dict[str, str] | None = None) -> str:
        self.transcript.append("$ " + " ".join(argv))
        done = subprocess.run(
            list(argv),
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = done.stdout + done.stderr
        self.transcript.append(output)
        assert done.returncode == 0, f"`{' '.join(argv)}` exited {done.returncode}:\n{output}"
        return output

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        self.transcript.append("$ " + " ".join(argv) + " &")
        self.names.append(name)
        return self.group.spawn(list(argv), self.logdir / f"{name}.log", env={**self.env, **(env or {})})

    def check_alive(self) -> bool:
        """False while every background role runs; one that died fails the test with its log."""
        for process, name in zip(self.group.processes, self.names):
            if process.poll() is not None:
                raise AssertionError(f"{name} exited {process.returncode}:\n{self.log(name)[-4000:]}")
        return False

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def shell(tmp_path, docker_engine):
    env = _env(COMPUTENET_DEPLOYMENTS=str(tmp_path / "deployments.json"))
    if docker_engine.host:
        env["DOCKER_HOST"] = docker_engine.host
    sh = Shell(env, tmp_path)
    yield sh
    sh.group.stop()
    (tmp_path / "transcript.txt").write_text("\n".join(sh.transcript))


def test_the_readme_manual_path_runs_a_job_from_deploy_to_withdraw(shell, tmp_path):
    (tmp_path / "redis-a").mkdir()
    (tmp_path / "redis-b").mkdir()
    node = Anvil(block_time=1, log=tmp_path / "anvil.log")  # "anvil --block-time 1", started by hand
    redis_a = RedisServer(tmp_path / "redis-a", log=tmp_path / "redis-a.log")  # each keeper operator's own
    redis_b = RedisServer(tmp_path / "redis-b", log=tmp_path / "redis-b.log")
    try:
        _walk(shell, tmp_path, node, redis_a, redis_b)
    finally:
        shell.group.stop()
        redis_a.stop()
        redis_b.stop()
        node.stop()


def _walk(sh: Shell, tmp: Path, node: Anvil, redis_a: RedisServer, redis_b: RedisServer) -> None:
    from web3 import Web3

    net = node.uri
    web3 = Web3(Web3.HTTPProvider(net))
    test = [web3.eth.accounts[i] for i in range(10)]

    # 1. Deploy, and fund the client, the provider and the keepers from the test token's faucet.
    sh.run("ape", "run", "deploy", "--network", net, "--account", f"TEST::{DEPLOYER}", "--challenge-window", "60")
    record = next(iter(json.loads(Path(sh.env["COMPUTENET_DEPLOYMENTS"]).read_text()).values()))
    for who, amount in ((CLIENT, "1000"), (PROVIDER, "500"), (KEEPER_A, "200"), (KEEPER_B, "200")):
        sh.run("ape", "run", "faucet", "--network", net, "--account", f"TEST::{who}", amount)

    # 2. The provider's machine: a content store, the job image, the node registered with its
    #    agent's key and endpoint, and the agent.
    store_port, agent_port = free_port(), free_port()
    store_url, endpoint = f"http://127.0.0.1:{store_port}", f"http://127.0.0.1:{agent_port}"
    sh.start(
        "store", str(BIN / "python"), "-m", "agent", "store", "--dir", str(tmp / "store"), "--port", str(store_port)
    )
    wait_until(lambda: http_ok(f"{store_url}/docs"), 30, "the content store to answer")
    image = re.search(r"\S+@sha256:[0-9a-f]{64}", sh.run(str(BIN / "python"), "-m", "agent", "image")).group(0)
    sh.run(
        "ape",
        "run",
        "provider",
        "register",
        "--network",
        net,
        "--account",
        f"TEST::{PROVIDER}",
        "--agent",
        test[AGENT],
        "--cpu-cores",
        "2",
        "--price",
        "0.001",
        "--stake",
        "200",
        "--endpoint",
        endpoint,
    )
    agent_env = {
        "COMPUTENET_AGENT_NETWORK": net,
        "COMPUTENET_AGENT_ACCOUNT": f"TEST::{AGENT}",
        "COMPUTENET_AGENT_ASSETS": "1",
        "COMPUTENET_AGENT_STORE_URL": store_url,
        "COMPUTENET_AGENT_OUTPUTS_PORT": str(agent_port),
        "COMPUTENET_AGENT_WORK_DIR": str(tmp / "agent"),
        "COMPUTENET_AGENT_MEMORY_MIB": "256",
    }
    agent = sh.start("agent", str(BIN / "python"), "-m", "agent", "run", env=agent_env)
    wait_until(lambda: agent.poll() is not None or http_ok(f"{endpoint}/heartbeats"), 90, "the agent's endpoint")
    assert agent.poll() is None, sh.log("agent")

    # 3. Two keeper operators: each bonds its own key and runs its own Redis, sharing only the chain.
    keepers = {}
    for name, who, redis in (("keeper-a", KEEPER_A, redis_a), ("keeper-b", KEEPER_B, redis_b)):
        sh.run("ape", "run", "keeper", "bond", "--network", net, "--account", f"TEST::{who}", "100")
        env = {
            "COMPUTENET_KEEPER_NETWORK": net,
            "COMPUTENET_KEEPER_ACCOUNT": f"TEST::{who}",
            "COMPUTENET_KEEPER_NAME": name,
            "COMPUTENET_KEEPER_REDIS_URL": redis.url(),
            "COMPUTENET_KEEPER_METRICS_PORT": "0",
        }
        keepers[name] = env
        sh.start(name, str(BIN / "python"), "-m", "keepers", "start", "--workers", "1", env=env)

    # 4. The client: a manifest over the job's files, posted with its inputs uploaded.
    job_dir = tmp / "job"
    (job_dir / "data").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "hashing" / "hash_shard.py", job_dir / "hash_shard.py")
    for i in range(4):
        (job_dir / "data" / f"part-{i}.txt").write_text(f"record {i}\n" * 100)
    manifest = tmp / "manifest.json"
    sh.run(
        "ape",
        "run",
        "job",
        "manifest",
        "--image",
        image,
        "--inputs",
        str(job_dir),
        "--timeout",
        "60",
        "--env",
        "ROUNDS=1000000",
        "-o",
        str(manifest),
        "python3",
        "/in/hash_shard.py",
    )
    sh.run(
        "ape",
        "run",
        "job",
        "post",
        "--network",
        net,
        "--account",
        f"TEST::{CLIENT}",
        str(manifest),
        "--shards",
        "2",
        "--max-price",
        "0.001",
        "--max-gpu-seconds",
        "60",
        "--hours",
        "1",
        "--store",
        store_url,
        "--inputs",
        str(job_dir),
    )

    # 5. The job runs and, after the challenge window (its minute skipped on the chain's
    #    clock once both results are in), is finalized by a keeper.
    market = web3.eth.contract(address=record["market"], abi=_abi("JobMarket"))
    finished = market.events.JobFinished
    with WindowSkipper(web3, Market.over_web3(web3, record["market"])):
        wait_until(
            lambda: finished.get_logs(from_block=int(record["block"])) or sh.check_alive(),
            240,
            "the job to be finalized",
            interval=1,
        )
    refund = finished.get_logs(from_block=int(record["block"]))[0]["args"]["refund"]
    status = sh.run("ape", "run", "job", "status", "--network", net, "1")
    assert "finalized" in status.lower(), status

    # 6. Outputs, fetched from the agent's endpoint on chain and checked against the chain's roots.
    out = tmp / "results"
    fetched = sh.run(
        "ape", "run", "job", "outputs", "--network", net, "--account", f"TEST::{CLIENT}", "1", "0", "--to", str(out)
    )
    assert "verified" in fetched, fetched
    result = json.loads((out / "out" / "result.json").read_text())
    assert result["of"] == 2 and result["hashes"], result

    # 7. The provider withdraws what it earned: exactly its credit, in tokens.
    token = web3.eth.contract(address=record["token"], abi=_abi("TestToken"))
    credit = market.functions.credits(test[PROVIDER]).call()
    assert credit > 0, "the provider was paid nothing"
    before = token.functions.balanceOf(test[PROVIDER]).call()
    sh.run("ape", "run", "provider", "withdraw", "--network", net, "--account", f"TEST::{PROVIDER}")
    assert token.functions.balanceOf(test[PROVIDER]).call() - before == credit
    assert refund > 0  # the client's unused budget came back

    # Both operators' keepers saw the agent through its endpoint alone, and found nothing wrong
    # with it; between them they assigned both shards.
    assigned = 0
    for name, env in keepers.items():
        status = json.loads(sh.run(str(BIN / "python"), "-m", "keepers", "status", "--json", env=env))
        assert status["tracked"]["nodes"] == 1 and status["asset_reasons"] == {}, f"{name}: {status}"
        assigned += status["stats"].get("mined:assign", 0)
    assert assigned == 2


def _abi(name: str) -> list:
    built = json.loads((ROOT / ".build" / "__local__.json").read_text())
    return built["contractTypes"][name]["abi"]
