"""ComputeAsset unit tests: ERC-7829 rules, ERC-721, the asset registry, stakes and the
market hooks. Revert reasons are the contract's own strings, matched exactly."""

import ape
import pytest
from ape.utils import ZERO_ADDRESS
from eth_utils import function_signature_to_4byte_selector
from hypothesis import given
from hypothesis import strategies as st

from computenet.domain import ReplicaState, Spec

TOKEN = 10**6
H100 = 1
COMMIT = b"\x11" * 32
MAX_U8, MAX_U16, MAX_U32, MAX_U64 = 2**8 - 1, 2**16 - 1, 2**32 - 1, 2**64 - 1
SPEC_FIELDS = (
    "gpu_model",
    "vram_mib",
    "gpu_count",
    "cpu_cores",
    "region",
    "price",
    "expire",
    "active",
    "max_leases",
    "memory_mib",
    "disk_mib",
)

ERC7829_SIGNATURES = (
    "setReader(uint256,address,bool)",
    "isReader(uint256,address)",
    "commitByTokenId(uint256)",
    "sizeByTokenId(uint256)",
    "expireByTokenId(uint256)",
)


def erc7829_interface_id() -> bytes:
    """ERC-7829 publishes no id; ERC-165 defines it as the XOR of the interface's selectors."""
    value = 0
    for signature in ERC7829_SIGNATURES:
        value ^= int.from_bytes(function_signature_to_4byte_selector(signature), "big")
    return value.to_bytes(4, "big")


def spec_tuple(spec) -> tuple:
    return tuple(getattr(spec, f) for f in SPEC_FIELDS)


def only(receipt, event):
    logs = list(receipt.events.filter(event))
    assert len(logs) == 1, logs
    return logs[0]


def leased(assets, asset_id) -> tuple[int, int]:
    """(open leases, GPUs they hold) as the asset's stake counts them."""
    stake = assets.stake(asset_id)
    return stake.open_leases, stake.gpus_leased


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def reader(accounts):
    """Granted ERC-7829 read rights on assets; never the owner."""
    return accounts[14]


@pytest.fixture(scope="session")
def operator(accounts):
    """Approved for all of the provider's tokens."""
    return accounts[15]


@pytest.fixture
def asset(register_asset):
    """An unstaked asset owned by the provider (most ERC-721 tests need no stake)."""
    return register_asset(stake=0)


@pytest.fixture
def staked(register_asset):
    """An asset owned by the provider with 1,000 tokens staked."""
    return register_asset()


@pytest.fixture
def accepting(project, owner):
    return owner.deploy(project.ERC721ReceiverMock, True)


@pytest.fixture
def rejecting(project, owner):
    return owner.deploy(project.ERC721ReceiverMock, False)


@pytest.fixture
def no_hook(project, owner):
    return owner.deploy(project.NoReceiverMock)


@pytest.fixture
def expire_now(chain, assets):
    """Moves the next block just past the asset's expiry."""

    def move(asset_id):
        chain.pending_timestamp = assets.expireByTokenId(asset_id) + 1

    return move


@pytest.fixture
def lease(market, keeper, registered_keeper, post_job):
    """Opens a lease on `asset` through the market; returns (job, shard, replica)."""

    def open_(asset_id):
        job = post_job()
        market.assign(job, 0, asset_id, sender=keeper)
        return job, 0, 0

    return open_


# ================================================================ ERC-7829


def test_set_reader_grants_and_revokes(assets, asset, provider, reader):
    assert not assets.isReader(asset, reader)
    receipt = assets.setReader(asset, reader, True, sender=provider)
    log = only(receipt, assets.UpdateReader)
    assert (log.tokenId, log.reader, log.valid) == (asset, reader.address, True)
    assert assets.isReader(asset, reader)

    receipt = assets.setReader(asset, reader, False, sender=provider)
    assert not only(receipt, assets.UpdateReader).valid
    assert not assets.isReader(asset, reader)


def test_readers_are_per_token(assets, register_asset, provider, reader):
    first, second = register_asset(stake=0), register_asset(stake=0)
    assets.setReader(first, reader, True, sender=provider)
    assert assets.isReader(first, reader)
    assert not assets.isReader(second, reader)


def test_set_reader_zero_address(assets, asset, provider):
    with ape.reverts("compute_asset: zero reader"):
        assets.setReader(asset, ZERO_ADDRESS, True, sender=provider)


def test_set_reader_by_stranger(assets, asset, stranger, reader):
    with ape.reverts("compute_asset: caller is not owner nor approved"):
        assets.setReader(asset, reader, True, sender=stranger)


@pytest.mark.parametrize("how", ["approved", "operator"])
def test_set_reader_by_approved_or_operator(assets, asset, provider, operator, reader, how):
    """ERC-7829: the owner or an approved operator may set readers."""
    if how == "approved":
        assets.approve(operator, asset, sender=provider)
    else:
        assets.setApprovalForAll(operator, True, sender=provider)
    assets.setReader(asset, reader, True, sender=operator)
    assert assets.isReader(asset, reader)


def test_commit_by_token_id_returns_the_32_byte_commit(assets, register_asset):
    commit = bytes(range(32))
    asset_id = register_asset(stake=0, commit=commit)
    value = assets.commitByTokenId(asset_id)
    assert len(value) == 32
    assert bytes(value) == commit


def test_size_is_gpu_count_times_vram(assets, register_asset):
    asset_id = register_asset(stake=0, gpu_count=8, vram_mib=81_920)
    assert assets.sizeByTokenId(asset_id) == 8 * 81_920


def test_expire_by_token_id(assets, register_asset, now):
    expire = now() + 12_345
    asset_id = register_asset(stake=0, expire=expire)
    assert assets.expireByTokenId(asset_id) == expire


@pytest.mark.parametrize("view", ["commitByTokenId", "sizeByTokenId", "expireByTokenId", "spec", "ownerOf"])
def test_unknown_token_reads_revert(assets, asset, view):
    with ape.reverts("erc721: unknown token"):
        getattr(assets, view)(asset + 1)


def test_set_reader_unknown_token(assets, asset, provider, reader):
    with ape.reverts("erc721: unknown token"):
        assets.setReader(asset + 1, reader, True, sender=provider)


def test_readers_survive_transfer(assets, asset, provider, provider2, reader):
    assets.setReader(asset, reader, True, sender=provider)
    assets.transferFrom(provider, provider2, asset, sender=provider)
    assert assets.ownerOf(asset) == provider2
    assert assets.isReader(asset, reader)


def test_transfer_sets_owner_and_clears_approval(assets, asset, provider, provider2, operator):
    """ERC-7829: on transfer the owner becomes the recipient and the approved address is reset."""
    assets.approve(operator, asset, sender=provider)
    assets.transferFrom(provider, provider2, asset, sender=provider)
    assert assets.ownerOf(asset) == provider2
    assert assets.getApproved(asset) == ZERO_ADDRESS
    with ape.reverts("compute_asset: caller is not owner nor approved"):
        assets.transferFrom(provider2, operator, asset, sender=operator)


