"""`make demo` and `make demo-faults`, shorter (fewer shards), as a user runs them: `python -m demo`
as a process that starts every part itself: its own anvil, Redis, content store and the Docker
engine DOCKER_HOST names (or a private dockerd)."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_demo(tmp_path, *args):
    env = os.environ | {
        "PATH": f"{REPO / '.venv' / 'bin'}:{REPO / 'node_modules/@foundry-rs/anvil-linux-amd64/bin'}:{os.environ['PATH']}"
    }
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--logs", str(tmp_path / "logs"), "--shards", "2", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    return done, done.stdout + done.stderr


def test_make_demo_runs_the_network_end_to_end(tmp_path):
    done, out = run_demo(tmp_path)
    assert done.returncode == 0, out[-3000:]
    assert "paid" in out and "over x402" in out and "0 ETH" in out
    assert "outputs verified:" in out and "conservation:" in out
    assert re.search(r"zk job \d+ shard 0: proven and final in block \d+", out)  # ape run job post --verification zk
    assert "settlement" in out and "refund of a" in out and "gas per step" in out
    assert re.search(r"the dApp: http://127\.0\.0\.1:\d+/app/", out)  # printed once the gateway is up
    assert not list((tmp_path / "logs").glob("*.pid"))
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "logs")], capture_output=True, text=True).stdout
    assert leftovers == "", f"processes left running: {leftovers}"


def test_make_demo_faults_completes_every_job_and_conserves_money(tmp_path):
    done, out = run_demo(tmp_path, "--faults")
    assert done.returncode == 0, out[-3000:]
    for fault in ("keeper killed", "dishonest agent", "agent killed mid-shard", "Redis restarted"):
        assert fault in out
    assert "dispute opened by the market itself" in out and "upheld" in out
    assert "reclaimed from asset" in out and "replayed blocks 0-" in out
    assert "every job finished" in out and "conservation:" in out
