"""The job gateway paid by the official x402 clients (httpx and requests) on anvil, through
this project's facilitator: the payer holds no ETH, the escrow grows by exactly the job's
budget, the job is posted for the payer, and what it did not use comes back at finalisation.
Each refusal has the spec's reason and moves nothing; a front-run authorization funds its
job exactly once. A payment buys only the job it was offered for: neither the gateway nor
the facilitator's /settle takes it for another job, on terms the gateway did not tag, or
with a tag that is not bound to its authorization.

Like the facilitator's tests these run on an anvil of their own (x402 checks the wall clock);
ape deploys the stack there, and everything after talks to it over web3.
"""

import asyncio
import base64
import json
import time
from dataclasses import replace

import pytest
import requests
from eth_account import Account
from web3 import Web3

from agent.outputs import app as outputs_app
from agent.outputs import sign_request
from computenet import merkle
from computenet.connection import network_context
from computenet.deploy import DEFAULT_PARAMETERS, deploy_stack
from computenet.domain import Verification
from computenet.eip3009 import TransferAuthorization, split
from computenet.localnet import Anvil, ServedApp
from computenet.manifest import build_manifest
from computenet.market import Market
from computenet.merkle import MerkleTree
from computenet.receipts import ExecutionReceipt
from computenet.store import LocalStore
from computenet.web3calls import Sender, contract
from facilitator.job_tags import JobTerms, sign_tag
from facilitator.jobs import JobSettlement, parse_job
from facilitator.refunds import Refunder
from facilitator.service import build_facilitator, create_app
from gateway.app import Chain
from gateway.app import create_app as create_gateway

NETWORK = "eip155:31337"
TOKEN = 10**6
CHALLENGE_WINDOW = 60  # short: finalising warps the clock, and x402 reads the wall clock
IMAGE = "computenet/job@sha256:" + "ab" * 32
OUTPUTS = {"out/result.txt": b"42\n", "log/container.log": b"done\n"}


class Net:
    """A fresh anvil with the whole stack, the facilitator and the gateway served on it."""

    def __init__(self, project, accounts, tmp):
        self.anvil = Anvil(log=tmp / "anvil.log")
        owner, self.provider, self.keeper, self.facilitator = accounts[0], accounts[2], accounts[4], accounts[7]
        self.agent, self.stranger = accounts[10], accounts[9]
        with network_context(self.anvil.uri):
            stack = deploy_stack(
                project, owner, parameters=replace(DEFAULT_PARAMETERS, challenge_window=CHALLENGE_WINDOW)
            )
            stack.market.set_facilitator(self.facilitator, True, sender=owner)
            for who, spender in ((self.keeper, stack.keepers), (self.provider, stack.assets)):
                stack.token.faucet(who, 10_000 * TOKEN, sender=who)
                stack.token.approve(spender, 2**256 - 1, sender=who)
            stack.keepers.register(100 * TOKEN, sender=self.keeper)
            spec = (1, 81_920, 1, 16, 1, 100, 4_000_000_000, True, 1, 16_384, 65_536)
            receipt = stack.assets.register(spec, self.agent, b"\x11" * 32, sender=self.provider)
            self.asset = receipt.events.filter(stack.assets.AssetRegistered)[0].asset
            stack.assets.add_stake(self.asset, 1_000 * TOKEN, sender=self.provider)
        self.web3 = Web3(Web3.HTTPProvider(self.anvil.uri))
        self.market = contract(self.web3, "JobMarket", stack.market.address)
        self.funder = contract(self.web3, "AuthorizationFunder", stack.funder.address)  # x402 jobs are funded here
        self.token = contract(self.web3, "TestToken", stack.token.address)
        self.sender = Sender(self.web3, self.facilitator.private_key)
        self.gateway_key = Account.create()  # tags the gateway's offers; holds nothing
        self.jobs = JobSettlement(
            self.web3, self.sender, self.market.address, self.token.address, [self.gateway_key.address]
        )
        self.facilitator_app = ServedApp(
            create_app(build_facilitator(self.facilitator.private_key, self.anvil.uri, [NETWORK]), [NETWORK], self.jobs)
        )
        self.outputs = tmp / "agent-work"
        self.store = LocalStore(tmp / "agent-store")
        self.chain = Chain(self.web3, self.market.address)
        self.gateway = ServedApp(
            create_gateway(
                self.chain,
                self.facilitator_app.url,
                NETWORK,
                self.gateway_key.key,
                outputs={self.agent.address: self.serve_outputs()},
            )
        )

    def serve_outputs(self):
        client_of = lambda job: self.market.functions.job(job).call()[0].lower()  # noqa: E731
        app = outputs_app(
            self.outputs,
            self.store,
            31337,
            self.agent.address,
            lambda job, shard, replica, who: who.lower() == client_of(job),
        )
        self.outputs_server = ServedApp(app)
        return self.outputs_server.url

    def stop(self):
        for served in (self.gateway, self.facilitator_app, self.outputs_server):
            served.stop()
        self.anvil.stop()

    def send(self, account, call):
        return Sender(self.web3, account.private_key).send(call)

    def balance(self, who):
        return self.token.functions.balanceOf(who).call()

    def payer(self, amount):
        """A fresh key holding `amount` tokens and no ETH."""
        account = Account.create()
        self.send(self.keeper, self.token.functions.faucet(account.address, amount))
        return account

    def now(self):
        return self.web3.eth.get_block("latest")["timestamp"]


