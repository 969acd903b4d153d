"""Selling an asset to leave a lease's risk with the buyer, or to keep acting for it after the
sale: the transfer waits until no lease is open, clears the agent key and every approval the
seller left, and the seller's key can no longer decline or sign for the buyer's stake."""

import ape
from terms import COST, KEEPER_FEE, PAY, PROTOCOL_FEE, STAKE, WRONG

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
BUSY = b"busy".ljust(32, b"\0")


def test_an_asset_changes_hands_only_with_no_lease_open_and_the_sellers_key_cannot_act_for_it(
    market,
    token,
    assets,
    post_job,
    asset,
    lease,
    submit,
    agents,
    provider,
    provider2,
    accounts,
    client,
    keeper,
    treasury,
    ledger,
    after,
):
    seller, buyer, back_door = provider, provider2, accounts[14]
    books = ledger(seller=seller, buyer=buyer, client=client, keeper=keeper, treasury=treasury)
    sold = asset(agent_account=agents[0])
    assets.approve(back_door, sold, sender=seller)  # ways back in, the seller hopes
    assets.setApprovalForAll(back_door, True, sender=seller)
    first = post_job()
    lease(first, 0, sold, agents[0], output_root=None)

    with ape.reverts("compute_asset: asset has open leases"):  # assigned
        assets.transferFrom(seller, buyer, sold, sender=seller)
    submit(agents[0], first, 0, 0)
    with ape.reverts("compute_asset: asset has results that can still be challenged"):  # submitted
        assets.transferFrom(seller, buyer, sold, sender=back_door)
    after(market.replica(first, 0, 0).deadline)
    market.finalize(first, 0, sender=keeper)  # the seller's lease ends under the seller
    token.transfer(seller, STAKE, sender=buyer)  # the price: what the stake is worth
    assets.transferFrom(seller, buyer, sold, sender=seller)

    assert (assets.ownerOf(sold), assets.agentOf(sold)) == (buyer.address, ZERO_ADDRESS)
    assert assets.getApproved(sold) == ZERO_ADDRESS
    second = post_job()
    with ape.reverts("compute_asset: no agent"):
        market.assign(second, 0, sold, sender=keeper)
    for who in (seller, back_door):
        with ape.reverts("compute_asset: caller is not owner nor approved"):
            assets.set_agent(sold, agents[0], sender=who)
    assets.set_agent(sold, agents[1], sender=buyer)
    market.assign(second, 0, sold, sender=keeper)
    with ape.reverts("job_market: caller is not the asset's agent"):
        market.decline(second, 0, 0, BUSY, sender=agents[0])
    with ape.reverts("job_market: receipt not signed by the asset's agent"):
        submit(agents[0], second, 0, 0, output_root=WRONG)
    submit(agents[1], second, 0, 0)
    after(market.replica(second, 0, 0).deadline)
    market.finalize(second, 0, sender=keeper)

    # Each is paid for its own lease; the stake went over for its price.
    assert books.changes() == {
        "seller": PAY,
        "buyer": PAY,
        "client": -2 * COST,
        "keeper": 2 * KEEPER_FEE,
        "treasury": 2 * PROTOCOL_FEE,
    }
