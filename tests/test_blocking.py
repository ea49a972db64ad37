"""The blocking API: ``with ActorSystem() as system`` and ``system.blocking`` in
synchronous code, from plain threads and from a thread-pool task; refused on a thread
that runs an event loop. Waits are bounded by `WAIT` or by the calls' own bounds."""

from __future__ import annotations

import asyncio
import gc
import inspect
import math
import re
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from actors import (
    ActorSystem,
    ActorSystemError,
    BlockingCallError,
    BlockingTaskManager,
    CallTimeout,
    EventKind,
    InvalidTaskError,
    TaskNotFoundError,
    TaskStatus,
    TaskTimeoutError,
    UnifiedTaskManager,
    WaitTimeoutError,
    configure_logging,
)
from actors.core import LoopThread, _loop_thread
from actors.runtime import CHILD_IDS
from actors.runtime._backends import new_process_pool
from actors.runtime._pool import PoolState

WAIT = 5.0
REFUSED = (
    r"^system\.blocking\.{}\(\) was called from a thread that runs an event loop: it would "
    r"block that loop \(and deadlock if it is the actor system's own\); in a coroutine use "
    r"the async client, `await system\.task_manager\.<method>\(\.\.\.\)`$"
)


class Boom(Exception):
    pass


def config(backend: str = "new") -> dict[str, Any]:
    return {"USE_NEW_TASK_SYSTEM": backend == "new", "CLEANUP_INTERVAL": 0}


def add(x: int, y: int) -> int:
    return x + y


async def loop_name() -> str:
    """The name of the thread whose event loop runs this coroutine task."""
    await asyncio.sleep(0)
    return threading.current_thread().name


def fail() -> None:
    raise Boom("broken")


def test_with_runs_tasks_from_sync_code_and_leaves_no_thread(backend: str) -> None:
    before = set(threading.enumerate())
    with ActorSystem(config(backend)) as system:
        blocking = system.blocking
        task_id = blocking.register_task("add", add, (2, 3))
        assert blocking.get_task_status(task_id) is TaskStatus.PENDING
        assert blocking.execute_task(task_id, wait=True) == 5
        # Coroutine tasks registered from sync code run on the system's own loop thread.
        assert blocking.submit(loop_name) == "actorflow-loop"
        coro_id = blocking.register_task("coro", loop_name)
        assert blocking.execute_task(coro_id) is True
        assert blocking.wait_for_task(coro_id, timeout=WAIT) == "actorflow-loop"
        with pytest.raises(Boom, match=r"^broken$"):
            blocking.submit(fail, task_id="f")
        assert blocking.get_task_status("f") is TaskStatus.FAILED
        assert isinstance(blocking.get_task_error("f"), Boom)
        assert [info.name for info in blocking.get_all_tasks()] == [
            "add",
            "loop_name",
            "coro",
            "fail",
        ]
        assert blocking.thread_pool.submit(add, 1, 1) == 2
        with pytest.raises(TaskNotFoundError, match="'missing'"):
            blocking.get_task("missing")
    assert not system.running
    assert set(threading.enumerate()) <= before
    with pytest.raises(ActorSystemError, match="shut down"):
        system.blocking.get_all_tasks()


def test_every_client_method_has_a_blocking_twin_with_its_signature() -> None:
    # The client's calls: coroutine functions, and the ones that return a `Call` when
    # made on a running loop (typed as returning a coroutine).
    async_methods = {
        name
        for name, member in inspect.getmembers(UnifiedTaskManager)
        if not name.startswith("_")
        and (
            inspect.iscoroutinefunction(member)
            or "Coroutine[" in str(inspect.signature(member).return_annotation)
            or name == "events"
        )
    }
    assert {"register_task", "execute_task", "submit"} <= async_methods
    async_methods.discard("shutdown")  # blocking.shutdown() takes no loop: compared below
    assert async_methods <= set(dir(BlockingTaskManager))
    for name in async_methods - {"events", "submit"}:
        mine = inspect.signature(getattr(BlockingTaskManager, name))
        theirs = inspect.signature(getattr(UnifiedTaskManager, name))
        assert list(mine.parameters)[1:] == list(theirs.parameters)[1:], name
    assert callable(BlockingTaskManager.shutdown)


