"""The one seam between the chain and the application.

`Market` wraps the deployed contracts, is the one reader of them every role uses (typed
domain objects out),
checks each action against the contracts' rules before sending it (so a doomed
transaction fails early with the reason the chain would give), and turns chain reverts
into the same typed errors (computenet.errors).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from eth_utils import event_abi_to_log_topic
from web3._utils.events import get_event_data

from computenet import audit, preflight
from computenet.checkpoints import Checkpoint, SignedCheckpoint
from computenet.domain import (
    Asset,
    Checkpoints,
    Dispute,
    Job,
    KeeperBond,
    Leased,
    Parameters,
    Replica,
    ReplicaState,
    Requirements,
    Shard,
    Spec,
    Stake,
    TeeVerdict,
    Verification,
    ZkModel,
    ZkSpec,
)
from computenet.eip712 import recover_signer
from computenet.errors import ContractRevert, revert_error
from computenet.events import Event, decode
from computenet.receipts import MAX_BATCH_RESULTS, ExecutionReceipt, batch_digest, cancel_signer, sign_receipts
from computenet.waiting import Decline
from computenet.web3calls import abi, block_ranges, reason_of

MAX_UINT256 = 2**256 - 1
MAX_ENDPOINT_BYTES = 256  # ComputeAsset's String[256]
ZERO_ROOT = b"\x00" * 32
LOGGED_ROOTS_LAG = 64  # blocks whose logs are read again on each poll: a reorganisation could replace them
RELAY_BATCH = 256  # BatchRelay.MAX_ITEMS: items per batched transaction
READ_BATCH = 2_500  # view calls per JSON-RPC batch (500 assets' five reads)
# The registry's events name their asset by one of these indexed arguments (ERC-721's token_id,
# ERC-7829's tokenId); the market's by `asset`, except these, which free leases naming none.
ASSET_ID_ARGS = ("asset", "token_id", "tokenId")
LEASES_FREED_UNNAMED = ("ShardCancelled",)
# The contract type of each role's address (reads need only its ABI; USDC's covers TestToken's reads).
CONTRACT_TYPES = {
    "token": "TestToken",
    "assets": "ComputeAsset",
    "keepers": "KeeperRegistry",
    "market": "JobMarket",
    "court": "DisputeCourt",
    "models": "ModelRegistry",
    "attestations": "AttestationRegistry",
    "relay": "BatchRelay",
    "funder": "AuthorizationFunder",
}
Block = int | str | None  # a block number or tag to read at; None: the latest
AUDIT_ROLES = ("assets", "market", "court", "funder")  # the contracts whose events the audit ledger reads
# Replica states whose current lease has a result, whose root `replica` reads.
_WITH_RESULT = (ReplicaState.SUBMITTED, ReplicaState.DISPUTED, ReplicaState.FINALIZED)


@contextmanager
def typed_reverts(preflight: bool = False) -> Iterator[None]:
    """Re-raises ape's ContractLogicError as the SDK's typed error for its reason;
    `preflight` marks refusals found by a read, before anything was sent."""
    from ape.exceptions import ContractLogicError

    try:
        yield
    except ContractLogicError as err:
        raise revert_error(str(err.message), preflight=preflight) from err


@contextmanager
def typed_read_reverts() -> Iterator[None]:
    """Re-raises a reverted web3 read as the SDK's typed error for its reason."""
    from web3.exceptions import ContractLogicError

    try:
        yield
    except ContractLogicError as err:
        raise revert_error(reason_of(err), preflight=True) from err


