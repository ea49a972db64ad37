"""The dependency graph: exact behaviour, then properties checked against graphlib."""

from __future__ import annotations

import graphlib
import itertools

import pytest
from helpers import PROPERTY
from hypothesis import given
from hypothesis import strategies as st

from actors.core._errors import DependencyCycleError, DuplicateTaskError, TaskNotFoundError
from actors.engine._graph import DependencyGraph


def build(*nodes: str, edges: tuple[tuple[str, str], ...] = ()) -> DependencyGraph:
    graph = DependencyGraph()
    for node in nodes:
        graph.add(node)
    for task_id, depends_on in edges:
        graph.add_edge(task_id, depends_on)
    return graph


def snapshot(graph: DependencyGraph, nodes: list[str]) -> dict[str, tuple[object, ...]]:
    return {n: (graph.dependencies(n), graph.dependents(n)) for n in nodes if n in graph}


# --- add, lookups ---------------------------------------------------------------------


def test_add_records_edges_both_ways_in_insertion_order() -> None:
    graph = DependencyGraph()
    graph.add("a")
    graph.add("b")
    graph.add("c", ["b", "a", "b"])
    graph.add("d", ("a",))
    assert graph.dependencies("c") == ("b", "a")
    assert graph.dependencies("a") == ()
    assert graph.dependents("a") == ("c", "d")
    assert graph.dependents("b") == ("c",)
    assert graph.dependents("c") == ()
    assert len(graph) == 4
    assert "c" in graph
    assert "z" not in graph
    assert repr(graph) == "<DependencyGraph: 4 tasks, 3 dependencies>"


def test_empty_graph() -> None:
    graph = DependencyGraph()
    assert len(graph) == 0
    assert "a" not in graph
    assert repr(graph) == "<DependencyGraph: 0 tasks, 0 dependencies>"


def test_add_existing_task_is_rejected() -> None:
    graph = build("a")
    with pytest.raises(DuplicateTaskError, match=r"^task 'a' is already in the dependency graph$"):
        graph.add("a")
    assert len(graph) == 1


def test_add_with_unknown_dependency_changes_nothing() -> None:
    graph = build("a")
    with pytest.raises(
        TaskNotFoundError,
        match=r"^task 'b' depends on 'x', which is not in the dependency graph; add 'x' first$",
    ):
        graph.add("b", ["a", "x"])
    assert "b" not in graph
    assert graph.dependents("a") == ()
    assert repr(graph) == "<DependencyGraph: 1 tasks, 0 dependencies>"


def test_add_depending_on_itself_is_a_cycle() -> None:
    graph = build("a")
    with pytest.raises(
        DependencyCycleError, match=r"^dependency cycle: b -> b; remove one of these dependencies$"
    ) as caught:
        graph.add("b", ["a", "b"])
    assert caught.value.cycle == ["b", "b"]
    assert "b" not in graph
    assert graph.dependents("a") == ()


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.dependencies("x"),
        lambda g: g.dependents("x"),
        lambda g: g.add_edge("x", "a"),
        lambda g: g.add_edge("a", "x"),
    ],
)
def test_unknown_task_is_not_found(call: object) -> None:
    graph = build("a")
    with pytest.raises(TaskNotFoundError, match=r"^task 'x' is not in the dependency graph$"):
        call(graph)  # type: ignore[operator]
    assert graph.dependencies("a") == ()
    assert graph.dependents("a") == ()


# --- add_edge -------------------------------------------------------------------------


def test_add_edge_adds_once() -> None:
    graph = build("a", "b")
    assert graph.add_edge("b", "a") is True
    assert graph.add_edge("b", "a") is False
    assert graph.dependencies("b") == ("a",)
    assert graph.dependents("a") == ("b",)
    assert repr(graph) == "<DependencyGraph: 2 tasks, 1 dependencies>"


def test_add_edge_may_point_to_a_later_task() -> None:
    graph = build("a", "b")
    assert graph.add_edge("a", "b") is True
    assert (graph.dependencies("a"), graph.dependents("b")) == (("b",), ("a",))


def test_self_edge_is_a_cycle() -> None:
    graph = build("a")
    with pytest.raises(
        DependencyCycleError, match=r"^dependency cycle: a -> a; remove one of these dependencies$"
    ) as caught:
        graph.add_edge("a", "a")
    assert caught.value.cycle == ["a", "a"]
    assert graph.dependencies("a") == ()


def test_cycle_is_named_in_dependency_direction_and_nothing_changes() -> None:
    graph = build("a", "b", "c", edges=(("a", "b"), ("b", "c")))
    before = snapshot(graph, ["a", "b", "c"])
    with pytest.raises(
        DependencyCycleError,
        match=r"^dependency cycle: c -> a -> b -> c; remove one of these dependencies$",
    ) as caught:
        graph.add_edge("c", "a")
    assert caught.value.cycle == ["c", "a", "b", "c"]
    assert snapshot(graph, ["a", "b", "c"]) == before
    assert repr(graph) == "<DependencyGraph: 3 tasks, 2 dependencies>"


