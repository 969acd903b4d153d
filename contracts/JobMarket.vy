# pragma version ~=0.4.3
# pragma optimize codesize
# pragma experimental-codegen
# (Vyper's Venom pipeline: about 3.9 KB less code than the legacy one, the room resources and checkpoints need)
"""
@title computenet job market
@notice The scheduler escrow. Clients post jobs whose maximum cost is escrowed;
        bonded keepers assign each shard replica to a compute asset, and the market
        checks every hard constraint; the asset's agent submits a result with a
        signed EIP-712 receipt; after the challenge window anyone finalizes, which
        pays the provider by metered use, the keeper and the protocol their fees,
        and, once the job is done, refunds the client what was not used.
@dev Replica states: OPEN -> ASSIGNED -> SUBMITTED -> FINALIZED, with
     ASSIGNED -> OPEN on decline or reclaim, SUBMITTED -> DISPUTED -> SUBMITTED|OPEN
     on challenge or replica mismatch, and OPEN (or ASSIGNED, inside its decline
     window) -> CANCELLED by the client, or when a shard has been declined
     MAX_DECLINES times (it then fails and its budget goes back). A lease ends when
     its result is submitted; the asset's stake answers for the result. Every
     transition emits an event, so the whole market can be rebuilt from logs.
     Disputes are run by the DisputeCourt (COURT), which alone may open them, rule on
     them and credit their bonds and slashes; the market only applies its rulings.
     The market owes (settlement.owed) exactly its escrows, credits and held bonds,
     and its token balance never falls below that.
     Paused (market_params.pause): post_job and assign stop and reclaims do not
     slash; results, finalization, cancels, disputes and withdrawals go on.
"""

from ethereum.ercs import IERC20

from .interfaces import IComputeAsset
from .interfaces import IKeeperRegistry
from .modules import asset_spec
from .modules import ecdsa
from .modules import eip712
from .modules import market_params
from .modules import ownable_2step as ownable
from .modules import settlement

initializes: ownable
initializes: eip712
initializes: settlement
initializes: market_params[ownable := ownable]

exports: (
    ownable.owner,
    ownable.pending_owner,
    ownable.transfer_ownership,
    ownable.accept_ownership,
    eip712.DOMAIN_SEPARATOR,
    settlement.TOKEN,
    settlement.credits,
    settlement.owed,
    settlement.withdraw,
    settlement.withdraw_many,
    market_params.__interface__,
)

# @dev What the market asks the attestation registry.
interface IAttestations:
    def attested(asset: uint256) -> bool: view


# ------------------------------------------------------------------ constants

MAX_SHARDS: constant(uint256) = 1024
MAX_REPLICATION: constant(uint256) = 5
# @dev Most results one `submit_results` records.
MAX_RESULTS: constant(uint256) = 64
# @dev Declines of one shard (any replica, any asset) after which it fails: a reason
#      that will not change (a bad image digest, an unfetchable manifest) would
#      otherwise have keepers assign it again and again.
MAX_DECLINES: constant(uint256) = 3
# @dev Adopted checkpoints of one replica that are paid for. A replica reclaimed
#      more often still resumes from its newest adopted checkpoint, but the leases
#      after the MAX_CONTRIBUTORS-th paid one are not paid for theirs.
MAX_CONTRIBUTORS: constant(uint256) = 3

# @dev ComputeAsset.end_lease stages.
_LEASE_CLOSED: constant(uint256) = 0
_LEASE_RESULT: constant(uint256) = 1
_RESULT_CLOSED: constant(uint256) = 2

# @dev Replica states.
OPEN: constant(uint8) = 0
ASSIGNED: constant(uint8) = 1
SUBMITTED: constant(uint8) = 2
DISPUTED: constant(uint8) = 3
FINALIZED: constant(uint8) = 4
CANCELLED: constant(uint8) = 5

# @dev Verification modes. Replicated jobs (replication > 1) must use REPLICATED.
#      ZK results arrive through PROVER with a proof the chain checked, and are final at once.
#      TEE jobs go only to assets ATTESTATIONS holds attested; their results' windows end
#      early once it verified their evidence.
OPTIMISTIC: constant(uint8) = 0
REPLICATED: constant(uint8) = 1
SPOT_CHECK: constant(uint8) = 2
ZK: constant(uint8) = 3
TEE: constant(uint8) = 4

_BPS: constant(uint256) = 10000
_CANCEL_TYPEHASH: constant(bytes32) = keccak256("CancelShard(uint256 job,uint256 shard,uint256 validBefore)")
_RECEIPT_TYPEHASH: constant(bytes32) = keccak256(
    "ExecutionReceipt(uint256 job,uint256 shard,uint256 replica,uint256 lease,uint256 asset,bytes32 manifest,bytes32 outputRoot,uint256 gpuSeconds,uint256 exitCode)"
)
_RECEIPTS_TYPEHASH: constant(bytes32) = keccak256(
    "ExecutionReceipts(ExecutionReceipt[] receipts)ExecutionReceipt(uint256 job,uint256 shard,uint256 replica,uint256 lease,uint256 asset,bytes32 manifest,bytes32 outputRoot,uint256 gpuSeconds,uint256 exitCode)"
)
_CHECKPOINT_TYPEHASH: constant(bytes32) = keccak256(
    "Checkpoint(uint256 job,uint256 shard,uint256 replica,uint256 lease,uint256 asset,bytes32 manifest,bytes32 checkpoint,uint256 gpuSeconds)"
)

_MASK8: constant(uint256) = 2**8 - 1
_MASK16: constant(uint256) = 2**16 - 1
_MASK24: constant(uint256) = 2**24 - 1
_MASK32: constant(uint256) = 2**32 - 1
_MASK40: constant(uint256) = 2**40 - 1
_MASK64: constant(uint256) = 2**64 - 1
_MASK80: constant(uint256) = 2**80 - 1

# ------------------------------------------------------------------ types


struct Requirements:
    min_vram_mib: uint32  # VRAM per GPU an asset needs, MiB
    gpu_count: uint8  # GPUs an asset needs (0: CPU work)
    max_price: uint64  # highest price per GPU-second accepted, token base units
    max_gpu_seconds: uint32  # most GPU-seconds paid per shard replica
    deadline: uint64  # every lease must end by this unix time
    shard_count: uint16  # independent sub-tasks
    replication: uint8  # agents that run each shard (1 to 5)
    verification: uint8  # OPTIMISTIC, REPLICATED, SPOT_CHECK, ZK or TEE
    cpu_cores: uint16  # CPU cores each lease holds (at least 1)
    memory_mib: uint32  # memory each lease holds, MiB (at least 1)
    disk_mib: uint32  # disk each lease may write, MiB (at least 1)


# @dev A result as an agent submits it; its ExecutionReceipt adds the lease, asset and manifest.
struct Result:
    job: uint256
    shard: uint256
    replica: uint256
    output_root: bytes32  # Merkle root over the output files (logs included)
    gpu_seconds: uint32  # metered use (see submit_result)
    exit_code: uint8


struct Job:
    client: address
    escrow: uint256  # budget not yet paid out, token base units
    unfinished: uint16  # shards neither finalized nor cancelled
    manifest_hash: bytes32  # keccak256 of the canonical JSON manifest
    requirements: Requirements
    keeper_fee_bps: uint16  # fees as when the job was posted
    protocol_fee_bps: uint16


# @dev A job's mutable part: one storage word, the only job word written after posting.
struct Head:
    client: address
    escrow: uint80
    unfinished: uint16


struct Replica:
    asset: uint32  # 0 while never assigned
    keeper: uint24  # keeper id of the assigner
    state: uint8
    lease: uint16  # how many times this replica has been assigned; binds receipts
    price: uint64  # the asset's price when assigned, per GPU-second
    deadline: uint40  # ASSIGNED: lease end; SUBMITTED, DISPUTED: challenge window end
    since: uint40  # when the current state began (DISPUTED: when the dispute opened)
    gpu_seconds: uint32  # metered use, capped at max_gpu_seconds


