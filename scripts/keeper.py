"""Keeper commands: the bot (settings from COMPUTENET_KEEPER_* variables; README lists them)
and the keeper's own bond and fees.

    ape run keeper start  --network http://127.0.0.1:8545 --workers 2   # listener + workers
    ape run keeper listen --network ...                                 # the listener alone
    ape run keeper worker --network ...                                 # one more worker
    ape run keeper status --network ...                                 # cursor, queue, last actions

    ape run keeper bond     --network ... --account keeper 100   # register, bonding 100 tokens
    ape run keeper info     --network ... --account keeper       # id, bond, exit, fee credits
    ape run keeper unbond   --network ... --account keeper       # stop assigning; the delay starts
    ape run keeper withdraw --network ... --account keeper       # fee credits, and the bond once unbonded

With no COMPUTENET_KEEPER_ACCOUNT the keeper runs dry: it logs what it would send.
"""

import os

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option

from computenet.cli import clear_errors, format_amount, parse_amount
from computenet.market import Market
from keepers.main import commands

NETWORK = os.environ.get("COMPUTENET_KEEPER_NETWORK") or "http://127.0.0.1:8545"

cli = commands(command_kwargs={"cls": ConnectedProviderCommand}, options=[network_option(default=NETWORK)])


def keeper_command(name: str):
    """A command on the account's own keeper record: --network, --account."""

    def wrap(function):
        function = clear_errors(function)
        function = account_option()(function)
        function = network_option(default=NETWORK)(function)
        return cli.command(name, cls=ConnectedProviderCommand)(function)

    return wrap


@keeper_command("bond")
@click.argument("amount")
def bond(account, amount):
    """Register the account as a keeper, bonding AMOUNT tokens (at least the registry's minimum).
    A bond cannot be topped up: to change it, unbond, withdraw and bond again."""
    market = Market.from_deployments()
    base = parse_amount(amount)
    record = market.keeper(account)
    if record.id:
        raise click.ClickException(
            f"{account.address} is already keeper {record.id} with a bond of {format_amount(record.bond)}; "
            "a bond cannot be topped up: unbond, withdraw and bond again"
        )
    minimum = int(market.keepers.min_bond())
    if base < minimum:
        raise click.ClickException(f"a bond of {amount} is below the registry's minimum of {format_amount(minimum)}")
    keeper_id = market.register_keeper(base, sender=account)
    click.echo(f"keeper {keeper_id} registered: {account.address} bonds {format_amount(base)}")


@keeper_command("unbond")
def unbond(account):
    """Stop assigning work and start the unbonding delay; `withdraw` pays the bond after it."""
    market = Market.from_deployments()
    record = market.keeper(account)
    if record.exiting:
        raise click.ClickException(
            f"keeper {record.id} is already unbonding; its bond can be withdrawn from {record.exit_at} (unix time)"
        )
    exit_at = market.request_keeper_exit(sender=account)
    click.echo(
        f"keeper {record.id}: stopped assigning; bond {format_amount(record.bond)} withdrawable from {exit_at} (unix time)"
    )


@keeper_command("withdraw")
def withdraw(account):
    """Withdraw the keeper fees credited in the market, and the bond once its unbonding delay
    has passed."""
    market = Market.from_deployments()
    record = market.keeper(account)
    bond_ready = record.exiting and market.now() >= record.exit_at
    credits = market.credits(account)
    if not credits and not bond_ready:
        if record.exiting:
            bond_state = f"the bond is unbonding until {record.exit_at} (unix time)"
        elif record.id:
            bond_state = "the bond stays until `ape run keeper unbond` and its delay"
        else:
            bond_state = "the account is not a keeper"
        raise click.ClickException(f"nothing to withdraw: no fee credits in the market, and {bond_state}")
    if credits:
        paid = market.withdraw(account)
        click.echo(f"fees: {format_amount(paid)} paid to {account.address}")
    if bond_ready:
        paid = market.withdraw_keeper_bond(sender=account)
        click.echo(f"bond: {format_amount(paid)} paid to {account.address}; keeper {record.id} deregistered")
    elif record.exiting:
        click.echo(f"bond: {format_amount(record.bond)} unbonding until {record.exit_at} (unix time)")


@keeper_command("info")
@click.option("--keeper", "address", help="Show this keeper instead of the account.")
def info(account, address):
    """Show the keeper's id, bond, exit and the fee credits it may withdraw."""
    market = Market.from_deployments()
    who = address or account.address
    record = market.keeper(who)
    credits = format_amount(market.credits(who))
    minimum = int(market.keepers.min_bond())
    if not record.id:
        click.echo(f"{who} is not a keeper (minimum bond {format_amount(minimum)}); credits {credits}")
        return
    if record.exiting:
        state = "unbonding" if market.now() < record.exit_at else "unbonded, bond withdrawable"
        state += f" (exit at {record.exit_at})"
    elif record.bond < minimum:
        state = f"inactive: bond below the minimum of {format_amount(minimum)}"
    else:
        state = "active"
    click.echo(f"keeper {record.id}: {who}")
    click.echo(f"  bond     {format_amount(record.bond)}")
    click.echo(f"  state    {state}")
    click.echo(f"  credits  {credits}")