def test_the_shortest_cycle_is_reported() -> None:
    # a -> b -> c -> d and a shortcut b -> d: closing d -> a gives d -> a -> b -> d.
    graph = build("a", "b", "c", "d", edges=(("a", "b"), ("b", "c"), ("c", "d"), ("b", "d")))
    with pytest.raises(DependencyCycleError) as caught:
        graph.add_edge("d", "a")
    assert caught.value.cycle == ["d", "a", "b", "d"]


def test_two_node_cycle() -> None:
    graph = build("a", "b", edges=(("a", "b"),))
    with pytest.raises(DependencyCycleError) as caught:
        graph.add_edge("b", "a")
    assert caught.value.cycle == ["b", "a", "b"]


# --- remove ---------------------------------------------------------------------------


def test_remove_drops_nodes_and_all_their_edges() -> None:
    graph = DependencyGraph()
    graph.add("a")
    graph.add("b", ["a"])
    graph.add("c", ["a", "b"])
    graph.add("d", ["c"])
    graph.add("e", ["b"])
    graph.remove(["b", "zzz", "b"])
    assert "b" not in graph
    assert len(graph) == 4
    assert graph.dependencies("c") == ("a",)
    assert graph.dependencies("e") == ()
    assert graph.dependents("a") == ("c",)
    assert repr(graph) == "<DependencyGraph: 4 tasks, 2 dependencies>"
    graph.remove({"c", "d"})
    assert graph.dependents("a") == ()
    assert ("c" in graph, "d" in graph, "e" in graph) == (False, False, True)
    assert repr(graph) == "<DependencyGraph: 2 tasks, 0 dependencies>"


def test_remove_nothing_and_re_add() -> None:
    graph = build("a", "b", edges=(("b", "a"),))
    graph.remove([])
    graph.remove(["nope"])
    assert repr(graph) == "<DependencyGraph: 2 tasks, 1 dependencies>"
    graph.remove(["a"])
    graph.add("a", ["b"])
    assert graph.dependencies("a") == ("b",)
    assert graph.dependents("b") == ("a",)


# --- properties -----------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """A node count and edges (later, earlier): always acyclic."""
    size = draw(st.integers(min_value=1, max_value=25))
    if size == 1:
        return size, []
    pairs = st.tuples(
        st.integers(min_value=1, max_value=size - 1), st.integers(min_value=0, max_value=size - 2)
    ).filter(lambda p: p[0] > p[1])
    return size, draw(st.lists(pairs, max_size=60))


@PROPERTY
@given(dags())
def test_add_with_dependencies_builds_the_same_graph_as_add_edge(
    dag: tuple[int, list[tuple[int, int]]],
) -> None:
    size, edges = dag
    names = [f"t{i}" for i in range(size)]
    by_add = DependencyGraph()
    by_edge = DependencyGraph()
    for i, name in enumerate(names):
        by_add.add(name, [names[e] for later, e in edges if later == i])
        by_edge.add(name)
    for later, earlier in edges:
        by_edge.add_edge(names[later], names[earlier])
    for i, name in enumerate(names):
        wanted = tuple(dict.fromkeys(names[e] for later, e in edges if later == i))
        assert by_add.dependencies(name) == wanted
        assert set(by_add.dependencies(name)) == set(by_edge.dependencies(name))
        assert set(by_add.dependents(name)) == set(by_edge.dependents(name))
    assert repr(by_add) == repr(by_edge)


def graphlib_has_cycle(model: dict[str, set[str]]) -> bool:
    try:
        graphlib.TopologicalSorter(model).prepare()
    except graphlib.CycleError:
        return True
    return False


@PROPERTY
@given(
    st.integers(min_value=1, max_value=8).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(
                st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1, max_size=40
            ),
        )
    )
)
def test_add_edge_refuses_exactly_the_edges_that_close_a_cycle(
    case: tuple[int, list[tuple[int, int]]],
) -> None:
    size, attempts = case
    names = [f"n{i}" for i in range(size)]
    graph = build(*names)
    model: dict[str, set[str]] = {name: set() for name in names}
    for a, b in attempts:
        task_id, depends_on = names[a], names[b]
        candidate = {node: set(deps) for node, deps in model.items()}
        candidate[task_id].add(depends_on)
        before = snapshot(graph, names)
        if graphlib_has_cycle(candidate):
            with pytest.raises(DependencyCycleError) as caught:
                graph.add_edge(task_id, depends_on)
            cycle = caught.value.cycle
            assert cycle[0] == cycle[-1] == task_id
            assert cycle[1] == depends_on
            assert len(set(cycle[:-1])) == len(cycle) - 1  # a simple cycle
            for node, dep in itertools.pairwise(cycle[1:]):
                assert dep in model[node]  # every other step is an existing edge
            assert snapshot(graph, names) == before
        else:
            added = graph.add_edge(task_id, depends_on)
            assert added is (depends_on not in model[task_id])
            model[task_id].add(depends_on)
        for node in names:
            assert set(graph.dependencies(node)) == model[node]
            assert set(graph.dependents(node)) == {n for n in names if node in model[n]}


