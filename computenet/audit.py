"""The audit ledger: where every token that entered the market went, from the chain's events.

Per job, money lines `{kind, account, amount, asset, shard, replica, gpu_seconds, price,
detail, block, transaction}` in chain order, kind one of KINDS:

    escrowed      the job's budget, from its client (detail "authorization": an x402 payer)
    paid          a provider credited price × GPU-seconds for one replica
    keeper_fee    the assigning keeper's fee on that payment
    protocol_fee  the treasury's fee on that payment
    refund        what the finished job did not use, to its client
    slash         part of an asset's stake, to the treasury ("reclaim", "dispute") or to whoever
                  proved the fault ("reward")
    bond          a challenger's bond: "held" by the market, "returned" to the challenger, or
                  "forfeited" to the providers it accused

Each job reconciles: escrowed = paid + keeper fees + protocol fees + refunded + held. The
market owes (its `settlement.owed`) escrow held + credits not withdrawn + bonds held, and its
token balance is that plus a surplus owed to no one (an x402 transfer front-run to the market
before its job is posted, a stray transfer). Every amount is checked against what the
contracts would have computed from the same events, and every Credited must be the one the
contracts emit for a line, in their order; a mismatch is a `problem`, never hidden. An
unclaimed authorization returned to its payer is a `refund` line of no job.

`provider_history` gives one owner's assets, each with its leases, earnings, slashes and stake.

Pure: no ape or web3; the reader is `Market.audit` (computenet/market.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from computenet.domain import settle_amounts
from computenet.events import Event

KINDS = ("escrowed", "paid", "keeper_fee", "protocol_fee", "refund", "slash", "bond")
# The events the ledger and the provider history read; the reader fetches only these.
EVENT_NAMES = frozenset(
    {
        "TreasurySet",
        "JobPosted",
        "JobFundedByAuthorization",
        "UnclaimedReturned",
        "ShardAssigned",
        "ShardDeclined",
        "ResultSubmitted",
        "ShardFinalized",
        "ShardReclaimed",
        "CheckpointAdopted",
        "ContributionPaid",
        "ShardCancelled",
        "ReplicaRejected",
        "DisputeOpened",
        "DisputeResolved",
        "DisputeSettled",
        "JobFinished",
        "Credited",
        "Withdrawn",
        "Transfer",
        "StakeAdded",
        "UnstakeRequested",
        "StakeWithdrawn",
        "StakeSlashed",
    }
)
ZERO = "0x" + "00" * 20
JOB_TOTALS = ("escrowed", "paid", "keeper_fees", "protocol_fees", "refunded", "held", "slashed", "bonds_held")


def _same(a: str, b: str) -> bool:
    return str(a).lower() == str(b).lower()


def _hex(value: bytes | str) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


@dataclass(frozen=True)
class Line:
    """One movement of money, attributed to an account."""

    kind: str
    account: str
    amount: int
    block: int
    transaction: str
    asset: int | None = None
    shard: int | None = None
    replica: int | None = None
    gpu_seconds: int | None = None
    price: int | None = None
    detail: str = ""

    def as_json(self) -> dict:
        return {
            "kind": self.kind,
            "account": self.account,
            "amount": self.amount,
            "asset": self.asset,
            "shard": self.shard,
            "replica": self.replica,
            "gpu_seconds": self.gpu_seconds,
            "price": self.price,
            "detail": self.detail,
            "block": self.block,
            "transaction": self.transaction,
        }


@dataclass
class JobLedger:
    """One job's lines and what its events promise about them (`problems` when they disagree)."""

    job: int
    client: str
    keeper_fee_bps: int
    protocol_fee_bps: int
    lines: list[Line] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    finished: bool = False

    def total(self, kind: str, detail: str | None = None) -> int:
        return sum(x.amount for x in self.lines if x.kind == kind and (detail is None or x.detail == detail))

    def totals(self) -> dict[str, int]:
        escrowed, refunded = self.total("escrowed"), self.total("refund")
        paid, keeper, protocol = self.total("paid"), self.total("keeper_fee"), self.total("protocol_fee")
        posted = self.total("bond", "held")
        settled = self.total("bond", "returned") + self.total("bond", "forfeited")
        return {
            "escrowed": escrowed,
            "paid": paid,
            "keeper_fees": keeper,
            "protocol_fees": protocol,
            "refunded": refunded,
            "held": escrowed - paid - keeper - protocol - refunded,
            "slashed": self.total("slash"),
            "bonds_held": posted - settled,
        }

    def check(self, escrow: int | None = None) -> list[str]:
        """What does not reconcile: the events' own disagreements, escrow paid out beyond the
        budget, and (given the chain's `escrow` for the job) escrow the market does not hold."""
        held, out = self.totals()["held"], list(self.problems)
        if held < 0:
            out.append(f"job {self.job} paid out {-held} more than it escrowed")
        if escrow is not None and escrow != held:
            out.append(f"job {self.job}: the market holds {escrow} in escrow, the events leave {held}")
        return out

    def as_json(self, escrow: int | None = None) -> dict:
        """The job's lines and totals; `escrow`: what the market holds for it, to check against."""
        problems = self.check(escrow)
        return {
            "job": self.job,
            "client": self.client,
            "finished": self.finished,
            "lines": [x.as_json() for x in self.lines],
            "totals": self.totals() | ({} if escrow is None else {"escrow_on_chain": escrow}),
            "reconciled": not problems,
            "problems": problems,
        }


