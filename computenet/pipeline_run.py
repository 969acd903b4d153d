"""Running a pipeline (computenet.pipeline decides; this does the I/O): for each stage, its
manifest over its static inputs and the previous stage's verified outputs, uploaded to the
content store(s) and posted; its job followed until every shard is finalized; every shard's
files fetched from its agent's on-chain endpoint and proven against the replica's on-chain
output root (computenet.outputs) before any is written; then the next stage.

Layout of the outputs folder:

    <out>/pipeline-state.json          the resume state (computenet.pipeline)
    <out>/<stage>/<shard>/<leaf>       each shard's verified result files (out/..., log/...)

The state is written after every step that changes it (atomically), so a run stopped at any
point continues from there when the same command runs again: a posted job is followed, not
posted again (a post sent just before the stop is found by its JobPosted event), and outputs
already on disk are checked again against their recorded hashes and the chain's roots before
they are staged.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from computenet import pipeline as plan
from computenet.domain import ReplicaState, Requirements
from computenet.errors import ManifestError
from computenet.follow import Follower, MemoryCursor
from computenet.manifest import Manifest, build_manifest, canonical_json, manifest_hash
from computenet.merkle import MerkleTree
from computenet.outputs import OutputsClient, OutputsError
from computenet.pipeline import Pipeline, PipelineError, Stage
from computenet.store import Mirrors, StoreError
from computenet.waiting import failed as declined_out

HOUR = 3_600
POLL = 2.0  # seconds between reads of a running job's shards
QUIET = 30.0  # seconds after which an unchanged progress line is said again


class Runner:
    """Runs `pipeline` (read from `base`, the pipeline file's folder) for `account` on `market`,
    keeping its state and outputs under `out`; `say` prints progress."""

    def __init__(
        self,
        pipeline: Pipeline,
        base: Path,
        out: Path,
        market: Any,
        account: Any,
        stores: list[str],
        say: Callable[[str], None] = print,
        poll: float = POLL,
    ) -> None:
        if not stores:
            raise PipelineError("no content store: pass --store URL (agents fetch each stage's inputs there)")
        self.pipeline, self.base, self.out = pipeline, base, out
        self.market, self.account, self.stores, self.say, self.poll = market, account, stores, say, poll
        self.state_path = out / plan.STATE_FILE

    # ------------------------------------------------------------- the loop

    def run(self) -> list[str]:
        """Runs (or resumes) every stage; returns the summary's lines. PipelineError when a
        stage fails or an output does not check."""
        static = {s.name: self.static_inputs(s) for s in self.pipeline.stages}
        for stage in self.pipeline.stages:  # every stage's manifest is valid before anything is spent
            self.manifest(stage, plan.plan_inputs(stage, static[stage.name]))
        state = self.load_state()
        while (step := plan.next_step(self.pipeline, state)).kind != "done":
            stage = self.pipeline.stages[step.index]
            previous = self.verified_outputs(state, step.index - 1) if step.index else None
            files = plan.plan_inputs(stage, static[stage.name], previous)
            manifest = self.manifest(stage, files)
            if step.kind == "post":
                state = self.post(state, step, stage, manifest, files)
                job = int(state["stages"][step.index]["job"])
            else:
                job = int(step.job)
                plan.check_manifest(state["stages"][step.index], stage, "0x" + manifest_hash(manifest).hex())
                self.say(f"stage {step.index + 1}/{len(self.pipeline.stages)} {stage.name}: following job {job}")
            self.follow(step.index, job, float(state["stages"][step.index]["posted_at"]))
            state = self.save(plan.record_fetched(state, step.index, self.fetch(step.index, job), time.time()))
        return plan.summary(self.pipeline, state, self.paid(state)) + [
            f"outputs of the last stage: {self.out / self.pipeline.stages[-1].name}"
        ]

    # ------------------------------------------------------------- inputs and manifests

    def static_inputs(self, stage: Stage) -> list[tuple[str, str, bytes]]:
        """(entry, path under /in, content) of each file the stage's `inputs` name."""
        found = []
        for entry in stage.inputs:
            path = self.base / entry
            if path.is_file():
                found.append((entry, plan.entry_path(entry, None), path.read_bytes()))
            elif path.is_dir():
                for file in sorted(p for p in path.rglob("*") if p.is_file()):
                    found.append((entry, plan.entry_path(entry, file.relative_to(path).as_posix()), file.read_bytes()))
            else:
                raise PipelineError(
                    f"stage {stage.name!r}: inputs: {entry!r}: no such file or folder under {self.base}"
                )
        return found

    def manifest(self, stage: Stage, files: dict[str, bytes]) -> Manifest:
        try:
            return build_manifest(
                stage.image,
                list(stage.command),
                files,
                timeout_seconds=stage.timeout_seconds,
                max_output_bytes=stage.max_output_bytes,
                env=dict(stage.env),
                stores=self.stores if len(self.stores) > 1 else None,
            )
        except ManifestError as error:
            raise PipelineError(f"stage {stage.name!r}: {error}") from None

    # ------------------------------------------------------------- posting

    def post(self, state: dict, step: plan.Step, stage: Stage, manifest: Manifest, files: dict[str, bytes]) -> dict:
        """Posts the stage's job (or adopts the one a run stopped just after posting)."""
        mhash = manifest_hash(manifest)
        label = f"stage {step.index + 1}/{len(self.pipeline.stages)} {stage.name}"
        if step.pending is not None and step.pending.get("manifest") == "0x" + mhash.hex():
            events = self.market.events(int(step.pending["block"]), roles=("market",), names=["JobPosted"])
            job = plan.posted_job(events, self.account.address, mhash)
            if job is not None:
                self.say(f"{label}: job {job} was posted before the stop; following it")
                return self.save(plan.record_posted(state, step.index, job, time.time()))
        state = self.save(plan.record_posting(state, step.index, stage.name, "0x" + mhash.hex(), self.market.head()))
        self.upload(manifest, files)
        deadline = self.market.now() + int(stage.hours * HOUR)
        fields = plan.requirements_fields(stage, deadline)
        job = self.market.post_job(mhash, Requirements(**fields), sender=self.account)
        escrow = self.market.job(job).escrow
        self.say(
            f"{label}: job {job} posted, {stage.shards} shard(s), {len(manifest.inputs.files)} input(s), "
            f"budget {plan.format_amount(escrow)} escrowed"
        )
        return self.save(plan.record_posted(state, step.index, job, time.time()))

    def upload(self, manifest: Manifest, files: dict[str, bytes]) -> None:
        client = Mirrors.of(self.stores)
        try:
            for data in files.values():
                client.put(data)
            client.put(canonical_json(manifest))
        except StoreError as error:
            raise PipelineError(str(error)) from None

    # ------------------------------------------------------------- following and fetching

    def follow(self, index: int, job_id: int, since: float) -> None:
        """Waits until every shard of the job is finalized; PipelineError when one fails or
        cannot finish by the deadline."""
        job = self.market.job(job_id)
        if job is None:
            raise PipelineError(f"the state file names job {job_id}, which this market does not have")
        said, last = None, 0.0
        while True:
            shards = self.market.shards(job_id, job, roots=False)  # progress reads states only
            failed = set()
            if any(s.state == ReplicaState.CANCELLED for s in shards):
                failed = {s for s, d in self.market.declines(job_id).items() if declined_out(d)}
            prog = plan.progress(shards, job.requirements.deadline, self.market.now(), failed)
            line = plan.progress_line(index, self.pipeline, job_id, prog, time.time() - since)
            if (prog.done, prog.waiting, prog.failed) != said or time.monotonic() - last > QUIET or prog.finished:
                self.say(line)
                said, last = (prog.done, prog.waiting, prog.failed), time.monotonic()
            if (why := plan.failure(index, self.pipeline, job_id, prog)) is not None:
                raise PipelineError(why)
            if prog.finished:
                return
            time.sleep(self.poll)

    def fetch(self, index: int, job_id: int) -> dict[int, dict[str, Any]]:
        """Every shard's result from its agent, each file proven against the on-chain root;
        written under <out>/<stage>/<shard>/ only once all of them are."""
        stage = self.pipeline.stages[index]
        client = OutputsClient(self.account, self.market.chain_id, {}, self.market.agent_of)
        results, records = {}, {}
        for shard in self.market.shards(job_id):
            final = [r for r in shard.replicas if r.state == ReplicaState.FINALIZED and any(r.output_root)]
            problems = []
            for rep in final:
                client.urls[rep.asset] = self.market.endpoint(rep.asset)
                try:
                    files = client.result(rep.asset, job_id, shard.index, rep.index, rep.output_root)
                except OutputsError as error:
                    problems.append(str(error))
                    continue
                plan.plan_inputs(stage, (), {shard.index: files})  # every leaf is a portable path
                results[shard.index] = files
                records[shard.index] = {
                    "replica": rep.index,
                    "asset": rep.asset,
                    "root": "0x" + rep.output_root.hex(),
                    "files": {leaf: hashlib.sha256(data).hexdigest() for leaf, data in files.items()},
                }
                break
            else:
                raise PipelineError(
                    f"stage {stage.name!r}: job {job_id} shard {shard.index}: no verified result "
                    f"({'; '.join(problems) or 'no finalized replica'}); nothing of it was written "
                    "and the next stage was not posted"
                )
        for shard, files in results.items():  # every file is verified by now; only these are written
            folder = self.out / stage.name / str(shard)
            for leaf, data in files.items():
                (folder / leaf).parent.mkdir(parents=True, exist_ok=True)
                (folder / leaf).write_bytes(data)
        total = sum(len(d) for files in results.values() for d in files.values())
        self.say(
            f"stage {index + 1}/{len(self.pipeline.stages)} {stage.name}: "
            f"{sum(map(len, results.values()))} file(s), {total} bytes from {len(results)} shard(s), "
            f"each proven against its on-chain root, under {self.out / stage.name}"
        )
        return records

    def verified_outputs(self, state: dict, index: int) -> dict[int, dict[str, bytes]]:
        """Stage `index`'s outputs as written, each file checked against its recorded SHA-256
        and each shard's files against the replica's output root on chain."""
        record = state["stages"][index]
        outputs = {}
        for shard, entry in record["outputs"].items():
            folder = self.out / record["name"] / shard
            files = {}
            for leaf, sha in entry["files"].items():
                path = folder / leaf
                data = path.read_bytes() if path.is_file() else None
                if data is None or hashlib.sha256(data).hexdigest() != sha:
                    raise PipelineError(f"{path}: missing or changed since it was fetched and verified")
                files[leaf] = data
            root = self.market.replica(int(record["job"]), int(shard), int(entry["replica"])).output_root
            if MerkleTree.from_files(files).root != root or "0x" + root.hex() != entry["root"]:
                raise PipelineError(f"{folder}: the files do not make up the on-chain output root 0x{root.hex()}")
            outputs[int(shard)] = files
        return outputs

    # ------------------------------------------------------------- state and accounting

    def load_state(self) -> dict:
        chain_id, market = self.market.chain_id, self.market.addresses["market"]
        if not self.state_path.exists():
            return plan.new_state(self.pipeline, chain_id, market)
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise PipelineError(f"{self.state_path}: unreadable ({error})") from None
        plan.check_state(state, self.pipeline, chain_id, market)
        done = sum(1 for s in state["stages"] if s.get("outputs") is not None)
        self.say(f"resuming from {self.state_path}: {done} of {len(self.pipeline.stages)} stage(s) done")
        return state

    def save(self, state: dict) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        partial = self.state_path.with_name(self.state_path.name + ".partial")
        with open(partial, "w", encoding="utf-8") as file:
            json.dump(state, file, indent=1, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, self.state_path)
        return state

    def paid(self, state: dict) -> dict[str, list[plan.Paid]]:
        """Each stage's payments, from the market's events since its job was posted."""
        paid = {}
        for record in state["stages"]:
            follower = Follower(
                self.market,
                MemoryCursor(int(record["block"]) - 1),
                roles=("market",),
                names=("ResultSubmitted", "ShardFinalized"),
            )
            events = []
            while (batch := follower.poll()) is not None:
                events += batch.events
                follower.commit(batch)
                if batch.caught_up:
                    break
            paid[record["name"]] = plan.payments(events, int(record["job"]))
        return paid
