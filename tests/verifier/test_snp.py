"""SEV-SNP evidence with real AMD-signed samples (tests/verifier/evidence/): a Milan report with its
VCEK and AMD's ASK and ARK, verified at a pinned time inside the certificates' windows: accepted
with its verdict, or refused with its reason for a tampered byte, expired collateral, an unknown
root, another chip's VCEK, or a guest policy that allows debugging."""

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from eth_utils import keccak

from verifier.attestation import AttestationError
from verifier.snp import AMD_ARK_SHA256, SEV_SNP, verify_snp_report

EVIDENCE = Path(__file__).parent / "evidence"
VCEK_FROM, VCEK_UNTIL = 1680549823, 1901474623  # 2023-04-03T19:23:43Z .. 2030-04-03T19:23:43Z
AT = 1750000000  # 2025-06-15
MEASUREMENT = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
REPORT_DATA = (
    "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c64581"
    "0b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd"
)


def sample() -> tuple[bytes, bytes, str]:
    return (
        (EVIDENCE / "snp_report.bin").read_bytes(),
        (EVIDENCE / "snp_vcek.der").read_bytes(),
        (EVIDENCE / "snp_cert_chain.pem").read_text(),
    )


def chain_ders(chain_pem: str) -> tuple[bytes, bytes]:
    """(ASK, ARK) as DER, in the order AMD's KDS serves them."""
    ask, ark = x509.load_pem_x509_certificates(chain_pem.encode())
    return ask.public_bytes(serialization.Encoding.DER), ark.public_bytes(serialization.Encoding.DER)


def sha256_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()


def refusal(*args, **kwargs) -> AttestationError:
    with pytest.raises(AttestationError) as refused:
        verify_snp_report(*args, **kwargs)
    return refused.value


def test_a_milan_report_is_accepted_with_its_verdict():
    report, vcek, chain = sample()
    verdict = verify_snp_report(report, vcek, chain, AT)
    assert (verdict.kind, verdict.tcb_status, verdict.advisories) == (SEV_SNP, "UpToDate", ())
    assert verdict.measurement.hex() == MEASUREMENT and verdict.report_data.hex() == REPORT_DATA
    assert verdict.evidence_hash == keccak(report)
    assert (verdict.valid_from, verdict.valid_until) == (VCEK_FROM, VCEK_UNTIL)


def test_the_pinned_milan_ark_is_the_chains_and_pinning_it_explicitly_accepts_the_report():
    report, vcek, chain = sample()
    _, ark = chain_ders(chain)
    assert sha256_hex(ark) == AMD_ARK_SHA256["Milan"]
    assert verify_snp_report(report, vcek, chain, AT, ark_der=ark).measurement.hex() == MEASUREMENT


@pytest.mark.parametrize(
    "offset, reason",
    [
        (0x08, "evidence signature invalid"),  # the guest policy
        (0x50, "evidence signature invalid"),  # the report data
        (0xA0, "evidence signature invalid"),  # the measurement
        (0x180, "evidence signature invalid"),  # the reported TCB
        (0x2A0, "evidence signature invalid"),  # the signature's r
        (0x400, "evidence rejected"),  # the unsigned reserved tail
    ],
)
def test_a_tampered_byte_is_refused(offset, reason):
    report, vcek, chain = sample()
    tampered = bytearray(report)
    tampered[offset] ^= 1
    assert refusal(bytes(tampered), vcek, chain, AT).reason == reason


def test_a_truncated_report_is_refused():
    report, vcek, chain = sample()
    assert refusal(report[:-1], vcek, chain, AT).reason == "evidence rejected"


@pytest.mark.parametrize(
    "at, reason", [(VCEK_UNTIL + 1, "collateral expired"), (VCEK_FROM - 1, "collateral not yet valid")]
)
def test_a_time_outside_the_vceks_window_is_reported_as_such_not_accepted(at, reason):
    report, vcek, chain = sample()
    assert verify_snp_report(report, vcek, chain, VCEK_UNTIL).tcb_status == "UpToDate"
    assert refusal(report, vcek, chain, at).reason == reason


def test_evidence_from_an_unknown_root_is_refused():
    """Pinned to another certificate (here the ASK, which AMD's ARK signed), the same genuine report
    does not verify."""
    report, vcek, chain = sample()
    ask, _ = chain_ders(chain)
    error = refusal(report, vcek, chain, AT, ark_der=ask)
    assert error.reason == "unknown root" and "not pinned" in str(error)


def test_a_chain_to_a_look_alike_root_is_refused_even_when_that_root_is_pinned():
    """A self-signed 'ARK-Milan' made here is not AMD's; pinned by the caller, it still does not
    sign AMD's ASK."""
    report, vcek, chain = sample()
    ask, ark = x509.load_pem_x509_certificates(chain.encode())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake_ark = (
        x509.CertificateBuilder()
        .subject_name(ark.subject)
        .issuer_name(ark.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2045, 1, 1, tzinfo=datetime.UTC))
        .sign(key, hashes.SHA384(), rsa_padding=padding.PSS(padding.MGF1(hashes.SHA384()), 48))
    )
    fake_chain = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in (ask, fake_ark))
    assert refusal(report, vcek, fake_chain, AT).reason == "unknown root"
    pinned = fake_ark.public_bytes(serialization.Encoding.DER)
    error = refusal(report, vcek, fake_chain, AT, ark_der=pinned)
    assert error.reason == "unknown root" and "does not sign the ASK" in str(error)


def test_a_vcek_the_ask_did_not_sign_is_refused():
    report, vcek, chain = sample()
    tampered = bytearray(vcek)
    tampered[-10] ^= 1  # inside the ASK's signature over the VCEK
    error = refusal(report, bytes(tampered), chain, AT)
    assert error.reason == "unknown root" and "does not sign the VCEK" in str(error)


def test_a_report_with_another_chips_vcek_is_refused():
    report, _, chain = sample()
    other_vcek = (EVIDENCE / "snp_debug_vcek.der").read_bytes()
    assert refusal(report, other_vcek, chain, AT).reason == "evidence signature invalid"


def test_a_genuine_report_from_a_guest_that_allows_debugging_is_refused():
    """Its signature and chain verify (AMD signed it), but its policy lets the hypervisor read the
    guest's memory."""
    _, _, chain = sample()
    report = (EVIDENCE / "snp_debug_report.bin").read_bytes()
    vcek = (EVIDENCE / "snp_debug_vcek.der").read_bytes()
    error = refusal(report, vcek, chain, AT)
    assert error.reason == "evidence rejected" and "allows debugging" in str(error)


def test_a_chain_without_its_ark_is_malformed():
    report, vcek, chain = sample()
    ask, _ = x509.load_pem_x509_certificates(chain.encode())
    assert refusal(report, vcek, ask.public_bytes(serialization.Encoding.PEM).decode(), AT).reason == (
        "collateral malformed"
    )