def test_blocking_map_returns_the_results_in_order() -> None:
    with ActorSystem(config()) as system:
        blocking = system.blocking
        assert blocking.map(add, [1, 2, 3], kwargs={"y": 10}) == [11, 12, 13]
        assert len(blocking.get_tasks_by_status(TaskStatus.COMPLETED)) == 3


def test_calls_from_many_plain_threads() -> None:
    with ActorSystem(config()) as system:
        blocking = system.blocking

        def work(i: int) -> int:
            return blocking.submit(add, i, 100)

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(work, range(20)))
        assert results == [i + 100 for i in range(20)]
        assert len(blocking.get_tasks_by_status(TaskStatus.COMPLETED)) == 20


def test_calls_from_inside_a_thread_pool_task(backend: str) -> None:
    with ActorSystem(config(backend)) as system:
        blocking = system.blocking

        def parent(x: int) -> tuple[int, str]:
            child = blocking.submit(add, x, 1)
            return child, blocking.get_task_status("p").value

        assert blocking.submit(parent, 41, task_id="p") == (42, "running")


def test_refused_on_a_thread_that_runs_a_loop_before_anything_is_sent() -> None:
    with ActorSystem(config()) as system:
        blocking = system.blocking

        async def from_a_coroutine() -> None:
            with pytest.raises(BlockingCallError, match=REFUSED.format("get_all_tasks")):
                blocking.get_all_tasks()
            with pytest.raises(BlockingCallError, match=REFUSED.format("submit")):
                blocking.submit(add, 1, 2)

        asyncio.run(from_a_coroutine())

        async def on_the_systems_own_loop() -> str:
            try:
                blocking.get_all_tasks()
            except BlockingCallError as exc:
                return type(exc).__name__
            return "not refused"

        # A coroutine task runs on the system's loop thread: a blocking call there
        # would deadlock, and is refused instead.
        assert blocking.submit(on_the_systems_own_loop) == "BlockingCallError"
        assert [i.name for i in blocking.get_all_tasks()] == [
            "test_refused_on_a_thread_that_runs_a_loop_before_anything_is_sent.<locals>."
            "on_the_systems_own_loop"
        ]


async def test_with_is_refused_in_a_coroutine() -> None:
    system = ActorSystem(config())
    with (
        pytest.raises(BlockingCallError, match=r"`with ActorSystem\(\)` \(use `async with"),
        system,
    ):
        pass
    assert not system.running


async def test_blocking_on_an_async_system_from_a_thread_stops_with_it() -> None:
    """`system.blocking` of a system run with `async with` starts the loop thread on
    first use; the system's shutdown stops it."""
    before = set(threading.enumerate())
    async with ActorSystem(config()) as system:
        results: list[int] = []
        caller = threading.Thread(target=lambda: results.append(system.blocking.submit(add, 4, 5)))
        caller.start()
        caller.join(WAIT)  # this test's loop has nothing to do meanwhile
        assert results == [9]
        assert system._loop_thread is not None
        loop_thread = system._loop_thread.thread
        assert loop_thread.is_alive()
    assert not loop_thread.is_alive()
    assert set(threading.enumerate()) <= before


def test_blocking_shutdown_then_exit_is_clean() -> None:
    before = set(threading.enumerate())
    with ActorSystem(config()) as system:
        system.blocking.submit(add, 1, 2)
        system.blocking.shutdown()
        assert not system.running
    assert set(threading.enumerate()) <= before


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.thread_pool.submit(add, 1, 2),
        lambda b: b.execute_task("t"),
        lambda b: b.execute_task("t", wait=True),
        lambda b: b.wait_for_task("t", timeout=1.0),
        lambda b: b.wait_for_task("t"),
    ],
    ids=["pool-submit", "execute", "execute-wait", "wait-bounded", "wait"],
)
def test_a_call_refused_after_shutdown_leaves_no_coroutine_unawaited(
    call: Callable[[Any], object],
) -> None:
    # These made the client's coroutine before asking whether calls could be made: the
    # refusal left it unawaited ('coroutine ... was never awaited', a RuntimeWarning).
    with ActorSystem(config()) as system:
        system.blocking.register_task("t", add, (1, 2), task_id="t")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ActorSystemError) as raised:
            call(system.blocking)
        assert str(raised.value) == "the actor system is shut down; create a new ActorSystem"
        del raised
        gc.collect()
    assert [str(w.message) for w in caught] == []


