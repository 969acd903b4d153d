"""ZK verification benchmark: what a proven result costs on chain and in time, next to the
optimistic path, for the example model `blobs` (.zk/models/blobs, built by `make zk`).

    .venv/bin/python bench/bench_zk.py [--proofs 5]

A fresh anvil gets the stack (`deploy_stack`, default parameters) and the model's EZKL Halo2
verifier; the model is registered and a client binds a zk job of `--proofs` shards to it. Each
shard is assigned, proven for real with `computenet.zk.prove` (EZKL in `.venv-zk`, a
subprocess) and submitted through `ModelRegistry.submit_result`, which verifies the proof,
submits to the market and finalizes in the same transaction. An optimistic job of as many
shards then goes through `JobMarket.submit_result` and, after the challenge window,
`JobMarket.finalize`, on the same stack (its participants warmed up first, so no figure pays
for a first credit slot).

Reported: the verifier's gas per proof (eth_estimateGas of `verifyProof(proof, instances)`
sent to the verifier alone: 21,000 base and the calldata included) and the gas of the whole
`ModelRegistry.submit_result` (proof check, submit, finalize, payment), min/median/max; public
instances; the verifier's runtime size and deployment gas; proving seconds and the prover's
peak memory per shard, as `zk.prove` reports them; proof size; and time to finality: for zk the
wall time from the container's end (proving + the submit transaction) with the chain finalizing
in the submit's own block, for optimistic the chain time from submit to the earliest finalize
(the challenge window and one second). The zk path's floor, in the same run: EZKL's own proving
time (measured inside the prover) plus a plain transfer's inclusion, sent by the same relayer
right after each submit; the ratio is the whole call (prover started, proof, submit) over it. Anchors from elsewhere are printed beside them, not
measured here. Figures go to bench/results/zk.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from eth_abi import encode  # noqa: E402
from eth_utils import keccak  # noqa: E402

from computenet import zk  # noqa: E402
from computenet.deploy import DEFAULT_PARAMETERS, deploy_stack, deploy_verifier  # noqa: E402
from computenet.domain import Requirements, Spec, Verification  # noqa: E402
from computenet.localnet import Anvil  # noqa: E402
from computenet.merkle import MerkleTree  # noqa: E402
from computenet.receipts import ExecutionReceipt  # noqa: E402

TOKEN = 10**6
MODEL = "blobs"
GPU_SECONDS = 2  # what each shard's receipt claims (a small model's inference)
LOG = b"computenet: proven\n"
VERIFY_PROOF = keccak(b"verifyProof(bytes,uint256[])")[:4]
# Figures from elsewhere, printed beside ours for comparison; not measured by this script.
ANCHORS = {
    "EZKL Halo2 verifier, toy model (measured earlier)": "~540,000 gas",
    "Groth16 verifier": "~182,000 gas + ~7,000 per public input",
    "RISC Zero verifier": "~215,000 gas",
}


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def fmt(s: dict, unit: str = "", digits: int = 0) -> str:
    f = (lambda v: f"{v:,.{digits}f}") if digits else (lambda v: f"{round(v):,}")
    return f"{f(s['min'])} / {f(s['median'])} / {f(s['max'])}{unit}"


class Bench:
    """The stack on one anvil, its named accounts, one asset and the model's verifier."""

    def __init__(self, project, test_accounts, chain, web3, artifacts: zk.ModelArtifacts, shards: int) -> None:

        self.chain, self.web3, self.blobs = chain, web3, artifacts
        a = test_accounts
        self.owner, self.client, self.provider, self.keeper, self.treasury, self.relayer = (
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            a[5],
        )
        self.agent = a[6]
        self.stack = s = deploy_stack(project, self.owner, treasury=self.treasury.address)
        for who in (self.client, self.provider, self.keeper):
            s.token.faucet(who, 1_000_000 * TOKEN, sender=who)
            for spender in (s.market, s.assets, s.keepers):
                s.token.approve(spender, 2**256 - 1, sender=who)
        s.keepers.register(100 * TOKEN, sender=self.keeper)
        spec = Spec(
            gpu_model=1,
            vram_mib=81_920,
            gpu_count=shards,  # the optimistic job holds one GPU per shard until its window closes
            cpu_cores=16 * shards,
            region=276,
            price=100,
            expire=chain.pending_timestamp + 30 * 86_400,
            max_leases=max(16, shards),
            memory_mib=1024 * shards,
            disk_mib=1024 * shards,
        )
        receipt = s.assets.register(spec.as_tuple(), self.agent, b"\x11" * 32, sender=self.provider)
        self.asset = receipt.events.filter(s.assets.AssetRegistered)[0].asset
        s.assets.add_stake(self.asset, 1_000 * TOKEN, sender=self.provider)

        self.verifier = deploy_verifier(artifacts, self.owner)
        self.verifier_deploy_gas = web3.eth.get_transaction_receipt(self.verifier.txn_hash).gasUsed
        self.verifier_runtime_bytes = len(web3.eth.get_code(self.verifier.address))
        self.verifier_initcode_bytes = len(artifacts.verifier_initcode())

    # ------------------------------------------------------------ helpers

    def requirements(self, shards: int, verification: Verification) -> tuple:
        return Requirements(
            min_vram_mib=40_960,
            gpu_count=1,
            max_price=200,
            max_gpu_seconds=3_600,
            deadline=self.chain.pending_timestamp + 7 * 86_400,
            shard_count=shards,
            verification=verification,
        ).as_tuple()

    def post(self, manifest_hash: bytes, shards: int, verification: Verification) -> int:
        receipt = self.stack.market.post_job(manifest_hash, self.requirements(shards, verification), sender=self.client)
        return receipt.events.filter(self.stack.market.JobPosted)[0].job

    def sign(self, job: int, shard: int, output_root: bytes, gpu_seconds: int = GPU_SECONDS) -> bytes:
        """The agent's receipt, once the chain's clock has moved past the claimed GPU-seconds."""
        market = self.stack.market
        rep = market.replica(job, shard, 0)
        needed = int(rep.since) + gpu_seconds
        if self.chain.pending_timestamp < needed:
            self.chain.pending_timestamp = needed
        receipt = ExecutionReceipt(
            job=job,
            shard=shard,
            replica=0,
            lease=rep.lease,
            asset=rep.asset,
            manifest=market.job(job).manifest_hash,
            output_root=output_root,
            gpu_seconds=gpu_seconds,
            exit_code=0,
        )
        return receipt.sign(self.agent.private_key, self.chain.chain_id, market.address)

    def block_time(self, receipt) -> int:
        return self.web3.eth.get_block(receipt.block_number).timestamp

    # ------------------------------------------------------------ the optimistic path

    def optimistic(self, shards: int, label: bytes) -> list[dict]:
        """A job of `shards` shards: each submitted, then finalized at the earliest moment its
        window allows; the gas of each step and the chain time from submit to finalize."""
        market, window = self.stack.market, DEFAULT_PARAMETERS.challenge_window
        job = self.post(keccak(b"bench-zk optimistic " + label), shards, Verification.OPTIMISTIC)
        submitted = []
        for shard in range(shards):
            market.assign(job, shard, self.asset, sender=self.keeper)
            root = keccak(b"bench-zk root %d" % shard)
            sig = self.sign(job, shard, root)
            tx = market.submit_result(job, shard, 0, root, GPU_SECONDS, 0, sig, sender=self.provider)
            submitted.append(tx)
        rows = []
        for shard, tx in enumerate(submitted):
            deadline = int(market.replica(job, shard, 0).deadline)
            if self.chain.pending_timestamp <= deadline:
                self.chain.pending_timestamp = deadline + 1  # the first second finalize accepts
            done = market.finalize(job, shard, sender=self.keeper)
            rows.append(
                {
                    "submit_gas": tx.gas_used,
                    "finalize_gas": done.gas_used,
                    "total_gas": tx.gas_used + done.gas_used,
                    "chain_seconds_to_finality": self.block_time(done) - self.block_time(tx),
                    "deadline_minus_submit": deadline - self.block_time(tx),
                    "window": window,
                }
            )
        return rows

    # ------------------------------------------------------------ the zk path

    def register_and_bind(self, files: dict[str, bytes]) -> tuple[bytes, bytes, MerkleTree, dict]:
        s, b = self.stack, self.blobs
        registered = s.models.register_model(
            b.artifact_hash, self.verifier, b.input_words, b.output_words, sender=self.owner
        )
        model = bytes(registered.events.filter(s.models.ModelRegistered)[0].model)
        tree = MerkleTree.from_files(files)
        manifest_hash = keccak(b"bench-zk manifest")
        bound = s.models.bind(manifest_hash, model, tree.root, sender=self.client)
        return model, manifest_hash, tree, {"register_model": registered.gas_used, "bind": bound.gas_used}

    def zk_shard(self, job: int, shard: int, files: dict, tree: MerkleTree, workdir: Path) -> dict:
        s, b = self.stack, self.blobs
        s.market.assign(job, shard, self.asset, sender=self.keeper)
        lease = s.market.replica(job, shard, 0).lease
        binding = zk.binding(self.chain.chain_id, s.market.address, job, shard, 0, lease)
        words = zk.decode_words(files[zk.input_path(shard)])
        started = time.perf_counter()  # the container has ended: its output is the model's
        proof = zk.prove(b, words, zk.tag_words(binding), workdir / f"shard-{shard}")
        prove_wall = time.perf_counter() - started
        _, _, outputs, _ = b.layout.split(proof.instances)
        out_tree = MerkleTree.from_files({zk.OUTPUT_LEAF: zk.encode_words(outputs), "log/container.log": LOG})
        calldata = VERIFY_PROOF + encode(["bytes", "uint256[]"], [proof.proof, list(proof.instances)])
        call = {"from": self.relayer.address, "to": self.verifier.address, "data": "0x" + calldata.hex()}
        accepted = int.from_bytes(self.web3.eth.call(call), "big") == 1
        verify_gas = self.web3.eth.estimate_gas(call)
        sig = self.sign(job, shard, out_tree.root)
        sent = time.perf_counter()
        tx = s.models.submit_result(
            job,
            shard,
            0,
            out_tree.root,
            GPU_SECONDS,
            sig,
            proof.proof,
            list(proof.instances),
            tree.proof(zk.input_path(shard)),
            out_tree.proof(zk.OUTPUT_LEAF),
            sender=self.relayer,
        )
        submit_wall = time.perf_counter() - sent
        sent = time.perf_counter()  # the floor's transaction: a plain transfer by the same sender
        self.relayer.transfer(self.keeper, 1)
        bare_wall = time.perf_counter() - sent
        [finalized] = tx.events.filter(s.market.ShardFinalized)
        rep = s.market.replica(job, shard, 0)
        return {
            "shard": shard,
            "verify_proof_gas": verify_gas,
            "verify_proof_accepted": accepted,
            "submit_result_gas": tx.gas_used,
            "calldata_bytes": len(calldata),
            "prove_seconds": round(proof.seconds, 3),
            "prove_wall_seconds": round(prove_wall, 3),
            "peak_mib": proof.peak_mib,
            "proof_bytes": proof.size,
            "instances": len(proof.instances),
            "submit_wall_seconds": round(submit_wall, 3),
            "wall_seconds_to_finality": round(proof.seconds + submit_wall, 3),
            "bare_transaction_wall_seconds": round(bare_wall, 3),
            # The floor: EZKL's own proving time (inside the prover) and a plain transfer's inclusion.
            "floor_seconds": round(proof.seconds + bare_wall, 3),
            "over_floor": round((prove_wall + submit_wall) / (proof.seconds + bare_wall), 2),
            "finalized_in_submit_block": finalized.block_number == tx.block_number,
            "chain_seconds_to_finality": int(rep.since) - self.block_time(tx),
            "state": int(rep.state),
        }


