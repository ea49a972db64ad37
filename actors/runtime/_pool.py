"""The thread-pool actor: plain functions run on its executors, never in an actor.

Three executors, picked per task (``executor=``, default ``THREAD_POOL_BACKEND``):
``thread`` (`WorkerThreads`, daemon threads), ``process`` (spawned worker processes) and
``dask`` (a Dask client); see `actors.runtime._backends`. The last two are created on first
use. They live in the child's state object, so a crash of the actor loses no running
function: each reports its outcome straight to the manager's stable handle.

A worker process that dies breaks its `ProcessPoolExecutor`: every call on it fails
(`ActorSystemError`, retried while the task has retries), and the actor crashes itself
(`PoolBroken`) so that its next incarnation, started by the supervisor, replaces the
broken pool.

An attempt handed to the pool is not running yet: it may wait for a worker. The pool
tells the manager (`FunctionStarted`, through the manager's stable handle) when the
function starts on a worker thread, or, for ``process`` and ``dask``, when it hands the
call to that executor (whose own queue it cannot see into); the task is ``running``, and
its timeout counts, from then on.

A call nobody waits for any more is dropped while it waits for a worker: a
``thread_pool.submit`` whose caller stopped waiting (its reply is done: the worker
thread skips it; on ``process``/``dask`` the caller withdraws its `WithdrawableReply`,
linked to the call), an attempt cancelled or timed out (`Execution.remote`). A running
call cannot be stopped: its outcome is dropped.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from loguru import logger

from actors.core import (
    ActorSystemError,
    InvalidTaskError,
    TaskFailedError,
    WithdrawableReply,
    safe_repr,
    tell_quietly,
)
from actors.engine import ON_A_LOOP, async_kind
from actors.observe import end_span, start_span
from actors.runtime._attempt import Execution
from actors.runtime._backends import (
    DaskBackend,
    RemoteCall,
    WorkerThreads,
    close_process_pool,
    default_dask_workers,
    new_process_pool,
)
from actors.runtime._execution import complete, run_function
from actors.runtime._shared import SystemChild
from actors.runtime.messages import (
    Args,
    FunctionStarted,
    Kwargs,
    PoolBroken,
    Report,
    RunFunction,
    Submit,
)

if TYPE_CHECKING:
    from actors.core import Call, Reply, ReplyTo
    from actors.runtime._shared import SystemContext

__all__ = ["PoolState", "ThreadPoolActor"]


class PoolState:
    """The executors, kept across incarnations of the actor."""

    def __init__(self) -> None:
        self.executor: WorkerThreads | None = None
        self.process: ProcessPoolExecutor | None = None
        self.dask: DaskBackend | None = None
        self.retired: list[DaskBackend] = []
        """Dask backends replaced after their client lost its scheduler: closed at stop."""
        self.broken = False
        """The process pool broke: the next incarnation replaces it."""
        self.closing_workers = threading.Event()
        """Set when a stop begins to close worker processes (``process``, ``dask``),
        which may take past the system's stop deadline (`CLOSE_SECONDS`)."""
        self.stopped = threading.Event()
        """Set when a stop is over: the executors are closed."""


def _run_direct(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], reply: Reply | Call[Any]
) -> None:
    """On a worker thread: a ``thread_pool.submit`` call, unless its caller stopped
    waiting (cancelled, or its ``wait_for`` timed out) while it was queued."""
    if reply.done():
        return
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        _answer(reply, None, exc)
    else:
        kind = type(value)
        if kind is _COROUTINE or kind is _ASYNC_GENERATOR:
            _answer(reply, None, _not_plain(fn, value))
        else:
            reply.set_result(value)


_COROUTINE = types.CoroutineType
_ASYNC_GENERATOR = types.AsyncGeneratorType


def _not_plain(fn: Callable[..., Any], value: Any) -> InvalidTaskError:
    """A ``thread_pool.submit`` of ``fn`` gave a coroutine (or an async generator),
    which nothing here would ever run: closed, and the caller told so."""
    if type(value) is _COROUTINE:
        value.close()  # (else "coroutine ... was never awaited")
    kind = async_kind(fn)
    what = f"is {kind}" if kind is not None else f"returned {safe_repr(value)}"
    return InvalidTaskError(
        f"thread_pool.submit runs plain functions; {safe_repr(fn)} {what}, {ON_A_LOOP}"
    )


def _started(execution: Execution, report: Callable[[Any], None]) -> bool:
    """Tell the manager the attempt starts now; False if it was cancelled meanwhile."""
    if execution.cancelled:
        return False
    clock = execution.clock
    at = time.monotonic() if clock is None else clock.monotonic()
    try:
        report(FunctionStarted(execution.task_id, execution.attempt, at))
    except Exception as exc:
        logger.bind(task_id=execution.task_id).debug("start of task not delivered: {!r}", exc)
    return True


