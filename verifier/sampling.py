"""Which submitted results verifiers re-execute: draws from randomness fixed only after the
result was submitted (pure: no chain, no network).

The seed of a result is the hash of the block after the one that mined its ResultSubmitted
event. The agent signs and sends its result before that block exists, so it cannot choose a
result, or a moment to submit it, that escapes the sample. Every draw is

    uint256(keccak256(seed ‖ uint256 job ‖ uint256 shard ‖ uint256 replica [‖ address verifier]))

(abi.encodePacked: 32-byte words, the address as 20 bytes), the same in Python and on chain.

  SPOT_CHECK  a replica is sampled iff draw % 10000 < the manifest's `spot_check_bps`, with no
              verifier in the draw: every verifier samples the same replicas, so a replica is
              checked with exactly the declared probability, and one honest verifier suffices
              to catch whatever is sampled.
  OPTIMISTIC  each verifier samples its own share (`COMPUTENET_VERIFIER_OPTIMISTIC_SHARE_BPS`,
              at most MAX_AUDIT_BPS) with a draw that includes its address: verifiers sample
              independently, so more verifiers check more results.
  REPLICATED  not sampled: the replicas check one another (a mismatch opens a dispute by itself).

Assumption: no one both produces the block after a submission and runs the agent that
submitted. A block producer who is also the agent can withhold a block whose hash would
sample its wrong result and try another one (on a chain with a single sequencer, the
sequencer could); each withheld block costs it that block's rewards, and on Ethereum a
proposer has one try per slot it is given. A chain where that matters should take the seed
from a beacon (RANDAO of a later epoch, a VRF) instead; only `seed_block` changes.
"""

from __future__ import annotations

from eth_utils import keccak, to_bytes

from computenet.domain import BPS, ReplicaState, Verification

MAX_AUDIT_BPS = 2_500  # the most of OPTIMISTIC results any one verifier may sample (and read)


def seed_block(submitted_block: int) -> int:
    """The block whose hash seeds the draws of a result mined in `submitted_block`."""
    return submitted_block + 1


def draw(seed: bytes, job: int, shard: int, replica: int, verifier: str | None = None) -> int:
    """The uint256 draw for one replica's result; with `verifier`, that verifier's own draw."""
    if len(seed) != 32:
        raise ValueError(f"a seed is a 32-byte block hash, not {len(seed)} bytes")
    packed = bytes(seed) + b"".join(value.to_bytes(32, "big") for value in (job, shard, replica))
    if verifier is not None:
        packed += to_bytes(hexstr=verifier)
    return int.from_bytes(keccak(packed), "big")


def spot_checked(seed: bytes, job: int, shard: int, replica: int, spot_check_bps: int) -> bool:
    """Whether a SPOT_CHECK replica is sampled: the same answer for every verifier."""
    return draw(seed, job, shard, replica) % BPS < spot_check_bps


def audited(seed: bytes, job: int, shard: int, replica: int, verifier: str, share_bps: int) -> bool:
    """Whether `verifier` samples an OPTIMISTIC replica at its share (capped at MAX_AUDIT_BPS)."""
    return draw(seed, job, shard, replica, verifier) % BPS < min(share_bps, MAX_AUDIT_BPS)


def audit_mode(mode: Verification, state: ReplicaState) -> Verification:
    """The level a result is audited at. A zk result is proven and final at once; one still in
    its challenge window was not proven (only a failed run takes the window), and its metered
    claim is audited as an optimistic result's is, so a provider cannot skip proving, report a
    failure and be paid for the lease's time unchecked. A tee result is audited as an optimistic
    one too, whether or not an attestor vouched for it (its window may then be short)."""
    if mode == Verification.ZK and state in (ReplicaState.SUBMITTED, ReplicaState.DISPUTED):
        return Verification.OPTIMISTIC
    if mode == Verification.TEE:  # attested or not, at the verifier's share: an attestor is not the last word
        return Verification.OPTIMISTIC
    return mode


def sampled(
    mode: Verification,
    seed: bytes,
    job: int,
    shard: int,
    replica: int,
    *,
    spot_check_bps: int,
    verifier: str,
    share_bps: int,
) -> bool:
    """Whether `verifier` re-executes this replica's result: SPOT_CHECK at the job's declared
    rate, OPTIMISTIC at the verifier's share, REPLICATED never (replica agreement checks it),
    ZK never (the chain checked its proof and made it final at once)."""
    if mode == Verification.SPOT_CHECK:
        return spot_checked(seed, job, shard, replica, spot_check_bps)
    if mode == Verification.OPTIMISTIC:
        return audited(seed, job, shard, replica, verifier, share_bps)
    return False
