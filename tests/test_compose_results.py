"""Results flow along dependencies: `result_of` in a task's arguments (issue 12, point 1).

On both task systems; on the thread, process and Dask executors; across a crash of the
manager; and the result of a dependency is kept (against cleanup and MAX_FINISHED_TASKS)
until every dependent that takes it has started.
"""

from __future__ import annotations

import asyncio
import pickle
from collections import namedtuple
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers import dask_cluster, refusal

from actors import (
    ActorSystem,
    InvalidTaskError,
    ResultOf,
    TaskNotFoundError,
    TaskStatus,
    UnifiedTaskManager,
    result_of,
)
from actors.engine import find_results, substitute
from actors.journal import Codec
from supervisors import Kill

WAIT = 10.0


# -- task bodies (module level: the process and Dask workers import them) -----------------


def double(x: int) -> int:
    return 2 * x


def describe(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return args, kwargs


async def fetch(url: str) -> str:
    return f"<html>{url}</html>"


def parse(html: str) -> dict[str, int]:
    return {"length": len(html)}


# -- the placeholder and its scan, on their own ------------------------------------------


def test_result_of_is_a_small_immutable_placeholder() -> None:
    placeholder = result_of("t-1")
    assert placeholder == ResultOf("t-1")
    assert repr(placeholder) == "result_of('t-1')"
    assert pickle.loads(pickle.dumps(placeholder)) == placeholder
    with pytest.raises(AttributeError):
        placeholder.task_id = "t-2"  # type: ignore[misc]
    with pytest.raises(
        InvalidTaskError,
        match=r"^result_of\(\) takes a task id \(a non-empty str, as register_task returns\), "
        r"got ''$",
    ):
        result_of("")


@pytest.mark.parametrize("task_id", [3, "", None, b"t-1"], ids=["int", "empty", "none", "bytes"])
def test_a_placeholder_built_directly_takes_only_a_task_id(task_id: object) -> None:
    assert refusal(InvalidTaskError, ResultOf, task_id) == (
        f"ResultOf takes a task id (a non-empty str, as register_task returns), "
        f"got {task_id!r}; result_of(task_id) builds one"
    )


def test_the_scan_finds_placeholders_in_lists_tuples_and_dicts_each_once() -> None:
    a, b, c = result_of("a"), result_of("b"), result_of("c")
    assert find_results((1, "x", None), {"k": 2.0}) == ()
    assert find_results((a, [1, (b, {"k": [c]})], a), {"x": b}) == ("a", "b", "c")
    assert find_results((), {"k": {"deep": (a,)}}) == ("a",)
    # Found after plain arguments, and in kwargs behind plain args (the no-placeholder
    # shortcut looks at both before it answers "none").
    assert find_results((1, "x", a), {}) == ("a",)
    assert find_results((1, "x"), {"k": 2.0, "r": [b]}) == ("b",)
    # Only exact lists, tuples and dicts are scanned (not subclasses, not dict keys).
    pair = namedtuple("pair", "x y")
    assert find_results((pair(a, b), {a: 1}), {}) == ()


def test_substitution_rebuilds_only_the_containers_that_hold_placeholders() -> None:
    untouched = [1, 2]
    mapping = {"x": untouched}
    args = (result_of("a"), untouched, [untouched, (result_of("b"), 3)])
    kwargs = {"plain": mapping, "nested": {"v": result_of("a")}}
    new_args, new_kwargs = substitute(args, kwargs, {"a": "A", "b": "B"})
    assert new_args == ("A", [1, 2], [[1, 2], ("B", 3)])
    assert new_kwargs == {"plain": {"x": [1, 2]}, "nested": {"v": "A"}}
    assert new_args[1] is untouched
    assert new_args[2][0] is untouched
    assert new_kwargs["plain"] is mapping
    assert args[0] == result_of("a")  # the originals are not changed
    flat = (1, 2)
    assert substitute(flat, {}, {})[0] is flat


def test_the_journal_keeps_a_placeholder_under_a_stable_tag() -> None:
    codec = Codec()
    payload = codec.encode_value([result_of("t-1")], what="argument 0", task="t")
    assert payload == '[{"__actorflow__":"placeholder","type":"actorflow.result_of","value":"t-1"}]'
    assert codec.decode_value(payload, what="argument 0", task="t") == [result_of("t-1")]


# -- on both task systems ---------------------------------------------------------------


def make_system(backend: str, **config: Any) -> ActorSystem:
    return ActorSystem(
        {
            "USE_NEW_TASK_SYSTEM": backend == "new",
            "RESTART_BACKOFF_INITIAL": 0.0,
            "CLEANUP_INTERVAL": 0,
            **config,
        }
    )


@pytest.fixture
async def tm(backend: str) -> AsyncIterator[UnifiedTaskManager]:
    async with make_system(backend) as system:
        yield system.task_manager


async def test_the_tour_pipeline_passes_results_along(tm: UnifiedTaskManager) -> None:
    page = await tm.register_task("fetch", fetch, ("https://example.org",))
    parsed = await tm.register_task("parse", parse, (result_of(page),))
    info = await tm.get_task(parsed)
    assert info.dependencies == (page,)
    assert await tm.execute_task(parsed, wait=True) == {
        "length": len("<html>https://example.org</html>")
    }
    assert await tm.get_task_status(page) is TaskStatus.COMPLETED


async def test_placeholders_anywhere_in_args_and_kwargs(tm: UnifiedTaskManager) -> None:
    one = await tm.register_task("one", double, (1,))
    two = await tm.register_task("two", double, (2,))
    other = await tm.register_task("other", double, (5,))
    whole = await tm.register_task(
        "whole",
        describe,
        (result_of(one), [result_of(two), (result_of(one), "x")]),
        {"mapping": {"k": result_of(two)}, "plain": 7},
        dependencies=(other,),
    )
    assert (await tm.get_task(whole)).dependencies == (other, one, two)
    await tm.execute_task(other)
    assert await tm.execute_task(whole, wait=True) == (
        (2, [4, (2, "x")]),
        {"mapping": {"k": 4}, "plain": 7},
    )


async def test_a_bad_placeholder_is_refused_and_changes_nothing(tm: UnifiedTaskManager) -> None:
    before = await tm.get_all_tasks()
    with pytest.raises(
        TaskNotFoundError, match=r"^dependency 'ghost' of task 'b' is not registered"
    ):
        await tm.register_task("b", double, (result_of("ghost"),), task_id="b")
    with pytest.raises(
        InvalidTaskError,
        match=r"^task 'me' cannot take its own result; remove result_of\('me'\) from its "
        r"arguments$",
    ):
        await tm.register_task("me", double, (result_of("me"),), task_id="me")
    assert await tm.get_all_tasks() == before


async def test_a_retry_gets_the_same_result(tm: UnifiedTaskManager) -> None:
    seen: list[int] = []

    async def flaky(value: int) -> int:
        seen.append(value)
        if len(seen) == 1:
            raise ConnectionError("first try fails")
        return value + 1

    source = await tm.register_task("source", double, (21,))
    dependent = await tm.register_task("flaky", flaky, (result_of(source),), max_retries=1)
    assert await tm.execute_task(dependent, wait=True) == 43
    assert seen == [42, 42]
    assert (await tm.get_task(dependent)).attempts == 2


async def test_a_result_is_kept_until_its_dependents_took_it(backend: str) -> None:
    """MAX_FINISHED_TASKS and cleanup drop finished tasks, but not one whose result a
    dependent that has not started yet still needs; once it started, they may."""
    async with make_system(backend, MAX_FINISHED_TASKS=2) as system:
        tm = system.task_manager
        source = await tm.register_task("source", double, (50,))
        assert await tm.execute_task(source, wait=True) == 100
        later = await tm.register_task("later", double, (result_of(source),))
        for i in range(5):  # five more finish: the bound (2) would drop `source` first
            filler = await tm.register_task(f"filler{i}", double, (i,))
            assert await tm.execute_task(filler, wait=True) == 2 * i
        assert await tm.cleanup_completed_tasks(max_age=0.0) == 2  # two fillers, not source
        assert await tm.get_task_result(source) == 100
        assert await tm.execute_task(later, wait=True) == 200
        # Taken: `source` is an ordinary finished task again, and the oldest one.
        assert [t.name for t in await tm.get_all_tasks()] == ["source", "later"]
        last = await tm.register_task("last", double, (0,))
        assert await tm.execute_task(last, wait=True) == 0
        with pytest.raises(TaskNotFoundError):
            await tm.get_task(source)
        assert [t.name for t in await tm.get_all_tasks()] == ["later", "last"]


async def test_a_result_is_released_by_a_dependent_that_ends_without_running(
    backend: str,
) -> None:
    async with make_system(backend) as system:
        tm = system.task_manager
        source = await tm.register_task("source", double, (1,))
        assert await tm.execute_task(source, wait=True) == 2
        dependent = await tm.register_task("dependent", double, (result_of(source),))
        assert await tm.cleanup_completed_tasks(max_age=0.0) == 0
        assert await tm.cancel_task(dependent) is True
        assert await tm.cleanup_completed_tasks(max_age=0.0) == 2


async def test_results_flow_across_a_crash_of_the_manager(backend: str) -> None:
    child = "task_manager" if backend == "new" else "legacy_task_manager"
    async with make_system(backend) as system:
        tm = system.task_manager
        gate = asyncio.Event()

        async def slow(value: int) -> int:
            await gate.wait()
            return value

        first = await tm.register_task("first", slow, (20,))
        second = await tm.register_task("second", double, (result_of(first),))
        third = await tm.register_task("third", describe, (result_of(first), result_of(second)))
        await tm.execute_task(third)
        system.supervisor.child(child).tell(Kill())
        assert await tm.get_task_status(third) is TaskStatus.WAITING  # after the restart
        gate.set()
        assert await tm.wait_for_task(third, timeout=WAIT) == ((20, 40), {})
        restarts = {c.id: c.restarts for c in await system.supervisor.which_children()}
        assert restarts[child] == 1


# -- on every executor ------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """One LocalCluster with real worker processes."""
    pytest.importorskip("distributed")
    with dask_cluster(1) as address:
        yield address


async def through(executor: str, dask_address: str | None = None) -> Any:
    config = {"DASK_SCHEDULER_ADDRESS": dask_address, "MAX_THREAD_WORKERS": 1}
    async with make_system("new", **config) as system:
        tm = system.task_manager
        base = await tm.register_task("base", double, (3,), executor=executor)
        twice = await tm.register_task("twice", double, (result_of(base),), executor=executor)
        both = await tm.register_task(
            "both", describe, ([result_of(base), result_of(twice)],), executor=executor
        )
        return await tm.execute_task(both, wait=True)


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_results_reach_functions_in_threads_and_processes(executor: str) -> None:
    assert await through(executor) == (([6, 12],), {})


async def test_results_reach_functions_on_dask(dask_address: str) -> None:
    assert await through("dask", dask_address) == (([6, 12],), {})
