"""Comparators (verifier.compare): exact by default; numeric within each listed file's
tolerances, every other output file exact, the log ignored."""

import io

import numpy as np
import pytest

from computenet.manifest import ResultVerification
from verifier.compare import compare, load_array, tolerance

LOG = "log/container.log"


def npy(array) -> bytes:
    out = io.BytesIO()
    np.save(out, np.asarray(array), allow_pickle=False)
    return out.getvalue()


def numeric(*items) -> ResultVerification:
    return ResultVerification(compare="numeric", numeric=[dict(path=p, rtol=r, atol=a) for p, r, a in items])


LOGITS = np.linspace(-3, 3, 64, dtype=np.float32).reshape(8, 8)
BASE = {"out/logits.npy": npy(LOGITS), "out/labels.txt": b"cat\ndog\n", LOG: b"step 1 took 0.31 s\n"}
RULES = numeric(("logits.npy", "0.001", "0.00001"))


def test_exact_is_the_default_and_includes_the_log():
    rules = ResultVerification()
    assert rules.compare == "exact"
    assert compare(rules, BASE, dict(BASE)).agree
    other_log = {**BASE, LOG: b"step 1 took 0.29 s\n"}
    result = compare(rules, BASE, other_log)
    assert not result.agree and result.differences == (f"{LOG} differs (compared exactly)",)
    nudged = {**BASE, "out/logits.npy": npy(LOGITS * np.float32(1.0000001))}
    assert not compare(rules, BASE, nudged).agree


def test_numeric_agrees_within_tolerance_and_ignores_the_log():
    within = {**BASE, "out/logits.npy": npy(LOGITS * np.float32(1.0005)), LOG: b"another run\n"}
    assert compare(RULES, BASE, within).agree
    assert compare(RULES, within, BASE).agree


def test_numeric_differs_beyond_tolerance():
    beyond = {**BASE, "out/logits.npy": npy(LOGITS * np.float32(1.01))}
    result = compare(RULES, BASE, beyond)
    assert not result.agree
    (difference,) = result.differences
    assert difference.startswith("out/logits.npy differs beyond rtol 0.001, atol 0.00001 (largest difference 0.03")


def test_atol_alone_covers_values_near_zero():
    rules = numeric(("x.npy", "0", "0.01"))
    a, b = {"out/x.npy": npy(np.array([0.0, 1.0]))}, {"out/x.npy": npy(np.array([0.009, 1.009]))}
    assert compare(rules, a, b).agree
    assert not compare(rules, a, {"out/x.npy": npy(np.array([0.0, 1.011]))}).agree


def test_nan_agrees_only_with_nan_in_the_same_place():
    rules = numeric(("x.npy", "0.1", "0"))
    a = {"out/x.npy": npy(np.array([np.nan, 1.0]))}
    assert compare(rules, a, {"out/x.npy": npy(np.array([np.nan, 1.0]))}).agree
    assert compare(rules, a, {"out/x.npy": npy(np.array([1.0, np.nan]))}).differences == (
        "out/x.npy has NaN where the other result has a number",
    )


@pytest.mark.parametrize(
    "other, expected",
    [
        (LOGITS.astype(np.float64), "out/logits.npy dtypes differ: float32 and float64"),
        (LOGITS.reshape(4, 16), "out/logits.npy shapes differ: (8, 8) and (4, 16)"),
        (LOGITS.reshape(64), "out/logits.npy shapes differ: (8, 8) and (64,)"),
    ],
)
def test_numeric_shape_and_dtype_must_be_equal(other, expected):
    result = compare(RULES, BASE, {**BASE, "out/logits.npy": npy(other)})
    assert (result.agree, result.differences) == (False, (expected,))


def test_numeric_other_files_are_compared_exactly():
    result = compare(RULES, BASE, {**BASE, "out/labels.txt": b"cat\ncat\n"})
    assert (result.agree, result.differences) == (False, ("out/labels.txt differs (compared exactly)",))


def test_a_file_in_one_result_only_is_a_difference():
    extra = {**BASE, "out/extra.bin": b"\x00"}
    assert compare(RULES, BASE, extra).differences == ("out/extra.bin is only in the second result",)
    missing = {k: v for k, v in BASE.items() if k != "out/logits.npy"}
    assert compare(RULES, BASE, missing).differences == ("out/logits.npy is only in the first result",)
    # The log is ignored even when one result lacks it.
    assert compare(RULES, BASE, {k: v for k, v in BASE.items() if k != LOG}).agree


def test_a_listed_file_that_is_not_an_array_is_a_difference():
    result = compare(RULES, BASE, {**BASE, "out/logits.npy": b"not numpy"})
    assert not result.agree
    assert result.differences[0].startswith("out/logits.npy of the second result is not a .npy array")
    strings = {**BASE, "out/logits.npy": npy(np.array(["a", "b"]))}
    assert "not an array of numbers" in compare(RULES, strings, BASE).differences[0]


def test_integer_and_bool_arrays():
    rules = numeric(("counts.npy", "0", "1"), ("mask.npy", "0.5", "0.5"))
    a = {"out/counts.npy": npy(np.array([10, 20], dtype=np.int64)), "out/mask.npy": npy(np.array([True, False]))}
    b = {"out/counts.npy": npy(np.array([11, 19], dtype=np.int64)), "out/mask.npy": npy(np.array([True, False]))}
    assert compare(rules, a, b).agree
    flipped = {**b, "out/mask.npy": npy(np.array([False, False]))}
    assert not compare(rules, a, flipped).agree  # booleans compare exactly, whatever the tolerance


def test_tolerances_are_read_from_their_decimal_strings():
    assert tolerance("0.00001") == 1e-5
    assert tolerance("0") == 0.0
    assert load_array(npy(LOGITS)).dtype == np.float32
