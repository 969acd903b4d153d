"""The metering rule (verifier.rules): a claim is allowed up to the measured seconds plus
the manifest's tolerance, rounded up, plus a fixed slack per GPU for whole-second rounding."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verifier.reexecute import Reexecution
from computenet.meter import WALL_CLOCK
from verifier.rules import METERING_SLACK_SECONDS, allowed_claim, check_metering, wall_clock


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
