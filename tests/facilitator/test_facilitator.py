"""The facilitator as any x402 resource server uses it: the `x402` package's own FastAPI
middleware, pointed at our facilitator, protects a plain paid endpoint, and the official
clients (httpx and requests) pay it with the project's EIP-3009 token on anvil.

These run on an anvil of their own: x402 checks authorizations against the wall clock, and
the session chain's clock is moved by other tests.
"""

import asyncio
import base64
import json
import time

import pytest
from eth_account import Account
from fastapi import FastAPI
from web3 import Web3

from computenet.deploy import TEST_TOKEN_NAME
from computenet.eip3009 import TransferAuthorization
from computenet.localnet import Anvil, ServedApp
from facilitator.service import build_facilitator, create_app

PRICE = 1_000  # token base units per request
NETWORK = "eip155:31337"


class Chain:
    """A fresh anvil with the TestToken deployed; `web3` talks to it directly."""

    def __init__(self, project, keys, tmp):
        self.anvil = Anvil(log=tmp / "anvil.log")
        self.web3 = Web3(Web3.HTTPProvider(self.anvil.uri))
        self.keys = keys
        contract_type = project.TestToken.contract_type
        abi = [item.model_dump(mode="json", by_alias=True) for item in contract_type.abi]
        factory = self.web3.eth.contract(abi=abi, bytecode=contract_type.deployment_bytecode.bytecode)
        self.token = self.web3.eth.contract(
            address=self._send(factory.constructor(TEST_TOKEN_NAME))["contractAddress"], abi=abi
        )

    def _send(self, call, key_index=1):
        account = Account.from_key(self.keys[key_index])
        tx = call.build_transaction(
            {"from": account.address, "nonce": self.web3.eth.get_transaction_count(account.address)}
        )
        signed = account.sign_transaction(tx)
        receipt = self.web3.eth.wait_for_transaction_receipt(self.web3.eth.send_raw_transaction(signed.raw_transaction))
        assert receipt["status"] == 1
        return receipt

    def faucet(self, to, amount):
        self._send(self.token.functions.faucet(to, amount))

    def balance(self, who):
        return self.token.functions.balanceOf(who).call()

    def price(self):
        return {
            "amount": str(PRICE),
            "asset": self.token.address,
            "extra": {"name": TEST_TOKEN_NAME, "version": self.token.functions.version().call()},
        }


@pytest.fixture(scope="module")
def x402_chain(project, accounts, tmp_path_factory):
    keys = [accounts[i].private_key for i in range(4)]
    chain = Chain(project, keys, tmp_path_factory.mktemp("x402"))
    yield chain
    chain.anvil.stop()


@pytest.fixture(scope="module")
def facilitator_url(x402_chain):
    served = ServedApp(create_app(build_facilitator(x402_chain.keys[0], x402_chain.anvil.uri, [NETWORK]), [NETWORK]))
    yield served.url
    served.stop()


@pytest.fixture(scope="module")
def merchant():
    return Account.create().address


@pytest.fixture(scope="module")
def paid_endpoint(x402_chain, facilitator_url, merchant):
    """A plain FastAPI app whose GET /report costs PRICE, protected by x402's own middleware."""
    from x402 import x402ResourceServer
    from x402.http import FacilitatorConfig, HTTPFacilitatorClient, PaymentOption, RouteConfig
    from x402.http.middleware.fastapi import PaymentMiddlewareASGI
    from x402.mechanisms.evm.exact import ExactEvmServerScheme

    server = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(url=facilitator_url)))
    server.register(NETWORK, ExactEvmServerScheme())
    routes = {
        "GET /report": RouteConfig(
            accepts=[PaymentOption(scheme="exact", pay_to=merchant, price=x402_chain.price(), network=NETWORK)]
        )
    }
    app = FastAPI()

    @app.get("/report")
    def report():
        return {"report": "paid content"}

    app.add_middleware(PaymentMiddlewareASGI, routes=routes, server=server)
    served = ServedApp(app)
    yield served.url
    served.stop()


def payer(x402_chain, amount=10 * PRICE):
    """A fresh key holding tokens and no ETH."""
    account = Account.create()
    x402_chain.faucet(account.address, amount)
    return account


def spend_controls(x402_chain):
    return {
        "allowed_assets": [{"network": NETWORK, "asset": x402_chain.token.address}],
        "max_amount_per_payment": False,
    }


def decode(header):
    return json.loads(base64.b64decode(header))


