"""KeeperRegistry: bonding, exit after the unbonding delay, the minimum bond and
two-step ownership."""

import ape
import pytest
from ape.utils import ZERO_ADDRESS

from computenet.deploy import DEFAULT_MIN_KEEPER_BOND, DEFAULT_UNBONDING_DELAY

TOKEN = 10**6
BOND = DEFAULT_MIN_KEEPER_BOND
MAX_BOND = 2**96 - 1


@pytest.fixture
def exiting(chain, keepers, keeper):
    """Registers `keeper` with twice the minimum bond and requests exit; returns exit_at."""
    keepers.register(2 * BOND, sender=keeper)
    receipt = keepers.request_exit(sender=keeper)
    return receipt.events.filter(keepers.KeeperExitRequested)[0].exit_at


def test_deployment(keepers, token, owner):
    assert keepers.TOKEN() == token.address
    assert keepers.UNBONDING_DELAY() == DEFAULT_UNBONDING_DELAY
    assert keepers.min_bond() == BOND
    assert keepers.keeper_count() == 0
    assert keepers.owner() == owner.address
    assert keepers.pending_owner() == ZERO_ADDRESS


# ---------------------------------------------------------------- register


def test_register(keepers, token, keeper):
    keeper_before, registry_before = token.balanceOf(keeper), token.balanceOf(keepers)
    assert keepers.register.call(BOND, sender=keeper) == 1
    receipt = keepers.register(BOND, sender=keeper)
    assert token.balanceOf(keeper) == keeper_before - BOND
    assert token.balanceOf(keepers) == registry_before + BOND
    record = keepers.keeper(keeper)
    assert (record.id, record.bond, record.exit_at) == (1, BOND, 0)
    assert keepers.keeper_of(1) == keeper.address
    assert keepers.keeper_count() == 1
    assert keepers.active_keeper_id(keeper) == 1
    (log,) = receipt.events.filter(keepers.KeeperRegistered)
    assert log.event_arguments == {"keeper": keeper.address, "id": 1, "bond": BOND}


def test_register_ids_sequential(keepers, keeper, keeper2, provider):
    for expected, who in enumerate((keeper, keeper2, provider), start=1):
        receipt = keepers.register(BOND + expected, sender=who)
        assert receipt.events.filter(keepers.KeeperRegistered)[0].id == expected
        assert keepers.keeper(who).id == expected
        assert keepers.keeper(who).bond == BOND + expected
        assert keepers.keeper_of(expected) == who.address
    assert keepers.keeper_count() == 3


def test_register_bond_below_minimum(keepers, keeper):
    with ape.reverts("keeper_registry: bond below minimum"):
        keepers.register(BOND - 1, sender=keeper)


def test_register_already_registered(keepers, keeper):
    keepers.register(BOND, sender=keeper)
    with ape.reverts("keeper_registry: already registered"):
        keepers.register(BOND, sender=keeper)


def test_register_while_exiting(keepers, keeper, exiting):
    """An exiting keeper is still registered until it withdraws its bond."""
    with ape.reverts("keeper_registry: already registered"):
        keepers.register(BOND, sender=keeper)


def test_register_bond_too_large(keepers, keeper):
    """Bonds are packed into 96 bits."""
    with ape.reverts("keeper_registry: bond too large"):
        keepers.register(MAX_BOND + 1, sender=keeper)


def test_register_without_allowance(keepers, token, stranger):
    """The token's own revert comes through, and nothing is recorded."""
    token.faucet(stranger, BOND, sender=stranger)
    with ape.reverts("ERC20: transfer amount exceeds allowance"):
        keepers.register(BOND, sender=stranger)
    assert keepers.keeper(stranger).id == 0
    assert keepers.keeper_count() == 0


# ---------------------------------------------------------------- request_exit


def test_request_exit(chain, keepers, keeper):
    keepers.register(BOND, sender=keeper)
    at = chain.pending_timestamp + 10
    chain.pending_timestamp = at
    receipt = keepers.request_exit(sender=keeper)
    exit_at = at + DEFAULT_UNBONDING_DELAY
    (log,) = receipt.events.filter(keepers.KeeperExitRequested)
    assert log.event_arguments == {"keeper": keeper.address, "exit_at": exit_at}
    record = keepers.keeper(keeper)
    assert (record.id, record.bond, record.exit_at) == (1, BOND, exit_at)


