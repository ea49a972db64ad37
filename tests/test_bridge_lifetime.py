"""Per-loop state lives as long as its loop: a service that runs ``asyncio.run`` per job
(or per thread) keeps no closed event loop, nor its bridge, calls or outbox, beyond the
one its last call went through (the last-used caches hold one each)."""

from __future__ import annotations

import asyncio
import gc
import sys
import traceback
import weakref
from collections.abc import Callable, Iterator

import pytest
from helpers import WAIT, left_on_a_closed_loop

from actors import (
    ActorSystem,
    ActorSystemError,
    EventKind,
    TaskStatus,
    TaskTimeoutError,
    unified_task_manager,
)
from actors.core import _bridge, bridge_for
from supervisors.testing import FakeClock

RUNS = 5
"""Sequential ``asyncio.run`` calls per test, each on an event loop of its own."""


async def double(x: int) -> int:
    return x * 2


async def job(system: ActorSystem | None, i: int) -> weakref.ref[asyncio.AbstractEventLoop]:
    """One job on a fresh loop: a coroutine task (it runs on this loop) and a query,
    through ``system``'s client (None: the lazy module-level one)."""
    tm = unified_task_manager if system is None else system.task_manager
    task_id = await tm.register_task(f"job-{i}", double, (i,))
    assert await tm.execute_task(task_id, wait=True) == 2 * i
    assert [info.name for info in await tm.get_all_tasks()][-1] == f"job-{i}"
    return weakref.ref(asyncio.get_running_loop())


def closed_loops_kept() -> int:
    """Closed event loops the bridge registry still holds."""
    return sum(loop.is_closed() for loop in list(_bridge._bridges))


@pytest.fixture
def lazy_client() -> Iterator[None]:
    yield
    asyncio.run(unified_task_manager.shutdown())


def test_closed_loops_that_called_through_one_system_are_freed() -> None:
    with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        assert system.blocking.get_all_tasks() == []  # a call on the system's own loop
        assert system._loop_thread is not None
        own = system._loop_thread.loop
        loops = [asyncio.run(job(system, i)) for i in range(RUNS)]
        gc.collect()
        # Only the newest closed loop is kept (by the last-used caches), whatever RUNS is.
        assert [ref() is None for ref in loops] == [True] * (RUNS - 1) + [False]
        assert closed_loops_kept() == 1
        assert sum(b.loop.is_closed() for b in system._bridges) == 1
        # The live loop is still reached (a failing or stopping system fails its calls).
        assert own in _bridge._bridges
        assert _bridge._bridges[own] in system._bridges
        assert len(system.blocking.get_all_tasks()) == RUNS


def test_closed_loops_that_called_through_the_lazy_client_are_freed(
    lazy_client: None,
) -> None:
    loops = [asyncio.run(job(None, i)) for i in range(RUNS)]
    system = unified_task_manager._system
    assert system is not None
    gc.collect()
    assert [ref() is None for ref in loops] == [True] * (RUNS - 1) + [False]
    assert closed_loops_kept() == 1
    assert sum(b.loop.is_closed() for b in system._bridges) == 1


def test_a_closed_loops_bridge_dropped_says_so_even_if_the_close_discarded_its_drain() -> None:
    """A post lands just before its loop closes, so the close discards the drain it
    scheduled. Once another loop gets a bridge, the closed loop's is dropped and every
    post to it says the loop is closed (they were queued for ever, each told True)."""
    loop = asyncio.new_event_loop()
    bridge = bridge_for(loop)
    ran: list[int] = []
    assert bridge.post(ran.append, 1) is True
    loop.close()
    other = asyncio.new_event_loop()
    try:
        assert bridge_for(other).loop is other
    finally:
        other.close()
    assert loop not in _bridge._bridges
    assert [bridge.post(ran.append, i) for i in (2, 3)] == [False, False]
    assert bridge.post2(lambda a, b: ran.append(a + b), 4, 5) is False
    assert (bridge.closed, list(bridge._pending), ran) == (True, [], [])


def double_in_a_function(x: int) -> int:
    return x * 2


