"""The SDK's chain seam (computenet.market.Market) against a real anvil.

Reads come back as the domain objects that were written; actions run a whole job
through the SDK alone; every pre-flight refusal carries the very reason the chain gives
when the same call is sent raw; and the market can be rebuilt from its events.
"""

import dataclasses
from types import SimpleNamespace

import ape
import pytest
from ape.exceptions import ContractLogicError
from eth_utils import keccak
from hypothesis import event, given
from hypothesis import strategies as st
from web3.exceptions import ContractLogicError as Web3ContractLogicError

from computenet import preflight
from computenet.domain import (
    Asset,
    Job,
    Replica,
    ReplicaState,
    Requirements,
    Spec,
    Stake,
    Verification,
    settle_amounts,
)
from computenet.errors import (
    ComputeAssetError,
    ContractRevert,
    JobMarketError,
    KeeperError,
    MarketParamsError,
    OwnershipError,
    SettlementError,
    StakeError,
    TokenError,
)
from computenet.events import EVENTS, from_log
from computenet.market import Market, typed_reverts
from computenet.receipts import sign_cancel

TOKEN = 10**6
STAKE = 1_000 * TOKEN
MANIFEST = keccak(b"manifest")
ROOT = keccak(b"outputs")
ZERO = b"\x00" * 32
DAY = 86_400
H100 = 1


@pytest.fixture
def sdk(stack):
    return Market.from_stack(stack)


@pytest.fixture
def newcomer(accounts, token):
    """An account with tokens but no approvals, so the SDK must approve by itself."""
    who = accounts[14]
    token.faucet(who, 100_000 * TOKEN, sender=who)
    return who


@pytest.fixture
def newcomer2(accounts, token):
    who = accounts[15]
    token.faucet(who, 100_000 * TOKEN, sender=who)
    return who


def agrees(sdk_call, raw_call, reason, cls):
    """The SDK refuses before sending, with `cls` and `reason`; the chain says exactly `reason`."""
    with pytest.raises(cls) as info:
        sdk_call()
    assert info.value.reason == reason
    assert info.value.preflight is True
    assert str(info.value) == f"would revert: {reason}"
    with ape.reverts(reason):
        raw_call()


# ------------------------------------------------------------------ reads


def test_asset_reads_back_what_was_registered(sdk, provider, agent, make_spec):
    spec = make_spec(price=123, region=840)
    commit = keccak(b"spec document")
    asset_id = sdk.register_asset(spec, agent, commit, sender=provider)
    assert sdk.asset(asset_id) == Asset(
        id=asset_id,
        owner=provider.address,
        agent=agent.address,
        spec=spec,
        commit=commit,
        stake=Stake(amount=0, open_leases=0, gpus_leased=0, unbond_at=0, unbonding=0),
    )
    sdk.add_stake(asset_id, 250 * TOKEN, sender=provider)
    assert sdk.stake(asset_id) == Stake(amount=250 * TOKEN, open_leases=0, gpus_leased=0, unbond_at=0, unbonding=0)
    assert sdk.asset(asset_id).stake.available == 250 * TOKEN
    assert sdk.assets_of(provider) == [sdk.asset(asset_id)]
    assert sdk.assets_of(agent) == []


def test_asset_reads_types_are_plain(sdk, asset):
    read = sdk.asset(asset)
    assert type(read.spec.active) is bool and type(read.spec.price) is int
    assert type(read.commit) is bytes and type(read.owner) is str


@pytest.mark.parametrize("asset_id", [0, 2, 999])
def test_unknown_asset_is_none(sdk, asset, asset_id):
    assert sdk.asset(asset_id) is None


def test_job_and_requirements_from_the_chains_tuples(sdk, client, make_requirements, params):
    """The one decoding of JobMarket.job's tuple: what a plain web3 call returns, field for field."""
    req = make_requirements(shard_count=4, verification=Verification.SPOT_CHECK, max_price=1_000)
    job_id = sdk.post_job(MANIFEST, req, sender=client)
    raw = sdk.calls.market.functions.job(job_id).call()
    job = Job.from_chain(job_id, raw)
    assert job.requirements == req and job.requirements.verification is Verification.SPOT_CHECK
    assert (job.id, job.client, job.manifest_hash, job.unfinished) == (job_id, client.address, MANIFEST, 4)
    assert job.escrow == req.quote(params.keeper_fee_bps, params.protocol_fee_bps)
    assert (job.keeper_fee_bps, job.protocol_fee_bps) == (params.keeper_fee_bps, params.protocol_fee_bps)
    assert Requirements.from_chain(req.as_tuple()) == req
    assert Requirements.from_chain(sdk.calls.market.functions.job(job_id).call()[4]) == req
    with pytest.raises(ValueError, match="11 fields, not 10"):
        Requirements.from_chain(req.as_tuple()[:10])


def test_a_read_only_market_over_plain_web3_reads_the_same(sdk, stack, client, make_requirements, asset):
    """The HTTP services' Market (no ape contracts) reads exactly what the ape-backed one does."""
    from web3 import Web3

    web3 = Web3(Web3.HTTPProvider(ape.chain.provider.uri))
    reader = Market.over_web3(web3, stack.market.address, deployment_block=7)
    assert reader.addresses == sdk.addresses and reader.deployment_block == 7
    job_id = sdk.post_job(MANIFEST, make_requirements(shard_count=2), sender=client)
    assert reader.job(job_id) == sdk.job(job_id)
    assert reader.shards(job_id) == sdk.shards(job_id)
    assert reader.asset(asset) == sdk.asset(asset)
    assert reader.all_assets() == [dataclasses.replace(sdk.asset(asset), commit=b"")]
    assert reader.parameters() == sdk.parameters()
    with pytest.raises(JobMarketError, match="unknown shard"):
        reader.replica(job_id, 5, 0)


