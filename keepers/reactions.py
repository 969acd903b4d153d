"""What a keeper does about each market event: a pure function from a typed SDK event
to changes of its projection and to the tasks worth running at once.

The projection is all a keeper remembers (in Redis) between blocks, and every part of it
can be rebuilt by replaying the events from the deployment block:

    open        per shard, how many of its replicas are open     ("job:shard" -> count)
    due         time-driven work and when it becomes possible    ("reclaim:job:shard:replica" at
                                                                  the lease's end, "finalize:job:shard"
                                                                  at the challenge window's end,
                                                                  "expire:job:shard" at once while a
                                                                  dispute is open: its ruling deadline
                                                                  is not in the event, so the task
                                                                  reads it and waits)
    reputation  per asset: leases finalized, leases reclaimed, disputes lost
    agents      per asset: the agent key its heartbeats must be signed with
    declines    per shard, its declines ("asset:block:reason hex"), for the backoff
                (computenet.waiting); dropped once the shard is finalized or failed

Tasks named here run at once for low latency; the periodic sweep re-runs whatever the
projection says is still open or due, so a task lost to a crash is only late, never missed.
Only events change the projection (tasks never do), so replaying them always gives the
same projection. No ape, web3, redis or celery import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from computenet import events as ev

# Events after which an asset may take a lease it could not take before: every open shard
# is worth another look.
_WAKERS = (
    ev.AssetRegistered,
    ev.AssetResumed,
    ev.AssetRenewed,
    ev.PriceUpdated,
    ev.CapacityUpdated,
    ev.StakeAdded,
    ev.Unpaused,
    ev.ShardFinalized,
    ev.ShardReclaimed,
    ev.ShardDeclined,
    ev.ReplicaRejected,
    ev.KeeperRegistered,
)

REPUTATION_FIELDS = ("finalized", "reclaimed", "disputes_lost")


def shard_member(job: int, shard: int) -> str:
    return f"{job}:{shard}"


def reclaim_member(job: int, shard: int, replica: int) -> str:
    return f"reclaim:{job}:{shard}:{replica}"


def finalize_member(job: int, shard: int) -> str:
    return f"finalize:{job}:{shard}"


def expire_member(job: int, shard: int) -> str:
    return f"expire:{job}:{shard}"


_DUE_KINDS = {"reclaim": 3, "finalize": 2, "expire": 2}  # kind -> how many ids its member holds


def parse_member(member: str) -> tuple[str, tuple[int, ...]]:
    """("reclaim", (job, shard, replica)) from a due member; ValueError for anything else."""
    kind, *ids = member.split(":")
    if _DUE_KINDS.get(kind) != len(ids) or not all(i.isdigit() for i in ids):
        raise ValueError(f"not a due member: {member!r}")
    return kind, tuple(int(i) for i in ids)


@dataclass
class Reaction:
    """The changes one or more events make. `due` maps a member to its time; a later time
    for the same member replaces an earlier one (several replicas submit one after another)."""

    open: dict[str, int] = field(default_factory=dict)  # change of each shard's open-replica count
    due: dict[str, int] = field(default_factory=dict)
    sooner: dict[str, int] = field(default_factory=dict)  # a member due earlier than it was (a shortened window)
    undue: set[str] = field(default_factory=set)
    reputation: dict[tuple[int, str], int] = field(default_factory=dict)
    agents: dict[int, str] = field(default_factory=dict)
    forget_nodes: set[int] = field(default_factory=set)
    declines: dict[str, list[str]] = field(default_factory=dict)  # shard member -> new declines
    forget_declines: set[str] = field(default_factory=set)  # applied after `declines`
    tasks: list[tuple] = field(default_factory=list)
    wake: bool = False

    def _open(self, job: int, shard: int, count: int = 1) -> None:
        member = shard_member(job, shard)
        self.open[member] = self.open.get(member, 0) + count
        if count > 0:
            self._task(("assign", job, shard))

    def _due(self, member: str, at: int) -> None:
        self.undue.discard(member)
        self.due[member] = max(at, self.due.get(member, 0))

    def _undue(self, member: str) -> None:
        self.due.pop(member, None)
        self.sooner.pop(member, None)
        self.undue.add(member)

    def _count(self, asset: int, name: str) -> None:
        self.reputation[(asset, name)] = self.reputation.get((asset, name), 0) + 1

    def _task(self, task: tuple) -> None:
        if task not in self.tasks:
            self.tasks.append(task)

    def add(self, event: ev.Event) -> Reaction:
        """Folds one event in (in chain order); returns self."""
        if isinstance(event, ev.JobPosted):
            for shard in range(event.shard_count):
                self._open(event.job, shard, event.replication)
        elif isinstance(event, ev.ShardAssigned):
            self._open(event.job, event.shard, -1)
            self._due(reclaim_member(event.job, event.shard, event.replica), event.lease_end)
        elif isinstance(event, (ev.ShardDeclined, ev.ShardReclaimed)):
            self._undue(reclaim_member(event.job, event.shard, event.replica))
            self._open(event.job, event.shard)
            if isinstance(event, ev.ShardReclaimed):
                self._count(event.asset, "reclaimed")
            else:
                entry = f"{event.asset}:{event.block}:{bytes(event.reason).hex()}"
                self.declines.setdefault(shard_member(event.job, event.shard), []).append(entry)
        elif isinstance(event, ev.ShardFailed):
            self.forget_declines.add(shard_member(event.job, event.shard))  # nothing more is assigned
        elif isinstance(event, ev.ShardCancelled):
            self._open(event.job, event.shard, -event.replicas)
        elif isinstance(event, ev.ResultSubmitted):
            self._undue(reclaim_member(event.job, event.shard, event.replica))
            self._due(finalize_member(event.job, event.shard), event.challenge_end)
        elif isinstance(event, ev.ResultAttested):  # a tee result's window, ended early
            self.sooner[finalize_member(event.job, event.shard)] = event.challenge_end
        elif isinstance(event, ev.DisputeOpened):
            self._undue(finalize_member(event.job, event.shard))  # the facilitator's ruling comes first
            self._due(expire_member(event.job, event.shard), 0)  # unless none comes by the ruling deadline
        elif isinstance(event, ev.ReplicaRejected):
            self._count(event.asset, "disputes_lost")
            self._open(event.job, event.shard)
        elif isinstance(event, ev.DisputeResolved):  # a ruling, or the default outcome (no facilitator)
            self._undue(expire_member(event.job, event.shard))
            # Results that stand finalize once their (extended) challenge windows close.
            self._due(finalize_member(event.job, event.shard), 0)
            self._task(("finalize", event.job, event.shard))
        elif isinstance(event, ev.ShardFinalized):
            self._count(event.asset, "finalized")
            self.forget_declines.add(shard_member(event.job, event.shard))
            self._undue(finalize_member(event.job, event.shard))
        elif isinstance(event, (ev.AssetRegistered, ev.AgentChanged)):
            self.agents[event.asset] = event.agent
            if isinstance(event, ev.AgentChanged):
                self.forget_nodes.add(event.asset)  # its last heartbeat was signed by the old key
        if isinstance(event, _WAKERS):
            self.wake = True
        return self


def react(events: list[ev.Event]) -> Reaction:
    """The combined reaction to `events`, in chain order."""
    reaction = Reaction()
    for event in events:
        reaction.add(event)
    return reaction
