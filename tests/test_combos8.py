"""What a user observes stays true where features meet (eighth round).

Metrics (`get_metrics`, the Prometheus text), the event stream and OpenTelemetry spans,
checked across a journal recovery after a real SIGKILL (tests/combo8_worker.py), kills
of the task manager, the facade and the monitor while a task runs, slow, failing and
leaving subscribers of many events, and a switch of the task system at run time.

Every scenario asserts exact outcomes: counts, the events each subscriber got (each
once), the spans that ended (each once), their parents and statuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import combo8_worker
import pytest
from helpers import (
    WAIT,
    double,
    file_rows,
    gated,
    journal_config,
    make_system,
    sigkill_when_ready,
    start_worker,
    tracing_into,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from actors import ActorSystem, EventKind, ResourceSample, TaskStatus
from actors.core import LoopBridge
from actors.observe import Event, Subscriber
from supervisors import Kill
from supervisors.testing import FakeClock

EXPORTER = InMemorySpanExporter()
COMPLETED, FAILED, PENDING = TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.PENDING


@pytest.fixture(scope="module", autouse=True)
def _provider() -> Iterator[None]:
    """An SDK tracer provider recording into `EXPORTER` for this module only."""
    with tracing_into(EXPORTER):
        yield


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    EXPORTER.clear()
    combo8_worker.GATE.clear()
    combo8_worker.STARTED.clear()
    combo8_worker.RUNS.clear()
    yield
    combo8_worker.GATE.set()  # a body still waiting returns


def task_spans() -> list[ReadableSpan]:
    return [s for s in EXPORTER.get_finished_spans() if s.name.startswith("task ")]


def _kill_while_r_runs(journal: Path, new: bool) -> None:
    sigkill_when_ready(start_worker("combo8_worker.py", journal, int(new)))


async def events_until(stream: Any, task_id: str, kind: EventKind) -> list[tuple[str, EventKind]]:
    """``(task_id, kind)`` of the next events of ``stream``, up to ``task_id``'s ``kind``."""
    got: list[tuple[str, EventKind]] = []
    while not got or got[-1] != (task_id, kind):
        event = await asyncio.wait_for(anext(stream), WAIT)
        got.append((event.task_id, event.kind))
    return got


