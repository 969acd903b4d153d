"""The verifier bot on the session chain, Docker engine and content store: it follows submitted
results, re-executes those sampled for it, and challenges the wrong ones once, whoever else is
verifying and however often it restarts. Money is checked to the base unit."""

import json
import os
import sys
import urllib.request

import pytest
from hexbytes import HexBytes
from numeric_job import BEYOND, COMMAND, EXACT, NUMERIC, WITHIN
from numeric_job import root_of as numeric_root

from computenet.domain import ReplicaState, Verification
from computenet.localnet import ProcessGroup, free_port
from computenet.market import Market
from computenet.merkle import MerkleTree
from computenet.sandbox import Limits
from computenet.web3calls import Sender
from verifier.bot import Verifier
from verifier.reexecute import Reexecutor

ZERO = "0x" + "00" * 20
CLAIM = 1  # GPU-seconds claimed: the test jobs run in about a second

GOOD = {
    "out/result.txt": b"42\n",
    "out/metrics/loss.csv": b"step,loss\n1,0.5\n",
    "log/container.log": b"epoch 1 done\n",
}
BAD = {**GOOD, "out/result.txt": b"41\n"}
HONEST = [
    "python3",
    "-c",
    "import os; os.makedirs('/out/metrics'); open('/out/result.txt', 'w').write('42\\n'); "
    "open('/out/metrics/loss.csv', 'w').write('step,loss\\n1,0.5\\n'); print('epoch 1 done')",
]
RANDOM = ["python3", "-c", "import os; open('/out/result.txt', 'w').write(os.urandom(16).hex())"]


def root_of(files):
    return MerkleTree.from_files(files).root


@pytest.fixture
def funded(token, market):
    def fund(account, amount=1_000 * 10**6):
        token.faucet(account, amount, sender=account)
        token.approve(market, 2**256 - 1, sender=account)
        return account

    return fund


@pytest.fixture
def verifier2(accounts, funded):
    return funded(accounts[14])


@pytest.fixture
def reexecutor(content_store, docker_engine):
    return Reexecutor(content_store.client, docker=docker_engine.client, limits=Limits(memory_bytes=256 << 20))


@pytest.fixture
def make_bot(chain, market, reexecutor, tmp_path):
    """A Verifier for `account`, its state in tmp_path/<name>.json, scanning from the current head."""

    def make(account, name="verifier", **options):
        web3 = chain.provider.web3
        options.setdefault("start_block", chain.blocks.height)
        return Verifier(
            Market.over_web3(web3, market.address),
            reexecutor,
            sender=Sender(web3, account.private_key),
            state=tmp_path / f"{name}.json",
            **options,
        )

    return make


@pytest.fixture
def spot_job(publish_job, post_job):
    """Posts a CPU SPOT_CHECK job of `command` whose manifest samples `spot_check_bps` of results."""

    def post(command=HONEST, spot_check_bps=10_000, **req):
        mhash = publish_job(command, {}, timeout_seconds=30, verification={"spot_check_bps": spot_check_bps})[1]
        return post_job(manifest_hash=mhash, gpu_count=0, min_vram_mib=0, verification=Verification.SPOT_CHECK, **req)

    return post


@pytest.fixture
def result(chain, market, register_asset, keeper, registered_keeper, submit, agent):
    """Leases the job's shard 0 to a fresh asset of `provider` and submits `files`' root
    claiming `claim`; then mines the block whose hash seeds the sampling. Returns the asset."""

    def make(job, files, claim=CLAIM):
        asset = register_asset()
        market.assign(job, 0, asset, sender=keeper)
        chain.pending_timestamp = chain.pending_timestamp + 5  # the lease has run a few seconds
        submit(agent, job, 0, 0, output_root=root_of(files), gpu_seconds=claim)
        chain.mine()  # the seed block: the agent could not know its hash when it submitted
        return asset

    return make


def opened(chain, market, start):
    """The DisputeOpened events since block `start`."""
    return list(market.DisputeOpened.range(start, chain.blocks.height + 1))


# ================================================================ in process


