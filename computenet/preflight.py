"""Pre-flight checks: the contracts' rules as pure functions over domain objects.

Each `*_problem` function returns the exact revert string the contract would give
(checked in the contract's order), or None when the call would pass the rule. The SDK
raises them as typed errors before sending, and keepers use them to never propose
what the chain would reject. Pure: no ape, web3, redis or celery.
"""

from __future__ import annotations

from collections.abc import Sequence

from computenet.domain import (
    MAX_REPLICATION,
    MAX_SHARDS,
    Asset,
    Job,
    KeeperBond,
    Parameters,
    Replica,
    ReplicaState,
    Requirements,
    Verification,
)

UINT32_MAX = 2**32 - 1
UINT40_MAX = 2**40 - 1
UINT80_MAX = 2**80 - 1
UINT96_MAX = 2**96 - 1
ZERO_HASH = b"\x00" * 32


def post_problem(
    manifest_hash: bytes, req: Requirements, params: Parameters, now: int, paused: bool = False
) -> str | None:
    """Why `post_job(manifest_hash, req)` would revert (token balance and allowance aside)."""
    if paused:
        return "market_params: paused"
    if bytes(manifest_hash) == ZERO_HASH:
        return "job_market: empty manifest hash"
    if not 0 < req.shard_count <= MAX_SHARDS:
        return "job_market: shard count out of range"
    if not 0 < req.replication <= MAX_REPLICATION:
        return "job_market: replication out of range"
    if req.verification not in set(Verification):
        return "job_market: unknown verification mode"
    if (req.verification == Verification.REPLICATED) != (req.replication > 1):
        return "job_market: verification mode does not match replication"
    if req.max_price <= 0:
        return "job_market: zero price cap"
    if req.max_gpu_seconds <= 0:
        return "job_market: zero gpu-seconds"
    if min(req.cpu_cores, req.memory_mib, req.disk_mib) <= 0:
        return "job_market: zero cpu, memory or disk"
    if req.deadline > UINT40_MAX:
        return "job_market: deadline out of range"
    if now + req.lease_seconds(params.lease_grace) > req.deadline:
        return "job_market: deadline too soon"
    if req.quote(params.keeper_fee_bps, params.protocol_fee_bps) > UINT80_MAX:
        return "job_market: budget too large"
    return None


def asset_problem(
    asset: Asset | None, req: Requirements, params: Parameters, now: int, attested: bool | None = None
) -> str | None:
    """Why an asset cannot take a lease of this job now (the asset-side rules of `assign`);
    `attested`: whether it holds a current TEE verdict (a tee job's rule; None: not known, not checked)."""
    if asset is not None and asset.id > UINT32_MAX:
        return "job_market: unknown asset"  # ids are 32-bit in a packed replica
    if asset is None:
        return "compute_asset: unknown asset"
    if int(asset.agent, 16) == 0:  # cleared by a transfer until the new owner sets one
        return "compute_asset: no agent"
    spec = asset.spec
    if spec.cpu_cores < req.cpu_cores:
        return "compute_asset: asset has too few cpu cores"
    if spec.memory_mib < req.memory_mib:
        return "compute_asset: asset has too little memory"
    if spec.disk_mib < req.disk_mib:
        return "compute_asset: asset has too little disk"
    if asset.stake.available < params.min_stake:
        return "asset_stakes: stake below minimum"
    if asset.stake.open_leases >= asset.spec.max_leases:
        return "asset_stakes: asset at lease capacity"
    # An asset with fewer GPUs than the job needs at all gets the market's "too few gpus" below.
    if req.gpu_count <= spec.gpu_count < asset.stake.gpus_leased + req.gpu_count:
        return "asset_stakes: asset gpus all leased"
    _, cpu_free, memory_free, disk_free = asset.free
    if cpu_free < req.cpu_cores:
        return "asset_stakes: asset cpu cores all leased"
    if memory_free < req.memory_mib:
        return "asset_stakes: asset memory all leased"
    if disk_free < req.disk_mib:
        return "asset_stakes: asset disk all leased"
    if not spec.active:
        return "job_market: asset is paused"
    if spec.gpu_count < req.gpu_count:
        return "job_market: asset has too few gpus"
    if spec.vram_mib < req.min_vram_mib:
        return "job_market: asset has too little vram"
    if spec.price > req.max_price:
        return "job_market: asset price above cap"
    if req.verification == Verification.TEE and attested is False:
        return "job_market: asset not attested"
    lease_end = now + req.lease_seconds(params.lease_grace)
    if lease_end > req.deadline:
        return "job_market: lease would end after the deadline"
    if lease_end > spec.expire:
        return "job_market: asset expires before the lease ends"
    return None


