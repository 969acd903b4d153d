"""keepers.settings: one settings object from COMPUTENET_KEEPER_* variables."""

import pytest
from pydantic import ValidationError

from computenet.cli import settings_message
from keepers.settings import KeeperSettings


def test_defaults_are_a_dry_run_keeper_on_local_services(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("COMPUTENET_KEEPER_"):
            monkeypatch.delenv(key)
    s = KeeperSettings()
    assert s.dry_run and s.account is None
    assert (s.network, s.redis_url, s.confirmations) == ("http://127.0.0.1:8545", "redis://127.0.0.1:6379/0", 0)
    assert (s.queue, s.confirm_queue) == ("computenet-keeper", "computenet-keeper-confirm")


def test_environment_sets_every_field(monkeypatch):
    monkeypatch.setenv("COMPUTENET_KEEPER_ACCOUNT", "TEST::4")
    monkeypatch.setenv("COMPUTENET_KEEPER_NAME", "alpha")
    monkeypatch.setenv("COMPUTENET_KEEPER_CONFIRMATIONS", "3")
    monkeypatch.setenv("COMPUTENET_KEEPER_WEIGHT_COST", "0.9")
    monkeypatch.setenv("COMPUTENET_KEEPER_REQUIRE_HEARTBEAT", "false")
    s = KeeperSettings()
    assert not s.dry_run and s.queue == "computenet-alpha" and s.confirmations == 3
    assert s.weights().cost == 0.9 and not s.policy().require_heartbeat


def test_a_blank_account_means_dry_run(monkeypatch):
    monkeypatch.setenv("COMPUTENET_KEEPER_ACCOUNT", "  ")
    assert KeeperSettings().dry_run


@pytest.mark.parametrize(
    "name, value",
    [("CONFIRMATIONS", "-1"), ("SWEEP_INTERVAL", "0"), ("MAX_UTILIZATION_PCT", "101"), ("LOG_FORMAT", "xml")],
)
def test_bad_values_are_refused_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(f"COMPUTENET_KEEPER_{name}", value)
    with pytest.raises(ValidationError) as error:
        KeeperSettings()
    assert f"COMPUTENET_KEEPER_{name}:" in settings_message(error.value, "COMPUTENET_KEEPER_", "keeper")