@pytest.mark.parametrize(
    ("new", "body"), [(True, double), (False, double), (False, double_in_a_function)]
)
def test_a_task_whose_loop_closed_with_a_drain_scheduled_fails_to_start(
    new: bool, body: Callable[[int], object]
) -> None:
    """A post lands just before its loop closes, so the close discards the drain it
    scheduled, and the loop's bridge still expects that drain (no other loop has made a
    bridge since, to drop it). A task of that loop executed then fails to start, as on
    any closed loop. Before, its start was queued behind the discarded drain, told it
    went through: the task said running for ever, holding its slot, and never ran."""
    ran: list[int] = []
    with ActorSystem({"CLEANUP_INTERVAL": 0, "USE_NEW_TASK_SYSTEM": new}) as system:
        blocking = system.blocking
        assert blocking.get_all_tasks() == []  # (its loop's bridge is made: no new one later)
        loop = asyncio.new_event_loop()
        try:
            tm = system.task_manager
            task_id = loop.run_until_complete(tm.register_task("late", body, (1,)))
            assert bridge_for(loop).post(ran.append, 1) is True  # a drain scheduled
        finally:
            loop.close()  # discards it
        assert blocking.execute_task(task_id) is True
        with pytest.raises(ActorSystemError) as failed:
            blocking.wait_for_task(task_id, timeout=WAIT)
        status = blocking.get_task_status(task_id)
    assert (str(failed.value), status, ran) == (
        f"task {task_id!r} cannot start: the event loop that registered it is closed",
        TaskStatus.FAILED,
        [],
    )


def test_a_stop_queues_nothing_on_a_closed_loop_whose_close_discarded_its_drain() -> None:
    """The stop fails the calls still waiting on each loop that called the system,
    through its bridge. To a closed loop whose close discarded a drain, that post was
    queued for ever (until another loop made a bridge), holding the stopped system, its
    tasks and their records; it is not posted, and the bridge knows its loop closed."""
    ran: list[int] = []
    with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        assert system.blocking.get_all_tasks() == []  # (its loop's bridge is made)
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(system.task_manager.get_all_tasks()) == []
            bridge = bridge_for(loop)
            assert bridge.post(ran.append, 1) is True  # a drain scheduled
        finally:
            loop.close()  # discards it
    assert (bridge.closed, list(bridge._pending), ran) == (True, [], [])
    assert bridge.post(ran.append, 2) is False


def test_tasks_that_failed_keep_no_closed_loop_and_retry_on_the_callers() -> None:
    """A failed task keeps its loop only while the loop lives (to retry it there): once
    its loop closed and another loop made a bridge, the loop is freed, and a retry runs
    on the loop of its caller. (The failure is seen in the event stream: a caller that
    raises the task's error leaves its own frames in the error's traceback, and so its
    loop, until the next caller gets the error.)"""
    clock = FakeClock()
    attempts: dict[str, int] = {}

    async def hangs_once(name: str) -> int:
        attempts[name] = attempts.get(name, 0) + 1
        if attempts[name] == 1:
            await asyncio.Event().wait()
        return id(asyncio.get_running_loop())

    async def fail(i: int) -> tuple[str, weakref.ref[asyncio.AbstractEventLoop]]:
        tm = system.task_manager
        task_id = await tm.register_task("hangs", hangs_once, (f"job-{i}",), timeout=2)
        async with tm.events() as stream:
            await tm.execute_task(task_id)
            await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)
            clock.advance(2)
            event = await asyncio.wait_for(anext(aiter(stream)), WAIT)
            while (event.kind, event.task_id) != (EventKind.FAILED, task_id):
                event = await asyncio.wait_for(anext(aiter(stream)), WAIT)
        return task_id, weakref.ref(asyncio.get_running_loop())

    async def retry(task_id: str) -> tuple[bool, str]:
        tm = system.task_manager
        ran_on = await tm.wait_for_task(await tm.retry_task(task_id), timeout=WAIT)
        return ran_on == id(asyncio.get_running_loop()), str(await tm.get_task_error(task_id))

    with ActorSystem({"CLEANUP_INTERVAL": 0}, clock=clock) as system:
        failed = [asyncio.run(fail(i)) for i in range(RUNS)]
        gc.collect()
        assert [ref() is None for _, ref in failed] == [True] * (RUNS - 1) + [False]
        assert closed_loops_kept() == 1
        first, _ = failed[0]
        assert asyncio.run(retry(first)) == (
            True,
            f"task {first!r} attempt 1 timed out after 2.0s",
        )
        # A task that failed on a loop still alive (the system's own) is retried there.
        blocking = system.blocking
        on_own = blocking.register_task("hangs", hangs_once, ("own",), timeout=2)
        blocking.execute_task(on_own)
        clock.wait_for_timers(1, WAIT)
        clock.advance(2)
        with pytest.raises(TaskTimeoutError):
            blocking.wait_for_task(on_own, timeout=WAIT)
        assert system._loop_thread is not None
        own = id(system._loop_thread.loop)
        again = asyncio.run(system.task_manager.retry_task(on_own))
        assert blocking.wait_for_task(again, timeout=WAIT) == own


async def fails_in_a_coroutine() -> None:
    raise ValueError("broken")


def fails_in_a_function() -> None:
    raise ValueError("broken")


