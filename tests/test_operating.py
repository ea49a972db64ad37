"""Operating actorflow through the public API: metrics, Prometheus, the event stream,
circuit breakers shared by name, the resource governor and the task graph."""

from __future__ import annotations

import asyncio
import gc
import math
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors import (
    ActorSystem,
    ActorSystemError,
    Config,
    ConfigError,
    TaskInfo,
    TaskStatus,
    TaskTimeoutError,
    UnifiedTaskManager,
)
from actors.engine._breaker import CircuitBreaker
from actors.observe import GovernorPolicy, Pressure, ResourceSample, decide
from actors.observe._events import Event, EventKind, EventStream
from supervisors import ChildHandle, Kill
from supervisors.testing import FakeClock


async def noop(x: int = 0) -> int:
    return x


async def boom() -> None:
    raise ValueError("boom")


async def settle(clock: FakeClock, timers: int = 1) -> None:
    """Wait (off the loop) until ``timers`` timers are pending on the fake clock."""
    await asyncio.to_thread(clock.wait_for_timers, timers)


# -- crash tests: what they share ----------------------------------------------------------


def crash_config(backend: str | None = None, journal: Path | None = None) -> dict[str, Any]:
    """A system whose children restart at once (no backoff) and that cleans up nothing by
    itself; with ``backend``, the task system new tasks go to; with ``journal``, a
    folder, journaling to its file tasks.db."""
    config: dict[str, Any] = {"RESTART_BACKOFF_INITIAL": 0.0, "CLEANUP_INTERVAL": 0.0}
    if backend is not None:
        config["USE_NEW_TASK_SYSTEM"] = backend == "new"
    if journal is not None:
        config["JOURNAL_PATH"] = str(journal / "tasks.db")
    return config


def manager_of(backend: str) -> str:
    return "task_manager" if backend == "new" else "legacy_task_manager"


def received_by(
    monkeypatch: pytest.MonkeyPatch,
    child: str,
    then: Callable[[tuple[type, ...]], object] | None = None,
) -> list[tuple[type, ...]]:
    """What ``child`` is told from now on, in order: a message's type, and a batch's
    messages' types after it. ``then`` is called with each, once it is told."""
    from actors.runtime import messages

    received: list[tuple[type, ...]] = []
    tell = ChildHandle.tell

    def spy(handle: ChildHandle, message: Any) -> None:
        if handle.child_id != child:
            tell(handle, message)
            return
        items = message.items if type(message) is messages.Batch else ()
        record = (type(message), *(type(m) for m in items))
        received.append(record)
        tell(handle, message)
        if then is not None:
            then(record)

    monkeypatch.setattr(ChildHandle, "tell", spy)
    return received


def gated_task(fails: bool = False) -> tuple[asyncio.Event, Callable[[], Awaitable[int]]]:
    """A task that waits for its gate, then returns 1 (or, ``fails``, raises
    ValueError('boom')); and its gate."""
    gate = asyncio.Event()

    async def gated() -> int:
        await gate.wait()
        if fails:
            raise ValueError("boom")
        return 1

    return gate, gated


def fail_once(
    monkeypatch: pytest.MonkeyPatch,
    owner: object,
    name: str,
    error: BaseException,
    note: Callable[..., object] = lambda *args: "fault",
) -> list[object]:
    """``owner.name`` raises ``error`` on its first call, then is itself again. Returns
    the faults: ``note`` of the failed call's arguments, once it failed."""
    original = getattr(owner, name)
    faults: list[object] = []

    def faulty(*args: Any, **kwargs: Any) -> Any:
        if not faults:
            faults.append(note(*args))
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, faulty)
    return faults


class _Fault(BaseException):
    """Not an `Exception`: a request handler raising it crashes its manager."""


def fail_tell_once(
    monkeypatch: pytest.MonkeyPatch,
    child: str,
    kind: type,
    error: BaseException | None = None,
    note: Callable[[Any], object] = lambda message: message[0],
    where: Callable[[Any], bool] = lambda message: True,
) -> list[object]:
    """The first tell of a ``kind`` message to ``child`` (that ``where`` accepts) raises
    ``error`` (`_Fault('fault')` by default) before it delivers (as `ChildHandle.tell`
    raises); returns the faults: ``note`` of that message (by default what it carried
    first)."""
    fault = _Fault("fault") if error is None else error
    tell = ChildHandle.tell
    faults: list[object] = []

    def faulty(handle: ChildHandle, message: Any) -> None:
        if handle.child_id == child and type(message) is kind and where(message) and not faults:
            faults.append(note(message))
            raise fault
        tell(handle, message)

    monkeypatch.setattr(ChildHandle, "tell", faulty)
    return faults


def fail_after_one(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[object]:
    """``owner.name`` (`answer_all`, `start_all`: an iterator of actions) raises `_Fault`
    on its first call, as its first action would: that one taken, none run. Returns
    what that action was about (an answer's value, a start's task id)."""
    original = getattr(owner, name)
    faults: list[object] = []

    def faulty(actions: Any) -> None:
        if not faults:
            action = next(actions)
            faults.append(action[1] if len(action) == 2 else action[2].task_id)
            raise _Fault("fault")
        original(actions)

    monkeypatch.setattr(owner, name, faulty)
    return faults


def journal_log(monkeypatch: pytest.MonkeyPatch, actions: str) -> list[tuple[str, ...]]:
    """What the journal does from now on, in order: ``("write", *task ids)`` once it wrote
    a batch's records, and with ``actions`` "answer_all", ``("answer", *values)`` as it
    answers, or with "start_all", ``("start", count)`` as it starts attempts."""
    from actors.journal import JournalStore
    from actors.runtime import _journal

    log: list[tuple[str, ...]] = []
    write, act_all = JournalStore.write, getattr(_journal, actions)

    def spy_write(store: JournalStore, batch: Any) -> None:
        write(store, batch)
        log.append(("write", *(record.task_id for record in batch)))

    def spy_act_all(taken: Any) -> None:
        taken = list(taken)  # (an iterator: what is left of it if one crashes)
        if actions == "answer_all":
            log.append(("answer", *(str(value) for _, value in taken)))
        else:
            log.append(("start", str(len(taken))))
        act_all(taken)

    monkeypatch.setattr(JournalStore, "write", spy_write)
    monkeypatch.setattr(_journal, actions, spy_act_all)
    return log


async def register_a(tm: UnifiedTaskManager, wait: float = 10.0) -> str:
    """Register the task 'a' (noop(4)); its id, once the registration is answered."""
    return await asyncio.wait_for(tm.register_task("first", noop, (4,), task_id="a"), wait)


async def status_in_the_journal(config: dict[str, Any], task_id: str = "a") -> TaskStatus:
    """What the journal wrote: ``task_id``'s status in a new system on ``config``."""
    async with ActorSystem(config) as system:
        return await system.task_manager.get_task_status(task_id)


async def restarts_of(system: ActorSystem) -> dict[str, int]:
    return {r.id: r.restarts for r in await system.supervisor.which_children()}


async def restarts_after_a_facade_round_trip(
    system: ActorSystem, wait: float = 10.0
) -> dict[str, int]:
    """The restarts, read after a round trip through the facade's running incarnation:
    its restarts are over then (a dropped request's caller hears why before that
    crash's restart is counted)."""
    await asyncio.wait_for(system.task_manager.get_metrics(), wait)
    return await restarts_of(system)


async def crash_on_its_outcome(
    system: ActorSystem,
    received: list[tuple[type, ...]],
    outcome_comes: str,
    inject: Callable[[], object],
) -> tuple[ActorSystemError, TaskInfo, Any, dict[str, int]]:
    """Run a task 'first' that fails once released, ``inject`` a fault while it runs,
    then release it: its outcome comes alone or (``outcome_comes == "in a batch"``) in
    one outbox flush with a subscription. ``received`` starts with that outcome. Returns
    what its caller hears, the task, a later submit's result and the restarts."""
    wait = 10.0
    gate, gated = gated_task(fails=True)
    tm = system.task_manager
    first = await tm.register_task("first", gated, task_id="first")
    caller = asyncio.ensure_future(tm.execute_task(first, wait=True))
    assert await tm.get_task_status(first) is TaskStatus.RUNNING  # (after the Execute)
    inject()
    received.clear()
    gate.set()  # the task fails ahead of the next step here: its outcome is queued
    await asyncio.sleep(0)
    if outcome_comes == "in a batch":
        async with tm.events():  # in the same outbox flush as the outcome
            pass
    with pytest.raises(ActorSystemError) as caught:
        await asyncio.wait_for(caller, wait)
    info = await tm.get_task(first)
    after = await asyncio.wait_for(tm.submit(noop, 7, task_id="after"), wait)
    return caught.value, info, after, await restarts_of(system)


# -- metrics -------------------------------------------------------------------------------


async def test_metrics_count_every_status_type_and_outcome() -> None:
    clock = FakeClock()
    gate = asyncio.Event()

    async def blocked() -> None:
        await gate.wait()

    async with ActorSystem(
        {"MAX_CONCURRENT_TASKS": 1, "RESTART_BACKOFF_INITIAL": 0.0}, clock=clock
    ) as system:
        tm = system.task_manager
        first = await tm.register_task("first", blocked, task_type="io")
        second = await tm.register_task("second", noop, task_type="io")
        await tm.execute_task(first)
        await tm.execute_task(second)  # queued behind the first: the limit is 1
        clock.advance(3.0)  # second waits 3 s in the queue; first runs 3 s
        gate.set()
        await tm.wait_for_task(second, timeout=5)
        bad = await tm.register_task("bad", boom, task_type="cpu", max_retries=2)
        with pytest.raises(ValueError, match=r"^boom$"):
            await tm.execute_task(bad, wait=True)
        slow = await tm.register_task("slow", blocked, task_type="cpu", timeout=1.0)
        gate.clear()
        await tm.execute_task(slow)
        await settle(clock)
        clock.advance(1.0)
        with pytest.raises(TaskTimeoutError):
            await tm.wait_for_task(slow, timeout=5)
        pending = await tm.register_task("pending", noop, task_type="cpu")
        system.supervisor.child("thread_pool").tell(Kill())
        assert await tm.thread_pool.submit(sum, [1, 2]) == 3  # after the restart
        metrics = await tm.get_metrics()
    assert dict(metrics.tasks_by_status) == {"completed": 2, "failed": 2, "pending": 1}
    assert {t: dict(c) for t, c in metrics.tasks_by_type.items()} == {
        "io": {"completed": 2},
        "cpu": {"failed": 2, "pending": 1},
    }
    assert (metrics.retries, metrics.failures, metrics.timeouts) == (2, 2, 1)
    assert metrics.execution_time["io"].count == 2
    assert metrics.execution_time["io"].max == pytest.approx(3.0, rel=0.02)
    assert metrics.wait_time["io"].count == 2
    assert metrics.wait_time["io"].max == pytest.approx(3.0, rel=0.02)
    assert metrics.execution_time["cpu"].count == 4  # three attempts of bad, one of slow
    assert dict(metrics.restarts) == {"thread_pool": 1}
    assert set(metrics.mailbox_depth) == {
        "task_monitor",
        "thread_pool",
        "legacy_task_manager",
        "task_manager",
        "facade",
    }
    assert (metrics.concurrency_limit, metrics.max_concurrency) == (1, 1)
    assert (metrics.ready_queue, metrics.pool_queue, metrics.events_dropped) == (0, 0, 0)
    assert pending


async def test_prometheus_exposition_parses_and_follows_naming_conventions() -> None:
    async with ActorSystem() as system:
        tm = system.task_manager
        for i in range(3):
            await tm.execute_task(await tm.register_task(f"t{i}", noop, task_type="io"), wait=True)
        bad = await tm.register_task("bad", boom, task_type="cpu")
        with pytest.raises(ValueError, match=r"^boom$"):
            await tm.execute_task(bad, wait=True)
        text = await tm.render_prometheus()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for family in families.values():
        assert family.name.startswith("actorflow_")
        assert family.name == family.name.lower()
        assert family.documentation
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("actorflow_tasks", (("status", "completed"),))] == 3
    assert samples[("actorflow_tasks", (("status", "failed"),))] == 1
    assert samples[("actorflow_task_failures_total", ())] == 1
    assert samples[("actorflow_task_execution_seconds_count", (("task_type", "io"),))] == 3
    assert families["actorflow_task_failures"].type == "counter"
    assert families["actorflow_task_execution_seconds"].type == "summary"


