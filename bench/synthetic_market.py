"""A synthetic market served from memory, for running keepers.actions' round path
(`assign_round`) without a chain: the Market and ChainView reads it makes, from given jobs,
shards and assets. Used by bench/bench_scheduler.py and tests/keepers/test_round.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import SimpleNamespace

from computenet.domain import Asset, Job, Parameters, Shard


class MemoryChain:
    """The market (`Runtime.market`) and chain view (`Runtime.view`) a round reads: `jobs` by
    id, each job's `shards` (every one, as `ChainView.round_shards` reads a small job's) and
    the `assets`, at the time `now` under `params`; never paused, no asset attested. `market`
    stands for the market contract, whose address a batch of assignments names."""

    def __init__(
        self,
        jobs: Mapping[int, Job],
        shards: Mapping[int, Sequence[Shard]],
        assets: Iterable[Asset],
        params: Parameters,
        now: int,
        address: str = "0x" + "00" * 20,
    ) -> None:
        self.jobs = dict(jobs)
        self.shards = dict(shards)
        self._assets = list(assets)
        self._params, self._now = params, now
        self.market = SimpleNamespace(address=address)

    @classmethod
    def of_open_shards(cls, open_shards: Iterable, assets: Iterable[Asset], params: Parameters, now: int, **kw):
        """From keepers.scheduler's OpenShards, each with its job and replicas."""
        jobs: dict[int, Job] = {}
        shards: dict[int, list[Shard]] = {}
        for s in open_shards:
            jobs[s.job.id] = s.job
            shards.setdefault(s.job.id, []).append(Shard(s.job.id, s.shard, s.replicas))
        return cls(jobs, shards, assets, params, now, **kw)

    def job(self, job_id: int) -> Job | None:
        return self.jobs.get(job_id)

    def jobs_or_none(self, ids: Iterable[int]) -> dict[int, Job | None]:
        return {job_id: self.jobs.get(job_id) for job_id in ids}

    def paused(self) -> bool:
        return False

    def attested_for(self, job: Job, assets: list[Asset]) -> None:
        return None

    def now(self) -> int:
        return self._now

    def params(self) -> Parameters:
        return self._params

    def assets(self) -> list[Asset]:
        return self._assets

    def forget_assets(self) -> None:
        pass

    def round_shards(self, jobs: Mapping[int, tuple[Job, Iterable[int]]]) -> dict[int, Sequence[Shard]]:
        return {job_id: self.shards[job_id] for job_id in jobs}
