"""The demo's verifier: runs a disputed shard once more in Docker, exactly as an agent does
(same image by digest, inputs checked against the manifest, same confinement), and returns its
files as the agent commits them (out/<path> and log/container.log) for POST /disputes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from agent import sandbox
from agent.execute import LOG_LEAF, OUTPUT_PREFIX, ensure_image, fetch_manifest, prepare, stage_inputs
from agent.store import StoreClient


def reexecute(docker: Any, store_url: str, manifest_hash: bytes, shard: int, shard_count: int) -> dict[str, bytes]:
    store = StoreClient(store_url)
    manifest = fetch_manifest(store, manifest_hash)
    with tempfile.TemporaryDirectory(prefix="computenet-verify-") as folder:
        inputs, outputs = prepare(Path(folder) / "lease")
        stage_inputs(store, manifest, inputs)
        spec = sandbox.RunSpec(
            name=f"computenet-verify-{manifest_hash.hex()[:12]}-{shard}", image=ensure_image(docker, manifest.image),
            command=list(manifest.command), env=dict(manifest.env), shard=shard, shard_count=shard_count,
            inputs=inputs, outputs=outputs, output_path=manifest.outputs.path, timeout_seconds=manifest.timeout_seconds,
            limits=sandbox.Limits(memory_bytes=256 << 20),
        )  # fmt: skip
        container = sandbox.start(docker, spec)
        try:
            run = sandbox.wait(container, manifest.timeout_seconds, started=sandbox.started_at(container))
        finally:
            container.remove(force=True)
        files = {OUTPUT_PREFIX + p.relative_to(outputs).as_posix(): p.read_bytes()
                 for p in sorted(outputs.rglob("*")) if p.is_file() and not p.is_symlink()}  # fmt: skip
    files[LOG_LEAF] = run.logs
    return files
