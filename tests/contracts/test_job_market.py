"""JobMarket unit tests: every external function's happy path, each revert reason
(matched exactly), the events it emits and the money it moves."""

from dataclasses import replace

import ape
import pytest
from eth_account import Account
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from computenet.domain import MAX_DECLINES, ReplicaState, Requirements, Verification, settle_amounts
from computenet.receipts import SECP256K1_N, ExecutionReceipt

TOKEN = 10**6
MANIFEST = keccak(b"manifest")  # the conftest factories' default manifest
ROOT = b"\x42" * 32  # the conftest `submit` factory's default output root
OTHER_ROOT = b"\x43" * 32
ZERO = "0x0000000000000000000000000000000000000000"
STAKE = 1_000 * TOKEN  # register_asset's default stake
PRICE = 100  # make_spec's default price per GPU-second
GPU_SECONDS = 1_000  # the conftest `submit` factory's default metering


# ---------------------------------------------------------------- helpers


def lease_of(req, params):
    return req.lease_seconds(params.lease_grace)


def quote_of(req, params):
    return req.quote(params.keeper_fee_bps, params.protocol_fee_bps)


def only(tx, event):
    """The one `event` a transaction emitted."""
    logs = tx.events.filter(event)
    assert len(logs) == 1, f"expected one {event.name}, got {len(logs)}"
    return logs[0]


def sign_permit(token, signer, spender, value, deadline, nonce=None, name=None):
    """An EIP-2612 permit (v, r, s) over the token's USDC-style domain (version "2")."""
    message = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "Permit",
        "domain": {
            "name": name or token.name(),
            "version": "2",
            "chainId": 31337,
            "verifyingContract": token.address,
        },
        "message": {
            "owner": signer.address,
            "spender": str(spender),
            "value": value,
            "nonce": token.nonces(signer) if nonce is None else nonce,
            "deadline": deadline,
        },
    }
    signed = Account.sign_typed_data(signer.private_key, full_message=message)
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


@pytest.fixture
def assigned(market, job, asset, keeper, registered_keeper):
    """The job with its replica (0, 0) leased to `asset` by `keeper`; returns the assign receipt."""
    return market.assign(job, 0, asset, sender=keeper)


@pytest.fixture
def submitted(assigned, job, agent, submit):
    """The job with replica (0, 0) submitted (ROOT, GPU_SECONDS); returns the submit receipt."""
    return submit(agent, job, 0, 0)


@pytest.fixture
def finalizable(submitted, chain, params):
    chain.mine(deltatime=params.challenge_window + 1)
    return submitted


@pytest.fixture
def receipt_for(market):
    """An unsigned ExecutionReceipt for a replica's current lease, fields overridable."""

    def make(job, shard, replica, /, **overrides):
        rep = market.replica(job, shard, replica)
        fields = dict(
            job=job,
            shard=shard,
            replica=replica,
            lease=rep.lease,
            asset=rep.asset,
            manifest=MANIFEST,
            output_root=ROOT,
            gpu_seconds=GPU_SECONDS,
            exit_code=0,
        )
        fields.update(overrides)
        return ExecutionReceipt(**fields)

    return make


@pytest.fixture
def signed(chain, market, run_for):
    """Signs a receipt for this market on this chain, once the run it reports is over (the
    chain's clock covers its metered time: conftest.run_for)."""

    def sign(signer, receipt):
        run_for(receipt.job, receipt.shard, receipt.replica, receipt.gpu_seconds)
        return receipt.sign(signer.private_key, chain.chain_id, market.address)

    return sign


# ================================================================ post_job


def test_post_job_escrows_the_quote(market, token, client, make_requirements, params):
    req = make_requirements(
        shard_count=3, replication=2, min_vram_mib=12_345, gpu_count=2, cpu_cores=6, memory_mib=9_000, disk_mib=70_000
    )
    budget = market.quote(req.as_tuple())
    assert budget == quote_of(req, params) > 0
    market_before, client_before = token.balanceOf(market), token.balanceOf(client)

    tx = market.post_job(MANIFEST, req.as_tuple(), sender=client)

    assert token.balanceOf(market) - market_before == budget
    assert client_before - token.balanceOf(client) == budget
    assert tx.return_value == 1
    ev = only(tx, market.JobPosted)
    assert (ev.job, ev.client, ev.manifest_hash, ev.budget) == (1, client.address, MANIFEST, budget)
    assert (ev.min_vram_mib, ev.gpu_count, ev.max_price, ev.max_gpu_seconds) == (12_345, 2, 200, 3_600)
    assert (ev.deadline, ev.shard_count, ev.replication, ev.verification) == (
        req.deadline,
        3,
        2,
        Verification.REPLICATED,
    )
    assert (ev.keeper_fee_bps, ev.protocol_fee_bps) == (params.keeper_fee_bps, params.protocol_fee_bps)
    assert (ev.cpu_cores, ev.memory_mib, ev.disk_mib) == (6, 9_000, 70_000)

    job = market.job(1)
    assert job.client == client.address
    assert job.escrow == budget
    assert job.unfinished == 3
    assert job.manifest_hash == MANIFEST
    assert (job.keeper_fee_bps, job.protocol_fee_bps) == (params.keeper_fee_bps, params.protocol_fee_bps)
    r = job.requirements
    stored = (
        r.min_vram_mib,
        r.gpu_count,
        r.max_price,
        r.max_gpu_seconds,
        r.deadline,
        r.shard_count,
        r.replication,
        r.verification,
        r.cpu_cores,
        r.memory_mib,
        r.disk_mib,
    )
    assert stored == req.as_tuple()


def test_post_job_ids_are_sequential(market, post_job, client, provider):
    assert market.job_count() == 0
    assert [post_job(), post_job(sender=provider), post_job()] == [1, 2, 3]
    assert market.job_count() == 3
    assert market.job(2).client == provider.address
    assert market.job(3).client == client.address


def test_post_job_snapshots_fees(market, owner, post_job, params, make_requirements):
    first = post_job()
    market.set_parameters(replace(params, keeper_fee_bps=500, protocol_fee_bps=200).as_tuple(), sender=owner)
    second = post_job()
    assert (market.job(first).keeper_fee_bps, market.job(first).protocol_fee_bps) == (100, 50)
    assert (market.job(second).keeper_fee_bps, market.job(second).protocol_fee_bps) == (500, 200)
    req = make_requirements()
    assert market.job(first).escrow == quote_of(req, params)
    assert market.job(second).escrow == req.quote(500, 200)


@pytest.mark.parametrize(
    "overrides, reason",
    [
        (dict(shard_count=0), "job_market: shard count out of range"),
        (dict(shard_count=1025), "job_market: shard count out of range"),
        (dict(replication=0), "job_market: replication out of range"),
        (dict(replication=6), "job_market: replication out of range"),
        (dict(verification=5), "job_market: unknown verification mode"),
        (
            dict(replication=2, verification=Verification.OPTIMISTIC),
            "job_market: verification mode does not match replication",
        ),
        (
            dict(replication=2, verification=Verification.SPOT_CHECK),
            "job_market: verification mode does not match replication",
        ),
        (
            dict(replication=1, verification=Verification.REPLICATED),
            "job_market: verification mode does not match replication",
        ),
        (dict(max_price=0), "job_market: zero price cap"),
        (dict(max_gpu_seconds=0), "job_market: zero gpu-seconds"),
        (dict(cpu_cores=0), "job_market: zero cpu, memory or disk"),
        (dict(memory_mib=0), "job_market: zero cpu, memory or disk"),
        (dict(disk_mib=0), "job_market: zero cpu, memory or disk"),
        (dict(deadline=2**40), "job_market: deadline out of range"),
        (dict(deadline=2**64 - 1), "job_market: deadline out of range"),
        (dict(max_price=2**64 - 1, shard_count=1024), "job_market: budget too large"),
    ],
)
def test_post_job_rejects_bad_requirements(market, token, client, make_requirements, overrides, reason):
    req = make_requirements(**overrides)
    balances = token.balanceOf(client), token.balanceOf(market)
    with ape.reverts(reason):
        market.post_job(MANIFEST, req.as_tuple(), sender=client)
    assert market.job_count() == 0
    assert (token.balanceOf(client), token.balanceOf(market)) == balances


