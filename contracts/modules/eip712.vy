# pragma version ~=0.4.3
"""
@title EIP-712 domain
@notice Binds every signature to this contract's name, version, chain id and address.
@dev The separator is built on each use from the current chain id (about 200 gas),
     so a signature for one chain never verifies on a fork; not caching it keeps two
     immutables out of the market's code, which is at the EIP-170 limit.
"""

_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)

# @dev keccak256 of the domain name and version.
_NAME_HASH: immutable(bytes32)
_VERSION_HASH: immutable(bytes32)


@deploy
def __init__(name: String[50], version: String[20]):
    """
    @param name The domain name signers see.
    @param version The domain version signers see.
    """
    _NAME_HASH = keccak256(name)
    _VERSION_HASH = keccak256(version)


@external
@view
def DOMAIN_SEPARATOR() -> bytes32:
    """
    @notice The EIP-712 domain separator for the current chain.
    @return The separator.
    """
    return self._domain_separator()


@internal
@view
def _domain_separator() -> bytes32:
    """
    @dev keccak256 of the domain for this chain id and contract.
    """
    return keccak256(abi_encode(_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, chain.id, self))


@internal
@view
def _hash_typed(struct_hash: bytes32) -> bytes32:
    """
    @dev The EIP-712 digest of a struct hash in this domain.
    """
    return keccak256(concat(x"1901", self._domain_separator(), struct_hash))
