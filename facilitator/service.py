"""The facilitator's HTTP API, built on the `x402` package's facilitator logic.

    GET  /supported   {kinds: [{x402Version, scheme, network}], extensions, signers}
    POST /verify      {x402Version, paymentPayload, paymentRequirements} -> {isValid, invalidReason?, payer?}
    POST /settle      same body -> {success, errorReason?, payer?, transaction, network}

A payment for a scheme or network it does not serve is answered `unsupported_scheme` (or
`invalid_network`), never an HTTP error; a body that is not a payment is a 400 naming
the field. Every settlement is logged with its transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

log = logging.getLogger("facilitator")

UNSUPPORTED_SCHEME = "unsupported_scheme"
INVALID_NETWORK = "invalid_network"
INVALID_PAYLOAD = "invalid_payload"


class PaymentRequest(BaseModel):
    """The body of /verify and /settle."""

    x402Version: int = 2
    paymentPayload: dict[str, Any]
    paymentRequirements: dict[str, Any]


def build_facilitator(private_key: str, rpc_url: str, networks: list[str]) -> Any:
    """An x402Facilitator for `exact` (EIP-3009) on `networks`, paying gas from `private_key`."""
    from x402 import x402Facilitator
    from x402.mechanisms.evm import FacilitatorWeb3Signer
    from x402.mechanisms.evm.exact import register_exact_evm_facilitator

    signer = FacilitatorWeb3Signer(private_key=private_key, rpc_url=rpc_url)
    return register_exact_evm_facilitator(x402Facilitator(), signer, networks=networks)


def _parse(body: PaymentRequest) -> tuple[Any, Any]:
    from x402.schemas import PaymentRequirements, parse_payment_payload

    try:
        return parse_payment_payload(body.paymentPayload), PaymentRequirements.model_validate(body.paymentRequirements)
    except (ValidationError, ValueError, TypeError, KeyError) as error:
        raise HTTPException(400, f"not an x402 payment: {error}") from None


def _unsupported(kinds: list[Any], requirements: Any) -> str | None:
    """The spec's reason when nothing here serves the requirements' scheme and network."""
    if not any(k.network == requirements.network for k in kinds):
        return INVALID_NETWORK
    if not any(k.network == requirements.network and k.scheme == requirements.scheme for k in kinds):
        return UNSUPPORTED_SCHEME
    return None


def create_app(facilitator: Any, networks: list[str]) -> FastAPI:
    """The API over `facilitator`, offering only `networks` (the package also registers x402 v1
    on every public network it knows, which this facilitator's node does not serve)."""
    api = FastAPI(title="computenet x402 facilitator")
    everything = facilitator.get_supported()
    kinds = [k for k in everything.kinds if k.network in networks]

    @api.get("/supported")
    def supported() -> dict:
        return {
            "kinds": [k.model_dump(by_alias=True, exclude_none=True) for k in kinds],
            "extensions": everything.extensions,
            "signers": everything.signers,
        }

    @api.post("/verify")
    async def verify(body: PaymentRequest) -> JSONResponse:
        payload, requirements = _parse(body)
        reason = _unsupported(kinds, requirements)
        if reason:
            return JSONResponse({"isValid": False, "invalidReason": reason})
        result = await facilitator.verify(payload, requirements)
        answer = {"isValid": result.is_valid, "payer": result.payer}
        if not result.is_valid:
            answer["invalidReason"] = result.invalid_reason
            log.info("payment refused", extra={"fields": {"reason": result.invalid_reason, "payer": result.payer}})
        return JSONResponse({k: v for k, v in answer.items() if v is not None})

    @api.post("/settle")
    async def settle(body: PaymentRequest) -> JSONResponse:
        payload, requirements = _parse(body)
        reason = _unsupported(kinds, requirements)
        if reason:
            return JSONResponse({"success": False, "errorReason": reason, "transaction": "", "network": requirements.network})
        # Verify first: a replayed, expired or underfunded payment gets its reason and
        # nothing is broadcast.
        check = await facilitator.verify(payload, requirements)
        if not check.is_valid:
            log.info("settlement refused", extra={"fields": {"reason": check.invalid_reason, "payer": check.payer}})
            return JSONResponse({"success": False, "errorReason": check.invalid_reason, "transaction": "",
                                 "network": requirements.network, **({"payer": check.payer} if check.payer else {})})  # fmt: skip
        result = await facilitator.settle(payload, requirements)
        answer = {"success": result.success, "transaction": result.transaction or "", "network": result.network,
                  "payer": result.payer, "errorReason": result.error_reason}  # fmt: skip
        log.info("settled" if result.success else "settlement failed",
                 extra={"fields": {k: v for k, v in answer.items() if v}})  # fmt: skip
        return JSONResponse({k: v for k, v in answer.items() if v is not None})

    @api.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return api