def test_an_honest_spot_checked_result_is_reexecuted_and_not_challenged(
    chain, market, token, spot_job, result, make_bot, verifier
):
    bot = make_bot(verifier)
    start = chain.blocks.height
    job = spot_job(HONEST, spot_check_bps=10_000)
    result(job, GOOD)
    balance, nonce = token.balanceOf(verifier), chain.provider.web3.eth.get_transaction_count(verifier.address)

    (decision,) = bot.run_once()

    assert (decision["decision"], decision["mode"], decision["computed_root"]) == (
        "agreed",
        "SPOT_CHECK",
        "0x" + root_of(GOOD).hex(),
    )
    assert decision["claimed"] == CLAIM and decision["allowed"] >= CLAIM
    assert bot.state.counts | {} == {
        "results_seen": 1,
        "sampled": 1,
        "reexecuted": 1,
        "mismatches": 0,
        "challenged": 0,
        "errors": 0,
    }
    assert opened(chain, market, start) == []
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED
    assert token.balanceOf(verifier) == balance  # to the base unit: no bond posted
    assert chain.provider.web3.eth.get_transaction_count(verifier.address) == nonce  # nothing sent
    assert bot.run_once() == []  # decided once; the next step has nothing to do


def test_a_result_waits_for_its_seed_block(
    chain, market, spot_job, register_asset, keeper, registered_keeper, submit, agent, make_bot, verifier
):
    bot = make_bot(verifier)
    job = spot_job(HONEST)
    asset = register_asset()
    market.assign(job, 0, asset, sender=keeper)
    chain.pending_timestamp = chain.pending_timestamp + 5
    submit(agent, job, 0, 0, output_root=root_of(GOOD), gpu_seconds=CLAIM)

    assert bot.run_once() == []  # the block after the submission is not mined: no draw yet
    assert len(bot.state.waiting) == 1 and bot.state.counts["sampled"] == 0
    chain.mine()
    assert [d["decision"] for d in bot.run_once()] == ["agreed"]


def test_a_spot_check_job_samples_at_its_declared_rate_only(chain, market, spot_job, result, make_bot, verifier):
    bot = make_bot(verifier)
    job = spot_job(HONEST, spot_check_bps=1)  # one in ten thousand
    result(job, BAD)  # wrong, but almost surely not sampled
    (decision,) = bot.run_once()
    assert decision["decision"] == "not sampled"
    assert bot.state.counts["reexecuted"] == 0


def test_a_wrong_root_is_challenged_and_the_bond_posted(
    chain, market, token, court, params, spot_job, result, make_bot, verifier
):
    bot = make_bot(verifier)
    start = chain.blocks.height
    job = spot_job(HONEST)
    result(job, BAD)
    balance = token.balanceOf(verifier)

    (decision,) = bot.run_once()

    assert decision["decision"] == "challenged"
    assert decision["reasons"] == [f"root 0x{root_of(BAD).hex()} is not the re-execution's 0x{root_of(GOOD).hex()}"]
    (event,) = opened(chain, market, start)
    assert (event.job, event.shard, event.challenger, event.bond) == (job, 0, verifier.address, params.challenge_bond)
    assert tuple(court.challenge_of(job, 0)) == (verifier.address, params.challenge_bond)
    assert market.replica(job, 0, 0).state == ReplicaState.DISPUTED
    assert balance - token.balanceOf(verifier) == params.challenge_bond  # to the base unit
    assert bot.state.counts["challenged"] == 1 and bot.state.counts["mismatches"] == 1


def test_an_over_metered_result_is_challenged_even_with_the_right_root(
    chain, market, spot_job, result, make_bot, verifier
):
    bot = make_bot(verifier)
    job = spot_job(HONEST)
    result(job, GOOD, claim=5)  # a one-second run claimed as five: allowed ceil(1 × 1.5) + 2 = 4
    (decision,) = bot.run_once()
    assert decision["decision"] == "challenged"
    assert decision["computed_root"] == "0x" + root_of(GOOD).hex()
    assert decision["claimed"] == 5 and decision["allowed"] < 5
    assert decision["reasons"] == [f"its metering claim 5 exceeds the {decision['allowed']} a re-execution allows"]


