"""OpenTelemetry: one span per task attempt, child of the span current at register_task."""

from __future__ import annotations

import asyncio
import multiprocessing.resource_tracker
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import left_on_a_closed_loop, tracing_into
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from actors import ActorSystem, ActorSystemError, TaskTimeoutError
from supervisors.testing import FakeClock

EXPORTER = InMemorySpanExporter()
tracer = trace.get_tracer("tests")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def _provider() -> Iterator[TracerProvider]:
    """The SDK provider, recording into `EXPORTER`, for this module only."""
    with tracing_into(EXPORTER) as provider:
        yield provider


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans the test's tasks recorded, and only those."""
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def attempts(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("task ")]


def by_name(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.name == name]
    return span


def fails_then_works(failures: int) -> object:
    calls = []

    async def work() -> str:
        calls.append(None)
        if len(calls) <= failures:
            raise ValueError(f"boom {len(calls)}")
        return "done"

    return work


@pytest.mark.parametrize("kind", ["coroutine", "thread"])
async def test_an_attempt_is_a_child_of_the_span_current_at_registration(
    kind: str, spans: InMemorySpanExporter
) -> None:
    async def in_coroutine() -> int:
        with tracer.start_as_current_span("inside"):
            return 1

    def in_thread() -> int:
        with tracer.start_as_current_span("inside"):
            return 1

    async with ActorSystem() as system:
        tm = system.task_manager
        with tracer.start_as_current_span("request"):
            task_id = await tm.register_task(
                "fetch", in_coroutine if kind == "coroutine" else in_thread, task_type="io"
            )
        assert trace.get_current_span() is trace.INVALID_SPAN
        assert await tm.execute_task(task_id, wait=True) == 1  # outside the request span
    request, attempt, inside = (by_name(spans, n) for n in ("request", "task fetch", "inside"))
    assert request.parent is None
    assert attempt.parent is not None
    assert inside.parent is not None
    assert attempt.context is not None
    assert request.context is not None
    assert attempt.context.trace_id == request.context.trace_id
    assert attempt.parent.span_id == request.context.span_id
    assert inside.parent.span_id == attempt.context.span_id
    assert dict(attempt.attributes or {}) == {
        "actorflow.task.id": task_id,
        "actorflow.task.name": "fetch",
        "actorflow.task.type": "io",
        "actorflow.task.attempt": 1,
    }
    assert (attempt.status.status_code, attempt.events) == (StatusCode.OK, ())


async def test_without_a_current_span_the_attempt_is_a_root(spans: InMemorySpanExporter) -> None:
    async def work() -> None:
        return None

    async with ActorSystem() as system:
        task_id = await system.task_manager.register_task("alone", work)
        await system.task_manager.execute_task(task_id, wait=True)
    (attempt,) = attempts(spans)
    assert (attempt.name, attempt.parent, attempt.status.status_code) == (
        "task alone",
        None,
        StatusCode.OK,
    )


@pytest.mark.parametrize("kind", ["coroutine", "thread"])
async def test_a_failed_attempt_has_error_status_and_the_exception_event(
    kind: str, spans: InMemorySpanExporter
) -> None:
    async def in_coroutine() -> None:
        raise ValueError("boom")

    def in_thread() -> None:
        raise ValueError("boom")

    async with ActorSystem() as system:
        tm = system.task_manager
        task_id = await tm.register_task("bad", in_coroutine if kind == "coroutine" else in_thread)
        with pytest.raises(ValueError, match=r"^boom$"):
            await tm.execute_task(task_id, wait=True)
    (attempt,) = attempts(spans)
    assert (attempt.status.status_code, attempt.status.description) == (
        StatusCode.ERROR,
        "ValueError: boom",
    )
    (event,) = attempt.events
    assert event.name == "exception"
    attributes = event.attributes or {}
    assert (attributes["exception.type"], attributes["exception.message"]) == (
        "ValueError",
        "boom",
    )