# Every stop ends the loop thread that `system.blocking` started, whichever way the
# system is stopped, once the rest has stopped.


def test_stop_sync_ends_the_loop_thread() -> None:
    before = set(threading.enumerate())
    system = ActorSystem(config()).start()
    assert system.blocking.submit(add, 2, 3) == 5
    runner = system._loop_thread
    assert runner is not None
    assert runner.thread.is_alive()
    system.stop_sync()
    assert not system.running
    assert not runner.thread.is_alive()
    assert runner.loop.is_closed()
    assert set(threading.enumerate()) <= before


async def test_an_async_system_stopped_by_stop_sync_ends_its_loop_thread() -> None:
    async with ActorSystem(config()) as system:
        assert await asyncio.to_thread(system.blocking.submit, add, 4, 5) == 9
        runner = system._loop_thread
        assert runner is not None
        await asyncio.to_thread(system.stop_sync)
        assert not runner.thread.is_alive()  # not left to the `async with` (it returns early)
        assert runner.loop.is_closed()


async def test_a_shutdown_after_one_run_on_the_loop_thread_ends_the_loop_thread() -> None:
    # A shutdown awaited on the loop thread itself cannot end it (the `with` statement
    # ends it after); the next stop, which finds the system stopped, does.
    async with ActorSystem(config()) as system:
        assert await asyncio.to_thread(system.blocking.submit, add, 1, 1) == 2
        runner = system._loop_thread
        assert runner is not None
        on_the_loop_thread = asyncio.run_coroutine_threadsafe(system.shutdown(), runner.loop)
        assert await asyncio.wrap_future(on_the_loop_thread) is None
        assert not system.running
        assert runner.thread.is_alive()
    assert not runner.thread.is_alive()
    assert runner.loop.is_closed()


