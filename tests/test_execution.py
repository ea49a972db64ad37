"""An attempt's outcome is decided once: by the attempt when it ends, or by the manager
when it times the attempt out or cancels it — never both."""

from __future__ import annotations

import asyncio
import gc
import inspect
import sys
import threading
from collections import Counter, deque
from typing import Any

import pytest

import actors
from actors.core import TASK_CONTEXT, CancellationToken, Reply, bridge_for
from actors.engine import Engine
from actors.runtime._attempt import Execution
from actors.runtime._execution import complete, start_coroutine
from actors.runtime._outbox import OnLoop
from actors.runtime.messages import AttemptDone


class Recorder:
    def __init__(self) -> None:
        self.results: list[Any] = []
        self.errors: list[BaseException] = []

    def set_result(self, value: Any) -> None:
        self.results.append(value)

    def set_exception(self, error: BaseException) -> None:
        self.errors.append(error)


def test_an_attempt_done_message_is_the_engines_call_arguments_in_order() -> None:
    """The manager calls ``Engine.attempt_done(*message)`` (one call per task, no
    handler of its own): a field added, dropped or moved must move in both."""
    parameters = list(inspect.signature(Engine.attempt_done).parameters)
    assert (parameters[0], tuple(parameters[1:])) == ("self", AttemptDone._fields)
    assert AttemptDone._fields == ("task_id", "attempt", "value", "error", "at", "answered")


def test_the_first_claim_wins_and_only_it() -> None:
    execution = Execution("t", 1, None)
    wins = []
    barrier = threading.Barrier(8)

    def contend() -> None:
        barrier.wait()
        wins.append(execution.claim())

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(wins) == [False] * 7 + [True]


@pytest.mark.parametrize("listed", [True, False], ids=["list", "only-waiter"])
def test_a_successful_attempt_reports_then_answers_its_delegated_waiters(listed: bool) -> None:
    """The engine lends the attempt a list of waiters, or its only one as it is."""
    order: list[str] = []
    waiter = Recorder()
    execution = Execution("t", 2, None)
    execution.waiters = [waiter] if listed else waiter

    def report(done: AttemptDone) -> None:
        order.append("report")
        assert waiter.results == []  # the manager hears first

    complete(execution, report, 42, None)
    assert order == ["report"]
    assert waiter.results == [42]


@pytest.mark.parametrize(("queued", "answered", "results"), [(2, False, []), (0, True, [42])])
def test_a_worker_answers_its_waiters_unless_calls_are_queued_behind_it(
    queued: int, answered: bool, results: list[int]
) -> None:
    # With calls queued for this worker, posting to a loop would let go of the GIL with
    # the next call waiting: the manager answers the waiters instead (answered False).
    waiter = Recorder()
    execution = Execution("t", 3, None)
    execution.waiters = [waiter]
    reports: list[AttemptDone] = []
    complete(execution, reports.append, 42, None, None, busy=lambda: queued)
    assert reports == [AttemptDone("t", 3, 42, None, None, answered)]
    assert (waiter.results, waiter.errors) == (results, [])


@pytest.mark.parametrize("listed", [True, False], ids=["list", "only-waiter"])
def test_a_failed_attempt_leaves_the_waiters_to_the_manager(listed: bool) -> None:
    waiter = Recorder()
    execution = Execution("t", 1, None)
    execution.waiters = [waiter] if listed else waiter
    reports: list[AttemptDone] = []
    error = ValueError("boom")
    complete(execution, reports.append, None, error)
    assert reports == [AttemptDone("t", 1, None, error)]
    assert (waiter.results, waiter.errors) == ([], [])


def test_an_attempt_the_manager_decided_first_reports_nothing() -> None:
    waiter = Recorder()
    execution = Execution("t", 1, None)
    execution.waiters = [waiter]
    assert execution.claim()  # the manager timed it out
    reports: list[AttemptDone] = []
    complete(execution, reports.append, "late", None)
    assert reports == []
    assert waiter.results == []


