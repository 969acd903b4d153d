"""A job gateway's tag on the terms of a job payment: how the facilitator knows that a payment
to the job market buys a job a gateway it trusts offered, and buys it with this authorization.

The payer's EIP-3009 authorization signs only (payer, payee, value, validity, random nonce);
the job it pays for, and everything else in an x402 payment, is unsigned. So the gateway
signs the terms with its own key (EIP-191), and the facilitator checks the signer against
the gateway addresses it is configured to trust (no shared secret). The message is

    computenet job|<network>|<asset>|<payTo>|<amount>|<manifest hash>|<requirements>|<expires>|<payer>|<nonce>

and the tag sits in the requirements' `extra.computenetTag`: `{gateway, expires, signature}`,
plus `payer` and `nonce` when it is bound to a payment. There are two kinds:

- an offer tag (no payer, no nonce) rides on the gateway's 402; the client cannot pick its
  nonce before it has the offer, so an offer cannot name it;
- a payment tag names the authorization's payer and nonce as well. The gateway signs it on
  the paid retry, and a job payment settles on nothing else.

Pure: no chain and no clock here; the caller passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct

from computenet.domain import Requirements

TAG_EXTRA = "computenetTag"


@dataclass(frozen=True)
class JobTerms:
    """Everything a job payment's requirements say about what it buys: the fields a tag covers."""

    network: str
    asset: str
    pay_to: str
    amount: int
    manifest_hash: bytes
    requirements: Requirements

    @classmethod
    def of(cls, payment_requirements: Any, manifest_hash: bytes, req: Requirements) -> JobTerms:
        """The terms of x402 `payment_requirements` whose `extra` names the job (`manifest_hash`, `req`)."""
        return cls(
            str(payment_requirements.network),
            str(payment_requirements.asset),
            str(payment_requirements.pay_to),
            int(payment_requirements.amount),
            manifest_hash,
            req,
        )

    def message(self, expires: int, payer: str = "", nonce: bytes = b"") -> str:
        req = ",".join(str(int(x)) for x in self.requirements.as_tuple())
        return (
            f"computenet job|{self.network}|{self.asset.lower()}|{self.pay_to.lower()}|{self.amount}|"
            f"0x{self.manifest_hash.hex()}|{req}|{expires}|{payer.lower()}|{nonce.hex()}"
        )


def sign_tag(private_key: Any, terms: JobTerms, expires: int, payer: str = "", nonce: bytes = b"") -> dict[str, Any]:
    """The tag of `terms` until `expires` (unix seconds); with `payer` and `nonce`, bound to that authorization."""
    signed = Account.sign_message(encode_defunct(text=terms.message(expires, payer, nonce)), private_key)
    tag = {
        "gateway": Account.from_key(private_key).address,
        "expires": expires,
        "signature": "0x" + bytes(signed.signature).hex(),
    }
    if payer:
        tag |= {"payer": payer, "nonce": "0x" + nonce.hex()}
    return tag


def tag_problem(
    tag: Any, terms: JobTerms, trusted: set[str], now: float, payer: str = "", nonce: bytes = b""
) -> str | None:
    """What is wrong with `tag` as the tag of a gateway in `trusted` (lowercase addresses) over
    exactly `terms`, unexpired at `now`, and, given `payer` and `nonce`, bound to that
    authorization; None when nothing is."""
    if not isinstance(tag, dict):
        return f"the job's terms carry no gateway tag (extra.{TAG_EXTRA})"
    try:
        gateway, expires, signature = str(tag["gateway"]), int(tag["expires"]), str(tag["signature"])
    except (KeyError, TypeError, ValueError):
        return f"extra.{TAG_EXTRA} must have gateway, expires (unix seconds) and signature"
    if gateway.lower() not in trusted:
        return f"the job's terms are tagged by {gateway}, not by a trusted gateway ({', '.join(sorted(trusted)) or 'none set'})"
    if expires < now:
        return f"the gateway's offer expired at {expires}"
    if payer and (str(tag.get("payer", "")).lower(), str(tag.get("nonce", "")).lower()) != (
        payer.lower(),
        "0x" + nonce.hex(),
    ):
        return f"the gateway's tag is not bound to this authorization (payer {payer}, nonce 0x{nonce.hex()})"
    try:
        signer = Account.recover_message(encode_defunct(text=terms.message(expires, payer, nonce)), signature=signature)
    except Exception:
        return f"extra.{TAG_EXTRA}.signature is not a signature"
    if signer.lower() != gateway.lower():
        return f"the gateway's tag is not {gateway}'s signature over these job terms{' and this authorization' if payer else ''}"
    return None
