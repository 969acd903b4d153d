"""A test PKI standing in for Intel's; no TEE here. TEST-ONLY.

No machine these tests run on has a TEE in confidential mode, so no quote can bind report data
of ours under Intel's keys. This module takes the real Intel-signed TDX sample
(tests/verifier/evidence/) and re-signs it under a deterministic test root CA: the TD report
carries our report data (and, if asked, another MRTD) and every signature from the attestation
key up to the root is redone, so dcap-qvl accepts it with `verify_with_root_ca` and the test root
(`test_root_ca_der()`) and refuses it against Intel's. Everything dcap-qvl checks besides
signatures and dates (TCB levels, FMSPC, QE identity policy, TD attributes) stays the sample's:
the PCK certificate carries the sample's Intel SGX extension verbatim, and the TCB info and QE
identity bodies are kept byte for byte but for their dates.

Keys are fixed scalars and signatures deterministic (RFC 6979), so the same arguments give the
same bytes in every process.
"""

from __future__ import annotations

import functools
import json
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID, NameOID

EVIDENCE = Path(__file__).parent / "verifier" / "evidence"
SGX_EXTENSION = x509.ObjectIdentifier("1.2.840.113741.1.13.1")  # Intel's: FMSPC, CPUSVN, PCESVN, PPID, ...
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

# Quote v4 layout (Intel's DCAP quote format): a 48-byte header and a 584-byte TD report, both
# signed by the attestation key; then the signature data, whose QE report (an SGX report, 384
# bytes) binds the attestation key through the first 32 bytes of its report data.
SIGNED = 48 + 584
MR_TD = slice(48 + 136, 48 + 184)
REPORT_DATA = slice(48 + 520, SIGNED)
QE_REPORT, QE_REPORT_HASH = 384, slice(320, 352)
QE_CERTIFICATION, PCK_CHAIN = 6, 5  # certification data types: QE report and its data; PEM chain

# The test certificates hold for a century, so any window a test asks for lies inside them; the
# CRLs, like Intel's, are current only over the collateral's window.
NOT_BEFORE, NOT_AFTER = datetime(2000, 1, 1, tzinfo=UTC), datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)


@dataclass(frozen=True)
class Resigned:
    quote: bytes
    collateral_json: str
    root_ca_der: bytes


def test_root_ca_der() -> bytes:
    """The test root CA (DER): the root to pin for quotes from `resigned_tdx_quote`."""
    return _pki().root.public_bytes(Encoding.DER)


test_root_ca_der.__test__ = False  # a helper, not a test, wherever it is imported