@PROPERTY
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(0, 9), st.sets(st.integers(0, 9), max_size=3)),
            st.tuples(st.just("edge"), st.integers(0, 9), st.integers(0, 9)),
            st.tuples(st.just("remove"), st.sets(st.integers(0, 9), max_size=3)),
        ),
        max_size=40,
    )
)
def test_random_operations_match_a_model(ops: list[tuple[object, ...]]) -> None:
    graph = DependencyGraph()
    model: dict[str, set[str]] = {}
    for op in ops:
        if op[0] == "add":
            task_id, deps = f"n{op[1]}", {f"n{d}" for d in op[2]}  # type: ignore[attr-defined]
            ok = task_id not in model and task_id not in deps and deps <= set(model)
            before = snapshot(graph, list(model))
            if ok:
                graph.add(task_id, sorted(deps))
                model[task_id] = deps
            else:
                with pytest.raises((DuplicateTaskError, DependencyCycleError, TaskNotFoundError)):
                    graph.add(task_id, sorted(deps))
                assert snapshot(graph, list(model)) == before
        elif op[0] == "edge":
            task_id, depends_on = f"n{op[1]}", f"n{op[2]}"
            if task_id not in model or depends_on not in model:
                with pytest.raises(TaskNotFoundError):
                    graph.add_edge(task_id, depends_on)
                continue
            candidate = {node: set(deps) for node, deps in model.items()}
            candidate[task_id].add(depends_on)
            if graphlib_has_cycle(candidate):
                with pytest.raises(DependencyCycleError):
                    graph.add_edge(task_id, depends_on)
            else:
                graph.add_edge(task_id, depends_on)
                model[task_id].add(depends_on)
        else:
            gone = {f"n{i}" for i in op[1]}  # type: ignore[attr-defined]
            graph.remove(gone)
            for node in gone:
                model.pop(node, None)
            for deps in model.values():
                deps -= gone
        assert len(graph) == len(model)
        edges = sum(len(deps) for deps in model.values())
        assert repr(graph) == f"<DependencyGraph: {len(model)} tasks, {edges} dependencies>"
        for node, deps in model.items():
            assert set(graph.dependencies(node)) == deps
            assert set(graph.dependents(node)) == {n for n in model if node in model[n]}


# --- dependency_path (the engine's refusal of a wait that would never end) -----------


def test_dependency_path_of_a_goal_nothing_depends_on_visits_nothing() -> None:
    """A task running code waits for each task of a 1,000-task chain it is not part
    of (nothing depends on it): each search answers without visiting the chain. (It
    walked each task's whole chain of dependencies: an orchestrator waiting for all of
    a chain cost the manager O(chain²), 2.4 s of its thread for 4,000 tasks.)"""
    chain = [f"c{i}" for i in range(1000)]
    graph = build(*chain, "pre", "waiter", edges=(*itertools.pairwise(chain), ("waiter", "pre")))
    visited: list[str] = []

    def live(task_id: str) -> bool:
        visited.append(task_id)
        return True

    assert [graph.dependency_path(c, "waiter", live) for c in chain] == [None] * len(chain)
    assert visited == []
    graph.add_edge("c999", "waiter")  # now the chain's end depends on it
    assert graph.dependency_path("c0", "waiter", live) == [*chain, "waiter"]
    assert graph.dependency_path("c998", "waiter", live) == ["c998", "c999", "waiter"]


@PROPERTY
@given(dags(), st.integers(0, 24), st.integers(0, 24), st.sets(st.integers(0, 24)))
def test_dependency_path_is_a_shortest_path_through_the_passing_tasks(
    dag: tuple[int, list[tuple[int, int]]], start: int, goal: int, blocked: set[int]
) -> None:
    size, edges = dag
    names = [f"t{i}" for i in range(size)]
    graph = build(*names, edges=tuple((names[a], names[b]) for a, b in edges))
    begin, end = names[start % size], names[goal % size]
    passing = {names[i] for i in range(size) if i not in blocked}
    # The model: a breadth-first search over the edges, through passing tasks only.
    depth = {begin: 0}
    layer = [begin]
    while layer and end not in depth:
        next_layer = []
        for node in layer:
            if node != begin and node not in passing:
                continue
            for dep in graph.dependencies(node):
                if dep not in depth:
                    depth[dep] = depth[node] + 1
                    next_layer.append(dep)
        layer = next_layer
    path = graph.dependency_path(begin, end, passing.__contains__)
    if begin == end or end not in depth:
        assert path is None
        return
    assert path is not None
    assert len(path) == depth[end] + 1
    assert path[0] == begin
    assert path[-1] == end
    assert all(node in passing for node in path[1:-1])
    for node, dep in itertools.pairwise(path):
        assert dep in graph.dependencies(node)