class Stubborn:
    """A coroutine function that ignores its cancellation until ``release()``."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.gate = asyncio.Event()

    async def __call__(self) -> None:
        self.started.set()
        while True:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                continue
            return

    def start_on(self, system: ActorSystem) -> LoopThread:
        """Run it as a task of ``system``, on its loop thread (through `system.blocking`)."""
        task_id = system.blocking.register_task("stubborn", self)
        assert system.blocking.execute_task(task_id) is True
        assert self.started.wait(WAIT)
        runner = system._loop_thread
        assert runner is not None
        return runner


def assert_abandoned_with_a_warning(
    runner: LoopThread, log_records: list[dict[str, Any]], stubborn: Stubborn
) -> None:
    try:
        warnings = [
            r["message"]
            for r in log_records
            if r["level"].name == "WARNING" and r["message"].startswith("the loop thread")
        ]
        assert len(warnings) == 1
        assert re.fullmatch(
            r"the loop thread 'actorflow-loop' did not end within [01]\.\d{3}s \(the time "
            r"left of the stop's deadline\); abandoned while waiting for its 1 cancelled "
            r"task\(s\) to end \(a coroutine that ignores its cancellation, or blocks the "
            r"loop\)",
            warnings[0],
        )
        assert runner.thread.is_alive()  # abandoned: still waiting for `stubborn`
    finally:
        runner.loop.call_soon_threadsafe(stubborn.gate.set)
    runner.thread.join(WAIT)
    assert not runner.thread.is_alive()
    assert runner.loop.is_closed()


# A coroutine task that ignores its cancellation keeps the loop thread in its last stage
# (waiting for its cancelled tasks). The thread gets what is left of the stop's deadline
# (SHUTDOWN_TIMEOUT, plus STOP_SLACK for the end of the loop threads), not a fixed bound
# of its own (5 s); then it is abandoned, and a warning says what it was doing.


def test_with_stops_the_loop_thread_by_the_stops_deadline(
    log_records: list[dict[str, Any]],
) -> None:
    configure_logging(True)
    stubborn = Stubborn()
    with ActorSystem({**config(), "SHUTDOWN_TIMEOUT": 0.2}) as system:
        runner = stubborn.start_on(system)
    assert not system.running
    assert_abandoned_with_a_warning(runner, log_records, stubborn)


async def test_a_shutdown_from_another_loop_stops_the_loop_thread_by_its_deadline(
    log_records: list[dict[str, Any]],
) -> None:
    configure_logging(True)
    stubborn = Stubborn()
    async with ActorSystem({**config(), "SHUTDOWN_TIMEOUT": 0.2}) as system:
        runner = await asyncio.to_thread(stubborn.start_on, system)
    assert not system.running
    assert_abandoned_with_a_warning(runner, log_records, stubborn)


def test_with_stops_the_tree_by_the_deadline_when_the_loop_thread_is_stuck(
    monkeypatch: pytest.MonkeyPatch, log_records: list[dict[str, Any]]
) -> None:
    # The loop thread never runs the shutdown (something blocks it): the `with` fails
    # with the shutdown's CallTimeout, and the tree is stopped from the calling thread
    # by the same deadline (it kept running), then the loop thread is abandoned.
    from actors.api import _system

    monkeypatch.setattr(_system, "SWEEP_MARGIN", 0.0)  # the bound is an exact sum
    configure_logging(True)
    entered, release = threading.Event(), threading.Event()

    def hold_the_loop() -> None:
        entered.set()
        release.wait(WAIT)  # blocks the loop thread on purpose

    try:
        system = ActorSystem({**config(), "SHUTDOWN_TIMEOUT": 0.2})
        with pytest.raises(CallTimeout) as timed_out, system:  # noqa: PT012
            runner = system._loop_thread_for_blocking()
            runner.loop.call_soon_threadsafe(hold_the_loop)
            assert entered.wait(WAIT)
            root = system._root
            assert root is not None
            children = [system.supervisor.child(cid).actor_ref for cid in CHILD_IDS]
        assert str(timed_out.value) == (
            "no answer to system shutdown within 1.2s (SHUTDOWN_TIMEOUT=0.2s + 1.0s + 0.0s); "
            "the actor system is overloaded or stuck"
        )
        assert not system.running
        assert not root.is_alive()
        # Past the deadline: each child is told to stop and abandoned, and stops.
        assert all(ref is not None and ref.actor_stopped.wait(WAIT) for ref in children)
        warnings = [
            r["message"]
            for r in log_records
            if r["level"].name == "WARNING" and r["message"].startswith("the loop thread")
        ]
        assert warnings == [
            "the loop thread 'actorflow-loop' did not end within 0.000s (the time left of "
            "the stop's deadline); abandoned while running its loop"
        ]
    finally:
        release.set()
    runner.thread.join(WAIT)
    assert not runner.thread.is_alive()


class CloseGate:
    """Stands in for the pool's `close_process_pool`: the close of the worker processes
    ends (it calls the real one) only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()

    def __call__(self, pool: Any, timeout: float) -> None:
        from actors.runtime._backends import close_process_pool

        if self.release.wait(WAIT):
            close_process_pool(pool, timeout)
            self.closed.set()


class ReleasedWhenAsked(threading.Event):
    """The pool's ``closing_workers``: ``gate`` is released when ``asker`` asks whether
    it is set, as the caller of `with` does once its wait has passed the shutdown's
    bound (SHUTDOWN_TIMEOUT + STOP_SLACK + a sweep): the close then ends past it."""

    def __init__(self, gate: CloseGate, asker: threading.Thread) -> None:
        super().__init__()
        self._gate = gate
        self._asker = asker

    def is_set(self) -> bool:
        if threading.current_thread() is self._asker:
            self._gate.release.set()
        return super().is_set()


