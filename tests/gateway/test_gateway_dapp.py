"""The gateway serves the dApp: CORS on every route, the page's files from its folder, and
config.json with what the page needs (chain, addresses, ABIs, token, parameters), over a real
HTTP server on the session's chain. The content store answers the page's CORS too."""

import dataclasses

import pytest
import requests
from eth_account import Account
from web3 import Web3

from computenet.domain import SUBMIT_MARGIN, Parameters
from computenet.explain import PLAIN
from computenet.localnet import ServedApp
from gateway.app import Chain, create_app
from gateway.settings import DEFAULT_DAPP_DIR, GatewaySettings

ORIGIN = "http://page.example:5173"
PUBLIC_RPC = "https://rpc.example/computenet"
INDEX = "<!doctype html><title>computenet</title>"

pytestmark = pytest.mark.usefixtures("stack", "token", "content_store")  # session fixtures first: ape's isolation


@pytest.fixture(scope="module")
def gateway_chain(chain, stack):
    """The gateway's reads over a Web3 of its own (it serves from threads), on the session chain."""
    return Chain(Web3(Web3.HTTPProvider(chain.provider.uri)), stack.market.address)


@pytest.fixture
def dapp_dir(tmp_path):
    """A built dApp folder: the page, its style, the bundle, and sources that are not served."""
    folder = tmp_path / "dapp"
    (folder / "dist").mkdir(parents=True)
    (folder / "src").mkdir()
    (folder / "index.html").write_text(INDEX)
    (folder / "style.css").write_text("body { margin: 0 }")
    (folder / "dist" / "app.js").write_text("console.log('computenet')")
    (folder / "src" / "main.js").write_text("export const secret = 1")
    (tmp_path / "outside.txt").write_text("not the page's")
    return folder


@pytest.fixture
def serve(gateway_chain):
    """Serves a gateway on the session chain; returns its URL."""
    served = []

    def start(dapp_dir, store=None):
        api = create_app(
            gateway_chain,
            "http://127.0.0.1:9",  # no facilitator: these routes never settle
            "eip155:31337",
            Account.create().key,
            store=store,
            public_rpc_url=PUBLIC_RPC,
            dapp_dir=dapp_dir,
        )
        served.append(ServedApp(api))
        return served[-1].url

    yield start
    for app in served:
        app.stop()


def preflight(url, method, headers):
    return requests.options(
        url,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ", ".join(headers),
        },
        timeout=10,
    )


def listed(header):
    return {h.strip().lower() for h in header.split(",")}


def test_every_route_answers_cors_preflight_and_exposes_the_payment_headers(serve, dapp_dir):
    url = serve(dapp_dir)
    paying = preflight(f"{url}/jobs", "POST", ["PAYMENT-SIGNATURE", "Content-Type"])
    assert paying.status_code == 200, paying.text
    assert paying.headers["access-control-allow-origin"] == "*"
    assert {"get", "post", "put", "options"} <= listed(paying.headers["access-control-allow-methods"])
    assert {"payment-signature", "content-type"} <= listed(paying.headers["access-control-allow-headers"])

    signed = ["X-Computenet-Address", "X-Computenet-Expires", "X-Computenet-Signature"]
    reading = preflight(f"{url}/jobs/1/outputs/0/0/file?path=out", "GET", signed)
    assert reading.status_code == 200 and {h.lower() for h in signed} <= listed(
        reading.headers["access-control-allow-headers"]
    )
    refused = preflight(f"{url}/jobs", "POST", ["X-Something-Else"])
    assert refused.status_code == 400 and refused.text == "Disallowed CORS headers"

    answer = requests.get(f"{url}/health", headers={"Origin": ORIGIN}, timeout=10)
    assert answer.headers["access-control-allow-origin"] == "*"
    assert listed(answer.headers["access-control-expose-headers"]) == {
        "payment-required",
        "payment-response",
        "x-merkle-proof",
        "x-merkle-root",
    }
    unknown = requests.get(f"{url}/jobs/999999", headers={"Origin": ORIGIN}, timeout=10)
    assert unknown.status_code == 404 and unknown.headers["access-control-allow-origin"] == "*"


