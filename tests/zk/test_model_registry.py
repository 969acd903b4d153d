"""The zk level on chain with real EZKL proofs (.zk/models/blobs, built by `make zk`): a proven
result is final at once and paid to the base unit; a tampered proof, swapped outputs, another
shard's input, a proof for another job, and an unregistered model are each refused with their
reason, and nothing moves."""

import ape
import pytest
from eth_utils import keccak

from computenet import zk
from computenet.deploy import deploy_verifier
from computenet.domain import ReplicaState, Verification, settle_amounts
from computenet.merkle import MerkleTree

GPU_SECONDS = 120
LOG = b"computenet: proven\n"


@pytest.fixture(scope="session")
def zk_verifier(blobs, owner):
    return deploy_verifier(blobs, owner)


@pytest.fixture(scope="session")
def model(stack, blobs, zk_verifier, owner):
    receipt = stack.models.register_model(
        blobs.artifact_hash, zk_verifier, blobs.input_words, blobs.output_words, sender=owner
    )
    return bytes(receipt.events.filter(stack.models.ModelRegistered)[0].model)


@pytest.fixture(scope="session")
def inputs(blobs):
    """Two shards' input files, one sample each, and their tree (the manifest's inputs root)."""
    samples = blobs.samples()
    files = {zk.input_path(s): zk.encode_words(zk.quantize(samples[s]["x"], blobs.input_scale)) for s in (0, 1)}
    return files, MerkleTree.from_files(files)


_proofs: dict = {}


def prove(blobs, words, binding, tmp):
    """A real proof (cached: ape's isolation gives each test the same job ids)."""
    key = (tuple(words), binding)
    if key not in _proofs:
        _proofs[key] = zk.prove(blobs, words, zk.tag_words(binding), tmp)
    return _proofs[key]


@pytest.fixture
def zk_job(stack, model, inputs, client, register_asset, registered_keeper, make_requirements):
    """Posts a bound two-shard zk job and assigns shard 0; returns (job, asset, manifest hash)."""
    manifest_hash = keccak(b"zk manifest")
    stack.models.bind(manifest_hash, model, inputs[1].root, sender=client)
    asset = register_asset()
    req = make_requirements(verification=Verification.ZK, shard_count=2)
    job = (
        stack.market.post_job(manifest_hash, req.as_tuple(), sender=client).events.filter(stack.market.JobPosted)[0].job
    )
    stack.market.assign(job, 0, asset, sender=registered_keeper)
    return job, asset, manifest_hash


def result_for(stack, blobs, inputs, chain, job, shard, tmp, *, words_of=None):
    """The proof, instances, output root and both Merkle proofs an honest agent submits."""
    files, tree = inputs
    lease = stack.market.replica(job, shard, 0).lease
    binding = zk.binding(chain.chain_id, stack.market.address, job, shard, 0, lease)
    words = zk.decode_words(files[zk.input_path(words_of if words_of is not None else shard)])
    proof = prove(blobs, words, binding, tmp)
    _, _, outputs, _ = blobs.layout.split(proof.instances)
    out_tree = MerkleTree.from_files({zk.OUTPUT_LEAF: zk.encode_words(outputs), "log/container.log": LOG})
    return dict(
        proof=proof.proof,
        instances=list(proof.instances),
        root=out_tree.root,
        input_proof=tree.proof(zk.input_path(shard)),
        output_proof=out_tree.proof(zk.OUTPUT_LEAF),
    )


def submit(stack, sign_receipt, agent, sender, job, shard, r):
    sig = sign_receipt(agent, job, shard, 0, r["root"], GPU_SECONDS)
    return stack.models.submit_result(
        job,
        shard,
        0,
        r["root"],
        GPU_SECONDS,
        sig,
        r["proof"],
        r["instances"],
        r["input_proof"],
        r["output_proof"],
        sender=sender,
    )


