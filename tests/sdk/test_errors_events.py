"""Typed reverts and typed events, without a chain."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from computenet import events
from computenet.errors import (
    ComputeAssetError,
    ComputenetError,
    ContractRevert,
    DisputeCourtError,
    JobMarketError,
    KeeperError,
    MarketParamsError,
    OwnershipError,
    SettlementError,
    StakeError,
    TokenError,
    revert_error,
)

# One real revert string of each contract module, and the class it must map to.
REASONS = [
    ("job_market: lease expired", JobMarketError),
    ("market_params: paused", MarketParamsError),
    ("dispute_court: caller is not a facilitator", DisputeCourtError),
    ("settlement: nothing to withdraw", SettlementError),
    ("compute_asset: unknown asset", ComputeAssetError),
    ("erc721: owner mismatch", ComputeAssetError),
    ("asset_stakes: stake below minimum", StakeError),
    ("keeper_registry: not a keeper", KeeperError),
    ("ownable: caller is not the owner", OwnershipError),
    ("ERC20: transfer amount exceeds balance", TokenError),
    ("FiatTokenV2: invalid signature", TokenError),
    ("test_token: faucet limit exceeded", TokenError),
]

ADDRESS = "0x" + "ab" * 20
ROOT = b"\x42" * 32


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("reason, cls", REASONS)
@pytest.mark.parametrize("preflight", [False, True])
def test_revert_error_maps_prefix_to_class(reason, cls, preflight):
    err = revert_error(reason, preflight=preflight)
    assert type(err) is cls
    assert isinstance(err, ContractRevert) and isinstance(err, ComputenetError)
    assert err.reason == reason
    assert err.preflight is preflight


@pytest.mark.parametrize("reason", ["something else", "", "Job_market: case matters", "market: not a known prefix"])
def test_revert_error_unknown_prefix_is_plain_contract_revert(reason):
    err = revert_error(reason)
    assert type(err) is ContractRevert
    assert err.reason == reason


def test_reason_kept_word_for_word():
    reason = "job_market: asset expires before the lease ends  (with: odd spacing, ünïcode)"
    err = revert_error(reason)
    assert err.reason == reason
    assert str(err) == f"reverted: {reason}"


def test_message_says_would_revert_for_preflight():
    assert str(revert_error("job_market: unknown job", preflight=True)) == "would revert: job_market: unknown job"
    assert str(revert_error("job_market: unknown job")) == "reverted: job_market: unknown job"
    assert str(ContractRevert("x", preflight=True)) == "would revert: x"


def test_preflight_is_keyword_only():
    with pytest.raises(TypeError):
        ContractRevert("job_market: unknown job", True)


def test_typed_errors_can_be_caught_as_a_family():
    with pytest.raises(ComputenetError):
        raise revert_error("asset_stakes: stake below minimum")
    with pytest.raises(ContractRevert):
        raise revert_error("keeper_registry: not a keeper")


def test_every_contract_revert_prefix_is_mapped():
    """Each module prefix used in contracts/ maps to a class more specific than ContractRevert."""
    root = Path(__file__).resolve().parents[2] / "contracts"
    prefixes = set()
    for source in root.rglob("*.vy"):
        for line in source.read_text().splitlines():
            if "assert" in line and ', "' in line:
                reason = line.rsplit(', "', 1)[1].rstrip('"').rstrip()
                prefixes.add(reason.split(":")[0] + ":")
    assert prefixes, "no revert strings found"
    unmapped = sorted(p for p in prefixes if type(revert_error(p + " x")) is ContractRevert)
    assert unmapped == []


# ------------------------------------------------------------------ events


def arguments_for(cls):
    """Every argument of an event, each with a distinct value."""
    names = [f.name for f in dataclasses.fields(cls) if f.name not in ("block", "tx", "index")]
    return {name: i + 1 for i, name in enumerate(names)}


@pytest.mark.parametrize("name", sorted(events.EVENTS))
def test_decode_builds_each_event(name):
    args = arguments_for(events.EVENTS[name])
    event = events.decode(name, args, block=12, tx="0xfeed", index=3)
    assert type(event) is events.EVENTS[name]
    assert event.name == name
    assert (event.block, event.tx, event.index) == (12, "0xfeed", 3)
    for key, value in args.items():
        assert getattr(event, key) == value


def test_events_cover_the_contracts_abis():
    """Every event the asset registry, keeper registry, market and dispute court declare has
    a typed class with the same arguments (ABIs from the Vyper compiler in this environment)."""
    repo = Path(__file__).resolve().parents[2]
    vyper = Path(sys.executable).parent / "vyper"
    for contract in ("ComputeAsset", "JobMarket", "KeeperRegistry", "DisputeCourt"):
        out = subprocess.run(
            [str(vyper), "-f", "abi", f"contracts/{contract}.vy"], cwd=repo, capture_output=True, text=True, check=True
        )
        for abi in json.loads(out.stdout):
            if abi["type"] == "event":
                cls = events.EVENTS[abi["name"]]
                assert set(arguments_for(cls)) == {i["name"] for i in abi["inputs"]}, (contract, abi["name"])


def test_decode_converts_chain_values_to_plain_python():
    class Address(str):
        """Stands in for ape's checksum address type."""

    class Uint(int):
        pass

    event = events.decode(
        "ResultSubmitted",
        dict(
            job=Uint(1),
            shard=0,
            replica=2,
            asset=True,
            output_root=bytearray(ROOT),
            gpu_seconds=Uint(7),
            exit_code=0,
            challenge_end=9,
        ),
    )
    assert type(event.job) is int and event.job == 1
    assert type(event.output_root) is bytes and event.output_root == ROOT
    assert event.asset is True
    posted = events.decode("Credited", dict(account=Address(ADDRESS), amount=5))
    assert type(posted.account) is str and posted.account == ADDRESS


