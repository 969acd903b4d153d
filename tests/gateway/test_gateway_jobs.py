"""What the dApp reads of a client's jobs through the gateway, over a real HTTP server on the
session's chain: the list of a client's jobs (those it paid over x402 included), each
replica's agent and endpoint, and outputs relayed from an agent found by its asset's
on-chain endpoint alone."""

import importlib.util
import json
from pathlib import Path

import pytest
import requests
from eth_account import Account
from web3 import Web3

from agent.outputs import app as outputs_app
from agent.outputs import sign_request
from computenet import zk
from computenet.eip3009 import TransferAuthorization, random_nonce, split
from computenet.localnet import ServedApp
from computenet.market import Market
from computenet.merkle import MerkleTree
from computenet.store import LocalStore
from gateway.app import Chain, create_app

TOKEN = 10**6
MANIFEST = b"\x42" * 32
OUTPUTS = {"out/result.txt": b"42\n", "log/container.log": b"done\n"}

pytestmark = pytest.mark.usefixtures("stack", "token", "registered_keeper")  # session fixtures first

_spec = importlib.util.spec_from_file_location("zk_helpers", Path(__file__).parents[1] / "zk" / "zk_helpers.py")
zk_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(zk_helpers)


@pytest.fixture
def gateway(chain, stack, tmp_path):
    """A gateway on the session chain that knows no agent's outputs server: it finds each by
    its asset's endpoint. Returns its URL."""
    web3 = Web3(Web3.HTTPProvider(chain.provider.uri))
    api = create_app(Chain(web3, stack.market.address), "http://127.0.0.1:9", "eip155:31337", Account.create().key)
    served = ServedApp(api)
    yield served.url
    served.stop()


