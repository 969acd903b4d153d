# pragma version ~=0.4.3
# pragma optimize gas
# pragma experimental-codegen
"""
@title Lean market: the one-shard path of a three-slot job market
@notice A gas benchmark, never deployed. It measures what post, assign, submit and
        finalize of a one-shard, one-replica job cost when a market stores three words
        for it, the fewest its rules allow: the job's escrow, the replica's lease and
        the result's output root. Everything else a job never changes (client,
        manifest hash, requirements, fees, lease demand) is not stored: its hash is
        kept in the job word, and every later step takes it back as calldata and
        checks it against that hash.
@dev It enforces every rule JobMarket enforces on this path, against the same
     ComputeAsset, KeeperRegistry, token and modules: a bonded, active keeper; the
     asset active, staked, with an agent, with the GPUs, VRAM, CPU cores, memory and
     disk, within the price cap, unexpired at lease end; the lease within the
     deadline; the agent's EIP-712 receipt over the lease, asset and manifest; the
     metered GPU-seconds within the lease's time; the challenge window; the lease
     opened, ended with its result and closed at the asset; four payees credited
     (provider, keeper, treasury, client refund); the same events. It leaves out
     what the path does not reach (replication, declines, checkpoints, disputes,
     batches, ZK and TEE jobs).
"""

from ethereum.ercs import IERC20

from contracts.interfaces import IComputeAsset
from contracts.interfaces import IKeeperRegistry
from contracts.modules import asset_spec
from contracts.modules import ecdsa
from contracts.modules import eip712
from contracts.modules import market_params
from contracts.modules import ownable_2step as ownable
from contracts.modules import settlement

initializes: ownable
initializes: eip712
initializes: settlement
initializes: market_params[ownable := ownable]

exports: (settlement.credits, settlement.owed, settlement.withdraw)

MAX_SHARDS: constant(uint256) = 1024
_LEASE_RESULT: constant(uint256) = 1
_RESULT_CLOSED: constant(uint256) = 2
ASSIGNED: constant(uint8) = 1
SUBMITTED: constant(uint8) = 2
FINALIZED: constant(uint8) = 4
OPTIMISTIC: constant(uint8) = 0
SPOT_CHECK: constant(uint8) = 2
_BPS: constant(uint256) = 10000
_RECEIPT_TYPEHASH: constant(bytes32) = keccak256(
    "ExecutionReceipt(uint256 job,uint256 shard,uint256 replica,uint256 lease,uint256 asset,bytes32 manifest,bytes32 outputRoot,uint256 gpuSeconds,uint256 exitCode)"
)
_MASK8: constant(uint256) = 2**8 - 1
_MASK16: constant(uint256) = 2**16 - 1
_MASK24: constant(uint256) = 2**24 - 1
_MASK32: constant(uint256) = 2**32 - 1
_MASK40: constant(uint256) = 2**40 - 1
_MASK64: constant(uint256) = 2**64 - 1
_MASK80: constant(uint256) = 2**80 - 1
_MASK160: constant(uint256) = 2**160 - 1


struct Requirements:
    min_vram_mib: uint32
    gpu_count: uint8
    max_price: uint64
    max_gpu_seconds: uint32
    deadline: uint64
    shard_count: uint16
    replication: uint8
    verification: uint8
    cpu_cores: uint16
    memory_mib: uint32
    disk_mib: uint32


# @dev What a job never changes, as its callers present it: the job word holds its hash.
struct Terms:
    client: address
    manifest_hash: bytes32
    packed: uint256  # JobMarket._pack_terms: requirements but resources, and fees
    demand: uint256  # JobMarket._pack_demand: gpus, cpu cores, memory, disk


ASSETS: public(immutable(IComputeAsset))
KEEPERS: public(immutable(IKeeperRegistry))

job_count: public(uint256)
# @dev job -> terms hash 0-159, escrow 160-239, unfinished 240-255.
_jobs: HashMap[uint256, uint256]
# @dev job -> shard -> JobMarket's replica word (one replica).
_replicas: HashMap[uint256, HashMap[uint256, uint256]]
# @dev job -> shard -> output root.
_output_roots: HashMap[uint256, HashMap[uint256, bytes32]]


event JobPosted:
    job: indexed(uint256)
    client: indexed(address)
    manifest_hash: bytes32
    budget: uint256
    min_vram_mib: uint32
    gpu_count: uint8
    max_price: uint64
    max_gpu_seconds: uint32
    deadline: uint64
    shard_count: uint16
    replication: uint8
    verification: uint8
    keeper_fee_bps: uint16
    protocol_fee_bps: uint16
    cpu_cores: uint16
    memory_mib: uint32
    disk_mib: uint32


