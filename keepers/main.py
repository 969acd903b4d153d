"""The keeper's commands, shared by `ape run keeper ...` and `python -m keepers ...`:

listen    follow the chain, enqueue tasks, sweep, serve metrics (one per keeper)
worker    a Celery worker running the tasks (as many as wanted, on any machine)
start     listen, with N workers as child processes
status    cursor, queue depth, tracked work, last actions and errors
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import click

from computenet import logs
from computenet.cli import clear_settings_errors
from keepers.settings import KeeperSettings

log = logging.getLogger("keepers.main")


def _listener(settings: KeeperSettings):
    from keepers.heartbeats import HeartbeatIntake, checkpoint_check
    from keepers.listener import Listener
    from keepers.runtime import runtime
    from keepers.tasks import TASKS

    rt = runtime()

    def enqueue(task: tuple) -> None:
        TASKS[task[0]].apply_async(args=task[1:], queue=settings.queue)

    listener = Listener(
        settings,
        rt.market,
        rt.state,
        enqueue,
        chain_now=rt.view.now,
        heartbeats=HeartbeatIntake(
            rt.state,
            rt.view.assets,
            settings.policy(),
            settings.heartbeat_poll_interval,
            settings.heartbeat_timeout,
            settings.heartbeat_workers,
            checkpoints=checkpoint_check(rt.market),
        ),
    )
    return rt, listener


def listen(settings: KeeperSettings, stop: threading.Event | None = None, built: tuple | None = None) -> None:
    logs.setup(settings.log_format, settings.log_level)
    rt, listener = built or _listener(settings)
    if settings.metrics_port:
        from keepers.metrics import serve

        serve(rt.state, lambda: rt.redis.llen(settings.queue), settings.metrics_host, settings.metrics_port)
    stop = stop or _stop_on_signals()
    mode = "dry run (no key)" if settings.dry_run else f"keeper {rt.address}"
    rt.state.set_listener(started=round(time.time(), 3), stopped="")
    log.info(
        "listening",
        extra={
            "fields": {
                "mode": mode,
                "market": str(rt.market.market.address),
                "cursor": rt.state.cursor(),
                "confirmations": settings.confirmations,
                "queue": settings.queue,
            }
        },
    )
    listener.run(stop)
    log.info("stopped")


def worker(settings: KeeperSettings) -> None:
    from keepers.runtime import runtime
    from keepers.tasks import app

    logs.setup(settings.log_format, settings.log_level)
    runtime()  # connect now: a bad key or network fails here, loudly, not in the first task
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "-Q",
            f"{settings.confirm_queue},{settings.queue}",
            "--loglevel=WARNING",
            "-n",
            f"{settings.name}-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


def start(settings: KeeperSettings, workers: int) -> None:
    """The listener here and `workers` worker processes beside it; stopping this stops them.
    The listener connects first (a listener that cannot start starts no workers), and stops
    as soon as a worker exits: a listener enqueueing tasks that no worker runs would look
    healthy while nothing is done. The worker's failure is recorded for `status`."""
    logs.setup(settings.log_format, settings.log_level)
    built = _listener(settings)
    rt = built[0]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "keepers", "worker"],
            env=os.environ | {"COMPUTENET_KEEPER_NETWORK": _network(settings)},
        )
        for _ in range(workers)
    ]
    stop = _stop_on_signals()
    failed: list[str] = []

    def watch() -> None:
        while not stop.is_set():
            for child in children:
                code = child.poll()
                if code is not None:
                    message = f"worker process {child.pid} exited with status {code} (its error is in its output above)"
                    failed.append(message)
                    log.error("worker exited, stopping", extra={"fields": {"error": message}})
                    rt.state.record("error", call="worker", error=message)
                    rt.state.set_listener(stopped=message)
                    stop.set()
                    return
            stop.wait(0.5)

    threading.Thread(target=watch, name="workers", daemon=True).start()
    try:
        listen(settings, stop, built)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
    if failed:
        raise click.ClickException(failed[0])


def _network(settings: KeeperSettings) -> str:
    """The node URI the workers should use (ape run may have connected by network name)."""
    from ape import networks

    uri = getattr(networks.active_provider, "uri", None)
    return uri or settings.network


