"""Runs one shard again exactly as an agent runs it, for whoever must know its true result
without trusting any party's files (the facilitator's dispute arbiter):

- the manifest is fetched from the content store by the keccak-256 the job committed to, the
  inputs by their SHA-256 (checked against the manifest's Merkle root), the image found or
  pulled by its digest (agent/execute.py);
- the replica's resume point (the keccak256 of the checkpoint the market adopted for it, zero
  when it started fresh) is staged as an agent stages it (computenet.staging.stage_resume): a
  checkpoint/ folder mounted at /checkpoint and a resume/ folder at /resume holding the
  checkpoint's bytes, fetched by that hash and checked. A replica that resumed is judged by a
  run from what it was given, not from scratch: a checkpoint poisoned by the node that failed
  changes the honest result;
- the container runs in the agent's sandbox (computenet/sandbox.py: no network, read-only root,
  user `nobody`, memory, PID and CPU limits), with the limits an agent uses and the
  manifest's wall-clock limit;
- its outputs are bounded on disk as an agent bounds them (computenet.staging.bound_outputs,
  RLIMIT_FSIZE), and its files are committed as the agent commits a result
  (verifier.commitment): `out/<path>` for each output file, `log/container.log` for the log,
  only the log when the outputs cannot be committed, and the Merkle root over them.

What cannot run (manifest, inputs, resume checkpoint or image missing or wrong, no Docker
engine) raises ReexecutionError saying what and where; a run that fails, times out or is
killed for memory is still a result, as it is for an agent.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from computenet import sandbox
from computenet.errors import ComputenetError
from computenet.manifest import Manifest
from computenet.merkle import MerkleTree
from computenet.meter import Metering
from computenet.staging import (
    NO_RESUME,
    Decline,
    bound_outputs,
    ensure_image,
    fetch_manifest,
    lease_dirs,
    make_dirs,
    output_bytes,
    prepare,
    release,
    stage_inputs,
    stage_resume,
)
from computenet.store import Mirrors, StoreClient
from verifier.commitment import result_files
from verifier.rules import wall_clock


class ReexecutionError(ComputenetError):
    """The shard could not be run again; the message says what is missing or wrong."""


@dataclass(frozen=True)
class Reexecution:
    """One run of a shard: the root it commits to and the files under it (leaf -> content)."""

    root: bytes
    files: dict[str, bytes] = field(repr=False)
    exit_code: int = 0
    timed_out: bool = False
    oom_killed: bool = False
    seconds: float = 0.0
    # What the run used, as the sandbox metered it (computenet.meter.Metering; the claim it
    # supports is `metering.seconds(gpu_count)`); without one, its wall-clock time (verifier.rules.wall_clock).
    metering: Metering | None = None
    # The checkpoint the run resumed from (keccak256; zero: from scratch).
    resume_point: bytes = NO_RESUME

    def __post_init__(self) -> None:
        if self.metering is None:
            object.__setattr__(self, "metering", wall_clock(self.seconds))


class Reexecutor:
    """Re-executes shards on one Docker engine with manifests and inputs from one content store."""

    def __init__(
        self,
        store: StoreClient,
        *,
        docker: Any = None,
        docker_host: str | None = None,
        limits: sandbox.Limits = sandbox.Limits(),
    ) -> None:
        """
        @param store The content store clients publish manifests and inputs to.
        @param docker A Docker client; without one, a client for `docker_host` (default:
               DOCKER_HOST or the system socket) is made when first needed, so an engine that
               is down fails the runs that need it, not the process that holds this.
        @param limits Per-container resources; an agent's defaults unless told.
        """
        self.store = store
        self.docker_host = docker_host
        self.limits = limits
        self._docker = docker

    def run(
        self, manifest_hash: bytes, shard: int, shard_count: int, gpu_count: int = 0, resume_point: bytes = NO_RESUME
    ) -> Reexecution:
        """Runs shard `shard` of `shard_count` of the job whose manifest hashes to `manifest_hash`,
        with `gpu_count` GPUs passed through (the job's, as an agent passes them), resumed from
        the checkpoint `resume_point` (keccak256; zero: from scratch) as an agent resumes."""
        try:
            manifest = fetch_manifest(self.store, manifest_hash)
            docker = self.docker()
            image = ensure_image(docker, manifest.image)
        except Decline as decline:
            raise ReexecutionError(_said(decline)) from None
        # The container writes as `nobody`; a facilitator that is not root may not delete its files.
        with tempfile.TemporaryDirectory(prefix="computenet-reexecute-", ignore_cleanup_errors=True) as folder:
            shard_folder = Path(folder) / "shard"
            prepare(shard_folder)
            try:
                return self._run(
                    manifest, image, docker, manifest_hash, shard, shard_count, gpu_count, shard_folder, resume_point
                )
            finally:
                release(shard_folder)  # the output tmpfs, before the folder goes

    def _run(
        self,
        manifest: Any,
        image: str,
        docker: Any,
        manifest_hash: bytes,
        shard: int,
        shard_count: int,
        gpu_count: int,
        folder: Path,
        resume_point: bytes,
    ) -> Reexecution:
        inputs, outputs = lease_dirs(folder)
        bound_outputs(outputs, manifest.outputs.max_bytes)
        # An agent mounts both folders for every lease, an empty resume/ when it starts fresh.
        checkpoints, resume = make_dirs(folder)
        try:
            stage_inputs(self.store, manifest, inputs)
            stores = Mirrors.of(self.store, manifest.stores)
            stage_resume(stores, resume_point, resume, output_bytes(manifest.outputs.max_bytes))
        except Decline as decline:
            raise ReexecutionError(_said(decline)) from None
        spec = sandbox.RunSpec(
            # Two runs of one shard (a reproducibility check) may overlap with another arbiter's.
            name=f"computenet-reexecute-{manifest_hash.hex()[:12]}-{shard}-{secrets.token_hex(4)}",
            image=image,
            command=list(manifest.command),
            env=dict(manifest.env),
            shard=shard,
            shard_count=shard_count,
            inputs=inputs,
            outputs=outputs,
            output_path=manifest.outputs.path,
            timeout_seconds=manifest.timeout_seconds,
            gpu_count=gpu_count,
            gpu_indices=tuple(range(gpu_count)),
            limits=self.limits,
            max_file_bytes=output_bytes(manifest.outputs.max_bytes),
            labels={"computenet.reexecution": f"0x{manifest_hash.hex()}/{shard}"},
            checkpoints=checkpoints,
            resume=resume,
        )
        try:
            run = sandbox.run(docker, spec)
        except Exception as error:  # the engine's errors: no GPU here, out of disk, gone away
            raise ReexecutionError(f"the Docker engine could not run shard {shard}: {error}") from None
        files, _ = result_files(outputs, run.logs, manifest.outputs.max_bytes)
        return Reexecution(
            root=MerkleTree.from_files(files).root,
            files=files,
            exit_code=run.exit_code,
            timed_out=run.timed_out,
            oom_killed=run.oom_killed,
            seconds=run.seconds,
            metering=run.metering,
            resume_point=bytes(resume_point),
        )

    def manifest(self, manifest_hash: bytes) -> Manifest:
        """The job's manifest from the content store, checked to be the one committed to."""
        try:
            return fetch_manifest(self.store, manifest_hash)
        except Decline as decline:
            raise ReexecutionError(_said(decline)) from None

    def docker(self) -> Any:
        """The Docker client, connected on first use."""
        if self._docker is None:
            import docker

            try:
                client = docker.DockerClient(base_url=self.docker_host) if self.docker_host else docker.from_env()
                client.ping()
            except Exception as error:
                raise ReexecutionError(
                    f"no Docker engine at {self.docker_host or 'the default socket'}: {error}"
                ) from None
            self._docker = client
        return self._docker


def _said(decline: Decline) -> str:
    return decline.reason if decline.detail == decline.reason else f"{decline.reason}: {decline.detail}"
