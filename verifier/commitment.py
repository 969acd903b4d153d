"""The result-commitment format: which files a result commits to, under which leaf names.

A result is a Merkle tree (computenet.merkle) over

    out/<path>           each regular file the job wrote under its output folder
    log/container.log    the container's combined stdout and stderr

and when the output files together exceed the manifest's `outputs.max_bytes`, only the log
(the run then counts as failed). Agents commit results this way, verifiers and the arbiter
recompute them this way; two runs agree exactly when their roots are equal, or, for a
manifest that declares a tolerance, when `verifier.compare` says so.
"""

from __future__ import annotations

from pathlib import Path

LOG_LEAF = "log/container.log"
OUTPUT_PREFIX = "out/"


def result_files(outputs: Path, logs: bytes, max_bytes: int) -> tuple[dict[str, bytes], bool]:
    """The leaves a result commits to: the output files (as out/<path>) and the log
    (log/container.log). Returns (leaf -> content, over_limit): past `max_bytes` the outputs
    are not committed, only the log (and the run counts as failed)."""
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(p for p in outputs.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        total += len(data)
        files[OUTPUT_PREFIX + path.relative_to(outputs).as_posix()] = data
    over = total > max_bytes
    if over:
        files = {}
    files[LOG_LEAF] = logs
    return files, over
