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
    file_rows,
    gated,
    journal_config,
    make_system,
    reset_trace_globals,
    sigkill_when_ready,
    start_worker,
)
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from actors import ActorSystem, EventKind, TaskStatus
from supervisors import Kill
from supervisors.testing import FakeClock

EXPORTER = InMemorySpanExporter()
COMPLETED, FAILED, PENDING = TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.PENDING


@pytest.fixture(scope="module", autouse=True)
def _provider() -> Iterator[None]:
    """An SDK tracer provider recording into `EXPORTER` for this module only (unset
    afterwards, so later modules run untraced, as they do alone)."""
    if trace._TRACER_PROVIDER is not None:  # type: ignore[attr-defined]
        pytest.fail(f"a tracer provider is already set: {trace.get_tracer_provider()!r}")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    try:
        yield
    finally:
        provider.shutdown()
        reset_trace_globals()
        EXPORTER.clear()


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


def _kill_while_r_runs(journal: Path) -> None:
    sigkill_when_ready(start_worker("combo8_worker.py", journal))


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
    tmp_path: Path,
) -> None:
    """The worker ran ``f`` (failed) and ``o`` (completed), was running ``r`` and held
    ``p`` and ``marker`` pending when it was killed. The new process counts each task
    once, in the status it is in: ``f`` failed and ``o`` completed are in
    `tasks_by_status`, but not in the per-process counters (``failures`` is 0, and so
    is ``actorflow_task_failures_total``: ``f`` failed in the killed process, whose
    counters died with it); ``r`` runs again, is counted completed once, and its attempt
    gets one span, the root of a new trace (the journal keeps no trace context). A
    subscriber gets ``r``'s end once. (``f``, restored failed, was counted in
    ``failures`` again by every process that opened the file, while ``retries`` were
    not; and the recovered ``r`` ran with no span at all.)"""
    journal = tmp_path / "tasks.db"
    await asyncio.to_thread(_kill_while_r_runs, journal)
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
@pytest.mark.parametrize("child", ["task_manager", "facade", "task_monitor"])
async def test_a_restart_while_a_task_runs_keeps_metrics_subscribers_and_its_span(
    child: str, plain: bool
) -> None:
    """``t`` (a coroutine, or a plain function in the thread pool) runs when ``child``
    is killed and restarted by its supervisor; then ``t`` ends and ``u`` runs. The
    subscriber made before the kill gets every event of both, each once, in order; the
    metrics count both completed once, with the restart; each attempt's span ended
    once, OK."""
    async with make_system("new", FakeClock()) as system:
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
        assert await events_until(stream, "t", STARTED) == [
            ("t", REGISTERED),
            ("t", QUEUED),
            ("t", STARTED),
        ]
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
            ("u", REGISTERED),
            ("u", QUEUED),
            ("u", STARTED),
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
