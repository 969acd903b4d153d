"""The output Merkle tree against hand-written formulas and random file sets."""

import random

import pytest
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.merkle import (
    MAX_PROOF_DEPTH,
    MerkleTree,
    leaf,
    leaf_from_hashes,
    node,
    verify,
)


def k(data: bytes) -> bytes:
    return keccak(data)


def explicit_leaf(path: str, content: bytes) -> bytes:
    return k(b"\x00" + k(path.encode("utf-8")) + k(content))


def explicit_node(a: bytes, b: bytes) -> bytes:
    low, high = sorted([a, b], key=lambda h: int.from_bytes(h, "big"))
    return k(b"\x01" + low + high)


files_strategy = st.dictionaries(
    keys=st.text(min_size=1, max_size=12),
    values=st.binary(max_size=32),
    min_size=1,
    max_size=40,
)


# --- primitives -------------------------------------------------------------------


def test_leaf_formula():
    assert leaf("out/a.txt", b"hello") == explicit_leaf("out/a.txt", b"hello")
    assert leaf("", b"") == k(b"\x00" + k(b"") + k(b""))


def test_leaf_hashes_path_as_utf8():
    assert leaf("résumé/日本.txt", b"x") == k(b"\x00" + k("résumé/日本.txt".encode()) + k(b"x"))


def test_leaf_from_hashes_matches_leaf():
    path, content = "logs/run.log", b"\x00\x01binary"
    assert leaf_from_hashes(k(path.encode()), k(content)) == leaf(path, content)


def test_leaf_from_hashes_requires_32_bytes():
    with pytest.raises(ValueError):
        leaf_from_hashes(b"\x00" * 31, b"\x00" * 32)
    with pytest.raises(ValueError):
        leaf_from_hashes(b"\x00" * 32, b"\x00" * 33)


def test_node_sorts_as_big_endian_integers():
    a = (1).to_bytes(32, "big")
    b = (256).to_bytes(32, "big")
    assert node(a, b) == node(b, a) == k(b"\x01" + a + b)
    # The high byte decides, not the low one.
    c = b"\x01" + b"\x00" * 31
    d = b"\x00" + b"\xff" * 31
    assert node(c, d) == k(b"\x01" + d + c)


def test_node_of_equal_values():
    a = k(b"same")
    assert node(a, a) == k(b"\x01" + a + a)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_node_is_symmetric_and_matches_formula(a, b):
    assert node(a, b) == node(b, a) == explicit_node(a, b)


def test_leaf_and_node_prefixes_differ():
    # A node over (x, y) never equals a leaf with the same 64 bytes behind the prefix.
    x, y = sorted([k(b"x"), k(b"y")])
    assert node(x, y) != leaf_from_hashes(x, y)


# --- hand-computed trees ------------------------------------------------------------


def test_one_leaf_root_is_the_leaf():
    tree = MerkleTree.from_files({"log.txt": b"done"})
    assert tree.root == explicit_leaf("log.txt", b"done")
    assert tree.proof("log.txt") == []
    assert verify([], tree.root, tree.leaf("log.txt"))


def test_two_leaves():
    la, lb = explicit_leaf("a", b"1"), explicit_leaf("b", b"2")
    tree = MerkleTree.from_files({"b": b"2", "a": b"1"})
    assert tree.root == explicit_node(la, lb)
    assert tree.proof("a") == [lb]
    assert tree.proof("b") == [la]


def test_three_leaves_promotes_the_last():
    la, lb, lc = (explicit_leaf(p, c) for p, c in [("a", b"1"), ("b", b"2"), ("c", b"3")])
    tree = MerkleTree.from_files({"c": b"3", "a": b"1", "b": b"2"})
    ab = explicit_node(la, lb)
    assert tree.root == explicit_node(ab, lc)
    assert tree.proof("a") == [lb, lc]
    assert tree.proof("b") == [la, lc]
    assert tree.proof("c") == [ab]


def test_five_leaves():
    names = ["a", "b", "c", "d", "e"]
    leaves = {n: explicit_leaf(n, n.encode() * 3) for n in names}
    ab = explicit_node(leaves["a"], leaves["b"])
    cd = explicit_node(leaves["c"], leaves["d"])
    abcd = explicit_node(ab, cd)
    root = explicit_node(abcd, leaves["e"])  # e is promoted twice, then paired
    tree = MerkleTree.from_files({n: n.encode() * 3 for n in reversed(names)})
    assert tree.root == root
    assert tree.proof("a") == [leaves["b"], cd, leaves["e"]]
    assert tree.proof("d") == [leaves["c"], ab, leaves["e"]]
    assert tree.proof("e") == [abcd]


def test_golden_root():
    # Pinned so the contract tests can check the same value.
    tree = MerkleTree.from_files({"out/result.json": b'{"ok":true}', "log.txt": b"hello\n"})
    expected = explicit_node(explicit_leaf("log.txt", b"hello\n"), explicit_leaf("out/result.json", b'{"ok":true}'))
    assert tree.root == expected
    assert tree.root.hex() == "5fe99a1f9c0c31eceecb24ada1164c0719c5b41f0e24a09d41599928e183f553"
    three = MerkleTree.from_files({"a": b"1", "b": b"2", "c": b"3"})
    assert three.root.hex() == "a9396742d0801afabdf52d1f3df67a3415a51915319ec5051ede2d3a9853433e"


