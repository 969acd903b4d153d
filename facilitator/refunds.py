"""Refunds to x402 payers. A finished job's unused budget is credited to its client, who must
withdraw it; a payer who paid over HTTP holds no gas, so the facilitator pays those credits
out (JobMarket.withdraw_many pays each account its own credit, to itself)."""

from __future__ import annotations

import logging
from typing import Any

from computenet.web3calls import Sender, block_ranges, contract

log = logging.getLogger("facilitator.refunds")

BATCH = 64  # JobMarket.MAX_BATCH


class Refunder:
    """Follows the market's logs from `start_block` and pays out the credits of payers whose
    authorization-funded job has finished. Idempotent: an account with nothing owed is
    skipped by the contract, so a restart that scans again pays nothing twice."""

    def __init__(self, web3: Any, sender: Sender, market: str, start_block: int = 0) -> None:
        self.web3 = web3
        self.sender = sender
        self.market = contract(web3, "JobMarket", market)
        self.next_block = start_block
        self.payers: dict[int, str] = {}  # job -> payer, for jobs funded by authorization

    def run_once(self) -> list[str]:
        """Scans new blocks; returns the payers paid."""
        latest = self.web3.eth.block_number
        owed: set[str] = set()
        for start, stop in block_ranges(self.next_block, latest):
            for entry in self.market.events.JobFundedByAuthorization().get_logs(from_block=start, to_block=stop):
                self.payers[int(entry["args"]["job"])] = str(entry["args"]["payer"])
            for entry in self.market.events.JobFinished().get_logs(from_block=start, to_block=stop):
                payer = self.payers.pop(int(entry["args"]["job"]), None)
                if payer and int(entry["args"]["refund"]) > 0:
                    owed.add(payer)
        owed = {p for p in owed if self.market.functions.credits(p).call() > 0}
        paid = sorted(owed)
        for first in range(0, len(paid), BATCH):
            batch = paid[first : first + BATCH]
            receipt = self.sender.send(self.market.functions.withdraw_many(batch))
            log.info(
                "refunds paid",
                extra={"fields": {"payers": batch, "tx": "0x" + bytes(receipt["transactionHash"]).hex()}},
            )
        self.next_block = latest + 1  # only now: a failed payout is found again by the next scan
        return paid
