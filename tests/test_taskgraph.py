"""Task graph snapshots: building, order, filters, DOT and Mermaid text, real renders."""

from __future__ import annotations

import os
import random
import shutil
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import PROPERTY
from hypothesis import given
from hypothesis import strategies as st

import actors.observe._taskgraph as taskgraph_module
from actors.core._errors import (
    ActorsError,
    DependencyCycleError,
    InvalidTaskError,
    TaskNotFoundError,
)
from actors.core._types import TaskInfo, TaskPriority, TaskStatus
from actors.observe._taskgraph import STATUS_COLOURS, GraphvizNotFoundError, TaskGraph, TaskNode

SVG = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MISSING_DOT = (
    "cannot render the task graph: the Graphviz program 'dot' is not installed "
    "(not found on PATH); install Graphviz (e.g. 'apt-get install graphviz' or "
    "'brew install graphviz'), or use to_dot() or to_mermaid() instead"
)


def info(
    task_id: str,
    *dependencies: str,
    name: str | None = None,
    status: TaskStatus = TaskStatus.PENDING,
    task_type: str = "default",
) -> TaskInfo:
    return TaskInfo(
        task_id=task_id,
        name=task_id.upper() if name is None else name,
        status=status,
        task_type=task_type,
        description="",
        metadata={},
        dependencies=dependencies,
        priority=TaskPriority.NORMAL,
        attempts=0,
        max_retries=0,
        created_at=0.0,
        started_at=None,
        finished_at=None,
        error=None,
        backend="new",
    )


def node(task_id: str, status: TaskStatus = TaskStatus.PENDING, task_type: str = "t") -> TaskNode:
    return TaskNode(task_id, task_id.upper(), status, task_type)


def diamond() -> TaskGraph:
    """fetch -> (parse, thumbnail) -> publish, in four statuses and two types."""
    return TaskGraph.from_infos(
        [
            info("fetch", name="Fetch", status=TaskStatus.COMPLETED, task_type="io"),
            info("parse", "fetch", name="Parse", status=TaskStatus.RUNNING, task_type="cpu"),
            info("thumb", "fetch", name="Thumbnail", status=TaskStatus.FAILED, task_type="cpu"),
            info("publish", "parse", "thumb", name="Publish", task_type="io"),
        ]
    )


def ids(graph: TaskGraph) -> list[str]:
    return [n.task_id for n in graph.nodes]


# --- building -------------------------------------------------------------------------


def test_from_infos_keeps_node_order_and_makes_dependency_to_dependent_edges() -> None:
    graph = diamond()
    assert graph.nodes == (
        TaskNode("fetch", "Fetch", TaskStatus.COMPLETED, "io"),
        TaskNode("parse", "Parse", TaskStatus.RUNNING, "cpu"),
        TaskNode("thumb", "Thumbnail", TaskStatus.FAILED, "cpu"),
        TaskNode("publish", "Publish", TaskStatus.PENDING, "io"),
    )
    assert graph.edges == (
        ("fetch", "parse"),
        ("fetch", "thumb"),
        ("parse", "publish"),
        ("thumb", "publish"),
    )


def test_from_infos_leaves_out_dependencies_that_were_cleaned_up() -> None:
    graph = TaskGraph.from_infos([info("b", "gone", "a"), info("a", "also-gone")])
    assert ids(graph) == ["b", "a"]
    assert graph.edges == (("a", "b"),)


def test_from_infos_of_nothing_is_the_empty_graph() -> None:
    graph = TaskGraph.from_infos(iter([]))
    assert graph == TaskGraph((), ())
    assert graph.topological_order() == []