def test_a_restarted_bot_never_challenges_a_result_again(
    chain, market, token, spot_job, result, make_bot, verifier, verifier2, arbiter_for, params
):
    """A job no run reproduces: the bot challenges, the arbiter finds it not reproducible and
    the result stands with its window extended. A fresh bot would challenge it again and lose
    a second bond; the same bot restarted from its state file does not."""
    start = chain.blocks.height
    job = spot_job(RANDOM)
    result(job, BAD)
    first = make_bot(verifier, start_block=start)
    assert [d["decision"] for d in first.run_once()] == ["challenged"]
    ruling = arbiter_for().run_once()
    assert [r["reproducible"] for r in ruling] == [False]
    assert market.replica(job, 0, 0).state == ReplicaState.SUBMITTED  # stands, challengeable again
    balance = token.balanceOf(verifier)
    nonce = chain.provider.web3.eth.get_transaction_count(verifier.address)

    restarted = make_bot(verifier, start_block=start)  # the same state file
    chain.mine()
    assert restarted.run_once() == []
    assert restarted.state.decisions == first.state.decisions
    assert chain.provider.web3.eth.get_transaction_count(verifier.address) == nonce
    assert token.balanceOf(verifier) == balance
    assert len(opened(chain, market, start)) == 1

    # The control: a bot with no memory of it challenges again (and loses a second bond).
    fresh = make_bot(verifier2, name="fresh", start_block=start)
    assert [d["decision"] for d in fresh.run_once()] == ["challenged"]
    assert len(opened(chain, market, start)) == 2


@pytest.mark.parametrize(
    "files, bonded, expected",
    [(WITHIN, True, "agreed"), (BEYOND, True, "challenged"), (WITHIN, False, "challenged")],
    ids=["within-tolerance", "beyond-tolerance", "not-bonded"],
)
def test_a_numeric_result_is_judged_on_its_files_fetched_from_its_agent(
    chain,
    market,
    keepers,
    token,
    publish_job,
    post_job,
    register_asset,
    keeper,
    registered_keeper,
    submit,
    agent,
    agent_outputs,
    make_bot,
    verifier,
    params,
    files,
    bonded,
    expected,
):
    """The replica's result is not the re-execution's bytes. The bot fetches it from the agent
    (which serves a bonded verifier the replicas sampled for it, verifier/access.py), checks
    every file against the on-chain root, and compares within the manifest's tolerance; a
    verifier the agent will not serve cannot see it agree, and challenges."""
    if bonded:
        keepers.register(100 * 10**6, sender=verifier)
    bot_start = chain.blocks.height
    mhash = publish_job(COMMAND, {}, timeout_seconds=30, verification=NUMERIC | {"spot_check_bps": 10_000})[1]
    job = post_job(manifest_hash=mhash, gpu_count=0, min_vram_mib=0, verification=Verification.SPOT_CHECK)
    asset = register_asset()
    market.assign(job, 0, asset, sender=keeper)
    submit(agent, job, 0, 0, output_root=numeric_root(files), gpu_seconds=CLAIM)
    chain.mine()  # the seed block
    bot = make_bot(verifier, start_block=bot_start, outputs={asset: agent_outputs(agent, job, 0, files)})
    balance = token.balanceOf(verifier)

    (decision,) = bot.run_once()

    assert decision["decision"] == expected, decision
    assert decision["computed_root"] == "0x" + numeric_root(EXACT).hex() != decision["root"]
    if expected == "agreed":
        assert decision["reasons"] == [] and "outputs_error" not in decision
        assert token.balanceOf(verifier) == balance
    else:
        assert balance - token.balanceOf(verifier) == params.challenge_bond  # to the base unit
    if files is BEYOND:
        assert decision["reasons"][0].startswith("out/logits.npy differs beyond rtol 0.001, atol 0")
    if not bonded:
        assert "answered 403" in decision["outputs_error"]


@pytest.fixture
def arbiter_for(chain, market, assets, facilitator, reexecutor, tmp_path):
    from verifier.arbiter import Arbiter

    def make():
        web3 = chain.provider.web3
        return Arbiter(
            Market.over_web3(web3, market.address),
            Sender(web3, facilitator.private_key),
            tmp_path / "disputes.jsonl",
            reexecutor,
            tmp_path / "arbiter.json",
            chain.blocks.height - 20,
        )

    return make


# ================================================================ the command: two bots at once