event ShardAssigned:
    job: indexed(uint256)
    shard: uint256
    replica: uint256
    asset: indexed(uint256)
    keeper: indexed(address)
    lease: uint256
    lease_end: uint256
    price: uint256


event ResultSubmitted:
    job: indexed(uint256)
    shard: uint256
    replica: uint256
    asset: indexed(uint256)
    output_root: bytes32
    gpu_seconds: uint256
    exit_code: uint256
    challenge_end: uint256


event ShardFinalized:
    job: indexed(uint256)
    shard: uint256
    replica: uint256
    asset: indexed(uint256)
    provider: indexed(address)
    keeper: address
    payment: uint256
    keeper_fee: uint256
    protocol_fee: uint256


event JobFinished:
    job: indexed(uint256)
    client: indexed(address)
    refund: uint256


@deploy
def __init__(
    token: IERC20, assets: IComputeAsset, keepers: IKeeperRegistry, treasury: address, params: market_params.Parameters
):
    """
    @param token The payment token.
    @param assets A ComputeAsset whose market is this contract.
    @param keepers The keeper registry.
    @param treasury Receives protocol fees.
    @param params Fees, windows and minimums.
    """
    ownable.__init__()
    eip712.__init__("computenet JobMarket", "1")
    settlement.__init__(token)
    market_params.__init__(treasury, params)
    ASSETS = assets
    KEEPERS = keepers


@external
@nonreentrant
def post_job(manifest_hash: bytes32, req: Requirements) -> uint256:
    """
    @notice Posts a one-replica job and escrows its maximum cost; approve first.
    @param manifest_hash keccak256 of the job's canonical JSON manifest.
    @param req The job's requirements (replication 1).
    @return The job id.
    """
    settings: market_params.Settings = market_params._settings()
    market_params._check_not_paused(settings)
    assert manifest_hash != empty(bytes32), "lean_market: empty manifest hash"
    assert req.shard_count > 0 and convert(req.shard_count, uint256) <= MAX_SHARDS, "lean_market: shard count out of range"
    assert req.replication == 1, "lean_market: one replica only"
    assert req.verification == OPTIMISTIC or req.verification == SPOT_CHECK, "lean_market: optimistic or spot-check jobs only"
    assert req.max_price > 0 and req.max_gpu_seconds > 0, "lean_market: zero price cap or gpu-seconds"
    assert req.cpu_cores > 0 and req.memory_mib > 0 and req.disk_mib > 0, "lean_market: zero cpu, memory or disk"
    assert convert(req.deadline, uint256) <= _MASK40, "lean_market: deadline out of range"
    assert block.timestamp + self._lease_seconds(req.max_gpu_seconds, req.gpu_count, settings) <= convert(req.deadline, uint256), "lean_market: deadline too soon"
    payment: uint256 = convert(req.max_price, uint256) * convert(req.max_gpu_seconds, uint256)
    budget: uint256 = (
        payment
        + payment * convert(settings.keeper_fee_bps, uint256) // _BPS
        + payment * convert(settings.protocol_fee_bps, uint256) // _BPS
    ) * convert(req.shard_count, uint256)
    assert budget <= _MASK80, "lean_market: budget too large"
    terms: Terms = Terms(
        client=msg.sender,
        manifest_hash=manifest_hash,
        packed=convert(req.deadline, uint256)
        | convert(req.shard_count, uint256) << 40
        | 1 << 56
        | convert(req.verification, uint256) << 64
        | convert(req.min_vram_mib, uint256) << 72
        | convert(req.gpu_count, uint256) << 104
        | convert(req.max_price, uint256) << 112
        | convert(req.max_gpu_seconds, uint256) << 176
        | convert(settings.keeper_fee_bps, uint256) << 208
        | convert(settings.protocol_fee_bps, uint256) << 224,
        demand=convert(req.gpu_count, uint256)
        | convert(req.cpu_cores, uint256) << 8
        | convert(req.memory_mib, uint256) << 24
        | convert(req.disk_mib, uint256) << 56,
    )
    job_id: uint256 = self.job_count + 1
    self.job_count = job_id
    self._jobs[job_id] = self._hash(terms) | budget << 160 | convert(req.shard_count, uint256) << 240
    log JobPosted(
        job=job_id,
        client=msg.sender,
        manifest_hash=manifest_hash,
        budget=budget,
        min_vram_mib=req.min_vram_mib,
        gpu_count=req.gpu_count,
        max_price=req.max_price,
        max_gpu_seconds=req.max_gpu_seconds,
        deadline=req.deadline,
        shard_count=req.shard_count,
        replication=req.replication,
        verification=req.verification,
        keeper_fee_bps=settings.keeper_fee_bps,
        protocol_fee_bps=settings.protocol_fee_bps,
        cpu_cores=req.cpu_cores,
        memory_mib=req.memory_mib,
        disk_mib=req.disk_mib,
    )
    settlement._pull(msg.sender, budget)
    return job_id