def test_job_reads_back_what_was_posted(sdk, client, make_requirements, params):
    req = make_requirements(shard_count=3, replication=2, min_vram_mib=16_384, gpu_count=2, max_price=77)
    job_id = sdk.post_job(MANIFEST, req, sender=client)
    assert sdk.job(job_id) == Job(
        id=job_id,
        client=client.address,
        escrow=req.quote(params.keeper_fee_bps, params.protocol_fee_bps),
        manifest_hash=MANIFEST,
        requirements=req,
        keeper_fee_bps=params.keeper_fee_bps,
        protocol_fee_bps=params.protocol_fee_bps,
        unfinished=3,
    )
    assert sdk.job(job_id).requirements.verification is Verification.REPLICATED
    shards = sdk.shards(job_id)
    assert [s.index for s in shards] == [0, 1, 2]
    assert all(s.state == ReplicaState.OPEN and len(s.replicas) == 2 for s in shards)
    assert shards[1].replicas[1] == Replica(
        job=job_id,
        shard=1,
        index=1,
        asset=0,
        keeper_id=0,
        state=ReplicaState.OPEN,
        lease=0,
        price=0,
        deadline=0,
        since=0,
        gpu_seconds=0,
        output_root=ZERO,
    )


@pytest.mark.parametrize("job_id", [0, 2, 999])
def test_unknown_job_is_none(sdk, job, job_id):
    assert sdk.job(job_id) is None


def test_shard_of_unknown_job_is_a_typed_refusal(sdk):
    with pytest.raises(JobMarketError, match="job_market: unknown job"):
        sdk.shard(999, 0)
    with pytest.raises(JobMarketError, match="job_market: unknown job"):
        sdk.shards(999)


def test_replica_and_shard_after_assign(sdk, chain, job, asset, keeper, registered_keeper, params):
    index = sdk.assign(job, 0, asset, sender=keeper)
    head = chain.blocks.head.timestamp
    req = sdk.job(job).requirements
    assert index == 0
    assert sdk.replica(job, 0, 0) == Replica(
        job=job,
        shard=0,
        index=0,
        asset=asset,
        keeper_id=1,
        state=ReplicaState.ASSIGNED,
        lease=1,
        price=100,
        deadline=head + req.lease_seconds(params.lease_grace),
        since=head,
        gpu_seconds=0,
        output_root=ZERO,
    )
    assert sdk.shard(job, 0).state == ReplicaState.ASSIGNED
    assert sdk.stake(asset).open_leases == 1


def test_parameters_paused_and_quote(sdk, owner, params, make_requirements):
    assert sdk.parameters() == params
    assert sdk.paused() is False
    for req in [
        make_requirements(),
        make_requirements(shard_count=7, replication=3, max_price=13, max_gpu_seconds=12_345),
        make_requirements(max_price=2**64 - 1, max_gpu_seconds=2**32 - 1, shard_count=1024, replication=5),
    ]:
        assert sdk.quote(req) == req.quote(params.keeper_fee_bps, params.protocol_fee_bps)
    sdk.market.pause(sender=owner)
    assert sdk.paused() is True


def test_now_is_the_next_block_time(sdk, chain):
    # The pending block follows the wall clock, so a second may tick between two reads.
    before = chain.pending_timestamp
    now = sdk.now()
    assert before <= now <= chain.pending_timestamp
    assert now >= chain.blocks.head.timestamp
    assert sdk.chain_id == chain.chain_id


# ------------------------------------------------------------------ actions


def run_lifecycle(sdk, chain, *, provider, client, keeper, stranger, agent, make_spec, treasury, params):
    """A three-shard job through the SDK alone: shard 0 is run, submitted and finalized;
    shard 1 is leased, left to expire, reclaimed and then cancelled; shard 2 is cancelled
    untouched. Everyone paid withdraws. Returns the ids involved."""
    token = sdk.token
    asset = sdk.register_asset(make_spec(), agent, keccak(b"node"), sender=provider)
    slow = sdk.register_asset(make_spec(price=90), agent, keccak(b"slow node"), sender=provider)
    sdk.add_stake(asset, STAKE, sender=provider)
    sdk.add_stake(slow, STAKE, sender=provider)
    sdk.keepers.register(100 * TOKEN, sender=keeper)

    req = Requirements(
        min_vram_mib=40_960,
        gpu_count=1,
        max_price=200,
        max_gpu_seconds=3_600,
        deadline=sdk.now() + 7 * DAY,
        shard_count=3,
    )
    budget = sdk.quote(req)
    before = token.balanceOf(client)
    job = sdk.post_job(MANIFEST, req, sender=client)
    assert token.balanceOf(client) == before - budget
    assert sdk.job(job).escrow == budget

    assert sdk.assign(job, 0, asset, sender=keeper) == 0
    assert sdk.assign(job, 1, slow, sender=keeper) == 0
    chain.pending_timestamp = max(chain.pending_timestamp, sdk.replica(job, 0, 0).since + 1_000)  # the run's time
    sdk.submit_result(job, 0, 0, ROOT, 1_000, 0, agent_key=agent.private_key, sender=stranger)
    assert sdk.replica(job, 0, 0).state == ReplicaState.SUBMITTED
    assert sdk.replica(job, 0, 0).output_root == ROOT
    assert sdk.shard(job, 0).state == ReplicaState.SUBMITTED

    chain.mine(deltatime=req.lease_seconds(params.lease_grace) + 1)
    slashed_before = sdk.stake(slow).amount
    sdk.reclaim(job, 1, 0, sender=stranger)
    slashed = slashed_before * params.slash_bps // 10_000
    assert sdk.replica(job, 1, 0).state == ReplicaState.OPEN
    assert sdk.stake(slow) == Stake(amount=STAKE - slashed, open_leases=0, gpus_leased=0, unbond_at=0, unbonding=0)
    assert sdk.credits(treasury) == slashed  # the whole slash: reclaiming earns the caller nothing
    assert sdk.credits(stranger) == 0

    sdk.finalize(job, 0, sender=stranger)
    payment, keeper_fee, protocol_fee = settle_amounts(100, 1_000, params.keeper_fee_bps, params.protocol_fee_bps)
    assert sdk.shard(job, 0).state == ReplicaState.FINALIZED
    assert sdk.credits(provider) == payment
    assert sdk.credits(keeper) == keeper_fee
    assert sdk.credits(treasury) == slashed + protocol_fee
    assert sdk.job(job).unfinished == 2

    sdk.cancel(job, 1, sender=client)
    sdk.cancel(job, 2, sender=client)
    assert [s.state for s in sdk.shards(job)] == [
        ReplicaState.FINALIZED,
        ReplicaState.CANCELLED,
        ReplicaState.CANCELLED,
    ]
    assert sdk.job(job).unfinished == 0 and sdk.job(job).escrow == 0
    refund = budget - payment - keeper_fee - protocol_fee
    assert sdk.credits(client) == refund

    paid = {}
    for who in (provider, keeper, client):
        held = token.balanceOf(who)
        paid[who.address] = sdk.withdraw(sender=who)
        assert token.balanceOf(who) == held + paid[who.address]
        assert sdk.credits(who) == 0
    assert paid == {provider.address: payment, keeper.address: keeper_fee, client.address: refund}
    return SimpleNamespace(job=job, assets=(asset, slow), budget=budget, treasury_credit=slashed + protocol_fee)


