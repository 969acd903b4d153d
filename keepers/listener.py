"""The listener: follows the market's events from the cursor kept in Redis and turns them
into Celery tasks (by id only), and sweeps for work that time alone makes possible.

Each step reads (computenet.follow) the events of the blocks between the cursor and the head
less the confirmation depth, enqueues the tasks their reaction names, then commits the
reaction to the projection together with the new cursor. Shards to assign are not enqueued one
by one: once committed, one round (`assign_round`, de-duplicated like any task) places every
open shard the projection holds. A crash before the commit only means the
same blocks are read again, and tasks are safe to run twice; a crash after it loses
nothing, because the sweep re-enqueues whatever the projection still holds open or due.
Without a cursor (a new keeper, or a Redis that was lost) it starts from the deployment
block and so rebuilds the projection from the chain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from computenet.follow import Follower
from keepers.reactions import react
from keepers.settings import KeeperSettings
from keepers.state import KeeperState

log = logging.getLogger("keepers.listener")

Enqueue = Callable[[tuple], None]

# Every open shard is placed by one task, a round (keepers.actions.assign_round), not one task each.
ROUND = ("assign_round",)
FINALIZE_ROUND = ("finalize_round",)


class Listener:
    def __init__(
        self,
        settings: KeeperSettings,
        market: Any,
        state: KeeperState,
        enqueue: Enqueue,
        chain_now: Callable[[], int],
        head: Callable[[], int] | None = None,
        heartbeats: Any = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.enqueue = enqueue
        self.chain_now = chain_now
        # The cursor lives in Redis beside the projection: KeeperState.save commits both at once.
        self.follower = Follower(
            market,
            state,
            roles=("assets", "keepers", "market", "attestations"),  # the last: tee results' shortened windows
            confirmations=settings.confirmations,
            block_range=settings.block_range,
            head=head,
        )
        self._last_sweep = 0.0
        self.intake = heartbeats  # keepers.heartbeats.HeartbeatIntake; None: no polling

    def _submit(self, task: tuple) -> bool:
        """Enqueues `task` unless it is already waiting in the queue."""
        if self.state.mark_queued(task, ttl=max(10, int(3 * self.settings.sweep_interval))):
            self.enqueue(task)
            return True
        return False

    def step(self) -> int:
        """Processes the confirmed blocks past the cursor (at most `block_range`); returns how
        many events it read."""
        batch = self.follower.poll()
        if batch is None:
            return 0
        reaction = react(batch.events)
        live = batch.head - batch.last < self.settings.block_range  # catching up from far behind: the sweep will do
        if live:
            for task in reaction.tasks:
                if task[0] != "assign":  # open shards go to the round below
                    self._submit(task)
        self.follower.commit(batch, reaction)
        if live and (reaction.wake or any(task[0] == "assign" for task in reaction.tasks)):
            self._submit(ROUND)  # after the commit: the round reads the open shards from the projection
        self.state.set_listener(
            cursor=batch.last, head=batch.head + self.settings.confirmations, at=round(time.time(), 3)
        )
        if batch.events:
            log.info(
                "events",
                extra={
                    "fields": {
                        "from": batch.first,
                        "to": batch.last,
                        "events": len(batch.events),
                        "tasks": len(reaction.tasks),
                    }
                },
            )
        return len(batch.events)

    def sweep(self) -> int:
        """Enqueues the work due by chain time and a round while any shard is open; returns how many."""
        now = self.chain_now()
        count = 0
        finals = False
        for kind, ids in self.state.due(now):
            if kind == "finalize":
                finals = True  # every final shard in one round (one transaction through the relay)
            else:
                count += self._submit((kind, *ids))
        if finals:
            count += self._submit(FINALIZE_ROUND)
        if self.state.open_shards():
            count += self._submit(ROUND)
        self.state.set_listener(swept=round(time.time(), 3))
        return count

    def heartbeats(self) -> int | None:
        """Collects and starts polls of the agents' endpoints (keepers.heartbeats: only the
        first round is waited for)."""
        return self.intake.tick() if self.intake is not None else None

    def tick(self) -> None:
        """One round: new events (all of them when catching up), heartbeats, the sweep when due.
        Heartbeats come after the events, so those of assets registered meanwhile are known."""
        while True:
            self.step()
            if self.follower.next_block() > self.follower.safe_head():
                break
        self.heartbeats()
        if time.time() - self._last_sweep >= self.settings.sweep_interval:
            self.sweep()
            self._last_sweep = time.time()

    def run(self, stop: threading.Event) -> None:
        """Ticks until `stop` is set; a transient failure is logged once and retried."""
        failing = False
        while not stop.is_set():
            try:
                self.tick()
                if failing:
                    log.info("recovered")
                failing = False
            except Exception as error:
                if not failing:
                    log.warning(
                        "tick failed, retrying", extra={"fields": {"error": f"{type(error).__name__}: {error}"}}
                    )
                    self._record_error(error)
                failing = True
                stop.wait(min(5.0, 10 * self.settings.poll_interval))
                continue
            stop.wait(self.settings.poll_interval)

    def _record_error(self, error: Exception) -> None:
        try:
            self.state.record("error", call="listener", error=f"{type(error).__name__}: {error}")
        except Exception:  # Redis itself is down: the log line above is all we can do
            pass
