"""Deploying the four contracts and linking them: one code path for scripts and tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp
from eth_utils import keccak, to_canonical_address, to_checksum_address

from computenet.domain import Parameters

# Defaults for a new market: 1 % keeper fee, 0.5 % protocol fee, 10 % slash per fault,
# 10-minute challenge window, 1-minute decline window, 5-minute lease set-up grace,
# 100-token minimum stake, 10-token challenge bond (6-decimal token).
DEFAULT_PARAMETERS = Parameters(
    keeper_fee_bps=100,
    protocol_fee_bps=50,
    slash_bps=1000,
    challenge_window=600,
    decline_window=60,
    lease_grace=300,
    min_stake=100 * 10**6,
    challenge_bond=10 * 10**6,
)
DEFAULT_MIN_KEEPER_BOND = 100 * 10**6
DEFAULT_UNBONDING_DELAY = 86_400
DEFAULT_TEE_WINDOW = 60  # seconds an attested TEE result stays open to disputes
TEST_TOKEN_NAME = "computenet Test USD"


@dataclass(frozen=True)
class Stack:
    """The deployed contracts (ape ContractInstances)."""

    token: Any
    assets: Any
    keepers: Any
    market: Any
    court: Any
    models: Any
    attestations: Any
    relay: Any
    funder: Any

    def addresses(self) -> dict[str, str]:
        return {
            "token": str(self.token.address),
            "assets": str(self.assets.address),
            "keepers": str(self.keepers.address),
            "market": str(self.market.address),
            "court": str(self.court.address),
            "models": str(self.models.address),
            "attestations": str(self.attestations.address),
            "relay": str(self.relay.address),
            "funder": str(self.funder.address),
        }


def create_address(deployer: str, nonce: int) -> str:
    """The address a CREATE from `deployer` at `nonce` gets."""
    return to_checksum_address(keccak(rlp.encode([to_canonical_address(deployer), nonce]))[12:])


def deploy_stack(
    project: Any,
    deployer: Any,
    *,
    treasury: str | None = None,
    token: Any = None,
    parameters: Parameters = DEFAULT_PARAMETERS,
    min_keeper_bond: int = DEFAULT_MIN_KEEPER_BOND,
    unbonding_delay: int = DEFAULT_UNBONDING_DELAY,
    tee_window: int = DEFAULT_TEE_WINDOW,
    **tx: Any,
) -> Stack:
    """Deploys TestToken (unless `token` is given, e.g. USDC), KeeperRegistry, BatchRelay,
    ComputeAsset, JobMarket, DisputeCourt, ModelRegistry, AttestationRegistry (whose
    attested results stay open to disputes for `tee_window` seconds) and
    AuthorizationFunder.

    ComputeAsset takes the market's address as an immutable, and the market the
    court's, the two registries' and the funder's, so each is deployed with the address it will
    get; the deployer account must send nothing else in between, which is checked.
    """
    if token is None:
        token = deployer.deploy(project.TestToken, TEST_TOKEN_NAME, **tx)
    keepers = deployer.deploy(project.KeeperRegistry, token, min_keeper_bond, unbonding_delay, **tx)
    relay = deployer.deploy(project.BatchRelay, **tx)
    predicted_market = create_address(deployer.address, deployer.nonce + 1)
    predicted_court = create_address(deployer.address, deployer.nonce + 2)
    predicted_models = create_address(deployer.address, deployer.nonce + 3)
    predicted_attestations = create_address(deployer.address, deployer.nonce + 4)
    predicted_funder = create_address(deployer.address, deployer.nonce + 5)
    assets = deployer.deploy(project.ComputeAsset, token, unbonding_delay, predicted_market, **tx)
    market = deployer.deploy(
        project.JobMarket,
        token,
        assets,
        keepers,
        predicted_court,
        predicted_models,
        predicted_attestations,
        relay,
        predicted_funder,
        treasury or deployer.address,
        parameters.as_tuple(),
        **tx,
    )
    court = deployer.deploy(project.DisputeCourt, market, assets, **tx)
    models = deployer.deploy(project.ModelRegistry, market, **tx)
    attestations = deployer.deploy(project.AttestationRegistry, market, assets, tee_window, **tx)
    funder = deployer.deploy(project.AuthorizationFunder, market, token, **tx)
    for name, got, predicted in (
        ("JobMarket", market, predicted_market),
        ("DisputeCourt", court, predicted_court),
        ("ModelRegistry", models, predicted_models),
        ("AttestationRegistry", attestations, predicted_attestations),
        ("AuthorizationFunder", funder, predicted_funder),
    ):
        if got.address != predicted:
            raise RuntimeError(
                f"{name} deployed at {got.address}, not at {predicted} where the contract before it expects it: "
                "another transaction from the deployer came in between; deploy again"
            )
    return Stack(
        token=token,
        assets=assets,
        keepers=keepers,
        market=market,
        court=court,
        models=models,
        attestations=attestations,
        relay=relay,
        funder=funder,
    )


def deploy_verifier(artifacts: Any, deployer: Any, **tx: Any) -> Any:
    """Deploys a zk model's EZKL verifier (`artifacts`: computenet.zk.ModelArtifacts) from the
    init code solcjs compiled in `make zk`; no Solidity compiler plugin builds it here, so the
    contract type is given by hand."""
    from ape.contracts import ContractContainer
    from ethpm_types import ContractType

    contract_type = ContractType(
        contractName="Halo2Verifier",
        abi=artifacts.verifier_abi(),
        deploymentBytecode={"bytecode": "0x" + artifacts.verifier_initcode().hex()},
    )
    return deployer.deploy(ContractContainer(contract_type), **tx)
