"""Dispute arbitration on the session chain: the facilitator's Arbiter reads a disputed shard,
rules from the evidence, sends `resolve` with the facilitator key and logs every decision.
Most cases go through POST /disputes (FastAPI's TestClient); results are checked against the
chain's own events, stakes and credits, and a refusal must leave the chain untouched."""

import base64
import hashlib
import json as _json
import json
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hexbytes import HexBytes

from computenet.domain import Replica, ReplicaState
from computenet.merkle import MerkleTree
from computenet.web3calls import Sender
from facilitator.disputes import RULES, Arbiter, AuditLog, ChainFacts, Evidence, Refused, decide, router, sign

TOKEN = 10**6
STAKE = 1_000 * TOKEN  # register_asset's default stake
GPU_SECONDS = 1_000  # the conftest `submit` factory's default metering
RESULT = "out/result.txt"

GOOD = {RESULT: b"42\n", "out/metrics/loss.csv": b"step,loss\n1,0.5\n", "log/container.log": b"epoch 1 done\n"}
BAD = {**GOOD, RESULT: b"41\n"}
WORSE = {**GOOD, RESULT: b"40\n"}


# ---------------------------------------------------------------- evidence helpers


def root_of(files: dict[str, bytes]) -> bytes:
    return MerkleTree.from_files(files).root


def hx(value: bytes) -> str:
    return "0x" + bytes(HexBytes(value)).hex()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def proof(files: dict[str, bytes], replica: int, path: str = RESULT) -> dict:
    """`path` of `files`, with its proof, claimed to be in `replica`'s result."""
    siblings = MerkleTree.from_files(files).proof(path)
    return {"replica": replica, "path": path, "content": b64(files[path]), "proof": [hx(p) for p in siblings]}


def evidence(job: int, receipts=(), proofs=(), files: dict[str, bytes] | None = GOOD) -> dict:
    """A complete body (every field given), so its canonical JSON is computable from it alone."""
    return {
        "job": job,
        "shard": 0,
        "receipts": list(receipts),
        "proofs": list(proofs),
        "reexecution": None if files is None else {"files": {path: b64(data) for path, data in files.items()}},
    }


def canonical_sha256(body: dict) -> str:
    return "0x" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.fixture
def receipt(sign_receipt):
    """A receipt for (job, 0, replica) signed by `signer`, as evidence."""

    def make(signer, job, replica, files, gpu_seconds=GPU_SECONDS, exit_code=0):
        root = root_of(files)
        signature = sign_receipt(signer, job, 0, replica, root, gpu_seconds, exit_code)
        return {"replica": replica, "output_root": hx(root), "gpu_seconds": gpu_seconds, "exit_code": exit_code,
                "signature": hx(signature)}  # fmt: skip

    return make


# ---------------------------------------------------------------- the service


@pytest.fixture
def arbiter(chain, market, assets, facilitator, tmp_path):
    web3 = chain.provider.web3
    sender = Sender(web3, facilitator.private_key)
    return Arbiter(web3, sender, market.address, assets.address, tmp_path / "audit" / "disputes.jsonl")


class SignedApi:
    """The HTTP layer; each POST is signed (rule 2), by the job's client unless told."""

    def __init__(self, http, arbiter, signer):
        self.http, self.arbiter, self.signer = http, arbiter, signer

    def post(self, path, json, signer=None, headers=None):
        body = _json.dumps(json).encode()
        if headers is None:
            headers = sign((signer or self.signer).private_key, self.arbiter.chain_id, self.arbiter.sender.address, body)
        return self.http.post(path, content=body, headers={"Content-Type": "application/json", **headers})

    def get(self, path):
        return self.http.get(path)


@pytest.fixture
def api(arbiter, client):
    app = FastAPI()
    app.include_router(router(arbiter))
    with TestClient(app) as http:
        yield SignedApi(http, arbiter, client)


@dataclass
class Dispute:
    job: int
    assets: list[int]  # by replica


