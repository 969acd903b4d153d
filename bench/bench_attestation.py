"""TEE evidence verification time per evidence kind, as the attestor verifies it
(verifier/attestor.py's `verify`: dcap-qvl for Intel TDX and SGX quotes, verifier/snp.py for
AMD SEV-SNP reports): the real vendor-signed samples in tests/verifier/evidence/, each verified
`--runs` times at a pinned time inside its collateral's window. The floor, in the same run and
interleaved with it: the cryptography alone on the same evidence, with none of the attestor's
checks and parsing around it (for Intel quotes dcap-qvl's own `verify` on the parsed
collateral; for AMD reports the certificates loaded and the three RSA-PSS and one ECDSA P-384
signatures checked with `cryptography`). Prints min / median / p95 / max milliseconds and the
median's ratio to the floor's, and writes bench/results/attestation.json.

    .venv/bin/python bench/bench_attestation.py [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dcap_qvl  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402
from cryptography.utils import CryptographyDeprecationWarning  # noqa: E402

from computenet.tee import Evidence  # noqa: E402
from verifier.attestation import collateral_window  # noqa: E402
from verifier.attestor import Policy, verify  # noqa: E402
from verifier.snp import AMD_PSS, SIGNED_BYTES  # noqa: E402

EVIDENCE = ROOT / "tests" / "verifier" / "evidence"
SNP_AT = 1_750_000_000  # inside the AMD sample's VCEK, ASK and ARK windows


def samples() -> dict[str, tuple[Evidence, int]]:
    """Each kind's sample evidence and a time inside its collateral's window."""
    out = {}
    for kind in ("tdx", "sgx"):
        collateral = (EVIDENCE / f"{kind}_quote_collateral.json").read_text()
        quote = (EVIDENCE / f"{kind}_quote").read_bytes()
        out[kind] = Evidence(kind, quote, collateral), collateral_window(collateral)[0] + 3_600
    certificates = {
        "vcek": (EVIDENCE / "snp_vcek.der").read_bytes().hex(),
        "chain": (EVIDENCE / "snp_cert_chain.pem").read_text(),
    }
    out["sev-snp"] = Evidence("sev-snp", (EVIDENCE / "snp_report.bin").read_bytes(), json.dumps(certificates)), SNP_AT
    return out


def floor(evidence: Evidence, at: int) -> None:
    """The signatures' cryptography alone on `evidence` (see the module's docstring)."""
    if evidence.kind != "sev-snp":
        dcap_qvl.verify(bytes(evidence.quote), dcap_qvl.QuoteCollateralV3.from_json(evidence.collateral), at)
        return
    certificates = json.loads(evidence.collateral)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)  # AMD's VCEK serial 0
        vcek = x509.load_der_x509_certificate(bytes.fromhex(certificates["vcek"]))
    chain = x509.load_pem_x509_certificates(certificates["chain"].encode())
    ark = next(c for c in chain if c.subject == c.issuer)
    ask = next(c for c in chain if c.subject != c.issuer)
    for cert, issuer in ((ark, ark), (ask, ark), (vcek, ask)):
        issuer.public_key().verify(cert.signature, cert.tbs_certificate_bytes, AMD_PSS, hashes.SHA384())
    report = bytes(evidence.quote)
    r = int.from_bytes(report[SIGNED_BYTES : SIGNED_BYTES + 72], "little")
    s = int.from_bytes(report[SIGNED_BYTES + 72 : SIGNED_BYTES + 144], "little")
    vcek.public_key().verify(encode_dss_signature(r, s), report[:SIGNED_BYTES], ec.ECDSA(hashes.SHA384()))


def _summary(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {
        "min": ms[0],
        "median": statistics.median(ms),
        "p95": ms[min(len(ms) - 1, int(0.95 * len(ms)))],
        "max": ms[-1],
    }


def timings(evidence: Evidence, at: int, runs: int) -> dict:
    policy = Policy()  # the vendors' own roots, as pinned
    verify(evidence, at, policy)  # warm: the first call loads tables and parses the roots
    floor(evidence, at)
    ms, floor_ms = [], []
    for _ in range(runs):  # interleaved, so both see the same machine
        started = time.perf_counter()
        verify(evidence, at, policy)
        ms.append((time.perf_counter() - started) * 1_000)
        started = time.perf_counter()
        floor(evidence, at)
        floor_ms.append((time.perf_counter() - started) * 1_000)
    out = {
        "runs": runs,
        "quote_bytes": len(evidence.quote),
        "collateral_bytes": len(evidence.collateral),
        "ms": _summary(ms),
        "floor_ms": _summary(floor_ms),
    }
    out["over_floor"] = round(out["ms"]["median"] / out["floor_ms"]["median"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "attestation.json")
    args = parser.parse_args()
    result = {}
    for kind, (evidence, at) in samples().items():
        result[kind] = timings(evidence, at, args.runs)
        ms = result[kind]["ms"]
        print(
            f"{kind}: verify {ms['min']:.2f} / {ms['median']:.2f} / {ms['p95']:.2f} / {ms['max']:.2f} ms "
            f"(min / median / p95 / max, {args.runs} runs; quote {result[kind]['quote_bytes']:,} bytes); "
            f"floor median {result[kind]['floor_ms']['median']:.2f} ms, {result[kind]['over_floor']}x",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