@external
def assign(job_id: uint256, terms: Terms, shard: uint256, asset: uint256):
    """
    @notice Leases a shard to `asset`; active keepers only.
    @param job_id The job.
    @param terms The job's terms, as posted.
    @param shard The shard.
    @param asset The compute asset.
    """
    settings: market_params.Settings = market_params._settings()
    market_params._check_not_paused(settings)
    keeper_id: uint24 = staticcall KEEPERS.active_keeper_id(msg.sender)
    packed: uint256 = self._terms(job_id, terms)
    assert shard < (packed >> 40) & _MASK16, "lean_market: unknown shard"
    assert asset <= _MASK32, "lean_market: unknown asset"
    assert self._replicas[job_id][shard] & (_MASK8 << 56) == 0, "lean_market: shard has no open replica"
    spec: asset_spec.Spec = asset_spec._unpack(
        extcall ASSETS.open_lease(asset, convert(settings.min_stake, uint256), terms.demand)
    )
    assert spec.active, "lean_market: asset is paused"
    assert convert(spec.gpu_count, uint256) >= (packed >> 104) & _MASK8, "lean_market: asset has too few gpus"
    assert convert(spec.vram_mib, uint256) >= (packed >> 72) & _MASK32, "lean_market: asset has too little vram"
    assert convert(spec.price, uint256) <= (packed >> 112) & _MASK64, "lean_market: asset price above cap"
    lease_end: uint256 = block.timestamp + self._lease_seconds(
        convert((packed >> 176) & _MASK32, uint32), convert((packed >> 104) & _MASK8, uint8), settings
    )
    assert lease_end <= packed & _MASK40, "lean_market: lease would end after the deadline"
    assert lease_end <= convert(spec.expire, uint256), "lean_market: asset expires before the lease ends"
    self._replicas[job_id][shard] = (
        asset
        | convert(keeper_id, uint256) << 32
        | convert(ASSIGNED, uint256) << 56
        | 1 << 64
        | convert(spec.price, uint256) << 80
        | lease_end << 144
        | block.timestamp << 184
    )
    log ShardAssigned(
        job=job_id,
        shard=shard,
        replica=0,
        asset=asset,
        keeper=msg.sender,
        lease=1,
        lease_end=lease_end,
        price=convert(spec.price, uint256),
    )


@external
def submit_result(
    job_id: uint256,
    terms: Terms,
    shard: uint256,
    output_root: bytes32,
    gpu_seconds: uint32,
    exit_code: uint8,
    signature: Bytes[65],
):
    """
    @notice Records a shard's result, signed by the asset's agent (anyone may relay it).
    @param job_id The job.
    @param terms The job's terms, as posted.
    @param shard The shard.
    @param output_root Merkle root over the output files.
    @param gpu_seconds Metered GPU-seconds, at most the lease's time so far × GPUs.
    @param exit_code The container's exit code.
    @param signature The agent's 65-byte receipt signature.
    """
    packed: uint256 = self._terms(job_id, terms)
    word: uint256 = self._replicas[job_id][shard]
    assert (word >> 56) & _MASK8 == convert(ASSIGNED, uint256), "lean_market: replica not assigned"
    assert block.timestamp <= (word >> 144) & _MASK40, "lean_market: lease expired"
    assert output_root != empty(bytes32), "lean_market: empty output root"
    since: uint256 = (word >> 184) & _MASK40
    assert convert(gpu_seconds, uint256) <= (block.timestamp - since) * max((packed >> 104) & _MASK8, 1), "lean_market: gpu_seconds exceed the lease's time"
    asset: uint256 = word & _MASK32
    lease: uint256 = (word >> 64) & _MASK16
    receipt: bytes32 = keccak256(
        abi_encode(
            _RECEIPT_TYPEHASH,
            job_id,
            shard,
            empty(uint256),
            lease,
            asset,
            terms.manifest_hash,
            output_root,
            convert(gpu_seconds, uint256),
            convert(exit_code, uint256),
        )
    )
    signer: address = ecdsa._recover(eip712._hash_typed(receipt), signature)
    assert signer != empty(address) and signer == staticcall ASSETS.agentOf(asset), "lean_market: receipt not signed by the asset's agent"
    challenge_end: uint256 = block.timestamp + convert(market_params._settings().challenge_window, uint256)
    paid: uint256 = min(convert(gpu_seconds, uint256), (packed >> 176) & _MASK32)
    self._replicas[job_id][shard] = (
        word & (_MASK32 | _MASK24 << 32 | _MASK16 << 64 | _MASK64 << 80)
        | convert(SUBMITTED, uint256) << 56
        | challenge_end << 144
        | block.timestamp << 184
        | paid << 224
    )
    self._output_roots[job_id][shard] = output_root
    extcall ASSETS.end_lease(asset, terms.demand, _LEASE_RESULT, 0)
    log ResultSubmitted(
        job=job_id,
        shard=shard,
        replica=0,
        asset=asset,
        output_root=output_root,
        gpu_seconds=convert(gpu_seconds, uint256),
        exit_code=convert(exit_code, uint256),
        challenge_end=challenge_end,
    )


