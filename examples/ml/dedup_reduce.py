"""Reduce of near-duplicate detection: the map's signatures from every shard, grouped.

Reads /in/prev/<shard>/out/signatures.npy and documents.json (dedup_map.py's outputs), splits
each signature into BANDS bands (32 of 4 values: locality-sensitive hashing), takes the
documents sharing a band as candidates, and keeps a pair when the share of equal signature
values (the estimated Jaccard similarity of their shingles) is at least THRESHOLD (0.5).
Pairs are joined into clusters. Writes duplicates.json: the number of documents, of unique
ones (one per cluster, plus every document in none), and each cluster's ids (sorted), its
least estimated similarity and whether its texts are byte-identical.
"""

import json

import mlcore  # staged beside this script
import numpy as np

bands = mlcore.env_int("BANDS", 32)
threshold = mlcore.env_float("THRESHOLD", 0.5)
ids, sha, parts = [], [], []
for sig_path, doc_path in zip(mlcore.previous("signatures.npy"), mlcore.previous("documents.json"), strict=True):
    documents = json.loads(doc_path.read_text())
    ids += documents["ids"]
    sha += documents["sha256"]
    parts.append(np.load(sig_path, allow_pickle=False))
signatures = np.concatenate(parts)
assert len(signatures) == len(ids), "signatures and documents differ in number"

buckets: dict[tuple[int, bytes], list[int]] = {}
rows = signatures.shape[1] // bands
for doc in range(len(ids)):
    for band in range(bands):
        key = signatures[doc, band * rows : (band + 1) * rows].tobytes()
        buckets.setdefault((band, key), []).append(doc)
candidates = {(m[i], m[j]) for m in buckets.values() if len(m) > 1 for i in range(len(m)) for j in range(i + 1, len(m))}

parent = list(range(len(ids)))


def root(i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


similar = {}
for i, j in sorted(candidates):
    estimate = float((signatures[i] == signatures[j]).mean())
    if estimate >= threshold:
        similar[(i, j)] = estimate
        parent[root(j)] = root(i)
groups: dict[int, list[int]] = {}
for doc in range(len(ids)):
    groups.setdefault(root(doc), []).append(doc)
least: dict[int, float] = {}  # per cluster, its least similar pair's estimate
for (i, _), estimate in similar.items():
    least[root(i)] = min(estimate, least.get(root(i), 1.0))
clusters = [
    {
        "ids": sorted(ids[m] for m in members),
        "similarity": round(least[top], 6),
        "exact": len({sha[m] for m in members}) == 1,
    }
    for top, members in groups.items()
    if len(members) > 1
]
clusters.sort(key=lambda c: c["ids"])
report = {
    "device": "cpu",  # grouping is dictionary work, nothing for a GPU
    "documents": len(ids),
    "unique": len(groups),
    "clusters": clusters,
    "candidate_pairs": len(candidates),
    "bands": bands,
    "threshold": threshold,
}
mlcore.write_json(mlcore.OUT / "duplicates.json", report)
print(
    f"{len(ids)} documents from {len(parts)} shards: {len(clusters)} clusters of duplicates, "
    f"{len(groups)} unique, {len(candidates)} candidate pairs"
)
