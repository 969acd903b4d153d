"""Sharded batch inference of a small model over input records, in pure Python.

/in/model.json holds a two-layer perceptron (w1, b1, w2, b2; ReLU hidden layer, softmax
output) and its class labels; /in/records.jsonl one record per line, {"id", "x": [...]}.
Shard i of n scores records i, i+n, i+2n, ... and writes /out/predictions.jsonl with each
record's id, label and probabilities (rounded to 6 places, so replicas agree byte for byte).
"""

import json
import math
import os
from pathlib import Path

index = int(os.environ["COMPUTENET_SHARD_INDEX"])
count = int(os.environ["COMPUTENET_SHARD_COUNT"])
model = json.loads(Path("/in/model.json").read_text())
w1, b1, w2, b2, labels = model["w1"], model["b1"], model["w2"], model["b2"], model["labels"]


def forward(x):
    hidden = [max(0.0, sum(w * v for w, v in zip(row, x)) + b) for row, b in zip(w1, b1)]
    logits = [sum(w * h for w, h in zip(row, hidden)) + b for row, b in zip(w2, b2)]
    top = max(logits)
    exps = [math.exp(z - top) for z in logits]
    total = sum(exps)
    return [e / total for e in exps]


lines = Path("/in/records.jsonl").read_text().splitlines()
out = Path(os.environ.get("OUTPUT_DIR", "/out"))
done = 0
with open(out / "predictions.jsonl", "w") as sink:
    for line in lines[index::count]:
        record = json.loads(line)
        probs = forward(record["x"])
        best = max(range(len(probs)), key=probs.__getitem__)
        sink.write(json.dumps({"id": record["id"], "label": labels[best], "p": [round(p, 6) for p in probs]}) + "\n")
        done += 1
print(f"shard {index}/{count}: scored {done} of {len(lines)} records")
