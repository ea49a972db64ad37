"""What many tests share: event recorders, small actors, task bodies, systems, waits.

Every wait here is bounded by `WAIT` real seconds; none sleeps.
"""

from __future__ import annotations

import asyncio
import multiprocessing.resource_tracker
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path
from typing import Any

import psutil
import pykka
import pytest
from hypothesis import HealthCheck, settings
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base

import actors
from actors import ActorSystem, TaskCancelledError, TaskInfo, UnifiedTaskManager
from actors.core import CANCELLED
from actors.runtime._backends import local_cluster
from supervisors import (
    RestartIntensityExceeded,
    SupervisedActor,
    Supervisor,
    SupervisorEvent,
    SupervisorEventKind,
)
from supervisors.testing import FakeClock

WAIT = 5.0
"""Upper bound, in real seconds, on waiting for anything in the tests."""

PROPERTY = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
"""The settings of a property test: 200 examples, no deadline. The autouse leak check in
conftest.py is function scoped; it is harmless to run it once around all the examples."""


# -- supervisors ----------------------------------------------------------------------------


class SupervisorEvents:
    """A supervisor ``listener`` that records every event; tests wait on it (bounded)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: list[SupervisorEvent] = []

    def __call__(self, event: SupervisorEvent) -> None:
        with self._cond:
            self.items.append(event)
            self._cond.notify_all()

    def of(
        self, kind: SupervisorEventKind | None = None, child_id: str | None = None
    ) -> list[SupervisorEvent]:
        """The events of ``kind`` (any kind if None) about ``child_id`` (any if None)."""
        with self._cond:
            return [
                e
                for e in self.items
                if (kind is None or e.kind is kind) and (child_id is None or e.child_id == child_id)
            ]

    def kinds(self, child_id: str | None = None) -> list[SupervisorEventKind]:
        return [e.kind for e in self.of(None, child_id)]

    def wait_for(
        self, kind: SupervisorEventKind, child_id: str | None = None, count: int = 1
    ) -> None:
        """Until ``count`` events of ``kind`` (about ``child_id``) were recorded."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.of(kind, child_id)) >= count, WAIT):
                pytest.fail(f"fewer than {count} {kind} events within {WAIT}s: {self.items}")


def supervise(
    stopper: list[pykka.ActorRef[Any]], children: list[Any], **options: Any
) -> pykka.ActorRef[Supervisor]:
    """`Supervisor.start` of ``children`` with ``options``, without its watchdog thread;
    the ``stopper`` fixture stops it after the test."""
    ref = Supervisor.start(children, watchdog_interval=None, **options)
    stopper.append(ref)
    return ref


class Ledger:
    """Per-child state object: outlives incarnations."""

    def __init__(self) -> None:
        self.items: list[Any] = []


class Echo(SupervisedActor):
    def on_receive(self, message: Any) -> Any:
        return message


class FailsToStart(SupervisedActor):
    def on_start(self) -> None:
        raise RuntimeError("no database")


class StartsOnce(SupervisedActor):
    """Starts once; every later incarnation fails in ``on_start``."""

    def __init__(self, state: Ledger) -> None:
        super().__init__()
        self.state = state

    def on_start(self) -> None:
        self.state.items.append("start")
        if len(self.state.items) > 1:
            raise RuntimeError(f"start {len(self.state.items)} failed")

    def on_receive(self, message: Any) -> Any:
        return "pong"


class Escalations:
    """A supervisor's ``on_escalate``: records each `RestartIntensityExceeded`; ``done``
    is set by the first."""

    def __init__(self) -> None:
        self.errors: list[RestartIntensityExceeded] = []
        self.done = threading.Event()

    def __call__(self, error: RestartIntensityExceeded) -> None:
        self.errors.append(error)
        self.done.set()


class _Fail(Exception):
    pass


def tenacity_schedule(wait: wait_base, steps: int) -> list[float]:
    """The delays tenacity itself sleeps between ``steps + 1`` failing attempts."""
    slept: list[float] = []
    retrying = Retrying(
        wait=wait,
        stop=stop_after_attempt(steps + 1),
        retry=retry_if_exception_type(_Fail),
        sleep=slept.append,
        reraise=True,
    )

    def always_fails() -> None:
        raise _Fail

    with pytest.raises(_Fail):
        retrying(always_fails)
    return slept


