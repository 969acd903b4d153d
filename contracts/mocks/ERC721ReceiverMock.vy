# pragma version ~=0.4.3
"""
@title ERC-721 receiver mock
@notice Test double for `safeTransferFrom`: answers the receiver hook with the right
        magic value or a wrong one, and records the last call it got.
"""

# @dev The value a receiver returns to accept a token.
_RECEIVED: constant(bytes4) = 0x150b7a02
# @dev Any other value, which a compliant sender must treat as a refusal.
_REJECTED: constant(bytes4) = 0xdeadbeef

# @dev Whether the hook answers with the magic value.
accept: public(immutable(bool))
# @dev `operator` of the last hook call.
last_operator: public(address)
# @dev `owner` (previous owner) of the last hook call.
last_owner: public(address)
# @dev `token_id` of the last hook call.
last_token_id: public(uint256)
# @dev `data` of the last hook call.
last_data: public(Bytes[1024])
# @dev Number of hook calls received.
calls: public(uint256)


@deploy
def __init__(accept_: bool):
    """
    @param accept_ True to accept tokens, false to answer with a wrong value.
    """
    accept = accept_


@external
def onERC721Received(operator: address, owner: address, token_id: uint256, data: Bytes[1024]) -> bytes4:
    """
    @notice The ERC-721 receiver hook; records its arguments.
    @param operator The caller of `safeTransferFrom`.
    @param owner The previous owner.
    @param token_id The token received.
    @param data Extra data passed to `safeTransferFrom`.
    @return The magic value 0x150b7a02 when accepting, 0xdeadbeef otherwise.
    """
    self.last_operator = operator
    self.last_owner = owner
    self.last_token_id = token_id
    self.last_data = data
    self.calls += 1
    if accept:
        return _RECEIVED
    return _REJECTED