def test_expired_asset_cannot_be_transferred(assets, asset, provider, provider2, expire_now):
    expire_now(asset)
    with ape.reverts("compute_asset: expired"):
        assets.transferFrom(provider, provider2, asset, sender=provider)


def test_expired_asset_cannot_be_safe_transferred(assets, asset, provider, provider2, expire_now):
    expire_now(asset)
    with ape.reverts("compute_asset: expired"):
        assets.safeTransferFrom(provider, provider2, asset, sender=provider)
    with ape.reverts("compute_asset: expired"):
        assets.safeTransferFrom(provider, provider2, asset, b"data", sender=provider)


def test_expired_asset_cannot_be_approved(assets, asset, provider, operator, expire_now):
    expire_now(asset)
    with ape.reverts("compute_asset: expired"):
        assets.approve(operator, asset, sender=provider)


def test_expired_asset_readers_cannot_be_set(assets, asset, provider, reader, expire_now):
    expire_now(asset)
    with ape.reverts("compute_asset: expired"):
        assets.setReader(asset, reader, True, sender=provider)


def test_expired_asset_cannot_be_moved_by_operator(assets, asset, provider, provider2, operator, expire_now):
    assets.setApprovalForAll(operator, True, sender=provider)
    expire_now(asset)
    with ape.reverts("compute_asset: expired"):
        assets.transferFrom(provider, provider2, asset, sender=operator)


def test_asset_moves_until_its_last_second(chain, assets, asset, provider, provider2):
    """The check is `block.timestamp > expire`: the expiry second itself is still valid."""
    expire = assets.expireByTokenId(asset)
    chain.pending_timestamp = expire
    receipt = assets.transferFrom(provider, provider2, asset, sender=provider)
    assert receipt.timestamp == expire
    assert assets.ownerOf(asset) == provider2


def test_renew_revives_an_expired_asset(chain, assets, asset, provider, provider2, reader, expire_now):
    expire_now(asset)
    assets.renew(asset, chain.pending_timestamp + 1_000, sender=provider)
    assets.setReader(asset, reader, True, sender=provider)
    assets.transferFrom(provider, provider2, asset, sender=provider)
    assert assets.ownerOf(asset) == provider2
    assert assets.isReader(asset, reader)


@pytest.fixture(params=["approved", "operator"])
def reader_with_rights(request, assets, asset, provider, reader):
    """A reader that the owner also approved for this token, or for all its tokens."""
    assets.setReader(asset, reader, True, sender=provider)
    if request.param == "approved":
        assets.approve(reader, asset, sender=provider)
    else:
        assets.setApprovalForAll(reader, True, sender=provider)
    return reader


def test_reader_cannot_transfer(assets, asset, provider, provider2, reader_with_rights):
    with ape.reverts("compute_asset: readers cannot manage"):
        assets.transferFrom(provider, provider2, asset, sender=reader_with_rights)
    with ape.reverts("compute_asset: readers cannot manage"):
        assets.safeTransferFrom(provider, provider2, asset, sender=reader_with_rights)
    assert assets.ownerOf(asset) == provider


def test_reader_cannot_approve(assets, asset, provider2, reader_with_rights):
    with ape.reverts("compute_asset: readers cannot manage"):
        assets.approve(provider2, asset, sender=reader_with_rights)


def test_reader_cannot_set_readers(assets, asset, provider2, reader_with_rights):
    with ape.reverts("compute_asset: readers cannot manage"):
        assets.setReader(asset, provider2, True, sender=reader_with_rights)
    with ape.reverts("compute_asset: readers cannot manage"):
        assets.setReader(asset, reader_with_rights, False, sender=reader_with_rights)


def test_reader_rights_are_per_token(assets, register_asset, provider, provider2, reader):
    """An operator that reads one token still manages the owner's other tokens."""
    read, other = register_asset(stake=0), register_asset(stake=0)
    assets.setApprovalForAll(reader, True, sender=provider)
    assets.setReader(read, reader, True, sender=provider)
    assets.transferFrom(provider, provider2, other, sender=reader)
    assert assets.ownerOf(other) == provider2


def test_erc7829_interface_id_matches_the_selectors():
    assert erc7829_interface_id() == bytes.fromhex("f7e5dae0")


@pytest.mark.parametrize(
    "interface_id, supported",
    [
        (bytes.fromhex("01ffc9a7"), True),  # ERC-165
        (bytes.fromhex("80ac58cd"), True),  # ERC-721
        (erc7829_interface_id(), True),
        (bytes.fromhex("ffffffff"), False),  # ERC-165: must be false
        (bytes.fromhex("5b5e139f"), False),  # ERC-721 metadata: not claimed
        (bytes.fromhex("3c9b2a61"), False),  # arbitrary
    ],
)
def test_supports_interface(assets, interface_id, supported):
    assert assets.supportsInterface(interface_id) is supported


# ================================================================ ERC-721


def test_name_symbol_total_supply(assets, register_asset):
    assert assets.name() == "computenet compute asset"
    assert assets.symbol() == "CNODE"
    assert assets.totalSupply() == 0
    register_asset(stake=0)
    register_asset(stake=0)
    assert assets.totalSupply() == 2


def test_balance_of(assets, register_asset, provider, provider2, stranger):
    register_asset(stake=0)
    register_asset(stake=0)
    register_asset(stake=0, owner=provider2)
    assert assets.balanceOf(provider) == 2
    assert assets.balanceOf(provider2) == 1
    assert assets.balanceOf(stranger) == 0


def test_balance_of_zero_address(assets):
    with ape.reverts("erc721: zero address"):
        assets.balanceOf(ZERO_ADDRESS)


def test_owner_of(assets, register_asset, provider, provider2):
    a = register_asset(stake=0)
    b = register_asset(stake=0, owner=provider2)
    assert assets.ownerOf(a) == provider
    assert assets.ownerOf(b) == provider2


def test_approve(assets, asset, provider, operator):
    assert assets.getApproved(asset) == ZERO_ADDRESS
    receipt = assets.approve(operator, asset, sender=provider)
    log = only(receipt, assets.Approval)
    assert (log.owner, log.approved, log.token_id) == (provider.address, operator.address, asset)
    assert assets.getApproved(asset) == operator


def test_get_approved_unknown_token(assets, asset):
    with ape.reverts("erc721: unknown token"):
        assets.getApproved(asset + 1)


def test_approve_zero_clears(assets, asset, provider, operator):
    assets.approve(operator, asset, sender=provider)
    receipt = assets.approve(ZERO_ADDRESS, asset, sender=provider)
    assert only(receipt, assets.Approval).approved == ZERO_ADDRESS
    assert assets.getApproved(asset) == ZERO_ADDRESS


def test_approve_to_current_owner(assets, asset, provider):
    with ape.reverts("erc721: approval to current owner"):
        assets.approve(provider, asset, sender=provider)


def test_approve_by_stranger(assets, asset, stranger):
    with ape.reverts("compute_asset: caller is not owner nor operator"):
        assets.approve(stranger, asset, sender=stranger)


def test_approve_unknown_token(assets, asset, provider, operator):
    with ape.reverts("erc721: unknown token"):
        assets.approve(operator, asset + 1, sender=provider)


