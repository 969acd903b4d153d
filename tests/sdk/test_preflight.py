"""Pre-flight rules as pure functions: each reason the contracts give, in their check order.

No chain here: domain objects are built by hand. tests/sdk/test_market_client.py checks
that the chain gives the same reasons for the same situations.
"""

import dataclasses
from dataclasses import replace

import pytest

from computenet import preflight
from computenet.domain import (
    Asset,
    Job,
    Parameters,
    Replica,
    ReplicaState,
    Requirements,
    Spec,
    Stake,
    Verification,
)
from computenet.preflight import UINT32_MAX, UINT40_MAX, UINT80_MAX, ZERO_HASH

NOW = 1_700_000_000
MANIFEST = b"\x07" * 32
ROOT = b"\x42" * 32
CLIENT = "0x" + "c1" * 20
PARAMS = Parameters(
    keeper_fee_bps=100,
    protocol_fee_bps=50,
    slash_bps=1000,
    challenge_window=600,
    decline_window=60,
    lease_grace=300,
    min_stake=100,
    challenge_bond=10,
)
NO_FEES = dataclasses.replace(PARAMS, keeper_fee_bps=0, protocol_fee_bps=0)

# One lease of REQ lasts 3600 / 2 + 300 = 2100 s.
REQ = Requirements(
    min_vram_mib=40_960,
    gpu_count=2,
    max_price=200,
    max_gpu_seconds=3_600,
    deadline=NOW + 86_400,
)
LEASE = REQ.lease_seconds(PARAMS.lease_grace)


AGENT = "0x" + "0b" * 20
NO_AGENT = "0x" + "00" * 20  # what agentOf reads after a transfer, until the new owner sets one
STAKED = Stake(amount=1_000, open_leases=0, gpus_leased=0, unbond_at=0, unbonding=0)


def make_asset(asset_id=1, stake=STAKED, agent=AGENT, **spec):
    fields = dict(
        gpu_model=1, vram_mib=81_920, gpu_count=2, cpu_cores=16, region=276, price=150, expire=NOW + 30 * 86_400
    )
    fields.update(spec)
    return Asset(
        id=asset_id, owner="0x" + "0a" * 20, agent=agent, spec=Spec(**fields), commit=b"\x11" * 32, stake=stake
    )


def make_job(req=REQ, client=CLIENT):
    return Job(
        id=1,
        client=client,
        escrow=req.quote(PARAMS.keeper_fee_bps, PARAMS.protocol_fee_bps),
        manifest_hash=MANIFEST,
        requirements=req,
        keeper_fee_bps=PARAMS.keeper_fee_bps,
        protocol_fee_bps=PARAMS.protocol_fee_bps,
        unfinished=req.shard_count,
    )


def rep(index=0, state=ReplicaState.OPEN, asset=0, deadline=0, output_root=ZERO_HASH, since=NOW - 10):
    return Replica(
        job=1,
        shard=0,
        index=index,
        asset=asset,
        keeper_id=1 if asset else 0,
        state=state,
        lease=1 if asset else 0,
        price=150,
        deadline=deadline,
        since=since,
        gpu_seconds=0,
        output_root=output_root,
    )


def fixes_in_order(check, state, fixes):
    """Applies `fixes` one at a time to an all-wrong `state`; returns the reason seen before each."""
    seen = []
    for fix in fixes:
        seen.append(check(**state))
        state.update(fix)
    seen.append(check(**state))
    return seen


# ------------------------------------------------------------------ post_problem


def test_post_happy_path():
    assert preflight.post_problem(MANIFEST, REQ, PARAMS, NOW) is None


