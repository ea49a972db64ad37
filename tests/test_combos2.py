"""More scenarios where features meet (second round): the resource governor with a
queued burst, cleanup beside a result pinned by a retrying dependent, and timeouts of
thread-pool functions that ignore their cancellation token.

Each scenario asserts exact outcomes: final states, results or errors, how many times
each body ran, in which order, and the counts the monitor reports.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import WAIT, make_system, timers_armed

from actors import (
    ActorSystem,
    ActorSystemError,
    TaskCancelledError,
    TaskPriority,
    TaskStatus,
    TaskTimeoutError,
    cancellation_token,
    prometheus_collector,
    result_of,
)
from actors.dashboard import create_app
from actors.observe import ResourceSample
from actors.runtime.messages import GetMetrics
from supervisors import ChildHandle, Kill, Supervisor
from supervisors.testing import FakeClock

COMPLETED = TaskStatus.COMPLETED

# The durable map's item (journaled by reference, so at module level): items 3 to 5 hang
# in the first system, and run through in the second.
MAP_RUNS: list[int] = []
MAP_STARTED: list[asyncio.Event] = []
MAP_SECOND_SYSTEM: list[bool] = []


async def map_item(x: int) -> int:
    MAP_RUNS.append(x)
    if len(MAP_RUNS) == 6 and MAP_STARTED:
        MAP_STARTED[0].set()
    if x >= 3 and not MAP_SECOND_SYSTEM:
        await asyncio.Event().wait()
    return x * 10


async def _limit_is(tm: Any, limit: int) -> None:
    metrics = await tm.get_metrics()
    assert metrics.concurrency_limit == limit


async def test_the_governor_lowers_the_limit_under_a_queued_burst_then_raises_it() -> None:
    """4 slots, 4 running blockers, 8 queued tasks of mixed priorities. The governor
    lowers the limit to 1 while they wait: as the blockers end, one task runs at a time;
    raised to 2, two run at a time. Every task runs once, by priority then FIFO."""
    clock = FakeClock()
    critical = ResourceSample(99.0, 10.0)
    ok = ResourceSample(10.0, 10.0)
    samples = iter([critical, critical, ok, ok, ok])
    config = {"RESOURCE_CHECK_INTERVAL": 5.0, "MAX_CONCURRENT_TASKS": 4, "CLEANUP_INTERVAL": 0}
    runs: Counter[str] = Counter()
    started: list[str] = []
    gates: dict[str, asyncio.Event] = {}

    def body(name: str) -> Any:
        gates[name] = asyncio.Event()

        async def run() -> str:
            runs[name] += 1
            started.append(name)
            await gates[name].wait()
            return name

        return run

    async def running(tm: Any) -> set[str]:
        return {i.name for i in await tm.get_tasks_by_status(TaskStatus.RUNNING)}

    async def tick(tm: Any, limit: int) -> None:
        await timers_armed(clock)
        clock.advance(5.0)
        await _limit_is(tm, limit)

    async with ActorSystem(config, clock=clock, probe=lambda: next(samples)) as system:
        tm = system.task_manager
        ids: dict[str, str] = {}
        for i in range(4):
            name = f"block{i}"
            ids[name] = await tm.register_task(name, body(name))
            await tm.execute_task(ids[name])
        burst = [
            ("low0", TaskPriority.LOW),
            ("normal0", TaskPriority.NORMAL),
            ("high0", TaskPriority.HIGH),
            ("critical0", TaskPriority.CRITICAL),
            ("low1", TaskPriority.LOW),
            ("high1", TaskPriority.HIGH),
            ("normal1", TaskPriority.NORMAL),
            ("critical1", TaskPriority.CRITICAL),
        ]
        for name, priority in burst:
            ids[name] = await tm.register_task(name, body(name), priority=priority)
            await tm.execute_task(ids[name])
        assert await running(tm) == {"block0", "block1", "block2", "block3"}
        assert len(await tm.get_tasks_by_status(TaskStatus.QUEUED)) == 8
        await tick(tm, 2)
        await tick(tm, 1)
        for i in range(4):
            gates[f"block{i}"].set()
            assert await tm.wait_for_task(ids[f"block{i}"], timeout=WAIT) == f"block{i}"
        order = ["critical0", "critical1", "high0", "high1", "normal0", "normal1", "low0", "low1"]
        # Limit 1: the first of the burst runs alone.
        assert await running(tm) == {"critical0"}
        gates["critical0"].set()
        assert await tm.wait_for_task(ids["critical0"], timeout=WAIT) == "critical0"
        assert await running(tm) == {"critical1"}
        await tick(tm, 2)  # raised while one runs: a second starts at once
        assert await running(tm) == {"critical1", "high0"}
        await tick(tm, 3)
        assert await running(tm) == {"critical1", "high0", "high1"}
        for name in order:
            gates[name].set()
            assert await tm.wait_for_task(ids[name], timeout=WAIT) == name
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {"completed": 12}
        assert metrics.concurrency_limit == 3
    assert started == [f"block{i}" for i in range(4)] + order
    assert set(runs.values()) == {1}


async def test_functions_that_ignore_their_token_end_at_their_timeout_and_are_retried(
    backend: str,
) -> None:
    """A thread-pool function ignores its cancellation token: each attempt ends at its
    timeout (the token set), the retry runs on another worker, the late results are
    dropped, and the counts say 2 timeouts, 1 retry, 1 failure."""
    clock = FakeClock()
    release = threading.Event()
    tokens: list[bool] = []
    entered = threading.Semaphore(0)
    left = threading.Semaphore(0)
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    def stubborn() -> str:
        with lock:
            runs["stubborn"] += 1
        entered.release()
        release.wait(WAIT)
        tokens.append(cancellation_token().cancelled)
        left.release()
        return "late"

    async with make_system(backend, clock, MAX_THREAD_WORKERS=3) as system:
        tm = system.task_manager
        task = await tm.register_task(
            "stubborn", stubborn, timeout=1.0, max_retries=1, retry_delay=2.0
        )
        assert await tm.execute_task(task) is True
        await asyncio.to_thread(entered.acquire, True, WAIT)
        await timers_armed(clock)
        clock.advance(1.0)  # attempt 1 times out: retrying, its timer armed
        await timers_armed(clock)
        assert await tm.get_task_status(task) is TaskStatus.RETRYING
        clock.advance(2.0)
        await asyncio.to_thread(entered.acquire, True, WAIT)
        await timers_armed(clock)
        clock.advance(1.0)  # attempt 2 times out: failed
        with pytest.raises(TaskTimeoutError):
            await tm.wait_for_task(task, timeout=WAIT)
        release.set()
        for _ in range(2):
            assert await asyncio.to_thread(left.acquire, True, WAIT)
        assert tokens == [True, True]  # each attempt's token was set at its timeout
        # The late results arrive as stray completions; they change nothing.
        done = await tm.thread_pool.submit(lambda: "after")
        assert done == "after"
        info = await tm.get_task(task)
        assert (info.status, info.attempts) == (TaskStatus.FAILED, 2)
        with pytest.raises(TaskTimeoutError):
            await tm.wait_for_task(task, timeout=WAIT)
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {"failed": 1}
        assert (metrics.retries, metrics.failures, metrics.timeouts) == (1, 1, 2)
    assert runs == {"stubborn": 2}


async def test_cleanup_keeps_a_result_a_waiting_dependent_has_yet_to_take(backend: str) -> None:
    """``early`` completes; ``flaky`` fails once and waits on its retry timer; ``sum``
    waits on both through result_of. Meanwhile a cleanup of everything finished and the
    MAX_FINISHED_TASKS bound (1) pass over ``early``: it stays until ``sum`` took its
    result, then goes like any other finished task."""
    clock = FakeClock()
    runs: Counter[str] = Counter()

    async def early() -> int:
        runs["early"] += 1
        return 40

    async def flaky() -> int:
        runs["flaky"] += 1
        if runs["flaky"] == 1:
            raise ValueError("first attempt")
        return 2

    async def other() -> str:
        runs["other"] += 1
        return "other"

    def add(x: int, y: int) -> int:
        runs["add"] += 1
        return x + y

    async with make_system(backend, clock, MAX_FINISHED_TASKS=1) as system:
        tm = system.task_manager
        e = await tm.register_task("early", early)
        assert await tm.execute_task(e, wait=True) == 40
        f = await tm.register_task("flaky", flaky, max_retries=1, retry_delay=10.0)
        s = await tm.register_task("sum", add, (result_of(e), result_of(f)))
        assert await tm.execute_task(s) is True
        await timers_armed(clock)
        assert await tm.get_task_status(f) is TaskStatus.RETRYING
        o = await tm.register_task("other", other)
        assert await tm.execute_task(o, wait=True) == "other"  # the bound passes over early
        assert await tm.cleanup_completed_tasks(max_age=0.0) == 1  # other only
        assert {i.task_id for i in await tm.get_all_tasks()} == {e, f, s}
        clock.advance(10.0)
        assert await tm.wait_for_task(s, timeout=WAIT) == 42
        # Once taken, early is like any other finished task: the bound keeps sum only.
        assert {i.task_id: i.status for i in await tm.get_all_tasks()} == {s: COMPLETED}
        metrics = await tm.get_metrics()
        assert (metrics.retries, metrics.failures) == (1, 0)
    assert runs == {"early": 1, "flaky": 2, "other": 1, "add": 1}


async def test_a_scrape_waiting_when_the_system_fails_fails_at_once_naming_the_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Prometheus scrape (a plain thread) asks for metrics while the monitor waits out
    its restart's backoff (the call is buffered); then the task manager's crash exceeds
    the restart intensity and the system fails. The scrape fails then, with the system's
    failure, as every async call does: it does not wait out its bound and blame load."""
    clock = FakeClock()
    buffered = threading.Event()
    tell = ChildHandle.tell

    def spy(handle: ChildHandle, message: Any) -> None:
        tell(handle, message)
        if handle.child_id == "task_monitor" and type(message) is GetMetrics:
            buffered.set()

    monkeypatch.setattr(ChildHandle, "tell", spy)
    config = {"RESTART_BACKOFF_INITIAL": 1.0, "RESTART_MAX_RESTARTS": 1, "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config, clock=clock) as system:
        collector = prometheus_collector(system, timeout=WAIT)
        system.supervisor.child("task_monitor").tell(Kill())
        await timers_armed(clock)  # the monitor's backoff: calls to it are buffered
        scrape = asyncio.ensure_future(asyncio.to_thread(lambda: list(collector.collect())))
        assert await asyncio.to_thread(buffered.wait, WAIT)
        system.supervisor.child("task_manager").tell(Kill())  # a second restart: too many
        failure = (
            "the actor system failed: child 'task_manager' exhausted its restarts "
            "(2 in 5.0s, max 1); last reason: ActorKilled('killed by a Kill message')"
        )
        with pytest.raises(ActorSystemError, match=f"^{re.escape(failure)}$"):
            await scrape
        with pytest.raises(ActorSystemError, match=f"^{re.escape(failure)}$"):
            await system.task_manager.get_metrics()


async def test_a_supervision_query_the_root_stops_before_answering_fails_with_an_actors_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``which_children`` reaches the root supervisor's inbox behind its stop (the root
    is busy answering ``count_children`` meanwhile): pykka fails the query as the root
    stops; the caller gets the system's `ActorSystemError`, not pykka's ActorDeadError."""
    entered, gate = threading.Event(), threading.Event()
    count_children = Supervisor.count_children

    def held(self: Supervisor) -> Any:
        entered.set()
        gate.wait(WAIT)
        return count_children(self)

    monkeypatch.setattr(Supervisor, "count_children", held)
    async with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        supervisor = system.supervisor
        counting = asyncio.ensure_future(supervisor.count_children())
        assert await asyncio.to_thread(entered.wait, WAIT)
        supervisor.actor_ref.stop(block=False)  # queued behind count_children
        asking = asyncio.ensure_future(supervisor.which_children())
        await asyncio.sleep(0)  # one step of `asking`: its query is queued behind the stop
        gate.set()
        assert (await counting).specs == 5
        with pytest.raises(ActorSystemError, match=r"^the root supervisor is stopped$"):
            await asking
        with pytest.raises(ActorSystemError, match=r"^the root supervisor is stopped$"):
            await supervisor.which_children()


async def test_a_durable_map_stopped_mid_flight_resumes_only_what_was_running(
    tmp_path: Path,
) -> None:
    """A durable map of 6 items: 3 completed and 3 running when the system stops
    gracefully. The map's caller is answered (3 results, 3 cancellations naming the
    shutdown); a second system on the same journal, in this process, runs the 3 that
    were running once more each (recovered once) and never the 3 that completed."""
    MAP_RUNS.clear()
    MAP_SECOND_SYSTEM.clear()
    MAP_STARTED[:] = [asyncio.Event()]
    config = {"JOURNAL_PATH": str(tmp_path / "tasks.db"), "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config) as system:
        tm = system.task_manager
        mapping = asyncio.ensure_future(tm.map(map_item, range(6), return_exceptions=True))
        await asyncio.wait_for(MAP_STARTED[0].wait(), WAIT)
        ids = [i.task_id for i in await tm.get_all_tasks()]
        assert len(ids) == 6
    results = await asyncio.wait_for(mapping, WAIT)
    assert results[:3] == [0, 10, 20]
    assert [str(e) for e in results[3:]] == [
        f"task {t!r} was cancelled: the actor system shut down" for t in ids[3:]
    ]
    assert all(type(e) is TaskCancelledError for e in results[3:])
    assert sorted(MAP_RUNS) == [0, 1, 2, 3, 4, 5]
    MAP_RUNS.clear()
    MAP_SECOND_SYSTEM.append(True)
    async with ActorSystem(config) as system:
        tm = system.task_manager
        for i, task_id in enumerate(ids):
            assert await tm.wait_for_task(task_id, timeout=WAIT) == i * 10
        infos = {i.task_id: i for i in await tm.get_all_tasks()}
        assert [(infos[t].status, infos[t].attempts, infos[t].recoveries) for t in ids] == [
            (COMPLETED, 1, 0)
        ] * 3 + [(COMPLETED, 1, 1)] * 3
    assert sorted(MAP_RUNS) == [3, 4, 5]


async def test_a_supervision_query_queued_as_the_root_stops_for_good_fails_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The root is alive when ``which_children`` checks, and has stopped (its inbox
    drained) by the time the query is queued: nobody will answer it. The caller is told
    the root is stopped at once instead of waiting out CALL_TIMEOUT (here 5 s)."""
    async with ActorSystem({"CLEANUP_INTERVAL": 0, "CALL_TIMEOUT": WAIT}) as system:
        supervisor = system.supervisor
        ref = supervisor.actor_ref
        ref.stop()  # stopped, its inbox drained
        checks = iter([True])  # the check before the put saw it alive

        def is_alive() -> bool:
            return next(checks, False)

        monkeypatch.setattr(ref, "is_alive", is_alive)
        with pytest.raises(ActorSystemError, match=r"^the root supervisor is stopped$"):
            await asyncio.wait_for(supervisor.which_children(), WAIT / 2)


