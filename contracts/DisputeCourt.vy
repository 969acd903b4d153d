# pragma version ~=0.4.3
"""
@title computenet dispute court
@notice Where results are challenged and where every dispute ends. Anyone but the
        shard's own providers may challenge its results inside their challenge
        window by posting the challenge bond; replicas that disagree are disputed by
        the market itself. A facilitator (the arbiter) rules from its own
        re-execution before the ruling deadline; after it, anyone may apply the
        default outcome. Who is credited what (in the market, withdrawn there):
        - each rejected replica's stake is slashed by the market's `slash_bps`; a
          challenger who proved a replica it accused wrong (otherwise: the first
          upheld provider) gets REWARD_BPS of the slash, at most one challenge bond;
          the treasury the rest;
        - the bond goes back to a challenger who proved a replica it accused wrong,
          and otherwise is split among the providers it accused;
        - no ruling by the deadline: the results stand and are final (their windows
          are not reopened, so no one can hold payment off by challenging again and
          again), no one is slashed, and the bond goes back to the challenger.
        See docs/disputes.md for the whole table.
@dev The market holds the replicas, the tokens and the ledger and applies rulings
     (`open_dispute`, `rule`, `credit`, callable only from here); this contract
     holds the rules: who may challenge, deadlines, and who is credited what. It
     also checks a client's signed cancel for the market (`cancel_with_signature`),
     which has no code room left for the signature check.
"""

from . import JobMarket
from .interfaces import IComputeAsset
from .modules import ecdsa
from .modules import market_params
from .modules import merkle

# ------------------------------------------------------------------ constants

# @dev Share of a slash that rewards whoever proved the fault, basis points; it is
#      also capped at one challenge bond, so no one gains from their own fault.
REWARD_BPS: public(constant(uint256)) = 1000
_BPS: constant(uint256) = 10000
_CANCEL_TYPEHASH: constant(bytes32) = keccak256("CancelShard(uint256 job,uint256 shard,uint256 validBefore)")
# @dev As in JobMarket: the struct each result of a batch is signed as part of.
_RECEIPT_TYPEHASH: constant(bytes32) = keccak256(
    "ExecutionReceipt(uint256 job,uint256 shard,uint256 replica,uint256 lease,uint256 asset,bytes32 manifest,bytes32 outputRoot,uint256 gpuSeconds,uint256 exitCode)"
)
_MAX_RESULTS: constant(uint256) = 64  # JobMarket.MAX_RESULTS
_MAX_REPLICATION: constant(uint256) = 5

# @dev Replica states (as in JobMarket).
_OPEN: constant(uint8) = 0
_SUBMITTED: constant(uint8) = 2
_DISPUTED: constant(uint8) = 3
_CANCELLED: constant(uint8) = 5

# ------------------------------------------------------------------ storage

# @dev The job market whose results this court rules on.
MARKET: public(immutable(JobMarket.__interface__))
# @dev The compute asset registry (owners and agents of the challenged assets).
ASSETS: public(immutable(IComputeAsset))

# @dev job -> shard -> challenger (bits 0-159) and bond (160-255) of the open challenge.
_challenges: HashMap[uint256, HashMap[uint256, uint256]]
# @dev keccak256(job, shard, replica, lease) -> the root revealed for that lease's batched result.
_revealed: HashMap[bytes32, bytes32]

# ------------------------------------------------------------------ events


event DisputeSettled:
    job: indexed(uint256)
    shard: uint256
    arbiter: indexed(address)  # zero: the default outcome after the ruling deadline
    challenger: indexed(address)  # zero: the replicas disagreed by themselves
    slashed: uint256  # tokens taken from rejected replicas' stakes
    reward: uint256  # of those, to the challenger or first upheld provider
    bond_returned: bool  # the bond went back to the challenger (else to the accused)


event ResultRevealed:
    job: indexed(uint256)
    shard: uint256
    replica: uint256
    lease: uint256
    output_root: bytes32


# ------------------------------------------------------------------ constructor


@deploy
def __init__(market: JobMarket.__interface__, assets: IComputeAsset):
    """
    @param market The JobMarket, which names this contract as its COURT.
    @param assets The ComputeAsset registry.
    """
    MARKET = market
    ASSETS = assets


# ------------------------------------------------------------------ externals


