"""DisputeCourt unit tests: who may challenge, rulings, the ruling deadline and the default
outcome, and who is credited what in each outcome (docs/disputes.md), to the base unit."""

import ape
import pytest
from eth_utils import keccak

from computenet.domain import ReplicaState, Requirements
from computenet.merkle import MerkleTree
from computenet.receipts import sign_cancel

TOKEN = 10**6
ROOT = b"\x42" * 32  # the conftest `submit` factory's default output root
OTHER_ROOT = b"\x43" * 32
ZERO_ROOT = b"\x00" * 32
ZERO = "0x0000000000000000000000000000000000000000"
STAKE = 1_000 * TOKEN  # register_asset's default stake
PRICE = 100  # make_spec's default price per GPU-second
GPU_SECONDS = 1_000  # the conftest `submit` factory's default metering


def only(tx, event):
    logs = tx.events.filter(event)
    assert len(logs) == 1, f"expected one {event.name}, got {len(logs)}"
    return logs[0]


def slash_of(params, stake=STAKE):
    return stake * params.slash_bps // 10_000


def reward_of(params, slashed):
    return min(slashed * 1_000 // 10_000, params.challenge_bond)


@pytest.fixture
def submitted(market, job, asset, agent, keeper, registered_keeper, submit):
    market.assign(job, 0, asset, sender=keeper)
    return submit(agent, job, 0, 0)


@pytest.fixture
def pair(market, post_job, register_asset, agents, provider2, keeper, registered_keeper, submit):
    """A replication-2 job on `provider`'s and `provider2`'s assets; `roots` submits them."""

    def make(*roots):
        job = post_job(replication=2)
        assets = [register_asset(agent_account=agents[0]), register_asset(owner=provider2, agent_account=agents[1])]
        for a in assets:
            market.assign(job, 0, a, sender=keeper)
        for r, root in enumerate(roots):
            submit(agents[r], job, 0, r, output_root=root)
        return job, assets

    return make


@pytest.fixture
def books(market, token):
    """Credits of the named accounts, and the market's backing, before and after."""

    def snapshot(*who):
        return {w: market.credits(w) for w in who}

    def gained(before):
        assert token.balanceOf(market) == market.owed()  # every token here is owed to someone
        return {w: market.credits(w) - amount for w, amount in before.items()}

    snapshot.gained = gained
    return snapshot


# ================================================================ challenge


def test_challenge(market, court, token, job, submitted, verifier, params):
    held, own = token.balanceOf(market), token.balanceOf(verifier)
    tx = court.challenge(job, 0, sender=verifier)
    ev = only(tx, market.DisputeOpened)
    assert (ev.job, ev.shard, ev.challenger, ev.bond) == (job, 0, verifier.address, params.challenge_bond)
    assert token.balanceOf(market) - held == own - token.balanceOf(verifier) == params.challenge_bond
    assert market.owed() == token.balanceOf(market)  # the bond is held, owed to the challenger or the accused
    rep = market.replica(job, 0, 0)
    assert (rep.state, rep.since) == (ReplicaState.DISPUTED, tx.timestamp)
    assert court.challenge_of(job, 0) == (verifier.address, params.challenge_bond)
    req = Requirements(*market.job(job).requirements)
    assert (
        court.ruling_deadline(job, 0) == tx.timestamp + req.lease_seconds(params.lease_grace) + params.challenge_window
    )


@pytest.mark.parametrize("who", ["provider", "agent"])
def test_a_provider_cannot_challenge_its_own_shard(market, court, job, submitted, provider, agent, who):
    challenger = {"provider": provider, "agent": agent}[who]
    with ape.reverts("dispute_court: provider cannot challenge its shard"):
        court.challenge(job, 0, sender=challenger)


def test_no_provider_of_the_shard_may_challenge_it(market, court, pair, provider, provider2, agents, client, stranger):
    """With replication 2, neither replica's owner nor agent may challenge (even the other's result)."""
    job, _ = pair(ROOT, ROOT)
    for who in (provider, provider2, agents[0], agents[1]):
        with ape.reverts("dispute_court: provider cannot challenge its shard"):
            court.challenge(job, 0, sender=who)
    court.challenge(job, 0, sender=client)  # the client may, with a bond like anyone


def test_challenge_at_and_after_the_end_of_the_window(chain, market, court, job, submitted, verifier):
    end = market.replica(job, 0, 0).deadline
    chain.pending_timestamp = end + 1
    with ape.reverts("job_market: nothing to challenge"):
        court.challenge(job, 0, sender=verifier)


def test_challenge_at_the_end_of_the_window(chain, market, court, job, submitted, verifier):
    chain.pending_timestamp = market.replica(job, 0, 0).deadline
    court.challenge(job, 0, sender=verifier)
    assert market.replica(job, 0, 0).state == ReplicaState.DISPUTED


def test_challenge_without_a_result(market, court, job, asset, keeper, registered_keeper, verifier):
    market.assign(job, 0, asset, sender=keeper)
    with ape.reverts("job_market: nothing to challenge"):
        court.challenge(job, 0, sender=verifier)


def test_challenge_twice(market, court, job, submitted, verifier, client):
    court.challenge(job, 0, sender=verifier)
    with ape.reverts("job_market: dispute already open"):
        court.challenge(job, 0, sender=client)


def test_challenge_only_submitted_replicas(market, court, pair, verifier):
    job, _ = pair(ROOT)
    court.challenge(job, 0, sender=verifier)
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.DISPUTED, ReplicaState.ASSIGNED]


