"""Operator view of a running network: assets, jobs with their shards by state, keeper queues and
recent settlements, read from the chain (and the keepers' Redis for their queues).

    ape run status --network http://127.0.0.1:8545 [--redis redis://127.0.0.1:6379/0] \
        [--keepers keeper-1,keeper-2] [--jobs 10] [--recent 10]
"""

from collections import Counter

import click
from ape.cli import ConnectedProviderCommand, network_option
from rich.console import Console
from rich.table import Table

from computenet.cli import clear_errors, format_amount
from computenet.domain import ReplicaState
from computenet.events import JobFinished, ShardFinalized
from computenet.market import Market


@click.command(cls=ConnectedProviderCommand)
@network_option()
@click.option(
    "--redis", "redis_url", envvar="COMPUTENET_KEEPER_REDIS_URL", help="The keepers' Redis, for their queues."
)
@click.option(
    "--keepers", default="keeper", show_default=True, help="Keeper names (COMPUTENET_KEEPER_NAME), comma-separated."
)
@click.option("--jobs", "job_limit", type=int, default=10, show_default=True, help="The most recent jobs to list.")
@click.option("--recent", type=int, default=10, show_default=True, help="Settlements to list.")
@clear_errors
def cli(redis_url, keepers, job_limit, recent):
    """Assets, jobs, shards by state, keeper queues and recent settlements."""
    console = Console()
    if not console.is_terminal:  # piped or logged: full addresses rather than a terminal's width
        console = Console(width=220)
    market = Market.from_deployments()
    console.print(_assets(market))
    console.print(_jobs(market, job_limit))
    if redis_url:
        console.print(_queues(redis_url, [k.strip() for k in keepers.split(",") if k.strip()]))
    console.print(_settlements(market, recent))


def _assets(market: Market) -> Table:
    table = Table(
        "asset",
        "owner",
        "agent",
        "GPUs",
        "cores",
        "price/s",
        "stake",
        "open leases",
        "active",
        title="assets",
        title_justify="left",
    )
    for asset_id in range(1, int(market.assets.totalSupply()) + 1):
        asset = market.asset(asset_id)
        spec = asset.spec
        table.add_row(
            str(asset.id),
            asset.owner,
            asset.agent,
            f"{spec.gpu_count} × {spec.vram_mib} MiB",
            str(spec.cpu_cores),
            format_amount(spec.price),
            format_amount(asset.stake.amount),
            str(asset.stake.open_leases),
            "yes" if spec.active else "no",
        )
    return table


def _jobs(market: Market, limit: int) -> Table:
    states = [s.name.lower() for s in ReplicaState]
    table = Table("job", "client", "shards", "escrow", *states, title="jobs (shards by state)", title_justify="left")
    count = int(market.market.job_count())
    for job_id in range(count, max(0, count - limit), -1):
        job = market.job(job_id)
        shards = Counter(shard.state.name.lower() for shard in market.shards(job_id, roots=False))
        table.add_row(
            str(job_id),
            job.client,
            str(job.requirements.shard_count),
            format_amount(job.escrow),
            *[str(shards[s]) for s in states],
        )
    return table


def _queues(redis_url: str, names: list[str]) -> Table:
    import redis

    client = redis.Redis.from_url(redis_url)
    table = Table("keeper", "work queue", "confirm queue", title="keeper queues", title_justify="left")
    for name in names:
        table.add_row(name, str(client.llen(f"computenet-{name}")), str(client.llen(f"computenet-{name}-confirm")))
    return table


def _settlements(market: Market, recent: int) -> Table:
    table = Table("block", "job", "shard", "what", "to", "amount", title="recent settlements", title_justify="left")
    events = [e for e in market.events(market.deployment_block) if isinstance(e, (ShardFinalized, JobFinished))]
    for event in events[-recent:]:
        if isinstance(event, ShardFinalized):
            table.add_row(
                str(event.block),
                str(event.job),
                str(event.shard),
                "provider paid",
                event.provider,
                f"{format_amount(event.payment)} (+{format_amount(event.keeper_fee)} keeper, "
                f"{format_amount(event.protocol_fee)} protocol)",
            )
        else:
            table.add_row(
                str(event.block), str(event.job), "", "client refunded", event.client, format_amount(event.refund)
            )
    return table
