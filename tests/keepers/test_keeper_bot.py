"""The keeper bot as operators run it: real listener and Celery worker processes
(`python -m keepers ...`) against this session's anvil and a real redis-server.

Agents are not part of this suite, so the test plays them: each agent key serves signed
heartbeats (the SDK format) for its assets at an endpoint of its own, recorded on chain, and,
where a test needs results, the test submits them. ape's isolation brings the chain back
after each test; each test uses its own Redis database.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
from eth_utils import keccak

from agent.outputs import heartbeats_app
from computenet.domain import ReplicaState
from computenet.heartbeat import Heartbeat
from computenet.localnet import ProcessGroup, RedisServer, ServedApp, free_port, set_interval_mining
from keepers.heartbeats import NO_ENDPOINT

REPO = Path(__file__).resolve().parents[2]
ZERO_ADDRESS = "0x" + "00" * 20
TOKEN = 10**6


class Keeper(ProcessGroup):
    """One keeper: its settings, and its listener and worker processes."""

    def __init__(self, name, account, redis_url, uri, deployments, logdir, **settings):
        super().__init__()
        self.name = name
        self.logdir = logdir
        self.env = os.environ | {
            "COMPUTENET_DEPLOYMENTS": str(deployments),
            "COMPUTENET_KEEPER_NETWORK": uri,
            "COMPUTENET_KEEPER_NAME": name,
            "COMPUTENET_KEEPER_REDIS_URL": redis_url,
            "COMPUTENET_KEEPER_POLL_INTERVAL": "0.05",
            "COMPUTENET_KEEPER_SWEEP_INTERVAL": "1",
            "COMPUTENET_KEEPER_METRICS_PORT": "0",
            "COMPUTENET_KEEPER_TX_TIMEOUT": "30",
            "COMPUTENET_KEEPER_HEARTBEAT_POLL_INTERVAL": "0.3",
        }
        if account is not None:
            self.env["COMPUTENET_KEEPER_ACCOUNT"] = account
        self.env.update({f"COMPUTENET_KEEPER_{k.upper()}": str(v) for k, v in settings.items()})

    def start(self, workers=2):
        self.workers = workers
        for command in ["listen"] + ["worker"] * workers:
            self.spawn(
                [sys.executable, "-m", "keepers", command],
                self.logdir / f"{self.name}-{command}-{len(self.processes)}.log",
                self.env,
            )
        return self

    def ready(self, height, nodes):
        """Whether its listener is at block `height` with `nodes` heartbeats kept and its Celery
        workers answer a ping: a keeper that is still starting races no one."""
        from celery import Celery

        cursor = next((int(self.redis.get(k)) for k in self.redis.scan_iter("computenet:*:cursor")), None)
        kept = sum(self.redis.hlen(k) for k in self.redis.scan_iter("computenet:*:nodes"))
        if cursor is None or cursor < height or kept < nodes:
            return False
        app = Celery(broker=self.env["COMPUTENET_KEEPER_REDIS_URL"])
        try:
            return len(app.control.ping(timeout=0.5) or []) >= self.workers
        finally:
            app.close()

    def run(self, command, *args):
        return subprocess.run(
            [sys.executable, "-m", "keepers", command, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def logs(self):
        return "\n".join(p.read_text() for p in sorted(self.logdir.glob(f"{self.name}-*.log")))


class Agents:
    """Plays the agents: each agent key serves a signed heartbeat for each of its live assets
    at its own endpoint (agent.outputs.heartbeats_app), renewed every 0.5 s, and records that
    endpoint on chain for them. Keepers find them there, as they find real agents."""

    def __init__(self, chain_id, assets, agent_of):
        self.chain_id, self.assets = chain_id, assets
        self.agent_of = agent_of  # asset id -> ape test account (the agent key)
        self.live = set(agent_of)
        self.checkpoints = {}  # asset -> signed checkpoint entries its heartbeats carry
        self.seq = 0
        self.boards = {key.address: {} for key in agent_of.values()}
        self.servers = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def endpoint(self, asset):
        return self.servers[self.agent_of[asset].address].url

    def beat(self):
        for asset, key in sorted(self.agent_of.items()):
            board = self.boards[key.address]
            if asset not in self.live:  # its node died: its endpoint serves nothing for it
                board.pop(asset, None)
                continue
            self.seq += 1
            hb = Heartbeat(asset, int(time.time()), 10, 800_000, 0, 16, self.seq)
            board[asset] = hb.wire(
                key.private_key, self.chain_id, str(self.assets.address), self.checkpoints.get(asset)
            )

    def _loop(self):
        while not self.stopped.wait(0.5):
            self.beat()

    def __enter__(self):
        from ape import accounts

        owners = {a.address: a for a in accounts.test_accounts}
        for address, board in self.boards.items():
            self.servers[address] = ServedApp(heartbeats_app(lambda b=board: dict(b)))
        for asset in self.agent_of:
            self.assets.set_endpoint(asset, self.endpoint(asset), sender=owners[self.assets.ownerOf(asset)])
        self.beat()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()
        for server in self.servers.values():
            server.stop()


@contextmanager
def interval_mining(chain, seconds=1):
    """A block every `seconds` instead of one per transaction, for the duration."""
    set_interval_mining(chain.provider.make_request, seconds)
    try:
        yield
    finally:
        set_interval_mining(chain.provider.make_request, 0)


# ---------------------------------------------------------------- fixtures


_dbs = iter(range(1, 32))


@pytest.fixture
def make_keeper(networks, redis_server, deployments, tmp_path, stop_after, request):
    """Builds keepers on fresh Redis databases (of the session's server, or `redis=(server, db)`);
    stops every process they started. A failed test shows their logs (tests/keepers/conftest.py)."""
    request.node.keepers = []

    def make(name="keeper", account="TEST::4", redis=None, **settings):
        server, db = redis or (redis_server, next(_dbs))
        server.client(db).flushdb()
        keeper = Keeper(name, account, server.url(db), networks.provider.uri, deployments, tmp_path, **settings)
        keeper.redis = server.client(db)
        stop_after(keeper)
        request.node.keepers.append(keeper)
        return keeper

    return make


@pytest.fixture
def fleet(register_asset, provider, provider2, agents):
    """Registers `n` assets over two owners and four agent keys, each with a GPU for every
    lease it may hold (16); returns {asset id: agent}."""

    def make(n, prices=None):
        agent_of = {}
        for i in range(n):
            agent = agents[i % len(agents)]
            price = prices[i] if prices else 100
            asset = register_asset(
                owner=provider if i % 2 == 0 else provider2, agent_account=agent, price=price, gpu_count=16
            )
            agent_of[asset] = agent
        return agent_of

    return make


def assigned(market, job_ids, shards, replication=1):
    """{(job, shard, replica): asset} for the replicas currently leased."""
    out = {}
    for job in job_ids:
        for shard in range(shards):
            for r in range(replication):
                rep = market.replica(job, shard, r)
                if ReplicaState(int(rep.state)) != ReplicaState.OPEN:
                    out[(job, shard, r)] = int(rep.asset)
    return out


def assignments(market, start_block):
    """Every ShardAssigned since `start_block`: (job, shard, replica, asset, keeper)."""
    logs = market.ShardAssigned.range(start_block, market.chain_manager.blocks.height + 1)
    return [(int(e.job), int(e.shard), int(e.replica), int(e.asset), str(e.keeper)) for e in logs]


def failed_txs_from(chain, address, start_block):
    """Transactions `address` sent since `start_block` that reverted."""
    failed = []
    for number in range(start_block, chain.blocks.height + 1):
        for tx in chain.provider.web3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"].lower() == str(address).lower():
                if chain.provider.web3.eth.get_transaction_receipt(tx["hash"])["status"] != 1:
                    failed.append(tx["hash"].hex())
    return failed


def projection(keeper):
    """The rebuildable part of a keeper's Redis: open shards, due work, reputation, agents, cursor."""
    r, prefix = keeper.redis, None
    for key in r.scan_iter("computenet:*:cursor"):
        prefix = key.decode().rsplit(":", 1)[0]
    assert prefix, "keeper has no cursor"
    return {
        "open": sorted(r.smembers(f"{prefix}:open")),
        "due": r.zrange(f"{prefix}:due", 0, -1, withscores=True),
        "reputation": r.hgetall(f"{prefix}:reputation"),
        "agents": r.hgetall(f"{prefix}:agents"),
    }


def stats_of(keeper):
    """The keeper's action counts by kind and call ("mined:expire" -> 1), read from Redis."""
    for key in keeper.redis.scan_iter("computenet:*:stats"):
        return {k.decode(): int(v) for k, v in keeper.redis.hgetall(key).items()}
    return {}


def cursor_of(keeper):
    for key in keeper.redis.scan_iter("computenet:*:cursor"):
        return int(keeper.redis.get(key))
    return None


# ---------------------------------------------------------------- tests


def test_twenty_jobs_of_four_shards_over_eight_assets_are_each_assigned_once(
    make_keeper, fleet, post_job, market, chain, registered_keeper, keeper, assets, wait_for
):
    agent_of = fleet(8)
    k = make_keeper()
    start = chain.blocks.height
    with Agents(chain.chain_id, assets, agent_of):
        k.start(workers=2)
        jobs = [post_job(shard_count=4) for _ in range(20)]
        got = wait_for(
            lambda: len(assigned(market, jobs, 4)) == 80 and assigned(market, jobs, 4), what="80 shards assigned"
        )
    events = assignments(market, start)
    assert Counter((j, s) for j, s, *_ in events) == {(j, s): 1 for j in jobs for s in range(4)}
    assert set(got.values()) <= set(agent_of)
    for job in jobs:  # the four shards of a job went to four distinct assets
        assert len({got[(job, s, 0)] for s in range(4)}) == 4
    assert failed_txs_from(chain, keeper, start) == []

    # status and metrics report the work, read from Redis
    status = k.run("status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["stats"].get("mined:assign") == 80 and report["errors"] == []
    assert report["cursor"] >= max(e.block_number for e in market.ShardAssigned.range(start, chain.blocks.height + 1))
    text = k.run("status")
    assert "cursor" in text.stdout and "mined" in text.stdout


def test_metrics_endpoint_counts_the_keepers_actions(
    make_keeper, fleet, post_job, market, chain, registered_keeper, assets, wait_for
):
    agent_of = fleet(2)
    port = free_port()
    k = make_keeper(metrics_port=port)
    with Agents(chain.chain_id, assets, agent_of):
        k.start(workers=1)
        job = post_job(shard_count=2)
        wait_for(lambda: len(assigned(market, [job], 2)) == 2, what="2 shards assigned")

        def scrape():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                return None

        body = wait_for(
            lambda: (b := scrape()) and 'computenet_keeper_actions_total{call="assign",kind="mined"} 2.0' in b and b,
            what="metrics to show two mined assignments",
        )
    assert "computenet_keeper_cursor_block" in body and "computenet_keeper_queue_depth" in body


def test_killed_keeper_resumes_and_a_flushed_redis_is_rebuilt_from_the_chain(
    make_keeper, fleet, post_job, market, chain, registered_keeper, keeper, assets, wait_for
):
    agent_of = fleet(8)
    k = make_keeper()
    start = chain.blocks.height
    with Agents(chain.chain_id, assets, agent_of):
        k.start(workers=2)
        jobs = [post_job(shard_count=4) for _ in range(10)]
        wait_for(lambda: len(assigned(market, jobs, 4)) >= 6, what="the first assignments")
        k.stop(signal.SIGKILL)  # mid-run: no chance to clean up
        jobs += [post_job(shard_count=4) for _ in range(5)]  # posted while the keeper is down
        k.start(workers=2)
        wait_for(lambda: len(assigned(market, jobs, 4)) == 60, what="all 60 shards assigned after the restart")
        wait_for(
            lambda: cursor_of(k) is not None and cursor_of(k) >= chain.blocks.height, what="the cursor at the head"
        )
        before = projection(k)
        k.stop()

        k.redis.flushdb()  # Redis lost: rebuilt from the deployment block
        k.start(workers=1)
        wait_for(lambda: cursor_of(k) is not None and cursor_of(k) >= chain.blocks.height, what="the rebuilt cursor")
        assert projection(k) == before
        job = post_job(shard_count=2)  # and it goes on working
        wait_for(lambda: len(assigned(market, [job], 2)) == 2, what="a new job assigned after the rebuild")
    events = assignments(market, start)
    assert Counter((j, s, r) for j, s, r, *_ in events) == {
        (j, s, 0): 1 for j in jobs + [job] for s in range(4 if j != job else 2)
    }
    assert failed_txs_from(chain, keeper, start) == []  # nothing was sent twice


def test_two_keepers_assign_every_shard_exactly_once(
    make_keeper, fleet, make_requirements, client, market, chain, registered_keeper, keeper, keeper2, assets, wait_for
):
    agent_of = fleet(8)
    a = make_keeper("keeper-a", "TEST::4")
    b = make_keeper("keeper-b", "TEST::5")
    start = chain.blocks.height
    # A block a second, as on a real chain: both keepers, ready and idle, see each job in the
    # same block, so their transactions for one replica can land in one block, where the second
    # one reverts.
    with Agents(chain.chain_id, assets, agent_of), interval_mining(chain):
        a.start(workers=2)
        b.start(workers=2)
        wait_for(lambda: a.ready(start, 8) and b.ready(start, 8), what="both keepers ready", interval=0.5)
        # Sent without waiting for their blocks, so with their nonces named; ids by the market's count.
        first, nonce = market.job_count() + 1, client.nonce
        req = make_requirements(shard_count=4, replication=2).as_tuple()
        for i in range(5):
            market.post_job(keccak(b"manifest"), req, sender=client, nonce=nonce + i)
        jobs = list(range(first, first + 5))
        wait_for(lambda: market.job_count() == jobs[-1], what="5 jobs posted")
        wait_for(lambda: len(assigned(market, jobs, 4, 2)) == 40, what="40 replicas assigned by two keepers")
    events = assignments(market, start)
    assert Counter((j, s, r) for j, s, r, *_ in events) == {
        (j, s, r): 1 for j in jobs for s in range(4) for r in range(2)
    }
    for j in jobs:  # the chain's rule: the replicas of a shard run on distinct assets
        for s in range(4):
            assert len({asset for jj, ss, _, asset, _ in events if (jj, ss) == (j, s)}) == 2
    assert {e[4] for e in events} <= {str(keeper.address), str(keeper2.address)}
    for k in (a, b):
        assert [e for e in json.loads(k.run("status", "--json").stdout)["errors"]] == []
    # A lost race changed nothing, and the shard went to the other keeper: an `assign` sent alone
    # reverted; an assignment in a round's `assign_many` was skipped by the relay, the rest kept.
    lost = failed_txs_from(chain, keeper, start) + failed_txs_from(chain, keeper2, start)

    def recorded(kind):
        return sum(json.loads(k.run("status", "--json").stdout)["stats"].get(f"{kind}:assign", 0) for k in (a, b))

    wait_for(lambda: recorded("reverted") == len(lost), what="each reverted transaction to be seen as a lost race")
    assert recorded("reverted") + recorded("skipped") > 0, (
        "no same-block race: the test did not exercise what it is for"
    )


def test_keepers_of_two_operators_share_only_the_chain_and_each_assigns_through_the_endpoints(
    make_keeper, fleet, post_job, market, chain, registered_keeper, keeper, keeper2, assets, wait_for, tmp_path
):
    agent_of = fleet(3)
    *served, unlisted = sorted(agent_of)
    other = RedisServer(tmp_path)  # the second operator's own Redis: no server in common
    try:
        a = make_keeper("keeper-a", "TEST::4")
        b = make_keeper("keeper-b", "TEST::5", redis=(other, 0))
        start = chain.blocks.height
        with Agents(chain.chain_id, assets, {asset: agent_of[asset] for asset in served}):
            for k, who in ((a, keeper), (b, keeper2)):  # one at a time: each must see the nodes alone
                k.start(workers=1)
                job = post_job(shard_count=2)
                got = wait_for(
                    lambda j=job: len(assigned(market, [j], 2)) == 2 and assigned(market, [j], 2), what="2 shards"
                )
                assert set(got.values()) <= set(served)  # never the asset with no endpoint
                assert {e[4] for e in assignments(market, start) if e[0] == job} == {str(who.address)}
                report = json.loads(k.run("status", "--json").stdout)
                assert report["asset_reasons"] == {str(unlisted): NO_ENDPOINT}
                assert f"asset {unlisted}: {NO_ENDPOINT}" in k.run("status").stdout
                k.stop()
        for k in (a, b):  # each Redis holds only its keeper's keys and its Celery queues
            keys = {key.decode() for key in k.redis.keys("*")}
            assert keys and all(
                key.startswith((f"computenet:{k.name}:", f"computenet-{k.name}", "_kombu")) for key in keys
            )
    finally:
        other.stop()


def test_an_expired_lease_is_reclaimed_and_reassigned_and_the_shard_finalized(
    make_keeper, fleet, post_job, market, chain, registered_keeper, keeper, assets, submit, wait_for
):
    agent_of = fleet(2, prices=[100, 150])  # asset 1 is cheaper: the first choice
    cheap, dear = sorted(agent_of)
    k = make_keeper(max_heartbeat_age=3)
    with Agents(chain.chain_id, assets, agent_of) as agents_:
        k.start(workers=1)
        job = post_job(shard_count=1)
        wait_for(lambda: assigned(market, [job], 1).get((job, 0, 0)) == cheap, what="the cheap asset's lease")
        stake_before = int(assets.stake(cheap).amount)
        agents_.live.discard(cheap)  # its node dies: no more heartbeats
        dead_since = time.time()
        wait_for(lambda: time.time() - dead_since > 3.5, what="the dead node's heartbeat to go stale", interval=0.2)
        lease_end = int(market.replica(job, 0, 0).deadline)
        chain.pending_timestamp = lease_end + 1
        chain.mine()
        wait_for(lambda: len(list(market.ShardReclaimed.range(0, chain.blocks.height + 1))) == 1, what="the reclaim")
        wait_for(lambda: assigned(market, [job], 1).get((job, 0, 0)) == dear, what="the reassignment to the live asset")
        assert int(assets.stake(cheap).amount) < stake_before  # slashed

        submit(agent_of[dear], job, 0, 0)
        chain.pending_timestamp = int(market.replica(job, 0, 0).deadline) + 1
        chain.mine()
        wait_for(
            lambda: ReplicaState(int(market.replica(job, 0, 0).state)) == ReplicaState.FINALIZED, what="finalization"
        )
    assert market.credits(keeper) > 0  # the keeper fee
    finalized = list(market.ShardFinalized.range(0, chain.blocks.height + 1))
    assert [(int(e.job), int(e.asset)) for e in finalized] == [(job, dear)]


def test_the_heartbeats_last_checkpoint_is_relayed_before_the_reclaim(
    make_keeper, fleet, post_job, market, chain, registered_keeper, keeper, assets, sign_checkpoint, wait_for
):
    """A node serves a signed checkpoint in its heartbeat, then dies; when its lease runs out
    the keeper commits that checkpoint on chain (the chain had none) and then reclaims, so the
    reclaim adopts it. A forged entry served beside it (more seconds, bad signature) is not
    kept in its place."""
    agent_of = fleet(1)
    (asset,) = agent_of
    k = make_keeper(max_heartbeat_age=3)
    checkpoint = keccak(b"step 42")
    with Agents(chain.chain_id, assets, agent_of) as agents_:
        k.start(workers=1)
        job = post_job(shard_count=1)
        wait_for(lambda: assigned(market, [job], 1).get((job, 0, 0)) == asset, what="the lease")
        signed = sign_checkpoint(agent_of[asset], job, 0, 0, checkpoint, 120)
        forged = signed.to_body() | {"gpu_seconds": 900}
        agents_.checkpoints[asset] = [signed.to_body(), forged]

        def kept():
            return [json.loads(v) for key in k.redis.scan_iter("computenet:*:checkpoints") for v in k.redis.hvals(key)]

        wait_for(lambda: kept() == [signed.to_body()], what="the keeper to keep the signed checkpoint")
        agents_.live.discard(asset)  # the node dies
        chain.pending_timestamp = int(market.replica(job, 0, 0).deadline) + 1
        chain.mine()
        wait_for(lambda: len(list(market.ShardReclaimed.range(0, chain.blocks.height + 1))) == 1, what="the reclaim")
    committed = list(market.CheckpointCommitted.range(0, chain.blocks.height + 1))
    assert [(int(e.job), bytes(e.checkpoint), int(e.gpu_seconds)) for e in committed] == [(job, checkpoint, 120)]
    relay = chain.provider.web3.eth.get_transaction(committed[0].transaction_hash)
    assert relay["from"].lower() == keeper.address.lower()  # relayed by the keeper, not the agent
    adopted = list(market.CheckpointAdopted.range(0, chain.blocks.height + 1))
    assert [(int(e.asset), bytes(e.checkpoint), int(e.gpu_seconds)) for e in adopted] == [(asset, checkpoint, 120)]
    assert bytes(market.checkpoint(job, 0, 0).resume_point) == checkpoint
    assert stats_of(k).get("mined:commit_checkpoint") == 1


def test_a_dispute_no_one_rules_on_is_expired_after_its_deadline_and_the_shard_then_finalized(
    make_keeper, fleet, post_job, market, court, chain, registered_keeper, keeper, verifier, assets, submit, wait_for
):
    agent_of = fleet(1)
    (asset,) = agent_of
    k = make_keeper()
    start = chain.blocks.height
    with Agents(chain.chain_id, assets, agent_of):
        k.start(workers=1)
        job = post_job(shard_count=1)
        wait_for(lambda: assigned(market, [job], 1).get((job, 0, 0)) == asset, what="the lease")
        submit(agent_of[asset], job, 0, 0)
        bond, credit = int(market.challenge_bond()), int(market.credits(verifier))
        court.challenge(job, 0, sender=verifier)  # and no arbiter runs
        deadline = int(court.ruling_deadline(job, 0))
        window_end = int(market.replica(job, 0, 0).deadline)

        chain.pending_timestamp = deadline + 1
        chain.mine()
        wait_for(lambda: stats_of(k).get("mined:expire") == 1, what="the keeper's expire mined")
        rep = market.replica(job, 0, 0)  # standing, or already finalized by the keeper
        assert ReplicaState(int(rep.state)) in (ReplicaState.SUBMITTED, ReplicaState.FINALIZED)
        assert int(rep.deadline) == window_end  # final: the window is not reopened
        assert court.challenge_of(job, 0) == (ZERO_ADDRESS, 0)
        assert int(market.credits(verifier)) == credit + bond
        (settled,) = court.DisputeSettled.range(start, chain.blocks.height + 1)
        assert (settled.arbiter, settled.challenger, settled.slashed, settled.bond_returned) == (
            ZERO_ADDRESS,
            verifier,
            0,
            True,
        )
        (resolved,) = market.DisputeResolved.range(start, chain.blocks.height + 1)
        assert resolved.facilitator == ZERO_ADDRESS
        assert chain.provider.web3.eth.get_transaction(settled.transaction_hash)["from"] == keeper.address

        wait_for(
            lambda: ReplicaState(int(market.replica(job, 0, 0).state)) == ReplicaState.FINALIZED, what="finalization"
        )
    assert failed_txs_from(chain, keeper, start) == []  # nothing sent early or twice
    assert stats_of(k).get("sent:expire") == 1


def test_without_a_key_the_keeper_only_logs_what_it_would_send(
    make_keeper, fleet, post_job, market, chain, assets, wait_for
):
    agent_of = fleet(1)
    k = make_keeper(account=None)
    with Agents(chain.chain_id, assets, agent_of):
        k.start(workers=1)
        job = post_job(shard_count=1)
        report = wait_for(
            lambda: (r := json.loads(k.run("status", "--json").stdout)) and r["stats"].get("dry_run:assign") and r,
            what="a dry-run action",
        )
    assert report["keeper"] == "dry-run"
    assert report["actions"][0]["args"] == [job, 0, next(iter(agent_of))]
    assert ReplicaState(int(market.replica(job, 0, 0).state)) == ReplicaState.OPEN  # nothing was sent
    assert '"msg": "dry run: would send"' in k.logs()


def test_start_stops_the_listener_when_a_worker_dies_and_status_says_why(
    make_keeper, registered_keeper, tmp_path, wait_for
):
    """`keepers start`: a listener whose workers are gone would enqueue work no one runs, so it
    stops with them (non-zero), and `status` shows why instead of "last errors: none"."""
    k = make_keeper(name="lonely")
    start = k.spawn([sys.executable, "-m", "keepers", "start", "--workers", "1"], tmp_path / "start.log", k.env)
    wait_for(lambda: "started" in json.loads(k.run("status", "--json").stdout)["listener"], what="the listener")
    children = Path(f"/proc/{start.pid}/task/{start.pid}/children")
    [worker] = wait_for(lambda: [int(pid) for pid in children.read_text().split()], what="the worker process")
    os.kill(worker, signal.SIGKILL)

    assert start.wait(timeout=60) == 1
    log = (tmp_path / "start.log").read_text()
    assert f"Error: worker process {worker} exited with status -9" in log
    text = k.run("status").stdout
    assert f"listener    stopped: worker process {worker} exited with status -9" in text
    assert "last errors: none" not in text and f"worker process {worker} exited" in text.split("last errors:")[1]


def test_a_key_that_is_not_a_keeper_stops_the_worker_with_a_clear_error(make_keeper):
    k = make_keeper(account="TEST::9")
    result = k.run("worker")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        "cannot assign: keeper_registry: not a keeper" in result.stderr
        and "register it with a bond first" in result.stderr
    )


def test_bad_settings_are_named(make_keeper):
    k = make_keeper(confirmations=-1)
    result = k.run("status")
    assert result.returncode == 1
    assert "COMPUTENET_KEEPER_CONFIRMATIONS" in result.stderr and "Traceback" not in result.stderr


def test_a_job_asking_more_than_an_asset_has_is_never_assigned_to_it_and_a_tee_job_only_to_an_attested_one(
    make_keeper,
    register_asset,
    stack,
    attestor,
    submit,
    provider,
    provider2,
    agents,
    post_job,
    market,
    chain,
    registered_keeper,
    keeper,
    assets,
    wait_for,
):
    """The cheap asset has 2 cores and 4 GiB: a job asking 8 cores and 32 GiB per lease goes to
    the dear one (both its shards: 16 cores hold two), a job asking 17 cores to none, and the
    keeper sends nothing the chain refuses. A tee job goes to the only attested asset (4 cores, a
    middling price), not the cheap one, and its attested result is finalized once the short window
    ends, long before the full one."""
    small = register_asset(
        owner=provider, agent_account=agents[0], price=10, gpu_count=16, cpu_cores=2, memory_mib=4_096, disk_mib=4_096
    )
    big = register_asset(
        owner=provider2, agent_account=agents[1], price=100, gpu_count=16, cpu_cores=16, memory_mib=65_536
    )
    secure = register_asset(
        owner=provider2, agent_account=agents[2], price=50, gpu_count=16, cpu_cores=4, memory_mib=8_192
    )
    k = make_keeper()
    start = chain.blocks.height
    with Agents(chain.chain_id, assets, {small: agents[0], big: agents[1], secure: agents[2]}):
        k.start(workers=1)
        too_big = post_job(cpu_cores=17)
        fits_big = post_job(shard_count=2, cpu_cores=8, memory_mib=32_768, disk_mib=10_000)
        got = wait_for(
            lambda: len(assigned(market, [fits_big], 2)) == 2 and assigned(market, [fits_big], 2),
            what="the big job's two shards assigned",
        )
        small_job = post_job()
        wait_for(lambda: assigned(market, [small_job], 1), what="the small job assigned")

        registry, now = stack.attestations, chain.pending_timestamp
        binding = registry.node_report_data(secure, agents[2])
        registry.attest_node(secure, b"\x01" * 32, 1, bytes(48), 0, now - 60, now + 86_400, binding, sender=attestor)
        tee_job = post_job(verification=4)
        tee = wait_for(lambda: assigned(market, [tee_job], 1), what="the tee job assigned")
        submit(agents[2], tee_job, 0, 0)
        report = registry.result_report_data(tee_job, 0, 0)
        registry.attest_result(tee_job, 0, 0, b"\x02" * 32, bytes(48), 0, report, sender=attestor)
        chain.pending_timestamp = int(market.replica(tee_job, 0, 0).deadline) + 1
        chain.mine()
        wait_for(
            lambda: ReplicaState(int(market.replica(tee_job, 0, 0).state)) == ReplicaState.FINALIZED,
            what="the attested tee result finalized after the short window",
        )
    assert tee == {(tee_job, 0, 0): secure}
    assert set(got.values()) == {big}
    assert assigned(market, [too_big], 1) == {}
    assert {a for *_, a, _ in assignments(market, start)} <= {small, big, secure}
    assert [e for e in assignments(market, start) if e[0] == too_big] == []
    assert failed_txs_from(chain, keeper, start) == []
