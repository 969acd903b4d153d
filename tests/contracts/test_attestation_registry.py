"""The tee level on chain (contracts/AttestationRegistry.vy): an attestor records node verdicts
and result verdicts; a tee job goes only to an asset attested now; an attested result is final
after the short window, paid to the base unit, and still open to a dispute inside it. The
evidence hashes here stand for evidence an attestor checked off chain (tests/verifier covers
that with real vendor-signed quotes)."""

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak

from computenet import tee
from computenet.deploy import DEFAULT_TEE_WINDOW
from computenet.domain import ReplicaState, TeeKind, Verification, settle_amounts

MRTD = bytes(range(48))
EVIDENCE = keccak(b"a node's quote")
GPU_SECONDS = 500
ROOT = b"\x42" * 32
DAY = 86_400


@pytest.fixture
def attest(stack, chain, attestor, agent):
    """Records a node verdict for `asset` (binding its agent key, current for a day by default)."""

    def record(asset, *, sender=None, agent_address=None, tcb=0, measurement=MRTD, valid_for=DAY, report_data=None):
        now = chain.pending_timestamp
        bound = stack.attestations.node_report_data(asset, agent_address or agent.address)
        return stack.attestations.attest_node(
            asset,
            EVIDENCE,
            TeeKind.TDX,
            measurement,
            tcb,
            now - 60,
            now + valid_for,
            bound if report_data is None else report_data,
            sender=sender or attestor,
        )

    return record


@pytest.fixture
def tee_job(stack, client, make_requirements):
    """Posts a one-shard tee job; returns its id."""
    req = make_requirements(verification=Verification.TEE)
    tx = stack.market.post_job(keccak(b"tee manifest"), req.as_tuple(), sender=client)
    return tx.events.filter(stack.market.JobPosted)[0].job


@pytest.fixture
def submitted(stack, tee_job, register_asset, registered_keeper, attest, sign_receipt, agent):
    """A tee job's shard assigned to an attested asset and its result submitted; (job, asset)."""
    asset = register_asset()
    attest(asset)
    stack.market.assign(tee_job, 0, asset, sender=registered_keeper)
    sig = sign_receipt(agent, tee_job, 0, 0, ROOT, GPU_SECONDS)
    stack.market.submit_result(tee_job, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=agent)
    return tee_job, asset


def result_data(chain, stack, job, shard=0, replica=0, root=ROOT, gpu_seconds=GPU_SECONDS):
    return tee.result_report_data(chain.chain_id, stack.market.address, job, shard, replica, root, gpu_seconds)[:32]


def test_only_the_owner_names_attestors_and_only_attestors_record(stack, owner, stranger, register_asset, attest):
    asset = register_asset()
    with ape.reverts("ownable: caller is not the owner"):
        stack.attestations.set_attestor(stranger, True, sender=stranger)
    with ape.reverts("attestations: not an attestor"):
        attest(asset, sender=stranger)
    assert stack.attestations.short_window() == DEFAULT_TEE_WINDOW
    assert stack.market.ATTESTATIONS() == stack.attestations.address


