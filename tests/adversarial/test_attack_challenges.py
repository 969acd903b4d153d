"""Challenges as weapons: a stranger, a client and a provider's sybil challenge to get paid for
nothing, to get work for free or to hold other challengers off, and a challenge the arbiter
never rules on. The arbiter's own re-execution decides where a ruling is about a result
(the stranger's and the sybil's); elsewhere the facilitator key sends the ruling the
re-execution would. Rows of docs/disputes.md shown here: a challenge that finds a replica
wrong, one where every accused result stands, one of a job no one can reproduce, and no
ruling by the deadline. Marked as failing: a provider paid for GPU-seconds it did not run,
which no challenge reaches."""

import ape
import pytest
from terms import (
    BAD,
    COST,
    GOOD,
    KEEPER_FEE,
    PAY,
    PROTOCOL_FEE,
    ROOT,
    STAKE,
    SUM_COST,
    SUM_KEEPER_FEE,
    SUM_PAY,
    SUM_PROTOCOL_FEE,
    SUM_SECONDS,
    ZERO,
    B,
    R,
    S,
    attached,
    hx,
    proven,
    root,
)

from computenet.domain import ReplicaState


@pytest.fixture
def challenged(court, asset, lease, agent, attacker, provider, client, keeper, treasury, ledger):
    """A stranger (`attacker`) challenges the provider's result of `job`'s one shard, a result
    that is right; returns a ledger over the challenger, the provider, the client, the keeper
    and the treasury, opened before the result came."""

    def make(job, output_root=ROOT, gpu_seconds=1_000):
        books = ledger(challenger=attacker, provider=provider, client=client, keeper=keeper, treasury=treasury)
        lease(job, 0, asset(), agent, output_root=output_root, gpu_seconds=gpu_seconds)
        court.challenge(job, 0, sender=attacker)
        return books

    return make


PAID_AS_USUAL = {"challenger": -B, "provider": B + PAY, "client": -COST, "keeper": KEEPER_FEE, "treasury": PROTOCOL_FEE}


def test_a_stranger_with_made_up_files_loses_exactly_its_bond_to_the_honest_provider(
    market, summing_job, challenged, attacker, keeper, ask_arbiter, after
):
    job = summing_job()
    books = challenged(job, output_root=root(GOOD), gpu_seconds=SUM_SECONDS)
    made_up = {"job": job, "shard": 0, "reexecution": attached(BAD)}

    forged = ask_arbiter(attacker, made_up | {"proofs": [proven(BAD, 0)]})  # "proof" that BAD is the provider's
    status, answer = ask_arbiter(attacker, made_up)

    assert forged[0] == 400 and forged[1]["detail"].startswith("rule 4 (proofs): proof 0")
    assert status == 200, answer
    assert (answer["valid_root"], answer["upheld"], answer["rejected"]) == (hx(root(GOOD)), [0], [])
    assert answer["notes"][0].startswith("the challenger's file out/sum.txt differs from the arbiter's re-execution")
    assert books.changes() == {"challenger": -B, "provider": B, "client": 0, "keeper": 0, "treasury": 0}
    # The provider is then paid as usual, once its window (extended by the dispute) closes.
    after(market.replica(job, 0, 0).deadline)
    market.finalize(job, 0, sender=keeper)
    changes = books.changes()
    assert changes == {
        "challenger": -B,
        "provider": B + SUM_PAY,
        "client": -SUM_COST,
        "keeper": SUM_KEEPER_FEE,
        "treasury": SUM_PROTOCOL_FEE,
    }
    assert changes["challenger"] < 0


def test_a_client_that_challenges_its_honest_provider_loses_the_bond_and_still_pays(
    chain, market, court, post_job, asset, lease, agent, client, provider, keeper, treasury, facilitator, ledger, after
):
    books = ledger(client=client, provider=provider, keeper=keeper, treasury=treasury)
    job = post_job()
    lease(job, 0, asset(), agent)
    end = market.replica(job, 0, 0).deadline
    opened = court.challenge(job, 0, sender=client).timestamp
    after(end + 100)  # the window's end passes during the dispute: the client hopes never to pay

    ruled = court.resolve(job, 0, ROOT, sender=facilitator)  # the re-execution matched the provider's root

    extended = end + ruled.timestamp - opened
    assert market.replica(job, 0, 0).deadline == extended
    chain.pending_timestamp = extended
    with ape.reverts("job_market: challenge window open"):
        market.finalize(job, 0, sender=keeper)
    after(extended)
    market.finalize(job, 0, sender=keeper)
    changes = books.changes()
    assert changes == {"client": -B - COST, "provider": B + PAY, "keeper": KEEPER_FEE, "treasury": PROTOCOL_FEE}
    assert changes["client"] < -COST  # worse off than paying without a challenge