def test_approve_by_operator(assets, asset, provider, provider2, operator):
    """ERC-721: an authorised operator of the owner may approve; the event names the owner."""
    assets.setApprovalForAll(operator, True, sender=provider)
    receipt = assets.approve(provider2, asset, sender=operator)
    assert only(receipt, assets.Approval).owner == provider.address
    assert assets.getApproved(asset) == provider2


def test_approved_address_cannot_approve(assets, asset, provider, provider2, operator):
    """ERC-721: approve throws unless the caller is the owner or an operator for all."""
    assets.approve(operator, asset, sender=provider)
    with ape.reverts("compute_asset: caller is not owner nor operator"):
        assets.approve(provider2, asset, sender=operator)


def test_set_approval_for_all(assets, provider, operator):
    receipt = assets.setApprovalForAll(operator, True, sender=provider)
    log = only(receipt, assets.ApprovalForAll)
    assert (log.owner, log.operator, log.approved) == (provider.address, operator.address, True)
    assert assets.isApprovedForAll(provider, operator)

    receipt = assets.setApprovalForAll(operator, False, sender=provider)
    assert not only(receipt, assets.ApprovalForAll).approved
    assert not assets.isApprovedForAll(provider, operator)


def test_set_approval_for_all_to_caller(assets, provider):
    with ape.reverts("erc721: approve to caller"):
        assets.setApprovalForAll(provider, True, sender=provider)


@pytest.mark.parametrize("by", ["owner", "approved", "operator"])
def test_transfer_from(assets, asset, provider, provider2, operator, by):
    if by == "approved":
        assets.approve(operator, asset, sender=provider)
    elif by == "operator":
        assets.setApprovalForAll(operator, True, sender=provider)
    caller = provider if by == "owner" else operator
    receipt = assets.transferFrom(provider, provider2, asset, sender=caller)
    log = only(receipt, assets.Transfer)
    assert (log.sender, log.receiver, log.token_id) == (provider.address, provider2.address, asset)
    assert assets.ownerOf(asset) == provider2
    assert assets.balanceOf(provider) == 0
    assert assets.balanceOf(provider2) == 1
    assert assets.getApproved(asset) == ZERO_ADDRESS


def test_transfer_from_by_stranger(assets, asset, provider, stranger):
    with ape.reverts("compute_asset: caller is not owner nor approved"):
        assets.transferFrom(provider, stranger, asset, sender=stranger)


def test_transfer_from_wrong_owner(assets, asset, provider, provider2, stranger):
    with ape.reverts("erc721: owner mismatch"):
        assets.transferFrom(stranger, provider2, asset, sender=provider)


def test_transfer_from_to_zero_address(assets, asset, provider):
    with ape.reverts("erc721: transfer to zero address"):
        assets.transferFrom(provider, ZERO_ADDRESS, asset, sender=provider)


def test_transfer_from_unknown_token(assets, asset, provider, provider2):
    with ape.reverts("erc721: unknown token"):
        assets.transferFrom(provider, provider2, asset + 1, sender=provider)


def test_operator_loses_rights_when_revoked(assets, asset, provider, provider2, operator):
    assets.setApprovalForAll(operator, True, sender=provider)
    assets.setApprovalForAll(operator, False, sender=provider)
    with ape.reverts("compute_asset: caller is not owner nor approved"):
        assets.transferFrom(provider, provider2, asset, sender=operator)


@pytest.mark.parametrize("data", [None, b"", b"\x01\x02hello"])
def test_safe_transfer_to_eoa(assets, asset, provider, provider2, data):
    args = (provider, provider2, asset) if data is None else (provider, provider2, asset, data)
    receipt = assets.safeTransferFrom(*args, sender=provider)
    assert only(receipt, assets.Transfer).receiver == provider2.address
    assert assets.ownerOf(asset) == provider2


@pytest.mark.parametrize("data", [None, b"job spec v1"])
def test_safe_transfer_to_accepting_contract(assets, asset, provider, operator, accepting, data):
    """The hook gets the caller as operator, the previous owner, the token and the data."""
    assets.setApprovalForAll(operator, True, sender=provider)
    args = (provider, accepting, asset) if data is None else (provider, accepting, asset, data)
    assets.safeTransferFrom(*args, sender=operator)
    assert assets.ownerOf(asset) == accepting.address
    assert accepting.calls() == 1
    assert accepting.last_operator() == operator
    assert accepting.last_owner() == provider
    assert accepting.last_token_id() == asset
    assert bytes(accepting.last_data()) == (data or b"")


def test_safe_transfer_to_rejecting_contract(assets, asset, provider, rejecting):
    with ape.reverts("erc721: receiver rejected the token"):
        assets.safeTransferFrom(provider, rejecting, asset, b"x", sender=provider)
    assert assets.ownerOf(asset) == provider


def test_safe_transfer_to_contract_without_hook(assets, asset, provider, no_hook):
    with ape.reverts():
        assets.safeTransferFrom(provider, no_hook, asset, sender=provider)
    assert assets.ownerOf(asset) == provider


def test_plain_transfer_to_contract_skips_the_hook(assets, asset, provider, rejecting):
    assets.transferFrom(provider, rejecting, asset, sender=provider)
    assert assets.ownerOf(asset) == rejecting.address
    assert rejecting.calls() == 0


def test_safe_transfer_checks(assets, asset, provider, provider2, stranger):
    with ape.reverts("compute_asset: caller is not owner nor approved"):
        assets.safeTransferFrom(provider, stranger, asset, sender=stranger)
    with ape.reverts("erc721: owner mismatch"):
        assets.safeTransferFrom(stranger, provider2, asset, sender=provider)
    with ape.reverts("erc721: transfer to zero address"):
        assets.safeTransferFrom(provider, ZERO_ADDRESS, asset, sender=provider)


# ================================================================ registry


def test_register(assets, provider, agent, make_spec):
    spec = make_spec(gpu_model=H100, vram_mib=81_920, gpu_count=4, cpu_cores=64, region=276, price=250)
    commit = b"\xab" * 32
    receipt = assets.register(spec.as_tuple(), agent, commit, sender=provider)

    log = only(receipt, assets.AssetRegistered)
    assert log.asset == 1
    assert (log.owner, log.agent) == (provider.address, agent.address)
    assert (log.gpu_model, log.vram_mib, log.gpu_count, log.cpu_cores, log.region, log.price, log.expire) == (
        spec.as_tuple()[:7]
    )
    assert log.max_leases == spec.max_leases
    assert bytes(log.commit) == commit
    assert (log.memory_mib, log.disk_mib) == (spec.memory_mib, spec.disk_mib)
    mint = only(receipt, assets.Transfer)
    assert (mint.sender, mint.receiver, mint.token_id) == (ZERO_ADDRESS, provider.address, 1)

    assert assets.ownerOf(1) == provider
    assert assets.agentOf(1) == agent
    assert spec_tuple(assets.spec(1)) == spec.as_tuple()
    assert bytes(assets.commitByTokenId(1)) == commit
    assert assets.sizeByTokenId(1) == 4 * 81_920


