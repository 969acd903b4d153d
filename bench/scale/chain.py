"""The simulation's seam to the chain: every market transaction goes through `Chain`, and
every receipt comes back through `Inclusions`.

`Chain` has one method per market call the simulation makes, each taking a list of items
(what one round of a role wants done) and returning, per item, the transaction that carries
it. Transactions are sent as the real roles send theirs: `computenet.connection.broadcast`
(the gas estimate, the node's pending nonce, ape's signing), from the keeper's key for
assign and finalize, from an agent's key for results, from the client's for post_job.
With `batched` (the default, as the keepers and agents send), several items go out as one
transaction: assignments and finalizations through the batch relay (assign_many,
finalize_many), and results grouped by agent (a `JobMarket.submit_results` batch is one
agent's): each agent's two or more in one `submit_results` under one signature of its key
over their receipts, as `agent.node.Agent.submit_all` sends a node's, and the lone results
of the agents one process runs in one `submit_many` through the relay, as an operator of many
nodes relays them. One item, or `batched=False`, is one transaction per item (the market's
own entry points).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from computenet.connection import broadcast
from computenet.domain import Requirements
from computenet.receipts import MAX_BATCH_RESULTS, ExecutionReceipt, sign_receipts


@dataclass(frozen=True)
class Sent:
    """A broadcast transaction: the call, the items it carries, when it left (wall time)."""

    tx: str
    call: str
    items: tuple
    at: float


@dataclass(frozen=True)
class Refused:
    """An item whose gas estimate reverted (nothing was sent): another role got there first."""

    call: str
    item: tuple
    reason: str


@dataclass(frozen=True)
class Result:
    """A signed result an agent submits: submit_result's arguments, the agent's account and
    the receipt it signed (what a batch of its results is signed over)."""

    job: int
    shard: int
    replica: int
    output_root: bytes
    gpu_seconds: int
    exit_code: int
    signature: bytes
    account: Any
    receipt: ExecutionReceipt

    @property
    def args(self) -> tuple:
        return (self.job, self.shard, self.replica, self.output_root, self.gpu_seconds, self.exit_code, self.signature)

    @property
    def result(self) -> tuple:
        """The result as `JobMarket.submit_results` takes it (its Result struct)."""
        return (self.job, self.shard, self.replica, self.output_root, self.gpu_seconds, self.exit_code)


RELAY_BATCH = 256  # BatchRelay.MAX_ITEMS
# Results per submit_many: one agent process relays the lone results of all its agents, so a
# block of many assignments would otherwise make a 256-result batch of about 14M gas, over
# what a node estimates for one transaction.
SUBMIT_BATCH = 64


class Chain:
    """The market calls of the simulation (see the module docstring)."""

    def __init__(self, market: Any, batched: bool = True) -> None:
        self.market = market
        self.batched = batched

    def post(self, client: Any, jobs: Iterable[tuple[bytes, Requirements]]) -> list[Sent | Refused]:
        """post_job per job (the budget was approved once, at set-up)."""
        return [self._send("post_job", (manifest, req.as_tuple()), client) for manifest, req in jobs]

    def assign(self, keeper: Any, items: Iterable[tuple[int, int, int]]) -> list[Sent | Refused]:
        """assign(job, shard, asset) per item, or one assign_many."""
        items = list(items)
        if self.batched and len(items) > 1:
            return self._batch("assign", "assign_many", items, items, keeper, estimate_at="pending")
        return [self._send("assign", item, keeper) for item in items]

    def submit(self, results: Iterable[Result]) -> list[Sent | Refused]:
        """submit_result per result, from its own agent key, estimated against the pending
        block as the agent does (a claim is bounded by the time since assignment). Batched:
        each agent's two or more results in `submit_results` (`_results`), and the lone results
        of several agents in one `submit_many` through the relay (at most SUBMIT_BATCH a
        transaction), as an operator of many nodes relays them. Entries follow `results`' order."""
        results = list(results)
        if not (self.batched and len(results) > 1):
            return [self._send("submit_result", r.args, r.account, estimate_at="pending") for r in results]
        by_agent: dict[str, list[int]] = {}
        for n, r in enumerate(results):
            by_agent.setdefault(str(r.account.address).lower(), []).append(n)
        out: list[Sent | Refused | None] = [None] * len(results)
        lone = [indices[0] for indices in by_agent.values() if len(indices) == 1]
        for indices in by_agent.values():
            if len(indices) > 1:
                for n, s in zip(indices, self._results([results[n] for n in indices]), strict=True):
                    out[n] = s
        if len(lone) > 1:  # one result of each of several agents: relayed together, each its own receipt
            items = [results[n].args for n in lone]
            account = results[lone[0]].account
            sent = self._batch("submit_result", "submit_many", items, items, account, "pending", SUBMIT_BATCH)
        else:
            sent = [self._send("submit_result", results[n].args, results[n].account, "pending") for n in lone]
        for n, s in zip(lone, sent, strict=True):
            out[n] = s
        return [s for s in out if s is not None]

    def _results(self, results: list[Result]) -> list[Sent | Refused]:
        """One agent's results in `JobMarket.submit_results`, at most MAX_BATCH_RESULTS a
        transaction, each signed by the agent's key over the receipts it carries; each item's
        entry is its transaction (named "submit_result", the step each item stands for). The
        market records a batch all or none: one whose estimate fails is refused, its reason
        recorded for each of its items, and the next one sent."""
        from ape.exceptions import ContractLogicError, TransactionError

        out: list[Sent | Refused] = []
        market = str(self.market.market.address)
        account = results[0].account
        for first in range(0, len(results), MAX_BATCH_RESULTS):
            chunk = results[first : first + MAX_BATCH_RESULTS]
            named = tuple(_item("submit_result", r.args) for r in chunk)
            signature = sign_receipts(account.private_key, self.market.chain_id, market, [r.receipt for r in chunk])
            args = ([r.result for r in chunk], signature)
            try:
                tx = broadcast(self.market.market.submit_results, args, account, estimate_at="pending")
            except (ContractLogicError, TransactionError) as error:
                out += [Refused("submit_result", item, str(getattr(error, "message", error))) for item in named]
                continue
            sent = Sent(tx.to_0x_hex(), "submit_result", named, time.time())
            out += [sent] * len(chunk)
        return out

    def finalize(self, keeper: Any, items: Iterable[tuple[int, int]]) -> list[Sent | Refused]:
        """finalize(job, shard) per item, or one finalize_many."""
        items = list(items)
        if self.batched and len(items) > 1:
            # Estimated at the pending block, whose clock decided the shards are final.
            return self._batch("finalize", "finalize_many", items, items, keeper, estimate_at="pending")
        return [self._send("finalize", item, keeper) for item in items]

    def _batch(
        self,
        call: str,
        many: str,
        args: list,
        items: list,
        account: Any,
        estimate_at: str | None = None,
        size: int = RELAY_BATCH,
    ) -> list[Sent | Refused]:
        """`many` through the relay in chunks of `size`; each item's entry is its chunk's
        transaction (named by `call`, the step each item stands for). A chunk whose estimate
        fails is refused, its reason recorded, and the next one sent."""
        from ape.exceptions import ContractLogicError, TransactionError

        out: list[Sent | Refused] = []
        market = str(self.market.market.address)
        for first in range(0, len(args), size):
            chunk = args[first : first + size]
            named = tuple(_item(call, a) for a in items[first : first + size])
            try:
                tx = broadcast(getattr(self.market.relay, many), (market, chunk), account, estimate_at=estimate_at)
            except (ContractLogicError, TransactionError) as error:
                out += [Refused(call, item, str(getattr(error, "message", error))) for item in named]
                continue
            sent = Sent(tx.to_0x_hex(), call, named, time.time())
            out += [sent] * len(chunk)
        return out

    def _send(self, call: str, args: tuple, account: Any, estimate_at: str | None = None) -> Sent | Refused:
        from ape.exceptions import ContractLogicError

        try:
            tx = broadcast(getattr(self.market.market, call), args, account, estimate_at=estimate_at)
        except ContractLogicError as error:
            return Refused(call, _item(call, args), str(error.message))
        return Sent(tx.to_0x_hex(), call, (_item(call, args),), time.time())