def prometheus_value(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(line.split()[1])


# -- 1. a journal recovery after a SIGKILL ---------------------------------------------------


async def test_metrics_events_and_spans_after_a_sigkill_count_each_task_once(
    tmp_path: Path, new_system: bool
) -> None:
    """The worker ran ``f`` (failed) and ``o`` (completed), was running ``r`` and held
    ``p`` and ``marker`` pending when it was killed. The new process counts each task
    once, in the status it is in: ``f`` failed and ``o`` completed are in
    `tasks_by_status`, but not in the per-process counters (``failures`` is 0, and so
    is ``actorflow_task_failures_total``: ``f`` failed in the killed process, whose
    counters died with it); ``r`` runs again, is counted completed once, and its attempt
    gets one span, the root of a new trace (the journal keeps no trace context). A
    subscriber gets ``r``'s end once. On either task system (each task comes back to
    its own). (``f``, restored failed, was counted in
    ``failures`` again by every process that opened the file, while ``retries`` were
    not; and the recovered ``r`` ran with no span at all.)"""
    journal = tmp_path / "tasks.db"
    await asyncio.to_thread(_kill_while_r_runs, journal, new_system)
    assert file_rows(journal) == [
        ("f", "failed"),
        ("o", "completed"),
        ("r", "running"),
        ("p", "pending"),
        ("marker", "pending"),
    ]
    async with ActorSystem(journal_config(journal)) as system:
        tm = system.task_manager
        stream = tm.events(task_type="default")
        await stream.subscribe()
        assert await asyncio.to_thread(combo8_worker.STARTED.wait, WAIT)
        combo8_worker.GATE.set()
        assert await tm.wait_for_task("r", timeout=WAIT) == "done"
        r = await tm.get_task("r")
        assert (r.status, r.recoveries, r.attempts) == (COMPLETED, 1, 1)
        assert r.backend == ("new" if new_system else "old")
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {COMPLETED: 2, FAILED: 1, PENDING: 2}
        assert dict(metrics.tasks_by_type["default"]) == {COMPLETED: 2, FAILED: 1, PENDING: 2}
        assert (metrics.failures, metrics.retries, metrics.timeouts) == (0, 0, 0)
        assert metrics.execution_time["default"].count == 1
        text = await tm.render_prometheus()
        assert prometheus_value(text, "actorflow_task_failures_total") == 0.0
        assert prometheus_value(text, "actorflow_task_retries_total") == 0.0
        assert prometheus_value(text, 'actorflow_tasks{status="completed"}') == 2.0
        events: list[Any] = []
        while not events or events[-1].kind is not EventKind.COMPLETED:
            events.append(await asyncio.wait_for(anext(stream), WAIT))
        assert [(e.task_id, e.kind) for e in events if e.kind is EventKind.COMPLETED] == [
            ("r", EventKind.COMPLETED)
        ]
        assert {e.task_id for e in events} == {"r"}
        assert stream.dropped == 0
        await stream.aclose()
    assert combo8_worker.RUNS == ["slow"]
    (span,) = task_spans()
    assert span.name == "task r"
    assert span.parent is None
    assert span.status.status_code is StatusCode.OK
    assert dict(span.attributes or {})["actorflow.task.id"] == "r"
    assert dict(span.attributes or {})["actorflow.task.attempt"] == 1


# -- 2. supervisor restarts of the task manager, the facade, the monitor ----------------------

REGISTERED, QUEUED, STARTED, DONE = (
    EventKind.REGISTERED,
    EventKind.QUEUED,
    EventKind.STARTED,
    EventKind.COMPLETED,
)


@pytest.mark.parametrize("plain", [False, True], ids=["coroutine", "thread"])
@pytest.mark.parametrize(
    ("backend", "child"),
    [
        ("new", "task_manager"),
        ("new", "facade"),
        ("new", "task_monitor"),
        ("old", "legacy_task_manager"),
        ("old", "facade"),
        ("old", "task_monitor"),
    ],
)
async def test_a_restart_while_a_task_runs_keeps_metrics_subscribers_and_its_span(
    backend: str, child: str, plain: bool
) -> None:
    """``t`` (a coroutine, or a plain function in the thread pool) runs when ``child``
    is killed and restarted by its supervisor; then ``t`` ends and ``u`` runs. The
    subscriber made before the kill gets every event of both, each once, in order (the
    old task system has no queued step); the metrics count both completed once, with
    the restart; each attempt's span ended once, OK."""
    steps = [REGISTERED, QUEUED, STARTED] if backend == "new" else [REGISTERED, STARTED]
    async with make_system(backend, FakeClock()) as system:
        tm = system.task_manager
        stream = tm.events()
        await stream.subscribe()
        started, release = asyncio.Event(), asyncio.Event()
        if plain:
            await tm.register_task("t", combo8_worker.slow, task_id="t")
            await tm.execute_task("t")
            assert await asyncio.to_thread(combo8_worker.STARTED.wait, WAIT)
        else:
            await tm.register_task("t", gated(started, release, "done"), task_id="t")
            await tm.execute_task("t")
            await asyncio.wait_for(started.wait(), WAIT)
        assert await events_until(stream, "t", STARTED) == [("t", k) for k in steps]
        system.supervisor.child(child).tell(Kill())
        metrics = await tm.get_metrics()  # answered once the killed child is back
        while metrics.restarts.get(child) != 1:  # (ChildRestarted may come after)
            assert metrics.restarts == {}
            metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {TaskStatus.RUNNING: 1}
        release.set()
        combo8_worker.GATE.set()
        assert await tm.wait_for_task("t", timeout=WAIT) == "done"
        assert await tm.submit(gated(asyncio.Event(), release, "u"), task_id="u") == "u"
        assert await events_until(stream, "u", DONE) == [
            ("t", DONE),
            *[("u", k) for k in steps],
            ("u", DONE),
        ]
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {COMPLETED: 2}
        assert dict(metrics.restarts) == {child: 1}
        assert metrics.execution_time["default"].count == 2
        assert (metrics.events_dropped, stream.dropped) == (0, 0)
        await stream.aclose()
    spans = task_spans()
    assert sorted(s.name for s in spans) == ["task gated.<locals>.body", "task t"]
    assert {s.status.status_code for s in spans} == {StatusCode.OK}


# -- 3. slow, failing and leaving subscribers ------------------------------------------------


async def test_a_slow_subscriber_of_100k_events_keeps_the_last_ones_and_counts_the_rest() -> None:
    """25,000 tasks make 100,000 events (MAX_FINISHED_TASKS=0: no removals) while one
    subscriber reads none: it keeps the last `EVENT_BUFFER_SIZE` (1,000, the last task's
    end last) and counts the 99,000 others dropped. A subscriber reading along on the
    caller's loop cannot keep up with the batches (the system is never slowed): what it
    got, each event once, and what it dropped add up to 100,000. The metrics and the
    Prometheus text count the drops of both."""
    config = {"MAX_FINISHED_TASKS": 0}
    async with make_system("new", FakeClock(), **config) as system:
        tm = system.task_manager
        slow = tm.events()
        await slow.subscribe()
        fast = tm.events()
        await fast.subscribe()
        seen: set[tuple[str | None, EventKind]] = set()
        got: list[int] = []

        async def read_along() -> None:
            async for event in fast:
                seen.add((event.task_id, event.kind))
                got.append(1)
                if len(got) + fast.dropped == 100_000:
                    return

        reader = asyncio.ensure_future(read_along())
        results = await tm.map(double, range(25_000))
        assert results == [2 * i for i in range(25_000)]
        await asyncio.wait_for(reader, WAIT * 4)
        assert len(seen) == len(got) == 100_000 - fast.dropped
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {COMPLETED: 25_000}
        assert slow.dropped == 99_000
        assert metrics.events_dropped == slow.dropped + fast.dropped
        text = await tm.render_prometheus()
        dropped = prometheus_value(text, "actorflow_events_dropped_total")
        assert dropped == float(metrics.events_dropped)
        kept = [await asyncio.wait_for(anext(slow), WAIT) for _ in range(1_000)]
        assert kept[-1].kind is DONE
        assert len({(e.task_id, e.kind) for e in kept}) == 1_000
        assert slow._subscriber is not None
        assert slow._subscriber.poll() is None
        await tm.submit(double, 1)
        assert (await asyncio.wait_for(anext(slow), WAIT)).kind is REGISTERED
        assert slow.dropped == 99_000
        await slow.aclose()
        await fast.aclose()


class Boom(Exception):
    pass


async def test_a_subscriber_that_raises_or_leaves_is_unsubscribed_and_drops_nothing_more() -> None:
    """With a buffer of 10 events: one subscriber raises in its ``async with`` block at
    its first event, another ``break``s out of its ``async for`` (a stream no longer
    referenced), a third is closed (``aclose``) from another task
    while events are being delivered. Each is unsubscribed then: 1,000 events later
    nothing was dropped for any of them (they are no longer offered any), and a fourth
    subscriber that reads along gets every event once."""
    async with make_system("new", FakeClock(), EVENT_BUFFER_SIZE=10) as system:
        tm = system.task_manager

        subscribed = asyncio.Event()

        async def raises() -> None:
            # (`async with`: the error, kept by this task, holds this frame and the
            # stream in it: a plain `async for` would stay subscribed; see the README)
            async with tm.events() as stream:
                subscribed.set()
                async for _event in stream:
                    raise Boom("subscriber failed")

        async def breaks() -> None:
            async for _event in tm.events():
                break

        leaving = tm.events()
        await leaving.subscribe()
        reader = tm.events()
        await reader.subscribe()
        failing = asyncio.ensure_future(raises())
        breaking = asyncio.ensure_future(breaks())  # (runs before `raises` sets it)
        await asyncio.wait_for(subscribed.wait(), WAIT)
        await tm.submit(double, 0)
        with pytest.raises(Boom, match="subscriber failed"):
            await asyncio.wait_for(failing, WAIT)
        await asyncio.wait_for(breaking, WAIT)
        assert (await asyncio.wait_for(anext(leaving), WAIT)).kind is REGISTERED
        got: list[tuple[str | None, EventKind]] = []
        for _ in range(4):
            event = await asyncio.wait_for(anext(reader), WAIT)
            got.append((event.task_id, event.kind))

        async def drain() -> int:
            read = 0
            async for _event in leaving:
                read += 1
            return read

        draining = asyncio.ensure_future(drain())
        await leaving.aclose()
        assert await asyncio.wait_for(draining, WAIT) == 0  # (closed before it ran)
        for i in range(250):
            await tm.submit(double, i)
            for _ in range(4):
                event = await asyncio.wait_for(anext(reader), WAIT)
                got.append((event.task_id, event.kind))
        assert len(set(got)) == len(got) == 1_004
        assert reader.dropped == leaving.dropped == 0
        assert (await tm.get_metrics()).events_dropped == 0
        await reader.aclose()


async def test_a_stream_left_by_an_error_but_still_referenced_counts_its_drops_until_closed() -> (
    None
):
    """``async for`` has no hook for a body that raises: a stream still referenced (by
    the caller, or by the kept error's frames) stays subscribed; its buffer fills and
    its losses are counted (`EventStream.dropped`, `events_dropped`) until `aclose`,
    after which nothing more is offered to it (README: use ``async with``)."""
    async with make_system("new", FakeClock(), EVENT_BUFFER_SIZE=4) as system:
        tm = system.task_manager
        stream = tm.events()
        assert await tm.submit(double, 0) == 0

        async def leave() -> None:
            async for _event in stream:
                raise Boom("left")

        with pytest.raises(Boom):
            await leave()
        await tm.map(double, range(3))  # 16 events in all: 1 read, 4 kept, 11 lost
        assert (await tm.get_metrics()).events_dropped == stream.dropped == 11
        await stream.aclose()
        await tm.map(double, range(3))
        assert (await tm.get_metrics()).events_dropped == stream.dropped == 11


async def test_a_blocking_subscriber_sees_its_own_dropped_count() -> None:
    """``system.blocking.events()`` with a buffer of 4: 3 tasks make 12 events while it
    reads none; it keeps the last 4 and says it dropped 8 (`BlockingEventStream.dropped`,
    as `EventStream.dropped`; it had no way to tell but the system-wide metric)."""
    async with make_system("new", FakeClock(), EVENT_BUFFER_SIZE=4) as system:
        tm = system.task_manager
        stream = await asyncio.to_thread(system.blocking.events)
        await tm.map(double, range(3))
        assert (await tm.get_metrics()).events_dropped == 8
        assert stream.dropped == 8
        kept = [await asyncio.to_thread(stream.get, WAIT) for _ in range(4)]
        assert [e.kind for e in kept if e is not None][-1] is DONE
        await asyncio.to_thread(stream.close)
        assert stream.dropped == 8


async def test_a_subscriber_closed_while_the_monitor_offers_a_batch_takes_and_drops_none() -> None:
    """The monitor checked that a subscriber was open, then its stream unsubscribed
    (`close`, from the subscriber's thread), then the monitor offers it a batch bigger
    than its buffer: nothing is buffered for a stream that reads no more, and nothing
    counted dropped (`offer` returns what the monitor adds to `events_dropped`). (The
    batch was buffered and its overflow counted: drops of a stream already gone.)"""
    subscriber = Subscriber(LoopBridge(asyncio.get_running_loop()), 2, None)
    assert subscriber.offer([Event(REGISTERED, 0.0, "a")]) == 0
    subscriber.close()
    assert subscriber.offer([Event(QUEUED, 1.0, "a"), Event(STARTED, 2.0, "a")] * 3) == 0
    assert subscriber.dropped == 0
    assert subscriber.poll() == Event(REGISTERED, 0.0, "a")  # buffered before the close
    assert subscriber.poll() is None
    assert await asyncio.wait_for(subscriber.get(), WAIT) is None


# -- 4. the task system switched at run time --------------------------------------------------


async def test_metrics_events_and_spans_cover_tasks_of_both_task_systems_across_a_switch() -> None:
    """``a`` is registered on the new task system, ``b`` after a switch to the old one,
    then ``a`` and ``b`` run, and ``c`` after a switch back. One subscriber gets every
    event of the three, each once; the metrics count the three completed, by type; each
    attempt has its span, on either system (README, "Tracing": the old system's said
    it was not traced, but its attempts run through the same traced runners)."""
    async with make_system("new", FakeClock()) as system:
        tm = system.task_manager
        stream = tm.events()
        await stream.subscribe()
        await tm.register_task("a", double, (1,), task_id="a", task_type="t1")
        await tm.use_new_task_system(False)
        await tm.register_task("b", double, (2,), task_id="b", task_type="t2")
        assert await tm.execute_task("a", wait=True) == 2
        assert await tm.execute_task("b", wait=True) == 4
        await tm.use_new_task_system(True)
        assert await tm.submit(double, 3, task_id="c", task_type="t1") == 6
        assert [(await tm.get_task(i)).backend for i in "abc"] == ["new", "old", "new"]
        got: set[tuple[str | None, EventKind]] = set()
        while len(got) < 11:
            event = await asyncio.wait_for(anext(stream), WAIT)
            assert (event.task_id, event.kind) not in got
            got.add((event.task_id, event.kind))
        kinds = {REGISTERED, STARTED, DONE}
        assert {(i, k) for i, k in got if k in kinds} == {(i, k) for i in "abc" for k in kinds}
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {COMPLETED: 3}
        assert {t: dict(c) for t, c in metrics.tasks_by_type.items()} == {
            "t1": {COMPLETED: 2},
            "t2": {COMPLETED: 1},
        }
        assert metrics.execution_time["t1"].count == 2
        assert metrics.execution_time["t2"].count == 1
        await stream.aclose()
    spans = task_spans()
    assert sorted(s.name for s in spans) == ["task a", "task b", "task double"]
    assert {s.status.status_code for s in spans} == {StatusCode.OK}


async def test_a_task_failed_before_a_restart_and_retried_gets_a_span(tmp_path: Path) -> None:
    """``f`` failed in a first system on the journal; in the next, `retry_task` runs it
    again from its journal row: the retry's attempt has its span, the root of a new
    trace (the journal keeps no trace context), as a recovered task's has; the retry
    counts as a failure of this process, ``f`` itself does not. (The retry of a
    journaled failed task ran untraced: its spec had no trace context.)"""
    journal = tmp_path / "tasks.db"
    async with ActorSystem(journal_config(journal)) as system:
        await system.task_manager.register_task("f", combo8_worker.boom, task_id="f")
        with pytest.raises(ValueError, match="boom"):
            await system.task_manager.execute_task("f", wait=True)
    EXPORTER.clear()
    async with ActorSystem(journal_config(journal)) as system:
        tm = system.task_manager
        retry = await tm.retry_task("f")
        with pytest.raises(ValueError, match="boom"):
            await tm.wait_for_task(retry, timeout=WAIT)
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {FAILED: 2}
        assert metrics.failures == 1
    (span,) = task_spans()
    assert span.name == "task f"
    assert span.parent is None
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["actorflow.task.id"] == retry


async def test_a_task_that_recovery_fails_counts_as_a_failure_of_the_new_process(
    tmp_path: Path,
) -> None:
    """With MAX_RECOVERIES=0, the ``r`` running at the SIGKILL is not run again: it
    ends failed with `TaskRecoveryError` in the new process, which counts that failure
    (it happened there), and only that one (``f`` failed in the killed process)."""
    journal = tmp_path / "tasks.db"
    await asyncio.to_thread(_kill_while_r_runs, journal, True)
    async with ActorSystem(journal_config(journal, MAX_RECOVERIES=0)) as system:
        tm = system.task_manager
        r = await tm.get_task("r")
        assert (r.status, type(r.error).__name__) == (FAILED, "TaskRecoveryError")
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {COMPLETED: 1, FAILED: 2, PENDING: 2}
        assert metrics.failures == 1
        text = await tm.render_prometheus()
        assert prometheus_value(text, "actorflow_task_failures_total") == 1.0
    assert combo8_worker.RUNS == []
    assert task_spans() == []


async def test_an_event_stream_closed_by_its_owner_ends_at_once() -> None:
    """3 tasks leave 12 events in a stream's buffer; its owner closes it (`aclose`,
    here from another task while the iteration runs): the iteration ends at its next
    step, without the buffered events ("the iteration ends"). (It went on through the
    whole buffer, up to EVENT_BUFFER_SIZE events after the close.) A blocking stream
    closed by its owner likewise gives None."""
    async with make_system("new", FakeClock()) as system:
        tm = system.task_manager
        stream = tm.events()
        blocking = await asyncio.to_thread(system.blocking.events)
        await tm.map(double, range(3))
        assert (await asyncio.wait_for(anext(stream), WAIT)).kind is REGISTERED
        read: list[EventKind] = []

        async def consume() -> None:
            async for event in stream:
                read.append(event.kind)
                if len(read) == 1:
                    await stream.aclose()

        await asyncio.wait_for(consume(), WAIT)
        assert len(read) == 1
        event = await asyncio.to_thread(blocking.get, WAIT)
        assert event is not None
        await asyncio.to_thread(blocking.close)
        assert await asyncio.to_thread(blocking.get, WAIT) is None


# -- the governor across restarts ----------------------------------------------------------


@pytest.mark.parametrize("child", ["task_manager", "task_monitor"])
async def test_the_governors_limit_and_events_go_on_across_a_restart(child: str) -> None:
    """Critical pressure lowers the limit 4 -> 2; ``child`` is killed and restarted;
    then the samples are fine: the limit rises from 2 (not from the configured 4: the
    decision survived) to 3, then 4; the subscriber made before the kill gets the
    critical event and the one back to ok (none for a further rise: the pressure did
    not change), in order; the metrics and the Prometheus gauge agree."""
    clock = FakeClock()
    samples = iter([ResourceSample(99.0, 10.0)] + [ResourceSample(10.0, 10.0)] * 3)
    config = {
        "RESOURCE_CHECK_INTERVAL": 5.0,
        "MAX_CONCURRENT_TASKS": 4,
        "CLEANUP_INTERVAL": 0,
        "RESTART_BACKOFF_INITIAL": 0.0,
    }
    async with ActorSystem(config, clock=clock, probe=lambda: next(samples)) as system:
        tm = system.task_manager
        limits: list[int] = []
        async with tm.events() as stream:
            for tick in range(3):
                await asyncio.to_thread(clock.wait_for_timers, 1, WAIT)
                clock.advance(5.0)
                metrics = await tm.get_metrics()  # (queued behind the tick)
                limits.append(metrics.concurrency_limit)
                if tick == 0:
                    system.supervisor.child(child).tell(Kill())
                    while (await tm.get_metrics()).restarts.get(child) != 1:
                        pass
            assert (await tm.get_metrics()).concurrency_limit == 4
            assert system._state.states["task_manager"].limit == 4
            events = []
            for _ in range(2):
                event = await asyncio.wait_for(anext(stream), WAIT)
                events.append((event.kind, event.detail["previous_limit"], event.detail["limit"]))
        text = await tm.render_prometheus()
    assert limits == [2, 3, 4]
    assert prometheus_value(text, "actorflow_concurrency_limit") == 4.0
    assert events == [(EventKind.RESOURCE_CRITICAL, 4, 2), (EventKind.RESOURCE_OK, 2, 3)]