@dataclass(frozen=True)
class Holdings:
    """What the chain itself says, read at the ledger's last block, to check the ledger against."""

    block: int
    market: int  # the market's token balance
    owed: int  # the market's settlement.owed: escrow, credits and bonds it answers for
    assets: int  # the asset registry's token balance (the stakes)
    escrows: Mapping[int, int]  # job -> escrow the market holds for it
    credits: Mapping[str, int] = field(default_factory=dict)  # account -> market.credits, where read


@dataclass
class Ledger:
    """Every job's lines, the lines of no job (unclaimed authorizations returned), the credits
    and withdrawals by account, each asset's stake, and what failed to reconcile."""

    jobs: dict[int, JobLedger] = field(default_factory=dict)
    lines: list[Line] = field(default_factory=list)
    credited: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    withdrawn: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stakes: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def owed(self) -> dict[str, int]:
        """Credits not withdrawn, by account (those with any)."""
        out = {a: c - self.withdrawn.get(a, 0) for a, c in self.credited.items()}
        return {a: v for a, v in sorted(out.items()) if v}

    def totals(self) -> dict[str, int]:
        jobs = [j.totals() for j in self.jobs.values()]
        out = {key: sum(t[key] for t in jobs) for key in JOB_TOTALS}
        bonds = [x for j in self.jobs.values() for x in j.lines if x.kind == "bond"]
        out["fees"] = out["keeper_fees"] + out["protocol_fees"]
        out["bonds_posted"] = sum(x.amount for x in bonds if x.detail == "held")
        out["bonds_returned"] = sum(x.amount for x in bonds if x.detail == "returned")
        out["bonds_forfeited"] = sum(x.amount for x in bonds if x.detail == "forfeited")
        out["unclaimed_returned"] = sum(x.amount for x in self.lines)
        out["credited"] = sum(self.credited.values())
        out["withdrawn"] = sum(self.withdrawn.values())
        out["owed"] = out["credited"] - out["withdrawn"]
        out["stakes"] = sum(self.stakes.values())
        return out

    def balances(self, chain: Holdings) -> dict[str, int]:
        """The market's balance split into what it owes (escrow, credits, bonds) and the surplus
        it owes no one; beside it, what the market says it owes and the stakes' two sides."""
        t = self.totals()
        return {
            "market": chain.market,
            "owed": t["owed"],
            "escrow": t["held"],
            "bonds": t["bonds_held"],
            "surplus": chain.market - t["held"] - t["owed"] - t["bonds_held"],
            "settlement_owed": chain.owed,
            "stakes": t["stakes"],
            "assets": chain.assets,
        }

    def check(self, chain: Holdings) -> list[str]:
        """Where the ledger and the chain's own accounts disagree (none: it reconciles)."""
        t, out = self.totals(), []
        owed = t["held"] + t["owed"] + t["bonds_held"]
        if owed != chain.owed:
            out.append(
                f"the market owes {chain.owed} (settlement.owed) but the events give {owed}: escrow {t['held']}"
                f" + credits {t['owed']} + bonds {t['bonds_held']}"
            )
        if chain.market < chain.owed:
            out.append(f"the market holds {chain.market}, less than the {chain.owed} it owes")
        if chain.assets < t["stakes"]:
            out.append(f"the asset registry holds {chain.assets}, less than the {t['stakes']} staked")
        mine = {a.lower(): v for a, v in self.owed().items()}
        for account, credit in sorted(chain.credits.items()):
            if mine.get(account.lower(), 0) != credit:
                out.append(f"{account} may withdraw {credit}, the events leave {mine.get(account.lower(), 0)}")
        return out

    def as_json(self, chain: Holdings) -> dict:
        """GET /audit's answer: each job checked against its escrow, the network against `chain`."""
        jobs = [j.as_json(chain.escrows.get(i)) for i, j in sorted(self.jobs.items())]
        problems = self.problems + self.check(chain)
        return {
            "block": chain.block,
            "jobs": jobs,
            "lines": [x.as_json() for x in self.lines],
            "totals": self.totals(),
            "balances": self.balances(chain),
            "credits": self.owed(),
            "reconciled": not problems and all(j["reconciled"] for j in jobs),
            "problems": problems,
        }