def test_full_lifecycle_through_the_sdk(
    sdk, chain, newcomer, newcomer2, keeper, stranger, agent, make_spec, treasury, params, token
):
    """Provider and client are fresh accounts with no approvals: the SDK approves what it needs."""
    assert token.allowance(newcomer, sdk.assets) == 0 and token.allowance(newcomer2, sdk.market) == 0
    done = run_lifecycle(
        sdk,
        chain,
        provider=newcomer,
        client=newcomer2,
        keeper=keeper,
        stranger=stranger,
        agent=agent,
        make_spec=make_spec,
        treasury=treasury,
        params=params,
    )
    assert token.allowance(newcomer, sdk.assets) == 0  # approved exactly what was staked
    assert token.allowance(newcomer2, sdk.market) == 0  # approved exactly the budget
    assert sdk.credits(treasury) == done.treasury_credit
    assert sdk.stake(done.assets[0]).open_leases == 0


def test_add_stake_approves_only_when_needed(sdk, newcomer, provider, agent, make_spec, token):
    mine = sdk.register_asset(make_spec(), agent, keccak(b"a"), sender=newcomer)
    receipt = sdk.add_stake(mine, 150 * TOKEN, sender=newcomer)
    assert sdk.stake(mine).amount == 150 * TOKEN
    assert receipt.events.filter(sdk.assets.StakeAdded)[0].stake == 150 * TOKEN
    assert token.allowance(newcomer, sdk.assets) == 0  # approved exactly the stake, which it spent
    # the provider holds a max approval, which the token never lowers: no new approval was sent
    theirs = sdk.register_asset(make_spec(), agent, keccak(b"b"), sender=provider)
    sdk.add_stake(theirs, 150 * TOKEN, sender=provider)
    assert token.allowance(provider, sdk.assets) == 2**256 - 1


def test_withdraw_to_another_receiver(
    sdk, chain, asset, job, keeper, registered_keeper, agent, provider, stranger, params, token, run_for
):
    sdk.assign(job, 0, asset, sender=keeper)
    run_for(job, 0, 0, 500)
    sdk.submit_result(job, 0, 0, ROOT, 500, 0, agent_key=agent.private_key, sender=provider)
    chain.mine(deltatime=params.challenge_window + 1)
    sdk.finalize(job, 0, sender=keeper)
    held = token.balanceOf(stranger)
    assert sdk.withdraw(sender=provider, receiver=stranger) == 100 * 500
    assert token.balanceOf(stranger) == held + 100 * 500


def test_withdraw_nothing_is_refused_before_sending(sdk, stranger):
    agrees(
        lambda: sdk.withdraw(sender=stranger),
        lambda: sdk.market.withdraw(stranger, sender=stranger),
        "settlement: nothing to withdraw",
        SettlementError,
    )


def test_submit_with_a_wrong_key_is_refused_before_sending(
    sdk, asset, job, keeper, registered_keeper, stranger, provider, sign_receipt
):
    sdk.assign(job, 0, asset, sender=keeper)
    reason = "job_market: receipt not signed by the asset's agent"
    signature = sign_receipt(stranger, job, 0, 0, ROOT, 100)
    agrees(
        lambda: sdk.submit_result(job, 0, 0, ROOT, 100, 0, agent_key=stranger.private_key, sender=provider),
        lambda: sdk.market.submit_result(job, 0, 0, ROOT, 100, 0, signature, sender=provider),
        reason,
        JobMarketError,
    )


def test_submit_caps_metered_use(sdk, asset, job, keeper, registered_keeper, agent, provider, run_for):
    sdk.assign(job, 0, asset, sender=keeper)
    run_for(job, 0, 0, 3_800)  # past the job's 3,600 cap, inside its lease (3,600 s + grace)
    sdk.submit_result(job, 0, 0, ROOT, 3_800, 3, agent_key=agent.private_key, sender=provider)
    assert sdk.replica(job, 0, 0).gpu_seconds == sdk.job(job).requirements.max_gpu_seconds


# ------------------------------------------------------------------ pre-flight agreement: assign


