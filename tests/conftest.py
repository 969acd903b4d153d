"""Shared fixtures: named actors, the deployed stack, factories for assets, jobs and
receipts, and the services jobs run on: a content store, a real Docker engine (this
machine's, or a private dockerd started for the session when none answers) and the job
image built without a registry. Every test runs against a real anvil; ape reverts the chain
between tests."""

import json
import os
import socket
from dataclasses import dataclass

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, settings

from agent import image
from computenet import zk
from computenet.checkpoints import Checkpoint
from computenet.deploy import DEFAULT_PARAMETERS, deploy_stack
from computenet.domain import Requirements, Spec, Verification
from computenet.localnet import DockerEngine, RedisServer, ServedApp, ServiceError, docker_reachable, wait_until
from computenet.manifest import build_manifest, canonical_json, manifest_hash
from computenet.market import Market
from computenet.receipts import ExecutionReceipt
from computenet.receipts import sign_receipts as sign_batch
from computenet.store import LocalStore, StoreClient, app

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "deep", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TOKEN = 10**6  # one whole token in base units (6 decimals)
H100 = 1  # GPU model ids used in tests
A100 = 2


# The slowest files, each a whole network or many subprocesses: `make test` spreads files over
# workers (pytest-xdist, --dist loadfile) in collection order (--no-loadscope-reorder: xdist would
# otherwise put the files with the most tests first, and so these, which have few, last), so these
# start first and do not end up running alone at the end. Longest first, as `--durations` measured.
SLOW_FIRST = (
    "tests/scripts/test_scripts.py",
    "tests/demo/test_demo.py",
    "tests/keepers/test_keeper_bot.py",
    "tests/scripts/test_pipeline_network.py",
    "tests/demo/",
    "tests/dapp/",
    "tests/flows/test_market_state_machine.py",
    "tests/agent/",
    "tests/examples/test_ml_workloads.py",
    "tests/verifier/",
    "tests/scripts/",
    "tests/facilitator/",
    "tests/gateway/",
)