def _item(call: str, args: tuple) -> tuple:
    """The part of a call's arguments that names its item: (job, shard[, replica or asset])."""
    if call == "post_job":
        return ()
    return tuple(int(a) for a in args[:3]) if call in ("assign", "submit_result") else tuple(int(a) for a in args[:2])


class Inclusions:
    """Receipts of the transactions a process sent, read a block at a time
    (eth_getBlockReceipts) instead of one poll per transaction."""

    def __init__(self, web3: Any) -> None:
        self.web3 = web3
        self.next_block = int(web3.eth.block_number) + 1
        self.waiting: dict[str, Sent] = {}

    def add(self, sent: Iterable[Sent | Refused]) -> None:
        for s in sent:
            if isinstance(s, Sent):
                self.waiting[s.tx] = s

    def poll(self, head: int | None = None) -> list[tuple[Sent, bool, int]]:
        """(sent, succeeded, block) for each waiting transaction mined since the last poll."""
        head = int(self.web3.eth.block_number) if head is None else head
        done = []
        while self.next_block <= head:
            receipts = self.web3.provider.make_request("eth_getBlockReceipts", [hex(self.next_block)])["result"]
            for r in receipts or ():
                sent = self.waiting.pop(r["transactionHash"], None)
                if sent is not None:
                    done.append((sent, int(r["status"], 16) == 1, self.next_block))
            self.next_block += 1
        return done
