"""The example workloads as (command, env, input files), ready for
`computenet.manifest.build_manifest`; tests, benchmarks and the demo use them.

    hashing(files=8)            examples/hashing/hash_shard.py over generated files
    batch_inference(records=..) examples/batch_inference/infer.py, a small perceptron

For the ML image (`python -m agent image --ml`; docs/ai.md):

    ml_train(previous)          examples/ml/train.py, one DiLoCo-style round on the digits
    ml_infer(previous)          examples/ml/infer.py, batch inference with the trained model
    dedup_map(documents=..)     examples/ml/dedup_map.py, MinHash signatures of a corpus
    dedup_reduce(previous)      examples/ml/dedup_reduce.py, the near-duplicate clusters

`previous` is the previous stage's outputs, one {file name: bytes} per shard, staged as the
pipeline stages them: /in/prev/<shard>/out/<file>.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def hashing(
    files: int = 8, size: int = 4096, rounds: int = 1000, seed: int = 1
) -> tuple[list[str], dict[str, str], dict[str, bytes]]:
    rng = random.Random(seed)
    inputs = {f"data/file-{i:03d}.bin": rng.randbytes(size) for i in range(files)}
    inputs["hash_shard.py"] = (HERE / "hashing" / "hash_shard.py").read_bytes()
    return ["python3", "/in/hash_shard.py"], {"ROUNDS": str(rounds)}, inputs


def batch_inference(
    records: int = 400, features: int = 16, hidden: int = 32, seed: int = 2
) -> tuple[list[str], dict[str, str], dict[str, bytes]]:
    rng = random.Random(seed)
    labels = ["cat", "dog", "bird"]
    model = {
        "w1": [[round(rng.gauss(0, 0.4), 4) for _ in range(features)] for _ in range(hidden)],
        "b1": [round(rng.gauss(0, 0.1), 4) for _ in range(hidden)],
        "w2": [[round(rng.gauss(0, 0.4), 4) for _ in range(hidden)] for _ in labels],
        "b2": [0.0 for _ in labels],
        "labels": labels,
    }
    lines = [
        json.dumps({"id": i, "x": [round(rng.uniform(-1, 1), 4) for _ in range(features)]}) for i in range(records)
    ]
    inputs = {
        "model.json": json.dumps(model).encode(),
        "records.jsonl": ("\n".join(lines) + "\n").encode(),
        "infer.py": (HERE / "batch_inference" / "infer.py").read_bytes(),
    }
    return ["python3", "/in/infer.py"], {}, inputs


ML = HERE / "ml"
# One thread for every BLAS and OpenMP a library might load, so sums run in one order.
ML_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}

Workload = tuple[list[str], dict[str, str], dict[str, bytes]]


def _ml(script: str, env: dict[str, str], files: dict[str, bytes]) -> Workload:
    inputs = {script: (ML / script).read_bytes(), "mlcore.py": (ML / "mlcore.py").read_bytes(), **files}
    return ["python3", f"/in/{script}"], ML_ENV | env, inputs


def staged(previous: list[dict[str, bytes]] | None) -> dict[str, bytes]:
    """The previous stage's shard outputs as input files prev/<shard>/out/<file>."""
    return {
        f"prev/{shard}/out/{name}": data for shard, files in enumerate(previous or []) for name, data in files.items()
    }


def ml_train(
    previous: list[dict[str, bytes]] | None = None,
    steps: int = 100,
    batch: int = 32,
    lr: str = "0.5",
    seed: int = 1,
    checkpoint_every: int = 10,
    step_seconds: str = "0",
) -> Workload:
    """One training round: the first from SEED's weights, a later one from `previous`
    (the last round's model.npz and metrics.json per shard)."""
    env = {
        "STEPS": str(steps),
        "BATCH": str(batch),
        "LR": lr,
        "SEED": str(seed),
        "CHECKPOINT_EVERY": str(checkpoint_every),
        "STEP_SECONDS": step_seconds,
    }
    return _ml("train.py", env, staged(previous))


def ml_infer(previous: list[dict[str, bytes]]) -> Workload:
    """Batch inference over the held-out digits with the average of `previous`'s models."""
    return _ml("infer.py", {}, staged(previous))


def corpus(
    documents: int = 2000, near: int = 30, exact: int = 10, seed: int = 3
) -> tuple[bytes, list[tuple[str, str]]]:
    """A generated corpus (JSON lines {"id", "text"}) of `documents` random texts plus `near`
    near-duplicates (a copy with two words replaced) and `exact` verbatim copies, shuffled;
    and the planted pairs (original id, copy id)."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "tu", "sa", "vor", "el", "pi", "dun", "ax", "be", "co", "ri", "zen", "ul"]
    vocabulary = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(6000)})
    texts = {f"doc-{i:05d}": [rng.choice(vocabulary) for _ in range(rng.randint(60, 120))] for i in range(documents)}
    sources = rng.sample(sorted(texts), near + exact)
    planted = []
    for n, source in enumerate(sources):
        words = list(texts[source])
        if n < near:
            for position in rng.sample(range(len(words)), 2):
                words[position] = rng.choice(vocabulary)
        copy = f"doc-{documents + n:05d}"
        texts[copy] = words
        planted.append((source, copy))
    order = sorted(texts)
    rng.shuffle(order)
    lines = [json.dumps({"id": i, "text": " ".join(texts[i])}) for i in order]
    return ("\n".join(lines) + "\n").encode(), planted


def dedup_map(documents: int = 2000, near: int = 30, exact: int = 10, seed: int = 3) -> Workload:
    """The map over `corpus(documents, near, exact, seed)`."""
    data, _ = corpus(documents, near, exact, seed)
    return _ml("dedup_map.py", {}, {"corpus.jsonl": data})


def dedup_reduce(previous: list[dict[str, bytes]], threshold: str = "0.5") -> Workload:
    """The reduce (one shard) over the map's outputs."""
    return _ml("dedup_reduce.py", {"THRESHOLD": threshold}, staged(previous))
