"""The keeper tasks' decisions: given fresh chain state, send one transaction, stop, or wait.

Pure: no ape, web3, redis or celery. Each task loads state, asks one of these functions,
and acts on the answer, so running a task twice (or after another keeper) only ever leads
to `Done`: the chain state it re-reads already shows the work as done.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from computenet import preflight, waiting
from computenet.domain import Asset, Job, Parameters, Replica, ReplicaState, Shard, Verification
from keepers.scheduler import Assignment, Batch, NodeState, OpenShard, Policy, Reputation, Weights


@dataclass(frozen=True)
class Send:
    """Send `call(*args)` to the market (`expire` to its dispute court). `assignment` carries
    the scheduler's reasoning."""

    call: str
    args: tuple[int, ...]
    assignment: Assignment | None = None


@dataclass(frozen=True)
class Done:
    """Nothing (more) to do now that the chain has moved on."""

    reason: str


@dataclass(frozen=True)
class Wait:
    """Not now; the sweep will ask again."""

    reason: str


Decision = Send | Done | Wait

NO_OPEN_REPLICA = "job_market: shard has no open replica"
IN_FLIGHT = "every open replica has an assignment in flight"
NOT_SEEN = "a replica reopened after the keeper's last processed block"
NOT_ATTESTED = "no asset is attested for this tee job (job_market: asset not attested)"


def max_keeper_fee(job: Job) -> int:
    """The most the keeper can earn for one replica of `job`: its fee on a lease at the price cap
    that uses every GPU-second."""
    req = job.requirements
    return req.max_price * req.max_gpu_seconds * job.keeper_fee_bps // 10_000


def with_pending(shards: Iterable[Shard], pending: Mapping[tuple[int, int], int]) -> list[Shard]:
    """The shards as they will be once this keeper's sent-but-unmined assignments land:
    `pending` maps (shard, replica) to the asset it was sent for."""
    out = []
    for shard in shards:
        reps = tuple(
            dataclasses.replace(r, state=ReplicaState.ASSIGNED, asset=pending[(shard.index, r.index)])
            if r.state == ReplicaState.OPEN and (shard.index, r.index) in pending
            else r
            for r in shard.replicas
        )
        out.append(dataclasses.replace(shard, replicas=reps))
    return out


def decide_assign(
    job: Job | None,
    shard: int,
    shards: list[Shard],
    assets: Iterable[Asset],
    nodes: Mapping[int, NodeState],
    reputations: Mapping[int, Reputation],
    params: Parameters,
    now: int,
    *,
    paused: bool = False,
    pending: Mapping[tuple[int, int], int] | None = None,
    weights: Weights = Weights(),
    policy: Policy = Policy(),
    min_fee: int = 0,
    declines: Sequence[waiting.Decline] = (),
    seen_until: int | None = None,
    attested: Collection[int] = (),
) -> Decision:
    """Assign the next open replica of (`job`, `shard`)? `shards` are all the job's shards
    (the others tell which assets already hold the job); `declines` the shard's declines so
    far, as the projection has them up to chain time `seen_until`. A declined shard waits out
    its backoff (computenet.waiting), then goes preferably to an asset that has not declined
    it; a failed one is done. A tee job goes only to the `attested` assets (the chain's rule)."""
    if job is None:
        return Done("job_market: unknown job")
    if not 0 <= shard < job.requirements.shard_count:
        return Done("job_market: unknown shard")
    if paused:
        return Wait("market_params: paused")
    this = next((s for s in shards if s.index == shard), None)
    if this is None or not any(r.state == ReplicaState.OPEN for r in this.replicas):
        return Done(NO_OPEN_REPLICA)
    shards = with_pending(shards, pending or {})
    this = next(s for s in shards if s.index == shard)
    if not any(r.state == ReplicaState.OPEN for r in this.replicas):
        return Wait(IN_FLIGHT)  # until it is mined (or fails and the replica is open again)
    if max_keeper_fee(job) < min_fee:
        return Done(f"keeper fee at most {max_keeper_fee(job)}, below this keeper's minimum {min_fee}")
    if now + job.requirements.lease_seconds(params.lease_grace) > job.requirements.deadline:
        return Done("job_market: lease would end after the deadline")
    if seen_until is not None and any(
        r.state == ReplicaState.OPEN and r.lease and r.since > seen_until for r in this.replicas
    ):
        return Wait(NOT_SEEN)  # reopened by a decline the backoff must count: the listener is a step behind
    if waiting.failed(declines):
        return Done(f"shard failed: declined {len(declines)} times")
    until = waiting.backoff_until(declines)
    if until is not None and now < until:
        return Wait(f"backing off until {waiting.clock(until)} after {len(declines)} declines")
    assets = list(assets)
    if job.requirements.verification == Verification.TEE:
        unattested = {a.id for a in assets} - set(attested)
        if len(unattested) == len(assets):
            return Wait(NOT_ATTESTED)
        assets = _without(assets, unattested)
    decliners = {d.asset for d in declines}
    tries = [_without(assets, decliners), assets] if decliners else [assets]
    for candidates in tries:
        batch = Batch(
            [OpenShard(job, s.index, s.replicas) for s in shards],
            candidates,
            nodes,
            reputations,
            params,
            now,
            weights,
            policy,
        )
        decision = batch.place(job.id, shard)
        if isinstance(decision, Assignment):
            return Send("assign", (job.id, shard, decision.asset), decision)
    return Wait(decision.reason)