def with_worker_processes_closing_behind(
    monkeypatch: pytest.MonkeyPatch, system: ActorSystem, gate: CloseGate
) -> PoolState:
    """Give ``system``'s pool a process pool (no worker started yet) whose close waits
    for ``gate``; the calling thread releases it (see `ReleasedWhenAsked`)."""
    from actors.api import _system
    from actors.runtime import _pool

    monkeypatch.setattr(_system, "SWEEP_MARGIN", 0.0)  # the bound is an exact sum
    monkeypatch.setattr(_pool, "close_process_pool", gate)
    pool = system._pool_state()
    assert pool is not None
    pool.closing_workers = ReleasedWhenAsked(gate, threading.current_thread())
    pool.process = new_process_pool(1)
    return pool


def test_with_waits_for_worker_processes_closed_past_the_slack(
    monkeypatch: pytest.MonkeyPatch, log_records: list[dict[str, Any]]
) -> None:
    # Worker processes are closed even past the deadline plus STOP_SLACK, in
    # CLOSE_SECONDS: the `with` waits for that too instead of failing with CallTimeout
    # while the stop goes on.
    configure_logging(True)
    gate = CloseGate()
    try:
        with ActorSystem({**config(), "SHUTDOWN_TIMEOUT": 0.25}) as system:
            pool = with_worker_processes_closing_behind(monkeypatch, system, gate)
            runner = system._loop_thread
            assert runner is not None
        assert gate.closed.is_set()
        assert pool.stopped.is_set()
        assert pool.process is None
        assert not system.running
        assert not runner.thread.is_alive()
        # It ended by the stop's end, which counts CLOSE_SECONDS once workers close.
        assert [r for r in log_records if r["message"].startswith("the loop thread")] == []
    finally:
        gate.release.set()


def test_a_loop_thread_call_waits_what_extend_adds_and_names_it() -> None:
    runner = LoopThread("extend-test")
    try:
        asked: list[str] = []
        answer = asyncio.Event()  # set once the call has passed its first bound

        def more(seconds: float) -> Callable[[], tuple[float, str]]:
            def extend() -> tuple[float, str]:
                asked.append(f"{seconds}s")
                runner.loop.call_soon_threadsafe(answer.set)
                return seconds, f"MORE={seconds}s"

            return extend

        async def answered() -> str:
            await answer.wait()
            return "answered"

        # Answered within the extension: returned.
        assert runner.call(answered(), 0.125, "a", "B=0.125s", extend=more(WAIT)) == "answered"
        assert asked == [f"{WAIT}s"]
        # Not answered within it either: the CallTimeout names the whole bound.
        never = asyncio.Event()
        with pytest.raises(CallTimeout) as timed_out:
            runner.call(never.wait(), 0.125, "x", "B=0.125s", extend=more(0.125))
        assert str(timed_out.value) == (
            "no answer to x within 0.25s (B=0.125s + MORE=0.125s); the actor system is "
            "overloaded or stuck"
        )
        # No time more: the CallTimeout at the bound, as without extend.
        with pytest.raises(CallTimeout) as timed_out:
            runner.call(never.wait(), 0.125, "y", "B=0.125s", extend=more(0.0))
        assert str(timed_out.value) == (
            "no answer to y within 0.125s (B=0.125s); the actor system is overloaded or stuck"
        )
        assert asked == [f"{WAIT}s", "0.125s", "0.0s"]
        # A bound whose float sum is not exact (0.1 + 0.2): named to the millisecond.
        with pytest.raises(CallTimeout) as timed_out:
            runner.call(never.wait(), 0.1, "z", "B=0.1s", extend=more(0.2))
        assert str(timed_out.value) == (
            "no answer to z within 0.3s (B=0.1s + MORE=0.2s); the actor system is "
            "overloaded or stuck"
        )
    finally:
        assert runner.stop(WAIT)


def _answer_lands_after_the_last_wait(
    monkeypatch: pytest.MonkeyPatch, runner: LoopThread, release: asyncio.Event, *, then_stop: bool
) -> None:
    """Inject the interleaving of a `LoopThread.call` whose answer lands right after its
    last wait saw none: that wait lets the call's coroutine go (``release``), returns
    once its future is done (and, ``then_stop``, the loop thread has ended), and says
    "not answered"."""
    real = _ANSWERED  # (not a patched one: this may patch it again)

    def answered_late(future: Any, seconds: float) -> bool:
        if real(future, 0):
            return True
        landed = threading.Event()
        future.add_done_callback(lambda _: landed.set())
        runner.loop.call_soon_threadsafe(release.set)
        assert landed.wait(WAIT)
        if then_stop:
            assert runner.stop(WAIT)
        return False

    monkeypatch.setattr(_loop_thread, "_answered", answered_late)


