"""Following the chain's logs: one way for every role (agent, keeper listener, verifier,
refunder, arbiter).

A `Follower` reads the events past a persistent cursor in bounded block ranges, starting at
the deployment block when there is no cursor yet, optionally only blocks buried under a
confirmation depth. It never moves the cursor by itself: the caller handles a batch, then
commits it, so a crash between the two re-reads the range and never skips one. Handlers
must therefore be safe to run twice on the same events.

Where the cursor is kept is the caller's choice: `JsonCursor` (a file replaced atomically,
which may carry a little state of the role's own that must move with the cursor) or any
object with `load()` and `save(block, ...)`, such as the keeper's Redis state, which commits
its projection with the cursor in one transaction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from computenet.events import Event

BLOCK_RANGE = 2_000  # most blocks per log query: what public nodes answer in one eth_getLogs


class CursorStore(Protocol):
    def load(self) -> int | None:
        """The last block handled; None: none yet."""

    def save(self, block: int, *args: Any) -> None:
        """Records `block` as handled (with whatever the store commits beside it)."""


class MemoryCursor:
    """A cursor kept in memory (tests, one-off reads)."""

    def __init__(self, block: int | None = None) -> None:
        self.block = block
        self.data: dict[str, Any] = {}

    def load(self) -> int | None:
        return self.block

    def save(self, block: int, data: dict[str, Any] | None = None) -> None:
        self.block = block
        if data is not None:
            self.data = data


class JsonCursor:
    """A cursor in a JSON file, replaced atomically (write, fsync, rename), so a crash leaves
    the old cursor or the new one. `data` is the role's own state saved with it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {}
        self._block: int | None = None
        if self.path.exists():
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            self._block = None if saved.get("block") is None else int(saved["block"])
            self.data = saved.get("data", {})

    def load(self) -> int | None:
        return self._block

    def save(self, block: int, data: dict[str, Any] | None = None) -> None:
        if data is not None:
            self.data = data
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"block": block, "data": self.data}, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._block = block


@dataclass(frozen=True)
class Batch:
    """The events of blocks `first`..`last` (inclusive), in chain order; `head` is the
    latest block seen when they were read."""

    first: int
    last: int
    head: int
    events: tuple[Event, ...]

    @property
    def caught_up(self) -> bool:
        """Whether this batch reached the followed head (not catching up from far behind)."""
        return self.last >= self.head


class Follower:
    """Reads `market`'s events past the cursor in `store`, at most `block_range` blocks a batch.

    `roles` and `names` narrow what is read (Market.events); `confirmations` keeps that many
    blocks back from the head; `start_block` is where a follower with no cursor starts
    (default: the market's deployment block, never block 0 of a long chain)."""

    def __init__(
        self,
        market: Any,
        store: CursorStore,
        *,
        roles: Sequence[str] = ("assets", "keepers", "market"),
        names: Sequence[str] | None = None,
        confirmations: int = 0,
        block_range: int = BLOCK_RANGE,
        start_block: int | None = None,
        head: Callable[[], int] | None = None,
    ) -> None:
        if block_range < 1:
            raise ValueError("block_range must be at least 1")
        self.market = market
        self.store = store
        self.roles = tuple(roles)
        self.names = None if names is None else tuple(names)
        self.confirmations = confirmations
        self.block_range = block_range
        self.start_block = market.deployment_block if start_block is None else start_block
        self._head = head or market.head

    def next_block(self) -> int:
        """The first block not handled yet."""
        cursor = self.store.load()
        return self.start_block if cursor is None else cursor + 1

    def safe_head(self) -> int:
        """The latest block deep enough to act on."""
        return self._head() - self.confirmations

    def poll(self) -> Batch | None:
        """The next range's events (it may hold none); None when there is no new block."""
        first, safe = self.next_block(), self.safe_head()
        if safe < first:
            return None
        last = min(safe, first + self.block_range - 1)
        events = self.market.events(first, last + 1, roles=self.roles, names=self.names)
        return Batch(first, last, safe, tuple(events))

    def commit(self, batch: Batch, *args: Any) -> None:
        """Records `batch` as handled (`args` go to the store with the cursor)."""
        self.store.save(batch.last, *args)
