"""Regression tests of issue 17: how an attempt ends, on both task systems.

Items 3 (a timeout is a breaker failure), 5 (a retry wait sees the attempt's outcome),
10 and 14 (a task's BaseException fails that task, never the caller's loop), 11 (what a
plain function returns is awaited when it is awaitable; an async generator function is
refused), 15 (logging survives an exception whose repr raises) and 18a (a task whose
code raises CancelledError ends cancelled, as an asyncio task does).

Time is a `FakeClock`; nothing sleeps; every wait has a bound.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import tenacity
from helpers import WAIT, Boom, make_system
from loguru import logger
from tenacity.wait import wait_base

from actors import (
    ActorSystem,
    BreakerState,
    CircuitBreaker,
    DependencyFailedError,
    InvalidTaskError,
    TaskCancelledError,
    TaskFailedError,
    TaskTimeoutError,
    UnifiedTaskManager,
    configure_logging,
)
from actors.core import CANCELLED, COMPLETED, FAILED, QUEUED
from supervisors.testing import FakeClock

START = 100.0
"""Where the fake clock starts (not 0, so a wrong time source shows)."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def system(backend: str, clock: FakeClock) -> AsyncIterator[ActorSystem]:
    async with make_system(backend, clock) as running:
        yield running


@pytest.fixture
def tm(system: ActorSystem) -> UnifiedTaskManager:
    return system.task_manager


async def timers_armed(clock: FakeClock, count: int = 1) -> None:
    await asyncio.to_thread(clock.wait_for_timers, count, WAIT)


async def restarts(system: ActorSystem) -> dict[str, int]:
    return {child.id: child.restarts for child in await system.supervisor.which_children()}


NO_RESTARTS = {
    "task_monitor": 0,
    "thread_pool": 0,
    "legacy_task_manager": 0,
    "task_manager": 0,
    "facade": 0,
}


def returns(value: Any) -> Callable[[], Awaitable[Any]]:
    async def body() -> Any:
        return value

    return body


async def still_running(tm: UnifiedTaskManager) -> None:
    """The caller's loop and the manager both still work: a new task completes."""
    await tm.register_task("after", returns("still here"), task_id="after")
    assert await tm.execute_task("after", wait=True) == "still here"


# -- item 3: a timed-out attempt is a failure for its circuit breaker ---------------------


@pytest.mark.parametrize("kind", ["coroutine", "thread"])
async def test_timed_out_attempts_open_the_breaker(
    backend: str, clock: FakeClock, kind: str
) -> None:
    release = threading.Event()
    started = [threading.Event() for _ in range(6)]
    calls: list[int] = []

    async def hangs(index: int) -> None:
        calls.append(index)
        started[index].set()
        await asyncio.Event().wait()  # until the timeout cancels it

    def hangs_in_thread(index: int) -> None:
        calls.append(index)
        started[index].set()
        release.wait(WAIT)  # until the test ends

    func = hangs if kind == "coroutine" else hangs_in_thread
    breaker = CircuitBreaker("svc", failure_threshold=3, recovery_timeout=60.0, clock=clock)
    async with make_system(backend, clock, MAX_THREAD_WORKERS=4) as system:
        tm = system.task_manager
        system.circuit_breakers.add(breaker)
        try:
            for index in range(6):
                task_id = f"call{index}"
                await tm.register_task(
                    task_id,
                    func,
                    args=(index,),
                    timeout=0.05,
                    circuit_breaker="svc",
                    task_id=task_id,
                )
                await tm.execute_task(task_id)
                if index < 3:
                    await asyncio.to_thread(started[index].wait, WAIT)
                    await timers_armed(clock)
                    clock.advance(0.05)
                    with pytest.raises(
                        TaskTimeoutError,
                        match=rf"^task '{task_id}' attempt 1 timed out after 0\.05s$",
                    ):
                        await tm.wait_for_task(task_id, timeout=WAIT)
                    continue
                # The open breaker refuses it: it waits for the breaker, no attempt made.
                info = await tm.get_task(task_id)
                assert (info.status, info.attempts) == (QUEUED, 0)
            for index in range(3, 6):
                assert await tm.cancel_task(f"call{index}") is True
                with pytest.raises(TaskCancelledError):
                    await tm.wait_for_task(f"call{index}", timeout=WAIT)
        finally:
            release.set()
    assert calls == [0, 1, 2]
    stats = breaker.stats()
    assert (stats.state, stats.failures, stats.successes, stats.rejected, stats.opened) == (
        BreakerState.OPEN,
        3,
        0,
        3,
        1,
    )