# @dev Where a replica resumes, and what its earlier leases contributed.
struct Checkpoints:
    resume_point: bytes32  # keccak256 of the checkpoint a new lease starts from (zero: fresh)
    pending: bytes32  # the newest checkpoint committed under `pending_lease`
    pending_lease: uint16  # the lease `pending` belongs to (zero: none)
    pending_gpu_seconds: uint32  # that lease's metered use up to `pending`
    contributors: uint8  # adopted checkpoints that will be paid (at most MAX_CONTRIBUTORS)
    contributed: uint32  # their GPU-seconds, at most max_gpu_seconds


# ------------------------------------------------------------------ storage

# @dev The compute asset registry, which also holds the assets' stakes.
ASSETS: public(immutable(IComputeAsset))
# @dev The keeper registry.
KEEPERS: public(immutable(IKeeperRegistry))
# @dev The dispute court: the only caller of open_dispute, rule and credit.
COURT: public(immutable(address))
# @dev The model registry: the only submitter of ZK jobs' proven results.
PROVER: public(immutable(address))
# @dev The attestation registry: says which assets are attested, and shortens attested results' windows.
ATTESTATIONS: public(immutable(IAttestations))
# @dev The batch relay, trusted to name the keeper of an assignment it forwards.
RELAY: public(immutable(address))
# @dev The authorization funder: the only poster of jobs funded by EIP-3009 authorizations.
FUNDER: public(immutable(address))

# @dev Number of jobs posted; ids run from 1 to this.
job_count: public(uint256)
# @dev job -> Head, packed: client 0-159, escrow 160-239, unfinished 240-255.
_job_head: HashMap[uint256, uint256]
# @dev job -> Requirements and fees, packed (see _pack_terms); never changes.
_job_terms: HashMap[uint256, uint256]
# @dev job -> what each of its leases holds on an asset, the argument of ComputeAsset's
#      open_lease and end_lease: gpus 0-7, cpu_cores 8-23, memory_mib 24-55, disk_mib 56-87.
_job_demand: HashMap[uint256, uint256]
# @dev job -> manifest hash.
_manifests: HashMap[uint256, bytes32]
# @dev job -> shard * MAX_REPLICATION + replica -> Replica, packed.
_replicas: HashMap[uint256, HashMap[uint256, uint256]]
# @dev job -> shard * MAX_REPLICATION + replica -> Merkle root of the submitted outputs.
_output_roots: HashMap[uint256, HashMap[uint256, bytes32]]
# @dev keccak256 of a result batch's receipt hashes -> whether `submit_results` recorded it.
result_batches: public(HashMap[bytes32, bool])
# @dev job -> shard -> declines so far.
_declines: HashMap[uint256, HashMap[uint256, uint256]]
# @dev job -> shard * MAX_REPLICATION + replica -> the adopted checkpoint a new lease resumes from.
_resume_points: HashMap[uint256, HashMap[uint256, bytes32]]
# @dev job -> shard * MAX_REPLICATION + replica -> the newest checkpoint committed by a lease.
_pending_checkpoints: HashMap[uint256, HashMap[uint256, bytes32]]
# @dev job -> shard * MAX_REPLICATION + replica -> packed: pending lease 0-15, pending
#      gpu_seconds 16-47, contributors 48-55, contributed gpu_seconds 56-87.
_checkpoint_books: HashMap[uint256, HashMap[uint256, uint256]]
# @dev job -> (shard * MAX_REPLICATION + replica) * MAX_CONTRIBUTORS + i -> contribution i,
#      packed: asset 0-31, keeper id 32-55, price 56-119, gpu_seconds 120-151.
_contributions: HashMap[uint256, HashMap[uint256, uint256]]

# ------------------------------------------------------------------ events


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


event ShardDeclined:
    job: indexed(uint256)
    shard: uint256
    replica: uint256
    asset: indexed(uint256)
    reason: bytes32


event ResultSubmitted:
    job: indexed(uint256)
    shard: uint256
    replica: uint256
    asset: indexed(uint256)
    output_root: bytes32
    gpu_seconds: uint256
    exit_code: uint256
    challenge_end: uint256


event ResultsCommitted:
    agent: indexed(address)
    receipts: DynArray[bytes32, MAX_RESULTS]  # ExecutionReceipt struct hashes, in the batch's order


event DisputeOpened:
    job: indexed(uint256)
    shard: uint256
    challenger: indexed(address)  # zero when replicas disagreed by themselves
    bond: uint256


event ReplicaRejected:
    job: indexed(uint256)
    shard: uint256
    replica: uint256
    asset: indexed(uint256)
    slashed: uint256


event DisputeResolved:
    job: indexed(uint256)
    shard: uint256
    facilitator: indexed(address)
    rejected_replicas: uint256  # bit r set: replica r was found wrong
    upheld: uint256
    rejected: uint256


event ShardReclaimed:
    job: indexed(uint256)
    shard: uint256
    replica: uint256
    asset: indexed(uint256)
    caller: indexed(address)
    slashed: uint256


event ShardCancelled:
    job: indexed(uint256)
    shard: uint256
    replicas: uint256


event ShardFailed:
    job: indexed(uint256)
    shard: uint256
    declines: uint256


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


event CheckpointCommitted:
    job: indexed(uint256)
    shard: uint256
    replica: uint256
    asset: indexed(uint256)
    lease: uint256
    checkpoint: bytes32
    gpu_seconds: uint256


event CheckpointAdopted:
    job: indexed(uint256)
    shard: uint256
    replica: uint256
    asset: indexed(uint256)
    checkpoint: bytes32
    gpu_seconds: uint256  # credited to the contribution (zero: beyond MAX_CONTRIBUTORS or the cap)


event ContributionPaid:
    job: indexed(uint256)
    shard: uint256
    replica: uint256
    asset: indexed(uint256)
    provider: indexed(address)
    keeper: address
    gpu_seconds: uint256
    payment: uint256
    keeper_fee: uint256
    protocol_fee: uint256


event JobFinished:
    job: indexed(uint256)
    client: indexed(address)
    refund: uint256


# ------------------------------------------------------------------ constructor


@deploy
def __init__(
    token: IERC20,
    assets: IComputeAsset,
    keepers: IKeeperRegistry,
    court: address,
    prover: address,
    attestations: IAttestations,
    relay: address,
    funder: address,
    treasury: address,
    params: market_params.Parameters,
):
    """
    @param token The payment token (USDC, or TestToken locally).
    @param assets The ComputeAsset registry.
    @param keepers The keeper registry.
    @param court The DisputeCourt, deployed right after this contract.
    @param prover The ModelRegistry, which checks ZK proofs, deployed after the court.
    @param attestations The AttestationRegistry, deployed after the model registry.
    @param relay The BatchRelay, whose forwarded assignments name their keeper.
    @param funder The AuthorizationFunder, deployed after the attestation registry.
    @param treasury Receives protocol fees.
    @param params Initial fees, windows and minimums.
    """
    ownable.__init__()
    eip712.__init__("computenet JobMarket", "1")
    settlement.__init__(token)
    market_params.__init__(treasury, params)
    assert court != empty(address) and prover != empty(address) and attestations.address != empty(address) and funder != empty(address), "job_market: zero court, prover, attestations or funder"
    ASSETS = assets
    KEEPERS = keepers
    COURT = court
    PROVER = prover
    ATTESTATIONS = attestations
    RELAY = relay
    FUNDER = funder


# ------------------------------------------------------------------ clients


@external
@nonreentrant
def post_job(manifest_hash: bytes32, req: Requirements) -> uint256:
    """
    @notice Posts a job and escrows its maximum cost (see `quote`); approve first.
    @param manifest_hash keccak256 of the job's canonical JSON manifest.
    @param req The job's requirements.
    @return The job id.
    """
    job_id: uint256 = 0
    budget: uint256 = 0
    job_id, budget = self._post_job(msg.sender, manifest_hash, req)
    settlement._pull(msg.sender, budget)
    return job_id