@pytest.fixture(scope="module")
def net(project, accounts, tmp_path_factory):
    net = Net(project, accounts, tmp_path_factory.mktemp("gateway"))
    yield net
    net.stop()


def job_body(net, shards=1, **overrides):
    manifest = build_manifest(
        IMAGE, ["python3", "/in/run.py"], {"run.py": b"print(42)"}, timeout_seconds=600, max_output_bytes=1 << 20
    )
    requirements = dict(
        min_vram_mib=40_960,
        gpu_count=1,
        max_price=200,
        max_gpu_seconds=600,
        deadline=net.now() + 86_400,
        shard_count=shards,
        replication=1,
        verification=int(Verification.OPTIMISTIC),
    )
    requirements.update(overrides)
    return {"manifest": manifest.model_dump(mode="json"), "requirements": requirements}


def clients(net, account, sync=False):
    from x402 import x402Client, x402ClientSync
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import register_exact_evm_client

    client = (x402ClientSync() if sync else x402Client()).set_spend_controls(
        {"allowed_assets": [{"network": NETWORK, "asset": net.token.address}], "max_amount_per_payment": False}
    )
    return register_exact_evm_client(client, EthAccountSigner(account), networks="eip155:*")


def decode(header):
    return json.loads(base64.b64decode(header))


def offer(net, body):
    """The gateway's 402 for `body`: (PaymentRequired, its one offer as JSON)."""
    from x402.http.utils import decode_payment_required_header

    answer = requests.post(f"{net.gateway.url}/jobs", json=body, timeout=30)
    assert answer.status_code == 402, answer.text
    return decode_payment_required_header(answer.headers["PAYMENT-REQUIRED"]), decode(
        answer.headers["PAYMENT-REQUIRED"]
    )["accepts"][0]


def signed_payment(net, account, body, **authorization):
    """A payment for `body` as the official client makes it, its authorization changed by
    `authorization` and signed again by `account`; returns the PAYMENT-SIGNATURE header."""
    from x402.http.utils import encode_payment_signature_header

    required, _ = offer(net, body)
    payload = clients(net, account, sync=True).create_payment_payload(required)
    if authorization:
        auth = dict(payload.payload["authorization"], **{k: str(v) for k, v in authorization.items()})
        signed = TransferAuthorization.from_x402(auth).sign(
            account.key, net.chain.token_name, net.chain.token_version, 31337, net.token.address
        )
        payload = payload.model_copy(update={"payload": {"authorization": auth, "signature": "0x" + signed.hex()}})
    return encode_payment_signature_header(payload)


def post_paid(net, body, header):
    return requests.post(f"{net.gateway.url}/jobs", json=body, headers={"PAYMENT-SIGNATURE": header}, timeout=60)


def encode(payload):
    return base64.b64encode(json.dumps(payload).encode()).decode()


def same_price_jobs(net):
    """Two different jobs of one price: two shards, or one shard run twice."""
    a = job_body(net, shards=2)
    b = job_body(
        net, shards=1, replication=2, verification=int(Verification.REPLICATED), deadline=a["requirements"]["deadline"]
    )
    return a, b


def gateway_tag(net, requirements, *, key=None, expires=None, payment=None):
    """A tag on the terms of `requirements` (JSON) by `key` (default: the gateway's) until
    `expires`, bound to the authorization of `payment` (a decoded PAYMENT-SIGNATURE) when given:
    with a payment, what the gateway hands the facilitator."""
    from x402.schemas import PaymentRequirements

    parsed = PaymentRequirements.model_validate(requirements)
    terms = JobTerms.of(parsed, *parse_job(parsed.extra))
    auth = TransferAuthorization.from_x402(payment["payload"]["authorization"]) if payment else None
    return sign_tag(
        key or net.gateway_key.key, terms, expires or int(time.time()) + 60, *((auth.payer, auth.nonce) if auth else ())
    )


