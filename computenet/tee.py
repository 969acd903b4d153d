"""The tee level's shared words: what TEE evidence binds, and its wire form.

A node's evidence carries node_report_data (this chain, the AttestationRegistry, the asset and
its agent key) so it vouches that this agent key lives in the TEE; a result's evidence carries
result_report_data (this chain, the market, job, shard, replica, output root and metered
GPU-seconds) so it vouches for that one result and the use it is paid for. The agent computes
both from what it holds itself (its key, its own result), never from what a node tells it. The contract computes the same 32 bytes (its node_report_data and
result_report_data views); the report data's other 32 bytes are zero. Pure: no chain, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak

REPORT_DATA_BYTES = 64  # what TDX, SGX and SEV-SNP reports carry
KINDS = ("tdx", "sgx", "sev-snp")


def node_report_data(chain_id: int, registry: str, asset: int, agent: str) -> bytes:
    """keccak256(abi.encode(chain id, registry, asset, agent)), padded to 64 bytes."""
    digest = keccak(encode(["uint256", "address", "uint256", "address"], [chain_id, registry, asset, agent]))
    return pad(digest)


def result_report_data(
    chain_id: int, market: str, job: int, shard: int, replica: int, output_root: bytes, gpu_seconds: int
) -> bytes:
    """keccak256(abi.encode(chain id, market, job, shard, replica, output root, gpu_seconds)),
    padded to 64 bytes."""
    digest = keccak(
        encode(
            ["uint256", "address", "uint256", "uint256", "uint256", "bytes32", "uint32"],
            [chain_id, market, job, shard, replica, output_root, gpu_seconds],
        )
    )
    return pad(digest)


def pad(digest: bytes) -> bytes:
    """The 64 bytes of report data a 32-byte binding makes (zeros after it)."""
    if len(digest) != 32:
        raise ValueError(f"a binding is 32 bytes, not {len(digest)}")
    return digest + bytes(REPORT_DATA_BYTES - len(digest))


@dataclass(frozen=True)
class Evidence:
    """One piece of TEE evidence as an agent sends it: the quote or report itself, and what
    its verification needs besides the vendor's pinned root (Intel: the PCS collateral as
    dcap-qvl's JSON, or "" for the attestor to fetch; AMD: the VCEK and its chain)."""

    kind: str  # one of KINDS
    quote: bytes
    collateral: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown TEE evidence kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if not self.quote:
            raise ValueError("TEE evidence without its quote or report")

    @property
    def hash(self) -> bytes:
        return keccak(self.quote)

    def to_json(self) -> dict:
        return {"kind": self.kind, "quote": "0x" + self.quote.hex(), "collateral": self.collateral}

    @classmethod
    def from_json(cls, body: dict | str) -> Evidence:
        """From to_json's form; ValueError naming what is missing or malformed."""
        data = json.loads(body) if isinstance(body, str) else body
        if not isinstance(data, dict):
            raise ValueError("TEE evidence must be a JSON object")
        missing = [k for k in ("kind", "quote") if k not in data]
        if missing:
            raise ValueError(f"TEE evidence lacks {', '.join(missing)}")
        quote = str(data["quote"])
        try:
            raw = bytes.fromhex(quote.removeprefix("0x"))
        except ValueError:
            raise ValueError("TEE evidence's quote is not hex") from None
        return cls(str(data["kind"]), raw, str(data.get("collateral") or ""))
