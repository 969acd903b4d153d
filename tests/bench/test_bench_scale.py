"""Smoke test of the scale simulation (bench/bench_scale.py): its quick mode with N = 3 agents,
two racing keepers and one short step of load, run as the benchmark runs (its own anvil and
worker processes). It checks the report's shape, that an agent's results went out in one
`submit_results`, and the books: every posted shard finalized and paid, the market's token
balance equal to what it owes, nothing left in escrow.

About 20-30 s (the worker processes importing ape is most of it; more on a loaded machine):
it runs one job-stream step and waits out the pipeline, so it cannot be much shorter.
"""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QUICK = [
    "--quick",
    "--agents", "3",
    "--agent-procs", "1",
    "--chain-seconds-per-block", "30",  # the 60 s challenge window passes in two blocks
    "--rates", "1",
    "--step-seconds", "4",
    "--step-latencies", "0",  # no warm-up job: the step's rates are not what this checks
    "--leases-per-asset", "2",  # 4 shards a job on 3 assets: some agent has two results to batch
    "--no-plots",
]  # fmt: skip
RESULT_KEYS = {
    "agents",
    "keepers",
    "block_gas_limit",
    "steps",
    "saturation",
    "gas",
    "post_to_finalized_s",
    "post_to_final_floor_blocks",
    "books",
    "keeper_outcomes",
}
STEP_KEYS = {
    "offered_per_min",
    "posted_per_min",
    "finalized_per_min",
    "block_gas_pct_mean",
    "block_gas_pct_max",
    "cpu_cores",
    "keeper_time",
    "agent_time",
    "segments_s",
    "shares",
}


def test_quick_run_finalizes_and_pays_every_posted_shard(tmp_path):
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_scale.py"), *QUICK, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["benchmark"] == "scale" and data["quick"]
    assert {"results", "base", "keeper_mode", "chain_seconds_per_block"} <= set(data)
    [result] = data["results"]
    assert result["agents"] == 3 and result["keepers"] == 2
    assert RESULT_KEYS <= set(result)
    assert result["block_gas_limit"] == 30_000_000
    assert result["steps"] and STEP_KEYS <= set(result["steps"][0])
    assert result["gas"]["per_shard"] > 0
    # An agent's results in one submit_results (under one signature), lone ones of several
    # agents relayed in one submit_many; none of them refused by the market once mined.
    calls = result["gas"]["per_call"]
    assert calls["submit_results"]["mined"] >= 1
    assert all(calls[c]["reverted"] == 0 for c in ("submit_result", "submit_results", "submit_many"))
    # assign and submit a block each, the 60 s window two 30 s blocks, finalize in the block past it
    assert result["post_to_final_floor_blocks"] == 5
    assert result["post_to_finalized_s"]["p50"] >= 5 - 1  # blocks come a second apart: none beats the floor

    books = result["books"]
    assert books["shards_posted"] > 0
    assert books["shards_finalized"] == books["shards_paid"] == books["shards_posted"]
    assert books["jobs_finished"] == books["jobs_posted"]
    assert books["escrow_left"] == 0
    assert books["market_balance"] == books["owed"] == books["credits"]
    assert books["conserved"]
