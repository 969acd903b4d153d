"""The keeper tasks' decisions: given fresh chain state, send transactions, stop, or wait.

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
from keepers.scheduler import Assignment, Batch, NodeState, OpenShard, Policy, Reputation, Skip, Weights


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
    if not pending:
        return list(shards)
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


@dataclass(frozen=True)
class Round:
    """One round of assignments. `sends`: every assignment, in the order to send them;
    `outcomes`: each shard's first decision that is not a Send, which is what `decide_assign`
    says of it once the round's sends are pending (IN_FLIGHT when all its open replicas got
    one)."""

    sends: list[Send]
    outcomes: dict[tuple[int, int], Decision]


def _shard_rule(
    job: Job | None,
    shard: int,
    read: Shard | None,
    this: Shard | None,
    params: Parameters,
    now: int,
    paused: bool,
    min_fee: int,
    declines: Sequence[waiting.Decline],
    seen_until: int | None,
) -> Decision | None:
    """Why the shard gets no assignment now, by the rules that do not depend on the assets;
    None: place it. `read` is the shard as read from the chain, `this` with pending assignments."""
    if job is None:
        return Done("job_market: unknown job")
    if not 0 <= shard < job.requirements.shard_count:
        return Done("job_market: unknown shard")
    if paused:
        return Wait("market_params: paused")
    if read is None or not any(r.state == ReplicaState.OPEN for r in read.replicas):
        return Done(NO_OPEN_REPLICA)
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
    return None


def decide_round(
    work: Iterable[tuple[int, int]],
    jobs: Mapping[int, Job | None],
    shards: Mapping[int, Sequence[Shard]],
    assets: Iterable[Asset],
    nodes: Mapping[int, NodeState],
    reputations: Mapping[int, Reputation],
    params: Parameters,
    now: int,
    *,
    paused: bool = False,
    pending: Mapping[tuple[int, int, int], int] | None = None,
    weights: Weights = Weights(),
    policy: Policy = Policy(),
    min_fee: int = 0,
    declines: Mapping[tuple[int, int], Sequence[waiting.Decline]] | None = None,
    seen_until: int | None = None,
    attested: Mapping[int, Collection[int]] | None = None,
) -> Round:
    """Every assignment to make now for the (job, shard) keys of `work`, from one index.

    `jobs` by id (None: no such job); `shards` by job id: its shards as read (those in `work`,
    and any others read, which tell which assets already hold the job); `pending` maps
    (job, shard, replica) to the asset this keeper sent it to, not yet mined; `declines` each
    shard's declines as the projection has them up to chain time `seen_until`; `attested` the
    assets each tee job may go to. Each shard follows `decide_assign`'s rules: a declined shard
    waits out its backoff (computenet.waiting), then goes preferably to an asset that has not
    declined it; a failed one is done; a tee job goes only to its attested assets (the chain's
    rule). Shards are placed earliest deadline first, each replica seeing the ones before it
    as made, exactly as sending one `decide_assign` at a time and waiting for each would."""
    pending = pending or {}
    declines = declines or {}
    attested = attested or {}
    assets = list(assets)
    ids = {a.id for a in assets}
    own: dict[int, dict[tuple[int, int], int]] = {}
    for (j, s, r), a in pending.items():
        own.setdefault(j, {})[(s, r)] = a
    read = {(j, s.index): s for j, job_shards in shards.items() for s in job_shards}
    now_shards = {}  # as they will be once the pending assignments land
    for j, job_shards in shards.items():
        if jobs.get(j) is not None:
            now_shards.update(((j, s.index), s) for s in with_pending(job_shards, own.get(j, {})))

    outcomes: dict[tuple[int, int], Decision] = {}
    placeable: dict[tuple[int, int], tuple[set[int], set[int] | None]] = {}  # key -> (exclude, only)
    for key in work:
        job_id, shard = key
        if key in outcomes or key in placeable:
            continue
        job, shard_declines = jobs.get(job_id), declines.get(key, ())
        rule = _shard_rule(
            job, shard, read.get(key), now_shards.get(key), params, now, paused, min_fee, shard_declines, seen_until
        )
        if rule is not None:
            outcomes[key] = rule
            continue
        only = None
        if job.requirements.verification == Verification.TEE:
            only = ids & set(attested.get(job_id, ()))
            if not only:
                outcomes[key] = Wait(NOT_ATTESTED)
                continue
        placeable[key] = ({d.asset for d in shard_declines}, only)

    sends: list[Send] = []
    if not placeable:
        return Round(sends, outcomes)
    open_shards = [OpenShard(jobs[j], s, shard.replicas) for (j, s), shard in now_shards.items()]
    batch = Batch(open_shards, assets, nodes, reputations, params, now, weights, policy)
    for key in batch.order():
        if key not in placeable:
            continue
        decliners, only = placeable[key]
        while True:
            decision = batch.place(*key, exclude=decliners, only=only)
            if isinstance(decision, Skip) and decliners:  # only a decliner can take it: it gets it again
                decision = batch.place(*key, only=only)
            if isinstance(decision, Skip):
                outcomes[key] = Wait(decision.reason)
                break
            sends.append(Send("assign", (decision.job, decision.shard, decision.asset), decision))
            if not batch.has_open_replica(*key):
                outcomes[key] = Wait(IN_FLIGHT)
                break
    return Round(sends, outcomes)


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
    (the others tell which assets already hold the job); `pending` maps (shard, replica) to
    the asset an unmined assignment of this keeper names. A round of one shard
    (`decide_round`), so the two never disagree."""
    if job is None:
        return Done("job_market: unknown job")
    key = (job.id, shard)
    plan = decide_round(
        [key],
        {job.id: job},
        {job.id: shards},
        assets,
        nodes,
        reputations,
        params,
        now,
        paused=paused,
        pending={(job.id, s, r): a for (s, r), a in (pending or {}).items()},
        weights=weights,
        policy=policy,
        min_fee=min_fee,
        declines={key: declines},
        seen_until=seen_until,
        attested={job.id: attested},
    )
    return plan.sends[0] if plan.sends else plan.outcomes[key]


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
