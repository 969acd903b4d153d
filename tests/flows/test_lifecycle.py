"""End-to-end lifecycle flows of the market on a real anvil chain.

Every flow checks the money exactly: `Books` snapshots the token balance of every
actor and of the market, court, asset and keeper contracts, and each market credit.
Tokens are only ever moved, never created (the faucet is not used after the books
open), so the balances always sum to the total supply; the market owes (`owed`) and
holds exactly its credits, unspent escrows and challenge bonds, the court holds
nothing, the asset registry exactly its stakes and the keeper registry exactly its
bonds. Expected amounts come from the SDK (`Requirements.quote`, `settle_amounts`)
and docs/disputes.md (slash `S`, reward `R = min(S × 10 %, bond)`), not from the
contracts.
"""

from dataclasses import replace

import ape
import pytest
from ape.utils import ZERO_ADDRESS
from eth_utils import keccak

from computenet.domain import ReplicaState, Verification, settle_amounts

TOKEN = 10**6
STAKE = 1_000 * TOKEN  # what register_asset stakes by default
KEEPER_BOND = 100 * TOKEN  # what registered_keeper bonds for each keeper
H100, A100 = 1, 2
MANIFEST = keccak(b"manifest")  # the manifest hash post_job and sign_receipt default to
GOOD = keccak(b"honest outputs")
BAD = keccak(b"forged outputs")
DAY = 86_400
REWARD_BPS = 1_000  # a proven fault's share of the slash (docs/disputes.md)
BALANCE_OF = keccak(text="balanceOf(address)")[:4]
CREDITS = keccak(text="credits(address)")[:4]


# ---------------------------------------------------------------- money books


class Books:
    """Every holder's token balance and market credit, for exact money checks."""

    def __init__(self, chain, token, market, court, assets, keepers, holders):
        self.web3 = chain.provider.web3
        self.token = token
        self.market = market
        self.court = court
        self.assets = assets
        self.keepers = keepers
        self.holders = holders
        self.supply = token.totalSupply()
        self.assert_conserved()

    def read(self) -> tuple[dict[str, int], dict[str, int]]:
        """(balances, credits) by holder name, in one batched round trip: the books
        are read after nearly every step."""
        calls = [(self.token.address, BALANCE_OF), (self.market.address, CREDITS)]
        with self.web3.batch_requests() as batch:
            for to, selector in calls:
                for holder in self.holders.values():
                    data = selector + bytes(12) + bytes.fromhex(str(holder.address)[2:])
                    batch.add(self.web3.eth.call({"to": to, "data": data}))
            words = [int.from_bytes(w, "big") for w in batch.execute()]
        n = len(self.holders)
        return dict(zip(self.holders, words[:n])), dict(zip(self.holders, words[n:]))

    def balances(self) -> dict[str, int]:
        return self.read()[0]

    def credits(self) -> dict[str, int]:
        return self.read()[1]

    def assert_conserved(self, balances=None, credits=None):
        """Tokens were only moved, and each contract holds exactly what it owes."""
        if balances is None:
            balances, credits = self.read()
        assert sum(balances.values()) == self.supply == self.token.totalSupply()
        owed = sum(credits.values())  # the market owes credits, escrows and open bonds
        for job in range(1, self.market.job_count() + 1):
            record = self.market.job(job)
            owed += record.escrow
            owed += sum(self.court.challenge_of(job, s)[1] for s in range(record.requirements.shard_count))
        assert balances["market"] == self.market.owed() == owed
        assert balances["court"] == 0
        stakes = sum(self.assets.stake(a).amount for a in range(1, self.assets.totalSupply() + 1))
        assert balances["assets"] == stakes
        keeper_ids = range(1, self.keepers.keeper_count() + 1)
        bonds = sum(self.keepers.keeper(self.keepers.keeper_of(k)).bond for k in keeper_ids)
        assert balances["keepers"] == bonds

    def assert_moved(self, before: dict[str, int], **expected: int):
        """Balances changed by exactly `expected` since `before`; nobody else's moved."""
        after, credits = self.read()
        moved = {name: after[name] - before[name] for name in after if after[name] != before[name]}
        assert moved == {name: v for name, v in expected.items() if v != 0}
        self.assert_conserved(after, credits)

    def assert_credits(self, **expected: int):
        """Each holder's credit is exactly `expected` (zero when not named)."""
        balances, credits = self.read()
        assert {name: c for name, c in credits.items() if c != 0} == {name: v for name, v in expected.items() if v != 0}
        self.assert_conserved(balances, credits)

    def withdraw_all(self) -> dict[str, int]:
        """Every holder with a credit withdraws it to itself; returns what each got."""
        before, credits = self.read()
        owed = {name: c for name, c in credits.items() if c != 0}
        for name, amount in owed.items():
            tx = self.market.withdraw(self.holders[name], sender=self.holders[name])
            assert tx.return_value == amount
        self.assert_moved(before, market=-sum(owed.values()), **owed)
        self.assert_credits()
        return owed


@pytest.fixture
def books(
    chain,
    token,
    market,
    court,
    assets,
    keepers,
    owner,
    client,
    provider,
    provider2,
    keeper,
    keeper2,
    verifier,
    facilitator,
    treasury,
    stranger,
    agents,
):
    # The stranger challenges too: it gets tokens before the books open.
    token.faucet(stranger, 1_000 * TOKEN, sender=stranger)
    token.approve(market, 2**256 - 1, sender=stranger)
    holders = dict(
        owner=owner,
        client=client,
        provider=provider,
        provider2=provider2,
        keeper=keeper,
        keeper2=keeper2,
        verifier=verifier,
        facilitator=facilitator,
        treasury=treasury,
        stranger=stranger,
        **{f"agent{i}": a for i, a in enumerate(agents)},
        market=market,
        court=court,
        assets=assets,
        keepers=keepers,
    )
    return Books(chain, token, market, court, assets, keepers, holders)


# ---------------------------------------------------------------- helpers


@pytest.fixture
def post(market, client, make_requirements, params):
    """Posts a job as the client; returns (job id, requirements, budget). The budget is
    the SDK's quote, checked against the contract's view and the escrowed amount."""

    def do(**overrides):
        req = make_requirements(**overrides)
        budget = req.quote(params.keeper_fee_bps, params.protocol_fee_bps)
        assert market.quote(req.as_tuple()) == budget
        tx = market.post_job(MANIFEST, req.as_tuple(), sender=client)
        event = tx.events.filter(market.JobPosted)[0]
        assert event.budget == budget
        assert market.job(event.job).escrow == budget
        return event.job, req, budget

    return do


