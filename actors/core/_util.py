"""Small helpers shared by the actors."""

from __future__ import annotations

import contextlib
import gc
import heapq
import math
import numbers
import operator
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from supervisors import safe_repr

if TYPE_CHECKING:
    import graphlib

    from supervisors import Clock, TimerHandle

__all__ = [
    "BULK",
    "MAX_SECONDS",
    "ClosedOnExit",
    "ReadOnly",
    "attribute_reader",
    "finite_float",
    "gc_paused",
    "renew_after_fork",
    "safe_repr",
    "shrink",
    "stable_order",
    "tell_later",
    "tell_quietly",
    "too_long",
]


def renew_after_fork(namespace: dict[str, Any], name: str, factory: Callable[[], object]) -> None:
    """In a forked child, ``namespace[name]`` (a module's lock, say: pass ``globals()``)
    becomes ``factory()``: a thread of the parent may have held the lock as it forked,
    and that thread does not run in the child (`os.register_at_fork`; POSIX only)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: namespace.__setitem__(name, factory()))


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


T = TypeVar("T")


class ReadOnly(Generic[T]):
    """A public read-only attribute kept in the private one of the same name:
    ``name = ReadOnly[str]()`` in a class body reads ``self._name`` (a property with no
    setter, written once)."""

    __slots__ = ("_private", "_public")

    def __set_name__(self, owner: type, name: str) -> None:
        self._public = name
        self._private = f"_{name}"

    @overload
    def __get__(self, instance: None, owner: type) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object, owner: type) -> T | Self:
        if instance is None:
            return self
        value: T = getattr(instance, self._private)
        return value

    def __set__(self, instance: object, value: T) -> None:
        raise AttributeError(f"attribute {self._public!r} is read-only")


def attribute_reader(names: Iterable[str], prefix: str = "") -> Callable[[object], dict[str, Any]]:
    """A function reading the attributes ``prefix + name`` of an object into a dict by
    ``name``: the keyword arguments of a snapshot whose fields have those names."""
    keys = tuple(names)
    if len(keys) < 2:
        raise ValueError(f"attribute_reader takes two names or more, got {keys!r}")
    read = operator.attrgetter(*(prefix + key for key in keys))
    return lambda obj: dict(zip(keys, read(obj), strict=True))


def finite_float(value: object) -> float | None:
    """The value as a finite float, or None if it is not a finite real number."""
    kind = type(value)
    if kind is float:  # the common case, without the ABC check
        return value if math.isfinite(value) else None  # type: ignore[arg-type,return-value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


MAX_SECONDS: float = float(min(10**9, int(threading.TIMEOUT_MAX) // 4))
"""The longest wait a setting or an argument that reaches a `threading` wait may ask for:
1e9 seconds (about 31 years), or a quarter of `threading.TIMEOUT_MAX` where that is less
(Windows). Past ``TIMEOUT_MAX`` a `threading.Event.wait`, `queue.Queue.get` or
`concurrent.futures.wait` raises `OverflowError`; the quarter leaves room for the sums a
blocking call waits (up to three ``CALL_TIMEOUT`` and a margin, or its ``timeout`` and
``CALL_TIMEOUT``)."""


def too_long(argument: str, value: object, scope: str = "") -> str:
    """The message refusing ``value`` of ``argument``, a wait longer than `MAX_SECONDS`
    (``scope``: what else the bound applies to, said after it)."""
    also = f", {scope}" if scope else ""
    return (
        f"{argument} must be at most {MAX_SECONDS:g} seconds{also} (a longer wait "
        f"overflows threading's timeouts), got {value!r}"
    )


BULK = 10_000
"""Objects made at once from which `gc_paused` turns the cyclic GC off."""


@contextlib.contextmanager
def gc_paused(objects: int | None = None) -> Iterator[None]:
    """Keep the cyclic GC off while many objects that hold no cycles are made at once
    (``objects`` of them: only from `BULK` on; None: however many). Each pass would
    rescan the heap growing with them: a third to a half of a recovery's time at
    100,000 tasks. Also a decorator: ``@gc_paused()``."""
    if (objects is not None and objects < BULK) or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
