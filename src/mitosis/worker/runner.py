"""The worker process: start-up, its loops, one task from fetch to commit, and shutdown (§6.1-6.11).

Start-up logs in with the credential file (or a login), registers the worker and keeps its worker
token. Then a heartbeat loop and a task loop run until a stop: SIGINT/SIGTERM, a 401 from the
coordinator (forced exit) or an internal error. Cleanup always unregisters (``DELETE /workers``,
which re-queues a task this worker still held) and removes the working directory.

One task runs at a time, in ``<work_dir>/<task uuid>/`` (``result/``, ``exec/``, ``resource/``,
mode 0700), which is removed after the task whatever happened (0.6.8 kept files of failed tasks,
§11.3 S22). Departures from 0.6.8, all invisible on the wire:

* a running task can be cancelled by its user (DECISIONS S5): while it runs the worker long-polls
  ``GET /workers/signals``; a cancelled task is killed, its output uploaded, and committed with
  ``UserCancellation``. Downstream tasks are not submitted for it.
* a stop requested after the task process ended (while packing/uploading) no longer throws the
  finished result away: the upload phase (bounded by its 600 s deadline) and the commit complete.
* reports that hit a connection failure, a timeout or a 5xx are retried with backoff (§6.12 only
  retried failed connections and stopped the worker otherwise); after a stop they get a grace of
  :data:`STOP_GRACE_SECONDS`.
* a 4xx other than 401/403/404 on Finish/Cancel/Commit, or a rejected blob upload, is logged and the
  worker carries on with its next task instead of stopping.
* results that cannot be packed (disk full) or uploaded (the store refuses them) end the task with
  ``UploadResultTimeout``, as the 600 s upload deadline does; the task directory is removed only
  after that commit.
* with a coordinator that has ``POST /workers/batch`` (ours), tasks come from and results go to a
  :class:`~mitosis.worker.feeder.Feeder`: a task with nothing to upload and no downstream task is
  committed with its end in one batch entry, short tasks are claimed ahead, and the per-task
  routes are used only for uploads and downstream submissions. ``--no-batch`` (or a 0.6.8
  coordinator) keeps the 0.6.8 protocol throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import logging.handlers
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path
from typing import Literal, TypeVar
from uuid import UUID

from pydantic import ValidationError
from redis.asyncio import Redis

from mitosis.client.credentials import CredentialStore
from mitosis.config import WorkerSettings, user_cache_dir
from mitosis.wire.codecs import md5_digest_list
from mitosis.wire.enums import ArtifactContentType, TaskExecState, TaskResultMessage
from mitosis.wire.models import (
    CommitOp,
    RegisterWorkerReq,
    ReportTaskOp,
    ReportTaskResp,
    SubmitOp,
    SubmitTaskReq,
    TaskResultSpec,
    UploadOp,
    UploadOpBody,
    WorkerTaskResp,
)
from mitosis.worker.api import (
    ApiError,
    Backoff,
    CoordinatorApi,
    ForcedExit,
    ProtocolError,
    StatusError,
    TransientError,
    retrying,
)
from mitosis.worker.executor import (
    Outcome,
    TaskProcess,
    install_child_watcher,
    mito_env,
    supervise,
    task_env,
)
from mitosis.worker.feeder import BatchUnsupported, Feeder
from mitosis.worker.livelog import LogStreamer
from mitosis.worker.packing import pack_dir, pack_std_log
from mitosis.worker.resources import RESOURCE_PHASE_SECONDS, fetch_resources
from mitosis.worker.taskdirs import TaskDirs, survey
from mitosis.worker.wakeup import Flag
from mitosis.worker.watch import redis_url_for_client, wait_until_reached
from mitosis.worker.watchdog import Watchdog

log = logging.getLogger(__name__)

UPLOAD_PHASE_SECONDS = 600.0
STOP_GRACE_SECONDS = 30.0
SUBMIT_RETRY_SECONDS = 120.0
SIGNALS_WAIT = timedelta(seconds=20)
SIGNALS_DELAY = 0.25
T = TypeVar("T")

_X = TaskExecState


class StartupError(Exception):
    """Start-up cannot continue; the message is one line for the user."""


class _Stopped(Exception):
    """The worker is stopping: abandon the task without reporting anything."""


class _Cancelled(Exception):
    """The task's user cancelled it."""


