"""`ape run job pipeline` on a whole local network (`python -m demo --serve`: its own anvil
with 1 s blocks and a 60 s challenge window, a content store, keepers, and agents running
each shard in Docker with the job image): agent endpoints serving altered bytes stop the
pipeline before its second stage is posted, with nothing unverified written; the same command
run again resumes without a second post, and the second stage reads the first's verified
outputs from /in/prev/<shard>/....

The command runs as a user runs it, as a subprocess of `ape run` in the checkout."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from chain_clock import WindowSkipper
from fastapi import FastAPI, Request
from fastapi.responses import Response
from served_demo import served_demo

from computenet.localnet import ServedApp
from computenet.manifest import parse_manifest
from computenet.merkle import MerkleTree
from computenet.store import StoreClient

REPO = Path(__file__).resolve().parents[2]
STAGE_S = 240  # a stage: the shards' runs, the challenge window (skipped: chain_clock), a keeper's finalize

NUMBER = """\
import os
shard = int(os.environ["COMPUTENET_SHARD_INDEX"])
with open("/out/n.txt", "w") as f:
    f.write(f"{(shard + 1) * 10}\\n")
"""
ADD = """\
import glob
paths = sorted(glob.glob("/in/prev/*/out/n.txt"))
with open("/out/sum.txt", "w") as f:
    f.write(f"{sum(int(open(p).read()) for p in paths)}\\n")
with open("/out/seen.txt", "w") as f:
    f.write("\\n".join(sorted(glob.glob("/in/**", recursive=True))) + "\\n")
"""


def pipeline_file(folder: Path, image: str, first_shards: int = 2) -> Path:
    (folder / "numbers").mkdir(parents=True)
    (folder / "numbers" / "number.py").write_text(NUMBER)
    (folder / "add.py").write_text(ADD)
    path = folder / "sums.toml"
    path.write_text(
        f"""
name = "sums"
[defaults]
image = "{image}"
max_price = "0.02"       # the demo's CPU assets charge 0.008 to 0.015 per second
max_gpu_seconds = 60
hours = 1
timeout_seconds = 20
[[stage]]
name = "numbers"
command = ["python3", "/in/number.py"]
inputs = ["numbers/"]
shards = {first_shards}
[[stage]]
name = "sum"
command = ["python3", "/in/add.py"]
inputs = ["add.py"]
"""
    )
    return path


class Net:
    """The served network (its --serve file), with the SDK's reader over its RPC URL."""

    def __init__(self, info: dict) -> None:
        from web3 import Web3

        from computenet.market import Market

        self.info = info
        self.web3 = Web3(Web3.HTTPProvider(info["rpc_url"], request_kwargs={"timeout": 30}))
        self.market = Market.over_web3(self.web3, info["addresses"]["market"])
        self.deployments = Path(info["logdir"]) / "deployments.json"

    def ape(self, *args: str) -> list[str]:
        """The argv of `ape run ARGS` on this network as the client (TEST::1)."""
        return [
            str(Path(sys.executable).with_name("ape")),
            "run",
            *args,
            "--network",
            self.info["rpc_url"],
            "--account",
            f"TEST::{self.info['accounts']['client']['index']}",
        ]

    @property
    def env(self) -> dict[str, str]:
        bins = f"{REPO / '.venv' / 'bin'}:{REPO / 'node_modules/@foundry-rs/anvil-linux-amd64/bin'}"
        return os.environ | {
            "PATH": f"{bins}:{os.environ['PATH']}",
            "PYTHONPATH": str(REPO),
            "COMPUTENET_DEPLOYMENTS": str(self.deployments),
            "COMPUTENET_STORE_URL": self.info["store_url"],
        }

    def pipeline(self, file: Path, out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.ape("job", "pipeline", str(file), "--out", str(out)),
            cwd=REPO,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=3 * STAGE_S,
        )


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with served_demo(tmp_path_factory.mktemp("pipeline-net")) as info:
        yield Net(info)


@contextlib.contextmanager
def tampering_endpoints(net):
    """Points every asset's on-chain endpoint at a proxy of its agent that passes everything
    through (heartbeats, output indexes, proofs) but appends a line to every output file it
    serves; the real endpoints are restored afterwards."""

    def proxy(upstream: str) -> ServedApp:
        app = FastAPI()

        @app.get("/{path:path}")
        def forward(path: str, request: Request) -> Response:
            target = f"{upstream}/{path}" + (f"?{request.url.query}" if request.url.query else "")
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            try:
                with urllib.request.urlopen(urllib.request.Request(target, headers=headers), timeout=30) as answer:
                    body, status, answered = answer.read(), answer.status, answer.headers
            except urllib.error.HTTPError as error:
                body, status, answered = error.read(), error.code, error.headers
            if path.startswith("outputs/") and path.endswith("/file") and status == 200:
                body += b"altered by the endpoint\n"
            keep = {k: v for k, v in answered.items() if k.lower() not in ("content-length", "transfer-encoding")}
            return Response(body, status, keep)

        return ServedApp(app)

    proxies, owners = {}, {}
    for asset, plan in net.info["assets"].items():
        proxies[int(asset)] = proxy(plan["endpoint"])
        owners[int(asset)] = plan["provider"]
    assets = net.market.calls.assets

    def point(urls):
        for asset, url in urls.items():
            tx = assets.functions.set_endpoint(asset, url).transact({"from": owners[asset]})
            assert net.web3.eth.wait_for_transaction_receipt(tx, timeout=30)["status"] == 1

    point({a: p.url for a, p in proxies.items()})
    try:
        yield
    finally:
        point({int(a): plan["endpoint"] for a, plan in net.info["assets"].items()})
        for served in proxies.values():
            served.stop()


