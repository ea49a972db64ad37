"""The blocking API: the client's methods as plain calls, for synchronous code.

``with ActorSystem(config) as system:`` starts the system and an event loop in a thread
the system owns (`actors.core.LoopThread`); ``system.blocking`` (a `BlockingTaskManager`) runs each
client call on that loop and waits for its answer, from any thread that runs no event
loop of its own. So coroutine tasks registered from synchronous code run on that loop.

Called from a thread that runs an event loop (the system's own loop, a task's coroutine,
an async web handler) a blocking call would block that loop, and deadlock if it is the
loop that must answer: it raises `BlockingCallError` instead, before anything is sent.

Bounds: a call is bounded by ``CALL_TIMEOUT`` per message it makes (the async call
fails itself at that bound; the blocking side waits a sweep longer, then gives up with
`CallTimeout`). A call that waits for a task (``submit``, ``execute_task(wait=True)``,
``wait_for_task``, ``thread_pool.submit``) is bounded by its own ``timeout`` when it has
one, and otherwise ends when the task ends or the system stops (every stop ends it,
with an error saying why: also one that abandons a stuck loop thread, `LoopThread.stop`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from actors.api._client import UnifiedTaskManager
from actors.core import (
    MAX_SECONDS,
    SWEEP_INTERVAL,
    ActorSystemError,
    BlockingCallError,
    CallTimeout,
    ClosedOnExit,
    InvalidTaskError,
    too_long,
)
from actors.engine import validate_timeout

if TYPE_CHECKING:
    from actors.core import Config, LoopThread
    from actors.observe import Event, EventStream

__all__ = ["BlockingEventStream", "BlockingTaskManager", "refuse_in_loop"]

P = ParamSpec("P")
R = TypeVar("R")

SWEEP_MARGIN = SWEEP_INTERVAL + 1.0
"""Seconds a blocking call waits past the bound of the async call it runs: that call
fails itself at its bound, within one sweep."""


def _blocking_timeout(timeout: object, instead: str) -> float | None:
    """`validate_timeout` of a blocking call's ``timeout``, at most `MAX_SECONDS`: the
    call waits for it (and a margin more) in a `threading` wait, which overflows past
    ``threading.TIMEOUT_MAX``. ``instead``: what to do for a longer one."""
    bound = validate_timeout(timeout)
    if bound is not None and bound > MAX_SECONDS:
        raise InvalidTaskError(f"{too_long('timeout', timeout, 'for a blocking call')}; {instead}")
    return bound


class BlockingHost(Protocol):
    """What `BlockingTaskManager` needs of its system (`ActorSystem` has it; typed so,
    the system and its blocking client do not import each other)."""

    @property
    def config(self) -> Config: ...

    @property
    def task_manager(self) -> UnifiedTaskManager: ...

    def _check(self) -> object: ...

    def _loop_thread_for_blocking(self) -> LoopThread: ...

    def _stop_blocking(self) -> None: ...


def refuse_in_loop(what: str) -> None:
    """`BlockingCallError` if the calling thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise BlockingCallError(
        f"{what} was called from a thread that runs an event loop: it would block that "
        "loop (and deadlock if it is the actor system's own); in a coroutine use the "
        "async client, `await system.task_manager.<method>(...)`"
    )


def _blocking(
    method: Callable[Concatenate[UnifiedTaskManager, P], Coroutine[Any, Any, R]],
    calls: int | None = 1,
) -> Callable[Concatenate[BlockingTaskManager, P], R]:
    """The blocking form of a client method that makes ``calls`` calls into the system,
    or (``calls=None``) that waits for tasks: bounded only by the tasks' own ends and
    the system's stop."""
    name = method.__name__

    @functools.wraps(method)
    def call(self: BlockingTaskManager, /, *args: P.args, **kwargs: P.kwargs) -> R:
        what = f"system.blocking.{name}()"
        refuse_in_loop(what)
        runner = self._runner()
        if calls is None:
            return runner.call(method(self._client, *args, **kwargs), None, what)
        bound, named = self._call_bound(calls)
        return runner.call(method(self._client, *args, **kwargs), bound, what, named)

    return call


