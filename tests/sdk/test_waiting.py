"""Why a shard waits: every reason of computenet.waiting, from plain domain values."""

from dataclasses import replace

import pytest

from computenet.deploy import DEFAULT_PARAMETERS
from computenet.domain import MAX_DECLINES, Asset, Job, Replica, ReplicaState, Requirements, Spec, Stake
from computenet.waiting import (
    BACKOFF_BASE,
    Decline,
    backoff_until,
    clock,
    problem_for_new_job,
    reason_text,
    shard_waiting,
)

NOW = 1_900_000_000
PARAMS = DEFAULT_PARAMETERS
AGENT = "0x" + "aa" * 20
NO_AGENT = "0x" + "00" * 20


def asset(id_, *, gpus=1, vram=81_920, price=100, stake=PARAMS.min_stake, active=True, agent=AGENT, **more):
    spec = Spec(1, vram, gpus, 16, 1, price, more.pop("expire", NOW + 30 * 86_400), active, more.pop("max_leases", 1))
    return Asset(id_, f"0x{id_:040x}", agent, spec, b"", Stake(stake, *more.pop("leases", (0, 0))))


def requirements(**overrides):
    fields = dict(min_vram_mib=40_960, gpu_count=1, max_price=200, max_gpu_seconds=600, deadline=NOW + 86_400)
    return Requirements(**(fields | overrides))


def job(**overrides):
    return Job(1, "0x" + "cc" * 20, 10**9, b"\x01" * 32, requirements(**overrides), 100, 50, 1)


def replica(index=0, state=ReplicaState.OPEN, asset_id=0):
    return Replica(1, 0, index, asset_id, 0, state, 0, 0, 0, NOW - 100, 0)


def reason(j=None, replicas=None, assets=None, declines=(), **kw):
    j = j or job()
    replicas = replicas or [replica()]
    return shard_waiting(j, replicas, assets if assets is not None else [asset(1)], declines, PARAMS, NOW, **kw)


# ---------------------------------------------------------------- a new job


def test_a_job_some_asset_can_take_has_no_problem():
    assert problem_for_new_job(requirements(), [asset(1)], PARAMS, NOW) is None


@pytest.mark.parametrize(
    "req, assets, expected",
    [
        (requirements(), [], "no active asset is registered"),
        (requirements(), [asset(1, active=False), asset(2, agent=NO_AGENT)], "no active asset is registered"),
        (
            requirements(),
            [asset(1, stake=5)],
            f"no active asset has the minimum stake of {PARAMS.min_stake} (the most any has: 5)",
        ),
        (requirements(gpu_count=2), [asset(1), asset(2, gpus=0)], "needs 2 GPUs (the most any active asset has: 1)"),
        (requirements(gpu_count=1), [asset(1, gpus=0, vram=0)], "needs 1 GPU (the most any active asset has: 0)"),
        (
            requirements(min_vram_mib=100_000),
            [asset(1), asset(2, vram=90_000)],
            "needs 100000 MiB of VRAM per GPU (the most any active asset with enough GPUs has: 90000)",
        ),
        (
            requirements(max_price=50),
            [asset(1, price=80), asset(2, price=60)],
            "price cap 50 is below every matching asset's price (the cheapest: 60)",
        ),
        (
            requirements(deadline=NOW + 100),
            [asset(1)],
            f"deadline too near: a lease takes {600 + PARAMS.lease_grace} s and the deadline is 100 s away",
        ),
        (
            requirements(),
            [asset(1, expire=NOW + 10)],
            f"every matching asset's registration expires before a lease would end (the latest at {NOW + 10})",
        ),
    ],
)
def test_a_job_no_asset_can_ever_take_names_the_first_requirement_none_meets(req, assets, expected):
    assert problem_for_new_job(req, assets, PARAMS, NOW) == expected


def test_requirements_are_checked_in_the_chains_order():
    # too few GPUs and too dear: the GPU count is checked first, as JobMarket.assign does
    problem = problem_for_new_job(requirements(gpu_count=2, max_price=1), [asset(1)], PARAMS, NOW)
    assert problem.startswith("needs 2 GPUs")
    # VRAM is judged among the assets with enough GPUs only
    problem = problem_for_new_job(
        requirements(gpu_count=2, min_vram_mib=50_000), [asset(1, gpus=1), asset(2, gpus=2, vram=40_000)], PARAMS, NOW
    )
    assert problem.endswith("(the most any active asset with enough GPUs has: 40000)")


