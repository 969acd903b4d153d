"""Results in batches: JobMarket.submit_results records one agent's results all or none under
one signature and keeps one commitment per batch instead of each root; DisputeCourt.reveal_result
puts a root on chain for a ruling. Tried as an attacker would: forged, replayed, mixed and
reordered batches, wrong reveals, and a ruling that would judge a root that is not there."""

import ape
import pytest
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from computenet.domain import ReplicaState
from computenet.merkle import MerkleTree
from computenet.receipts import batch_commitment, batch_digest, batch_typed_data
from computenet.receipts import sign_receipts as sign_batch

TOKEN = 10**6
ROOT = b"\x42" * 32
OTHER_ROOT = b"\x43" * 32
ZERO_ROOT = b"\x00" * 32
STAKE = 1_000 * TOKEN  # register_asset's default stake
PRICE = 100  # make_spec's default price per GPU-second
GPU_SECONDS = 1_000


@pytest.fixture
def batch(market, post_job, register_asset, agent, keeper, registered_keeper):
    """A `shards`-shard job assigned to one asset of `agent`; returns (job, asset, results)."""

    def make(shards=3, root=ROOT, **req):
        job = post_job(shard_count=shards, **req)
        asset = register_asset(agent_account=agent, gpu_count=shards, max_leases=shards)
        for s in range(shards):
            market.assign(job, s, asset, sender=keeper)
        return job, asset, [(job, s, 0, root, GPU_SECONDS, 0) for s in range(shards)]

    return make


def states(market, results):
    return [market.replica(j, s, r).state for j, s, r, *_ in results]


def test_a_batch_is_recorded_under_one_signature(
    market, court, assets, batch, agent, stranger, sign_receipts, receipts_of
):
    job, asset, results = batch()
    sig = sign_receipts(agent, results)
    tx = market.submit_results(results, sig, sender=stranger)  # anyone may relay it
    assert states(market, results) == [ReplicaState.SUBMITTED] * 3
    logged = tx.events.filter(market.ResultSubmitted)
    assert [(e.shard, e.output_root, e.gpu_seconds) for e in logged] == [(s, ROOT, GPU_SECONDS) for s in range(3)]
    committed = tx.events.filter(market.ResultsCommitted)
    hashes = [r.struct_hash() for r in receipts_of(results)]
    assert len(committed) == 1 and committed[0].agent == agent.address
    assert [bytes(h) for h in committed[0].receipts] == hashes
    assert market.result_batches(keccak(b"".join(hashes)))
    # No root per replica: the court reads none until one is revealed.
    assert [market.output_root(job, s, 0) for s in range(3)] == [ZERO_ROOT] * 3
    assert [court.result_root(job, s, 0) for s in range(3)] == [ZERO_ROOT] * 3
    # The asset's three leases ended with results at once: nothing held, three pending.
    stake = assets.stake(asset)
    assert (stake.open_leases, stake.gpus_leased, stake.pending_results) == (0, 0, 3)
    assert tuple(assets.leased(asset)) == (0, 0, 0)


def test_a_batched_shard_is_paid_as_any_other(chain, market, batch, agent, provider, keeper, params, sign_receipts):
    job, _, results = batch(shards=2)
    market.submit_results(results, sign_receipts(agent, results), sender=agent)
    chain.mine(deltatime=params.challenge_window + 1)
    before = market.credits(provider)
    for s in range(2):
        market.finalize(job, s, sender=keeper)
    assert market.credits(provider) - before == 2 * PRICE * GPU_SECONDS


def test_a_batch_not_signed_by_the_agent_records_nothing(market, batch, agents, sign_receipts):
    _, _, results = batch()
    for forged in (sign_receipts(agents[1], results), b"\x00" * 65, b"\x01" * 64 + b"\x1b"):
        with ape.reverts("job_market: receipt not signed by the asset's agent"):
            market.submit_results(results, forged, sender=agents[1])
    assert states(market, results) == [ReplicaState.ASSIGNED] * 3


