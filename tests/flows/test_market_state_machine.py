"""The market against its model: a hypothesis state machine drives the real contracts
on anvil with random posts, assignments, results, reclaims, declines, cancels,
challenges (by strangers, clients, and refused providers), rulings, expired
disputes, finalizations, withdrawals, stray transfers and time jumps, and checks
after every step that the chain agrees with the pure model in market_model.py and
that money is conserved.

After every step: the market owes (`owed`) exactly the escrows, credits and open
challenge bonds and holds exactly that plus what was sent to it aside, the asset
registry holds exactly the stakes, and each of them, every balance, replica, job,
stake, leased GPU count, challenge and ruling deadline is the model's; the token
supply never changes; no replica is paid twice (ShardFinalized logs); every
finished job holds no escrow and was refunded once, its budget less what it paid
(JobFinished logs); no open challenge accuses its challenger's own result. Every
settled dispute credits only its challenger, the treasury and the providers it
accused, exactly the bond and the slash; and once time moves on and anyone calls
expire, no dispute stays open past its ruling deadline.

Every step either succeeds on chain or reverts with exactly the reason the model
predicts. Expected reverts are checked with eth_call against the pending block (the
block a transaction would land in): unlike a reverted transaction it mines no block,
so the clock stays where the model has it, and it costs a tenth as much.

Block times are pinned: anvil stamps each block one second after the last, and time
jumps mine an empty block at the chosen time, so the model knows the timestamp every
call will see and boundary cases (a lease's last second, the first second after a
challenge window) are hit exactly.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, replace

import pytest
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from market_model import (
    ASSIGNED,
    CANCELLED,
    DISPUTED,
    OPEN,
    SUBMITTED,
    ZERO_ADDRESS,
    ZERO_ROOT,
    AssetModel,
    KeeperModel,
    MarketModel,
    Payout,
)

from computenet.checkpoints import Checkpoint
from computenet.domain import Parameters, Requirements, Verification
from computenet.receipts import ExecutionReceipt, sign_cancel

TOKEN = 10**6
ROOTS = [keccak(b"output-a"), keccak(b"output-b"), keccak(b"output-c")]
FRESH_ROOT = keccak(b"output-nobody-submitted")

# Hypothesis switches rules off at random in each example (swarm testing), so many
# examples are narrow; 25 examples of up to 50 steps take about 45 s here and reach
# disputes, slashes and refunds in every run. HYPOTHESIS_PROFILE=deep runs 200 of 80.
if os.environ.get("HYPOTHESIS_PROFILE") == "deep":
    MACHINE_SETTINGS = settings(max_examples=200, stateful_step_count=80, deadline=None)
else:
    MACHINE_SETTINGS = settings(max_examples=25, stateful_step_count=50, deadline=None)
MACHINE_SETTINGS = settings(MACHINE_SETTINGS, suppress_health_check=[HealthCheck.too_slow])

# (owner, agent index, spec, stake): different owners, sizes, prices and lease
# capacities; asset 3 expires soon after the start and holds one lease at a time,
# asset 4 holds exactly the minimum stake, so its first slash takes it below the
# minimum. Odd base units make slashes odd, so a reward's share of one rounds down.
CAST = (
    ("provider", 0, dict(vram_mib=81_920, gpu_count=1, price=100, max_leases=3), 1_000 * TOKEN + 17),
    ("provider2", 1, dict(vram_mib=40_960, gpu_count=2, price=150, max_leases=16), 500 * TOKEN + 9),
    ("provider", 2, dict(vram_mib=24_576, gpu_count=4, price=60, max_leases=1, expire_in=6_000), 300 * TOKEN + 13),
    ("provider2", 3, dict(vram_mib=81_920, gpu_count=8, price=300, max_leases=2), 100 * TOKEN),
)
UNKNOWN_ASSET = len(CAST) + 1


def parameters(valid: bool):
    """Market parameters; unless `valid`, now and then out of bounds (keeper fee,
    slash, challenge window)."""

    def values(good, bad):
        return st.sampled_from(good if valid else good + bad)

    return st.builds(
        Parameters,
        keeper_fee_bps=values([0, 100, 333, 1_000], [1_001]),
        protocol_fee_bps=values([0, 50, 777, 1_000], []),
        slash_bps=values([0, 1_000, 2_500, 5_000], [5_001]),
        challenge_window=values([60, 600, 1_800], [59]),
        decline_window=values([1, 60, 3_600], []),
        lease_grace=values([0, 300, 1_200], []),
        min_stake=values([50 * TOKEN, 100 * TOKEN, 200 * TOKEN], []),
        challenge_bond=values([1, 10 * TOKEN, 25 * TOKEN], []),
    )


def mostly():
    """True four times in five: the usual path, with room for the odd one."""
    return st.sampled_from([True, True, True, True, False])


def pick(items, index):
    return items[index % len(items)]


def word(value) -> int:
    """A model value as the 32-byte word the chain returns."""
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(value, "big")
    if isinstance(value, str):
        return int(value, 16)
    return int(value)


# ---------------------------------------------------------------- raw chain access


class Reads:
    """eth_calls, logs and the head block in one JSON-RPC batch: the invariant reads
    a hundred-odd values after every step."""

    def __init__(self, rpc):
        self.rpc = rpc
        self.requests = []

    def call(self, to: str, signature: str, *args) -> int:
        types = signature[signature.index("(") + 1 : -1]
        data = function_signature_to_4byte_selector(signature)
        if types:
            data += encode(types.split(","), list(args))
        self.requests.append(("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"]))
        return len(self.requests) - 1

    def logs(self, address: str, from_block: int, topics: list[bytes]) -> int:
        self.requests.append(
            (
                "eth_getLogs",
                [
                    {
                        "address": address,
                        "fromBlock": hex(from_block),
                        "toBlock": "latest",
                        "topics": [["0x" + t.hex() for t in topics]],
                    }
                ],
            )
        )
        return len(self.requests) - 1

    def head(self) -> int:
        self.requests.append(("eth_getBlockByNumber", ["latest", False]))
        return len(self.requests) - 1

    def run(self) -> list:
        responses = self.rpc.make_batch_request(self.requests)
        results = []
        for (method, _), response in zip(self.requests, responses):
            assert "error" not in response, f"{method} failed: {response}"
            result = response["result"]
            if method == "eth_call":
                raw = bytes.fromhex(result[2:])
                result = [int.from_bytes(raw[i : i + 32], "big") for i in range(0, len(raw), 32)]
            results.append(result)
        return results


def revert_reason(error: dict) -> str:
    data = error.get("data")
    if isinstance(data, str) and data.startswith("0x08c379a0"):
        return decode(["string"], bytes.fromhex(data[10:]))[0]
    return error.get("message", "")


def event_topic(event) -> bytes:
    return keccak(text=event.abi.selector)


# ---------------------------------------------------------------- the fixed cast


@dataclass
class Cast:
    """Everything the machine needs that stays the same across examples."""

    chain: object
    rpc: object  # the raw web3 HTTP provider
    token: object
    assets: object
    keepers: object
    market: object
    court: object
    accounts: dict  # address -> ape account
    names: dict  # role -> address
    agents: list  # agent addresses, by asset
    clients: list
    callers: list  # anyone who may call reclaim/finalize/expire and earn credits
    holders: list  # every address that can hold tokens
    supply: int
    base_model: MarketModel
    topics: dict

    def send(self, contract, method: str, args: tuple, sender: str):
        return getattr(contract, method)(*args, sender=self.accounts[sender])

    def expect_revert(self, contract, method: str, args: tuple, sender: str, reason: str, now: int):
        data = getattr(contract, method).encode_input(*args)
        data = data if isinstance(data, str) else "0x" + bytes(data).hex()
        tx = {"from": sender, "to": contract.address, "data": data}
        response = self.rpc.make_request("eth_call", [tx, "pending"])
        assert "error" in response, (
            f"{method}{args} from {sender} at {now + 1}: model predicted revert {reason!r}, chain succeeded"
        )
        got = revert_reason(response["error"])
        assert got == reason, (
            f"{method}{args} from {sender} at {now + 1}: model predicted {reason!r}, chain said {got!r}"
        )


@pytest.fixture
def cast(
    chain,
    accounts,
    stack,
    token,
    assets,
    keepers,
    market,
    court,
    params,
    owner,
    client,
    provider,
    provider2,
    keeper,
    keeper2,
    verifier,
    facilitator,
    treasury,
    agents,
    register_asset,
    registered_keeper,
):
    client2, outsider = accounts[14], accounts[15]
    for funded in (client2, outsider):  # a second client, and a stranger who challenges
        token.faucet(funded, 1_000_000 * TOKEN, sender=funded)
        token.approve(market, 2**256 - 1, sender=funded)
    people = dict(
        owner=owner,
        client=client,
        client2=client2,
        provider=provider,
        provider2=provider2,
        keeper=keeper,
        keeper2=keeper2,
        verifier=verifier,
        facilitator=facilitator,
        treasury=treasury,
        outsider=outsider,
    )

    start = chain.pending_timestamp
    asset_models = {}
    for owner_name, agent_index, spec, stake in CAST:
        spec = dict(spec)
        if "expire_in" in spec:
            spec["expire"] = start + spec.pop("expire_in")
        asset_id = register_asset(owner=people[owner_name], agent_account=agents[agent_index], stake=stake, **spec)
        on_chain = assets.spec(asset_id)
        asset_models[asset_id] = AssetModel(
            id=asset_id,
            owner=people[owner_name].address,
            agent=agents[agent_index].address,
            gpu_count=on_chain.gpu_count,
            vram_mib=on_chain.vram_mib,
            price=on_chain.price,
            expire=on_chain.expire,
            max_leases=on_chain.max_leases,
            stake=stake,
        )
    assert sorted(asset_models) == list(range(1, len(CAST) + 1))

    keeper_models = {
        k.address: KeeperModel(id=keepers.active_keeper_id(k), address=k.address, bond=100 * TOKEN)
        for k in (keeper, keeper2)
    }
    all_accounts = {a.address: a for a in list(accounts)[:16]}
    holders = list(all_accounts) + [market.address, assets.address, keepers.address, court.address]
    balances = {h: token.balanceOf(h) for h in holders}
    allowances = {a: token.allowance(a, market) for a in all_accounts}
    assert set(allowances.values()) <= {0, 2**256 - 1}
    assert market.owed() == balances[market.address]
    supply = token.totalSupply()
    assert sum(balances.values()) == supply
    assert tuple(market.parameters()) == params.as_tuple()
    head = chain.blocks.head

    base = MarketModel(
        params=params,
        market=market.address,
        assets_contract=assets.address,
        treasury=treasury.address,
        facilitators={facilitator.address},
        min_keeper_bond=keepers.min_bond(),
        unbonding_delay=assets.UNBONDING_DELAY(),
        now=head.timestamp,
        balances=balances,
        assets=asset_models,
        keepers=keeper_models,
        approved={a for a, allowed in allowances.items() if allowed},
    )
    rpc = chain.provider.web3.provider
    yield Cast(
        chain=chain,
        rpc=rpc,
        token=token,
        assets=assets,
        keepers=keepers,
        market=market,
        court=court,
        accounts=all_accounts,
        names={k: v.address for k, v in people.items()},
        agents=[a.address for a in agents],
        clients=[client.address, client2.address],
        callers=[keeper.address, keeper2.address, verifier.address, outsider.address],
        holders=holders,
        supply=supply,
        base_model=base,
        topics={
            "posted": event_topic(market.JobPosted),
            "finalized": event_topic(market.ShardFinalized),
            "contribution": event_topic(market.ContributionPaid),
            "finished": event_topic(market.JobFinished),
        },
    )
    rpc.make_request("anvil_removeBlockTimestampInterval", [])


# ---------------------------------------------------------------- the machine


class MarketMachine(RuleBasedStateMachine):
    """Rules pick among the model's jobs, shards and replicas; most take the usual
    path and some the odd one (a stranger, a stale receipt, a closed window), for
    the model to predict the revert."""

    def __init__(self, cast: Cast):
        super().__init__()
        self.cast = cast
        # ape's isolation resets the chain between tests, not between examples.
        self.snapshot = cast.chain.snapshot()
        cast.rpc.make_request("anvil_setBlockTimestampInterval", [1])
        head = cast.rpc.make_request("eth_getBlockByNumber", ["latest", False])["result"]
        self.model = copy.deepcopy(cast.base_model)
        self.model.now = int(head["timestamp"], 16)
        self.from_block = int(head["number"], 16) + 1

    def teardown(self):
        self.cast.chain.restore(self.snapshot)

    # ------------------------------------------------------------ helpers

    def act(self, op, model_args: tuple, contract, method: str, args: tuple, sender: str):
        """Runs one step in the model, then on chain: sent if the model says it
        succeeds, called expecting the model's revert reason otherwise."""
        now = self.model.now
        reason = self.model.run(op, *model_args)
        if reason is None:
            receipt = self.cast.send(contract, method, args, sender)
            assert receipt.timestamp == self.model.now
        else:
            self.cast.expect_revert(contract, method, args, sender, reason, now)
        return reason

    def mine_until(self, timestamp: int):
        """Mines an empty block at `timestamp` (if in the future): the next call runs at timestamp + 1."""
        if timestamp > self.model.now:
            self.cast.chain.mine(timestamp=timestamp)
            self.model.advance(timestamp - self.model.now)

    def requirements(self, shards, replication, mode, gpu_count, min_vram, gpu_seconds, max_price, slack):
        """Requirements whose deadline leaves `slack` seconds after one lease from
        the next block (negative: too soon); `mode` "mismatch" pairs the wrong
        verification mode with the replication."""
        if replication > 1:
            verification = Verification.OPTIMISTIC if mode == "mismatch" else Verification.REPLICATED
        else:
            verification = {
                "match": Verification.OPTIMISTIC,
                "spot": Verification.SPOT_CHECK,
                "mismatch": Verification.REPLICATED,
            }[mode]
        req = Requirements(
            min_vram_mib=min_vram,
            gpu_count=gpu_count,
            max_price=max_price,
            max_gpu_seconds=gpu_seconds,
            deadline=0,
            shard_count=shards,
            replication=replication,
            verification=verification,
        )
        deadline = self.model.now + 1 + self.model.lease_seconds(req) + slack
        return replace(req, deadline=deadline)

    def do_post(self, sender, req):
        manifest = keccak(text=f"manifest {len(self.model.jobs) + 1}")
        return self.act(
            self.model.post_job,
            (sender, manifest, req),
            self.cast.market,
            "post_job",
            (manifest, req.as_tuple()),
            sender,
        )

    def do_submit(self, job_id, shard, replica, root, gpu_seconds, forgery):
        model = self.model
        rep = model.replica(job_id, shard, replica)
        job = model.jobs[job_id]
        agent = model.assets[rep.asset].agent if rep.asset else ZERO_ADDRESS
        if agent == ZERO_ADDRESS:  # never leased, or sold since: the key it was registered with
            agent = self.cast.agents[CAST[rep.asset - 1][1] if rep.asset else 0]
        signer_address, lease, signed_seconds = agent, rep.lease, gpu_seconds
        if forgery == "wrong key":
            signer_address = pick(self.cast.agents, self.cast.agents.index(agent) + 1)
        elif forgery == "stale lease":
            lease = rep.lease - 1 if rep.lease else rep.lease + 1
        elif forgery == "other gpu-seconds":
            signed_seconds = (gpu_seconds + 1) % 2**32
        receipt = ExecutionReceipt(
            job=job_id,
            shard=shard,
            replica=replica,
            lease=lease,
            asset=rep.asset,
            manifest=job.manifest,
            output_root=root,
            gpu_seconds=signed_seconds,
            exit_code=0,
        )
        signature = receipt.sign(
            self.cast.accounts[signer_address].private_key, self.cast.chain.chain_id, self.cast.market.address
        )
        # A signature over other fields recovers to an unrelated address.
        recovered = signer_address if forgery in ("none", "wrong key") else "forged"
        return self.act(
            model.submit_result,
            (job_id, shard, replica, root, gpu_seconds, recovered),
            self.cast.market,
            "submit_result",
            (job_id, shard, replica, root, gpu_seconds, 0, signature),
            self.cast.names["provider"],
        )

    def gpu_seconds(self, job_id, choice, shard=0, replica=0):
        """A claim: fixed points of the job's cap, or "ran" (the most the lease's time so far
        allows on the job's GPUs, as a measured run claims) and one past it."""
        job = self.model.jobs.get(job_id)
        cap = job.req.max_gpu_seconds if job else 600
        ran = 1
        if job and shard < len(job.replicas) and replica < len(job.replicas[shard]):
            ran = min(
                2**32 - 1, max(0, self.model.now + 1 - job.replicas[shard][replica].since) * max(1, job.req.gpu_count)
            )
        return {
            "zero": 0,
            "half": cap // 2,
            "cap": cap,
            "over": cap + 500,
            "max": 2**32 - 1,
            "ran": ran,
            "ran+1": min(ran + 1, 2**32 - 1),
        }[choice]

    def shards_with(self, *states):
        return sorted({(j, s) for j, s, _ in self.model.replicas(*states)})

    # ------------------------------------------------------------ clients

    job_params = dict(
        shards=st.integers(1, 3),
        replication=st.sampled_from([1, 1, 2, 2, 3]),
        mode=st.sampled_from(["match", "match", "match", "spot", "mismatch"]),
        gpu_count=st.sampled_from([0, 1, 1, 2, 4]),
        min_vram=st.sampled_from([0, 24_576, 40_960, 81_920]),
        gpu_seconds=st.sampled_from([60, 600, 1_800, 3_600]),
        max_price=st.sampled_from([50, 100, 150, 400, 400]),
    )

    @initialize(parameters=st.one_of(st.none(), parameters(valid=True)))
    def market_parameters(self, parameters):
        """Each example runs under the deployed parameters or a random valid set."""
        if parameters is not None:
            owner = self.cast.names["owner"]
            self.act(
                self.model.set_parameters,
                (parameters,),
                self.cast.market,
                "set_parameters",
                (parameters.as_tuple(),),
                owner,
            )

    @initialize(
        jobs=st.lists(
            st.fixed_dictionaries(dict(client=st.integers(0, 1), slack=st.integers(0, 8_000), **job_params)),
            min_size=1,
            max_size=3,
        )
    )
    def first_jobs(self, jobs):
        for job in jobs:
            fields = {k: v for k, v in job.items() if k != "client"}
            self.do_post(self.cast.clients[job["client"]], self.requirements(**{**fields, "mode": "match"}))

    @rule(client=st.integers(0, 1), slack=st.one_of(st.sampled_from([-1, 0]), st.integers(0, 8_000)), **job_params)
    def post_job(self, client, slack, **req):
        self.do_post(self.cast.clients[client], self.requirements(slack=slack, **req))

    @precondition(lambda self: self.model.jobs)
    @rule(choice=st.integers(0, 255), by_client=mostly())
    def cancel(self, choice, by_client):
        job_id, shard = pick(self.model.shards(), choice)
        client = self.model.jobs[job_id].client
        sender = client if by_client else pick([c for c in self.cast.clients if c != client], 0)
        self.act(self.model.cancel, (sender, job_id, shard), self.cast.market, "cancel", (job_id, shard), sender)

    @precondition(lambda self: self.model.jobs)
    @rule(choice=st.integers(0, 255), by_client=mostly())
    def cancel_signed(self, choice, by_client):
        """A client that sends no transactions signs its cancel; an outsider relays it."""
        job_id, shard = pick(self.model.shards(), choice)
        client = self.model.jobs[job_id].client
        signer = client if by_client else pick([c for c in self.cast.clients if c != client], 0)
        until = 2**40
        chain_id = self.cast.chain.chain_id
        sig = sign_cancel(
            self.cast.accounts[signer].private_key, chain_id, self.cast.market.address, job_id, shard, until
        )
        outsider = self.cast.names["outsider"]
        args = (job_id, shard, until, sig)
        self.act(
            self.model.cancel_signed, (signer, job_id, shard), self.cast.court, "cancel_with_signature", args, outsider
        )

    # ------------------------------------------------------------ keepers

    @rule(
        eligible=mostly(),
        choice=st.integers(0, 255),
        keeper=st.sampled_from(["keeper", "keeper2", "keeper", "keeper2", "outsider"]),
        asset=st.integers(1, UNKNOWN_ASSET),
    )
    def assign(self, eligible, choice, keeper, asset):
        """Mostly an assignment the model finds valid; otherwise any keeper (or
        not one), any asset (or an unknown one) on any shard (or an unknown job or
        shard), for the model to say which check stops it."""
        candidates = self.model.eligible_assignments()
        if eligible and candidates:
            job_id, shard, asset = pick(candidates, choice)
            keeper = "keeper" if keeper == "outsider" else keeper
        else:
            unknown = [(len(self.model.jobs) + 1, 0), (1, 3)]
            job_id, shard = pick(self.model.shards() + unknown, choice)
        sender = self.cast.names[keeper]
        self.act(
            self.model.assign,
            (sender, job_id, shard, asset),
            self.cast.market,
            "assign",
            (job_id, shard, asset),
            sender,
        )

    @precondition(lambda self: self.model.replicas(ASSIGNED))
    @rule(choice=st.integers(0, 255), caller=st.integers(0, 3))
    def reclaim(self, choice, caller):
        job_id, shard, replica = pick(self.model.replicas(ASSIGNED), choice)
        sender = self.cast.callers[caller]
        self.act(
            self.model.reclaim,
            (sender, job_id, shard, replica),
            self.cast.market,
            "reclaim",
            (job_id, shard, replica),
            sender,
        )

    @precondition(lambda self: self.model.jobs)
    @rule(choice=st.integers(0, 255), ready=mostly(), caller=st.integers(0, 3))
    def finalize(self, choice, ready, caller):
        """Mostly a shard with results in; otherwise any shard."""
        shards = (ready and self.shards_with(SUBMITTED)) or self.model.shards()
        job_id, shard = pick(shards, choice)
        sender = self.cast.callers[caller]
        self.act(self.model.finalize, (sender, job_id, shard), self.cast.market, "finalize", (job_id, shard), sender)

    # ------------------------------------------------------------ agents

    @precondition(lambda self: self.model.jobs)
    @rule(
        choice=st.integers(0, 255),
        assigned=mostly(),
        replica=st.integers(0, 3),
        root=st.sampled_from(ROOTS[:1] * 3 + ROOTS[1:] + [ZERO_ROOT]),
        gpu_seconds=st.sampled_from(["zero", "half", "cap", "over", "max", "ran", "ran", "ran+1"]),
        forgery=st.sampled_from(["none"] * 6 + ["wrong key", "stale lease", "other gpu-seconds"]),
    )
    def submit(self, choice, assigned, replica, root, gpu_seconds, forgery):
        """Mostly an assigned replica's result; otherwise one for any replica index,
        live or not, in range or not."""
        leased = self.model.replicas(ASSIGNED)
        if assigned and leased:
            job_id, shard, replica = pick(leased, choice)
        else:
            job_id, shard = pick(self.model.shards(), choice)
            if replica >= self.model.jobs[job_id].req.replication:
                # The contract stops at the index check, before reading the signature.
                reason = self.model.run(self.model.submit_result, job_id, shard, replica, root, 1, "")
                assert reason == "job_market: unknown replica"
                self.cast.expect_revert(
                    self.cast.market,
                    "submit_result",
                    (job_id, shard, replica, root, 1, 0, b"\x00" * 65),
                    self.cast.names["provider"],
                    reason,
                    self.model.now,
                )
                return
        self.do_submit(job_id, shard, replica, root, self.gpu_seconds(job_id, gpu_seconds, shard, replica), forgery)

    @precondition(lambda self: self.model.replicas(ASSIGNED))
    @rule(
        choice=st.integers(0, 255),
        seconds=st.sampled_from(["ran", "ran", "half", "ran+1", "zero"]),
        late=st.booleans(),
        forgery=st.sampled_from(["none"] * 5 + ["wrong key", "stale lease", "zero hash"]),
    )
    def commit_checkpoint(self, choice, seconds, late, forgery):
        """An assigned replica's checkpoint, mostly as its agent signed it, relayed by a
        stranger; sometimes after its lease deadline (as keepers relay before reclaiming)."""
        model = self.model
        job_id, shard, replica = pick(model.replicas(ASSIGNED), choice)
        rep, job = model.replica(job_id, shard, replica), model.jobs[job_id]
        if late:
            self.mine_until(rep.deadline + 1)
        ran = (min(model.now + 1, rep.deadline) - rep.since) * max(1, job.req.gpu_count)
        gpu_seconds = min(2**32 - 1, {"ran": ran, "half": ran // 2, "ran+1": ran + 1, "zero": 0}[seconds])
        checkpoint = ZERO_ROOT if forgery == "zero hash" else keccak(b"checkpoint %d" % model.now)
        agent = model.assets[rep.asset].agent
        if agent == ZERO_ADDRESS:  # sold since: the key it was registered with
            agent = self.cast.agents[CAST[rep.asset - 1][1]]
        signer = pick(self.cast.agents, self.cast.agents.index(agent) + 1) if forgery == "wrong key" else agent
        lease = rep.lease + 1 if forgery == "stale lease" else rep.lease
        signed = Checkpoint(job_id, shard, replica, lease, rep.asset, job.manifest, checkpoint, gpu_seconds).sign(
            self.cast.accounts[signer].private_key, self.cast.chain.chain_id, self.cast.market.address
        )
        recovered = "forged" if forgery == "stale lease" else signer
        self.act(
            model.commit_checkpoint,
            (job_id, shard, replica, checkpoint, gpu_seconds, recovered),
            self.cast.market,
            "commit_checkpoint",
            signed.market_args(),
            self.cast.names["outsider"],
        )

    @precondition(lambda self: self.model.replicas(ASSIGNED))
    @rule(choice=st.integers(0, 255), own_agent=mostly())
    def decline(self, choice, own_agent):
        job_id, shard, replica = pick(self.model.replicas(ASSIGNED), choice)
        agent = self.model.assets[self.model.replica(job_id, shard, replica).asset].agent
        sender = agent if own_agent else pick(self.cast.agents, self.cast.agents.index(agent) + 1)
        reason = b"image not found".ljust(32, b"\x00")
        self.act(
            self.model.decline,
            (sender, job_id, shard, replica),
            self.cast.market,
            "decline",
            (job_id, shard, replica, reason),
            sender,
        )

    # ------------------------------------------------------------ the dispute court

    @precondition(lambda self: self.model.jobs)
    @rule(
        choice=st.integers(0, 255),
        live=mostly(),
        who=st.sampled_from(["stranger", "stranger", "verifier", "client", "other client", "provider", "agent"]),
    )
    def challenge(self, choice, live, who):
        """Mostly a shard with results inside their window (handed in first if
        there is none); challenged by a stranger, the verifier, the job's client or
        another client, a provider, or an agent key (the last two refused while
        their asset holds a live replica of the shard; an agent key that holds no
        tokens is refused by the token)."""
        if live and not self.challengeable():
            self.hand_in(choice)
        shards = (live and self.challengeable()) or self.model.shards()
        job_id, shard = pick(shards, choice)
        client = self.model.jobs[job_id].client
        sender = {
            "stranger": self.cast.names["outsider"],
            "verifier": self.cast.names["verifier"],
            "client": client,
            "other client": pick([c for c in self.cast.clients if c != client], 0),
            "provider": pick([self.cast.names["provider"], self.cast.names["provider2"]], choice),
            "agent": pick(self.cast.agents, choice),
        }[who]
        self.do_challenge(job_id, shard, sender)

    @precondition(lambda self: self.model.jobs)
    @rule(
        choice=st.integers(0, 255),
        disputed=mostly(),
        root=st.integers(0, 5),
        facilitator=mostly(),
        late=st.sampled_from([False, False, False, True]),
    )
    def resolve(self, choice, disputed, root, facilitator, late):
        """Mostly a facilitator on a disputed shard before its ruling deadline,
        upholding one of its roots, a root nobody submitted, or none (the job is not
        reproducible); now and then one second past the deadline."""
        if disputed and not self.model.disputes():
            self.dispute_one(choice)
        shards = (disputed and self.model.disputes()) or self.model.shards()
        job_id, shard = pick(shards, choice)
        if late and (job_id, shard) in self.model.disputes():
            self.mine_until(self.model.ruling_deadline(job_id, shard)[1])
        sender = self.cast.names["facilitator" if facilitator else "outsider"]
        self.do_resolve(job_id, shard, self.ruling_root(job_id, shard, root), sender)

    @precondition(lambda self: self.model.jobs)
    @rule(choice=st.integers(0, 255), disputed=mostly(), late=mostly(), caller=st.integers(0, 3))
    def expire(self, choice, disputed, late, caller):
        """Anyone applies the default outcome: mostly to a dispute past its ruling
        deadline; otherwise too early, or to a shard with no dispute."""
        shards = (disputed and self.model.disputes()) or self.model.shards()
        job_id, shard = pick(shards, choice)
        if late and (job_id, shard) in self.model.disputes():
            self.mine_until(self.model.ruling_deadline(job_id, shard)[1])
        self.settle(self.model.expire, "expire", (job_id, shard), self.cast.callers[caller])

    def ruling_root(self, job_id, shard, choice):
        """One of the roots the ruling applies to, a root nobody submitted, or zero."""
        reps = self.model.jobs[job_id].replicas[shard]
        roots = sorted({rep.root for rep in reps if rep.state in (DISPUTED, SUBMITTED)})
        return pick(roots + [FRESH_ROOT, ZERO_ROOT], choice)

    def do_challenge(self, job_id, shard, sender):
        return self.act(
            self.model.challenge, (sender, job_id, shard), self.cast.court, "challenge", (job_id, shard), sender
        )

    def do_resolve(self, job_id, shard, valid_root, sender):
        return self.settle(self.model.resolve, "resolve", (job_id, shard, valid_root), sender)

    def money(self):
        """(every account's market credit, the market's token balance), from the chain."""
        reads = Reads(self.cast.rpc)
        credits = {a: reads.call(self.cast.market.address, "credits(address)", a) for a in self.cast.accounts}
        balance = reads.call(self.cast.token.address, "balanceOf(address)", self.cast.market.address)
        got = reads.run()
        return {a: got[i][0] for a, i in credits.items()}, got[balance][0]

    def settle(self, op, method: str, args: tuple, sender: str):
        """Rules on or expires a dispute (`args` start with job and shard), and
        checks on chain who gained from it: only its challenger, the treasury and
        the owners of the replicas it accused, no one lost a credit, and together
        they gained exactly the bond and what was slashed into the market."""
        job_id, shard = args[:2]
        challenger, bond = self.model.jobs[job_id].challenges.get(shard, (None, 0))
        accused = {
            self.model.assets[rep.asset].owner
            for rep in self.model.jobs[job_id].replicas[shard]
            if rep.state == DISPUTED
        }
        parties = {challenger, self.model.treasury} | accused
        credits, balance = self.money()
        reason = self.act(op, (sender, *args), self.cast.court, method, args, sender)
        if reason is None:
            after, balance_after = self.money()
            gained = {a: after[a] - credits[a] for a in after if after[a] != credits[a]}
            assert all(amount > 0 for amount in gained.values()), f"{method}{args}: credits fell {gained}"
            assert set(gained) <= parties, f"{method}{args}: {set(gained) - parties} gained from the dispute"
            assert sum(gained.values()) == bond + balance_after - balance, f"{method}{args}: {gained}, bond {bond}"
        return reason

    def expire_overdue(self, caller):
        """Whoever comes along expires every dispute past its ruling deadline."""
        model = self.model
        while overdue := [d for d in model.disputes() if model.ruling_deadline(*d)[1] < model.now + 1]:
            assert self.settle(model.expire, "expire", overdue[0], caller) is None
        assert all(model.now + 1 <= model.ruling_deadline(*d)[1] for d in model.disputes())

    # ------------------------------------------------------------ money out

    @rule(
        who=st.sampled_from(
            ["client", "client2", "provider", "provider2", "keeper", "keeper2", "verifier", "treasury", "outsider"]
        ),
        how=st.sampled_from(["to self", "to self", "to self", "to another", "to zero", "many"]),
    )
    def withdraw(self, who, how):
        """One account withdraws to itself, to another or (refused) to no one; or
        anyone pays out a batch."""
        sender = self.cast.names[who]
        if how == "many":
            accounts = [self.cast.names[name] for name in ("provider", "provider2", "keeper", "treasury", "provider")]
            self.act(self.model.withdraw_many, (accounts,), self.cast.market, "withdraw_many", (accounts,), sender)
            return
        receiver = {"to self": sender, "to another": self.cast.names["client"], "to zero": ZERO_ADDRESS}[how]
        self.act(self.model.withdraw, (sender, receiver), self.cast.market, "withdraw", (receiver,), sender)

    # ------------------------------------------------------------ time

    @rule(
        past_deadline=st.sampled_from([False, False, False, True]),
        seconds=st.integers(0, 2_000),
        choice=st.integers(0, 255),
        caller=st.integers(0, 3),
    )
    def advance(self, past_deadline, seconds, choice, caller):
        """Lets up to 2,000 s pass, or now and then runs past a job's deadline; then
        anyone expires the disputes no one ruled on by their deadline, and none is
        left open past it."""
        if past_deadline and self.model.jobs:
            self.mine_until(pick(list(self.model.jobs.values()), choice).req.deadline + seconds % 100)
        else:
            self.mine_until(self.model.now + seconds)
        self.expire_overdue(self.cast.callers[caller])

    @rule(who=st.sampled_from(["client", "outsider", "provider2"]), amount=st.sampled_from([1, 7 * TOKEN + 3]))
    def send_aside(self, who, amount):
        """Someone transfers tokens straight to the market, outside its paths: it
        then holds more than it owes, and owes no one more for it."""
        sender = self.cast.names[who]
        self.act(
            self.model.send_aside,
            (sender, amount),
            self.cast.token,
            "transfer",
            (self.cast.market.address, amount),
            sender,
        )

    @rule(
        kind=st.sampled_from(
            ["lease end", "challenge end", "decline window", "last lease", "job deadline", "ruling deadline"]
        ),
        side=st.sampled_from(["before", "after"]),
        choice=st.integers(0, 255),
    )
    def at_boundary(self, kind, side, choice):
        """Jumps to the last second before a time boundary or the first after it,
        tries the call that only the other side allows (the model must predict its
        revert), then makes the call this side allows. Boundaries: a lease's end
        (submit | reclaim), a shard's challenge windows' end (challenge | finalize),
        a decline window's end (decline | -), the last second a lease on an asset
        still ends by the job's deadline and the asset's expiry (assign | -), the
        deadline (- | cancel a shard with replicas out), a dispute's ruling deadline
        (resolve | expire)."""
        model, cast = self.model, self.cast
        keeper, verifier = cast.names["keeper"], cast.names["verifier"]
        # Set the stage if nothing is there yet: post a job, lease a replica, hand in its result.
        if kind == "last lease" and not model.eligible_assignments():
            self.post_feasible(choice)
        if kind in ("lease end", "decline window", "challenge end", "job deadline") and not model.replicas(ASSIGNED):
            self.lease_one(choice, replicated=kind == "job deadline")
        if kind == "challenge end" and not model.replicas(SUBMITTED) and model.replicas(ASSIGNED):
            self.do_submit(*pick(model.replicas(ASSIGNED), choice), ROOTS[0], 1, "none")
        if kind == "ruling deadline" and not model.disputes():
            self.dispute_one(choice)
        if kind == "decline window":
            # Only a lease younger than the window has its end ahead.
            def young():
                return [
                    key
                    for key in model.replicas(ASSIGNED)
                    if model.replica(*key).since + model.params.decline_window > model.now
                ]

            if not young():
                self.lease_one(choice, fresh=True)
            targets = young()
        elif kind == "lease end":
            targets = model.replicas(ASSIGNED)
        elif kind == "challenge end":
            targets = self.shards_with(SUBMITTED)
        elif kind == "ruling deadline":
            targets = model.disputes()
        elif kind == "last lease":
            # Half the time, one whose asset expires before the job's deadline
            # (renewed to do so if need be), so the expiry is the boundary.
            targets = model.eligible_assignments()
            if targets and choice % 2:
                expiring = [(j, s, a) for j, s, a in targets if model.assets[a].expire < model.jobs[j].req.deadline]
                if not expiring:
                    j, s, a = pick(targets, choice)
                    asset = model.assets[a]
                    self.act(
                        model.renew,
                        (a, model.jobs[j].req.deadline - 1),
                        cast.assets,
                        "renew",
                        (a, model.jobs[j].req.deadline - 1),
                        asset.owner,
                    )
                    expiring = [(j, s, a)] if a in {x for _, _, x in model.eligible_assignments()} else []
                targets = expiring
        else:
            targets = [
                (j, s)
                for j, s in self.shards_with(OPEN)
                if {ASSIGNED, SUBMITTED, DISPUTED} & {rep.state for rep in model.jobs[j].replicas[s]}
            ]
        if not targets:
            return
        target = pick(targets, choice)
        job_id, shard = target[0], target[1]
        job = model.jobs[job_id]

        def submit():
            self.do_submit(*target, ROOTS[0], 1, "none")

        def reclaim():
            self.act(model.reclaim, (keeper, *target), cast.market, "reclaim", target, keeper)

        def challenge():
            self.do_challenge(job_id, shard, verifier)

        def finalize():
            self.act(model.finalize, (keeper, job_id, shard), cast.market, "finalize", (job_id, shard), keeper)

        def decline():
            agent = model.assets[model.replica(*target).asset].agent
            reason = b"no capacity".ljust(32, b"\x00")
            self.act(model.decline, (agent, *target), cast.market, "decline", (*target, reason), agent)

        def assign():
            asset = target[2]  # it passed every check before the jump
            self.act(
                model.assign, (keeper, job_id, shard, asset), cast.market, "assign", (job_id, shard, asset), keeper
            )

        def cancel():
            self.act(model.cancel, (job.client, job_id, shard), cast.market, "cancel", (job_id, shard), job.client)

        def resolve():
            self.do_resolve(job_id, shard, self.ruling_root(job_id, shard, choice), cast.names["facilitator"])

        def expire():
            self.settle(model.expire, "expire", (job_id, shard), keeper)

        # (last second of "before", call allowed before, call allowed after)
        last, before, after = {
            "lease end": (lambda: model.replica(*target).deadline, submit, reclaim),
            "challenge end": (
                lambda: max(rep.deadline for rep in job.replicas[shard] if rep.state == SUBMITTED),
                challenge,
                finalize,
            ),
            "decline window": (lambda: model.replica(*target).since + model.params.decline_window, decline, decline),
            "last lease": (
                lambda: min(job.req.deadline, model.assets[target[2]].expire) - model.lease_seconds(job.req),
                assign,
                assign,
            ),
            "job deadline": (lambda: job.req.deadline, cancel, cancel),
            "ruling deadline": (lambda: model.ruling_deadline(job_id, shard)[1], resolve, expire),
        }[kind]
        boundary = last()
        if side == "before":
            if boundary - 1 < model.now:
                return
            self.mine_until(boundary - 1)
            if after is not before:
                after()
            before()
        else:
            self.mine_until(boundary)
            if after is not before:
                before()
            after()

    # ------------------------------------------------------------ the happy path

    @rule(
        moves=st.lists(
            st.tuples(
                st.integers(0, 255),
                st.sampled_from(ROOTS[:1] * 3 + ROOTS[1:2]),
                st.sampled_from(["zero", "half", "cap", "over"]),
            ),
            min_size=1,
            max_size=8,
        ),
        keeper=st.sampled_from(["keeper", "keeper2"]),
    )
    def progress(self, moves, keeper):
        """Moves unfinished shards along their ordinary life, one step per move:
        rule on a dispute (or expire it past its ruling deadline), submit or
        reclaim a lease, assign an open replica (or cancel it if no asset can take
        it), or, with every result in, now and then have a stranger or the client
        challenge them, else wait out the challenge windows and finalize; with
        nothing to move, post a job some asset can take. Swarm testing switches
        rules off at random; this one alone still gets jobs paid. The invariants
        are checked after every move."""
        for choice, root, gpu_seconds in moves:
            shards = self.movable_shards()
            if not shards:
                self.post_feasible(choice)
                shards = self.movable_shards()
            if not shards:
                return
            self.move(pick(shards, choice), choice, root, gpu_seconds, keeper)
            self.chain_agrees_with_model()

    def movable_shards(self):
        """Shards with a next step on the happy path: a dispute, a lease, results
        to finalize, an open replica some asset can take, or open replicas no asset
        ever can take (no lease fits before the deadline) to cancel."""
        model = self.model
        eligible = {(j, s) for j, s, _ in model.eligible_assignments()}
        movable = []
        for job_id, shard in self.unfinished_shards():
            job = model.jobs[job_id]
            states = {rep.state for rep in job.replicas[shard]}
            if states & {DISPUTED, ASSIGNED} or (job_id, shard) in eligible:
                movable.append((job_id, shard))
            elif OPEN not in states:
                movable.append((job_id, shard))  # all in: finalize
            elif states <= {OPEN, CANCELLED} and model.now + 1 + model.lease_seconds(job.req) > job.req.deadline:
                movable.append((job_id, shard))  # no lease fits any more: cancel
            elif model.now + 1 > job.req.deadline:
                movable.append((job_id, shard))  # past the deadline: cancel what is open, keep the rest
        return movable

    def move(self, job_shard, choice, root, gpu_seconds, keeper):
        model, cast = self.model, self.cast
        job_id, shard = job_shard
        job = model.jobs[job_id]
        reps = job.replicas[shard]
        states = [rep.state for rep in reps]
        options = [a for j, s, a in model.eligible_assignments() if (j, s) == (job_id, shard)]
        if DISPUTED in states and model.now + 1 <= model.ruling_deadline(job_id, shard)[1]:
            self.do_resolve(job_id, shard, self.ruling_root(job_id, shard, choice), cast.names["facilitator"])
        elif DISPUTED in states:
            self.settle(model.expire, "expire", (job_id, shard), cast.callers[choice % len(cast.callers)])
        elif ASSIGNED in states:
            replica = states.index(ASSIGNED)
            if model.now + 1 <= reps[replica].deadline:
                claim = min(self.gpu_seconds(job_id, gpu_seconds), self.gpu_seconds(job_id, "ran", shard, replica))
                self.do_submit(job_id, shard, replica, root, claim, "none")
            else:
                sender = cast.names[keeper]
                self.act(
                    model.reclaim,
                    (sender, job_id, shard, replica),
                    cast.market,
                    "reclaim",
                    (job_id, shard, replica),
                    sender,
                )
        elif options:
            asset = pick(options, choice)
            sender = cast.names["keeper"] if model.keepers[cast.names[keeper]].exiting else cast.names[keeper]
            self.act(
                model.assign, (sender, job_id, shard, asset), cast.market, "assign", (job_id, shard, asset), sender
            )
        elif OPEN in states:
            self.act(model.cancel, (job.client, job_id, shard), cast.market, "cancel", (job_id, shard), job.client)
        elif choice % 4 == 0 and (job_id, shard) in self.challengeable():
            sender = pick([cast.names["outsider"], job.client], choice // 4)
            self.do_challenge(job_id, shard, sender)
        else:
            self.mine_until(max(rep.deadline for rep in reps if rep.state == SUBMITTED))
            sender = cast.callers[choice % len(cast.callers)]
            self.act(model.finalize, (sender, job_id, shard), cast.market, "finalize", (job_id, shard), sender)

    def post_feasible(self, choice, replicated=False):
        """Posts a job that some asset can take now (when one can take any), so a
        rule that needs work never finds the market empty."""
        model = self.model
        assets = [
            a
            for a in model.assets.values()
            if a.active
            and a.available >= model.params.min_stake
            and a.price <= 400
            and a.agent != ZERO_ADDRESS
            and a.gpus_leased < a.gpu_count
        ]
        if not assets:
            return
        asset = pick(assets, choice)
        replication = 2 + choice % 2 if replicated or choice % 3 == 0 else 1
        req = self.requirements(
            shards=1 + choice % 2,
            replication=replication,
            mode="match",
            gpu_count=min(asset.gpu_count, 1),
            min_vram=0,
            gpu_seconds=600,
            max_price=400,
            slack=3_000,
        )
        if model.now + 1 + model.lease_seconds(req) <= asset.expire:
            self.do_post(self.cast.clients[choice % 2], req)

    def lease_one(self, choice, replicated=False, fresh=False):
        """Assigns an eligible replica (of a replicated shard, if asked), posting a
        job for it first if need be (or if asked for a fresh one)."""

        def options():
            return [
                (j, s, a)
                for j, s, a in self.model.eligible_assignments()
                if not replicated or self.model.jobs[j].req.replication > 1
            ]

        if fresh or not options():
            self.post_feasible(choice, replicated)
        options = options()
        if options:
            job_id, shard, asset = pick(options, choice)
            keeper = self.cast.names["keeper"]
            self.act(
                self.model.assign,
                (keeper, job_id, shard, asset),
                self.cast.market,
                "assign",
                (job_id, shard, asset),
                keeper,
            )

    def challengeable(self):
        """Shards with a result inside its challenge window and no open dispute."""
        model = self.model
        return sorted(
            {
                (j, s)
                for j, s, r in model.replicas(SUBMITTED)
                if model.now + 1 <= model.replica(j, s, r).deadline and (j, s) not in model.disputes()
            }
        )

    def hand_in(self, choice):
        """Hands in a result for a lease, leasing a replica first if none is out;
        half the time another root, so the last replica of a replicated shard may
        disagree with the others."""
        if not self.model.replicas(ASSIGNED):
            self.lease_one(choice)
        if self.model.replicas(ASSIGNED):
            self.do_submit(*pick(self.model.replicas(ASSIGNED), choice), ROOTS[choice % 2], 1, "none")

    def dispute_one(self, choice):
        """Opens a dispute: a stranger challenges a result still inside its window,
        handed in first if there is none."""
        if not self.challengeable():
            self.hand_in(choice)
        if self.challengeable() and not self.model.disputes():
            self.do_challenge(*pick(self.challengeable(), choice), self.cast.names["outsider"])

    def unfinished_shards(self):
        return self.shards_with(OPEN, ASSIGNED, SUBMITTED, DISPUTED)

    # ------------------------------------------------------------ owners

    @rule(
        kind=st.sampled_from(
            [
                "price",
                "capacity",
                "pause",
                "renew",
                "stake",
                "unstake",
                "transfer",
                "agent",
                "keeper exit",
                "parameters",
            ]
        ),
        asset=st.integers(1, len(CAST)),
        price=st.sampled_from([40, 60, 100, 150, 300, 500]),
        capacity=st.sampled_from([0, 1, 2, 16]),
        percent=st.sampled_from([1, 50, 101]),
        choice=st.integers(0, 255),
        parameters=parameters(valid=False),
    )
    def owner_action(self, kind, asset, price, capacity, percent, choice, parameters):
        """Providers reprice, resize (zero refused), pause, resume, renew, stake,
        unstake and sell their assets (refused while a lease is open; the buyer then
        sets the agent key again); keeper2 leaves; the market owner sets new
        parameters (some out of bounds)."""
        owner = self.model.assets[asset].owner
        if kind == "capacity":
            self.act(
                self.model.set_capacity, (asset, capacity), self.cast.assets, "set_capacity", (asset, capacity), owner
            )
        elif kind == "parameters":
            sender = self.cast.names["owner"]
            self.act(
                self.model.set_parameters,
                (parameters,),
                self.cast.market,
                "set_parameters",
                (parameters.as_tuple(),),
                sender,
            )
        elif kind == "price":
            self.act(self.model.set_price, (asset, price), self.cast.assets, "set_price", (asset, price), owner)
        elif kind == "pause" and self.model.assets[asset].active:
            self.act(self.model.pause_asset, (asset,), self.cast.assets, "pause", (asset,), owner)
        elif kind == "pause":
            self.act(self.model.resume_asset, (asset,), self.cast.assets, "resume", (asset,), owner)
        elif kind == "renew":
            # From now (refused: not in the future) to about three hours ahead.
            expire = self.model.now + 1 + choice * 40
            self.act(self.model.renew, (asset, expire), self.cast.assets, "renew", (asset, expire), owner)
        elif kind == "stake":
            amount = 50 * TOKEN + 1
            self.act(
                self.model.add_stake, (owner, asset, amount), self.cast.assets, "add_stake", (asset, amount), owner
            )
        elif kind == "unstake":
            amount = max(1, self.model.assets[asset].stake * percent // 100)
            self.act(
                self.model.request_unstake, (asset, amount), self.cast.assets, "request_unstake", (asset, amount), owner
            )
        elif kind == "transfer":
            receiver = self.cast.names["provider2" if owner == self.cast.names["provider"] else "provider"]
            self.act(
                self.model.transfer_asset,
                (owner, receiver, asset),
                self.cast.assets,
                "transferFrom",
                (owner, receiver, asset),
                owner,
            )
        elif kind == "agent":
            agent = self.cast.agents[CAST[asset - 1][1]]
            self.act(self.model.set_agent, (asset, agent), self.cast.assets, "set_agent", (asset, agent), owner)
        else:
            sender = self.cast.names["keeper2"]
            self.act(self.model.request_exit, (sender,), self.cast.keepers, "request_exit", (), sender)

    @precondition(lambda self: self.model.replicas(ASSIGNED))
    @rule(choice=st.integers(0, 255))
    def market_paused(self, choice):
        """The owner pauses the market for a few calls: posting and assigning stop,
        and reclaiming a lease that ran out reopens it without a slash."""
        owner, keeper = self.cast.names["owner"], self.cast.names["keeper"]
        eligible = self.model.eligible_assignments() or [(1, 0, 1)]
        self.act(self.model.pause_market, (), self.cast.market, "pause", (), owner)
        self.do_post(
            self.cast.clients[0],
            self.requirements(
                shards=1,
                replication=1,
                mode="match",
                gpu_count=1,
                min_vram=0,
                gpu_seconds=600,
                max_price=400,
                slack=100,
            ),
        )
        job_id, shard, asset = pick(eligible, choice)
        self.act(
            self.model.assign,
            (keeper, job_id, shard, asset),
            self.cast.market,
            "assign",
            (job_id, shard, asset),
            keeper,
        )
        job_id, shard, replica = pick(self.model.replicas(ASSIGNED), choice)
        self.mine_until(self.model.replica(job_id, shard, replica).deadline)
        self.act(
            self.model.reclaim,
            (keeper, job_id, shard, replica),
            self.cast.market,
            "reclaim",
            (job_id, shard, replica),
            keeper,
        )
        self.act(self.model.unpause_market, (), self.cast.market, "unpause", (), owner)

    # ------------------------------------------------------------ invariants

    @invariant()
    def chain_agrees_with_model(self):
        """Reads everything in one batch and holds it against the model."""
        model, cast = self.model, self.cast
        model.check()
        market, assets, court = cast.market.address, cast.assets.address, cast.court.address
        reads = Reads(cast.rpc)
        head = reads.head()
        count = reads.call(market, "job_count()")
        owed = reads.call(market, "owed()")
        paused = reads.call(market, "paused()")
        parameters = reads.call(market, "parameters()")
        supply = reads.call(cast.token.address, "totalSupply()")
        balances = {h: reads.call(cast.token.address, "balanceOf(address)", h) for h in cast.holders}
        credits = {a: reads.call(market, "credits(address)", a) for a in cast.accounts}
        stakes = {a: reads.call(assets, "stake(uint256)", a) for a in model.assets}
        specs = {a: reads.call(assets, "spec(uint256)", a) for a in model.assets}
        owners = {a: reads.call(assets, "ownerOf(uint256)", a) for a in model.assets}
        agents = {a: reads.call(assets, "agentOf(uint256)", a) for a in model.assets}
        jobs = {j: reads.call(market, "job(uint256)", j) for j in model.jobs}
        challenges = {(j, s): reads.call(court, "challenge_of(uint256,uint256)", j, s) for j, s in model.shards()}
        deadlines = {(j, s): reads.call(court, "ruling_deadline(uint256,uint256)", j, s) for j, s in model.disputes()}
        replicas = {key: reads.call(market, "replica(uint256,uint256,uint256)", *key) for key in model.replicas()}
        roots = {key: reads.call(market, "output_root(uint256,uint256,uint256)", *key) for key in model.replicas()}
        topics = cast.topics
        logs = reads.logs(
            market, self.from_block, [topics["posted"], topics["finalized"], topics["finished"], topics["contribution"]]
        )
        checkpoints = {key: reads.call(market, "checkpoint(uint256,uint256,uint256)", *key) for key in model.replicas()}
        got = reads.run()

        assert int(got[head]["timestamp"], 16) == model.now
        assert got[count] == [len(model.jobs)]
        assert got[paused] == [model.paused]
        assert got[parameters] == list(model.params.as_tuple())

        # (2) no token is created or destroyed; every holder's balance is the model's.
        assert got[supply] == [cast.supply]
        assert sum(got[i][0] for i in balances.values()) == cast.supply
        for holder, i in balances.items():
            assert got[i][0] == model.balances[holder], f"balance of {holder}"

        # (1) the market owes exactly escrows + credits + open bonds and holds that
        # plus what was sent to it aside; the asset registry holds exactly the
        # stakes; the court holds nothing; and each of them is the model's.
        chain_escrows = sum(got[i][1] for i in jobs.values())
        chain_credits = sum(got[i][0] for i in credits.values())
        chain_bonds = sum(got[i][1] for i in challenges.values())
        assert got[owed] == [chain_escrows + chain_credits + chain_bonds] == [model.owed()]
        assert got[balances[market]][0] == got[owed][0] + model.surplus >= got[owed][0]
        assert got[balances[assets]][0] == sum(got[i][0] for i in stakes.values())
        assert got[balances[court]] == [0]
        for account, i in credits.items():
            assert got[i][0] == model.credits.get(account, 0), f"credit of {account}"

        # (4) stakes: amount, open leases, GPUs leased, unbonding; never below zero
        # and no GPU leased twice in the model.
        for asset_id, i in stakes.items():
            a = model.assets[asset_id]
            assert got[i] == [a.stake, a.open_leases, a.gpus_leased, a.pending_results, a.unbond_at, a.unbonding], (
                f"stake of {asset_id}"
            )
            spec = got[specs[asset_id]]
            assert spec[5:9] == [a.price, a.expire, a.active, a.max_leases], f"spec of asset {asset_id}"
            assert (got[owners[asset_id]], got[agents[asset_id]]) == ([word(a.owner)], [word(a.agent)])

        for job_id, i in jobs.items():
            job = model.jobs[job_id]
            req = job.req
            expected = [
                word(job.client),
                job.escrow,
                job.unfinished,
                word(job.manifest),
                req.min_vram_mib,
                req.gpu_count,
                req.max_price,
                req.max_gpu_seconds,
                req.deadline,
                req.shard_count,
                req.replication,
                int(req.verification),
                req.cpu_cores,
                req.memory_mib,
                req.disk_mib,
                job.keeper_fee_bps,
                job.protocol_fee_bps,
            ]
            assert got[i] == expected, f"job {job_id}"
        for (job_id, shard), i in challenges.items():
            challenger, bond = model.jobs[job_id].challenges.get(shard, (ZERO_ADDRESS, 0))
            assert got[i] == [word(challenger), bond], f"challenge of job {job_id} shard {shard}"
            # (6) no provider challenges its own result: the challenger is neither the
            # owner nor the agent key of an asset whose replica it accused.
            accused = [
                got[replicas[(job_id, shard, r)]][0]
                for r in range(model.jobs[job_id].req.replication)
                if got[replicas[(job_id, shard, r)]][2] == DISPUTED
            ]
            providers = {got[owners[a]][0] for a in accused} | {got[agents[a]][0] for a in accused}
            assert not got[i][0] or got[i][0] not in providers, f"a provider challenges job {job_id} shard {shard}"
        for key, i in deadlines.items():
            assert got[i] == [model.ruling_deadline(*key)[1]], f"ruling deadline of {key}"
        for key, i in replicas.items():
            rep = model.replica(*key)
            assert got[i] == list(rep.as_tuple()), f"replica {key}: chain {got[i]}, model {rep}, now {model.now}"
            assert got[roots[key]] == [word(rep.root)], f"output root of replica {key}"
            resume, pending, *counts = rep.checkpoints()
            assert got[checkpoints[key]] == [word(resume), word(pending), *counts], f"checkpoints of replica {key}"

        # (3) and (5): from the logs, no replica is paid twice, the payouts are the
        # model's, and every finished job was refunded once, budget minus payouts.
        budgets, payouts, refunds, contributions = {}, [], {}, []
        for log in got[logs]:
            log_topics, data = log["topics"], bytes.fromhex(log["data"][2:])
            topic0, job_id = bytes.fromhex(log_topics[0][2:]), int(log_topics[1], 16)
            if topic0 == topics["posted"]:
                budgets[job_id] = int.from_bytes(data[32:64], "big")
            elif topic0 == topics["finalized"]:
                shard, replica, keeper, payment, keeper_fee, protocol_fee = decode(
                    ["uint256", "uint256", "address", "uint256", "uint256", "uint256"], data
                )
                payouts.append(
                    Payout(
                        job_id,
                        shard,
                        replica,
                        int(log_topics[2], 16),
                        to_checksum_address("0x" + log_topics[3][-40:]),
                        to_checksum_address(keeper),
                        payment,
                        keeper_fee,
                        protocol_fee,
                    )
                )
            elif topic0 == topics["contribution"]:
                shard, replica, keeper, _, payment, keeper_fee, protocol_fee = decode(
                    ["uint256", "uint256", "address", "uint256", "uint256", "uint256", "uint256"], data
                )
                contributions.append(
                    Payout(
                        job_id,
                        shard,
                        replica,
                        int(log_topics[2], 16),
                        to_checksum_address("0x" + log_topics[3][-40:]),
                        to_checksum_address(keeper),
                        payment,
                        keeper_fee,
                        protocol_fee,
                    )
                )
            else:
                assert job_id not in refunds, f"job {job_id} finished twice"
                refunds[job_id] = int.from_bytes(data[:32], "big")
        paid = [(p.job, p.shard, p.replica) for p in payouts]
        assert len(paid) == len(set(paid)), "a replica was paid twice"
        assert payouts == model.payouts
        assert contributions == model.contribution_payouts
        for job_id, job in model.jobs.items():
            assert budgets[job_id] == job.budget
            spent = sum(p.payment + p.keeper_fee + p.protocol_fee for p in payouts + contributions if p.job == job_id)
            if job.unfinished == 0:
                assert got[jobs[job_id]][1] == 0, f"finished job {job_id} still holds escrow"
                assert refunds.get(job_id) == budgets[job_id] - spent == job.refund, f"refund of job {job_id}"
            else:
                assert job_id not in refunds, f"unfinished job {job_id} refunded"


def test_market_matches_model(cast):
    """Random sequences of market operations keep the chain equal to the model."""
    run_state_machine_as_test(lambda: MarketMachine(cast), settings=MACHINE_SETTINGS)
