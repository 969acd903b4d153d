"""What the demo does on a running network: two clients post jobs (one with `ape run job post`,
one paying over x402 with the official client), live progress until both jobs are finished and
refunded, every output checked against its root, the settlement table, and the check that no
money appeared or vanished."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from agent.outputs import sign_request
from computenet import zk
from computenet.cli import format_amount
from computenet.localnet import wait_until
from computenet.manifest import build_manifest, canonical_json
from computenet.market import Market
from computenet.merkle import MerkleTree
from demo.network import CLIENT, Network
from examples import workloads

ROOT = Path(__file__).resolve().parent.parent
STATES = ("open", "assigned", "submitted", "disputed", "finalized")
SPOT_CHECK_BPS = 5_000  # client 1's job: half its results re-executed by the verifier bot


class Chain:
    """The demo's view of the chain: the market's reads through the SDK's Market over a web3 of
    its own; the raw logs (with their transactions) for the report's tables."""

    def __init__(self, net: Network) -> None:
        from web3 import Web3

        self.web3 = Web3(Web3.HTTPProvider(net.anvil.uri))
        self.reader = Market.over_web3(self.web3, net.stack.market.address)
        self.market, self.token = self.reader.calls.market, self.reader.calls.token  # transactions, logs

    def logs(self, event: str, role: str = "market", **filters: Any) -> list:
        events = getattr(self.reader.calls, role).events
        return getattr(events, event)().get_logs(from_block=0, argument_filters=filters or None)

    def gas(self, tx: Any) -> int:
        return int(self.web3.eth.get_transaction_receipt(tx)["gasUsed"])


def end_to_end(net: Network, console: Console, say: Callable[[str], None], *, shards: int, timeout: float) -> bool:
    chain = Chain(net)
    before = Balances(net, chain)

    inference = post_with_ape_run(net, chain, say, shards)
    hashing = pay_over_x402(net, chain, say)
    proved = post_zk_with_ape_run(net, chain, say, shards)
    jobs = {
        inference: "batch inference (ape run job post)",
        hashing: "hashing (x402, official httpx client)",
        proved: "zk classifier (proven on chain)",
    }
    follow(net, chain, console, jobs, timeout, payer=net.payer.address)
    say("every shard finalized; the x402 payer's refund is paid")
    proven(chain, proved, say)

    spot_checked(net, chain, inference, say)
    checked = verify_outputs(net, chain, jobs)
    say(f"[green]outputs verified:[/green] {checked} files, each in its replica's on-chain Merkle root")
    console.print(settlement_table(net, chain, jobs))
    console.print(gas_table(chain, jobs))

    return conserved(before, Balances(net, chain), console, say)


def spot_checked(net: Network, chain: Chain, job: int, say: Callable[[str], None], timeout: float = 120) -> None:
    """Waits (bounded) for the verifier bot's decision on each of the spot-checked job's results; says what it did."""
    results = len(chain.logs("ResultSubmitted", job=job))
    mine = lambda: [d for d in net.verifier_decisions().values() if d.get("job") == job]  # noqa: E731
    wait_until(lambda: len(mine()) >= results, timeout, "the verifier bot's decisions", 0.5)
    counts = Counter(d["decision"] for d in mine())
    say(
        f"verifier bot: {results} results of job {job} drawn at {SPOT_CHECK_BPS / 100:g} % after each was mined; "
        f"{counts['agreed']} re-executed and agreed, {counts['not sampled']} not sampled, "
        f"{sum(v for k, v in counts.items() if 'challeng' in k)} challenged"
    )


# ----------------------------------------------------------------- the two clients


def post_with_ape_run(net: Network, chain: Chain, say: Callable[[str], None], shards: int) -> int:
    """Client 1: writes a batch-inference manifest and its inputs, and posts it with `ape run job post`."""
    command, env, inputs = workloads.batch_inference(records=40 * shards)
    folder = net.logdir / "client-inference"
    for path, data in inputs.items():
        (folder / "inputs" / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / "inputs" / path).write_bytes(data)
    # Spot-checked: the verifier bot re-executes each result with this probability, drawn after it is in.
    manifest = build_manifest(
        net.image,
        command,
        inputs,
        timeout_seconds=15,
        max_output_bytes=1 << 20,
        env=env,
        verification={"spot_check_bps": SPOT_CHECK_BPS},
    )
    (folder / "manifest.json").write_bytes(canonical_json(manifest))
    argv = ["job", "post", str(folder / "manifest.json"), "--shards", str(shards), "--spot-check"]
    argv += ["--max-price", "0.02", "--max-gpu-seconds", "30", "--hours", "1", "--store", net.store.url]
    out = ape_run(
        net, [*argv, "--inputs", str(folder / "inputs")], say, net.logdir / "client-inference.log", 120, "client 1"
    )
    return int(out.split("job ", 1)[1].split()[0])


