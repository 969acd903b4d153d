# pragma version ~=0.4.3
"""
@title Asset stakes
@notice Each compute asset's bond in the payment token. The market lets an asset
        take work only while its stake (less any amount unbonding) meets the
        market's minimum, counts its open leases and the results it still answers
        for, and slashes it on faults; the slashed tokens go to the market, which
        credits them onward. The stake belongs to the asset, so it moves with the
        token. A lease ends when its result is submitted, so capacity returns at
        once; the result then keeps the stake locked until it is final. Taking the
        stake back needs no open lease, no pending result and the unbonding delay,
        so a provider cannot run from a dispute. Besides GPUs, each lease holds CPU
        cores, memory and disk; the asset's open leases together never hold more
        than it offers.
"""

from ethereum.ercs import IERC20

from . import erc721

uses: erc721

_MASK8: constant(uint256) = 2**8 - 1
_MASK16: constant(uint256) = 2**16 - 1
_MASK32: constant(uint256) = 2**32 - 1
_MASK40: constant(uint256) = 2**40 - 1
_MASK88: constant(uint256) = 2**88 - 1
_BPS: constant(uint256) = 10000

# @dev How `_end` moves a lease along (see there).
LEASE_CLOSED: constant(uint256) = 0
LEASE_RESULT: constant(uint256) = 1
RESULT_CLOSED: constant(uint256) = 2

# @dev The payment token stakes are held in.
TOKEN: public(immutable(IERC20))
# @dev Seconds between asking for stake back and receiving it.
UNBONDING_DELAY: public(immutable(uint256))
# @dev The only contract that may open, close and slash leases. Immutable: it is
#      known before deployment (the deployer predicts its address), so no one can
#      ever swap it, and the hot paths read no storage for it.
MARKET: public(immutable(address))


struct Leased:
    cpu_cores: uint16  # CPU cores the asset's open leases hold together
    memory_mib: uint32  # memory they hold together, MiB
    disk_mib: uint32  # disk they hold together, MiB


struct Stake:
    amount: uint96  # token base units (at most 2**88 - 1)
    open_leases: uint16  # replicas assigned to this asset and still running
    gpus_leased: uint8  # GPUs those leases hold together
    pending_results: uint16  # results submitted or disputed, not yet final or rejected
    unbond_at: uint40  # when the unbonding amount may be withdrawn
    unbonding: uint88  # amount asked back; it no longer counts toward eligibility


# @dev asset -> Stake, packed (88, 16, 8, 16, 40, 88 bits).
_stakes: HashMap[uint256, uint256]
# @dev asset -> memory_mib 0-31 and disk_mib 32-63 it offers, and the cpu cores 64-79,
#      memory 80-111 and disk 112-143 (MiB) its open leases hold together. One word, so a
#      lease reads and writes a single extra slot, never zero for a registered asset.
_resources: HashMap[uint256, uint256]


event StakeAdded:
    asset: indexed(uint256)
    sender: indexed(address)
    amount: uint256
    stake: uint256


event UnstakeRequested:
    asset: indexed(uint256)
    amount: uint256
    unbond_at: uint256


event StakeWithdrawn:
    asset: indexed(uint256)
    owner: indexed(address)
    amount: uint256


event StakeSlashed:
    asset: indexed(uint256)
    amount: uint256
    stake: uint256


@deploy
def __init__(token: IERC20, unbonding_delay: uint256, market: address):
    """
    @param token The payment token.
    @param unbonding_delay Seconds between asking for stake back and receiving it.
    @param market The job market's address.
    """
    assert market != empty(address), "asset_stakes: zero market"
    TOKEN = token
    UNBONDING_DELAY = unbonding_delay
    MARKET = market


@external
@nonreentrant
def add_stake(asset: uint256, amount: uint256):
    """
    @notice Adds `amount` tokens (approve this contract first) to the asset's stake.
    @param asset An asset the caller owns.
    @param amount Token base units.
    """
    self._check_owner(asset)
    assert amount > 0, "asset_stakes: zero amount"
    s: Stake = self._stake(asset)
    total: uint256 = convert(s.amount, uint256) + amount
    # 88 bits, so any amount of the stake fits the unbonding field too.
    assert total <= _MASK88, "asset_stakes: stake too large"
    s.amount = convert(total, uint96)
    self._store(asset, s)
    assert extcall TOKEN.transferFrom(msg.sender, self, amount, default_return_value=True), "asset_stakes: transfer failed"
    log StakeAdded(asset=asset, sender=msg.sender, amount=amount, stake=total)


