"""The demo's whole network served as its own process (`python -m demo --serve`), for the test
modules that drive it from outside: the dApp's browser tests and `ape run job pipeline`'s."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

NETWORK_START_S = 240  # anvil, dockerd, the job image, keepers' Celery workers, the facilitator


@contextlib.contextmanager
def served_demo(folder: Path) -> Iterator[dict[str, Any]]:
    """The network served from `folder` (its serve file net.json, its logs, demo.log) for the
    `with` block, as its serve file describes it, and stopped afterwards; the test fails with
    the log's tail if it does not come up within NETWORK_START_S."""
    from demo import serve

    process = serve.launch(folder / "net.json", folder / "logs", folder / "demo.log")
    try:
        try:
            info = serve.wait_served(process, folder / "net.json", folder / "demo.log", NETWORK_START_S)
        except serve.ServeError as error:
            pytest.fail(str(error))
        yield info
    finally:
        serve.stop_served(process)
