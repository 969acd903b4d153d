"""Dispute arbitration: the facilitator's arbiter rules on a disputed shard by running it
again itself, sends the ruling on chain and keeps an append-only audit log of every decision.

    POST /disputes   a request to rule (below) -> {job, shard, valid_root, reproducible, runs,
                     upheld, rejected, notes, ruling, rejected_mask, transaction}
    GET  /disputes   the audit log's entries, most recent last

A dispute is open when some replica of the shard is DISPUTED: a verifier challenged it
(posting a bond) or the replicas of a replicated shard submitted different roots. Nobody has
to ask for a ruling: `Arbiter.run_once` (a loop in the facilitator process) follows the
market's `DisputeOpened` events from a persisted block cursor and rules on every open
dispute it finds. A request only asks for the ruling sooner, and may bring attachments.

How the arbiter rules. It re-executes the shard itself (verifier/reexecute.py: manifest,
inputs and image fetched by hash, the agent's sandbox and resource limits, the manifest's
timeout, files committed exactly as the agent commits a result) and compares it with each
replica's result under the manifest's comparator (verifier/compare.py; by default exactly,
root for root):

  - it agrees with some replica under ruling: its result is valid;
  - it agrees with none: it runs the shard a second time; if the two runs agree, the first
    is valid and every replica under ruling is wrong;
  - the two runs differ: the job is not reproducible and no one is at fault. `valid_root` is
    the zero root, meaning every submitted result stands (the challenger loses its bond).

A replica that resumed from a checkpoint the market adopted for it (its resume point,
`Market.checkpoint`) is judged against a run from that checkpoint, staged as its agent
staged it: an honest provider is judged on what it was given, even when the failed node
that wrote the checkpoint poisoned it. When the replicas under ruling resumed from different
points (one resumed, one started fresh), the arbiter runs the shard once per resume point
(twice when that run agrees with none of that point's replicas) and judges each replica
against the run from its own point; the ruling then goes on chain replica by replica.

A replica agrees when its root is the arbiter's or, for a manifest whose comparator has a
tolerance ("numeric"), when its whole result agrees within it: the result's files are
attached to the request (`results`, checked against the replica's on-chain root) or fetched
from the replica's agent (`outputs`); a replica whose files the arbiter cannot have is judged
by its root alone. A replica that agrees still falls when its metering claim exceeds what
the arbiter's run allows (verifier/rules.py, the manifest's `metering_tolerance_bps`).

The ruling goes on chain as `resolve(valid_root)` when it is exactly "the replicas whose
root is valid_root stand", and otherwise (a tolerance let other roots stand, or a replica
with the valid root over-metered) as `resolve_replicas(rejected_mask)`: bit r set, replica r
is rejected; every other replica under ruling stands. The market keeps no root of a result it
recorded in a batch (JobMarket.submit_results: one commitment per batch), and the court rules
by root only on roots it can read: before `resolve(valid_root)` the arbiter reveals each such
root under ruling (DisputeCourt.reveal_result, from the batch's logs), and the audit line
names those transactions (`revealed`).

A request (JSON; hex is 0x-prefixed, file contents are base64); everything but job and
shard is an optional attachment:

    {
      "job": 7, "shard": 0,
      "receipts": [                   # replicas' signed ExecutionReceipts
        {"replica": 1, "output_root": "0x<32 bytes>", "gpu_seconds": 1000, "exit_code": 0,
         "signature": "0x<65 bytes r ‖ s ‖ v>"}
      ],
      "proofs": [                     # files proven to be in a replica's result
        {"replica": 1, "path": "out/result.txt", "content": "<base64>", "proof": ["0x<32 bytes>", ...]}
      ],
      "reexecution": {                # the caller's own run of the shard, as the agent commits it
        "files": {"out/result.txt": "<base64>", "log/container.log": "<base64>"}
      },
      "results": [                    # a replica's whole result: every file under its on-chain root
        {"replica": 1, "files": {"out/logits.npy": "<base64>", "log/container.log": "<base64>"}}
      ]
    }

Attachments never decide. They are checked (rules 3 and 4), recorded in the audit log with
their sha256, and where they differ from the arbiter's re-execution the ruling says so (a
rejected replica's reason names its proven files that differ; `notes` name the attached
re-execution's files that differ), but the ruling is the arbiter's own root.

The rules, applied in this order; the first one broken refuses the request, nothing is sent
and the refusal is logged (the HTTP detail is "rule N (name): what is wrong"):

  1. open-dispute: the job and shard must exist (else 404) and the shard must have an open
     dispute on chain, some replica in state DISPUTED (else 409).
  2. caller: the request must be signed (computenet.signed_requests: scope "disputes", the
     facilitator's address, request "POST /disputes <sha256 of the body>") by the job's
     client, the shard's challenger, an active keeper or the owner of one of the shard's
     assets: those with a stake in the ruling or a bond. Else 401 (unsigned: refused at once,
     before rule 1 reads the chain) or 403. The arbiter's own loop is not a request and
     skips this rule.
  3. receipts: every receipt must be the one the chain holds for a replica under ruling
     (SUBMITTED or DISPUTED): its output root is the replica's on-chain root, its GPU-seconds
     capped at the job's maximum are the chain's metering, and its EIP-712 signature over the
     replica's current lease and asset and the job's manifest recovers to the asset's agent
     (`ComputeAsset.agentOf`). Else 400 naming the receipt and what is wrong.
  4. proofs: every Merkle proof must link its file to its replica's on-chain root, with the
     leaf and node hashing `JobMarket.verify_output` uses (computenet.merkle), and every
     attached whole result must rebuild its replica's on-chain root — a replica under ruling
     again. Else 400 naming the proof or result.
  5. re-execution: the arbiter must be able to run the shard: the manifest (whose
     `verification` section gives the comparator and metering tolerance) and inputs in its
     content store, the image found or pullable by digest, its Docker engine answering. Else
     503 naming what is missing; the dispute stays open and the loop tries again later.
  6. ruling: as above. Every replica under ruling that agrees with the arbiter's run and
     meters within tolerance is upheld, every other one rejected (the chain slashes it and
     reopens it); with the zero root every one stands. A rejected replica's reason says its root is not the arbiter's
     and names each of its proven files that differs from, or is missing in, the arbiter's
     re-execution. A chain that refuses the ruling is logged too (409 when the market refused
     it, e.g. the dispute was resolved meanwhile; 503 otherwise).

Audit log: one JSON line per decision, written with flush and fsync: time (UTC, ISO 8601),
job, shard, trigger ("request", with its caller; "watch", the arbiter's own loop; "call",
in-process), evidence_sha256 (of the request's canonical JSON: keys sorted, no spaces, as
parsed, defaults included), attachments (kind, replica, path and sha256 of each), rules (the
names applied, in order; "caller" only for a request), decision ("resolved" or "refused"),
then valid_root, computed_root (the arbiter's first run), runs (every run's root: two when
it ran twice), run_resume_points (the checkpoint each run resumed from, zero: from scratch),
parts (per resume point: its replicas, valid root and runs), arbiter_files (leaf -> sha256 of
its first run), reproducible, upheld, rejected, notes, transaction and block, or status, rule
and reason (with the runs when it had run). A resolution is also traceable from the chain
alone by its `DisputeResolved` event; the transaction hash links the two.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from computenet import signed_requests
from computenet.domain import MAX_REPLICATION, Replica, ReplicaState
from computenet.errors import ContractRevert, DisputeCourtError, InvalidSignature, JobMarketError
from computenet.follow import Batch, Follower, JsonCursor, MemoryCursor
from computenet.manifest import ResultVerification
from computenet.market import Market
from computenet.merkle import MAX_PROOF_DEPTH, MerkleTree, leaf, verify
from computenet.receipts import ExecutionReceipt
from computenet.staging import NO_RESUME
from computenet.web3calls import Sender
from verifier.compare import compare
from verifier.reexecute import Reexecution, ReexecutionError, Reexecutor
from verifier.rules import check_metering

log = logging.getLogger("verifier.arbiter")

RULES = ("open-dispute", "caller", "receipts", "proofs", "re-execution", "ruling")
NOT_FACILITATOR = "dispute_court: caller is not a facilitator"
SCOPE = "disputes"  # of the signed requests (computenet.signed_requests)
# The replicas a ruling covers: the disputed ones and those submitted beside them.
UNDER_RULING = (ReplicaState.SUBMITTED, ReplicaState.DISPUTED)
ZERO_ROOT = bytes(32)  # the ruling "not reproducible: every submitted result stands"

# ---------------------------------------------------------------- the request and its attachments


def _hex(size: int) -> Any:
    def check(value: str) -> str:
        if not value.startswith("0x"):
            raise ValueError("must be 0x-prefixed hex")
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raise ValueError("is not valid hex") from None
        if len(raw) != size:
            raise ValueError(f"must be {size} bytes, got {len(raw)}")
        return value.lower()  # one spelling, so equal evidence hashes alike

    return AfterValidator(check)


def _base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("is not valid base64") from None
    return value


Hex32 = Annotated[str, _hex(32)]
Signature = Annotated[str, _hex(65)]
Base64 = Annotated[str, AfterValidator(_base64)]
ReplicaIndex = Annotated[int, Field(ge=0, lt=MAX_REPLICATION)]


class ReceiptEvidence(BaseModel):
    """A replica's signed ExecutionReceipt (job, shard, lease, asset and manifest come from the chain)."""

    replica: ReplicaIndex
    output_root: Hex32
    gpu_seconds: int = Field(ge=0, lt=2**32)
    exit_code: int = Field(ge=0, lt=2**8)
    signature: Signature


