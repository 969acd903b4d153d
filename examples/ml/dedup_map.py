"""Map of near-duplicate detection over a text corpus: MinHash signatures per document.

/in/corpus.jsonl holds one document a line, {"id", "text"}. Shard s of n takes lines s,
s+n, s+2n, ...; for each document the lowercased words' 3-word shingles are hashed (BLAKE2b,
32 bits) and PERMUTATIONS (128) universal hashes h(x) = (a x + b) mod (2**31 - 1), their
a and b drawn from SEED, each keep their least value. Writes

    signatures.npy   documents x 128, uint32, in the shard's order
    documents.json   the shard's ids, each text's SHA-256 and its number of words, the device

Integer arithmetic only, so a GPU (PyTorch with CUDA, when passed through) and the CPU give
the same signatures. dedup_reduce.py finds the pairs from all shards' outputs.
"""

import hashlib
import io
import json

import mlcore  # staged beside this script
import numpy as np

PRIME = (1 << 31) - 1
index, count = mlcore.shard()
permutations = mlcore.env_int("PERMUTATIONS", 128)
rng = np.random.Generator(np.random.PCG64(mlcore.env_int("SEED", 7)))
a = rng.integers(1, PRIME, permutations, dtype=np.int64)
b = rng.integers(0, PRIME, permutations, dtype=np.int64)

lines = (mlcore.IN / "corpus.jsonl").read_text().splitlines()[index::count]
documents = [json.loads(line) for line in lines]


def shingles(text: str) -> np.ndarray:
    words = text.lower().split()
    grams = {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}
    hashed = [int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little") for g in sorted(grams)]
    return np.array(hashed, dtype=np.int64) % PRIME


dev = mlcore.device()
if dev.name == "cpu":

    def minhash(x: np.ndarray) -> np.ndarray:
        return ((x[:, None] * a[None, :] + b[None, :]) % PRIME).min(axis=0)

else:
    torch = dev.torch
    a_on, b_on = (torch.as_tensor(v, device=dev.device) for v in (a, b))

    def minhash(x: np.ndarray) -> np.ndarray:
        on = torch.as_tensor(x, device=dev.device)
        return ((on[:, None] * a_on[None, :] + b_on[None, :]) % PRIME).min(dim=0).values.cpu().numpy()


signatures = np.zeros((len(documents), permutations), dtype=np.uint32)
for row, document in enumerate(documents):
    signatures[row] = minhash(shingles(document["text"]))
buffer = io.BytesIO()
np.save(buffer, signatures, allow_pickle=False)
mlcore.write_atomic(mlcore.OUT / "signatures.npy", buffer.getvalue())
mlcore.write_json(
    mlcore.OUT / "documents.json",
    {
        "shard": index,
        "of": count,
        "device": dev.name,
        "ids": [d["id"] for d in documents],
        "sha256": [hashlib.sha256(d["text"].encode()).hexdigest() for d in documents],
        "words": [len(d["text"].split()) for d in documents],
    },
)
print(f"shard {index}/{count} on {dev.name}: {len(documents)} documents")