@external
def request_unstake(asset: uint256, amount: uint256):
    """
    @notice Starts the unbonding delay for `amount`; it stops counting toward the
            minimum stake at once. A new request replaces the previous one.
    @param asset An asset the caller owns.
    @param amount Token base units, at most the stake.
    """
    self._check_owner(asset)
    s: Stake = self._stake(asset)
    assert amount > 0 and amount <= convert(s.amount, uint256), "asset_stakes: amount exceeds stake"
    unbond_at: uint256 = block.timestamp + UNBONDING_DELAY
    s.unbonding = convert(amount, uint88)
    s.unbond_at = convert(unbond_at, uint40)
    self._store(asset, s)
    log UnstakeRequested(asset=asset, amount=amount, unbond_at=unbond_at)


@external
@nonreentrant
def withdraw_stake(asset: uint256) -> uint256:
    """
    @notice Pays the unbonded amount to the asset's owner.
    @param asset An asset the caller owns.
    @return Base units paid (less than asked if a slash came in between).
    """
    owner: address = self._check_owner(asset)
    s: Stake = self._stake(asset)
    assert s.unbonding != 0, "asset_stakes: nothing unbonding"
    assert block.timestamp >= convert(s.unbond_at, uint256), "asset_stakes: still unbonding"
    assert s.open_leases == 0, "asset_stakes: asset has open leases"
    assert s.pending_results == 0, "asset_stakes: asset has results that can still be challenged"
    amount: uint256 = min(convert(s.unbonding, uint256), convert(s.amount, uint256))
    s.amount -= convert(amount, uint96)
    s.unbonding = 0
    s.unbond_at = 0
    self._store(asset, s)
    assert extcall TOKEN.transfer(owner, amount, default_return_value=True), "asset_stakes: transfer failed"
    log StakeWithdrawn(asset=asset, owner=owner, amount=amount)
    return amount


@external
@view
def stake(asset: uint256) -> Stake:
    """
    @notice An asset's stake, open leases, pending results and unbonding request.
    @param asset The asset.
    @return Its stake record.
    """
    return self._stake(asset)


@external
@view
def leased(asset: uint256) -> Leased:
    """
    @notice The CPU cores, memory and disk the asset's open leases hold together (its
            GPUs are in `stake`).
    @param asset The asset.
    @return CPU cores, memory (MiB) and disk (MiB) leased.
    """
    word: uint256 = self._resources[asset]
    return Leased(
        cpu_cores=convert((word >> 64) & _MASK16, uint16),
        memory_mib=convert((word >> 80) & _MASK32, uint32),
        disk_mib=convert((word >> 112) & _MASK32, uint32),
    )


@internal
@view
def _stake(asset: uint256) -> Stake:
    """
    @dev Unpacks an asset's stake record.
    """
    word: uint256 = self._stakes[asset]
    return Stake(
        amount=convert(word & _MASK88, uint96),
        open_leases=convert((word >> 88) & _MASK16, uint16),
        gpus_leased=convert((word >> 104) & _MASK8, uint8),
        pending_results=convert((word >> 112) & _MASK16, uint16),
        unbond_at=convert((word >> 128) & _MASK40, uint40),
        unbonding=convert(word >> 168, uint88),
    )


@internal
def _store(asset: uint256, s: Stake):
    """
    @dev Packs and stores an asset's stake record.
    """
    self._stakes[asset] = (
        convert(s.amount, uint256)
        | convert(s.open_leases, uint256) << 88
        | convert(s.gpus_leased, uint256) << 104
        | convert(s.pending_results, uint256) << 112
        | convert(s.unbond_at, uint256) << 128
        | convert(s.unbonding, uint256) << 168
    )


@internal
@view
def _check_owner(asset: uint256) -> address:
    """
    @dev Reverts unless the caller owns the asset; returns the owner.
    """
    owner: address = erc721._require_owner(asset)
    assert owner == msg.sender, "asset_stakes: caller is not the asset owner"
    return owner


@internal
@view
def _check_market():
    """
    @dev Reverts unless the caller is the job market.
    """
    assert msg.sender == MARKET, "asset_stakes: caller is not the market"


