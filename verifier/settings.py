"""The verifier bot's configuration: one settings object, read from COMPUTENET_VERIFIER_*
variables (docs/verification.md lists them)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from computenet.sandbox import Limits
from verifier.sampling import MAX_AUDIT_BPS


def outputs_map(value: object) -> object:
    """Agents' outputs URLs by asset from the environment: JSON ({"7": "http://…"}) or
    "7=http://…,8=http://…"; anything but a string unchanged (a pydantic "before" validator)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return {}
    if text.startswith("{"):
        return json.loads(text)
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(pair) != 2 or not pair[0].strip().isdigit() for pair in pairs):
        raise ValueError("expected JSON or asset=url pairs separated by commas")
    return {int(asset): url.strip() for asset, url in pairs}


class VerifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMPUTENET_VERIFIER_", extra="ignore", frozen=True)

    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC URL of the market's chain")
    market: str = Field(
        "", description="JobMarket address (empty: the deployment recorded for this chain, under any name)"
    )
    account: str | None = Field(
        None, description="ape account alias of the verifier key (TEST::n locally); none: dry run"
    )
    store_url: str = Field("http://127.0.0.1:8700", description="content store of manifests and inputs")
    docker_host: str | None = Field(
        None, description="Docker engine of the re-executions (default: DOCKER_HOST or the system one)"
    )
    optimistic_share_bps: int = Field(
        1_000, ge=0, le=MAX_AUDIT_BPS, description="share of OPTIMISTIC results this verifier re-executes"
    )
    outputs: Annotated[dict[int, str], NoDecode] = Field(
        default_factory=dict, description="asset id -> its agent's outputs URL, as JSON or 'id=url,id=url'"
    )
    state_file: str = Field("logs/verifier-state.json", description="cursor and decisions; a restart resumes from it")
    start_block: int | None = Field(
        None, ge=0, description="first block scanned when there is no state file yet (default: the deployment block)"
    )
    poll_interval: float = Field(1.0, gt=0, description="seconds between looks at the chain head")
    retry_seconds: float = Field(30.0, ge=0, description="wait before trying again a result that failed (engine down)")
    max_attempts: int = Field(5, ge=1, description="tries per result before it is given up (logged, counted)")
    metrics_port: int = Field(9465, ge=0, le=65535, description="Prometheus endpoint; 0: off")
    metrics_host: str = "127.0.0.1"
    # Re-executions get an agent's container limits (agent/settings.py), so a shard runs as it did.
    memory_mib: int = Field(
        Limits().memory_bytes >> 20, gt=0, description="memory limit per re-execution (swap included)"
    )
    pids: int = Field(Limits().pids, gt=0)
    cpus: float = Field(Limits().cpus, gt=0)
    tmp_mib: int = Field(Limits().tmp_bytes >> 20, gt=0, description="size of each re-execution's /tmp")
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"

    @field_validator("account", "docker_host", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    _outputs = field_validator("outputs", mode="before")(lambda value: outputs_map(value))

    @property
    def dry_run(self) -> bool:
        return self.account is None

    def limits(self) -> Limits:
        return Limits(memory_bytes=self.memory_mib << 20, pids=self.pids, cpus=self.cpus, tmp_bytes=self.tmp_mib << 20)


class AttestorSettings(BaseSettings):
    """The attestation service's configuration (COMPUTENET_ATTESTOR_*; docs/tee.md)."""

    model_config = SettingsConfigDict(env_prefix="COMPUTENET_ATTESTOR_", extra="ignore", frozen=True)

    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC URL of the market's chain")
    market: str = Field("", description="JobMarket address (empty: the deployment recorded for this chain)")
    account: str = Field(..., description="ape account alias of the attestor key (TEST::n locally)")
    host: str = "127.0.0.1"
    port: int = Field(8720, ge=0, le=65535, description="HTTP port agents send evidence to")
    accepted_tcb: Annotated[list[str], NoDecode] = Field(
        ["UpToDate", "SWHardeningNeeded"], description="TCB levels accepted, comma-separated"
    )
    measurements: Annotated[list[str], NoDecode] = Field(
        [], description="TEE measurements accepted (hex MRTD, MRENCLAVE or MEASUREMENT), comma-separated; empty: any"
    )
    intel_root: str | None = Field(
        None, description="DER file of the Intel SGX root CA to pin (default: the one dcap-qvl carries)"
    )
    pccs_url: str = Field(
        "https://api.trustedservices.intel.com",
        description="PCCS (or Intel's PCS) an Intel quote sent without its collateral gets it from; empty: none",
    )
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"

    _lists = field_validator("accepted_tcb", "measurements", mode="before")(
        lambda value: [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    )

    def policy(self):
        from pathlib import Path

        from verifier.attestor import Policy

        return Policy(
            accepted_tcb=tuple(self.accepted_tcb),
            measurements=frozenset(bytes.fromhex(m.removeprefix("0x")) for m in self.measurements),
            intel_root_der=Path(self.intel_root).read_bytes() if self.intel_root else None,
            pccs_url=self.pccs_url,
        )
