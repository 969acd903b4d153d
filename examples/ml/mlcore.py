"""What the ML workloads share: the device, the digits split, a softmax-regression model,
arithmetic that gives the same bits on every CPU, and files written the same way every time.

Staged next to each workload's script under /in, so `import mlcore` finds it.

Same inputs, same bytes: the CPU path uses NumPy over the reference BLAS (the ML image's),
one thread, and computes exp and log itself from +, -, *, / (`exp`, `log`), because NumPy
and libm choose their exp per CPU (AVX-512 or not) and may differ in the last bit. A GPU
(PyTorch with CUDA in the image, and a GPU passed through) is used when there is one: its
results are reproducible on the same GPU model and software, not equal to the CPU's, and
every output names the device that made it. Nothing printed depends on time either: the
container's log is part of a result and compared with the other replicas'.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

IN = Path(os.environ.get("INPUT_DIR", "/in"))
OUT = Path(os.environ.get("OUTPUT_DIR", "/out"))
CLASSES = 10
FEATURES = 64
HELD_OUT = 360  # of the 1,797 digits; the other 1,437 are for training
DATA_SEED = 0  # the split's permutation; the same for every job of a pipeline


def shard() -> tuple[int, int]:
    """(this shard's index, the number of shards), from the runtime's environment."""
    return int(os.environ.get("COMPUTENET_SHARD_INDEX", "0")), int(os.environ.get("COMPUTENET_SHARD_COUNT", "1"))


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, str(default)))


# ---------------------------------------------------------------- portable arithmetic
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact (fdlibm)
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = float.fromhex("0x1.71547652b82fep+0")  # 1 / ln 2, written out: no library log at run time
_SQRT_HALF = float.fromhex("0x1.6a09e667f3bcdp-1")  # sqrt(1/2)
_INV_FACT = [1.0 / float(np.prod(np.arange(1, n + 1, dtype=np.float64))) for n in range(14)]


def exp(x: np.ndarray) -> np.ndarray:
    """e**x within 2 ulp for x in [-700, 700], from +, *, rint and ldexp only, so every
    CPU gives the same bits: x = k ln 2 + r with |r| <= ln2/2, e**r by its Taylor series."""
    x = np.clip(x, -700.0, 700.0)
    k = np.rint(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    poly = np.full_like(r, _INV_FACT[13])
    for c in reversed(_INV_FACT[:13]):
        poly = poly * r + c
    return np.ldexp(poly, k.astype(np.int64))


def log(x: np.ndarray) -> np.ndarray:
    """ln x for x > 0 within 3 ulp, from frexp, +, *, / only: x = m 2**e with m in [sqrt(1/2), sqrt(2)),
    ln m = 2 atanh(s), s = (m - 1) / (m + 1), by its series."""
    m, e = np.frexp(np.asarray(x, dtype=np.float64))
    small = m < _SQRT_HALF
    m = np.where(small, m * 2.0, m)
    e = np.where(small, e - 1, e).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    series = np.full_like(s, 1.0 / 25.0)
    for n in range(23, 0, -2):
        series = series * s2 + 1.0 / n
    return 2.0 * s * series + e * _LN2_HI + e * _LN2_LO


# ---------------------------------------------------------------- device
class Cpu:
    """NumPy on one CPU thread, with the portable exp and log."""

    name = "cpu"

    def array(self, a):
        return np.ascontiguousarray(a, dtype=np.float64)

    def numpy(self, a) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    def softmax(self, z):
        e = exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def log(self, a):
        return log(a)

    def colsum(self, a):
        return a.sum(axis=0)

    def argmax(self, a) -> np.ndarray:
        return np.asarray(a.argmax(axis=1))

    def index(self, a, rows: np.ndarray):
        return a[rows]


class Cuda(Cpu):
    """PyTorch on a CUDA device, float64, deterministic algorithms."""

    def __init__(self, torch) -> None:
        self.torch = torch
        self.device = torch.device("cuda:0")
        self.name = f"cuda:{torch.cuda.get_device_name(0)}"
        torch.use_deterministic_algorithms(True)

    def array(self, a):
        return self.torch.as_tensor(np.asarray(a, dtype=np.float64), device=self.device)

    def numpy(self, a) -> np.ndarray:
        return a.detach().cpu().numpy().astype(np.float64)

    def softmax(self, z):
        return self.torch.softmax(z, dim=1)

    def log(self, a):
        return self.torch.log(a)

    def colsum(self, a):
        return a.sum(dim=0)

    def argmax(self, a) -> np.ndarray:
        return a.argmax(dim=1).cpu().numpy()

    def index(self, a, rows: np.ndarray):
        return a[self.torch.as_tensor(rows, device=self.device)]


def device() -> Cpu:
    """A CUDA GPU through PyTorch when the image has it and one is passed through (and
    COMPUTENET_DEVICE is not "cpu"), else the CPU."""
    if os.environ.get("COMPUTENET_DEVICE", "auto") != "cpu":
        try:
            import torch
        except ImportError:
            return Cpu()
        if torch.cuda.is_available():
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            return Cuda(torch)
    return Cpu()


# ---------------------------------------------------------------- data
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits (bundled, nothing downloaded) split by a fixed permutation:
    train features, labels and dataset indices, then the same for the held-out part.
    Pixels 0..16 are scaled to 0..1."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.Generator(np.random.PCG64(DATA_SEED)).permutation(len(y))
    x = x / 16.0
    train, held = order[:-HELD_OUT], order[-HELD_OUT:]
    return x[train], y[train], train, x[held], y[held], held


# ---------------------------------------------------------------- model
def initial_model(seed: int) -> dict[str, np.ndarray]:
    """Small uniform weights from `seed` (uniform: integer arithmetic, no libm)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return {"w": rng.uniform(-0.01, 0.01, (FEATURES, CLASSES)), "b": np.zeros(CLASSES)}


def average(models: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The element-wise mean, summed in the order given."""
    total = {k: np.zeros_like(v) for k, v in models[0].items()}
    for model in models:
        for k in total:
            total[k] = total[k] + model[k]
    return {k: v / len(models) for k, v in total.items()}


def logits(dev: Cpu, model: dict, x):
    return x @ model["w"] + model["b"]


def predict(dev: Cpu, model: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    on = {k: dev.array(v) for k, v in model.items()}
    return dev.argmax(logits(dev, on, dev.array(x)))


def accuracy(dev: Cpu, model: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """(correct, total)."""
    return int((predict(dev, model, x) == y).sum()), len(y)


# ---------------------------------------------------------------- files
def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """`np.savez` without its timestamps: the same arrays give the same bytes. Written
    whole to `.<name>.tmp` and renamed, so a reader never sees part of it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.save(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    write_atomic(path, buffer.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def write_atomic(path: Path, data: bytes) -> None:
    """Writes `.<name>.tmp` beside `path`, flushes it, and renames it to `path`."""
    tmp = path.parent / f".{path.name}.tmp"
    with open(tmp, "wb") as sink:
        sink.write(data)
        sink.flush()
        os.fsync(sink.fileno())
    os.rename(tmp, path)


def write_json(path: Path, value) -> None:
    write_atomic(path, (json.dumps(value, sort_keys=True, indent=1) + "\n").encode())


def previous(name: str) -> list[Path]:
    """/in/prev/<shard>/out/<name> of the previous stage's shards, in shard order."""
    prev = IN / "prev"
    if not prev.is_dir():
        return []
    shards = sorted((p for p in prev.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [p / "out" / name for p in shards if (p / "out" / name).is_file()]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
