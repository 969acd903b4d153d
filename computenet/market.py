"""The one seam between the chain and the application.

`Market` wraps the four deployed contracts (through ape), returns typed domain objects,
checks each action against the contracts' rules before sending it (so a doomed
transaction fails early with the reason the chain would give), and turns chain reverts
into the same typed errors (computenet.errors).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from computenet import preflight
from computenet.deployments import DeploymentNotFound, load
from computenet.domain import (
    Asset,
    Dispute,
    Job,
    KeeperBond,
    Parameters,
    Replica,
    ReplicaState,
    Requirements,
    Shard,
    Spec,
    Stake,
    Verification,
)
from computenet.errors import revert_error
from computenet.events import Event, from_log
from computenet.receipts import ExecutionReceipt, cancel_signer

MAX_UINT256 = 2**256 - 1
MAX_ENDPOINT_BYTES = 256  # ComputeAsset's String[256]


def _spec(raw: Any) -> Spec:
    return Spec(*[bool(x) if isinstance(x, bool) else int(x) for x in raw])


def _requirements(raw: Any) -> Requirements:
    values = [int(x) for x in raw]
    values[7] = Verification(values[7])
    return Requirements(*values)


@contextmanager
def typed_reverts(preflight: bool = False) -> Iterator[None]:
    """Re-raises ape's ContractLogicError as the SDK's typed error for its reason;
    `preflight` marks refusals found by a read, before anything was sent."""
    from ape.exceptions import ContractLogicError

    try:
        yield
    except ContractLogicError as err:
        raise revert_error(str(err.message), preflight=preflight) from err


class Market:
    """The deployed computenet contracts on one network."""

    def __init__(self, token: Any, assets: Any, keepers: Any, market: Any, court: Any) -> None:
        self.token = token
        self.assets = assets
        self.keepers = keepers
        self.market = market
        self.court = court
        self.deployment_block = 0  # where to start reading events; from_deployments knows it

    @classmethod
    def from_stack(cls, stack: Any) -> Market:
        return cls(stack.token, stack.assets, stack.keepers, stack.market, stack.court)

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
        )

    @classmethod
    def from_deployments(cls, network: str | None = None) -> Market:
        """The market recorded in deployments.json for `network` (default: the connected one)."""
        from ape import chain, networks

        if network is None:
            network = f"{networks.provider.network.ecosystem.name}:{networks.provider.network.name}"
        record = load(network)
        if record.get("chain_id") not in (None, chain.chain_id):
            raise DeploymentNotFound(
                f"the {network} deployment was made on chain {record['chain_id']}, but the connected chain is {chain.chain_id}"
            )
        if not networks.provider.get_code(record["market"]):
            raise DeploymentNotFound(
                f"no contract at the recorded market {record['market']} on {network}: "
                "the chain was reset since deployment; run `ape run deploy` again"
            )
        market = cls.at(record)
        market.deployment_block = int(record.get("block", 0))
        return market

    # ------------------------------------------------------------- reads

    @property
    def chain_id(self) -> int:
        from ape import chain

        return chain.chain_id

    def now(self) -> int:
        """Timestamp the next block will (at least) have."""
        from ape import chain

        return chain.pending_timestamp

    def parameters(self) -> Parameters:
        return Parameters(*[int(x) for x in self.market.parameters()])

    def paused(self) -> bool:
        return bool(self.market.paused())

    def job(self, job_id: int) -> Job | None:
        """The job, or None if no job has this id."""
        if not 0 < job_id <= self.market.job_count():
            return None
        raw = self.market.job(job_id)
        return Job(
            id=job_id,
            client=str(raw.client),
            escrow=int(raw.escrow),
            manifest_hash=bytes(raw.manifest_hash),
            requirements=_requirements(raw.requirements),
            keeper_fee_bps=int(raw.keeper_fee_bps),
            protocol_fee_bps=int(raw.protocol_fee_bps),
            unfinished=int(raw.unfinished),
        )

    def replica(self, job_id: int, shard: int, index: int, *, root: bool = True) -> Replica:
        """A replica; an unknown job, shard or replica raises the contract's typed error.
        `root=False` skips the read of its output root (left zero), for callers that need only its state."""
        with typed_reverts(preflight=True):
            raw = self.market.replica(job_id, shard, index)
        return Replica(
            job=job_id,
            shard=shard,
            index=index,
            asset=int(raw.asset),
            keeper_id=int(raw.keeper),
            state=ReplicaState(int(raw.state)),
            lease=int(raw.lease),
            price=int(raw.price),
            deadline=int(raw.deadline),
            since=int(raw.since),
            gpu_seconds=int(raw.gpu_seconds),
            output_root=bytes(self.market.output_root(job_id, shard, index)) if root else b"\x00" * 32,
        )

    def shard(self, job_id: int, shard: int) -> Shard:
        job = self.job(job_id)
        if job is None:
            raise revert_error("job_market: unknown job", preflight=True)
        if not 0 <= shard < job.requirements.shard_count:
            raise revert_error("job_market: unknown shard", preflight=True)
        return Shard(
            job=job_id,
            index=shard,
            replicas=tuple(self.replica(job_id, shard, r) for r in range(job.requirements.replication)),
        )

    def shards(self, job_id: int) -> list[Shard]:
        job = self.job(job_id)
        if job is None:
            raise revert_error("job_market: unknown job", preflight=True)
        return [self.shard(job_id, s) for s in range(job.requirements.shard_count)]

    def stake(self, asset_id: int) -> Stake:
        return Stake(*[int(x) for x in self.assets.stake(asset_id)])

    def endpoint(self, asset_id: int) -> str:
        """Where the asset's agent serves signed heartbeats and outputs ("" when it names none)."""
        return str(self.assets.endpoint(asset_id))

    def asset(self, asset_id: int) -> Asset | None:
        """The asset, or None if no asset has this id."""
        if not 0 < asset_id <= self.assets.totalSupply():
            return None
        return Asset(
            id=asset_id,
            owner=str(self.assets.ownerOf(asset_id)),
            agent=str(self.assets.agentOf(asset_id)),
            spec=_spec(self.assets.spec(asset_id)),
            commit=bytes(self.assets.commitByTokenId(asset_id)),
            stake=self.stake(asset_id),
            endpoint=self.endpoint(asset_id),
        )

    def assets_of(self, owner: str) -> list[Asset]:
        """Assets `owner` holds now (scans ids; fine for the registry sizes a CLI lists)."""
        found = []
        for asset_id in range(1, self.assets.totalSupply() + 1):
            if str(self.assets.ownerOf(asset_id)).lower() == str(owner).lower():
                found.append(self.asset(asset_id))
        return found

    def quote(self, req: Requirements) -> int:
        return int(self.market.quote(req.as_tuple()))

    def credits(self, account: Any) -> int:
        return int(self.market.credits(account))

    def events(self, start_block: int = 0, stop_block: int | None = None) -> list[Event]:
        """Every event of the asset registry, keeper registry and market from
        `start_block` up to and excluding `stop_block` (default: to the head), in chain order.
        One `eth_getLogs` per page of blocks for all three contracts."""
        from ape import chain
        from ape.types import LogFilter

        last = chain.blocks.height if stop_block is None else stop_block - 1
        if last < start_block:
            return []
        contracts = (self.assets, self.keepers, self.market)
        abis = {abi.selector: abi for contract in contracts for abi in contract.contract_type.events}
        log_filter = LogFilter(
            addresses=[contract.address for contract in contracts],
            events=list(abis.values()),
            start_block=start_block,
            stop_block=last,
        )
        logs = sorted(chain.provider.get_contract_logs(log_filter), key=lambda log: (log.block_number, log.log_index))
        return [from_log(log) for log in logs]

    # ------------------------------------------------------------- checks

    def _check(self, problem: str | None) -> None:
        if problem:
            raise revert_error(problem, preflight=True)

    def check_post(self, manifest_hash: bytes, req: Requirements, client: Any) -> int:
        """Raises what `post_job` would fail with; returns the budget it escrows."""
        self._check(preflight.post_problem(manifest_hash, req, self.parameters(), self.now(), self.paused()))
        budget = self.quote(req)
        if self.token.balanceOf(client) < budget:
            raise revert_error("ERC20: transfer amount exceeds balance", preflight=True)
        return budget

    def check_assign(self, job_id: int, shard: int, asset_id: int, keeper: Any) -> None:
        """Raises what `assign` would fail with, in the contract's order: pause, keeper,
        then the job, shard, asset and replica rules."""
        paused = self.paused()
        if paused:
            raise revert_error("market_params: paused", preflight=True)
        with typed_reverts(preflight=True):
            self.keepers.active_keeper_id(keeper)
        job = self.job(job_id)
        replicas = self.shard(job_id, shard).replicas if job and 0 <= shard < job.requirements.shard_count else ()
        asset = self.asset(asset_id) if asset_id <= preflight.UINT32_MAX else None
        self._check(
            preflight.assign_problem(
                job, shard, replicas, asset, self.parameters(), self.now(), paused, asset_id=asset_id
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
        rep = self.replica(job_id, shard, index)
        gpus = self.job(job_id).requirements.gpu_count
        self._check(preflight.submit_problem(rep, self.now(), output_root, gpu_seconds, gpus))
        receipt = self.receipt_for(job_id, shard, index, output_root, gpu_seconds, exit_code)
        signature = receipt.sign(agent_key, self.chain_id, self.market.address)
        if (
            receipt.recover(signature, self.chain_id, self.market.address).lower()
            != str(self.assets.agentOf(rep.asset)).lower()
        ):
            raise revert_error("job_market: receipt not signed by the asset's agent", preflight=True)
        with typed_reverts():
            return self.market.submit_result(
                job_id, shard, index, output_root, gpu_seconds, exit_code, signature, sender=sender, **tx
            )

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
        self._approve(self.market, self.market.challenge_bond(), sender, **tx)
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
        if self.token.allowance(owner, spender) < amount:
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
