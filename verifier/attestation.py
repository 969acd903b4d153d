"""TEE attestation evidence, checked: what an attestor decides before it records a verdict.

Intel TDX and SGX quotes are verified by dcap-qvl (MIT): the quote's signature chain up to
Intel's SGX root CA (built into dcap-qvl, or a pinned one), the PCK certificate against the
CRLs, and the platform's TCB level against Intel's TCB info and QE identity. That collateral
comes from Intel's PCS over the network, so it is pinned with the evidence: it is checked at
the verification time `at`, and a collateral outside its validity window is reported expired,
never accepted. A verdict names the evidence (its keccak256), the TEE kind, the measurement
(TDX: MRTD; SGX: MRENCLAVE), the TCB status with its advisories, the report data the TEE
bound into the quote, and the window in which the verdict holds (the collateral's).

A result's evidence binds the job, shard and output root through its report data
(`computenet.tee.result_report_data`); `check_bound` refuses evidence that binds anything
else. Pure but for dcap-qvl's verification: no chain, no network. AMD SEV-SNP and NVIDIA GPU reports are not
checked yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import dcap_qvl
from eth_utils import keccak

from computenet.errors import ComputenetError

TDX, SGX = "tdx", "sgx"


class AttestationError(ComputenetError):
    """Evidence that is not accepted; `reason` is short and stable, the message says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Verdict:
    """What an attestor records about one piece of evidence it accepted."""

    kind: str  # TDX or SGX
    evidence_hash: bytes  # keccak256 of the quote
    measurement: bytes  # TDX: MRTD (48 bytes); SGX: MRENCLAVE (32 bytes)
    tcb_status: str  # Intel's: UpToDate, SWHardeningNeeded, ConfigurationNeeded, OutOfDate, ...
    advisories: tuple[str, ...]  # Intel security advisories that apply to this TCB level
    report_data: bytes  # the 64 bytes the TEE bound into the quote
    valid_from: int  # unix time: the verdict holds while its collateral does
    valid_until: int


def _unix(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def collateral_window(collateral_json: str) -> tuple[int, int]:
    """(latest issue date, last second still current) of the collateral's TCB info, QE
    identity and both CRLs: the only times at which all of it is current. A CRL is stale from
    its next update on, the signed JSON only after it."""
    from cryptography import x509

    try:
        body = json.loads(collateral_json)
        signed = [json.loads(body["tcb_info"]), json.loads(body["qe_identity"])]
        crls = [x509.load_der_x509_crl(bytes.fromhex(body[k])) for k in ("root_ca_crl", "pck_crl")]
        starts = [_unix(s["issueDate"]) for s in signed] + [int(c.last_update_utc.timestamp()) for c in crls]
        ends = [_unix(s["nextUpdate"]) for s in signed] + [int(c.next_update_utc.timestamp()) - 1 for c in crls]
        return max(starts), min(ends)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise AttestationError("collateral malformed", repr(error)) from None


def verify_quote(quote: bytes, collateral_json: str, at: int, root_ca_der: bytes | None = None) -> Verdict:
    """The verdict on a TDX or SGX quote with its pinned collateral at unix time `at`, or
    AttestationError: "collateral not yet valid", "collateral expired", "evidence signature
    invalid", "unknown root" or "evidence rejected" (dcap-qvl's own words follow each)."""
    valid_from, valid_until = collateral_window(collateral_json)
    if at < valid_from:
        raise AttestationError(
            "collateral not yet valid", f"its TCB info and QE identity are current from {valid_from}"
        )
    if at > valid_until:
        raise AttestationError("collateral expired", f"its TCB info and QE identity were current until {valid_until}")
    collateral = dcap_qvl.QuoteCollateralV3.from_json(collateral_json)
    try:
        if root_ca_der is None:
            verified = dcap_qvl.verify(bytes(quote), collateral, at)
        else:
            verified = dcap_qvl.verify_with_root_ca(bytes(quote), collateral, bytes(root_ca_der), at)
    except (ValueError, RuntimeError) as error:
        raise AttestationError(_reason(str(error)), str(error).splitlines()[0]) from None
    report = json.loads(verified.to_json())
    [(kind, body)] = report["report"].items()
    measurement = body["mr_enclave"] if kind == "SgxEnclave" else body["mr_td"]
    return Verdict(
        kind=SGX if kind == "SgxEnclave" else TDX,
        evidence_hash=keccak(bytes(quote)),
        measurement=bytes.fromhex(measurement),
        tcb_status=report["status"],
        advisories=tuple(report.get("advisory_ids") or ()),
        report_data=bytes.fromhex(body["report_data"]),
        valid_from=valid_from,
        valid_until=valid_until,
    )


def _reason(message: str) -> str:
    text = message.lower()
    if "signature" in text and ("root" in text or "crl" in text):
        return "unknown root"
    if "signature" in text:
        return "evidence signature invalid"
    return "evidence rejected"


def check_bound(verdict: Verdict, expected: bytes, what: str = "result") -> None:
    """Refuses evidence whose report data binds anything but `expected`: for a result, another
    job, shard, replica, output root, market or chain; for a node, another asset, agent key,
    registry or chain. The reason is "report data binds another <what>"."""
    if verdict.report_data != expected:
        raise AttestationError(
            f"report data binds another {what}",
            f"the evidence carries 0x{verdict.report_data.hex()}, this {what} needs 0x{expected.hex()}",
        )


_FETCH = """
import asyncio, sys, dcap_qvl
async def fetch():
    return await dcap_qvl.get_collateral(sys.argv[1], sys.stdin.buffer.read())
sys.stdout.write(asyncio.run(fetch()).to_json())
sys.stdout.flush()
"""


def fetch_collateral(pccs_url: str, quote: bytes, timeout: float = 60) -> str:
    """A quote's collateral (dcap-qvl's JSON) from a PCCS or Intel's PCS, fetched in a child
    process: dcap-qvl's fetcher can bring its process down as it exits. AttestationError
    "collateral unavailable" names what went wrong."""
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-c", _FETCH, pccs_url], input=bytes(quote), capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise AttestationError("collateral unavailable", f"{pccs_url} did not answer in {timeout:.0f} s") from None
    text = done.stdout.decode(errors="replace")
    if not text.startswith("{"):
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise AttestationError("collateral unavailable", lines[-1] if lines else f"exit code {done.returncode}")
    return text
