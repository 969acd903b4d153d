"""A pure-Python model of the market: JobMarket's jobs, replicas and credits,
DisputeCourt's challenges and rulings, ComputeAsset's stakes and leased GPUs,
KeeperRegistry's keeper ids and the token balances they move.

Each operation mirrors one contract entry point: it runs the contract's checks in
the contract's order and returns the revert reason of the first one that fails
(leaving the model untouched), or applies the effects and returns None. The
operation runs at `now + 1`, the timestamp of the next block, and a successful one
advances `now` to it, as the chain does when one transaction mines one block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from computenet.domain import (
    BPS,
    MAX_DECLINES,
    MAX_REPLICATION,
    MAX_SHARDS,
    Parameters,
    ReplicaState,
    Requirements,
    Verification,
    settle_amounts,
)

OPEN = ReplicaState.OPEN
ASSIGNED = ReplicaState.ASSIGNED
SUBMITTED = ReplicaState.SUBMITTED
DISPUTED = ReplicaState.DISPUTED
FINALIZED = ReplicaState.FINALIZED
CANCELLED = ReplicaState.CANCELLED

ZERO_ROOT = b"\x00" * 32
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MAX_CONTRIBUTORS = 3  # JobMarket.MAX_CONTRIBUTORS
REWARD_BPS = 1000  # DisputeCourt.REWARD_BPS: a proven fault's share of the slash
MAX_UINT40 = 2**40 - 1
MAX_UINT80 = 2**80 - 1
MAX_UINT32 = 2**32 - 1
# market_params bounds.
MAX_FEE_BPS = 1000
MAX_SLASH_BPS = 5000
MIN_WINDOW = 60
MAX_WINDOW = 2_592_000
MAX_DECLINE_WINDOW = 3600
MAX_LEASE_GRACE = 86_400
MAX_AMOUNT = 2**96 - 1


class Revert(Exception):
    """A check failed; `reason` is the contract's revert string."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def require(condition: bool, reason: str) -> None:
    if not condition:
        raise Revert(reason)


@dataclass
class ReplicaModel:
    asset: int = 0
    keeper: int = 0
    state: ReplicaState = OPEN
    lease: int = 0
    price: int = 0
    deadline: int = 0
    since: int = 0
    gpu_seconds: int = 0
    root: bytes = ZERO_ROOT
    # checkpoints (JobMarket.checkpoint): the resume point, the pending one with its lease and
    # seconds, and the paid contributions (asset, keeper id, price, GPU-seconds)
    resume: bytes = ZERO_ROOT
    pending: bytes = ZERO_ROOT
    pending_lease: int = 0
    pending_gpu_seconds: int = 0
    contributions: list = field(default_factory=list)

    @property
    def contributed(self) -> int:
        return sum(c[3] for c in self.contributions)

    def checkpoints(self) -> tuple:
        """In the order of JobMarket.Checkpoints."""
        pending = self.pending if self.pending_lease else ZERO_ROOT
        return (
            self.resume,
            pending,
            self.pending_lease,
            self.pending_gpu_seconds,
            len(self.contributions),
            self.contributed,
        )

    def as_tuple(self) -> tuple:
        """In the order of JobMarket.Replica."""
        return (
            self.asset,
            self.keeper,
            int(self.state),
            self.lease,
            self.price,
            self.deadline,
            self.since,
            self.gpu_seconds,
        )


@dataclass
class JobModel:
    id: int
    client: str
    manifest: bytes
    req: Requirements
    keeper_fee_bps: int
    protocol_fee_bps: int
    budget: int
    escrow: int
    unfinished: int
    replicas: list[list[ReplicaModel]]
    challenges: dict[int, tuple[str, int]] = field(default_factory=dict)  # shard -> (challenger, bond), the court's
    declines: dict[int, int] = field(default_factory=dict)  # shard -> declines so far
    spent: int = 0  # payments and fees paid out of the escrow
    refund: int | None = None  # set once, when the last shard is done


@dataclass
class AssetModel:
    id: int
    owner: str
    agent: str
    gpu_count: int
    vram_mib: int
    price: int
    expire: int
    max_leases: int
    active: bool = True
    stake: int = 0
    open_leases: int = 0  # replicas assigned to it and still running
    gpus_leased: int = 0  # GPUs its open leases hold together
    pending_results: int = 0  # submitted or disputed results: they keep the stake locked
    unbond_at: int = 0
    unbonding: int = 0

    @property
    def available(self) -> int:
        return self.stake - min(self.unbonding, self.stake)


