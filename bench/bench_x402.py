"""x402 benchmark: paid job post latency through the gateway, and the gas of a funded post.

    .venv/bin/python bench/bench_x402.py [--runs 3] [--posts 20] [--block-time 0,1]

A fresh anvil gets the stack; the facilitator (`python -m facilitator`) and the job gateway
(`python -m gateway`) run as their own processes with default settings. A payer with no ETH
pays with the official `x402HttpxClient`: one measured post is the whole exchange, the
402 offer, signing, and the paid retry that the gateway verifies and the facilitator settles
by posting the job, until the 201 arrives. Each block-time setting (0: a block per
transaction; 1: a block every second) gets its own anvil.

The floor, in the same run: after each paid post, a plain EIP-3009 transferWithAuthorization
by the same payer, signed and sent directly by a relayer with ETH until its receipt (no 402, no
gateway, no facilitator, no job). The paid post's ratio to it is what x402 and the market add.

Gas: the receipt gas of the funded posts (AuthorizationFunder.post_job_with_authorization),
next to the token's own transferWithAuthorization and a plain approve-based post_job on the
same chain, and the USDC anchor of 85.7k for a transferWithAuthorization. Figures go to
bench/results/x402.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # ape finds the project (and its compiled contracts) from the working directory

from figures import percentile  # noqa: E402  (bench/ is the script's folder)

from computenet.deploy import deploy_stack  # noqa: E402
from computenet.domain import Requirements, Spec  # noqa: E402
from computenet.eip3009 import TransferAuthorization, random_nonce  # noqa: E402
from computenet.localnet import Anvil, ProcessGroup, free_port, http_ok, wait_until  # noqa: E402

TOKEN = 10**6
USDC_TRANSFER_WITH_AUTHORIZATION = 85_700
GOAL_OVER_PLAIN = 10_000
OWNER, FACILITATOR, CLIENT, PROVIDER, AGENT, RELAYER, GATEWAY = 0, 7, 1, 2, 3, 8, 9
IMAGE = "computenet/job@sha256:" + "ab" * 32


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
        "mean": round(statistics.fmean(values), 1),
    }


def job_body(now: int) -> dict:
    from computenet.manifest import build_manifest

    manifest = build_manifest(
        IMAGE, ["python3", "/in/run.py"], {"run.py": b"print(42)"}, timeout_seconds=600, max_output_bytes=1 << 20
    )
    return {
        "manifest": manifest.model_dump(mode="json"),
        "requirements": {
            "min_vram_mib": 40_960,
            "gpu_count": 1,
            "max_price": 200,
            "max_gpu_seconds": 600,
            "deadline": now + 86_400,
            "shard_count": 1,
            "replication": 1,
            "verification": 0,
        },
    }


def run_setting(block_time: int, runs: int, posts: int, workdir: Path) -> dict:
    from ape import accounts, networks, project
    from eth_account import Account
    from web3 import Web3
    from x402 import x402Client
    from x402.http.clients.httpx import x402HttpxClient
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import register_exact_evm_client

    test = accounts.test_accounts
    group = ProcessGroup()
    with Anvil(log=workdir / f"anvil-{block_time}.log") as anvil:
        try:
            with networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": anvil.uri}):
                stack = deploy_stack(project, test[OWNER])
                stack.market.set_facilitator(test[FACILITATOR], True, sender=test[OWNER])
                client = test[CLIENT]
                stack.token.faucet(client, 1_000_000 * TOKEN, sender=client)
                stack.token.approve(stack.market, 2**256 - 1, sender=client)
                plain = stack.market.post_job(b"\x5a" * 32, _req(anvil), sender=client).gas_used
                plain = stack.market.post_job(
                    b"\x5a" * 32, _req(anvil), sender=client
                ).gas_used  # warm, as a running market
                auth = TransferAuthorization(
                    client.address, test[OWNER].address, TOKEN, 0, 4_000_000_000, random_nonce()
                )
                signature = auth.sign(
                    client.private_key, stack.token.name(), stack.token.version(), 31337, stack.token.address
                )
                transfer = stack.token.transferWithAuthorization(
                    *auth.token_args(signature), sender=test[OWNER]
                ).gas_used
                # One staked asset the jobs fit, so the gateway takes them (it refuses what no asset can run).
                provider = test[PROVIDER]
                stack.token.faucet(provider, 10_000 * TOKEN, sender=provider)
                stack.token.approve(stack.assets, 2**256 - 1, sender=provider)
                spec = Spec(
                    1,
                    81_920,
                    8,
                    16,
                    0,
                    100,
                    int(anvil.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16) + 30 * 86_400,
                )
                asset = stack.assets.register(spec.as_tuple(), test[AGENT], b"\x11" * 32, sender=provider)
                stack.assets.add_stake(
                    asset.events.filter(stack.assets.AssetRegistered)[0].asset, 1_000 * TOKEN, sender=provider
                )
                market, token = stack.market.address, stack.token.address
                payers = [Account.create() for _ in range(runs)]  # tokens, no ETH
                for payer in payers:
                    stack.token.faucet(payer.address, 1_000_000 * TOKEN, sender=test[OWNER])
            if block_time:
                anvil.interval_mining(block_time)
            web3 = Web3(Web3.HTTPProvider(anvil.uri))
            fport, gport = free_port(), free_port()
            env = {
                **os.environ,
                "COMPUTENET_FACILITATOR_RPC_URL": anvil.uri,
                "COMPUTENET_FACILITATOR_ACCOUNT": f"TEST::{FACILITATOR}",
                "COMPUTENET_FACILITATOR_MARKET": market,
                "COMPUTENET_FACILITATOR_PORT": str(fport),
                "COMPUTENET_FACILITATOR_AUDIT_LOG": str(workdir / "audit.jsonl"),
                "COMPUTENET_FACILITATOR_GATEWAYS": test[GATEWAY].address,
                "COMPUTENET_GATEWAY_ACCOUNT": f"TEST::{GATEWAY}",
                "COMPUTENET_GATEWAY_RPC_URL": anvil.uri,
                "COMPUTENET_GATEWAY_MARKET": market,
                "COMPUTENET_GATEWAY_FACILITATOR_URL": f"http://127.0.0.1:{fport}",
                "COMPUTENET_GATEWAY_PORT": str(gport),
            }
            group.spawn([sys.executable, "-m", "facilitator"], workdir / f"facilitator-{block_time}.log", env=env)
            group.spawn([sys.executable, "-m", "gateway"], workdir / f"gateway-{block_time}.log", env=env)
            for port in (fport, gport):
                wait_until(lambda p=port: http_ok(f"http://127.0.0.1:{p}/health"), 120, f"service on port {port}")

            latencies, gas, per_run, floor = [], [], [], []
            direct = DirectTransfer(web3, token, test[RELAYER])
            for payer in payers:
                x402 = x402Client().set_spend_controls(
                    {"allowed_assets": [{"network": "eip155:31337", "asset": token}], "max_amount_per_payment": False}
                )
                register_exact_evm_client(x402, EthAccountSigner(payer), networks="eip155:*")
                run = asyncio.run(
                    _posts(x402HttpxClient, x402, f"http://127.0.0.1:{gport}", web3, posts, lambda p=payer: direct(p))
                )
                run_floor = [f for _, _, f in run]
                per_run.append(
                    summary([ms for ms, _, _ in run])
                    | {"floor_p50": percentile(run_floor, 50)}
                    | {"ratio_p50": round(percentile([ms for ms, _, _ in run], 50) / percentile(run_floor, 50), 2)}
                )
                latencies += [ms for ms, _, _ in run]
                gas += [g for _, g, _ in run]
                floor += run_floor
                print(
                    f"  blocks {block_time or 'instant'}: run {len(per_run)}: p50 {per_run[-1]['p50']} ms, "
                    f"p95 {per_run[-1]['p95']} ms; direct transfer p50 {per_run[-1]['floor_p50']} ms "
                    f"(ratio {per_run[-1]['ratio_p50']})",
                    flush=True,
                )
            assert web3.eth.get_balance(payers[0].address) == 0
        finally:
            group.stop()
    return {
        "block_time_s": block_time,
        "latency_ms": summary(latencies),
        "floor_direct_transfer_ms": summary(floor),
        "ratio_p50": round(percentile(latencies, 50) / percentile(floor, 50), 2),
        "runs": per_run,
        "gas": {
            "post_1_shard_by_authorization": int(statistics.median(gas)),
            "token_transfer_with_authorization": transfer,
            "post_1_shard": plain,
        },
    }


class DirectTransfer:
    """The floor: a payer's EIP-3009 transferWithAuthorization signed and sent directly by a
    relayer that holds ETH, until its receipt; returns milliseconds."""

    def __init__(self, web3, token: str, relayer) -> None:
        from computenet.web3calls import abi

        self.web3, self.relayer = web3, relayer
        self.token = web3.eth.contract(address=token, abi=abi("TestToken"))
        self.name, self.version = self.token.functions.name().call(), self.token.functions.version().call()

    def __call__(self, payer) -> float:
        start = time.perf_counter()
        auth = TransferAuthorization(payer.address, self.relayer.address, 1, 0, 4_000_000_000, random_nonce())
        signature = auth.sign(payer.key, self.name, self.version, 31337, self.token.address)
        tx = self.token.functions.transferWithAuthorization(*auth.token_args(signature)).build_transaction(
            {
                "from": self.relayer.address,
                "nonce": self.web3.eth.get_transaction_count(self.relayer.address, "pending"),
                "gas": 150_000,
            }
        )
        signed = self.web3.eth.account.sign_transaction(tx, self.relayer.private_key)
        sent = self.web3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.web3.eth.wait_for_transaction_receipt(sent, timeout=60, poll_latency=0.05)
        assert receipt["status"] == 1, "the direct transfer reverted"
        return round((time.perf_counter() - start) * 1000, 1)


async def _posts(client_cls, x402, url: str, web3, posts: int, floor) -> list[tuple[float, int, float]]:
    """Each paid post's (milliseconds, gas), then the floor's milliseconds measured right after it."""
    out = []
    async with client_cls(x402) as http:
        for _ in range(posts):
            body = job_body(web3.eth.get_block("latest")["timestamp"])
            start = time.perf_counter()
            answer = await http.post(f"{url}/jobs", json=body, timeout=120)
            elapsed = (time.perf_counter() - start) * 1000
            if answer.status_code != 201:
                raise SystemExit(f"paid post failed: {answer.status_code} {answer.text}")
            gas = web3.eth.get_transaction_receipt(answer.json()["transaction"])["gasUsed"]
            out.append((round(elapsed, 1), gas, floor()))
    return out


def _req(anvil: Anvil) -> tuple:
    now = int(anvil.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
    return Requirements(40_960, 1, 200, 600, now + 86_400).as_tuple()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument(
        "--block-time", default="0,1", help="comma-separated seconds per block (0: a block per transaction)"
    )
    args = parser.parse_args()
    from ape.logging import logger

    logger.set_level("ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="bench-x402-"))
    settings = []
    for block_time in (int(x) for x in args.block_time.split(",")):
        print(f"block time {block_time or 'instant'}: {args.runs} runs x {args.posts} paid posts", flush=True)
        settings.append(run_setting(block_time, args.runs, args.posts, workdir))
    gas = settings[0]["gas"]
    plain = gas["token_transfer_with_authorization"] + gas["post_1_shard"]
    funded = gas["post_1_shard_by_authorization"]
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": settings,
        "gas": {
            **gas,
            "plain_transfer_plus_post": plain,
            "funded_minus_plain": funded - plain,
            "goal_funded_minus_plain_at_most": GOAL_OVER_PLAIN,
            "usdc_transfer_with_authorization_anchor": USDC_TRANSFER_WITH_AUTHORIZATION,
            "funded_minus_usdc_anchor_plus_post": funded - (USDC_TRANSFER_WITH_AUTHORIZATION + gas["post_1_shard"]),
        },
        "logs": str(workdir),
    }
    out = ROOT / "bench" / "results" / "x402.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print("| blocks | paid post p50 | p95 | max | floor: direct transfer p50 | ratio p50 |")
    print("|---|---|---|---|---|---|")
    for s in settings:
        lat, low = s["latency_ms"], s["floor_direct_transfer_ms"]
        label = "instant" if not s["block_time_s"] else f"{s['block_time_s']} s"
        print(f"| {label} | {lat['p50']} ms | {lat['p95']} ms | {lat['max']} ms | {low['p50']} ms | {s['ratio_p50']} |")
    print()
    print(
        f"gas: funded post {funded:,}; plain transferWithAuthorization {gas['token_transfer_with_authorization']:,} "
        f"+ plain post {gas['post_1_shard']:,} = {plain:,} (funded {funded - plain:+,}; goal <= +{GOAL_OVER_PLAIN:,}); "
        f"with USDC's {USDC_TRANSFER_WITH_AUTHORIZATION:,} anchor: {USDC_TRANSFER_WITH_AUTHORIZATION + gas['post_1_shard']:,}"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