def test_an_attempt_is_claimed_once_and_its_claim_is_not_a_gc_tracked_object() -> None:
    """An attempt in flight is what gen-1 collections push into the oldest generation,
    and what sets full collections off: its claim adds no object the cyclic GC tracks
    (a threading.Lock would be one per attempt)."""
    execution = Execution("t1", 1, None)
    assert gc.is_tracked(execution._decided) is False
    assert [execution.claim() for _ in range(3)] == [True, False, False]


async def test_an_attempt_answering_its_waiter_stamps_its_own_end_time() -> None:
    """The caller may get the result before the manager hears of it; the recorded end
    time is still when the attempt ended, not when the manager processed it."""
    from actors import ActorSystem
    from supervisors.testing import FakeClock

    async def noop(x: int) -> int:
        return x

    clock = FakeClock()
    async with ActorSystem(clock=clock) as system:
        tm = system.task_manager
        for i in range(20):
            task_id = await tm.register_task(f"t{i}", noop, (i,))
            assert await tm.execute_task(task_id, wait=True) == i
            started = clock.monotonic()
            clock.advance(50)
            info = await tm.get_task(task_id)
            assert (info.started_at, info.finished_at) == (started, started)


# -- starting a coroutine attempt on its loop ------------------------------------------------


async def test_a_waiter_on_the_attempts_loop_is_answered_at_once() -> None:
    """A successful coroutine attempt answers a `Reply` of its own loop directly: the
    caller's future is resolved when the attempt ends, not a bridge round later."""
    loop = asyncio.get_running_loop()
    bridge = bridge_for(loop)
    execution = Execution("t", 1, bridge)
    future: asyncio.Future[Any] = loop.create_future()
    other = Recorder()
    execution.waiters = [Reply(bridge, future), other]
    reports: list[AttemptDone] = []
    complete(execution, reports.append, 42, None, bridge)
    assert (future.done(), future.result()) == (True, 42)
    assert [(r.task_id, r.value, r.error) for r in reports] == [("t", 42, None)]
    assert other.results == [42]


async def test_an_only_waiter_on_the_attempts_loop_is_answered_at_once() -> None:
    """The same for a task's only waiter, lent to the attempt as it is (no list)."""
    loop = asyncio.get_running_loop()
    bridge = bridge_for(loop)
    execution = Execution("t", 1, bridge)
    future: asyncio.Future[Any] = loop.create_future()
    execution.waiters = Reply(bridge, future)
    reports: list[AttemptDone] = []
    complete(execution, reports.append, 42, None, bridge)
    assert (future.done(), future.result()) == (True, 42)
    assert [(r.task_id, r.value, r.error) for r in reports] == [("t", 42, None)]
    assert bridge._pending == deque()  # answered here, not posted


class _Manager:
    """A manager's handle: keeps what it is told (`send_run` tells a `Batch` of two or
    more messages)."""

    actor_ref = object()

    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)


@pytest.mark.parametrize("listed", [True, False], ids=["list", "only-waiter"])
async def test_a_waiter_on_another_loop_is_answered_once_the_manager_was_told(
    listed: bool,
) -> None:
    """An attempt running on one loop (a recovered task, on the system's own loop)
    whose waiter is on another: its outcome, queued in this loop's outbox, is sent
    before the waiter is answered (`OnLoop.then`), so the waiter's next call (through
    the facade) cannot reach the manager first."""
    loop = asyncio.get_running_loop()
    bridge = bridge_for(loop)
    manager = _Manager()
    earlier = AttemptDone("other", 1, 7, None)
    OnLoop(manager)(earlier)  # already queued in this iteration's outbox

    class Waiter(Recorder):
        def set_result(self, value: Any) -> None:
            told = [m for item in manager.told for m in getattr(item, "items", (item,))]
            seen.append([(m.task_id, m.value) for m in told])
            super().set_result(value)

    seen: list[list[tuple[str, Any]]] = []
    waiter = Waiter()
    execution = Execution("t", 1, bridge)
    execution.waiters = [waiter] if listed else waiter
    complete(execution, OnLoop(manager), 42, None, bridge)
    assert (seen, manager.told) == ([], [])  # nothing sent yet: the waiter waits too
    await asyncio.sleep(0)  # the outbox's flush: both sent, in order, then the answer
    assert seen == [[("other", 7), ("t", 42)]]
    assert waiter.results == [42]
    assert bridge.outbox.items == deque()
    assert len(manager.told) == 1


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in Python 3.12")
async def test_a_coroutine_that_does_not_suspend_ends_in_the_callback_that_starts_it() -> None:
    loop = asyncio.get_running_loop()
    execution = Execution("t", 1, bridge_for(loop))
    reports: list[AttemptDone] = []

    async def at_once() -> int:
        return 7

    start_coroutine(execution, at_once, (), {}, reports.append)
    # No loop iteration in between: it already ended, and no asyncio task is left.
    assert [(r.value, r.error) for r in reports] == [(7, None)]
    assert execution.atask is None

    gate = asyncio.Event()

    async def suspends() -> int:
        await gate.wait()
        return 8

    later = Execution("u", 1, bridge_for(loop))
    start_coroutine(later, suspends, (), {}, reports.append)
    assert later.atask is not None
    assert not later.atask.done()
    gate.set()
    await asyncio.wait_for(later.atask, 5.0)
    assert [(r.task_id, r.value) for r in reports] == [("t", 7), ("u", 8)]


@pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="3.12+ starts attempts eagerly on a loop without a factory"
)
async def test_an_attempt_is_made_by_the_loops_task_factory_when_it_has_one() -> None:
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    reports: list[AttemptDone] = []

    async def seven() -> int:
        return 7

    first = Execution("t", 1, bridge_for(loop))
    start_coroutine(first, seven, (), {}, reports.append)  # no factory: a Task all the same
    assert first.atask is not None
    assert (type(first.atask), made) == (asyncio.Task, [])
    loop.set_task_factory(factory)
    try:
        second = Execution("u", 1, bridge_for(loop))
        start_coroutine(second, seven, (), {}, reports.append)
        assert made == ["_run_coroutine"]
        assert second.atask is not None
        await asyncio.wait_for(asyncio.gather(first.atask, second.atask), 5.0)
    finally:
        loop.set_task_factory(None)
    assert [(r.task_id, r.value) for r in reports] == [("t", 7), ("u", 7)]


async def test_a_loop_with_a_task_factory_of_its_own_makes_the_attempts_task() -> None:
    """The application's task factory (``loop.set_task_factory``: Sentry's asyncio
    integration, aiomonitor...) makes an attempt's asyncio task on every Python, as
    ``loop.create_task`` does on 3.11; the eager start of 3.12+ bypassed it."""
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    gate = asyncio.Event()

    async def suspends() -> int:
        await gate.wait()
        return 8

    reports: list[AttemptDone] = []
    execution = Execution("t", 1, bridge_for(loop))
    loop.set_task_factory(factory)
    try:
        start_coroutine(execution, suspends, (), {}, reports.append)
    finally:
        loop.set_task_factory(None)
    assert made == ["_run_coroutine"]
    assert execution.atask is not None
    assert reports == []
    gate.set()
    await asyncio.wait_for(execution.atask, 5.0)
    assert [(r.task_id, r.value, r.error) for r in reports] == [("t", 8, None)]
    assert execution.atask is None


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in Python 3.12")
async def test_a_loop_whose_factory_is_asyncios_eager_one_keeps_no_ended_task() -> None:
    loop = asyncio.get_running_loop()
    execution = Execution("t", 1, bridge_for(loop))
    reports: list[AttemptDone] = []

    async def at_once() -> int:
        return 7

    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    try:
        start_coroutine(execution, at_once, (), {}, reports.append)
    finally:
        loop.set_task_factory(None)
    assert [(r.value, r.error) for r in reports] == [(7, None)]
    assert execution.atask is None  # ended in the factory's call: not kept


def test_a_token_cancelled_before_anyone_waits_wakes_a_wait_at_once() -> None:
    token = CancellationToken()
    assert token.cancelled is False
    assert token.wait(0) is False  # not cancelled: the bound passes
    token.cancel()
    assert token.cancelled is True
    assert token.wait(0) is True
    token.cancel()  # idempotent
    assert token.wait() is True