def test_register_ids_are_sequential(assets, register_asset, provider2):
    assert [register_asset(stake=0), register_asset(stake=0, owner=provider2), register_asset(stake=0)] == [1, 2, 3]
    assert assets.ownerOf(2) == provider2


def test_register_forces_active(assets, provider, agent, make_spec):
    spec = make_spec(active=False)
    assets.register(spec.as_tuple(), agent, COMMIT, sender=provider)
    assert assets.spec(1).active is True


def test_register_cpu_only_asset(assets, provider, agent, make_spec):
    spec = make_spec(gpu_model=0, gpu_count=0, vram_mib=0, cpu_cores=32)
    assets.register(spec.as_tuple(), agent, COMMIT, sender=provider)
    assert spec_tuple(assets.spec(1)) == spec.as_tuple()
    assert assets.sizeByTokenId(1) == 0


def test_register_zero_agent(assets, provider, make_spec):
    with ape.reverts("compute_asset: zero agent"):
        assets.register(make_spec().as_tuple(), ZERO_ADDRESS, COMMIT, sender=provider)


@pytest.mark.parametrize(
    "overrides, reason",
    [
        (dict(cpu_cores=0), "compute_asset: no cpu cores"),
        (dict(memory_mib=0), "compute_asset: no memory or disk"),
        (dict(disk_mib=0), "compute_asset: no memory or disk"),
        (dict(gpu_count=2, vram_mib=0), "compute_asset: gpu without vram"),
        (dict(gpu_count=0, gpu_model=H100), "compute_asset: gpu model without gpus"),
    ],
)
def test_register_invalid_spec(assets, provider, agent, make_spec, overrides, reason):
    with ape.reverts(reason):
        assets.register(make_spec(**overrides).as_tuple(), agent, COMMIT, sender=provider)


@pytest.mark.parametrize("offset", [-1, 0])
def test_register_expiry_in_the_past(chain, assets, provider, agent, make_spec, offset):
    """The expiry must be strictly after the registering block."""
    block_time = chain.pending_timestamp
    chain.pending_timestamp = block_time  # pin the registering block's timestamp
    expire = block_time + offset
    with ape.reverts("compute_asset: expiry in the past"):
        assets.register(make_spec(expire=expire).as_tuple(), agent, COMMIT, sender=provider)


def test_register_nothing_on_revert(assets, provider, agent, make_spec):
    with ape.reverts("compute_asset: no cpu cores"):
        assets.register(make_spec(cpu_cores=0).as_tuple(), agent, COMMIT, sender=provider)
    assert assets.totalSupply() == 0
    assert assets.balanceOf(provider) == 0


def test_set_price(assets, asset, provider):
    before = spec_tuple(assets.spec(asset))
    receipt = assets.set_price(asset, 777, sender=provider)
    log = only(receipt, assets.PriceUpdated)
    assert (log.asset, log.price) == (asset, 777)
    after = spec_tuple(assets.spec(asset))
    assert after[5] == 777
    assert after[:5] + after[6:] == before[:5] + before[6:]


def test_pause_and_resume(assets, asset, provider):
    receipt = assets.pause(asset, sender=provider)
    assert only(receipt, assets.AssetPaused).asset == asset
    assert assets.spec(asset).active is False
    with ape.reverts("compute_asset: already paused"):
        assets.pause(asset, sender=provider)

    receipt = assets.resume(asset, sender=provider)
    assert only(receipt, assets.AssetResumed).asset == asset
    assert assets.spec(asset).active is True
    with ape.reverts("compute_asset: not paused"):
        assets.resume(asset, sender=provider)


def test_renew(assets, asset, provider, now):
    expire = now() + 365 * 86_400
    receipt = assets.renew(asset, expire, sender=provider)
    log = only(receipt, assets.AssetRenewed)
    assert (log.asset, log.expire) == (asset, expire)
    assert assets.expireByTokenId(asset) == expire
    assert assets.spec(asset).expire == expire


def test_renew_expiry_in_the_past(chain, assets, asset, provider):
    with ape.reverts("compute_asset: expiry in the past"):
        assets.renew(asset, chain.blocks.head.timestamp, sender=provider)


def test_set_agent(assets, asset, provider, agents):
    receipt = assets.set_agent(asset, agents[1], sender=provider)
    log = only(receipt, assets.AgentChanged)
    assert (log.asset, log.agent) == (asset, agents[1].address)
    assert assets.agentOf(asset) == agents[1]


def test_set_agent_zero(assets, asset, provider):
    with ape.reverts("compute_asset: zero agent"):
        assets.set_agent(asset, ZERO_ADDRESS, sender=provider)


def test_set_commit(assets, asset, provider):
    commit = b"\x5c" * 32
    receipt = assets.set_commit(asset, commit, sender=provider)
    log = only(receipt, assets.CommitUpdated)
    assert (log.asset, bytes(log.commit)) == (asset, commit)
    assert bytes(assets.commitByTokenId(asset)) == commit


MANAGER_CALLS = {
    "set_price": lambda a, asset, who, now: a.set_price(asset, 5, sender=who),
    "pause": lambda a, asset, who, now: a.pause(asset, sender=who),
    "renew": lambda a, asset, who, now: a.renew(asset, now + 86_400, sender=who),
    "set_agent": lambda a, asset, who, now: a.set_agent(asset, who, sender=who),
    "set_commit": lambda a, asset, who, now: a.set_commit(asset, b"\x01" * 32, sender=who),
}


@pytest.mark.parametrize("call", MANAGER_CALLS)
def test_manager_call_by_stranger(assets, asset, stranger, now, call):
    with ape.reverts("compute_asset: caller is not owner nor approved"):
        MANAGER_CALLS[call](assets, asset, stranger, now())


@pytest.mark.parametrize("how", ["approved", "operator"])
@pytest.mark.parametrize("call", MANAGER_CALLS)
def test_manager_call_by_approved_or_operator(assets, asset, provider, operator, now, call, how):
    if how == "approved":
        assets.approve(operator, asset, sender=provider)
    else:
        assets.setApprovalForAll(operator, True, sender=provider)
    before = (spec_tuple(assets.spec(asset)), assets.agentOf(asset), bytes(assets.commitByTokenId(asset)))
    MANAGER_CALLS[call](assets, asset, operator, now())
    after = (spec_tuple(assets.spec(asset)), assets.agentOf(asset), bytes(assets.commitByTokenId(asset)))
    assert after != before


def test_resume_by_operator(assets, asset, provider, operator, stranger):
    assets.pause(asset, sender=provider)
    with ape.reverts("compute_asset: caller is not owner nor approved"):
        assets.resume(asset, sender=stranger)
    assets.setApprovalForAll(operator, True, sender=provider)
    assets.resume(asset, sender=operator)
    assert assets.spec(asset).active is True


@pytest.mark.parametrize("call", MANAGER_CALLS)
def test_manager_call_by_reader(assets, asset, provider, reader, now, call):
    """A reader may not manage even when it is also an operator."""
    assets.setReader(asset, reader, True, sender=provider)
    assets.setApprovalForAll(reader, True, sender=provider)
    with ape.reverts("compute_asset: readers cannot manage"):
        MANAGER_CALLS[call](assets, asset, reader, now())


