"""Gas of each market step, checked against the committed `gas-snapshot`.

Gas is deterministic, so any step that costs more than its snapshot fails the test.
After a deliberate change, rewrite the snapshot with

    make gas-snapshot        (UPDATE_GAS_SNAPSHOT=1 for this test)

Scenario: a warm market, the usual state of a running network. The measured job is
the second one its client, provider, keeper and treasury take part in, so their
credit slots already exist; the first credit ever paid to an account costs 17,100
gas more (a new storage slot), once per account.

The same one-shard job also goes through the lean market (bench/lean/LeanMarket.vy, the
`lean_*` figures): a market that stores three words for a shard and takes the job's other
terms back as calldata, on the same token, keeper registry and asset contract.
"""

import json
import os
from pathlib import Path

import pytest
from eth_utils import keccak
from lean_market import DEADLINE, EXPIRE, snapshot_requirements

from computenet import zk
from computenet.deploy import deploy_verifier
from computenet.domain import MAX_DECLINES, Requirements, Verification
from computenet.eip3009 import TransferAuthorization, split
from computenet.merkle import MerkleTree
from computenet.receipts import sign_cancel

SNAPSHOT = Path(__file__).resolve().parents[2] / "gas-snapshot"
LIFECYCLE_LIMIT = 400_000  # post + assign + submit + finalize, one shard
# The one-shard lifecycle before disputes moved to the court and the market began tracking
# what it owes; the rules that make cheating unprofitable may cost at most 5 % on it.
LIFECYCLE_BEFORE_COURT = 361_268
LIFECYCLE_GROWTH = 1.05
# What leases holding CPU cores, memory and disk (not only GPUs) may add to the one-shard
# lifecycle: the job's demand word, one new slot at posting (22,100 of it), then read on assign
# and submit, and the asset's resource word read and written on both. Measured: 39,641.
RESOURCES_ALLOWANCE = 40_000
# An x402-funded post may cost at most this much more than the two transactions it replaces:
# a plain EIP-3009 transfer to the market plus a plain post.
AUTHORIZED_POST_MARGIN = 10_000
REGISTER_LIMIT = 200_000
LIFECYCLE_STEPS = ("post", "assign", "submit", "finalize")
BATCHED_SHARD_LIMIT = 80_000  # a shard of a 64-shard job, amortized over its batches
# Calldata costs 16 gas per non-zero byte and 4 per zero byte, so times derived from
# the clock would make gas drift; the measured calls use fixed times (DEADLINE, EXPIRE).


_proofs: dict = {}


def _prove(blobs, words, binding, workdir) -> zk.Proof:
    """A real proof, once per (input, binding): ape reverts the chain between the tests, so
    both measure the same job and lease, and the second reuses the first's proof."""
    key = (tuple(words), binding)
    if key not in _proofs:
        _proofs[key] = zk.prove(blobs, words, zk.tag_words(binding), workdir)
    return _proofs[key]


