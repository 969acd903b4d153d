"""A keeper process: the real keeper's reading and deciding, without Celery or Redis.

The real keeper is a listener and Celery workers sharing a Redis projection; hundreds of
Celery tasks a second on this 2-core machine would measure Celery, so each keeper here is
one process running the same pieces in a loop, once per new block:

- its projection: the market's events from the deployment block (a `Follower`, as the
  listener reads them) folded by `keepers.reactions`, kept in memory (`Projection`, the
  part of `keepers.state.KeeperState` the tasks read: open shards, due work, reputations);
- its reads: `keepers.runtime.ChainView` (its asset index, which re-reads the assets each
  new head's events name; a round's shards in one batch; the chain's clock), on the keeper's
  own ape connection;
- its decisions: `keepers.decisions.decide_round` over every open shard at once (one
  `keepers.scheduler` index per round) with this keeper's unmined assignments as pending, as
  `keepers.actions.assign_round` calls it, and `decide_finalize` per due shard;
- its transactions through `scale.chain.Chain`, receipts through `Inclusions`.

Differences from keepers.actions, all to spend less of the machine on the same decisions:
a job's terms are read once and kept (they never change), and there are no heartbeats: the scheduler counts each
asset's open leases from the chain (`Policy(require_heartbeat=False)`), capped by its
registered capacity. Keepers do not share work: each decides every shard, and they race as
real keepers do (the loser's transaction reverts, or its estimate does).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from scale.chain import Chain, Inclusions, Refused, Sent
from scale.net import KEEPERS
from scale.worker import Timings, serve

POLL_INTERVAL = 0.2  # keepers/settings.py's poll_interval
PENDING_TTL = 120.0  # keepers/settings.py's tx_timeout: an assignment not mined by then is forgotten


class Projection:
    """What KeeperState keeps in Redis, in memory: each shard's open replicas, due work
    (member -> chain time) and reputations, changed only by `keepers.reactions`."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}
        self.due: dict[str, int] = {}
        self.reputation: Counter = Counter()

    def apply(self, reaction: Any) -> None:
        """As KeeperState.commit applies a reaction."""
        for member, change in reaction.open.items():
            count = self.open.get(member, 0) + change
            if count > 0:
                self.open[member] = count
            else:
                self.open.pop(member, None)
        for member, at in reaction.due.items():
            self.due[member] = max(at, self.due.get(member, at))
        for member, at in reaction.sooner.items():
            self.due[member] = min(at, self.due.get(member, at))
        for member in reaction.undue:
            self.due.pop(member, None)
        self.reputation.update(reaction.reputation)

    def open_shards(self) -> dict[tuple[int, int], int]:
        out = {}
        for member, count in self.open.items():
            job, shard = member.split(":")
            out[(int(job), int(shard))] = count
        return out

    def due_now(self, now: int) -> list[tuple[str, tuple[int, ...]]]:
        from keepers.reactions import parse_member

        return [parse_member(m) for m, at in sorted(self.due.items(), key=lambda x: x[1]) if at <= now]

    def reputations(self) -> dict:
        from keepers.reactions import REPUTATION_FIELDS
        from keepers.scheduler import Reputation

        counts: dict[int, dict[str, int]] = {}
        for (asset, field), n in self.reputation.items():
            counts.setdefault(int(asset), {})[field] = n
        return {a: Reputation(**{f: c.get(f, 0) for f in REPUTATION_FIELDS}) for a, c in counts.items()}


def run(uri: str, inbox: Any, index: int, name: str, stop: Any, queue: Any) -> None:
    """The process's entry point: keeps until `stop` is set (worker.serve)."""
    serve(uri, inbox, name, stop, queue, lambda market, record: Keeper(market, record, index, name, queue))