_ANSWERED = _loop_thread._answered


def test_a_loop_thread_call_answered_as_its_bound_runs_out_returns_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An answer that lands between the call's last wait and its cancel is the call's
    answer: its effect happened, so it is not reported as a `CallTimeout` (nor lost)."""
    runner = LoopThread("race-test")
    try:
        effects: list[str] = []
        release = asyncio.Event()

        async def registers() -> str:
            await release.wait()
            effects.append("registered")
            return "task-1"

        _answer_lands_after_the_last_wait(monkeypatch, runner, release, then_stop=False)
        assert runner.call(registers(), 0.125, "register", "B=0.125s") == "task-1"
        assert effects == ["registered"]
        # The same past an extension of the bound.
        release = asyncio.Event()
        _answer_lands_after_the_last_wait(monkeypatch, runner, release, then_stop=False)
        extend = lambda: (0.125, "MORE=0.125s")  # noqa: E731
        assert runner.call(registers(), 0.125, "again", "B=0.125s", extend=extend) == "task-1"
        assert effects == ["registered", "registered"]
    finally:
        monkeypatch.undo()
        assert runner.stop(WAIT)


def test_an_unbounded_loop_thread_call_answered_as_the_thread_ends_returns_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unbounded call answered just before the loop thread ended gets its answer, not
    "the loop thread has stopped"."""
    runner = LoopThread("race-test")
    release = asyncio.Event()

    async def answers() -> int:
        await release.wait()
        return 7

    _answer_lands_after_the_last_wait(monkeypatch, runner, release, then_stop=True)
    assert runner.call(answers(), None, "wait") == 7
    assert not runner.thread.is_alive()
    assert runner.stop(WAIT)


def test_events_for_blocking_code() -> None:
    with ActorSystem(config()) as system:
        blocking = system.blocking
        with blocking.events() as stream:
            blocking.submit(add, 1, 2, task_id="e", name="adder")
            kinds: list[EventKind] = []
            while len(kinds) < 4:
                event = stream.get(timeout=WAIT)
                assert event is not None
                assert (event.task_id, event.task_name) == ("e", "adder")
                kinds.append(event.kind)
        assert kinds == [
            EventKind.REGISTERED,
            EventKind.QUEUED,
            EventKind.STARTED,
            EventKind.COMPLETED,
        ]


def _readme_block(marker: str) -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    [block] = [b for b in blocks if marker in b]
    return str(block)


