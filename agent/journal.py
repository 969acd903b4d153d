"""The agent's journal: one row per lease it was given, in SQLite, written before each step
it starts and after each step it ends, so a restarted agent knows where every lease stood.

States, in order: `accepted` (the assignment was seen), `running` (a container was started;
its name is kept), `computed` (output root, metered seconds, exit code and the signed
receipt are on disk), `submitted` (the result transaction was sent) and the ends `done`
(mined), `declined` and `dropped` (the lease is no longer this agent's to serve).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

STATES = ("accepted", "running", "computed", "submitted", "done", "declined", "dropped")
OPEN_STATES = ("accepted", "running", "computed", "submitted")


@dataclass(frozen=True)
class Lease:
    """One lease of one replica to one of this agent's assets."""

    job: int
    shard: int
    replica: int
    lease: int
    asset: int
    lease_end: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.job, self.shard, self.replica, self.lease)

    @property
    def name(self) -> str:
        """The lease's folder and container name: unique, so a restart finds them again."""
        return f"computenet-{self.job}-{self.shard}-{self.replica}-{self.lease}"


@dataclass(frozen=True)
class Entry(Lease):
    """A lease and where it stands."""

    state: str = "accepted"
    container: str = ""
    output_root: str = ""
    gpu_seconds: int = 0
    exit_code: int = 0
    signature: str = ""
    tx: str = ""
    note: str = ""
    updated: float = 0.0


_COLUMNS = [f.name for f in fields(Entry)]


class Journal:
    """A SQLite file; safe to use from the agent's threads (one connection, one lock)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a step recorded is a step that survives power loss
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS leases (job INTEGER, shard INTEGER, replica INTEGER, lease INTEGER, "
                "asset INTEGER, lease_end INTEGER, state TEXT, container TEXT, output_root TEXT, gpu_seconds INTEGER, "
                "exit_code INTEGER, signature TEXT, tx TEXT, note TEXT, updated REAL, "
                "PRIMARY KEY (job, shard, replica, lease))"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")

    def accept(self, job: int, shard: int, replica: int, lease: int, asset: int, lease_end: int) -> bool:
        """Records a new lease; False when it is known already (the event was seen before)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO leases (job, shard, replica, lease, asset, lease_end, state, container, "
                "output_root, gpu_seconds, exit_code, signature, tx, note, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, 'accepted', '', '', 0, 0, '', '', '', ?)",
                (job, shard, replica, lease, asset, lease_end, time.time()),
            )
            return cursor.rowcount == 1

    def update(self, key: tuple[int, int, int, int], state: str, **values: object) -> None:
        """Moves a lease to `state`, setting the given columns."""
        if state not in STATES:
            raise ValueError(f"unknown journal state {state!r}")
        unknown = set(values) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown journal columns {sorted(unknown)}")
        columns = {"state": state, "updated": time.time(), **values}
        assignments = ", ".join(f"{name} = ?" for name in columns)
        with self._lock:
            self._db.execute(
                f"UPDATE leases SET {assignments} WHERE job = ? AND shard = ? AND replica = ? AND lease = ?",
                (*columns.values(), *key),
            )

    def get(self, key: tuple[int, int, int, int]) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM leases WHERE job = ? AND shard = ? AND replica = ? AND lease = ?",
                key,
            ).fetchone()
        return Entry(*row) if row else None

    def open_entries(self) -> list[Entry]:
        """Leases not yet at an end, oldest first."""
        marks = ", ".join("?" for _ in OPEN_STATES)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM leases WHERE state IN ({marks}) ORDER BY updated", OPEN_STATES
            ).fetchall()
        return [Entry(*row) for row in rows]

    def entries(self) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM leases ORDER BY updated").fetchall()
        return [Entry(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT state, COUNT(*) FROM leases GROUP BY state").fetchall())

    def get_meta(self, key: str, default: object = None) -> object:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: object) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
