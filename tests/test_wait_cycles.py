"""Wait-for cycles between task codes: a task's code that waits (``wait_for_task``,
``execute_task(wait=True)``, a task it submits, ``system.blocking``) for a task that
ends only after it, through other tasks' waits and dependencies, is refused at once
with `InvalidTaskError` naming the whole cycle in order, and nothing changes; so is an
``add_dependency`` that would close one. A wait leaves the relation when it ends (the
task's outcome, a timeout, a cancel, its caller's attempt ending): the same wait is
then accepted. (Each of these hung: for ever, or until a timeout.)

The engine's relation is tested without actors first (exact tables, bounded searches),
then through both task systems.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest
from helpers import PROPERTY, WAIT, Boom, RecordingPort, Replies, make_system, returns, until
from hypothesis import given
from hypothesis import strategies as st

import actors
from actors import InvalidTaskError, TaskStatus, WaitTimeoutError
from actors.engine import Engine, Policy, validate_registration
from actors.engine._graph import DependencyGraph
from actors.engine._waits import WaitFor
from supervisors.testing import FakeClock

COMPLETED, RETRYING = TaskStatus.COMPLETED, TaskStatus.RETRYING
NEVER = "so none of them would ever end"


def cycle(*links: str) -> str:
    """The end of the text of a refusal naming the cycle of ``links``."""
    return (
        f"that would close a cycle of tasks that wait for each other ({', '.join(links)}), {NEVER}"
    )


# -- the engine without actors ----------------------------------------------------------------


class Scoped:
    """An attempt that is its code's `TaskScope` too (as `Execution` is)."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id

    def claim(self) -> bool:
        return True

    def cancel(self, error: BaseException | None = None) -> None:
        pass


class ScopedPort(RecordingPort):
    def start_attempt(self, record: Any) -> Scoped:  # type: ignore[override]
        super().start_attempt(record)
        return Scoped(record.task_id)

    def retry_after(self, delay: float, task_id: str, attempt: int) -> Any:
        return Scoped(task_id)  # a timer nobody fires


def running(*names: str, retries: int = 0) -> Engine:
    """An engine whose tasks ``names`` (ids as names) all run."""
    engine = Engine(Policy.scheduler(10_000), FakeClock(100.0))
    engine.attach(ScopedPort())
    for name in names:
        spec = validate_registration(name, str, (), max_retries=retries, retry_delay=1.0)
        engine.register(spec, name, None)  # type: ignore[arg-type]
        engine.execute(name)
    return engine


def scope(engine: Engine, task_id: str) -> Any:
    return engine.tasks[task_id].execution


def waits(engine: Engine, waiting: str, awaited: str) -> Replies:
    """``waiting``'s code waits for ``awaited``: its reply."""
    reply = Replies()
    engine.wait(awaited, reply, True, scope(engine, waiting))
    return reply


def table(engine: Engine) -> dict[str, dict[str, list[str]]]:
    """The relation, both ways, as plain data (each task's waits sorted)."""
    w = engine.waits
    return {
        "out": {k: sorted(v.values()) for k, v in w.out.items()},
        "into": {k: sorted(v.values()) for k, v in w.into.items()},
    }


def refused_text(call: Any, *args: Any) -> str:
    with pytest.raises(InvalidTaskError) as caught:
        call(*args)
    return str(caught.value)


def test_a_wait_closing_a_cycle_of_waits_is_refused_naming_it_and_changes_nothing() -> None:
    """a waits for b, b for c: c's wait for a (``wait``, ``execute`` with a waiter, a
    ``submit`` taking a's result) is refused naming the cycle from c; the relation,
    a's waiters and the tasks are as they were, and a wait by c for another task is
    accepted."""
    engine = running("a", "b", "c", "d")
    waits(engine, "a", "b")
    waits(engine, "b", "c")
    before = table(engine)
    ring = cycle("c waits for a", "a waits for b", "b waits for c")
    head = "task 'c' (c) cannot wait for task 'a' (a): "
    reply = Replies()
    assert refused_text(engine.wait, "a", reply, True, scope(engine, "c")) == head + ring
    assert refused_text(engine.execute, "a", reply, scope(engine, "c")) == head + ring
    spec = validate_registration("s", str, (actors.result_of("a"),))
    assert refused_text(engine.submit, spec, "s", None, reply, scope(engine, "c")) == (
        "task 'c' (c) cannot submit task 's' (s) and wait for it: "
        + cycle("c waits for s", "s depends on a", "a waits for b", "b waits for c")
    )
    assert table(engine) == before
    assert engine.tasks["a"].waiters is None
    assert "s" not in engine.tasks
    assert reply.got == []
    waits(engine, "c", "d")  # not a cycle
    assert table(engine) == {
        "out": {"a": ["b"], "b": ["c"], "c": ["d"]},
        "into": {"b": ["a"], "c": ["b"], "d": ["c"]},
    }