def post_zk_with_ape_run(net: Network, chain: Chain, say: Callable[[str], None], shards: int) -> int:
    """Client 3: registers the example zk model (its verifier deployed) and posts a job whose every
    shard's result is proven: `ape run job post --verification zk` (docs/zk.md)."""
    folder = net.logdir / "client-zk"
    ape_run(
        net, ["model", "register", str(zk.EXAMPLE_MODEL)], say, net.logdir / "client-zk-register.log", 120, "client 3"
    )
    artifacts = zk.ModelArtifacts.load(zk.EXAMPLE_MODEL)
    samples = artifacts.samples()[:shards]
    inputs = {
        zk.input_path(s): zk.encode_words(zk.quantize(x["x"], artifacts.input_scale)) for s, x in enumerate(samples)
    }
    for path, data in inputs.items():
        (folder / "inputs" / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / "inputs" / path).write_bytes(data)
    command = ["python3", "-c", "import os; print('zk input', os.environ['COMPUTENET_SHARD_INDEX'], 'staged')"]
    manifest = build_manifest(net.image, command, inputs, timeout_seconds=15, max_output_bytes=1 << 20)
    (folder / "manifest.json").write_bytes(canonical_json(manifest))
    argv = ["job", "post", str(folder / "manifest.json"), "--shards", str(shards), "--verification", "zk"]
    argv += ["--model", str(zk.EXAMPLE_MODEL), "--max-price", "0.02", "--max-gpu-seconds", "30", "--hours", "1"]
    argv += ["--store", net.store.url, "--inputs", str(folder / "inputs")]
    out = ape_run(net, argv, say, net.logdir / "client-zk.log", 120, "client 3")
    return int(out.split("job ", 1)[1].split()[0])


def proven(chain: Chain, job: int, say: Callable[[str], None]) -> None:
    """Says how each shard of the zk job was proven: in one transaction, final in its block."""
    events = chain.logs("ResultProven", "models", job=job)
    shards = chain.reader.job(job).requirements.shard_count
    if len(events) != shards:
        raise RuntimeError(f"zk job {job}: {len(events)} of its {shards} shards proven; see the agents' logs")
    for event in events:
        receipt = chain.reader.web3.eth.get_transaction_receipt(event["transactionHash"])
        outputs = chain.reader.replica(job, event["args"]["shard"], event["args"]["replica"])
        say(
            f"zk job {job} shard {event['args']['shard']}: proven and final in block {receipt['blockNumber']} "
            f"({receipt['gasUsed']:,} gas: proof checked, result submitted, shard paid); "
            f"state {outputs.state.name.lower()}"
        )


def ape_run(
    net: Network, argv: list[str], say: Callable[[str], None], log: Path, timeout: float, who: str = "client"
) -> str:
    """Runs `ape run ...` as a user would, saying each line it prints as it prints it; returns what it printed."""
    command = [str(ROOT / ".venv" / "bin" / "ape"), "run", *argv, "--network", net.anvil.uri]
    command += ["--account", f"TEST::{CLIENT}"]
    env = os.environ | {
        "COMPUTENET_DEPLOYMENTS": str(net.deployments),
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
    }
    say(f"{who}: " + " ".join(["ape", "run", *argv]).replace(str(net.logdir) + "/", "").replace(str(ROOT) + "/", ""))
    deadline = time.monotonic() + timeout
    printed = []
    with (
        log.open("w") as out,
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            printed.append(line)
            if not line.startswith("INFO:"):
                say(f"  {line.rstrip()}")
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"ape run {argv[0]} {argv[1]} took over {timeout:.0f} s; see {log}")
    if proc.returncode != 0:
        raise RuntimeError(f"ape run {argv[0]} {argv[1]} failed (exit {proc.returncode}); see {log}")
    return "".join(printed)