def status(settings: KeeperSettings, as_json: bool = False) -> dict:
    from keepers.runtime import runtime

    rt = runtime()
    now = time.time()
    report = {
        "keeper": rt.address,
        "market": str(rt.market.market.address),
        "cursor": rt.state.cursor(),
        "head": rt.view.head(),
        "listener": rt.state.listener(),
        "queue": settings.queue,
        "queue_depth": rt.redis.llen(settings.queue),
        "tracked": rt.state.counts(),
        "due_now": len(rt.state.due(rt.view.now())),
        "asset_reasons": rt.state.asset_reasons(),
        "stats": rt.state.stats(),
        "actions": rt.state.recent("actions"),
        "errors": rt.state.recent("errors"),
        "waiting": _waiting(rt),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return report
    lst = report["listener"]
    seen = f"{now - float(lst['at']):.1f} s ago" if "at" in lst else "never"
    click.echo(f"keeper      {report['keeper']}  ({'dry run' if settings.dry_run else 'sending'})")
    click.echo(f"market      {report['market']}")
    click.echo(f"cursor      {report['cursor']} of head {report['head']} (listener last stepped {seen})")
    if lst.get("stopped"):
        click.echo(f"listener    stopped: {lst['stopped']}")
    click.echo(f"queue       {report['queue']}: {report['queue_depth']} waiting")
    t = report["tracked"]
    click.echo(
        f"tracked     {t['open']} open shards, {t['due']} due items ({report['due_now']} due now), "
        f"{t['nodes']} nodes, {t['pending']} txs in flight"
    )
    click.echo("counts      " + (", ".join(f"{k}={v}" for k, v in sorted(report["stats"].items())) or "none"))
    click.echo("not assigning:" + ("" if report["waiting"] else " nothing"))
    for entry in report["waiting"]:
        if "error" in entry:
            click.echo(f"  cannot tell: {entry['error']}")
        for replica, why in entry["replicas"].items():
            click.echo(f"  job {entry['job']} shard {entry['shard']} replica {replica}: {why['reason']}")
    reasons = report["asset_reasons"]
    click.echo("not eligible:" + ("" if reasons else " none (every polled asset has a fresh heartbeat)"))
    for asset, reason in reasons.items():
        click.echo(f"  asset {asset}: {reason}")
    for title, entries in (("last actions", report["actions"]), ("last errors", report["errors"])):
        click.echo(f"{title}:" + ("" if entries else " none"))
        for e in entries:
            when = time.strftime("%H:%M:%S", time.localtime(e.pop("at")))
            click.echo(f"  {when} {e.pop('kind'):<8} " + " ".join(f"{k}={v}" for k, v in e.items()))
    return report


def _waiting(rt) -> list[dict]:
    """Why each open shard waits; a failed read is shown as such, never hides the rest of the status."""
    from keepers.actions import waiting

    try:
        return waiting(rt)
    except Exception as error:
        return [{"error": f"{type(error).__name__}: {error}", "replicas": {}}]


_clear = clear_settings_errors("COMPUTENET_KEEPER_", "keeper")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def commands(command_kwargs=None, options=()) -> click.Group:
    """The click group; `ape run keeper` builds it with ape's connected command class and
    its network option (`options` decorate every command)."""
    kwargs = command_kwargs or {}
    settings_factory = KeeperSettings

    def each(command):
        for option in options:
            command = option(command)
        return command

    @click.group()
    def cli() -> None:
        """Keeper bot: assigns shards, reclaims expired leases, finalizes, expires unruled disputes (settings: COMPUTENET_KEEPER_*)."""

    @cli.command("listen", **kwargs)
    @each
    @_clear
    def listen_cmd(**_: object) -> None:
        """Follow the chain and enqueue tasks (one per keeper)."""
        listen(settings_factory())

    @cli.command("worker", **kwargs)
    @each
    @_clear
    def worker_cmd(**_: object) -> None:
        """Run a Celery worker for this keeper's tasks."""
        worker(settings_factory())

    @cli.command("start", **kwargs)
    @each
    @click.option("--workers", default=2, show_default=True, help="worker processes to start beside the listener")
    @_clear
    def start_cmd(workers: int, **_: object) -> None:
        """Listener plus worker processes."""
        start(settings_factory(), workers)

    @cli.command("status", **kwargs)
    @each
    @click.option("--json", "as_json", is_flag=True, help="machine-readable")
    @_clear
    def status_cmd(as_json: bool, **_: object) -> None:
        """Cursor, queue depth, tracked work, last actions and errors."""
        status(settings_factory(), as_json)

    return cli
