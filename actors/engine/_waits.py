"""The wait-for relation of an engine: which running attempt's code waits for which task.

A task's code waits for a task (``wait_for_task``, ``execute_task(wait=True)``, the
task it submits, ``system.blocking``): the engine records one edge per such live wait,
from the waiting task to the task awaited, keyed by the wait's reply channel. An edge
goes when its wait ends: the task awaited ended (its waiters were answered), the wait
was withdrawn (timed out or cancelled: ``Unwait``), or the waiting attempt ended
(completed, failed, retried, timed out, cancelled, crashed: its waits end with it).

Together with the dependency graph it answers "does ``start`` end only after
``goal``?" (`WaitFor.path`): a task ends only after what its running code waits for,
and starts only after what it depends on. A wait, a submit or an ``add_dependency``
that would close a cycle of that relation is refused: no task in it could ever end.
Pure: no threads, no clock; owned by one engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain, pairwise
from typing import TYPE_CHECKING

from actors.engine._graph import DependencyGraph, shortest_path

if TYPE_CHECKING:
    from actors.core import ReplyTo

__all__ = ["WaitFor"]

WAITS = "waits for"
DEPENDS = "depends on"


class WaitFor:
    """The live waits of running attempts, both ways, keyed by their reply channels.

    Every operation costs O(the waits it touches); `path` costs about what the smaller
    of its two searches reaches.
    """

    __slots__ = ("into", "out")

    def __init__(self) -> None:
        self.out: dict[str, dict[ReplyTo, str]] = {}
        """Waiting task id -> its attempt's live waits: reply -> the task awaited (only
        tasks with one)."""
        self.into: dict[str, dict[ReplyTo, str]] = {}
        """Awaited task id -> the live waits for it: reply -> the waiting task (only
        tasks with one)."""

    def __repr__(self) -> str:
        return f"<WaitFor: {sum(len(w) for w in self.out.values())} waits>"

    def add(self, waiting: str, awaited: str, reply: ReplyTo) -> None:
        """``waiting``'s code waits for ``awaited``, answered through ``reply``."""
        self.out.setdefault(waiting, {})[reply] = awaited
        self.into.setdefault(awaited, {})[reply] = waiting

    def withdraw(self, awaited: str, reply: ReplyTo) -> None:
        """The wait of ``reply`` for ``awaited`` ended (unknown: nothing happens)."""
        waits = self.into.get(awaited)
        if waits is None:
            return
        waiting = waits.pop(reply, None)
        if waiting is None:
            return
        if not waits:
            del self.into[awaited]
        _drop(self.out, waiting, reply)

    def ended(self, awaited: str) -> None:
        """``awaited`` ended: every wait for it was answered."""
        for reply, waiting in self.into.pop(awaited, {}).items():
            _drop(self.out, waiting, reply)

    def stopped(self, waiting: str) -> None:
        """``waiting``'s attempt ended: so did its code's waits."""
        for reply, awaited in self.out.pop(waiting, {}).items():
            _drop(self.into, awaited, reply)

    def waits_for(self, waiting: str, awaited: str) -> bool:
        """Whether ``waiting``'s code waits for ``awaited`` now."""
        return awaited in self.out.get(waiting, {}).values()

    def path(
        self, graph: DependencyGraph, start: str, goal: str, through: Callable[[str], bool]
    ) -> list[str] | None:
        """The shortest path ``[start, ..., goal]`` along dependencies and waits (each
        task depends on, or its code waits for, the next) whose tasks between the two
        all pass ``through``, or None (as `DependencyGraph.dependency_path`, which it
        is when no task waits)."""
        if not self.out:
            return graph.dependency_path(start, goal, through)
        if start not in graph or goal not in graph or start == goal:
            return None
        # Searched from both ends (`shortest_path`): a chain of 4,000 waits costs a
        # new wait at its end nothing, and one that closes it one walk of the chain.
        # Only the side searched reads its edges (a parent waiting for 20,000 children
        # costs a wait for it by another task no walk of them).
        out, into = self.out, self.into
        deps, dependents = graph.direct_dependencies, graph.direct_dependents
        empty: dict[ReplyTo, str] = {}

        def down_of(node: str) -> Iterable[str]:
            waits = out.get(node, empty)
            return chain(deps(node), waits.values()) if waits else deps(node)

        def up_of(node: str) -> Iterable[str]:
            waits = into.get(node, empty)
            return chain(dependents(node), waits.values()) if waits else dependents(node)

        # (`direct_dependencies` and `direct_dependents` give a dict, or (): sized.)
        def down_count(node: str) -> int:
            return len(deps(node)) + len(out.get(node, empty))  # type: ignore[arg-type]

        def up_count(node: str) -> int:
            return len(dependents(node)) + len(into.get(node, empty))  # type: ignore[arg-type]

        return shortest_path(start, goal, down_of, up_of, down_count, up_count, through)

    def links(self, path: Iterable[str]) -> str:
        """``path`` in words: ``"a waits for b, b depends on c"``."""
        nodes = list(path)
        return ", ".join(
            f"{a} {WAITS if self.waits_for(a, b) else DEPENDS} {b}" for a, b in pairwise(nodes)
        )

    def through_waits(self, path: list[str]) -> bool:
        """Whether a step of ``path`` is a wait (else only dependencies link it)."""
        return any(self.waits_for(a, b) for a, b in pairwise(path))


def _drop(table: dict[str, dict[ReplyTo, str]], key: str, reply: ReplyTo) -> None:
    waits = table.get(key)
    if waits is not None and waits.pop(reply, None) is not None and not waits:
        del table[key]