@pytest.mark.parametrize("body", [fails_in_a_coroutine, fails_in_a_function])
async def test_a_failed_tasks_error_keeps_its_own_traceback_however_many_wait(
    body: Callable[[], object],
) -> None:
    """Each caller that raises a failed task's error adds its frames to the traceback of
    that one error object, which the task keeps until it is cleaned up: every caller
    gets it with the traceback it had when the task failed, which starts in the task's
    own code (not in actorflow's runner, whose frame holds the attempt and its loop)."""
    async with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        tm = system.task_manager
        task_id = await tm.register_task("fails", body)
        with pytest.raises(ValueError, match=r"^broken$"):
            await tm.execute_task(task_id, wait=True)
        for _ in range(20):
            with pytest.raises(ValueError, match=r"^broken$"):
                await tm.wait_for_task(task_id, timeout=WAIT)
        error = await tm.get_task_error(task_id)
        assert error is not None
        assert [frame.name for frame in traceback.extract_tb(error.__traceback__)] == [
            body.__name__
        ]


# From Python 3.12 a coroutine's frame that ends while something holds it (a traceback)
# is linked to the frame that ran it (`f_back`), up the loop's own frames: a kept error of
# any coroutine that raised keeps its loop, in plain asyncio too (a task's exception,
# stored, keeps its closed loop on 3.12, not on 3.11). Nothing a library can cut.
_KEEPS_ITS_STACK = pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="Python 3.12+ links an ended coroutine frame to its caller's (f_back): a kept "
    "traceback keeps the loop's frames, in plain asyncio as well",
)


@pytest.mark.parametrize(
    "body",
    [pytest.param(fails_in_a_coroutine, marks=_KEEPS_ITS_STACK), fails_in_a_function],
)
def test_tasks_whose_code_raised_keep_no_closed_loop(body: Callable[[], object]) -> None:
    """The error of a task whose own code raised keeps the task's frames (and, through
    them, the frames of actorflow's runners that called it): none of them holds the
    attempt once it ended, so no closed loop is kept until the task is cleaned up.
    (On the new task system: the old one runs functions in the loop's default
    executor, whose work item holds the attempt.)"""

    async def fail() -> weakref.ref[asyncio.AbstractEventLoop]:
        tm = system.task_manager
        task_id = await tm.register_task("fails", body)
        async with tm.events() as stream:
            await tm.execute_task(task_id)
            event = await asyncio.wait_for(anext(aiter(stream)), WAIT)
            while (event.kind, event.task_id) != (EventKind.FAILED, task_id):
                event = await asyncio.wait_for(anext(aiter(stream)), WAIT)
        return weakref.ref(asyncio.get_running_loop())

    with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        loops = [asyncio.run(fail()) for _ in range(RUNS)]
        gc.collect()
        assert [ref() is None for ref in loops] == [True] * (RUNS - 1) + [False]
        assert closed_loops_kept() == 1


@pytest.mark.parametrize("new", [True, False])
def test_a_coroutine_left_pending_when_its_loop_closed_fails_at_the_next_cleanup(
    new: bool,
) -> None:
    """A loop closed with an attempt's asyncio task still pending (``loop.close()``
    after ``run_until_complete``; ``asyncio.run`` cancels them first) never runs it
    again. Before, the task said running for ever (with no timeout, nobody cancelling
    it), holding its concurrency slot (new system): the next task stayed queued."""
    clock = FakeClock()
    config = {"CLEANUP_INTERVAL": 5, "MAX_CONCURRENT_TASKS": 1, "USE_NEW_TASK_SYSTEM": new}
    with ActorSystem(config, clock=clock) as system:
        tm, blocking = system.task_manager, system.blocking
        task_id = left_on_a_closed_loop(tm)
        after = blocking.register_task("after", lambda: "ran")
        assert blocking.execute_task(after) is True
        assert blocking.get_task_status(task_id) is TaskStatus.RUNNING
        if new:  # behind its slot
            assert blocking.get_task_status(after) is TaskStatus.QUEUED
        else:  # the old manager has no concurrency limit: it runs (in a pool thread)
            assert blocking.wait_for_task(after, timeout=WAIT) == "ran"
        clock.wait_for_timers(2, WAIT)  # each manager's cleanup timer
        clock.advance(5)
        with pytest.raises(ActorSystemError) as failed:
            blocking.wait_for_task(task_id, timeout=WAIT)
        assert str(failed.value) == (
            f"task {task_id!r} attempt 1 ended unfinished: the event loop running it was "
            "closed without cancelling it"
        )
        assert blocking.wait_for_task(after, timeout=WAIT) == "ran"
        assert blocking.get_task_status(task_id) is TaskStatus.FAILED
        assert blocking.get_metrics().failures == 1
