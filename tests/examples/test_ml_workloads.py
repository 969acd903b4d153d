"""The ML workloads (examples/ml, docs/ai.md) in real containers of the ML image, confined as
the agent confines a shard: DiLoCo-style training rounds reach the stated accuracy, reruns
give the same bytes, a shard killed after its first checkpoint and resumed from it ends with
the bytes of a run never stopped, inference counts agree with scikit-learn's own predict,
and the map and reduce find the planted duplicates."""

import hashlib
import json
import shutil
import time

import numpy as np
import pytest

from examples import workloads

SHARDS, ROUNDS = 2, 3
ACCURACY = 0.95  # held-out accuracy of the averaged model after ROUNDS rounds (docs/ai.md)

SKLEARN_CHECK = """
import json
from pathlib import Path
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
paths = sorted(Path('/in/prev').glob('*/out/model.npz'), key=lambda p: int(p.parent.parent.name))
models = [np.load(p) for p in paths]
x, y = load_digits(return_X_y=True)
clf = LogisticRegression()
clf.coef_ = (sum(m['w'] for m in models) / len(models)).T
clf.intercept_ = sum(m['b'] for m in models) / len(models)
clf.classes_ = np.arange(10)
Path('/out/sklearn.json').write_text(json.dumps({'label': y.tolist(), 'predicted': clf.predict(x / 16).tolist()}))
"""


def checkpoint_meta(path):
    with np.load(path) as saved:
        return json.loads(bytes(saved["meta"]))


def outputs(shards):
    assert all(s.result.exit_code == 0 for s in shards), [s.log for s in shards]
    return [s.outputs for s in shards]


@pytest.fixture(scope="module")
def trained(run_shards):
    """ROUNDS rounds of SHARDS shards, each from the average of the round before: each
    round's shards (tests/examples/conftest.py: Shard)."""
    rounds, previous = [], None
    for round_ in range(ROUNDS):
        started = time.monotonic()
        shards = run_shards(workloads.ml_train(previous), SHARDS)
        previous = outputs(shards)
        rounds.append(shards)
        metrics = [json.loads(f["metrics.json"]) for f in previous]
        print(f"round {round_}: {time.monotonic() - started:.1f} s, {metrics}")
    return rounds


@pytest.fixture(scope="module")
def training(trained):
    """Each round's outputs, one {file: bytes} per shard."""
    return [outputs(shards) for shards in trained]


def test_rounds_of_two_shards_train_from_one_average_each(training):
    for round_, shards in enumerate(training):
        metrics = [json.loads(files["metrics.json"]) for files in shards]
        assert [(m["round"], m["shard"], m["of"], m["device"]) for m in metrics] == [
            (round_, s, SHARDS, "cpu") for s in range(SHARDS)
        ]
        assert all(sorted(files) == ["metrics.json", "model.npz"] for files in shards)
        assert sum(m["train_examples"] for m in metrics) == 1437
        assert all(m["loss"] < m["loss_start"] for m in metrics)
        assert len({m["held_out_accuracy_start"] for m in metrics}) == 1  # every shard started from one average
    first = [json.loads(f["metrics.json"]) for f in training[0]]
    assert all(m["held_out_accuracy_start"] < 0.2 for m in first)  # seeded weights: about chance
    assert all(json.loads(f["metrics.json"])["held_out_accuracy"] >= 0.85 for f in training[0])


def test_inference_with_the_trained_model_reaches_the_stated_accuracy_and_agrees_with_scikit_learn(
    run_shards, training
):
    shards = outputs(run_shards(workloads.ml_infer(training[-1]), SHARDS))
    counts = [json.loads(files["counts.json"]) for files in shards]
    correct, total = sum(c["correct"] for c in counts), sum(c["total"] for c in counts)
    print(f"inference: {correct}/{total} = {correct / total:.4f}, {counts}")
    assert total == 360 and correct / total >= ACCURACY
    staged = b"".join(files["model.npz"] for files in training[-1])
    assert {c["models_sha256"] for c in counts} == {hashlib.sha256(staged).hexdigest()}

    predictions = [d for files in shards for d in json.loads(files["predictions.json"])["digits"]]
    assert len({d["index"] for d in predictions}) == 360
    for files, count in zip(shards, counts):
        digits = json.loads(files["predictions.json"])["digits"]
        assert count["correct"] == sum(d["label"] == d["predicted"] for d in digits)

    check = (["python3", "-c", SKLEARN_CHECK], workloads.ML_ENV, workloads.staged(training[-1]))
    reference = json.loads(outputs(run_shards(check))[0]["sklearn.json"])
    assert all(reference["predicted"][d["index"]] == d["predicted"] for d in predictions)
    assert all(reference["label"][d["index"]] == d["label"] for d in predictions)