def assign_case(sdk, keeper, job_id, shard, asset_id, reason, cls):
    agrees(
        lambda: sdk.assign(job_id, shard, asset_id, sender=keeper),
        lambda: sdk.market.assign(job_id, shard, asset_id, sender=keeper),
        reason,
        cls,
    )


def test_assign_refusals_match_the_chain(
    sdk, chain, owner, registered_keeper, provider, provider2, register_asset, post_job, params
):
    keeper = registered_keeper  # registered, bonded and active
    asset = register_asset(gpu_count=3)
    job = post_job()
    J = "job_market: "
    assign_case(sdk, keeper, 999, 0, asset, J + "unknown job", JobMarketError)
    assign_case(sdk, keeper, job, 1, asset, J + "unknown shard", JobMarketError)
    assign_case(sdk, keeper, job, 0, 999, "compute_asset: unknown asset", ComputeAssetError)
    sold = register_asset(stake=0)  # no agent and no stake: the agent is checked first
    sdk.assets.transferFrom(provider, provider2, sold, sender=provider)
    assign_case(sdk, keeper, job, 0, sold, "compute_asset: no agent", ComputeAssetError)
    assign_case(
        sdk, keeper, job, 0, register_asset(stake=params.min_stake - 1), "asset_stakes: stake below minimum", StakeError
    )
    paused_asset = register_asset()
    sdk.assets.pause(paused_asset, sender=provider)
    assign_case(sdk, keeper, job, 0, paused_asset, J + "asset is paused", JobMarketError)
    assign_case(sdk, keeper, post_job(gpu_count=2), 0, register_asset(), J + "asset has too few gpus", JobMarketError)
    assign_case(sdk, keeper, job, 0, register_asset(vram_mib=40_959), J + "asset has too little vram", JobMarketError)
    assign_case(sdk, keeper, job, 0, register_asset(price=201), J + "asset price above cap", JobMarketError)
    assign_case(
        sdk,
        keeper,
        job,
        0,
        register_asset(expire=chain.pending_timestamp + 3_600),
        J + "asset expires before the lease ends",
        JobMarketError,
    )
    lease = 3_600 + params.lease_grace
    tight = post_job(deadline=chain.pending_timestamp + lease + 100)
    chain.mine(deltatime=200)
    assign_case(sdk, keeper, tight, 0, asset, J + "lease would end after the deadline", JobMarketError)

    sdk.assign(job, 0, asset, sender=keeper)
    assign_case(sdk, keeper, job, 0, register_asset(), J + "shard has no open replica", JobMarketError)
    pair = post_job(replication=2)
    sdk.assign(pair, 0, asset, sender=keeper)
    assign_case(sdk, keeper, pair, 0, asset, J + "asset already runs this shard", JobMarketError)

    sdk.market.pause(sender=owner)
    assign_case(sdk, keeper, pair, 0, register_asset(), "market_params: paused", MarketParamsError)


def test_lease_limit_refusals_match_the_chain(sdk, registered_keeper, register_asset, post_job):
    """An asset's open leases are bounded by max_leases, and the GPUs they hold by gpu_count."""
    keeper = registered_keeper
    job = post_job(shard_count=3)
    one_lease = register_asset(gpu_count=2, max_leases=1)
    sdk.assign(job, 0, one_lease, sender=keeper)
    assign_case(sdk, keeper, job, 1, one_lease, "asset_stakes: asset at lease capacity", StakeError)
    one_gpu = register_asset(gpu_count=1, max_leases=3)
    sdk.assign(job, 1, one_gpu, sender=keeper)
    assign_case(sdk, keeper, job, 2, one_gpu, "asset_stakes: asset gpus all leased", StakeError)
    cpu = post_job(gpu_count=0)  # CPU work holds no GPU: the busy GPU does not stop it
    assert sdk.assign(cpu, 0, one_gpu, sender=keeper) == 0
    assert (sdk.stake(one_gpu).open_leases, sdk.stake(one_gpu).gpus_leased) == (2, 1)


def test_assign_by_a_non_keeper_gives_the_registry_reason(sdk, job, asset, stranger):
    with pytest.raises(KeeperError) as info:
        sdk.assign(job, 0, asset, sender=stranger)
    assert info.value.reason == "keeper_registry: not a keeper"
    assert info.value.preflight is True  # found by a read; nothing was sent
    with ape.reverts("keeper_registry: not a keeper"):
        sdk.market.assign(job, 0, asset, sender=stranger)


def test_assign_while_paused_by_a_non_keeper(sdk, owner, job, asset, stranger):
    sdk.market.pause(sender=owner)
    with ape.reverts("market_params: paused"):
        sdk.market.assign(job, 0, asset, sender=stranger)
    with pytest.raises(MarketParamsError, match="market_params: paused"):
        sdk.assign(job, 0, asset, sender=stranger)


def test_assign_asset_id_above_uint32(sdk, job, registered_keeper):
    with ape.reverts("job_market: unknown asset"):
        sdk.market.assign(job, 0, 2**32, sender=registered_keeper)
    assign_case(sdk, registered_keeper, job, 0, 2**32, "job_market: unknown asset", JobMarketError)


# ------------------------------------------------------------------ pre-flight agreement: the other actions


def test_submit_refusals_match_the_chain(
    sdk, chain, register_asset, post_job, registered_keeper, agent, provider, sign_receipt, params
):
    asset = register_asset(gpu_count=2)
    job = post_job(shard_count=3)

    def case(shard, root, reason):
        signature = sign_receipt(agent, job, shard, 0, root, 100)
        agrees(
            lambda: sdk.submit_result(job, shard, 0, root, 100, 0, agent_key=agent.private_key, sender=provider),
            lambda: sdk.market.submit_result(job, shard, 0, root, 100, 0, signature, sender=provider),
            reason,
            JobMarketError,
        )

    case(0, ROOT, "job_market: replica not assigned")
    sdk.assign(job, 0, asset, sender=registered_keeper)
    case(0, ZERO, "job_market: empty output root")
    sdk.assign(job, 1, asset, sender=registered_keeper)
    chain.mine(deltatime=3_600 + params.lease_grace + 1)
    case(1, ROOT, "job_market: lease expired")


