# pragma version ~=0.4.3
"""
@title Market parameters and pause
@notice Fees, windows and minimum amounts, settable by the owner within fixed bounds;
        the treasury; the facilitators who arbitrate disputes; and the emergency pause.
@dev What every job step reads (fees, windows, minimum stake, paused) is packed into
     one word, so a step pays for one storage read. Fees are snapshotted into each
     job when it is posted, so changing them never touches a budget already escrowed.
"""

from . import ownable_2step as ownable

uses: ownable

# @dev Hard bounds the owner cannot cross.
MAX_FEE_BPS: constant(uint16) = 1000  # 10 % each for keepers and the protocol
MAX_SLASH_BPS: constant(uint16) = 5000  # half the stake per fault
MIN_WINDOW: constant(uint32) = 60  # one minute
MAX_WINDOW: constant(uint32) = 2592000  # thirty days
MAX_DECLINE_WINDOW: constant(uint32) = 3600
MAX_LEASE_GRACE: constant(uint32) = 86400
MAX_AMOUNT: constant(uint256) = 2**96 - 1  # amounts are packed into 96 bits

_MASK16: constant(uint256) = 2**16 - 1
_MASK32: constant(uint256) = 2**32 - 1
_MASK96: constant(uint256) = 2**96 - 1


struct Parameters:
    keeper_fee_bps: uint16  # keeper's cut, basis points of each provider payment
    protocol_fee_bps: uint16  # protocol's cut, basis points of each provider payment
    slash_bps: uint16  # share of an asset's stake slashed per fault, basis points
    challenge_window: uint32  # seconds a result can be challenged after submission
    decline_window: uint32  # seconds an agent may decline an assignment without penalty
    lease_grace: uint32  # seconds added to every lease for set-up (image, inputs)
    min_stake: uint256  # stake an asset needs to be assigned work, token base units
    challenge_bond: uint256  # bond a challenger posts, token base units


# @dev What every job step reads, from one storage word.
struct Settings:
    keeper_fee_bps: uint16
    protocol_fee_bps: uint16
    slash_bps: uint16
    challenge_window: uint32
    decline_window: uint32
    lease_grace: uint32
    min_stake: uint96
    paused: bool


# @dev Settings, packed: bps 0-15, 16-31, 32-47; windows 48-79, 80-111, 112-143;
#      min_stake 144-239; paused 240.
_packed: uint256
# @dev Bond a challenger posts, token base units.
challenge_bond: public(uint256)
# @dev Where protocol fees are credited.
treasury: public(address)
# @dev Accounts allowed to resolve disputes.
is_facilitator: public(HashMap[address, bool])


event ParametersUpdated:
    keeper_fee_bps: uint16
    protocol_fee_bps: uint16
    slash_bps: uint16
    challenge_window: uint32
    decline_window: uint32
    lease_grace: uint32
    min_stake: uint256
    challenge_bond: uint256


event Paused:
    account: indexed(address)


event Unpaused:
    account: indexed(address)


event TreasurySet:
    treasury: indexed(address)


event FacilitatorSet:
    account: indexed(address)
    enabled: bool


@deploy
def __init__(treasury: address, params: Parameters):
    """
    @param treasury Receives protocol fees.
    @param params Initial parameters, checked against the bounds.
    """
    self._set_treasury(treasury)
    self._set_parameters(params)


@external
def set_parameters(params: Parameters):
    """
    @notice Replaces all parameters; new jobs use the new fees, posted jobs keep theirs.
    @param params The parameters, each within its bound.
    """
    ownable._check_owner()
    self._set_parameters(params)


@external
def pause():
    """
    @notice Stops new jobs and assignments, and reclaims stop slashing; results,
            finalization, cancels, disputes and withdrawals go on, so no one is
            slashed or stuck while paused.
    """
    ownable._check_owner()
    assert not self._settings().paused, "market_params: paused"
    self._packed |= 1 << 240
    log Paused(account=msg.sender)


@external
def unpause():
    """
    @notice Lifts the pause.
    """
    ownable._check_owner()
    assert self._settings().paused, "market_params: not paused"
    self._packed ^= 1 << 240
    log Unpaused(account=msg.sender)


@external
@view
def paused() -> bool:
    """
    @notice Whether the market is paused.
    @return True while paused.
    """
    return self._settings().paused


@external
@view
def min_stake() -> uint256:
    """
    @notice Stake an asset needs to be assigned work.
    @return Token base units.
    """
    return convert(self._settings().min_stake, uint256)


