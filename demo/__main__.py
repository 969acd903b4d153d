"""`python -m demo` (make demo): the whole network end to end on this machine.

It starts every part (demo/network.py), then one client posts a sharded batch-inference job
with `ape run job post` and another, holding no ETH, pays for a hashing job over x402 with
the official client. Live progress shows the shards per state and per asset; at the end
every output is fetched from its agent and checked against its on-chain root, a settlement
table is printed, the token balances are checked to add up, and every process is stopped.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent


@click.command()
@click.option(
    "--logs",
    "logdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for every log (default: logs/demo-<time>).",
)
@click.option("--shards", type=int, default=8, show_default=True, help="Shards of the batch-inference job.")
@click.option("--timeout", type=float, default=240, show_default=True, help="Seconds the jobs may take to finish.")
@click.option("--faults", is_flag=True, help="Run the fault scenario (make demo-faults) instead.")
def main(logdir: Path | None, shards: int, timeout: float, faults: bool) -> None:
    """Run the whole network end to end and print its settlement."""
    from rich.console import Console

    from demo import faults as fault_scenario
    from demo import run
    from demo.network import Network

    console = Console()
    if not console.is_terminal:  # a log file or CI: wide enough for the tables
        console = Console(width=120)
    logdir = logdir or ROOT / "logs" / f"demo{'-faults' if faults else ''}-{datetime.now():%Y%m%d-%H%M%S}"
    logdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    def say(text: str) -> None:
        console.print(f"[dim]{time.monotonic() - start:6.1f}s[/dim] {text}")

    say(f"logs in {logdir}")
    network = Network(logdir, say)
    ok = False
    try:
        network.start()
        scenario = fault_scenario.with_faults if faults else run.end_to_end
        ok = scenario(network, console, say, shards=shards, timeout=timeout)
    except KeyboardInterrupt:
        say("interrupted")
    except Exception as error:
        console.print(f"[red]Error:[/red] {error}")
        say(f"the logs are in {logdir}")
    finally:
        say("stopping every process")
        network.stop()
    say(f"done in {time.monotonic() - start:.0f} s; logs in {logdir}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(prog_name="python -m demo")
