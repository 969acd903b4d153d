"""A tee lease in the agent (agent/tee.py) with real parts but the TEE: the chain, Docker
engine, content store and the attestor's HTTP service are real; the evidence source is the
TDX sample re-signed under a test root (tests/tee_pki.py; mock: no TEE here)."""

import json

import pytest
from tee_pki import ResignedTee, test_root_ca_der
from test_agent_failures import ending, run_one

from agent import tee
from computenet.domain import ReplicaState, Verification
from computenet.localnet import ServedApp, free_port
from computenet.manifest import build_manifest, canonical_json
from computenet.market import Market
from computenet.web3calls import Sender
from verifier.attestor import Attestor, Policy, app

INPUT = {"numbers.txt": b"6 7\n"}


@pytest.fixture
def attestor_url(stack, attestor):
    """The attestor's service on the session chain, the test root pinned (mock: no TEE here)."""
    sdk = Market.from_stack(stack)
    served = ServedApp(
        app(Attestor(sdk, Sender(sdk.web3, attestor.private_key), Policy(intel_root_der=test_root_ca_der())))
    )
    yield served.url
    served.stop()


@pytest.fixture
def tee_agent(inline_agent, cpu_asset, agents, attestor_url, chain):
    """An agent whose machine is a (mock) TDX guest, serving one CPU asset, node attested."""
    asset = cpu_asset(agents[0])
    agent = inline_agent(agents[0], [asset], attestor_url=attestor_url)
    agent.tee = ResignedTee(chain.pending_timestamp)
    return agent, asset


def tee_lease(lease_for, asset, job_image):
    """A one-shard tee job assigned to `asset`, its container a one-line computation."""
    command = ["python3", "-c", "print(6 * 7)"]
    raw = canonical_json(build_manifest(job_image, command, INPUT, timeout_seconds=30, max_output_bytes=1 << 20))
    return lease_for(asset, raw, inputs=INPUT.values(), verification=Verification.TEE)


def test_an_agent_attests_its_node_and_then_each_tee_result(
    tee_agent, lease_for, market, stack, job_image, chain, stranger
):
    agent, asset = tee_agent
    assert agent.attest_nodes()[asset].startswith("attested until ")
    assert stack.attestations.attested(asset)
    assert agent.tee.made[0][:32] == stack.attestations.node_report_data(asset, agent.account.address)
    assert agent.attest_nodes() == {asset: "attested"}  # a current verdict is left alone
    lease = tee_lease(lease_for, asset, job_image)
    start = market.chain_manager.blocks.height

    run_one(agent, lease)

    assert ending(agent, market, lease, start) == ("succeeded", 0)
    rep = market.replica(lease.job, 0, 0)
    head = market.chain_manager.blocks.height + 1
    [attested] = [e for e in stack.attestations.ResultAttested.range(start, head) if e.job == lease.job]
    assert rep.deadline == attested.challenge_end  # the short window
    assert rep.deadline - chain.blocks.head.timestamp <= stack.attestations.short_window()
    kept = json.loads((agent.work / lease.name / tee.EVIDENCE_FILE).read_text())
    assert kept["verdict"]["challenge_end"] == rep.deadline and "refused" not in kept
    assert agent.tee.made[-1][:32] == stack.attestations.result_report_data(lease.job, 0, 0)
    chain.pending_timestamp = rep.deadline + 1
    market.finalize(lease.job, 0, sender=stranger)
    assert market.replica(lease.job, 0, 0).state == ReplicaState.FINALIZED


def test_with_the_attestor_down_a_tee_result_keeps_its_full_window(
    tee_agent, lease_for, market, stack, job_image, chain, params
):
    agent, asset = tee_agent
    agent.attest_nodes()
    agent.attestor = tee.AttestorClient(f"http://127.0.0.1:{free_port()}", timeout=2)  # nobody listens
    lease = tee_lease(lease_for, asset, job_image)
    start = market.chain_manager.blocks.height

    run_one(agent, lease)

    assert ending(agent, market, lease, start) == ("succeeded", 0)  # the result stands
    rep = market.replica(lease.job, 0, 0)
    assert rep.deadline - chain.blocks.head.timestamp == params.challenge_window
    kept = json.loads((agent.work / lease.name / tee.EVIDENCE_FILE).read_text())
    assert kept["verdict"] is None and "Connection refused" in kept["refused"]


def test_an_agent_with_no_tee_declines_a_tee_lease(
    inline_agent, cpu_asset, agents, lease_for, market, stack, job_image, attestor
):
    asset = cpu_asset(agents[0])
    now = market.chain_manager.pending_timestamp
    binding = stack.attestations.node_report_data(asset, agents[0].address)
    stack.attestations.attest_node(
        asset, b"\x01" * 32, 1, bytes(48), 0, now - 60, now + 86_400, binding, sender=attestor
    )
    agent = inline_agent(agents[0], [asset])
    lease = tee_lease(lease_for, asset, job_image)
    start = market.chain_manager.blocks.height

    run_one(agent, lease)

    assert ending(agent, market, lease, start) == ("declined", "no tee here")


def test_an_amd_certificate_table_becomes_the_attestors_collateral():
    """The table a host gives an SEV-SNP guest (auxblob), built from the real AMD sample's
    certificates, yields the VCEK and chain the attestor verifies the real report with."""
    import struct
    import uuid
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from computenet.tee import Evidence
    from verifier.attestor import verify

    evidence = Path(__file__).parents[1] / "verifier" / "evidence"
    vcek = (evidence / "snp_vcek.der").read_bytes()
    ask, ark = (
        c.public_bytes(Encoding.DER)
        for c in x509.load_pem_x509_certificates((evidence / "snp_cert_chain.pem").read_bytes())
    )
    guids = [
        "63da758d-e664-4564-adc5-f4b93be8accd",
        "c0b406a4-a803-4952-9743-3fb6014cd0ae",
        "4ab7b379-bbac-4fe4-a02f-05aef327c782",
    ]
    header, body, offset = b"", b"", 24 * 4
    for guid, cert in zip(guids, (vcek, ask, ark), strict=True):
        header += uuid.UUID(guid).bytes_le + struct.pack("<II", offset + len(body), len(cert))
        body += cert
    table = header + bytes(24) + body

    collateral = tee.amd_certificates(table)

    assert json.loads(collateral)["vcek"] == vcek.hex()
    verdict = verify(Evidence("sev-snp", (evidence / "snp_report.bin").read_bytes(), collateral), 1750000000, Policy())
    assert verdict.kind == "sev-snp" and len(verdict.measurement) == 48
    assert tee.amd_certificates(bytes(24)) == ""  # a host that gave no certificates


def test_a_machine_without_configfs_tsm_says_so(tmp_path):
    with pytest.raises(tee.TeeUnavailable, match="not a TDX or SEV-SNP guest"):
        tee.ConfigfsTsm(tmp_path / "missing").evidence(bytes(64))
    with pytest.raises(ValueError, match="unknown TEE evidence source"):
        tee.source("sgx-magic")
