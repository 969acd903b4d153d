"""The keeper's scheduler: which asset should take each open shard replica.

A pure function over plain data: no ape, web3, redis or celery, no clock and no
randomness. Same input, same output, whatever the order of its collections.

What it guarantees
------------------
* It never proposes what the chain would reject. A candidate passes the asset-side
  rules of `JobMarket.assign` (those of `computenet.preflight.asset_problem`: id,
  agent, stake, lease capacity, CPU cores, memory and disk (in all and free of its
  other leases), GPUs free of its other leases, paused, GPUs, VRAM,
  price cap, lease vs deadline, lease vs expiry) and
  `open_replica`'s (not already running this shard), checked against the shard's
  replicas as they stand after the batch's earlier assignments.
* It only uses nodes it can trust to start: a heartbeat no older than
  `Policy.max_heartbeat_age`, GPU utilisation at most `Policy.max_utilization_pct`,
  a free slot (`running_shards` + leases given in this batch < `capacity`) and,
  on a node already running something, enough free VRAM for the shard.
* Replicas of one shard go to assets of distinct owners (a hard rule: replication
  only checks anything if the replicas are independent, so a replica that could only
  go to an owner already holding the shard is left open this round, for a later
  round or another keeper, rather than leased to the same owner).
* The shards of one job spread over distinct assets (a preference: an asset that
  already holds, or was just given, another shard of the job is chosen only when no
  other asset can take the replica, and the assignment says so in `reasons`).
* Shards are served earliest deadline first, then by job id and shard index; the
  replicas of a shard in index order, as the chain leases them.

Ranking
-------
Among the candidates the highest score wins, ties to the lowest asset id. The score
is a weighted sum of four terms, each in [0, 1], higher is better:

    cost        1 - price / max_price           (max_price: the job's cap)
    slack       (min(deadline, expire) - lease_end) / (deadline - now)
    load        1 - (gpu_utilization_pct / 100 + running / capacity) / 2
    reputation  (finalized + 1) / (finalized + reclaimed + DISPUTE_WEIGHT * disputes_lost + 2)

    score = (w.cost * cost + w.slack * slack) + (w.load * load + w.reputation * reputation)

The chain fixes a lease's length from the job alone (GPU-seconds over GPUs, plus
grace), so the slack a lease leaves before the job's deadline is the same on every
asset; what differs is whether the asset's registration runs out first: an asset
that lapses just after the lease is likelier to be leaving the market. `running`
counts the leases given in this batch, so a node's score drops as it fills up.
Reputation is the Laplace-smoothed success rate of the asset's finished leases, a
lost dispute (a wrong result) counting as DISPUTE_WEIGHT = 3 failures and a reclaim
(a timeout) as one; an asset with no history scores 0.5. See `Weights` for the defaults.

The index, and why it finds the same asset as trying them all
-------------------------------------------------------------
Trying every asset for every replica is 10^7 checks for 10,000 assets and 1,000
shards. Instead, each call builds an index once:

1. Prefilter: keep the assets that can take some lease at all this round: staked,
   active, a 32-bit id, unexpired, fresh, not overloaded.
2. Bucket them by (gpu_count, vram_mib); a shard's requirements select whole buckets.
   (Markets have few hardware shapes; a decision touches every band of the buckets
   its shard selects, so thousands of shapes would make each decision slower.)
3. Within a bucket, split the assets into bands by q = w.load * load + w.reputation *
   reputation (the part of the score that does not depend on the shard), highest q
   first, and sort each band by (price, id). A band is a stream of candidates,
   cheapest first, and knows its q_max.

For a replica, the head of each stream has an upper bound on the score of every
candidate left in it:

    bound(stream) = (w.cost * cost(head price) + w.slack * slack_max) + q_max

since cost only falls as price rises, slack is at most the job's own
(deadline - lease_end) / (deadline - now), and q only falls within a batch (load
falls as leases are given). The streams sit in a max-heap by bound; the search pops
the best stream, scores its head, pushes the stream back with its next head, and
stops once the best bound is below the best score found. Every candidate not
scored then lies in a stream whose bound is below the winner's score, so none could
beat or tie it: the result is the exhaustive argmax. The bound is computed with the
same float operations, in the same order, as the score, and rounding is monotone, so
the inequality holds in floating point too, not only in the reals.
tests/keepers/test_scheduler.py checks this against a brute-force reference.

Assets that fill up are removed from their stream (one whose GPUs are all leased
stays while the batch has CPU work, which holds no GPU; one with no CPU core, memory
or disk left goes, since every lease holds some); assets that fail a rule that
depends on the shard (expiry, same shard, same owner, holding the job, free VRAM,
GPUs, CPU cores, memory or disk free) are skipped as they come up. The held-job preference is a second
pass over the few assets holding the job, run only when the first finds nothing. A placement
may leave assets out (`place`'s `exclude` and `only`: a keeper's per-job rules); they are
skipped as they come up too, or, when `only` leaves few, those few are scored one by one,
so one index serves every job of a round.
bench/bench_scheduler.py measures the decisions per second on synthetic markets of
1k to 100k assets.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from computenet.domain import Asset, Job, Parameters, Replica, ReplicaState
from computenet.preflight import UINT32_MAX

# A lost dispute counts as this many failed leases in the reputation score.
DISPUTE_WEIGHT = 3

# Index tuning (the result never depends on these, only the time it takes): bands hold
# at least BAND_SIZE assets and a bucket is cut into at most MAX_BANDS of them.
BAND_SIZE = 32
MAX_BANDS = 16

# Replica states in which an asset holds a job's shard: it is running it or its result is pending.
_HOLDING = frozenset((ReplicaState.ASSIGNED, ReplicaState.SUBMITTED, ReplicaState.DISPUTED))
# Replica states the chain's open_replica rule ignores.
_FREE = frozenset((ReplicaState.OPEN, ReplicaState.CANCELLED))

HELD_JOB = "asset already holds another shard of this job"
NO_ASSET = "scheduler: no eligible asset"
# No eligible asset has as many CPU cores, or as much memory or disk, as one lease of the job asks
# (the chain would refuse them all with compute_asset's "too few"/"too little").
TOO_SMALL = "scheduler: no eligible asset has the cpu cores, memory or disk the job asks"


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeState:
    """A node's load as its last accepted heartbeat told it; `last_seen` is that heartbeat's
    timestamp (unix s). `free_vram_mib` is summed over the node's GPUs."""

    asset: int
    gpu_utilization_pct: int
    free_vram_mib: int
    running_shards: int
    capacity: int
    last_seen: int

    def __post_init__(self) -> None:
        if min(self.gpu_utilization_pct, self.free_vram_mib, self.running_shards, self.capacity) < 0:
            raise ValueError(f"node state for asset {self.asset} has a negative field")
        if self.gpu_utilization_pct > 100:
            raise ValueError(f"node state for asset {self.asset}: utilisation above 100%")

    @classmethod
    def from_heartbeat(cls, hb) -> NodeState:
        """From a `computenet.heartbeat.Heartbeat` already accepted by `check_heartbeat`."""
        return cls(
            asset=hb.asset,
            gpu_utilization_pct=hb.gpu_utilization_pct,
            free_vram_mib=hb.free_vram_mib,
            running_shards=hb.running_shards,
            capacity=hb.capacity,
            last_seen=hb.timestamp,
        )


