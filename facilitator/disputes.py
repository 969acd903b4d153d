"""Dispute arbitration: the facilitator rules on a disputed shard from execution evidence,
calls `JobMarket.resolve` and keeps an append-only audit log of every decision.

    POST /disputes   evidence (below) -> {job, shard, valid_root, upheld, rejected, transaction}
    GET  /disputes   the audit log's entries, most recent last

A dispute is open when some replica of the shard is DISPUTED: a verifier challenged it
(posting a bond) or the replicas of a replicated shard submitted different roots.

Evidence (JSON; hex is 0x-prefixed, file contents are base64):

    {
      "job": 7, "shard": 0,
      "receipts": [                   # optional: replicas' signed ExecutionReceipts
        {"replica": 1, "output_root": "0x<32 bytes>", "gpu_seconds": 1000, "exit_code": 0,
         "signature": "0x<65 bytes r ‖ s ‖ v>"}
      ],
      "proofs": [                     # optional: files proven to be in a replica's result
        {"replica": 1, "path": "out/result.txt", "content": "<base64>", "proof": ["0x<32 bytes>", ...]}
      ],
      "reexecution": {                # needed for a ruling: the shard run again, as the agent commits it
        "files": {"out/result.txt": "<base64>", "log/container.log": "<base64>"}
      }
    }

The rules, applied in this order; the first one broken refuses the evidence, nothing is sent
and the refusal is logged (the HTTP detail is "rule N (name): what is wrong"):

  1. open-dispute: the job and shard must exist (else 404) and the shard must have an open
     dispute on chain, some replica in state DISPUTED (else 409).
  2. caller: the request must be signed (computenet.signed_requests: scope "disputes", the
     facilitator's address, request "POST /disputes <sha256 of the body>") by the job's
     client, the shard's challenger, an active keeper or the owner of one of the shard's
     assets: those with a stake in the ruling or a bond. Else 401 (unsigned) or 403.
  3. receipts: every receipt must be the one the chain holds for a replica under ruling
     (SUBMITTED or DISPUTED): its output root is the replica's on-chain root, its GPU-seconds
     capped at the job's maximum are the chain's metering, and its EIP-712 signature over the
     replica's current lease and asset and the job's manifest recovers to the asset's agent
     (`ComputeAsset.agentOf`). Else 400 naming the receipt and what is wrong.
  4. proofs: every Merkle proof must link its file to its replica's on-chain root, with the
     leaf and node hashing `JobMarket.verify_output` uses (computenet.merkle) — a replica
     under ruling again. Else 400 naming the proof.
  5. re-execution: the evidence must carry a re-execution, laid out as the agent commits a
     result (leaves `out/<path>` and the log `log/container.log`, which is required). Receipts
     and proofs only show what replicas committed to, never which commitment is right, so
     without one the facilitator refuses: 400 "evidence needs a re-execution".
  6. ruling: `valid_root` is the Merkle root of the re-execution's files, computed with the
     code the agent commits with (computenet.merkle.MerkleTree). Every replica under ruling
     whose root equals it is upheld; every other one is rejected (the chain slashes it and
     reopens it), and none upheld when none matches. A rejected replica's reason names each
     proven file of it that differs from, or is missing in, the re-execution; otherwise that
     its root is not the re-execution's. A chain that refuses the ruling is logged too (409
     when the market refused it, e.g. the dispute was resolved meanwhile; 503 otherwise).

Trust: the facilitator does not run the container itself; the re-execution is taken as the
truth. Rule 2 limits who may bring it to those with a stake or a bond in the shard, and the
audit log names the caller of every decision.

Audit log: one JSON line per decision, written with flush and fsync: time (UTC, ISO 8601),
job, shard, evidence_sha256 (of the evidence's canonical JSON: keys sorted, no spaces, as
parsed, defaults included), rules (the names applied, in order), decision ("resolved" or
"refused"), then valid_root, upheld, rejected, transaction and block, or status, rule and
reason. A resolution is also traceable from the chain alone by its `DisputeResolved` event;
the transaction hash links the two.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from web3.exceptions import ContractLogicError

from computenet import signed_requests
from computenet.domain import MAX_REPLICATION, Replica, ReplicaState
from computenet.errors import ContractRevert, InvalidSignature, JobMarketError
from computenet.merkle import MAX_PROOF_DEPTH, MerkleTree, leaf, verify
from computenet.receipts import ExecutionReceipt
from computenet.web3calls import Sender, contract
from agent.execute import LOG_LEAF, OUTPUT_PREFIX

RULES = ("open-dispute", "caller", "receipts", "proofs", "re-execution", "ruling")
SCOPE = "disputes"  # of the signed requests (computenet.signed_requests)
# The replicas `resolve` rules on: the disputed ones and those submitted beside them.
UNDER_RULING = (ReplicaState.SUBMITTED, ReplicaState.DISPUTED)

# ---------------------------------------------------------------- evidence


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


class Reexecution(BaseModel):
    """The shard run again: leaf path -> content, as the agent commits a result."""

    files: dict[str, Base64]


class Evidence(BaseModel):
    """The body of POST /disputes."""

    job: int = Field(ge=1)
    shard: int = Field(ge=0)
    receipts: list[ReceiptEvidence] = []
    proofs: list[ProofEvidence] = []
    reexecution: Reexecution | None = None


def evidence_sha256(evidence: Evidence) -> str:
    """sha256 of the evidence's canonical JSON (keys sorted, compact, UTF-8), 0x-prefixed."""
    canonical = json.dumps(evidence.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "0x" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


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


@dataclass(frozen=True)
class Rejection:
    replica: int
    reason: str


@dataclass(frozen=True)
class Decision:
    """A ruling: `valid_root` for `resolve`, and what the chain will do to each replica under ruling."""

    job: int
    shard: int
    valid_root: bytes
    upheld: tuple[int, ...]
    rejected: tuple[Rejection, ...]


class Refused(Exception):
    """Evidence refused by a rule; `status` is the HTTP status to answer."""

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


def _under_ruling(facts: ChainFacts, index: int, what: str, rule: str) -> Replica:
    if index >= len(facts.replicas):
        raise Refused(400, rule, f"{what}: job {facts.job} has {len(facts.replicas)} replicas per shard")
    rep = facts.replicas[index]
    if rep.state not in UNDER_RULING:
        raise Refused(400, rule, f"{what}: replica {index} is {ReplicaState(rep.state).name}, not under ruling")
    return rep


def _check_receipts(evidence: Evidence, facts: ChainFacts) -> None:
    for i, item in enumerate(evidence.receipts):
        what = f"receipt {i} (replica {item.replica})"
        rep = _under_ruling(facts, item.replica, what, "receipts")
        root = _bytes(item.output_root)
        if root != rep.output_root:
            raise Refused(400, "receipts", f"{what}: its output root {item.output_root} is not the replica's "
                                           f"on-chain root {_hex_of(rep.output_root)}")  # fmt: skip
        # The chain stores the metering capped at the job's maximum.
        if min(item.gpu_seconds, facts.max_gpu_seconds) != rep.gpu_seconds:
            raise Refused(400, "receipts", f"{what}: it meters {item.gpu_seconds} GPU-seconds, the chain "
                                           f"recorded {rep.gpu_seconds}")  # fmt: skip
        receipt = ExecutionReceipt(job=facts.job, shard=facts.shard, replica=item.replica, lease=rep.lease,
                                   asset=rep.asset, manifest=facts.manifest_hash, output_root=root,
                                   gpu_seconds=item.gpu_seconds, exit_code=item.exit_code)  # fmt: skip
        try:
            signer = receipt.recover(_bytes(item.signature), facts.chain_id, facts.market)
        except InvalidSignature as error:
            raise Refused(400, "receipts", f"{what}: its signature is invalid: {error}") from None
        agent = facts.agents.get(rep.asset, "")
        if signer.lower() != agent.lower():
            # A signature over other fields recovers some unrelated key, so this is also
            # what a receipt altered after signing looks like.
            raise Refused(400, "receipts", f"{what}: its signature recovers {signer}, not asset {rep.asset}'s "
                                           f"agent {agent}")  # fmt: skip


def _check_proofs(evidence: Evidence, facts: ChainFacts) -> None:
    for i, item in enumerate(evidence.proofs):
        what = f"proof {i} ({item.path!r} of replica {item.replica})"
        rep = _under_ruling(facts, item.replica, what, "proofs")
        file_leaf = leaf(item.path, base64.b64decode(item.content))
        if not verify([_bytes(p) for p in item.proof], rep.output_root, file_leaf):
            raise Refused(400, "proofs", f"{what}: it does not lead to the replica's on-chain root "
                                         f"{_hex_of(rep.output_root)}")  # fmt: skip


def _reexecuted_files(evidence: Evidence) -> dict[str, bytes]:
    if evidence.reexecution is None:
        raise Refused(400, "re-execution", "evidence needs a re-execution: receipts and proofs show what the "
                                           "replicas committed to, not which result is right")  # fmt: skip
    files = {path: base64.b64decode(content) for path, content in evidence.reexecution.files.items()}
    for path in files:
        if path != LOG_LEAF and not (path.startswith(OUTPUT_PREFIX) and len(path) > len(OUTPUT_PREFIX)):
            raise Refused(400, "re-execution", f"re-execution file {path!r} is not a result leaf: the agent "
                                               f"commits {OUTPUT_PREFIX}<path> and {LOG_LEAF}")  # fmt: skip
    if LOG_LEAF not in files:
        raise Refused(400, "re-execution", f"the re-execution lacks {LOG_LEAF}, which every result commits")
    return files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rejection(index: int, rep: Replica, evidence: Evidence, files: dict[str, bytes], valid_root: bytes) -> Rejection:
    differences = []
    for item in evidence.proofs:
        if item.replica != index:
            continue
        content = base64.b64decode(item.content)
        if item.path not in files:
            differences.append(f"{item.path} is in its result but not in the re-execution")
        elif files[item.path] != content:
            differences.append(f"{item.path} differs from the re-execution (sha256 {_sha256(content)}, "
                               f"re-executed {_sha256(files[item.path])})")  # fmt: skip
    if differences:
        return Rejection(index, "; ".join(dict.fromkeys(differences)))
    return Rejection(index, f"its root {_hex_of(rep.output_root)} is not the re-execution's {_hex_of(valid_root)}")


def decide(evidence: Evidence, facts: ChainFacts) -> Decision:
    """The ruling on `facts`' shard from `evidence` under rules 1-5; raises Refused naming the broken rule."""
    if not any(rep.state == ReplicaState.DISPUTED for rep in facts.replicas):
        raise Refused(409, "open-dispute", f"job {facts.job} shard {facts.shard} has no open dispute")
    _check_receipts(evidence, facts)
    _check_proofs(evidence, facts)
    files = _reexecuted_files(evidence)
    valid_root = MerkleTree.from_files(files).root  # what the agent's execute.collect commits
    upheld: list[int] = []
    rejected: list[Rejection] = []
    for index, rep in enumerate(facts.replicas):
        if rep.state not in UNDER_RULING:
            continue
        if rep.output_root == valid_root:
            upheld.append(index)
        else:
            rejected.append(_rejection(index, rep, evidence, files, valid_root))
    return Decision(facts.job, facts.shard, valid_root, tuple(upheld), tuple(rejected))


# ---------------------------------------------------------------- chain and audit log


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


class Arbiter:
    """Reads a disputed shard's facts, decides, sends `resolve` from the facilitator key and logs it."""

    def __init__(self, web3: Any, sender: Sender, market: str, assets: str, audit_log: Path) -> None:
        """
        @param web3 A web3 instance on the market's chain.
        @param sender The facilitator key (a JobMarket facilitator).
        @param market The JobMarket address.
        @param assets The ComputeAsset address.
        @param audit_log The JSON-lines file every decision is appended to.
        """
        self.web3 = web3
        self.sender = sender
        self.market = contract(web3, "JobMarket", market)
        self.assets = contract(web3, "ComputeAsset", assets)
        self.log = AuditLog(audit_log)
        # One arbitration at a time: the log follows the chain's order, and a second ruling
        # on the same shard reads the first one's outcome instead of racing it.
        self._lock = threading.Lock()

    def facts(self, job: int, shard: int) -> ChainFacts:
        """The shard's replicas, roots, agents and the job's terms, all read at one block."""
        at = {"block_identifier": self.web3.eth.block_number}
        calls = self.market.functions
        if not 1 <= job <= calls.job_count().call(**at):
            raise Refused(404, "open-dispute", f"job {job} does not exist")
        record = calls.job(job).call(**at)
        manifest_hash, requirements = record[3], record[4]
        max_gpu_seconds, shard_count, replication = requirements[3], requirements[5], requirements[6]
        if shard >= shard_count:
            raise Refused(404, "open-dispute", f"job {job} has no shard {shard} (it has {shard_count})")
        replicas = [Replica.from_chain(job, shard, r, calls.replica(job, shard, r).call(**at),
                                       calls.output_root(job, shard, r).call(**at)) for r in range(replication)]  # fmt: skip
        agents = {rep.asset: self.assets.functions.agentOf(rep.asset).call(**at) for rep in replicas if rep.asset}
        return ChainFacts(self.web3.eth.chain_id, self.market.address, job, shard, bytes(manifest_hash),
                          max_gpu_seconds, tuple(replicas), agents)  # fmt: skip

    def arbitrate(self, evidence: Evidence, caller: str | None = None) -> dict[str, Any]:
        """Rules on the evidence's shard and resolves it on chain; raises Refused (logged) when it
        cannot. `caller` is the request's signer (None: a trusted in-process call)."""
        base = {"job": evidence.job, "shard": evidence.shard, "evidence_sha256": evidence_sha256(evidence)}
        if caller is not None:
            base["caller"] = caller
        with self._lock:
            try:
                facts = self.facts(evidence.job, evidence.shard)
                if caller is not None:
                    self._check_caller(caller, facts)
                decision = decide(evidence, facts)
                try:
                    receipt = self.sender.send(self.market.functions.resolve(evidence.job, evidence.shard,
                                                                             decision.valid_root))  # fmt: skip
                except ContractRevert as error:
                    # The read and the send are two moments: another facilitator may have ruled between them.
                    status = 409 if isinstance(error, JobMarketError) else 503
                    raise Refused(status, "ruling", f"the chain refused the ruling: {error.reason}") from None
            except Refused as refusal:
                self.log.append(_stamp(base | {"rules": refusal.rules, "decision": "refused", "status": refusal.status,
                                               "rule": refusal.rule, "reason": refusal.reason}))  # fmt: skip
                raise
            answer = base | _answer(decision) | {"transaction": _hex_of(receipt["transactionHash"])}
            self.log.append(_stamp(answer | {"rules": list(RULES), "decision": "resolved",
                                             "block": receipt["blockNumber"]}))  # fmt: skip
        return {key: answer[key] for key in ("job", "shard", "valid_root", "upheld", "rejected", "transaction")}

    def _check_caller(self, caller: str, facts: ChainFacts) -> None:
        """Rule 2: only those with a stake or a bond in the shard may bring evidence."""
        calls = self.market.functions
        allowed = {str(calls.job(facts.job).call()[0]).lower(), str(calls.challenge_of(facts.job, facts.shard).call()[0]).lower()}
        allowed |= {str(self.assets.functions.ownerOf(rep.asset).call()).lower() for rep in facts.replicas if rep.asset}
        if caller.lower() in allowed:
            return
        keepers = contract(self.web3, "KeeperRegistry", calls.KEEPERS().call())
        try:
            keepers.functions.active_keeper_id(caller).call()  # reverts for all but active keepers
            return
        except ContractLogicError:
            pass
        raise Refused(403, "caller", f"{caller} is neither job {facts.job}'s client, the challenger, an owner of the "
                                     "shard's assets nor an active keeper")  # fmt: skip

    @property
    def chain_id(self) -> int:
        return self.web3.eth.chain_id

    def entries(self) -> list[dict[str, Any]]:
        """The audit log, oldest first."""
        return self.log.entries()


def _answer(decision: Decision) -> dict[str, Any]:
    return {
        "valid_root": _hex_of(decision.valid_root),
        "upheld": list(decision.upheld),
        "rejected": [{"replica": r.replica, "reason": r.reason} for r in decision.rejected],
    }


def _stamp(entry: dict[str, Any]) -> dict[str, Any]:
    return {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")} | entry


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
    their blocking web3 calls in its threadpool."""
    api = APIRouter()

    @api.post("/disputes")
    def post_dispute(body: bytes = Depends(_raw_body), headers: Any = Depends(_headers)) -> dict:
        target = f"POST /disputes {hashlib.sha256(body).hexdigest()}"
        who = signed_requests.caller(headers, SCOPE, arbiter.chain_id, arbiter.sender.address, target, time.time())
        try:
            evidence = Evidence.model_validate_json(body)
        except ValidationError as error:
            raise HTTPException(422, error.errors(include_url=False, include_context=False, include_input=False)) from None
        try:
            return arbiter.arbitrate(evidence, who)
        except Refused as refusal:
            raise HTTPException(refusal.status, str(refusal)) from None

    @api.get("/disputes")
    def get_disputes() -> list[dict]:
        return arbiter.entries()

    return api
