"""What a failed dependency means, per task: ``on_dependency_failure`` (issue 12, point 2).

``"cancel"`` (the default) cancels the dependent with a `DependencyFailedError` naming
both tasks by name and id; ``"run"`` runs it once every dependency ended, with the
exception of a failed or cancelled dependency in place of its `result_of`. On both task
systems.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors import (
    ActorSystem,
    DependencyFailedError,
    InvalidTaskError,
    TaskCancelledError,
    TaskStatus,
    UnifiedTaskManager,
    result_of,
)

WAIT = 10.0
COMPLETED, CANCELLED, FAILED = TaskStatus.COMPLETED, TaskStatus.CANCELLED, TaskStatus.FAILED


class Boom(Exception):
    pass


@pytest.fixture(params=["new", "old"])
async def tm(request: pytest.FixtureRequest) -> AsyncIterator[UnifiedTaskManager]:
    config = {"USE_NEW_TASK_SYSTEM": request.param == "new", "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config) as system:
        yield system.task_manager


async def value(x: Any) -> Any:
    return x


async def boom(message: str) -> None:
    raise Boom(message)


def gather(*outcomes: Any) -> list[Any]:
    return list(outcomes)


async def test_a_bad_policy_is_refused_naming_it(tm: UnifiedTaskManager) -> None:
    with pytest.raises(
        InvalidTaskError,
        match=r"^on_dependency_failure must be 'cancel' \(a failed dependency cancels the "
        r"task\) or 'run' \(the task runs with the exception\), got 'ignore'$",
    ):
        await tm.register_task("t", value, (1,), on_dependency_failure="ignore")  # type: ignore[arg-type]
    assert await tm.get_all_tasks() == []


async def test_cancel_names_both_tasks_by_name_and_id(tm: UnifiedTaskManager) -> None:
    fetch = await tm.register_task("fetch", boom, ("down",))
    parse = await tm.register_task("parse", value, (result_of(fetch),))
    await tm.execute_task(parse)
    with pytest.raises(DependencyFailedError) as raised:
        await tm.wait_for_task(parse, timeout=WAIT)
    error = raised.value
    assert (
        str(error) == f"task 'parse' ({parse}) cancelled: its dependency 'fetch' ({fetch}) failed"
    )
    assert (error.task_id, error.task_name, error.dependency, error.dependency_name) == (
        parse,
        "parse",
        fetch,
        "fetch",
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.dependency_name) == (type(error), str(error), "fetch")


async def test_run_gets_each_outcome_in_place_of_its_result(tm: UnifiedTaskManager) -> None:
    good = await tm.register_task("good", value, (1,))
    bad = await tm.register_task("bad", boom, ("no",))
    gone = await tm.register_task("gone", value, (3,))
    agg = await tm.register_task(
        "agg",
        gather,
        (result_of(good), result_of(bad), result_of(gone)),
        on_dependency_failure="run",
    )
    assert await tm.cancel_task(gone) is True
    assert await tm.get_task_status(agg) is TaskStatus.PENDING  # not cancelled with it
    outcome = await tm.execute_task(agg, wait=True)
    assert outcome[0] == 1
    assert outcome[1] is await tm.get_task_error(bad)
    assert str(outcome[1]) == "no"
    assert type(outcome[2]) is TaskCancelledError
    assert outcome[2] is await tm.get_task_error(gone)
    assert [await tm.get_task_status(t) for t in (good, bad, gone, agg)] == [
        COMPLETED,
        FAILED,
        CANCELLED,
        COMPLETED,
    ]


async def test_run_waits_until_every_dependency_ended(tm: UnifiedTaskManager) -> None:
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "late"

    bad = await tm.register_task("bad", boom, ("early",))
    late = await tm.register_task("late", slow)
    agg = await tm.register_task(
        "agg", gather, (result_of(bad), result_of(late)), on_dependency_failure="run"
    )
    await tm.execute_task(agg)
    with pytest.raises(Boom):
        await tm.wait_for_task(bad, timeout=WAIT)
    assert await tm.get_task_status(agg) is TaskStatus.WAITING
    gate.set()
    outcome = await tm.wait_for_task(agg, timeout=WAIT)
    assert (type(outcome[0]), outcome[1]) == (Boom, "late")


async def test_the_spread_of_a_failure_stops_at_a_task_that_runs(tm: UnifiedTaskManager) -> None:
    """a fails -> b (cancel) is cancelled -> c (run) runs with b's error -> d completes."""
    a = await tm.register_task("a", boom, ("root",))
    b = await tm.register_task("b", value, (result_of(a),))
    c = await tm.register_task("c", gather, (result_of(b),), on_dependency_failure="run")
    d = await tm.register_task("d", value, (result_of(c),))
    outcome = await tm.execute_task(d, wait=True)
    [error] = outcome
    assert type(error) is DependencyFailedError
    assert str(error) == f"task 'b' ({b}) cancelled: its dependency 'a' ({a}) failed"
    assert [await tm.get_task_status(t) for t in (a, b, c, d)] == [
        FAILED,
        CANCELLED,
        COMPLETED,
        COMPLETED,
    ]


async def test_run_registered_after_its_dependency_failed(tm: UnifiedTaskManager) -> None:
    bad = await tm.register_task("bad", boom, ("before",))
    with pytest.raises(Boom):
        await tm.execute_task(bad, wait=True)
    cancelled = await tm.register_task("cancelled", value, (result_of(bad),))
    assert await tm.get_task_status(cancelled) is CANCELLED
    runs = await tm.register_task("runs", gather, (result_of(bad),), on_dependency_failure="run")
    assert await tm.get_task_status(runs) is TaskStatus.PENDING
    [error] = await tm.execute_task(runs, wait=True)
    assert error is await tm.get_task_error(bad)


async def test_run_with_plain_dependencies_and_add_dependency(tm: UnifiedTaskManager) -> None:
    """Without result_of, "run" only orders: the task runs after its failed dependency."""
    order: list[str] = []

    async def record(name: str) -> str:
        order.append(name)
        return name

    bad = await tm.register_task("bad", boom, ("x",))
    after = await tm.register_task(
        "after", record, ("after",), dependencies=(bad,), on_dependency_failure="run"
    )
    other = await tm.register_task("other", boom, ("y",))
    with pytest.raises(Boom):
        await tm.execute_task(other, wait=True)
    await tm.add_dependency(after, other)  # on a failed task: "cancel" would cancel here
    assert await tm.get_task_status(after) is TaskStatus.PENDING
    assert await tm.execute_task(after, wait=True) == "after"
    assert await tm.get_task_status(bad) is FAILED
    assert order == ["after"]
    assert (await tm.get_task(after)).dependencies == (bad, other)