@dataclass(frozen=True)
class Reputation:
    """An asset's record from chain history: leases finalized, leases reclaimed after
    their deadline, and disputes it lost."""

    finalized: int = 0
    reclaimed: int = 0
    disputes_lost: int = 0

    def __post_init__(self) -> None:
        if min(self.finalized, self.reclaimed, self.disputes_lost) < 0:
            raise ValueError("reputation counts must not be negative")

    def score(self) -> float:
        """Laplace-smoothed success rate in (0, 1): 0.5 with no history, a lost dispute
        weighing DISPUTE_WEIGHT reclaims."""
        good = self.finalized
        bad = self.reclaimed + DISPUTE_WEIGHT * self.disputes_lost
        return (good + 1) / (good + bad + 2)


@dataclass(frozen=True)
class OpenShard:
    """One shard of a job with all its replicas as the chain has them. Shards with no open
    replica may be passed too: they only tell which assets already hold the job."""

    job: Job
    shard: int
    replicas: tuple[Replica, ...]


@dataclass(frozen=True)
class Weights:
    """How much each score term counts; each term is in [0, 1], so the score is in
    [0, sum of weights]. Cost leads by default (the client pays it and the chain caps
    it); load and reputation together outweigh it, so a cheap but busy or unreliable
    node loses to a slightly dearer sound one; slack only breaks near-ties."""

    cost: float = 0.4
    slack: float = 0.1
    load: float = 0.25
    reputation: float = 0.25

    def __post_init__(self) -> None:
        for name in ("cost", "slack", "load", "reputation"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"weight {name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))


@dataclass(frozen=True)
class Policy:
    """Which nodes the scheduler will use.

    max_heartbeat_age        a node silent for longer (s) is presumed down
    max_utilization_pct      a node whose GPUs are busier is overloaded
    require_heartbeat        False: an asset with no heartbeat at all is assumed to run
                             `assumed_capacity` leases at once at `assumed_utilization_pct`
                             (capacity is capped by the asset's registered max_leases, and
                             the chain's count of its open leases is always counted as running)
    check_free_vram          on a node already running shards, require free VRAM for the
                             shard (min_vram_mib × gpu_count, taken from it as leases are given)
    """

    max_heartbeat_age: int = 30
    max_utilization_pct: int = 90
    require_heartbeat: bool = True
    assumed_capacity: int = 1
    assumed_utilization_pct: int = 50
    check_free_vram: bool = True

    def __post_init__(self) -> None:
        if min(self.max_heartbeat_age, self.assumed_capacity) < 0:
            raise ValueError("heartbeat age and assumed capacity must not be negative")
        for name in ("max_utilization_pct", "assumed_utilization_pct"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"{name} must be 0-100")


# --- outputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Terms:
    """The four score terms of an assignment, each in [0, 1]."""

    cost: float
    slack: float
    load: float
    reputation: float


@dataclass(frozen=True)
class Assignment:
    """Lease replica `replica` of (`job`, `shard`) to `asset`: call `assign(job, shard, asset)`."""

    job: int
    shard: int
    replica: int
    asset: int
    score: float
    terms: Terms
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skip:
    """No asset for replica `replica` of (`job`, `shard`) this round, and why."""

    job: int
    shard: int
    replica: int | None
    reason: str


# --- score terms (the index computes them inline, with the same operations) --------------


def cost_term(price: int, max_price: int) -> float:
    return 1.0 - price / max_price if max_price > 0 else 1.0


def slack_term(expire: int, deadline: int, lease_end: int, now: int) -> float:
    span = deadline - now
    return (min(deadline, expire) - lease_end) / span if span > 0 else 0.0


def load_term(gpu_utilization_pct: int, running: int, capacity: int) -> float:
    return 1.0 - (gpu_utilization_pct / 100 + running / capacity) / 2


def combine(weights: Weights, cost: float, slack: float, load: float, reputation: float) -> float:
    """The score; the grouping matters, the index bounds each half separately."""
    return (weights.cost * cost + weights.slack * slack) + (weights.load * load + weights.reputation * reputation)


# --- the batch ----------------------------------------------------------------------------


class _ShardState:
    __slots__ = ("req", "slots", "on_shard", "owners")

    def __init__(self, job: Job, slots: list[int], on_shard: set[int], owners: set[str]) -> None:
        self.req = job.requirements
        self.slots = slots  # open replica indices, lowest first: the chain leases them in that order
        self.on_shard = on_shard  # asset ids the chain's open_replica rule refuses
        self.owners = owners  # owners of those assets (lower-case)


class Batch:
    """One scheduling round over a snapshot of the market. `schedule` drives it; a keeper
    that wants to act decision by decision (or time them) can call `place` itself.
    Each `place` updates the batch as if its assignment had been made on chain."""

    def __init__(
        self,
        shards: Iterable[OpenShard],
        assets: Iterable[Asset],
        nodes: Mapping[int, NodeState] | Iterable[NodeState],
        reputations: Mapping[int, Reputation],
        params: Parameters,
        now: int,
        weights: Weights = Weights(),
        policy: Policy = Policy(),
        *,
        band_size: int = BAND_SIZE,
        max_bands: int = MAX_BANDS,
    ) -> None:
        self.params = params
        self.now = now
        self.weights = weights
        self.policy = policy

        assets = sorted(assets, key=lambda a: a.id)
        owner_of: dict[int, str] = {}
        for asset in assets:
            if asset.id in owner_of:
                raise ValueError(f"asset {asset.id} given twice")
            owner_of[asset.id] = asset.owner.lower()
        if isinstance(nodes, Mapping):
            nodes = nodes.values()
        node_of: dict[int, NodeState] = {}
        for node in nodes:
            if node.asset in node_of:
                raise ValueError(f"node state for asset {node.asset} given twice")
            node_of[node.asset] = node

        # Shards, the assets holding each job, and the earliest lease end any shard could ask for.
        self._shards: dict[tuple[int, int], _ShardState] = {}
        held_by_job: dict[int, set[int]] = {}
        grace = params.lease_grace
        min_lease_end = None
        for open_shard in shards:
            job = open_shard.job
            key = (job.id, open_shard.shard)
            if key in self._shards:
                raise ValueError(f"shard {key} given twice")
            reps = sorted(open_shard.replicas, key=lambda r: r.index)
            held = held_by_job.setdefault(job.id, set())
            on_shard = {r.asset for r in reps if r.state not in _FREE}
            held.update(r.asset for r in reps if r.state in _HOLDING)
            owners = {owner_of[a] for a in on_shard if a in owner_of}
            slots = [r.index for r in reps if r.state == ReplicaState.OPEN]
            self._shards[key] = _ShardState(job, slots, on_shard, owners)
            if slots:
                end = now + job.requirements.lease_seconds(grace)
                min_lease_end = end if min_lease_end is None else min(min_lease_end, end)
        if min_lease_end is None:
            min_lease_end = now + grace
        # CPU work (gpu_count 0) may still go to an asset whose GPUs are all leased.
        self._cpu_work = any(st.slots and st.req.gpu_count == 0 for st in self._shards.values())

        # Prefilter: the assets that could take some lease this round, as parallel arrays
        # indexed by k, in ascending id order (so comparing k compares ids).
        self._ids: list[int] = []
        self._gpus: list[int] = []
        self._gpus_free: list[int] = []  # its GPUs no open lease (on chain or in this batch) holds
        # CPU cores, memory and disk (MiB) no open lease holds, as `_gpus_free`.
        self._cpu_free: list[int] = []
        self._mem_free: list[int] = []
        self._disk_free: list[int] = []
        # The most CPU cores, memory and disk any eligible asset has in all (for the skip reason);
        # None while no asset is eligible. `_has`: each one's, for a placement limited by `only`.
        self._most: tuple[int, int, int] | None = None
        self._has: dict[int, tuple[int, int, int]] = {}
        self._vram: list[int] = []
        self._price: list[int] = []
        self._expire: list[int] = []
        self._owner: list[str] = []
        self._util: list[int] = []
        self._run: list[int] = []  # running shards + leases given in this batch
        self._cap: list[int] = []
        self._free: list[int] = []  # free VRAM, less what this batch's leases need
        self._rep: list[float] = []
        self._k_of: dict[int, int] = {}
        no_record = Reputation()
        min_stake = params.min_stake
        max_age, max_util = policy.max_heartbeat_age, policy.max_utilization_pct
        for asset in assets:
            spec = asset.spec
            if (
                asset.id > UINT32_MAX
                or int(asset.agent, 16) == 0  # sold: no agent until its new owner sets one
                or asset.stake.available < min_stake
                or not spec.active
                or spec.expire < min_lease_end
            ):
                continue
            node = node_of.get(asset.id)
            if node is None:
                if policy.require_heartbeat:
                    continue
                util, free = policy.assumed_utilization_pct, spec.vram_mib * spec.gpu_count
                running, capacity = 0, policy.assumed_capacity
            else:
                if now - node.last_seen > max_age:
                    continue
                util, free = node.gpu_utilization_pct, node.free_vram_mib
                running, capacity = node.running_shards, node.capacity
            # The chain's count and cap of open leases bound whatever the agent reports.
            running = max(running, asset.stake.open_leases)
            capacity = min(capacity, spec.max_leases)
            if util > max_util or running >= capacity:
                continue
            _, cpu_free, mem_free, disk_free = asset.free
            has = (spec.cpu_cores, spec.memory_mib, spec.disk_mib)
            self._most = has if self._most is None else tuple(map(max, self._most, has))
            self._has[asset.id] = has
            if min(cpu_free, mem_free, disk_free) <= 0:  # every lease holds some of each
                continue
            self._k_of[asset.id] = len(self._ids)
            self._ids.append(asset.id)
            self._gpus.append(spec.gpu_count)
            self._gpus_free.append(spec.gpu_count - asset.stake.gpus_leased)
            self._cpu_free.append(cpu_free)
            self._mem_free.append(mem_free)
            self._disk_free.append(disk_free)
            self._vram.append(spec.vram_mib)
            self._price.append(spec.price)
            self._expire.append(spec.expire)
            self._owner.append(owner_of[asset.id])
            self._util.append(util)
            self._run.append(running)
            self._cap.append(capacity)
            self._free.append(free)
            self._rep.append(reputations.get(asset.id, no_record).score())
        k_of = self._k_of
        self._held_k = {job: {k_of[a] for a in ids if a in k_of} for job, ids in held_by_job.items()}

        # Buckets by hardware, bands by q, streams sorted by (price, k).
        wl, wr = weights.load, weights.reputation
        util_, run_, cap_, rep_ = self._util, self._run, self._cap, self._rep
        q = [wl * (1.0 - (util_[k] / 100 + run_[k] / cap_[k]) / 2) + wr * rep_[k] for k in range(len(self._ids))]
        buckets: dict[tuple[int, int], list[int]] = {}
        for k in range(len(self._ids)):
            buckets.setdefault((self._gpus[k], self._vram[k]), []).append(k)
        self._items: list[list[tuple[int, int]]] = []  # stream -> [(price, k)] cheapest first
        self._qmax: list[float] = []
        self._stream_of: list[int] = [0] * len(self._ids)
        self._buckets: list[tuple[int, int, list[int]]] = []  # (gpus, vram, stream ids)
        for (gpus, vram), members in sorted(buckets.items()):
            members.sort(key=lambda k: (-q[k], k))
            size = max(band_size, -(-len(members) // max_bands), 1)
            streams = []
            for start in range(0, len(members), size):
                band = members[start : start + size]
                s = len(self._items)
                for k in band:
                    self._stream_of[k] = s
                self._items.append(sorted((self._price[k], k) for k in band))
                self._qmax.append(q[band[0]])
                streams.append(s)
            self._buckets.append((gpus, vram, streams))
        self._streams_for: dict[tuple[int, int], list[int]] = {}

    # --- queries ---------------------------------------------------------------------

    def order(self) -> list[tuple[int, int]]:
        """(job, shard) keys with an open replica: earliest deadline first, then job, shard."""
        keys = [key for key, st in self._shards.items() if st.slots]
        return sorted(keys, key=lambda key: (self._shards[key].req.deadline, key[0], key[1]))

    def has_open_replica(self, job: int, shard: int) -> bool:
        return bool(self._shards[(job, shard)].slots)

    # --- the decision ----------------------------------------------------------------

    def place(
        self, job: int, shard: int, *, exclude: Collection[int] = (), only: Collection[int] | None = None
    ) -> Assignment | Skip:
        """Choose the asset for the shard's next open replica and record it in the batch.

        `exclude` (asset ids) are not candidates for this placement, and with `only` given
        nothing outside it is: a keeper's per-job rules (assets that declined the shard, a tee
        job's attested assets) without an index per job. Left out this way, an asset still
        counts as an owner and a holder, as an ineligible one does; the winner is the same
        as on an index built without it."""
        st = self._shards[(job, shard)]
        if not st.slots:
            return Skip(job, shard, None, "job_market: shard has no open replica")
        slot = st.slots[0]
        req = st.req
        if not 0 <= shard < req.shard_count:
            return Skip(job, shard, slot, "job_market: unknown shard")
        now = self.now
        lease_end = now + req.lease_seconds(self.params.lease_grace)
        if lease_end > req.deadline:
            return Skip(job, shard, slot, "job_market: lease would end after the deadline")

        k_of = self._k_of
        excluded = {k_of[a] for a in st.on_shard if a in k_of}
        excluded.update(k_of[a] for a in exclude if a in k_of)
        held = self._held_k.setdefault(job, set())
        need = req.min_vram_mib * req.gpu_count if self.policy.check_free_vram else 0
        allowed = None if only is None else {k_of[a] for a in only if a in k_of} - excluded
        if allowed is not None and 8 * len(allowed) <= len(self._ids):
            # Few allowed: scoring each is cheaper than a search that may pass over most others.
            k, score = self._scan(sorted(allowed - held), req, lease_end, need, excluded, st.owners)
        else:
            k, score = self._search(req, lease_end, need, excluded, held, st.owners, allowed)
        reasons: tuple[str, ...] = ()
        last = held if allowed is None else held & allowed
        if k < 0 and last:
            k, score = self._scan(sorted(last - excluded), req, lease_end, need, excluded, st.owners)
            reasons = (HELD_JOB,)
        if k < 0:
            most = self._most
            if only is not None:
                has = [self._has[a] for a in only if a in self._has]
                most = tuple(max(h[i] for h in has) for i in range(3)) if has else None
            small = most is not None and (req.cpu_cores > most[0] or req.memory_mib > most[1] or req.disk_mib > most[2])
            return Skip(job, shard, slot, TOO_SMALL if small else NO_ASSET)

        terms = Terms(
            cost=cost_term(self._price[k], req.max_price),
            slack=slack_term(self._expire[k], req.deadline, lease_end, now),
            load=load_term(self._util[k], self._run[k], self._cap[k]),
            reputation=self._rep[k],
        )
        asset = self._ids[k]
        self._give(k, need, req)
        st.slots.pop(0)
        st.on_shard.add(asset)
        st.owners.add(self._owner[k])
        held.add(k)
        return Assignment(job, shard, slot, asset, score, terms, reasons)

    def _give(self, k: int, need: int, req) -> None:
        self._run[k] += 1
        self._free[k] -= need  # zero when free VRAM is not checked
        self._gpus_free[k] -= req.gpu_count
        self._cpu_free[k] -= req.cpu_cores
        self._mem_free[k] -= req.memory_mib
        self._disk_free[k] -= req.disk_mib
        gpus_full = self._gpus[k] and not self._gpus_free[k] and not self._cpu_work
        drained = not (self._cpu_free[k] and self._mem_free[k] and self._disk_free[k])
        if self._run[k] >= self._cap[k] or gpus_full or drained:
            # full: out of its stream for the rest of the batch
            items = self._items[self._stream_of[k]]
            del items[bisect_left(items, (self._price[k], k))]

    def _streams(self, gpus: int, vram: int) -> list[int]:
        key = (gpus, vram)
        streams = self._streams_for.get(key)
        if streams is None:
            streams = [s for bg, bv, ss in self._buckets if bg >= gpus and bv >= vram for s in ss]
            self._streams_for[key] = streams
        return streams

    def _search(
        self,
        req,
        lease_end: int,
        need: int,
        excluded: set[int],
        held: set[int],
        owners: set[str],
        allowed: set[int] | None = None,
    ) -> tuple[int, float]:
        """Best-first over the streams; see the module docstring for why stopping is exact
        (skipping candidates, as `allowed` does, only lowers the best score found, so the
        search goes on longer, never stops early)."""
        w = self.weights
        wc, ws, wl, wr = w.cost, w.slack, w.load, w.reputation
        m = req.max_price
        md = m or 1  # a zero cap admits only price 0, whose cost term is 1 either way
        deadline, now = req.deadline, self.now
        span = deadline - now
        sk = ws * ((deadline - lease_end) / span if span > 0 else 0.0)
        items, qmax = self._items, self._qmax
        expire_, owner_, gpus_free = self._expire, self._owner, self._gpus_free
        gpus = req.gpu_count
        cpu_free, mem_free, disk_free = self._cpu_free, self._mem_free, self._disk_free
        cpu, mem, disk = req.cpu_cores, req.memory_mib, req.disk_mib
        util_, run_, cap_, free_, rep_ = self._util, self._run, self._cap, self._free, self._rep

        heap = []
        for s in self._streams(req.gpu_count, req.min_vram_mib):
            it = items[s]
            if it and it[0][0] <= m:
                heap.append((-((wc * (1.0 - it[0][0] / md) + sk) + qmax[s]), s, 0))
        heapq.heapify(heap)

        best, best_k = -math.inf, -1
        heapreplace, heappop = heapq.heapreplace, heapq.heappop
        while heap:
            neg_bound, s, i = heap[0]
            if -neg_bound < best:
                break
            it = items[s]
            p, k = it[i]
            i += 1
            if i < len(it) and it[i][0] <= m:
                heapreplace(heap, (-((wc * (1.0 - it[i][0] / md) + sk) + qmax[s]), s, i))
            else:
                heappop(heap)
            e = expire_[k]
            if e < lease_end or k in excluded or k in held or owner_[k] in owners or gpus_free[k] < gpus:
                continue
            if allowed is not None and k not in allowed:
                continue
            if cpu_free[k] < cpu or mem_free[k] < mem or disk_free[k] < disk:
                continue
            r = run_[k]
            if r and free_[k] < need:
                continue
            slack = ((deadline if e > deadline else e) - lease_end) / span if span > 0 else 0.0
            score = (wc * (1.0 - p / md) + ws * slack) + (
                wl * (1.0 - (util_[k] / 100 + r / cap_[k]) / 2) + wr * rep_[k]
            )
            if score > best or (score == best and k < best_k):
                best, best_k = score, k
        return best_k, best

    def _scan(
        self, ks: list[int], req, lease_end: int, need: int, excluded: set[int], owners: set[str]
    ) -> tuple[int, float]:
        """Score the given candidates one by one (the few assets that hold the job)."""
        best, best_k = -math.inf, -1
        for k in ks:
            if (
                self._run[k] >= self._cap[k]
                or self._gpus_free[k] < req.gpu_count
                or self._cpu_free[k] < req.cpu_cores
                or self._mem_free[k] < req.memory_mib
                or self._disk_free[k] < req.disk_mib
                or self._vram[k] < req.min_vram_mib
                or self._price[k] > req.max_price
                or self._expire[k] < lease_end
                or k in excluded
                or self._owner[k] in owners
                or (self._run[k] and self._free[k] < need)
            ):
                continue
            score = combine(
                self.weights,
                cost_term(self._price[k], req.max_price),
                slack_term(self._expire[k], req.deadline, lease_end, self.now),
                load_term(self._util[k], self._run[k], self._cap[k]),
                self._rep[k],
            )
            if score > best:  # ks ascend, so the first of equal scores has the lowest id
                best, best_k = score, k
        return best_k, best


def schedule(
    shards: Iterable[OpenShard],
    assets: Iterable[Asset],
    nodes: Mapping[int, NodeState] | Iterable[NodeState],
    reputations: Mapping[int, Reputation],
    params: Parameters,
    now: int,
    weights: Weights = Weights(),
    policy: Policy = Policy(),
    *,
    band_size: int = BAND_SIZE,
    max_bands: int = MAX_BANDS,
) -> list[Assignment]:
    """The assignments a keeper should send now, in the order to send them.

    `assets` are all the registered assets (ineligible ones too: their owners tell which
    replicas are independent); `nodes` the node states from accepted heartbeats, by asset;
    `reputations` by asset (missing: no history). A replica left open by this round is
    simply absent from the result.
    """
    batch = Batch(
        shards, assets, nodes, reputations, params, now, weights, policy, band_size=band_size, max_bands=max_bands
    )
    out: list[Assignment] = []
    for job, shard in batch.order():
        while batch.has_open_replica(job, shard):
            decision = batch.place(job, shard)
            if isinstance(decision, Skip):
                break
            out.append(decision)
    return out
