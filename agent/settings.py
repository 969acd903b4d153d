"""The agent's settings: environment variables `COMPUTENET_AGENT_*`, or a `.env`-style file
named by `COMPUTENET_AGENT_ENV_FILE`. Documented in the README's configuration table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from computenet.connection import comma_list
from computenet.sandbox import Limits


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="COMPUTENET_AGENT_", env_file=os.environ.get("COMPUTENET_AGENT_ENV_FILE"), extra="ignore"
    )

    network: str = Field("http://127.0.0.1:8545", description="ape network choice or node URI")
    account: str = Field(..., description="ape account alias of the agent key (TEST::n locally); it signs and sends")
    assets: Annotated[list[int], NoDecode] = Field(
        ..., min_length=1, description="asset ids this agent runs, comma-separated"
    )
    store_url: str = Field(
        "http://127.0.0.1:8700",
        description="content store(s) with manifests and inputs, comma-separated, tried in order",
    )
    docker_host: str | None = Field(None, description="Docker engine socket (default: DOCKER_HOST or the system one)")
    work_dir: Path = Field(Path(".agent"), description="shard folders, the output store and the journal")
    cursor_file: Path | None = Field(
        None, description="the last block whose assignments were read (default: cursor.json in work_dir)"
    )
    capacity: int = Field(0, ge=0, description="shards run at once per asset; 0: the asset's max_leases")
    heartbeat_interval: float = Field(3.0, gt=0)
    poll_interval: float = Field(
        0.05,
        gt=0,
        description="seconds between looks at the chain head (one eth_blockNumber each; logs are read "
        "only when it moved): without head notices, half of it is the mean wait before an assignment is seen",
    )
    head_notices: bool = Field(
        True,
        description="also look at once when the node announces a new head over its websocket "
        "(ape's provider's ws_uri: anvil's own port, or ws_uri in ape-config.yaml); polling goes on beside it",
    )
    memory_mib: int = Field(
        1024, gt=0, description="memory limit (swap included) of a container whose job names none (fallback)"
    )
    pids: int = Field(256, gt=0)
    cpus: float = Field(1.0, gt=0, description="CPU limit of a container whose job names none (fallback)")
    tmp_mib: int = Field(64, gt=0, description="most of a lease's disk given to its /tmp tmpfs (in memory)")
    require_gpu_match: bool = Field(True, description="refuse to start when NVML disagrees with a registered spec")
    outputs_host: str = "127.0.0.1"
    outputs_port: int = Field(8710, ge=0, le=65535, description="HTTP port serving heartbeats and outputs; 0: off")
    public_url: str | None = Field(
        None,
        description="the URL keepers and verifiers reach that service at, recorded on chain as each asset's "
        "endpoint (default: http://<outputs_host>:<outputs_port>)",
    )
    zk_models: Annotated[list[Path], NoDecode] = Field(
        [], description="folders of zk models this agent proves (built by `make zk`), comma-separated"
    )
    tee: str = Field(
        "", description="TEE evidence source: 'tsm' (Linux configfs-tsm on a TDX or SEV-SNP guest); empty: none"
    )
    attestor_url: str = Field("", description="the attestation service that records this agent's TEE verdicts")
    log_format: str = "json"
    log_level: str = "INFO"

    _comma_list = field_validator("assets", "zk_models", mode="before")(lambda value: comma_list(value))

    def cursor_path(self) -> Path:
        return self.cursor_file or self.work_dir / "cursor.json"

    @property
    def endpoint(self) -> str:
        """The base URL this agent serves heartbeats and outputs at; "" when it serves none."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.outputs_host}:{self.outputs_port}" if self.outputs_port else ""

    def limits(self, requirements=None) -> Limits:
        """A container's limits: exactly what its lease holds (the job's cpu_cores, memory_mib
        and disk_mib; see computenet.sandbox.Limits.for_lease), these settings where the job
        names none."""
        fallback = Limits(
            memory_bytes=self.memory_mib << 20, pids=self.pids, cpus=self.cpus, tmp_bytes=self.tmp_mib << 20
        )
        if requirements is None:
            return fallback
        return Limits.for_lease(requirements, fallback)
