"""`LoopThread`: an asyncio event loop running in a daemon thread of its own.

``with ActorSystem()`` and ``system.blocking`` (`actors.api._blocking`) run the client's
calls on one; every stop of the system ends it (`SystemRuntime._end_loop_thread`). It
lives in core, beside the loop bridge, so that the runtime can stop the loop without
importing the blocking API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from loguru import logger

from actors.core._bridge import SWEEP_INTERVAL
from actors.core._errors import ActorSystemError, CallTimeout

__all__ = ["LoopThread", "end_tasks"]

R = TypeVar("R")


class LoopThread:
    """An event loop running in a daemon thread of its own, owned by one system."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix=f"{name}-exec")
        self.loop.set_default_executor(self._executor)
        self._stage = "running its loop"
        """What the thread is doing: a stop that gives up on it says so."""
        self._calls: set[concurrent.futures.Future[Any]] = set()
        """The futures of the calls waiting for the loop (`call`)."""
        self._abandoned: str | None = None
        """Set (to what the thread was doing) once a stop gave up on the thread: the
        calls still waiting for the loop are cancelled then, and later ones refused."""
        self._ending = False
        """Set once the loop stopped running for good (the thread cancels its tasks and
        closes the loop): later calls are refused (`call`), under ``_lock``."""
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with self._lock:
                self._ending = True  # no call is sent from now on
            try:
                end_tasks(loop, self._set_stage)
            finally:
                self._stage = (
                    "waiting for the functions still running in its default executor "
                    "(run_in_executor) to return"
                )
                self._executor.shutdown(wait=True, cancel_futures=True)
                asyncio.set_event_loop(None)
                loop.close()

    def _set_stage(self, stage: str) -> None:
        self._stage = stage

    def call(
        self,
        coro: Coroutine[Any, Any, R],
        bound: float | None,
        what: str,
        bound_name: str = "",
        *,
        extend: Callable[[], tuple[float, str]] | None = None,
    ) -> R:
        """Run ``coro`` on the loop and wait for its outcome: at most ``bound`` seconds
        (None: until it ends, or the loop thread ends). ``bound_name`` says what
        ``bound`` is made of (the settings and arguments): the `CallTimeout` says it.
        ``extend``, asked once ``bound`` has passed, gives the seconds more to wait (0:
        none) and what they are: for a call whose bound grows with what it has begun.

        Past its bound the call is cancelled on the loop and raises `CallTimeout`; an
        answer that lands before that cancel is returned instead. What the call had
        already sent (a request to the actor system) is not withdrawn: a `CallTimeout`
        says the answer did not come, not that nothing happened."""
        with self._lock:
            try:
                if self._ending:  # (its task would be made after the last cancel)
                    raise RuntimeError
                future = asyncio.run_coroutine_threadsafe(coro, self.loop)
            except RuntimeError:  # the loop is closed, or closing
                coro.close()
                msg = f"{what}: the actor system's loop thread has stopped"
                raise ActorSystemError(msg) from None
        calls = self._calls
        calls.add(future)
        try:
            if self._abandoned is not None:  # (after `add`: `stop` cancels it, or this does)
                future.cancel()
            return self._wait(future, bound, what, bound_name, extend)
        except concurrent.futures.CancelledError:
            abandoned = self._abandoned
            if abandoned is None:
                raise ActorSystemError(f"{what} was cancelled: the actor system stopped") from None
            raise ActorSystemError(
                f"{what} was cancelled: the actor system stopped and abandoned its loop "
                f"thread, which was still {abandoned}"
            ) from None
        finally:
            calls.discard(future)

    def _wait(
        self,
        future: concurrent.futures.Future[R],
        bound: float | None,
        what: str,
        bound_name: str,
        extend: Callable[[], tuple[float, str]] | None,
    ) -> R:
        """`call`'s wait for ``future``."""
        if bound is None:
            while not _answered(future, SWEEP_INTERVAL):  # until the loop thread ends
                # (answered just before the thread ended: the answer, below)
                if not self.thread.is_alive() and not future.done():
                    raise ActorSystemError(
                        f"{what}: the actor system's loop thread has stopped"
                    ) from None
            return future.result()
        if _answered(future, bound):
            return future.result()
        more, more_name = (0.0, "") if extend is None else extend()
        if more > 0:
            bound += more
            bound_name = f"{bound_name} + {more_name}" if bound_name else more_name
            if _answered(future, more):
                return future.result()
        if not future.cancel():
            # Answered between the last wait and the cancel: that is the call's
            # outcome (its effect happened), not a timeout. (Setting it, the loop
            # thread is between `set_running_or_notify_cancel` and `set_result`.)
            _answered(future, SWEEP_INTERVAL)
            return future.result()
        named = f" ({bound_name})" if bound_name else ""
        # The bound is a sum of settings and arguments: to the millisecond ("0.3s", not
        # the float sum's "0.30000000000000004s").
        raise CallTimeout(
            f"no answer to {what} within {round(bound, 3)}s{named}; "
            "the actor system is overloaded or stuck"
        )

    def stop(self, timeout: float) -> bool:
        """Stop the loop (its remaining tasks are cancelled) and wait at most ``timeout``
        seconds for the thread to end (never from the loop thread itself): the time left
        of the system's stop deadline. True if it ended; if not, it is abandoned (a
        daemon thread) and a warning says what it was still doing. From the loop thread
        itself nothing is done (False)."""
        if threading.current_thread() is self.thread:
            return False
        if not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive():
            return True
        # Nothing will answer the calls still waiting for the loop (a blocking caller
        # without a bound on another thread would wait as long as the thread is stuck).
        self._abandoned = self._stage
        for future in list(self._calls):
            future.cancel()
        logger.bind(system="actorflow").warning(
            "the loop thread {!r} did not end within {:.3f}s (the time left of the stop's "
            "deadline); abandoned while {}",
            self.thread.name,
            timeout,
            self._stage,
        )
        return False


