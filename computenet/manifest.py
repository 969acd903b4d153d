"""The job manifest: what to run, on which inputs, and where results go, plus its canonical hash.

The hash committed on chain is

    manifest_hash = keccak256(canonical_json(manifest))

where `canonical_json` serialises the validated model (`model_dump(mode="json")`, so
defaults are filled in) with sorted keys, no whitespace, and UTF-8 without ASCII
escaping. Every object key is ASCII (field names, and env names by their pattern), so
the key order is the same whichever canonical-JSON scheme a verifier uses. Hex values
are stored lowercase, so the hash does not depend on the case a client used.

Paths are portable: every file name means the same on every agent's file system and in a
Merkle leaf. A path is `/`-separated segments, each of 1 to 255 bytes drawn from
`A-Z a-z 0-9 . _ - + , = @ ~` (POSIX's portable file name characters and five harmless
ones: no spaces, control characters, backslashes, quotes or non-ASCII), never `.` or `..`,
and at most 4096 bytes in all. The same rule names a result's output files
(verifier.commitment). The container's own mounts stay apart: inputs are mounted at `/in`
and `/tmp` is a tmpfs, so the output path is neither of them, nor inside or above them, nor a
system path (`/proc`, `/sys`, `/dev`, `/etc`, `/usr`, `/bin`, `/lib`, `/lib64`, `/sbin`,
`/run`, `/var/run`), nor inside or above one; and no input path is a folder of another
(a file `a` and a file `a/b` cannot both be staged).

One exception to "defaults filled in": the `verification` section (how results of the job
are compared and sampled, `ResultVerification`) is left out of the canonical form when it
equals its defaults, so every manifest written before the section existed keeps its hash
(and the stored bytes of jobs already posted stay canonical). When any of its values differs,
the whole section is written, with its defaults. Numeric tolerances are decimal strings, so
the canonical JSON holds no floats and reads the same in every language.

`stores`, the content-store mirrors holding the manifest's inputs (http(s) base URLs, tried
in order after the agent's own store, computenet.staging), is likewise left out when empty.
Every blob read from a store is checked against its hash, so a mirror needs no trust.
"""

import json
import re
from typing import Annotated, Any, Literal

from eth_utils import keccak
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from computenet.errors import ManifestError

ZERO_ROOT = "0x" + "00" * 32
# The runtime sets these for sharded jobs; a manifest must not override them.
RESERVED_ENV = frozenset({"COMPUTENET_SHARD_INDEX", "COMPUTENET_SHARD_COUNT"})

