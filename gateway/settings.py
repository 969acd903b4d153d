"""The gateway's settings: environment variables `COMPUTENET_GATEWAY_*` (README table)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from computenet.connection import comma_list

DEFAULT_DAPP_DIR = Path(__file__).resolve().parent.parent / "dapp"  # this repository's


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMPUTENET_GATEWAY_", extra="ignore")

    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC URL of the chain")
    market: str = Field(
        "", description="JobMarket address (empty: the deployment recorded for this chain, under any name)"
    )
    account: str = Field(
        ...,
        description="ape account alias of the gateway key (TEST::n locally): it tags the job terms it offers and pays the gas of the signed cancels it relays",
    )
    facilitator_url: str = Field("http://127.0.0.1:4022", description="the x402 facilitator that settles payments")
    network: str = Field("", description="CAIP-2 network offered (default: eip155:<the node's chain id>)")
    store_url: str = Field("", description="content store that receives each paid job's manifest (empty: none)")
    outputs: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="agent outputs servers, comma-separated AGENT_ADDRESS=URL pairs"
    )
    public_rpc_url: str = Field("", description="JSON-RPC URL the dApp's browsers read the chain at (empty: rpc_url)")
    dapp_dir: Path = Field(DEFAULT_DAPP_DIR, description="the dApp's folder, served at /app/")
    host: str = "127.0.0.1"
    port: int = Field(4021, ge=0, le=65535)
    log_format: str = "json"
    log_level: str = "INFO"

    _comma_list = field_validator("outputs", mode="before")(lambda value: comma_list(value))

    @field_validator("outputs")
    @classmethod
    def _pairs(cls, value: list[str]) -> list[str]:
        for pair in value:
            address, _, url = pair.partition("=")
            if not (address.startswith("0x") and len(address) == 42 and url.startswith("http")):
                raise ValueError(f"{pair!r} is not AGENT_ADDRESS=URL")
        return value

    @model_validator(mode="after")
    def _public_rpc_url(self) -> GatewaySettings:
        self.public_rpc_url = self.public_rpc_url or self.rpc_url
        return self

    def outputs_map(self) -> dict[str, str]:
        return dict(pair.split("=", 1) for pair in self.outputs)