def test_post_reasons_in_contract_order():
    bad = Requirements(
        min_vram_mib=0,
        gpu_count=0,
        max_price=0,
        max_gpu_seconds=0,
        deadline=2**40,
        shard_count=0,
        replication=0,
        verification=7,
    )

    def check(manifest, req, paused):
        return preflight.post_problem(manifest, req, PARAMS, NOW, paused)

    state = dict(manifest=ZERO_HASH, req=bad, paused=True)
    r = dataclasses.replace
    seen = fixes_in_order(
        check,
        state,
        [
            dict(paused=False),
            dict(manifest=MANIFEST),
            dict(req=r(bad, shard_count=1)),
            dict(req=r(bad, shard_count=1, replication=1)),
            dict(req=r(bad, shard_count=1, replication=1, verification=Verification.REPLICATED)),
            dict(req=r(bad, shard_count=1, replication=1, verification=Verification.OPTIMISTIC)),
            dict(req=r(bad, shard_count=1, replication=1, verification=0, max_price=2**64 - 1)),
            dict(
                req=r(bad, shard_count=1, replication=1, verification=0, max_price=2**64 - 1, max_gpu_seconds=2**32 - 1)
            ),
            dict(
                req=r(
                    bad,
                    shard_count=1,
                    replication=1,
                    verification=0,
                    max_price=2**64 - 1,
                    max_gpu_seconds=2**32 - 1,
                    deadline=NOW + 1,
                )
            ),
            dict(
                req=r(
                    bad,
                    shard_count=1,
                    replication=1,
                    verification=0,
                    max_price=2**64 - 1,
                    max_gpu_seconds=2**32 - 1,
                    deadline=NOW + 2**32 - 1 + PARAMS.lease_grace,
                )
            ),
            dict(
                req=r(
                    bad,
                    shard_count=1,
                    replication=1,
                    verification=0,
                    max_price=1,
                    max_gpu_seconds=2**32 - 1,
                    deadline=NOW + 2**32 - 1 + PARAMS.lease_grace,
                )
            ),
        ],
    )
    assert seen == [
        "market_params: paused",
        "job_market: empty manifest hash",
        "job_market: shard count out of range",
        "job_market: replication out of range",
        "job_market: unknown verification mode",
        "job_market: verification mode does not match replication",
        "job_market: zero price cap",
        "job_market: zero gpu-seconds",
        "job_market: deadline out of range",
        "job_market: deadline too soon",
        "job_market: budget too large",
        None,
    ]


@pytest.mark.parametrize(
    "changes, reason",
    [
        (dict(shard_count=0), "job_market: shard count out of range"),
        (dict(shard_count=1024), None),
        (dict(shard_count=1025), "job_market: shard count out of range"),
        (dict(replication=0), "job_market: replication out of range"),
        (dict(replication=5, verification=Verification.REPLICATED), None),
        (dict(replication=6, verification=Verification.REPLICATED), "job_market: replication out of range"),
        (dict(verification=5), "job_market: unknown verification mode"),
        (dict(verification=Verification.SPOT_CHECK), None),
        (dict(verification=Verification.REPLICATED), "job_market: verification mode does not match replication"),
        (dict(replication=2), "job_market: verification mode does not match replication"),
        (
            dict(replication=2, verification=Verification.SPOT_CHECK),
            "job_market: verification mode does not match replication",
        ),
        (dict(replication=2, verification=Verification.REPLICATED), None),
        (dict(max_price=0), "job_market: zero price cap"),
        (dict(max_gpu_seconds=0), "job_market: zero gpu-seconds"),
        (dict(deadline=UINT40_MAX), None),
        (dict(deadline=UINT40_MAX + 1), "job_market: deadline out of range"),
        (dict(deadline=NOW + LEASE), None),
        (dict(deadline=NOW + LEASE - 1), "job_market: deadline too soon"),
    ],
)
def test_post_each_rule(changes, reason):
    assert preflight.post_problem(MANIFEST, dataclasses.replace(REQ, **changes), PARAMS, NOW) == reason


def test_post_lease_of_cpu_work_counts_one_gpu():
    """gpu_count 0 spreads GPU-seconds over one 'GPU', as the contract does."""
    req = dataclasses.replace(REQ, gpu_count=0, deadline=NOW + 3_600 + PARAMS.lease_grace)
    assert preflight.post_problem(MANIFEST, req, PARAMS, NOW) is None
    assert (
        preflight.post_problem(MANIFEST, dataclasses.replace(req, deadline=req.deadline - 1), PARAMS, NOW)
        == "job_market: deadline too soon"
    )


def test_post_budget_limit_is_uint80():
    # 2**80 - 1 = (257 * 61681 * 4278255361) * (3 * 5**2 * 11 * 17 * 31 * 41)
    price, seconds = 257 * 61_681 * 4_278_255_361, 3 * 5**2 * 11 * 17 * 31 * 41
    assert price * seconds == UINT80_MAX and price < 2**64 and seconds < 2**32
    req = dataclasses.replace(REQ, max_price=price, max_gpu_seconds=seconds, deadline=UINT40_MAX)
    assert preflight.post_problem(MANIFEST, req, NO_FEES, NOW) is None
    assert preflight.post_problem(MANIFEST, req, PARAMS, NOW) == "job_market: budget too large"
    double = dataclasses.replace(req, shard_count=2)
    assert preflight.post_problem(MANIFEST, double, NO_FEES, NOW) == "job_market: budget too large"