def with_tag(requirements, tag):
    """`requirements` (JSON) with extra.computenetTag replaced by `tag` (None: removed)."""
    extra = {k: v for k, v in requirements["extra"].items() if k != "computenetTag"}
    return {**requirements, "extra": extra | ({"computenetTag": tag} if tag else {})}


def at_facilitator(net, endpoint, payment, requirements):
    """The facilitator's answer to /verify or /settle for `payment` (a decoded PAYMENT-SIGNATURE)."""
    body = {"x402Version": 2, "paymentPayload": payment, "paymentRequirements": requirements}
    return requests.post(f"{net.facilitator_app.url}/{endpoint}", json=body, timeout=60).json()


def holdings(net, account):
    """What a refused payment leaves as it was: the payer's and the market's tokens, the jobs and their JobPosted events."""
    return (
        net.balance(account.address),
        net.balance(net.market.address),
        net.market.functions.job_count().call(),
        len(net.market.events.JobPosted().get_logs(from_block=0)),
    )


def test_an_unpaid_post_gets_the_jobs_offer(net):
    body = job_body(net, shards=4)
    _, accepts = offer(net, body)
    quote = net.market.functions.quote(
        (40_960, 1, 200, 600, body["requirements"]["deadline"], 4, 1, 0, 1, 1024, 1024)
    ).call()
    assert int(accepts["amount"]) == quote == 4 * 200 * 600 * 10_150 // 10_000
    assert (accepts["scheme"], accepts["network"], accepts["asset"], accepts["payTo"]) == (
        "exact",
        NETWORK,
        net.token.address,
        net.market.address,
    )
    assert accepts["extra"]["computenetJob"]["requirements"]["shard_count"] == 4
    assert accepts["extra"]["name"] == net.chain.token_name
    tag = accepts["extra"]["computenetTag"]
    assert tag["gateway"] == net.gateway_key.address and time.time() < tag["expires"] <= time.time() + 300
    assert "nonce" not in tag  # the client picks its nonce after the offer


def test_the_httpx_client_pays_a_job_that_runs_and_refunds_the_unused_budget(net):
    from x402.http.clients.httpx import x402HttpxClient

    account = net.payer(1_000 * TOKEN)
    body = job_body(net)
    escrow_before, jobs_before = net.balance(net.market.address), net.market.functions.job_count().call()

    async def pay():
        async with x402HttpxClient(clients(net, account)) as http:
            return await http.post(f"{net.gateway.url}/jobs", json=body, timeout=60)

    answer = asyncio.run(pay())
    assert answer.status_code == 201, answer.text
    job, budget = answer.json()["job"], answer.json()["budget"]
    settled = decode(answer.headers["PAYMENT-RESPONSE"])
    assert settled["success"] is True and settled["transaction"] == answer.json()["transaction"]
    assert job == jobs_before + 1
    assert net.balance(net.market.address) - escrow_before == budget  # exactly the job's budget
    assert net.balance(account.address) == 1_000 * TOKEN - budget
    assert net.web3.eth.get_balance(account.address) == 0  # the payer never held gas
    status = requests.get(f"{net.gateway.url}/jobs/{job}", timeout=10).json()
    assert status["client"] == account.address and status["escrow"] == budget
    assert [s["state"] for s in status["shards"]] == ["open"]

    # The job runs: a keeper assigns it, the agent submits a result, anyone finalises.
    root = MerkleTree.from_files(OUTPUTS).root
    net.send(net.keeper, net.market.functions.assign(job, 0, net.asset))
    lease = net.market.functions.replica(job, 0, 0).call()[3]
    receipt = ExecutionReceipt(
        job=job,
        shard=0,
        replica=0,
        lease=lease,
        asset=net.asset,
        manifest=bytes.fromhex(status["manifest_hash"][2:]),
        output_root=root,
        gpu_seconds=100,
        exit_code=0,
    )
    signature = receipt.sign(net.agent.private_key, 31337, net.market.address)
    net.web3.provider.make_request("evm_increaseTime", [100])  # the run takes its 100 s
    net.send(net.provider, net.market.functions.submit_result(job, 0, 0, root, 100, 0, signature))
    net.anvil.rpc("evm_increaseTime", [CHALLENGE_WINDOW + 1])
    net.anvil.rpc("evm_mine", [])
    net.send(net.keeper, net.market.functions.finalize(job, 0))

    paid = 100 * 100  # 100 GPU-seconds at the asset's price of 100
    fees = paid * 100 // 10_000 + paid * 50 // 10_000
    refund = budget - paid - fees
    assert net.market.functions.credits(account.address).call() == refund
    assert Refunder(Market.over_web3(net.web3, net.market.address), net.sender).run_once() == [account.address]
    assert net.balance(account.address) == 1_000 * TOKEN - paid - fees  # the unused part came back
    assert net.market.functions.credits(account.address).call() == 0
    assert requests.get(f"{net.gateway.url}/jobs/{job}", timeout=10).json()["finished"] is True

    # The payer reads the result through the gateway, signing for the agent's own path.
    folder = net.outputs / f"computenet-{job}-0-0-1"
    folder.mkdir(parents=True)
    files = {leaf: net.store.put(data)["sha256"] for leaf, data in OUTPUTS.items()}
    (folder / "outputs.json").write_text(json.dumps({"root": "0x" + root.hex(), "files": files}))
    target = f"/outputs/{job}/0/0/file?path=out/result.txt"
    fetched = requests.get(
        f"{net.gateway.url}/jobs/{job}/outputs/0/0/file?path=out/result.txt",
        timeout=10,
        headers=sign_request(account.key, 31337, net.agent.address, target),
    )
    assert fetched.status_code == 200 and fetched.content == b"42\n"
    proof = [bytes.fromhex(p[2:]) for p in json.loads(fetched.headers["X-Merkle-Proof"])]
    assert merkle.verify(proof, root, merkle.leaf("out/result.txt", b"42\n"))
    stranger = requests.get(
        f"{net.gateway.url}/jobs/{job}/outputs/0/0/file?path=out/result.txt",
        timeout=10,
        headers=sign_request(Account.create().key, 31337, net.agent.address, target),
    )
    assert stranger.status_code == 403
    assert requests.get(f"{net.gateway.url}/jobs/{job}/outputs/0/0", timeout=10).status_code == 401