def open_replica(replicas: Sequence[Replica], asset_id: int) -> tuple[int | None, str | None]:
    """(replica index `assign` would lease, or None; the revert reason, or None)."""
    slot = None
    for rep in replicas:
        if rep.state == ReplicaState.OPEN:
            if slot is None:
                slot = rep.index
        elif rep.state != ReplicaState.CANCELLED and rep.asset == asset_id:
            return None, "job_market: asset already runs this shard"
    if slot is None:
        return None, "job_market: shard has no open replica"
    return slot, None


def assign_problem(
    job: Job | None,
    shard: int,
    replicas: Sequence[Replica],
    asset: Asset | None,
    params: Parameters,
    now: int,
    paused: bool = False,
    asset_id: int | None = None,
    attested: bool | None = None,
) -> str | None:
    """Why `assign(job, shard, asset)` would revert, keeper checks aside. `asset_id`
    names the asset asked for when `asset` is None (no such asset)."""
    if paused:
        return "market_params: paused"
    if job is None:
        return "job_market: unknown job"
    if not 0 <= shard < job.requirements.shard_count:
        return "job_market: unknown shard"
    if asset is None and asset_id is not None and asset_id > UINT32_MAX:
        return "job_market: unknown asset"
    problem = asset_problem(asset, job.requirements, params, now, attested)
    if problem:
        return problem
    return open_replica(replicas, asset.id)[1]


def submit_problem(
    replica: Replica, now: int, output_root: bytes, gpu_seconds: int = 0, gpu_count: int = 0
) -> str | None:
    """Why `submit_result` would revert at `now`, the receipt signature aside; `gpu_count` is
    the job's (a claim may be at most the time since assignment × GPUs, × 1 for CPU work)."""
    if replica.state != ReplicaState.ASSIGNED:
        return "job_market: replica not assigned"
    if now > replica.deadline:
        return "job_market: lease expired"
    if bytes(output_root) == ZERO_HASH:
        return "job_market: empty output root"
    if gpu_seconds > max(0, now - replica.since) * max(1, gpu_count):
        return "job_market: gpu_seconds exceed the lease's time"
    return None


def checkpoint_problem(
    replica: Replica, now: int, checkpoint: bytes, gpu_seconds: int, gpu_count: int, last: int
) -> str | None:
    """Why `commit_checkpoint` would revert at `now`, the signature aside; `last` is the
    GPU-seconds of the checkpoint the replica's current lease last committed (0: none)."""
    if replica.state != ReplicaState.ASSIGNED:
        return "job_market: replica not assigned"
    if bytes(checkpoint) == ZERO_HASH:
        return "job_market: empty checkpoint"
    if gpu_seconds > max(0, min(now, replica.deadline) - replica.since) * max(1, gpu_count):
        return "job_market: gpu_seconds exceed the lease's time"
    if gpu_seconds <= last:
        return "job_market: checkpoint not newer"
    return None


def claimable_seconds(replica: Replica, now: int, gpu_count: int) -> int:
    """The most GPU-seconds a result for `replica` may claim if mined at `now`."""
    return max(0, now - replica.since) * max(1, gpu_count)


