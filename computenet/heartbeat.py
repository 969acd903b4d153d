"""Signed heartbeats: what an agent tells keepers about its node's load.

A heartbeat is EIP-712 typed data bound to one ComputeAsset deployment:

    struct_hash = keccak256(HEARTBEAT_TYPEHASH ‖ asset ‖ timestamp ‖ gpuUtilizationPct ‖ freeVramMib
                            ‖ runningShards ‖ capacity ‖ seq)          # each a 32-byte word
    digest      = keccak256(0x1901 ‖ domain_separator("computenet Heartbeat", "1", chainId, registry)
                            ‖ struct_hash)

signed with the asset's registered agent key (`ComputeAsset.agentOf`), the same key that signs
execution receipts. No contract checks heartbeats; the registry address is the verifying
contract only so that a heartbeat for one deployment is worthless on another. Each agent
serves the latest heartbeat of each of its assets at the endpoint its asset records on chain
(`ComputeAsset.endpoint`), in the compact JSON form of `to_json`:

    GET <endpoint>/heartbeats           [heartbeat, ...]   one per asset the agent serves
    GET <endpoint>/heartbeats/<asset>   heartbeat

Keepers poll those endpoints and accept a heartbeat only if `check_heartbeat` says so: signed
by the asset's agent, fresh, and newer than the last one accepted from that asset. The
signature is what makes a heartbeat trustworthy, so any transport, or relay, will do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from computenet.eip712 import TypedStruct, domain_separator
from computenet.errors import ComputenetError, InvalidSignature

DOMAIN_NAME = "computenet Heartbeat"
DOMAIN_VERSION = "1"

# How far ahead of the keeper's clock a heartbeat may be dated: agents' clocks drift a little.
DEFAULT_MAX_SKEW = 5

_ZERO_ADDRESS = "0x" + "00" * 20


class HeartbeatError(ComputenetError, ValueError):
    """A heartbeat or its wire form is malformed."""


def registry_domain_separator(chain_id: int, registry: str | bytes) -> bytes:
    """The heartbeat domain separator for the ComputeAsset registry at `registry` on `chain_id`."""
    return domain_separator(DOMAIN_NAME, DOMAIN_VERSION, chain_id, registry)


@dataclass(frozen=True)
class Heartbeat(TypedStruct):
    """One agent's report on its node at `timestamp` (unix seconds).

    `gpu_utilization_pct` is the average over the node's GPUs (0-100); `free_vram_mib` the free
    GPU memory summed over them; `running_shards` the leases it is running and `capacity` how
    many it can run at once. `seq` grows with every heartbeat the agent sends, so a keeper can
    refuse an old one replayed to it.
    """

    EIP712_DOMAIN = (DOMAIN_NAME, DOMAIN_VERSION)
    EIP712_TYPE = (
        "Heartbeat(uint256 asset,uint256 timestamp,uint256 gpuUtilizationPct,uint256 freeVramMib,"
        "uint256 runningShards,uint256 capacity,uint256 seq)"
    )

    asset: int
    timestamp: int
    gpu_utilization_pct: int
    free_vram_mib: int
    running_shards: int
    capacity: int
    seq: int

    def __post_init__(self) -> None:
        for attr in _FIELDS:
            value = getattr(self, attr)
            # bool is an int subclass but never a count; other int subclasses are plain numbers.
            if not isinstance(value, int) or isinstance(value, bool):
                raise HeartbeatError(f"heartbeat.{attr} must be an int, got {type(value).__name__}")
            if not 0 <= value < 2**256:
                raise HeartbeatError(f"heartbeat.{attr} must fit in uint256, got {value}")
            object.__setattr__(self, attr, int(value))
        if self.gpu_utilization_pct > 100:
            raise HeartbeatError(f"heartbeat.gpu_utilization_pct must be 0-100, got {self.gpu_utilization_pct}")

    def to_json(self, signature: bytes, checkpoints: list[dict[str, Any]] | None = None) -> str:
        """The compact wire form: the fields by name plus the signature as 0x-hex, no spaces,
        and, when given, `checkpoints`: the running leases' signed checkpoints
        (computenet.checkpoints.SignedCheckpoint.to_body), each signed on its own and not
        covered by the heartbeat's signature."""
        if not isinstance(signature, (bytes, bytearray, memoryview)):
            raise HeartbeatError(f"heartbeat signature must be bytes, got {type(signature).__name__}")
        body: dict[str, Any] = {attr: getattr(self, attr) for attr in _FIELDS}
        body["signature"] = "0x" + bytes(signature).hex()
        if checkpoints:
            body["checkpoints"] = list(checkpoints)
        return json.dumps(body, separators=(",", ":"))

    def wire(
        self, private_key: Any, chain_id: int, registry: str | bytes, checkpoints: list[dict[str, Any]] | None = None
    ) -> str:
        """Signed with `private_key` and in `to_json`'s form: what an agent serves."""
        return self.to_json(self.sign(private_key, chain_id, registry), checkpoints)

    @classmethod
    def from_json(cls, text: str | bytes) -> tuple[Heartbeat, bytes]:
        """(heartbeat, signature) from `to_json`'s form; raises HeartbeatError for anything else."""
        try:
            body = json.loads(text)
        except (ValueError, TypeError) as error:  # JSONDecodeError and bad UTF-8 are ValueErrors
            raise HeartbeatError(f"heartbeat: not JSON: {error}") from None
        return cls.from_body(body)

    @classmethod
    def from_body(cls, body: Any) -> tuple[Heartbeat, bytes]:
        """(heartbeat, signature) from `to_json`'s form already parsed as JSON."""
        if not isinstance(body, dict):
            raise HeartbeatError("heartbeat: wire form must be a JSON object")
        body = dict(body)
        body.pop("checkpoints", None)  # optional, signed apart: see `checkpoints_of`
        expected = set(_FIELDS) | {"signature"}
        if set(body) != expected:
            missing, extra = sorted(expected - set(body)), sorted(set(body) - expected)
            raise HeartbeatError(f"heartbeat: wrong fields (missing {missing}, unexpected {extra})")
        signature = body.pop("signature")
        if not isinstance(signature, str) or not signature.startswith("0x"):
            raise HeartbeatError("heartbeat.signature must be 0x-prefixed hex")
        try:
            raw = bytes.fromhex(signature[2:])
        except ValueError:
            raise HeartbeatError(f"heartbeat.signature is not valid hex: {signature!r}") from None
        return cls(**body), raw