def test_a_cycle_through_a_dependency_is_refused_and_a_path_of_dependencies_keeps_its_text() -> (
    None
):
    """a waits for b, b (pending) depends on c, whose code waits for a: refused naming
    the cycle; where dependencies alone tie the task awaited to the waiter, the text is
    the one of a task that depends on the waiting one, as before."""
    engine = running("a", "c")
    engine.register(validate_registration("b", str, (), dependencies=["c"]), "b", None)  # type: ignore[arg-type]
    engine.wait("b", Replies(), True, scope(engine, "a"))  # bounded: b not executed
    assert refused_text(engine.wait, "a", Replies(), True, scope(engine, "c")) == (
        "task 'c' (c) cannot wait for task 'a' (a): "
        + cycle("c waits for a", "a waits for b", "b depends on c")
    )
    assert refused_text(engine.wait, "b", Replies(), True, scope(engine, "c")) == (
        "task 'c' (c) cannot wait for task 'b' (b): it depends on the waiting task "
        "(b -> c), so it ends only after this wait, which would never end"
    )
    assert table(engine) == {"out": {"a": ["b"]}, "into": {"b": ["a"]}}


def test_a_wait_leaves_the_relation_when_it_ends_each_way() -> None:
    """a's wait for b ends by b's outcome, by being withdrawn (a timeout or a cancel),
    by a's attempt ending (a failure retried, a completion): after each, b's code may
    wait for a, and the relation holds nothing of the ended wait. So does a wait whose
    task fails, or whose waiting task is cancelled."""
    engine = running("a", "b", retries=1)
    closing = "task 'b' (b) cannot wait for task 'a' (a): " + cycle(
        "b waits for a", "a waits for b"
    )

    withdrawn = waits(engine, "a", "b")
    assert refused_text(engine.wait, "a", Replies(), True, scope(engine, "b")) == closing
    engine.unwait("b", withdrawn)  # its timeout, or its cancel
    assert table(engine) == {"out": {}, "into": {}}
    back = waits(engine, "b", "a")  # accepted now
    engine.unwait("a", back)

    waits(engine, "a", "b")
    engine.attempt_done("a", 1, None, Boom("x"), None)  # a retries: its code's waits end
    assert engine.tasks["a"].status is RETRYING
    assert table(engine) == {"out": {}, "into": {}}
    back = waits(engine, "b", "a")
    assert table(engine) == {"out": {"b": ["a"]}, "into": {"a": ["b"]}}

    engine.retry_due("a", 1)  # a's attempt 2 runs; b still waits for it
    assert refused_text(engine.wait, "b", Replies(), True, scope(engine, "a")) == (
        "task 'a' (a) cannot wait for task 'b' (b): " + cycle("a waits for b", "b waits for a")
    )
    engine.attempt_done("a", 2, "a2", None, None, answered=False)  # a's outcome ends b's wait
    assert back.got == [("result", "a2")]
    assert table(engine) == {"out": {}, "into": {}}
    engine.attempt_done("b", 1, "b1", None, None)
    assert table(engine) == {"out": {}, "into": {}}

    engine = running("c", "d", "e", "f")  # no retries
    failed = waits(engine, "c", "d")
    waits(engine, "e", "f")
    boom = Boom("d")
    engine.attempt_done("d", 1, None, boom, None)  # the task awaited fails
    assert failed.got == [("error", boom)]
    assert table(engine) == {"out": {"e": ["f"]}, "into": {"f": ["e"]}}
    assert engine.cancel("e", Replies()) is True  # the waiting task is cancelled
    assert table(engine) == {"out": {}, "into": {}}


