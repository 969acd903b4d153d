"""computenet.checkpoints: the newest file (pure), the EIP-712 Checkpoint and its wire form."""

from eth_account import Account
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from computenet.checkpoints import (
    CHECKPOINT_TYPE,
    Checkpoint,
    CheckpointError,
    FileStat,
    SignedCheckpoint,
    check_signed,
    checkpoint_hash,
    latest_file,
    newest,
)
from computenet.heartbeat import Heartbeat, checkpoints_of

CHAIN = 31337
MARKET = "0x" + "4d" * 20
AGENT = Account.from_key(b"\x01" * 32)
OTHER = Account.from_key(b"\x02" * 32)
MANIFEST = keccak(b"manifest")
CP = Checkpoint(7, 1, 0, 2, 5, MANIFEST, keccak(b"state"), 120)


def test_newest_is_by_mtime_then_name_and_skips_files_being_written():
    files = [FileStat("a", 5), FileStat("b", 9), FileStat(".c.tmp", 99), FileStat("d", 9), FileStat("dir", 50, False)]
    assert newest(files) == "d"
    assert newest([FileStat(".x.tmp", 1)]) is None
    assert newest([]) is None


@given(st.lists(st.tuples(st.text("abc", min_size=1, max_size=3), st.integers(0, 5)), max_size=8))
def test_newest_is_the_maximum_completed_file(entries):
    files = [FileStat(n, t) for n, t in entries]
    pick = newest(files)
    done = [(t, n) for n, t in entries]
    assert pick == (max(done)[1] if done else None)


def test_latest_file_reads_the_folder(tmp_path):
    assert latest_file(tmp_path / "missing") is None
    (tmp_path / "step-1").write_bytes(b"1")
    (tmp_path / ".step-2.tmp").write_bytes(b"2")
    assert latest_file(tmp_path) == tmp_path / "step-1"


def test_type_and_hash():
    assert CHECKPOINT_TYPE.startswith("Checkpoint(uint256 job,uint256 shard,uint256 replica,uint256 lease")
    assert checkpoint_hash(b"x") == keccak(b"x")


def test_sign_recover_and_typed_data():
    signed = CP.sign(AGENT.key, CHAIN, MARKET)
    assert signed.signer(CHAIN, MARKET) == AGENT.address
    assert signed.signer(CHAIN, "0x" + "4e" * 20) != AGENT.address  # another market's domain
    typed = CP.typed_data(CHAIN, MARKET)
    assert typed["primaryType"] == "Checkpoint"
    signed_wallet = Account.sign_typed_data(AGENT.key, full_message=typed)
    assert signed_wallet.signature[:64] == signed.signature[:64]


def test_wire_form_round_trips_and_is_checked_on_its_own():
    signed = CP.sign(AGENT.key, CHAIN, MARKET)
    body = signed.to_body()
    assert SignedCheckpoint.from_body(body, MANIFEST) == signed
    assert check_signed(body, 5, AGENT.address, MANIFEST, CHAIN, MARKET) == signed
    assert check_signed(body, 5, OTHER.address, MANIFEST, CHAIN, MARKET) is None  # not the asset's agent
    assert check_signed(body, 6, AGENT.address, MANIFEST, CHAIN, MARKET) is None  # another asset's
    assert check_signed(body, 5, AGENT.address, keccak(b"other"), CHAIN, MARKET) is None  # another job
    assert check_signed(body | {"gpu_seconds": 999}, 5, AGENT.address, MANIFEST, CHAIN, MARKET) is None
    assert check_signed(body | {"extra": 1}, 5, AGENT.address, MANIFEST, CHAIN, MARKET) is None
    assert check_signed("junk", 5, AGENT.address, MANIFEST, CHAIN, MARKET) is None
    try:
        SignedCheckpoint.from_body(body | {"signature": "zz"}, MANIFEST)
    except CheckpointError:
        pass
    else:
        raise AssertionError("a bad signature field must be refused")


def test_heartbeat_carries_checkpoints_outside_its_own_signature():
    hb = Heartbeat(5, 1_000, 10, 0, 1, 4, 3)
    entry = CP.sign(AGENT.key, CHAIN, MARKET).to_body()
    wire = hb.wire(AGENT.key, CHAIN, "0x" + "5a" * 20, [entry])
    parsed, signature = Heartbeat.from_json(wire)
    assert parsed == hb and parsed.recover(signature, CHAIN, "0x" + "5a" * 20) == AGENT.address
    assert checkpoints_of(wire) == [entry]
    assert checkpoints_of(hb.wire(AGENT.key, CHAIN, "0x" + "5a" * 20)) == []
    assert "checkpoints" not in hb.wire(AGENT.key, CHAIN, "0x" + "5a" * 20)
