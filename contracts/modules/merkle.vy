# pragma version ~=0.4.3
"""
@title Output Merkle proofs
@notice Checks that a file belongs to a committed result.
@dev Leaves and nodes carry distinct prefixes (0x00, 0x01) so a node can never pass
     as a leaf; pairs are sorted so proofs need no left/right flags. The SDK's
     `computenet.merkle` builds the same tree.
"""

# @dev Deep enough for 2**32 files.
MAX_DEPTH: constant(uint256) = 32


@internal
@pure
def _leaf(path_hash: bytes32, content_hash: bytes32) -> bytes32:
    """
    @dev A file's leaf: keccak256(0x00 ‖ keccak256(path) ‖ keccak256(content)).
    """
    return keccak256(concat(x"00", path_hash, content_hash))


@internal
@pure
def _verify(proof: DynArray[bytes32, MAX_DEPTH], root: bytes32, leaf: bytes32) -> bool:
    """
    @dev Whether `proof` (siblings from the leaf up) leads from `leaf` to `root`.
    """
    node: bytes32 = leaf
    for sibling: bytes32 in proof:
        if convert(node, uint256) < convert(sibling, uint256):
            node = keccak256(concat(x"01", node, sibling))
        else:
            node = keccak256(concat(x"01", sibling, node))
    return node == root
