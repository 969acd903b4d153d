"""Dispute arbitration on the session chain, the session's Docker engine and content store:
the facilitator's Arbiter reads a disputed shard, re-executes it itself, rules, sends the
ruling with the facilitator key and logs every decision. Requests go through POST /disputes
(FastAPI's TestClient) or the arbiter's own watch (`run_once`); results are checked against
the chain's own events, states, stakes and credits, and a refusal must leave the chain
untouched."""

import base64
import hashlib
import json
from dataclasses import dataclass
from types import SimpleNamespace

import ape
import pytest
from ape import project
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hexbytes import HexBytes

from computenet.domain import Replica, ReplicaState
from computenet.merkle import MerkleTree
from verifier.arbiter import (
    RULES,
    ZERO_ROOT,
    AuditLog,
    ChainFacts,
    Evidence,
    Refused,
    check_open,
    check_proofs,
    decide,
    reexecute,
    router,
    sign,
)
from verifier.reexecute import Reexecution

TOKEN = 10**6
STAKE = 1_000 * TOKEN  # register_asset's default stake
GPU_SECONDS = 2  # what the test jobs' results claim: they run in under a second, within the arbiter's allowance
RESULT = "out/result.txt"

GOOD = {RESULT: b"42\n", "out/metrics/loss.csv": b"step,loss\n1,0.5\n", "log/container.log": b"epoch 1 done\n"}
BAD = {**GOOD, RESULT: b"41\n"}
WORSE = {**GOOD, RESULT: b"40\n"}

# The job whose honest result is GOOD: what an honest agent, and the arbiter, commit by running it.
HONEST = [
    "python3",
    "-c",
    "import os; os.makedirs('/out/metrics'); open('/out/result.txt', 'w').write('42\\n'); "
    "open('/out/metrics/loss.csv', 'w').write('step,loss\\n1,0.5\\n'); print('epoch 1 done')",
]
# A job whose every run differs: random bytes and the clock.
RANDOM = [
    "python3",
    "-c",
    "import os, time; open('/out/result.txt', 'w').write(os.urandom(16).hex()); print(time.time_ns())",
]


# ---------------------------------------------------------------- evidence helpers


def root_of(files: dict[str, bytes]) -> bytes:
    return MerkleTree.from_files(files).root


def hx(value: bytes) -> str:
    return "0x" + bytes(HexBytes(value)).hex()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sha(data: bytes) -> str:
    return "0x" + hashlib.sha256(data).hexdigest()


def proof(files: dict[str, bytes], replica: int, path: str = RESULT) -> dict:
    """`path` of `files`, with its proof, claimed to be in `replica`'s result."""
    siblings = MerkleTree.from_files(files).proof(path)
    return {"replica": replica, "path": path, "content": b64(files[path]), "proof": [hx(p) for p in siblings]}


def evidence(job: int, receipts=(), proofs=(), files: dict[str, bytes] | None = None) -> dict:
    """A complete body (every field given), so its canonical JSON is computable from it alone."""
    return {
        "job": job,
        "shard": 0,
        "receipts": list(receipts),
        "proofs": list(proofs),
        "reexecution": None if files is None else {"files": {path: b64(data) for path, data in files.items()}},
        "results": [],
    }


def canonical_sha256(body: dict) -> str:
    return "0x" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.fixture
def receipt(sign_receipt):
    """A receipt for (job, 0, replica) signed by `signer`, as evidence."""

    def make(signer, job, replica, files, gpu_seconds=GPU_SECONDS, exit_code=0, manifest_hash=None):
        root = root_of(files)
        signature = sign_receipt(signer, job, 0, replica, root, gpu_seconds, exit_code, manifest_hash=manifest_hash)
        return {
            "replica": replica,
            "output_root": hx(root),
            "gpu_seconds": gpu_seconds,
            "exit_code": exit_code,
            "signature": hx(signature),
        }

    return make


# ---------------------------------------------------------------- the service


class SignedApi:
    """The HTTP layer; each POST is signed (rule 2), by the job's client unless told."""

    def __init__(self, http, arbiter, signer):
        self.http, self.arbiter, self.signer = http, arbiter, signer

    def post(self, path, json, signer=None, headers=None):
        body = _dumps(json)
        if headers is None:
            headers = sign(
                (signer or self.signer).private_key, self.arbiter.chain_id, self.arbiter.sender.address, body
            )
        return self.http.post(path, content=body, headers={"Content-Type": "application/json", **headers})

    def get(self, path):
        return self.http.get(path)


def _dumps(body: dict) -> bytes:
    return json.dumps(body).encode()


@pytest.fixture
def api(arbiter, client):
    app = FastAPI()
    app.include_router(router(arbiter))
    with TestClient(app) as http:
        yield SignedApi(http, arbiter, client)


