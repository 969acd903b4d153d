"""What each keeper task does: load fresh state, ask keepers.decisions, send at most one
transaction. The Celery tasks in keepers.tasks are thin wrappers around these.

Sending is safe when many workers, on many machines, share one key: the decision, the
nonce and the broadcast happen under one Redis lock per key, the nonce is the node's count
of the key's transactions including those still in its pool, and an assignment that is
sent but not yet mined is recorded as pending, so the next decision (by any worker) sees
it as made. No worker waits for a block: a `confirm` task follows each transaction, clears
its pending record, and runs the work again if the transaction reverted (a lost race).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from computenet.connection import broadcast
from computenet.domain import Job, ReplicaState
from computenet.errors import ContractRevert
from computenet.market import typed_reverts
from computenet.waiting import Decline, shard_waiting
from keepers.decisions import (
    IN_FLIGHT,
    NO_OPEN_REPLICA,
    Decision,
    Done,
    Send,
    Wait,
    checkpoint_to_relay,
    decide_assign,
    decide_expire,
    decide_finalize,
    decide_reclaim,
    node_verdicts,
)
from keepers.runtime import Runtime

log = logging.getLogger("keepers.actions")

COURT_CALLS = frozenset({"expire"})  # sent to the dispute court; every other call to the market
# Steps that prepare their task's own call: once mined, the task runs again (a relayed
# checkpoint before the reclaim that adopts it).
PRELUDES = frozenset({"commit_checkpoint"})


class TransientError(Exception):
    """Worth retrying with backoff: the node, Redis or the network hiccuped."""


class Requeue(Exception):
    """The work may still be possible after a lost race: run the task again."""


def _send(rt: Runtime, decision: Send) -> Any:
    """Estimates, signs with an explicit nonce and broadcasts; returns the tx hash.
    A revert found by the estimate raises the typed ContractRevert; nothing was sent."""
    from web3.exceptions import Web3Exception

    contract = rt.market.court if decision.call in COURT_CALLS else rt.market.market
    method = getattr(contract, decision.call)
    try:
        with typed_reverts(preflight=True):
            return broadcast(method, decision.args, rt.account)
    except (ValueError, Web3Exception) as error:  # the node refused it: nonce taken outside this keeper, fee, ...
        raise TransientError(f"node refused {decision.call}{decision.args}: {error}") from error


@dataclass(frozen=True)
class Sent:
    """A broadcast transaction for `confirm` to follow; `task` is the task to run again if it
    fails, `pending` the record of an assignment in flight."""

    tx: str
    call: str
    args: tuple[int, ...]
    task: tuple
    pending: str | None
    at: float


class NotMined(Exception):
    """The transaction is not in a block yet: `confirm` looks again shortly."""


def confirm(rt: Runtime, sent: Sent) -> tuple[str, tuple | None]:
    """Looks for the receipt once. Returns (outcome, task to run again or None); raises
    NotMined while the transaction waits, until `tx_timeout` has passed."""
    from ape import networks
    from web3.exceptions import TransactionNotFound

    try:
        receipt = networks.provider.web3.eth.get_transaction_receipt(sent.tx)
    except TransactionNotFound:
        if time.time() - sent.at < rt.settings.tx_timeout:
            raise NotMined(sent.tx) from None
        if sent.pending:
            rt.state.remove_pending(sent.pending)
        rt.state.record("timeout", call=sent.call, args=list(sent.args), tx=sent.tx)
        return "not mined in time", sent.task
    if sent.pending:
        rt.state.remove_pending(sent.pending)
    fields = dict(
        call=sent.call,
        args=list(sent.args),
        tx=sent.tx,
        block=receipt["blockNumber"],
        gas=receipt["gasUsed"],
        seconds=round(time.time() - sent.at, 3),
    )
    if receipt["status"] != 1:
        rt.state.record("reverted", **fields)
        log.info("lost race", extra={"fields": fields})
        return "reverted: another keeper was first", sent.task
    rt.state.record("mined", **fields)
    log.info("mined", extra={"fields": fields})
    return "mined", (sent.task if sent.call in PRELUDES else None)


def _settle(decision: Decision) -> str | None:
    """The outcome of a Done or Wait; None for a Send."""
    if isinstance(decision, Done):
        return "done: " + decision.reason
    if isinstance(decision, Wait):
        return "wait: " + decision.reason
    return None


def _dry_run(rt: Runtime, decision: Send) -> str:
    fields = dict(call=decision.call, args=list(decision.args))
    if decision.assignment is not None:
        fields["score"] = round(decision.assignment.score, 4)
    rt.state.record("dry_run", **fields)
    log.info("dry run: would send", extra={"fields": fields})
    return "dry run"


def _refused(rt: Runtime, decision: Send, error: ContractRevert) -> str:
    """The estimate reverted: the state changed under the decision (another keeper, a block)."""
    rt.view.forget_assets()
    rt.state.record("refused", call=decision.call, args=list(decision.args), reason=error.reason)
    raise Requeue(f"{decision.call}{decision.args} would revert: {error.reason}")


def _assign_needless(rt: Runtime, job: Job | None, shard: int) -> str | None:
    """A cheap look at the shard alone: the outcome when it certainly needs nothing, else None."""
    if job is None or not 0 <= shard < job.requirements.shard_count:
        return None  # decide_assign names the problem
    replicas = rt.view.replicas(job.id, shard, job.requirements.replication)
    open_ = {r.index for r in replicas if r.state == ReplicaState.OPEN}
    if not open_:
        return "done: " + NO_OPEN_REPLICA
    in_flight = {r for j, s, r, _ in rt.state.pending() if (j, s) == (job.id, shard)}
    if open_ <= in_flight:
        return "wait: " + IN_FLIGHT
    return None


@lru_cache(maxsize=4096)
def _block_time(number: int) -> int:
    from ape import chain

    return int(chain.blocks[number].timestamp)


def shard_declines(rt: Runtime, job_id: int, shard: int) -> list[Decline]:
    """The shard's declines from the projection, each at its block's time."""
    return [Decline.of(asset, reason, _block_time(block)) for asset, block, reason in rt.state.declines(job_id, shard)]


def _seen_until(rt: Runtime) -> int | None:
    """The chain time of the last block in the projection (None: nothing yet)."""
    cursor = rt.state.cursor()
    return None if cursor is None else _block_time(cursor)


def assign(rt: Runtime, job_id: int, shard: int) -> str | Sent:
    """Leases the shard's next open replica to the best asset, if any."""
    market, view, state, settings = rt.market, rt.view, rt.state, rt.settings
    job = market.job(job_id)  # a job's terms never change, so one read serves the whole task
    early = _assign_needless(rt, job, shard)
    if early is not None:  # the common repeat: nothing open, or all of it in flight; no lock needed
        return early
    with state.send_lock(rt.address):
        shards = view.job_shards(job, shard) if job and 0 <= shard < job.requirements.shard_count else []
        pending = state.pending()
        own = {(s, r): a for j, s, r, a in pending if j == job_id}
        now = view.now()
        assets = rt.assets_with(Counter(a for *_, a in pending))
        decision = decide_assign(
            job,
            shard,
            shards,
            assets,
            state.nodes(clock_offset=now - int(time.time())),
            state.reputations(),
            view.params(),
            now,
            paused=market.paused(),
            pending=own,
            weights=settings.weights(),
            policy=settings.policy(),
            min_fee=settings.min_fee,
            declines=shard_declines(rt, job_id, shard),
            seen_until=_seen_until(rt),
            attested=market.attested_for(job, assets) or (),
        )
        outcome = _settle(decision)
        if outcome is not None:
            return outcome
        if rt.account is None:
            return _dry_run(rt, decision)
        a = decision.assignment
        member = state.add_pending(a.job, a.shard, a.replica, a.asset, ttl=settings.tx_timeout)
        try:
            tx_hash = _send(rt, decision)
        except ContractRevert as error:
            state.remove_pending(member)
            return _refused(rt, decision, error)
        except BaseException:
            state.remove_pending(member)
            raise
        state.record(
            "sent",
            call="assign",
            args=list(decision.args),
            replica=a.replica,
            score=round(a.score, 4),
            reasons=list(a.reasons),
            tx=tx_hash.to_0x_hex(),
        )
    return Sent(tx_hash.to_0x_hex(), "assign", decision.args, ("assign", job_id, shard), member, time.time())


