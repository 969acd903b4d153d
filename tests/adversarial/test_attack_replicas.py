"""Replicas that disagree: a provider that cheats on one replica of a replication-2 shard, and
asks the arbiter first with its own files, or submits last after seeing the honest root, is
the one slashed whichever replica it holds; the arbiter's re-execution decides, and the
honest replica is never touched. Rows of docs/disputes.md shown here: a mismatch with one
root valid, with none, and one no one can reproduce."""

import ape
import pytest
from terms import (
    BAD,
    COST,
    GOOD,
    KEEPER_FEE,
    OTHER_WRONG,
    PAY,
    PROTOCOL_FEE,
    ROOT,
    STAKE,
    SUM_COST,
    SUM_KEEPER_FEE,
    SUM_PAY,
    SUM_PROTOCOL_FEE,
    SUM_SECONDS,
    WRONG,
    ZERO,
    R,
    S,
    attached,
    hx,
    proven,
    root,
)

from computenet.domain import ReplicaState


@pytest.fixture
def disagreeing(market, summing_job, asset, lease, submit, agents, provider2):
    """A replication-2 job of SUM whose replica `wrong` is provider2's asset (agents[1])
    committing BAD and whose other replica is the provider's (agents[0]) committing GOOD;
    the one named `last` ("cheat" or "honest") submits last, which opens the dispute by
    itself. Returns (job, the cheat's asset, the honest asset)."""

    def make(wrong, last):
        job = summing_job(replication=2)
        cheat = asset(owner=provider2, agent_account=agents[1])
        honest = asset(agent_account=agents[0])
        runs = {"cheat": (wrong, agents[1], BAD), "honest": (1 - wrong, agents[0], GOOD)}
        for replica, asset_id in sorted([(wrong, cheat), (1 - wrong, honest)]):
            assert lease(job, 0, asset_id, None, output_root=None) == replica
        for who in sorted(runs, key=lambda who: who == last):
            replica, signer, files = runs[who]
            submit(signer, job, 0, replica, output_root=root(files), gpu_seconds=SUM_SECONDS)
        assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.DISPUTED] * 2
        return job, cheat, honest

    return make


@pytest.mark.parametrize("wrong", [0, 1])
def test_a_dishonest_replica_that_asks_first_is_still_the_one_slashed(
    market,
    assets,
    disagreeing,
    asset,
    lease,
    sign_receipt,
    ask_arbiter,
    agents,
    provider,
    provider2,
    client,
    keeper,
    treasury,
    ledger,
    after,
    wrong,
):
    books = ledger(cheat=provider2, honest=provider, client=client, keeper=keeper, treasury=treasury)
    job, cheat, honest = disagreeing(wrong, last="honest")
    signature = sign_receipt(agents[1], job, 0, wrong, root(BAD), SUM_SECONDS)
    receipt = {
        "replica": wrong,
        "output_root": hx(root(BAD)),
        "gpu_seconds": SUM_SECONDS,
        "exit_code": 0,
        "signature": hx(signature),
    }
    its_case = {
        "job": job,
        "shard": 0,
        "receipts": [receipt],
        "proofs": [proven(BAD, wrong)],
        "reexecution": attached(BAD),
    }

    status, answer = ask_arbiter(provider2, its_case)  # the cheat's owner asks before anyone else

    assert status == 200, answer
    assert (answer["valid_root"], answer["upheld"]) == (hx(root(GOOD)), [1 - wrong])
    assert [r["replica"] for r in answer["rejected"]] == [wrong]
    assert books.changes() == {"cheat": -S, "honest": R, "client": 0, "keeper": 0, "treasury": S - R}
    assert (assets.stake(cheat).amount, assets.stake(honest).amount) == (STAKE - S, STAKE)
    # The wrong replica runs again on the client's escrow (on the honest provider's second asset);
    # the client pays for the results that stand.
    lease(job, 0, asset(agent_account=agents[2]), agents[2], output_root=root(GOOD), gpu_seconds=SUM_SECONDS)
    after(max(market.replica(job, 0, r).deadline for r in range(2)))
    market.finalize(job, 0, sender=keeper)
    assert books.changes() == {
        "cheat": -S,
        "honest": R + 2 * SUM_PAY,
        "client": -2 * SUM_COST,
        "keeper": 2 * SUM_KEEPER_FEE,
        "treasury": S - R + 2 * SUM_PROTOCOL_FEE,
    }


@pytest.mark.parametrize("wrong", [0, 1])
def test_the_honest_replica_is_never_the_one_slashed(
    market, assets, disagreeing, arbiter, provider, provider2, client, treasury, ledger, wrong
):
    """The cheat submits last, having seen the honest root; nobody asks for a ruling, the
    arbiter's own watch finds the dispute and rules."""
    books = ledger(cheat=provider2, honest=provider, client=client, treasury=treasury)
    job, cheat, honest = disagreeing(wrong, last="cheat")

    [ruling] = arbiter.run_once()

    assert (ruling["job"], ruling["valid_root"], ruling["upheld"]) == (job, hx(root(GOOD)), [1 - wrong])
    states = {r: market.replica(job, 0, r).state for r in range(2)}
    assert states == {wrong: ReplicaState.OPEN, 1 - wrong: ReplicaState.SUBMITTED}
    assert (assets.stake(cheat).amount, assets.stake(honest).amount) == (STAKE - S, STAKE)
    assert books.changes() == {"cheat": -S, "honest": R, "client": 0, "treasury": S - R}


@pytest.fixture
def pair(market, post_job, asset, lease, agents, provider2):
    """A replication-2 job on the provider's (agents[0]) and provider2's (agents[1]) assets, submitting `roots`."""

    def make(*roots):
        job = post_job(replication=2)
        lease(job, 0, asset(agent_account=agents[0]), agents[0], output_root=roots[0])
        lease(job, 0, asset(owner=provider2, agent_account=agents[1]), agents[1], output_root=roots[1])
        return job

    return make


def test_replicas_that_are_all_wrong_each_lose_a_slash_to_the_treasury(
    market, court, pair, provider, provider2, client, treasury, facilitator, ledger
):
    """Two made-up results that differ; the arbiter's two runs agree on a third root."""
    books = ledger(first=provider, second=provider2, client=client, treasury=treasury)
    job = pair(WRONG, OTHER_WRONG)

    court.resolve(job, 0, ROOT, sender=facilitator)

    assert [market.replica(job, 0, r).state for r in range(2)] == [ReplicaState.OPEN] * 2
    assert books.changes() == {"first": -S, "second": -S, "client": 0, "treasury": 2 * S}


def test_a_mismatch_no_one_can_reproduce_pays_every_replica_and_slashes_no_one(
    market, court, pair, provider, provider2, client, keeper, treasury, facilitator, ledger, after
):
    books = ledger(first=provider, second=provider2, client=client, keeper=keeper, treasury=treasury)
    job = pair(ROOT, WRONG)

    court.resolve(job, 0, ZERO, sender=facilitator)  # the arbiter's two runs differed

    with ape.reverts("job_market: challenge window open"):
        market.finalize(job, 0, sender=keeper)
    after(max(market.replica(job, 0, r).deadline for r in range(2)))
    market.finalize(job, 0, sender=keeper)
    assert books.changes() == {
        "first": PAY,
        "second": PAY,
        "client": -2 * COST,
        "keeper": 2 * KEEPER_FEE,
        "treasury": 2 * PROTOCOL_FEE,
    }
