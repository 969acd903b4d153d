"""One DiLoCo-style round of data-parallel training of a digits classifier (softmax regression).

Shard s of n trains on its part of the training set (examples s, s+n, s+2n, ... of the fixed
split, mlcore.digits) for STEPS minibatch SGD steps, starting from the average of the
previous round's shard models (/in/prev/<shard>/out/model.npz, staged by the pipeline) or, in
the first round, from weights drawn from SEED. The outer step is that average (DiLoCo's
outer optimiser with learning rate 1 and no momentum). Writes:

    model.npz     the shard's local model (w: 64x10, b: 10), float64, the same bytes every run
    metrics.json  round, shard, device, steps, loss before and after, held-out accuracy of
                  the model the round started from and of this shard's model

Checkpoints (when the runtime sets COMPUTENET_CHECKPOINT_DIR): every CHECKPOINT_EVERY steps
the whole state (step, weights, RNG state, the epoch's data order and position) is written as
one file, <dir>/checkpoint, atomically (.checkpoint.tmp, then rename). At start, if
$COMPUTENET_RESUME_DIR/checkpoint exists, training continues from it: the outputs and the
log are the bytes an uninterrupted run writes (the steps it resumed at are kept in its later
checkpoints only).

Environment: STEPS (100), BATCH (32), LR (0.5), SEED (1), CHECKPOINT_EVERY (10),
STEP_SECONDS (0: a pause after each step, to make a shard long enough to stop mid-way in a
demo; it changes no output).
"""

import json
import os
import time
from pathlib import Path

import mlcore  # staged beside this script
import numpy as np

index, count = mlcore.shard()
steps = mlcore.env_int("STEPS", 100)
batch = mlcore.env_int("BATCH", 32)
lr = mlcore.env_float("LR", 0.5)
seed = mlcore.env_int("SEED", 1)
every = mlcore.env_int("CHECKPOINT_EVERY", 10)
pause = mlcore.env_float("STEP_SECONDS", 0)
checkpoint_dir = os.environ.get("COMPUTENET_CHECKPOINT_DIR")
resume_dir = os.environ.get("COMPUTENET_RESUME_DIR")

dev = mlcore.device()
x_train, y_train, _, x_held, y_held, _ = mlcore.digits()
x_mine, y_mine = x_train[index::count], y_train[index::count]
onehot = np.eye(mlcore.CLASSES)[y_mine]

previous = mlcore.previous("metrics.json")
if previous:
    rounds = {json.loads(p.read_text())["round"] for p in previous}
    assert len(rounds) == 1, f"the previous shards ran different rounds: {sorted(rounds)}"
    round_ = rounds.pop() + 1
    start = mlcore.average([mlcore.load_npz(p) for p in mlcore.previous("model.npz")])
else:
    round_ = 0
    start = mlcore.initial_model(seed)

rng = np.random.Generator(np.random.PCG64([seed, round_, index]))
state = {"step": 0, "epoch": 0, "position": 0, "order": rng.permutation(len(y_mine))}
model = {k: v.copy() for k, v in start.items()}
resumed_at: list[int] = []  # the steps this run resumed at: in its checkpoints, never in its outputs or log
resume = Path(resume_dir) / "checkpoint" if resume_dir else None
if resume is not None and resume.is_file():
    saved = mlcore.load_npz(resume)
    meta = json.loads(bytes(saved["meta"]).decode())
    assert (meta["round"], meta["shard"], meta["of"]) == (round_, index, count), f"checkpoint of another run: {meta}"
    model = {"w": saved["w"], "b": saved["b"]}
    rng.bit_generator.state = meta["rng"]
    state = {"step": meta["step"], "epoch": meta["epoch"], "position": meta["position"], "order": saved["order"]}
    resumed_at = [*meta.get("resumed_at", []), state["step"]]


def checkpoint() -> None:
    meta = {
        "round": round_,
        "shard": index,
        "of": count,
        "step": state["step"],
        "epoch": state["epoch"],
        "position": state["position"],
        "rng": rng.bit_generator.state,
        "resumed_at": resumed_at,
    }
    arrays = {"w": model["w"], "b": model["b"], "order": state["order"]}
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    mlcore.save_npz(Path(checkpoint_dir) / "checkpoint", arrays)


def mean_loss(weights: dict) -> float:
    on = {k: dev.array(v) for k, v in weights.items()}
    p = dev.softmax(mlcore.logits(dev, on, dev.array(x_mine)))
    picked = dev.numpy((p * dev.array(onehot)).sum(1))
    return float(-mlcore.log(np.maximum(picked, 1e-300)).mean())


w, b = dev.array(model["w"]), dev.array(model["b"])
x_all, y_all = dev.array(x_mine), dev.array(onehot)
while state["step"] < steps:
    if state["position"] + batch > len(y_mine):  # a new epoch, in a new order
        state.update(epoch=state["epoch"] + 1, position=0, order=rng.permutation(len(y_mine)))
    rows = state["order"][state["position"] : state["position"] + batch]
    xb, yb = dev.index(x_all, rows), dev.index(y_all, rows)
    grad = (dev.softmax(xb @ w + b) - yb) / len(rows)
    w = w - lr * (xb.T @ grad)
    b = b - lr * dev.colsum(grad)
    state["position"] += batch
    state["step"] += 1
    if pause:
        time.sleep(pause)
    if checkpoint_dir and (state["step"] % every == 0 or state["step"] == steps):
        model = {"w": dev.numpy(w), "b": dev.numpy(b)}
        checkpoint()
model = {"w": dev.numpy(w), "b": dev.numpy(b)}

correct_start, total = mlcore.accuracy(dev, start, x_held, y_held)
correct, _ = mlcore.accuracy(dev, model, x_held, y_held)
mlcore.save_npz(mlcore.OUT / "model.npz", model)
metrics = {
    "round": round_,
    "shard": index,
    "of": count,
    "device": dev.name,
    "steps": steps,
    "batch": batch,
    "lr": lr,
    "train_examples": len(y_mine),
    "loss_start": round(mean_loss(start), 6),
    "loss": round(mean_loss(model), 6),
    "held_out": total,
    "held_out_accuracy_start": round(correct_start / total, 6),
    "held_out_accuracy": round(correct / total, 6),
}
mlcore.write_json(mlcore.OUT / "metrics.json", metrics)
print(
    f"round {round_} shard {index}/{count} on {dev.name}: {steps} steps, "
    f"loss {metrics['loss_start']} -> {metrics['loss']}, held-out accuracy "
    f"{metrics['held_out_accuracy_start']} -> {metrics['held_out_accuracy']}"
)
