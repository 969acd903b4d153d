# pragma version ~=0.4.3
"""
@title EIP-3009 transfer with authorization
@notice Gasless transfers: the holder signs, anyone submits. This is what x402's
        `exact` scheme settles with. Interface and revert wording follow USDC (FiatTokenV2).
"""

from . import ecdsa
from . import eip712
from . import erc20

uses: eip712
uses: erc20

_TRANSFER_TYPEHASH: constant(bytes32) = keccak256(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
_RECEIVE_TYPEHASH: constant(bytes32) = keccak256(
    "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
_CANCEL_TYPEHASH: constant(bytes32) = keccak256(
    "CancelAuthorization(address authorizer,bytes32 nonce)"
)

# @dev authorizer -> nonce -> used or cancelled.
authorizationState: public(HashMap[address, HashMap[bytes32, bool]])


event AuthorizationUsed:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


event AuthorizationCanceled:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


@external
def transferWithAuthorization(
    sender: address,
    receiver: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice Moves `amount` from `sender` to `receiver` on `sender`'s signed authorization.
    @param sender The signer, whose tokens move.
    @param receiver The payee.
    @param amount Base units.
    @param valid_after The authorization is valid strictly after this unix time.
    @param valid_before The authorization is valid strictly before this unix time.
    @param nonce A unique random 32-byte value chosen by the signer.
    @param v Signature recovery id.
    @param r Signature r.
    @param s Signature s.
    """
    self._use_authorization(
        _TRANSFER_TYPEHASH, sender, receiver, amount, valid_after, valid_before, nonce, v, r, s
    )
    erc20._transfer(sender, receiver, amount)


@external
def receiveWithAuthorization(
    sender: address,
    receiver: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice Like `transferWithAuthorization`, but only the payee may submit it, so a
            contract receiving a deposit cannot be front-run by a bare transfer.
    @param sender The signer, whose tokens move.
    @param receiver The payee; must be the caller.
    @param amount Base units.
    @param valid_after Valid strictly after this unix time.
    @param valid_before Valid strictly before this unix time.
    @param nonce A unique random 32-byte value chosen by the signer.
    @param v Signature recovery id.
    @param r Signature r.
    @param s Signature s.
    """
    assert receiver == msg.sender, "FiatTokenV2: caller must be the payee"
    self._use_authorization(
        _RECEIVE_TYPEHASH, sender, receiver, amount, valid_after, valid_before, nonce, v, r, s
    )
    erc20._transfer(sender, receiver, amount)


@external
def cancelAuthorization(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    """
    @notice Burns an unused authorization nonce on the authorizer's signature.
    @param authorizer The signer of the authorization to cancel.
    @param nonce The nonce to cancel.
    @param v Signature recovery id.
    @param r Signature r.
    @param s Signature s.
    """
    assert not self.authorizationState[authorizer][nonce], "FiatTokenV2: authorization is used or canceled"
    digest: bytes32 = eip712._hash_typed(keccak256(abi_encode(_CANCEL_TYPEHASH, authorizer, nonce)))
    self._check_signer(digest, authorizer, v, r, s)
    self.authorizationState[authorizer][nonce] = True
    log AuthorizationCanceled(authorizer=authorizer, nonce=nonce)


@internal
def _use_authorization(
    typehash: bytes32,
    sender: address,
    receiver: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @dev Checks the time window, nonce and signature of an authorization and burns its nonce.
    """
    assert block.timestamp > valid_after, "FiatTokenV2: authorization is not yet valid"
    assert block.timestamp < valid_before, "FiatTokenV2: authorization is expired"
    assert not self.authorizationState[sender][nonce], "FiatTokenV2: authorization is used or canceled"
    digest: bytes32 = eip712._hash_typed(
        keccak256(abi_encode(typehash, sender, receiver, amount, valid_after, valid_before, nonce))
    )
    self._check_signer(digest, sender, v, r, s)
    self.authorizationState[sender][nonce] = True
    log AuthorizationUsed(authorizer=sender, nonce=nonce)


@internal
@view
def _check_signer(digest: bytes32, expected: address, v: uint8, r: bytes32, s: bytes32):
    """
    @dev Reverts unless the signature over `digest` is by `expected`.
    """
    signer: address = ecdsa._recover_vrs(
        digest, convert(v, uint256), convert(r, uint256), convert(s, uint256)
    )
    assert signer != empty(address) and signer == expected, "FiatTokenV2: invalid signature"
