"""The verifier bot's commands (`python -m verifier ...`; settings: COMPUTENET_VERIFIER_*):

run       follow submitted results, re-execute those sampled, challenge the wrong ones
status    the state file: cursor, waiting results, counts, the latest decisions
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

log = logging.getLogger("verifier.main")

_clear = clear_settings_errors("COMPUTENET_VERIFIER_", "verifier")


def build(settings):
    """The bot for `settings`: its key, chain, content store and Docker engine."""
    from web3 import Web3

    from computenet.connection import ConfigError, load_account
    from computenet.deployments import DeploymentNotFound
    from computenet.market import Market
    from computenet.store import StoreClient
    from computenet.web3calls import Sender
    from verifier.bot import Verifier
    from verifier.reexecute import Reexecutor

    web3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 30}))
    try:
        market = Market.from_web3_deployments(web3, settings.rpc_url, settings.market)
    except DeploymentNotFound:
        raise
    except Exception as error:
        where = settings.market or "the recorded deployment"
        raise ConfigError(f"no JobMarket at {where} on {settings.rpc_url}: {error}") from None
    sender = None
    if settings.account:
        key = load_account(settings.account).private_key
        sender = Sender(web3, key if isinstance(key, str) else "0x" + bytes(key).hex())
    reexecutor = Reexecutor(StoreClient(settings.store_url), docker_host=settings.docker_host, limits=settings.limits())
    return Verifier(
        market,
        reexecutor,
        sender=sender,
        address="0x" + "00" * 20 if sender is None else None,
        share_bps=settings.optimistic_share_bps,
        state=Path(settings.state_file),
        start_block=settings.start_block,
        outputs=settings.outputs,
        retry_seconds=settings.retry_seconds,
        max_attempts=settings.max_attempts,
    )


def run(settings, stop: threading.Event | None = None) -> None:
    logs.setup(settings.log_format, settings.log_level, "verifier")
    bot = build(settings)
    if settings.metrics_port:
        from verifier.metrics import serve

        serve(bot.state, bot.market.head, settings.metrics_host, settings.metrics_port)
    if stop is None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    bonded = bot.bonded()
    if not bonded:
        log.warning(
            "not an active KeeperRegistry registrant: agents will not serve it sampled outputs, so results "
            "of numeric comparators are judged by their roots alone",
            extra={"fields": {"verifier": bot.address}},
        )
    mode = "dry run (no key)" if bot.dry_run else "challenging"
    log.info(
        "verifying",
        extra={
            "fields": {
                "verifier": bot.address,
                "mode": mode,
                "market": bot.market.addresses["market"],
                "cursor": bot.state.next_block,
                "bonded": bonded,
                "optimistic_share_bps": settings.optimistic_share_bps,
            }
        },
    )
    bot.run(stop, settings.poll_interval)
    log.info("stopped")


@click.group()
def cli() -> None:
    """Verifier bot: re-executes sampled results and challenges wrong ones (settings: COMPUTENET_VERIFIER_*)."""


@cli.command("run")
@_clear
def run_cmd() -> None:
    """Follow submitted results until SIGTERM/SIGINT."""
    from verifier.settings import VerifierSettings

    run(VerifierSettings())


@cli.command("attestor")
@clear_settings_errors("COMPUTENET_ATTESTOR_", "attestor")
def attestor_cmd() -> None:
    """Serve the attestation service until SIGTERM/SIGINT (settings: COMPUTENET_ATTESTOR_*)."""
    from verifier.settings import AttestorSettings

    serve_attestor(AttestorSettings())


def build_attestor(settings):
    """The attestation service for `settings`: its key, chain and policy."""
    from web3 import Web3

    from computenet.connection import load_account
    from computenet.market import Market
    from computenet.web3calls import Sender
    from verifier.attestor import Attestor

    web3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 30}))
    market = Market.from_web3_deployments(web3, settings.rpc_url, settings.market)
    key = load_account(settings.account).private_key
    sender = Sender(web3, key if isinstance(key, str) else "0x" + bytes(key).hex())
    return Attestor(market, sender, settings.policy())


def serve_attestor(settings) -> None:
    import uvicorn

    from verifier.attestor import app

    logs.setup(settings.log_format, settings.log_level, "attestor")
    attestor = build_attestor(settings)
    log.info(
        "attesting",
        extra={
            "fields": {
                "attestor": attestor.sender.address,
                "registry": attestor.market.addresses["attestations"],
                "accepted_tcb": list(settings.accepted_tcb),
                "url": f"http://{settings.host}:{settings.port}",
            }
        },
    )
    uvicorn.run(app(attestor), host=settings.host, port=settings.port, log_level="warning")


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="machine-readable")
@click.option("--last", default=10, show_default=True, help="decisions to show")
@_clear
def status_cmd(as_json: bool, last: int) -> None:
    """Cursor, waiting results, counts and the latest decisions, from the state file."""
    import os

    from verifier.settings import VerifierSettings

    # Only the state file is read: no market or node is needed.
    path = Path(os.environ.get("COMPUTENET_VERIFIER_STATE_FILE") or VerifierSettings.model_fields["state_file"].default)
    if not path.exists():
        raise click.ClickException(f"no state file at {path}: the verifier has not run here")
    state = json.loads(path.read_text(encoding="utf-8"))
    decisions = sorted(state["decisions"].items(), key=lambda kv: kv[1]["at"])[-last:]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "next_block": state["next_block"],
                    "waiting": len(state["waiting"]),
                    "counts": state.get("counts", {}),
                    "decisions": dict(decisions),
                },
                indent=2,
            )
        )
        return
    click.echo(f"cursor      next block {state['next_block']}, {len(state['waiting'])} results waiting")
    click.echo("counts      " + ", ".join(f"{k}={v}" for k, v in sorted(state.get("counts", {}).items())))
    click.echo("decisions:" + ("" if decisions else " none"))
    for key, decision in decisions:
        click.echo(f"  {key:<24} {decision['decision']}")
