"""EIP-712 execution receipts: hashing, signing and recovery as the contract does them."""

import dataclasses

import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.eip712 import DOMAIN_TYPEHASH, domain_separator, hash_struct, hash_typed, type_hash
from computenet.errors import ComputenetError, InvalidSignature
from computenet.receipts import (
    DOMAIN_NAME,
    DOMAIN_VERSION,
    RECEIPT_TYPE,
    RECEIPT_TYPEHASH,
    SECP256K1_HALF_N,
    SECP256K1_N,
    ExecutionReceipt,
    market_domain_separator,
    recover_signer,
)

MARKET = to_checksum_address("0x" + "5a" * 20)
CHAIN_ID = 31337
KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
SIGNER = Account.from_key(KEY).address

RECEIPT = ExecutionReceipt(
    job=7,
    shard=2,
    replica=1,
    lease=99,
    asset=3,
    manifest=keccak(b"manifest"),
    output_root=keccak(b"outputs"),
    gpu_seconds=5400,
    exit_code=0,
)

uint256 = st.integers(min_value=0, max_value=2**256 - 1)
bytes32 = st.binary(min_size=32, max_size=32)
receipts = st.builds(
    ExecutionReceipt,
    job=uint256,
    shard=uint256,
    replica=uint256,
    lease=uint256,
    asset=uint256,
    manifest=bytes32,
    output_root=bytes32,
    gpu_seconds=uint256,
    exit_code=uint256,
)
chain_ids = st.integers(min_value=1, max_value=2**64)
addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
private_keys = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda n: n.to_bytes(32, "big"))


def eth_account_digest(receipt: ExecutionReceipt, chain_id: int, market: str) -> bytes:
    signable = encode_typed_data(full_message=receipt.typed_data(chain_id, market))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


# --- hashing ------------------------------------------------------------------------


def test_typehashes_are_keccak_of_the_type_strings():
    assert RECEIPT_TYPE == (
        "ExecutionReceipt(uint256 job,uint256 shard,uint256 replica,uint256 lease,uint256 asset,"
        "bytes32 manifest,bytes32 outputRoot,uint256 gpuSeconds,uint256 exitCode)"
    )
    assert RECEIPT_TYPEHASH == keccak(RECEIPT_TYPE.encode("ascii"))
    assert DOMAIN_TYPEHASH == keccak(
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    assert type_hash("X(uint256 a)") == keccak(b"X(uint256 a)")


def test_domain_constants():
    assert DOMAIN_NAME == "computenet JobMarket"
    assert DOMAIN_VERSION == "1"


def test_domain_separator_formula():
    expected = keccak(
        DOMAIN_TYPEHASH
        + keccak(b"computenet JobMarket")
        + keccak(b"1")
        + CHAIN_ID.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(MARKET[2:])
    )
    assert market_domain_separator(CHAIN_ID, MARKET) == expected
    assert domain_separator(DOMAIN_NAME, DOMAIN_VERSION, CHAIN_ID, MARKET.lower()) == expected


def test_struct_hash_formula():
    words = b"".join(
        value.to_bytes(32, "big") if isinstance(value, int) else value
        for value in (7, 2, 1, 99, 3, keccak(b"manifest"), keccak(b"outputs"), 5400, 0)
    )
    assert RECEIPT.struct_hash() == keccak(RECEIPT_TYPEHASH + words)


def test_digest_formula():
    expected = keccak(b"\x19\x01" + market_domain_separator(CHAIN_ID, MARKET) + RECEIPT.struct_hash())
    assert RECEIPT.digest(CHAIN_ID, MARKET) == expected
    assert hash_typed(market_domain_separator(CHAIN_ID, MARKET), RECEIPT.struct_hash()) == expected


@given(receipts, chain_ids, addresses)
@settings(max_examples=200)
def test_digest_matches_eth_account(receipt, chain_id, market):
    signable = encode_typed_data(full_message=receipt.typed_data(chain_id, market))
    assert signable.header == market_domain_separator(chain_id, market)
    assert signable.body == receipt.struct_hash()
    assert receipt.digest(chain_id, market) == eth_account_digest(receipt, chain_id, market)


def test_hash_struct_refuses_dynamic_types():
    for abi_type in ("string", "bytes", "uint256[]", "bytes32[2]", "(uint256,uint256)"):
        with pytest.raises(ValueError):
            hash_struct(keccak(b"T"), [abi_type], [b""])


def test_hash_struct_is_typehash_then_abi_words():
    th = type_hash("Ping(address who,uint256 n)")
    assert hash_struct(th, ["address", "uint256"], [MARKET, 5]) == keccak(
        th + encode(["address", "uint256"], [MARKET, 5])
    )


def test_hash_typed_requires_32_byte_parts():
    with pytest.raises(ValueError):
        hash_typed(b"\x00" * 31, b"\x00" * 32)


# --- field validation -----------------------------------------------------------------


def test_hex_strings_normalise_to_bytes():
    as_hex = dataclasses.replace(RECEIPT, manifest="0x" + RECEIPT.manifest.hex())
    assert as_hex == RECEIPT
    assert isinstance(as_hex.manifest, bytes)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("job", -1, ValueError),
        ("shard", 2**256, ValueError),
        ("replica", True, TypeError),
        ("lease", 1.0, TypeError),
        ("asset", "1", TypeError),
        ("manifest", b"\x00" * 31, ValueError),
        ("output_root", "ab" * 32, ValueError),
        ("output_root", "0x" + "zz" * 32, ValueError),
        ("manifest", 5, TypeError),
    ],
)
def test_invalid_fields_are_refused(field, value, error):
    with pytest.raises(error):
        dataclasses.replace(RECEIPT, **{field: value})


def test_receipt_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RECEIPT.job = 8  # type: ignore[misc]