@pytest.mark.parametrize("call", MANAGER_CALLS)
def test_manager_call_unknown_asset(assets, asset, provider, now, call):
    with ape.reverts("erc721: unknown token"):
        MANAGER_CALLS[call](assets, asset + 1, provider, now())


def test_new_owner_manages_old_owner_does_not(assets, asset, provider, provider2):
    assets.transferFrom(provider, provider2, asset, sender=provider)
    with ape.reverts("compute_asset: caller is not owner nor approved"):
        assets.set_price(asset, 1, sender=provider)
    assets.set_price(asset, 1, sender=provider2)
    assert assets.spec(asset).price == 1


def test_spec_packing_extremes(assets, provider, agent):
    spec = Spec(MAX_U32, MAX_U32, MAX_U8, MAX_U16, MAX_U16, MAX_U64, MAX_U64, True, MAX_U16, MAX_U32, MAX_U32)
    assets.register(spec.as_tuple(), agent, COMMIT, sender=provider)
    assert spec_tuple(assets.spec(1)) == spec.as_tuple()
    assert assets.sizeByTokenId(1) == MAX_U8 * MAX_U32
    assert assets.expireByTokenId(1) == MAX_U64


def test_spec_packing_minimums(chain, assets, provider, agent):
    block_time = chain.pending_timestamp
    chain.pending_timestamp = block_time  # the earliest valid expiry is one second later
    spec = Spec(0, 0, 0, 1, 0, 0, block_time + 1, memory_mib=1, disk_mib=1)
    assets.register(spec.as_tuple(), agent, COMMIT, sender=provider)
    assert spec_tuple(assets.spec(1)) == spec.as_tuple()


@st.composite
def valid_specs(draw):
    gpu_count = draw(st.integers(0, MAX_U8))
    return Spec(
        gpu_model=draw(st.integers(0, MAX_U32)) if gpu_count else 0,
        vram_mib=draw(st.integers(1 if gpu_count else 0, MAX_U32)),
        gpu_count=gpu_count,
        cpu_cores=draw(st.integers(1, MAX_U16)),
        region=draw(st.integers(0, MAX_U16)),
        price=draw(st.integers(0, MAX_U64)),
        # Well past any test chain's clock; `test_spec_packing_minimums` covers near-now.
        expire=draw(st.integers(2**34, MAX_U64)),
        active=draw(st.booleans()),
        max_leases=draw(st.integers(1, MAX_U16)),
        memory_mib=draw(st.integers(1, MAX_U32)),
        disk_mib=draw(st.integers(1, MAX_U32)),
    )


@given(spec=valid_specs())
def test_spec_round_trip(assets, provider, agent, spec):
    receipt = assets.register(spec.as_tuple(), agent, COMMIT, sender=provider)
    asset_id = only(receipt, assets.AssetRegistered).asset
    stored = assets.spec(asset_id)
    assert spec_tuple(stored)[:7] == spec.as_tuple()[:7]
    assert stored.active is True
    assert stored.max_leases == spec.max_leases
    assert (stored.memory_mib, stored.disk_mib) == (spec.memory_mib, spec.disk_mib)
    assert assets.sizeByTokenId(asset_id) == spec.gpu_count * spec.vram_mib


def test_register_zero_lease_capacity(assets, provider, agent, make_spec):
    with ape.reverts("compute_asset: zero lease capacity"):
        assets.register(make_spec(max_leases=0).as_tuple(), agent, COMMIT, sender=provider)


def test_set_capacity(assets, asset, provider, stranger):
    receipt = assets.set_capacity(asset, 3, sender=provider)
    assert (only(receipt, assets.CapacityUpdated).asset, only(receipt, assets.CapacityUpdated).max_leases) == (asset, 3)
    assert assets.spec(asset).max_leases == 3
    with ape.reverts("compute_asset: zero lease capacity"):
        assets.set_capacity(asset, 0, sender=provider)
    with ape.reverts("compute_asset: caller is not owner nor approved"):
        assets.set_capacity(asset, 2, sender=stranger)


def test_lease_capacity_caps_open_leases(
    assets, market, provider, agent, register_asset, post_job, keeper, registered_keeper
):
    """No one can pile more leases on an asset than it offers, to have them expire and slash it,
    even while it has GPUs free."""
    asset = register_asset(max_leases=2, gpu_count=3)
    job = post_job(shard_count=3)
    market.assign(job, 0, asset, sender=keeper)
    market.assign(job, 1, asset, sender=keeper)
    with ape.reverts("asset_stakes: asset at lease capacity"):
        market.assign(job, 2, asset, sender=keeper)
    assert assets.stake(asset).open_leases == 2
    assets.set_capacity(asset, 3, sender=provider)
    market.assign(job, 2, asset, sender=keeper)
    assert assets.stake(asset).open_leases == 3


@pytest.fixture
def end_lease(chain, market, court, agent, keeper, stranger, verifier, facilitator, params, submit):
    """Ends an assigned replica's lease the way `how` says: finalize (after a result),
    decline (by the agent), reclaim (after it expired) or reject (a ruling against its result)."""

    def end(job, shard, replica, how):
        if how == "decline":
            market.decline(job, shard, replica, b"\x00" * 32, sender=agent)
        elif how == "reclaim":
            chain.mine(deltatime=market.job(job).requirements.max_gpu_seconds + params.lease_grace + 1)
            market.reclaim(job, shard, replica, sender=stranger)
        else:
            submit(agent, job, shard, replica, output_root=b"\x42" * 32)
            if how == "reject":
                court.challenge(job, shard, sender=verifier)
                court.resolve(job, shard, b"\x43" * 32, sender=facilitator)
            else:
                chain.mine(deltatime=params.challenge_window + 1)
                market.finalize(job, shard, sender=keeper)

    return end


@pytest.mark.parametrize("how", ["finalize", "decline", "reclaim", "reject"])
def test_one_gpu_asset_takes_one_gpu_lease_at_a_time(
    assets, market, keeper, registered_keeper, register_asset, post_job, end_lease, how
):
    """Room for three leases but one GPU: a second 1-GPU lease waits until the first ends,
    however it ends."""
    asset = register_asset(gpu_count=1, max_leases=3)
    job = post_job(shard_count=2)
    market.assign(job, 0, asset, sender=keeper)
    assert leased(assets, asset) == (1, 1)
    with ape.reverts("asset_stakes: asset gpus all leased"):
        market.assign(job, 1, asset, sender=keeper)

    end_lease(job, 0, 0, how)
    assert market.replica(job, 0, 0).state == (ReplicaState.FINALIZED if how == "finalize" else ReplicaState.OPEN)
    assert leased(assets, asset) == (0, 0)
    market.assign(job, 1, asset, sender=keeper)
    assert leased(assets, asset) == (1, 1)


