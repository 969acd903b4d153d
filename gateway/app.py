"""The job gateway: clients that speak HTTP pay for jobs with x402 (spec v2) and need no gas.

    POST /jobs                      {manifest, requirements}
        unpaid: 402, PAYMENT-REQUIRED offers the job's quote in the payment token, payTo the
                job market, the job itself in extra.computenetJob and this gateway's tag on
                these terms in extra.computenetTag (facilitator/job_tags.py), for OFFER_VALIDITY s
        paid:   201 {job, payer, budget, transaction, status}, PAYMENT-RESPONSE; the
                facilitator settled the payment by posting exactly this job on chain
    GET  /jobs?client=0x…           that client's jobs, newest first, from the market's JobPosted
                                    events (an x402 job's client is its payer): [{job, client,
                                    budget, escrow, unfinished, block, transaction}]
    GET  /jobs/{id}                 the job and each shard's replicas, read from the chain, with
                                    why each replica that is not running waits (computenet.waiting)
                                    and each replica's agent and endpoint (null: never assigned);
                                    its verification mode by name and, for a zk job, the model its
                                    manifest is bound to and which replicas' results were proven
    GET  /jobs/{id}/shards/{shard}/cancel-message?valid_before=
                                    the EIP-712 CancelShard message for the payer's wallet to sign
    POST /jobs/{id}/shards/{shard}/cancel  {valid_before, signature}
                                    cancels the shard's replicas that have not started, on the
                                    payer's signature (relayed through the dispute court, the
                                    gateway's key paying the gas); the budget comes back to the
                                    payer as ever (the facilitator's refunder pays it out)
    GET  /jobs/{id}/outputs/{shard}/{replica}[/file?path=]
                                    a replica's outputs, relayed from its agent (at the URL
                                    `outputs` names for it, else its asset's on-chain endpoint);
                                    the request carries the job client's signature for the
                                    agent's own path (agent/outputs.py), so only the payer reads them
    GET  /, /app/...                the dApp and its config.json (gateway/dapp.py)
    GET  /audit, /audit/jobs/{id}, /providers/{address}
                                    every flow of funds traced from the chain's events (gateway/audit_routes.py)

Every route answers CORS, so the dApp can be served from anywhere.

Binding a payment to its job. The payer's authorization does not name the job, so on the
paid retry the gateway checks that the payment accepted exactly this request's offer under
its own unexpired tag, then binds the authorization to this job twice over: it remembers the
job each authorization (payer, nonce) was first presented for and refuses it for any other,
and it hands the facilitator the offer tagged again with the authorization's payer and
nonce, the only tag a job payment settles on. So a copy of a PAYMENT-SIGNATURE header buys
its own job only, here and at the facilitator's /settle, and once settled the market's
AuthorizationFunder (`funded_by`) refuses it for good. Limits: the bindings live in this
process, for as long as an x402 client's authorization is valid (PAYMENT_TIMEOUT); a copy
that reaches the gateway before the payer's own request cannot be told from it.

Every refusal names what is wrong: a malformed manifest or requirements, or a job no active
asset can ever take (422, before any payment is asked for), a payment
that does not match the job's offer or that the facilitator refuses (402 with the spec's
reason in PAYMENT-REQUIRED and the body). A facilitator that is down or does not serve this
network makes POST /jobs answer 503; the server keeps running and checks again. A cancel
whose signature is not the job client's (or has expired) is refused with 403, one with
nothing to cancel with 409 and the chain's reason.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from computenet.domain import Asset, Job, Parameters, Requirements, Shard, Verification
from computenet.eip3009 import TransferAuthorization
from computenet.errors import ContractRevert, InvalidSignature, ManifestError
from computenet.events import Event
from computenet.manifest import canonical_json, manifest_hash, parse_manifest
from computenet.market import Market
from computenet.preflight import post_problem
from computenet.receipts import cancel_signer, cancel_typed_data
from computenet.waiting import Decline, problem_for_new_job, shard_waiting
from computenet.web3calls import Sender, block_ranges
from facilitator.job_tags import TAG_EXTRA, JobTerms, sign_tag, tag_problem
from facilitator.jobs import INVALID_JOB, JOB_EXTRA
from gateway.audit_routes import audit_routes
from gateway.dapp import cors, dapp_routes
from gateway.settings import DEFAULT_DAPP_DIR

log = logging.getLogger("gateway")

PAYMENT_TIMEOUT = 300  # seconds the client's authorization must stay valid for settlement
OFFER_VALIDITY = 300  # seconds a 402's offer can be paid in (the x402 client pays at once)
PREFLIGHT_MARGIN = 60  # seconds between the offer and the post that the deadline must allow for
CANCEL_MESSAGE_VALIDITY = 600  # seconds a cancel message is valid for when the wallet names no time
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class RequirementsBody(BaseModel):
    min_vram_mib: int = Field(ge=0, lt=2**32)
    gpu_count: int = Field(ge=0, lt=2**8)
    max_price: int = Field(gt=0, lt=2**64, description="token base units per GPU-second")
    max_gpu_seconds: int = Field(gt=0, lt=2**32)
    deadline: int = Field(gt=0, lt=2**40, description="unix time every lease must end by")
    shard_count: int = Field(1, gt=0, lt=2**16)
    replication: int = Field(1, gt=0, lt=2**8)
    verification: Verification = Verification.OPTIMISTIC
    cpu_cores: int = Field(1, gt=0, lt=2**16, description="CPU cores each lease holds")
    memory_mib: int = Field(1024, gt=0, lt=2**32, description="memory each lease holds, MiB")
    disk_mib: int = Field(1024, gt=0, lt=2**32, description="disk each lease may write, MiB")


class JobBody(BaseModel):
    manifest: dict[str, Any]
    requirements: RequirementsBody


class CancelBody(BaseModel):
    valid_before: int = Field(gt=0, lt=2**256, description="unix time from which the signature is void")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="the client's 65-byte signature, hex")


class Chain:
    """The gateway's view of the market: the reads go through the SDK's Market (over this
    process's web3); it keeps only the payment token's terms, read once."""

    def __init__(self, web3: Any, market: str | Market) -> None:
        self.reader = market if isinstance(market, Market) else Market.over_web3(web3, market)
        self.market = SimpleNamespace(address=self.reader.addresses["market"])
        self.token = self.reader.addresses["token"]
        self.token_name, self.token_version = self.reader.token_domain()
        self.chain_id = self.reader.chain_id

    def problem(self, digest: bytes, req: Requirements) -> str | None:
        reader = self.reader
        return post_problem(digest, req, reader.parameters(), reader.now() + PREFLIGHT_MARGIN, reader.paused())

    def quote(self, req: Requirements) -> int:
        return self.reader.quote(req)

    def funded_by(self, payer: str, nonce: bytes) -> int:
        return self.reader.funded_by(payer, nonce)

    def job(self, job_id: int) -> dict | None:
        found = self.job_and_shards(job_id)
        return None if found is None else _job_json(*found)

    def job_and_shards(self, job_id: int) -> tuple[Job, list[Shard]] | None:
        job = self.reader.job(job_id)
        return None if job is None else (job, self.reader.shards(job_id, job))

    def zk_facts(self, job: Job) -> ZkFacts | None:
        """For a zk job, the model its manifest is bound to and the (shard, replica) results the
        model registry proved (its ResultProven events); None for any other job."""
        if job.requirements.verification != Verification.ZK:
            return None
        spec = self.reader.zk_spec(job.client, job.manifest_hash)
        return ZkFacts("0x" + spec.model.hex() if spec.bound else None, frozenset(self.reader.proven(job.id)))

    def attested_results(self, job: Job) -> frozenset[tuple[int, int]]:
        """For a tee job, the (shard, replica) results an attestor vouched for (their window
        ended early); empty for any other job."""
        if job.requirements.verification != Verification.TEE:
            return frozenset()
        return frozenset(self.reader.attested_results(job.id))

    def agent_of(self, asset: int) -> str:
        return self.reader.agent_of(asset)

    def endpoint(self, asset: int) -> str:
        return self.reader.endpoint(asset)

    def jobs_of(self, client: str) -> list[dict]:
        """GET /jobs?client='s answer: `client`'s JobPosted events, from the deployment block in
        bounded ranges, with each job's escrow and unfinished shards as they are now."""
        reader = self.reader
        posted = [
            event
            for start, stop in block_ranges(reader.deployment_block, reader.head())
            for event in reader.events(start, stop + 1, roles=("market",), names=("JobPosted",))
            if event.client.lower() == client.lower()
        ]
        return client_jobs(posted, reader.jobs([event.job for event in posted]))

    # What computenet.waiting needs, and the relay of a signed cancel.

    def now(self) -> int:
        return self.reader.now()

    def parameters(self) -> Parameters:
        return self.reader.parameters()

    def paused(self) -> bool:
        return self.reader.paused()

    def all_assets(self) -> list[Asset]:
        return self.reader.all_assets()

    def declines(self, job_id: int) -> dict[int, list[Decline]]:
        return self.reader.declines(job_id)

    def cancel_with_signature(self, sender: Sender, job: int, shard: int, valid_before: int, signature: bytes) -> Any:
        """Relays a client's signed cancel through the dispute court; `sender` pays the gas."""
        return sender.send(self.reader.calls.court.functions.cancel_with_signature(job, shard, valid_before, signature))


@dataclass(frozen=True)
class ZkFacts:
    """What the model registry holds of a zk job: its bound model id (hex; None: unbound) and
    the (shard, replica) results it proved, each final at once."""

    model: str | None
    proven: frozenset[tuple[int, int]]


def _job_json(
    job: Job, shards: list[Shard], zk: ZkFacts | None = None, attested: frozenset[tuple[int, int]] = frozenset()
) -> dict:
    """GET /jobs/{id}'s answer: the job and its shards' replicas, as the chain holds them.
    `zk` (a zk job's ZkFacts) names its model and marks its proven replicas; a zk result
    that failed (exit code not 0) took the optimistic way and is not proven. `attested`
    marks a tee job's results whose evidence an attestor verified (short window)."""
    proven = zk.proven if zk else frozenset()
    return {
        "job": job.id,
        "client": job.client,
        "manifest_hash": "0x" + job.manifest_hash.hex(),
        "escrow": job.escrow,
        "unfinished": job.unfinished,
        "finished": job.finished,
        "verification": _verification_name(job.requirements.verification),
        "model": zk.model if zk else None,
        "requirements": _requirements_json(job.requirements),
        "shards": [
            {
                "shard": shard.index,
                "state": shard.state.name.lower(),
                "replicas": [
                    {
                        "replica": x.index,
                        "state": x.state.name.lower(),
                        "asset": x.asset,
                        "gpu_seconds": x.gpu_seconds,
                        "output_root": "0x" + x.output_root.hex() if any(x.output_root) else None,
                        "proven": (shard.index, x.index) in proven,
                        "attested": (shard.index, x.index) in attested,
                    }
                    for x in shard.replicas
                ],
            }
            for shard in shards
        ],
    }


def client_jobs(posted: list[Event], jobs: dict[int, Job]) -> list[dict]:
    """One row per JobPosted event in `posted`, newest first, with its job's state in `jobs`."""
    return [
        {
            "job": event.job,
            "client": event.client,
            "budget": event.budget,
            "escrow": jobs[event.job].escrow,
            "unfinished": jobs[event.job].unfinished,
            "block": event.block,
            "transaction": event.tx,
        }
        for event in sorted(posted, key=lambda e: (e.block, e.index), reverse=True)
    ]


def with_hosts(view: dict, assets: list[Asset]) -> dict:
    """`view` (GET /jobs/{id}'s answer) with each replica's agent and on-chain endpoint
    ("" when its asset names none; both None when the replica was never assigned)."""
    by_id = {asset.id: asset for asset in assets}
    for shard in view["shards"]:
        for replica in shard["replicas"]:
            asset = by_id.get(replica["asset"])
            replica["agent"] = asset.agent if asset else None
            replica["endpoint"] = asset.endpoint if asset else None
    return view


class Bindings:
    """The job each authorization was first presented for: a copy of a payment header is good
    at this gateway for that job only."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, bytes], tuple[JobTerms, float]] = {}  # (payer, nonce) -> (terms, kept until)

    def bind(self, auth: TransferAuthorization, terms: JobTerms, now: float) -> str | None:
        """None when `auth` is new here or was first presented for `terms`; else what is wrong.
        A binding is kept until the authorization expires, PAYMENT_TIMEOUT at most: the x402
        client's last no longer, and one that claims more must not hold memory for longer."""
        self.jobs = {key: kept for key, kept in self.jobs.items() if kept[1] >= now}
        first, _ = self.jobs.setdefault(
            (auth.payer.lower(), auth.nonce), (terms, min(auth.valid_before, now + PAYMENT_TIMEOUT))
        )
        if first != terms:
            return f"the authorization 0x{auth.nonce.hex()} of {auth.payer} was presented for another job"
        return None


def _verification_name(mode: int) -> str:
    """optimistic, replicated, spot_check, zk or tee (an unknown mode by its number)."""
    try:
        return Verification(mode).name.lower()
    except ValueError:
        return str(mode)


def _requirements_json(req: Requirements) -> dict[str, int]:
    return {name: int(getattr(req, name)) for name in Requirements.__dataclass_fields__}


def create_app(
    chain: Chain,
    facilitator_url: str,
    network: str,
    key: Any,
    *,
    store: Any = None,
    outputs: dict[str, str] | None = None,
    public_rpc_url: str = "",
    dapp_dir: Path | None = None,
) -> FastAPI:
    """The gateway for the market `chain` reads, settling through the facilitator at
    `facilitator_url` on `network` (CAIP-2) and tagging its offers with `key` (the facilitator
    trusts its address). `store` (a StoreClient) receives each paid job's manifest; `outputs`
    maps agent addresses to their outputs servers. It serves the dApp in `dapp_dir` (default:
    this repository's dapp/), which reads the chain at `public_rpc_url` (default: the
    gateway's own node)."""
    from eth_account import Account
    from x402.http import FacilitatorConfig, HTTPFacilitatorClient
    from x402.http.utils import (
        decode_payment_signature_header,
        encode_payment_required_header,
        encode_payment_response_header,
    )
    from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo

    api = FastAPI(title="computenet job gateway")
    cors(api)
    dapp_routes(
        api,
        chain,
        public_rpc_url=public_rpc_url or str(getattr(chain.reader.web3.provider, "endpoint_uri", "") or ""),
        store_url=store.url if store is not None else "",
        dapp_dir=dapp_dir or DEFAULT_DAPP_DIR,
        network=network,
    )
    audit_routes(api, chain.reader)
    facilitator = HTTPFacilitatorClient(FacilitatorConfig(url=facilitator_url))
    agents = {address.lower(): url.rstrip("/") for address, url in (outputs or {}).items()}
    served: dict[str, bool] = {}  # remembered once the facilitator confirms the network
    me = {Account.from_key(key).address.lower()}
    bindings = Bindings()
    relay_sender = Sender(chain.reader.web3, key)  # pays the gas of the signed cancels it relays

    async def facilitator_problem() -> str | None:
        if served.get(network):
            return None
        try:
            supported = await run_in_threadpool(facilitator.get_supported)
        except Exception as error:
            return f"the facilitator at {facilitator_url} cannot be reached: {error}"
        if not any(k.network == network and k.scheme == "exact" for k in supported.kinds):
            return f"the facilitator at {facilitator_url} does not settle `exact` payments on {network}"
        served[network] = True
        return None

    def offer(terms: JobTerms, tag: dict[str, Any]) -> PaymentRequirements:
        return PaymentRequirements(
            scheme="exact",
            network=terms.network,
            asset=terms.asset,
            amount=str(terms.amount),
            pay_to=terms.pay_to,
            max_timeout_seconds=PAYMENT_TIMEOUT,
            extra={
                "name": chain.token_name,
                "version": chain.token_version,
                TAG_EXTRA: tag,
                JOB_EXTRA: {
                    "manifestHash": "0x" + terms.manifest_hash.hex(),
                    "requirements": _requirements_json(terms.requirements),
                },
            },
        )

    def payment_required(request: Request, accepts: PaymentRequirements, error: str, message: str) -> JSONResponse:
        required = PaymentRequired(
            x402_version=2,
            error=error,
            resource=ResourceInfo(url=str(request.url), description="a computenet job", mime_type="application/json"),
            accepts=[accepts],
        )
        body = {"error": error, "message": message, "accepts": [accepts.model_dump(by_alias=True, exclude_none=True)]}
        return JSONResponse(
            body, status_code=402, headers={"PAYMENT-REQUIRED": encode_payment_required_header(required)}
        )

    @api.post("/jobs")
    async def post_job(request: Request) -> Response:
        try:
            body = JobBody.model_validate_json(await request.body())
            manifest = parse_manifest(json.dumps(body.manifest))
        except ValidationError as error:
            return _error(422, "invalid_request", _describe(error))
        except ManifestError as error:
            return _error(422, "invalid_manifest", str(error))
        req = Requirements(**body.requirements.model_dump())
        digest = manifest_hash(manifest)
        problem = await run_in_threadpool(chain.problem, digest, req)
        if problem:
            return _error(422, "invalid_requirements", problem)
        problem = await run_in_threadpool(never_taken, req)
        if problem:  # refused before any payment is asked for: it would only sit open
            return _error(422, "no_eligible_asset", f"no eligible asset: {problem}")
        problem = await facilitator_problem()
        if problem:
            return _error(503, "facilitator_unavailable", problem)
        quote = await run_in_threadpool(chain.quote, req)
        terms = JobTerms(network, chain.token, chain.market.address, quote, digest, req)
        accepts = offer(terms, sign_tag(key, terms, int(time.time()) + OFFER_VALIDITY))

        header = request.headers.get("PAYMENT-SIGNATURE")
        if not header:
            return payment_required(
                request,
                accepts,
                "payment_required",
                f"this job costs {accepts.amount} base units of {chain.token_name} at most",
            )
        try:
            payload = decode_payment_signature_header(header)
        except Exception as error:
            return payment_required(
                request, accepts, "invalid_payload", f"PAYMENT-SIGNATURE is not an x402 payment: {error}"
            )
        mismatch = _mismatch(getattr(payload, "accepted", None), accepts)
        if mismatch:
            return payment_required(request, accepts, *mismatch)
        tag = (payload.accepted.extra or {}).get(TAG_EXTRA)
        problem = tag_problem(tag, terms, me, time.time())
        if problem:
            return payment_required(request, accepts, INVALID_JOB, problem)
        try:
            auth = TransferAuthorization.from_x402(payload.payload["authorization"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            return payment_required(
                request, accepts, "invalid_payload", f"the payment has no EIP-3009 authorization: {error}"
            )
        problem = bindings.bind(auth, terms, time.time())
        if problem:
            return payment_required(request, accepts, INVALID_JOB, problem)
        paid = offer(terms, sign_tag(key, terms, int(tag["expires"]), auth.payer, auth.nonce))

        try:
            verified = await facilitator.verify(payload, paid)
        except (httpx.HTTPError, ValueError) as error:
            return _error(503, "facilitator_unavailable", f"the facilitator could not verify the payment: {error}")
        if not verified.is_valid:
            log.info("payment refused", extra={"fields": {"reason": verified.invalid_reason, "payer": verified.payer}})
            return payment_required(
                request,
                accepts,
                verified.invalid_reason or "invalid_payment",
                verified.invalid_message or "the facilitator refused the payment",
            )
        if store is not None:
            await run_in_threadpool(store.put, canonical_json(manifest))
        try:
            settled = await facilitator.settle(payload, paid)
        except (httpx.HTTPError, ValueError) as error:
            # The job may have been posted: GET /jobs lists it, and a retry of this payment
            # is refused with the job it funded.
            return _error(503, "facilitator_unavailable", f"the facilitator did not confirm the settlement: {error}")
        if not settled.success:
            log.warning("settlement failed", extra={"fields": {"reason": settled.error_reason, "payer": settled.payer}})
            return payment_required(
                request,
                accepts,
                settled.error_reason or "settlement_failed",
                settled.error_message or "the facilitator could not settle the payment",
            )
        job = await run_in_threadpool(chain.funded_by, settled.payer, auth.nonce)
        log.info("job posted", extra={"fields": {"job": job, "payer": settled.payer, "tx": settled.transaction}})
        return JSONResponse(
            {
                "job": job,
                "payer": settled.payer,
                "budget": int(accepts.amount),
                "transaction": settled.transaction,
                "status": f"/jobs/{job}",
            },
            status_code=201,
            headers={"PAYMENT-RESPONSE": encode_payment_response_header(settled)},
        )

    def never_taken(req: Requirements) -> str | None:
        return problem_for_new_job(req, chain.all_assets(), chain.parameters(), chain.now() + PREFLIGHT_MARGIN)

    def with_waiting(job: Job, shards: list[Shard]) -> dict:
        """GET /jobs' answer with, per shard, why each replica that is not running waits."""
        assets, params, now, paused = chain.all_assets(), chain.parameters(), chain.now(), chain.paused()
        view = with_hosts(_job_json(job, shards, chain.zk_facts(job), chain.attested_results(job)), assets)
        declines = chain.declines(job.id) if any(s.state.name != "FINALIZED" for s in shards) else {}
        attested = chain.reader.attested_for(job, assets)
        for entry, shard in zip(view["shards"], shards):
            why = shard_waiting(
                job,
                shard.replicas,
                assets,
                declines.get(shard.index, []),
                params,
                now,
                paused=paused,
                attested=attested,
            )
            entry["waiting"] = {str(r): w.as_json() for r, w in sorted(why.items())}
            entry["declines"] = len(declines.get(shard.index, []))
        return view

    @api.get("/jobs")
    def list_jobs(client: str | None = None) -> JSONResponse:
        if client is None:
            return _error(422, "invalid_request", "client: required, as in GET /jobs?client=0x…")
        if not ADDRESS.fullmatch(client):
            return _error(422, "invalid_address", f"client: {client!r} is not an address (0x and 40 hex digits)")
        return JSONResponse(chain.jobs_of(client))

    @api.get("/jobs/{job_id}")
    def get_job(job_id: int) -> JSONResponse:
        found = chain.job_and_shards(job_id)
        if found is None:
            return _error(404, "unknown_job", f"no job {job_id} on this market")
        return JSONResponse(with_waiting(*found))

    @api.get("/jobs/{job_id}/shards/{shard}/cancel-message")
    def cancel_message(job_id: int, shard: int, valid_before: int | None = None) -> JSONResponse:
        """The EIP-712 message the job's client signs (eth_signTypedData_v4) to cancel the shard."""
        job = chain.job(job_id)
        if job is None:
            return _error(404, "unknown_job", f"no job {job_id} on this market")
        if not 0 <= shard < len(job["shards"]):
            return _error(404, "unknown_shard", f"job {job_id} has no shard {shard}")
        valid_before = valid_before or chain.now() + CANCEL_MESSAGE_VALIDITY
        typed = cancel_typed_data(chain.chain_id, chain.market.address, job_id, shard, valid_before)
        return JSONResponse(json.loads(json.dumps(typed, default=_hex)))

    @api.post("/jobs/{job_id}/shards/{shard}/cancel")
    def cancel(job_id: int, shard: int, body: CancelBody) -> JSONResponse:
        """Cancels the shard's replicas that have not started, on its client's signature."""
        job = chain.job(job_id)
        if job is None:
            return _error(404, "unknown_job", f"no job {job_id} on this market")
        if not 0 <= shard < len(job["shards"]):
            return _error(404, "unknown_shard", f"job {job_id} has no shard {shard}")
        signature = bytes.fromhex(body.signature[2:])
        try:
            signer = cancel_signer(chain.chain_id, chain.market.address, job_id, shard, body.valid_before, signature)
        except InvalidSignature as error:
            return _error(403, "invalid_signature", f"the cancel signature is not valid: {error}")
        if signer.lower() != job["client"].lower():
            return _error(
                403, "not_the_client", f"the cancel is signed by {signer}, not by the job's client {job['client']}"
            )
        if body.valid_before <= chain.now():
            return _error(403, "signature_expired", f"the cancel signature expired at {body.valid_before}")
        try:
            receipt = chain.cancel_with_signature(relay_sender, job_id, shard, body.valid_before, signature)
        except ContractRevert as error:
            return _error(409, "nothing_to_cancel", getattr(error, "reason", None) or str(error))
        tx = "0x" + bytes(receipt["transactionHash"]).hex()
        log.info("cancel relayed", extra={"fields": {"job": job_id, "shard": shard, "tx": tx}})
        return JSONResponse({"job": job_id, "shard": shard, "transaction": tx, "status": f"/jobs/{job_id}"})

    @api.get("/jobs/{job_id}/outputs/{shard}/{replica}")
    async def outputs_index(job_id: int, shard: int, replica: int, request: Request) -> Response:
        return await relay(job_id, shard, replica, f"/outputs/{job_id}/{shard}/{replica}", request)

    @api.get("/jobs/{job_id}/outputs/{shard}/{replica}/file")
    async def outputs_file(job_id: int, shard: int, replica: int, path: str, request: Request) -> Response:
        target = f"/outputs/{job_id}/{shard}/{replica}/file?{request.url.query}"
        return await relay(job_id, shard, replica, target, request)

    async def relay(job_id: int, shard: int, replica: int, target: str, request: Request) -> Response:
        job = await run_in_threadpool(chain.job, job_id)
        if job is None:
            return _error(404, "unknown_job", f"no job {job_id} on this market")
        try:
            asset = job["shards"][shard]["replicas"][replica]["asset"]
        except IndexError:
            return _error(404, "unknown_replica", f"job {job_id} has no shard {shard} replica {replica}")
        if not asset:
            return _error(404, "not_assigned", f"shard {shard} replica {replica} was never assigned")
        agent = await run_in_threadpool(chain.agent_of, asset)
        base = agents.get(agent.lower())
        if base is None:
            base = (await run_in_threadpool(chain.endpoint, asset)).rstrip("/")
        if not base.startswith(("http://", "https://")):
            where = f"its on-chain endpoint is {base!r}" if base else "it names no endpoint on chain"
            return _error(502, "unknown_agent", f"no outputs server known for agent {agent} of asset {asset}: {where}")
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-computenet-")}
        try:
            async with httpx.AsyncClient(timeout=60) as http:
                answer = await http.get(base + target, headers=headers)
        except httpx.HTTPError as error:
            return _error(502, "agent_unreachable", f"the outputs server of asset {asset} at {base} failed: {error}")
        kept = {
            k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "x-merkle-proof", "x-merkle-root")
        }
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    @api.get("/health")
    def health() -> dict:
        return {"status": "ok", "time": int(time.time())}

    return api


# The spec's reason for a payment that accepted another value of each field.
_MISMATCH_REASONS = {"scheme": "unsupported_scheme", "network": "invalid_network"}


def _mismatch(accepted: Any, offer: Any) -> tuple[str, str] | None:
    """(reason, message) when the requirements a payment accepted are not this job's offer."""
    if accepted is None:
        return "invalid_payload", "the payment does not say which offer it accepts"
    for field in ("scheme", "network", "asset", "amount", "pay_to"):
        mine, theirs = getattr(offer, field), getattr(accepted, field, None)
        if str(mine).lower() != str(theirs).lower():
            reason = _MISMATCH_REASONS.get(field, "invalid_payment_requirements")
            return reason, f"the payment accepts {field} {theirs}, but this job's offer is {mine}"
    if (accepted.extra or {}).get(JOB_EXTRA) != offer.extra[JOB_EXTRA]:
        return "invalid_payment_requirements", "the payment was made for another job"
    return None


def _hex(value: Any) -> str:
    """JSON for the bytes in a typed message."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in error.errors())


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)
