# pragma version ~=0.4.3
# pragma experimental-codegen
"""
@title computenet compute asset
@notice A GPU (or CPU) node as an ERC-7829 asset: an ERC-721 token whose `commit` is
        the hash of the node's spec document and attestation evidence, whose `size`
        is its total GPU memory in MiB, and whose `expire` ends the listing. Each
        token carries the node's spec, price, agent signer and active/paused state.
@dev ERC-7829 rules enforced here: readers survive transfers; `transferFrom`,
     `safeTransferFrom`, `approve` and `setReader` revert after expiry; a reader of a
     token may not transfer, approve or set readers for it. Each asset's stake is
     held here (modules/asset_stakes.vy); the job market opens, ends and slashes
     leases against it. A token's stake and future earnings follow the token. An
     asset changes hands only with no lease open and no result pending, and the
     transfer clears its agent key: the seller's key can never act for the buyer's
     stake, and the asset takes no lease until its new owner sets an agent. Each
     asset records its agent's endpoint, where the agent serves signed heartbeats
     and outputs, so keepers of any operator need nothing in common but the chain.
"""

from ethereum.ercs import IERC165

from .interfaces import IERC7829
from .interfaces import IComputeAsset
from ethereum.ercs import IERC20

from .modules import asset_spec
from .modules import asset_stakes
from .modules import erc721

implements: IERC165
implements: IERC7829
implements: IComputeAsset

initializes: erc721
initializes: asset_stakes[erc721 := erc721]

exports: (
    erc721.ownerOf,
    erc721.balanceOf,
    erc721.getApproved,
    erc721.isApprovedForAll,
    erc721.setApprovalForAll,
    asset_stakes.__interface__,
)

# @dev ERC-165 ids; ERC-7829 publishes none, so its id is the XOR of its five selectors.
_IFACE_ERC165: constant(bytes4) = 0x01ffc9a7
_IFACE_ERC721: constant(bytes4) = 0x80ac58cd
_IFACE_ERC7829: constant(bytes4) = 0xf7e5dae0
_MASK16: constant(uint256) = 2**16 - 1
_MASK32: constant(uint256) = 2**32 - 1

# @dev Collection metadata.
name: public(constant(String[32])) = "computenet compute asset"
symbol: public(constant(String[8])) = "CNODE"

# @dev Number of assets ever registered; ids run from 1 to this.
totalSupply: public(uint256)
# @dev asset -> its spec, packed (see modules/asset_spec.vy).
spec_word: public(HashMap[uint256, uint256])
# @dev asset -> the key its agent signs receipts and heartbeats with.
agentOf: public(HashMap[uint256, address])
# @dev asset -> hash of its spec document and attestation evidence.
_commits: HashMap[uint256, bytes32]
# @dev asset -> base URL of its agent's HTTP endpoint (heartbeats, outputs).
endpoint: public(HashMap[uint256, String[256]])
# @dev asset -> reader -> may read the asset's data (ERC-7829).
_readers: HashMap[uint256, HashMap[address, bool]]


event UpdateReader:
    tokenId: indexed(uint256)
    reader: indexed(address)
    valid: bool


event AssetRegistered:
    asset: indexed(uint256)
    owner: indexed(address)
    agent: indexed(address)
    gpu_model: uint32
    vram_mib: uint32
    gpu_count: uint8
    cpu_cores: uint16
    region: uint16
    price: uint64
    expire: uint64
    max_leases: uint16
    commit: bytes32
    memory_mib: uint32
    disk_mib: uint32


event PriceUpdated:
    asset: indexed(uint256)
    price: uint64


event CapacityUpdated:
    asset: indexed(uint256)
    max_leases: uint16


event AssetPaused:
    asset: indexed(uint256)


event AssetResumed:
    asset: indexed(uint256)


event AssetRenewed:
    asset: indexed(uint256)
    expire: uint64


event AgentChanged:
    asset: indexed(uint256)
    agent: indexed(address)


