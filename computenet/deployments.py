"""Where the contracts live on each network: one JSON file that `ape run deploy`
writes and everything else reads.

Keys are ape network choices without the provider ("ethereum:sepolia", "base:mainnet",
"ethereum:local"). Public networks are recorded in deployments.json, which is meant to
be committed; local chains (ids 31337 and 1337), which are gone when the node stops,
in .deployments.local.json, which git ignores. COMPUTENET_DEPLOYMENTS moves both into
one file of your choice.
"""

from __future__ import annotations

import json
import os
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