class Logged(SupervisedActor):
    """Records its starts, stops and crashes in a list (shared by siblings, say);
    answers ``"ping"`` with its urn."""

    def __init__(self, name: str = "w", log: list[str] | None = None) -> None:
        super().__init__()
        self.name = name
        self.log = [] if log is None else log

    def on_start(self) -> None:
        self.log.append(f"start:{self.name}")

    def on_stop(self) -> None:
        self.log.append(f"stop:{self.name}")

    def on_failure(self, *exc_info: Any) -> None:
        self.log.append(f"crash:{self.name}")

    def on_receive(self, message: Any) -> Any:
        return self.actor_urn if message == "ping" else None


# -- values no message can show ---------------------------------------------------------


class Hostile:
    """A value no message can show by repr: its __repr__, __eq__ and __hash__ raise (so
    no dict lookup survives it either). Shown as
    ``<Hostile object; repr() raised RuntimeError>``."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __hash__(self) -> int:
        raise RuntimeError("hash")


class Unprintable(Exception):
    """An error whose repr and str raise (a driver's or third-party error gone wrong).
    Shown as ``<Unprintable object; repr() raised RuntimeError>``."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")


def fails_unprintably() -> None:
    """A plain function (a task body, a breaker's call) that raises `Unprintable`."""
    raise Unprintable


# -- configuration ------------------------------------------------------------------------

# The float keys that are durations in seconds (each at most MAX_SECONDS).
DURATION_KEYS = (
    "RESTART_WITHIN_SECONDS",
    "RESTART_BACKOFF_INITIAL",
    "RESTART_BACKOFF_MAX",
    "RESTART_RESET_AFTER",
    "CLEANUP_INTERVAL",
    "CLEANUP_MAX_AGE",
    "CALL_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "RESOURCE_CHECK_INTERVAL",
    "BREAKER_RECOVERY_TIMEOUT",
)
# The float keys that are percentages.
PERCENT_KEYS = (
    "CPU_HIGH_PERCENT",
    "MEMORY_HIGH_PERCENT",
    "CPU_CRITICAL_PERCENT",
    "MEMORY_CRITICAL_PERCENT",
)


# -- task systems -----------------------------------------------------------------------


class Boom(Exception):
    """What failing task bodies raise."""


def make_system(backend: str, clock: FakeClock, **config: Any) -> ActorSystem:
    """A system on ``backend`` ("new" or "old") with the fake ``clock``, restarting at
    once, without periodic cleanup (its timers would count with those tests wait on)."""
    return ActorSystem(
        {
            "USE_NEW_TASK_SYSTEM": backend == "new",
            "RESTART_BACKOFF_INITIAL": 0.0,
            "CLEANUP_INTERVAL": 0,
            **config,
        },
        clock=clock,
    )


@contextmanager
def tracing_into(exporter: Any) -> Iterator[Any]:
    """An OpenTelemetry SDK tracer provider recording into ``exporter`` (an
    ``InMemorySpanExporter``) while the block runs: a test module's, as a module
    fixture. Afterwards it is shut down and unset, so later modules run untraced, as they
    do alone (a provider left behind made every later task's span pile up)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    if trace._TRACER_PROVIDER is not None:  # type: ignore[attr-defined]
        pytest.fail(f"a tracer provider is already set: {trace.get_tracer_provider()!r}")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        yield provider
    finally:
        provider.shutdown()
        reset_trace_globals()
        exporter.clear()


def reset_trace_globals() -> None:
    """Back to "no tracer provider set", as OpenTelemetry's own tests do between tests
    (``opentelemetry.test.globals_test.reset_trace_globals``, not installed here): the
    API sets its global provider once per process and has no public way to unset it."""
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    names = ("_TRACER_PROVIDER_SET_ONCE", "_TRACER_PROVIDER", "_PROXY_TRACER_PROVIDER")
    missing = [name for name in names if not hasattr(trace, name)]
    if missing:
        pytest.fail(f"opentelemetry.trace {missing} are gone: reset the globals another way")
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._PROXY_TRACER_PROVIDER = trace.ProxyTracerProvider()  # type: ignore[attr-defined]


def journal_config(path: Path, **config: Any) -> dict[str, Any]:
    """A system journaling to ``path``, without periodic cleanup."""
    return {"JOURNAL_PATH": str(path), "CLEANUP_INTERVAL": 0, **config}


@asynccontextmanager
async def journaled_manager(path: Path, **config: Any) -> AsyncIterator[UnifiedTaskManager]:
    """The task manager of a system journaling to ``path`` (`journal_config`), stopped
    when the block ends."""
    async with ActorSystem(journal_config(path, **config)) as system:
        yield system.task_manager


def file_rows(path: Path) -> list[tuple[Any, ...]]:
    """The ``(id, status)`` rows of the journal file at ``path``, in insertion order."""
    with closing(sqlite3.connect(path)) as connection, connection:
        return connection.execute("SELECT id, status FROM tasks ORDER BY rowid").fetchall()


def start_worker(script: str, *args: object, **env: str) -> subprocess.Popen[str]:
    """Starts ``python tests/SCRIPT ARGS...`` with the project on its PYTHONPATH (and
    ``env`` added to the environment); its stdout is a text pipe."""
    worker = Path(__file__).with_name(script)
    environ = {**os.environ, "PYTHONPATH": str(worker.parent.parent), **env}
    command = [sys.executable, str(worker), *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environ)


def sigkill_when_ready(process: subprocess.Popen[str]) -> None:
    """Waits for ``process`` to print ``ready``, then kills it with SIGKILL (whatever it
    printed) and reaps it within `WAIT`."""
    assert process.stdout is not None
    try:
        assert process.stdout.readline() == "ready\n"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(WAIT)
        process.stdout.close()


async def ready_until_sigkill(tm: UnifiedTaskManager, marker: Callable[[int], Any]) -> None:
    """The end of a worker script: registers durable ``marker`` (``marker(0)``; answered
    once committed, with or after what the worker journaled before), prints ``ready``
    for `sigkill_when_ready` and waits for the SIGKILL."""
    await tm.register_task("marker", marker, (0,), task_id="marker")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().create_future()


@contextmanager
def dask_cluster(workers: int) -> Iterator[str]:
    """A `distributed.LocalCluster` of ``workers`` real worker processes (one thread
    each); yields its scheduler's address. No worker process outlives it."""
    from distributed.utils import _offload_executor

    # distributed keeps one process-wide thread ('Dask-Offload_0') that it never stops;
    # start it now, before any test takes its baseline of threads (distributed's own
    # test suite does the same at import). The stdlib's resource tracker process is as
    # process-wide: started by the first spawned worker, alive until the interpreter exits.
    _offload_executor.submit(lambda: None).result()
    multiprocessing.resource_tracker.ensure_running()
    before = child_processes()
    cluster = local_cluster(workers)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close(timeout=WAIT)
    assert child_processes() == before