@external
def challenge(job_id: uint256, shard: uint256):
    """
    @notice Challenges a shard's results that are still inside their challenge
            window, posting the challenge bond (approve the market for it first).
            The bond comes back with a reward if the arbiter finds a replica wrong;
            otherwise it goes to the providers accused.
    @dev The shard's own providers (owners and agent keys of its live replicas) may
         not challenge it: a provider could otherwise dispute its own wrong result to
         steer the ruling or to hold other challengers off.
    @param job_id The job.
    @param shard The shard.
    """
    req: JobMarket.Requirements = (staticcall MARKET.job(job_id)).requirements
    assert shard < convert(req.shard_count, uint256), "dispute_court: unknown shard"
    for r: uint256 in range(convert(req.replication, uint256), bound=_MAX_REPLICATION):
        rep: JobMarket.Replica = staticcall MARKET.replica(job_id, shard, r)
        if rep.state == _OPEN or rep.state == _CANCELLED:
            continue
        asset: uint256 = convert(rep.asset, uint256)
        assert msg.sender != staticcall ASSETS.ownerOf(asset), "dispute_court: provider cannot challenge its shard"
        assert msg.sender != staticcall ASSETS.agentOf(asset), "dispute_court: provider cannot challenge its shard"
    bond: uint256 = staticcall MARKET.challenge_bond()
    self._challenges[job_id][shard] = convert(msg.sender, uint256) | bond << 160
    extcall MARKET.open_dispute(job_id, shard, msg.sender, bond)


@external
def cancel_with_signature(job_id: uint256, shard: uint256, valid_before: uint256, signature: Bytes[65]):
    """
    @notice The market's `cancel` for a client that sends no transactions (an x402
            payer): anyone relays the client's EIP-712 signature of
            CancelShard(job, shard, validBefore) over the market's domain (its
            name, version, chain id and address). A cancel cannot be undone, so a
            replay has nothing left to do; the refund goes to the client as ever.
    @param job_id The job.
    @param shard The shard.
    @param valid_before Unix time from which the signature is void.
    @param signature The client's 65-byte signature (r ‖ s ‖ v).
    """
    assert block.timestamp < valid_before, "dispute_court: cancel signature expired"
    digest: bytes32 = keccak256(
        concat(
            x"1901",
            staticcall MARKET.DOMAIN_SEPARATOR(),
            keccak256(abi_encode(_CANCEL_TYPEHASH, job_id, shard, valid_before)),
        )
    )
    signer: address = ecdsa._recover(digest, signature)
    client: address = (staticcall MARKET.job(job_id)).client
    assert signer != empty(address) and signer == client, "dispute_court: cancel not signed by the client"
    extcall MARKET.cancel(job_id, shard)


@external
def resolve(job_id: uint256, shard: uint256, valid_root: bytes32):
    """
    @notice Rules on a disputed shard before its ruling deadline (facilitators
            only): replicas whose root is `valid_root` stand, every other one is
            slashed and reopens; a zero `valid_root` (the arbiter could not
            reproduce the job) lets every result stand. A batched result's root
            must be revealed first (`reveal_result`).
    @param job_id The job.
    @param shard The shard.
    @param valid_root The root of the arbiter's own re-execution, or zero.
    """
    rejected: uint256 = 0
    if valid_root != empty(bytes32):
        req: JobMarket.Requirements = (staticcall MARKET.job(job_id)).requirements
        assert shard < convert(req.shard_count, uint256), "dispute_court: unknown shard"
        for r: uint256 in range(convert(req.replication, uint256), bound=_MAX_REPLICATION):
            rep: JobMarket.Replica = staticcall MARKET.replica(job_id, shard, r)
            if rep.state != _SUBMITTED and rep.state != _DISPUTED:
                continue  # the market rules only on results
            root: bytes32 = self._root(job_id, shard, r, rep.lease)
            # A batched result's root is not on chain until revealed: never judge it as zero.
            assert root != empty(bytes32), "dispute_court: a result's root is not revealed (reveal_result)"
            if root != valid_root:
                rejected |= 1 << r
    self._resolve(job_id, shard, rejected)


@external
def resolve_replicas(job_id: uint256, shard: uint256, rejected: uint256):
    """
    @notice Rules on a disputed shard replica by replica, before its ruling
            deadline (facilitators only): for results that are not bit-exact (a
            manifest's numeric comparator) or a metering claim beyond the job's
            tolerance, where one valid root cannot say who was wrong. Each replica
            whose bit is set is slashed and reopens; every other one stands.
    @param job_id The job.
    @param shard The shard.
    @param rejected Bit r set: replica r was found wrong (zero: every result stands).
    """
    self._resolve(job_id, shard, rejected)