def test_a_round_run_again_writes_the_same_bytes_and_log(run_shards, trained, training):
    again = run_shards(workloads.ml_train(training[-2]), SHARDS)
    assert outputs(again) == training[-1]
    assert [s.result.logs for s in again] == [s.result.logs for s in trained[-1]]  # a log is part of a result


# Every optimisation NumPy 1.24 chooses per CPU at run time: disabled, NumPy runs as on an
# x86-64 CPU with nothing past SSE3.
DISPATCHED = "SSSE3 SSE41 POPCNT SSE42 AVX F16C FMA3 AVX2 AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL"
LIBRARY_EXP = """
import hashlib
from pathlib import Path
import numpy as np
from numpy.core._multiarray_umath import __cpu_features__
x = np.linspace(-30, 5, 100_000)
digest = hashlib.sha256(np.exp(x).tobytes() + np.log(x + 31).tobytes()).hexdigest()
Path('/out/exp.txt').write_text(f"{__cpu_features__['AVX512F']} {digest}")
"""


def test_a_cpu_without_simd_extensions_writes_the_same_bytes(run_shards, trained, training):
    def baseline(workload):
        command, env, files = workload
        return command, env | {"NPY_DISABLE_CPU_FEATURES": DISPATCHED}, files

    # The control: NumPy's own exp and log do change with the CPU (on one with AVX-512).
    exp = (["python3", "-c", LIBRARY_EXP], {}, {})
    native, plain = (outputs(run_shards(w))[0]["exp.txt"].decode().split() for w in (exp, baseline(exp)))
    if native[0] == "True":
        assert native[1] != plain[1]

    again = run_shards(baseline(workloads.ml_train(training[-2])), SHARDS)
    assert outputs(again) == training[-1]
    assert [s.result.logs for s in again] == [s.result.logs for s in trained[-1]]
    mapped = [outputs(run_shards(w, SHARDS)) for w in (workloads.dedup_map(), baseline(workloads.dedup_map()))]
    assert mapped[0] == mapped[1]


def test_a_shard_killed_after_its_first_checkpoint_resumes_to_the_same_bytes(run_shards, tmp_path, wait_for):
    # 20 steps of 0.05 s: long enough to stop after the first checkpoint (step 5).
    slow = workloads.ml_train(steps=20, checkpoint_every=5, step_seconds="0.05")

    def kill_at_first_checkpoint(started):
        for _spec, container, kept in started:
            wait_for(lambda: (kept / "checkpoint").is_file(), 60, "the first checkpoint", 0.02)
            container.kill()

    killed = run_shards(slow, SHARDS, checkpoints=True, on_start=kill_at_first_checkpoint)
    assert [s.result.exit_code for s in killed] == [137] * SHARDS
    assert all("model.npz" not in s.outputs for s in killed)
    for shard in killed:  # one file, renamed into place: no temporary left beside it
        assert sorted(p.name for p in shard.checkpoints.iterdir()) == ["checkpoint"]

    resume = []  # each shard's checkpoint folder, copied as a resumed lease gets it
    for n, shard in enumerate(killed):
        resume.append(shutil.copytree(shard.checkpoints, tmp_path / f"resume-{n}"))
    resumed = run_shards(slow, SHARDS, checkpoints=True, resume=resume)
    never_stopped = run_shards(slow, SHARDS)
    assert outputs(resumed) == outputs(never_stopped)
    assert [s.result.logs for s in resumed] == [s.result.logs for s in never_stopped]
    for stopped, shard in zip(killed, resumed):
        stopped_at = checkpoint_meta(stopped.checkpoints / "checkpoint")["step"]
        last = checkpoint_meta(shard.checkpoints / "checkpoint")
        assert 5 <= stopped_at < 20 and last["resumed_at"] == [stopped_at] and last["step"] == 20
    assert all(not list(s.checkpoints.glob(".*")) for s in resumed)  # no .checkpoint.tmp left


def test_map_and_reduce_find_the_planted_duplicates(run_shards):
    documents, near, exact = 2000, 30, 10
    _, planted = workloads.corpus(documents, near, exact)
    mapped = outputs(run_shards(workloads.dedup_map(documents, near, exact), SHARDS))
    assert outputs(run_shards(workloads.dedup_map(documents, near, exact), SHARDS)) == mapped
    report = json.loads(outputs(run_shards(workloads.dedup_reduce(mapped)))[0]["duplicates.json"])
    print({k: v for k, v in report.items() if k != "clusters"})
    assert report["documents"] == documents + near + exact
    assert report["unique"] == documents
    assert sorted(tuple(c["ids"]) for c in report["clusters"]) == sorted(tuple(sorted(p)) for p in planted)
    exact_pairs = {tuple(sorted(p)) for p in planted[near:]}
    assert {tuple(c["ids"]) for c in report["clusters"] if c["exact"]} == exact_pairs
    assert all(c["similarity"] == 1.0 for c in report["clusters"] if c["exact"])
