"""The arbiter under a manifest's comparator and metering rule, on the session chain, Docker
engine and content store: replicas whose `.npy` outputs differ within the manifest's tolerance
all stand (ruled by mask), one beyond it falls, and a replica with the right root that claims
more than the arbiter's run allows is rejected and slashed. Replica results come attached to
a request or from the agent's outputs service, answering the facilitator under the access rule."""

import base64
import json

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from numeric_job import BEYOND, COMMAND, EXACT, NUMERIC, VALUES, WITHIN, root_of

from computenet.domain import ReplicaState
from computenet.market import Market
from computenet.outputs import OutputsClient
from computenet.sandbox import Limits
from computenet.web3calls import Sender
from verifier.arbiter import Arbiter, router, sign
from verifier.compare import load_array
from verifier.reexecute import Reexecutor

TOKEN = 10**6
STAKE = 1_000 * TOKEN  # register_asset's default
CLAIM = 2


def b64(files):
    return {path: base64.b64encode(data).decode() for path, data in files.items()}


def test_the_job_writes_what_numpy_reads():
    assert load_array(EXACT["out/logits.npy"]).tolist() == VALUES
    assert np.allclose(load_array(WITHIN["out/logits.npy"]), VALUES, rtol=0.001, atol=0)


@pytest.fixture
def reexecutor(content_store, docker_engine):
    return Reexecutor(content_store.client, docker=docker_engine.client, limits=Limits(memory_bytes=256 << 20))


@pytest.fixture
def make_arbiter(chain, market, assets, facilitator, reexecutor, tmp_path):
    def make(outputs=None):
        web3 = chain.provider.web3
        return Arbiter(
            Market.over_web3(web3, market.address),
            Sender(web3, facilitator.private_key),
            tmp_path / "disputes.jsonl",
            reexecutor,
            tmp_path / "arbiter.json",
            chain.blocks.height,
            outputs=outputs,
        )

    return make


@pytest.fixture
def numeric_pair(
    chain, market, publish_job, post_job, register_asset, provider2, agents, keeper, registered_keeper, submit
):
    """A replication-2 CPU job of COMMAND with NUMERIC's tolerance: replica 0 (the provider's
    asset, agents[0]) commits EXACT, replica 1 (provider2's, agents[1]) commits `second`; their
    roots differ, so a dispute opens by itself. Returns (job, assets by replica)."""

    def make(second, manifest_verification=NUMERIC):
        mhash = publish_job(COMMAND, {}, timeout_seconds=30, verification=manifest_verification)[1]
        job = post_job(manifest_hash=mhash, gpu_count=0, min_vram_mib=0, replication=2)
        pair = [register_asset(agent_account=agents[0]), register_asset(owner=provider2, agent_account=agents[1])]
        for asset_id in pair:
            market.assign(job, 0, asset_id, sender=keeper)
        for r, files in enumerate((EXACT, second)):
            submit(agents[r], job, 0, r, output_root=root_of(files), gpu_seconds=CLAIM)
        assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.DISPUTED] * 2
        return job, pair

    return make


def test_replicas_within_the_manifests_tolerance_all_stand(
    chain, market, assets, make_arbiter, numeric_pair, provider, provider2, treasury
):
    job, pair = numeric_pair(WITHIN)
    arbiter = make_arbiter()
    credits = {who: market.credits(who) for who in (provider, provider2, treasury)}
    body = {"job": job, "shard": 0, "results": [{"replica": 1, "files": b64(WITHIN)}]}
    wrong_files = {"job": job, "shard": 0, "results": [{"replica": 1, "files": b64(BEYOND)}]}
    app = FastAPI()
    app.include_router(router(arbiter))
    with TestClient(app) as http:

        def post(payload):
            raw = json.dumps(payload).encode()
            headers = sign(provider2.private_key, arbiter.chain_id, arbiter.sender.address, raw)
            return http.post("/disputes", content=raw, headers={"Content-Type": "application/json", **headers})

        refused = post(wrong_files)  # files that are not replica 1's result: refused by rule 4
        response = post(body)

    assert refused.status_code == 400 and "rule 4 (proofs): result 0 (replica 1)" in refused.json()["detail"]
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["upheld"], answer["rejected"], answer["ruling"], answer["rejected_mask"]) == (
        [0, 1],
        [],
        "resolve_replicas",
        0,
    )
    assert answer["valid_root"] == "0x" + root_of(EXACT).hex() and answer["runs"] == [answer["valid_root"]]
    tx = chain.get_receipt(answer["transaction"])
    (resolved,) = tx.events.filter(market.DisputeResolved)
    assert (resolved.rejected_replicas, resolved.upheld, resolved.rejected) == (0, 2, 0)
    assert not tx.events.filter(market.ReplicaRejected)
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.SUBMITTED] * 2
    assert [assets.stake(a).amount for a in pair] == [STAKE, STAKE]  # to the base unit
    assert {who: market.credits(who) for who in credits} == credits
    entry = arbiter.entries()[-1]
    assert {"kind": "result", "replica": 1, "path": "out/logits.npy"} in [
        {k: a[k] for k in ("kind", "replica", "path")} for a in entry["attachments"]
    ]