class ProofEvidence(BaseModel):
    """A file claimed to be in a replica's result, with its Merkle proof (siblings, bottom-up)."""

    replica: ReplicaIndex
    path: str
    content: Base64
    proof: list[Hex32] = Field(max_length=MAX_PROOF_DEPTH)


class AttachedRun(BaseModel):
    """The caller's own run of the shard: leaf path -> content, as the agent commits a result."""

    files: dict[str, Base64]


class ResultEvidence(BaseModel):
    """A replica's whole result (leaf path -> content): every file under its on-chain root."""

    replica: ReplicaIndex
    files: dict[str, Base64]


class Evidence(BaseModel):
    """The body of POST /disputes: the shard to rule on, and attachments."""

    job: int = Field(ge=1)
    shard: int = Field(ge=0)
    receipts: list[ReceiptEvidence] = []
    proofs: list[ProofEvidence] = []
    reexecution: AttachedRun | None = None
    results: list[ResultEvidence] = []


def _canonical_sha256(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "0x" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def evidence_sha256(evidence: Evidence) -> str:
    """sha256 of the request's canonical JSON (keys sorted, compact, UTF-8), 0x-prefixed."""
    return _canonical_sha256(evidence.model_dump(mode="json"))


def _sha256(data: bytes) -> str:
    return "0x" + hashlib.sha256(data).hexdigest()


def attachments(evidence: Evidence) -> list[dict[str, Any]]:
    """What the request brought, for the audit log: each receipt (sha256 of its canonical
    JSON), proven file and attached re-execution file (sha256 of its content)."""
    found: list[dict[str, Any]] = []
    for item in evidence.receipts:
        found.append(
            {"kind": "receipt", "replica": item.replica, "sha256": _canonical_sha256(item.model_dump(mode="json"))}
        )
    for item in evidence.proofs:
        found.append(
            {
                "kind": "proof",
                "replica": item.replica,
                "path": item.path,
                "sha256": _sha256(base64.b64decode(item.content)),
            }
        )
    for path, content in evidence.reexecution.files.items() if evidence.reexecution else ():
        found.append({"kind": "reexecution", "path": path, "sha256": _sha256(base64.b64decode(content))})
    for result in evidence.results:
        for path, content in result.files.items():
            found.append(
                {
                    "kind": "result",
                    "replica": result.replica,
                    "path": path,
                    "sha256": _sha256(base64.b64decode(content)),
                }
            )
    return found


# ---------------------------------------------------------------- decision (pure)


@dataclass(frozen=True)
class ChainFacts:
    """What the chain says about one shard, read at one block."""

    chain_id: int
    market: str  # JobMarket address (the receipts' EIP-712 verifying contract)
    job: int
    shard: int
    manifest_hash: bytes
    max_gpu_seconds: int
    replicas: tuple[Replica, ...]  # every replica of the shard, by index, with its output root
    agents: dict[int, str]  # asset -> its agent address, for the assets of `replicas`
    shard_count: int = 1
    gpu_count: int = 0  # GPUs per replica: what a re-execution passes through, as an agent does
    # Each replica's resume point, by index: the checkpoint its lease started from (zero or
    # absent: from scratch).
    resume_points: tuple[bytes, ...] = ()
    # The replicas this view rules on (None: every one under ruling); `group` makes one per resume point.
    ruling: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Rejection:
    replica: int
    reason: str


@dataclass(frozen=True)
class Part:
    """One resume point's share of a ruling: the replicas under ruling that resumed from it
    (zero: from scratch), the root the arbiter's runs from it make valid (zero: they differed)
    and those runs' roots."""

    resume_point: bytes
    replicas: tuple[int, ...]
    valid_root: bytes
    runs: tuple[bytes, ...]


@dataclass(frozen=True)
class Decision:
    """A ruling: `valid_root` to send (zero: every submitted result stands), what it does to
    each replica under ruling, the roots of the arbiter's runs and notes on the attachments."""

    job: int
    shard: int
    valid_root: bytes
    upheld: tuple[int, ...]
    rejected: tuple[Rejection, ...]
    runs: tuple[bytes, ...] = ()
    notes: tuple[str, ...] = ()
    # Sent as `resolve_replicas(rejected_mask)` rather than `resolve(valid_root)`: the outcome is
    # not "the replicas whose root is valid_root stand" (a tolerance let other roots stand, or a
    # replica with the valid root is rejected for its metering).
    by_mask: bool = False
    # The checkpoint each of `runs` resumed from (zero: from scratch), and the ruling per resume point.
    resume_points: tuple[bytes, ...] = ()
    parts: tuple[Part, ...] = ()

    @property
    def reproducible(self) -> bool:
        if self.parts:
            return all(part.valid_root != ZERO_ROOT for part in self.parts)
        return self.valid_root != ZERO_ROOT

    @property
    def rejected_mask(self) -> int:
        """Bit r set: replica r is rejected."""
        return sum(1 << r.replica for r in self.rejected)


class Refused(Exception):
    """A request refused by a rule; `status` is the HTTP status to answer."""

    def __init__(self, status: int, rule: str, reason: str) -> None:
        self.status = status
        self.rule = rule
        self.reason = reason
        super().__init__(f"rule {RULES.index(rule) + 1} ({rule}): {reason}")

    @property
    def rules(self) -> list[str]:
        """The rules applied, up to and including the one that refused (they run in order)."""
        return list(RULES[: RULES.index(self.rule) + 1])


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def _hex_of(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _ruled(facts: ChainFacts) -> list[tuple[int, Replica]]:
    return [
        (index, rep)
        for index, rep in enumerate(facts.replicas)
        if rep.state in UNDER_RULING and (facts.ruling is None or index in facts.ruling)
    ]


def resume_point(facts: ChainFacts, index: int) -> bytes:
    """The checkpoint replica `index` resumed from (zero: from scratch)."""
    return bytes(facts.resume_points[index]) if index < len(facts.resume_points) else NO_RESUME


def resume_groups(facts: ChainFacts) -> dict[bytes, tuple[int, ...]]:
    """The replicas under ruling by the checkpoint they resumed from, the points in the order
    of their first replica: each point is one re-execution (or two) to judge them by."""
    groups: dict[bytes, list[int]] = {}
    for index, _ in _ruled(facts):
        groups.setdefault(resume_point(facts, index), []).append(index)
    return {point: tuple(indices) for point, indices in groups.items()}


def group(facts: ChainFacts, indices: Sequence[int]) -> ChainFacts:
    """The facts ruling on `indices` alone (the replicas of one resume point)."""
    return replace(facts, ruling=tuple(indices))


def _from(point: bytes) -> str:
    return "from scratch" if point == NO_RESUME else f"from checkpoint {_hex_of(point)}"


def _under_ruling(facts: ChainFacts, index: int, what: str, rule: str) -> Replica:
    if index >= len(facts.replicas):
        raise Refused(400, rule, f"{what}: job {facts.job} has {len(facts.replicas)} replicas per shard")
    rep = facts.replicas[index]
    if rep.state not in UNDER_RULING:
        raise Refused(400, rule, f"{what}: replica {index} is {ReplicaState(rep.state).name}, not under ruling")
    return rep


def is_open(facts: ChainFacts) -> bool:
    """Whether the shard has an open dispute: some replica of it is DISPUTED."""
    return any(rep.state == ReplicaState.DISPUTED for rep in facts.replicas)


def check_open(facts: ChainFacts) -> None:
    """Rule 1, once the job and shard are known to exist."""
    if not is_open(facts):
        raise Refused(409, "open-dispute", f"job {facts.job} shard {facts.shard} has no open dispute")


def check_receipts(evidence: Evidence, facts: ChainFacts) -> None:
    """Rule 3: every attached receipt is the one the chain holds, signed by the asset's agent."""
    for i, item in enumerate(evidence.receipts):
        what = f"receipt {i} (replica {item.replica})"
        rep = _under_ruling(facts, item.replica, what, "receipts")
        root = _bytes(item.output_root)
        if root != rep.output_root:
            raise Refused(
                400,
                "receipts",
                f"{what}: its output root {item.output_root} is not the replica's "
                f"on-chain root {_hex_of(rep.output_root)}",
            )
        # The chain stores the metering capped at the job's maximum.
        if min(item.gpu_seconds, facts.max_gpu_seconds) != rep.gpu_seconds:
            raise Refused(
                400,
                "receipts",
                f"{what}: it meters {item.gpu_seconds} GPU-seconds, the chain recorded {rep.gpu_seconds}",
            )
        receipt = ExecutionReceipt(
            job=facts.job,
            shard=facts.shard,
            replica=item.replica,
            lease=rep.lease,
            asset=rep.asset,
            manifest=facts.manifest_hash,
            output_root=root,
            gpu_seconds=item.gpu_seconds,
            exit_code=item.exit_code,
        )
        try:
            signer = receipt.recover(_bytes(item.signature), facts.chain_id, facts.market)
        except InvalidSignature as error:
            raise Refused(400, "receipts", f"{what}: its signature is invalid: {error}") from None
        agent = facts.agents.get(rep.asset, "")
        if signer.lower() != agent.lower():
            # A signature over other fields recovers some unrelated key, so this is also
            # what a receipt altered after signing looks like.
            raise Refused(
                400, "receipts", f"{what}: its signature recovers {signer}, not asset {rep.asset}'s agent {agent}"
            )


def check_proofs(evidence: Evidence, facts: ChainFacts) -> None:
    """Rule 4: every attached proof links its file to its replica's on-chain root."""
    for i, item in enumerate(evidence.proofs):
        what = f"proof {i} ({item.path!r} of replica {item.replica})"
        rep = _under_ruling(facts, item.replica, what, "proofs")
        file_leaf = leaf(item.path, base64.b64decode(item.content))
        if not verify([_bytes(p) for p in item.proof], rep.output_root, file_leaf):
            raise Refused(
                400, "proofs", f"{what}: it does not lead to the replica's on-chain root {_hex_of(rep.output_root)}"
            )


def check_results(evidence: Evidence, facts: ChainFacts) -> dict[int, dict[str, bytes]]:
    """Rule 4, for whole results: each attached result's files must rebuild its replica's
    on-chain root (so they are the replica's own result, all of it). Returns them by replica."""
    results: dict[int, dict[str, bytes]] = {}
    for i, item in enumerate(evidence.results):
        what = f"result {i} (replica {item.replica})"
        rep = _under_ruling(facts, item.replica, what, "proofs")
        files = {path: base64.b64decode(content) for path, content in item.files.items()}
        root = MerkleTree.from_files(files).root if files else ZERO_ROOT
        if root != rep.output_root:
            raise Refused(
                400,
                "proofs",
                f"{what}: its files' root {_hex_of(root)} is not the replica's on-chain "
                f"root {_hex_of(rep.output_root)}",
            )
        results[item.replica] = files
    return results


def _agrees(rules: ResultVerification, run: Reexecution, rep: Replica, results: dict[int, dict[str, bytes]]) -> bool:
    """Whether a replica's result agrees with one of the arbiter's runs: the same root, or,
    with its files known, agreeing under the manifest's comparator."""
    if rep.output_root == run.root:
        return True
    return rep.index in results and compare(rules, run.files, results[rep.index]).agree


def needs_second_run(
    facts: ChainFacts,
    run: Reexecution | bytes,
    rules: ResultVerification | None = None,
    results: dict[int, dict[str, bytes]] | None = None,
) -> bool:
    """Whether the arbiter's first run agrees with no replica under ruling: then only a second
    run that agrees with it makes it the valid result."""
    if isinstance(run, bytes):
        run = Reexecution(run, {})
    rules, results = rules or ResultVerification(), results or {}
    return not any(_agrees(rules, run, rep, results) for _, rep in _ruled(facts))


def _differences(whose: str, claimed: dict[str, bytes], arbiter: dict[str, bytes], complete: bool) -> list[str]:
    """How `claimed` files (all of a run when `complete`, else some proven ones) differ from the arbiter's run."""
    found = []
    for path in sorted(claimed.keys() | (arbiter.keys() if complete else set())):
        if path not in arbiter:
            found.append(f"{whose} file {path} is not in the arbiter's re-execution")
        elif path not in claimed:
            found.append(f"{whose} run lacks {path}, which the arbiter's re-execution has")
        elif claimed[path] != arbiter[path]:
            found.append(
                f"{whose} file {path} differs from the arbiter's re-execution (sha256 "
                f"{_sha256(claimed[path])}, the arbiter's {_sha256(arbiter[path])})"
            )
    return found


def decide(
    facts: ChainFacts,
    runs: Sequence[Reexecution],
    evidence: Evidence | None = None,
    party: str = "the caller",
    rules: ResultVerification | None = None,
    results: dict[int, dict[str, bytes]] | None = None,
) -> Decision:
    """Rule 6: the ruling from the arbiter's runs of the shard (one that agrees with a replica,
    or two), with the attachments of `evidence` (brought by `party`) compared to its files.

    `rules` is the manifest's verification section; without it, roots are compared exactly
    and metering is not checked. A replica stands when its root is the arbiter's, or when
    its whole result (`results`, checked against its on-chain root by `check_results`) agrees
    with the arbiter's run under the manifest's comparator; and, with `rules`, when its
    metering claim is within what the arbiter's run allows (verifier/rules.py)."""
    checked = rules is not None
    rules, results = rules or ResultVerification(), results or {}
    first = runs[0]
    second_agrees = len(runs) > 1 and compare(rules, first.files, runs[1].files).agree
    if not needs_second_run(facts, first, rules, results) or second_agrees:
        valid_root = first.root
    elif len(runs) > 1:
        valid_root = ZERO_ROOT
    else:
        raise ValueError("a root no replica submitted is valid only when a second run agrees with it")
    roots = tuple(run.root for run in runs)
    if valid_root == ZERO_ROOT:
        note = (
            f"not reproducible: the arbiter's two runs gave {_hex_of(roots[0])} and {_hex_of(roots[1])}; "
            "no one is at fault and every submitted result stands"
        )
        return Decision(facts.job, facts.shard, ZERO_ROOT, tuple(i for i, _ in _ruled(facts)), (), roots, (note,))
    evidence = evidence or Evidence(job=facts.job, shard=facts.shard)
    measured = first.metering.seconds(facts.gpu_count)
    upheld: list[int] = []
    rejected: list[Rejection] = []
    for index, rep in _ruled(facts):
        metering = check_metering(rep.gpu_seconds, measured, facts.gpu_count, rules.metering_tolerance_bps)
        if _agrees(rules, first, rep, results):
            if not checked or metering.ok:
                upheld.append(index)
            else:
                rejected.append(
                    Rejection(
                        index,
                        f"{metering.reason} ({first.metering.meter}, {rules.metering_tolerance_bps} bps tolerance)",
                    )
                )
            continue
        proven = {p.path: base64.b64decode(p.content) for p in evidence.proofs if p.replica == index}
        reasons = [f"its root {_hex_of(rep.output_root)} is not the arbiter's {_hex_of(valid_root)}"]
        if first.resume_point != NO_RESUME:
            reasons[0] += f" (run {_from(first.resume_point)}, where the replica resumed)"
        if index in results:
            differences = compare(rules, results[index], first.files).differences
            reasons += [f"its result: {difference}" for difference in differences]
        reasons += _differences("its", proven, first.files, complete=False)
        rejected.append(Rejection(index, "; ".join(reasons)))
    notes: list[str] = []
    if evidence.reexecution is not None:
        attached = {path: base64.b64decode(content) for path, content in evidence.reexecution.files.items()}
        notes = _differences(f"{party}'s", attached, first.files, complete=True) or [
            f"{party}'s run matches the arbiter's re-execution"
        ]
    by_root = {i for i, rep in _ruled(facts) if rep.output_root == valid_root}
    return Decision(
        facts.job,
        facts.shard,
        valid_root,
        tuple(upheld),
        tuple(rejected),
        roots,
        tuple(notes),
        by_mask=set(upheld) != by_root,
    )


def decide_each(
    facts: ChainFacts,
    runs: Mapping[bytes, Sequence[Reexecution]],
    evidence: Evidence | None = None,
    party: str = "the caller",
    rules: ResultVerification | None = None,
    results: dict[int, dict[str, bytes]] | None = None,
) -> Decision:
    """Rule 6 when replicas may have resumed from checkpoints: `runs` are the arbiter's runs
    from each resume point of the replicas under ruling (`resume_groups`), and each replica is
    judged (`decide`) against the runs from its own point. One point: that ruling. Several:
    the ruling goes replica by replica (a valid root cannot speak for replicas given different
    checkpoints); its `valid_root` is the first point's and it is reproducible when every
    point's runs are; notes say which point they are about."""
    groups = resume_groups(facts)
    if set(runs) != set(groups):
        raise ValueError("the arbiter's runs must be from exactly the resume points of the replicas under ruling")
    decided = [
        (point, decide(group(facts, groups[point]), runs[point], evidence, party, rules, results)) for point in groups
    ]
    parts = tuple(Part(point, groups[point], d.valid_root, d.runs) for point, d in decided)
    points = tuple(point for point, d in decided for _ in d.runs)
    if len(decided) == 1:
        return replace(decided[0][1], resume_points=points, parts=parts)
    valid_root = decided[0][1].valid_root
    return Decision(
        facts.job,
        facts.shard,
        valid_root,
        tuple(sorted(i for _, d in decided for i in d.upheld)),
        tuple(sorted((r for _, d in decided for r in d.rejected), key=lambda r: r.replica)),
        tuple(root for _, d in decided for root in d.runs),
        tuple(f"{_from(point)}: {note}" for point, d in decided for note in d.notes),
        by_mask=True,
        resume_points=points,
        parts=parts,
    )


# ---------------------------------------------------------------- chain, Docker and the audit log


def reexecute(
    reexecutor: Reexecutor,
    facts: ChainFacts,
    rules: ResultVerification | None = None,
    results: dict[int, dict[str, bytes]] | None = None,
    resume: bytes = NO_RESUME,
) -> tuple[Reexecution, ...]:
    """Rule 5: the arbiter's own run of the shard from checkpoint `resume` (zero: from
    scratch), and a second one when the first agrees with no replica (a reproducibility check)."""
    args = (facts.manifest_hash, facts.shard, facts.shard_count, facts.gpu_count)
    try:
        first = reexecutor.run(*args, resume_point=resume)
        if not needs_second_run(facts, first, rules, results):
            return (first,)
        return first, reexecutor.run(*args, resume_point=resume)
    except ReexecutionError as error:
        raise Refused(
            503,
            "re-execution",
            f"the arbiter could not re-execute job {facts.job} shard {facts.shard} {_from(resume)}: {error}",
        ) from None


def reexecute_each(
    reexecutor: Reexecutor,
    facts: ChainFacts,
    rules: ResultVerification | None = None,
    results: dict[int, dict[str, bytes]] | None = None,
) -> dict[bytes, tuple[Reexecution, ...]]:
    """Rule 5 per resume point of the replicas under ruling: the runs each is judged by."""
    return {
        point: reexecute(reexecutor, group(facts, indices), rules, results, point)
        for point, indices in resume_groups(facts).items()
    }


class AuditLog:
    """Append-only JSON lines; each line is on disk before `append` returns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as f:
                # A line torn by a crash is ended first, so it cannot swallow this one.
                if f.seek(0, os.SEEK_END) > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                f.write(line.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())

    def entries(self) -> list[dict[str, Any]]:
        """Every complete entry, oldest first; a torn line (a crash mid-write) is skipped."""
        with self._lock:
            if not self.path.exists():
                return []
            text = self.path.read_text(encoding="utf-8")
        entries = []
        for line in text.splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return entries


class Cursor:
    """Where the arbiter's watch is: its `DisputeOpened` cursor (computenet.follow) and the
    disputes found but not yet ruled on, kept together in a JSON file (none: in memory)
    replaced atomically, so a restart neither scans the chain again nor forgets a dispute."""

    def __init__(self, path: Path | None) -> None:
        self.store = JsonCursor(path) if path else MemoryCursor()
        self.pending: set[tuple[int, int]] = {
            (int(job), int(shard)) for job, shard in self.store.data.get("pending", [])
        }

    def advance(self, follower: Follower, batch: Batch, found: set[tuple[int, int]]) -> None:
        self.pending |= found
        follower.commit(batch, {"pending": sorted(self.pending)})

    def close(self, dispute: tuple[int, int]) -> None:
        self.pending.discard(dispute)
        block = self.store.load()
        if block is not None:  # a dispute is only pending once a range was committed
            self.store.save(block, {"pending": sorted(self.pending)})


class Arbiter:
    """Reads a disputed shard's facts, re-executes it, decides, sends the ruling from the
    facilitator key and logs every decision; `run_once` finds open disputes by itself."""

    def __init__(
        self,
        market: Market,
        sender: Sender,
        audit_log: Path,
        reexecutor: Reexecutor,
        state: Path | None = None,
        start_block: int | None = None,
        retry_seconds: float = 60,
        outputs: Any = None,
    ) -> None:
        """
        @param market The market's reader (computenet.market.Market, over the facilitator's web3).
        @param sender The facilitator key (a JobMarket facilitator).
        @param audit_log The JSON-lines file every decision is appended to.
        @param reexecutor Runs shards again (its Docker engine and content store).
        @param state The watch's cursor file (None: kept in memory).
        @param start_block The first block the watch scans when it has no cursor yet (default: the deployment block).
        @param retry_seconds How long the watch waits before trying again a dispute it could not rule on.
        @param outputs Fetches replicas' whole results from their agents (computenet.outputs.OutputsClient),
               for manifests whose comparator has a tolerance; None: only results a request attaches.
        """
        self.market = market
        self.sender = sender
        self.log = AuditLog(audit_log)
        self.reexecutor = reexecutor
        self.cursor = Cursor(state)
        self.follower = Follower(
            market, self.cursor.store, roles=("market",), names=("DisputeOpened",), start_block=start_block
        )
        self.retry_seconds = retry_seconds
        self.outputs = outputs
        self._retry_at: dict[tuple[int, int], float] = {}
        # One arbitration at a time: the log follows the chain's order, and a second ruling
        # on the same shard reads the first one's outcome instead of racing it.
        self._lock = threading.Lock()

    def facts(self, job: int, shard: int) -> ChainFacts:
        """The shard's replicas, roots, agents and the job's terms, all read at one block."""
        at = self.market.head()
        record = self.market.job(job, block=at)
        if record is None:
            raise Refused(404, "open-dispute", f"job {job} does not exist")
        req = record.requirements
        if shard >= req.shard_count:
            raise Refused(404, "open-dispute", f"job {job} has no shard {shard} (it has {req.shard_count})")
        replicas = self.market.replicas(job, ((shard, r) for r in range(req.replication)), block=at)
        agents = {rep.asset: self.market.agent_of(rep.asset, block=at) for rep in replicas if rep.asset}
        points = tuple(
            self.market.checkpoint(job, shard, rep.index, block=at).resume_point
            if rep.state in UNDER_RULING
            else NO_RESUME
            for rep in replicas
        )
        return ChainFacts(
            self.market.chain_id,
            self.market.addresses["market"],
            job,
            shard,
            record.manifest_hash,
            req.max_gpu_seconds,
            tuple(replicas),
            agents,
            req.shard_count,
            req.gpu_count,
            points,
        )

    def arbitrate(self, evidence: Evidence, caller: str | None = None, *, unsigned: str = "") -> dict[str, Any]:
        """Rules on the request's shard and sends the ruling; raises Refused (logged) when it
        cannot. `caller` is the request's signer, `unsigned` why a request has none (rule 2
        refuses it); neither: a trusted in-process call."""
        if unsigned:
            # Refused before any chain read or wait for the lock: an unsigned request costs a log line.
            refusal = Refused(401, "caller", unsigned)
            self._log_refusal(_base(evidence, "request"), refusal, ["caller"])
            raise refusal
        with self._lock:
            return self._arbitrate(evidence, "request" if caller else "call", caller)

    def _arbitrate(
        self, evidence: Evidence, trigger: str, caller: str | None = None, facts: ChainFacts | None = None
    ) -> dict[str, Any]:
        base = _base(evidence, trigger, caller)
        heard = caller is not None  # only a request is checked against rule 2

        def applied(rules: Sequence[str]) -> list[str]:
            return [rule for rule in rules if heard or rule != "caller"]

        runs: tuple[Reexecution, ...] = ()
        try:
            facts = facts or self.facts(evidence.job, evidence.shard)
            check_open(facts)
            party = self._check_caller(caller, facts) if heard else "the caller"
            check_receipts(evidence, facts)
            check_proofs(evidence, facts)
            results = check_results(evidence, facts)
            rules = self._rules(facts)
            results = self._fetch_results(facts, rules, results)
            by_point = reexecute_each(self.reexecutor, facts, rules, results)
            runs = tuple(run for point_runs in by_point.values() for run in point_runs)
            decision = decide_each(facts, by_point, evidence, party, rules, results)
            try:
                receipt, revealed = self._send_ruling(decision, facts)
            except ContractRevert as error:
                # The read and the send are two moments: another facilitator may have ruled between them
                # (409). A key the market does not take as a facilitator is this service's fault (503).
                conflict = isinstance(error, (JobMarketError, DisputeCourtError)) and error.reason != NOT_FACILITATOR
                status = 409 if conflict else 503
                raise Refused(status, "ruling", f"the chain refused the ruling: {error.reason}") from None
        except Refused as refusal:
            self._log_refusal(base, refusal, applied(refusal.rules), runs)
            raise
        answer = base | _answer(decision) | {"transaction": _hex_of(receipt["transactionHash"])}
        self.log.append(
            _stamp(
                answer
                | _runs(runs)
                | ({"revealed": revealed} if revealed else {})
                | {"rules": applied(RULES), "decision": "resolved", "block": receipt["blockNumber"]}
            )
        )
        keys = (
            "job",
            "shard",
            "valid_root",
            "reproducible",
            "runs",
            "upheld",
            "rejected",
            "notes",
            "ruling",
            "rejected_mask",
            "transaction",
        )
        return {key: answer[key] for key in keys}

    def _log_refusal(
        self, base: dict[str, Any], refusal: Refused, rules: list[str], runs: Sequence[Reexecution] = ()
    ) -> None:
        self.log.append(
            _stamp(
                base
                | _runs(runs)
                | {
                    "rules": rules,
                    "decision": "refused",
                    "status": refusal.status,
                    "rule": refusal.rule,
                    "reason": refusal.reason,
                }
            )
        )

    def _send_ruling(self, decision: Decision, facts: ChainFacts) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The ruling on chain at the dispute court (facilitators only, before the ruling
        deadline): by its valid root (the zero root: every submitted result stands), or, when
        the outcome is not "the replicas with that root stand", by the mask of rejected replicas.
        A ruling by a valid root first reveals the roots it needs (`_reveal_roots`). Returns the
        ruling's receipt and the reveals sent, each {replica, transaction}."""
        court = self.market.calls.court.functions
        if decision.by_mask:
            return self.sender.send(court.resolve_replicas(decision.job, decision.shard, decision.rejected_mask)), []
        revealed = self._reveal_roots(facts) if decision.valid_root != ZERO_ROOT else []
        return self.sender.send(court.resolve(decision.job, decision.shard, decision.valid_root)), revealed

    def _reveal_roots(self, facts: ChainFacts) -> list[dict[str, Any]]:
        """Puts on chain (DisputeCourt.reveal_result, which anyone may send) the root of each
        replica under ruling that the market recorded in a batch (JobMarket.submit_results keeps
        one commitment per batch, not each root): the court refuses a ruling by root while a
        live result's root is not on chain. `Market.batched_result` finds the result and its
        batch in the logs of the transaction that recorded it (None: its root is on chain)."""
        court = self.market.calls.court.functions
        revealed = []
        for index, rep in enumerate(facts.replicas):
            if rep.state not in UNDER_RULING:
                continue
            found = self.market.batched_result(facts.job, facts.shard, index)
            if found is None:
                continue
            receipt = self.sender.send(court.reveal_result(*found))
            revealed.append({"replica": index, "transaction": _hex_of(receipt["transactionHash"])})
            log.info(
                "result root revealed",
                extra={"fields": {"job": facts.job, "shard": facts.shard, "replica": index}},
            )
        return revealed

    def _rules(self, facts: ChainFacts) -> ResultVerification:
        """The job manifest's verification section (rule 5: the manifest must be in the store)."""
        try:
            return self.reexecutor.manifest(facts.manifest_hash).verification
        except ReexecutionError as error:
            raise Refused(
                503, "re-execution", f"the arbiter could not re-execute job {facts.job} shard {facts.shard}: {error}"
            ) from None

    def _fetch_results(
        self, facts: ChainFacts, rules: ResultVerification, results: dict[int, dict[str, bytes]]
    ) -> dict[int, dict[str, bytes]]:
        """With a tolerant comparator, the whole results of the replicas under ruling that no
        request attached, from their agents' outputs services (when configured); a replica
        whose result cannot be had is judged by its root alone."""
        if rules.compare == "exact" or self.outputs is None:
            return results
        found = dict(results)
        for index, rep in _ruled(facts):
            if index in found:
                continue
            try:
                found[index] = self.outputs.result(rep.asset, facts.job, facts.shard, index, rep.output_root)
            except Exception as error:  # an agent down or refusing: its root alone speaks for it
                log.warning(
                    "replica result unavailable",
                    extra={"fields": {"job": facts.job, "shard": facts.shard, "replica": index, "error": str(error)}},
                )
        return found

    def _check_caller(self, caller: str, facts: ChainFacts) -> str:
        """Rule 2: only those with a stake or a bond in the shard are heard; returns who the caller is to it."""
        who = caller.lower()
        if who == self.market.challenger(facts.job, facts.shard).lower():
            return "the challenger"
        if who == self.market.job(facts.job).client.lower():
            return "the job's client"
        for rep in facts.replicas:
            if rep.asset and who == self.market.owner_of(rep.asset).lower():
                return f"asset {rep.asset}'s owner"
        if self.market.keeper_id(caller) is not None:
            return "a keeper"
        raise Refused(
            403,
            "caller",
            f"{caller} is neither job {facts.job}'s client, the challenger, an owner of the "
            "shard's assets nor an active keeper",
        )

    # ------------------------------------------------------------ the watch

    def run_once(self) -> list[dict[str, Any]]:
        """Scans the blocks since the cursor for `DisputeOpened` and rules on every dispute
        still open, found now or earlier; returns the rulings made. A dispute it cannot rule
        on now (rule 5, or the chain refusing for a passing reason) is tried again after
        `retry_seconds`; one resolved meanwhile is dropped without a log line."""
        while (batch := self.follower.poll()) is not None:
            self.cursor.advance(self.follower, batch, {(int(e.job), int(e.shard)) for e in batch.events})
        rulings = []
        for dispute in sorted(self.cursor.pending):
            if self._retry_at.get(dispute, 0.0) > time.monotonic():
                continue
            with self._lock:
                facts = self.facts(*dispute)
                if not is_open(facts):
                    self.cursor.close(dispute)  # ruled on meanwhile (a request, another facilitator)
                    continue
                try:
                    rulings.append(self._arbitrate(Evidence(job=dispute[0], shard=dispute[1]), "watch", facts=facts))
                except Refused as refusal:
                    if refusal.status >= 500:
                        self._retry_at[dispute] = time.monotonic() + self.retry_seconds
                        log.warning(
                            "dispute not ruled on yet",
                            extra={"fields": {"job": dispute[0], "shard": dispute[1], "reason": str(refusal)}},
                        )
                        continue
            self._retry_at.pop(dispute, None)
            self.cursor.close(dispute)
        return rulings

    @property
    def chain_id(self) -> int:
        return self.market.chain_id

    def entries(self) -> list[dict[str, Any]]:
        """The audit log, oldest first."""
        return self.log.entries()