def test_the_chain_binding_is_the_sdks(stack, chain):
    assert stack.models.binding(7, 3, 0, 2) == zk.binding(chain.chain_id, stack.market.address, 7, 3, 0, 2)
    assert stack.models.TAG_WORDS() == zk.TAG_WORDS


def test_a_valid_proof_is_accepted_and_final_at_once(
    stack, blobs, inputs, chain, zk_job, sign_receipt, agent, provider, stranger, keeper, treasury, tmp_path
):
    job, asset, _ = zk_job
    r = result_for(stack, blobs, inputs, chain, job, 0, tmp_path)
    market, models = stack.market, stack.models
    price = stack.assets.spec(asset).price
    before = {who: market.credits(who) for who in (provider, keeper, treasury)}
    escrow = market.job(job).escrow

    tx = submit(stack, sign_receipt, agent, stranger, job, 0, r)  # anyone may relay it

    rep = market.replica(job, 0, 0)
    assert rep.state == ReplicaState.FINALIZED and market.output_root(job, 0, 0) == r["root"]
    [proven] = tx.events.filter(models.ResultProven)
    assert (proven.job, proven.shard, proven.output_root) == (job, 0, r["root"])
    assert len(tx.events.filter(market.ShardFinalized)) == 1
    pay, keeper_fee, protocol_fee = settle_amounts(price, GPU_SECONDS, *market.job(job)[5:7])
    assert market.credits(provider) - before[provider] == pay
    assert market.credits(keeper) - before[keeper] == keeper_fee
    assert market.credits(treasury) - before[treasury] == protocol_fee
    assert escrow - market.job(job).escrow == pay + keeper_fee + protocol_fee
    assert stack.token.balanceOf(market) == market.owed()  # conservation
    with ape.reverts("job_market: shard not ready"):  # and nothing can be challenged or paid twice
        market.finalize(job, 0, sender=stranger)


def _refused(stack, sign_receipt, agent, provider, job, r, reason):
    owed, escrow = stack.market.owed(), stack.market.job(job).escrow
    with ape.reverts(reason):
        submit(stack, sign_receipt, agent, provider, job, 0, r)
    assert stack.market.replica(job, 0, 0).state == ReplicaState.ASSIGNED
    assert (stack.market.owed(), stack.market.job(job).escrow) == (owed, escrow)


def test_a_tampered_proof_is_refused(stack, blobs, inputs, chain, zk_job, sign_receipt, agent, provider, tmp_path):
    job = zk_job[0]
    r = result_for(stack, blobs, inputs, chain, job, 0, tmp_path)
    flipped = bytearray(r["proof"])
    flipped[100] ^= 1
    _refused(
        stack,
        sign_receipt,
        agent,
        provider,
        job,
        {**r, "proof": bytes(flipped)},
        "model_registry: proof does not verify",
    )


def test_swapped_outputs_are_refused(stack, blobs, inputs, chain, zk_job, sign_receipt, agent, provider, tmp_path):
    job = zk_job[0]
    r = result_for(stack, blobs, inputs, chain, job, 0, tmp_path)
    n_in, n_out = blobs.input_words, blobs.output_words
    outputs = r["instances"][n_in + zk.TAG_WORDS : n_in + zk.TAG_WORDS + n_out]
    swapped = outputs[::-1]
    tree = MerkleTree.from_files({zk.OUTPUT_LEAF: zk.encode_words(swapped), "log/container.log": LOG})
    # other outputs committed, the proof's instances unchanged: the root does not hold them
    other_root = {**r, "root": tree.root, "output_proof": tree.proof(zk.OUTPUT_LEAF)}
    _refused(
        stack,
        sign_receipt,
        agent,
        provider,
        job,
        other_root,
        "model_registry: proof's outputs are not in the output root",
    )
    # the instances changed to match the swapped outputs: the proof does not verify for them
    instances = list(r["instances"])
    instances[n_in + zk.TAG_WORDS : n_in + zk.TAG_WORDS + n_out] = swapped
    _refused(
        stack,
        sign_receipt,
        agent,
        provider,
        job,
        {**other_root, "instances": instances},
        "model_registry: proof does not verify",
    )