def run(args: argparse.Namespace, workdir: Path) -> dict:
    from ape import accounts, chain, networks, project

    blobs = zk.ModelArtifacts.load(zk.ROOT / ".zk" / "models" / MODEL)
    zk.tool_python()  # fails now, with what to run, when .venv-zk is missing
    samples = blobs.samples()
    n = args.proofs
    files = {
        zk.input_path(s): zk.encode_words(zk.quantize(samples[s % len(samples)]["x"], blobs.input_scale))
        for s in range(n)
    }
    with (
        Anvil(log=workdir / "anvil.log") as anvil,
        networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": anvil.uri}),
    ):
        print("deploying the stack and the verifier...", flush=True)
        bench = Bench(project, accounts.test_accounts, chain, networks.provider.web3, blobs, n)
        print(
            f"  verifier: {bench.verifier_runtime_bytes:,} bytes of runtime code, deployed for "
            f"{bench.verifier_deploy_gas:,} gas",
            flush=True,
        )
        print("warming up the participants (one optimistic shard, not counted)...", flush=True)
        bench.optimistic(1, b"warm-up")
        model, manifest_hash, tree, setup_gas = bench.register_and_bind(files)
        print(f"  register_model {setup_gas['register_model']:,} gas, bind {setup_gas['bind']:,} gas", flush=True)
        job = bench.post(manifest_hash, n, Verification.ZK)
        shards = []
        for shard in range(n):
            print(f"zk shard {shard + 1}/{n}: assign, prove, submit...", flush=True)
            row = bench.zk_shard(job, shard, files, tree, workdir)
            if not (row["verify_proof_accepted"] and row["finalized_in_submit_block"]):
                raise SystemExit(f"shard {shard}: proof not accepted or not final at once: {row}")
            print(
                f"  proved in {row['prove_seconds']} s ({row['peak_mib']} MiB peak), {row['proof_bytes']:,} bytes; "
                f"verifyProof {row['verify_proof_gas']:,} gas, submit_result {row['submit_result_gas']:,} gas "
                f"({row['submit_wall_seconds']} s), final in its block",
                flush=True,
            )
            shards.append(row)
        print(f"optimistic job of {n} shards: submit, wait out the window, finalize...", flush=True)
        optimistic = bench.optimistic(n, b"measured")
        for row in optimistic:
            print(
                f"  submit {row['submit_gas']:,} + finalize {row['finalize_gas']:,} gas; final "
                f"{row['chain_seconds_to_finality']} chain-seconds after its submit",
                flush=True,
            )
        verifier = {
            "runtime_bytes": bench.verifier_runtime_bytes,
            "initcode_bytes": bench.verifier_initcode_bytes,
            "deployment_gas": bench.verifier_deploy_gas,
        }

    zk_wall = spread([r["wall_seconds_to_finality"] for r in shards])
    opt_chain = spread([r["chain_seconds_to_finality"] for r in optimistic])
    zk_gas = spread([r["submit_result_gas"] for r in shards])
    opt_gas = spread([r["total_gas"] for r in optimistic])
    return {
        "benchmark": "zk",
        "model": MODEL,
        "proofs": n,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "public_instances": shards[0]["instances"],
        "input_words": blobs.input_words,
        "output_words": blobs.output_words,
        "tag_words": zk.TAG_WORDS,
        "verifier": verifier,
        "setup_gas": setup_gas,
        "verify_proof_gas": spread([r["verify_proof_gas"] for r in shards]),
        "verify_proof_gas_note": "eth_estimateGas of verifyProof(proof, instances) sent to the verifier: "
        "includes the 21,000 base cost and the calldata",
        "submit_result_gas": zk_gas,
        "prove_seconds": spread([r["prove_seconds"] for r in shards]),
        "prove_wall_seconds": spread([r["prove_wall_seconds"] for r in shards]),
        "peak_mib": spread([r["peak_mib"] for r in shards]),
        "proof_bytes": spread([r["proof_bytes"] for r in shards]),
        "calldata_bytes": spread([r["calldata_bytes"] for r in shards]),
        "submit_wall_seconds": spread([r["submit_wall_seconds"] for r in shards]),
        "finality": {
            "zk_wall_seconds": zk_wall,
            "zk_wall_seconds_with_prover_start": spread(
                [round(r["prove_wall_seconds"] + r["submit_wall_seconds"], 3) for r in shards]
            ),
            "floor_seconds": spread([r["floor_seconds"] for r in shards]),
            "over_floor": spread([r["over_floor"] for r in shards]),
            "zk_chain_seconds": spread([r["chain_seconds_to_finality"] for r in shards]),
            "optimistic_chain_seconds": opt_chain,
            "challenge_window": DEFAULT_PARAMETERS.challenge_window,
            "optimistic_over_zk": round(opt_chain["median"] / zk_wall["median"], 1),
        },
        "optimistic_gas": {
            "submit": spread([r["submit_gas"] for r in optimistic]),
            "finalize": spread([r["finalize_gas"] for r in optimistic]),
            "submit_plus_finalize": opt_gas,
        },
        "zk_minus_optimistic_gas": zk_gas["median"] - opt_gas["median"],
        "anchors": ANCHORS,
        "shards": shards,
        "optimistic_shards": optimistic,
    }


