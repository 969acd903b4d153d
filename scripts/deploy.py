"""Deploys computenet and records its addresses in deployments.json, under the network as it
was named (less the provider), with the chain id, block and node URL, so every role finds it
under that name or any other name of the same chain.

anvil &   # a node that outlives the command
ape run deploy --network http://127.0.0.1:8545 --account TEST::0
ape run deploy --network ethereum:sepolia:alchemy --account deployer --token 0x1c7D...USDC
"""

import dataclasses

import click
from ape import chain, networks, project
from ape.cli import ConnectedProviderCommand, account_option, network_option

from computenet import deployments
from computenet.cli import clear_errors, fail, is_local, network_key
from computenet.deploy import DEFAULT_MIN_KEEPER_BOND, DEFAULT_PARAMETERS, DEFAULT_UNBONDING_DELAY, deploy_stack


@click.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.option(
    "--token", help="Payment token address (USDC). Required off local chains; locally a TestToken is deployed."
)
@click.option("--treasury", help="Receives protocol fees (default: the deploying account).")
@click.option("--facilitator", multiple=True, help="Account allowed to resolve disputes (repeatable).")
@click.option(
    "--unbonding-delay",
    type=int,
    default=DEFAULT_UNBONDING_DELAY,
    show_default=True,
    help="Seconds before stakes and keeper bonds can be withdrawn.",
)
@click.option(
    "--min-keeper-bond",
    type=int,
    default=DEFAULT_MIN_KEEPER_BOND,
    show_default=True,
    help="Keeper bond, token base units.",
)
@click.option(
    "--challenge-window",
    type=int,
    default=DEFAULT_PARAMETERS.challenge_window,
    show_default=True,
    help="Seconds a result can be challenged before it is paid (60 to 7 days).",
)
@click.option(
    "--lease-grace",
    type=int,
    default=DEFAULT_PARAMETERS.lease_grace,
    show_default=True,
    help="Seconds every lease allows beyond the job's GPU-seconds (image, inputs, submission).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a public network.")
@clear_errors
def cli(
    ecosystem,
    network,
    account,
    token,
    treasury,
    facilitator,
    unbonding_delay,
    min_keeper_bond,
    challenge_window,
    lease_grace,
    yes,
):
    """Deploy TestToken (local only), KeeperRegistry, BatchRelay, ComputeAsset, JobMarket, DisputeCourt,
    ModelRegistry and AttestationRegistry."""
    launched = throwaway_node(networks.provider)
    if launched:
        fail(launched)
    local = is_local(chain.chain_id)
    if token is None and not local:
        fail(f"{network_key(ecosystem, network)} is not a local chain: pass --token with the USDC address")
    if not local and not yes:
        click.confirm(f"Deploy computenet to {network_key(ecosystem, network)} from {account.address}?", abort=True)
    token_contract = project.TestToken.at(token) if token else None
    click.echo(f"deploying to {network_key(ecosystem, network)} (chain {chain.chain_id}) from {account.address}")
    stack = deploy_stack(
        project,
        account,
        treasury=treasury,
        token=token_contract,
        min_keeper_bond=min_keeper_bond,
        unbonding_delay=unbonding_delay,
        parameters=dataclasses.replace(DEFAULT_PARAMETERS, challenge_window=challenge_window, lease_grace=lease_grace),
    )
    for address in facilitator:
        stack.market.set_facilitator(address, True, sender=account)
        click.echo(f"facilitator {address} enabled")
    record = stack.addresses() | {"chain_id": chain.chain_id, "block": chain.blocks.head.number}
    uri = getattr(networks.provider, "uri", None)
    if uri:
        record["rpc"] = uri
    file = deployments.save(given_network(networks.provider, ecosystem, network), record)
    for role, address in stack.addresses().items():
        click.echo(f"{role:8} {address}")
    click.echo(f"recorded in {file}")


def given_network(provider, ecosystem, network) -> str:
    """The record key: the network as the user named it, less the provider ("ethereum:local",
    "ethereum:sepolia"), or the node URL when a URL was given (ape calls that "ethereum:custom")."""
    choice = str(getattr(provider, "network_choice", "") or "")
    return deployments.network_name(choice) if "://" in choice else network_key(ecosystem, network)


def throwaway_node(provider) -> str | None:
    """Why not to deploy when ape started the node itself (no node answered at the configured
    host, or the host is "auto"): ape-foundry keeps the anvil it launched in `process` (None
    when it joined a running one) and stops it when the command exits, taking the contracts."""
    if getattr(provider, "process", None) is None:
        return None
    return (
        f"no node was running, so ape started a throwaway anvil at {provider.uri} that stops when this "
        "command exits, and the deployment with it. Start a node first (`anvil`), then deploy to it: "
        "ape run deploy --network http://127.0.0.1:8545"
    )