def test_a_challenge_of_a_job_no_one_can_reproduce_costs_the_challenger_its_bond(
    market, court, post_job, challenged, keeper, facilitator, after
):
    """The arbiter's two runs differed: the zero root, every result stands, no one is at fault."""
    job = post_job()
    books = challenged(job)

    court.resolve(job, 0, ZERO, sender=facilitator)

    after(market.replica(job, 0, 0).deadline)
    market.finalize(job, 0, sender=keeper)
    assert books.changes() == PAID_AS_USUAL


def test_a_provider_cannot_challenge_its_own_wrong_result_and_loses_through_a_sybil(
    chain,
    market,
    court,
    assets,
    summing_job,
    asset,
    lease,
    submit,
    agents,
    provider,
    provider2,
    sybil,
    verifier,
    client,
    keeper,
    treasury,
    ledger,
    arbiter,
    after,
):
    """provider2's asset submits a made-up result for replica 0 while the provider's honest
    replica 1 still runs. In its own name (owner or agent key) provider2 cannot challenge;
    its sybil can, hoping the dispute holds off the challenges of the shard until the
    windows close. The arbiter's re-execution rejects the made-up result, and the honest
    result's window is extended by the dispute, so others can still challenge it."""
    books = ledger(cheat=provider2, sybil=sybil, honest=provider, client=client, keeper=keeper, treasury=treasury)
    job = summing_job(replication=2)
    cheat = asset(owner=provider2, agent_account=agents[1])
    honest = asset(agent_account=agents[0])
    lease(job, 0, cheat, agents[1], output_root=root(BAD), gpu_seconds=SUM_SECONDS)
    lease(job, 0, honest, agents[0], output_root=None)
    for own in (provider2, agents[1]):
        with ape.reverts("dispute_court: provider cannot challenge its shard"):
            court.challenge(job, 0, sender=own)

    opened = court.challenge(job, 0, sender=sybil).timestamp
    submit(agents[0], job, 0, 1, output_root=root(GOOD), gpu_seconds=SUM_SECONDS)  # lands during the dispute
    end = market.replica(job, 0, 1).deadline
    with ape.reverts("job_market: dispute already open"):
        court.challenge(job, 0, sender=verifier)
    after(end)  # its window would have closed while no one could challenge it
    [ruling] = arbiter.run_once()

    assert (ruling["valid_root"], ruling["upheld"]) == (hx(root(GOOD)), [1])
    assert [r["replica"] for r in ruling["rejected"]] == [0]
    changes = books.changes()
    assert changes == {"cheat": -S, "sybil": R, "honest": 0, "client": 0, "keeper": 0, "treasury": S - R}
    assert changes["cheat"] + changes["sybil"] == -S + R < 0
    assert market.credits(sybil) == B + R  # its bond back and the reward
    assert (assets.stake(cheat).amount, assets.stake(honest).amount) == (STAKE - S, STAKE)
    ruled_at = chain.get_receipt(ruling["transaction"]).timestamp
    assert market.replica(job, 0, 1).deadline == end + ruled_at - opened > ruled_at
    court.challenge(job, 0, sender=verifier)  # not locked out
    assert court.challenge_of(job, 0)[0] == verifier.address


