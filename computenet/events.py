"""Market events as typed domain events.

Every state change of the contracts emits one of these, so a process that reads them
in order can rebuild the market. `decode` is pure (name + arguments in, dataclass out);
`from_log` adapts an ape ContractLog.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Where an event happened; subclasses add its arguments."""

    block: int
    tx: str
    index: int
    name: ClassVar[str] = ""


def _event(name: str, *arg_names: str) -> type[Event]:
    cls = dataclass(frozen=True)(type(name, (Event,), {"__annotations__": {a: Any for a in arg_names}, "name": name}))
    return cls


# JobMarket
JobPosted = _event(
    "JobPosted",
    "job",
    "client",
    "manifest_hash",
    "budget",
    "min_vram_mib",
    "gpu_count",
    "max_price",
    "max_gpu_seconds",
    "deadline",
    "shard_count",
    "replication",
    "verification",
    "keeper_fee_bps",
    "protocol_fee_bps",
    "cpu_cores",
    "memory_mib",
    "disk_mib",
)
ShardAssigned = _event("ShardAssigned", "job", "shard", "replica", "asset", "keeper", "lease", "lease_end", "price")
ShardDeclined = _event("ShardDeclined", "job", "shard", "replica", "asset", "reason")
ResultSubmitted = _event(
    "ResultSubmitted", "job", "shard", "replica", "asset", "output_root", "gpu_seconds", "exit_code", "challenge_end"
)
# A batch of results under one agent signature: their receipts' struct hashes, after their ResultSubmitted
ResultsCommitted = _event("ResultsCommitted", "agent", "receipts")
DisputeOpened = _event("DisputeOpened", "job", "shard", "challenger", "bond")
ReplicaRejected = _event("ReplicaRejected", "job", "shard", "replica", "asset", "slashed")
DisputeResolved = _event("DisputeResolved", "job", "shard", "facilitator", "rejected_replicas", "upheld", "rejected")
ShardReclaimed = _event("ShardReclaimed", "job", "shard", "replica", "asset", "caller", "slashed")
ShardCancelled = _event("ShardCancelled", "job", "shard", "replicas")
ShardFailed = _event("ShardFailed", "job", "shard", "declines")  # then ShardCancelled for its open replicas
ShardFinalized = _event(
    "ShardFinalized", "job", "shard", "replica", "asset", "provider", "keeper", "payment", "keeper_fee", "protocol_fee"
)
CheckpointCommitted = _event(
    "CheckpointCommitted", "job", "shard", "replica", "asset", "lease", "checkpoint", "gpu_seconds"
)
CheckpointAdopted = _event("CheckpointAdopted", "job", "shard", "replica", "asset", "checkpoint", "gpu_seconds")
ContributionPaid = _event(  # an earlier lease's adopted checkpoint, paid when its shard finalizes
    "ContributionPaid",
    "job",
    "shard",
    "replica",
    "asset",
    "provider",
    "keeper",
    "gpu_seconds",
    "payment",
    "keeper_fee",
    "protocol_fee",
)
JobFinished = _event("JobFinished", "job", "client", "refund")
DisputeSettled = _event(  # the dispute court's
    "DisputeSettled", "job", "shard", "arbiter", "challenger", "slashed", "reward", "bond_returned"
)
ResultRevealed = _event("ResultRevealed", "job", "shard", "replica", "lease", "output_root")  # the court's
# AuthorizationFunder
JobFundedByAuthorization = _event("JobFundedByAuthorization", "job", "payer", "nonce", "front_run")
UnclaimedReturned = _event("UnclaimedReturned", "payer", "nonce", "amount")
Credited = _event("Credited", "account", "amount")
Withdrawn = _event("Withdrawn", "account", "receiver", "amount")
ParametersUpdated = _event(
    "ParametersUpdated",
    "keeper_fee_bps",
    "protocol_fee_bps",
    "slash_bps",
    "challenge_window",
    "decline_window",
    "lease_grace",
    "min_stake",
    "challenge_bond",
)
Paused = _event("Paused", "account")
Unpaused = _event("Unpaused", "account")
TreasurySet = _event("TreasurySet", "treasury")
FacilitatorSet = _event("FacilitatorSet", "account", "enabled")
# ComputeAsset
AssetRegistered = _event(
    "AssetRegistered",
    "asset",
    "owner",
    "agent",
    "gpu_model",
    "vram_mib",
    "gpu_count",
    "cpu_cores",
    "region",
    "price",
    "expire",
    "max_leases",
    "commit",
    "memory_mib",
    "disk_mib",
)
CapacityUpdated = _event("CapacityUpdated", "asset", "max_leases")
PriceUpdated = _event("PriceUpdated", "asset", "price")
AssetPaused = _event("AssetPaused", "asset")
AssetResumed = _event("AssetResumed", "asset")
AssetRenewed = _event("AssetRenewed", "asset", "expire")
AgentChanged = _event("AgentChanged", "asset", "agent")
CommitUpdated = _event("CommitUpdated", "asset", "commit")
EndpointChanged = _event("EndpointChanged", "asset", "endpoint")
UpdateReader = _event("UpdateReader", "tokenId", "reader", "valid")
Transfer = _event("Transfer", "sender", "receiver", "token_id")  # the asset's ERC-721 events
Approval = _event("Approval", "owner", "approved", "token_id")
ApprovalForAll = _event("ApprovalForAll", "owner", "operator", "approved")
StakeAdded = _event("StakeAdded", "asset", "sender", "amount", "stake")
UnstakeRequested = _event("UnstakeRequested", "asset", "amount", "unbond_at")
StakeWithdrawn = _event("StakeWithdrawn", "asset", "owner", "amount")
StakeSlashed = _event("StakeSlashed", "asset", "amount", "stake")
# KeeperRegistry
KeeperRegistered = _event("KeeperRegistered", "keeper", "id", "bond")
KeeperExitRequested = _event("KeeperExitRequested", "keeper", "exit_at")
KeeperBondWithdrawn = _event("KeeperBondWithdrawn", "keeper", "amount")
MinBondSet = _event("MinBondSet", "min_bond")
# AttestationRegistry
AttestorSet = _event("AttestorSet", "attestor", "allowed")
ShortWindowSet = _event("ShortWindowSet", "seconds")
NodeAttested = _event(
    "NodeAttested", "asset", "attestor", "evidence_hash", "kind", "measurement", "tcb", "valid_from", "valid_until"
)
NodeRevoked = _event("NodeRevoked", "asset", "by")
ResultAttested = _event(
    "ResultAttested", "job", "shard", "attestor", "replica", "asset", "evidence_hash", "challenge_end"
)
# ownership (JobMarket and KeeperRegistry)
OwnershipTransferStarted = _event("OwnershipTransferStarted", "previous_owner", "new_owner")
OwnershipTransferred = _event("OwnershipTransferred", "previous_owner", "new_owner")