def test_graph_is_frozen_and_hashable_and_lists_become_tuples() -> None:
    graph = TaskGraph([node("a"), node("b")], [["a", "b"]])  # type: ignore[arg-type]
    assert graph.nodes == (node("a"), node("b"))
    assert graph.edges == (("a", "b"),)
    assert hash(graph) == hash(TaskGraph((node("a"), node("b")), (("a", "b"),)))
    with pytest.raises(AttributeError):
        graph.nodes = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("nodes", "edges", "message"),
    [
        ((node("a"), node("a")), (), "task 'a' appears twice in the task graph"),
        (
            (node("a"),),
            (("a", "b"),),
            "edge ('a', 'b') names task 'b', which is not a node of the graph",
        ),
        (
            (node("a"), node("b")),
            (("a", "b"), ("a", "b")),
            "edge ('a', 'b') appears twice in the task graph",
        ),
    ],
)
def test_a_malformed_graph_fails_when_built(
    nodes: tuple[TaskNode, ...], edges: tuple[tuple[str, str], ...], message: str
) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        TaskGraph(nodes, edges)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("nodes", "edges", "message"),
    [
        (3, (), "TaskGraph nodes must be an iterable of TaskNode, got 3"),
        (None, (), "TaskGraph nodes must be an iterable of TaskNode, got None"),
        (
            (node("a"),),
            3,
            "TaskGraph edges must be an iterable of (dependency_id, dependent_id) pairs, got 3",
        ),
        (
            ("a",),
            (),
            "TaskGraph nodes must be TaskNode objects with a str task_id, got 'a'",
        ),
        (
            (node("a"), node("b")),
            ("ab",),
            "a TaskGraph edge must be a (dependency_id, dependent_id) pair of task ids (str), "
            "got 'ab'",
        ),
        (
            (node("a"), node("b")),
            (("a", "b", "c"),),
            "a TaskGraph edge must be a (dependency_id, dependent_id) pair of task ids (str), "
            "got ('a', 'b', 'c')",
        ),
        (
            (node("a"),),
            ((["a"], "a"),),
            "a TaskGraph edge must be a (dependency_id, dependent_id) pair of task ids (str), "
            "got (['a'], 'a')",
        ),
    ],
    ids=[
        "int-nodes",
        "none-nodes",
        "int-edges",
        "str-node",
        "str-edge",
        "triple",
        "list-end",
    ],
)
def test_a_graph_of_the_wrong_types_fails_with_the_projects_error(
    nodes: object, edges: object, message: str
) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        TaskGraph(nodes, edges)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_a_graph_takes_any_iterable_and_keeps_tuples() -> None:
    graph = TaskGraph(iter([node("a"), node("b")]), [["a", "b"]])  # type: ignore[list-item]
    assert graph.nodes == (node("a"), node("b"))
    assert graph.edges == (("a", "b"),)


def test_a_cyclic_graph_fails_when_built_naming_the_cycle() -> None:
    # Edges are (dependency, dependent): a depends on b, b on c, c on a.
    with pytest.raises(DependencyCycleError) as caught:
        TaskGraph((node("a"), node("b"), node("c")), (("b", "a"), ("c", "b"), ("a", "c")))
    assert caught.value.cycle == ["a", "b", "c", "a"]
    assert str(caught.value) == (
        "dependency cycle: a -> b -> c -> a; remove one of these dependencies"
    )
    with pytest.raises(DependencyCycleError, match=r"^dependency cycle: a -> a; "):
        TaskGraph((node("a"),), (("a", "a"),))


# --- topological order ----------------------------------------------------------------


def test_topological_order_puts_dependencies_first() -> None:
    assert diamond().topological_order() == ["fetch", "parse", "thumb", "publish"]


def test_topological_order_breaks_ties_in_node_order() -> None:
    # Given z, y, x with x -> z: y and x are free first (y earlier), then z once x is done.
    graph = TaskGraph((node("z"), node("y"), node("x")), (("x", "z"),))
    assert graph.topological_order() == ["y", "x", "z"]
    free = TaskGraph(tuple(node(t) for t in "dbca"))
    assert free.topological_order() == ["d", "b", "c", "a"]


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """A node count and (dependency, dependent) index pairs, dependency < dependent."""
    size = draw(st.integers(1, 12))
    pairs = [(i, j) for i in range(size) for j in range(i + 1, size)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True) if pairs else st.just([]))
    return size, edges


@PROPERTY
@given(dags(), st.randoms(use_true_random=False))
def test_topological_order_matches_the_dependency_graph(
    dag: tuple[int, list[tuple[int, int]]], rnd: random.Random
) -> None:
    size, index_edges = dag
    order = [f"n{i}" for i in range(size)]
    rnd.shuffle(order)
    edges = tuple((f"n{a}", f"n{b}") for a, b in index_edges)
    graph = TaskGraph(tuple(node(t) for t in order), edges)
    deps = {t: {dep for dep, dependent in edges if dependent == t} for t in order}
    expected: list[str] = []  # the first added of the tasks free to go, each time
    while len(expected) < len(order):
        expected.append(next(t for t in order if t not in expected and deps[t] <= {*expected}))
    assert graph.topological_order() == expected
    for task_id in order:
        assert {n.task_id for n in graph.neighbourhood(task_id).nodes} == (
            {task_id} | reach(task_id, deps) | reach(task_id, dependents_of(deps))
        )


def reach(start: str, edges: dict[str, set[str]]) -> set[str]:
    found: set[str] = set()
    todo = [start]
    while todo:
        for nxt in edges[todo.pop()] - found:
            found.add(nxt)
            todo.append(nxt)
    return found