def test_post_job_accepts_the_limits(market, client, make_requirements):
    """The largest shard count and replication, and a deadline at the top of its range."""
    market.post_job(MANIFEST, make_requirements(shard_count=1024).as_tuple(), sender=client)
    market.post_job(MANIFEST, make_requirements(replication=5).as_tuple(), sender=client)
    market.post_job(MANIFEST, make_requirements(deadline=2**40 - 1).as_tuple(), sender=client)
    most = dict(cpu_cores=2**16 - 1, memory_mib=2**32 - 1, disk_mib=2**32 - 1)
    market.post_job(MANIFEST, make_requirements(**most).as_tuple(), sender=client)
    assert market.job_count() == 4
    r = market.job(4).requirements
    assert (r.cpu_cores, r.memory_mib, r.disk_mib, r.gpu_count) == (2**16 - 1, 2**32 - 1, 2**32 - 1, 1)
    assert market.job(1).unfinished == 1024
    assert market.job(3).requirements.deadline == 2**40 - 1


def test_post_job_rejects_empty_manifest_hash(market, client, make_requirements):
    with ape.reverts("job_market: empty manifest hash"):
        market.post_job(b"\x00" * 32, make_requirements().as_tuple(), sender=client)


def test_post_job_deadline_must_leave_room_for_one_lease(chain, market, client, make_requirements, params):
    start = chain.pending_timestamp + 5
    lease = lease_of(make_requirements(), params)
    chain.pending_timestamp = start
    with ape.reverts("job_market: deadline too soon"):
        market.post_job(MANIFEST, make_requirements(deadline=start + lease - 1).as_tuple(), sender=client)
    chain.pending_timestamp = start
    tx = market.post_job(MANIFEST, make_requirements(deadline=start + lease).as_tuple(), sender=client)
    assert tx.timestamp == start
    assert only(tx, market.JobPosted).deadline == start + lease


def test_post_job_while_paused(market, owner, client, make_requirements):
    market.pause(sender=owner)
    with ape.reverts("market_params: paused"):
        market.post_job(MANIFEST, make_requirements().as_tuple(), sender=client)


def test_post_job_without_allowance(market, token, stranger, client, make_requirements, params):
    """No approval, or approval short of the quote: the token refuses and no job exists."""
    token.faucet(stranger, 1_000_000 * TOKEN, sender=stranger)
    req = make_requirements()
    with ape.reverts("ERC20: transfer amount exceeds allowance"):
        market.post_job(MANIFEST, req.as_tuple(), sender=stranger)
    token.approve(market, quote_of(req, params) - 1, sender=client)
    with ape.reverts("ERC20: transfer amount exceeds allowance"):
        market.post_job(MANIFEST, req.as_tuple(), sender=client)
    assert market.job_count() == 0


def test_post_job_without_balance(market, token, accounts, make_requirements):
    poor = accounts[15]
    token.approve(market, 2**256 - 1, sender=poor)
    with ape.reverts("ERC20: transfer amount exceeds balance"):
        market.post_job(MANIFEST, make_requirements().as_tuple(), sender=poor)
    assert market.job_count() == 0


# ================================================================ post_job_with_permit


def test_post_job_with_permit(chain, market, token, fresh, make_requirements):
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    deadline = chain.pending_timestamp + 3_600
    v, r, s = sign_permit(token, fresh, market, budget, deadline)
    before = token.balanceOf(fresh)

    tx = market.post_job_with_permit(MANIFEST, req.as_tuple(), deadline, v, r, s, sender=fresh)

    ev = only(tx, market.JobPosted)
    assert (ev.job, ev.client, ev.budget) == (1, fresh.address, budget)
    assert before - token.balanceOf(fresh) == budget
    assert token.allowance(fresh, market) == 0  # the permit approved exactly the budget
    assert token.nonces(fresh) == 1
    assert market.job(1).escrow == budget


def test_post_job_with_front_run_permit(chain, market, token, fresh, stranger, make_requirements):
    """Someone submits the permit first; the post still goes through on the allowance it set."""
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    deadline = chain.pending_timestamp + 3_600
    v, r, s = sign_permit(token, fresh, market, budget, deadline)
    token.permit(fresh, market, budget, deadline, v, r, s, sender=stranger)
    assert token.allowance(fresh, market) == budget

    tx = market.post_job_with_permit(MANIFEST, req.as_tuple(), deadline, v, r, s, sender=fresh)

    assert only(tx, market.JobPosted).client == fresh.address
    assert token.allowance(fresh, market) == 0
    assert token.nonces(fresh) == 1


@pytest.mark.parametrize("flaw", ["wrong signer", "smaller value", "expired", "wrong domain"])
def test_post_job_with_bad_permit_and_no_allowance(chain, market, token, fresh, stranger, make_requirements, flaw):
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    deadline = chain.pending_timestamp + 3_600
    if flaw == "wrong signer":
        v, r, s = sign_permit(token, stranger, market, budget, deadline, nonce=0)
    elif flaw == "smaller value":
        v, r, s = sign_permit(token, fresh, market, budget - 1, deadline)
    elif flaw == "expired":
        deadline = chain.pending_timestamp - 10
        v, r, s = sign_permit(token, fresh, market, budget, deadline)
    else:
        v, r, s = sign_permit(token, fresh, market, budget, deadline, name="another token")
    with ape.reverts("ERC20: transfer amount exceeds allowance"):
        market.post_job_with_permit(MANIFEST, req.as_tuple(), deadline, v, r, s, sender=fresh)
    assert market.job_count() == 0
    assert token.nonces(fresh) == 0


def test_post_job_with_permit_checks_requirements(chain, market, token, fresh, make_requirements):
    req = make_requirements(max_price=0)
    deadline = chain.pending_timestamp + 3_600
    v, r, s = sign_permit(token, fresh, market, 0, deadline)
    with ape.reverts("job_market: zero price cap"):
        market.post_job_with_permit(MANIFEST, req.as_tuple(), deadline, v, r, s, sender=fresh)


def test_post_job_with_permit_falls_back_on_an_existing_allowance(market, client, make_requirements):
    """A garbage permit is ignored when the client has already approved the market."""
    tx = market.post_job_with_permit(
        MANIFEST, make_requirements().as_tuple(), 0, 27, b"\x01" * 32, b"\x01" * 32, sender=client
    )
    assert only(tx, market.JobPosted).client == client.address


# ================================================================ quote / lease_seconds


requirement_values = st.builds(
    Requirements,
    min_vram_mib=st.integers(0, 2**32 - 1),
    gpu_count=st.integers(0, 2**8 - 1),
    max_price=st.integers(0, 2**64 - 1),
    max_gpu_seconds=st.integers(0, 2**32 - 1),
    deadline=st.integers(0, 2**64 - 1),
    shard_count=st.integers(0, 2**16 - 1),
    replication=st.integers(0, 2**8 - 1),
    verification=st.integers(0, 2**8 - 1),
)


@given(req=requirement_values)
def test_quote_matches_the_sdk(market, params, req):
    assert market.quote(req.as_tuple()) == quote_of(req, params)


def test_quote_and_lease_seconds_examples(market, make_requirements):
    # 200 × 3600 = 720,000 + 1 % keeper + 0.5 % protocol
    assert market.quote(make_requirements().as_tuple()) == 730_800
    assert market.quote(make_requirements(shard_count=2, replication=3).as_tuple()) == 6 * 730_800
    # Lease lengths (the chain's own are checked by the assignments' lease ends and the
    # court's ruling deadlines): ceil(max GPU-seconds / GPUs) + the grace.
    assert make_requirements().lease_seconds(300) == 3_600 + 300
    assert make_requirements(gpu_count=7, max_gpu_seconds=15).lease_seconds(300) == 3 + 300
    assert make_requirements(gpu_count=0, max_gpu_seconds=15).lease_seconds(300) == 15 + 300


# ================================================================ assign


