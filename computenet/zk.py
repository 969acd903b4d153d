"""The zk verification level, our side: encodings, the binding tag, model artifacts, and the prover.

A `zk` shard runs an ONNX model on its input words, and the provider proves with EZKL
(Halo2/KZG) that the committed outputs are the model's outputs on those inputs. The proof's
public instances are [input words | tag | output words | tag again]: the tag is the low 128
bits of a hash of (chain id, market, job, shard, replica, lease) in 16-bit limbs, which the
model passes through unchanged, so a proof made for one lease is no proof for another.

EZKL declares no licence, so nothing here imports it: `prove` runs zk/ezkl_tool.py under its
own environment `.venv-zk` (`make zk`) and reads what it prints (docs/zk.md).
"""

import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from eth_abi import decode, encode
from eth_utils import keccak

from computenet.errors import ComputenetError

# The BN254 scalar field: every instance is one of its elements.
FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617
# EZKL reads inputs as float32, so a limb must stay within its 24-bit mantissa; the
# 128-bit binding therefore travels as eight 16-bit limbs.
TAG_WORDS = 8
LIMB_BITS = 16

OUTPUT_FILE = "zk/outputs.bin"  # written into the outputs folder
OUTPUT_LEAF = "out/" + OUTPUT_FILE  # where the result's Merkle tree commits it

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "zk" / "ezkl_tool.py"
EXAMPLE_MODEL = ROOT / ".zk" / "models" / "blobs"  # the example model `make zk` builds
HASHED_FILES = ("model.onnx", "settings.json", "vk.key")  # artifact_hash covers these, in this order


class ZkError(ComputenetError):
    """A zk artifact, encoding or proof is missing, malformed or inconsistent."""


def input_path(shard: int) -> str:
    """The shard's input file among the manifest's inputs."""
    return f"zk/{shard}.bin"


def binding(chain_id: int, market: str, job: int, shard: int, replica: int, lease: int) -> int:
    """The low 128 bits of keccak256(abi.encode(chain_id, market, job, shard, replica, lease)):
    what a proof is bound to, so it cannot be replayed for another lease, replica or chain."""
    types = ["uint256", "address", "uint256", "uint256", "uint256", "uint256"]
    digest = keccak(encode(types, [chain_id, market, job, shard, replica, lease]))
    return int.from_bytes(digest, "big") & (2**128 - 1)


def tag_words(binding: int) -> list[int]:
    """The binding as TAG_WORDS limbs, least significant first."""
    mask = 2**LIMB_BITS - 1
    return [(binding >> (LIMB_BITS * i)) & mask for i in range(TAG_WORDS)]


def encode_words(words: list[int]) -> bytes:
    """The content of zk/<shard>.bin and zk/outputs.bin: abi.encode(uint256[])."""
    return encode(["uint256[]"], [list(words)])


def decode_words(data: bytes) -> list[int]:
    """Inverse of `encode_words`; only the canonical encoding of field elements is accepted,
    so one list of words has exactly one file (and one Merkle leaf)."""
    try:
        (words,) = decode(["uint256[]"], data)
    except Exception as error:
        raise ZkError(f"zk words: not an abi-encoded uint256[] ({error})")
    if encode_words(words) != data:
        raise ZkError("zk words: not the canonical abi encoding of a uint256[]")
    for i, word in enumerate(words):
        if word >= FIELD:
            raise ZkError(f"zk words: word {i} is not a field element (>= FIELD)")
    return list(words)


def quantize(values: list[float], scale: int) -> list[int]:
    """round(v * 2**scale) as field elements (a negative n becomes FIELD - |n|); rounds half
    away from zero, as EZKL does."""
    words = []
    for v in values:
        n = int(math.copysign(math.floor(abs(v) * 2**scale + 0.5), v))
        words.append(n % FIELD)
    return words


def dequantize(word: int, scale: int) -> float:
    """The signed value of a field element (above FIELD // 2 is negative), over 2**scale."""
    if not 0 <= word < FIELD:
        raise ZkError(f"zk word {word} is not a field element")
    signed = word - FIELD if word > FIELD // 2 else word
    return signed / 2**scale


@dataclass(frozen=True)
class Layout:
    """Where each part sits in a proof's public instances."""

    input_words: int
    output_words: int

    @property
    def instance_count(self) -> int:
        return self.input_words + self.output_words + 2 * TAG_WORDS

    def split(self, instances: list[int]) -> tuple[list[int], list[int], list[int], list[int]]:
        """(inputs, tag, outputs, tag_out), in the order EZKL lays them out."""
        if len(instances) != self.instance_count:
            raise ZkError(
                f"zk instances: expected {self.instance_count} "
                f"({self.input_words} inputs + {self.output_words} outputs + 2 x {TAG_WORDS} tag), got {len(instances)}"
            )
        d, t, c = self.input_words, TAG_WORDS, self.output_words
        return (
            list(instances[:d]),
            list(instances[d : d + t]),
            list(instances[d + t : d + t + c]),
            list(instances[d + t + c :]),
        )