class Announcer:
    """Redis announcements of a task's exec state (§6.4): SET with TTL, then PUBLISH. Best effort.

    The client keeps its URL and reconnects by itself at the next command, so announcements
    resume when Redis comes back, however long it was gone; an outage is logged once, when it
    starts, and once more when announcements work again.
    """

    def __init__(self, redis: Redis | None) -> None:
        self.redis = redis
        self._failing = False

    async def __call__(self, task: UUID, state: TaskExecState, ttl: int | None) -> None:
        if self.redis is None:
            return
        key = f"task:{task}"
        try:
            await self.redis.set(key, state.code, ex=ttl)
            await self.redis.publish(key, state.code)
        except Exception as exc:  # announcements are advisory; redis-py has many error types
            if not self._failing:
                self._failing = True
                log.warning("redis announcements fail (%s); tasks run as usual, retrying with each one", exc)
            return
        if self._failing:
            self._failing = False
            log.info("redis announcements work again")


class Worker:
    """One worker: call :meth:`run` in an event loop; :meth:`request_stop` ends it gracefully."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        api: CoordinatorApi | None = None,
        interactive: bool = False,
    ) -> None:
        self.settings = settings
        self.api = api or CoordinatorApi(settings.coordinator_addr)
        self.interactive = interactive
        self.stop_event = Flag()
        self.forced_exit = False
        self.failed = False
        self.worker_id: UUID | None = None
        self.work_dir: Path | None = None
        self._own_work_dir = False
        self._stop_time: float | None = None
        self._current: TaskProcess | None = None
        self._watchdog = Watchdog()
        self._announce = Announcer(None)
        self._log_handler: logging.Handler | None = None
        self._polling = max(settings.polling_interval.total_seconds(), 0.01)
        self._live_logs = settings.live_logs
        self._feeder: Feeder | None = None
        self._dirs: TaskDirs | None = None
        # The worker's environment, read once: os.environ decodes every entry on each pass.
        self._base_env = dict(os.environ)
        self._cancels: dict[int, asyncio.Event] = {}

    # ------------------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        if not self.stop_event.is_set():
            self._stop_time = time.monotonic()
            self.stop_event.set()

    def _give_up(self) -> bool:
        """Whether retries should end: a stop was requested more than the grace period ago."""
        return self._stop_time is not None and time.monotonic() - self._stop_time > STOP_GRACE_SECONDS

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop gracefully; a second SIGINT kills the task and exits with status 1."""
        loop = asyncio.get_running_loop()

        def on_sigint() -> None:
            if self.stop_event.is_set():
                if self._current is not None:
                    with contextlib.suppress(OSError):
                        os.killpg(self._current.pid, signal.SIGKILL)
                os._exit(1)
            log.info("stopping (press Ctrl-C again to exit at once)")
            self.request_stop()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)

    async def run(self) -> int:
        """Start, work until stopped, clean up. Returns the process exit status."""
        try:
            await self._start()
        except StartupError as exc:
            log.error("%s", exc)
            await self.api.aclose()
            return 1
        try:
            await self._loops()
        finally:
            await self._cleanup()
        return 1 if self.failed else 0

    async def _start(self) -> None:
        s = self.settings
        user_token = await self._user_token()
        req = RegisterWorkerReq(tags=s.tags, labels=s.labels, groups=s.groups, lifetime=s.lifetime)
        try:
            resp = await self.api.register(user_token, req)
        except TransientError:
            raise StartupError(f"Fail to connect to {self.api.base_url}") from None
        except ApiError as exc:
            raise StartupError(f"cannot register the worker: {exc}") from None
        self.worker_id = resp.worker_id
        self.api.token = resp.token
        if s.work_dir is not None:
            self.work_dir = s.work_dir
        else:
            self.work_dir = user_cache_dir() / str(resp.worker_id)
            self._own_work_dir = True
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._watchdog.start()
        if s.file_log or s.log_path is not None:
            self._setup_file_log(resp.worker_id)
        if resp.redis_url and not s.skip_redis:
            self._announce = Announcer(await _connect_redis(resp.redis_url))
        if s.batch:
            await self._start_feeder()
        log.info(
            "worker %s registered with %s (%s protocol)",
            resp.worker_id,
            self.api.base_url,
            "batched" if self._feeder is not None else "per-task",
        )

    async def _start_feeder(self) -> None:
        long_poll = self.settings.long_poll if self.settings.long_poll.total_seconds() > 0 else None
        feeder = Feeder(
            self.api,
            prefetch=self.settings.prefetch,
            short=self.settings.prefetch_short.total_seconds(),
            long_poll=long_poll,
            retry_cap=self._polling,
            stop=self.stop_event,
            give_up=self._give_up,
            on_cancel=self._cancel_running,
        )
        try:
            supported = await feeder.probe()
        except ApiError as exc:
            log.warning("the batched protocol is not available (%s): using the per-task one", exc)
            return
        if supported:
            self._feeder = feeder

    def _cancel_running(self, task_id: int) -> None:
        event = self._cancels.get(task_id)
        if event is not None:
            log.info("task %d cancelled by its user (or no longer ours)", task_id)
            event.set()

    async def _user_token(self) -> str:
        """A valid user token: the cached one (checked with ``GET /auth``) or a fresh login (§3.8)."""
        s = self.settings
        store = CredentialStore(s.credential_path)
        cached = store.get(s.user)
        if cached is not None:
            name, token = cached
            try:
                if await self.api.auth(token) == name:
                    return token
            except TransientError:
                raise StartupError(f"Fail to connect to {self.api.base_url}") from None
            except ApiError:
                pass  # expired or revoked: log in again
        username = s.user or (cached[0] if cached else None)
        password = s.password
        if username is None or password is None:
            if not (self.interactive and sys.stdin.isatty()):
                raise StartupError(
                    "no valid cached token and no credentials: pass --user and --password "
                    "(or log in once with `mito client login`)"
                )
            if username is None:
                username = (await asyncio.to_thread(input, "Username: ")).strip()
            if password is None:
                password = await asyncio.to_thread(getpass.getpass, "Password: ")
        try:
            token = await self.api.login(username, md5_digest_list(password))
        except TransientError:
            raise StartupError(f"Fail to connect to {self.api.base_url}") from None
        except ApiError as exc:
            raise StartupError(f"login as {username} failed: {exc}") from None
        store.put(username, token)
        return token

    def _setup_file_log(self, worker_id: UUID) -> None:
        s = self.settings
        log_dir = user_cache_dir() / "worker"
        handler: logging.Handler
        if s.shared_log:
            path = s.log_path or log_dir / "workers.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.TimedRotatingFileHandler(path, when="midnight", backupCount=3)
            fmt = f"[worker:{worker_id}] %(asctime)s %(levelname)s %(name)s: %(message)s"
        else:
            path = s.log_path or log_dir / f"{worker_id}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path)
            fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(fmt))
        # 0.6.8 reads `netmito=info`-style filters; the level after the last `=` is what matters.
        level_name = os.environ.get("MITO_FILE_LOG_LEVEL", "info").rpartition("=")[2].upper()
        handler.setLevel(logging.getLevelNamesMapping().get(level_name, logging.INFO))
        logging.getLogger("mitosis").addHandler(handler)
        self._log_handler = handler

    async def _cleanup(self) -> None:
        self._watchdog.close()
        if self._dirs is not None:
            self._dirs.close()
        with contextlib.suppress(ApiError):
            await self.api.unregister()
        if self.work_dir is not None:
            if self._own_work_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    self.work_dir.rmdir()  # a directory given by the user: remove it only if empty
        if self._announce.redis is not None:
            with contextlib.suppress(Exception):
                await self._announce.redis.aclose()
        await self.api.aclose()
        if self._log_handler is not None:
            logging.getLogger("mitosis").removeHandler(self._log_handler)
            self._log_handler.close()
        log.info("worker %s stopped", self.worker_id)

    # ---------------------------------------------------------------------------------- loops

    async def _guard(self, body: Awaitable[None], what: str) -> None:
        try:
            await body
        except ForcedExit as exc:
            log.warning("the coordinator forced this worker to exit (%s)", exc)
            self.forced_exit = True
        except Exception:
            log.exception("%s failed; stopping the worker", what)
            self.failed = True
        self.request_stop()

    async def _loops(self) -> None:
        heartbeat = asyncio.create_task(self._guard(self._heartbeat_loop(), "heartbeat"))
        tasks = asyncio.create_task(self._guard(self._task_loop(), "task loop"))
        stopped = asyncio.create_task(self.stop_event.wait())
        await asyncio.wait({heartbeat, tasks, stopped}, return_when=asyncio.FIRST_COMPLETED)
        # The task loop finishes what it must (uploads of a finished task) while heartbeats go on.
        await tasks
        heartbeat.cancel()
        stopped.cancel()
        await asyncio.gather(heartbeat, stopped, return_exceptions=True)

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.api.heartbeat()
            except TransientError as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _race(self, aw: Awaitable[T], cancel: asyncio.Event | None = None) -> T:
        """Await ``aw`` unless a stop (→ _Stopped) or the task's cancellation (→ _Cancelled) comes first."""
        work = asyncio.ensure_future(aw)
        waiters = [asyncio.ensure_future(self.stop_event.wait())]
        if cancel is not None:
            waiters.append(asyncio.ensure_future(cancel.wait()))
        try:
            await asyncio.wait({work, *waiters}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        if self.stop_event.is_set():
            raise _Stopped
        raise _Cancelled

    async def _task_loop(self) -> None:
        if self._feeder is not None:
            await self._batch_loop(self._feeder)
        if not self.stop_event.is_set():
            await self._classic_loop()

    async def _batch_loop(self, feeder: Feeder) -> None:
        """Tasks from the feeder; at a stop its last batch goes out before the worker unregisters.
        If the coordinator stops speaking the batched protocol, what the feeder holds is finished
        with the per-task one and the classic loop takes over."""
        feeding = asyncio.create_task(self._guard_feeder(feeder))
        try:
            while not self.stop_event.is_set():
                try:
                    # A task claimed ahead starts at once; waiting for one races the stop.
                    queued = feeder.pop()
                    task = queued if queued is not None else await self._race(feeder.next_task())
                except (_Stopped, BatchUnsupported):
                    break
                await self._execute(task)
        finally:
            if feeder.unsupported:
                await feeding
                await self._leave_batch(feeder)
            else:
                feeding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeding
                await feeder.drain(time.monotonic() + STOP_GRACE_SECONDS)

    async def _guard_feeder(self, feeder: Feeder) -> None:
        try:
            await feeder.run()
        except BatchUnsupported:
            log.warning("the coordinator no longer answers POST /workers/batch: using the per-task protocol")
        except ForcedExit as exc:
            log.warning("the coordinator forced this worker to exit (%s)", exc)
            self.forced_exit = True
            self.request_stop()
        except Exception:
            log.exception("the batch exchange failed; stopping the worker")
            self.failed = True
            self.request_stop()
        finally:
            feeder.unsupported = feeder.unsupported or not self.stop_event.is_set()

    async def _leave_batch(self, feeder: Feeder) -> None:
        """Report the feeder's unsent results one by one and run the tasks it claimed ahead."""
        self._feeder = None
        done, queued = feeder.take_leftovers()
        for item, on_committed in done:
            await self._report(item.id, item.op)
            await self._report(item.id, CommitOp(Commit=item.result))
            if on_committed is not None:
                await on_committed()
        for task in queued:
            if self.stop_event.is_set():
                break
            await self._execute(task)

    async def _classic_loop(self) -> None:
        long_poll = self.settings.long_poll if self.settings.long_poll.total_seconds() > 0 else None
        backoff = Backoff(self._polling)
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                task = await self._race(self.api.fetch_task(long_poll))
            except _Stopped:
                return
            except TransientError as exc:
                log.warning("fetching a task failed: %s", exc)
                await backoff.sleep(self.stop_event)
                continue
            backoff = Backoff(self._polling)
            if task is not None:
                await self._execute(task)
                continue
            held = time.monotonic() - started
            if long_poll is None or held < min(1.0, long_poll.total_seconds() / 2):
                # No long-poll (or a 0.6.8 coordinator that ignores `wait`): poll as 0.6.8 does.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(), self._polling)

    # -------------------------------------------------------------------------------- one task

    async def _execute(self, task: WorkerTaskResp) -> None:
        assert self.work_dir is not None
        if self._dirs is None:
            self._dirs = TaskDirs(self.work_dir)
        task_dir = self._dirs.create(str(task.uuid))
        cancel = Flag()
        self._cancels[task.id] = cancel
        # The signals long-poll starts only for a task still running after SIGNALS_DELAY: most
        # short tasks are over by then (a cancel requested meanwhile is answered by its first poll).
        watching: list[asyncio.Task[None]] = []
        start_watch = asyncio.get_running_loop().call_later(
            SIGNALS_DELAY,
            lambda: watching.append(asyncio.ensure_future(self._watch_signals(task.id, cancel))),
        )
        pristine: bool | None = None
        try:
            pristine = await self._run_task(task, task_dir, cancel)
        except _Stopped:
            await self._announce(task.uuid, _X.WorkerExited, 60)
            log.info("task %s abandoned: the worker is stopping", task.uuid)
        finally:
            start_watch.cancel()
            for signals in watching:
                signals.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await signals
            self._current = None
            self._cancels.pop(task.id, None)
            await self._dirs.discard(task_dir, pristine)
            if self._feeder is not None:
                self._feeder.ended(task)

    async def _run_task(self, task: WorkerTaskResp, task_dir: Path, cancel: asyncio.Event) -> bool | None:
        """Run one task to its commit. Returns whether the task left its tree pristine when that
        was surveyed on the way (and nothing was written to the tree after), else None."""
        spec = task.spec

        # Phase A: resources; phase B: watch. Both share the 30 minute deadline R.
        deadline = time.monotonic() + RESOURCE_PHASE_SECONDS
        await self._announce(task.uuid, _X.FetchResource, 360)
        try:
            if spec.resources:
                failure = await self._race(
                    fetch_resources(
                        self.api, task, task_dir / "resource", deadline=deadline, retry_cap=self._polling
                    ),
                    cancel,
                )
                if failure is not None:
                    await self._fail_early(task, failure.msg, failure.announce, failure.announce_ttl)
                    return None
            if spec.watch is not None:
                watched, target = spec.watch
                await self._announce(task.uuid, _X.Watch, None)
                try:
                    await self._race(
                        asyncio.wait_for(
                            wait_until_reached(self.api, watched, target, redis=self._announce.redis),
                            timeout=max(0.0, deadline - time.monotonic()),
                        ),
                        cancel,
                    )
                except TimeoutError:
                    await self._fail_early(task, TaskResultMessage.WatchTimeout, _X.WatchTimeout, 60)
                    return None
        except _Cancelled:
            await self._fail_early(task, TaskResultMessage.UserCancellation, None, None)
            return None

        # Phase C: run the process.
        timeout = task.timeout.total_seconds()
        await self._announce(task.uuid, _X.ExecPending, int(timeout) + 60)
        upstream = str(task.upstream_task_uuid) if task.upstream_task_uuid is not None else None
        mito = mito_env(str(task_dir), str(task.uuid), upstream)
        stdout = task_dir / "stdout.log" if spec.terminal_output else None
        stderr = task_dir / "stderr.log" if spec.terminal_output else None
        proc = await TaskProcess.spawn(
            spec.args,
            task_env(self._base_env, spec.envs, mito),
            stdout=stdout,
            stderr=stderr,
            limits=spec.limits,
        )
        self._current = proc
        self._watchdog.track(proc.pid)
        # Logged once the process runs, not before: the line (two handlers, two writes) would
        # otherwise delay every task's start by ~0.2 ms here. A task that ends before it runs
        # logs why in _fail_early.
        log.info("task %s (id %d) started as pid %d: %s", task.uuid, task.id, proc.pid, " ".join(spec.args))
        await self._announce(task.uuid, _X.ExecSpawned, None)

        async def on_timeout() -> None:
            log.info("task %s timed out after %s s", task.uuid, timeout)
            await self._announce(task.uuid, _X.ExecTimeout, 60)

        streamer = None
        if stdout is not None and stderr is not None and self._live_logs:
            streamer = LogStreamer(
                self.api, task.id, {"stdout": stdout, "stderr": stderr}, retry_cap=self._polling
            )
            streamer.start()
        try:
            result = await supervise(
                proc,
                deadline=time.monotonic() + timeout,
                stop=self.stop_event,
                cancel=cancel,
                on_timeout=on_timeout,
            )
        except BaseException:
            if streamer is not None:
                await streamer.cancel()
            raise
        self._current = None
        self._watchdog.untrack()
        if streamer is not None:
            # The tail goes out before the std-log upload, so a follower sees all of it.
            await (streamer.cancel() if result.outcome is Outcome.STOPPED else streamer.finish())
            if streamer.unsupported:
                log.info("the coordinator has no live-log endpoint: task output is not streamed")
                self._live_logs = False
        if result.outcome is Outcome.STOPPED:
            raise _Stopped
        # A clean exit is the common case: its line only in debug logs.
        clean = result.outcome is Outcome.FINISHED and result.exit_status == 0
        log.log(
            logging.DEBUG if clean else logging.INFO,
            "task %s: %s, wait status %d",
            task.uuid,
            result.outcome.value,
            result.exit_status,
        )
        if result.outcome is Outcome.FINISHED:
            await self._announce(task.uuid, _X.ExecFinished, 660)
        await self._announce(task.uuid, _X.UploadResult, 660)

        # Phase D: report, pack, upload, commit.
        op: Literal["Finish", "Cancel"] = "Finish" if result.outcome is Outcome.FINISHED else "Cancel"
        if result.outcome is Outcome.FINISHED:
            await self._announce(task.uuid, _X.UploadFinishedResult, 660)
        else:
            await self._announce(task.uuid, _X.UploadCancelledResult, 660)
        left = survey(task_dir) if self._feeder is not None and not spec.terminal_output else None
        if left is not None and not left.outputs:
            # Nothing to upload and no downstream task: the end and the result go in one batch entry.
            await self._announce(task.uuid, _X.UploadResultFinished, 60)
            await self._commit(task, result.exit_status, _result_msg(result.outcome, True), op)
            return left.pristine
        await self._report(task.id, op)
        try:
            uploaded = await asyncio.wait_for(
                self._pack_and_upload(task, task_dir, spec.terminal_output), UPLOAD_PHASE_SECONDS
            )
        except TimeoutError:
            log.warning("task %s: uploads exceeded %d s", task.uuid, UPLOAD_PHASE_SECONDS)
            uploaded = False
        if not uploaded:
            # The wire has one message for "the results did not reach the store" (0.6.8's only
            # upload failure): a permanent failure (disk full while packing, the store refusing the
            # upload) ends the task with it too, instead of committing as if nothing was lost.
            await self._commit(
                task,
                result.exit_status,
                TaskResultMessage.UploadResultTimeout,
                op,
                then=(_X.UploadResultTimeout, 60),
            )
            return None
        await self._announce(task.uuid, _X.UploadResultFinished, 60)
        submitted = True
        if result.outcome is not Outcome.CANCELLED:
            submitted = await self._submit_downstream(task, task_dir / "new_task.json")
        await self._commit(task, result.exit_status, _result_msg(result.outcome, submitted), op)
        return None

    async def _fail_early(
        self, task: WorkerTaskResp, msg: TaskResultMessage, state: TaskExecState | None, ttl: int | None
    ) -> None:
        """End a task that never ran: Cancel, Commit with exit status 0, announce."""
        log.info("task %s not run: %s", task.uuid, msg.value)
        if self._feeder is None:
            await self._report(task.id, "Cancel")
        await self._commit(task, 0, msg, "Cancel", then=None if state is None else (state, ttl))

    # ------------------------------------------------------------------------------- reporting

    async def _report(self, task_id: int, op: ReportTaskOp) -> ReportTaskResp | None:
        """Finish / Cancel / Commit: retried until accepted; 404 means the task moved on (ignored)."""
        try:
            return await retrying(
                lambda: self.api.report(task_id, op),
                what=f"report for task {task_id}",
                cap=self._polling,
                give_up=self._give_up,
            )
        except StatusError as exc:
            if exc.status != 404:
                log.error("report for task %d refused: %s", task_id, exc)
            return None
        except TransientError as exc:
            log.error("report for task %d abandoned while stopping: %s", task_id, exc)
            return None

    async def _commit(
        self,
        task: WorkerTaskResp,
        exit_status: int,
        msg: TaskResultMessage | None,
        op: str,
        *,
        then: tuple[TaskExecState, int | None] | None = None,
    ) -> None:
        """Commit the result (after ``op``, Finish or Cancel, if not reported yet), then announce
        ``then`` and TaskCommitted: at once with the per-task protocol, after the batch that
        carried the result otherwise."""
        result = TaskResultSpec(exit_status=exit_status, msg=msg)

        async def committed() -> None:
            if then is not None:
                await self._announce(task.uuid, *then)
            await self._announce(task.uuid, _X.TaskCommitted, 60)

        if self._feeder is not None:
            self._feeder.complete(task.id, op, result, committed)
            return
        await self._report(task.id, CommitOp(Commit=result))
        await committed()

    async def _pack_and_upload(self, task: WorkerTaskResp, task_dir: Path, terminal_output: bool) -> bool:
        """Pack and upload every archive; False when one could not be packed or uploaded."""
        try:
            for src, content_type in (
                (task_dir / "result", ArtifactContentType.result),
                (task_dir / "exec", ArtifactContentType.exec_log),
            ):
                archive = task_dir / content_type.file_name
                packed = await asyncio.to_thread(pack_dir, src, content_type.value, archive)
                if packed and not await self._upload(task, archive, content_type):
                    return False
            if terminal_output:
                archive = task_dir / ArtifactContentType.std_log.file_name
                await asyncio.to_thread(
                    pack_std_log, task_dir / "stdout.log", task_dir / "stderr.log", archive
                )
                return await self._upload(task, archive, ArtifactContentType.std_log)
        except OSError as exc:
            # Disk full (ENOSPC), file size limit (EFBIG), unreadable output: the task still ends.
            log.error("task %s: packing its output failed, results not uploaded: %s", task.uuid, exc)
            return False
        return True

    async def _upload(self, task: WorkerTaskResp, archive: Path, content_type: ArtifactContentType) -> bool:
        """Upload one archive; False means skip the remaining ones (refused or task gone)."""
        size = archive.stat().st_size
        op = UploadOp(Upload=UploadOpBody(content_type=content_type, content_length=size))
        try:
            resp = await retrying(
                lambda: self.api.report(task.id, op),
                what=f"upload request for {archive.name}",
                cap=self._polling,
                give_up=self._give_up,
            )
            if not resp.url:
                raise ProtocolError("the coordinator answered an Upload report without a url")
            url = resp.url
            await retrying(
                lambda: self.api.put_file(url, archive, timeout=UPLOAD_PHASE_SECONDS),
                what=f"upload of {archive.name}",
                cap=self._polling,
                give_up=self._give_up,
            )
        except (StatusError, ProtocolError, TransientError) as exc:
            log.error(
                "task %s: %s not uploaded, skipping the remaining artifacts: %s", task.uuid, archive.name, exc
            )
            return False
        log.info("task %s: uploaded %s (%d bytes)", task.uuid, archive.name, size)
        return True

    async def _submit_downstream(self, task: WorkerTaskResp, path: Path) -> bool:
        """Submit the task written to ``MITO_NEW_TASK`` (§6.10); False only when that failed."""
        if not path.exists():
            return True
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("task %s: cannot read %s: %s", task.uuid, path, exc)
            path.unlink(missing_ok=True)
            return False
        if not text.strip():
            path.unlink(missing_ok=True)
            return True
        try:
            req = SubmitTaskReq.model_validate_json(text)
        except ValidationError as exc:
            log.warning("task %s: %s is not a valid task: %s", task.uuid, path.name, exc)
            path.unlink(missing_ok=True)
            return False
        try:
            await retrying(
                lambda: self.api.report(task.id, SubmitOp(Submit=req)),
                what="downstream submission",
                cap=self._polling,
                give_up=self._give_up,
                deadline=time.monotonic() + SUBMIT_RETRY_SECONDS,
            )
        except StatusError as exc:
            if exc.status != 404:  # 0.6.8 counts a 404 (task moved on) as done
                log.warning("task %s: downstream submission refused: %s", task.uuid, exc)
                return False
        except (TransientError, ProtocolError) as exc:
            log.warning("task %s: downstream submission failed: %s", task.uuid, exc)
            return False
        path.unlink(missing_ok=True)
        return True

    async def _watch_signals(self, task_id: int, cancel: asyncio.Event) -> None:
        """Long-poll ``GET /workers/signals`` while the task is ours; set ``cancel`` when asked.

        The first poll waits :data:`SIGNALS_DELAY`: most short tasks are over by then, and each poll
        they never needed cost the coordinator a held request and the worker a dropped connection.
        A cancel requested meanwhile is answered by the first poll at once, well within S5's second.
        """
        backoff = Backoff(self._polling)
        while not cancel.is_set():
            started = time.monotonic()
            try:
                resp = await self.api.signals(SIGNALS_WAIT, task_id)
            except ForcedExit as exc:
                log.warning("the coordinator forced this worker to exit (%s)", exc)
                self.forced_exit = True
                self.request_stop()
                return
            except (TransientError, ProtocolError) as exc:
                log.debug("signals: %s", exc)
                await backoff.sleep()
                continue
            except StatusError as exc:
                log.warning("signals refused (%s): running tasks cannot be cancelled", exc)
                return
            if resp is None:
                log.info("the coordinator has no /workers/signals: running tasks cannot be cancelled")
                return
            backoff = Backoff(self._polling)
            if task_id in resp.cancel:
                log.info("task %d cancelled by its user", task_id)
                cancel.set()
                return
            if time.monotonic() - started < 0.5:
                await asyncio.sleep(1.0)  # the coordinator did not hold the request: do not spin


def _result_msg(outcome: Outcome, submitted: bool) -> TaskResultMessage | None:
    if outcome is Outcome.CANCELLED:
        return TaskResultMessage.UserCancellation
    if outcome is Outcome.TIMEOUT:
        return TaskResultMessage.ExecTimeout
    return None if submitted else TaskResultMessage.SubmitNewTaskFailed


async def _connect_redis(url: str) -> Redis | None:
    """A Redis client for announcements and watch; kept even when Redis does not answer yet."""
    try:
        redis: Redis = Redis.from_url(redis_url_for_client(url))
    except Exception as exc:  # a URL redis-py cannot use: nothing to retry
        log.warning("cannot use the redis url the coordinator gave (%s); continuing without redis", exc)
        return None
    try:
        await redis.ping()
    except Exception as exc:  # Redis is optional: the client reconnects when it is back
        log.warning("redis does not answer (%s); tasks run as usual, announcements resume when it does", exc)
    return redis


def run_worker(settings: WorkerSettings) -> int:
    """Entry point of ``mito worker``: run in a fresh standard asyncio loop (never uvloop)."""

    async def main() -> int:
        install_child_watcher()
        worker = Worker(settings, interactive=True)
        worker.install_signal_handlers()
        return await worker.run()

    return asyncio.run(main())
