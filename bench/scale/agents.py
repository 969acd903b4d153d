"""A process of simulated agents, each an asset's own agent key.

It follows ShardAssigned as a real agent process does for the assets it serves (one
`computenet.follow.Follower`, polled every 0.2 s, the agent's default), and for each lease
of its assets takes the steps of `agent.node.Agent.commit` and `submit_all` with the same SDK
calls: the job's terms (cached, as the agent caches them), the replica and the chain's clock
to cap the claim (`preflight.claimable_seconds`), `Market.receipt_for`, the EIP-712 receipt
signed with the agent's key (`computenet.receipts`), the replica read again and
`agent.plan.recovery` before sending, and an agent's results of one round sent together
(scale.chain.Chain.submit: two or more in `submit_results` under one signature over their
receipts). The workload is null: no Docker, no store, no journal; a fixed one-file output
and log committed through `verifier.commitment.commit_result`, as `agent.execute.collect`
commits a container's, claiming the 1 GPU-second `agent.plan.metered_seconds` gives a run
of no length. One thread runs the lot: the real
agent also serialises its chain calls (its `chain_lock`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from scale.chain import Chain, Inclusions, Refused, Result, Sent
from scale.net import agent_key
from scale.worker import Timings, serve

POLL_INTERVAL = 0.2  # agent/settings.py's poll_interval
OUTPUT = b"null workload: no container ran\n"
LOG = b"computenet scale simulation\n"


def run(uri: str, inbox: Any, indices: list[int], name: str, stop: Any, queue: Any) -> None:
    """The process's entry point: serves the assets of agents `indices` (worker.serve)."""
    serve(uri, inbox, name, stop, queue, lambda market, record: Agents(market, record, indices, name, queue))


class Agents:
    def __init__(self, market: Any, record: dict, indices: list[int], name: str, queue: Any) -> None:
        from ape_test.accounts import TestAccount
        from eth_account import Account

        from computenet.follow import Follower, MemoryCursor

        self.market = market
        self.name, self.queue = name, queue
        self.accounts = {}  # asset -> its agent's ape account (what `broadcast` signs with)
        for i in indices:
            key = agent_key(i)
            address = Account.from_key(key).address
            self.accounts[record["asset_of"][i]] = TestAccount(index=10_000 + i, address_str=address, private_key=key)
        self.chain = Chain(self.market)
        head = self.market.head()
        self.follower = Follower(
            self.market, MemoryCursor(head), roles=("market",), names=("ShardAssigned",), start_block=head + 1
        )
        self.inclusions = Inclusions(self.market.web3)
        self.chain_id = self.market.chain_id
        self.market_address = str(self.market.market.address)
        self.jobs: dict[int, Any] = {}
        self.timings = Timings()
        self.sent: dict[str, float] = {}  # submit tx -> when it left
        self.refused: list[str] = []
        self.reverted = self.dropped = 0
        self.outputs = Path(tempfile.mkdtemp(prefix="scale-agent-")) / "out"
        self.outputs.mkdir()
        (self.outputs / "result.txt").write_bytes(OUTPUT)

    def loop(self, stop: Any) -> None:
        while not stop.is_set():
            with self.timings("follow"):
                batch = self.follower.poll()
            if batch is not None:
                self.handle(batch.events)
                self.follower.commit(batch)
            with self.timings("confirm"):
                for _, ok, _ in self.inclusions.poll():
                    self.reverted += not ok
            self.timings.report(self.queue, self.name)
            if batch is None or batch.caught_up:
                with self.timings("idle"):
                    stop.wait(POLL_INTERVAL)
        shutil.rmtree(self.outputs.parent, ignore_errors=True)

    def handle(self, events: Any) -> None:
        from computenet import events as ev

        leases = [e for e in events if isinstance(e, ev.ShardAssigned) and int(e.asset) in self.accounts]
        results = []
        for e in leases:
            result = self.lease(e)
            if result is not None:
                results.append(result)
        if results:
            with self.timings("send", len(results)):
                sent = self.chain.submit(results)
            self.inclusions.add(sent)
            for s in sent:
                if isinstance(s, Sent):
                    self.sent[s.tx] = s.at
                elif isinstance(s, Refused):
                    self.refused.append(s.reason)

    def lease(self, e: Any) -> Result | None:
        """One lease, as agent.node.Agent runs it once its container is done."""
        from agent.plan import ChainReplica, metered_seconds, recovery
        from computenet import preflight
        from computenet.domain import ReplicaState
        from verifier.commitment import commit_result

        job_id, shard, replica, lease, asset = int(e.job), int(e.shard), int(e.replica), int(e.lease), int(e.asset)
        market, account = self.market, self.accounts[asset]
        with self.timings("reads"):
            job = self.jobs.get(job_id) or self.jobs.setdefault(job_id, market.job(job_id))
        req = job.requirements
        with self.timings("work"):  # the null workload: commit its output as collect() does
            started = time.monotonic()
            root = commit_result(self.outputs, LOG, 1 << 20).root
            gpu_seconds = metered_seconds(time.monotonic() - started, req.gpu_count, req.max_gpu_seconds)
        with self.timings("reads"):  # Agent.commit: the claim is capped by the lease's time so far
            rep = market.replica(job_id, shard, replica, root=False)
            gpu_seconds = min(gpu_seconds, preflight.claimable_seconds(rep, market.now(), req.gpu_count))
            receipt = market.receipt_for(job_id, shard, replica, root, gpu_seconds, 0)
        if receipt.lease != lease:
            self.dropped += 1  # the lease changed while the shard ran
            return None
        with self.timings("sign"):
            signature = receipt.sign(account.private_key, self.chain_id, self.market_address)
        with self.timings("reads"):  # Agent.submit: only a lease still ours is sent
            rep = market.replica(job_id, shard, replica, root=False)
            chain = ChainReplica(ReplicaState(int(rep.state)), int(rep.lease), int(rep.deadline))
            action = recovery("computed", lease, int(e.lease_end), chain, market.now())
        if action != "submit":
            self.dropped += 1
            return None
        return Result(job_id, shard, replica, root, gpu_seconds, 0, signature, account, receipt)

    def stats(self) -> dict:
        return {
            "timings": self.timings.snapshot(),
            "sent": self.sent,
            "refused": self.refused,
            "reverted": self.reverted,
            "dropped": self.dropped,
            "assets": len(self.accounts),
        }
