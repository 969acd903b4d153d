"""The dApp's side of the gateway: the page's files and what the page needs to know.

    GET /                   307 to /app/
    GET /app/               dapp/index.html (503 naming `make dapp` until the bundle is built)
    GET /app/config.json    chain, RPC URL, contract addresses and ABIs, the payment token,
                            the content store, the market's parameters, revert explanations
    GET /app/{path}         any file of dapp/ but its sources (src/, node_modules/, dotfiles)

The page runs in a browser on any origin, so every gateway route answers CORS (`cors`).
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.middleware.cors import CORSMiddleware

from computenet.domain import SUBMIT_MARGIN
from computenet.explain import PLAIN
from computenet.market import CONTRACT_TYPES
from computenet.web3calls import abi

BUNDLE = "dist/app.js"
HIDDEN = {"src", "node_modules"}  # the page's sources and build tools, not served
# What the browser may send and read across origins: x402's headers, signed outputs reads, Merkle proofs.
CORS_METHODS = ["GET", "POST", "PUT", "OPTIONS"]
CORS_ALLOW = [
    "PAYMENT-SIGNATURE",
    "Content-Type",
    "X-Computenet-Address",
    "X-Computenet-Expires",
    "X-Computenet-Signature",
]
CORS_EXPOSE = ["PAYMENT-REQUIRED", "PAYMENT-RESPONSE", "X-Merkle-Proof", "X-Merkle-Root"]
# The name config.json gives each role's ABI (the page's names for them).
ABI_NAMES = {
    "market": "JobMarket",
    "court": "DisputeCourt",
    "models": "ModelRegistry",
    "attestations": "AttestationRegistry",
    "relay": "BatchRelay",
    "funder": "AuthorizationFunder",
    "assets": "ComputeAsset",
    "keepers": "KeeperRegistry",
    "token": "Token",
}
CHAIN_NAMES = {1: "Ethereum", 8453: "Base", 84532: "Base Sepolia", 11155111: "Sepolia", 31337: "computenet local"}


def cors(api: FastAPI) -> None:
    """Lets a page on any origin call every route of `api` (no cookies: x402 and signed headers)."""
    api.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=CORS_METHODS,
        allow_headers=CORS_ALLOW,
        expose_headers=CORS_EXPOSE,
    )


@cache
def abis() -> dict[str, list[dict]]:
    """Each contract's ABI under the page's name for it; read once per process. The token's is
    TestToken's: ERC-20, EIP-2612 and EIP-3009 as USDC has them."""
    return {ABI_NAMES[role]: abi(kind) for role, kind in CONTRACT_TYPES.items()}


def chain_name(chain_id: int) -> str:
    return CHAIN_NAMES.get(chain_id, f"chain {chain_id}")


def _reverts() -> dict[str, str]:
    """Every revert string of the contracts mapped to a plain sentence (computenet.explain)."""
    return PLAIN


def config_json(
    chain_id: int,
    rpc_url: str,
    network: str,
    addresses: dict[str, str],
    token: dict[str, Any],
    store_url: str,
    parameters: Any,
) -> dict[str, Any]:
    """GET /app/config.json's answer (docs/dapp.md)."""
    return {
        "chainId": chain_id,
        "chainName": chain_name(chain_id),
        "rpcUrl": rpc_url,
        "network": network,
        "contracts": {role: addresses[role] for role in ABI_NAMES},
        "token": token,
        "storeUrl": store_url,
        "parameters": {k: int(v) for k, v in dataclasses.asdict(parameters).items()},
        "submitMargin": SUBMIT_MARGIN,  # what a manifest's timeout must leave of a lease
        "abis": abis(),
        "reverts": _reverts(),
    }


def served_file(dapp_dir: Path, path: str) -> Path | None:
    """The file of `dapp_dir` that /app/`path` names, or None: outside the folder, hidden, or absent."""
    root = dapp_dir.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or target == root:
        return None
    parts = target.relative_to(root).parts
    if parts[0] in HIDDEN or any(part.startswith(".") for part in parts):
        return None
    return target if target.is_file() else None


def dapp_routes(
    api: FastAPI,
    chain: Any,
    *,
    public_rpc_url: str,
    store_url: str,
    dapp_dir: Path,
    network: str | None = None,
) -> None:
    """Adds the page and its config to `api`: `chain` is the gateway's Chain, `public_rpc_url`
    the JSON-RPC URL browsers read the chain at, `store_url` the content store the page
    uploads to, `dapp_dir` the page's folder, `network` the CAIP-2 network offered (default:
    eip155:<chain id>)."""
    dapp_dir = Path(dapp_dir)
    network = network or f"eip155:{chain.chain_id}"
    token: dict[str, Any] = {}  # the payment token's terms, read once

    def not_built() -> Response:
        return JSONResponse(
            {
                "error": "dapp_not_built",
                "message": f"the dApp bundle {dapp_dir / BUNDLE} was never built: run `make dapp`",
            },
            status_code=503,
        )

    @api.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/app/", status_code=307)

    @api.get("/app", include_in_schema=False)
    def app_no_slash() -> Response:
        return RedirectResponse("/app/", status_code=307)

    @api.get("/app/config.json")
    def config() -> JSONResponse:
        if not token:
            functions = chain.reader.calls.token.functions
            token.update(
                name=chain.token_name,
                version=chain.token_version,
                symbol=str(functions.symbol().call()),
                decimals=int(functions.decimals().call()),
            )
        return JSONResponse(
            config_json(
                chain.chain_id,
                public_rpc_url,
                network,
                chain.reader.addresses,
                token,
                store_url,
                chain.parameters(),
            )
        )

    @api.get("/app/", include_in_schema=False)
    def index() -> Response:
        return page("index.html")

    @api.get("/app/{path:path}", include_in_schema=False)
    def page(path: str) -> Response:
        if not (dapp_dir / BUNDLE).is_file() and (path == "index.html" or path == BUNDLE):
            return not_built()
        found = served_file(dapp_dir, path)
        if found is None:
            return JSONResponse({"error": "not_found", "message": f"no file /app/{path}"}, status_code=404)
        return FileResponse(found, headers={"Cache-Control": "no-cache"})
