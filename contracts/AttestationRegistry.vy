# pragma version ~=0.4.3
"""
@title computenet attestation registry
@notice The TEE verification level. Attestors (named by the owner) check
        vendor-signed TEE evidence off chain (Intel TDX/SGX quotes, AMD SEV-SNP
        reports) against pinned vendor roots and record their verdicts here:
        - a node verdict says an asset's agent key lives in a TEE with this
          measurement and TCB level, for a window; the market assigns `tee`
          jobs only to assets attested now;
        - a result verdict says a result's evidence came from that same TEE and
          binds that very result; its challenge window then ends after
          `short_window` instead of the market's full window.
@dev Every verdict names its evidence by hash, so anyone holding the evidence
     can check the attestor; the attestor's word alone finalizes nothing: the
     result stays open to disputes for the short window. The chain itself checks
     what needs no vendor crypto: the report data binds this chain, registry,
     asset and agent key (nodes), or this chain, market, job, shard, replica,
     output root and metered use (results); out-of-date or revoked TCB levels are refused; a
     verdict lapses when its window ends, its attestor is removed, or the
     asset's agent key changes.
"""

from . import JobMarket
from .interfaces import IComputeAsset
from .modules import ownable_2step as ownable

initializes: ownable

exports: (
    ownable.owner,
    ownable.pending_owner,
    ownable.transfer_ownership,
    ownable.accept_ownership,
)

# ------------------------------------------------------------------ constants

# @dev TEE kinds.
TDX: constant(uint8) = 1
SGX: constant(uint8) = 2
SEV_SNP: constant(uint8) = 3
# @dev TCB levels as the vendors name them; from OUT_OF_DATE on, a platform is refused.
UP_TO_DATE: constant(uint8) = 0
SW_HARDENING_NEEDED: constant(uint8) = 1
CONFIGURATION_NEEDED: constant(uint8) = 2
CONFIGURATION_AND_SW_HARDENING_NEEDED: constant(uint8) = 3
OUT_OF_DATE: constant(uint8) = 4
# @dev Longest a node verdict may run: vendors' collateral is current for 30 days.
MAX_VERDICT_SECONDS: constant(uint256) = 31 * 86400
_TEE: constant(uint8) = 4
_SUBMITTED: constant(uint8) = 2

# ------------------------------------------------------------------ types


struct Verdict:
    evidence_hash: bytes32  # keccak256 of the evidence the attestor checked
    measurement: bytes32  # keccak256 of the TEE's measurement (MRTD, MRENCLAVE, MEASUREMENT)
    agent: address  # the agent key the evidence bound
    attestor: address
    kind: uint8
    tcb: uint8
    valid_from: uint64
    valid_until: uint64


# ------------------------------------------------------------------ storage

# @dev The market whose TEE jobs this registry attests.
MARKET: public(immutable(JobMarket.__interface__))
# @dev The asset registry, for agent keys.
ASSETS: public(immutable(IComputeAsset))

# @dev Who may record verdicts.
attestors: public(HashMap[address, bool])
# @dev How long an attested result stays open to disputes, seconds.
short_window: public(uint256)

_verdicts: HashMap[uint256, Verdict]

# ------------------------------------------------------------------ events


event AttestorSet:
    attestor: indexed(address)
    allowed: bool


event ShortWindowSet:
    seconds: uint256


event NodeAttested:
    asset: indexed(uint256)
    attestor: indexed(address)
    evidence_hash: bytes32
    kind: uint8
    measurement: Bytes[48]
    tcb: uint8
    valid_from: uint256
    valid_until: uint256


event NodeRevoked:
    asset: indexed(uint256)
    by: indexed(address)


event ResultAttested:
    job: indexed(uint256)
    shard: indexed(uint256)
    attestor: indexed(address)
    replica: uint256
    asset: uint256
    evidence_hash: bytes32
    challenge_end: uint256


# ------------------------------------------------------------------ constructor


@deploy
def __init__(market: JobMarket.__interface__, assets: IComputeAsset, short_window: uint256):
    """
    @param market The JobMarket, which lets only this contract shorten a window.
    @param assets The ComputeAsset registry.
    @param short_window Seconds an attested result stays open to disputes.
    """
    assert market.address != empty(address) and assets.address != empty(address), "attestations: zero market or assets"
    assert short_window > 0, "attestations: zero short window"
    ownable.__init__()
    MARKET = market
    ASSETS = assets
    self.short_window = short_window