# --- signing and recovery -------------------------------------------------------------


def test_sign_recover_round_trip():
    signature = RECEIPT.sign(KEY, CHAIN_ID, MARKET)
    assert len(signature) == 65
    assert signature[64] in (27, 28)
    assert int.from_bytes(signature[32:64], "big") <= SECP256K1_HALF_N
    assert RECEIPT.recover(signature, CHAIN_ID, MARKET) == SIGNER


def test_signature_equals_eth_account_sign_typed_data():
    signed = Account.sign_typed_data(KEY, full_message=RECEIPT.typed_data(CHAIN_ID, MARKET))
    assert RECEIPT.sign(KEY, CHAIN_ID, MARKET) == bytes(signed.signature)


def test_sign_accepts_hex_or_bytes_key():
    assert RECEIPT.sign("0x" + KEY.hex(), CHAIN_ID, MARKET) == RECEIPT.sign(KEY, CHAIN_ID, MARKET)


@given(receipts, private_keys, chain_ids, addresses)
@settings(max_examples=40, deadline=None)
def test_round_trip_for_random_receipts(receipt, key, chain_id, market):
    signature = receipt.sign(key, chain_id, market)
    assert int.from_bytes(signature[32:64], "big") <= SECP256K1_HALF_N
    assert receipt.recover(signature, chain_id, market) == Account.from_key(key).address


def test_wrong_domain_recovers_someone_else():
    signature = RECEIPT.sign(KEY, CHAIN_ID, MARKET)
    assert RECEIPT.recover(signature, CHAIN_ID + 1, MARKET) != SIGNER
    other_market = to_checksum_address("0x" + "5b" * 20)
    assert RECEIPT.recover(signature, CHAIN_ID, other_market) != SIGNER


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ExecutionReceipt)])
def test_changing_any_field_recovers_someone_else(field):
    signature = RECEIPT.sign(KEY, CHAIN_ID, MARKET)
    value = getattr(RECEIPT, field)
    changed = (
        dataclasses.replace(RECEIPT, **{field: value + 1})
        if isinstance(value, int)
        else dataclasses.replace(RECEIPT, **{field: bytes([value[0] ^ 1]) + value[1:]})
    )
    assert changed.digest(CHAIN_ID, MARKET) != RECEIPT.digest(CHAIN_ID, MARKET)
    assert changed.recover(signature, CHAIN_ID, MARKET) != SIGNER


def test_typed_data_member_order_follows_the_type_string():
    members = RECEIPT.typed_data(CHAIN_ID, MARKET)["types"]["ExecutionReceipt"]
    rebuilt = "ExecutionReceipt(" + ",".join(f"{m['type']} {m['name']}" for m in members) + ")"
    assert rebuilt == RECEIPT_TYPE
    assert len(members) == len(dataclasses.fields(ExecutionReceipt))


def _split(signature: bytes) -> tuple[int, int, int]:
    return (
        int.from_bytes(signature[:32], "big"),
        int.from_bytes(signature[32:64], "big"),
        signature[64],
    )


def _join(r: int, s: int, v: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])


def test_high_s_twin_is_rejected():
    r, s, v = _split(RECEIPT.sign(KEY, CHAIN_ID, MARKET))
    twin = _join(r, SECP256K1_N - s, 55 - v)  # the malleable form of the same signature
    with pytest.raises(InvalidSignature, match="upper half"):
        RECEIPT.recover(twin, CHAIN_ID, MARKET)


def test_s_at_half_order_is_accepted_bound():
    # The boundary itself is allowed (the contract refuses only s > n/2); recovery may find any key.
    r, _, v = _split(RECEIPT.sign(KEY, CHAIN_ID, MARKET))
    try:
        RECEIPT.recover(_join(r, SECP256K1_HALF_N, v), CHAIN_ID, MARKET)
    except InvalidSignature as error:
        assert "upper half" not in str(error)
    with pytest.raises(InvalidSignature, match="upper half"):
        RECEIPT.recover(_join(r, SECP256K1_HALF_N + 1, v), CHAIN_ID, MARKET)


@pytest.mark.parametrize("v", [0, 1, 26, 29, 35, 255])
def test_v_outside_27_28_is_rejected(v):
    r, s, _ = _split(RECEIPT.sign(KEY, CHAIN_ID, MARKET))
    with pytest.raises(InvalidSignature, match="v must be 27 or 28"):
        RECEIPT.recover(_join(r, s, v), CHAIN_ID, MARKET)


@pytest.mark.parametrize("length", [0, 64, 66])
def test_wrong_length_is_rejected(length):
    with pytest.raises(InvalidSignature):
        RECEIPT.recover(b"\x01" * length, CHAIN_ID, MARKET)


def test_zero_r_or_s_is_rejected():
    r, s, v = _split(RECEIPT.sign(KEY, CHAIN_ID, MARKET))
    for bad in (_join(0, s, v), _join(r, 0, v), _join(SECP256K1_N, s, v)):
        with pytest.raises(InvalidSignature):
            RECEIPT.recover(bad, CHAIN_ID, MARKET)


def test_r_off_the_curve_is_rejected():
    # x = 5 is not the x-coordinate of a secp256k1 point (5**3 + 7 = 132 is a non-residue mod p).
    with pytest.raises(InvalidSignature):
        RECEIPT.recover(_join(5, 1, 27), CHAIN_ID, MARKET)


def test_invalid_signature_is_an_sdk_error():
    assert issubclass(InvalidSignature, ComputenetError)


def test_recover_signer_on_a_raw_digest():
    digest = RECEIPT.digest(CHAIN_ID, MARKET)
    assert recover_signer(digest, RECEIPT.sign(KEY, CHAIN_ID, MARKET)) == SIGNER
