"""The agent on one provider machine: follows the chain for assignments to its assets, runs
each in a container (as many at once as each asset's capacity, each on GPUs of its own),
submits the signed result (results ready together in one transaction: `Agent.submit_all`),
declines what it cannot run, serves signed heartbeats (and the outputs) over HTTP at the
endpoint its assets record on chain, and after a restart finishes what its journal says was
left open.

Every failure of a lease ends on chain (agent.plan.on_failure): declined with a reason
before its container starts, a failed result after. Once a result is committed, the lease's
in/ and out/ are gone; its output index stays, its files are in the output store.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from docker import errors as docker_errors
from eth_utils import keccak

from agent import checkpoints, cpu, execute, gpu, machine, plan, tee
from agent import zk as zk_lease
from agent.heads import HeadNotices
from agent.journal import Entry, Journal, Lease
from agent.settings import AgentSettings
from computenet import events as ev
from computenet import preflight, zk
from computenet import tee as tee_binding
from computenet.checkpoints import Checkpoint, SignedCheckpoint
from computenet.connection import ConfigError, broadcast
from computenet.domain import SUBMIT_MARGIN, Asset, Checkpoints, Job, ReplicaState, Verification
from computenet.follow import Follower, JsonCursor
from computenet.heartbeat import Heartbeat
from computenet.market import Market
from computenet.receipts import MAX_BATCH_RESULTS, ExecutionReceipt, sign_receipts
from computenet.staging import Decline
from computenet.store import LocalStore, Mirrors, StoreClient

log = logging.getLogger("agent")

RECEIPT_TIMEOUT = 120  # seconds to wait for a result or decline to be mined
RETRY_INTERVAL = 10  # seconds between looks for results whose submission failed
TEE_INTERVAL = 60  # seconds between looks at the assets' TEE verdicts
MANIFESTS_KEPT = 64  # checked manifests kept by hash (a job's shards, jobs sharing one)


def endpoint_problem(asset: int, registered: str, own: str) -> str | None:
    """What is wrong with the endpoint `asset` records on chain, given the one this agent
    serves at (pure); keepers find its heartbeats only there."""
    command = f"ape run provider set-endpoint {asset} {own or '<url>'}"
    if not own:
        return f"asset {asset}: this agent serves no heartbeats (outputs_port 0), so keepers will not assign to it"
    if not registered:
        return f"asset {asset} records no endpoint on chain: keepers cannot see its heartbeats; run `{command}`"
    if registered.rstrip("/") != own.rstrip("/"):
        return (
            f"asset {asset} records the endpoint {registered} on chain but this agent serves at {own}: "
            f"keepers poll the recorded one; run `{command}` (or set COMPUTENET_AGENT_PUBLIC_URL)"
        )
    return None


class Assignments:
    """The market as the agent's Follower reads it: the ShardAssigned events of the agent's own
    assets only. The node filters on the indexed asset, so the assignments a busy market makes
    to other assets are neither sent nor decoded (about 0.8 ms each, on the way to one's own)."""

    def __init__(self, market: Market, assets: list[int]) -> None:
        self.market, self.assets = market, list(assets)
        self.deployment_block = market.deployment_block

    def head(self) -> int:
        return self.market.head()

    def events(self, start_block: int, stop_block: int, **_: Any) -> list[ev.Event]:
        found = self.market.calls.market.events.ShardAssigned().get_logs(
            argument_filters={"asset": self.assets}, from_block=start_block, to_block=stop_block - 1
        )
        return [
            ev.decode(
                e["event"],
                dict(e["args"]),
                block=e["blockNumber"],
                tx="0x" + bytes(e["transactionHash"]).hex(),
                index=e["logIndex"],
            )
            for e in found
        ]


@dataclass
class Served:
    """An asset this agent serves, and how many of its shards it runs at once."""

    asset: Asset
    capacity: int
    running: int = 0


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        market: Market,
        account: Any,
        docker: Any,
        store: StoreClient | Mirrors,
        journal: Journal,
        outputs: LocalStore,
    ) -> None:
        self.settings, self.market, self.account = settings, market, account
        self.docker, self.store, self.journal, self.outputs = docker, store, journal, outputs
        self.work = Path(settings.work_dir) / "leases"
        self.work.mkdir(parents=True, exist_ok=True)
        self.chain_lock = threading.RLock()  # ape is shared by the shard threads
        self.send_lock = threading.Lock()  # one key: one nonce sequence
        # Results computed while another submission is on its way wait here and go out together.
        self.ready: list[Entry] = []
        self.ready_lock = threading.Lock()
        self.submit_lock = threading.Lock()
        self.count_lock = threading.Lock()  # shards taken per asset, for heartbeats
        self.served: dict[int, Served] = {}
        self.pools: dict[int, ThreadPoolExecutor] = {}
        self.telemetry = gpu.probe()
        self.machine = machine.probe(settings.work_dir)  # declines leases asking more than it has
        self.gpus = gpu.Allocator()  # device indices pinned to running leases
        self.cpu = cpu.Meter(docker)  # CPU-only assets' utilisation, from their own containers
        self.beats: dict[int, str] = {}  # asset -> its latest signed heartbeat, as served
        self.watchers: dict[tuple, checkpoints.Watcher] = {}  # running lease -> its checkpoints
        self.jobs: dict[int, Job] = {}  # a job's terms never change once posted
        # Kept by the hash the job committed to: those bytes never change, so a kept manifest is
        # never stale; a Decline (not found, invalid) is not kept, so a later upload is seen.
        self.manifest = functools.lru_cache(MANIFESTS_KEPT)(self._fetch_manifest)
        self.images: dict[str, str] = {}  # manifest image -> local image id, while the engine has it
        self.chain_id = market.chain_id  # read once: the shard threads sign with it
        self.zk_models = zk_lease.local_models(settings.zk_models)  # artifact hash -> what proves it
        self.zk_ids: dict[bytes, bytes] = {}  # artifact hash -> the model id it has with its own verifier
        self.tee = tee.source(settings.tee)  # None: tee leases are declined
        self.market_address = str(market.market.address)
        self.attestations = str(market.attestations.address)
        self.attestor = tee.AttestorClient(settings.attestor_url) if settings.attestor_url else None
        self.follower = Follower(Assignments(market, settings.assets), JsonCursor(settings.cursor_path()))

    # ------------------------------------------------------------ start-up

    def check_assets(self) -> dict[int, Served]:
        """Each asset must exist, name this key as its agent and match this machine;
        anything else stops the agent with a message that says what differs."""
        problems = []
        for asset_id in self.settings.assets:
            asset = self.market.asset(asset_id)
            if asset is None:
                problems.append(f"asset {asset_id} does not exist")
                continue
            if asset.agent.lower() != str(self.account.address).lower():
                problems.append(
                    f"asset {asset_id}: its registered agent is {asset.agent}, not this key {self.account.address}"
                )
                continue
            mismatch = gpu.spec_mismatch(asset.spec, self.telemetry)
            if mismatch and self.settings.require_gpu_match:
                problems.append(f"asset {asset_id}: {mismatch}")
                continue
            for problem in plan.spec_problems(asset.spec, self.machine):
                log.warning(
                    f"asset {asset_id} {problem}: leases asking more are declined",
                    extra={"fields": {"asset": asset_id}},
                )
            capacity = self.settings.capacity or max(1, asset.spec.max_leases)
            self.served[asset_id] = Served(asset, capacity)
            self.pools[asset_id] = ThreadPoolExecutor(capacity, thread_name_prefix=f"asset-{asset_id}")
        if problems:
            raise ConfigError("agent cannot serve: " + "; ".join(problems))
        for asset_id, served in self.served.items():
            problem = endpoint_problem(asset_id, served.asset.endpoint, self.settings.endpoint)
            if problem:
                log.warning(problem, extra={"fields": {"asset": asset_id, "endpoint": self.settings.endpoint}})
        if self.telemetry.source != "nvml":
            log.warning("no GPU: serving CPU-only assets", extra={"fields": {"reason": self.telemetry.reason}})
        else:  # GPU-seconds are metered by NVML's per-process accounting, which must be on
            from computenet.meter import enable_accounting

            done = enable_accounting(g.index for g in self.telemetry.gpus)
            log.info("GPU accounting", extra={"fields": {"result": done}})
        return self.served

    # ------------------------------------------------------------ chain

    def job(self, job_id: int) -> Job:
        if job_id not in self.jobs:
            with self.chain_lock:
                self.jobs[job_id] = self.market.job(job_id)
        return self.jobs[job_id]

    def lease_reads(self, lease: Lease) -> tuple[Job, int, Checkpoints]:
        """What a new lease needs of the chain, in one JSON-RPC batch: its job's terms (kept), the
        chain's time (Market.now) and the replica's checkpoint book, which stays as read while
        this lease holds the replica (only a reclaim adopts a checkpoint, ending the lease)."""
        web3, functions = self.market.web3, self.market.calls.market.functions
        with self.chain_lock, web3.batch_requests() as batch:
            batch.add(web3.eth.get_block("pending"))
            batch.add(functions.checkpoint(lease.job, lease.shard, lease.replica))
            if lease.job not in self.jobs:  # it exists: the chain just assigned one of its shards
                batch.add(functions.job(lease.job))
            got = batch.execute()
        if len(got) == 3:
            self.jobs[lease.job] = Job.from_chain(lease.job, got[2])
        return self.jobs[lease.job], int(got[0]["timestamp"]), Checkpoints.from_chain(got[1])

    def _send(self, method_name: str, *args: Any, contract: Any = None) -> dict:
        """Sends one transaction (to the market unless `contract` says) from the agent key and
        waits for its receipt."""
        from ape import networks

        target = self.market.market if contract is None else contract
        with self.chain_lock, self.send_lock:
            # By the pending block's clock: a result's claim is bounded by the time since assignment.
            tx = broadcast(getattr(target, method_name), args, self.account, estimate_at="pending")
        receipt = networks.provider.web3.eth.wait_for_transaction_receipt(tx, timeout=RECEIPT_TIMEOUT, poll_latency=0.1)
        return dict(receipt)

    def _fetch_manifest(self, committed: bytes) -> Any:
        return execute.fetch_manifest(self.store, committed)

    def image(self, reference: str) -> str:
        """The local image id for a manifest's image, resolved once (computenet.staging.ensure_image):
        an id names the image's content, and a start that finds it gone resolves it again."""
        if reference not in self.images:
            self.images[reference] = execute.ensure_image(self.docker, reference)
        return self.images[reference]

    def now(self) -> int:
        """The chain's time (leases end by it; a test chain may run ahead of the wall clock)."""
        with self.chain_lock:
            return self.market.now()

    def chain_replica(self, job: int, shard: int, replica: int) -> plan.ChainReplica:
        with self.chain_lock:
            rep = self.market.replica(job, shard, replica, root=False)
        return plan.ChainReplica(ReplicaState(int(rep.state)), int(rep.lease), int(rep.deadline))

    # ------------------------------------------------------------ one lease

    def dispatch(self, lease: Lease, container: Any = None) -> None:
        with self.count_lock:
            self.served[lease.asset].running += 1
        self.pools[lease.asset].submit(self._run_guarded, lease, container, execute.Phases())

    def _run_guarded(self, lease: Lease, container: Any, phases: execute.Phases | None = None) -> None:
        try:
            self.run_lease(lease, container, phases)
        except Exception as error:  # run_lease ends every failure on chain; this is when even that failed
            log.exception(
                "lease failed and could not be declined or failed on chain", extra={"fields": {"lease": lease.name}}
            )
            entry = self.journal.get(lease.key)
            if entry is None or entry.state not in ("computed", "submitted"):  # a computed result is retried
                self.journal.update(lease.key, "dropped", note=f"unreported: {type(error).__name__}: {error}"[:500])
        finally:
            self.gpus.release(lease.name)
            with self.count_lock:
                self.served[lease.asset].running -= 1

    def retry_submissions(self) -> int:
        """Sends again the computed results whose submission failed (node down, a timeout);
        one sent but unanswered for RECEIPT_TIMEOUT is sent again (a duplicate reverts harmlessly)."""
        wait = {"computed": RETRY_INTERVAL, "submitted": RECEIPT_TIMEOUT}
        due = [e for e in self.journal.open_entries() if time.time() - e.updated > wait.get(e.state, float("inf"))]
        for entry in due:
            self.pools[entry.asset].submit(self._submit_guarded, entry)
        return len(due)

    def _submit_guarded(self, entry: Entry) -> None:
        try:
            self.submit(entry)
        except Exception as error:
            log.warning("submit failed, will retry", extra={"fields": {"lease": entry.name, "error": str(error)}})
            self.journal.update(entry.key, entry.state, note=f"retrying: {error}"[:500])

    def run_lease(self, lease: Lease, container: Any = None, phases: execute.Phases | None = None) -> None:
        """Prepares, runs and submits one lease, recording each step in the journal; a
        failure is declined or becomes a failed result (agent.plan.on_failure)."""
        folder = self.work / lease.name
        stage = plan.STAGING if container is None else plan.RAN  # one found after a restart has run
        phases = phases or execute.Phases()
        try:
            phases.lap("queue")
            if container is None:
                job, now, book = self.lease_reads(lease)
            else:
                job = self.job(lease.job)
            phases.lap("chain reads")
            asset = self.served[lease.asset].asset
            manifest = self.manifest(job.manifest_hash)
            phases.lap("manifest")
            proving = self.zk_lease(lease, job, manifest) if job.requirements.verification == Verification.ZK else None
            if job.requirements.verification == Verification.TEE and (self.tee is None or self.attestor is None):
                raise Decline("no tee here", "a tee job needs a TEE evidence source and an attestor (settings)")
            if container is None:
                plan.check_runnable(
                    manifest,
                    now=now,
                    lease_end=lease.lease_end,
                    job_gpu_count=job.requirements.gpu_count,
                    asset_gpu_count=asset.spec.gpu_count,
                )
                plan.check_resources(job.requirements, self.machine)
                pool, count = gpu.asset_gpus(asset.spec), job.requirements.gpu_count
            else:  # the GPUs it was started on stay its own
                pool = execute.pinned_gpus(container)
                count = len(pool)
            gpus = plan.check_gpus(self.gpus.acquire(lease.name, pool, count), count, pool)
            phases.lap("checks")
            image = self.image(manifest.image)
            phases.lap("image")
            if container is None:
                inputs, outputs = execute.prepare(folder)
                phases.lap("folders")
                bound = execute.bound_outputs(outputs, manifest.outputs.max_bytes)
                phases.lap("output bound")
                log.info("outputs bounded", extra={"fields": {"lease": lease.name, "bound": bound}})
                execute.stage_inputs(self.store, manifest, inputs)
                phases.lap("inputs")
                saved, resume = checkpoints.make_dirs(folder)
                self.stage_resume(lease, job, manifest, resume, book)
                phases.lap("resume")
                stage = plan.STARTING

                def on_start(name: str) -> None:
                    self.journal.update(lease.key, "running", container=name)
                    phases.lap("journal")

                def start(image_id: str) -> Any:
                    return execute.start(
                        lease,
                        manifest,
                        image_id,
                        client=self.docker,
                        inputs=inputs,
                        outputs=outputs,
                        shard_count=job.requirements.shard_count,
                        gpu_indices=gpus,
                        limits=self.settings.limits(job.requirements),
                        on_start=on_start,
                        checkpoints=saved,
                        resume=resume,
                    )

                try:
                    container = start(image)
                except docker_errors.ImageNotFound:  # removed since it was resolved: pulled again, or declined
                    self.images.pop(manifest.image, None)
                    container = start(self.image(manifest.image))
                phases.lap("container")
                log.info("started", extra={"fields": {"lease": lease.name, "began": phases.began, "phases": phases.ms}})
            else:  # collecting a container that ran on while the agent was down
                inputs, outputs = execute.lease_dirs(folder)
                saved, _ = checkpoints.checkpoint_dirs(folder)
            stage = plan.RAN
            prove = None
            if proving is not None:

                def prove(outputs: Path, inputs: Path = inputs) -> dict:
                    return zk_lease.prove_into(proving, manifest, lease.shard, inputs, outputs, folder / "zk-work")

            result = execute.finish(
                container,
                manifest,
                outputs=outputs,
                gpu_count=job.requirements.gpu_count,
                max_gpu_seconds=job.requirements.max_gpu_seconds,
                out_store=self.outputs,
                watch=self.checkpoint_watch(lease, job, saved, execute.output_bytes(manifest.outputs.max_bytes)),
                disk_bytes=self.settings.limits(job.requirements).output_disk_bytes,
                prove=prove,
            )
        except Exception as error:
            outcome = plan.on_failure(stage, error)
            if not isinstance(error, Decline):
                log.warning(
                    "lease failed",
                    exc_info=True,
                    extra={"fields": {"lease": lease.name, "stage": stage, "outcome": outcome.action}},
                )
            if container is not None:
                execute.discard(container)
            if outcome.action == "decline" and self.decline(lease, Decline(outcome.reason, outcome.detail)):
                execute.release(folder)
                return
            result = self.failed_result(lease, outcome)
        finally:
            self.gpus.release(lease.name)
            self.watchers.pop(lease.key, None)
        self.commit(lease, result)

    def zk_lease(self, lease: Lease, job: Job, manifest: Any) -> zk_lease.ZkLease:
        """A zk lease this agent can prove: its binding matches the manifest and a local model
        (agent.zk.check), or Decline."""
        with self.chain_lock:
            spec = self.market.zk_spec(job.client, job.manifest_hash)
            model = self.market.zk_model(spec.model) if spec.bound else None
        binding = zk.binding(
            self.chain_id, str(self.market.market.address), lease.job, lease.shard, lease.replica, lease.lease
        )
        return zk_lease.check(spec, model, manifest, lease.shard, self.zk_models, zk.tag_words(binding), self.zk_id)

    def zk_id(self, artifacts: zk.ModelArtifacts) -> bytes:
        if artifacts.artifact_hash not in self.zk_ids:
            with self.chain_lock:
                self.zk_ids[artifacts.artifact_hash] = self.market.zk_model_id(artifacts)
        return self.zk_ids[artifacts.artifact_hash]

    # ------------------------------------------------------------ checkpoints

    def stage_resume(self, lease: Lease, job: Job, manifest: Any, resume: Path, book: Checkpoints) -> bool:
        """Places the replica's adopted checkpoint (`book`: its chain record), if it has one, at
        resume/checkpoint; a missing or mismatching blob declines the lease
        (agent.checkpoints.stage_resume), and so does a replica whose earlier leases were paid
        every GPU-second (agent.plan.check_paid)."""
        plan.check_paid(job.requirements.max_gpu_seconds, book.contributed)
        point = book.resume_point
        stores = Mirrors.of(self.store, manifest.stores)
        staged = checkpoints.stage_resume(stores, point, resume, execute.output_bytes(manifest.outputs.max_bytes))
        if staged:
            log.info("resuming", extra={"fields": {"lease": lease.name, "checkpoint": "0x" + point.hex()}})
        return staged

    def checkpoint_watch(self, lease: Lease, job: Job, folder: Path, max_bytes: int) -> Any:
        """The poll hook of a running lease: takes its new checkpoints (uploaded, signed, kept
        for the heartbeats) and, with less than SUBMIT_MARGIN seconds of its lease left,
        commits the latest on chain itself (once; newer ones reach the chain through keepers)."""
        gpus = job.requirements.gpu_count
        market = str(self.market.market.address)
        started: list[float] = []

        def sign(digest: bytes, seconds: int) -> SignedCheckpoint:
            cp = Checkpoint(
                lease.job, lease.shard, lease.replica, lease.lease, lease.asset, job.manifest_hash, digest, seconds
            )
            return cp.sign(self.account.private_key, self.chain_id, market)

        meter_box: list[Any] = []

        def metered() -> int:
            return min(job.requirements.max_gpu_seconds, meter_box[0].so_far().seconds(gpus))

        def bound() -> int:
            # the chain's: the lease's time so far on its GPUs; the container's run is within it
            elapsed = time.time() - (meter_box[0].since or started[0])
            return min(int(elapsed) * max(1, gpus), job.requirements.max_gpu_seconds)

        watcher = checkpoints.Watcher(
            folder, sign=sign, upload=self.store.put, metered=metered, bound=bound, max_bytes=max_bytes
        )
        self.watchers[lease.key] = watcher

        def watch(meter: Any) -> None:
            if not started:
                started.append(time.time())
                meter_box.append(meter)
            taken = watcher.poll()
            if taken is not None:
                log.info(
                    "checkpoint",
                    extra={
                        "fields": {
                            "lease": lease.name,
                            "checkpoint": "0x" + taken.checkpoint.checkpoint.hex(),
                            "gpu_seconds": taken.checkpoint.gpu_seconds,
                        }
                    },
                )
            latest = watcher.latest
            # once, as the lease nears its end: later ones travel in heartbeats for keepers to relay
            if latest is not None and watcher.committed is None and lease.lease_end - self.now() < SUBMIT_MARGIN:
                watcher.committed = latest
                self.commit_checkpoint(lease, latest)

        return watch

    def commit_checkpoint(self, lease: Lease, signed: SignedCheckpoint) -> bool:
        """Commits a lease's signed checkpoint on chain (its lease is about to run out);
        False when the chain refused it (logged; a keeper may still relay a newer one)."""
        try:
            receipt = self._send("commit_checkpoint", *signed.market_args())
        except Exception as error:
            log.warning("checkpoint not committed", extra={"fields": {"lease": lease.name, "error": str(error)}})
            return False
        ok = receipt["status"] == 1
        log.info(
            "checkpoint committed" if ok else "checkpoint commit reverted", extra={"fields": {"lease": lease.name}}
        )
        return ok

    def failed_result(self, lease: Lease, outcome: plan.Outcome) -> execute.Result:
        job = self.job(lease.job)
        return execute.failed(
            f"{outcome.reason}: {outcome.detail}",
            self.outputs,
            exit_code=None,
            seconds=0,
            gpu_count=job.requirements.gpu_count,
            max_gpu_seconds=job.requirements.max_gpu_seconds,
        )

    def commit(self, lease: Lease, result: execute.Result) -> None:
        """Indexes a result, clears the lease folder but for the index, signs and submits."""
        folder = self.work / lease.name
        with self.chain_lock:  # the chain refuses a claim beyond the lease's time on its GPUs so far
            rep = self.market.replica(lease.job, lease.shard, lease.replica, root=False)
            allowed = preflight.claimable_seconds(rep, self.now(), self.job(lease.job).requirements.gpu_count)
        if result.gpu_seconds > allowed:
            result = replace(result, gpu_seconds=allowed)
        execute.write_index(folder, lease, result)
        if result.zk is not None and result.exit_code == 0:
            files = {leaf: self.outputs.get("sha256", sha) for leaf, sha in result.files.items()}
            zk_lease.save_bundle(folder, result.zk, files)
        execute.release(folder, keep=(execute.INDEX, zk_lease.BUNDLE))
        with self.chain_lock:
            receipt = self.market.receipt_for(
                lease.job, lease.shard, lease.replica, result.output_root, result.gpu_seconds, result.exit_code
            )
        if receipt.lease != lease.lease:
            self.journal.update(lease.key, "dropped", note="the lease changed while the shard ran")
            return
        signature = receipt.sign(self.account.private_key, self.chain_id, self.market.market.address)
        self.journal.update(
            lease.key,
            "computed",
            output_root="0x" + result.output_root.hex(),
            gpu_seconds=result.gpu_seconds,
            exit_code=result.exit_code,
            signature="0x" + signature.hex(),
            note=result.note[:500],
        )
        log.info(
            "computed",
            extra={
                "fields": {
                    "lease": lease.name,
                    "exit_code": result.exit_code,
                    "seconds": round(result.seconds, 3),
                    "root": "0x" + result.output_root.hex(),
                }
            },
        )
        self.submit_ready(self.journal.get(lease.key))

    def submit_ready(self, entry: Entry) -> None:
        """Submits a computed result, together with any others computed while the previous
        submission was on its way: whichever thread sends takes every result ready then, so
        under load an agent's results share one transaction (`submit_all`) and when idle none
        waits."""
        with self.ready_lock:
            self.ready.append(entry)
        with self.submit_lock:
            with self.ready_lock:
                batch, self.ready = self.ready, []
            if batch:  # else a thread before this one sent it with its own
                self.submit_all(batch)

    def submit_all(self, entries: list[Entry]) -> None:
        """Sends computed results, each the chain still waits for (`_may_submit`):
        - two or more of single-replica OPTIMISTIC or SPOT_CHECK jobs (`batchable`) in one
          `JobMarket.submit_results` under one signature of the agent key over their receipts,
          at most MAX_BATCH_RESULTS a transaction; the market records such a batch all or none,
          so one it refuses is sent again one by one;
        - a proven zk one alone through the model registry;
        - the others (replicated, TEE, a failed zk one, a lone batchable one) in one
          `submit_many` through the batch relay, or alone as `submit_result`; one the relay
          skipped is sent again alone.
        A result sent alone names what the market refuses; every one is tried before the first
        such error is raised."""
        alone = [e for e in entries if e.exit_code == 0 and zk_lease.load_bundle(self.work / e.name) is not None]
        waiting = [e for e in entries if e not in alone and self._may_submit(e)]
        batchable = [e for e in waiting if self.batchable(e)]
        relayed = [e for e in waiting if e not in batchable] if len(batchable) > 1 else waiting
        if len(batchable) > 1:
            for part in _parts(sorted(batchable, key=lambda e: (e.asset, e.job, e.shard, e.replica))):
                alone += self._submit_batch(part)
        if len(relayed) == 1:
            alone += relayed
        elif relayed:
            items = [
                (e.job, e.shard, e.replica, bytes.fromhex(e.output_root[2:]), e.gpu_seconds, e.exit_code)
                + (bytes.fromhex(e.signature[2:]),)
                for e in relayed
            ]
            receipt = self._send("submit_many", self.market_address, items, contract=self.market.relay)
            tx = receipt["transactionHash"].to_0x_hex()
            recorded = self._results_in(receipt)
            for entry in relayed:
                if (entry.job, entry.shard, entry.replica) in recorded:
                    self._submitted(entry, tx)
                else:
                    alone.append(entry)
        failed: Exception | None = None
        for entry in alone:
            try:
                self.submit(entry)
            except Exception as error:  # the others still go; this one is retried (retry_submissions)
                log.warning("submit failed", extra={"fields": {"lease": entry.name, "error": str(error)}})
                failed = failed or error
        if failed is not None:
            raise failed

    def batchable(self, entry: Entry) -> bool:
        """Whether the market takes this result in a batch (`submit_results`): its job is
        OPTIMISTIC or SPOT_CHECK, which have one replica."""
        return self.job(entry.job).requirements.verification in (Verification.OPTIMISTIC, Verification.SPOT_CHECK)

    def _submit_batch(self, entries: list[Entry]) -> list[Entry]:
        """Sends `entries` (batchable, journaled "submitted") in one `JobMarket.submit_results`,
        signed by the agent key over their receipts, each at its journaled lease and asset and
        its job's manifest. Returns those to send again one by one: all of them when the market
        refused the batch (it records all or none), else any it did not record."""
        from ape.exceptions import ContractLogicError

        results = [
            (e.job, e.shard, e.replica, bytes.fromhex(e.output_root[2:]), e.gpu_seconds, e.exit_code) for e in entries
        ]
        receipts = [
            ExecutionReceipt(
                job=e.job,
                shard=e.shard,
                replica=e.replica,
                lease=e.lease,
                asset=e.asset,
                manifest=self.job(e.job).manifest_hash,
                output_root=root,
                gpu_seconds=seconds,
                exit_code=code,
            )
            for e, (*_, root, seconds, code) in zip(entries, results, strict=True)
        ]
        signature = sign_receipts(self.account.private_key, self.chain_id, self.market_address, receipts)
        try:
            receipt = self._send("submit_results", results, signature)
        except ContractLogicError as error:
            log.warning(
                "result batch refused, sending each alone",
                extra={"fields": {"results": len(entries), "error": str(error.message)}},
            )
            return entries
        tx = receipt["transactionHash"].to_0x_hex()
        if receipt["status"] != 1:
            log.warning("result batch reverted, sending each alone", extra={"fields": {"tx": tx}})
            return entries
        recorded = self._results_in(receipt)
        for entry in entries:
            if (entry.job, entry.shard, entry.replica) in recorded:
                self._submitted(entry, tx)
        return [e for e in entries if (e.job, e.shard, e.replica) not in recorded]

    def _results_in(self, receipt: dict) -> set[tuple[int, int, int]]:
        """The (job, shard, replica) of each result the market recorded in `receipt`."""
        topic = keccak(text=self.market.market.ResultSubmitted.abi.selector)
        address = self.market_address.lower()
        out = set()
        for entry in receipt["logs"]:
            if str(entry["address"]).lower() == address and bytes(entry["topics"][0]) == topic:
                data = bytes(entry["data"])
                out.add(
                    (
                        int.from_bytes(bytes(entry["topics"][1]), "big"),
                        *(int.from_bytes(data[i : i + 32], "big") for i in (0, 32)),
                    )
                )
        return out

    def _may_submit(self, entry: Entry) -> bool:
        """Checks the chain still waits for this result (journaled "submitted" if so); one the
        chain already holds is done, one it no longer wants dropped."""
        chain = self.chain_replica(entry.job, entry.shard, entry.replica)
        action = plan.recovery("computed", entry.lease, entry.lease_end, chain, self.now())
        if action != "submit":
            self.journal.update(entry.key, "done" if action == "done" else "dropped", note=f"at submit: {action}")
            return False
        self.journal.update(entry.key, "submitted")
        return True

    def submit(self, entry: Entry) -> None:
        """Sends a computed result; a result the chain already holds is done."""
        from ape.exceptions import ContractLogicError

        if not self._may_submit(entry):
            return
        bundle = zk_lease.load_bundle(self.work / entry.name) if entry.exit_code == 0 else None
        head = (entry.job, entry.shard, entry.replica, bytes.fromhex(entry.output_root[2:]), entry.gpu_seconds)
        signature = bytes.fromhex(entry.signature[2:])
        if bundle is not None:  # proven: through the model registry, which finalizes it at once
            args, contract = (*head, signature, *zk_lease.submit_args(bundle)), self.market.models
        else:
            args, contract = (*head, entry.exit_code, signature), None
        try:
            receipt = self._send("submit_result", *args, contract=contract)
        except ContractLogicError as error:
            if bundle is None or not str(error.message).startswith("model_registry:"):
                raise
            self.unproven(entry, str(error.message))
            return
        tx = receipt["transactionHash"].to_0x_hex()
        if receipt["status"] != 1:
            chain = self.chain_replica(entry.job, entry.shard, entry.replica)
            if chain.lease == entry.lease and chain.state != ReplicaState.ASSIGNED:  # an earlier send was mined
                self.journal.update(entry.key, "done", note="submitted by an earlier transaction")
                return
            self.journal.update(entry.key, "dropped", tx=tx, note="submit_result reverted")
            log.warning("result refused", extra={"fields": {"job": entry.job, "shard": entry.shard, "tx": tx}})
            return
        self._submitted(entry, tx)

    def _submitted(self, entry: Entry, tx: str) -> None:
        self.journal.update(entry.key, "done", tx=tx)
        log.info(
            "submitted", extra={"fields": {"job": entry.job, "shard": entry.shard, "replica": entry.replica, "tx": tx}}
        )
        if self.job(entry.job).requirements.verification == Verification.TEE:
            self.attest_result(entry)

    # ------------------------------------------------------------ tee

    def attest_nodes(self) -> dict[int, str]:
        """Sends node evidence for each served asset not attested, or whose verdict ends within
        a day; returns what happened per asset. A failure is logged and tried again later."""
        if self.tee is None or self.attestor is None:
            return {}
        done = {}
        with self.chain_lock:
            attested = self.market.attested(list(self.served))
            verdicts = {a: self.market.tee_verdict(a) for a in self.served}
            now = self.now()
        for asset_id, verdict in verdicts.items():
            if not tee.needs_node_evidence(asset_id in attested, verdict.valid_until, now):
                done[asset_id] = "attested"
                continue
            try:
                binding = tee_binding.node_report_data(
                    self.chain_id, self.attestations, asset_id, str(self.account.address)
                )
                answer = self.attestor.node(asset_id, self.tee.evidence(binding))
                done[asset_id] = f"attested until {answer['valid_until']}"
                log.info("node attested", extra={"fields": {"asset": asset_id, "until": answer["valid_until"]}})
            except Exception as error:
                done[asset_id] = f"not attested: {error}"
                log.warning("node attestation failed", extra={"fields": {"asset": asset_id, "error": str(error)}})
        return done

    def attest_result(self, entry: Entry) -> str:
        """Sends a submitted tee result's evidence, so its window ends after the short one; a
        refusal or an unreachable attestor leaves it the full window (logged, evidence kept)."""
        if self.tee is None or self.attestor is None:
            return "no tee here"
        folder = self.work / entry.name
        root = bytes.fromhex(entry.output_root[2:])
        binding = tee_binding.result_report_data(
            self.chain_id, self.market_address, entry.job, entry.shard, entry.replica, root, entry.gpu_seconds
        )
        try:
            evidence = self.tee.evidence(binding)
        except Exception as error:
            log.warning("no result evidence", extra={"fields": {"lease": entry.name, "error": str(error)}})
            return f"no evidence: {error}"
        try:
            answer = self.attestor.result(entry.job, entry.shard, entry.replica, evidence)
        except Exception as error:
            tee.save(folder, evidence, None, refused=str(error))
            log.warning("result attestation failed", extra={"fields": {"lease": entry.name, "error": str(error)}})
            return f"not attested: {error}"
        tee.save(folder, evidence, answer)
        log.info("result attested", extra={"fields": {"lease": entry.name, "until": answer["challenge_end"]}})
        return f"attested, window ends {answer['challenge_end']}"

    def unproven(self, entry: Entry, reason: str) -> None:
        """A proof the registry refuses (a binding changed under the agent, a verifier that
        refuses what its own artifacts prove) would leave the lease to run out and be slashed:
        the result is submitted as failed instead, to the market, the optimistic way."""
        log.warning(
            "proof refused, submitting a failed result", extra={"fields": {"lease": entry.name, "reason": reason}}
        )
        exit_code = plan.AGENT_FAILURE_EXIT
        with self.chain_lock:
            receipt = self.market.receipt_for(
                entry.job,
                entry.shard,
                entry.replica,
                bytes.fromhex(entry.output_root[2:]),
                entry.gpu_seconds,
                exit_code,
            )
        signature = receipt.sign(self.account.private_key, self.chain_id, self.market.market.address)
        self.journal.update(
            entry.key,
            "computed",
            exit_code=exit_code,
            signature="0x" + signature.hex(),
            note=f"zk proof refused: {reason}",
        )
        self.submit(self.journal.get(entry.key))

    def decline(self, lease: Lease, decline: plan.Decline) -> bool:
        """Declines on chain; False when the chain refused it (the caller fails the result instead)."""
        log.warning(
            "declining", extra={"fields": {"lease": lease.name, "reason": decline.reason, "detail": decline.detail}}
        )
        try:
            receipt = self._send("decline", lease.job, lease.shard, lease.replica, plan.reason_bytes(decline.reason))
        except Exception as error:  # window closed, lease gone, node down
            log.warning("decline failed", extra={"fields": {"lease": lease.name, "error": str(error)}})
            return False
        if receipt["status"] != 1:
            log.warning("decline reverted", extra={"fields": {"lease": lease.name}})
            return False
        self.journal.update(lease.key, "declined", note=f"{decline.reason}: {decline.detail}"[:500])
        return True

    # ------------------------------------------------------------ events and recovery

    def on_assigned(self, event: ev.ShardAssigned) -> None:
        if int(event.asset) not in self.served:
            return
        lease = Lease(
            int(event.job),
            int(event.shard),
            int(event.replica),
            int(event.lease),
            int(event.asset),
            int(event.lease_end),
        )
        if self.journal.accept(*lease.key, lease.asset, lease.lease_end):
            log.info("assigned", extra={"fields": {"lease": lease.name}})
            self.dispatch(lease)

    def recover(self) -> dict[str, int]:
        """Finishes what the journal left open: submits computed results, collects or reruns
        shards still inside their lease, drops the rest. Returns how many of each."""
        done: dict[str, int] = {}
        for entry in self.journal.open_entries():
            if entry.asset not in self.served:
                continue
            chain = self.chain_replica(entry.job, entry.shard, entry.replica)
            action = plan.recovery(entry.state, entry.lease, entry.lease_end, chain, self.now())
            lease = Lease(entry.job, entry.shard, entry.replica, entry.lease, entry.asset, entry.lease_end)
            container = self._container(lease.name)
            if action == "resume" and container is not None and container.status in ("running", "exited"):
                self.dispatch(lease, container)  # it ran on (or to its end) while the agent was down
            elif action == "resume":
                if container is not None:
                    container.remove(force=True)
                self.journal.update(lease.key, "accepted", container="", note="resumed after a restart")
                self.dispatch(lease)
            elif action == "submit":
                self.pools[entry.asset].submit(self._submit_guarded, entry)
            else:
                if container is not None:
                    container.remove(force=True)
                execute.release(self.work / lease.name, keep=(execute.INDEX,))  # nothing left running uses it
                self.journal.update(
                    lease.key, "done" if action == "done" else "dropped", note=f"after a restart: {action}"
                )
            done[action] = done.get(action, 0) + 1
        return done

    def _container(self, name: str) -> Any:
        import docker.errors

        try:
            return self.docker.containers.get(name)
        except docker.errors.NotFound:
            return None

    def step(self) -> int:
        """Reads the assignments past the cursor (one bounded range); returns how many it saw.
        The cursor moves only once each is in the journal, so a crash re-reads, never skips."""
        with self.chain_lock:
            batch = self.follower.poll()
        if batch is None:
            return 0
        seen = 0
        for event in batch.events:
            if isinstance(event, ev.ShardAssigned):
                seen += 1
                self.on_assigned(event)
        self.follower.commit(batch)
        return seen

    # ------------------------------------------------------------ heartbeats

    def heartbeat(self) -> dict[int, str]:
        """Signs a heartbeat for each asset; the HTTP service serves the latest. A GPU asset
        reports NVML's utilisation, a CPU-only one its own containers' CPU use (agent.cpu)."""
        self.telemetry = gpu.probe()
        now = time.time()
        beats = {}
        for asset_id, served in self.served.items():
            spec = served.asset.spec
            own = self.telemetry.only(gpu.asset_gpus(spec))  # this asset's devices, not the machine's
            if own.gpus and spec.gpu_count:
                utilization = own.utilization_pct
            else:
                utilization = self.cpu.utilization(asset_id, spec.cpu_cores, now)
            hb = Heartbeat(
                asset_id,
                int(now),
                utilization,
                own.free_vram_mib,
                served.running,
                served.capacity,
                int(now * 1000),
            )
            saved = [
                w.latest.to_body()
                for w in list(self.watchers.values())
                if w.latest is not None and w.latest.checkpoint.asset == asset_id
            ]
            beats[asset_id] = hb.wire(self.account.private_key, self.chain_id, str(self.market.assets.address), saved)
        self.beats = beats  # replaced whole: the server thread reads either the old or the new
        return beats

    # ------------------------------------------------------------ outputs

    def may_read(self, job_id: int, shard: int, replica: int, address: str) -> bool:
        """Whether `address` may read a replica's outputs (verifier.access): the job's client;
        a bonded verifier for a replica sampled for it; a facilitator for a shard under dispute."""
        from computenet.errors import ContractRevert
        from verifier.access import may_read
        from verifier.sampling import audit_mode

        job = self.job(job_id)
        if job is None:
            return False
        try:
            with self.chain_lock:
                replicas = self.market.shard(job_id, shard, roots=False).replicas
                states = [r.state for r in replicas]
                is_facilitator = self.market.is_facilitator(address)
                bonded = self.market.keeper_id(address) is not None
        except ContractRevert:
            return False
        return may_read(
            caller=address,
            job_client=job.client,
            mode=audit_mode(job.requirements.verification, replicas[replica].state)
            if replica < len(replicas)
            else job.requirements.verification,
            spot_check_bps=self._spot_check_bps(job),
            seed=self._seed(job_id, shard, replica),
            job=job_id,
            shard=shard,
            replica=replica,
            is_bonded=bonded,
            is_facilitator=is_facilitator,
            disputed=ReplicaState.DISPUTED in states,
            on_chain=replica < len(replicas)
            and replicas[replica].asset in self.served
            and replicas[replica].state in (ReplicaState.SUBMITTED, ReplicaState.DISPUTED, ReplicaState.FINALIZED),
        )

    def _spot_check_bps(self, job: Job) -> int:
        try:
            return self.manifest(job.manifest_hash).verification.spot_check_bps
        except Decline:
            return 0  # no manifest, no sample: only the client and a ruling arbiter read

    def _seed(self, job_id: int, shard: int, replica: int) -> bytes | None:
        """The hash of the block after the one that mined this agent's result for the replica
        (verifier.sampling), or None while there is none."""
        from ape import networks

        from verifier.sampling import seed_block

        sent = [e for e in self.journal.entries() if (e.job, e.shard, e.replica) == (job_id, shard, replica) and e.tx]
        if not sent:
            return None
        web3 = networks.provider.web3
        with self.chain_lock:
            mined = web3.eth.get_transaction_receipt(sent[-1].tx)["blockNumber"]
            if web3.eth.block_number < seed_block(mined):
                return None
            return bytes(web3.eth.get_block(seed_block(mined))["hash"])

    def serve_outputs(self) -> Any:
        """Starts the HTTP service (heartbeats, outputs) in a thread; returns the uvicorn server
        (None when off)."""
        if not self.settings.outputs_port:
            return None
        import uvicorn

        from agent.outputs import app

        api = app(self.work, self.outputs, self.chain_id, str(self.account.address), self.may_read, lambda: self.beats)
        server = uvicorn.Server(
            uvicorn.Config(api, host=self.settings.outputs_host, port=self.settings.outputs_port, log_level="warning")
        )
        threading.Thread(target=server.run, name="outputs", daemon=True).start()
        return server

    # ------------------------------------------------------------ loop

    def run(self, stop: threading.Event) -> None:
        self.recover()
        server = self.serve_outputs()
        # The chores have a thread of their own: a slow one (telemetry, the attestor) never delays
        # the next look at the chain, so an assignment is seen within one poll interval.
        chores = threading.Thread(target=self.chores, args=(stop,), name="chores", daemon=True)
        chores.start()
        self.loop(stop, self.step, self.settings.poll_interval, woke=self.watch_heads(stop))
        chores.join()
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        if server is not None:
            server.should_exit = True

    def chores(self, stop: threading.Event) -> None:
        """Heartbeats, retried submissions and node attestations, each at its own interval."""
        last_beat = last_retry = last_tee = 0.0

        def due() -> None:
            nonlocal last_beat, last_retry, last_tee
            if self.tee is not None and time.time() - last_tee >= TEE_INTERVAL:
                last_tee = time.time()  # a failure waits for the next interval too
                self.attest_nodes()
            if time.time() - last_beat >= self.settings.heartbeat_interval:
                self.heartbeat()
                last_beat = time.time()
            if time.time() - last_retry >= RETRY_INTERVAL:
                self.retry_submissions()
                last_retry = time.time()

        self.loop(stop, due, self.settings.poll_interval)

    def watch_heads(self, stop: threading.Event) -> threading.Event:
        """An event set on each new head, where the node pushes them (agent.heads: the websocket
        ape's provider names, e.g. anvil's own port); never set where there is none."""
        from ape import networks

        woke = threading.Event()
        uri = getattr(networks.active_provider, "ws_uri", None) if self.settings.head_notices else None
        if uri:
            HeadNotices(uri, woke, stop).start()
        return woke

    @staticmethod
    def loop(stop: threading.Event, work: Any, interval: float, woke: threading.Event | None = None) -> None:
        """Runs `work` every `interval` seconds, or at once when `woke` is set, until `stop`; a
        failure is logged and retried."""
        while not stop.is_set():
            if woke is not None:
                woke.clear()  # set again while `work` runs: it runs again right after
            try:
                work()
            except Exception as error:
                log.warning(
                    "loop step failed, retrying", extra={"fields": {"error": f"{type(error).__name__}: {error}"}}
                )
                stop.wait(1)
            if not stop.is_set():
                (stop if woke is None else woke).wait(interval)


def _parts(entries: list[Entry]) -> list[list[Entry]]:
    """`entries` in as few consecutive parts of at most MAX_BATCH_RESULTS as can be, of sizes as
    even as can be (65 results: 33 and 32, not 64 and a batch of one)."""
    count = -(-len(entries) // MAX_BATCH_RESULTS)
    size = -(-len(entries) // count) if count else 0
    return [entries[i : i + size] for i in range(0, len(entries), size)] if entries else []
