"""agent.checkpoints without a container: what the watcher takes from a checkpoint folder the
workload controls, and staging a resume point (a real content store where one is needed)."""

import os

import pytest
from eth_account import Account
from eth_utils import keccak

from agent import plan
from agent.checkpoints import Watcher, make_dirs, stage_resume
from computenet.checkpoints import Checkpoint
from computenet.staging import Decline

KEY = Account.from_key(b"\x01" * 32)


def watcher(folder, metered=lambda: 5, bound=lambda: 1_000, max_bytes=1_000):
    uploaded = []

    def sign(digest, seconds):
        return Checkpoint(1, 0, 0, 1, 7, b"\x01" * 32, digest, seconds).sign(KEY.key, 31337, "0x" + "4d" * 20)

    w = Watcher(folder, sign=sign, upload=uploaded.append, metered=metered, bound=bound, max_bytes=max_bytes)
    return w, uploaded


def write(folder, name, data, mtime):
    (folder / f".{name}.tmp").write_bytes(data)
    os.rename(folder / f".{name}.tmp", folder / name)
    os.utime(folder / name, ns=(mtime, mtime))


def test_the_newest_completed_checkpoint_is_taken_once_signed_and_older_ones_pruned(tmp_path):
    w, uploaded = watcher(tmp_path)
    assert w.poll() is None  # nothing yet
    write(tmp_path, "step-1", b"one", 10**9)
    (tmp_path / ".step-3.tmp").write_bytes(b"half")  # being written: never taken
    first = w.poll()
    assert first.checkpoint.checkpoint == keccak(b"one") and first.checkpoint.gpu_seconds == 5
    assert uploaded == [b"one"] and w.poll() is None  # the same file is not taken twice
    write(tmp_path, "step-2", b"two", 2 * 10**9)
    second = w.poll()
    # the meter still says 5: a newer checkpoint claims one more, so it outranks the last on chain
    assert second.checkpoint.gpu_seconds == 6 and w.latest == second
    assert sorted(p.name for p in tmp_path.iterdir()) == [".step-3.tmp", "step-2"]


def test_no_room_on_chain_leaves_the_last_checkpoint_the_latest(tmp_path):
    w, _ = watcher(tmp_path, metered=lambda: 3, bound=lambda: 3)
    write(tmp_path, "a", b"a", 10**9)
    assert w.poll().checkpoint.gpu_seconds == 3
    write(tmp_path, "b", b"b", 2 * 10**9)
    assert w.poll() is None and w.latest.checkpoint.checkpoint == keccak(b"a")


def test_links_fifos_and_oversized_files_are_never_read(tmp_path):
    secret = tmp_path.parent / "host-secret"
    secret.write_bytes(b"host file")
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    w, uploaded = watcher(folder, max_bytes=10)
    os.symlink(secret, folder / "link")
    os.mkfifo(folder / "fifo")
    assert w.poll() is None and uploaded == []
    write(folder, "big", b"x" * 11, 5 * 10**9)
    assert w.poll() is None and uploaded == []
    # a regular file swapped for a link between the scan and the read is refused when opened
    write(folder, "step", b"ok", 9 * 10**9)
    os.unlink(folder / "step")
    os.symlink(secret, folder / "step")
    with pytest.raises(OSError):
        w._read("step")
    assert w.poll() is None and uploaded == []


def test_stage_resume_places_the_checked_blob_or_declines(tmp_path, content_store):
    _, resume = make_dirs(tmp_path / "lease")
    assert stage_resume(content_store.client, b"\x00" * 32, resume, 100) is False
    assert not (resume / "checkpoint").exists()
    content_store.client.put(b'{"step": 4}')
    assert stage_resume(content_store.client, keccak(b'{"step": 4}'), resume, 100) is True
    assert (resume / "checkpoint").read_bytes() == b'{"step": 4}'
    with pytest.raises(Decline) as missing:
        stage_resume(content_store.client, keccak(b"never stored"), resume, 100)
    assert missing.value.reason == "checkpoint not found"
    with pytest.raises(Decline) as large:
        stage_resume(content_store.client, keccak(b'{"step": 4}'), resume, 3)
    assert large.value.reason == "checkpoint too large"


def test_the_agent_stages_a_resume_point_with_the_verifiers_own_step():
    from agent import checkpoints
    from computenet import staging

    assert (checkpoints.stage_resume, checkpoints.make_dirs) == (staging.stage_resume, staging.make_dirs)


@pytest.mark.parametrize(
    ("max_gpu_seconds", "contributed", "declined"),
    [(3_600, 0, False), (3_600, 3_599, False), (3_600, 3_600, True), (1, 1, True), (1, 0, False)],
)
def test_a_lease_with_no_gpu_seconds_left_to_pay_is_declined(max_gpu_seconds, contributed, declined):
    if not declined:
        assert plan.check_paid(max_gpu_seconds, contributed) is None
        return
    with pytest.raises(Decline) as refused:
        plan.check_paid(max_gpu_seconds, contributed)
    assert refused.value.reason == "no gpu-seconds left to pay"
    assert f"contributed {contributed} of the job's {max_gpu_seconds} GPU-seconds" in refused.value.detail
    assert plan.reason_bytes(refused.value.reason).rstrip(b"\x00") == b"no gpu-seconds left to pay"
