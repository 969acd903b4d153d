# pragma version ~=0.4.3
"""
@title EIP-2612 permit
@notice Approvals by signature, so a client can approve and post a job in one transaction.
"""

from . import ecdsa
from . import eip712
from . import erc20

uses: eip712
uses: erc20

_PERMIT_TYPEHASH: constant(bytes32) = keccak256(
    "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)

# @dev owner -> next permit nonce.
nonces: public(HashMap[address, uint256])


@external
def permit(
    owner: address,
    spender: address,
    amount: uint256,
    deadline: uint256,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice Sets `spender`'s allowance over `owner`'s tokens from `owner`'s signature.
    @param owner The signer whose tokens are approved.
    @param spender Who may spend them.
    @param amount Allowance in base units.
    @param deadline Last valid second (unix time); max uint256 never expires.
    @param v Signature recovery id (27 or 28).
    @param r Signature r.
    @param s Signature s.
    """
    assert deadline >= block.timestamp, "FiatTokenV2: permit is expired"
    nonce: uint256 = self.nonces[owner]
    digest: bytes32 = eip712._hash_typed(
        keccak256(abi_encode(_PERMIT_TYPEHASH, owner, spender, amount, nonce, deadline))
    )
    signer: address = ecdsa._recover_vrs(
        digest, convert(v, uint256), convert(r, uint256), convert(s, uint256)
    )
    assert signer != empty(address) and signer == owner, "FiatTokenV2: invalid signature"
    self.nonces[owner] = nonce + 1
    erc20._approve(owner, spender, amount)