event CommitUpdated:
    asset: indexed(uint256)
    commit: bytes32


event EndpointChanged:
    asset: indexed(uint256)
    endpoint: String[256]


@deploy
def __init__(token: IERC20, unbonding_delay: uint256, market: address):
    """
    @dev Registration is open to anyone; there is no owner to trust.
    @param token The payment token stakes are held in.
    @param unbonding_delay Seconds between asking for stake back and receiving it.
    @param market The job market, deployed right after this contract.
    """
    asset_stakes.__init__(token, unbonding_delay, market)


# ------------------------------------------------------------------ registry


@external
def register(spec: asset_spec.Spec, agent: address, commit: bytes32, endpoint: String[256] = "") -> uint256:
    """
    @notice Registers a node and mints its asset to the caller, active from now on.
    @param spec The node's spec; `active` is ignored (a new asset is active),
           `expire` ends the listing (unix seconds), `max_leases` (at least 1)
           caps the leases it holds at once, and `cpu_cores`, `memory_mib` and
           `disk_mib` (MiB, all non-zero) are what its leases share.
    @param agent The key the node's agent signs receipts and heartbeats with.
    @param commit Hash of the spec document and attestation evidence.
    @param endpoint Base URL of the agent's HTTP endpoint (may be set later).
    @return The new asset id.
    """
    assert agent != empty(address), "compute_asset: zero agent"
    assert spec.cpu_cores > 0, "compute_asset: no cpu cores"
    assert spec.memory_mib > 0 and spec.disk_mib > 0, "compute_asset: no memory or disk"
    assert spec.gpu_count == 0 or spec.vram_mib > 0, "compute_asset: gpu without vram"
    assert spec.gpu_count > 0 or spec.gpu_model == 0, "compute_asset: gpu model without gpus"
    assert convert(spec.expire, uint256) > block.timestamp, "compute_asset: expiry in the past"
    assert spec.max_leases > 0, "compute_asset: zero lease capacity"
    asset: uint256 = self.totalSupply + 1
    self.totalSupply = asset
    stored: asset_spec.Spec = spec
    stored.active = True
    self.spec_word[asset] = asset_spec._pack(stored)
    asset_stakes._set_offer(asset, spec.memory_mib, spec.disk_mib)
    self.agentOf[asset] = agent
    self._commits[asset] = commit
    erc721._mint(msg.sender, asset)
    if len(endpoint) > 0:
        self.endpoint[asset] = endpoint
        log EndpointChanged(asset=asset, endpoint=endpoint)
    log AssetRegistered(
        asset=asset,
        owner=msg.sender,
        agent=agent,
        gpu_model=spec.gpu_model,
        vram_mib=spec.vram_mib,
        gpu_count=spec.gpu_count,
        cpu_cores=spec.cpu_cores,
        region=spec.region,
        price=spec.price,
        expire=spec.expire,
        max_leases=spec.max_leases,
        commit=commit,
        memory_mib=spec.memory_mib,
        disk_mib=spec.disk_mib,
    )
    return asset


@external
def set_price(asset: uint256, price: uint64):
    """
    @notice Sets the price for future leases; running leases keep theirs.
    @param asset The asset.
    @param price Price per GPU-second, token base units.
    """
    self._check_owner_or_operator(asset)
    spec: asset_spec.Spec = asset_spec._unpack(self.spec_word[asset])
    spec.price = price
    self.spec_word[asset] = asset_spec._pack(spec)
    log PriceUpdated(asset=asset, price=price)


@external
def set_capacity(asset: uint256, max_leases: uint16):
    """
    @notice Sets how many leases the asset holds at once (assigned until its result);
            leases already open stay.
    @param asset The asset.
    @param max_leases At least 1.
    """
    self._check_owner_or_operator(asset)
    assert max_leases > 0, "compute_asset: zero lease capacity"
    spec: asset_spec.Spec = asset_spec._unpack(self.spec_word[asset])
    spec.max_leases = max_leases
    self.spec_word[asset] = asset_spec._pack(spec)
    log CapacityUpdated(asset=asset, max_leases=max_leases)


