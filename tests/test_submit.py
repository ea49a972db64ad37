"""`tm.submit(func, *args, **options)`: register, execute and wait in one call, on both
task systems. Time is a `FakeClock`; waits are on outcomes, bounded by `WAIT`."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import weakref
from typing import Any

import pytest
from helpers import WAIT, Boom, RecordingPort, Replies, add, double, requests_of, spy_on_facade

from actors import (
    ActorSystem,
    DependencyFailedError,
    EventKind,
    InvalidTaskError,
    TaskCancelledError,
    TaskNotFoundError,
    TaskPriority,
    TaskStatus,
    UnifiedTaskManager,
)
from actors.core import LoopThread, bridge_for
from actors.runtime import _outbox, messages
from actors.runtime._manager_base import FLUSH_AT, BaseManager
from actors.runtime._monitor import TaskMonitorActor
from supervisors.testing import FakeClock


def fail(message: str) -> None:
    raise Boom(message)


async def test_submit_returns_a_coroutine_functions_result(tm: UnifiedTaskManager) -> None:
    assert await asyncio.wait_for(tm.submit(double, 21), WAIT) == 42


async def test_submit_returns_a_plain_functions_result_with_kwargs(
    tm: UnifiedTaskManager,
) -> None:
    assert await asyncio.wait_for(tm.submit(add, 1, kwargs={"y": 2}), WAIT) == 3


async def test_submit_raises_the_tasks_error_and_the_task_stays_failed(
    tm: UnifiedTaskManager, backend: str
) -> None:
    with pytest.raises(Boom, match=r"^no luck$"):
        await asyncio.wait_for(tm.submit(fail, "no luck", task_id="f1"), WAIT)
    info = await tm.get_task("f1")
    assert (info.status, info.attempts, info.backend, info.name) == (
        TaskStatus.FAILED,
        1,
        backend,
        "fail",
    )


async def test_submit_names_the_task_after_the_function_and_takes_every_option(
    tm: UnifiedTaskManager,
) -> None:
    calls: list[int] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise Boom("again")
        return x

    result = await asyncio.wait_for(
        tm.submit(
            flaky,
            7,
            task_id="s1",
            task_type="io",
            description="retried",
            metadata={"k": "v"},
            priority=TaskPriority.HIGH,
            max_retries=2,
        ),
        WAIT,
    )
    assert (result, calls) == (7, [7, 7, 7])
    info = await tm.get_task("s1")
    assert (info.name, info.task_type, info.description, dict(info.metadata)) == (
        "test_submit_names_the_task_after_the_function_and_takes_every_option.<locals>.flaky",
        "io",
        "retried",
        {"k": "v"},
    )
    assert (info.priority, info.attempts, info.status) == (
        TaskPriority.HIGH,
        3,
        TaskStatus.COMPLETED,
    )
    named = await asyncio.wait_for(tm.submit(functools.partial(add, 1), 2, name="sum"), WAIT)
    assert named == 3
    assert [i.name for i in await tm.get_all_tasks()][-1] == "sum"


async def test_submit_waits_for_its_dependencies(tm: UnifiedTaskManager) -> None:
    first = await tm.register_task("first", double, (1,))
    assert await asyncio.wait_for(tm.submit(add, 5, dependencies=[first]), WAIT) == 5
    assert await tm.get_task_status(first) == TaskStatus.COMPLETED


async def test_submit_with_a_failed_dependency_raises_dependency_failed(
    tm: UnifiedTaskManager,
) -> None:
    broken = await tm.register_task("broken", fail, ("x",))
    with pytest.raises(Boom):
        await asyncio.wait_for(tm.execute_task(broken, wait=True), WAIT)
    with pytest.raises(DependencyFailedError, match=broken):
        await asyncio.wait_for(tm.submit(add, 1, dependencies=[broken], task_id="d"), WAIT)
    assert await tm.get_task_status("d") == TaskStatus.CANCELLED


async def test_bad_options_are_refused_before_anything_changes(tm: UnifiedTaskManager) -> None:
    with pytest.raises(InvalidTaskError, match=r"unknown option\(s\) 'y'.*kwargs=\{\.\.\.\}"):
        await tm.submit(add, 1, y=2)  # type: ignore[call-overload]
    with pytest.raises(InvalidTaskError, match=r"^max_retries must be an int >= 0, got -1$"):
        await tm.submit(add, 1, max_retries=-1)
    with pytest.raises(InvalidTaskError, match=r"^func must be callable"):
        await tm.submit(42)  # type: ignore[call-overload]
    assert await tm.get_all_tasks() == []


async def test_an_unknown_dependency_is_refused_and_leaves_no_routing_entry(
    system: ActorSystem, tm: UnifiedTaskManager
) -> None:
    with pytest.raises(TaskNotFoundError, match="'nope'"):
        await asyncio.wait_for(tm.submit(add, 1, dependencies=["nope"], task_id="x"), WAIT)
    assert await tm.get_all_tasks() == []
    # The id is free again: a later task may take it.
    assert await asyncio.wait_for(tm.submit(add, 2, task_id="x"), WAIT) == 2


async def test_an_outcome_reaches_its_manager_when_the_facade_no_longer_routes_it(
    system: ActorSystem, tm: UnifiedTaskManager, backend: str
) -> None:
    """An attempt's outcome travels through the facade; for a task the facade does not
    route (any more), it goes to both managers, and the task's own one takes it."""
    assert system._state is not None
    states = system._state.states
    started = asyncio.Event()
    release = asyncio.Event()

    async def gated() -> int:
        started.set()
        await release.wait()
        return 7

    await asyncio.wait_for(tm.register_task("g", gated, task_id="g"), WAIT)
    call = asyncio.ensure_future(tm.execute_task("g", wait=True))
    await asyncio.wait_for(started.wait(), WAIT)
    del states["facade"].owners["g"]
    release.set()
    assert await asyncio.wait_for(call, WAIT) == 7
    await asyncio.wait_for(tm.get_metrics(), WAIT)  # the managers took what came before
    manager = states["task_manager" if backend == "new" else "legacy_task_manager"]
    assert manager.tasks["g"].status is TaskStatus.COMPLETED


