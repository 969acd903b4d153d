"""Why a shard waits: one short reason per replica that is not running, from chain facts alone.

Every view (`ape run job status`, the gateway's GET /jobs/{id}, `keeper status`) and every
keeper computes the same reasons from the same inputs: the job, the shard's replicas, the
registered assets, the shard's ShardDeclined events, the market parameters and the chain's
clock. Keepers may add what only they know (heartbeat verdicts per asset).

Declines back off deterministically: after the n-th decline of a shard, no keeper assigns it
before `last decline + BACKOFF_BASE × 2^(n-1)` seconds, so a manifest no asset can run costs
at most MAX_DECLINES assignments, spread out, before the chain fails the shard.

Pure: no ape, web3, redis or celery.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from computenet import preflight
from computenet.domain import MAX_DECLINES, Asset, Job, Parameters, Replica, ReplicaState, Requirements

BACKOFF_BASE = 15  # seconds after a shard's first decline before it is assigned again; doubles per decline


@dataclass(frozen=True)
class Decline:
    """One ShardDeclined event: the asset, its reason and the chain time of its block."""

    asset: int
    reason: str
    at: int

    @classmethod
    def of(cls, asset: int, reason: bytes | str, at: int) -> Decline:
        return cls(int(asset), reason_text(reason), int(at))


def reason_text(reason: bytes | str) -> str:
    """A decline's bytes32 reason as text (right-padded with zeros on chain)."""
    if isinstance(reason, str):
        return reason
    return bytes(reason).rstrip(b"\x00").decode("utf-8", errors="replace") or "no reason given"


@dataclass(frozen=True)
class Waiting:
    """Why a replica is not running. `kind` is one of KINDS (for machines), `text` for people;
    `until` the chain time a backoff ends."""

    kind: str
    text: str
    until: int | None = None

    def __str__(self) -> str:
        return self.text

    def as_json(self) -> dict:
        return {"kind": self.kind, "reason": self.text} | ({"until": self.until} if self.until is not None else {})


KINDS = ("paused", "no_eligible_asset", "backing_off", "declined", "busy", "unassigned", "failed", "cancelled")


def clock(at: int) -> str:
    """Chain time as a UTC wall-clock time, the same in every view."""
    return time.strftime("%H:%M:%S", time.gmtime(at)) + " UTC"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------- backoff


def backoff_until(declines: Sequence[Decline]) -> int | None:
    """The chain time before which no keeper assigns the shard again; None without declines."""
    if not declines:
        return None
    last = max(d.at for d in declines)
    return last + BACKOFF_BASE * 2 ** (len(declines) - 1)


def failed(declines: Sequence[Decline]) -> bool:
    """Whether the chain has failed the shard (its MAX_DECLINES-th decline)."""
    return len(declines) >= MAX_DECLINES


# ---------------------------------------------------------------- eligibility


def _active(assets: Iterable[Asset]) -> list[Asset]:
    """Assets that could ever take a lease: active, with an agent, a 32-bit id."""
    return [a for a in assets if a.spec.active and int(a.agent, 16) != 0 and a.id <= preflight.UINT32_MAX]


def problem_for_new_job(req: Requirements, assets: Iterable[Asset], params: Parameters, now: int) -> str | None:
    """Why no active asset can ever take a lease of a job with these requirements, naming the
    first requirement none meets, in the order `JobMarket.assign` checks them; None when some
    asset could (leases it holds now aside: they end)."""
    pool = _active(assets)
    if not pool:
        return "no active asset is registered"
    staked = [a for a in pool if a.stake.available >= params.min_stake]
    if not staked:
        most = max(a.stake.available for a in pool)
        return f"no active asset has the minimum stake of {params.min_stake} (the most any has: {most})"
    pool = staked
    gpus = [a for a in pool if a.spec.gpu_count >= req.gpu_count]
    if not gpus:
        most = max(a.spec.gpu_count for a in pool)
        return f"needs {_plural(req.gpu_count, 'GPU')} (the most any active asset has: {most})"
    pool = gpus
    vram = [a for a in pool if a.spec.vram_mib >= req.min_vram_mib]
    if not vram:
        most = max(a.spec.vram_mib for a in pool)
        return f"needs {req.min_vram_mib} MiB of VRAM per GPU (the most any active asset with enough GPUs has: {most})"
    pool = vram
    cheap = [a for a in pool if a.spec.price <= req.max_price]
    if not cheap:
        least = min(a.spec.price for a in pool)
        return f"price cap {req.max_price} is below every matching asset's price (the cheapest: {least})"
    pool = cheap
    lease_end = now + req.lease_seconds(params.lease_grace)
    if lease_end > req.deadline:
        return (
            f"deadline too near: a lease takes {req.lease_seconds(params.lease_grace)} s "
            f"and the deadline is {max(0, req.deadline - now)} s away"
        )
    if not any(a.spec.expire >= lease_end for a in pool):
        latest = max(a.spec.expire for a in pool)
        return f"every matching asset's registration expires before a lease would end (the latest at {latest})"
    return None