@dataclass
class KeeperModel:
    id: int
    address: str
    bond: int
    exiting: bool = False


@dataclass(frozen=True)
class Payout:
    """One ShardFinalized."""

    job: int
    shard: int
    replica: int
    asset: int
    provider: str
    keeper: str
    payment: int
    keeper_fee: int
    protocol_fee: int


@dataclass
class MarketModel:
    params: Parameters
    market: str  # contract addresses, as token holders
    assets_contract: str
    treasury: str
    facilitators: set[str]
    min_keeper_bond: int
    unbonding_delay: int
    now: int  # timestamp of the latest block
    balances: dict[str, int]  # token balances of every holder
    assets: dict[int, AssetModel]
    keepers: dict[str, KeeperModel]
    paused: bool = False
    jobs: dict[int, JobModel] = field(default_factory=dict)
    credits: dict[str, int] = field(default_factory=dict)
    payouts: list[Payout] = field(default_factory=list)
    contribution_payouts: list[Payout] = field(default_factory=list)  # ContributionPaid, as Payouts
    approved: set[str] = field(default_factory=set)  # accounts that approved the market for any amount
    surplus: int = 0  # tokens sent to the market outside its paths, owed to no one

    # ------------------------------------------------------------ plumbing

    def run(self, op, *args) -> str | None:
        """Runs `op(t, *args)` at the next block's time: the revert reason, or None
        after applying it. Operations check everything before they change anything."""
        t = self.now + 1
        try:
            op(t, *args)
        except Revert as revert:
            return revert.reason
        self.now = t
        return None

    def advance(self, seconds: int) -> None:
        """An empty block `seconds` later."""
        self.now += seconds

    def keeper_of(self, keeper_id: int) -> str:
        return next(k.address for k in self.keepers.values() if k.id == keeper_id)

    def _credit(self, account: str, amount: int) -> None:
        if amount:
            self.credits[account] = self.credits.get(account, 0) + amount

    def _transfer(self, sender: str, receiver: str, amount: int) -> None:
        require(receiver != ZERO_ADDRESS, "ERC20: transfer to the zero address")
        require(self.balances.get(sender, 0) >= amount, "ERC20: transfer amount exceeds balance")
        self.balances[sender] -= amount
        self.balances[receiver] = self.balances.get(receiver, 0) + amount

    def _pull(self, payer: str, amount: int) -> None:
        """settlement._pull: transferFrom within the allowance the payer gave the market."""
        require(payer in self.approved, "ERC20: transfer amount exceeds allowance")
        self._transfer(payer, self.market, amount)

    def _job(self, job_id: int) -> JobModel:
        require(job_id in self.jobs, "job_market: unknown job")
        return self.jobs[job_id]

    @staticmethod
    def _check_shard(job: JobModel, shard: int) -> None:
        require(shard < job.req.shard_count, "job_market: unknown shard")

    def _check_replica(self, job: JobModel, shard: int, replica: int) -> ReplicaModel:
        self._check_shard(job, shard)
        require(replica < job.req.replication, "job_market: unknown replica")
        return job.replicas[shard][replica]

    def _not_paused(self) -> None:
        require(not self.paused, "market_params: paused")

    def _slash(self, asset_id: int, slash_bps: int, gpus: int | None) -> int:
        """ComputeAsset.end_lease with a slash: ends a running lease of `gpus` GPUs (None:
        a pending result), moves `slash_bps` of the stake to the market."""
        if gpus is None:
            self._close_result(asset_id)
        else:
            self._close_lease(asset_id, gpus)
        slashed = self.assets[asset_id].stake * slash_bps // BPS
        self.assets[asset_id].stake -= slashed
        self.balances[self.assets_contract] -= slashed
        self.balances[self.market] += slashed
        return slashed

    def _close_lease(self, asset_id: int, gpus: int) -> str:
        asset = self.assets[asset_id]
        assert asset.open_leases > 0, f"asset {asset_id}: closing a lease that is not open"
        assert asset.gpus_leased >= gpus, f"asset {asset_id}: releasing {gpus} GPUs, {asset.gpus_leased} leased"
        asset.open_leases -= 1
        asset.gpus_leased -= gpus
        return asset.owner

    def _close_result(self, asset_id: int) -> str:
        asset = self.assets[asset_id]
        assert asset.pending_results > 0, f"asset {asset_id}: closing a result that is not pending"
        asset.pending_results -= 1
        return asset.owner

    def _shard_done(self, job: JobModel) -> None:
        job.unfinished -= 1
        if job.unfinished == 0:
            assert job.refund is None, f"job {job.id} refunded twice"
            job.refund = job.escrow
            job.escrow = 0
            self._credit(job.client, job.refund)

    def lease_seconds(self, req: Requirements) -> int:
        return req.lease_seconds(self.params.lease_grace)

    def quote(self, req: Requirements) -> int:
        return req.quote(self.params.keeper_fee_bps, self.params.protocol_fee_bps)

    # ------------------------------------------------------------ clients

    def post_job(self, t: int, sender: str, manifest: bytes, req: Requirements) -> None:
        self._not_paused()
        require(manifest != ZERO_ROOT, "job_market: empty manifest hash")
        require(0 < req.shard_count <= MAX_SHARDS, "job_market: shard count out of range")
        require(0 < req.replication <= MAX_REPLICATION, "job_market: replication out of range")
        require(req.verification <= Verification.SPOT_CHECK, "job_market: unknown verification mode")
        require(
            (req.verification == Verification.REPLICATED) == (req.replication > 1),
            "job_market: verification mode does not match replication",
        )
        require(req.max_price > 0, "job_market: zero price cap")
        require(req.max_gpu_seconds > 0, "job_market: zero gpu-seconds")
        require(req.deadline <= MAX_UINT40, "job_market: deadline out of range")
        require(t + self.lease_seconds(req) <= req.deadline, "job_market: deadline too soon")
        budget = self.quote(req)
        require(budget <= MAX_UINT80, "job_market: budget too large")
        self._pull(sender, budget)
        job_id = len(self.jobs) + 1
        self.jobs[job_id] = JobModel(
            id=job_id,
            client=sender,
            manifest=manifest,
            req=req,
            keeper_fee_bps=self.params.keeper_fee_bps,
            protocol_fee_bps=self.params.protocol_fee_bps,
            budget=budget,
            escrow=budget,
            unfinished=req.shard_count,
            replicas=[[ReplicaModel() for _ in range(req.replication)] for _ in range(req.shard_count)],
        )

    def _unstarted(self, t: int, rep: ReplicaModel) -> bool:
        """Open, or assigned and inside its decline window: a cancel takes it."""
        return rep.state == OPEN or (rep.state == ASSIGNED and t <= rep.since + self.params.decline_window)

    def cancel(self, t: int, sender: str, job_id: int, shard: int) -> None:
        """The client's cancel; the court relays a signed one with the client as `sender`."""
        job = self._job(job_id)
        require(sender == job.client, "job_market: caller is not the client")
        self._check_shard(job, shard)
        reps = job.replicas[shard]
        opened = sum(self._unstarted(t, rep) for rep in reps)
        live = sum(rep.state != CANCELLED for rep in reps) - opened
        require(opened > 0, "job_market: nothing to cancel")
        require(live == 0 or t > job.req.deadline, "job_market: shard already assigned")
        self._close_unstarted(t, job, shard)

    def cancel_signed(self, t: int, signer: str, job_id: int, shard: int) -> None:
        """DisputeCourt.cancel_with_signature (a signature valid long after `t`): the client's
        cancel, whoever relays it."""
        require(
            job_id in self.jobs and signer == self.jobs[job_id].client, "dispute_court: cancel not signed by the client"
        )
        self.cancel(t, signer, job_id, shard)

    def _close_unstarted(self, t: int, job: JobModel, shard: int) -> None:
        reps = job.replicas[shard]
        for rep in reps:
            if self._unstarted(t, rep):
                if rep.state == ASSIGNED:
                    self._close_lease(rep.asset, job.req.gpu_count)
                rep.state = CANCELLED
                rep.since = t
        if all(rep.state == CANCELLED for rep in reps):
            self._shard_done(job)
        elif job.req.replication > 1:
            # The replicas left may all have submitted already, and disagree.
            self._dispute_if_replicas_disagree(t, job, shard)

    # ------------------------------------------------------------ keepers

    def _active_keeper_id(self, account: str) -> int:
        keeper = self.keepers.get(account)
        require(keeper is not None, "keeper_registry: not a keeper")
        require(not keeper.exiting, "keeper_registry: keeper is exiting")
        require(keeper.bond >= self.min_keeper_bond, "keeper_registry: bond below minimum")
        return keeper.id

    def _check_assign(self, t: int, job: JobModel, shard: int, asset_id: int) -> int:
        """The checks of `assign` after the keeper's; returns the replica slot."""
        self._check_shard(job, shard)
        require(asset_id <= MAX_UINT32, "job_market: unknown asset")
        asset = self.assets.get(asset_id)
        require(asset is not None, "compute_asset: unknown asset")
        require(asset.agent != ZERO_ADDRESS, "compute_asset: no agent")
        require(asset.available >= self.params.min_stake, "asset_stakes: stake below minimum")
        require(asset.open_leases < asset.max_leases, "asset_stakes: asset at lease capacity")
        req = job.req
        if req.gpu_count <= asset.gpu_count:  # more than it has at all: the market's "too few gpus" below
            require(asset.gpus_leased + req.gpu_count <= asset.gpu_count, "asset_stakes: asset gpus all leased")
        require(asset.active, "job_market: asset is paused")
        # Never fails: the check of the GPUs leased fails first.
        require(asset.gpu_count >= req.gpu_count, "job_market: asset has too few gpus")
        require(asset.vram_mib >= req.min_vram_mib, "job_market: asset has too little vram")
        require(asset.price <= req.max_price, "job_market: asset price above cap")
        lease_end = t + self.lease_seconds(req)
        require(lease_end <= req.deadline, "job_market: lease would end after the deadline")
        require(lease_end <= asset.expire, "job_market: asset expires before the lease ends")
        slot = None
        for r, other in enumerate(job.replicas[shard]):
            if other.state == OPEN:
                if slot is None:
                    slot = r
            elif other.state != CANCELLED:
                require(other.asset != asset_id, "job_market: asset already runs this shard")
        require(slot is not None, "job_market: shard has no open replica")
        return slot

    def assign(self, t: int, sender: str, job_id: int, shard: int, asset_id: int) -> None:
        self._not_paused()
        keeper_id = self._active_keeper_id(sender)
        job = self._job(job_id)
        slot = self._check_assign(t, job, shard, asset_id)
        asset = self.assets[asset_id]
        asset.open_leases += 1
        asset.gpus_leased += job.req.gpu_count
        rep = job.replicas[shard][slot]
        rep.asset = asset_id
        rep.keeper = keeper_id
        rep.state = ASSIGNED
        rep.lease += 1
        rep.price = asset.price
        rep.deadline = t + self.lease_seconds(job.req)
        rep.since = t
        rep.gpu_seconds = 0

    def eligible_assignments(self) -> list[tuple[int, int, int]]:
        """(job, shard, asset) triples an active keeper could assign in the next block."""
        if self.paused:
            return []
        t = self.now + 1
        found = []
        for job in self.jobs.values():
            for shard in range(job.req.shard_count):
                for asset_id in self.assets:
                    try:
                        self._check_assign(t, job, shard, asset_id)
                    except Revert:
                        continue
                    found.append((job.id, shard, asset_id))
        return found

    def reclaim(self, t: int, sender: str, job_id: int, shard: int, replica: int) -> None:
        """The whole slash goes to the treasury, so no caller gains from a reclaim;
        while the market is paused the replica reopens without a slash."""
        job = self._job(job_id)
        rep = self._check_replica(job, shard, replica)
        require(rep.state == ASSIGNED, "job_market: replica not assigned")
        require(t > rep.deadline, "job_market: lease not expired")
        rep.state = OPEN
        rep.since = t
        if rep.pending_lease == rep.lease:  # the lease committed a checkpoint: adopted
            rep.resume = rep.pending
            paid = 0
            if len(rep.contributions) < MAX_CONTRIBUTORS:
                paid = min(rep.pending_gpu_seconds, job.req.max_gpu_seconds - rep.contributed)
            if paid:
                rep.contributions.append((rep.asset, rep.keeper, rep.price, paid))
            rep.pending, rep.pending_lease, rep.pending_gpu_seconds = ZERO_ROOT, 0, 0
        slashed = self._slash(rep.asset, 0 if self.paused else self.params.slash_bps, job.req.gpu_count)
        self._credit(self.treasury, slashed)

    def finalize(self, t: int, sender: str, job_id: int, shard: int) -> None:
        """Roots are not compared: after a zero-root ruling or the default outcome,
        replicas that disagree are all paid."""
        job = self._job(job_id)
        self._check_shard(job, shard)
        submitted = False
        for rep in job.replicas[shard]:
            if rep.state == CANCELLED:
                continue
            require(rep.state == SUBMITTED, "job_market: shard not ready")
            require(t > rep.deadline, "job_market: challenge window open")
            submitted = True
        require(submitted, "job_market: shard not ready")
        for r, rep in enumerate(job.replicas[shard]):
            if rep.state != SUBMITTED:
                continue
            rep.state = FINALIZED
            rep.since = t
            provider = self._close_result(rep.asset)
            for asset_id, keeper_id, price, seconds in rep.contributions:
                owner, keeper = self.assets[asset_id].owner, self.keeper_of(keeper_id)
                payment, keeper_fee, protocol_fee = settle_amounts(
                    price, seconds, job.keeper_fee_bps, job.protocol_fee_bps
                )
                cost = payment + keeper_fee + protocol_fee
                assert cost <= job.escrow, f"job {job.id}: a contribution to shard {shard} overdraws the escrow"
                job.escrow -= cost
                job.spent += cost
                self._credit(owner, payment)
                self._credit(keeper, keeper_fee)
                self._credit(self.treasury, protocol_fee)
                self.contribution_payouts.append(
                    Payout(job.id, shard, r, asset_id, owner, keeper, payment, keeper_fee, protocol_fee)
                )
            keeper = self.keeper_of(rep.keeper)
            payment, keeper_fee, protocol_fee = settle_amounts(
                rep.price, rep.gpu_seconds, job.keeper_fee_bps, job.protocol_fee_bps
            )
            cost = payment + keeper_fee + protocol_fee
            assert cost <= job.escrow, f"job {job.id}: finalizing shard {shard} overdraws the escrow"
            job.escrow -= cost
            job.spent += cost
            self._credit(provider, payment)
            self._credit(keeper, keeper_fee)
            self._credit(self.treasury, protocol_fee)
            self.payouts.append(
                Payout(job.id, shard, r, rep.asset, provider, keeper, payment, keeper_fee, protocol_fee)
            )
        self._shard_done(job)

    # ------------------------------------------------------------ agents

    def decline(self, t: int, sender: str, job_id: int, shard: int, replica: int) -> None:
        job = self._job(job_id)
        rep = self._check_replica(job, shard, replica)
        require(rep.state == ASSIGNED, "job_market: replica not assigned")
        require(sender == self.assets[rep.asset].agent, "job_market: caller is not the asset's agent")
        require(t <= rep.since + self.params.decline_window, "job_market: decline window closed")
        rep.state = OPEN
        rep.since = t
        self._close_lease(rep.asset, job.req.gpu_count)
        job.declines[shard] = job.declines.get(shard, 0) + 1
        if job.declines[shard] >= MAX_DECLINES:  # the shard fails: what has not started is cancelled
            self._close_unstarted(t, job, shard)

    def commit_checkpoint(
        self, t: int, job_id: int, shard: int, replica: int, checkpoint: bytes, gpu_seconds: int, signer: str
    ) -> None:
        """`signer` is the address the Checkpoint signature recovers to."""
        job = self._job(job_id)
        rep = self._check_replica(job, shard, replica)
        require(rep.state == ASSIGNED, "job_market: replica not assigned")
        require(checkpoint != ZERO_ROOT, "job_market: empty checkpoint")
        require(
            gpu_seconds <= (min(t, rep.deadline) - rep.since) * max(1, job.req.gpu_count),
            "job_market: gpu_seconds exceed the lease's time",
        )
        last = rep.pending_gpu_seconds if rep.pending_lease == rep.lease else 0
        require(gpu_seconds > last, "job_market: checkpoint not newer")
        require(signer == self.assets[rep.asset].agent, "job_market: checkpoint not signed by the asset's agent")
        rep.pending, rep.pending_lease, rep.pending_gpu_seconds = checkpoint, rep.lease, gpu_seconds

    def submit_result(
        self, t: int, job_id: int, shard: int, replica: int, root: bytes, gpu_seconds: int, signer: str
    ) -> None:
        """`signer` is the address the receipt signature recovers to."""
        job = self._job(job_id)
        rep = self._check_replica(job, shard, replica)
        require(rep.state == ASSIGNED, "job_market: replica not assigned")
        require(t <= rep.deadline, "job_market: lease expired")
        require(root != ZERO_ROOT, "job_market: empty output root")
        require(
            gpu_seconds <= (t - rep.since) * max(1, job.req.gpu_count),
            "job_market: gpu_seconds exceed the lease's time",
        )
        require(signer == self.assets[rep.asset].agent, "job_market: receipt not signed by the asset's agent")
        rep.state = SUBMITTED
        rep.since = t
        rep.deadline = t + self.params.challenge_window
        rep.gpu_seconds = min(gpu_seconds, job.req.max_gpu_seconds - rep.contributed)
        rep.root = root
        self._close_lease(rep.asset, job.req.gpu_count)  # the lease ends; the result is pending
        self.assets[rep.asset].pending_results += 1
        if job.req.replication > 1:
            self._dispute_if_replicas_disagree(t, job, shard)

    def _dispute_if_replicas_disagree(self, t: int, job: JobModel, shard: int) -> None:
        reps = job.replicas[shard]
        live = [rep for rep in reps if rep.state != CANCELLED]
        if any(rep.state != SUBMITTED for rep in live):
            return
        if len({rep.root for rep in live}) <= 1:
            return
        for rep in reps:
            if rep.state == SUBMITTED:
                rep.state = DISPUTED
                rep.since = t

    # ------------------------------------------------------------ the dispute court

    def challenge(self, t: int, sender: str, job_id: int, shard: int) -> None:
        """DisputeCourt.challenge, then JobMarket.open_dispute: anyone but the owner or
        agent key of an asset holding a live replica of the shard disputes every
        result still inside its window, posting the bond."""
        job = self._job(job_id)
        require(shard < job.req.shard_count, "dispute_court: unknown shard")
        reps = job.replicas[shard]
        for rep in reps:
            if rep.state in (OPEN, CANCELLED):
                continue
            asset = self.assets[rep.asset]
            require(sender not in (asset.owner, asset.agent), "dispute_court: provider cannot challenge its shard")
        targets = []
        for rep in reps:
            require(rep.state != DISPUTED, "job_market: dispute already open")
            if rep.state == SUBMITTED and t <= rep.deadline:
                targets.append(rep)
        require(len(targets) > 0, "job_market: nothing to challenge")
        bond = self.params.challenge_bond
        self._pull(sender, bond)
        for rep in targets:
            rep.state = DISPUTED
            rep.since = t
        job.challenges[shard] = (sender, bond)

    def ruling_deadline(self, job_id: int, shard: int) -> tuple[int, int]:
        """DisputeCourt._dispute_times: when the shard's open dispute opened, and its
        ruling deadline (one lease and one challenge window later, at today's parameters)."""
        job = self._job(job_id)
        require(shard < job.req.shard_count, "dispute_court: unknown shard")
        opened = next((rep.since for rep in job.replicas[shard] if rep.state == DISPUTED), 0)
        require(opened != 0, "dispute_court: no open dispute")
        return opened, opened + self.lease_seconds(job.req) + self.params.challenge_window

    def resolve(self, t: int, sender: str, job_id: int, shard: int, valid_root: bytes) -> None:
        """A facilitator's ruling, before the ruling deadline. A ruling by root reads the
        shard's roots first (none here is batched, so every one is on chain)."""
        if valid_root != ZERO_ROOT:
            require(shard < self._job(job_id).req.shard_count, "dispute_court: unknown shard")
        require(sender in self.facilitators, "dispute_court: caller is not a facilitator")
        opened, deadline = self.ruling_deadline(job_id, shard)
        require(t <= deadline, "dispute_court: ruling deadline passed")
        self._settle(t, self.jobs[job_id], shard, valid_root, opened, sender)

    def expire(self, t: int, sender: str, job_id: int, shard: int) -> None:
        """The default outcome, by anyone after the ruling deadline: every result
        stands and is final (no window reopened), and the bond goes back."""
        opened, deadline = self.ruling_deadline(job_id, shard)
        require(t > deadline, "dispute_court: ruling deadline not passed")
        self._settle(t, self.jobs[job_id], shard, ZERO_ROOT, t, None)

    def _settle(self, t: int, job: JobModel, shard: int, valid_root: bytes, opened: int, arbiter: str | None) -> None:
        """DisputeCourt._settle around JobMarket.rule. Every disputed or submitted
        replica with `valid_root` (every one, for a zero root) stands, its window
        extended by the dispute's length; every other one is slashed and reopens.
        A challenger that proved a replica it accused wrong (else the first upheld
        provider) gets REWARD_BPS of the slash, at most one bond, the treasury the
        rest; the bond goes back to such a challenger or when no one ruled, else to
        the accused that stood. (The default outcome passes `opened` = now: no
        window is extended.)"""
        challenger, bond = job.challenges.pop(shard, (None, 0))
        rejected = slashed = 0
        accused = sum(rep.state == DISPUTED for rep in job.replicas[shard])
        stood = []  # owners of the disputed replicas that stood, in replica order
        for rep in job.replicas[shard]:
            was_disputed = rep.state == DISPUTED
            if not was_disputed and rep.state != SUBMITTED:
                continue
            rep.since = t
            if valid_root == ZERO_ROOT or rep.root == valid_root:
                rep.state = SUBMITTED
                rep.deadline += t - opened
                if was_disputed:
                    stood.append(self.assets[rep.asset].owner)
            else:
                rep.state = OPEN
                rep.root = ZERO_ROOT  # the market clears a rejected result's root
                slashed += self._slash(rep.asset, self.params.slash_bps, None)
                rejected += 1
        proven = challenger is not None and accused > len(stood)
        rewarded = challenger if proven else (stood[0] if stood else None)
        reward = min(slashed * REWARD_BPS // BPS, self.params.challenge_bond) if rewarded else 0
        if rewarded:
            self._credit(rewarded, reward)
        self._credit(self.treasury, slashed - reward)
        if bond and (proven or arbiter is None):
            self._credit(challenger, bond)
        elif bond:
            share = bond // len(stood)
            for owner in stood:
                self._credit(owner, share)
            self._credit(stood[0], bond - share * len(stood))

    # ------------------------------------------------------------ money out

    def withdraw(self, t: int, sender: str, receiver: str) -> None:
        require(receiver != ZERO_ADDRESS, "settlement: zero receiver")
        amount = self.credits.get(sender, 0)
        require(amount > 0, "settlement: nothing to withdraw")
        self.credits[sender] = 0
        self._transfer(self.market, receiver, amount)

    def withdraw_many(self, t: int, accounts: list[str]) -> None:
        for account in accounts:
            amount = self.credits.get(account, 0)
            if amount:
                self.credits[account] = 0
                self._transfer(self.market, account, amount)

    def send_aside(self, t: int, sender: str, amount: int) -> None:
        """A plain token transfer to the market: it holds more than it owes."""
        self._transfer(sender, self.market, amount)
        self.surplus += amount

    # ------------------------------------------------------------ owners

    def transfer_asset(self, t: int, sender: str, receiver: str, asset_id: int) -> None:
        """ERC-721 transferFrom by the owner, with no lease open: the stake and future
        earnings move with the asset, and its agent key is cleared."""
        asset = self.assets[asset_id]
        require(sender == asset.owner, "erc721: owner mismatch")
        require(t <= asset.expire, "compute_asset: expired")
        require(asset.open_leases == 0, "compute_asset: asset has open leases")
        require(asset.pending_results == 0, "compute_asset: asset has results that can still be challenged")
        asset.owner = receiver
        asset.agent = ZERO_ADDRESS

    def set_agent(self, t: int, asset_id: int, agent: str) -> None:
        require(agent != ZERO_ADDRESS, "compute_asset: zero agent")
        self.assets[asset_id].agent = agent

    def set_price(self, t: int, asset_id: int, price: int) -> None:
        self.assets[asset_id].price = price

    def pause_asset(self, t: int, asset_id: int) -> None:
        asset = self.assets[asset_id]
        require(asset.active, "compute_asset: already paused")
        asset.active = False

    def resume_asset(self, t: int, asset_id: int) -> None:
        asset = self.assets[asset_id]
        require(not asset.active, "compute_asset: not paused")
        asset.active = True

    def add_stake(self, t: int, sender: str, asset_id: int, amount: int) -> None:
        asset = self.assets[asset_id]
        require(sender == asset.owner, "asset_stakes: caller is not the asset owner")
        require(amount > 0, "asset_stakes: zero amount")
        require(asset.stake + amount < 2**96, "asset_stakes: stake too large")
        self._transfer(sender, self.assets_contract, amount)
        asset.stake += amount

    def renew(self, t: int, asset_id: int, expire: int) -> None:
        require(expire > t, "compute_asset: expiry in the past")
        self.assets[asset_id].expire = expire

    def set_capacity(self, t: int, asset_id: int, max_leases: int) -> None:
        require(max_leases > 0, "compute_asset: zero lease capacity")
        self.assets[asset_id].max_leases = max_leases

    def request_unstake(self, t: int, asset_id: int, amount: int) -> None:
        asset = self.assets[asset_id]
        require(0 < amount <= asset.stake, "asset_stakes: amount exceeds stake")
        asset.unbonding = amount
        asset.unbond_at = t + self.unbonding_delay

    def request_exit(self, t: int, sender: str) -> None:
        keeper = self.keepers.get(sender)
        require(keeper is not None, "keeper_registry: not a keeper")
        require(not keeper.exiting, "keeper_registry: exit already requested")
        keeper.exiting = True

    def set_parameters(self, t: int, p: Parameters) -> None:
        """market_params.set_parameters: posted jobs keep their fees; every other
        setting applies to what happens next."""
        require(p.keeper_fee_bps <= MAX_FEE_BPS, "market_params: keeper fee too high")
        require(p.protocol_fee_bps <= MAX_FEE_BPS, "market_params: protocol fee too high")
        require(p.slash_bps <= MAX_SLASH_BPS, "market_params: slash too high")
        require(MIN_WINDOW <= p.challenge_window <= MAX_WINDOW, "market_params: challenge window out of range")
        require(0 < p.decline_window <= MAX_DECLINE_WINDOW, "market_params: decline window out of range")
        require(p.lease_grace <= MAX_LEASE_GRACE, "market_params: lease grace too long")
        require(p.min_stake <= MAX_AMOUNT, "market_params: min stake too large")
        require(0 < p.challenge_bond <= MAX_AMOUNT, "market_params: challenge bond out of range")
        self.params = p

    def pause_market(self, t: int) -> None:
        require(not self.paused, "market_params: paused")
        self.paused = True

    def unpause_market(self, t: int) -> None:
        require(self.paused, "market_params: not paused")
        self.paused = False

    # ------------------------------------------------------------ views

    def replicas(self, *states: ReplicaState) -> list[tuple[int, int, int]]:
        """(job, shard, replica) of every replica in one of `states` (all if none given)."""
        return [
            (job.id, s, r)
            for job in self.jobs.values()
            for s, reps in enumerate(job.replicas)
            for r, rep in enumerate(reps)
            if not states or rep.state in states
        ]

    def shards(self) -> list[tuple[int, int]]:
        return [(job.id, s) for job in self.jobs.values() for s in range(job.req.shard_count)]

    def replica(self, job_id: int, shard: int, replica: int) -> ReplicaModel:
        return self.jobs[job_id].replicas[shard][replica]

    def open_bonds(self) -> int:
        return sum(bond for job in self.jobs.values() for _, bond in job.challenges.values())

    def owed(self) -> int:
        """JobMarket.owed: escrows, credits and the bonds of open challenges."""
        return sum(job.escrow for job in self.jobs.values()) + sum(self.credits.values()) + self.open_bonds()

    def disputes(self) -> list[tuple[int, int]]:
        """(job, shard) of every open dispute."""
        return sorted({(j, s) for j, s, _ in self.replicas(DISPUTED)})

    def check(self) -> None:
        """The model's own invariants: money conserved, nothing negative, no GPU
        leased twice, finished jobs refunded exactly what they did not spend."""
        assert self.balances[self.market] == self.owed() + self.surplus, "market balance is not what it owes"
        assert self.balances[self.assets_contract] == sum(a.stake for a in self.assets.values()), "stakes not covered"
        for holder, balance in self.balances.items():
            assert balance >= 0, f"{holder} balance negative"
        for account, credit in self.credits.items():
            assert credit >= 0, f"{account} credit negative"
        for asset in self.assets.values():
            assert asset.stake >= 0 and asset.open_leases >= 0, f"asset {asset.id}: {asset}"
            mine = [
                (job.req.gpu_count, rep.state)
                for job in self.jobs.values()
                for reps in job.replicas
                for rep in reps
                if rep.asset == asset.id
            ]
            live = [gpus for gpus, state in mine if state == ASSIGNED]
            pending = sum(state in (SUBMITTED, DISPUTED) for _, state in mine)
            assert asset.open_leases == len(live), f"asset {asset.id}: {asset.open_leases} leases, {live} live"
            assert asset.pending_results == pending, f"asset {asset.id}: {asset.pending_results} pending, {pending}"
            assert asset.gpus_leased == sum(live) <= asset.gpu_count, f"asset {asset.id}: GPUs leased {live}"
        paid = [(p.job, p.shard, p.replica) for p in self.payouts]
        assert len(paid) == len(set(paid)), "a replica was paid twice"
        for job in self.jobs.values():
            assert job.escrow >= 0
            assert job.budget == job.escrow + job.spent + (job.refund or 0)
            done = sum(all(rep.state in (FINALIZED, CANCELLED) for rep in reps) for reps in job.replicas)
            assert job.unfinished == job.req.shard_count - done, f"job {job.id}: unfinished count off"
            if job.unfinished == 0:
                assert job.escrow == 0 and job.refund == job.budget - job.spent
            else:
                assert job.refund is None
