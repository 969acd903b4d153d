# pragma version ~=0.4.3
"""
@title ECDSA recovery
@notice Recovers signers and refuses malleable signatures, so a signature has one valid form.
"""

# @dev secp256k1n / 2: a larger `s` is the malleable twin of a valid signature.
_HALF_ORDER: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168


@internal
@pure
def _recover_vrs(digest: bytes32, v: uint256, r: uint256, s: uint256) -> address:
    """
    @dev Returns the zero address for any invalid signature.
    """
    if s > _HALF_ORDER or (v != 27 and v != 28):
        return empty(address)
    return ecrecover(digest, v, r, s)


@internal
@pure
def _recover(digest: bytes32, signature: Bytes[65]) -> address:
    """
    @dev `signature` is r ‖ s ‖ v (65 bytes); anything else recovers to zero.
    """
    if len(signature) != 65:
        return empty(address)
    r: uint256 = convert(slice(signature, 0, 32), uint256)
    s: uint256 = convert(slice(signature, 32, 32), uint256)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    return self._recover_vrs(digest, v, r, s)
