"""The attestation service (verifier/attestor.py) over real HTTP against the session's chain.

The real Intel-signed samples (tests/verifier/evidence) are checked as they are: at the chain's
time their collateral has expired, and at their own pinned time they bind no node of ours. For
the paths that end in a verdict on chain, the sample is re-signed under a test root
(tests/tee_pki.py; mock: no TEE here) so it can bind our asset, agent key and results."""

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tee_pki import resigned_tdx_quote, test_root_ca_der

from agent.tee import AttestorClient, TeeRefused
from computenet.domain import ReplicaState, TeeKind, Verification
from computenet.localnet import ServedApp
from computenet.market import Market
from computenet.tee import Evidence, pad
from computenet.web3calls import Sender
from verifier.attestation import AttestationError, verify_quote
from verifier.attestor import Attestor, Policy, app, check

EVIDENCE = Path(__file__).parent / "evidence"
TDX_PINNED = 1750329147 + 3_600  # inside the real sample's collateral window
MRTD = bytes(range(48))
ROOT = b"\x42" * 32
GPU_SECONDS = 300


def sample(name):
    return Evidence(
        name.split("_")[0], (EVIDENCE / name).read_bytes(), (EVIDENCE / f"{name}_collateral.json").read_text()
    )


@pytest.fixture
def sdk(stack):
    return Market.from_stack(stack)


@pytest.fixture
def service(sdk, attestor):
    """The attestor's service, its root pinned to the test root (mock: no TEE here)."""
    attesting = Attestor(sdk, Sender(sdk.web3, attestor.private_key), Policy(intel_root_der=test_root_ca_der()))
    served = ServedApp(app(attesting))
    yield AttestorClient(served.url)
    served.stop()


def resigned(binding, chain, until=None, **kw):
    now = chain.pending_timestamp
    signed = resigned_tdx_quote(pad(binding), valid_from=now - 3_600, valid_until=until or now + 20 * 86_400, **kw)
    return Evidence("tdx", signed.quote, signed.collateral_json)


def refused(call, says=""):
    with pytest.raises(TeeRefused) as error:
        call()
    assert says in str(error.value)
    return error.value.reason


def test_a_valid_node_quote_is_accepted_and_its_verdict_recorded(
    service, sdk, stack, chain, register_asset, agent, attestor
):
    asset = register_asset()
    until = chain.pending_timestamp + 20 * 86_400
    evidence = resigned(sdk.node_report_data(asset, agent.address), chain, until=until, mr_td=MRTD)

    answer = service.node(asset, evidence)

    assert answer["kind"] == "tdx" and answer["tcb_status"] == "UpToDate" and answer["tx"]
    assert answer["measurement"] == "0x" + MRTD.hex()
    v = sdk.tee_verdict(asset)
    assert (v.evidence_hash, v.agent, v.attestor, v.kind) == (
        evidence.hash,
        agent.address,
        attestor.address,
        TeeKind.TDX,
    )
    assert v.valid_until == answer["valid_until"] == until  # the collateral's window
    assert sdk.attested([asset]) == {asset}
    # the same evidence again costs nothing: no transaction
    nonce = sdk.web3.eth.get_transaction_count(attestor.address)
    assert service.node(asset, evidence)["note"] == "already recorded"
    assert sdk.web3.eth.get_transaction_count(attestor.address) == nonce


def test_the_real_intel_samples_are_refused_for_what_they_are(service, sdk, register_asset, agent, attestor):
    """At the chain's time the samples' collateral has expired; at their own time they verify
    but bind none of our nodes, and the SGX one's platform needs configuration."""
    asset = register_asset()
    nonce = sdk.web3.eth.get_transaction_count(attestor.address)
    assert refused(lambda: service.node(asset, sample("tdx_quote"))) == "collateral expired"
    binding = sdk.node_report_data(asset, agent.address)
    intel = Policy()  # Intel's own root, as dcap-qvl pins it
    with pytest.raises(AttestationError) as other:
        check(sample("tdx_quote"), binding, TDX_PINNED, intel, "node")
    assert other.value.reason == "report data binds another node"
    sgx = sample("sgx_quote")
    own = verify_quote(sgx.quote, sgx.collateral, 1750330571 + 60)
    with pytest.raises(AttestationError) as tcb:
        check(sgx, own.report_data[:32], 1750330571 + 60, intel)
    assert tcb.value.reason == "tcb level not accepted" and "INTEL-SA-00615" in str(tcb.value)
    assert sdk.web3.eth.get_transaction_count(attestor.address) == nonce  # nothing was sent
    assert sdk.attested([asset]) == set()


