"""Paged task queries and task details: what the dashboard asks the managers.

A page of the task table must not cost a `TaskInfo` per registered task. It takes two
calls: each manager counts its matches and sends the creation times of its first
``offset + limit`` (`page_keys`); the client works out which of each manager's
matches the page holds (`split_page`); each manager builds a light `TaskRow` for just
those (`page_rows`), and the client merges them (`merge_rows`). Tasks registered
between the two calls may shift a page by a row or two. Pure: no actors, no threads,
no clock reads.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Reversible, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.core import InvalidTaskError, TaskInfo, TaskStatus
from actors.engine._record import AttemptFailure

if TYPE_CHECKING:
    from actors.engine._record import TaskRecord

__all__ = [
    "MAX_PAGE_SIZE",
    "PageQuery",
    "TaskDetail",
    "TaskPage",
    "TaskRow",
    "merge_rows",
    "page_keys",
    "page_rows",
    "split_page",
]

MAX_PAGE_SIZE = 500
"""The most rows one page query returns."""


@dataclass(frozen=True, slots=True)
class PageQuery:
    """Which rows of the task table: filters, then ``limit`` rows from ``offset``,
    newest first. ``search`` matches a case-insensitive part of the name or the id."""

    offset: int = 0
    limit: int = 50
    status: TaskStatus | str | None = None
    """A `TaskStatus` or its value (stored as the `TaskStatus`)."""
    task_type: str | None = None
    search: str | None = None

    def __post_init__(self) -> None:
        for name, what in (("offset", ">= 0"), ("limit", f"between 1 and {MAX_PAGE_SIZE}")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidTaskError(f"{name} must be an int {what}, got {value!r}")
        if not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise InvalidTaskError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {self.limit}")
        if self.status is not None and not isinstance(self.status, TaskStatus):
            try:
                object.__setattr__(self, "status", TaskStatus(self.status))
            except ValueError:
                known = ", ".join(s.value for s in TaskStatus)
                msg = f"status must be one of {known}; got {self.status!r}"
                raise InvalidTaskError(msg) from None
        for name in ("task_type", "search"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidTaskError(f"{name} must be a non-empty str or None, got {value!r}")
        if self.search is not None:
            object.__setattr__(self, "search", self.search.casefold())


@dataclass(frozen=True, slots=True)
class TaskRow:
    """What the task table shows of one task."""

    task_id: str
    name: str
    status: TaskStatus
    task_type: str
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    backend: str
    dependencies: tuple[str, ...] = ()
    """The ids it depends on directly (the graph page draws these edges)."""

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page: ``total`` tasks match the query; ``rows`` are those at ``offset``..."""

    total: int
    rows: tuple[TaskRow, ...]
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class TaskDetail:
    """Everything the task page shows of one task.

    ``func``, ``args`` and ``kwargs`` are the task's own objects while it is live, and
    kept after it failed (so it can be retried); None once a task completed or was
    cancelled (a finished task does not hold on to its arguments). ``failures`` are the
    latest failed attempts, oldest first (at most `MAX_FAILURES_KEPT`).
    """

    info: TaskInfo
    dependents: tuple[str, ...]
    failures: tuple[AttemptFailure, ...]
    func: Any
    args: tuple[Any, ...] | None
    kwargs: Mapping[str, Any] | None
    retryable: bool


def _matches(records: Reversible[TaskRecord], query: PageQuery) -> Iterator[TaskRecord]:
    """The records that match ``query``, newest first."""
    status, task_type, search = query.status, query.task_type, query.search
    for r in reversed(records):
        if status is not None and r.status is not status:
            continue
        if task_type is not None and r.task_type != task_type:
            continue
        if search is not None and search not in r.name.casefold() and search not in r.task_id:
            continue
        yield r


def page_keys(records: Reversible[TaskRecord], query: PageQuery) -> tuple[int, list[float]]:
    """A manager's first step of a page: how many of its ``records`` (oldest first)
    match, and the creation times of the first ``offset + limit`` matches."""
    want = query.offset + query.limit
    total = 0
    keys: list[float] = []
    for r in _matches(records, query):
        total += 1
        if total <= want:
            keys.append(r.created_at)
    return total, keys


def page_rows(
    records: Reversible[TaskRecord],
    query: PageQuery,
    start: int,
    stop: int,
    backend: str,
    dependencies: Callable[[str], Iterable[str]],
) -> list[TaskRow]:
    """A manager's second step: the rows of its matches ``start`` to ``stop``, each with
    its direct ``dependencies`` (by task id)."""
    return [
        TaskRow(
            r.task_id,
            r.name,
            r.status,
            r.task_type,
            r.attempts,
            r.created_at,
            r.started_at,
            r.finished_at,
            backend,
            tuple(dependencies(r.task_id)),
        )
        for r in itertools.islice(_matches(records, query), start, stop)
    ]


def split_page(query: PageQuery, keys: Sequence[list[float]]) -> list[tuple[int, int]]:
    """Which of each manager's matches (``keys``: creation times, newest first) make up
    the page: a ``(start, stop)`` per manager. Ties go to the earlier manager."""
    merged = heapq.merge(*(_tagged(part, index) for index, part in enumerate(keys)))
    cuts = [[0, 0] for _ in keys]
    for position, (_, index) in enumerate(merged):
        if position >= query.offset + query.limit:
            break
        cut = cuts[index]
        if position < query.offset:
            cut[0] += 1
        cut[1] += 1
    return [(start, stop) for start, stop in cuts]


def _tagged(keys: list[float], index: int) -> Iterator[tuple[float, int]]:
    for at in keys:
        yield -at, index


def merge_rows(query: PageQuery, total: int, parts: Sequence[list[TaskRow]]) -> TaskPage:
    """The page from each manager's rows (each newest first)."""
    rows = heapq.merge(*parts, key=lambda row: -row.created_at)
    return TaskPage(total, tuple(itertools.islice(rows, query.limit)), query.offset, query.limit)
