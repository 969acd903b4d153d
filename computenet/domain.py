"""Typed domain objects: what the contracts store, as plain Python values.

Pure data and arithmetic: no ape, web3, redis or celery here, so keepers' decision
logic can use these types and be tested without a chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

BPS = 10_000
MAX_SHARDS = 1024
MAX_REPLICATION = 5
MAX_DECLINES = 3  # JobMarket.MAX_DECLINES: a shard declined this often fails and is refunded
# Seconds an agent keeps between a run's wall-clock limit and its lease's end, for collecting
# outputs and getting the result mined: a manifest's timeout must leave them inside the lease.
SUBMIT_MARGIN = 30


class ReplicaState(IntEnum):
    """A shard replica's state in JobMarket (same numbers as the contract)."""

    OPEN = 0
    ASSIGNED = 1
    SUBMITTED = 2
    DISPUTED = 3
    FINALIZED = 4
    CANCELLED = 5


class Verification(IntEnum):
    """How a job's results are checked. REPLICATED is required when replication > 1."""

    OPTIMISTIC = 0
    REPLICATED = 1
    SPOT_CHECK = 2
    ZK = 3  # each shard's result carries a proof the chain checks (contracts/ModelRegistry.vy)
    TEE = 4  # attested assets only; attested results final after a short window (AttestationRegistry.vy)


@dataclass(frozen=True)
class Spec:
    """What a compute asset offers. `price` is per GPU-second (per second for CPU-only
    nodes) in token base units; `expire` is unix seconds. Its leases together hold at most
    its GPUs, `cpu_cores`, `memory_mib` and `disk_mib`."""

    gpu_model: int
    vram_mib: int
    gpu_count: int
    cpu_cores: int
    region: int
    price: int
    expire: int
    active: bool = True
    max_leases: int = 1  # leases held at once, each from assignment until finalized
    memory_mib: int = 16384  # memory its leases share, MiB
    disk_mib: int = 65536  # disk its leases share, MiB

    def as_tuple(self) -> tuple:
        return (
            self.gpu_model,
            self.vram_mib,
            self.gpu_count,
            self.cpu_cores,
            self.region,
            self.price,
            self.expire,
            self.active,
            self.max_leases,
            self.memory_mib,
            self.disk_mib,
        )

    @classmethod
    def from_chain(cls, raw: Sequence) -> Spec:
        """From ComputeAsset.spec's tuple, as a plain web3 call returns it."""
        return cls(*(bool(x) if isinstance(x, bool) else int(x) for x in raw))

    @property
    def size_mib(self) -> int:
        """ERC-7829 `size`: total GPU memory in MiB."""
        return self.gpu_count * self.vram_mib


@dataclass(frozen=True)
class ZkModel:
    """ModelRegistry.model: a registered model's verifier and public word counts (no verifier: none)."""

    verifier: str
    input_words: int
    output_words: int
    registrant: str
    artifact_hash: bytes  # keccak256 of its ONNX, settings and verifying key (computenet.zk)

    @classmethod
    def from_chain(cls, raw: Sequence) -> ZkModel:
        return cls(str(raw[0]), int(raw[1]), int(raw[2]), str(raw[3]), bytes(raw[4]))

    @property
    def registered(self) -> bool:
        return int(self.verifier, 16) != 0


@dataclass(frozen=True)
class ZkSpec:
    """ModelRegistry.spec: the model and inputs root a client bound a manifest's zk jobs to (zero: none)."""

    model: bytes
    inputs_root: bytes

    @classmethod
    def from_chain(cls, raw: Sequence) -> ZkSpec:
        return cls(bytes(raw[0]), bytes(raw[1]))

    @property
    def bound(self) -> bool:
        return any(self.model)


class TeeKind(IntEnum):
    """AttestationRegistry's TEE kinds, by the names verifier.attestation gives them."""

    TDX = 1
    SGX = 2
    SEV_SNP = 3

    @classmethod
    def named(cls, name: str) -> TeeKind:
        return cls[name.upper().replace("-", "_")]


# The vendors' TCB status names, in AttestationRegistry's order; from OutOfDate on, refused.
TCB_LEVELS = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)


@dataclass(frozen=True)
class TeeVerdict:
    """AttestationRegistry.verdict: an asset's latest node verdict (no attestor: none)."""

    evidence_hash: bytes
    measurement_hash: bytes  # keccak256 of the measurement
    agent: str
    attestor: str
    kind: int
    tcb: int
    valid_from: int
    valid_until: int

    @classmethod
    def from_chain(cls, raw: Sequence) -> TeeVerdict:
        return cls(bytes(raw[0]), bytes(raw[1]), str(raw[2]), str(raw[3]), *(int(x) for x in raw[4:8]))

    @property
    def recorded(self) -> bool:
        return int(self.attestor, 16) != 0


