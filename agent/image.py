"""Builds the job images without a registry: Debian packages and their dependencies are
unpacked into a root filesystem and `docker import`ed.

    python -m agent image [--tag computenet/python:3.11]       the Python image
    python -m agent image --ml [--tag computenet/ml:3.11]     the ML image (numpy, scikit-learn)

The Python image has the full standard library and no shell; the ML image adds Debian's
NumPy and scikit-learn (with its bundled data sets, such as `load_digits`) over the
reference BLAS and LAPACK, whose results do not depend on the CPU they run on (OpenBLAS picks
kernels per CPU), and its modules compiled ahead (the root filesystem is read-only at run
time). Jobs run as `nobody`. The reference for manifests, `name@sha256:<image id>`, is
printed: the image id is the digest of the image's configuration, so it names this content
exactly. Downloaded packages are kept in .cache/image-debs, so a rebuild needs no network.

Dependencies are resolved as apt would on an empty system: the first alternative of each
`a | b` group unless another is already chosen, and the first provider of a virtual package,
leaving out SKIP (and what only they need).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from computenet.errors import ComputenetError

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "image-debs"
DEFAULT_TAG = "computenet/python:3.11"
ML_TAG = "computenet/ml:3.11"
# Not needed at run time and large (perl alone is 40 MB); the interpreter does not call them.
SKIP = ("perl", "perl-base", "perl-modules-5.36", "libperl5.36", "dpkg", "tar", "mailcap", "install-info")
ML_ROOTS = ("python3.11", "python3", "python3-numpy", "python3-sklearn")
# SciPy's package depends on Pythran, which needs a C++ compiler, Boost and Python's headers
# (61 packages, about 520 MB) to compile code ahead of time; nothing imports it at run time.
# procps (for joblib), usrmerge and init-system-helpers are tools for a booted system.
ML_SKIP = (*SKIP, "python3-pythran", "procps", "usrmerge", "init-system-helpers")
# Only what a package needs to run: no recommended or suggested packages.
NO_EXTRAS = ("--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances")
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
    """`root_package` and everything it depends on, every alternative included, less SKIP."""
    out = _run(["apt-cache", "depends", "--recurse", *NO_EXTRAS, root_package])
    names = {line.strip() for line in out.splitlines() if line and not line[0].isspace() and not line.startswith("<")}
    return sorted(n for n in names if n not in SKIP)


def dependency_graph(text: str) -> dict[str, list[list[str]]]:
    """`apt-cache depends --recurse` output as package -> its dependency groups, each the
    alternatives in order; a virtual package (`<name>`) stands for its providers, in order."""
    graph: dict[str, list[list[str]]] = {}
    providers: dict[str, list[str]] = {}
    current: list[list[str]] = []
    alternatives: list[str] = []  # the group being read, continued while lines start with '|'
    last: list[str] | None = None  # the alternative a provider line belongs to
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            current = graph.setdefault(line.strip(), []) if not line.startswith("<") else []
            alternatives, last = [], None
        elif line.startswith("    "):  # a provider of the virtual package named on the line before
            if last is not None:
                last.append(line.strip())
        else:
            kind, _, name = line.strip().lstrip("|").partition(": ")
            if kind not in ("Depends", "PreDepends"):
                last = None
                continue
            name = name.strip()
            last = providers.setdefault(name, []) if name.startswith("<") else None
            alternatives.append(name)
            if not line.lstrip().startswith("|"):
                current.append(alternatives)
                alternatives = []
    return {
        package: [[p for a in group for p in (providers.get(a, []) if a.startswith("<") else [a])] for group in groups]
        for package, groups in graph.items()
    }


def resolve(graph: dict[str, list[list[str]]], roots: tuple[str, ...], skip: tuple[str, ...] = SKIP) -> list[str]:
    """The packages `roots` need: each group satisfied by one already chosen, else by its
    first alternative not skipped (pure)."""
    chosen: list[str] = []
    queue = [r for r in roots if r not in skip]
    while queue:
        package = queue.pop(0)
        if package in chosen:
            continue
        chosen.append(package)
        for group in graph.get(package, []):
            if any(a in chosen or a in queue for a in group):
                continue
            pick = next((a for a in group if a not in skip and a in graph), None)
            if pick is not None:
                queue.append(pick)
    return sorted(chosen)


def ml_packages() -> list[str]:
    """The ML image's packages: Python, NumPy and scikit-learn (module docstring)."""
    out = _run(["apt-cache", "depends", "--recurse", *NO_EXTRAS, *ML_ROOTS])
    return resolve(dependency_graph(out), ML_ROOTS, ML_SKIP)


def download(names: list[str], cache: Path = CACHE) -> list[Path]:
    """The .deb of each package, from the cache or downloaded into it. Builds in parallel
    (test workers building both images) take turns at the cache, so none reads a package
    another is still writing."""
    import fcntl

    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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


def ml_extras(target: Path) -> None:
    """What dpkg's maintainer scripts would do for the ML image: the BLAS and LAPACK links
    update-alternatives makes, and the modules compiled to bytecode checked by hash, not by
    timestamp (by this interpreter, when it is Python 3.11)."""
    import compileall
    import py_compile

    lib = target / "usr" / "lib" / "x86_64-linux-gnu"
    for folder in ("blas", "lapack"):
        for library in sorted((lib / folder).glob("*.so*")):
            link = lib / library.name
            if not link.exists() and not link.is_symlink():
                link.symlink_to(f"{folder}/{library.name}")
    if sys.version_info[:2] != (3, 11):
        return  # another version's bytecode is of no use; jobs compile as they import (slower)
    for folder in ("usr/lib/python3.11", "usr/lib/python3/dist-packages"):
        compileall.compile_dir(
            target / folder,
            quiet=2,
            stripdir=str(target),
            prependdir="/",
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            workers=1,
        )


def build(client: Any, tag: str = DEFAULT_TAG, cache: Path = CACHE, ml: bool = False) -> str:
    """Builds and imports the image (the ML image when `ml`); returns its manifest reference
    `name@sha256:<id>`."""
    debs = download(ml_packages() if ml else packages(), cache)
    with tempfile.TemporaryDirectory(prefix="computenet-image-") as tmp:
        target = Path(tmp) / "root"
        target.mkdir()
        rootfs(debs, target)
        if ml:
            ml_extras(target)
        archive = Path(tmp) / "root.tar"
        with tarfile.open(archive, mode="w") as tar:
            tar.add(target, arcname=".")
        name, _, version = tag.partition(":")
        with archive.open("rb") as data:
            image_id = client.api.import_image_from_data(
                data, repository=name, tag=version or "latest", changes=['CMD ["python3"]', "USER 65534:65534"]
            )
    return reference(client, tag, image_id)


def reference(client: Any, tag: str, imported: Any = None) -> str:
    """`name@sha256:<image id>` for the image tagged `tag`."""
    image = client.images.get(tag)
    return f"{tag.partition(':')[0]}@{image.id}"


def size(client: Any, reference_or_tag: str) -> int:
    """The image's size in bytes, as the engine counts it."""
    ref = reference_or_tag.rsplit("@", 1)[1] if "@" in reference_or_tag else reference_or_tag
    return int(client.images.get(ref).attrs["Size"])
