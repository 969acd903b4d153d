"""Pipelines' pure part (computenet.pipeline): the file, the staging plan, the requirements,
the resume state and its next step, progress and payments. No chain."""

import dataclasses
from types import SimpleNamespace

import pytest

from computenet import pipeline as plan
from computenet.domain import Replica, ReplicaState, Requirements, Shard, Verification
from computenet.pipeline import PipelineError, Step, parse_pipeline

IMAGE = "computenet/python@sha256:" + "ab" * 32
FILE = f"""
name = "digits"
[defaults]
image = "{IMAGE}"
max_price = "0.0001"
max_gpu_seconds = 120
cpu_cores = 1
memory_mib = 1024
disk_mib = 1024
gpus = 0
hours = 2
env = {{ OPENBLAS_NUM_THREADS = "1" }}
timeout_seconds = 300
[[stage]]
name = "train-1"
command = ["python3", "/in/train.py"]
inputs = ["data/"]
shards = 4
[[stage]]
name = "train-2"
command = ["python3", "/in/train.py"]
inputs = ["data/", "extra.txt"]
shards = 1
max_price = "0.0002"
env = {{}}
"""


def with_first_stage(change: str) -> str:
    """FILE with the first stage's lines `change` (each replacing the line that sets its key)."""
    head, first, rest = FILE.split("[[stage]]\n")
    keys = {line.split("=")[0].strip() for line in change.splitlines()}
    kept = [line for line in first.splitlines() if line.split("=")[0].strip() not in keys]
    return "[[stage]]\n".join([head, "\n".join(kept + change.splitlines()) + "\n", rest])


def stage_with(**fields):
    return dataclasses.replace(parse_pipeline(FILE).stages[0], **fields)


# ---------------------------------------------------------------- the file


def test_the_example_parses_with_defaults_applied_unless_a_stage_sets_them():
    parsed = parse_pipeline(FILE)
    assert parsed.name == "digits" and [s.name for s in parsed.stages] == ["train-1", "train-2"]
    first, second = parsed.stages
    assert first.image == second.image == IMAGE
    assert first.command == ("python3", "/in/train.py") and first.inputs == ("data/",)
    assert (first.shards, first.max_gpu_seconds, first.hours, first.timeout_seconds) == (4, 120, 2.0, 300)
    assert (first.cpu_cores, first.memory_mib, first.disk_mib, first.gpus) == (1, 1024, 1024, 0)
    assert first.max_price == 100 and second.max_price == 200  # base units per GPU-second
    assert first.env == {"OPENBLAS_NUM_THREADS": "1"} and second.env == {}
    assert second.inputs == ("data/", "extra.txt") and second.shards == 1
    assert first.replication == 1 and first.spot_check is False and first.max_output_bytes == 64 << 20


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("shards = 4\nshards = 5", "not TOML: "),
        ('shards = "4"', "stage 'train-1' (1 of 2): shards: must be an integer of at least 1, not '4'"),
        ("shards = 0", "stage 'train-1' (1 of 2): shards: must be an integer of at least 1, not 0"),
        ("shards = 2000", "stage 'train-1' (1 of 2): shards: must be at most 1024, not 2000"),
        ("shards = true", "stage 'train-1' (1 of 2): shards: must be an integer of at least 1, not True"),
        ("replication = 6", "stage 'train-1' (1 of 2): replication: must be at most 5, not 6"),
        ("max_price = 0.0001", "stage 'train-1' (1 of 2): max_price: must be a decimal string of tokens"),
        ('max_price = "0.00000001"', "stage 'train-1' (1 of 2): max_price: '0.00000001' is not a non-negative"),
        ('max_price = "0"', "stage 'train-1' (1 of 2): max_price: must be above zero"),
        ("hours = 0", "stage 'train-1' (1 of 2): hours: must be a number of hours above zero, not 0"),
        ("command = []", "stage 'train-1' (1 of 2): command: must name the executable"),
        ('command = "python3"', "stage 'train-1' (1 of 2): command: must be a list of non-empty strings"),
        ("env = { A = 1 }", "stage 'train-1' (1 of 2): env: must be a table"),
        ('inputs = ["/etc/passwd"]', "stage 'train-1' (1 of 2): inputs: '/etc/passwd' must be relative"),
        ('inputs = ["../secret"]', "stage 'train-1' (1 of 2): inputs: '../secret' must be a normalised POSIX path"),
        ("gpu = 1", "stage 'train-1' (1 of 2): unknown field 'gpu' (the fields: "),
        ("replication = 2\nspot_check = true", "stage 'train-1' (1 of 2): spot_check: not with replication > 1"),
    ],
)
def test_a_bad_field_is_named_with_its_stage(change, message):
    text = with_first_stage(change)
    with pytest.raises(PipelineError) as error:
        parse_pipeline(text)
    assert str(error.value).startswith(message), str(error.value)


