"""Refunds to x402 payers. A finished job's unused budget is credited to its client, who must
withdraw it; a payer who paid over HTTP holds no gas, so the facilitator pays those credits
out (JobMarket.withdraw_many pays each account its own credit, to itself)."""

from __future__ import annotations

import logging

from computenet.events import JobFinished, JobFundedByAuthorization
from computenet.follow import CursorStore, Follower, MemoryCursor
from computenet.market import Market
from computenet.web3calls import Sender

log = logging.getLogger("facilitator.refunds")

BATCH = 64  # JobMarket.MAX_BATCH


class Refunder:
    """Follows the logs of the market and its AuthorizationFunder (computenet.follow) and pays
    out the credits of payers whose authorization-funded job has finished. The payers of jobs not finished yet are kept with
    the cursor, so a restart forgets none. Idempotent: an account with nothing owed is
    skipped by the contract, so a range read again pays nothing twice."""

    def __init__(
        self, market: Market, sender: Sender, cursor: CursorStore | None = None, start_block: int | None = None
    ) -> None:
        self.market = market
        self.sender = sender
        self.cursor = cursor or MemoryCursor()
        self.follower = Follower(
            market,
            self.cursor,
            roles=("market", "funder"),  # JobFinished; JobFundedByAuthorization
            names=("JobFundedByAuthorization", "JobFinished"),
            start_block=start_block,
        )

    @property
    def payers(self) -> dict[str, str]:
        """job id (as text) -> its payer, for authorization-funded jobs not finished yet."""
        return self.cursor.data.setdefault("payers", {})

    def run_once(self) -> list[str]:
        """Reads every new block range and pays what finished jobs owe; returns the payers paid."""
        paid: list[str] = []
        while (batch := self.follower.poll()) is not None:
            payers = dict(self.payers)
            owed: set[str] = set()
            for event in batch.events:
                if isinstance(event, JobFundedByAuthorization):
                    payers[str(event.job)] = str(event.payer)
                elif isinstance(event, JobFinished):
                    payer = payers.pop(str(event.job), None)
                    if payer and int(event.refund) > 0:
                        owed.add(payer)
            paid += self._pay(sorted(p for p in owed if self.market.credits(p) > 0))
            # Only now: a failed payout is found again when the range is read again.
            self.follower.commit(batch, {"payers": payers})
        return paid

    def _pay(self, payers: list[str]) -> list[str]:
        withdraw_many = self.market.calls.market.functions.withdraw_many
        for first in range(0, len(payers), BATCH):
            batch = payers[first : first + BATCH]
            receipt = self.sender.send(withdraw_many(batch))
            log.info(
                "refunds paid",
                extra={"fields": {"payers": batch, "tx": "0x" + bytes(receipt["transactionHash"]).hex()}},
            )
        return payers