def jobs_of(gateway, client):
    answer = requests.get(f"{gateway}/jobs", params={"client": client}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def posted(receipt, market):
    event = receipt.events.filter(market.JobPosted)[0]
    return event.job, event.budget, receipt.block_number, receipt.txn_hash


def test_a_clients_jobs_newest_first_with_those_it_paid_over_x402(
    chain, stack, market, token, client, provider2, facilitator, make_requirements, gateway
):
    own = [market.post_job(MANIFEST, make_requirements(shard_count=n).as_tuple(), sender=client) for n in (1, 2)]
    market.post_job(MANIFEST, make_requirements().as_tuple(), sender=provider2)  # someone else's
    req = make_requirements(shard_count=3)
    auth = TransferAuthorization(
        payer=client.address,
        payee=market.address,
        value=market.quote(req.as_tuple()),
        valid_after=0,
        valid_before=chain.pending_timestamp + 3_600,
        nonce=random_nonce(),
    )
    signature = auth.sign(client.private_key, token.name(), token.version(), chain.chain_id, token.address)
    paid = stack.funder.post_job_with_authorization(
        MANIFEST, req.as_tuple(), auth.market_args(), False, *split(signature), sender=facilitator
    )
    (first, first_budget, *_), (second, *_), (x402, *_) = (posted(r, market) for r in (*own, paid))
    market.cancel(first, 0, sender=client)  # its escrow comes back: the list shows the job as it is now

    rows = jobs_of(gateway, client.address.lower())  # any case of the address

    expected = [posted(r, market) for r in (paid, own[1], own[0])]
    assert [(r["job"], r["budget"], r["block"], r["transaction"]) for r in rows] == expected
    assert [r["job"] for r in rows] == [x402, second, first]
    assert all(r["client"] == client.address for r in rows)
    assert [(r["escrow"], r["unfinished"]) for r in rows] == [
        (expected[0][1], 3),
        (expected[1][1], 2),
        (0, 0),
    ]
    assert first_budget == market.quote(make_requirements().as_tuple()) > 0
    assert jobs_of(gateway, Account.create().address) == []


def test_a_malformed_client_is_refused_naming_it(gateway):
    for client in ("0x1234", "not an address", "0x" + "g" * 40):
        answer = requests.get(f"{gateway}/jobs", params={"client": client}, timeout=10)
        assert answer.status_code == 422 and answer.json()["error"] == "invalid_address"
        assert answer.json()["message"].startswith(f"client: {client!r} is not an address")
    missing = requests.get(f"{gateway}/jobs", timeout=10)
    assert missing.status_code == 422 and "client: required" in missing.json()["message"]


@pytest.fixture
def served_outputs(chain, client, agents, tmp_path):
    """The outputs server of `agents[0]`, serving a result of job `job` shard 0 replica 0 to its client."""
    store = LocalStore(tmp_path / "agent-store")
    work = tmp_path / "agent-work"
    served = ServedApp(
        outputs_app(
            work, store, chain.chain_id, agents[0].address, lambda job, s, r, who: who.lower() == client.address.lower()
        )
    )

    def publish(job):
        folder = work / f"computenet-{job}-0-0-1"
        folder.mkdir(parents=True)
        files = {leaf: store.put(data)["sha256"] for leaf, data in OUTPUTS.items()}
        root = "0x" + MerkleTree.from_files(OUTPUTS).root.hex()
        (folder / "outputs.json").write_text(json.dumps({"root": root, "files": files}))
        return root

    served.publish = publish
    yield served
    served.stop()


def test_replicas_name_their_agent_and_endpoint_and_outputs_are_relayed_from_the_endpoint(
    chain, market, assets, client, provider, keeper, agents, register_asset, post_job, gateway, served_outputs
):
    with_endpoint = register_asset(agent_account=agents[0])
    assets.set_endpoint(with_endpoint, served_outputs.url + "/", sender=provider)
    without = register_asset(agent_account=agents[1])
    job = post_job(shard_count=3)
    market.assign(job, 0, with_endpoint, sender=keeper)
    market.assign(job, 1, without, sender=keeper)

    view = requests.get(f"{gateway}/jobs/{job}", timeout=10).json()

    hosts = [[(r["asset"], r["agent"], r["endpoint"]) for r in s["replicas"]] for s in view["shards"]]
    assert hosts == [
        [(with_endpoint, agents[0].address, served_outputs.url + "/")],
        [(without, agents[1].address, "")],
        [(0, None, None)],
    ]

    # Shard 0's outputs: its agent is reached at the endpoint its asset names on chain.
    root = served_outputs.publish(job)
    target = f"/outputs/{job}/0/0/file?path=out/result.txt"
    signed = sign_request(client.private_key, chain.chain_id, agents[0].address, target)
    answer = requests.get(f"{gateway}/jobs/{job}/outputs/0/0/file?path=out/result.txt", headers=signed, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.content == b"42\n" and answer.headers["X-Merkle-Root"] == root
    index = requests.get(
        f"{gateway}/jobs/{job}/outputs/0/0",
        headers=sign_request(client.private_key, chain.chain_id, agents[0].address, f"/outputs/{job}/0/0"),
        timeout=10,
    )
    assert index.status_code == 200 and index.json()["root"] == root
    unsigned = requests.get(f"{gateway}/jobs/{job}/outputs/0/0", timeout=10)
    assert unsigned.status_code == 401  # the agent's own refusal, relayed

    # Shard 1's asset names no endpoint, shard 2 was never assigned.
    nowhere = requests.get(f"{gateway}/jobs/{job}/outputs/1/0", timeout=10)
    assert nowhere.status_code == 502 and nowhere.json()["error"] == "unknown_agent"
    assert f"of asset {without}: it names no endpoint on chain" in nowhere.json()["message"]
    open_replica = requests.get(f"{gateway}/jobs/{job}/outputs/2/0", timeout=10)
    assert open_replica.status_code == 404 and open_replica.json()["error"] == "not_assigned"


def test_an_endpoint_that_does_not_answer_is_a_502_naming_the_asset(
    market, assets, provider, keeper, register_asset, post_job, gateway
):
    from computenet.localnet import free_port

    asset = register_asset()
    assets.set_endpoint(asset, f"http://127.0.0.1:{free_port()}", sender=provider)
    job = post_job()
    market.assign(job, 0, asset, sender=keeper)
    answer = requests.get(f"{gateway}/jobs/{job}/outputs/0/0", timeout=10)
    assert answer.status_code == 502 and answer.json()["error"] == "agent_unreachable"
    assert f"asset {asset}" in answer.json()["message"]


def test_a_zk_jobs_view_names_its_model_and_marks_its_proven_replica(
    chain,
    stack,
    owner,
    client,
    provider,
    keeper,
    agent,
    register_asset,
    make_requirements,
    post_job,
    gateway,
    tmp_path,
):
    blobs = zk.ModelArtifacts.load(zk.EXAMPLE_MODEL)  # not the session fixture: ape would rebase isolation
    sdk = Market.from_stack(stack)
    model = zk_helpers.register_model(sdk, blobs, owner)
    job, files = zk_helpers.post_zk_job(sdk, blobs, model, client, make_requirements(shard_count=2))
    asset = register_asset(gpu_count=2)  # both shards at once
    for shard in (0, 1):
        sdk.assign(job, shard, asset, sender=keeper)
    zk_helpers.prove_and_submit(sdk, chain, blobs, files, job, 0, agent, provider, tmp_path)
    # shard 1's run failed: nothing to prove, so it goes the optimistic way and is finalized unproven
    zk_helpers.run_for(sdk, chain, job, 1, 10)
    sdk.submit_result(job, 1, 0, b"\x01" * 32, 10, 1, agent.private_key, sender=provider)
    chain.pending_timestamp += sdk.parameters().challenge_window + 1
    sdk.finalize(job, 1, sender=keeper)

    view = requests.get(f"{gateway}/jobs/{job}", timeout=10).json()

    assert (view["verification"], view["model"]) == ("zk", "0x" + model.hex())
    replicas = [(s["state"], r["state"], r["proven"]) for s in view["shards"] for r in s["replicas"]]
    assert replicas == [("finalized", "finalized", True), ("finalized", "finalized", False)]
    plain = requests.get(f"{gateway}/jobs/{post_job()}", timeout=10).json()
    assert (plain["verification"], plain["model"], plain["shards"][0]["replicas"][0]["proven"]) == (
        "optimistic",
        None,
        False,
    )


def test_a_tee_jobs_view_marks_its_attested_replica(
    chain, stack, client, provider, keeper, agent, attestor, register_asset, make_requirements, gateway
):
    sdk = Market.from_stack(stack)
    registry = stack.attestations
    asset = register_asset(gpu_count=2)
    now = chain.pending_timestamp
    binding = registry.node_report_data(asset, agent.address)
    registry.attest_node(asset, b"\x01" * 32, 1, bytes(48), 0, now - 60, now + 86_400, binding, sender=attestor)
    job = sdk.post_job(b"\x0e" * 32, make_requirements(shard_count=2, verification=4), sender=client)
    for shard in (0, 1):
        sdk.assign(job, shard, asset, sender=keeper)
        zk_helpers.run_for(sdk, chain, job, shard, 10)
        sdk.submit_result(job, shard, 0, b"\x01" * 32, 10, 0, agent.private_key, sender=provider)
    registry.attest_result(
        job, 0, 0, b"\x02" * 32, bytes(48), 0, registry.result_report_data(job, 0, 0), sender=attestor
    )

    view = requests.get(f"{gateway}/jobs/{job}", timeout=10).json()

    assert view["verification"] == "tee"
    assert [r["attested"] for s in view["shards"] for r in s["replicas"]] == [True, False]