def test_the_official_httpx_client_pays_through_this_facilitator(x402_chain, paid_endpoint, merchant):
    from x402 import x402Client
    from x402.http.clients.httpx import x402HttpxClient
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import register_exact_evm_client

    account = payer(x402_chain)
    client = x402Client().set_spend_controls(spend_controls(x402_chain))
    register_exact_evm_client(client, EthAccountSigner(account), networks="eip155:*")
    before = x402_chain.balance(merchant)

    async def pay():
        async with x402HttpxClient(client) as http:
            return await http.get(f"{paid_endpoint}/report")

    response = asyncio.run(pay())
    assert response.status_code == 200 and response.json() == {"report": "paid content"}
    settled = decode(response.headers["PAYMENT-RESPONSE"])
    assert settled["success"] is True and settled["network"] == NETWORK and settled["transaction"].startswith("0x")
    assert x402_chain.balance(merchant) - before == PRICE
    assert x402_chain.balance(account.address) == 9 * PRICE
    assert x402_chain.web3.eth.get_balance(account.address) == 0  # the payer never held gas


def test_the_official_requests_client_pays_and_an_unpaid_request_gets_402(x402_chain, paid_endpoint, merchant):
    import requests
    from x402 import x402ClientSync
    from x402.http.clients.requests import x402_requests
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import register_exact_evm_client

    unpaid = requests.get(f"{paid_endpoint}/report", timeout=10)
    assert unpaid.status_code == 402
    offer = decode(unpaid.headers["PAYMENT-REQUIRED"])["accepts"][0]
    assert (offer["amount"], offer["asset"], offer["payTo"]) == (str(PRICE), x402_chain.token.address, merchant)

    account = payer(x402_chain)
    client = x402ClientSync().set_spend_controls(spend_controls(x402_chain))
    register_exact_evm_client(client, EthAccountSigner(account), networks="eip155:*")
    before = x402_chain.balance(merchant)
    with x402_requests(client) as session:
        response = session.get(f"{paid_endpoint}/report", timeout=30)
    assert response.status_code == 200
    assert x402_chain.balance(merchant) - before == PRICE


def test_supported_lists_exact_on_the_local_chain_with_its_signer(facilitator_url, x402_chain):
    import requests

    supported = requests.get(f"{facilitator_url}/supported", timeout=10).json()
    assert supported["kinds"] == [{"x402Version": 2, "scheme": "exact", "network": NETWORK}]  # only what it serves
    assert Account.from_key(x402_chain.keys[0]).address in supported["signers"]["eip155:*"]


def signed_body(x402_chain, account, pay_to):
    """A /verify-/settle body: `account`'s signed payment of PRICE to `pay_to`, as the official client makes it."""
    from x402 import x402ClientSync
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import register_exact_evm_client
    from x402.schemas import PaymentRequired, PaymentRequirements

    client = x402ClientSync().set_spend_controls(spend_controls(x402_chain))
    register_exact_evm_client(client, EthAccountSigner(account), networks="eip155:*")
    price = x402_chain.price()
    requirements = PaymentRequirements(
        scheme="exact",
        network=NETWORK,
        asset=price["asset"],
        amount=price["amount"],
        pay_to=pay_to,
        max_timeout_seconds=60,
        extra=price["extra"],
    )
    payload = client.create_payment_payload(
        PaymentRequired(x402_version=2, accepts=[requirements], resource={"url": "http://x"})
    )
    return {
        "x402Version": 2,
        "paymentPayload": payload.model_dump(by_alias=True, exclude_none=True),
        "paymentRequirements": requirements.model_dump(by_alias=True, exclude_none=True),
    }


