"""The job images' package resolution (agent/image.py): pure over apt-cache's output, and
the ML image's package list on this machine's apt lists."""

import shutil

import pytest

from agent import image

DEPENDS = """\
app
  Depends: libfast
 |Depends: libblas3
  Depends: <libblas.so.3>
    libopenblas0
    libblas3
  PreDepends: base
  Recommends: extra
  Depends: heavy-build-tool
libfast
  Depends: base
<libblas.so.3>
libblas3
  Depends: base
libopenblas0
  Depends: base
  Depends: libgomp
base
heavy-build-tool
  Depends: compiler
compiler
libgomp
extra
"""


def test_the_graph_holds_each_group_of_alternatives_with_virtual_packages_as_their_providers():
    graph = image.dependency_graph(DEPENDS)
    assert graph["app"] == [["libfast"], ["libblas3", "libopenblas0", "libblas3"], ["base"], ["heavy-build-tool"]]
    assert graph["libopenblas0"] == [["base"], ["libgomp"]]
    assert "<libblas.so.3>" not in graph  # a virtual package is no package to install


def test_resolution_takes_the_first_alternative_and_leaves_out_skipped_packages_and_what_only_they_need():
    graph = image.dependency_graph(DEPENDS)
    assert image.resolve(graph, ("app",), skip=()) == [
        "app",
        "base",
        "compiler",
        "heavy-build-tool",
        "libblas3",
        "libfast",
    ]
    assert image.resolve(graph, ("app",), skip=("heavy-build-tool",)) == ["app", "base", "libblas3", "libfast"]
    # An alternative already chosen satisfies the group: no second BLAS.
    assert image.resolve(graph, ("libopenblas0", "app"), skip=("heavy-build-tool",)) == [
        "app",
        "base",
        "libfast",
        "libgomp",
        "libopenblas0",
    ]


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="needs Debian's apt lists")
def test_the_ml_image_has_numpy_and_scikit_learn_over_the_reference_blas_and_no_compilers():
    names = image.ml_packages()
    for needed in ("python3.11", "python3-numpy", "python3-scipy", "python3-sklearn", "libblas3", "liblapack3"):
        assert needed in names
    for left_out in ("python3-pythran", "gcc-12", "g++-12", "libboost-dev", "perl", "dpkg", "python3-torch"):
        assert left_out not in names
    assert not [n for n in names if "openblas" in n or n.endswith("-dev")]
