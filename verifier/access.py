"""Who may read a replica's outputs from its agent (pure: plain values in, a yes or no out).

Outputs are the client's, and exist to be read only once they are a result on chain (the
replica submitted, disputed or final, under this agent's asset): a replica cancelled before it
submitted, or one never submitted, is served to no one, so no client gets work done for free
by cancelling it. Then a provider serves them to

  - the job's client, always;
  - a bonded verifier (an active registrant of the KeeperRegistry, the network's only
    operator bond), only for the replicas sampled for it: in a SPOT_CHECK job those the
    global draw samples at the manifest's `spot_check_bps`, in an OPTIMISTIC job those its
    own draw (its address in it) samples under the protocol cap MAX_AUDIT_BPS — so a
    verifier sees at most that share of optimistic results, whatever share it runs at;
  - a facilitator (the arbiter), only for shards with an open dispute;
  - nobody else, and not every active keeper: a keeper that is not sampled reads nothing.

Draws are verifier/sampling.py's, from the seed fixed after the result was submitted; before
that block exists (`seed` None) no verifier has been sampled yet.
"""

from __future__ import annotations

from computenet.domain import BPS, Verification
from verifier.sampling import MAX_AUDIT_BPS, draw, spot_checked


def may_read(
    *,
    caller: str,
    job_client: str,
    mode: Verification | int,
    spot_check_bps: int,
    seed: bytes | None,
    job: int,
    shard: int,
    replica: int,
    is_bonded: bool,
    is_facilitator: bool,
    disputed: bool,
    on_chain: bool,
) -> bool:
    """Whether `caller` may read replica `replica` of `job`'s shard `shard`.

    @param caller The address that signed the request.
    @param job_client The job's client.
    @param mode The job's verification mode.
    @param spot_check_bps The manifest's `verification.spot_check_bps` (SPOT_CHECK jobs).
    @param seed The hash of the block after the result's submission; None while it is not mined.
    @param is_bonded Whether `caller` is an active bonded registrant of the KeeperRegistry.
    @param is_facilitator Whether `caller` is a facilitator of the market.
    @param disputed Whether the shard has an open dispute.
    @param on_chain Whether the replica's result is on chain (submitted, disputed or final) under
           the serving agent's asset.
    """
    if not on_chain:
        return False
    if caller.lower() == job_client.lower():
        return True
    if is_facilitator and disputed:
        return True
    if not is_bonded or seed is None:
        return False
    mode = Verification(mode)
    if mode == Verification.SPOT_CHECK:
        return spot_checked(seed, job, shard, replica, spot_check_bps)
    if mode == Verification.OPTIMISTIC:
        return draw(seed, job, shard, replica, caller) % BPS < MAX_AUDIT_BPS
    return False
