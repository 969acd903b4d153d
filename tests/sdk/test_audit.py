"""The audit ledger and provider histories from hand-built events, without a chain.

`Log` emits events in the order and with the amounts the contracts do (JobMarket,
DisputeCourt, AuthorizationFunder, settlement, asset_stakes); each test checks every line, the totals, and that
a line which does not reconcile is named in `problems`.
"""

import json

import pytest

from computenet.audit import EVENT_NAMES, Holdings, ledger, provider_history
from computenet.domain import Requirements, Verification, settle_amounts
from computenet.events import decode
from computenet.market import AUDIT_ROLES

CLIENT, PAYER = "0x" + "c1" * 20, "0x" + "c2" * 20
PROVIDER, PROVIDER2, BUYER = "0x" + "a1" * 20, "0x" + "a2" * 20, "0x" + "a3" * 20
KEEPER, TREASURY, CHALLENGER = "0x" + "b1" * 20, "0x" + "7e" * 20, "0x" + "cc" * 20
ZERO = "0x" + "00" * 20
GOOD, BAD = b"\x01" * 32, b"\x02" * 32
KEEPER_BPS, PROTOCOL_BPS = 100, 50
BOND = 10_000_000


class Log:
    """Events as the contracts emit them; `tx()` starts the next transaction (and block)."""

    def __init__(self, deployment=True) -> None:
        self.events = []
        self.block = 0
        self.hash = ""
        self.index = 0
        self.tx()
        if deployment:  # the market's constructor names the treasury
            self.emit("TreasurySet", treasury=TREASURY)

    def tx(self) -> str:
        self.block += 1
        self.hash = f"0x{self.block:064x}"
        return self.hash

    def emit(self, name, **args):
        self.events.append(decode(name, args, block=self.block, tx=self.hash, index=self.index))
        self.index += 1

    def credit(self, account, amount):
        if amount:  # settlement._credit skips zero amounts
            self.emit("Credited", account=account, amount=amount)

    # -- the market's calls, one transaction each

    def post(self, job, client=CLIENT, shards=1, replication=1, max_price=200, max_gpu_seconds=3_600, kbps=KEEPER_BPS):
        req = Requirements(1, 1, max_price, max_gpu_seconds, 10**9, shards, replication, Verification.OPTIMISTIC)
        budget = req.quote(kbps, PROTOCOL_BPS)
        self.tx()
        self.emit(
            "JobPosted",
            job=job,
            client=client,
            manifest_hash=b"\x00" * 32,
            budget=budget,
            min_vram_mib=1,
            gpu_count=1,
            max_price=max_price,
            max_gpu_seconds=max_gpu_seconds,
            deadline=10**9,
            shard_count=shards,
            replication=replication,
            verification=0,
            keeper_fee_bps=kbps,
            protocol_fee_bps=PROTOCOL_BPS,
            cpu_cores=req.cpu_cores,
            memory_mib=req.memory_mib,
            disk_mib=req.disk_mib,
        )
        return budget

    def assign(self, job, shard, replica, asset, price, lease=1):
        self.tx()
        self.emit(
            "ShardAssigned",
            job=job,
            shard=shard,
            replica=replica,
            asset=asset,
            keeper=KEEPER,
            lease=lease,
            lease_end=10**8,
            price=price,
        )

    def submit(self, job, shard, replica, asset, gpu_seconds, root=GOOD):
        self.tx()
        self.emit(
            "ResultSubmitted",
            job=job,
            shard=shard,
            replica=replica,
            asset=asset,
            output_root=root,
            gpu_seconds=gpu_seconds,
            exit_code=0,
            challenge_end=10**8,
        )

    def finalize(self, job, shard, replica, asset, provider, amounts, new_tx=True):
        if new_tx:
            self.tx()
        payment, keeper_fee, protocol_fee = amounts  # credited with no Credited: the event names them
        self.emit(
            "ShardFinalized",
            job=job,
            shard=shard,
            replica=replica,
            asset=asset,
            provider=provider,
            keeper=KEEPER,
            payment=payment,
            keeper_fee=keeper_fee,
            protocol_fee=protocol_fee,
        )

    def finish(self, job, refund, client=CLIENT):
        """JobFinished, in the transaction of the job's last finalize or cancel (it names the
        refund's credit, which has no Credited)."""
        self.emit("JobFinished", job=job, client=client, refund=refund)

    def reclaim(self, job, shard, replica, asset, stake, slash_bps=1_000):
        self.tx()
        slashed = stake * slash_bps // 10_000
        self.emit("StakeSlashed", asset=asset, amount=slashed, stake=stake - slashed)
        self.credit(TREASURY, slashed)
        self.emit("ShardReclaimed", job=job, shard=shard, replica=replica, asset=asset, caller=KEEPER, slashed=slashed)
        return slashed

    def cancel(self, job, shard, replicas):
        self.tx()
        self.emit("ShardCancelled", job=job, shard=shard, replicas=replicas)

    def challenge(self, job, shard, challenger=CHALLENGER, bond=BOND):
        self.tx()
        self.emit("DisputeOpened", job=job, shard=shard, challenger=challenger, bond=bond)

    def rule(self, job, shard, rejected, upheld, arbiter=KEEPER):
        """JobMarket.rule, first part of a court ruling's transaction: `rejected` is
        [(replica, asset, stake)], each slashed by 10 %; returns the total slashed."""
        self.tx()
        total = 0
        for replica, asset, stake in rejected:
            slashed = stake // 10
            total += slashed
            self.emit("StakeSlashed", asset=asset, amount=slashed, stake=stake - slashed)
            self.emit("ReplicaRejected", job=job, shard=shard, replica=replica, asset=asset, slashed=slashed)
        mask = sum(1 << r for r, _, _ in rejected)
        self.emit(
            "DisputeResolved",
            job=job,
            shard=shard,
            facilitator=arbiter,
            rejected_replicas=mask,
            upheld=upheld,
            rejected=len(rejected),
        )
        return total

    def settled(self, job, shard, challenger, slashed, reward, returned, arbiter=KEEPER):
        self.emit(
            "DisputeSettled",
            job=job,
            shard=shard,
            arbiter=arbiter,
            challenger=challenger,
            slashed=slashed,
            reward=reward,
            bond_returned=returned,
        )


