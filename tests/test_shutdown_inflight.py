"""Calls in flight on other threads and loops when the system shuts down: every caller
ends with a clear error, none hangs (the house rule: every call that waits has a bound).

A caller waits for a task or for a pool function that is stuck (it ignores its
cancellation token); the system is stopped from elsewhere. The callers wait on their
own thread (a blocking call) or on their own event loop (the async client); the test
waits for them with `WAIT` as a bound only, and lets the stuck functions go at its end.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pykka
import pytest

from actors import ActorSystem, ActorSystemError, TaskCancelledError
from actors.core import _loop_thread
from actors.observe import Event, Subscriber

WAIT = 5.0
"""Upper bound, in real seconds, on waiting for anything in these tests."""

SHUTDOWN = 0.25
"""``SHUTDOWN_TIMEOUT``: how long a stop waits for a stuck worker before abandoning it."""

ANSWERED = _loop_thread._answered

CANCELLED = (TaskCancelledError, "task 'stuck' was cancelled: the actor system shut down")
SHUT_DOWN = (ActorSystemError, "the actor system was shut down")


def config(backend: str = "new") -> dict[str, Any]:
    return {
        "USE_NEW_TASK_SYSTEM": backend == "new",
        "CLEANUP_INTERVAL": 0,
        "SHUTDOWN_TIMEOUT": SHUTDOWN,
    }


def stuck_function(gate: threading.Event, started: threading.Event) -> Callable[[], str]:
    def stuck() -> str:
        started.set()
        gate.wait(WAIT)  # ignores its cancellation token
        return "late"

    return stuck


def abandoned_actors_stop() -> None:
    """Wait (bounded) until the actors that the stop abandoned have stopped: the stuck
    worker holds the pool's stop until the deadline, so the children stopped after the
    pool (the monitor) get none of it left; they go on stopping in their own threads,
    after the stop returned (the leak check after the test does not wait for them)."""
    for ref in pykka.ActorRegistry.get_all():
        assert ref.actor_stopped.wait(WAIT), f"{ref} did not stop"


def in_a_thread(call: Callable[[], Any]) -> Future[Any]:
    """Run ``call`` on a plain thread of its own; its outcome as a future."""
    outcome: Future[Any] = Future()

    def run() -> None:
        try:
            outcome.set_result(call())
        except BaseException as exc:
            outcome.set_exception(exc)

    threading.Thread(target=run, name="caller").start()
    return outcome


def error_of(future: Future[Any]) -> tuple[type[BaseException], str]:
    """The error ``future`` ended with (within `WAIT`): its type and message."""
    error = future.exception(WAIT)
    assert error is not None, f"no error: {future.result()!r}"
    return type(error), str(error)


def caller_waiting(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once a blocking call made on an `in_a_thread` thread waits for its answer
    (`LoopThread.call` has sent the call to the loop)."""
    waiting = threading.Event()

    def answered(future: Any, seconds: float) -> bool:
        if threading.current_thread().name == "caller":
            waiting.set()
        return ANSWERED(future, seconds)

    monkeypatch.setattr(_loop_thread, "_answered", answered)
    return waiting


async def waiters_reach(system: ActorSystem, backend: str, task_id: str, count: int) -> None:
    """Return once the task's manager holds ``count`` waiters for it (bounded)."""
    assert system._state is not None
    child = "task_manager" if backend == "new" else "legacy_task_manager"
    records = system._state.states[child].tasks

    def held() -> int:
        waiters = records[task_id].waiters
        return 0 if waiters is None else len(waiters) if isinstance(waiters, list) else 1

    async def reached() -> None:
        while held() < count:
            await asyncio.sleep(0)

    await asyncio.wait_for(reached(), WAIT)


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_waits_for_a_task_on_other_threads_and_loops_end_when_the_system_shuts_down(
    backend: str,
) -> None:
    """A blocking ``wait_for_task`` on a plain thread and an async one on another event
    loop, both without a timeout: the shutdown cancels the task and both hear it."""
    gate, started = threading.Event(), threading.Event()
    try:
        async with ActorSystem(config(backend)) as system:
            tm = system.task_manager
            await tm.register_task("stuck", stuck_function(gate, started), task_id="stuck")
            assert await tm.execute_task("stuck") is True
            blocking = in_a_thread(lambda: system.blocking.wait_for_task("stuck"))
            other_loop = in_a_thread(lambda: asyncio.run(tm.wait_for_task("stuck")))
            await waiters_reach(system, backend, "stuck", 2)
        assert await asyncio.to_thread(error_of, blocking) == CANCELLED
        assert await asyncio.to_thread(error_of, other_loop) == CANCELLED
        assert not gate.is_set()  # (the function is still stuck: nobody waited for it)
        await asyncio.to_thread(abandoned_actors_stop)
    finally:
        gate.set()