def test_assign(market, assets, keepers, job, asset, keeper, registered_keeper, make_requirements, params):
    tx = market.assign(job, 0, asset, sender=keeper)

    lease_end = tx.timestamp + lease_of(make_requirements(), params)
    assert tx.return_value == 0
    ev = only(tx, market.ShardAssigned)
    assert (ev.job, ev.shard, ev.replica, ev.asset, ev.keeper) == (job, 0, 0, asset, keeper.address)
    assert (ev.lease, ev.lease_end, ev.price) == (1, lease_end, PRICE)
    rep = market.replica(job, 0, 0)
    assert rep.asset == asset
    assert rep.keeper == keepers.keeper(keeper).id == 1
    assert rep.state == ReplicaState.ASSIGNED
    assert rep.lease == 1
    assert rep.price == PRICE
    assert rep.deadline == lease_end
    assert rep.since == tx.timestamp
    assert rep.gpu_seconds == 0
    assert assets.stake(asset).open_leases == 1
    assert assets.stake(asset).amount == STAKE


def test_assign_fills_replicas_in_order(
    market, keepers, post_job, register_asset, agents, keeper, keeper2, registered_keeper
):
    job = post_job(replication=3)
    ids = [register_asset(agent_account=a) for a in agents[:3]]
    txs = [
        market.assign(job, 0, ids[0], sender=keeper),
        market.assign(job, 0, ids[1], sender=keeper2),
        market.assign(job, 0, ids[2], sender=keeper),
    ]
    assert [tx.return_value for tx in txs] == [0, 1, 2]
    assert [market.replica(job, 0, r).asset for r in range(3)] == ids
    assert market.replica(job, 0, 1).keeper == keepers.keeper(keeper2).id == 2


def test_assign_records_the_asset_price_not_the_cap(market, job, register_asset, keeper, registered_keeper):
    cheap = register_asset(price=7)
    tx = market.assign(job, 0, cheap, sender=keeper)
    assert only(tx, market.ShardAssigned).price == 7
    assert market.replica(job, 0, 0).price == 7


def test_assign_by_a_non_keeper(market, job, asset, stranger, registered_keeper):
    with ape.reverts("keeper_registry: not a keeper"):
        market.assign(job, 0, asset, sender=stranger)


def test_assign_by_an_exiting_keeper(market, keepers, job, asset, keeper, registered_keeper):
    keepers.request_exit(sender=keeper)
    with ape.reverts("keeper_registry: keeper is exiting"):
        market.assign(job, 0, asset, sender=keeper)


def test_assign_by_an_underbonded_keeper(market, keepers, owner, job, asset, keeper, registered_keeper):
    keepers.set_min_bond(101 * TOKEN, sender=owner)
    with ape.reverts("keeper_registry: bond below minimum"):
        market.assign(job, 0, asset, sender=keeper)


def test_assign_unknown_job(market, job, asset, keeper, registered_keeper):
    with ape.reverts("job_market: unknown job"):
        market.assign(job + 1, 0, asset, sender=keeper)
    with ape.reverts("job_market: unknown job"):
        market.assign(0, 0, asset, sender=keeper)


def test_assign_unknown_shard(market, post_job, asset, keeper, registered_keeper):
    job = post_job(shard_count=2)
    with ape.reverts("job_market: unknown shard"):
        market.assign(job, 2, asset, sender=keeper)


@pytest.mark.parametrize("asset_id", [2**32, 2**256 - 1])
def test_assign_asset_id_out_of_range(market, job, keeper, registered_keeper, asset_id):
    with ape.reverts("job_market: unknown asset"):
        market.assign(job, 0, asset_id, sender=keeper)


@pytest.mark.parametrize("offset", [None, 1, 1000])
def test_assign_unregistered_asset(market, job, asset, keeper, registered_keeper, offset):
    """Ids 0 and never-minted ids within range are refused by the asset registry itself."""
    asset_id = 0 if offset is None else asset + offset
    with ape.reverts("compute_asset: unknown asset"):
        market.assign(job, 0, asset_id, sender=keeper)


@pytest.mark.parametrize("stake", [0, 100 * TOKEN - 1])
def test_assign_understaked_asset(market, job, register_asset, keeper, registered_keeper, params, stake):
    assert params.min_stake == 100 * TOKEN
    thin = register_asset(stake=stake)
    with ape.reverts("asset_stakes: stake below minimum"):
        market.assign(job, 0, thin, sender=keeper)


def test_assign_stake_at_the_minimum(market, assets, job, register_asset, keeper, registered_keeper):
    exact = register_asset(stake=100 * TOKEN)
    market.assign(job, 0, exact, sender=keeper)
    assert assets.stake(exact).open_leases == 1


def test_assign_asset_whose_stake_is_unbonding(
    market, assets, job, register_asset, provider, keeper, registered_keeper
):
    """Stake asked back no longer counts toward the minimum."""
    unbonding = register_asset(stake=150 * TOKEN)
    assets.request_unstake(unbonding, 51 * TOKEN, sender=provider)
    with ape.reverts("asset_stakes: stake below minimum"):
        market.assign(job, 0, unbonding, sender=keeper)


def test_assign_paused_asset(market, assets, job, asset, provider, keeper, registered_keeper):
    assets.pause(asset, sender=provider)
    with ape.reverts("job_market: asset is paused"):
        market.assign(job, 0, asset, sender=keeper)
    assets.resume(asset, sender=provider)
    market.assign(job, 0, asset, sender=keeper)


def test_assign_asset_with_too_few_gpus(market, post_job, register_asset, keeper, registered_keeper):
    job = post_job(gpu_count=2)
    with ape.reverts("job_market: asset has too few gpus"):
        market.assign(job, 0, register_asset(gpu_count=1), sender=keeper)
    market.assign(job, 0, register_asset(gpu_count=2), sender=keeper)


def test_assign_asset_with_too_little_vram(market, job, register_asset, keeper, registered_keeper):
    with ape.reverts("job_market: asset has too little vram"):
        market.assign(job, 0, register_asset(vram_mib=40_959), sender=keeper)
    market.assign(job, 0, register_asset(vram_mib=40_960), sender=keeper)


def test_assign_asset_priced_above_the_cap(market, job, register_asset, keeper, registered_keeper):
    with ape.reverts("job_market: asset price above cap"):
        market.assign(job, 0, register_asset(price=201), sender=keeper)
    market.assign(job, 0, register_asset(price=200), sender=keeper)


def test_assign_lease_would_end_after_the_deadline(
    chain, market, client, asset, keeper, registered_keeper, make_requirements, params
):
    start = chain.pending_timestamp + 5
    lease = lease_of(make_requirements(), params)
    chain.pending_timestamp = start
    req = make_requirements(deadline=start + lease + 100)
    job = only(market.post_job(MANIFEST, req.as_tuple(), sender=client), market.JobPosted).job
    with chain.isolate():  # a reverted transaction still mines a block, so roll it back
        chain.pending_timestamp = start + 101
        with ape.reverts("job_market: lease would end after the deadline"):
            market.assign(job, 0, asset, sender=keeper)
    chain.pending_timestamp = start + 100
    tx = market.assign(job, 0, asset, sender=keeper)
    assert only(tx, market.ShardAssigned).lease_end == req.deadline


def test_assign_asset_expiring_before_the_lease_ends(
    chain, market, job, register_asset, keeper, registered_keeper, make_requirements, params
):
    start = chain.pending_timestamp + 5
    lease = lease_of(make_requirements(), params)
    short = register_asset(expire=start + lease - 1)
    exact = register_asset(expire=start + lease)
    chain.pending_timestamp = start
    with ape.reverts("job_market: asset expires before the lease ends"):
        market.assign(job, 0, short, sender=keeper)
    chain.pending_timestamp = start
    market.assign(job, 0, exact, sender=keeper)


def test_assign_shard_without_open_replica(market, job, asset, register_asset, agents, keeper, registered_keeper):
    market.assign(job, 0, asset, sender=keeper)
    with ape.reverts("job_market: shard has no open replica"):
        market.assign(job, 0, register_asset(agent_account=agents[1]), sender=keeper)


def test_assign_same_asset_twice_to_a_shard(market, post_job, register_asset, agents, keeper, registered_keeper):
    job = post_job(replication=2)
    asset = register_asset(gpu_count=2)  # GPUs enough for both replicas
    market.assign(job, 0, asset, sender=keeper)
    with ape.reverts("job_market: asset already runs this shard"):
        market.assign(job, 0, asset, sender=keeper)
    # another shard of the same job, or another asset, is fine
    market.assign(job, 0, register_asset(agent_account=agents[1]), sender=keeper)