class Keeper:
    def __init__(self, market: Any, record: dict, index: int, name: str, queue: Any) -> None:
        from ape import accounts

        from computenet.follow import Follower, MemoryCursor
        from keepers.runtime import ChainView
        from keepers.scheduler import Policy

        self.market = market
        self.name, self.queue = name, queue
        self.account = accounts.test_accounts[KEEPERS[index]]
        self.view = ChainView(self.market)
        self.policy = Policy(require_heartbeat=False, assumed_capacity=2**16)  # capacity: the asset's max_leases
        self.follower = Follower(self.market, MemoryCursor(), start_block=record["deployment_block"])
        self.projection = Projection()
        self.chain = Chain(self.market)
        self.timings = Timings()
        self.jobs: dict[int, Any] = {}
        self.pending: dict[tuple[int, int, int], tuple[int, str, float]] = {}  # (job, shard, replica) -> asset, tx, at
        self.finalizing: dict[tuple[int, int], str] = {}  # (job, shard) -> tx in flight
        self.sent: dict[str, tuple[str, float]] = {}  # tx -> (call, when it left)
        self.outcomes: Counter = Counter()  # decisions that sent nothing, by reason; refusals; reverts
        self.round_head = -1
        while (batch := self.follower.poll()) is not None:  # catch up (the assets' registrations) before the run
            self._project(batch)
            if batch.caught_up:
                break
        self.inclusions = Inclusions(self.market.web3)

    def _project(self, batch: Any) -> None:
        from keepers.reactions import react

        self.projection.apply(react(list(batch.events)))
        self.follower.commit(batch)

    def loop(self, stop: Any) -> None:
        while not stop.is_set():
            with self.timings("follow"):
                batch = self.follower.poll()
            if batch is not None:
                with self.timings("follow"):
                    self._project(batch)
            with self.timings("confirm"):
                self.confirm()
            if batch is not None and batch.caught_up and batch.last != self.round_head:
                self.round_head = batch.last
                self.round()
            self.timings.report(self.queue, self.name)
            if batch is None:
                with self.timings("idle"):
                    stop.wait(POLL_INTERVAL)

    def round(self) -> None:
        began = time.perf_counter()
        with self.timings("view"):
            now, params = self.view.now(), self.view.params()
        self.assign(now, params)
        self.finalize(now)
        self.timings.add("round", time.perf_counter() - began)  # overlaps the kinds above: not a share

    def job(self, job_id: int) -> Any:
        if job_id not in self.jobs:
            self.jobs[job_id] = self.market.job(job_id)
        return self.jobs[job_id]

    def assign(self, now: int, params: Any) -> None:
        from keepers.decisions import decide_round
        from keepers.runtime import with_leases

        in_flight = Counter((j, s) for j, s, _ in self.pending)
        todo = sorted(key for key, count in self.projection.open_shards().items() if count > in_flight[key])
        if not todo:
            return
        with self.timings("assets"):  # ChainView's index: the assets the new blocks' events name
            assets = self.view.assets()
        with self.timings("view"):
            open_of: dict[int, list[int]] = {}
            for job_id, shard in todo:
                open_of.setdefault(job_id, []).append(shard)
            jobs = {job_id: self.job(job_id) for job_id in open_of}
            shards = self.view.round_shards({j: (job, open_of[j]) for j, job in jobs.items()})
        # This keeper's unmined assignments count as open leases (keepers.runtime.Runtime.assets_with).
        assets = with_leases(assets, Counter(a for a, _, _ in self.pending.values()))
        with self.timings("decide"):
            plan = decide_round(
                todo,
                jobs,
                shards,
                assets,
                {},
                self.projection.reputations(),
                params,
                now,
                pending={key: a for key, (a, _, _) in self.pending.items()},
                policy=self.policy,
            )
        placed = {(d.assignment.job, d.assignment.shard) for d in plan.sends}
        for key, decision in plan.outcomes.items():
            if key not in placed:
                self.outcomes[f"assign: {decision.reason}"] += 1
        keys, items = [], []
        for decision in plan.sends:
            a = decision.assignment
            self.pending[(a.job, a.shard, a.replica)] = (a.asset, "", time.time())
            keys.append((a.job, a.shard, a.replica))
            items.append(decision.args)
        with self.timings("send", len(items)):
            sent = self.chain.assign(self.account, items)
        for key, s in zip(keys, sent):
            if isinstance(s, Sent):
                self.pending[key] = (self.pending[key][0], s.tx, s.at)
                self.sent[s.tx] = ("assign", s.at)
            else:
                self.pending.pop(key, None)
                self.view.forget_assets()  # as keepers.actions._refused: the state moved under the decision
                self.outcomes[f"assign refused: {s.reason}"] += 1
        self.inclusions.add(sent)

    def finalize(self, now: int) -> None:
        from keepers.decisions import Send, decide_finalize

        due = [ids for kind, ids in self.projection.due_now(now) if kind == "finalize" and ids not in self.finalizing]
        if not due:
            return
        with self.timings("view"):  # every due shard's replicas in one batch, as keepers.actions.finalize_round
            wanted = [(j, s, self.job(j).requirements.replication) for j, s in due]
            shards = self.market.shards_of(wanted, roots=True)
        items = []
        for shard in shards:
            with self.timings("decide"):
                decision = decide_finalize(shard.job, shard.index, list(shard.replicas), now)
            if isinstance(decision, Send):
                items.append(decision.args)
            else:
                self.outcomes[f"finalize: {decision.reason}"] += 1
        if not items:
            return
        with self.timings("send", len(items)):
            sent = self.chain.finalize(self.account, items)
        for item, s in zip(items, sent):
            if isinstance(s, Sent):
                self.finalizing[item] = s.tx
                self.sent[s.tx] = ("finalize", s.at)
            elif isinstance(s, Refused):
                self.outcomes[f"finalize refused: {s.reason}"] += 1
        self.inclusions.add(sent)

    def confirm(self) -> None:
        """Clears what was mined; a reverted transaction lost a race (the projection shows
        the winner's event, so nothing is retried)."""
        by_tx: dict[str, list] = {}  # a batch carries many
        for key, (_, tx, _) in self.pending.items():
            if tx:
                by_tx.setdefault(tx, []).append(key)
        for sent, ok, _ in self.inclusions.poll():
            if sent.call == "assign":
                for key in by_tx.get(sent.tx, ()):
                    self.pending.pop(key, None)
            else:
                for item in sent.items:
                    self.finalizing.pop(item, None)
            if not ok:
                self.outcomes[f"{sent.call} reverted when mined"] += 1
        stale = time.time() - PENDING_TTL
        for key in [k for k, (_, _, at) in self.pending.items() if at < stale]:
            del self.pending[key]
            self.outcomes["assign not mined in time"] += 1

    def stats(self) -> dict:
        return {"timings": self.timings.snapshot(), "sent": self.sent, "outcomes": dict(self.outcomes)}
