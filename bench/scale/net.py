"""The simulated network's chain: one anvil, the deployed stack, N staked assets and the keepers.

Set-up runs with anvil mining each transaction at once and sends the N registrations and
stakes as raw transactions in JSON-RPC batches (the SDK's `register_asset` waits for a
receipt per call: minutes at N = 1,000). Then `start_clock` switches to a block every
second of wall time whose timestamps advance `chain_seconds_per_block` each: the contracts
allow no challenge window under 60 s (contracts/modules/market_params.vy, MIN_WINDOW), so
the chain's clock runs fast for the window to pass in a few blocks. Throughput is counted
in wall time (blocks), and the window only delays finalization: an asset's lease ends at
submission, so it holds no capacity.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import keccak

from computenet.deploy import DEFAULT_PARAMETERS, deploy_stack
from computenet.domain import Requirements, Spec
from computenet.localnet import Anvil, _Process, anvil_binary, free_port, wait_until

TOKEN = 10**6  # one token in base units (6 decimals)
BLOCK_GAS_LIMIT = 30_000_000  # Ethereum L1's limit for years and anvil's default; Base's is in the report
CHALLENGE_WINDOW = 60  # the contracts' minimum (market_params.MIN_WINDOW)
MANIFEST = keccak(b"computenet scale: null workload")
# Test accounts (anvil's default mnemonic, ape's TEST::n): who plays which role.
OWNER, CLIENTS, PROVIDERS, KEEPERS = 0, (1, 7), (2, 3), (4, 5, 6)
FEES = {"maxFeePerGas": hex(10**11), "maxPriorityFeePerGas": hex(10**9)}
RPC_BATCH = 200  # requests per JSON-RPC batch during set-up


@dataclass(frozen=True)
class Plan:
    agents: int
    keepers: int = 2
    leases_per_asset: int = 1  # a one-GPU node: one lease at a time
    chain_seconds_per_block: int = 20  # the 60 s window passes in 3 blocks
    shards_per_job: int = 4
    max_gpu_seconds: int = 3_600  # the lease's length (+ grace): long enough never to lapse here


def agent_key(index: int) -> str:
    """Agent `index`'s private key: derived, so every process derives the same keys."""
    return "0x" + keccak(b"computenet scale agent %d" % index).hex()


def requirements(plan: Plan, now: int) -> Requirements:
    """Each job's terms: one GPU per lease, a week's deadline (chain time)."""
    return Requirements(
        min_vram_mib=40_960,
        gpu_count=1,
        max_price=200,
        max_gpu_seconds=plan.max_gpu_seconds,
        deadline=now + 7 * 86_400,
        shard_count=plan.shards_per_job,
    )


