"""Job manifest validation and canonical hashing."""

import copy
import json

import pydantic
import pytest
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from computenet.errors import ComputenetError, ManifestError
from computenet.manifest import (
    ZERO_ROOT,
    Manifest,
    canonical_json,
    image_digest,
    manifest_hash,
    parse_manifest,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4
ROOT = "0x" + "ab" * 32
SHA = "cd" * 32

VALID = {
    "version": 1,
    "image": f"ghcr.io/computenet/worker@{DIGEST}",
    "command": ["python", "-m", "train", "--epochs", "3"],
    "env": {"BATCH_SIZE": "64", "_PRIVATE": "x"},
    "inputs": {
        "root": ROOT,
        "files": [
            {"path": "data/train.csv", "size": 1024, "sha256": SHA},
            {"path": "config.yaml", "size": 0, "sha256": "00" * 32},
        ],
    },
    "outputs": {"path": "/out", "max_bytes": 10_000_000},
    "timeout_seconds": 3600,
}


def dumps(data) -> str:
    return json.dumps(data)


def with_change(path: str, value) -> dict:
    """VALID with one field replaced; `path` is dotted, list indices as digits."""
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    target = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return data


def without(path: str) -> dict:
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    target = data
    for part in parents:
        target = target[part]
    del target[last]
    return data


# --- valid manifests ----------------------------------------------------------------


def test_valid_manifest_round_trips():
    manifest = parse_manifest(dumps(VALID))
    assert isinstance(manifest, Manifest)
    assert manifest.image == VALID["image"]
    assert manifest.inputs.files[0].path == "data/train.csv"
    assert json.loads(canonical_json(manifest)) == VALID
    assert parse_manifest(canonical_json(manifest)) == manifest


def test_bytes_and_str_parse_alike():
    assert parse_manifest(dumps(VALID).encode("utf-8")) == parse_manifest(dumps(VALID))


def test_canonical_json_exact_bytes():
    manifest = parse_manifest(dumps(without("env")))
    expected = (
        '{"command":["python","-m","train","--epochs","3"],"env":{},'
        f'"image":"ghcr.io/computenet/worker@{DIGEST}",'
        '"inputs":{"files":['
        f'{{"path":"data/train.csv","sha256":"{SHA}","size":1024}},'
        f'{{"path":"config.yaml","sha256":"{"00" * 32}","size":0}}],'
        f'"root":"{ROOT}"}},'
        '"outputs":{"max_bytes":10000000,"path":"/out"},"timeout_seconds":3600,"version":1}'
    ).encode()
    assert canonical_json(manifest) == expected
    assert manifest_hash(manifest) == keccak(expected)
    assert len(manifest_hash(manifest)) == 32


def test_defaults_are_part_of_the_canonical_form():
    explicit = parse_manifest(dumps(VALID))
    implicit = parse_manifest(dumps(without("outputs.path")))
    assert manifest_hash(explicit) == manifest_hash(implicit)
    assert manifest_hash(parse_manifest(dumps(without("env")))) == manifest_hash(
        parse_manifest(dumps(with_change("env", {})))
    )


def test_non_ascii_is_written_as_utf8():
    manifest = parse_manifest(dumps(with_change("env", {"GREETING": "héllo 日本"})))
    assert "héllo 日本".encode() in canonical_json(manifest)


def _shuffle_keys(value, rnd):
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {key: _shuffle_keys(item, rnd) for key, item in items}
    if isinstance(value, list):
        return [_shuffle_keys(item, rnd) for item in value]
    return value


@given(st.randoms(use_true_random=False), st.sampled_from([None, 0, 1, 2, 4, "\t"]), st.booleans())
def test_hash_is_stable_under_key_order_and_whitespace(rnd, indent, spaced):
    reordered = _shuffle_keys(VALID, rnd)
    separators = (", ", ": ") if spaced else (",", ":")
    raw = json.dumps(reordered, indent=indent, separators=separators)
    assert manifest_hash(parse_manifest("\n  " + raw + "\n")) == manifest_hash(parse_manifest(dumps(VALID)))


def test_hex_case_does_not_change_the_hash():
    upper = with_change("inputs.root", ROOT.upper().replace("0X", "0x"))
    upper["inputs"]["files"][0]["sha256"] = SHA.upper()
    assert manifest_hash(parse_manifest(dumps(upper))) == manifest_hash(parse_manifest(dumps(VALID)))


def test_any_field_change_changes_the_hash():
    base = manifest_hash(parse_manifest(dumps(VALID)))
    changes = [
        with_change("command.4", "4"),
        with_change("timeout_seconds", 3601),
        with_change("env.BATCH_SIZE", "65"),
        with_change("inputs.files.0.size", 1025),
        with_change("outputs.max_bytes", 1),
    ]
    hashes = {manifest_hash(parse_manifest(dumps(change))) for change in changes}
    assert base not in hashes and len(hashes) == len(changes)


def test_image_digest():
    assert image_digest(parse_manifest(dumps(VALID))) == DIGEST


@pytest.mark.parametrize(
    "image",
    [
        f"ubuntu@{DIGEST}",
        f"library/ubuntu@{DIGEST}",
        f"ubuntu:22.04@{DIGEST}",
        f"localhost:5000/team/my_img-x.y@{DIGEST}",
        f"registry.example.com/a/b/c@{DIGEST}",
    ],
)
def test_accepted_image_references(image):
    assert parse_manifest(dumps(with_change("image", image))).image == image


@pytest.mark.parametrize("path", ["/out", "/output/run-1", "/var/out", "/work", "/results/a.b_c-d+e,f=g@h~i", "/input"])
def test_accepted_output_paths(path):
    assert parse_manifest(dumps(with_change("outputs.path", path))).outputs.path == path


def test_an_input_next_to_a_file_of_a_similar_name_is_no_prefix():
    data = with_change("inputs.files.1.path", "data/train.csv2")
    assert [f.path for f in parse_manifest(dumps(data)).inputs.files] == ["data/train.csv", "data/train.csv2"]


def test_empty_inputs_use_the_zero_root():
    data = with_change("inputs", {"root": ZERO_ROOT, "files": []})
    assert parse_manifest(dumps(data)).inputs.files == []


def test_manifest_error_is_a_value_error_and_sdk_error():
    with pytest.raises(ManifestError) as caught:
        parse_manifest(dumps(with_change("timeout_seconds", 0)))
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ComputenetError)