def test_add_dependency_on_a_task_whose_code_waits_for_it_is_refused_and_changes_nothing() -> None:
    """x is pending; y's code waits for z, which depends on x: x depending on y could
    never start. Refused naming the cycle; the graph is as it was; a dependency that
    closes no cycle (x on w) is added."""
    engine = running("y", "w")
    engine.register(validate_registration("x", str, ()), "x", None)  # type: ignore[arg-type]
    engine.register(validate_registration("z", str, (), dependencies=["x"]), "z", None)  # type: ignore[arg-type]
    engine.wait("z", Replies(), True, scope(engine, "y"))
    assert refused_text(engine.add_dependency, "x", "y") == (
        "cannot make task 'x' depend on 'y': "
        + cycle("x depends on y", "y waits for z", "z depends on x")
        + "; 'x' could never start (add the dependency once 'y' ended)"
    )
    assert engine.graph.dependencies("x") == ()
    assert engine.graph.dependents("y") == ()
    engine.add_dependency("x", "w")
    assert engine.graph.dependencies("x") == ("w",)


def test_a_4000_task_chain_of_waits_costs_each_new_wait_no_walk() -> None:
    """Each task of a 4,000-task chain waits for the next, the waits made from either
    end: no new wait walks the chain (its search stops at the side that has no edge);
    the wait closing it is refused after one walk of it, naming its 4,000 links."""
    n = 4000
    names = [f"t{i}" for i in range(n)]
    for order in (range(n - 1), range(n - 2, -1, -1)):
        engine = running(*names)
        engine.waits = counted = CountedWaitFor()
        for i in order:
            waits(engine, names[i], names[i + 1])
        assert counted.visited == []
        message = refused_text(engine.wait, "t0", Replies(), True, scope(engine, f"t{n - 1}"))
        assert len(counted.visited) <= n
        assert message.endswith(
            ", ".join(f"{a} waits for {b}" for a, b in itertools.pairwise([names[-1], *names]))
            + f"), {NEVER}"
        )


class CountedWaitFor(WaitFor):
    """Its searches record the tasks they step through."""

    __slots__ = ("visited",)

    def __init__(self) -> None:
        super().__init__()
        self.visited: list[str] = []

    def path(
        self, graph: DependencyGraph, start: str, goal: str, through: Callable[[str], bool]
    ) -> list[str] | None:
        def counted(task_id: str) -> bool:
            self.visited.append(task_id)
            return through(task_id)

        return super().path(graph, start, goal, counted)


def test_waits_from_outside_tasks_or_for_ended_tasks_add_nothing() -> None:
    """A wait from outside tasks (no caller), from an attempt that is not running here
    (another system's, or one that ended), or for a task that ended, adds no edge; a
    parent whose code waits for 2,000 children is waited for by 500 tasks without a
    search stepping through any task."""
    engine = running("a", "b", "done")
    engine.attempt_done("done", 1, "v", None, None)
    engine.wait("b", Replies(), True, None)
    engine.wait("b", Replies(), True, Scoped("a"))  # not a's running attempt
    engine.wait("done", Replies(), True, scope(engine, "a"))
    assert table(engine) == {"out": {}, "into": {}}

    engine = running("p", *(f"q{i}" for i in range(500)))
    engine.waits = counted = CountedWaitFor()
    spec = validate_registration("child", str, ())
    for i in range(2000):
        engine.submit(spec, f"c{i}", None, Replies(), scope(engine, "p"))  # type: ignore[arg-type]
    for i in range(500):
        waits(engine, f"q{i}", "p")
    assert counted.visited == []
    assert (len(engine.waits.out["p"]), len(engine.waits.into["p"])) == (2000, 500)


# -- WaitFor.path against a model ---------------------------------------------------------------


