"""One party in two roles, judged as one: client and challenger, client and keeper, provider
and challenger, provider of both replicas of a shard. In each cheating case the party ends
with no more tokens than it began with, and no more than playing fair would have left it.
The facilitator key sends the ruling the arbiter's re-execution would (the re-execution
itself is exercised in test_attack_challenges.py and test_attack_replicas.py). Rows of
docs/disputes.md shown here: a challenge that finds a replica wrong (the shard re-runs on
the client's escrow), a false one split among the accused, a mismatch with one root valid,
and repeated reclaims."""

from terms import COST, KEEPER_FEE, PAY, PROTOCOL_FEE, ROOT, STAKE, WRONG, B, R, S


def finish(market, job, keeper, after, replicas=1):
    """Finalizes the job's shard 0 once every replica's challenge window has closed."""
    after(max(market.replica(job, 0, r).deadline for r in range(replicas)))
    market.finalize(job, 0, sender=keeper)


def test_a_client_challenging_under_another_name_pays_the_bond_to_the_providers_and_the_work_as_usual(
    market,
    court,
    post_job,
    asset,
    lease,
    submit,
    agents,
    client,
    sybil,
    provider,
    provider2,
    keeper,
    treasury,
    facilitator,
    ledger,
    after,
):
    books = ledger(client=(client, sybil), first=provider, second=provider2, keeper=keeper, treasury=treasury)
    job = post_job(replication=2)
    lease(job, 0, asset(agent_account=agents[0]), agents[0], output_root=None)
    lease(job, 0, asset(owner=provider2, agent_account=agents[1]), agents[1], output_root=None)
    submit(agents[0], job, 0, 0, output_root=ROOT)  # the two replicas ran side by side
    submit(agents[1], job, 0, 1, output_root=ROOT)

    court.challenge(job, 0, sender=sybil)
    court.resolve(job, 0, ROOT, sender=facilitator)  # both results stand
    finish(market, job, keeper, after, replicas=2)

    changes = books.changes()
    assert changes == {
        "client": -B - 2 * COST,
        "first": B // 2 + PAY,
        "second": B // 2 + PAY,
        "keeper": 2 * KEEPER_FEE,
        "treasury": 2 * PROTOCOL_FEE,
    }
    assert changes["client"] < -2 * COST  # worse than not challenging


def test_a_client_that_is_its_own_keeper_gains_nothing_by_reclaiming_again_and_again(
    market, post_job, asset, client, keeper, registered_keeper, provider, treasury, ledger, after
):
    books = ledger(attacker=(client, keeper), provider=provider, treasury=treasury)
    idle = asset()
    job = post_job()

    slashes = []
    for _ in range(2):
        market.assign(job, 0, idle, sender=keeper)
        after(market.replica(job, 0, 0).deadline)
        slashes += [e.slashed for e in market.reclaim(job, 0, 0, sender=keeper).events.filter(market.ShardReclaimed)]
    market.cancel(job, 0, sender=client)

    assert slashes == [S, (STAKE - S) // 10]  # each 10 % of what the stake was then
    assert books.changes() == {"attacker": 0, "provider": -sum(slashes), "treasury": sum(slashes)}


def test_a_provider_exposing_its_own_wrong_result_through_a_sybil_loses_all_but_the_reward(
    market,
    court,
    post_job,
    asset,
    lease,
    agents,
    provider,
    sybil,
    provider2,
    client,
    keeper,
    treasury,
    facilitator,
    ledger,
    after,
):
    """The shard then runs again on another asset, on the client's escrow; the client pays
    once, for the result that stands."""
    books = ledger(provider=(provider, sybil), rerun=provider2, client=client, keeper=keeper, treasury=treasury)
    job = post_job()
    lease(job, 0, asset(agent_account=agents[0]), agents[0], output_root=WRONG)

    court.challenge(job, 0, sender=sybil)
    court.resolve(job, 0, ROOT, sender=facilitator)
    lease(job, 0, asset(owner=provider2, agent_account=agents[1]), agents[1])
    finish(market, job, keeper, after)

    changes = books.changes()
    assert changes == {
        "provider": -S + R,
        "rerun": PAY,
        "client": -COST,
        "keeper": KEEPER_FEE,
        "treasury": S - R + PROTOCOL_FEE,
    }
    assert changes["provider"] < 0


def test_a_provider_running_both_replicas_with_one_made_up_loses_its_slash_less_the_reward(
    market,
    court,
    post_job,
    asset,
    lease,
    agents,
    provider,
    provider2,
    client,
    keeper,
    treasury,
    facilitator,
    ledger,
    after,
):
    """One owner's two assets hold both replicas; one runs the job, the other makes its result
    up. The mismatch opens a dispute by itself; the made-up replica is slashed, its owner gets
    the reward as the upheld provider, and the replica runs again elsewhere."""
    books = ledger(provider=provider, rerun=provider2, client=client, keeper=keeper, treasury=treasury)
    job = post_job(replication=2)
    lease(job, 0, asset(agent_account=agents[0]), agents[0])
    lease(job, 0, asset(agent_account=agents[1]), agents[1], output_root=WRONG)

    court.resolve(job, 0, ROOT, sender=facilitator)
    lease(job, 0, asset(owner=provider2, agent_account=agents[2]), agents[2])
    finish(market, job, keeper, after, replicas=2)

    changes = books.changes()
    assert changes == {
        "provider": -S + R + PAY,
        "rerun": PAY,
        "client": -2 * COST,
        "keeper": 2 * KEEPER_FEE,
        "treasury": S - R + 2 * PROTOCOL_FEE,
    }
    assert changes["provider"] < 0 < 2 * PAY  # running both honestly would have earned 2 x PAY