def _simple(rt: Runtime, decision: Decision, task: tuple) -> str | Sent:
    outcome = _settle(decision)
    if outcome is not None:
        return outcome
    if rt.account is None:
        return _dry_run(rt, decision)
    with rt.state.send_lock(rt.address):
        try:
            tx_hash = _send(rt, decision)
        except ContractRevert as error:
            return _refused(rt, decision, error)
        rt.state.record("sent", call=decision.call, args=list(decision.args), tx=tx_hash.to_0x_hex())
    return Sent(tx_hash.to_0x_hex(), decision.call, decision.args, task, None, time.time())


def reclaim(rt: Runtime, job_id: int, shard: int, replica: int) -> str | Sent:
    """Reclaims the replica's lease once it has expired."""
    job = rt.market.job(job_id)
    if job is None or not 0 <= shard < job.requirements.shard_count or not 0 <= replica < job.requirements.replication:
        return "done: unknown replica"
    rep = rt.view.replicas(job_id, shard, job.requirements.replication)[replica]
    relay = None
    kept = rt.state.checkpoint(job_id, shard, replica)
    if kept is not None and kept.get("lease") == rep.lease:
        pending = rt.market.checkpoint(job_id, shard, replica).pending_of(rep.lease)
        relay = checkpoint_to_relay(rep, kept, pending)
    return _simple(rt, decide_reclaim(rep, rt.view.now(), relay), ("reclaim", job_id, shard, replica))


