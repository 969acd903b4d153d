"""One keeper process's connections: the chain (through ape and the SDK's Market), the
keeper's key, and Redis. Built once per process, on first use, from the settings."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import redis

from computenet.connection import ConfigError, load_account, network_context
from computenet.domain import Asset, Parameters, Replica, Shard
from computenet.errors import ContractRevert
from computenet.market import Market
from keepers.decisions import NO_OPEN_DISPUTE
from keepers.settings import KeeperSettings
from keepers.state import KeeperState

# Above this many shards an assign task reads only its own shard, not which assets hold the
# job's other shards (the spreading preference then rests on this keeper's pending leases).
HELD_SCAN_LIMIT = 64


class KeeperConfigError(ConfigError):
    """The keeper cannot start: a fatal misconfiguration, named in the message."""


class ChainView:
    """Fresh reads for the tasks, through the Market. The asset list is cached for the block
    it was read at: assets change rarely, and a stale one only costs a reverted gas estimate,
    after which `forget_assets` drops the cache."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self._assets: tuple[int, list[Asset]] = (-1, [])

    def head(self) -> int:
        return self.market.head()

    def now(self) -> int:
        return self.market.now()

    def params(self) -> Parameters:
        return self.market.parameters()

    def assets(self) -> list[Asset]:
        head = self.head()
        if self._assets[0] != head:
            self._assets = (head, self.market.all_assets())
        return self._assets[1]

    def forget_assets(self) -> None:
        self._assets = (-1, [])

    def replicas(self, job: int, shard: int, replication: int, roots: bool = False) -> tuple[Replica, ...]:
        """The shard's replicas; output roots only when asked (finalize compares them)."""
        return tuple(self.market.replicas(job, ((shard, index) for index in range(replication)), roots=roots))

    def ruling_deadline(self, job: int, shard: int) -> int | None:
        """The ruling deadline of the shard's open dispute; None when none is open (or the
        shard does not exist)."""
        try:
            return self.market.ruling_deadline(job, shard)
        except ContractRevert as error:
            if error.reason in (NO_OPEN_DISPUTE, "dispute_court: unknown shard"):
                return None
            raise

    def job_shards(self, job: Any, shard: int) -> list[Shard]:
        """`shard` with its replicas, and the job's other shards when the job is small enough."""
        req = job.requirements
        indices = range(req.shard_count) if req.shard_count <= HELD_SCAN_LIMIT else [shard]
        return [Shard(job.id, s, self.replicas(job.id, s, req.replication)) for s in indices]

    def round_shards(self, job: Any, open_shards: Iterable[int]) -> list[Shard]:
        """For a round: the job's `open_shards` with their replicas, and its other shards when the
        job is small enough (as `job_shards`), read in one JSON-RPC batch."""
        req = job.requirements
        wanted = range(req.shard_count) if req.shard_count <= HELD_SCAN_LIMIT else sorted(set(open_shards))
        indices = [s for s in wanted if 0 <= s < req.shard_count]  # an unknown one is decide_round's to name
        keys = [(s, r) for s in indices for r in range(req.replication)]
        replicas = self.market.replicas(job.id, keys, roots=False)
        n = req.replication
        return [Shard(job.id, s, tuple(replicas[i * n : (i + 1) * n])) for i, s in enumerate(indices)]


@dataclass
class Runtime:
    settings: KeeperSettings
    market: Market
    view: ChainView
    account: Any | None
    redis: Any
    state: KeeperState

    @property
    def address(self) -> str:
        return str(self.account.address) if self.account is not None else "dry-run"

    def assets_with(self, extra_leases: dict[int, int]) -> list[Asset]:
        """The assets, counting this keeper's unmined assignments as open leases."""
        return [
            replace(a, stake=replace(a.stake, open_leases=a.stake.open_leases + extra_leases[a.id]))
            if extra_leases.get(a.id)
            else a
            for a in self.view.assets()
        ]


def connect(settings: KeeperSettings) -> Runtime:
    """Connects to the chain (unless `ape run` already did), finds the market, loads the key
    and checks that it belongs to an active keeper: a key that is not one is fatal."""
    from ape import chain, networks
    from ape.logging import logger as ape_logger

    ape_logger.set_level("WARNING")  # ape's INFO lines go to stdout, which `status --json` owns
    given = None  # under `ape run`, the network ape joined names the deployment
    if not networks.active_provider or not networks.active_provider.is_connected:
        network_context(settings.network).__enter__()
        given = settings.network
    market = Market.from_deployments(given)
    court = str(market.market.COURT())  # expire goes to the court the market itself names
    if str(market.court.address).lower() != court.lower():
        raise KeeperConfigError(
            f"the recorded dispute court {market.court.address} is not the market's COURT() {court}"
        )
    account = load_account(settings.account) if settings.account else None
    if account is not None:
        try:
            market.active_keeper_id(account)
        except ContractRevert as error:
            raise KeeperConfigError(
                f"{account.address} cannot assign: {error.reason} (register it with a bond first)"
            ) from None
    client = redis.Redis.from_url(settings.redis_url)
    state = KeeperState(client, chain.chain_id, str(market.market.address), str(market.assets.address), settings.name)
    return Runtime(settings, market, ChainView(market), account, client, state)


_runtime: Runtime | None = None
_lock = threading.Lock()


def runtime() -> Runtime:
    """This process's Runtime, connected on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = connect(KeeperSettings())
        return _runtime