def read_snapshot() -> dict[str, int]:
    if not SNAPSHOT.exists():
        return {}
    rows = [line.split() for line in SNAPSHOT.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {name: int(gas) for name, gas in rows}


def write_snapshot(measured: dict[str, int]) -> None:
    lines = ["# gas per step (receipt gasUsed, 21,000 intrinsic included); see tests/gas/test_gas_snapshot.py"]
    lines += [f"{name} {gas}" for name, gas in measured.items()]
    SNAPSHOT.write_text("\n".join(lines) + "\n")


@pytest.fixture
def measure(
    chain,
    market,
    court,
    assets,
    token,
    keeper,
    client,
    provider,
    facilitator,
    treasury,
    verifier,
    stranger,
    agents,
    register_asset,
    post_job,
    registered_keeper,
    submit,
    params,
    make_spec,
    sign_checkpoint,
    run_for,
    stack,
    owner,
    sign_receipt,
    sign_receipts,
    blobs,
    tmp_path_factory,
    attestor,
    lean,
    lean_lifecycle,
):
    """Runs every measured step once and returns {step: gas}; `run.receipts` keeps the
    receipts of the steps GAS_BREAKDOWN traces."""
    gas: dict[str, int] = {}
    receipts: dict[str, object] = {}

    agent = agents[0]

    def lifecycle(shards=1, replication=1):
        # One GPU for each shard: an asset's leases hold its GPUs together.
        asset_ids = [register_asset(agent_account=a, expire=EXPIRE, gpu_count=shards) for a in agents[:replication]]
        post = market.post_job(keccak(b"manifest"), _req(shards, replication), sender=client)
        job = post.events.filter(market.JobPosted)[0].job
        steps = {"post": post.gas_used, "assign": 0, "submit": 0, "finalize": 0, "total": post.gas_used}
        mined = {"post": post}
        for s in range(shards):
            for r in range(replication):
                mined["assign"] = market.assign(job, s, asset_ids[r], sender=keeper)
                mined["submit"] = submit(agents[r], job, s, r)
                steps["assign"], steps["submit"] = mined["assign"].gas_used, mined["submit"].gas_used
                steps["total"] += steps["assign"] + steps["submit"]
        chain.mine(deltatime=params.challenge_window + 1)
        for s in range(shards):
            mined["finalize"] = market.finalize(job, s, sender=keeper)
            steps["finalize"] = mined["finalize"].gas_used
            steps["total"] += steps["finalize"]
        if shards == replication == 1:
            receipts.update(mined)
        return steps  # the last assign, submit and finalize, and the sum of all

    def _req(shards=1, replication=1, verification=None):
        return snapshot_requirements(shards, replication, verification).as_tuple()

    def _authorization(label: bytes, payee: str, value: int) -> TransferAuthorization:
        # A fixed nonce and window: calldata gas depends on the bytes.
        return TransferAuthorization(client.address, payee, value, 0, DEADLINE, keccak(b"gas-snapshot " + label))

    def _sign(auth: TransferAuthorization) -> bytes:
        return auth.sign(client.private_key, token.name(), token.version(), chain.chain_id, token.address)

    def run() -> dict[str, int]:
        first = assets.register(make_spec(expire=EXPIRE).as_tuple(), agent, b"\x11" * 32, sender=provider)
        gas["register_first_asset"] = first.gas_used
        lifecycle()  # warms the participants' credit slots
        register = assets.register(make_spec(expire=EXPIRE).as_tuple(), agent, b"\x11" * 32, sender=provider)
        gas["register"] = register.gas_used
        steps = lifecycle()
        gas["post_1_shard"] = steps["post"]
        gas["assign"] = steps["assign"]
        gas["submit_result"] = steps["submit"]
        gas["finalize_last_shard"] = steps["finalize"]
        gas["lifecycle_1_shard"] = steps["total"]
        eight = lifecycle(shards=8)
        gas["post_8_shards"] = eight["post"]
        gas["lifecycle_8_shards"] = eight["total"]
        gas["lifecycle_1_shard_replication_2"] = lifecycle(replication=2)["total"]
        gas["withdraw"] = market.withdraw(provider, sender=provider).gas_used
        # x402: the token's own transferWithAuthorization (between two funded accounts, as
        # USDC's 85.7k anchor), and a post funded by one
        transfer = _authorization(b"transfer", treasury.address, 1_000)
        gas["token_transfer_with_authorization"] = token.transferWithAuthorization(
            *transfer.token_args(_sign(transfer)), sender=facilitator
        ).gas_used
        funded = _authorization(b"post", market.address, market.quote(_req(1, 1)))
        gas["post_1_shard_by_authorization"] = stack.funder.post_job_with_authorization(
            keccak(b"manifest"), _req(1, 1), funded.market_args(), False, *split(_sign(funded)), sender=facilitator
        ).gas_used
        # a lease that runs out (on an asset with GPUs for the disputes' three leases after it)
        asset = register_asset(gpu_count=3)
        job = post_job()
        market.assign(job, 0, asset, sender=keeper)
        chain.mine(deltatime=Requirements(*_req(1, 1)).lease_seconds(params.lease_grace) + 1)
        gas["reclaim"] = market.reclaim(job, 0, 0, sender=keeper).gas_used
        # disputes: a challenge, a ruling each way, and the default outcome after the deadline
        job, challenged = _challenged(asset)
        gas["challenge"] = challenged.gas_used
        gas["resolve_upheld"] = court.resolve(job, 0, b"\x42" * 32, sender=facilitator).gas_used
        job, _ = _challenged(asset)
        gas["resolve_rejected"] = court.resolve(job, 0, b"\x43" * 32, sender=facilitator).gas_used
        job, _ = _challenged(asset)
        chain.pending_timestamp = court.ruling_deadline(job, 0) + 1
        gas["expire_dispute"] = court.expire(job, 0, sender=stranger).gas_used
        # declines (the shard's last one fails it and cancels what is left) and a relayed signed cancel
        job = post_job()
        for n in range(MAX_DECLINES):
            market.assign(job, 0, asset, sender=keeper)
            declined = market.decline(job, 0, 0, b"\x01" * 32, sender=agent)
            gas["decline" if n == 0 else "decline_that_fails_the_shard"] = declined.gas_used
        job = post_job()
        until = 0x7FFF_FFFF  # a fixed time (no zero byte): calldata, and so gas, the same in any run
        sig = sign_cancel(client.private_key, chain.chain_id, market.address, job, 0, until)
        used = court.cancel_with_signature(job, 0, until, sig, sender=stranger).gas_used
        # A zero calldata byte costs 12 gas less than another, and the signature's bytes differ with
        # the job and time it signs: count it as if none were zero, so the figure is the same in any order.
        gas["cancel_with_signature"] = used + 12 * bytes(sig).count(0)
        # checkpoints: a lease commits one, runs out and is reclaimed (adopting it); the shard is
        # reassigned and finalized, paying the contribution before the result
        asset = register_asset()
        job = post_job()
        market.assign(job, 0, asset, sender=keeper)
        run_for(job, 0, 0, 600)
        signed = sign_checkpoint(agent, job, 0, 0, keccak(b"gas-snapshot checkpoint"), 600)
        used = market.commit_checkpoint(*signed.market_args(), sender=stranger).gas_used
        gas["commit_checkpoint"] = used + 12 * bytes(signed.signature).count(0)  # as cancel_with_signature
        chain.pending_timestamp = market.replica(job, 0, 0).deadline + 1
        gas["reclaim_adopting_checkpoint"] = market.reclaim(job, 0, 0, sender=keeper).gas_used
        market.assign(job, 0, asset, sender=keeper)
        submit(agent, job, 0, 0)
        chain.mine(deltatime=params.challenge_window + 1)
        gas["finalize_with_contribution"] = market.finalize(job, 0, sender=keeper).gas_used
        _zk()
        _tee()
        _batched()
        _lean()
        return gas

    def _lean():
        """The same one-shard job through the lean market (bench/lean/LeanMarket.vy), warm as above."""
        lean_lifecycle()
        steps = lean_lifecycle()
        for step in LIFECYCLE_STEPS:
            gas[f"lean_{step}"] = steps[step].gas_used
            receipts[f"lean_{step}"] = steps[step]
        gas["lean_lifecycle_1_shard"] = sum(steps[step].gas_used for step in LIFECYCLE_STEPS)

    def _batched():
        """A 64-shard job in batches: one assign_many and one finalize_many through the relay, one
        submit_results per agent (16 results under one signature); each figure also per item, and
        the job per shard."""
        relay, shards, per = stack.relay, 64, 64 // len(agents)
        asset_ids = [register_asset(agent_account=a, expire=EXPIRE, gpu_count=per, max_leases=per) for a in agents]
        post = market.post_job(keccak(b"manifest"), _req(shards), sender=client)
        job = post.events.filter(market.JobPosted)[0].job
        assigned = relay.assign_many(market, [(job, s, asset_ids[s // per]) for s in range(shards)], sender=keeper)
        total = post.gas_used + assigned.gas_used
        for k, a in enumerate(agents):
            results = [(job, s, 0, b"\x42" * 32, 1_000, 0) for s in range(k * per, (k + 1) * per)]
            sig = sign_receipts(a, results)
            submitted = market.submit_results(results, sig, sender=a)
            used = submitted.gas_used + 12 * bytes(sig).count(0)  # as cancel_with_signature
            total += used
        chain.mine(deltatime=params.challenge_window + 1)
        finalized = relay.finalize_many(market, [(job, s) for s in range(shards)], sender=keeper)
        total += finalized.gas_used
        receipts.update(post_64=post, assign_many_64=assigned, finalize_many_64=finalized)
        receipts[f"submit_results_{per}"] = submitted
        gas["assign_many_64"] = assigned.gas_used
        gas["assign_many_per_item"] = assigned.gas_used // shards
        gas["submit_results_16"] = used
        gas["submit_results_per_item"] = used // per
        gas["finalize_many_64"] = finalized.gas_used
        gas["finalize_many_per_item"] = finalized.gas_used // shards
        gas["lifecycle_64_shards_batched"] = total
        gas["lifecycle_64_shards_batched_per_shard"] = total // shards

    def _tee():
        """The tee level: a node verdict recorded, a tee job's shard assigned to the attested
        asset, its result submitted and attested (short window), then finalized."""
        registry = stack.attestations
        asset = register_asset(agent_account=agent, expire=EXPIRE)
        # Calldata costs by its zero bytes: constants with none, and a window end whose low
        # bytes are never zero, so the figure does not drift with the clock.
        valid_until = (chain.pending_timestamp + 30 * 86_400) | 0x010101
        binding = registry.node_report_data(asset, agent)
        attested = registry.attest_node(
            asset, b"\x11" * 32, 1, b"\x22" * 48, 0, 1, valid_until, binding, sender=attestor
        )
        gas["attest_node"] = attested.gas_used + 12 * bytes(binding).count(0)
        req = _req(verification=Verification.TEE)
        post = market.post_job(keccak(b"gas-snapshot tee manifest"), req, sender=client)
        job = post.events.filter(market.JobPosted)[0].job
        assign = market.assign(job, 0, asset, sender=keeper).gas_used
        gas["assign_tee"] = assign
        submitted = submit(agent, job, 0, 0).gas_used
        report = registry.result_report_data(job, 0, 0)
        result = registry.attest_result(job, 0, 0, b"\x33" * 32, b"\x22" * 48, 0, report, sender=attestor)
        gas["attest_result"] = result.gas_used + 12 * bytes(report).count(0)
        chain.mine(deltatime=registry.short_window() + 1)
        finalized = market.finalize(job, 0, sender=keeper).gas_used
        gas["lifecycle_1_shard_tee"] = post.gas_used + assign + submitted + gas["attest_result"] + finalized

    def _zk():
        """The zk level: a model registered with its EZKL verifier, a manifest bound to it, and
        one shard's real proof submitted through the registry (verify + submit + finalize)."""
        models = stack.models
        zk_verifier = deploy_verifier(blobs, owner)
        # An artifact hash of its own, so its id is new even where another test file registered
        # the model in this session's registry (ids cover the artifact hash and the verifier's code).
        artifact_hash = keccak(blobs.artifact_hash + b"gas-snapshot")
        registered = models.register_model(
            artifact_hash, zk_verifier, blobs.input_words, blobs.output_words, sender=owner
        )
        gas["register_model"] = registered.gas_used
        model = bytes(registered.events.filter(models.ModelRegistered)[0].model)
        words = zk.quantize(blobs.samples()[0]["x"], blobs.input_scale)
        inputs = MerkleTree.from_files({zk.input_path(0): zk.encode_words(words)})
        manifest_hash = keccak(b"gas-snapshot zk manifest")
        gas["bind_zk"] = models.bind(manifest_hash, model, inputs.root, sender=client).gas_used
        asset = register_asset(agent_account=agent, expire=EXPIRE)
        req = _req(verification=Verification.ZK)
        job = market.post_job(manifest_hash, req, sender=client).events.filter(market.JobPosted)[0].job
        market.assign(job, 0, asset, sender=keeper)
        binding = zk.binding(chain.chain_id, market.address, job, 0, 0, market.replica(job, 0, 0).lease)
        proof = _prove(blobs, words, binding, tmp_path_factory.mktemp("zk-proof"))
        _, _, outputs, _ = blobs.layout.split(proof.instances)
        out = MerkleTree.from_files({zk.OUTPUT_LEAF: zk.encode_words(outputs), "log/container.log": b"proven\n"})
        sig = sign_receipt(agent, job, 0, 0, out.root, 1_000)
        used = models.submit_result(
            job,
            0,
            0,
            out.root,
            1_000,
            sig,
            proof.proof,
            list(proof.instances),
            inputs.proof(zk.input_path(0)),
            out.proof(zk.OUTPUT_LEAF),
            sender=stranger,
        ).gas_used
        # A proof's bytes are random (Halo2 blinds it), so count its zero bytes as if they were
        # not, as cancel_with_signature does with its signature: the same figure for any proof.
        gas["submit_proven_zk"] = used + 12 * proof.proof.count(0) + 12 * bytes(sig).count(0)

    def _challenged(asset):
        """A new job leased to `asset`, submitted and challenged: (job, the challenge's receipt)."""
        job = post_job()
        market.assign(job, 0, asset, sender=keeper)
        submit(agent, job, 0, 0)
        return job, court.challenge(job, 0, sender=verifier)

    run.receipts = receipts
    run.contracts = {
        market.address: "JobMarket",
        assets.address: "ComputeAsset",
        stack.keepers.address: "KeeperRegistry",
        token.address: "TestToken",
        lean.market.address: "LeanMarket",
        lean.assets.address: "ComputeAsset",
    }
    return run


def write_breakdown(path: Path, receipts: dict, web3, contracts: dict[str, str]) -> None:
    """Each traced step's gas by category (bench/gas_breakdown.py); batches also per item; and
    the one-shard lifecycles' storage gas by contract (`contracts`: address -> name)."""
    from bench.gas_breakdown import per_item, trace

    names = {address.lower(): name for address, name in contracts.items()}
    steps: dict = {}
    by_contract: dict[str, dict[str, int]] = {}
    for name, r in receipts.items():
        steps[name], storage = trace(web3, r.txn_hash, r.gas_used)
        if name.removeprefix("lean_") in LIFECYCLE_STEPS:
            by_contract[name] = {names.get(a, a): g for a, g in storage.items()}
    for name in [n for n in steps if n.endswith(("_many_64", "_results_16", "post_64"))]:
        steps[f"{name} per item"] = per_item(steps[name], int(name.rsplit("_", 1)[1]))
    steps["storage by contract"] = by_contract
    path.write_text(json.dumps(steps, indent=2) + "\n")


def test_gas_within_snapshot(measure, chain):
    measured = measure()
    if os.environ.get("GAS_BREAKDOWN"):  # make bench: where each step's gas goes
        write_breakdown(Path(os.environ["GAS_BREAKDOWN"]), measure.receipts, chain.provider.web3, measure.contracts)
    if os.environ.get("UPDATE_GAS_SNAPSHOT"):
        write_snapshot(measured)
    if os.environ.get("GAS_RESULTS"):  # make bench: the measured figures for the report
        Path(os.environ["GAS_RESULTS"]).write_text(json.dumps(measured, indent=2) + "\n")
    snapshot = read_snapshot()
    assert snapshot, f"{SNAPSHOT} is missing: run `make gas-snapshot`"
    over = {
        name: (gas, snapshot.get(name))
        for name, gas in measured.items()
        if name not in snapshot or gas > snapshot[name]
    }
    assert not over, f"gas above snapshot (measured, snapshot): {over}"


def test_gas_goals(measure):
    measured = measure()
    assert measured["lifecycle_1_shard"] <= LIFECYCLE_LIMIT + RESOURCES_ALLOWANCE
    assert measured["lifecycle_1_shard"] <= LIFECYCLE_BEFORE_COURT * LIFECYCLE_GROWTH + RESOURCES_ALLOWANCE
    assert measured["register"] <= REGISTER_LIMIT
    assert measured["register_first_asset"] <= REGISTER_LIMIT
    # In batches a 64-shard job's shards cost at most half of what each costs sent alone, and
    # at most the scale goal (each agent's results under one signature and one commitment).
    assert 2 * measured["lifecycle_64_shards_batched_per_shard"] <= measured["lifecycle_8_shards"] // 8
    assert measured["lifecycle_64_shards_batched_per_shard"] <= BATCHED_SHARD_LIMIT
    # The lean market stores three words a shard where JobMarket stores six, under the same rules.
    assert measured["lean_lifecycle_1_shard"] < measured["lifecycle_1_shard"]
    plain = measured["token_transfer_with_authorization"] + measured["post_1_shard"]
    assert measured["post_1_shard_by_authorization"] <= plain + AUTHORIZED_POST_MARGIN
