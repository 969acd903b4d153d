"""Contract calls over plain web3 for the HTTP services (facilitator, gateway), which serve
many requests from threads and keep no ape provider: the ABIs come from this project's
compiled contracts, transactions are signed with a local key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import cache
from typing import Any

from computenet.connection import GAS_MARGIN
from computenet.errors import ContractRevert, revert_error

RECEIPT_TIMEOUT = 120  # seconds a sent transaction may take to be mined
BLOCK_RANGE = 2_000  # most blocks per log query


def block_ranges(first: int, last: int, size: int = BLOCK_RANGE) -> Iterator[tuple[int, int]]:
    """(from_block, to_block) pairs covering `first`..`last`, each at most `size` blocks,
    the most a node answers in one log query."""
    for start in range(first, last + 1, size):
        yield start, min(last, start + size - 1)


@cache
def abi(name: str) -> list[dict]:
    """The ABI of this project's contract `name` (ape compiles it on first use)."""
    from ape import project

    return [item.model_dump(mode="json", by_alias=True) for item in getattr(project, name).contract_type.abi]


def contract(web3: Any, name: str, address: str) -> Any:
    from web3 import Web3

    return web3.eth.contract(address=Web3.to_checksum_address(address), abi=abi(name))


def reason_of(error: Exception) -> str:
    """A revert's reason string from web3's error ("execution reverted: job_market: ...")."""
    text = str(getattr(error, "message", None) or error)
    return text.split("execution reverted:", 1)[-1].strip().strip("'\"") or text


class Sender:
    """Sends transactions from one key, one at a time (nonces stay in order)."""

    def __init__(self, web3: Any, private_key: Any) -> None:
        from eth_account import Account

        self.web3 = web3
        self.account = Account.from_key(private_key)
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return self.account.address

    def send(self, call: Any) -> Any:
        """Estimates, signs and sends `call`, then waits for its receipt. A revert found by
        the estimate raises the SDK's typed error for its reason and nothing is sent; a
        transaction mined but reverted raises ContractRevert naming it."""
        from web3.exceptions import ContractLogicError

        with self._lock:
            try:
                # Against the pending block: its clock is the one the transaction is mined by.
                gas = int(call.estimate_gas({"from": self.address}, "pending") * GAS_MARGIN)
            except ContractLogicError as error:
                raise revert_error(reason_of(error), preflight=True) from None
            nonce = self.web3.eth.get_transaction_count(self.address, "pending")
            tx = call.build_transaction({"from": self.address, "nonce": nonce, "gas": gas})
            signed = self.account.sign_transaction(tx)
            tx_hash = self.web3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.web3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT, poll_latency=0.05)
        if receipt["status"] != 1:
            raise ContractRevert(f"transaction {tx_hash.hex()} reverted when mined")
        return receipt