def pay_over_x402(net: Network, chain: Chain, say: Callable[[str], None]) -> int:
    """Client 2: holds tokens and no ETH; its x402 client pays the gateway's 402 for a hashing job."""
    from x402 import x402Client
    from x402.http.clients.httpx import x402HttpxClient
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import register_exact_evm_client

    from computenet.store import StoreClient

    command, env, inputs = workloads.hashing(files=8, rounds=2000)
    store = StoreClient(net.store.url)
    for data in inputs.values():
        store.put(data)
    # Spot-checked: the verifier bot re-executes each result with this probability, drawn after it is in.
    manifest = build_manifest(
        net.image,
        command,
        inputs,
        timeout_seconds=15,
        max_output_bytes=1 << 20,
        env=env,
        verification={"spot_check_bps": SPOT_CHECK_BPS},
    )
    now = chain.web3.eth.get_block("latest")["timestamp"]
    body = {
        "manifest": manifest.model_dump(mode="json"),
        "requirements": {
            "min_vram_mib": 0,
            "gpu_count": 0,
            "max_price": 20_000,
            "max_gpu_seconds": 30,
            "deadline": now + 3_600,
            "shard_count": 4,
            "replication": 1,
            "verification": 0,
        },
    }
    client = x402Client().set_spend_controls(
        {
            "allowed_assets": [{"network": f"eip155:{net.chain_id}", "asset": chain.token.address}],
            "max_amount_per_payment": False,
        }
    )
    register_exact_evm_client(client, EthAccountSigner(net.payer), networks="eip155:*")

    async def pay():
        async with x402HttpxClient(client) as http:
            return await http.post(f"{net.gateway_url}/jobs", json=body, timeout=120)

    answer = asyncio.run(pay())
    if answer.status_code != 201:
        raise RuntimeError(f"the gateway refused the paid job: {answer.status_code} {answer.text[:400]}")
    job = answer.json()
    say(
        f"client 2 ({net.payer.address}, 0 ETH) paid {format_amount(job['budget'])} over x402: job {job['job']} "
        f"posted, settlement {job['transaction'][:18]}..."
    )
    return int(job["job"])


# ----------------------------------------------------------------- progress


def follow(
    net: Network, chain: Chain, console: Console, jobs: dict[int, str], timeout: float, payer: str | None = None
) -> None:
    """Live progress until every job is finished (and `payer`, an x402 client, is refunded)."""
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[states]}")
    )
    tasks = {job: progress.add_task(f"job {job} {name}", total=None, states="") for job, name in jobs.items()}
    deadline = time.monotonic() + timeout
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            views = {job: requests.get(f"{net.gateway_url}/jobs/{job}", timeout=10).json() for job in jobs}
            per_asset: dict[int, Counter] = {asset: Counter() for asset in net.assets}
            for job, view in views.items():
                states = Counter(s["state"] for s in view["shards"])
                progress.update(
                    tasks[job],
                    total=len(view["shards"]),
                    completed=states["finalized"],
                    states="  ".join(f"{s} {states[s]}" for s in STATES if states[s]),
                )
                for shard in view["shards"]:
                    for rep in shard["replicas"]:
                        if rep["asset"]:
                            per_asset[rep["asset"]][rep["state"]] += 1
            live.update(_dashboard(progress, per_asset, net))
            refunded = payer is None or chain.reader.credits(payer) == 0
            with open(net.logdir / "progress.log", "a") as log:  # the same view, one line per look
                log.write(
                    json.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "refunded": refunded,
                            "jobs": {j: Counter(s["state"] for s in v["shards"]) for j, v in views.items()},
                        }
                    )
                    + "\n"
                )
            if all(view["finished"] for view in views.values()) and refunded:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the jobs did not finish within {timeout:.0f} s: "
                    + "; ".join(f"job {j}: {v['unfinished']} shards left" for j, v in views.items())
                )
            time.sleep(0.5)


def _dashboard(progress: Progress, per_asset: dict[int, Counter], net: Network) -> Table:
    assets = Table("asset", "node", "price/s", *STATES[1:], title="replicas per asset", title_justify="left")
    for asset, counts in per_asset.items():
        plan = net.assets[asset]
        assets.add_row(str(asset), plan.name, str(plan.price), *[str(counts[s]) for s in STATES[1:]])
    grid = Table.grid()
    grid.add_row(progress)
    grid.add_row(assets)
    return grid


# ----------------------------------------------------------------- checks and tables


def verify_outputs(net: Network, chain: Chain, jobs: dict[int, str]) -> int:
    """Fetches every finalized replica's files from its agent (as the job's client; the x402
    payer through the gateway) and checks them against the replica's on-chain root."""
    keys = {
        str(net.test[CLIENT].address).lower(): net.test[CLIENT].private_key,
        net.payer.address.lower(): net.payer.key,
    }
    files_checked = 0
    for job in jobs:
        client = chain.reader.job(job).client.lower()
        for event in chain.logs("ShardFinalized", job=job):
            shard, replica, asset = event["args"]["shard"], event["args"]["replica"], event["args"]["asset"]
            root = chain.reader.replica(job, shard, replica).output_root
            agent = chain.reader.agent_of(asset)
            base = (
                f"{net.gateway_url}/jobs/{job}/outputs/{shard}/{replica}"
                if client == net.payer.address.lower()
                else f"{net.outputs[asset]}/outputs/{job}/{shard}/{replica}"
            )
            target = f"/outputs/{job}/{shard}/{replica}"
            index = _get(f"{base}", keys[client], net.chain_id, agent, target).json()
            files = {}
            for leaf in index["files"]:
                files[leaf] = _get(
                    f"{base}/file?path={leaf}", keys[client], net.chain_id, agent, f"{target}/file?path={leaf}"
                ).content
            if MerkleTree.from_files(files).root != root:
                raise RuntimeError(f"job {job} shard {shard}: the outputs do not match the on-chain root")
            files_checked += len(files)
    return files_checked