def test_assign_while_paused(market, owner, job, asset, keeper, registered_keeper):
    market.pause(sender=owner)
    with ape.reverts("market_params: paused"):
        market.assign(job, 0, asset, sender=keeper)


# ================================================================ decline


REASON = b"image not found".ljust(32, b"\x00")


def test_decline(market, assets, job, asset, agent, assigned, keeper):
    tx = market.decline(job, 0, 0, REASON, sender=agent)

    ev = only(tx, market.ShardDeclined)
    assert (ev.job, ev.shard, ev.replica, ev.asset, ev.reason) == (job, 0, 0, asset, REASON)
    rep = market.replica(job, 0, 0)
    assert rep.state == ReplicaState.OPEN
    assert rep.since == tx.timestamp
    stake = assets.stake(asset)
    assert stake.open_leases == 0
    assert stake.amount == STAKE  # no penalty
    assert len(tx.events.filter(assets.StakeSlashed)) == 0
    # the replica can be leased again; its lease number moves on
    again = market.assign(job, 0, asset, sender=keeper)
    assert only(again, market.ShardAssigned).lease == 2


def test_decline_at_the_end_of_the_window(chain, market, job, agent, assigned, params):
    chain.pending_timestamp = assigned.timestamp + params.decline_window
    market.decline(job, 0, 0, REASON, sender=agent)
    assert market.replica(job, 0, 0).state == ReplicaState.OPEN


def test_decline_after_the_window(chain, market, job, agent, assigned, params):
    chain.pending_timestamp = assigned.timestamp + params.decline_window + 1
    with ape.reverts("job_market: decline window closed"):
        market.decline(job, 0, 0, REASON, sender=agent)


def test_decline_open_replica(market, job, agent):
    with ape.reverts("job_market: replica not assigned"):
        market.decline(job, 0, 0, REASON, sender=agent)


def test_decline_submitted_replica(market, job, agent, submitted):
    with ape.reverts("job_market: replica not assigned"):
        market.decline(job, 0, 0, REASON, sender=agent)


@pytest.mark.parametrize("who", ["provider", "keeper", "agent2"])
def test_decline_by_someone_else(market, job, assigned, provider, keeper, agents, who):
    caller = {"provider": provider, "keeper": keeper, "agent2": agents[1]}[who]
    with ape.reverts("job_market: caller is not the asset's agent"):
        market.decline(job, 0, 0, REASON, sender=caller)


def test_decline_unknown_replica(market, job, agent, assigned):
    with ape.reverts("job_market: unknown replica"):
        market.decline(job, 0, 1, REASON, sender=agent)


# ================================================================ submit_result


def test_submit_result(market, assets, job, asset, agent, assigned, provider, receipt_for, signed, params):
    sig = signed(agent, receipt_for(job, 0, 0))
    tx = market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=provider)

    challenge_end = tx.timestamp + params.challenge_window
    ev = only(tx, market.ResultSubmitted)
    assert (ev.job, ev.shard, ev.replica, ev.asset) == (job, 0, 0, asset)
    assert (ev.output_root, ev.gpu_seconds, ev.exit_code, ev.challenge_end) == (ROOT, GPU_SECONDS, 0, challenge_end)
    rep = market.replica(job, 0, 0)
    assert rep.state == ReplicaState.SUBMITTED
    assert rep.deadline == challenge_end
    assert rep.since == tx.timestamp
    assert rep.gpu_seconds == GPU_SECONDS
    assert (rep.asset, rep.lease, rep.price) == (asset, 1, PRICE)
    assert market.output_root(job, 0, 0) == ROOT
    # The lease ends with the result: the asset has room for its next one at once, and the
    # result keeps the stake locked until it is final.
    stake = assets.stake(asset)
    assert (stake.open_leases, stake.gpus_leased, stake.pending_results) == (0, 0, 1)


@pytest.mark.parametrize("gpu_count", [0, 1, 2])
def test_submit_result_claims_no_more_than_the_lease_time_on_its_gpus(
    chain, market, post_job, register_asset, keeper, registered_keeper, agent, provider, receipt_for, gpu_count
):
    """A claim is bounded by the time since assignment × the job's GPUs (× 1 for CPU work):
    a 10-second run cannot be claimed at the job's cap. One second more than that reverts."""
    job = post_job(gpu_count=gpu_count, min_vram_mib=0 if gpu_count == 0 else 40_960)
    asset = register_asset(gpu_count=max(gpu_count, 1))
    assigned_at = market.assign(job, 0, asset, sender=keeper).timestamp
    chain.mine(timestamp=assigned_at + 9)  # nine seconds of the run have passed

    def at_next_block(claim_for):
        """Fixes the next block's time (a refused transaction may have been mined); `claim_for`
        turns the time since assignment into the claim to sign."""
        at = chain.blocks.head.timestamp + 1
        chain.pending_timestamp = at
        claim = claim_for(at - assigned_at)
        receipt = receipt_for(job, 0, 0, gpu_seconds=claim, manifest=market.job(job).manifest_hash)
        return at, claim, receipt.sign(agent.private_key, chain.chain_id, market.address)

    gpus = max(gpu_count, 1)
    for claim_for in (lambda s: s * gpus + 1, lambda s: 3_600, lambda s: 2**32 - 1):
        _, claim, sig = at_next_block(claim_for)
        with ape.reverts("job_market: gpu_seconds exceed the lease's time"):
            market.submit_result(job, 0, 0, ROOT, claim, 0, sig, sender=provider)
    at, claim, sig = at_next_block(lambda s: s * gpus)  # exactly the time since assignment × GPUs
    tx = market.submit_result(job, 0, 0, ROOT, claim, 0, sig, sender=provider)
    assert (tx.timestamp, claim) == (at, (at - assigned_at) * gpus)
    assert market.replica(job, 0, 0).gpu_seconds == claim


def test_submit_result_caps_gpu_seconds(market, job, agent, assigned, submit):
    tx = submit(agent, job, 0, 0, gpu_seconds=3_800)  # the lease (3,600 s + grace) had time for it
    assert only(tx, market.ResultSubmitted).gpu_seconds == 3_800  # what the agent reported
    assert market.replica(job, 0, 0).gpu_seconds == 3_600  # what will be paid


def test_submit_result_with_failed_container_is_paid(chain, market, job, agent, assigned, submit, provider, params):
    tx = submit(agent, job, 0, 0, exit_code=137)
    assert only(tx, market.ResultSubmitted).exit_code == 137
    chain.mine(deltatime=params.challenge_window + 1)
    fin = market.finalize(job, 0, sender=provider)
    assert only(fin, market.ShardFinalized).payment == PRICE * GPU_SECONDS
    assert market.credits(provider) == PRICE * GPU_SECONDS


def test_submit_result_relayed_by_a_stranger(market, job, agent, assigned, submit, stranger):
    tx = submit(agent, job, 0, 0, sender=stranger)
    assert tx.sender == stranger.address
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED


def test_submit_result_by_the_agent_itself(market, job, agent, assigned, submit):
    submit(agent, job, 0, 0, sender=agent)
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED


def test_submit_result_for_open_replica(market, job, agent, provider, receipt_for, signed):
    sig = signed(agent, receipt_for(job, 0, 0))
    with ape.reverts("job_market: replica not assigned"):
        market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=provider)


def test_submit_result_twice(market, job, agent, submitted, provider, receipt_for, signed):
    sig = signed(agent, receipt_for(job, 0, 0))
    with ape.reverts("job_market: replica not assigned"):
        market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=provider)


def test_submit_result_at_and_after_the_lease_end(chain, market, job, agent, assigned, provider, receipt_for, signed):
    sig = signed(agent, receipt_for(job, 0, 0))
    lease_end = market.replica(job, 0, 0).deadline
    with chain.isolate():
        chain.pending_timestamp = lease_end + 1
        with ape.reverts("job_market: lease expired"):
            market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=provider)
    chain.pending_timestamp = lease_end
    tx = market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=provider)
    assert tx.timestamp == lease_end


def test_submit_result_with_empty_output_root(market, job, agent, assigned, provider, receipt_for, signed):
    sig = signed(agent, receipt_for(job, 0, 0, output_root=b"\x00" * 32))
    with ape.reverts("job_market: empty output root"):
        market.submit_result(job, 0, 0, b"\x00" * 32, GPU_SECONDS, 0, sig, sender=provider)


