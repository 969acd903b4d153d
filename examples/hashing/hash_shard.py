"""Deterministic hashing job: each shard hashes its share of the input files.

Files under /in/data are sorted by path; shard i of n takes every n-th one, starting at i.
Each is hashed ROUNDS times (SHA-256 over the previous digest, starting from the content),
and /out/result.json lists path -> final digest. The same inputs always give the same
bytes, so replicas agree and a verifier's re-execution matches.
"""

import hashlib
import json
import os
from pathlib import Path

index = int(os.environ["COMPUTENET_SHARD_INDEX"])
count = int(os.environ["COMPUTENET_SHARD_COUNT"])
rounds = int(os.environ.get("ROUNDS", "1000"))
root = Path("/in/data")
files = sorted(p for p in root.rglob("*") if p.is_file())
result = {}
for path in files[index::count]:
    digest = path.read_bytes()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    result[path.relative_to(root).as_posix()] = digest.hex()
out = Path(os.environ.get("OUTPUT_DIR", "/out"))
(out / "result.json").write_text(
    json.dumps({"shard": index, "of": count, "rounds": rounds, "hashes": result}, sort_keys=True, indent=1)
)
print(f"shard {index}/{count}: hashed {len(result)} of {len(files)} files, {rounds} rounds each")