_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# Portable paths (see the module docstring).
_SEGMENT = re.compile(r"[A-Za-z0-9._+,=@~-]+")
MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4096
INPUT_MOUNT, TMP_MOUNT = "/in", "/tmp"  # the sandbox's own mounts (computenet.sandbox)
SYSTEM_PATHS = ("/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/lib", "/lib64", "/sbin", "/run", "/var/run")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Docker reference grammar: [host[:port]/]component(/component)*[:tag]
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_IMAGE_NAME = re.compile(rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?")


def _fail(kind: str, message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, context or None)


def _check_image(value: str) -> str:
    if "@" not in value:
        raise _fail(
            "image_digest",
            "a digest is required: pin the image as name@sha256:<64 lowercase hex>, not by tag ({value})",
            value=value,
        )
    name, digest = value.rsplit("@", 1)
    if not _DIGEST.fullmatch(digest):
        raise _fail("image_digest", "a digest is required: expected sha256:<64 lowercase hex> after '@'")
    if not _IMAGE_NAME.fullmatch(name):
        raise _fail("image_name", "invalid image name {name}", name=repr(name))
    return value


def _check_bytes32(value: str) -> str:
    if not (value.startswith("0x") and _HEX64.fullmatch(value[2:])):
        raise _fail("bytes32_hex", "must be 0x followed by 64 hex digits")
    return value.lower()


def _check_sha256(value: str) -> str:
    if not _HEX64.fullmatch(value):
        raise _fail("sha256_hex", "must be 64 hex digits")
    return value.lower()


def _check_relative_path(value: str) -> str:
    if value.startswith("/"):
        raise _fail("relative_path", "must be a relative path, not start with '/'")
    _check_portable(value)
    return value


def _check_absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise _fail("absolute_path", "must be an absolute path starting with '/'")
    if value == "/":
        raise _fail("absolute_path", "must not be the container's root directory")
    _check_portable(value[1:])
    return value


def _check_output_path(value: str) -> str:
    for mount in (INPUT_MOUNT, TMP_MOUNT, *SYSTEM_PATHS):
        if overlaps(value, mount):
            raise _fail(
                "output_path",
                "{path} overlaps {mount} (the input mount, /tmp and system paths are the sandbox's own)",
                path=repr(value),
                mount=mount,
            )
    return value


def overlaps(a: str, b: str) -> bool:
    """Whether one of two normalised paths is the other or lies inside it."""
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def portable_problem(path: str) -> str | None:
    """Why a relative `/`-separated path is not portable (module docstring); None if it is."""
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        return f"is over {MAX_PATH_BYTES} bytes"
    for segment in path.split("/"):
        # One spelling per file: no '..' escapes, no '.', no empty segments (from '//' or a trailing '/').
        if segment in ("", ".", ".."):
            return "must be a normalised POSIX path without empty, '.' or '..' segments"
        if len(segment.encode("utf-8", "surrogateescape")) > MAX_SEGMENT_BYTES:
            return f"has a segment over {MAX_SEGMENT_BYTES} bytes"
        if not _SEGMENT.fullmatch(segment):
            bad = next(c for c in segment if not _SEGMENT.fullmatch(c))
            return f"has the character {bad!r}, outside the portable set A-Z a-z 0-9 . _ - + , = @ ~"
    return None


def _check_portable(value: str) -> None:
    problem = portable_problem(value)
    if problem is not None:
        raise _fail("path_portable", "{problem}", problem=problem)


def _check_unique(paths: list[str]) -> set[str]:
    """The paths as a set; a path named twice is refused."""
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise _fail("duplicate_path", "duplicate path {path}", path=repr(path))
        seen.add(path)
    return seen


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise _fail("nul", "must not contain NUL (it cannot reach a process)")
    return value


def _exact_int(value: Any) -> Any:
    # Literal[1] alone would accept true and 1.0, which hash differently from 1.
    if type(value) is not int:
        raise _fail("int_type", "must be the integer 1")
    return value


ImageRef = Annotated[str, AfterValidator(_check_image)]
Bytes32Hex = Annotated[str, AfterValidator(_check_bytes32)]
Sha256Hex = Annotated[str, AfterValidator(_check_sha256)]
RelativePath = Annotated[str, AfterValidator(_check_relative_path)]
AbsolutePath = Annotated[str, AfterValidator(_check_absolute_path)]
OutputPath = Annotated[AbsolutePath, AfterValidator(_check_output_path)]
ProcessString = Annotated[str, AfterValidator(_no_nul)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class InputFile(_Strict):
    """One input file, staged at `path` under the container's input directory."""

    path: RelativePath
    size: int = Field(ge=0)
    sha256: Sha256Hex


class Inputs(_Strict):
    """The input files and their Merkle root (`computenet.merkle`, leaves over path and content)."""

    # Declared before `root` so the root validator can see the files.
    files: list[InputFile]
    root: Bytes32Hex

    @field_validator("files")
    @classmethod
    def _unique_paths(cls, files: list[InputFile]) -> list[InputFile]:
        seen = _check_unique([file.path for file in files])
        for file in files:  # a file cannot also be a folder of another: `a` and `a/b`
            parts = file.path.split("/")
            for depth in range(1, len(parts)):
                if "/".join(parts[:depth]) in seen:
                    raise _fail(
                        "path_prefix",
                        "{path} lies inside the input file {folder}",
                        path=repr(file.path),
                        folder=repr("/".join(parts[:depth])),
                    )
        return files

    @field_validator("root")
    @classmethod
    def _root_matches_emptiness(cls, root: str, info: ValidationInfo) -> str:
        files = info.data.get("files")
        if files is None:  # files failed validation; that error is reported instead
            return root
        if not files and root != ZERO_ROOT:
            raise _fail("empty_root", "must be the zero hash when there are no input files")
        if files and root == ZERO_ROOT:
            raise _fail("empty_root", "must not be the zero hash when there are input files")
        return root


class Outputs(_Strict):
    """Where the job writes results inside the container, and how much it may write."""

    path: OutputPath = "/out"
    max_bytes: int = Field(gt=0)


def _check_tolerance(value: str) -> str:
    # A plain decimal in one spelling (no sign, exponent, NaN, leading or trailing zeros),
    # so equal tolerances hash alike and every language reads the same number.
    if not re.fullmatch(r"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?", value):
        raise _fail(
            "tolerance",
            'must be a non-negative decimal string written out in full, e.g. "0.00001" '
            "(no sign, exponent, leading or trailing zeros)",
        )
    return value


Tolerance = Annotated[str, AfterValidator(_check_tolerance)]

MAX_STORES = 16
MAX_STORE_URL = 2048
_STORE_URL = re.compile(r"https?://[^\s/?#@]+(/[^\s?#]*)?")


def _check_store_url(value: str) -> str:
    if len(value) > MAX_STORE_URL or not _STORE_URL.fullmatch(value):
        raise _fail(
            "store_url",
            "must be an http(s) base URL without credentials, query or fragment, at most {limit} bytes",
            limit=MAX_STORE_URL,
        )
    return value.rstrip("/")


StoreUrl = Annotated[str, AfterValidator(_check_store_url)]


class NumericOutput(_Strict):
    """An output file compared as a NumPy array within tolerances: |a - b| <= atol + rtol * |b|."""

    path: RelativePath  # relative to the outputs folder: committed as out/<path>
    rtol: Tolerance = "0"
    atol: Tolerance = "0"


class ResultVerification(_Strict):
    """How two results of this job are compared and how often they are sampled
    (verifier/compare.py, verifier/sampling.py, verifier/rules.py)."""

    compare: Literal["exact", "numeric"] = "exact"
    # The files compared numerically; every other one exactly.
    numeric: list[NumericOutput] = Field([], validate_default=True)
    spot_check_bps: int = Field(1000, ge=1, le=10_000)  # SPOT_CHECK: chance each replica is re-executed
    metering_tolerance_bps: int = Field(5000, ge=0, le=100_000)  # metering claimed above measured, allowed

    @field_validator("numeric")
    @classmethod
    def _unique_numeric_paths(cls, numeric: list[NumericOutput]) -> list[NumericOutput]:
        _check_unique([item.path for item in numeric])
        return numeric

    @field_validator("numeric")
    @classmethod
    def _numeric_with_numeric_compare(cls, numeric: list[NumericOutput], info: ValidationInfo) -> list[NumericOutput]:
        compare = info.data.get("compare")
        if compare == "exact" and numeric:
            raise _fail("numeric_unused", 'lists files to compare numerically, but compare is "exact"')
        if compare == "numeric" and not numeric:
            raise _fail("numeric_missing", 'must list the files to compare numerically when compare is "numeric"')
        return numeric


class Manifest(_Strict):
    """A job manifest, version 1."""

    version: Annotated[Literal[1], BeforeValidator(_exact_int)]
    image: ImageRef
    command: list[ProcessString] = Field(min_length=1)
    env: dict[str, ProcessString] = {}
    inputs: Inputs
    outputs: Outputs
    timeout_seconds: int = Field(gt=0)
    verification: ResultVerification = ResultVerification()
    stores: list[StoreUrl] = Field([], max_length=MAX_STORES)

    @field_validator("stores")
    @classmethod
    def _unique_stores(cls, stores: list[str]) -> list[str]:
        if len(set(stores)) != len(stores):
            raise _fail("duplicate_store", "names a store twice")
        return stores

    @field_validator("command")
    @classmethod
    def _executable_named(cls, command: list[str]) -> list[str]:
        if not command[0]:
            raise _fail("command", "the first element (the executable) must not be empty")
        return command

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not _ENV_NAME.fullmatch(name):
                raise _fail("env_name", "variable name {name} must match [A-Z_][A-Z0-9_]*", name=repr(name))
            if name in RESERVED_ENV:
                raise _fail("env_reserved", "variable name {name} is reserved for the runtime", name=repr(name))
        return env


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = "manifest"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{_field_path(item['loc'])}: {item['msg']}" for item in error.errors())


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which duplicate wins; refuse rather than guess.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ManifestError(f"manifest: duplicate JSON key {key!r}")
        result[key] = value
    return result


def parse_manifest(raw: bytes | str) -> Manifest:
    """Validate a JSON manifest; every problem raises ManifestError naming its field path."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ManifestError(f"manifest: not UTF-8 ({error.reason} at byte {error.start})") from None
    elif isinstance(raw, str):
        text = raw
    else:
        raise TypeError(f"a manifest is JSON bytes or str, not {type(raw).__name__}")
    try:
        json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"manifest: invalid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as error:
        raise ManifestError(_describe(error)) from None


def canonical_json(manifest: Manifest) -> bytes:
    """The manifest's one byte form: sorted keys, no whitespace, UTF-8, defaults included."""
    body = manifest.model_dump(mode="json")
    if manifest.verification == ResultVerification():
        del body["verification"]  # the defaults: the hash of a manifest written before the section
    if not manifest.stores:
        del body["stores"]  # likewise: no mirrors listed
    return json.dumps(
        body,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def manifest_hash(manifest: Manifest) -> bytes:
    """keccak256 of the canonical JSON: the 32 bytes a job commits to on chain."""
    return keccak(canonical_json(manifest))


def with_stores(manifest: Manifest, stores: list[str]) -> Manifest:
    """The manifest listing `stores` as its mirrors, then those it listed already (a new hash);
    ManifestError for a bad URL."""
    merged = list(dict.fromkeys([s.rstrip("/") for s in stores] + list(manifest.stores)))
    return parse_manifest(json.dumps({**manifest.model_dump(mode="json"), "stores": merged}))


def image_digest(manifest: Manifest) -> str:
    """The image's content digest, `sha256:<64 hex>`."""
    return manifest.image.rsplit("@", 1)[1]


def build_manifest(
    image: str,
    command: list[str],
    files: dict[str, bytes],
    *,
    timeout_seconds: int,
    max_output_bytes: int,
    env: dict[str, str] | None = None,
    output_path: str = "/out",
    verification: dict[str, Any] | None = None,
    stores: list[str] | None = None,
) -> Manifest:
    """A validated manifest for `files` (relative path -> content) staged under /in: each
    file named by its SHA-256 and size, and their Merkle root; `verification` is the
    manifest's verification section (ResultVerification's fields; none: the defaults);
    `stores` the content-store mirrors holding the inputs."""
    import hashlib

    from computenet.merkle import MerkleTree

    inputs = [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in sorted(files.items())]
    root = "0x" + MerkleTree.from_files(files).root.hex() if files else ZERO_ROOT
    body = {
        "version": 1,
        "image": image,
        "command": command,
        "env": env or {},
        "inputs": {"files": inputs, "root": root},
        "outputs": {"path": output_path, "max_bytes": max_output_bytes},
        "timeout_seconds": timeout_seconds,
    }
    if verification is not None:
        body["verification"] = verification
    if stores:
        body["stores"] = stores
    return parse_manifest(json.dumps(body))