def print_summary(r: dict) -> None:
    v, f, o = r["verifier"], r["finality"], r["optimistic_gas"]
    rows = [
        ("verifyProof alone (21k base + calldata incl.)", fmt(r["verify_proof_gas"], " gas")),
        (
            "ModelRegistry.submit_result (verify + submit + finalize + pay)",
            fmt(r["submit_result_gas"], " gas"),
        ),
        (
            "optimistic: market.submit_result + market.finalize",
            f"{fmt(o['submit_plus_finalize'], ' gas')} ({fmt(o['submit'])} + {fmt(o['finalize'])})",
        ),
        ("zk minus optimistic (medians)", f"{r['zk_minus_optimistic_gas']:+,.0f} gas"),
        (
            "public instances",
            f"{r['public_instances']} ({r['input_words']} in + {r['output_words']} out + 2 x {r['tag_words']} tag)",
        ),
        ("verifier runtime code", f"{v['runtime_bytes']:,} bytes (init code {v['initcode_bytes']:,} bytes)"),
        ("verifier deployment", f"{v['deployment_gas']:,} gas"),
        ("register_model / bind", f"{r['setup_gas']['register_model']:,} / {r['setup_gas']['bind']:,} gas"),
        ("proving, as zk.prove reports", fmt(r["prove_seconds"], " s", 2)),
        ("proving, wall time of the call", fmt(r["prove_wall_seconds"], " s", 2)),
        ("prover peak memory", fmt(r["peak_mib"], " MiB")),
        ("proof size", fmt(r["proof_bytes"], " bytes")),
        ("zk: container end -> final (prove + submit tx)", fmt(f["zk_wall_seconds"], " s", 2)),
        (
            "zk: the same, the prover call's wall time (process start incl.)",
            fmt(f["zk_wall_seconds_with_prover_start"], " s", 2),
        ),
        (
            "floor: EZKL's own proving + a plain transfer's inclusion; ratio",
            fmt(f["floor_seconds"], " s", 2) + "; " + fmt(f["over_floor"], "x", 2),
        ),
        ("zk: chain time submit -> final", fmt(f["zk_chain_seconds"], " s") + " (final in the submit's block)"),
        (
            "optimistic: chain time submit -> earliest finalize",
            fmt(f["optimistic_chain_seconds"], " s") + f" (window {f['challenge_window']} s + 1 s)",
        ),
        ("optimistic / zk time to finality (medians)", f"{f['optimistic_over_zk']:,}x"),
    ]
    rows += [(f"anchor (not measured here): {name}", value) for name, value in r["anchors"].items()]
    width = max(len(a) for a, _ in rows)
    print()
    print(f"model {r['model']}, {r['proofs']} proofs; min / median / max")
    print(f"| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for a, b in rows:
        print(f"| {a:<{width}} | {b} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proofs", type=int, default=5, help="shards proven and submitted (default 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "zk.json")
    args = parser.parse_args()
    if args.proofs < 1:
        raise SystemExit("--proofs must be at least 1")
    from ape.logging import logger

    logger.set_level("ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="bench-zk-"))
    print(f"{args.proofs} proofs of model {MODEL}; prover files and anvil log in {workdir}", flush=True)
    started = time.monotonic()
    try:
        result = run(args, workdir)
    except zk.ZkError as error:
        raise SystemExit(f"{error} (the model and the prover come from `make zk`)")
    result["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out} in {result['seconds']} s")


if __name__ == "__main__":
    main()
