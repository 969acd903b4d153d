"""The content store: blobs named by their hash, in a local folder and over HTTP.

Every blob is filed under its SHA-256 (what manifests name inputs by) and its keccak-256
(what a job commits its manifest by), and every read, local or remote, is checked against
the name it was asked for: a store, a disk or a network that changes a byte is caught.

    python -m agent store --dir D --port 8700     # serve D over HTTP

Blobs move as streams: `LocalStore.put_file` copies a file in while hashing it and
`StoreClient.download` writes a blob to a file, checked and capped, so neither holds a whole
blob in memory.

HTTP: `PUT /blobs` with the bytes as body answers {"sha256", "keccak256", "size"};
`GET /blobs/{sha256|keccak256}/{64 hex}` answers the bytes. Reads are open: what is stored
here is what clients publish for agents (manifests, inputs). Outputs stay with the agent.

Mirrors: since every read is checked, a store needs no trust, and `Mirrors` reads from
several in order: one that is down, lacks the blob or serves other bytes is skipped with a
warning and the next one tried; when none serves it, the error names each one's failure.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from Crypto.Hash import keccak as _keccak
from eth_utils import keccak
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

from computenet.errors import ComputenetError

log = logging.getLogger("computenet.store")

ALGORITHMS = ("sha256", "keccak256")
_HEX64 = re.compile(r"[0-9a-f]{64}")
DEFAULT_MAX_BYTES = 256 << 20
CHUNK = 1 << 20  # bytes read at a time when streaming


class StoreError(ComputenetError):
    """A blob is missing, too large, or does not match its name."""


class BlobNotFound(StoreError):
    """No blob under that name."""


class BadName(StoreError):
    """Not a blob name: an unknown algorithm or not 64 hex digits."""


class BlobTooLarge(StoreError):
    """A blob is over the size its reader allowed."""


class Hashing:
    """Both names of a stream, computed as it passes (`update` each chunk)."""

    def __init__(self) -> None:
        self.sha256, self.keccak256, self.size = hashlib.sha256(), _keccak.new(digest_bits=256), 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.keccak256.update(chunk)
        self.size += len(chunk)

    def names(self) -> dict[str, str | int]:
        return {"sha256": self.sha256.hexdigest(), "keccak256": self.keccak256.hexdigest(), "size": self.size}


def copy_hashed(source: BinaryIO, target: BinaryIO, limit: int) -> dict[str, str | int]:
    """Copies `source` to `target` while hashing it; BlobTooLarge past `limit` bytes."""
    hashing = Hashing()
    while chunk := source.read(CHUNK):
        if hashing.size + len(chunk) > limit:
            raise BlobTooLarge(f"blob is over the limit of {limit} bytes")
        hashing.update(chunk)
        target.write(chunk)
    return hashing.names()


def digest(algorithm: str, data: bytes) -> str:
    """The blob's name under `algorithm`: 64 lowercase hex digits."""
    if algorithm == "sha256":
        return hashlib.sha256(data).hexdigest()
    if algorithm == "keccak256":
        return keccak(data).hex()
    raise BadName(f"unknown hash algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")


