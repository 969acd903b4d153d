"""Sharded batch inference with the model training produced.

The model is the average of the last training round's shard models, staged at
/in/prev/<shard>/out/model.npz (the same outer step the next round would take). Shard s of n
classifies held-out digits s, s+n, s+2n, ... of the fixed split (mlcore.digits) and writes

    predictions.json  for each of its digits: its index in scikit-learn's data set, the true
                      label and the predicted one
    counts.json       correct and total for this shard, the device, the model's SHA-256

The job's accuracy is the sum of the shards' correct over the sum of their totals.
"""

import hashlib

import mlcore  # staged beside this script

index, count = mlcore.shard()
dev = mlcore.device()
paths = mlcore.previous("model.npz")
assert paths, "no model under /in/prev/<shard>/out/model.npz"
model = mlcore.average([mlcore.load_npz(p) for p in paths])
_, _, _, x_held, y_held, held = mlcore.digits()
x_mine, y_mine, ids = x_held[index::count], y_held[index::count], held[index::count]
predicted = mlcore.predict(dev, model, x_mine)
correct = int((predicted == y_mine).sum())
mlcore.write_json(
    mlcore.OUT / "predictions.json",
    {
        "shard": index,
        "of": count,
        "digits": [{"index": int(i), "label": int(t), "predicted": int(p)} for i, t, p in zip(ids, y_mine, predicted)],
    },
)
models = hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()
mlcore.write_json(
    mlcore.OUT / "counts.json",
    {
        "shard": index,
        "of": count,
        "device": dev.name,
        "correct": correct,
        "total": len(y_mine),
        "models_sha256": models,
    },
)
print(f"shard {index}/{count} on {dev.name}: {correct}/{len(y_mine)} correct, averaged {len(paths)} models")