@PROPERTY
@given(
    st.integers(1, 12).flatmap(
        lambda size: st.tuples(
            st.just(size),
            st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, size - 1)), max_size=20),
            st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, size - 1)), max_size=20),
            st.integers(0, size - 1),
            st.integers(0, size - 1),
            st.sets(st.integers(0, size - 1)),
        )
    )
)
def test_the_path_is_a_shortest_one_through_dependencies_and_waits(
    case: tuple[int, list[tuple[int, int]], list[tuple[int, int]], int, int, set[int]],
) -> None:
    size, deps, wait_edges, start, goal, blocked = case
    names = [f"t{i}" for i in range(size)]
    graph = DependencyGraph()
    for name in names:
        graph.add(name)
    for a, b in deps:
        if a > b:  # acyclic: a later task depends on an earlier one
            graph.add_edge(names[a], names[b])
    relation = WaitFor()
    for index, (a, b) in enumerate(wait_edges):
        relation.add(names[a], names[b], Replies() if index % 2 else object())  # type: ignore[arg-type]
    passing = {names[i] for i in range(size) if i not in blocked}
    edges = {n: {*graph.dependencies(n), *relation.out.get(n, {}).values()} for n in names}
    begin, end = names[start], names[goal]
    depth, layer = {begin: 0}, [begin]
    while layer and end not in depth:
        following = []
        for node in layer:
            if node != begin and node not in passing:
                continue
            for step in sorted(edges[node]):
                if step not in depth:
                    depth[step] = depth[node] + 1
                    following.append(step)
        layer = following
    path = relation.path(graph, begin, end, passing.__contains__)
    if begin == end or end not in depth:
        assert path is None
        return
    assert path is not None
    assert (len(path), path[0], path[-1]) == (depth[end] + 1, begin, end)
    assert all(node in passing for node in path[1:-1])
    assert all(b in edges[a] for a, b in itertools.pairwise(path))


# -- both task systems --------------------------------------------------------------------------


def started(new_system: bool) -> actors.ActorSystem:
    return make_system("new" if new_system else "old", FakeClock(), MAX_CONCURRENT_TASKS=2)


async def sent(waiting: asyncio.Future[Any]) -> None:
    """One step of the call ``waiting``: its request is in the loop's outbox."""
    await asyncio.sleep(0)
    assert not waiting.done()


async def test_two_tasks_whose_codes_wait_for_each_other(new_system: bool) -> None:
    """a's code waits for b; b's code then waits for a (``wait_for_task``, with and
    without a timeout, and ``execute_task(wait=True)``): each is refused at once naming
    the cycle, b goes on and returns, and a's wait ends with b's value."""
    seen: list[str] = []
    a_waits = asyncio.Event()
    ids: dict[str, str] = {}

    async with started(new_system) as system:
        tm = system.task_manager

        async def a_body() -> str:
            waiting = asyncio.ensure_future(tm.wait_for_task(ids["b"], timeout=WAIT))
            await sent(waiting)
            a_waits.set()
            return f"a got {await waiting}"

        async def b_body() -> str:
            for call in (
                tm.wait_for_task(ids["a"]),
                tm.wait_for_task(ids["a"], timeout=WAIT),
                tm.execute_task(ids["a"], wait=True),
            ):
                try:
                    await asyncio.wait_for(call, WAIT)
                except InvalidTaskError as error:
                    seen.append(str(error))
            return "b went on"

        ids["a"] = a = await tm.register_task("a", a_body)
        ids["b"] = b = await tm.register_task("b", b_body)
        a_done = asyncio.ensure_future(tm.execute_task(a, wait=True))
        await until(a_waits)
        assert await asyncio.wait_for(tm.execute_task(b, wait=True), WAIT) == "b went on"
        assert await asyncio.wait_for(a_done, WAIT) == "a got b went on"
        refusal = f"task 'b' ({b}) cannot wait for task 'a' ({a}): " + cycle(
            f"{b} waits for {a}", f"{a} waits for {b}"
        )
        assert seen == [refusal] * 3
        infos = {i.name: (i.status, i.attempts) for i in await tm.get_all_tasks()}
    assert infos == {"a": (COMPLETED, 1), "b": (COMPLETED, 1)}