# ------------------------------------------------------------------ asset_problem / assign_problem


def test_asset_happy_path():
    assert preflight.asset_problem(make_asset(), REQ, PARAMS, NOW) is None


def test_asset_reasons_in_contract_order():
    """assign's asset rules as the chain meets them: the market's id bound, then
    ComputeAsset.open_lease (known, agent, then asset_stakes: stake, lease count, GPUs
    free), then the market's own checks on the spec it returns."""
    low = Stake(amount=PARAMS.min_stake - 1, open_leases=3, gpus_leased=1, unbond_at=0, unbonding=0)
    ok = Stake(amount=PARAMS.min_stake, open_leases=3, gpus_leased=1, unbond_at=0, unbonding=0)
    worst = dict(active=False, gpu_count=2, max_leases=3, vram_mib=1, price=REQ.max_price + 1, expire=NOW)
    fine = worst | dict(active=True, vram_mib=REQ.min_vram_mib, price=REQ.max_price, expire=NOW + LEASE)

    def check(asset_id, agent, stake, spec, deadline):
        asset = None if asset_id is None else make_asset(asset_id, stake, agent, **spec)
        return preflight.asset_problem(asset, dataclasses.replace(REQ, deadline=deadline), PARAMS, NOW)

    state = dict(asset_id=None, agent=NO_AGENT, stake=low, spec=worst, deadline=NOW + LEASE - 1)
    seen = fixes_in_order(
        check,
        state,
        [
            dict(asset_id=UINT32_MAX),
            dict(agent=AGENT),
            dict(stake=ok),
            dict(stake=dataclasses.replace(ok, open_leases=2)),
            dict(stake=dataclasses.replace(ok, open_leases=2, gpus_leased=0)),
            dict(spec=worst | dict(active=True, gpu_count=1)),  # fewer than the job needs at all
            dict(spec=worst | dict(active=True)),
            dict(spec=worst | dict(active=True, vram_mib=REQ.min_vram_mib)),
            dict(spec=worst | dict(active=True, vram_mib=REQ.min_vram_mib, price=REQ.max_price)),
            dict(deadline=NOW + LEASE),
            dict(spec=fine),
        ],
    )
    assert seen == [
        "compute_asset: unknown asset",
        "compute_asset: no agent",
        "asset_stakes: stake below minimum",
        "asset_stakes: asset at lease capacity",
        "asset_stakes: asset gpus all leased",
        "job_market: asset is paused",
        "job_market: asset has too few gpus",
        "job_market: asset has too little vram",
        "job_market: asset price above cap",
        "job_market: lease would end after the deadline",
        "job_market: asset expires before the lease ends",
        None,
    ]


def leases(open_leases, gpus_leased):
    return dataclasses.replace(STAKED, open_leases=open_leases, gpus_leased=gpus_leased)


@pytest.mark.parametrize(
    "gpu_count, max_leases, stake, job_gpus, reason",
    [
        # one GPU, room for three leases: one 1-GPU lease at a time
        (1, 3, leases(0, 0), 1, None),
        (1, 3, leases(1, 1), 1, "asset_stakes: asset gpus all leased"),
        # four GPUs: two 2-GPU leases, not a third; a 1-GPU one fits beside one of them
        (4, 16, leases(1, 2), 2, None),
        (4, 16, leases(2, 4), 2, "asset_stakes: asset gpus all leased"),
        (4, 16, leases(2, 3), 1, None),
        (4, 16, leases(2, 3), 2, "asset_stakes: asset gpus all leased"),
        # CPU work holds no GPU: only max_leases bounds it, on any asset
        (1, 3, leases(2, 1), 0, None),
        (1, 3, leases(3, 1), 0, "asset_stakes: asset at lease capacity"),
        (0, 2, leases(1, 0), 0, None),
        # fewer GPUs than the job needs at all: the market's own reason
        (0, 2, leases(0, 0), 1, "job_market: asset has too few gpus"),
        (1, 3, leases(0, 0), 2, "job_market: asset has too few gpus"),
        (1, 3, leases(1, 1), 2, "job_market: asset has too few gpus"),
    ],
)
def test_asset_gpus_free_of_its_leases(gpu_count, max_leases, stake, job_gpus, reason):
    asset = make_asset(stake=stake, gpu_count=gpu_count, max_leases=max_leases, gpu_model=1 if gpu_count else 0)
    req = dataclasses.replace(REQ, gpu_count=job_gpus, min_vram_mib=0)
    assert preflight.asset_problem(asset, req, PARAMS, NOW) == reason