@pytest.mark.parametrize(
    "timeout",
    [-1, float("nan"), float("inf"), 10**400, "1", True],
    ids=["negative", "nan", "inf", "huge-int", "str", "bool"],
)
def test_a_token_wait_refuses_a_bad_timeout(timeout: object) -> None:
    token = CancellationToken()
    with pytest.raises(actors.InvalidTaskError) as raised:
        token.wait(timeout)  # type: ignore[arg-type]
    assert str(raised.value) == (
        f"timeout must be a finite number of seconds >= 0 or None (until cancelled), "
        f"got {timeout!r}"
    )
    assert token.cancelled is False
    assert token.wait(0) is False


def test_a_token_cancelled_while_threads_wait_wakes_every_waiter() -> None:
    token = CancellationToken()
    woken: list[bool] = []
    barrier = threading.Barrier(5)

    def waiter() -> None:
        barrier.wait()
        woken.append(token.wait(30))

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for thread in threads:
        thread.start()
    barrier.wait()  # the waiters race the cancel: each must see it, however they interleave
    token.cancel()
    for thread in threads:
        thread.join(30)
    assert woken == [True] * 4


def test_an_attempt_makes_its_cancellation_token_only_when_asked() -> None:
    before = Execution("b", 1, None)
    before.cancel()  # cancelled before anyone asked: the token is made set
    assert before._companion is None
    assert (before.cancelled, before.token.cancelled, before.token.wait(0)) == (True, True, True)
    after = Execution("a", 1, None)
    token = after.token
    assert (after.token is token, token.cancelled) == (True, False)
    after.cancel()  # asked first: the same token is set
    assert (after.cancelled, token.cancelled, token.wait(0)) == (True, True, True)


def test_a_token_asked_for_while_the_attempt_is_cancelled_is_set_either_way() -> None:
    for _ in range(200):  # the two threads interleave differently from run to run
        execution = Execution("t", 1, None)
        barrier = threading.Barrier(2)
        asked: list[CancellationToken] = []

        def ask(
            e: Execution = execution,
            b: threading.Barrier = barrier,
            out: list[CancellationToken] = asked,
        ) -> None:
            b.wait()
            out.append(e.token)

        thread = threading.Thread(target=ask)
        thread.start()
        barrier.wait()
        execution.cancel()
        thread.join(5)
        assert (asked[0] is execution.token, asked[0].wait(5)) == (True, True)


async def test_task_code_sees_its_attempt_and_an_attempt_in_flight_holds_no_extras() -> None:
    """The task's context holds the attempt itself: no (id, token, ...) tuple, no token,
    no `contextvars.Token` of the logging binding per attempt in flight (each one more
    object for the cyclic GC to walk while thousands of attempts are in flight)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Event()
    ids: list[str | None] = []
    scopes: list[object] = []

    async def suspends(i: int) -> int:
        ids.append(actors.current_task_id())
        scopes.append(TASK_CONTEXT.get())
        await gate.wait()
        return i

    def start(i: int) -> Execution:
        execution = Execution(f"t{i}", 1, bridge_for(loop))
        start_coroutine(execution, suspends, (i,), {}, lambda done: None)
        return execution

    warm = [start(i) for i in range(5)]  # lazily made objects, made once
    await asyncio.sleep(0)
    gc.collect()
    old = Counter(type(o).__qualname__ for o in gc.get_objects())
    started = [start(i) for i in range(5, 105)]
    await asyncio.sleep(0)  # every one suspended at its gate
    gc.collect()
    new = Counter(type(o).__qualname__ for o in gc.get_objects())
    new.subtract(old)
    per_attempt = {"CancellationToken", "Token", "tuple", "list"}
    extras = {kind: count for kind, count in new.items() if kind in per_attempt and count >= 100}
    assert extras == {}
    assert new["Execution"] == 100
    assert (ids[5:], scopes[5:]) == ([e.task_id for e in started], started)
    tasks = [e.atask for e in warm + started if e.atask is not None]
    assert len(tasks) == 105
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5.0)
    # Ended: an attempt lets its asyncio task go (the task's context holds the attempt;
    # holding the task back would make a cycle that only the cyclic GC frees).
    assert [e.atask for e in started] == [None] * 100