@external
@nonreentrant
def post_job_with_permit(
    manifest_hash: bytes32, req: Requirements, permit_deadline: uint256, v: uint8, r: bytes32, s: bytes32
) -> uint256:
    """
    @notice Posts a job, approving its budget with an EIP-2612 permit in the same call.
    @dev A permit that was front-run (already used) is ignored: the allowance it
         set is what the transfer needs, and the transfer still checks it.
    @param manifest_hash keccak256 of the job's canonical JSON manifest.
    @param req The job's requirements.
    @param permit_deadline The permit's deadline.
    @param v Permit signature v.
    @param r Permit signature r.
    @param s Permit signature s.
    @return The job id.
    """
    budget: uint256 = self._quote(req, market_params._settings())
    permitted: bool = raw_call(
        settlement.TOKEN.address,
        abi_encode(
            msg.sender,
            self,
            budget,
            permit_deadline,
            v,
            r,
            s,
            method_id=method_id("permit(address,address,uint256,uint256,uint8,bytes32,bytes32)"),
        ),
        revert_on_failure=False,
    )
    job_id: uint256 = 0
    job_id, budget = self._post_job(msg.sender, manifest_hash, req)
    settlement._pull(msg.sender, budget)
    return job_id


@external
def post_job_for(client: address, manifest_hash: bytes32, req: Requirements) -> uint256:
    """
    @notice Posts a job for `client`, escrowing tokens already here and owed to no
            one (FUNDER only: the tokens of the client's EIP-3009 authorization,
            which FUNDER checked or had the token move here).
    @param client Who the job belongs to.
    @param manifest_hash keccak256 of the job's canonical JSON manifest.
    @param req The job's requirements.
    @return The job id.
    """
    job_id: uint256 = 0
    budget: uint256 = 0
    job_id, budget = self._post_job(client, manifest_hash, req)
    self._take_surplus(budget)
    return job_id


@external
def credit_surplus(account: address, amount: uint256):
    """
    @notice Credits `account` tokens already here and owed to no one (FUNDER only:
            an authorization executed at the token that funded no job).
    @param account Who may withdraw them.
    @param amount Token base units.
    """
    self._take_surplus(amount)
    settlement._credit(account, amount)


@external
def cancel(job_id: uint256, shard: uint256):
    """
    @notice Cancels a shard's replicas that have not started: open ones, and
            assigned ones still inside their decline window (their lease closes
            with no slash: its agent loses at most that window's work, and a
            cancelled replica's outputs are never served, so no one gets work
            done for free). Any time if no other
            replica is taken up, or after the deadline (when none can be assigned
            any more). The court relays a client's signed cancel
            (`DisputeCourt.cancel_with_signature`), for clients that send no
            transactions, such as x402 payers.
    @param job_id The job.
    @param shard The shard.
    """
    req: Requirements = self._terms(job_id)[0]
    assert msg.sender == self._head(job_id).client or msg.sender == COURT, "job_market: caller is not the client"
    self._check_shard(req.shard_count, shard)
    live: uint256 = self._close_open(job_id, shard, req)
    assert live == 0 or block.timestamp > convert(req.deadline, uint256), "job_market: shard already assigned"


# ------------------------------------------------------------------ keepers


@external
def assign(job_id: uint256, shard: uint256, asset: uint256) -> uint256:
    """
    @notice Leases a shard's next open replica to `asset`; active keepers only, directly
            or through RELAY's `assign_many`, which names the keeper that called it.
    @dev Enforces every hard constraint: asset active, staked, with an agent, unexpired
         at lease end, enough VRAM, enough GPUs, CPU cores, memory and disk free of its
         other leases (ComputeAsset checks all but the GPUs' total), price within
         the cap, attested for a TEE job, lease within the deadline, and no other replica of the shard on the
         same asset.
    @param job_id The job.
    @param shard The shard.
    @param asset The compute asset.
    @return The replica index leased.
    """
    settings: market_params.Settings = market_params._settings()
    market_params._check_not_paused(settings)
    keeper: address = msg.sender
    if msg.sender == RELAY:  # the relay appends its caller, the keeper (as ERC-2771)
        keeper = extract32(slice(msg.data, 100, 32), 0, output_type=address)
    keeper_id: uint24 = staticcall KEEPERS.active_keeper_id(keeper)
    req: Requirements = self._terms(job_id)[0]
    self._check_shard(req.shard_count, shard)
    assert asset <= _MASK32, "job_market: unknown asset"
    spec: asset_spec.Spec = asset_spec._unpack(
        extcall ASSETS.open_lease(asset, convert(settings.min_stake, uint256), self._job_demand[job_id])
    )
    assert spec.active, "job_market: asset is paused"
    assert spec.gpu_count >= req.gpu_count, "job_market: asset has too few gpus"
    assert spec.vram_mib >= req.min_vram_mib, "job_market: asset has too little vram"
    assert spec.price <= req.max_price, "job_market: asset price above cap"
    assert req.verification != TEE or staticcall ATTESTATIONS.attested(asset), "job_market: asset not attested"
    lease_end: uint256 = block.timestamp + self._lease_seconds(req, settings)
    assert lease_end <= convert(req.deadline, uint256), "job_market: lease would end after the deadline"
    assert lease_end <= convert(spec.expire, uint256), "job_market: asset expires before the lease ends"

    slot: uint256 = MAX_REPLICATION
    for r: uint256 in range(convert(req.replication, uint256), bound=MAX_REPLICATION):
        other: Replica = self._replica(job_id, shard, r)
        if other.state == OPEN:
            if slot == MAX_REPLICATION:
                slot = r
        elif other.state != CANCELLED:
            assert convert(other.asset, uint256) != asset, "job_market: asset already runs this shard"
    assert slot != MAX_REPLICATION, "job_market: shard has no open replica"

    rep: Replica = self._replica(job_id, shard, slot)
    rep.asset = convert(asset, uint32)
    rep.keeper = keeper_id
    rep.state = ASSIGNED
    rep.lease += 1
    rep.price = spec.price
    rep.deadline = convert(lease_end, uint40)
    rep.since = convert(block.timestamp, uint40)
    rep.gpu_seconds = 0
    self._store_replica(job_id, shard, slot, rep)
    log ShardAssigned(
        job=job_id,
        shard=shard,
        replica=slot,
        asset=asset,
        keeper=keeper,
        lease=convert(rep.lease, uint256),
        lease_end=lease_end,
        price=convert(spec.price, uint256),
    )
    return slot


@external
def reclaim(job_id: uint256, shard: uint256, replica: uint256):
    """
    @notice Takes back a replica whose lease ran out without a result: part of the
            asset's stake is slashed to the treasury and the replica reopens for
            another asset. A checkpoint the lease committed (`commit_checkpoint`) is
            adopted: the replica's next lease resumes from it, and the lease's
            GPU-seconds up to it are paid at its price when the shard finalizes
            (capped so all of a replica's GPU-seconds stay within max_gpu_seconds;
            only the first MAX_CONTRIBUTORS adopted checkpoints are paid, later ones
            are still resumed from but earn nothing). The slash applies all the same. No one who can trigger a reclaim gains from it (a keeper
            that is also the client would otherwise profit from piling leases onto
            an unresponsive asset). While the market is paused the replica reopens
            without a slash, so no one is punished for an outage and the client can
            still cancel after the deadline.
    @param job_id The job.
    @param shard The shard.
    @param replica The replica.
    """
    settings: market_params.Settings = market_params._settings()
    req: Requirements = self._terms(job_id)[0]
    self._check_replica(req, shard, replica)
    rep: Replica = self._replica(job_id, shard, replica)
    assert rep.state == ASSIGNED, "job_market: replica not assigned"
    assert block.timestamp > convert(rep.deadline, uint256), "job_market: lease not expired"
    asset: uint256 = convert(rep.asset, uint256)
    rep.state = OPEN
    rep.since = convert(block.timestamp, uint40)
    self._store_replica(job_id, shard, replica, rep)
    index: uint256 = self._index(shard, replica)
    book: uint256 = self._checkpoint_books[job_id][index]
    if book & _MASK16 == convert(rep.lease, uint256):
        # The lease committed a checkpoint: the replica resumes from it, and the
        # lease's metered use up to it is owed if the shard finalizes.
        checkpoint: bytes32 = self._pending_checkpoints[job_id][index]
        self._resume_points[job_id][index] = checkpoint
        count: uint256 = (book >> 48) & _MASK8
        contributed: uint256 = book >> 56
        paid: uint256 = 0
        if count < MAX_CONTRIBUTORS:
            paid = min((book >> 16) & _MASK32, convert(req.max_gpu_seconds, uint256) - contributed)
        if paid > 0:
            self._contributions[job_id][index * MAX_CONTRIBUTORS + count] = (
                asset | convert(rep.keeper, uint256) << 32 | convert(rep.price, uint256) << 56 | paid << 120
            )
            count += 1
            contributed += paid
        self._checkpoint_books[job_id][index] = count << 48 | contributed << 56
        log CheckpointAdopted(job=job_id, shard=shard, replica=replica, asset=asset, checkpoint=checkpoint, gpu_seconds=paid)
    slash_bps: uint256 = 0 if settings.paused else convert(settings.slash_bps, uint256)
    slashed: uint256 = extcall ASSETS.end_lease(asset, self._job_demand[job_id], _LEASE_CLOSED, slash_bps)
    settlement._received(slashed)
    settlement._credit(market_params.treasury, slashed)
    log ShardReclaimed(job=job_id, shard=shard, replica=replica, asset=asset, caller=msg.sender, slashed=slashed)


