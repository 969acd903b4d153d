"""Attacks on the market, each tried as its attacker would try it: on the session's anvil with
the real contracts and, where a re-execution decides, the facilitator's real arbiter running
the shard on the session's Docker engine. Every scenario is judged by a Ledger: what each
named participant is worth in tokens before and after, to the base unit."""

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from terms import ROOT, STAKE, SUM, TOKEN

from computenet.market import Market
from computenet.sandbox import Limits
from computenet.web3calls import Sender
from verifier.arbiter import Arbiter, router, sign
from verifier.reexecute import Reexecutor


class Ledger:
    """What each named participant is worth in tokens: its balance, its credits in the market,
    the stakes of the assets it owns, its keeper bond, and the escrow of the jobs it posted (a
    client's money until the market pays it out or refunds it). Gas (ETH) is not counted.
    A participant is an account or address, or a tuple of them: one party under several roles
    or names, judged together."""

    def __init__(self, token, market, assets, keepers, participants: dict):
        self.token, self.market, self.assets, self.keepers = token, market, assets, keepers
        self.members = {name: _addresses(who) for name, who in participants.items()}
        self.before = self.worth()

    def worth(self) -> dict[str, int]:
        held: dict[str, int] = {}  # address -> its asset stakes and job escrows
        for asset in range(1, self.assets.totalSupply() + 1):
            owner = self.assets.ownerOf(asset)
            held[owner] = held.get(owner, 0) + self.assets.stake(asset).amount
        for job in range(1, self.market.job_count() + 1):
            record = self.market.job(job)
            held[record.client] = held.get(record.client, 0) + record.escrow
        return {
            name: sum(
                self.token.balanceOf(a) + self.market.credits(a) + self.keepers.keeper(a).bond + held.get(a, 0)
                for a in addresses
            )
            for name, addresses in self.members.items()
        }

    def changes(self) -> dict[str, int]:
        """Each participant's net change since the ledger opened. On the way it checks that the
        market holds exactly what it owes, and that the participants' tokens only changed hands."""
        assert self.token.balanceOf(self.market) == self.market.owed(), "the market holds other than it owes"
        now = self.worth()
        changes = {name: now[name] - self.before[name] for name in now}
        assert sum(changes.values()) == 0, f"tokens appeared or vanished among the participants: {changes}"
        return changes


def _addresses(who) -> list[str]:
    if isinstance(who, tuple):
        return [address for one in who for address in _addresses(one)]
    return [str(getattr(who, "address", who))]


@pytest.fixture(autouse=True)
def _the_market_holds_what_it_owes(token, market):
    yield
    assert token.balanceOf(market) == market.owed()


@pytest.fixture
def ledger(token, market, assets, keepers):
    """Opens a Ledger over the participants named: `ledger(attacker=stranger, victim=(a, b))`."""
    return lambda **participants: Ledger(token, market, assets, keepers, participants)


# ---------------------------------------------------------------- attackers and their tools


@pytest.fixture
def funded(token, market):
    """Gives an account tokens and approves the market for them, as anyone can."""

    def fund(account, amount=1_000 * TOKEN):
        token.faucet(account, amount, sender=account)
        token.approve(market, 2**256 - 1, sender=account)
        return account

    return fund


@pytest.fixture
def attacker(stranger, funded):
    """Someone with no part in the job, and tokens for a bond."""
    return funded(stranger)


@pytest.fixture
def sybil(accounts, funded):
    """Another address of a party's own, with tokens for a bond."""
    return funded(accounts[15])


@pytest.fixture
def asset(register_asset):
    """Registers an asset staking STAKE (the provider's and agents[0] unless told)."""
    return lambda **options: register_asset(stake=STAKE, **options)


@pytest.fixture
def lease(market, keeper, registered_keeper, submit):
    """A keeper leases the shard's next open replica to `asset`; the asset's agent submits
    `output_root` claiming `gpu_seconds` unless it is None. Returns the replica."""

    def run(job, shard, asset, agent_account, output_root=ROOT, gpu_seconds=1_000):
        tx = market.assign(job, shard, asset, sender=keeper)
        replica = tx.events.filter(market.ShardAssigned)[0].replica
        if output_root is not None:
            submit(agent_account, job, shard, replica, output_root=output_root, gpu_seconds=gpu_seconds)
        return replica

    return run


@pytest.fixture
def after(chain):
    """Makes the next block the first one past `moment` (unix seconds)."""

    def move(moment):
        chain.pending_timestamp = moment + 1

    return move


# ---------------------------------------------------------------- the arbiter and its re-execution


@pytest.fixture
def summing_job(publish_job, post_job):
    """Posts a CPU job (any asset qualifies) of SUM, published where the arbiter fetches it."""
    manifest = publish_job(SUM, {}, timeout_seconds=30)[1]
    return lambda **req: post_job(manifest_hash=manifest, gpu_count=0, min_vram_mib=0, **req)


@pytest.fixture
def arbiter(chain, market, assets, facilitator, content_store, docker_engine, tmp_path):
    """The facilitator's arbiter: the facilitator key, its own re-execution on the session's
    Docker engine with the test agents' limits, its audit log and cursor under tmp_path."""
    web3 = chain.provider.web3
    rerun = Reexecutor(content_store.client, docker=docker_engine.client, limits=Limits(memory_bytes=256 << 20))
    return Arbiter(
        Market.over_web3(web3, market.address),
        Sender(web3, facilitator.private_key),
        tmp_path / "disputes.jsonl",
        rerun,
        tmp_path / "arbiter.json",
    )


@pytest.fixture
def ask_arbiter(arbiter):
    """POSTs a body to the arbiter's /disputes, signed by `signer`; returns (status, answer)."""
    app = FastAPI()
    app.include_router(router(arbiter))
    with TestClient(app) as http:

        def post(signer, body):
            raw = json.dumps(body).encode()
            headers = sign(signer.private_key, arbiter.chain_id, arbiter.sender.address, raw)
            answer = http.post("/disputes", content=raw, headers={"Content-Type": "application/json", **headers})
            return answer.status_code, answer.json()

        yield post