class Market:
    """The deployed computenet contracts on one network.

    Every read is a plain web3 contract call on one Web3 (ape's own under `ape run` and in
    tests, or the caller's in the HTTP services, which keep no ape provider), so every role
    decodes the chain's tuples the same way (computenet.domain's `from_chain`). Actions go
    through ape's contract instances, which a Market made `over_web3` lacks."""

    def __init__(
        self,
        token: Any,
        assets: Any,
        keepers: Any,
        market: Any,
        court: Any,
        models: Any,
        attestations: Any,
        relay: Any,
        funder: Any,
        *,
        web3: Any = None,
    ) -> None:
        self.token = token
        self.assets = assets
        self.keepers = keepers
        self.market = market
        self.court = court
        self.models = models  # the ModelRegistry: ZK models, jobs' bindings, proven results
        self.attestations = attestations  # the AttestationRegistry: TEE verdicts on nodes and results
        self.relay = relay  # the BatchRelay: many assignments, results or finalizations in one transaction
        self.funder = funder  # the AuthorizationFunder: jobs funded by EIP-3009 authorizations (x402)
        self._web3 = web3
        self._calls: tuple[Any, SimpleNamespace] | None = None
        self._topics: dict[tuple[str, bytes], int | None] | None = None
        # job -> (first block not read yet, (shard, replica) -> logged root): see _logged_roots
        self._roots_logged: dict[int, tuple[int, dict[tuple[int, int], bytes]]] = {}
        self.addresses = {role: str(getattr(self, role).address) for role in CONTRACT_TYPES}
        self.deployment_block = 0  # where to start reading events; from_deployments knows it

    @classmethod
    def from_stack(cls, stack: Any) -> Market:
        return cls(*(getattr(stack, role) for role in CONTRACT_TYPES))

    @classmethod
    def at(cls, addresses: dict[str, str]) -> Market:
        """Binds to deployed addresses with this project's contract types."""
        from ape import project

        market = project.JobMarket.at(addresses["market"])
        return cls(
            project.TestToken.at(addresses["token"]),
            project.ComputeAsset.at(addresses["assets"]),
            project.KeeperRegistry.at(addresses["keepers"]),
            market,
            project.DisputeCourt.at(addresses.get("court") or market.COURT()),
            project.ModelRegistry.at(addresses.get("models") or market.PROVER()),
            project.AttestationRegistry.at(addresses.get("attestations") or market.ATTESTATIONS()),
            project.BatchRelay.at(addresses.get("relay") or market.RELAY()),
            project.AuthorizationFunder.at(addresses.get("funder") or market.FUNDER()),
        )

    @classmethod
    def over_web3(cls, web3: Any, market: str, deployment_block: int = 0) -> Market:
        """A read-only Market on plain web3 (the HTTP services'), for the JobMarket at `market`
        and the contracts it names; their transactions are built from `calls`."""
        from web3 import Web3

        functions = _contract(web3, "market", Web3.to_checksum_address(market)).functions
        roles = {
            "token": functions.TOKEN().call(),
            "assets": functions.ASSETS().call(),
            "keepers": functions.KEEPERS().call(),
            "market": Web3.to_checksum_address(market),
            "court": functions.COURT().call(),
            "models": functions.PROVER().call(),
            "attestations": functions.ATTESTATIONS().call(),
            "relay": functions.RELAY().call(),
            "funder": functions.FUNDER().call(),
        }
        reader = cls(*(SimpleNamespace(address=str(roles[role])) for role in CONTRACT_TYPES), web3=web3)
        reader.deployment_block = deployment_block
        return reader

    @classmethod
    def from_deployments(cls, network: str | None = None) -> Market:
        """The market recorded for `network` (the choice the role was given; default: the
        connected one's names), or under any alias of the connected chain
        (computenet.deployments.find)."""
        from ape import networks

        from computenet.deployments import find

        provider = networks.provider
        names = [
            network,
            f"{provider.network.ecosystem.name}:{provider.network.name}",
            getattr(provider, "uri", None),
        ]
        web3 = provider.web3
        record = find([n for n in names if n], web3.eth.chain_id, lambda address: bool(web3.eth.get_code(address)))
        market = cls.at(record)
        market.deployment_block = int(record.get("block", 0))
        return market

    @classmethod
    def from_web3_deployments(cls, web3: Any, network: str, market: str = "") -> Market:
        """`over_web3` for the deployment recorded for `network` (an RPC URL or a network
        name), or under any alias of the chain `web3` is on. A `market` address given
        explicitly is used as it is, with its record's deployment block when one is known."""
        from computenet.deployments import find, load_all

        chain_id = web3.eth.chain_id
        if market:
            known = (
                r
                for r in load_all().values()
                if r.get("chain_id") == chain_id and str(r.get("market", "")).lower() == market.lower()
            )
            record = next(known, {})
            return cls.over_web3(web3, market, int(record.get("block", 0)))
        record = find(network, chain_id, lambda address: bool(web3.eth.get_code(address)))
        return cls.over_web3(web3, record["market"], int(record.get("block", 0)))

    # ------------------------------------------------------------- the reader

    @property
    def web3(self) -> Any:
        """The Web3 reads go through: the one given, else ape's connected provider's."""
        if self._web3 is not None:
            return self._web3
        from ape import networks

        return networks.provider.web3

    @property
    def calls(self) -> SimpleNamespace:
        """web3 contract objects of the contracts (`calls.market.functions.job(1).call()`),
        bound to `web3`; the HTTP services build their transactions from them."""
        web3 = self.web3
        if self._calls is None or self._calls[0] is not web3:
            contracts = {role: _contract(web3, role, self.addresses[role]) for role in CONTRACT_TYPES}
            self._calls = (web3, SimpleNamespace(**contracts))
        return self._calls[1]

    def _read(self, role: str, name: str, *args: Any, block: Block = None) -> Any:
        """One view call; a revert raises the SDK's typed error for its reason."""
        call = getattr(getattr(self.calls, role).functions, name)(*args)
        with typed_read_reverts():
            return call.call() if block is None else call.call(block_identifier=block)

    def _batch(self, calls: list[tuple[str, str, tuple]], block: Block = None) -> list[Any]:
        """View calls in JSON-RPC batches of READ_BATCH: (role, function, args) each; results in
        order (`block`: each read at that block)."""
        out: list[Any] = []
        for first in range(0, len(calls), READ_BATCH):
            with typed_read_reverts(), self.web3.batch_requests() as batch:
                for role, name, args in calls[first : first + READ_BATCH]:
                    call = getattr(getattr(self.calls, role).functions, name)(*args)
                    batch.add(call if block is None else call.call(block_identifier=block))
                out += batch.execute()
        return out

    # ------------------------------------------------------------- reads

    @property
    def chain_id(self) -> int:
        return int(self.web3.eth.chain_id)

    def head(self) -> int:
        """The latest block's number."""
        return int(self.web3.eth.block_number)

    def now(self) -> int:
        """Timestamp the next block will (at least) have."""
        return int(self.web3.eth.get_block("pending")["timestamp"])

    def block_hash(self, number: int) -> bytes:
        return bytes(self.web3.eth.get_block(number)["hash"])

    def parameters(self) -> Parameters:
        return Parameters.from_chain(self._read("market", "parameters"))

    def paused(self) -> bool:
        return bool(self._read("market", "paused"))

    def job_count(self, block: Block = None) -> int:
        return int(self._read("market", "job_count", block=block))

    def job(self, job_id: int, block: Block = None) -> Job | None:
        """The job, or None if no job has this id."""
        if not 0 < job_id <= self.job_count(block):
            return None
        return Job.from_chain(job_id, self._read("market", "job", job_id, block=block))

    def replica(self, job_id: int, shard: int, index: int, *, root: bool = True, block: Block = None) -> Replica:
        """A replica; an unknown job, shard or replica raises the contract's typed error.
        `root=False` skips the read of its output root (left zero), for callers that need only its state.
        The root is its current result's (see `replicas_of`)."""
        raw = self._read("market", "replica", job_id, shard, index, block=block)
        output_root = self._read("court", "result_root", job_id, shard, index, block=block) if root else ZERO_ROOT
        return self._with_logged_roots([Replica.from_chain(job_id, shard, index, raw, output_root)], block)[0]

    def checkpoint(self, job_id: int, shard: int, index: int, block: Block = None) -> Checkpoints:
        """A replica's resume point, pending checkpoint and contributions (JobMarket.checkpoint)."""
        return Checkpoints.from_chain(self._read("market", "checkpoint", job_id, shard, index, block=block))

    def replicas(
        self,
        job_id: int,
        keys: Iterable[tuple[int, int]],
        *,
        roots: bool = True,
        logged: bool = True,
        block: Block = None,
    ) -> list[Replica]:
        """A job's replicas at (shard, index) `keys`, read in one JSON-RPC batch (at `block`)."""
        keys = list(keys)
        if block is not None:  # a batch reads the latest block: one call each instead
            return [self.replica(job_id, s, r, root=roots, block=block) for s, r in keys]
        return self.replicas_of(((job_id, s, r) for s, r in keys), roots=roots, logged=logged)

    def replicas_of(
        self, keys: Iterable[tuple[int, int, int]], *, roots: bool = True, logged: bool = True
    ) -> list[Replica]:
        """The replicas at (job, shard, index) `keys`, of any jobs, read in JSON-RPC batches. Each
        one's `output_root` is its current result's: as the market stores it, or as the court
        holds it revealed, or for a batched result not revealed (JobMarket.submit_results keeps
        one commitment per batch) as its ResultSubmitted event logged it, unless `logged` is
        False (then zero: for callers that compare only replicated roots, never batched)."""
        keys = list(keys)
        calls = []
        for key in keys:
            calls.append(("market", "replica", key))
            if roots:
                calls.append(("court", "result_root", key))
        raw = self._batch(calls)
        step = 2 if roots else 1
        replicas = [
            Replica.from_chain(j, s, r, raw[step * n], raw[step * n + 1] if roots else ZERO_ROOT)
            for n, (j, s, r) in enumerate(keys)
        ]
        return self._with_logged_roots(replicas) if roots and logged else replicas

    def _with_logged_roots(self, replicas: list[Replica], block: Block = None) -> list[Replica]:
        """`replicas` with the root of each batched result that has none on chain filled in from
        its ResultSubmitted event: the latest of its replica, which its current lease logged."""
        missing = {rep.job for rep in replicas if rep.state in _WITH_RESULT and rep.output_root == ZERO_ROOT}
        if not missing:
            return replicas
        last = self.head() if block is None else int(self.web3.eth.get_block(block)["number"])
        logged = {job_id: self._logged_roots(job_id, last) for job_id in missing}
        return [
            replace(rep, output_root=logged[rep.job].get((rep.shard, rep.index), ZERO_ROOT))
            if rep.state in _WITH_RESULT and rep.output_root == ZERO_ROOT
            else rep
            for rep in replicas
        ]

    def _logged_roots(self, job_id: int, last: int) -> dict[tuple[int, int], bytes]:
        """(shard, replica) -> the root of the replica's latest ResultSubmitted, of one job, up to
        block `last`. A logged root never changes, so the logs read are kept (but the last
        LOGGED_ROOTS_LAG blocks', which a reorganisation could still replace) and a poll reads
        only the blocks since."""
        stored = self._roots_logged.get(job_id, (self.deployment_block, {}))
        # a read further back than what is kept reads it all, and keeps nothing
        start, roots = stored if last >= stored[0] else (self.deployment_block, {})
        roots, kept = dict(roots), None
        for entry in self._job_logs("market", "ResultSubmitted", job_id, start, last):
            if kept is None and entry["blockNumber"] > last - LOGGED_ROOTS_LAG:
                kept = dict(roots)  # what the blocks up to the lag hold
            args = entry["args"]
            roots[(int(args["shard"]), int(args["replica"]))] = bytes(args["output_root"])
        safe = max(start, last - LOGGED_ROOTS_LAG + 1)  # the first block not kept
        if safe > stored[0]:
            self._roots_logged[job_id] = (safe, roots if kept is None else kept)
        return roots

    def shards_of(
        self, keys: Iterable[tuple[int, int, int]], *, roots: bool = True, logged: bool = True
    ) -> list[Shard]:
        """The shards at (job, shard, replication) `keys`, of any jobs, with their replicas, read
        in JSON-RPC batches (`roots`, `logged`: as `replicas_of`)."""
        keys = list(keys)
        replicas = iter(self.replicas_of(((j, s, r) for j, s, n in keys for r in range(n)), roots=roots, logged=logged))
        return [Shard(j, s, tuple(next(replicas) for _ in range(n))) for j, s, n in keys]

    def shard(self, job_id: int, shard: int, job: Job | None = None, *, roots: bool = True) -> Shard:
        """A shard with its replicas (`job`: the job, when the caller has read it already;
        `roots=False`: their states only, roots left zero)."""
        job = job or self.job(job_id)
        if job is None:
            raise revert_error("job_market: unknown job", preflight=True)
        if not 0 <= shard < job.requirements.shard_count:
            raise revert_error("job_market: unknown shard", preflight=True)
        return self.shards_of([(job_id, shard, job.requirements.replication)], roots=roots)[0]

    def shards(self, job_id: int, job: Job | None = None, *, roots: bool = True) -> list[Shard]:
        """Every shard of the job with its replicas, in one JSON-RPC batch (`roots`: as `shard`)."""
        job = job or self.job(job_id)
        if job is None:
            raise revert_error("job_market: unknown job", preflight=True)
        req = job.requirements
        return self.shards_of(((job_id, s, req.replication) for s in range(req.shard_count)), roots=roots)

    def stake(self, asset_id: int) -> Stake:
        return Stake.from_chain(self._read("assets", "stake", asset_id))

    def asset_count(self) -> int:
        return int(self._read("assets", "totalSupply"))

    def endpoint(self, asset_id: int) -> str:
        """Where the asset's agent serves signed heartbeats and outputs ("" when it names none)."""
        return str(self._read("assets", "endpoint", asset_id))

    def asset(self, asset_id: int) -> Asset | None:
        """The asset, or None if no asset has this id."""
        if not 0 < asset_id <= self.asset_count():
            return None
        names = ("ownerOf", "agentOf", "spec", "commitByTokenId", "stake", "endpoint", "leased")
        owner, agent, spec, commit, stake, endpoint, leased = self._batch(
            [("assets", name, (asset_id,)) for name in names]
        )
        return Asset(
            asset_id,
            str(owner),
            str(agent),
            Spec.from_chain(spec),
            bytes(commit),
            Stake.from_chain(stake),
            str(endpoint),
            Leased.from_chain(leased),
        )

    def leased(self, asset_id: int) -> Leased:
        """The CPU cores, memory and disk the asset's open leases hold together."""
        return Leased.from_chain(self._read("assets", "leased", asset_id))

    def declines(self, job_id: int) -> dict[int, list[Decline]]:
        """The job's ShardDeclined events by shard, in chain order, each at its block's time
        (what computenet.waiting reads of them), from the deployment block in bounded ranges."""
        web3, out = self.web3, {}
        event = self.calls.market.events.ShardDeclined()
        for start, stop in block_ranges(self.deployment_block, web3.eth.block_number):
            for entry in event.get_logs(from_block=start, to_block=stop, argument_filters={"job": job_id}):
                at = int(web3.eth.get_block(entry["blockNumber"])["timestamp"])
                args = entry["args"]
                out.setdefault(int(args["shard"]), []).append(Decline.of(args["asset"], args["reason"], at))
        return out

    def all_assets(self) -> list[Asset]:
        """Every asset, read in JSON-RPC batches (one round trip per 500 assets, not five calls
        per asset); the commitment, which scheduling does not use, is left empty."""
        return self.assets_by_id(range(1, self.asset_count() + 1))

    def assets_by_id(self, ids: Iterable[int]) -> list[Asset]:
        """The assets `ids` (each an existing id), read as `all_assets` reads them."""
        ids = list(ids)
        names = ("ownerOf", "agentOf", "spec", "stake", "endpoint", "leased")
        results = self._batch([("assets", name, (i,)) for i in ids for name in names])
        out = []
        for n, i in enumerate(ids):
            owner, agent, spec, stake, endpoint, leased = results[len(names) * n : len(names) * (n + 1)]
            out.append(
                Asset(
                    i,
                    str(owner),
                    str(agent),
                    Spec.from_chain(spec),
                    b"",
                    Stake.from_chain(stake),
                    str(endpoint),
                    Leased.from_chain(leased),
                )
            )
        return out

    def assets_touched(self, first: int, last: int) -> tuple[set[int], set[int]] | None:
        """The ids of the assets whose state may have changed in blocks `first` to `last`, as the
        registry's and the market's events there name them: (those the registry's events name,
        which may have changed in any way; those only the market's name, whose leases opened or
        closed: their stake's lease counts and their leased totals). None when a change named
        none (a cancel frees the leases of a shard's assigned replicas without naming them)."""
        where = self._asset_topics()
        contracts = [self.addresses["assets"], self.addresses["market"]]
        registry = contracts[0].lower()
        logs = self.web3.eth.get_logs({"fromBlock": first, "toBlock": last, "address": contracts})
        whole: set[int] = set()
        leases: set[int] = set()
        for entry in logs:
            topics = entry["topics"]
            address = str(entry["address"]).lower()
            key = (address, bytes(topics[0])) if topics else None
            if key not in where:
                continue
            if where[key] is None:
                return None
            (whole if address == registry else leases).add(int.from_bytes(bytes(topics[where[key]]), "big"))
        return whole, leases - whole

    def asset_leases(self, ids: Iterable[int]) -> dict[int, tuple[Stake, Leased]]:
        """The assets' stakes and leased totals, what their leases change, in one JSON-RPC batch."""
        ids = list(ids)
        raw = self._batch([("assets", name, (i,)) for i in ids for name in ("stake", "leased")])
        return {i: (Stake.from_chain(raw[2 * n]), Leased.from_chain(raw[2 * n + 1])) for n, i in enumerate(ids)}

    def _asset_topics(self) -> dict[tuple[str, bytes], int | None]:
        """(contract, event topic) -> which topic holds the asset id, for the events that change
        an asset's state; None for those that change some without naming them."""
        if self._topics is None:
            self._topics = {}
            for role, names in (("assets", ASSET_ID_ARGS), ("market", ("asset",))):
                contract = getattr(self.calls, role)
                for abi in contract.abi:
                    if abi.get("type") != "event":
                        continue
                    indexed = [i["name"] for i in abi["inputs"] if i.get("indexed")]
                    named = [n for n, arg in enumerate(indexed, start=1) if arg in names]
                    key = (str(contract.address).lower(), bytes(event_abi_to_log_topic(abi)))
                    if named:
                        self._topics[key] = named[0]
                    elif role == "market" and abi["name"] in LEASES_FREED_UNNAMED:
                        self._topics[key] = None
        return self._topics

    def jobs_or_none(self, ids: Iterable[int]) -> dict[int, Job | None]:
        """Each job of `ids` as `job` reads it (None: no such job), all in one JSON-RPC batch."""
        ids, count = list(ids), self.job_count()
        return {job_id: None for job_id in ids} | self.jobs([j for j in ids if 0 < j <= count])

    def jobs(self, ids: Sequence[int], block: Block = None) -> dict[int, Job]:
        """The jobs `ids` as the chain holds them (at `block`), read in JSON-RPC batches."""
        raw = self._batch([("market", "job", (job_id,)) for job_id in ids], block)
        return {job_id: Job.from_chain(job_id, r) for job_id, r in zip(ids, raw)}

    def assets_of(self, owner: str) -> list[Asset]:
        """Assets `owner` holds now (fine for the registry sizes a CLI lists)."""
        return [self.asset(a.id) for a in self.all_assets() if a.owner.lower() == str(owner).lower()]

    def owner_of(self, asset_id: int, block: Block = None) -> str:
        return str(self._read("assets", "ownerOf", asset_id, block=block))

    def agent_of(self, asset_id: int, block: Block = None) -> str:
        return str(self._read("assets", "agentOf", asset_id, block=block))

    def quote(self, req: Requirements) -> int:
        return int(self._read("market", "quote", req.as_tuple()))

    def credits(self, account: Any) -> int:
        return int(self._read("market", "credits", _address(account)))

    def funded_by(self, payer: str, nonce: bytes) -> int:
        """The job an EIP-3009 authorization (payer, nonce) funded; 0: none."""
        return int(self._read("funder", "funded_by", payer, nonce))

    def zk_model(self, model_id: bytes, block: Block = None) -> ZkModel:
        return ZkModel.from_chain(self._read("models", "model", model_id, block=block))

    def zk_spec(self, client: str, manifest_hash: bytes, block: Block = None) -> ZkSpec:
        return ZkSpec.from_chain(self._read("models", "spec", client, manifest_hash, block=block))

    def zk_model_id(self, artifacts: Any) -> bytes:
        """The id a model folder (computenet.zk.ModelArtifacts) has, or will have, here: its verifier's
        runtime code is what the init code returns, run by an eth_call (no deployment needed)."""
        from eth_utils import keccak

        from computenet import zk

        runtime = bytes(self.web3.eth.call({"data": "0x" + artifacts.verifier_initcode().hex()}))
        return zk.model_id(artifacts.artifact_hash, keccak(runtime), artifacts.input_words, artifacts.output_words)

    def proven(self, job_id: int) -> set[tuple[int, int]]:
        """The (shard, replica) results of a zk job the model registry proved (its ResultProven
        events); a failed zk result (exit code not 0) takes the optimistic way and is not among them."""
        return {
            (int(e["args"]["shard"]), int(e["args"]["replica"]))
            for e in self._job_logs("models", "ResultProven", job_id)
        }

    def _job_logs(self, role: str, name: str, job_id: int, first: int | None = None, last: int | None = None) -> list:
        """`role`'s `name` events of one job from block `first` (default: the deployment) to
        `last` (default: the head), in chain order, in bounded block ranges."""
        event = getattr(self.calls, role).events[name]()
        first = self.deployment_block if first is None else first
        last = self.head() if last is None else last
        return [
            entry
            for start, stop in block_ranges(first, last)
            for entry in event.get_logs(from_block=start, to_block=stop, argument_filters={"job": job_id})
        ]

    def tee_verdict(self, asset_id: int, block: Block = None) -> TeeVerdict:
        """An asset's latest node verdict, current or not."""
        return TeeVerdict.from_chain(self._read("attestations", "verdict", asset_id, block=block))

    def attested(self, asset_ids: Sequence[int], block: Block = None) -> set[int]:
        """Those of `asset_ids` with a current verdict (tee jobs may go to them), read in batches."""
        ids = list(asset_ids)
        answers = self._batch([("attestations", "attested", (a,)) for a in ids], block=block)
        return {a for a, yes in zip(ids, answers, strict=True) if yes}

    def attested_for(self, job: Job | None, assets: Iterable[Asset]) -> set[int] | None:
        """For a tee job, which of `assets` it may go to now; None for any other job (no rule,
        nothing read): what computenet.waiting and the keeper's decisions take."""
        if job is None or job.requirements.verification != Verification.TEE:
            return None
        return self.attested([a.id for a in assets])

    def node_report_data(self, asset_id: int, agent: str) -> bytes:
        """The 32 bytes a node's TEE evidence must begin its report data with."""
        return bytes(self._read("attestations", "node_report_data", asset_id, agent))

    def result_report_data(self, job_id: int, shard: int, replica: int) -> bytes:
        """The 32 bytes a submitted result's TEE evidence must begin its report data with."""
        return bytes(self._read("attestations", "result_report_data", job_id, shard, replica))

    def attested_results(self, job_id: int) -> dict[tuple[int, int], int]:
        """(shard, replica) -> the shortened window end, for a tee job's results an attestor vouched for."""
        return {
            (int(e["args"]["shard"]), int(e["args"]["replica"])): int(e["args"]["challenge_end"])
            for e in self._job_logs("attestations", "ResultAttested", job_id)
        }

    def challenge_bond(self) -> int:
        return int(self._read("market", "challenge_bond"))

    def is_facilitator(self, account: Any) -> bool:
        return bool(self._read("market", "is_facilitator", _address(account)))

    def keeper_id(self, account: Any) -> int | None:
        """`account`'s keeper id; None when it is no active bonded registrant (the reason
        is the registry's: `active_keeper_id` raises it typed)."""
        try:
            return self.active_keeper_id(account)
        except ContractRevert:
            return None

    def active_keeper_id(self, account: Any) -> int:
        """`account`'s keeper id; raises the registry's typed error when it is not active."""
        return int(self._read("keepers", "active_keeper_id", _address(account)))

    def challenger(self, job_id: int, shard: int) -> str:
        """Who challenged the shard's results (the zero address: no open challenge)."""
        return str(self._read("court", "challenge_of", job_id, shard)[0])

    def ruling_deadline(self, job_id: int, shard: int) -> int:
        """The ruling deadline of the shard's open dispute (raises typed when none is open)."""
        return int(self._read("court", "ruling_deadline", job_id, shard))

    def balance(self, account: Any) -> int:
        return int(self._read("token", "balanceOf", _address(account)))

    def allowance(self, owner: Any, spender: Any) -> int:
        return int(self._read("token", "allowance", _address(owner), _address(spender)))

    def token_domain(self) -> tuple[str, str]:
        """The payment token's EIP-712 name and version (EIP-3009 authorizations are signed over them)."""
        name, version = self._batch([("token", "name", ()), ("token", "version", ())])
        return str(name), str(version)

    def events(
        self,
        start_block: int = 0,
        stop_block: int | None = None,
        roles: Sequence[str] = ("assets", "keepers", "market"),
        names: Iterable[str] | None = None,
    ) -> list[Event]:
        """The events of the contracts in `roles` (default: the asset registry, keeper registry
        and market; "court" adds the dispute court's) from `start_block` up to and excluding
        `stop_block` (default: to the head), in chain order; `names` keeps only those.
        One `eth_getLogs` for all of them: the caller bounds the range (computenet.follow)."""
        last = self.head() if stop_block is None else stop_block - 1
        if last < start_block:
            return []
        decoders = self._decoders(tuple(roles))
        wanted = None if names is None else set(names)
        topics = sorted({topic for (_, topic), abi in decoders.items() if wanted is None or abi["name"] in wanted})
        if not topics:
            return []
        logs = self.web3.eth.get_logs(
            {
                "address": [self.addresses[role] for role in roles],
                "fromBlock": start_block,
                "toBlock": last,
                "topics": [["0x" + topic.hex() for topic in topics]],
            }
        )
        out = []
        for log in sorted(logs, key=lambda log: (log["blockNumber"], log["logIndex"])):
            abi = decoders.get((str(log["address"]).lower(), bytes(log["topics"][0])))
            if abi is None or (wanted is not None and abi["name"] not in wanted):
                continue
            data = get_event_data(self.web3.codec, abi, log)
            out.append(
                decode(
                    data["event"],
                    dict(data["args"]),
                    block=log["blockNumber"],
                    tx="0x" + bytes(log["transactionHash"]).hex(),
                    index=log["logIndex"],
                )
            )
        return out

    def audit_events(self, last: int | None = None) -> list[Event]:
        """The events the audit ledger reads (computenet.audit.EVENT_NAMES) of the asset registry,
        market and court, from the deployment block to `last` (default: the head), in chain order,
        one bounded block range per query."""
        last = self.head() if last is None else last
        out: list[Event] = []
        for start, stop in block_ranges(self.deployment_block, last):
            out += self.events(start, stop + 1, roles=AUDIT_ROLES, names=audit.EVENT_NAMES)
        return out

    def audit(self) -> tuple[audit.Ledger, audit.Holdings]:
        """The audit ledger of every job, and what the chain holds to check it against (token
        balances, `owed`, each job's escrow, each credited account's credit), all at one block."""
        last = self.head()
        ledger = audit.ledger(self.audit_events(last))
        jobs, accounts = sorted(ledger.jobs), sorted(ledger.credited)
        calls = [
            ("token", "balanceOf", (self.addresses["market"],)),
            ("market", "owed", ()),
            ("token", "balanceOf", (self.addresses["assets"],)),
            *(("market", "job", (job,)) for job in jobs),
            *(("market", "credits", (account,)) for account in accounts),
        ]
        got = self._batch(calls, last)
        escrows = {job: int(raw[1]) for job, raw in zip(jobs, got[3 : 3 + len(jobs)])}
        credits = {account: int(c) for account, c in zip(accounts, got[3 + len(jobs) :])}
        return ledger, audit.Holdings(last, int(got[0]), int(got[1]), int(got[2]), escrows, credits)

    def provider_history(self, owner: str) -> audit.ProviderHistory:
        """`owner`'s assets with their leases, earnings, slashes and stake (computenet.audit)."""
        return audit.provider_history(owner, self.audit_events())

    def _decoders(self, roles: tuple[str, ...]) -> dict[tuple[str, bytes], dict]:
        """(address, topic0) -> event ABI for the contracts in `roles`."""
        from eth_utils import event_abi_to_log_topic

        found = {}
        for role in roles:
            for item in abi(CONTRACT_TYPES[role]):
                if item.get("type") == "event" and not item.get("anonymous"):
                    found[(self.addresses[role].lower(), bytes(event_abi_to_log_topic(item)))] = item
        return found

    # ------------------------------------------------------------- checks

    def _check(self, problem: str | None) -> None:
        if problem:
            raise revert_error(problem, preflight=True)

    def check_post(self, manifest_hash: bytes, req: Requirements, client: Any) -> int:
        """Raises what `post_job` would fail with; returns the budget it escrows."""
        self._check(preflight.post_problem(manifest_hash, req, self.parameters(), self.now(), self.paused()))
        budget = self.quote(req)
        if self.balance(client) < budget:
            raise revert_error("ERC20: transfer amount exceeds balance", preflight=True)
        return budget

    def check_assign(self, job_id: int, shard: int, asset_id: int, keeper: Any) -> None:
        """Raises what `assign` would fail with, in the contract's order: pause, keeper,
        then the job, shard, asset and replica rules."""
        paused = self.paused()
        if paused:
            raise revert_error("market_params: paused", preflight=True)
        self.active_keeper_id(keeper)
        job = self.job(job_id)
        replicas = self.shard(job_id, shard, job).replicas if job and 0 <= shard < job.requirements.shard_count else ()
        asset = self.asset(asset_id) if asset_id <= preflight.UINT32_MAX else None
        tee = job is not None and job.requirements.verification == Verification.TEE and asset is not None
        self._check(
            preflight.assign_problem(
                job,
                shard,
                replicas,
                asset,
                self.parameters(),
                self.now(),
                paused,
                asset_id=asset_id,
                attested=tee and asset_id in self.attested([asset_id]),
            )
        )

    # ------------------------------------------------------------- actions

    def register_asset(self, spec: Spec, agent: Any, commit: bytes, sender: Any, endpoint: str = "", **tx: Any) -> int:
        """Registers a node; `endpoint` is its agent's base URL (heartbeats, outputs), settable later."""
        with typed_reverts():
            receipt = self.assets.register(spec.as_tuple(), agent, commit, endpoint, sender=sender, **tx)
        return int(receipt.events.filter(self.assets.AssetRegistered)[0].asset)

    def add_stake(self, asset_id: int, amount: int, sender: Any, **tx: Any) -> Any:
        """Adds stake, approving the asset registry first when needed."""
        self._approve(self.assets, amount, sender, **tx)
        with typed_reverts():
            return self.assets.add_stake(asset_id, amount, sender=sender, **tx)

    def post_job(self, manifest_hash: bytes, req: Requirements, sender: Any, **tx: Any) -> int:
        """Checks, approves the budget when needed, posts; returns the job id."""
        budget = self.check_post(manifest_hash, req, sender)
        self._approve(self.market, budget, sender, **tx)
        with typed_reverts():
            receipt = self.market.post_job(manifest_hash, req.as_tuple(), sender=sender, **tx)
        return int(receipt.events.filter(self.market.JobPosted)[0].job)

    def assign(self, job_id: int, shard: int, asset_id: int, sender: Any, **tx: Any) -> int:
        """Checks and assigns; returns the replica index leased."""
        self.check_assign(job_id, shard, asset_id, sender)
        with typed_reverts():
            receipt = self.market.assign(job_id, shard, asset_id, sender=sender, **tx)
        return int(receipt.events.filter(self.market.ShardAssigned)[0].replica)

    def assign_many(
        self, placements: Sequence[tuple[int, int, int]], sender: Any, **tx: Any
    ) -> list[tuple[int, int, int, int]]:
        """Assigns each (job, shard, asset) in one transaction through the relay, as `sender`,
        who must be an active keeper. The market checks each as it checks `assign`; one it
        refuses (another keeper was first) is skipped. Returns the (job, shard, replica, asset)
        leased, in order."""
        self.active_keeper_id(sender)  # else the market would refuse every placement
        receipt = self._relay("assign_many", [tuple(p) for p in placements], sender, **tx)
        if receipt is None:
            return []
        events = receipt.events.filter(self.market.ShardAssigned)
        return [(int(e.job), int(e.shard), int(e.replica), int(e.asset)) for e in events]

    def signed_result(
        self,
        job_id: int,
        shard: int,
        index: int,
        output_root: bytes,
        gpu_seconds: int,
        exit_code: int,
        agent_key: Any,
    ) -> tuple:
        """A result for `submit_many`: its receipt signed with the agent's key, checked as
        `submit_result` checks it before sending."""
        rep = self._check_submit(job_id, shard, index, output_root, gpu_seconds)
        receipt = self.receipt_for(job_id, shard, index, output_root, gpu_seconds, exit_code)
        signature = receipt.sign(agent_key, self.chain_id, self.market.address)
        if receipt.recover(signature, self.chain_id, self.market.address).lower() != self.agent_of(rep.asset).lower():
            raise revert_error("job_market: receipt not signed by the asset's agent", preflight=True)
        return (job_id, shard, index, output_root, gpu_seconds, exit_code, signature)

    def submit_many(self, results: Sequence[tuple], sender: Any, **tx: Any) -> list[tuple[int, int, int]]:
        """Records many results (from `signed_result`) in one transaction; anyone may relay
        them. One the market refuses is skipped. Returns the (job, shard, replica) recorded."""
        receipt = self._relay("submit_many", list(results), sender, **tx)
        if receipt is None:
            return []
        events = receipt.events.filter(self.market.ResultSubmitted)
        return [(int(e.job), int(e.shard), int(e.replica)) for e in events]

    def signed_results(self, results: Sequence[tuple[int, int, int, bytes, int, int]], agent_key: Any) -> bytes:
        """The agent's one signature over the receipts of `results`, each (job, shard, index,
        output_root, gpu_seconds, exit_code) at its replica's current lease, for `submit_results`;
        each is checked as `submit_result` checks it before sending."""
        receipts, assets = [], set()
        for job_id, shard, index, output_root, gpu_seconds, exit_code in results:
            assets.add(self._check_submit(job_id, shard, index, output_root, gpu_seconds).asset)
            receipts.append(self.receipt_for(job_id, shard, index, output_root, gpu_seconds, exit_code))
        signature = sign_receipts(agent_key, self.chain_id, self.market.address, receipts)
        signer = recover_signer(batch_digest(self.chain_id, self.market.address, receipts), signature).lower()
        if any(self.agent_of(asset).lower() != signer for asset in assets):
            raise revert_error("job_market: receipt not signed by the asset's agent", preflight=True)
        return signature

    def submit_results(self, results: Sequence[tuple], signature: bytes, sender: Any, **tx: Any) -> Any:
        """Records the results of one agent, all or none, under its one signature (see
        `signed_results`; single-replica OPTIMISTIC and SPOT_CHECK jobs only); anyone may relay them.
        The market keeps one commitment for them, not each root: see `reveal_result`."""
        if len(results) > MAX_BATCH_RESULTS:
            raise ValueError(f"submit_results: {len(results)} results, at most {MAX_BATCH_RESULTS} in one batch")
        with typed_reverts():
            return self.market.submit_results([tuple(r) for r in results], signature, sender=sender, **tx)

    def batched_result(self, job_id: int, shard: int, index: int) -> tuple[tuple, list[bytes], int] | None:
        """What DisputeCourt.reveal_result takes for the replica's current result when it was
        recorded in a batch and its root is not on chain: (result, the batch's receipt hashes,
        its index), from the logs of the transaction that recorded it; None if there is nothing
        to reveal."""
        rep = self.replica(job_id, shard, index, root=False)
        if rep.state not in _WITH_RESULT or self._read("court", "result_root", job_id, shard, index) != ZERO_ROOT:
            return None
        submitted = [
            e
            for e in self._job_logs("market", "ResultSubmitted", job_id)
            if (int(e["args"]["shard"]), int(e["args"]["replica"])) == (shard, index)
        ]
        if not submitted:
            return None
        tx = submitted[-1]["transactionHash"]
        market = self.calls.market
        group: list[Any] = []
        for entry in self.web3.eth.get_transaction_receipt(tx)["logs"]:
            if str(entry["address"]).lower() != self.addresses["market"].lower():
                continue
            topic = bytes(entry["topics"][0])
            if topic == _topic(market.events.ResultSubmitted):
                group.append(market.events.ResultSubmitted().process_log(entry)["args"])
            elif topic == _topic(market.events.ResultsCommitted):
                receipts = [bytes(h) for h in market.events.ResultsCommitted().process_log(entry)["args"]["receipts"]]
                for position, args in enumerate(group):
                    if (int(args["job"]), int(args["shard"]), int(args["replica"])) == (job_id, shard, index):
                        result = (
                            job_id,
                            shard,
                            index,
                            bytes(args["output_root"]),
                            int(args["gpu_seconds"]),
                            int(args["exit_code"]),
                        )
                        return result, receipts, position
                group = []
        return None

    def reveal_result(self, job_id: int, shard: int, index: int, sender: Any, **tx: Any) -> Any:
        """Puts the root of the replica's batched result on chain (DisputeCourt.reveal_result), as
        a ruling by root needs; anyone may. Returns the receipt, or None when its root is
        already on chain (or it has no result)."""
        found = self.batched_result(job_id, shard, index)
        if found is None:
            return None
        with typed_reverts():
            return self.court.reveal_result(*found, sender=sender, **tx)

    def finalize_many(self, shards: Sequence[tuple[int, int]], sender: Any, **tx: Any) -> list[tuple[int, int]]:
        """Finalizes each (job, shard) in one transaction, e.g. every final shard of a job;
        one not ready is skipped. Returns the (job, shard) finalized."""
        receipt = self._relay("finalize_many", [tuple(s) for s in shards], sender, **tx)
        if receipt is None:
            return []
        finalized = {(int(e.job), int(e.shard)) for e in receipt.events.filter(self.market.ShardFinalized)}
        return [(j, s) for j, s in dict.fromkeys((int(j), int(s)) for j, s in shards) if (j, s) in finalized]

    def _relay(self, name: str, items: list, sender: Any, **tx: Any) -> Any:
        """Sends `items` through the relay's `name`; None when there are none."""
        if not items:
            return None
        if len(items) > RELAY_BATCH:
            raise ValueError(f"{name}: {len(items)} items, at most {RELAY_BATCH} in one transaction")
        with typed_reverts():
            return getattr(self.relay, name)(self.market.address, items, sender=sender, **tx)

    def receipt_for(
        self, job_id: int, shard: int, index: int, output_root: bytes, gpu_seconds: int, exit_code: int
    ) -> ExecutionReceipt:
        """The receipt an agent signs for a replica's current lease."""
        job = self.job(job_id)
        rep = self.replica(job_id, shard, index)
        return ExecutionReceipt(
            job=job_id,
            shard=shard,
            replica=index,
            lease=rep.lease,
            asset=rep.asset,
            manifest=job.manifest_hash,
            output_root=output_root,
            gpu_seconds=gpu_seconds,
            exit_code=exit_code,
        )

    def submit_result(
        self,
        job_id: int,
        shard: int,
        index: int,
        output_root: bytes,
        gpu_seconds: int,
        exit_code: int,
        agent_key: Any,
        sender: Any,
        **tx: Any,
    ) -> Any:
        """Signs the receipt with the agent's key, checks it would be accepted, submits."""
        result = self.signed_result(job_id, shard, index, output_root, gpu_seconds, exit_code, agent_key)
        with typed_reverts():
            return self.market.submit_result(*result, sender=sender, **tx)

    def _check_submit(self, job_id: int, shard: int, index: int, output_root: bytes, gpu_seconds: int) -> Replica:
        """Raises what the market's submit_result would fail with first; the replica as read."""
        rep = self.replica(job_id, shard, index)
        gpus = self.job(job_id).requirements.gpu_count
        self._check(preflight.submit_problem(rep, self.now(), output_root, gpu_seconds, gpus))
        return rep

    def register_model(
        self, artifact_hash: bytes, verifier: str, input_words: int, output_words: int, sender: Any, **tx: Any
    ) -> bytes:
        """Registers a zk model with its deployed verifier; returns the model id."""
        with typed_reverts():
            receipt = self.models.register_model(
                artifact_hash, verifier, input_words, output_words, sender=sender, **tx
            )
        return bytes(receipt.events.filter(self.models.ModelRegistered)[0].model)

    def bind_zk(self, manifest_hash: bytes, model_id: bytes, inputs_root: bytes, sender: Any, **tx: Any) -> Any:
        """Binds the sender's zk jobs with this manifest to a model and their inputs root (once, before posting)."""
        if not self.zk_model(model_id).registered:
            raise revert_error("model_registry: unregistered model", preflight=True)
        if self.zk_spec(str(sender.address), manifest_hash).bound:
            raise revert_error("model_registry: manifest already bound", preflight=True)
        with typed_reverts():
            return self.models.bind(manifest_hash, model_id, inputs_root, sender=sender, **tx)

    def submit_proven(
        self,
        job_id: int,
        shard: int,
        index: int,
        output_root: bytes,
        gpu_seconds: int,
        signature: bytes,
        proof: bytes,
        instances: Sequence[int],
        input_proof: Sequence[bytes],
        output_proof: Sequence[bytes],
        sender: Any,
        **tx: Any,
    ) -> Any:
        """Submits a zk job's result with its proof through the model registry, which checks
        it, submits the receipt (exit code 0, signed by the agent) and finalizes the shard."""
        self._check_submit(job_id, shard, index, output_root, gpu_seconds)
        with typed_reverts():
            return self.models.submit_result(
                job_id,
                shard,
                index,
                output_root,
                gpu_seconds,
                signature,
                proof,
                list(instances),
                list(input_proof),
                list(output_proof),
                sender=sender,
                **tx,
            )

    def checkpoint_for(self, job_id: int, shard: int, index: int, checkpoint: bytes, gpu_seconds: int) -> Checkpoint:
        """The Checkpoint an agent signs for a replica's current lease."""
        rep = self.replica(job_id, shard, index, root=False)
        return Checkpoint(
            job=job_id,
            shard=shard,
            replica=index,
            lease=rep.lease,
            asset=rep.asset,
            manifest=self.job(job_id).manifest_hash,
            checkpoint=checkpoint,
            gpu_seconds=gpu_seconds,
        )

    def checkpoint_problem(self, signed: SignedCheckpoint) -> str | None:
        """Why `commit_checkpoint(signed)` would revert now (None: it would go through)."""
        c = signed.checkpoint
        job = self.job(c.job)
        if job is None:
            return "job_market: unknown job"
        rep = self.replica(c.job, c.shard, c.replica, root=False)
        if rep.state == ReplicaState.ASSIGNED and c.lease != rep.lease:  # signed for another lease
            return "job_market: checkpoint not signed by the asset's agent"
        last = self.checkpoint(c.job, c.shard, c.replica).pending_of(rep.lease)
        problem = preflight.checkpoint_problem(
            rep, self.now(), c.checkpoint, c.gpu_seconds, job.requirements.gpu_count, last
        )
        if problem:
            return problem
        if c.asset != rep.asset or c.manifest != job.manifest_hash:
            return "job_market: checkpoint not signed by the asset's agent"
        signer = signed.signer(self.chain_id, self.market.address)
        if signer is None or signer.lower() != self.agent_of(rep.asset).lower():
            return "job_market: checkpoint not signed by the asset's agent"
        return None

    def commit_checkpoint(self, signed: SignedCheckpoint, sender: Any, **tx: Any) -> Any:
        """Relays an agent's signed checkpoint for its replica's current lease, after checking
        it would be accepted (anyone may relay)."""
        self._check(self.checkpoint_problem(signed))
        with typed_reverts():
            return self.market.commit_checkpoint(*signed.market_args(), sender=sender, **tx)

    def finalize(self, job_id: int, shard: int, sender: Any, **tx: Any) -> Any:
        self._check(preflight.finalize_problem(self.shard(job_id, shard).replicas, self.now()))
        with typed_reverts():
            return self.market.finalize(job_id, shard, sender=sender, **tx)

    def reclaim(self, job_id: int, shard: int, index: int, sender: Any, **tx: Any) -> Any:
        """Reclaims an expired lease (without a slash while the market is paused)."""
        self._check(preflight.reclaim_problem(self.replica(job_id, shard, index), self.now()))
        with typed_reverts():
            return self.market.reclaim(job_id, shard, index, sender=sender, **tx)

    def cancel(self, job_id: int, shard: int, sender: Any, **tx: Any) -> Any:
        job = self.job(job_id)
        if job is None:
            raise revert_error("job_market: unknown job", preflight=True)
        if str(sender.address).lower() != job.client.lower():
            raise revert_error("job_market: caller is not the client", preflight=True)
        replicas = self.shard(job_id, shard).replicas
        window = self.parameters().decline_window
        self._check(preflight.cancel_problem(job, str(sender.address), replicas, self.now(), window))
        with typed_reverts():
            return self.market.cancel(job_id, shard, sender=sender, **tx)

    def cancel_with_signature(
        self, job_id: int, shard: int, valid_before: int, signature: bytes, sender: Any, **tx: Any
    ) -> Any:
        """Relays a client's signed cancel (`sign_cancel`) through the court; `sender` pays the gas."""
        job = self.job(job_id)
        if job is None:
            raise revert_error("job_market: unknown job", preflight=True)
        if valid_before <= self.now():
            raise revert_error("dispute_court: cancel signature expired", preflight=True)
        signer = cancel_signer(self.chain_id, str(self.market.address), job_id, shard, valid_before, signature)
        if signer.lower() != job.client.lower():
            raise revert_error("dispute_court: cancel not signed by the client", preflight=True)
        replicas = self.shard(job_id, shard).replicas
        window = self.parameters().decline_window
        self._check(preflight.cancel_problem(job, job.client, replicas, self.now(), window))
        with typed_reverts():
            return self.court.cancel_with_signature(job_id, shard, valid_before, signature, sender=sender, **tx)

    def challenge(self, job_id: int, shard: int, sender: Any, **tx: Any) -> Any:
        """Challenges a shard's results at the dispute court, approving the market for the bond first."""
        self._approve(self.market, self.challenge_bond(), sender, **tx)
        with typed_reverts():
            return self.court.challenge(job_id, shard, sender=sender, **tx)

    def resolve(self, job_id: int, shard: int, valid_root: bytes, sender: Any, **tx: Any) -> Any:
        """Rules on a dispute by root (facilitators): replicas with `valid_root` stand (zero: all do)."""
        with typed_reverts():
            return self.court.resolve(job_id, shard, valid_root, sender=sender, **tx)

    def resolve_replicas(self, job_id: int, shard: int, rejected: Iterable[int], sender: Any, **tx: Any) -> Any:
        """Rules on a dispute replica by replica (facilitators): those in `rejected` are slashed."""
        with typed_reverts():
            return self.court.resolve_replicas(job_id, shard, rejected_mask(rejected), sender=sender, **tx)

    def expire(self, job_id: int, shard: int, sender: Any, **tx: Any) -> Any:
        """Applies the default outcome to a dispute no one ruled on by its deadline."""
        with typed_reverts():
            return self.court.expire(job_id, shard, sender=sender, **tx)

    def withdraw(self, sender: Any, receiver: Any = None, **tx: Any) -> int:
        receiver = receiver or sender
        if str(getattr(receiver, "address", receiver)) == "0x" + "00" * 20:
            raise revert_error("settlement: zero receiver", preflight=True)
        amount = self.credits(sender)
        if amount == 0:
            raise revert_error("settlement: nothing to withdraw", preflight=True)
        with typed_reverts():
            self.market.withdraw(receiver, sender=sender, **tx)
        return amount

    def _approve(self, spender: Any, amount: int, owner: Any, **tx: Any) -> None:
        if self.allowance(owner, spender) < amount:
            with typed_reverts():
                self.token.approve(spender, amount, sender=owner, **tx)

    # ------------------------------------------------------------- roles' own actions
    # Keepers' bonds, asset endpoints, agents' declines, challenges and withdrawals, each
    # checked against the contract's rules before it is sent.

    def keeper(self, account: Any) -> KeeperBond:
        """`account`'s keeper record (id 0 when it is not a keeper)."""
        raw = self.keepers.keeper(account)
        return KeeperBond(id=int(raw.id), bond=int(raw.bond), exit_at=int(raw.exit_at))

    def register_keeper(self, bond: int, sender: Any, **tx: Any) -> int:
        """Bonds `bond` base units and makes `sender` a keeper, approving the registry first
        when needed; returns the keeper id."""
        self._check(preflight.keeper_register_problem(self.keeper(sender), bond, int(self.keepers.min_bond())))
        self._check_balance(sender, bond)
        self._approve(self.keepers, bond, sender, **tx)
        with typed_reverts():
            receipt = self.keepers.register(bond, sender=sender, **tx)
        return int(receipt.events.filter(self.keepers.KeeperRegistered)[0].id)

    def request_keeper_exit(self, sender: Any, **tx: Any) -> int:
        """Stops `sender` assigning work and starts its unbonding delay; returns when the bond
        may be withdrawn (unix seconds)."""
        self._check(preflight.keeper_exit_problem(self.keeper(sender)))
        with typed_reverts():
            receipt = self.keepers.request_exit(sender=sender, **tx)
        return int(receipt.events.filter(self.keepers.KeeperExitRequested)[0].exit_at)

    def withdraw_keeper_bond(self, sender: Any, **tx: Any) -> int:
        """Pays `sender`'s bond back after its unbonding delay; returns the base units paid."""
        self._check(preflight.keeper_withdraw_problem(self.keeper(sender), self.now()))
        with typed_reverts():
            receipt = self.keepers.withdraw_bond(sender=sender, **tx)
        return int(receipt.events.filter(self.keepers.KeeperBondWithdrawn)[0].amount)

    def set_endpoint(self, asset_id: int, endpoint: str, sender: Any, **tx: Any) -> Any:
        """Sets the asset's endpoint (its owner or an approved operator)."""
        if len(endpoint.encode()) > MAX_ENDPOINT_BYTES:
            raise revert_error(f"compute_asset: endpoint longer than {MAX_ENDPOINT_BYTES} bytes", preflight=True)
        asset = self.asset(asset_id)
        if asset is None:
            raise revert_error("erc721: unknown token", preflight=True)
        caller = str(getattr(sender, "address", sender))
        if caller.lower() != asset.owner.lower():
            approved = str(self.assets.getApproved(asset_id)).lower() == caller.lower()
            if not (approved or self.assets.isApprovedForAll(asset.owner, caller)):
                raise revert_error("compute_asset: caller is not owner nor approved", preflight=True)
        with typed_reverts():
            return self.assets.set_endpoint(asset_id, endpoint, sender=sender, **tx)

    def decline(self, job_id: int, shard: int, index: int, reason: bytes, sender: Any, **tx: Any) -> Any:
        """Hands back an assignment the asset's agent (`sender`) cannot run, inside the decline
        window; `reason` is at most 32 bytes (e.g. b"image not found")."""
        if len(reason) > 32:
            raise ValueError(f"a decline reason is at most 32 bytes, not {len(reason)}")
        rep = self.replica(job_id, shard, index, root=False)
        agent = str(self.assets.agentOf(rep.asset))
        caller = str(getattr(sender, "address", sender))
        self._check(preflight.decline_problem(rep, caller, agent, self.parameters().decline_window, self.now()))
        with typed_reverts():
            return self.market.decline(job_id, shard, index, reason.ljust(32, b"\x00"), sender=sender, **tx)

    def check_challenge(self, job_id: int, shard: int, challenger: Any) -> int:
        """Raises what a challenge of the shard by `challenger` would fail with, in the court's
        order; returns the bond it posts."""
        job = self.job(job_id)
        replicas = self.shard(job_id, shard).replicas if job and 0 <= shard < job.requirements.shard_count else ()
        if job is None or not 0 <= shard < job.requirements.shard_count:
            self._check(preflight.challenge_problem(job, shard, replicas, self.now()))
        caller = str(getattr(challenger, "address", challenger)).lower()
        for rep in replicas:
            if rep.state in (ReplicaState.OPEN, ReplicaState.CANCELLED):
                continue
            if caller in (str(self.assets.ownerOf(rep.asset)).lower(), str(self.assets.agentOf(rep.asset)).lower()):
                raise revert_error("dispute_court: provider cannot challenge its shard", preflight=True)
        self._check(preflight.challenge_problem(job, shard, replicas, self.now()))
        bond = int(self.market.challenge_bond())
        self._check_balance(challenger, bond)
        return bond

    def dispute(self, job_id: int, shard: int) -> Dispute | None:
        """The shard's dispute now open, else the last one ruled on; None if it never had one."""
        from ape import chain

        replicas = self.shard(job_id, shard).replicas
        disputed = tuple(r.index for r in replicas if r.state == ReplicaState.DISPUTED)
        if disputed:
            challenger, bond = self.court.challenge_of(job_id, shard)
            return Dispute(
                job=job_id,
                shard=shard,
                open=True,
                challenger=None if int(str(challenger), 16) == 0 else str(challenger),
                bond=int(bond),
                disputed=disputed,
                ruling_deadline=int(self.court.ruling_deadline(job_id, shard)),
                arbiter=None,
                upheld=0,
                rejected=(),
            )
        stop = chain.blocks.height + 1
        topics = {"job": job_id}

        def of_shard(event: Any) -> list[Any]:
            logs = event.range(self.deployment_block, stop, search_topics=topics)
            return [log for log in logs if int(log.shard) == shard]

        resolved = of_shard(self.market.DisputeResolved)
        if not resolved:
            return None
        last = resolved[-1]
        opened = [log for log in of_shard(self.market.DisputeOpened) if log.block_number <= last.block_number]
        rejected = [
            int(log.replica)
            for log in of_shard(self.market.ReplicaRejected)
            if log.transaction_hash == last.transaction_hash
        ]
        challenger = str(opened[-1].challenger) if opened else None
        return Dispute(
            job=job_id,
            shard=shard,
            open=False,
            challenger=None if challenger is None or int(challenger, 16) == 0 else challenger,
            bond=int(opened[-1].bond) if opened else 0,
            disputed=(),
            ruling_deadline=None,
            arbiter=None if int(str(last.facilitator), 16) == 0 else str(last.facilitator),
            upheld=int(last.upheld),
            rejected=tuple(sorted(rejected)),
        )

    def withdraw_many(self, accounts: Iterable[Any], sender: Any, **tx: Any) -> int:
        """Pays each account its own market credit (anyone may send it); returns the total paid."""
        accounts = [str(getattr(a, "address", a)) for a in accounts]
        total = sum(self.credits(a) for a in accounts)
        if total == 0:
            raise revert_error("settlement: nothing to withdraw", preflight=True)
        with typed_reverts():
            self.market.withdraw_many(accounts, sender=sender, **tx)
        return total

    def _check_balance(self, owner: Any, amount: int) -> None:
        if self.token.balanceOf(owner) < amount:
            raise revert_error("ERC20: transfer amount exceeds balance", preflight=True)


def rejected_mask(replicas: Iterable[int]) -> int:
    """The court's `rejected` bitmask for replica indices: bit r set for replica r."""
    mask = 0
    for replica in replicas:
        if not 0 <= replica < 256:
            raise ValueError(f"replica index {replica} out of range")
        mask |= 1 << replica
    return mask


def _topic(event: Any) -> bytes:
    """topic0 of a web3 contract event class."""
    return bytes(event_abi_to_log_topic(event.abi))


def _contract(web3: Any, role: str, address: str) -> Any:
    from computenet.web3calls import contract

    return contract(web3, CONTRACT_TYPES[role], address)


def _address(account: Any) -> str:
    return str(getattr(account, "address", account))
