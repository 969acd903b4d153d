"""Finding a deployment: under the name it was recorded by, or any other name of the same chain
whose market still has code; and the error that says what to run when there is none."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from computenet.deployments import DeploymentNotFound, find, network_name, save

REPO = Path(__file__).resolve().parents[2]
LIVE = "0x" + "11" * 20  # a market with code
GONE = "0x" + "22" * 20  # a market the chain no longer has (reset since)


def record(market=LIVE, chain_id=31337, block=5, **extra):
    return {"token": "0xt", "assets": "0xa", "keepers": "0xk", "market": market, "chain_id": chain_id, "block": block}


def has_code(address):
    return address == LIVE


@pytest.fixture
def file(tmp_path):
    return tmp_path / "deployments.json"


def test_the_name_given_wins(file):
    save("ethereum:local", record(block=9), file)
    save("ethereum:custom", record(block=12), file)
    assert find("ethereum:local:foundry", 31337, has_code, file)["block"] == 9


def test_a_record_under_another_name_of_the_same_chain_is_found(file):
    save("ethereum:custom", record(block=12), file)
    assert find("ethereum:local", 31337, has_code, file)["block"] == 12
    assert find(["http://127.0.0.1:8545", "ethereum:local"], 31337, has_code, file)["block"] == 12


def test_another_chain_or_a_market_without_code_is_not_used(file):
    save("ethereum:local", record(chain_id=1337), file)  # the name matches, the chain does not
    save("ethereum:custom", record(market=GONE, block=30), file)  # the chain was reset since
    save("http://127.0.0.1:8545", record(block=3), file)  # an alias that still has code
    assert find("ethereum:local", 31337, has_code, file)["block"] == 3
    save("http://127.0.0.1:8545", record(market=GONE), file)
    with pytest.raises(DeploymentNotFound) as info:
        find("ethereum:local", 31337, has_code, file)
    message = str(info.value)
    assert "the ethereum:local record is of chain 1337, not the connected chain 31337" in message
    assert "no record of chain 31337 has a contract at its market" in message
    assert message.endswith("run `ape run deploy --network ethereum:local` first")


def test_none_recorded_names_the_command_to_run(file):
    with pytest.raises(DeploymentNotFound) as info:
        find(["ethereum:local", "http://127.0.0.1:8545"], 31337, has_code, file)
    assert "known: none" in str(info.value)
    assert str(info.value).endswith("run `ape run deploy --network http://127.0.0.1:8545` first")


def test_network_names():
    assert network_name("ethereum:local:foundry") == "ethereum:local"
    assert network_name("ethereum:sepolia") == "ethereum:sepolia"
    assert network_name("http://127.0.0.1:8545") == "http://127.0.0.1:8545"


def test_a_role_without_a_deployment_exits_saying_what_to_run(networks, tmp_path):
    """`python -m agent run` on a chain with no deployment recorded stops at start-up."""
    uri = networks.provider.uri
    empty = tmp_path / "deployments.json"
    empty.write_text(json.dumps({"ethereum:sepolia": record(chain_id=11155111)}))
    env = os.environ | {
        "COMPUTENET_DEPLOYMENTS": str(empty),
        "COMPUTENET_AGENT_NETWORK": uri,
        "COMPUTENET_AGENT_ACCOUNT": "TEST::10",
        "COMPUTENET_AGENT_ASSETS": "1",
        "COMPUTENET_AGENT_WORK_DIR": str(tmp_path / "agent"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"run `ape run deploy --network {uri}` first" in done.stderr