async def test_a_cycle_through_a_dependency_and_a_blocking_wait_and_a_submit(
    new_system: bool,
) -> None:
    """a's code executes b and waits for it; b depends on c; c, a plain function on a
    thread, waits for a through ``system.blocking``, and submits a task taking a's
    result: both refused naming the cycle; c returns, b runs, a gets b's value."""
    seen: list[str] = []
    ids: dict[str, str] = {}

    async with started(new_system) as system:
        tm = system.task_manager

        async def a_body() -> str:
            return f"a got {await tm.execute_task(ids['b'], wait=True)}"

        def c_body() -> str:
            try:
                system.blocking.wait_for_task(ids["a"])
            except InvalidTaskError as error:
                seen.append(str(error))
            try:
                system.blocking.submit(str, actors.result_of(ids["a"]), task_id="s")
            except InvalidTaskError as error:
                seen.append(str(error))
            return "c"

        ids["a"] = a = await tm.register_task("a", a_body)
        ids["c"] = c = await tm.register_task("c", c_body)
        ids["b"] = b = await tm.register_task(
            "b", str, args=(actors.result_of(c),), dependencies=[c]
        )
        assert await asyncio.wait_for(tm.execute_task(a, wait=True), WAIT) == "a got c"
        assert seen == [
            f"task 'c' ({c}) cannot wait for task 'a' ({a}): "
            + cycle(f"{c} waits for {a}", f"{a} waits for {b}", f"{b} depends on {c}"),
            f"task 'c' ({c}) cannot submit task 'str' (s) and wait for it: "
            + cycle(
                f"{c} waits for s",
                f"s depends on {a}",
                f"{a} waits for {b}",
                f"{b} depends on {c}",
            ),
        ]
        infos = {i.name: (i.status, i.attempts) for i in await tm.get_all_tasks()}
    assert infos == {"a": (COMPLETED, 1), "b": (COMPLETED, 1), "c": (COMPLETED, 1)}


@pytest.mark.parametrize("mode", ["cancelled", "timed out", "retried"])
async def test_a_wait_that_ended_no_longer_closes_a_cycle(new_system: bool, mode: str) -> None:
    """a's code waits for b, then gives the wait up (cancelled, or timed out), or its
    attempt fails and is retried while the wait goes on in the background: b's code may
    then wait for a (before, while a waited, that was refused), and gets a's value; the
    wait left behind by a's first attempt gets b's."""
    seen: list[str] = []
    waiting_a, gave_up, retry, release = (asyncio.Event() for _ in range(4))
    ids: dict[str, str] = {}
    left: list[asyncio.Future[Any]] = []

    async with started(new_system) as system:
        tm = system.task_manager

        async def a_body() -> str:
            if mode == "retried" and left:  # attempt 2 waits for nothing
                gave_up.set()
                await release.wait()
                return f"a {mode}"
            waiting: asyncio.Future[Any] = asyncio.ensure_future(
                tm.wait_for_task(ids["b"], timeout=0.01 if mode == "timed out" else WAIT)
            )
            if mode == "retried":  # attempt 1: fails, its wait left running
                left.append(waiting)
                await sent(waiting)
                raise Boom("attempt 1")
            if mode == "cancelled":
                await sent(waiting)
                waiting_a.set()
                await retry.wait()
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
                gave_up.set()
            else:
                with pytest.raises(WaitTimeoutError):
                    await waiting
                gave_up.set()
            await release.wait()
            return f"a {mode}"

        async def b_body() -> str:
            if mode == "cancelled":
                await until(waiting_a)
                try:  # a waits for b now
                    await asyncio.wait_for(tm.wait_for_task(ids["a"]), WAIT)
                except InvalidTaskError as error:
                    seen.append(str(error))
                retry.set()
            await until(gave_up)
            return f"b got {await tm.wait_for_task(ids['a'])}"

        ids["a"] = a = await tm.register_task("a", a_body, max_retries=1)
        ids["b"] = b = await tm.register_task("b", b_body)
        a_done = asyncio.ensure_future(tm.execute_task(a, wait=True))
        b_done = asyncio.ensure_future(tm.execute_task(b, wait=True))
        await until(gave_up)
        release.set()
        assert await asyncio.wait_for(b_done, WAIT) == f"b got a {mode}"
        assert await asyncio.wait_for(a_done, WAIT) == f"a {mode}"
        if left:
            assert await asyncio.wait_for(left[0], WAIT) == f"b got a {mode}"
        infos = {i.name: (i.status, i.attempts) for i in await tm.get_all_tasks()}
    assert infos == {"a": (COMPLETED, 2 if mode == "retried" else 1), "b": (COMPLETED, 1)}
    assert seen == (
        [
            f"task 'b' ({b}) cannot wait for task 'a' ({a}): "
            + cycle(f"{b} waits for {a}", f"{a} waits for {b}")
        ]
        if mode == "cancelled"
        else []
    )


