"""One keeper process's connections: the chain (through ape and the SDK's Market), the
keeper's key, and Redis. Built once per process, on first use, from the settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

import redis

from computenet.connection import ConfigError, load_account, network_context
from computenet.domain import Asset, Parameters, Replica, Shard, Stake
from computenet.errors import ContractRevert
from computenet.market import Market, _spec, typed_reverts
from keepers.decisions import NO_OPEN_DISPUTE
from keepers.settings import KeeperSettings
from keepers.state import KeeperState

# Above this many shards an assign task reads only its own shard, not which assets hold the
# job's other shards (the spreading preference then rests on this keeper's pending leases).
HELD_SCAN_LIMIT = 64
ASSET_BATCH = 500  # assets read per JSON-RPC batch


class KeeperConfigError(ConfigError):
    """The keeper cannot start: a fatal misconfiguration, named in the message."""


class ChainView:
    """Fresh reads for the tasks. The asset list is cached for the block it was read at:
    assets change rarely, and a stale one only costs a reverted gas estimate, after which
    `forget_assets` drops the cache."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self._assets: tuple[int, list[Asset]] = (-1, [])
        self._registry: Any = None

    def head(self) -> int:
        from ape import chain

        return chain.blocks.height

    def now(self) -> int:
        return self.market.now()

    def params(self) -> Parameters:
        return self.market.parameters()

    def assets(self) -> list[Asset]:
        head = self.head()
        if self._assets[0] != head:
            self._assets = (head, self._read_assets())
        return self._assets[1]

    def _read_assets(self) -> list[Asset]:
        """Every asset in JSON-RPC batches (one round trip per ASSET_BATCH assets, not five
        calls each), endpoint included; the commitment, which scheduling does not use, is left empty."""
        from ape import networks

        web3 = networks.provider.web3
        registry = self._web3_registry(web3)
        count = int(registry.functions.totalSupply().call())
        out = []
        for first in range(1, count + 1, ASSET_BATCH):
            ids = range(first, min(count, first + ASSET_BATCH - 1) + 1)
            with web3.batch_requests() as batch:
                for i in ids:
                    for name in ("ownerOf", "agentOf", "spec", "stake", "endpoint"):
                        batch.add(getattr(registry.functions, name)(i))
                results = batch.execute()
            for n, i in enumerate(ids):
                owner, agent, spec, stake, endpoint = results[5 * n : 5 * n + 5]
                out.append(
                    Asset(i, str(owner), str(agent), _spec(spec), b"", Stake(*[int(x) for x in stake]), str(endpoint))
                )
        return out

    def _web3_registry(self, web3: Any) -> Any:
        if self._registry is None:
            abi = [item.model_dump(mode="json", by_alias=True) for item in self.market.assets.contract_type.abi]
            self._registry = web3.eth.contract(address=str(self.market.assets.address), abi=abi)
        return self._registry

    def forget_assets(self) -> None:
        self._assets = (-1, [])

    def replicas(self, job: int, shard: int, replication: int, roots: bool = False) -> tuple[Replica, ...]:
        """The shard's replicas; output roots only when asked (finalize compares them)."""
        return tuple(self.market.replica(job, shard, index, root=roots) for index in range(replication))

    def ruling_deadline(self, job: int, shard: int) -> int | None:
        """The ruling deadline of the shard's open dispute; None when none is open (or the
        shard does not exist)."""
        try:
            with typed_reverts(preflight=True):
                return int(self.market.court.ruling_deadline(job, shard))
        except ContractRevert as error:
            if error.reason in (NO_OPEN_DISPUTE, "dispute_court: unknown shard"):
                return None
            raise

    def job_shards(self, job: Any, shard: int) -> list[Shard]:
        """`shard` with its replicas, and the job's other shards when the job is small enough."""
        req = job.requirements
        indices = range(req.shard_count) if req.shard_count <= HELD_SCAN_LIMIT else [shard]
        return [Shard(job.id, s, self.replicas(job.id, s, req.replication)) for s in indices]


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
    if not networks.active_provider or not networks.active_provider.is_connected:
        network_context(settings.network).__enter__()
    market = Market.from_deployments()
    court = str(market.market.COURT())  # expire goes to the court the market itself names
    if str(market.court.address).lower() != court.lower():
        raise KeeperConfigError(
            f"the recorded dispute court {market.court.address} is not the market's COURT() {court}"
        )
    account = load_account(settings.account) if settings.account else None
    if account is not None:
        try:
            with typed_reverts(preflight=True):
                market.keepers.active_keeper_id(account)
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
