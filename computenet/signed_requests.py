"""Requests signed by the caller's key (EIP-191), for services that answer only some accounts:
an agent's outputs (the job's client, bonded verifiers) and the facilitator's disputes.

The signed message is

    computenet <scope>|<chain id>|<server address>|<request>|<expires>

so a signature works for one service, one chain, one server, one request and a few minutes
only. The headers are X-Computenet-Address, X-Computenet-Expires and X-Computenet-Signature.
"""

from __future__ import annotations

import time
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi import HTTPException

MAX_VALIDITY = 300  # seconds a signed request may be valid for


def request_message(scope: str, chain_id: int, server: str, request: str, expires: int) -> str:
    return f"computenet {scope}|{chain_id}|{server.lower()}|{request}|{expires}"


def sign_request(
    private_key: Any, scope: str, chain_id: int, server: str, request: str, validity: int = 60
) -> dict[str, str]:
    """Headers that authorise `request` (e.g. "GET /path?query") at `server`'s `scope` service.
    `private_key` may also be an ape account, which signs however it holds its key (a keyfile
    asks for its passphrase)."""
    expires = int(time.time()) + validity
    message = encode_defunct(text=request_message(scope, chain_id, server, request, expires))
    if hasattr(private_key, "sign_message"):
        signed = private_key.sign_message(message)
        address, signature = str(private_key.address), getattr(signed, "signature", None) or signed.encode_rsv()
    else:
        address, signature = Account.from_key(private_key).address, Account.sign_message(message, private_key).signature
    return {
        "X-Computenet-Address": address,
        "X-Computenet-Expires": str(expires),
        "X-Computenet-Signature": "0x" + bytes(signature).hex(),
    }


def caller(headers: Any, scope: str, chain_id: int, server: str, request: str, now: float) -> str:
    """The address that signed this request; HTTPException 401 naming what is wrong."""
    try:
        address, expires, signature = (
            headers[h] for h in ("X-Computenet-Address", "X-Computenet-Expires", "X-Computenet-Signature")
        )
        expires_at = int(expires)
    except (KeyError, ValueError):
        raise HTTPException(401, "sign the request: X-Computenet-Address, X-Computenet-Expires, X-Computenet-Signature")
    if expires_at < now:
        raise HTTPException(401, "the request's signature has expired")
    if expires_at > now + MAX_VALIDITY:
        raise HTTPException(401, f"the request's signature is valid for over {MAX_VALIDITY} s")
    try:
        message = request_message(scope, chain_id, server, request, expires_at)
        signer = Account.recover_message(encode_defunct(text=message), signature=signature)
    except Exception:
        raise HTTPException(401, "the request's signature is malformed") from None
    if signer.lower() != address.lower():
        raise HTTPException(401, "the request's signature is not by X-Computenet-Address")
    return signer
