"""AMD SEV-SNP attestation reports, checked: what an attestor decides before it records a verdict.

A report is accepted only if AMD vouches for it offline, from pinned collateral: the ARK is one of
AMD's pinned root keys (Milan, Genoa; or the one the caller pins) and signs itself, the ARK signs
the ASK and the ASK signs the VCEK (RSA-PSS, SHA-384), and the VCEK signs the report (ECDSA
P-384, SHA-384 over its first 0x2A0 bytes). The three certificates must all be valid at the
verification time `at`; outside the intersection of their windows the collateral is reported
expired (or not yet valid), never accepted. The VCEK must be the one AMD issued for the chip and
the TCB the report names: its TCB extensions equal the report's REPORTED_TCB and its hardware ID
its CHIP_ID (unless the report masks it). A guest whose policy allows debugging (the hypervisor
can then read its memory), a report signed by any key but a VCEK, and one whose unsigned reserved
tail is not zero (its keccak256 then names one signed report) are refused.

The verdict's TCB status compares the TCB the VCEK certifies with the platform's firmware:
"UpToDate" when the reported, current and committed TCBs are one, "ReportedTCBBelowCurrent" when
the host reports (and the VCEK certifies) older firmware than it runs, "CommittedTCBBelowCurrent"
when the firmware can still be rolled back. AMD publishes no signed list of its latest TCB, so a
minimum TCB is the caller's policy. AMD's certificate revocation list is not consulted.
"""

from __future__ import annotations

import struct
import warnings

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import SignatureAlgorithmOID
from eth_utils import keccak

from verifier.attestation import AttestationError, Verdict

SEV_SNP = "sev-snp"
REPORT_BYTES, SIGNED_BYTES = 0x4A0, 0x2A0

# SHA-256 of the DER of AMD's ARKs, as AMD's KDS serves them (kdsintf.amd.com/vcek/v1/<product>/cert_chain).
AMD_ARK_SHA256 = {
    "Milan": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "Genoa": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
}

POLICY_DEBUG = 1 << 19
SIGNING_KEY_VCEK = 0
ECDSA_P384_SHA384 = 1
TCB_FIELDS = ("bootloader", "tee", "snp", "microcode")
# The VCEK's TCB extensions (AMD KDS specification): blSPL, teeSPL, snpSPL, ucodeSPL; and hwID.
VCEK_TCB_OIDS = {
    "bootloader": "1.3.6.1.4.1.3704.1.3.1",
    "tee": "1.3.6.1.4.1.3704.1.3.2",
    "snp": "1.3.6.1.4.1.3704.1.3.3",
    "microcode": "1.3.6.1.4.1.3704.1.3.8",
}
VCEK_HWID_OID = "1.3.6.1.4.1.3704.1.4"
AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def verify_snp_report(report: bytes, vcek_der: bytes, chain_pem: str, at: int, ark_der: bytes | None = None) -> Verdict:
    """The verdict on an SEV-SNP attestation report, its VCEK (DER) and AMD's ASK and ARK (PEM) at
    unix time `at`, or AttestationError: "collateral malformed", "collateral not yet valid",
    "collateral expired", "unknown root", "evidence signature invalid" or "evidence rejected".
    `ark_der`, when given, is the only ARK accepted, in place of AMD's pinned ones."""
    report = bytes(report)
    if len(report) != REPORT_BYTES:
        raise AttestationError("evidence rejected", f"an SEV-SNP report has {REPORT_BYTES} bytes, not {len(report)}")
    vcek, ask, ark = _certificates(vcek_der, chain_pem)
    valid_from = max(_unix_from(cert) for cert in (vcek, ask, ark))
    valid_until = min(_unix_until(cert) for cert in (vcek, ask, ark))
    if at < valid_from:
        raise AttestationError("collateral not yet valid", f"its VCEK, ASK and ARK are all valid from {valid_from}")
    if at > valid_until:
        raise AttestationError("collateral expired", f"its VCEK, ASK and ARK were all valid until {valid_until}")

    fingerprint = ark.fingerprint(hashes.SHA256())
    pinned = {_sha256(bytes(ark_der))} if ark_der is not None else {bytes.fromhex(h) for h in AMD_ARK_SHA256.values()}
    if fingerprint not in pinned:
        raise AttestationError("unknown root", f"the chain's ARK (SHA-256 {fingerprint.hex()}) is not pinned")
    _check_signed(ark, ark, "the ARK does not sign itself")
    _check_signed(ask, ark, "the ARK does not sign the ASK")
    _check_signed(vcek, ask, "the ASK does not sign the VCEK")

    version, _, policy = struct.unpack_from("<IIQ", report, 0)
    _, signature_algo = struct.unpack_from("<II", report, 0x30)
    (flags,) = struct.unpack_from("<I", report, 0x48)
    if version < 2 or signature_algo != ECDSA_P384_SHA384:
        raise AttestationError("evidence rejected", f"report version {version}, signature algorithm {signature_algo}")
    public_key = vcek.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != "secp384r1":
        raise AttestationError("collateral malformed", "the VCEK's key is not an ECDSA P-384 key")
    r = int.from_bytes(report[SIGNED_BYTES : SIGNED_BYTES + 72], "little")
    s = int.from_bytes(report[SIGNED_BYTES + 72 : SIGNED_BYTES + 144], "little")
    try:
        public_key.verify(encode_dss_signature(r, s), report[:SIGNED_BYTES], ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError):
        raise AttestationError("evidence signature invalid", "the VCEK does not sign the report") from None

    if any(report[SIGNED_BYTES + 144 :]):
        raise AttestationError("evidence rejected", "the report's unsigned reserved bytes are not zero")
    if (flags >> 2) & 0b111 != SIGNING_KEY_VCEK:
        raise AttestationError("evidence rejected", "the report is not signed by a VCEK")
    if policy & POLICY_DEBUG:
        raise AttestationError("evidence rejected", f"the guest policy 0x{policy:x} allows debugging")
    current, reported, committed = (_tcb(report, offset) for offset in (0x38, 0x180, 0x1E0))
    certified = _vcek_tcb(vcek)
    if certified != reported:
        raise AttestationError("evidence rejected", f"the VCEK certifies TCB {certified}, the report names {reported}")
    chip_id, hardware_id = report[0x1A0:0x1E0], _vcek_hwid(vcek)
    if any(chip_id) and chip_id != hardware_id:
        raise AttestationError("evidence rejected", "the VCEK was issued for another chip")
    if any(spl > running for spl, running in zip(reported, current)):
        raise AttestationError("evidence rejected", f"reported TCB {reported} is above the current {current}")

    return Verdict(
        kind=SEV_SNP,
        evidence_hash=keccak(report),
        measurement=report[0x90:0xC0],
        tcb_status=(
            "ReportedTCBBelowCurrent"
            if reported != current
            else "CommittedTCBBelowCurrent"
            if committed != current
            else "UpToDate"
        ),
        advisories=(),
        report_data=report[0x50:0x90],
        valid_from=valid_from,
        valid_until=valid_until,
    )


