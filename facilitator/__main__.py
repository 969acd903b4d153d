"""`python -m facilitator`: serve the facilitator API (COMPUTENET_FACILITATOR_* settings)."""

import sys

import click


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
    except (ValidationError, ComputenetError) as error:
        raise click.ClickException(settings_message(error, "COMPUTENET_FACILITATOR_", "facilitator")) from None
    logs.setup(settings.log_format, settings.log_level, "facilitator")
    app = create_app(build_facilitator(key, settings.rpc_url, networks), networks)
    click.echo(f"facilitator for {', '.join(networks)} on http://{settings.host}:{settings.port}", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


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


if __name__ == "__main__":
    main(prog_name="python -m facilitator")
    sys.exit(0)
