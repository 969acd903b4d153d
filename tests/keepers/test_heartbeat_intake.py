"""keepers.heartbeats: polling the agents' endpoints (real HTTP servers, a real redis-server)
and why each asset is not eligible."""

import socket
import time

import pytest
from eth_account import Account

from agent.outputs import heartbeats_app
from computenet.domain import Asset, Spec, Stake
from computenet.heartbeat import Heartbeat
from computenet.localnet import ServedApp, free_port
from keepers import heartbeats as intake_mod
from keepers.heartbeats import NO_ENDPOINT, NO_HEARTBEAT, HeartbeatIntake, asset_reason, pick, targets
from keepers.scheduler import NodeState, Policy
from keepers.state import KeeperState

CHAIN = 31337
MARKET = "0x" + "4d" * 20
REGISTRY = "0x" + "5a" * 20
AGENT = Account.from_key(b"\x01" * 32)
OTHER = Account.from_key(b"\x02" * 32)
POLICY = Policy(max_heartbeat_age=30, max_utilization_pct=90)


def asset(asset_id, endpoint, agent=AGENT.address, active=True, expire=None):
    spec = Spec(0, 0, 0, 2, 276, 100, expire or int(time.time()) + 86_400, active, max_leases=4)
    return Asset(asset_id, "0x" + "0a" * 20, agent, spec, b"", Stake(1, 0, 0), endpoint)


def beat(asset_id, seq, key=AGENT, at=None, utilization=10, running=0, capacity=4):
    hb = Heartbeat(asset_id, int(at or time.time()), utilization, 0, running, capacity, seq)
    return hb.wire(key.key, CHAIN, REGISTRY)


@pytest.fixture
def state(redis_server):
    client = redis_server.client(30)
    client.flushdb()
    return KeeperState(client, CHAIN, MARKET, REGISTRY, "intake")


@pytest.fixture(scope="module")
def endpoints():
    """Two agents' endpoints, each serving what the test puts in its board."""
    boards = [{}, {}]
    served = [ServedApp(heartbeats_app(lambda b=board: dict(b))) for board in boards]
    yield boards, [s.url for s in served]
    for s in served:
        s.stop()


@pytest.fixture
def silent():
    """An endpoint that takes connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_each_asset_gets_its_heartbeat_from_its_own_endpoint_or_a_reason(state, endpoints):
    (first, second), (url1, url2) = endpoints
    first.clear(), second.clear()
    first.update({1: beat(1, 5), 2: beat(2, 5, key=OTHER), 3: beat(3, 5, at=time.time() - 100)})
    second.update({4: beat(4, 5, utilization=95), 5: beat(5, 5, running=4), 6: beat(6, 5)})
    closed = f"http://127.0.0.1:{free_port()}"
    polled = [
        asset(1, url1),
        asset(2, url1),  # forged: signed by another key
        asset(3, url1 + "/"),  # stale (a trailing slash is the same endpoint)
        asset(4, url2),  # over utilisation
        asset(5, url2),  # full
        asset(6, url2, agent="0x" + "00" * 20),  # sold: no agent, not polled
        asset(7, ""),
        asset(8, closed),
        asset(9, url2),  # its endpoint serves no heartbeat for it
        asset(10, url1, active=False),  # not polled
    ]
    intake = HeartbeatIntake(state, lambda: polled, POLICY, timeout=2)
    assert intake.poll() == 3  # 1, 4 and 5: accepted, and 4 and 5 then not eligible for their load
    reasons = state.asset_reasons()
    assert sorted(state.nodes()) == [1, 4, 5]
    assert reasons[2] == "heartbeat: not signed by the asset's agent"
    assert reasons[3].startswith("heartbeat: stale (age ")
    assert reasons[4] == "over utilisation (95 % > 90 %)"
    assert reasons[5] == "full (running 4 of its capacity 4)"
    assert reasons[7] == NO_ENDPOINT
    assert reasons[8].startswith(f"endpoint unreachable: {closed}/heartbeats: ConnectionError")
    assert reasons[9] == f"{url2} serves no heartbeat for it"
    assert set(reasons) == {2, 3, 4, 5, 7, 8, 9}

    # The same heartbeats again: nothing new, nothing refused; a newer one is taken.
    assert intake.poll() == 0 and 1 not in state.asset_reasons()
    first[1] = beat(1, 6, running=1)
    assert intake.poll() == 1 and state.nodes()[1].running_shards == 1
    first[1] = beat(1, 4)  # an older one replayed by the endpoint
    intake.poll()
    assert 1 not in state.asset_reasons()  # refused, but the last one accepted is still fresh
    assert state.nodes()[1].running_shards == 1


def test_a_silent_endpoint_stalls_neither_the_others_nor_the_listener(state, endpoints, silent):
    (first, _), (url1, _) = endpoints
    first.clear()
    first[1] = beat(1, 1)
    intake = HeartbeatIntake(state, lambda: [asset(1, url1), asset(2, silent)], POLICY, interval=0, timeout=0.5)
    assert intake.tick() == 1  # the first round is waited for, up to its deadline
    first[1] = beat(1, 2)
    started = time.time()
    assert intake.tick() is None  # later ones: it starts a round and waits on nothing
    assert time.time() - started < 0.3
    accepted = None
    while accepted is None and time.time() - started < 10:
        time.sleep(0.05)
        accepted = intake.tick()
    assert accepted == 1 and time.time() - started < 4  # the round ended at its deadline
    assert state.asset_reasons()[2].startswith(f"endpoint unreachable: {silent}/heartbeats: ")
    assert list(state.nodes()) == [1]
    intake.close()


def test_reasons_for_an_asset_without_a_fresh_heartbeat():
    node = NodeState(1, 10, 0, 0, 4, last_seen=1_000)
    assert asset_reason(None, node, 1_010, POLICY) is None
    assert asset_reason("endpoint unreachable: x", node, 1_010, POLICY) is None  # the last one still holds
    assert asset_reason("endpoint unreachable: x", node, 1_031, POLICY) == "endpoint unreachable: x"
    assert asset_reason(None, node, 1_031, POLICY) == "heartbeat: stale (age 31 s > 30 s)"
    assert asset_reason(None, None, 1_000, POLICY) == NO_HEARTBEAT
    lax = Policy(max_heartbeat_age=30, require_heartbeat=False)
    assert asset_reason("endpoint unreachable: x", None, 1_000, lax) is None  # assumed to run
    assert asset_reason(None, NodeState(1, 91, 0, 0, 4, 1_000), 1_000, POLICY) == "over utilisation (91 % > 90 %)"


def test_targets_and_picking_an_assets_heartbeat():
    now = int(time.time())
    kept = asset(1, "http://a")
    assert targets([kept, asset(2, "http://a", expire=now - 1), asset(3, "http://a", active=False)], now) == [kept]
    answer = [{"asset": 1, "seq": 2}, {"asset": 1, "seq": 7}, {"asset": 2, "seq": 9}, "junk"]
    assert pick(answer, 1) == '{"asset":1,"seq":7}'
    assert pick(answer, 3) is None and pick("endpoint unreachable", 1) is None


def test_an_endpoint_answering_junk_is_unreachable():
    junk = ServedApp(heartbeats_app(lambda: {1: "not json"}))
    try:
        assert (
            intake_mod.fetch(junk.url, 2)
            == f"endpoint unreachable: {junk.url}/heartbeats answered something other than JSON"
        )
        assert intake_mod.fetch(junk.url + "/nowhere", 2).endswith("answered 404")
    finally:
        junk.stop()
