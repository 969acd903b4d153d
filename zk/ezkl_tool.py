"""Builds zk models and proves their runs with EZKL, as a program of its own.

EZKL's package declares no licence, so computenet never imports it: this file runs only under
`.venv-zk/bin/python` (`make zk`), and computenet/zk.py talks to it through a subprocess and
files. Subcommands:

  build  --name NAME --out DIR --solcjs PATH   the model's graph, circuit, keys and EVM verifier
  prove  --model DIR --input FILE --out DIR    a proof for one input; one JSON line on stdout
  verify --model DIR --proof FILE              checks a proof off chain; one JSON line on stdout

Errors exit non-zero with one line on stderr.
"""

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ezkl
import numpy as np
import onnx
from models import MODELS, TAG_WORDS

# The scales are powers of two: a float v enters the circuit as round(v * 2**scale).
INPUT_SCALE = 7
PARAM_SCALE = 7
LOOKUP_RANGE = (-2048, 2048)
LOGROWS = 12


class ToolError(Exception):
    """A failure this program explains in one line."""


def step(message: str, started: float) -> None:
    print(f"zk: {message} ({time.monotonic() - started:.1f} s)", flush=True)


def run_args() -> "ezkl.PyRunArgs":
    """Inputs and outputs public (they are the instances the contract checks), weights fixed
    into the circuit (so the verifier, and hence its code hash, pins the model)."""
    ra = ezkl.PyRunArgs()
    ra.input_visibility = "public"
    ra.output_visibility = "public"
    ra.param_visibility = "fixed"
    ra.input_scale = INPUT_SCALE
    ra.param_scale = PARAM_SCALE
    ra.lookup_range = LOOKUP_RANGE
    ra.logrows = LOGROWS
    return ra


def field_int(little_endian_hex: str) -> int:
    """EZKL writes field elements as little-endian hex without 0x."""
    return int.from_bytes(bytes.fromhex(little_endian_hex), "little")


def rescaled_outputs(witness: Path) -> list[list[float]]:
    """EZKL's own dequantized outputs, one list per graph output."""
    pretty = json.loads(witness.read_text()).get("pretty_elements") or {}
    return [[float(v) for v in row] for row in pretty["rescaled_outputs"]]


def write_verifier(out: Path, solcjs: str) -> None:
    """Verifier.sol from EZKL, then Verifier.bin (hex init code) and Verifier.abi from solcjs."""
    sol = out / "Verifier.sol"
    sol.unlink(missing_ok=True)
    try:
        asyncio.run(_create_evm_verifier(out, sol))
    except RuntimeError as error:
        # EZKL writes the Solidity source and then downloads solc to derive the ABI; this
        # machine has no route to binaries.soliditylang.org, and solcjs compiles it instead.
        if not sol.exists() or "binaries.soliditylang.org" not in str(error):
            raise
    if not sol.exists():
        raise ToolError("EZKL wrote no Verifier.sol")
    with tempfile.TemporaryDirectory() as tmp:
        argv = [solcjs, "--bin", "--abi", "--optimize", "--optimize-runs", "1", "-o", tmp, sol.name]
        done = subprocess.run(argv, cwd=out, capture_output=True, text=True)
        binary, abi = Path(tmp, "Verifier_sol_Halo2Verifier.bin"), Path(tmp, "Verifier_sol_Halo2Verifier.abi")
        if done.returncode != 0 or not binary.exists():
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise ToolError(f"solcjs failed on Verifier.sol: {last}")
        shutil.copyfile(binary, out / "Verifier.bin")
        shutil.copyfile(abi, out / "Verifier.abi")
    (out / "abi.json").unlink(missing_ok=True)


async def _create_evm_verifier(out: Path, sol: Path) -> None:
    await ezkl.create_evm_verifier(
        str(out / "vk.key"), str(out / "settings.json"), str(sol), str(out / "abi.json"), str(out / "kzg.srs"), False
    )


def normalise_settings(path: Path) -> None:
    """EZKL writes its maps in hash order and stamps the time; sorted keys and a zero timestamp
    make settings.json (and so the artifact hash's share of it) the same on every build."""
    settings = json.loads(path.read_text())
    if "timestamp" in settings:
        settings["timestamp"] = 0
    path.write_text(json.dumps(settings, sort_keys=True, separators=(",", ":")))