@pytest.mark.parametrize("case", ["tampered", "another asset", "another agent", "unknown root", "not hex"])
def test_bad_node_evidence_is_refused_with_its_reason_and_nothing_sent(
    service, sdk, chain, register_asset, agent, attestor, accounts, case
):
    asset = register_asset()
    binding = sdk.node_report_data(asset, agent.address)
    evidence = resigned(binding, chain)
    expected = {
        "tampered": "evidence signature invalid",
        "another asset": "report data binds another node",
        "another agent": "report data binds another node",
        "unknown root": "unknown root",
        "not hex": "evidence malformed",
    }[case]
    if case == "tampered":
        quote = bytearray(evidence.quote)
        quote[48 + 520] ^= 1  # the report data, under the quote's signature
        evidence = Evidence("tdx", bytes(quote), evidence.collateral)
    elif case == "another asset":
        evidence = resigned(sdk.node_report_data(asset + 1, agent.address), chain)
    elif case == "another agent":
        evidence = resigned(sdk.node_report_data(asset, accounts[15].address), chain)
    elif case == "unknown root":  # real Intel root pinned: the test root is unknown to it
        plain = Attestor(sdk, Sender(sdk.web3, attestor.private_key), Policy())
        served = ServedApp(app(plain))
        try:
            assert refused(lambda: AttestorClient(served.url).node(asset, evidence)) == expected
        finally:
            served.stop()
        return
    nonce = sdk.web3.eth.get_transaction_count(attestor.address)
    if case == "not hex":
        body = {"kind": "tdx", "quote": "zz", "collateral": ""}
        request = urllib.request.Request(
            f"{service.url}/nodes/{asset}", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request)
        assert error.value.code == 422 and json.loads(error.value.read())["reason"] == expected
    else:
        assert refused(lambda: service.node(asset, evidence)) == expected
    assert sdk.web3.eth.get_transaction_count(attestor.address) == nonce
    assert sdk.attested([asset]) == set()


def test_collateral_expired_at_the_chains_time_is_refused(service, sdk, chain, register_asset, agent):
    asset = register_asset()
    now = chain.pending_timestamp
    signed = resigned_tdx_quote(
        pad(sdk.node_report_data(asset, agent.address)), valid_from=now - 30 * 86_400, valid_until=now - 86_400
    )
    assert refused(lambda: service.node(asset, Evidence("tdx", signed.quote, signed.collateral_json))) == (
        "collateral expired"
    )


def test_a_tee_result_with_its_evidence_is_final_after_the_short_window(
    service, sdk, stack, chain, register_asset, registered_keeper, agent, sign_receipt, make_requirements, client
):
    asset = register_asset()
    service.node(asset, resigned(sdk.node_report_data(asset, agent.address), chain, mr_td=MRTD))
    req = make_requirements(verification=Verification.TEE)
    job = (
        stack.market.post_job(b"\x05" * 32, req.as_tuple(), sender=client).events.filter(stack.market.JobPosted)[0].job
    )
    stack.market.assign(job, 0, asset, sender=registered_keeper)
    sig = sign_receipt(agent, job, 0, 0, ROOT, GPU_SECONDS)
    stack.market.submit_result(job, 0, 0, ROOT, GPU_SECONDS, 0, sig, sender=agent)
    full_end = sdk.replica(job, 0, 0).deadline

    # evidence from another TEE image, or binding another output root, is refused
    binding = sdk.result_report_data(job, 0, 0)
    says = "attestations: result ran in another measurement"
    assert refused(lambda: service.result(job, 0, 0, resigned(binding, chain, mr_td=bytes(48))), says) == (
        "refused on chain"
    )
    other = sdk.result_report_data(job, 0, 0)[:-1] + b"\x00"
    assert refused(lambda: service.result(job, 0, 0, resigned(other, chain, mr_td=MRTD))) == (
        "report data binds another result"
    )
    assert sdk.replica(job, 0, 0).deadline == full_end

    answer = service.result(job, 0, 0, resigned(binding, chain, mr_td=MRTD))

    end = answer["challenge_end"]
    assert end == sdk.replica(job, 0, 0).deadline < full_end
    assert sdk.attested_results(job) == {(0, 0): end}
    chain.pending_timestamp = end + 1
    stack.market.finalize(job, 0, sender=client)
    assert sdk.replica(job, 0, 0).state == ReplicaState.FINALIZED