def test_a_blocking_pool_submit_on_a_stuck_worker_ends_when_with_exits() -> None:
    """Nothing but the stop bounds a ``thread_pool.submit`` (it has no timeout): the
    stop waits ``SHUTDOWN_TIMEOUT`` for the stuck worker, abandons it, and fails the
    call."""
    gate, started = threading.Event(), threading.Event()
    try:
        with ActorSystem(config()) as system:
            stuck = stuck_function(gate, started)
            waiting = in_a_thread(lambda: system.blocking.thread_pool.submit(stuck))
            assert started.wait(WAIT)
        assert error_of(waiting) == SHUT_DOWN
        assert not gate.is_set()
        abandoned_actors_stop()
    finally:
        gate.set()


async def test_async_pool_submits_end_when_the_system_shuts_down() -> None:
    """One on another event loop, its function stuck on the pool's only worker; one on
    this loop, queued behind it: it never runs, and says so."""
    gate, started = threading.Event(), threading.Event()
    try:
        async with ActorSystem({**config(), "MAX_THREAD_WORKERS": 1}) as system:
            pool = system.task_manager.thread_pool
            stuck = stuck_function(gate, started)

            async def submit() -> Any:
                return await pool.submit(stuck)

            waiting = in_a_thread(lambda: asyncio.run(submit()))
            assert await asyncio.to_thread(started.wait, WAIT)
            queued = pool.submit(sum, (1, 2))  # (sent now: ahead of the pool's stop)
        assert await asyncio.to_thread(error_of, waiting) == SHUT_DOWN
        with pytest.raises(ActorSystemError) as never_ran:
            await asyncio.wait_for(queued, WAIT)
        assert str(never_ran.value) == (
            "thread_pool.submit('sum') did not run: the actor system shut down before a "
            "worker took it"
        )
        assert not gate.is_set()
        await asyncio.to_thread(abandoned_actors_stop)
    finally:
        gate.set()


def test_blocking_callers_end_when_another_thread_shuts_the_system_down() -> None:
    """``system.blocking.shutdown()`` on one thread while others wait on the system's
    loop thread, for a task and for a pool function, both stuck."""
    gate, started, pool_started = threading.Event(), threading.Event(), threading.Event()
    system = ActorSystem(config()).start()
    try:
        tm = system.blocking
        tm.register_task("stuck", stuck_function(gate, started), task_id="stuck")
        assert tm.execute_task("stuck") is True
        assert started.wait(WAIT)
        task_waiter = in_a_thread(lambda: tm.wait_for_task("stuck"))
        pool_caller = in_a_thread(lambda: tm.thread_pool.submit(stuck_function(gate, pool_started)))
        assert pool_started.wait(WAIT)
        assert in_a_thread(tm.shutdown).result(WAIT) is None
        assert error_of(task_waiter) == CANCELLED
        assert error_of(pool_caller) == SHUT_DOWN
        assert not gate.is_set()
        abandoned_actors_stop()
    finally:
        gate.set()
        system.stop_sync()  # (stopped already, unless an assertion failed first)