def test_challenge_without_bond_allowance(market, court, token, job, submitted, stranger):
    with ape.reverts("ERC20: transfer amount exceeds allowance"):
        court.challenge(job, 0, sender=stranger)
    assert court.challenge_of(job, 0) == (ZERO, 0)  # nothing half-written


def test_challenge_unknown_shard(market, court, job, submitted, verifier):
    with ape.reverts("dispute_court: unknown shard"):
        court.challenge(job, 1, sender=verifier)
    with ape.reverts("job_market: unknown job"):
        court.challenge(job + 1, 0, sender=verifier)


def test_the_market_hooks_are_the_courts_alone(market, job, submitted, verifier, facilitator, owner):
    for who in (verifier, facilitator, owner):
        with ape.reverts("job_market: caller is not the court"):
            market.open_dispute(job, 0, who, 1, sender=who)
        with ape.reverts("job_market: caller is not the court"):
            market.rule(job, 0, ROOT, 0, who, sender=who)
        with ape.reverts("job_market: caller is not the court"):
            market.credit(who, 1, sender=who)


# ================================================================ resolve


def test_a_false_challenge_pays_its_bond_to_the_accused(
    chain,
    market,
    court,
    assets,
    job,
    asset,
    submitted,
    verifier,
    facilitator,
    provider,
    treasury,
    keeper,
    params,
    books,
):
    tx = court.challenge(job, 0, sender=verifier)
    before = books(provider, verifier, treasury)
    end = market.replica(job, 0, 0).deadline
    chain.pending_timestamp = tx.timestamp + 120

    ruled = court.resolve(job, 0, ROOT, sender=facilitator)

    ev = only(ruled, market.DisputeResolved)
    assert (ev.facilitator, ev.rejected_replicas, ev.upheld, ev.rejected) == (facilitator.address, 0, 1, 0)
    settled = only(ruled, court.DisputeSettled)
    assert (settled.arbiter, settled.challenger, settled.slashed, settled.reward, bool(settled.bond_returned)) == (
        facilitator.address,
        verifier.address,
        0,
        0,
        False,
    )
    assert books.gained(before) == {provider: params.challenge_bond, verifier: 0, treasury: 0}
    assert assets.stake(asset).amount == STAKE
    rep = market.replica(job, 0, 0)
    # The window is extended by the 120 s the dispute was open: no challenger lost any of theirs.
    assert (rep.state, rep.deadline) == (ReplicaState.SUBMITTED, end + 120)
    assert court.challenge_of(job, 0) == (ZERO, 0)


