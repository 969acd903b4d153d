"""computenet.follow against a real anvil: a Follower starts at the deployment block, reads
bounded ranges, resumes from its cursor after a restart, and never skips a range when it
crashes between handling a batch and committing it."""

import json

import pytest
from eth_utils import keccak

from computenet.follow import Follower, JsonCursor, MemoryCursor
from computenet.market import Market

MANIFEST = keccak(b"manifest")


@pytest.fixture
def sdk(stack):
    return Market.from_stack(stack)


@pytest.fixture
def posted(sdk, chain, client, make_requirements):
    """Five jobs posted one block apart after a fresh mark; returns (first block, job ids)."""
    sdk.deployment_block = chain.blocks.height + 1
    jobs = [sdk.post_job(MANIFEST, make_requirements(), sender=client) for _ in range(5)]
    return sdk.deployment_block, jobs


def posted_jobs(batches):
    return [e.job for batch in batches for e in batch.events if e.name == "JobPosted"]


def drain(follower, **commit):
    """Handles and commits every batch up to the head; returns them."""
    batches = []
    while (batch := follower.poll()) is not None:
        batches.append(batch)
        follower.commit(batch, **commit)
    return batches


def test_starts_at_the_deployment_block_and_reads_bounded_ranges(sdk, posted):
    start, jobs = posted
    follower = Follower(sdk, MemoryCursor(), roles=("market",), names=("JobPosted",), block_range=3)
    batches = drain(follower)
    assert batches[0].first == start  # not block 0
    assert all(b.last - b.first + 1 <= 3 for b in batches)
    assert [b.first for b in batches[1:]] == [b.last + 1 for b in batches[:-1]]  # contiguous, no gap
    assert batches[-1].last == sdk.head() and batches[-1].caught_up
    assert posted_jobs(batches) == jobs
    assert follower.poll() is None  # nothing new


def test_resumes_from_its_cursor_after_a_restart(sdk, posted, client, make_requirements, tmp_path):
    _, jobs = posted
    path = tmp_path / "cursor.json"
    first = Follower(sdk, JsonCursor(path), roles=("market",), names=("JobPosted",))
    assert posted_jobs(drain(first)) == jobs
    assert json.loads(path.read_text())["block"] == sdk.head()

    later = sdk.post_job(MANIFEST, make_requirements(), sender=client)
    restarted = Follower(sdk, JsonCursor(path), roles=("market",), names=("JobPosted",))
    assert posted_jobs(drain(restarted)) == [later]  # only what came after the cursor


def test_a_crash_between_handling_and_commit_reads_the_range_again(sdk, posted, tmp_path):
    _, jobs = posted
    path = tmp_path / "cursor.json"
    follower = Follower(sdk, JsonCursor(path), roles=("market",), names=("JobPosted",), block_range=2)
    handled = []
    first = follower.poll()
    handled += posted_jobs([first])
    follower.commit(first, {"seen": len(handled)})
    crashed = follower.poll()  # handled, then the process dies before the commit
    handled += posted_jobs([crashed])

    restarted = Follower(sdk, JsonCursor(path), roles=("market",), names=("JobPosted",), block_range=2)
    assert restarted.store.data == {"seen": len(posted_jobs([first]))}  # the role's state moved with the cursor
    again = restarted.poll()
    assert (again.first, again.last) == (crashed.first, crashed.last)  # read again, not skipped
    restarted.commit(again)
    rest = [again, *drain(restarted)]
    assert posted_jobs([first]) + posted_jobs(rest) == jobs


def test_confirmations_hold_back_the_latest_blocks(sdk, posted):
    start, jobs = posted
    follower = Follower(sdk, MemoryCursor(), roles=("market",), names=("JobPosted",), confirmations=2)
    batches = drain(follower)
    assert batches[-1].last == sdk.head() - 2
    assert posted_jobs(batches) == jobs[:-2]


def test_an_explicit_start_block_and_a_bad_range():
    class Chain:
        deployment_block = 40

        def head(self):
            return 39

    assert Follower(Chain(), MemoryCursor()).poll() is None  # nothing before the deployment block
    assert Follower(Chain(), MemoryCursor(), start_block=7).next_block() == 7
    assert Follower(Chain(), MemoryCursor(12)).next_block() == 13
    with pytest.raises(ValueError, match="block_range"):
        Follower(Chain(), MemoryCursor(), block_range=0)
