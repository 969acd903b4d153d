"""One keeper process's connections: the chain (through ape and the SDK's Market), the
keeper's key, and Redis. Built once per process, on first use, from the settings."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
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

# Above this many shards a round reads only the job's open shards, not which assets hold its
# other shards (the spreading preference then rests on this keeper's pending leases).
HELD_SCAN_LIMIT = 64


class KeeperConfigError(ConfigError):
    """The keeper cannot start: a fatal misconfiguration, named in the message."""


class ChainView:
    """Fresh reads for the tasks, through the Market. The asset index is read whole once and
    then kept current from events: each new head re-reads only the assets its blocks' events
    name, and any new ones (at a thousand assets a whole read is six thousand calls); one that
    only the market's events name (a lease opened or closed) only its stake and leased totals,
    two calls of the six. A change that names no asset, a gap longer than ASSET_EVENTS_SPAN
    blocks or `forget_assets` (a refused transaction: the state moved under the decision)
    reads it whole again."""

    ASSET_EVENTS_SPAN = 256

    def __init__(self, market: Market) -> None:
        self.market = market
        self._assets: dict[int, Asset] = {}
        self._assets_at = -1  # the head the index is current at (-1: read it whole)

    def head(self) -> int:
        return self.market.head()

    def now(self) -> int:
        return self.market.now()

    def params(self) -> Parameters:
        return self.market.parameters()

    def assets(self) -> list[Asset]:
        head = self.head()
        if head != self._assets_at:
            self._refresh_assets(head)
        return list(self._assets.values())

    def forget_assets(self) -> None:
        self._assets_at = -1

    def _refresh_assets(self, head: int) -> None:
        # Every read is at the latest block, at or past `head`: a change after `head` is read
        # now and again at the next head, whose events name it; none is missed.
        touched = None
        if 0 <= self._assets_at < head <= self._assets_at + self.ASSET_EVENTS_SPAN:
            touched = self.market.assets_touched(self._assets_at + 1, head)
        if touched is None:
            assets = {a.id: a for a in self.market.all_assets()}
        else:
            count = self.market.asset_count()
            whole, leases = ({i for i in ids if 0 < i <= count} for ids in touched)
            new = set(range(len(self._assets) + 1, count + 1))
            assets = self._assets | {a.id: a for a in self.market.assets_by_id(sorted(whole | new))}
            for i, (stake, leased) in self.market.asset_leases(sorted(leases - new)).items():
                assets[i] = replace(assets[i], stake=stake, leased=leased)  # a lease opened or closed
        self._assets, self._assets_at = assets, head  # replaced whole: a reader never sees it half-updated

    def replicas(self, job: int, shard: int, replication: int, roots: bool = False) -> tuple[Replica, ...]:
        """The shard's replicas; output roots only when asked (finalize compares a replicated
        shard's, which are always on chain: a batched result's is never compared, so it is not
        looked up in the logs)."""
        keys = ((shard, index) for index in range(replication))
        return tuple(self.market.replicas(job, keys, roots=roots, logged=False))

    def ruling_deadline(self, job: int, shard: int) -> int | None:
        """The ruling deadline of the shard's open dispute; None when none is open (or the
        shard does not exist)."""
        try:
            return self.market.ruling_deadline(job, shard)
        except ContractRevert as error:
            if error.reason in (NO_OPEN_DISPUTE, "dispute_court: unknown shard"):
                return None
            raise

    def round_shards(self, jobs: Mapping[int, tuple[Any, Iterable[int]]]) -> dict[int, list[Shard]]:
        """For a round: each job's open shards with their replicas, by job id (`jobs` maps a job
        id to the job and its open shards), and a job's other shards too (which tell which assets
        already hold it) when it has at most HELD_SCAN_LIMIT; every job read in one JSON-RPC batch."""
        wanted = []  # (job, shard, replication)
        for job_id, (job, open_shards) in jobs.items():
            req = job.requirements
            shards = range(req.shard_count) if req.shard_count <= HELD_SCAN_LIMIT else sorted(set(open_shards))
            # an unknown shard is decide_round's to name
            wanted += [(job_id, s, req.replication) for s in shards if 0 <= s < req.shard_count]
        out: dict[int, list[Shard]] = {job_id: [] for job_id in jobs}
        for shard in self.market.shards_of(wanted, roots=False):
            out[shard.job].append(shard)
        return out


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

    def assets_with(self, extra_leases: Mapping[int, int]) -> list[Asset]:
        """The assets, counting this keeper's unmined assignments as open leases."""
        return with_leases(self.view.assets(), extra_leases)


def with_leases(assets: Iterable[Asset], extra_leases: Mapping[int, int]) -> list[Asset]:
    """`assets` with `extra_leases[asset]` more open leases each (a keeper's unmined assignments)."""
    return [
        replace(a, stake=replace(a.stake, open_leases=a.stake.open_leases + extra_leases[a.id]))
        if extra_leases.get(a.id)
        else a
        for a in assets
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
