"""TEE evidence with real Intel-signed samples (tests/verifier/evidence/), verified by dcap-qvl at a
pinned time inside their collateral's window: accepted with its verdict, or refused with its
reason for a tampered byte, an expired collateral, an unknown root, or report data that binds
another result."""

import base64
import json
import re
from pathlib import Path

import pytest
from eth_utils import keccak

from computenet.tee import result_report_data
from verifier.attestation import (
    SGX,
    TDX,
    AttestationError,
    check_bound,
    collateral_window,
    verify_quote,
)

EVIDENCE = Path(__file__).parent / "evidence"
TDX_FROM, TDX_UNTIL = 1750329147, 1752919234  # 2025-06-19T10:32:27Z .. the PCK CRL's next update (10:00:35Z) less 1 s
TDX_MRTD = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"


def sample(name: str) -> tuple[bytes, str]:
    return (EVIDENCE / name).read_bytes(), (EVIDENCE / f"{name}_collateral.json").read_text()


def test_a_tdx_quote_is_accepted_with_its_verdict():
    quote, collateral = sample("tdx_quote")
    assert collateral_window(collateral) == (TDX_FROM, TDX_UNTIL)
    verdict = verify_quote(quote, collateral, TDX_FROM + 3_600)
    assert (verdict.kind, verdict.tcb_status, verdict.advisories) == (TDX, "UpToDate", ())
    assert verdict.measurement.hex() == TDX_MRTD and verdict.evidence_hash == keccak(quote)
    assert len(verdict.report_data) == 64 and (verdict.valid_from, verdict.valid_until) == (TDX_FROM, TDX_UNTIL)


def test_an_sgx_quote_is_accepted_with_its_tcb_status_and_advisories():
    quote, collateral = sample("sgx_quote")
    start, _ = collateral_window(collateral)
    verdict = verify_quote(quote, collateral, start + 3_600)
    assert verdict.kind == SGX and len(verdict.measurement) == 32
    assert verdict.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert verdict.advisories == ("INTEL-SA-00289", "INTEL-SA-00615")


@pytest.mark.parametrize("offset", [48, 600, 1000])  # the header, the TD report (its report data), the signature
def test_a_tampered_byte_is_refused(offset):
    quote, collateral = sample("tdx_quote")
    tampered = bytearray(quote)
    tampered[offset] ^= 1
    with pytest.raises(AttestationError) as refused:
        verify_quote(bytes(tampered), collateral, TDX_FROM + 3_600)
    assert refused.value.reason in ("evidence signature invalid", "evidence rejected")


@pytest.mark.parametrize(
    "at, reason", [(TDX_UNTIL + 1, "collateral expired"), (TDX_FROM - 1, "collateral not yet valid")]
)
def test_collateral_outside_its_window_is_reported_as_such_not_accepted(at, reason):
    quote, collateral = sample("tdx_quote")
    with pytest.raises(AttestationError) as refused:
        verify_quote(quote, collateral, at)
    assert refused.value.reason == reason


def test_evidence_from_an_unknown_root_is_refused():
    """Pinned to another root (here the TCB signing certificate, which Intel's root signed),
    the same genuine quote does not verify; pinned to Intel's root, it does."""
    quote, collateral = sample("tdx_quote")
    chain = json.loads(collateral)["tcb_info_issuer_chain"]
    signer, intel_root = (
        base64.b64decode("".join(pem.split()))
        for pem in re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", chain, re.S)
    )
    assert verify_quote(quote, collateral, TDX_FROM + 3_600, root_ca_der=intel_root).tcb_status == "UpToDate"
    with pytest.raises(AttestationError) as refused:
        verify_quote(quote, collateral, TDX_FROM + 3_600, root_ca_der=signer)
    assert refused.value.reason == "unknown root"


def test_report_data_binding_another_result_is_refused():
    quote, collateral = sample("tdx_quote")
    verdict = verify_quote(quote, collateral, TDX_FROM + 3_600)
    ours = result_report_data(31337, "0x" + "11" * 20, 7, 0, 0, b"\x22" * 32, 300)
    assert len(ours) == 64 and ours[32:] == bytes(32)
    assert result_report_data(31337, "0x" + "11" * 20, 8, 0, 0, b"\x22" * 32, 300) != ours  # another job
    assert result_report_data(31337, "0x" + "11" * 20, 7, 0, 0, b"\x22" * 32, 301) != ours  # another claim
    with pytest.raises(AttestationError) as refused:
        check_bound(verdict, ours)
    assert refused.value.reason == "report data binds another result"
    check_bound(verdict, verdict.report_data)  # what the quote does bind passes
