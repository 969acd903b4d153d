"""Economics benchmark: whether anyone ends ahead by lying, on a real anvil with the real contracts.

    .venv/bin/python bench/bench_economics.py [--jobs 200] [--seed 7] [--arbiter-down 0.25] [--quick]

A fresh anvil gets the stack (`deploy_stack`, default parameters: docs/disputes.md's amounts)
and a network of its dev accounts, each participant with its own key:

- honest providers (three assets each), whose agents submit each shard's correct root; here
  the correct root of a shard is keccak256(manifest hash ‖ shard), and so is its metered use;
- dishonest providers, whose agents submit wrong roots (and claim the most GPU-seconds);
- a self-challenging provider: wrong roots, each challenged first by a sybil address of
  its own (the two count as one participant);
- a provider running both replicas of a replicated shard on two of its assets, one wrong
  (the keeper hands it both replicas of one such shard a round, and any it draws);
- false challengers, who challenge honest results;
- a keeper and client in one key, piling leases on another provider's unresponsive asset
  (as many as the asset takes, one more refused), reclaiming them after they expire, and
  cancelling;
- honest verifiers, who challenge every wrong result they see, again after a default
  outcome let it stand; an honest keeper that assigns the honest clients' jobs at random
  (never to the unresponsive asset, whose heartbeats stopped), finalizes, and applies the
  default outcome (`court.expire`) once a ruling deadline passes;
- the arbiter (the facilitator key), which rules by docs/disputes.md from the correct root,
  a stand-in for its own re-execution (tests/facilitator and tests/adversarial run that for
  real), and is down for a share of disputes (--arbiter-down), which then wait for the
  ruling deadline and the default outcome.

Each round: clients post jobs; the keepers assign; agents submit; challenges, rulings and
default outcomes until no wrong result stands in a challenge window; then the clock jumps
past every window and lease, and shards are finalized, or reclaimed and cancelled. Each
step's independent transactions go into one block (automine off, one JSON-RPC batch of
eth_sendTransaction from the unlocked dev accounts), mined with `evm_mine` at a timestamp the
benchmark sets, so the clock jumps past windows and deadlines. At the end every credit is
withdrawn, and every stake and keeper bond unbonded and withdrawn.

Net gain of an attacker, token base units: what its keys hold after (token balance, market
credits, stakes of the assets it owns, keeper bond) minus what they held after set-up, less
what it was paid for correct results it submitted (work it really ran, at its own price).
Goals: every attacker's net gain ≤ 0; no honest provider slashed; no dispute open past its
ruling deadline; every balance conserved to the base unit (all accounts and contracts hold
the token's whole supply before and after, and the market's balance equals what it owes).
Figures go to bench/results/economics.json; the exit status is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # ape finds the project (and its compiled contracts) from the working directory

from computenet.deploy import DEFAULT_PARAMETERS, DEFAULT_UNBONDING_DELAY, deploy_stack  # noqa: E402
from computenet.domain import ReplicaState, Requirements, Spec, Verification  # noqa: E402
from computenet.localnet import Anvil  # noqa: E402
from computenet.receipts import ExecutionReceipt  # noqa: E402
from computenet.web3calls import abi  # noqa: E402

TOKEN = 10**6
MNEMONIC = "test test test test test test test test test test test junk"
CHAIN_ID = 31337
ZERO = "0x" + "00" * 20
TX_GAS = 3_000_000
PER_SENDER_BLOCK = 100  # anvil keeps at most ~127 pending transactions per sender
JOBS_PER_ROUND = 10
MAX_GPU_SECONDS = 3_600
MAX_PRICE = 2_000
RUN_SECONDS = 1_800  # assignment to result, inside the 3,900 s lease
MAX_PASSES = 40  # challenge / ruling / default-outcome passes per round, at most
DRAIN_ROUNDS = 20  # rounds without new jobs to finish the last ones, at most
STAKE = 1_000 * TOKEN
KEEPER_BOND = 100 * TOKEN
FAUCET = 100_000 * TOKEN

# Anvil dev accounts (the default mnemonic): who plays which role.
OWNER, TREASURY, ARBITER, KEEPER = 0, 1, 2, 3
CLIENTS = (4, 5)
VERIFIERS = (6, 7)
HONEST = (8, 9, 10, 11)
LIARS = (12, 13)
FALSE_CHALLENGERS = (14, 15)
PILER = 16  # keeper and client in one key
SLEEPER = 17  # provider whose agent is down
SELF, SYBIL = 18, 19
TWIN = 20
FIRST_AGENT = 21  # one agent key per asset from here on
# (owner, how its agent behaves) of every asset, in registration order.
ASSET_PLAN = (
    [(p, "honest") for p in HONEST for _ in range(3)]
    + [(p, "wrong") for p in LIARS for _ in range(2)]
    + [(SELF, "wrong"), (SELF, "wrong"), (TWIN, "twin_a"), (TWIN, "twin_b"), (SLEEPER, "sleeper")]
)

OPEN, ASSIGNED, SUBMITTED, DISPUTED, FINALIZED, CANCELLED = (int(s) for s in ReplicaState)


# ---------------------------------------------------------------- chain access


def _type(param: dict) -> str:
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_type(c) for c in param["components"]) + ")" + kind[5:]
    return kind


def _named(value, param: dict):
    if param["type"] == "tuple":
        return SimpleNamespace(**{c["name"]: _named(v, c) for v, c in zip(value, param["components"])})
    return value


class Contract:
    """Calldata, results and logs of one deployed contract, from this project's ABI."""

    def __init__(self, name: str, address: str) -> None:
        from eth_utils import keccak

        self.name, self.address = name, str(address)
        self.functions, self.events = {}, {}
        for item in abi(name):
            if item["type"] == "function":
                self.functions.setdefault(item["name"], item)
            elif item["type"] == "event":
                types = ",".join(_type(p) for p in item["inputs"])
                self.events[item["name"]] = (item, "0x" + keccak(text=f"{item['name']}({types})").hex())

    def data(self, fn: str, args: tuple) -> str:
        from eth_abi import encode
        from eth_utils import keccak

        types = [_type(p) for p in self.functions[fn]["inputs"]]
        return "0x" + (keccak(text=f"{fn}({','.join(types)})")[:4] + encode(types, list(args))).hex()

    def result(self, fn: str, hexdata: str):
        from eth_abi import decode

        outputs = self.functions[fn]["outputs"]
        values = decode([_type(p) for p in outputs], bytes.fromhex(hexdata[2:]))
        values = [_named(v, p) for v, p in zip(values, outputs)]
        return values[0] if len(values) == 1 else tuple(values)

    def topic(self, event: str) -> str:
        return self.events[event][1]

    def log(self, event: str, entry: dict) -> SimpleNamespace:
        from eth_abi import decode

        item = self.events[event][0]
        indexed = [p for p in item["inputs"] if p.get("indexed")]
        plain = [p for p in item["inputs"] if not p.get("indexed")]
        values = {}
        for p, topic in zip(indexed, entry["topics"][1:]):
            values[p["name"]] = decode([_type(p)], bytes.fromhex(topic[2:]))[0]
        for p, v in zip(plain, decode([_type(p) for p in plain], bytes.fromhex(entry["data"][2:]))):
            values[p["name"]] = v
        return SimpleNamespace(**values, block=int(entry["blockNumber"], 16))


