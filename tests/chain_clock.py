"""Moving a local network's clock past its results' challenge windows, for tests that would
otherwise sit through them in real time (the market's minimum window is a minute).

The clock jumps only while no replica holds a lease, so no running shard's lease expires by the
jump; anvil then carries the new time in its next block, and the keepers finalize as they would
have a minute later."""

from __future__ import annotations

import threading
from typing import Any

from computenet.domain import ReplicaState


def skip_windows(web3: Any, market: Any, first_job: int = 1) -> bool:
    """Jumps the chain's clock past every open challenge window of jobs `first_job`.. when no
    replica of theirs is leased; True if it jumped. `market`: a computenet.market.Market."""
    replicas = [
        rep
        for job in range(first_job, market.job_count() + 1)
        for shard in market.shards(job)
        for rep in shard.replicas
        if rep.state in (ReplicaState.ASSIGNED, ReplicaState.SUBMITTED)
    ]
    if not replicas or any(rep.state == ReplicaState.ASSIGNED for rep in replicas):
        return False
    now = int(web3.eth.get_block("latest")["timestamp"])
    end = max(rep.deadline for rep in replicas)
    if end < now:
        return False
    web3.provider.make_request("evm_increaseTime", [end - now + 1])
    web3.provider.make_request("evm_mine", [])
    return True


class WindowSkipper:
    """Skips challenge windows in a background thread while a `with` block runs (a command the
    test runs as a subprocess waits on finalization)."""

    def __init__(self, web3: Any, market: Any, first_job: int = 1, interval: float = 0.5) -> None:
        self.web3, self.market, self.first_job, self.interval = web3, market, first_job, interval
        self.jumps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="window-skipper", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.jumps += skip_windows(self.web3, self.market, self.first_job)
            except Exception:  # a read racing a block: the next look decides
                continue

    def __enter__(self) -> WindowSkipper:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