def _run_started(
    execution: Execution,
    func: Callable[..., Any],
    args: Args,
    kwargs: Kwargs,
    report: Report,
    busy: Callable[[], int],
) -> None:
    """On a worker thread: report the start, then run the attempt (``busy``: the
    executor's `WorkerThreads.qsize`, see `complete`)."""
    if _started(execution, report):
        run_function(execution, func, args, kwargs, report, busy)
    # A failed task's error keeps this frame (through `run_function`'s): hold nothing of
    # the attempt in it once it returns.
    del execution, func, args, kwargs, report, busy


class ThreadPoolActor(SystemChild[PoolState]):
    CHILD_ID = "thread_pool"

    def __init__(self, ctx: SystemContext, state: PoolState) -> None:
        super().__init__(ctx, state)
        self.default = ctx.config.THREAD_POOL_BACKEND

    def on_start(self) -> None:
        state = self.state
        if state.executor is None:
            state.executor = WorkerThreads(self.ctx.config.MAX_THREAD_WORKERS, "actorflow-pool")
        if state.broken:
            broken, state.process, state.broken = state.process, None, False
            if broken is not None:
                # Its manager thread has already terminated the workers.
                broken.shutdown(wait=False, cancel_futures=True)

    def on_receive(self, message: Any) -> Any:
        executor = self.state.executor
        assert executor is not None
        kind = type(message)
        try:
            if kind is RunFunction:
                if (message.executor or self.default) == "thread":
                    execution = message.execution
                    executor.submit(
                        _run_started,
                        execution,
                        message.func,
                        message.args,
                        message.kwargs,
                        message.report,
                        executor.qsize,
                        on_abandon=execution.set_cancelled,
                    )
                else:
                    self._run_remote(message)
            elif kind is Submit:
                backend = message.executor or self.default
                if backend == "thread":
                    executor.submit(
                        _run_direct, message.fn, message.args, message.kwargs, message.reply
                    )
                else:
                    reply = message.reply
                    call = RemoteCall(
                        backend,
                        None,
                        message.fn,
                        message.args,
                        message.kwargs,
                        lambda value, error: _answer(reply, value, error),
                        f"thread_pool.submit({getattr(message.fn, '__name__', message.fn)!r})",
                    )
                    if isinstance(reply, WithdrawableReply):
                        reply.link(call)  # a caller that stops waiting drops the call
                    self._submit(message, call)
            elif kind is PoolBroken and message.pool is self.state.process:
                self.state.broken = True
                raise ActorSystemError(
                    "a worker process of the process pool died; thread_pool restarts to "
                    "replace the pool"
                )
        except BaseException as exc:
            if not self.state.broken:  # (a broken pool's restart re-took its message)
                self._crashed(message, exc)
            raise
        return None

    def _crashed(self, message: Any, exc: BaseException) -> None:
        """Handling ``message`` crashes this actor: the message is dropped, not re-run,
        so its attempt fails (through the manager, as any attempt's error: retried while
        it has retries) and a ``submit`` caller hears why -- else the task stayed
        ``running`` and the caller, tracked with no bound, waited for ever."""
        kind = type(message)
        error = ActorSystemError(
            f"the {self.CHILD_ID} crashed handling its {kind.__name__} ({exc!r}); the "
            "message was dropped, not retried"
        )
        if kind is RunFunction:
            execution = message.execution
            execution.set_cancelled()  # if it was queued all the same, it never runs
            complete(execution, message.report, None, error)
        elif kind is Submit:
            _answer(message.reply, None, error)

    def _run_remote(self, message: RunFunction) -> None:
        """One attempt in a worker process (``process`` or ``dask``)."""
        execution = message.execution
        report = message.report
        if not _started(execution, report):
            return
        task_id = execution.task_id
        if execution.trace is not None:
            start_span(execution)

        def finish(value: Any, error: BaseException | None) -> None:
            if execution.trace is not None:
                end_span(execution, error)
            complete(execution, report, value, error)

        call = RemoteCall(
            message.executor or self.default,
            task_id,
            message.func,
            message.args,
            message.kwargs,
            finish,
            f"task {task_id!r}",
        )
        # A queued call is dropped if the attempt is cancelled or times out first.
        execution.remote = call
        if execution.cancelled:  # set meanwhile by the manager's thread?
            call.cancel()
        self._submit(message, call)

    def _submit(self, message: Any, call: RemoteCall) -> None:
        """Start ``call`` on its executor."""
        state = self.state
        if call.executor == "dask":
            dask = state.dask
            if dask is None or dask.failed or dask.lost:
                if dask is not None and dask.lost:
                    state.retired.append(dask)
                config = self.ctx.config
                dask = state.dask = DaskBackend(
                    config.DASK_SCHEDULER_ADDRESS,
                    default_dask_workers(config.MAX_THREAD_WORKERS),
                    config.CALL_TIMEOUT,
                )
            try:
                dask.submit(call)
            except Exception as exc:
                call.fail(ActorSystemError(f"{call.what}: the 'dask' executor failed: {exc!r}"))
            return
        pool = state.process
        if pool is None:
            pool = state.process = new_process_pool(self.ctx.config.MAX_THREAD_WORKERS)
        handle = self.ctx.handle(self.CHILD_ID)
        call.on_broken = lambda: tell_quietly(handle, PoolBroken(pool))
        try:
            call.submit(pool)
        except BrokenProcessPool:
            # Broken before we heard of it: the next incarnation takes the message again
            # (the supervisor hands a crashed actor's inbox to it) and a new pool.
            handle.tell(message)
            state.broken = True
            raise ActorSystemError(
                "the process pool is broken (a worker process died); thread_pool restarts "
                "to replace it"
            ) from None
        except RuntimeError as exc:  # shut down
            call.fail(ActorSystemError(f"{call.what}: the process pool is closed ({exc})"))

    def on_stop(self) -> None:
        state = self.state
        try:
            self._close(state)
        finally:
            state.stopped.set()

    def _close(self, state: PoolState) -> None:
        # The system's stop deadline, shared with every other stage of the stop; a pool
        # stopped on its own (terminate_child) has SHUTDOWN_TIMEOUT from now.
        deadline = self.ctx.stop.at
        if deadline is None:
            deadline = time.monotonic() + self.ctx.config.SHUTDOWN_TIMEOUT
        process, dask = state.process, state.dask
        state.process = state.dask = None
        retired, state.retired = state.retired, []
        if process is not None or dask is not None:
            state.closing_workers.set()
        if process is not None:
            close_process_pool(process, max(0.0, deadline - time.monotonic()))
        for backend in retired:
            backend.close(0.0)  # (its client closed itself: nothing runs there)
        if dask is not None:
            dask.close(max(0.0, deadline - time.monotonic()))
        executor = state.executor
        if executor is None:
            return
        state.executor = None
        # Running attempts see their cancellation token set; the calls still queued
        # never run: their callers hear so now (else nothing ends their waits).
        never_ran = executor.shutdown()
        if never_ran:
            why = (
                "the actor system shut down"
                if self.ctx.stop.at is not None
                else "the thread pool was stopped"
            )
            for fn, args, _ in never_ran:
                _never_ran(fn, args, why)
        for thread in executor.threads:
            if thread is not self.ctx.stop.by:  # (a worker running the stop: not itself)
                thread.join(max(0.0, deadline - time.monotonic()))


