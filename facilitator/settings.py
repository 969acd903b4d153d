"""The facilitator's settings: environment variables `COMPUTENET_FACILITATOR_*` (README table)."""

from __future__ import annotations

from typing import Annotated

from eth_utils import is_address
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from computenet.connection import comma_list
from computenet.sandbox import Limits
from verifier.settings import outputs_map

DEPLOYED = "deployed"  # COMPUTENET_FACILITATOR_MARKET: the market recorded for the connected chain


class FacilitatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMPUTENET_FACILITATOR_", extra="ignore")

    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC URL of the chain it settles on")
    account: str = Field(..., description="ape account alias of the facilitator key (TEST::n locally); it pays gas")
    networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CAIP-2 networks served, comma-separated (default: the node's eip155:<chain id>)",
    )
    market: str = Field(
        "",
        description="JobMarket address: payments to it post jobs, and it is where disputes are resolved "
        f"({DEPLOYED!r}: the deployment recorded for this chain, under any name; empty: plain x402 only)",
    )
    gateways: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="addresses of the job gateways whose tagged job terms it settles, comma-separated",
    )
    audit_log: str = Field("logs/facilitator-audit.jsonl", description="where every dispute decision is appended")
    arbiter_state: str = Field(
        "logs/facilitator-arbiter.json",
        description="the arbiter's cursor: next block to scan for disputes, those pending",
    )
    refunder_state: str = Field(
        "logs/facilitator-refunder.json",
        description="the refunder's cursor and the payers of x402 jobs not finished yet",
    )
    start_block: int | None = Field(
        None,
        ge=0,
        description="first block the refunder and the arbiter scan without a cursor (default: the deployment block)",
    )
    store_url: str = Field(
        "http://127.0.0.1:8700", description="content store the arbiter fetches manifests and inputs from"
    )
    outputs: Annotated[dict[int, str], NoDecode] = Field(
        default_factory=dict,
        description="asset id -> its agent's outputs URL (JSON or 'id=url,id=url'): where the "
        "arbiter reads replicas' results for manifests with a numeric comparator",
    )
    docker_host: str | None = Field(
        None, description="Docker engine the arbiter re-executes shards on (default: DOCKER_HOST or the system one)"
    )
    # The re-executions' containers get an agent's limits (agent/settings.py), so a shard runs as it did.
    memory_mib: int = Field(
        Limits().memory_bytes >> 20, gt=0, description="memory limit per re-execution (swap included)"
    )
    pids: int = Field(Limits().pids, gt=0)
    cpus: float = Field(Limits().cpus, gt=0)
    tmp_mib: int = Field(Limits().tmp_bytes >> 20, gt=0, description="size of each re-execution's /tmp")
    host: str = "127.0.0.1"
    port: int = Field(4022, ge=0, le=65535)
    log_format: str = "json"
    log_level: str = "INFO"

    _comma_list = field_validator("networks", "gateways", mode="before")(lambda value: comma_list(value))
    _outputs = field_validator("outputs", mode="before")(lambda value: outputs_map(value))

    @field_validator("networks")
    @classmethod
    def _caip2(cls, value: list[str]) -> list[str]:
        for network in value:
            namespace, _, reference = network.partition(":")
            if namespace != "eip155" or not reference.isdigit():
                raise ValueError(f"{network!r} is not an EVM CAIP-2 network (eip155:<chain id>)")
        return value

    @field_validator("gateways")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not is_address(address):
                raise ValueError(f"{address!r} is not an address")
        return value

    def limits(self) -> Limits:
        return Limits(memory_bytes=self.memory_mib << 20, pids=self.pids, cpus=self.cpus, tmp_bytes=self.tmp_mib << 20)