def test_four_gpu_asset_takes_two_two_gpu_leases(
    assets, market, keeper, registered_keeper, register_asset, post_job, end_lease
):
    asset = register_asset(gpu_count=4)
    job = post_job(shard_count=3, gpu_count=2)
    market.assign(job, 0, asset, sender=keeper)
    market.assign(job, 1, asset, sender=keeper)
    assert leased(assets, asset) == (2, 4)
    with ape.reverts("asset_stakes: asset gpus all leased"):
        market.assign(job, 2, asset, sender=keeper)

    end_lease(job, 1, 0, "finalize")
    assert leased(assets, asset) == (1, 2)
    market.assign(job, 2, asset, sender=keeper)
    assert leased(assets, asset) == (2, 4)


def test_cpu_leases_are_bounded_only_by_max_leases(assets, market, keeper, registered_keeper, register_asset, post_job):
    """CPU work (gpu_count 0) holds no GPU: an asset whose GPU is leased still takes it up to
    max_leases, and a CPU-only asset takes it but no GPU lease."""
    asset = register_asset(gpu_count=1, max_leases=3)
    market.assign(post_job(), 0, asset, sender=keeper)
    cpu = post_job(shard_count=3, gpu_count=0, min_vram_mib=0)
    market.assign(cpu, 0, asset, sender=keeper)
    market.assign(cpu, 1, asset, sender=keeper)
    assert leased(assets, asset) == (3, 1)
    with ape.reverts("asset_stakes: asset at lease capacity"):
        market.assign(cpu, 2, asset, sender=keeper)

    cpu_only = register_asset(gpu_model=0, gpu_count=0, vram_mib=0)
    with ape.reverts("job_market: asset has too few gpus"):
        market.assign(post_job(), 0, cpu_only, sender=keeper)
    market.assign(cpu, 2, cpu_only, sender=keeper)
    assert leased(assets, cpu_only) == (1, 0)


# ---------------------------------------------------------------- CPU cores, memory and disk


def holdings(assets, token, market, asset):
    """Everything an assignment could move: the asset's stake record, what its leases hold, and
    the market's tokens."""
    return tuple(assets.stake(asset)), tuple(assets.leased(asset)), token.balanceOf(market)


@pytest.mark.parametrize(
    "need, reason",
    [
        (dict(cpu_cores=9), "compute_asset: asset has too few cpu cores"),
        (dict(memory_mib=4_097), "compute_asset: asset has too little memory"),
        (dict(disk_mib=8_193), "compute_asset: asset has too little disk"),
    ],
)
def test_an_asset_too_small_for_a_job_is_never_leased_to_it(
    assets, market, token, keeper, registered_keeper, register_asset, post_job, need, reason
):
    """Its whole offer is less than one lease of the job asks: refused, and nothing moves."""
    asset = register_asset(cpu_cores=8, memory_mib=4_096, disk_mib=8_192, max_leases=4)
    job = post_job(**need)
    before = holdings(assets, token, market, asset)
    with ape.reverts(reason):
        market.assign(job, 0, asset, sender=keeper)
    assert holdings(assets, token, market, asset) == before == ((1_000 * TOKEN, 0, 0, 0, 0, 0), (0, 0, 0), before[2])
    assert market.replica(job, 0, 0).state == ReplicaState.OPEN
    # Exactly what it has is enough.
    exact = post_job(cpu_cores=8, memory_mib=4_096, disk_mib=8_192)
    market.assign(exact, 0, asset, sender=keeper)
    assert tuple(assets.leased(asset)) == (8, 4_096, 8_192)


@pytest.mark.parametrize(
    "need, reason",
    [
        (dict(cpu_cores=2, memory_mib=1, disk_mib=1), "asset_stakes: asset cpu cores all leased"),
        (dict(cpu_cores=1, memory_mib=2_000, disk_mib=1), "asset_stakes: asset memory all leased"),
        (dict(cpu_cores=1, memory_mib=1, disk_mib=3_000), "asset_stakes: asset disk all leased"),
    ],
)
@pytest.mark.parametrize("how", ["finalize", "decline", "reclaim", "reject"])
def test_leases_together_hold_no_more_cpu_memory_or_disk_than_the_asset_offers(
    assets, market, token, keeper, registered_keeper, register_asset, post_job, end_lease, need, reason, how
):
    """Two leases fit on a 5-core, 5,000 MiB memory, 8,000 MiB disk asset, a third does not
    while they run (GPUs and lease capacity to spare), and fits once one ends, however it ends."""
    asset = register_asset(gpu_count=0, gpu_model=0, vram_mib=0, cpu_cores=5, memory_mib=5_000, disk_mib=8_000)
    job = post_job(shard_count=3, gpu_count=0, min_vram_mib=0, **need)
    market.assign(job, 0, asset, sender=keeper)
    market.assign(job, 1, asset, sender=keeper)
    assert tuple(assets.leased(asset)) == tuple(2 * need[k] for k in ("cpu_cores", "memory_mib", "disk_mib"))
    before = holdings(assets, token, market, asset)
    with ape.reverts(reason):
        market.assign(job, 2, asset, sender=keeper)
    assert holdings(assets, token, market, asset) == before
    assert market.replica(job, 2, 0).state == ReplicaState.OPEN

    end_lease(job, 0, 0, how)
    assert tuple(assets.leased(asset)) == tuple(need[k] for k in ("cpu_cores", "memory_mib", "disk_mib"))
    market.assign(job, 2, asset, sender=keeper)
    assert tuple(assets.leased(asset)) == tuple(2 * need[k] for k in ("cpu_cores", "memory_mib", "disk_mib"))


def test_a_submitted_result_frees_cpu_memory_and_disk_at_once(
    assets, market, agent, keeper, registered_keeper, register_asset, post_job, submit
):
    """The lease ends with its result: the next lease may use the resources while the result
    can still be challenged."""
    asset = register_asset(cpu_cores=4, memory_mib=2_048, disk_mib=2_048, gpu_count=2)
    job = post_job(shard_count=2, cpu_cores=4, memory_mib=2_048, disk_mib=2_048)
    market.assign(job, 0, asset, sender=keeper)
    with ape.reverts("asset_stakes: asset cpu cores all leased"):
        market.assign(job, 1, asset, sender=keeper)
    submit(agent, job, 0, 0, output_root=b"\x42" * 32)
    assert tuple(assets.leased(asset)) == (0, 0, 0)
    assert assets.stake(asset).pending_results == 1
    market.assign(job, 1, asset, sender=keeper)
    assert tuple(assets.leased(asset)) == (4, 2_048, 2_048)


def test_cancelling_an_assigned_replica_frees_what_it_held(
    assets, market, client, keeper, registered_keeper, register_asset, post_job
):
    asset = register_asset(cpu_cores=2, memory_mib=1_024, disk_mib=1_024)
    job = post_job(cpu_cores=2, memory_mib=1_024, disk_mib=1_024)
    market.assign(job, 0, asset, sender=keeper)
    assert tuple(assets.leased(asset)) == (2, 1_024, 1_024)
    market.cancel(job, 0, sender=client)  # inside the decline window
    assert tuple(assets.leased(asset)) == (0, 0, 0)
    assert leased(assets, asset) == (0, 0)


# ================================================================ selling an asset


