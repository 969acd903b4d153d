"""Leases that end with no result. A keeper that is also the client piles leases on an
unresponsive asset to have them reclaimed: the asset takes no more leases than it has GPUs
free, every slash goes to the treasury, and the pair's tokens end exactly where they began.
Rows of docs/disputes.md shown here: a reclaim, a reclaim while the market is paused, and a
decline within the decline window."""

import ape
import pytest
from terms import S


def only(tx, event):
    logs = tx.events.filter(event)
    assert len(logs) == 1, f"expected one {event.name}, got {len(logs)}"
    return logs[0]


def test_a_keeper_that_is_the_client_gains_nothing_by_piling_leases_on_an_idle_asset(
    market, assets, post_job, asset, client, keeper, registered_keeper, provider, treasury, ledger, after
):
    books = ledger(attacker=(client, keeper), provider=provider, treasury=treasury)
    idle = asset(max_leases=3)  # one GPU, room for three leases; its agent is down
    job = post_job(shard_count=3)  # three 1-GPU shards

    market.assign(job, 0, idle, sender=keeper)
    for shard in (1, 2):
        with ape.reverts("asset_stakes: asset gpus all leased"):
            market.assign(job, shard, idle, sender=keeper)
    stake = assets.stake(idle)
    assert (stake.open_leases, stake.gpus_leased) == (1, 1)  # one lease, not three
    after(market.replica(job, 0, 0).deadline)
    reclaimed = only(market.reclaim(job, 0, 0, sender=keeper), market.ShardReclaimed)
    for shard in range(3):
        market.cancel(job, shard, sender=client)

    assert (reclaimed.caller, reclaimed.slashed) == (keeper.address, S)
    assert market.job(job).unfinished == 0
    changes = books.changes()
    assert changes == {"attacker": 0, "provider": -S, "treasury": S}  # tokens only: the pair's gas is not counted


@pytest.fixture
def leased(market, post_job, asset, client, keeper, registered_keeper, provider, treasury, ledger):
    """A one-shard job its client's own keeper leased to the provider's asset, and a ledger
    over the pair (judged together), the provider and the treasury: (ledger, job)."""
    books = ledger(attacker=(client, keeper), provider=provider, treasury=treasury)
    job = post_job()
    market.assign(job, 0, asset(), sender=keeper)
    return books, job


def test_no_one_is_slashed_for_a_lease_that_ran_out_while_the_market_was_paused(
    market, leased, owner, client, keeper, after
):
    books, job = leased
    market.pause(sender=owner)
    after(market.replica(job, 0, 0).deadline)

    reclaimed = only(market.reclaim(job, 0, 0, sender=keeper), market.ShardReclaimed)
    market.cancel(job, 0, sender=client)

    assert reclaimed.slashed == 0
    assert books.changes() == {"attacker": 0, "provider": 0, "treasury": 0}


def test_an_agent_that_declines_in_time_cannot_be_slashed(market, leased, agent, client, keeper, after):
    books, job = leased

    market.decline(job, 0, 0, b"image not found".ljust(32, b"\0"), sender=agent)
    after(market.replica(job, 0, 0).deadline)
    with ape.reverts("job_market: replica not assigned"):
        market.reclaim(job, 0, 0, sender=keeper)
    market.cancel(job, 0, sender=client)

    assert books.changes() == {"attacker": 0, "provider": 0, "treasury": 0}