@external
def finalize(job_id: uint256, terms: Terms, shard: uint256):
    """
    @notice Settles a shard once its challenge window has closed: the provider is
            credited price × GPU-seconds, the keeper and the protocol their fees; the
            job's last shard refunds the client the rest.
    @param job_id The job.
    @param terms The job's terms, as posted.
    @param shard The shard.
    """
    packed: uint256 = self._terms(job_id, terms)
    word: uint256 = self._replicas[job_id][shard]
    assert (word >> 56) & _MASK8 == convert(SUBMITTED, uint256), "lean_market: shard not ready"
    assert block.timestamp > (word >> 144) & _MASK40, "lean_market: challenge window open"
    self._replicas[job_id][shard] = (
        word & ~(_MASK8 << 56 | _MASK40 << 184) | convert(FINALIZED, uint256) << 56 | block.timestamp << 184
    )
    asset: uint256 = word & _MASK32
    extcall ASSETS.end_lease(asset, 0, _RESULT_CLOSED, 0)
    provider: address = staticcall ASSETS.ownerOf(asset)
    keeper: address = staticcall KEEPERS.keeper_of((word >> 32) & _MASK24)
    payment: uint256 = ((word >> 80) & _MASK64) * (word >> 224)
    keeper_fee: uint256 = payment * ((packed >> 208) & _MASK16) // _BPS
    protocol_fee: uint256 = payment * ((packed >> 224) & _MASK16) // _BPS
    settlement._credit_unlogged(provider, payment)
    settlement._credit_unlogged(keeper, keeper_fee)
    settlement._credit_unlogged(market_params.treasury, protocol_fee)
    log ShardFinalized(
        job=job_id,
        shard=shard,
        replica=0,
        asset=asset,
        provider=provider,
        keeper=keeper,
        payment=payment,
        keeper_fee=keeper_fee,
        protocol_fee=protocol_fee,
    )
    job: uint256 = self._jobs[job_id]
    escrow: uint256 = ((job >> 160) & _MASK80) - payment - keeper_fee - protocol_fee
    unfinished: uint256 = (job >> 240) - 1
    if unfinished == 0:
        self._jobs[job_id] = job & _MASK160
        settlement._credit_unlogged(terms.client, escrow)
        log JobFinished(job=job_id, client=terms.client, refund=escrow)
    else:
        self._jobs[job_id] = job & _MASK160 | escrow << 160 | unfinished << 240



@internal
@view
def _terms(job_id: uint256, terms: Terms) -> uint256:
    """
    @dev Reverts unless `terms` are the job's; returns their packed requirements and fees.
    """
    job: uint256 = self._jobs[job_id]
    assert job != 0, "lean_market: unknown job"
    assert job & _MASK160 == self._hash(terms), "lean_market: not the job's terms"
    return terms.packed


@internal
@pure
def _hash(terms: Terms) -> uint256:
    """
    @dev The low 160 bits of the terms' hash (as an address commits to a key).
    """
    return convert(keccak256(abi_encode(terms)), uint256) & _MASK160


@internal
@pure
def _lease_seconds(max_gpu_seconds: uint32, gpu_count: uint8, settings: market_params.Settings) -> uint256:
    """
    @dev The GPU-seconds spread over the GPUs (rounded up), plus the set-up grace.
    """
    gpus: uint256 = max(convert(gpu_count, uint256), 1)
    return (convert(max_gpu_seconds, uint256) + gpus - 1) // gpus + convert(settings.lease_grace, uint256)