def test_asset_changes_hands_only_with_no_lease_open(
    chain,
    assets,
    market,
    court,
    provider,
    provider2,
    agent,
    keeper,
    registered_keeper,
    verifier,
    facilitator,
    register_asset,
    post_job,
    submit,
):
    """Assigned, submitted, disputed, upheld: the lease and then its result are the seller's
    until the result is final (the stake answers for it)."""
    asset = register_asset()
    job = post_job()

    def refused(why="compute_asset: asset has results that can still be challenged"):
        for move in (assets.transferFrom, assets.safeTransferFrom):
            with ape.reverts(why):
                move(provider, provider2, asset, sender=provider)
        assert assets.ownerOf(asset) == provider

    market.assign(job, 0, asset, sender=keeper)
    refused("compute_asset: asset has open leases")
    submit(agent, job, 0, 0, output_root=b"\x42" * 32)
    refused()
    court.challenge(job, 0, sender=verifier)
    assert market.replica(job, 0, 0).state == ReplicaState.DISPUTED
    refused()
    court.resolve(job, 0, b"\x42" * 32, sender=facilitator)
    refused()

    chain.pending_timestamp = market.replica(job, 0, 0).deadline + 1
    market.finalize(job, 0, sender=keeper)
    assert leased(assets, asset) == (0, 0)
    assets.transferFrom(provider, provider2, asset, sender=provider)
    assert assets.ownerOf(asset) == provider2


@pytest.mark.parametrize("move", ["transferFrom", "safeTransferFrom"])
def test_transfer_clears_the_agent(
    assets, market, provider, provider2, agents, keeper, registered_keeper, register_asset, post_job, move
):
    """The asset takes no lease until its new owner names an agent; the seller can no longer name one."""
    asset = register_asset()
    receipt = getattr(assets, move)(provider, provider2, asset, sender=provider)
    log = only(receipt, assets.AgentChanged)
    assert (log.asset, log.agent) == (asset, ZERO_ADDRESS)
    assert assets.agentOf(asset) == ZERO_ADDRESS

    job = post_job()
    with ape.reverts("compute_asset: no agent"):
        market.assign(job, 0, asset, sender=keeper)
    with ape.reverts("compute_asset: caller is not owner nor approved"):
        assets.set_agent(asset, agents[0], sender=provider)
    assets.set_agent(asset, agents[1], sender=provider2)
    market.assign(job, 0, asset, sender=keeper)
    assert leased(assets, asset) == (1, 1)


def test_no_agent_comes_before_the_stake_check(
    assets, market, provider, provider2, keeper, registered_keeper, register_asset, post_job
):
    unstaked = register_asset(stake=0)
    assets.transferFrom(provider, provider2, unstaked, sender=provider)
    with ape.reverts("compute_asset: no agent"):
        market.assign(post_job(), 0, unstaked, sender=keeper)


def test_sellers_agent_cannot_act_for_the_buyer(
    assets, market, provider, provider2, agent, agents, keeper, registered_keeper, register_asset, post_job, submit
):
    """On a lease taken after the sale, the seller's key neither declines nor signs results;
    the buyer's agent does both."""
    asset = register_asset(gpu_count=2)  # the seller's agent key is `agent`
    assets.transferFrom(provider, provider2, asset, sender=provider)
    buyers_agent = agents[1]
    assets.set_agent(asset, buyers_agent, sender=provider2)
    job = post_job(shard_count=2)
    market.assign(job, 0, asset, sender=keeper)
    market.assign(job, 1, asset, sender=keeper)

    with ape.reverts("job_market: caller is not the asset's agent"):
        market.decline(job, 0, 0, b"\x00" * 32, sender=agent)
    market.decline(job, 0, 0, b"\x00" * 32, sender=buyers_agent)  # inside the decline window
    with ape.reverts("job_market: receipt not signed by the asset's agent"):
        submit(agent, job, 1, 0)
    assert market.replica(job, 1, 0).state == ReplicaState.ASSIGNED

    submit(buyers_agent, job, 1, 0)
    assert [market.replica(job, s, 0).state for s in (0, 1)] == [ReplicaState.OPEN, ReplicaState.SUBMITTED]
    assert leased(assets, asset) == (0, 0)  # a submitted result holds no lease
    assert assets.stake(asset).pending_results == 1  # but keeps the stake locked


# ================================================================ stakes


def test_add_stake(assets, token, asset, provider):
    before = token.balanceOf(provider), token.balanceOf(assets)
    receipt = assets.add_stake(asset, 500 * TOKEN, sender=provider)
    log = only(receipt, assets.StakeAdded)
    assert (log.asset, log.sender, log.amount, log.stake) == (asset, provider.address, 500 * TOKEN, 500 * TOKEN)

    receipt = assets.add_stake(asset, 250 * TOKEN, sender=provider)
    assert only(receipt, assets.StakeAdded).stake == 750 * TOKEN
    assert assets.stake(asset).amount == 750 * TOKEN
    assert token.balanceOf(provider) == before[0] - 750 * TOKEN
    assert token.balanceOf(assets) == before[1] + 750 * TOKEN


def test_add_stake_not_owner(assets, asset, provider, provider2, operator):
    with ape.reverts("asset_stakes: caller is not the asset owner"):
        assets.add_stake(asset, TOKEN, sender=provider2)
    assets.setApprovalForAll(operator, True, sender=provider)
    with ape.reverts("asset_stakes: caller is not the asset owner"):
        assets.add_stake(asset, TOKEN, sender=operator)


def test_add_stake_zero(assets, asset, provider):
    with ape.reverts("asset_stakes: zero amount"):
        assets.add_stake(asset, 0, sender=provider)


def test_add_stake_unknown_asset(assets, asset, provider):
    with ape.reverts("erc721: unknown token"):
        assets.add_stake(asset + 1, TOKEN, sender=provider)


def test_request_unstake(assets, staked, provider):
    receipt = assets.request_unstake(staked, 300 * TOKEN, sender=provider)
    unbond_at = receipt.timestamp + assets.UNBONDING_DELAY()
    log = only(receipt, assets.UnstakeRequested)
    assert (log.asset, log.amount, log.unbond_at) == (staked, 300 * TOKEN, unbond_at)
    stake = assets.stake(staked)
    assert (stake.amount, stake.unbonding, stake.unbond_at) == (1_000 * TOKEN, 300 * TOKEN, unbond_at)
    assert stake.open_leases == 0


def test_request_unstake_replaces_previous(assets, staked, provider):
    assets.request_unstake(staked, 300 * TOKEN, sender=provider)
    assets.request_unstake(staked, 100 * TOKEN, sender=provider)
    assert assets.stake(staked).unbonding == 100 * TOKEN


@pytest.mark.parametrize("amount", [0, 1_000 * TOKEN + 1])
def test_request_unstake_out_of_range(assets, staked, provider, amount):
    with ape.reverts("asset_stakes: amount exceeds stake"):
        assets.request_unstake(staked, amount, sender=provider)


def test_request_unstake_not_owner(assets, staked, stranger):
    with ape.reverts("asset_stakes: caller is not the asset owner"):
        assets.request_unstake(staked, TOKEN, sender=stranger)


