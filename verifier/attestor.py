"""The attestation service: checks TEE evidence that agents send, and records its verdicts in
the AttestationRegistry with its own key.

- A node's evidence (POST /nodes/{asset}) must bind the asset and its agent key; the verdict
  makes the asset eligible for `tee` jobs until its window ends.
- A result's evidence (POST /results/{job}/{shard}/{replica}) must bind that submitted
  result's output root and come from the TEE the asset was attested with; the verdict ends
  the result's challenge window after the registry's short window.

`check` is the decision, pure but for the vendor verification: the evidence verifies against
the pinned root at the chain's time (collateral outside its window is reported expired),
binds exactly what it must, and meets the attestor's policy (the TCB levels it accepts and,
if it lists any, the measurements). Evidence the chain already holds costs no transaction;
a refusal sends nothing. The registry checks the binding and TCB floor again on chain.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from computenet.domain import TCB_LEVELS, TeeKind, Verification
from computenet.errors import ContractRevert
from computenet.tee import Evidence, pad
from verifier.attestation import SGX, TDX, AttestationError, Verdict, check_bound, fetch_collateral, verify_quote

log = logging.getLogger("verifier.attestor")

MAX_VERDICT_SECONDS = 31 * 86_400 - 60  # the registry's cap, less a margin for the block's clock
REFUSED = 422


@dataclass(frozen=True)
class Policy:
    """What this attestor accepts beyond a valid signature chain."""

    accepted_tcb: tuple[str, ...] = ("UpToDate", "SWHardeningNeeded")
    measurements: frozenset[bytes] = frozenset()  # empty: any (it is recorded for clients to judge)
    intel_root_der: bytes | None = None  # None: Intel's SGX root CA as dcap-qvl pins it
    amd_root_der: bytes | None = None  # None: AMD's Milan and Genoa ARKs as verifier.snp pins them
    pccs_url: str = ""  # where an Intel quote sent without its collateral gets it ("": it must come with it)


def verify(evidence: Evidence, at: int, policy: Policy) -> Verdict:
    """The vendor's verdict on `evidence` at unix time `at` (AttestationError if refused)."""
    if evidence.kind in (TDX, SGX):
        collateral = evidence.collateral
        if not collateral and policy.pccs_url:
            collateral = fetch_collateral(policy.pccs_url, evidence.quote)
        if not collateral:
            raise AttestationError("collateral missing", "send the quote's PCS collateral with it")
        verdict = verify_quote(evidence.quote, collateral, at, root_ca_der=policy.intel_root_der)
        if verdict.kind != evidence.kind:
            raise AttestationError("evidence rejected", f"declared {evidence.kind}, the quote is {verdict.kind}")
        return verdict
    from verifier.snp import verify_snp_report

    try:  # an AMD report's collateral: its VCEK (DER, hex) and the ASK and ARK (PEM)
        certificates = json.loads(evidence.collateral)
        vcek, chain = bytes.fromhex(certificates["vcek"].removeprefix("0x")), certificates["chain"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise AttestationError("collateral missing", 'send {"vcek": hex DER, "chain": ASK and ARK PEM}') from None
    return verify_snp_report(evidence.quote, vcek, chain, at, ark_der=policy.amd_root_der)


def check(evidence: Evidence, binding: bytes, at: int, policy: Policy, what: str = "result") -> Verdict:
    """The verdict this attestor records for `evidence`, which must bind the 32-byte `binding`
    (of a node or a result: `what`), or AttestationError with its reason."""
    verdict = verify(evidence, at, policy)
    check_bound(verdict, pad(binding), what)
    if verdict.tcb_status not in policy.accepted_tcb:
        advisories = f" ({', '.join(verdict.advisories)})" if verdict.advisories else ""
        raise AttestationError(
            "tcb level not accepted",
            f"the platform is {verdict.tcb_status}{advisories}; this attestor accepts {', '.join(policy.accepted_tcb)}",
        )
    if policy.measurements and verdict.measurement not in policy.measurements:
        raise AttestationError(
            "measurement not accepted", f"0x{verdict.measurement.hex()} is not on this attestor's list"
        )
    return verdict


def tcb_code(status: str) -> int:
    """The registry's code for a vendor TCB status; unknown ones count as out of date."""
    return TCB_LEVELS.index(status) if status in TCB_LEVELS else TCB_LEVELS.index("OutOfDate")


class Attestor:
    """The service's chain side: reads what evidence must bind, sends verdicts (`sender`: a
    computenet.web3calls.Sender with the attestor's key)."""

    def __init__(self, market: Any, sender: Any, policy: Policy = Policy()) -> None:
        self.market, self.sender, self.policy = market, sender, policy
        self.registry = market.calls.attestations.functions

    def now(self) -> int:
        return int(self.market.web3.eth.get_block("latest")["timestamp"])

    def attest_node(self, asset: int, evidence: Evidence) -> dict:
        agent = self.market.agent_of(asset)
        if int(agent, 16) == 0:
            raise AttestationError("asset has no agent", f"asset {asset} does not exist or names no agent key")
        now = self.now()
        verdict = check(evidence, self.market.node_report_data(asset, agent), now, self.policy, "node")
        current = self.market.tee_verdict(asset)
        if current.evidence_hash == verdict.evidence_hash and asset in self.market.attested([asset]):
            return self._answer(verdict, current.valid_until, tx=None, note="already recorded")
        until = min(verdict.valid_until, now + MAX_VERDICT_SECONDS)
        receipt = self.sender.send(
            self.registry.attest_node(
                asset,
                verdict.evidence_hash,
                int(TeeKind.named(verdict.kind)),
                verdict.measurement,
                tcb_code(verdict.tcb_status),
                verdict.valid_from,
                until,
                verdict.report_data[:32],
            )
        )
        log.info("node attested", extra={"fields": {"asset": asset, "kind": verdict.kind, "until": until}})
        return self._answer(verdict, until, tx=receipt["transactionHash"].to_0x_hex())

    def attest_result(self, job: int, shard: int, replica: int, evidence: Evidence) -> dict:
        found = self.market.job(job)
        if found is None or found.requirements.verification != Verification.TEE:
            raise AttestationError("not a tee job", f"job {job} does not exist or is not verified by TEE")
        verdict = check(evidence, self.market.result_report_data(job, shard, replica), self.now(), self.policy)
        receipt = self.sender.send(
            self.registry.attest_result(
                job,
                shard,
                replica,
                verdict.evidence_hash,
                verdict.measurement,
                tcb_code(verdict.tcb_status),
                verdict.report_data[:32],
            )
        )
        end = self.market.replica(job, shard, replica).deadline
        log.info("result attested", extra={"fields": {"job": job, "shard": shard, "replica": replica, "until": end}})
        return self._answer(verdict, end, tx=receipt["transactionHash"].to_0x_hex(), key="challenge_end")

    @staticmethod
    def _answer(verdict: Verdict, until: int, *, tx: str | None, note: str = "", key: str = "valid_until") -> dict:
        return {
            "kind": verdict.kind,
            "evidence_hash": "0x" + verdict.evidence_hash.hex(),
            "measurement": "0x" + verdict.measurement.hex(),
            "tcb_status": verdict.tcb_status,
            "advisories": list(verdict.advisories),
            key: until,
            "tx": tx,
            **({"note": note} if note else {}),
        }


def app(attestor: Attestor) -> Any:
    """The service's HTTP face (FastAPI). A refusal is 422 with its stable `reason` and the
    detail; nothing is sent for it."""
    from fastapi import Body, FastAPI
    from fastapi.responses import JSONResponse

    api = FastAPI(title="computenet attestor")

    def answer(action: Any) -> Any:
        try:
            return action()
        except ValueError as error:  # malformed evidence
            return JSONResponse({"reason": "evidence malformed", "detail": str(error)}, status_code=REFUSED)
        except AttestationError as error:
            return JSONResponse({"reason": error.reason, "detail": str(error)}, status_code=REFUSED)
        except ContractRevert as error:
            return JSONResponse({"reason": "refused on chain", "detail": str(error)}, status_code=REFUSED)

    @api.get("/health")
    def health() -> dict:
        return {"attestor": attestor.sender.address, "registry": attestor.market.addresses["attestations"]}

    @api.post("/nodes/{asset}")
    def node(asset: int, body: dict = Body(...)) -> Any:
        return answer(lambda: attestor.attest_node(asset, Evidence.from_json(body)))

    @api.post("/results/{job}/{shard}/{replica}")
    def result(job: int, shard: int, replica: int, body: dict = Body(...)) -> Any:
        return answer(lambda: attestor.attest_result(job, shard, replica, Evidence.from_json(body)))

    return api