@dataclass(frozen=True)
class Parameters:
    """JobMarket's owner-set parameters (see contracts/modules/market_params.vy)."""

    keeper_fee_bps: int
    protocol_fee_bps: int
    slash_bps: int
    challenge_window: int
    decline_window: int
    lease_grace: int
    min_stake: int
    challenge_bond: int

    def as_tuple(self) -> tuple:
        return (
            self.keeper_fee_bps,
            self.protocol_fee_bps,
            self.slash_bps,
            self.challenge_window,
            self.decline_window,
            self.lease_grace,
            self.min_stake,
            self.challenge_bond,
        )

    @classmethod
    def from_chain(cls, raw: Sequence[int]) -> Parameters:
        """From JobMarket.parameters' tuple."""
        return cls(*(int(x) for x in raw))


@dataclass(frozen=True)
class Requirements:
    """What a job needs from each asset, and how it is run and checked."""

    min_vram_mib: int
    gpu_count: int
    max_price: int
    max_gpu_seconds: int
    deadline: int
    shard_count: int = 1
    replication: int = 1
    verification: Verification = Verification.OPTIMISTIC
    cpu_cores: int = 1  # CPU cores each lease holds
    memory_mib: int = 1024  # memory each lease holds, MiB
    disk_mib: int = 1024  # disk each lease may write (outputs, /tmp), MiB

    def as_tuple(self) -> tuple:
        return (
            self.min_vram_mib,
            self.gpu_count,
            self.max_price,
            self.max_gpu_seconds,
            self.deadline,
            self.shard_count,
            self.replication,
            int(self.verification),
            self.cpu_cores,
            self.memory_mib,
            self.disk_mib,
        )

    @classmethod
    def from_chain(cls, raw: Sequence[int]) -> Requirements:
        """From the contracts' Requirements tuple (the same order as `as_tuple`)."""
        values = [int(x) for x in raw]
        if len(values) != len(fields(cls)):
            raise ValueError(f"a Requirements tuple has {len(fields(cls))} fields, not {len(values)}")
        values[7] = Verification(values[7])
        return cls(*values)

    def demand(self) -> tuple[int, int, int, int]:
        """What each lease holds on an asset: (GPUs, CPU cores, memory MiB, disk MiB)."""
        return self.gpu_count, self.cpu_cores, self.memory_mib, self.disk_mib

    def max_payment(self) -> int:
        """Most a provider can earn for one replica."""
        return self.max_price * self.max_gpu_seconds

    def quote(self, keeper_fee_bps: int, protocol_fee_bps: int) -> int:
        """The budget JobMarket escrows for this job (same rounding as the contract)."""
        payment = self.max_payment()
        per_replica = payment + payment * keeper_fee_bps // BPS + payment * protocol_fee_bps // BPS
        return per_replica * self.shard_count * self.replication

    def lease_seconds(self, lease_grace: int) -> int:
        """How long one lease lasts: GPU-seconds spread over the GPUs, plus set-up grace."""
        gpus = max(self.gpu_count, 1)
        return -(-self.max_gpu_seconds // gpus) + lease_grace


def settle_amounts(price: int, gpu_seconds: int, keeper_fee_bps: int, protocol_fee_bps: int) -> tuple[int, int, int]:
    """(provider payment, keeper fee, protocol fee) for one finalized replica."""
    payment = price * gpu_seconds
    return payment, payment * keeper_fee_bps // BPS, payment * protocol_fee_bps // BPS


@dataclass(frozen=True)
class Stake:
    """ComputeAsset.stake, in its order: a lease is open while its replica runs; once its result
    is submitted the lease ends and the result is pending (it keeps the stake locked) until final."""

    amount: int
    open_leases: int
    gpus_leased: int  # GPUs its open leases hold together
    pending_results: int = 0
    unbond_at: int = 0
    unbonding: int = 0

    @classmethod
    def from_chain(cls, raw: Sequence[int]) -> Stake:
        """From ComputeAsset.stake's tuple (the fields in the contract's order)."""
        return cls(*(int(x) for x in raw))

    @property
    def available(self) -> int:
        """Stake that counts toward the market's minimum."""
        return self.amount - min(self.unbonding, self.amount)


@dataclass(frozen=True)
class Leased:
    """ComputeAsset.leased: the CPU cores, memory and disk (MiB) an asset's open leases hold."""

    cpu_cores: int = 0
    memory_mib: int = 0
    disk_mib: int = 0

    @classmethod
    def from_chain(cls, raw: Sequence[int]) -> Leased:
        return cls(*(int(x) for x in raw))


@dataclass(frozen=True)
class Asset:
    """A registered compute asset (ERC-7829 token)."""

    id: int
    owner: str
    agent: str
    spec: Spec
    commit: bytes
    stake: Stake
    endpoint: str = ""  # base URL where its agent serves signed heartbeats and outputs
    leased: Leased = Leased()  # CPU cores, memory and disk its open leases hold

    @property
    def free(self) -> tuple[int, int, int, int]:
        """(GPUs, CPU cores, memory MiB, disk MiB) its open leases leave free."""
        spec, leased = self.spec, self.leased
        return (
            spec.gpu_count - self.stake.gpus_leased,
            spec.cpu_cores - leased.cpu_cores,
            spec.memory_mib - leased.memory_mib,
            spec.disk_mib - leased.disk_mib,
        )


@dataclass(frozen=True)
class Job:
    id: int
    client: str
    escrow: int
    manifest_hash: bytes
    requirements: Requirements
    keeper_fee_bps: int
    protocol_fee_bps: int
    unfinished: int

    @property
    def finished(self) -> bool:
        return self.unfinished == 0

    @classmethod
    def from_chain(cls, job_id: int, raw: Sequence) -> Job:
        """From JobMarket.job's tuple (client, escrow, unfinished, manifest_hash, requirements,
        keeper_fee_bps, protocol_fee_bps), as a plain web3 call returns it."""
        client, escrow, unfinished, manifest_hash, requirements, keeper_fee_bps, protocol_fee_bps = raw
        return cls(
            id=job_id,
            client=str(client),
            escrow=int(escrow),
            manifest_hash=bytes(manifest_hash),
            requirements=Requirements.from_chain(requirements),
            keeper_fee_bps=int(keeper_fee_bps),
            protocol_fee_bps=int(protocol_fee_bps),
            unfinished=int(unfinished),
        )


@dataclass(frozen=True)
class Replica:
    job: int
    shard: int
    index: int
    asset: int
    keeper_id: int
    state: ReplicaState
    lease: int
    price: int
    deadline: int
    since: int
    gpu_seconds: int
    output_root: bytes = b"\x00" * 32

    @classmethod
    def from_chain(cls, job: int, shard: int, index: int, fields: Sequence[int], output_root: bytes) -> Replica:
        """From JobMarket.replica's tuple (asset, keeper, state, lease, price, deadline, since,
        gpu_seconds) and output_root, as a plain web3 call returns them."""
        asset, keeper, state, lease, price, deadline, since, gpu_seconds = (int(x) for x in fields)
        return cls(
            job,
            shard,
            index,
            asset,
            keeper,
            ReplicaState(state),
            lease,
            price,
            deadline,
            since,
            gpu_seconds,
            bytes(output_root),
        )


@dataclass(frozen=True)
class Checkpoints:
    """A replica's checkpoints (JobMarket.checkpoint): the resume point its next lease starts
    from (zero: fresh), the newest checkpoint committed by `pending_lease` with its metered
    GPU-seconds (zero lease: none), and the paid contributions of earlier leases."""

    resume_point: bytes
    pending: bytes
    pending_lease: int
    pending_gpu_seconds: int
    contributors: int
    contributed: int

    @classmethod
    def from_chain(cls, fields: Sequence[Any]) -> Checkpoints:
        resume_point, pending, lease, gpu_seconds, contributors, contributed = fields
        return cls(
            bytes(resume_point), bytes(pending), int(lease), int(gpu_seconds), int(contributors), int(contributed)
        )

    def pending_of(self, lease: int) -> int:
        """The GPU-seconds of the checkpoint committed under `lease` (0: none)."""
        return self.pending_gpu_seconds if lease and self.pending_lease == lease else 0


@dataclass(frozen=True)
class Shard:
    job: int
    index: int
    replicas: tuple[Replica, ...] = field(default_factory=tuple)

    @property
    def state(self) -> ReplicaState:
        """The shard's state in the replicas' terms: DISPUTED while any replica is,
        otherwise its least advanced live replica's (a shard is only as far as its
        slowest replica); CANCELLED when all are."""
        live = [r.state for r in self.replicas if r.state != ReplicaState.CANCELLED]
        if not live:
            return ReplicaState.CANCELLED
        if ReplicaState.DISPUTED in live:
            return ReplicaState.DISPUTED
        order = (ReplicaState.OPEN, ReplicaState.ASSIGNED, ReplicaState.SUBMITTED, ReplicaState.FINALIZED)
        return min(live, key=order.index)


@dataclass(frozen=True)
class KeeperBond:
    """A keeper's record in KeeperRegistry; id 0 for an account that is not one."""

    id: int
    bond: int  # token base units
    exit_at: int  # when the bond may be withdrawn; 0 while active

    @property
    def exiting(self) -> bool:
        return self.exit_at != 0


@dataclass(frozen=True)
class Dispute:
    """A shard's latest dispute, open or ruled on (from the court and the market's events)."""

    job: int
    shard: int
    open: bool
    challenger: str | None  # None: the replicas disagreed by themselves
    bond: int  # token base units the challenger posted
    disputed: tuple[int, ...]  # while open: the replicas under dispute
    ruling_deadline: int | None  # while open: when it must be ruled on (unix seconds)
    arbiter: str | None  # once resolved: the facilitator who ruled; None for the default outcome
    upheld: int  # once resolved: how many results stood
    rejected: tuple[int, ...]  # once resolved: the replicas found wrong (slashed and reopened)
