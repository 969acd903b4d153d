"""What each keeper task does: load fresh state, ask keepers.decisions, send at most one
transaction (`assign_round`: one per assignment of the round, for now). The Celery tasks in
keepers.tasks are thin wrappers around these.

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
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_utils import keccak

from computenet.connection import broadcast
from computenet.domain import Job, Verification
from computenet.errors import ContractRevert
from computenet.market import typed_reverts
from computenet.waiting import Decline, shard_waiting
from keepers.decisions import (
    Decision,
    Done,
    Send,
    Wait,
    checkpoint_to_relay,
    decide_expire,
    decide_finalize,
    decide_reclaim,
    decide_round,
    node_verdicts,
)
from keepers.runtime import Runtime
from keepers.state import LockTimeout

log = logging.getLogger("keepers.actions")

COURT_CALLS = frozenset({"expire"})  # sent to the dispute court
RELAY_CALLS = frozenset({"assign_many", "finalize_many"})  # to the batch relay; every other call to the market
# Steps that prepare their task's own call: once mined, the task runs again (a relayed
# checkpoint before the reclaim that adopts it).
PRELUDES = frozenset({"commit_checkpoint"})


class TransientError(Exception):
    """Worth retrying with backoff: the node, Redis or the network hiccuped. `sent`: what a
    round had broadcast before it struck, still to be confirmed."""

    sent: tuple = ()


class Requeue(Exception):
    """The work may still be possible after a lost race: run the task again. `sent`: as
    TransientError's."""

    sent: tuple = ()


def _send(rt: Runtime, decision: Send) -> Any:
    """Estimates, signs with an explicit nonce and broadcasts; returns the tx hash.
    A revert found by the estimate raises the typed ContractRevert; nothing was sent."""
    from web3.exceptions import Web3Exception

    if decision.call in RELAY_CALLS:
        contract = rt.market.relay
    else:
        contract = rt.market.court if decision.call in COURT_CALLS else rt.market.market
    method = getattr(contract, decision.call)
    # A batch is estimated against the pending block, whose clock it is decided by and mined
    # at: against the latest one, items not final there yet would be skipped in the estimate,
    # and the batch would then run out of gas once they are (the relay reverts it whole).
    estimate_at = "pending" if decision.call in RELAY_CALLS else None
    try:
        with typed_reverts(preflight=True):
            return broadcast(method, decision.args, rt.account, estimate_at=estimate_at)
    except (ValueError, Web3Exception) as error:  # the node refused it: nonce taken outside this keeper, fee, ...
        raise TransientError(f"node refused {decision.call}{decision.args}: {error}") from error


@dataclass(frozen=True)
class Sent:
    """A broadcast transaction for `confirm` to follow; `task` is the task to run again if it
    fails (or, for a batch, if any of its items was skipped), `pending` the record of each
    assignment in flight. A batch's `args` are its items."""

    tx: str
    call: str
    args: tuple
    task: tuple
    pending: str | list[str] | None
    at: float

    def items(self) -> int:
        """How many market steps it carries."""
        return len(self.args[1]) if self.call in RELAY_CALLS else 1


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
        _release(rt, sent)
        rt.state.record("timeout", call=sent.call, args=list(sent.args), tx=sent.tx)
        return "not mined in time", sent.task
    _release(rt, sent)
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
    if sent.call in RELAY_CALLS:
        # One record per item, as if each had been sent alone; the relay skipped what the market refused.
        done = _steps_in(receipt, rt.market, sent.call)
        call = _BATCH_ITEM[sent.call]
        for item in sent.args[1]:
            taken = (int(item[0]), int(item[1])) in done
            rt.state.record("mined" if taken else "skipped", **{**fields, "call": call, "args": list(item)})
        log.info("batch mined", extra={"fields": {**fields, "items": sent.items(), "done": len(done)}})
        if len(done) < sent.items():  # look again at what was skipped
            return f"mined: {len(done)} of {sent.items()}", sent.task
        return "mined", None
    rt.state.record("mined", **fields)
    log.info("mined", extra={"fields": fields})
    return "mined", (sent.task if sent.call in PRELUDES else None)


