"""The metering rule (pure): how much a replica may claim, given what a re-execution measured.

An agent claims `gpu_seconds` in its signed receipt (for a CPU-only job: seconds) and is paid
price × claim, capped at the job's maximum. A verifier, or the arbiter, runs the shard again
and measures it. The claim is allowed up to

    allowed = ceil(measured × (1 + metering_tolerance_bps / 10000)) + METERING_SLACK_SECONDS × max(1, gpu_count)

where `measured` is in the claim's unit (`Metering.seconds(gpu_count)`: GPU-seconds over all
the job's GPUs) and `metering_tolerance_bps` is the manifest's (default 5000: half as much
again, since machines of one GPU model still differ in clocks, cooling and input staging).
The absolute slack is for granularity: claims and the chain count whole seconds, an agent
rounds its own measurement up (up to a second per GPU) and the re-execution's measurement is
rounded too, so two honest measurements of the same short run may differ by two seconds per
GPU even with no tolerance at all. A claim above `allowed` is challengeable, and the arbiter
rejects the replica for it even when its output root is right.

A re-execution is metered as an agent's run is (computenet.meter, in the sandbox); a run
that carries no metering counts its container's wall-clock time (`wall_clock`, a
computenet.meter Metering with meter "wall-clock").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from math import ceil
from typing import Any

from computenet.domain import BPS
from computenet.meter import WALL_CLOCK, Metering

METERING_SLACK_SECONDS = 2  # per GPU: one second of rounding on each side of the comparison


def wall_clock(wall_seconds: float) -> Metering:
    """A run's metering from its wall-clock time alone (computenet.meter's weakest meter):
    what a re-execution carries until its container is metered (ContainerMeter)."""
    return Metering(
        meter=WALL_CLOCK,
        gpu_ms=0,
        cpu_ms=0,
        wall_ms=round(wall_seconds * 1000),
        gpu_utilization_pct=None,
        reason="the re-execution's container was not metered: its wall-clock time",
    )


def allowed_claim(measured_seconds: float, gpu_count: int, tolerance_bps: int) -> int:
    """The most a replica may claim for work a re-execution measured at `measured_seconds`
    (in the claim's unit: GPU-seconds over the job's `gpu_count` GPUs; seconds for CPU jobs)."""
    if measured_seconds < 0 or tolerance_bps < 0 or gpu_count < 0:
        raise ValueError("measured seconds, GPU count and tolerance are not negative")
    scaled = Fraction(measured_seconds) * (BPS + tolerance_bps) / BPS
    return ceil(scaled) + METERING_SLACK_SECONDS * max(1, gpu_count)


PEER_SHARDS = 4  # shards either side of a result whose claims it is compared with


def metering_outlier(claimed: int, peers: list[int], gpu_count: int, tolerance_bps: int) -> bool:
    """Whether a claim stands out from its peers' (the job's other replicas of nearby shards,
    which run the same code): beyond what the job's tolerance allows over their median. Such a
    result is re-executed whatever the sampling draw said, so an agent cannot inflate its
    metering and hope not to be sampled; the re-execution, not the peers, decides whether to
    challenge. Without peers nothing stands out."""
    if not peers:
        return False
    ordered = sorted(peers)
    median = (
        ordered[len(ordered) // 2]
        if len(ordered) % 2
        else Fraction(ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2], 2)
    )
    return claimed > allowed_claim(median, gpu_count, tolerance_bps)


@dataclass(frozen=True)
class MeteringVerdict:
    ok: bool
    claimed: int
    allowed: int

    @property
    def reason(self) -> str:
        verb = "is within" if self.ok else "exceeds"
        return f"its metering claim {self.claimed} {verb} the {self.allowed} a re-execution allows"


def check_metering(claimed: int, measured_seconds: float, gpu_count: int, tolerance_bps: int) -> MeteringVerdict:
    """Whether a claim is within what the re-execution allows (`allowed_claim`)."""
    allowed = allowed_claim(measured_seconds, gpu_count, tolerance_bps)
    return MeteringVerdict(claimed <= allowed, claimed, allowed)


@dataclass(frozen=True)
class Verdict:
    """What a verifier concludes about one replica's result from its own re-execution."""

    agree: bool  # the result agrees with the re-execution under the manifest's comparator
    metering: MeteringVerdict
    reasons: tuple[str, ...] = ()

    @property
    def challenge(self) -> bool:
        """A wrong result, or a claim above what the re-execution allows, is challenged."""
        return not self.agree or not self.metering.ok


def judge(
    rules: Any,
    run_root: bytes,
    run_files: Mapping[str, bytes],
    run_seconds: float,
    root: bytes,
    files: Mapping[str, bytes] | None,
    claimed: int,
    gpu_count: int,
) -> Verdict:
    """The verdict on a replica (its on-chain `root` and `claimed` metering, and its whole
    result `files` when they could be had) from a re-execution (`run_*`; `run_seconds` in the
    claim's unit) under `rules`, the manifest's verification section. Without the replica's
    files only an equal root agrees: a provider that does not serve its sampled outputs cannot
    show that its result is within tolerance."""
    from verifier.compare import compare

    reasons: list[str] = []
    if root == run_root:
        agree = True
    elif files is None:
        agree = False
        reasons.append(
            f"root 0x{root.hex()} is not the re-execution's 0x{run_root.hex()}"
            + ("" if rules.compare == "exact" else " and the replica's files could not be had")
        )
    else:
        comparison = compare(rules, files, run_files)
        agree = comparison.agree
        reasons += comparison.differences
    metering = check_metering(claimed, run_seconds, gpu_count, rules.metering_tolerance_bps)
    if not metering.ok:
        reasons.append(metering.reason)
    return Verdict(agree, metering, tuple(reasons))