# --- invalid manifests ----------------------------------------------------------------

INVALID = [
    # (data, field path the message must start with, extra text it must contain)
    (with_change("version", 2), "manifest.version", ""),
    (with_change("version", True), "manifest.version", ""),
    (with_change("version", 1.0), "manifest.version", ""),
    (with_change("version", "1"), "manifest.version", ""),
    (with_change("image", "ubuntu:22.04"), "manifest.image", "digest is required"),
    (with_change("image", "ubuntu"), "manifest.image", "digest is required"),
    (with_change("image", "ubuntu@sha256:" + "AB" * 32), "manifest.image", "digest"),
    (with_change("image", "ubuntu@sha256:" + "ab" * 31), "manifest.image", "digest"),
    (with_change("image", "ubuntu@sha512:" + "ab" * 32), "manifest.image", "digest"),
    (with_change("image", f"Ubuntu@{DIGEST}"), "manifest.image", "name"),
    (with_change("image", f"@{DIGEST}"), "manifest.image", "name"),
    (with_change("image", f"a//b@{DIGEST}"), "manifest.image", "name"),
    (with_change("image", 5), "manifest.image", ""),
    (with_change("command", []), "manifest.command", ""),
    (with_change("command", "python train.py"), "manifest.command", ""),
    (with_change("command", [""]), "manifest.command", "executable"),
    (with_change("command", ["python", 3]), "manifest.command[1]", ""),
    (with_change("command", ["py\u0000thon"]), "manifest.command[0]", "NUL"),
    (with_change("env", {"lower": "x"}), "manifest.env", "'lower'"),
    (with_change("env", {"1ABC": "x"}), "manifest.env", "'1ABC'"),
    (with_change("env", {"A-B": "x"}), "manifest.env", "'A-B'"),
    (with_change("env", {"COMPUTENET_SHARD_INDEX": "0"}), "manifest.env", "reserved"),
    (with_change("env", {"COMPUTENET_SHARD_COUNT": "2"}), "manifest.env", "reserved"),
    (with_change("env", {"A": 1}), "manifest.env.A", ""),
    (with_change("env", ["A=1"]), "manifest.env", ""),
    (with_change("inputs.root", "ab" * 32), "manifest.inputs.root", ""),
    (with_change("inputs.root", "0x" + "ab" * 31), "manifest.inputs.root", ""),
    (with_change("inputs.root", "0x" + "zz" * 32), "manifest.inputs.root", ""),
    (with_change("inputs.root", ZERO_ROOT), "manifest.inputs.root", "zero hash"),
    (with_change("inputs", {"root": ROOT, "files": []}), "manifest.inputs.root", "zero hash"),
    (with_change("inputs.files.0.path", "../etc/passwd"), "manifest.inputs.files[0].path", ""),
    (with_change("inputs.files.0.path", "data/../x"), "manifest.inputs.files[0].path", ""),
    (with_change("inputs.files.0.path", "/abs"), "manifest.inputs.files[0].path", ""),
    (with_change("inputs.files.0.path", ""), "manifest.inputs.files[0].path", ""),
    (with_change("inputs.files.0.path", "a//b"), "manifest.inputs.files[0].path", ""),
    (with_change("inputs.files.0.path", "a/"), "manifest.inputs.files[0].path", ""),
    (with_change("inputs.files.0.path", "./a"), "manifest.inputs.files[0].path", ""),
    # not portable (the module docstring's rule)
    (with_change("inputs.files.0.path", "a\\b"), "manifest.inputs.files[0].path", "'\\\\'"),
    (with_change("inputs.files.0.path", "tab\there"), "manifest.inputs.files[0].path", "portable"),
    (with_change("inputs.files.0.path", "new\nline"), "manifest.inputs.files[0].path", "portable"),
    (with_change("inputs.files.0.path", "with space"), "manifest.inputs.files[0].path", "' '"),
    (with_change("inputs.files.0.path", "r\u00e9sum\u00e9"), "manifest.inputs.files[0].path", "portable"),
    (with_change("inputs.files.0.path", "nul\u0000"), "manifest.inputs.files[0].path", "portable"),
    (with_change("inputs.files.0.path", 'q"uote'), "manifest.inputs.files[0].path", "portable"),
    (with_change("inputs.files.0.path", "x" * 256), "manifest.inputs.files[0].path", "255 bytes"),
    (with_change("inputs.files.0.path", "/".join(["d" * 200] * 21)), "manifest.inputs.files[0].path", "4096"),
    (with_change("outputs.path", "/out dir"), "manifest.outputs.path", "portable"),
    # a file that is a folder of another
    (
        with_change("inputs.files.1.path", "data/train.csv/x"),
        "manifest.inputs.files",
        "inside the input file 'data/train.csv'",
    ),
    (with_change("inputs.files.1.path", "data"), "manifest.inputs.files", "inside the input file 'data'"),
    # an output path over the sandbox's own mounts or system paths
    *[
        (with_change("outputs.path", path), "manifest.outputs.path", "overlaps " + mount)
        for path, mount in [
            ("/in", "/in"),
            ("/in/out", "/in"),
            ("/tmp", "/tmp"),
            ("/tmp/out", "/tmp"),
            ("/proc", "/proc"),
            ("/sys/fs", "/sys"),
            ("/dev", "/dev"),
            ("/etc/out", "/etc"),
            ("/usr", "/usr"),
            ("/bin", "/bin"),
            ("/lib", "/lib"),
            ("/sbin", "/sbin"),
            ("/run", "/run"),
            ("/var/run", "/var/run"),
            ("/var", "/var/run"),
            ("/var/run/x", "/var/run"),
        ]
    ],
    (with_change("inputs.files.1.size", -1), "manifest.inputs.files[1].size", ""),
    (with_change("inputs.files.1.size", 1.5), "manifest.inputs.files[1].size", ""),
    (with_change("inputs.files.1.sha256", "ab" * 31), "manifest.inputs.files[1].sha256", ""),
    (with_change("inputs.files.1.sha256", "0x" + "ab" * 32), "manifest.inputs.files[1].sha256", ""),
    (with_change("inputs.files.1.path", "data/train.csv"), "manifest.inputs.files", "data/train.csv"),
    (with_change("inputs.files.0.extra", 1), "manifest.inputs.files[0].extra", ""),
    (with_change("outputs.path", "out"), "manifest.outputs.path", ""),
    (with_change("outputs.path", "/"), "manifest.outputs.path", ""),
    (with_change("outputs.path", "/out/../etc"), "manifest.outputs.path", ""),
    (with_change("outputs.path", "/out/"), "manifest.outputs.path", ""),
    (with_change("outputs.max_bytes", 0), "manifest.outputs.max_bytes", ""),
    (with_change("outputs.max_bytes", "10"), "manifest.outputs.max_bytes", ""),
    (with_change("timeout_seconds", 0), "manifest.timeout_seconds", ""),
    (with_change("timeout_seconds", -5), "manifest.timeout_seconds", ""),
    (with_change("timeout_seconds", "60"), "manifest.timeout_seconds", ""),
    (with_change("timeout_seconds", True), "manifest.timeout_seconds", ""),
    (with_change("timeout_seconds", 60.0), "manifest.timeout_seconds", ""),
    (with_change("gpu", "h100"), "manifest.gpu", "Extra"),
    (without("image"), "manifest.image", "required"),
    (without("inputs"), "manifest.inputs", "required"),
    (without("outputs.max_bytes"), "manifest.outputs.max_bytes", "required"),
]


