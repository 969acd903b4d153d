# pragma version ~=0.4.3
"""
@title Contract without an ERC-721 receiver hook
@notice Test double: a contract that cannot take tokens through `safeTransferFrom`.
"""

# @dev Something to read, so the contract has code and a harmless entry point.
value: public(uint256)


@external
def set_value(value_: uint256):
    """
    @notice Stores a number; the contract has no `onERC721Received`.
    @param value_ Any number.
    """
    self.value = value_
