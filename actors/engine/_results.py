"""Results that flow along dependencies: the `result_of` placeholder, found in a task's
arguments at registration and replaced by the dependency's result when the task starts.

Pure and cheap for the common case: scanning flat arguments with no placeholder costs
one type lookup per argument. Placeholders are found as arguments and keyword arguments
themselves and inside lists, tuples and dicts (those exact types, nested to any depth;
also dict values, not keys). A subclass (a named tuple, a defaultdict) or any other
object is passed as it is, unscanned: build the container after the task starts, or
pass the placeholder at the top.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.core import InvalidTaskError, safe_repr

__all__ = ["SCANNED", "ResultOf", "find_results", "result_of", "substitute"]


@dataclass(frozen=True, slots=True)
class ResultOf:
    """Stands for the result of task ``task_id`` in another task's arguments (see
    `result_of`)."""

    task_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.task_id, str) or not self.task_id:
            raise InvalidTaskError(
                f"ResultOf takes a task id (a non-empty str, as register_task returns), "
                f"got {safe_repr(self.task_id)}; result_of(task_id) builds one"
            )

    def __repr__(self) -> str:
        return f"result_of({safe_repr(self.task_id)})"


def result_of(task_id: str) -> ResultOf:
    """A placeholder for the result of task ``task_id``, to put in another task's
    ``args`` or ``kwargs`` (also inside lists, tuples and dicts).

    It makes ``task_id`` a dependency of that task (as if named in ``dependencies=``),
    and is replaced by ``task_id``'s result when the task starts: on its event loop, in
    a thread, a worker process or on Dask alike. With ``on_dependency_failure="run"``, a
    dependency that failed or was cancelled is replaced by its exception object instead
    (as ``asyncio.gather(..., return_exceptions=True)`` gives it).
    """
    if not isinstance(task_id, str) or not task_id:
        raise InvalidTaskError(
            f"result_of() takes a task id (a non-empty str, as register_task returns), "
            f"got {safe_repr(task_id)}"
        )
    return ResultOf(task_id)


_CONTAINERS = frozenset({list, tuple, dict})


def _scan(value: Any, found: dict[str, None]) -> None:
    kind = type(value)
    if kind is ResultOf:
        found[value.task_id] = None
    elif kind is dict:
        for item in value.values():
            if type(item) in SCANNED:
                _scan(item, found)
    elif kind in _CONTAINERS:
        for item in value:
            if type(item) in SCANNED:
                _scan(item, found)


SCANNED = frozenset({ResultOf, list, tuple, dict})
"""The types of the arguments that are (or may hold) a `result_of`: any other is passed
as it is, unscanned."""


def find_results(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    """The task ids of every placeholder in ``args`` and ``kwargs``, each once, in the
    order they appear (empty: the task takes no result)."""
    scanned = SCANNED
    for arg in args:  # the common case first: no argument that can hold one (no dict made)
        if type(arg) in scanned:
            break
    else:
        if not kwargs:
            return ()
        for arg in kwargs.values():
            if type(arg) in scanned:
                break
        else:
            return ()
    found: dict[str, None] = {}
    for arg in args:
        if type(arg) in scanned:
            _scan(arg, found)
    if kwargs:
        for arg in kwargs.values():
            if type(arg) in scanned:
                _scan(arg, found)
    return tuple(found)


def _filled(value: Any, values: Mapping[str, Any]) -> Any:
    """``value`` with its placeholders replaced; containers holding none are reused."""
    kind = type(value)
    if kind is ResultOf:
        return values[value.task_id]
    if kind is dict:
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            new = _filled(item, values) if type(item) in SCANNED else item
            changed = changed or new is not item
            out[key] = new
        return out if changed else value
    if kind is list or kind is tuple:
        items = [_filled(item, values) if type(item) in SCANNED else item for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if kind is list else tuple(items)
    return value


def substitute(
    args: tuple[Any, ...], kwargs: dict[str, Any], values: Mapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` with each placeholder replaced by ``values[task_id]``;
    only the containers that hold a placeholder are rebuilt."""
    new_args = _filled(args, values)
    new_kwargs = _filled(kwargs, values) if kwargs else kwargs
    return new_args, new_kwargs