def test_a_tampered_output_stops_the_pipeline_and_the_same_command_resumes_on_verified_outputs(net, tmp_path):
    file, out = pipeline_file(tmp_path / "job", net.info["image"]), tmp_path / "out"
    job1 = net.market.job_count() + 1
    started = time.monotonic()

    # Every agent's endpoint serves altered files: stage 1 runs, but none of it checks.
    with tampering_endpoints(net), WindowSkipper(net.web3, net.market, job1):
        done = net.pipeline(file, out)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-4000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"Error: stage 'numbers': job {job1} shard ")
    assert "no verified result (asset " in errors[0]
    assert "'s agent sent a log/container.log that is not in the replica's on-chain root 0x" in errors[0]
    assert errors[0].endswith("nothing of it was written and the next stage was not posted")
    assert "Traceback" not in output
    assert net.market.job_count() == job1  # stage 2 was never posted
    assert not (out / "numbers").exists()  # nothing unverified was written
    state = json.loads((out / "pipeline-state.json").read_text())
    assert [(s["name"], s["job"], s["outputs"]) for s in state["stages"]] == [("numbers", job1, None)]

    # The endpoints honest again, the same command resumes: it follows the job it posted
    # (no second post), fetches verified outputs and runs stage 2 on them.
    with WindowSkipper(net.web3, net.market, job1):
        done = net.pipeline(file, out)
    output = done.stdout + done.stderr
    took = time.monotonic() - started
    assert done.returncode == 0, output[-4000:]
    assert "resuming from" in output and f"stage 1/2 numbers: following job {job1}" in output, output
    job2 = job1 + 1
    assert net.market.job_count() == job2  # stage 1 was not posted twice
    assert f"stage 2/2 sum: job {job2} posted, 1 shard(s), 5 input(s)" in output, output
    assert f"stage 2/2 sum: job {job2}, 1/1 shards done" in output

    # The final output, and what stage 2 saw under /in.
    assert (out / "sum" / "0" / "out" / "sum.txt").read_text() == "30\n"
    seen = (out / "sum" / "0" / "out" / "seen.txt").read_text().split()
    assert [p for p in seen if p.startswith("/in/prev/") and "." in p.rsplit("/", 1)[-1]] == [
        "/in/prev/0/log/container.log",
        "/in/prev/0/out/n.txt",
        "/in/prev/1/log/container.log",
        "/in/prev/1/out/n.txt",
    ]

    # Stage 2's inputs are exactly stage 1's outputs, which make up the on-chain roots.
    expected = {}
    for shard in net.market.shards(job1):
        folder = out / "numbers" / str(shard.index)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        final = [r for r in shard.replicas if r.state.name == "FINALIZED"]
        assert MerkleTree.from_files(files).root == final[0].output_root
        expected |= {f"prev/{shard.index}/{leaf}": hashlib.sha256(data).hexdigest() for leaf, data in files.items()}
    assert (out / "numbers" / "1" / "out" / "n.txt").read_text() == "20\n"
    manifest_hash = net.market.job(job2).manifest_hash
    manifest = parse_manifest(StoreClient(net.info["store_url"]).get("keccak256", manifest_hash.hex()))
    staged = {f.path: f.sha256 for f in manifest.inputs.files}
    assert {p: s for p, s in staged.items() if p.startswith("prev/")} == expected
    assert set(staged) - set(expected) == {"add.py"}

    # The summary: each stage's job, shards, time, GPU-seconds and who was paid (from the events).
    providers = {a["provider"] for a in net.info["assets"].values()}
    assert "pipeline sums: 2 stage(s) done" in output
    assert f"  numbers: job {job1}, 2 shard(s), " in output and f"  sum: job {job2}, 1 shard(s), " in output
    paid_lines = [line.split()[0] for line in output.splitlines() if line.startswith("    0x")]
    assert paid_lines and set(paid_lines) <= providers
    assert f"outputs of the last stage: {out / 'sum'}" in output
    print(f"two-stage pipeline, stopped by a tampered output and resumed: {took:.0f} s")

    # Once done, running it again posts nothing and says the same.
    again = net.pipeline(file, out)
    assert again.returncode == 0 and "2 of 2 stage(s) done" in again.stdout and net.market.job_count() == job2


def test_a_bad_file_or_no_store_is_one_error_line_and_posts_nothing(net, tmp_path):
    file, out = pipeline_file(tmp_path / "job", net.info["image"]), tmp_path / "out"
    jobs_before = net.market.job_count()
    bad = file.with_name("bad.toml")
    bad.write_text(file.read_text().replace("shards = 2", "shards = 0"))
    done = net.pipeline(bad, out)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: {bad}: stage 'numbers' (1 of 2): shards: must be an integer of at least 1, not 0"
    )
    no_store = {k: v for k, v in net.env.items() if k != "COMPUTENET_STORE_URL"}
    done = net.pipeline(file, out, env=no_store)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: no content store: pass --store URL (agents fetch each stage's inputs there)"
    )
    assert net.market.job_count() == jobs_before and not out.exists()