def test_a_challenge_no_one_rules_on_locks_neither_escrow_nor_stake(
    market,
    court,
    assets,
    post_job,
    asset,
    lease,
    agent,
    verifier,
    stranger,
    provider,
    client,
    keeper,
    treasury,
    ledger,
    after,
):
    """The arbiter is down. After the ruling deadline anyone applies the default outcome:
    the result stands, the bond goes back; the shard is then finalized, the job's other
    shard cancelled and the provider's stake, asked back meanwhile, withdrawn."""
    books = ledger(
        challenger=verifier, caller=stranger, provider=provider, client=client, keeper=keeper, treasury=treasury
    )
    job = post_job(shard_count=2)
    staked = asset()
    lease(job, 0, staked, agent)
    end = market.replica(job, 0, 0).deadline
    assets.request_unstake(staked, STAKE, sender=provider)
    court.challenge(job, 0, sender=verifier)
    after(max(court.ruling_deadline(job, 0), assets.stake(staked).unbond_at))
    with ape.reverts("job_market: shard not ready"):
        market.finalize(job, 0, sender=keeper)
    with ape.reverts("asset_stakes: asset has results that can still be challenged"):
        assets.withdraw_stake(staked, sender=provider)

    court.expire(job, 0, sender=stranger)

    assert books.changes() == {"challenger": 0, "caller": 0, "provider": 0, "client": 0, "keeper": 0, "treasury": 0}
    assert market.credits(verifier) == B  # the bond back
    assert market.replica(job, 0, 0).deadline == end  # final: no window reopened to challenge again
    with ape.reverts("job_market: nothing to challenge"):
        court.challenge(job, 0, sender=verifier)
    market.finalize(job, 0, sender=keeper)
    market.cancel(job, 1, sender=client)
    assets.withdraw_stake(staked, sender=provider)
    assert market.job(job).unfinished == assets.stake(staked).amount == 0
    assert books.changes() == {
        "challenger": 0,
        "caller": 0,
        "provider": PAY,
        "client": -COST,
        "keeper": KEEPER_FEE,
        "treasury": PROTOCOL_FEE,
    }


def test_a_provider_is_not_paid_for_gpu_seconds_it_did_not_run(
    market,
    court,
    post_job,
    asset,
    submit,
    agent,
    verifier,
    provider,
    client,
    keeper,
    registered_keeper,
    treasury,
    facilitator,
    ledger,
    after,
):
    """A run of 1,000 GPU-seconds reported as the job's maximum, after waiting long enough for
    the chain's bound to let it through: the arbiter's own run measures 1,000, the claim is
    beyond the job's tolerance of that (verifier.rules), and the ruling rejects the replica
    though its root is right. The provider is slashed and paid nothing; the challenger gains."""
    books = ledger(provider=provider, challenger=verifier, client=client, keeper=keeper, treasury=treasury)
    job = post_job()  # at most 3,600 GPU-seconds
    market.assign(job, 0, asset(), sender=keeper)
    submit(agent, job, 0, 0, output_root=ROOT, gpu_seconds=3_600)  # the chain's bound holds: 3,600 s have passed

    court.challenge(job, 0, sender=verifier)
    court.resolve_replicas(job, 0, 0b1, sender=facilitator)  # measured 1,000: 3,600 is past 1,500 + slack
    assert market.replica(job, 0, 0).state == ReplicaState.OPEN  # the shard re-runs; the claim is never paid

    changes = books.changes()
    assert (changes["provider"], changes["challenger"], changes["treasury"], changes["keeper"]) == (-S, R, S - R, 0)
    assert market.job(job).escrow == market.quote(market.job(job).requirements)  # nothing paid from the escrow


def test_a_claim_beyond_the_time_the_lease_has_run_is_refused(
    market, post_job, asset, agent, keeper, registered_keeper, provider, sign_receipt, chain
):
    """The chain's own bound: GPU-seconds beyond the time since assignment × GPUs revert, so an
    agent cannot claim the job's maximum for a run that just ended."""
    job = post_job()
    assigned = market.assign(job, 0, asset(), sender=keeper).timestamp
    ten, eleven = (sign_receipt(agent, job, 0, 0, ROOT, claim) for claim in (10, 11))
    chain.pending_timestamp = assigned + 10  # 10 s have passed
    with ape.reverts("job_market: gpu_seconds exceed the lease's time"):
        market.submit_result(job, 0, 0, ROOT, 11, 0, eleven, sender=provider)
    market.submit_result(job, 0, 0, ROOT, 10, 0, ten, sender=provider)
    assert market.replica(job, 0, 0).gpu_seconds == 10