async def test_a_registration_its_manager_refuses_leaves_no_routing_entry(
    system: ActorSystem, tm: UnifiedTaskManager, backend: str
) -> None:
    """The facade routes a registration on to its manager as it is; if the manager
    refuses it (here: a dependency the facade still routes but the manager no longer
    has), the manager has the facade forget the id again, for `register_task` as for
    `submit`."""
    assert system._state is not None
    system._state.states["facade"].owners["ghost"] = backend  # gone from the manager
    with pytest.raises(TaskNotFoundError, match=r"dependency 'ghost' of task 'r'"):
        await asyncio.wait_for(
            tm.register_task("r", add, (1,), dependencies=["ghost"], task_id="r"), WAIT
        )
    with pytest.raises(TaskNotFoundError, match=r"dependency 'ghost' of task 'add'"):
        await asyncio.wait_for(tm.submit(add, 1, dependencies=["ghost"], task_id="s"), WAIT)
    # Both ids are free again.
    assert await asyncio.wait_for(tm.register_task("r", add, (3,), task_id="r"), WAIT) == "r"
    assert await asyncio.wait_for(tm.execute_task("r", wait=True), WAIT) == 3
    assert await asyncio.wait_for(tm.submit(add, 4, task_id="s"), WAIT) == 4


async def test_cancelling_the_call_cancels_the_task(tm: UnifiedTaskManager) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def hang() -> None:
        started.set()
        await release.wait()

    call = asyncio.ensure_future(tm.submit(hang, task_id="h"))
    await asyncio.wait_for(started.wait(), WAIT)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The Cancel left before the call returned: the facade delivers it first.
    info = await tm.get_task("h")
    assert info.status is TaskStatus.CANCELLED
    assert isinstance(info.error, TaskCancelledError)