def shape(lines):
    """(kind, account, amount, asset, shard, replica, gpu_seconds, price, detail) of each line."""
    return [(x.kind, x.account, x.amount, x.asset, x.shard, x.replica, x.gpu_seconds, x.price, x.detail) for x in lines]


def one_shard_job(log, job=1, gpu_seconds=1_234, price=100):
    """A one-replica job run and finalized by asset 1; returns (budget, amounts, refund)."""
    budget = log.post(job)
    log.assign(job, 0, 0, 1, price)
    log.submit(job, 0, 0, 1, gpu_seconds)
    amounts = settle_amounts(price, gpu_seconds, KEEPER_BPS, PROTOCOL_BPS)
    log.finalize(job, 0, 0, 1, PROVIDER, amounts)
    refund = budget - sum(amounts)
    log.finish(job, refund)
    return budget, amounts, refund


# ------------------------------------------------------------------ the job's own lines


def test_a_finalized_job_pays_provider_keeper_and_treasury_and_refunds_the_rest():
    log = Log()
    budget, amounts, refund = one_shard_job(log)
    assert (budget, amounts, refund) == (730_800, (123_400, 1_234, 617), 605_549)
    result = ledger(log.events)
    job = result.jobs[1]
    assert shape(job.lines) == [
        ("escrowed", CLIENT, 730_800, None, None, None, None, None, "post"),
        ("paid", PROVIDER, 123_400, 1, 0, 0, 1_234, 100, ""),
        ("keeper_fee", KEEPER, 1_234, 1, 0, 0, None, None, ""),
        ("protocol_fee", TREASURY, 617, 1, 0, 0, None, None, ""),
        ("refund", CLIENT, 605_549, None, None, None, None, None, ""),
    ]
    assert [x.transaction for x in job.lines] == [f"0x{b:064x}" for b in (2, 5, 5, 5, 5)]
    assert job.totals() == {
        "escrowed": 730_800,
        "paid": 123_400,
        "keeper_fees": 1_234,
        "protocol_fees": 617,
        "refunded": 605_549,
        "held": 0,
        "slashed": 0,
        "bonds_held": 0,
    }
    assert job.finished and job.check(escrow=0) == [] and result.problems == []
    assert result.owed() == {CLIENT: 605_549, KEEPER: 1_234, PROVIDER: 123_400, TREASURY: 617}