def resigned_tdx_quote(
    report_data: bytes, *, valid_from: int | None = None, valid_until: int | None = None, mr_td: bytes | None = None
) -> Resigned:
    """The sample TDX quote with `report_data` (64 bytes) and optionally another MRTD (48 bytes),
    its collateral's TCB info and QE identity current from valid_from to valid_until
    (issueDate/nextUpdate; default: the sample's own), every signature redone under the test PKI."""
    if len(report_data) != 64 or (mr_td is not None and len(mr_td) != 48):
        raise ValueError("report data is 64 bytes, an MRTD 48")
    pki = _pki()
    quote = (EVIDENCE / "tdx_quote").read_bytes()
    collateral = json.loads((EVIDENCE / "tdx_quote_collateral.json").read_text())

    signed = bytearray(quote[:SIGNED])
    signed[REPORT_DATA] = report_data
    if mr_td is not None:
        signed[MR_TD] = mr_td
    # The signature data: ECDSA signature (64), attestation key (64), then the QE's certification
    # data: the QE report, its signature (64), the QE's authentication data, the PCK chain.
    (length,) = struct.unpack_from("<I", quote, SIGNED)
    signature_data = quote[SIGNED + 4 : SIGNED + 4 + length]
    padding = quote[SIGNED + 4 + length :]  # the sample's trailing zeros, kept as they were
    kind, _ = struct.unpack_from("<HI", signature_data, 128)
    qe_data = signature_data[134:]
    (auth_length,) = struct.unpack_from("<H", qe_data, QE_REPORT + 64)
    auth_data = qe_data[QE_REPORT + 66 : QE_REPORT + 66 + auth_length]
    (inner_kind,) = struct.unpack_from("<H", qe_data, QE_REPORT + 66 + auth_length)
    assert (kind, inner_kind) == (QE_CERTIFICATION, PCK_CHAIN), "the sample's layout"

    attestation_key = (
        pki.keys["attestation"].public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:]
    )
    qe_report = bytearray(qe_data[:QE_REPORT])
    qe_report[QE_REPORT_HASH] = sha256(attestation_key + auth_data).digest()
    chain = _pem(pki.pck, pki.platform_ca, pki.root).encode() + b"\0"  # NUL-terminated, as the QE writes it
    qe_data = (
        bytes(qe_report)
        + _raw_signature(pki.keys["pck"], bytes(qe_report))
        + struct.pack("<H", auth_length)
        + auth_data
        + struct.pack("<HI", PCK_CHAIN, len(chain))
        + chain
    )
    signature_data = (
        _raw_signature(pki.keys["attestation"], bytes(signed))
        + attestation_key
        + struct.pack("<HI", QE_CERTIFICATION, len(qe_data))
        + qe_data
    )

    tcb_info = _redate(collateral["tcb_info"], valid_from, valid_until)
    qe_identity = _redate(collateral["qe_identity"], valid_from, valid_until)
    dates = [json.loads(body) for body in (tcb_info, qe_identity)]
    window = (min(_unix(body["issueDate"]) for body in dates), max(_unix(body["nextUpdate"]) for body in dates))
    root_crl = x509.load_der_x509_crl(bytes.fromhex(collateral["root_ca_crl"]))
    pck_crl = x509.load_der_x509_crl(bytes.fromhex(collateral["pck_crl"]))
    tcb_chain = _pem(pki.tcb_signer, pki.root)
    collateral.update(
        pck_crl_issuer_chain=_pem(pki.platform_ca, pki.root),
        root_ca_crl=_crl(pki.root, pki.keys["root"], root_crl, window),
        pck_crl=_crl(pki.platform_ca, pki.keys["platform"], pck_crl, window),
        tcb_info_issuer_chain=tcb_chain,
        tcb_info=tcb_info,
        tcb_info_signature=_raw_signature(pki.keys["tcb"], tcb_info.encode()).hex(),
        qe_identity_issuer_chain=tcb_chain,
        qe_identity=qe_identity,
        qe_identity_signature=_raw_signature(pki.keys["tcb"], qe_identity.encode()).hex(),
    )
    return Resigned(
        quote=bytes(signed) + struct.pack("<I", len(signature_data)) + signature_data + padding,
        collateral_json=json.dumps(collateral),
        root_ca_der=test_root_ca_der(),
    )


@dataclass(frozen=True)
class _Pki:
    keys: dict[str, ec.EllipticCurvePrivateKey]  # root, platform, tcb, pck, attestation
    root: x509.Certificate
    platform_ca: x509.Certificate
    tcb_signer: x509.Certificate
    pck: x509.Certificate


