"""The keeper's configuration: one settings object, read from COMPUTENET_KEEPER_* variables.

Every process of one keeper (the listener and each Celery worker) reads the same variables,
so they agree on the chain, the key and the Redis they share (the keeper's own: keepers of
different operators share only the chain). README.md lists them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from keepers.scheduler import Policy, Weights


class KeeperSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMPUTENET_KEEPER_", extra="ignore", frozen=True)

    network: str = Field("http://127.0.0.1:8545", description="ape network choice or node URI")
    account: str | None = Field(None, description="ape account alias (TEST::n or an imported key); none: dry run")
    name: str = Field("keeper", description="keeps several keepers' state apart in one Redis")
    redis_url: str = "redis://127.0.0.1:6379/0"
    confirmations: int = Field(0, ge=0, description="blocks an event must be buried under before it is acted on")
    poll_interval: float = Field(0.2, gt=0, description="seconds between looks at the chain head")
    sweep_interval: float = Field(5.0, gt=0, description="seconds between sweeps for time-driven and retried work")
    block_range: int = Field(2000, gt=0, description="most blocks per log query")
    min_fee: int = Field(
        0, ge=0, description="skip jobs whose keeper fee per replica is at most below this (token units)"
    )
    require_heartbeat: bool = Field(True, description="use only assets whose agent serves a fresh signed heartbeat")
    max_heartbeat_age: int = Field(30, ge=1, description="seconds after which a silent node is presumed down")
    heartbeat_poll_interval: float = Field(2.0, gt=0, description="seconds between polls of the agents' endpoints")
    heartbeat_timeout: float = Field(2.0, gt=0, description="seconds an endpoint has to answer a poll")
    heartbeat_workers: int = Field(16, ge=1, description="endpoints polled at once")
    max_utilization_pct: int = Field(90, ge=0, le=100)
    weight_cost: float = Field(Weights.cost, ge=0)
    weight_slack: float = Field(Weights.slack, ge=0)
    weight_load: float = Field(Weights.load, ge=0)
    weight_reputation: float = Field(Weights.reputation, ge=0)
    tx_timeout: float = Field(120.0, gt=0, description="seconds to wait for a transaction to be mined")
    max_retries: int = Field(5, ge=0, description="retries of a task after a transient failure")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus endpoint of the listener; 0: off")
    metrics_host: str = "127.0.0.1"
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"

    @field_validator("account", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def dry_run(self) -> bool:
        return self.account is None

    @property
    def queue(self) -> str:
        """The Celery queue of this keeper's tasks."""
        return f"computenet-{self.name}"

    @property
    def confirm_queue(self) -> str:
        """Receipt checks get their own queue, so they never wait behind a backlog of work."""
        return f"computenet-{self.name}-confirm"

    def weights(self) -> Weights:
        return Weights(self.weight_cost, self.weight_slack, self.weight_load, self.weight_reputation)

    def policy(self) -> Policy:
        return Policy(
            max_heartbeat_age=self.max_heartbeat_age,
            max_utilization_pct=self.max_utilization_pct,
            require_heartbeat=self.require_heartbeat,
            # Without a heartbeat the registered max_leases (which the scheduler always applies)
            # is the only limit known.
            assumed_capacity=2**16,
        )
