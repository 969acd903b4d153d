"""Who may read a replica's outputs (verifier.access.may_read): the client always; a bonded
verifier only what was sampled for it; a facilitator only a disputed shard; no one else."""

import pytest
from eth_utils import keccak

from computenet.domain import Verification
from verifier.access import may_read
from verifier.sampling import MAX_AUDIT_BPS, draw, spot_checked

CLIENT = "0x" + "c1" * 20
VERIFIER = "0x" + "e5" * 20
OTHER = "0x" + "0f" * 20
JOB, SHARD = 4, 1


def _seed_where(predicate) -> bytes:
    """A block hash for which `predicate(seed)` holds (searched deterministically)."""
    for i in range(10_000):
        seed = keccak(i.to_bytes(4, "big"))
        if predicate(seed):
            return seed
    raise AssertionError("no such seed")


SPOT_IN = _seed_where(lambda s: spot_checked(s, JOB, SHARD, 0, 1_000))
SPOT_OUT = _seed_where(lambda s: not spot_checked(s, JOB, SHARD, 0, 1_000))
AUDIT_IN = _seed_where(lambda s: draw(s, JOB, SHARD, 0, VERIFIER) % 10_000 < MAX_AUDIT_BPS)
AUDIT_OUT = _seed_where(lambda s: draw(s, JOB, SHARD, 0, VERIFIER) % 10_000 >= MAX_AUDIT_BPS)


def read(
    caller=VERIFIER,
    mode=Verification.SPOT_CHECK,
    seed=SPOT_IN,
    bonded=True,
    facilitator=False,
    disputed=False,
    client=CLIENT,
    on_chain=True,
) -> bool:
    return may_read(
        caller=caller,
        job_client=client,
        mode=mode,
        spot_check_bps=1_000,
        seed=seed,
        job=JOB,
        shard=SHARD,
        replica=0,
        is_bonded=bonded,
        is_facilitator=facilitator,
        disputed=disputed,
        on_chain=on_chain,
    )


@pytest.mark.parametrize(
    "case, expected",
    [
        # the job's client: always, whatever the mode, seed or dispute, once the result is on chain
        (dict(caller=CLIENT, bonded=False, seed=None), True),
        (dict(caller=CLIENT.upper().replace("0X", "0x"), mode=Verification.REPLICATED, bonded=False), True),
        # nobody before: a replica cancelled before it submitted gives its client no free work
        (dict(caller=CLIENT, bonded=False, on_chain=False), False),
        (dict(on_chain=False), False),
        (dict(facilitator=True, disputed=True, on_chain=False), False),
        # a bonded verifier: the replicas sampled for it
        (dict(), True),
        (dict(seed=SPOT_OUT), False),
        (dict(seed=None), False),  # the seed's block is not mined yet: nothing sampled
        (dict(mode=Verification.OPTIMISTIC, seed=AUDIT_IN), True),
        (dict(mode=Verification.OPTIMISTIC, seed=AUDIT_OUT), False),
        (dict(mode=Verification.REPLICATED), False),
        # sampled, but not bonded (an exited keeper, a stranger)
        (dict(bonded=False), False),
        (dict(caller=OTHER, bonded=False, mode=Verification.OPTIMISTIC, seed=AUDIT_IN), False),
        # a facilitator: only a disputed shard
        (dict(caller=OTHER, bonded=False, facilitator=True, disputed=True, seed=SPOT_OUT), True),
        (dict(caller=OTHER, bonded=False, facilitator=True, disputed=False, seed=SPOT_OUT), False),
        # a dispute alone opens nothing to a verifier that was not sampled
        (dict(disputed=True, seed=SPOT_OUT), False),
    ],
)
def test_the_access_table(case, expected):
    assert read(**case) is expected


def test_optimistic_reads_are_capped_for_every_verifier():
    seeds = [keccak(i.to_bytes(4, "big")) for i in range(4_000)]
    share = sum(read(mode=Verification.OPTIMISTIC, seed=s) for s in seeds) / len(seeds)
    assert abs(share - MAX_AUDIT_BPS / 10_000) < 0.04
