"""The keeper's asset index (keepers.runtime.ChainView.assets) on a real chain: read whole once,
then kept current from the events of each new head, re-reading only the assets they name (only
the stake and leased totals of those only the market's events name)."""

import pytest

from computenet.market import Market
from keepers.runtime import ChainView


@pytest.fixture
def view(stack):
    market = Market.from_stack(stack)
    reads = {"whole": 0, "ids": [], "leases": []}
    whole, by_id = market.all_assets, market.assets_by_id

    def count_whole():
        reads["whole"] += 1
        reads["in_whole"] = True
        try:
            return whole()
        finally:
            reads["in_whole"] = False

    def count_ids(ids):
        ids = list(ids)
        if not reads.get("in_whole"):
            reads["ids"].append(ids)
        return by_id(ids)

    leases = market.asset_leases

    def count_leases(ids):
        ids = list(ids)
        reads["leases"].append(ids)
        return leases(ids)

    market.all_assets, market.assets_by_id, market.asset_leases = count_whole, count_ids, count_leases
    view = ChainView(market)
    view.reads = reads
    view.sdk = market
    return view


def by_id(view):
    return {a.id: a for a in view.assets()}


def test_each_new_head_re_reads_only_the_assets_its_events_name(
    view, chain, assets, market, provider, keeper, registered_keeper, register_asset, post_job
):
    first, second, third = register_asset(), register_asset(), register_asset()
    assert sorted(by_id(view)) == [first, second, third] and view.reads["whole"] == 1

    assets.set_price(first, 7, sender=provider)
    assert by_id(view)[first].spec.price == 7
    assert (view.reads["whole"], view.reads["ids"]) == (1, [[first]])

    job = post_job()  # no asset named: nothing re-read
    assert by_id(view) == {a.id: a for a in view.sdk.all_assets()}
    assert view.reads["ids"][-1] == []

    market.assign(job, 0, second, sender=keeper)  # a market event: only the stake and leased totals
    assert by_id(view)[second].stake.open_leases == 1
    assert (view.reads["ids"][-1], view.reads["leases"][-1]) == ([], [second])
    assert by_id(view) == {a.id: a for a in view.sdk.all_assets()}

    fourth = register_asset()  # a new id is read even before any event of it is seen
    assert by_id(view)[fourth].spec.price == view.sdk.asset(fourth).spec.price
    assert fourth in view.reads["ids"][-1] and first not in view.reads["ids"][-1]
    assert view.assets() == view.sdk.all_assets()  # same head: no read at all
    assert view.reads["whole"] == 4  # the three comparisons' own whole reads


def test_a_change_naming_no_asset_or_a_forgotten_index_reads_it_whole(
    view, chain, market, client, keeper, registered_keeper, register_asset, post_job
):
    asset = register_asset()
    job = post_job()
    market.assign(job, 0, asset, sender=keeper)
    assert by_id(view)[asset].stake.open_leases == 1
    whole = view.reads["whole"]

    market.cancel(job, 0, sender=client)  # frees the lease, inside its decline window, naming no asset
    assert by_id(view)[asset].stake.open_leases == 0
    assert view.reads["whole"] == whole + 1

    view.forget_assets()
    view.assets()
    assert view.reads["whole"] == whole + 2