@pytest.fixture
def mismatch(market, post_job, register_asset, provider2, agents, keeper, registered_keeper, submit):
    """A replication-2 job whose replicas disagree: replica 0 (agents[0]) committed GOOD,
    replica 1 (agents[1], provider2's asset) committed BAD, so a dispute opened by itself."""
    job = post_job(replication=2)
    honest = register_asset(agent_account=agents[0])
    cheat = register_asset(owner=provider2, agent_account=agents[1])
    market.assign(job, 0, honest, sender=keeper)
    market.assign(job, 0, cheat, sender=keeper)
    submit(agents[0], job, 0, 0, output_root=root_of(GOOD))
    submit(agents[1], job, 0, 1, output_root=root_of(BAD))
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.DISPUTED] * 2
    return Dispute(job, [honest, cheat])


def snapshot(chain, market, assets, facilitator, job, asset_ids, holders):
    """Everything a ruling would change; a refusal must leave it equal (and mine nothing)."""
    web3 = chain.provider.web3
    replicas = []
    for r in range(len(asset_ids)):
        rep = market.replica(job, 0, r)
        replicas.append((rep.state, rep.asset, rep.lease, rep.deadline, rep.since))
    return {
        "block": web3.eth.block_number,
        "facilitator_nonce": web3.eth.get_transaction_count(facilitator.address),
        "replicas": replicas,
        "challenge": tuple(market.challenge_of(job, 0)),
        "stakes": [assets.stake(a).amount for a in asset_ids],
        "credits": [market.credits(h) for h in holders],
    }


def only(receipt, event):
    logs = receipt.events.filter(event)
    assert len(logs) == 1, f"expected one {event.name}, got {len(logs)}"
    return logs[0]


# ================================================================ rulings


def test_replica_mismatch_upholds_the_replica_the_reexecution_matches(
    chain, market, assets, api, mismatch, receipt, agents, client, facilitator, keeper, register_asset, submit, params
):
    job, (honest, cheat) = mismatch.job, mismatch.assets
    body = evidence(job, receipts=[receipt(agents[0], job, 0, GOOD), receipt(agents[1], job, 1, BAD)],
                    proofs=[proof(GOOD, 0), proof(BAD, 1)], files=GOOD)  # fmt: skip
    credits_before = market.credits(client)

    response = api.post("/disputes", json=body)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"job", "shard", "valid_root", "upheld", "rejected", "transaction"}
    assert (answer["job"], answer["shard"], answer["valid_root"], answer["upheld"]) == (job, 0, hx(root_of(GOOD)), [0])
    assert [r["replica"] for r in answer["rejected"]] == [1]
    reason = answer["rejected"][0]["reason"]
    assert reason.startswith(f"{RESULT} differs from the re-execution")
    assert hashlib.sha256(BAD[RESULT]).hexdigest() in reason and hashlib.sha256(GOOD[RESULT]).hexdigest() in reason

    tx = chain.get_receipt(answer["transaction"])
    resolved = only(tx, market.DisputeResolved)
    assert (resolved.job, resolved.shard, resolved.facilitator) == (job, 0, facilitator.address)
    assert (resolved.valid_root, resolved.upheld, resolved.rejected) == (root_of(GOOD), 1, 1)
    slashed = STAKE * params.slash_bps // 10_000
    rejected = only(tx, market.ReplicaRejected)
    assert (rejected.replica, rejected.asset, rejected.slashed) == (1, cheat, slashed)
    assert assets.stake(cheat).amount == STAKE - slashed
    assert assets.stake(honest).amount == STAKE
    assert market.credits(client) - credits_before == slashed  # a mismatch's slash goes to the client
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.SUBMITTED, ReplicaState.OPEN]

    # The reopened replica runs again elsewhere; with it the shard finalizes, the upheld result included.
    third = register_asset(agent_account=agents[2])
    market.assign(job, 0, third, sender=keeper)
    submit(agents[2], job, 0, 1, output_root=root_of(GOOD))
    chain.mine(deltatime=params.challenge_window + 1)
    finalized = market.finalize(job, 0, sender=keeper).events.filter(market.ShardFinalized)
    assert [(ev.replica, ev.asset) for ev in finalized] == [(0, honest), (1, third)]


