# pragma version ~=0.4.3
"""
@title computenet model registry
@notice The ZK verification level. A model is registered once with the verifier
        contract generated for it (EZKL's Halo2 verifier); a client binds a ZK job's
        manifest to a model and to the Merkle root of the job's inputs before
        posting it; and a provider's agent submits a ZK result here with its proof.
        The proof is accepted only if the model's verifier accepts it and its public
        instances are this shard's input, this lease's binding tag and the outputs
        committed in the result's output root; the result then goes to the market
        and is finalized in the same transaction: no challenge window, no replicas.
@dev A model id is keccak256(abi_encode(artifact hash, verifier code hash, input
     words, output words)): it names the verifier's code, so no one can register a
     model's id with another verifier, and whoever trusts an id knows exactly which
     verifier decides. Instances are laid out [input words | tag | output words |
     tag], the tag being TAG_WORDS 16-bit limbs of the low 128 bits of keccak256(abi_encode(
     chain id, market, job, shard, replica, lease)): a proof is good for one lease
     only, so it cannot be replayed for another job, shard, replica or market.
     The shard's input is the file "zk/<shard>.bin" of the bound inputs root, its
     outputs the file "out/zk/outputs.bin" of the output root, each holding
     abi_encode(uint256[] words); computenet/zk.py builds the same.
"""

from . import JobMarket
from .modules import merkle

# ------------------------------------------------------------------ constants

# @dev Most public instances (inputs, outputs and two tags) a model may have.
MAX_INSTANCES: constant(uint256) = 512
# @dev Largest proof accepted, bytes (a small model's Halo2 proof is about 5 KB).
MAX_PROOF: constant(uint256) = 16384
# @dev The tag's limbs: EZKL reads inputs as float32, whose 24-bit mantissa holds 16 bits exactly.
TAG_WORDS: public(constant(uint256)) = 8
_LIMB_BITS: constant(uint256) = 16
_LIMB: constant(uint256) = 2**16 - 1
_MASK128: constant(uint256) = 2**128 - 1
_ZK: constant(uint8) = 3
# @dev keccak256 of the output file's leaf path, "out/zk/outputs.bin".
_OUTPUT_PATH_HASH: constant(bytes32) = keccak256("out/zk/outputs.bin")

# ------------------------------------------------------------------ types


struct Model:
    verifier: address  # EZKL's verifier: verifyProof(bytes, uint256[]) -> bool
    input_words: uint16
    output_words: uint16
    registrant: address
    artifact_hash: bytes32  # how a provider finds the model's artifacts (proving key, circuit)


struct JobSpec:
    model: bytes32  # the model every shard runs
    inputs_root: bytes32  # Merkle root of the job's input files (the manifest's inputs.root)


# ------------------------------------------------------------------ storage

# @dev The market whose ZK results this registry proves.
MARKET: public(immutable(JobMarket.__interface__))

_models: HashMap[bytes32, Model]
# @dev client -> manifest hash -> what its ZK jobs run on.
_specs: HashMap[address, HashMap[bytes32, JobSpec]]

# ------------------------------------------------------------------ events


event ModelRegistered:
    model: indexed(bytes32)
    verifier: indexed(address)
    artifact_hash: bytes32
    input_words: uint16
    output_words: uint16
    registrant: address


event JobSpecBound:
    client: indexed(address)
    manifest_hash: indexed(bytes32)
    model: indexed(bytes32)
    inputs_root: bytes32


event ResultProven:
    job: indexed(uint256)
    shard: indexed(uint256)
    model: indexed(bytes32)
    replica: uint256
    output_root: bytes32


# ------------------------------------------------------------------ constructor


@deploy
def __init__(market: JobMarket.__interface__):
    """
    @param market The JobMarket, which takes ZK results only from this contract.
    """
    assert market.address != empty(address), "model_registry: zero market"
    MARKET = market


# ------------------------------------------------------------------ models and jobs


@external
def register_model(artifact_hash: bytes32, verifier: address, input_words: uint16, output_words: uint16) -> bytes32:
    """
    @notice Registers a model with its verifier; anyone may, once per id.
    @param artifact_hash keccak256 of the model's artifacts (ONNX ‖ settings ‖ vk).
    @param verifier The deployed verifier generated for those artifacts.
    @param input_words Public input words (the model's quantised input).
    @param output_words Public output words (the model's quantised output).
    @return The model id.
    """
    assert artifact_hash != empty(bytes32), "model_registry: empty artifact hash"
    assert verifier.is_contract, "model_registry: verifier has no code"
    assert input_words > 0 and output_words > 0, "model_registry: no input or output words"
    assert convert(input_words, uint256) + convert(output_words, uint256) + 2 * TAG_WORDS <= MAX_INSTANCES, "model_registry: too many public inputs"
    model: bytes32 = keccak256(abi_encode(artifact_hash, verifier.codehash, input_words, output_words))
    assert self._models[model].verifier == empty(address), "model_registry: model already registered"
    self._models[model] = Model(
        verifier=verifier,
        input_words=input_words,
        output_words=output_words,
        registrant=msg.sender,
        artifact_hash=artifact_hash,
    )
    log ModelRegistered(
        model=model,
        verifier=verifier,
        artifact_hash=artifact_hash,
        input_words=input_words,
        output_words=output_words,
        registrant=msg.sender,
    )
    return model