def _waiting(
    method: Callable[Concatenate[UnifiedTaskManager, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[BlockingTaskManager, P], R]:
    """The blocking form of a client method that waits for tasks (``_blocking`` with
    ``calls=None``), with ``method``'s signature, overloads included: mypy carries an
    overloaded argument's overloads through ``P`` only in a call with that one argument."""
    return _blocking(method, calls=None)


class BlockingTaskManager:
    """``system.blocking``: every method of `UnifiedTaskManager` as a plain call that
    returns its value (or raises its error), from any thread that runs no event loop.
    See the module docstring for the bounds."""

    def __init__(self, system: BlockingHost) -> None:
        self._system = system
        self._client = system.task_manager
        self.thread_pool = BlockingThreadPool(self)

    def _runner(self) -> LoopThread:
        self._system._check()  # why calls cannot be made (shut down, failed), first
        return self._system._loop_thread_for_blocking()

    def _wait(self, coro: Coroutine[Any, Any, R], bound: float | None, what: str) -> R:
        """Run ``coro`` (it waits for a task) bounded by the call's ``timeout`` (``bound``;
        None: unbounded) and a margin for the answer to come back."""
        runner = self._closing(coro)
        if bound is None:
            return runner.call(coro, None, what)
        call_timeout = self._system.config.CALL_TIMEOUT
        named = f"timeout={bound}s + CALL_TIMEOUT={call_timeout}s + {SWEEP_MARGIN}s"
        return runner.call(coro, bound + call_timeout + SWEEP_MARGIN, what, named)

    def _closing(self, coro: Coroutine[Any, Any, Any]) -> LoopThread:
        """`_runner`, closing ``coro`` when calls cannot be made (it was never awaited:
        left open, it warned 'coroutine ... was never awaited')."""
        try:
            return self._runner()
        except BaseException:
            coro.close()
            raise

    # One line a method: mypy types a method only when the class body assigns it (set
    # in a loop over names it is unknown; a ``__getattr__`` overloaded on each name's
    # Literal is refused), so this table is the list of names.
    register_task = _blocking(UnifiedTaskManager.register_task)
    cancel_task = _blocking(UnifiedTaskManager.cancel_task)
    get_task = _blocking(UnifiedTaskManager.get_task)
    get_task_status = _blocking(UnifiedTaskManager.get_task_status)
    get_task_result = _blocking(UnifiedTaskManager.get_task_result)
    get_task_error = _blocking(UnifiedTaskManager.get_task_error)
    get_all_tasks = _blocking(UnifiedTaskManager.get_all_tasks)
    get_tasks_by_status = _blocking(UnifiedTaskManager.get_tasks_by_status)
    get_tasks_by_type = _blocking(UnifiedTaskManager.get_tasks_by_type)
    get_task_page = _blocking(UnifiedTaskManager.get_task_page, calls=2)
    get_task_detail = _blocking(UnifiedTaskManager.get_task_detail)
    retry_task = _blocking(UnifiedTaskManager.retry_task, calls=3)
    get_metrics = _blocking(UnifiedTaskManager.get_metrics)
    render_prometheus = _blocking(UnifiedTaskManager.render_prometheus)
    get_task_graph = _blocking(UnifiedTaskManager.get_task_graph)
    add_dependency = _blocking(UnifiedTaskManager.add_dependency)
    cleanup_completed_tasks = _blocking(UnifiedTaskManager.cleanup_completed_tasks)
    use_new_task_system = _blocking(UnifiedTaskManager.use_new_task_system)

    def execute_task(self, task_id: str, wait: bool = False) -> Any:
        """`UnifiedTaskManager.execute_task`; with ``wait=True`` it waits for the task."""
        what = "system.blocking.execute_task()"
        refuse_in_loop(what)
        coro = self._client.execute_task(task_id, wait)
        if wait is True:
            return self._wait(coro, None, what)
        runner = self._closing(coro)
        bound, named = self._call_bound()
        return runner.call(coro, bound, what, named)

    def wait_for_task(self, task_id: str, timeout: float | None = None) -> Any:
        """`UnifiedTaskManager.wait_for_task`: bounded by ``timeout`` (None: until the
        task ends or the system stops)."""
        what = "system.blocking.wait_for_task()"
        refuse_in_loop(what)
        bound = _blocking_timeout(  # (before the bound's sum overflows)
            timeout, "await the async call for a longer one, or pass None (no bound)"
        )
        return self._wait(self._client.wait_for_task(task_id, timeout), bound, what)

    submit = _waiting(UnifiedTaskManager.submit)
    map = _waiting(UnifiedTaskManager.map)

    def events(self, task_type: str | None = None) -> BlockingEventStream:
        """`UnifiedTaskManager.events` for blocking code: ``with system.blocking.events()
        as stream: event = stream.get(timeout=1.0)``."""
        what = "system.blocking.events()"
        refuse_in_loop(what)
        runner = self._runner()

        async def make() -> EventStream:
            stream = self._client.events(task_type)
            await stream.subscribe()
            return stream

        bound, named = self._call_bound()
        return BlockingEventStream(runner, runner.call(make(), bound, what, named))

    def shutdown(self) -> None:
        """Stop the actor system (unfinished tasks are cancelled) and its loop thread."""
        what = "system.blocking.shutdown()"
        refuse_in_loop(what)
        self._system._stop_blocking()

    def _call_bound(self, calls: int = 1) -> tuple[float, str]:
        """The bound of a call that makes ``calls`` calls into the system, in seconds,
        and what it is made of (for its `CallTimeout`)."""
        call_timeout = self._system.config.CALL_TIMEOUT
        times = "" if calls == 1 else f"{calls} x "
        named = f"{times}CALL_TIMEOUT={call_timeout}s + {SWEEP_MARGIN}s"
        return calls * call_timeout + SWEEP_MARGIN, named


class BlockingThreadPool:
    """``system.blocking.thread_pool``: `ThreadPoolClient.submit` as a plain call."""

    def __init__(self, blocking: BlockingTaskManager) -> None:
        self._blocking = blocking

    def submit(
        self, fn: Callable[..., R], /, *args: Any, executor: str | None = None, **kwargs: Any
    ) -> R:
        """Run ``fn(*args, **kwargs)`` on the pool's executor; returns its result."""
        what = "system.blocking.thread_pool.submit()"
        refuse_in_loop(what)
        client = self._blocking._client.thread_pool
        coro = client.submit(fn, *args, executor=executor, **kwargs)
        result: R = self._blocking._wait(coro, None, what)
        return result


class BlockingEventStream(ClosedOnExit):
    """Events for a blocking caller: ``stream.get(timeout)`` returns the next one.
    Close it (or leave its ``with``) to unsubscribe."""

    def __init__(self, runner: LoopThread, stream: EventStream) -> None:
        self._runner = runner
        self._stream = stream

    def get(self, timeout: float) -> Event | None:
        """The next event within ``timeout`` seconds (`CallTimeout` if none came; the
        stream stays open), or None once the subscription is closed: at once after
        `close`; after the system's stop, once what it buffered was read."""
        what = "BlockingEventStream.get()"
        refuse_in_loop(what)
        bound = _blocking_timeout(timeout, "call get() again to wait longer")
        if bound is None:
            raise InvalidTaskError(
                "timeout must be a finite number of seconds > 0, got None; "
                "BlockingEventStream.get() always waits a bounded time"
            )
        stream = self._stream

        async def next_event() -> Event | None:
            await stream.subscribe()
            subscriber = stream._subscriber
            if subscriber is None or stream._closed:  # (closed by `close`: at once)
                return None
            try:
                event = await asyncio.wait_for(subscriber.get(), bound)
            except TimeoutError:
                raise CallTimeout(f"no event within {bound}s") from None
            return None if stream._closed else event

        named = f"timeout={bound}s + {SWEEP_MARGIN}s"
        try:
            return self._runner.call(next_event(), bound + SWEEP_MARGIN, what, named)
        except ActorSystemError as exc:
            # A stop closes the subscription (the monitor stops) before it ends the loop
            # thread, whose end cancels a get woken by that close but not yet run again
            # (both in its last iteration): the stream is closed, as for a get run after.
            subscriber = stream._subscriber
            if isinstance(exc, CallTimeout) or subscriber is None or not subscriber.closed:
                raise
            return subscriber.poll()

    @property
    def dropped(self) -> int:
        """Events this subscriber lost because its buffer (``EVENT_BUFFER_SIZE``) was
        full, as `EventStream.dropped` (``metrics.events_dropped`` counts every
        subscriber's)."""
        return self._stream.dropped

    def close(self) -> None:
        """Unsubscribe (nothing left to do once the system stopped: its stop closed the
        subscription)."""
        if not self._runner.loop.is_closed():
            what = "BlockingEventStream.close()"
            try:
                self._runner.call(self._stream.aclose(), SWEEP_MARGIN, what, "a sweep's margin")
            except CallTimeout:
                raise
            except ActorSystemError:  # the loop thread ended (or is ending) with the stop
                pass
