"""`python -m demo` (make demo): the whole network end to end on this machine.

It starts every part (demo/network.py), then one client posts a sharded batch-inference job
with `ape run job post` and another, holding no ETH, pays for a hashing job over x402 with
the official client. Live progress shows the shards per state and per asset; at the end
every output is fetched from its agent and checked against its on-chain root, a settlement
table is printed, the token balances are checked to add up, and every process is stopped; when
stdin is a terminal the network stays up for the dApp (served by the gateway at /app/) until
Ctrl-C.

`python -m demo --serve FILE` starts the same network, runs no job, writes FILE (JSON: the
URLs, the chain, the contracts, the test accounts' roles; demo/serve.py) once every part is up,
and serves until SIGTERM or Ctrl-C.
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
@click.option(
    "--shards",
    type=int,
    default=None,
    help="Shards of the batch-inference job (default 8), or of each training round with --ai (default 4).",
)
@click.option(
    "--timeout", type=float, default=None, help="Seconds the jobs may take to finish (default 240; 900 with --ai)."
)
@click.option("--faults", is_flag=True, help="Run the fault scenario (make demo-faults) instead.")
@click.option(
    "--ai",
    is_flag=True,
    help="Train a digits classifier over several shards and nodes, then run inference with it (make demo-ai); "
    "with --faults, a training shard's node is killed and another resumes it from its checkpoint (make demo-ai-faults).",
)
@click.option(
    "--serve",
    "serve_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Run no job: write the network's URLs, contracts and accounts to FILE (JSON) once it is up, "
    "and serve until SIGTERM or Ctrl-C.",
)
def main(
    logdir: Path | None, shards: int | None, timeout: float | None, faults: bool, ai: bool, serve_file: Path | None
) -> None:
    """Run the whole network end to end and print its settlement."""
    from rich.console import Console

    from demo import ai as ai_scenario
    from demo import faults as fault_scenario
    from demo import run, serve
    from demo.network import Network

    if serve_file is not None and (faults or ai):
        raise click.UsageError("--serve runs no scenario, so it cannot be combined with --faults or --ai")
    serve.stop_on_sigterm()

    console = Console()
    if not console.is_terminal:  # a log file or CI: wide enough for the tables
        console = Console(width=120)
    name = "demo" + ("-ai" if ai else "") + ("-faults" if faults else "")
    logdir = logdir or ROOT / "logs" / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    logdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    def say(text: str) -> None:
        console.print(f"[dim]{time.monotonic() - start:6.1f}s[/dim] {text}")

    say(f"logs in {logdir}")
    network = Network(logdir, say)
    ok = False
    try:
        network.start()
        if serve_file is not None:
            serve.write_atomically(serve_file, serve.describe(network))
            ok = True  # stopping on a signal is how serving ends
            serve.hold(say, f"serving: the dApp at {network.dapp_url}; {serve_file} describes the network")
        if ai:
            scenario = ai_scenario.resume if faults else ai_scenario.pipeline
            shards, timeout = shards or ai_scenario.SHARDS, timeout or 900
        else:
            scenario = fault_scenario.with_faults if faults else run.end_to_end
            shards, timeout = shards or 8, timeout or 240
        ok = scenario(network, console, say, shards=shards, timeout=timeout)
        # A person at a terminal: leave the network up for the dApp. Output read by a program (CI,
        # tests/demo, even under `pytest -s` where stdin is still the terminal) ends as before.
        if sys.stdin.isatty() and sys.stdout.isatty():
            serve.hold(say, f"the dApp stays at {network.dapp_url}; Ctrl-C stops the network")
    except KeyboardInterrupt:
        say("interrupted" if not ok else "stopping on request")
    except Exception as error:
        console.print(f"[red]Error:[/red] {error}")
        say(f"the logs are in {logdir}")
    finally:
        serve.ignore_signals()  # a second Ctrl-C must not leave half the processes running
        if serve_file is not None:
            serve_file.unlink(missing_ok=True)  # the file says the network is up; it no longer is
        say("stopping every process")
        network.stop()
    say(f"done in {time.monotonic() - start:.0f} s; logs in {logdir}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(prog_name="python -m demo")
