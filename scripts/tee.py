"""The tee level's registry (docs/tee.md): name or remove attestors (the registry's owner), set
the short window, and show an asset's verdict.

    ape run tee attestor --network ... --account owner 0x<attestor> [--remove]
    ape run tee window --network ... --account owner 60
    ape run tee show --network ... <asset>
"""

import datetime

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option

from computenet.cli import clear_errors
from computenet.domain import TCB_LEVELS, TeeKind
from computenet.errors import revert_error
from computenet.market import Market, typed_reverts


@click.group()
def cli():
    """Attestors, the short window, and assets' TEE verdicts."""


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.argument("address")
@click.option("--remove", is_flag=True, help="Remove the attestor: its verdicts stop counting at once.")
@clear_errors
def attestor(account, address, remove):
    """Name ADDRESS an attestor (the registry's owner only)."""
    registry = owned_registry(account)
    with typed_reverts():
        registry.set_attestor(address, not remove, sender=account)
    click.echo(f"{address} {'removed as' if remove else 'named'} attestor of {registry.address}")


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.argument("seconds", type=int)
@clear_errors
def window(account, seconds):
    """Set how long an attested result stays open to disputes (the registry's owner only)."""
    registry = owned_registry(account)
    with typed_reverts():
        registry.set_short_window(seconds, sender=account)
    click.echo(f"attested results stay open {seconds} s")


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@click.argument("asset", type=int)
@clear_errors
def show(asset):
    """Show ASSET's latest TEE verdict and whether it holds now."""
    market = Market.from_deployments()
    verdict = market.tee_verdict(asset)
    if not verdict.recorded:
        raise click.ClickException(f"asset {asset} has no TEE verdict")
    held = asset in market.attested([asset])

    def when(t: int) -> str:
        return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    click.echo(f"asset {asset}: {'attested' if held else 'not attested now'}")
    click.echo(f"  kind        {TeeKind(verdict.kind).name.lower().replace('_', '-')}")
    click.echo(f"  tcb         {TCB_LEVELS[verdict.tcb]}")
    click.echo(f"  measurement keccak 0x{verdict.measurement_hash.hex()}")
    click.echo(f"  evidence    0x{verdict.evidence_hash.hex()}")
    click.echo(f"  agent       {verdict.agent}")
    click.echo(f"  attestor    {verdict.attestor}")
    click.echo(f"  valid       {when(verdict.valid_from)} to {when(verdict.valid_until)}")


def owned_registry(account):
    """The registry, once `account` is its owner (refused before anything is sent otherwise)."""
    registry = Market.from_deployments().attestations
    if str(registry.owner()).lower() != str(account.address).lower():
        raise revert_error("ownable: caller is not the owner", preflight=True)
    return registry
