"""One lease, from assignment to a signed result: run the staged shard's container, commit
to its outputs (verifier.commitment, each file streamed once into the agent's output store)
and keep them there. Staging (manifest, image, inputs, the output bound) is
computenet.staging's, the same for agents and verifiers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent import gpu
from agent.cpu import ASSET_LABEL
from agent.journal import Lease
from agent.plan import failed_exit_code, metered_seconds
from computenet import sandbox
from computenet.manifest import Manifest
from computenet.merkle import MerkleTree
from computenet.meter import ContainerMeter
from computenet.staging import (  # noqa: F401 (the agent's steps)
    bound_outputs,
    ensure_image,
    fetch_manifest,
    lease_dirs,
    output_bytes,
    prepare,
    release,
    stage_inputs,
)
from computenet.store import LocalStore, StoreError
from verifier.commitment import LOG_LEAF, OutputFile, OutputRefused, commit_result

INDEX = "outputs.json"  # what stays of a lease folder: its output index


class Phases:
    """Milliseconds each step of a lease's dispatch took, from the assignment read to the
    container's start, for its "started" log line (bench/bench_agent.py reports them)."""

    def __init__(self) -> None:
        self.began = time.time()  # when the lease was handed to its thread
        self.ms: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] = round(self.ms.get(name, 0.0) + (now - self._last) * 1000, 1)
        self._last = now


@dataclass(frozen=True)
class Result:
    output_root: bytes
    gpu_seconds: int
    exit_code: int
    oom_killed: bool
    timed_out: bool
    seconds: float
    files: dict[str, str]  # leaf path -> sha256 in the output store
    utilization_pct: int | None = None  # mean GPU (or CPU) utilisation sampled each second of the run
    note: str = ""  # why it failed, when the agent says so (outputs refused, an agent failure)
    metering: dict | None = None  # computenet.meter.Metering: which meter, and what it measured
    zk: dict | None = None  # a zk lease's proof bundle (agent.zk.prove_into), when it was proven


def collect(outputs: Path, logs: bytes, max_bytes: int, store: LocalStore) -> tuple[bytes, dict[str, str], str | None]:
    """The Merkle root over the result's files (verifier.commitment), each streamed into the
    agent's output store. Returns (root, leaf -> sha256, why only the log was committed)."""
    names: dict[str, str] = {}

    def file_away(file: OutputFile) -> bytes:
        try:
            filed = store.put_file(file.path, limit=file.size)
        except (StoreError, OSError) as error:
            raise OutputRefused(f"output {file.leaf!r} cannot be stored: {error}") from None
        if filed["size"] != file.size:
            raise OutputRefused(f"output {file.leaf!r} changed while it was committed")
        names[file.leaf] = str(filed["sha256"])
        return bytes.fromhex(str(filed["keccak256"]))

    commitment = commit_result(outputs, logs, max_bytes, file_away)
    if commitment.refused is not None:
        names = {}
    names[LOG_LEAF] = str(store.put(logs)["sha256"])
    return commitment.root, names, commitment.refused


def start(
    lease: Lease,
    manifest: Manifest,
    image_id: str,
    *,
    client: Any,
    inputs: Path,
    outputs: Path,
    shard_count: int,
    gpu_indices: tuple[int, ...],
    limits: sandbox.Limits,
    on_start: Callable[[str], None] = lambda name: None,
    checkpoints: Path | None = None,
    resume: Path | None = None,
) -> Any:
    """Creates and starts the shard's container on its pinned GPUs, with its checkpoint and
    resume folders (agent.checkpoints) mounted; returns it."""
    spec = sandbox.RunSpec(
        name=lease.name,
        image=image_id,
        command=list(manifest.command),
        env=dict(manifest.env),
        shard=lease.shard,
        shard_count=shard_count,
        inputs=inputs,
        outputs=outputs,
        output_path=manifest.outputs.path,
        timeout_seconds=manifest.timeout_seconds,
        gpu_count=len(gpu_indices),
        gpu_indices=gpu_indices,
        max_file_bytes=output_bytes(manifest.outputs.max_bytes),
        limits=limits,
        labels={"computenet.lease": lease.name, ASSET_LABEL: str(lease.asset)},
        checkpoints=checkpoints,
        resume=resume,
    )
    on_start(lease.name)
    return sandbox.start(client, spec)


def pinned_gpus(container: Any) -> tuple[int, ...]:
    """The GPU indices a container was started on (found running after a restart)."""
    requests = (container.attrs.get("HostConfig") or {}).get("DeviceRequests") or []
    return tuple(int(i) for r in requests for i in (r.get("DeviceIDs") or []))


def discard(container: Any) -> None:
    """Removes a container whose run will not be committed; one already gone is fine."""
    try:
        container.remove(force=True)
    except Exception:  # removed by finish(), or the engine is gone: nothing more to do here
        pass


DISK_LIMIT = "disk limit"  # a failed result's note, when the job wrote more than its lease holds
ZK_PROOF_FAILED = "zk proof failed"  # a failed result's note, when a zk lease's proof could not be made