def build(name: str, out: Path, solcjs: str) -> None:
    if name not in MODELS:
        raise ToolError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    solcjs = shutil.which(solcjs) or ""
    if not solcjs:
        raise ToolError("solcjs not found: run `make node` (npm's solc package)")
    solcjs = str(Path(solcjs).resolve())
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    model = MODELS[name]()
    onnx.save(model.onnx, out / "model.onnx")
    step(f"{name}: trained, held-out accuracy {model.accuracy:.1%}", started)

    paths = {k: str(out / f) for k, f in [("onnx", "model.onnx"), ("settings", "settings.json")]}
    paths |= {k: str(out / f) for k, f in [("compiled", "model.compiled"), ("srs", "kzg.srs")]}
    paths |= {k: str(out / f) for k, f in [("vk", "vk.key"), ("pk", "pk.key")]}
    if not ezkl.gen_settings(paths["onnx"], paths["settings"], py_run_args=run_args()):
        raise ToolError("ezkl.gen_settings failed")
    normalise_settings(Path(paths["settings"]))
    if not ezkl.compile_circuit(paths["onnx"], paths["compiled"], paths["settings"]):
        raise ToolError("ezkl.compile_circuit failed")
    settings = json.loads(Path(paths["settings"]).read_text())
    logrows = settings["run_args"]["logrows"]
    step(f"circuit compiled (2^{logrows} rows)", started)

    # A locally generated SRS: its toxic waste was known to this machine (docs/zk.md).
    ezkl.gen_srs(paths["srs"], logrows)
    step("SRS generated locally (not from a ceremony: for local use only)", started)
    if not ezkl.setup(paths["compiled"], paths["vk"], paths["pk"], paths["srs"], None, False):
        raise ToolError("ezkl.setup failed")
    step(f"keys generated (pk {Path(paths['pk']).stat().st_size / 2**20:.0f} MiB)", started)

    write_verifier(out, solcjs)
    initcode = len(bytes.fromhex((out / "Verifier.bin").read_text().strip()))
    step(f"EVM verifier compiled (init code {initcode:,} bytes)", started)

    agree = quantised_agreement(model, paths)
    step(f"quantised model agrees with the float model on {agree}/{len(model.samples)} samples", started)

    (out / "samples.json").write_text(json.dumps(model.samples, indent=1) + "\n")
    description = {
        "name": name,
        "input_words": model.input_words,
        "output_words": model.output_words,
        "tag_words": TAG_WORDS,
        "input_scale": settings["model_input_scales"][0],
        "output_scale": settings["model_output_scales"][0],
        "logrows": logrows,
        "classes": model.classes,
    }
    (out / "model.json").write_text(json.dumps(description, indent=1) + "\n")
    step(f"{name} built in {out}", started)


def quantised_agreement(model, paths: dict) -> int:
    """How many samples the circuit's outputs classify as the float model does."""
    agree = 0
    with tempfile.TemporaryDirectory() as tmp:
        for sample in model.samples:
            data, witness = Path(tmp, "input.json"), Path(tmp, "witness.json")
            data.write_text(json.dumps({"input_data": [sample["x"], [0.0] * TAG_WORDS]}))
            ezkl.gen_witness(str(data), paths["compiled"], str(witness), paths["vk"], paths["srs"])
            logits = rescaled_outputs(witness)[0]
            agree += int(np.argmax(logits) == model.predict(np.array([sample["x"]]))[0])
    return agree


def prove(model_dir: Path, input_file: Path, out: Path) -> dict:
    description = json.loads(_need(model_dir / "model.json").read_text())
    data = json.loads(_need(input_file).read_text())
    x, tag = data.get("x"), data.get("tag")
    if not isinstance(x, list) or len(x) != description["input_words"]:
        raise ToolError(f"input x: expected {description['input_words']} numbers")
    if not isinstance(tag, list) or len(tag) != TAG_WORDS:
        raise ToolError(f"input tag: expected {TAG_WORDS} numbers")
    compiled, pk, srs = (str(_need(model_dir / f)) for f in ("model.compiled", "pk.key", "kzg.srs"))
    vk = str(_need(model_dir / "vk.key"))
    out.mkdir(parents=True, exist_ok=True)
    circuit_input, witness, proof = out / "input.json", out / "witness.json", out / "proof.json"
    circuit_input.write_text(json.dumps({"input_data": [x, tag]}))

    started = time.monotonic()
    ezkl.gen_witness(str(circuit_input), compiled, str(witness), vk, srs)
    ezkl.prove(str(witness), compiled, pk, str(proof), srs)
    seconds = time.monotonic() - started

    produced = json.loads(proof.read_text())
    instances = [field_int(h) for row in produced["instances"] for h in row]
    return {
        "seconds": round(seconds, 3),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "proof": produced["hex_proof"],
        "instances": [f"0x{v:064x}" for v in instances],
        "outputs": rescaled_outputs(witness)[0],
    }


def verify(model_dir: Path, proof: Path) -> dict:
    files = [str(_need(p)) for p in (proof, model_dir / "settings.json", model_dir / "vk.key", model_dir / "kzg.srs")]
    try:
        ok = bool(ezkl.verify(*files, False))
    except Exception as error:  # EZKL raises on a proof that does not verify
        return {"ok": False, "error": str(error).splitlines()[0] if str(error) else type(error).__name__}
    return {"ok": ok}


def _need(path: Path) -> Path:
    if not path.exists():
        raise ToolError(f"missing {path}")
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ezkl_tool", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a model's artifacts")
    b.add_argument("--name", required=True)
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--solcjs", required=True)
    p = sub.add_parser("prove", help="prove one input")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--input", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    v = sub.add_parser("verify", help="verify a proof off chain")
    v.add_argument("--model", required=True, type=Path)
    v.add_argument("--proof", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build(args.name, args.out, args.solcjs)
        elif args.command == "prove":
            print(json.dumps(prove(args.model, args.input, args.out)))
        else:
            print(json.dumps(verify(args.model, args.proof)))
    except Exception as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        print(f"ezkl_tool {args.command}: {detail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