@internal
def _set_offer(asset: uint256, memory_mib: uint32, disk_mib: uint32):
    """
    @dev Records the memory and disk a newly registered asset offers (nothing leased yet).
    """
    self._resources[asset] = convert(memory_mib, uint256) | convert(disk_mib, uint256) << 32


@internal
def _open_lease(asset: uint256, min_stake: uint256, max_leases: uint16, demand: uint256, gpu_count: uint8, cpu_cores: uint16):
    """
    @dev Counts a new lease holding `demand` (packed: gpus 0-7, cpu cores 8-23,
         memory_mib 24-55, disk_mib 56-87) if the stake not unbonding meets
         `min_stake`, the asset holds fewer than `max_leases`, and its open leases
         together hold no more than its `gpu_count` GPUs, `cpu_cores` cores and the
         memory and disk it offers with this one, so no one can pile leases onto an
         asset to have them expire and slash it, and nothing is leased twice. The
         caller has checked that the asset has the CPU, memory and disk at all.
    """
    s: Stake = self._stake(asset)
    available: uint256 = convert(s.amount, uint256) - min(convert(s.unbonding, uint256), convert(s.amount, uint256))
    assert available >= min_stake, "asset_stakes: stake below minimum"
    assert s.open_leases < max_leases, "asset_stakes: asset at lease capacity"
    gpus: uint256 = demand & _MASK8
    if gpus <= convert(gpu_count, uint256):  # more than it has at all: the market's "too few gpus"
        assert convert(s.gpus_leased, uint256) + gpus <= convert(gpu_count, uint256), "asset_stakes: asset gpus all leased"
    s.open_leases += 1
    s.gpus_leased += convert(gpus, uint8)
    self._store(asset, s)
    res: uint256 = self._resources[asset]
    assert ((res >> 64) & _MASK16) + ((demand >> 8) & _MASK16) <= convert(cpu_cores, uint256), "asset_stakes: asset cpu cores all leased"
    assert ((res >> 80) & _MASK32) + ((demand >> 24) & _MASK32) <= res & _MASK32, "asset_stakes: asset memory all leased"
    assert ((res >> 112) & _MASK32) + ((demand >> 56) & _MASK32) <= (res >> 32) & _MASK32, "asset_stakes: asset disk all leased"
    # Each total stays within what the asset offers, so no field carries into the next.
    self._resources[asset] = res + self._held(demand)


@internal
def _end(asset: uint256, demand: uint256, stage: uint256, count: uint256):
    """
    @dev Moves `count` leases each holding `demand` (packed as in `_open_lease`) along:
         LEASE_CLOSED ends running leases (declined, cancelled or expired),
         LEASE_RESULT ends them with results that stay pending, both giving their
         resources back; RESULT_CLOSED ends pending results (final or rejected),
         which hold none (`demand` is 0). Each count is checked not to go below zero,
         so no lease ends that was not open.
    """
    s: Stake = self._stake(asset)
    n: uint16 = convert(count, uint16)
    if stage == RESULT_CLOSED:
        s.pending_results -= n
    else:
        s.open_leases -= n
        s.gpus_leased -= convert((demand & _MASK8) * count, uint8)
        if stage == LEASE_RESULT:
            s.pending_results += n
        # The leases were counted into every field, so no field borrows from the next.
        self._resources[asset] -= self._held(demand) * count
    self._store(asset, s)


@internal
@pure
def _held(demand: uint256) -> uint256:
    """
    @dev A lease's CPU cores, memory and disk, placed where `_resources` counts them.
    """
    return (
        ((demand >> 8) & _MASK16) << 64
        | ((demand >> 24) & _MASK32) << 80
        | ((demand >> 56) & _MASK32) << 112
    )


@internal
def _slash(asset: uint256, slash_bps: uint256) -> uint256:
    """
    @dev Takes `slash_bps` of the asset's stake and sends it to the market.
    """
    s: Stake = self._stake(asset)
    slashed: uint256 = convert(s.amount, uint256) * slash_bps // _BPS
    s.amount -= convert(slashed, uint96)
    self._store(asset, s)
    if slashed > 0:
        assert extcall TOKEN.transfer(msg.sender, slashed, default_return_value=True), "asset_stakes: transfer failed"
    log StakeSlashed(asset=asset, amount=slashed, stake=convert(s.amount, uint256))
    return slashed