@external
def pause(asset: uint256):
    """
    @notice Stops new leases on the asset; running leases go on.
    @param asset The asset.
    """
    self._check_owner_or_operator(asset)
    spec: asset_spec.Spec = asset_spec._unpack(self.spec_word[asset])
    assert spec.active, "compute_asset: already paused"
    spec.active = False
    self.spec_word[asset] = asset_spec._pack(spec)
    log AssetPaused(asset=asset)


@external
def resume(asset: uint256):
    """
    @notice Opens a paused asset to new leases again.
    @param asset The asset.
    """
    self._check_owner_or_operator(asset)
    spec: asset_spec.Spec = asset_spec._unpack(self.spec_word[asset])
    assert not spec.active, "compute_asset: not paused"
    spec.active = True
    self.spec_word[asset] = asset_spec._pack(spec)
    log AssetResumed(asset=asset)


@external
def renew(asset: uint256, expire: uint64):
    """
    @notice Moves the end of the listing; works on expired assets too, to revive them.
    @param asset The asset.
    @param expire New end of the listing, unix seconds, in the future.
    """
    self._check_owner_or_operator(asset)
    assert convert(expire, uint256) > block.timestamp, "compute_asset: expiry in the past"
    spec: asset_spec.Spec = asset_spec._unpack(self.spec_word[asset])
    spec.expire = expire
    self.spec_word[asset] = asset_spec._pack(spec)
    log AssetRenewed(asset=asset, expire=expire)


@external
def set_agent(asset: uint256, agent: address):
    """
    @notice Rotates the agent key; receipts signed with the old key stop verifying.
    @param asset The asset.
    @param agent The new agent key.
    """
    self._check_owner_or_operator(asset)
    assert agent != empty(address), "compute_asset: zero agent"
    self.agentOf[asset] = agent
    log AgentChanged(asset=asset, agent=agent)


@external
def set_commit(asset: uint256, commit: bytes32):
    """
    @notice Replaces the spec/attestation commitment, e.g. after a new attestation.
    @param asset The asset.
    @param commit Hash of the new spec document and attestation evidence.
    """
    self._check_owner_or_operator(asset)
    self._commits[asset] = commit
    log CommitUpdated(asset=asset, commit=commit)


@external
def set_endpoint(asset: uint256, endpoint: String[256]):
    """
    @notice Records where the asset's agent serves its signed heartbeats and
            outputs; keepers and clients read it from here.
    @param asset The asset.
    @param endpoint Base URL (empty: none).
    """
    self._check_owner_or_operator(asset)
    self.endpoint[asset] = endpoint
    log EndpointChanged(asset=asset, endpoint=endpoint)


@external
@view
def spec(asset: uint256) -> asset_spec.Spec:
    """
    @notice The asset's spec, price, expiry and state.
    @param asset The asset.
    @return The spec, with the memory and disk it offers.
    """
    erc721._require_owner(asset)
    spec: asset_spec.Spec = asset_spec._unpack(self.spec_word[asset])
    offer: uint256 = asset_stakes._resources[asset]
    spec.memory_mib = convert(offer & _MASK32, uint32)
    spec.disk_mib = convert((offer >> 32) & _MASK32, uint32)
    return spec


# ------------------------------------------------------------------ market hooks


