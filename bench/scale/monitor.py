"""What the chain did, block by block: when each block was first seen, its gas, its
transactions (method, status, gas) and the market's events. Raw JSON-RPC (two calls a
block), so watching costs the machine little next to the roles it watches."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector

EVENTS = ("JobPosted", "ShardAssigned", "ResultSubmitted", "ShardFinalized", "JobFinished")
WATCH_INTERVAL = 0.05


@dataclass
class Tx:
    hash: str
    sender: str
    method: str
    ok: bool
    gas: int


@dataclass
class Block:
    number: int
    seen: float  # wall time it was first seen
    timestamp: int  # chain time
    gas_used: int
    gas_limit: int
    txs: list[Tx] = field(default_factory=list)
    events: list[tuple[str, dict, str]] = field(default_factory=list)  # (name, arguments, tx hash)


class Monitor(threading.Thread):
    """Follows the chain from `start` in a thread; `blocks` grows as blocks come."""

    def __init__(
        self, rpc: Any, market_abi: list[dict], market: str, start: int, relay: tuple[list[dict], str] = ([], "")
    ) -> None:
        """`relay`: the batch relay's ABI and address, whose calls carry market steps too."""
        super().__init__(daemon=True, name="monitor")
        self.rpc, self.market, self.next = rpc, market.lower(), start
        self.blocks: dict[int, Block] = {}
        self.stopped = threading.Event()
        self.error = ""
        self.methods = {self.market: _selectors(market_abi), relay[1].lower(): _selectors(relay[0])}
        self.decoders = {}
        for e in market_abi:
            if e.get("type") == "event" and e["name"] in EVENTS:
                self.decoders["0x" + event_abi_to_log_topic(e).hex()] = e

    def run(self) -> None:
        try:
            while not self.stopped.wait(WATCH_INTERVAL):
                head = int(self.rpc("eth_blockNumber"), 16)
                seen = time.time()
                while self.next <= head:
                    self.blocks[self.next] = self._read(self.next, seen)
                    self.next += 1
        except Exception as error:  # the run checks `error` and stops
            self.error = f"{type(error).__name__}: {error}"

    def head(self) -> int:
        return self.next - 1

    def _read(self, number: int, seen: float) -> Block:
        raw = self.rpc("eth_getBlockByNumber", [hex(number), True])
        receipts = {r["transactionHash"]: r for r in self.rpc("eth_getBlockReceipts", [hex(number)])}
        block = Block(number, seen, int(raw["timestamp"], 16), int(raw["gasUsed"], 16), int(raw["gasLimit"], 16))
        for tx in raw["transactions"]:
            r = receipts[tx["hash"]]
            to = (tx.get("to") or "").lower()
            method = self.methods.get(to, {}).get(tx["input"][:10], "other")
            block.txs.append(
                Tx(tx["hash"], tx["from"].lower(), method, int(r["status"], 16) == 1, int(r["gasUsed"], 16))
            )
            for log in r["logs"]:
                abi = self.decoders.get(log["topics"][0]) if log["address"].lower() == self.market else None
                if abi is not None:
                    block.events.append((abi["name"], _decode(abi, log), tx["hash"]))
        return block


def _decode(abi: dict, log: dict) -> dict:
    """An event's arguments: indexed value types from the topics, the rest from the data."""
    indexed = [i for i in abi["inputs"] if i["indexed"]]
    plain = [i for i in abi["inputs"] if not i["indexed"]]
    out = {}
    for item, topic in zip(indexed, log["topics"][1:]):
        value = int(topic, 16)
        out[item["name"]] = "0x" + topic[-40:] if item["type"] == "address" else value
    values = abi_decode([i["type"] for i in plain], bytes.fromhex(log["data"][2:]))
    out.update({i["name"]: v for i, v in zip(plain, values)})
    return out


def _selectors(contract_abi: list[dict]) -> dict[str, str]:
    """A contract's function selectors (0x-hex) and names."""
    return {
        "0x" + function_abi_to_4byte_selector(f).hex(): f["name"] for f in contract_abi if f.get("type") == "function"
    }