@external
def finalize(job_id: uint256, shard: uint256):
    """
    @notice Settles a shard once every live replica has submitted and its challenge
            window has closed. Each replica's provider is credited price ×
            GPU-seconds, its keeper and the protocol their fees, and so is each
            earlier lease of the replica whose checkpoint was adopted (its
            contributions: only now, when the result resumed from it is final); the
            job's last shard refunds the client the rest.
    @dev Roots are not compared here: replicas that disagree are disputed when the
         last one submits (or a cancel leaves only submitted ones), and a replica that
         submits during a dispute is ruled on with it. Only the court returns them to
         SUBMITTED: by a ruling (every one left then has the valid root, unless the
         arbiter could not reproduce the job) or by the default outcome, under which
         every result stands and is paid.
    @param job_id The job.
    @param shard The shard.
    """
    req: Requirements = empty(Requirements)
    keeper_bps: uint16 = 0
    protocol_bps: uint16 = 0
    req, keeper_bps, protocol_bps = self._terms(job_id)
    self._check_shard(req.shard_count, shard)
    replication: uint256 = convert(req.replication, uint256)
    submitted: bool = False
    for r: uint256 in range(replication, bound=MAX_REPLICATION):
        rep: Replica = self._replica(job_id, shard, r)
        if rep.state == CANCELLED:
            continue
        assert rep.state == SUBMITTED, "job_market: shard not ready"
        assert block.timestamp > convert(rep.deadline, uint256), "job_market: challenge window open"
        submitted = True
    assert submitted, "job_market: shard not ready"

    head: Head = self._head(job_id)
    for r: uint256 in range(replication, bound=MAX_REPLICATION):
        rep: Replica = self._replica(job_id, shard, r)
        if rep.state != SUBMITTED:
            continue
        rep.state = FINALIZED
        rep.since = convert(block.timestamp, uint40)
        self._store_replica(job_id, shard, r, rep)
        asset: uint256 = convert(rep.asset, uint256)
        extcall ASSETS.end_lease(asset, 0, _RESULT_CLOSED, 0)
        index: uint256 = self._index(shard, r)
        for i: uint256 in range((self._contributed(job_id, shard, r, rep.lease) >> 48) & _MASK8, bound=MAX_CONTRIBUTORS):
            work: uint256 = self._contributions[job_id][index * MAX_CONTRIBUTORS + i]
            head.escrow -= self._pay(job_id, shard, r, work, keeper_bps, protocol_bps, True)
        head.escrow -= self._pay(
            job_id,
            shard,
            r,
            asset | convert(rep.keeper, uint256) << 32 | convert(rep.price, uint256) << 56 | convert(rep.gpu_seconds, uint256) << 120,
            keeper_bps,
            protocol_bps,
            False,
        )
    self._shard_done(job_id, head)


# ------------------------------------------------------------------ agents


@external
def decline(job_id: uint256, shard: uint256, replica: uint256, reason: bytes32):
    """
    @notice Lets the asset's agent hand back an assignment it cannot run, without
            penalty, within the decline window; the replica reopens. The shard's
            MAX_DECLINES-th decline fails it: its open replicas are cancelled and
            its budget goes back to the client.
    @param job_id The job.
    @param shard The shard.
    @param replica The replica.
    @param reason A short reason, e.g. b"image not found" as bytes32.
    """
    req: Requirements = self._terms(job_id)[0]
    self._check_replica(req, shard, replica)
    rep: Replica = self._replica(job_id, shard, replica)
    assert rep.state == ASSIGNED, "job_market: replica not assigned"
    asset: uint256 = convert(rep.asset, uint256)
    assert msg.sender == staticcall ASSETS.agentOf(asset), "job_market: caller is not the asset's agent"
    decline_end: uint256 = convert(rep.since, uint256) + convert(market_params._settings().decline_window, uint256)
    assert block.timestamp <= decline_end, "job_market: decline window closed"
    rep.state = OPEN
    rep.since = convert(block.timestamp, uint40)
    self._store_replica(job_id, shard, replica, rep)
    extcall ASSETS.end_lease(asset, self._job_demand[job_id], _LEASE_CLOSED, 0)
    log ShardDeclined(job=job_id, shard=shard, replica=replica, asset=asset, reason=reason)
    declines: uint256 = self._declines[job_id][shard] + 1
    self._declines[job_id][shard] = declines
    if declines >= MAX_DECLINES:
        log ShardFailed(job=job_id, shard=shard, declines=declines)
        self._close_open(job_id, shard, req)


@external
def submit_result(
    job_id: uint256,
    shard: uint256,
    replica: uint256,
    output_root: bytes32,
    gpu_seconds: uint32,
    exit_code: uint8,
    signature: Bytes[65],
):
    """
    @notice Records a replica's result. Anyone may relay it; the EIP-712
            ExecutionReceipt must be signed by the asset's agent key. A failed
            container is still paid for its metered use. A ZK job's successful
            result comes only from PROVER, once its proof verified, and has no
            challenge window; a failed one has nothing to prove and takes the
            optimistic path.
    @dev When the last replica of a replicated shard arrives and the roots differ,
         a dispute opens by itself.
    @param job_id The job.
    @param shard The shard.
    @param replica The replica.
    @param output_root Merkle root over the output files (logs included).
    @param gpu_seconds Metered GPU-seconds (CPU-seconds for CPU work), at most the
           time since assignment × GPUs; payment is capped at the job's maximum
           less what the replica's adopted checkpoints contributed.
    @param exit_code The container's exit code.
    @param signature The agent's 65-byte receipt signature (r ‖ s ‖ v).
    """
    req: Requirements = self._terms(job_id)[0]
    challenge_end: uint256 = block.timestamp + convert(market_params._settings().challenge_window, uint256)
    if req.verification == ZK and exit_code == 0:
        assert msg.sender == PROVER, "job_market: zk result without its proof"
        challenge_end = block.timestamp - 1  # proven: the window closed before it opened, final in this block
    asset: uint256 = 0
    receipt: bytes32 = empty(bytes32)
    asset, receipt = self._record_result(
        Result(job=job_id, shard=shard, replica=replica, output_root=output_root, gpu_seconds=gpu_seconds, exit_code=exit_code),
        req,
        challenge_end,
    )
    self._check_agent(receipt, signature, staticcall ASSETS.agentOf(asset))
    self._output_roots[job_id][self._index(shard, replica)] = output_root
    # The lease ends here, so the asset can take its next one at once; the stake
    # stays locked while this result can still be challenged.
    extcall ASSETS.end_lease(asset, self._job_demand[job_id], _LEASE_RESULT, 0)
    if req.replication > 1:
        self._dispute_if_replicas_disagree(job_id, shard, convert(req.replication, uint256))