HEARTBEAT_TYPE = Heartbeat.EIP712_TYPE
HEARTBEAT_TYPEHASH = Heartbeat.EIP712_TYPEHASH
_FIELDS = tuple(attr for attr, _, _ in Heartbeat.EIP712_MEMBERS)  # every member is a uint256


def checkpoints_of(text: str | bytes) -> list[Any]:
    """The `checkpoints` entries of a heartbeat's wire form, unchecked (each is verified on its
    own: computenet.checkpoints.SignedCheckpoint.from_body); [] when it has none."""
    try:
        body = json.loads(text)
    except (ValueError, TypeError):
        return []
    entries = body.get("checkpoints") if isinstance(body, dict) else None
    return list(entries) if isinstance(entries, list) else []


def check_heartbeat(
    hb: Heartbeat,
    signature: bytes,
    agent_of_asset: str,
    now: int,
    max_age: int,
    last_seq: int | None,
    chain_id: int,
    registry: str | bytes,
    *,
    max_skew: int = DEFAULT_MAX_SKEW,
) -> str | None:
    """Why a keeper must refuse this heartbeat, or None to accept it.

    `agent_of_asset` is `ComputeAsset.agentOf(hb.asset)` now (the zero address for an unknown
    asset); `last_seq` the sequence number of the last heartbeat accepted from the asset, None
    if none. The cheap checks come first and the signature recovery last, so a flood of junk
    costs little; nothing here changes state, so the caller records `hb.seq` on acceptance.
    """
    if not isinstance(hb, Heartbeat):
        return f"heartbeat: malformed (expected a Heartbeat, got {type(hb).__name__})"
    if not isinstance(signature, (bytes, bytearray, memoryview)) or len(signature) != 65:
        return "heartbeat: malformed signature (must be 65 bytes r ‖ s ‖ v)"
    if not agent_of_asset or agent_of_asset.lower() == _ZERO_ADDRESS:
        return "heartbeat: unknown asset (no agent registered)"
    if hb.timestamp > now + max_skew:
        return "heartbeat: from the future"
    age = now - hb.timestamp
    if age > max_age:
        return f"heartbeat: stale (age {age} s > {max_age} s)"
    if last_seq is not None and hb.seq <= last_seq:
        return f"heartbeat: replayed sequence ({hb.seq} <= {last_seq})"
    try:
        signer = hb.recover(signature, chain_id, registry)
    except InvalidSignature as error:
        return f"heartbeat: malformed signature ({error})"
    if signer.lower() != agent_of_asset.lower():
        return "heartbeat: not signed by the asset's agent"
    return None
