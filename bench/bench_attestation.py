"""TEE evidence verification time per evidence kind (verifier/attestation.py, dcap-qvl): the
real Intel TDX and SGX samples in tests/verifier/evidence/, each verified `--runs` times at a
pinned time inside its collateral's window. Prints min / median / p95 / max milliseconds and
writes bench/results/attestation.json.

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

from verifier.attestation import collateral_window, verify_quote  # noqa: E402

EVIDENCE = ROOT / "tests" / "verifier" / "evidence"
KINDS = {"tdx": "tdx_quote", "sgx": "sgx_quote"}


def timings(name: str, runs: int) -> dict:
    quote = (EVIDENCE / name).read_bytes()
    collateral = (EVIDENCE / f"{name}_collateral.json").read_text()
    at = collateral_window(collateral)[0] + 3_600
    verify_quote(quote, collateral, at)  # warm: the library's first call loads its tables
    ms = []
    for _ in range(runs):
        started = time.perf_counter()
        verify_quote(quote, collateral, at)
        ms.append((time.perf_counter() - started) * 1_000)
    ms.sort()
    return {
        "runs": runs,
        "quote_bytes": len(quote),
        "collateral_bytes": len(collateral),
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
    for kind, name in KINDS.items():
        result[kind] = timings(name, args.runs)
        ms = result[kind]["ms"]
        print(
            f"{kind}: verify_quote {ms['min']:.2f} / {ms['median']:.2f} / {ms['p95']:.2f} / {ms['max']:.2f} ms "
            f"(min / median / p95 / max, {args.runs} runs; quote {result[kind]['quote_bytes']:,} bytes)",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
