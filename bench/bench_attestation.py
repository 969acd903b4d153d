"""TEE evidence verification time per evidence kind, as the attestor verifies it
(verifier/attestor.py's `verify`: dcap-qvl for Intel TDX and SGX quotes, verifier/snp.py for
AMD SEV-SNP reports): the real vendor-signed samples in tests/verifier/evidence/, each verified
`--runs` times at a pinned time inside its collateral's window. Prints min / median / p95 / max
milliseconds and writes bench/results/attestation.json.

    .venv/bin/python bench/bench_attestation.py [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from computenet.tee import Evidence  # noqa: E402
from verifier.attestation import collateral_window  # noqa: E402
from verifier.attestor import Policy, verify  # noqa: E402

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


def timings(evidence: Evidence, at: int, runs: int) -> dict:
    policy = Policy()  # the vendors' own roots, as pinned
    verify(evidence, at, policy)  # warm: the first call loads tables and parses the roots
    ms = []
    for _ in range(runs):
        started = time.perf_counter()
        verify(evidence, at, policy)
        ms.append((time.perf_counter() - started) * 1_000)
    ms.sort()
    return {
        "runs": runs,
        "quote_bytes": len(evidence.quote),
        "collateral_bytes": len(evidence.collateral),
        "ms": {
            "min": ms[0],
            "median": statistics.median(ms),
            "p95": ms[min(len(ms) - 1, int(0.95 * len(ms)))],
            "max": ms[-1],
        },
    }


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
            f"(min / median / p95 / max, {args.runs} runs; quote {result[kind]['quote_bytes']:,} bytes)",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
