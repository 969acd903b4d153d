"""EIP-712 execution receipts: what a worker signs about one replica of one shard.

The JobMarket contract rebuilds the same digest:

    struct_hash = keccak256(RECEIPT_TYPEHASH ‖ job ‖ shard ‖ replica ‖ lease ‖ asset ‖ manifest
                            ‖ outputRoot ‖ gpuSeconds ‖ exitCode)      # each a 32-byte word
    digest      = keccak256(0x1901 ‖ domain_separator("computenet JobMarket", "1", chainId, market)
                            ‖ struct_hash)

Several results of one agent can share one signature (JobMarket.submit_results): the agent
signs ExecutionReceipts, an array of those struct hashes, and the market stores their
commitment, keccak256 of the struct hashes packed in order:

    commitment  = keccak256(struct_hash_0 ‖ struct_hash_1 ‖ …)
    batch_hash  = keccak256(RECEIPTS_TYPEHASH ‖ commitment)

Signatures are r ‖ s ‖ v (65 bytes) with v in {27, 28} and s in the lower half of the
curve order, the only form the contract's ECDSA module accepts.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from computenet.eip712 import SECP256K1_HALF_N as SECP256K1_HALF_N
from computenet.eip712 import SECP256K1_N as SECP256K1_N
from computenet.eip712 import TypedStruct, domain_separator, hash_typed, recover_signer, sign_digest

DOMAIN_NAME = "computenet JobMarket"
DOMAIN_VERSION = "1"


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
class ExecutionReceipt(TypedStruct):
    """A worker's signed claim: it ran `manifest` for (job, shard, replica) under `lease` on `asset`."""

    EIP712_DOMAIN = (DOMAIN_NAME, DOMAIN_VERSION)
    EIP712_TYPE = (
        "ExecutionReceipt(uint256 job,uint256 shard,uint256 replica,uint256 lease,uint256 asset,"
        "bytes32 manifest,bytes32 outputRoot,uint256 gpuSeconds,uint256 exitCode)"
    )

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
        for attr, _, abi_type in self.EIP712_MEMBERS:
            check = _as_bytes32 if abi_type == "bytes32" else _as_uint256
            object.__setattr__(self, attr, check(attr, getattr(self, attr)))


RECEIPT_TYPE = ExecutionReceipt.EIP712_TYPE
RECEIPT_TYPEHASH = ExecutionReceipt.EIP712_TYPEHASH
RECEIPTS_TYPE = "ExecutionReceipts(ExecutionReceipt[] receipts)" + RECEIPT_TYPE
RECEIPTS_TYPEHASH = keccak(text=RECEIPTS_TYPE)
MAX_BATCH_RESULTS = 64  # JobMarket.MAX_RESULTS


def batch_commitment(receipts: Sequence[ExecutionReceipt]) -> bytes:
    """What JobMarket.submit_results stores for a batch: keccak256 of its receipts' struct hashes
    packed in order (also the EIP-712 encoding of ExecutionReceipts' array)."""
    if not receipts:
        raise ValueError("a batch needs at least one receipt")
    if len(receipts) > MAX_BATCH_RESULTS:
        raise ValueError(f"a batch holds at most {MAX_BATCH_RESULTS} receipts, got {len(receipts)}")
    return keccak(b"".join(r.struct_hash() for r in receipts))


def batch_digest(chain_id: int, market: str | bytes, receipts: Sequence[ExecutionReceipt]) -> bytes:
    """The EIP-712 digest of ExecutionReceipts(receipts) in the market's domain."""
    return hash_typed(market_domain_separator(chain_id, market), keccak(RECEIPTS_TYPEHASH + batch_commitment(receipts)))


def batch_typed_data(chain_id: int, market: str | bytes, receipts: Sequence[ExecutionReceipt]) -> dict[str, Any]:
    """The full EIP-712 ExecutionReceipts message, as a wallet or eth_account signs it."""
    one = receipts[0].typed_data(chain_id, market) if receipts else {}
    if not one:
        raise ValueError("a batch needs at least one receipt")
    types = dict(one["types"])
    types["ExecutionReceipts"] = [{"name": "receipts", "type": "ExecutionReceipt[]"}]
    return {
        "types": types,
        "primaryType": "ExecutionReceipts",
        "domain": one["domain"],
        "message": {"receipts": [r.typed_data(chain_id, market)["message"] for r in receipts]},
    }


def sign_receipts(private_key: Any, chain_id: int, market: str | bytes, receipts: Sequence[ExecutionReceipt]) -> bytes:
    """An agent's one 65-byte signature over a batch of its receipts (JobMarket.submit_results)."""
    return sign_digest(batch_digest(chain_id, market, receipts), private_key)


@dataclass(frozen=True)
class _CancelShard(TypedStruct):
    """A client's cancel, for clients that send no transactions (an x402 payer): the dispute court
    checks it over the market's domain and cancels for the client (DisputeCourt.cancel_with_signature)."""

    EIP712_DOMAIN = (DOMAIN_NAME, DOMAIN_VERSION)
    EIP712_TYPE = "CancelShard(uint256 job,uint256 shard,uint256 validBefore)"

    job: Any
    shard: Any
    valid_before: Any


CANCEL_TYPE = _CancelShard.EIP712_TYPE
CANCEL_TYPEHASH = _CancelShard.EIP712_TYPEHASH


def cancel_digest(chain_id: int, market: str | bytes, job: int, shard: int, valid_before: int) -> bytes:
    """The digest a client signs to cancel `shard` of `job` until `valid_before` (unix seconds)."""
    members = _CancelShard.EIP712_MEMBERS
    values = [_as_uint256(member, value) for (_, member, _), value in zip(members, (job, shard, valid_before))]
    return _CancelShard(*values).digest(chain_id, market)


def cancel_typed_data(chain_id: int, market: str | bytes, job: int, shard: int, valid_before: int) -> dict[str, Any]:
    """The full EIP-712 cancel message, for wallets (eth_signTypedData_v4)."""
    return _CancelShard(job, shard, valid_before).typed_data(chain_id, market)


def sign_cancel(private_key: Any, chain_id: int, market: str | bytes, job: int, shard: int, valid_before: int) -> bytes:
    """A client's 65-byte cancel signature (see `cancel_digest`)."""
    return sign_digest(cancel_digest(chain_id, market, job, shard, valid_before), private_key)


def cancel_signer(chain_id: int, market: str | bytes, job: int, shard: int, valid_before: int, signature: bytes) -> str:
    """Who signed a cancel; raises InvalidSignature for any form the contracts refuse."""
    return recover_signer(cancel_digest(chain_id, market, job, shard, valid_before), signature)
