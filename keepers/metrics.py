"""The keeper's Prometheus endpoint. Served by the listener, it reads everything from Redis,
so it reports every worker of the keeper, wherever they run."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from keepers.state import KeeperState


class KeeperCollector:
    def __init__(self, state: KeeperState, queue_depth: Callable[[], int]) -> None:
        self.state = state
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        listener = self.state.listener()
        cursor = self.state.cursor()
        yield GaugeMetricFamily("computenet_keeper_cursor_block", "Last block in the projection", value=cursor or 0)
        head = int(listener.get("head", cursor or 0))
        yield GaugeMetricFamily("computenet_keeper_lag_blocks", "Chain head minus cursor", value=head - (cursor or 0))
        yield GaugeMetricFamily("computenet_keeper_queue_depth", "Tasks waiting in the queue", value=self.queue_depth())
        sizes = GaugeMetricFamily(
            "computenet_keeper_tracked", "Open shards, due work, nodes, pending txs", labels=["kind"]
        )
        for kind, count in self.state.counts().items():
            sizes.add_metric([kind], count)
        yield sizes
        actions = CounterMetricFamily(
            "computenet_keeper_actions", "Task outcomes by kind and call", labels=["kind", "call"]
        )
        for key, count in sorted(self.state.stats().items()):
            kind, call = key.split(":", 1)
            actions.add_metric([kind, call], count)
        yield actions


def serve(state: KeeperState, queue_depth: Callable[[], int], host: str, port: int) -> None:
    """Starts the endpoint on a daemon thread."""
    registry = CollectorRegistry()
    registry.register(KeeperCollector(state, queue_depth))
    start_http_server(port, addr=host, registry=registry)
