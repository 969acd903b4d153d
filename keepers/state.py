"""Everything a keeper keeps in Redis, under one prefix per (keeper name, chain, market).

Redis holds only what can be rebuilt from the chain and the agents' endpoints: the cursor
and the projection of keepers.reactions, accepted heartbeats and why each asset is not
eligible (keepers.heartbeats), the transactions in flight, task de-duplication marks, and a
short log of actions and errors for `status` and the metrics. It is the keeper's own: it
holds nothing another role writes. The projection
and the cursor move together in one MULTI/EXEC, so an event is never counted twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from computenet.heartbeat import Heartbeat, check_heartbeat
from keepers.decisions import newer_checkpoint
from keepers.reactions import REPUTATION_FIELDS, Reaction, parse_member
from keepers.scheduler import NodeState, Reputation

LOG_LENGTH = 200  # actions and errors kept for `status`


class LockTimeout(Exception):
    """Another worker held the send lock for too long (transient: retried)."""


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class KeeperState:
    def __init__(self, redis: Any, chain_id: int, market: str, registry: str, name: str = "keeper") -> None:
        self.redis = redis
        self.chain_id = chain_id
        self.registry = registry
        self.prefix = f"computenet:{name}:{chain_id}:{market.lower()}"

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    # ------------------------------------------------------------- cursor and projection

    def cursor(self) -> int | None:
        """The last block whose events are in the projection; None: nothing yet (or Redis was lost)."""
        return _int(self.redis.get(self.key("cursor")))

    def load(self) -> int | None:
        """The cursor, for computenet.follow."""
        return self.cursor()

    def save(self, cursor: int, reaction: Reaction) -> None:
        """computenet.follow's commit: the reaction and the cursor, together."""
        self.commit(reaction, cursor)

    def commit(self, reaction: Reaction, cursor: int) -> None:
        """Applies a reaction and moves the cursor, atomically."""
        pipe = self.redis.pipeline(transaction=True)
        for member, change in reaction.open.items():
            pipe.hincrby(self.key("open"), member, change)
        for member, at in reaction.due.items():
            pipe.zadd(self.key("due"), {member: at}, gt=True)  # GT still adds new members
        for member, at in reaction.sooner.items():
            pipe.zadd(self.key("due"), {member: at}, lt=True)
        if reaction.undue:
            pipe.zrem(self.key("due"), *reaction.undue)
        for (asset, field), count in reaction.reputation.items():
            pipe.hincrby(self.key("reputation"), f"{asset}:{field}", count)
        if reaction.agents:
            pipe.hset(self.key("agents"), mapping={str(a): agent for a, agent in reaction.agents.items()})
        for asset in reaction.forget_nodes:
            pipe.hdel(self.key("nodes"), str(asset))
        for member, entries in reaction.declines.items():
            pipe.rpush(self.key(f"declines:{member}"), *entries)
        for member in reaction.forget_declines:
            pipe.delete(self.key(f"declines:{member}"))
        pipe.set(self.key("cursor"), cursor)
        pipe.execute()
        self._drop_closed(list(reaction.open))

    def _drop_closed(self, members: list[str]) -> None:
        """Forgets shards with no open replica left (a leftover zero after a crash is harmless)."""
        if members:
            counts = self.redis.hmget(self.key("open"), members)
            closed = [m for m, c in zip(members, counts) if c is not None and int(c) <= 0]
            if closed:
                self.redis.hdel(self.key("open"), *closed)

    def open_shards(self) -> list[tuple[int, int]]:
        """Shards with an open replica by the events so far, in (job, shard) order."""
        found = []
        for member, count in self.redis.hgetall(self.key("open")).items():
            if int(count) > 0:
                job, shard = member.decode().split(":")
                found.append((int(job), int(shard)))
        return sorted(found)

    def declines(self, job: int, shard: int) -> list[tuple[int, int, bytes]]:
        """The shard's declines so far, in chain order: (asset, block, reason bytes32)."""
        out = []
        for raw in self.redis.lrange(self.key(f"declines:{job}:{shard}"), 0, -1):
            asset, block, reason = raw.decode().split(":")
            out.append((int(asset), int(block), bytes.fromhex(reason)))
        return out

    def due(self, now: int) -> list[tuple[str, tuple[int, ...]]]:
        """Time-driven work possible at chain time `now`, earliest first."""
        members = self.redis.zrangebyscore(self.key("due"), "-inf", now)
        return [parse_member(m.decode()) for m in members]

    def counts(self) -> dict[str, int]:
        return {
            "open": len(self.open_shards()),
            "due": self.redis.zcard(self.key("due")),
            "nodes": self.redis.hlen(self.key("nodes")),
            "pending": self.redis.zcard(self.key("pending")),
        }

    def reputations(self) -> dict[int, Reputation]:
        counts: dict[int, dict[str, int]] = {}
        for field, value in self.redis.hgetall(self.key("reputation")).items():
            asset, name = field.decode().split(":")
            counts.setdefault(int(asset), {})[name] = int(value)
        return {asset: Reputation(**{f: c.get(f, 0) for f in REPUTATION_FIELDS}) for asset, c in counts.items()}

    # ------------------------------------------------------------- heartbeats

    UNCHANGED = "heartbeat: the one already accepted"

    def accept(self, wire: str | bytes, agent: str, now: int, max_age: int) -> str | None:
        """Keeps a heartbeat (wire form) that `check_heartbeat` accepts for an asset whose
        agent is `agent`: None when kept, UNCHANGED when it is the one already kept, else why
        it was refused. HeartbeatError for a malformed one."""
        raw = wire.encode() if isinstance(wire, str) else bytes(wire)
        hb, signature = Heartbeat.from_json(raw)
        if self.redis.hget(self.key("nodes"), str(hb.asset)) == raw:
            return self.UNCHANGED
        last_seq = _int(self.redis.hget(self.key("seq"), str(hb.asset)))
        reason = check_heartbeat(hb, signature, agent, now, max_age, last_seq, self.chain_id, self.registry)
        if reason is None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self.key("nodes"), str(hb.asset), raw)
            pipe.hset(self.key("seq"), str(hb.asset), hb.seq)
            pipe.execute()
        return reason

    def keep_checkpoint(self, body: dict) -> bool:
        """Keeps a heartbeat's signed checkpoint (wire form, already checked against its
        signer) if it is newer than the one kept for its replica; True if kept."""
        field = f"{body['job']}:{body['shard']}:{body['replica']}"
        raw = self.redis.hget(self.key("checkpoints"), field)
        if not newer_checkpoint(json.loads(raw) if raw else None, body):
            return False
        self.redis.hset(self.key("checkpoints"), field, json.dumps(body, separators=(",", ":")))
        return True

    def checkpoint(self, job: int, shard: int, replica: int) -> dict | None:
        """The newest signed checkpoint kept for a replica (its latest lease's), or None."""
        raw = self.redis.hget(self.key("checkpoints"), f"{job}:{shard}:{replica}")
        return json.loads(raw) if raw else None

    def set_asset_reasons(self, reasons: dict[int, str]) -> None:
        """Replaces the reasons the assets polled are not eligible (keepers.heartbeats)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.key("reasons"))
        if reasons:
            pipe.hset(self.key("reasons"), mapping={str(a): r for a, r in reasons.items()})
        pipe.execute()

    def asset_reasons(self) -> dict[int, str]:
        """Why each asset is not eligible by its heartbeats, as of the last poll: no endpoint,
        endpoint unreachable, a refused heartbeat (bad signature, stale, replayed), over
        utilisation, full. Assets absent are eligible (or were not polled)."""
        return dict(sorted((int(a), r.decode()) for a, r in self.redis.hgetall(self.key("reasons")).items()))

    def nodes(self, clock_offset: int = 0) -> dict[int, NodeState]:
        """Node states from accepted heartbeats; `last_seen` moved by `clock_offset` (chain time
        minus wall time) so the scheduler can compare it with the chain's clock."""
        out = {}
        for raw in self.redis.hvals(self.key("nodes")):
            hb, _ = Heartbeat.from_json(raw)
            node = NodeState.from_heartbeat(hb)
            out[hb.asset] = replace(node, last_seen=node.last_seen + clock_offset)
        return out

    # ------------------------------------------------------------- sending

    @contextmanager
    def send_lock(self, account: str, timeout: float = 30.0, wait: float = 60.0) -> Iterator[None]:
        """Serialises decide → nonce → broadcast for one key across every worker of the keeper,
        on every machine. Expires on its own if its holder dies."""
        lock = self.redis.lock(self.key(f"lock:send:{account.lower()}"), timeout=timeout, blocking_timeout=wait)
        if not lock.acquire():
            raise LockTimeout(f"send lock for {account} not free after {wait} s")
        try:
            yield
        finally:
            try:
                lock.release()
            except Exception:  # expired meanwhile: another holder may have it now, leave it
                pass

    def add_pending(self, job: int, shard: int, replica: int, asset: int, ttl: float) -> str:
        member = f"{job}:{shard}:{replica}:{asset}"
        self.redis.zadd(self.key("pending"), {member: time.time() + ttl})
        return member

    def remove_pending(self, member: str) -> None:
        self.redis.zrem(self.key("pending"), member)

    def pending(self) -> list[tuple[int, int, int, int]]:
        """Assignments sent and not yet mined (nor timed out): (job, shard, replica, asset)."""
        self.redis.zremrangebyscore(self.key("pending"), "-inf", time.time())
        return [tuple(int(x) for x in m.decode().split(":")) for m in self.redis.zrange(self.key("pending"), 0, -1)]

    # ------------------------------------------------------------- task marks

    def mark_queued(self, task: tuple, ttl: int) -> bool:
        """True if `task` was not queued already (and now is marked so for `ttl` s)."""
        return bool(self.redis.set(self.key("queued:" + ":".join(map(str, task))), 1, nx=True, ex=ttl))

    def clear_queued(self, task: tuple) -> None:
        self.redis.delete(self.key("queued:" + ":".join(map(str, task))))

    # ------------------------------------------------------------- journal for status and metrics

    def record(self, kind: str, **fields: Any) -> None:
        """Logs an action (kind: sent, mined, reverted, lost, dry_run, done, error) for `status`."""
        entry = json.dumps({"at": round(time.time(), 3), "kind": kind, **fields}, default=str)
        pipe = self.redis.pipeline(transaction=False)
        target = "errors" if kind == "error" else "actions"
        pipe.lpush(self.key(target), entry)
        pipe.ltrim(self.key(target), 0, LOG_LENGTH - 1)
        pipe.hincrby(self.key("stats"), f"{kind}:{fields.get('call', '-')}", 1)
        pipe.execute()

    def recent(self, which: str, count: int = 10) -> list[dict]:
        return [json.loads(x) for x in self.redis.lrange(self.key(which), 0, count - 1)]

    def stats(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(self.key("stats")).items()}

    def set_listener(self, **fields: Any) -> None:
        self.redis.hset(self.key("listener"), mapping={k: str(v) for k, v in fields.items()})

    def listener(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(self.key("listener")).items()}
