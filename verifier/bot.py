"""The verifier bot: follows submitted results, re-executes those sampled for it, and challenges
the wrong ones (or over-metered ones) with a bond.

Each step, for every `ResultSubmitted` event since its cursor:

  1. read: the replica (still SUBMITTED with that root, else nothing to do), the job (its
     verification mode, GPUs, shards), and the seed: the hash of the block after the one that
     mined the event (a result waits here until that block exists);
  2. decide whether it is sampled (verifier/sampling.py): SPOT_CHECK at the manifest's
     `spot_check_bps`, OPTIMISTIC at this verifier's share, REPLICATED never (the replicas
     check one another); in every mode a metering claim that stands out from its peers'
     (verifier/rules.py `metering_outlier`: the job's other results nearby) is taken whatever
     the draw, so inflating a claim is no bet on not being sampled;
  3. skip it when the shard already has a challenge (`DisputeCourt.challenge_of`): one bond
     at stake is enough, and several verifiers do not pile on;
  4. re-execute it (verifier/reexecute.py, as an agent runs it: from the replica's resume
     point, the checkpoint the market adopted for it, when it resumed) and judge the replica
     (verifier/rules.py `judge`): its root against the re-execution's, or, for a manifest
     whose comparator has a tolerance, its whole result fetched from its agent and checked
     against its on-chain root (computenet/outputs.py); and its metering claim against what
     the re-execution allows;
  5. challenge (`DisputeCourt.challenge`, posting the bond: the market is approved for it
     first) when the verdict says so, unless a challenge appeared meanwhile; a challenge
     that loses the race to another verifier's reverts at its estimate, nothing is sent, and
     the result is recorded as already challenged.

State (the cursor, results waiting for their seed block or a retry, and one decision per
result) lives in a JSON file replaced atomically. A decision to challenge is written before
the transaction is sent, so a restart, even mid-send, never challenges the same result twice.

Bond. The challenge bond is posted per challenge from the verifier's own tokens; it comes back
with a reward when the arbiter finds the replica wrong and goes to the accused when it does
not. Reading outputs (needed for numeric comparators) needs more: agents serve a replica's
files only to bonded verifiers, and the network's only operator bond is the KeeperRegistry's,
so a verifier that reads outputs registers there (an active registrant; it need not assign).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from computenet.domain import ReplicaState, Verification
from computenet.errors import ContractRevert
from computenet.follow import Follower
from computenet.market import Market
from computenet.outputs import OutputsClient, OutputsError
from computenet.web3calls import Sender
from verifier.reexecute import ReexecutionError, Reexecutor
from verifier.rules import PEER_SHARDS, judge, metering_outlier
from verifier.sampling import audit_mode, sampled, seed_block

log = logging.getLogger("verifier.bot")

ZERO_ADDRESS = "0x" + "00" * 20
COUNTERS = ("results_seen", "sampled", "reexecuted", "mismatches", "challenged", "errors")


@dataclass(frozen=True)
class Submission:
    """One ResultSubmitted event."""

    job: int
    shard: int
    replica: int
    asset: int
    root: str  # 0x hex
    gpu_seconds: int
    block: int
    log_index: int

    @property
    def key(self) -> str:
        return f"{self.job}/{self.shard}/{self.replica}@{self.block}:{self.log_index}"


class State:
    """The bot's memory: the next block to scan, results waiting (for their seed block or a
    retry), a decision per result and counters, in one JSON file replaced atomically."""

    def __init__(self, path: Path | None, start_block: int = 0) -> None:
        self.path = Path(path) if path else None
        self.next_block = start_block
        self.waiting: dict[str, dict[str, Any]] = {}  # key -> {"submission": …, "attempts": n, "retry_at": t}
        self.decisions: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()
        if self.path and self.path.exists():
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            self.next_block = int(saved["next_block"])
            self.waiting = saved["waiting"]
            self.decisions = saved["decisions"]
            self.counts |= saved.get("counts", {})

    def load(self) -> int:
        """The last block scanned (computenet.follow's cursor)."""
        return self.next_block - 1

    def count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + by

    def decide(self, key: str, decision: dict[str, Any]) -> None:
        """Records a result's decision (replacing an earlier one) and stops waiting on it."""
        self.decisions[key] = {"at": round(time.time(), 3)} | decision
        self.waiting.pop(key, None)
        self.save()

    def save(self, block: int | None = None) -> None:
        """Writes the file; `block`: the last block scanned now (computenet.follow's commit)."""
        if block is not None:
            self.next_block = block + 1
        if self.path is None:
            return
        with self._lock:
            body = {
                "next_block": self.next_block,
                "waiting": self.waiting,
                "decisions": self.decisions,
                "counts": self.counts,
            }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(body, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class Verifier:
    """One verifier key (or none: a dry run that logs what it would challenge) on one market."""

    def __init__(
        self,
        market: Market,
        reexecutor: Reexecutor,
        *,
        sender: Sender | None = None,
        address: str | None = None,
        share_bps: int = 1_000,
        state: Path | None = None,
        start_block: int | None = None,
        outputs: dict[int, str] | None = None,
        retry_seconds: float = 30.0,
        max_attempts: int = 5,
    ) -> None:
        """
        @param market The market's reader (computenet.market.Market over the verifier's web3).
        @param reexecutor Runs shards again (its Docker engine and content store).
        @param sender The verifier key, which challenges and signs outputs requests; None: dry run.
        @param address Whose draws a dry run makes (default: the sender's).
        @param share_bps The share of OPTIMISTIC results it samples (capped at MAX_AUDIT_BPS).
        @param state The state file (None: kept in memory).
        @param start_block The first block scanned when there is no state yet (default: the deployment block).
        @param outputs Asset id -> its agent's outputs URL, for numeric comparators.
        @param retry_seconds The wait before trying a failed result again.
        @param max_attempts Tries per result before it is given up.
        """
        if sender is None and address is None:
            raise ValueError("a verifier needs a key, or an address to draw for in a dry run")
        self.market = market
        self.sender = sender
        self.address = sender.address if sender else str(address)
        self.reexecutor = reexecutor
        self.share_bps = share_bps
        self.state = State(state, market.deployment_block if start_block is None else start_block)
        # The cursor lives in the state file, written with the results found in the same save.
        self.follower = Follower(market, self.state, roles=("market",), names=("ResultSubmitted",))
        self.retry_seconds = retry_seconds
        self.max_attempts = max_attempts
        self.outputs = None
        if sender is not None:
            self.outputs = OutputsClient(sender.account.key, market.chain_id, outputs or {}, market.agent_of)

    @property
    def dry_run(self) -> bool:
        return self.sender is None

    def bonded(self) -> bool:
        """Whether this verifier is an active bonded registrant of the KeeperRegistry (agents
        serve sampled outputs only to those)."""
        return self.market.keeper_id(self.address) is not None

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event, poll_interval: float = 1.0) -> None:
        """Steps until `stop`; a node or engine hiccup is logged and the next step resumes."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as error:
                self.state.count("errors")
                log.warning("step failed, retrying", extra={"fields": {"error": f"{type(error).__name__}: {error}"}})
            stop.wait(poll_interval)

    def run_once(self) -> list[dict[str, Any]]:
        """Scans the blocks since the cursor for results, then handles every result whose seed
        block exists and whose retry time has come; returns the decisions made."""
        found = 0
        while (batch := self.follower.poll()) is not None:
            for event in batch.events:
                item = Submission(
                    int(event.job),
                    int(event.shard),
                    int(event.replica),
                    int(event.asset),
                    "0x" + bytes(event.output_root).hex(),
                    int(event.gpu_seconds),
                    event.block,
                    event.index,
                )
                if item.key not in self.state.decisions and item.key not in self.state.waiting:
                    self.state.waiting[item.key] = {"submission": asdict(item), "attempts": 0, "retry_at": 0.0}
                    found += 1
            self.follower.commit(batch)  # the results found and the cursor, in one write
        if found:
            self.state.count("results_seen", found)
        head = self.market.head()
        decisions = []
        for key, waiting in sorted(self.state.waiting.items(), key=lambda kv: kv[1]["submission"]["block"]):
            item = Submission(**waiting["submission"])
            if seed_block(item.block) > head or waiting["retry_at"] > time.time():
                continue
            try:
                decision = self.handle(item)
            except (ReexecutionError, OSError, ConnectionError, ValueError) as error:
                self._failed(key, waiting, error)
                continue
            self.state.decide(key, decision)
            decisions.append(decision)
        return decisions

    def _failed(self, key: str, waiting: dict[str, Any], error: Exception) -> None:
        self.state.count("errors")
        waiting["attempts"] += 1
        fields = {"result": key, "attempt": waiting["attempts"], "error": f"{type(error).__name__}: {error}"}
        if waiting["attempts"] >= self.max_attempts:
            log.error("result given up", extra={"fields": fields})
            self.state.decide(key, {"decision": "gave up", "error": fields["error"]})
            return
        waiting["retry_at"] = time.time() + self.retry_seconds
        log.warning("result not checked yet, will retry", extra={"fields": fields})
        self.state.save()

    # ------------------------------------------------------------ one result

    def handle(self, item: Submission) -> dict[str, Any]:
        """Read, sample, re-execute, judge and (maybe) challenge one submitted result."""
        base = {"job": item.job, "shard": item.shard, "replica": item.replica, "root": item.root}
        rep = self.market.replica(item.job, item.shard, item.replica)
        if rep.state != ReplicaState.SUBMITTED or "0x" + rep.output_root.hex() != item.root:
            return self._log(base | {"decision": "moot", "state": rep.state.name})
        job = self.market.job(item.job)
        manifest_hash, req = job.manifest_hash, job.requirements
        gpu_count, shard_count, mode = req.gpu_count, req.shard_count, audit_mode(req.verification, rep.state)
        base |= {"mode": mode.name}
        rules = self.reexecutor.manifest(manifest_hash).verification
        peers = self._peer_claims(item, shard_count, req.replication)
        outlier = metering_outlier(rep.gpu_seconds, peers, gpu_count, rules.metering_tolerance_bps)
        if mode == Verification.REPLICATED and not outlier:
            return self._log(base | {"decision": "replicated"})
        seed = self.market.block_hash(seed_block(item.block))
        if not outlier and not sampled(
            mode,
            seed,
            item.job,
            item.shard,
            item.replica,
            spot_check_bps=rules.spot_check_bps,
            verifier=self.address,
            share_bps=self.share_bps,
        ):
            return self._log(base | {"decision": "not sampled"}, level=logging.DEBUG)
        if outlier:
            base |= {"metering_outlier": {"claimed": rep.gpu_seconds, "peers": peers}}
        self.state.count("sampled")
        if self._challenger(item) != ZERO_ADDRESS:
            return self._log(base | {"decision": "already challenged", "challenger": self._challenger(item)})
        log.info("re-executing", extra={"fields": base})
        # A replica that resumed from an adopted checkpoint is judged by a run from it.
        resume = self.market.checkpoint(item.job, item.shard, item.replica).resume_point
        run = self.reexecutor.run(manifest_hash, item.shard, shard_count, gpu_count, resume_point=resume)
        self.state.count("reexecuted")
        files, fetch_error = None, ""
        if run.root != rep.output_root and rules.compare != "exact" and self.outputs is not None:
            try:
                files = self.outputs.result(item.asset, item.job, item.shard, item.replica, rep.output_root)
            except OutputsError as error:
                fetch_error = str(error)
        verdict = judge(
            rules,
            run.root,
            run.files,
            run.metering.seconds(gpu_count),
            rep.output_root,
            files,
            rep.gpu_seconds,
            gpu_count,
        )
        found = base | {
            "computed_root": "0x" + run.root.hex(),
            "resume_point": "0x" + bytes(resume).hex(),
            "claimed": rep.gpu_seconds,
            "allowed": verdict.metering.allowed,
            "meter": run.metering.meter,
            "reasons": list(verdict.reasons),
        }
        if fetch_error:
            found["outputs_error"] = fetch_error
        if not verdict.challenge:
            return self._log(found | {"decision": "agreed"})
        self.state.count("mismatches")
        return self.challenge(item, found)

    def _peer_claims(self, item: Submission, shard_count: int, replication: int) -> list[int]:
        """The metering claims of the job's other results nearby (the shard's other replicas and
        those of up to PEER_SHARDS shards either side): submitted, disputed or final."""
        first, last = max(0, item.shard - PEER_SHARDS), min(shard_count - 1, item.shard + PEER_SHARDS)
        keys = [
            (shard, replica)
            for shard in range(first, last + 1)
            for replica in range(replication)
            if (shard, replica) != (item.shard, item.replica)
        ]
        claimed = (ReplicaState.SUBMITTED, ReplicaState.DISPUTED, ReplicaState.FINALIZED)
        return [rep.gpu_seconds for rep in self.market.replicas(item.job, keys, roots=False) if rep.state in claimed]

    def challenge(self, item: Submission, found: dict[str, Any]) -> dict[str, Any]:
        """Challenges the shard unless a challenge is already open; the intent is saved first."""
        if self.dry_run:
            return self._log(found | {"decision": "would challenge"}, level=logging.WARNING)
        challenger = self._challenger(item)
        if challenger != ZERO_ADDRESS:
            return self._log(found | {"decision": "already challenged", "challenger": challenger})
        self._approve_bond()
        self.state.decide(item.key, found | {"decision": "challenging"})  # a restart never sends it again
        try:
            receipt = self.sender.send(self.market.calls.court.functions.challenge(item.job, item.shard))
        except ContractRevert as error:
            challenger = self._challenger(item)
            if challenger != ZERO_ADDRESS:  # another verifier's challenge was mined first
                return self._log(found | {"decision": "already challenged", "challenger": challenger})
            return self._log(found | {"decision": "challenge refused", "reason": error.reason}, level=logging.WARNING)
        self.state.count("challenged")
        return self._log(
            found
            | {
                "decision": "challenged",
                "transaction": "0x" + bytes(receipt["transactionHash"]).hex(),
                "block": int(receipt["blockNumber"]),
            },
            level=logging.WARNING,
        )

    def _challenger(self, item: Submission) -> str:
        return self.market.challenger(item.job, item.shard)

    def _approve_bond(self) -> None:
        bond, spender = self.market.challenge_bond(), self.market.addresses["market"]
        if self.market.allowance(self.sender.address, spender) < bond:
            self.sender.send(self.market.calls.token.functions.approve(spender, bond))

    def _log(self, decision: dict[str, Any], level: int = logging.INFO) -> dict[str, Any]:
        log.log(level, decision["decision"], extra={"fields": decision})
        return decision