async def test_a_retried_task_has_one_span_per_attempt(spans: InMemorySpanExporter) -> None:
    async with ActorSystem() as system:
        tm = system.task_manager
        with tracer.start_as_current_span("request"):
            task_id = await tm.register_task("flaky", fails_then_works(2), max_retries=2)  # type: ignore[arg-type]
        assert await tm.execute_task(task_id, wait=True) == "done"
    request = by_name(spans, "request")
    assert request.context is not None
    assert [
        (
            s.attributes["actorflow.task.attempt"] if s.attributes else None,
            s.status.status_code,
            s.status.description,
            s.parent.span_id if s.parent else None,
        )
        for s in attempts(spans)
    ] == [
        (1, StatusCode.ERROR, "ValueError: boom 1", request.context.span_id),
        (2, StatusCode.ERROR, "ValueError: boom 2", request.context.span_id),
        (3, StatusCode.OK, None, request.context.span_id),
    ]


@pytest.mark.parametrize("kind", ["coroutine", "thread"])
async def test_a_timed_out_attempt_ends_its_span_with_the_timeout_error(
    kind: str, spans: InMemorySpanExporter
) -> None:
    """Each attempt's span ends at its timeout, ERROR with the task's `TaskTimeoutError`
    (a coroutine's span said ``CancelledError: ``; a function's stayed open while it ran
    on in its thread, then ended OK when it returned)."""
    release, returned = threading.Event(), threading.Semaphore(0)

    async def in_coroutine() -> None:
        await asyncio.Event().wait()

    def in_thread() -> str:
        release.wait(10)
        returned.release()
        return "late"

    async with ActorSystem({"MAX_THREAD_WORKERS": 2}) as system:
        tm = system.task_manager
        with tracer.start_as_current_span("request"):
            task_id = await tm.register_task(
                "slow",
                in_coroutine if kind == "coroutine" else in_thread,
                timeout=0.05,
                max_retries=1,
            )
        with pytest.raises(TaskTimeoutError, match=r" attempt 2 timed out after 0\.05s$"):
            await tm.execute_task(task_id, wait=True)
        ended = attempts(spans)  # ended already: the functions may still be running
        release.set()
        if kind == "thread":  # their returns, later, change nothing
            for _ in range(2):
                assert await asyncio.to_thread(returned.acquire, True, 10)
    request = by_name(spans, "request")
    assert request.context is not None
    messages = [f"task {task_id!r} attempt {n} timed out after 0.05s" for n in (1, 2)]
    assert [
        (
            (s.attributes or {})["actorflow.task.attempt"],
            s.parent.span_id if s.parent else None,
            s.status.status_code,
            s.status.description,
            [
                (
                    e.name,
                    (e.attributes or {})["exception.type"],
                    (e.attributes or {})["exception.message"],
                )
                for e in s.events
            ],
        )
        for s in ended
    ] == [
        (
            n,
            request.context.span_id,
            StatusCode.ERROR,
            f"TaskTimeoutError: {message}",
            [("exception", "actors.core._errors.TaskTimeoutError", message)],
        )
        for n, message in zip((1, 2), messages, strict=True)
    ]
    assert attempts(spans) == ended


async def test_a_cancelled_attempt_ends_its_span_with_the_cancel_error(
    spans: InMemorySpanExporter,
) -> None:
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    async with ActorSystem() as system:
        tm = system.task_manager
        task_id = await tm.register_task("hang", hang)
        await tm.execute_task(task_id)
        await asyncio.wait_for(started.wait(), 10)
        assert await tm.cancel_task(task_id) is True
    (attempt,) = attempts(spans)
    assert (attempt.status.status_code, attempt.status.description) == (
        StatusCode.ERROR,
        f"TaskCancelledError: task {task_id!r} was cancelled",
    )
    assert [(e.attributes or {})["exception.type"] for e in attempt.events] == [
        "actors.core._errors.TaskCancelledError"
    ]


