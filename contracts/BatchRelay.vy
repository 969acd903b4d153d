# pragma version ~=0.4.3
# pragma experimental-codegen
# pragma optimize gas
"""
@title computenet batch relay
@notice Sends many market steps in one transaction: assignments of one keeper,
        results of one or more agents, finalizations of any shards. Each item is a
        call to the market's own entry point, so every rule the market enforces holds
        per item; an item the market refuses is skipped (its changes undone) and the
        rest go on, so one race lost to another keeper or relayer does not sink the
        batch. Each call returns a bitmap of the items that went through.
@dev Stateless and holds no funds. The market trusts it for one thing only: on an
     assignment it appends its caller's address, which the market takes as the
     keeper (as ERC-2771 does for a trusted forwarder), so a keeper is paid and
     checked as itself, never as the relay. Results and finalizations need no
     sender: the market takes them from anyone.
     An item that fails for want of gas reverts the whole call instead of being skipped
     (the market's steps use far less than the 63/64 of what is left that a call gets,
     so an item left with at most 1/64 ran out of gas): a gas estimate then covers every
     item, and a sender cannot starve chosen items by the gas it gives.
"""

MAX_ITEMS: constant(uint256) = 256


struct Placement:
    job: uint256
    shard: uint256
    asset: uint256


struct Result:
    job: uint256
    shard: uint256
    replica: uint256
    output_root: bytes32
    gpu_seconds: uint32
    exit_code: uint8
    signature: Bytes[65]


struct ShardRef:
    job: uint256
    shard: uint256


@external
def assign_many(market: address, placements: DynArray[Placement, MAX_ITEMS]) -> uint256:
    """
    @notice Assigns each placement's shard to its asset, as the caller (who must be an
            active keeper) would with `assign`, one after another.
    @param market The job market.
    @param placements Up to 256 (job, shard, asset).
    @return Bit i set: placement i was assigned.
    """
    done: uint256 = 0
    for i: uint256 in range(len(placements), bound=MAX_ITEMS):
        p: Placement = placements[i]
        if self._called(
            market,
            concat(
                abi_encode(p.job, p.shard, p.asset, method_id=method_id("assign(uint256,uint256,uint256)")),
                convert(msg.sender, bytes32),
            ),
        ):
            done |= 1 << i
    return done


@external
def submit_many(market: address, results: DynArray[Result, MAX_ITEMS]) -> uint256:
    """
    @notice Records each result, as `submit_result` would; each carries its agent's
            signed receipt, so anyone may relay them.
    @param market The job market.
    @param results Up to 256 results.
    @return Bit i set: result i was recorded.
    """
    done: uint256 = 0
    for i: uint256 in range(len(results), bound=MAX_ITEMS):
        r: Result = results[i]
        if self._called(
            market,
            abi_encode(
                r.job,
                r.shard,
                r.replica,
                r.output_root,
                r.gpu_seconds,
                r.exit_code,
                r.signature,
                method_id=method_id("submit_result(uint256,uint256,uint256,bytes32,uint32,uint8,bytes)"),
            ),
        ):
            done |= 1 << i
    return done


@external
def finalize_many(market: address, shards: DynArray[ShardRef, MAX_ITEMS]) -> uint256:
    """
    @notice Finalizes each shard, as `finalize` would: every final shard of a job (or
            of many) in one transaction. A shard not ready yet is skipped.
    @param market The job market.
    @param shards Up to 256 (job, shard).
    @return Bit i set: shard i was finalized.
    """
    done: uint256 = 0
    for i: uint256 in range(len(shards), bound=MAX_ITEMS):
        s: ShardRef = shards[i]
        if self._called(
            market,
            abi_encode(s.job, s.shard, method_id=method_id("finalize(uint256,uint256)")),
        ):
            done |= 1 << i
    return done


@internal
def _called(market: address, data: Bytes[1024]) -> bool:
    """
    @dev Calls the market with `data`; False if it refused (its changes undone). Reverts
         if the call ran out of gas rather than being refused.
    """
    before: uint256 = msg.gas
    if raw_call(market, data, revert_on_failure=False):
        return True
    assert msg.gas > before // 64, "batch_relay: out of gas"
    return False