class Node:
    """JSON-RPC to the anvil: batched sends mined into one block at a set time, batched reads."""

    def __init__(self, uri: str) -> None:
        import requests

        self.uri, self.session, self.next_id = uri, requests.Session(), 0
        self.pending: list[tuple[str, str, str, str]] = []
        self.gas = Counter()  # sender -> gas used
        self.accounts = [a.lower() for a in self.rpc("eth_accounts")]
        self.blocks = 0

    def batch(self, calls: list[tuple[str, list]]) -> list[dict]:
        replies = []
        for start in range(0, len(calls), 500):
            body = []
            for method, params in calls[start : start + 500]:
                self.next_id += 1
                body.append({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
            answer = self.session.post(self.uri, json=body, timeout=120).json()
            by_id = {r["id"]: r for r in answer}
            replies += [by_id[b["id"]] for b in body]
        return replies

    def rpc(self, method: str, params: list | None = None):
        reply = self.batch([(method, params or [])])[0]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def send(self, sender: int, contract: Contract, fn: str, *args, label: str = "") -> None:
        self.pending.append(
            (self.accounts[sender], contract.address, contract.data(fn, args), label or f"{contract.name}.{fn}{args}")
        )

    def mine(self, at: int) -> list[dict]:
        """Mines everything sent since the last call into blocks stamped `at`; returns the
        receipts and raises, naming them, if any transaction reverted."""
        txs, self.pending = self.pending, []
        waves: list[list] = []
        count = Counter()
        for tx in txs:
            wave = count[tx[0]] // PER_SENDER_BLOCK
            count[tx[0]] += 1
            while len(waves) <= wave:
                waves.append([])
            waves[wave].append(tx)
        hashes = []
        for wave in waves or [[]]:
            replies = self.batch(
                [
                    ("eth_sendTransaction", [{"from": s, "to": to, "data": d, "gas": hex(TX_GAS)}])
                    for s, to, d, _ in wave
                ]
            )
            for reply, tx in zip(replies, wave):
                if "error" in reply:
                    raise RuntimeError(f"{tx[3]} was refused by the node: {reply['error']}")
                hashes.append(reply["result"])
            self.rpc("evm_mine", [at])
            self.blocks += 1
        receipts = [r["result"] for r in self.batch([("eth_getTransactionReceipt", [h]) for h in hashes])]
        failed = []
        for receipt, tx in zip(receipts, txs):
            if receipt is None:
                failed.append(f"{tx[3]}: not mined")
                continue
            self.gas[tx[0]] += int(receipt["gasUsed"], 16)
            if int(receipt["status"], 16) != 1:
                block = hex(int(receipt["blockNumber"], 16) - 1)
                again = self.batch(
                    [("eth_call", [{"from": tx[0], "to": tx[1], "data": tx[2], "gas": hex(TX_GAS)}, block])]
                )[0]
                failed.append(f"{tx[3]}: {again.get('error', {}).get('message', 'reverted')}")
        if failed:
            raise RuntimeError(f"{len(failed)} transaction(s) reverted at {at}:\n  " + "\n  ".join(failed[:20]))
        return receipts

    def read(self, items: list[tuple[Contract, str, tuple]]) -> list:
        replies = self.batch(
            [("eth_call", [{"to": c.address, "data": c.data(fn, args)}, "latest"]) for c, fn, args in items]
        )
        out = []
        for reply, (c, fn, args) in zip(replies, items):
            if "error" in reply:
                raise RuntimeError(f"{c.name}.{fn}{args}: {reply['error']}")
            out.append(c.result(fn, reply["result"]))
        return out

    def refusal(self, sender: int, contract: Contract, fn: str, *args) -> str | None:
        """The revert reason a call would get now from `sender` (None: it would pass)."""
        reply = self.batch(
            [
                (
                    "eth_call",
                    [
                        {
                            "from": self.accounts[sender],
                            "to": contract.address,
                            "data": contract.data(fn, args),
                            "gas": hex(TX_GAS),
                        },
                        "latest",
                    ],
                )
            ]
        )[0]
        if "error" not in reply:
            return None
        return reply["error"].get("message", "").split("execution reverted:", 1)[-1].strip() or "reverted"

    def logs(self, contract: Contract, event: str) -> list[SimpleNamespace]:
        found = self.rpc(
            "eth_getLogs",
            [{"fromBlock": "0x0", "toBlock": "latest", "address": contract.address, "topics": [contract.topic(event)]}],
        )
        return [contract.log(event, entry) for entry in found]

    def timestamp(self) -> int:
        return int(self.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)


# ---------------------------------------------------------------- the simulated world


def keccak(*parts) -> bytes:
    from eth_utils import keccak as k

    return k(b"".join(p if isinstance(p, bytes) else int(p).to_bytes(32, "big") for p in parts))


def correct_root(manifest: bytes, shard: int) -> bytes:
    """What any honest execution of the shard commits to (deterministic here)."""
    return keccak(b"root", manifest, shard)


def work_seconds(manifest: bytes, shard: int) -> int:
    """The shard's metered GPU-seconds, as an honest agent reports them."""
    return 1_200 + int.from_bytes(keccak(b"work", manifest, shard)[:4], "big") % 2_400


@dataclass
class AssetInfo:
    id: int
    owner: int
    agent: int
    kind: str  # honest, wrong, sleeper, twin_a, twin_b


@dataclass
class JobInfo:
    id: int
    client: int
    manifest: bytes
    shards: int
    replication: int
    piler: bool = False
    done: set = field(default_factory=set)


@dataclass
class Party:
    name: str
    keys: tuple[int, ...]
    attacker: bool
    what: str


PARTIES = [
    Party("wrong_root_provider_1", (LIARS[0],), True, "its agents submit wrong roots"),
    Party("wrong_root_provider_2", (LIARS[1],), True, "its agents submit wrong roots"),
    Party("self_challenging_provider", (SELF, SYBIL), True, "wrong roots, challenged first by its own sybil address"),
    Party(
        "two_replica_provider", (TWIN,), True, "runs both replicas of a replicated shard on its two assets, one wrong"
    ),
    Party("false_challenger_1", (FALSE_CHALLENGERS[0],), True, "challenges an honest result every round"),
    Party("false_challenger_2", (FALSE_CHALLENGERS[1],), True, "challenges an honest result every round"),
    Party(
        "keeper_client_lease_piling",
        (PILER,),
        True,
        "keeper and client in one key: piles leases on an unresponsive asset, reclaims after expiry, cancels",
    ),
    *[Party(f"honest_provider_{n + 1}", (p,), False, "three assets, correct roots") for n, p in enumerate(HONEST)],
    Party("unresponsive_provider", (SLEEPER,), False, "one asset whose agent is down (the lease piling's target)"),
    *[
        Party(f"verifier_{n + 1}", (v,), False, "challenges every wrong result it sees")
        for n, v in enumerate(VERIFIERS)
    ],
    *[Party(f"client_{n + 1}", (c,), False, "posts the honest jobs") for n, c in enumerate(CLIENTS)],
    Party("keeper", (KEEPER,), False, "assigns, finalizes, applies default outcomes"),
    Party("arbiter", (ARBITER,), False, "the facilitator key: rules on disputes"),
    Party("treasury", (TREASURY,), False, "protocol fees and slashes"),
    Party("market_owner", (OWNER,), False, "deployed the contracts"),
]


class Economy:
    def __init__(self, node: Node, stack: dict[str, str], rng: random.Random, arbiter_down: float) -> None:
        from eth_account.hdaccount import key_from_seed, seed_from_mnemonic

        self.node, self.rng, self.arbiter_down = node, rng, arbiter_down
        self.token = Contract("TestToken", stack["token"])
        self.assets = Contract("ComputeAsset", stack["assets"])
        self.keepers = Contract("KeeperRegistry", stack["keepers"])
        self.market = Contract("JobMarket", stack["market"])
        self.court = Contract("DisputeCourt", stack["court"])
        seed = seed_from_mnemonic(MNEMONIC, "")
        self.key = lambda i: key_from_seed(seed, f"m/44'/60'/0'/0/{i}")
        self.index = {a: i for i, a in enumerate(node.accounts)}
        self.t = node.timestamp()
        self.asset_info: dict[int, AssetInfo] = {}
        self.jobs: dict[int, JobInfo] = {}
        self.active: set[tuple[int, int]] = set()  # (job, shard) not finished
        self.rejected: dict[tuple[int, int], set[int]] = defaultdict(set)  # assets found wrong on a shard
        self.down: dict[tuple[int, int, int], bool] = {}  # (job, shard, opened) -> arbiter down for it
        self.manifests = 0
        self.stats = Counter()
        self.refusals: dict[str, str] = {}
        self.past_deadline = 0  # most disputes seen open past their ruling deadline at once
        self.keys: dict[int, bytes] = {}
        self.pile: int | None = None  # the keeper-client's job of this round
        self.sleeper, self.twin = 0, {}
        self.min_stake = 0

    # ------------------------------------------------------------ helpers

    def tick(self, seconds: int) -> int:
        self.t += seconds
        return self.t

    def agent_key(self, index: int) -> bytes:
        if index not in self.keys:
            self.keys[index] = self.key(index)
        return self.keys[index]

    def owner_of(self, asset: int) -> int:
        return self.asset_info[asset].owner

    def read_shards(self, keys) -> dict[tuple[int, int], list[SimpleNamespace]]:
        keys = sorted(keys)
        items = []
        for job, shard in keys:
            for r in range(self.jobs[job].replication):
                items += [(self.market, "replica", (job, shard, r)), (self.market, "output_root", (job, shard, r))]
        values = iter(self.node.read(items))
        out = {}
        for job, shard in keys:
            reps = []
            for r in range(self.jobs[job].replication):
                rep, root = next(values), next(values)
                rep.index, rep.root = r, bytes(root)
                reps.append(rep)
            out[(job, shard)] = reps
        return out

    def wealth(self) -> dict[int, int]:
        """Per account: token balance + market credits + keeper bond + stakes of the assets it owns."""
        n = len(self.node.accounts)
        items = (
            [(self.token, "balanceOf", (a,)) for a in self.node.accounts]
            + [(self.market, "credits", (a,)) for a in self.node.accounts]
            + [(self.keepers, "keeper", (a,)) for a in self.node.accounts]
            + [(self.assets, "stake", (a,)) for a in self.asset_info]
        )
        values = self.node.read(items)
        out = {i: values[i] + values[n + i] + values[2 * n + i].bond for i in range(n)}
        for asset, stake in zip(self.asset_info, values[3 * n :]):
            out[self.owner_of(asset)] += stake.amount
        return out

    def holdings(self) -> dict:
        """Token balances of every account and contract, the supply, and the market's debt."""
        contracts = {
            "market": self.market,
            "assets": self.assets,
            "keepers": self.keepers,
            "court": self.court,
            "token": self.token,
        }
        items = (
            [(self.token, "balanceOf", (a,)) for a in self.node.accounts]
            + [(self.token, "balanceOf", (c.address,)) for c in contracts.values()]
            + [(self.token, "totalSupply", ()), (self.market, "owed", ())]
        )
        values = self.node.read(items)
        n = len(self.node.accounts)
        return {
            "accounts": sum(values[:n]),
            **{k: v for k, v in zip(contracts, values[n : n + len(contracts)])},
            "total_supply": values[-2],
            "market_owed": values[-1],
            "total": sum(values[: n + len(contracts)]),
        }

    # ------------------------------------------------------------ set-up

    def setup(self) -> None:
        node = self.node
        participants = [i for i in range(FIRST_AGENT) if i != OWNER]
        for i in participants:
            node.send(OWNER, self.token, "faucet", node.accounts[i], FAUCET)
            for contract in (self.market, self.assets, self.keepers):
                node.send(i, self.token, "approve", contract.address, 2**256 - 1)
        node.mine(self.tick(1))
        expire = self.t + 365 * 86_400
        planned = {}
        for n, (owner, kind) in enumerate(ASSET_PLAN):
            agent = FIRST_AGENT + n
            spec = Spec(
                gpu_model=1,
                vram_mib=81_920,
                gpu_count=4,
                cpu_cores=32,
                region=276,
                price=self.rng.randint(1_000, MAX_PRICE),
                expire=expire,
                max_leases=8,
            )
            node.send(owner, self.assets, "register", spec.as_tuple(), node.accounts[agent], keccak(b"asset", n))
            planned[node.accounts[agent]] = (owner, agent, kind)
        for k in (KEEPER, PILER):
            node.send(k, self.keepers, "register", KEEPER_BOND)
        for receipt in node.mine(self.tick(1)):
            for entry in receipt["logs"]:
                if entry["topics"][0] == self.assets.topic("AssetRegistered"):
                    e = self.assets.log("AssetRegistered", entry)
                    owner, agent, kind = planned[e.agent.lower()]
                    self.asset_info[e.asset] = AssetInfo(e.asset, owner, agent, kind)
        for asset in self.asset_info.values():
            node.send(asset.owner, self.assets, "add_stake", asset.id, STAKE)
        node.mine(self.tick(1))
        self.sleeper = next(a.id for a in self.asset_info.values() if a.kind == "sleeper")
        self.twin = {a.kind: a.id for a in self.asset_info.values() if a.kind.startswith("twin")}
        self.min_stake = self.node.read([(self.market, "parameters", ())])[0].min_stake

    # ------------------------------------------------------------ a round

    def post(self, count: int) -> None:
        node, posted = self.node, {}
        for _ in range(count):
            self.manifests += 1
            manifest = keccak(b"manifest", self.manifests)
            replication = 2 if self.rng.random() < 0.3 else 1
            req = Requirements(
                min_vram_mib=40_960,
                gpu_count=1,
                max_price=MAX_PRICE,
                max_gpu_seconds=MAX_GPU_SECONDS,
                deadline=self.t + 30 * 86_400,
                shard_count=self.rng.randint(1, 3),
                replication=replication,
                verification=Verification.REPLICATED if replication > 1 else Verification.OPTIMISTIC,
            )
            client = self.rng.choice(CLIENTS)
            node.send(client, self.market, "post_job", manifest, req.as_tuple())
            posted[manifest] = (client, req, False)
        self.pile = None
        spec, stake = node.read([(self.assets, "spec", (self.sleeper,)), (self.assets, "stake", (self.sleeper,))])
        free = min(spec.gpu_count - stake.gpus_leased, spec.max_leases - stake.open_leases)
        available = stake.amount - min(stake.unbonding, stake.amount)
        if count and free > 0 and available >= self.min_stake:
            # One shard more than the asset can take: its assignment is refused.
            self.manifests += 1
            manifest = keccak(b"manifest", self.manifests)
            req = Requirements(
                min_vram_mib=40_960,
                gpu_count=1,
                max_price=MAX_PRICE,
                max_gpu_seconds=MAX_GPU_SECONDS,
                deadline=self.t + 30 * 86_400,
                shard_count=free + 1,
            )
            node.send(PILER, self.market, "post_job", manifest, req.as_tuple())
            posted[manifest] = (PILER, req, True)
        elif count and available < self.min_stake:
            self.refusals.setdefault(
                "piling_below_min_stake",
                f"the unresponsive asset's stake {available:,} is below the "
                f"minimum {self.min_stake:,}: no keeper can assign it, so the piling stops",
            )
        for receipt in node.mine(self.tick(10)):
            for entry in receipt["logs"]:
                if entry["topics"][0] == self.market.topic("JobPosted"):
                    e = self.market.log("JobPosted", entry)
                    client, req, piler = posted[bytes(e.manifest_hash)]
                    self.jobs[e.job] = JobInfo(
                        e.job, client, bytes(e.manifest_hash), req.shard_count, req.replication, piler
                    )
                    self.active.update((e.job, s) for s in range(req.shard_count))
                    self.stats["jobs_posted_by_keeper_client" if piler else "jobs_posted"] += 1
                    self.stats["shards_posted"] += 0 if piler else req.shard_count
                    if piler:
                        self.pile = e.job

    def assign(self) -> int:
        node = self.node
        shards = self.read_shards(self.active)
        ids = list(self.asset_info)
        values = node.read([(self.assets, "spec", (a,)) for a in ids] + [(self.assets, "stake", (a,)) for a in ids])
        room = {}
        for a, spec, stake in zip(ids, values[: len(ids)], values[len(ids) :]):
            ok = (
                spec.active
                and stake.amount - min(stake.unbonding, stake.amount) >= self.min_stake
                and a != self.sleeper
            )
            room[a] = min(spec.gpu_count - stake.gpus_leased, spec.max_leases - stake.open_leases) if ok else 0
        assigned = 0
        twin_done = False
        for (job, shard), reps in sorted(shards.items()):
            info = self.jobs[job]
            if info.piler:
                continue
            opened = [r for r in reps if r.state == OPEN]
            if not opened:
                continue
            busy = {r.asset for r in reps if r.state not in (OPEN, CANCELLED)}
            a, b = self.twin["twin_a"], self.twin["twin_b"]
            if (
                not twin_done
                and info.replication == 2
                and len(opened) == 2
                and all(r.lease == 0 for r in reps)
                and room[a] > 0
                and room[b] > 0
            ):
                twin_done = True
                for asset in (a, b):
                    node.send(KEEPER, self.market, "assign", job, shard, asset)
                    room[asset] -= 1
                    assigned += 1
                self.stats["two_replica_scenarios_forced"] += 1
                continue
            for _ in opened:
                candidates = [x for x in ids if room[x] > 0 and x not in busy and x not in self.rejected[(job, shard)]]
                if not candidates:
                    break
                asset = self.rng.choice(candidates)
                node.send(KEEPER, self.market, "assign", job, shard, asset)
                room[asset] -= 1
                busy.add(asset)
                assigned += 1
        piled = []
        if self.pile:
            for shard in range(self.jobs[self.pile].shards - 1):
                node.send(PILER, self.market, "assign", self.pile, shard, self.sleeper)
                piled.append(shard)
        node.mine(self.tick(10))
        if self.pile:
            extra = self.jobs[self.pile].shards - 1
            reason = node.refusal(PILER, self.market, "assign", self.pile, extra, self.sleeper)
            if reason is None:
                raise RuntimeError("the unresponsive asset took a lease beyond its GPUs")
            self.refusals.setdefault("piling_beyond_capacity", reason)
            self.stats["piled_leases"] += len(piled)
            self.stats["piled_leases_refused"] += 1
            node.send(PILER, self.market, "cancel", self.pile, extra)  # mined with the next step
        self.stats["assignments"] += assigned
        return assigned

    def submit(self) -> tuple[int, int]:
        node = self.node
        at = self.tick(RUN_SECONDS)
        shards = self.read_shards(self.active)
        sent = wrong = 0
        for (job, shard), reps in sorted(shards.items()):
            info = self.jobs[job]
            for r in reps:
                if r.state != ASSIGNED or r.deadline < at:
                    continue
                asset = self.asset_info[r.asset]
                correct = correct_root(info.manifest, shard)
                if asset.kind == "sleeper":
                    continue
                lie = asset.kind == "wrong" or (
                    asset.kind == "twin_b"
                    and any(
                        o.asset == self.twin["twin_a"] and o.state in (ASSIGNED, SUBMITTED, DISPUTED)
                        for o in reps
                        if o is not r
                    )
                )
                root = keccak(b"wrong", info.manifest, shard, r.asset, r.lease) if lie else correct
                seconds = MAX_GPU_SECONDS if lie else work_seconds(info.manifest, shard)
                receipt = ExecutionReceipt(
                    job=job,
                    shard=shard,
                    replica=r.index,
                    lease=r.lease,
                    asset=r.asset,
                    manifest=info.manifest,
                    output_root=root,
                    gpu_seconds=seconds,
                    exit_code=0,
                )
                signature = receipt.sign(self.agent_key(asset.agent), CHAIN_ID, self.market.address)
                node.send(asset.agent, self.market, "submit_result", job, shard, r.index, root, seconds, 0, signature)
                sent += 1
                wrong += lie
                if asset.kind == "twin_b" and lie:
                    self.stats["two_replica_wrong_results"] += 1
        node.mine(at)
        self.stats["results"] += sent
        self.stats["wrong_results"] += wrong
        return sent, wrong

    def disputes(self) -> tuple[int, int, int]:
        """Challenges, rulings and default outcomes until no wrong result stands in a window."""
        node = self.node
        challenges = rulings = defaults = 0
        for n in range(MAX_PASSES):
            at = self.tick(30)
            shards = self.read_shards(self.active)
            made = 0
            honest_targets = []
            for (job, shard), reps in sorted(shards.items()):
                if any(r.state == DISPUTED for r in reps):
                    continue
                standing = [r for r in reps if r.state == SUBMITTED]
                if not any(r.deadline >= at for r in standing):
                    continue
                correct = correct_root(self.jobs[job].manifest, shard)
                wrong = [r for r in standing if r.root != correct]
                if wrong:
                    if any(self.owner_of(r.asset) == SELF for r in wrong):
                        challenger = SYBIL
                        if "own_challenge" not in self.refusals:
                            self.refusals["own_challenge"] = (
                                node.refusal(SELF, self.court, "challenge", job, shard) or "allowed"
                            )
                            mine = next(r for r in wrong if self.owner_of(r.asset) == SELF)
                            agent = self.asset_info[mine.asset].agent
                            self.refusals["own_agent_challenge"] = (
                                node.refusal(agent, self.court, "challenge", job, shard) or "allowed"
                            )
                        self.stats["sybil_challenges"] += 1
                    else:
                        challenger = self.rng.choice(VERIFIERS)
                        self.stats["verifier_challenges"] += 1
                    node.send(challenger, self.court, "challenge", job, shard)
                    made += 1
                elif n == 0 and not self.jobs[job].piler:
                    honest_targets.append((job, shard))
            if n == 0:
                for challenger in FALSE_CHALLENGERS:
                    if honest_targets:
                        job, shard = honest_targets.pop(self.rng.randrange(len(honest_targets)))
                        node.send(challenger, self.court, "challenge", job, shard)
                        made += 1
                        self.stats["false_challenges"] += 1
            node.mine(at)
            challenges += made

            at = self.tick(60)
            shards = self.read_shards(self.active)
            open_ = {
                key: next(r.since for r in reps if r.state == DISPUTED)
                for key, reps in shards.items()
                if any(r.state == DISPUTED for r in reps)
            }
            down = []
            for (job, shard), since in sorted(open_.items()):
                if (job, shard, since) not in self.down:
                    self.down[(job, shard, since)] = self.rng.random() < self.arbiter_down
                    self.stats["disputes"] += 1
                if self.down[(job, shard, since)]:
                    down.append((job, shard))
                    continue
                # The arbiter's ruling: the correct root stands, every other one is slashed.
                correct = correct_root(self.jobs[job].manifest, shard)
                for r in shards[(job, shard)]:
                    if r.state in (SUBMITTED, DISPUTED) and r.root != correct:
                        self.rejected[(job, shard)].add(r.asset)
                node.send(ARBITER, self.court, "resolve", job, shard, correct)
                rulings += 1
            node.mine(at)
            if down:
                deadlines = node.read([(self.court, "ruling_deadline", key) for key in down])
                at = self.tick(max(deadlines) + 1 - self.t)
                for job, shard in down:
                    node.send(KEEPER, self.court, "expire", job, shard)
                node.mine(at)
                defaults += len(down)
            if not made and not open_:
                break
        else:
            raise RuntimeError(f"disputes still going after {MAX_PASSES} passes")
        self.stats["challenges"] += challenges
        self.stats["rulings"] += rulings
        self.stats["default_outcomes"] += defaults
        return challenges, rulings, defaults

    def settle(self) -> tuple[int, int]:
        """Past every window and lease: finalize what is done, reclaim and cancel the piled leases."""
        node = self.node
        shards = self.read_shards(self.active)
        ends = [r.deadline for reps in shards.values() for r in reps if r.state in (SUBMITTED, ASSIGNED)]
        at = self.tick(max(1, max(ends, default=0) + 1 - self.t))
        open_disputes = [key for key, reps in shards.items() if any(r.state == DISPUTED for r in reps)]
        if open_disputes:
            deadlines = node.read([(self.court, "ruling_deadline", key) for key in open_disputes])
            self.past_deadline = max(self.past_deadline, sum(d < at for d in deadlines))
        finalized = reclaimed = 0
        done = []
        for (job, shard), reps in sorted(shards.items()):
            live = [r for r in reps if r.state != CANCELLED]
            if not live:
                done.append((job, shard))
            elif all(r.state == SUBMITTED for r in live):
                node.send(KEEPER, self.market, "finalize", job, shard)
                finalized += 1
                done.append((job, shard))
            elif self.jobs[job].piler:
                expired = [r for r in live if r.state == ASSIGNED and r.deadline < at]
                for r in expired:
                    node.send(PILER, self.market, "reclaim", job, shard, r.index)
                if expired and len(expired) == len(live):
                    node.send(PILER, self.market, "cancel", job, shard)
                    done.append((job, shard))
                reclaimed += len(expired)
        node.mine(at)
        self.active.difference_update(done)
        self.stats["shards_finalized"] += finalized
        self.stats["reclaims"] += reclaimed
        return finalized, reclaimed

    def round(self, jobs: int) -> str:
        start = time.monotonic()
        self.post(jobs)
        assigned = self.assign()
        sent, wrong = self.submit()
        challenges, rulings, defaults = self.disputes()
        finalized, reclaimed = self.settle()
        return (
            f"{jobs} jobs posted, {assigned} replicas assigned, {sent} results ({wrong} wrong), "
            f"{challenges} challenges, {rulings} rulings, {defaults} default outcomes, {finalized} shards finalized, "
            f"{reclaimed} piled leases reclaimed; {len(self.active)} shards open; {time.monotonic() - start:.1f} s"
        )

    # ------------------------------------------------------------ the end

    def wind_up(self) -> dict:
        """Withdraws every credit, stake and keeper bond; returns the holdings just before."""
        node = self.node
        before = self.holdings()
        credits = node.read([(self.market, "credits", (a,)) for a in node.accounts])
        owed_accounts = [a for a, c in zip(node.accounts, credits) if c]
        for start in range(0, len(owed_accounts), 64):
            node.send(KEEPER, self.market, "withdraw_many", owed_accounts[start : start + 64])
        stakes = node.read([(self.assets, "stake", (a,)) for a in self.asset_info])
        for asset, stake in zip(self.asset_info.values(), stakes):
            if stake.amount:
                node.send(asset.owner, self.assets, "request_unstake", asset.id, stake.amount)
        for k in (KEEPER, PILER):
            node.send(k, self.keepers, "request_exit")
        node.mine(self.tick(1))
        for asset, stake in zip(self.asset_info.values(), stakes):
            if stake.amount:
                node.send(asset.owner, self.assets, "withdraw_stake", asset.id)
        for k in (KEEPER, PILER):
            node.send(k, self.keepers, "withdraw_bond")
        node.mine(self.tick(DEFAULT_UNBONDING_DELAY + 1))
        return before


def run(args: argparse.Namespace, workdir: Path) -> dict:
    from ape import accounts, networks, project

    started = time.monotonic()
    rng = random.Random(args.seed)
    n_accounts = FIRST_AGENT + len(ASSET_PLAN)
    with Anvil(log=workdir / "anvil.log", accounts=n_accounts) as anvil:
        with networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": anvil.uri}):
            test = accounts.test_accounts
            stack = deploy_stack(project, test[OWNER], treasury=test[TREASURY].address)
            stack.market.set_facilitator(test[ARBITER], True, sender=test[OWNER])
            addresses = stack.addresses()
        node = Node(anvil.uri)
        node.rpc("evm_setAutomine", [False])
        node.rpc("evm_setBlockGasLimit", [hex(2**40)])
        economy = Economy(node, addresses, rng, args.arbiter_down)
        print(f"deployed; setting up {len(PARTIES)} participants and {n_accounts - FIRST_AGENT} assets...", flush=True)
        economy.setup()
        supply_before = economy.holdings()
        wealth_before = economy.wealth()

        rounds = -(-args.jobs // JOBS_PER_ROUND)
        posted = 0
        for r in range(rounds):
            jobs = min(JOBS_PER_ROUND, args.jobs - posted)
            posted += jobs
            print(f"round {r + 1}/{rounds}: {economy.round(jobs)}", flush=True)
        for r in range(DRAIN_ROUNDS):
            if not economy.active:
                break
            print(f"drain round {r + 1}: {economy.round(0)}", flush=True)
        if economy.active:
            raise RuntimeError(f"{len(economy.active)} shards still open after {DRAIN_ROUNDS} rounds without new jobs")

        # Every job finished, and no dispute open (past its deadline or not).
        all_shards = [(j, s) for j, info in economy.jobs.items() for s in range(info.shards)]
        states = economy.read_shards(all_shards)
        now = economy.t
        open_disputes = [key for key, reps in states.items() if any(r.state == DISPUTED for r in reps)]
        deadlines = node.read([(economy.court, "ruling_deadline", key) for key in open_disputes])
        past = sum(d < now for d in deadlines)
        unfinished = sum(j.unfinished for j in node.read([(economy.market, "job", (j,)) for j in economy.jobs]))
        end_before_withdrawals = economy.wind_up()
        print("every credit withdrawn, every stake and keeper bond unbonded and withdrawn", flush=True)
        supply_after = economy.holdings()
        wealth_after = economy.wealth()

        # What the logs say: payments (and whether the root paid for was correct), slashes, disputes.
        finalized = node.logs(economy.market, "ShardFinalized")
        roots = node.read([(economy.market, "output_root", (e.job, e.shard, e.replica)) for e in finalized])
        paid_correct, paid_wrong = Counter(), Counter()
        for e, root in zip(finalized, roots):
            who = economy.index[e.provider.lower()]
            if bytes(root) == correct_root(economy.jobs[e.job].manifest, e.shard):
                paid_correct[who] += e.payment
            else:
                paid_wrong[who] += e.payment
        slashed = Counter()
        for e in node.logs(economy.assets, "StakeSlashed"):
            slashed[economy.owner_of(e.asset)] += e.amount
        opened = node.logs(economy.market, "DisputeOpened")
        settled = node.logs(economy.court, "DisputeSettled")
        reclaims = node.logs(economy.market, "ShardReclaimed")
        rejected = node.logs(economy.market, "ReplicaRejected")
        gas = {economy.index[a]: g for a, g in node.gas.items()}

    parties = {}
    for p in PARTIES:
        delta = sum(wealth_after[k] - wealth_before[k] for k in p.keys)
        correct = sum(paid_correct[k] for k in p.keys)
        parties[p.name] = {
            "attacker": p.attacker,
            "what": p.what,
            "keys": [node.accounts[k] for k in p.keys],
            "wealth_before": sum(wealth_before[k] for k in p.keys),
            "wealth_after": sum(wealth_after[k] for k in p.keys),
            "wealth_delta": delta,
            "paid_for_correct_results": correct,
            "paid_for_wrong_results": sum(paid_wrong[k] for k in p.keys),
            "net_gain": delta - correct if p.attacker else delta,
            "slashed": sum(slashed[k] for k in p.keys),
            "gas_used": sum(gas.get(k, 0) for k in p.keys),
        }
    # Agent keys belong to their asset's owner; they hold no tokens, which the sum below checks.
    agents_delta = sum(wealth_after[i] - wealth_before[i] for i in range(FIRST_AGENT, len(node.accounts)))
    honest = [p for p in PARTIES if p.name.startswith("honest_provider")]
    honest_slashed = sum(1 for p in honest if parties[p.name]["slashed"])
    held_in_contracts = {k: supply_after[k] for k in ("market", "assets", "keepers", "court", "token")}
    conservation = {
        "before": supply_before,
        "after_run_before_withdrawals": end_before_withdrawals,
        "after": supply_after,
        "total_equal": supply_before["total"] == supply_after["total"] == end_before_withdrawals["total"],
        "all_supply_accounted": supply_before["total"] == supply_before["total_supply"]
        and supply_after["total"] == supply_after["total_supply"],
        "market_balance_equals_owed": end_before_withdrawals["market"] == end_before_withdrawals["market_owed"]
        and supply_after["market"] == supply_after["market_owed"],
        "contracts_empty_at_end": not any(held_in_contracts.values()),
        "sum_of_wealth_deltas": sum(wealth_after[i] - wealth_before[i] for i in wealth_before),
        "agent_keys_delta": agents_delta,
    }
    conserved = (
        conservation["total_equal"]
        and conservation["all_supply_accounted"]
        and conservation["market_balance_equals_owed"]
        and conservation["contracts_empty_at_end"]
        and conservation["sum_of_wealth_deltas"] == 0
        and agents_delta == 0
    )
    attackers = {name: v["net_gain"] for name, v in parties.items() if v["attacker"]}
    s = economy.stats
    totals = {
        "jobs": s["jobs_posted"],
        "shards": s["shards_posted"],
        "jobs_by_keeper_client": s["jobs_posted_by_keeper_client"],
        "assignments": s["assignments"],
        "results": s["results"],
        "wrong_results": s["wrong_results"],
        "shards_finalized": len({(e.job, e.shard) for e in finalized}),
        "replicas_paid": len(finalized),
        "wrong_results_paid": sum(
            1 for e, root in zip(finalized, roots) if bytes(root) != correct_root(economy.jobs[e.job].manifest, e.shard)
        ),
        "disputes_opened": len(opened),
        "disputes_by_challenge": sum(1 for e in opened if int(e.challenger, 16)),
        "disputes_by_replica_mismatch": sum(1 for e in opened if not int(e.challenger, 16)),
        "disputes_settled": len(settled),
        "rulings": sum(1 for e in settled if int(e.arbiter, 16)),
        "default_outcomes": sum(1 for e in settled if not int(e.arbiter, 16)),
        "verifier_challenges": s["verifier_challenges"],
        "sybil_challenges": s["sybil_challenges"],
        "false_challenges": s["false_challenges"],
        "two_replica_scenarios_forced": s["two_replica_scenarios_forced"],
        "two_replica_wrong_results": s["two_replica_wrong_results"],
        "replicas_rejected": len(rejected),
        "slashed_total": sum(slashed.values()),
        "reclaims": len(reclaims),
        "piled_leases": s["piled_leases"],
        "piled_leases_refused": s["piled_leases_refused"],
        "disputes_open_at_end": len(open_disputes),
        "jobs_unfinished_at_end": unfinished,
        "blocks": node.blocks,
    }
    goals = {
        "attacker_net_gain_at_most": 0,
        "honest_providers_slashed": 0,
        "disputes_open_past_deadline": 0,
        "conservation": "exact",
    }
    met = {
        "attackers": all(g <= 0 for g in attackers.values()),
        "honest_providers_slashed": honest_slashed == 0,
        "disputes_open_past_deadline": max(past, economy.past_deadline) == 0,
        "conserved": conserved,
    }
    return {
        "benchmark": "economics",
        "seed": args.seed,
        "jobs": args.jobs,
        "quick": args.quick,
        "rounds": rounds,
        "arbiter_down_share": args.arbiter_down,
        "arbiter": "rules from the correct root, a stand-in for its own re-execution "
        "(tested for real in tests/facilitator and tests/adversarial)",
        "parameters": {
            "slash_bps": DEFAULT_PARAMETERS.slash_bps,
            "challenge_bond": DEFAULT_PARAMETERS.challenge_bond,
            "challenge_window": DEFAULT_PARAMETERS.challenge_window,
            "min_stake": DEFAULT_PARAMETERS.min_stake,
            "stake_per_asset": STAKE,
            "keeper_fee_bps": DEFAULT_PARAMETERS.keeper_fee_bps,
            "protocol_fee_bps": DEFAULT_PARAMETERS.protocol_fee_bps,
        },
        "attackers": attackers,
        "honest_providers_slashed": honest_slashed,
        "honest_stake_slashed": sum(parties[p.name]["slashed"] for p in honest),
        "disputes_open_past_deadline": max(past, economy.past_deadline),
        "conserved": conserved,
        "conservation": conservation,
        "totals": totals,
        "participants": parties,
        "refusals": economy.refusals,
        "goals": goals,
        "goals_met": met,
        "all_goals_met": all(met.values()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seconds": round(time.monotonic() - started, 1),
        "logs": str(workdir),
    }


def print_summary(result: dict) -> None:
    t = result["totals"]
    print()
    print(
        f"{t['jobs']} jobs ({t['shards']} shards), {t['results']} results ({t['wrong_results']} wrong, "
        f"{t['wrong_results_paid']} of them paid), {t['disputes_opened']} disputes ({t['disputes_by_challenge']} challenges, "
        f"{t['disputes_by_replica_mismatch']} replica mismatches): {t['rulings']} rulings, {t['default_outcomes']} "
        f"default outcomes; {t['reclaims']} piled leases reclaimed; {t['blocks']} blocks"
    )
    print()
    print(
        f"| {'participant':<28} | {'net gain (base units)':>22} | {'wealth delta':>16} | {'paid, correct work':>18} | "
        f"{'slashed':>13} | goal |"
    )
    print(f"|{'-' * 30}|{'-' * 24}|{'-' * 18}|{'-' * 20}|{'-' * 15}|------|")
    for name, p in result["participants"].items():
        goal = ("≤ 0 " + ("met" if p["net_gain"] <= 0 else "MISSED")) if p["attacker"] else ""
        gain = f"{p['net_gain']:,}" if p["attacker"] else ""
        print(
            f"| {name:<28} | {gain:>22} | {p['wealth_delta']:>16,} | {p['paid_for_correct_results']:>18,} | "
            f"{p['slashed']:>13,} | {goal} |"
        )
    print()
    m = result["goals_met"]
    c = result["conservation"]
    print(
        f"honest providers slashed: {result['honest_providers_slashed']} (goal 0: {'met' if m['honest_providers_slashed'] else 'MISSED'})"
    )
    print(
        f"disputes open past their ruling deadline: {result['disputes_open_past_deadline']} "
        f"(goal 0: {'met' if m['disputes_open_past_deadline'] else 'MISSED'})"
    )
    print(
        f"conservation: {c['before']['total']:,} before, {c['after']['total']:,} after, supply {c['after']['total_supply']:,}; "
        f"market balance == owed: {c['market_balance_equals_owed']}; contracts empty at the end: "
        f"{c['contracts_empty_at_end']}; sum of wealth deltas {c['sum_of_wealth_deltas']} "
        f"(goal exact: {'met' if m['conserved'] else 'MISSED'})"
    )
    for what, reason in result["refusals"].items():
        print(f"refused ({what}): {reason}")
    print(f"the arbiter {result['arbiter']}; down for {result['arbiter_down_share']:.0%} of disputes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=None, help="honest clients' jobs (default 200, --quick 40)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--arbiter-down", type=float, default=0.25, help="share of disputes the arbiter misses")
    parser.add_argument("--quick", action="store_true", help="40 jobs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "economics.json")
    args = parser.parse_args()
    if args.jobs is None:
        args.jobs = 40 if args.quick else 200
    from ape.logging import logger

    logger.set_level("ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="bench-economics-"))
    print(
        f"{args.jobs} jobs, seed {args.seed}, arbiter down for {args.arbiter_down:.0%} of disputes; logs in {workdir}",
        flush=True,
    )
    result = run(args, workdir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out} in {result['seconds']} s")
    if not result["all_goals_met"]:
        missed = [k for k, ok in result["goals_met"].items() if not ok]
        raise SystemExit(f"goals missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
