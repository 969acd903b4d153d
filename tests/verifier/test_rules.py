"""The metering rule (verifier.rules): a claim is allowed up to the measured seconds plus
the manifest's tolerance, rounded up, plus a fixed slack per GPU for whole-second rounding."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computenet.manifest import ResultVerification
from computenet.merkle import MerkleTree
from computenet.meter import WALL_CLOCK
from verifier.reexecute import Reexecution
from verifier.rules import METERING_SLACK_SECONDS, allowed_claim, check_metering, judge, wall_clock


@pytest.mark.parametrize(
    "measured, gpus, tolerance_bps, allowed",
    [
        (100, 1, 5_000, 150 + 2),
        (100, 4, 5_000, 150 + 8),
        (100, 0, 5_000, 150 + 2),  # a CPU job: seconds, one "GPU" of slack
        (100, 1, 0, 100 + 2),
        (10.2, 1, 5_000, 16 + 2),  # 15.3 rounds up
        (0, 1, 5_000, 2),
        (100, 1, 100_000, 1_100 + 2),
    ],
)
def test_allowed_claim(measured, gpus, tolerance_bps, allowed):
    assert allowed_claim(measured, gpus, tolerance_bps) == allowed


def test_a_claim_above_the_allowance_is_refused_and_one_at_it_is_not():
    assert check_metering(152, 100, 1, 5_000).ok
    over = check_metering(153, 100, 1, 5_000)
    assert (over.ok, over.claimed, over.allowed) == (False, 153, 152)
    assert over.reason == "its metering claim 153 exceeds the 152 a re-execution allows"


@given(st.floats(0, 1e6), st.integers(0, 8), st.integers(0, 100_000))
def test_the_allowance_never_falls_below_the_measurement_plus_slack(measured, gpus, tolerance_bps):
    allowed = allowed_claim(measured, gpus, tolerance_bps)
    assert allowed >= measured + METERING_SLACK_SECONDS * max(1, gpus)
    assert allowed <= measured * (1 + tolerance_bps / 10_000) + 1 + METERING_SLACK_SECONDS * max(1, gpus)


def test_wall_clock_metering_is_what_a_reexecution_carries_until_a_meter_is_wired_in():
    run = Reexecution(root=b"\x00" * 32, files={}, seconds=2.3)
    assert run.metering == wall_clock(2.3)
    assert (run.metering.meter, run.metering.wall_ms) == (WALL_CLOCK, 2_300)
    assert (run.metering.seconds(0), run.metering.seconds(1), run.metering.seconds(4)) == (3, 3, 10)
    assert Reexecution(root=b"\x00" * 32, files={}, seconds=0.01).metering.seconds(0) == 1  # never below 1
    with pytest.raises(ValueError):
        allowed_claim(-1, 1, 0)


# ---------------------------------------------------------------- judge: a verifier's verdict on one replica

RULES_EXACT = ResultVerification()
RULES_NUMERIC = ResultVerification(compare="numeric", numeric=[{"path": "x.npy", "rtol": "0.01", "atol": "0"}])


def _npy(values) -> bytes:
    import io

    import numpy as np

    out = io.BytesIO()
    np.save(out, np.asarray(values, dtype=np.float32))
    return out.getvalue()


RUN = {"out/x.npy": _npy([1.0, 2.0]), "log/container.log": b"run A\n"}
CLOSE = {"out/x.npy": _npy([1.001, 2.001]), "log/container.log": b"run B\n"}
FAR = {"out/x.npy": _npy([1.5, 2.0]), "log/container.log": b"run A\n"}


def _root(files):
    return MerkleTree.from_files(files).root


def test_an_equal_root_within_the_allowance_is_not_challenged():
    verdict = judge(RULES_EXACT, _root(RUN), RUN, 10, _root(RUN), None, claimed=17, gpu_count=1)
    assert (verdict.agree, verdict.metering.ok, verdict.challenge, verdict.reasons) == (True, True, False, ())


def test_an_exact_job_with_another_root_is_challenged():
    verdict = judge(RULES_EXACT, _root(RUN), RUN, 10, _root(CLOSE), None, claimed=1, gpu_count=1)
    assert verdict.challenge and verdict.reasons == (
        f"root 0x{_root(CLOSE).hex()} is not the re-execution's 0x{_root(RUN).hex()}",
    )


def test_a_numeric_job_is_judged_on_the_replicas_files():
    close = judge(RULES_NUMERIC, _root(RUN), RUN, 10, _root(CLOSE), CLOSE, claimed=1, gpu_count=1)
    assert (close.agree, close.challenge) == (True, False)  # other bytes, other log: within tolerance
    far = judge(RULES_NUMERIC, _root(RUN), RUN, 10, _root(FAR), FAR, claimed=1, gpu_count=1)
    assert far.challenge and far.reasons[0].startswith("out/x.npy differs beyond rtol 0.01, atol 0")
    unseen = judge(RULES_NUMERIC, _root(RUN), RUN, 10, _root(CLOSE), None, claimed=1, gpu_count=1)
    assert unseen.challenge and unseen.reasons[0].endswith("and the replica's files could not be had")


def test_a_right_result_with_an_inflated_claim_is_challenged():
    verdict = judge(RULES_EXACT, _root(RUN), RUN, 10, _root(RUN), None, claimed=18, gpu_count=1)
    assert (verdict.agree, verdict.metering.ok, verdict.challenge) == (True, False, True)
    assert verdict.reasons == ("its metering claim 18 exceeds the 17 a re-execution allows",)


# ---------------------------------------------------------------- metering outliers


@pytest.mark.parametrize(
    "claimed, peers, outlier",
    [
        (10, [], False),  # nothing to stand out from
        (17, [10, 10, 11], False),  # 10 × 1.5 + 2 = 17: inside the tolerance
        (18, [10, 10, 11], True),
        (45, [10, 45, 11], True),  # one inflated peer does not move the median
        (3, [1, 1], False),  # 1 × 1.5 → 2, + 2 of slack
        (200, [100, 104], True),  # an even count: the mean of the middle two (102 → 153 + 2)
        (155, [100, 104], False),
    ],
)
def test_a_claim_stands_out_beyond_the_tolerance_over_its_peers_median(claimed, peers, outlier):
    from verifier.rules import metering_outlier

    assert metering_outlier(claimed, peers, 0, 5_000) is outlier


def test_gpu_peers_get_slack_per_gpu():
    from verifier.rules import metering_outlier

    assert not metering_outlier(19, [10, 10], 2, 5_000)  # 15 + 2 × 2
    assert metering_outlier(20, [10, 10], 2, 5_000)