def _certificates(vcek_der: bytes, chain_pem: str) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    """(VCEK, ASK, ARK). AMD issues VCEKs with serial number 0, which `cryptography` warns about."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            vcek = x509.load_der_x509_certificate(bytes(vcek_der))
            chain = x509.load_pem_x509_certificates(chain_pem.encode())
    except (ValueError, TypeError, UnicodeError) as error:
        raise AttestationError("collateral malformed", repr(error)) from None
    roots = [cert for cert in chain if cert.subject == cert.issuer]
    issued = [cert for cert in chain if cert.subject != cert.issuer]
    if len(roots) != 1 or len(issued) != 1:
        raise AttestationError("collateral malformed", "the chain must hold one ASK and one self-issued ARK")
    return vcek, issued[0], roots[0]


def _check_signed(cert: x509.Certificate, issuer: x509.Certificate, failure: str) -> None:
    """RSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt, as AMD signs its certificates."""
    public_key = issuer.public_key()
    if (
        cert.issuer != issuer.subject
        or cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS
        or not isinstance(cert.signature_hash_algorithm, hashes.SHA384)
        or not isinstance(public_key, rsa.RSAPublicKey)
    ):
        raise AttestationError("unknown root", failure)
    try:
        public_key.verify(cert.signature, cert.tbs_certificate_bytes, AMD_PSS, hashes.SHA384())
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        raise AttestationError("unknown root", failure) from None


def _tcb(report: bytes, offset: int) -> tuple[int, ...]:
    """(boot loader, TEE, SNP firmware, microcode) SPLs of a Milan or Genoa TCB_VERSION."""
    raw = report[offset : offset + 8]
    return raw[0], raw[1], raw[6], raw[7]


def _vcek_tcb(vcek: x509.Certificate) -> tuple[int, ...]:
    return tuple(_der_integer(_extension(vcek, VCEK_TCB_OIDS[field])) for field in TCB_FIELDS)


def _vcek_hwid(vcek: x509.Certificate) -> bytes:
    """AMD's KDS puts the 64-byte chip ID in the extension as is; an OCTET STRING is accepted too."""
    value = _extension(vcek, VCEK_HWID_OID)
    if len(value) == 66 and value[:2] == b"\x04\x40":
        value = value[2:]
    return value


def _extension(cert: x509.Certificate, oid: str) -> bytes:
    try:
        return cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value
    except (x509.ExtensionNotFound, AttributeError):
        raise AttestationError("collateral malformed", f"the VCEK has no extension {oid}") from None


def _der_integer(value: bytes) -> int:
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2 or value[1] > 2:
        raise AttestationError("collateral malformed", f"a VCEK TCB extension is not a small INTEGER: {value.hex()}")
    return int.from_bytes(value[2:], "big", signed=True)


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def _unix_from(cert: x509.Certificate) -> int:
    return int(cert.not_valid_before_utc.timestamp())


def _unix_until(cert: x509.Certificate) -> int:
    return int(cert.not_valid_after_utc.timestamp())
