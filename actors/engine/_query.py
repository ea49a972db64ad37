"""Paged task queries and task details: what the dashboard asks the managers.

A page of the task table must not cost a `TaskInfo` per registered task. It takes two
calls: each manager counts its matches and sends the creation times of its first
``offset + limit`` (`page_keys`); the client works out which of each manager's
matches the page holds (`split_page`); each manager builds a light `TaskRow` for just
those (`page_rows`), and the client merges them (`merge_rows`). Tasks registered
between the two calls may shift a page by a row or two.

A walk through every page while tasks come and go goes by cursor, not by offset: a
page's `TaskPage.next` is where it ended, and ``PageQuery(after=that)`` gives the rows
after it, so tasks registered meanwhile (newer: before the cursor) or removed behind it
neither repeat nor skip a row of the walk. Pure: no actors, no threads, no clock reads.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Reversible, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from actors.core import InvalidTaskError, TaskInfo, TaskStatus, safe_repr
from actors.engine._record import AttemptFailure

if TYPE_CHECKING:
    from actors.engine._record import TaskRecord

__all__ = [
    "MAX_PAGE_SIZE",
    "PageCursor",
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

_RANK = {"new": 0, "old": 1}
"""The task systems in the order a page puts tasks created at the same time (the order
of the managers' answers: ``actors.runtime._facade.TASK_SYSTEMS``)."""


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Where a page ended: its last row's creation time, task system and id. ``str()``
    gives it as text (``<created_at>/<backend>/<task_id>``), `parse` takes it back."""

    created_at: float
    backend: str
    task_id: str

    def __post_init__(self) -> None:
        at = self.created_at
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise InvalidTaskError(
                f"a page cursor's created_at must be a finite number, got {safe_repr(at)}"
            )
        if self.backend not in _RANK:
            msg = f"a page cursor's backend must be 'new' or 'old', got {safe_repr(self.backend)}"
            raise InvalidTaskError(msg)
        if not isinstance(self.task_id, str) or not self.task_id:
            raise InvalidTaskError(
                f"a page cursor's task_id must be a non-empty str, got {safe_repr(self.task_id)}"
            )

    def __str__(self) -> str:
        return f"{self.created_at!r}/{self.backend}/{self.task_id}"

    @classmethod
    def parse(cls, text: str) -> PageCursor:
        """The cursor ``str(cursor)`` gave; `InvalidTaskError` naming ``text`` if it is not one."""
        at, _, rest = text.partition("/")
        backend, _, task_id = rest.partition("/")
        try:
            return cls(float(at), backend, task_id)
        except (ValueError, InvalidTaskError):
            msg = (
                "after must be a page's next cursor (<created_at>/<new|old>/<task_id>), "
                f"got {safe_repr(text)}"
            )
            raise InvalidTaskError(msg) from None


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
    after: PageCursor | str | None = None
    """Only the rows after this cursor (a previous page's `TaskPage.next`, or its
    ``str()``: stored as the `PageCursor`); ``offset`` counts from there."""

    def __post_init__(self) -> None:
        for name, what in (("offset", ">= 0"), ("limit", f"between 1 and {MAX_PAGE_SIZE}")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidTaskError(f"{name} must be an int {what}, got {safe_repr(value)}")
        if not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise InvalidTaskError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {self.limit}")
        if self.status is not None and not isinstance(self.status, TaskStatus):
            try:
                object.__setattr__(self, "status", TaskStatus(self.status))
            except ValueError:
                known = ", ".join(s.value for s in TaskStatus)
                msg = f"status must be one of {known}; got {safe_repr(self.status)}"
                raise InvalidTaskError(msg) from None
        for name in ("task_type", "search"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidTaskError(
                    f"{name} must be a non-empty str or None, got {safe_repr(value)}"
                )
        if self.search is not None:
            object.__setattr__(self, "search", self.search.casefold())
        after: object = self.after
        if isinstance(after, str):
            object.__setattr__(self, "after", PageCursor.parse(after))
        elif after is not None and not isinstance(after, PageCursor):
            msg = (
                "after must be a PageCursor (a page's next), its str, or None, "
                f"got {safe_repr(after)}"
            )
            raise InvalidTaskError(msg)


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

    @property
    def next(self) -> PageCursor | None:
        """Where the next page starts (``get_task_page(after=page.next)``); None when
        this page is not full (nothing came after it)."""
        if len(self.rows) < self.limit:
            return None
        last = self.rows[-1]
        return PageCursor(last.created_at, last.backend, last.task_id)


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


def _matches(
    records: Reversible[TaskRecord], query: PageQuery, backend: str, cursor: bool = True
) -> Iterator[TaskRecord]:
    """The records (of task system ``backend``) that match ``query``, newest first; with
    ``cursor`` False, before its cursor too."""
    status, task_type, search = query.status, query.task_type, query.search
    newest_first: Iterator[TaskRecord] = reversed(records)
    after = query.after
    if cursor and after is not None:  # (a `PageCursor`: `PageQuery` parsed a str)
        newest_first = _after(newest_first, cast(PageCursor, after), _RANK[backend])
    for r in newest_first:
        if status is not None and r.status is not status:
            continue
        if task_type is not None and r.task_type != task_type:
            continue
        if search is not None and search not in r.name.casefold() and search not in r.task_id:
            continue
        yield r


def _after(records: Iterator[TaskRecord], cursor: PageCursor, rank: int) -> Iterator[TaskRecord]:
    """``records`` (newest first, of the task system ranked ``rank``) that a page puts
    after ``cursor``. (Among tasks of one system created at the very time of a cursor
    whose task is gone, none is: on a real clock, two tasks of one system never are.)"""
    at, cursor_rank, task_id = cursor.created_at, _RANK[cursor.backend], cursor.task_id
    passed = False
    for r in records:
        created = r.created_at
        if created > at:
            continue
        if created == at and not passed:
            if rank < cursor_rank:
                continue
            if rank == cursor_rank:
                passed = r.task_id == task_id
                continue
        yield r


def page_keys(
    records: Reversible[TaskRecord], query: PageQuery, backend: str
) -> tuple[int, list[float]]:
    """A manager's first step of a page: how many of its ``records`` (oldest first)
    match (the cursor aside), and the creation times of the first ``offset + limit``
    matches (after the cursor)."""
    want = query.offset + query.limit
    if query.after is not None:
        total = sum(1 for _ in _matches(records, query, backend, cursor=False))
        keys = [r.created_at for r in itertools.islice(_matches(records, query, backend), want)]
        return total, keys
    total = 0
    keys = []
    for r in _matches(records, query, backend):
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
        for r in itertools.islice(_matches(records, query, backend), start, stop)
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