class ScaleAnvil(Anvil):
    """anvil with its block gas limit stated on the command line."""

    def __init__(self, log: Path, gas_limit: int = BLOCK_GAS_LIMIT, timeout: float = 30) -> None:
        self.port = free_port()
        argv = [anvil_binary(), "--host", "127.0.0.1", "--port", str(self.port), "--gas-limit", str(gas_limit)]
        _Process.__init__(self, argv, log)
        self._wait_ready(self._answers, timeout)

    def batch(self, calls: list[tuple[str, list]]) -> list[Any]:
        """JSON-RPC calls in batches of RPC_BATCH; their results in order (an error raises)."""
        out = []
        for first in range(0, len(calls), RPC_BATCH):
            body = [
                {"jsonrpc": "2.0", "id": first + n, "method": m, "params": p}
                for n, (m, p) in enumerate(calls[first : first + RPC_BATCH])
            ]
            request = urllib.request.Request(self.uri, json.dumps(body).encode(), {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as response:
                replies = sorted(json.loads(response.read()), key=lambda r: r["id"])
            for reply in replies:
                if "error" in reply:
                    raise RuntimeError(f"anvil: {reply['error']}")
                out.append(reply["result"])
        return out


def _raw(account: Any, nonce: int, to: str, data: str, gas: int, chain_id: int) -> str:
    tx = {"to": to, "data": data, "gas": gas, "nonce": nonce, "chainId": chain_id, "value": 0}
    tx |= {k: int(v, 16) for k, v in FEES.items()}
    return "0x" + account.sign_transaction(tx).raw_transaction.hex()


class Net:
    """anvil, the stack and the roles' accounts; `record` is what the worker processes need."""

    def __init__(self, plan: Plan, workdir: Path, say: Any = print) -> None:
        self.plan, self.workdir, self.say = plan, workdir, say
        self.anvil = ScaleAnvil(workdir / "anvil.log")
        self.agents = [Account.from_key(agent_key(i)) for i in range(plan.agents)]
        self.asset_of: dict[int, int] = {}  # agent index -> its asset id

    def deploy(self) -> None:
        """Deploys (ape, the test accounts), funds the roles and bonds the keepers."""
        from ape import accounts, project

        from computenet.market import Market

        test = accounts.test_accounts
        # A window of 60 s: the contracts' minimum; the fast chain clock makes it a few blocks.
        params = replace(DEFAULT_PARAMETERS, challenge_window=CHALLENGE_WINDOW)
        stack = deploy_stack(project, test[OWNER], parameters=params)
        self.market = Market.from_stack(stack)
        self.deployment_block = int(self.market.head())
        token, chain_id, sends = self.market.calls.token, self.market.chain_id, []
        for i in (*CLIENTS, *PROVIDERS, *KEEPERS[: self.plan.keepers]):
            signer = Account.from_key(test[i].private_key)
            calls = [("faucet", [signer.address, 10**12])]  # FAUCET_LIMIT: a million tokens
            calls += [("approve", [self.market.addresses[r], 2**256 - 1]) for r in ("market", "assets", "keepers")]
            for nonce, (name, args) in enumerate(calls, self.market.web3.eth.get_transaction_count(signer.address)):
                sends.append(_raw(signer, nonce, token.address, token.encode_abi(name, args=args), 100_000, chain_id))
        self._send_all(sends, "faucet and approval transactions")
        for i in KEEPERS[: self.plan.keepers]:
            self.market.register_keeper(100 * TOKEN, test[i])

    def register_assets(self) -> None:
        """Registers and stakes an asset per agent (raw transactions, batched) and gives
        each agent key ETH for its own transactions."""
        from ape import accounts

        plan, market, anvil = self.plan, self.market, self.anvil
        chain_id = market.chain_id
        providers = [Account.from_key(accounts.test_accounts[i].private_key) for i in PROVIDERS]
        nonces = {p.address: market.web3.eth.get_transaction_count(p.address) for p in providers}
        assets = market.calls.assets
        expire = market.now() + 365 * 86_400
        sends = []
        for i, agent in enumerate(self.agents):
            n = plan.leases_per_asset
            spec = Spec(
                gpu_model=1,
                vram_mib=81_920,
                gpu_count=n,
                cpu_cores=8 * n,
                region=276,
                price=100 + i % 50,  # prices differ, so the scheduler's ranking matters
                expire=expire,
                max_leases=n,
                memory_mib=65_536 * n,
                disk_mib=65_536 * n,
            )
            owner = providers[i % len(providers)]
            data = assets.encode_abi("register", args=[spec.as_tuple(), agent.address, b"\x11" * 32, ""])
            sends.append(_raw(owner, nonces[owner.address], assets.address, data, 400_000, chain_id))
            nonces[owner.address] += 1
        self._send_all(sends, "registrations")
        by_agent = {a.address.lower(): i for i, a in enumerate(self.agents)}
        for e in market.events(self.deployment_block, roles=("assets",), names=("AssetRegistered",)):
            self.asset_of[by_agent[e.agent.lower()]] = int(e.asset)
        assert len(self.asset_of) == plan.agents, f"{len(self.asset_of)} of {plan.agents} assets registered"
        sends = []
        for i in range(plan.agents):
            owner = providers[i % len(providers)]
            data = assets.encode_abi("add_stake", args=[self.asset_of[i], 100 * TOKEN])
            sends.append(_raw(owner, nonces[owner.address], assets.address, data, 200_000, chain_id))
            nonces[owner.address] += 1
        self._send_all(sends, "stakes")
        anvil.batch([("anvil_setBalance", [a.address, hex(100 * 10**18)]) for a in self.agents])

    def _send_all(self, raws: list[str], what: str) -> None:
        """Sends raw transactions (anvil mines each as it comes) and checks every one succeeded."""
        hashes = self.anvil.batch([("eth_sendRawTransaction", [raw]) for raw in raws])
        receipts: list = []

        def all_mined() -> bool:  # anvil mines a batch's transactions a few to a block, a moment later
            receipts[:] = self.anvil.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
            return all(r is not None for r in receipts)

        wait_until(all_mined, 120, f"the {what} to be mined", 0.2)
        failed = [h for h, r in zip(hashes, receipts) if int(r["status"], 16) != 1]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(raws)} {what} failed, e.g. {failed[0]}")
        self.say(f"  {len(raws)} {what} mined")

    def start_clock(self) -> None:
        """A block every wall-clock second, its timestamp `chain_seconds_per_block` past the last."""
        self.anvil.rpc("anvil_setBlockTimestampInterval", [self.plan.chain_seconds_per_block])
        self.anvil.interval_mining(1)

    def gas_limit(self) -> int:
        return int(self.anvil.rpc("eth_getBlockByNumber", ["latest", False])["gasLimit"], 16)

    def record(self) -> dict:
        """What a worker process needs to join: the node, the contracts, the keys."""
        return {
            "uri": self.anvil.uri,
            "addresses": self.market.addresses,
            "deployment_block": self.deployment_block,
            "chain_id": self.market.chain_id,
            "asset_of": self.asset_of,
            "plan": self.plan.__dict__,
        }

    def stop(self) -> None:
        self.anvil.stop()
