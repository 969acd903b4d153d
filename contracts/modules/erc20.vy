# pragma version ~=0.4.3
"""
@title ERC-20
@notice A plain ERC-20 with USDC's revert wording, so payment tooling that
        matches on those strings (x402 among them) reads our errors correctly.
"""

from ethereum.ercs import IERC20

implements: IERC20

# @dev Token metadata.
name: public(String[64])
symbol: public(String[32])
decimals: public(uint8)
# @dev Supply and balances in base units.
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
# @dev owner -> spender -> base units the spender may move.
allowance: public(HashMap[address, HashMap[address, uint256]])


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


@deploy
def __init__(name_: String[64], symbol_: String[32], decimals_: uint8):
    """
    @param name_ Token name.
    @param symbol_ Token symbol.
    @param decimals_ Decimal places of the base unit.
    """
    self.name = name_
    self.symbol = symbol_
    self.decimals = decimals_


@external
def transfer(receiver: address, amount: uint256) -> bool:
    """
    @notice Moves `amount` base units from the caller to `receiver`.
    @return True.
    """
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def transferFrom(owner: address, receiver: address, amount: uint256) -> bool:
    """
    @notice Moves `amount` base units from `owner` to `receiver` within the caller's allowance.
    @return True.
    """
    self._spend_allowance(owner, msg.sender, amount)
    self._transfer(owner, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Lets `spender` move up to `amount` of the caller's base units.
    @return True.
    """
    self._approve(msg.sender, spender, amount)
    return True


@internal
def _transfer(owner: address, receiver: address, amount: uint256):
    """
    @dev Moves `amount` from `owner` to `receiver`.
    """
    assert receiver != empty(address), "ERC20: transfer to the zero address"
    balance: uint256 = self.balanceOf[owner]
    assert balance >= amount, "ERC20: transfer amount exceeds balance"
    self.balanceOf[owner] = balance - amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=owner, receiver=receiver, value=amount)


@internal
def _approve(owner: address, spender: address, amount: uint256):
    """
    @dev Sets `spender`'s allowance over `owner`'s tokens.
    """
    assert spender != empty(address), "ERC20: approve to the zero address"
    self.allowance[owner][spender] = amount
    log Approval(owner=owner, spender=spender, value=amount)


@internal
def _spend_allowance(owner: address, spender: address, amount: uint256):
    """
    @dev Uses up allowance; an infinite (max) allowance is never decreased.
    """
    allowed: uint256 = self.allowance[owner][spender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "ERC20: transfer amount exceeds allowance"
        self.allowance[owner][spender] = allowed - amount


@internal
def _mint(receiver: address, amount: uint256):
    """
    @dev Creates `amount` new tokens for `receiver`.
    """
    assert receiver != empty(address), "ERC20: mint to the zero address"
    self.totalSupply += amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=empty(address), receiver=receiver, value=amount)
