"""Small helpers shared by the `ape run` scripts: amounts, network names, output."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import click

from computenet.errors import ContractRevert
from computenet.explain import PLAIN

DECIMALS = 6  # USDC and the test token
LOCAL_CHAIN_IDS = (31337, 1337)


def parse_amount(text: str, decimals: int = DECIMALS) -> int:
    """ "12.5" tokens -> base units; refuses more decimals than the token has."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not a number") from None
    base = value * (10**decimals)
    if value < 0 or base != base.to_integral_value():
        raise click.BadParameter(f"{text!r} is not a non-negative amount with at most {decimals} decimals")
    return int(base)


def format_amount(base_units: int, decimals: int = DECIMALS) -> str:
    return f"{Decimal(base_units) / (10**decimals):,.{decimals}f}".rstrip("0").rstrip(".")


def network_key(ecosystem: Any, network: Any) -> str:
    """The deployments.json key of the connected network, e.g. "ethereum:local"."""
    return f"{ecosystem.name}:{network.name}"


def is_local(chain_id: int) -> bool:
    return chain_id in LOCAL_CHAIN_IDS


def fail(message: str) -> None:
    """Stops the script with a clear message and exit code 1."""
    raise click.ClickException(message)


def pay_credits(market: Any, account: Any, receiver: str | None = None) -> None:
    """Pays `account`'s whole credit in the market to `receiver` (default: itself) and says so;
    a bad receiver or nothing to pay is one clear error, before anything is sent."""
    from eth_utils import is_address

    if receiver and not is_address(receiver):
        raise click.ClickException(f"--to {receiver!r} is not an address")
    if not market.credits(account):
        raise click.ClickException(f"nothing to withdraw: {account.address} has no credits in the market")
    paid = market.withdraw(account, receiver)
    click.echo(f"{format_amount(paid)} paid to {receiver or account.address}")


class Refusal(click.ClickException):
    """A contract's refusal (a ContractRevert). The one `Error:` line on stderr keeps the
    contract's exact words, which scripts and tests match; their plain meaning (see
    computenet/explain.py) follows on stdout."""

    def __init__(self, error: ContractRevert) -> None:
        super().__init__(str(error))
        self.plain = PLAIN.get(error.reason)

    def show(self, file: Any = None) -> None:
        super().show(file)
        if self.plain:
            click.echo(self.plain)


def refusal_line(error: ContractRevert) -> str:
    """A refusal on one line: the contract's exact words, then their plain meaning when known."""
    plain = PLAIN.get(error.reason)
    return f"{error}. {plain}" if plain else str(error)


def clear_errors(command):
    """Shows SDK errors (reverts, pre-flight refusals, missing deployments) as one
    clear line and exit code 1, instead of a traceback; a refusal is explained after it."""
    import functools

    from computenet.errors import ComputenetError

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ContractRevert as err:
            raise Refusal(err) from None
        except ComputenetError as err:
            raise click.ClickException(str(err)) from None

    return wrapper


def settings_message(error: Exception, prefix: str, role: str) -> str:
    """An error as one line; a pydantic-settings validation error names each variable
    (`prefix` + field) that is wrong, e.g. "bad keeper settings: COMPUTENET_KEEPER_X: ..."."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        parts = [f"{prefix}{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()]
        return f"bad {role} settings: " + "; ".join(parts)
    return str(error)


def clear_settings_errors(prefix: str, role: str):
    """Like `clear_errors` for a long-running role's commands: SDK errors and bad settings
    end in one `Error: ...` line and exit code 1."""
    import functools

    from pydantic import ValidationError

    from computenet.errors import ComputenetError

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except ContractRevert as error:
                raise Refusal(error) from None
            except (ComputenetError, ValidationError) as error:
                raise click.ClickException(settings_message(error, prefix, role)) from None

        return wrapper

    return decorate