def test_a_signature_binds_the_exact_batch(chain, market, batch, agent, sign_receipts, receipts_of):
    """A signature over some results does not carry others, another order, another claim or
    another market's domain; one result's own ExecutionReceipt signature is no batch's."""
    _, _, results = batch()
    sig = sign_receipts(agent, results)
    for other in (results[:2], results[::-1], [results[0], results[1], results[2][:4] + (GPU_SECONDS - 1, 0)]):
        with ape.reverts("job_market: receipt not signed by the asset's agent"):
            market.submit_results(other, sig, sender=agent)
    elsewhere = sign_receipts_of(agent, chain.chain_id, agent.address, receipts_of(results))
    with ape.reverts("job_market: receipt not signed by the asset's agent"):
        market.submit_results(results, elsewhere, sender=agent)
    single = receipts_of(results[:1])[0].sign(agent.private_key, chain.chain_id, market.address)
    with ape.reverts("job_market: receipt not signed by the asset's agent"):
        market.submit_results(results[:1], single, sender=agent)
    assert states(market, results) == [ReplicaState.ASSIGNED] * 3


def sign_receipts_of(signer, chain_id, contract, receipts):
    return sign_batch(signer.private_key, chain_id, contract, receipts)


def test_a_batch_is_all_or_none(market, batch, agent, sign_receipts, submit):
    """One result the market refuses (here: already recorded) sinks the batch, so every
    committed receipt is a recorded result and no agent can keep a second root in reserve."""
    job, _, results = batch()
    submit(agent, job, 1, 0)
    with ape.reverts("job_market: replica not assigned"):
        market.submit_results(results, sign_receipts(agent, results), sender=agent)
    assert states(market, results) == [ReplicaState.ASSIGNED, ReplicaState.SUBMITTED, ReplicaState.ASSIGNED]
    twice = [results[0], results[0]]
    with ape.reverts("job_market: replica not assigned"):
        market.submit_results(twice, sign_receipts(agent, twice), sender=agent)


def test_a_batch_cannot_be_replayed(market, batch, agent, sign_receipts):
    _, _, results = batch()
    sig = sign_receipts(agent, results)
    market.submit_results(results, sig, sender=agent)
    with ape.reverts("job_market: replica not assigned"):
        market.submit_results(results, sig, sender=agent)


def test_results_of_two_agents_are_not_one_batch(
    market, post_job, register_asset, agents, keeper, registered_keeper, run_for
):
    job = post_job(shard_count=2)
    for s, a in enumerate(agents[:2]):
        market.assign(job, s, register_asset(agent_account=a), sender=keeper)
        run_for(job, s, 0, GPU_SECONDS)
    results = [(job, s, 0, ROOT, GPU_SECONDS, 0) for s in range(2)]
    with ape.reverts("job_market: results of more than one agent"):
        market.submit_results(results, b"\x00" * 65, sender=agents[0])


def test_one_agent_may_batch_results_of_several_assets_and_jobs(
    market, assets, post_job, register_asset, agent, keeper, registered_keeper, sign_receipts
):
    jobs = [post_job(), post_job(shard_count=2)]
    ids = [register_asset(agent_account=agent, gpu_count=2, max_leases=2) for _ in range(2)]
    market.assign(jobs[0], 0, ids[0], sender=keeper)
    market.assign(jobs[1], 0, ids[1], sender=keeper)
    market.assign(jobs[1], 1, ids[0], sender=keeper)
    results = [(jobs[0], 0, 0, ROOT, 10, 0), (jobs[1], 0, 0, ROOT, 20, 1), (jobs[1], 1, 0, OTHER_ROOT, 30, 0)]
    market.submit_results(results, sign_receipts(agent, results), sender=agent)
    assert states(market, results) == [ReplicaState.SUBMITTED] * 3
    assert [assets.stake(a).pending_results for a in ids] == [2, 1]
    assert [assets.stake(a).open_leases for a in ids] == [0, 0]


@pytest.mark.parametrize("level", ["replicated", "zk", "tee"])
def test_replicated_zk_and_tee_results_are_not_batched(
    market, post_job, register_asset, agent, keeper, registered_keeper, level
):
    """Their roots are compared (replicas), proven (ZK) or attested (TEE) one by one."""
    from computenet.domain import Verification

    req = {
        "replicated": dict(replication=2),
        "zk": dict(verification=Verification.ZK),
        "tee": dict(verification=Verification.TEE),
    }
    job = post_job(**req[level])
    if level == "replicated":
        market.assign(job, 0, register_asset(agent_account=agent), sender=keeper)
    with ape.reverts("job_market: result cannot be batched"):
        market.submit_results([(job, 0, 0, ROOT, GPU_SECONDS, 0)], b"\x00" * 65, sender=agent)


