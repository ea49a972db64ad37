"""A pipeline written with `result_of`: 1,000 fetch -> parse -> one aggregate (issue 12).

Some fetches fail, so their parse is cancelled; the aggregate runs anyway
(``on_dependency_failure="run"``) and gets, in order, every parse's result or exception,
each exactly once, while the task manager is killed mid-run. Every task runs once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

from actors import ActorSystem, DependencyFailedError, TaskStatus, result_of
from supervisors import Kill

WAIT = 30.0
N = 1000
FAILING = frozenset(range(0, N, 7))
GATED = frozenset(i for i in range(N) if i % 10 == 5)
"""Fetches still running when the manager is killed (they wait for the test)."""


class FetchError(Exception):
    pass


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_a_thousand_inputs_through_a_kill(backend: str) -> None:
    child = "task_manager" if backend == "new" else "legacy_task_manager"
    config = {
        "USE_NEW_TASK_SYSTEM": backend == "new",
        "MAX_CONCURRENT_TASKS": 200,
        "RESTART_BACKOFF_INITIAL": 0.0,
        "CLEANUP_INTERVAL": 0,
    }
    fetched: Counter[int] = Counter()
    parsed: Counter[int] = Counter()
    lock = threading.Lock()
    gate = asyncio.Event()
    many_started = asyncio.Event()
    aggregated: list[list[Any]] = []

    async def fetch(i: int) -> str:
        fetched[i] += 1
        if len(fetched) == 300:
            many_started.set()
        if i in GATED:
            await gate.wait()
        if i in FAILING:
            raise FetchError(f"input {i} is unreachable")
        return f"<p>{i}</p>"

    def parse(i: int, html: str) -> tuple[int, int]:
        with lock:
            parsed[i] += 1
        return i, len(html)

    def aggregate(outcomes: list[Any]) -> int:
        aggregated.append(outcomes)
        return len(outcomes)

    async with ActorSystem(config) as system:
        tm = system.task_manager
        parses = []
        for i in range(N):
            page = await tm.register_task(f"fetch-{i}", fetch, (i,), task_type="io")
            parses.append(
                await tm.register_task(f"parse-{i}", parse, (i, result_of(page)), task_type="cpu")
            )
        total = await tm.register_task(
            "aggregate",
            aggregate,
            ([result_of(p) for p in parses],),
            on_dependency_failure="run",
        )
        assert await tm.execute_task(total) is True
        await asyncio.wait_for(many_started.wait(), WAIT)
        system.supervisor.child(child).tell(Kill())  # mid-run: the gated fetches are running
        assert await tm.get_task_status(total) is TaskStatus.WAITING  # after the restart
        gate.set()
        assert await tm.wait_for_task(total, timeout=WAIT) == N
        restarts = {c.id: c.restarts for c in await system.supervisor.which_children()}
        assert restarts[child] == 1
        fetch_ids = [(await tm.get_task(p)).dependencies[0] for p in parses[:8]]

    assert fetched == Counter(range(N))  # every fetch ran exactly once
    assert parsed == Counter(i for i in range(N) if i not in FAILING)
    [outcomes] = aggregated  # the aggregate ran once
    assert len(outcomes) == N
    for i, outcome in enumerate(outcomes):
        if i in FAILING:
            assert type(outcome) is DependencyFailedError
            assert (outcome.task_name, outcome.dependency_name) == (f"parse-{i}", f"fetch-{i}")
        else:
            assert outcome == (i, len(f"<p>{i}</p>"))
    for i in (0, 7):
        assert str(outcomes[i]) == (
            f"task 'parse-{i}' ({parses[i]}) cancelled: its dependency 'fetch-{i}' "
            f"({fetch_ids[i]}) failed"
        )