# ------------------------------------------------------------------ owner


@external
def set_attestor(attestor: address, allowed: bool):
    """
    @notice Adds or removes an attestor; the owner only. A removed attestor's
            verdicts stop counting at once.
    @param attestor The attestor's address.
    @param allowed Whether it may record verdicts.
    """
    ownable._check_owner()
    assert attestor != empty(address), "attestations: zero attestor"
    self.attestors[attestor] = allowed
    log AttestorSet(attestor=attestor, allowed=allowed)


@external
def set_short_window(seconds: uint256):
    """
    @notice Sets how long an attested result stays open to disputes; the owner only.
    @param seconds The window, more than zero (the market also keeps it below its own).
    """
    ownable._check_owner()
    assert seconds > 0, "attestations: zero short window"
    self.short_window = seconds
    log ShortWindowSet(seconds=seconds)


# ------------------------------------------------------------------ attestors


@external
def attest_node(
    asset: uint256,
    evidence_hash: bytes32,
    kind: uint8,
    measurement: Bytes[48],
    tcb: uint8,
    valid_from: uint64,
    valid_until: uint64,
    report_data: bytes32,
):
    """
    @notice Records an attestor's verdict on a node's evidence; replaces any earlier one.
    @param asset The compute asset.
    @param evidence_hash keccak256 of the evidence (quote or report) checked.
    @param kind TDX, SGX or SEV_SNP.
    @param measurement The TEE's measurement as the evidence states it.
    @param tcb The platform's TCB level (below OUT_OF_DATE).
    @param valid_from Start of the window the verdict holds in (its collateral's).
    @param valid_until End of that window; at most MAX_VERDICT_SECONDS from now.
    @param report_data The first 32 bytes of the evidence's report data: must be
           node_report_data(asset, agent) for the asset's agent key now.
    """
    assert self.attestors[msg.sender], "attestations: not an attestor"
    assert kind >= TDX and kind <= SEV_SNP, "attestations: unknown tee kind"
    assert tcb < OUT_OF_DATE, "attestations: platform tcb out of date"
    assert len(measurement) > 0 and evidence_hash != empty(bytes32), "attestations: empty evidence or measurement"
    assert convert(valid_from, uint256) <= block.timestamp and block.timestamp < convert(valid_until, uint256), "attestations: verdict not current"
    assert convert(valid_until, uint256) <= block.timestamp + MAX_VERDICT_SECONDS, "attestations: verdict runs too long"
    agent: address = staticcall ASSETS.agentOf(asset)
    assert agent != empty(address), "attestations: asset has no agent"
    assert report_data == self._node_report_data(asset, agent), "attestations: evidence binds another node"
    self._verdicts[asset] = Verdict(
        evidence_hash=evidence_hash,
        measurement=keccak256(measurement),
        agent=agent,
        attestor=msg.sender,
        kind=kind,
        tcb=tcb,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    log NodeAttested(
        asset=asset,
        attestor=msg.sender,
        evidence_hash=evidence_hash,
        kind=kind,
        measurement=measurement,
        tcb=tcb,
        valid_from=convert(valid_from, uint256),
        valid_until=convert(valid_until, uint256),
    )


@external
def revoke_node(asset: uint256):
    """
    @notice Withdraws an asset's verdict (e.g. after a TCB recovery); an attestor or the owner.
    @param asset The compute asset.
    """
    assert self.attestors[msg.sender] or msg.sender == ownable.owner, "attestations: not an attestor"
    assert self._verdicts[asset].attestor != empty(address), "attestations: asset not attested"
    self._verdicts[asset] = empty(Verdict)
    log NodeRevoked(asset=asset, by=msg.sender)


@external
def attest_result(
    job_id: uint256,
    shard: uint256,
    replica: uint256,
    evidence_hash: bytes32,
    measurement: Bytes[48],
    tcb: uint8,
    report_data: bytes32,
):
    """
    @notice Records an attestor's verdict on a TEE result's evidence and ends the
            result's challenge window `short_window` from now.
    @param job_id The job (verification TEE).
    @param shard The shard.
    @param replica The replica, submitted and in its window.
    @param evidence_hash keccak256 of the result's evidence.
    @param measurement Its TEE measurement: the one the asset was attested with.
    @param tcb Its TCB level (below OUT_OF_DATE).
    @param report_data The first 32 bytes of its report data: must be
           result_report_data(job, shard, replica) for the submitted output root
           and metered GPU-seconds.
    """
    assert self.attestors[msg.sender], "attestations: not an attestor"
    assert (staticcall MARKET.job(job_id)).requirements.verification == _TEE, "attestations: not a tee job"
    rep: JobMarket.Replica = staticcall MARKET.replica(job_id, shard, replica)
    assert rep.state == _SUBMITTED, "attestations: no result in its window"
    asset: uint256 = convert(rep.asset, uint256)
    assert self._attested(asset), "attestations: asset not attested"
    assert keccak256(measurement) == self._verdicts[asset].measurement, "attestations: result ran in another measurement"
    assert tcb < OUT_OF_DATE, "attestations: platform tcb out of date"
    assert report_data == self._result_report_data(job_id, shard, replica), "attestations: evidence binds another result"
    end: uint256 = block.timestamp + self.short_window
    extcall MARKET.shorten_window(job_id, shard, replica, end)
    log ResultAttested(
        job=job_id,
        shard=shard,
        attestor=msg.sender,
        replica=replica,
        asset=asset,
        evidence_hash=evidence_hash,
        challenge_end=end,
    )


# ------------------------------------------------------------------ views


@external
@view
def attested(asset: uint256) -> bool:
    """
    @notice Whether an asset holds a current verdict: within its window, from an
            attestor still named, for the asset's agent key now.
    @param asset The compute asset.
    @return True if `tee` jobs may be assigned to it.
    """
    return self._attested(asset)


@external
@view
def verdict(asset: uint256) -> Verdict:
    """
    @notice An asset's latest verdict, current or not (empty: none).
    @param asset The compute asset.
    @return The verdict.
    """
    return self._verdicts[asset]


@external
@view
def node_report_data(asset: uint256, agent: address) -> bytes32:
    """
    @notice What a node's evidence must carry in its report data's first 32 bytes.
    @param asset The compute asset.
    @param agent Its agent key, which the evidence vouches lives in the TEE.
    @return keccak256(abi_encode(chain id, this registry, asset, agent)).
    """
    return self._node_report_data(asset, agent)


@external
@view
def result_report_data(job_id: uint256, shard: uint256, replica: uint256) -> bytes32:
    """
    @notice What a result's evidence must carry in its report data's first 32 bytes.
    @param job_id The job.
    @param shard The shard.
    @param replica The replica.
    @return keccak256(abi_encode(chain id, market, job, shard, replica, output root, gpu_seconds)).
    """
    return self._result_report_data(job_id, shard, replica)


# ------------------------------------------------------------------ internal


@internal
@view
def _attested(asset: uint256) -> bool:
    """
    @dev A verdict counts while current, its attestor named, and its agent the asset's.
    """
    v: Verdict = self._verdicts[asset]
    return (
        v.attestor != empty(address)
        and self.attestors[v.attestor]
        and convert(v.valid_from, uint256) <= block.timestamp
        and block.timestamp < convert(v.valid_until, uint256)
        and v.agent == staticcall ASSETS.agentOf(asset)
    )


@internal
@view
def _node_report_data(asset: uint256, agent: address) -> bytes32:
    """
    @dev Binds a node's evidence to this chain, registry, asset and agent key.
    """
    return keccak256(abi_encode(chain.id, self, asset, agent))


@internal
@view
def _result_report_data(job_id: uint256, shard: uint256, replica: uint256) -> bytes32:
    """
    @dev Binds a result's evidence to this chain, market, job, shard, replica, output root
         and metered use: the TEE vouches for the claim it is paid on, not only the outputs.
    """
    root: bytes32 = staticcall MARKET.output_root(job_id, shard, replica)
    seconds: uint32 = (staticcall MARKET.replica(job_id, shard, replica)).gpu_seconds
    return keccak256(abi_encode(chain.id, MARKET.address, job_id, shard, replica, root, seconds))