def test_challenge_rejects_every_replica_when_the_reexecution_matches_none(
    market, assets, arbiter, post_job, register_asset, provider2, agents, keeper, registered_keeper, submit,
    verifier, params, chain,
):  # fmt: skip
    """Both replicas agree on BAD; a verifier challenges; its re-execution (GOOD) matches neither."""
    job = post_job(replication=2)
    ids = [register_asset(agent_account=agents[0]), register_asset(owner=provider2, agent_account=agents[1])]
    for asset_id in ids:
        market.assign(job, 0, asset_id, sender=keeper)
    submit(agents[0], job, 0, 0, output_root=root_of(BAD))
    submit(agents[1], job, 0, 1, output_root=root_of(BAD))
    market.challenge(job, 0, sender=verifier)

    answer = arbiter.arbitrate(Evidence.model_validate(evidence(job, proofs=[proof(BAD, 0)], files=GOOD)))

    assert (answer["valid_root"], answer["upheld"]) == (hx(root_of(GOOD)), [])
    assert [r["replica"] for r in answer["rejected"]] == [0, 1]
    assert answer["rejected"][0]["reason"].startswith(f"{RESULT} differs from the re-execution")
    assert answer["rejected"][1]["reason"] == f"its root {hx(root_of(BAD))} is not the re-execution's {hx(root_of(GOOD))}"
    tx = chain.get_receipt(answer["transaction"])
    slashed = STAKE * params.slash_bps // 10_000
    assert [(ev.replica, ev.asset, ev.slashed) for ev in tx.events.filter(market.ReplicaRejected)] == [
        (0, ids[0], slashed), (1, ids[1], slashed)
    ]  # fmt: skip
    resolved = only(tx, market.DisputeResolved)
    assert (resolved.valid_root, resolved.upheld, resolved.rejected) == (root_of(GOOD), 0, 2)
    assert market.credits(verifier) == 2 * slashed + params.challenge_bond  # both slashes and the bond back
    assert [assets.stake(a).amount for a in ids] == [STAKE - slashed] * 2
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.OPEN] * 2


# ================================================================ refusals


def test_refuses_a_shard_without_an_open_dispute(chain, market, assets, api, arbiter, post_job, register_asset,
                                                 keeper, registered_keeper, agent, submit, facilitator, client):  # fmt: skip
    job = post_job()
    asset_id = register_asset()
    market.assign(job, 0, asset_id, sender=keeper)
    submit(agent, job, 0, 0, output_root=root_of(GOOD))  # submitted, never challenged
    before = snapshot(chain, market, assets, facilitator, job, [asset_id], [client])

    cases = [
        (evidence(job), 409, f"rule 1 (open-dispute): job {job} shard 0 has no open dispute"),
        (evidence(job + 1), 404, f"rule 1 (open-dispute): job {job + 1} does not exist"),
        ({**evidence(job), "shard": 1}, 404, f"rule 1 (open-dispute): job {job} has no shard 1 (it has 1)"),
    ]
    for body, status, detail in cases:
        response = api.post("/disputes", json=body)
        assert (response.status_code, response.json()["detail"]) == (status, detail)

    assert snapshot(chain, market, assets, facilitator, job, [asset_id], [client]) == before
    entries = arbiter.entries()
    assert [(e["decision"], e["status"], e["rule"], e["rules"]) for e in entries] == [
        ("refused", status, "open-dispute", ["open-dispute"]) for _, status, _ in cases
    ]


def _garbled_receipt(d) -> dict:
    """replica 1's genuine receipt with its signature's v set to 29, a form the contract refuses."""
    genuine = d.receipt(d.agents[1], d.job, 1, BAD)
    return {**genuine, "signature": genuine["signature"][:-2] + "1d"}


