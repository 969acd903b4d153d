"""A job no agent can run ends in bounded time and gas: a real keeper (listener and Celery
worker processes, a real Redis) assigns a manifest with a wrong image digest to a real agent
process, which declines it each time; the keeper waits out the shard's backoff between
assignments, the chain fails the shard at its MAX_DECLINES-th decline and refunds the client,
and nothing more is assigned."""

import json
import os
import subprocess
import sys
from pathlib import Path

from computenet.domain import MAX_DECLINES, ReplicaState
from computenet.localnet import ProcessGroup
from computenet.waiting import BACKOFF_BASE

REPO = Path(__file__).resolve().parents[2]

ASSIGN_GAS = 80_000  # an assign costs about 58k; the bound leaves room for storage-slot changes
REDIS_DB = 30  # the keeper bot tests take 1, 2, ... on the session's redis-server


def keeper_env(uri, deployments, redis_url):
    return os.environ | {
        "COMPUTENET_DEPLOYMENTS": str(deployments),
        "COMPUTENET_KEEPER_NETWORK": uri,
        "COMPUTENET_KEEPER_NAME": "backoff",
        "COMPUTENET_KEEPER_ACCOUNT": "TEST::4",
        "COMPUTENET_KEEPER_REDIS_URL": redis_url,
        "COMPUTENET_KEEPER_POLL_INTERVAL": "0.05",
        "COMPUTENET_KEEPER_SWEEP_INTERVAL": "0.5",
        "COMPUTENET_KEEPER_METRICS_PORT": "0",
        "COMPUTENET_KEEPER_REQUIRE_HEARTBEAT": "false",  # heartbeats are not what this test is about
    }


def test_a_wrong_image_fails_after_max_declines_with_backoff_bounded_gas_and_a_full_refund(
    make_agent,
    cpu_asset,
    agents,
    client,
    publish_job,
    post_job,
    market,
    token,
    chain,
    networks,
    registered_keeper,
    redis_server,
    deployments,
    tmp_path,
    stop_after,
    wait_for,
):
    asset = cpu_asset(agents[0])
    missing = "computenet/python@sha256:" + "0" * 64
    _, mhash = publish_job(["python3", "-c", "print(1)"], {}, image_ref=missing)
    tokens, credits = int(token.balanceOf(client)), int(market.credits(client))
    start = chain.blocks.height
    job = post_job(manifest_hash=mhash, gpu_count=0, min_vram_mib=0)
    budget = tokens - int(token.balanceOf(client))
    assert budget > 0

    make_agent(agents[0], [asset]).start()
    redis_server.client(REDIS_DB).flushdb()
    env = keeper_env(networks.provider.uri, deployments, redis_server.url(REDIS_DB))
    keeper = ProcessGroup()
    stop_after(keeper)
    for role in ("listen", "worker"):
        keeper.spawn([sys.executable, "-m", "keepers", role], tmp_path / f"keeper-{role}.log", env)

    def events(name):
        return [e for e in getattr(market, name).range(start, chain.blocks.height + 1) if int(e.job) == job]

    for n in range(1, MAX_DECLINES + 1):
        wait_for(lambda: len(events("ShardDeclined")) == n, timeout=120, what=f"decline {n}")
        if n == 1:  # every view tells the same: the keeper's status names the backoff
            status = subprocess.run(
                [sys.executable, "-m", "keepers", "status", "--json"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert status.returncode == 0, status.stderr
            waiting = [w for w in json.loads(status.stdout)["waiting"] if w.get("job") == job]
            assert waiting and waiting[0]["replicas"]["0"]["kind"] == "backing_off", waiting
        if n < MAX_DECLINES:  # the backoff is counted in chain time: move the clock past it
            chain.provider.make_request("evm_increaseTime", [BACKOFF_BASE * 2 ** (n - 1)])
            chain.mine()

    wait_for(lambda: events("ShardFailed"), what="the shard to fail")
    assert ReplicaState(int(market.replica(job, 0, 0).state)) == ReplicaState.CANCELLED
    # The client gets back every base unit of the budget: nothing ran, nothing was paid.
    assert int(market.credits(client)) - credits == budget
    assert int(market.job(job).escrow) == 0

    # Each assignment came only after the backoff of the declines before it.
    assigns = events("ShardAssigned")
    declines = events("ShardDeclined")
    assert len(assigns) == MAX_DECLINES
    stamp = lambda e: chain.blocks[e.block_number].timestamp  # noqa: E731
    for n in range(1, MAX_DECLINES):
        assert stamp(assigns[n]) >= stamp(declines[n - 1]) + BACKOFF_BASE * 2 ** (n - 1)

    # After the failure nothing more is assigned, however often the keeper sweeps.
    redis = redis_server.client(REDIS_DB)
    listener = next(redis.scan_iter("computenet:backoff:*:listener"))
    swept = lambda: float(redis.hget(listener, "swept") or 0)  # noqa: E731
    after = swept() + 4 * 0.5
    wait_for(lambda: swept() >= after, what="four more sweeps")
    assert len(events("ShardAssigned")) == MAX_DECLINES

    gas = sum(chain.provider.web3.eth.get_transaction_receipt(e.transaction_hash)["gasUsed"] for e in assigns)
    print(f"keeper gas for the failed job: {gas} over {len(assigns)} assigns")
    assert gas <= MAX_DECLINES * ASSIGN_GAS