class VerifierProcess(ProcessGroup):
    """`python -m verifier run` with its own state file and metrics port."""

    def __init__(self, name, account_index, market, uri, store_url, docker_host, folder, start_block):
        super().__init__()
        self.name, self.folder = name, folder
        self.metrics_port = free_port()
        self.env = os.environ | {
            "COMPUTENET_VERIFIER_RPC_URL": uri,
            "COMPUTENET_VERIFIER_MARKET": market,
            "COMPUTENET_VERIFIER_ACCOUNT": f"TEST::{account_index}",
            "COMPUTENET_VERIFIER_STORE_URL": store_url,
            "COMPUTENET_VERIFIER_STATE_FILE": str(folder / f"{name}.json"),
            "COMPUTENET_VERIFIER_START_BLOCK": str(start_block),
            "COMPUTENET_VERIFIER_POLL_INTERVAL": "0.2",
            "COMPUTENET_VERIFIER_MEMORY_MIB": "256",
            "COMPUTENET_VERIFIER_METRICS_PORT": str(self.metrics_port),
            "COMPUTENET_VERIFIER_LOG_FORMAT": "text",
        }
        if docker_host:
            self.env |= {"DOCKER_HOST": docker_host, "COMPUTENET_VERIFIER_DOCKER_HOST": docker_host}
        self.runs = 0

    def start(self):
        self.runs += 1
        self.spawn([sys.executable, "-m", "verifier", "run"], self.folder / f"{self.name}-{self.runs}.log", self.env)
        return self

    def state(self):
        path = self.folder / f"{self.name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def metrics(self):
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).read().decode()

    def log(self):
        return "\n".join(p.read_text() for p in sorted(self.folder.glob(f"{self.name}-*.log")))


def test_two_verifiers_challenge_a_wrong_result_once_and_a_restart_adds_nothing(
    chain,
    networks,
    market,
    token,
    params,
    content_store,
    docker_engine,
    spot_job,
    result,
    verifier,
    verifier2,
    accounts,
    stop_after,
    tmp_path,
    wait_for,
):
    index = {accounts[i].address: i for i in (6, 14)}  # the `verifier` and `verifier2` fixtures
    start = chain.blocks.height
    bots = [
        VerifierProcess(
            name,
            index[who.address],
            market.address,
            networks.provider.uri,
            content_store.url,
            docker_engine.host,
            tmp_path,
            start,
        )
        for name, who in (("one", verifier), ("two", verifier2))
    ]
    for bot in bots:
        stop_after(bot)
        bot.start()
    balances = {who.address: token.balanceOf(who) for who in (verifier, verifier2)}
    job = spot_job(HONEST)
    result(job, BAD)

    def decided():
        states = [bot.state() for bot in bots]
        if not all(states):
            return None
        found = [d for s in states for d in s["decisions"].values() if d["decision"] != "challenging"]
        return found if len(found) == 2 else None

    decisions = wait_for(decided, timeout=120, what="both verifiers decided")
    # The other one lost the race, or found the replica already disputed when it came to it
    # (moot: it had not sampled it yet, as when its seed block came later under load).
    challenger, other = sorted(decisions, key=lambda d: d["decision"] != "challenged")
    assert challenger["decision"] == "challenged", [b.log() for b in bots]
    assert other["decision"] == "already challenged" or (other["decision"], other.get("state")) == (
        "moot",
        "DISPUTED",
    ), [b.log() for b in bots]
    (event,) = opened(chain, market, start)
    winner = verifier if event.challenger == verifier.address else verifier2
    loser = verifier2 if winner is verifier else verifier
    assert balances[winner.address] - token.balanceOf(winner) == params.challenge_bond  # to the base unit
    assert token.balanceOf(loser) == balances[loser.address]
    assert challenger["transaction"] == "0x" + bytes(HexBytes(event.transaction_hash)).hex()
    metrics = {bot.name: bot.metrics() for bot in bots}
    assert sum("computenet_verifier_challenged_total 1.0" in text for text in metrics.values()) == 1
    sampled = sum("computenet_verifier_sampled_total 1.0" in text for text in metrics.values())
    assert sampled == (2 if other["decision"] == "already challenged" else 1)
    assert all("computenet_verifier_results_seen_total 1.0" in text for text in metrics.values())

    # Both stop and start again from their state files: nothing is re-executed or sent.
    nonces = {who.address: chain.provider.web3.eth.get_transaction_count(who.address) for who in (verifier, verifier2)}
    for bot in bots:
        bot.stop()
        bot.start()
    chain.mine()
    head = chain.blocks.height
    wait_for(lambda: all(bot.state()["next_block"] > head for bot in bots), timeout=60, what="restarted bots caught up")
    assert len(opened(chain, market, start)) == 1
    assert {
        who.address: chain.provider.web3.eth.get_transaction_count(who.address) for who in (verifier, verifier2)
    } == nonces
    assert sum(bot.state()["counts"]["reexecuted"] for bot in bots) == sum(1 for d in decisions if "computed_root" in d)