def test_the_arbiters_watch_fetches_replica_results_and_rejects_only_the_one_beyond_tolerance(
    chain,
    market,
    assets,
    make_arbiter,
    numeric_pair,
    agent_outputs,
    agents,
    facilitator,
    stranger,
    provider,
    treasury,
    params,
):
    job, pair = numeric_pair(BEYOND)
    urls = {pair[0]: agent_outputs(agents[0], job, 0, EXACT), pair[1]: agent_outputs(agents[1], job, 1, BEYOND)}
    agent_of = lambda asset: str(assets.agentOf(asset))  # noqa: E731
    # A stranger is refused by the agents; the facilitator, for a disputed shard, is served.
    with pytest.raises(Exception, match="answered 403"):
        OutputsClient(stranger.private_key, chain.chain_id, urls, agent_of).result(pair[1], job, 0, 1, root_of(BEYOND))
    outputs = OutputsClient(facilitator.private_key, chain.chain_id, urls, agent_of)
    assert outputs.result(pair[1], job, 0, 1, root_of(BEYOND)) == BEYOND
    with pytest.raises(Exception, match="not in the replica's on-chain root"):
        outputs.result(pair[1], job, 0, 1, root_of(WITHIN))  # files that are not what the chain holds
    credits = {who: market.credits(who) for who in (provider, treasury)}

    [ruling] = make_arbiter(outputs=outputs).run_once()

    assert (ruling["upheld"], [r["replica"] for r in ruling["rejected"]]) == ([0], [1])
    assert "its result: out/logits.npy differs beyond rtol 0.001, atol 0" in ruling["rejected"][0]["reason"]
    (resolved,) = chain.get_receipt(ruling["transaction"]).events.filter(market.DisputeResolved)
    assert resolved.rejected_replicas == 0b10
    slash = STAKE * params.slash_bps // 10_000
    reward = min(slash * 1_000 // 10_000, params.challenge_bond)
    assert [assets.stake(a).amount for a in pair] == [STAKE, STAKE - slash]  # to the base unit
    assert market.credits(provider) - credits[provider] == reward  # the first upheld provider's reward
    assert market.credits(treasury) - credits[treasury] == slash - reward
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.SUBMITTED, ReplicaState.OPEN]


def test_a_right_root_that_claims_more_than_the_run_allows_is_rejected(
    chain,
    market,
    court,
    assets,
    make_arbiter,
    publish_job,
    post_job,
    register_asset,
    agent,
    keeper,
    registered_keeper,
    submit,
    verifier,
    treasury,
    params,
):
    """The metering counterpart of tests/adversarial's known failure: a one-second run claimed
    as a minute, with the right root, challenged; the arbiter's run measures it and rejects it."""
    mhash = publish_job(COMMAND, {}, timeout_seconds=30)[1]  # exact compare, 50 % metering tolerance
    job = post_job(manifest_hash=mhash, gpu_count=0, min_vram_mib=0)
    asset = register_asset()
    market.assign(job, 0, asset, sender=keeper)
    submit(agent, job, 0, 0, output_root=root_of(EXACT), gpu_seconds=60)
    court.challenge(job, 0, sender=verifier)
    credits = {who: market.credits(who) for who in (verifier, treasury)}

    [ruling] = make_arbiter().run_once()

    assert (ruling["upheld"], ruling["ruling"], ruling["rejected_mask"]) == ([], "resolve_replicas", 0b1)
    assert ruling["valid_root"] == "0x" + root_of(EXACT).hex()  # the root was right
    assert ruling["rejected"][0]["reason"].startswith("its metering claim 60 exceeds the ")
    slash = STAKE * params.slash_bps // 10_000
    reward = min(slash * 1_000 // 10_000, params.challenge_bond)
    assert assets.stake(asset).amount == STAKE - slash  # to the base unit
    assert market.credits(verifier) - credits[verifier] == params.challenge_bond + reward  # bond back and reward
    assert market.credits(treasury) - credits[treasury] == slash - reward
    assert market.replica(job, 0, 0).state == ReplicaState.OPEN  # it runs again, unpaid
