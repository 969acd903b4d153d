"""The verifier bot's Prometheus endpoint: counters and gauges read from its state."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from verifier.bot import COUNTERS, State

HELP = {
    "results_seen": "ResultSubmitted events seen",
    "sampled": "Results sampled for this verifier",
    "reexecuted": "Results re-executed",
    "mismatches": "Re-executions that disagreed with the result or its metering",
    "challenged": "Challenges sent and mined",
    "errors": "Failed steps and results (retried)",
}


class VerifierCollector:
    def __init__(self, state: State, head: Callable[[], int]) -> None:
        self.state = state
        self.head = head

    def collect(self) -> Iterator[Metric]:
        for name in COUNTERS:
            yield CounterMetricFamily(f"computenet_verifier_{name}", HELP[name], value=self.state.counts.get(name, 0))
        cursor = self.state.next_block - 1
        yield GaugeMetricFamily("computenet_verifier_cursor_block", "Last block scanned", value=cursor)
        yield GaugeMetricFamily("computenet_verifier_lag_blocks", "Chain head minus cursor", value=self.head() - cursor)
        yield GaugeMetricFamily(
            "computenet_verifier_waiting",
            "Results waiting for their seed block or a retry",
            value=len(self.state.waiting),
        )


def serve(state: State, head: Callable[[], int], host: str, port: int) -> None:
    """Starts the endpoint on a daemon thread."""
    registry = CollectorRegistry()
    registry.register(VerifierCollector(state, head))
    start_http_server(port, addr=host, registry=registry)
