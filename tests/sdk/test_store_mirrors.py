"""Content-store mirrors: a manifest lists them, staging tries them in order, and every read is
checked, so a mirror serving other bytes is skipped and one that all fail is declined with each
mirror's failure. Real HTTP stores (computenet.store.app) and a tampering one."""

import logging
import re

import pytest
from fastapi import FastAPI
from fastapi.responses import Response

from computenet.errors import ManifestError
from computenet.localnet import ServedApp, free_port
from computenet.manifest import build_manifest, canonical_json, manifest_hash, parse_manifest, with_stores
from computenet.staging import Decline, fetch_manifest, stage_inputs
from computenet.store import BlobNotFound, LocalStore, Mirrors, StoreClient, StoreError, app

IMAGE = "computenet/python@sha256:" + "ab" * 32
FILES = {"a.txt": b"alpha\n", "data/b.bin": b"\x00\x01" * 100}


def tampering_app() -> FastAPI:
    """A store that answers every read with the same wrong byte (fewer than any blob here has,
    so it is its hash, not its size, that gives it away)."""
    api = FastAPI()

    @api.get("/blobs/{algorithm}/{hexdigest}")
    def get(algorithm: str, hexdigest: str) -> Response:
        return Response(b"x", media_type="application/octet-stream")

    return api


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(good store URL, an empty store's, a tampering one's, a closed port's)."""
    good = ServedApp(app(LocalStore(tmp_path_factory.mktemp("good"))))
    empty = ServedApp(app(LocalStore(tmp_path_factory.mktemp("empty"))))
    bad = ServedApp(tampering_app())
    for data in FILES.values():
        StoreClient(good.url).put(data)
    yield good.url, empty.url, bad.url, f"http://127.0.0.1:{free_port()}"
    for served in (good, empty, bad):
        served.stop()


def manifest(stores=None):
    return build_manifest(IMAGE, ["true"], FILES, timeout_seconds=10, max_output_bytes=1024, stores=stores)


def test_a_manifest_without_mirrors_keeps_its_canonical_form_and_hash():
    plain, mirrored = manifest(), manifest(["http://a.example:8700/", "https://b.example/store"])
    assert b"stores" not in canonical_json(plain)
    assert mirrored.stores == ["http://a.example:8700", "https://b.example/store"]  # one spelling each
    assert b'"stores":["http://a.example:8700","https://b.example/store"]' in canonical_json(mirrored)
    assert manifest_hash(mirrored) != manifest_hash(plain)
    assert parse_manifest(canonical_json(mirrored)) == mirrored
    assert with_stores(plain, ["http://c.example"]).stores == ["http://c.example"]
    assert with_stores(mirrored, ["https://b.example/store/"]).stores == [
        "https://b.example/store",
        "http://a.example:8700",
    ]
    for bad, message in (
        (["ftp://a.example"], "manifest.stores[0]: must be an http(s) base URL"),
        (["http://user:pw@a.example"], "manifest.stores[0]: must be an http(s) base URL"),
        (["http://a.example?x=1"], "manifest.stores[0]: must be an http(s) base URL"),
        (["http://a.example", "http://a.example/"], "manifest.stores: names a store twice"),
        ([f"http://h{i}.example" for i in range(17)], "manifest.stores: List should have at most 16 items"),
    ):
        with pytest.raises(ManifestError, match=re.escape(message)):
            manifest(bad)


def test_a_mirror_serving_tampered_bytes_is_skipped_and_the_next_one_used(stores, tmp_path, caplog):
    good, _, bad, _ = stores
    mirrored = manifest([bad, good])
    with caplog.at_level(logging.WARNING, logger="computenet.store"):
        stage_inputs(StoreClient(bad), mirrored, tmp_path)  # the stager's own store tampers too
    assert {p: (tmp_path / p).read_bytes() for p in FILES} == FILES
    skipped = [r for r in caplog.records if r.getMessage() == "mirror skipped"]
    assert skipped and {r.fields["store"] for r in skipped} == {bad}
    assert "does not match its content" in skipped[0].fields["error"]

    # The manifest itself, read through mirrors, is checked the same way.
    StoreClient(good).put(canonical_json(mirrored))
    assert fetch_manifest(Mirrors.of(bad, good), manifest_hash(mirrored)) == mirrored


def test_every_mirror_failing_declines_naming_each_failure(stores, tmp_path):
    good, empty, bad, down = stores
    with pytest.raises(Decline) as declined:
        stage_inputs(StoreClient(empty), manifest([bad, down]), tmp_path)
    assert declined.value.reason == "input unavailable"
    detail = declined.value.detail
    assert detail.startswith("a.txt: no mirror served sha256:")
    assert f"{empty}: no blob sha256:" in detail
    assert f"{bad}: blob sha256:" in detail and "does not match its content" in detail
    assert f"{down}: store {down} unreachable" in detail
    assert not (tmp_path / "a.txt").exists()  # nothing half-written is left

    with pytest.raises(Decline) as missing:  # none has it: "not found", each named
        stage_inputs(StoreClient(empty), manifest([empty.replace("127.0.0.1", "localhost")]), tmp_path)
    assert missing.value.reason == "input not found" and missing.value.detail.count("no blob sha256:") == 2


def test_mirrors_upload_to_each_and_name_the_ones_that_refuse(stores):
    good, empty, _, down = stores
    assert Mirrors.of(f"{good},{empty}/", good).urls == [good, empty]  # in order, once each
    assert Mirrors.of(StoreClient(good), []).urls == [good]  # a manifest that lists none
    with pytest.raises(StoreError, match="no content store given"):
        Mirrors.of("", [])
    data = b"to every mirror"
    Mirrors.of(good, empty).put(data)
    for url in (good, empty):
        assert StoreClient(url).get("sha256", Mirrors.of(url).put(data)["sha256"]) == data
    with pytest.raises(StoreError, match=f"upload failed on {down}: store {down} unreachable"):
        Mirrors.of(good, down).put(data)
    with pytest.raises(BlobNotFound):  # one store: its own error, unchanged
        Mirrors.of(empty).get("sha256", "00" * 32)