@pytest.mark.parametrize(("data", "field", "text"), INVALID, ids=[f"{i}-{c[1]}" for i, c in enumerate(INVALID)])
def test_invalid_field_is_named(data, field, text):
    with pytest.raises(ManifestError) as caught:
        parse_manifest(dumps(data))
    message = str(caught.value)
    assert message.startswith(field + ":"), message
    assert text in message


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"\xff\xfe{}", "UTF-8"),
        ("{not json", "invalid JSON"),
        ("[]", "manifest:"),
        ('"manifest"', "manifest:"),
        ('{"version": 1, "version": 1}', "duplicate JSON key 'version'"),
    ],
)
def test_unparseable_input(raw, text):
    with pytest.raises(ManifestError, match="^manifest") as caught:
        parse_manifest(raw)
    assert text in str(caught.value)


def test_duplicate_keys_in_nested_objects_are_refused():
    raw = dumps(VALID).replace('"max_bytes": 10000000', '"max_bytes": 1, "max_bytes": 10000000')
    with pytest.raises(ManifestError, match="duplicate JSON key 'max_bytes'"):
        parse_manifest(raw)


def test_non_text_input_is_a_type_error():
    with pytest.raises(TypeError):
        parse_manifest(VALID)  # type: ignore[arg-type]


def test_manifest_is_frozen():
    manifest = parse_manifest(dumps(VALID))
    with pytest.raises(pydantic.ValidationError):
        manifest.timeout_seconds = 1  # type: ignore[misc]
