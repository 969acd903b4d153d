"""A CPU-only asset's utilisation, measured from its own job containers.

The host's load average counts every process on the machine: a host busy with work of its
own would make the node look full and keepers would pass it by. What a heartbeat reports
for a CPU-only asset is instead the CPU time its running job containers used since the last
sample, over the asset's registered cores (`Spec.cpu_cores`). The engine reports each
container's cumulative CPU time (`docker stats`, `cpu_stats.cpu_usage.total_usage`, in ns),
so this works against any Docker host, local or remote; `utilization` is the pure part.

Containers carry the label ASSET_LABEL=<asset id> (agent.execute.start), so one agent's
asset never counts another's containers, even on a shared engine.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("agent.cpu")

ASSET_LABEL = "computenet.asset"


@dataclass(frozen=True)
class Sample:
    """Cumulative CPU time (ns) per container id at `at` (unix seconds)."""

    at: float
    usage_ns: dict[str, int] = field(default_factory=dict)


def utilization(previous: Sample | None, current: Sample, cores: float) -> int:
    """Per cent of `cores` busy between two samples of the same containers (pure, 0-100).

    A container in both samples counts its CPU time between them; one new since the previous
    sample started within the interval, so all of its time counts; one gone since counts
    nothing (its last interval is lost: at most one heartbeat's). Without a previous sample
    (the first heartbeat) or time between them there is no rate yet: 0."""
    if previous is None or current.at <= previous.at or cores <= 0:
        return 0
    used = 0
    for container, usage in current.usage_ns.items():
        before = previous.usage_ns.get(container, 0)
        used += max(0, usage - before)  # a counter that went back (a restart) counts nothing
    elapsed_ns = (current.at - previous.at) * 1e9
    return max(0, min(100, round(100 * used / (elapsed_ns * cores))))


def asset_cores(cpu_cores: int) -> int:
    """The cores utilisation is measured over: the registered ones, or this machine's when
    the spec names none."""
    return cpu_cores if cpu_cores > 0 else os.cpu_count() or 1


def container_usage(container: Any) -> int | None:
    """A running container's cumulative CPU time in ns, from the engine; None if unreadable."""
    try:
        stats = container.stats(stream=False, one_shot=True)
        return int(stats["cpu_stats"]["cpu_usage"]["total_usage"])
    except Exception as error:  # ended meanwhile, or an engine without one-shot stats
        log.debug("no CPU stats", extra={"fields": {"container": container.name, "error": str(error)}})
        return None


def sample(docker: Any, asset: int, now: float) -> Sample:
    """The CPU time of `asset`'s running job containers now."""
    usage = {}
    for container in docker.containers.list(filters={"label": f"{ASSET_LABEL}={asset}", "status": "running"}):
        value = container_usage(container)
        if value is not None:
            usage[container.id] = value
    return Sample(now, usage)


class Meter:
    """Utilisation per asset between one heartbeat and the next."""

    def __init__(self, docker: Any) -> None:
        self.docker = docker
        self.last: dict[int, Sample] = {}

    def utilization(self, asset: int, cores: int, now: float) -> int:
        current = sample(self.docker, asset, now)
        previous, self.last[asset] = self.last.get(asset), current
        return utilization(previous, current, asset_cores(cores))