def test_withdraw_stake(chain, assets, token, staked, provider):
    assets.request_unstake(staked, 300 * TOKEN, sender=provider)
    chain.mine(deltatime=assets.UNBONDING_DELAY())
    before = token.balanceOf(provider), token.balanceOf(assets)
    receipt = assets.withdraw_stake(staked, sender=provider)
    log = only(receipt, assets.StakeWithdrawn)
    assert (log.asset, log.owner, log.amount) == (staked, provider.address, 300 * TOKEN)
    assert token.balanceOf(provider) == before[0] + 300 * TOKEN
    assert token.balanceOf(assets) == before[1] - 300 * TOKEN
    stake = assets.stake(staked)
    assert (stake.amount, stake.unbonding, stake.unbond_at) == (700 * TOKEN, 0, 0)


def test_withdraw_stake_nothing_unbonding(assets, staked, provider):
    with ape.reverts("asset_stakes: nothing unbonding"):
        assets.withdraw_stake(staked, sender=provider)


def test_withdraw_stake_twice(chain, assets, staked, provider):
    assets.request_unstake(staked, 300 * TOKEN, sender=provider)
    chain.mine(deltatime=assets.UNBONDING_DELAY())
    assets.withdraw_stake(staked, sender=provider)
    with ape.reverts("asset_stakes: nothing unbonding"):
        assets.withdraw_stake(staked, sender=provider)


def test_withdraw_stake_still_unbonding(chain, assets, staked, provider):
    assets.request_unstake(staked, 300 * TOKEN, sender=provider)
    unbond_at = assets.stake(staked).unbond_at
    chain.pending_timestamp = unbond_at - 1
    with ape.reverts("asset_stakes: still unbonding"):
        assets.withdraw_stake(staked, sender=provider)


def test_withdraw_stake_exactly_at_unbond_time(chain, assets, staked, provider):
    assets.request_unstake(staked, 300 * TOKEN, sender=provider)
    unbond_at = assets.stake(staked).unbond_at
    chain.pending_timestamp = unbond_at
    receipt = assets.withdraw_stake(staked, sender=provider)
    assert receipt.timestamp == unbond_at
    assert assets.stake(staked).amount == 700 * TOKEN


def test_withdraw_stake_not_owner(chain, assets, staked, provider, stranger):
    assets.request_unstake(staked, 300 * TOKEN, sender=provider)
    chain.mine(deltatime=assets.UNBONDING_DELAY())
    with ape.reverts("asset_stakes: caller is not the asset owner"):
        assets.withdraw_stake(staked, sender=stranger)


@pytest.mark.parametrize("ending", ["decline", "finalize"])
def test_withdraw_stake_waits_for_open_leases(
    chain, assets, market, token, staked, provider, keeper, agent, params, lease, submit, ending
):
    assets.request_unstake(staked, 100 * TOKEN, sender=provider)
    chain.mine(deltatime=assets.UNBONDING_DELAY())
    job, shard, replica = lease(staked)
    assert assets.stake(staked).open_leases == 1
    with ape.reverts("asset_stakes: asset has open leases"):
        assets.withdraw_stake(staked, sender=provider)

    if ending == "decline":
        market.decline(job, shard, replica, b"\x00" * 32, sender=agent)
    else:
        submit(agent, job, shard, replica)
        chain.mine(deltatime=params.challenge_window + 1)
        market.finalize(job, shard, sender=keeper)
    assert assets.stake(staked).open_leases == 0

    before = token.balanceOf(provider)
    assets.withdraw_stake(staked, sender=provider)
    assert token.balanceOf(provider) - before == 100 * TOKEN
    assert assets.stake(staked).amount == 900 * TOKEN


def test_stake_moves_with_the_token(chain, assets, token, staked, provider, provider2):
    assets.request_unstake(staked, 400 * TOKEN, sender=provider)
    assets.transferFrom(provider, provider2, staked, sender=provider)
    chain.mine(deltatime=assets.UNBONDING_DELAY())
    assert assets.stake(staked).amount == 1_000 * TOKEN
    with ape.reverts("asset_stakes: caller is not the asset owner"):
        assets.withdraw_stake(staked, sender=provider)
    before = token.balanceOf(provider2)
    assets.withdraw_stake(staked, sender=provider2)
    assert token.balanceOf(provider2) - before == 400 * TOKEN
    assets.add_stake(staked, TOKEN, sender=provider2)
    assert assets.stake(staked).amount == 601 * TOKEN


def test_unbonding_stake_does_not_count_toward_minimum(
    assets, market, staked, provider, keeper, params, registered_keeper, post_job
):
    """Available = stake - unbonding must stay at or above the market's minimum."""
    stake = assets.stake(staked).amount
    assets.request_unstake(staked, stake - params.min_stake + 1, sender=provider)
    job = post_job()
    with ape.reverts("asset_stakes: stake below minimum"):
        market.assign(job, 0, staked, sender=keeper)

    assets.request_unstake(staked, stake - params.min_stake, sender=provider)
    market.assign(job, 0, staked, sender=keeper)
    assert assets.stake(staked).open_leases == 1


def test_unstaked_asset_cannot_lease(assets, market, asset, keeper, registered_keeper, post_job):
    with ape.reverts("asset_stakes: stake below minimum"):
        market.assign(post_job(), 0, asset, sender=keeper)


# ================================================================ market hooks


def test_market_wiring(assets, market, token):
    assert assets.MARKET() == market.address
    assert assets.TOKEN() == token.address
    assert assets.UNBONDING_DELAY() == 86_400


@pytest.mark.parametrize(
    "hook, args",
    [("open_lease", (0, 1)), ("end_lease", (1, 0, 0)), ("end_lease", (1, 1, 0)), ("end_lease", (0, 2, 1_000))],
)
@pytest.mark.parametrize("caller", ["stranger", "provider"])
def test_market_hooks_only_market(request, assets, staked, hook, args, caller):
    who = request.getfixturevalue(caller)
    with ape.reverts("asset_stakes: caller is not the market"):
        getattr(assets, hook)(staked, *args, sender=who)


# ================================================================ the agent's endpoint


def test_an_asset_records_its_agents_endpoint(assets, provider, operator, stranger, agent, make_spec):
    """Keepers and clients of any operator find the agent from the chain alone."""
    tx = assets.register(make_spec().as_tuple(), agent, b"\x11" * 32, "http://node-1.example:8400", sender=provider)
    asset = tx.events.filter(assets.AssetRegistered)[0].asset
    assert tx.events.filter(assets.EndpointChanged)[0].endpoint == "http://node-1.example:8400"
    assert assets.endpoint(asset) == "http://node-1.example:8400"
    assets.setApprovalForAll(operator, True, sender=provider)
    moved = assets.set_endpoint(asset, "https://node-1.example", sender=operator)
    assert moved.events.filter(assets.EndpointChanged)[0].endpoint == "https://node-1.example"
    assert assets.endpoint(asset) == "https://node-1.example"
    with ape.reverts("compute_asset: caller is not owner nor approved"):
        assets.set_endpoint(asset, "http://evil.example", sender=stranger)
    assert assets.endpoint(asset) == "https://node-1.example"


def test_an_asset_registered_without_an_endpoint_names_none(assets, asset):
    assert assets.endpoint(asset) == ""