# ---------------------------------------------------------------- open replicas


def test_an_open_shard_with_no_eligible_asset_says_what_is_missing():
    (why,) = reason(job(gpu_count=2)).values()
    assert (why.kind, str(why)) == (
        "no_eligible_asset",
        "no eligible asset: needs 2 GPUs (the most any active asset has: 1)",
    )


def test_an_open_shard_waits_for_a_keeper_when_an_asset_could_take_it():
    assert reason()[0].kind == "unassigned" and str(reason()[0]) == "waiting for a keeper (1 eligible asset)"


def test_backoff_doubles_with_each_decline_and_every_view_computes_it_alike():
    one = [Decline(3, "image not found", NOW - 5)]
    two = one + [Decline(4, "image not found", NOW - 2)]
    assert backoff_until([]) is None
    assert backoff_until(one) == NOW - 5 + BACKOFF_BASE
    assert backoff_until(two) == NOW - 2 + 2 * BACKOFF_BASE
    why = reason(declines=two)[0]
    assert why.kind == "backing_off" and why.until == NOW - 2 + 2 * BACKOFF_BASE
    assert str(why) == f"backing off until {clock(why.until)} after 2 declines"
    assert why.as_json() == {"kind": "backing_off", "reason": str(why), "until": why.until}


def test_after_the_backoff_the_last_decline_is_named_with_the_count_left():
    declines = [Decline(3, "image not found", NOW - 500), Decline(3, "image not found", NOW - 400)]
    why = reason(assets=[asset(1), asset(3)], declines=declines)[0]
    assert why.kind == "declined"
    assert str(why) == f"declined by asset 3: image not found (2 of {MAX_DECLINES} declines; the 3rd fails the shard)"


def test_busy_assets_are_named_with_the_chains_reason_and_the_keepers_verdicts():
    full = asset(1, max_leases=1, leases=(1, 1))
    cold, hot = asset(2), asset(3)
    verdicts = {2: "no heartbeat", 3: "over utilisation (97 % ≥ 90 %)"}
    why = reason(assets=[full, cold, hot], asset_reasons=verdicts)[0]
    assert why.kind == "busy"
    assert str(why) == (
        "every eligible asset is busy or over utilisation (asset 1: asset at lease capacity; "
        "asset 2: no heartbeat; asset 3: over utilisation (97 % ≥ 90 %))"
    )
    # without the keeper's verdicts the chain sees two free assets
    assert reason(assets=[full, cold, hot])[0].kind == "unassigned"


def test_an_asset_already_running_the_shard_cannot_take_its_other_replica():
    replicas = [replica(0, ReplicaState.ASSIGNED, 1), replica(1)]
    why = reason(job(replication=2), replicas=replicas, assets=[asset(1, max_leases=4)])
    assert list(why) == [1]
    assert str(why[1]) == "every eligible asset is busy or over utilisation (asset 1: asset already runs this shard)"


def test_a_paused_market_says_so():
    assert str(reason(paused=True)[0]) == "the market is paused"


def test_a_failed_shard_and_a_cancelled_one():
    declines = [Decline(3, "image not found", NOW - 50 + i) for i in range(MAX_DECLINES)]
    cancelled = [replica(0, ReplicaState.CANCELLED)]
    why = reason(replicas=cancelled, declines=declines)[0]
    assert (why.kind, str(why)) == ("failed", "failed: declined 3 times (last: image not found)")
    assert (reason(replicas=cancelled)[0].kind, str(reason(replicas=cancelled)[0])) == ("cancelled", "cancelled")


def test_running_replicas_need_no_reason():
    replicas = [replica(0, state) for state in (ReplicaState.ASSIGNED, ReplicaState.SUBMITTED, ReplicaState.FINALIZED)]
    assert reason(replicas=replicas) == {}


def test_decline_reasons_read_as_text():
    assert reason_text(b"image not found" + b"\x00" * 17) == "image not found"
    assert reason_text(b"\x00" * 32) == "no reason given"
    assert Decline.of(3, b"oom\x00", 7) == Decline(3, "oom", 7)


def test_a_paused_asset_is_not_counted_as_able():
    assert reason(assets=[replace(asset(1), spec=replace(asset(1).spec, active=False))])[0].kind == "no_eligible_asset"