def _get(url: str, key: Any, chain_id: int, agent: str, target: str) -> requests.Response:
    answer = requests.get(url, headers=sign_request(key, chain_id, agent, target), timeout=30)
    if answer.status_code != 200:
        raise RuntimeError(f"GET {url}: {answer.status_code} {answer.text[:200]}")
    return answer


def settlement_table(net: Network, chain: Chain, jobs: dict[int, str]) -> Table:
    table = Table("who", "role", "earned / refunded", "detail", title="settlement", title_justify="left")
    earned: Counter = Counter()
    keeper_fees: Counter = Counter()
    protocol = 0
    shards: Counter = Counter()
    for job in jobs:
        for event in chain.logs("ShardFinalized", job=job):
            args = event["args"]
            earned[args["provider"]] += args["payment"]
            shards[args["provider"]] += 1
            keeper_fees[args["keeper"]] += args["keeper_fee"]
            protocol += args["protocol_fee"]
    for provider, amount in sorted(earned.items()):
        table.add_row(provider, "provider", format_amount(amount), f"{shards[provider]} shards")
    for keeper, amount in sorted(keeper_fees.items()):
        table.add_row(keeper, "keeper", format_amount(amount), "fees")
    table.add_row(chain.market.functions.treasury().call(), "protocol", format_amount(protocol), "fees")
    for job in jobs:
        for event in chain.logs("JobFinished", job=job):
            budget = chain.logs("JobPosted", job=job)[0]["args"]["budget"]
            table.add_row(
                event["args"]["client"],
                "client",
                format_amount(event["args"]["refund"]),
                f"job {job}: refund of a {format_amount(budget)} budget",
            )
    return table


def gas_table(chain: Chain, jobs: dict[int, str]) -> Table:
    table = Table("step", "transactions", "gas (median)", title="gas per step", title_justify="left")
    steps = {
        "post (ape run job post)": [chain.logs("JobPosted", job=min(jobs))[0]],
        "post funded over x402": chain.logs("JobFundedByAuthorization", "funder", job=max(jobs)),
        "assign": [e for j in jobs for e in chain.logs("ShardAssigned", job=j)],
        "submit_result": [e for j in jobs for e in chain.logs("ResultSubmitted", job=j)],
        "finalize": [e for j in jobs for e in chain.logs("ShardFinalized", job=j)],
        "refund payout (withdraw_many)": chain.logs("Withdrawn"),
    }
    for step, events in steps.items():
        gas = sorted(chain.gas(e["transactionHash"]) for e in {e["transactionHash"]: e for e in events}.values())
        if gas:
            table.add_row(step, str(len(gas)), f"{gas[len(gas) // 2]:,}")
    return table


class Balances:
    """The token supply and the balances of every account and contract the demo involves, now."""

    def __init__(self, net: Network, chain: Chain) -> None:
        holders = [str(a.address) for a in list(net.test)[:16]] + [net.payer.address]
        holders += [str(c) for c in (net.stack.market.address, net.stack.assets.address, net.stack.keepers.address)]
        self.supply = chain.token.functions.totalSupply().call()
        self.of = {h: chain.reader.balance(h) for h in holders}
        self.market, self.owed = str(net.stack.market.address), chain.market.functions.owed().call()

    @property
    def total(self) -> int:
        return sum(self.of.values())


def conserved(before: Balances, after: Balances, console: Console, say: Callable[[str], None]) -> bool:
    """Whether no money appeared or vanished between `before` and `after` (escrow and stakes are
    held by the contracts, so they count); says which."""
    if after.supply != before.supply or after.total != before.total:
        console.print(
            f"[red]conservation failed:[/red] {before.total} before, {after.total} after "
            f"(supply {before.supply}, then {after.supply})"
        )
        return False
    if after.of[after.market] != after.owed:  # every token the market holds is owed to someone
        console.print(f"[red]the market holds {after.of[after.market]} but owes {after.owed}[/red]")
        return False
    moved = sum(abs(after.of[h] - before.of[h]) for h in before.of)
    say(
        f"[green]conservation:[/green] {format_amount(after.total)} tokens before and after over {len(before.of)} "
        f"accounts and contracts ({format_amount(moved)} moved between them); nothing appeared or vanished, "
        f"and the market holds exactly what it owes ({format_amount(after.owed)})"
    )
    return True
