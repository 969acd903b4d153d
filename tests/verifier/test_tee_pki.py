"""The test PKI (tests/tee_pki.py) that stands in for Intel's: the real TDX sample, re-signed to
bind our report data, verifies under the test root with the report data, MRTD and collateral
window chosen, and under Intel's root not at all."""

import time

import dcap_qvl
import pytest
from tee_pki import resigned_tdx_quote, test_root_ca_der

from computenet.tee import result_report_data
from verifier.attestation import TDX, AttestationError, check_bound, verify_quote

SAMPLE_FROM, SAMPLE_UNTIL = 1750329147, 1752920163  # the sample collateral's own window
SAMPLE_MRTD = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
IN_2026 = 1796000000, 1798600000  # 2026-11-29 .. 2026-12-29
OURS = result_report_data(31337, "0x" + "11" * 20, 7, 0, 1, b"\x22" * 32, 300)


def test_a_resigned_quote_binds_our_report_data_and_mrtd_under_the_test_root():
    mr_td = bytes(range(48))
    resigned = resigned_tdx_quote(OURS, mr_td=mr_td)
    assert resigned.root_ca_der == test_root_ca_der()
    verdict = verify_quote(
        resigned.quote, resigned.collateral_json, SAMPLE_FROM + 3_600, root_ca_der=resigned.root_ca_der
    )
    assert (verdict.kind, verdict.tcb_status, verdict.advisories) == (TDX, "UpToDate", ())
    assert (verdict.report_data, verdict.measurement) == (OURS, mr_td)
    assert (verdict.valid_from, verdict.valid_until) == (SAMPLE_FROM, SAMPLE_UNTIL)
    check_bound(verdict, OURS)


def test_without_another_mrtd_the_samples_is_kept_and_the_same_arguments_give_the_same_bytes():
    resigned = resigned_tdx_quote(OURS)
    verdict = verify_quote(resigned.quote, resigned.collateral_json, SAMPLE_UNTIL, root_ca_der=resigned.root_ca_der)
    assert verdict.measurement.hex() == SAMPLE_MRTD and verdict.report_data == OURS
    started = time.perf_counter()
    assert resigned_tdx_quote(OURS) == resigned  # fixed keys, deterministic signatures
    assert time.perf_counter() - started < 0.5


def test_a_resigned_quote_does_not_verify_against_intels_root():
    resigned = resigned_tdx_quote(OURS)
    with pytest.raises(AttestationError) as refused:
        verify_quote(resigned.quote, resigned.collateral_json, SAMPLE_FROM + 3_600)
    assert refused.value.reason == "unknown root"


def test_a_tampered_byte_of_a_resigned_quote_is_refused():
    """The re-signed quote's signatures are checked, not waved through: its report data changed
    after signing no longer verifies."""
    resigned = resigned_tdx_quote(OURS)
    tampered = bytearray(resigned.quote)
    tampered[48 + 520] ^= 1  # the first byte of the report data
    with pytest.raises(AttestationError) as refused:
        verify_quote(bytes(tampered), resigned.collateral_json, SAMPLE_FROM + 3_600, root_ca_der=resigned.root_ca_der)
    assert refused.value.reason == "evidence signature invalid"


def test_a_window_in_2026_holds_inside_it_and_is_reported_outside_it():
    start, end = IN_2026
    resigned = resigned_tdx_quote(OURS, valid_from=start, valid_until=end)
    for at in (start, start + 86_400, end):  # dcap-qvl's own checks (CRLs included) hold to the end
        verdict = verify_quote(resigned.quote, resigned.collateral_json, at, root_ca_der=resigned.root_ca_der)
        assert (verdict.valid_from, verdict.valid_until, verdict.report_data) == (start, end, OURS)
    collateral = dcap_qvl.QuoteCollateralV3.from_json(resigned.collateral_json)
    dcap_qvl.verify_with_root_ca(resigned.quote, collateral, resigned.root_ca_der, end)
    for at, reason in ((end + 1, "collateral expired"), (start - 1, "collateral not yet valid")):
        with pytest.raises(AttestationError) as refused:
            verify_quote(resigned.quote, resigned.collateral_json, at, root_ca_der=resigned.root_ca_der)
        assert refused.value.reason == reason
    with pytest.raises(ValueError, match="(?i)expired"):  # and dcap-qvl on its own: its CRLs lapse too
        dcap_qvl.verify_with_root_ca(resigned.quote, collateral, resigned.root_ca_der, end + 1)