def test_a_ruling_never_closes_the_window_for_other_challengers(
    chain, market, court, job, submitted, verifier, client, facilitator
):
    court.challenge(job, 0, sender=verifier)
    chain.pending_timestamp = market.replica(job, 0, 0).deadline + 10  # the window's end passed during the dispute
    court.resolve(job, 0, ROOT, sender=facilitator)
    court.challenge(job, 0, sender=client)  # the time left at the first challenge is still there
    assert court.challenge_of(job, 0)[0] == client.address


def test_a_wrong_result_is_slashed_and_rewards_its_challenger_a_capped_share(
    market,
    court,
    token,
    assets,
    job,
    asset,
    submitted,
    verifier,
    facilitator,
    provider,
    client,
    treasury,
    params,
    books,
):
    court.challenge(job, 0, sender=verifier)
    before = books(provider, verifier, client, treasury)
    slashed = slash_of(params)
    reward = reward_of(params, slashed)
    assert reward < slashed  # the prover's share is small, so a provider gains nothing from exposing itself

    tx = court.resolve(job, 0, OTHER_ROOT, sender=facilitator)

    rej = only(tx, market.ReplicaRejected)
    assert (rej.replica, rej.asset, rej.slashed) == (0, asset, slashed)
    settled = only(tx, court.DisputeSettled)
    assert (settled.slashed, settled.reward, bool(settled.bond_returned)) == (slashed, reward, True)
    assert books.gained(before) == {
        provider: 0,
        verifier: reward + params.challenge_bond,
        client: 0,
        treasury: slashed - reward,
    }
    assert market.replica(job, 0, 0).state == ReplicaState.OPEN
    stake = assets.stake(asset)
    assert (stake.amount, stake.open_leases, stake.gpus_leased) == (STAKE - slashed, 0, 0)
    assert market.job(job).escrow == market.quote(market.job(job).requirements)  # the client's escrow is untouched


def test_the_reward_is_capped_at_one_bond(
    market,
    court,
    job,
    register_asset,
    keeper,
    registered_keeper,
    agent,
    submit,
    verifier,
    facilitator,
    params,
    books,
    treasury,
):
    big = register_asset(stake=100_000 * TOKEN)
    market.assign(job, 0, big, sender=keeper)
    submit(agent, job, 0, 0)
    court.challenge(job, 0, sender=verifier)
    before = books(verifier, treasury)
    court.resolve(job, 0, OTHER_ROOT, sender=facilitator)
    slashed = slash_of(params, 100_000 * TOKEN)
    assert reward_of(params, slashed) == params.challenge_bond
    assert books.gained(before) == {verifier: 2 * params.challenge_bond, treasury: slashed - params.challenge_bond}


def test_a_zero_root_lets_every_result_stand(
    market, court, job, asset, submitted, verifier, facilitator, provider, params, books, assets
):
    """The arbiter could not reproduce the job: no one is at fault, the challenger loses its bond."""
    court.challenge(job, 0, sender=verifier)
    before = books(provider, verifier)
    tx = court.resolve(job, 0, ZERO_ROOT, sender=facilitator)
    assert (only(tx, market.DisputeResolved).upheld, len(tx.events.filter(market.ReplicaRejected))) == (1, 0)
    assert books.gained(before) == {provider: params.challenge_bond, verifier: 0}
    assert assets.stake(asset).amount == STAKE


def test_a_false_challenge_of_two_agreeing_replicas_splits_the_bond(
    market, court, pair, client, provider, provider2, facilitator, params, books
):
    job, _ = pair(ROOT, ROOT)
    court.challenge(job, 0, sender=client)
    before = books(provider, provider2, client)
    court.resolve(job, 0, ROOT, sender=facilitator)
    half = params.challenge_bond // 2
    assert books.gained(before) == {provider: params.challenge_bond - half, provider2: half, client: 0}