@external
def expire(job_id: uint256, shard: uint256):
    """
    @notice Ends a dispute no one ruled on by its deadline (anyone may call it):
            every result stands and is final (its challenge window, long over, is
            not reopened), no one is slashed, and the bond goes back to the
            challenger.
    @param job_id The job.
    @param shard The shard.
    """
    opened: uint256 = 0
    deadline: uint256 = 0
    accused: uint256 = 0
    opened, deadline, accused = self._dispute_times(job_id, shard)
    assert block.timestamp > deadline, "dispute_court: ruling deadline not passed"
    self._settle(job_id, shard, 0, 0, accused, empty(address))


@external
def reveal_result(result: JobMarket.Result, receipts: DynArray[bytes32, _MAX_RESULTS], index: uint256):
    """
    @notice Puts on chain the root of a result the market recorded in a batch
            (`JobMarket.submit_results`, which keeps one commitment per batch, not
            each root), for rulings and `verify_output`. Anyone may call it, with
            the result as ResultSubmitted logged it and its batch's receipt hashes
            as ResultsCommitted logged them.
    @dev The receipt binds the replica's current lease, asset and manifest: a batch
         is recorded all or none and a lease submits once, so at most one recorded
         receipt matches, and a root revealed for a lease is never read for another.
    @param result The result.
    @param receipts Its batch's receipt hashes, in order.
    @param index Its position in the batch.
    """
    rep: JobMarket.Replica = staticcall MARKET.replica(result.job, result.shard, result.replica)
    receipt: bytes32 = keccak256(
        abi_encode(
            _RECEIPT_TYPEHASH,
            result.job,
            result.shard,
            result.replica,
            convert(rep.lease, uint256),
            convert(rep.asset, uint256),
            (staticcall MARKET.job(result.job)).manifest_hash,
            result.output_root,
            convert(result.gpu_seconds, uint256),
            convert(result.exit_code, uint256),
        )
    )
    assert receipts[index] == receipt, "dispute_court: result not in the batch"
    # The market's commitment: the receipt hashes packed in order.
    assert staticcall MARKET.result_batches(
        keccak256(slice(abi_encode(receipts), 64, 32 * len(receipts)))
    ), "dispute_court: no such result batch"
    self._revealed[self._lease_key(result.job, result.shard, result.replica, rep.lease)] = result.output_root
    log ResultRevealed(
        job=result.job, shard=result.shard, replica=result.replica, lease=convert(rep.lease, uint256), output_root=result.output_root
    )


# ------------------------------------------------------------------ views


@external
@view
def challenge_of(job_id: uint256, shard: uint256) -> (address, uint256):
    """
    @notice The open challenge of a shard, if any.
    @param job_id The job.
    @param shard The shard.
    @return The challenger (zero if none) and its bond, token base units.
    """
    packed: uint256 = self._challenges[job_id][shard]
    return convert(convert(packed % 2**160, uint160), address), packed >> 160


@external
@view
def ruling_deadline(job_id: uint256, shard: uint256) -> uint256:
    """
    @notice When the open dispute of a shard must be ruled on: its opening plus one
            lease of the job (the time a re-execution may take) plus the challenge
            window. Reverts when no dispute is open.
    @param job_id The job.
    @param shard The shard.
    @return Unix seconds.
    """
    return self._dispute_times(job_id, shard)[1]


@external
@view
def result_root(job_id: uint256, shard: uint256, replica: uint256) -> bytes32:
    """
    @notice The root of a replica's current result: the one the market stored, or
            for a batched result the one revealed here (zero while neither).
    @param job_id The job.
    @param shard The shard.
    @param replica The replica.
    @return The root.
    """
    return self._result_root(job_id, shard, replica)


@external
@view
def verify_output(
    job_id: uint256,
    shard: uint256,
    replica: uint256,
    path_hash: bytes32,
    content_hash: bytes32,
    proof: DynArray[bytes32, merkle.MAX_DEPTH],
) -> bool:
    """
    @notice Whether a file belongs to a replica's submitted result.
    @param job_id The job.
    @param shard The shard.
    @param replica The replica.
    @param path_hash keccak256 of the file's path, UTF-8.
    @param content_hash keccak256 of the file's bytes.
    @param proof Sibling hashes from the leaf up.
    @return True if the proof leads to the submitted root (a batched result's once revealed).
    """
    root: bytes32 = self._result_root(job_id, shard, replica)
    return root != empty(bytes32) and merkle._verify(proof, root, merkle._leaf(path_hash, content_hash))


# ------------------------------------------------------------------ internals


@internal
@view
def _result_root(job_id: uint256, shard: uint256, replica: uint256) -> bytes32:
    """
    @dev The replica's root as the market holds it, else as revealed for its lease.
    """
    return self._root(job_id, shard, replica, (staticcall MARKET.replica(job_id, shard, replica)).lease)