@dataclass
class Lease:
    """One assignment of a replica to an asset and what became of it."""

    job: int
    shard: int
    replica: int
    asset: int
    lease: int
    price: int
    keeper: str
    block: int
    transaction: str
    state: str = "assigned"  # declined, reclaimed, submitted, rejected, finalized, cancelled
    gpu_seconds: int | None = None  # as the market bills them (the claim capped at the job's maximum)
    output_root: str | None = None
    exit_code: int | None = None
    paid: int = 0
    slashed: int = 0

    def as_json(self) -> dict:
        return dict(self.__dict__)


class _Replicas:
    """Every replica's state and latest lease, as JobMarket moves them, from its events."""

    def __init__(self) -> None:
        self.jobs: dict[int, tuple[int, int]] = {}  # job -> (replication, max GPU-seconds)
        self.states: dict[tuple[int, int, int], str] = {}  # absent: open
        self.leases: dict[tuple[int, int, int], Lease] = {}
        self.since: dict[tuple[int, int, int], tuple[int, int]] = {}  # assigned: when
        # replica -> its earlier leases' adopted checkpoints that will be paid, in order:
        # (asset, price, GPU-seconds), as JobMarket.reclaim records them
        self.contributions: dict[tuple[int, int, int], list[tuple[int, int, int]]] = {}

    def lease(self, ev: Event) -> Lease:
        return self.leases[(int(ev.job), int(ev.shard), int(ev.replica))]

    def lease_of(self, ev: Event) -> Lease | None:
        return self.leases.get((int(ev.job), int(ev.shard), int(ev.replica)))

    def add(self, ev: Event) -> None:
        if ev.name == "JobPosted":
            self.jobs[int(ev.job)] = (int(ev.replication), int(ev.max_gpu_seconds))
            return
        if ev.name == "ShardCancelled":
            self.cancel(int(ev.job), int(ev.shard), int(ev.replicas))
            return
        if not hasattr(ev, "replica") or not hasattr(ev, "shard"):
            return
        key = (int(ev.job), int(ev.shard), int(ev.replica))
        lease = self.leases.get(key)
        if ev.name == "ShardAssigned":
            self.states[key], self.since[key] = "assigned", (ev.block, ev.index)
            lease = Lease(*key, int(ev.asset), int(ev.lease), int(ev.price), str(ev.keeper), ev.block, ev.tx)
            self.leases[key] = lease
        elif lease is None:
            return
        elif ev.name == "ShardDeclined":
            self.states[key], lease.state = "open", "declined"
        elif ev.name == "ResultSubmitted":
            self.states[key] = lease.state = "submitted"
            lease.output_root, lease.exit_code = _hex(ev.output_root), int(ev.exit_code)
            cap = self.jobs.get(key[0], (0, int(ev.gpu_seconds)))[1] - self.contributed(key)
            lease.gpu_seconds = min(int(ev.gpu_seconds), cap)  # the market bills the claim capped
        elif ev.name == "CheckpointAdopted":
            if int(ev.gpu_seconds):  # zero: beyond MAX_CONTRIBUTORS or the cap, never paid
                self.contributions.setdefault(key, []).append((lease.asset, lease.price, int(ev.gpu_seconds)))
        elif ev.name in ("ShardReclaimed", "ReplicaRejected"):
            self.states[key] = "open"
            lease.state, lease.slashed = ("reclaimed" if ev.name == "ShardReclaimed" else "rejected"), int(ev.slashed)
        elif ev.name == "ShardFinalized":
            self.states[key] = lease.state = "finalized"
            lease.paid = int(ev.payment)

    def contributed(self, key: tuple[int, int, int]) -> int:
        """GPU-seconds the replica's adopted checkpoints take from its cap."""
        return sum(seconds for _, _, seconds in self.contributions.get(key, []))

    def cancel(self, job: int, shard: int, count: int) -> None:
        """JobMarket._close_open cancels every open replica and the assigned ones still inside
        their decline window; the event only counts them. The window is the same for all, so
        those are the most recently assigned ones: the count says how many."""
        replication = self.jobs.get(job, (0, 0))[0]
        keys = [(job, shard, r) for r in range(replication)]
        open_ = [k for k in keys if self.states.get(k, "open") == "open"]
        assigned = sorted((k for k in keys if self.states.get(k) == "assigned"), key=self.since.__getitem__)
        late = assigned[len(assigned) - min(len(assigned), max(0, count - len(open_))) :]
        for key in open_ + late:
            self.states[key] = "cancelled"
            if key in late:
                self.leases[key].state = "cancelled"


