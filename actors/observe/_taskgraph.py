"""A frozen snapshot of the tasks and their dependencies, with exports to DOT and Mermaid.

`TaskGraph` is pure data: it holds no actor, starts no thread and reads no clock. The
only side effect is `TaskGraph.render`, which runs the Graphviz ``dot`` program.
"""

from __future__ import annotations

import graphlib
import os
import pathlib
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from actors.core import (
    ActorsError,
    DependencyCycleError,
    InvalidTaskError,
    TaskInfo,
    TaskNotFoundError,
    TaskStatus,
    safe_repr,
    stable_order,
)

__all__ = [
    "RENDER_FORMATS",
    "RENDER_TIMEOUT_SECONDS",
    "STATUS_COLOURS",
    "GraphvizNotFoundError",
    "TaskGraph",
    "TaskNode",
    "check_depth",
]

STATUS_COLOURS: Mapping[TaskStatus, str] = {
    TaskStatus.PENDING: "#d9d9d9",  # grey
    TaskStatus.WAITING: "#add8e6",  # light blue
    TaskStatus.QUEUED: "#6fa8dc",  # blue
    TaskStatus.RUNNING: "#ffd700",  # gold
    TaskStatus.RETRYING: "#ffa500",  # orange
    TaskStatus.COMPLETED: "#6abf69",  # green
    TaskStatus.FAILED: "#e06666",  # red
    TaskStatus.CANCELLED: "#8c8c8c",  # dark grey
}
"""The fill colour of a task in `TaskGraph.to_dot` and `TaskGraph.to_mermaid`, per status.

Mid-tone colours, so the black label text stays readable on every one of them.
"""

RENDER_FORMATS = ("svg", "png")
"""What `TaskGraph.render` writes (``dot -Tsvg``, ``dot -Tpng``)."""

RENDER_TIMEOUT_SECONDS = 30.0
"""How long `TaskGraph.render` lets ``dot`` run before giving up."""


class GraphvizNotFoundError(ActorsError):
    """`TaskGraph.render` was called but the Graphviz ``dot`` program is not on PATH.

    Install Graphviz (Debian/Ubuntu: ``apt-get install graphviz``), or export the graph
    with `TaskGraph.to_dot` / `TaskGraph.to_mermaid` and render it elsewhere.
    """


@dataclass(frozen=True, slots=True)
class TaskNode:
    """One task in a `TaskGraph`: what the graph shows of it."""

    task_id: str
    name: str
    status: TaskStatus
    task_type: str

    def __post_init__(self) -> None:
        # Checked here, not when the graph is drawn: to_dot/to_mermaid would raise an
        # AttributeError or TypeError (a status without .value, a name that is no str).
        task_id: object = self.task_id
        name: object = self.name
        status: object = self.status
        task_type: object = self.task_type
        if not isinstance(task_id, str) or not task_id:
            raise InvalidTaskError(
                f"TaskNode task_id must be a non-empty str, got {safe_repr(task_id)}"
            )
        if not isinstance(name, str):
            raise InvalidTaskError(f"TaskNode name must be a str, got {safe_repr(name)}")
        if not isinstance(status, TaskStatus):
            choices = ", ".join(f"TaskStatus.{member.name}" for member in TaskStatus)
            raise InvalidTaskError(
                f"TaskNode status must be a TaskStatus ({choices}), got {safe_repr(status)}"
            )
        if not isinstance(task_type, str) or not task_type:
            raise InvalidTaskError(
                f"TaskNode task_type must be a non-empty str, got {safe_repr(task_type)}"
            )


# --- escaping -------------------------------------------------------------------------

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters other than tab and newline, invalid or invisible in SVG (line
breaks are replaced before this applies)."""


def _control_picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # U+2400.. CONTROL PICTURES: "\x01" shows as "␁"
    if code == 0x7F:
        return "\u2421"  # ␡
    return "\ufffd"  # C1 controls have no picture


def _dot_id(text: str) -> str:
    """``text`` as a quoted DOT ID. Graphviz keeps an ID's backslashes as they are, so
    this only has to be valid DOT and one-to-one: distinct task ids stay distinct."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    out = out.replace("\r", "\\r")
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", out)
    return f'"{out}"'


