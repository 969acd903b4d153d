"""What the simulation's worker processes share: joining the chain, and timing their steps."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REPORT_INTERVAL = 1.0  # seconds between a worker's timing snapshots to the main process


class Timings:
    """Wall seconds a loop spends in each kind of step, and how many of each."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._reported = time.monotonic()

    @contextmanager
    def __call__(self, kind: str, count: int = 1) -> Any:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(kind, time.perf_counter() - start, count)

    def add(self, kind: str, seconds: float, count: int = 1) -> None:
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
        self.counts[kind] = self.counts.get(kind, 0) + count

    def snapshot(self) -> dict:
        return {"seconds": dict(self.seconds), "counts": dict(self.counts), "cpu": time.process_time()}

    def report(self, queue: Any, name: str) -> None:
        """Sends a snapshot to the main process, at most every REPORT_INTERVAL seconds."""
        if time.monotonic() - self._reported >= REPORT_INTERVAL:
            self._reported = time.monotonic()
            queue.put(("timings", name, self.snapshot()))


def connect(uri: str) -> None:
    """Connects this process to the simulation's anvil through ape, as the keeper and agent
    processes do (the slow part of joining: started while the main process deploys)."""
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)  # ape finds the project (and its compiled contracts) from the working directory
    from ape import networks
    from ape.logging import logger

    logger.set_level("ERROR")
    _plain_reverts()
    networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": uri}).__enter__()


def join(inbox: Any, timeout: float = 600) -> tuple[Any, dict]:
    """Waits for the deployment's record from the main process; the SDK's Market for it."""
    from computenet.market import Market

    record = inbox.get(timeout=timeout)
    market = Market.at(record["addresses"])
    market.deployment_block = record["deployment_block"]
    return market, record


def _plain_reverts() -> None:
    """A gas estimate that reverts (a keeper that lost a race) would have ape-foundry render
    the call trace and map it to Vyper source: about a second each. The test suite turns both
    off (tests/conftest.py) and so does the simulation; the revert reason still comes back."""
    from ape.exceptions import TransactionError
    from ape_ethereum.trace import Trace

    Trace.show = lambda self, *args, **kwargs: None
    TransactionError.source_traceback = property(lambda self: None, lambda self, value: None)


def serve(uri: str, inbox: Any, name: str, stop: Any, queue: Any, make: Any) -> None:
    """A role process's life: joins the chain at `uri`, takes the deployment's record from
    `inbox`, builds its role with `make(market, record)`, puts ("ready", name, None) on `queue`,
    runs it until `stop` is set, then puts ("done", name, stats), or ("failed", name, why)."""
    try:
        connect(uri)
        market, record = join(inbox)
        role = make(market, record)
        queue.put(("ready", name, None))
        role.loop(stop)
        queue.put(("done", name, role.stats()))
    except BaseException as error:  # the main process reports it and stops the run
        import traceback

        queue.put(("failed", name, f"{type(error).__name__}: {error}\n{traceback.format_exc()[-3000:]}"))