async def test_add_dependency_refused_while_the_dependency_waits_for_the_task(
    new_system: bool,
) -> None:
    """y's code waits (with a timeout) for x, registered but not executed: x depending
    on y could never start. Refused naming the cycle, x unchanged; x then runs and y's
    wait ends with its value."""
    y_waits = asyncio.Event()
    ids: dict[str, str] = {}

    async with started(new_system) as system:
        tm = system.task_manager

        async def y_body() -> str:
            waiting = asyncio.ensure_future(tm.wait_for_task(ids["x"], timeout=WAIT))
            await sent(waiting)
            y_waits.set()
            return f"y got {await waiting}"

        ids["x"] = x = await tm.register_task("x", returns("x"))
        y = await tm.register_task("y", y_body)
        y_done = asyncio.ensure_future(tm.execute_task(y, wait=True))
        await until(y_waits)
        with pytest.raises(InvalidTaskError) as refused:
            await tm.add_dependency(x, y)
        assert str(refused.value) == (
            f"cannot make task {x!r} depend on {y!r}: "
            + cycle(f"{x} depends on {y}", f"{y} waits for {x}")
            + f"; {x!r} could never start (add the dependency once {y!r} ended)"
        )
        info = await tm.get_task(x)
        assert (info.status, info.dependencies) == (TaskStatus.PENDING, ())
        assert await tm.execute_task(x) is True
        assert await asyncio.wait_for(y_done, WAIT) == "y got x"


async def test_a_cycle_of_three_waits_is_refused_while_the_other_waits_go_on(
    new_system: bool,
) -> None:
    """a's code waits for b (``wait_for_task``), b's code for c (``execute_task(wait=True)``);
    c's code then waits for a (``submit`` of a task taking a's result, ``map``): each
    refused naming the cycle, nothing registered; c returns, and b's, a's and an outside
    caller's waits end with their values."""
    seen: list[str] = []
    a_waits, b_waits = asyncio.Event(), asyncio.Event()
    ids: dict[str, str] = {}

    async with started(new_system) as system:
        tm = system.task_manager

        async def a_body() -> str:
            waiting = asyncio.ensure_future(tm.wait_for_task(ids["b"], timeout=WAIT))
            await sent(waiting)
            a_waits.set()
            return f"a got {await waiting}"

        async def b_body() -> str:
            waiting = asyncio.ensure_future(tm.execute_task(ids["c"], wait=True))
            await sent(waiting)
            b_waits.set()
            return f"b got {await waiting}"

        async def c_body() -> str:
            await until(b_waits)
            for call in (
                tm.submit(str, actors.result_of(ids["a"]), task_id="s"),
                tm.map(str, [actors.result_of(ids["a"])]),
            ):
                try:
                    await asyncio.wait_for(call, WAIT)
                except InvalidTaskError as error:
                    text = str(error)
                    new = re.search(r"'str' \(([^)]+)\)", text)
                    assert new is not None
                    seen.append(text if new[1] == "s" else text.replace(new[1], "<new>"))
            return "c"

        ids["a"] = a = await tm.register_task("a", a_body)
        ids["b"] = b = await tm.register_task("b", b_body)
        ids["c"] = c = await tm.register_task("c", c_body)
        before = len(await tm.get_all_tasks())
        outside = asyncio.ensure_future(tm.wait_for_task(a, timeout=WAIT))
        a_done = asyncio.ensure_future(tm.execute_task(a, wait=True))
        await until(a_waits)
        assert await asyncio.wait_for(tm.execute_task(b), WAIT) is True
        assert await asyncio.wait_for(a_done, WAIT) == "a got b got c"
        assert await asyncio.wait_for(outside, WAIT) == "a got b got c"
        assert len(await tm.get_all_tasks()) == before
        infos = {i.name: (i.status, i.attempts) for i in await tm.get_all_tasks()}
    assert infos == {"a": (COMPLETED, 1), "b": (COMPLETED, 1), "c": (COMPLETED, 1)}
    assert seen == [
        f"task 'c' ({c}) cannot submit task 'str' ({new}) and wait for it: "
        + cycle(
            f"{c} waits for {new}",
            f"{new} depends on {a}",
            f"{a} waits for {b}",
            f"{b} waits for {c}",
        )
        for new in ("s", "<new>")
    ]