def _high_s_twin(sig):
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])


@pytest.mark.parametrize("garble", ["ones", "zeros", "short", "empty", "bad v", "high s"])
def test_submit_result_with_invalid_signature(market, job, agent, assigned, provider, receipt_for, signed, garble):
    good = signed(agent, receipt_for(job, 0, 0))
    sig = {
        "ones": b"\x01" * 65,
        "zeros": b"\x00" * 65,
        "short": good[:64],
        "empty": b"",
        "bad v": good[:64] + bytes([good[64] + 2]),
        "high s": _high_s_twin(good),
    }[garble]
    with ape.reverts("job_market: receipt not signed by the asset's agent"):
        market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=provider)


def test_submit_result_signed_by_another_key(market, job, assigned, provider, agents, stranger, receipt_for, signed):
    for signer in (agents[1], provider, stranger):
        sig = signed(signer, receipt_for(job, 0, 0))
        with ape.reverts("job_market: receipt not signed by the asset's agent"):
            market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=provider)


@pytest.mark.parametrize(
    "field, value",
    [
        ("job", 2),
        ("shard", 1),
        ("replica", 1),
        ("lease", 2),
        ("asset", 2),
        ("manifest", keccak(b"another manifest")),
        ("output_root", OTHER_ROOT),
        ("gpu_seconds", GPU_SECONDS + 1),
        ("exit_code", 1),
    ],
)
def test_submit_result_with_receipt_for_something_else(
    market, job, agent, assigned, provider, receipt_for, signed, run_for, field, value
):
    run_for(job, 0, 0, GPU_SECONDS)
    sig = signed(agent, receipt_for(job, 0, 0, **{field: value}))
    with ape.reverts("job_market: receipt not signed by the asset's agent"):
        market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=provider)


def test_submit_result_with_receipt_for_another_market_or_chain(
    chain, market, job, agent, assigned, provider, receipt_for, run_for, stranger
):
    run_for(job, 0, 0, GPU_SECONDS)
    receipt = receipt_for(job, 0, 0)
    for chain_id, address in ((chain.chain_id + 1, market.address), (chain.chain_id, stranger.address)):
        sig = receipt.sign(agent.private_key, chain_id, address)
        with ape.reverts("job_market: receipt not signed by the asset's agent"):
            market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=provider)


def test_submit_result_with_receipt_from_an_earlier_lease(
    chain, market, job, asset, agent, assigned, keeper, provider, receipt_for, signed
):
    """A receipt signed under lease 1 does not verify once the same asset holds lease 2."""
    old = receipt_for(job, 0, 0).sign(agent.private_key, chain.chain_id, market.address)
    market.decline(job, 0, 0, REASON, sender=agent)
    market.assign(job, 0, asset, sender=keeper)
    assert market.replica(job, 0, 0).lease == 2
    new = signed(agent, receipt_for(job, 0, 0))  # the new lease's run is over
    with ape.reverts("job_market: receipt not signed by the asset's agent"):
        market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, old, sender=provider)
    market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, new, sender=provider)
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED


def test_submit_result_after_agent_key_rotation(
    market, assets, job, asset, agents, assigned, provider, receipt_for, signed
):
    assets.set_agent(asset, agents[1], sender=provider)
    old_key = signed(agents[0], receipt_for(job, 0, 0))
    with ape.reverts("job_market: receipt not signed by the asset's agent"):
        market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, old_key, sender=provider)
    market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, signed(agents[1], receipt_for(job, 0, 0)), sender=provider)


def test_submit_result_unknown_replica(market, job, agent, assigned, provider, receipt_for, signed):
    sig = signed(agent, receipt_for(job, 0, 0))
    with ape.reverts("job_market: unknown replica"):
        market.submit_result(job, 0, 1, ROOT, GPU_SECONDS, 0, sig, sender=provider)
    with ape.reverts("job_market: unknown shard"):
        market.submit_result(job, 1, 0, ROOT, GPU_SECONDS, 0, sig, sender=provider)
    with ape.reverts("job_market: unknown job"):
        market.submit_result(job + 1, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=provider)


def test_submit_result_replicas_agree(market, post_job, register_asset, agents, keeper, registered_keeper, submit):
    job = post_job(replication=2)
    for a in agents[:2]:
        market.assign(job, 0, register_asset(agent_account=a), sender=keeper)
    submit(agents[0], job, 0, 0)
    tx = submit(agents[1], job, 0, 1)
    assert len(tx.events.filter(market.DisputeOpened)) == 0
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.SUBMITTED] * 2


def test_submit_result_replicas_disagree(
    market, court, post_job, register_asset, agents, keeper, registered_keeper, submit
):
    """The last differing root of a replicated shard opens a dispute with no challenger."""
    job = post_job(replication=2)
    for a in agents[:2]:
        market.assign(job, 0, register_asset(agent_account=a), sender=keeper)
    first = submit(agents[0], job, 0, 0, output_root=ROOT)
    assert len(first.events.filter(market.DisputeOpened)) == 0
    tx = submit(agents[1], job, 0, 1, output_root=OTHER_ROOT)
    ev = only(tx, market.DisputeOpened)
    assert (ev.job, ev.shard, ev.challenger, ev.bond) == (job, 0, ZERO, 0)
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.DISPUTED] * 2
    assert court.challenge_of(job, 0) == (ZERO, 0)


# ================================================================ finalize


def test_finalize(
    market,
    token,
    assets,
    job,
    asset,
    finalizable,
    provider,
    keeper,
    treasury,
    client,
    stranger,
    params,
    make_requirements,
):
    budget = quote_of(make_requirements(), params)
    payment, keeper_fee, protocol_fee = settle_amounts(
        PRICE, GPU_SECONDS, params.keeper_fee_bps, params.protocol_fee_bps
    )
    assert (payment, keeper_fee, protocol_fee) == (100_000, 1_000, 500)
    held = token.balanceOf(market)

    tx = market.finalize(job, 0, sender=stranger)

    ev = only(tx, market.ShardFinalized)
    assert (ev.job, ev.shard, ev.replica, ev.asset, ev["provider"], ev.keeper) == (
        job,
        0,
        0,
        asset,
        provider.address,
        keeper.address,
    )
    assert (ev.payment, ev.keeper_fee, ev.protocol_fee) == (payment, keeper_fee, protocol_fee)
    refund = budget - payment - keeper_fee - protocol_fee
    done = only(tx, market.JobFinished)
    assert (done.job, done.client, done.refund) == (job, client.address, refund)
    # ShardFinalized and JobFinished name these credits; no Credited logs them a second time
    assert not list(tx.events.filter(market.Credited))
    assert market.credits(provider) == payment
    assert market.credits(keeper) == keeper_fee
    assert market.credits(treasury) == protocol_fee
    assert market.credits(client) == refund
    assert market.credits(stranger) == 0
    # credits only: no tokens move until withdrawn, and every escrowed unit is owed to someone
    assert token.balanceOf(market) == held
    assert payment + keeper_fee + protocol_fee + refund == budget
    j = market.job(job)
    assert (j.escrow, j.unfinished) == (0, 0)
    rep = market.replica(job, 0, 0)
    assert rep.state == ReplicaState.FINALIZED
    assert rep.since == tx.timestamp
    assert assets.stake(asset).open_leases == 0
    assert assets.stake(asset).amount == STAKE


def test_finalize_shard_by_shard(
    chain, market, post_job, register_asset, agent, keeper, registered_keeper, submit, client, params, make_requirements
):
    """Each shard pays its own; only the last refunds the client."""
    job = post_job(shard_count=2)
    budget = quote_of(make_requirements(shard_count=2), params)
    cost = sum(settle_amounts(PRICE, GPU_SECONDS, params.keeper_fee_bps, params.protocol_fee_bps))
    asset = register_asset(gpu_count=2)  # one GPU for each shard
    for shard in range(2):
        market.assign(job, shard, asset, sender=keeper)
        submit(agent, job, shard, 0)
    chain.mine(deltatime=params.challenge_window + 1)

    first = market.finalize(job, 0, sender=keeper)
    assert len(first.events.filter(market.JobFinished)) == 0
    assert market.credits(client) == 0
    assert (market.job(job).escrow, market.job(job).unfinished) == (budget - cost, 1)

    last = market.finalize(job, 1, sender=keeper)
    assert only(last, market.JobFinished).refund == budget - 2 * cost
    assert market.credits(client) == budget - 2 * cost
    assert (market.job(job).escrow, market.job(job).unfinished) == (0, 0)