def test_a_reader_that_did_not_read_the_deployment_names_the_treasury_it_starts_with():
    """A reader that starts after the market's constructor never sees TreasurySet: it names the
    treasury it starts with; a slash's Credited names it too. Without one, a protocol fee is a
    problem rather than a credit to no one."""
    log = Log(deployment=False)
    one_shard_job(log)
    log.post(2)
    log.assign(2, 0, 0, 7, price=100)
    log.reclaim(2, 0, 0, 7, stake=1_000)
    finalized = next(e.tx for e in log.events if e.name == "ShardFinalized")
    assert ledger(log.events).jobs[1].problems == [
        f"job 1 shard 0 replica 0's protocol fee in {finalized} went to a treasury no TreasurySet named"
    ]
    result = ledger(log.events, treasury=TREASURY)
    assert result.problems == [] and result.jobs[1].problems == result.jobs[2].problems == []
    treasury_lines = [x for j in result.jobs.values() for x in j.lines if x.kind in ("protocol_fee", "slash")]
    assert [(x.kind, x.account, x.amount) for x in treasury_lines] == [
        ("protocol_fee", TREASURY, 617),
        ("slash", TREASURY, 100),
    ]


def test_fees_round_down_and_a_claim_is_paid_up_to_the_jobs_cap_as_on_chain():
    log = Log()
    budget = log.post(1, max_price=7, max_gpu_seconds=1_000, kbps=33)
    log.assign(1, 0, 0, 1, price=7)
    log.submit(1, 0, 0, 1, gpu_seconds=1_500)  # the market bills 1,000
    log.finalize(1, 0, 0, 1, PROVIDER, (7_000, 23, 35))  # 7,000 × 33 / 10^4 = 23.1; × 50 = 35
    log.finish(1, budget - 7_058)
    job = ledger(log.events).jobs[1]
    assert [(x.kind, x.amount, x.gpu_seconds) for x in job.lines[1:3]] == [
        ("paid", 7_000, 1_000),
        ("keeper_fee", 23, None),
    ]
    assert job.check(escrow=0) == []

    rounded_up = Log()
    budget = rounded_up.post(1, max_price=7, max_gpu_seconds=1_000, kbps=33)
    rounded_up.assign(1, 0, 0, 1, price=7)
    rounded_up.submit(1, 0, 0, 1, gpu_seconds=1_500)
    rounded_up.finalize(1, 0, 0, 1, PROVIDER, (7_000, 24, 35))
    rounded_up.finish(1, budget - 7_059)
    [problem] = ledger(rounded_up.events).jobs[1].problems
    assert "(7000, 24, 35)" in problem and "gives (7000, 23, 35)" in problem and "1000 GPU-seconds" in problem


def test_a_payment_that_is_not_price_times_gpu_seconds_is_caught():
    log = Log()
    budget = log.post(1)
    log.assign(1, 0, 0, 1, price=100)
    log.submit(1, 0, 0, 1, gpu_seconds=1_000)
    log.finalize(1, 0, 0, 1, PROVIDER, (100_001, 1_000, 500))
    log.finish(1, budget - 101_501)
    [problem] = ledger(log.events).jobs[1].problems
    assert problem.startswith("job 1 shard 0 replica 0 settled") and "price 100 × 1000" in problem


