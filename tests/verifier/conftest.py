"""Verifier fixtures: the arbiter and its re-executor over the session's chain, Docker engine and
content store; agents' outputs services, answering whom verifier.access allows."""

import json

import pytest
from ape.exceptions import ContractLogicError

from agent.outputs import app as outputs_app
from computenet.domain import ReplicaState, Verification
from computenet.localnet import ServedApp
from computenet.manifest import parse_manifest
from computenet.market import Market
from computenet.merkle import MerkleTree
from computenet.sandbox import Limits
from computenet.store import LocalStore
from computenet.web3calls import Sender
from verifier.access import may_read
from verifier.arbiter import Arbiter
from verifier.reexecute import Reexecutor
from verifier.sampling import seed_block


@pytest.fixture
def agent_outputs(chain, market, keepers, content_store, tmp_path):
    """`serve(agent_account, job, replica, files)` serves `files` as replica `replica` (shard 0)
    of `job`, as agent/outputs.py serves a lease's outputs, to the callers verifier.access.may_read
    allows from the chain: the job's client, a bonded verifier the replica was sampled for (from
    the hash of the block after its submission), a facilitator while the shard is disputed.
    Returns the service's URL."""
    served = []

    def seed_of(job, replica):
        submitted = [
            log
            for log in market.ResultSubmitted.range(0, chain.blocks.height + 1)
            if (log.job, log.shard, log.replica) == (job, 0, replica)
        ]
        if not submitted or seed_block(submitted[-1].block_number) > chain.blocks.height:
            return None
        return bytes(chain.blocks[seed_block(submitted[-1].block_number)].hash)

    def bonded(caller):
        try:
            keepers.active_keeper_id(caller)
            return True
        except ContractLogicError:
            return False

    def serve(agent_account, job, replica, files):
        work, store = tmp_path / f"work-{job}-{replica}", LocalStore(tmp_path / f"outputs-{job}-{replica}")
        folder = work / f"computenet-{job}-0-{replica}-1"
        folder.mkdir(parents=True)
        index = {
            "root": "0x" + MerkleTree.from_files(files).root.hex(),
            "files": {path: store.put(data)["sha256"] for path, data in files.items()},
        }
        (folder / "outputs.json").write_text(json.dumps(index))

        def allowed(job_id, shard, replica_, caller):
            assert (shard, replica_) == (0, replica)  # the one replica served here
            record = market.job(job_id)
            req = record.requirements
            manifest = parse_manifest(content_store.client.get("keccak256", bytes(record.manifest_hash).hex()))
            disputed = any(market.replica(job_id, 0, r).state == ReplicaState.DISPUTED for r in range(req.replication))
            return may_read(
                caller=caller,
                job_client=record.client,
                mode=Verification(req.verification),
                spot_check_bps=manifest.verification.spot_check_bps,
                seed=seed_of(job_id, replica),
                job=job_id,
                shard=0,
                replica=replica,
                is_bonded=bonded(caller),
                is_facilitator=market.is_facilitator(caller),
                disputed=disputed,
                on_chain=market.replica(job_id, 0, replica).state
                in (ReplicaState.SUBMITTED, ReplicaState.DISPUTED, ReplicaState.FINALIZED),
            )

        app = ServedApp(outputs_app(work, store, chain.chain_id, agent_account.address, allowed))
        served.append(app)
        return app.url

    yield serve
    for app in served:
        app.stop()


@pytest.fixture
def reexecutor(content_store, docker_engine):
    # The limits the test agents run with (tests/agent/conftest.py).
    return Reexecutor(content_store.client, docker=docker_engine.client, limits=Limits(memory_bytes=256 << 20))


@pytest.fixture
def make_arbiter(chain, market, assets, facilitator, tmp_path, reexecutor):
    """An Arbiter over the session chain; by default with the facilitator key and its own files."""

    def make(key=None, audit_log=None, state=None, **options):
        web3 = chain.provider.web3
        return Arbiter(
            Market.over_web3(web3, market.address),
            Sender(web3, (key or facilitator).private_key),
            audit_log or tmp_path / "audit" / "disputes.jsonl",
            reexecutor,
            state or tmp_path / "arbiter.json",
            **options,
        )

    return make


@pytest.fixture
def arbiter(make_arbiter):
    return make_arbiter()