@external
def set_treasury(treasury: address):
    """
    @notice Sets where future protocol fees are credited.
    @param treasury The treasury.
    """
    ownable._check_owner()
    self._set_treasury(treasury)


@external
def set_facilitator(account: address, enabled: bool):
    """
    @notice Adds or removes a dispute arbiter.
    @param account The facilitator.
    @param enabled True to add, false to remove.
    """
    ownable._check_owner()
    assert account != empty(address), "market_params: zero facilitator"
    self.is_facilitator[account] = enabled
    log FacilitatorSet(account=account, enabled=enabled)


@external
@view
def parameters() -> Parameters:
    """
    @notice The current parameters.
    @return All of them.
    """
    s: Settings = self._settings()
    return Parameters(
        keeper_fee_bps=s.keeper_fee_bps,
        protocol_fee_bps=s.protocol_fee_bps,
        slash_bps=s.slash_bps,
        challenge_window=s.challenge_window,
        decline_window=s.decline_window,
        lease_grace=s.lease_grace,
        min_stake=convert(s.min_stake, uint256),
        challenge_bond=self.challenge_bond,
    )


@internal
@view
def _settings() -> Settings:
    """
    @dev Unpacks the settings word.
    """
    word: uint256 = self._packed
    return Settings(
        keeper_fee_bps=convert(word & _MASK16, uint16),
        protocol_fee_bps=convert((word >> 16) & _MASK16, uint16),
        slash_bps=convert((word >> 32) & _MASK16, uint16),
        challenge_window=convert((word >> 48) & _MASK32, uint32),
        decline_window=convert((word >> 80) & _MASK32, uint32),
        lease_grace=convert((word >> 112) & _MASK32, uint32),
        min_stake=convert((word >> 144) & _MASK96, uint96),
        paused=(word >> 240) & 1 == 1,
    )


@internal
@view
def _check_not_paused(s: Settings):
    """
    @dev Reverts while the market is paused.
    """
    assert not s.paused, "market_params: paused"


@internal
@view
def _check_facilitator():
    """
    @dev Reverts unless the caller may resolve disputes.
    """
    assert self.is_facilitator[msg.sender], "market_params: caller is not a facilitator"


@internal
def _set_treasury(treasury: address):
    """
    @dev Stores a non-zero treasury and logs it.
    """
    assert treasury != empty(address), "market_params: zero treasury"
    self.treasury = treasury
    log TreasurySet(treasury=treasury)


@internal
def _set_parameters(p: Parameters):
    """
    @dev Checks every bound, packs the settings (keeping the pause bit) and logs them.
    """
    assert p.keeper_fee_bps <= MAX_FEE_BPS, "market_params: keeper fee too high"
    assert p.protocol_fee_bps <= MAX_FEE_BPS, "market_params: protocol fee too high"
    assert p.slash_bps <= MAX_SLASH_BPS, "market_params: slash too high"
    assert p.challenge_window >= MIN_WINDOW and p.challenge_window <= MAX_WINDOW, "market_params: challenge window out of range"
    assert p.decline_window > 0 and p.decline_window <= MAX_DECLINE_WINDOW, "market_params: decline window out of range"
    assert p.lease_grace <= MAX_LEASE_GRACE, "market_params: lease grace too long"
    assert p.min_stake <= MAX_AMOUNT, "market_params: min stake too large"
    assert p.challenge_bond > 0 and p.challenge_bond <= MAX_AMOUNT, "market_params: challenge bond out of range"
    paused: uint256 = self._packed & (1 << 240)
    self._packed = (
        paused
        | convert(p.keeper_fee_bps, uint256)
        | convert(p.protocol_fee_bps, uint256) << 16
        | convert(p.slash_bps, uint256) << 32
        | convert(p.challenge_window, uint256) << 48
        | convert(p.decline_window, uint256) << 80
        | convert(p.lease_grace, uint256) << 112
        | p.min_stake << 144
    )
    self.challenge_bond = p.challenge_bond
    log ParametersUpdated(
        keeper_fee_bps=p.keeper_fee_bps,
        protocol_fee_bps=p.protocol_fee_bps,
        slash_bps=p.slash_bps,
        challenge_window=p.challenge_window,
        decline_window=p.decline_window,
        lease_grace=p.lease_grace,
        min_stake=p.min_stake,
        challenge_bond=p.challenge_bond,
    )
