"""Joining a network and loading a key, the same way for every long-running role (keeper,
agent): an ape network choice or a node URI, and an ape account alias."""

from __future__ import annotations

import os
from typing import Any

from computenet.errors import ComputenetError


class ConfigError(ComputenetError):
    """A role cannot start: a fatal misconfiguration, named in the message."""


def comma_list(value: object) -> object:
    """A comma-separated setting from the environment as a list; an int as a one-item list;
    anything else unchanged (for pydantic-settings "before" validators)."""
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    if isinstance(value, int):
        return [value]
    return value


def network_context(network: str) -> Any:
    """ape's provider context for `network`. A node on this machine (an http URI on the
    loopback) is joined through ape-foundry, which decodes revert reasons from anvil; ape's
    generic node provider would report them as "reverted without message"."""
    from urllib.parse import urlparse

    from ape import networks

    url = urlparse(network)
    if url.scheme in ("http", "https") and url.hostname in ("127.0.0.1", "localhost"):
        return networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": network})
    return networks.parse_network_choice(network)


def load_account(alias: str) -> Any:
    """The ape account for `alias`: "TEST::n" for a local test key, otherwise an imported
    keyfile whose passphrase is in APE_ACCOUNTS_<alias>_PASSPHRASE (a bot cannot be prompted)."""
    from ape import accounts

    if alias.upper().startswith("TEST::"):
        try:
            return accounts.test_accounts[int(alias.split("::", 1)[1])]
        except (ValueError, IndexError):
            raise ConfigError(f"account {alias!r}: no such test account") from None
    try:
        account = accounts.load(alias)
    except Exception:
        known = ", ".join(a.alias for a in accounts if getattr(a, "alias", None)) or "none"
        raise ConfigError(f"account {alias!r} is not an imported ape account (known: {known})") from None
    if hasattr(account, "set_autosign"):
        passphrase = os.environ.get(f"APE_ACCOUNTS_{alias}_PASSPHRASE")
        if not passphrase:
            raise ConfigError(f"account {alias!r} is locked: set APE_ACCOUNTS_{alias}_PASSPHRASE")
        account.set_autosign(True, passphrase=passphrase)
    return account


# Unused gas is not charged, and a limit near the block's (ape's default on local chains)
# lets one transaction fill a block. The margin covers storage that another transaction in
# the same block turns from zero to non-zero.
GAS_MARGIN = 1.5


ESTIMATE_GAS_CAP = 15_000_000  # the most gas an estimate may find (half a 30M block)


def broadcast(method: Any, args: tuple, account: Any, estimate_at: str | None = None) -> Any:
    """Estimates `method(*args)`, signs it with `account` at the node's pending nonce and a
    gas limit of the estimate × GAS_MARGIN, and broadcasts it without waiting; returns the
    transaction hash. A revert found by the estimate raises ape's ContractLogicError and
    nothing is sent; a node that refuses the transaction raises web3's Web3RPCError."""
    from ape import networks

    provider = networks.provider
    nonce = provider.web3.eth.get_transaction_count(account.address, "pending")
    txn = method.as_transaction(*args, sender=account, nonce=nonce, gas=ESTIMATE_GAS_CAP)
    # `estimate_at="pending"`: against the pending block, whose clock the transaction will be
    # mined by (a result's metering is bounded by the time since its assignment).
    txn.gas_limit = int(provider.estimate_gas_cost(txn, block_id=estimate_at) * GAS_MARGIN)
    signed = account.sign_transaction(txn)
    return provider.web3.eth.send_raw_transaction(signed.serialize_transaction())