def test_a_replica_mismatch_rewards_the_upheld_provider_and_the_treasury(
    market, court, assets, pair, provider, provider2, client, treasury, facilitator, params, books
):
    job, (good, bad) = pair(ROOT, OTHER_ROOT)
    before = books(provider, provider2, client, treasury)
    slashed = slash_of(params)
    reward = reward_of(params, slashed)

    tx = court.resolve(job, 0, ROOT, sender=facilitator)

    assert only(tx, market.ReplicaRejected).asset == bad
    assert books.gained(before) == {provider: reward, provider2: 0, client: 0, treasury: slashed - reward}
    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.SUBMITTED, ReplicaState.OPEN]


def test_a_mismatch_with_no_valid_root_slashes_every_replica_to_the_treasury(
    market, court, pair, provider, provider2, client, treasury, facilitator, params, books
):
    job, _ = pair(ROOT, OTHER_ROOT)
    before = books(provider, provider2, client, treasury)
    court.resolve(job, 0, b"\x44" * 32, sender=facilitator)
    assert books.gained(before) == {provider: 0, provider2: 0, client: 0, treasury: 2 * slash_of(params)}


def test_a_mismatch_no_one_can_reproduce_pays_every_replica(
    chain, market, court, pair, provider, provider2, keeper, facilitator, params
):
    job, _ = pair(ROOT, OTHER_ROOT)
    court.resolve(job, 0, ZERO_ROOT, sender=facilitator)
    chain.pending_timestamp = max(market.replica(job, 0, r).deadline for r in range(2)) + 1
    tx = market.finalize(job, 0, sender=keeper)
    assert [ev["provider"] for ev in tx.events.filter(market.ShardFinalized)] == [provider.address, provider2.address]
    assert market.credits(provider) == market.credits(provider2) == PRICE * GPU_SECONDS


def test_resolve_rules_on_results_submitted_during_the_dispute(
    chain,
    market,
    court,
    assets,
    pair,
    register_asset,
    agents,
    keeper,
    submit,
    verifier,
    facilitator,
    provider,
    treasury,
    params,
    books,
):
    """A replica that submits while another is disputed is ruled on too, so no result that
    disagrees with the ruling can linger; but it proves nothing for the challenger, who
    could have brought it (its own asset, assigned after the challenge): the challenger
    accused replica 0, which stood, so its bond and the reward go to replica 0's provider."""
    job, (first, second) = pair(ROOT)
    court.challenge(job, 0, sender=verifier)
    submit(agents[1], job, 0, 1, output_root=OTHER_ROOT)  # arrives during the dispute
    before = books(verifier, provider, treasury)

    tx = court.resolve(job, 0, ROOT, sender=facilitator)

    assert (only(tx, market.ReplicaRejected).replica, only(tx, market.ReplicaRejected).asset) == (1, second)
    slashed = slash_of(params)
    reward = reward_of(params, slashed)
    assert not only(tx, court.DisputeSettled).bond_returned
    assert books.gained(before) == {verifier: 0, provider: params.challenge_bond + reward, treasury: slashed - reward}
    third = register_asset(agent_account=agents[2])
    market.assign(job, 0, third, sender=keeper)
    submit(agents[2], job, 0, 1, output_root=ROOT)
    chain.pending_timestamp = max(market.replica(job, 0, r).deadline for r in range(2)) + 1
    market.finalize(job, 0, sender=keeper)
    assert market.job(job).unfinished == 0
    assert [assets.stake(a).open_leases for a in (first, second, third)] == [0, 0, 0]


def test_resolve_by_a_non_facilitator(market, court, job, submitted, verifier, stranger, owner):
    court.challenge(job, 0, sender=verifier)
    for caller in (stranger, owner, verifier):
        with ape.reverts("dispute_court: caller is not a facilitator"):
            court.resolve(job, 0, ROOT, sender=caller)


def test_resolve_without_a_dispute(market, court, job, submitted, facilitator):
    with ape.reverts("dispute_court: no open dispute"):
        court.resolve(job, 0, ROOT, sender=facilitator)