@pytest.fixture
def honest_manifest(publish_job):
    """The hash of HONEST's manifest, published with the session's job image."""
    return publish_job(HONEST, {}, timeout_seconds=30)[1]


@pytest.fixture
def cpu_job(post_job, honest_manifest):
    """Posts a CPU job (any asset qualifies) of HONEST's manifest unless told another."""

    def post(manifest_hash=None, **req):
        return post_job(manifest_hash=manifest_hash or honest_manifest, gpu_count=0, min_vram_mib=0, **req)

    return post


@dataclass
class Dispute:
    job: int
    assets: list[int]  # by replica
    manifest: bytes


@pytest.fixture
def replicated(market, cpu_job, register_asset, provider2, agents, keeper, registered_keeper, submit, honest_manifest):
    """A replication-2 job of HONEST whose replicas disagree: replica `wrong` (provider2's asset,
    agents[1]) committed BAD, the other (agents[0]) GOOD, so a dispute opened by itself."""

    def make(wrong=1, manifest_hash=None):
        job = cpu_job(manifest_hash=manifest_hash, replication=2)
        honest = register_asset(agent_account=agents[0])
        cheat = register_asset(owner=provider2, agent_account=agents[1])
        by_replica = [cheat, honest] if wrong == 0 else [honest, cheat]
        for asset_id in by_replica:
            market.assign(job, 0, asset_id, sender=keeper)  # the first assigned takes replica 0
        signer = {honest: agents[0], cheat: agents[1]}
        for r, asset_id in enumerate(by_replica):
            submit(
                signer[asset_id],
                job,
                0,
                r,
                output_root=root_of(BAD if asset_id == cheat else GOOD),
                gpu_seconds=GPU_SECONDS,
            )
        assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.DISPUTED] * 2
        assert [market.replica(job, 0, r).asset for r in range(2)] == by_replica
        return Dispute(job, by_replica, manifest_hash or honest_manifest)

    return make


@pytest.fixture
def mismatch(replicated):
    """Replica 0 (agents[0]) committed GOOD, replica 1 (agents[1], provider2's asset) BAD."""
    return replicated(wrong=1)


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
        "challenge": tuple(project.DisputeCourt.at(market.COURT()).challenge_of(job, 0)),
        "stakes": [assets.stake(a).amount for a in asset_ids],
        "credits": [market.credits(h) for h in holders],
    }


def only(receipt, event):
    logs = receipt.events.filter(event)
    assert len(logs) == 1, f"expected one {event.name}, got {len(logs)}"
    return logs[0]


# ================================================================ rulings: the arbiter's own run decides


def test_a_challenger_with_made_up_files_cannot_get_an_honest_provider_slashed(
    chain,
    market,
    court,
    assets,
    api,
    arbiter,
    cpu_job,
    register_asset,
    keeper,
    registered_keeper,
    agent,
    submit,
    provider,
    verifier,
    stranger,
    facilitator,
    client,
    params,
):
    job = cpu_job()
    asset_id = register_asset()
    market.assign(job, 0, asset_id, sender=keeper)
    submit(agent, job, 0, 0, output_root=root_of(GOOD), gpu_seconds=GPU_SECONDS)
    court.challenge(job, 0, sender=verifier)
    made_up = evidence(job, files=BAD)
    credits = {who: market.credits(who) for who in (provider, verifier)}

    stranger_answer = api.post("/disputes", json=made_up, signer=stranger)
    response = api.post("/disputes", json=made_up, signer=verifier)

    assert stranger_answer.status_code == 403
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["valid_root"], answer["reproducible"], answer["upheld"], answer["rejected"]) == (
        hx(root_of(GOOD)),
        True,
        [0],
        [],
    )
    assert answer["runs"] == [hx(root_of(GOOD))]  # it matched the replica: one run was enough
    assert answer["notes"] == [
        f"the challenger's file {RESULT} differs from the arbiter's re-execution (sha256 "
        f"{sha(BAD[RESULT])}, the arbiter's {sha(GOOD[RESULT])})"
    ]

    tx = chain.get_receipt(answer["transaction"])
    resolved = only(tx, market.DisputeResolved)
    assert (resolved.rejected_replicas, resolved.upheld, resolved.rejected) == (0, 1, 0)
    assert not tx.events.filter(market.ReplicaRejected)
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED
    assert assets.stake(asset_id).amount == STAKE  # to the base unit
    assert market.credits(provider) - credits[provider] == params.challenge_bond  # the false accuser's bond
    assert market.credits(verifier) == credits[verifier]

    refused, ruled = arbiter.entries()
    assert (refused["decision"], refused["status"], refused["rule"], refused["caller"]) == (
        "refused",
        403,
        "caller",
        stranger.address,
    )
    assert (ruled["decision"], ruled["trigger"], ruled["caller"]) == ("resolved", "request", verifier.address)
    assert ruled["evidence_sha256"] == canonical_sha256(made_up)
    assert ruled["attachments"] == [
        {"kind": "reexecution", "path": path, "sha256": sha(data)} for path, data in BAD.items()
    ]
    assert (ruled["computed_root"], ruled["runs"], ruled["transaction"]) == (
        hx(root_of(GOOD)),
        [hx(root_of(GOOD))],
        answer["transaction"],
    )
    assert ruled["arbiter_files"] == {path: sha(data) for path, data in sorted(GOOD.items())}


