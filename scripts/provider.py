"""Provider commands: register GPU nodes as ERC-7829 assets, stake, price, pause, list,
withdraw payments.

    ape run provider register --network ... --account provider --agent 0xAgent \
        --gpu-model 1 --vram-mib 81920 --gpus 8 --cpu-cores 64 --memory-mib 491520 --disk-mib 3500000 \
        --region 276 --price 0.0004 --days 30 \
        --endpoint https://node1.example.com:8701
    ape run provider stake --network ... --account provider 1 500
    ape run provider set-endpoint --network ... --account provider 1 https://node1.example.com:8701
    ape run provider list --network ... --account provider
    ape run provider withdraw --network ... --account provider
"""

import json
from pathlib import Path
from urllib.parse import urlsplit

import click
from ape import chain
from ape.cli import ConnectedProviderCommand, account_option, network_option
from eth_utils import keccak

from agent import machine
from computenet.cli import clear_errors, format_amount, parse_amount, pay_credits
from computenet.domain import Spec
from computenet.market import MAX_ENDPOINT_BYTES, Market, typed_reverts

DAY = 86_400


@click.group()
def cli():
    """Manage compute assets."""


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.option("--agent", required=True, help="Address of the node agent's signing key.")
@click.option("--gpu-model", type=int, default=0, show_default=True, help="GPU model id (0 for CPU-only).")
@click.option("--vram-mib", type=int, default=0, show_default=True, help="Memory per GPU, MiB.")
@click.option("--gpus", type=int, default=0, show_default=True, help="GPUs offered.")
@click.option("--cpu-cores", type=int, required=True, help="CPU cores offered.")
@click.option("--memory-mib", type=int, help="Memory its leases share, MiB (default: this machine's).")
@click.option(
    "--disk-mib", type=int, help="Disk its leases share, MiB (default: what is free in the current folder here)."
)
@click.option("--region", type=int, default=0, show_default=True, help="ISO 3166-1 numeric country code.")
@click.option("--price", required=True, help="Price per GPU-second (per second for CPU-only), in tokens, e.g. 0.0004.")
@click.option("--days", type=int, default=30, show_default=True, help="Listing length in days.")
@click.option(
    "--max-leases", type=int, help="Leases held at once, each until its result (default: one per GPU, at least 1)."
)
@click.option(
    "--spec-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Spec and attestation document; its keccak256 becomes the ERC-7829 commit.",
)
@click.option("--stake", "stake_amount", help="Also stake this many tokens.")
@click.option(
    "--endpoint",
    default="",
    help="Base URL of the node agent's server (heartbeats, outputs), e.g. https://node1.example.com:8701.",
)
@clear_errors
def register(
    account,
    agent,
    gpu_model,
    vram_mib,
    gpus,
    cpu_cores,
    memory_mib,
    disk_mib,
    region,
    price,
    days,
    max_leases,
    spec_file,
    stake_amount,
    endpoint,
):
    """Register a node and mint its asset."""
    if endpoint:
        check_endpoint(endpoint)
    if memory_mib is None or disk_mib is None:
        here = machine.probe(Path.cwd())
        memory_mib = here.memory_mib if memory_mib is None else memory_mib
        disk_mib = here.disk_mib if disk_mib is None else disk_mib
    market = Market.from_deployments()
    spec = Spec(
        gpu_model=gpu_model,
        vram_mib=vram_mib,
        gpu_count=gpus,
        cpu_cores=cpu_cores,
        region=region,
        price=parse_amount(price),
        expire=chain.pending_timestamp + days * DAY,
        max_leases=max_leases or max(gpus, 1),
        memory_mib=memory_mib,
        disk_mib=disk_mib,
    )
    commit = keccak(spec_file.read_bytes()) if spec_file else keccak(json.dumps(spec.__dict__, sort_keys=True).encode())
    asset_id = market.register_asset(spec, agent, commit, sender=account, endpoint=endpoint)
    click.echo(f"asset {asset_id} registered to {account.address} (agent {agent}, size {spec.size_mib} MiB)")
    if endpoint:
        click.echo(f"asset {asset_id} endpoint: {endpoint}")
    if stake_amount:
        market.add_stake(asset_id, parse_amount(stake_amount), sender=account)
        click.echo(f"asset {asset_id} stake: {format_amount(market.stake(asset_id).amount)}")