def end_tasks(
    loop: asyncio.AbstractEventLoop,
    stage: Callable[[str], object] = repr,
    *,
    default_executor: bool = False,
) -> None:
    """On ``loop``'s thread, once its ``run_forever`` returned for good: run the loop
    until no task is left, each cancelled (their cleanups run: a ``finally`` that awaits
    too), then close its async generators, as `asyncio.run` does before it closes its
    loop. Closed with a task still pending, a loop leaves that task's cleanup unrun and
    asyncio logs "Task was destroyed but it is pending!" when it is collected.
    ``stage`` is told what it waits for (a stop that gives up on the thread says it).
    ``default_executor``: then wait for the functions running in the loop's default
    executor (`loop.shutdown_default_executor`)."""
    # A call sent as the loop stopped (after its last iteration began) waits in the
    # loop's ready queue, its task not made yet: one more round makes it (and answers
    # it, if it ends at once), so the cancel below sees it. Else it ran only in a later
    # `run_until_complete`, or never, and its caller waited out its whole bound.
    _run_to_end(loop, asyncio.sleep(0))
    # Until none is left: a call sent just before (its task is made as the loop runs
    # again) would be left pending, unanswered, as the loop closes. A task cancelled
    # already (the system's stop cancelled its attempt) is in its cleanup: cancelled
    # again, a cleanup that awaits (closing a connection) would be cut short, so it
    # gets `CLEANUP_GRACE` seconds first.
    spared: set[asyncio.Future[Any]] = set()
    while tasks := asyncio.all_tasks(loop):
        waiting = False
        for task in tasks:
            if task not in spared and _cancelling(task):
                spared.add(task)
                waiting = True
            else:
                task.cancel()
        stage(
            f"waiting for its {len(tasks)} cancelled task(s) to end "
            "(a coroutine that ignores its cancellation, or blocks the loop)"
        )
        _run_to_end(loop, asyncio.wait(tasks, timeout=CLEANUP_GRACE if waiting else None))
    stage("closing its async generators")
    _run_to_end(loop, loop.shutdown_asyncgens())
    if default_executor:
        stage("waiting for the functions still running in its default executor")
        _run_to_end(loop, loop.shutdown_default_executor())


def _cancelling(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` was cancelled and has not ended (a task factory's own kind of
    task may not say: then it is not)."""
    cancelling = getattr(task, "cancelling", None)
    return cancelling is not None and cancelling() > 0


CLEANUP_GRACE = 1.0
"""Seconds a task cancelled before its loop stopped has to end (its cleanup) before
`end_tasks` cancels it again."""


def _run_to_end(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[Any]) -> None:
    """``loop.run_until_complete(awaitable)`` for the loop thread's cleanup, which a
    stop requested meanwhile does not cut short: a second `LoopThread.stop` (one that
    gave up on the thread, then another: ``shutdown()`` of a stopped system) lands its
    ``loop.stop`` here, and ``run_until_complete`` then raised "Event loop stopped
    before Future completed." in the thread, which closed the loop with its cancelled
    tasks still pending. The loop runs again until ``awaitable`` is done."""
    future = asyncio.ensure_future(awaitable, loop=loop)
    future.add_done_callback(lambda _: loop.stop())
    while not future.done():
        loop.run_forever()  # (returns early on a stray stop: run again)
    future.result()


def _answered(future: concurrent.futures.Future[Any], seconds: float) -> bool:
    """Whether ``future`` is done within ``seconds``. Not `Future.result`'s timeout: the
    call's own `TimeoutError` (a `WaitTimeoutError`, a task's `TaskTimeoutError`) is
    its answer, not a call that got none; `Future.exception` returns that one. Nor
    `concurrent.futures.wait`: a `Future.cancel` from another thread (`LoopThread.stop`
    giving up on the thread) does not wake it, only the loop's answer does."""
    try:
        future.exception(seconds)
    except TimeoutError:  # (concurrent.futures.TimeoutError is TimeoutError)
        return False
    except concurrent.futures.CancelledError:
        pass
    return True