def dependents_of(deps: dict[str, set[str]]) -> dict[str, set[str]]:
    return {t: {other for other, its in deps.items() if t in its} for t in deps}


# --- filters and neighbourhoods -------------------------------------------------------


def test_filter_by_type_keeps_the_edges_among_the_kept_tasks() -> None:
    cpu = diamond().filter(task_type="cpu")
    assert ids(cpu) == ["parse", "thumb"]
    assert cpu.edges == ()
    io = diamond().filter(task_type="io")
    assert ids(io) == ["fetch", "publish"]
    assert io.edges == ()


def test_filter_by_status_and_by_both() -> None:
    graph = TaskGraph.from_infos(
        [
            info("a", status=TaskStatus.QUEUED, task_type="x"),
            info("b", "a", status=TaskStatus.QUEUED, task_type="x"),
            info("c", "b", status=TaskStatus.QUEUED, task_type="y"),
            info("d", "c", status=TaskStatus.RUNNING, task_type="x"),
        ]
    )
    queued = graph.filter(status=TaskStatus.QUEUED)
    assert ids(queued) == ["a", "b", "c"]
    assert queued.edges == (("a", "b"), ("b", "c"))
    both = graph.filter(task_type="x", status=TaskStatus.QUEUED)
    assert ids(both) == ["a", "b"]
    assert both.edges == (("a", "b"),)
    assert graph.filter() == graph
    assert graph.filter(task_type="nope") == TaskGraph(())
    assert graph.filter(status="running") == graph.filter(status=TaskStatus.RUNNING)  # type: ignore[arg-type]


def test_filter_rejects_a_bad_argument_by_name() -> None:
    with pytest.raises(InvalidTaskError, match=r"^task_type must be a str or None, got 3$"):
        diamond().filter(task_type=3)  # type: ignore[arg-type]
    with pytest.raises(
        InvalidTaskError,
        match=r"^status must be a TaskStatus \('pending', 'waiting', 'queued', 'running', "
        r"'retrying', 'completed', 'failed', 'cancelled'\) or None, got 'done'$",
    ):
        diamond().filter(status="done")  # type: ignore[arg-type]


def chain_with_branches() -> TaskGraph:
    """a -> b -> c -> d -> e along one chain; x -> c feeds in; b -> s is a sibling of c."""
    return TaskGraph(
        tuple(node(t) for t in ["a", "b", "c", "d", "e", "x", "s"]),
        (("a", "b"), ("b", "c"), ("c", "d"), ("d", "e"), ("x", "c"), ("b", "s")),
    )


def test_neighbourhood_is_everything_upstream_and_downstream_but_not_siblings() -> None:
    hood = chain_with_branches().neighbourhood("c")
    assert ids(hood) == ["a", "b", "c", "d", "e", "x"]
    assert hood.edges == (("a", "b"), ("b", "c"), ("c", "d"), ("d", "e"), ("x", "c"))


def test_neighbourhood_stops_at_depth() -> None:
    graph = chain_with_branches()
    one = graph.neighbourhood("c", depth=1)
    assert ids(one) == ["b", "c", "d", "x"]
    assert one.edges == (("b", "c"), ("c", "d"), ("x", "c"))
    assert ids(graph.neighbourhood("c", depth=2)) == ["a", "b", "c", "d", "e", "x"]
    assert graph.neighbourhood("c", depth=0) == TaskGraph((node("c"),))
    assert ids(graph.neighbourhood("s", depth=1)) == ["b", "s"]


def test_neighbourhood_of_an_unknown_task_names_it() -> None:
    with pytest.raises(TaskNotFoundError, match=r"^task 'nope' is not in the task graph$"):
        diamond().neighbourhood("nope")


@pytest.mark.parametrize("depth", [-1, 1.5, True, "2"])
def test_neighbourhood_rejects_a_bad_depth(depth: object) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        diamond().neighbourhood("fetch", depth=depth)  # type: ignore[arg-type]
    assert str(caught.value) == f"depth must be an int >= 0 or None, got {depth!r}"


# --- DOT and Mermaid ------------------------------------------------------------------


def test_every_status_has_its_own_colour() -> None:
    assert set(STATUS_COLOURS) == set(TaskStatus)
    assert len(set(STATUS_COLOURS.values())) == len(TaskStatus)


