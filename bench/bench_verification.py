"""Adversarial verification benchmark: how many wrong results and inflated metering claims each
verification mode catches, at what cost, on a real anvil, Docker engine, content store,
verifier bots and arbiter.

    .venv/bin/python bench/bench_verification.py [--shards 40] [--spot-check-bps 2500] [--quick]

The network: two honest providers; a liar, whose agent submits a wrong root (the honest one's
hash) on every shard it runs; an inflater, whose agent submits the right root but claims four
times the GPU-seconds it ran plus five (waiting until the chain's bound lets the claim in).
Each shard is the same small CPU job (a sha256 chain over the shard's index, about a second of
CPU), run for real: once per shard to learn the honest result and its measured metering, then
again by whichever verifier or arbiter checks it. Agents here are scripted to keep the run
short: they submit, with their own keys and signed receipts, what a run of the job produced
(or their lie about it); the verifiers (two `verifier.bot.Verifier`s, each with its own key)
and the arbiter (`verifier.arbiter.Arbiter`, the facilitator key) are the real ones.

Per mode (a job of `--shards` shards, a quarter of its replicas on the liar and a quarter on
the inflater):

- REPLICATED, replication 2: every shard has an honest replica and a second one (honest, liar
  or inflater); the replicas check one another (a root mismatch opens a dispute by itself,
  a claim beyond the job's tolerance of its sibling's sends a verifier to re-execute);
- SPOT_CHECK at `--spot-check-bps`: each replica re-executed with that probability, by a
  draw from the block after its submission; claims beyond the job's tolerance of the job's
  other claims are re-executed whatever the draw;
- OPTIMISTIC with each verifier sampling 10 %, and the same outlier rule for claims.

Reported per mode: wrong results caught (of those submitted), next to the binomial
expectation for a spot check (p per shard; 1 - (1 - p)^n for at least one of n); honest results
challenged and honest replicas slashed (goal 0); inflated claims paid beyond the job's
tolerance (goal 0); challenges (one per disputed shard: two verifiers never both bond one
shard); chain time from a result to its shard's finalization; re-executions; and gas per
shard, in all and for verification alone (challenges and rulings). Figures go to
bench/results/verification.json; the exit status is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from eth_utils import keccak  # noqa: E402

from agent import image  # noqa: E402
from computenet.deploy import deploy_stack  # noqa: E402
from computenet.domain import Requirements, Spec, Verification  # noqa: E402
from computenet.localnet import Anvil, DockerEngine, ServedApp, docker_reachable  # noqa: E402
from computenet.manifest import build_manifest, canonical_json, manifest_hash  # noqa: E402
from computenet.market import Market  # noqa: E402
from computenet.receipts import ExecutionReceipt  # noqa: E402
from computenet.sandbox import Limits  # noqa: E402
from computenet.store import LocalStore, StoreClient, app  # noqa: E402
from computenet.web3calls import Sender  # noqa: E402
from verifier.arbiter import Arbiter  # noqa: E402
from verifier.bot import Verifier  # noqa: E402
from verifier.reexecute import Reexecutor  # noqa: E402
from verifier.rules import allowed_claim  # noqa: E402

TOKEN = 10**6
TOLERANCE_BPS = 5_000  # the manifest's metering tolerance (its default)
OPTIMISTIC_SHARE_BPS = 1_000  # what each verifier samples of OPTIMISTIC results
# A second or so of CPU per shard: sha256 chained over the shard index, written to /out.
JOB = (
    "import hashlib, os; i = os.environ['COMPUTENET_SHARD_INDEX']; d = i.encode()\n"
    "for _ in range(400_000): d = hashlib.sha256(d).digest()\n"
    "open('/out/result.txt', 'w').write(i + ' ' + d.hex() + '\\n'); print('shard', i, 'done')"
)


@dataclass
class Honest:
    root: bytes
    seconds: int  # the measured claim (Metering.seconds for a CPU job)


@dataclass
class ModeResult:
    mode: str
    shards: int
    wrong_submitted: int = 0
    wrong_caught: int = 0
    inflated_submitted: int = 0
    inflated_caught: int = 0
    inflated_paid_beyond_tolerance: int = 0
    honest_challenged: int = 0
    honest_slashed: int = 0
    challenges: int = 0
    duplicate_challenges: int = 0
    reexecutions: int = 0
    finality_seconds: list[int] = field(default_factory=list)
    gas_total: int = 0
    gas_verification: int = 0
    wall_seconds: float = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=40)
    parser.add_argument("--spot-check-bps", type=int, default=2_500)
    parser.add_argument("--quick", action="store_true", help="16 shards per mode")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "verification.json")
    args = parser.parse_args()
    shards = 16 if args.quick else args.shards

    import docker
    from ape import accounts, chain, networks, project
    from ape.logging import logger

    logger.set_level("ERROR")
    import logging

    logging.getLogger("verifier").setLevel(logging.ERROR)  # its decisions are counted below instead
    workdir = Path(tempfile.mkdtemp(prefix="bench-verification-"))
    print(f"logs in {workdir}", flush=True)
    engine = None
    if docker_reachable():
        client = docker.from_env()
    else:
        engine = DockerEngine(workdir / "docker", log=workdir / "dockerd.log")
        client = engine.client()
    store = ServedApp(app(LocalStore(workdir / "store")))
    results: list[ModeResult] = []
    try:
        print("building the job image...", flush=True)
        reference = image.build(client)
        with (
            Anvil(log=workdir / "anvil.log") as anvil,
            networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": anvil.uri}),
        ):
            net = Network(project, accounts.test_accounts, chain, networks.provider.web3, client, store, workdir)
            manifests = {mode: net.publish(reference, args.spot_check_bps) for mode in MODES}
            print(f"running each of {shards} shards once for its honest result...", flush=True)
            honest = net.honest_results(manifests["replicated"], shards)
            print("  measured: " + ", ".join(f"{h.seconds} s" for h in honest.values()), flush=True)
            for mode in MODES:
                started = time.time()
                result = net.run_mode(mode, manifests[mode], shards, honest, args.spot_check_bps)
                result.wall_seconds = round(time.time() - started, 1)
                results.append(result)
                show(result, args.spot_check_bps)
    finally:
        store.stop()
        if engine is not None:
            engine.stop()

    report = {r.mode: summarise(r, args.spot_check_bps) for r in results}
    goals = (
        all(
            r["honest_challenged"] == 0
            and r["honest_slashed"] == 0
            and r["inflated_paid_beyond_tolerance"] == 0
            and r["duplicate_challenges"] == 0
            for r in report.values()
        )
        and report["replicated"]["wrong_caught_pct"] == 100.0
    )
    spot = report["spot_check"]
    goals = goals and spot["within_binomial"]
    print()
    print(f"goals met: {goals}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "verification",
                "shards_per_mode": shards,
                "spot_check_bps": args.spot_check_bps,
                "metering_tolerance_bps": TOLERANCE_BPS,
                "optimistic_share_bps": OPTIMISTIC_SHARE_BPS,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "goals_met": goals,
                "modes": report,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    sys.exit(0 if goals else 1)


MODES = ("replicated", "spot_check", "optimistic")


class Network:
    """The stack, its parties' keys, and the real verifiers and arbiter over one anvil."""

    def __init__(self, project, test_accounts, chain, web3, docker_client, store, workdir: Path) -> None:
        self.chain, self.web3, self.workdir = chain, web3, workdir
        a = test_accounts
        self.owner, self.client, self.keeper, self.facilitator = a[0], a[1], a[4], a[9]
        self.providers = {"honest": a[2], "honest2": a[3], "liar": a[5], "inflater": a[6]}
        self.agents = {"honest": a[10], "honest2": a[11], "liar": a[12], "inflater": a[13]}
        self.verifier_keys = (a[7], a[8])
        self.stack = deploy_stack(project, self.owner)
        s = self.stack
        s.market.set_facilitator(self.facilitator, True, sender=self.owner)
        for who in (self.client, self.keeper, *self.providers.values(), *self.verifier_keys):
            s.token.faucet(who, 1_000_000 * TOKEN, sender=who)
            for spender in (s.market, s.assets, s.keepers):
                s.token.approve(spender, 2**256 - 1, sender=who)
        s.keepers.register(100 * TOKEN, sender=self.keeper)
        self.assets = {}
        for role, provider in self.providers.items():
            spec = Spec(
                gpu_model=0,
                vram_mib=0,
                gpu_count=0,
                cpu_cores=2,
                region=0,
                price=100,
                expire=chain.pending_timestamp + 30 * 86_400,
                max_leases=256,
            )
            receipt = s.assets.register(spec.as_tuple(), self.agents[role], b"\x11" * 32, sender=provider)
            asset = receipt.events.filter(s.assets.AssetRegistered)[0].asset
            s.assets.add_stake(asset, 1_000 * TOKEN, sender=provider)
            self.assets[role] = asset
        self.role_of = {asset: role for role, asset in self.assets.items()}
        self.store_client = StoreClient(store.url)
        limits = Limits(memory_bytes=256 << 20)
        self.reexecutor = CountingReexecutor(self.store_client, docker=docker_client, limits=limits)
        self.verifiers = [
            Verifier(
                Market.over_web3(web3, s.market.address),
                self.reexecutor,
                sender=Sender(web3, key.private_key),
                share_bps=OPTIMISTIC_SHARE_BPS,
                state=workdir / f"verifier-{i}.json",
            )
            for i, key in enumerate(self.verifier_keys)
        ]
        self.arbiter = Arbiter(
            Market.over_web3(web3, s.market.address),
            Sender(web3, self.facilitator.private_key),
            workdir / "audit.jsonl",
            self.reexecutor,
            state=workdir / "arbiter.json",
        )

    # ------------------------------------------------------------ set-up

    def publish(self, reference: str, spot_check_bps: int) -> bytes:
        """A manifest for the job (its verification section per mode), in the content store."""
        self._n = getattr(self, "_n", 0) + 1
        manifest = build_manifest(
            reference,
            ["python3", "-c", JOB],
            {},
            timeout_seconds=120,
            max_output_bytes=1 << 16,
            env={"RUN": str(self._n)},  # one manifest per mode
            verification={"spot_check_bps": spot_check_bps, "metering_tolerance_bps": TOLERANCE_BPS},
        )
        self.store_client.put(canonical_json(manifest))
        return manifest_hash(manifest)

    def honest_results(self, mhash: bytes, shards: int) -> dict[int, Honest]:
        runs = {}
        for shard in range(shards):
            run = self.reexecutor.run(mhash, shard, shards, 0)
            runs[shard] = Honest(run.root, run.metering.seconds(0))
        self.reexecutor.runs = 0
        return runs

    # ------------------------------------------------------------ one mode

    def run_mode(self, mode: str, mhash: bytes, shards: int, honest: dict[int, Honest], spot_bps: int) -> ModeResult:
        s, chain = self.stack, self.chain
        result = ModeResult(mode, shards)
        replication = 2 if mode == "replicated" else 1
        verification = {
            "replicated": Verification.REPLICATED,
            "spot_check": Verification.SPOT_CHECK,
            "optimistic": Verification.OPTIMISTIC,
        }[mode]
        req = Requirements(
            min_vram_mib=0,
            gpu_count=0,
            max_price=200,
            max_gpu_seconds=600,
            deadline=chain.pending_timestamp + 30 * 86_400,
            shard_count=shards,
            replication=replication,
            verification=verification,
        )
        start_block = self.web3.eth.block_number + 1
        tx = s.market.post_job(mhash, req.as_tuple(), sender=self.client)
        job = tx.events.filter(s.market.JobPosted)[0].job
        # A quarter of the replicas on the liar, a quarter on the inflater, the rest honest;
        # under replication the first replica is always honest.
        plan = {}
        for shard in range(shards):
            other = ("liar", "inflater", "honest2", "honest2")[shard % 4]
            plan[shard] = (
                ["honest", other] if replication == 2 else [("liar", "inflater", "honest", "honest2")[shard % 4]]
            )
        submitted_at: dict[tuple[int, int], int] = {}
        for shard, roles in plan.items():
            for role in roles:
                s.market.assign(job, shard, self.assets[role], sender=self.keeper)
            for replica, role in enumerate(roles):
                self.submit(job, shard, replica, role, honest[shard], result, submitted_at)
        self.settle(job, result)
        # Reopened replicas (slashed ones) re-run on an honest asset that holds none of the shard.
        for shard in plan:
            for replica in range(replication):
                if int(s.market.replica(job, shard, replica).state) == 0:  # OPEN
                    held = {
                        self.role_of[int(s.market.replica(job, shard, r).asset)]
                        for r in range(replication)
                        if r != replica and int(s.market.replica(job, shard, r).asset)
                    }
                    role = "honest2" if "honest" in held else "honest"
                    s.market.assign(job, shard, self.assets[role], sender=self.keeper)
                    self.submit(job, shard, replica, role, honest[shard], result, submitted_at)
        self.settle(job, result)
        # Past every challenge window: finalize, and see who was paid what.
        chain.mine(timestamp=chain.pending_timestamp + int(s.market.parameters().challenge_window) + 1)
        for shard in range(shards):
            tx = s.market.finalize(job, shard, sender=self.keeper)
            result.gas_total += tx.gas_used
            for event in tx.events.filter(s.market.ShardFinalized):
                rep = s.market.replica(job, shard, event.replica)
                paid = int(rep.gpu_seconds)
                if paid > allowed_claim(honest[shard].seconds, 0, TOLERANCE_BPS):
                    result.inflated_paid_beyond_tolerance += 1
                first = submitted_at.get((shard, int(event.replica)))
                if first is not None:
                    result.finality_seconds.append(tx.timestamp - first)
        self.count_events(job, start_block, result)
        return result

    def submit(
        self, job: int, shard: int, replica: int, role: str, truth: Honest, result: ModeResult, submitted_at: dict
    ) -> None:
        s, chain = self.stack, self.chain
        root, claim = truth.root, truth.seconds
        if role == "liar":
            root = keccak(truth.root)
            result.wrong_submitted += 1
        elif role == "inflater":
            claim = 4 * truth.seconds + 5
            result.inflated_submitted += 1
        rep = s.market.replica(job, shard, replica)
        # The run takes its time: the chain's clock moves past the claim (× 1: a CPU job).
        ready = int(rep.since) + claim
        if chain.pending_timestamp < ready:
            chain.pending_timestamp = ready
        receipt = ExecutionReceipt(
            job=job,
            shard=shard,
            replica=replica,
            lease=int(rep.lease),
            asset=int(rep.asset),
            manifest=s.market.job(job).manifest_hash,
            output_root=root,
            gpu_seconds=claim,
            exit_code=0,
        )
        signature = receipt.sign(self.agents[role].private_key, chain.chain_id, s.market.address)
        tx = s.market.submit_result(job, shard, replica, root, claim, 0, signature, sender=self.providers[role])
        result.gas_total += tx.gas_used
        submitted_at.setdefault((shard, replica), tx.timestamp)

    def settle(self, job: int, result: ModeResult) -> None:
        """Verifiers and the arbiter step until nothing is waiting and no dispute is open."""
        self.chain.mine()  # the block after the last submission: its hash seeds the draws
        for _ in range(50):
            decisions = [d for v in self.verifiers for d in v.run_once()]
            rulings = self.arbiter.run_once()
            waiting = sum(len(v.state.waiting) for v in self.verifiers)
            if not decisions and not rulings and not waiting and not self.open_disputes(job):
                return
            self.chain.mine()
        raise RuntimeError(f"job {job}: verification did not settle")

    def open_disputes(self, job: int) -> bool:
        req = self.stack.market.job(job).requirements
        return any(
            int(self.stack.market.replica(job, shard, r).state) == 3  # DISPUTED
            for shard in range(int(req.shard_count))
            for r in range(int(req.replication))
        )

    def count_events(self, job: int, start_block: int, result: ModeResult) -> None:
        s = self.stack
        end = self.chain.blocks.height + 1
        opened = [e for e in s.market.DisputeOpened.range(start_block, end) if e.job == job]
        challenged_shards = [e.shard for e in opened if e.challenger != "0x" + "00" * 20]
        result.challenges = len(challenged_shards)
        result.duplicate_challenges = len(challenged_shards) - len(set(challenged_shards))
        rejected = [e for e in s.market.ReplicaRejected.range(start_block, end) if e.job == job]
        for e in rejected:
            role = self.role_of[int(e.asset)]
            if role == "liar":
                result.wrong_caught += 1
            elif role == "inflater":
                result.inflated_caught += 1
            else:
                result.honest_slashed += 1
        bad = {int(e.shard) for e in rejected if self.role_of[int(e.asset)] in ("liar", "inflater")}
        result.honest_challenged = sum(1 for shard in challenged_shards if shard not in bad)
        for e in opened:
            result.gas_verification += self.web3.eth.get_transaction_receipt(e.transaction_hash)["gasUsed"]
        for e in s.market.DisputeResolved.range(start_block, end):
            if e.job == job:
                result.gas_verification += self.web3.eth.get_transaction_receipt(e.transaction_hash)["gasUsed"]
        result.reexecutions = self.reexecutor.runs
        self.reexecutor.runs = 0


