"""Signed heartbeats: EIP-712 hashing, signing, the wire form, and the keeper's acceptance check."""

import dataclasses
import json

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.eip712 import DOMAIN_TYPEHASH
from computenet.errors import ComputenetError, InvalidSignature
from computenet.heartbeat import (
    DEFAULT_MAX_SKEW,
    DOMAIN_NAME,
    DOMAIN_VERSION,
    HEARTBEAT_TYPE,
    HEARTBEAT_TYPEHASH,
    Heartbeat,
    HeartbeatError,
    check_heartbeat,
    registry_domain_separator,
)
from computenet.receipts import SECP256K1_HALF_N, SECP256K1_N

REGISTRY = to_checksum_address("0x" + "a5" * 20)
OTHER_REGISTRY = to_checksum_address("0x" + "a6" * 20)
CHAIN_ID = 31337
KEY = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
AGENT = Account.from_key(KEY).address
OTHER_KEY = bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")
NOW = 1_700_000_000
MAX_AGE = 30

HB = Heartbeat(
    asset=12,
    timestamp=NOW - 3,
    gpu_utilization_pct=37,
    free_vram_mib=65_536,
    running_shards=1,
    capacity=4,
    seq=41,
)
SIG = HB.sign(KEY, CHAIN_ID, REGISTRY)

uint256 = st.integers(min_value=0, max_value=2**256 - 1)
heartbeats = st.builds(
    Heartbeat,
    asset=uint256,
    timestamp=uint256,
    gpu_utilization_pct=st.integers(min_value=0, max_value=100),
    free_vram_mib=uint256,
    running_shards=uint256,
    capacity=uint256,
    seq=uint256,
)
chain_ids = st.integers(min_value=1, max_value=2**64)
addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
private_keys = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda n: n.to_bytes(32, "big"))


def check(hb=HB, signature=SIG, agent=AGENT, now=NOW, max_age=MAX_AGE, last_seq=40, **kwargs):
    return check_heartbeat(hb, signature, agent, now, max_age, last_seq, CHAIN_ID, REGISTRY, **kwargs)


# --- hashing --------------------------------------------------------------------------


def test_type_string_and_typehash():
    assert HEARTBEAT_TYPE == (
        "Heartbeat(uint256 asset,uint256 timestamp,uint256 gpuUtilizationPct,uint256 freeVramMib,"
        "uint256 runningShards,uint256 capacity,uint256 seq)"
    )
    assert HEARTBEAT_TYPEHASH == keccak(HEARTBEAT_TYPE.encode("ascii"))


def test_domain_is_bound_to_the_registry():
    assert (DOMAIN_NAME, DOMAIN_VERSION) == ("computenet Heartbeat", "1")
    expected = keccak(
        DOMAIN_TYPEHASH
        + keccak(b"computenet Heartbeat")
        + keccak(b"1")
        + CHAIN_ID.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(REGISTRY[2:])
    )
    assert registry_domain_separator(CHAIN_ID, REGISTRY) == expected
    assert registry_domain_separator(CHAIN_ID, REGISTRY.lower()) == expected
    assert registry_domain_separator(CHAIN_ID, OTHER_REGISTRY) != expected
    assert registry_domain_separator(CHAIN_ID + 1, REGISTRY) != expected


def test_struct_hash_and_digest_formulas():
    words = b"".join(v.to_bytes(32, "big") for v in (12, NOW - 3, 37, 65_536, 1, 4, 41))
    assert HB.struct_hash() == keccak(HEARTBEAT_TYPEHASH + words)
    assert HB.digest(CHAIN_ID, REGISTRY) == keccak(
        b"\x19\x01" + registry_domain_separator(CHAIN_ID, REGISTRY) + HB.struct_hash()
    )


@given(heartbeats, chain_ids, addresses)
@settings(max_examples=200)
def test_digest_matches_eth_account_typed_data(hb, chain_id, registry):
    signable = encode_typed_data(full_message=hb.typed_data(chain_id, registry))
    assert signable.header == registry_domain_separator(chain_id, registry)
    assert signable.body == hb.struct_hash()
    assert hb.digest(chain_id, registry) == keccak(b"\x19" + signable.version + signable.header + signable.body)


def test_every_field_changes_the_digest():
    digests = {HB.digest(CHAIN_ID, REGISTRY)}
    for field in dataclasses.fields(Heartbeat):
        value = getattr(HB, field.name)
        digests.add(dataclasses.replace(HB, **{field.name: value + 1}).digest(CHAIN_ID, REGISTRY))
    assert len(digests) == 1 + len(dataclasses.fields(Heartbeat))