def test_to_dot_pins_the_whole_text() -> None:
    assert diamond().to_dot() == (
        "digraph tasks {\n"
        "  rankdir=LR;\n"
        '  node [shape=box, style="rounded,filled"];\n'
        '  "fetch" [label="Fetch\\ncompleted", fillcolor="#6abf69"];\n'
        '  "parse" [label="Parse\\nrunning", fillcolor="#ffd700"];\n'
        '  "thumb" [label="Thumbnail\\nfailed", fillcolor="#e06666"];\n'
        '  "publish" [label="Publish\\npending", fillcolor="#d9d9d9"];\n'
        '  "fetch" -> "parse";\n'
        '  "fetch" -> "thumb";\n'
        '  "parse" -> "publish";\n'
        '  "thumb" -> "publish";\n'
        "}\n"
    )


def test_to_mermaid_pins_the_whole_text() -> None:
    assert diamond().to_mermaid() == (
        "flowchart LR\n"
        '    t0["Fetch<br>completed"]\n'
        '    t1["Parse<br>running"]\n'
        '    t2["Thumbnail<br>failed"]\n'
        '    t3["Publish<br>pending"]\n'
        "    t0 --> t1\n"
        "    t0 --> t2\n"
        "    t1 --> t3\n"
        "    t2 --> t3\n"
        "    classDef pending fill:#d9d9d9,stroke:#333333,color:#000000\n"
        "    classDef waiting fill:#add8e6,stroke:#333333,color:#000000\n"
        "    classDef queued fill:#6fa8dc,stroke:#333333,color:#000000\n"
        "    classDef running fill:#ffd700,stroke:#333333,color:#000000\n"
        "    classDef retrying fill:#ffa500,stroke:#333333,color:#000000\n"
        "    classDef completed fill:#6abf69,stroke:#333333,color:#000000\n"
        "    classDef failed fill:#e06666,stroke:#333333,color:#000000\n"
        "    classDef cancelled fill:#8c8c8c,stroke:#333333,color:#000000\n"
        "    class t3 pending\n"
        "    class t1 running\n"
        "    class t0 completed\n"
        "    class t2 failed\n"
    )


def test_empty_graph_exports() -> None:
    empty = TaskGraph(())
    assert empty.to_dot() == (
        'digraph tasks {\n  rankdir=LR;\n  node [shape=box, style="rounded,filled"];\n}\n'
    )
    assert empty.to_mermaid().splitlines()[0] == "flowchart LR"
    assert "class " not in empty.to_mermaid()


NASTY = TaskGraph(
    (
        TaskNode('id "q"\\', 'say "hi"\\now', TaskStatus.QUEUED, "t"),
        TaskNode("id\nline", "two\nlines\r\nthree", TaskStatus.CANCELLED, "t"),
        TaskNode("ü", "naïve ✓ 日本 <b>&amp; R&D #x; `md` a:b", TaskStatus.WAITING, "t"),
        TaskNode("ctl", "bell\x07del\x7f", TaskStatus.RETRYING, "t"),
    ),
    (('id "q"\\', "id\nline"), ("id\nline", "ü")),
)


def test_to_dot_escapes_quotes_backslashes_newlines_and_controls() -> None:
    assert NASTY.to_dot().splitlines()[3:] == [
        r'  "id \"q\"\\" [label="say \"hi\"\\now\nqueued", fillcolor="#6fa8dc"];',
        r'  "id\nline" [label="two\nlines\nthree\ncancelled", fillcolor="#8c8c8c"];',
        '  "ü" [label="naïve ✓ 日本 <b>&amp;amp; R&amp;D #x; `md` a:b\\nwaiting", '
        'fillcolor="#add8e6"];',
        '  "ctl" [label="bell\u2407del\u2421\\nretrying", fillcolor="#ffa500"];',
        r'  "id \"q\"\\" -> "id\nline";',
        r'  "id\nline" -> "ü";',
        "}",
    ]


def test_to_mermaid_escapes_with_entity_codes() -> None:
    lines = NASTY.to_mermaid().splitlines()
    assert lines[1:7] == [
        '    t0["say #quot;hi#quot;\\now<br>queued"]',
        '    t1["two<br>lines<br>three<br>cancelled"]',
        '    t2["naïve ✓ 日本 #60;b#62;#38;amp; R#38;D #35;x; #96;md#96; a#58;b<br>waiting"]',
        '    t3["bell\u2407del\u2421<br>retrying"]',
        "    t0 --> t1",
        "    t1 --> t2",
    ]
    assert lines[-4:] == [
        "    class t2 waiting",
        "    class t0 queued",
        "    class t3 retrying",
        "    class t1 cancelled",
    ]


