"""The agent's commands, shared by `ape run agent ...` and `python -m agent ...`:

run      serve the configured assets until SIGTERM/SIGINT
status   the journal: leases per state and the latest ones
image    build a job image (--ml: the ML image) and print its manifest reference
store    serve a content-store folder over HTTP
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path

import click

from computenet import logs
from computenet.cli import clear_settings_errors

log = logging.getLogger("agent.main")


_clear = clear_settings_errors("COMPUTENET_AGENT_", "agent")


def _docker(host: str | None):
    import docker

    from computenet.connection import ConfigError

    try:
        client = docker.DockerClient(base_url=host) if host else docker.from_env()
        client.ping()
    except Exception as error:
        raise ConfigError(f"no Docker engine at {host or 'the default socket'}: {error}") from None
    return client


def build_agent(settings):
    """Connects to the chain (unless `ape run` did), Docker and the store(s); checks the assets."""
    from ape import networks

    from agent.journal import Journal
    from agent.node import Agent
    from computenet.connection import load_account, network_context
    from computenet.market import Market
    from computenet.store import LocalStore, Mirrors

    given = None  # under `ape run`, the network ape joined names the deployment
    if not networks.active_provider or not networks.active_provider.is_connected:
        network_context(settings.network).__enter__()
        given = settings.network
    market = Market.from_deployments(given)
    # web3 asks the node its chain id twice per eth_call (its validation); a node's chain id
    # never changes under a running agent (which signs with the one it read at start), so
    # it is kept: each contract read is one request, not three.
    provider = market.web3.provider
    provider.cacheable_requests = {"eth_chainId"}
    provider.cache_allowed_requests = True
    account = load_account(settings.account)
    work = Path(settings.work_dir)
    agent = Agent(
        settings,
        market,
        account,
        _docker(settings.docker_host),
        Mirrors.of(settings.store_url),
        Journal(work / "journal.sqlite"),
        LocalStore(work / "outputs"),
    )
    agent.check_assets()
    return agent


def run(settings) -> None:
    from ape.logging import logger as ape_logger

    logs.setup(settings.log_format, settings.log_level, "agent")
    ape_logger.set_level("WARNING")
    agent = build_agent(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "serving",
        extra={
            "fields": {
                "agent": str(agent.account.address),
                "telemetry": agent.telemetry.source,
                "assets": {a: s.capacity for a, s in agent.served.items()},
                "work_dir": str(settings.work_dir),
                "endpoint": settings.endpoint,
            }
        },
    )
    agent.run(stop)
    log.info("stopped")


def commands(command_kwargs: dict | None = None, options=()):
    """The click group; `ape run agent` passes ape's command class and network option."""
    kwargs = command_kwargs or {}

    @click.group()
    def cli():
        """The computenet GPU agent."""

    def with_options(f):
        for option in reversed(options):
            f = option(f)
        return f

    @cli.command("run", **kwargs)
    @with_options
    @_clear
    def run_cmd(**_):
        """Serve the configured assets (COMPUTENET_AGENT_* settings)."""
        from agent.settings import AgentSettings

        run(AgentSettings())

    @cli.command("status")
    @click.option("--json", "as_json", is_flag=True)
    @_clear
    def status_cmd(as_json):
        """Leases in the journal, per state, and the latest ones."""
        from agent.journal import Journal
        from agent.settings import AgentSettings
        from computenet.follow import JsonCursor

        settings = AgentSettings()
        journal = Journal(Path(settings.work_dir) / "journal.sqlite")
        report = {
            "cursor": JsonCursor(settings.cursor_path()).load(),
            "counts": journal.counts(),
            "latest": [e.__dict__ for e in journal.entries()[-10:]],
        }
        if as_json:
            click.echo(json.dumps(report, default=str))
            return
        click.echo(f"cursor {report['cursor']}  " + "  ".join(f"{k} {v}" for k, v in sorted(report["counts"].items())))
        for e in report["latest"]:
            click.echo(
                f"  job {e['job']} shard {e['shard']} replica {e['replica']} lease {e['lease']}: {e['state']} {e['note']}"
            )

    @cli.command("image")
    @click.option("--ml", is_flag=True, help="The ML image: NumPy and scikit-learn (examples/ml).")
    @click.option("--tag", help="Default: computenet/python:3.11, or computenet/ml:3.11 with --ml.")
    @click.option("--docker-host", envvar="DOCKER_HOST")
    @_clear
    def image_cmd(ml, tag, docker_host):
        """Build a job image without a registry; print its manifest reference (its size and
        build time go to stderr)."""
        import time

        from agent import image

        client = _docker(docker_host)
        started = time.monotonic()
        ref = image.build(client, tag or (image.ML_TAG if ml else image.DEFAULT_TAG), ml=ml)
        click.echo(ref)
        click.echo(f"{image.size(client, ref) / 1e6:.0f} MB, built in {time.monotonic() - started:.0f} s", err=True)

    @cli.command("store")
    @click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True)
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", type=int, default=8700, show_default=True)
    def store_cmd(directory, host, port):
        """Serve a content-store folder over HTTP."""
        import uvicorn

        from computenet.store import LocalStore, app

        uvicorn.run(app(LocalStore(directory)), host=host, port=port, log_level="warning")

    return cli
