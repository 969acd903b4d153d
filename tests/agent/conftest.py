"""Agent fixtures: a real Docker engine (this machine's, or a private dockerd started for the
session when none answers), the job image built without a registry, a content store over
HTTP, and agent processes (`python -m agent run`) against the session's anvil."""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent import image
from computenet.localnet import DockerEngine, ProcessGroup, ServiceError, docker_reachable
from computenet.manifest import build_manifest, canonical_json, manifest_hash

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Docker:
    client: object
    host: str | None  # None: the default the SDK finds (DOCKER_HOST or the system socket)


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory):
    import docker

    if docker_reachable():
        yield Docker(docker.from_env(), os.environ.get("DOCKER_HOST"))
        return
    directory = tmp_path_factory.mktemp("docker")
    try:
        engine = DockerEngine(directory, log=directory / "dockerd.log")
    except ServiceError as error:
        pytest.fail(f"no Docker engine: {error} (`make test` installs docker.io when it can)")
    yield Docker(engine.client(), engine.url)
    engine.stop()


@pytest.fixture(scope="session")
def job_image(docker_engine):
    """`computenet/python@sha256:<id>`, built from Debian's packages and imported."""
    return image.build(docker_engine.client)


@pytest.fixture
def publish_job(content_store, job_image):
    """Builds a manifest over `files`, uploads it and its inputs; returns (manifest, its hash)."""

    def publish(command, files, env=None, image_ref=None, timeout_seconds=60, max_output_bytes=1 << 20):
        manifest = build_manifest(image_ref or job_image, command, files, env=env, timeout_seconds=timeout_seconds,
                                  max_output_bytes=max_output_bytes)  # fmt: skip
        for data in files.values():
            content_store.client.put(data)
        content_store.client.put(canonical_json(manifest))
        return manifest, manifest_hash(manifest)

    return publish


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
            "COMPUTENET_AGENT_REDIS_URL": "",
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

        return subprocess.run([sys.executable, "-m", "agent", *args], cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip

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
        index = next(i for i, a in enumerate(networks.provider.account_manager.test_accounts) if a.address == account.address)
        workdir = tmp_path / f"agent-{index}"
        workdir.mkdir(exist_ok=True)
        proc = AgentProcess(index, assets, workdir, networks.provider.uri, deployments, content_store.url,
                            docker_engine.host, **settings)  # fmt: skip
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