def test_resolve_twice(market, court, job, submitted, verifier, facilitator):
    court.challenge(job, 0, sender=verifier)
    court.resolve(job, 0, ROOT, sender=facilitator)
    with ape.reverts("dispute_court: no open dispute"):
        court.resolve(job, 0, ROOT, sender=facilitator)


def test_resolve_unknown_shard(market, court, job, submitted, verifier, facilitator):
    court.challenge(job, 0, sender=verifier)
    with ape.reverts("dispute_court: unknown shard"):
        court.resolve(job, 1, ROOT, sender=facilitator)
    with ape.reverts("job_market: unknown job"):
        court.resolve(job + 1, 0, ROOT, sender=facilitator)


# ================================================================ ruling deadline and the default outcome


def test_no_ruling_after_the_deadline_and_no_default_before_it(
    chain, market, court, job, submitted, verifier, facilitator, stranger
):
    court.challenge(job, 0, sender=verifier)
    deadline = court.ruling_deadline(job, 0)
    chain.pending_timestamp = deadline
    with ape.reverts("dispute_court: ruling deadline not passed"):
        court.expire(job, 0, sender=stranger)
    chain.pending_timestamp = deadline + 1
    with ape.reverts("dispute_court: ruling deadline passed"):
        court.resolve(job, 0, OTHER_ROOT, sender=facilitator)


def test_anyone_ends_a_dispute_no_one_ruled_on(
    chain, market, court, assets, job, asset, submitted, verifier, stranger, provider, keeper, treasury, params, books
):
    """The results stand and are final, no one is slashed, the bond goes back: escrow and
    stake are never locked for good, and no one can hold payment off by challenging again."""
    court.challenge(job, 0, sender=verifier)
    end = market.replica(job, 0, 0).deadline
    before = books(verifier, provider, treasury)
    chain.pending_timestamp = court.ruling_deadline(job, 0) + 1

    tx = court.expire(job, 0, sender=stranger)

    ev = only(tx, market.DisputeResolved)
    assert (ev.facilitator, ev.rejected_replicas, ev.upheld, ev.rejected) == (ZERO, 0, 1, 0)
    settled = only(tx, court.DisputeSettled)
    assert (settled.arbiter, bool(settled.bond_returned)) == (ZERO, True)
    assert books.gained(before) == {verifier: params.challenge_bond, provider: 0, treasury: 0}
    assert assets.stake(asset).amount == STAKE
    rep = market.replica(job, 0, 0)
    assert (rep.state, rep.deadline) == (ReplicaState.SUBMITTED, end)  # the window stays closed
    with ape.reverts("job_market: nothing to challenge"):
        court.challenge(job, 0, sender=verifier)
    market.finalize(job, 0, sender=keeper)
    assert market.credits(provider) == PRICE * GPU_SECONDS
    assert assets.stake(asset).open_leases == 0
    with ape.reverts("dispute_court: no open dispute"):
        court.expire(job, 0, sender=stranger)


def test_an_expired_mismatch_pays_every_replica(chain, market, court, pair, provider, provider2, stranger, keeper):
    job, _ = pair(ROOT, OTHER_ROOT)
    chain.pending_timestamp = court.ruling_deadline(job, 0) + 1
    court.expire(job, 0, sender=stranger)
    market.finalize(job, 0, sender=keeper)  # final at once: the windows are not reopened
    assert market.credits(provider) == market.credits(provider2) == PRICE * GPU_SECONDS


def test_ruling_deadline_needs_an_open_dispute(market, court, job, submitted):
    with ape.reverts("dispute_court: no open dispute"):
        court.ruling_deadline(job, 0)
    with ape.reverts("dispute_court: unknown shard"):
        court.ruling_deadline(job, 1)


# ================================================================ verify_output


FILES = {
    "logs/stdout.txt": b"epoch 1 loss 0.42\n",
    "out/model.bin": bytes(range(256)),
    "out/metrics.json": b'{"accuracy": 0.97}',
    "out/notes/readme.md": "résumé ✓".encode(),
}