@external
def submit_results(results: DynArray[Result, MAX_RESULTS], signature: Bytes[65]) -> bytes32:
    """
    @notice Records several results of one agent, all or none, under one EIP-712
            ExecutionReceipts signature by the agent's key over their receipts
            (anyone may relay it). Only for single-replica OPTIMISTIC and
            SPOT_CHECK jobs: their roots are not stored one by one but as one
            commitment per batch (ResultsCommitted logs its receipt hashes, and
            ResultSubmitted each result), so `output_root` reads zero for them;
            DisputeCourt.reveal_result puts one on chain when a ruling needs it.
    @param results Up to MAX_RESULTS results, of assets that share one agent.
    @param signature The agent's 65-byte signature (r ‖ s ‖ v).
    @return The batch's commitment: keccak256 of its receipt hashes, in order.
    """
    receipts: DynArray[bytes32, MAX_RESULTS] = []
    agent: address = empty(address)
    challenge_end: uint256 = block.timestamp + convert(market_params._settings().challenge_window, uint256)
    req: Requirements = empty(Requirements)
    # Consecutive results of one job on one asset (a run) read the job's terms, ask the
    # asset's agent and end their leases at the asset once.
    job_id: uint256 = 0
    asset: uint256 = 0
    run: uint256 = 0
    for result: Result in results:
        if result.job != job_id:
            req = self._terms(result.job)[0]
            assert req.verification == OPTIMISTIC or req.verification == SPOT_CHECK, "job_market: result cannot be batched"
        leased: uint256 = 0
        receipt: bytes32 = empty(bytes32)
        leased, receipt = self._record_result(result, req, challenge_end)
        receipts.append(receipt)
        if leased != asset or result.job != job_id:
            self._end_results(asset, job_id, run)
            if leased != asset:
                owner: address = staticcall ASSETS.agentOf(leased)
                assert agent == empty(address) or owner == agent, "job_market: results of more than one agent"
                agent = owner
            asset = leased
            job_id = result.job
            run = 0
        run += 1
    self._end_results(asset, job_id, run)
    commitment: bytes32 = self._commitment(receipts)
    self.result_batches[commitment] = True
    self._check_agent(keccak256(abi_encode(_RECEIPTS_TYPEHASH, commitment)), signature, agent)
    log ResultsCommitted(agent=agent, receipts=receipts)
    return commitment


@external
def shorten_window(job_id: uint256, shard: uint256, replica: uint256, end: uint256):
    """
    @notice Ends a TEE result's challenge window at `end` instead; only ATTESTATIONS,
            once an attestor's verdict on the result's evidence is recorded there.
    @dev Only shortens, only a submitted result: a dispute already open runs its course.
    @param job_id The job.
    @param shard The shard.
    @param replica The replica.
    @param end The new window end, before the current one.
    """
    assert msg.sender == ATTESTATIONS.address, "job_market: not the attestation registry"
    rep: Replica = self._replica(job_id, shard, replica)
    assert rep.state == SUBMITTED and end < convert(rep.deadline, uint256), "job_market: no window to shorten"
    rep.deadline = convert(end, uint40)
    self._store_replica(job_id, shard, replica, rep)


@external
def commit_checkpoint(
    job_id: uint256, shard: uint256, replica: uint256, checkpoint: bytes32, gpu_seconds: uint32, signature: Bytes[65]
):
    """
    @notice Records the newest checkpoint of a replica's current lease, so that if
            the lease runs out its work is resumed (and paid) rather than lost.
            Anyone may relay it: the EIP-712 Checkpoint must be signed by the asset's
            agent key for this lease. Allowed while the replica is assigned, also
            after its lease deadline until it is reclaimed, so a keeper can relay
            the last heartbeat's checkpoint before reclaiming.
    @dev A checkpoint is kept per replica and bound to its lease: a later lease,
         a declined lease or one whose result was rejected never matches it, so it
         is adopted only by `reclaim` of the lease that committed it.
    @param job_id The job.
    @param shard The shard.
    @param replica The replica.
    @param checkpoint keccak256 of the checkpoint file's bytes.
    @param gpu_seconds The lease's metered GPU-seconds (CPU-seconds for CPU work) up
           to the checkpoint: at most the lease's time (to its deadline) × GPUs, and
           more than the lease's last committed checkpoint.
    @param signature The agent's 65-byte Checkpoint signature (r ‖ s ‖ v).
    """
    req: Requirements = self._terms(job_id)[0]
    self._check_replica(req, shard, replica)
    rep: Replica = self._replica(job_id, shard, replica)
    assert rep.state == ASSIGNED, "job_market: replica not assigned"
    assert checkpoint != empty(bytes32), "job_market: empty checkpoint"
    assert convert(gpu_seconds, uint256) <= (
        min(block.timestamp, convert(rep.deadline, uint256)) - convert(rep.since, uint256)
    ) * max(convert(req.gpu_count, uint256), 1), "job_market: gpu_seconds exceed the lease's time"
    index: uint256 = self._index(shard, replica)
    book: uint256 = self._checkpoint_books[job_id][index]
    lease: uint256 = convert(rep.lease, uint256)
    last: uint256 = 0
    if book & _MASK16 == lease:
        last = (book >> 16) & _MASK32
    assert convert(gpu_seconds, uint256) > last, "job_market: checkpoint not newer"
    asset: uint256 = convert(rep.asset, uint256)
    digest: bytes32 = eip712._hash_typed(
        keccak256(
            abi_encode(
                _CHECKPOINT_TYPEHASH,
                job_id,
                shard,
                replica,
                lease,
                asset,
                self._manifests[job_id],
                checkpoint,
                convert(gpu_seconds, uint256),
            )
        )
    )
    signer: address = ecdsa._recover(digest, signature)
    assert signer != empty(address) and signer == staticcall ASSETS.agentOf(
        asset
    ), "job_market: checkpoint not signed by the asset's agent"
    self._pending_checkpoints[job_id][index] = checkpoint
    self._checkpoint_books[job_id][index] = (book >> 48) << 48 | lease | convert(gpu_seconds, uint256) << 16
    log CheckpointCommitted(
        job=job_id,
        shard=shard,
        replica=replica,
        asset=asset,
        lease=lease,
        checkpoint=checkpoint,
        gpu_seconds=convert(gpu_seconds, uint256),
    )


# ------------------------------------------------------------------ disputes (the court's hooks)


@external
@nonreentrant
def open_dispute(job_id: uint256, shard: uint256, challenger: address, bond: uint256):
    """
    @notice Disputes every replica of a shard still inside its challenge window and
            takes the challenger's bond (court only; approve this market first).
    @dev The replicas keep their challenge end in `deadline`; `since` records when
         the dispute opened, which the court's ruling deadline counts from.
    @param job_id The job.
    @param shard The shard.
    @param challenger Who challenges; its bond is pulled from it.
    @param bond The bond, token base units.
    """
    self._check_court()
    req: Requirements = self._terms(job_id)[0]
    self._check_shard(req.shard_count, shard)
    disputed: uint256 = 0
    for r: uint256 in range(convert(req.replication, uint256), bound=MAX_REPLICATION):
        rep: Replica = self._replica(job_id, shard, r)
        assert rep.state != DISPUTED, "job_market: dispute already open"
        if rep.state == SUBMITTED and block.timestamp <= convert(rep.deadline, uint256):
            rep.state = DISPUTED
            rep.since = convert(block.timestamp, uint40)
            self._store_replica(job_id, shard, r, rep)
            disputed += 1
    assert disputed > 0, "job_market: nothing to challenge"
    settlement._pull(challenger, bond)
    log DisputeOpened(job=job_id, shard=shard, challenger=challenger, bond=bond)