def test_a_replayed_or_foreign_payment_is_refused_with_the_specs_reason(x402_chain, facilitator_url, merchant):
    import requests

    account = payer(x402_chain)
    body = signed_body(x402_chain, account, merchant)
    first = requests.post(f"{facilitator_url}/settle", json=body, timeout=30).json()
    assert first["success"] is True
    again = requests.post(f"{facilitator_url}/verify", json=body, timeout=30).json()
    assert again == {
        "isValid": False,
        "invalidReason": "invalid_exact_evm_nonce_already_used",
        "payer": account.address,
    }
    replay = requests.post(f"{facilitator_url}/settle", json=body, timeout=30).json()
    assert replay == {
        "success": False,
        "errorReason": "invalid_exact_evm_nonce_already_used",
        "transaction": "",
        "network": NETWORK,
        "payer": account.address,
    }
    assert x402_chain.balance(account.address) == 9 * PRICE  # paid once

    foreign = json.loads(json.dumps(body))
    foreign["paymentRequirements"]["network"] = "eip155:8453"
    foreign["paymentPayload"]["accepted"]["network"] = "eip155:8453"
    assert requests.post(f"{facilitator_url}/verify", json=foreign, timeout=30).json() == {
        "isValid": False,
        "invalidReason": "invalid_network",
    }
    other_scheme = json.loads(json.dumps(body))
    other_scheme["paymentRequirements"]["scheme"] = "upto"
    assert (
        requests.post(f"{facilitator_url}/settle", json=other_scheme, timeout=30).json()["errorReason"]
        == "unsupported_scheme"
    )
    assert (
        requests.post(
            f"{facilitator_url}/verify", json={"paymentPayload": {}, "paymentRequirements": {}}, timeout=30
        ).status_code
        == 400
    )


def resigned(x402_chain, body, account, valid_after, valid_before):
    """`body` with its EIP-3009 authorization signed again for another validity window."""
    body = json.loads(json.dumps(body))
    auth = body["paymentPayload"]["payload"]["authorization"]
    auth.update(validAfter=str(valid_after), validBefore=str(valid_before))
    price = x402_chain.price()
    signature = TransferAuthorization.from_x402(auth).sign(
        account.key, price["extra"]["name"], price["extra"]["version"], 31337, price["asset"]
    )
    body["paymentPayload"]["payload"]["signature"] = "0x" + signature.hex()
    return body


def _mutated(body, **changes):
    copy = json.loads(json.dumps(body))
    for path, value in changes.items():
        target = copy
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[key]
        target[leaf] = value
    return copy


@pytest.mark.parametrize(
    "case, reason",
    [
        ("wrong amount", "invalid_exact_evm_payload_authorization_value_mismatch"),
        ("wrong payee", "invalid_exact_evm_payload_recipient_mismatch"),
        ("bad signature", "invalid_exact_evm_payload_signature"),
        ("insufficient balance", "invalid_exact_evm_insufficient_balance"),
        ("expired", "invalid_exact_evm_payload_authorization_valid_before"),
        ("not yet valid", "invalid_exact_evm_payload_authorization_valid_after"),
    ],
)
def test_a_bad_payment_gets_the_specs_reason_and_moves_nothing(x402_chain, facilitator_url, merchant, case, reason):
    import requests

    account = payer(x402_chain, amount=0 if case == "insufficient balance" else 10 * PRICE)
    body = signed_body(x402_chain, account, merchant)
    if case == "wrong amount":  # the server asks 2 × PRICE; the payer signed PRICE
        body = _mutated(
            body, paymentRequirements__amount=str(2 * PRICE), paymentPayload__accepted__amount=str(2 * PRICE)
        )
    elif case == "wrong payee":
        other = Account.create().address
        body = _mutated(body, paymentRequirements__payTo=other, paymentPayload__accepted__payTo=other)
    elif case == "bad signature":
        signature = body["paymentPayload"]["payload"]["signature"]
        body = _mutated(
            body,
            paymentPayload__payload__signature=signature[:10] + ("0" if signature[10] != "0" else "1") + signature[11:],
        )
    elif case in ("expired", "not yet valid"):
        now = int(time.time())
        window = (now - 600, now + 2) if case == "expired" else (now + 3_600, now + 7_200)
        body = resigned(x402_chain, body, account, *window)
    before = (x402_chain.balance(account.address), x402_chain.balance(merchant))
    verified = requests.post(f"{facilitator_url}/verify", json=body, timeout=30).json()
    settled = requests.post(f"{facilitator_url}/settle", json=body, timeout=30).json()
    assert verified["isValid"] is False and verified["invalidReason"] == reason
    assert settled["success"] is False and settled["errorReason"] == reason and settled["transaction"] == ""
    assert (x402_chain.balance(account.address), x402_chain.balance(merchant)) == before


def test_the_resigning_helper_makes_valid_authorizations(x402_chain, facilitator_url, merchant):
    """The window cases above fail for their window, not for a broken signature."""
    import requests

    account = payer(x402_chain)
    now = int(time.time())
    body = resigned(x402_chain, signed_body(x402_chain, account, merchant), account, now - 600, now + 300)
    assert requests.post(f"{facilitator_url}/verify", json=body, timeout=30).json() == {
        "isValid": True,
        "payer": account.address,
    }
