"""An agent's results computed together go out together: one `submit_many` through the
batch relay, each result still its own signed receipt, and none waits when the agent is idle."""

import threading
import time

import pytest
from ape.exceptions import ContractLogicError

from computenet.domain import ReplicaState

ROOT = b"\x42" * 32


def computed(agent, account, market, chain, lease, gpu_seconds=0):
    """Journals `lease` as computed, its receipt signed as the agent signs it; the entry."""
    agent.journal.accept(*lease.key, lease.asset, lease.lease_end)
    receipt = agent.market.receipt_for(lease.job, lease.shard, lease.replica, ROOT, gpu_seconds, 0)
    signature = receipt.sign(account.private_key, chain.chain_id, market.address)
    agent.journal.update(
        lease.key,
        "computed",
        output_root="0x" + ROOT.hex(),
        gpu_seconds=gpu_seconds,
        exit_code=0,
        signature="0x" + signature.hex(),
    )
    return agent.journal.get(lease.key)


def test_results_computed_together_are_submitted_in_one_transaction(
    inline_agent, cpu_asset, agents, lease_for, market, chain
):
    asset = cpu_asset(agents[0], max_leases=4, cpu_cores=4)
    agent = inline_agent(agents[0], [asset])
    leases = [lease_for(asset, None) for _ in range(3)]
    entries = [computed(agent, agents[0], market, chain, lease) for lease in leases]
    start = chain.blocks.height

    agent.submit_all(entries)

    txs = {agent.journal.get(lease.key).tx for lease in leases}
    assert len(txs) == 1 and {agent.journal.get(lease.key).state for lease in leases} == {"done"}
    events = list(market.ResultSubmitted.range(start + 1, chain.blocks.height + 1))
    assert sorted((e.job, e.shard, e.replica, bytes(e.output_root)) for e in events) == sorted(
        (lease.job, 0, 0, ROOT) for lease in leases
    )
    assert {str(e.transaction_hash) for e in events} == txs
    assert all(ReplicaState(market.replica(lease.job, 0, 0).state) == ReplicaState.SUBMITTED for lease in leases)


def test_a_result_the_relay_skips_is_sent_again_alone_which_names_the_refusal(
    inline_agent, cpu_asset, agents, lease_for, market, chain
):
    asset = cpu_asset(agents[0], max_leases=4, cpu_cores=4)
    agent = inline_agent(agents[0], [asset])
    bad, good = (lease_for(asset, None) for _ in range(2))
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
