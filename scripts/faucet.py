"""Mints test tokens on a local chain.

ape run faucet --network ... --account TEST::1 100000
"""

import click
from ape import chain
from ape.cli import ConnectedProviderCommand, account_option, network_option

from computenet.cli import clear_errors, fail, format_amount, is_local, parse_amount
from computenet.market import Market, typed_reverts


@click.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.argument("amount")
@click.option("--to", "receiver", help="Who gets the tokens (default: the account).")
@clear_errors
def cli(account, amount, receiver):
    """Mint AMOUNT whole test tokens (local chains only)."""
    if not is_local(chain.chain_id):
        fail(f"the faucet exists only on local chains; chain {chain.chain_id} is not one")
    market = Market.from_deployments()
    receiver = receiver or account.address
    base_units = parse_amount(amount)
    limit = market.token.FAUCET_LIMIT()
    if base_units > limit:
        fail(f"at most {format_amount(limit)} tokens per faucet call")
    with typed_reverts():
        market.token.faucet(receiver, base_units, sender=account)
    click.echo(f"{receiver} now holds {format_amount(market.token.balanceOf(receiver))} {market.token.symbol()}")
