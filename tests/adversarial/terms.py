"""What is at stake in every attack, to the base unit, and the job the re-execution cases run.

Each asset here stakes 400 tokens, so the slash S (10 %), the reward R (10 % of S, at most
one bond) and the bond B are three different numbers: an assertion that swaps one for another
fails."""

import base64

from computenet.deploy import DEFAULT_PARAMETERS
from computenet.merkle import MerkleTree

TOKEN = 10**6  # one token in base units
_BPS = 10_000

STAKE = 400 * TOKEN  # each asset's stake in these tests
S = STAKE * DEFAULT_PARAMETERS.slash_bps // _BPS  # one fault's slash: 40 tokens
R = min(S * 1_000 // _BPS, DEFAULT_PARAMETERS.challenge_bond)  # DisputeCourt.REWARD_BPS of it: 4 tokens
B = DEFAULT_PARAMETERS.challenge_bond  # the challenge bond: 10 tokens

PAY = 100 * 1_000  # one replica's pay: the asset's price (make_spec) x the metering (`submit`)
KEEPER_FEE = PAY * DEFAULT_PARAMETERS.keeper_fee_bps // _BPS
PROTOCOL_FEE = PAY * DEFAULT_PARAMETERS.protocol_fee_bps // _BPS
COST = PAY + KEEPER_FEE + PROTOCOL_FEE  # what one paid replica costs its client

# A SUM result (below) claims what its run takes, about a second: the arbiter's re-execution
# rejects a replica whose claim exceeds what it measured (verifier/rules.py), right root or not.
SUM_SECONDS = 2
SUM_PAY = 100 * SUM_SECONDS
SUM_KEEPER_FEE = SUM_PAY * DEFAULT_PARAMETERS.keeper_fee_bps // _BPS
SUM_PROTOCOL_FEE = SUM_PAY * DEFAULT_PARAMETERS.protocol_fee_bps // _BPS
SUM_COST = SUM_PAY + SUM_KEEPER_FEE + SUM_PROTOCOL_FEE

# Roots where no re-execution is needed: the court's ruling stands for the arbiter's.
ROOT = b"\x42" * 32  # the right result (the `lease` fixture's default)
WRONG = b"\x43" * 32  # a made-up one
OTHER_WRONG = b"\x44" * 32  # another made-up one
ZERO = bytes(32)  # the ruling "not reproducible": every result stands

# A shard whose honest result is GOOD: what an honest agent, and the arbiter, commit by running it.
SUM = ["python3", "-c", "open('/out/sum.txt', 'w').write(str(sum(range(10))) + '\\n'); print('summed')"]
GOOD = {"out/sum.txt": b"45\n", "log/container.log": b"summed\n"}
BAD = {**GOOD, "out/sum.txt": b"46\n"}  # a cheap made-up result
WORSE = {**GOOD, "out/sum.txt": b"47\n"}  # another one


def root(files: dict[str, bytes]) -> bytes:
    return MerkleTree.from_files(files).root


def hx(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def attached(files: dict[str, bytes]) -> dict:
    """`files` as POST /disputes takes a party's own run of the shard."""
    return {"files": {path: base64.b64encode(data).decode() for path, data in files.items()}}


def proven(files: dict[str, bytes], replica: int, path: str = "out/sum.txt") -> dict:
    """`path` of `files` with its Merkle proof, as POST /disputes takes a file claimed in `replica`'s result."""
    siblings = MerkleTree.from_files(files).proof(path)
    return {
        "replica": replica,
        "path": path,
        "content": base64.b64encode(files[path]).decode(),
        "proof": [hx(p) for p in siblings],
    }
