"""Client commands: post a job from its manifest, follow it, cancel shards.

    ape run job post --network ... --account client manifest.json --shards 4 --min-vram-mib 16384 \
        --gpus 1 --max-price 0.0005 --max-gpu-seconds 600 --hours 2
    ape run job status --network ... 7
    ape run job cancel --network ... --account client 7 3
"""

from pathlib import Path

import click
from ape import chain
from ape.cli import ConnectedProviderCommand, account_option, network_option

from computenet.cli import clear_errors, format_amount, parse_amount
from computenet.domain import Requirements, Verification
from computenet.errors import ContractRevert, ManifestError
from computenet.manifest import manifest_hash, parse_manifest
from computenet.market import Market

HOUR = 3_600


@click.group()
def cli():
    """Post and follow jobs."""


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--shards", type=int, default=1, show_default=True)
@click.option("--replication", type=int, default=1, show_default=True, help="Agents per shard; >1 means REPLICATED verification.")
@click.option("--spot-check", is_flag=True, help="Verifiers re-execute samples (single replica).")
@click.option("--min-vram-mib", type=int, default=0, show_default=True)
@click.option("--gpus", type=int, default=0, show_default=True, help="GPUs per shard (0: CPU work).")
@click.option("--max-price", required=True, help="Highest price per GPU-second accepted, in tokens.")
@click.option("--max-gpu-seconds", type=int, required=True, help="Most GPU-seconds paid per shard.")
@click.option("--hours", type=float, default=24, show_default=True, help="Deadline, hours from now.")
@clear_errors
def post(account, manifest, shards, replication, spot_check, min_vram_mib, gpus, max_price, max_gpu_seconds, hours):
    """Post a job for MANIFEST (a JSON manifest); its budget is escrowed."""
    try:
        parsed = parse_manifest(manifest.read_bytes())
    except ManifestError as err:
        raise click.ClickException(f"{manifest}: {err}") from None
    if replication > 1:
        mode = Verification.REPLICATED
    else:
        mode = Verification.SPOT_CHECK if spot_check else Verification.OPTIMISTIC
    req = Requirements(
        min_vram_mib=min_vram_mib,
        gpu_count=gpus,
        max_price=parse_amount(max_price),
        max_gpu_seconds=max_gpu_seconds,
        deadline=chain.pending_timestamp + int(hours * HOUR),
        shard_count=shards,
        replication=replication,
        verification=mode,
    )
    market = Market.from_deployments()
    job_id = market.post_job(manifest_hash(parsed), req, sender=account)
    job = market.job(job_id)
    click.echo(f"job {job_id} posted: {shards} shard(s) × {replication}, budget {format_amount(job.escrow)} escrowed")
    click.echo(f"manifest hash 0x{job.manifest_hash.hex()}")


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@click.argument("job_id", type=int)
@clear_errors
def status(job_id):
    """Show JOB_ID's shards and replicas."""
    market = Market.from_deployments()
    job = market.job(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    req = job.requirements
    click.echo(
        f"job {job_id} by {job.client}: {req.shard_count} shard(s) × {req.replication}, "
        f"escrow {format_amount(job.escrow)}, {job.unfinished} unfinished, deadline {req.deadline}"
    )
    for shard in market.shards(job_id):
        replicas = ", ".join(
            f"r{r.index}:{r.state.name.lower()}" + (f"@asset{r.asset}" if r.asset else "")
            for r in shard.replicas
        )
        click.echo(f"  shard {shard.index:>4} {shard.state.name.lower():>10}  {replicas}")


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.argument("job_id", type=int)
@click.argument("shards", type=int, nargs=-1)
@clear_errors
def cancel(account, job_id, shards):
    """Cancel SHARDS of JOB_ID (default: every shard that can be)."""
    market = Market.from_deployments()
    job = market.job(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    targets = shards or range(job.requirements.shard_count)
    cancelled = 0
    for shard in targets:
        try:
            market.cancel(job_id, shard, sender=account)
            cancelled += 1
        except ContractRevert as err:  # one shard's refusal must not stop the rest
            if shards:
                raise
            click.echo(f"  shard {shard}: {err}")
    click.echo(f"job {job_id}: {cancelled} shard(s) cancelled; credits now {format_amount(market.credits(account))}")
    if cancelled == 0:
        raise click.ClickException(f"no shard of job {job_id} could be cancelled")
