"""The audit view's routes: where every token went, for anyone, no wallet needed.

    GET /audit                the ledger of every job (computenet/audit.py): {"block", "jobs":
                              [{job, client, finished, lines, totals, reconciled, problems}],
                              "lines" (of no job), "totals", "balances": {"market", "owed",
                              "escrow", "bonds", "surplus", "settlement_owed", "stakes",
                              "assets"}, "credits", "reconciled", "problems"}
    GET /audit/jobs/{id}      one job's lines and totals, checked against its escrow on chain
    GET /providers/{address}  that owner's assets with their leases, earnings, slashes and stake

Every read is rebuilt from the chain's events at request time (Market.audit); amounts are
token base units as JSON integers, transactions 0x-hex. An unknown job answers 404, a job id
that is not a number or a malformed address 422, each {"error", "message"}.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from computenet.market import Market

ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def audit_routes(api: FastAPI, reader: Market) -> None:
    """Adds the audit routes to `api`, reading the market `reader` is bound to."""

    @api.get("/audit")
    def audit() -> JSONResponse:
        ledger, chain = reader.audit()
        return JSONResponse(ledger.as_json(chain))

    @api.get("/audit/jobs/{job_id}")
    def audit_job(job_id: str) -> JSONResponse:
        if not job_id.isdecimal():
            return _error(422, "invalid_job", f"{job_id!r} is not a job id (a whole number)")
        ledger, chain = reader.audit()
        job = ledger.jobs.get(int(job_id))
        if job is None:
            return _error(404, "unknown_job", f"no job {job_id} on this market")
        return JSONResponse(job.as_json(chain.escrows.get(int(job_id))) | {"block": chain.block})

    @api.get("/providers/{address}")
    def provider(address: str) -> JSONResponse:
        if not ADDRESS.match(address):
            return _error(422, "invalid_address", f"{address!r} is not an address (0x and 40 hex digits)")
        return JSONResponse(reader.provider_history(address).as_json())


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)
