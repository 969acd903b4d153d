"""`python -m facilitator`: serve the facilitator API (COMPUTENET_FACILITATOR_* settings)."""

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

log = logging.getLogger("facilitator")


@click.command()
def main() -> None:
    """Serve /supported, /verify and /settle for x402 `exact` payments."""
    import uvicorn
    from pydantic import ValidationError

    from computenet import logs
    from computenet.cli import settings_message
    from computenet.errors import ComputenetError
    from facilitator.service import build_facilitator, create_app
    from facilitator.settings import FacilitatorSettings

    try:
        settings = FacilitatorSettings()
        key = _private_key(settings.account)
        networks = settings.networks or [f"eip155:{_chain_id(settings.rpc_url)}"]
        market_roles = _market_roles(settings, key) if settings.market else None
    except (ValidationError, ComputenetError) as error:
        raise click.ClickException(settings_message(error, "COMPUTENET_FACILITATOR_", "facilitator")) from None
    logs.setup(settings.log_format, settings.log_level, "facilitator")
    jobs, routers, lifespan = market_roles or (None, (), None)
    app = create_app(build_facilitator(key, settings.rpc_url, networks), networks, jobs, routers, lifespan)
    what = f" and the job market {settings.market}" if settings.market else ""
    click.echo(f"facilitator for {', '.join(networks)}{what} on http://{settings.host}:{settings.port}", err=True)
    if settings.market:
        click.echo(
            f"job payments: terms tagged by {', '.join(settings.gateways)}"
            if settings.gateways
            else "job payments: all refused, no gateway is trusted (COMPUTENET_FACILITATOR_GATEWAYS)",
            err=True,
        )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


def _market_roles(settings, key: str) -> tuple:
    """Job payments, dispute arbitration (requests and the arbiter's own watch) and the refunder,
    for the market in the settings."""
    from contextlib import asynccontextmanager
    from pathlib import Path

    from web3 import Web3

    from computenet.connection import ConfigError
    from computenet.deployments import DeploymentNotFound
    from computenet.follow import JsonCursor
    from computenet.market import Market
    from computenet.store import StoreClient
    from computenet.web3calls import Sender
    from facilitator.jobs import JobSettlement
    from facilitator.refunds import Refunder
    from facilitator.settings import DEPLOYED
    from verifier.arbiter import Arbiter, router
    from verifier.reexecute import Reexecutor

    web3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 30}))
    sender = Sender(web3, key)
    deployed = settings.market == DEPLOYED
    try:
        market = Market.from_web3_deployments(web3, settings.rpc_url, "" if deployed else settings.market)
        if not market.is_facilitator(sender.address):
            raise ConfigError(f"{sender.address} is not a facilitator of the market {market.addresses['market']}")
    except (ConfigError, DeploymentNotFound):
        raise
    except Exception as error:
        raise ConfigError(f"no JobMarket at {settings.market} on {settings.rpc_url}: {error}") from None
    address = market.addresses["market"]
    jobs = JobSettlement(web3, sender, address, market.addresses["token"], settings.gateways)
    reexecutor = Reexecutor(StoreClient(settings.store_url), docker_host=settings.docker_host, limits=settings.limits())
    outputs = None
    if settings.outputs:  # replicas' results, for manifests whose comparator has a tolerance
        from computenet.outputs import OutputsClient

        outputs = OutputsClient(key, market.chain_id, settings.outputs, market.agent_of)
    arbiter = Arbiter(
        market,
        sender,
        Path(settings.audit_log),
        reexecutor,
        Path(settings.arbiter_state),
        settings.start_block,
        outputs=outputs,
    )
    refunder = Refunder(market, sender, JsonCursor(settings.refunder_state), settings.start_block)

    @asynccontextmanager
    async def lifespan(app):
        stop = threading.Event()
        threads = [
            threading.Thread(target=_poll, args=(name, role.run_once, stop), name=name, daemon=True)
            for name, role in (("refunder", refunder), ("arbiter", arbiter))
        ]
        for thread in threads:
            thread.start()
        yield
        stop.set()
        for thread in threads:
            # A ruling under way (a container run) is not cut short; the daemon thread ends with the process.
            thread.join(timeout=10)

    return jobs, (router(arbiter),), lifespan


def _private_key(alias: str) -> str:
    from computenet.connection import load_account

    key = load_account(alias).private_key
    return key if isinstance(key, str) else "0x" + bytes(key).hex()


def _chain_id(rpc_url: str) -> int:
    from web3 import Web3

    from computenet.connection import ConfigError

    try:
        return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 10})).eth.chain_id
    except Exception as error:
        raise ConfigError(f"no node at {rpc_url}: {error}") from None


def _poll(name: str, step: Callable[[], Any], stop: threading.Event, interval: float = 2.0) -> None:
    """Runs a background role's scan every `interval` seconds until `stop`; a node hiccup
    is logged and does not end the loop (each role's scan resumes where it stopped)."""
    while not stop.is_set():
        try:
            step()
        except Exception as error:
            log.warning(f"{name} scan failed", extra={"fields": {"error": str(error)}})
        stop.wait(interval)


if __name__ == "__main__":
    main(prog_name="python -m facilitator")
    sys.exit(0)
