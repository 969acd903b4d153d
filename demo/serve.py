"""`python -m demo --serve FILE`: the network with no job scenario, described in a JSON file for
whoever drives it from outside (the dApp's browser tests, a person with a wallet), and kept up
until SIGTERM or Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from computenet.errors import ComputenetError
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


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM ends the demo as Ctrl-C does: through the `finally` that stops every process."""
    signal.signal(signal.SIGTERM, _interrupt)


def ignore_signals() -> None:
    """From here on SIGTERM and Ctrl-C are ignored: the network is being stopped."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


def hold(say: Callable[[str], None], message: str) -> None:
    """Says `message` and waits for SIGTERM or Ctrl-C (raised here as KeyboardInterrupt)."""
    # Importing ape makes Ctrl-C exit at once (SystemExit 130); while holding, it ends the hold
    # as SIGTERM does, so the demo says why it stops and exits 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    say(message)
    sys.stdout.flush()
    while True:
        signal.pause()


# ----------------------------------------------------------------- driving it from outside

ROOT = Path(__file__).resolve().parent.parent


class ServeError(ComputenetError):
    """The served network did not come up."""


def launch(serve_file: Path, logdir: Path, log: Path) -> subprocess.Popen:
    """Starts `python -m demo --serve serve_file` in its own process group, logging to `log`."""
    bins = f"{ROOT / '.venv' / 'bin'}:{ROOT / 'node_modules/@foundry-rs/anvil-linux-amd64/bin'}"
    env = os.environ | {"PATH": f"{bins}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "demo", "--serve", str(serve_file), "--logs", str(logdir)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: a hung stop can be ended with all it started
        )


def wait_served(process: subprocess.Popen, serve_file: Path, log: Path, timeout: float) -> dict[str, Any]:
    """The serve file's record once it is written; ServeError with the log's tail if the process
    exits first or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while not serve_file.exists():
        if process.poll() is not None:
            raise ServeError(f"`python -m demo --serve` exited with {process.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise ServeError(f"the demo network did not come up within {timeout:.0f} s:\n{_tail(log)}")
        time.sleep(0.2)
    return json.loads(serve_file.read_text())


def stop_served(process: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM (the demo stops everything it started), then SIGKILL to the whole group if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
