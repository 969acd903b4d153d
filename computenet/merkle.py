"""The output Merkle tree, byte-for-byte the one `contracts/modules/merkle.vy` verifies.

Formulas (`‖` is concatenation, every hash is keccak256, every value 32 bytes):

    leaf = keccak256(0x00 ‖ keccak256(utf8(path)) ‖ keccak256(content))
    node = keccak256(0x01 ‖ min(a, b) ‖ max(a, b))

`min`/`max` compare the two values as big-endian unsigned integers, so proofs
carry no left/right flags. The distinct prefixes keep a node from passing as a
leaf.

Building: leaves are sorted by path (code-point order, which equals the order of
the UTF-8 bytes); each level pairs neighbours left to right and promotes an odd
last node unchanged to the next level. A one-leaf tree's root is that leaf. An
empty tree is an error: a result always holds at least its log file.

Depth: the contract accepts proofs of at most `MAX_PROOF_DEPTH` (32) siblings,
so a tree holds at most 2**32 leaves; `verify` refuses longer proofs as the
contract does.
"""

from collections.abc import Iterable, Mapping, Sequence

from eth_utils import keccak

MAX_PROOF_DEPTH = 32
MAX_LEAVES = 2**MAX_PROOF_DEPTH

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def _check_hash(value: bytes, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise ValueError(f"{what} must be 32 bytes, got {value!r}")
    return bytes(value)


def leaf_from_hashes(path_hash: bytes, content_hash: bytes) -> bytes:
    """The leaf for a file given keccak256 of its UTF-8 path and of its content (what the contract receives)."""
    return keccak(LEAF_PREFIX + _check_hash(path_hash, "path_hash") + _check_hash(content_hash, "content_hash"))


def leaf(path: str, content: bytes) -> bytes:
    """The leaf for a file at `path` holding `content`."""
    return leaf_from_hashes(keccak(path.encode("utf-8")), keccak(bytes(content)))


def node(a: bytes, b: bytes) -> bytes:
    """The parent of two nodes; symmetric because the pair is sorted first."""
    a, b = _check_hash(a, "node"), _check_hash(b, "node")
    # Equal-length big-endian values compare as integers exactly when they compare as bytes.
    low, high = (a, b) if a < b else (b, a)
    return keccak(NODE_PREFIX + low + high)


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """Whether `proof` (siblings, bottom-up) links `leaf` to `root`; malformed input is simply false."""
    if len(proof) > MAX_PROOF_DEPTH:
        return False
    try:
        current = _check_hash(leaf, "leaf")
        for sibling in proof:
            current = node(current, sibling)
        return current == _check_hash(root, "root")
    except ValueError:
        return False


class MerkleTree:
    """A tree over named leaves; build it with `from_files` or `from_leaves`."""

    def __init__(self, leaves: Iterable[tuple[str, bytes]]) -> None:
        checked = ((path, _check_hash(value, f"leaf of {path!r}")) for path, value in leaves)
        ordered = sorted(checked, key=lambda item: item[0])
        if not ordered:
            raise ValueError("a Merkle tree needs at least one leaf")
        if len(ordered) > MAX_LEAVES:
            raise ValueError(f"a Merkle tree holds at most {MAX_LEAVES} leaves")
        for (previous, _), (path, _) in zip(ordered, ordered[1:]):
            if previous == path:
                raise ValueError(f"duplicate path in Merkle tree: {path!r}")
        self._paths = [path for path, _ in ordered]
        self._index = {path: i for i, path in enumerate(self._paths)}
        self._levels = self._build([value for _, value in ordered])

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> "MerkleTree":
        """The tree over `path -> content`; the mapping's order does not matter."""
        return cls((path, leaf(path, content)) for path, content in files.items())

    @classmethod
    def from_leaves(cls, leaves: Iterable[tuple[str, bytes]]) -> "MerkleTree":
        """The tree over `(path, leaf hash)` pairs, e.g. leaves computed where the files live."""
        return cls(leaves)

    @staticmethod
    def _build(level: list[bytes]) -> list[list[bytes]]:
        levels = [level]
        while len(level) > 1:
            paired = [node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                paired.append(level[-1])
            levels.append(paired)
            level = paired
        return levels

    @property
    def root(self) -> bytes:
        """The 32-byte root committed on chain."""
        return self._levels[-1][0]

    @property
    def paths(self) -> list[str]:
        """The paths in leaf order."""
        return list(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def _position(self, path: str) -> int:
        try:
            return self._index[path]
        except KeyError:
            raise KeyError(f"no leaf for path {path!r}") from None

    def leaf(self, path: str) -> bytes:
        """The leaf hash stored for `path`."""
        return self._levels[0][self._position(path)]

    def proof(self, path: str) -> list[bytes]:
        """The siblings from `path`'s leaf up to the root; a promoted node adds none."""
        index = self._position(path)
        siblings: list[bytes] = []
        for level in self._levels[:-1]:
            partner = index ^ 1
            if partner < len(level):
                siblings.append(level[partner])
            index //= 2
        return siblings
