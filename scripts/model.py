"""ZK models (docs/zk.md): register a model built by `make zk` with its verifier, and write a
zk job's input files from the model's samples.

    ape run model register --network ... --account anyone .zk/models/blobs   # deploys its verifier
    ape run model show --network ... 0x<model id>
    ape run model inputs .zk/models/blobs --shards 4 -o job-inputs/          # zk/<shard>.bin files
"""

import json
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option

from computenet import zk
from computenet.cli import clear_errors
from computenet.deploy import deploy_verifier
from computenet.market import Market


@click.group()
def cli():
    """Register zk models and prepare their jobs' inputs."""


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@clear_errors
def register(account, folder):
    """Deploy FOLDER's verifier (built by `make zk`) and register the model; prints its id."""
    artifacts = load(folder)
    market = Market.from_deployments()
    known = market.zk_model(market.zk_model_id(artifacts))
    if known.registered:
        click.echo(f"model {artifacts.name} already registered: 0x{market.zk_model_id(artifacts).hex()}")
        click.echo(f"verifier {known.verifier}")
        return
    click.echo(f"deploying {artifacts.name}'s verifier ({len(artifacts.verifier_initcode())} bytes of init code)")
    verifier = str(deploy_verifier(artifacts, account).address)
    model = market.register_model(
        artifacts.artifact_hash, verifier, artifacts.input_words, artifacts.output_words, sender=account
    )
    click.echo(f"model {artifacts.name} registered: 0x{model.hex()}")
    click.echo(f"verifier {verifier}; {artifacts.input_words} input and {artifacts.output_words} output words")


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@click.argument("model_id")
@clear_errors
def show(model_id):
    """Show a registered model."""
    model = Market.from_deployments().zk_model(zk.parse_model_id(model_id))
    if not model.registered:
        raise click.ClickException(f"no model {model_id} is registered")
    click.echo(json.dumps({**model.__dict__, "artifact_hash": "0x" + model.artifact_hash.hex()}, indent=2))


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--shards", type=int, default=1, show_default=True, help="One sample per shard, in order.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True)
def inputs(folder, shards, output):
    """Write zk/<shard>.bin for SHARDS of FOLDER's samples into OUTPUT (a job's input folder)."""
    artifacts = load(folder)
    samples = artifacts.samples()
    if not 0 < shards <= len(samples):
        raise click.ClickException(f"--shards must be from 1 to {len(samples)} (the model's samples)")
    for shard, sample in enumerate(samples[:shards]):
        path = output / zk.input_path(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(zk.encode_words(zk.quantize(sample["x"], artifacts.input_scale)))
        click.echo(f"{path}: sample {shard} (label {sample['label']})")


def load(folder: Path) -> zk.ModelArtifacts:
    try:
        return zk.ModelArtifacts.load(folder)
    except zk.ZkError as err:
        raise click.ClickException(str(err)) from None