EVENTS: dict[str, type[Event]] = {
    cls.name: cls
    for cls in [value for value in list(globals().values()) if isinstance(value, type) and issubclass(value, Event)]
    if cls.name
}


def _plain(value: Any) -> Any:
    """Chain values as plain Python: ints, checksum strings, bytes."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return str(value) if not isinstance(value, (list, tuple, dict)) else value


def decode(name: str, arguments: dict[str, Any], block: int = 0, tx: str = "", index: int = 0) -> Event:
    """The typed event for `name`; unknown names raise KeyError naming the event."""
    try:
        cls = EVENTS[name]
    except KeyError:
        raise KeyError(f"unknown market event {name!r}") from None
    wanted = {f.name for f in fields(cls)} - {"block", "tx", "index"}
    missing = wanted - set(arguments)
    if missing:
        raise ValueError(f"{name} lacks {sorted(missing)}")
    values = {key: _plain(arguments[key]) for key in wanted}
    return cls(block=int(block), tx=str(tx), index=int(index), **values)


def from_log(log: Any) -> Event:
    """Adapts an ape ContractLog."""
    return decode(
        log.event_name,
        dict(log.event_arguments),
        block=log.block_number or 0,
        tx=str(log.transaction_hash or ""),
        index=log.log_index or 0,
    )