@internal
@view
def _root(job_id: uint256, shard: uint256, replica: uint256, lease: uint16) -> bytes32:
    """
    @dev The market clears a rejected replica's root, so a root it holds is the
         current lease's; a batched one is only here, keyed by its lease.
    """
    root: bytes32 = staticcall MARKET.output_root(job_id, shard, replica)
    if root == empty(bytes32):
        root = self._revealed[self._lease_key(job_id, shard, replica, lease)]
    return root


@internal
@pure
def _lease_key(job_id: uint256, shard: uint256, replica: uint256, lease: uint16) -> bytes32:
    """
    @dev Where a lease's revealed root is kept.
    """
    return keccak256(abi_encode(job_id, shard, replica, lease))


@internal
def _resolve(job_id: uint256, shard: uint256, rejected: uint256):
    """
    @dev A facilitator's ruling, before the deadline: `rejected` marks the replicas found wrong.
    """
    assert staticcall MARKET.is_facilitator(msg.sender), "dispute_court: caller is not a facilitator"
    opened: uint256 = 0
    deadline: uint256 = 0
    accused: uint256 = 0
    opened, deadline, accused = self._dispute_times(job_id, shard)
    assert block.timestamp <= deadline, "dispute_court: ruling deadline passed"
    self._settle(job_id, shard, rejected, block.timestamp - opened, accused, msg.sender)


@internal
@view
def _dispute_times(job_id: uint256, shard: uint256) -> (uint256, uint256, uint256):
    """
    @dev When the shard's open dispute opened (its disputed replicas' `since`), its
         ruling deadline, and how many replicas it accuses; reverts when none is open.
    """
    req: JobMarket.Requirements = (staticcall MARKET.job(job_id)).requirements
    assert shard < convert(req.shard_count, uint256), "dispute_court: unknown shard"
    opened: uint256 = 0
    accused: uint256 = 0
    for r: uint256 in range(convert(req.replication, uint256), bound=_MAX_REPLICATION):
        rep: JobMarket.Replica = staticcall MARKET.replica(job_id, shard, r)
        if rep.state == _DISPUTED:
            opened = convert(rep.since, uint256)
            accused += 1
    assert opened != 0, "dispute_court: no open dispute"
    params: market_params.Parameters = staticcall MARKET.parameters()
    # The market's lease length for this job (JobMarket._lease_seconds): the arbiter's
    # re-execution gets as long as the provider had.
    gpus: uint256 = max(convert(req.gpu_count, uint256), 1)
    lease: uint256 = (convert(req.max_gpu_seconds, uint256) + gpus - 1) // gpus + convert(params.lease_grace, uint256)
    return opened, opened + lease + convert(params.challenge_window, uint256), accused


@internal
def _settle(job_id: uint256, shard: uint256, rejected: uint256, extension: uint256, accused: uint256, arbiter: address):
    """
    @dev Applies a ruling (or, with no arbiter, the default outcome) and credits the
         slash, the reward and the bond. `accused` counts the disputed replicas; the
         market returns the owners of those that stood, so the difference is how many
         the ruling found wrong. A replica that submitted during the dispute is ruled
         on too, but proves nothing for the challenger (it could be its own).
    """
    packed: uint256 = self._challenges[job_id][shard]
    self._challenges[job_id][shard] = 0
    challenger: address = convert(convert(packed % 2**160, uint160), address)
    bond: uint256 = packed >> 160

    slashed: uint256 = 0
    stood: DynArray[address, _MAX_REPLICATION] = []
    slashed, stood = extcall MARKET.rule(job_id, shard, rejected, extension, arbiter)

    proven: bool = challenger != empty(address) and accused > len(stood)
    rewarded: address = empty(address)
    if proven:
        rewarded = challenger
    elif len(stood) > 0:
        rewarded = stood[0]
    reward: uint256 = 0
    if rewarded != empty(address):
        reward = min(slashed * REWARD_BPS // _BPS, staticcall MARKET.challenge_bond())
        extcall MARKET.credit(rewarded, reward)
    extcall MARKET.credit(staticcall MARKET.treasury(), slashed - reward)

    returned: bool = proven or arbiter == empty(address)
    if bond > 0:
        if returned:
            extcall MARKET.credit(challenger, bond)
        else:
            # Every accused replica stood, so `stood` holds them all.
            share: uint256 = bond // len(stood)
            for provider: address in stood:
                extcall MARKET.credit(provider, share)
            extcall MARKET.credit(stood[0], bond - share * len(stood))
    log DisputeSettled(
        job=job_id,
        shard=shard,
        arbiter=arbiter,
        challenger=challenger,
        slashed=slashed,
        reward=reward,
        bond_returned=returned and bond > 0,
    )
