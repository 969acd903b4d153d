"""The keeper's Celery app: the tasks `assign`, `reclaim`, `finalize` and `expire`, which take ids
only and are safe to run twice or after another keeper (keepers.actions re-reads the chain
before sending anything), and `confirm`, which follows each transaction sent.

Run workers with `ape run keeper worker` or, equivalently,
`celery -A keepers.tasks worker --pool=solo -Q computenet-<name>-confirm,computenet-<name>`;
both read the COMPUTENET_KEEPER_* settings.
"""

from __future__ import annotations

import logging

import redis
import requests
from celery import Celery, signals

from computenet import logs
from keepers import actions
from keepers.runtime import runtime
from keepers.settings import KeeperSettings
from keepers.state import LockTimeout

log = logging.getLogger("keepers.tasks")

CONFIRM_POLL = 0.25  # seconds between looks for a receipt

settings = KeeperSettings()
app = Celery("computenet-keeper")
app.conf.update(
    broker_url=settings.redis_url,
    broker_connection_retry_on_startup=True,
    task_default_queue=settings.queue,
    task_ignore_result=True,
    task_acks_late=False,  # a task lost with its worker is found again by the listener's sweep
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)

# Worth another try after a backoff; anything else is recorded as an error and dropped
# (the sweep brings back whatever the projection still holds).
TRANSIENT = (
    actions.TransientError,
    LockTimeout,
    redis.ConnectionError,
    redis.TimeoutError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)


@signals.setup_logging.connect
def _logging(**_: object) -> None:
    logs.setup(settings.log_format, settings.log_level)


def _run(task, name: str, *ids: int) -> str:
    rt = runtime()
    rt.state.clear_queued((name, *ids))
    try:
        outcome = getattr(actions, name)(rt, *ids)
        if isinstance(outcome, actions.Sent):
            confirm.apply_async(args=[outcome.__dict__], countdown=CONFIRM_POLL, queue=settings.confirm_queue)
            return f"sent {outcome.tx}"
    except actions.Requeue as requeue:
        # Lost a race or the state moved: look again at once (fresh state), not an error.
        raise task.retry(exc=requeue, countdown=0, max_retries=settings.max_retries)
    except TRANSIENT as error:
        rt.state.record("retry", call=name, args=list(ids), error=str(error))
        raise task.retry(exc=error, countdown=min(30, 2**task.request.retries), max_retries=settings.max_retries)
    except Exception as error:
        rt.state.record("error", call=name, args=list(ids), error=f"{type(error).__name__}: {error}")
        log.exception("task failed", extra={"fields": {"call": name, "args": list(ids)}})
        raise
    log.debug("task", extra={"fields": {"call": name, "args": list(ids), "outcome": outcome}})
    return outcome


@app.task(bind=True, name="keepers.assign")
def assign(self, job: int, shard: int) -> str:
    return _run(self, "assign", job, shard)


@app.task(bind=True, name="keepers.reclaim")
def reclaim(self, job: int, shard: int, replica: int) -> str:
    return _run(self, "reclaim", job, shard, replica)


@app.task(bind=True, name="keepers.finalize")
def finalize(self, job: int, shard: int) -> str:
    return _run(self, "finalize", job, shard)


@app.task(bind=True, name="keepers.expire")
def expire(self, job: int, shard: int) -> str:
    return _run(self, "expire", job, shard)


@app.task(bind=True, name="keepers.confirm")
def confirm(self, sent: dict) -> str:
    """Follows one transaction to its receipt; a reverted or lost one runs its work again."""
    sent = actions.Sent(**{**sent, "args": tuple(sent["args"]), "task": tuple(sent["task"])})
    try:
        outcome, again = actions.confirm(runtime(), sent)
    except actions.NotMined:
        raise self.retry(
            countdown=CONFIRM_POLL, max_retries=None, queue=settings.confirm_queue
        )  # bounded by tx_timeout
    except TRANSIENT as error:
        raise self.retry(exc=error, countdown=1, max_retries=settings.max_retries, queue=settings.confirm_queue)
    if again is not None:
        TASKS[again[0]].apply_async(args=list(again[1:]), queue=settings.queue)
    return outcome


TASKS = {"assign": assign, "reclaim": reclaim, "finalize": finalize, "expire": expire}