def test_a_bad_default_names_the_stage_it_reached_and_where_it_came_from():
    with pytest.raises(PipelineError, match=r"^stage 'train-1' \(1 of 2\), from \[defaults\]: max_gpu_seconds: "):
        parse_pipeline(FILE.replace("max_gpu_seconds = 120", "max_gpu_seconds = -1"))
    with pytest.raises(PipelineError, match=r"^defaults: unknown field 'max_gpu_second'"):
        parse_pipeline(FILE.replace("max_gpu_seconds = 120", "max_gpu_second = 1"))
    with pytest.raises(PipelineError, match=r"^stage 'train-1' \(1 of 2\): image: missing \(set it in the stage or"):
        parse_pipeline(FILE.replace(f'image = "{IMAGE}"', ""))


def test_names_stages_and_top_level_keys_are_checked():
    with pytest.raises(PipelineError, match=r"^stage 'train-1' \(2 of 2\): name: stage 1 has it too"):
        parse_pipeline(FILE.replace('"train-2"', '"train-1"'))
    with pytest.raises(PipelineError, match="^stage 2 of 2: name: 'a/b' must not contain /"):
        parse_pipeline(FILE.replace('"train-2"', '"a/b"'))
    with pytest.raises(PipelineError, match="^stage 2 of 2: name: must be a non-empty string"):
        parse_pipeline(FILE.replace('name = "train-2"', ""))
    with pytest.raises(PipelineError, match="^stage: a pipeline needs at least one"):
        parse_pipeline('name = "x"\n')
    with pytest.raises(PipelineError, match="^unknown top-level key 'stages'"):
        parse_pipeline('name = "x"\n[[stages]]\nname = "a"\n')
    with pytest.raises(PipelineError, match="^name: must be a non-empty name"):
        parse_pipeline(FILE.replace('name = "digits"', 'name = "my pipeline"'))


# ---------------------------------------------------------------- staging


def test_a_folder_is_staged_at_its_files_paths_and_a_file_under_its_name():
    assert plan.entry_path("data/", "sub/a.csv") == "sub/a.csv"
    assert plan.entry_path("tools/extra.txt", None) == "extra.txt"
    assert plan.prev_path(3, "out/model.bin") == "prev/3/out/model.bin"


def test_the_plan_stages_static_inputs_and_every_previous_output_under_prev():
    stage = parse_pipeline(FILE).stages[1]
    static = [("data/", "train.py", b"code"), ("extra.txt", "extra.txt", b"x")]
    previous = {1: {"out/n.txt": b"2", "log/container.log": b"ok"}, 0: {"out/n.txt": b"1"}}
    assert plan.plan_inputs(stage, static, previous) == {
        "train.py": b"code",
        "extra.txt": b"x",
        "prev/0/out/n.txt": b"1",
        "prev/1/out/n.txt": b"2",
        "prev/1/log/container.log": b"ok",
    }
    assert plan.plan_inputs(stage, static) == {"train.py": b"code", "extra.txt": b"x"}


def test_the_plan_refuses_collisions_and_outputs_that_are_not_portable_paths():
    stage = parse_pipeline(FILE).stages[1]
    with pytest.raises(PipelineError, match="^stage 'train-2': inputs: 'extra.txt' and 'data/' both stage extra.txt"):
        plan.plan_inputs(stage, [("data/", "extra.txt", b"a"), ("extra.txt", "extra.txt", b"b")])
    with pytest.raises(PipelineError, match="^stage 'train-2': inputs: 'data/' stages prev/0/x, but prev/ holds"):
        plan.plan_inputs(stage, [("data/", "prev/0/x", b"a")])
    with pytest.raises(PipelineError, match=r"^the previous stage's shard 0 has an output '\.\./x' that must be"):
        plan.plan_inputs(stage, [], {0: {"../x": b"a"}})