def child_processes() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


async def until(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), WAIT)


async def timers_armed(clock: FakeClock, count: int = 1) -> None:
    """Until ``count`` timers are armed on ``clock`` (then `FakeClock.advance` fires them)."""
    await asyncio.to_thread(clock.wait_for_timers, count, WAIT)


async def double(x: int) -> int:
    return 2 * x


def add(x: int, y: int = 0) -> int:
    return x + y


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
    """A coroutine function that sets ``started``, waits for ``release``, returns ``value``."""

    async def body() -> Any:
        started.set()
        await release.wait()
        return value

    return body


def hangs(started: asyncio.Event, cancelled: asyncio.Event) -> Callable[[], Awaitable[None]]:
    """A coroutine function that sets ``started`` and waits for ever; ``cancelled`` is set
    when it is cancelled (the cancellation is raised on)."""
    never = asyncio.Event()

    async def body() -> None:
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return body


class SlowToCancel:
    """``run()``: a coroutine that sets ``running`` and waits until it is cancelled; its
    cancellation then sets ``cleaning``, waits (in a thread, up to `WAIT`) for
    ``release``, appends "cleaned" to ``cleaned`` and is raised on. (A task slow to
    end its cancellation, holding a loop thread in its cleanup.)"""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.cleaning = threading.Event()
        self.release = threading.Event()
        self.cleaned: list[str] = []

    async def run(self) -> None:
        try:
            self.running.set()
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.cleaning.set()
            await asyncio.to_thread(self.release.wait, WAIT)  # the thread is in its cleanup
            self.cleaned.append("cleaned")
            raise


