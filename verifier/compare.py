"""How two results of one job compare, per the job manifest's `verification` section.

A result is its committed files, leaf -> content (verifier/commitment.py: `out/<path>` and
`log/container.log`). Everything here is pure: no chain, no Docker, no network.

    compare "exact" (the default)  the results agree when every leaf is byte for byte the
                                   same, the log included: exactly when their Merkle roots
                                   are equal.
    compare "numeric"              each file listed in `verification.numeric` (out/<path>) is
                                   read as a NumPy `.npy` array in both results; they agree
                                   when dtypes and shapes are equal and
                                   |a - b| <= atol + rtol × |b| holds elementwise (NumPy's
                                   `allclose`; NaN agrees with NaN at the same place). Every
                                   other out/ file must be byte for byte equal, and a file
                                   present in one result only is a difference. The log leaf
                                   is ignored (timings, addresses and warnings differ from
                                   run to run).

Arrays are read with NumPy (`numpy.load`, no pickles), so their dtypes are NumPy's: bool,
integers, float16/32/64 and complex. NumPy has no bfloat16; a job with bfloat16 outputs
writes them upcast to float32 (exact for every bfloat16 value) for numeric comparison.

What to expect from real runs, measured on an NVIDIA H200: the same model run in separate
processes gave bit-identical fp32 and bf16 outputs, but turning on PyTorch's deterministic
mode (`torch.use_deterministic_algorithms(True)`, CUBLAS_WORKSPACE_CONFIG) changed the bits.
So a manifest must pin the mode it runs with (in its env or command), and a job that may run
on different GPU models must not expect exact equality: it declares `numeric` with
tolerances, or runs on one model only.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from computenet.manifest import NumericOutput, ResultVerification
from verifier.commitment import LOG_LEAF, OUTPUT_PREFIX

Files = Mapping[str, bytes]


@dataclass(frozen=True)
class Comparison:
    """Whether two results agree under a manifest's comparator, and each difference found."""

    agree: bool
    differences: tuple[str, ...] = ()


def compare(rules: ResultVerification, a: Files, b: Files) -> Comparison:
    """Compares result `a` with result `b` (leaf -> content) under `rules`, the manifest's
    verification section. Differences name the leaf and what differs."""
    if rules.compare == "exact":
        return _exact(a, b)
    numeric = {OUTPUT_PREFIX + item.path: item for item in rules.numeric}
    differences: list[str] = []
    for path in sorted((a.keys() | b.keys()) - {LOG_LEAF}):
        if path not in a or path not in b:
            differences.append(f"{path} is only in the {'first' if path in a else 'second'} result")
        elif path in numeric:
            differences += _arrays(path, numeric[path], a[path], b[path])
        elif a[path] != b[path]:
            differences.append(f"{path} differs (compared exactly)")
    return Comparison(not differences, tuple(differences))


def agrees(rules: ResultVerification, a: Files, b: Files) -> bool:
    return compare(rules, a, b).agree


def _exact(a: Files, b: Files) -> Comparison:
    differences = []
    for path in sorted(a.keys() | b.keys()):
        if path not in a or path not in b:
            differences.append(f"{path} is only in the {'first' if path in a else 'second'} result")
        elif a[path] != b[path]:
            differences.append(f"{path} differs (compared exactly)")
    return Comparison(not differences, tuple(differences))


def tolerance(value: str) -> float:
    """A manifest tolerance (a decimal string) as the float NumPy compares with."""
    return float(Decimal(value))


_NUMERIC_KINDS = "biufc"  # bool, signed and unsigned integers, floats, complex


def load_array(data: bytes) -> np.ndarray:
    """A `.npy` file's array; ValueError when it is not one or holds no numbers."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:  # numpy raises ValueError, OSError, EOFError … for what is not .npy
        raise ValueError(f"not a .npy array ({error})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"not an array of numbers (dtype {getattr(array, 'dtype', type(array).__name__)})")
    return array


def _arrays(path: str, item: NumericOutput, a: bytes, b: bytes) -> list[str]:
    try:
        x = load_array(a)
    except ValueError as error:
        return [f"{path} of the first result is {error}"]
    try:
        y = load_array(b)
    except ValueError as error:
        return [f"{path} of the second result is {error}"]
    if x.dtype != y.dtype:
        return [f"{path} dtypes differ: {x.dtype} and {y.dtype}"]
    if x.shape != y.shape:
        return [f"{path} shapes differ: {x.shape} and {y.shape}"]
    rtol, atol = tolerance(item.rtol), tolerance(item.atol)
    if x.dtype.kind == "b":
        close = np.array_equal(x, y)
    else:
        close = bool(np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True))
    if close:
        return []
    diff = np.abs(
        x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)
        - y.astype(np.complex128 if y.dtype.kind == "c" else np.float64)
    )
    finite = diff[~np.isnan(diff)]
    if np.isnan(x).any() or np.isnan(y).any():
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            return [f"{path} has NaN where the other result has a number"]
    worst = float(np.abs(finite).max()) if finite.size else 0.0
    return [f"{path} differs beyond rtol {item.rtol}, atol {item.atol} (largest difference {worst:.6g})"]
