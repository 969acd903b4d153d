"""A running lease's checkpoints, the agent's side of computenet.checkpoints' protocol.

`Watcher.poll`, on each poll of the running container: the newest completed file in the
lease's checkpoint folder, if new, is uploaded to the agent's content store, signed as an
EIP-712 Checkpoint with the lease's metered GPU-seconds so far, and kept as the lease's latest
(served in the asset's heartbeats). Older checkpoint files are removed once a newer one is
taken, so a lease's checkpoints hold at most the newest and the one being written (each
capped by the container's RLIMIT_FSIZE). `stage_resume` (computenet.staging, shared with the
verifiers), before a lease starts: the replica's adopted resume point fetched by keccak256,
checked, and placed at resume/checkpoint; a missing or mismatching blob declines the lease.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from computenet.checkpoints import FileStat, SignedCheckpoint, checkpoint_hash, newest, scan
from computenet.staging import NO_RESUME as ZERO
from computenet.staging import checkpoint_dirs, make_dirs, stage_resume

__all__ = ["ZERO", "Watcher", "checkpoint_dirs", "make_dirs", "stage_resume"]

log = logging.getLogger("agent.checkpoints")


class Watcher:
    """One running lease's checkpoints (module docstring). `sign(hash, gpu_seconds)` signs a
    Checkpoint for the lease; `upload(data)` puts the bytes in the agent's store; `metered()`
    is the lease's GPU-seconds so far by its meter; `bound()` the most the chain accepts now
    (the lease's time on its GPUs, the job's cap)."""

    def __init__(
        self,
        folder: Path,
        *,
        sign: Callable[[bytes, int], SignedCheckpoint],
        upload: Callable[[bytes], Any],
        metered: Callable[[], int],
        bound: Callable[[], int],
        max_bytes: int,
    ) -> None:
        self.folder = folder
        self.sign, self.upload, self.metered, self.bound = sign, upload, metered, bound
        self.max_bytes = max_bytes
        self.latest: SignedCheckpoint | None = None  # the newest taken, as served in heartbeats
        self.committed: SignedCheckpoint | None = None  # the newest the agent committed itself
        self._seen: tuple[str, int, int] | None = None  # (name, mtime_ns, size) of the newest taken

    def poll(self) -> SignedCheckpoint | None:
        """Takes the newest completed checkpoint file if it is new; returns it signed, or
        None when there is nothing new (never raises: a failure is logged and tried again)."""
        try:
            return self._poll()
        except Exception as error:
            log.warning("checkpoint not taken", extra={"fields": {"folder": str(self.folder), "error": str(error)}})
            return None

    def _poll(self) -> SignedCheckpoint | None:
        files = scan(self.folder)
        name = newest(files)
        if name is None:
            return None
        data, seen = self._read(name)
        if data is None or seen == self._seen:
            return None
        self.upload(data)
        last = self.latest.checkpoint.gpu_seconds if self.latest else 0
        # A newer checkpoint must claim more than the last (the chain keeps the later one),
        # never more than the lease's time on its GPUs: an idle second still counts one.
        seconds = min(max(self.metered(), last + 1), self.bound())
        if seconds <= last:
            return None  # no room left to outrank the last one; it stays the latest
        self._seen = seen
        self.latest = self.sign(checkpoint_hash(data), seconds)
        self._prune(name, files)
        return self.latest

    def _read(self, name: str) -> tuple[bytes | None, tuple[str, int, int] | None]:
        """The bytes of checkpoint `name` and its (name, mtime_ns, size); None for anything but
        a regular file within max_bytes. The folder is the container's: it may swap the file
        for a link to a host file or a FIFO between the scan and the read, so the file is
        opened without following links or blocking, and checked once open."""
        fd = os.open(self.folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            seen = (name, st.st_mtime_ns, st.st_size)
            if not stat.S_ISREG(st.st_mode) or seen == self._seen:
                return None, seen
            if st.st_size > self.max_bytes:
                log.warning("checkpoint too large, skipped", extra={"fields": {"file": name, "size": st.st_size}})
                self._seen = seen
                return None, seen
            data = handle.read(self.max_bytes + 1)  # renamed in whole: a completed checkpoint
        if len(data) > self.max_bytes:
            return None, seen
        return data, seen

    def _prune(self, keep: str, files: list[FileStat]) -> None:
        """Removes the completed checkpoints older than the one just taken."""
        for f in files:
            if f.is_file and not f.name.startswith(".") and f.name != keep:
                try:
                    (self.folder / f.name).unlink()
                except OSError:
                    pass