def test_asset_without_an_agent_takes_no_lease():
    assert preflight.asset_problem(make_asset(agent=NO_AGENT), REQ, PARAMS, NOW) == "compute_asset: no agent"
    assert preflight.asset_problem(make_asset(agent="0x" + "00" * 19 + "01"), REQ, PARAMS, NOW) is None


def test_asset_id_above_uint32_is_refused_by_the_market():
    assert preflight.asset_problem(make_asset(UINT32_MAX + 1), REQ, PARAMS, NOW) == "job_market: unknown asset"


def test_asset_stake_being_unbonded_does_not_count():
    unbonding = Stake(amount=PARAMS.min_stake + 50, open_leases=0, gpus_leased=0, unbond_at=NOW + 100, unbonding=51)
    assert preflight.asset_problem(make_asset(stake=unbonding), REQ, PARAMS, NOW) == "asset_stakes: stake below minimum"
    exactly = dataclasses.replace(unbonding, unbonding=50)
    assert preflight.asset_problem(make_asset(stake=exactly), REQ, PARAMS, NOW) is None
    over = dataclasses.replace(unbonding, unbonding=10**9)  # more unbonding than staked counts as all of it
    assert preflight.asset_problem(make_asset(stake=over), REQ, NO_FEES, NOW) == "asset_stakes: stake below minimum"
    assert preflight.asset_problem(make_asset(stake=over), REQ, dataclasses.replace(PARAMS, min_stake=0), NOW) is None


def test_asset_cpu_work_accepts_gpuless_asset():
    cpu_req = dataclasses.replace(REQ, gpu_count=0, min_vram_mib=0)
    assert preflight.asset_problem(make_asset(gpu_count=0, vram_mib=0, gpu_model=0), cpu_req, PARAMS, NOW) is None


def test_assign_happy_path_returns_none():
    replicas = [rep(0)]
    assert preflight.assign_problem(make_job(), 0, replicas, make_asset(), PARAMS, NOW) is None


def test_assign_reasons_in_contract_order():
    """paused, job, shard, then the asset's rules, then the replicas."""
    two = make_job(dataclasses.replace(REQ, shard_count=2, replication=2, verification=Verification.REPLICATED))
    busy = [rep(0, ReplicaState.ASSIGNED, asset=1, deadline=NOW + 10), rep(1)]

    def check(job, shard, replicas, asset, paused):
        return preflight.assign_problem(job, shard, replicas, asset, PARAMS, NOW, paused)

    state = dict(job=None, shard=2, replicas=busy, asset=None, paused=True)
    seen = fixes_in_order(
        check,
        state,
        [
            dict(paused=False),
            dict(job=two),
            dict(shard=1),
            dict(asset=make_asset(1, active=False)),
            dict(asset=make_asset(1)),
            dict(
                replicas=[
                    rep(0, ReplicaState.ASSIGNED, asset=2, deadline=NOW + 10),
                    rep(1, ReplicaState.SUBMITTED, asset=3),
                ]
            ),
            dict(replicas=[rep(0, ReplicaState.ASSIGNED, asset=2, deadline=NOW + 10), rep(1)]),
        ],
    )
    assert seen == [
        "market_params: paused",
        "job_market: unknown job",
        "job_market: unknown shard",
        "compute_asset: unknown asset",
        "job_market: asset is paused",
        "job_market: asset already runs this shard",
        "job_market: shard has no open replica",
        None,
    ]


def test_assign_shard_bounds():
    job = make_job(dataclasses.replace(REQ, shard_count=3))
    for shard, reason in [(-1, "job_market: unknown shard"), (0, None), (2, None), (3, "job_market: unknown shard")]:
        assert preflight.assign_problem(job, shard, [rep(0)], make_asset(), PARAMS, NOW) == reason


# ------------------------------------------------------------------ open_replica


