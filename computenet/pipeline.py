"""Pipelines: jobs run one after another, each stage's inputs being the previous stage's
verified outputs (`ape run job pipeline FILE`, docs/pipelines.md).

This module is the pure part: the TOML file parsed and validated (every problem names its
stage and field), the staging plan (a stage's static inputs plus `prev/<shard>/<leaf>` for
every file of the previous stage), the requirements a stage posts, the resume state and the
next step it calls for, shard progress, and the providers paid, from the chain's events.
computenet.pipeline_run does the I/O around it.

Pure: no ape, web3, redis or celery.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from computenet.cli import format_amount
from computenet.domain import MAX_REPLICATION, MAX_SHARDS, ReplicaState, Shard, Verification
from computenet.errors import ComputenetError
from computenet.manifest import portable_problem

PREV = "prev"  # the previous stage's outputs are staged under /in/prev/<shard>/<leaf>
STATE_FILE = "pipeline-state.json"
STATE_VERSION = 1


class PipelineError(ComputenetError):
    """A pipeline file is malformed, its state does not fit it, or a stage failed."""


# ---------------------------------------------------------------- the file

# field -> (kind, default); a default of REQUIRED must be set by the stage or [defaults].
REQUIRED = object()
FIELDS: dict[str, tuple[str, Any]] = {
    "image": ("str", REQUIRED),
    "command": ("strings", REQUIRED),
    "inputs": ("strings", ()),
    "shards": ("count", 1),
    "replication": ("count", 1),
    "spot_check": ("bool", False),
    "gpus": ("size", 0),
    "min_vram_mib": ("size", 0),
    "cpu_cores": ("count", 1),  # per lease, as computenet.domain.Requirements' defaults
    "memory_mib": ("count", 1024),
    "disk_mib": ("count", 1024),
    "max_price": ("amount", REQUIRED),
    "max_gpu_seconds": ("count", REQUIRED),
    "hours": ("hours", 24),
    "env": ("env", {}),
    "timeout_seconds": ("count", 600),
    "max_output_bytes": ("count", 64 << 20),
}
LIMITS = {"shards": MAX_SHARDS, "replication": MAX_REPLICATION}


@dataclass(frozen=True)
class Stage:
    """One stage: a job over its static inputs (and the previous stage's outputs)."""

    name: str
    image: str
    command: tuple[str, ...]
    max_price: int  # token base units per GPU-second
    max_gpu_seconds: int
    inputs: tuple[str, ...] = ()  # files or folders, relative to the pipeline file
    shards: int = 1
    replication: int = 1
    spot_check: bool = False
    gpus: int = 0
    min_vram_mib: int = 0
    cpu_cores: int = 0
    memory_mib: int = 0
    disk_mib: int = 0
    hours: float = 24
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int = 600
    max_output_bytes: int = 64 << 20


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: tuple[Stage, ...]

    def stage_index(self, name: str) -> int:
        return next(i for i, s in enumerate(self.stages) if s.name == name)


def parse_amount(text: str) -> int:
    """ "0.0001" tokens -> base units (as `job post --max-price`); ValueError otherwise."""
    import click

    from computenet.cli import parse_amount as tokens

    try:
        return tokens(text)
    except click.BadParameter as error:
        raise ValueError(error.message) from None


def _value(kind: str, name: str, value: Any) -> Any:
    """The field's value checked and converted; ValueError saying what is wrong."""
    is_int = type(value) is int  # bool is not an int here
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise ValueError("must be a non-empty string")
        return value
    if kind == "strings":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError("must be a list of non-empty strings")
        if name == "command" and not value:
            raise ValueError("must name the executable")
        return tuple(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind in ("count", "size"):
        least = 1 if kind == "count" else 0
        if not is_int or value < least:
            raise ValueError(f"must be an integer of at least {least}, not {value!r}")
        if name in LIMITS and value > LIMITS[name]:
            raise ValueError(f"must be at most {LIMITS[name]}, not {value}")
        return value
    if kind == "amount":
        if not isinstance(value, str):
            raise ValueError(f'must be a decimal string of tokens, e.g. "0.0001", not {value!r}')
        amount = parse_amount(value)
        if amount == 0:
            raise ValueError("must be above zero")
        return amount
    if kind == "hours":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 24 * 365:
            raise ValueError(f"must be a number of hours above zero, not {value!r}")
        return float(value)
    if kind == "env":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError('must be a table of NAME = "value" strings')
        return dict(value)
    raise AssertionError(kind)


def _stage(number: int, total: int, table: Any, defaults: Mapping[str, Any]) -> Stage:
    where = f"stage {number} of {total}"
    if not isinstance(table, dict):
        raise PipelineError(f"{where}: must be a table ([[stage]])")
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise PipelineError(f"{where}: name: must be a non-empty string")
    problem = portable_problem(name)
    if problem or "/" in name:
        raise PipelineError(f"{where}: name: {name!r} {problem or 'must not contain /'} (it names a folder)")
    where = f"stage {name!r} ({number} of {total})"
    unknown = sorted(set(table) - set(FIELDS) - {"name"})
    if unknown:
        raise PipelineError(f"{where}: unknown field {unknown[0]!r} (the fields: {', '.join(sorted(FIELDS))})")
    values: dict[str, Any] = {"name": name}
    for key, (kind, default) in FIELDS.items():
        if key in table:
            raw, source = table[key], where
        elif key in defaults:
            raw, source = defaults[key], f"{where}, from [defaults]"
        elif default is REQUIRED:
            raise PipelineError(f"{where}: {key}: missing (set it in the stage or in [defaults])")
        else:
            values[key] = default
            continue
        try:
            values[key] = _value(kind, key, raw)
        except ValueError as error:
            raise PipelineError(f"{source}: {key}: {error}") from None
    for entry in values["inputs"]:
        path = entry.rstrip("/")
        if entry.startswith("/") or not path or (problem := portable_problem(path)):
            why = "must be relative to the pipeline file" if entry.startswith("/") or not path else problem
            raise PipelineError(f"{where}: inputs: {entry!r} {why}")
    if values["replication"] > 1 and values["spot_check"]:
        raise PipelineError(f"{where}: spot_check: not with replication > 1 (replicas are compared instead)")
    return Stage(**values)


def parse_pipeline(text: str) -> Pipeline:
    """A validated pipeline from its TOML; PipelineError naming the stage and field otherwise."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PipelineError(f"not TOML: {error}") from None
    unknown = sorted(set(data) - {"name", "defaults", "stage"})
    if unknown:
        raise PipelineError(f"unknown top-level key {unknown[0]!r} (expected name, [defaults] and [[stage]])")
    name = data.get("name")
    if not isinstance(name, str) or not name or portable_problem(name) or "/" in name:
        raise PipelineError("name: must be a non-empty name of the characters A-Z a-z 0-9 . _ - + , = @ ~")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise PipelineError("defaults: must be a table ([defaults])")
    unknown = sorted(set(defaults) - set(FIELDS))
    if unknown:
        raise PipelineError(f"defaults: unknown field {unknown[0]!r} (the fields: {', '.join(sorted(FIELDS))})")
    tables = data.get("stage")
    if not isinstance(tables, list) or not tables:
        raise PipelineError("stage: a pipeline needs at least one [[stage]]")
    stages = tuple(_stage(i + 1, len(tables), t, defaults) for i, t in enumerate(tables))
    seen: dict[str, int] = {}
    for number, stage in enumerate(stages, 1):
        if stage.name in seen:
            raise PipelineError(
                f"stage {stage.name!r} ({number} of {len(stages)}): name: stage {seen[stage.name]} has it too"
            )
        seen[stage.name] = number
    return Pipeline(name, stages)


# ---------------------------------------------------------------- staging


def entry_path(entry: str, relative: str | None) -> str:
    """Where a file of an `inputs` entry is staged under /in: a folder's files at their paths
    inside it (as `job manifest --inputs FOLDER`), a file under its own name."""
    return relative if relative is not None else entry.rstrip("/").rsplit("/", 1)[-1]


def prev_path(shard: int, leaf: str) -> str:
    """Where file `leaf` of the previous stage's shard is staged: prev/<shard>/<leaf>."""
    return f"{PREV}/{shard}/{leaf}"


def plan_inputs(
    stage: Stage,
    static: Iterable[tuple[str, str, bytes]],
    previous: Mapping[int, Mapping[str, bytes]] | None = None,
) -> dict[str, bytes]:
    """A stage's input files (path under /in -> content): its static ones (`(entry, path,
    content)` each) and every file of every shard of the previous stage's outputs under
    prev/<shard>/<leaf>. Two files at one path, or a static one under prev/, are refused."""
    files: dict[str, bytes] = {}
    origin: dict[str, str] = {}
    for entry, path, data in static:
        if path == PREV or path.startswith(PREV + "/"):
            raise PipelineError(
                f"stage {stage.name!r}: inputs: {entry!r} stages {path}, but {PREV}/ holds the previous stage's outputs"
            )
        if path in files:
            raise PipelineError(f"stage {stage.name!r}: inputs: {entry!r} and {origin[path]!r} both stage {path}")
        files[path], origin[path] = data, entry
    for shard, outputs in sorted((previous or {}).items()):
        for leaf, data in sorted(outputs.items()):
            problem = portable_problem(leaf)
            if problem:
                raise PipelineError(f"the previous stage's shard {shard} has an output {leaf!r} that {problem}")
            files[prev_path(shard, leaf)] = data
    return files


def requirements_fields(stage: Stage, deadline: int) -> dict[str, Any]:
    """The keyword arguments of computenet.domain.Requirements for the stage."""
    if stage.replication > 1:
        mode = Verification.REPLICATED
    else:
        mode = Verification.SPOT_CHECK if stage.spot_check else Verification.OPTIMISTIC
    return {
        "min_vram_mib": stage.min_vram_mib,
        "gpu_count": stage.gpus,
        "max_price": stage.max_price,
        "max_gpu_seconds": stage.max_gpu_seconds,
        "deadline": deadline,
        "shard_count": stage.shards,
        "replication": stage.replication,
        "verification": mode,
        "cpu_cores": stage.cpu_cores,
        "memory_mib": stage.memory_mib,
        "disk_mib": stage.disk_mib,
    }


# ---------------------------------------------------------------- resume state
# {"version", "pipeline", "chain_id", "market", "stages": [{"name", "manifest", "block",
#  "job", "posted_at", "finished_at", "outputs": {shard: {"replica", "asset", "root",
#  "files": {leaf: sha256}}}}]}: a stage is added before its job is posted ("job": null),
# "job" is set once posted, "outputs" once every shard's files are fetched and verified.


def new_state(pipeline: Pipeline, chain_id: int, market: str) -> dict[str, Any]:
    return {"version": STATE_VERSION, "pipeline": pipeline.name, "chain_id": chain_id, "market": market, "stages": []}


def check_state(state: Mapping[str, Any], pipeline: Pipeline, chain_id: int, market: str) -> None:
    """Refuses a state file written for another pipeline, chain or market."""
    if state.get("version") != STATE_VERSION:
        raise PipelineError(f"the state file's version is {state.get('version')!r}, not {STATE_VERSION}")
    if state.get("pipeline") != pipeline.name:
        raise PipelineError(f"the state file is pipeline {state.get('pipeline')!r}'s, not {pipeline.name!r}'s")
    if state.get("chain_id") != chain_id or str(state.get("market", "")).lower() != market.lower():
        raise PipelineError(
            f"the state file is for market {state.get('market')} on chain {state.get('chain_id')}, "
            f"not {market} on chain {chain_id}"
        )
    names = [s.name for s in pipeline.stages]
    recorded = [s["name"] for s in state.get("stages", [])]
    if recorded != names[: len(recorded)]:
        raise PipelineError(
            f"the state file records stages {recorded}, which do not begin the pipeline's stages {names}"
        )


@dataclass(frozen=True)
class Step:
    """What the pipeline does next: "post" stage `index` (no job yet; `pending` when a post
    may have been sent before an interruption), "follow" its job `job` (then fetch its
    outputs), or "done"."""

    kind: str
    index: int = -1
    job: int | None = None
    pending: Mapping[str, Any] | None = None


def next_step(pipeline: Pipeline, state: Mapping[str, Any]) -> Step:
    """The next step from the state (checked against the pipeline with check_state)."""
    records = list(state.get("stages", []))
    for index in range(len(pipeline.stages)):
        if index >= len(records):
            return Step("post", index)
        record = records[index]
        if record.get("job") is None:
            return Step("post", index, pending=record)
        if record.get("outputs") is None:
            return Step("follow", index, int(record["job"]))
    return Step("done")


def record_posting(state: dict[str, Any], index: int, name: str, manifest: str, block: int) -> dict[str, Any]:
    """The state with stage `index` about to be posted (its manifest hash and the block from
    which its JobPosted event would be found)."""
    stages = list(state["stages"][:index])
    stages.append({"name": name, "manifest": manifest, "block": block, "job": None, "outputs": None})
    return {**state, "stages": stages}


def record_posted(state: dict[str, Any], index: int, job: int, at: float) -> dict[str, Any]:
    stages = list(state["stages"])
    stages[index] = {**stages[index], "job": job, "posted_at": at}
    return {**state, "stages": stages}


def record_fetched(
    state: dict[str, Any], index: int, outputs: Mapping[int, Mapping[str, Any]], at: float
) -> dict[str, Any]:
    stages = list(state["stages"])
    stages[index] = {**stages[index], "outputs": {str(s): dict(o) for s, o in outputs.items()}, "finished_at": at}
    return {**state, "stages": stages}


def check_manifest(record: Mapping[str, Any], stage: Stage, manifest: str) -> None:
    """Refuses to go on with a stage whose manifest is not the one recorded when it was posted
    (its file, inputs or previous outputs changed since)."""
    if record.get("manifest") != manifest:
        job = f"job {record['job']}" if record.get("job") is not None else "its job"
        raise PipelineError(
            f"stage {stage.name!r} changed since {job} was posted (manifest {record.get('manifest')} then, "
            f"{manifest} now): restore it, or start again with another --out folder"
        )


def posted_job(events: Iterable[Any], client: str, manifest: bytes) -> int | None:
    """The job a JobPosted event says `client` posted for `manifest` (the latest), or None:
    how a post sent just before an interruption is found instead of posted twice."""
    found = None
    for event in events:
        if (
            event.name == "JobPosted"
            and str(event.client).lower() == client.lower()
            and bytes(event.manifest_hash) == manifest
        ):
            found = int(event.job)
    return found


# ---------------------------------------------------------------- progress


@dataclass(frozen=True)
class Progress:
    total: int
    done: int  # finalized
    failed: tuple[tuple[int, str], ...]  # (shard, why)
    overdue: tuple[int, ...] = ()  # shards with a replica still open or running past the deadline
    waiting: tuple[tuple[str, int], ...] = ()  # unfinished shards by state ("submitted", 2), in the market's order

    @property
    def finished(self) -> bool:
        return self.done == self.total


def progress(shards: Sequence[Shard], deadline: int, now: int, failed_shards: Collection[int] = ()) -> Progress:
    """How far a stage's job is: shards finalized, shards cancelled (`failed_shards`: those the
    chain failed after their declines), shards whose replicas cannot finish by the deadline."""
    done = sum(1 for s in shards if s.state == ReplicaState.FINALIZED)
    failed = tuple(
        (s.index, "failed (declined by every asset it was given to)" if s.index in failed_shards else "cancelled")
        for s in shards
        if s.state == ReplicaState.CANCELLED
    )
    unfinished = (ReplicaState.OPEN, ReplicaState.ASSIGNED)
    overdue = tuple(s.index for s in shards if now > deadline and any(r.state in unfinished for r in s.replicas))
    order = (ReplicaState.OPEN, ReplicaState.ASSIGNED, ReplicaState.SUBMITTED, ReplicaState.DISPUTED)
    counts = [(WAITING[state], sum(1 for s in shards if s.state == state)) for state in order]
    return Progress(len(shards), done, failed, overdue, tuple((name, n) for name, n in counts if n))


# how an unfinished shard's state reads in a progress line
WAITING = {
    ReplicaState.OPEN: "open",
    ReplicaState.ASSIGNED: "running",
    ReplicaState.SUBMITTED: "in the challenge window",
    ReplicaState.DISPUTED: "disputed",
}


def progress_line(index: int, pipeline: Pipeline, job: int, prog: Progress, seconds: float) -> str:
    stage = pipeline.stages[index]
    return (
        f"stage {index + 1}/{len(pipeline.stages)} {stage.name}: job {job}, "
        f"{prog.done}/{prog.total} shards done"
        + "".join(f", {n} {name}" for name, n in prog.waiting)
        + f", {seconds:.0f} s"
    )


def failure(index: int, pipeline: Pipeline, job: int, prog: Progress) -> str | None:
    """Why the stage cannot complete, or None while it can."""
    stage = pipeline.stages[index]
    if prog.failed:
        shard, why = prog.failed[0]
        more = f" (and {len(prog.failed) - 1} more)" if len(prog.failed) > 1 else ""
        return (
            f"stage {stage.name!r}: job {job} shard {shard} {why}{more}; the pipeline stops "
            f"(`ape run job status {job}` shows why; `ape run job withdraw` returns unspent budget)"
        )
    if prog.overdue:
        return (
            f"stage {stage.name!r}: job {job} passed its deadline with shard(s) "
            f"{', '.join(map(str, prog.overdue))} unfinished; the pipeline stops"
        )
    return None


# ---------------------------------------------------------------- payments


@dataclass(frozen=True)
class Paid:
    """One finalized replica's pay: the provider, its asset, GPU-seconds and the payment."""

    shard: int
    replica: int
    asset: int
    provider: str
    gpu_seconds: int
    payment: int


def payments(events: Iterable[Any], job: int) -> list[Paid]:
    """The job's finalized replicas and what each was paid (ShardFinalized), with the
    GPU-seconds of the result it paid for (the replica's last ResultSubmitted)."""
    seconds: dict[tuple[int, int], int] = {}
    paid = []
    for event in events:
        if int(getattr(event, "job", -1)) != job:
            continue
        if event.name == "ResultSubmitted":
            seconds[(int(event.shard), int(event.replica))] = int(event.gpu_seconds)
        elif event.name == "ShardFinalized":
            key = (int(event.shard), int(event.replica))
            paid.append(
                Paid(key[0], key[1], int(event.asset), str(event.provider), seconds.get(key, 0), int(event.payment))
            )
    return paid


def summary(pipeline: Pipeline, state: Mapping[str, Any], paid: Mapping[str, Sequence[Paid]]) -> list[str]:
    """The end-of-run lines: per stage its job, shards, time taken, GPU-seconds paid and to whom."""
    lines = [f"pipeline {pipeline.name}: {len(pipeline.stages)} stage(s) done"]
    for record in state["stages"]:
        stage = pipeline.stages[pipeline.stage_index(record["name"])]
        took = float(record.get("finished_at", 0)) - float(record.get("posted_at", 0))
        rows = paid.get(record["name"], [])
        lines.append(
            f"  {stage.name}: job {record['job']}, {stage.shards} shard(s), {took:.0f} s, "
            f"{sum(p.gpu_seconds for p in rows)} GPU-seconds paid {format_amount(sum(p.payment for p in rows))}"
        )
        by_provider: dict[str, list[Paid]] = {}
        for row in rows:
            by_provider.setdefault(row.provider, []).append(row)
        for provider, mine in sorted(by_provider.items()):
            assets = ", ".join(str(a) for a in sorted({p.asset for p in mine}))
            lines.append(
                f"    {provider} (asset {assets}): {len(mine)} replica(s), "
                f"{sum(p.gpu_seconds for p in mine)} GPU-seconds, {format_amount(sum(p.payment for p in mine))}"
            )
    return lines