def test_verify_output(market, court, job, asset, agent, keeper, registered_keeper, submit):
    tree = MerkleTree.from_files(FILES)
    market.assign(job, 0, asset, sender=keeper)
    for path, content in FILES.items():  # nothing submitted yet
        assert not court.verify_output(job, 0, 0, keccak(path.encode()), keccak(content), tree.proof(path))
    submit(agent, job, 0, 0, output_root=tree.root)
    for path, content in FILES.items():
        assert court.verify_output(job, 0, 0, keccak(path.encode()), keccak(content), tree.proof(path))


def test_verify_output_refuses_tampering(market, court, job, asset, agent, keeper, registered_keeper, submit):
    tree = MerkleTree.from_files(FILES)
    market.assign(job, 0, asset, sender=keeper)
    submit(agent, job, 0, 0, output_root=tree.root)
    path, content = "out/model.bin", FILES["out/model.bin"]
    proof = tree.proof(path)
    assert court.verify_output(job, 0, 0, keccak(path.encode()), keccak(content), proof)
    assert not court.verify_output(job, 0, 0, keccak(path.encode()), keccak(content + b"\x00"), proof)
    assert not court.verify_output(job, 0, 0, keccak(b"out/other.bin"), keccak(content), proof)
    assert not court.verify_output(job, 0, 0, keccak(path.encode()), keccak(content), proof[:-1])
    assert not court.verify_output(job, 0, 0, keccak(path.encode()), keccak(content), tree.proof("logs/stdout.txt"))
    with ape.reverts("job_market: unknown replica"):  # the job has one replica
        court.verify_output(job, 0, 1, keccak(path.encode()), keccak(content), proof)


# ---------------------------------------------------------------- rulings replica by replica


def test_a_ruling_by_replica_lets_results_that_agree_within_tolerance_all_stand(
    market, court, pair, verifier, facilitator, provider, provider2, params, books
):
    """Two replicas of a numeric job differ in their bits but agree within the manifest's
    tolerance: the arbiter's mask rejects neither, and the challenger's bond goes to both."""
    job, _ = pair(ROOT, OTHER_ROOT)  # roots differ: the market opened the dispute itself
    assert [market.replica(job, 0, r).state for r in (0, 1)] == [ReplicaState.DISPUTED] * 2
    before = books(provider, provider2, verifier)
    tx = court.resolve_replicas(job, 0, 0, sender=facilitator)
    ev = only(tx, market.DisputeResolved)
    assert (ev.rejected_replicas, ev.upheld, ev.rejected) == (0, 2, 0)
    assert not tx.events.filter(market.ReplicaRejected)
    assert books.gained(before) == {provider: 0, provider2: 0, verifier: 0}  # no challenger, no bond
    assert [market.replica(job, 0, r).state for r in (0, 1)] == [ReplicaState.SUBMITTED] * 2


def test_a_ruling_by_replica_slashes_only_the_marked_one(
    market, court, pair, assets, facilitator, provider, provider2, params, books, treasury
):
    job, (first, second) = pair(ROOT, OTHER_ROOT)
    before = books(provider, provider2, treasury)
    tx = court.resolve_replicas(job, 0, 0b10, sender=facilitator)
    rej = only(tx, market.ReplicaRejected)
    assert (rej.replica, rej.asset, rej.slashed) == (1, second, slash_of(params))
    assert only(tx, market.DisputeResolved).rejected_replicas == 0b10
    reward = reward_of(params, slash_of(params))
    # No challenger: the first upheld provider proved it right and takes the reward.
    assert books.gained(before) == {provider: reward, provider2: 0, treasury: slash_of(params) - reward}
    assert [market.replica(job, 0, r).state for r in (0, 1)] == [ReplicaState.SUBMITTED, ReplicaState.OPEN]
    assert assets.stake(first).amount == STAKE