@external
def bind(manifest_hash: bytes32, model: bytes32, inputs_root: bytes32):
    """
    @notice Binds the caller's ZK jobs with this manifest to a model and to the
            Merkle root of their inputs; once, before posting them, so the model
            cannot change under a running shard.
    @param manifest_hash The jobs' manifest hash.
    @param model A registered model id.
    @param inputs_root The manifest's inputs root.
    """
    assert manifest_hash != empty(bytes32) and inputs_root != empty(bytes32), "model_registry: empty manifest or inputs root"
    assert self._models[model].verifier != empty(address), "model_registry: unregistered model"
    assert self._specs[msg.sender][manifest_hash].model == empty(bytes32), "model_registry: manifest already bound"
    self._specs[msg.sender][manifest_hash] = JobSpec(model=model, inputs_root=inputs_root)
    log JobSpecBound(client=msg.sender, manifest_hash=manifest_hash, model=model, inputs_root=inputs_root)


# ------------------------------------------------------------------ results


@external
@nonreentrant
def submit_result(
    job_id: uint256,
    shard: uint256,
    replica: uint256,
    output_root: bytes32,
    gpu_seconds: uint32,
    signature: Bytes[65],
    proof: Bytes[MAX_PROOF],
    instances: DynArray[uint256, MAX_INSTANCES],
    input_proof: DynArray[bytes32, merkle.MAX_DEPTH],
    output_proof: DynArray[bytes32, merkle.MAX_DEPTH],
):
    """
    @notice Submits a ZK job's successful result with its proof, and finalizes the
            shard: the provider, keeper and protocol are paid in this transaction.
            Anyone may relay it; the receipt is still the agent's (exit code 0).
    @param job_id The job (verification ZK).
    @param shard The shard.
    @param replica The replica (0: ZK jobs are not replicated).
    @param output_root Merkle root over the output files, "out/zk/outputs.bin" among them.
    @param gpu_seconds Metered use, as signed in the receipt.
    @param signature The agent's ExecutionReceipt signature.
    @param proof The Halo2 proof.
    @param instances Its public instances: input words, tag, output words, tag.
    @param input_proof Merkle proof of "zk/<shard>.bin" in the bound inputs root.
    @param output_proof Merkle proof of "out/zk/outputs.bin" in `output_root`.
    """
    job: JobMarket.Job = staticcall MARKET.job(job_id)
    assert job.requirements.verification == _ZK, "model_registry: not a zk job"
    spec: JobSpec = self._specs[job.client][job.manifest_hash]
    model: Model = self._models[spec.model]
    assert model.verifier != empty(address), "model_registry: job has no registered model"
    n_in: uint256 = convert(model.input_words, uint256)
    n_out: uint256 = convert(model.output_words, uint256)
    assert len(instances) == n_in + n_out + 2 * TAG_WORDS, "model_registry: wrong number of public inputs"

    # The tag binds the proof to this lease (a lease is only ever assigned once).
    lease: uint16 = (staticcall MARKET.replica(job_id, shard, replica)).lease
    tag: uint256 = convert(
        keccak256(abi_encode(chain.id, MARKET.address, job_id, shard, replica, lease)), uint256
    ) & _MASK128
    for i: uint256 in range(TAG_WORDS):
        limb: uint256 = (tag >> (i * _LIMB_BITS)) & _LIMB
        assert instances[n_in + i] == limb and instances[n_in + TAG_WORDS + n_out + i] == limb, "model_registry: proof is for another lease"

    inputs: DynArray[uint256, MAX_INSTANCES] = []
    outputs: DynArray[uint256, MAX_INSTANCES] = []
    for i: uint256 in range(n_in, bound=MAX_INSTANCES):
        inputs.append(instances[i])
    for i: uint256 in range(n_out, bound=MAX_INSTANCES):
        outputs.append(instances[n_in + TAG_WORDS + i])
    input_path: bytes32 = keccak256(concat("zk/", uint2str(shard), ".bin"))
    assert merkle._verify(
        input_proof, spec.inputs_root, merkle._leaf(input_path, keccak256(abi_encode(inputs)))
    ), "model_registry: proof's input is not the shard's input"
    assert merkle._verify(
        output_proof, output_root, merkle._leaf(_OUTPUT_PATH_HASH, keccak256(abi_encode(outputs)))
    ), "model_registry: proof's outputs are not in the output root"

    # EZKL's verifier reverts on a malformed proof and returns false on a wrong one.
    ok: bool = False
    response: Bytes[32] = b""
    ok, response = raw_call(
        model.verifier,
        abi_encode(proof, instances, method_id=method_id("verifyProof(bytes,uint256[])")),
        max_outsize=32,
        revert_on_failure=False,
    )
    assert ok and len(response) == 32 and convert(response, uint256) == 1, "model_registry: proof does not verify"

    extcall MARKET.submit_result(job_id, shard, replica, output_root, gpu_seconds, 0, signature)
    extcall MARKET.finalize(job_id, shard)
    log ResultProven(job=job_id, shard=shard, model=spec.model, replica=replica, output_root=output_root)


# ------------------------------------------------------------------ views


@external
@view
def model(model_id: bytes32) -> Model:
    """
    @notice A registered model (an empty verifier: not registered).
    @param model_id The model id.
    @return Its verifier, word counts, registrant and artifact hash.
    """
    return self._models[model_id]


@external
@view
def spec(client: address, manifest_hash: bytes32) -> JobSpec:
    """
    @notice What a client bound its ZK jobs with this manifest to (zero: nothing).
    @param client The jobs' client.
    @param manifest_hash Their manifest hash.
    @return The model and inputs root.
    """
    return self._specs[client][manifest_hash]


@external
@view
def binding(job_id: uint256, shard: uint256, replica: uint256, lease: uint256) -> uint256:
    """
    @notice The 128-bit tag a proof for this lease must carry, limb i in instance
            words input_words + i and, again, after the outputs.
    @param job_id The job.
    @param shard The shard.
    @param replica The replica.
    @param lease The replica's lease number.
    @return The tag.
    """
    return convert(keccak256(abi_encode(chain.id, MARKET.address, job_id, shard, replica, lease)), uint256) & _MASK128
