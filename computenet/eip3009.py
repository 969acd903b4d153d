"""EIP-3009 `TransferWithAuthorization`: the signed transfer an x402 `exact` payment carries,
and how a job is funded over HTTP (AuthorizationFunder.post_job_with_authorization; the
authorization's payee is the JobMarket)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from eth_account import Account

TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ],
}


@dataclass(frozen=True)
class TransferAuthorization:
    payer: str
    payee: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes

    @classmethod
    def from_x402(cls, authorization: dict[str, Any]) -> TransferAuthorization:
        """From an x402 `exact` payload's `authorization` object (decimal strings, hex nonce)."""
        return cls(
            payer=authorization["from"],
            payee=authorization["to"],
            value=int(authorization["value"]),
            valid_after=int(authorization["validAfter"]),
            valid_before=int(authorization["validBefore"]),
            nonce=bytes.fromhex(authorization["nonce"].removeprefix("0x")),
        )

    def typed_data(self, token_name: str, token_version: str, chain_id: int, token: str) -> dict[str, Any]:
        return {
            "types": TYPES,
            "primaryType": "TransferWithAuthorization",
            "domain": {"name": token_name, "version": token_version, "chainId": chain_id, "verifyingContract": token},
            "message": {
                "from": self.payer,
                "to": self.payee,
                "value": self.value,
                "validAfter": self.valid_after,
                "validBefore": self.valid_before,
                "nonce": self.nonce,
            },
        }

    def sign(self, private_key: Any, token_name: str, token_version: str, chain_id: int, token: str) -> bytes:
        """The 65-byte signature r ‖ s ‖ v."""
        message = self.typed_data(token_name, token_version, chain_id, token)
        return bytes(Account.sign_typed_data(private_key, full_message=message).signature)

    def market_args(self) -> tuple:
        """The `Authorization` struct AuthorizationFunder.post_job_with_authorization and
        return_unclaimed take."""
        return (self.payer, self.valid_after, self.valid_before, self.nonce)

    def token_args(self, signature: bytes) -> tuple:
        """The arguments of the token's transferWithAuthorization(from, to, value, ..., v, r, s)."""
        return (self.payer, self.payee, self.value, self.valid_after, self.valid_before, self.nonce, *split(signature))


def random_nonce() -> bytes:
    return os.urandom(32)


def split(signature: bytes | str) -> tuple[int, bytes, bytes]:
    """(v, r, s) of a 65-byte r ‖ s ‖ v signature (hex or bytes); v as 27/28."""
    raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else bytes(signature)
    if len(raw) != 65:
        raise ValueError(f"a signature is 65 bytes (r ‖ s ‖ v), not {len(raw)}")
    v = raw[64] if raw[64] >= 27 else raw[64] + 27
    return v, raw[:32], raw[32:64]