# -- the event stream ----------------------------------------------------------------------


async def collect(stream: object, count: int) -> list[Event]:
    events: list[Event] = []
    async for event in stream:  # type: ignore[attr-defined]
        events.append(event)
        if len(events) == count:
            break
    return events


AFTER_HEARD = [
    (EventKind.REGISTERED, "after"),
    (EventKind.QUEUED, "after"),
    (EventKind.STARTED, "after"),
    (EventKind.COMPLETED, "after"),
]


async def a_task_heard(tm: UnifiedTaskManager, stream: object) -> list[Event]:
    """Submit a task 'after' (it returns 7) and collect its four events from ``stream``."""
    assert await asyncio.wait_for(tm.submit(noop, 7, task_id="after"), 10.0) == 7
    return await asyncio.wait_for(collect(stream, 4), 10.0)


async def test_event_stream_yields_every_transition_in_order() -> None:
    clock = FakeClock()
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("first")
        return "ok"

    # No periodic cleanup: its timers would be counted with the retry's.
    async with ActorSystem({"CLEANUP_INTERVAL": 0}, clock=clock) as system:
        tm = system.task_manager
        async with tm.events() as stream:
            task_id = await tm.register_task("flaky", flaky, max_retries=1, retry_delay=2.0)
            await tm.execute_task(task_id)
            await settle(clock)
            clock.advance(2.0)
            assert await tm.wait_for_task(task_id, timeout=5) == "ok"
            events = await asyncio.wait_for(collect(stream, 7), 5)
    assert [e.kind for e in events] == [
        EventKind.REGISTERED,
        EventKind.QUEUED,
        EventKind.STARTED,
        EventKind.RETRYING,
        EventKind.QUEUED,
        EventKind.STARTED,
        EventKind.COMPLETED,
    ]
    assert {(e.task_id, e.task_name) for e in events} == {(task_id, "flaky")}
    assert [e.at for e in events] == [0.0] * 4 + [2.0] * 3
    assert dict(events[3].detail) == {"error": "ConnectionError"}


@pytest.mark.parametrize("mark_waits_in", ["inbox", "restart buffer"])
async def test_a_subscription_whose_mark_meets_a_killed_manager_hears_its_next_incarnation(
    monkeypatch: pytest.MonkeyPatch, mark_waits_in: str
) -> None:
    # A subscriber is muted for each manager until that manager's Marked. The manager
    # is killed between the facade's Mark and its Marked: the Mark is still in its inbox
    # (behind the Kill), or told while it restarts. Either way the next incarnation takes
    # it (the handle keeps both), so the subscriber hears that manager's next task.
    from actors.runtime import messages

    wait = 10.0
    clock = FakeClock()
    marks = threading.Event()
    received_by(monkeypatch, "task_manager", lambda told: messages.Mark in told and marks.set())
    config = {**crash_config(), "RESTART_BACKOFF_INITIAL": 1.0}
    async with ActorSystem(config, clock=clock) as system:
        tm = system.task_manager
        handle = system.supervisor.child("task_manager")
        monitor = system._state.states["task_monitor"]
        if mark_waits_in == "inbox":  # the manager holds a message while Kill, Mark queue
            entered, gate = threading.Event(), threading.Event()
            engine = system._state.states["task_manager"]
            monkeypatch.setattr(engine, "set_limit", lambda limit: entered.set() or gate.wait(wait))
            handle.tell(messages.SetLimit(5))
            assert await asyncio.to_thread(entered.wait, wait)
            handle.tell(Kill())
        else:
            handle.tell(Kill())
            await settle(clock)  # the restart's backoff: it is down
        async with tm.events() as stream:
            assert await asyncio.to_thread(marks.wait, wait)
            # Muted for the killed manager (the legacy one's Marked may not be in yet).
            assert "new" in monitor.muted
            if mark_waits_in == "inbox":
                gate.set()  # then Kill: the Mark goes back to the handle, for the next one
                await settle(clock)
            restart_at = clock.next_deadline()
            assert restart_at is not None
            clock.advance(restart_at - clock.monotonic())  # the restart (its backoff's end)
            events = await a_task_heard(tm, stream)
        restarts = await restarts_of(system)
    assert [(e.kind, e.task_id) for e in events] == AFTER_HEARD
    assert restarts["task_manager"] == 1
    assert (monitor.muted, monitor.marks) == ({}, {})


async def test_a_subscription_whose_mark_follows_a_crashing_message_in_one_batch_is_heard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A task's outcome and a subscription made in the same loop iteration reach the
    # manager as one batch (AttemptDone, Mark). Handling the outcome crashes the manager
    # (an engine fault, here injected): the Mark after it in the batch must reach the
    # next incarnation, else the subscriber is muted for that manager for ever.
    from actors.runtime import messages

    received = received_by(monkeypatch, "task_manager")
    gate, gated = gated_task()
    async with ActorSystem(crash_config()) as system:
        tm = system.task_manager
        engine = system._state.states["task_manager"]
        first = await tm.register_task("first", gated)
        assert await tm.execute_task(first) is True
        fail_once(monkeypatch, engine, "attempt_done", RuntimeError("fault"))
        gate.set()  # the task returns ahead of the next step here: its outcome is queued
        await asyncio.sleep(0)
        async with tm.events() as stream:  # in the same outbox flush as the outcome
            batches = [told[1:] for told in received if told[0] is messages.Batch]
            assert batches == [(messages.AttemptDone, messages.Mark)]
            events = await a_task_heard(tm, stream)
        restarts = await restarts_of(system)
    assert [(e.kind, e.task_id) for e in events] == AFTER_HEARD
    assert restarts["task_manager"] == 1


