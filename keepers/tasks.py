"""The keeper's Celery app: the tasks `assign_round` (every open shard, from one index),
`finalize_round` (every shard due, in one transaction), `assign` and `finalize` (one shard),
`reclaim` and `expire`, which take ids only and are safe to
run twice or after another keeper (keepers.actions re-reads the chain before sending
anything), and `confirm` (`confirm_all` for a round's), which follow each transaction sent.

Run workers with `ape run keeper worker` or, equivalently,
`celery -A keepers.tasks worker --pool=solo -Q computenet-<name>-confirm,computenet-<name>`;
both read the COMPUTENET_KEEPER_* settings.
"""

from __future__ import annotations

import logging
import time

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
BUSY_POLL = 0.25  # seconds before a round that found the send lock held tries again

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


def _follow(sent) -> None:
    """Follows the transactions a task sent: one confirm task for them all (a round's can be many)."""
    if len(sent) == 1:
        confirm.apply_async(args=[sent[0].__dict__], countdown=CONFIRM_POLL, queue=settings.confirm_queue)
    elif sent:
        confirm_all.apply_async(args=[[s.__dict__ for s in sent]], countdown=CONFIRM_POLL, queue=settings.confirm_queue)


def _again(rt, task, name: str, *ids: int, countdown: float = 0) -> bool:
    """Enqueues the task again (a new one, with no retries counted), unless it is queued already."""
    if not rt.state.mark_queued((name, *ids), ttl=max(10, int(3 * settings.sweep_interval))):
        return False
    task.apply_async(args=list(ids), countdown=countdown, queue=settings.queue)
    return True


def _run(task, name: str, *ids: int) -> str:
    rt = runtime()
    rt.state.clear_queued((name, *ids))
    try:
        outcome = getattr(actions, name)(rt, *ids)
        sent = [outcome] if isinstance(outcome, actions.Sent) else outcome if isinstance(outcome, list) else []
        if sent:
            _follow(sent)
            if name == "assign_round" and sum(one.items() for one in sent) >= actions.ROUND_SENDS:
                _again(rt, task, name, *ids)  # a full round: more may be waiting for the next
            return "sent " + " ".join(one.tx for one in sent)
    except actions.Busy:
        # Another round (or a send) holds the lock: come back shortly, unless a round is queued already.
        queued = _again(rt, task, name, *ids, countdown=BUSY_POLL)
        return "busy: " + ("runs again shortly" if queued else "a round is queued already")
    except actions.Requeue as requeue:
        # Lost a race or the state moved: look again at once (fresh state), not an error.
        _follow(requeue.sent)
        raise task.retry(exc=requeue, countdown=0, max_retries=settings.max_retries)
    except TRANSIENT as error:
        _follow(getattr(error, "sent", ()))
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


@app.task(bind=True, name="keepers.assign_round")
def assign_round(self) -> str:
    return _run(self, "assign_round")


@app.task(bind=True, name="keepers.reclaim")
def reclaim(self, job: int, shard: int, replica: int) -> str:
    return _run(self, "reclaim", job, shard, replica)


@app.task(bind=True, name="keepers.finalize")
def finalize(self, job: int, shard: int) -> str:
    return _run(self, "finalize", job, shard)


@app.task(bind=True, name="keepers.finalize_round")
def finalize_round(self) -> str:
    return _run(self, "finalize_round")


@app.task(bind=True, name="keepers.expire")
def expire(self, job: int, shard: int) -> str:
    return _run(self, "expire", job, shard)


def _sent(raw: dict) -> actions.Sent:
    return actions.Sent(**{**raw, "args": tuple(raw["args"]), "task": tuple(raw["task"])})


@app.task(bind=True, name="keepers.confirm")
def confirm(self, sent: dict) -> str:
    """Follows one transaction to its receipt; a reverted or lost one runs its work again."""
    sent = _sent(sent)
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


@app.task(bind=True, name="keepers.confirm_all")
def confirm_all(self, sent: list[dict]) -> str:
    """Follows several transactions (a round's) in one task, each as `confirm` does; those not
    mined yet, or not readable now (until their tx_timeout), are looked at again together.
    The work of those that failed runs again, once per task named."""
    rt, rest, again = runtime(), [], []
    for raw in sent:
        one = _sent(raw)
        try:
            _, task = actions.confirm(rt, one)
        except actions.NotMined:
            rest.append(raw)
            continue
        except TRANSIENT:
            if time.time() - one.at < settings.tx_timeout:  # past it the pending record has expired
                rest.append(raw)
            continue
        if task is not None and task not in again:
            again.append(task)
    for task in again:
        TASKS[task[0]].apply_async(args=list(task[1:]), queue=settings.queue)
    if rest:
        raise self.retry(args=[rest], countdown=CONFIRM_POLL, max_retries=None, queue=settings.confirm_queue)
    return f"{len(sent)} followed"


TASKS = {
    "assign": assign,
    "assign_round": assign_round,
    "reclaim": reclaim,
    "finalize": finalize,
    "finalize_round": finalize_round,
    "expire": expire,
}
