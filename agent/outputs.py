"""The agent's HTTP service: its assets' signed heartbeats, open to all, and a lease's outputs, only to those verifier.access allows: the job's client,
a bonded verifier for a replica sampled for it, a facilitator for a shard under dispute; with
a Merkle proof for any single file so a check needs one leaf, not the whole result.

    GET /heartbeats                                      the latest heartbeat of each asset served
    GET /heartbeats/{asset}                              that asset's latest heartbeat
    GET /outputs/{job}/{shard}/{replica}                 the index: root, leaf -> sha256
    GET /outputs/{job}/{shard}/{replica}/file?path=LEAF  the file; its proof in X-Merkle-Proof

A heartbeat is in computenet.heartbeat's wire form and carries the agent's EIP-712
signature, so it needs no authentication to be trusted. Every outputs request is signed (EIP-191) by the caller's key over

    computenet outputs|<chain id>|<agent address>|GET <path and query>|<expires>

so a signature works for one agent, one chain, one request and a few minutes only; the
headers are X-Computenet-Address, X-Computenet-Expires and X-Computenet-Signature.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from computenet import signed_requests
from computenet.merkle import MerkleTree
from computenet.store import LocalStore

SCOPE = "outputs"


def sign_request(private_key: Any, chain_id: int, agent: str, target: str, validity: int = 60) -> dict[str, str]:
    """Headers that authorise one GET of `target` (path and query) at `agent`'s server."""
    return signed_requests.sign_request(private_key, SCOPE, chain_id, agent, f"GET {target}", validity)


Heartbeats = Callable[[], dict[int, str]]  # asset id -> its latest heartbeat in wire form


def heartbeat_routes(api: FastAPI, latest: Heartbeats) -> None:
    """Adds GET /heartbeats and GET /heartbeats/{asset} to `api`, served from `latest()`."""

    @api.get("/heartbeats")
    def get_heartbeats() -> Response:
        beats = latest()
        return Response("[" + ",".join(beats[a] for a in sorted(beats)) + "]", media_type="application/json")

    @api.get("/heartbeats/{asset}")
    def get_heartbeat(asset: int) -> Response:
        wire = latest().get(asset)
        if wire is None:
            raise HTTPException(404, f"no heartbeat here for asset {asset}")
        return Response(wire, media_type="application/json")


def heartbeats_app(latest: Heartbeats) -> FastAPI:
    """A service of heartbeats alone (for whoever relays or plays agents)."""
    api = FastAPI(title="computenet heartbeats")
    heartbeat_routes(api, latest)
    return api


def app(
    work: Path,
    store: LocalStore,
    chain_id: int,
    agent: str,
    allowed: Callable[[int, int, int, str], bool],
    heartbeats: Heartbeats = dict,
) -> FastAPI:
    """The agent's service. `allowed(job, shard, replica, address)` says whether `address` may
    read that replica's outputs (verifier.access); `heartbeats()` the latest heartbeats."""
    api = FastAPI(title="computenet agent")
    heartbeat_routes(api, heartbeats)

    def index(job: int, shard: int, replica: int, request: Request) -> dict:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        who = signed_requests.caller(request.headers, SCOPE, chain_id, agent, f"GET {target}", time.time())
        if not allowed(job, shard, replica, who):
            raise HTTPException(
                403,
                f"{who} is neither job {job}'s client nor a verifier or arbiter checking "
                f"shard {shard} replica {replica}",
            )
        found = sorted(work.glob(f"computenet-{job}-{shard}-{replica}-*/outputs.json"))
        if not found:
            raise HTTPException(404, f"no outputs here for job {job} shard {shard} replica {replica}")
        return json.loads(found[-1].read_text())

    @api.get("/outputs/{job}/{shard}/{replica}")
    def get_index(job: int, shard: int, replica: int, request: Request) -> JSONResponse:
        return JSONResponse(index(job, shard, replica, request))

    @api.get("/outputs/{job}/{shard}/{replica}/file")
    def get_file(job: int, shard: int, replica: int, path: str, request: Request) -> Response:
        entry = index(job, shard, replica, request)
        if path not in entry["files"]:
            raise HTTPException(404, f"no output {path!r} in this result")
        files = {leaf: store.get("sha256", sha) for leaf, sha in entry["files"].items()}
        proof = MerkleTree.from_files(files).proof(path)
        return Response(
            files[path],
            media_type="application/octet-stream",
            headers={"X-Merkle-Root": entry["root"], "X-Merkle-Proof": json.dumps(["0x" + p.hex() for p in proof])},
        )

    return api
