"""Calls made at once: on a running loop, ``register_task``, ``execute_task``, ``submit``
and ``thread_pool.submit`` send their request when they are called and return a future
that is also a coroutine (`actors.core.Call`), so a ``gather`` of them costs no asyncio
task per call. Time is a `FakeClock`; waits are on outcomes, bounded by `WAIT`."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, add, journaled_manager, spy_on_facade

from actors import (
    ActorSystem,
    DuplicateTaskError,
    InvalidTaskError,
    TaskCancelledError,
    TaskNotFoundError,
    TaskStatus,
    UnifiedTaskManager,
)
from actors.core import Call, bridge_for
from actors.runtime import messages
from supervisors.testing import FakeClock


class Tasks:
    """Counts the asyncio tasks created on a loop (its task factory)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.created = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        self.created += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    def __enter__(self) -> Tasks:
        self.loop.set_task_factory(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.set_task_factory(None)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    release = threading.Event()
    yield release
    release.set()


async def job(x: int) -> int:
    return x


async def f_on_the_old_system_then_spy(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> list[Any]:
    """Register a task 'f' with the old system (new tasks go there from now on), then
    spy on what the facade is told: each message, a batch as one."""
    await tm.use_new_task_system(False)
    assert await asyncio.wait_for(tm.register_task("first", job, (0,), task_id="f"), WAIT) == "f"
    return spy_on_facade(system, monkeypatch, entries=lambda message: [message])


async def at_once(calls: list[Call[Any]]) -> list[Any]:
    """The calls' results (or errors), in order."""
    return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT)


def batched(told: list[Any]) -> list[tuple[type, str]]:
    """The first message told, which must be a batch: its messages' types and task ids."""
    assert type(told[0]) is messages.Batch
    return [(type(m), m.task_id) for m in told[0].items]


async def backends(tm: UnifiedTaskManager, *task_ids: str) -> list[str]:
    return [(await tm.get_task(task_id)).backend for task_id in task_ids]


async def test_a_gather_of_calls_creates_no_asyncio_task_per_call(tm: UnifiedTaskManager) -> None:
    n = 200
    with Tasks(asyncio.get_running_loop()) as tasks:
        submitted = await asyncio.wait_for(
            asyncio.gather(*(tm.submit(add, i, 1) for i in range(n))), WAIT
        )
        ids = await asyncio.wait_for(
            asyncio.gather(*(tm.register_task(f"r{i}", add, (i, 2)) for i in range(n))), WAIT
        )
        executed = await asyncio.wait_for(
            asyncio.gather(*(tm.execute_task(task_id, wait=True) for task_id in ids)), WAIT
        )
    assert submitted == [i + 1 for i in range(n)]
    assert executed == [i + 2 for i in range(n)]
    assert tasks.created == 0


async def test_a_call_is_a_future_and_a_coroutine_and_sent_when_made(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = spy_on_facade(system, monkeypatch)
    call = tm.submit(add, 2, 3, task_id="s")
    assert isinstance(call, Call)
    assert asyncio.isfuture(call)
    assert asyncio.iscoroutine(call)
    await asyncio.sleep(0)  # one iteration: the outbox sends, nobody awaits the call
    assert [(type(m), m.task_id) for m in sent] == [(messages.SubmitTask, "s")]
    assert await asyncio.wait_for(call, WAIT) == 5


async def test_the_requests_of_calls_made_at_once_have_every_field(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The eager calls make their requests with ``tuple.__new__`` (no keyword
    ``__new__`` per call): each is what its class makes of the same fields."""
    sent = spy_on_facade(system, monkeypatch)
    assert await asyncio.wait_for(tm.register_task("r", job, (1,), task_id="r"), WAIT) == "r"
    assert await asyncio.wait_for(tm.execute_task("r"), WAIT) is True
    assert await asyncio.wait_for(tm.register_task("q", job, (2,), task_id="q"), WAIT) == "q"
    assert await asyncio.wait_for(tm.execute_task("q", wait=True), WAIT) == 2
    assert await asyncio.wait_for(tm.submit(job, 3, task_id="s"), WAIT) == 3
    assert [(type(m).__name__, m.task_id) for m in sent] == [
        ("Register", "r"),
        ("Execute", "r"),
        ("Register", "q"),
        ("Execute", "q"),
        ("SubmitTask", "s"),
    ]
    assert [m == type(m)(**m._asdict()) for m in sent] == [True] * 5


async def test_a_registration_with_every_option_left_out_sends_the_fully_checked_spec(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made at once with no option, a registration skips the option checks and holds
    its arguments on the call until its request is built: the same spec all the same."""
    sent = spy_on_facade(system, monkeypatch)
    plain = tm.register_task("job", job, (4,))
    assert await asyncio.wait_for(plain, WAIT) == sent[0].task_id
    checked = tm.register_task("job", job, (4,), metadata={})  # every option checked
    assert await asyncio.wait_for(checked, WAIT) == sent[1].task_id
    assert [type(m).__name__ for m in sent] == ["Register", "Register"]
    assert sent[0].spec == sent[1].spec
    assert [type(value) for value in sent[0].spec] == [type(value) for value in sent[1].spec]
    assert [sent[0] == type(sent[0])(**sent[0]._asdict())] == [True]
    # Held until built, then dropped: the call keeps nothing of the task while it waits.
    assert [hasattr(plain, name) for name in ("client", "name", "func", "args")] == [False] * 4
    assert await asyncio.wait_for(tm.execute_task(sent[0].task_id, wait=True), WAIT) == 4


async def test_one_burst_routes_each_calls_task_to_its_own_system(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls made at once reach the facade as one batch: each per-task request goes to
    the manager of its task's system (and so does each attempt's outcome), and one
    naming no task is refused with `TaskNotFoundError`, the others still answered."""
    await tm.use_new_task_system(False)
    old_id = await asyncio.wait_for(tm.register_task("old", job, (1,)), WAIT)
    await tm.use_new_task_system(True)
    new_id = await asyncio.wait_for(tm.register_task("new", job, (2,)), WAIT)
    told = spy_on_facade(system, monkeypatch, entries=lambda message: [message])
    calls = [
        tm.execute_task(old_id, wait=True),
        tm.execute_task("nowhere", wait=True),
        tm.execute_task(new_id, wait=True),
    ]
    results = await at_once(calls)
    assert results[0] == 1
    assert results[2] == 2
    assert type(results[1]) is TaskNotFoundError
    assert str(results[1]) == "no task with id 'nowhere' (never registered, or cleaned up)"
    assert batched(told) == [
        (messages.Execute, old_id),
        (messages.Execute, "nowhere"),
        (messages.Execute, new_id),
    ]
    assert await backends(tm, old_id, new_id) == ["old", "new"]
    assert (await tm.get_task(old_id)).status is TaskStatus.COMPLETED
    assert (await tm.get_task(new_id)).status is TaskStatus.COMPLETED


async def test_one_burst_of_registrations_goes_to_the_system_new_tasks_go_to(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registrations made at once reach the facade as one batch: each new task goes to
    the system new tasks go to then, one depending on another of the same batch too,
    and a duplicate id is refused, the others still registered."""
    told = await f_on_the_old_system_then_spy(system, tm, monkeypatch)
    calls = [
        tm.register_task("a", job, (1,), task_id="a"),
        tm.register_task("b", job, (2,), task_id="b", dependencies=("a",)),
        tm.register_task("again", job, (3,), task_id="f"),
    ]
    results = await at_once(calls)
    assert results[:2] == ["a", "b"]
    assert type(results[2]) is DuplicateTaskError
    assert str(results[2]) == "task id 'f' is already registered; pick another or omit task_id"
    assert batched(told) == [
        (messages.Register, "a"),
        (messages.Register, "b"),
        (messages.Register, "f"),
    ]
    await tm.use_new_task_system(True)
    assert await asyncio.wait_for(asyncio.gather(tm.register_task("c", job, task_id="c")), WAIT)
    assert await backends(tm, "f", "a", "b", "c") == ["old", "old", "old", "new"]
    assert await asyncio.wait_for(tm.execute_task("b", wait=True), WAIT) == 2
    assert (await tm.get_task("a")).status is TaskStatus.COMPLETED


async def test_one_burst_of_submits_goes_to_the_system_new_tasks_go_to(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Submits made at once reach the facade as one batch: each task goes to the system
    new tasks go to then, and a duplicate id is refused, the others still run."""
    told = await f_on_the_old_system_then_spy(system, tm, monkeypatch)
    calls = [
        tm.submit(job, 1, task_id="s1"),
        tm.submit(job, 2, task_id="f"),
        tm.submit(job, 3, task_id="s3"),
    ]
    results = await at_once(calls)
    assert results[0] == 1
    assert results[2] == 3
    assert type(results[1]) is DuplicateTaskError
    assert str(results[1]) == "task id 'f' is already registered; pick another or omit task_id"
    assert batched(told) == [
        (messages.SubmitTask, "s1"),
        (messages.SubmitTask, "f"),
        (messages.SubmitTask, "s3"),
    ]
    await tm.use_new_task_system(True)
    assert await asyncio.wait_for(asyncio.gather(tm.submit(job, 4, task_id="s4")), WAIT) == [4]
    assert await backends(tm, "f", "s1", "s3", "s4") == ["old", "old", "old", "new"]
    assert (await tm.get_task("f")).status is TaskStatus.PENDING


async def test_create_task_wait_for_shield_and_run_coroutine_threadsafe_take_a_call(
    tm: UnifiedTaskManager,
) -> None:
    loop = asyncio.get_running_loop()
    assert await asyncio.wait_for(asyncio.create_task(tm.submit(add, 1, 1)), WAIT) == 2
    assert await asyncio.wait_for(tm.register_task("t", add, (3, 4), task_id="t"), WAIT) == "t"
    assert await asyncio.wait_for(asyncio.shield(tm.execute_task("t")), WAIT) is True
    threadsafe = asyncio.run_coroutine_threadsafe(tm.submit(add, 5, 6), loop)
    assert await asyncio.wait_for(asyncio.wrap_future(threadsafe), WAIT) == 11
    assert await asyncio.wait_for(tm.wait_for_task("t"), WAIT) == 7
    assert await asyncio.wait_for(tm.thread_pool.submit(add, 8, 9), WAIT) == 17
    assert await asyncio.wait_for(tm.execute_task("t"), WAIT) is False


async def test_a_submit_that_times_out_in_wait_for_cancels_its_task(
    tm: UnifiedTaskManager, gate: threading.Event
) -> None:
    call = tm.submit(gate.wait, WAIT, task_id="h")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(call, 0.01)
    assert call.cancelled()
    # The Cancel left when the call was cancelled: the facade delivers it first.
    info = await asyncio.wait_for(tm.get_task("h"), WAIT)
    assert info.status is TaskStatus.CANCELLED
    assert isinstance(info.error, TaskCancelledError)


async def test_cancelling_a_task_that_awaits_a_submit_cancels_the_submits_task(
    tm: UnifiedTaskManager, gate: threading.Event
) -> None:
    started = asyncio.Event()

    async def caller() -> Any:
        call = tm.submit(gate.wait, WAIT, task_id="c")
        started.set()
        return await call

    waiting = asyncio.create_task(caller())
    await asyncio.wait_for(started.wait(), WAIT)  # (set in the step that awaits the call)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.wait_for(tm.get_task_status("c"), WAIT) is TaskStatus.CANCELLED


async def test_a_cancelled_gather_cancels_its_submits_tasks(
    tm: UnifiedTaskManager, gate: threading.Event
) -> None:
    calls = asyncio.gather(*(tm.submit(gate.wait, WAIT, task_id=f"g{i}") for i in range(3)))
    await asyncio.sleep(0)
    calls.cancel()
    with pytest.raises(asyncio.CancelledError):
        await calls
    statuses = [await asyncio.wait_for(tm.get_task_status(f"g{i}"), WAIT) for i in range(3)]
    assert statuses == [TaskStatus.CANCELLED] * 3


async def test_a_cancelled_execute_wait_withdraws_its_waiter_and_the_task_goes_on(
    system: ActorSystem,
    tm: UnifiedTaskManager,
    monkeypatch: pytest.MonkeyPatch,
    gate: threading.Event,
) -> None:
    await asyncio.wait_for(tm.register_task("w", gate.wait, (WAIT,), task_id="w"), WAIT)
    sent = spy_on_facade(system, monkeypatch)
    call = tm.execute_task("w", wait=True)
    await asyncio.sleep(0)
    assert call.cancel()
    status = await asyncio.wait_for(tm.get_task_status("w"), WAIT)
    assert status in {TaskStatus.QUEUED, TaskStatus.RUNNING}  # not cancelled: it goes on
    unwait = [m for m in sent if isinstance(m, messages.Unwait)]
    assert [(m.task_id, m.waiter) for m in unwait] == [("w", unwait[0].waiter)]
    execute = [m for m in sent if isinstance(m, messages.Execute)]
    assert [(m.task_id, m.wait, m.reply is unwait[0].waiter) for m in execute] == [
        ("w", True, True)
    ]
    assert not _tracked(call)
    gate.set()
    assert await asyncio.wait_for(tm.wait_for_task("w"), WAIT) is True
    assert call.cancelled()


def _tracked(call: Call[Any]) -> bool:
    return call in call.bridge.calls


async def test_a_resolved_call_is_untracked_and_holds_no_cycle(tm: UnifiedTaskManager) -> None:
    calls = [tm.submit(add, 1), tm.register_task("x", add, (1,)), tm.thread_pool.submit(add, 1)]
    assert all(_tracked(call) for call in calls)
    await asyncio.wait_for(asyncio.gather(*calls), WAIT)
    waiting = tm.execute_task(calls[1].result(), wait=True)
    assert await asyncio.wait_for(waiting, WAIT) == 1
    assert [_tracked(call) for call in [*calls, waiting]] == [False] * 4
    # A call is its own reply: nothing it holds refers back to it (no cycle left).
    held_back = [
        any(call in gc.get_referents(held) for held in gc.get_referents(call))
        for call in [*calls, waiting]
    ]
    assert held_back == [False] * 4


def _tracked_call() -> Call[Any]:
    """A bare `Call` on the running loop, tracked as the client tracks one."""
    loop = asyncio.get_running_loop()
    call: Call[Any] = Call(loop=loop)
    call.bridge = bridge_for(loop)
    call.bridge.track(call, None, "Test", None)
    return call


def _from_a_thread(action: Any, *args: Any) -> None:
    """Run ``action(*args)`` on a thread of its own and wait for it (the loop waits)."""
    thread = threading.Thread(target=action, args=args)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()


async def test_a_call_answered_from_another_thread_settles_on_its_own_loop() -> None:
    answered, failed = _tracked_call(), _tracked_call()
    _from_a_thread(answered.set_result, 5)
    _from_a_thread(failed.set_exception, ValueError("no"))
    # Posted to the loop, as a reply's answer is: nothing changed on the other thread.
    assert [answered.done(), failed.done()] == [False, False]
    assert await asyncio.wait_for(answered, WAIT) == 5
    with pytest.raises(ValueError, match=r"^no$"):
        await asyncio.wait_for(failed, WAIT)
    assert [_tracked(answered), _tracked(failed)] == [False, False]


async def test_an_answer_to_a_cancelled_call_is_dropped_on_any_thread() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        call = _tracked_call()
        assert call.cancel()
        call.set_result(1)  # on its loop: dropped at once
        call.set_exception(ValueError("late"))
        _from_a_thread(call.set_result, 2)  # posted, then dropped
        settled = loop.create_future()
        loop.call_soon(settled.set_result, None)  # after the post's drain
        await asyncio.wait_for(settled, WAIT)
        assert call.cancelled()
        assert errors == []
    finally:
        loop.set_exception_handler(None)


def test_without_a_running_loop_a_call_is_a_coroutine() -> None:
    with ActorSystem({"CLEANUP_INTERVAL": 0}, clock=FakeClock()) as system:
        call = system.task_manager.submit(add, 20, 22)
        assert not isinstance(call, Call)
        assert asyncio.iscoroutine(call)
        assert asyncio.run(asyncio.wait_for(call, WAIT)) == 42


async def test_a_call_with_bad_arguments_raises_at_the_await(tm: UnifiedTaskManager) -> None:
    calls = [tm.execute_task("", wait=True), tm.submit(add, 1, colour="red")]
    assert [isinstance(call, Call) for call in calls] == [False, False]
    with pytest.raises(InvalidTaskError, match=r"^task_id must be a non-empty str, got ''$"):
        await calls[0]
    with pytest.raises(InvalidTaskError, match=r"^submit\(\) got unknown option\(s\) 'colour';"):
        await calls[1]
    bad = tm.register_task("", add)  # checked by the outbox: refused at the await
    with pytest.raises(InvalidTaskError, match=r"^name must be a non-empty str, got ''$"):
        await asyncio.wait_for(bad, WAIT)
    assert not _tracked(bad)  # type: ignore[arg-type]


async def test_with_a_journal_register_and_execute_are_calls_and_submit_a_coroutine(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    async with journaled_manager(path) as tm:
        registered = tm.register_task("add", add, (1, 2), task_id="a")
        assert isinstance(registered, Call)
        assert await registered == "a"
        with closing(sqlite3.connect(path)) as connection:  # committed when answered
            assert connection.execute("SELECT id, status FROM tasks").fetchall() == [
                ("a", "pending")
            ]
        executed = tm.execute_task("a", wait=True)
        assert isinstance(executed, Call)
        assert await executed == 3
        submitted = tm.submit(add, 2, 3)  # registered (committed), then executed
        assert not isinstance(submitted, Call)
        assert await submitted == 5