def check_endpoint(url: str) -> None:
    """Refuses what is not an http(s) base URL the asset registry can hold."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.ClickException(f"endpoint {url!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise click.ClickException(f"endpoint {url!r}: a base URL has no query or fragment")
    if len(url.encode()) > MAX_ENDPOINT_BYTES:
        raise click.ClickException(f"endpoint {url!r} is longer than {MAX_ENDPOINT_BYTES} bytes")


def asset_command(name: str | None = None):
    """A command on one of the account's assets: --network, --account, then ASSET."""

    def wrap(function):
        function = clear_errors(function)
        function = click.argument("asset", type=int)(function)
        function = account_option()(function)
        function = network_option()(function)
        return cli.command(name, cls=ConnectedProviderCommand)(function)

    return wrap


@asset_command()
@click.argument("amount")
def stake(account, asset, amount):
    """Add AMOUNT tokens to ASSET's stake."""
    market = Market.from_deployments()
    market.add_stake(asset, parse_amount(amount), sender=account)
    click.echo(f"asset {asset} stake: {format_amount(market.stake(asset).amount)}")


@asset_command()
@click.argument("amount")
def unstake(account, asset, amount):
    """Ask for AMOUNT of ASSET's stake back (starts the unbonding delay)."""
    market = Market.from_deployments()
    with typed_reverts():
        market.assets.request_unstake(asset, parse_amount(amount), sender=account)
    click.echo(f"asset {asset}: {amount} unbonding until {market.stake(asset).unbond_at} (unix time)")


@asset_command("withdraw-stake")
def withdraw_stake(account, asset):
    """Withdraw ASSET's unbonded stake (no open leases, delay passed)."""
    market = Market.from_deployments()
    with typed_reverts():
        receipt = market.assets.withdraw_stake(asset, sender=account)
    paid = receipt.events.filter(market.assets.StakeWithdrawn)[0].amount
    click.echo(f"asset {asset}: {format_amount(paid)} paid to {account.address}")


@asset_command()
@click.argument("price")
def price(account, asset, price):
    """Set ASSET's price per GPU-second to PRICE tokens (future leases)."""
    market = Market.from_deployments()
    with typed_reverts():
        market.assets.set_price(asset, parse_amount(price), sender=account)
    click.echo(f"asset {asset} price: {price} per GPU-second")


@asset_command()
@click.argument("max_leases", type=int)
def capacity(account, asset, max_leases):
    """Let ASSET hold MAX_LEASES leases at once."""
    market = Market.from_deployments()
    with typed_reverts():
        market.assets.set_capacity(asset, max_leases, sender=account)
    click.echo(f"asset {asset} holds up to {max_leases} lease(s) at once")


@asset_command()
def pause(account, asset):
    """Stop new leases on ASSET."""
    market = Market.from_deployments()
    with typed_reverts():
        market.assets.pause(asset, sender=account)
    click.echo(f"asset {asset} paused")


@asset_command()
def resume(account, asset):
    """Open ASSET to new leases again."""
    market = Market.from_deployments()
    with typed_reverts():
        market.assets.resume(asset, sender=account)
    click.echo(f"asset {asset} resumed")


@asset_command("set-endpoint")
@click.argument("url")
def set_endpoint(account, asset, url):
    """Set the base URL where ASSET's agent serves heartbeats and outputs to URL."""
    check_endpoint(url)
    market = Market.from_deployments()
    market.set_endpoint(asset, url, sender=account)
    click.echo(f"asset {asset} endpoint: {market.endpoint(asset)}")


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.option("--to", "receiver", help="Pay to this address instead of the account.")
@clear_errors
def withdraw(account, receiver):
    """Withdraw the payments (and dispute bonds and rewards) credited to the account in the market."""
    pay_credits(Market.from_deployments(), account, receiver)


@cli.command("list", cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.option("--owner", help="List this owner's assets instead of the account's.")
@clear_errors
def list_assets(account, owner):
    """List the account's assets with spec, price, stake and state."""
    market = Market.from_deployments()
    owned = market.assets_of(owner or account.address)
    if not owned:
        click.echo("no assets")
        return
    click.echo(
        f"{'asset':>5} {'gpus':>4} {'vram MiB':>9} {'cores':>5} {'mem MiB':>8} {'disk MiB':>9} {'price/GPU-s':>12} {'stake':>12} {'leases':>6} {'state':>7} "
        f"{'expires':>10} endpoint"
    )
    for a in owned:
        state = "active" if a.spec.active else "paused"
        if a.spec.expire < chain.pending_timestamp:
            state = "expired"
        click.echo(
            f"{a.id:>5} {a.spec.gpu_count:>4} {a.spec.vram_mib:>9} {a.spec.cpu_cores:>5} "
            f"{a.spec.memory_mib:>8} {a.spec.disk_mib:>9} "
            f"{format_amount(a.spec.price):>12} {format_amount(a.stake.amount):>12} {a.stake.open_leases:>6} {state:>7} {a.spec.expire:>10} {market.endpoint(a.id) or '-'}"
        )
