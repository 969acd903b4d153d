"""What the gas snapshot and the lean market's tests share: the measured jobs, and the lean market
(bench/lean/LeanMarket.vy) compiled and addressed."""

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_utils import keccak

from computenet.domain import Requirements, Verification

ROOT = Path(__file__).resolve().parents[2]
LEAN_SOURCE = Path("bench") / "lean" / "LeanMarket.vy"
TOKEN = 10**6
# Fixed times, as in the gas snapshot: calldata gas depends on the bytes.
DEADLINE = 4_000_000_000
EXPIRE = 4_100_000_000
MANIFEST = keccak(b"manifest")
OUTPUT_ROOT = b"\x42" * 32


@cache
def lean_container() -> Any:
    """LeanMarket compiled by the project's Vyper (it imports the market's own modules), once."""
    from ape.contracts import ContractContainer
    from ethpm_types import ContractType
    from vyper.compiler import compile_from_file_input
    from vyper.compiler.input_bundle import FilesystemInputBundle

    source = FilesystemInputBundle([ROOT]).load_file(LEAN_SOURCE)
    out = compile_from_file_input(source, output_formats=["abi", "bytecode"])
    return ContractContainer(
        ContractType(contractName="LeanMarket", abi=out["abi"], deploymentBytecode={"bytecode": out["bytecode"]})
    )


def snapshot_requirements(shards: int = 1, replication: int = 1, verification: int | None = None) -> Requirements:
    """The gas snapshot's jobs: one GPU, fixed caps and deadline; replicated ones verified so."""
    if verification is None:
        verification = Verification.REPLICATED if replication > 1 else Verification.OPTIMISTIC
    return Requirements(
        min_vram_mib=40_960,
        gpu_count=1,
        max_price=200,
        max_gpu_seconds=3_600,
        deadline=DEADLINE,
        shard_count=shards,
        replication=replication,
        verification=verification,
    )


def lean_terms(client: str, manifest: bytes, req: Requirements, keeper_bps: int, protocol_bps: int) -> tuple:
    """The Terms tuple a LeanMarket caller presents: JobMarket's packed terms and demand words."""
    packed = (
        req.deadline
        | req.shard_count << 40
        | req.replication << 56
        | req.verification << 64
        | req.min_vram_mib << 72
        | req.gpu_count << 104
        | req.max_price << 112
        | req.max_gpu_seconds << 176
        | keeper_bps << 208
        | protocol_bps << 224
    )
    demand = req.gpu_count | req.cpu_cores << 8 | req.memory_mib << 24 | req.disk_mib << 56
    return (client, manifest, packed, demand)


@dataclass
class Lean:
    market: Any
    assets: Any
    asset: int  # a staked one-GPU asset of `agent`, owned by the provider
