"""The result-commitment format: the streaming commitment gives the root the in-memory one
gives, and outputs that cannot be committed as they stand leave only the log."""

import os
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computenet.merkle import MerkleTree
from verifier.commitment import (
    LOG_LEAF,
    MAX_OUTPUT_FILES,
    OutputFile,
    commit_result,
    keccak_file,
    output_files,
    result_files,
)

SEGMENT = st.text("abcXYZ019._-+,=@~", min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
TREES = st.dictionaries(st.lists(SEGMENT, min_size=1, max_size=4).map("/".join), st.binary(max_size=3000), max_size=8)


def _write(folder, files):
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    written = {}
    for path, data in files.items():
        target = folder / path
        try:  # one of two drawn paths may be a folder of the other: keep what fits
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written[path] = data
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            pass
    return {p: folder.joinpath(p).read_bytes() for p in written if folder.joinpath(p).is_file()}


@given(files=TREES, log=st.binary(max_size=200), slack=st.integers(-1, 1))
def test_the_streaming_commitment_is_the_in_memory_one(tmp_path_factory, files, log, slack):
    folder = tmp_path_factory.mktemp("out", numbered=True)
    written = _write(folder, files)
    max_bytes = max(1, sum(map(len, written.values())) + slack)
    streamed = commit_result(folder, log, max_bytes)
    in_memory, refused = result_files(folder, log, max_bytes)
    assert streamed.root == MerkleTree.from_files(in_memory).root
    assert (streamed.refused is not None) == refused
    expected = {"out/" + p: d for p, d in written.items()} if not refused else {}
    assert in_memory == expected | {LOG_LEAF: log}


def test_the_outputs_are_listed_without_reading_and_hashed_as_streams(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"b" * (3 << 20))
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "empty").mkdir()
    listed = output_files(tmp_path, 10 << 20)
    assert [(f.leaf, f.size) for f in listed] == [("out/a", 1), ("out/sub/b", 3 << 20)]
    from eth_utils import keccak

    assert keccak_file(listed[1]) == keccak(b"b" * (3 << 20))
    with pytest.raises(Exception, match="changed while it was committed"):
        keccak_file(OutputFile("out/a", tmp_path / "a", 0))


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda d: os.symlink("/etc/passwd", d / "link"), "not a regular file (a symlink)"),
        (lambda d: os.symlink("a", d / "dangling"), "not a regular file (a symlink)"),
        (lambda d: os.mkfifo(d / "pipe"), "not a regular file (a fifo)"),
        (lambda d: open(os.fsencode(d) + b"/\xff\xfe", "w").close(), "not UTF-8"),
        (lambda d: (d / "has space").write_text("x"), "portable"),
        (lambda d: (d / "back\\slash").write_text("x"), "portable"),
        (lambda d: (d / "big").write_bytes(b"x" * 97), "max_bytes of 100"),  # 4 + 97 bytes
    ],
)
def test_outputs_that_cannot_be_committed_leave_only_the_log(tmp_path, make, why):
    (tmp_path / "ok").write_bytes(b"fine")
    make(tmp_path)
    commitment = commit_result(tmp_path, b"log", 100)
    assert why in commitment.refused
    assert commitment.content_hashes.keys() == {LOG_LEAF}
    assert commitment.root == MerkleTree.from_files({LOG_LEAF: b"log"}).root
    assert result_files(tmp_path, b"log", 100) == ({LOG_LEAF: b"log"}, True)


def test_more_files_than_the_format_takes_leave_only_the_log(tmp_path):
    for i in range(MAX_OUTPUT_FILES + 1):
        (tmp_path / f"f{i}").touch()
    assert f"more than {MAX_OUTPUT_FILES}" in commit_result(tmp_path, b"", 1 << 20).refused
