"""Sampling (verifier.sampling): draws from the hash of the block after the submission,
the same for every verifier in SPOT_CHECK, per verifier in OPTIMISTIC, at the declared rate."""

import math

import pytest
from eth_utils import keccak

from computenet.domain import ReplicaState, Verification
from verifier.sampling import MAX_AUDIT_BPS, audit_mode, audited, draw, sampled, seed_block, spot_checked

SEED = keccak(b"block 101")
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20


def test_the_seed_is_the_block_after_the_submission():
    assert seed_block(100) == 101


def test_draws_are_deterministic_and_match_the_packed_encoding():
    expected = keccak(SEED + (7).to_bytes(32, "big") + (2).to_bytes(32, "big") + (1).to_bytes(32, "big"))
    assert draw(SEED, 7, 2, 1) == int.from_bytes(expected, "big") == draw(SEED, 7, 2, 1)
    with_verifier = keccak(
        SEED + (7).to_bytes(32, "big") + (2).to_bytes(32, "big") + (1).to_bytes(32, "big") + bytes.fromhex("a1" * 20)
    )
    assert draw(SEED, 7, 2, 1, ALICE) == int.from_bytes(with_verifier, "big")


def test_draws_depend_on_the_post_submit_block_hash_and_every_coordinate():
    draws = {
        draw(SEED, 7, 2, 1),
        draw(keccak(b"block 102"), 7, 2, 1),
        draw(SEED, 8, 2, 1),
        draw(SEED, 7, 3, 1),
        draw(SEED, 7, 2, 0),
        draw(SEED, 7, 2, 1, ALICE),
        draw(SEED, 7, 2, 1, BOB),
    }
    assert len(draws) == 7
    with pytest.raises(ValueError, match="32-byte block hash"):
        draw(b"\x01" * 31, 7, 2, 1)


def test_which_replicas_are_sampled_changes_with_the_seed():
    picks = [tuple(spot_checked(keccak(bytes([s])), 1, 0, r, 5_000) for r in range(16)) for s in range(8)]
    assert len(set(picks)) > 1


def _within_binomial(hits: int, n: int, bps: int) -> None:
    p = bps / 10_000
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(hits - n * p) <= 5 * sigma, f"{hits} of {n} sampled, expected {n * p:.0f} ± {5 * sigma:.0f}"


@pytest.mark.parametrize("bps", [1, 1_000, 5_000, 9_999])
def test_spot_check_samples_at_the_declared_rate(bps):
    n = 20_000
    hits = sum(spot_checked(keccak(i.to_bytes(4, "big")), 3, 0, 0, bps) for i in range(n))
    _within_binomial(hits, n, bps)


def test_spot_check_is_the_same_for_every_verifier_and_certain_at_10000():
    for i in range(200):
        seed = keccak(i.to_bytes(4, "big"))
        common = sampled(Verification.SPOT_CHECK, seed, 1, 0, 0, spot_check_bps=3_000, verifier=ALICE, share_bps=0)
        other = sampled(Verification.SPOT_CHECK, seed, 1, 0, 0, spot_check_bps=3_000, verifier=BOB, share_bps=10_000)
        assert common == other
        assert spot_checked(seed, 1, 0, 0, 10_000)


def test_optimistic_draws_are_per_verifier_at_its_share_under_the_cap():
    n = 20_000
    seeds = [keccak(i.to_bytes(4, "big")) for i in range(n)]
    alice = [audited(s, 1, 0, 0, ALICE, 1_000) for s in seeds]
    bob = [audited(s, 1, 0, 0, BOB, 1_000) for s in seeds]
    _within_binomial(sum(alice), n, 1_000)
    _within_binomial(sum(a and b for a, b in zip(alice, bob)), n, 100)  # independent: 10 % of 10 %
    greedy = sum(audited(s, 1, 0, 0, ALICE, 10_000) for s in seeds)
    _within_binomial(greedy, n, MAX_AUDIT_BPS)  # a share above the cap samples at the cap


def test_replicated_shards_are_never_sampled():
    assert not any(
        sampled(
            Verification.REPLICATED,
            keccak(bytes([i])),
            1,
            0,
            0,
            spot_check_bps=10_000,
            verifier=ALICE,
            share_bps=10_000,
        )
        for i in range(50)
    )


@pytest.mark.parametrize(
    "mode, state, audited_as",
    [
        (Verification.ZK, ReplicaState.SUBMITTED, Verification.OPTIMISTIC),  # a failed zk run, in its window
        (Verification.ZK, ReplicaState.DISPUTED, Verification.OPTIMISTIC),
        (Verification.ZK, ReplicaState.FINALIZED, Verification.ZK),  # proven: nothing to sample
        (Verification.SPOT_CHECK, ReplicaState.SUBMITTED, Verification.SPOT_CHECK),
        (Verification.REPLICATED, ReplicaState.SUBMITTED, Verification.REPLICATED),
        (Verification.TEE, ReplicaState.SUBMITTED, Verification.OPTIMISTIC),  # attested or not
    ],
)
def test_an_unproven_zk_result_and_a_tee_result_are_audited_as_optimistic_ones(mode, state, audited_as):
    """A provider that skips proving and reports a failure still has its metered claim drawn for
    re-execution at the verifiers' optimistic share; a proven result is never sampled."""
    assert audit_mode(mode, state) == audited_as
    seed = b"\x05" * 32
    drawn = [
        sampled(
            audit_mode(mode, state), seed, 1, s, 0, spot_check_bps=10_000, verifier="0x" + "ab" * 20, share_bps=2_500
        )
        for s in range(400)
    ]
    assert (any(drawn), all(drawn)) == {
        Verification.OPTIMISTIC: (True, False),
        Verification.ZK: (False, False),
        Verification.SPOT_CHECK: (True, True),
        Verification.REPLICATED: (False, False),
    }[audited_as]