def test_bad_results_are_refused_by_name(market, batch, agent, sign_receipts):
    job, _, results = batch(shards=1)
    with ape.reverts("job_market: no results"):
        market.submit_results([], b"\x00" * 65, sender=agent)
    empty = [(job, 0, 0, ZERO_ROOT, GPU_SECONDS, 0)]
    with ape.reverts("job_market: empty output root"):
        market.submit_results(empty, b"\x00" * 65, sender=agent)
    greedy = [(job, 0, 0, ROOT, 10**9, 0)]
    with ape.reverts("job_market: gpu_seconds exceed the lease's time"):
        market.submit_results(greedy, b"\x00" * 65, sender=agent)
    with ape.reverts("job_market: unknown shard"):
        market.submit_results([(job, 1, 0, ROOT, 1, 0)], b"\x00" * 65, sender=agent)


def test_the_leases_end_at_the_asset_only_through_the_market(assets, asset, stranger):
    with ape.reverts("asset_stakes: caller is not the market"):
        assets.end_results(asset, 1, 1, sender=stranger)


def test_the_batch_digest_is_plain_eip712(chain, market, batch, receipts_of):
    """Any EIP-712 signer (a wallet, eth_account) signs the same digest the market checks."""
    _, _, results = batch()
    receipts = receipts_of(results)
    typed = batch_typed_data(chain.chain_id, market.address, receipts)
    signable = encode_typed_data(full_message=typed)
    expected = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert batch_digest(chain.chain_id, market.address, receipts) == expected
    assert batch_commitment(receipts) == keccak(b"".join(r.struct_hash() for r in receipts))


# ================================================================ reveal and rulings


@pytest.fixture
def recorded(chain, market, batch, agent, sign_receipts):
    """A 3-shard job's results recorded in one batch; returns (job, results, receipt hashes)."""
    job, _, results = batch()
    tx = market.submit_results(results, sign_receipts(agent, results), sender=agent)
    hashes = [bytes(h) for h in tx.events.filter(market.ResultsCommitted)[0].receipts]
    return job, results, hashes


def test_anyone_reveals_a_batched_root(market, court, recorded, stranger):
    job, results, hashes = recorded
    tx = court.reveal_result(results[1], hashes, 1, sender=stranger)
    ev = tx.events.filter(court.ResultRevealed)[0]
    assert (ev.job, ev.shard, ev.replica, ev.lease, ev.output_root) == (job, 1, 0, 1, ROOT)
    assert court.result_root(job, 1, 0) == ROOT
    assert court.result_root(job, 0, 0) == ZERO_ROOT  # each result is revealed alone


def test_a_wrong_reveal_is_refused(market, court, recorded, stranger):
    job, results, hashes = recorded
    lie = results[1][:3] + (OTHER_ROOT,) + results[1][4:]
    with ape.reverts("dispute_court: result not in the batch"):
        court.reveal_result(lie, hashes, 1, sender=stranger)
    with ape.reverts("dispute_court: result not in the batch"):
        court.reveal_result(results[1], hashes, 0, sender=stranger)  # another result's place
    forged = list(hashes)
    forged[0] = keccak(b"forged")
    with ape.reverts("dispute_court: no such result batch"):
        court.reveal_result(results[1], forged, 1, sender=stranger)
    with ape.reverts("dispute_court: no such result batch"):
        court.reveal_result(results[1], hashes[:2], 1, sender=stranger)
    assert court.result_root(job, 1, 0) == ZERO_ROOT


def test_verify_output_of_a_batched_result_after_its_reveal(market, court, batch, agent, sign_receipts, stranger):
    tree = MerkleTree.from_files({"out/result.txt": b"42\n"})
    job, _, results = batch(shards=1, root=tree.root)
    tx = market.submit_results(results, sign_receipts(agent, results), sender=agent)
    hashes = [bytes(h) for h in tx.events.filter(market.ResultsCommitted)[0].receipts]
    args = (job, 0, 0, keccak(text="out/result.txt"), keccak(b"42\n"), tree.proof("out/result.txt"))
    assert not court.verify_output(*args)
    court.reveal_result(results[0], hashes, 0, sender=stranger)
    assert court.verify_output(*args)