@external
def open_lease(asset: uint256, min_stake: uint256, demand: uint256) -> uint256:
    """
    @notice Counts a new lease holding `demand` on the asset if it has an agent, has
            the CPU cores, memory and disk at all, its stake is enough, it is below
            its lease capacity and its other open leases leave that many GPUs, CPU
            cores, memory and disk free (market only).
    @dev Whether it has the GPUs at all the market checks on the returned word.
    @param asset The asset.
    @param min_stake The market's minimum stake, token base units.
    @param demand What the lease holds, packed: gpus 0-7 (0 for CPU work), cpu cores
           8-23, memory_mib 24-55, disk_mib 56-87.
    @return The asset's packed spec, for the market's eligibility checks.
    """
    asset_stakes._check_market()
    word: uint256 = self.spec_word[asset]
    assert word != 0, "compute_asset: unknown asset"
    assert self.agentOf[asset] != empty(address), "compute_asset: no agent"
    spec: asset_spec.Spec = asset_spec._unpack(word)
    offer: uint256 = asset_stakes._resources[asset]
    assert (demand >> 8) & _MASK16 <= convert(spec.cpu_cores, uint256), "compute_asset: asset has too few cpu cores"
    assert (demand >> 24) & _MASK32 <= offer & _MASK32, "compute_asset: asset has too little memory"
    assert (demand >> 56) & _MASK32 <= (offer >> 32) & _MASK32, "compute_asset: asset has too little disk"
    asset_stakes._open_lease(asset, min_stake, spec.max_leases, demand, spec.gpu_count, spec.cpu_cores)
    return word


@external
def end_lease(asset: uint256, demand: uint256, stage: uint256, slash_bps: uint256) -> uint256:
    """
    @notice Moves a lease holding `demand` along (market only): LEASE_CLOSED (0) ends
            a running lease, LEASE_RESULT (1) ends it with a submitted result, which
            keeps the stake locked until RESULT_CLOSED (2) ends it as final or
            rejected; the first two free what the lease held. A non-zero `slash_bps`
            takes that share of the stake and sends it to the market (a fault).
    @param asset The asset.
    @param demand What the lease held, packed as in `open_lease` (0 for RESULT_CLOSED).
    @param stage LEASE_CLOSED, LEASE_RESULT or RESULT_CLOSED.
    @param slash_bps Share of the stake taken, basis points.
    @return Token base units slashed.
    """
    asset_stakes._check_market()
    asset_stakes._end(asset, demand, stage, 1)
    if slash_bps == 0:
        return 0
    return asset_stakes._slash(asset, slash_bps)


@external
def end_results(asset: uint256, demand: uint256, count: uint256):
    """
    @notice Ends `count` leases holding `demand` each with results (market only): as
            `count` LEASE_RESULT `end_lease` calls, for a batch of one asset's results.
    @param asset The asset.
    @param demand What each lease held, packed as in `open_lease`.
    @param count How many leases.
    """
    asset_stakes._check_market()
    asset_stakes._end(asset, demand, asset_stakes.LEASE_RESULT, count)


# ------------------------------------------------------------------ ERC-721 entry points


@external
def transferFrom(owner: address, receiver: address, token_id: uint256):
    """
    @notice Moves an asset with no lease open; its readers, stake and future
            earnings move with it, and its agent key is cleared.
    @param owner The current owner.
    @param receiver The new owner.
    @param token_id The asset.
    """
    self._check_transfer(owner, token_id)
    self._transfer(owner, receiver, token_id)


@external
def safeTransferFrom(owner: address, receiver: address, token_id: uint256, data: Bytes[1024] = b""):
    """
    @notice Moves an asset with no lease open (see `transferFrom`) and checks that a
            contract receiver accepts it.
    @param owner The current owner.
    @param receiver The new owner.
    @param token_id The asset.
    @param data Passed to the receiver's hook.
    """
    self._check_transfer(owner, token_id)
    self._transfer(owner, receiver, token_id)
    erc721._check_on_received(owner, receiver, token_id, data)


@external
def approve(approved: address, token_id: uint256):
    """
    @notice Lets `approved` move the asset (zero clears it).
    @param approved The approved address.
    @param token_id The asset.
    """
    owner: address = erc721._require_owner(token_id)
    if msg.sender != owner:
        # ERC-721: only the owner or an operator approves, not the approved address.
        assert not self._readers[token_id][msg.sender], "compute_asset: readers cannot manage"
        assert erc721.isApprovedForAll[owner][msg.sender], "compute_asset: caller is not owner nor operator"
    self._check_unexpired(token_id)
    assert approved != owner, "erc721: approval to current owner"
    erc721._approve(owner, approved, token_id)


