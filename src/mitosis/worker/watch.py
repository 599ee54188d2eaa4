"""``spec.watch = [W, S]``: hold a task back until task W has progressed to exec state S (§6.5).

Two sources of truth, as in 0.6.8: the Redis key/channel ``task:<W>`` written by the worker running
W (exact exec states), and the coordinator's view of W (``GET /workers/tasks/<W>``: only the task
state and its committed result, mapped by :func:`coordinator_reached`). 0.6.8 skipped the watch
altogether without Redis; we fall back to asking the coordinator every second (DECISIONS S18).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

from redis.asyncio import Redis

from mitosis.wire.enums import TaskExecState as X
from mitosis.wire.enums import TaskResultMessage as M
from mitosis.wire.enums import TaskState
from mitosis.wire.models import TaskResultSpec
from mitosis.worker.api import ApiError, CoordinatorApi, ForcedExit

log = logging.getLogger(__name__)

REDIS_RECHECK_SECONDS = 30.0
COORDINATOR_POLL_SECONDS = 1.0

_EXEC_RANGE = [X.from_code(code) for code in range(10, 20)]  # ExecPending ... TaskCommitted

# target S -> the current states C that count as having reached it
_REACHED: dict[X, frozenset[X]] = {
    X.WorkerExited: frozenset(),
    X.Unknown: frozenset(),
    X.FetchResource: frozenset(set(X) - {X.WorkerExited, X.Unknown}),
    X.FetchResourceFinished: frozenset(
        {X.FetchResourceFinished, X.Watch, X.WatchFinished, X.WatchTimeout, *_EXEC_RANGE}
    ),
    X.Watch: frozenset({X.Watch, X.WatchFinished, X.WatchTimeout, *_EXEC_RANGE}),
    X.WatchFinished: frozenset({X.WatchFinished, *_EXEC_RANGE}),
    X.ExecPending: frozenset(_EXEC_RANGE),
    X.ExecSpawned: frozenset(_EXEC_RANGE[1:]),
    X.ExecFinished: frozenset({X.ExecFinished, X.UploadFinishedResult}),
    X.ExecTimeout: frozenset({X.ExecTimeout, X.UploadCancelledResult}),
    X.UploadResult: frozenset(_EXEC_RANGE[4:]),
}


def exec_reached(current: X, target: X) -> bool:
    """Whether exec state ``current`` counts as having reached ``target`` (first table of §6.5)."""
    return current in _REACHED.get(target, frozenset({target}))


_FINISHED_ALWAYS = frozenset(
    {
        X.FetchResource,
        X.FetchResourceFinished,
        X.Watch,
        X.WatchFinished,
        X.ExecPending,
        X.ExecSpawned,
        X.ExecFinished,
        X.UploadResult,
        X.UploadFinishedResult,
    }
)
_EARLY = frozenset(
    {
        X.FetchResource,
        X.FetchResourceFinished,
        X.Watch,
        X.WatchFinished,
        X.ExecPending,
        X.ExecSpawned,
        X.ExecFinished,
    }
)
_ALL_MSGS = frozenset(M)
# target S -> the commit messages of a Cancelled task that count as having reached it
_CANCELLED_MSGS: dict[X, frozenset[M]] = {
    **{target: frozenset({M.SubmitNewTaskFailed}) for target in _EARLY},
    X.FetchResourceTimeout: frozenset({M.FetchResourceTimeout}),
    X.FetchResourceNotFound: frozenset({M.ResourceNotFound}),
    X.FetchResourceForbidden: frozenset({M.ResourceForbidden}),
    X.WatchTimeout: frozenset({M.WatchTimeout}),
    X.ExecTimeout: frozenset({M.ExecTimeout}),
    X.UploadResult: _ALL_MSGS - {M.UserCancellation},
    X.UploadResultFinished: _ALL_MSGS - {M.UserCancellation},
    X.UploadCancelledResult: _ALL_MSGS - {M.UserCancellation, M.SubmitNewTaskFailed},
    X.UploadResultTimeout: frozenset({M.UploadResultTimeout}),
    X.TaskCommitted: _ALL_MSGS,
}


def coordinator_reached(state: TaskState, result: TaskResultSpec | None, target: X) -> bool:
    """The coordinator-side fallback of §6.5: task state (and committed result) against ``target``."""
    if state is TaskState.Running:
        return target is X.FetchResource
    if state is TaskState.Finished:
        if target in _FINISHED_ALWAYS:
            return True
        return target in (X.UploadResultFinished, X.TaskCommitted) and result is not None
    if state is TaskState.Cancelled:
        if result is None or result.msg is None:
            return False
        return result.msg in _CANCELLED_MSGS.get(target, frozenset())
    return False


def redis_url_for_client(url: str) -> str:
    """0.6.8 hands out ``?protocol=resp3``; redis-py wants the protocol as a number."""
    return url.replace("protocol=resp3", "protocol=3").replace("protocol=resp2", "protocol=2")


async def _ask_coordinator(api: CoordinatorApi, watched: UUID, target: X) -> bool:
    try:
        info = (await api.task_info(watched)).info
    except ForcedExit:
        raise
    except ApiError as exc:
        log.warning("watch: cannot read task %s from the coordinator: %s", watched, exc)
        return False
    return coordinator_reached(info.state, info.result, target)


async def _ask_redis(redis: Redis, watched: UUID, target: X) -> bool:
    try:
        raw = await redis.get(f"task:{watched}")
    except Exception as exc:  # redis-py raises many types; a watch must survive all of them
        log.warning("watch: redis GET failed: %s", exc)
        return False
    return raw is not None and _payload_reached(raw, target)


def _payload_reached(raw: object, target: X) -> bool:
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    try:
        code = int(str(raw))
    except ValueError:
        return False
    return exec_reached(X.from_code_lenient(code), target)


async def _poll_coordinator(api: CoordinatorApi, watched: UUID, target: X, interval: float) -> None:
    while not await _ask_coordinator(api, watched, target):
        await asyncio.sleep(interval)


async def _watch_redis(redis: Redis, api: CoordinatorApi, watched: UUID, target: X) -> None:
    channel = f"task:{watched}"
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(channel)
        loop = asyncio.get_running_loop()
        next_check = loop.time()
        while True:
            if loop.time() >= next_check:
                if await _ask_redis(redis, watched, target) or await _ask_coordinator(api, watched, target):
                    return
                next_check = loop.time() + REDIS_RECHECK_SECONDS
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=max(0.0, next_check - loop.time())
            )
            if message is not None and _payload_reached(message.get("data"), target):
                return
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


async def wait_until_reached(
    api: CoordinatorApi,
    watched: UUID,
    target: X,
    *,
    redis: Redis | None,
    poll_interval: float = COORDINATOR_POLL_SECONDS,
) -> None:
    """Return once ``watched`` has reached ``target``; the caller bounds the wait.

    Uses Redis when a connection is given; if the subscription itself fails, falls back to polling
    the coordinator. A 401 (:class:`ForcedExit`) propagates.
    """
    if redis is not None:
        try:
            await _watch_redis(redis, api, watched, target)
            return
        except ForcedExit:
            raise
        except Exception as exc:  # lost Redis: the coordinator still knows the answer
            log.warning("watch: redis unavailable (%s); asking the coordinator instead", exc)
    await _poll_coordinator(api, watched, target, poll_interval)