# --- fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("asset", -1),
        ("timestamp", 2**256),
        ("gpu_utilization_pct", 101),
        ("free_vram_mib", True),
        ("running_shards", 1.0),
        ("capacity", "4"),
        ("seq", None),
    ],
)
def test_invalid_fields_are_refused(field, value):
    with pytest.raises(HeartbeatError) as raised:
        dataclasses.replace(HB, **{field: value})
    assert f"heartbeat.{field}" in str(raised.value)
    assert isinstance(raised.value, ComputenetError) and isinstance(raised.value, ValueError)


def test_heartbeat_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        HB.seq = 42  # type: ignore[misc]


# --- signing --------------------------------------------------------------------------


def test_sign_recover_round_trip():
    assert len(SIG) == 65 and SIG[64] in (27, 28)
    assert int.from_bytes(SIG[32:64], "big") <= SECP256K1_HALF_N
    assert HB.recover(SIG, CHAIN_ID, REGISTRY) == AGENT


def test_signature_equals_eth_account_sign_typed_data():
    signed = Account.sign_typed_data(KEY, full_message=HB.typed_data(CHAIN_ID, REGISTRY))
    assert SIG == bytes(signed.signature)


def test_signature_is_bound_to_chain_and_registry():
    assert HB.recover(SIG, CHAIN_ID + 1, REGISTRY) != AGENT
    assert HB.recover(SIG, CHAIN_ID, OTHER_REGISTRY) != AGENT


@given(heartbeats, private_keys, chain_ids, addresses)
@settings(max_examples=40, deadline=None)
def test_round_trip_for_random_heartbeats(hb, key, chain_id, registry):
    signature = hb.sign(key, chain_id, registry)
    assert int.from_bytes(signature[32:64], "big") <= SECP256K1_HALF_N
    assert hb.recover(signature, chain_id, registry) == Account.from_key(key).address


def test_recover_refuses_malformed_signatures():
    with pytest.raises(InvalidSignature):
        HB.recover(SIG[:64], CHAIN_ID, REGISTRY)
    with pytest.raises(InvalidSignature):
        HB.recover(SIG[:64] + bytes([29]), CHAIN_ID, REGISTRY)


# --- wire form ------------------------------------------------------------------------


def test_wire_form_is_compact_json():
    wire = HB.to_json(SIG)
    assert " " not in wire
    assert json.loads(wire) == {
        "asset": 12,
        "timestamp": NOW - 3,
        "gpu_utilization_pct": 37,
        "free_vram_mib": 65_536,
        "running_shards": 1,
        "capacity": 4,
        "seq": 41,
        "signature": "0x" + SIG.hex(),
    }


def test_wire_round_trip():
    assert Heartbeat.from_json(HB.to_json(SIG)) == (HB, SIG)
    assert Heartbeat.from_json(HB.to_json(SIG).encode()) == (HB, SIG)


@given(heartbeats, st.binary(max_size=70))
def test_wire_round_trip_for_any_heartbeat(hb, signature):
    assert Heartbeat.from_json(hb.to_json(signature)) == (hb, signature)


def _wire(**changes):
    body = json.loads(HB.to_json(SIG))
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not ...})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "JSON object"),
        (_wire(seq=...), "missing ['seq']"),
        (_wire(extra=1), "unexpected ['extra']"),
        (_wire(signature="ab" * 65), "0x-prefixed"),
        (_wire(signature=5), "0x-prefixed"),
        (_wire(signature="0xzz"), "not valid hex"),
        (_wire(seq="41"), "heartbeat.seq must be an int"),
        (_wire(capacity=True), "heartbeat.capacity must be an int"),
        (_wire(gpu_utilization_pct=200), "0-100"),
    ],
)
def test_malformed_wire_forms_are_refused(text, message):
    with pytest.raises(HeartbeatError) as raised:
        Heartbeat.from_json(text)
    assert message in str(raised.value)


def test_to_json_wants_signature_bytes():
    with pytest.raises(HeartbeatError):
        HB.to_json("0x" + SIG.hex())  # type: ignore[arg-type]


# --- acceptance -----------------------------------------------------------------------


def test_a_fresh_heartbeat_from_the_agent_is_accepted():
    assert check() is None
    assert check(last_seq=None) is None
    assert check(agent=AGENT.lower()) is None  # addresses compare case-insensitively
    assert check(signature=bytearray(SIG)) is None


