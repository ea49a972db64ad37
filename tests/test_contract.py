"""The contract both task managers satisfy: the same tests, run against "new" and "old".

Time is a `FakeClock`: retry delays and timeouts pass only when a test advances it,
after `wait_for_timers` has shown the timer is armed. Nothing here sleeps; every wait
is on a task's outcome or an event, with a bound.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import tenacity

import actors
from actors import (
    ActorSystem,
    DependencyCycleError,
    DependencyFailedError,
    DuplicateTaskError,
    InvalidTaskError,
    TaskCancelledError,
    TaskInfo,
    TaskNotFoundError,
    TaskPriority,
    TaskStatus,
    TaskTimeoutError,
    UnifiedTaskManager,
)
from supervisors.testing import FakeClock

WAIT = 5.0
"""Upper bound, in real seconds, on waiting for anything in these tests."""

PENDING = TaskStatus.PENDING
WAITING = TaskStatus.WAITING
QUEUED = TaskStatus.QUEUED
RUNNING = TaskStatus.RUNNING
RETRYING = TaskStatus.RETRYING
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED


class Boom(Exception):
    """What failing task bodies raise."""


def make_system(backend: str, clock: FakeClock, **config: Any) -> ActorSystem:
    return ActorSystem(
        # No periodic cleanup: its timers would be counted with the ones the tests wait on.
        {
            "USE_NEW_TASK_SYSTEM": backend == "new",
            "RESTART_BACKOFF_INITIAL": 0.0,
            "CLEANUP_INTERVAL": 0,
            **config,
        },
        clock=clock,
    )


@pytest.fixture(params=["new", "old"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def tm(backend: str, clock: FakeClock) -> AsyncIterator[UnifiedTaskManager]:
    async with make_system(backend, clock) as system:
        yield system.task_manager


async def until(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), WAIT)


async def timers_armed(clock: FakeClock, count: int = 1) -> None:
    await asyncio.to_thread(clock.wait_for_timers, count, WAIT)


def returns(value: Any) -> Callable[[], Awaitable[Any]]:
    async def body() -> Any:
        return value

    return body


def records(order: list[str], name: str) -> Callable[[], Awaitable[str]]:
    async def body() -> str:
        order.append(name)
        return name

    return body


def fails(error: BaseException) -> Callable[[], Awaitable[Any]]:
    async def body() -> Any:
        raise error

    return body


def gated(started: asyncio.Event, release: asyncio.Event, value: Any = None) -> Any:
    async def body() -> Any:
        started.set()
        await release.wait()
        return value

    return body


def ids(infos: list[TaskInfo]) -> set[str]:
    return {info.task_id for info in infos}


# -- register ---------------------------------------------------------------------------


async def test_register_returns_a_fresh_id(tm: UnifiedTaskManager) -> None:
    first = await tm.register_task("job", returns(1))
    second = await tm.register_task("job", returns(2))
    assert isinstance(first, str)
    assert first
    assert first != second
    assert (await tm.get_task(first)).task_id == first
    assert ids(await tm.get_all_tasks()) == {first, second}


async def test_register_honours_task_id_and_every_field(
    tm: UnifiedTaskManager, backend: str
) -> None:
    await tm.register_task("dependency", returns(0), task_id="dep")
    metadata = {"owner": "ops"}
    task_id = await tm.register_task(
        "load",
        returns(1),
        task_type="etl",
        description="loads the data",
        metadata=metadata,
        dependencies=("dep",),
        priority=TaskPriority.HIGH,
        max_retries=2,
        task_id="t1",
    )
    assert task_id == "t1"
    metadata["owner"] = "someone else"  # the task keeps a copy
    info = await tm.get_task("t1")
    assert info == TaskInfo(
        task_id="t1",
        name="load",
        status=PENDING,
        task_type="etl",
        description="loads the data",
        metadata={"owner": "ops"},
        dependencies=("dep",),
        priority=TaskPriority.HIGH,
        attempts=0,
        max_retries=2,
        created_at=0.0,
        started_at=None,
        finished_at=None,
        error=None,
        backend=backend,
    )
    assert info.duration is None
    assert info.done is False


async def test_taken_task_id_is_refused(tm: UnifiedTaskManager) -> None:
    await tm.register_task("first", returns(1), task_id="same")
    before = await tm.get_all_tasks()
    with pytest.raises(DuplicateTaskError, match="'same'"):
        await tm.register_task("second", returns(2), task_id="same")
    assert await tm.get_all_tasks() == before


# -- execute ----------------------------------------------------------------------------


async def test_execute_without_wait_accepts_once(tm: UnifiedTaskManager) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("job", gated(started, release, "done"), task_id="job")
    assert await tm.execute_task("job") is True
    assert await tm.execute_task("job") is False
    await until(started)
    assert await tm.execute_task("job") is False
    waiter = asyncio.ensure_future(tm.execute_task("job", wait=True))
    assert await tm.get_task_status("job") is RUNNING
    release.set()
    assert await asyncio.wait_for(waiter, WAIT) == "done"
    assert await tm.wait_for_task("job", timeout=WAIT) == "done"
    assert await tm.execute_task("job") is False
    assert (await tm.get_task("job")).attempts == 1


async def test_execute_with_wait_returns_the_result(tm: UnifiedTaskManager) -> None:
    async def double(x: int, *, plus: int) -> int:
        return 2 * x + plus

    await tm.register_task("double", double, (20,), {"plus": 2}, task_id="d")
    assert await tm.execute_task("d", wait=True) == 42


async def test_execute_with_wait_raises_the_task_exception(tm: UnifiedTaskManager) -> None:
    error = Boom("disk full")
    await tm.register_task("bad", fails(error), task_id="bad")
    with pytest.raises(Boom, match=r"^disk full$") as raised:
        await tm.execute_task("bad", wait=True)
    assert raised.value is error


async def test_wait_on_a_finished_task_gives_the_same_outcome(tm: UnifiedTaskManager) -> None:
    error = Boom("no")
    await tm.register_task("good", returns({"rows": 3}), task_id="good")
    await tm.register_task("bad", fails(error), task_id="bad")
    assert await tm.execute_task("good", wait=True) == {"rows": 3}
    assert await tm.execute_task("good", wait=True) == {"rows": 3}
    assert await tm.wait_for_task("good", timeout=WAIT) == {"rows": 3}
    with pytest.raises(Boom):
        await tm.execute_task("bad", wait=True)
    with pytest.raises(Boom) as again:
        await tm.execute_task("bad", wait=True)
    assert again.value is error
    with pytest.raises(Boom) as waited:
        await tm.wait_for_task("bad", timeout=WAIT)
    assert waited.value is error


async def test_wait_for_task_times_out_and_the_task_goes_on(tm: UnifiedTaskManager) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("slow", gated(started, release, 7), task_id="slow")
    await tm.execute_task("slow")
    await until(started)
    with pytest.raises(
        actors.WaitTimeoutError,
        match=r"^task 'slow' did not finish within 0\.05s; it keeps running$",
    ):
        await tm.wait_for_task("slow", timeout=0.05)
    assert await tm.get_task_status("slow") is RUNNING
    release.set()
    assert await tm.wait_for_task("slow", timeout=WAIT) == 7


async def test_waiters_registered_before_execution_get_the_outcome(
    tm: UnifiedTaskManager,
) -> None:
    await tm.register_task("good", returns("value"), task_id="good")
    await tm.register_task("bad", fails(Boom("no")), task_id="bad")
    good = [asyncio.ensure_future(tm.wait_for_task("good", timeout=WAIT)) for _ in range(2)]
    bad = asyncio.ensure_future(tm.wait_for_task("bad", timeout=WAIT))
    assert await tm.get_task_status("good") is PENDING
    assert not any(waiter.done() for waiter in [*good, bad])
    await tm.execute_task("good")
    await tm.execute_task("bad")
    assert await asyncio.wait_for(asyncio.gather(*good), WAIT) == ["value", "value"]
    with pytest.raises(Boom, match=r"^no$"):
        await asyncio.wait_for(bad, WAIT)


async def test_wrong_arguments_fail_the_task(tm: UnifiedTaskManager) -> None:
    async def takes_one(x: int) -> int:
        return x

    def plain_takes_one(x: int) -> int:
        return x

    await tm.register_task("coro", takes_one, (1, 2), task_id="coro")
    await tm.register_task("plain", plain_takes_one, kwargs={"y": 1}, task_id="plain")
    for task_id in ("coro", "plain"):
        with pytest.raises(TypeError):
            await tm.execute_task(task_id, wait=True)
        info = await tm.get_task(task_id)
        assert (info.status, info.attempts) == (FAILED, 1)
        assert isinstance(info.error, TypeError)


# -- results at each stage --------------------------------------------------------------


async def test_result_error_and_status_through_a_success(tm: UnifiedTaskManager) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("job", gated(started, release, "value"), task_id="job")
    assert await tm.get_task_status("job") is PENDING
    assert await tm.get_task_result("job") is None
    assert await tm.get_task_error("job") is None
    await tm.execute_task("job")
    await until(started)
    assert await tm.get_task_status("job") is RUNNING
    assert await tm.get_task_result("job") is None
    assert await tm.get_task_error("job") is None
    release.set()
    assert await tm.wait_for_task("job", timeout=WAIT) == "value"
    assert await tm.get_task_status("job") is COMPLETED
    assert await tm.get_task_result("job") == "value"
    assert await tm.get_task_error("job") is None
    info = await tm.get_task("job")
    assert (info.status, info.attempts, info.error, info.done) == (COMPLETED, 1, None, True)
    assert (info.started_at, info.finished_at, info.duration) == (0.0, 0.0, 0.0)


async def test_result_error_and_status_through_a_failure(tm: UnifiedTaskManager) -> None:
    error = Boom("bad input")
    await tm.register_task("job", fails(error), task_id="job")
    with pytest.raises(Boom):
        await tm.execute_task("job", wait=True)
    assert await tm.get_task_status("job") is FAILED
    assert await tm.get_task_result("job") is None
    assert await tm.get_task_error("job") is error
    info = await tm.get_task("job")
    assert (info.status, info.attempts, info.error) == (FAILED, 1, error)


# -- coroutines and plain functions -----------------------------------------------------


async def test_coroutine_runs_on_the_registering_loop(tm: UnifiedTaskManager) -> None:
    loop = asyncio.get_running_loop()
    seen: list[Any] = []

    async def body() -> str:
        seen.append((asyncio.get_running_loop(), threading.current_thread()))
        seen.append(actors.current_task_id())
        return "ok"

    await tm.register_task("coro", body, task_id="coro")
    assert await tm.execute_task("coro", wait=True) == "ok"
    assert seen == [(loop, threading.current_thread()), "coro"]


async def test_plain_function_runs_in_a_pool_thread(tm: UnifiedTaskManager) -> None:
    loop_thread = threading.current_thread()
    seen: list[Any] = []

    def body(x: int, y: int = 0) -> int:
        seen.append(threading.current_thread())
        seen.append(actors.current_task_id())
        return x + y

    await tm.register_task("plain", body, [1], {"y": 2}, task_id="plain")
    assert await tm.execute_task("plain", wait=True) == 3
    assert len(seen) == 2
    assert seen[0] is not loop_thread
    assert seen[1] == "plain"
    assert (await tm.get_task("plain")).status is COMPLETED


async def test_plain_function_failure_raises_its_exception(tm: UnifiedTaskManager) -> None:
    def body() -> None:
        raise Boom("from a thread")

    await tm.register_task("plain", body, task_id="plain")
    with pytest.raises(Boom, match=r"^from a thread$"):
        await tm.execute_task("plain", wait=True)
    assert await tm.get_task_status("plain") is FAILED


# -- retries ----------------------------------------------------------------------------


async def test_retries_until_success(tm: UnifiedTaskManager) -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(len(calls) + 1)
        if len(calls) < 3:
            raise Boom(len(calls))
        return "third time"

    await tm.register_task("flaky", flaky, max_retries=2, task_id="flaky")
    assert await tm.execute_task("flaky", wait=True) == "third time"
    assert calls == [1, 2, 3]
    info = await tm.get_task("flaky")
    assert (info.status, info.attempts, info.max_retries) == (COMPLETED, 3, 2)
    assert await tm.get_task_result("flaky") == "third time"
    assert await tm.get_task_error("flaky") is None


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_max_retries_n_means_n_plus_one_attempts(
    tm: UnifiedTaskManager, max_retries: int
) -> None:
    calls: list[int] = []

    def always_fails() -> None:
        calls.append(len(calls) + 1)
        raise Boom(len(calls))

    await tm.register_task("doomed", always_fails, max_retries=max_retries, task_id="doomed")
    with pytest.raises(Boom) as raised:
        await tm.execute_task("doomed", wait=True)
    attempts = max_retries + 1
    assert raised.value.args == (attempts,)
    assert calls == list(range(1, attempts + 1))
    info = await tm.get_task("doomed")
    assert (info.status, info.attempts) == (FAILED, attempts)
    error = await tm.get_task_error("doomed")
    assert isinstance(error, Boom)
    assert error.args == (attempts,)


async def test_retrying_status_between_attempts(tm: UnifiedTaskManager, clock: FakeClock) -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise Boom("first")
        return "second"

    await tm.register_task("flaky", flaky, max_retries=1, retry_delay=5, task_id="flaky")
    assert await tm.execute_task("flaky") is True
    await timers_armed(clock)
    assert clock.pending_delays() == [5.0]
    info = await tm.get_task("flaky")
    assert (info.status, info.attempts) == (RETRYING, 1)
    assert isinstance(info.error, Boom)
    assert calls == [1]
    clock.advance(4.9)
    assert await tm.get_task_status("flaky") is RETRYING
    clock.advance(0.1)
    assert await tm.wait_for_task("flaky", timeout=WAIT) == "second"
    info = await tm.get_task("flaky")
    assert (info.status, info.attempts) == (COMPLETED, 2)
    assert calls == [1, 2]


async def test_retry_wait_strategy_replaces_the_fixed_delay(
    tm: UnifiedTaskManager, clock: FakeClock
) -> None:
    calls: list[int] = []

    def flaky() -> int:
        calls.append(len(calls) + 1)
        if len(calls) < 3:
            raise Boom(len(calls))
        return len(calls)

    await tm.register_task(
        "flaky",
        flaky,
        max_retries=2,
        retry_delay=100,
        retry_wait=tenacity.wait_exponential(multiplier=2),
        task_id="flaky",
    )
    await tm.execute_task("flaky")
    await timers_armed(clock)
    assert clock.pending_delays() == [2.0]
    assert (await tm.get_task("flaky")).attempts == 1
    clock.advance(2)
    # The second attempt fails and arms the next retry timer: 2 * 2**1 seconds.
    await timers_armed(clock)
    assert clock.pending_delays() == [4.0]
    info = await tm.get_task("flaky")
    assert (info.status, info.attempts) == (RETRYING, 2)
    clock.advance(4)
    assert await tm.wait_for_task("flaky", timeout=WAIT) == 3
    assert (await tm.get_task("flaky")).attempts == 3


# -- timeouts ---------------------------------------------------------------------------


async def test_coroutine_timeout_fails_the_task(tm: UnifiedTaskManager, clock: FakeClock) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    never = asyncio.Event()

    async def hangs() -> None:
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await tm.register_task("hangs", hangs, timeout=2, task_id="hangs")
    await tm.execute_task("hangs")
    await until(started)
    await timers_armed(clock)
    assert clock.pending_delays() == [2.0]
    clock.advance(2)
    with pytest.raises(
        TaskTimeoutError, match=r"^task 'hangs' attempt 1 timed out after 2\.0s$"
    ) as raised:
        await tm.wait_for_task("hangs", timeout=WAIT)
    assert isinstance(raised.value, TimeoutError)
    await until(cancelled)
    info = await tm.get_task("hangs")
    assert (info.status, info.attempts, info.error) == (FAILED, 1, raised.value)


async def test_timeout_is_retried_while_retries_remain(
    tm: UnifiedTaskManager, clock: FakeClock
) -> None:
    calls: list[int] = []
    started = asyncio.Event()
    never = asyncio.Event()

    async def hangs_once() -> str:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            started.set()
            await never.wait()
        return "on time"

    await tm.register_task("job", hangs_once, max_retries=1, timeout=2, task_id="job")
    await tm.execute_task("job")
    await until(started)
    await timers_armed(clock)
    clock.advance(2)
    assert await tm.wait_for_task("job", timeout=WAIT) == "on time"
    info = await tm.get_task("job")
    assert (info.status, info.attempts) == (COMPLETED, 2)
    assert calls == [1, 2]


async def test_timed_out_plain_function_gets_its_token_set(backend: str, clock: FakeClock) -> None:
    started, returned = threading.Event(), threading.Event()
    token_set: list[bool] = []

    def slow() -> str:
        token = actors.cancellation_token()
        started.set()
        try:
            token_set.append(token.wait(WAIT))
            return "late"
        finally:
            returned.set()

    async with make_system(backend, clock, MAX_THREAD_WORKERS=1) as system:
        tm = system.task_manager
        await tm.register_task("slow", slow, timeout=2, task_id="slow")
        await tm.execute_task("slow")
        await asyncio.to_thread(started.wait, WAIT)
        await timers_armed(clock)
        clock.advance(2)
        with pytest.raises(
            TaskTimeoutError, match=r"^task 'slow' attempt 1 timed out after 2\.0s$"
        ):
            await tm.wait_for_task("slow", timeout=WAIT)
        assert await asyncio.to_thread(returned.wait, WAIT)
        assert token_set == [True]
        # The pool has one worker: once this runs, the late outcome has been reported.
        assert await tm.thread_pool.submit(lambda: "barrier") == "barrier"
        info = await tm.get_task("slow")
        assert (info.status, info.attempts) == (FAILED, 1)
        assert isinstance(info.error, TaskTimeoutError)
        assert await tm.get_task_result("slow") is None


# -- cancellation -----------------------------------------------------------------------


async def assert_cancelled(tm: UnifiedTaskManager, task_id: str) -> None:
    assert await tm.get_task_status(task_id) is CANCELLED
    error = await tm.get_task_error(task_id)
    assert isinstance(error, TaskCancelledError)
    assert str(error) == f"task {task_id!r} was cancelled"
    with pytest.raises(TaskCancelledError):
        await tm.wait_for_task(task_id, timeout=WAIT)
    assert await tm.cancel_task(task_id) is False
    assert await tm.execute_task(task_id) is False


async def test_cancel_pending(tm: UnifiedTaskManager) -> None:
    ran: list[str] = []
    await tm.register_task("job", records(ran, "job"), task_id="job")
    assert await tm.cancel_task("job") is True
    await assert_cancelled(tm, "job")
    assert (await tm.get_task("job")).attempts == 0
    assert ran == []


async def test_cancel_waiting(tm: UnifiedTaskManager) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    ran: list[str] = []
    await tm.register_task("dep", gated(started, release, "dep"), task_id="dep")
    await tm.register_task("job", records(ran, "job"), dependencies=("dep",), task_id="job")
    await tm.execute_task("job")
    await until(started)
    assert await tm.get_task_status("job") is WAITING
    assert await tm.cancel_task("job") is True
    await assert_cancelled(tm, "job")
    release.set()
    assert await tm.wait_for_task("dep", timeout=WAIT) == "dep"
    assert await tm.get_task_status("job") is CANCELLED
    assert ran == []


async def test_cancel_running_coroutine(tm: UnifiedTaskManager) -> None:
    started, saw_cancel = asyncio.Event(), asyncio.Event()
    never = asyncio.Event()

    async def hangs() -> None:
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    await tm.register_task("job", hangs, task_id="job")
    await tm.execute_task("job")
    await until(started)
    assert await tm.cancel_task("job") is True
    await until(saw_cancel)
    await assert_cancelled(tm, "job")
    assert (await tm.get_task("job")).attempts == 1


async def test_cancel_running_plain_function(backend: str, clock: FakeClock) -> None:
    started, returned = threading.Event(), threading.Event()
    token_set: list[bool] = []

    def slow() -> str:
        token = actors.cancellation_token()
        started.set()
        try:
            token_set.append(token.wait(WAIT))
            return "late"
        finally:
            returned.set()

    async with make_system(backend, clock, MAX_THREAD_WORKERS=1) as system:
        tm = system.task_manager
        await tm.register_task("slow", slow, task_id="slow")
        await tm.execute_task("slow")
        await asyncio.to_thread(started.wait, WAIT)
        assert await tm.cancel_task("slow") is True
        assert await asyncio.to_thread(returned.wait, WAIT)
        assert token_set == [True]
        # The pool has one worker: once this runs, the late outcome has been reported.
        assert await tm.thread_pool.submit(lambda: "barrier") == "barrier"
        await assert_cancelled(tm, "slow")
        assert await tm.get_task_result("slow") is None


async def test_cancel_retrying(tm: UnifiedTaskManager, clock: FakeClock) -> None:
    calls: list[int] = []

    async def fails_first() -> str:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise Boom("first")
        return "second"

    await tm.register_task("job", fails_first, max_retries=3, retry_delay=5, task_id="job")
    await tm.execute_task("job")
    await timers_armed(clock)
    assert await tm.get_task_status("job") is RETRYING
    assert await tm.cancel_task("job") is True
    await assert_cancelled(tm, "job")
    clock.advance(5)
    info = await tm.get_task("job")
    assert (info.status, info.attempts) == (CANCELLED, 1)
    assert calls == [1]


async def test_cancel_finished_returns_false(tm: UnifiedTaskManager) -> None:
    await tm.register_task("good", returns(1), task_id="good")
    await tm.register_task("bad", fails(Boom("x")), task_id="bad")
    await tm.register_task("gone", returns(2), task_id="gone")
    await tm.execute_task("good", wait=True)
    with pytest.raises(Boom):
        await tm.execute_task("bad", wait=True)
    assert await tm.cancel_task("gone") is True
    assert await tm.cancel_task("good") is False
    assert await tm.cancel_task("bad") is False
    assert await tm.cancel_task("gone") is False
    statuses = {info.task_id: info.status for info in await tm.get_all_tasks()}
    assert statuses == {"good": COMPLETED, "bad": FAILED, "gone": CANCELLED}
    assert await tm.get_task_result("good") == 1


# -- dependencies -----------------------------------------------------------------------


async def test_task_starts_only_after_all_dependencies_completed(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    started_a, release_a = asyncio.Event(), asyncio.Event()
    started_b, release_b = asyncio.Event(), asyncio.Event()

    async def a() -> None:
        started_a.set()
        await release_a.wait()
        order.append("a")

    async def b() -> None:
        started_b.set()
        await release_b.wait()
        order.append("b")

    await tm.register_task("a", a, task_id="a")
    await tm.register_task("b", b, task_id="b")
    await tm.register_task("c", records(order, "c"), dependencies=("a", "b"), task_id="c")
    assert await tm.execute_task("a") is True
    assert await tm.execute_task("b") is True
    assert await tm.execute_task("c") is True
    await until(started_a)
    await until(started_b)
    assert await tm.get_task_status("c") is WAITING
    release_a.set()
    await tm.wait_for_task("a", timeout=WAIT)
    assert await tm.get_task_status("c") is WAITING
    assert order == ["a"]
    release_b.set()
    assert await tm.wait_for_task("c", timeout=WAIT) == "c"
    assert order == ["a", "b", "c"]


async def test_executing_a_task_executes_its_pending_dependencies(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    await tm.register_task("a", records(order, "a"), task_id="a")
    await tm.register_task("b", records(order, "b"), dependencies=("a",), task_id="b")
    await tm.register_task("c", records(order, "c"), dependencies=("b", "a"), task_id="c")
    await tm.register_task("x", records(order, "x"), task_id="x")
    assert await tm.execute_task("c", wait=True) == "c"
    assert order == ["a", "b", "c"]
    statuses = {info.task_id: info.status for info in await tm.get_all_tasks()}
    assert statuses == {"a": COMPLETED, "b": COMPLETED, "c": COMPLETED, "x": PENDING}
    # Already executed by c: executing them again is refused.
    assert await tm.execute_task("a") is False


async def test_failed_dependency_cancels_dependents_transitively(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    error = Boom("root failed")
    await tm.register_task("a", fails(error), task_id="a")
    await tm.register_task("b", records(order, "b"), dependencies=("a",), task_id="b")
    await tm.register_task("c", records(order, "c"), dependencies=("b",), task_id="c")
    await tm.register_task("d", records(order, "d"), dependencies=("c",), task_id="d")
    await tm.register_task("free", records(order, "free"), task_id="free")
    await tm.execute_task("c")
    with pytest.raises(DependencyFailedError) as raised:
        await tm.wait_for_task("c", timeout=WAIT)
    assert str(raised.value) == "task 'c' (c) cancelled: its dependency 'a' (a) failed"
    assert await tm.get_task_error("a") is error
    for task_id in ("b", "c", "d"):
        assert await tm.get_task_status(task_id) is CANCELLED
        dependency_error = await tm.get_task_error(task_id)
        assert isinstance(dependency_error, DependencyFailedError)
        assert dependency_error.task_id == task_id
        assert dependency_error.dependency == "a"
        assert str(dependency_error) == (
            f"task {task_id!r} ({task_id}) cancelled: its dependency 'a' (a) failed"
        )
    assert await tm.get_task_status("free") is PENDING
    assert order == []
    # A task registered later on the failed one is cancelled at once.
    await tm.register_task("late", records(order, "late"), dependencies=("a",), task_id="late")
    assert await tm.get_task_status("late") is CANCELLED
    with pytest.raises(DependencyFailedError, match=r"its dependency 'a' \(a\) failed"):
        await tm.execute_task("late", wait=True)


async def test_dependency_completed_before_registration(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    await tm.register_task("a", records(order, "a"), task_id="a")
    assert await tm.execute_task("a", wait=True) == "a"
    await tm.register_task("b", records(order, "b"), dependencies=("a",), task_id="b")
    assert (await tm.get_task("b")).dependencies == ("a",)
    assert await tm.execute_task("b", wait=True) == "b"
    assert order == ["a", "b"]


async def test_cancelled_dependency_cancels_dependents(tm: UnifiedTaskManager) -> None:
    await tm.register_task("a", returns(1), task_id="a")
    await tm.register_task("b", returns(2), dependencies=("a",), task_id="b")
    assert await tm.cancel_task("a") is True
    assert await tm.get_task_status("b") is CANCELLED
    error = await tm.get_task_error("b")
    assert isinstance(error, DependencyFailedError)
    assert str(error) == "task 'b' (b) cancelled: its dependency 'a' (a) cancelled"


async def test_unknown_dependency_is_refused(tm: UnifiedTaskManager) -> None:
    await tm.register_task("a", returns(1), task_id="a")
    before = await tm.get_all_tasks()
    with pytest.raises(TaskNotFoundError, match="'ghost'"):
        await tm.register_task("b", returns(2), dependencies=("a", "ghost"), task_id="b")
    assert await tm.get_all_tasks() == before
    # The refused id is free again.
    assert await tm.register_task("b", returns(2), task_id="b") == "b"


async def test_add_dependency(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    await tm.register_task("a", records(order, "a"), task_id="a")
    await tm.register_task("b", records(order, "b"), task_id="b")
    await tm.add_dependency("b", "a")
    assert (await tm.get_task("b")).dependencies == ("a",)
    assert await tm.execute_task("b", wait=True) == "b"
    assert order == ["a", "b"]


async def test_add_dependency_to_a_waiting_task_executes_it(tm: UnifiedTaskManager) -> None:
    order: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        started.set()
        await release.wait()
        order.append("first")

    await tm.register_task("first", first, task_id="first")
    await tm.register_task("extra", records(order, "extra"), task_id="extra")
    await tm.register_task("job", records(order, "job"), dependencies=("first",), task_id="job")
    await tm.execute_task("job")
    await until(started)
    await tm.add_dependency("job", "extra")
    assert await tm.wait_for_task("extra", timeout=WAIT) == "extra"
    assert await tm.get_task_status("job") is WAITING
    release.set()
    assert await tm.wait_for_task("job", timeout=WAIT) == "job"
    assert order == ["extra", "first", "job"]


async def test_dependency_cycle_is_refused(tm: UnifiedTaskManager) -> None:
    for task_id in ("a", "b", "c"):
        await tm.register_task(task_id, returns(task_id), task_id=task_id)
    await tm.add_dependency("c", "a")
    await tm.add_dependency("b", "c")
    before = await tm.get_all_tasks()
    with pytest.raises(DependencyCycleError) as raised:
        await tm.add_dependency("a", "b")
    assert str(raised.value) == (
        "dependency cycle: a -> b -> c -> a; remove one of these dependencies"
    )
    assert raised.value.cycle == ["a", "b", "c", "a"]
    assert await tm.get_all_tasks() == before
    with pytest.raises(DependencyCycleError, match=r"^dependency cycle: a -> a; "):
        await tm.add_dependency("a", "a")


async def test_add_dependency_to_a_running_or_finished_task_is_refused(
    tm: UnifiedTaskManager,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("running", gated(started, release), task_id="running")
    await tm.register_task("done", returns(1), task_id="done")
    await tm.register_task("other", returns(2), task_id="other")
    await tm.execute_task("done", wait=True)
    await tm.execute_task("running")
    await until(started)
    with pytest.raises(
        InvalidTaskError,
        match=r"^cannot add a dependency to task 'running': it is running; ",
    ):
        await tm.add_dependency("running", "other")
    with pytest.raises(
        InvalidTaskError, match=r"^cannot add a dependency to task 'done': it is completed; "
    ):
        await tm.add_dependency("done", "other")
    assert (await tm.get_task("running")).dependencies == ()
    release.set()
    await tm.wait_for_task("running", timeout=WAIT)


# -- cleanup ----------------------------------------------------------------------------


async def test_cleanup_removes_only_old_terminal_tasks(
    tm: UnifiedTaskManager, clock: FakeClock
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("old", returns(1), task_id="old")
    await tm.execute_task("old", wait=True)  # finished at t=0
    clock.advance(10)
    await tm.register_task("failed", fails(Boom("x")), task_id="failed")
    await tm.register_task("cancelled", returns(2), task_id="cancelled")
    await tm.register_task("pending", returns(3), task_id="pending")
    await tm.register_task("running", gated(started, release, 4), task_id="running")
    with pytest.raises(Boom):
        await tm.execute_task("failed", wait=True)  # finished at t=10
    await tm.cancel_task("cancelled")  # finished at t=10
    await tm.execute_task("running")
    await until(started)
    clock.advance(5)  # now t=15

    assert await tm.cleanup_completed_tasks() == 0
    assert await tm.cleanup_completed_tasks(10) == 1
    with pytest.raises(TaskNotFoundError, match="'old'"):
        await tm.get_task("old")
    assert ids(await tm.get_all_tasks()) == {"failed", "cancelled", "pending", "running"}

    assert await tm.cleanup_completed_tasks(5.5) == 0
    assert await tm.cleanup_completed_tasks(5) == 2
    for task_id in ("failed", "cancelled"):
        with pytest.raises(TaskNotFoundError, match=repr(task_id)):
            await tm.get_task(task_id)
        with pytest.raises(TaskNotFoundError, match=repr(task_id)):
            await tm.get_task_status(task_id)
        with pytest.raises(TaskNotFoundError, match=repr(task_id)):
            await tm.execute_task(task_id)
    assert ids(await tm.get_all_tasks()) == {"pending", "running"}
    assert await tm.cleanup_completed_tasks(0) == 0

    release.set()
    assert await tm.wait_for_task("running", timeout=WAIT) == 4
    assert await tm.cleanup_completed_tasks(0) == 1
    assert ids(await tm.get_all_tasks()) == {"pending"}
    # A cleaned-up id may be registered again.
    assert await tm.register_task("again", returns(5), task_id="old") == "old"
    assert await tm.execute_task("old", wait=True) == 5


# -- status queries ---------------------------------------------------------------------


async def test_status_queries_return_exact_sets(tm: UnifiedTaskManager) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    await tm.register_task("p1", returns(1), task_type="etl", task_id="p1")
    await tm.register_task("p2", returns(2), task_type="report", task_id="p2")
    await tm.register_task("ok", returns(3), task_type="etl", task_id="ok")
    await tm.register_task("bad", fails(Boom("x")), task_type="report", task_id="bad")
    await tm.register_task("stop", returns(4), task_id="stop")
    await tm.register_task("run", gated(started, release), task_type="etl", task_id="run")
    await tm.execute_task("ok", wait=True)
    with pytest.raises(Boom):
        await tm.execute_task("bad", wait=True)
    await tm.cancel_task("stop")
    await tm.execute_task("run")
    await until(started)

    assert ids(await tm.get_all_tasks()) == {"p1", "p2", "ok", "bad", "stop", "run"}
    expected = {
        PENDING: {"p1", "p2"},
        WAITING: set(),
        QUEUED: set(),
        RUNNING: {"run"},
        RETRYING: set(),
        COMPLETED: {"ok"},
        FAILED: {"bad"},
        CANCELLED: {"stop"},
    }
    for status, wanted in expected.items():
        assert ids(await tm.get_tasks_by_status(status)) == wanted, status
        assert ids(await tm.get_tasks_by_status(status.value)) == wanted, status
    assert ids(await tm.get_tasks_by_type("etl")) == {"p1", "ok", "run"}
    assert ids(await tm.get_tasks_by_type("report")) == {"p2", "bad"}
    assert ids(await tm.get_tasks_by_type("default")) == {"stop"}
    assert await tm.get_tasks_by_type("nothing") == []
    for info in await tm.get_tasks_by_status(PENDING):
        assert info.status is PENDING
    release.set()
    await tm.wait_for_task("run", timeout=WAIT)
    assert ids(await tm.get_tasks_by_status(COMPLETED)) == {"ok", "run"}


# -- the new manager only: priorities and the concurrency limit -------------------------


async def test_priority_order_then_first_come_first_served(clock: FakeClock) -> None:
    order: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()
    async with make_system("new", clock, MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager
        await tm.register_task("blocker", gated(started, release), task_id="blocker")
        await tm.execute_task("blocker")
        await until(started)
        queued = [
            ("low", TaskPriority.LOW),
            ("normal-1", TaskPriority.NORMAL),
            ("high", TaskPriority.HIGH),
            ("critical", TaskPriority.CRITICAL),
            ("normal-2", TaskPriority.NORMAL),
        ]
        for task_id, priority in queued:
            await tm.register_task(
                task_id, records(order, task_id), priority=priority, task_id=task_id
            )
            assert await tm.execute_task(task_id) is True
        assert ids(await tm.get_tasks_by_status(QUEUED)) == {task_id for task_id, _ in queued}
        release.set()
        for task_id, _ in queued:
            assert await tm.wait_for_task(task_id, timeout=WAIT) == task_id
        assert order == ["critical", "high", "normal-1", "normal-2", "low"]


async def test_cancel_queued(clock: FakeClock) -> None:
    order: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()
    async with make_system("new", clock, MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager
        await tm.register_task("blocker", gated(started, release), task_id="blocker")
        await tm.register_task("queued", records(order, "queued"), task_id="queued")
        await tm.register_task("next", records(order, "next"), task_id="next")
        await tm.execute_task("blocker")
        await until(started)
        await tm.execute_task("queued")
        await tm.execute_task("next")
        assert await tm.get_task_status("queued") is QUEUED
        assert await tm.cancel_task("queued") is True
        await assert_cancelled(tm, "queued")
        release.set()
        assert await tm.wait_for_task("next", timeout=WAIT) == "next"
        assert order == ["next"]
        assert (await tm.get_task("queued")).attempts == 0


async def test_retrying_task_holds_no_slot(clock: FakeClock) -> None:
    calls: list[int] = []

    async def fails_first() -> str:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise Boom("first")
        return "retried"

    async with make_system("new", clock, MAX_CONCURRENT_TASKS=1) as system:
        tm = system.task_manager
        await tm.register_task("flaky", fails_first, max_retries=1, retry_delay=5, task_id="f")
        await tm.register_task("other", returns("other"), task_id="other")
        await tm.execute_task("f")
        await timers_armed(clock)
        assert await tm.get_task_status("f") is RETRYING
        assert await tm.execute_task("other", wait=True) == "other"
        clock.advance(5)
        assert await tm.wait_for_task("f", timeout=WAIT) == "retried"
        assert calls == [1, 2]


async def test_concurrency_limit(clock: FakeClock) -> None:
    running = 0
    peak = 0
    started = [asyncio.Event() for _ in range(10)]
    release = asyncio.Event()

    def body(index: int) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            started[index].set()
            await release.wait()
            running -= 1
            return index

        return run

    async with make_system("new", clock, MAX_CONCURRENT_TASKS=3) as system:
        tm = system.task_manager
        for index in range(10):
            await tm.register_task(f"t{index}", body(index), task_id=f"t{index}")
        for index in range(10):
            assert await tm.execute_task(f"t{index}") is True
        for index in range(3):
            await until(started[index])
        assert ids(await tm.get_tasks_by_status(RUNNING)) == {"t0", "t1", "t2"}
        assert ids(await tm.get_tasks_by_status(QUEUED)) == {f"t{i}" for i in range(3, 10)}
        assert not any(event.is_set() for event in started[3:])
        release.set()
        for index in range(10):
            assert await tm.wait_for_task(f"t{index}", timeout=WAIT) == index
        assert peak == 3


# -- switching between the two systems --------------------------------------------------


async def test_switching_systems_keeps_old_tasks_reachable(backend: str, clock: FakeClock) -> None:
    other = "old" if backend == "new" else "new"
    async with make_system(backend, clock) as system:
        tm = system.task_manager
        await tm.register_task("a", returns("a"), task_id="a")
        await tm.register_task("b", returns("b"), task_id="b")
        await tm.register_task("waits", returns("w"), task_id="waits")
        assert await tm.execute_task("a", wait=True) == "a"

        await tm.use_new_task_system(other == "new")
        await tm.register_task("c", returns("c"), task_id="c")
        await tm.register_task("d", returns("d"), task_id="d")
        backends = {info.task_id: info.backend for info in await tm.get_all_tasks()}
        assert backends == {"a": backend, "b": backend, "waits": backend, "c": other, "d": other}
        assert (await tm.get_task("b")).backend == backend
        assert (await tm.get_task("c")).backend == other

        # Old tasks are still executed, queried and cancelled.
        assert await tm.execute_task("b", wait=True) == "b"
        assert await tm.get_task_result("b") == "b"
        assert await tm.execute_task("c", wait=True) == "c"
        assert ids(await tm.get_tasks_by_status(COMPLETED)) == {"a", "b", "c"}

        # Ids are unique across both systems; dependencies stay inside one.
        before = await tm.get_all_tasks()
        with pytest.raises(DuplicateTaskError, match="'a'"):
            await tm.register_task("again", returns(0), task_id="a")
        with pytest.raises(
            InvalidTaskError,
            match=f"^dependency 'waits' belongs to the {backend} task system, but new tasks "
            f"go to the {other} one; ",
        ):
            await tm.register_task("e", returns(0), dependencies=("waits",), task_id="e")
        with pytest.raises(
            InvalidTaskError,
            match=f"^task 'd' belongs to the {other} task system and 'waits' to the "
            f"{backend} one; ",
        ):
            await tm.add_dependency("d", "waits")
        with pytest.raises(InvalidTaskError, match="'d'"):
            await tm.add_dependency("waits", "d")
        assert await tm.get_all_tasks() == before

        # Cleanup reaches both systems.
        assert await tm.cleanup_completed_tasks(0) == 3
        for task_id in ("a", "b", "c"):
            with pytest.raises(TaskNotFoundError):
                await tm.get_task(task_id)
        assert await tm.cancel_task("waits") is True
        assert await tm.cleanup_completed_tasks(0) == 1
        remaining = {info.task_id: info.backend for info in await tm.get_all_tasks()}
        assert remaining == {"d": other}

        # And back again: new registrations follow the flag.
        await tm.use_new_task_system(backend == "new")
        await tm.register_task("f", returns("f"), task_id="f")
        assert (await tm.get_task("f")).backend == backend
        assert await tm.execute_task("d", wait=True) == "d"