def test_the_requests_client_pays_a_job(net):
    from x402.http.clients.requests import x402_requests

    account = net.payer(1_000 * TOKEN)
    escrow_before = net.balance(net.market.address)
    with x402_requests(clients(net, account, sync=True)) as session:
        answer = session.post(f"{net.gateway.url}/jobs", json=job_body(net, shards=2), timeout=60)
    assert answer.status_code == 201, answer.text
    job = answer.json()["job"]
    assert net.market.functions.job(job).call()[0] == account.address
    assert net.balance(net.market.address) - escrow_before == answer.json()["budget"]
    assert len(requests.get(f"{net.gateway.url}/jobs/{job}", timeout=10).json()["shards"]) == 2


@pytest.mark.parametrize(
    "flaw, reason",
    [
        ("wrong amount", "invalid_exact_evm_payload_authorization_value_mismatch"),
        ("expired", "invalid_exact_evm_payload_authorization_valid_before"),
        ("not yet valid", "invalid_exact_evm_payload_authorization_valid_after"),
        ("bad signature", "invalid_exact_evm_payload_signature"),
        ("insufficient balance", "invalid_exact_evm_insufficient_balance"),
        ("wrong payee", "invalid_exact_evm_payload_recipient_mismatch"),
    ],
)
def test_a_bad_payment_gets_the_specs_reason_and_moves_nothing(net, flaw, reason):
    account = net.payer(10 * TOKEN if flaw == "insufficient balance" else 1_000 * TOKEN)
    body = job_body(net, shards=1 if flaw != "insufficient balance" else 100)
    now = net.now()
    changes = {
        "wrong amount": {"value": 1},
        "expired": {"validBefore": now - 10},
        "not yet valid": {"validAfter": now + 3_600},
        "wrong payee": {"to": net.stranger.address},
        "insufficient balance": {},
        "bad signature": {},
    }[flaw]
    header = signed_payment(net, account, body, **changes)
    if flaw == "bad signature":  # well formed, but by another key
        payload = decode(header)
        auth = TransferAuthorization.from_x402(payload["payload"]["authorization"])
        forged = auth.sign(
            Account.create().key, net.chain.token_name, net.chain.token_version, 31337, net.token.address
        )
        payload["payload"]["signature"] = "0x" + forged.hex()
        header = encode(payload)
    before = net.balance(account.address), net.balance(net.market.address), net.market.functions.job_count().call()

    answer = post_paid(net, body, header)

    assert answer.status_code == 402, answer.text
    assert answer.json()["error"] == reason, answer.json()
    assert answer.json()["message"]
    assert decode(answer.headers["PAYMENT-REQUIRED"])["error"] == reason
    assert (
        net.balance(account.address),
        net.balance(net.market.address),
        net.market.functions.job_count().call(),
    ) == before