def test_a_blocking_caller_ends_when_the_stop_abandons_a_stuck_loop_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Something blocks the system's loop thread: a blocking call without a bound
    (``wait_for_task`` with no timeout) waits for it on another thread. The stop gives
    up on the thread by its deadline (``SHUTDOWN_TIMEOUT`` + `STOP_SLACK`) and abandons
    it: the caller hears that then, instead of waiting as long as the thread is stuck."""
    entered, release = threading.Event(), threading.Event()
    waiting_started = caller_waiting(monkeypatch)

    def hold_the_loop() -> None:
        entered.set()
        release.wait(WAIT)  # blocks the loop thread on purpose

    system = ActorSystem(config()).start()
    runner = system._loop_thread_for_blocking()
    try:
        runner.loop.call_soon_threadsafe(hold_the_loop)
        assert entered.wait(WAIT)
        waiting = in_a_thread(lambda: system.blocking.wait_for_task("never-answered"))
        assert waiting_started.wait(WAIT)
        system.stop_sync()
        assert runner.thread.is_alive()  # abandoned, still stuck
        assert error_of(waiting) == (
            ActorSystemError,
            "system.blocking.wait_for_task() was cancelled: the actor system stopped and "
            "abandoned its loop thread, which was still running its loop",
        )
        # A later call is refused at once (by the stopped system first).
        with pytest.raises(ActorSystemError, match=r"^the actor system is shut down"):
            system.blocking.get_all_tasks()
        with pytest.raises(ActorSystemError) as refused:
            runner.call(asyncio.sleep(0), None, "a late call")
        assert str(refused.value) == (
            "a late call was cancelled: the actor system stopped and abandoned its loop "
            "thread, which was still running its loop"
        )
    finally:
        release.set()
        system.stop_sync()
    runner.thread.join(WAIT)
    assert not runner.thread.is_alive()


async def test_event_streams_on_other_loops_and_threads_end_when_the_system_shuts_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ``async for`` over ``tm.events()`` on another event loop, and a blocking
    stream's ``get`` on a plain thread, both waiting for an event that never comes:
    the shutdown ends the iteration, and the blocking stream says it is closed (None)."""
    async with ActorSystem(config()) as system:
        tm = system.task_manager
        subscribed = threading.Event()

        async def iterate() -> list[Any]:
            async with tm.events() as stream:
                subscribed.set()
                return [event async for event in stream]

        other_loop = in_a_thread(lambda: asyncio.run(iterate()))
        assert await asyncio.to_thread(subscribed.wait, WAIT)
        blocking_stream = await asyncio.to_thread(system.blocking.events)
        get_waits = caller_waiting(monkeypatch)
        blocking = in_a_thread(lambda: blocking_stream.get(timeout=WAIT))
        assert await asyncio.to_thread(get_waits.wait, WAIT)
        # (the stream subscribed through the system's loop thread: the monitor holds both)
        await tm.get_metrics()
        assert system._state is not None
        assert len(system._state.states["task_monitor"].subscribers) == 2
    assert await asyncio.to_thread(other_loop.result, WAIT) == []
    assert await asyncio.to_thread(blocking.result, WAIT) is None


async def test_a_blocking_event_stream_is_closed_when_the_loop_stops_as_its_get_wakes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stop closes the stream's subscription (its ``get`` is woken on the blocking
    API's loop thread), then stops that loop: when the wake-up and the loop's stop run
    in one iteration of it, the ``get`` never runs again (the loop's end cancels it), and
    still says the stream is closed (None), not that the call was cancelled."""
    parked = threading.Event()
    get = Subscriber.get

    async def parking(subscriber: Subscriber) -> Event | None:
        parked.set()  # (the same step goes on to wait for its wake-up)
        return await get(subscriber)

    monkeypatch.setattr(Subscriber, "get", parking)
    async with ActorSystem(config()) as system:
        blocking_stream = await asyncio.to_thread(system.blocking.events)
        blocking = in_a_thread(lambda: blocking_stream.get(timeout=WAIT))
        assert await asyncio.to_thread(parked.wait, WAIT)
        runner = system._loop_thread
        assert runner is not None
        loop = runner.loop
        stopping = threading.Event()
        post = loop.call_soon_threadsafe

        def posting(callback: Callable[..., object], *args: Any) -> asyncio.Handle:
            handle = post(callback, *args)
            if callback == loop.stop:
                stopping.set()
            return handle

        monkeypatch.setattr(loop, "call_soon_threadsafe", posting)
        # The loop thread waits (bounded) until the stop is posted: the close's wake-up
        # and the stop, posted meanwhile, then run in its next iteration, together.
        post(stopping.wait, WAIT)
    assert await asyncio.to_thread(blocking.result, WAIT) is None
    assert stopping.is_set()