def test_finalize_pays_every_replica(
    chain,
    market,
    post_job,
    register_asset,
    provider,
    provider2,
    agents,
    keeper,
    keeper2,
    treasury,
    registered_keeper,
    submit,
    client,
    params,
    make_requirements,
):
    job = post_job(replication=2)
    a0 = register_asset(owner=provider, agent_account=agents[0], price=50)
    a1 = register_asset(owner=provider2, agent_account=agents[1], price=80)
    market.assign(job, 0, a0, sender=keeper)
    market.assign(job, 0, a1, sender=keeper2)
    submit(agents[0], job, 0, 0, gpu_seconds=2_000)
    submit(agents[1], job, 0, 1, gpu_seconds=3_850)  # capped at 3,600
    chain.mine(deltatime=params.challenge_window + 1)

    tx = market.finalize(job, 0, sender=keeper)

    k, p = params.keeper_fee_bps, params.protocol_fee_bps
    pay0, pay1 = settle_amounts(50, 2_000, k, p), settle_amounts(80, 3_600, k, p)
    evs = tx.events.filter(market.ShardFinalized)
    assert [(e.replica, e["provider"], e.keeper, e.payment, e.keeper_fee, e.protocol_fee) for e in evs] == [
        (0, provider.address, keeper.address, *pay0),
        (1, provider2.address, keeper2.address, *pay1),
    ]
    assert market.credits(provider) == pay0[0]
    assert market.credits(provider2) == pay1[0]
    assert market.credits(keeper) == pay0[1]
    assert market.credits(keeper2) == pay1[1]
    assert market.credits(treasury) == pay0[2] + pay1[2]
    refund = quote_of(make_requirements(replication=2), params) - sum(pay0) - sum(pay1)
    assert only(tx, market.JobFinished).refund == refund == market.credits(client)


def test_finalize_uses_the_fees_of_the_posting_time(
    chain, market, owner, job, agent, assigned, submit, keeper, client, params, make_requirements
):
    market.set_parameters(replace(params, keeper_fee_bps=1000, protocol_fee_bps=1000).as_tuple(), sender=owner)
    submit(agent, job, 0, 0)
    chain.mine(deltatime=params.challenge_window + 1)
    tx = market.finalize(job, 0, sender=keeper)
    payment, keeper_fee, protocol_fee = settle_amounts(
        PRICE, GPU_SECONDS, params.keeper_fee_bps, params.protocol_fee_bps
    )
    ev = only(tx, market.ShardFinalized)
    assert (ev.keeper_fee, ev.protocol_fee) == (keeper_fee, protocol_fee)
    assert market.credits(client) == quote_of(make_requirements(), params) - payment - keeper_fee - protocol_fee


def test_an_asset_changes_hands_only_after_its_leases_end(
    market, assets, job, asset, finalizable, provider, provider2, keeper
):
    """The seller's lease is paid to the seller; no lease of the seller's can be slashed on the buyer's stake."""
    with ape.reverts("compute_asset: asset has results that can still be challenged"):
        assets.transferFrom(provider, provider2, asset, sender=provider)
    tx = market.finalize(job, 0, sender=keeper)
    assert only(tx, market.ShardFinalized)["provider"] == provider.address
    assets.transferFrom(provider, provider2, asset, sender=provider)
    assert (market.credits(provider), market.credits(provider2)) == (PRICE * GPU_SECONDS, 0)
    assert assets.agentOf(asset) == ZERO


def test_finalize_at_and_after_the_challenge_window(chain, market, job, submitted, keeper):
    window_end = market.replica(job, 0, 0).deadline
    chain.pending_timestamp = window_end
    with ape.reverts("job_market: challenge window open"):
        market.finalize(job, 0, sender=keeper)
    chain.pending_timestamp = window_end + 1
    market.finalize(job, 0, sender=keeper)
    assert market.replica(job, 0, 0).state == ReplicaState.FINALIZED


def test_finalize_open_shard(market, job, keeper):
    with ape.reverts("job_market: shard not ready"):
        market.finalize(job, 0, sender=keeper)


def test_finalize_assigned_shard(chain, market, job, assigned, keeper):
    chain.mine(deltatime=10_000)
    with ape.reverts("job_market: shard not ready"):
        market.finalize(job, 0, sender=keeper)


def test_finalize_partly_submitted_shard(
    chain, market, post_job, register_asset, agents, keeper, registered_keeper, submit, params
):
    job = post_job(replication=2)
    for a in agents[:2]:
        market.assign(job, 0, register_asset(agent_account=a), sender=keeper)
    submit(agents[0], job, 0, 0)
    chain.mine(deltatime=params.challenge_window + 1)
    with ape.reverts("job_market: shard not ready"):
        market.finalize(job, 0, sender=keeper)


def test_finalize_cancelled_shard(market, job, client, keeper):
    market.cancel(job, 0, sender=client)
    with ape.reverts("job_market: shard not ready"):
        market.finalize(job, 0, sender=keeper)


def test_finalize_twice(market, job, finalizable, keeper):
    market.finalize(job, 0, sender=keeper)
    with ape.reverts("job_market: shard not ready"):
        market.finalize(job, 0, sender=keeper)


def test_finalize_disputed_shard(chain, market, court, job, submitted, verifier, keeper, params):
    court.challenge(job, 0, sender=verifier)
    chain.mine(deltatime=params.challenge_window + 1)
    with ape.reverts("job_market: shard not ready"):
        market.finalize(job, 0, sender=keeper)


def test_finalize_never_stalls_on_replicas_that_disagree(
    chain,
    market,
    court,
    assets,
    post_job,
    register_asset,
    agents,
    keeper,
    registered_keeper,
    submit,
    client,
    facilitator,
    params,
    make_requirements,
):
    """Three replicas, two results that differ, the third never taken up: once the client
    cancels the third after the deadline, the mismatch must still reach a dispute."""
    lease = lease_of(make_requirements(), params)
    job = post_job(replication=3, deadline=chain.pending_timestamp + lease + 60)
    good, bad = (register_asset(agent_account=a) for a in agents[:2])
    market.assign(job, 0, good, sender=keeper)
    market.assign(job, 0, bad, sender=keeper)
    submit(agents[0], job, 0, 0, output_root=ROOT)
    submit(agents[1], job, 0, 1, output_root=OTHER_ROOT)  # replica 2 still open: no dispute yet
    chain.pending_timestamp = market.job(job).requirements.deadline + 1
    tx = market.cancel(job, 0, sender=client)

    # With the third replica gone, the two results left disagree: a dispute opens at once.
    assert only(tx, market.DisputeOpened).challenger == ZERO
    assert [market.replica(job, 0, r).state for r in range(3)] == [ReplicaState.DISPUTED] * 2 + [ReplicaState.CANCELLED]
    court.resolve(job, 0, ROOT, sender=facilitator)
    market.cancel(job, 0, sender=client)  # the rejected replica reopened past the deadline
    chain.pending_timestamp = max(chain.pending_timestamp, market.replica(job, 0, 0).deadline + 1)
    tx = market.finalize(job, 0, sender=keeper)
    assert only(tx, market.JobFinished).client == client.address
    assert assets.stake(good).open_leases == assets.stake(bad).open_leases == 0


def test_finalize_unknown_shard(market, job, finalizable, keeper):
    with ape.reverts("job_market: unknown shard"):
        market.finalize(job, 1, sender=keeper)
    with ape.reverts("job_market: unknown job"):
        market.finalize(job + 1, 0, sender=keeper)


# ================================================================ reclaim