# The market event each batched call emits for each item that went through, and the call an item stands for.
_BATCH_EVENTS = {"assign_many": "ShardAssigned", "finalize_many": "ShardFinalized"}
_BATCH_ITEM = {"assign_many": "assign", "finalize_many": "finalize"}


def _steps_in(receipt: Any, market: Any, call: str) -> set[tuple[int, int]]:
    """The (job, shard) of a batch's items the market took, by their events in the receipt."""
    topic = keccak(text=getattr(market.market, _BATCH_EVENTS[call]).abi.selector)
    address = str(market.market.address).lower()
    seen = set()
    for entry in receipt["logs"]:
        if str(entry["address"]).lower() != address or not entry["topics"] or bytes(entry["topics"][0]) != topic:
            continue
        job = int.from_bytes(bytes(entry["topics"][1]), "big")
        shard = int.from_bytes(bytes(entry["data"])[:32], "big")
        seen.add((job, shard))
    return seen


def _release(rt: Runtime, sent: Sent) -> None:
    """Drops the pending records of a transaction that is mined, or given up on."""
    for member in [sent.pending] if isinstance(sent.pending, str) else sent.pending or []:
        rt.state.remove_pending(member)


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


def _assign_one(rt: Runtime, decision: Send, task: tuple) -> Sent:
    """Sends one assignment under the send lock the caller holds, recorded as pending first so
    the next decision (by any worker) sees it as made. A refusal raises Requeue."""
    state, a = rt.state, decision.assignment
    member = state.add_pending(a.job, a.shard, a.replica, a.asset, ttl=rt.settings.tx_timeout)
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
    return Sent(tx_hash.to_0x_hex(), "assign", decision.args, task, member, time.time())


# A round's task, and the most assignments one round sends while it holds the send lock (which
# expires after 30 s); the rest wait for the next round.
ROUND = ("assign_round",)
ROUND_SENDS = 100


def send_assignments(rt: Runtime, sends: Sequence[Send], task: tuple = ROUND) -> list[Sent]:
    """Sends a round's assignments, under the send lock the caller holds: one as its own
    `assign`, several as one `assign_many` through the batch relay, which the market checks
    item by item (one it refuses is skipped, and `confirm` then runs the round again). All are
    recorded as pending first, so the next decision (by any worker) sees them as made."""
    if len(sends) == 1:
        return [_assign_one(rt, sends[0], task)]
    if not sends:
        return []
    ttl = rt.settings.tx_timeout
    members = [rt.state.add_pending(a.job, a.shard, a.replica, a.asset, ttl=ttl) for a in (d.assignment for d in sends)]
    batch = Send("assign_many", (str(rt.market.market.address), [tuple(d.args) for d in sends]))
    try:
        tx_hash = _send(rt, batch)
    except ContractRevert as error:
        _release(rt, Sent("", batch.call, batch.args, task, members, 0))
        return _refused(rt, batch, error)
    except BaseException:
        _release(rt, Sent("", batch.call, batch.args, task, members, 0))
        raise
    for d in sends:
        a = d.assignment
        rt.state.record(
            "sent",
            call="assign",
            args=list(d.args),
            replica=a.replica,
            score=round(a.score, 4),
            reasons=list(a.reasons),
            tx=tx_hash.to_0x_hex(),
            batch=len(sends),
        )
    return [Sent(tx_hash.to_0x_hex(), batch.call, batch.args, task, members, time.time())]


def _attested(rt: Runtime, jobs: Iterable[Job | None], assets: list) -> dict[int, set[int]]:
    """The assets each tee job of the round may go to: read once, as the rule is the asset's."""
    out: dict[int, set[int]] = {}
    read = None
    for job in jobs:
        if job is not None and job.requirements.verification == Verification.TEE:
            read = read if read is not None else rt.market.attested_for(job, assets) or set()
            out[job.id] = read
    return out


class Busy(Exception):
    """The send lock is held (by another round, most likely): run the round again shortly,
    rather than hold a worker waiting for it (that worker's confirmations would wait too)."""