def test_requirements_by_keyword_with_cpu_memory_and_disk_defaulting_as_the_sdk_does():
    stage = parse_pipeline(FILE).stages[0]
    fields = plan.requirements_fields(stage, 1_000)
    assert fields == {
        "min_vram_mib": 0,
        "gpu_count": 0,
        "max_price": 100,
        "max_gpu_seconds": 120,
        "deadline": 1_000,
        "shard_count": 4,
        "replication": 1,
        "verification": Verification.OPTIMISTIC,
        "cpu_cores": 1,
        "memory_mib": 1024,
        "disk_mib": 1024,
    }
    Requirements(**fields)  # what the market takes
    replicated = stage_with(replication=3)
    assert plan.requirements_fields(replicated, 1)["verification"] == Verification.REPLICATED
    assert plan.requirements_fields(stage_with(spot_check=True), 1)["verification"] == Verification.SPOT_CHECK
    with pytest.raises(PipelineError, match="cpu_cores: must be an integer of at least 1, not 0"):
        parse_pipeline(FILE.replace("cpu_cores = 1", "cpu_cores = 0"))


# ---------------------------------------------------------------- resume


MARKET = "0x" + "12" * 20


def test_the_next_step_follows_the_state_from_start_to_done():
    pipeline = parse_pipeline(FILE)
    state = plan.new_state(pipeline, 31337, MARKET)
    assert plan.next_step(pipeline, state) == Step("post", 0)
    state = plan.record_posting(state, 0, "train-1", "0xaa", 7)
    assert plan.next_step(pipeline, state) == Step("post", 0, pending=state["stages"][0])
    state = plan.record_posted(state, 0, 3, 100.0)
    assert plan.next_step(pipeline, state) == Step("follow", 0, 3)
    outputs = {0: {"replica": 0, "asset": 1, "root": "0x01", "files": {"out/n.txt": "ab"}}}
    state = plan.record_fetched(state, 0, outputs, 160.0)
    assert state["stages"][0]["outputs"] == {"0": outputs[0]} and state["stages"][0]["finished_at"] == 160.0
    assert plan.next_step(pipeline, state) == Step("post", 1)
    state = plan.record_fetched(
        plan.record_posted(plan.record_posting(state, 1, "train-2", "0xbb", 9), 1, 4, 1), 1, {}, 2
    )
    assert plan.next_step(pipeline, state) == Step("done")
    plan.check_state(state, pipeline, 31337, MARKET.upper().replace("0X", "0x"))


def test_a_state_of_another_pipeline_chain_or_order_is_refused():
    pipeline = parse_pipeline(FILE)
    state = plan.record_posting(plan.new_state(pipeline, 31337, MARKET), 0, "train-1", "0xaa", 7)
    with pytest.raises(PipelineError, match="^the state file is pipeline 'digits''s, not 'other''s"):
        plan.check_state(state, plan.Pipeline("other", pipeline.stages), 31337, MARKET)
    with pytest.raises(PipelineError, match="^the state file is for market 0x1212"):
        plan.check_state(state, pipeline, 1, MARKET)
    swapped = plan.Pipeline("digits", pipeline.stages[::-1])
    with pytest.raises(PipelineError, match=r"^the state file records stages \['train-1'\], which do not begin"):
        plan.check_state(state, swapped, 31337, MARKET)
    with pytest.raises(PipelineError, match="^the state file's version is 9"):
        plan.check_state({**state, "version": 9}, pipeline, 31337, MARKET)


def test_a_stage_changed_after_its_job_was_posted_is_not_resumed():
    stage = parse_pipeline(FILE).stages[0]
    record = {"name": "train-1", "manifest": "0xaa", "job": 3}
    plan.check_manifest(record, stage, "0xaa")
    with pytest.raises(PipelineError, match=r"^stage 'train-1' changed since job 3 was posted \(manifest 0xaa then"):
        plan.check_manifest(record, stage, "0xbb")