REFUSALS = {
    # id: (evidence from the mismatch context, rule, expected detail fragment)
    "forged-signature": (
        lambda d: evidence(d.job, receipts=[d.receipt(d.agents[2], d.job, 1, BAD)]),
        "receipts",
        lambda d: f"receipt 0 (replica 1): its signature recovers {d.agents[2].address}, "
                  f"not asset {d.assets[1]}'s agent {d.agents[1].address}",
    ),  # fmt: skip
    "garbled-signature": (
        lambda d: evidence(d.job, receipts=[_garbled_receipt(d)]),
        "receipts",
        lambda d: "receipt 0 (replica 1): its signature is invalid: signature v must be 27 or 28, got 29",
    ),
    "receipt-root-differs": (
        # Genuinely signed by the replica's agent, but not the result the chain holds.
        lambda d: evidence(d.job, receipts=[d.receipt(d.agents[0], d.job, 0, GOOD), d.receipt(d.agents[1], d.job, 1, GOOD)]),
        "receipts",
        lambda d: f"receipt 1 (replica 1): its output root {hx(root_of(GOOD))} is not the replica's on-chain root "
                  f"{hx(root_of(BAD))}",
    ),  # fmt: skip
    "receipt-metering-differs": (
        lambda d: evidence(d.job, receipts=[d.receipt(d.agents[1], d.job, 1, BAD, gpu_seconds=999)]),
        "receipts",
        lambda d: f"receipt 0 (replica 1): it meters 999 GPU-seconds, the chain recorded {GPU_SECONDS}",
    ),
    "proof-does-not-verify": (
        lambda d: evidence(d.job, proofs=[proof(BAD, 1), proof(GOOD, 1)]),
        "proofs",
        lambda d: f"proof 1 ('{RESULT}' of replica 1): it does not lead to the replica's on-chain root {hx(root_of(BAD))}",
    ),
    "proof-of-an-unknown-replica": (
        lambda d: evidence(d.job, proofs=[proof(GOOD, 2)]),
        "proofs",
        lambda d: f"proof 0 ('{RESULT}' of replica 2): job {d.job} has 2 replicas per shard",
    ),
    "no-reexecution": (
        lambda d: evidence(d.job, receipts=[d.receipt(d.agents[0], d.job, 0, GOOD)], proofs=[proof(GOOD, 0)], files=None),
        "re-execution",
        lambda d: "evidence needs a re-execution",
    ),
    "reexecution-without-the-log": (
        lambda d: evidence(d.job, files={RESULT: GOOD[RESULT]}),
        "re-execution",
        lambda d: "the re-execution lacks log/container.log, which every result commits",
    ),
    "reexecution-with-a-stray-file": (
        lambda d: evidence(d.job, files={**GOOD, "in/data.bin": b"\x00"}),
        "re-execution",
        lambda d: "re-execution file 'in/data.bin' is not a result leaf",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refuses_bad_evidence_and_changes_nothing(chain, market, assets, api, arbiter, mismatch, receipt, agents,
                                                  facilitator, client, case):  # fmt: skip
    build, rule, fragment = REFUSALS[case]
    context = SimpleNamespace(job=mismatch.job, assets=mismatch.assets, agents=agents, receipt=receipt)
    body = build(context)
    before = snapshot(chain, market, assets, facilitator, mismatch.job, mismatch.assets, [client])

    response = api.post("/disputes", json=body)

    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"rule {RULES.index(rule) + 1} ({rule}): ")
    assert fragment(context) in detail
    assert snapshot(chain, market, assets, facilitator, mismatch.job, mismatch.assets, [client]) == before
    [entry] = arbiter.entries()
    assert (entry["decision"], entry["status"], entry["rule"]) == ("refused", 400, rule)
    assert entry["reason"] in detail and entry["evidence_sha256"] == canonical_sha256(body)
    assert "transaction" not in entry


def test_a_ruling_the_chain_refuses_is_logged(chain, market, assets, mismatch, stranger, client, tmp_path):
    """A key the market does not know as a facilitator: the send is refused before broadcast."""
    web3 = chain.provider.web3
    arbiter = Arbiter(web3, Sender(web3, stranger.private_key), market.address, assets.address, tmp_path / "a.jsonl")
    before = snapshot(chain, market, assets, stranger, mismatch.job, mismatch.assets, [client])

    with pytest.raises(Refused) as refused:
        arbiter.arbitrate(Evidence.model_validate(evidence(mismatch.job)))

    assert (refused.value.status, refused.value.rule) == (503, "ruling")
    assert refused.value.reason == "the chain refused the ruling: market_params: caller is not a facilitator"
    assert snapshot(chain, market, assets, stranger, mismatch.job, mismatch.assets, [client]) == before
    [entry] = arbiter.entries()
    assert (entry["decision"], entry["status"], entry["rules"]) == ("refused", 503, list(RULES))


def test_a_malformed_body_is_a_422(api, arbiter, mismatch):
    body = evidence(mismatch.job, proofs=[{**proof(GOOD, 0), "content": "not base64!"}])
    response = api.post("/disputes", json=body)
    assert response.status_code == 422
    assert "not valid base64" in response.text
    assert arbiter.entries() == []  # not evidence at all, so no decision to log


# ================================================================ the audit log


def test_the_audit_log_has_one_line_per_decision(chain, market, api, arbiter, mismatch, facilitator):
    """A refusal, a ruling, then the same evidence again once the dispute is over: three lines,
    and the ruling's transaction is the chain's DisputeResolved event."""
    start = chain.blocks.head.number
    refused = evidence(mismatch.job, proofs=[proof(GOOD, 0)], files=None)
    ruled = evidence(mismatch.job, proofs=[proof(GOOD, 0)], files=GOOD)

    statuses = [api.post("/disputes", json=body).status_code for body in (refused, ruled, ruled)]

    assert statuses == [400, 200, 409]
    lines = arbiter.log.path.read_text().splitlines()
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    assert api.get("/disputes").json() == entries
    assert [e["decision"] for e in entries] == ["refused", "resolved", "refused"]
    assert [e["evidence_sha256"] for e in entries] == [canonical_sha256(b) for b in (refused, ruled, ruled)]
    assert [e["rules"] for e in entries] == [list(RULES[:5]), list(RULES), list(RULES[:1])]
    assert entries[2]["reason"] == f"job {mismatch.job} shard 0 has no open dispute"
    assert all(e["job"] == mismatch.job and e["shard"] == 0 and e["time"].endswith("+00:00") for e in entries)

    logs = list(market.DisputeResolved.range(start, chain.blocks.head.number + 1))
    assert len(logs) == 1
    ruling = entries[1]
    assert (hx(logs[0].transaction_hash), logs[0].block_number) == (ruling["transaction"], ruling["block"])
    assert (hx(logs[0].valid_root), logs[0].facilitator) == (ruling["valid_root"], facilitator.address)
    assert (logs[0].upheld, logs[0].rejected) == (len(ruling["upheld"]), len(ruling["rejected"])) == (1, 1)


def test_the_audit_log_survives_a_torn_line(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append({"n": 1})
    with open(log.path, "ab") as f:
        f.write(b'{"n": 2, "torn')  # a crash mid-write
    log.append({"n": 3})
    assert log.entries() == [{"n": 1}, {"n": 3}]
    assert log.path.read_bytes().endswith(b'"torn\n{"n":3}\n')


# ================================================================ the decision, without a chain


def _replica(index, state, files=None, asset=0):
    root = root_of(files) if files else b"\x00" * 32
    return Replica(job=1, shard=0, index=index, asset=asset, keeper_id=1, state=state, lease=1, price=100,
                   deadline=0, since=0, gpu_seconds=GPU_SECONDS, output_root=root)  # fmt: skip


def _facts(*replicas):
    return ChainFacts(chain_id=31337, market="0x" + "11" * 20, job=1, shard=0, manifest_hash=b"\x22" * 32,
                      max_gpu_seconds=3_600, replicas=replicas, agents={})  # fmt: skip


def test_decide_rules_only_on_submitted_and_disputed_replicas():
    facts = _facts(
        _replica(0, ReplicaState.DISPUTED, BAD),
        _replica(1, ReplicaState.SUBMITTED, GOOD),
        _replica(2, ReplicaState.SUBMITTED, WORSE),
        _replica(3, ReplicaState.ASSIGNED),
        _replica(4, ReplicaState.CANCELLED),
    )
    decision = decide(Evidence.model_validate(evidence(1, proofs=[proof(BAD, 0)], files=GOOD)), facts)
    assert (decision.valid_root, decision.upheld) == (root_of(GOOD), (1,))
    assert [r.replica for r in decision.rejected] == [0, 2]
    assert decision.rejected[0].reason.startswith(f"{RESULT} differs from the re-execution")
    assert decision.rejected[1].reason.startswith(f"its root {hx(root_of(WORSE))} is not")


def test_decide_names_a_proven_file_missing_from_the_reexecution():
    extra = {**BAD, "out/extra.bin": b"\x01"}
    facts = _facts(_replica(0, ReplicaState.DISPUTED, extra))
    decision = decide(Evidence.model_validate(evidence(1, proofs=[proof(extra, 0, "out/extra.bin")])), facts)
    assert decision.rejected[0].reason == "out/extra.bin is in its result but not in the re-execution"


def test_decide_refuses_evidence_about_a_replica_not_under_ruling():
    facts = _facts(_replica(0, ReplicaState.DISPUTED, BAD), _replica(1, ReplicaState.ASSIGNED))
    with pytest.raises(Refused) as refused:
        decide(Evidence.model_validate(evidence(1, proofs=[proof(GOOD, 1)])), facts)
    assert (refused.value.status, refused.value.rule) == (400, "proofs")
    assert refused.value.reason == f"proof 0 ('{RESULT}' of replica 1): replica 1 is ASSIGNED, not under ruling"


def test_decide_needs_an_open_dispute():
    facts = _facts(_replica(0, ReplicaState.SUBMITTED, GOOD), _replica(1, ReplicaState.SUBMITTED, GOOD))
    with pytest.raises(Refused) as refused:
        decide(Evidence.model_validate(evidence(1)), facts)
    assert (refused.value.status, refused.value.rule, refused.value.rules) == (409, "open-dispute", ["open-dispute"])


def test_only_those_with_a_stake_or_a_bond_may_bring_evidence(api, chain, market, mismatch, stranger, keeper, provider2, arbiter):
    """Rule 2: an unsigned request is 401, a stranger's 403 (logged), and nothing changes;
    the job's client, an asset's owner and an active keeper are heard."""
    body = evidence(mismatch.job)
    nonce = chain.provider.web3.eth.get_transaction_count(arbiter.sender.address)
    unsigned = api.post("/disputes", json=body, headers={})
    assert unsigned.status_code == 401 and "sign the request" in unsigned.json()["detail"]
    signed_for_other_body = sign(stranger.private_key, arbiter.chain_id, arbiter.sender.address, b"{}")
    assert api.post("/disputes", json=body, headers=signed_for_other_body).status_code == 401
    refused = api.post("/disputes", json=body, signer=stranger)
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith(f"rule 2 (caller): {stranger.address} is neither")
    assert chain.provider.web3.eth.get_transaction_count(arbiter.sender.address) == nonce
    assert [int(market.replica(mismatch.job, 0, r).state) for r in range(2)] == [3, 3]  # both still disputed
    entry = arbiter.entries()[-1]
    assert (entry["decision"], entry["rule"], entry["caller"]) == ("refused", "caller", stranger.address)
    for allowed in (provider2, keeper):  # the dishonest asset's owner; an active keeper
        answer = api.post("/disputes", json={**body, "reexecution": None}, signer=allowed)
        assert answer.status_code == 400 and "rule 5 (re-execution)" in answer.json()["detail"]
