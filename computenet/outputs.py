"""The client side of an agent's outputs service (the API is agent/outputs.py's): signed
requests for a replica's index and files, each file checked against the replica's on-chain
root, so nothing an agent serves is taken on its word.

    GET /outputs/{job}/{shard}/{replica}                 {"root": "0x…", "files": {leaf: sha256}}
    GET /outputs/{job}/{shard}/{replica}/file?path=LEAF  the file; its Merkle proof in X-Merkle-Proof

Each request is signed (computenet.signed_requests, scope "outputs") for the agent's key
address, so it works for one agent, one chain, one request and a minute. The agent answers
only the job's client (`ape run job outputs`), a bonded verifier for a replica sampled for it,
and a facilitator for a disputed shard (verifier/access.py).
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from computenet import signed_requests
from computenet.errors import ComputenetError
from computenet.merkle import MerkleTree, leaf, verify

SCOPE = "outputs"
TIMEOUT = 30  # seconds per request


class OutputsError(ComputenetError):
    """A replica's outputs could not be had, or are not what its on-chain root commits to."""


class OutputsClient:
    """Fetches replicas' results from their agents' outputs services."""

    def __init__(
        self,
        private_key: Any,
        chain_id: int,
        urls: Mapping[int, str],
        agent_of: Callable[[int], str],
        timeout: float = TIMEOUT,
    ) -> None:
        """
        @param private_key The reader's key (the client's, a verifier's or the facilitator's), or
               an ape account that signs with it.
        @param chain_id The market's chain.
        @param urls Asset id -> the base URL of its agent's outputs service.
        @param agent_of Asset id -> its agent's address (the server the requests are signed for).
        """
        self.private_key = private_key
        self.chain_id = chain_id
        self.urls = dict(urls)
        self.agent_of = agent_of
        self.timeout = timeout

    def _get(self, asset: int, target: str) -> tuple[bytes, Any]:
        base = self.urls.get(asset)
        if not base:
            raise OutputsError(f"no outputs URL is known for asset {asset}")
        agent = self.agent_of(asset)
        headers = signed_requests.sign_request(self.private_key, SCOPE, self.chain_id, agent, f"GET {target}")
        request = urllib.request.Request(base.rstrip("/") + target, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read(), response.headers
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:300]
            raise OutputsError(f"asset {asset}'s agent answered {error.code} to GET {target}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise OutputsError(f"asset {asset}'s agent at {base} did not answer GET {target}: {error}") from None

    def index(self, asset: int, job: int, shard: int, replica: int) -> dict[str, Any]:
        """The replica's index: its root and leaf -> sha256 of each file."""
        body, _ = self._get(asset, f"/outputs/{job}/{shard}/{replica}")
        try:
            index = json.loads(body)
            return {"root": str(index["root"]), "files": {str(k): str(v) for k, v in dict(index["files"]).items()}}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise OutputsError(f"asset {asset}'s agent sent an index that is not one") from None

    def file(self, asset: int, job: int, shard: int, replica: int, path: str, root: bytes) -> bytes:
        """One file of the replica, with its Merkle proof checked against `root` (on chain)."""
        target = f"/outputs/{job}/{shard}/{replica}/file?" + urllib.parse.urlencode({"path": path})
        data, headers = self._get(asset, target)
        try:
            proof = [bytes.fromhex(p.removeprefix("0x")) for p in json.loads(headers.get("X-Merkle-Proof", ""))]
        except (ValueError, TypeError):
            raise OutputsError(f"asset {asset}'s agent sent {path} without a readable Merkle proof") from None
        if not verify(proof, root, leaf(path, data)):
            raise OutputsError(
                f"asset {asset}'s agent sent a {path} that is not in the replica's on-chain root 0x{root.hex()}"
            )
        return data

    def result(self, asset: int, job: int, shard: int, replica: int, root: bytes) -> dict[str, bytes]:
        """The replica's whole result (leaf -> content): every file proven against `root`, and all
        of them together rebuilding it, so no file was left out."""
        index = self.index(asset, job, shard, replica)
        files = {}
        for path, sha in sorted(index["files"].items()):
            data = self.file(asset, job, shard, replica, path, root)
            if hashlib.sha256(data).hexdigest() != sha.removeprefix("0x").lower():
                raise OutputsError(f"asset {asset}'s agent sent a {path} whose sha256 is not its index's")
            files[path] = data
        if not files or MerkleTree.from_files(files).root != root:
            raise OutputsError(f"asset {asset}'s agent's files do not make up the replica's root 0x{root.hex()}")
        return files
