"""`python -m demo --serve FILE`: the network with no job scenario, described in a JSON file for
whoever drives it from outside (the dApp's browser tests, a person with a wallet), and kept up
until SIGTERM or Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo.network import AGENTS, CLIENT, FACILITATOR, GATEWAY, KEEPERS, OWNER, PROVIDERS, TREASURY, VERIFIER, Network

ROLES: dict[str, int | tuple[int, ...]] = {
    "owner": OWNER,
    "client": CLIENT,
    "providers": PROVIDERS,
    "keepers": KEEPERS,
    "agents": AGENTS,
    "facilitator": FACILITATOR,
    "gateway": GATEWAY,
    "treasury": TREASURY,
    "verifier": VERIFIER,
}


def roles(addresses: list[str]) -> dict[str, Any]:
    """Each role's test account(s) as {index, address}, from the test accounts' addresses in order."""

    def one(index: int) -> dict[str, Any]:
        return {"index": index, "address": addresses[index]}

    return {name: [one(i) for i in at] if isinstance(at, tuple) else one(at) for name, at in ROLES.items()}


def describe(net: Network) -> dict[str, Any]:
    """What a driver needs: the URLs, the chain, the contracts, who plays which role, the assets."""
    addresses = [str(account.address) for account in list(net.test)[: max(AGENTS + (VERIFIER, TREASURY)) + 1]]
    return {
        "gateway_url": net.gateway_url,
        "dapp_url": net.dapp_url,
        "rpc_url": net.anvil.uri,
        "chain_id": net.chain_id,
        "store_url": net.store.url,
        "facilitator_url": net.facilitator_url,
        "image": net.image,
        "addresses": net.stack.addresses(),
        "accounts": roles(addresses),
        # The x402 payer the demo funds with tokens and no ETH (a fresh key, not a test account).
        "payer": {"address": net.payer.address, "private_key": "0x" + bytes(net.payer.key).hex()},
        "assets": {
            str(asset): {
                "name": plan.name,
                "cpu_cores": plan.cpu_cores,
                "price": plan.price,
                "provider": addresses[plan.provider],
                "agent": addresses[plan.agent],
                "endpoint": net.outputs[asset],
            }
            for asset, plan in net.assets.items()
        },
        "logdir": str(net.logdir),
        "pid": os.getpid(),
    }


def write_atomically(path: Path, record: dict[str, Any]) -> None:
    """Writes `record` as JSON through a rename, so a reader polling for `path` never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(path)


def stop_on_sigterm() -> None:
    """SIGTERM ends the demo as Ctrl-C does: through the `finally` that stops every process."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def ignore_signals() -> None:
    """From here on SIGTERM and Ctrl-C are ignored: the network is being stopped."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


def hold(say: Callable[[str], None], message: str) -> None:
    """Says `message` and waits for SIGTERM or Ctrl-C (raised here as KeyboardInterrupt)."""
    say(message)
    sys.stdout.flush()
    while True:
        signal.pause()
