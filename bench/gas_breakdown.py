"""Where a transaction's gas goes, from the node's opcode trace (debug_traceTransaction).

The gas test (tests/gas/test_gas_snapshot.py) traces the measured lifecycle's transactions and
the batched 64-shard job's when GAS_BREAKDOWN names a file (`make bench` does), and writes each
step's breakdown there; bench/report.py shows it beside the goals it misses. Categories:

- intrinsic: the 21,000 every transaction pays, and its calldata (16 gas a non-zero byte, 4 a zero);
- new slots: SSTOREs that write a slot that was zero (20,000, and 2,100 more when cold);
- storage writes: every other SSTORE; storage reads: SLOADs;
- events: LOG0-LOG4;
- signatures: calls to the ecrecover precompile (3,000 each, and the call);
- calls: what calling another contract costs the caller (account access, memory), not the work
  done inside, which is counted in the callee's own opcodes;
- execution: every other opcode (arithmetic, memory, jumps, hashing);
- refund: gas given back for slots cleared (negative).

The categories add up to the receipt's gasUsed exactly: the refund is what is left over.
"""

from __future__ import annotations

from typing import Any

CATEGORIES = ("intrinsic", "new slots", "storage writes", "storage reads", "events", "signatures", "calls", "execution")
_CALLS = ("CALL", "STATICCALL", "DELEGATECALL", "CALLCODE")
_ECRECOVER = 1


def calldata_gas(data: bytes) -> int:
    """The transaction's intrinsic gas: 21,000 and its calldata."""
    return 21_000 + sum(4 if b == 0 else 16 for b in data)


def breakdown(steps: list[dict[str, Any]], data: bytes, gas_used: int) -> dict[str, int]:
    """{category: gas} for one transaction: `steps` its trace's structLogs (with stacks), `data`
    its input, `gas_used` its receipt's figure."""
    out = dict.fromkeys(CATEGORIES, 0)
    out["intrinsic"] = calldata_gas(data)
    for i, step in enumerate(steps):
        op, cost = step["op"], int(step["gasCost"])
        nxt = steps[i + 1] if i + 1 < len(steps) else None
        if op in _CALLS and nxt is not None and nxt["depth"] > step["depth"]:
            # Entered another contract: the caller's own cost is the gas it had before the call
            # less what it has after the callee returned, less what the callee used.
            end = i + 1
            while end < len(steps) and steps[end]["depth"] > step["depth"]:
                end += 1
            last = steps[end - 1]
            inside = int(nxt["gas"]) - (int(last["gas"]) - int(last["gasCost"]))
            after = int(steps[end]["gas"]) if end < len(steps) else int(last["gas"]) - int(last["gasCost"])
            out["calls"] += int(step["gas"]) - after - inside
        elif op in _CALLS:  # a precompile runs without a frame of its own
            address = int(step["stack"][-2], 16)
            out["signatures" if address == _ECRECOVER else "calls"] += (
                int(step["gas"]) - int(nxt["gas"]) if nxt else cost
            )
        elif op == "SSTORE":
            out["new slots" if cost >= 20_000 else "storage writes"] += cost
        elif op == "SLOAD":
            out["storage reads"] += cost
        elif op.startswith("LOG"):
            out["events"] += cost
        else:
            out["execution"] += cost
    out["refund"] = gas_used - sum(out[c] for c in CATEGORIES)
    return out


def trace(web3: Any, tx_hash: Any, gas_used: int) -> tuple[dict[str, int], dict[str, int]]:
    """Traces the mined transaction `tx_hash` on `web3`'s node once: its gas by category, and its
    storage gas by contract address (`storage_by_contract`)."""
    tx = web3.eth.get_transaction(tx_hash)
    steps = web3.provider.make_request("debug_traceTransaction", [tx_hash, {"enableMemory": False}])["result"][
        "structLogs"
    ]
    return breakdown(steps, bytes(tx["input"]), gas_used), storage_by_contract(steps, tx["to"])


def per_item(total: dict[str, int], items: int) -> dict[str, int]:
    """A batch's breakdown per item (rounded down)."""
    return {name: gas // items for name, gas in total.items()}


def storage_by_contract(steps: list[dict[str, Any]], to: str) -> dict[str, int]:
    """SLOAD and SSTORE gas of one transaction by whose storage it is: `steps` its trace's
    structLogs (with stacks), `to` the address it was sent to. A DELEGATECALL runs on its
    caller's storage; a CALL or STATICCALL on the callee's."""
    frames = [to.lower()]
    out: dict[str, int] = {}
    for i, step in enumerate(steps):
        if i and step["depth"] < steps[i - 1]["depth"]:
            del frames[step["depth"] :]  # returned to the caller
        op = step["op"]
        if op in ("SLOAD", "SSTORE"):
            out[frames[-1]] = out.get(frames[-1], 0) + int(step["gasCost"])
        elif op in _CALLS and i + 1 < len(steps) and steps[i + 1]["depth"] > step["depth"]:
            callee = f"0x{int(step['stack'][-2], 16):040x}"
            frames.append(frames[-1] if op in ("DELEGATECALL", "CALLCODE") else callee)
    return out
