# pragma version ~=0.4.3
"""
@title Lean ERC-721 core
@notice Ownership, balances and approvals. The deployable contract defines the
        transfer and approve entry points, so it can add its own rules (ERC-7829's
        expiry and reader rules) before calling the internals here.
"""


interface IERC721Receiver:
    def onERC721Received(operator: address, owner: address, token_id: uint256, data: Bytes[1024]) -> bytes4: nonpayable

# @dev The ERC-721 receiver hook's magic value.
_RECEIVED: constant(bytes4) = 0x150b7a02

# @dev token -> owner; zero for tokens that do not exist.
_owners: HashMap[uint256, address]
# @dev owner -> number of tokens held.
_balances: HashMap[address, uint256]
# @dev token -> the one address approved to move it.
_approvals: HashMap[uint256, address]
# @dev owner -> operator -> may move all of the owner's tokens.
isApprovedForAll: public(HashMap[address, HashMap[address, bool]])


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    token_id: indexed(uint256)


event Approval:
    owner: indexed(address)
    approved: indexed(address)
    token_id: indexed(uint256)


event ApprovalForAll:
    owner: indexed(address)
    operator: indexed(address)
    approved: bool


@external
@view
def ownerOf(token_id: uint256) -> address:
    """
    @notice The owner of `token_id`; reverts for tokens that do not exist.
    @return The owner.
    """
    return self._require_owner(token_id)


@external
@view
def balanceOf(owner: address) -> uint256:
    """
    @notice Number of tokens `owner` holds.
    @return The count.
    """
    assert owner != empty(address), "erc721: zero address"
    return self._balances[owner]


@external
@view
def getApproved(token_id: uint256) -> address:
    """
    @notice The address approved to move `token_id`; reverts for tokens that do not exist.
    @return The approved address, zero if none.
    """
    self._require_owner(token_id)
    return self._approvals[token_id]


@external
def setApprovalForAll(operator: address, approved: bool):
    """
    @notice Lets `operator` move all of the caller's tokens, or stops it.
    @param operator The operator.
    @param approved True to allow, false to revoke.
    """
    assert operator != msg.sender, "erc721: approve to caller"
    self.isApprovedForAll[msg.sender][operator] = approved
    log ApprovalForAll(owner=msg.sender, operator=operator, approved=approved)


@internal
@view
def _require_owner(token_id: uint256) -> address:
    """
    @dev The owner of an existing token; reverts for tokens that do not exist.
    """
    owner: address = self._owners[token_id]
    assert owner != empty(address), "erc721: unknown token"
    return owner


@internal
@view
def _is_operator(owner: address, token_id: uint256, spender: address) -> bool:
    """
    @dev Whether `spender` is the token's approved address or an operator of its owner.
    """
    return self._approvals[token_id] == spender or self.isApprovedForAll[owner][spender]


@internal
def _mint(receiver: address, token_id: uint256):
    """
    @dev Creates `token_id` for `receiver`.
    """
    assert receiver != empty(address), "erc721: mint to zero address"
    self._owners[token_id] = receiver
    self._balances[receiver] += 1
    log Transfer(sender=empty(address), receiver=receiver, token_id=token_id)


@internal
def _approve(owner: address, approved: address, token_id: uint256):
    """
    @dev Sets the one address approved to move `token_id`.
    """
    self._approvals[token_id] = approved
    log Approval(owner=owner, approved=approved, token_id=token_id)


@internal
def _transfer(owner: address, receiver: address, token_id: uint256):
    """
    @dev Moves `token_id` and clears its approval; callers check permission first.
    """
    assert receiver != empty(address), "erc721: transfer to zero address"
    if self._approvals[token_id] != empty(address):
        self._approvals[token_id] = empty(address)
    self._balances[owner] -= 1
    self._balances[receiver] += 1
    self._owners[token_id] = receiver
    log Transfer(sender=owner, receiver=receiver, token_id=token_id)


@internal
def _check_on_received(owner: address, receiver: address, token_id: uint256, data: Bytes[1024]):
    """
    @dev Contracts must accept the token explicitly, or it could be stuck forever.
    """
    if receiver.is_contract:
        answer: bytes4 = extcall IERC721Receiver(receiver).onERC721Received(msg.sender, owner, token_id, data)
        assert answer == _RECEIVED, "erc721: receiver rejected the token"

