"""Agent fixtures: agent processes (`python -m agent run`) against the session's anvil, with
the session's Docker engine, job image and content store (tests/conftest.py)."""

import os
import sys
from pathlib import Path

import pytest

from computenet.localnet import ProcessGroup

REPO = Path(__file__).resolve().parents[2]


class AgentProcess(ProcessGroup):
    """One agent (`python -m agent run`) with its own work folder."""

    def __init__(self, account_index, assets, workdir, uri, deployments, store_url, docker_host, **settings):
        super().__init__()
        self.workdir = workdir
        self.env = os.environ | {
            "COMPUTENET_DEPLOYMENTS": str(deployments),
            "COMPUTENET_AGENT_NETWORK": uri,
            "COMPUTENET_AGENT_ACCOUNT": f"TEST::{account_index}",
            "COMPUTENET_AGENT_ASSETS": ",".join(map(str, assets)),
            "COMPUTENET_AGENT_STORE_URL": store_url,
            "COMPUTENET_AGENT_WORK_DIR": str(workdir),
            "COMPUTENET_AGENT_POLL_INTERVAL": "0.1",
            "COMPUTENET_AGENT_MEMORY_MIB": "256",
            "COMPUTENET_AGENT_OUTPUTS_PORT": "0",
        }
        if docker_host:
            self.env["DOCKER_HOST"] = docker_host
            self.env["COMPUTENET_AGENT_DOCKER_HOST"] = docker_host
        self.env.update({f"COMPUTENET_AGENT_{k.upper()}": str(v) for k, v in settings.items()})
        self.runs = 0

    def start(self):
        self.runs += 1
        self.spawn([sys.executable, "-m", "agent", "run"], self.workdir / f"agent-{self.runs}.log", self.env)
        return self

    def run_command(self, *args):
        """`python -m agent ARGS` with this agent's settings, to its end."""
        import subprocess

        return subprocess.run(
            [sys.executable, "-m", "agent", *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )

    def run_status(self):
        """`python -m agent status --json` for this agent's journal."""
        done = self.run_command("status", "--json")
        assert done.returncode == 0, done.stderr
        return done.stdout

    def log(self):
        return "\n".join(p.read_text() for p in sorted(self.workdir.glob("agent-*.log")))


@pytest.fixture
def make_agent(networks, deployments, content_store, docker_engine, tmp_path, stop_after):
    """Builds agent processes, each with its own work folder; stops them when the test ends."""

    def make(account, assets, **settings):
        index = next(
            i for i, a in enumerate(networks.provider.account_manager.test_accounts) if a.address == account.address
        )
        workdir = tmp_path / f"agent-{index}"
        workdir.mkdir(exist_ok=True)
        proc = AgentProcess(
            index,
            assets,
            workdir,
            networks.provider.uri,
            deployments,
            content_store.url,
            docker_engine.host,
            **settings,
        )
        stop_after(proc)
        return proc

    return make


@pytest.fixture
def cpu_asset(register_asset):
    """Registers a CPU-only asset (this machine has no GPU) for `agent_account`."""

    def register(agent_account, owner=None, **spec):
        fields = dict(gpu_model=0, vram_mib=0, gpu_count=0, cpu_cores=2, max_leases=4) | spec
        return register_asset(owner=owner, agent_account=agent_account, **fields)

    return register


@pytest.fixture
def inline_agent(stack, networks, content_store, docker_engine, tmp_path):
    """Builds an Agent in this process (its leases run by the test, one at a time, with
    `run_one`): the chain, Docker engine and content store are the session's real ones."""
    from agent.journal import Journal
    from agent.node import Agent
    from agent.settings import AgentSettings
    from computenet.market import Market
    from computenet.store import LocalStore

    built = []

    def make(account, assets, **settings):
        index = next(
            i for i, a in enumerate(networks.provider.account_manager.test_accounts) if a.address == account.address
        )
        work = tmp_path / f"inline-agent-{index}"
        fields = (
            dict(
                account=f"TEST::{index}",
                assets=assets,
                store_url=content_store.url,
                work_dir=work,
                outputs_port=0,
                memory_mib=256,
            )
            | settings
        )
        agent = Agent(
            AgentSettings(**fields),
            Market.from_stack(stack),
            account,
            docker_engine.client,
            content_store.client,
            Journal(work / "journal.sqlite"),
            LocalStore(work / "outputs"),
        )
        agent.check_assets()
        built.append(agent)
        return agent

    yield make
    for agent in built:
        for pool in agent.pools.values():
            pool.shutdown(wait=True)


@pytest.fixture
def lease_for(market, post_job, keeper, registered_keeper, content_store):
    """Publishes raw manifest bytes and inputs, posts a job on them, assigns its shard to
    `asset`; returns the Lease as the agent would see it."""

    def make(asset, raw, inputs=(), gpu_count=0, **req):
        for data in inputs:
            content_store.client.put(data)
        mhash = bytes.fromhex(str(content_store.client.put(raw)["keccak256"])) if raw is not None else b"\x77" * 32
        job = post_job(manifest_hash=mhash, gpu_count=gpu_count, min_vram_mib=0, **req)
        market.assign(job, 0, asset, sender=keeper)
        rep = market.replica(job, 0, 0)
        from agent.journal import Lease

        return Lease(int(job), 0, 0, int(rep.lease), int(asset), int(rep.deadline))

    return make