def test_a_refund_that_is_not_what_the_job_left_is_caught():
    log = Log()
    budget = log.post(1)
    log.assign(1, 0, 0, 1, price=100)
    log.submit(1, 0, 0, 1, gpu_seconds=1_000)
    log.finalize(1, 0, 0, 1, PROVIDER, (100_000, 1_000, 500))
    log.finish(1, budget - 101_500 + 1)
    job = ledger(log.events).jobs[1]
    assert job.problems == [
        f"job 1 refunded {budget - 101_499} in {log.hash}, but {budget - 101_500} of its escrow was left"
    ]
    assert job.totals()["held"] == -1
    assert "job 1 paid out 1 more than it escrowed" in job.check()


def test_escrow_the_market_does_not_hold_is_caught():
    log = Log()
    budget = log.post(1, shards=2)
    job = ledger(log.events).jobs[1]
    assert job.totals()["held"] == budget and job.check(escrow=budget) == []
    assert job.check(escrow=budget - 1) == [
        f"job 1: the market holds {budget - 1} in escrow, the events leave {budget}"
    ]
    assert job.as_json(budget - 1)["reconciled"] is False


def test_a_credit_with_no_line_or_a_line_with_no_credit_is_caught():
    log = Log()
    one_shard_job(log)
    log.credit(PROVIDER, 5)  # a Credited no event explains
    result = ledger(log.events)
    assert result.problems == [f"{PROVIDER} was credited 5 in {log.hash}, which no event explains"]

    log = Log()
    log.post(1)
    log.assign(1, 0, 0, 1, price=100)
    log.submit(1, 0, 0, 1, gpu_seconds=10)
    log.tx()
    log.emit(
        "ShardFinalized",
        job=1,
        shard=0,
        replica=0,
        asset=1,
        provider=PROVIDER,
        keeper=KEEPER,
        payment=1_000,
        keeper_fee=10,
        protocol_fee=5,
    )  # credits its payment and fees itself: no Credited before it
    result = ledger(log.events)
    assert result.problems == [] and result.jobs[1].problems == []
    assert dict(result.credited) == {PROVIDER: 1_000, KEEPER: 10, TREASURY: 5}

    log = Log()
    log.post(1)
    log.assign(1, 0, 0, 1, price=100)
    log.reclaim(1, 0, 0, 1, stake=1_000)
    log.events = [e for e in log.events if e.name != "Credited"]  # a slash credited with no Credited
    result = ledger(log.events)
    assert result.jobs[1].problems == [
        f"job 1 shard 0 replica 0's reclaim slash of 100 to {TREASURY} in {log.hash} was credited nothing"
    ]


def test_events_of_a_job_whose_posting_was_not_read_are_named():
    log = Log()
    log.assign(9, 0, 0, 1, price=100)
    log.finalize(9, 0, 0, 1, PROVIDER, (0, 0, 0))
    result = ledger(log.events)
    assert result.jobs == {}
    assert result.problems == [f"ShardFinalized in {log.hash} is of job 9, whose JobPosted was not read"]


def test_the_audit_reads_the_events_of_the_authorization_funder():
    """x402 payments are the AuthorizationFunder's events, not the market's."""
    assert "funder" in AUDIT_ROLES and {"JobFundedByAuthorization", "UnclaimedReturned"} <= set(EVENT_NAMES)


def test_an_x402_job_is_escrowed_from_its_payer():
    log = Log()
    budget = log.post(1, client=PAYER)  # JobMarket.post_job_for, then in the same transaction the funder's event
    log.emit("JobFundedByAuthorization", job=1, payer=PAYER, nonce=b"\x05" * 32, front_run=False)
    line = ledger(log.events).jobs[1].lines[0]
    assert (line.kind, line.account, line.amount, line.detail) == ("escrowed", PAYER, budget, "authorization")


# ------------------------------------------------------------------ slashes and bonds