def finish(
    container: Any,
    manifest: Manifest,
    *,
    outputs: Path,
    gpu_count: int,
    max_gpu_seconds: int,
    out_store: LocalStore,
    watch: Callable[[ContainerMeter], None] | None = None,
    disk_bytes: int = 0,
    prove: Callable[[Path], dict] | None = None,
) -> Result:
    """Waits for `container` (one just started, or found running after a restart), removes
    it and commits to its outputs. `watch(meter)` runs on each poll while it runs (the
    lease's checkpoints). `disk_bytes` (0: none) is what the output folder may hold on disk
    (`sandbox.Limits.output_disk_bytes`): it is measured on each poll and once the container
    ends, and a run over it is killed and becomes a failed result noted DISK_LIMIT. `prove`
    (a zk lease's) runs on the outputs folder once the container exited 0; the proving is
    metered apart from the container, and a proof that fails makes a failed result."""
    samples: list[int] = []  # utilisation while it runs: evidence next to the metered seconds
    pinned = pinned_gpus(container)
    meter = ContainerMeter(container, pinned)
    over: list[int] = []  # bytes written when the disk limit was found exceeded

    def check_disk() -> None:
        if disk_bytes and not over:
            used = sandbox.disk_usage(outputs)
            if used > disk_bytes:
                over.append(used)
                try:
                    container.kill()
                except Exception:  # it ended in the meantime
                    pass

    def on_poll() -> None:
        samples.append(gpu.probe().only(pinned).utilization_pct)  # this lease's GPUs alone
        check_disk()
        if watch is not None:
            watch(meter)

    try:
        run = sandbox.wait(
            container,
            manifest.timeout_seconds,
            started=sandbox.started_at(container),
            on_poll=on_poll,
            meter=meter,
        )
    finally:
        container.remove(force=True)
    check_disk()
    if over:
        return failed(
            f"{DISK_LIMIT}: the job wrote {over[0]} bytes to its outputs, its lease holds {disk_bytes} "
            "(with /tmp, the job's disk_mib); the container was killed",
            out_store,
            exit_code=run.exit_code or sandbox.KILLED,
            seconds=run.seconds,
            gpu_count=gpu_count,
            max_gpu_seconds=max_gpu_seconds,
        )
    bundle = None
    if prove is not None and run.exit_code == 0:
        try:
            bundle = prove(outputs)
        except Exception as error:  # a shard that cannot be proven has no successful result
            return failed(
                f"{ZK_PROOF_FAILED}: {error}",
                out_store,
                exit_code=None,
                seconds=run.seconds,
                gpu_count=gpu_count,
                max_gpu_seconds=max_gpu_seconds,
            )
    root, names, refused = collect(outputs, run.logs, manifest.outputs.max_bytes, out_store)
    exit_code = min(run.exit_code, 255) if refused is None else failed_exit_code(run.exit_code)
    metering = asdict(run.metering)
    if bundle is not None:
        metering["proving"] = bundle["proving"]  # the prover's own time and memory, not the container's
    return Result(
        output_root=root,
        gpu_seconds=min(max_gpu_seconds, run.metering.seconds(gpu_count)),
        exit_code=exit_code,
        oom_killed=run.oom_killed,
        timed_out=run.timed_out,
        seconds=run.seconds,
        files=names,
        utilization_pct=round(sum(samples) / len(samples)) if samples else None,
        note="oom" if run.oom_killed else "timeout" if run.timed_out else (refused or ""),
        metering=metering,
        zk=bundle if refused is None else None,
    )


def failed(
    explanation: str,
    out_store: LocalStore,
    *,
    exit_code: int | None,
    seconds: float,
    gpu_count: int,
    max_gpu_seconds: int,
) -> Result:
    """A failed result the agent commits when a run's own result cannot be: only a log leaf
    that says why."""
    log = f"computenet agent: {explanation}\n".encode("utf-8", "replace")
    names = {LOG_LEAF: str(out_store.put(log)["sha256"])}
    return Result(
        output_root=MerkleTree.from_files({LOG_LEAF: log}).root,
        gpu_seconds=metered_seconds(seconds, gpu_count, max_gpu_seconds),
        exit_code=failed_exit_code(exit_code),
        oom_killed=False,
        timed_out=False,
        seconds=seconds,
        files=names,
        note=explanation[:500],
    )


def write_index(folder: Path, lease: Lease, result: Result) -> None:
    """The lease's output index (leaf path -> sha256) for serving outputs and proofs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INDEX).write_text(
        json.dumps(
            {
                "lease": lease.name,
                "root": "0x" + result.output_root.hex(),
                "files": result.files,
                "seconds": round(result.seconds, 3),
                "gpu_seconds": result.gpu_seconds,
                "exit_code": result.exit_code,
                "utilization_pct": result.utilization_pct,
                "note": result.note,
                "metering": result.metering,
            },
            indent=1,
        )
    )
