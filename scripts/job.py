"""Client commands: post a job from its manifest, follow it, cancel shards.

    ape run job post --network ... --account client manifest.json --shards 4 --min-vram-mib 16384 \
        --gpus 1 --max-price 0.0005 --max-gpu-seconds 600 --hours 2
    ape run job post ... manifest.json --shards 4 --verification zk --model .zk/models/blobs  # proven (docs/zk.md)
    ape run job status --network ... 7
    ape run job cancel --network ... --account client 7 3
    ape run job outputs --network ... --account client 7 3 --to results/   # fetched and verified
    ape run job challenge --network ... --account anyone 7 3               # posts the challenge bond
    ape run job dispute --network ... 7 3
    ape run job withdraw --network ... --account client                    # refunds and credits
    ape run job pipeline --network ... --account client pipeline.toml --store URL  # stages in order
"""

from pathlib import Path

import click
from ape import chain
from ape.cli import ConnectedProviderCommand, account_option, network_option

from computenet import zk
from computenet.cli import clear_errors, format_amount, parse_amount, pay_credits, refusal_line
from computenet.domain import ReplicaState, Requirements, Verification
from computenet.errors import ContractRevert, ManifestError
from computenet.manifest import build_manifest, canonical_json, manifest_hash, parse_manifest, with_stores
from computenet.market import Market
from computenet.waiting import shard_waiting

HOUR = 3_600


@click.group()
def cli():
    """Post and follow jobs."""


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--shards", type=int, default=1, show_default=True)
@click.option(
    "--replication", type=int, default=1, show_default=True, help="Agents per shard; >1 means REPLICATED verification."
)
@click.option("--spot-check", is_flag=True, help="Verifiers re-execute samples (single replica).")
@click.option(
    "--verification",
    type=click.Choice(["optimistic", "spot-check", "replicated", "zk", "tee"]),
    help="How results are checked (default: from --replication and --spot-check). zk: each shard's "
    "result carries a proof the chain checks, final at once; needs --model and the inputs zk/<shard>.bin. "
    "tee: only assets with a current TEE attestation run it; a result whose evidence an attestor "
    "verified is final after the short window (docs/tee.md).",
)
@click.option(
    "--model",
    help="zk: the model, as its id or as its folder once `ape run model register` has run on this chain.",
)
@click.option("--min-vram-mib", type=int, default=0, show_default=True)
@click.option("--gpus", type=int, default=0, show_default=True, help="GPUs per shard (0: CPU work).")
@click.option("--max-price", required=True, help="Highest price per GPU-second accepted, in tokens.")
@click.option("--max-gpu-seconds", type=int, required=True, help="Most GPU-seconds paid per shard.")
@click.option("--cpu-cores", type=int, default=1, show_default=True, help="CPU cores each lease holds.")
@click.option("--memory-mib", type=int, default=1024, show_default=True, help="Memory each lease holds, MiB.")
@click.option(
    "--disk-mib", type=int, default=1024, show_default=True, help="Disk each lease may write (outputs, /tmp), MiB."
)
@click.option("--hours", type=float, default=24, show_default=True, help="Deadline, hours from now.")
@click.option(
    "--store",
    "stores",
    multiple=True,
    envvar="COMPUTENET_STORE_URL",
    help="Content store to upload the manifest and inputs to (agents fetch them there). Repeat it, or give a "
    "comma-separated list, for mirrors: each gets everything, and the manifest lists them (`stores`).",
)
@click.option(
    "--inputs",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder holding the manifest's input files at their paths (default: the manifest's folder).",
)
@clear_errors
def post(
    account,
    manifest,
    shards,
    replication,
    spot_check,
    verification,
    model,
    min_vram_mib,
    gpus,
    max_price,
    max_gpu_seconds,
    cpu_cores,
    memory_mib,
    disk_mib,
    hours,
    stores,
    inputs,
):
    """Post a job for MANIFEST (a JSON manifest); its budget is escrowed. With --store, the
    manifest and its inputs are uploaded first, each checked against the manifest; with
    several, to each of them, and the manifest posted lists them as its mirrors."""
    try:
        parsed = parse_manifest(manifest.read_bytes())
    except ManifestError as err:
        raise click.ClickException(f"{manifest}: {err}") from None
    urls = store_urls(stores)
    if len(urls) > 1:
        try:
            parsed = with_stores(parsed, urls)
        except ManifestError as err:
            raise click.ClickException(f"--store: {err}") from None
        click.echo(f"the manifest lists {len(parsed.stores)} mirrors: {', '.join(parsed.stores)}")
    mode = verification_mode(verification, replication, spot_check, model)
    market = Market.from_deployments()
    model_id = (
        check_zk_job(market, parsed, inputs or manifest.parent, model, shards) if mode == Verification.ZK else None
    )
    if urls:
        upload(parsed, inputs or manifest.parent, urls)
    if model_id is not None:
        bind_zk(market, account, parsed, model_id)
    req = Requirements(
        min_vram_mib=min_vram_mib,
        gpu_count=gpus,
        max_price=parse_amount(max_price),
        max_gpu_seconds=max_gpu_seconds,
        deadline=chain.pending_timestamp + int(hours * HOUR),
        shard_count=shards,
        replication=replication,
        verification=mode,
        cpu_cores=cpu_cores,
        memory_mib=memory_mib,
        disk_mib=disk_mib,
    )
    job_id = market.post_job(manifest_hash(parsed), req, sender=account)
    job = market.job(job_id)
    click.echo(f"job {job_id} posted: {shards} shard(s) × {replication}, budget {format_amount(job.escrow)} escrowed")
    click.echo(f"manifest hash 0x{job.manifest_hash.hex()}")


