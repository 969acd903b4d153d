"""Plain words for every contract revert.

The contracts refuse with short module-prefixed strings ("job_market: deadline too soon")
that tests and tools match exactly. `PLAIN` maps each of them to one or two sentences for
the person acting: what is wrong and, where there is one, what to do. The console scripts
print the sentence after the exact string, and the dApp gets the table in its config to show
it before any wallet prompt. tests/sdk/test_explain.py keeps the table and the contracts in
step both ways. Pure: no ape or web3.
"""

from __future__ import annotations

# How a revert's reason reaches us wrapped: ContractRevert's str, and web3's message.
_WRAPPERS = ("would revert:", "execution reverted:", "reverted:")

_UNKNOWN_SHARD = "The job has no shard with this index: shards are numbered from 0 to the shard count minus 1."
_NO_ASSET = "There is no asset with this id."
_UNBONDING = "The unbonding delay has not passed yet; withdraw once it has."
_ZERO_ADDRESS = "{} cannot be the zero address; give a real address."

PLAIN: dict[str, str] = {
    # ---------------------------------------------------------------- payment token (USDC wording)
    "ERC20: approve to the zero address": _ZERO_ADDRESS.format("The spender of an approval"),
    "ERC20: mint to the zero address": _ZERO_ADDRESS.format("The receiver of minted tokens"),
    "ERC20: transfer amount exceeds allowance": (
        "The contract may not take that many of your tokens: your approval to it is below the amount. "
        "Approve at least the amount first (for a job, its quoted budget)."
    ),
    "ERC20: transfer amount exceeds balance": (
        "The paying account holds fewer tokens than this needs. "
        "Top it up (on a local chain, with `ape run faucet`) and try again."
    ),
    "ERC20: transfer to the zero address": _ZERO_ADDRESS.format("The receiver of a transfer"),
    "FiatTokenV2: authorization is expired": (
        "The signed payment authorization has expired: its valid-before time has passed. Sign a new one."
    ),
    "FiatTokenV2: authorization is not yet valid": (
        "The signed payment authorization is not valid yet: its valid-after time has not passed. "
        "Wait until it has, or sign one that is valid now."
    ),
    "FiatTokenV2: authorization is used or canceled": (
        "This authorization's nonce was already used or cancelled, and each one works once. "
        "Sign a new authorization with a fresh nonce."
    ),
    "FiatTokenV2: caller must be the payee": (
        "Only the payee may submit a receive-with-authorization. Send it from the receiving account."
    ),
    "FiatTokenV2: invalid signature": (
        "The signature is malformed or is not by the account it is from. "
        "Sign again with that account's key, over exactly these terms."
    ),
    "FiatTokenV2: permit is expired": "The permit's deadline has passed. Sign a new permit with a later deadline.",
    "test_token: faucet limit exceeded": "The faucet hands out at most 1,000,000 tokens per call. Ask for less.",
    "test_token: faucet only on local chains": (
        "The test token's faucet works only on local chains (chain ids 31337 and 1337). "
        "On a public network, pay with real USDC."
    ),
    # ---------------------------------------------------------------- asset stakes
    "asset_stakes: amount exceeds stake": (
        "You can ask back between 1 base unit and the asset's whole stake; this amount is zero or more than the stake."
    ),
    "asset_stakes: asset at lease capacity": (
        "The asset already holds as many open leases as its capacity allows. "
        "Wait for one to end, choose another asset, or have its owner raise the capacity."
    ),
    "asset_stakes: asset gpus all leased": (
        "Too few of the asset's GPUs are free of its other leases for this job's GPU count. "
        "Wait for a lease to end or choose another asset."
    ),
    "asset_stakes: asset cpu cores all leased": (
        "Too few of the asset's CPU cores are free of its other leases for this job. "
        "Wait for a lease to end or choose another asset."
    ),
    "asset_stakes: asset disk all leased": (
        "Too little of the asset's disk is free of its other leases for this job. "
        "Wait for a lease to end or choose another asset."
    ),
    "asset_stakes: asset memory all leased": (
        "Too little of the asset's memory is free of its other leases for this job. "
        "Wait for a lease to end or choose another asset."
    ),
    "asset_stakes: asset has open leases": (
        "The stake cannot be withdrawn while the asset has leases running. Withdraw once they have ended."
    ),
    "asset_stakes: asset has results that can still be challenged": (
        "The stake answers for the asset's results until they are final, and some can still be challenged "
        "or are disputed. Withdraw once they are finalized."
    ),
    "asset_stakes: caller is not the asset owner": (
        "Only the asset's owner can manage its stake. Use the account that owns the asset."
    ),
    "asset_stakes: caller is not the market": (
        "Only the job market may open, end or slash an asset's leases; this cannot be called directly."
    ),
    "asset_stakes: nothing unbonding": (
        "No stake of this asset is unbonding. Request an unstake first, then withdraw after the unbonding delay."
    ),
    "asset_stakes: stake below minimum": (
        "The asset cannot take work: its stake, less any amount being unbonded, is below the market's minimum stake. "
        "Its owner must add stake."
    ),
    "asset_stakes: stake too large": (
        "The asset's stake would exceed the most it can hold (2^88 - 1 base units). Add less."
    ),
    "asset_stakes: still unbonding": _UNBONDING,
    "asset_stakes: transfer failed": (
        "The payment token refused to move the stake. Check the balance and the approval to the asset registry."
    ),
    "asset_stakes: zero amount": "The amount to stake is zero. Give a positive amount.",
    "asset_stakes: zero market": _ZERO_ADDRESS.format("The asset registry's job market"),
    # ---------------------------------------------------------------- compute assets (ERC-7829 / ERC-721)
    "compute_asset: already paused": "The asset is already paused.",
    "compute_asset: asset has open leases": (
        "The asset cannot change hands while it has leases running. Transfer it once they have ended."
    ),
    "compute_asset: asset has results that can still be challenged": (
        "The asset cannot change hands while some of its results can still be challenged or are disputed. "
        "Transfer it once they are final."
    ),
    "compute_asset: asset has too few cpu cores": (
        "The asset has fewer CPU cores than the job asks for each lease. Choose a larger asset."
    ),
    "compute_asset: asset has too little disk": (
        "The asset offers less disk than the job asks for each lease. Choose a larger asset."
    ),
    "compute_asset: asset has too little memory": (
        "The asset offers less memory than the job asks for each lease. Choose a larger asset."
    ),
    "compute_asset: caller is not owner nor approved": (
        "Only the asset's owner, the account approved for it, or an operator of its owner may do this."
    ),
    "compute_asset: caller is not owner nor operator": (
        "Only the asset's owner or an operator of its owner may approve someone for it."
    ),
    "compute_asset: expired": (
        "The asset's listing has expired, so it cannot be transferred, approved or given readers. "
        "Renew it with a future expiry first."
    ),
    "compute_asset: expiry in the past": "The expiry must be later than now. Give a future time, in unix seconds.",
    "compute_asset: gpu model without gpus": (
        "A GPU model is set but the GPU count is zero. Give the GPU count, or model 0 for a CPU-only node."
    ),
    "compute_asset: gpu without vram": "A node with GPUs must state its VRAM per GPU. Give a VRAM above zero.",
    "compute_asset: no agent": (
        "The asset has no agent key (a transfer clears it), so it takes no leases. Its owner must set an agent."
    ),
    "compute_asset: no cpu cores": "The node must have at least one CPU core.",
    "compute_asset: no memory or disk": "The node must offer some memory and some disk. Give both in MiB, above zero.",
    "compute_asset: not paused": "The asset is not paused, so there is nothing to resume.",
    "compute_asset: readers cannot manage": (
        "A reader of this asset may read its data but not transfer, approve or manage it."
    ),
    "compute_asset: unknown asset": _NO_ASSET,
    "compute_asset: zero agent": _ZERO_ADDRESS.format("The agent key"),
    "compute_asset: zero lease capacity": "The asset must hold at least one lease at a time. Give a capacity of 1 or more.",
    "compute_asset: zero reader": _ZERO_ADDRESS.format("A reader"),
    "erc721: approval to current owner": "The asset's owner cannot be approved for their own asset.",
    "erc721: approve to caller": "You cannot make yourself your own operator.",
    "erc721: mint to zero address": _ZERO_ADDRESS.format("The owner of a new asset"),
    "erc721: owner mismatch": "The account the asset is sent from is not its current owner.",
    "erc721: receiver rejected the token": (
        "The receiving contract did not accept the asset. Send it to an account or contract that takes ERC-721 tokens."
    ),
    "erc721: transfer to zero address": _ZERO_ADDRESS.format("The receiver of an asset"),
    "erc721: unknown token": _NO_ASSET,
    "erc721: zero address": "The zero address holds no assets; ask about a real address.",
    # ---------------------------------------------------------------- authorization funder (x402)
    "authorization_funder: authorization already funded a job": (
        "This payment authorization (payer and nonce) has already funded a job or been returned; each pays once."
    ),
    "authorization_funder: authorization not signed by payer": (
        "The authorization's signature is not the payer's for a transfer of exactly this amount to the market."
    ),
    "authorization_funder: authorization not used": (
        "The token has not used this authorization yet, so no tokens reached the market under it. "
        "Submit it without front-run, and the funder has the token make the transfer itself."
    ),
    "authorization_funder: caller is not a facilitator": (
        "Only a facilitator (named by the market's owner) may post jobs from payment authorizations "
        "or return unclaimed payments."
    ),
    "authorization_funder: zero amount": (
        "There is nothing to return: the amount is zero. Give the amount the authorization transferred."
    ),
    # ---------------------------------------------------------------- dispute court
    "dispute_court: caller is not a facilitator": (
        "Only a facilitator (an arbiter the market's owner named) may rule on a dispute."
    ),
    "dispute_court: cancel not signed by the client": (
        "The signed cancel is not the job client's. Sign it with the account that posted the job."
    ),
    "dispute_court: cancel signature expired": (
        "The signed cancel has expired: its valid-before time has passed. Sign a new one."
    ),
    "dispute_court: no open dispute": "This shard has no open dispute.",
    "dispute_court: a result's root is not revealed (reveal_result)": (
        "A result of this shard was recorded in a batch, so its output root is not on chain yet, and a ruling by "
        "root cannot judge it. Reveal it first with DisputeCourt.reveal_result (Market.reveal_result does it "
        "from the batch's logs), or rule replica by replica."
    ),
    "dispute_court: no such result batch": (
        "The receipt hashes given are not a batch the market recorded. Pass the batch's ResultsCommitted "
        "receipts exactly, in order."
    ),
    "dispute_court: result not in the batch": (
        "The result does not match the receipt at that place in the batch for the replica's current lease. "
        "Pass the result exactly as its ResultSubmitted event logged it, and its index in the batch."
    ),
    "dispute_court: provider cannot challenge its shard": (
        "You own, or are the agent of, an asset that runs a replica of this shard, so you cannot challenge it. "
        "Someone else must."
    ),
    "dispute_court: ruling deadline not passed": (
        "The arbiter may still rule: a dispute can be expired only after its ruling deadline "
        "(its opening plus one lease of the job plus the challenge window)."
    ),
    "dispute_court: ruling deadline passed": (
        "The ruling deadline has passed, so no one can rule any more. "
        "Anyone may now expire the dispute, and every result then stands."
    ),
    "dispute_court: unknown shard": _UNKNOWN_SHARD,
    # ---------------------------------------------------------------- job market
    "job_market: asset already runs this shard": (
        "This asset already holds another replica of this shard, and replicas must run on different assets. "
        "Choose another asset."
    ),
    "job_market: asset expires before the lease ends": (
        "The asset's listing expires before a lease starting now would end "
        "(the job's GPU-seconds spread over its GPUs plus the lease grace). "
        "Choose another asset, or have its owner renew it."
    ),
    "job_market: asset has too few gpus": "The asset has fewer GPUs than the job needs. Choose a larger asset.",
    "job_market: asset has too little vram": (
        "The asset's VRAM per GPU is below the job's minimum. Choose an asset with more VRAM."
    ),
    "job_market: asset is paused": "The asset's owner has paused it, so it takes no new leases until resumed.",
    "job_market: asset price above cap": (
        "The asset's price per GPU-second is above the job's price cap. Choose a cheaper asset."
    ),
    "job_market: budget too large": (
        "The job's budget (price cap × GPU-seconds plus fees, for every shard and replica) is more than the market "
        "can escrow (2^80 - 1 base units). Lower the price cap, GPU-seconds, shards or replication."
    ),
    "job_market: caller is not the asset's agent": (
        "Only the asset's agent key may decline its assignment. Send it from the agent's account."
    ),
    "job_market: caller is not the client": (
        "Only the job's client may cancel its shards, directly or by a signed cancel. Use the account that posted the job."
    ),
    "job_market: caller is not the court": (
        "Only the dispute court may open, rule on or credit disputes; use the DisputeCourt's functions."
    ),
    "job_market: no results": "The batch is empty. Submit at least one result.",
    "job_market: result cannot be batched": (
        "Only single-replica OPTIMISTIC and SPOT_CHECK jobs' results go in submit_results; submit a replicated, "
        "ZK or TEE job's result on its own (submit_result, or the relay's submit_many)."
    ),
    "job_market: results of more than one agent": (
        "A batch's results must all be of assets run by one agent key, the one that signs the batch. "
        "Send each agent's results in a batch of their own."
    ),
    "job_market: caller is not the funder": (
        "Only the market's AuthorizationFunder may post a job or credit an account from tokens already here; "
        "a facilitator settles x402 payments through the funder's functions."
    ),
    "job_market: challenge window open": (
        "A result of this shard can still be challenged. Finalize it once its challenge window has closed."
    ),
    "job_market: deadline out of range": (
        "The deadline is too far away: it must be at most 2^40 - 1 in unix seconds. Give a nearer deadline."
    ),
    "job_market: deadline too soon": (
        "The deadline is too close: every lease must end by it, so allow at least the job's GPU-seconds "
        "(spread over its GPUs) plus the lease grace from now."
    ),
    "job_market: decline window closed": (
        "The decline window of this assignment is over, so it can no longer be handed back. "
        "Run it and submit a result before the lease ends."
    ),
    "job_market: dispute already open": "A dispute is already open on this shard; wait for its ruling.",
    "job_market: empty manifest hash": (
        "The manifest hash is zero. Give the keccak256 of the job's canonical manifest."
    ),
    "job_market: empty output root": "The output root is zero. Submit the Merkle root of the result's files.",
    "job_market: gpu_seconds exceed the lease's time": (
        "The GPU-seconds claimed are more than the time since assignment times the job's GPUs (one for CPU work). "
        "Claim no more than was metered."
    ),
    "job_market: lease expired": (
        "The lease has run out, so its result can no longer be submitted; the replica can now be reclaimed."
    ),
    "job_market: lease not expired": "The lease is still running; it can be reclaimed only once its end has passed.",
    "job_market: lease would end after the deadline": (
        "A lease starting now would end after the job's deadline "
        "(it lasts the job's GPU-seconds spread over its GPUs plus the lease grace), so this shard can no longer be assigned."
    ),
    "job_market: no open dispute": "This shard has no disputed replica to rule on.",
    "job_market: nothing to cancel": (
        "Nothing in this shard can be cancelled: no replica is open or still inside its decline window."
    ),
    "job_market: nothing to challenge": (
        "No result of this shard is inside its challenge window, so there is nothing to challenge."
    ),
    "job_market: checkpoint not newer": (
        "This lease already committed a checkpoint with as many GPU-seconds or more; a checkpoint must "
        "claim more than the last one, so an older one cannot replace a newer one. Relay the newest."
    ),
    "job_market: checkpoint not signed by the asset's agent": (
        "The checkpoint signature is malformed, or is not by the asset's registered agent key over this "
        "lease, checkpoint hash and GPU-seconds. Relay the checkpoint exactly as the agent signed it."
    ),
    "job_market: empty checkpoint": "A checkpoint hash cannot be zero: give the keccak256 of the checkpoint file.",
    "job_market: receipt not signed by the asset's agent": (
        "The receipt is not signed by the asset's agent key over exactly this job, shard, replica, lease and result. "
        "Sign it with the agent key the asset records."
    ),
    "job_market: replica not assigned": (
        "The replica is not assigned now (it is open, has a result, or is done), so this step does not apply to it."
    ),
    "job_market: replication out of range": "Replication must be between 1 and 5.",
    "job_market: shard already assigned": (
        "Other replicas of this shard have started, so it cannot be cancelled before the job's deadline. "
        "Cancel it after the deadline."
    ),
    "job_market: shard count out of range": "The shard count must be between 1 and 1024.",
    "job_market: shard has no open replica": "Every replica of this shard is taken or cancelled; none is open to assign.",
    "job_market: shard not ready": (
        "The shard cannot be finalized yet: every replica not cancelled must have submitted a result, "
        "and disputed ones must be ruled on."
    ),
    "job_market: unknown asset": _NO_ASSET,
    "job_market: unknown job": "There is no job with this id.",
    "job_market: unknown replica": (
        "The job has no replica with this index: replicas are numbered from 0 to the replication minus 1."
    ),
    "job_market: unknown shard": _UNKNOWN_SHARD,
    "job_market: unknown verification mode": (
        "The verification mode must be optimistic (0), replicated (1), spot_check (2) or zk (3)."
    ),
    "job_market: verification mode does not match replication": (
        "Replicated verification goes with replication above 1, and only with it. Make the two match."
    ),
    "job_market: tokens not here": (
        "The market does not hold that many tokens owed to no one, so it cannot escrow or credit them. "
        "Make sure the authorization's transfer to the market was mined."
    ),
    "job_market: zero court, prover, attestations or funder": _ZERO_ADDRESS.format(
        "The market's dispute court, model registry, attestation registry or authorization funder"
    ),
    "job_market: asset not attested": (
        "A tee job runs only on an asset with a current attestation verdict; this asset has none "
        "(never attested, expired, its attestor removed, or its agent key changed). Choose an attested asset."
    ),
    "job_market: not the attestation registry": "Only the attestation registry may shorten a result's window.",
    "job_market: no window to shorten": (
        "The result is not in its challenge window, or its window already ends sooner: nothing to shorten."
    ),
    "batch_relay: out of gas": (
        "The batch ran out of gas part-way through an item. Send it again with more gas, or with fewer items."
    ),
    "job_market: zk result without its proof": (
        "A zk job's successful result is accepted only with its proof, through the model registry's "
        "submit_result; only a failed result (exit code not 0) goes to the market directly."
    ),
    "job_market: zero cpu, memory or disk": (
        "Every lease needs at least one CPU core, some memory and some disk. Give all three above zero."
    ),
    "job_market: zero gpu-seconds": (
        "The GPU-seconds cap is zero. Give the most GPU-seconds (CPU-seconds for CPU work) a shard may use."
    ),
    "job_market: zero price cap": "The price cap is zero. Give the most you will pay per GPU-second, in base units.",
    # ---------------------------------------------------------------- model registry (zk)
    "model_registry: empty artifact hash": "The model's artifact hash is zero. Give keccak256 of its artifacts.",
    "model_registry: empty manifest or inputs root": (
        "The manifest hash and the inputs root must not be zero: a zk job's inputs are files in its manifest."
    ),
    "model_registry: job has no registered model": (
        "The job's client never bound this job's manifest to a registered model, so no proof can be checked. "
        "The client binds it (`bind`) before posting."
    ),
    "model_registry: manifest already bound": (
        "This manifest is already bound to a model and inputs, and a binding never changes. "
        "Post with the binding you made, or change the manifest."
    ),
    "model_registry: model already registered": "This model, with this verifier, is already registered: use its id.",
    "model_registry: no input or output words": "A model needs at least one public input word and one output word.",
    "model_registry: not a zk job": "This job's verification is not zk: submit its result to the market.",
    "model_registry: proof does not verify": (
        "The model's verifier rejected the proof: it was not made for these public inputs with this model."
    ),
    "model_registry: proof is for another lease": (
        "The proof's tag is not this lease's: it was made for another job, shard, replica, lease or market."
    ),
    "model_registry: proof's input is not the shard's input": (
        "The proof's input words are not the shard's input file (zk/<shard>.bin) in the job's bound inputs root."
    ),
    "model_registry: proof's outputs are not in the output root": (
        "The proof's output words are not the file out/zk/outputs.bin of the submitted output root."
    ),
    "model_registry: too many public inputs": "A model may have at most 496 input and output words together.",
    "model_registry: unregistered model": "There is no registered model with this id. Register it first.",
    "model_registry: verifier has no code": "The verifier address holds no contract. Deploy the verifier first.",
    "model_registry: wrong number of public inputs": (
        "The proof has a different number of public inputs than the model's inputs, outputs and two tags."
    ),
    "model_registry: zero market": _ZERO_ADDRESS.format("The registry's market"),
    # ---------------------------------------------------------------- keepers
    "keeper_registry: already registered": (
        "This account is already a keeper; after an exit it must withdraw its bond before registering again."
    ),
    "keeper_registry: bond below minimum": (
        "The bond is below the registry's minimum. Bond at least the minimum "
        "(a keeper left below a raised minimum must exit and register again)."
    ),
    "keeper_registry: bond too large": "A bond must be at most 2^96 - 1 base units.",
    "keeper_registry: exit already requested": (
        "You have already asked to leave. Withdraw the bond once the unbonding delay has passed."
    ),
    "keeper_registry: exit not requested": (
        "Ask to leave first; the bond can be withdrawn once the unbonding delay that starts then has passed."
    ),
    "keeper_registry: keeper is exiting": "This keeper has asked to leave, so it can no longer assign work.",
    "keeper_registry: not a keeper": "This account is not a registered keeper. Register with a bond first.",
    "keeper_registry: registry full": "Every keeper id (2^24 - 1 of them) is taken; no more keepers can register.",
    "keeper_registry: still unbonding": _UNBONDING,
    "keeper_registry: transfer failed": (
        "The payment token refused to move the bond. Check the balance and the approval to the keeper registry."
    ),
    # ---------------------------------------------------------------- market parameters, ownership
    "market_params: caller is not a facilitator": "Only a facilitator (named by the market's owner) may do this.",
    "market_params: challenge bond out of range": "The challenge bond must be between 1 and 2^96 - 1 base units.",
    "market_params: challenge window out of range": (
        "The challenge window must be between 60 seconds and 30 days (2,592,000 seconds)."
    ),
    "market_params: decline window out of range": "The decline window must be between 1 second and one hour.",
    "market_params: keeper fee too high": "The keeper fee may be at most 1,000 basis points (10%).",
    "market_params: lease grace too long": "The lease grace may be at most one day (86,400 seconds).",
    "market_params: min stake too large": "The minimum stake must be at most 2^96 - 1 base units.",
    "market_params: not paused": "The market is not paused, so there is nothing to unpause.",
    "market_params: paused": (
        "The market is paused: it takes no new jobs or assignments until its owner unpauses it. "
        "Results, cancels, disputes and withdrawals go on."
    ),
    "market_params: protocol fee too high": "The protocol fee may be at most 1,000 basis points (10%).",
    "market_params: slash too high": "The slash may be at most 5,000 basis points (half the stake).",
    "market_params: zero facilitator": _ZERO_ADDRESS.format("A facilitator"),
    "market_params: zero treasury": _ZERO_ADDRESS.format("The treasury"),
    "ownable: caller is not the owner": "Only the contract's owner may do this.",
    "ownable: caller is not the pending owner": ("Only the account the owner named as successor may accept ownership."),
    # ---------------------------------------------------------------- attestation registry (tee)
    "attestations: asset has no agent": "The asset has no agent key, so no evidence can bind it. Set its agent first.",
    "attestations: asset not attested": (
        "The asset holds no current attestation verdict: attest the node again before its results."
    ),
    "attestations: empty evidence or measurement": "The verdict names no evidence hash or no measurement.",
    "attestations: evidence binds another node": (
        "The evidence's report data is not this registry's binding of this asset and its agent key "
        "(node_report_data): it vouches for another node, key or chain."
    ),
    "attestations: evidence binds another result": (
        "The evidence's report data is not this result's binding (result_report_data): it vouches for "
        "another job, shard, replica, output root, market or chain."
    ),
    "attestations: no result in its window": "The replica has no submitted result in its challenge window.",
    "attestations: not a tee job": "The job's verification level is not tee.",
    "attestations: not an attestor": "Only an attestor the registry's owner named may record verdicts.",
    "attestations: platform tcb out of date": (
        "The platform's TCB level is out of date or revoked; its evidence is not accepted. Update the platform."
    ),
    "attestations: result ran in another measurement": (
        "The result's evidence comes from a TEE measured differently from the one the asset was attested with."
    ),
    "attestations: unknown tee kind": "The TEE kind is not TDX (1), SGX (2) or SEV-SNP (3).",
    "attestations: verdict not current": "The verdict's window does not include now.",
    "attestations: verdict runs too long": (
        "A node verdict may run at most 31 days from now (vendors' collateral is current for 30); record a shorter one."
    ),
    "attestations: zero attestor": _ZERO_ADDRESS.format("An attestor"),
    "attestations: zero market or assets": _ZERO_ADDRESS.format("The registry's market or asset registry"),
    "attestations: zero short window": "The short window must be at least one second.",
    # ---------------------------------------------------------------- settlement
    "settlement: nothing to withdraw": "You have no credits in the market to withdraw.",
    "settlement: transfer failed": (
        "The payment token refused to move the tokens. When paying, check your balance and your approval to the market."
    ),
    "settlement: zero receiver": _ZERO_ADDRESS.format("The receiver of a withdrawal"),
}


def reason_of(text: str) -> str:
    """The bare revert string in `text`, which may be wrapped as ContractRevert's str
    ("would revert: ...", "reverted: ...") or web3's ("execution reverted: ...")."""
    text = text.strip()
    for wrapper in _WRAPPERS:
        if text.startswith(wrapper):
            return text[len(wrapper) :].strip()
    return text


def explain(reason: str) -> str:
    """The plain sentence for a revert string (bare or wrapped); an unknown one comes back
    as "The contract refused: <reason>"."""
    bare = reason_of(reason)
    if bare in PLAIN:
        return PLAIN[bare]
    return f"The contract refused: {bare}" if bare else "The contract refused without a reason."