async def test_submit_is_one_message_to_the_facade(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = spy_on_facade(system, monkeypatch, lambda message: (type(message),))
    assert await asyncio.wait_for(tm.submit(add, 2, 3), WAIT) == 5
    assert sent == [messages.SubmitTask]


async def test_a_sequential_caller_wakes_before_its_outcome_is_flushed(
    system: ActorSystem, tm: UnifiedTaskManager
) -> None:
    """A coroutine task's waiter on its own loop wakes before the outbox flushes the
    attempt's outcome: the caller's next call leaves in that same flush, after the
    outcome (one loop iteration per call, not two), and finds the task completed."""
    box = _outbox.outbox(bridge_for(asyncio.get_running_loop()))

    async def caller() -> tuple[int, list[Any]]:
        result = await tm.submit(double, 4, task_id="seq1")
        return result, list(box.items)  # what the outbox holds as the caller wakes

    result, queued = await asyncio.wait_for(caller(), WAIT)
    assert result == 8
    assert len(queued) == 3
    assert queued[0] is system._check()  # through the facade, in order with the calls
    assert isinstance(queued[1], messages.AttemptDone)
    assert (queued[1].task_id, queued[1].value) == ("seq1", 8)
    assert await tm.get_task_status("seq1") is TaskStatus.COMPLETED
    assert not box.items


async def test_a_waiter_on_another_loop_wakes_after_its_manager_has_the_outcome(
    tm: UnifiedTaskManager,
) -> None:
    """A coroutine task runs on loop A, its caller waits on this loop. The attempt's
    outcome leaves A in A's outbox flush (held here, A's thread blocked in it): the
    caller must not wake before that, or its next call (a cleanup) reaches the manager
    first and misses the task (the demo's durable phase lost 1 in 20 runs so)."""
    here = asyncio.get_running_loop()
    due = asyncio.Event()
    release = threading.Event()

    class Held(_outbox.Outbox):
        __slots__ = ()

        def flush(self) -> None:
            if not release.is_set():
                here.call_soon_threadsafe(due.set)
                release.wait(WAIT)
            super().flush()

    async def hold() -> _outbox.Outbox:
        loop = asyncio.get_running_loop()
        box = bridge_for(loop).outbox = Held(loop)
        return box

    async def caller() -> tuple[int, int]:
        value = await tm.execute_task("a1", wait=True)
        return value, await tm.cleanup_completed_tasks(max_age=0)

    other = LoopThread("loop-a")
    try:
        on_a = other.loop

        async def register() -> str:  # made on A (a call made here is this loop's)
            return await tm.register_task("a1", double, (4,), task_id="a1")

        registered = asyncio.run_coroutine_threadsafe(register(), on_a)
        assert await asyncio.wait_for(asyncio.wrap_future(registered), WAIT) == "a1"
        held = asyncio.run_coroutine_threadsafe(hold(), on_a)
        box = await asyncio.wait_for(asyncio.wrap_future(held), WAIT)
        call = asyncio.ensure_future(caller())
        await asyncio.wait_for(due.wait(), WAIT)  # the outcome waits in A's outbox
        if None not in list(box.items)[::3]:  # the answer does not wait behind it:
            await asyncio.wait_for(asyncio.shield(call), WAIT)  # the caller goes first
        release.set()
        assert await asyncio.wait_for(call, WAIT) == (8, 1)
    finally:
        release.set()
        assert other.stop(WAIT) is True


async def test_a_burst_of_calls_is_one_message_to_the_facade(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls a loop makes in one iteration reach the facade as one `Batch`, in order.
    The submits are sent when they are made (one `Batch`); the ``cancel_task``
    coroutine runs in a later iteration, so its `Cancel` follows them and finds the last."""
    sent = spy_on_facade(system, monkeypatch, lambda message: (type(message),))
    calls = [tm.submit(add, i, 1, task_id=f"b{i}") for i in range(50)]
    cancelled = tm.cancel_task("b49")
    results = await asyncio.wait_for(
        asyncio.gather(*calls, cancelled, return_exceptions=True), WAIT
    )
    assert results[:49] == [i + 1 for i in range(49)]
    assert isinstance(results[49], TaskCancelledError)
    assert results[50] is True
    factory = asyncio.get_running_loop().get_task_factory()
    if factory is not None and factory is getattr(asyncio, "eager_task_factory", None):
        # An eager task factory starts the ``cancel_task`` coroutine as `gather` wraps
        # it, in this iteration: its `Cancel` leaves in the same `Batch`, after them.
        assert sent == [messages.Batch]
    else:
        assert sent == [messages.Batch, messages.Cancel]


async def test_submit_from_inside_a_task_lends_its_slot(backend: str) -> None:
    """A task that submits a child and waits for it must not starve it of the only slot."""
    config = {"USE_NEW_TASK_SYSTEM": backend == "new", "MAX_CONCURRENT_TASKS": 1}
    async with ActorSystem(config) as running:
        tm = running.task_manager

        async def parent() -> int:
            return await tm.submit(double, 4) + 1

        assert await asyncio.wait_for(tm.submit(parent), WAIT) == 9


async def test_the_module_level_client_submits() -> None:
    from actors import unified_task_manager

    try:
        assert await asyncio.wait_for(unified_task_manager.submit(double, 5), WAIT) == 10
    finally:
        await unified_task_manager.shutdown()


async def test_a_shut_down_module_level_client_lets_its_system_go() -> None:
    # Its exit hook no longer needs the stopped system: nothing else keeps it, or the
    # records of its tasks, alive.
    from actors import unified_task_manager as tm

    try:
        assert await asyncio.wait_for(tm.submit(double, 4), WAIT) == 8
        system = weakref.ref(tm._get_system())
    finally:
        await tm.shutdown()
    gc.collect()
    assert system() is None


async def test_a_call_cancelled_while_its_lazy_system_shuts_down_starts_no_new_one() -> None:
    # The withdrawal of an abandoned call goes to the system the call went to: the
    # module-level client must not start a fresh system to send it.
    from actors import unified_task_manager as tm

    started = asyncio.Event()

    async def held() -> None:
        started.set()
        await asyncio.Event().wait()

    call = asyncio.ensure_future(tm.submit(held))
    try:
        await asyncio.wait_for(started.wait(), WAIT)
        stopping = asyncio.ensure_future(tm.shutdown())  # its first step runs first
        call.cancel()
        await asyncio.wait_for(stopping, WAIT)
        with pytest.raises(asyncio.CancelledError):
            await call
        assert tm._system is None
    finally:
        await tm.shutdown()


# -- the engine on its own: one call registers, executes and answers ---------------------


def test_engine_submit_registers_executes_and_answers_when_the_task_ends() -> None:
    from actors.engine import Engine, Policy, validate_registration

    engine = Engine(Policy.scheduler(2), FakeClock(100.0))
    port = RecordingPort()
    engine.attach(port)
    replies = Replies()
    spec = validate_registration("job", add, (1, 2))
    engine.submit(spec, "s", None, replies)  # type: ignore[arg-type]
    assert port.started == [("s", 1)]
    assert [(t.old, t.new) for t in engine.transitions] == [
        (None, TaskStatus.PENDING),
        (TaskStatus.PENDING, TaskStatus.QUEUED),
    ]
    assert replies.got == []
    # On success the attempt answers the caller itself (the engine counts it delegated);
    # on failure the engine answers.
    assert (engine.tasks["s"].waiters, engine.tasks["s"].delegated) == (replies, 1)
    boom = Boom("x")
    engine.attempt_done("s", 1, None, boom, None)
    assert replies.got == [("error", boom)]
    assert engine.tasks["s"].status is TaskStatus.FAILED


# -- a burst's arguments are checked by the outbox, in bounded chunks ----------------------


def _spy_batches(system: ActorSystem, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many requests each message to the facade carries (a lone request: 1)."""
    return spy_on_facade(system, monkeypatch, lambda message: (len(tuple(requests_of(message))),))


async def test_a_burst_is_checked_and_sent_in_bounded_chunks(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gather of N calls costs one loop iteration N small steps; the outbox checks
    and builds at most BUILD_CHUNK of them per iteration, in order."""
    monkeypatch.setattr(_outbox, "BUILD_CHUNK", 10)
    sent = _spy_batches(system, monkeypatch)
    calls = [tm.submit(add, i, 1) for i in range(15)]
    registered = [tm.register_task("r", add, (i,), task_id=f"r{i}") for i in range(10)]
    results = await asyncio.wait_for(asyncio.gather(*calls, *registered), WAIT)
    assert results == [i + 1 for i in range(15)] + [f"r{i}" for i in range(10)]
    assert sent == [10, 10, 5]


async def test_a_burst_of_executes_with_wait_is_sent_in_bounded_chunks(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``execute_task(wait=True)`` made at once is queued as the call itself; its
    `Execute` is made as the outbox sends it, at most BUILD_CHUNK per loop iteration,
    in order: a burst does not keep one message per call alive at once."""
    ids = await asyncio.wait_for(
        asyncio.gather(*(tm.register_task("r", add, (i, 1)) for i in range(25))), WAIT
    )
    monkeypatch.setattr(_outbox, "BUILD_CHUNK", 10)
    sent = spy_on_facade(system, monkeypatch, lambda message: (tuple(requests_of(message)),))
    box = _outbox.outbox(bridge_for(asyncio.get_running_loop()))
    calls = [tm.execute_task(task_id, wait=True) for task_id in ids]
    assert list(box.items)[1::3] == calls
    results = await asyncio.wait_for(asyncio.gather(*calls), WAIT)
    assert results == [i + 1 for i in range(25)]
    assert [len(batch) for batch in sent] == [10, 10, 5]
    executes = [request for batch in sent for request in batch]
    assert executes == [
        messages.Execute(task_id, True, call) for task_id, call in zip(ids, calls, strict=True)
    ]


async def test_a_refused_call_in_a_burst_raises_and_sends_nothing(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _spy_batches(system, monkeypatch)
    results = await asyncio.wait_for(
        asyncio.gather(
            tm.submit(add, 1, task_id="ok1"),
            tm.submit(add, 1, max_retries=-1),
            tm.register_task("bad", add, (1,), timeout=-1.0),
            tm.submit(add, 2, task_id="ok2"),
            return_exceptions=True,
        ),
        WAIT,
    )
    assert results[0] == 1
    assert results[3] == 2
    assert [type(r).__name__ for r in results[1:3]] == ["InvalidTaskError"] * 2
    assert str(results[1]) == "max_retries must be an int >= 0, got -1"
    assert str(results[2]).startswith("timeout must be")
    assert sent == [2]
    assert sorted(info.task_id for info in await tm.get_all_tasks()) == ["ok1", "ok2"]


async def test_a_submit_waits_for_its_build_as_the_call_alone_and_then_drops_its_arguments(
    tm: UnifiedTaskManager,
) -> None:
    """A submit made at once is queued in the outbox as the call itself, which holds
    what its request is built from (no tuple of them per call in flight, for the GC to
    track); once built, the call holds the arguments no more (only the task does)."""

    class Token:
        pass

    token = Token()
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(value: Token) -> str:
        started.set()
        await release.wait()
        return type(value).__name__

    box = _outbox.outbox(bridge_for(asyncio.get_running_loop()))
    assert list(box.items) == []
    call = tm.submit(hold, token, name="held")
    queued = list(box.items)
    assert (len(queued), queued[1]) == (3, call)
    assert (token,) in gc.get_referents(call)  # its arguments
    await asyncio.wait_for(started.wait(), WAIT)  # built, sent, and running
    assert (token,) not in gc.get_referents(call)
    assert hold not in gc.get_referents(call)
    release.set()
    assert await asyncio.wait_for(call, WAIT) == "Token"


def _monitor_batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the transition batches the monitor applies from now on."""
    sizes: list[int] = []
    apply = TaskMonitorActor._apply

    def spy(self: TaskMonitorActor, items: tuple[Any, ...], *args: Any) -> None:
        sizes.append(len(items))
        apply(self, items, *args)

    monkeypatch.setattr(TaskMonitorActor, "_apply", spy)
    return sizes


async def test_a_quiet_systems_transitions_reach_the_monitor_when_asked_for(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no subscriber (and no journal), a manager keeps its transitions (up to
    `FLUSH_AT`) instead of waking the monitor after every call; a metrics call
    flushes them first, so it counts every one."""
    sizes = _monitor_batch_sizes(monkeypatch)
    for i in range(5):
        assert await asyncio.wait_for(tm.submit(add, i, 1), WAIT) == i + 1
    assert sizes == []
    metrics = await asyncio.wait_for(tm.get_metrics(), WAIT)
    assert metrics.tasks_by_status == {"completed": 5}
    assert len(sizes) == 1


async def test_a_subscriber_hears_the_calls_after_its_own_and_none_before(
    tm: UnifiedTaskManager,
) -> None:
    assert await asyncio.wait_for(tm.submit(add, 1, 1, task_id="before"), WAIT) == 2
    stream = tm.events()
    assert await asyncio.wait_for(tm.submit(add, 2, 1, task_id="after"), WAIT) == 3

    async def first() -> Any:
        async for event in stream:
            return event
        return None

    event = await asyncio.wait_for(first(), WAIT)
    assert (event.kind, event.task_id) == (EventKind.REGISTERED, "after")


def _kinds_of_one_call(backend: str) -> list[EventKind]:
    """The events of one coroutine task that completes at its first attempt."""
    queued = [EventKind.QUEUED] if backend == "new" else []
    return [EventKind.REGISTERED, *queued, EventKind.STARTED, EventKind.COMPLETED]


async def _heard_until_completed(stream: Any) -> list[tuple[EventKind, str | None]]:
    heard: list[tuple[EventKind, str | None]] = []
    try:
        while not heard or heard[-1][0] is not EventKind.COMPLETED:
            event = await asyncio.wait_for(anext(stream), WAIT)
            heard.append((event.kind, event.task_id))
    finally:
        await stream.aclose()
    return heard


async def test_a_subscriber_hears_later_calls_while_the_other_manager_lags(
    tm: UnifiedTaskManager, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other task system's manager is held (its thread blocked) from just after
    ``events()`` until the monitor has applied a later call's transitions: the new
    subscriber still hears that call, from its registration on."""
    here = asyncio.get_running_loop()
    applied = asyncio.Event()
    release = threading.Event()
    other = "legacy_task_manager" if backend == "new" else "task_manager"
    receive = BaseManager.on_receive
    apply = TaskMonitorActor._apply

    def held(self: BaseManager, message: Any) -> Any:
        if other == self.CHILD_ID:
            release.wait(WAIT)
        return receive(self, message)

    def spy(self: TaskMonitorActor, items: tuple[Any, ...], *args: Any) -> None:
        apply(self, items, *args)
        if any((t.task_id, t.new) == ("after", "completed") for t in items):
            here.call_soon_threadsafe(applied.set)

    monkeypatch.setattr(TaskMonitorActor, "_apply", spy)
    monkeypatch.setattr(BaseManager, "on_receive", held)
    try:
        stream = tm.events()
        assert await asyncio.wait_for(tm.submit(double, 2, task_id="after"), WAIT) == 4
        metrics = asyncio.ensure_future(tm.get_metrics())  # flushes every manager
        await asyncio.wait_for(applied.wait(), WAIT)
    finally:
        release.set()
    assert (await asyncio.wait_for(metrics, WAIT)).tasks_by_status == {"completed": 1}
    heard = await _heard_until_completed(stream)
    assert heard == [(kind, "after") for kind in _kinds_of_one_call(backend)]


async def test_a_subscriber_hears_nothing_of_a_call_before_it_ended_late(
    tm: UnifiedTaskManager, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coroutine task's outcome leaves its loop behind the caller's wake-up, so a
    ``tm.events()`` right after ``await tm.submit(...)`` is sent with it; the task's
    manager is held on that outcome until the monitor has the subscription: the
    subscriber still hears nothing of that task, only of the next call."""
    subscribed = threading.Event()
    receive = BaseManager.on_receive
    subscribe = TaskMonitorActor._subscribe

    def carries_before(message: Any) -> bool:
        items = message.items if isinstance(message, messages.Batch) else (message,)
        return any(isinstance(m, messages.AttemptDone) and m.task_id == "before" for m in items)

    def held(self: BaseManager, message: Any) -> Any:
        if carries_before(message):
            subscribed.wait(WAIT)
        return receive(self, message)

    def spy(self: TaskMonitorActor, message: Any) -> Any:
        try:
            return subscribe(self, message)
        finally:
            subscribed.set()

    monkeypatch.setattr(TaskMonitorActor, "_subscribe", spy)
    monkeypatch.setattr(BaseManager, "on_receive", held)
    try:
        assert await asyncio.wait_for(tm.submit(double, 1, task_id="before"), WAIT) == 2
        stream = tm.events()
        assert await asyncio.wait_for(tm.submit(double, 2, task_id="after"), WAIT) == 4
    finally:
        subscribed.set()
    heard = await _heard_until_completed(stream)
    assert heard == [(kind, "after") for kind in _kinds_of_one_call(backend)]


async def test_a_burst_reaches_the_monitor_in_batches_of_flush_at(
    system: ActorSystem, tm: UnifiedTaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of calls is one message to the manager, which sends its transitions to
    the monitor every `FLUSH_AT` of them, not all at once when its mailbox runs dry."""
    sizes = _monitor_batch_sizes(monkeypatch)
    calls = [tm.register_task("r", add, (i,)) for i in range(3 * FLUSH_AT + 5)]
    await asyncio.wait_for(asyncio.gather(*calls), WAIT)
    metrics = await asyncio.wait_for(tm.get_metrics(), WAIT)  # the manager flushes first
    assert metrics.tasks_by_status == {"pending": 3 * FLUSH_AT + 5}
    assert sizes == [FLUSH_AT, FLUSH_AT, FLUSH_AT, 5]  # one transition per registration