@external
def rule(
    job_id: uint256, shard: uint256, rejected_replicas: uint256, extension: uint256, arbiter: address
) -> (uint256, DynArray[address, MAX_REPLICATION]):
    """
    @notice Applies a ruling to a disputed shard (court only). Each submitted or
            disputed replica whose bit is set in `rejected_replicas` is slashed and
            reopens; every other one stands (a zero mask: no one found at fault).
            A standing replica's challenge window is extended by `extension`, so a
            ruling never closes it early for anyone else.
    @dev The slashed tokens arrive here owed to no one yet; the court credits them.
    @param job_id The job.
    @param shard The shard.
    @param rejected_replicas Bit r set: replica r was found wrong.
    @param extension Seconds the dispute was open.
    @param arbiter Who ruled (zero for the default outcome), for the log.
    @return Tokens slashed, and the owners of the upheld replicas that were
            disputed, in replica order (the counts are in DisputeResolved).
    """
    self._check_court()
    req: Requirements = self._terms(job_id)[0]
    self._check_shard(req.shard_count, shard)
    slash_bps: uint256 = convert(market_params._settings().slash_bps, uint256)
    upheld: uint256 = 0
    rejected: uint256 = 0
    slashed: uint256 = 0
    owners: DynArray[address, MAX_REPLICATION] = []
    disputed: bool = False
    for r: uint256 in range(convert(req.replication, uint256), bound=MAX_REPLICATION):
        rep: Replica = self._replica(job_id, shard, r)
        was_disputed: bool = rep.state == DISPUTED
        if not was_disputed and rep.state != SUBMITTED:
            continue
        disputed = disputed or was_disputed
        asset: uint256 = convert(rep.asset, uint256)
        rep.since = convert(block.timestamp, uint40)
        if (rejected_replicas >> r) & 1 == 0:
            rep.state = SUBMITTED
            rep.deadline = convert(convert(rep.deadline, uint256) + extension, uint40)
            self._store_replica(job_id, shard, r, rep)
            upheld += 1
            if was_disputed:
                owners.append(staticcall ASSETS.ownerOf(asset))
        else:
            rep.state = OPEN
            self._store_replica(job_id, shard, r, rep)
            # Its next lease's result brings its own root (or, batched, none until revealed).
            self._output_roots[job_id][self._index(shard, r)] = empty(bytes32)
            lost: uint256 = extcall ASSETS.end_lease(asset, 0, _RESULT_CLOSED, slash_bps)
            slashed += lost
            rejected += 1
            log ReplicaRejected(job=job_id, shard=shard, replica=r, asset=asset, slashed=lost)
    assert disputed, "job_market: no open dispute"
    settlement._received(slashed)
    log DisputeResolved(
        job=job_id,
        shard=shard,
        facilitator=arbiter,
        rejected_replicas=rejected_replicas,
        upheld=upheld,
        rejected=rejected,
    )
    return slashed, owners


@external
def credit(account: address, amount: uint256):
    """
    @notice Credits a dispute's bond or slash proceeds to `account` (court only).
    @dev Only tokens already here and owed (a held bond, a slash received in
         `rule`) are credited this way, so `owed` does not change.
    @param account Who may withdraw them.
    @param amount Token base units.
    """
    self._check_court()
    settlement._credit(account, amount)


# ------------------------------------------------------------------ views


@external
@view
def quote(req: Requirements) -> uint256:
    """
    @notice The budget `post_job` escrows: every replica at its price cap and
            GPU-second cap, plus keeper and protocol fees at today's rates.
    @param req The job's requirements.
    @return Token base units.
    """
    return self._quote(req, market_params._settings())


@external
@view
def job(job_id: uint256) -> Job:
    """
    @notice A job's client, escrow, progress, manifest hash, requirements and fees.
    @param job_id The job.
    @return The job.
    """
    req: Requirements = empty(Requirements)
    keeper_bps: uint16 = 0
    protocol_bps: uint16 = 0
    req, keeper_bps, protocol_bps = self._terms(job_id)
    demand: uint256 = self._job_demand[job_id]
    req.cpu_cores = convert((demand >> 8) & _MASK16, uint16)
    req.memory_mib = convert((demand >> 24) & _MASK32, uint32)
    req.disk_mib = convert((demand >> 56) & _MASK32, uint32)
    head: Head = self._head(job_id)
    return Job(
        client=head.client,
        escrow=convert(head.escrow, uint256),
        unfinished=head.unfinished,
        manifest_hash=self._manifests[job_id],
        requirements=req,
        keeper_fee_bps=keeper_bps,
        protocol_fee_bps=protocol_bps,
    )


@external
@view
def replica(job_id: uint256, shard: uint256, replica: uint256) -> Replica:
    """
    @notice One replica of a shard.
    @param job_id The job.
    @param shard The shard.
    @param replica The replica.
    @return Its state, asset, lease and metering.
    """
    self._check_replica(self._terms(job_id)[0], shard, replica)
    return self._replica(job_id, shard, replica)


@external
@view
def output_root(job_id: uint256, shard: uint256, replica: uint256) -> bytes32:
    """
    @notice The Merkle root a replica submitted: zero before any result, after its
            rejection, and for a batched result (see DisputeCourt.result_root).
    @return The root.
    """
    return self._output_roots[job_id][self._index(shard, replica)]


@external
@view
def checkpoint(job_id: uint256, shard: uint256, replica: uint256) -> Checkpoints:
    """
    @notice A replica's checkpoints: the resume point its next lease starts from,
            the newest one committed by a lease and not yet adopted, and what
            earlier leases contributed.
    @param job_id The job.
    @param shard The shard.
    @param replica The replica.
    @return Resume point, pending checkpoint with its lease and GPU-seconds, and the
            paid contributors' count and GPU-seconds.
    """
    self._check_replica(self._terms(job_id)[0], shard, replica)
    index: uint256 = self._index(shard, replica)
    book: uint256 = self._checkpoint_books[job_id][index]
    return Checkpoints(
        resume_point=self._resume_points[job_id][index],
        pending=self._pending_checkpoints[job_id][index] if book & _MASK16 != 0 else empty(bytes32),
        pending_lease=convert(book & _MASK16, uint16),
        pending_gpu_seconds=convert((book >> 16) & _MASK32, uint32),
        contributors=convert((book >> 48) & _MASK8, uint8),
        contributed=convert(book >> 56, uint32),
    )


# ------------------------------------------------------------------ internals