def _never_ran(fn: Callable[..., object], args: tuple[Any, ...], why: str) -> None:
    """A call the pool dropped from its queue when it stopped (``why``): a
    ``thread_pool.submit`` fails its caller, a task's attempt fails (through the
    manager, as any attempt's error: retried while it has retries; nothing is told if
    the manager already decided the attempt, cancelled at the system's shutdown)."""
    if fn is _run_direct:
        func, reply = args[0], args[3]
        name = getattr(func, "__name__", func)
        _answer(
            reply,
            None,
            ActorSystemError(
                f"thread_pool.submit({name!r}) did not run: {why} before a worker took it"
            ),
        )
    elif fn is _run_started:
        execution, report = args[0], args[4]
        execution.set_cancelled()
        error = ActorSystemError(
            f"task {execution.task_id!r} did not run: {why} before a worker took its attempt"
        )
        complete(execution, report, None, error)


def _answer(reply: ReplyTo, value: Any, error: BaseException | None) -> None:
    """Answer a ``thread_pool.submit`` call. A `BaseException` that is not an `Exception`
    (``sys.exit()`` in ``fn``, ``KeyboardInterrupt``) is wrapped in a `TaskFailedError`,
    as for a task: set bare on the caller's future it would stop the caller's loop."""
    if error is None:
        reply.set_result(value)
    elif isinstance(error, Exception):
        reply.set_exception(error)
    else:
        wrapped = TaskFailedError(
            f"thread_pool.submit: the function raised {safe_repr(error)}, which is not an "
            "Exception: the call failed (the program goes on)"
        )
        wrapped.__cause__ = error
        reply.set_exception(wrapped)