def _without(assets: list[Asset], ids: set[int]) -> list[Asset]:
    """The assets, those in `ids` paused: out of the running, but still there to tell the
    scheduler whose replicas are whose (the owner rule)."""
    return [
        dataclasses.replace(a, spec=dataclasses.replace(a.spec, active=False)) if a.id in ids else a for a in assets
    ]


def node_verdicts(assets: Iterable[Asset], nodes: Mapping[int, NodeState], policy: Policy, now: int) -> dict[int, str]:
    """Why the scheduler will not use each asset it will not use, by its heartbeats alone
    (the chain's own rules are computenet.waiting's): the keeper's facts for the views."""
    out = {}
    for asset in assets:
        node = nodes.get(asset.id)
        if node is None:
            if policy.require_heartbeat:
                out[asset.id] = "no heartbeat"
            continue
        if now - node.last_seen > policy.max_heartbeat_age:
            out[asset.id] = f"last heartbeat {now - node.last_seen} s old (> {policy.max_heartbeat_age} s)"
        elif node.gpu_utilization_pct > policy.max_utilization_pct:
            out[asset.id] = f"over utilisation ({node.gpu_utilization_pct} % > {policy.max_utilization_pct} %)"
        elif node.running_shards >= node.capacity:
            out[asset.id] = f"full ({node.running_shards} of {node.capacity} leases running)"
    return out


def newer_checkpoint(kept: Mapping | None, body: Mapping) -> bool:
    """Keep a heartbeat's signed checkpoint `body` instead of `kept` (the one kept for the same
    replica, None if none)? Yes for a later lease, or the same lease further on."""
    if kept is None:
        return True
    return (body["lease"], body["gpu_seconds"]) > (kept["lease"], kept["gpu_seconds"])


def checkpoint_to_relay(replica: Replica, kept: Mapping | None, chain_pending: int) -> Send | None:
    """The commit_checkpoint to send before reclaiming `replica`: the newest signed checkpoint
    a heartbeat brought for its current lease (`kept`, wire form), when the chain's pending
    checkpoint for that lease is older (`chain_pending`: its GPU-seconds, 0 for none), so the
    reclaim adopts the lease's latest work. None when there is nothing newer to relay."""
    if kept is None or replica.state != ReplicaState.ASSIGNED:
        return None
    same = (kept["job"], kept["shard"], kept["replica"], kept["lease"], kept["asset"]) == (
        replica.job,
        replica.shard,
        replica.index,
        replica.lease,
        replica.asset,
    )
    if not same or kept["gpu_seconds"] <= chain_pending:
        return None
    args = (replica.job, replica.shard, replica.index, kept["checkpoint"], kept["gpu_seconds"], kept["signature"])
    return Send("commit_checkpoint", args)


def decide_reclaim(replica: Replica, now: int, relay: Send | None = None) -> Decision:
    """Reclaim this replica's lease? When a newer signed checkpoint of the lease is to be
    relayed first (`relay`, from `checkpoint_to_relay`), that is the step to take; the reclaim
    follows once it is mined."""
    problem = preflight.reclaim_problem(replica, now)
    if problem is None:
        return relay or Send("reclaim", (replica.job, replica.shard, replica.index))
    if problem == "job_market: lease not expired":
        return Wait(problem)
    return Done(problem)


def decide_finalize(job: int, shard: int, replicas: list[Replica], now: int) -> Decision:
    """Finalize this shard? Waits while a challenge window is open; a shard whose replicas
    disagree or are disputed waits for the facilitator, whose ruling wakes it again."""
    problem = preflight.finalize_problem(replicas, now)
    if problem is None:
        return Send("finalize", (job, shard))
    if problem == "job_market: challenge window open":
        return Wait(problem)
    return Done(problem)


NO_OPEN_DISPUTE = "dispute_court: no open dispute"
RULING_PENDING = "dispute_court: ruling deadline not passed"


def decide_expire(job: int, shard: int, deadline: int | None, now: int) -> Decision:
    """Apply the default outcome to the shard's dispute? `deadline` is its ruling deadline,
    None when no dispute is open (settled by a ruling or by another keeper). The arbiter
    may rule until the deadline; only after it may anyone expire the dispute."""
    if deadline is None:
        return Done(NO_OPEN_DISPUTE)
    if now <= deadline:
        return Wait(RULING_PENDING)
    return Send("expire", (job, shard))
