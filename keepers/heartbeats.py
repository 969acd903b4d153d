"""The keeper's heartbeat intake: it polls the endpoint each asset records on chain
(`ComputeAsset.endpoint`) for its agent's signed heartbeats, so keepers of different
operators share nothing but the chain.

A round, every `heartbeat_poll_interval` seconds:

1. `targets`: the assets worth polling (an agent set, active, unexpired), read from the
   chain view (cached per block, endpoints with it).
2. Each distinct endpoint is asked `GET <endpoint>/heartbeats` on a thread pool, each request
   bounded by `heartbeat_timeout`, so one slow or dead endpoint stalls no other, nor the
   listener: `HeartbeatIntake.tick` starts a round and collects it on later ticks.
3. Each asset's heartbeat is checked as ever (`KeeperState.accept`, check_heartbeat: signed by
   the asset's agent, fresh, a newer sequence) and kept when accepted.
4. Why each asset is not eligible, if it is not, goes to the keeper state
   (`KeeperState.asset_reasons`), for `keeper status`: `asset_reason` decides it.

A node whose endpoint fails keeps its last accepted heartbeat until that goes stale, as a
node that falls silent always has.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from typing import Any

from computenet.checkpoints import check_signed
from computenet.domain import Asset
from computenet.heartbeat import HeartbeatError, checkpoints_of
from keepers.scheduler import NodeState, Policy
from keepers.state import KeeperState

log = logging.getLogger("keepers.heartbeats")

MAX_ANSWER_BYTES = 1 << 20  # an endpoint's answer read at most: about 4,000 heartbeats
# Checkpoint entries of one heartbeat looked at: an agent serves one per running lease, and each
# costs a signature recovery (and, for a new job, a read of its manifest).
MAX_CHECKPOINTS = 64
NO_ENDPOINT = "no endpoint on chain (its owner runs `ape run provider set-endpoint`)"
NO_HEARTBEAT = "no heartbeat accepted yet"

Fetched = list[Any] | str  # an endpoint's heartbeats as parsed JSON, or why none came
CheckpointCheck = Callable[[Any, Asset], bool]  # is this heartbeat entry a checkpoint signed by the asset's agent?


def checkpoint_check(market: Any) -> CheckpointCheck:
    """`CheckpointCheck` over the chain: the job's manifest (cached: it never changes) and the
    asset's agent as the intake read it."""
    manifests: dict[int, bytes | None] = {}

    def check(body: Any, asset: Asset) -> bool:
        job = body.get("job") if isinstance(body, dict) else None
        if not isinstance(job, int) or isinstance(job, bool):
            return False
        if job not in manifests:
            found = market.job(job)
            manifests[job] = None if found is None else found.manifest_hash
        signed = check_signed(body, asset.id, asset.agent, manifests[job], market.chain_id, market.market.address)
        return signed is not None

    return check


def targets(assets: Iterable[Asset], now: int) -> list[Asset]:
    """The assets a keeper could assign to, whose heartbeats it therefore polls (pure)."""
    return [a for a in assets if int(a.agent, 16) != 0 and a.spec.active and a.spec.expire > now]


def fetch(endpoint: str, timeout: float) -> Fetched:
    """GET <endpoint>/heartbeats: the list it answers, or why there is none (never raises)."""
    import requests

    url = endpoint.rstrip("/") + "/heartbeats"
    try:
        with requests.get(url, timeout=(timeout, timeout), stream=True) as response:
            if response.status_code != 200:
                return f"endpoint unreachable: {url} answered {response.status_code}"
            body = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
    except Exception as error:  # refused, timed out, a bad URL: all the same to the keeper
        return f"endpoint unreachable: {url}: {type(error).__name__}: {error}"[:300]
    if len(body) > MAX_ANSWER_BYTES:
        return f"endpoint unreachable: {url} answered over {MAX_ANSWER_BYTES} bytes"
    try:
        beats = json.loads(body)
    except ValueError:
        return f"endpoint unreachable: {url} answered something other than JSON"
    if not isinstance(beats, list):
        return f"endpoint unreachable: {url} answered no list of heartbeats"
    return beats


def pick(fetched: Fetched, asset: int) -> str | None:
    """The wire form of `asset`'s heartbeat among an endpoint's answer (the highest sequence
    if it lists several); None if it has none."""
    if isinstance(fetched, str):
        return None
    mine = [b for b in fetched if isinstance(b, dict) and b.get("asset") == asset]
    if not mine:
        return None
    best = max(mine, key=lambda b: b.get("seq") if isinstance(b.get("seq"), int) else -1)
    return json.dumps(best, separators=(",", ":"))