def test_a_node_verdict_is_recorded_and_the_asset_attested(stack, chain, attestor, agent, register_asset, attest):
    asset = register_asset()
    assert not stack.attestations.attested(asset)
    tx = attest(asset)
    [event] = tx.events.filter(stack.attestations.NodeAttested)
    assert (event.asset, event.attestor, event.evidence_hash, event.kind) == (asset, attestor, EVIDENCE, TeeKind.TDX)
    assert bytes(event.measurement) == MRTD and event.tcb == 0
    v = stack.attestations.verdict(asset)
    assert (v.evidence_hash, v.measurement, v.agent, v.attestor) == (EVIDENCE, keccak(MRTD), agent, attestor)
    assert v.valid_until == event.valid_until and v.valid_from < chain.pending_timestamp < v.valid_until
    assert stack.attestations.attested(asset)
    # the binding is the SDK's: keccak(chain id, registry, asset, agent)
    expected = keccak(
        encode(
            ["uint256", "address", "uint256", "address"],
            [chain.chain_id, stack.attestations.address, asset, agent.address],
        )
    )
    assert stack.attestations.node_report_data(asset, agent) == expected


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(report_data=b"\x01" * 32), "attestations: evidence binds another node"),
        (dict(agent_address="0x" + "77" * 20), "attestations: evidence binds another node"),
        (dict(tcb=4), "attestations: platform tcb out of date"),  # OutOfDate
        (dict(tcb=6), "attestations: platform tcb out of date"),  # Revoked
        (dict(valid_for=40 * DAY), "attestations: verdict runs too long"),
        (dict(valid_for=-1), "attestations: verdict not current"),
        (dict(measurement=b""), "attestations: empty evidence or measurement"),
    ],
)
def test_a_bad_node_verdict_is_refused_and_nothing_recorded(stack, register_asset, attest, change, reason):
    asset = register_asset()
    with ape.reverts(reason):
        attest(asset, **change)
    assert not stack.attestations.attested(asset)
    assert stack.attestations.verdict(asset).attestor == "0x" + "00" * 20


def test_a_tee_job_is_never_assigned_to_an_unattested_asset(
    stack, chain, owner, attestor, accounts, tee_job, register_asset, registered_keeper, attest
):
    market, registry = stack.market, stack.attestations
    plain, attested = register_asset(), register_asset()
    attest(attested, valid_for=3_600)
    with ape.reverts("job_market: asset not attested"):
        market.assign(tee_job, 0, plain, sender=registered_keeper)
    # a verdict lapses: when its window ends, when its attestor is removed, when the agent key changes
    chain.pending_timestamp += 3_601
    with ape.reverts("job_market: asset not attested"):
        market.assign(tee_job, 0, attested, sender=registered_keeper)
    attest(attested)
    registry.set_attestor(attestor, False, sender=owner)
    assert not registry.attested(attested)
    registry.set_attestor(attestor, True, sender=owner)
    assert registry.attested(attested)
    stack.assets.set_agent(attested, accounts[15], sender=stack.assets.ownerOf(attested))
    with ape.reverts("job_market: asset not attested"):
        market.assign(tee_job, 0, attested, sender=registered_keeper)
    attest(attested, agent_address=accounts[15].address)
    registry.revoke_node(attested, sender=attestor)
    with ape.reverts("job_market: asset not attested"):
        market.assign(tee_job, 0, attested, sender=registered_keeper)
    attest(attested, agent_address=accounts[15].address)
    market.assign(tee_job, 0, attested, sender=registered_keeper)
    assert market.replica(tee_job, 0, 0).asset == attested


def test_an_attested_result_is_final_after_the_short_window_and_paid_to_the_base_unit(
    stack, chain, submitted, attestor, provider, keeper, treasury, client, stranger, params
):
    job, asset = submitted
    market, registry = stack.market, stack.attestations
    full_end = market.replica(job, 0, 0).deadline
    assert full_end - chain.blocks.head.timestamp == params.challenge_window
    assert registry.result_report_data(job, 0, 0) == result_data(chain, stack, job)

    tx = registry.attest_result(
        job, 0, 0, keccak(b"result quote"), MRTD, 0, result_data(chain, stack, job), sender=attestor
    )

    [event] = tx.events.filter(registry.ResultAttested)
    assert (event.job, event.shard, event.replica, event.asset) == (job, 0, 0, asset)
    assert event.challenge_end == tx.timestamp + DEFAULT_TEE_WINDOW == market.replica(job, 0, 0).deadline
    with ape.reverts("job_market: challenge window open"):
        market.finalize(job, 0, sender=stranger)
    chain.pending_timestamp = event.challenge_end + 1
    price = stack.assets.spec(asset).price
    payment, keeper_fee, protocol_fee = settle_amounts(
        price, GPU_SECONDS, params.keeper_fee_bps, params.protocol_fee_bps
    )
    before = {who: market.credits(who) for who in (provider, keeper, treasury, client, attestor)}
    escrow = market.job(job).escrow
    market.finalize(job, 0, sender=stranger)
    assert market.replica(job, 0, 0).state == ReplicaState.FINALIZED
    gained = {who: market.credits(who) - before[who] for who in before}
    refund = escrow - payment - keeper_fee - protocol_fee
    assert gained == {provider: payment, keeper: keeper_fee, treasury: protocol_fee, client: refund, attestor: 0}
    assert chain.blocks.head.timestamp < full_end  # long before the full window would have ended