def test_a_claim_beyond_the_lease_time_is_refused_before_sending(
    sdk, chain, asset, job, registered_keeper, agent, provider
):
    """The SDK refuses, as the chain would, a claim beyond the time since assignment × GPUs."""
    sdk.assign(job, 0, asset, sender=registered_keeper)
    claim = 10**6
    signature = sdk.receipt_for(job, 0, 0, ROOT, claim, 0).sign(agent.private_key, chain.chain_id, sdk.market.address)
    agrees(
        lambda: sdk.submit_result(job, 0, 0, ROOT, claim, 0, agent_key=agent.private_key, sender=provider),
        lambda: sdk.market.submit_result(job, 0, 0, ROOT, claim, 0, signature, sender=provider),
        "job_market: gpu_seconds exceed the lease's time",
        JobMarketError,
    )


def test_finalize_refusals_match_the_chain(sdk, asset, job, registered_keeper, agent, provider, run_for):
    def case(reason):
        agrees(
            lambda: sdk.finalize(job, 0, sender=provider),
            lambda: sdk.market.finalize(job, 0, sender=provider),
            reason,
            JobMarketError,
        )

    case("job_market: shard not ready")
    sdk.assign(job, 0, asset, sender=registered_keeper)
    case("job_market: shard not ready")
    run_for(job, 0, 0, 100)
    sdk.submit_result(job, 0, 0, ROOT, 100, 0, agent_key=agent.private_key, sender=provider)
    case("job_market: challenge window open")
    agrees(
        lambda: sdk.finalize(999, 0, sender=provider),
        lambda: sdk.market.finalize(999, 0, sender=provider),
        "job_market: unknown job",
        JobMarketError,
    )


def test_reclaim_refusals_match_the_chain(sdk, chain, owner, asset, job, registered_keeper, stranger, params):
    def case(reason, cls=JobMarketError):
        agrees(
            lambda: sdk.reclaim(job, 0, 0, sender=stranger),
            lambda: sdk.market.reclaim(job, 0, 0, sender=stranger),
            reason,
            cls,
        )

    case("job_market: replica not assigned")
    sdk.assign(job, 0, asset, sender=registered_keeper)
    case("job_market: lease not expired")
    chain.mine(deltatime=3_600 + params.lease_grace + 1)
    sdk.market.pause(sender=owner)  # a pause does not stop a reclaim, only its slash
    sdk.reclaim(job, 0, 0, sender=stranger)
    assert sdk.replica(job, 0, 0).state == ReplicaState.OPEN
    assert sdk.stake(asset).amount == 1_000 * TOKEN


def test_cancel_refusals_match_the_chain(chain, sdk, post_job, asset, client, stranger, registered_keeper):
    job = post_job(shard_count=2, replication=2)

    def case(shard, sender, reason):
        agrees(
            lambda: sdk.cancel(job, shard, sender=sender),
            lambda: sdk.market.cancel(job, shard, sender=sender),
            reason,
            JobMarketError,
        )

    case(0, stranger, "job_market: caller is not the client")
    sdk.assign(job, 0, asset, sender=registered_keeper)
    chain.mine(deltatime=sdk.parameters().decline_window + 1)  # replica 0 has started
    case(0, client, "job_market: shard already assigned")
    sdk.cancel(job, 1, sender=client)
    case(1, client, "job_market: nothing to cancel")
    agrees(
        lambda: sdk.cancel(999, 0, sender=client),
        lambda: sdk.market.cancel(999, 0, sender=client),
        "job_market: unknown job",
        JobMarketError,
    )


def test_a_signed_cancel_is_checked_before_it_is_sent(chain, sdk, post_job, client, stranger):
    """The SDK refuses what the court would (a wrong signer, an expired signature) without
    sending anything, and relays a good one: the client's refund, the relayer's gas."""
    job = post_job()
    until = chain.pending_timestamp + 600
    market = str(sdk.market.address)
    wrong = sign_cancel(stranger.private_key, chain.chain_id, market, job, 0, until)
    agrees(
        lambda: sdk.cancel_with_signature(job, 0, until, wrong, sender=stranger),
        lambda: sdk.court.cancel_with_signature(job, 0, until, wrong, sender=stranger),
        "dispute_court: cancel not signed by the client",
        ContractRevert,
    )
    good = sign_cancel(client.private_key, chain.chain_id, market, job, 0, until)
    escrow, before = sdk.job(job).escrow, sdk.credits(client)
    sdk.cancel_with_signature(job, 0, until, good, sender=stranger)
    assert sdk.replica(job, 0, 0).state == ReplicaState.CANCELLED
    assert sdk.credits(client) - before == escrow > 0
    with pytest.raises(ContractRevert, match="expired"):
        sdk.cancel_with_signature(job, 0, chain.pending_timestamp - 1, good, sender=stranger)


def test_reads_for_unknown_ids_raise_typed_errors(sdk, job, client, registered_keeper, agent):
    for call in [
        lambda: sdk.reclaim(999, 0, 0, sender=registered_keeper),
        lambda: sdk.reclaim(job, 5, 0, sender=registered_keeper),
        lambda: sdk.submit_result(999, 0, 0, ROOT, 1, 0, agent_key=agent.private_key, sender=registered_keeper),
        lambda: sdk.cancel(job, 5, sender=client),
        lambda: sdk.finalize(job, 5, sender=client),
    ]:
        with pytest.raises(ContractRevert):
            call()