def _dot_label_text(text: str) -> str:
    """``text`` inside a quoted DOT label (an escString): a backslash shows as itself,
    a quote as a quote, each line break as a centred line break. Graphviz decodes HTML
    entities in labels, so ``&`` becomes ``&amp;`` (else "&amp;" would show as "&")."""
    out = text.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"')
    out = _LINE_BREAK.sub(r"\\n", out)
    return _CONTROL.sub(_control_picture, out)


_MERMAID_ENTITIES = {
    "#": "#35;",  # first: every other escape below starts with "#"
    '"': "#quot;",
    "&": "#38;",
    "<": "#60;",
    ">": "#62;",
    ":": "#58;",  # mermaid rewrites a line matching "style...:...#...;" before parsing
    "`": "#96;",  # a label wrapped in backticks is read as Markdown
}
"""Mermaid turns ``#quot;`` into ``&quot;`` and ``#60;`` into ``&#60;`` before it draws
a label as HTML, so these characters show as themselves instead of being read as
Mermaid or HTML syntax. Replaced in one pass, so "#" is never escaped twice."""
_MERMAID_SPECIAL = re.compile("[" + re.escape("".join(_MERMAID_ENTITIES)) + "]")


def _mermaid_label_text(text: str) -> str:
    """``text`` inside a quoted Mermaid label: characters Mermaid or HTML would read as
    syntax become entity codes (``#quot;``), line breaks become ``<br>``."""
    out = _MERMAID_SPECIAL.sub(lambda m: _MERMAID_ENTITIES[m.group()], text)
    out = _LINE_BREAK.sub("<br>", out)
    return _CONTROL.sub(_control_picture, out)


# --- the graph ------------------------------------------------------------------------


def check_depth(depth: object) -> None:
    """`InvalidTaskError` unless ``depth`` is an int >= 0 or None (`TaskGraph.neighbourhood`)."""
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise InvalidTaskError(f"depth must be an int >= 0 or None, got {safe_repr(depth)}")