def test_reclaim(
    chain, market, token, assets, job, asset, assigned, keeper, keeper2, client, treasury, params, make_requirements
):
    """The whole slash goes to the treasury: no one who can trigger a reclaim (a keeper
    that is also the client) gains from it."""
    chain.pending_timestamp = market.replica(job, 0, 0).deadline + 1
    held, owed = token.balanceOf(market), market.owed()
    slashed = STAKE * params.slash_bps // 10_000

    tx = market.reclaim(job, 0, 0, sender=keeper2)

    ev = only(tx, market.ShardReclaimed)
    assert (ev.job, ev.shard, ev.replica, ev.asset, ev.caller, ev.slashed) == (
        job,
        0,
        0,
        asset,
        keeper2.address,
        slashed,
    )
    assert market.credits(treasury) == slashed
    assert market.credits(keeper2) == market.credits(keeper) == market.credits(client) == 0
    assert token.balanceOf(market) - held == market.owed() - owed == slashed
    rep = market.replica(job, 0, 0)
    assert rep.state == ReplicaState.OPEN
    assert rep.since == tx.timestamp
    stake = assets.stake(asset)
    assert (stake.amount, stake.open_leases) == (STAKE - slashed, 0)
    assert market.job(job).escrow == quote_of(make_requirements(), params)  # the budget is untouched


def test_reclaimed_replica_can_be_reassigned(chain, market, job, assigned, register_asset, agents, keeper2):
    chain.pending_timestamp = market.replica(job, 0, 0).deadline + 1
    market.reclaim(job, 0, 0, sender=keeper2)
    other = register_asset(agent_account=agents[1])
    tx = market.assign(job, 0, other, sender=keeper2)
    ev = only(tx, market.ShardAssigned)
    assert (ev.replica, ev.asset, ev.lease) == (0, other, 2)


def test_reclaim_at_the_lease_end(chain, market, job, assigned, keeper):
    chain.pending_timestamp = market.replica(job, 0, 0).deadline
    with ape.reverts("job_market: lease not expired"):
        market.reclaim(job, 0, 0, sender=keeper)


def test_reclaim_open_replica(market, job, keeper):
    with ape.reverts("job_market: replica not assigned"):
        market.reclaim(job, 0, 0, sender=keeper)


def test_reclaim_submitted_replica(chain, market, job, submitted, keeper):
    chain.mine(deltatime=10_000)
    with ape.reverts("job_market: replica not assigned"):
        market.reclaim(job, 0, 0, sender=keeper)


def test_reclaim_while_paused_reopens_without_a_slash(
    chain, market, assets, owner, job, asset, assigned, keeper, client
):
    """No one is punished for an outage: while paused a reclaim only reopens the replica."""
    chain.pending_timestamp = market.replica(job, 0, 0).deadline + 1
    market.pause(sender=owner)
    tx = market.reclaim(job, 0, 0, sender=keeper)
    assert only(tx, market.ShardReclaimed).slashed == 0
    assert market.replica(job, 0, 0).state == ReplicaState.OPEN
    assert (assets.stake(asset).amount, assets.stake(asset).open_leases) == (STAKE, 0)
    assert market.credits(keeper) == market.credits(client) == 0


def test_reclaim_unknown_replica(chain, market, job, assigned, keeper):
    chain.mine(deltatime=10_000)
    with ape.reverts("job_market: unknown replica"):
        market.reclaim(job, 0, 1, sender=keeper)
    with ape.reverts("job_market: unknown shard"):
        market.reclaim(job, 1, 0, sender=keeper)


# ================================================================ cancel


def test_cancel(market, job, client, params, make_requirements):
    budget = quote_of(make_requirements(), params)
    tx = market.cancel(job, 0, sender=client)
    ev = only(tx, market.ShardCancelled)
    assert (ev.job, ev.shard, ev.replicas) == (job, 0, 1)
    assert market.replica(job, 0, 0).state == ReplicaState.CANCELLED
    done = only(tx, market.JobFinished)
    assert (done.job, done.client, done.refund) == (job, client.address, budget)
    assert market.credits(client) == budget
    assert (market.job(job).escrow, market.job(job).unfinished) == (0, 0)


def test_cancel_shard_by_shard(market, post_job, client, params, make_requirements):
    job = post_job(shard_count=2, replication=3)
    first = market.cancel(job, 1, sender=client)
    assert only(first, market.ShardCancelled).replicas == 3
    assert [market.replica(job, 1, r).state for r in range(3)] == [ReplicaState.CANCELLED] * 3
    assert market.replica(job, 0, 0).state == ReplicaState.OPEN
    assert len(first.events.filter(market.JobFinished)) == 0
    assert market.job(job).unfinished == 1
    assert market.credits(client) == 0
    last = market.cancel(job, 0, sender=client)
    budget = quote_of(make_requirements(shard_count=2, replication=3), params)
    assert only(last, market.JobFinished).refund == budget == market.credits(client)


def test_cancel_by_someone_else(market, job, stranger, provider):
    for caller in (stranger, provider):
        with ape.reverts("job_market: caller is not the client"):
            market.cancel(job, 0, sender=caller)


def test_cancel_twice(market, post_job, client):
    job = post_job(shard_count=2)
    market.cancel(job, 0, sender=client)
    with ape.reverts("job_market: nothing to cancel"):
        market.cancel(job, 0, sender=client)


def test_cancel_an_assigned_replica_that_has_not_started(
    chain, market, assets, token, job, assigned, asset, client, params, make_requirements
):
    """Inside its decline window the agent could still hand the lease back, so it has not
    started: the client cancels it, the lease closes without a slash, and the budget comes back."""
    stake = assets.stake(asset).amount
    chain.pending_timestamp = market.replica(job, 0, 0).since + params.decline_window
    tx = market.cancel(job, 0, sender=client)
    assert only(tx, market.ShardCancelled).replicas == 1
    assert only(tx, market.JobFinished).refund == quote_of(make_requirements(), params) == market.credits(client)
    assert market.replica(job, 0, 0).state == ReplicaState.CANCELLED
    s = assets.stake(asset)
    assert (s.amount, s.open_leases, s.gpus_leased, s.pending_results) == (stake, 0, 0, 0)


def test_cancel_an_assigned_replica_that_has_started(chain, market, job, assigned, client, params):
    chain.pending_timestamp = market.replica(job, 0, 0).since + params.decline_window + 1
    with ape.reverts("job_market: nothing to cancel"):
        market.cancel(job, 0, sender=client)


def test_cancel_partly_assigned_shard_before_the_deadline(
    chain, market, post_job, asset, keeper, registered_keeper, client, params
):
    job = post_job(replication=2)
    market.assign(job, 0, asset, sender=keeper)
    chain.pending_timestamp = market.replica(job, 0, 0).since + params.decline_window + 1
    with ape.reverts("job_market: shard already assigned"):
        market.cancel(job, 0, sender=client)


def test_cancel_partly_assigned_shard_after_the_deadline(
    chain, market, post_job, asset, agent, keeper, registered_keeper, submit, client, params, make_requirements
):
    """Past the deadline the open replicas can never be leased, so the client may drop them;
    the shard still settles through its submitted replica."""
    lease = lease_of(make_requirements(), params)
    job = post_job(replication=2, deadline=chain.pending_timestamp + lease + 60)
    market.assign(job, 0, asset, sender=keeper)
    submit(agent, job, 0, 0)
    deadline = market.job(job).requirements.deadline
    chain.pending_timestamp = deadline
    with ape.reverts("job_market: shard already assigned"):
        market.cancel(job, 0, sender=client)
    chain.pending_timestamp = deadline + 1

    tx = market.cancel(job, 0, sender=client)

    assert only(tx, market.ShardCancelled).replicas == 1
    assert len(tx.events.filter(market.JobFinished)) == 0
    assert market.job(job).unfinished == 1
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.SUBMITTED, ReplicaState.CANCELLED]
    chain.mine(deltatime=params.challenge_window + 1)
    fin = market.finalize(job, 0, sender=keeper)
    cost = sum(settle_amounts(PRICE, GPU_SECONDS, params.keeper_fee_bps, params.protocol_fee_bps))
    refund = quote_of(make_requirements(replication=2), params) - cost
    assert only(fin, market.JobFinished).refund == refund == market.credits(client)


def test_cancel_unknown_shard(market, job, client):
    with ape.reverts("job_market: unknown shard"):
        market.cancel(job, 1, sender=client)
    with ape.reverts("job_market: unknown job"):
        market.cancel(job + 1, 0, sender=client)


# ================================================================ paused market


