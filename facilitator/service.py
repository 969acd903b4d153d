"""The facilitator's HTTP API, built on the `x402` package's facilitator logic.

    GET  /supported   {kinds: [{x402Version, scheme, network}], extensions, signers}
    POST /verify      {x402Version, paymentPayload, paymentRequirements} -> {isValid, invalidReason?, payer?}
    POST /settle      same body -> {success, errorReason?, payer?, transaction, network}

A payment for a scheme or network it does not serve is answered `unsupported_scheme` (or
`invalid_network`), never an HTTP error; a body that is not a payment is a 400 naming
the field. Every settlement is logged with its transaction.

A payment whose payee is the job market is a job payment (facilitator/jobs.py): settling it
posts the job it was offered for instead of a bare transfer, and only on terms a trusted job
gateway tagged for its authorization. Payments to any other address are open to any
resource server.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from facilitator.jobs import JobSettlement, Refusal, is_job_payment

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


def create_app(
    facilitator: Any,
    networks: list[str],
    jobs: JobSettlement | None = None,
    routers: tuple[APIRouter, ...] = (),
    lifespan: Any = None,
) -> FastAPI:
    """The API over `facilitator`, offering only `networks` (the package also registers x402 v1
    on every public network it knows, which this facilitator's node does not serve). With
    `jobs`, payments to the job market post jobs; `routers` add endpoints (disputes)."""
    api = FastAPI(title="computenet x402 facilitator", lifespan=lifespan)
    for router in routers:
        api.include_router(router)

    def job_payment(requirements: Any) -> bool:
        return jobs is not None and is_job_payment(requirements, jobs.market_address)

    async def check_job_payment(payload: Any, requirements: Any) -> tuple[Any, bool, dict | None]:
        """(payment, front_run, refusal): a front-run authorization is valid as it stands; any
        other must also pass the package's checks (signature, balance, validity window)."""

        def read_chain() -> tuple[Any, bool]:  # the quote and the nonce's state: node calls, off the event loop
            payment = jobs.payment(payload, requirements)
            return payment, jobs.spent(payment)

        try:
            payment, front_run = await run_in_threadpool(read_chain)
        except Refusal as refusal:
            return None, False, {"reason": refusal.reason, "message": refusal.message}
        if not front_run:
            check = await facilitator.verify(payload, requirements)
            if not check.is_valid:
                return None, False, {"reason": check.invalid_reason, "message": check.invalid_message}
        return payment, front_run, None

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
        if job_payment(requirements):
            payment, _, refusal = await check_job_payment(payload, requirements)
            if refusal:
                log.info("job payment refused", extra={"fields": refusal})
                return JSONResponse(
                    _without_none(
                        {"isValid": False, "invalidReason": refusal["reason"], "invalidMessage": refusal["message"]}
                    )
                )
            return JSONResponse({"isValid": True, "payer": payment.authorization.payer})
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
            return JSONResponse(
                {"success": False, "errorReason": reason, "transaction": "", "network": requirements.network}
            )
        if job_payment(requirements):
            return await settle_job(payload, requirements)
        # Verify first: a replayed, expired or underfunded payment gets its reason and
        # nothing is broadcast.
        check = await facilitator.verify(payload, requirements)
        if not check.is_valid:
            log.info("settlement refused", extra={"fields": {"reason": check.invalid_reason, "payer": check.payer}})
            return JSONResponse(
                {
                    "success": False,
                    "errorReason": check.invalid_reason,
                    "transaction": "",
                    "network": requirements.network,
                    **({"payer": check.payer} if check.payer else {}),
                }
            )
        result = await facilitator.settle(payload, requirements)
        answer = {
            "success": result.success,
            "transaction": result.transaction or "",
            "network": result.network,
            "payer": result.payer,
            "errorReason": result.error_reason,
        }
        log.info(
            "settled" if result.success else "settlement failed",
            extra={"fields": {k: v for k, v in answer.items() if v}},
        )
        return JSONResponse({k: v for k, v in answer.items() if v is not None})

    async def settle_job(payload: Any, requirements: Any) -> JSONResponse:
        failed = {"success": False, "transaction": "", "network": requirements.network}
        payment, front_run, refusal = await check_job_payment(payload, requirements)
        if refusal:
            log.info("job settlement refused", extra={"fields": refusal})
            return JSONResponse(
                _without_none({**failed, "errorReason": refusal["reason"], "errorMessage": refusal["message"]})
            )
        payer = payment.authorization.payer
        try:
            job, tx = await run_in_threadpool(jobs.post, payment, front_run)
        except Refusal as refusal:
            log.warning(
                "job settlement failed", extra={"fields": {"reason": refusal.reason, "message": refusal.message}}
            )
            return JSONResponse(
                {**failed, "payer": payer, "errorReason": refusal.reason, "errorMessage": refusal.message}
            )
        return JSONResponse(
            {
                "success": True,
                "transaction": tx,
                "network": requirements.network,
                "payer": payer,
                "amount": str(payment.authorization.value),
            }
        )

    @api.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return api


def _without_none(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if v is not None}