def test_request_exit_not_a_keeper(keepers, stranger):
    with ape.reverts("keeper_registry: not a keeper"):
        keepers.request_exit(sender=stranger)


def test_request_exit_twice(keepers, keeper, exiting):
    with ape.reverts("keeper_registry: exit already requested"):
        keepers.request_exit(sender=keeper)
    assert keepers.keeper(keeper).exit_at == exiting


# ---------------------------------------------------------------- withdraw_bond


def test_withdraw_bond(chain, keepers, token, keeper, keeper2, exiting):
    """At exactly exit_at the whole bond comes back and the record is cleared; the id
    keeps pointing at the keeper so fees for its past work still find it."""
    keepers.register(BOND, sender=keeper2)
    keeper_before, registry_before = token.balanceOf(keeper), token.balanceOf(keepers)
    chain.pending_timestamp = exiting
    receipt = keepers.withdraw_bond(sender=keeper)
    assert token.balanceOf(keeper) == keeper_before + 2 * BOND
    assert token.balanceOf(keepers) == registry_before - 2 * BOND
    (log,) = receipt.events.filter(keepers.KeeperBondWithdrawn)
    assert log.event_arguments == {"keeper": keeper.address, "amount": 2 * BOND}
    record = keepers.keeper(keeper)
    assert (record.id, record.bond, record.exit_at) == (0, 0, 0)
    assert keepers.keeper_of(1) == keeper.address
    assert keepers.keeper_count() == 2
    with ape.reverts("keeper_registry: not a keeper"):
        keepers.active_keeper_id(keeper)


def test_withdraw_bond_return_value(chain, keepers, keeper, exiting):
    chain.pending_timestamp = exiting + 1
    chain.mine()
    assert keepers.withdraw_bond.call(sender=keeper) == 2 * BOND


def test_withdraw_bond_still_unbonding(chain, keepers, keeper, exiting):
    chain.pending_timestamp = exiting - 1
    with ape.reverts("keeper_registry: still unbonding"):
        keepers.withdraw_bond(sender=keeper)


def test_withdraw_bond_not_a_keeper(keepers, stranger):
    with ape.reverts("keeper_registry: not a keeper"):
        keepers.withdraw_bond(sender=stranger)


def test_withdraw_bond_exit_not_requested(keepers, keeper):
    keepers.register(BOND, sender=keeper)
    with ape.reverts("keeper_registry: exit not requested"):
        keepers.withdraw_bond(sender=keeper)


def test_withdraw_bond_twice(chain, keepers, keeper, exiting):
    chain.pending_timestamp = exiting
    keepers.withdraw_bond(sender=keeper)
    with ape.reverts("keeper_registry: not a keeper"):
        keepers.withdraw_bond(sender=keeper)


def test_withdraw_pays_bond_despite_new_minimum(chain, keepers, token, owner, keeper, exiting):
    """The bond paid back is what was bonded, whatever the minimum is now."""
    keepers.set_min_bond(10 * BOND, sender=owner)
    before = token.balanceOf(keeper)
    chain.pending_timestamp = exiting
    keepers.withdraw_bond(sender=keeper)
    assert token.balanceOf(keeper) == before + 2 * BOND


def test_register_again_after_withdraw(chain, keepers, keeper, exiting):
    chain.pending_timestamp = exiting
    keepers.withdraw_bond(sender=keeper)
    receipt = keepers.register(BOND, sender=keeper)
    assert receipt.events.filter(keepers.KeeperRegistered)[0].id == 2
    record = keepers.keeper(keeper)
    assert (record.id, record.bond, record.exit_at) == (2, BOND, 0)
    assert keepers.active_keeper_id(keeper) == 2
    assert keepers.keeper_of(1) == keeper.address
    assert keepers.keeper_of(2) == keeper.address


# ---------------------------------------------------------------- active_keeper_id


def test_active_keeper_id_not_a_keeper(keepers, stranger):
    with ape.reverts("keeper_registry: not a keeper"):
        keepers.active_keeper_id(stranger)


