# pragma version ~=0.4.3
"""
@title Two-step ownership
@notice The owner names a successor, who must accept before ownership moves,
        so a typo in an address can never lose the contract.
"""

# @dev The current owner; the only caller of owner-gated functions.
owner: public(address)
# @dev The successor named by the owner; zero when none is pending.
pending_owner: public(address)


event OwnershipTransferStarted:
    previous_owner: indexed(address)
    new_owner: indexed(address)


event OwnershipTransferred:
    previous_owner: indexed(address)
    new_owner: indexed(address)


@deploy
def __init__():
    """
    @dev The deployer becomes the first owner.
    """
    self._transfer_ownership(msg.sender)


@external
def transfer_ownership(new_owner: address):
    """
    @notice Names `new_owner` as successor; ownership moves when they accept.
    @dev Naming the zero address cancels a pending transfer.
    @param new_owner The successor.
    """
    self._check_owner()
    self.pending_owner = new_owner
    log OwnershipTransferStarted(previous_owner=self.owner, new_owner=new_owner)


@external
def accept_ownership():
    """
    @notice Completes a transfer; only the pending owner may call it.
    """
    assert msg.sender == self.pending_owner, "ownable: caller is not the pending owner"
    self._transfer_ownership(msg.sender)


@internal
@view
def _check_owner():
    """
    @dev Reverts unless the caller is the owner.
    """
    assert msg.sender == self.owner, "ownable: caller is not the owner"


@internal
def _transfer_ownership(new_owner: address):
    """
    @dev Moves ownership at once and clears any pending successor.
    """
    previous: address = self.owner
    self.owner = new_owner
    self.pending_owner = empty(address)
    log OwnershipTransferred(previous_owner=previous, new_owner=new_owner)