def test_an_inflated_metering_claim_is_slashed_though_its_root_is_right(
    market, court, job, asset, submitted, verifier, facilitator, provider, treasury, params, books
):
    """A right root with GPU-seconds beyond the job's tolerance of the arbiter's own
    measurement: the mask rejects it, and the challenger is rewarded as for a wrong root."""
    court.challenge(job, 0, sender=verifier)
    before = books(provider, verifier, treasury)
    tx = court.resolve_replicas(job, 0, 0b1, sender=facilitator)
    slashed = slash_of(params)
    assert only(tx, market.ReplicaRejected).slashed == slashed
    reward = reward_of(params, slashed)
    assert books.gained(before) == {provider: 0, verifier: reward + params.challenge_bond, treasury: slashed - reward}
    assert market.replica(job, 0, 0).state == ReplicaState.OPEN  # the shard re-runs; the claim is never paid


def test_a_ruling_by_replica_is_for_facilitators_before_the_deadline(
    chain, market, court, job, submitted, verifier, stranger, facilitator
):
    court.challenge(job, 0, sender=verifier)
    with ape.reverts("dispute_court: caller is not a facilitator"):
        court.resolve_replicas(job, 0, 0b1, sender=stranger)
    chain.pending_timestamp = court.ruling_deadline(job, 0) + 1
    with ape.reverts("dispute_court: ruling deadline passed"):
        court.resolve_replicas(job, 0, 0b1, sender=facilitator)
    court.expire(job, 0, sender=stranger)
    with ape.reverts("dispute_court: no open dispute"):
        court.resolve_replicas(job, 0, 0, sender=facilitator)


# ================================================================ signed cancels (clients that send no transactions)


def _cancel_sig(chain, market, signer, job, shard, valid_before):
    return sign_cancel(signer.private_key, chain.chain_id, market.address, job, shard, valid_before)


def test_a_signed_cancel_relayed_by_anyone_refunds_the_client(
    chain, market, court, token, post_job, client, stranger, params, make_requirements
):
    """The client signs; a stranger pays the gas; the refund is the client's, to the base unit."""
    job = post_job()
    valid_before = chain.pending_timestamp + 600
    sig = _cancel_sig(chain, market, client, job, 0, valid_before)
    before = token.balanceOf(stranger), market.credits(stranger)
    tx = court.cancel_with_signature(job, 0, valid_before, sig, sender=stranger)
    assert only(tx, market.ShardCancelled).replicas == 1
    quote = make_requirements().quote(params.keeper_fee_bps, params.protocol_fee_bps)
    assert only(tx, market.JobFinished).refund == quote == market.credits(client)
    assert (token.balanceOf(stranger), market.credits(stranger)) == before
    with ape.reverts("job_market: nothing to cancel"):  # a replay has nothing left to do
        court.cancel_with_signature(job, 0, valid_before, sig, sender=stranger)


@pytest.mark.parametrize("flaw", ["signer", "job", "shard", "expired", "valid_before", "market"])
def test_a_signed_cancel_binds_its_client_job_shard_time_and_market(
    chain, market, court, post_job, client, stranger, flaw
):
    job = post_job(shard_count=2)
    other = post_job()
    valid_before = chain.pending_timestamp + 600
    signer, signed_job, signed_shard, signed_until, where = client, job, 0, valid_before, market.address
    if flaw == "signer":
        signer = stranger
    elif flaw == "job":
        signed_job = other
    elif flaw == "shard":
        signed_shard = 1
    elif flaw == "valid_before":
        signed_until = valid_before + 1
    elif flaw == "market":
        where = court.address
    sig = sign_cancel(signer.private_key, chain.chain_id, where, signed_job, signed_shard, signed_until)
    if flaw == "expired":
        chain.pending_timestamp = valid_before
        reason = "dispute_court: cancel signature expired"
    else:
        reason = "dispute_court: cancel not signed by the client"
    with ape.reverts(reason):
        court.cancel_with_signature(job, 0, valid_before, sig, sender=stranger)
    assert market.replica(job, 0, 0).state == ReplicaState.OPEN


def test_only_the_client_or_the_court_cancels(market, court, job, stranger):
    with ape.reverts("job_market: caller is not the client"):
        market.cancel(job, 0, sender=stranger)