# ------------------------------------------------------------------ ERC-7829


@external
def setReader(tokenId: uint256, reader: address, valid: bool):
    """
    @notice Grants or revokes `reader`'s right to read the asset's data.
    @param tokenId The asset.
    @param reader The reader.
    @param valid True to grant, false to revoke.
    """
    self._check_owner_or_operator(tokenId)
    self._check_unexpired(tokenId)
    assert reader != empty(address), "compute_asset: zero reader"
    self._readers[tokenId][reader] = valid
    log UpdateReader(tokenId=tokenId, reader=reader, valid=valid)


@external
@view
def isReader(tokenId: uint256, reader: address) -> bool:
    """
    @notice Whether `reader` may read the asset's data.
    @return True for readers.
    """
    return self._readers[tokenId][reader]


@external
@view
def commitByTokenId(tokenId: uint256) -> Bytes[32]:
    """
    @notice Hash of the asset's spec document and attestation evidence.
    @return 32 bytes.
    """
    erc721._require_owner(tokenId)
    return concat(self._commits[tokenId], b"")


@external
@view
def sizeByTokenId(tokenId: uint256) -> uint256:
    """
    @notice The asset's capacity: GPU count × VRAM per GPU, in MiB (0 for CPU-only nodes).
    @return MiB.
    """
    erc721._require_owner(tokenId)
    spec: asset_spec.Spec = asset_spec._unpack(self.spec_word[tokenId])
    return convert(spec.gpu_count, uint256) * convert(spec.vram_mib, uint256)


@external
@view
def expireByTokenId(tokenId: uint256) -> uint64:
    """
    @notice End of the listing, unix seconds.
    @return The expiry.
    """
    erc721._require_owner(tokenId)
    return asset_spec._unpack(self.spec_word[tokenId]).expire


@external
@view
def supportsInterface(interface_id: bytes4) -> bool:
    """
    @notice ERC-165.
    @return True for ERC-165, ERC-721 and ERC-7829.
    """
    return interface_id in [_IFACE_ERC165, _IFACE_ERC721, _IFACE_ERC7829]


# ------------------------------------------------------------------ internals


@internal
@view
def _check_owner_or_operator(token_id: uint256) -> address:
    """
    @dev The owner always may; otherwise an approved address or operator may,
         unless it is a reader of this token (ERC-7829).
    """
    owner: address = erc721._require_owner(token_id)
    if msg.sender == owner:
        return owner
    assert not self._readers[token_id][msg.sender], "compute_asset: readers cannot manage"
    assert erc721._is_operator(owner, token_id, msg.sender), "compute_asset: caller is not owner nor approved"
    return owner


@internal
@view
def _check_unexpired(token_id: uint256):
    """
    @dev ERC-7829: a token past its expiry cannot be transferred, approved or given readers.
    """
    expire: uint64 = asset_spec._unpack(self.spec_word[token_id]).expire
    assert block.timestamp <= convert(expire, uint256), "compute_asset: expired"


@internal
@view
def _check_transfer(owner: address, token_id: uint256):
    """
    @dev The caller may move the token, `owner` is its owner, it has not expired,
         and no lease is open on it: the seller's leases end under the seller.
    """
    assert self._check_owner_or_operator(token_id) == owner, "erc721: owner mismatch"
    self._check_unexpired(token_id)
    stake: asset_stakes.Stake = asset_stakes._stake(token_id)
    assert stake.open_leases == 0, "compute_asset: asset has open leases"
    assert stake.pending_results == 0, "compute_asset: asset has results that can still be challenged"


@internal
def _transfer(owner: address, receiver: address, token_id: uint256):
    """
    @dev Moves the token and clears its agent key, so the seller's agent can no
         longer decline or sign results its stake (now the buyer's) answers for.
    """
    erc721._transfer(owner, receiver, token_id)
    self.agentOf[token_id] = empty(address)
    log AgentChanged(asset=token_id, agent=empty(address))