def finalize_problem(replicas: Sequence[Replica], now: int) -> str | None:
    """Why `finalize(job, shard)` would revert; `replicas` carry their output roots."""
    agreed = None
    for rep in replicas:
        if rep.state == ReplicaState.CANCELLED:
            continue
        if rep.state != ReplicaState.SUBMITTED:
            return "job_market: shard not ready"
        if now <= rep.deadline:
            return "job_market: challenge window open"
        if agreed is None:
            agreed = rep.output_root
        if rep.output_root != agreed:
            return "job_market: replica roots disagree"
    if agreed is None:
        return "job_market: shard not ready"
    return None


def reclaim_problem(replica: Replica, now: int) -> str | None:
    """Why `reclaim(job, shard, replica)` would revert (a pause does not stop it)."""
    if replica.state != ReplicaState.ASSIGNED:
        return "job_market: replica not assigned"
    if now <= replica.deadline:
        return "job_market: lease not expired"
    return None


def cancellable(replica: Replica, now: int, decline_window: int) -> bool:
    """Whether a cancel takes this replica: open, or assigned and still inside its decline
    window (its agent could still hand it back, so it has not started)."""
    if replica.state == ReplicaState.OPEN:
        return True
    return replica.state == ReplicaState.ASSIGNED and now <= replica.since + decline_window


def cancel_problem(job: Job, caller: str, replicas: Sequence[Replica], now: int, decline_window: int) -> str | None:
    """Why the client's `cancel(job, shard)` would revert."""
    if caller.lower() != job.client.lower():
        return "job_market: caller is not the client"
    opened = sum(1 for r in replicas if cancellable(r, now, decline_window))
    live = sum(1 for r in replicas if r.state != ReplicaState.CANCELLED) - opened
    if opened == 0:
        return "job_market: nothing to cancel"
    if live and now <= job.requirements.deadline:
        return "job_market: shard already assigned"
    return None


def keeper_register_problem(keeper: KeeperBond, bond: int, min_bond: int) -> str | None:
    """Why `KeeperRegistry.register(bond)` would revert (token balance and allowance aside)."""
    if keeper.id != 0:
        return "keeper_registry: already registered"
    if bond < min_bond:
        return "keeper_registry: bond below minimum"
    if bond > UINT96_MAX:
        return "keeper_registry: bond too large"
    return None


def keeper_exit_problem(keeper: KeeperBond) -> str | None:
    """Why `KeeperRegistry.request_exit()` would revert."""
    if keeper.id == 0:
        return "keeper_registry: not a keeper"
    if keeper.exiting:
        return "keeper_registry: exit already requested"
    return None


def keeper_withdraw_problem(keeper: KeeperBond, now: int) -> str | None:
    """Why `KeeperRegistry.withdraw_bond()` would revert."""
    if keeper.id == 0:
        return "keeper_registry: not a keeper"
    if not keeper.exiting:
        return "keeper_registry: exit not requested"
    if now < keeper.exit_at:
        return "keeper_registry: still unbonding"
    return None


def challenge_problem(job: Job | None, shard: int, replicas: Sequence[Replica], now: int) -> str | None:
    """Why `DisputeCourt.challenge(job, shard)` would revert on the shard's replicas' states
    (who challenges, and the bond, aside)."""
    if job is None:
        return "job_market: unknown job"
    if not 0 <= shard < job.requirements.shard_count:
        return "dispute_court: unknown shard"
    if any(r.state == ReplicaState.DISPUTED for r in replicas):
        return "job_market: dispute already open"
    if not any(r.state == ReplicaState.SUBMITTED and now <= r.deadline for r in replicas):
        return "job_market: nothing to challenge"
    return None


def decline_problem(rep: Replica, caller: str, agent: str, decline_window: int, now: int) -> str | None:
    """Why `JobMarket.decline` would revert for this replica, `agent` being its asset's agent."""
    if rep.state != ReplicaState.ASSIGNED:
        return "job_market: replica not assigned"
    if caller.lower() != agent.lower():
        return "job_market: caller is not the asset's agent"
    if now > rep.since + decline_window:
        return "job_market: decline window closed"
    return None
