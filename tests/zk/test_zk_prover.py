"""The zk prover's toolchain: encodings and the binding tag (pure), the blobs model built by
`make zk`, real EZKL proofs through zk/ezkl_tool.py, and the generated Solidity verifier
deployed on an anvil of its own."""

import json
import shutil
import subprocess

import pytest
from eth_abi import encode
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError

from computenet import zk
from computenet.localnet import Anvil

MARKET = "0x" + "ab" * 20
# ---------------------------------------------------------------- encodings


def test_words_round_trip():
    words = [0, 1, 2**255 % zk.FIELD, zk.FIELD - 1]
    data = zk.encode_words(words)
    assert data == encode(["uint256[]"], [words])
    assert zk.decode_words(data) == words
    assert zk.decode_words(zk.encode_words([])) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x02", r"not an abi-encoded uint256\[\]"),
        (zk.encode_words([1, 2]) + b"\x00" * 32, "not the canonical abi encoding"),
        (zk.encode_words([5, zk.FIELD]), "word 1 is not a field element"),
    ],
)
def test_decode_words_refuses_malformed(data, message):
    with pytest.raises(zk.ZkError, match=message):
        zk.decode_words(data)


def test_quantize_and_dequantize():
    assert zk.quantize([1.0, -1.0, 0.5, -0.25, 0.0], 7) == [128, zk.FIELD - 128, 64, zk.FIELD - 32, 0]
    assert zk.quantize([1.5 / 128, -1.5 / 128, 0.4 / 128], 7) == [2, zk.FIELD - 2, 0]  # half away from zero
    assert zk.dequantize(zk.FIELD - 128, 7) == -1.0
    assert zk.dequantize(64, 7) == 0.5
    for word in (0, 1, 2**24, zk.FIELD - 1, zk.FIELD - 2**24):
        assert zk.quantize([zk.dequantize(word, 7)], 7) == [word]
    with pytest.raises(zk.ZkError, match="not a field element"):
        zk.dequantize(zk.FIELD, 7)


def test_binding_and_tag_limbs():
    args = (31337, MARKET, 3, 1, 0, 7)
    base = zk.binding(*args)
    expected = keccak(encode(["uint256", "address", "uint256", "uint256", "uint256", "uint256"], list(args)))
    assert base == int.from_bytes(expected[16:], "big")
    limbs = zk.tag_words(base)
    assert len(limbs) == zk.TAG_WORDS and all(0 <= limb < 2**zk.LIMB_BITS for limb in limbs)
    assert sum(limb << (zk.LIMB_BITS * i) for i, limb in enumerate(limbs)) == base
    assert zk.TAG_WORDS * zk.LIMB_BITS == 128
    for position in range(len(args)):
        changed = list(args)
        changed[position] = "0x" + "cd" * 20 if position == 1 else changed[position] + 1
        assert zk.tag_words(zk.binding(*changed)) != limbs, f"argument {position} does not reach the tag"


def test_layout_split():
    layout = zk.Layout(input_words=3, output_words=2)
    tag = list(range(100, 100 + zk.TAG_WORDS))
    instances = [1, 2, 3, *tag, 9, 8, *tag]
    assert layout.split(instances) == ([1, 2, 3], tag, [9, 8], tag)
    with pytest.raises(zk.ZkError, match=f"expected {layout.instance_count} .* got {len(instances) - 1}"):
        layout.split(instances[:-1])


def test_paths():
    assert zk.input_path(4) == "zk/4.bin"
    assert zk.OUTPUT_LEAF == "out/zk/outputs.bin"


def test_tool_python_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPUTENET_ZK_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(zk.ZkError, match="run `make zk`"):
        zk.tool_python()


# ---------------------------------------------------------------- the built model


@pytest.fixture(scope="session")
def samples(blobs) -> list[dict]:
    return json.loads((blobs.folder / "samples.json").read_text())


def test_load_built_model(blobs):
    assert (blobs.name, blobs.input_words, blobs.output_words) == ("blobs", 16, 4)
    assert blobs.input_scale == 7 and blobs.output_scale == 7
    assert len(blobs.classes) == blobs.output_words
    parts = b"".join((blobs.folder / name).read_bytes() for name in ("model.onnx", "settings.json", "vk.key"))
    assert blobs.artifact_hash == keccak(parts)
    assert blobs.layout == zk.Layout(16, 4)
    assert 20_000 < len(blobs.verifier_initcode()) < 24_576


def test_load_names_a_missing_file(blobs, tmp_path):
    shutil.copytree(blobs.folder, tmp_path / "m", ignore=shutil.ignore_patterns("pk.key", "vk.key"))
    with pytest.raises(zk.ZkError, match="missing vk.key"):
        zk.ModelArtifacts.load(tmp_path / "m")


# ---------------------------------------------------------------- proofs


