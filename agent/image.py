"""Builds the small Python job image without a registry: Debian's python3.11 packages and
their dependencies are unpacked into a root filesystem and `docker import`ed.

    python -m agent image [--tag computenet/python:3.11]

The image has the full standard library and no shell; jobs run as `nobody`. Its reference
for manifests, `name@sha256:<image id>`, is printed: the image id is the digest of the
image's configuration, so it names this content exactly. Downloaded packages are kept in
.cache/image-debs, so a rebuild needs no network.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from computenet.errors import ComputenetError

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "image-debs"
DEFAULT_TAG = "computenet/python:3.11"
# Not needed at run time and large (perl alone is 40 MB); the interpreter does not call them.
SKIP = ("perl", "perl-base", "perl-modules-5.36", "libperl5.36", "dpkg", "tar", "mailcap", "install-info")
DROP = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian")


class ImageBuildError(ComputenetError):
    """The job image could not be built."""


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ImageBuildError(f"{argv[0]} not found: building the job image needs Debian's apt tools") from None
    if done.returncode != 0:
        raise ImageBuildError(f"{' '.join(argv[:3])} failed: {done.stderr.strip()[-800:]}")
    return done.stdout


def packages(root_package: str = "python3.11") -> list[str]:
    """`root_package` and everything it depends on, less SKIP."""
    out = _run(
        [
            "apt-cache",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            root_package,
        ]
    )
    names = {line.strip() for line in out.splitlines() if line and not line[0].isspace() and not line.startswith("<")}
    return sorted(n for n in names if n not in SKIP)


def download(names: list[str], cache: Path = CACHE) -> list[Path]:
    """The .deb of each package, from the cache or downloaded into it."""
    cache.mkdir(parents=True, exist_ok=True)
    have = {p.name.split("_", 1)[0]: p for p in cache.glob("*.deb")}
    missing = [n for n in names if n not in have]
    if missing:
        _run(["apt-get", "download", "-q", *missing], cwd=cache)
        have = {p.name.split("_", 1)[0]: p for p in cache.glob("*.deb")}
    lost = [n for n in names if n not in have]
    if lost:
        raise ImageBuildError(f"apt-get download did not fetch: {', '.join(lost)}")
    return [have[n] for n in names]


def rootfs(debs: list[Path], target: Path) -> None:
    """Unpacks `debs` into `target` and adds what a container needs: /tmp, /out, nobody."""
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(target)])
    for rel in DROP:
        shutil.rmtree(target / rel, ignore_errors=True)
    python = target / "usr" / "bin" / "python3"
    if not python.exists():
        python.symlink_to("python3.11")
    (target / "tmp").mkdir(mode=0o1777, exist_ok=True)
    os.chmod(target / "tmp", 0o1777)
    etc = target / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")


def build(client: Any, tag: str = DEFAULT_TAG, cache: Path = CACHE) -> str:
    """Builds and imports the image; returns its manifest reference `name@sha256:<id>`."""
    debs = download(packages(), cache)
    with tempfile.TemporaryDirectory(prefix="computenet-image-") as tmp:
        target = Path(tmp) / "root"
        target.mkdir()
        rootfs(debs, target)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(target, arcname=".")
        buffer.seek(0)
        name, _, version = tag.partition(":")
        image_id = client.api.import_image_from_data(
            buffer.read(), repository=name, tag=version or "latest", changes=['CMD ["python3"]', "USER 65534:65534"]
        )
    return reference(client, tag, image_id)


def reference(client: Any, tag: str, imported: Any = None) -> str:
    """`name@sha256:<image id>` for the image tagged `tag`."""
    image = client.images.get(tag)
    return f"{tag.partition(':')[0]}@{image.id}"