@pytest.mark.parametrize("outcome_comes", ["alone", "in a batch"])
async def test_a_task_whose_outcome_crashes_its_manager_fails_with_the_crash_and_its_caller_hears(
    monkeypatch: pytest.MonkeyPatch, backend: str, outcome_comes: str
) -> None:
    # Handling a task's outcome crashes its manager (an engine fault, injected). The
    # outcome is dropped, not re-run; the next incarnation fails the task with an error
    # naming the task, the message and the crash, and its caller hears it (it waited for
    # ever: the task stayed RUNNING). Alone: the outcome is a message of its own; in a
    # batch: a subscription made in the same loop iteration rides with it (its Mark).
    from actors.runtime import messages

    child = manager_of(backend)
    received = received_by(monkeypatch, child)
    async with ActorSystem(crash_config(backend)) as system:
        engine = system._state.states[child]

        def crash() -> None:
            fail_once(monkeypatch, engine, "attempt_done", RuntimeError("fault"))

        caught, info, after, restarts = await crash_on_its_outcome(
            system, received, outcome_comes, crash
        )
    expected = (
        f"task 'first' failed: the {child} crashed handling its AttemptDone"
        " (RuntimeError('fault')); the message was dropped, not retried"
    )
    assert str(caught) == expected
    assert (info.status, str(info.error), after) == (TaskStatus.FAILED, expected, 7)
    if outcome_comes == "alone":
        assert received[0] == (messages.AttemptDone,)
    else:
        assert received[0] == (messages.Batch, messages.AttemptDone, messages.Mark)
    assert restarts[child] == 1