class _Builder:
    """Walks the events in chain order, keeping what later events refer back to. Every
    Credited must be explained by the market event it comes before (finalize, refund, reclaim,
    unclaimed return) or by the dispute ruling it belongs to, in the contracts' order."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.treasury = ""  # from TreasurySet; the reader may start after the constructor's
        self.replicas = _Replicas()
        self.bonds: dict[tuple[int, int], tuple[str, int]] = {}  # the court's open challenges
        self.tx = ""
        self.credits: list[Event] = []  # Credited of this transaction not yet explained
        self.slashes: dict[int, list[int]] = defaultdict(list)  # asset -> StakeSlashed, this transaction
        self.rejected: list[Event] = []  # ReplicaRejected of the ruling in this transaction
        self.paid_contributions: dict[tuple[int, int, int], int] = {}  # replica -> ContributionPaid so far

    def add(self, ev: Event) -> None:
        if ev.tx != self.tx:
            self.flush()
            self.tx, self.slashes, self.rejected = ev.tx, defaultdict(list), []
        self.replicas.add(ev)
        handler = getattr(self, "on_" + ev.name, None)
        if handler is not None:
            handler(ev)

    def flush(self) -> None:
        """Credits no market event explained are problems: nothing may be credited silently."""
        for c in self.credits:
            self.ledger.problems.append(f"{c.account} was credited {c.amount} in {c.tx}, which no event explains")
        self.credits = []

    def take(self, problems: list[str], amount: int, account: str | None, what: str) -> str:
        """The next Credited of this transaction, which must be `amount` to `account` (anyone
        when None); returns who was credited. settlement._credit skips zero amounts."""
        if amount == 0:
            return account or ""
        got = self.credits.pop(0) if self.credits else None
        if got is None or int(got.amount) != amount or (account and not _same(got.account, account)):
            found = "nothing" if got is None else f"{got.amount} to {got.account}"
            to = f" to {account}" if account else ""
            problems.append(f"{what} of {amount}{to} in {self.tx} was credited {found}")
        return str(got.account) if got is not None else (account or "")

    def job(self, ev: Event) -> JobLedger | None:
        job = self.ledger.jobs.get(int(ev.job))
        if job is None:
            self.ledger.problems.append(f"{ev.name} in {ev.tx} is of job {ev.job}, whose JobPosted was not read")
        return job

    def line(self, job: JobLedger, kind: str, account: str, amount: int, ev: Event, **more) -> None:
        job.lines.append(Line(kind, str(account), int(amount), ev.block, ev.tx, **more))

    # -- the market's parameters and the job's terms

    def on_TreasurySet(self, ev: Event) -> None:
        self.treasury = str(ev.treasury)

    def on_JobPosted(self, ev: Event) -> None:
        job = JobLedger(int(ev.job), str(ev.client), int(ev.keeper_fee_bps), int(ev.protocol_fee_bps))
        self.ledger.jobs[job.job] = job
        self.line(job, "escrowed", ev.client, ev.budget, ev, detail="post")

    def on_JobFundedByAuthorization(self, ev: Event) -> None:
        job = self.job(ev)
        if job is not None and job.lines and job.lines[0].kind == "escrowed":
            job.lines[0] = replace(job.lines[0], detail="authorization")

    def on_UnclaimedReturned(self, ev: Event) -> None:
        self.take(self.ledger.problems, int(ev.amount), str(ev.payer), "the unclaimed authorization returned")
        line = Line("refund", str(ev.payer), int(ev.amount), ev.block, ev.tx, detail="unclaimed authorization")
        self.ledger.lines.append(line)

    # -- settlement

    def on_ShardFinalized(self, ev: Event) -> None:
        job = self.job(ev)
        if job is None:
            return
        where = f"job {ev.job} shard {ev.shard} replica {ev.replica}"
        lease = self.replicas.lease_of(ev)
        price = gpu_seconds = None
        if lease is None or lease.gpu_seconds is None:
            job.problems.append(f"{where} was finalized in {ev.tx} without an assignment and result before it")
        else:
            price, gpu_seconds = lease.price, lease.gpu_seconds
            # JobMarket.finalize: price × GPU-seconds, each fee that × bps // 10000, rounded down.
            expected = settle_amounts(price, gpu_seconds, job.keeper_fee_bps, job.protocol_fee_bps)
            logged = (int(ev.payment), int(ev.keeper_fee), int(ev.protocol_fee))
            if logged != expected:
                job.problems.append(
                    f"{where} settled (payment, keeper fee, protocol fee) {logged} in {ev.tx}, but price {price}"
                    f" × {gpu_seconds} GPU-seconds at {job.keeper_fee_bps}/{job.protocol_fee_bps} bps gives {expected}"
                )
            if int(ev.asset) != lease.asset:
                job.problems.append(f"{where} was finalized for asset {ev.asset} but assigned to {lease.asset}")
        self.pay(job, ev, where, gpu_seconds, price, contribution=False)

    def on_ContributionPaid(self, ev: Event) -> None:
        """JobMarket.finalize pays each adopted checkpoint of a replica, in the order reclaim
        adopted them, before the replica's own result: credits as for ShardFinalized."""
        job = self.job(ev)
        if job is None:
            return
        where = f"job {ev.job} shard {ev.shard} replica {ev.replica}"
        key = (int(ev.job), int(ev.shard), int(ev.replica))
        paid = self.paid_contributions[key] = self.paid_contributions.get(key, 0) + 1
        adopted = self.replicas.contributions.get(key, [])
        price = None
        if paid > len(adopted):
            job.problems.append(f"{where} paid a contribution in {ev.tx} that no CheckpointAdopted recorded")
        else:
            asset, price, gpu_seconds = adopted[paid - 1]
            expected = settle_amounts(price, gpu_seconds, job.keeper_fee_bps, job.protocol_fee_bps)
            logged = (int(ev.payment), int(ev.keeper_fee), int(ev.protocol_fee))
            if logged != expected or (int(ev.asset), int(ev.gpu_seconds)) != (asset, gpu_seconds):
                job.problems.append(
                    f"{where} paid asset {ev.asset}'s contribution {logged} for {ev.gpu_seconds} GPU-seconds in"
                    f" {ev.tx}, but asset {asset}'s adopted checkpoint of {gpu_seconds} at price {price} gives {expected}"
                )
        self.pay(job, ev, where, int(ev.gpu_seconds), price, contribution=True)

    def pay(
        self, job: JobLedger, ev: Event, where: str, gpu_seconds: int | None, price: int | None, contribution: bool
    ) -> None:
        """What JobMarket._pay did for one lease's work, from the ShardFinalized or
        ContributionPaid it logged: it credits the provider, the keeper and the treasury, which
        that event names (no Credited logs them). Counts those credits and writes the provider's
        paid line, at the GPU-seconds and price it was billed (None where unknown), and the fee
        lines that are not zero."""
        treasury = self.treasury
        if ev.protocol_fee and not treasury:
            job.problems.append(f"{where}'s protocol fee in {ev.tx} went to a treasury no TreasurySet named")
        for account, amount in ((ev.provider, ev.payment), (ev.keeper, ev.keeper_fee), (treasury, ev.protocol_fee)):
            self.credit(str(account), int(amount))
        at = dict(asset=int(ev.asset), shard=int(ev.shard), replica=int(ev.replica))
        detail = "checkpoint" if contribution else ""
        self.line(job, "paid", ev.provider, ev.payment, ev, gpu_seconds=gpu_seconds, price=price, detail=detail, **at)
        if ev.keeper_fee:
            self.line(job, "keeper_fee", ev.keeper, ev.keeper_fee, ev, **at)
        if ev.protocol_fee:
            self.line(job, "protocol_fee", treasury, ev.protocol_fee, ev, **at)

    def on_JobFinished(self, ev: Event) -> None:
        job = self.job(ev)
        if job is None:
            return
        left = job.totals()["held"]
        if int(ev.refund) != left:
            job.problems.append(f"job {ev.job} refunded {ev.refund} in {ev.tx}, but {left} of its escrow was left")
        self.credit(str(ev.client), int(ev.refund))
        self.line(job, "refund", ev.client, ev.refund, ev)
        job.finished = True

    # -- slashes and disputes

    def on_StakeSlashed(self, ev: Event) -> None:
        self.slashes[int(ev.asset)].append(int(ev.amount))
        self.ledger.stakes[int(ev.asset)] = int(ev.stake)

    def check_slash(self, job: JobLedger, ev: Event) -> None:
        """A slash the market logs must be what the asset registry took, in the same transaction."""
        taken = self.slashes[int(ev.asset)].pop(0) if self.slashes[int(ev.asset)] else 0
        if int(ev.slashed) != taken:
            job.problems.append(
                f"{ev.name} in {ev.tx} slashed {ev.slashed} of asset {ev.asset}, the registry took {taken}"
            )

    def on_ShardReclaimed(self, ev: Event) -> None:
        job = self.job(ev)
        if job is None:
            return
        self.check_slash(job, ev)
        # JobMarket.reclaim credits all of it to the treasury.
        where = f"job {ev.job} shard {ev.shard} replica {ev.replica}"
        treasury = self.take(job.problems, int(ev.slashed), self.treasury or None, f"{where}'s reclaim slash")
        if ev.slashed:
            at = dict(asset=int(ev.asset), shard=int(ev.shard), replica=int(ev.replica))
            self.line(job, "slash", treasury, ev.slashed, ev, detail="reclaim", **at)

    def on_ReplicaRejected(self, ev: Event) -> None:
        job = self.job(ev)
        if job is not None:
            self.check_slash(job, ev)
        self.rejected.append(ev)

    def on_DisputeOpened(self, ev: Event) -> None:
        job = self.job(ev)
        if job is None or _same(ev.challenger, ZERO):  # replicas that disagreed: no bond
            return
        self.bonds[(int(ev.job), int(ev.shard))] = (str(ev.challenger), int(ev.bond))
        if ev.bond:
            self.line(job, "bond", ev.challenger, ev.bond, ev, shard=int(ev.shard), detail="held")

    def on_DisputeResolved(self, ev: Event) -> None:
        self.flush()  # the court's credits for this ruling follow, then its DisputeSettled

    def credit(self, account: str, amount: int) -> None:
        """A credit the market made without a Credited: its own event names it (JobMarket's
        settlement._credit_unlogged)."""
        if amount:
            self.ledger.credited[account] += amount

    def on_Credited(self, ev: Event) -> None:
        self.credit(str(ev.account), int(ev.amount))
        self.credits.append(ev)

    def on_Withdrawn(self, ev: Event) -> None:
        self.ledger.withdrawn[str(ev.account)] += int(ev.amount)

    def on_DisputeSettled(self, ev: Event) -> None:
        """DisputeCourt._settle credits, in this order and each only when not zero: the reward
        (to the proving challenger, else the first upheld provider), the rest of the slash to
        the treasury, then the bond: back to the challenger, or split among the accused."""
        job = self.job(ev)
        key = (int(ev.job), int(ev.shard))
        rejected = [r for r in self.rejected if (int(r.job), int(r.shard)) == key]
        self.rejected = [r for r in self.rejected if (int(r.job), int(r.shard)) != key]
        challenger, bond = self.bonds.pop(key, (str(ev.challenger), 0))
        if job is None:
            return
        where = f"the dispute of job {ev.job} shard {ev.shard}"
        slashed, reward = int(ev.slashed), int(ev.reward)
        if sum(int(r.slashed) for r in rejected) != slashed:
            job.problems.append(
                f"{where} slashed {slashed} in {ev.tx}, its rejected replicas {[int(r.slashed) for r in rejected]}"
            )
        rewarded = self.take(job.problems, reward, None, f"{where}'s reward")
        treasury = self.take(job.problems, slashed - reward, self.treasury or None, f"{where}'s slash")
        # Which asset's tokens make up the reward is not defined on chain (tokens are fungible):
        # it is drawn from the rejected replicas in replica order, the rest of each to the treasury.
        left = reward
        for r in rejected:
            part = min(int(r.slashed), left)
            left -= part
            at = dict(asset=int(r.asset), shard=int(r.shard), replica=int(r.replica))
            if part:
                self.line(job, "slash", rewarded, part, r, detail="reward", **at)
            if int(r.slashed) - part:
                self.line(job, "slash", treasury, int(r.slashed) - part, r, detail="dispute", **at)
        if bond and ev.bond_returned:
            self.take(job.problems, bond, challenger, f"{where}'s bond returned")
            self.line(job, "bond", challenger, bond, ev, shard=int(ev.shard), detail="returned")
        elif bond:
            shares, self.credits = self.credits, []
            if sum(int(c.amount) for c in shares) != bond:
                job.problems.append(
                    f"{where} forfeited a bond of {bond} in {ev.tx}, credited {[int(c.amount) for c in shares]}"
                )
            for c in shares:
                self.line(job, "bond", c.account, c.amount, ev, shard=int(ev.shard), detail="forfeited")

    # -- stakes (the asset registry's)

    def on_StakeAdded(self, ev: Event) -> None:
        self.ledger.stakes[int(ev.asset)] = int(ev.stake)

    def on_StakeWithdrawn(self, ev: Event) -> None:
        self.ledger.stakes[int(ev.asset)] = self.ledger.stakes.get(int(ev.asset), 0) - int(ev.amount)