def verification_mode(name, replication, spot_check, model) -> Verification:
    """The job's verification level from --verification, or from --replication and --spot-check."""
    if name is None:
        if replication > 1:
            return Verification.REPLICATED
        return Verification.SPOT_CHECK if spot_check else Verification.OPTIMISTIC
    mode = Verification[name.upper().replace("-", "_")]
    if (mode == Verification.REPLICATED) != (replication > 1):
        raise click.ClickException("--verification replicated goes with --replication above 1, and only with it")
    if spot_check and mode != Verification.SPOT_CHECK:
        raise click.ClickException(f"--spot-check contradicts --verification {name}")
    if (mode == Verification.ZK) != (model is not None):
        raise click.ClickException("--model goes with --verification zk, and zk needs it")
    return mode


def check_zk_job(market, manifest, folder: Path, model: str, shards: int) -> bytes:
    """The registered model id a zk job runs; refuses a job its agents could not prove: an
    unregistered model, or a shard without its input file of the model's input words."""
    try:
        model_id = (
            market.zk_model_id(zk.ModelArtifacts.load(model)) if Path(model).is_dir() else zk.parse_model_id(model)
        )
    except zk.ZkError as err:
        raise click.ClickException(f"--model: {err}") from None
    found = market.zk_model(model_id)
    if not found.registered:
        hint = f"; `ape run model register {model}` first" if Path(model).is_dir() else ""
        raise click.ClickException(f"--model: no model 0x{model_id.hex()} is registered on this chain{hint}")
    paths = {item.path for item in manifest.inputs.files}
    for shard in range(shards):
        if zk.input_path(shard) not in paths:
            raise click.ClickException(f"zk: the manifest has no input {zk.input_path(shard)} for shard {shard}")
    for shard in range(shards):
        path = zk.input_path(shard)
        try:
            words = zk.decode_words((folder / path).read_bytes())
        except (OSError, zk.ZkError) as err:
            raise click.ClickException(f"zk: input {path}: {err}") from None
        if len(words) != found.input_words:
            raise click.ClickException(f"zk: input {path} has {len(words)} words, the model takes {found.input_words}")
    return model_id


def bind_zk(market, account, manifest, model_id: bytes) -> None:
    """Binds the manifest to the model and its inputs root, unless it already is (bindings never change)."""
    digest, root = manifest_hash(manifest), bytes.fromhex(manifest.inputs.root[2:])
    spec = market.zk_spec(str(account.address), digest)
    if spec.bound and (spec.model, spec.inputs_root) != (model_id, root):
        raise click.ClickException("zk: this manifest is already bound to another model or inputs root")
    if not spec.bound:
        market.bind_zk(digest, model_id, root, sender=account)
    click.echo(f"zk: manifest bound to model 0x{model_id.hex()} and inputs root {manifest.inputs.root}")