@pytest.mark.parametrize(
    "states, assets, expected",
    [
        ([ReplicaState.OPEN], [0], (0, None)),
        ([ReplicaState.OPEN, ReplicaState.OPEN], [0, 0], (0, None)),
        ([ReplicaState.ASSIGNED, ReplicaState.OPEN, ReplicaState.OPEN], [7, 0, 0], (1, None)),
        # a replica reopened after a reclaim keeps its old asset: it does not count as running
        ([ReplicaState.OPEN, ReplicaState.ASSIGNED], [1, 7], (0, None)),
        # a cancelled replica never blocks the asset, nor offers a slot
        ([ReplicaState.CANCELLED, ReplicaState.OPEN], [1, 0], (1, None)),
        ([ReplicaState.CANCELLED], [0], (None, "job_market: shard has no open replica")),
        ([ReplicaState.FINALIZED], [7], (None, "job_market: shard has no open replica")),
        ([ReplicaState.OPEN, ReplicaState.SUBMITTED], [0, 1], (None, "job_market: asset already runs this shard")),
        ([ReplicaState.DISPUTED, ReplicaState.OPEN], [1, 0], (None, "job_market: asset already runs this shard")),
        ([ReplicaState.FINALIZED, ReplicaState.OPEN], [1, 0], (None, "job_market: asset already runs this shard")),
    ],
)
def test_open_replica(states, assets, expected):
    replicas = [rep(i, s, asset=a) for i, (s, a) in enumerate(zip(states, assets))]
    assert preflight.open_replica(replicas, 1) == expected


# ------------------------------------------------------------------ submit_problem


def test_submit_happy_path_at_lease_end():
    assert preflight.submit_problem(rep(0, ReplicaState.ASSIGNED, asset=1, deadline=NOW), NOW, ROOT) is None


def test_submit_reasons_in_contract_order():
    def check(state, deadline, root, claim):
        replica = replace(rep(0, state, asset=1, deadline=deadline), since=NOW - 10)
        return preflight.submit_problem(replica, NOW, root, claim, 2)

    seen = fixes_in_order(
        check,
        dict(state=ReplicaState.OPEN, deadline=NOW - 1, root=ZERO_HASH, claim=21),
        [dict(state=ReplicaState.ASSIGNED), dict(deadline=NOW), dict(root=ROOT), dict(claim=20)],
    )
    assert seen == [
        "job_market: replica not assigned",
        "job_market: lease expired",
        "job_market: empty output root",
        "job_market: gpu_seconds exceed the lease's time",
        None,
    ]


@pytest.mark.parametrize("gpu_count, allowed", [(0, 10), (1, 10), (4, 40)])
def test_a_claim_is_bounded_by_the_time_since_assignment_on_the_jobs_gpus(gpu_count, allowed):
    assigned = replace(rep(0, ReplicaState.ASSIGNED, asset=1, deadline=NOW + 100), since=NOW - 10)
    assert preflight.claimable_seconds(assigned, NOW, gpu_count) == allowed
    assert preflight.submit_problem(assigned, NOW, ROOT, allowed, gpu_count) is None
    assert (
        preflight.submit_problem(assigned, NOW, ROOT, allowed + 1, gpu_count)
        == "job_market: gpu_seconds exceed the lease's time"
    )


@pytest.mark.parametrize("state", [s for s in ReplicaState if s != ReplicaState.ASSIGNED])
def test_submit_needs_an_assigned_replica(state):
    assert (
        preflight.submit_problem(rep(0, state, asset=1, deadline=NOW + 100), NOW, ROOT)
        == "job_market: replica not assigned"
    )


# ------------------------------------------------------------------ finalize_problem


def submitted(index, deadline=NOW - 1, root=ROOT):
    return rep(index, ReplicaState.SUBMITTED, asset=index + 1, deadline=deadline, output_root=root)


def test_finalize_happy_path():
    assert preflight.finalize_problem([submitted(0)], NOW) is None
    assert preflight.finalize_problem([submitted(0), rep(1, ReplicaState.CANCELLED), submitted(2)], NOW) is None


def test_finalize_reasons_in_contract_order():
    """Replicas are checked one by one: state, then window, then agreement."""

    def check(replicas):
        return preflight.finalize_problem(replicas, NOW)

    other = b"\x43" * 32
    seen = fixes_in_order(
        check,
        dict(replicas=[rep(0, ReplicaState.ASSIGNED, asset=1, deadline=NOW + 5), submitted(1, deadline=NOW)]),
        [
            dict(replicas=[submitted(0, deadline=NOW), rep(1, ReplicaState.ASSIGNED, asset=2)]),
            dict(replicas=[submitted(0), submitted(1, deadline=NOW, root=other)]),
            dict(replicas=[submitted(0), submitted(1, root=other)]),
            dict(replicas=[submitted(0), submitted(1)]),
        ],
    )
    assert seen == [
        "job_market: shard not ready",
        "job_market: challenge window open",
        "job_market: challenge window open",
        "job_market: replica roots disagree",
        None,
    ]