@pytest.fixture
def amounts(params):
    """(payment, keeper fee, protocol fee) for a replica at `price` metering `gpu_seconds`."""

    def of(req, price, gpu_seconds):
        metered = min(gpu_seconds, req.max_gpu_seconds)
        return settle_amounts(price, metered, params.keeper_fee_bps, params.protocol_fee_bps)

    return of


def past_challenge_window(chain, params):
    chain.mine(deltatime=params.challenge_window + 1)


def past(chain, timestamp):
    """Mines a block after `timestamp`, so the next call runs after it too."""
    chain.mine(timestamp=timestamp + 1)


def reward_of(slash, params):
    """R: what proving a fault earns, a tenth of the slash at most one bond."""
    return min(slash * REWARD_BPS // 10_000, params.challenge_bond)


def dispute_settled(tx, court):
    """(arbiter, challenger, slashed, reward, bond returned) of the DisputeSettled in `tx`."""
    [event] = tx.events.filter(court.DisputeSettled)
    return event.arbiter, event.challenger, event.slashed, event.reward, event.bond_returned


def dispute_resolved(tx, market):
    """(facilitator, rejected replicas mask, upheld, rejected) of the DisputeResolved in `tx`."""
    [event] = tx.events.filter(market.DisputeResolved)
    return event.facilitator, event.rejected_replicas, event.upheld, event.rejected


def finished(tx, market):
    """The refund of the JobFinished event in `tx`, or None if the job did not finish."""
    events = tx.events.filter(market.JobFinished)
    assert len(events) <= 1
    return events[0].refund if events else None


def state(market, job, shard, replica):
    return market.replica(job, shard, replica).state


# ---------------------------------------------------------------- 1. one shard


def test_one_shard_full_lifecycle(
    chain,
    market,
    assets,
    keepers,
    books,
    post,
    amounts,
    register_asset,
    submit,
    params,
    provider,
    keeper,
    agent,
    stranger,
):
    """The plain path: every step moves exactly the money it should, and once everyone
    has withdrawn the market holds nothing."""
    start = before = books.balances()
    tx = keepers.register(KEEPER_BOND, sender=keeper)
    books.assert_moved(before, keeper=-KEEPER_BOND, keepers=KEEPER_BOND)
    keeper_id = tx.return_value

    before = books.balances()
    asset = register_asset()
    books.assert_moved(before, provider=-STAKE, assets=STAKE)
    assert assets.ownerOf(asset) == provider
    assert assets.stake(asset).amount == STAKE

    before = books.balances()
    job, req, budget = post()
    books.assert_moved(before, client=-budget, market=budget)
    assert budget == 730_800  # 200 × 3600, plus 1 % and 0.5 %

    tx = market.assign(job, 0, asset, sender=keeper)
    assert tx.return_value == 0
    assigned = tx.events.filter(market.ShardAssigned)[0]
    assert (assigned.job, assigned.shard, assigned.replica, assigned.asset) == (job, 0, 0, asset)
    assert assigned.keeper == keeper
    assert assigned.lease == 1
    assert assigned.price == 100
    assert assigned.lease_end == chain.blocks.head.timestamp + req.lease_seconds(params.lease_grace)
    rep = market.replica(job, 0, 0)
    assert (rep.state, rep.asset, rep.keeper, rep.lease) == (ReplicaState.ASSIGNED, asset, keeper_id, 1)
    assert assets.stake(asset).open_leases == 1

    before = books.balances()
    tx = submit(agent, job, 0, 0, output_root=GOOD, gpu_seconds=1_234, sender=provider)
    result = tx.events.filter(market.ResultSubmitted)[0]
    assert (result.output_root, result.gpu_seconds, result.exit_code) == (GOOD, 1_234, 0)
    assert result.challenge_end == chain.blocks.head.timestamp + params.challenge_window
    assert state(market, job, 0, 0) == ReplicaState.SUBMITTED
    with ape.reverts("job_market: challenge window open"):
        market.finalize(job, 0, sender=stranger)
    books.assert_moved(before)  # submitting moves no money

    past_challenge_window(chain, params)
    tx = market.finalize(job, 0, sender=stranger)
    payment, keeper_fee, protocol_fee = amounts(req, 100, 1_234)
    assert (payment, keeper_fee, protocol_fee) == (123_400, 1_234, 617)
    settled = tx.events.filter(market.ShardFinalized)
    assert len(settled) == 1
    assert (settled[0]["provider"], settled[0].keeper) == (provider, keeper)
    assert (settled[0].payment, settled[0].keeper_fee, settled[0].protocol_fee) == (payment, keeper_fee, protocol_fee)
    refund = budget - payment - keeper_fee - protocol_fee
    assert finished(tx, market) == refund
    books.assert_credits(provider=payment, keeper=keeper_fee, treasury=protocol_fee, client=refund)
    assert market.job(job).escrow == 0
    assert market.job(job).unfinished == 0
    assert state(market, job, 0, 0) == ReplicaState.FINALIZED
    with ape.reverts("job_market: shard not ready"):
        market.finalize(job, 0, sender=stranger)

    books.withdraw_all()
    assert books.balances()["market"] == 0
    assert assets.stake(asset).amount == STAKE
    assert assets.stake(asset).open_leases == 0
    books.assert_moved(
        start,
        client=-(payment + keeper_fee + protocol_fee),
        provider=payment - STAKE,
        assets=STAKE,
        keeper=keeper_fee - KEEPER_BOND,
        keepers=KEEPER_BOND,
        treasury=protocol_fee,
    )


# ---------------------------------------------------------------- 2. many shards


@pytest.mark.usefixtures("registered_keeper")
def test_eight_shards_over_four_assets(
    chain,
    market,
    assets,
    books,
    post,
    amounts,
    register_asset,
    submit,
    params,
    provider,
    provider2,
    keeper,
    keeper2,
    agents,
    stranger,
):
    """Shards run in parallel on assets of different specs, prices, owners and agents,
    each holding no more one-GPU leases than it has GPUs; each replica is paid at its
    asset's price for its capped metered use, and the last finalization refunds
    exactly what was not spent."""
    fleet = [
        dict(owner=provider, agent_account=agents[0], gpu_model=H100, vram_mib=81_920, gpu_count=2, price=100),
        dict(owner=provider, agent_account=agents[1], gpu_model=A100, vram_mib=40_960, gpu_count=2, price=150),
        dict(owner=provider2, agent_account=agents[2], gpu_model=H100, vram_mib=81_920, gpu_count=8, price=200),
        dict(owner=provider2, agent_account=agents[3], gpu_model=A100, vram_mib=81_920, gpu_count=4, price=37),
    ]
    ids = [register_asset(**spec) for spec in fleet]
    job, req, budget = post(shard_count=8)
    assert budget == 8 * 730_800
    shard_keepers = [keeper, keeper2]

    for shard in range(8):
        tx = market.assign(job, shard, ids[shard % 4], sender=shard_keepers[shard % 2])
        assert tx.events.filter(market.ShardAssigned)[0].price == fleet[shard % 4]["price"]
    assert [assets.stake(a).open_leases for a in ids] == [2, 2, 2, 2]
    assert [assets.stake(a).gpus_leased for a in ids] == [2, 2, 2, 2]

    metered = [1, 3_600, 3_750, 1_234, 3_899, 0, 2_500, 3_601]  # three above the 3600 cap, all inside the lease
    for shard, gpu_seconds in enumerate(metered):
        spec = fleet[shard % 4]
        root = keccak(bytes([shard]))
        submit(spec["agent_account"], job, shard, 0, output_root=root, gpu_seconds=gpu_seconds, sender=spec["owner"])
        assert market.replica(job, shard, 0).gpu_seconds == min(gpu_seconds, 3_600)

    past_challenge_window(chain, params)
    expected = dict(provider=0, provider2=0, keeper=0, keeper2=0, treasury=0)
    spent = 0
    for shard, gpu_seconds in enumerate(metered):
        spec = fleet[shard % 4]
        payment, keeper_fee, protocol_fee = amounts(req, spec["price"], gpu_seconds)
        tx = market.finalize(job, shard, sender=stranger)
        settled = tx.events.filter(market.ShardFinalized)
        assert len(settled) == 1
        assert (settled[0].asset, settled[0]["provider"], settled[0].keeper) == (
            ids[shard % 4],
            spec["owner"],
            shard_keepers[shard % 2],
        )
        fees = (settled[0].payment, settled[0].keeper_fee, settled[0].protocol_fee)
        assert fees == (payment, keeper_fee, protocol_fee)
        expected["provider" if spec["owner"] == provider else "provider2"] += payment
        expected["keeper" if shard % 2 == 0 else "keeper2"] += keeper_fee
        expected["treasury"] += protocol_fee
        spent += payment + keeper_fee + protocol_fee
        if shard < 7:
            assert finished(tx, market) is None
            assert market.job(job).escrow == budget - spent
            assert market.job(job).unfinished == 7 - shard
            books.assert_credits(**expected)
    refund = budget - spent
    assert finished(tx, market) == refund
    assert market.job(job).escrow == 0
    books.assert_credits(client=refund, **expected)
    # Metering above the cap is paid at the cap (shards 2, 4 and 7).
    assert expected["provider"] == 100 * 1 + 150 * 3_600 + 100 * 3_600 + 150 * 0
    assert expected["provider2"] == 200 * 3_600 + 37 * 1_234 + 200 * 2_500 + 37 * 3_600
    assert [assets.stake(a).open_leases for a in ids] == [0, 0, 0, 0]
    assert [assets.stake(a).gpus_leased for a in ids] == [0, 0, 0, 0]

    before = books.balances()
    books.withdraw_all()
    books.assert_moved(before, market=-budget, client=refund, **expected)
    assert books.balances()["market"] == 0


# ---------------------------------------------------------------- 3. replication


@pytest.mark.usefixtures("registered_keeper")
def test_replicated_shard_with_agreeing_roots_pays_both(
    chain,
    market,
    assets,
    books,
    post,
    amounts,
    register_asset,
    submit,
    params,
    provider,
    provider2,
    keeper,
    keeper2,
    agents,
    stranger,
):
    """Replicas of one shard must run on distinct assets; when their roots agree,
    each is paid at its own asset's price."""
    a1 = register_asset(owner=provider, agent_account=agents[0], price=100, gpu_count=2)
    a2 = register_asset(owner=provider2, agent_account=agents[1], price=180)
    job, req, budget = post(replication=2)
    assert req.verification == Verification.REPLICATED
    assert budget == 2 * 730_800

    assert market.assign(job, 0, a1, sender=keeper).return_value == 0
    with ape.reverts("job_market: asset already runs this shard"):
        market.assign(job, 0, a1, sender=keeper2)
    assert market.assign(job, 0, a2, sender=keeper2).return_value == 1

    tx = submit(agents[0], job, 0, 0, output_root=GOOD, gpu_seconds=2_000, sender=provider)
    assert not tx.events.filter(market.DisputeOpened)
    tx = submit(agents[1], job, 0, 1, output_root=GOOD, gpu_seconds=2_100, sender=provider2)
    assert not tx.events.filter(market.DisputeOpened)

    past_challenge_window(chain, params)
    tx = market.finalize(job, 0, sender=stranger)
    p1, k1, t1 = amounts(req, 100, 2_000)
    p2, k2, t2 = amounts(req, 180, 2_100)
    settled = tx.events.filter(market.ShardFinalized)
    assert [(e.replica, e.asset, e.payment) for e in settled] == [(0, a1, p1), (1, a2, p2)]
    refund = budget - p1 - k1 - t1 - p2 - k2 - t2
    assert finished(tx, market) == refund
    books.assert_credits(provider=p1, provider2=p2, keeper=k1, keeper2=k2, treasury=t1 + t2, client=refund)
    assert [assets.stake(a).open_leases for a in (a1, a2)] == [0, 0]
    books.withdraw_all()
    assert books.balances()["market"] == 0


@pytest.mark.usefixtures("registered_keeper")
def test_replicated_shard_with_disagreeing_roots_is_disputed_and_rerun(
    chain,
    market,
    court,
    assets,
    books,
    post,
    amounts,
    register_asset,
    submit,
    params,
    provider,
    provider2,
    keeper,
    keeper2,
    agents,
    facilitator,
    stranger,
):
    """Disagreeing replicas open a dispute by themselves; the arbiter's ruling slashes
    the wrong asset S, of which the first upheld provider gets R (here capped at one
    bond) and the treasury the rest; the wrong replica is re-run elsewhere, the
    upheld one's window is extended by the dispute's length, and only the two
    replicas with the valid root are paid."""
    honest = register_asset(owner=provider, agent_account=agents[0], price=100, gpu_count=2)
    dishonest = register_asset(owner=provider2, agent_account=agents[1], price=120, stake=3 * STAKE)
    third = register_asset(owner=provider, agent_account=agents[2], price=90)
    job, req, budget = post(replication=2)

    market.assign(job, 0, honest, sender=keeper)
    market.assign(job, 0, dishonest, sender=keeper)
    submit(agents[0], job, 0, 0, output_root=GOOD, gpu_seconds=1_500, sender=provider)
    window_end = market.replica(job, 0, 0).deadline
    tx = submit(agents[1], job, 0, 1, output_root=BAD, gpu_seconds=1_500, sender=provider2)
    opened_at = chain.blocks.head.timestamp
    opened = tx.events.filter(market.DisputeOpened)
    assert len(opened) == 1
    assert (opened[0].job, opened[0].shard, opened[0].challenger, opened[0].bond) == (job, 0, ZERO_ADDRESS, 0)
    assert [state(market, job, 0, r) for r in (0, 1)] == [ReplicaState.DISPUTED, ReplicaState.DISPUTED]
    assert court.challenge_of(job, 0) == (ZERO_ADDRESS, 0)
    lease = req.lease_seconds(params.lease_grace)
    assert court.ruling_deadline(job, 0) == opened_at + lease + params.challenge_window

    past_challenge_window(chain, params)
    with ape.reverts("job_market: shard not ready"):
        market.finalize(job, 0, sender=stranger)
    with ape.reverts("job_market: dispute already open"):
        court.challenge(job, 0, sender=stranger)
    with ape.reverts("dispute_court: caller is not a facilitator"):
        court.resolve(job, 0, GOOD, sender=stranger)
    books.assert_credits()

    slash = 3 * STAKE * params.slash_bps // 10_000
    reward = reward_of(slash, params)
    assert reward == params.challenge_bond < slash * REWARD_BPS // 10_000  # the cap binds
    before = books.balances()
    tx = court.resolve(job, 0, GOOD, sender=facilitator)
    ruled_at = chain.blocks.head.timestamp
    rejected = tx.events.filter(market.ReplicaRejected)
    assert [(e.replica, e.asset, e.slashed) for e in rejected] == [(1, dishonest, slash)]
    assert dispute_resolved(tx, market) == (facilitator, 0b10, 1, 1)  # replica 1 found wrong
    assert dispute_settled(tx, court) == (facilitator, ZERO_ADDRESS, slash, reward, False)
    books.assert_moved(before, assets=-slash, market=slash)
    books.assert_credits(provider=reward, treasury=slash - reward)
    assert assets.stake(dishonest).amount == 3 * STAKE - slash
    assert assets.stake(dishonest).open_leases == 0
    assert [state(market, job, 0, r) for r in (0, 1)] == [ReplicaState.SUBMITTED, ReplicaState.OPEN]
    # The upheld replica keeps the window it had left when the dispute opened.
    assert market.replica(job, 0, 0).deadline == window_end + ruled_at - opened_at
    with ape.reverts("job_market: challenge window open"):
        market.finalize(job, 0, sender=stranger)

    with ape.reverts("job_market: asset already runs this shard"):
        market.assign(job, 0, honest, sender=keeper2)
    tx = market.assign(job, 0, third, sender=keeper2)
    assert tx.return_value == 1
    assert tx.events.filter(market.ShardAssigned)[0].lease == 2
    tx = submit(agents[2], job, 0, 1, output_root=GOOD, gpu_seconds=1_700, sender=provider)
    assert not tx.events.filter(market.DisputeOpened)

    past_challenge_window(chain, params)
    tx = market.finalize(job, 0, sender=stranger)
    p1, k1, t1 = amounts(req, 100, 1_500)
    p3, k3, t3 = amounts(req, 90, 1_700)
    settled = tx.events.filter(market.ShardFinalized)
    assert [(e.replica, e.asset, e["provider"], e.keeper, e.payment) for e in settled] == [
        (0, honest, provider, keeper, p1),
        (1, third, provider, keeper2, p3),
    ]
    refund = budget - p1 - k1 - t1 - p3 - k3 - t3
    assert finished(tx, market) == refund
    books.assert_credits(
        provider=reward + p1 + p3, keeper=k1, keeper2=k3, treasury=slash - reward + t1 + t3, client=refund
    )
    assert [assets.stake(a).open_leases for a in (honest, dishonest, third)] == [0, 0, 0]
    assert [assets.stake(a).amount for a in (honest, dishonest, third)] == [STAKE, 3 * STAKE - slash, STAKE]
    books.withdraw_all()
    assert books.balances()["market"] == 0


# ---------------------------------------------------------------- 4. reclaim


@pytest.mark.usefixtures("registered_keeper")
def test_expired_lease_is_reclaimed_and_reassigned(
    chain,
    market,
    assets,
    books,
    post,
    amounts,
    register_asset,
    submit,
    params,
    provider,
    provider2,
    keeper,
    keeper2,
    agents,
    stranger,
):
    """An agent that never submits costs its asset part of its stake, all of it to the
    treasury (neither whoever reclaims nor the client gains from a reclaim); the shard
    runs elsewhere; the stake it tried to take back is locked while the lease is open
    and released after it is reclaimed."""
    lazy = register_asset(owner=provider, agent_account=agents[0], price=100)
    good = register_asset(owner=provider2, agent_account=agents[1], price=150)
    job, req, budget = post()

    market.assign(job, 0, lazy, sender=keeper)
    assets.request_unstake(lazy, STAKE, sender=provider)
    with ape.reverts("job_market: lease not expired"):
        market.reclaim(job, 0, 0, sender=stranger)

    chain.mine(deltatime=DAY + 1)  # past the unbonding delay and the lease
    with ape.reverts("asset_stakes: asset has open leases"):
        assets.withdraw_stake(lazy, sender=provider)
    with ape.reverts("job_market: lease expired"):
        submit(agents[0], job, 0, 0, output_root=GOOD, sender=provider)

    slash = STAKE * params.slash_bps // 10_000
    before = books.balances()
    tx = market.reclaim(job, 0, 0, sender=stranger)
    reclaimed = tx.events.filter(market.ShardReclaimed)[0]
    assert (reclaimed.replica, reclaimed.asset, reclaimed.caller, reclaimed.slashed) == (0, lazy, stranger, slash)
    books.assert_moved(before, assets=-slash, market=slash)
    books.assert_credits(treasury=slash)
    assert state(market, job, 0, 0) == ReplicaState.OPEN
    assert assets.stake(lazy).open_leases == 0
    with ape.reverts("job_market: replica not assigned"):
        market.reclaim(job, 0, 0, sender=stranger)

    before = books.balances()
    assert assets.withdraw_stake(lazy, sender=provider).return_value == STAKE - slash
    books.assert_moved(before, assets=-(STAKE - slash), provider=STAKE - slash)
    assert assets.stake(lazy).amount == 0
    with ape.reverts("asset_stakes: stake below minimum"):
        market.assign(job, 0, lazy, sender=keeper2)

    tx = market.assign(job, 0, good, sender=keeper2)
    assert tx.events.filter(market.ShardAssigned)[0].lease == 2
    submit(agents[1], job, 0, 0, output_root=GOOD, gpu_seconds=3_000, sender=provider2)
    past_challenge_window(chain, params)
    tx = market.finalize(job, 0, sender=keeper2)
    payment, keeper_fee, protocol_fee = amounts(req, 150, 3_000)
    refund = budget - payment - keeper_fee - protocol_fee
    assert finished(tx, market) == refund
    books.assert_credits(client=refund, provider2=payment, keeper2=keeper_fee, treasury=slash + protocol_fee)
    assert assets.stake(good).open_leases == 0
    books.withdraw_all()
    assert books.balances()["market"] == 0


# ---------------------------------------------------------------- 5. cancel


@pytest.mark.usefixtures("registered_keeper")
def test_client_cancels_untaken_shards(
    chain, market, books, post, amounts, register_asset, submit, params, client, provider, keeper, agent, stranger
):
    """Cancelled shards count as done without costing anything: the job finishes
    with the last of them and refunds all but the one shard that ran."""
    job, req, budget = post(shard_count=3)
    asset = register_asset()

    tx = market.cancel(job, 1, sender=client)
    cancelled = tx.events.filter(market.ShardCancelled)[0]
    assert (cancelled.shard, cancelled.replicas) == (1, 1)
    assert finished(tx, market) is None
    assert state(market, job, 1, 0) == ReplicaState.CANCELLED
    assert market.job(job).unfinished == 2
    assert market.job(job).escrow == budget
    books.assert_credits()
    with ape.reverts("job_market: nothing to cancel"):
        market.cancel(job, 1, sender=client)
    with ape.reverts("job_market: shard has no open replica"):
        market.assign(job, 1, asset, sender=keeper)

    market.assign(job, 0, asset, sender=keeper)
    chain.mine(deltatime=params.decline_window + 1)  # it has started: its agent can no longer decline
    with ape.reverts("job_market: nothing to cancel"):
        market.cancel(job, 0, sender=client)
    submit(agent, job, 0, 0, output_root=GOOD, gpu_seconds=900, sender=provider)
    past_challenge_window(chain, params)
    tx = market.finalize(job, 0, sender=stranger)
    assert finished(tx, market) is None
    payment, keeper_fee, protocol_fee = amounts(req, 100, 900)
    books.assert_credits(provider=payment, keeper=keeper_fee, treasury=protocol_fee)

    tx = market.cancel(job, 2, sender=client)
    refund = budget - payment - keeper_fee - protocol_fee
    assert finished(tx, market) == refund
    assert market.job(job).unfinished == 0
    assert market.job(job).escrow == 0
    books.assert_credits(provider=payment, keeper=keeper_fee, treasury=protocol_fee, client=refund)
    books.withdraw_all()
    assert books.balances()["market"] == 0


@pytest.mark.usefixtures("registered_keeper")
def test_cancel_of_running_replicated_shard_waits_for_the_deadline(
    chain,
    market,
    assets,
    books,
    post,
    amounts,
    register_asset,
    submit,
    client,
    provider,
    provider2,
    keeper,
    agents,
    stranger,
):
    """A shard partly taken up cannot be cancelled while it may still be completed;
    after the deadline its open replica can be, and the submitted one is still paid."""
    a1 = register_asset(owner=provider, agent_account=agents[0], price=100)
    a2 = register_asset(owner=provider2, agent_account=agents[1], price=100)
    job, req, budget = post(replication=2)

    market.assign(job, 0, a1, sender=keeper)
    chain.mine(deltatime=market.parameters().decline_window + 1)  # replica 0 has started
    with ape.reverts("job_market: shard already assigned"):
        market.cancel(job, 0, sender=client)
    submit(agents[0], job, 0, 0, output_root=GOOD, gpu_seconds=2_222, sender=provider)
    with ape.reverts("job_market: shard already assigned"):
        market.cancel(job, 0, sender=client)

    chain.mine(deltatime=req.deadline - chain.pending_timestamp + 1)
    with ape.reverts("job_market: lease would end after the deadline"):
        market.assign(job, 0, a2, sender=keeper)
    with ape.reverts("job_market: shard not ready"):
        market.finalize(job, 0, sender=stranger)
    tx = market.cancel(job, 0, sender=client)
    assert tx.events.filter(market.ShardCancelled)[0].replicas == 1
    assert finished(tx, market) is None
    assert [state(market, job, 0, r) for r in (0, 1)] == [ReplicaState.SUBMITTED, ReplicaState.CANCELLED]
    books.assert_credits()

    tx = market.finalize(job, 0, sender=stranger)
    payment, keeper_fee, protocol_fee = amounts(req, 100, 2_222)
    assert [e.replica for e in tx.events.filter(market.ShardFinalized)] == [0]
    refund = budget - payment - keeper_fee - protocol_fee
    assert finished(tx, market) == refund
    books.assert_credits(provider=payment, keeper=keeper_fee, treasury=protocol_fee, client=refund)
    assert [assets.stake(a).open_leases for a in (a1, a2)] == [0, 0]
    books.withdraw_all()
    assert books.balances()["market"] == 0


# ---------------------------------------------------------------- 6. challenges


@pytest.mark.usefixtures("registered_keeper")
def test_false_challenge_pays_its_bond_to_the_accused_provider(
    chain,
    market,
    court,
    assets,
    books,
    post,
    amounts,
    register_asset,
    submit,
    params,
    provider,
    keeper,
    agent,
    verifier,
    facilitator,
    stranger,
):
    """The shard's own provider and its agent key may not challenge it; anyone else
    may, and a challenge the arbiter finds wrong costs the challenger its bond, which
    goes to the provider it accused. The result stands with its window extended by
    the dispute's length, and is paid as usual once that has passed."""
    asset = register_asset()
    job, req, budget = post()
    market.assign(job, 0, asset, sender=keeper)
    submit(agent, job, 0, 0, output_root=GOOD, gpu_seconds=1_000, sender=provider)
    window_end = market.replica(job, 0, 0).deadline
    for insider in (provider, agent):
        with ape.reverts("dispute_court: provider cannot challenge its shard"):
            court.challenge(job, 0, sender=insider)

    bond = params.challenge_bond
    start = before = books.balances()
    tx = court.challenge(job, 0, sender=verifier)
    opened_at = chain.blocks.head.timestamp
    opened = tx.events.filter(market.DisputeOpened)[0]
    assert (opened.challenger, opened.bond) == (verifier, bond)
    books.assert_moved(before, verifier=-bond, market=bond)
    assert court.challenge_of(job, 0) == (verifier, bond)
    assert state(market, job, 0, 0) == ReplicaState.DISPUTED

    past_challenge_window(chain, params)
    with ape.reverts("job_market: shard not ready"):
        market.finalize(job, 0, sender=stranger)
    before = books.balances()
    tx = court.resolve(job, 0, GOOD, sender=facilitator)
    ruled_at = chain.blocks.head.timestamp
    assert dispute_resolved(tx, market) == (facilitator, 0, 1, 0)
    assert not tx.events.filter(market.ReplicaRejected)
    assert dispute_settled(tx, court) == (facilitator, verifier, 0, 0, False)
    books.assert_moved(before)  # the bond was in the market already
    books.assert_credits(provider=bond)
    assert court.challenge_of(job, 0) == (ZERO_ADDRESS, 0)
    assert assets.stake(asset).amount == STAKE
    extended = market.replica(job, 0, 0).deadline
    assert extended == window_end + ruled_at - opened_at
    with ape.reverts("job_market: challenge window open"):
        market.finalize(job, 0, sender=stranger)

    past(chain, extended)
    with ape.reverts("job_market: nothing to challenge"):
        court.challenge(job, 0, sender=stranger)
    tx = market.finalize(job, 0, sender=stranger)
    payment, keeper_fee, protocol_fee = amounts(req, 100, 1_000)
    refund = budget - payment - keeper_fee - protocol_fee
    assert finished(tx, market) == refund
    books.assert_credits(provider=bond + payment, keeper=keeper_fee, treasury=protocol_fee, client=refund)
    books.withdraw_all()
    books.assert_moved(
        start,
        market=-budget,
        verifier=-bond,
        provider=bond + payment,
        keeper=keeper_fee,
        treasury=protocol_fee,
        client=refund,
    )


@pytest.mark.usefixtures("registered_keeper")
def test_strangers_challenge_of_a_wrong_result_earns_the_reward(
    chain,
    market,
    court,
    assets,
    books,
    post,
    amounts,
    register_asset,
    submit,
    params,
    provider,
    provider2,
    keeper,
    keeper2,
    agents,
    facilitator,
    stranger,
):
    """A stranger who proves a result wrong gets its bond back and R (here a tenth of
    the slash, under the cap), the treasury the rest of the slash S; the wrong result
    is never paid and the shard is re-run by another asset on the same escrow."""
    stake = STAKE // 2 + 123  # so that neither the slash nor its tenth is round
    cheat = register_asset(owner=provider, agent_account=agents[0], price=100, stake=stake)
    fair = register_asset(owner=provider2, agent_account=agents[1], price=110)
    job, req, budget = post()
    market.assign(job, 0, cheat, sender=keeper)
    submit(agents[0], job, 0, 0, output_root=BAD, gpu_seconds=1_000, sender=provider)
    bond = params.challenge_bond
    start = before = books.balances()
    court.challenge(job, 0, sender=stranger)
    books.assert_moved(before, stranger=-bond, market=bond)

    slash = stake * params.slash_bps // 10_000
    reward = reward_of(slash, params)
    assert (slash, reward) == (50_000_012, 5_000_001)
    before = books.balances()
    tx = court.resolve(job, 0, GOOD, sender=facilitator)
    assert [(e.asset, e.slashed) for e in tx.events.filter(market.ReplicaRejected)] == [(cheat, slash)]
    assert dispute_resolved(tx, market) == (facilitator, 0b1, 0, 1)  # replica 0 found wrong
    assert dispute_settled(tx, court) == (facilitator, stranger, slash, reward, True)
    books.assert_moved(before, assets=-slash, market=slash)
    books.assert_credits(stranger=reward + bond, treasury=slash - reward)
    assert court.challenge_of(job, 0) == (ZERO_ADDRESS, 0)
    assert state(market, job, 0, 0) == ReplicaState.OPEN
    assert assets.stake(cheat).amount == stake - slash
    assert assets.stake(cheat).open_leases == 0

    tx = market.assign(job, 0, fair, sender=keeper2)
    assert tx.events.filter(market.ShardAssigned)[0].lease == 2
    submit(agents[1], job, 0, 0, output_root=GOOD, gpu_seconds=1_300, sender=provider2)
    past_challenge_window(chain, params)
    tx = market.finalize(job, 0, sender=stranger)
    payment, keeper_fee, protocol_fee = amounts(req, 110, 1_300)
    settled = tx.events.filter(market.ShardFinalized)
    assert [(e.asset, e["provider"], e.keeper) for e in settled] == [(fair, provider2, keeper2)]
    refund = budget - payment - keeper_fee - protocol_fee
    assert finished(tx, market) == refund
    books.assert_credits(
        stranger=reward + bond,
        provider2=payment,
        keeper2=keeper_fee,
        treasury=slash - reward + protocol_fee,
        client=refund,
    )
    books.withdraw_all()
    books.assert_moved(
        start,
        market=-budget,
        assets=-slash,
        stranger=reward,
        provider2=payment,
        keeper2=keeper_fee,
        treasury=slash - reward + protocol_fee,
        client=refund,
    )
    assert books.balances()["market"] == 0


@pytest.mark.usefixtures("registered_keeper")
def test_dispute_no_one_rules_on_expires_after_the_ruling_deadline(
    chain,
    market,
    court,
    assets,
    books,
    post,
    amounts,
    register_asset,
    submit,
    params,
    provider,
    provider2,
    keeper,
    agent,
    facilitator,
    stranger,
):
    """With the arbiter silent, anyone applies the default outcome after the ruling
    deadline (one lease and one challenge window after the dispute opened): the bond
    goes back, no one is slashed, and the result stands and is final: its window is not
    reopened (no one can challenge it again to hold payment off), finalize pays it at once."""
    asset = register_asset()
    job, req, budget = post()
    market.assign(job, 0, asset, sender=keeper)
    submit(agent, job, 0, 0, output_root=GOOD, gpu_seconds=2_000, sender=provider)
    window_end = market.replica(job, 0, 0).deadline
    bond = params.challenge_bond
    start = books.balances()
    court.challenge(job, 0, sender=stranger)
    opened_at = chain.blocks.head.timestamp
    deadline = court.ruling_deadline(job, 0)
    assert deadline == opened_at + req.lease_seconds(params.lease_grace) + params.challenge_window
    with ape.reverts("dispute_court: ruling deadline not passed"):
        court.expire(job, 0, sender=provider2)

    past(chain, deadline)
    with ape.reverts("dispute_court: ruling deadline passed"):
        court.resolve(job, 0, BAD, sender=facilitator)
    before = books.balances()
    tx = court.expire(job, 0, sender=provider2)
    expired_at = chain.blocks.head.timestamp
    assert dispute_resolved(tx, market) == (ZERO_ADDRESS, 0, 1, 0)
    assert dispute_settled(tx, court) == (ZERO_ADDRESS, stranger, 0, 0, True)
    books.assert_moved(before)
    books.assert_credits(stranger=bond)
    assert state(market, job, 0, 0) == ReplicaState.SUBMITTED
    assert assets.stake(asset).amount == STAKE
    with ape.reverts("dispute_court: no open dispute"):
        court.expire(job, 0, sender=provider2)
    assert market.replica(job, 0, 0).deadline == window_end < expired_at
    with ape.reverts("job_market: nothing to challenge"):
        court.challenge(job, 0, sender=stranger)

    tx = market.finalize(job, 0, sender=stranger)
    payment, keeper_fee, protocol_fee = amounts(req, 100, 2_000)
    refund = budget - payment - keeper_fee - protocol_fee
    assert finished(tx, market) == refund
    books.assert_credits(stranger=bond, provider=payment, keeper=keeper_fee, treasury=protocol_fee, client=refund)
    books.withdraw_all()
    books.assert_moved(start, market=-budget, provider=payment, keeper=keeper_fee, treasury=protocol_fee, client=refund)


@pytest.mark.usefixtures("registered_keeper")
def test_ruling_extends_the_window_so_a_second_challenger_still_can(
    chain,
    market,
    court,
    books,
    post,
    amounts,
    register_asset,
    submit,
    params,
    owner,
    client,
    provider,
    provider2,
    keeper,
    keeper2,
    agents,
    facilitator,
    stranger,
):
    """A ruling never closes a challenge window early. The client challenges a
    replicated shard late in its windows and loses its bond, split between the two
    providers it accused (the odd base unit to the first); the windows are extended
    by the dispute's length, so a stranger can still challenge after they would have
    closed. The arbiter cannot reproduce the job and rules the zero root: every
    result stands again, the stranger's bond is split too, and both replicas are paid."""
    bond = 10 * TOKEN + 1
    market.set_parameters(replace(params, challenge_bond=bond).as_tuple(), sender=owner)
    a1 = register_asset(owner=provider, agent_account=agents[0], price=100)
    a2 = register_asset(owner=provider2, agent_account=agents[1], price=120)
    job, req, budget = post(replication=2)
    market.assign(job, 0, a1, sender=keeper)
    market.assign(job, 0, a2, sender=keeper2)
    submit(agents[0], job, 0, 0, output_root=GOOD, gpu_seconds=1_000, sender=provider)
    submit(agents[1], job, 0, 1, output_root=GOOD, gpu_seconds=1_100, sender=provider2)
    ends = [market.replica(job, 0, r).deadline for r in (0, 1)]
    share = bond // 2

    start = before = books.balances()
    past(chain, ends[0] - 100)
    court.challenge(job, 0, sender=client)
    opened_at = chain.blocks.head.timestamp
    books.assert_moved(before, client=-bond, market=bond)
    assert [state(market, job, 0, r) for r in (0, 1)] == [ReplicaState.DISPUTED, ReplicaState.DISPUTED]
    past_challenge_window(chain, params)
    tx = court.resolve(job, 0, GOOD, sender=facilitator)
    ruled_at = chain.blocks.head.timestamp
    assert dispute_resolved(tx, market) == (facilitator, 0, 2, 0)
    assert dispute_settled(tx, court) == (facilitator, client, 0, 0, False)
    books.assert_credits(provider=share + 1, provider2=share)
    extended = [market.replica(job, 0, r).deadline for r in (0, 1)]
    assert extended == [end + ruled_at - opened_at for end in ends]

    assert chain.pending_timestamp > max(ends)  # both windows would have closed by now
    before = books.balances()
    tx = court.challenge(job, 0, sender=stranger)
    second_at = chain.blocks.head.timestamp
    assert tx.events.filter(market.DisputeOpened)[0].challenger == stranger
    books.assert_moved(before, stranger=-bond, market=bond)
    tx = court.resolve(job, 0, bytes(32), sender=facilitator)
    final_at = chain.blocks.head.timestamp
    assert dispute_resolved(tx, market) == (facilitator, 0, 2, 0)
    assert dispute_settled(tx, court) == (facilitator, stranger, 0, 0, False)
    books.assert_credits(provider=2 * (share + 1), provider2=2 * share)
    windows = [market.replica(job, 0, r).deadline for r in (0, 1)]
    assert windows == [end + final_at - second_at for end in extended]

    past(chain, max(windows))
    tx = market.finalize(job, 0, sender=stranger)
    p1, k1, t1 = amounts(req, 100, 1_000)
    p2, k2, t2 = amounts(req, 120, 1_100)
    refund = budget - p1 - k1 - t1 - p2 - k2 - t2
    assert finished(tx, market) == refund
    books.assert_credits(
        provider=2 * (share + 1) + p1, provider2=2 * share + p2, keeper=k1, keeper2=k2, treasury=t1 + t2, client=refund
    )
    books.withdraw_all()
    books.assert_moved(
        start,
        market=-budget,
        client=refund - bond,
        stranger=-bond,
        provider=2 * (share + 1) + p1,
        provider2=2 * share + p2,
        keeper=k1,
        keeper2=k2,
        treasury=t1 + t2,
    )


# ---------------------------------------------------------------- 7. decline


@pytest.mark.usefixtures("registered_keeper")
def test_decline_reopens_without_slash_and_voids_the_old_lease(
    chain,
    market,
    assets,
    books,
    post,
    amounts,
    register_asset,
    submit,
    sign_receipt,
    params,
    provider,
    keeper,
    keeper2,
    agent,
    stranger,
):
    """Both assets share one agent key, so only the lease and asset bound into the
    receipt keep the receipt for the declined lease from counting for the new one."""
    first = register_asset(agent_account=agent, price=100)
    second = register_asset(agent_account=agent, price=100)
    job, req, budget = post()

    market.assign(job, 0, first, sender=keeper)
    old = sign_receipt(agent, job, 0, 0, GOOD, 1)  # a one-second run, signed inside the decline window
    before = books.balances()
    reason = b"image not found".ljust(32, b"\x00")
    tx = market.decline(job, 0, 0, reason, sender=agent)
    declined = tx.events.filter(market.ShardDeclined)[0]
    assert (declined.replica, declined.asset, declined.reason) == (0, first, reason)
    books.assert_moved(before)
    books.assert_credits()
    assert state(market, job, 0, 0) == ReplicaState.OPEN
    assert assets.stake(first).amount == STAKE
    assert assets.stake(first).open_leases == 0
    with ape.reverts("job_market: replica not assigned"):
        market.submit_result(job, 0, 0, GOOD, 1, 0, old, sender=provider)

    tx = market.assign(job, 0, second, sender=keeper2)
    assert tx.events.filter(market.ShardAssigned)[0].lease == 2
    chain.mine(deltatime=params.decline_window + 1)
    with ape.reverts("job_market: receipt not signed by the asset's agent"):
        market.submit_result(job, 0, 0, GOOD, 1, 0, old, sender=provider)
    with ape.reverts("job_market: decline window closed"):
        market.decline(job, 0, 0, reason, sender=agent)

    submit(agent, job, 0, 0, output_root=GOOD, gpu_seconds=1_000, sender=provider)
    past_challenge_window(chain, params)
    tx = market.finalize(job, 0, sender=stranger)
    assert tx.events.filter(market.ShardFinalized)[0].keeper == keeper2
    payment, keeper_fee, protocol_fee = amounts(req, 100, 1_000)
    refund = budget - payment - keeper_fee - protocol_fee
    assert finished(tx, market) == refund
    books.assert_credits(provider=payment, keeper2=keeper_fee, treasury=protocol_fee, client=refund)
    assert [assets.stake(a).open_leases for a in (first, second)] == [0, 0]
    books.withdraw_all()
    assert books.balances()["market"] == 0


# ---------------------------------------------------------------- 8. keeper race


@pytest.mark.usefixtures("registered_keeper")
def test_losing_keeper_reverts_cleanly(
    chain,
    market,
    assets,
    keepers,
    books,
    post,
    amounts,
    register_asset,
    submit,
    params,
    provider,
    provider2,
    keeper,
    keeper2,
    agents,
    stranger,
):
    """Two keepers go for the only replica: the first wins; the second's transaction
    reverts with the documented reason and changes nothing."""
    a1 = register_asset(owner=provider, agent_account=agents[0])
    a2 = register_asset(owner=provider2, agent_account=agents[1])
    job, req, budget = post()
    market.assign(job, 0, a1, sender=keeper)

    replica = market.replica(job, 0, 0)
    stakes = (assets.stake(a1), assets.stake(a2))
    loser = keepers.keeper(keeper2)
    before = books.balances()
    with ape.reverts("job_market: shard has no open replica"):
        market.assign(job, 0, a2, sender=keeper2)
    assert market.replica(job, 0, 0) == replica
    assert (assets.stake(a1), assets.stake(a2)) == stakes
    assert stakes[1].open_leases == 0
    assert keepers.keeper(keeper2) == loser
    assert market.job(job).escrow == budget
    books.assert_moved(before)
    books.assert_credits()

    submit(agents[0], job, 0, 0, output_root=GOOD, gpu_seconds=700, sender=provider)
    past_challenge_window(chain, params)
    tx = market.finalize(job, 0, sender=stranger)
    payment, keeper_fee, protocol_fee = amounts(req, 100, 700)
    refund = budget - payment - keeper_fee - protocol_fee
    assert finished(tx, market) == refund
    books.assert_credits(provider=payment, keeper=keeper_fee, treasury=protocol_fee, client=refund)


# ---------------------------------------------------------------- 9. pause


@pytest.mark.usefixtures("registered_keeper")
def test_pause_stops_new_work_but_not_running_work(
    chain,
    market,
    books,
    post,
    amounts,
    register_asset,
    submit,
    make_requirements,
    params,
    owner,
    client,
    provider,
    provider2,
    keeper,
    keeper2,
    agents,
    stranger,
):
    """While paused nothing new starts and nobody is slashed, but running work is
    submitted, finalized and withdrawn as usual; unpausing resumes the rest."""
    a1 = register_asset(owner=provider, agent_account=agents[0], price=100, gpu_count=2)
    a2 = register_asset(owner=provider2, agent_account=agents[1], price=120)
    job, req, budget = post(shard_count=3)
    market.assign(job, 0, a1, sender=keeper)  # will submit while paused
    market.assign(job, 1, a2, sender=keeper)  # will let its lease run out

    tx = market.pause(sender=owner)
    assert tx.events.filter(market.Paused)[0].account == owner
    assert market.paused()
    submit(agents[0], job, 0, 0, output_root=GOOD, gpu_seconds=1_000, sender=provider)
    with ape.reverts("market_params: paused"):
        market.post_job(MANIFEST, make_requirements().as_tuple(), sender=client)
    with ape.reverts("market_params: paused"):
        market.assign(job, 2, a1, sender=keeper)

    chain.mine(deltatime=req.lease_seconds(params.lease_grace) + 1)
    tx = market.reclaim(job, 1, 0, sender=keeper2)  # reopens the lease, slashes nothing
    assert tx.events.filter(market.ShardReclaimed)[0].slashed == 0
    tx = market.finalize(job, 0, sender=stranger)
    p0, k0, t0 = amounts(req, 100, 1_000)
    assert tx.events.filter(market.ShardFinalized)[0].payment == p0
    books.assert_credits(provider=p0, keeper=k0, treasury=t0)
    before = books.balances()
    market.withdraw(provider, sender=provider)
    books.assert_moved(before, market=-p0, provider=p0)

    tx = market.unpause(sender=owner)
    assert tx.events.filter(market.Unpaused)[0].account == owner
    assert not market.paused()
    market.assign(job, 1, a1, sender=keeper2)
    market.assign(job, 2, a1, sender=keeper2)
    submit(agents[0], job, 1, 0, output_root=GOOD, gpu_seconds=2_000, sender=provider)
    submit(agents[0], job, 2, 0, output_root=GOOD, gpu_seconds=3_000, sender=provider)
    past_challenge_window(chain, params)
    assert finished(market.finalize(job, 1, sender=stranger), market) is None
    tx = market.finalize(job, 2, sender=stranger)
    p1, k1, t1 = amounts(req, 100, 2_000)
    p2, k2, t2 = amounts(req, 100, 3_000)
    refund = budget - (p0 + k0 + t0) - (p1 + k1 + t1) - (p2 + k2 + t2)
    assert finished(tx, market) == refund
    books.assert_credits(
        provider=p1 + p2,
        keeper=k0,
        keeper2=k1 + k2,
        treasury=t0 + t1 + t2,
        client=refund,
    )

    before = books.balances()
    new_job, _, new_budget = post()
    assert new_job == job + 1
    books.assert_moved(before, client=-new_budget, market=new_budget)
    books.withdraw_all()
    assert books.balances()["market"] == new_budget
