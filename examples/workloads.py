"""The example workloads as (command, env, input files), ready for
`computenet.manifest.build_manifest`; tests, benchmarks and the demo use them.

    hashing(files=8)            examples/hashing/hash_shard.py over generated files
    batch_inference(records=..) examples/batch_inference/infer.py, a small perceptron
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
