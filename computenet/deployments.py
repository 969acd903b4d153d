"""Where the contracts live on each network: one JSON file that `ape run deploy`
writes and everything else reads.

Keys are the network as the deployer named it, without the provider ("ethereum:sepolia",
"base:mainnet", "ethereum:local", or a node URL); each record also holds its chain id, its
deployment block and, when known, the node's URL. One chain goes by several names (a local
node is "ethereum:local" to ape-foundry, "ethereum:custom" to ape's URL provider, and its
URL to the HTTP services), so `find` falls back from the name to any record of the same
chain whose market still has code. Public networks are recorded in deployments.json, which is meant to
be committed; local chains (ids 31337 and 1337), which are gone when the node stops,
in .deployments.local.json, which git ignores. COMPUTENET_DEPLOYMENTS moves both into
one file of your choice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from computenet.errors import ComputenetError

ROLES = ("token", "assets", "keepers", "market")
ROOT = Path(__file__).resolve().parent.parent
PUBLIC_PATH = ROOT / "deployments.json"
LOCAL_PATH = ROOT / ".deployments.local.json"
LOCAL_CHAIN_IDS = (31337, 1337)


class DeploymentNotFound(ComputenetError):
    """No addresses are recorded for the network asked for."""


def path(chain_id: int | None = None) -> Path:
    """The file that records `chain_id`'s deployment."""
    if "COMPUTENET_DEPLOYMENTS" in os.environ:
        return Path(os.environ["COMPUTENET_DEPLOYMENTS"])
    return LOCAL_PATH if chain_id in LOCAL_CHAIN_IDS else PUBLIC_PATH


def _read(file: Path) -> dict[str, dict]:
    return json.loads(file.read_text()) if file.exists() else {}


def load_all(file: Path | None = None) -> dict[str, dict]:
    """Every recorded deployment; local records win over public ones of the same key."""
    if file is not None:
        return _read(file)
    files = [path()] if "COMPUTENET_DEPLOYMENTS" in os.environ else [PUBLIC_PATH, LOCAL_PATH]
    records: dict[str, dict] = {}
    for f in files:
        records.update(_read(f))
    return records


def load(network: str, file: Path | None = None) -> dict:
    """The record for `network`: {"chain_id", "block", "token", "assets", "keepers", "market"}."""
    records = load_all(file)
    if network not in records:
        known = ", ".join(sorted(records)) or "none"
        raise DeploymentNotFound(
            f"no computenet deployment recorded for {network!r} (known: {known}); "
            "run `ape run deploy --network ...` first"
        )
    return records[network]


def network_name(choice: str) -> str:
    """The record key of an ape network choice or a node URL: the choice less its provider
    ("ethereum:local:foundry" -> "ethereum:local"); a URL unchanged."""
    if "://" in choice:
        return choice
    return ":".join(choice.split(":")[:2])


def find(names: str | Sequence[str], chain_id: int, has_code: Callable[[str], bool], file: Path | None = None) -> dict:
    """The deployment to use on the connected chain `chain_id`: the first record named in
    `names` that was made on this chain and whose market has code, else any record of this
    chain whose market has code (another name of the same chain), the latest deployed first.
    None found raises DeploymentNotFound saying why and what to run."""
    names = [network_name(n) for n in ([names] if isinstance(names, str) else names) if n]
    records = load_all(file)
    why = []
    for name in names:
        record = records.get(name)
        if record is None:
            continue
        if record.get("chain_id") not in (None, chain_id):
            why.append(f"the {name} record is of chain {record['chain_id']}, not the connected chain {chain_id}")
        elif not has_code(record["market"]):
            why.append(f"no contract at the {name} record's market {record['market']} (the chain was reset)")
        else:
            return record
    aliases = sorted(
        (r for n, r in records.items() if n not in names and r.get("chain_id") == chain_id),
        key=lambda r: -int(r.get("block", 0)),
    )
    for record in aliases:
        if has_code(record["market"]):
            return record
    if aliases:
        why.append(f"no record of chain {chain_id} has a contract at its market (the chain was reset)")
    known = ", ".join(f"{n} (chain {r.get('chain_id', '?')})" for n, r in sorted(records.items())) or "none"
    target = next((n for n in names if "://" in n), names[0] if names else "<network>")
    reason = "; ".join(why) or f"none is recorded for {', '.join(names) or 'this network'} or chain {chain_id}"
    raise DeploymentNotFound(
        f"no computenet deployment on chain {chain_id}: {reason} (known: {known}); "
        f"run `ape run deploy --network {target}` first"
    )


def save(network: str, record: dict, file: Path | None = None) -> Path:
    """Records `network`'s addresses, keeping the other networks'. Written atomically,
    so a crash never leaves a half-written file."""
    missing = [role for role in ROLES if role not in record]
    if missing:
        raise ValueError(f"deployment record lacks {missing}")
    file = file or path(record.get("chain_id"))
    records = _read(file)
    records[network] = record
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    tmp.replace(file)
    return file