@pytest.mark.parametrize("wrong", [0, 1])
def test_a_dishonest_replica_is_rejected_even_when_its_provider_posts_first(
    chain, market, assets, api, replicated, receipt, agents, provider, provider2, client, treasury, params, wrong
):
    dispute = replicated(wrong=wrong)
    job, honest_index = dispute.job, 1 - wrong
    cheat, honest = dispute.assets[wrong], dispute.assets[honest_index]
    body = evidence(job, receipts=[receipt(agents[1], job, wrong, BAD)], proofs=[proof(BAD, wrong)], files=BAD)
    credits_before = {who: market.credits(who) for who in (client, provider, provider2, treasury)}

    response = api.post("/disputes", json=body, signer=provider2)  # the dishonest asset's owner, first

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["valid_root"], answer["upheld"], answer["runs"]) == (
        hx(root_of(GOOD)),
        [honest_index],
        [hx(root_of(GOOD))],
    )
    [rejected] = answer["rejected"]
    assert rejected == {
        "replica": wrong,
        "reason": (
            f"its root {hx(root_of(BAD))} is not the arbiter's {hx(root_of(GOOD))}; its file {RESULT} differs from the "
            f"arbiter's re-execution (sha256 {sha(BAD[RESULT])}, the arbiter's {sha(GOOD[RESULT])})"
        ),
    }
    assert answer["notes"] == [
        f"asset {cheat}'s owner's file {RESULT} differs from the arbiter's re-execution "
        f"(sha256 {sha(BAD[RESULT])}, the arbiter's {sha(GOOD[RESULT])})"
    ]

    tx = chain.get_receipt(answer["transaction"])
    slashed = STAKE * params.slash_bps // 10_000
    rejection = only(tx, market.ReplicaRejected)
    assert (rejection.replica, rejection.asset, rejection.slashed) == (wrong, cheat, slashed)
    assert assets.stake(cheat).amount == STAKE - slashed
    assert assets.stake(honest).amount == STAKE
    reward = min(slashed // 10, params.challenge_bond)  # to the upheld provider, who proved the fault
    gained = {who: market.credits(who) - before for who, before in credits_before.items()}
    assert gained == {client: 0, provider: reward, provider2: 0, treasury: slashed - reward}
    states = [market.replica(job, 0, r).state for r in range(2)]
    assert (states[honest_index], states[wrong]) == (ReplicaState.SUBMITTED, ReplicaState.OPEN)


def test_the_arbiter_runs_twice_when_it_matches_no_replica_and_rejects_every_one(
    chain,
    market,
    court,
    assets,
    arbiter,
    cpu_job,
    register_asset,
    provider2,
    agents,
    keeper,
    registered_keeper,
    submit,
    verifier,
    params,
):
    """Both replicas agree on BAD; a verifier challenges; the arbiter's run (GOOD) matches
    neither, so it runs again, the two runs agree and both replicas are wrong."""
    job = cpu_job(replication=2)
    ids = [register_asset(agent_account=agents[0]), register_asset(owner=provider2, agent_account=agents[1])]
    for asset_id in ids:
        market.assign(job, 0, asset_id, sender=keeper)
    submit(agents[0], job, 0, 0, output_root=root_of(BAD), gpu_seconds=GPU_SECONDS)
    submit(agents[1], job, 0, 1, output_root=root_of(BAD), gpu_seconds=GPU_SECONDS)
    court.challenge(job, 0, sender=verifier)

    answer = arbiter.arbitrate(Evidence.model_validate(evidence(job, proofs=[proof(BAD, 0)])))

    assert (answer["valid_root"], answer["upheld"], answer["runs"]) == (hx(root_of(GOOD)), [], [hx(root_of(GOOD))] * 2)
    assert [r["replica"] for r in answer["rejected"]] == [0, 1]
    assert f"its file {RESULT} differs from the arbiter's re-execution" in answer["rejected"][0]["reason"]
    assert answer["rejected"][1]["reason"] == f"its root {hx(root_of(BAD))} is not the arbiter's {hx(root_of(GOOD))}"
    tx = chain.get_receipt(answer["transaction"])
    slashed = STAKE * params.slash_bps // 10_000
    assert [(ev.replica, ev.asset, ev.slashed) for ev in tx.events.filter(market.ReplicaRejected)] == [
        (0, ids[0], slashed),
        (1, ids[1], slashed),
    ]
    reward = min(2 * slashed // 10, params.challenge_bond)
    assert market.credits(verifier) == reward + params.challenge_bond  # a capped reward and the bond back
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.OPEN] * 2
    [entry] = arbiter.entries()
    assert (entry["trigger"], entry["computed_root"], entry["runs"]) == (
        "call",
        hx(root_of(GOOD)),
        [hx(root_of(GOOD))] * 2,
    )


def test_results_recorded_in_a_batch_are_revealed_and_then_ruled_on_by_root(
    chain,
    market,
    court,
    assets,
    arbiter,
    cpu_job,
    register_asset,
    keeper,
    registered_keeper,
    agent,
    sign_receipts,
    provider,
    verifier,
    facilitator,
    client,
    treasury,
    params,
):
    """One agent's two results recorded by `submit_results` (no root of either on chain), both
    challenged: the arbiter reveals each from the batch's logs before it rules by root; the one
    that committed BAD is slashed, the one that committed GOOD stands and takes the bond."""
    jobs = [cpu_job(), cpu_job()]
    ids = [register_asset(), register_asset()]  # both of `provider`, run by `agent`
    for job, asset_id in zip(jobs, ids, strict=True):
        market.assign(job, 0, asset_id, sender=keeper)
    results = [(jobs[0], 0, 0, root_of(BAD), GPU_SECONDS, 0), (jobs[1], 0, 0, root_of(GOOD), GPU_SECONDS, 0)]
    batch = market.submit_results(results, sign_receipts(agent, results), sender=provider)
    assert len(batch.events.filter(market.ResultsCommitted)) == 1
    for job in jobs:
        assert bytes(court.result_root(job, 0, 0)) == ZERO_ROOT
        court.challenge(job, 0, sender=verifier)
    with ape.reverts("dispute_court: a result's root is not revealed (reveal_result)"):
        court.resolve(jobs[0], 0, root_of(GOOD), sender=facilitator)
    holders = (provider, verifier, treasury, client)
    credits = {who: market.credits(who) for who in holders}

    wrong = arbiter.arbitrate(Evidence.model_validate(evidence(jobs[0])))

    assert (wrong["ruling"], wrong["valid_root"], wrong["upheld"]) == ("resolve", hx(root_of(GOOD)), [])
    assert [r["replica"] for r in wrong["rejected"]] == [0]
    [entry] = arbiter.entries()
    [reveal] = entry["revealed"]
    assert reveal["replica"] == 0 and reveal["transaction"] != wrong["transaction"]
    revealed = only(chain.get_receipt(reveal["transaction"]), court.ResultRevealed)
    assert (revealed.job, revealed.replica, bytes(revealed.output_root)) == (jobs[0], 0, root_of(BAD))
    tx = chain.get_receipt(wrong["transaction"])
    assert tx.block_number > chain.get_receipt(reveal["transaction"]).block_number
    slashed = STAKE * params.slash_bps // 10_000
    rejection = only(tx, market.ReplicaRejected)
    assert (rejection.job, rejection.replica, rejection.asset, rejection.slashed) == (jobs[0], 0, ids[0], slashed)
    assert only(tx, market.DisputeResolved).rejected_replicas == 0b1
    assert market.replica(jobs[0], 0, 0).state == ReplicaState.OPEN
    assert [assets.stake(a).amount for a in ids] == [STAKE - slashed, STAKE]  # to the base unit
    reward = min(slashed // 10, params.challenge_bond)  # to the challenger, with its bond back
    gained = {who: market.credits(who) - before for who, before in credits.items()}
    assert gained == {provider: 0, verifier: reward + params.challenge_bond, treasury: slashed - reward, client: 0}

    credits = {who: market.credits(who) for who in holders}
    right = arbiter.arbitrate(Evidence.model_validate(evidence(jobs[1])))

    assert (right["ruling"], right["valid_root"], right["upheld"], right["rejected"]) == (
        "resolve",
        hx(root_of(GOOD)),
        [0],
        [],
    )
    assert [r["replica"] for r in arbiter.entries()[-1]["revealed"]] == [0]
    assert bytes(court.result_root(jobs[1], 0, 0)) == root_of(GOOD)  # revealed, and the replica stands
    tx = chain.get_receipt(right["transaction"])
    resolved = only(tx, market.DisputeResolved)
    assert (resolved.rejected_replicas, resolved.upheld, resolved.rejected) == (0, 1, 0)
    assert not tx.events.filter(market.ReplicaRejected)
    assert market.replica(jobs[1], 0, 0).state == ReplicaState.SUBMITTED
    assert [assets.stake(a).amount for a in ids] == [STAKE - slashed, STAKE]
    gained = {who: market.credits(who) - before for who, before in credits.items()}
    assert gained == {
        provider: params.challenge_bond,
        verifier: 0,
        treasury: 0,
        client: 0,
    }  # the false accusation's bond


def test_a_job_that_is_not_reproducible_puts_no_one_at_fault(publish_job, reexecutor):
    """Decided without a chain: the arbiter's two runs of RANDOM differ, so the ruling is the
    zero root (every submitted result stands) and no replica is rejected."""
    manifest_hash = publish_job(RANDOM, {}, timeout_seconds=30)[1]
    facts = _facts(
        _replica(0, ReplicaState.DISPUTED, GOOD), _replica(1, ReplicaState.DISPUTED, BAD), manifest_hash=manifest_hash
    )

    runs = reexecute(reexecutor, facts)
    decision = decide(facts, runs)

    assert len(runs) == 2 and runs[0].root != runs[1].root
    assert (decision.valid_root, decision.reproducible, decision.upheld, decision.rejected) == (
        ZERO_ROOT,
        False,
        (0, 1),
        (),
    )
    assert decision.runs == (runs[0].root, runs[1].root)
    assert decision.notes == (
        f"not reproducible: the arbiter's two runs gave {hx(runs[0].root)} and "
        f"{hx(runs[1].root)}; no one is at fault and every submitted result stands",
    )


# ================================================================ the arbiter's watch


def test_run_once_rules_on_an_open_dispute_nobody_asked_about(
    chain, market, assets, make_arbiter, mismatch, params, tmp_path
):
    arbiter = make_arbiter()
    opened_at = chain.blocks.head.number

    [answer] = arbiter.run_once()

    assert (answer["job"], answer["valid_root"], answer["upheld"]) == (mismatch.job, hx(root_of(GOOD)), [0])
    assert [r["replica"] for r in answer["rejected"]] == [1]
    resolved = only(chain.get_receipt(answer["transaction"]), market.DisputeResolved)
    assert (resolved.job, resolved.rejected_replicas) == (mismatch.job, 0b10)
    assert assets.stake(mismatch.assets[1]).amount == STAKE - STAKE * params.slash_bps // 10_000
    assert assets.stake(mismatch.assets[0]).amount == STAKE
    [entry] = arbiter.entries()
    assert (entry["decision"], entry["trigger"], entry["attachments"]) == ("resolved", "watch", [])
    assert entry["rules"] == ["open-dispute", "receipts", "proofs", "re-execution", "ruling"]
    assert "caller" not in entry and entry["transaction"] == answer["transaction"]

    # Nothing is ruled twice: not by the next pass, nor by an arbiter restarted on the same cursor.
    assert arbiter.run_once() == []
    restarted = make_arbiter()
    assert restarted.follower.next_block() > opened_at and restarted.cursor.pending == set()
    assert restarted.run_once() == []
    assert len(arbiter.entries()) == 1


def test_the_watch_keeps_a_dispute_it_cannot_rule_on_yet(market, make_arbiter, replicated, content_store, job_image):
    """Rule 5 refuses while the shard's manifest is missing from the store (logged, nothing sent);
    the dispute stays pending and is ruled on once the manifest is there."""
    from computenet.manifest import build_manifest, canonical_json, manifest_hash

    missing = build_manifest(job_image, HONEST, {}, timeout_seconds=31, max_output_bytes=1 << 20)
    dispute = replicated(manifest_hash=manifest_hash(missing))
    arbiter = make_arbiter(retry_seconds=0)

    assert arbiter.run_once() == []

    assert arbiter.cursor.pending == {(dispute.job, 0)}
    [refused] = arbiter.entries()
    assert (refused["decision"], refused["status"], refused["rule"], refused["trigger"]) == (
        "refused",
        503,
        "re-execution",
        "watch",
    )
    assert refused["reason"] == (
        f"the arbiter could not re-execute job {dispute.job} shard 0: manifest not found: "
        f"the store has no manifest {hx(manifest_hash(missing))}"
    )
    assert [market.replica(dispute.job, 0, r).state for r in range(2)] == [ReplicaState.DISPUTED] * 2

    content_store.client.put(canonical_json(missing))
    [answer] = arbiter.run_once()
    assert (answer["job"], answer["valid_root"]) == (dispute.job, hx(root_of(GOOD)))
    assert arbiter.cursor.pending == set()


# ================================================================ refusals


def test_refuses_a_shard_without_an_open_dispute(
    chain,
    market,
    assets,
    api,
    arbiter,
    cpu_job,
    register_asset,
    keeper,
    registered_keeper,
    agent,
    submit,
    facilitator,
    client,
):
    job = cpu_job()
    asset_id = register_asset()
    market.assign(job, 0, asset_id, sender=keeper)
    submit(agent, job, 0, 0, output_root=root_of(GOOD), gpu_seconds=GPU_SECONDS)  # submitted, never challenged
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
        lambda d: (
            f"receipt 0 (replica 1): its signature recovers {d.agents[2].address}, "
            f"not asset {d.assets[1]}'s agent {d.agents[1].address}"
        ),
    ),
    "signed-over-another-manifest": (
        lambda d: evidence(d.job, receipts=[d.receipt(d.agents[1], d.job, 1, BAD, manifest_hash=b"\x44" * 32)]),
        "receipts",
        lambda d: "receipt 0 (replica 1): its signature recovers",
    ),
    "garbled-signature": (
        lambda d: evidence(d.job, receipts=[_garbled_receipt(d)]),
        "receipts",
        lambda d: "receipt 0 (replica 1): its signature is invalid: signature v must be 27 or 28, got 29",
    ),
    "receipt-root-differs": (
        # Genuinely signed by the replica's agent, but not the result the chain holds.
        lambda d: evidence(
            d.job, receipts=[d.receipt(d.agents[0], d.job, 0, GOOD), d.receipt(d.agents[1], d.job, 1, GOOD)]
        ),
        "receipts",
        lambda d: (
            f"receipt 1 (replica 1): its output root {hx(root_of(GOOD))} is not the replica's on-chain root "
            f"{hx(root_of(BAD))}"
        ),
    ),
    "receipt-metering-differs": (
        lambda d: evidence(d.job, receipts=[d.receipt(d.agents[1], d.job, 1, BAD, gpu_seconds=999)]),
        "receipts",
        lambda d: f"receipt 0 (replica 1): it meters 999 GPU-seconds, the chain recorded {GPU_SECONDS}",
    ),
    "proof-does-not-verify": (
        lambda d: evidence(d.job, proofs=[proof(BAD, 1), proof(GOOD, 1)]),
        "proofs",
        lambda d: (
            f"proof 1 ('{RESULT}' of replica 1): it does not lead to the replica's on-chain root {hx(root_of(BAD))}"
        ),
    ),
    "proof-of-an-unknown-replica": (
        lambda d: evidence(d.job, proofs=[proof(GOOD, 2)]),
        "proofs",
        lambda d: f"proof 0 ('{RESULT}' of replica 2): job {d.job} has 2 replicas per shard",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refuses_bad_attachments_and_changes_nothing(
    chain, market, assets, api, arbiter, mismatch, receipt, agents, facilitator, client, case
):
    build, rule, fragment = REFUSALS[case]
    context = SimpleNamespace(
        job=mismatch.job, assets=mismatch.assets, agents=agents, receipt=receipt, manifest=mismatch.manifest
    )
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
    assert "transaction" not in entry and "runs" not in entry  # refused before the arbiter ran anything


def test_a_shard_the_arbiter_cannot_run_is_refused_and_changes_nothing(
    chain, market, assets, api, arbiter, replicated, facilitator, client
):
    dispute = replicated(manifest_hash=b"\x33" * 32)  # in no store
    before = snapshot(chain, market, assets, facilitator, dispute.job, dispute.assets, [client])

    response = api.post("/disputes", json=evidence(dispute.job, files=GOOD))

    assert response.status_code == 503
    assert response.json()["detail"] == (
        f"rule 5 (re-execution): the arbiter could not re-execute job {dispute.job} "
        f"shard 0: manifest not found: the store has no manifest 0x{'33' * 32}"
    )
    assert snapshot(chain, market, assets, facilitator, dispute.job, dispute.assets, [client]) == before
    [entry] = arbiter.entries()
    assert (entry["decision"], entry["rule"], entry["rules"]) == ("refused", "re-execution", list(RULES[:5]))


def test_a_ruling_the_chain_refuses_is_logged(chain, market, assets, make_arbiter, mismatch, stranger, client):
    """A key the market does not know as a facilitator: the send is refused before broadcast."""
    arbiter = make_arbiter(key=stranger)
    before = snapshot(chain, market, assets, stranger, mismatch.job, mismatch.assets, [client])

    with pytest.raises(Refused) as refused:
        arbiter.arbitrate(Evidence.model_validate(evidence(mismatch.job)))

    assert (refused.value.status, refused.value.rule) == (503, "ruling")
    assert refused.value.reason == "the chain refused the ruling: dispute_court: caller is not a facilitator"
    assert snapshot(chain, market, assets, stranger, mismatch.job, mismatch.assets, [client]) == before
    [entry] = arbiter.entries()
    assert (entry["decision"], entry["status"], entry["trigger"]) == ("refused", 503, "call")
    assert entry["rules"] == [rule for rule in RULES if rule != "caller"]  # no request, so no caller to check
    assert entry["runs"] == [hx(root_of(GOOD))]  # what it computed is on record all the same


def test_a_malformed_body_is_a_422(api, arbiter, mismatch):
    body = evidence(mismatch.job, proofs=[{**proof(GOOD, 0), "content": "not base64!"}])
    response = api.post("/disputes", json=body)
    assert response.status_code == 422
    assert "not valid base64" in response.text
    assert arbiter.entries() == []  # not a request at all, so no decision to log


def test_only_those_with_a_stake_or_a_bond_are_heard(
    api, chain, market, mismatch, stranger, keeper, provider2, arbiter
):
    """Rule 2: an unsigned request is 401, a stranger's 403, both logged, and nothing changes;
    the job's client, an asset's owner and an active keeper are heard."""
    body = evidence(mismatch.job, proofs=[proof(BAD, 0)])  # a proof that fails rule 4 once heard
    nonce = chain.provider.web3.eth.get_transaction_count(arbiter.sender.address)

    unsigned = api.post("/disputes", json=body, headers={})
    signed_for_other_body = api.post(
        "/disputes", json=body, headers=sign(stranger.private_key, arbiter.chain_id, arbiter.sender.address, b"{}")
    )
    stranger_answer = api.post("/disputes", json=body, signer=stranger)

    assert unsigned.status_code == 401 and unsigned.json()["detail"].startswith("rule 2 (caller): sign the request")
    assert signed_for_other_body.status_code == 401
    assert stranger_answer.status_code == 403
    assert stranger_answer.json()["detail"].startswith(f"rule 2 (caller): {stranger.address} is neither")
    assert chain.provider.web3.eth.get_transaction_count(arbiter.sender.address) == nonce
    assert [market.replica(mismatch.job, 0, r).state for r in range(2)] == [ReplicaState.DISPUTED] * 2
    entries = arbiter.entries()
    assert [(e["decision"], e["status"], e["rules"], e.get("caller")) for e in entries] == [
        ("refused", 401, ["caller"], None),
        ("refused", 401, ["caller"], None),  # refused before reading the chain
        ("refused", 403, ["open-dispute", "caller"], stranger.address),
    ]
    assert all(e["evidence_sha256"] == canonical_sha256(body) and e["trigger"] == "request" for e in entries)
    for allowed in (provider2, keeper):  # the dishonest asset's owner; an active keeper
        answer = api.post("/disputes", json=body, signer=allowed)
        assert answer.status_code == 400 and "rule 4 (proofs)" in answer.json()["detail"]


# ================================================================ the audit log


def test_the_audit_log_has_one_line_per_decision(chain, market, api, arbiter, mismatch, facilitator):
    """A refusal, a ruling, then the same request again once the dispute is over: three lines,
    and the ruling's transaction is the chain's DisputeResolved event."""
    start = chain.blocks.head.number
    refused = evidence(mismatch.job, proofs=[proof(GOOD, 1)])
    ruled = evidence(mismatch.job, proofs=[proof(GOOD, 0)])

    statuses = [api.post("/disputes", json=body).status_code for body in (refused, ruled, ruled)]

    assert statuses == [400, 200, 409]
    lines = arbiter.log.path.read_text().splitlines()
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    assert api.get("/disputes").json() == entries
    assert [e["decision"] for e in entries] == ["refused", "resolved", "refused"]
    assert [e["evidence_sha256"] for e in entries] == [canonical_sha256(b) for b in (refused, ruled, ruled)]
    assert [e["rules"] for e in entries] == [list(RULES[:4]), list(RULES), list(RULES[:1])]
    assert entries[1]["attachments"] == [{"kind": "proof", "replica": 0, "path": RESULT, "sha256": sha(GOOD[RESULT])}]
    assert entries[2]["reason"] == f"job {mismatch.job} shard 0 has no open dispute"
    assert all(e["job"] == mismatch.job and e["shard"] == 0 and e["time"].endswith("+00:00") for e in entries)

    logs = list(market.DisputeResolved.range(start, chain.blocks.head.number + 1))
    assert len(logs) == 1
    ruling = entries[1]
    assert (hx(logs[0].transaction_hash), logs[0].block_number) == (ruling["transaction"], ruling["block"])
    assert (logs[0].rejected_replicas, logs[0].facilitator) == (ruling["rejected_mask"], facilitator.address)
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
    return Replica(
        job=1,
        shard=0,
        index=index,
        asset=asset,
        keeper_id=1,
        state=state,
        lease=1,
        price=100,
        deadline=0,
        since=0,
        gpu_seconds=GPU_SECONDS,
        output_root=root,
    )


def _facts(*replicas, manifest_hash=b"\x22" * 32):
    return ChainFacts(
        chain_id=31337,
        market="0x" + "11" * 20,
        job=1,
        shard=0,
        manifest_hash=manifest_hash,
        max_gpu_seconds=3_600,
        replicas=replicas,
        agents={},
    )


def run_of(files: dict[str, bytes]) -> Reexecution:
    return Reexecution(root_of(files), files)


def _request(**attachments) -> Evidence:
    return Evidence.model_validate(evidence(1, **attachments))


def test_decide_rules_only_on_submitted_and_disputed_replicas():
    facts = _facts(
        _replica(0, ReplicaState.DISPUTED, BAD),
        _replica(1, ReplicaState.SUBMITTED, GOOD),
        _replica(2, ReplicaState.SUBMITTED, WORSE),
        _replica(3, ReplicaState.ASSIGNED),
        _replica(4, ReplicaState.CANCELLED),
    )
    decision = decide(facts, [run_of(GOOD)], _request(proofs=[proof(BAD, 0)]))
    assert (decision.valid_root, decision.upheld, decision.runs) == (root_of(GOOD), (1,), (root_of(GOOD),))
    assert [r.replica for r in decision.rejected] == [0, 2]
    assert decision.rejected[0].reason.endswith(
        f"; its file {RESULT} differs from the arbiter's re-execution "
        f"(sha256 {sha(BAD[RESULT])}, the arbiter's {sha(GOOD[RESULT])})"
    )
    assert decision.rejected[1].reason == f"its root {hx(root_of(WORSE))} is not the arbiter's {hx(root_of(GOOD))}"


def test_decide_names_a_proven_file_missing_from_the_arbiters_run():
    extra = {**BAD, "out/extra.bin": b"\x01"}
    facts = _facts(_replica(0, ReplicaState.DISPUTED, extra))
    decision = decide(facts, [run_of(GOOD), run_of(GOOD)], _request(proofs=[proof(extra, 0, "out/extra.bin")]))
    assert decision.rejected[0].reason.endswith("; its file out/extra.bin is not in the arbiter's re-execution")


def test_decide_trusts_a_root_no_replica_submitted_only_when_a_second_run_agrees():
    facts = _facts(_replica(0, ReplicaState.DISPUTED, BAD), _replica(1, ReplicaState.DISPUTED, WORSE))
    with pytest.raises(ValueError, match="second run"):
        decide(facts, [run_of(GOOD)])
    agreed = decide(facts, [run_of(GOOD), run_of(GOOD)])
    assert (agreed.valid_root, agreed.reproducible, agreed.upheld) == (root_of(GOOD), True, ())
    assert [r.replica for r in agreed.rejected] == [0, 1]
    differed = decide(facts, [run_of(GOOD), run_of(BAD)], _request(proofs=[proof(BAD, 0)], files=WORSE))
    assert (differed.valid_root, differed.reproducible, differed.upheld, differed.rejected) == (
        ZERO_ROOT,
        False,
        (0, 1),
        (),
    )
    assert differed.runs == (root_of(GOOD), root_of(BAD)) and differed.notes[0].startswith("not reproducible:")


def test_decide_compares_an_attached_run_to_the_arbiters_but_never_follows_it():
    facts = _facts(_replica(0, ReplicaState.DISPUTED, GOOD), _replica(1, ReplicaState.DISPUTED, BAD))
    partial = {RESULT: BAD[RESULT], "out/extra.bin": b"\x01"}
    decision = decide(facts, [run_of(GOOD)], _request(files=partial), party="the challenger")
    assert (decision.valid_root, decision.upheld, [r.replica for r in decision.rejected]) == (root_of(GOOD), (0,), [1])
    assert decision.notes == (
        "the challenger's run lacks log/container.log, which the arbiter's re-execution has",
        "the challenger's file out/extra.bin is not in the arbiter's re-execution",
        "the challenger's run lacks out/metrics/loss.csv, which the arbiter's re-execution has",
        f"the challenger's file {RESULT} differs from the arbiter's re-execution (sha256 {sha(BAD[RESULT])}, "
        f"the arbiter's {sha(GOOD[RESULT])})",
    )
    assert decide(facts, [run_of(GOOD)], _request(files=GOOD)).notes == (
        "the caller's run matches the arbiter's re-execution",
    )


def test_attachments_about_a_replica_not_under_ruling_are_refused():
    facts = _facts(_replica(0, ReplicaState.DISPUTED, BAD), _replica(1, ReplicaState.ASSIGNED))
    with pytest.raises(Refused) as refused:
        check_proofs(_request(proofs=[proof(GOOD, 1)]), facts)
    assert (refused.value.status, refused.value.rule) == (400, "proofs")
    assert refused.value.reason == f"proof 0 ('{RESULT}' of replica 1): replica 1 is ASSIGNED, not under ruling"


def test_a_ruling_needs_an_open_dispute():
    facts = _facts(_replica(0, ReplicaState.SUBMITTED, GOOD), _replica(1, ReplicaState.SUBMITTED, GOOD))
    with pytest.raises(Refused) as refused:
        check_open(facts)
    assert (refused.value.status, refused.value.rule, refused.value.rules) == (409, "open-dispute", ["open-dispute"])
