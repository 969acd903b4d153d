"""What this machine has for leases: CPU cores, memory and free disk where leases run.

The agent declines a lease that asks more than the machine has (agent.plan.check_resources)
and warns at start when a registered spec offers more than it; `ape run provider register`
takes its memory and disk defaults from here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from agent.plan import Machine


def memory_mib() -> int:
    """Total memory, MiB (MemTotal of /proc/meminfo; 0 where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def probe(work_dir: Path | str = ".") -> Machine:
    """This machine's CPU cores, memory and the free disk under `work_dir` (MiB)."""
    folder = Path(work_dir)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return Machine(
        cpu_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        memory_mib=memory_mib(),
        disk_mib=shutil.disk_usage(folder).free >> 20,
    )