def test_a_post_sent_before_a_stop_is_found_by_its_event():
    def posted(job, client, manifest):
        return SimpleNamespace(name="JobPosted", job=job, client=client, manifest_hash=manifest)

    me, other = "0x" + "aa" * 20, "0x" + "bb" * 20
    events = [
        posted(4, other, b"\x01" * 32),
        posted(5, me.upper().replace("0X", "0x"), b"\x02" * 32),
        posted(6, me, b"\x01" * 32),
        SimpleNamespace(name="ShardAssigned", job=6),
    ]
    assert plan.posted_job(events, me, b"\x01" * 32) == 6
    assert plan.posted_job(events, me, b"\x02" * 32) == 5
    assert plan.posted_job(events, me, b"\x03" * 32) is None


# ---------------------------------------------------------------- progress and pay


def shard(index, *states):
    replicas = tuple(Replica(1, index, r, 0, 0, s, 0, 0, 0, 0, 0) for r, s in enumerate(states))
    return Shard(1, index, replicas)


def test_progress_counts_finalized_shards_and_names_failed_and_overdue_ones():
    pipeline = parse_pipeline(FILE)
    S = ReplicaState
    shards = [shard(0, S.FINALIZED), shard(1, S.SUBMITTED), shard(2, S.ASSIGNED), shard(3, S.OPEN)]
    prog = plan.progress(shards, deadline=100, now=50)
    assert (prog.done, prog.total, prog.failed, prog.overdue, prog.finished) == (1, 4, (), (), False)
    assert plan.progress_line(0, pipeline, 3, prog, 12.4) == (
        "stage 1/2 train-1: job 3, 1/4 shards done, 1 open, 1 running, 1 in the challenge window, 12 s"
    )
    assert plan.failure(0, pipeline, 3, prog) is None

    late = plan.progress(shards, deadline=100, now=101)
    assert late.overdue == (2, 3)
    assert plan.failure(0, pipeline, 3, late).startswith(
        "stage 'train-1': job 3 passed its deadline with shard(s) 2, 3 unfinished"
    )
    failed = plan.progress([shard(0, S.CANCELLED), shard(1, S.CANCELLED), shard(2, S.FINALIZED)], 100, 50, {1})
    assert failed.failed == ((0, "cancelled"), (1, "failed (declined by every asset it was given to)"))
    assert plan.failure(0, pipeline, 3, failed).startswith(
        "stage 'train-1': job 3 shard 0 cancelled (and 1 more); the pipeline stops"
    )
    assert plan.progress([shard(0, S.FINALIZED, S.FINALIZED)], 100, 500).finished


def test_payments_and_the_summary_come_from_the_chains_events():
    def event(name, **args):
        return SimpleNamespace(name=name, **args)

    alice, bob = "0x" + "a1" * 20, "0x" + "b0" * 20
    events = [
        event("ResultSubmitted", job=3, shard=0, replica=0, gpu_seconds=7),
        event("ResultSubmitted", job=3, shard=1, replica=0, gpu_seconds=9),
        event("ResultSubmitted", job=2, shard=0, replica=0, gpu_seconds=99),
        event("ShardFinalized", job=3, shard=0, replica=0, asset=1, provider=alice, payment=56_000),
        event("ShardFinalized", job=3, shard=1, replica=0, asset=2, provider=bob, payment=90_000),
        event("ShardFinalized", job=2, shard=0, replica=0, asset=2, provider=bob, payment=1),
    ]
    paid = plan.payments(events, 3)
    assert paid == [plan.Paid(0, 0, 1, alice, 7, 56_000), plan.Paid(1, 0, 2, bob, 9, 90_000)]

    pipeline = parse_pipeline(FILE)
    state = {"stages": [{"name": "train-1", "job": 3, "posted_at": 10.0, "finished_at": 75.0}]}
    assert plan.summary(pipeline, state, {"train-1": paid}) == [
        "pipeline digits: 2 stage(s) done",
        "  train-1: job 3, 4 shard(s), 65 s, 16 GPU-seconds paid 0.146",
        f"    {alice} (asset 1): 1 replica(s), 7 GPU-seconds, 0.056",
        f"    {bob} (asset 2): 1 replica(s), 9 GPU-seconds, 0.09",
    ]
