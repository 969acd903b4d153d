# pragma version ~=0.4.3
"""
@title Settlement ledger
@notice Every token that enters or leaves the market passes here. Money owed is
        credited first and paid only when its owner withdraws (pull payments), so no
        settlement step can be blocked by a recipient.
"""

from ethereum.ercs import IERC20

# @dev The payment token (USDC, or TestToken on local chains).
TOKEN: public(immutable(IERC20))

# @dev account -> base units it may withdraw.
credits: public(HashMap[address, uint256])
# @dev Tokens the market owes: escrow, credits and challenge bonds held. Its token
#      balance never falls below this; anything above is tokens no one was credited
#      (an EIP-3009 transfer front-run to the market, a stray transfer).
owed: public(uint256)

# @dev Most accounts one `withdraw_many` pays.
MAX_BATCH: constant(uint256) = 64


event Credited:
    account: indexed(address)
    amount: uint256


event Withdrawn:
    account: indexed(address)
    receiver: indexed(address)
    amount: uint256


@deploy
def __init__(token: IERC20):
    """
    @param token The payment token.
    """
    TOKEN = token


@external
@nonreentrant
def withdraw(receiver: address) -> uint256:
    """
    @notice Pays the caller's whole credit to `receiver`.
    @param receiver Where the tokens go.
    @return Base units paid.
    """
    assert receiver != empty(address), "settlement: zero receiver"
    amount: uint256 = self._debit_all(msg.sender)
    assert amount > 0, "settlement: nothing to withdraw"
    self._push(receiver, amount)
    log Withdrawn(account=msg.sender, receiver=receiver, amount=amount)
    return amount


@external
@nonreentrant
def withdraw_many(accounts: DynArray[address, MAX_BATCH]) -> uint256:
    """
    @notice Pays each account its own credit; anyone may call it (keepers batch payouts).
    @dev Accounts with nothing owed are skipped, so a stale list cannot make it revert.
    @param accounts Up to 64 accounts.
    @return Base units paid in total.
    """
    total: uint256 = 0
    for account: address in accounts:
        amount: uint256 = self._debit_all(account)
        if amount == 0:
            continue
        total += amount
        self._push(account, amount)
        log Withdrawn(account=account, receiver=account, amount=amount)
    return total


@internal
def _credit(account: address, amount: uint256):
    """
    @dev Adds to what `account` may withdraw and logs it; zero amounts are skipped.
    """
    if amount == 0:
        return
    self._credit_unlogged(account, amount)
    log Credited(account=account, amount=amount)


@internal
def _credit_unlogged(account: address, amount: uint256):
    """
    @dev Adds to what `account` may withdraw without a Credited: for a credit the
         caller's own event names with its account and amount (a shard's payment and
         fees, a job's refund), which would otherwise be logged twice.
    """
    self.credits[account] += amount


@internal
def _debit_all(account: address) -> uint256:
    """
    @dev Zeroes `account`'s credit and returns what it was.
    """
    amount: uint256 = self.credits[account]
    if amount != 0:
        self.credits[account] = 0
    return amount


@internal
def _pull(payer: address, amount: uint256):
    """
    @dev Takes `amount` from `payer`, who must have approved the market.
    """
    if amount == 0:
        return
    self.owed += amount
    assert extcall TOKEN.transferFrom(payer, self, amount, default_return_value=True), "settlement: transfer failed"


@internal
def _received(amount: uint256):
    """
    @dev Counts tokens that arrived by another path than `_pull` (an EIP-3009
         transfer, a slashed stake) as owed; the caller credits or escrows them.
    """
    self.owed += amount


@internal
@view
def _surplus() -> uint256:
    """
    @dev Tokens held beyond what is owed (see `owed`).
    """
    return staticcall TOKEN.balanceOf(self) - self.owed


@internal
def _push(receiver: address, amount: uint256):
    """
    @dev Sends tokens out; only withdrawals call it.
    """
    self.owed -= amount
    assert extcall TOKEN.transfer(receiver, amount, default_return_value=True), "settlement: transfer failed"