def ledger(events: Iterable[Event], treasury: str = "") -> Ledger:
    """The ledger of `events` (all of the market's, the court's and the asset registry's since
    the deployment, in chain order). Problems name what does not reconcile. `treasury`: the
    treasury when the events start, for a reader that starts after the constructor's TreasurySet
    (a protocol fee's credit has no Credited of its own to name it)."""
    builder = _Builder()
    builder.treasury = treasury
    for ev in sorted(events, key=lambda e: (e.block, e.index)):
        builder.add(ev)
    builder.flush()
    return builder.ledger


# ------------------------------------------------------------------ providers


@dataclass
class AssetHistory:
    asset: int
    owned: bool  # the owner holds it now
    stake: int = 0
    unbonding: int = 0
    leases: list[Lease] = field(default_factory=list)
    earnings: list[Line] = field(default_factory=list)
    slashes: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "asset": self.asset,
            "owned": self.owned,
            "stake": self.stake,
            "unbonding": self.unbonding,
            "leases": [x.as_json() for x in self.leases],
            "earnings": [x.as_json() for x in self.earnings],
            "slashes": list(self.slashes),
            "totals": {
                "leases": len(self.leases),
                "earned": sum(x.amount for x in self.earnings),
                "slashed": sum(x["amount"] for x in self.slashes),
            },
        }