def test_a_payment_for_another_job_token_or_network_is_refused(net):
    account = net.payer(1_000 * TOKEN)
    header = signed_payment(net, account, job_body(net, shards=1))
    other_job = job_body(net, shards=1, max_gpu_seconds=601)
    answer = post_paid(net, other_job, header)
    assert answer.status_code == 402 and answer.json()["error"] == "invalid_payment_requirements"
    assert "amount" in answer.json()["message"] or "another job" in answer.json()["message"]
    for field, value, reason in (
        ("network", "eip155:8453", "invalid_network"),
        ("scheme", "upto", "unsupported_scheme"),
        ("asset", Account.create().address, "invalid_payment_requirements"),
    ):
        payload = decode(header)
        payload["accepted"][field] = value
        forged = encode(payload)
        answer = post_paid(net, job_body(net, shards=1), forged)
        assert answer.status_code == 402 and answer.json()["error"] == reason, answer.json()
        assert field in answer.json()["message"] and value in answer.json()["message"]
    assert net.balance(account.address) == 1_000 * TOKEN


@pytest.mark.parametrize(
    "case, message",
    [
        ("untagged", "carry no gateway tag"),
        ("tagged by another key", "not by a trusted gateway"),
        ("expired", "offer expired"),
        ("another job's tag", "signature over these job terms"),
    ],
)
def test_the_gateway_takes_a_payment_only_for_its_own_unexpired_offer(net, case, message):
    account = net.payer(1_000 * TOKEN)
    job_a, job_b = same_price_jobs(net)
    payment = decode(signed_payment(net, account, job_a))
    tag = {
        "untagged": None,
        "tagged by another key": gateway_tag(net, payment["accepted"], key=Account.create().key),
        "expired": gateway_tag(net, payment["accepted"], expires=int(time.time()) - 1),
        "another job's tag": offer(net, job_b)[1]["extra"]["computenetTag"],
    }[case]
    payment["accepted"] = with_tag(payment["accepted"], tag)
    before = holdings(net, account)

    answer = post_paid(net, job_a, encode(payment))

    assert answer.status_code == 402 and answer.json()["error"] == "invalid_computenet_job", answer.json()
    assert message in answer.json()["message"]
    assert decode(answer.headers["PAYMENT-REQUIRED"])["error"] == "invalid_computenet_job"
    assert holdings(net, account) == before


@pytest.mark.parametrize(
    "case, message",
    [
        ("job B's offer", "not bound to this authorization"),
        ("job B's terms under job A's payment tag", "signature over these job terms and this authorization"),
        ("untagged", "carry no gateway tag"),
        ("tagged by an untrusted key", "not by a trusted gateway"),
        ("tag expired", "offer expired"),
    ],
)
def test_settle_takes_a_job_payment_only_on_terms_the_gateway_bound_to_it(net, case, message):
    """A payment for job A, posted straight to the facilitator by someone else: with job B's
    terms of the same price (B's own valid offer, or A's payment tag), or with A's terms under
    no tag, another key's or an expired one. /verify and /settle refuse it; nothing moves."""
    account = net.payer(1_000 * TOKEN)
    job_a, job_b = same_price_jobs(net)
    payment = decode(signed_payment(net, account, job_a))
    offer_a, offer_b = payment["accepted"], offer(net, job_b)[1]
    assert (
        offer_a["amount"] == offer_b["amount"]
        and offer_a["extra"]["computenetJob"] != offer_b["extra"]["computenetJob"]
    )
    bound_a = with_tag(offer_a, gateway_tag(net, offer_a, payment=payment))  # what the gateway settles job A on
    job_b_under_a = {**bound_a, "extra": bound_a["extra"] | {"computenetJob": offer_b["extra"]["computenetJob"]}}
    requirements = {
        "job B's offer": offer_b,
        "job B's terms under job A's payment tag": job_b_under_a,
        "untagged": with_tag(offer_a, None),
        "tagged by an untrusted key": with_tag(
            offer_a, gateway_tag(net, offer_a, key=Account.create().key, payment=payment)
        ),
        "tag expired": with_tag(offer_a, gateway_tag(net, offer_a, expires=int(time.time()) - 1, payment=payment)),
    }[case]
    forged = payment | {"accepted": requirements}
    before = holdings(net, account)

    verified = at_facilitator(net, "verify", forged, requirements)
    settled = at_facilitator(net, "settle", forged, requirements)

    assert verified["isValid"] is False and verified["invalidReason"] == "invalid_computenet_job", verified
    assert (
        settled["success"] is False
        and settled["errorReason"] == "invalid_computenet_job"
        and settled["transaction"] == ""
    )
    assert message in verified["invalidMessage"] and message in settled["errorMessage"]
    assert holdings(net, account) == before
    # The same payment on the terms the gateway binds it to is good: the refusal was the tag's.
    assert at_facilitator(net, "verify", payment, bound_a) == {"isValid": True, "payer": account.address}


