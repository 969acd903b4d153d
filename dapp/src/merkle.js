// The output Merkle tree, byte-for-byte computenet/merkle.py (and contracts/modules/merkle.vy):
//   leaf = keccak256(0x00 ‖ keccak256(utf8(path)) ‖ keccak256(content))
//   node = keccak256(0x01 ‖ min(a, b) ‖ max(a, b))
// Leaves sorted by path in code-point order; an odd last node is promoted unchanged.
// Hashes are 0x-prefixed lowercase hex strings throughout.
import { concat, keccak256, stringToBytes } from "viem";

export const MAX_PROOF_DEPTH = 32;
const HASH = /^0x[0-9a-f]{64}$/;

function checkHash(value, what) {
  const hex = typeof value === "string" ? value.toLowerCase() : value;
  if (typeof hex !== "string" || !HASH.test(hex)) throw new Error(`${what} must be 32 bytes of 0x-hex, got ${value}`);
  return hex;
}

export function leafFromHashes(pathHash, contentHash) {
  return keccak256(concat(["0x00", checkHash(pathHash, "pathHash"), checkHash(contentHash, "contentHash")]));
}

/** The leaf for a file at `path` (a string) holding `content` (Uint8Array). */
export function leaf(path, content) {
  return leafFromHashes(keccak256(stringToBytes(path)), keccak256(content));
}

export function node(a, b) {
  const x = checkHash(a, "node");
  const y = checkHash(b, "node");
  // Equal-length lowercase hex compares as the big-endian integers do.
  const [low, high] = x < y ? [x, y] : [y, x];
  return keccak256(concat(["0x01", low, high]));
}

/** Whether `proof` (siblings, bottom-up) links `leafHash` to `root`; malformed input is false. */
export function verify(proof, root, leafHash) {
  if (!Array.isArray(proof) || proof.length > MAX_PROOF_DEPTH) return false;
  try {
    let current = checkHash(leafHash, "leaf");
    for (const sibling of proof) current = node(current, sibling);
    return current === checkHash(root, "root");
  } catch {
    return false;
  }
}

/** Python's str ordering: by code point, not by UTF-16 unit as JS's default sort. */
export function comparePaths(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** A tree over [path, leafHash] pairs: {root, paths, leaf(path), proof(path)}. */
export function treeFromLeaves(pairs) {
  const ordered = pairs.map(([path, value]) => [path, checkHash(value, `leaf of ${path}`)]);
  ordered.sort((p, q) => comparePaths(p[0], q[0]));
  if (!ordered.length) throw new Error("a Merkle tree needs at least one leaf");
  for (let i = 1; i < ordered.length; i++)
    if (ordered[i - 1][0] === ordered[i][0]) throw new Error(`duplicate path in Merkle tree: ${ordered[i][0]}`);
  const paths = ordered.map(([path]) => path);
  const levels = [ordered.map(([, value]) => value)];
  for (let level = levels[0]; level.length > 1; ) {
    const up = [];
    for (let i = 0; i + 1 < level.length; i += 2) up.push(node(level[i], level[i + 1]));
    if (level.length % 2) up.push(level[level.length - 1]);
    levels.push(up);
    level = up;
  }
  const position = (path) => {
    const i = paths.indexOf(path);
    if (i < 0) throw new Error(`no leaf for path ${path}`);
    return i;
  };
  return {
    root: levels[levels.length - 1][0],
    paths,
    leaf: (path) => levels[0][position(path)],
    proof(path) {
      let index = position(path);
      const siblings = [];
      for (const level of levels.slice(0, -1)) {
        if ((index ^ 1) < level.length) siblings.push(level[index ^ 1]);
        index = Math.floor(index / 2);
      }
      return siblings;
    },
  };
}

/** The tree over files given as [path, content] pairs. */
export function treeFromFiles(files) {
  return treeFromLeaves(files.map(([path, content]) => [path, leaf(path, content)]));
}
