"""What a durable task's registration journals: its definition, checked in the caller.

`definition_row` runs in `register_task`, on the caller's thread, before anything is
sent: a task that cannot be journaled is refused there with the codec's
`JournalEncodeError` (an `InvalidTaskError`) and nothing changes. The row it returns
travels with the registration; the manager fills in the task id and the state.

Decisions (see the README, "Durable tasks"):

- ``circuit_breaker`` is journaled by name: the restarted system shares the breaker of
  that name (created with the configured defaults, or the one the code adds again).
- ``retry_wait`` (a tenacity object) has no name to be found by after a restart: a
  durable task with one is refused; use ``retry_delay``, or ``durable=False``.
- OpenTelemetry trace context is not journaled: a recovered task's attempts are the
  roots of a new trace (`actors.observe.new_trace`), and so are a retry's of a task
  that failed before the restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import FunctionType, MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from actors.core import (
    InvalidTaskError,
    JournalDecodeError,
    JournalEncodeError,
    TaskNotFoundError,
    TaskPriority,
)
from actors.engine import TaskSpec, find_results, is_coroutine_callable
from actors.journal import NOT_DURABLE, Codec, TaskRow, function_reference, resolve_function
from actors.observe import new_trace

if TYPE_CHECKING:
    from actors.core import Config

__all__ = [
    "JournaledDefinition",
    "breaker_name",
    "codec_for",
    "definition_row",
    "durable_row",
    "journaled_results",
    "journaled_spec",
    "result_gone",
    "same_definition",
]

_CODECS: dict[str, Codec] = {}
_REFERENCES: dict[Any, str] = {}
"""Functions already checked by `function_reference` (by identity): a registration of
the same function again skips the import and the checks."""
_REFERENCES_KEPT = 1024


def codec_for(serializer: str) -> Codec:
    """The (stateless, shared) codec of ``serializer``."""
    codec = _CODECS.get(serializer)
    if codec is None:
        codec = _CODECS[serializer] = Codec(serializer)
    return codec


JOURNAL_INT_MAX = 2**63 - 1
"""The largest int an SQLite INTEGER column (the journal's ``max_retries``) holds."""


def definition_row(
    config: Config, spec: TaskSpec, durable: object, breaker: str | None
) -> tuple[Any, ...] | None:
    """The journal row of ``spec`` (state fields at their registration values), or None
    when the task lives in memory only: no ``JOURNAL_PATH``, or ``durable=False``.

    The row is the values of a `TaskRow` in a plain tuple: one of scalars, which the
    garbage collector stops tracking once it has seen it, while a burst of registrations
    waits in the mailboxes (a named tuple it traverses, 29 fields, at every collection).

    ``durable`` is None (the default: durable when the journal is on), True or False.
    ``breaker`` is the name of the task's circuit breaker, or None.
    Raises `InvalidTaskError` for a bad ``durable`` and `JournalEncodeError` for a task
    that cannot be journaled.
    """
    if durable is not None and not isinstance(durable, bool):
        raise InvalidTaskError(f"durable must be a bool or None, got {durable!r}")
    if config.JOURNAL_PATH is None:
        if durable:
            raise InvalidTaskError(
                "durable=True needs a journal: set JOURNAL_PATH (or leave durable unset)"
            )
        return None
    if durable is False:
        return None
    task = spec.task_id or spec.name
    if spec.retry_wait is not None:
        raise JournalEncodeError(
            f"task {task!r} cannot be durable: its retry_wait ({spec.retry_wait!r}) is an "
            f"object the journal cannot find again after a restart; use retry_delay"
            f"{NOT_DURABLE}"
        )
    if spec.max_retries > JOURNAL_INT_MAX:  # (sqlite3 raises OverflowError writing it)
        raise JournalEncodeError(
            f"task {task!r} cannot be durable: its max_retries ({spec.max_retries!r}) is above "
            f"{JOURNAL_INT_MAX} (2**63 - 1), the largest integer the journal stores{NOT_DURABLE}"
        )
    func = spec.func
    plain = isinstance(func, FunctionType)  # hashed by identity: safe to cache
    function = _REFERENCES.get(func) if plain else None
    if function is None:
        function = function_reference(func, task=task)
        if plain:
            if len(_REFERENCES) >= _REFERENCES_KEPT:
                _REFERENCES.clear()
            _REFERENCES[func] = function
    codec = codec_for(config.JOURNAL_SERIALIZER)
    args, kwargs = codec.encode_args(spec.args, spec.kwargs, task=task)
    metadata = spec.metadata
    encoded = (
        codec.empty
        if not metadata
        else codec.encode_value(dict(metadata), what="metadata", task=task)
    )
    # Positional, in `TaskRow` field order.
    return (
        "", spec.name, spec.task_type, function, args, kwargs, int(spec.priority),
        spec.dependencies, spec.max_retries, spec.retry_delay, spec.timeout,
        spec.executor, breaker, spec.description, encoded, spec.on_dependency_failure,
        None, "pending", 0.0, 0.0, False, 0, 0, None, None, None, None, None, None,
    )  # fmt: skip


_COMPARED: tuple[tuple[int, str], ...] = tuple(
    (index, {"function": "func"}.get(field, field))
    for index, field in enumerate(TaskRow._fields[: TaskRow._fields.index("backend")])
    if field != "task_id"
)
"""The definition's fields (index in `TaskRow`, `register_task`'s name for it): all of
them but the id and the task system, which the registration does not choose."""
_PAYLOADS = {"args": "arguments", "kwargs": "keyword arguments", "metadata": "metadata"}


def same_definition(journaled: tuple[Any, ...], row: tuple[Any, ...], codec: Codec) -> str | None:
    """None when ``row`` registers the same task as ``journaled``; else what differs:
    the first field (in `register_task`'s order) whose values differ, and both values.

    Dependencies added with ``add_dependency`` after the registration are journaled
    after the registered ones: ``row``'s dependencies may be a prefix of them.
    """
    for index, field in _COMPARED:
        old, new = journaled[index], row[index]
        if old == new:
            continue
        if field == "dependencies":
            old_deps, new_deps = cast("tuple[str, ...]", old), cast("tuple[str, ...]", new)
            if old_deps[: len(new_deps)] == new_deps:
                continue
        elif field in _PAYLOADS:  # equal values may encode differently (dict order)
            old, new = _shown(codec, old, field), _shown(codec, new, field)
            if old == new:
                continue
        return f"its {field} is {old!r}, this registration's is {new!r}"
    return None


def _shown(codec: Codec, payload: Any, field: str) -> Any:
    """A journaled payload as the value it holds (the payload itself if unreadable)."""
    try:
        value = codec.decode_value(payload, what=f"its {_PAYLOADS[field]}", task="")
    except JournalDecodeError:
        return payload
    return tuple(value) if field == "args" else value  # as given: a tuple


def breaker_name(breaker: Any) -> str | None:
    """The name of a spec's circuit breaker (a name or a `CircuitBreaker`), or None."""
    if breaker is None:
        return None
    if isinstance(breaker, str):
        return breaker
    name = getattr(breaker, "name", None)
    return name if isinstance(name, str) else None


def durable_row(
    config: Config, spec: TaskSpec, durable: object, breaker: Any
) -> tuple[Any, ...] | None:
    """`definition_row` for ``register_task`` under ``config`` (``breaker``: its argument)."""
    return definition_row(config, spec, durable, breaker_name(breaker))


def result_gone(task_id: str, results: Iterable[str], dependencies: Iterable[str]) -> None:
    """Raise `TaskNotFoundError` if failed ``task_id`` takes the result of a task that is
    no longer among its ``dependencies`` (cleaned up since: its edge went with it), so
    that a retry (`retry_task`) could not be fed that result."""
    kept = set(dependencies)
    for dep in results:
        if dep not in kept:
            msg = (
                f"task {task_id!r} cannot be retried: it takes the result of task "
                f"{dep!r}, which was cleaned up since (MAX_FINISHED_TASKS or "
                "cleanup_completed_tasks), so its result is gone; register the task "
                "again with the value"
            )
            raise TaskNotFoundError(msg)


_PRIORITIES: dict[int, TaskPriority] = {p.value: p for p in TaskPriority}
_new_spec = tuple.__new__
"""Makes a `TaskSpec` from its fields in order, without the keyword handling of its
``__new__`` (a 100,000-row recovery makes one per row; `validate_registration` does the
same)."""
_STATUS = TaskRow._fields.index("status")
_RESULT = TaskRow._fields.index("result")
_NOTE = TaskRow._fields.index("result_note")


def journaled_spec(
    row: TaskRow,
    func: Callable[..., Any],
    is_coroutine: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    metadata: dict[str, Any],
    dependencies: tuple[str, ...],
    results: tuple[str, ...],
    circuit_breaker: str | None,
    trace: Any = None,
) -> TaskSpec:
    """The registration ``row`` journaled, with what was decoded from it (``func`` and
    whether it is a coroutine function, ``args``, ``kwargs``, ``metadata`` and the
    ``results`` it takes) and what holds now (its ``dependencies`` and the name of the
    ``circuit_breaker`` it shares): recovery's registration of a journaled task and
    `JournaledDefinition.spec`'s. No ``retry_wait`` (a durable task has none). ``trace``:
    the OpenTelemetry context its attempts' spans start in (recovery's: a new trace)."""
    return _new_spec(
        TaskSpec,
        (
            row.task_id,
            row.name,
            func,
            args,
            kwargs,
            row.task_type,
            row.description,
            MappingProxyType(metadata),
            _PRIORITIES.get(row.priority, row.priority),
            dependencies,
            row.max_retries,
            row.retry_delay,
            None,  # retry_wait
            row.timeout,
            is_coroutine,
            circuit_breaker,
            row.executor,
            trace,
            results,
            row.on_dependency_failure,
        ),
    )


def journaled_results(
    rows: dict[str, tuple[Any, ...]], dependencies: Iterable[str]
) -> dict[str, tuple[Any, str | None]]:
    """The journaled result (payload, note) of each of ``dependencies`` that ``rows``
    (`DurableEngine.rows`) holds as completed: those that ended before the restart (a
    task that ended since has its registration's row, ``pending``)."""
    found = {}
    for dep in dependencies:
        row = rows.get(dep)
        if row is not None and row[_STATUS] == "completed":
            found[dep] = (row[_RESULT], row[_NOTE])
    return found


class JournaledDefinition(NamedTuple):
    """The definition of a durable task that failed before a restart, as the manager
    hands it to `retry_task`: its journal row, undecoded (recovery decodes no failed
    task's function nor arguments: a restart of 100,000 tasks does not pay for the
    few retried), and its dependencies now. `spec` decodes it, in the caller."""

    row: tuple[Any, ...]
    """The values of its `TaskRow` (`DurableEngine.rows`)."""
    dependencies: tuple[str, ...]
    """Its dependencies in the graph at the request (those cleaned up since are gone)."""
    journaled: dict[str, tuple[Any, str | None]]
    """Those of them that ended completed before the restart: their journaled result
    (payload, note), read only if the task takes that result (a result that did not
    serialize, or that the serializer cannot read now, was lost: recovery gave None)."""

    def spec(self, serializer: str) -> TaskSpec:
        """The registration the row journaled, with the current dependencies, read with
        the ``serializer`` configured now. Raises `JournalDecodeError` naming the task
        and why (its function no longer imports, a payload the serializer does not
        trust or cannot read) and `TaskNotFoundError` if it takes the result of a task
        cleaned up since; nothing changes either way. Its attempts' spans are the roots
        of a new trace, as a recovered task's are."""
        row = TaskRow._make(self.row)
        task_id = row.task_id
        codec = codec_for(serializer)
        func = resolve_function(row.function, task=task_id)
        args, kwargs = codec.decode_args(row.args, row.kwargs, task=task_id)
        metadata = codec.decode_value(row.metadata, what="its metadata", task=task_id)
        results = find_results(args, kwargs) if args or kwargs else ()
        result_gone(task_id, results, self.dependencies)
        for dep in results:
            kept = self.journaled.get(dep)
            if kept is None:
                continue
            payload, note = kept
            if payload is None:
                why = note or "no result"
            else:
                try:
                    codec.decode_value(payload, what="its result", task=dep)
                    continue
                except JournalDecodeError as exc:
                    why = str(exc)
            raise JournalDecodeError(
                f"task {task_id!r} cannot be retried: the result of its result_of({dep!r}) "
                f"is not in the journal ({why}); register the task again with the value"
            )
        return journaled_spec(
            row,
            func,
            is_coroutine_callable(func),
            args,
            kwargs,
            metadata,
            self.dependencies,
            results,
            row.circuit_breaker,
            new_trace(),  # (its registration's context was in a process that is gone)
        )