def requirement_errors(now, lease_grace):
    lease = 3_600 + lease_grace
    base = Requirements(min_vram_mib=40_960, gpu_count=1, max_price=200, max_gpu_seconds=3_600, deadline=now + 7 * DAY)
    r = dataclasses.replace
    return [
        (MANIFEST, r(base, shard_count=0), "job_market: shard count out of range"),
        (MANIFEST, r(base, shard_count=1025), "job_market: shard count out of range"),
        (MANIFEST, r(base, replication=0), "job_market: replication out of range"),
        (
            MANIFEST,
            r(base, replication=6, verification=Verification.REPLICATED),
            "job_market: replication out of range",
        ),
        (MANIFEST, r(base, verification=5), "job_market: unknown verification mode"),
        (
            MANIFEST,
            r(base, verification=Verification.REPLICATED),
            "job_market: verification mode does not match replication",
        ),
        (
            MANIFEST,
            r(base, replication=2, verification=Verification.SPOT_CHECK),
            "job_market: verification mode does not match replication",
        ),
        (MANIFEST, r(base, max_price=0), "job_market: zero price cap"),
        (MANIFEST, r(base, max_gpu_seconds=0), "job_market: zero gpu-seconds"),
        (MANIFEST, r(base, deadline=2**40), "job_market: deadline out of range"),
        (MANIFEST, r(base, deadline=now + lease - 60), "job_market: deadline too soon"),
        (
            MANIFEST,
            r(base, max_price=2**64 - 1, max_gpu_seconds=2**32 - 1, deadline=2**40 - 1),
            "job_market: budget too large",
        ),
        (ZERO, base, "job_market: empty manifest hash"),
    ]


def test_post_refusals_match_the_chain(sdk, chain, owner, client, params):
    for manifest, req, reason in requirement_errors(chain.pending_timestamp, params.lease_grace):
        agrees(
            lambda: sdk.post_job(manifest, req, sender=client),
            lambda: sdk.market.post_job(manifest, req.as_tuple(), sender=client),
            reason,
            JobMarketError,
        )
    req = Requirements(
        min_vram_mib=0, gpu_count=1, max_price=200, max_gpu_seconds=3_600, deadline=chain.pending_timestamp + DAY
    )
    sdk.market.pause(sender=owner)
    agrees(
        lambda: sdk.post_job(MANIFEST, req, sender=client),
        lambda: sdk.market.post_job(MANIFEST, req.as_tuple(), sender=client),
        "market_params: paused",
        MarketParamsError,
    )


def test_post_without_balance_matches_the_chain(sdk, chain, accounts, token):
    broke = accounts[14]
    token.approve(sdk.market, 2**256 - 1, sender=broke)
    req = Requirements(
        min_vram_mib=0, gpu_count=1, max_price=200, max_gpu_seconds=3_600, deadline=chain.pending_timestamp + DAY
    )
    agrees(
        lambda: sdk.post_job(MANIFEST, req, sender=broke),
        lambda: sdk.market.post_job(MANIFEST, req.as_tuple(), sender=broke),
        "ERC20: transfer amount exceeds balance",
        TokenError,
    )


# ------------------------------------------------------------------ assign: pre-flight against the chain, at random

# Each choice lists the fine values first and more often, so about one example in six
# passes every rule and most fail on one or two.
specs = st.fixed_dictionaries(
    dict(
        gpu_count=st.sampled_from([4, 2, 1, 1]),
        vram_mib=st.sampled_from([81_920, 81_920, 40_960, 16_384]),
        price=st.sampled_from([100, 100, 50, 200, 250]),
        expire_after_lease=st.sampled_from([30 * DAY, 30 * DAY, 30 * DAY, 120, -120]),
        active=st.sampled_from([True] * 5 + [False]),
        stake=st.sampled_from([STAKE, STAKE, STAKE, 100 * TOKEN, 99 * TOKEN, 0]),
        max_leases=st.sampled_from([4, 4, 4, 1]),
    )
)
requirements = st.fixed_dictionaries(
    dict(
        gpu_count=st.sampled_from([1, 1, 0, 2, 4]),
        min_vram_mib=st.sampled_from([40_960, 40_960, 0, 16_384, 81_920]),
        max_price=st.sampled_from([200, 200, 100, 50]),
        max_gpu_seconds=st.sampled_from([3_600, 600, 7_200]),
        slack=st.sampled_from([7 * DAY, 7 * DAY, 2 * 3_600, 60]),
        replication=st.sampled_from([1, 1, 2]),
    )
)
situations = st.fixed_dictionaries(
    dict(
        warp=st.sampled_from([0, 0, 0, 3_600]),
        shard=st.sampled_from([0] * 7 + [1]),
        asset_known=st.sampled_from([True] * 7 + [False]),
        taken=st.sampled_from(["none", "none", "none", "same asset", "other asset"]),
        elsewhere=st.sampled_from([None] * 5 + [0, 1, 2]),  # GPUs another job's lease holds on the asset
        sold=st.sampled_from([False] * 7 + [True]),  # the asset changed hands: no agent
        paused=st.sampled_from([False] * 7 + [True]),
    )
)


def chain_outcome(chain, contract, method, args, sender):
    """The revert reason of `contract.method(*args)` from `sender` on the next block, or None.

    Asked with a plain eth_call: ape would also trace and print every revert, which
    makes a few dozen examples take minutes."""
    data = getattr(contract, method).encode_input(*args)
    try:
        chain.provider.web3.eth.call({"from": sender.address, "to": contract.address, "data": data}, "pending")
    except Web3ContractLogicError as err:
        return str(err.message).removeprefix("execution reverted: ")
    return None