def test_a_real_amd_report_verifies_at_the_chains_time_but_binds_none_of_our_nodes(
    service, sdk, register_asset, attestor
):
    """AMD's certificates for the SEV-SNP sample run to 2030, so the real report passes the
    vendor checks now; its report data is not our node's binding, so nothing is recorded."""
    asset = register_asset()
    collateral = json.dumps(
        {
            "vcek": (EVIDENCE / "snp_vcek.der").read_bytes().hex(),
            "chain": (EVIDENCE / "snp_cert_chain.pem").read_text(),
        }
    )
    report = Evidence("sev-snp", (EVIDENCE / "snp_report.bin").read_bytes(), collateral)
    nonce = sdk.web3.eth.get_transaction_count(attestor.address)
    assert refused(lambda: service.node(asset, report)) == "report data binds another node"
    missing = Evidence("sev-snp", report.quote, "")
    assert refused(lambda: service.node(asset, missing)) == "collateral missing"
    assert sdk.web3.eth.get_transaction_count(attestor.address) == nonce


def test_a_quote_without_collateral_is_fetched_for_or_refused_saying_why():
    """An Intel quote sent bare (as configfs-tsm gives it) gets its collateral from the PCCS the
    attestor names; here none answers, and the refusal says so. Without a PCCS it is missing."""
    bare = Evidence("tdx", sample("tdx_quote").quote)
    with pytest.raises(AttestationError) as unreachable:
        check(bare, bytes(32), TDX_PINNED, Policy(pccs_url="http://127.0.0.1:9"))
    assert unreachable.value.reason == "collateral unavailable" and "127.0.0.1:9" in str(unreachable.value)
    with pytest.raises(AttestationError) as missing:
        check(bare, bytes(32), TDX_PINNED, Policy())
    assert missing.value.reason == "collateral missing"


def test_the_attestor_command_serves_with_its_own_key_and_names_bad_settings(stack, chain, attestor, tmp_path):
    import subprocess
    import sys

    from computenet.localnet import free_port, wait_until

    port = free_port()
    env = os.environ | {
        "COMPUTENET_ATTESTOR_RPC_URL": chain.provider.uri,
        "COMPUTENET_ATTESTOR_MARKET": stack.market.address,
        "COMPUTENET_ATTESTOR_ACCOUNT": "TEST::14",
        "COMPUTENET_ATTESTOR_PORT": str(port),
    }
    with open(tmp_path / "attestor.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "verifier", "attestor"], env=env, stdout=log, stderr=log)
    try:

        def health():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    return json.loads(response.read())
            except OSError:
                assert process.poll() is None, (tmp_path / "attestor.log").read_text()
                return None

        assert wait_until(health, 60, "the attestor's /health") == {
            "attestor": attestor.address,
            "registry": stack.attestations.address,
        }
    finally:
        process.terminate()
        process.wait(timeout=20)
    bad = subprocess.run(
        [sys.executable, "-m", "verifier", "attestor"],
        env=env | {"COMPUTENET_ATTESTOR_PORT": "99999"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "port" in bad.stderr.lower()