def assign_round(rt: Runtime) -> str | list[Sent]:
    """Places every open shard the projection holds, from one index built for the round, and
    sends the assignments (at most ROUND_SENDS). Under the send lock, so one round runs at a
    time and each sees the last one's assignments as pending; Busy when it is held."""
    work = rt.state.open_shards()
    if not work:
        return "done: no open shard"
    return _locked_round(rt, work, ROUND)


def assign(rt: Runtime, job_id: int, shard: int) -> str | list[Sent]:
    """Places one shard: a round of that shard alone, run as `assign_round` runs its own. The
    listener turns a reaction's ("assign", job, shard) into a round; this task places one
    shard named alone, and is what runs again when its assignment fails."""
    return _locked_round(rt, [(job_id, shard)], ("assign", job_id, shard))


def _locked_round(rt: Runtime, work: list[tuple[int, int]], task: tuple) -> str | list[Sent]:
    """`_round` under the send lock, not waited for: Busy when it is held."""
    with ExitStack() as held:
        try:
            held.enter_context(rt.state.send_lock(rt.address, wait=0))
        except LockTimeout:
            raise Busy("the send lock is held") from None
        return _round(rt, work, task)


def _round(rt: Runtime, work: list[tuple[int, int]], task: tuple) -> str | list[Sent]:
    """Decides the round for `work`, (job, shard) keys, and sends it; `task` runs again for a
    failed assignment."""
    market, view, state, settings = rt.market, rt.view, rt.state, rt.settings
    open_of: dict[int, list[int]] = {}
    for job_id, shard in work:
        open_of.setdefault(job_id, []).append(shard)
    jobs = market.jobs_or_none(open_of)
    pending = state.pending()
    shards = view.round_shards({j: (job, open_of[j]) for j, job in jobs.items() if job is not None})
    now = view.now()
    assets = rt.assets_with(Counter(a for *_, a in pending))
    plan = decide_round(
        work,
        jobs,
        shards,
        assets,
        state.nodes(clock_offset=now - int(time.time())),
        state.reputations(),
        view.params(),
        now,
        paused=market.paused(),
        pending={(j, s, r): a for j, s, r, a in pending},
        weights=settings.weights(),
        policy=settings.policy(),
        min_fee=settings.min_fee,
        declines={key: shard_declines(rt, *key) for key in work},
        seen_until=_seen_until(rt),
        attested=_attested(rt, jobs.values(), assets),
    )
    if rt.account is None:
        for decision in plan.sends:
            _dry_run(rt, decision)
        return f"dry run: {len(plan.sends)} assignments"
    sent = send_assignments(rt, plan.sends[:ROUND_SENDS], task)
    n = len(plan.outcomes)
    return sent or f"nothing to send: {n} shard{' waits or is' if n == 1 else 's wait or are'} done"


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


FINALIZE_ROUND = ("finalize_round",)


def finalize_round(rt: Runtime) -> str | Sent:
    """Finalizes every shard due (at most ROUND_SENDS) whose challenge windows have all
    closed: several in one `finalize_many` through the batch relay, one as `finalize`. The
    relay skips a shard another keeper finalized first; `confirm` then runs the round again."""
    now = rt.view.now()
    due: dict[int, list[int]] = {}
    for kind, ids in rt.state.due(now)[:ROUND_SENDS]:
        if kind == "finalize":
            due.setdefault(ids[0], []).append(ids[1])
    wanted = []  # (job, shard, replication): every replica read in one batch
    for job_id, job in rt.market.jobs_or_none(due).items():
        if job is not None:
            n = job.requirements.replication
            wanted += [(job_id, s, n) for s in due[job_id] if 0 <= s < job.requirements.shard_count]
    sends: list[Send] = []
    for shard in rt.market.shards_of(wanted, roots=True, logged=False):  # as Runtime.replicas
        decision = decide_finalize(shard.job, shard.index, list(shard.replicas), now)
        if isinstance(decision, Send):
            sends.append(decision)
    if not sends:
        return "wait: no shard due is final yet"
    if len(sends) == 1:
        return _simple(rt, sends[0], ("finalize", *sends[0].args))
    batch = Send("finalize_many", (str(rt.market.market.address), [tuple(d.args) for d in sends]))
    return _simple(rt, batch, FINALIZE_ROUND)


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