# -- item 5: a retry wait gets a real RetryCallState; a wait that raises fails the task ---


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class RetryAfter(wait_base):
    """Honours the service's Retry-After, the usual way: from the attempt's exception."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        self.seen.append(
            (
                retry_state.attempt_number,
                error,
                outcome.attempt_number if outcome is not None else None,
                retry_state.idle_for,
                retry_state.start_time,
                retry_state.outcome_timestamp,
                retry_state.fn,
            )
        )
        if not isinstance(error, RateLimited):
            raise TypeError(f"expected a RateLimited outcome, got {error!r}")
        return error.retry_after


async def test_a_retry_wait_reads_the_attempts_outcome(
    tm: UnifiedTaskManager, clock: FakeClock
) -> None:
    first, second = RateLimited(7.0), RateLimited(3.0)
    pending = [first, second]

    async def call_api() -> str:
        if pending:
            raise pending.pop(0)
        return "answer"

    wait = RetryAfter()
    await tm.register_task("api", call_api, max_retries=2, retry_wait=wait, task_id="api")
    await tm.execute_task("api")
    await timers_armed(clock)
    assert clock.pending_delays() == [7.0]
    clock.advance(7.0)
    await timers_armed(clock)
    assert clock.pending_delays() == [3.0]
    clock.advance(3.0)
    assert await tm.wait_for_task("api", timeout=WAIT) == "answer"
    assert wait.seen == [
        (1, first, 1, 0.0, START, START, call_api),
        (2, second, 2, 7.0, START, START + 7.0, call_api),
    ]
    info = await tm.get_task("api")
    assert (info.status, info.attempts) == (COMPLETED, 3)


class RaisingWait(wait_base):
    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        raise KeyError("no Retry-After header")


class InfiniteWait(wait_base):
    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return float("inf")


@pytest.mark.parametrize(
    ("wait", "what"),
    [
        (RaisingWait(), "raised KeyError('no Retry-After header')"),
        (InfiniteWait(), "returned inf, not a finite number of seconds"),
    ],
    ids=["raises", "infinite"],
)
async def test_a_retry_wait_that_fails_fails_the_task_not_the_manager(
    system: ActorSystem, wait: wait_base, what: str
) -> None:
    tm = system.task_manager
    calls: list[int] = []

    async def fails() -> None:
        calls.append(1)
        raise Boom("first")

    await tm.register_task("job", fails, max_retries=3, retry_wait=wait, task_id="job")
    await tm.execute_task("job")
    with pytest.raises(TaskFailedError) as raised:
        await tm.wait_for_task("job", timeout=WAIT)
    assert str(raised.value) == (
        f"task 'job': its retry_wait {what} after attempt 1 failed with Boom('first'); "
        "the task is not retried"
    )
    assert isinstance(raised.value.__context__, Boom)
    if isinstance(wait, RaisingWait):
        assert isinstance(raised.value.__cause__, KeyError)
    info = await tm.get_task("job")
    assert (info.status, info.attempts, info.error) == (FAILED, 1, raised.value)
    assert calls == [1]
    await still_running(tm)
    assert await restarts(system) == NO_RESTARTS


# -- items 10 and 14: a task's BaseException fails that task and nothing else -------------


class Custom(BaseException):
    """A BaseException of the user's own."""


def _exit() -> None:
    sys.exit(3)


def _interrupt() -> None:
    raise KeyboardInterrupt


def _generator_exit() -> None:
    raise GeneratorExit


def _custom() -> None:
    raise Custom("mine")