def test_pause_lets_running_work_settle(
    chain, market, court, owner, job, assigned, agent, submit, verifier, facilitator, client, keeper, post_job
):
    """Results, disputes, finalization, cancels and withdrawals go on while paused."""
    other = post_job()
    market.pause(sender=owner)
    submit(agent, job, 0, 0)
    court.challenge(job, 0, sender=verifier)
    court.resolve(job, 0, ROOT, sender=facilitator)
    chain.pending_timestamp = market.replica(job, 0, 0).deadline + 1
    market.finalize(job, 0, sender=keeper)
    market.cancel(other, 0, sender=client)
    assert market.withdraw(client, sender=client).return_value > 0


# ================================================================ withdraw / withdraw_many


def test_withdraw(market, token, job, finalizable, provider, provider2, keeper):
    market.finalize(job, 0, sender=keeper)
    owed = market.credits(provider)
    assert owed == PRICE * GPU_SECONDS
    held, before = token.balanceOf(market), token.balanceOf(provider2)

    tx = market.withdraw(provider2, sender=provider)  # to another receiver

    ev = only(tx, market.Withdrawn)
    assert (ev.account, ev.receiver, ev.amount) == (provider.address, provider2.address, owed)
    assert tx.return_value == owed
    assert token.balanceOf(provider2) - before == owed
    assert held - token.balanceOf(market) == owed
    assert market.credits(provider) == 0
    with ape.reverts("settlement: nothing to withdraw"):
        market.withdraw(provider, sender=provider)


def test_withdraw_to_self(market, token, job, client):
    market.cancel(job, 0, sender=client)
    before = token.balanceOf(client)
    owed = market.credits(client)
    market.withdraw(client, sender=client)
    assert token.balanceOf(client) - before == owed > 0


def test_withdraw_nothing(market, stranger):
    with ape.reverts("settlement: nothing to withdraw"):
        market.withdraw(stranger, sender=stranger)


def test_withdraw_to_zero_address(market, job, client):
    market.cancel(job, 0, sender=client)
    with ape.reverts("settlement: zero receiver"):
        market.withdraw(ZERO, sender=client)


def test_withdraw_many(market, token, job, finalizable, provider, keeper, treasury, client, stranger):
    market.finalize(job, 0, sender=keeper)
    payees = [provider, stranger, keeper, treasury, client]
    owed = {p.address: market.credits(p) for p in payees}
    assert owed[stranger.address] == 0 and all(owed[p.address] > 0 for p in payees if p != stranger)
    before = {p.address: token.balanceOf(p) for p in payees}
    held = token.balanceOf(market)

    tx = market.withdraw_many(payees, sender=stranger)

    paid = [(e.account, e.receiver, e.amount) for e in tx.events.filter(market.Withdrawn)]
    assert paid == [(p.address, p.address, owed[p.address]) for p in payees if p != stranger]
    assert tx.return_value == sum(owed.values())
    for p in payees:
        assert token.balanceOf(p) - before[p.address] == owed[p.address]
        assert market.credits(p) == 0
    assert held - token.balanceOf(market) == sum(owed.values())
    # a stale list pays nothing and does not revert
    again = market.withdraw_many(payees, sender=stranger)
    assert again.return_value == 0
    assert len(again.events.filter(market.Withdrawn)) == 0


# ================================================================ views on unknown ids


def test_views_of_unknown_ids(market, job):
    with ape.reverts("job_market: unknown job"):
        market.job(job + 1)
    with ape.reverts("job_market: unknown job"):
        market.replica(job + 1, 0, 0)
    with ape.reverts("job_market: unknown shard"):
        market.replica(job, 1, 0)
    with ape.reverts("job_market: unknown replica"):
        market.replica(job, 0, 1)
    assert market.output_root(job, 0, 0) == b"\x00" * 32


# ================================================================ declines and failed shards


def _decline(market, job, shard, agent, reason=b"image not found"):
    replica = next(r for r in range(5) if market.replica(job, shard, r).state == ReplicaState.ASSIGNED)
    return market.decline(job, shard, replica, reason.ljust(32, b"\x00"), sender=agent)


def test_a_shard_declined_max_declines_times_fails_and_is_refunded(
    market, assets, token, post_job, register_asset, agent, keeper, registered_keeper, client, params, make_requirements
):
    """A reason that will not change (a bad digest) fails the shard after MAX_DECLINES declines,
    whichever assets declined: its budget goes back and no keeper can assign it again."""
    a, b = register_asset(), register_asset()
    job = post_job(shard_count=2)
    stakes = [assets.stake(x).amount for x in (a, b)]
    for n, asset in enumerate((a, b, a), start=1):
        market.assign(job, 0, asset, sender=keeper)
        tx = _decline(market, job, 0, agent)
        failed = tx.events.filter(market.ShardFailed)
        if n < MAX_DECLINES:
            assert not failed and market.replica(job, 0, 0).state == ReplicaState.OPEN
    assert (failed[0].job, failed[0].shard, failed[0].declines) == (job, 0, MAX_DECLINES)
    assert only(tx, market.ShardCancelled).replicas == 1
    assert market.replica(job, 0, 0).state == ReplicaState.CANCELLED
    assert market.job(job).unfinished == 1  # shard 1 still runs
    with ape.reverts("job_market: shard has no open replica"):
        market.assign(job, 0, b, sender=keeper)
    # The job's other shard is untouched; when it is cancelled too, every unit comes back.
    done = market.cancel(job, 1, sender=client)
    assert only(done, market.JobFinished).refund == quote_of(make_requirements(shard_count=2), params)
    assert market.credits(client) == quote_of(make_requirements(shard_count=2), params)
    assert [assets.stake(x).amount for x in (a, b)] == stakes  # declining is never slashed
    assert [assets.stake(x).open_leases for x in (a, b)] == [0, 0]


def test_a_failed_replicated_shard_keeps_its_running_replicas(
    chain, market, post_job, register_asset, agent, keeper, registered_keeper, submit, params
):
    """Failing a shard cancels only what has not started: a replica already running (past its
    decline window) still submits and is paid."""
    a, b, c = register_asset(), register_asset(), register_asset()
    job = post_job(replication=2)
    market.assign(job, 0, a, sender=keeper)  # replica 0 runs on a
    chain.mine(deltatime=params.decline_window + 1)
    for asset in (b, c, b):  # replica 1 is declined again and again
        market.assign(job, 0, asset, sender=keeper)
        tx = market.decline(job, 0, 1, b"image not found".ljust(32, b"\x00"), sender=agent)
    assert len(tx.events.filter(market.ShardFailed)) == 1
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.ASSIGNED, ReplicaState.CANCELLED]
    submit(agent, job, 0, 0)
    chain.mine(deltatime=params.challenge_window + 1)
    assert only(market.finalize(job, 0, sender=keeper), market.ShardFinalized).payment > 0


# ================================================================ a lease ends with its result


def test_an_asset_takes_its_next_lease_in_the_block_after_its_result(
    chain, market, assets, post_job, register_asset, agent, keeper, registered_keeper, submit
):
    """One lease of room: the next shard is assigned right after the result, while the first
    result is still inside its challenge window."""
    asset = register_asset(max_leases=1)
    job = post_job(shard_count=2)
    market.assign(job, 0, asset, sender=keeper)
    with ape.reverts("asset_stakes: asset at lease capacity"):
        market.assign(job, 1, asset, sender=keeper)
    result = submit(agent, job, 0, 0)
    assigned = market.assign(job, 1, asset, sender=keeper)
    assert assigned.block_number == result.block_number + 1
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED
    stake = assets.stake(asset)
    assert (stake.open_leases, stake.pending_results) == (1, 1)


def test_a_pending_result_keeps_the_stake_locked_until_final(
    chain, market, assets, asset, job, assigned, agent, keeper, provider, submit, params
):
    assets.request_unstake(asset, 1, sender=provider)
    submit(agent, job, 0, 0)
    chain.mine(deltatime=assets.UNBONDING_DELAY() + 1)
    with ape.reverts("asset_stakes: asset has results that can still be challenged"):
        assets.withdraw_stake(asset, sender=provider)
    market.finalize(job, 0, sender=keeper)
    assert assets.stake(asset).pending_results == 0
    assert assets.withdraw_stake(asset, sender=provider).return_value in (1, None)
    assert assets.stake(asset).unbonding == 0