def test_a_reclaim_slashes_the_asset_to_the_treasury():
    log = Log()
    budget = log.post(1)
    log.assign(1, 0, 0, 7, price=100)
    slashed = log.reclaim(1, 0, 0, 7, stake=1_000_000_123)
    assert slashed == 100_000_012
    log.cancel(1, 0, replicas=1)
    log.finish(1, budget)
    result = ledger(log.events)
    assert shape(result.jobs[1].lines) == [
        ("escrowed", CLIENT, budget, None, None, None, None, None, "post"),
        ("slash", TREASURY, 100_000_012, 7, 0, 0, None, None, "reclaim"),
        ("refund", CLIENT, budget, None, None, None, None, None, ""),
    ]
    assert result.jobs[1].totals()["slashed"] == slashed and result.problems == []
    assert result.jobs[1].check(escrow=0) == []
    assert result.stakes == {7: 1_000_000_123 - slashed}


def test_a_slash_the_registry_did_not_take_is_caught():
    log = Log()
    log.post(1)
    log.assign(1, 0, 0, 7, price=100)
    log.tx()
    log.emit("StakeSlashed", asset=7, amount=99, stake=1)
    log.credit(TREASURY, 100)
    log.emit("ShardReclaimed", job=1, shard=0, replica=0, asset=7, caller=KEEPER, slashed=100)
    assert ledger(log.events).jobs[1].problems == [
        f"ShardReclaimed in {log.hash} slashed 100 of asset 7, the registry took 99"
    ]


