"""Example-workload fixtures: the ML image, built once per session on the session's Docker
engine (tests/conftest.py), and running a workload's shards in containers confined as the
agent confines them (computenet.sandbox), with the checkpoint mounts of the checkpoint
protocol (docs/ai.md) when asked."""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent import image
from computenet import sandbox

CHECKPOINT_DIR, RESUME_DIR = "/checkpoint", "/resume"


@pytest.fixture(scope="session")
def ml_image(docker_engine):
    """`computenet/ml@sha256:<id>`: Python, NumPy and scikit-learn from Debian's packages."""
    started = time.monotonic()
    reference = image.build(docker_engine.client, image.ML_TAG, ml=True)
    print(f"ML image {reference} built in {time.monotonic() - started:.1f} s")
    return reference


@dataclass
class Shard:
    """One shard's run: its result, its output files and its checkpoint folder."""

    result: sandbox.RunResult
    outputs: dict[str, bytes]
    checkpoints: Path | None

    @property
    def log(self) -> str:
        return self.result.logs.decode(errors="replace")


def spec_for(ml_image, workload, shard, shards, folder: Path, name: str) -> sandbox.RunSpec:
    """The RunSpec of shard `shard` of `shards`, its inputs staged under `folder`/in."""
    command, env, files = workload
    inputs, outputs = folder / "in", folder / "out"
    for path, data in files.items():
        (inputs / path).parent.mkdir(parents=True, exist_ok=True)
        (inputs / path).write_bytes(data)
    outputs.mkdir(parents=True)
    return sandbox.RunSpec(
        name=name,
        image=ml_image.rsplit("@", 1)[1],
        command=command,
        env=env,
        shard=shard,
        shard_count=shards,
        inputs=inputs,
        outputs=outputs,
        output_path="/out",
        timeout_seconds=120,
    )


def start(client, spec: sandbox.RunSpec, checkpoints: Path | None = None, resume: Path | None = None):
    """Starts the container as computenet.sandbox.start does, with the checkpoint folder
    (read-write) and the folder to resume from (read-only) mounted and named in its env."""
    options = sandbox.container_options(spec)
    spec.outputs.chmod(0o777)
    if checkpoints is not None:
        checkpoints.mkdir(parents=True, exist_ok=True)
        checkpoints.chmod(0o777)
        options["volumes"][str(checkpoints)] = {"bind": CHECKPOINT_DIR, "mode": "rw"}
        options["environment"]["COMPUTENET_CHECKPOINT_DIR"] = CHECKPOINT_DIR
    if resume is not None:
        options["volumes"][str(resume)] = {"bind": RESUME_DIR, "mode": "ro"}
        options["environment"]["COMPUTENET_RESUME_DIR"] = RESUME_DIR
    container = client.containers.create(**options)
    container.start()
    return container


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_shards(docker_engine, ml_image, tmp_path_factory):
    """Runs every shard of a workload ((command, env, files), examples/workloads.py) at once,
    waits for them all and returns a Shard per shard; `checkpoints` mounts a fresh checkpoint
    folder per shard, `resume` a folder per shard (a list) to resume from."""
    client = docker_engine.client
    tmp_path = tmp_path_factory.mktemp("ml-runs")
    runs = iter(range(1_000))

    def run(workload, shards=1, checkpoints=False, resume=None, on_start=None) -> list[Shard]:
        batch = next(runs)
        started = []
        for shard in range(shards):
            folder = tmp_path / f"run-{batch}" / str(shard)
            name = f"computenet-ml-test-{os.getpid()}-{batch}-{shard}"
            spec = spec_for(ml_image, workload, shard, shards, folder, name)
            kept = folder / "checkpoint" if checkpoints else None
            container = start(client, spec, kept, resume[shard] if resume else None)
            started.append((spec, container, kept))
        if on_start is not None:
            on_start(started)
        done = []
        for spec, container, kept in started:
            try:
                result = sandbox.wait(container, spec.timeout_seconds)
            finally:
                container.remove(force=True)
            done.append(Shard(result, files_under(spec.outputs), kept))
        return done

    return run
