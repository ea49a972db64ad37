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
- OpenTelemetry trace context is not journaled (a recovered task starts a new trace).
"""

from __future__ import annotations

from types import FunctionType
from typing import TYPE_CHECKING, Any, cast

from actors.core import InvalidTaskError, JournalDecodeError, JournalEncodeError
from actors.journal import NOT_DURABLE, Codec, TaskRow, function_reference

if TYPE_CHECKING:
    from actors.core import Config
    from actors.engine import TaskSpec

__all__ = ["breaker_name", "codec_for", "definition_row", "durable_row", "same_definition"]

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
