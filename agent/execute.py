"""One lease, from assignment to a signed result: run the staged shard's container, commit
to its outputs (verifier.commitment) and keep them in the agent's output store. Staging
(manifest, image, inputs) is computenet.staging's, the same for agents and verifiers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from agent import gpu
from agent.journal import Lease
from agent.plan import metered_seconds
from computenet import sandbox
from computenet.manifest import Manifest
from computenet.merkle import MerkleTree
from computenet.staging import ensure_image, fetch_manifest, lease_dirs, prepare, stage_inputs  # noqa: F401 (the agent's steps)
from computenet.store import LocalStore
from verifier.commitment import result_files


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


def collect(outputs: Path, logs: bytes, max_bytes: int, store: LocalStore) -> tuple[bytes, dict[str, str], bool]:
    """The Merkle root over the result's files (`result_files`), each put into the agent's
    output store. Returns (root, leaf -> sha256, over_limit)."""
    files, over = result_files(outputs, logs, max_bytes)
    names = {leaf: str(store.put(data)["sha256"]) for leaf, data in files.items()}
    return MerkleTree.from_files(files).root, names, over


def execute(lease: Lease, manifest: Manifest, image_id: str, *, client: Any, inputs: Path, outputs: Path,
            shard_count: int, gpu_count: int, max_gpu_seconds: int, limits: sandbox.Limits, out_store: LocalStore,
            on_start: Callable[[str], None] = lambda name: None, container: Any = None) -> Result:  # fmt: skip
    """Runs the container (or waits for `container`, one found running after a restart) and
    commits to its outputs."""
    if container is None:
        spec = sandbox.RunSpec(
            name=lease.name, image=image_id, command=list(manifest.command), env=dict(manifest.env),
            shard=lease.shard, shard_count=shard_count, inputs=inputs, outputs=outputs,
            output_path=manifest.outputs.path, timeout_seconds=manifest.timeout_seconds, gpu_count=gpu_count,
            limits=limits, labels={"computenet.lease": lease.name},
        )  # fmt: skip
        on_start(lease.name)
        container = sandbox.start(client, spec)
    samples: list[int] = []  # utilisation while it runs: evidence next to the metered seconds
    try:
        run = sandbox.wait(container, manifest.timeout_seconds, started=sandbox.started_at(container),
                           on_poll=lambda: samples.append(gpu.probe().utilization_pct))  # fmt: skip
    finally:
        container.remove(force=True)
    root, names, over = collect(outputs, run.logs, manifest.outputs.max_bytes, out_store)
    exit_code = run.exit_code if not over else (run.exit_code or 1)
    return Result(
        output_root=root, gpu_seconds=metered_seconds(run.seconds, gpu_count, max_gpu_seconds),
        exit_code=min(exit_code, 255), oom_killed=run.oom_killed, timed_out=run.timed_out, seconds=run.seconds,
        files=names, utilization_pct=round(sum(samples) / len(samples)) if samples else None,
    )  # fmt: skip


def write_index(folder: Path, lease: Lease, result: Result) -> None:
    """The lease's output index (leaf path -> sha256) for serving outputs and proofs."""
    (folder / "outputs.json").write_text(json.dumps({
        "lease": lease.name, "root": "0x" + result.output_root.hex(), "files": result.files,
        "seconds": round(result.seconds, 3), "gpu_seconds": result.gpu_seconds, "exit_code": result.exit_code,
        "utilization_pct": result.utilization_pct}, indent=1))  # fmt: skip
