"""EIP-712 hashing shared by every signed message, matching `contracts/modules/eip712.vy`.

domain_separator = keccak256(abi.encode(DOMAIN_TYPEHASH, keccak256(name), keccak256(version),
                                        chainId, verifyingContract))
digest           = keccak256(0x19 ‖ 0x01 ‖ domain_separator ‖ struct_hash)
struct_hash      = keccak256(typehash ‖ abi.encode(fields...))   # static fields only

Signatures are r ‖ s ‖ v (65 bytes) with v in {27, 28} and s in the lower half of the
curve order, the only form the contracts' ECDSA module accepts.
"""

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from eth_abi import encode
from eth_account import Account
from eth_keys import keys
from eth_keys.exceptions import BadSignature
from eth_keys.exceptions import ValidationError as KeysValidationError
from eth_utils import keccak, to_checksum_address

from computenet.errors import InvalidSignature

DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"


def type_hash(type_string: str) -> bytes:
    """keccak256 of an EIP-712 type string."""
    return keccak(text=type_string)


DOMAIN_TYPEHASH = type_hash(DOMAIN_TYPE)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# A larger s is the malleable twin of a valid signature; the contracts refuse it.
SECP256K1_HALF_N = SECP256K1_N // 2


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


def sign_digest(digest: bytes, private_key: Any) -> bytes:
    """A 65-byte r ‖ s ‖ v signature over `digest` in the one form the contracts accept
    (v in {27, 28}, low s)."""
    signed = Account.unsafe_sign_hash(digest, private_key)
    r, s, v = signed.r, signed.s, signed.v
    if s > SECP256K1_HALF_N:  # eth_keys already signs low-s; keep the invariant explicit
        s, v = SECP256K1_N - s, 55 - v
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])


def recover_signer(digest: bytes, signature: bytes) -> str:
    """The checksum address behind a 65-byte r ‖ s ‖ v signature over `digest`, with the contract's rules."""
    if not isinstance(signature, (bytes, bytearray, memoryview)) or len(signature) != 65:
        raise InvalidSignature("signature must be 65 bytes r ‖ s ‖ v")
    signature = bytes(signature)
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise InvalidSignature(f"signature v must be 27 or 28, got {v}")
    if s > SECP256K1_HALF_N:
        raise InvalidSignature("signature s is in the upper half of the curve order (malleable)")
    if not (0 < r < SECP256K1_N and 0 < s):
        raise InvalidSignature("signature r or s is out of range")
    try:
        public_key = keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(bytes(digest))
    except (BadSignature, KeysValidationError, ValueError) as error:
        raise InvalidSignature(f"signature recovers no key: {error}") from None
    return public_key.to_checksum_address()


class TypedStruct:
    """The EIP-712 half of a signed message (a frozen dataclass of static members), written once
    so every message hashes, signs and recovers exactly as the contracts rebuild it.

    A subclass declares its domain and its type string, copied from the contract; the members
    are read from the type string, each held in the field named as its member in snake_case
    (outputRoot -> output_root), so the two cannot drift apart. It keeps only what is its own:
    fields, checks and wire forms. `contract` is the domain's verifying contract.
    """

    EIP712_DOMAIN: ClassVar[tuple[str, str]]  # (name, version)
    EIP712_TYPE: ClassVar[str]  # "Name(type member,...)", as in the contract
    EIP712_NAME: ClassVar[str]  # derived: the primary type
    EIP712_MEMBERS: ClassVar[tuple[tuple[str, str, str], ...]]  # derived: (field, member, ABI type)
    EIP712_TYPEHASH: ClassVar[bytes]  # derived

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name, _, members = cls.EIP712_TYPE.removesuffix(")").partition("(")
        pairs = [member.split(" ") for member in members.split(",")]
        cls.EIP712_NAME = name
        cls.EIP712_MEMBERS = tuple((re.sub("([A-Z])", r"_\1", m).lower(), m, abi) for abi, m in pairs)
        cls.EIP712_TYPEHASH = type_hash(cls.EIP712_TYPE)
        fields = vars(cls).get("__annotations__", {})
        if missing := [attr for attr, _, _ in cls.EIP712_MEMBERS if attr not in fields]:
            raise TypeError(f"{cls.__name__} has no field for EIP-712 members {missing}")

    def _values(self) -> list[Any]:
        return [getattr(self, attr) for attr, _, _ in self.EIP712_MEMBERS]

    def struct_hash(self) -> bytes:
        """hashStruct of this message."""
        return hash_struct(self.EIP712_TYPEHASH, [abi for _, _, abi in self.EIP712_MEMBERS], self._values())

    def digest(self, chain_id: int, contract: str | bytes) -> bytes:
        """The 32-byte digest signed for the verifying `contract` on `chain_id`."""
        return hash_typed(domain_separator(*self.EIP712_DOMAIN, chain_id, contract), self.struct_hash())

    def typed_data(self, chain_id: int, contract: str | bytes) -> dict[str, Any]:
        """The full EIP-712 message, for wallets that sign typed data (eth_signTypedData_v4)."""
        return typed_message(
            *self.EIP712_DOMAIN,
            chain_id,
            contract,
            self.EIP712_NAME,
            [(member, abi) for _, member, abi in self.EIP712_MEMBERS],
            {member: getattr(self, attr) for attr, member, _ in self.EIP712_MEMBERS},
        )

    def sign(self, private_key: Any, chain_id: int, contract: str | bytes) -> bytes:
        """A 65-byte r ‖ s ‖ v signature (v in {27, 28}, low s) by `private_key`."""
        return sign_digest(self.digest(chain_id, contract), private_key)

    def recover(self, signature: bytes, chain_id: int, contract: str | bytes) -> str:
        """The checksum address that signed this message; raises InvalidSignature for any form the contract refuses."""
        return recover_signer(self.digest(chain_id, contract), signature)