@functools.cache
def _pki() -> _Pki:
    """Intel's hierarchy, mirrored: a root; a PCK platform CA under it that issues the PCK
    certificate and the PCK CRL; a TCB signing certificate under it for the TCB info and QE
    identity. Issuer names keep "Platform", by which dcap-qvl tells which PCK CA issued a leaf."""
    keys = {name: _key(name) for name in ("root", "platform", "tcb", "pck", "attestation")}
    ca = x509.KeyUsage(False, False, False, False, False, True, True, False, False)  # certs and CRLs
    signer = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
    root_name, platform_name = _name("Test SGX Root CA"), _name("Test SGX PCK Platform CA")
    root = _certificate(root_name, keys["root"], root_name, keys["root"], [(ca, True), (_ca(1), True)])
    platform_ca = _certificate(platform_name, keys["platform"], root_name, keys["root"], [(ca, True), (_ca(0), True)])
    tcb_signer = _certificate(
        _name("Test SGX TCB Signing"), keys["tcb"], root_name, keys["root"], [(signer, True), (_ca(None), True)]
    )
    # The PCK leaf keeps the sample's serial and its extensions (key usage, basic constraints and
    # Intel's SGX extension: FMSPC, CPUSVN and PCESVN, which dcap-qvl matches against the TCB
    # info, and the PPID it reports), all but Intel's CRL distribution point and key identifiers.
    sample = _sample_pck()
    copied = {SGX_EXTENSION, ExtensionOID.KEY_USAGE, ExtensionOID.BASIC_CONSTRAINTS}
    pck = _certificate(
        _name("Test SGX PCK Certificate"),
        keys["pck"],
        platform_name,
        keys["platform"],
        [(ext.value, ext.critical) for ext in sample.extensions if ext.oid in copied],
        serial=sample.serial_number,
    )
    return _Pki(keys, root, platform_ca, tcb_signer, pck)


def _sample_pck() -> x509.Certificate:
    quote = (EVIDENCE / "tdx_quote").read_bytes()
    return x509.load_pem_x509_certificates(quote[quote.index(b"-----BEGIN") : quote.rindex(b"-----") + 5])[0]


def _key(name: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(sha256(f"computenet test PKI: {name}".encode()).digest()) % (P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "computenet test PKI, not Intel"),
        ]
    )


def _ca(path_length: int | None) -> x509.BasicConstraints:
    return x509.BasicConstraints(ca=path_length is not None, path_length=path_length)


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
    serial: int | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial or int.from_bytes(sha256(subject.public_bytes()).digest()[:16]))
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)


def _crl(
    issuer: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    sample: x509.CertificateRevocationList,
    window: tuple[int, int],
) -> str:
    """The sample CRL's revocations, re-issued by `issuer` (hex DER, as the collateral carries it)
    and current over all of `window`: dcap-qvl checks every certificate of every chain against a
    CRL and counts a CRL expired from its nextUpdate on (the TCB info only after its nextUpdate),
    hence the second past the window."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(datetime.fromtimestamp(window[0], UTC))
        .next_update(datetime.fromtimestamp(window[1] + 1, UTC))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    )
    for revoked in sample:
        builder = builder.add_revoked_certificate(revoked)
    return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True).public_bytes(Encoding.DER).hex()


def _pem(*certificates: x509.Certificate) -> str:
    return "".join(cert.public_bytes(Encoding.PEM).decode() for cert in certificates)


def _raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256 over SHA-256 as Intel encodes it in quotes and collateral: r || s, 32 bytes each."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _redate(body: str, valid_from: int | None, valid_until: int | None) -> str:
    """The signed JSON body with its issueDate / nextUpdate replaced in place, the rest byte for byte."""
    for field, when in (("issueDate", valid_from), ("nextUpdate", valid_until)):
        if when is not None:
            stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            body, count = re.subn(f'"{field}":"[^"]*"', f'"{field}":"{stamp}"', body, count=1)
            assert count == 1, f"no {field} in the sample"
    return body


def _unix(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


class ResignedTee:
    """An agent's evidence source (agent.tee.EvidenceSource) standing in for a TDX guest
    (mock: no TEE here): the sample quote re-signed under the test root, carrying the report
    data asked for, its collateral current from a day before `now` for `days`."""

    def __init__(self, now: int, *, mr_td: bytes | None = None, days: int = 20) -> None:
        self.window = (now - 86_400, now + days * 86_400)
        self.mr_td = mr_td
        self.made: list[bytes] = []  # the report data of each piece of evidence made

    def evidence(self, report_data: bytes):
        from computenet.tee import Evidence

        self.made.append(report_data)
        signed = resigned_tdx_quote(
            report_data, valid_from=self.window[0], valid_until=self.window[1], mr_td=self.mr_td
        )
        return Evidence("tdx", signed.quote, signed.collateral_json)