async def test_views_read_while_the_task_manager_is_killed_agree_on_every_count() -> None:
    """The dashboard's API, the task graph, the metrics and a Prometheus scrape are read
    as the task manager is killed, three times: every read is answered, every view
    counts the same tasks in the same states, before and after they end."""
    gate = asyncio.Event()

    async def held(i: int) -> int:
        await gate.wait()
        return i

    async def plus(x: int) -> int:
        return x + 100

    by_status = {"running": 2, "queued": 1, "waiting": 3, "pending": 2}
    config = {"RESTART_BACKOFF_INITIAL": 0.0, "CLEANUP_INTERVAL": 0, "MAX_CONCURRENT_TASKS": 2}
    async with ActorSystem(config) as system:
        tm = system.task_manager
        sources = [await tm.register_task(f"h{i}", held, (i,)) for i in range(4)]
        sinks = [
            await tm.register_task(f"p{i}", plus, (result_of(s),)) for i, s in enumerate(sources)
        ]
        for sink in sinks[:3]:
            assert await tm.execute_task(sink) is True
        collector = prometheus_collector(system, timeout=WAIT)
        transport = httpx.ASGITransport(app=create_app(system))
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
            for _ in range(3):
                system.supervisor.child("task_manager").tell(Kill())
                tasks, graph, metrics, my_graph, my_metrics, families = await asyncio.gather(
                    http.get("/api/tasks"),
                    http.get("/api/graph"),
                    http.get("/api/metrics"),
                    tm.get_task_graph(),
                    tm.get_metrics(),
                    asyncio.to_thread(lambda: list(collector.collect())),
                )
                assert [r.status_code for r in (tasks, graph, metrics)] == [200] * 3
                assert Counter(r["status"] for r in tasks.json()["rows"]) == by_status
                assert Counter(n["status"] for n in graph.json()["nodes"]) == by_status
                assert len(graph.json()["edges"]) == 4
                assert metrics.json()["tasks_by_status"] == by_status
                assert Counter(n.status.value for n in my_graph.nodes) == by_status
                assert {s.value: n for s, n in my_metrics.tasks_by_status.items()} == by_status
                (family,) = [f for f in families if f.name == "actorflow_tasks"]
                scraped = {s.labels["status"]: s.value for s in family.samples if s.value}
                assert scraped == by_status
            gate.set()
            assert [await tm.wait_for_task(s, timeout=WAIT) for s in sinks[:3]] == [100, 101, 102]
            after = {"completed": 6, "pending": 2}
            assert (await http.get("/api/metrics")).json()["tasks_by_status"] == after
            assert Counter(n.status.value for n in (await tm.get_task_graph()).nodes) == after
        restarts = {c.id: c.restarts for c in await system.supervisor.which_children()}
    assert restarts["task_manager"] == 3
    assert sum(restarts.values()) == 3