def test_config_names_the_chain_the_contracts_and_the_token_the_page_uses(stack, chain, token, serve, dapp_dir):
    url = serve(dapp_dir)
    answer = requests.get(f"{url}/app/config.json", headers={"Origin": ORIGIN}, timeout=10)
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
    config = answer.json()

    assert (config["chainId"], config["chainName"], config["network"]) == (
        chain.chain_id,
        "computenet local",
        f"eip155:{chain.chain_id}",
    )
    assert config["rpcUrl"] == PUBLIC_RPC and config["storeUrl"] == ""
    assert config["contracts"] == {
        "market": stack.market.address,
        "court": stack.court.address,
        "models": stack.models.address,
        "attestations": stack.attestations.address,
        "relay": stack.relay.address,
        "funder": stack.funder.address,
        "assets": stack.assets.address,
        "keepers": stack.keepers.address,
        "token": stack.token.address,
    }
    assert config["token"] == {"name": token.name(), "version": "2", "symbol": "cnUSD", "decimals": 6}
    assert config["parameters"] == dataclasses.asdict(Parameters.from_chain(stack.market.parameters()))
    # Every revert the page may meet, in plain words (computenet.explain keeps the table complete).
    assert config["reverts"]["job_market: deadline too soon"].startswith("The deadline is too close")
    assert len(config["reverts"]) == len(PLAIN)
    assert config["submitMargin"] == SUBMIT_MARGIN  # the page's manifests leave it of each lease

    functions = {name: {i["name"] for i in abi if i["type"] == "function"} for name, abi in config["abis"].items()}
    assert set(functions) == {
        "JobMarket",
        "DisputeCourt",
        "ModelRegistry",
        "AttestationRegistry",
        "BatchRelay",
        "AuthorizationFunder",
        "ComputeAsset",
        "KeeperRegistry",
        "Token",
    }
    assert {
        "balanceOf",
        "allowance",
        "approve",
        "nonces",
        "name",
        "version",
        "decimals",
        "symbol",
        "DOMAIN_SEPARATOR",
    } <= functions["Token"]
    assert {"post_job", "quote", "job", "replica", "credits", "withdraw", "cancel"} <= functions["JobMarket"]
    assert {"register", "set_endpoint", "add_stake", "spec"} <= functions["ComputeAsset"]
    assert {"challenge", "cancel_with_signature"} <= functions["DisputeCourt"]
    assert "register" in functions["KeeperRegistry"]
    assert {"bind", "spec", "model", "submit_result"} <= functions["ModelRegistry"]  # the zk level's
    assert {"attested", "verdict"} <= functions["AttestationRegistry"]  # the tee level's
    assert {"funded_by", "post_job_with_authorization", "return_unclaimed"} <= functions["AuthorizationFunder"]
    # The page's ABIs work as they are: read the chain through them, as viem does.
    web3 = Web3(Web3.HTTPProvider(chain.provider.uri))
    read = web3.eth.contract(address=config["contracts"]["token"], abi=config["abis"]["Token"]).functions
    assert read.DOMAIN_SEPARATOR().call() == bytes(stack.token.DOMAIN_SEPARATOR())
    market = web3.eth.contract(address=config["contracts"]["market"], abi=config["abis"]["JobMarket"]).functions
    assert market.COURT().call() == stack.court.address


def test_config_names_the_content_store(content_store, serve, dapp_dir):
    url = serve(dapp_dir, store=content_store.client)
    assert requests.get(f"{url}/app/config.json", timeout=10).json()["storeUrl"] == content_store.url


def test_the_page_and_its_files_are_served_but_not_its_sources(serve, dapp_dir):
    url = serve(dapp_dir)
    root = requests.get(f"{url}/", allow_redirects=False, timeout=10)
    assert root.status_code == 307 and root.headers["location"] == "/app/"
    page = requests.get(f"{url}/app/", timeout=10)
    assert page.status_code == 200 and page.text == INDEX and page.headers["content-type"].startswith("text/html")
    assert requests.get(f"{url}/app", timeout=10).text == INDEX  # redirected
    style = requests.get(f"{url}/app/style.css", timeout=10)
    assert style.text == "body { margin: 0 }" and style.headers["content-type"].startswith("text/css")
    bundle = requests.get(f"{url}/app/dist/app.js", timeout=10)
    assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
    for hidden in ("src/main.js", "missing.css", "..%2Foutside.txt", "dist/..%2F..%2Foutside.txt"):
        answer = requests.get(f"{url}/app/{hidden}", timeout=10)
        assert answer.status_code == 404 and answer.json()["error"] == "not_found", hidden


def test_an_unbuilt_page_answers_503_naming_make_dapp(serve, dapp_dir):
    (dapp_dir / "dist" / "app.js").unlink()
    url = serve(dapp_dir)
    for path in ("/app/", "/app/index.html", "/app/dist/app.js"):
        answer = requests.get(url + path, timeout=10)
        assert answer.status_code == 503 and "`make dapp`" in answer.json()["message"], path
    assert requests.get(f"{url}/app/config.json", timeout=10).status_code == 200  # the rest still works
    (dapp_dir / "dist" / "app.js").write_text("built later")
    assert requests.get(f"{url}/app/", timeout=10).text == INDEX  # a build is picked up without a restart


def test_the_content_store_answers_the_pages_cors(content_store):
    url = content_store.url
    upload = preflight(f"{url}/blobs", "PUT", ["Content-Type"])
    assert upload.status_code == 200 and upload.headers["access-control-allow-origin"] == "*"
    assert "put" in listed(upload.headers["access-control-allow-methods"])
    put = requests.put(
        f"{url}/blobs",
        data=b"inputs from a page",
        headers={"Origin": ORIGIN, "Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert put.status_code == 200 and put.headers["access-control-allow-origin"] == "*"
    got = requests.get(f"{url}/blobs/sha256/{put.json()['sha256']}", headers={"Origin": ORIGIN}, timeout=10)
    assert got.content == b"inputs from a page" and got.headers["access-control-allow-origin"] == "*"


def test_the_public_rpc_url_defaults_to_the_gateways_own_and_the_dapp_to_this_repository(monkeypatch):
    monkeypatch.setenv("COMPUTENET_GATEWAY_ACCOUNT", "TEST::9")
    monkeypatch.setenv("COMPUTENET_GATEWAY_RPC_URL", "http://10.0.0.2:8545")
    settings = GatewaySettings()
    assert settings.public_rpc_url == "http://10.0.0.2:8545"
    assert settings.dapp_dir == DEFAULT_DAPP_DIR and DEFAULT_DAPP_DIR.parent.joinpath("gateway").is_dir()
    monkeypatch.setenv("COMPUTENET_GATEWAY_PUBLIC_RPC_URL", PUBLIC_RPC)
    assert GatewaySettings().public_rpc_url == PUBLIC_RPC
