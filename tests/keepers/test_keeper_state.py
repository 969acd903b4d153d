"""keepers.state against a real redis-server: the projection, heartbeats, in-flight
transactions and the send lock."""

import threading
import time

import pytest
from eth_account import Account

from computenet import events as ev
from computenet.heartbeat import Heartbeat, HeartbeatError
from keepers.reactions import Reaction, finalize_member, react, reclaim_member
from keepers.scheduler import Reputation
from keepers.state import KeeperState, LockTimeout

CHAIN = 31337
MARKET = "0x" + "4d" * 20
REGISTRY = "0x" + "5a" * 20
AGENT = Account.from_key(b"\x01" * 32)
OTHER = Account.from_key(b"\x02" * 32)
ZERO = "0x" + "00" * 20


@pytest.fixture
def state(redis_server):
    client = redis_server.client(31)
    client.flushdb()
    return KeeperState(client, CHAIN, MARKET, REGISTRY, "test")


def test_reactions_and_the_cursor_commit_together(state):
    assert state.cursor() is None
    reaction = Reaction(open={"1:0": 2, "1:1": 1}, due={reclaim_member(1, 0, 0): 50}, reputation={(7, "finalized"): 2})
    state.commit(reaction, 12)
    assert state.cursor() == 12
    assert state.open_shards() == [(1, 0), (1, 1)]
    assert state.due(49) == [] and state.due(50) == [("reclaim", (1, 0, 0))]
    assert state.reputations() == {7: Reputation(finalized=2)}
    state.commit(Reaction(open={"1:1": -1}, undue={reclaim_member(1, 0, 0)}), 13)
    assert state.open_shards() == [(1, 0)] and state.due(10**9) == [] and state.cursor() == 13
    assert state.counts()["open"] == 1


def test_a_later_due_time_wins_an_earlier_one_does_not(state):
    state.commit(Reaction(due={finalize_member(1, 0): 900}), 1)
    state.commit(Reaction(due={finalize_member(1, 0): 800}), 2)
    assert state.due(899) == []
    state.commit(Reaction(due={finalize_member(1, 0): 950}), 3)
    assert state.due(949) == [] and state.due(950) == [("finalize", (1, 0))]
    # a tee result's shortened window brings its finalize forward; a later due time does not undo it
    state.commit(Reaction(sooner={finalize_member(1, 0): 660}), 4)
    assert state.due(659) == [] and state.due(660) == [("finalize", (1, 0))]
    state.commit(Reaction(sooner={finalize_member(1, 0): 700}), 5)
    assert state.due(660) == [("finalize", (1, 0))]


def wire(hb, key=AGENT):
    """What an agent serves: the heartbeat signed with its key, in wire form."""
    return hb.wire(key.key, CHAIN, REGISTRY)


def hb(asset=3, seq=1, at=None, running=1):
    return Heartbeat(asset, int(at or time.time()), 40, 10_000, running, 4, seq)


def test_only_fresh_heartbeats_signed_by_the_registered_agent_are_kept(state):
    now = int(time.time())
    first = wire(hb(seq=1, at=now))  # the same bytes twice, whatever second the clock turns to
    assert state.accept(first, AGENT.address, now, 30) is None
    assert state.accept(first, AGENT.address, now, 30) == KeeperState.UNCHANGED
    refused = [
        state.accept(wire(hb(seq=2), key=OTHER), AGENT.address, now, 30),  # forged
        state.accept(wire(hb(seq=1, running=2)), AGENT.address, now, 30),  # replayed sequence
        state.accept(wire(hb(asset=4, seq=1)), ZERO, now, 30),  # no agent registered
        state.accept(wire(hb(seq=3, at=now - 100)), AGENT.address, now, 30),  # stale
    ]
    assert [r.split(" (")[0] for r in refused] == [
        "heartbeat: not signed by the asset's agent",
        "heartbeat: replayed sequence",
        "heartbeat: unknown asset",
        "heartbeat: stale",
    ]
    with pytest.raises(HeartbeatError, match="not JSON"):
        state.accept(b"{not json", AGENT.address, now, 30)
    node = state.nodes(clock_offset=1000)[3]
    assert node.running_shards == 1 and node.capacity == 4
    assert abs(node.last_seen - (time.time() + 1000)) < 5  # moved onto the chain's clock
    assert list(state.nodes()) == [3]


def test_a_new_agent_key_drops_the_old_keys_heartbeat(state):
    state.commit(react([ev.AgentChanged(block=1, tx="", index=0, asset=3, agent=AGENT.address)]), 1)
    state.accept(wire(hb()), AGENT.address, int(time.time()), 30)
    assert list(state.nodes()) == [3]
    state.commit(react([ev.AgentChanged(block=2, tx="", index=0, asset=3, agent=OTHER.address)]), 2)
    assert state.nodes() == {}


def test_the_reasons_assets_wait_are_replaced_whole(state):
    assert state.asset_reasons() == {}
    state.set_asset_reasons({12: "no endpoint on chain", 3: "heartbeat: stale"})
    assert state.asset_reasons() == {3: "heartbeat: stale", 12: "no endpoint on chain"}
    state.set_asset_reasons({})
    assert state.asset_reasons() == {}


def test_pending_assignments_expire_and_can_be_removed(state):
    kept = state.add_pending(1, 0, 0, 7, ttl=60)
    state.add_pending(1, 1, 0, 8, ttl=-1)  # already expired
    assert state.pending() == [(1, 0, 0, 7)]
    state.remove_pending(kept)
    assert state.pending() == []


def test_queued_marks_deduplicate_until_cleared(state):
    assert state.mark_queued(("assign", 1, 0), ttl=10)
    assert not state.mark_queued(("assign", 1, 0), ttl=10)
    state.clear_queued(("assign", 1, 0))
    assert state.mark_queued(("assign", 1, 0), ttl=10)


def test_the_send_lock_excludes_a_second_holder_until_released(state):
    order = []

    def second():
        with state.send_lock("0xABC", wait=5):  # the same key, whatever its case
            order.append("second")

    with state.send_lock("0xabc"):
        holder = threading.Thread(target=second)
        holder.start()
        with pytest.raises(LockTimeout, match="send lock for 0xabc not free after 0.1 s"):
            with state.send_lock("0xabc", wait=0.1):
                pass
        order.append("first done")
    holder.join()
    assert order == ["first done", "second"]


def test_actions_and_errors_are_journaled_with_counts(state):
    state.record("mined", call="assign", args=[1, 0, 7])
    state.record("error", call="finalize", error="boom")
    assert state.recent("actions")[0]["args"] == [1, 0, 7]
    assert state.recent("errors")[0]["error"] == "boom"
    assert state.stats() == {"mined:assign": 1, "error:finalize": 1}
