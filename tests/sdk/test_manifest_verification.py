"""The manifest's `verification` section: defaults that keep old manifests' hashes, decimal
string tolerances, and errors that name the field path."""

import json

import pytest

from computenet.errors import ManifestError
from computenet.manifest import ResultVerification, build_manifest, canonical_json, manifest_hash, parse_manifest

DIGEST = "sha256:" + "0123456789abcdef" * 4
BASE = {
    "version": 1,
    "image": f"ghcr.io/computenet/worker@{DIGEST}",
    "command": ["python", "run.py"],
    "inputs": {"root": "0x" + "00" * 32, "files": []},
    "outputs": {"path": "/out", "max_bytes": 1000},
    "timeout_seconds": 60,
}
NUMERIC = {"compare": "numeric", "numeric": [{"path": "logits.npy", "rtol": "0.001", "atol": "0.00001"}]}


def parse(verification=None) -> object:
    return parse_manifest(json.dumps(BASE if verification is None else BASE | {"verification": verification}))


def test_a_manifest_without_the_section_gets_the_defaults_and_keeps_its_hash():
    manifest = parse()
    assert manifest.verification == ResultVerification(
        compare="exact", numeric=[], spot_check_bps=1000, metering_tolerance_bps=5000
    )
    assert b"verification" not in canonical_json(manifest)
    assert manifest_hash(parse({})) == manifest_hash(manifest) == manifest_hash(parse({"spot_check_bps": 1000}))


def test_a_section_that_differs_is_written_whole_and_changes_the_hash():
    manifest = parse(NUMERIC)
    body = json.loads(canonical_json(manifest))
    assert body["verification"] == NUMERIC | {"spot_check_bps": 1000, "metering_tolerance_bps": 5000}
    assert parse_manifest(canonical_json(manifest)) == manifest
    hashes = {
        manifest_hash(parse(v)) for v in (None, NUMERIC, {"spot_check_bps": 10_000}, {"metering_tolerance_bps": 0})
    }
    assert len(hashes) == 4


def test_build_manifest_takes_the_section():
    built = build_manifest(
        f"ghcr.io/computenet/worker@{DIGEST}",
        ["true"],
        {},
        timeout_seconds=5,
        max_output_bytes=10,
        verification={"spot_check_bps": 10_000},
    )
    assert built.verification.spot_check_bps == 10_000


@pytest.mark.parametrize(
    "verification, message",
    [
        ({"compare": "fuzzy"}, "manifest.verification.compare: Input should be 'exact' or 'numeric'"),
        ({"spot_check_bps": 0}, "manifest.verification.spot_check_bps: Input should be greater than or equal to 1"),
        (
            {"spot_check_bps": 10_001},
            "manifest.verification.spot_check_bps: Input should be less than or equal to 10000",
        ),
        ({"spot_check_bps": True}, "manifest.verification.spot_check_bps: Input should be a valid integer"),
        (
            {"metering_tolerance_bps": -1},
            "manifest.verification.metering_tolerance_bps: Input should be greater than or equal to 0",
        ),
        (
            {"metering_tolerance_bps": 100_001},
            "manifest.verification.metering_tolerance_bps: Input should be less than or equal to 100000",
        ),
        ({"compare": "numeric"}, "manifest.verification.numeric: must list the files to compare numerically"),
        (
            {"numeric": [{"path": "a.npy"}]},
            "manifest.verification.numeric: lists files to compare numerically, but compare is",
        ),
        (
            {**NUMERIC, "numeric": [{"path": "a.npy", "rtol": "1e-5"}]},
            "manifest.verification.numeric[0].rtol: must be a non-negative decimal",
        ),
        (
            {**NUMERIC, "numeric": [{"path": "a.npy", "atol": 0.1}]},
            "manifest.verification.numeric[0].atol: Input should be a valid string",
        ),
        (
            {**NUMERIC, "numeric": [{"path": "a.npy", "rtol": "0.10"}]},
            "manifest.verification.numeric[0].rtol: must be a non-negative decimal",
        ),
        (
            {**NUMERIC, "numeric": [{"path": "a.npy", "rtol": "-0.1"}]},
            "manifest.verification.numeric[0].rtol: must be a non-negative decimal",
        ),
        (
            {**NUMERIC, "numeric": [{"path": "../a.npy"}]},
            "manifest.verification.numeric[0].path: must be a normalised POSIX path",
        ),
        (
            {**NUMERIC, "numeric": [{"path": "a.npy"}, {"path": "a.npy"}]},
            "manifest.verification.numeric: duplicate path 'a.npy'",
        ),
        ({"sample": 1}, "manifest.verification.sample: Extra inputs are not permitted"),
    ],
)
def test_errors_name_the_field_path(verification, message):
    with pytest.raises(ManifestError) as caught:
        parse(verification)
    assert str(caught.value).startswith(message), str(caught.value)