@internal
def _post_job(client: address, manifest_hash: bytes32, req: Requirements) -> (uint256, uint256):
    """
    @dev Checks the requirements, stores the job for `client` and logs it; returns
         the job id and its budget, which the caller must bring in.
    """
    settings: market_params.Settings = market_params._settings()
    market_params._check_not_paused(settings)
    assert manifest_hash != empty(bytes32), "job_market: empty manifest hash"
    assert req.shard_count > 0 and convert(req.shard_count, uint256) <= MAX_SHARDS, "job_market: shard count out of range"
    assert req.replication > 0 and convert(req.replication, uint256) <= MAX_REPLICATION, "job_market: replication out of range"
    assert req.verification <= TEE, "job_market: unknown verification mode"
    assert (req.verification == REPLICATED) == (req.replication > 1), "job_market: verification mode does not match replication"
    assert req.max_price > 0, "job_market: zero price cap"
    assert req.max_gpu_seconds > 0, "job_market: zero gpu-seconds"
    assert req.cpu_cores > 0 and req.memory_mib > 0 and req.disk_mib > 0, "job_market: zero cpu, memory or disk"
    assert convert(req.deadline, uint256) <= _MASK40, "job_market: deadline out of range"
    assert block.timestamp + self._lease_seconds(req, settings) <= convert(req.deadline, uint256), "job_market: deadline too soon"
    budget: uint256 = self._quote(req, settings)
    assert budget <= _MASK80, "job_market: budget too large"

    job_id: uint256 = self.job_count + 1
    self.job_count = job_id
    self._store_head(job_id, Head(client=client, escrow=convert(budget, uint80), unfinished=req.shard_count))
    self._job_terms[job_id] = self._pack_terms(req, settings.keeper_fee_bps, settings.protocol_fee_bps)
    self._job_demand[job_id] = self._pack_demand(req)
    self._manifests[job_id] = manifest_hash
    log JobPosted(
        job=job_id,
        client=client,
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
    return job_id, budget


@internal
@pure
def _quote(req: Requirements, settings: market_params.Settings) -> uint256:
    """
    @dev Every replica at its price and GPU-second caps, plus fees rounded down as at payment.
    """
    payment: uint256 = convert(req.max_price, uint256) * convert(req.max_gpu_seconds, uint256)
    per_replica: uint256 = (
        payment
        + payment * convert(settings.keeper_fee_bps, uint256) // _BPS
        + payment * convert(settings.protocol_fee_bps, uint256) // _BPS
    )
    return per_replica * convert(req.shard_count, uint256) * convert(req.replication, uint256)


@internal
@pure
def _lease_seconds(req: Requirements, settings: market_params.Settings) -> uint256:
    """
    @dev The GPU-seconds spread over the GPUs (rounded up), plus the set-up grace.
    """
    gpus: uint256 = max(convert(req.gpu_count, uint256), 1)
    return (convert(req.max_gpu_seconds, uint256) + gpus - 1) // gpus + convert(settings.lease_grace, uint256)


@internal
def _record_result(result: Result, req: Requirements, challenge_end: uint256) -> (uint256, bytes32):
    """
    @dev Checks a result against its replica's lease and records it, but for its root,
         signature and the lease's end at the asset, which the caller stores, checks and
         ends; returns the asset and the result's ExecutionReceipt struct hash.
    """
    self._check_replica(req, result.shard, result.replica)
    rep: Replica = self._replica(result.job, result.shard, result.replica)
    assert rep.state == ASSIGNED, "job_market: replica not assigned"
    assert block.timestamp <= convert(rep.deadline, uint256), "job_market: lease expired"
    assert result.output_root != empty(bytes32), "job_market: empty output root"
    # A claim can be no more than the lease's time so far on every GPU (CPU work: one).
    assert convert(result.gpu_seconds, uint256) <= (block.timestamp - convert(rep.since, uint256)) * max(
        convert(req.gpu_count, uint256), 1
    ), "job_market: gpu_seconds exceed the lease's time"
    asset: uint256 = convert(rep.asset, uint256)
    receipt: bytes32 = self._receipt_hash(result, rep.lease, asset)
    rep.state = SUBMITTED
    rep.since = convert(block.timestamp, uint40)
    rep.deadline = convert(challenge_end, uint40)
    # Earlier leases' adopted checkpoints take their share of the cap first.
    rep.gpu_seconds = min(
        result.gpu_seconds,
        req.max_gpu_seconds - convert(self._contributed(result.job, result.shard, result.replica, rep.lease) >> 56, uint32),
    )
    self._store_replica(result.job, result.shard, result.replica, rep)
    log ResultSubmitted(
        job=result.job,
        shard=result.shard,
        replica=result.replica,
        asset=asset,
        output_root=result.output_root,
        gpu_seconds=convert(result.gpu_seconds, uint256),
        exit_code=convert(result.exit_code, uint256),
        challenge_end=challenge_end,
    )
    return asset, receipt


@internal
def _end_results(asset: uint256, job_id: uint256, count: uint256):
    """
    @dev Ends `count` leases of the job on the asset with their results (none: nothing).
    """
    if count > 0:
        extcall ASSETS.end_results(asset, self._job_demand[job_id], count)


@internal
@view
def _receipt_hash(result: Result, lease: uint16, asset: uint256) -> bytes32:
    """
    @dev EIP-712 struct hash of a result's ExecutionReceipt; must match computenet.receipts.
    """
    return keccak256(
        abi_encode(
            _RECEIPT_TYPEHASH,
            result.job,
            result.shard,
            result.replica,
            convert(lease, uint256),
            asset,
            self._manifests[result.job],
            result.output_root,
            convert(result.gpu_seconds, uint256),
            convert(result.exit_code, uint256),
        )
    )


@internal
@pure
def _commitment(receipts: DynArray[bytes32, MAX_RESULTS]) -> bytes32:
    """
    @dev keccak256 of the receipt hashes packed in order: a batch's commitment, and the
         EIP-712 encoding of ExecutionReceipts' array.
    """
    assert len(receipts) > 0, "job_market: no results"
    return keccak256(slice(abi_encode(receipts), 64, 32 * len(receipts)))


@internal
@view
def _check_agent(struct_hash: bytes32, signature: Bytes[65], agent: address):
    """
    @dev Reverts unless `agent` signed the struct in this market's EIP-712 domain.
    """
    signer: address = ecdsa._recover(eip712._hash_typed(struct_hash), signature)
    assert signer != empty(address) and signer == agent, "job_market: receipt not signed by the asset's agent"


@internal
def _pay(
    job_id: uint256, shard: uint256, replica: uint256, work: uint256, keeper_bps: uint16, protocol_bps: uint16, contribution: bool
) -> uint80:
    """
    @dev Pays for one lease's work, packed as a contribution (asset 0-31, keeper id
         32-55, price 56-119, gpu_seconds 120-151): the asset's owner price ×
         GPU-seconds, the keeper and the treasury their fees at the job's rates.
         Logs ContributionPaid for an adopted checkpoint's lease, ShardFinalized for
         the replica's own; returns the total, which the caller takes from the escrow.
    """
    asset: uint256 = work & _MASK32
    provider: address = staticcall ASSETS.ownerOf(asset)
    keeper: address = staticcall KEEPERS.keeper_of((work >> 32) & _MASK24)
    gpu_seconds: uint256 = work >> 120
    payment: uint256 = ((work >> 56) & _MASK64) * gpu_seconds
    keeper_fee: uint256 = payment * convert(keeper_bps, uint256) // _BPS
    protocol_fee: uint256 = payment * convert(protocol_bps, uint256) // _BPS
    # ShardFinalized or ContributionPaid names each of these credits (the treasury's as protocol_fee).
    settlement._credit_unlogged(provider, payment)
    settlement._credit_unlogged(keeper, keeper_fee)
    settlement._credit_unlogged(market_params.treasury, protocol_fee)
    if contribution:
        log ContributionPaid(
            job=job_id,
            shard=shard,
            replica=replica,
            asset=asset,
            provider=provider,
            keeper=keeper,
            gpu_seconds=gpu_seconds,
            payment=payment,
            keeper_fee=keeper_fee,
            protocol_fee=protocol_fee,
        )
    else:
        log ShardFinalized(
            job=job_id,
            shard=shard,
            replica=replica,
            asset=asset,
            provider=provider,
            keeper=keeper,
            payment=payment,
            keeper_fee=keeper_fee,
            protocol_fee=protocol_fee,
        )
    return convert(payment + keeper_fee + protocol_fee, uint80)


@internal
def _close_open(job_id: uint256, shard: uint256, req: Requirements) -> uint256:
    """
    @dev Cancels a shard's replicas that have not started (open, or assigned and
         inside their decline window); then counts the shard done if no replica is
         left live, or opens a dispute if the live ones all submitted and disagree.
         Reverts when none is cancelled. Returns how many replicas are left live.
    """
    window: uint256 = convert(market_params._settings().decline_window, uint256)
    cancelled: uint256 = 0
    live: uint256 = 0
    for r: uint256 in range(convert(req.replication, uint256), bound=MAX_REPLICATION):
        rep: Replica = self._replica(job_id, shard, r)
        if rep.state == CANCELLED:
            continue
        if rep.state == OPEN or (rep.state == ASSIGNED and block.timestamp <= convert(rep.since, uint256) + window):
            if rep.state == ASSIGNED:
                extcall ASSETS.end_lease(convert(rep.asset, uint256), self._job_demand[job_id], _LEASE_CLOSED, 0)
            rep.state = CANCELLED
            rep.since = convert(block.timestamp, uint40)
            self._store_replica(job_id, shard, r, rep)
            cancelled += 1
        else:
            live += 1
    assert cancelled > 0, "job_market: nothing to cancel"
    log ShardCancelled(job=job_id, shard=shard, replicas=cancelled)
    if live == 0:
        self._shard_done(job_id, self._head(job_id))
    elif req.replication > 1:
        # The replicas left may all have submitted already, and disagree.
        self._dispute_if_replicas_disagree(job_id, shard, convert(req.replication, uint256))
    return live


@internal
def _dispute_if_replicas_disagree(job_id: uint256, shard: uint256, replication: uint256):
    """
    @dev Once every live replica has submitted, differing roots open a dispute.
    """
    first: bytes32 = empty(bytes32)
    agree: bool = True
    for r: uint256 in range(replication, bound=MAX_REPLICATION):
        state: uint8 = self._replica(job_id, shard, r).state
        if state == CANCELLED:
            continue
        if state != SUBMITTED:
            return
        root: bytes32 = self._output_roots[job_id][self._index(shard, r)]
        if first == empty(bytes32):
            first = root
        elif root != first:
            agree = False
    if agree:
        return
    for r: uint256 in range(replication, bound=MAX_REPLICATION):
        rep: Replica = self._replica(job_id, shard, r)
        if rep.state == SUBMITTED:
            rep.state = DISPUTED
            rep.since = convert(block.timestamp, uint40)
            self._store_replica(job_id, shard, r, rep)
    log DisputeOpened(job=job_id, shard=shard, challenger=empty(address), bond=0)


@internal
def _shard_done(job_id: uint256, head: Head):
    """
    @dev Counts a finished shard and stores the head; the last shard refunds the
         client what the job did not use.
    """
    refund: uint256 = 0
    head.unfinished -= 1
    if head.unfinished == 0:
        refund = convert(head.escrow, uint256)
        head.escrow = 0
    self._store_head(job_id, head)
    if head.unfinished == 0:
        settlement._credit_unlogged(head.client, refund)  # JobFinished names it
        log JobFinished(job=job_id, client=head.client, refund=refund)


@internal
def _take_surplus(amount: uint256):
    """
    @dev Counts `amount` of the tokens owed to no one as owed from now on (FUNDER only),
         so no escrow or credit is ever unbacked.
    """
    assert msg.sender == FUNDER, "job_market: caller is not the funder"
    assert settlement._surplus() >= amount, "job_market: tokens not here"
    settlement._received(amount)


@internal
@view
def _check_court():
    """
    @dev Reverts unless the caller is the dispute court.
    """
    assert msg.sender == COURT, "job_market: caller is not the court"


@internal
@pure
def _index(shard: uint256, replica: uint256) -> uint256:
    """
    @dev Storage key of a replica within its job (a fixed stride of MAX_REPLICATION).
    """
    return shard * MAX_REPLICATION + replica


@internal
@pure
def _address(word: uint256) -> address:
    """
    @dev The address in the low 160 bits of a packed word.
    """
    return convert(convert(word % 2**160, uint160), address)


@internal
@pure
def _check_shard(shard_count: uint16, shard: uint256):
    """
    @dev Reverts for shard indexes the job does not have.
    """
    assert shard < convert(shard_count, uint256), "job_market: unknown shard"


@internal
@pure
def _check_replica(req: Requirements, shard: uint256, replica: uint256):
    """
    @dev Reverts for shard or replica indexes the job does not have.
    """
    self._check_shard(req.shard_count, shard)
    assert replica < convert(req.replication, uint256), "job_market: unknown replica"


@internal
@view
def _head(job_id: uint256) -> Head:
    """
    @dev Unpacks a job's client, escrow and unfinished count.
    """
    word: uint256 = self._job_head[job_id]
    return Head(
        client=self._address(word),
        escrow=convert((word >> 160) & _MASK80, uint80),
        unfinished=convert(word >> 240, uint16),
    )


@internal
def _store_head(job_id: uint256, head: Head):
    """
    @dev Packs and stores a job's client, escrow and unfinished count.
    """
    self._job_head[job_id] = (
        convert(head.client, uint256) | convert(head.escrow, uint256) << 160 | convert(head.unfinished, uint256) << 240
    )


@internal
@view
def _terms(job_id: uint256) -> (Requirements, uint16, uint16):
    """
    @dev The job's requirements and fee bps; reverts for unknown jobs. cpu_cores,
         memory_mib and disk_mib are left zero: they live in `_job_demand`, which only
         the lease calls (and `job`) read, so finalizing and disputes pay no extra
         storage read for them.
    """
    terms: uint256 = self._job_terms[job_id]
    assert terms != 0, "job_market: unknown job"
    req: Requirements = Requirements(
        min_vram_mib=convert((terms >> 72) & _MASK32, uint32),
        gpu_count=convert((terms >> 104) & _MASK8, uint8),
        max_price=convert((terms >> 112) & _MASK64, uint64),
        max_gpu_seconds=convert((terms >> 176) & _MASK32, uint32),
        deadline=convert(terms & _MASK40, uint64),
        shard_count=convert((terms >> 40) & _MASK16, uint16),
        replication=convert((terms >> 56) & _MASK8, uint8),
        verification=convert((terms >> 64) & _MASK8, uint8),
        cpu_cores=0,
        memory_mib=0,
        disk_mib=0,
    )
    return req, convert((terms >> 208) & _MASK16, uint16), convert((terms >> 224) & _MASK16, uint16)


@internal
@pure
def _pack_terms(req: Requirements, keeper_bps: uint16, protocol_bps: uint16) -> uint256:
    """
    @dev deadline 0-39, shard_count 40-55, replication 56-63, verification 64-71,
         min_vram_mib 72-103, gpu_count 104-111, max_price 112-175,
         max_gpu_seconds 176-207, keeper bps 208-223, protocol bps 224-239.
         Never zero for a posted job (replication >= 1).
    """
    return (
        convert(req.deadline, uint256)
        | convert(req.shard_count, uint256) << 40
        | convert(req.replication, uint256) << 56
        | convert(req.verification, uint256) << 64
        | convert(req.min_vram_mib, uint256) << 72
        | convert(req.gpu_count, uint256) << 104
        | convert(req.max_price, uint256) << 112
        | convert(req.max_gpu_seconds, uint256) << 176
        | convert(keeper_bps, uint256) << 208
        | convert(protocol_bps, uint256) << 224
    )


@internal
@pure
def _pack_demand(req: Requirements) -> uint256:
    """
    @dev What one lease holds, for `_job_demand`: gpus 0-7, cpu_cores 8-23,
         memory_mib 24-55, disk_mib 56-87.
    """
    return (
        convert(req.gpu_count, uint256)
        | convert(req.cpu_cores, uint256) << 8
        | convert(req.memory_mib, uint256) << 24
        | convert(req.disk_mib, uint256) << 56
    )


@internal
@view
def _contributed(job_id: uint256, shard: uint256, replica: uint256, lease: uint16) -> uint256:
    """
    @dev The replica's checkpoint book when its lease follows a reclaim, else zero: only
         a reclaim adopts a contribution, so a first lease skips the storage read.
    """
    if lease < 2:
        return 0
    return self._checkpoint_books[job_id][self._index(shard, replica)]


@internal
@view
def _replica(job_id: uint256, shard: uint256, replica: uint256) -> Replica:
    """
    @dev Unpacks a replica (see _store_replica for the layout).
    """
    word: uint256 = self._replicas[job_id][self._index(shard, replica)]
    return Replica(
        asset=convert(word & _MASK32, uint32),
        keeper=convert((word >> 32) & _MASK24, uint24),
        state=convert((word >> 56) & _MASK8, uint8),
        lease=convert((word >> 64) & _MASK16, uint16),
        price=convert((word >> 80) & _MASK64, uint64),
        deadline=convert((word >> 144) & _MASK40, uint40),
        since=convert((word >> 184) & _MASK40, uint40),
        gpu_seconds=convert(word >> 224, uint32),
    )


@internal
def _store_replica(job_id: uint256, shard: uint256, replica: uint256, rep: Replica):
    """
    @dev asset 0-31, keeper 32-55, state 56-63, lease 64-79, price 80-143,
         deadline 144-183, since 184-223, gpu_seconds 224-255.
    """
    self._replicas[job_id][self._index(shard, replica)] = (
        convert(rep.asset, uint256)
        | convert(rep.keeper, uint256) << 32
        | convert(rep.state, uint256) << 56
        | convert(rep.lease, uint256) << 64
        | convert(rep.price, uint256) << 80
        | convert(rep.deadline, uint256) << 144
        | convert(rep.since, uint256) << 184
        | convert(rep.gpu_seconds, uint256) << 224
    )
