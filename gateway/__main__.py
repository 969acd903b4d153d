"""`python -m gateway`: serve the job gateway (COMPUTENET_GATEWAY_* settings)."""

import sys

import click


@click.command()
def main() -> None:
    """Serve POST /jobs (paid with x402), GET /jobs/{id} and the dApp at /app/."""
    import uvicorn
    from eth_account import Account
    from pydantic import ValidationError
    from web3 import Web3

    from computenet import logs
    from computenet.cli import settings_message
    from computenet.connection import ConfigError, load_account
    from computenet.deployments import DeploymentNotFound
    from computenet.market import Market
    from computenet.store import StoreClient
    from gateway.app import Chain, create_app
    from gateway.settings import GatewaySettings

    try:
        settings = GatewaySettings()
        key = load_account(settings.account).private_key
        web3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 30}))
        try:
            chain = Chain(web3, Market.from_web3_deployments(web3, settings.rpc_url, settings.market))
        except DeploymentNotFound:
            raise
        except Exception as error:
            where = settings.market or "the recorded deployment"
            raise ConfigError(f"no JobMarket at {where} on {settings.rpc_url}: {error}") from None
    except (ValidationError, ConfigError, DeploymentNotFound) as error:
        raise click.ClickException(settings_message(error, "COMPUTENET_GATEWAY_", "gateway")) from None
    logs.setup(settings.log_format, settings.log_level, "gateway")
    network = settings.network or f"eip155:{chain.chain_id}"
    store = StoreClient(settings.store_url) if settings.store_url else None
    app = create_app(
        chain,
        settings.facilitator_url,
        network,
        key,
        store=store,
        outputs=settings.outputs_map(),
        public_rpc_url=settings.public_rpc_url,
        dapp_dir=settings.dapp_dir,
    )
    here = f"http://{settings.host}:{settings.port}"
    click.echo(f"job gateway {Account.from_key(key).address} for {network} on {here}", err=True)
    click.echo(f"dApp on {here}/app/", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main(prog_name="python -m gateway")
    sys.exit(0)
