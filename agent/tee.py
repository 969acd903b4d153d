"""The agent's TEE side: evidence from its own machine, sent to an attestor.

On a confidential VM (Intel TDX, AMD SEV-SNP) Linux 6.7+ makes attestation reports through
configfs-tsm: write 64 bytes of report data to a new report's `inblob`, read the signed report
back from `outblob` (`ConfigfsTsm`). The agent asks for two kinds:

- node evidence binding each asset and the agent key (computenet.tee.node_report_data), sent
  at start and again before its verdict runs out, so the asset stays eligible for tee jobs;
- result evidence binding each tee result's output root and metered use (result_report_data),
  sent once the result is on chain, so its challenge window ends after the short one.

Both bindings are computed from what the agent holds itself, never read from its node, so a
host that feeds it false chain answers still cannot have its TEE vouch for another result.

Refused or unsent evidence loses nothing: the result stands with the full window. The evidence
sent is kept in the lease folder (`EVIDENCE_FILE`). An agent with no TEE declines tee leases.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Protocol

from computenet.tee import REPORT_DATA_BYTES, Evidence

log = logging.getLogger("agent.tee")

EVIDENCE_FILE = "tee-evidence.json"
REFRESH_SECONDS = 86_400  # a node verdict ending sooner than this is renewed
TSM_REPORTS = Path("/sys/kernel/config/tsm/report")
_PROVIDERS = {"tdx_guest": "tdx", "sev_guest": "sev-snp"}


class EvidenceSource(Protocol):
    """Makes TEE evidence that carries `report_data` (64 bytes)."""

    def evidence(self, report_data: bytes) -> Evidence: ...


class TeeUnavailable(Exception):
    """This machine cannot make TEE evidence now; the message says why."""


class ConfigfsTsm:
    """Linux's configfs-tsm interface of a TDX or SEV-SNP guest. Intel quotes leave their PCS
    collateral to the attestor (it fetches it); AMD reports bring their certificates (auxblob)."""

    def __init__(self, reports: Path = TSM_REPORTS) -> None:
        self.reports = reports

    def evidence(self, report_data: bytes) -> Evidence:
        if len(report_data) != REPORT_DATA_BYTES:
            raise ValueError(f"report data is {REPORT_DATA_BYTES} bytes, not {len(report_data)}")
        if not self.reports.is_dir():
            raise TeeUnavailable(f"{self.reports} is missing: not a TDX or SEV-SNP guest, or configfs not mounted")
        entry = Path(tempfile.mkdtemp(prefix="computenet-", dir=self.reports))  # the kernel fills it in
        try:
            (entry / "inblob").write_bytes(report_data)
            quote = (entry / "outblob").read_bytes()
            kind = _PROVIDERS.get((entry / "provider").read_text().strip())
            if kind is None:
                raise TeeUnavailable(f"unknown TSM provider {(entry / 'provider').read_text().strip()!r}")
            aux = entry / "auxblob"
            collateral = amd_certificates(aux.read_bytes()) if kind == "sev-snp" and aux.exists() else ""
            return Evidence(kind, quote, collateral)
        finally:
            os.rmdir(entry)


# The GUIDs of AMD's certificate table (SEV-SNP firmware ABI, "extended guest request").
_VCEK, _ASK, _ARK = (
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"),
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"),
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"),
)


def amd_certificates(table: bytes) -> str:
    """The collateral an attestor needs from the certificate table a host gives an SEV-SNP
    guest (auxblob): {"vcek": DER hex, "chain": ASK and ARK PEM}; "" when the host gave none."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    found: dict[uuid.UUID, bytes] = {}
    for at in range(0, len(table) - 23, 24):  # entries: GUID, offset, length; a zero GUID ends them
        guid = uuid.UUID(bytes_le=table[at : at + 16])
        if guid.int == 0:
            break
        offset, length = struct.unpack_from("<II", table, at + 16)
        found[guid] = table[offset : offset + length]
    if not all(found.get(g) for g in (_VCEK, _ASK, _ARK)):
        return ""
    chain = "".join(x509.load_der_x509_certificate(found[g]).public_bytes(Encoding.PEM).decode() for g in (_ASK, _ARK))
    return json.dumps({"vcek": found[_VCEK].hex(), "chain": chain})


def source(name: str) -> EvidenceSource | None:
    """The evidence source an agent setting names: "" for none, "tsm" for configfs-tsm."""
    if not name:
        return None
    if name == "tsm":
        return ConfigfsTsm()
    raise ValueError(f"unknown TEE evidence source {name!r}: expected 'tsm' or nothing")


class AttestorClient:
    """The attestor's HTTP service (verifier/attestor.py)."""

    def __init__(self, url: str, timeout: float = 60) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def node(self, asset: int, evidence: Evidence) -> dict:
        return self._post(f"/nodes/{asset}", evidence)

    def result(self, job: int, shard: int, replica: int, evidence: Evidence) -> dict:
        return self._post(f"/results/{job}/{shard}/{replica}", evidence)

    def _post(self, path: str, evidence: Evidence) -> dict:
        """The verdict; a refusal raises TeeRefused with the attestor's reason."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(evidence.to_json()).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            try:
                detail = json.loads(body)
                raise TeeRefused(str(detail.get("reason")), str(detail.get("detail"))) from None
            except (ValueError, AttributeError):
                raise TeeRefused(f"HTTP {error.code}", body[:300]) from None


class TeeRefused(Exception):
    """The attestor refused the evidence (`reason` is its stable word for why)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def needs_node_evidence(attested: bool, valid_until: int, now: int) -> bool:
    """Send node evidence now? When the asset is not attested, or its verdict ends within a day."""
    return not attested or valid_until - now < REFRESH_SECONDS


def save(folder: Path, evidence: Evidence, answer: dict | None, refused: str = "") -> None:
    """Keeps a result's evidence and the attestor's answer in its lease folder."""
    folder.mkdir(parents=True, exist_ok=True)
    body: dict[str, Any] = {"evidence": evidence.to_json(), "verdict": answer}
    if refused:
        body["refused"] = refused
    (folder / EVIDENCE_FILE).write_text(json.dumps(body, indent=1))