def test_a_copied_payment_header_buys_no_other_job(net):
    """Someone holding a copy of the payer's PAYMENT-SIGNATURE for job A sends it with job
    B's valid offer of the same price, to the gateway and straight to /settle: before the
    payer's own payment went through and after. Only job A is ever posted, once."""
    account = net.payer(0)  # no tokens yet: its own first try is refused and spends nothing
    job_a, job_b = same_price_jobs(net)
    header = signed_payment(net, account, job_a)
    offer_b = offer(net, job_b)[1]
    copy = decode(header) | {"accepted": offer_b}
    first = post_paid(net, job_a, header)  # the payer's own request reaches the gateway first
    assert first.json()["error"] == "invalid_exact_evm_insufficient_balance"
    net.send(net.keeper, net.token.functions.faucet(account.address, 1_000 * TOKEN))

    def copy_refused():
        before = holdings(net, account)
        at_gateway = post_paid(net, job_b, encode(copy))
        assert at_gateway.status_code == 402 and at_gateway.json()["error"] == "invalid_computenet_job", (
            at_gateway.json()
        )
        assert "was presented for another job" in at_gateway.json()["message"]
        settled = at_facilitator(net, "settle", copy, offer_b)
        assert settled["success"] is False and settled["errorReason"] == "invalid_computenet_job", settled
        assert "not bound to this authorization" in settled["errorMessage"]
        assert holdings(net, account) == before

    copy_refused()
    paid = post_paid(net, job_a, header)
    assert paid.status_code == 201, paid.text
    copy_refused()

    job, budget = paid.json()["job"], paid.json()["budget"]
    assert net.balance(account.address) == 1_000 * TOKEN - budget
    posted = net.market.events.JobPosted().get_logs(from_block=0, argument_filters={"client": account.address})
    assert [(e["args"]["job"], e["args"]["shard_count"], e["args"]["replication"]) for e in posted] == [(job, 2, 1)]


def test_a_replayed_payment_is_refused_and_credited_once(net):
    account = net.payer(1_000 * TOKEN)
    body = job_body(net)
    header = signed_payment(net, account, body)
    first = post_paid(net, body, header)
    assert first.status_code == 201
    jobs, escrow = net.market.functions.job_count().call(), net.balance(net.market.address)

    again = post_paid(net, body, header)

    assert again.status_code == 402 and again.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert f"job {first.json()['job']}" in again.json()["message"]
    assert (net.market.functions.job_count().call(), net.balance(net.market.address)) == (jobs, escrow)


def test_a_front_run_authorization_funds_its_job_exactly_once(net):
    """Someone submits the client's signed authorization straight to the token first: the
    tokens reach the market credited to no one, and the gateway's post still funds the job
    on them, once."""
    account = net.payer(1_000 * TOKEN)
    body = job_body(net)
    header = signed_payment(net, account, body)
    payload = decode(header)["payload"]
    auth = TransferAuthorization.from_x402(payload["authorization"])
    net.send(
        net.stranger,
        net.token.functions.transferWithAuthorization(*auth.token_args(bytes.fromhex(payload["signature"][2:]))),
    )
    escrow = net.balance(net.market.address)
    assert escrow and net.balance(account.address) == 1_000 * TOKEN - auth.value

    answer = post_paid(net, body, header)

    assert answer.status_code == 201, answer.text
    job = answer.json()["job"]
    funded = net.funder.events.JobFundedByAuthorization().get_logs(from_block=0, argument_filters={"job": job})
    assert [e["args"]["front_run"] for e in funded] == [True]
    assert net.balance(net.market.address) == escrow  # no second transfer
    assert net.balance(account.address) == 1_000 * TOKEN - auth.value
    assert net.market.functions.job(job).call()[1] == auth.value  # the job's escrow holds the tokens
    assert post_paid(net, body, header).json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert net.market.functions.job_count().call() == job