def test_paths_sort_by_code_point_which_is_utf8_byte_order():
    files = {"é": b"1", "z": b"2", "Z": b"3", "日": b"4", "a/b": b"5", "a.b": b"6"}
    tree = MerkleTree.from_files(files)
    assert tree.paths == sorted(files, key=lambda p: p.encode("utf-8"))


# --- building rules -----------------------------------------------------------------


def test_empty_tree_is_an_error():
    with pytest.raises(ValueError):
        MerkleTree.from_files({})
    with pytest.raises(ValueError):
        MerkleTree.from_leaves([])


def test_duplicate_paths_name_the_path():
    with pytest.raises(ValueError, match="dup/path"):
        MerkleTree.from_leaves([("dup/path", k(b"1")), ("other", k(b"2")), ("dup/path", k(b"3"))])


def test_from_leaves_requires_32_byte_leaves():
    with pytest.raises(ValueError):
        MerkleTree.from_leaves([("a", b"short")])


def test_from_leaves_equals_from_files():
    files = {"x": b"1", "y/z": b"22", "w": b""}
    leaves = [(path, leaf(path, content)) for path, content in files.items()]
    assert MerkleTree.from_leaves(leaves).root == MerkleTree.from_files(files).root


def test_unknown_path_raises_key_error():
    tree = MerkleTree.from_files({"a": b"1"})
    with pytest.raises(KeyError):
        tree.proof("b")
    with pytest.raises(KeyError):
        tree.leaf("b")


@given(files_strategy, st.randoms(use_true_random=False))
def test_order_of_the_mapping_does_not_matter(files, rnd):
    items = list(files.items())
    rnd.shuffle(items)
    assert MerkleTree.from_files(dict(items)).root == MerkleTree.from_files(files).root


@given(files_strategy)
@settings(max_examples=150)
def test_every_proof_verifies(files):
    tree = MerkleTree.from_files(files)
    depth = (len(files) - 1).bit_length()  # ceil(log2(n))
    for path, content in files.items():
        proof = tree.proof(path)
        assert len(proof) <= depth
        assert tree.leaf(path) == explicit_leaf(path, content)
        assert verify(proof, tree.root, explicit_leaf(path, content))


@given(files_strategy, st.data())
def test_tampering_fails(files, data):
    tree = MerkleTree.from_files(files)
    path = data.draw(st.sampled_from(sorted(files)))
    proof, good_leaf = tree.proof(path), tree.leaf(path)

    # Different content for the same path.
    assert not verify(proof, tree.root, explicit_leaf(path, files[path] + b"!"))
    # Same content under a different path.
    assert not verify(proof, tree.root, explicit_leaf(path + "~", files[path]))
    # A flipped bit in the root.
    bad_root = bytes([tree.root[0] ^ 1]) + tree.root[1:]
    assert not verify(proof, bad_root, good_leaf)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        sibling = bytearray(proof[i])
        sibling[bit // 8] ^= 1 << (bit % 8)
        tampered = proof[:i] + [bytes(sibling)] + proof[i + 1 :]
        assert not verify(tampered, tree.root, good_leaf)
        # Dropping or adding a sibling also fails.
        assert not verify(proof[:-1], tree.root, good_leaf)
        assert not verify(proof + [k(b"extra")], tree.root, good_leaf)


def test_verify_rejects_proofs_deeper_than_the_contract_accepts():
    # A chain of 33 siblings that does fold to `root`; the contract would refuse it.
    start = k(b"leaf")
    proof = [k(bytes([i])) for i in range(MAX_PROOF_DEPTH + 1)]
    root = start
    for sibling in proof:
        root = explicit_node(root, sibling)
    assert not verify(proof, root, start)
    root32 = start
    for sibling in proof[:MAX_PROOF_DEPTH]:
        root32 = explicit_node(root32, sibling)
    assert verify(proof[:MAX_PROOF_DEPTH], root32, start)


def test_verify_is_false_for_malformed_values():
    tree = MerkleTree.from_files({"a": b"1", "b": b"2"})
    assert not verify([b"short"], tree.root, tree.leaf("a"))
    assert not verify(tree.proof("a"), b"short", tree.leaf("a"))
    assert not verify(tree.proof("a"), tree.root, b"short")


def test_large_tree_proof_lengths():
    rnd = random.Random(7)
    files = {f"f{i:05d}": rnd.randbytes(8) for i in range(1000)}
    tree = MerkleTree.from_files(files)
    assert len(tree) == 1000
    for path in rnd.sample(sorted(files), 50):
        proof = tree.proof(path)
        assert len(proof) <= 10
        assert verify(proof, tree.root, tree.leaf(path))
    assert len(tree.proof("f00000")) == 10
    # Level sizes 1000, 500, 250, 125, 63, 32, ...: the last leaf is promoted at 125 and 63.
    assert len(tree.proof("f00999")) == 8