BASE_EXCEPTIONS = [
    (_exit, SystemExit, "SystemExit(3)"),
    (_interrupt, KeyboardInterrupt, "KeyboardInterrupt()"),
    (_generator_exit, GeneratorExit, "GeneratorExit()"),
    (_custom, Custom, "Custom('mine')"),
]


@pytest.mark.parametrize("kind", ["coroutine", "thread"])
@pytest.mark.parametrize(
    ("raise_it", "kind_of_error", "shown"),
    BASE_EXCEPTIONS,
    ids=["sys.exit", "KeyboardInterrupt", "GeneratorExit", "custom"],
)
async def test_a_base_exception_fails_its_task_and_the_loop_goes_on(
    system: ActorSystem,
    kind: str,
    raise_it: Callable[[], None],
    kind_of_error: type[BaseException],
    shown: str,
) -> None:
    tm = system.task_manager
    calls: list[int] = []

    async def coroutine() -> None:
        calls.append(1)
        raise_it()

    def in_thread() -> None:
        calls.append(1)
        raise_it()

    body = coroutine if kind == "coroutine" else in_thread
    await tm.register_task("ends", body, max_retries=2, task_id="ends")
    await tm.execute_task("ends")
    with pytest.raises(TaskFailedError) as raised:
        await tm.wait_for_task("ends", timeout=WAIT)
    assert str(raised.value) == (
        f"task 'ends' raised {shown}, which is not an Exception: the task failed and is not "
        "retried (the program goes on)"
    )
    assert type(raised.value.__cause__) is kind_of_error
    info = await tm.get_task("ends")
    assert (info.status, info.attempts, info.error) == (FAILED, 1, raised.value)
    assert calls == [1]
    with pytest.raises(TaskFailedError) as again:  # without a bound: no inner asyncio task
        await tm.wait_for_task("ends")
    assert again.value is raised.value
    await still_running(tm)
    assert await restarts(system) == NO_RESTARTS


# -- item 11: awaitable results are awaited; async generator functions are refused --------


