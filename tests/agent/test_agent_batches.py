"""An agent's results computed together go out together: those of single-replica OPTIMISTIC
and SPOT_CHECK jobs in one `JobMarket.submit_results` under one signature of the agent key
(all or none: a batch the market refuses is sent again one by one), the others in one
`submit_many` through the batch relay, each its own signed receipt; none waits when the agent
is idle."""

import threading
import time

import pytest
from ape.exceptions import ContractLogicError

from agent import node
from computenet.domain import ReplicaState, Verification
from computenet.market import Market

ROOT = b"\x42" * 32
ZERO = b"\x00" * 32


def computed(agent, account, market, chain, lease, gpu_seconds=0, exit_code=0):
    """Journals `lease` as computed, its receipt signed as the agent signs it; the entry."""
    agent.journal.accept(*lease.key, lease.asset, lease.lease_end)
    receipt = agent.market.receipt_for(lease.job, lease.shard, lease.replica, ROOT, gpu_seconds, exit_code)
    signature = receipt.sign(account.private_key, chain.chain_id, market.address)
    agent.journal.update(
        lease.key,
        "computed",
        output_root="0x" + ROOT.hex(),
        gpu_seconds=gpu_seconds,
        exit_code=exit_code,
        signature="0x" + signature.hex(),
    )
    return agent.journal.get(lease.key)


def logged(market, start, chain):
    """The ResultSubmitted and ResultsCommitted logs since block `start`, by transaction."""
    head = chain.blocks.height + 1
    submitted, committed = {}, {}
    for e in market.ResultSubmitted.range(start + 1, head):
        submitted.setdefault(str(e.transaction_hash), []).append((e.job, e.shard, e.replica))
    for e in market.ResultsCommitted.range(start + 1, head):
        committed.setdefault(str(e.transaction_hash), []).append(e)
    return submitted, committed


def test_results_computed_together_are_submitted_in_one_batch_under_one_signature(
    inline_agent, cpu_asset, agents, lease_for, market, court, stack, chain
):
    asset = cpu_asset(agents[0], max_leases=4, cpu_cores=4)
    other = cpu_asset(agents[0], max_leases=4, cpu_cores=4)  # another asset of the same agent
    agent = inline_agent(agents[0], [asset, other])
    leases = [lease_for(asset, None), lease_for(other, None), lease_for(asset, None)]
    entries = [computed(agent, agents[0], market, chain, lease) for lease in leases]
    start = chain.blocks.height

    agent.submit_all(entries)

    txs = {agent.journal.get(lease.key).tx for lease in leases}
    assert len(txs) == 1 and {agent.journal.get(lease.key).state for lease in leases} == {"done"}
    submitted, committed = logged(market, start, chain)
    [tx] = txs
    assert sorted(submitted[tx]) == sorted((lease.job, 0, 0) for lease in leases)
    [batch] = committed[tx]  # one commitment, signed by the agent over the three receipts
    assert batch.agent == agents[0].address and len(batch.receipts) == 3
    assert list(committed) == [tx] and list(submitted) == [tx]
    sdk = Market.from_stack(stack)
    for lease in leases:
        assert ReplicaState(market.replica(lease.job, 0, 0).state) == ReplicaState.SUBMITTED
        assert bytes(market.output_root(lease.job, 0, 0)) == ZERO  # kept only as the batch's commitment
        assert bytes(court.result_root(lease.job, 0, 0)) == ZERO
        assert sdk.replica(lease.job, 0, 0).output_root == ROOT  # from its ResultSubmitted log


def test_replicated_and_zk_results_are_relayed_beside_the_batch(
    inline_agent, cpu_asset, agents, lease_for, market, stack, chain
):
    asset = cpu_asset(agents[0], max_leases=8, cpu_cores=8)
    agent = inline_agent(agents[0], [asset])
    optimistic = [lease_for(asset, None) for _ in range(2)]
    spot = lease_for(asset, None, verification=Verification.SPOT_CHECK)
    replicated = lease_for(asset, None, replication=2)
    zk = lease_for(asset, None, verification=Verification.ZK)  # failed: the optimistic way, not batched
    entries = [computed(agent, agents[0], market, chain, lease) for lease in (*optimistic, spot, replicated)]
    entries.insert(2, computed(agent, agents[0], market, chain, zk, exit_code=1))
    start = chain.blocks.height

    agent.submit_all(entries)

    journal = {lease.job: agent.journal.get(lease.key) for lease in (*optimistic, spot, replicated, zk)}
    assert {e.state for e in journal.values()} == {"done"}
    submitted, committed = logged(market, start, chain)
    [batch_tx] = committed
    assert sorted(submitted[batch_tx]) == sorted((lease.job, 0, 0) for lease in (*optimistic, spot))
    assert len(committed[batch_tx][0].receipts) == 3
    [relay_tx] = set(submitted) - {batch_tx}
    assert sorted(submitted[relay_tx]) == sorted((lease.job, 0, 0) for lease in (replicated, zk))
    assert {journal[lease.job].tx for lease in (*optimistic, spot)} == {batch_tx}
    assert {journal[lease.job].tx for lease in (replicated, zk)} == {relay_tx}
    for lease in (*optimistic, spot, replicated, zk):
        assert ReplicaState(market.replica(lease.job, 0, 0).state) == ReplicaState.SUBMITTED
    for lease in (replicated, zk):  # recorded one by one: their roots are on chain
        assert bytes(market.output_root(lease.job, 0, 0)) == ROOT