def test_a_proof_on_another_shards_input_is_refused(
    stack, blobs, inputs, chain, zk_job, sign_receipt, agent, provider, tmp_path
):
    job = zk_job[0]
    r = result_for(stack, blobs, inputs, chain, job, 0, tmp_path, words_of=1)
    _refused(stack, sign_receipt, agent, provider, job, r, "model_registry: proof's input is not the shard's input")


def test_a_proof_for_another_job_is_refused(
    register_asset,
    stack,
    blobs,
    inputs,
    chain,
    zk_job,
    sign_receipt,
    agent,
    provider,
    client,
    registered_keeper,
    make_requirements,
    tmp_path,
):
    job, _, manifest_hash = zk_job
    req = make_requirements(verification=Verification.ZK, shard_count=2)
    other = (
        stack.market.post_job(manifest_hash, req.as_tuple(), sender=client).events.filter(stack.market.JobPosted)[0].job
    )
    stack.market.assign(other, 0, register_asset(), sender=registered_keeper)
    r = result_for(stack, blobs, inputs, chain, other, 0, tmp_path)  # an honest proof, for the other job
    _refused(stack, sign_receipt, agent, provider, job, r, "model_registry: proof is for another lease")


def test_an_unregistered_or_unbound_model_is_refused(
    stack,
    blobs,
    inputs,
    chain,
    client,
    register_asset,
    registered_keeper,
    make_requirements,
    sign_receipt,
    agent,
    provider,
    tmp_path,
):
    with ape.reverts("model_registry: unregistered model"):
        stack.models.bind(keccak(b"m"), keccak(b"no such model"), inputs[1].root, sender=client)
    asset = register_asset()
    req = make_requirements(verification=Verification.ZK, shard_count=2)
    job = (
        stack.market.post_job(keccak(b"never bound"), req.as_tuple(), sender=client)
        .events.filter(stack.market.JobPosted)[0]
        .job
    )
    stack.market.assign(job, 0, asset, sender=registered_keeper)
    r = result_for(stack, blobs, inputs, chain, job, 0, tmp_path)
    _refused(stack, sign_receipt, agent, provider, job, r, "model_registry: job has no registered model")


def test_the_market_takes_a_zk_success_only_with_its_proof(stack, zk_job, sign_receipt, agent, provider, submit):
    job = zk_job[0]
    with ape.reverts("job_market: zk result without its proof"):
        submit(agent, job, 0, 0, gpu_seconds=GPU_SECONDS)
    # a failed run has nothing to prove: it takes the optimistic path, window and all
    submit(agent, job, 0, 0, gpu_seconds=GPU_SECONDS, exit_code=1)
    rep = stack.market.replica(job, 0, 0)
    assert rep.state == ReplicaState.SUBMITTED and rep.deadline > rep.since


def test_models_and_bindings_are_set_once(stack, blobs, zk_verifier, model, inputs, client, owner):
    with ape.reverts("model_registry: model already registered"):
        stack.models.register_model(
            blobs.artifact_hash, zk_verifier, blobs.input_words, blobs.output_words, sender=owner
        )
    with ape.reverts("model_registry: verifier has no code"):
        stack.models.register_model(blobs.artifact_hash, client, blobs.input_words, blobs.output_words, sender=owner)
    registered = stack.models.model(model)
    assert (registered.verifier, registered.input_words, registered.output_words) == (
        zk_verifier.address,
        blobs.input_words,
        blobs.output_words,
    )
    expected = zk.model_id(blobs.artifact_hash, keccak(bytes(zk_verifier.code)), blobs.input_words, blobs.output_words)
    assert model == expected
    stack.models.bind(keccak(b"once"), model, inputs[1].root, sender=client)
    with ape.reverts("model_registry: manifest already bound"):
        stack.models.bind(keccak(b"once"), model, inputs[1].root, sender=client)
