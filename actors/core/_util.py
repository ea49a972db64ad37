"""Small helpers shared by the actors."""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import graphlib

    from supervisors import Clock, TimerHandle

__all__ = ["ClosedOnExit", "shrink", "stable_order", "tell_later", "tell_quietly"]


class ClosedOnExit:
    """A base class: ``with thing:`` closes it on the way out (`contextlib.closing` as a
    base class, so the object itself is the context manager)."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def tell_quietly(handle: Any, message: Any) -> None:
    """Tell ``message`` to ``handle``; if the system has stopped, nobody is left to tell."""
    with contextlib.suppress(Exception):
        handle.tell(message)


def tell_later(clock: Clock, delay: float, handle: Any, message: Any) -> TimerHandle:
    """Tell ``message`` to ``handle`` once ``delay`` seconds have passed on ``clock``.

    Timers send to stable handles, so they reach the next incarnation of a crashed actor.
    """
    return clock.call_later(delay, lambda: tell_quietly(handle, message))


def shrink(mapping: dict[Any, Any]) -> None:
    """Give back a dict's table after mass deletion (CPython dicts never shrink by
    themselves): rebuild it in place, so every holder of the dict sees the change."""
    items = list(mapping.items())
    mapping.clear()
    mapping.update(items)


def stable_order(sorter: graphlib.TopologicalSorter[str], rank: Mapping[str, int]) -> list[str]:
    """Drain a prepared ``sorter``: each node after its predecessors and, among the nodes
    free to go, the lowest ``rank`` first (so the order is the same for the same graph)."""
    ready = [(rank[node], node) for node in sorter.get_ready()]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        sorter.done(node)
        for nxt in sorter.get_ready():
            heapq.heappush(ready, (rank[nxt], nxt))
    return order