def test_active_keeper_id_exiting(keepers, keeper, exiting):
    with ape.reverts("keeper_registry: keeper is exiting"):
        keepers.active_keeper_id(keeper)


def test_active_keeper_id_bond_below_raised_minimum(keepers, owner, keeper):
    keepers.register(BOND, sender=keeper)
    keepers.set_min_bond(BOND + 1, sender=owner)
    with ape.reverts("keeper_registry: bond below minimum"):
        keepers.active_keeper_id(keeper)
    keepers.set_min_bond(BOND, sender=owner)
    assert keepers.active_keeper_id(keeper) == 1


def test_keeper_record_of_stranger(keepers, stranger):
    record = keepers.keeper(stranger)
    assert (record.id, record.bond, record.exit_at) == (0, 0, 0)
    assert keepers.keeper_of(1) == ZERO_ADDRESS


# ---------------------------------------------------------------- set_min_bond


def test_set_min_bond(keepers, keeper, owner):
    receipt = keepers.set_min_bond(5 * BOND, sender=owner)
    assert keepers.min_bond() == 5 * BOND
    (log,) = receipt.events.filter(keepers.MinBondSet)
    assert log.event_arguments == {"min_bond": 5 * BOND}
    with ape.reverts("keeper_registry: bond below minimum"):
        keepers.register(5 * BOND - 1, sender=keeper)
    keepers.register(5 * BOND, sender=keeper)


def test_set_min_bond_zero(keepers, owner, keeper):
    keepers.set_min_bond(0, sender=owner)
    keepers.register(0, sender=keeper)
    assert keepers.active_keeper_id(keeper) == 1


def test_set_min_bond_too_large(keepers, owner):
    keepers.set_min_bond(MAX_BOND, sender=owner)
    with ape.reverts("keeper_registry: bond too large"):
        keepers.set_min_bond(MAX_BOND + 1, sender=owner)


def test_set_min_bond_only_owner(keepers, stranger):
    with ape.reverts("ownable: caller is not the owner"):
        keepers.set_min_bond(1, sender=stranger)


# ---------------------------------------------------------------- ownership


def test_transfer_ownership(keepers, owner, stranger):
    receipt = keepers.transfer_ownership(stranger, sender=owner)
    assert keepers.owner() == owner.address
    assert keepers.pending_owner() == stranger.address
    (log,) = receipt.events.filter(keepers.OwnershipTransferStarted)
    assert log.event_arguments == {"previous_owner": owner.address, "new_owner": stranger.address}
    receipt = keepers.accept_ownership(sender=stranger)
    assert keepers.owner() == stranger.address
    assert keepers.pending_owner() == ZERO_ADDRESS
    (log,) = receipt.events.filter(keepers.OwnershipTransferred)
    assert log.event_arguments == {"previous_owner": owner.address, "new_owner": stranger.address}
    keepers.set_min_bond(1, sender=stranger)
    with ape.reverts("ownable: caller is not the owner"):
        keepers.set_min_bond(2, sender=owner)


def test_accept_ownership_only_pending_owner(keepers, owner, stranger, keeper):
    keepers.transfer_ownership(stranger, sender=owner)
    for who in (keeper, owner):
        with ape.reverts("ownable: caller is not the pending owner"):
            keepers.accept_ownership(sender=who)
    assert keepers.owner() == owner.address


def test_accept_ownership_nothing_pending(keepers, stranger):
    with ape.reverts("ownable: caller is not the pending owner"):
        keepers.accept_ownership(sender=stranger)


def test_transfer_ownership_only_owner(keepers, stranger):
    with ape.reverts("ownable: caller is not the owner"):
        keepers.transfer_ownership(stranger, sender=stranger)


def test_transfer_ownership_cancel(keepers, owner, stranger):
    """Naming the zero address withdraws a pending transfer."""
    keepers.transfer_ownership(stranger, sender=owner)
    keepers.transfer_ownership(ZERO_ADDRESS, sender=owner)
    assert keepers.pending_owner() == ZERO_ADDRESS
    with ape.reverts("ownable: caller is not the pending owner"):
        keepers.accept_ownership(sender=stranger)
    assert keepers.owner() == owner.address