TAG = zk.tag_words(zk.binding(31337, MARKET, 1, 0, 0, 1))
OTHER_TAG = zk.tag_words(zk.binding(31337, MARKET, 1, 0, 1, 1))  # another replica


@pytest.fixture(scope="module")
def proved(blobs, samples, tmp_path_factory):
    """One sample proved twice, under two tags: (words, proof, workdir, other proof)."""
    words = zk.quantize(samples[0]["x"], blobs.input_scale)
    first = tmp_path_factory.mktemp("proof")
    proof = zk.prove(blobs, words, TAG, first)
    other = zk.prove(blobs, words, OTHER_TAG, tmp_path_factory.mktemp("other"))
    return words, proof, first, other


def test_proof_verifies_with_the_tool(blobs, proved):
    _, proof, workdir, _ = proved
    argv = [str(zk.tool_python()), str(zk.TOOL), "verify", "--model", str(blobs.folder)]
    done = subprocess.run([*argv, "--proof", str(workdir / "proof.json")], capture_output=True, text=True)
    assert json.loads(done.stdout) == {"ok": True}, done.stderr
    assert proof.size > 1000 and proof.seconds > 0 and proof.peak_mib > 0


def test_proof_instances_and_outputs(blobs, samples, proved):
    words, proof, _, _ = proved
    inputs, tag, outputs, tag_out = blobs.layout.split(proof.instances)
    assert inputs == words and tag == TAG and tag_out == TAG
    assert [zk.dequantize(w, blobs.output_scale) for w in outputs] == proof.outputs
    assert proof.outputs.index(max(proof.outputs)) == samples[0]["label"]


def test_proof_carries_only_its_own_tag(blobs, proved):
    _, proof, _, other = proved
    mine, theirs = blobs.layout.split(proof.instances), blobs.layout.split(other.instances)
    assert (mine[0], mine[2]) == (theirs[0], theirs[2])  # same inputs, same outputs
    assert mine[1] == TAG != theirs[1] == OTHER_TAG
    assert proof.proof != other.proof


def test_prove_refuses_bad_requests(blobs, tmp_path):
    with pytest.raises(zk.ZkError, match="takes 16 input words, got 3"):
        zk.prove(blobs, [1, 2, 3], TAG, tmp_path)
    with pytest.raises(zk.ZkError, match="16 bits"):
        zk.prove(blobs, [0] * 16, [2**16] + TAG[1:], tmp_path)


def test_prover_failure_is_reported(blobs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(blobs.folder, broken, ignore=shutil.ignore_patterns("pk.key"))
    artifacts = zk.ModelArtifacts.load(broken)
    with pytest.raises(zk.ZkError, match="missing .*pk.key"):
        zk.prove(artifacts, [0] * 16, TAG, tmp_path / "work")


# ---------------------------------------------------------------- the EVM verifier


@pytest.fixture(scope="module")
def web3():
    with Anvil() as anvil:
        yield Web3(Web3.HTTPProvider(anvil.uri))


@pytest.fixture(scope="module")
def verifier_contract(web3, blobs):
    deployer = web3.eth.accounts[0]
    tx = web3.eth.send_transaction({"from": deployer, "data": blobs.verifier_initcode(), "gas": 8_000_000})
    receipt = web3.eth.wait_for_transaction_receipt(tx, timeout=30, poll_latency=0.05)
    assert receipt.status == 1
    abi = json.loads((blobs.folder / "Verifier.abi").read_text())
    return web3.eth.contract(address=receipt.contractAddress, abi=abi)


def test_verifier_accepts_the_proof(verifier_contract, proved):
    _, proof, _, _ = proved
    call = verifier_contract.functions.verifyProof(proof.proof, proof.instances)
    assert call.call() is True
    assert call.estimate_gas() < 1_000_000


def test_verifier_refuses_another_tag(verifier_contract, blobs, proved):
    _, proof, _, _ = proved
    d = blobs.input_words
    swapped = proof.instances[:d] + OTHER_TAG + proof.instances[d + zk.TAG_WORDS :]
    try:
        accepted = verifier_contract.functions.verifyProof(proof.proof, swapped).call()
    except ContractLogicError:  # EZKL's verifier reverts, with no data, on a proof that fails
        accepted = False
    assert accepted is False


def test_model_id_names_the_deployed_verifier(web3, verifier_contract, blobs):
    runtime = bytes(web3.eth.get_code(verifier_contract.address))
    assert 0 < len(runtime) <= 24_576
    codehash = keccak(runtime)
    expected = keccak(encode(["bytes32", "bytes32", "uint16", "uint16"], [blobs.artifact_hash, codehash, 16, 4]))
    assert zk.model_id(blobs.artifact_hash, codehash, 16, 4) == expected
    assert zk.model_id(blobs.artifact_hash, keccak(b"other"), 16, 4) != expected
