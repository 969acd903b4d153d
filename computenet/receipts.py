"""EIP-712 execution receipts: what a worker signs about one replica of one shard.

The JobMarket contract rebuilds the same digest:

    struct_hash = keccak256(RECEIPT_TYPEHASH ‖ job ‖ shard ‖ replica ‖ lease ‖ asset ‖ manifest
                            ‖ outputRoot ‖ gpuSeconds ‖ exitCode)      # each a 32-byte word
    digest      = keccak256(0x1901 ‖ domain_separator("computenet JobMarket", "1", chainId, market)
                            ‖ struct_hash)

Signatures are r ‖ s ‖ v (65 bytes) with v in {27, 28} and s in the lower half of the
curve order, the only form the contract's ECDSA module accepts.
"""

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_keys import keys
from eth_keys.exceptions import BadSignature
from eth_keys.exceptions import ValidationError as KeysValidationError

from computenet.eip712 import domain_separator, hash_struct, hash_typed, type_hash, typed_message
from computenet.errors import InvalidSignature

DOMAIN_NAME = "computenet JobMarket"
DOMAIN_VERSION = "1"

RECEIPT_TYPE = (
    "ExecutionReceipt(uint256 job,uint256 shard,uint256 replica,uint256 lease,uint256 asset,"
    "bytes32 manifest,bytes32 outputRoot,uint256 gpuSeconds,uint256 exitCode)"
)
RECEIPT_TYPEHASH = type_hash(RECEIPT_TYPE)

# (python field, EIP-712 member, ABI type) in the order of RECEIPT_TYPE.
_MEMBERS = (
    ("job", "job", "uint256"),
    ("shard", "shard", "uint256"),
    ("replica", "replica", "uint256"),
    ("lease", "lease", "uint256"),
    ("asset", "asset", "uint256"),
    ("manifest", "manifest", "bytes32"),
    ("output_root", "outputRoot", "bytes32"),
    ("gpu_seconds", "gpuSeconds", "uint256"),
    ("exit_code", "exitCode", "uint256"),
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# A larger s is the malleable twin of a valid signature; the contract refuses it.
SECP256K1_HALF_N = SECP256K1_N // 2


def market_domain_separator(chain_id: int, market: str | bytes) -> bytes:
    """The JobMarket's EIP-712 domain separator on `chain_id` at address `market`."""
    return domain_separator(DOMAIN_NAME, DOMAIN_VERSION, chain_id, market)


def _as_uint256(name: str, value: Any) -> int:
    # bool is an int subclass but never a valid amount; other int subclasses
    # (such as the ones ape decodes chain values into) are plain numbers.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value < 2**256:
        raise ValueError(f"{name} must fit in uint256, got {value}")
    return value


def _as_bytes32(name: str, value: Any) -> bytes:
    if isinstance(value, str):
        if not value.startswith("0x"):
            raise ValueError(f"{name} must be 0x-prefixed hex, got {value!r}")
        try:
            value = bytes.fromhex(value[2:])
        except ValueError:
            raise ValueError(f"{name} is not valid hex: {value!r}") from None
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes or hex, got {type(value).__name__}")
    value = bytes(value)
    if len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes, got {len(value)}")
    return value


@dataclass(frozen=True)
class ExecutionReceipt:
    """A worker's signed claim: it ran `manifest` for (job, shard, replica) under `lease` on `asset`."""

    job: int
    shard: int
    replica: int
    lease: int
    asset: int
    manifest: bytes
    output_root: bytes
    gpu_seconds: int
    exit_code: int

    def __post_init__(self) -> None:
        # Normalise hex strings to bytes so equal receipts compare equal and hash alike.
        for attr, _, abi_type in _MEMBERS:
            check = _as_bytes32 if abi_type == "bytes32" else _as_uint256
            object.__setattr__(self, attr, check(attr, getattr(self, attr)))

    def _values(self) -> list[Any]:
        return [getattr(self, attr) for attr, _, _ in _MEMBERS]

    def struct_hash(self) -> bytes:
        """hashStruct(ExecutionReceipt)."""
        return hash_struct(RECEIPT_TYPEHASH, [abi for _, _, abi in _MEMBERS], self._values())

    def digest(self, chain_id: int, market: str | bytes) -> bytes:
        """The 32-byte digest signed for the JobMarket at `market` on `chain_id`."""
        return hash_typed(market_domain_separator(chain_id, market), self.struct_hash())

    def typed_data(self, chain_id: int, market: str | bytes) -> dict[str, Any]:
        """The full EIP-712 message, for wallets that sign typed data (eth_signTypedData_v4)."""
        return typed_message(
            DOMAIN_NAME,
            DOMAIN_VERSION,
            chain_id,
            market,
            "ExecutionReceipt",
            [(member, abi) for _, member, abi in _MEMBERS],
            {member: getattr(self, attr) for attr, member, _ in _MEMBERS},
        )

    def sign(self, private_key: Any, chain_id: int, market: str | bytes) -> bytes:
        """A 65-byte r ‖ s ‖ v signature (v in {27, 28}, low s) by `private_key`."""
        return sign_digest(self.digest(chain_id, market), private_key)

    def recover(self, signature: bytes, chain_id: int, market: str | bytes) -> str:
        """The checksum address that signed this receipt; raises InvalidSignature for any form the contract refuses."""
        return recover_signer(self.digest(chain_id, market), signature)


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


# A client's cancel, for clients that send no transactions (an x402 payer): the dispute court
# checks it over the market's domain and cancels for the client (DisputeCourt.cancel_with_signature).
CANCEL_TYPE = "CancelShard(uint256 job,uint256 shard,uint256 validBefore)"
CANCEL_TYPEHASH = type_hash(CANCEL_TYPE)
_CANCEL_MEMBERS = (("job", "uint256"), ("shard", "uint256"), ("validBefore", "uint256"))


def cancel_digest(chain_id: int, market: str | bytes, job: int, shard: int, valid_before: int) -> bytes:
    """The digest a client signs to cancel `shard` of `job` until `valid_before` (unix seconds)."""
    values = [_as_uint256(name, value) for (name, _), value in zip(_CANCEL_MEMBERS, (job, shard, valid_before))]
    return hash_typed(market_domain_separator(chain_id, market), hash_struct(CANCEL_TYPEHASH, ["uint256"] * 3, values))


def cancel_typed_data(chain_id: int, market: str | bytes, job: int, shard: int, valid_before: int) -> dict[str, Any]:
    """The full EIP-712 cancel message, for wallets (eth_signTypedData_v4)."""
    message = {"job": job, "shard": shard, "validBefore": valid_before}
    return typed_message(DOMAIN_NAME, DOMAIN_VERSION, chain_id, market, "CancelShard", list(_CANCEL_MEMBERS), message)


def sign_cancel(private_key: Any, chain_id: int, market: str | bytes, job: int, shard: int, valid_before: int) -> bytes:
    """A client's 65-byte cancel signature (see `cancel_digest`)."""
    return sign_digest(cancel_digest(chain_id, market, job, shard, valid_before), private_key)


def cancel_signer(chain_id: int, market: str | bytes, job: int, shard: int, valid_before: int, signature: bytes) -> str:
    """Who signed a cancel; raises InvalidSignature for any form the contracts refuse."""
    return recover_signer(cancel_digest(chain_id, market, job, shard, valid_before), signature)