def test_the_readme_blocking_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    before = set(threading.enumerate())
    block = _readme_block("tm = system.blocking")
    exec(compile(block, "<README blocking example>", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["cat.png@640", "notified ada"]
    assert datetime.fromisoformat(lines[2]).tzinfo == UTC
    # The stop cancelled the system's timers: the shared clock's thread, woken by the
    # cancel, ends on its own soon after (it is not joined by the stop); so may others
    # on their way out. None may stay.
    started = set(threading.enumerate()) - before
    for thread in started:
        thread.join(WAIT)
    assert [t.name for t in started if t.is_alive()] == []


def test_the_readme_submit_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    block = _readme_block("await tm.submit(fetch")
    exec(compile(block, "<README submit example>", "exec"), {})
    assert capsys.readouterr().out == "<html>https://example.org</html> 1\n"


def test_a_call_timeout_names_the_bound_that_ran_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop that answers blocking calls is held: each call fails at its own bound,
    and its `CallTimeout` says which bound (CALL_TIMEOUT, the call's timeout) and its value,
    to the millisecond."""
    from actors.api import _blocking

    monkeypatch.setattr(_blocking, "SWEEP_MARGIN", 0.0)  # bounds: sums (0.3 + 0.6 inexact)
    started, gate = threading.Event(), threading.Event()

    def hold_the_loop() -> None:
        started.set()
        gate.wait(WAIT)  # blocks the loop thread on purpose

    with ActorSystem({**config(), "CALL_TIMEOUT": 0.6}) as system:
        task_id = system.blocking.register_task("idle", add, (1, 2), task_id="idle")
        system._loop_thread_for_blocking().loop.call_soon_threadsafe(hold_the_loop)
        try:
            assert started.wait(WAIT)
            with pytest.raises(CallTimeout) as by_setting:
                system.blocking.get_task(task_id)
            with pytest.raises(CallTimeout) as by_argument:
                system.blocking.wait_for_task(task_id, timeout=0.3)
        finally:
            gate.set()
        assert system.blocking.get_task_status(task_id) is TaskStatus.PENDING
    assert str(by_setting.value) == (
        "no answer to system.blocking.get_task() within 0.6s (CALL_TIMEOUT=0.6s + 0.0s); "
        "the actor system is overloaded or stuck"
    )
    assert str(by_argument.value) == (
        "no answer to system.blocking.wait_for_task() within 0.9s "
        "(timeout=0.3s + CALL_TIMEOUT=0.6s + 0.0s); the actor system is overloaded or stuck"
    )


def test_a_calls_own_timeout_error_is_its_answer_not_a_call_timeout() -> None:
    """A blocking call whose answer is a `TimeoutError` (``wait_for_task``'s timeout, a
    task that timed out) raises that error, at once: not a `CallTimeout` after the
    call's whole bound."""
    never = threading.Event()

    async def waits_forever() -> None:
        await asyncio.get_running_loop().run_in_executor(None, never.wait, WAIT)

    with ActorSystem(config()) as system:
        tm = system.blocking
        task_id = tm.register_task("forever", waits_forever, task_id="forever")
        assert tm.execute_task(task_id) is True
        with pytest.raises(WaitTimeoutError) as waited:
            tm.wait_for_task(task_id, timeout=0.125)
        assert str(waited.value) == (
            "task 'forever' did not finish within 0.125s; it keeps running"
        )
        timed = tm.register_task("timed", waits_forever, timeout=0.125, task_id="timed")
        with pytest.raises(TaskTimeoutError) as timed_out:
            tm.execute_task(timed, wait=True)
        assert type(timed_out.value) is TaskTimeoutError
        never.set()  # the first task ends now: the blocking wait gets its result
        assert tm.wait_for_task(task_id, timeout=WAIT) is None
        assert tm.get_task_status(timed) is TaskStatus.FAILED


BAD_TIMEOUTS = [math.inf, 10**400, math.nan, -1, 0, True, "1"]


def test_blocking_wait_for_task_refuses_a_bad_timeout_before_sending() -> None:
    with ActorSystem(config()) as system:
        tm = system.blocking
        task_id = tm.register_task("pending", add, args=(1, 2), task_id="pending")
        for timeout in BAD_TIMEOUTS:
            with pytest.raises(InvalidTaskError) as raised:
                tm.wait_for_task(task_id, timeout=timeout)  # type: ignore[arg-type]
            assert str(raised.value) == (
                f"timeout must be a finite number of seconds > 0 or None, got {timeout!r}"
            )
        assert tm.get_task_status(task_id) is TaskStatus.PENDING


def test_an_event_streams_get_refuses_a_bad_or_missing_bound() -> None:
    messages: list[str] = []
    with ActorSystem(config()) as system, system.blocking.events() as stream:
        for timeout in [*BAD_TIMEOUTS, None]:
            with pytest.raises(InvalidTaskError) as raised:
                stream.get(timeout=timeout)  # type: ignore[arg-type]
            messages.append(str(raised.value))
        system.blocking.submit(add, 1, 2, task_id="after")
        event = stream.get(timeout=WAIT)  # the stream still works
    assert event is not None
    assert (event.task_id, event.kind) == ("after", EventKind.REGISTERED)
    assert messages == [
        *(
            f"timeout must be a finite number of seconds > 0 or None, got {timeout!r}"
            for timeout in BAD_TIMEOUTS
        ),
        "timeout must be a finite number of seconds > 0, got None; "
        "BlockingEventStream.get() always waits a bounded time",
    ]
