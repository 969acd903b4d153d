"""x402 payments whose payee is the job market: settling one posts the job it was offered for.

A plain `transferWithAuthorization` to the market would leave the tokens there credited to no
one, so a payment to the market is never settled that way. The job gateway puts the job in
the requirements' `extra`:

    "computenetJob": {"manifestHash": "0x…", "requirements": {min_vram_mib, gpu_count, …}}

and settling calls `AuthorizationFunder.post_job_with_authorization` (the market's FUNDER),
which has the token move exactly the job's quote from the payer to the market and the market
escrow it and post the job, in one transaction (the funder records each authorization it
used, so one funds one job at most). The authorization's payee stays the market.

Which job. The payer's authorization does not name the job, and `extra` is unsigned, so a
copy of a payer's PAYMENT-SIGNATURE header (the authorization and its signature) would buy
any job of the same price, at the gateway or straight at `/settle`; the payload's `accepted`
is unsigned too, so comparing it with the terms proves nothing. A job payment is therefore
settled only on a payment tag (facilitator/job_tags.py): a trusted gateway's signature,
unexpired, over exactly the terms settled (amount, payTo, asset, network, manifest hash,
requirements) and over this authorization's payer and nonce. The gateway signs it on the
paid retry of the request that carried the authorization, and binds each authorization to
the first job it was presented for (gateway/app.py). No tag, an offer tag, another
payment's tag, an untrusted or expired one, or one over other terms is refused
(`invalid_computenet_job`) before the chain is read.

Front-running. Anyone who sees the signed authorization can submit it straight to the token.
The tokens then sit in the market, the nonce is spent, and the post would fail. The
facilitator finds the token's `AuthorizationUsed` log for the nonce and checks that its
transaction moved exactly the quote from the payer to the market and funded no job; then it
posts the job with `front_run=True`, which uses those tokens once. A nonce the payer
cancelled shows no such transfer and is refused as used; and whatever is claimed, the market
escrows only tokens that are there and owed to no one, so it never posts a job on tokens
that did not arrive.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from web3.logs import DISCARD

from computenet.domain import Requirements, Verification
from computenet.eip3009 import TransferAuthorization, split
from computenet.errors import ContractRevert
from computenet.web3calls import Sender, contract
from facilitator.job_tags import TAG_EXTRA, JobTerms, tag_problem

log = logging.getLogger("facilitator.jobs")

JOB_EXTRA = "computenetJob"
FRONT_RUN_LOOKBACK = 50_000  # blocks searched for the transaction that spent a nonce

# The spec's reasons (x402's EVM constants) and this facilitator's own.
NONCE_USED = "invalid_exact_evm_nonce_already_used"
VALUE_MISMATCH = "invalid_exact_evm_payload_authorization_value_mismatch"
RECIPIENT_MISMATCH = "invalid_exact_evm_payload_recipient_mismatch"
TRANSACTION_FAILED = "transaction_failed"
INVALID_JOB = "invalid_computenet_job"


@dataclass(frozen=True)
class Refusal(Exception):
    reason: str
    message: str


@dataclass(frozen=True)
class JobPayment:
    """A payment for one job: what it buys and the authorization that pays for it."""

    manifest_hash: bytes
    requirements: Requirements
    authorization: TransferAuthorization
    signature: str


def is_job_payment(requirements: Any, market: str) -> bool:
    return str(requirements.pay_to).lower() == market.lower()


def parse_job(extra: dict[str, Any] | None) -> tuple[bytes, Requirements]:
    """The job a payment to the market buys, from the requirements' `extra`."""
    job = (extra or {}).get(JOB_EXTRA)
    if not isinstance(job, dict):
        raise Refusal(INVALID_JOB, f"a payment to the job market must name its job in extra.{JOB_EXTRA}")
    try:
        manifest_hash = bytes.fromhex(str(job["manifestHash"]).removeprefix("0x"))
        fields = {name: int(job["requirements"][name]) for name in Requirements.__dataclass_fields__}
        req = Requirements(**{**fields, "verification": Verification(fields["verification"])})
    except (KeyError, TypeError, ValueError) as error:
        raise Refusal(INVALID_JOB, f"extra.{JOB_EXTRA} is not a job: {error}") from None
    if len(manifest_hash) != 32:
        raise Refusal(INVALID_JOB, f"extra.{JOB_EXTRA}.manifestHash must be 32 bytes")
    return manifest_hash, req