def _answer(decision: Decision) -> dict[str, Any]:
    return {
        "ruling": "resolve_replicas" if decision.by_mask else "resolve",
        "rejected_mask": decision.rejected_mask,
        "valid_root": _hex_of(decision.valid_root),
        "reproducible": decision.reproducible,
        "runs": [_hex_of(root) for root in decision.runs],
        "upheld": list(decision.upheld),
        "rejected": [{"replica": r.replica, "reason": r.reason} for r in decision.rejected],
        "notes": list(decision.notes),
        "parts": [
            {
                "resume_point": _hex_of(part.resume_point),
                "replicas": list(part.replicas),
                "valid_root": _hex_of(part.valid_root),
                "runs": [_hex_of(root) for root in part.runs],
            }
            for part in decision.parts
        ],
    }


def _runs(runs: Sequence[Reexecution]) -> dict[str, Any]:
    """The audit log's record of the arbiter's runs: each root, and the first one's files."""
    if not runs:
        return {}
    return {
        "computed_root": _hex_of(runs[0].root),
        "runs": [_hex_of(run.root) for run in runs],
        "run_resume_points": [_hex_of(run.resume_point) for run in runs],
        "arbiter_files": {path: _sha256(data) for path, data in sorted(runs[0].files.items())},
    }


def _base(evidence: Evidence, trigger: str, caller: str | None = None) -> dict[str, Any]:
    """What every audit line says about the request."""
    base = {
        "job": evidence.job,
        "shard": evidence.shard,
        "trigger": trigger,
        "evidence_sha256": evidence_sha256(evidence),
        "attachments": attachments(evidence),
    }
    return base | ({"caller": caller} if caller else {})