class CountingReexecutor(Reexecutor):
    """The re-executor, counting its runs."""

    runs = 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return super().run(*args, **kwargs)


def summarise(r: ModeResult, spot_bps: int) -> dict:
    out = {k: v for k, v in r.__dict__.items() if k != "finality_seconds"}
    out["wrong_caught_pct"] = round(100 * r.wrong_caught / r.wrong_submitted, 1) if r.wrong_submitted else None
    out["inflated_caught_pct"] = (
        round(100 * r.inflated_caught / r.inflated_submitted, 1) if r.inflated_submitted else None
    )
    out["finality_seconds_p50"] = statistics.median(r.finality_seconds) if r.finality_seconds else None
    out["gas_per_shard"] = r.gas_total // r.shards
    out["verification_gas_per_shard"] = r.gas_verification // r.shards
    if r.mode == "spot_check":
        p, n = spot_bps / 10_000, r.wrong_submitted
        mean, sd = n * p, math.sqrt(n * p * (1 - p))
        out["expected_caught"] = round(mean, 2)
        out["expected_caught_interval_3sd"] = [max(0, math.floor(mean - 3 * sd)), min(n, math.ceil(mean + 3 * sd))]
        out["p_at_least_one_caught"] = round(1 - (1 - p) ** n, 4)
        out["within_binomial"] = (
            out["expected_caught_interval_3sd"][0] <= r.wrong_caught <= out["expected_caught_interval_3sd"][1]
        )
    return out


def show(r: ModeResult, spot_bps: int) -> None:
    s = summarise(r, spot_bps)
    print(
        f"{r.mode}: wrong results caught {r.wrong_caught}/{r.wrong_submitted}"
        + (
            f" (expected {s['expected_caught']}, 3σ {s['expected_caught_interval_3sd']}, "
            f"P(at least one) {s['p_at_least_one_caught']})"
            if r.mode == "spot_check"
            else ""
        )
        + f"; inflated claims caught {r.inflated_caught}/{r.inflated_submitted}, paid beyond tolerance "
        f"{r.inflated_paid_beyond_tolerance}; honest challenged {r.honest_challenged}, slashed {r.honest_slashed}; "
        f"challenges {r.challenges} (duplicates {r.duplicate_challenges}); re-executions {r.reexecutions}; "
        f"finality p50 {s['finality_seconds_p50']} s of chain time; gas per shard {s['gas_per_shard']:,} "
        f"(verification {s['verification_gas_per_shard']:,}); {r.wall_seconds} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