def hides_async(func: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """A decorator that hides ``async`` (a plain def that returns the coroutine)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("kind", ["lambda", "decorator"])
async def test_a_plain_function_returning_a_coroutine_is_awaited_on_the_owner_loop(
    tm: UnifiedTaskManager, kind: str
) -> None:
    loop = asyncio.get_running_loop()
    ran_on: list[asyncio.AbstractEventLoop] = []

    async def fetch(value: int) -> int:
        ran_on.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return value * 2

    if kind == "lambda":
        task_id = await tm.register_task("fetch", lambda: fetch(7))
    else:
        task_id = await tm.register_task("fetch", hides_async(fetch), args=(7,))
    assert await tm.execute_task(task_id, wait=True) == 14
    assert ran_on == [loop]
    assert await tm.get_task_result(task_id) == 14
    assert (await tm.get_task(task_id)).status is COMPLETED


async def test_the_timeout_covers_the_returned_coroutine(
    tm: UnifiedTaskManager, clock: FakeClock
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hangs() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await tm.register_task("hangs", lambda: hangs(), timeout=2, task_id="hangs")
    await tm.execute_task("hangs")
    await asyncio.wait_for(started.wait(), WAIT)
    await timers_armed(clock)
    clock.advance(2)
    with pytest.raises(TaskTimeoutError, match=r"^task 'hangs' attempt 1 timed out after 2\.0s$"):
        await tm.wait_for_task("hangs", timeout=WAIT)
    await asyncio.wait_for(cancelled.wait(), WAIT)
    assert (await tm.get_task("hangs")).status is FAILED


async def test_an_async_generator_function_is_refused_at_registration(
    tm: UnifiedTaskManager,
) -> None:
    async def pages() -> Any:
        yield 1

    for func in (pages, functools.partial(pages)):
        with pytest.raises(
            InvalidTaskError,
            match=(
                r"^func .+ is an async generator function: calling it gives an async "
                r"generator, not a result; register an async def that iterates it "
                r"\(async for\) and returns what you need$"
            ),
        ):
            await tm.register_task("pages", func)
    assert await tm.get_all_tasks() == []


# -- item 15: logging never crashes a manager ---------------------------------------------


class UglyError(Exception):
    def __repr__(self) -> str:
        raise RuntimeError("repr is broken")


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    lines: list[str] = []
    sink_id = logger.add(
        lambda message: lines.append(message.record["message"]),
        level="DEBUG",
        filter=lambda record: (
            record["extra"].get("task_id") == "ugly" and "task_name" in record["extra"]
        ),
    )
    configure_logging(True)
    try:
        yield lines
    finally:
        logger.remove(sink_id)
        configure_logging(False)


async def test_logging_an_error_whose_repr_raises_answers_the_waiters(
    system: ActorSystem, captured_logs: list[str]
) -> None:
    tm = system.task_manager
    errors = [UglyError("first"), UglyError("second")]

    async def ugly() -> None:
        raise errors.pop(0)

    last = errors[1]
    await tm.register_task("ugly", ugly, max_retries=1, task_id="ugly")
    await tm.execute_task("ugly")
    with pytest.raises(UglyError) as raised:
        await tm.wait_for_task("ugly", timeout=WAIT)
    assert raised.value is last
    assert (await tm.get_task_status("ugly")) is FAILED
    await still_running(tm)
    assert await restarts(system) == NO_RESTARTS
    shown = "<UglyError object; repr() raised RuntimeError>"
    assert captured_logs == [
        "task 'ugly' registered",
        "task 'ugly' started (attempt 1)",
        f"task 'ugly' retrying after attempt 1: {shown}",
        "task 'ugly' started (attempt 2)",
        f"task 'ugly' failed: {shown}",
    ]


# -- item 18a: a task whose code raises CancelledError ends cancelled ---------------------


@pytest.mark.parametrize("kind", ["coroutine", "thread"])
async def test_a_task_raising_cancelled_error_ends_cancelled(
    system: ActorSystem, kind: str
) -> None:
    tm = system.task_manager
    calls: list[int] = []

    async def gives_up() -> None:
        calls.append(1)
        raise asyncio.CancelledError

    def gives_up_in_thread() -> None:
        calls.append(1)
        raise asyncio.CancelledError

    body = gives_up if kind == "coroutine" else gives_up_in_thread
    await tm.register_task("gives_up", body, max_retries=2, task_id="gives_up")
    await tm.register_task("next", returns(1), dependencies=("gives_up",), task_id="next")
    await tm.execute_task("next")
    with pytest.raises(
        TaskCancelledError, match=r"^task 'gives_up' was cancelled outside actorflow$"
    ) as raised:
        await tm.wait_for_task("gives_up", timeout=WAIT)
    assert type(raised.value.__cause__) is asyncio.CancelledError
    info = await tm.get_task("gives_up")
    assert (info.status, info.attempts, info.error) == (CANCELLED, 1, raised.value)
    assert calls == [1]
    with pytest.raises(
        DependencyFailedError,
        match=r"^task 'next' \(next\) cancelled: its dependency 'gives_up' \(gives_up\) cancelled$",
    ):
        await tm.wait_for_task("next", timeout=WAIT)
    assert await tm.get_task_status("next") is CANCELLED
    await still_running(tm)
    assert await restarts(system) == NO_RESTARTS


@pytest.mark.parametrize("exit_with", [SystemExit(3), KeyboardInterrupt()])
async def test_thread_pool_submit_wraps_a_base_exception_and_the_loop_goes_on(
    exit_with: BaseException,
) -> None:
    def leave() -> None:
        raise exit_with

    async with ActorSystem({"CLEANUP_INTERVAL": 0.0}) as running:
        pool = running.task_manager.thread_pool
        with pytest.raises(TaskFailedError) as failed:
            await pool.submit(leave)
        assert str(failed.value) == (
            f"thread_pool.submit: the function raised {exit_with!r}, which is not an "
            "Exception: the call failed (the program goes on)"
        )
        assert failed.value.__cause__ is exit_with
        assert await pool.submit(int, "7") == 7  # the caller's loop and the pool go on
