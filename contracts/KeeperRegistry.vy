# pragma version ~=0.4.3
# pragma experimental-codegen
"""
@title computenet keeper registry
@notice Keepers bond tokens for the right to assign work. A bad keeper can only waste
        its own gas (the market checks every assignment), so the bond is a cost on
        fake identities, not a slashing target. Leaving takes the unbonding delay.
"""

from ethereum.ercs import IERC20

from .interfaces import IKeeperRegistry
from .modules import ownable_2step as ownable

implements: IKeeperRegistry

initializes: ownable

exports: (
    ownable.owner,
    ownable.pending_owner,
    ownable.transfer_ownership,
    ownable.accept_ownership,
)

# @dev Keeper ids fit 24 bits, their width in a packed replica.
MAX_KEEPERS: constant(uint256) = 2**24 - 1

_MASK24: constant(uint256) = 2**24 - 1
_MASK40: constant(uint256) = 2**40 - 1
_MASK96: constant(uint256) = 2**96 - 1

# @dev The token bonds are held in.
TOKEN: public(immutable(IERC20))
# @dev Seconds between asking to leave and getting the bond back.
UNBONDING_DELAY: public(immutable(uint256))


struct Keeper:
    id: uint24  # 0 when not registered
    bond: uint96  # token base units
    exit_at: uint40  # when the bond may be withdrawn; 0 while active


# @dev Bond a keeper needs to assign work, token base units.
min_bond: public(uint256)
# @dev keeper -> id (bits 0-23), bond (24-119), exit_at (120-159).
_keepers: HashMap[address, uint256]
# @dev id -> keeper; kept after exit, so fees for past work still find it.
keeper_of: public(HashMap[uint256, address])
# @dev Number of keeper ids handed out.
keeper_count: public(uint256)


event KeeperRegistered:
    keeper: indexed(address)
    id: uint256
    bond: uint256


event KeeperExitRequested:
    keeper: indexed(address)
    exit_at: uint256


event KeeperBondWithdrawn:
    keeper: indexed(address)
    amount: uint256


event MinBondSet:
    min_bond: uint256


@deploy
def __init__(token: IERC20, min_bond: uint256, unbonding_delay: uint256):
    """
    @param token The bond token.
    @param min_bond Bond a keeper needs, token base units.
    @param unbonding_delay Seconds between asking to leave and getting the bond back.
    """
    ownable.__init__()
    TOKEN = token
    UNBONDING_DELAY = unbonding_delay
    self._set_min_bond(min_bond)


@external
@nonreentrant
def register(bond: uint256) -> uint256:
    """
    @notice Bonds `bond` tokens (approve this contract first) and makes the caller a keeper.
    @param bond Token base units, at least `min_bond`.
    @return The keeper id.
    """
    assert self._keepers[msg.sender] == 0, "keeper_registry: already registered"
    assert bond >= self.min_bond, "keeper_registry: bond below minimum"
    assert bond <= _MASK96, "keeper_registry: bond too large"
    keeper_id: uint256 = self.keeper_count + 1
    assert keeper_id <= MAX_KEEPERS, "keeper_registry: registry full"
    self.keeper_count = keeper_id
    self.keeper_of[keeper_id] = msg.sender
    self._keepers[msg.sender] = keeper_id | bond << 24
    assert extcall TOKEN.transferFrom(msg.sender, self, bond, default_return_value=True), "keeper_registry: transfer failed"
    log KeeperRegistered(keeper=msg.sender, id=keeper_id, bond=bond)
    return keeper_id


@external
def request_exit():
    """
    @notice Stops the caller assigning work and starts the unbonding delay.
    """
    k: Keeper = self._keeper(msg.sender)
    assert k.id != 0, "keeper_registry: not a keeper"
    assert k.exit_at == 0, "keeper_registry: exit already requested"
    exit_at: uint256 = block.timestamp + UNBONDING_DELAY
    self._keepers[msg.sender] |= exit_at << 120
    log KeeperExitRequested(keeper=msg.sender, exit_at=exit_at)


@external
@nonreentrant
def withdraw_bond() -> uint256:
    """
    @notice After the unbonding delay, pays the bond back and ends the registration.
    @return Token base units paid.
    """
    k: Keeper = self._keeper(msg.sender)
    assert k.id != 0, "keeper_registry: not a keeper"
    assert k.exit_at != 0, "keeper_registry: exit not requested"
    assert block.timestamp >= convert(k.exit_at, uint256), "keeper_registry: still unbonding"
    self._keepers[msg.sender] = 0
    amount: uint256 = convert(k.bond, uint256)
    assert extcall TOKEN.transfer(msg.sender, amount, default_return_value=True), "keeper_registry: transfer failed"
    log KeeperBondWithdrawn(keeper=msg.sender, amount=amount)
    return amount


@external
def set_min_bond(min_bond: uint256):
    """
    @notice Sets the bond keepers need from now on; keepers below it stop assigning.
    @param min_bond Token base units.
    """
    ownable._check_owner()
    self._set_min_bond(min_bond)


@external
@view
def keeper(account: address) -> Keeper:
    """
    @notice A keeper's id, bond and exit time.
    @param account The keeper.
    @return Its record; id 0 for non-keepers.
    """
    return self._keeper(account)


@external
@view
def active_keeper_id(account: address) -> uint24:
    """
    @notice The id of `account` if it may assign work now; reverts with the reason otherwise.
    @param account The keeper.
    @return The keeper id.
    """
    k: Keeper = self._keeper(account)
    assert k.id != 0, "keeper_registry: not a keeper"
    assert k.exit_at == 0, "keeper_registry: keeper is exiting"
    assert convert(k.bond, uint256) >= self.min_bond, "keeper_registry: bond below minimum"
    return k.id


@internal
@view
def _keeper(account: address) -> Keeper:
    """
    @dev Unpacks a keeper's record.
    """
    word: uint256 = self._keepers[account]
    return Keeper(
        id=convert(word & _MASK24, uint24),
        bond=convert((word >> 24) & _MASK96, uint96),
        exit_at=convert((word >> 120) & _MASK40, uint40),
    )


@internal
def _set_min_bond(min_bond: uint256):
    """
    @dev Stores the minimum bond, which must fit the 96-bit bond field.
    """
    assert min_bond <= _MASK96, "keeper_registry: bond too large"
    self.min_bond = min_bond
    log MinBondSet(min_bond=min_bond)