def finalize(rt: Runtime, job_id: int, shard: int) -> str | Sent:
    """Finalizes the shard once every replica's challenge window has closed."""
    job = rt.market.job(job_id)
    if job is None or not 0 <= shard < job.requirements.shard_count:
        return "done: unknown shard"
    replicas = rt.view.replicas(job_id, shard, job.requirements.replication, roots=True)
    return _simple(rt, decide_finalize(job_id, shard, list(replicas), rt.view.now()), ("finalize", job_id, shard))


def expire(rt: Runtime, job_id: int, shard: int) -> str | Sent:
    """Applies the default outcome to the shard's dispute once its ruling deadline has passed
    with no ruling: the results stand, the challenger's bond goes back."""
    deadline = rt.view.ruling_deadline(job_id, shard)
    return _simple(rt, decide_expire(job_id, shard, deadline, rt.view.now()), ("expire", job_id, shard))


def asset_reasons(rt: Runtime, assets: list, now: int) -> dict[int, str]:
    """Why this keeper will not use each asset it will not use: the keeper state's own
    verdicts where it keeps them (`KeeperState.asset_reasons`), else those of its heartbeats."""
    kept = getattr(rt.state, "asset_reasons", None)
    if kept is not None:
        return dict(kept())
    nodes = rt.state.nodes(clock_offset=now - int(time.time()))
    return node_verdicts(assets, nodes, rt.settings.policy(), now)


def waiting(rt: Runtime, limit: int = 20) -> list[dict]:
    """The open shards this keeper tracks that it is not assigning, each replica with why
    (computenet.waiting, with this keeper's facts about assets); at most `limit` shards."""
    now, params, paused = rt.view.now(), rt.view.params(), rt.market.paused()
    assets = rt.view.assets()
    reasons = asset_reasons(rt, assets, now)
    pending = {(j, s) for j, s, _, _ in rt.state.pending()}
    out = []
    for job_id, shard in rt.state.open_shards():
        if len(out) >= limit:
            break
        job = rt.market.job(job_id)
        if job is None or (job_id, shard) in pending:
            continue
        replicas = rt.view.replicas(job_id, shard, job.requirements.replication)
        attested = rt.market.attested_for(job, assets)
        why = shard_waiting(
            job,
            replicas,
            assets,
            shard_declines(rt, job_id, shard),
            params,
            now,
            paused=paused,
            asset_reasons=reasons,
            attested=attested,
        )
        open_why = {r: w for r, w in why.items() if w.kind not in ("failed", "cancelled")}
        if open_why:
            out.append(
                {"job": job_id, "shard": shard, "replicas": {r: w.as_json() for r, w in sorted(open_why.items())}}
            )
    return out