@dataclass
class ProviderHistory:
    owner: str
    assets: list[AssetHistory]

    def as_json(self) -> dict:
        assets = [a.as_json() for a in self.assets]
        return {
            "owner": self.owner,
            "assets": assets,
            "totals": {
                "assets": sum(a.owned for a in self.assets),
                "leases": sum(a["totals"]["leases"] for a in assets),
                "earned": sum(a["totals"]["earned"] for a in assets),
                "slashed": sum(a["totals"]["slashed"] for a in assets),
                "stake": sum(a.stake for a in self.assets if a.owned),
            },
        }


def provider_history(owner: str, events: Iterable[Event]) -> ProviderHistory:
    """The assets `owner` holds or held (ComputeAsset's Transfer events) and, for the time it
    held each, its leases, earnings (the ledger's `paid` lines) and slashes; the stake is the
    asset's now (it moves with the asset)."""
    events = sorted(events, key=lambda e: (e.block, e.index))
    spans: dict[int, list[list]] = {}  # asset -> [[from, until or None]] positions held by `owner`
    for ev in events:
        if ev.name != "Transfer":
            continue
        at, asset = (ev.block, ev.index), int(ev.token_id)
        if _same(ev.sender, owner) and spans.get(asset) and spans[asset][-1][1] is None:
            spans[asset][-1][1] = at
        if _same(ev.receiver, owner):
            spans.setdefault(asset, []).append([at, None])

    def held(asset: int, ev: Event) -> bool:
        at = (ev.block, ev.index)
        return any(start <= at and (end is None or at < end) for start, end in spans.get(asset, []))

    history = {a: AssetHistory(a, owned=s[-1][1] is None) for a, s in sorted(spans.items())}
    replicas = _Replicas()
    for ev in events:
        replicas.add(ev)
        mine = history.get(int(getattr(ev, "asset", 0) or 0))
        if mine is None:
            continue
        if ev.name in ("StakeAdded", "StakeSlashed"):
            mine.stake = int(ev.stake)
        elif ev.name == "StakeWithdrawn":
            mine.stake, mine.unbonding = mine.stake - int(ev.amount), 0
        elif ev.name == "UnstakeRequested":
            mine.unbonding = int(ev.amount)
        elif ev.name == "ShardAssigned" and held(mine.asset, ev):
            mine.leases.append(replicas.lease(ev))
        elif ev.name in ("ShardReclaimed", "ReplicaRejected") and ev.slashed and held(mine.asset, ev):
            cause = "reclaim" if ev.name == "ShardReclaimed" else "dispute"
            where = {"job": int(ev.job), "shard": int(ev.shard), "replica": int(ev.replica)}
            mine.slashes.append(
                where | {"amount": int(ev.slashed), "cause": cause, "block": ev.block, "transaction": ev.tx}
            )
        elif ev.name == "ContributionPaid" and held(mine.asset, ev):
            mine.earnings.append(
                Line(
                    "paid",
                    str(ev.provider),
                    int(ev.payment),
                    ev.block,
                    ev.tx,
                    asset=mine.asset,
                    shard=int(ev.shard),
                    replica=int(ev.replica),
                    gpu_seconds=int(ev.gpu_seconds),
                    detail="checkpoint",
                )
            )
        elif ev.name == "ShardFinalized" and held(mine.asset, ev):
            lease = replicas.lease_of(ev)
            mine.earnings.append(
                Line(
                    "paid",
                    str(ev.provider),
                    int(ev.payment),
                    ev.block,
                    ev.tx,
                    asset=mine.asset,
                    shard=int(ev.shard),
                    replica=int(ev.replica),
                    gpu_seconds=lease.gpu_seconds if lease else None,
                    price=lease.price if lease else None,
                )
            )
    return ProviderHistory(str(owner), list(history.values()))
