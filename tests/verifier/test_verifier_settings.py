"""The verifier bot's settings (COMPUTENET_VERIFIER_*): the market (or its deployment record), the optimistic share
under the protocol cap, outputs URLs by asset, dry run without a key."""

import pytest
from pydantic import ValidationError

from verifier.sampling import MAX_AUDIT_BPS
from verifier.settings import VerifierSettings

MARKET = "0x" + "11" * 20


@pytest.fixture
def env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("COMPUTENET_VERIFIER_"):
            monkeypatch.delenv(name)

    def set_(**values):
        for key, value in values.items():
            monkeypatch.setenv(f"COMPUTENET_VERIFIER_{key.upper()}", value)

    return set_


def test_defaults_and_dry_run(env):
    env(market=MARKET)
    settings = VerifierSettings()
    assert (settings.market, settings.account, settings.dry_run, settings.optimistic_share_bps) == (
        MARKET,
        None,
        True,
        1_000,
    )
    env(account=" ")
    assert VerifierSettings().dry_run
    env(account="TEST::6")
    assert not VerifierSettings().dry_run


def test_without_a_market_the_deployment_record_names_it(env):
    """No address: the bot uses the deployment recorded for its chain (computenet.deployments.find)."""
    settings = VerifierSettings()
    assert (settings.market, settings.start_block) == ("", None)


def test_the_optimistic_share_is_capped(env):
    env(market=MARKET, optimistic_share_bps=str(MAX_AUDIT_BPS))
    assert VerifierSettings().optimistic_share_bps == MAX_AUDIT_BPS
    env(optimistic_share_bps=str(MAX_AUDIT_BPS + 1))
    with pytest.raises(ValidationError, match="optimistic_share_bps"):
        VerifierSettings()


@pytest.mark.parametrize(
    "raw, parsed",
    [
        ("", {}),
        ('{"3": "http://a:8710"}', {3: "http://a:8710"}),
        ("3=http://a:8710, 4=http://b:8710", {3: "http://a:8710", 4: "http://b:8710"}),
    ],
)
def test_outputs_urls_by_asset(env, raw, parsed):
    env(market=MARKET, outputs=raw)
    assert VerifierSettings().outputs == parsed


def test_malformed_outputs_are_refused(env):
    env(market=MARKET, outputs="http://a:8710")
    with pytest.raises(ValidationError, match="asset=url pairs"):
        VerifierSettings()