def test_a_proven_challenge_earns_the_reward_and_its_bond_back():
    log = Log()
    log.post(1)
    log.assign(1, 0, 0, 3, price=100)
    log.submit(1, 0, 0, 3, gpu_seconds=1_000, root=BAD)
    log.challenge(1, 0)
    slashed = log.rule(1, 0, rejected=[(0, 3, 500_000_123)], upheld=0)
    reward = min(slashed // 10, BOND)
    assert (slashed, reward) == (50_000_012, 5_000_001)
    log.credit(CHALLENGER, reward)
    log.credit(TREASURY, slashed - reward)
    log.credit(CHALLENGER, BOND)
    log.settled(1, 0, CHALLENGER, slashed, reward, True)
    result = ledger(log.events)
    job = result.jobs[1]
    assert shape(job.lines[1:]) == [
        ("bond", CHALLENGER, BOND, None, 0, None, None, None, "held"),
        ("slash", CHALLENGER, 5_000_001, 3, 0, 0, None, None, "reward"),
        ("slash", TREASURY, 45_000_011, 3, 0, 0, None, None, "dispute"),
        ("bond", CHALLENGER, BOND, None, 0, None, None, None, "returned"),
    ]
    assert job.problems == [] and result.problems == []
    assert (job.totals()["slashed"], job.totals()["bonds_held"]) == (slashed, 0)
    assert result.owed() == {CHALLENGER: BOND + reward, TREASURY: slashed - reward}


def test_a_reward_is_drawn_from_the_rejected_replicas_in_order():
    log = Log()
    log.post(1, replication=3)
    for r, asset in enumerate((4, 5, 6)):
        log.assign(1, 0, r, asset, price=100)
        log.submit(1, 0, r, asset, gpu_seconds=10, root=BAD if r < 2 else GOOD)
    log.challenge(1, 0)
    slashed = log.rule(1, 0, rejected=[(0, 4, 30), (1, 5, 1_000)], upheld=1)
    assert slashed == 103
    log.credit(CHALLENGER, 5)  # the reward, here set by hand to span both replicas
    log.credit(TREASURY, 98)
    log.credit(CHALLENGER, BOND)
    log.settled(1, 0, CHALLENGER, slashed, 5, True)
    job = ledger(log.events).jobs[1]
    assert [(x.account, x.amount, x.asset, x.detail) for x in job.lines if x.kind == "slash"] == [
        (CHALLENGER, 3, 4, "reward"),
        (CHALLENGER, 2, 5, "reward"),
        (TREASURY, 98, 5, "dispute"),
    ]
    assert job.problems == []


def test_a_false_challenge_forfeits_its_bond_to_the_accused_with_the_remainder_to_the_first():
    log = Log()
    log.post(1, replication=2)
    for r, asset in enumerate((4, 5)):
        log.assign(1, 0, r, asset, price=100)
        log.submit(1, 0, r, asset, gpu_seconds=10)
    bond = 10_000_001
    log.challenge(1, 0, bond=bond)
    log.rule(1, 0, rejected=[], upheld=2)
    for owner in (PROVIDER, PROVIDER2):
        log.credit(owner, bond // 2)
    log.credit(PROVIDER, 1)
    log.settled(1, 0, CHALLENGER, 0, 0, False)
    result = ledger(log.events)
    job = result.jobs[1]
    assert [(x.account, x.amount, x.detail) for x in job.lines if x.kind == "bond"] == [
        (CHALLENGER, bond, "held"),
        (PROVIDER, 5_000_000, "forfeited"),
        (PROVIDER2, 5_000_000, "forfeited"),
        (PROVIDER, 1, "forfeited"),
    ]
    assert job.problems == [] and result.problems == [] and job.totals()["bonds_held"] == 0
    assert result.totals()["bonds_forfeited"] == bond


def test_a_forfeited_bond_that_is_not_all_credited_is_caught():
    log = Log()
    log.post(1)
    log.assign(1, 0, 0, 4, price=100)
    log.submit(1, 0, 0, 4, gpu_seconds=10)
    log.challenge(1, 0)
    log.rule(1, 0, rejected=[], upheld=1)
    log.credit(PROVIDER, BOND - 1)
    log.settled(1, 0, CHALLENGER, 0, 0, False)
    [problem] = ledger(log.events).jobs[1].problems
    assert problem == f"the dispute of job 1 shard 0 forfeited a bond of {BOND} in {log.hash}, credited [{BOND - 1}]"


def test_a_bond_held_while_the_dispute_is_open_and_returned_when_it_expires():
    log = Log()
    log.post(1)
    log.assign(1, 0, 0, 4, price=100)
    log.submit(1, 0, 0, 4, gpu_seconds=10)
    log.challenge(1, 0)
    assert ledger(log.events).totals()["bonds_held"] == BOND
    log.rule(1, 0, rejected=[], upheld=1, arbiter=ZERO)
    log.credit(CHALLENGER, BOND)
    log.settled(1, 0, CHALLENGER, 0, 0, True, arbiter=ZERO)
    result = ledger(log.events)
    assert [x.detail for x in result.jobs[1].lines if x.kind == "bond"] == ["held", "returned"]
    assert result.totals()["bonds_held"] == 0 and result.problems == [] and result.jobs[1].problems == []


def test_replicas_that_disagree_by_themselves_reward_the_first_upheld_provider():
    log = Log()
    log.post(1, replication=2)
    log.assign(1, 0, 0, 4, price=100)
    log.submit(1, 0, 0, 4, gpu_seconds=10, root=BAD)
    log.assign(1, 0, 1, 5, price=100)
    log.submit(1, 0, 1, 5, gpu_seconds=10)
    log.emit("DisputeOpened", job=1, shard=0, challenger=ZERO, bond=0)
    slashed = log.rule(1, 0, rejected=[(0, 4, 1_000_000)], upheld=1)
    log.credit(PROVIDER2, slashed // 10)
    log.credit(TREASURY, slashed - slashed // 10)
    log.settled(1, 0, ZERO, slashed, slashed // 10, False)
    job = ledger(log.events).jobs[1]
    assert [(x.kind, x.account, x.amount, x.detail) for x in job.lines[1:]] == [
        ("slash", PROVIDER2, 10_000, "reward"),
        ("slash", TREASURY, 90_000, "dispute"),
    ]
    assert job.problems == []


def test_a_reward_credited_to_no_one_is_caught():
    log = Log()
    log.post(1)
    log.assign(1, 0, 0, 4, price=100)
    log.submit(1, 0, 0, 4, gpu_seconds=10, root=BAD)
    log.challenge(1, 0)
    slashed = log.rule(1, 0, rejected=[(0, 4, 1_000_000)], upheld=0)
    log.credit(TREASURY, slashed)  # all of it, none to the challenger
    log.credit(CHALLENGER, BOND)
    log.settled(1, 0, CHALLENGER, slashed, 10_000, True)
    problems = ledger(log.events).jobs[1].problems
    assert (
        problems[0] == f"the dispute of job 1 shard 0's reward of 10000 in {log.hash} was credited 100000 to {TREASURY}"
    )


# ------------------------------------------------------------------ the network


def test_the_market_balance_is_escrow_plus_credits_plus_bonds_plus_surplus():
    log = Log()
    budget1, amounts, refund = one_shard_job(log, job=1)
    budget2 = log.post(2, shards=2)  # still open: all of it held
    log.tx()
    log.emit("Withdrawn", account=PROVIDER, receiver=PROVIDER, amount=amounts[0])
    log.tx()
    log.credit(PAYER, 77)  # JobMarket.credit_surplus, then in the same transaction the funder's event
    log.emit("UnclaimedReturned", payer=PAYER, nonce=b"\x09" * 32, amount=77)
    result = ledger(log.events)
    totals = result.totals()
    assert totals["escrowed"] == budget1 + budget2
    assert totals["held"] == budget2
    assert totals["credited"] == budget1 + 77 and totals["withdrawn"] == amounts[0]
    assert totals["owed"] == budget1 - amounts[0] + 77
    assert totals["unclaimed_returned"] == 77 and totals["fees"] == amounts[1] + amounts[2]
    assert [(x.kind, x.account, x.amount, x.detail) for x in result.lines] == [
        ("refund", PAYER, 77, "unclaimed authorization")
    ]
    assert result.owed() == {CLIENT: refund, KEEPER: amounts[1], PAYER: 77, TREASURY: amounts[2]}

    owed = budget2 + totals["owed"]
    chain = Holdings(
        block=log.block,
        market=owed + 5,  # 5 tokens sent to the market by hand
        owed=owed,
        assets=0,
        escrows={1: 0, 2: budget2},
        credits={CLIENT: refund, PROVIDER: 0, PAYER: 77},
    )
    assert result.check(chain) == []
    answer = result.as_json(chain)
    assert answer["balances"] == {
        "market": owed + 5,
        "owed": totals["owed"],
        "escrow": budget2,
        "bonds": 0,
        "surplus": 5,
        "settlement_owed": owed,
        "stakes": 0,
        "assets": 0,
    }
    assert answer["reconciled"] is True and answer["problems"] == []
    assert json.loads(json.dumps(answer)) == answer

    wrong = Holdings(log.block, owed - 1, owed + 1, 0, {1: 0, 2: budget2 - 3}, {PAYER: 78})
    assert result.check(wrong) == [
        f"the market owes {owed + 1} (settlement.owed) but the events give {owed}: escrow {budget2}"
        f" + credits {totals['owed']} + bonds 0",
        f"the market holds {owed - 1}, less than the {owed + 1} it owes",
        f"{PAYER} may withdraw 78, the events leave 77",
    ]
    answer = result.as_json(wrong)
    assert answer["reconciled"] is False
    assert answer["jobs"][1]["problems"] == [
        f"job 2: the market holds {budget2 - 3} in escrow, the events leave {budget2}"
    ]


# ------------------------------------------------------------------ providers


def register(log, asset, owner, stake):
    log.tx()
    log.emit("Transfer", sender=ZERO, receiver=owner, token_id=asset)
    log.tx()
    log.emit("StakeAdded", asset=asset, sender=owner, amount=stake, stake=stake)


def test_a_providers_history_lists_its_assets_leases_earnings_slashes_and_stake():
    log = Log()
    register(log, 1, PROVIDER, 1_000)
    register(log, 2, PROVIDER, 2_000)
    register(log, 3, PROVIDER2, 5_000)  # someone else's
    one_shard_job(log, job=1, gpu_seconds=50, price=3)  # on asset 1
    log.post(2)
    log.assign(2, 0, 0, 2, price=9)
    slashed = log.reclaim(2, 0, 0, 2, stake=2_000)
    log.assign(2, 0, 0, 1, price=3, lease=2)
    log.tx()
    log.emit("ShardDeclined", job=2, shard=0, replica=0, asset=1, reason=b"no\x00" + bytes(29))
    log.tx()
    log.emit("Transfer", sender=PROVIDER, receiver=BUYER, token_id=1)  # sold: later leases are the buyer's
    log.assign(2, 0, 0, 1, price=3, lease=3)
    log.tx()
    log.emit("UnstakeRequested", asset=2, amount=500, unbond_at=10**9)

    history = provider_history(PROVIDER.upper().replace("0X", "0x"), log.events).as_json()
    assert [a["asset"] for a in history["assets"]] == [1, 2]
    one, two = history["assets"]
    assert (one["owned"], one["stake"], two["owned"], two["stake"], two["unbonding"]) == (
        False,
        1_000,
        True,
        2_000 - slashed,
        500,
    )
    assert [(x["job"], x["lease"], x["state"], x["gpu_seconds"], x["paid"]) for x in one["leases"]] == [
        (1, 1, "finalized", 50, 150),
        (2, 2, "declined", None, 0),
    ]
    assert one["leases"][0]["output_root"] == "0x" + "01" * 32
    assert [(x["kind"], x["account"], x["amount"], x["gpu_seconds"], x["price"]) for x in one["earnings"]] == [
        ("paid", PROVIDER, 150, 50, 3)
    ]
    assert [(x["job"], x["state"], x["slashed"]) for x in two["leases"]] == [(2, "reclaimed", slashed)]
    assert [(x["job"], x["amount"], x["cause"]) for x in two["slashes"]] == [(2, slashed, "reclaim")]
    assert history["totals"] == {"assets": 1, "leases": 3, "earned": 150, "slashed": slashed, "stake": 2_000 - slashed}
    assert json.loads(json.dumps(history)) == history

    buyer = provider_history(BUYER, log.events).as_json()
    assert [(a["asset"], a["owned"], len(a["leases"])) for a in buyer["assets"]] == [(1, True, 1)]
    assert provider_history("0x" + "99" * 20, log.events).as_json()["assets"] == []


@pytest.mark.parametrize(
    "cancelled, states",
    [
        (1, ["assigned", "assigned"]),  # only the open replica
        (2, ["assigned", "cancelled"]),  # and the last assigned, still inside its decline window
        (3, ["cancelled", "cancelled"]),
    ],
)
def test_a_cancel_counts_the_open_and_the_latest_assigned_replicas(cancelled, states):
    log = Log()
    register(log, 1, PROVIDER, 1_000)
    register(log, 2, PROVIDER, 1_000)
    log.post(1, replication=3)
    log.assign(1, 0, 0, 1, price=5)
    log.assign(1, 0, 1, 2, price=5)
    log.cancel(1, 0, replicas=cancelled)
    history = provider_history(PROVIDER, log.events).as_json()
    assert [a["leases"][0]["state"] for a in history["assets"]] == states


def test_a_rejected_result_is_slashed_in_the_providers_history():
    log = Log()
    register(log, 4, PROVIDER, 1_000_000)
    log.post(1)
    log.assign(1, 0, 0, 4, price=100)
    log.submit(1, 0, 0, 4, gpu_seconds=5_000, root=BAD)  # over the cap: billed 3,600
    log.challenge(1, 0)
    slashed = log.rule(1, 0, rejected=[(0, 4, 1_000_000)], upheld=0)
    [asset] = provider_history(PROVIDER, log.events).as_json()["assets"]
    [lease] = asset["leases"]
    assert (lease["state"], lease["gpu_seconds"], lease["slashed"]) == ("rejected", 3_600, slashed)
    assert [(x["amount"], x["cause"]) for x in asset["slashes"]] == [(slashed, "dispute")]
    assert asset["stake"] == 1_000_000 - slashed