class WaitsForToken:
    """``run``: a plain function that waits (up to `WAIT`) for its attempt's
    cancellation token, records whether it was set, then returns ``"late"``."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.returned = threading.Event()
        self.token_set: list[bool] = []

    def run(self) -> str:
        token = actors.cancellation_token()
        self.started.set()
        try:
            self.token_set.append(token.wait(WAIT))
            return "late"
        finally:
            self.returned.set()

    async def assert_token_was_set(self, tm: UnifiedTaskManager) -> None:
        """``run`` saw its token set and returned, and its late outcome was reported."""
        assert await asyncio.to_thread(self.returned.wait, WAIT)
        assert self.token_set == [True]
        # The pool has one worker: once this runs, the late outcome has been reported.
        assert await tm.thread_pool.submit(lambda: "barrier") == "barrier"


async def running_forever(tm: UnifiedTaskManager) -> str:
    """The id of a task ("forever") registered and executed on ``tm``, once its
    coroutine runs; it runs until it is cancelled."""
    started = asyncio.Event()
    task = await tm.register_task("forever", gated(started, asyncio.Event()))
    await tm.execute_task(task)
    await asyncio.wait_for(started.wait(), 10)
    return task


def left_on_a_closed_loop(tm: UnifiedTaskManager) -> str:
    """Registers and starts task ``hangs`` (a coroutine that waits for ever) on a new
    event loop, then closes that loop with the task's asyncio task still pending (never
    cancelled, as ``loop.close()`` after ``run_until_complete`` leaves it); returns the
    task's id. Call it from no running loop."""
    loop = asyncio.new_event_loop()
    started = asyncio.Event()

    async def hangs() -> None:
        started.set()
        await asyncio.get_running_loop().create_future()

    async def start() -> str:
        task_id = await tm.register_task("hangs", hangs)
        await tm.execute_task(task_id)
        await asyncio.wait_for(started.wait(), WAIT)
        return task_id

    try:
        return loop.run_until_complete(start())
    finally:
        loop.close()  # its task still pending: never cancelled


def ids(infos: list[TaskInfo]) -> set[str]:
    return {info.task_id for info in infos}


async def assert_cancelled(tm: UnifiedTaskManager, task_id: str) -> None:
    """The task is cancelled, and every call on it says so."""
    assert await tm.get_task_status(task_id) is CANCELLED
    error = await tm.get_task_error(task_id)
    assert isinstance(error, TaskCancelledError)
    assert str(error) == f"task {task_id!r} was cancelled"
    with pytest.raises(TaskCancelledError):
        await tm.wait_for_task(task_id, timeout=WAIT)
    assert await tm.cancel_task(task_id) is False
    assert await tm.execute_task(task_id) is False


# -- the engine without actors ---------------------------------------------------------------


class AnAttempt:
    """The attempt `RecordingPort` starts: claimed at once, nothing to cancel."""

    token = object()

    def claim(self) -> bool:
        return True

    def cancel(self, error: BaseException | None = None) -> None:
        pass


class RecordingPort:
    """An engine port that records the attempts it starts (task id, attempt) and arms
    no timer (none is asked for)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []

    def start_attempt(self, record: Any) -> AnAttempt:
        self.started.append((record.task_id, record.attempts))
        return AnAttempt()

    def timeout_after(self, delay: float, task_id: str, attempt: int) -> Any:
        raise AssertionError("no timeout was asked for")

    def retry_after(self, delay: float, task_id: str, attempt: int) -> Any:
        raise AssertionError("no retry was asked for")


class Replies:
    """A reply channel that records what it is given: ``("result", value)`` or
    ``("error", error)``."""

    def __init__(self) -> None:
        self.got: list[tuple[str, Any]] = []

    def set_result(self, value: Any) -> None:
        self.got.append(("result", value))

    def set_exception(self, error: BaseException) -> None:
        self.got.append(("error", error))


def requests_of(message: Any) -> Iterable[Any]:
    """The requests one message to the facade carries (a `Batch` unpacked)."""
    from actors.runtime import messages

    return message.items if isinstance(message, messages.Batch) else (message,)


def spy_on_facade(
    system: ActorSystem,
    monkeypatch: pytest.MonkeyPatch,
    entries: Callable[[Any], Iterable[Any]] = requests_of,
) -> list[Any]:
    """A list of ``entries(message)`` for every message told to ``system``'s facade from
    now on (default: its requests, batches unpacked); the messages go on as before."""
    facade = system._check()
    sent: list[Any] = []

    class Spy:
        @property
        def actor_ref(self) -> Any:
            return facade.actor_ref

        def tell(self, message: Any) -> None:
            sent.extend(entries(message))
            facade.tell(message)

    monkeypatch.setattr(system, "_facade", Spy())
    return sent


def refusal(error: type[BaseException], call: Callable[..., object], *args: object) -> str:
    """The text of the ``error`` that ``call(*args)`` raises (the test fails if it raises
    none, or another, a subclass included)."""
    with pytest.raises(error) as raised:
        call(*args)
    assert type(raised.value) is error
    return str(raised.value)


async def refused_as_before(
    tm: UnifiedTaskManager,
    call: Callable[[UnifiedTaskManager], Awaitable[Any]],
    error: type[BaseException],
) -> str:
    """The text of the ``error`` that ``call(tm)`` raises (the test fails if it raises
    none, or another, a subclass included, or if the call changed any task)."""
    before = await tm.get_all_tasks()
    with pytest.raises(error) as raised:
        await call(tm)
    assert type(raised.value) is error
    assert await tm.get_all_tasks() == before
    return str(raised.value)