def test_to_mermaid_groups_tasks_of_one_status_on_one_class_line() -> None:
    graph = TaskGraph((node("a"), node("b", TaskStatus.FAILED), node("c")))
    assert graph.to_mermaid().splitlines()[-2:] == [
        "    class t0,t2 pending",
        "    class t1 failed",
    ]


# --- rendering ------------------------------------------------------------------------


def svg_lines(path: Path) -> list[str]:
    """The text lines drawn in a Graphviz SVG, node by node, in document order."""
    root = ET.parse(path).getroot()
    return [text.text or "" for text in root.iter(f"{SVG}text")]


def test_render_svg_draws_every_task_name_and_status(tmp_path: Path) -> None:
    target = tmp_path / "graph.svg"
    assert diamond().render(target) == target
    assert svg_lines(target) == [
        "Fetch",
        "completed",
        "Parse",
        "running",
        "Thumbnail",
        "failed",
        "Publish",
        "pending",
    ]
    root = ET.parse(target).getroot()
    fills = [p.get("fill") for p in root.iter(f"{SVG}path") if p.get("fill") != "none"]
    assert fills == ["#6abf69", "#ffd700", "#e06666", "#d9d9d9"]


def test_render_svg_shows_nasty_names_exactly_as_given(tmp_path: Path) -> None:
    # Proof that the DOT escaping is right: Graphviz draws the names unchanged.
    target = NASTY.render(str(tmp_path / "nasty.svg"))
    assert svg_lines(target) == [
        'say "hi"\\now',
        "queued",
        "two",
        "lines",
        "three",
        "cancelled",
        "naïve ✓ 日本 <b>&amp; R&D #x; `md` a:b",
        "waiting",
        "bell\u2407del\u2421",
        "retrying",
    ]


def test_render_png_by_suffix_and_svg_by_format(tmp_path: Path) -> None:
    png = diamond().render(tmp_path / "graph.PNG")
    assert png.read_bytes().startswith(PNG_MAGIC)
    svg = diamond().render(tmp_path / "graph.image", format="svg")
    assert svg_lines(svg)[0] == "Fetch"
    forced = diamond().render(tmp_path / "graph.svg", format="png")
    assert forced.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("name", "format", "message"),
    [
        (
            "graph.pdf",
            None,
            "cannot render a task graph as 'pdf' (from the suffix of '{path}'): "
            "use a .svg or .png path, or format='svg' or 'png'",
        ),
        (
            "graph",
            None,
            "cannot render a task graph as '' (from the suffix of '{path}'): "
            "use a .svg or .png path, or format='svg' or 'png'",
        ),
        (
            "graph.svg",
            "jpeg",
            "cannot render a task graph as 'jpeg' (from format): "
            "use a .svg or .png path, or format='svg' or 'png'",
        ),
    ],
)
def test_render_rejects_other_formats(
    tmp_path: Path, name: str, format: str | None, message: str
) -> None:
    target = tmp_path / name
    with pytest.raises(InvalidTaskError) as caught:
        diamond().render(target, format=format)
    assert str(caught.value) == message.format(path=target)
    assert list(tmp_path.iterdir()) == []


def test_render_without_graphviz_names_the_missing_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(GraphvizNotFoundError) as caught:
        diamond().render(tmp_path / "graph.svg")
    assert str(caught.value) == MISSING_DOT
    assert isinstance(caught.value, ActorsError)
    assert list(tmp_path.iterdir()) == []


def fake_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Put a shell script where `render` looks for ``dot``."""
    program = tmp_path / "bin" / "dot"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(shutil, "which", lambda name: os.fspath(program))


def test_a_failing_dot_raises_with_its_error_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dot(
        tmp_path, monkeypatch, "cat >/dev/null\necho 'Error: syntax error in line 1' >&2\nexit 3\n"
    )
    target = tmp_path / "graph.svg"
    with pytest.raises(ActorsError) as caught:
        diamond().render(target)
    assert str(caught.value) == (
        f"Graphviz 'dot' failed (exit status 3) rendering {str(target)!r}: "
        "Error: syntax error in line 1"
    )
    assert not target.exists()


def test_a_dot_that_hangs_is_stopped_at_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dot(tmp_path, monkeypatch, "cat >/dev/null\nexec sleep 30\n")
    monkeypatch.setattr(taskgraph_module, "RENDER_TIMEOUT_SECONDS", 0.2)
    target = tmp_path / "graph.svg"
    with pytest.raises(ActorsError) as caught:
        diamond().render(target)
    assert str(caught.value) == (
        f"Graphviz 'dot' did not finish rendering {str(target)!r} within 0.2s"
    )
    assert not target.exists()
