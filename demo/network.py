"""The whole network on this machine: anvil (1 s blocks), Redis (the keepers'), a Docker engine,
the deployed contracts, four provider assets each with its own agent serving heartbeats and
outputs at the endpoint its asset records on chain, two keepers (a listener and Celery
workers each, polling those endpoints), the facilitator (with its dispute arbiter) and the
job gateway. Every process logs to one folder, and `stop` ends every process it started,
whatever happened before."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from computenet import zk
from computenet.deploy import DEFAULT_PARAMETERS, deploy_stack
from computenet.domain import Spec
from computenet.localnet import (
    Anvil,
    DockerEngine,
    ProcessGroup,
    RedisServer,
    ServedApp,
    docker_reachable,
    free_port,
    http_ok,
    wait_until,
)

TOKEN = 10**6
CHALLENGE_WINDOW = 60  # the market's minimum: results wait this long before they are paid
LEASE_GRACE = 20  # seconds a lease allows beyond the job's GPU-seconds (set-up, pull, submit)
AGENT_MEMORY_MIB = "256"  # per container, for the agents and the facilitator's re-executions alike

# Test keys (anvil's default mnemonic, ape's TEST::n): who plays which role.
OWNER, CLIENT, PROVIDERS, KEEPERS, FACILITATOR, GATEWAY, TREASURY, VERIFIER = 0, 1, (2, 3), (4, 5), 7, 9, 12, 13
AGENTS = (6, 8, 10, 11)


@dataclass(frozen=True)
class AssetPlan:
    name: str
    cpu_cores: int
    region: int
    price: int  # token base units per second (CPU-only assets meter seconds)
    provider: int
    agent: int


# Four CPU nodes (no GPU here) of different sizes and prices, over two providers.
ASSETS = (
    AssetPlan("small-eu", 2, 276, 8_000, PROVIDERS[0], AGENTS[0]),
    AssetPlan("medium-eu", 4, 276, 10_000, PROVIDERS[1], AGENTS[1]),
    AssetPlan("large-us", 8, 840, 12_000, PROVIDERS[0], AGENTS[2]),
    AssetPlan("xlarge-us", 16, 840, 15_000, PROVIDERS[1], AGENTS[3]),
)


class Network:
    """Starts and stops every part; `say` reports progress."""

    def __init__(
        self,
        logdir: Path,
        say: Callable[[str], None] = print,
        *,
        plans: tuple[AssetPlan, ...] = ASSETS,
        keepers: int = len(KEEPERS),
        max_leases: int = 4,
        agent_env: dict[str, str] | None = None,
    ) -> None:
        self.logdir = logdir
        logdir.mkdir(parents=True, exist_ok=True)
        self.say = say
        self.plans, self.keeper_count, self.max_leases = plans, keepers, max_leases
        self.agent_env = agent_env or {}
        self.groups: dict[str, ProcessGroup] = {}
        self.anvil: Anvil | None = None
        self.redis: RedisServer | None = None
        self.engine: DockerEngine | None = None
        self.store: ServedApp | None = None
        self.assets: dict[int, AssetPlan] = {}
        self.outputs: dict[int, str] = {}  # asset -> its agent's endpoint (heartbeats, outputs), as on chain

    # ------------------------------------------------------------- start

    def start(self) -> Network:
        self._services()
        self._deploy()
        self._content_store()
        self.anvil.interval_mining(1)
        self.say("anvil now mines a block every second")
        for asset in self.assets:
            self.start_agent(asset)
        for index in range(self.keeper_count):
            self.start_keeper(index)
        self._payments()
        self.start_verifier()
        self._wait_ready()
        return self

    def _services(self) -> None:
        import docker

        self.anvil = Anvil(log=self.logdir / "anvil.log")
        self.say(f"anvil on {self.anvil.uri}")
        (self.logdir / "redis").mkdir(exist_ok=True)
        self.redis = RedisServer(self.logdir / "redis", log=self.logdir / "redis.log")
        self.say(f"redis on {self.redis.url()}")
        if docker_reachable():
            self.docker_host = os.environ.get("DOCKER_HOST", "")
            self.docker = docker.from_env()
            self.say("Docker engine: the one running here")
        else:
            self.engine = DockerEngine(self.logdir / "docker", log=self.logdir / "dockerd.log")
            self.docker_host, self.docker = self.engine.url, self.engine.client()
            self.say(f"Docker engine: a private dockerd ({self.docker.info().get('Driver')})")

    def _deploy(self) -> None:
        from ape import accounts, chain, networks, project
        from ape.logging import logger

        logger.set_level("ERROR")  # not a line per confirmed transaction

        self._ape = networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": self.anvil.uri})
        self._ape.__enter__()
        test = accounts.test_accounts
        self.test = test
        params = DEFAULT_PARAMETERS.__class__(
            **{**DEFAULT_PARAMETERS.__dict__, "challenge_window": CHALLENGE_WINDOW, "lease_grace": LEASE_GRACE}
        )
        self.stack = deploy_stack(project, test[OWNER], treasury=test[TREASURY].address, parameters=params)
        token, assets, keepers, market = self.stack.token, self.stack.assets, self.stack.keepers, self.stack.market
        market.set_facilitator(test[FACILITATOR], True, sender=test[OWNER])
        test[OWNER].transfer(test[VERIFIER], 10 * 10**18)  # anvil funds only the first ten keys with ETH
        for i in (CLIENT, *PROVIDERS, *KEEPERS, VERIFIER):
            token.faucet(test[i], 100_000 * TOKEN, sender=test[i])
            for spender in (market, assets, keepers):
                token.approve(spender, 2**256 - 1, sender=test[i])
        for i in KEEPERS:
            keepers.register(100 * TOKEN, sender=test[i])
        from eth_account import Account

        self.payer = Account.create()  # the x402 client: tokens, no ETH
        token.faucet(self.payer.address, 1_000 * TOKEN, sender=test[OWNER])
        for plan in self.plans:  # anvil funds only the first ten keys with ETH; agents pay gas to submit
            if self.web3_balance(test[plan.agent].address) == 0:
                test[OWNER].transfer(test[plan.agent], 10 * 10**18)
        expire = chain.pending_timestamp + 30 * 86_400
        for plan in self.plans:
            spec = Spec(
                gpu_model=0,
                vram_mib=0,
                gpu_count=0,
                cpu_cores=plan.cpu_cores,
                region=plan.region,
                price=plan.price,
                expire=expire,
                max_leases=self.max_leases,
            )
            endpoint = f"http://127.0.0.1:{free_port()}"  # where its agent will serve, recorded on chain
            receipt = assets.register(
                spec.as_tuple(), test[plan.agent], b"\x11" * 32, endpoint, sender=test[plan.provider]
            )
            asset = receipt.events.filter(assets.AssetRegistered)[0].asset
            assets.add_stake(asset, 1_000 * TOKEN, sender=test[plan.provider])
            self.assets[int(asset)] = plan
            self.outputs[int(asset)] = endpoint
            self.say(
                f"asset {asset} {plan.name}: {plan.cpu_cores} cores, {plan.price} units/s, "
                f"provider TEST::{plan.provider}, agent TEST::{plan.agent}"
            )
        self.chain_id = chain.chain_id
        self.deployments = self.logdir / "deployments.json"
        record = self.stack.addresses() | {"chain_id": chain.chain_id, "block": 0}
        # Roles join a loopback URI as ethereum:local; `ape run --network <URI>` names it ethereum:custom.
        self.deployments.write_text(json.dumps({"ethereum:local": record, "ethereum:custom": record}, indent=2))
        self.say(f"deployed: market {market.address}")

    def _content_store(self) -> None:
        from agent import image
        from computenet.store import LocalStore, app

        self.store = ServedApp(app(LocalStore(self.logdir / "store")))
        self.say(f"content store on {self.store.url}")
        self.say("building the job image (Debian's Python, imported without a registry)...")
        self.image = image.build(self.docker)
        self.say(f"job image {self.image}")

    def _payments(self) -> None:
        fport, gport = free_port(), free_port()
        self.facilitator_url, self.gateway_url = f"http://127.0.0.1:{fport}", f"http://127.0.0.1:{gport}"
        outputs = ",".join(f"{self.test[self.assets[a].agent].address}={url}" for a, url in self.outputs.items())
        env = os.environ | {
            "COMPUTENET_FACILITATOR_RPC_URL": self.anvil.uri,
            "COMPUTENET_FACILITATOR_ACCOUNT": f"TEST::{FACILITATOR}",
            "COMPUTENET_FACILITATOR_MARKET": self.stack.market.address,
            "COMPUTENET_FACILITATOR_PORT": str(fport),
            "COMPUTENET_FACILITATOR_AUDIT_LOG": str(self.logdir / "facilitator-audit.jsonl"),
            "COMPUTENET_FACILITATOR_GATEWAYS": self.test[GATEWAY].address,
            "COMPUTENET_GATEWAY_ACCOUNT": f"TEST::{GATEWAY}",
            "COMPUTENET_FACILITATOR_ARBITER_STATE": str(self.logdir / "facilitator-arbiter.json"),
            # Its own cursor: the default (logs/ in the repository) would carry one run's blocks into the next.
            "COMPUTENET_FACILITATOR_REFUNDER_STATE": str(self.logdir / "facilitator-refunder.json"),
            # The arbiter re-executes disputed shards as the agents run them: same store, engine and limits.
            "COMPUTENET_FACILITATOR_STORE_URL": self.store.url,
            "COMPUTENET_FACILITATOR_MEMORY_MIB": AGENT_MEMORY_MIB,
            "COMPUTENET_GATEWAY_RPC_URL": self.anvil.uri,
            "COMPUTENET_GATEWAY_MARKET": self.stack.market.address,
            "COMPUTENET_GATEWAY_FACILITATOR_URL": self.facilitator_url,
            "COMPUTENET_GATEWAY_PORT": str(gport),
            "COMPUTENET_GATEWAY_STORE_URL": self.store.url,
            "COMPUTENET_GATEWAY_OUTPUTS": outputs,
        }
        if self.docker_host:
            env["COMPUTENET_FACILITATOR_DOCKER_HOST"] = self.docker_host
        group = self.groups.setdefault("payments", ProcessGroup())
        group.spawn([sys.executable, "-m", "facilitator"], self.logdir / "facilitator.log", env)
        wait_until(lambda: http_ok(f"{self.facilitator_url}/health"), 120, "the facilitator")
        group.spawn([sys.executable, "-m", "gateway"], self.logdir / "gateway.log", env)
        self.say(f"facilitator on {self.facilitator_url}, job gateway on {self.gateway_url}")

    def start_agent(self, asset: int, extra_env: dict[str, str] | None = None, argv: list[str] | None = None) -> None:
        """(Re)starts the agent of `asset`; `argv` replaces `python -m agent run` (the dishonest one)."""
        plan = self.assets[asset]
        port = int(self.outputs[asset].rsplit(":", 1)[1]) if asset in self.outputs else free_port()
        self.outputs[asset] = f"http://127.0.0.1:{port}"
        env = (
            os.environ
            | {
                "COMPUTENET_DEPLOYMENTS": str(self.deployments),
                "COMPUTENET_AGENT_NETWORK": self.anvil.uri,
                "COMPUTENET_AGENT_ACCOUNT": f"TEST::{plan.agent}",
                "COMPUTENET_AGENT_ASSETS": str(asset),
                "COMPUTENET_AGENT_STORE_URL": self.store.url,
                "COMPUTENET_AGENT_WORK_DIR": str(self.logdir / f"agent-{asset}"),
                "COMPUTENET_AGENT_OUTPUTS_PORT": str(port),
                "COMPUTENET_AGENT_PUBLIC_URL": self.outputs[asset],
                "COMPUTENET_AGENT_MEMORY_MIB": AGENT_MEMORY_MIB,
                "COMPUTENET_AGENT_LOG_FORMAT": "json",
                "COMPUTENET_AGENT_ZK_MODELS": str(zk.EXAMPLE_MODEL),  # what the agents prove (make zk)
            }
            | self.agent_env
            | (extra_env or {})
        )
        if self.docker_host:
            env["COMPUTENET_AGENT_DOCKER_HOST"] = env["DOCKER_HOST"] = self.docker_host
        group = self.groups.setdefault(f"agent-{asset}", ProcessGroup())
        runs = sum(1 for _ in self.logdir.glob(f"agent-{asset}-*.log")) + 1
        group.spawn(argv or [sys.executable, "-m", "agent", "run"], self.logdir / f"agent-{asset}-{runs}.log", env)

    def start_verifier(self) -> None:
        """A verifier bot with its own key: re-executes the results sampled for it, challenges wrong ones."""
        self.verifier_state = self.logdir / "verifier-state.json"
        env = os.environ | {
            "COMPUTENET_VERIFIER_RPC_URL": self.anvil.uri,
            "COMPUTENET_VERIFIER_MARKET": self.stack.market.address,
            "COMPUTENET_VERIFIER_ACCOUNT": f"TEST::{VERIFIER}",
            "COMPUTENET_VERIFIER_STORE_URL": self.store.url,
            "COMPUTENET_VERIFIER_STATE_FILE": str(self.verifier_state),
            "COMPUTENET_VERIFIER_METRICS_PORT": "0",
            "COMPUTENET_VERIFIER_MEMORY_MIB": AGENT_MEMORY_MIB,
            "COMPUTENET_VERIFIER_LOG_FORMAT": "json",
        }
        if self.docker_host:
            env["COMPUTENET_VERIFIER_DOCKER_HOST"] = self.docker_host
        group = self.groups.setdefault("verifier", ProcessGroup())
        group.spawn([sys.executable, "-m", "verifier", "run"], self.logdir / "verifier.log", env)
        self.say(f"verifier bot (TEST::{VERIFIER}): re-executes sampled results, challenges wrong ones")

    def verifier_decisions(self) -> dict:
        """The verifier bot's decisions so far, result key -> decision (its state file)."""
        try:
            return json.loads(self.verifier_state.read_text())["decisions"]
        except (OSError, ValueError, KeyError):
            return {}

    def start_keeper(self, index: int) -> None:
        name = f"keeper-{index + 1}"
        env = os.environ | {
            "COMPUTENET_DEPLOYMENTS": str(self.deployments),
            "COMPUTENET_KEEPER_NETWORK": self.anvil.uri,
            "COMPUTENET_KEEPER_NAME": name,
            "COMPUTENET_KEEPER_ACCOUNT": f"TEST::{KEEPERS[index]}",
            "COMPUTENET_KEEPER_REDIS_URL": self.redis.url(0),
            "COMPUTENET_KEEPER_METRICS_PORT": "0",
            "COMPUTENET_KEEPER_SWEEP_INTERVAL": "2",
            # The demo's CPU nodes run CPU-bound shards: a small node is busy with one or two, and
            # its registered max_leases, not its utilisation, is what limits it here.
            "COMPUTENET_KEEPER_MAX_UTILIZATION_PCT": "100",
            "COMPUTENET_KEEPER_HEARTBEAT_POLL_INTERVAL": "1",
        }
        group = self.groups.setdefault(name, ProcessGroup())
        for command in ("listen", "worker", "worker"):
            group.spawn(
                [sys.executable, "-m", "keepers", command],
                self.logdir / f"{name}-{command}-{len(group.processes)}.log",
                env,
            )
        # One Redis for both keepers (their keys and queues are named apart); the agents need none.
        self.say(f"{name} (TEST::{KEEPERS[index]}): a listener and two Celery workers")

    @property
    def dapp_url(self) -> str:
        """The dApp, served by the job gateway."""
        return f"{self.gateway_url}/app/"

    def _wait_ready(self) -> None:
        wait_until(lambda: http_ok(f"{self.gateway_url}/health"), 120, "the job gateway")
        self.say(f"the dApp: {self.dapp_url}")
        for asset in self.assets:
            wait_until(lambda a=asset: http_ok(f"{self.outputs[a]}/docs"), 120, f"asset {asset}'s agent")
        workers = 2 * self.keeper_count
        wait_until(lambda: len(self.workers_answering()) >= workers, 180, f"{workers} keeper workers", 1)
        self.say("every agent, keeper, the facilitator and the gateway are up")

    def workers_answering(self) -> list[str]:
        """The keepers' Celery workers that answer a ping (they share the one Redis)."""
        from celery import Celery

        app = Celery(broker=self.redis.url(0))
        try:
            return [name for reply in (app.control.ping(timeout=0.5) or []) for name in reply]
        finally:
            app.close()

    def web3_balance(self, address: str) -> int:
        return int(self.anvil.rpc("eth_getBalance", [address, "latest"]), 16)

    # ------------------------------------------------------------- faults

    def kill(self, group: str) -> None:
        import signal

        self.groups[group].stop(sig=signal.SIGKILL, grace=5)

    def restart_redis(self) -> None:
        self.redis.stop()
        self.redis = RedisServer(self.logdir / "redis", port=self.redis.port, log=self.logdir / "redis-restarted.log")

    # ------------------------------------------------------------- stop

    def stop(self) -> None:
        for group in reversed(list(self.groups.values())):
            try:
                group.stop()
            except Exception as error:  # one stuck process must not keep the others running
                self.say(f"stopping: {error}")
        if getattr(self, "_ape", None) is not None:
            try:
                self._ape.__exit__(None, None, None)
            except Exception:
                pass
        for part in (self.store, self.anvil, self.redis, self.engine):
            if part is not None:
                try:
                    part.stop()
                except Exception as error:
                    self.say(f"stopping: {error}")