def registered(sdk, spec, agent, owner):
    receipt = sdk.assets.register(spec.as_tuple(), agent, keccak(b"node"), sender=owner)
    return receipt.events.filter(sdk.assets.AssetRegistered)[0].asset


@given(spec=specs, req=requirements, situation=situations)
def test_assign_preflight_predicts_the_chain(
    sdk, chain, owner, provider, agent, client, registered_keeper, params, spec, req, situation
):
    """assign_problem(...) is None exactly when assign succeeds, and otherwise is the chain's reason."""
    snapshot = chain.snapshot()
    try:
        now = chain.pending_timestamp
        lease = -(-req["max_gpu_seconds"] // max(req["gpu_count"], 1)) + params.lease_grace
        expire = now + lease + spec["expire_after_lease"]
        node = Spec(
            H100, spec["vram_mib"], spec["gpu_count"], 8, 276, spec["price"], expire, max_leases=spec["max_leases"]
        )
        asset = registered(sdk, node, agent, provider)
        if spec["stake"]:
            sdk.assets.add_stake(asset, spec["stake"], sender=provider)
        if not spec["active"]:
            sdk.assets.pause(asset, sender=provider)
        if situation["sold"]:
            sdk.assets.transferFrom(provider, client, asset, sender=provider)
        if situation["elsewhere"] is not None:
            busy = Requirements(
                min_vram_mib=0,
                gpu_count=situation["elsewhere"],
                max_price=1_000,
                max_gpu_seconds=60,
                deadline=now + 30 * DAY,
            )
            other_job = (
                sdk.market.post_job(MANIFEST, busy.as_tuple(), sender=client).events.filter(sdk.market.JobPosted)[0].job
            )
            if chain_outcome(chain, sdk.market, "assign", (other_job, 0, asset), registered_keeper) is None:
                sdk.market.assign(other_job, 0, asset, sender=registered_keeper)
        wanted = Requirements(
            min_vram_mib=req["min_vram_mib"],
            gpu_count=req["gpu_count"],
            max_price=req["max_price"],
            max_gpu_seconds=req["max_gpu_seconds"],
            deadline=now + lease + req["slack"],
            replication=req["replication"],
            verification=Verification.REPLICATED if req["replication"] > 1 else Verification.OPTIMISTIC,
        )
        job = sdk.market.post_job(MANIFEST, wanted.as_tuple(), sender=client).events.filter(sdk.market.JobPosted)[0].job
        if situation["taken"] != "none":
            other = asset
            if situation["taken"] == "other asset":
                big = Spec(H100, 81_920, 4, 8, 276, 1, now + 30 * DAY)
                other = registered(sdk, big, agent, provider)
                sdk.assets.add_stake(other, STAKE, sender=provider)
            if chain_outcome(chain, sdk.market, "assign", (job, 0, other), registered_keeper) is None:
                sdk.market.assign(job, 0, other, sender=registered_keeper)
        if situation["paused"]:
            sdk.market.pause(sender=owner)
        if situation["warp"]:
            chain.mine(deltatime=situation["warp"])
        target = asset if situation["asset_known"] else asset + 100
        shard = situation["shard"]

        record = sdk.job(job)
        replicas = sdk.shard(job, shard).replicas if shard < record.requirements.shard_count else ()
        problem = preflight.assign_problem(
            record, shard, replicas, sdk.asset(target), sdk.parameters(), sdk.now(), sdk.paused()
        )
        event(f"assign: {problem}")
        assert problem == chain_outcome(chain, sdk.market, "assign", (job, shard, target), registered_keeper)
        if problem is None:  # and the real transaction goes through
            receipt = sdk.market.assign(job, shard, target, sender=registered_keeper)
            assert receipt.events.filter(sdk.market.ShardAssigned)[0].asset == target
    finally:
        chain.restore(snapshot)


# ------------------------------------------------------------------ typed_reverts


def test_typed_reverts_types_a_raw_revert(sdk, stranger):
    with pytest.raises(OwnershipError) as info:
        with typed_reverts():
            sdk.market.pause(sender=stranger)
    assert info.value.reason == "ownable: caller is not the owner"
    assert info.value.preflight is False
    assert str(info.value) == "reverted: ownable: caller is not the owner"
    assert isinstance(info.value.__cause__, ContractLogicError)


def test_typed_reverts_other_modules(sdk, asset, stranger, keeper):
    with pytest.raises(StakeError, match="asset_stakes: caller is not the asset owner"):
        with typed_reverts():
            sdk.assets.request_unstake(asset, 1, sender=stranger)
    with pytest.raises(KeeperError, match="keeper_registry: not a keeper"):
        with typed_reverts():
            sdk.keepers.request_exit(sender=keeper)


def test_typed_reverts_lets_other_errors_through():
    with pytest.raises(ZeroDivisionError):
        with typed_reverts():
            _ = 1 // 0


def test_actions_type_chain_reverts_the_sdk_did_not_foresee(sdk, asset, stranger, agent, make_spec):
    """Rules the SDK does not pre-check still come back typed, flagged as sent."""
    with pytest.raises(ComputeAssetError) as info:
        sdk.register_asset(make_spec(cpu_cores=0), agent, keccak(b"x"), sender=stranger)
    assert info.value.reason == "compute_asset: no cpu cores" and info.value.preflight is False
    with pytest.raises(StakeError, match="asset_stakes: caller is not the asset owner"):
        sdk.add_stake(asset, 1, sender=stranger)


# ------------------------------------------------------------------ events


EXPECTED_ORDER = [
    "AssetRegistered",
    "StakeAdded",
    "KeeperRegistered",
    "JobPosted",
    "ShardAssigned",
    "ResultSubmitted",
    "Credited",  # the reclaim's slash, to the treasury, logged before its ShardReclaimed
    "ShardReclaimed",
    "ShardFinalized",
    "ShardCancelled",
    "JobFinished",  # names the client's refund, credited with no Credited of its own
    "Withdrawn",
]
ERC721_EVENTS = {"Transfer", "Approval", "ApprovalForAll"}


def market_logs(sdk, chain, start_block):
    """What Market.events() reads, minus the ERC-721 events it cannot decode yet."""
    stop = chain.blocks.height + 1  # ape's range: stop is exclusive, and must be given with a start
    logs = []
    for contract in (sdk.assets, sdk.keepers, sdk.market):
        for abi in contract.contract_type.events:
            if abi.name not in ERC721_EVENTS:
                logs.extend(getattr(contract, abi.name).range(start_block, stop))
    logs.sort(key=lambda log: (log.block_number, log.log_index))
    return [from_log(log) for log in logs]


def is_subsequence(wanted, names):
    it = iter(names)
    return all(name in it for name in wanted)


def rebuild(events, treasury):
    """The market from its events alone: replica states and roots, credits, stakes. A payment,
    its fees and a refund are credited as ShardFinalized and JobFinished name them; every other
    credit has its Credited."""
    replicas, credits, stakes = {}, {}, {}

    def credit(account, amount):
        credits[account] = credits.get(account, 0) + amount

    for e in events:
        match e.name:
            case "JobPosted":
                for s in range(e.shard_count):
                    for r in range(e.replication):
                        replicas[e.job, s, r] = (ReplicaState.OPEN, 0, ZERO)
            case "ShardAssigned":
                replicas[e.job, e.shard, e.replica] = (ReplicaState.ASSIGNED, e.asset, ZERO)
            case "ResultSubmitted":
                replicas[e.job, e.shard, e.replica] = (ReplicaState.SUBMITTED, e.asset, e.output_root)
            case "ShardReclaimed" | "ShardDeclined":
                _, asset, root = replicas[e.job, e.shard, e.replica]
                replicas[e.job, e.shard, e.replica] = (ReplicaState.OPEN, asset, root)
            case "ShardFinalized":
                _, asset, root = replicas[e.job, e.shard, e.replica]
                replicas[e.job, e.shard, e.replica] = (ReplicaState.FINALIZED, asset, root)
                for account, amount in ((e.provider, e.payment), (e.keeper, e.keeper_fee), (treasury, e.protocol_fee)):
                    credit(account, amount)
            case "JobFinished":
                credit(e.client, e.refund)
            case "ShardCancelled":
                for key, (state, asset, root) in replicas.items():
                    if key[:2] == (e.job, e.shard) and state == ReplicaState.OPEN:
                        replicas[key] = (ReplicaState.CANCELLED, asset, root)
            case "Credited":
                credit(e.account, e.amount)
            case "Withdrawn":
                credits[e.account] -= e.amount
            case "StakeAdded" | "StakeSlashed":
                stakes[e.asset] = e.stake
            case "DisputeOpened" | "ReplicaRejected" | "DisputeResolved" | "StakeWithdrawn" | "UnstakeRequested":
                raise AssertionError(f"the reducer does not model {e.name}")
    return replicas, credits, stakes


@pytest.fixture
def lifecycle(sdk, chain, provider, client, keeper, stranger, agent, make_spec, treasury, params):
    start = chain.blocks.head.number + 1
    done = run_lifecycle(
        sdk,
        chain,
        provider=provider,
        client=client,
        keeper=keeper,
        stranger=stranger,
        agent=agent,
        make_spec=make_spec,
        treasury=treasury,
        params=params,
    )
    done.start = start
    return done


def test_market_rebuilds_from_its_events(sdk, chain, lifecycle, client, params, treasury):
    events = market_logs(sdk, chain, lifecycle.start)
    names = [e.name for e in events]
    assert is_subsequence(EXPECTED_ORDER, names), names
    assert [(e.block, e.index) for e in events] == sorted((e.block, e.index) for e in events)
    assert all(type(e) is EVENTS[e.name] for e in events)

    replicas, credits, stakes = rebuild(events, treasury.address)
    job = sdk.job(lifecycle.job)
    assert {k for k in replicas} == {(lifecycle.job, s, 0) for s in range(job.requirements.shard_count)}
    for (job_id, shard, index), (state, asset, root) in replicas.items():
        on_chain = sdk.replica(job_id, shard, index)
        assert (on_chain.state, on_chain.asset, on_chain.output_root) == (state, asset, root)
    assert credits, "no credits seen"
    for account, amount in credits.items():
        assert sdk.credits(account) == amount
    for asset, amount in stakes.items():
        assert sdk.stake(asset).amount == amount
    assert set(stakes) == set(lifecycle.assets)

    posted = next(e for e in events if e.name == "JobPosted")
    assert (posted.job, posted.client, posted.manifest_hash) == (lifecycle.job, client.address, MANIFEST)
    assert posted.budget == lifecycle.budget
    assert (posted.keeper_fee_bps, posted.protocol_fee_bps) == (params.keeper_fee_bps, params.protocol_fee_bps)
    submitted = next(e for e in events if e.name == "ResultSubmitted")
    assert (submitted.output_root, submitted.gpu_seconds, submitted.exit_code) == (ROOT, 1_000, 0)
    assert submitted.tx.startswith("0x") and submitted.block >= lifecycle.start


def test_market_events_after_a_lifecycle(sdk, lifecycle):
    names = [e.name for e in sdk.events()]
    assert is_subsequence(EXPECTED_ORDER, names)


def test_market_events_from_a_block(sdk, chain, owner, asset):
    later = chain.blocks.head.number + 1
    sdk.market.pause(sender=owner)
    names = [e.name for e in sdk.events(later)]
    assert names == ["Paused"]
