"""EIP-712 hashing shared by every signed message, matching `contracts/modules/eip712.vy`.

domain_separator = keccak256(abi.encode(DOMAIN_TYPEHASH, keccak256(name), keccak256(version),
                                        chainId, verifyingContract))
digest           = keccak256(0x19 ‖ 0x01 ‖ domain_separator ‖ struct_hash)
struct_hash      = keccak256(typehash ‖ abi.encode(fields...))   # static fields only
"""

from collections.abc import Sequence
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"


def type_hash(type_string: str) -> bytes:
    """keccak256 of an EIP-712 type string."""
    return keccak(text=type_string)


DOMAIN_TYPEHASH = type_hash(DOMAIN_TYPE)


def domain_separator(name: str, version: str, chain_id: int, address: str | bytes) -> bytes:
    """The separator binding signatures to one contract on one chain."""
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [DOMAIN_TYPEHASH, keccak(text=name), keccak(text=version), chain_id, address],
        )
    )


def hash_struct(typehash: bytes, abi_types: Sequence[str], values: Sequence[Any]) -> bytes:
    """The struct hash of a message whose fields are all static ABI types (no strings, bytes or arrays)."""
    for abi_type in abi_types:
        # EIP-712 hashes dynamic members instead of ABI-encoding them; callers must do that themselves.
        if abi_type in ("string", "bytes") or abi_type.endswith("]") or abi_type.startswith("("):
            raise ValueError(f"hash_struct takes static types only, got {abi_type!r}")
    return keccak(typehash + encode(list(abi_types), list(values)))


def hash_typed(domain_sep: bytes, struct_hash: bytes) -> bytes:
    """The digest a signer signs: keccak256(0x1901 ‖ domain separator ‖ struct hash)."""
    if len(domain_sep) != 32 or len(struct_hash) != 32:
        raise ValueError("domain separator and struct hash must be 32 bytes each")
    return keccak(b"\x19\x01" + bytes(domain_sep) + bytes(struct_hash))


def typed_message(
    name: str,
    version: str,
    chain_id: int,
    contract: str | bytes,
    primary_type: str,
    members: Sequence[tuple[str, str]],
    message: dict[str, Any],
) -> dict[str, Any]:
    """The full EIP-712 message (eth_signTypedData_v4 form) for wallets that sign typed data;
    `members` are (name, type) pairs in type-string order."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            primary_type: [{"name": member, "type": abi} for member, abi in members],
        },
        "primaryType": primary_type,
        "domain": {
            "name": name,
            "version": version,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(contract),
        },
        "message": message,
    }