async def test_a_request_that_crashes_its_manager_fails_its_task_and_answers_its_caller(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # A caller's request whose handler raises an `Exception` is answered with it (no
    # crash); one raising a BaseException crashes the manager. Its next incarnation
    # answers that caller and fails the task the request was about (it would stay
    # RUNNING, its waiters waiting for ever), never re-running the request.
    wait = 10.0
    child = manager_of(backend)
    _, gated = gated_task()
    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        engine = system._state.states[child]
        first = await tm.register_task("first", gated, task_id="first")
        assert await tm.execute_task(first) is True
        waiter = asyncio.ensure_future(tm.wait_for_task(first))
        fail_once(monkeypatch, engine, "cancel", _Fault("fault"))
        with pytest.raises(ActorSystemError) as cancelled:
            await asyncio.wait_for(tm.cancel_task(first), wait)
        with pytest.raises(ActorSystemError) as waited:
            await asyncio.wait_for(waiter, wait)
        info = await tm.get_task(first)
        assert await tm.cancel_task(first) is False  # it ended: the next cancel is a no-op
        restarts = await restarts_of(system)
    expected = (
        f"task 'first' failed: the {child} crashed handling its Cancel"
        " (_Fault('fault')); the message was dropped, not retried"
    )
    assert (str(cancelled.value), str(waited.value)) == (expected, expected)
    assert (info.status, str(info.error)) == (TaskStatus.FAILED, expected)
    assert restarts[child] == 1


@pytest.mark.parametrize("call", ["register_task", "submit"])
async def test_a_registration_that_crashes_its_manager_leaves_no_route(
    monkeypatch: pytest.MonkeyPatch, backend: str, call: str
) -> None:
    # A registration whose handling crashes its manager before the task is registered
    # (a BaseException, injected) is dropped: its caller hears why, and the facade drops
    # the route it made for it (the manager never held the id), as for a refused one.
    # Before, the route stayed for good: registering the id again was refused as a
    # duplicate of a task that does not exist.
    wait = 10.0
    child = manager_of(backend)
    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        engine = system._state.states[child]
        facade = system._state.states["facade"]
        fail_once(
            monkeypatch,
            engine,
            "register" if call == "register_task" else "submit",
            _Fault("fault"),
        )
        registration = (
            tm.register_task("a", noop, task_id="a")
            if call == "register_task"
            else tm.submit(noop, 3, task_id="a")
        )
        with pytest.raises(ActorSystemError) as caught:
            await asyncio.wait_for(registration, wait)
        # A round trip through the facade first: the manager told it to forget the id
        # before the caller heard, so the facade has handled that by the answer.
        assert await asyncio.wait_for(tm.get_all_tasks(), wait) == []
        routes = dict(facade.owners)
        again = await asyncio.wait_for(tm.register_task("a", noop, task_id="a"), wait)
        assert await asyncio.wait_for(tm.execute_task(again, wait=True), wait) == 0
        restarts = await restarts_of(system)
    kind = "Register" if call == "register_task" else "SubmitTask"
    assert str(caught.value) == (
        f"task 'a' failed: the {child} crashed handling its {kind} (_Fault('fault'));"
        " the message was dropped, not retried"
    )
    assert (routes, again, restarts[child]) == ({}, "a", 1)


async def test_a_crash_in_the_flush_after_a_handled_message_fails_no_task(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The manager crashes in the flush that follows a message it handled (`FLUSH_AT`
    # transitions waited): that message did its work, so its task goes on (it completes
    # in the next incarnation) rather than failing as if its message had crashed it.
    from actors.runtime import _manager_base
    from actors.runtime._manager_base import BaseManager

    wait = 10.0
    child = manager_of(backend)
    gate, gated = gated_task()
    flush = BaseManager._flush
    faults: list[str] = []

    def faulty(manager: BaseManager) -> None:
        started = [t for t in manager.engine.transitions if t.new is TaskStatus.RUNNING]
        if started and not faults:  # once: in the flush right after the Execute
            faults.append(started[0].task_id)
            raise RuntimeError("flush fault")
        flush(manager)

    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        first = await tm.register_task("first", gated, task_id="first")
        monkeypatch.setattr(_manager_base, "FLUSH_AT", 1)
        monkeypatch.setattr(BaseManager, "_flush", faulty)
        assert await tm.execute_task(first) is True
        gate.set()
        assert await asyncio.wait_for(tm.wait_for_task(first), wait) == 1
        status = await tm.get_task_status(first)
        restarts = await restarts_of(system)
    assert (faults, status, restarts[child]) == (["first"], TaskStatus.COMPLETED, 1)


async def test_event_stream_filters_by_type_and_a_slow_subscriber_drops_the_oldest() -> None:
    async with ActorSystem({"EVENT_BUFFER_SIZE": 5}) as system:
        tm = system.task_manager
        async with tm.events(task_type="io") as slow:
            for i in range(4):
                await tm.execute_task(
                    await tm.register_task(f"io{i}", noop, task_type="io"), wait=True
                )
                await tm.execute_task(
                    await tm.register_task(f"cpu{i}", noop, task_type="cpu"), wait=True
                )
            metrics = await tm.get_metrics()
            # 4 io tasks x 4 transitions = 16 events for a buffer of 5: the oldest 11 went.
            events = await asyncio.wait_for(collect(slow, 5), 5)
            assert slow.dropped == 11
    assert metrics.events_dropped == 11
    assert [e.kind for e in events] == [
        EventKind.COMPLETED,  # the tail of the third task
        EventKind.REGISTERED,
        EventKind.QUEUED,
        EventKind.STARTED,
        EventKind.COMPLETED,
    ]
    assert [e.task_name for e in events] == ["io2", "io3", "io3", "io3", "io3"]
    assert {e.task_type for e in events} == {"io"}


async def test_leaving_the_loop_unsubscribes() -> None:
    async with ActorSystem() as system:
        tm = system.task_manager
        monitor_state = system._state.states["task_monitor"]  # type: ignore[union-attr]
        done = asyncio.Event()

        async def produce() -> None:  # registers until the consumer has seen one event
            for i in range(1000):
                if done.is_set():
                    return
                await tm.register_task(f"t{i}", noop)

        producer = asyncio.create_task(produce())
        async for event in tm.events():
            assert event.kind is EventKind.REGISTERED
            done.set()
            break
        await producer
        await tm.get_metrics()  # the unsubscribe went through the facade before this
        assert monitor_state.subscribers == []


async def fail_with(stream: EventStream) -> None:
    raise ValueError(f"dropped {stream.dropped}")  # its kept frame holds ``stream``


def test_a_stream_its_stopped_system_reaches_is_freed_with_that_system() -> None:
    """An event stream left open at the stop, which the system itself reaches (here
    through the frame of a failed task, in its kept error; on Python 3.12+ also through
    a cancelled call's error, whose frames link up to the loop thread's, holding the
    stream's cancelled close), is freed with its system: the stream's finalizer holds
    the client weakly. (It held it strongly, from `weakref.finalize`'s registry, a
    root: neither was ever freed.)"""

    async def run() -> tuple[weakref.ref[ActorSystem], weakref.ref[EventStream]]:
        async with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
            tm = system.task_manager
            stream = tm.events()
            await stream.subscribe()
            task_id = await tm.register_task("reader", fail_with, (stream,))
            with pytest.raises(ValueError, match=r"^dropped 0$"):
                await tm.execute_task(task_id, wait=True)
        return weakref.ref(system), weakref.ref(stream)

    system, stream = asyncio.run(run())
    gc.collect()
    assert (system(), stream()) == (None, None)


# -- circuit breakers ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_tasks_share_a_breaker_by_name_and_wait_while_it_is_open(backend: str) -> None:
    clock = FakeClock()
    healthy = False
    calls = 0

    async def call_api() -> str:
        nonlocal calls
        calls += 1
        if not healthy:
            raise ConnectionError("api down")
        return "answer"

    config = {"USE_NEW_TASK_SYSTEM": backend == "new", "CLEANUP_INTERVAL": 0}  # no cleanup timer
    async with ActorSystem(config, clock=clock) as system:
        tm = system.task_manager
        system.circuit_breakers.add(
            CircuitBreaker("llm-api", failure_threshold=2, recovery_timeout=30.0, clock=clock)
        )
        async with tm.events() as stream:
            for i in range(2):  # two failures open the breaker
                failing = await tm.register_task(f"f{i}", call_api, circuit_breaker="llm-api")
                with pytest.raises(ConnectionError):
                    await tm.execute_task(failing, wait=True)
            assert (await tm.get_metrics()).breakers == {"llm-api": "open"}
            # While it is open, tasks wait for it: no attempt, no slot, no retry spent.
            fast = await tm.register_task("fast", call_api, circuit_breaker="llm-api")
            patient = await tm.register_task(
                "patient", call_api, circuit_breaker="llm-api", max_retries=1
            )
            await tm.execute_task(fast)
            await tm.execute_task(patient)
            await settle(clock)
            assert clock.pending_delays() == [pytest.approx(30.0)]  # when it half-opens
            for waiting in (fast, patient):
                info = await tm.get_task(waiting)
                assert (info.status, info.attempts) == (TaskStatus.QUEUED, 0)
            healthy = True
            clock.advance(30.001)
            # Half-open: the first to wait is the trial; its success closes the breaker
            # and releases the other.
            assert await tm.wait_for_task(fast, timeout=5) == "answer"
            assert await tm.wait_for_task(patient, timeout=5) == "answer"
            assert [(await tm.get_task(t)).attempts for t in (fast, patient)] == [1, 1]
            assert (await tm.get_metrics()).breakers == {"llm-api": "closed"}
            changes = []
            async for event in stream:
                if event.kind is EventKind.CIRCUIT_BREAKER:
                    changes.append((event.detail["old"], event.detail["new"]))
                    if len(changes) == 3:
                        break
    assert calls == 4  # two failures, the trial and the released task: refusals never ran
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


# -- resource governor ---------------------------------------------------------------------


async def test_governor_lowers_and_raises_the_limit_from_probe_samples() -> None:
    clock = FakeClock()
    samples = iter(
        [
            ResourceSample(90.0, 50.0),  # cpu high: 8 -> 4
            ResourceSample(97.0, 50.0),  # critical: 4 -> 2
            ResourceSample(50.0, 99.0),  # memory critical: 2 -> 1
            ResourceSample(99.0, 99.0),  # never below 1
            ResourceSample(10.0, 10.0),  # ok: 1 -> 2
            ResourceSample(10.0, 10.0),  # 2 -> 3
        ]
    )
    # No periodic cleanup: its timers would be counted with the governor's.
    config = {"RESOURCE_CHECK_INTERVAL": 5.0, "MAX_CONCURRENT_TASKS": 8, "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config, clock=clock, probe=lambda: next(samples)) as system:
        tm = system.task_manager
        limits = []
        async with tm.events() as stream:
            for _ in range(6):
                await settle(clock)
                clock.advance(5.0)
                await asyncio.sleep(0)
                metrics = await tm.get_metrics()
                limits.append(metrics.concurrency_limit)
            kinds = [e.kind for e in await asyncio.wait_for(collect(stream, 5), 5)]
    assert limits == [4, 2, 1, 1, 2, 3]
    assert kinds == [
        EventKind.RESOURCE_WARNING,
        EventKind.RESOURCE_CRITICAL,
        EventKind.RESOURCE_CRITICAL,
        EventKind.RESOURCE_CRITICAL,
        EventKind.RESOURCE_OK,
    ]
    assert dict(metrics.resource) == {"cpu_percent": 10.0, "memory_percent": 10.0}


async def test_a_probe_returning_junk_is_skipped_and_the_monitor_never_crashes() -> None:
    # A probe's result was taken as a ResourceSample unchecked: None (or a sample of
    # strings) crashed the task monitor at every tick, a crash loop.
    clock = FakeClock()

    def not_a_number() -> ResourceSample:
        return ResourceSample("high", 50.0)  # type: ignore[arg-type]

    probes: Iterator[Callable[[], object]] = iter(
        [
            lambda: None,
            lambda: ResourceSample(90.0, 50.0),  # cpu high: 8 -> 4
            not_a_number,
            lambda: (97.0, 50.0),
            lambda: ResourceSample(97.0, 50.0),  # critical: 4 -> 2
        ]
    )
    config = {"RESOURCE_CHECK_INTERVAL": 5.0, "MAX_CONCURRENT_TASKS": 8, "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config, clock=clock, probe=lambda: next(probes)()) as system:
        tm = system.task_manager
        limits = []
        for _ in range(5):
            await settle(clock)
            clock.advance(5.0)
            await asyncio.sleep(0)
            limits.append((await tm.get_metrics()).concurrency_limit)
        rows = await system.supervisor.which_children()
    assert limits == [8, 4, 4, 4, 2]
    assert [(r.id, r.restarts) for r in rows if r.restarts] == []


def test_a_resource_sample_of_no_finite_numbers_is_refused_when_made() -> None:
    huge = 10**400  # an int too large for a float: math.isfinite raised OverflowError
    for cpu, shown in (("high", "'high'"), (math.nan, "nan"), (True, "True"), (huge, repr(huge))):
        with pytest.raises(ConfigError) as raised:
            ResourceSample(cpu, 50.0)  # type: ignore[arg-type]
        assert (
            str(raised.value) == f"ResourceSample.cpu_percent must be a finite number, got {shown}"
        )


def test_the_governor_decides_by_the_configured_ceiling_and_thresholds() -> None:
    config = Config(
        MAX_CONCURRENT_TASKS=6,
        CPU_HIGH_PERCENT=40.0,
        MEMORY_HIGH_PERCENT=50.0,
        CPU_CRITICAL_PERCENT=60.0,
        MEMORY_CRITICAL_PERCENT=70.0,
    )
    policy = GovernorPolicy.from_config(config)
    assert policy == GovernorPolicy(6, 40.0, 50.0, 60.0, 70.0)
    assert decide(6, ResourceSample(40.0, 10.0), policy) == (3, Pressure.WARNING)
    assert decide(6, ResourceSample(10.0, 50.0), policy) == (3, Pressure.WARNING)
    assert decide(3, ResourceSample(60.0, 10.0), policy) == (1, Pressure.CRITICAL)
    assert decide(3, ResourceSample(10.0, 70.0), policy) == (1, Pressure.CRITICAL)
    assert decide(5, ResourceSample(39.9, 49.9), policy) == (6, Pressure.OK)
    assert decide(6, ResourceSample(39.9, 49.9), policy) == (6, Pressure.OK)


# -- task graph ----------------------------------------------------------------------------


async def test_task_graph_snapshot_renders_every_task(tmp_path: Path) -> None:
    async with ActorSystem() as system:
        tm = system.task_manager
        fetch = await tm.register_task("fetch page", noop, task_type="io")
        parse = await tm.register_task("parse page", noop, task_type="cpu", dependencies=[fetch])
        report = await tm.register_task("report", noop, task_type="io", dependencies=[parse])
        await tm.execute_task(parse, wait=True)
        graph = await tm.get_task_graph()
        io_only = await tm.get_task_graph(task_type="io")
        around = await tm.get_task_graph(around=report, depth=1)
    assert graph.topological_order() == [fetch, parse, report]
    assert {(n.name, n.status) for n in graph.nodes} == {
        ("fetch page", TaskStatus.COMPLETED),
        ("parse page", TaskStatus.COMPLETED),
        ("report", TaskStatus.PENDING),
    }
    assert set(graph.edges) == {(fetch, parse), (parse, report)}
    assert [n.task_id for n in io_only.nodes] == [fetch, report]
    assert [n.task_id for n in around.nodes] == [parse, report]
    assert "flowchart LR" in graph.to_mermaid()
    svg = graph.render(tmp_path / "tasks.svg").read_text()
    for name in ("fetch page", "parse page", "report"):
        assert name in svg


def three() -> int:
    return 3


async def test_a_thread_pool_crash_fails_the_attempt_and_answers_the_submit_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Handling a RunFunction or a Submit crashes the thread_pool (its executor faults,
    # injected; the scheduler's plain functions run there, the seed manager's on its
    # loop's executor, so only the new backend). The message is dropped, not re-run:
    # the attempt fails through its manager and a submit's caller hears why. Before,
    # the task stayed RUNNING and both callers (tracked with no bound) waited for ever.
    wait = 10.0
    async with ActorSystem(crash_config()) as system:
        tm = system.task_manager
        executor = system._state.states["thread_pool"].executor
        fail_once(monkeypatch, executor, "submit", RuntimeError("fault"))
        first = await tm.register_task("first", three, task_id="first")
        with pytest.raises(ActorSystemError) as ran:
            await asyncio.wait_for(tm.execute_task(first, wait=True), wait)
        info = await tm.get_task(first)
        executor = system._state.states["thread_pool"].executor  # the next incarnation's
        fail_once(monkeypatch, executor, "submit", RuntimeError("fault"))
        with pytest.raises(ActorSystemError) as submitted:
            await asyncio.wait_for(tm.thread_pool.submit(sum, [1, 2]), wait)
        assert await asyncio.wait_for(tm.thread_pool.submit(sum, [3, 4]), wait) == 7
        restarts = await restarts_of(system)
    expected = (
        "the thread_pool crashed handling its {} (RuntimeError('fault')); the message "
        "was dropped, not retried"
    )
    assert str(ran.value) == expected.format("RunFunction")
    assert (info.status, str(info.error)) == (TaskStatus.FAILED, expected.format("RunFunction"))
    assert str(submitted.value) == expected.format("Submit")
    assert restarts["thread_pool"] == 2


@pytest.mark.parametrize("request_comes", ["alone", "in a batch"])
async def test_a_facade_crash_answers_its_caller_and_hands_the_rest_of_a_batch_on(
    monkeypatch: pytest.MonkeyPatch, request_comes: str
) -> None:
    # A caller's request crashes the facade (a BaseException from its handler,
    # injected). Its caller hears why (tracked with no bound, it waited for ever), and
    # the requests after it in the same batch (one caller-loop iteration) reach the
    # next incarnation: before, they were lost and their callers waited for ever too.
    from actors.runtime import messages
    from actors.runtime._facade import FacadeActor

    wait = 10.0
    received = received_by(monkeypatch, "facade")
    fail_once(monkeypatch, FacadeActor, "_metrics", _Fault("fault"))
    async with ActorSystem(crash_config()) as system:
        tm = system.task_manager
        first = await tm.register_task("first", noop, task_id="first")
        received.clear()
        crashing = asyncio.ensure_future(tm.get_metrics())
        if request_comes == "in a batch":  # in the same outbox flush as the crashing one
            after = asyncio.ensure_future(tm.get_task_status(first))
        with pytest.raises(ActorSystemError) as caught:
            await asyncio.wait_for(crashing, wait)
        status = None
        if request_comes == "in a batch":
            status = await asyncio.wait_for(after, wait)
        assert (await asyncio.wait_for(tm.get_metrics(), wait)).restarts["facade"] == 1
    assert str(caught.value) == (
        "the facade crashed handling its GetMetrics (_Fault('fault')); the message was"
        " dropped, not retried"
    )
    if request_comes == "alone":
        assert (received[0], status) == ((messages.GetMetrics,), None)
    else:
        assert received[0] == (messages.Batch, messages.GetMetrics, messages.GetStatus)
        assert status is TaskStatus.PENDING


async def test_a_monitor_crash_mid_batch_leaves_no_status_count_behind(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The monitor crashes part-way through a batch of transitions (freeing the label of
    # a type whose last task was cleaned up, injected): the moves gathered before are
    # applied and the rest of the batch goes to its next incarnation. Before, the rest
    # was lost: the other cleaned-up task still counted as completed, for good.
    from actors.runtime import messages
    from actors.runtime._monitor import TaskMonitorActor

    wait = 10.0
    batches: list[int] = []
    tell = ChildHandle.tell

    def spy(handle: ChildHandle, message: Any) -> None:
        removals = (  # a cleanup's, to the monitor
            handle.child_id == "task_monitor"
            and type(message) is messages.Transitions
            and all(t.new is None for t in message.items)
        )
        if removals:
            batches.append(len(message.items))
        tell(handle, message)

    monkeypatch.setattr(ChildHandle, "tell", spy)
    faults = fail_once(  # the first cleaned-up type
        monkeypatch, TaskMonitorActor, "_forget", RuntimeError("fault"), lambda _, kind: kind
    )
    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        for task_type in ("x", "y"):
            task_id = await tm.register_task(task_type, noop, task_type=task_type)
            assert await tm.execute_task(task_id, wait=True) == 0
        before = dict((await asyncio.wait_for(tm.get_metrics(), wait)).tasks_by_status)
        assert await tm.cleanup_completed_tasks(max_age=0) == 2
        metrics = await asyncio.wait_for(tm.get_metrics(), wait)
    assert (before, batches, faults) == ({"completed": 2}, [2], ["x"])
    assert dict(metrics.tasks_by_status) == {}
    assert dict(metrics.tasks_by_type) == {}


async def test_a_monitor_crash_labelling_a_type_mid_batch_leaves_the_status_counts_exact(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The monitor crashes giving a new task type its label, part-way through a batch
    # of transitions (injected: the second type's). Nothing of that transition was
    # applied: it goes to the next incarnation with the rest of the batch. Before, it
    # was dropped: its task was never counted as pending, and its later moves
    # subtracted from a status it was never added to.
    from actors.runtime._monitor import TaskMonitorActor

    wait = 10.0
    label = TaskMonitorActor._label
    faults: list[str] = []

    def faulty(monitor: TaskMonitorActor, task_type: str) -> str:
        if task_type == "y" and not faults:
            faults.append(task_type)
            raise _Fault("fault")
        return label(monitor, task_type)

    monkeypatch.setattr(TaskMonitorActor, "_label", faulty)
    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        for task_type in ("x", "y"):  # one batch: the managers hold them until a Flush
            await tm.register_task(task_type, noop, task_type=task_type, task_id=task_type)
        registered = await asyncio.wait_for(tm.get_metrics(), wait)
        for task_id in ("x", "y"):
            assert await tm.execute_task(task_id, wait=True) == 0
        ended = await asyncio.wait_for(tm.get_metrics(), wait)
        restarts = await restarts_of(system)
    assert (faults, restarts["task_monitor"]) == (["y"], 1)
    assert dict(registered.tasks_by_status) == {"pending": 2}
    assert dict(ended.tasks_by_status) == {"completed": 2}
    assert {t: dict(c) for t, c in ended.tasks_by_type.items()} == {
        "x": {"completed": 1},
        "y": {"completed": 1},
    }


async def test_a_journal_crash_adding_a_batch_loses_neither_its_answers_nor_its_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The journal crashes adding a batch's records (a BaseException, injected): the
    # batch's answers (a durable registration's reply) are kept for its next
    # incarnation, which answers them once it has written the records handed over to
    # it. Before, the answers were lost and the caller (no bound) waited for ever.
    from actors.journal import JournalWriter

    wait = 10.0
    add_all = JournalWriter.add_all
    config = crash_config(journal=tmp_path)
    async with ActorSystem(config) as system:  # once: the registration's batch
        faults = fail_once(monkeypatch, JournalWriter, "add_all", _Fault("fault"), lambda *_: 1)
        assert await register_a(system.task_manager, wait) == "a"
        restarts = await restarts_of(system)
        monkeypatch.setattr(JournalWriter, "add_all", add_all)
    status = await status_in_the_journal(config)
    assert (faults, restarts["journal"], status) == ([1], 1, TaskStatus.PENDING)


async def test_a_journal_crash_adding_a_batch_answers_after_writing_its_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The journal crashes adding a batch's records (injected): its next incarnation
    # answers the batch's durable registration only once it has written the records
    # handed over to it -- not at its start, before they were even added (the answer
    # says the registration is in the file).
    from actors.journal import JournalWriter

    wait = 10.0
    log = journal_log(monkeypatch, "answer_all")
    config = crash_config(journal=tmp_path)
    async with ActorSystem(config) as system:
        fail_once(monkeypatch, JournalWriter, "add_all", _Fault("fault"))
        assert await register_a(system.task_manager, wait) == "a"
        restarts = await restarts_of(system)
    assert restarts["journal"] == 1
    assert log[:2] == [("write", "a"), ("answer", "a")]


async def test_a_journal_crash_adding_a_batch_starts_its_attempts_after_their_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The journal crashes adding the batch of a durable execution (its running record
    # and the attempt waiting for it, injected): the next incarnation starts the attempt
    # only once that record is written, not at its start, before it was even added.
    from actors.journal import JournalWriter

    wait = 10.0
    log = journal_log(monkeypatch, "start_all")
    config = crash_config(journal=tmp_path)
    async with ActorSystem(config) as system:
        tm = system.task_manager
        assert await register_a(tm, wait)
        log.clear()
        fail_once(monkeypatch, JournalWriter, "add_all", _Fault("fault"))
        assert await asyncio.wait_for(tm.execute_task("a", wait=True), wait) == 4
        restarts = await restarts_of(system)
    assert restarts["journal"] == 1
    assert log[:2] == [("write", "a"), ("start", "1")]


async def test_a_journal_crash_writing_the_early_starts_loses_no_attempt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The journal crashes writing the running records of durable attempts that wait for
    # them (injected): those attempts start after the next incarnation's first commit.
    # Before, they were lost: the task stayed RUNNING and its caller waited for ever.
    from actors.journal import JournalWriter

    wait = 10.0
    config = crash_config(journal=tmp_path)
    async with ActorSystem(config) as system:
        tm = system.task_manager
        assert await register_a(tm, wait) == "a"
        faults = fail_once(  # once: the attempt's running record
            monkeypatch, JournalWriter, "flush_changes", RuntimeError("fault"), lambda *_: 1
        )
        result = await asyncio.wait_for(tm.execute_task("a", wait=True), wait)
        restarts = await restarts_of(system)
    assert (faults, result, restarts["journal"]) == ([1], 4, 1)


async def test_a_journal_crash_committing_when_idle_answers_after_writing_the_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The journal crashes in the commit it makes when its mailbox runs dry (writing a
    # durable registration's record raises a BaseException, injected): it restarts, and
    # its next incarnation writes the record, then answers the registration. Before, the
    # BaseException escaped the actor's loop: its thread died unseen (no restart) and
    # the caller (tracked with no bound) waited for ever.
    from actors.journal import JournalWriter

    wait = 10.0
    config = crash_config(journal=tmp_path)
    async with ActorSystem(config) as system:
        faults = fail_once(monkeypatch, JournalWriter, "flush", _Fault("fault"), lambda *_: 1)
        assert await register_a(system.task_manager, wait) == "a"
        restarts = await restarts_of(system)
    status = await status_in_the_journal(config)
    assert (faults, restarts["journal"], status) == ([1], 1, TaskStatus.PENDING)


async def test_a_journal_crash_starting_attempts_after_a_commit_loses_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The journal crashes starting the attempts whose running records it committed (a
    # BaseException from `start_all`, injected, before it started any): the attempts it
    # had not started go back into its state, and its next incarnation starts them.
    # Before, they were lost: the task stayed RUNNING and its caller waited for ever.
    from actors.runtime import _journal

    wait = 10.0
    config = crash_config(journal=tmp_path)
    async with ActorSystem(config) as system:
        tm = system.task_manager
        assert await register_a(tm, wait) == "a"
        faults = fail_once(
            monkeypatch, _journal, "start_all", _Fault("fault"), lambda *_: "start_all"
        )
        result = await asyncio.wait_for(tm.execute_task("a", wait=True), wait)
        restarts = await restarts_of(system)
    assert (faults, result, restarts["journal"]) == (["start_all"], 4, 1)


class _FaultOnce(frozenset[type]):
    """`_facade._ROUTED` whose first test for an `AttemptDone` raises `_Fault`: a crash
    of the facade's batch fast path on a task's outcome."""

    faults: list[type]

    def __contains__(self, kind: object) -> bool:
        from actors.runtime import messages

        if kind is messages.AttemptDone and not self.faults:
            self.faults.append(kind)
            raise _Fault("fault")
        return super().__contains__(kind)


@pytest.mark.parametrize("outcome_comes", ["alone", "in a batch"])
async def test_a_task_whose_outcome_crashes_the_facade_fails_with_the_crash_and_its_caller_hears(
    monkeypatch: pytest.MonkeyPatch, backend: str, outcome_comes: str
) -> None:
    # Routing a task's outcome crashes the facade (a BaseException, injected: in
    # `_attempt_done` alone, in the batch fast path in a batch). The outcome has no
    # caller to answer: the task's manager hears a Crashed naming the facade and fails
    # the task, so its caller hears why. Before, the outcome was dropped, the task
    # stayed RUNNING and its caller (tracked with no bound) waited for ever.
    from actors.runtime import _facade, messages
    from actors.runtime._facade import FacadeActor

    received = received_by(monkeypatch, "facade")
    faults: list[object] = []
    if outcome_comes == "alone":
        faults = fail_once(monkeypatch, FacadeActor, "_attempt_done", _Fault("fault"))
    routed = _FaultOnce(_facade._ROUTED)
    routed.faults = []

    def crash() -> None:
        if outcome_comes == "in a batch":
            monkeypatch.setattr(_facade, "_ROUTED", routed)

    async with ActorSystem(crash_config(backend)) as system:
        caught, info, after, restarts = await crash_on_its_outcome(
            system, received, outcome_comes, crash
        )
    expected = (
        "task 'first' failed: the facade crashed handling its AttemptDone"
        " (_Fault('fault')); the message was dropped, not retried"
    )
    assert str(caught) == expected
    assert (info.status, str(info.error), after) == (TaskStatus.FAILED, expected, 7)
    if outcome_comes == "alone":
        assert (received[0], faults) == ((messages.AttemptDone,), ["fault"])
    else:
        assert (received[0], routed.faults) == (
            (messages.Batch, messages.AttemptDone, messages.Subscribe),
            [messages.AttemptDone],
        )
    assert restarts["facade"] == 1


async def test_a_monitor_crash_answering_a_request_answers_its_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Making a metrics snapshot crashes the monitor (a BaseException, injected): its
    # caller hears why, and the monitor's next incarnation answers the next one.
    # Before, only an Exception was answered: the caller waited for ever.
    from actors.runtime._monitor import TaskMonitorActor

    wait = 10.0
    faults = fail_once(monkeypatch, TaskMonitorActor, "snapshot", _Fault("fault"))
    async with ActorSystem(crash_config()) as system:
        tm = system.task_manager
        with pytest.raises(ActorSystemError) as caught:
            await asyncio.wait_for(tm.get_metrics(), wait)
        metrics = await asyncio.wait_for(tm.get_metrics(), wait)
        restarts = await restarts_of(system)
    assert str(caught.value) == (
        "the task_monitor crashed handling its GetMetrics (_Fault('fault')); the message"
        " was dropped, not retried"
    )
    assert (restarts["task_monitor"], dict(metrics.tasks_by_status), faults) == (1, {}, ["fault"])


async def test_a_task_whose_outcome_its_manager_cannot_be_told_fails_through_the_facade_crash(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The facade cannot tell a task's outcome to its manager (an Exception from the
    # tell, injected: a stopped manager raises SupervisorError). The outcome has no
    # caller: the facade crashes with that error, as a tell handler's exception crashes
    # any actor, and fails the task through its manager (a Crashed naming the facade).
    # Before, reading the outcome's missing reply raised an AttributeError in the
    # except clause: the facade crashed with that, and the task stayed RUNNING (its
    # caller waited for ever).
    from actors.runtime import messages
    from supervisors import SupervisorError

    child = manager_of(backend)
    received = received_by(monkeypatch, "facade")
    injected: list[list[object]] = []

    def crash() -> None:
        error = SupervisorError("fault")
        injected.append(fail_tell_once(monkeypatch, child, messages.AttemptDone, error))

    async with ActorSystem(crash_config(backend)) as system:
        caught, info, after, restarts = await crash_on_its_outcome(system, received, "alone", crash)
    [faults] = injected
    expected = (
        "task 'first' failed: the facade crashed handling its AttemptDone"
        " (SupervisorError('fault')); the message was dropped, not retried"
    )
    assert str(caught) == expected
    assert (info.status, str(info.error), after) == (TaskStatus.FAILED, expected, 7)
    assert (faults, restarts["facade"], restarts[child]) == (["first"], 1, 0)


async def test_a_bounced_registration_that_crashes_its_manager_answers_its_caller(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # A registration of an id the facade routes is bounced off its manager first
    # (`messages.Recheck`); handling that crashes the manager (a BaseException,
    # injected). The Recheck carries the caller's request: the caller hears why. Before,
    # the Recheck was dropped with no Crashed (it has neither a task id nor a reply of
    # its own): the caller (tracked with no bound) waited for ever.
    from actors import DuplicateTaskError
    from actors.runtime._manager_base import BaseManager

    wait = 10.0
    child = manager_of(backend)
    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        assert await tm.register_task("a", noop, task_id="a") == "a"
        faults = fail_once(monkeypatch, BaseManager, "_forget", _Fault("fault"))
        with pytest.raises(ActorSystemError) as caught:
            await asyncio.wait_for(tm.register_task("a", noop, task_id="a"), wait)
        with pytest.raises(DuplicateTaskError):  # the route is live: bounced, then refused
            await asyncio.wait_for(tm.register_task("a", noop, task_id="a"), wait)
        status = await tm.get_task_status("a")
        restarts = await restarts_of(system)
    assert str(caught.value) == (
        f"a request failed: the {child} crashed handling its Recheck (_Fault('fault'));"
        " the message was dropped, not retried"
    )
    assert (faults, status, restarts[child]) == (["fault"], TaskStatus.PENDING, 1)


async def test_a_facade_crash_sending_a_batch_on_loses_none_of_its_run(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The facade crashes sending a batch's run on to its manager (a BaseException from
    # `send_run`, injected): the run goes to its next incarnation, which sends it on.
    # Before, the run was lost: its messages were neither sent nor handed over, and
    # their callers (tracked with no bound) waited for ever.
    from actors.runtime import _facade

    wait = 10.0
    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        first = await tm.register_task("first", noop, (5,), task_id="first")
        faults = fail_once(
            monkeypatch,
            _facade,
            "send_run",
            _Fault("fault"),
            lambda target, run: [type(m).__name__ for m in run],
        )
        status = asyncio.ensure_future(tm.get_task_status(first))  # (in one flush, after
        result = asyncio.ensure_future(tm.execute_task(first, wait=True))  # the Execute)
        seen = await asyncio.wait_for(status, wait)  # (the attempt started: one batch)
        assert await asyncio.wait_for(result, wait) == 5
        restarts = await restarts_after_a_facade_round_trip(system, wait)
    run = [["Execute", "GetStatus"]]
    assert (faults, seen, restarts["facade"]) == (run, TaskStatus.RUNNING, 1)


async def test_a_crash_while_a_task_s_outcome_is_on_its_way_leaves_the_task_to_it(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The task's attempt ended (its caller heard 1) and its outcome is on its way to
    # the manager (held, injected) when a cancel of the task crashes the manager (a
    # BaseException, injected). The cancel's caller hears why; the task is left to its
    # outcome, which completes it. Before, the crash failed the task: its caller heard
    # 1, and the task said FAILED.
    from actors.runtime import messages

    wait = 10.0
    child = manager_of(backend)
    held: list[tuple[ChildHandle, Any]] = []
    on_its_way = threading.Event()
    tell = ChildHandle.tell

    def spy(handle: ChildHandle, message: Any) -> None:
        if handle.child_id == child and type(message) is messages.AttemptDone and not held:
            held.append((handle, message))
            on_its_way.set()
            return
        tell(handle, message)

    monkeypatch.setattr(ChildHandle, "tell", spy)
    gate, gated = gated_task()
    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        engine = system._state.states[child]
        first = await tm.register_task("first", gated, task_id="first")
        caller = asyncio.ensure_future(tm.execute_task(first, wait=True))
        assert await tm.get_task_status(first) is TaskStatus.RUNNING
        gate.set()
        assert await asyncio.wait_for(caller, wait) == 1  # the attempt answered it
        assert await asyncio.to_thread(on_its_way.wait, wait)
        fail_once(monkeypatch, engine, "cancel", _Fault("fault"))
        with pytest.raises(ActorSystemError) as cancelled:
            await asyncio.wait_for(tm.cancel_task(first), wait)
        tell(*held[0])  # the outcome arrives
        result = await asyncio.wait_for(tm.wait_for_task(first), wait)
        status = await tm.get_task_status(first)
        restarts = await restarts_of(system)
    assert str(cancelled.value) == (
        f"a request about task 'first' failed: the {child} crashed handling its Cancel"
        " (_Fault('fault')); the message was dropped, not retried"
    )
    assert (result, status, restarts[child]) == (1, TaskStatus.COMPLETED, 1)


async def test_a_crash_telling_the_facade_of_removed_ids_leaves_them_to_the_next_incarnation(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The manager crashes telling the facade which ids a cleanup removed (a
    # BaseException from the tell of its `Forget`, injected). The ids stay in its state:
    # its next incarnation tells the facade, which drops their routes, and the id can be
    # registered again. Before, the list was emptied before the tell: the facade kept
    # the route for good, and every registration of the id was refused as a duplicate.
    from actors.runtime import messages

    wait = 10.0
    child = manager_of(backend)
    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        owners = system._state.states["facade"].owners
        assert await tm.register_task("a", noop, (1,), task_id="a") == "a"
        assert await tm.execute_task("a", wait=True) == 1
        faults = fail_tell_once(monkeypatch, "facade", messages.Forget)
        with pytest.raises(ActorSystemError) as caught:
            await asyncio.wait_for(tm.cleanup_completed_tasks(0.0), wait)
        assert await asyncio.wait_for(tm.get_all_tasks(), wait) == []
        again = await asyncio.wait_for(tm.register_task("a", noop, (2,), task_id="a"), wait)
        routes = dict(owners)
        result = await asyncio.wait_for(tm.execute_task(again, wait=True), wait)
        restarts = await restarts_of(system)
    assert str(caught.value) == (
        f"a request failed: the {child} crashed handling its Cleanup (_Fault('fault'));"
        " the message was dropped, not retried"
    )
    assert (faults, again, routes, result) == ([("a",)], "a", {"a": backend}, 2)
    assert restarts[child] == 1


async def test_a_crash_telling_the_monitor_of_transitions_leaves_them_to_the_next_incarnation(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The manager crashes sending its transitions to the monitor (a BaseException from
    # the tell of a `Transitions` batch, injected, in the flush after a registration).
    # They stay in its state: its next incarnation's first flush sends them, and the
    # monitor's counts stay exact. Before, the list was emptied before the tell: the
    # registration was never counted, and its later moves subtracted from a status it
    # was never added to.
    from actors.runtime import _manager_base, messages

    wait = 10.0
    child = manager_of(backend)
    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        monkeypatch.setattr(_manager_base, "FLUSH_AT", 1)  # a flush after each message
        faults = fail_tell_once(monkeypatch, "task_monitor", messages.Transitions)
        assert await asyncio.wait_for(tm.register_task("a", noop, (1,), task_id="a"), wait) == "a"
        registered = await asyncio.wait_for(tm.get_metrics(), wait)
        assert await asyncio.wait_for(tm.execute_task("a", wait=True), wait) == 1
        ended = await asyncio.wait_for(tm.get_metrics(), wait)
        restarts = await restarts_of(system)
    assert [[(t.task_id, t.new) for t in batch] for batch in faults] == [
        [("a", TaskStatus.PENDING)]
    ]
    assert dict(registered.tasks_by_status) == {"pending": 1}
    assert dict(ended.tasks_by_status) == {"completed": 1}
    assert restarts[child] == 1


async def test_a_journal_crash_giving_an_answer_answers_that_caller_with_the_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The journal crashes giving a durable registration its answer after the commit (a
    # BaseException, injected, as the answer would raise). That answer is dropped (not
    # retried), and its caller hears why; the registration is journaled. Before, the
    # caller (tracked with no bound) waited for ever.
    from actors.runtime import _journal

    wait = 10.0
    config = crash_config(journal=tmp_path)
    async with ActorSystem(config) as system:
        tm = system.task_manager
        faults = fail_after_one(monkeypatch, _journal, "answer_all")
        with pytest.raises(ActorSystemError) as caught:
            await register_a(tm, wait)
        assert await asyncio.wait_for(tm.register_task("b", noop, task_id="b"), wait) == "b"
        restarts = await restarts_of(system)
    status = await status_in_the_journal(config)
    assert str(caught.value) == (
        "the journal crashed answering this call after its commit (_Fault('fault')): what"
        " the call did is journaled, its answer was dropped, not retried; ask the task for"
        " its state"
    )
    assert (faults, restarts["journal"], status) == (["a"], 1, TaskStatus.PENDING)


async def test_a_journal_crash_starting_an_attempt_fails_its_task_through_its_manager(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The journal crashes starting a durable attempt whose running record it committed
    # (a BaseException, injected, as the start would raise). That start is dropped (not
    # retried): the task fails through its manager (a Crashed naming the journal), and
    # its caller hears why. Before, the task stayed RUNNING and its caller (tracked with
    # no bound) waited for ever.
    from actors.runtime import _journal

    wait = 10.0
    config = crash_config(journal=tmp_path)
    async with ActorSystem(config) as system:
        tm = system.task_manager
        assert await register_a(tm, wait) == "a"
        faults = fail_after_one(monkeypatch, _journal, "start_all")
        with pytest.raises(ActorSystemError) as caught:
            await asyncio.wait_for(tm.execute_task("a", wait=True), wait)
        info = await tm.get_task("a")
        assert await tm.register_task("b", noop, (5,), task_id="b") == "b"
        assert await asyncio.wait_for(tm.execute_task("b", wait=True), wait) == 5
        restarts = await restarts_of(system)
    status = await status_in_the_journal(config)
    expected = (
        "task 'a' failed: the journal crashed handling its Start (_Fault('fault'));"
        " the message was dropped, not retried"
    )
    assert (str(caught.value), info.status, str(info.error)) == (
        expected,
        TaskStatus.FAILED,
        expected,
    )
    assert (faults, restarts["journal"], status) == (["a"], 1, TaskStatus.FAILED)


@pytest.mark.parametrize("resent", [False, True], ids=["sent", "resent"])
async def test_a_facade_crash_part_way_through_a_run_told_one_by_one_sends_none_twice(
    monkeypatch: pytest.MonkeyPatch, backend: str, resent: bool
) -> None:
    # The facade tells a batch's run to a manager message by message (as while it is
    # down) and crashes telling the second (a BaseException, injected): its next
    # incarnation sends the message not sent, not the Execute sent already. Before, the
    # whole run went again: the manager was told the Execute twice. ``resent``: that
    # send crashes too, once more: the message it had not sent is dropped (its caller
    # hears why), as any message that crashes the facade, not handed on again.
    from actors.runtime import messages

    wait = 10.0
    child = manager_of(backend)
    ref = ChildHandle.actor_ref
    monkeypatch.setattr(  # the manager's runs go one message at a time
        ChildHandle, "actor_ref", property(lambda h: None if h.child_id == child else ref.fget(h))
    )
    tell = ChildHandle.tell
    faults: list[str] = []
    told: list[str] = []

    def faulty(handle: ChildHandle, message: Any) -> None:
        if handle.child_id == child and type(message) in (messages.Execute, messages.GetStatus):
            if type(message) is messages.GetStatus and len(faults) < 1 + resent:
                faults.append(message.task_id)
                raise _Fault("fault")
            told.append(type(message).__name__)
        tell(handle, message)

    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        first = await tm.register_task("first", noop, (5,), task_id="first")
        monkeypatch.setattr(ChildHandle, "tell", faulty)
        status = asyncio.ensure_future(tm.get_task_status(first))  # (in one flush, after
        result = asyncio.ensure_future(tm.execute_task(first, wait=True))  # the Execute)
        seen: object
        try:
            seen = await asyncio.wait_for(status, wait)
        except ActorSystemError as exc:
            seen = str(exc)
        assert await asyncio.wait_for(result, wait) == 5
        restarts = await restarts_after_a_facade_round_trip(system, wait)
    dropped = (
        "the facade crashed handling its GetStatus ({!r}); the message was dropped, not retried"
    )
    assert (faults, told) == (
        ["first"] * (1 + resent),
        ["Execute"] if resent else ["Execute", "GetStatus"],
    )
    assert (seen, restarts["facade"]) == (
        dropped.format(_Fault("fault")) if resent else TaskStatus.RUNNING,
        1 + resent,
    )


async def test_a_subscription_whose_mark_crashes_its_manager_is_heard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The new manager crashes taking a subscription's Mark (a BaseException from the
    # tell of its Marked, injected). The Mark goes on to its next incarnation, which
    # takes it again: the subscriber hears that manager's next task. Before, the Mark
    # was dropped (it has neither a task nor a caller): the subscriber stayed muted for
    # that manager for ever.
    from actors.runtime import messages

    faults = fail_tell_once(  # (a Marked is told to the monitor)
        monkeypatch,
        "task_monitor",
        messages.Marked,
        note=lambda message: message.backend,
        where=lambda message: message.backend == "new",
    )
    async with ActorSystem(crash_config()) as system:
        tm = system.task_manager
        monitor = system._state.states["task_monitor"]
        async with tm.events() as stream:
            events = await a_task_heard(tm, stream)
        restarts = await restarts_of(system)
    assert [(e.kind, e.task_id) for e in events] == AFTER_HEARD
    assert (faults, restarts["task_manager"]) == (["new"], 1)
    assert (monitor.muted, monitor.marks) == ({}, {})


async def test_a_crash_telling_the_journal_a_batch_leaves_it_to_the_next_incarnation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The manager crashes telling the journal a batch (a BaseException from the tell,
    # injected): a durable registration's row and its answer. Its next incarnation
    # sends that batch first: the caller is answered once the row is written. Before,
    # the batch was lost: its records and answers had left the manager's state, so the
    # caller (tracked with no bound) waited for ever and the file never held the task.
    from actors.runtime import messages

    wait = 10.0
    config = crash_config(journal=tmp_path)
    async with ActorSystem(config) as system:
        tm = system.task_manager
        faults = fail_tell_once(monkeypatch, "journal", messages.JournalBatch)
        registered = await register_a(tm, wait)
        restarts = await restarts_of(system)
    async with ActorSystem(config) as system:  # what the journal wrote
        tm = system.task_manager
        status = await tm.get_task_status("a")
        result = await asyncio.wait_for(tm.execute_task("a", wait=True), wait)
    assert [[r.task_id for r in records] for records in faults] == [["a"]]
    assert (registered, restarts["task_manager"], status, result) == ("a", 1, TaskStatus.PENDING, 4)


async def test_a_manager_whose_facade_is_gone_answers_a_cleanup_with_what_it_removed(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The facade is gone for good when the manager tells it which ids a cleanup removed
    # (the tell raises SupervisorError, injected, as a stopped child's handle does):
    # nobody routes them any more, so the cleanup's caller hears what was removed, and
    # the manager goes on. Before, only an ActorsError was caught there: the caller got
    # the SupervisorError (and the ids stayed in the manager, kept for a next tell).
    from actors.runtime import messages
    from supervisors import SupervisorError

    wait = 10.0
    child = manager_of(backend)
    gone = SupervisorError("child 'facade' is stopped")
    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        engine = system._state.states[child]
        assert await tm.register_task("a", noop, (1,), task_id="a") == "a"
        assert await tm.execute_task("a", wait=True) == 1
        faults = fail_tell_once(monkeypatch, "facade", messages.Forget, gone)
        removed = await asyncio.wait_for(tm.cleanup_completed_tasks(0.0), wait)
        forgotten = list(engine.forgotten)
        restarts = await restarts_of(system)
    assert (faults, removed, forgotten, restarts[child]) == ([("a",)], 1, [], 0)


async def test_a_facade_crash_resending_an_unsent_run_answers_its_callers(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The facade crashes sending a batch's run on (a BaseException from `send_run`,
    # injected), and its next incarnation crashes again resending that run (`_Unsent`).
    # That message is dropped, as any crashing one: its run's callers hear why, and the
    # routes it made go. Before, `_crashed` knew no `_Unsent`: nobody answered them (the
    # Execute's caller, tracked with no bound, waited for ever).
    from actors.runtime import _facade

    wait = 10.0
    original = _facade.send_run
    faults: list[list[str]] = []

    def faulty(target: Any, run: list[Any]) -> Any:
        if len(faults) < 2:
            faults.append([type(m).__name__ for m in run])
            raise _Fault("fault")
        return original(target, run)

    async with ActorSystem(crash_config(backend)) as system:
        tm = system.task_manager
        first = await tm.register_task("first", noop, (5,), task_id="first")
        monkeypatch.setattr(_facade, "send_run", faulty)
        status = asyncio.ensure_future(tm.get_task_status(first))  # (in one flush, after
        result = asyncio.ensure_future(tm.execute_task(first, wait=True))  # the Execute)
        second = asyncio.ensure_future(tm.register_task("second", noop, task_id="second"))
        errors = []
        for call in (status, result, second):
            with pytest.raises(ActorSystemError) as raised:
                await asyncio.wait_for(call, wait)
            errors.append(str(raised.value))
        after = await tm.get_task_status(first)  # (the Execute never reached it)
        # (its route went with it: not a duplicate of a task that never came)
        again = await tm.register_task("second", noop, task_id="second")
        restarts = await restarts_of(system)
    dropped = "({!r}); the message was dropped, not retried".format(_Fault("fault"))
    assert errors == [
        f"the facade crashed handling its GetStatus {dropped}",
        f"the facade crashed handling its Execute {dropped}",
        f"the facade crashed handling its Register {dropped}",
    ]
    run = ["Execute", "Register", "GetStatus"]
    assert (faults, after, again) == ([run, run], TaskStatus.PENDING, "second")
    assert restarts["facade"] == 2
