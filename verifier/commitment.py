"""The result-commitment format: which files a result commits to, under which leaf names.

A result is a Merkle tree (computenet.merkle) over

    out/<path>           each regular file the job wrote under its output folder
    log/container.log    the container's combined stdout and stderr

Only the log is committed (and the run counts as failed) when the outputs cannot be
committed as they stand: together over the manifest's `outputs.max_bytes`, more than
MAX_OUTPUT_FILES files, a name that is not UTF-8 or not portable (computenet.manifest's
rule), or anything but regular files and folders (a symlink, a fifo, a socket, a device).
Empty folders are not committed. Agents commit results this way, verifiers and the arbiter
recompute them this way; two runs agree exactly when their roots are equal, or, for a
manifest that declares a tolerance, when `verifier.compare` says so.

`commit_result` reads each file as a stream, at most once and never past the limit;
`result_files` gives the same leaves with their contents, for callers that need the bytes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from Crypto.Hash import keccak as _keccak
from eth_utils import keccak

from computenet.manifest import portable_problem
from computenet.merkle import MerkleTree, leaf_from_hashes

LOG_LEAF = "log/container.log"
OUTPUT_PREFIX = "out/"
MAX_OUTPUT_FILES = 10_000
CHUNK = 1 << 20


class OutputRefused(Exception):
    """The outputs cannot be committed as they stand; the message says why."""


@dataclass(frozen=True)
class OutputFile:
    leaf: str  # out/<path>
    path: Path  # where it lies
    size: int


@dataclass(frozen=True)
class Commitment:
    """A result's root, its leaves (leaf path -> keccak-256 of the content) and, when only
    the log was committed, why."""

    root: bytes
    content_hashes: dict[str, bytes]
    refused: str | None = None

    @property
    def committed_outputs(self) -> bool:
        return self.refused is None


def output_files(outputs: Path, max_bytes: int) -> list[OutputFile]:
    """The files a result commits to, in leaf order, found without following links and
    without reading any; OutputRefused when they cannot be committed."""
    found: list[OutputFile] = []
    total = 0
    pending = [b""]
    root = os.fsencode(outputs)
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(root, relative) if relative else root) as entries:
            for entry in entries:
                name = relative + b"/" + entry.name if relative else entry.name
                try:
                    text = name.decode("utf-8")
                except UnicodeDecodeError:
                    raise OutputRefused(f"an output name is not UTF-8: {name!r}") from None
                problem = portable_problem(text)
                if problem is not None:
                    raise OutputRefused(f"output {text!r} {problem}")
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    pending.append(name)
                    continue
                if not stat.S_ISREG(mode):
                    raise OutputRefused(f"output {text!r} is not a regular file ({_kind(mode)})")
                size = entry.stat(follow_symlinks=False).st_size
                total += size
                if total > max_bytes:
                    raise OutputRefused(f"the outputs are over the manifest's max_bytes of {max_bytes}")
                found.append(OutputFile(OUTPUT_PREFIX + text, Path(os.fsdecode(entry.path)), size))
                if len(found) > MAX_OUTPUT_FILES:
                    raise OutputRefused(f"more than {MAX_OUTPUT_FILES} output files")
    return sorted(found, key=lambda f: f.leaf)


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a fifo"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a file")


def open_output(file: OutputFile) -> BinaryIO:
    """The file opened for reading, refusing one that changed into a link or a special file."""
    try:
        fd = os.open(file.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise OutputRefused(f"output {file.leaf!r} cannot be read: {error.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputRefused(f"output {file.leaf!r} is not a regular file")
    return os.fdopen(fd, "rb")


def keccak_file(file: OutputFile) -> bytes:
    """keccak-256 of a file's content, streamed; OutputRefused if it is not the size listed."""
    hashing, size = _keccak.new(digest_bits=256), 0
    with open_output(file) as source:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if size > file.size:
                break
            hashing.update(chunk)
    if size != file.size:
        raise OutputRefused(f"output {file.leaf!r} changed while it was committed")
    return hashing.digest()


def commit_result(
    outputs: Path, logs: bytes, max_bytes: int, content_hash: Callable[[OutputFile], bytes] = keccak_file
) -> Commitment:
    """The result's commitment, each output streamed through `content_hash` (which returns
    keccak-256 of the content; the agent's also files it in its output store)."""
    hashes: dict[str, bytes] = {}
    refused = None
    try:
        for file in output_files(outputs, max_bytes):
            hashes[file.leaf] = content_hash(file)
    except OutputRefused as error:
        hashes, refused = {}, str(error)
    hashes[LOG_LEAF] = keccak(logs)
    leaves = ((leaf, leaf_from_hashes(keccak(leaf.encode()), value)) for leaf, value in hashes.items())
    return Commitment(MerkleTree.from_leaves(leaves).root, hashes, refused)


def result_files(outputs: Path, logs: bytes, max_bytes: int) -> tuple[dict[str, bytes], bool]:
    """The leaves a result commits to with their contents: the output files (as out/<path>)
    and the log (log/container.log). Returns (leaf -> content, refused): when the outputs
    cannot be committed, only the log (and the run counts as failed). The contents read are
    at most `max_bytes` in all."""
    files: dict[str, bytes] = {}
    try:
        for file in output_files(outputs, max_bytes):
            with open_output(file) as source:
                files[file.leaf] = source.read(file.size + 1)
            if len(files[file.leaf]) != file.size:
                raise OutputRefused(f"output {file.leaf!r} changed while it was committed")
        refused = False
    except OutputRefused:
        files, refused = {}, True
    files[LOG_LEAF] = logs
    return files, refused