def test_a_front_run_landing_while_settling_is_caught(net):
    """The race: the facilitator's post is on its way when the front run lands; the revert is
    recognised and the job posted on the front-run tokens."""
    from x402.http.utils import decode_payment_signature_header
    from x402.schemas import PaymentRequirements

    account = net.payer(1_000 * TOKEN)
    body = job_body(net)
    header = signed_payment(net, account, body)
    payload = decode_payment_signature_header(header)
    accepted = decode(header)["accepted"]
    requirements = PaymentRequirements.model_validate(
        with_tag(accepted, gateway_tag(net, accepted, payment=decode(header)))
    )
    payment = net.jobs.payment(payload, requirements)
    assert net.jobs.spent(payment) is False  # checked before the front run...
    net.send(
        net.stranger,
        net.token.functions.transferWithAuthorization(
            *payment.authorization.token_args(bytes.fromhex(payment.signature[2:]))
        ),
    )
    escrow = net.balance(net.market.address)

    job, _ = net.jobs.post(payment, front_run=False)  # ...sent after it

    assert net.funder.functions.funded_by(account.address, payment.authorization.nonce).call() == job
    assert net.balance(net.market.address) == escrow


def test_a_cancelled_authorization_funds_nothing(net):
    """A nonce the payer cancelled is used at the token but moved no money: refused."""
    account = net.payer(1_000 * TOKEN)
    body = job_body(net)
    header = signed_payment(net, account, body)
    nonce = bytes.fromhex(decode(header)["payload"]["authorization"]["nonce"][2:])
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": n, "type": t}
                for n, t in (
                    ("name", "string"),
                    ("version", "string"),
                    ("chainId", "uint256"),
                    ("verifyingContract", "address"),
                )
            ],
            "CancelAuthorization": [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}],
        },
        "primaryType": "CancelAuthorization",
        "domain": {
            "name": net.chain.token_name,
            "version": net.chain.token_version,
            "chainId": 31337,
            "verifyingContract": net.token.address,
        },
        "message": {"authorizer": account.address, "nonce": nonce},
    }
    v, r, s = split(Account.sign_typed_data(account.key, full_message=typed).signature)
    net.send(net.stranger, net.token.functions.cancelAuthorization(account.address, nonce, v, r, s))
    before = net.balance(net.market.address), net.market.functions.job_count().call()

    answer = post_paid(net, body, header)

    assert answer.status_code == 402 and answer.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert "without paying the market" in answer.json()["message"]
    assert (net.balance(net.market.address), net.market.functions.job_count().call()) == before


def test_bad_requests_are_named(net):
    body = job_body(net)
    body["manifest"]["image"] = "not a digest"
    answer = requests.post(f"{net.gateway.url}/jobs", json=body, timeout=10)
    assert (
        answer.status_code == 422
        and answer.json()["error"] == "invalid_manifest"
        and "image" in answer.json()["message"]
    )
    for field, value, message in [
        ("path", "/proc/out", "manifest.outputs.path: '/proc/out' overlaps /proc"),
        ("path", "/out put", "manifest.outputs.path: has the character ' '"),
    ]:
        body = job_body(net)
        body["manifest"]["outputs"][field] = value
        answer = requests.post(f"{net.gateway.url}/jobs", json=body, timeout=10)
        assert answer.status_code == 422 and answer.json()["error"] == "invalid_manifest", answer.json()
        assert answer.json()["message"].startswith(message), answer.json()
    soon = job_body(net, deadline=net.now() + 10)
    answer = requests.post(f"{net.gateway.url}/jobs", json=soon, timeout=10)
    assert answer.status_code == 422 and answer.json()["message"] == "job_market: deadline too soon"
    answer = requests.post(f"{net.gateway.url}/jobs", json={"manifest": {}}, timeout=10)
    assert answer.status_code == 422 and "requirements" in answer.json()["message"]
    assert requests.get(f"{net.gateway.url}/jobs/999999", timeout=10).status_code == 404


def test_a_network_the_facilitator_does_not_serve_answers_503_and_the_server_lives(net):
    served = ServedApp(create_gateway(net.chain, net.facilitator_app.url, "eip155:8453", net.gateway_key.key))
    try:
        answer = requests.post(f"{served.url}/jobs", json=job_body(net), timeout=10)
        assert answer.status_code == 503 and "eip155:8453" in answer.json()["message"]
        assert requests.get(f"{served.url}/health", timeout=10).json()["status"] == "ok"
        down = ServedApp(create_gateway(net.chain, "http://127.0.0.1:9", NETWORK, net.gateway_key.key))
        try:
            answer = requests.post(f"{down.url}/jobs", json=job_body(net), timeout=10)
            assert answer.status_code == 503 and "cannot be reached" in answer.json()["message"]
        finally:
            down.stop()
    finally:
        served.stop()