async def test_a_task_registered_inside_a_task_is_a_child_of_its_attempt(
    spans: InMemorySpanExporter,
) -> None:
    async def child() -> int:
        return 2

    async with ActorSystem() as system:
        tm = system.task_manager

        async def parent() -> int:
            child_id = await tm.register_task("child", child)
            value: int = await tm.execute_task(child_id, wait=True)
            return value

        task_id = await tm.register_task("parent", parent)
        assert await tm.execute_task(task_id, wait=True) == 2
    outer, inner = by_name(spans, "task parent"), by_name(spans, "task child")
    assert outer.parent is None
    assert outer.context is not None
    assert inner.parent is not None
    assert inner.parent.span_id == outer.context.span_id
    assert (outer.status.status_code, inner.status.status_code) == (StatusCode.OK, StatusCode.OK)


def double(x: int) -> int:
    return 2 * x


async def test_a_process_attempt_is_recorded_around_the_remote_call(
    spans: InMemorySpanExporter,
) -> None:
    multiprocessing.resource_tracker.ensure_running()  # process-wide, as in test_backends
    async with ActorSystem({"MAX_THREAD_WORKERS": 1}) as system:
        tm = system.task_manager
        with tracer.start_as_current_span("request"):
            task_id = await tm.register_task("remote", double, (21,), executor="process")
        assert await tm.execute_task(task_id, wait=True) == 42
    request, attempt = by_name(spans, "request"), by_name(spans, "task remote")
    assert request.context is not None
    assert attempt.parent is not None
    assert (attempt.parent.span_id, attempt.status.status_code) == (
        request.context.span_id,
        StatusCode.OK,
    )
    assert dict(attempt.attributes or {})["actorflow.task.attempt"] == 1


@pytest.mark.parametrize(
    ("hide", "shown"),
    [
        ('sys.modules["opentelemetry"] = None  # as if not installed', "False None"),
        ("pass  # installed, but the application sets no tracer provider", "True None"),
    ],
)
def test_without_opentelemetry_or_a_provider_nothing_is_traced(hide: str, shown: str) -> None:
    program = textwrap.dedent(
        """
        import asyncio, sys
        HIDE
        from actors import ActorSystem, TaskTimeoutError
        from actors.observe import _tracing

        async def main():
            async def work():
                return 7
            async with ActorSystem() as system:
                task_id = await system.task_manager.register_task("t", work)
                print(await system.task_manager.execute_task(task_id, wait=True))

        print(_tracing.AVAILABLE, _tracing.capture())
        asyncio.run(main())
        """
    ).replace("HIDE", hide)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=30
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{shown}\n7\n", "")


def test_a_provider_set_after_captures_without_one_is_seen_by_the_next_capture() -> None:
    program = textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from actors.observe import _tracing

        before = [_tracing.capture(), _tracing.capture()]  # the environment read once
        trace.set_tracer_provider(TracerProvider())
        with trace.get_tracer("t").start_as_current_span("outer") as span:
            print(before, trace.get_current_span(_tracing.capture()) is span)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=30
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "[None, None] True\n", "")


def test_an_attempt_left_on_a_closed_loop_ends_its_span_with_the_cleanup_error(
    spans: InMemorySpanExporter,
) -> None:
    """A coroutine attempt pending on a loop closed without cancelling it fails at the
    next cleanup tick: its span ends with that error. (It ended with "GeneratorExit: "
    whenever the abandoned coroutine happened to be freed.)"""
    clock = FakeClock()
    with ActorSystem({"CLEANUP_INTERVAL": 5}, clock=clock) as system:
        tm, blocking = system.task_manager, system.blocking
        task_id = left_on_a_closed_loop(tm)
        clock.wait_for_timers(2, 10)  # each manager's cleanup timer
        clock.advance(5)
        message = (
            f"task {task_id!r} attempt 1 ended unfinished: the event loop running it was "
            "closed without cancelling it"
        )
        with pytest.raises(ActorSystemError, match=f"^{re.escape(message)}$"):
            blocking.wait_for_task(task_id, timeout=10)
    (attempt,) = attempts(spans)
    assert (attempt.status.status_code, attempt.status.description) == (
        StatusCode.ERROR,
        f"ActorSystemError: {message}",
    )
    assert [(e.attributes or {})["exception.type"] for e in attempt.events] == [
        "actors.core._errors.ActorSystemError"
    ]