@dataclass(frozen=True, slots=True)
class TaskGraph:
    """Tasks and their dependencies at one moment; `get_task_graph` returns one.

    ``nodes`` keep the order they were given in (registration order, from the manager);
    ``edges`` are ``(dependency_id, dependent_id)`` pairs between nodes. The graph is
    checked when it is built: ids are unique, edges join known nodes, each edge appears
    once and there is no cycle (`InvalidTaskError`, `DependencyCycleError`).
    """

    nodes: tuple[TaskNode, ...]
    edges: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        nodes: object = self.nodes
        edges: object = self.edges
        if not isinstance(nodes, Iterable):
            msg = f"TaskGraph nodes must be an iterable of TaskNode, got {safe_repr(nodes)}"
            raise InvalidTaskError(msg)
        if not isinstance(edges, Iterable):
            raise InvalidTaskError(
                f"TaskGraph edges must be an iterable of (dependency_id, dependent_id) pairs, "
                f"got {safe_repr(edges)}"
            )
        object.__setattr__(self, "nodes", tuple(nodes))
        pairs: list[tuple[str, str]] = []
        for edge in edges:
            if (
                not isinstance(edge, tuple | list)
                or len(edge) != 2
                or not all(isinstance(end, str) for end in edge)
            ):
                raise InvalidTaskError(
                    f"a TaskGraph edge must be a (dependency_id, dependent_id) pair of task "
                    f"ids (str), got {safe_repr(edge)}"
                )
            pairs.append((edge[0], edge[1]))
        object.__setattr__(self, "edges", tuple(pairs))
        ids: set[str] = set()
        for node in self.nodes:
            if not isinstance(node, TaskNode) or not isinstance(node.task_id, str):
                raise InvalidTaskError(
                    "TaskGraph nodes must be TaskNode objects with a str task_id, "
                    f"got {safe_repr(node)}"
                )
            if node.task_id in ids:
                raise InvalidTaskError(f"task {node.task_id!r} appears twice in the task graph")
            ids.add(node.task_id)
        seen: set[tuple[str, str]] = set()
        for edge in self.edges:
            for end in edge:
                if end not in ids:
                    raise InvalidTaskError(
                        f"edge {edge!r} names task {end!r}, which is not a node of the graph"
                    )
            if edge in seen:
                raise InvalidTaskError(f"edge {edge!r} appears twice in the task graph")
            seen.add(edge)
        self._sorter()  # raises DependencyCycleError

    @classmethod
    def from_infos(cls, infos: Iterable[TaskInfo]) -> TaskGraph:
        """The graph of these task snapshots, in the order given.

        A dependency that is not among ``infos`` (already cleaned up) has no node, so its
        edge is left out.
        """
        snapshot = tuple(infos)
        present = {info.task_id for info in snapshot}
        nodes = tuple(
            TaskNode(info.task_id, info.name, info.status, info.task_type) for info in snapshot
        )
        edges = tuple(
            (dep, info.task_id)
            for info in snapshot
            for dep in dict.fromkeys(info.dependencies)
            if dep in present
        )
        return cls(nodes, edges)

    def _sorter(self) -> graphlib.TopologicalSorter[str]:
        """A prepared sorter over every node; `DependencyCycleError` if there is a cycle."""
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for node in self.nodes:
            sorter.add(node.task_id)
        for dep, dependent in self.edges:
            sorter.add(dependent, dep)
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            # graphlib lists each task before one that depends on it; DependencyCycleError
            # wants each task before one it depends on.
            raise DependencyCycleError(list(reversed(exc.args[1]))) from None
        return sorter

    def topological_order(self) -> list[str]:
        """Every task id, each after everything it depends on.

        Among tasks free to go, the one earlier in ``nodes`` goes first, so the order is
        the same for the same graph.
        """
        position = {node.task_id: index for index, node in enumerate(self.nodes)}
        return stable_order(self._sorter(), position)

    def _subgraph(self, keep: Iterable[str]) -> TaskGraph:
        """The nodes in ``keep`` (in graph order) and every edge between two of them."""
        kept = set(keep)
        return TaskGraph(
            tuple(node for node in self.nodes if node.task_id in kept),
            tuple(edge for edge in self.edges if edge[0] in kept and edge[1] in kept),
        )

    def filter(self, task_type: str | None = None, status: TaskStatus | None = None) -> TaskGraph:
        """The tasks of this type and in this status (None: any), and the edges among them."""
        if task_type is not None and not isinstance(task_type, str):
            raise InvalidTaskError(f"task_type must be a str or None, got {task_type!r}")
        wanted: TaskStatus | None = None
        if status is not None:
            try:
                wanted = TaskStatus(status)
            except ValueError:
                choices = ", ".join(repr(s.value) for s in TaskStatus)
                raise InvalidTaskError(
                    f"status must be a TaskStatus ({choices}) or None, got {status!r}"
                ) from None
        return self._subgraph(
            node.task_id
            for node in self.nodes
            if (task_type is None or node.task_type == task_type)
            and (wanted is None or node.status == wanted)
        )

    def neighbourhood(self, task_id: str, depth: int | None = None) -> TaskGraph:
        """``task_id``, what it depends on and what depends on it, and the edges among them.

        Both directions are followed transitively, or up to ``depth`` edges away when
        given (0: the task alone). Tasks that merely share a dependency with ``task_id``
        are not in it. Raises `TaskNotFoundError` for an id that is not a node.
        """
        check_depth(depth)
        if all(node.task_id != task_id for node in self.nodes):
            raise TaskNotFoundError(f"task {task_id!r} is not in the task graph")
        dependencies: dict[str, list[str]] = {}
        dependents: dict[str, list[str]] = {}
        for dep, dependent in self.edges:
            dependencies.setdefault(dependent, []).append(dep)
            dependents.setdefault(dep, []).append(dependent)
        keep = {task_id}
        for step in (dependencies, dependents):
            distance = {task_id: 0}
            queue = deque([task_id])
            while queue:
                current = queue.popleft()
                if depth is not None and distance[current] >= depth:
                    continue
                for nxt in step.get(current, ()):
                    if nxt not in distance:
                        distance[nxt] = distance[current] + 1
                        queue.append(nxt)
            keep.update(distance)
        return self._subgraph(keep)

    def to_dot(self) -> str:
        """The graph in Graphviz DOT, left to right, each task filled by its status.

        Node ids are the task ids; each label is the task name over its status.
        """
        lines = [
            "digraph tasks {",
            "  rankdir=LR;",
            '  node [shape=box, style="rounded,filled"];',
        ]
        for node in self.nodes:
            label = _dot_label_text(node.name) + "\\n" + node.status.value
            colour = STATUS_COLOURS[node.status]
            lines.append(f'  {_dot_id(node.task_id)} [label="{label}", fillcolor="{colour}"];')
        for dep, dependent in self.edges:
            lines.append(f"  {_dot_id(dep)} -> {_dot_id(dependent)};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart, left to right, each task styled by status.

        Node ids are ``t0``, ``t1``, ... in node order (task ids may hold any character);
        each label is the task name over its status.
        """
        mermaid_id = {node.task_id: f"t{index}" for index, node in enumerate(self.nodes)}
        lines = ["flowchart LR"]
        for node in self.nodes:
            label = _mermaid_label_text(node.name) + "<br>" + node.status.value
            lines.append(f'    {mermaid_id[node.task_id]}["{label}"]')
        for dep, dependent in self.edges:
            lines.append(f"    {mermaid_id[dep]} --> {mermaid_id[dependent]}")
        for status in TaskStatus:
            lines.append(
                f"    classDef {status.value} fill:{STATUS_COLOURS[status]},"
                "stroke:#333333,color:#000000"
            )
        for status in TaskStatus:
            members = [mermaid_id[n.task_id] for n in self.nodes if n.status == status]
            if members:
                lines.append(f"    class {','.join(members)} {status.value}")
        return "\n".join(lines) + "\n"

    def render(self, path: str | os.PathLike[str], format: str | None = None) -> pathlib.Path:
        """Write the graph as an SVG or PNG image to ``path``; return ``path``.

        ``format`` is ``"svg"`` or ``"png"``; when None it comes from the file suffix.
        Runs Graphviz's ``dot`` on `to_dot`; the file is written only when ``dot``
        succeeds. Raises `InvalidTaskError` for another format, `GraphvizNotFoundError`
        when ``dot`` is not installed, `ActorsError` when ``dot`` fails or times out.
        """
        target = pathlib.Path(path)
        chosen = target.suffix.lstrip(".") if format is None else format
        if not isinstance(chosen, str) or chosen.lower() not in RENDER_FORMATS:
            source = "format" if format is not None else f"the suffix of {str(target)!r}"
            raise InvalidTaskError(
                f"cannot render a task graph as {chosen!r} (from {source}): "
                "use a .svg or .png path, or format='svg' or 'png'"
            )
        program = shutil.which("dot")
        if program is None:
            raise GraphvizNotFoundError(
                "cannot render the task graph: the Graphviz program 'dot' is not installed "
                "(not found on PATH); install Graphviz (e.g. 'apt-get install graphviz' or "
                "'brew install graphviz'), or use to_dot() or to_mermaid() instead"
            )
        command = [program, f"-T{chosen.lower()}"]
        try:
            result = subprocess.run(
                command,
                input=self.to_dot().encode("utf-8"),
                capture_output=True,
                timeout=RENDER_TIMEOUT_SECONDS,
                check=True,
            )
        except subprocess.CalledProcessError as exc:
            stderr = exc.stderr.decode("utf-8", "replace").strip()
            raise ActorsError(
                f"Graphviz 'dot' failed (exit status {exc.returncode}) rendering {str(target)!r}: "
                f"{stderr or '(no error output)'}"
            ) from None
        except subprocess.TimeoutExpired:
            raise ActorsError(
                f"Graphviz 'dot' did not finish rendering {str(target)!r} within "
                f"{RENDER_TIMEOUT_SECONDS}s"
            ) from None
        except OSError as exc:
            raise ActorsError(f"could not run Graphviz 'dot' ({program}): {exc}") from exc
        target.write_bytes(result.stdout)
        return target