def asset_reason(problem: str | None, node: NodeState | None, now: int, policy: Policy) -> str | None:
    """Why an asset is not eligible by its heartbeats, or None (pure). `problem` is why this
    round brought no new heartbeat (None when it did, or the last one again); `node` the
    last heartbeat accepted, timed on the same clock as `now`."""
    if node is None or now - node.last_seen > policy.max_heartbeat_age:
        if not policy.require_heartbeat:
            return None
        if problem:
            return problem
        if node is None:
            return NO_HEARTBEAT
        return f"heartbeat: stale (age {now - node.last_seen} s > {policy.max_heartbeat_age} s)"
    if node.gpu_utilization_pct > policy.max_utilization_pct:
        return f"over utilisation ({node.gpu_utilization_pct} % > {policy.max_utilization_pct} %)"
    if node.running_shards >= node.capacity:
        return f"full (running {node.running_shards} of its capacity {node.capacity})"
    return None


class HeartbeatIntake:
    """Polls the assets' endpoints and feeds the keeper state (module docstring)."""

    def __init__(
        self,
        state: KeeperState,
        assets: Callable[[], list[Asset]],
        policy: Policy,
        interval: float = 2.0,
        timeout: float = 2.0,
        workers: int = 16,
        clock: Callable[[], float] = time.time,
        checkpoints: CheckpointCheck | None = None,
    ) -> None:
        self.state, self.assets, self.policy = state, assets, policy
        self.checkpoints = checkpoints
        self.interval, self.timeout, self.clock = interval, timeout, clock
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="heartbeats")
        self._round: dict[str, Future] = {}
        self._polled: list[Asset] = []
        self._deadline = self._started = float("-inf")

    def _start(self) -> None:
        self._started = self.clock()
        self._polled = targets(self.assets(), int(self._started))
        urls = {a.endpoint.rstrip("/") for a in self._polled if a.endpoint}
        self._round = {url: self.pool.submit(fetch, url, self.timeout) for url in sorted(urls)}
        self._deadline = self._started + 2 * self.timeout + 1  # connect plus read, and a margin

    def _collect(self) -> dict[str, Fetched]:
        answers = {}
        for url, future in self._round.items():
            if future.done():
                answers[url] = future.result()
            else:  # a thread still stuck on it; its answer is dropped
                future.cancel()
                answers[url] = f"endpoint unreachable: {url}: no answer in {self._deadline - self._started:.0f} s"
        self._round = {}
        return answers

    def tick(self) -> int | None:
        """Collects a finished round (returns how many heartbeats it accepted) and starts the
        next when due; None when no round ended. Only the first round is waited for (at most
        about twice the timeout), so a keeper that starts decides with the nodes it can see."""
        if self._started == float("-inf"):
            return self.poll()
        accepted = None
        if self._round and (self.clock() >= self._deadline or all(f.done() for f in self._round.values())):
            accepted = self.ingest(self._collect())
        if not self._round and self.clock() - self._started >= self.interval:
            self._start()
        return accepted

    def poll(self) -> int:
        """One whole round, waiting for it: returns how many heartbeats it accepted."""
        self._start()
        wait_all(list(self._round.values()), timeout=max(0.0, self._deadline - self.clock()))
        return self.ingest(self._collect())

    def ingest(self, answers: dict[str, Fetched]) -> int:
        """Checks and keeps each polled asset's heartbeat; records why the others wait."""
        now = int(self.clock())
        accepted, problems = 0, {}
        for asset in self._polled:
            endpoint = asset.endpoint.rstrip("/")
            if not endpoint:
                problems[asset.id] = NO_ENDPOINT
                continue
            fetched = answers.get(endpoint, "endpoint not polled")
            wire = pick(fetched, asset.id)
            if wire is None:
                problems[asset.id] = fetched if isinstance(fetched, str) else f"{endpoint} serves no heartbeat for it"
                continue
            try:
                problem = self.state.accept(wire, asset.agent, now, self.policy.max_heartbeat_age)
            except HeartbeatError as error:
                problem = str(error)
            if problem is None:
                accepted += 1
                self._keep_checkpoints(wire, asset)
            elif problem != KeeperState.UNCHANGED:
                problems[asset.id] = problem
        nodes = self.state.nodes()
        reasons = {}
        for asset in self._polled:
            reason = asset_reason(problems.get(asset.id), nodes.get(asset.id), now, self.policy)
            if reason is not None:
                reasons[asset.id] = reason
        self._log_changes(self.state.asset_reasons(), reasons)
        self.state.set_asset_reasons(reasons)
        return accepted

    def _keep_checkpoints(self, wire: str, asset: Asset) -> None:
        """Keeps the newest signed checkpoint per replica from an accepted heartbeat: only the
        asset's own, each checked against its agent's signature, so a relay that forged or
        inflated one cannot push out the real one."""
        if self.checkpoints is None:
            return
        for body in checkpoints_of(wire)[:MAX_CHECKPOINTS]:
            if self.checkpoints(body, asset):
                self.state.keep_checkpoint(body)

    @staticmethod
    def _log_changes(before: dict[int, str], after: dict[int, str]) -> None:
        """Logs an asset's reason when it changes, not every round."""
        for asset, reason in sorted(after.items()):
            if before.get(asset) != reason:
                log.warning("asset not eligible", extra={"fields": {"asset": asset, "reason": reason}})
        for asset in sorted(set(before) - set(after)):
            log.info("asset eligible again", extra={"fields": {"asset": asset}})

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