def test_decode_ignores_extra_arguments():
    event = events.decode("Credited", dict(account=ADDRESS, amount=5, spurious=1))
    assert event == events.Credited(block=0, tx="", index=0, account=ADDRESS, amount=5)
    assert not hasattr(event, "spurious")


def test_decode_rejects_unknown_names():
    with pytest.raises(KeyError, match="NotAnEvent"):
        events.decode("NotAnEvent", {})
    with pytest.raises(KeyError, match="jobposted"):
        events.decode("jobposted", arguments_for(events.JobPosted))


def test_decode_rejects_missing_arguments():
    args = arguments_for(events.ShardFinalized)
    del args["payment"], args["keeper"]
    with pytest.raises(ValueError, match=r"ShardFinalized lacks \['keeper', 'payment'\]"):
        events.decode("ShardFinalized", args)
    with pytest.raises(ValueError, match="Credited"):
        events.decode("Credited", {"account": ADDRESS})


def test_events_are_frozen_and_comparable():
    a = events.decode("JobFinished", dict(job=1, client=ADDRESS, refund=3), block=5)
    b = events.decode("JobFinished", dict(job=1, client=ADDRESS, refund=3), block=5)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.refund = 4
    assert a != events.decode("JobFinished", dict(job=1, client=ADDRESS, refund=3), block=6)


def test_every_event_class_is_registered_under_its_name():
    assert all(cls.name == name and issubclass(cls, events.Event) for name, cls in events.EVENTS.items())
    assert "Event" not in events.EVENTS and "" not in events.EVENTS


class FakeLog:
    """The attributes of ape's ContractLog that from_log reads."""

    def __init__(self, name, arguments, block_number=7, transaction_hash="0xabc", log_index=2):
        self.event_name = name
        self.event_arguments = arguments
        self.block_number = block_number
        self.transaction_hash = transaction_hash
        self.log_index = log_index


def test_from_log_adapts_a_log():
    event = events.from_log(FakeLog("Withdrawn", dict(account=ADDRESS, receiver=ADDRESS, amount=9)))
    assert event == events.Withdrawn(block=7, tx="0xabc", index=2, account=ADDRESS, receiver=ADDRESS, amount=9)


def test_from_log_tolerates_pending_logs():
    event = events.from_log(FakeLog("Paused", dict(account=ADDRESS), None, None, None))
    assert (event.block, event.tx, event.index) == (0, "", 0)