@pytest.mark.parametrize(
    "state", [ReplicaState.OPEN, ReplicaState.ASSIGNED, ReplicaState.DISPUTED, ReplicaState.FINALIZED]
)
def test_finalize_not_ready_states(state):
    assert preflight.finalize_problem([rep(0, state, asset=1)], NOW) == "job_market: shard not ready"


def test_finalize_nothing_live_is_not_ready():
    assert (
        preflight.finalize_problem([rep(0, ReplicaState.CANCELLED), rep(1, ReplicaState.CANCELLED)], NOW)
        == "job_market: shard not ready"
    )
    assert preflight.finalize_problem([], NOW) == "job_market: shard not ready"


def test_finalize_window_closes_strictly_after_its_end():
    assert preflight.finalize_problem([submitted(0, deadline=NOW)], NOW) == "job_market: challenge window open"
    assert preflight.finalize_problem([submitted(0, deadline=NOW)], NOW + 1) is None


# ------------------------------------------------------------------ reclaim_problem


def test_reclaim_happy_path():
    assert preflight.reclaim_problem(rep(0, ReplicaState.ASSIGNED, asset=1, deadline=NOW - 1), NOW) is None


def test_reclaim_reasons_in_contract_order():
    def check(state, deadline):
        return preflight.reclaim_problem(rep(0, state, asset=1, deadline=deadline), NOW)

    seen = fixes_in_order(
        check,
        dict(state=ReplicaState.SUBMITTED, deadline=NOW),
        [dict(state=ReplicaState.ASSIGNED), dict(deadline=NOW - 1)],
    )
    assert seen == [
        "job_market: replica not assigned",
        "job_market: lease not expired",
        None,
    ]


# ------------------------------------------------------------------ cancel_problem

WINDOW = 60  # the decline window: an assigned replica inside it has not started


def test_cancel_takes_an_assigned_replica_only_inside_its_decline_window():
    taken = rep(0, ReplicaState.ASSIGNED, asset=1, since=NOW - WINDOW)
    assert preflight.cancel_problem(make_job(), CLIENT, [taken], NOW, WINDOW) is None
    assert preflight.cancel_problem(make_job(), CLIENT, [taken], NOW + 1, WINDOW) == "job_market: nothing to cancel"


def test_cancel_happy_path():
    assert preflight.cancel_problem(make_job(), CLIENT, [rep(0)], NOW, WINDOW) is None


def test_cancel_reasons_in_contract_order():
    job = make_job(dataclasses.replace(REQ, replication=2, verification=Verification.REPLICATED))

    def check(caller, replicas, now):
        return preflight.cancel_problem(job, caller, replicas, now, WINDOW)

    taken = rep(0, ReplicaState.ASSIGNED, asset=1, since=NOW - WINDOW - 1)  # started
    seen = fixes_in_order(
        check,
        dict(caller="0x" + "99" * 20, replicas=[taken, rep(1, ReplicaState.CANCELLED)], now=NOW),
        [
            dict(caller=CLIENT),
            dict(replicas=[taken, rep(1)]),
            dict(now=REQ.deadline + 1),
        ],
    )
    assert seen == [
        "job_market: caller is not the client",
        "job_market: nothing to cancel",
        "job_market: shard already assigned",
        None,
    ]


def test_cancel_caller_compared_case_insensitively():
    assert preflight.cancel_problem(make_job(), CLIENT.upper().replace("0X", "0x"), [rep(0)], NOW, WINDOW) is None


def test_cancel_at_the_deadline_is_still_too_early():
    taken = [rep(0, ReplicaState.SUBMITTED, asset=1), rep(1)]
    assert (
        preflight.cancel_problem(make_job(), CLIENT, taken, REQ.deadline, WINDOW)
        == "job_market: shard already assigned"
    )
    assert preflight.cancel_problem(make_job(), CLIENT, taken, REQ.deadline + 1, WINDOW) is None


def test_cancel_cancelled_replicas_are_not_live():
    assert preflight.cancel_problem(make_job(), CLIENT, [rep(0, ReplicaState.CANCELLED), rep(1)], NOW, WINDOW) is None
