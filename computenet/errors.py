"""Typed errors raised by the computenet SDK.

Every SDK error derives from `ComputenetError`, so callers can catch the whole
family at once; errors that are also plain value errors keep `ValueError` as a
base so generic handlers still see them.
"""


class ComputenetError(Exception):
    """Base of every error the SDK raises on purpose."""


class ManifestError(ComputenetError, ValueError):
    """A job manifest is malformed; the message starts with the field path, e.g. `manifest.image: ...`."""


class InvalidSignature(ComputenetError):
    """A signature is malformed, malleable (high s, v not 27/28) or recovers no signer."""


class ContractRevert(ComputenetError):
    """A contract refused a call. `reason` is the contract's revert string, word for word
    (e.g. "job_market: lease expired"), whether the chain said it or a pre-flight
    check predicted it before anything was sent."""

    def __init__(self, reason: str, *, preflight: bool = False) -> None:
        self.reason = reason
        self.preflight = preflight
        when = "would revert" if preflight else "reverted"
        super().__init__(f"{when}: {reason}")


class JobMarketError(ContractRevert):
    """JobMarket refused: a job, shard, replica or dispute rule."""


class MarketParamsError(ContractRevert):
    """JobMarket's owner functions, facilitator role or pause refused."""


class SettlementError(ContractRevert):
    """Withdrawing credits failed."""


class ComputeAssetError(ContractRevert):
    """ComputeAsset (ERC-7829 / ERC-721) refused."""


class StakeError(ContractRevert):
    """An asset's stake rule refused (minimum, unbonding, open leases)."""


class KeeperError(ContractRevert):
    """KeeperRegistry refused: not a keeper, exiting, bond too small."""


class OwnershipError(ContractRevert):
    """An owner-only function was called by someone else."""


class DisputeCourtError(ContractRevert):
    """The dispute court refused (who may challenge, ruling deadlines)."""


class ModelRegistryError(ContractRevert):
    """The model registry refused (zk models, jobs' bindings, proofs)."""


class AttestationRegistryError(ContractRevert):
    """The attestation registry refused (attestors, node and result verdicts)."""


class BatchRelayError(ContractRevert):
    """The batch relay refused (a batch that ran out of gas part-way)."""


class AuthorizationFunderError(ContractRevert):
    """The authorization funder refused (who may fund, used or unsigned authorizations)."""


class TokenError(ContractRevert):
    """The payment token refused (balance, allowance, authorization)."""


_PREFIXES: tuple[tuple[str, type[ContractRevert]], ...] = (
    ("job_market:", JobMarketError),
    ("market_params:", MarketParamsError),
    ("dispute_court:", DisputeCourtError),
    ("model_registry:", ModelRegistryError),
    ("attestations:", AttestationRegistryError),
    ("batch_relay:", BatchRelayError),
    ("authorization_funder:", AuthorizationFunderError),
    ("settlement:", SettlementError),
    ("compute_asset:", ComputeAssetError),
    ("erc721:", ComputeAssetError),
    ("asset_stakes:", StakeError),
    ("keeper_registry:", KeeperError),
    ("ownable:", OwnershipError),
    ("ERC20:", TokenError),
    ("FiatTokenV2:", TokenError),
    ("test_token:", TokenError),
)


def revert_error(reason: str, *, preflight: bool = False) -> ContractRevert:
    """The typed error for a revert string."""
    for prefix, cls in _PREFIXES:
        if reason.startswith(prefix):
            return cls(reason, preflight=preflight)
    return ContractRevert(reason, preflight=preflight)