def pytest_configure(config):
    """ape-foundry's `host: auto` picks a random port in the kernel's ephemeral range without
    checking that it is free: when another socket holds it, anvil cannot listen and the worker's
    session fails 20 s later ("Timed out waiting for successful RPC connection"). Each session
    (each xdist worker) takes a port the kernel just found free instead."""
    from ape import config as ape_config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ape_config.get_config("foundry").host = f"http://127.0.0.1:{port}"


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid
        return next((i for i, prefix in enumerate(SLOW_FIRST) if path.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the order within each file is kept


@pytest.fixture(scope="session", autouse=True)
def _plain_reverts():
    """For every reverted transaction ape-foundry renders and prints the full call trace,
    and ape maps the trace back to Vyper source lines: together about a second per
    revert. The suite expects hundreds of reverts and checks each reason string, so
    both are switched off for the test session."""
    from ape.exceptions import TransactionError
    from ape_ethereum.trace import Trace

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trace, "show", lambda self, *args, **kwargs: None)
        mp.setattr(TransactionError, "source_traceback", property(lambda self: None, lambda self, value: None))
        yield


# ---------------------------------------------------------------- actors


@pytest.fixture(scope="session")
def owner(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def client(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def provider(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def provider2(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def keeper(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def keeper2(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def verifier(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def facilitator(accounts):
    return accounts[7]


@pytest.fixture(scope="session")
def treasury(accounts):
    return accounts[8]


@pytest.fixture(scope="session")
def attestor(accounts):
    """Records TEE verdicts in the attestation registry (named by the owner in `stack`)."""
    return accounts[14]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[9]


@pytest.fixture(scope="session")
def agents(accounts):
    """Agent keys of the provider machines; they hold ETH so they can decline."""
    return [accounts[10], accounts[11], accounts[12], accounts[13]]


@pytest.fixture(scope="session")
def agent(agents):
    return agents[0]


# ---------------------------------------------------------------- contracts


@pytest.fixture(scope="session")
def stack(project, owner, treasury, facilitator, attestor, client, provider, provider2, keeper, keeper2, verifier):
    s = deploy_stack(project, owner, treasury=treasury.address)
    s.market.set_facilitator(facilitator, True, sender=owner)
    s.attestations.set_attestor(attestor, True, sender=owner)
    for who in (client, provider, provider2, keeper, keeper2, verifier):
        s.token.faucet(who, 1_000_000 * TOKEN, sender=who)
        s.token.approve(s.market, 2**256 - 1, sender=who)
        s.token.approve(s.assets, 2**256 - 1, sender=who)
        s.token.approve(s.keepers, 2**256 - 1, sender=who)
    return s


@pytest.fixture(scope="session")
def token(stack):
    return stack.token


@pytest.fixture(scope="session")
def assets(stack):
    return stack.assets


@pytest.fixture(scope="session")
def keepers(stack):
    return stack.keepers


@pytest.fixture(scope="session")
def market(stack):
    return stack.market


@pytest.fixture(scope="session")
def court(stack):
    return stack.court


@pytest.fixture
def fresh(accounts, token, market):
    """A client who holds tokens but never approved the market."""
    account = accounts[14]
    token.faucet(account, 1_000_000 * TOKEN, sender=account)
    assert token.allowance(account, market) == 0
    return account


@pytest.fixture(scope="session")
def funder(stack):
    """The market's AuthorizationFunder, which facilitators settle x402 payments through."""
    return stack.funder


@pytest.fixture(scope="session")
def blobs() -> zk.ModelArtifacts:
    """The example zk model (docs/zk.md), which `make test` builds first (`make zk`)."""
    try:
        return zk.ModelArtifacts.load(zk.EXAMPLE_MODEL)
    except zk.ZkError as error:
        pytest.fail(f"{error}: `make test` builds it with `make zk`")


@pytest.fixture(scope="session")
def params():
    return DEFAULT_PARAMETERS


# ---------------------------------------------------------------- factories


@pytest.fixture
def now(chain):
    """Timestamp of the next block."""
    return lambda: chain.pending_timestamp


@pytest.fixture
def make_spec(chain):
    def make(**overrides) -> Spec:
        fields = dict(
            gpu_model=H100,
            vram_mib=81_920,
            gpu_count=1,
            cpu_cores=16,
            region=276,
            price=100,
            expire=chain.pending_timestamp + 30 * 86_400,
            max_leases=16,
        )
        fields.update(overrides)
        return Spec(**fields)

    return make


@pytest.fixture
def register_asset(assets, provider, agent, make_spec):
    """Registers (and by default stakes) an asset; returns its id."""

    def register(owner=None, agent_account=None, stake=1_000 * TOKEN, commit=b"\x11" * 32, **spec):
        owner = owner or provider
        agent_account = agent_account or agent
        receipt = assets.register(make_spec(**spec).as_tuple(), agent_account, commit, sender=owner)
        asset_id = receipt.events.filter(assets.AssetRegistered)[0].asset
        if stake:
            assets.add_stake(asset_id, stake, sender=owner)
        return asset_id

    return register


@pytest.fixture
def make_requirements(chain):
    def make(**overrides) -> Requirements:
        fields = dict(
            min_vram_mib=40_960,
            gpu_count=1,
            max_price=200,
            max_gpu_seconds=3_600,
            deadline=chain.pending_timestamp + 7 * 86_400,
            shard_count=1,
            replication=1,
            verification=Verification.OPTIMISTIC,
        )
        fields.update(overrides)
        if fields["replication"] > 1 and "verification" not in overrides:
            fields["verification"] = Verification.REPLICATED
        return Requirements(**fields)

    return make


MANIFEST = keccak(b"manifest")


@pytest.fixture
def post_job(market, client, make_requirements):
    """Posts a job; returns its id."""

    def post(sender=None, manifest_hash=MANIFEST, **req):
        receipt = market.post_job(manifest_hash, make_requirements(**req).as_tuple(), sender=sender or client)
        return receipt.events.filter(market.JobPosted)[0].job

    return post


@pytest.fixture
def asset(register_asset):
    """An active, staked H100 asset of `provider`, run by `agent`."""
    return register_asset()


@pytest.fixture
def job(post_job):
    """A one-shard, one-replica job of `client`."""
    return post_job()


@pytest.fixture
def registered_keeper(keepers, keeper, keeper2):
    keepers.register(100 * TOKEN, sender=keeper)
    keepers.register(100 * TOKEN, sender=keeper2)
    return keeper


@pytest.fixture
def sign_receipt(chain, market):
    """Signs the receipt for a replica's current lease and its job's manifest with `signer`'s key."""

    def sign(
        signer, job, shard, replica, output_root, gpu_seconds, exit_code=0, manifest_hash=None, lease=None, asset=None
    ):
        _run_for(chain, market, job, shard, replica, gpu_seconds)  # a receipt is signed once the run is over
        rep = market.replica(job, shard, replica)
        manifest_hash = market.job(job).manifest_hash if manifest_hash is None else manifest_hash
        receipt = ExecutionReceipt(
            job=job,
            shard=shard,
            replica=replica,
            lease=rep.lease if lease is None else lease,
            asset=rep.asset if asset is None else asset,
            manifest=manifest_hash,
            output_root=output_root,
            gpu_seconds=gpu_seconds,
            exit_code=exit_code,
        )
        return receipt.sign(signer.private_key, chain.chain_id, market.address)

    return sign


@pytest.fixture
def receipts_of(stack):
    """`receipts_of(results)`: the ExecutionReceipts of `results`, each (job, shard, replica,
    output_root, gpu_seconds, exit_code), at their replicas' current leases (as an agent signs them)."""
    sdk = Market.from_stack(stack)
    return lambda results: [sdk.receipt_for(*result) for result in results]


@pytest.fixture
def sign_receipts(chain, market, receipts_of):
    """`sign_receipts(signer, results)`: one signature over the receipts of `results` (see
    `receipts_of`) for JobMarket.submit_results, once the chain's clock has moved far enough
    for each claim."""

    def sign(signer, results):
        for job, shard, replica, _, gpu_seconds, _ in results:
            _run_for(chain, market, job, shard, replica, gpu_seconds)
        return sign_batch(signer.private_key, chain.chain_id, market.address, receipts_of(results))

    return sign


def _run_for(chain, market, job, shard, replica, gpu_seconds):
    """Moves the chain's clock on, if need be, until `gpu_seconds` fit the time the replica has
    been assigned on its GPUs (the market refuses a claim beyond it), as a real run takes it."""
    try:
        since = int(market.replica(job, shard, replica).since)
        gpus = max(1, int(market.job(job).requirements.gpu_count))
    except Exception:  # no such job or replica: the submission is refused for that
        return
    needed = since + -(-gpu_seconds // gpus)
    if chain.pending_timestamp < needed:
        chain.pending_timestamp = needed


@pytest.fixture
def run_for(chain, market):
    """`run_for(job, shard, replica, gpu_seconds)`: the chain's clock moved on until the claim fits."""
    return lambda job, shard, replica, gpu_seconds: _run_for(chain, market, job, shard, replica, gpu_seconds)


@pytest.fixture
def submit(market, provider, sign_receipt):
    """Submits a replica's result signed by `agent_account` (relayed by the provider), once the
    chain's clock has moved far enough for its metered `gpu_seconds` (sign_receipt)."""

    def do(agent_account, job, shard, replica, output_root=b"\x42" * 32, gpu_seconds=1_000, exit_code=0, sender=None):
        sig = sign_receipt(agent_account, job, shard, replica, output_root, gpu_seconds, exit_code)
        return market.submit_result(
            job, shard, replica, output_root, gpu_seconds, exit_code, sig, sender=sender or provider
        )

    return do


@pytest.fixture
def sign_checkpoint(chain, market):
    """Signs a Checkpoint for a replica's current lease and its job's manifest with `signer`'s
    key; returns the SignedCheckpoint (`.market_args()` for commit_checkpoint)."""

    def sign(signer, job, shard, replica, checkpoint, gpu_seconds, lease=None, asset=None, manifest_hash=None):
        rep = market.replica(job, shard, replica)
        return Checkpoint(
            job=job,
            shard=shard,
            replica=replica,
            lease=rep.lease if lease is None else lease,
            asset=rep.asset if asset is None else asset,
            manifest=market.job(job).manifest_hash if manifest_hash is None else manifest_hash,
            checkpoint=checkpoint,
            gpu_seconds=gpu_seconds,
        ).sign(signer.private_key, chain.chain_id, market.address)

    return sign


@pytest.fixture
def commit_checkpoint(market, stranger, sign_checkpoint, run_for):
    """Commits a replica's checkpoint signed by `agent_account` (relayed by a stranger: anyone
    may), once the chain's clock has moved far enough for its `gpu_seconds`."""

    def do(agent_account, job, shard, replica, checkpoint, gpu_seconds, sender=None):
        run_for(job, shard, replica, gpu_seconds)
        signed = sign_checkpoint(agent_account, job, shard, replica, checkpoint, gpu_seconds)
        return market.commit_checkpoint(*signed.market_args(), sender=sender or stranger)

    return do


# ---------------------------------------------------------------- services


@pytest.fixture
def wait_for():
    """Polls a condition until it holds (returning its value); fails the test after `timeout` s."""

    def wait(condition, timeout=90, what="condition", interval=0.1):
        try:
            return wait_until(condition, timeout, what, interval)
        except TimeoutError as error:
            pytest.fail(str(error))

    return wait


@pytest.fixture(scope="session")
def deployments(stack, chain, tmp_path_factory):
    """The session's stack, recorded for role processes (`python -m keepers`, `python -m agent`),
    which join a local node as ethereum:local."""
    path = tmp_path_factory.mktemp("deployments") / "deployments.json"
    record = stack.addresses() | {"chain_id": chain.chain_id, "block": 0}
    path.write_text(json.dumps({"ethereum:local": record}))
    return path


@dataclass
class Store:
    local: LocalStore
    client: StoreClient
    url: str


@pytest.fixture(scope="session")
def content_store(tmp_path_factory):
    local = LocalStore(tmp_path_factory.mktemp("store"))
    served = ServedApp(app(local))
    yield Store(local, StoreClient(served.url), served.url)
    served.stop()


@dataclass
class Docker:
    client: object
    host: str | None  # None: the default the SDK finds (DOCKER_HOST or the system socket)


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory):
    import docker

    if docker_reachable():
        yield Docker(docker.from_env(), os.environ.get("DOCKER_HOST"))
        return
    directory = tmp_path_factory.mktemp("docker")
    try:
        engine = DockerEngine(directory, log=directory / "dockerd.log")
    except ServiceError as error:
        pytest.fail(f"no Docker engine: {error} (`make test` installs docker.io when it can)")
    yield Docker(engine.client(), engine.url)
    engine.stop()


@pytest.fixture(scope="session")
def job_image(docker_engine):
    """`computenet/python@sha256:<id>`, built from Debian's packages and imported."""
    return image.build(docker_engine.client)


@pytest.fixture
def publish_job(content_store, job_image):
    """Builds a manifest over `files`, uploads it and its inputs; returns (manifest, its hash)."""

    def publish(
        command, files, env=None, image_ref=None, timeout_seconds=60, max_output_bytes=1 << 20, verification=None
    ):
        manifest = build_manifest(
            image_ref or job_image,
            command,
            files,
            env=env,
            timeout_seconds=timeout_seconds,
            max_output_bytes=max_output_bytes,
            verification=verification,
        )
        for data in files.values():
            content_store.client.put(data)
        content_store.client.put(canonical_json(manifest))
        return manifest, manifest_hash(manifest)

    return publish


@pytest.fixture
def stop_after():
    """Registers process groups (computenet.localnet.ProcessGroup) to stop when the test ends."""
    groups = []
    yield groups.append
    for group in groups:
        group.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server with 32 databases, one per keeper a test starts."""
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
    except ServiceError as error:
        pytest.fail(f"{error} (`make test` installs it)")
    yield server
    server.stop()