def test_a_ruling_by_root_waits_for_the_reveal(
    market, court, token, recorded, verifier, facilitator, provider, stranger, params
):
    """An honest batched result is never judged against a root that is not on chain: the
    ruling is refused until it is revealed, and then it stands and the bond pays its provider."""
    job, results, hashes = recorded
    court.challenge(job, 1, sender=verifier)
    with ape.reverts("dispute_court: a result's root is not revealed (reveal_result)"):
        court.resolve(job, 1, ROOT, sender=facilitator)
    court.reveal_result(results[1], hashes, 1, sender=stranger)
    before = {who: market.credits(who) for who in (provider, verifier)}
    court.resolve(job, 1, ROOT, sender=facilitator)
    assert market.replica(job, 1, 0).state == ReplicaState.SUBMITTED
    assert market.credits(provider) - before[provider] == params.challenge_bond
    assert market.credits(verifier) == before[verifier]
    assert token.balanceOf(market) == market.owed()


def test_a_wrong_batched_result_is_slashed_once_revealed(
    market, court, assets, recorded, asset_of, verifier, facilitator, stranger, params
):
    job, results, hashes = recorded
    asset = asset_of(job, 2)
    court.challenge(job, 2, sender=verifier)
    court.reveal_result(results[2], hashes, 2, sender=stranger)
    stake = assets.stake(asset).amount
    before = market.credits(verifier)
    court.resolve(job, 2, OTHER_ROOT, sender=facilitator)
    slashed = stake * params.slash_bps // 10_000
    assert assets.stake(asset).amount == stake - slashed
    assert market.replica(job, 2, 0).state == ReplicaState.OPEN
    assert market.credits(verifier) - before == params.challenge_bond + min(slashed // 10, params.challenge_bond)


@pytest.fixture
def asset_of(market):
    return lambda job, shard: market.replica(job, shard, 0).asset


def test_a_rejected_root_is_never_read_for_the_next_lease(
    market, court, job, asset, agent, keeper, registered_keeper, submit, verifier, facilitator, stranger, sign_receipts
):
    """Lease 1 submits root A alone and is rejected; lease 2 submits root B in a batch. The
    ruling on lease 2 must not see A: the market cleared it, and the court keys revealed
    roots by lease."""
    market.assign(job, 0, asset, sender=keeper)
    submit(agent, job, 0, 0, output_root=OTHER_ROOT)
    court.challenge(job, 0, sender=verifier)
    court.resolve(job, 0, ROOT, sender=facilitator)
    assert market.output_root(job, 0, 0) == ZERO_ROOT  # cleared with its rejection
    market.assign(job, 0, asset, sender=keeper)
    results = [(job, 0, 0, ROOT, 10, 0)]
    tx = market.submit_results(results, sign_receipts(agent, results), sender=agent)
    hashes = [bytes(h) for h in tx.events.filter(market.ResultsCommitted)[0].receipts]
    assert court.result_root(job, 0, 0) == ZERO_ROOT
    court.challenge(job, 0, sender=verifier)
    with ape.reverts("dispute_court: a result's root is not revealed (reveal_result)"):
        court.resolve(job, 0, ROOT, sender=facilitator)
    court.reveal_result(results[0], hashes, 0, sender=stranger)
    court.resolve(job, 0, ROOT, sender=facilitator)
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED


def test_an_old_leases_reveal_is_not_the_current_root(
    market, court, recorded, keeper, agent, verifier, facilitator, stranger, sign_receipts, asset_of
):
    """A batched result rejected, its replica re-leased and submitted again in another batch:
    the first batch's receipt no longer matches (its lease is gone), so it cannot be revealed
    as the new result's root."""
    job, results, hashes = recorded
    asset = asset_of(job, 0)
    court.challenge(job, 0, sender=verifier)
    court.reveal_result(results[0], hashes, 0, sender=stranger)
    court.resolve(job, 0, OTHER_ROOT, sender=facilitator)
    market.assign(job, 0, asset, sender=keeper)
    with ape.reverts("dispute_court: result not in the batch"):
        court.reveal_result(results[0], hashes, 0, sender=stranger)
    assert court.result_root(job, 0, 0) == ZERO_ROOT