def _name(algorithm: str, hexdigest: str) -> str:
    hexdigest = hexdigest.lower().removeprefix("0x")
    if algorithm not in ALGORITHMS:
        raise BadName(f"unknown hash algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
    if not _HEX64.fullmatch(hexdigest):
        raise BadName(f"a {algorithm} name is 64 hex digits, got {hexdigest[:80]!r}")
    return hexdigest


def check(algorithm: str, hexdigest: str, data: bytes) -> bytes:
    """`data` if it hashes to `hexdigest` under `algorithm`; StoreError otherwise."""
    want = _name(algorithm, hexdigest)
    got = digest(algorithm, data)
    if got != want:
        raise StoreError(f"blob {algorithm}:{want} does not match its content (it hashes to {got})")
    return data


class LocalStore:
    """Blobs in a folder: `<dir>/sha256/<hex>` holds the bytes, `<dir>/keccak256/<hex>` is a
    hard link to them. Writes go through a temporary file and a rename, so a crash never
    leaves a partial blob under a real name."""

    def __init__(self, directory: Path | str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        for algorithm in ALGORITHMS:
            (self.dir / algorithm).mkdir(parents=True, exist_ok=True)

    def path(self, algorithm: str, hexdigest: str) -> Path:
        return self.dir / algorithm / _name(algorithm, hexdigest)

    def put(self, data: bytes) -> dict[str, str | int]:
        """Stores `data`; returns its names and size."""
        if len(data) > self.max_bytes:
            raise StoreError(f"blob of {len(data)} bytes is over this store's limit of {self.max_bytes}")
        return self.put_stream(io.BytesIO(data))

    def put_file(self, path: Path | str, limit: int | None = None) -> dict[str, str | int]:
        """Stores the file at `path` (not following a symlink), streamed; returns its names
        and size. BlobTooLarge past `limit` (default: this store's limit)."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a fifo must not block the reader
        with os.fdopen(fd, "rb") as source:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"{path} is not a regular file")
            return self.put_stream(source, limit)

    def put_stream(self, source: BinaryIO, limit: int | None = None) -> dict[str, str | int]:
        """Stores what `source` yields, copied through a temporary file while hashed."""
        limit = self.max_bytes if limit is None else min(limit, self.max_bytes)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                names = copy_hashed(source, out, limit)
                out.flush()
                os.fsync(out.fileno())
            main = self.path("sha256", str(names["sha256"]))
            if main.exists():
                os.unlink(tmp)
            else:
                os.replace(tmp, main)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        alias = self.path("keccak256", str(names["keccak256"]))
        if not alias.exists():
            try:
                os.link(main, alias)
            except FileExistsError:
                pass
        return names

    def get(self, algorithm: str, hexdigest: str) -> bytes:
        """The blob named `hexdigest` under `algorithm`, checked."""
        path = self.path(algorithm, hexdigest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {algorithm}:{path.name} in {self.dir}") from None
        return check(algorithm, hexdigest, data)

    def has(self, algorithm: str, hexdigest: str) -> bool:
        return self.path(algorithm, hexdigest).exists()


class StoreClient:
    """The HTTP store as a client sees it; every blob read is checked against its name."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def put(self, data: bytes) -> dict[str, str | int]:
        import json

        request = urllib.request.Request(
            f"{self.url}/blobs", data=data, method="PUT", headers={"Content-Type": "application/octet-stream"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise StoreError(
                f"store {self.url} refused the upload: {error.code} {error.read()[:300].decode(errors='replace')}"
            ) from None
        except urllib.error.URLError as error:
            raise StoreError(f"store {self.url} unreachable: {error.reason}") from None
        if answer.get("sha256") != digest("sha256", data):
            raise StoreError(f"store {self.url} filed the upload under a wrong name: {answer}")
        return answer

    def get(self, algorithm: str, hexdigest: str, max_bytes: int | None = None) -> bytes:
        """The blob, checked; BlobTooLarge past `max_bytes` (read no further)."""
        name = _name(algorithm, hexdigest)
        with self._reading(algorithm, name):
            with urllib.request.urlopen(f"{self.url}/blobs/{algorithm}/{name}", timeout=self.timeout) as response:
                data = response.read() if max_bytes is None else response.read(max_bytes + 1)
            if max_bytes is not None and len(data) > max_bytes:
                raise BlobTooLarge(f"blob {algorithm}:{name} is over {max_bytes} bytes")
        return check(algorithm, name, data)

    def download(self, algorithm: str, hexdigest: str, target: Path, max_bytes: int) -> dict[str, str | int]:
        """Writes the blob to `target` as it arrives, at most `max_bytes` (BlobTooLarge past
        them), checked against its name; returns its names and size. Nothing is left at
        `target` when it fails."""
        name = _name(algorithm, hexdigest)
        url = f"{self.url}/blobs/{algorithm}/{name}"
        partial = target.with_name(f".{target.name}.partial")
        try:
            with self._reading(algorithm, name):
                with urllib.request.urlopen(url, timeout=self.timeout) as response, open(partial, "wb") as out:
                    names = copy_hashed(response, out, max_bytes)
            if names[algorithm] != name:
                raise StoreError(
                    f"blob {algorithm}:{name} does not match its content (it hashes to {names[algorithm]})"
                )
            os.replace(partial, target)
            return names
        finally:
            partial.unlink(missing_ok=True)

    @contextmanager
    def _reading(self, algorithm: str, name: str) -> Iterator[None]:
        """Turns the HTTP errors of reading one blob into the store's."""
        try:
            yield
        except urllib.error.HTTPError as error:
            if error.code == 404:
                raise BlobNotFound(f"no blob {algorithm}:{name} in the store at {self.url}") from None
            raise StoreError(f"store {self.url}: {error.code} for {algorithm}:{name}") from None
        except urllib.error.URLError as error:
            raise StoreError(f"store {self.url} unreachable: {error.reason}") from None


T = TypeVar("T")


def _flatten(sources: Iterable[Any]) -> list[StoreClient | str]:
    stores: list[StoreClient | str] = []
    for source in sources:
        if isinstance(source, Mirrors):
            stores += source.stores
        elif isinstance(source, StoreClient):
            stores.append(source)
        elif isinstance(source, str):
            stores += [u.strip().rstrip("/") for u in source.split(",") if u.strip()]
        else:
            stores += _flatten(source)
    return stores


class Mirrors:
    """Stores holding the same blobs, read in order (module docstring); `get` and `download`
    are StoreClient's, `put` uploads to every one."""

    def __init__(self, stores: Iterable[StoreClient | str]) -> None:
        self.stores: list[StoreClient] = []
        for store in stores:
            client = StoreClient(store) if isinstance(store, str) else store
            if client.url and client.url not in self.urls:
                self.stores.append(client)
        if not self.stores:
            raise StoreError("no content store given")

    @classmethod
    def of(cls, *sources: Any) -> Mirrors:
        """The stores of each source in order, duplicates dropped: a URL, a comma-separated
        list of them, a StoreClient, Mirrors, or a list of any of these."""
        return cls(_flatten(sources))

    @property
    def urls(self) -> list[str]:
        return [store.url for store in self.stores]

    @property
    def url(self) -> str:
        return ", ".join(self.urls)

    def _first(self, what: str, read: Callable[[StoreClient], T]) -> T:
        if len(self.stores) == 1:
            return read(self.stores[0])  # its own error says it all
        failures: list[tuple[str, StoreError]] = []
        for store in self.stores:
            try:
                return read(store)
            except StoreError as error:
                failures.append((store.url, error))
                if not isinstance(error, BlobNotFound):
                    log.warning(
                        "mirror skipped", extra={"fields": {"store": store.url, "blob": what, "error": str(error)}}
                    )
        story = f"no mirror served {what}: " + "; ".join(f"{url}: {error}" for url, error in failures)
        kinds = {type(error) for _, error in failures}
        raise (kinds.pop() if len(kinds) == 1 else StoreError)(story)

    def get(self, algorithm: str, hexdigest: str, max_bytes: int | None = None) -> bytes:
        return self._first(f"{algorithm}:{hexdigest}", lambda store: store.get(algorithm, hexdigest, max_bytes))

    def download(self, algorithm: str, hexdigest: str, target: Path, max_bytes: int) -> dict[str, str | int]:
        return self._first(
            f"{algorithm}:{hexdigest}", lambda store: store.download(algorithm, hexdigest, target, max_bytes)
        )

    def put(self, data: bytes) -> dict[str, str | int]:
        """Uploads to every mirror; StoreError naming those that refused."""
        answers, failures = [], []
        for store in self.stores:
            try:
                answers.append(store.put(data))
            except StoreError as error:
                failures.append(f"{store.url}: {error}")
        if failures:
            raise StoreError("upload failed on " + "; ".join(failures))
        return answers[0]


def app(store: LocalStore):
    """The store's HTTP service (FastAPI). Reads and uploads are open to pages on any origin
    (the dApp uploads a job's inputs and manifest from the browser)."""
    from starlette.middleware.cors import CORSMiddleware

    api = FastAPI(title="computenet content store")
    api.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "PUT", "OPTIONS"], allow_headers=["Content-Type"]
    )

    @api.put("/blobs")
    async def put(request: Request) -> dict:
        declared = int(request.headers.get("content-length") or 0)
        if declared > store.max_bytes:
            raise HTTPException(413, f"blob of {declared} bytes is over the limit of {store.max_bytes}")
        fd, upload = tempfile.mkstemp(dir=store.dir, prefix=".upload-")  # spooled to disk, not held in memory
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > store.max_bytes:
                        raise HTTPException(413, f"blob is over the limit of {store.max_bytes} bytes")
                    out.write(chunk)
            return store.put_file(upload)
        except StoreError as error:
            raise HTTPException(413, str(error)) from None
        finally:
            os.unlink(upload)

    @api.get("/blobs/{algorithm}/{hexdigest}")
    def get(algorithm: str, hexdigest: str) -> Response:
        try:
            return Response(store.get(algorithm, hexdigest), media_type="application/octet-stream")
        except BlobNotFound as error:
            raise HTTPException(404, str(error)) from None
        except BadName as error:
            raise HTTPException(400, str(error)) from None
        except StoreError as error:  # a blob that no longer matches its name: ours to fix
            raise HTTPException(500, str(error)) from None

    return api