def store_urls(stores) -> list[str]:
    """The --store values as URLs, each once: repeated options and comma-separated lists alike."""
    return list(dict.fromkeys(u.strip().rstrip("/") for value in stores for u in value.split(",") if u.strip()))


def upload(manifest, folder: Path, store_urls: list[str]) -> None:
    """Checks every input under `folder` against the manifest, then uploads inputs and manifest
    to each store."""
    import hashlib

    from computenet.store import Mirrors, StoreError

    blobs = []
    for item in manifest.inputs.files:
        path = folder / item.path
        if not path.is_file():
            raise click.ClickException(f"input {item.path}: no such file under {folder}")
        data = path.read_bytes()
        if len(data) != item.size or hashlib.sha256(data).hexdigest() != item.sha256:
            raise click.ClickException(f"input {item.path}: content differs from the manifest (size or sha256)")
        blobs.append(data)
    client = Mirrors.of(store_urls)
    try:
        for data in blobs:
            client.put(data)
        client.put(canonical_json(manifest))
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"uploaded the manifest and {len(blobs)} input(s) to {client.url}")


@cli.command()
@click.option("--image", required=True, help="Image as name@sha256:<digest> (`python -m agent image` prints one).")
@click.option(
    "--inputs",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Folder of input files, staged under /in.",
)
@click.option(
    "--timeout",
    "timeout_seconds",
    type=int,
    default=600,
    show_default=True,
    help="Wall-clock limit per shard, seconds.",
)
@click.option("--max-output-bytes", type=int, default=64 << 20, show_default=True)
@click.option("--env", "env_pairs", multiple=True, help="NAME=value for the container (repeatable).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the manifest JSON.",
)
@click.argument("command", nargs=-1, required=True)
def manifest(image, inputs, timeout_seconds, max_output_bytes, env_pairs, output, command):
    """Write a manifest for COMMAND over the files in --inputs (each named by its SHA-256)."""
    files = {p.relative_to(inputs).as_posix(): p.read_bytes() for p in sorted(inputs.rglob("*")) if p.is_file()}
    env = dict(pair.split("=", 1) for pair in env_pairs)
    try:
        built = build_manifest(
            image, list(command), files, timeout_seconds=timeout_seconds, max_output_bytes=max_output_bytes, env=env
        )
    except ManifestError as err:
        raise click.ClickException(str(err)) from None
    output.write_bytes(canonical_json(built))
    click.echo(f"{output}: {len(files)} input(s), manifest hash 0x{manifest_hash(built).hex()}")


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@click.argument("job_id", type=int)
@clear_errors
def status(job_id):
    """Show JOB_ID's shards and replicas, and why each replica that is not running waits."""
    market = Market.from_deployments()
    job = market.job(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    req = job.requirements
    is_zk, is_tee = req.verification == Verification.ZK, req.verification == Verification.TEE
    click.echo(
        f"job {job_id} by {job.client}: {req.shard_count} shard(s) × {req.replication}, "
        + ("verification zk, " if is_zk else "verification tee, " if is_tee else "")
        + f"escrow {format_amount(job.escrow)}, {job.unfinished} unfinished, deadline {req.deadline}"
    )
    proven = set()
    if is_zk:  # the bound model, and the results the model registry proved (final at once)
        spec = market.zk_spec(job.client, job.manifest_hash)
        click.echo(f"  model {'0x' + spec.model.hex() if spec.bound else 'none bound: no result can be proven'}")
        proven = market.proven(job_id)
    attested = market.attested_results(job_id) if is_tee else {}  # results vouched for: short window
    shards = market.shards(job_id)
    idle = (ReplicaState.OPEN, ReplicaState.CANCELLED)
    facts = _waiting_facts(market, job_id) if any(r.state in idle for s in shards for r in s.replicas) else None
    for shard in shards:
        replicas = ", ".join(
            f"r{r.index}:{'proven' if (shard.index, r.index) in proven else r.state.name.lower()}"
            + (
                f"(attested, window ends {attested[(shard.index, r.index)]})"
                if (shard.index, r.index) in attested and r.state == ReplicaState.SUBMITTED
                else ""
            )
            + (f"@asset{r.asset}" if r.asset else "")
            for r in shard.replicas
        )
        click.echo(f"  shard {shard.index:>4} {shard.state.name.lower():>10}  {replicas}")
        if facts is not None:
            assets, declines, params, now, paused = facts
            tee_ready = market.attested_for(job, assets)
            why = shard_waiting(
                job,
                shard.replicas,
                assets,
                declines.get(shard.index, []),
                params,
                now,
                paused=paused,
                attested=tee_ready,
            )
            for index, reason in sorted(why.items()):
                click.echo(f"         r{index}: {reason}")


def _waiting_facts(market, job_id):
    """What computenet.waiting needs: every asset, the job's declines by shard (each at its
    block's time), the parameters, the chain's clock, the pause."""
    return market.all_assets(), market.declines(job_id), market.parameters(), market.now(), market.paused()


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
            click.echo(f"  shard {shard}: {refusal_line(err)}")
    click.echo(f"job {job_id}: {cancelled} shard(s) cancelled; credits now {format_amount(market.credits(account))}")
    if cancelled == 0:
        raise click.ClickException(f"no shard of job {job_id} could be cancelled")


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.argument("job_id", type=int)
@click.argument("shard", type=int)
@click.option("--replica", type=int, help="Replica to fetch (default: the first with a result).")
@click.option(
    "--to",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the files under (default: ./job-JOB-SHARD-REPLICA).",
)
@click.option("--endpoint", help="The agent's base URL, when the asset records none on chain.")
@clear_errors
def outputs(account, job_id, shard, replica, folder, endpoint):
    """Fetch a replica's output files from its agent (requests signed by the account: the
    job's client) and check every file against the replica's on-chain output root before
    writing any of them."""
    from computenet.outputs import OutputsClient

    market = Market.from_deployments()
    if market.job(job_id) is None:
        raise click.ClickException(f"no job {job_id}")
    replicas = market.shard(job_id, shard).replicas
    if replica is None:
        with_result = [r for r in replicas if any(r.output_root)]
        if not with_result:
            states = ", ".join(f"r{r.index}:{r.state.name.lower()}" for r in replicas)
            raise click.ClickException(f"job {job_id} shard {shard} has no result yet ({states})")
        rep = with_result[0]
    else:
        if not 0 <= replica < len(replicas):
            raise click.ClickException(f"job {job_id} has no replica {replica} (replication {len(replicas)})")
        rep = replicas[replica]
        if not any(rep.output_root):
            raise click.ClickException(
                f"job {job_id} shard {shard} replica {replica} has no result ({rep.state.name.lower()})"
            )
    url = endpoint or market.endpoint(rep.asset)
    if not url:
        raise click.ClickException(f"asset {rep.asset} records no endpoint on chain; pass --endpoint URL")
    client = OutputsClient(account, market.chain_id, {rep.asset: url}, lambda asset: market.asset(asset).agent)
    files = client.result(rep.asset, job_id, shard, rep.index, rep.output_root)
    folder = folder or Path(f"job-{job_id}-{shard}-{rep.index}")
    targets = {path: output_target(folder, path) for path in files}
    for path, data in files.items():  # every file is verified by now; only these are written
        targets[path].parent.mkdir(parents=True, exist_ok=True)
        targets[path].write_bytes(data)
        click.echo(f"{path}  {len(data)} bytes  verified")
    total = sum(map(len, files.values()))
    click.echo(
        f"job {job_id} shard {shard} replica {rep.index}: {len(files)} file(s), {total} bytes, "
        f"all in the on-chain root 0x{rep.output_root.hex()}, written under {folder}"
    )


def output_target(folder: Path, path: str) -> Path:
    """Where output `path` goes under `folder`; refuses a path that would land outside it."""
    base = folder.resolve()
    target = (base / path).resolve()
    if path.startswith("/") or not target.is_relative_to(base) or target == base:
        raise click.ClickException(f"output {path!r} would be written outside {folder}; nothing was written")
    return target


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.argument("job_id", type=int)
@click.argument("shard", type=int)
@clear_errors
def challenge(account, job_id, shard):
    """Challenge SHARD of JOB_ID's results inside their challenge window, posting the challenge
    bond: it comes back with a reward if the arbiter finds a result wrong, and goes to the
    accused providers otherwise."""
    market = Market.from_deployments()
    bond = market.check_challenge(job_id, shard, account)
    market.challenge(job_id, shard, sender=account)
    dispute = market.dispute(job_id, shard)
    click.echo(
        f"job {job_id} shard {shard} challenged: bond {format_amount(bond)} posted, replica(s) "
        f"{replicas_text(dispute.disputed)} disputed, to be ruled on by {dispute.ruling_deadline} (unix time)"
    )


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@click.argument("job_id", type=int)
@click.argument("shard", type=int)
@clear_errors
def dispute(job_id, shard):
    """Show SHARD of JOB_ID's dispute: open or resolved, challenger, bond, ruling deadline,
    rejected replicas."""
    market = Market.from_deployments()
    if market.job(job_id) is None:
        raise click.ClickException(f"no job {job_id}")
    found = market.dispute(job_id, shard)
    if found is None:
        click.echo(f"job {job_id} shard {shard}: no dispute")
        return
    challenger = found.challenger or "none (the replicas disagreed)"
    if found.open:
        click.echo(f"job {job_id} shard {shard}: dispute open")
        click.echo(f"  challenger       {challenger}")
        click.echo(f"  bond             {format_amount(found.bond)}")
        click.echo(f"  disputed         {replicas_text(found.disputed)}")
        late = " (passed: anyone may apply the default outcome)" if market.now() > found.ruling_deadline else ""
        click.echo(f"  ruling deadline  {found.ruling_deadline}{late}")
    else:
        click.echo(f"job {job_id} shard {shard}: dispute resolved")
        click.echo(f"  challenger       {challenger}")
        click.echo(f"  bond             {format_amount(found.bond)}")
        click.echo(f"  ruled by         {found.arbiter or 'no one (default outcome: every result stands)'}")
        click.echo(f"  upheld           {found.upheld}")
        click.echo(f"  rejected         {replicas_text(found.rejected) or 'none'}")


def replicas_text(indices) -> str:
    return ", ".join(f"r{r}" for r in indices)


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.option("--to", "receiver", help="Pay to this address instead of the account.")
@clear_errors
def withdraw(account, receiver):
    """Withdraw what the market credits the account: refunds of cancelled or unspent budget,
    and returned challenge bonds and rewards."""
    pay_credits(Market.from_deployments(), account, receiver)


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for every stage's verified outputs and the resume state (default: <name>-outputs beside FILE).",
)
@click.option(
    "--store",
    "stores",
    multiple=True,
    envvar="COMPUTENET_STORE_URL",
    help="Content store(s) each stage's manifest and inputs are uploaded to, as `job post --store`.",
)
@clear_errors
def pipeline(account, file, folder, stores):
    """Run the stages of FILE (TOML, docs/pipelines.md) in order: each stage's job is posted,
    followed until every shard is finalized, and its outputs fetched and proven against their
    on-chain roots before they become the next stage's inputs (/in/prev/<shard>/...). Run it
    again to resume a pipeline that was stopped."""
    from computenet.pipeline import PipelineError, parse_pipeline
    from computenet.pipeline_run import Runner

    try:
        parsed = parse_pipeline(file.read_text(encoding="utf-8"))
    except (PipelineError, UnicodeDecodeError) as err:
        raise click.ClickException(f"{file}: {err}") from None
    urls = store_urls(stores)
    out = folder or file.parent / f"{parsed.name}-outputs"
    runner = Runner(parsed, file.parent, out, Market.from_deployments(), account, urls, click.echo)
    try:
        lines = runner.run()
    except KeyboardInterrupt:
        raise click.ClickException(
            f"interrupted; run the same command again to resume (state in {runner.state_path})"
        ) from None
    for line in lines:
        click.echo(line)