def test_not_signed_by_the_assets_agent():
    forged = HB.sign(OTHER_KEY, CHAIN_ID, REGISTRY)
    assert check(signature=forged) == "heartbeat: not signed by the asset's agent"
    assert check(agent=Account.from_key(OTHER_KEY).address) == "heartbeat: not signed by the asset's agent"
    # Signed for another deployment or chain: recovers someone else.
    assert check(signature=HB.sign(KEY, CHAIN_ID, OTHER_REGISTRY)) == "heartbeat: not signed by the asset's agent"
    assert check(signature=HB.sign(KEY, CHAIN_ID + 1, REGISTRY)) == "heartbeat: not signed by the asset's agent"
    # A signature over other values does not vouch for these.
    assert check(hb=dataclasses.replace(HB, running_shards=0)) == "heartbeat: not signed by the asset's agent"


def test_stale():
    hb = dataclasses.replace(HB, timestamp=NOW - 93)
    assert check(hb=hb, signature=hb.sign(KEY, CHAIN_ID, REGISTRY)) == "heartbeat: stale (age 93 s > 30 s)"
    edge = dataclasses.replace(HB, timestamp=NOW - MAX_AGE)
    assert check(hb=edge, signature=edge.sign(KEY, CHAIN_ID, REGISTRY)) is None


def test_from_the_future():
    ahead = dataclasses.replace(HB, timestamp=NOW + DEFAULT_MAX_SKEW + 1)
    signature = ahead.sign(KEY, CHAIN_ID, REGISTRY)
    assert check(hb=ahead, signature=signature) == "heartbeat: from the future"
    assert check(hb=ahead, signature=signature, max_skew=DEFAULT_MAX_SKEW + 1) is None
    within = dataclasses.replace(HB, timestamp=NOW + DEFAULT_MAX_SKEW)
    assert check(hb=within, signature=within.sign(KEY, CHAIN_ID, REGISTRY)) is None
    assert check(hb=within, signature=within.sign(KEY, CHAIN_ID, REGISTRY), max_skew=0) == "heartbeat: from the future"


def test_replayed_sequence():
    assert check(last_seq=41) == "heartbeat: replayed sequence (41 <= 41)"
    assert check(last_seq=100) == "heartbeat: replayed sequence (41 <= 100)"
    assert check(last_seq=40) is None


@pytest.mark.parametrize(
    ("signature", "detail"),
    [
        (SIG[:64], "must be 65 bytes"),
        (SIG + b"\x00", "must be 65 bytes"),
        ("0x" + SIG.hex(), "must be 65 bytes"),
        (SIG[:64] + bytes([1]), "v must be 27 or 28"),
        (
            SIG[:32] + (SECP256K1_N - int.from_bytes(SIG[32:64], "big")).to_bytes(32, "big") + bytes([55 - SIG[64]]),
            "malleable",
        ),
        (bytes(64) + bytes([27]), "out of range"),
    ],
)
def test_malformed_signature(signature, detail):
    reason = check(signature=signature)
    assert reason.startswith("heartbeat: malformed signature")
    assert detail in reason


def test_malformed_heartbeat_and_unknown_asset():
    assert check(hb={"asset": 12}).startswith("heartbeat: malformed")
    assert check(agent="0x" + "00" * 20) == "heartbeat: unknown asset (no agent registered)"
    assert check(agent="") == "heartbeat: unknown asset (no agent registered)"


def test_cheap_checks_come_before_the_signature():
    """A stale or replayed forgery is refused without recovering a key; either way it is refused."""
    old = dataclasses.replace(HB, timestamp=NOW - 600)
    forged = old.sign(OTHER_KEY, CHAIN_ID, REGISTRY)
    assert check(hb=old, signature=forged) == "heartbeat: stale (age 600 s > 30 s)"
    assert check(signature=HB.sign(OTHER_KEY, CHAIN_ID, REGISTRY), last_seq=41).startswith("heartbeat: replayed")


@given(
    age=st.integers(min_value=-20, max_value=100),
    seq=st.integers(min_value=0, max_value=10),
    last_seq=st.none() | st.integers(min_value=0, max_value=10),
)
@settings(deadline=None)
def test_acceptance_is_exactly_fresh_and_newer(age, seq, last_seq):
    hb = dataclasses.replace(HB, timestamp=NOW - age, seq=seq)
    reason = check(hb=hb, signature=hb.sign(KEY, CHAIN_ID, REGISTRY), last_seq=last_seq)
    accepted = -DEFAULT_MAX_SKEW <= age <= MAX_AGE and (last_seq is None or seq > last_seq)
    assert (reason is None) == accepted, reason
