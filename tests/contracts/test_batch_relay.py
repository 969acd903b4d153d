"""BatchRelay: many assignments, results or finalizations in one transaction, each item
checked by the market as if sent alone, a refused item skipped, and nobody paid or
checked as the relay."""

import ape
import pytest
from eth_abi import encode
from web3.exceptions import ContractLogicError

from computenet.domain import ReplicaState, settle_amounts

ROOT = b"\x42" * 32
GPU_SECONDS = 1_000
SHARDS = 4


@pytest.fixture
def relay(stack):
    return stack.relay


@pytest.fixture
def job4(post_job, registered_keeper):
    return post_job(shard_count=SHARDS)


@pytest.fixture
def asset4(register_asset):
    """One asset with a GPU and a lease slot for each shard of `job4`."""
    return register_asset(gpu_count=SHARDS, max_leases=SHARDS)


def _signed(sign_receipt, agent, job, shards, root=ROOT):
    return [(job, s, 0, root, GPU_SECONDS, 0, sign_receipt(agent, job, s, 0, root, GPU_SECONDS)) for s in shards]


def test_assign_many_assigns_as_the_calling_keeper(relay, market, keepers, job4, asset4, keeper):
    tx = relay.assign_many(market, [(job4, s, asset4) for s in range(SHARDS)], sender=keeper)
    events = tx.events.filter(market.ShardAssigned)
    assert [(e.shard, e.asset, e.keeper) for e in events] == [(s, asset4, keeper.address) for s in range(SHARDS)]
    keeper_id = keepers.active_keeper_id(keeper)
    for s in range(SHARDS):
        rep = market.replica(job4, s, 0)
        assert (rep.state, rep.asset, rep.keeper) == (ReplicaState.ASSIGNED, asset4, keeper_id)


def test_assign_many_returns_which_went_through_and_skips_the_rest(relay, market, job4, asset4, keeper, keeper2):
    market.assign(job4, 1, asset4, sender=keeper2)  # another keeper was first for shard 1
    placements = [(job4, 0, asset4), (job4, 1, asset4), (job4, 2, 999_999), (job4, 3, asset4)]
    assert relay.assign_many.call(market, placements, sender=keeper) == 0b1001
    tx = relay.assign_many(market, placements, sender=keeper)
    assert [e.shard for e in tx.events.filter(market.ShardAssigned)] == [0, 3]
    assert market.replica(job4, 1, 0).keeper != market.replica(job4, 0, 0).keeper  # shard 1 stays keeper2's
    assert market.replica(job4, 2, 0).state == ReplicaState.OPEN


def test_only_an_active_keeper_assigns_through_the_relay(relay, market, job4, asset4, stranger):
    assert relay.assign_many.call(market, [(job4, 0, asset4)], sender=stranger) == 0
    relay.assign_many(market, [(job4, 0, asset4)], sender=stranger)
    assert market.replica(job4, 0, 0).state == ReplicaState.OPEN


def test_nobody_but_the_relay_names_a_keeper(chain, market, job4, asset4, keeper, stranger):
    """The word the relay appends is read only when the relay is the caller: a stranger
    appending a keeper's address to its own call is still itself."""
    data = market.assign.encode_input(job4, 0, asset4) + encode(["address"], [keeper.address])
    with pytest.raises(ContractLogicError, match="keeper_registry: not a keeper"):
        chain.provider.web3.eth.call({"from": stranger.address, "to": market.address, "data": data})
    assert market.replica(job4, 0, 0).state == ReplicaState.OPEN


def test_submit_many_records_each_signed_result_and_skips_a_bad_one(
    relay, market, job4, asset4, keeper, agent, stranger, sign_receipt
):
    relay.assign_many(market, [(job4, s, asset4) for s in range(SHARDS)], sender=keeper)
    results = _signed(sign_receipt, agent, job4, range(SHARDS))
    results[2] = (*results[2][:4], GPU_SECONDS + 1, *results[2][5:])  # a claim its receipt does not sign
    tx = relay.submit_many(market, results, sender=stranger)  # anyone relays signed results
    assert [e.shard for e in tx.events.filter(market.ResultSubmitted)] == [0, 1, 3]
    assert [market.replica(job4, s, 0).state for s in range(SHARDS)] == [
        ReplicaState.SUBMITTED,
        ReplicaState.SUBMITTED,
        ReplicaState.ASSIGNED,
        ReplicaState.SUBMITTED,
    ]
    assert market.output_root(job4, 3, 0) == ROOT


def test_finalize_many_pays_each_shard_as_finalize_would_to_the_base_unit(
    relay,
    market,
    token,
    stack,
    chain,
    params,
    job4,
    asset4,
    keeper,
    agent,
    provider,
    client,
    treasury,
    stranger,
    sign_receipt,
):
    relay.assign_many(market, [(job4, s, asset4) for s in range(SHARDS)], sender=keeper)
    relay.submit_many(market, _signed(sign_receipt, agent, job4, range(SHARDS - 1)), sender=agent)
    chain.mine(deltatime=params.challenge_window + 1)
    who = (provider, keeper, treasury, client, relay, stranger)
    before = {w: market.credits(w) for w in who}
    escrow = market.job(job4).escrow

    tx = relay.finalize_many(market, [(job4, s) for s in range(SHARDS)], sender=stranger)

    assert [e.shard for e in tx.events.filter(market.ShardFinalized)] == [0, 1, 2]  # shard 3 has no result
    job = market.job(job4)
    pay, keeper_fee, protocol_fee = settle_amounts(100, GPU_SECONDS, job.keeper_fee_bps, job.protocol_fee_bps)
    gained = {w: market.credits(w) - before[w] for w in who}
    assert gained == {
        provider: 3 * pay,
        keeper: 3 * keeper_fee,
        treasury: 3 * protocol_fee,
        client: 0,
        relay: 0,
        stranger: 0,
    }
    assert escrow - job.escrow == 3 * (pay + keeper_fee + protocol_fee)
    assert job.unfinished == 1
    assert token.balanceOf(relay) == 0 and token.balanceOf(market) == market.owed()  # conservation
    again = relay.finalize_many(market, [(job4, 0)], sender=stranger)  # nothing is paid twice
    assert not again.events.filter(market.ShardFinalized)


def test_a_batch_short_of_gas_reverts_whole_rather_than_skip_items(relay, market, job4, asset4, keeper):
    """Skipping an item that ran out of gas would let a gas estimate, or a relayer of someone
    else's batch, leave items out unnoticed: the batch fails instead, and nothing is assigned."""
    placements = [(job4, s, asset4) for s in range(SHARDS)]
    with ape.reverts("batch_relay: out of gas"):
        relay.assign_many(market, placements, sender=keeper, gas=160_000)
    assert all(market.replica(job4, s, 0).state == ReplicaState.OPEN for s in range(SHARDS))
    relay.assign_many(market, placements, sender=keeper)  # estimated: every item fits
    assert all(market.replica(job4, s, 0).state == ReplicaState.ASSIGNED for s in range(SHARDS))