def _stamp(entry: dict[str, Any]) -> dict[str, Any]:
    return {"time": datetime.now(UTC).isoformat(timespec="milliseconds")} | entry


# ---------------------------------------------------------------- HTTP


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _headers(request: Request) -> Any:
    return request.headers


def sign(private_key: Any, chain_id: int, facilitator: str, body: bytes, validity: int = 60) -> dict[str, str]:
    """Headers that authorise POSTing `body` to `facilitator`'s /disputes (rule 2)."""
    target = f"POST /disputes {hashlib.sha256(body).hexdigest()}"
    return signed_requests.sign_request(private_key, SCOPE, chain_id, facilitator, target, validity)


def router(arbiter: Arbiter) -> APIRouter:
    """POST /disputes and GET /disputes over `arbiter`. Handlers are plain `def`, so FastAPI runs
    their blocking web3 and Docker calls in its threadpool."""
    api = APIRouter()

    @api.post("/disputes")
    def post_dispute(body: bytes = Depends(_raw_body), headers: Any = Depends(_headers)) -> dict:
        try:
            evidence = Evidence.model_validate_json(body)
        except ValidationError as error:
            raise HTTPException(
                422, error.errors(include_url=False, include_context=False, include_input=False)
            ) from None
        target = f"POST /disputes {hashlib.sha256(body).hexdigest()}"
        try:
            who, unsigned = (
                signed_requests.caller(headers, SCOPE, arbiter.chain_id, arbiter.sender.address, target, time.time()),
                "",
            )
        except HTTPException as error:  # refused by rule 2, after rule 1, and logged
            who, unsigned = None, str(error.detail)
        try:
            return arbiter.arbitrate(evidence, who, unsigned=unsigned)
        except Refused as refusal:
            raise HTTPException(refusal.status, str(refusal)) from None

    @api.get("/disputes")
    def get_disputes() -> list[dict]:
        return arbiter.entries()

    return api