def test_an_attested_result_can_still_be_disputed_inside_its_short_window(stack, submitted, attestor, chain, verifier):
    job, _ = submitted
    registry = stack.attestations
    registry.attest_result(job, 0, 0, keccak(b"result quote"), MRTD, 0, result_data(chain, stack, job), sender=attestor)
    stack.court.challenge(job, 0, sender=verifier)
    assert stack.market.replica(job, 0, 0).state == ReplicaState.DISPUTED
    with ape.reverts("attestations: no result in its window"):  # a dispute runs its course
        registry.attest_result(job, 0, 0, keccak(b"again"), MRTD, 0, result_data(chain, stack, job), sender=attestor)


@pytest.mark.parametrize(
    "change, reason",
    [
        (
            dict(report=lambda c, s, j: result_data(c, s, j, root=b"\x43" * 32)),
            "attestations: evidence binds another result",
        ),
        (dict(report=lambda c, s, j: result_data(c, s, j + 1)), "attestations: evidence binds another result"),
        (  # the metered use the provider claims is bound too
            dict(report=lambda c, s, j: result_data(c, s, j, gpu_seconds=GPU_SECONDS - 1)),
            "attestations: evidence binds another result",
        ),
        (dict(measurement=bytes(48)), "attestations: result ran in another measurement"),
        (dict(tcb=5), "attestations: platform tcb out of date"),
        (dict(sender="stranger"), "attestations: not an attestor"),
    ],
)
def test_a_bad_result_verdict_is_refused_and_the_full_window_kept(
    stack, chain, submitted, attestor, stranger, change, reason
):
    job, _ = submitted
    full_end = stack.market.replica(job, 0, 0).deadline
    report = change.get("report", lambda c, s, j: result_data(c, s, j))(chain, stack, job)
    sender = stranger if change.get("sender") else attestor
    with ape.reverts(reason):
        stack.attestations.attest_result(
            job, 0, 0, keccak(b"q"), change.get("measurement", MRTD), change.get("tcb", 0), report, sender=sender
        )
    assert stack.market.replica(job, 0, 0).deadline == full_end


def test_a_result_of_a_node_no_longer_attested_is_refused(stack, chain, submitted, attestor):
    job, asset = submitted
    stack.attestations.revoke_node(asset, sender=attestor)
    with ape.reverts("attestations: asset not attested"):
        stack.attestations.attest_result(
            job, 0, 0, keccak(b"q"), MRTD, 0, result_data(chain, stack, job), sender=attestor
        )


def test_only_the_registry_shortens_a_window_and_only_a_tee_job_is_attested(
    stack, chain, submitted, attestor, stranger, client, make_requirements
):
    job, _ = submitted
    with ape.reverts("job_market: not the attestation registry"):
        stack.market.shorten_window(job, 0, 0, chain.pending_timestamp + 1, sender=stranger)
    req = make_requirements()
    other = (
        stack.market.post_job(keccak(b"plain"), req.as_tuple(), sender=client)
        .events.filter(stack.market.JobPosted)[0]
        .job
    )
    with ape.reverts("attestations: not a tee job"):
        stack.attestations.attest_result(
            other, 0, 0, keccak(b"q"), MRTD, 0, result_data(chain, stack, other), sender=attestor
        )
    with ape.reverts("job_market: unknown verification mode"):
        stack.market.post_job(keccak(b"x"), make_requirements(verification=5).as_tuple(), sender=client)