# ---------------------------------------------------------------- jobs no asset can take, and cancels


def test_a_job_no_asset_can_take_is_refused_before_any_payment(net):
    """The network's one asset has one GPU: a job needing two would only sit open once paid."""
    from x402.http.clients.requests import x402_requests

    account = net.payer(1_000 * TOKEN)
    before = holdings(net, account)
    with x402_requests(clients(net, account, sync=True)) as session:
        answer = session.post(f"{net.gateway.url}/jobs", json=job_body(net, gpu_count=2), timeout=60)
    assert answer.status_code == 422 and "PAYMENT-REQUIRED" not in answer.headers
    assert answer.json() == {
        "error": "no_eligible_asset",
        "message": "no eligible asset: needs 2 GPUs (the most any active asset has: 1)",
    }
    assert holdings(net, account) == before  # nothing paid, nothing posted


def paid_job(net, account, body):
    from x402.http.clients.requests import x402_requests

    with x402_requests(clients(net, account, sync=True)) as session:
        answer = session.post(f"{net.gateway.url}/jobs", json=body, timeout=60)
    assert answer.status_code == 201, answer.text
    return answer.json()["job"], answer.json()["budget"]


def cancel_at_gateway(net, job, shard, signer, valid_before=None):
    """The wallet's way: fetch the typed message from the gateway, sign it, post the signature."""
    params = {"valid_before": valid_before} if valid_before else {}
    typed = requests.get(f"{net.gateway.url}/jobs/{job}/shards/{shard}/cancel-message", params=params, timeout=10)
    assert typed.status_code == 200, typed.text
    message = typed.json()
    signed = Account.sign_typed_data(signer.key, full_message=message)
    body = {"valid_before": message["message"]["validBefore"], "signature": "0x" + signed.signature.hex()}
    return requests.post(f"{net.gateway.url}/jobs/{job}/shards/{shard}/cancel", json=body, timeout=60)


def test_an_x402_payer_cancels_by_signature_through_the_gateway_and_gets_every_base_unit_back(net):
    net.anvil.rpc("anvil_setBalance", [net.gateway_key.address, hex(10**18)])  # it pays the relay's gas
    account = net.payer(1_000 * TOKEN)
    job, budget = paid_job(net, account, job_body(net))
    assert net.balance(account.address) == 1_000 * TOKEN - budget
    view = requests.get(f"{net.gateway.url}/jobs/{job}", timeout=10).json()
    assert view["shards"][0]["waiting"] == {
        "0": {"kind": "unassigned", "reason": "waiting for a keeper (1 eligible asset)"}
    }

    # A stranger's signature is refused, naming who signed; nothing changes.
    before = holdings(net, account), net.market.functions.replica(job, 0, 0).call()
    refused = cancel_at_gateway(net, job, 0, Account.create())
    assert refused.status_code == 403 and refused.json()["error"] == "not_the_client"
    assert f"not by the job's client {account.address}" in refused.json()["message"]
    assert (holdings(net, account), net.market.functions.replica(job, 0, 0).call()) == before
    expired = cancel_at_gateway(net, job, 0, account, valid_before=net.now() - 1)
    assert expired.status_code == 403 and expired.json()["error"] == "signature_expired"

    answer = cancel_at_gateway(net, job, 0, account)

    assert answer.status_code == 200, answer.text
    view = requests.get(f"{net.gateway.url}/jobs/{job}", timeout=10).json()
    assert view["finished"] and view["shards"][0]["state"] == "cancelled"
    assert view["shards"][0]["waiting"] == {"0": {"kind": "cancelled", "reason": "cancelled"}}
    assert net.web3.eth.get_balance(account.address) == 0  # the payer never held gas
    # The refund reaches the payer through the facilitator's refunder, to the base unit.
    assert net.market.functions.credits(account.address).call() == budget
    assert account.address in Refunder(Market.over_web3(net.web3, net.market.address), net.sender).run_once()
    assert net.balance(account.address) == 1_000 * TOKEN

    again = cancel_at_gateway(net, job, 0, account)
    assert again.status_code == 409 and again.json() == {
        "error": "nothing_to_cancel",
        "message": "job_market: nothing to cancel",
    }