def test_a_lone_batchable_result_is_relayed_with_the_others(inline_agent, cpu_asset, agents, lease_for, market, chain):
    asset = cpu_asset(agents[0], max_leases=4, cpu_cores=4)
    agent = inline_agent(agents[0], [asset])
    leases = [lease_for(asset, None), lease_for(asset, None, replication=2)]
    entries = [computed(agent, agents[0], market, chain, lease) for lease in leases]
    start = chain.blocks.height

    agent.submit_all(entries)

    submitted, committed = logged(market, start, chain)
    assert not committed and len(submitted) == 1  # one submit_many, no batch of one
    assert {agent.journal.get(lease.key).state for lease in leases} == {"done"}
    assert all(bytes(market.output_root(lease.job, 0, 0)) == ROOT for lease in leases)


def test_more_results_than_a_batch_holds_are_split_in_even_batches(
    inline_agent, cpu_asset, agents, lease_for, market, chain, monkeypatch
):
    monkeypatch.setattr(node, "MAX_BATCH_RESULTS", 2)
    assets = [cpu_asset(agents[0], max_leases=4, cpu_cores=4) for _ in range(2)]
    agent = inline_agent(agents[0], assets)
    leases = [lease_for(assets[n % 2], None) for n in range(4)]
    entries = [computed(agent, agents[0], market, chain, lease) for lease in leases]
    start = chain.blocks.height

    agent.submit_all(entries)

    submitted, committed = logged(market, start, chain)
    assert len(committed) == 2 and all(len(c[0].receipts) == 2 for c in committed.values())
    assert sorted(r for rs in submitted.values() for r in rs) == sorted((lease.job, 0, 0) for lease in leases)
    assert {agent.journal.get(lease.key).tx for lease in leases} == set(committed)
    assert all(ReplicaState(market.replica(lease.job, 0, 0).state) == ReplicaState.SUBMITTED for lease in leases)


def test_a_batch_the_market_refuses_is_sent_again_one_by_one_and_nothing_is_lost(
    inline_agent, cpu_asset, agents, lease_for, market, chain
):
    asset = cpu_asset(agents[0], max_leases=4, cpu_cores=4)
    agent = inline_agent(agents[0], [asset])
    bad, *good = (lease_for(asset, None) for _ in range(3))
    # a claim beyond the lease's time so far: the market refuses it, and so the whole batch
    entries = [computed(agent, agents[0], market, chain, bad, gpu_seconds=100_000)]
    entries += [computed(agent, agents[0], market, chain, lease) for lease in good]
    start = chain.blocks.height

    with pytest.raises(ContractLogicError, match="gpu_seconds exceed the lease's time"):
        agent.submit_all(entries)  # the bad one, sent first, does not hold back the others

    submitted, committed = logged(market, start, chain)
    assert not committed
    assert sorted(r for rs in submitted.values() for r in rs) == sorted((lease.job, 0, 0) for lease in good)
    assert len(submitted) == 2  # each alone
    for lease in good:
        entry = agent.journal.get(lease.key)
        assert entry.state == "done" and entry.tx in submitted
        assert ReplicaState(market.replica(lease.job, 0, 0).state) == ReplicaState.SUBMITTED
        assert bytes(market.output_root(lease.job, 0, 0)) == ROOT
    assert agent.journal.get(bad.key).state == "submitted"  # still open: retried (retry_submissions)
    assert ReplicaState(market.replica(bad.job, 0, 0).state) == ReplicaState.ASSIGNED


def test_a_result_the_relay_skips_is_sent_again_alone_which_names_the_refusal(
    inline_agent, cpu_asset, agents, lease_for, market, chain
):
    asset = cpu_asset(agents[0], max_leases=4, cpu_cores=4)
    agent = inline_agent(agents[0], [asset])
    bad, good = (lease_for(asset, None, replication=2) for _ in range(2))  # replicated: relayed
    entries = [computed(agent, agents[0], market, chain, lease) for lease in (bad, good)]
    agent.journal.update(bad.key, "computed", output_root="0x" + "43" * 32)  # not what its receipt signs
    entries[0] = agent.journal.get(bad.key)

    with pytest.raises(ContractLogicError, match="receipt not signed by the asset's agent"):
        agent.submit_all(entries)

    assert agent.journal.get(good.key).state == "done"  # sent in the batch, which skipped the bad one
    assert ReplicaState(market.replica(good.job, 0, 0).state) == ReplicaState.SUBMITTED
    assert ReplicaState(market.replica(bad.job, 0, 0).state) == ReplicaState.ASSIGNED


def test_results_ready_while_a_submission_is_on_its_way_share_the_next_one(
    inline_agent, cpu_asset, agents, monkeypatch
):
    agent = inline_agent(agents[0], [cpu_asset(agents[0])])
    batches = []
    monkeypatch.setattr(agent, "submit_all", lambda entries: batches.append([e.job for e in entries]))
    agent.submit_ready(_Entry(1))  # idle: sent at once, alone
    assert batches == [[1]]

    with agent.submit_lock:  # a submission on its way
        threads = [threading.Thread(target=agent.submit_ready, args=(_Entry(job),)) for job in (2, 3, 4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(agent.ready) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(agent.ready) == 3
    for t in threads:
        t.join(timeout=10)
    assert [sorted(b) for b in batches[1:]] == [[2, 3, 4]]  # one thread sent all three; the others found none


class _Entry:
    def __init__(self, job):
        self.job = job