class JobSettlement:
    """Verifies and settles payments to the job market on one chain, as its facilitator."""

    def __init__(self, web3: Any, sender: Sender, market: str, token: str, gateways: list[str]) -> None:
        """`gateways`: the addresses of the job gateways whose tags it settles job payments on.
        The market names its AuthorizationFunder (FUNDER), which the payments are settled through."""
        self.web3 = web3
        self.sender = sender
        self.market = contract(web3, "JobMarket", market)
        self.funder = contract(web3, "AuthorizationFunder", self.market.functions.FUNDER().call())
        self.token = contract(web3, "TestToken", token)
        self.market_address = self.market.address
        self.gateways = {address.lower() for address in gateways}

    def payment(self, payload: Any, requirements: Any) -> JobPayment:
        manifest_hash, req = parse_job(requirements.extra)
        evm = payload.payload
        try:
            auth = TransferAuthorization.from_x402(evm["authorization"])
            split(evm["signature"])
        except (KeyError, TypeError, ValueError) as error:
            raise Refusal("invalid_payload", f"not an EIP-3009 authorization: {error}") from None
        try:
            terms = JobTerms.of(requirements, manifest_hash, req)
        except ValueError:
            raise Refusal(
                "invalid_payment_requirements", f"the amount {requirements.amount!r} is not a number"
            ) from None
        tag = (requirements.extra or {}).get(TAG_EXTRA)
        problem = tag_problem(tag, terms, self.gateways, time.time(), auth.payer, auth.nonce)
        if problem:
            raise Refusal(INVALID_JOB, problem)
        if auth.payee.lower() != self.market_address.lower():
            raise Refusal(
                RECIPIENT_MISMATCH, f"the authorization pays {auth.payee}, not the job market {self.market_address}"
            )
        quote = self.market.functions.quote(req.as_tuple()).call()
        if auth.value != quote or int(requirements.amount) != quote:
            raise Refusal(VALUE_MISMATCH, f"the job costs {quote}; the authorization pays {auth.value}")
        return JobPayment(manifest_hash, req, auth, evm["signature"])

    def spent(self, payment: JobPayment) -> bool:
        """Whether the authorization's nonce is already used at the token; raises Refusal when
        it is used and cannot fund this job (a replay, or a cancelled nonce)."""
        auth = payment.authorization
        job = self.funder.functions.funded_by(auth.payer, auth.nonce).call()
        if job:
            raise Refusal(NONCE_USED, f"this authorization already funded job {job}")
        if not self.token.functions.authorizationState(auth.payer, auth.nonce).call():
            return False
        if not self._front_run_transfer(auth):
            raise Refusal(NONCE_USED, "the authorization's nonce was used or cancelled without paying the market")
        return True

    def post(self, payment: JobPayment, front_run: bool) -> tuple[int, str]:
        """Posts the job on chain; returns (job id, transaction hash). A front run that lands
        while this transaction is on its way is caught and the job posted on its tokens."""
        try:
            receipt = self._send(payment, front_run)
        except ContractRevert as error:
            if front_run or "authorization is used" not in str(error):
                raise Refusal(TRANSACTION_FAILED, str(error)) from None
            if not self.spent(payment):
                raise Refusal(TRANSACTION_FAILED, str(error)) from None
            log.warning(
                "authorization front-run while settling", extra={"fields": {"payer": payment.authorization.payer}}
            )
            front_run = True
            receipt = self._send(payment, True)
        funded = self.funder.events.JobFundedByAuthorization().process_receipt(receipt, errors=DISCARD)
        job = int(funded[0]["args"]["job"])
        tx = "0x" + bytes(receipt["transactionHash"]).hex()
        log.info(
            "job funded by authorization",
            extra={"fields": {"job": job, "payer": payment.authorization.payer, "front_run": front_run, "tx": tx}},
        )
        return job, tx

    def _send(self, payment: JobPayment, front_run: bool) -> Any:
        call = self.funder.functions.post_job_with_authorization(
            payment.manifest_hash,
            payment.requirements.as_tuple(),
            payment.authorization.market_args(),
            front_run,
            *split(payment.signature),
        )
        return self.sender.send(call)

    def _front_run_transfer(self, auth: TransferAuthorization) -> bool:
        """Whether the transaction that used `auth`'s nonce moved exactly its value from the
        payer to the market and funded no job there."""
        latest = self.web3.eth.block_number
        used = self.token.events.AuthorizationUsed().get_logs(
            from_block=max(0, latest - FRONT_RUN_LOOKBACK),
            to_block=latest,
            argument_filters={"authorizer": auth.payer, "nonce": auth.nonce},
        )
        for entry in used:
            receipt = self.web3.eth.get_transaction_receipt(entry["transactionHash"])
            transfers = self.token.events.Transfer().process_receipt(receipt, errors=DISCARD)
            funded = self.funder.events.JobFundedByAuthorization().process_receipt(receipt, errors=DISCARD)
            paid = any(
                t["address"] == self.token.address
                and t["args"]["sender"].lower() == auth.payer.lower()
                and t["args"]["receiver"].lower() == self.market_address.lower()
                and t["args"]["value"] == auth.value
                for t in transfers
            )
            if paid and not funded:
                return True
        return False