_CHAIN_PREFIXES = ("job_market: ", "asset_stakes: ", "compute_asset: ")


def _busy_text(blocked: Mapping[int, str]) -> str:
    shown = "; ".join(f"asset {a}: {why}" for a, why in sorted(blocked.items())[:5])
    more = f"; and {len(blocked) - 5} more" if len(blocked) > 5 else ""
    return "every eligible asset is busy or over utilisation" + (f" ({shown}{more})" if shown else "")


def available_assets(
    job: Job,
    replicas: Sequence[Replica],
    assets: Iterable[Asset],
    params: Parameters,
    now: int,
    asset_reasons: Mapping[int, str] | None = None,
    attested: Collection[int] | None = None,
) -> tuple[list[int], dict[int, str]]:
    """(assets that could take the shard's next replica now, why each asset that could ever take
    one cannot now): the chain's rules of `assign` (capacity, GPUs leased, already on the shard,
    a tee job's attested assets when `attested` is given), then the keeper's own verdicts when given."""
    ready, blocked = [], {}
    for asset in _active(assets):
        if problem_for_new_job(job.requirements, [asset], params, now) is not None:
            continue  # never eligible: not a busy asset
        known = None if attested is None else asset.id in attested
        problem = preflight.asset_problem(asset, job.requirements, params, now, known)
        problem = problem or preflight.open_replica(replicas, asset.id)[1]
        if problem is None and asset_reasons and asset.id in asset_reasons:
            problem = asset_reasons[asset.id]
        if problem is None:
            ready.append(asset.id)
        else:
            blocked[asset.id] = problem.split(": ", 1)[-1] if problem.startswith(_CHAIN_PREFIXES) else problem
    return ready, blocked


# ---------------------------------------------------------------- reasons


def shard_waiting(
    job: Job,
    replicas: Sequence[Replica],
    assets: Iterable[Asset],
    declines: Sequence[Decline],
    params: Parameters,
    now: int,
    *,
    paused: bool = False,
    asset_reasons: Mapping[int, str] | None = None,
    attested: Collection[int] | None = None,
) -> dict[int, Waiting]:
    """Why each OPEN or CANCELLED replica of a shard is not running, by replica index.
    `declines` are the shard's ShardDeclined events in chain order; `asset_reasons` a keeper's
    verdicts per asset ("no heartbeat", "over utilisation (97 % ≥ 90 %)"); `attested` the
    assets with a current TEE verdict, for a tee job (None: not checked)."""
    out: dict[int, Waiting] = {}
    declines = sorted(declines, key=lambda d: d.at)
    for rep in replicas:
        if rep.state == ReplicaState.CANCELLED:
            if failed(declines):
                out[rep.index] = Waiting(
                    "failed", f"failed: declined {len(declines)} times (last: {declines[-1].reason})"
                )
            else:
                out[rep.index] = Waiting("cancelled", "cancelled")
    open_ = [r for r in replicas if r.state == ReplicaState.OPEN]
    if not open_:
        return out
    assets = list(assets)
    reason = _open_reason(job, replicas, assets, declines, params, now, paused, asset_reasons, attested)
    for rep in open_:
        out[rep.index] = reason
    return out


def _open_reason(
    job: Job,
    replicas: Sequence[Replica],
    assets: list[Asset],
    declines: Sequence[Decline],
    params: Parameters,
    now: int,
    paused: bool,
    asset_reasons: Mapping[int, str] | None,
    attested: Collection[int] | None = None,
) -> Waiting:
    if paused:
        return Waiting("paused", "the market is paused")
    never = problem_for_new_job(job.requirements, assets, params, now)
    if never:
        return Waiting("no_eligible_asset", f"no eligible asset: {never}")
    until = backoff_until(declines)
    if until is not None and now < until:
        return Waiting(
            "backing_off", f"backing off until {clock(until)} after {_plural(len(declines), 'decline')}", until
        )
    ready, blocked = available_assets(job, replicas, assets, params, now, asset_reasons, attested)
    if not ready:
        return Waiting("busy", _busy_text(blocked))
    if declines:
        last = declines[-1]
        return Waiting(
            "declined",
            f"declined by asset {last.asset}: {last.reason} "
            f"({len(declines)} of {MAX_DECLINES} declines; the {_ordinal(MAX_DECLINES)} fails the shard)",
        )
    return Waiting("unassigned", f"waiting for a keeper ({_plural(len(ready), 'eligible asset')})")


def _ordinal(n: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10 if n > 20 else n, "th")
    return f"{n}{suffix}"
