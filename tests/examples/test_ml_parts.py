"""The ML workloads' parts that need no container (examples/ml/mlcore.py, the corpus and
input staging in examples/workloads.py, `python -m examples.ml inputs`)."""

import json

import numpy as np

from examples import workloads
from examples.ml import __main__ as ml_cli
from examples.ml import mlcore


def test_portable_exp_and_log_are_within_a_few_ulp_of_numpys():
    x = np.linspace(-700, 700, 200_001)
    assert np.max(np.abs(mlcore.exp(x) - np.exp(x)) / np.spacing(np.exp(x))) <= 2
    y = np.exp(np.linspace(-690, 690, 200_001))
    assert np.max(np.abs(mlcore.log(y) - np.log(y)) / np.spacing(np.abs(np.log(y)) + 1e-300)) <= 4
    assert mlcore.exp(np.array([0.0]))[0] == 1.0 and mlcore.log(np.array([1.0]))[0] == 0.0


def test_npz_files_are_the_same_bytes_each_time_and_renamed_into_place(tmp_path):
    arrays = {"w": np.arange(6.0).reshape(2, 3), "order": np.array([2, 0, 1])}
    mlcore.save_npz(tmp_path / "a", arrays)
    mlcore.save_npz(tmp_path / "b", dict(reversed(arrays.items())))
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no .a.tmp left
    loaded = mlcore.load_npz(tmp_path / "a")
    assert loaded.keys() == arrays.keys() and all(np.array_equal(loaded[k], arrays[k]) for k in arrays)


def test_the_average_of_models_is_their_elementwise_mean():
    models = [{"w": np.full((2, 2), v), "b": np.array([v])} for v in (1.0, 2.0, 6.0)]
    assert mlcore.average(models)["w"].tolist() == [[3.0, 3.0], [3.0, 3.0]]
    assert mlcore.average(models)["b"].tolist() == [3.0]


def test_the_corpus_is_the_same_every_time_with_the_planted_copies():
    data, planted = workloads.corpus(200, near=5, exact=3, seed=9)
    assert workloads.corpus(200, near=5, exact=3, seed=9) == (data, planted)
    texts = {d["id"]: d["text"].split() for d in map(json.loads, data.decode().splitlines())}
    assert len(texts) == 208 and len(planted) == 8
    for n, (source, copy) in enumerate(planted):
        changed = sum(a != b for a, b in zip(texts[source], texts[copy]))
        assert len(texts[source]) == len(texts[copy]) and changed <= (2 if n < 5 else 0)
    assert sum(texts[s] != texts[c] for s, c in planted[:5]) >= 4  # a replacement may draw the same word


def test_a_stage_sees_the_previous_stages_shards_as_prev_shard_out_file(tmp_path):
    command, env, files = workloads.ml_infer([{"model.npz": b"0"}, {"model.npz": b"1"}])
    assert command == ["python3", "/in/infer.py"] and env["OPENBLAS_NUM_THREADS"] == "1"
    assert sorted(files) == ["infer.py", "mlcore.py", "prev/0/out/model.npz", "prev/1/out/model.npz"]

    fetched = tmp_path / "fetched"  # as `ape run job outputs JOB SHARD --to fetched/SHARD` writes them
    for shard in (1, 0):
        (fetched / str(shard) / "out").mkdir(parents=True)
        (fetched / str(shard) / "out" / "model.npz").write_bytes(b"m%d" % shard)
        (fetched / str(shard) / "log").mkdir()
        (fetched / str(shard) / "log" / "container.log").write_bytes(b"log")
    assert ml_cli.previous_outputs(fetched) == [{"model.npz": b"m0"}, {"model.npz": b"m1"}]
    ml_cli.main(["inputs", "infer", str(tmp_path / "job"), "--prev", str(fetched), "--image", "computenet/ml@sha256:x"])
    assert (tmp_path / "job" / "prev" / "1" / "out" / "model.npz").read_bytes() == b"m1"
    assert (tmp_path / "job" / "infer.py").read_bytes() == (workloads.ML / "infer.py").read_bytes()