@dataclass(frozen=True)
class ModelArtifacts:
    """A model built by `make zk` (zk/ezkl_tool.py build): its shape, scales, and the hash that
    names its graph, circuit settings and verifying key."""

    folder: Path
    name: str
    input_words: int
    output_words: int
    input_scale: int
    output_scale: int
    artifact_hash: bytes  # keccak256(model.onnx ‖ settings.json ‖ vk.key)
    classes: list[str]

    @classmethod
    def load(cls, folder: Path | str) -> "ModelArtifacts":
        folder = Path(folder)
        for name in ("model.json", *HASHED_FILES, "Verifier.bin"):
            if not (folder / name).is_file():
                raise ZkError(f"zk model {folder}: missing {name} (run `make zk`)")
        try:
            meta = json.loads((folder / "model.json").read_text())
            if meta["tag_words"] != TAG_WORDS:
                raise ZkError(f"zk model {folder}: built with {meta['tag_words']} tag words, expected {TAG_WORDS}")
            return cls(
                folder=folder,
                name=meta["name"],
                input_words=int(meta["input_words"]),
                output_words=int(meta["output_words"]),
                input_scale=int(meta["input_scale"]),
                output_scale=int(meta["output_scale"]),
                artifact_hash=keccak(b"".join((folder / name).read_bytes() for name in HASHED_FILES)),
                classes=list(meta["classes"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ZkError(f"zk model {folder}: malformed model.json ({error!r})")

    @property
    def layout(self) -> Layout:
        return Layout(self.input_words, self.output_words)

    def verifier_initcode(self) -> bytes:
        """The EVM verifier's init code, as solcjs compiled it."""
        try:
            return bytes.fromhex((self.folder / "Verifier.bin").read_text().strip().removeprefix("0x"))
        except ValueError:
            raise ZkError(f"zk model {self.folder}: Verifier.bin is not hex")

    def verifier_abi(self) -> list[dict]:
        """The verifier's ABI (verifyProof(bytes, uint256[]) -> bool), as solcjs wrote it."""
        return json.loads((self.folder / "Verifier.abi").read_text())

    def samples(self) -> list[dict]:
        """The model's example inputs, each {"x": [floats], "label": int}."""
        return json.loads((self.folder / "samples.json").read_text())


def parse_model_id(text: str) -> bytes:
    """A model id given as 0x-prefixed hex (32 bytes), or ZkError naming the problem."""
    try:
        value = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise ZkError(f"model id {text!r} is not hex") from None
    if len(value) != 32:
        raise ZkError(f"model id {text!r} is {len(value)} bytes, not 32")
    return value


def model_id(artifact_hash: bytes, verifier_codehash: bytes, input_words: int, output_words: int) -> bytes:
    """keccak256(abi.encode(bytes32, bytes32, uint16, uint16)): names a model together with the
    deployed verifier's runtime code hash, so neither can be swapped under the same id."""
    return keccak(
        encode(
            ["bytes32", "bytes32", "uint16", "uint16"], [artifact_hash, verifier_codehash, input_words, output_words]
        )
    )


@dataclass(frozen=True)
class Proof:
    """A proof and its public instances, as verifyProof(bytes, uint256[]) takes them."""

    proof: bytes
    instances: list[int]
    seconds: float  # witness and proof, wall time
    peak_mib: int  # the prover process's peak resident memory
    outputs: list[float]  # the model's outputs, dequantized

    @property
    def size(self) -> int:
        return len(self.proof)


def tool_python() -> Path:
    """The interpreter of `.venv-zk`, the only environment EZKL is installed in."""
    python = Path(os.environ.get("COMPUTENET_ZK_PYTHON") or ROOT / ".venv-zk" / "bin" / "python")
    if not python.exists():
        raise ZkError(f"zk prover not installed: {python} is missing (run `make zk`)")
    return python


def prove(
    artifacts: ModelArtifacts, input_words: list[int], tag: list[int], workdir: Path, timeout: float = 600
) -> Proof:
    """Proves the model on `input_words` bound to `tag`, through zk/ezkl_tool.py in `workdir`.
    The tool receives floats, so each word goes in as word / 2**scale, which EZKL quantises
    back to the same word; the returned instances are checked to carry exactly these words."""
    layout = artifacts.layout
    if len(input_words) != layout.input_words:
        raise ZkError(f"zk prove: {artifacts.name} takes {layout.input_words} input words, got {len(input_words)}")
    if len(tag) != TAG_WORDS or not all(0 <= limb < 2**LIMB_BITS for limb in tag):
        raise ZkError(f"zk prove: the tag must be {TAG_WORDS} limbs of {LIMB_BITS} bits")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    request = workdir / "input.json"
    x = [dequantize(word, artifacts.input_scale) for word in input_words]
    request.write_text(json.dumps({"x": x, "tag": [limb / 2**artifacts.input_scale for limb in tag]}))
    argv = [str(tool_python()), str(TOOL), "prove", "--model", str(artifacts.folder), "--input", str(request)]
    try:
        done = subprocess.run([*argv, "--out", str(workdir)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ZkError(f"zk prove: no proof after {timeout:g} s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise ZkError(f"zk prove: {last}")
    try:
        reply = json.loads(done.stdout.strip().splitlines()[-1])
        proof = Proof(
            proof=bytes.fromhex(reply["proof"].removeprefix("0x")),
            instances=[int(h, 16) for h in reply["instances"]],
            seconds=float(reply["seconds"]),
            peak_mib=int(reply["peak_mib"]),
            outputs=[float(v) for v in reply["outputs"]],
        )
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise ZkError(f"zk prove: unreadable reply from the prover ({error!r})")
    inputs, tag_in, _, tag_out = layout.split(proof.instances)
    if inputs != list(input_words):
        first = next(i for i, (a, b) in enumerate(zip(inputs, input_words)) if a != b)
        raise ZkError(f"zk prove: instance {first} is {inputs[first]}, not the input word {input_words[first]}")
    for where, carried in (("tag", tag_in), ("tag_out", tag_out)):
        if carried != list(tag):
            raise ZkError(f"zk prove: the proof's {where} instances {carried} are not the tag {list(tag)}")
    return proof
