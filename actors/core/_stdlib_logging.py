"""actorflow's log lines through the standard `logging` module, and task context for it.

Loguru stays the engine. ``configure_logging(stdlib=True)`` adds one loguru sink that
takes the records of the ``actors`` and ``supervisors`` packages and hands each to
``logging.getLogger(<the module's name>)``: the application's handlers, formats and
levels then decide, as they do for pykka's lines. The loguru level number becomes the
`logging.LogRecord`'s (TRACE 5, DEBUG 10, INFO 20, SUCCESS 25, WARNING 30, ERROR 40,
CRITICAL 50; ``levelname`` is loguru's name), and the loguru record's bound values
(``task_id``, ``task_name``, ``task_type``, ``actor``...) become attributes of the
`LogRecord`, as ``extra=`` makes them.

Loguru's default handler (id 0, stderr) would print the same lines a second time: while
the sink is installed, that handler, if it is still there, is replaced by an identical
one that leaves out the two packages, and put back when the sink is removed. Handlers
the application added to loguru itself are left alone.

`TaskContextFilter` is for the application's own `logging` lines: attached to a handler
(or a logger), it sets ``task_id``, ``task_name`` and ``task_type`` on every record from
the task running in that thread or coroutine (None outside a task).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING

from loguru import logger

from actors.core._context import TASK_CONTEXT
from actors.core._util import renew_after_fork

if TYPE_CHECKING:
    from loguru import Message, Record

__all__ = ["TaskContextFilter", "install_stdlib_sink", "remove_stdlib_sink"]

PACKAGES = ("actors", "supervisors")
CONTEXT_FIELDS = ("task_id", "task_name", "task_type")

# Attributes a LogRecord has of its own: a bound value of the same name is not copied.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

_lock = threading.Lock()
renew_after_fork(globals(), "_lock", threading.Lock)
_sink_id: int | None = None
_stderr_id: int | None = 0
"""The id of loguru's default stderr handler as far as we know (None: it was removed)."""
_replaced = False
"""Whether `_stderr_id` is our filtered stand-in for the default handler."""


def _ours(record: Record) -> bool:
    name = record["name"] or ""
    return name.partition(".")[0] in PACKAGES


def _not_ours(record: Record) -> bool:
    name = record["name"] or ""
    return name.partition(".")[0] not in PACKAGES


def _forward(message: Message) -> None:
    """The loguru sink: one loguru record becomes one `logging.LogRecord`."""
    record = message.record
    target = logging.getLogger(record["name"] or "actors")
    level = record["level"]
    if not target.isEnabledFor(level.no):
        return
    exception = record["exception"]
    exc_info = None
    if exception is not None and exception.type is not None:
        exc_info = (exception.type, exception.value, exception.traceback)
    extra = {k: v for k, v in record["extra"].items() if k not in _RESERVED}
    log_record = target.makeRecord(
        target.name,
        level.no,
        record["file"].path,
        record["line"],
        record["message"],
        (),
        exc_info,  # type: ignore[arg-type]
        record["function"],
        extra,
    )
    log_record.levelname = level.name
    target.handle(log_record)


def install_stdlib_sink() -> None:
    """Add the forwarding sink once; take actorflow out of loguru's default handler."""
    global _sink_id, _stderr_id, _replaced
    with _lock:
        if _sink_id is not None:
            return
        if _stderr_id is not None and not _replaced:
            try:
                logger.remove(_stderr_id)
            except ValueError:  # the application removed it: nothing prints twice
                _stderr_id = None
            else:
                _stderr_id = logger.add(sys.stderr, filter=_not_ours)
                _replaced = True
        _sink_id = logger.add(_forward, level=0, format="{message}", filter=_ours, catch=True)


def remove_stdlib_sink() -> None:
    """Remove the sink (if installed) and give loguru's default handler back."""
    global _sink_id, _stderr_id, _replaced
    with _lock:
        if _sink_id is None:
            return
        sink_id, _sink_id = _sink_id, None
        logger.remove(sink_id)
        if _replaced and _stderr_id is not None:
            _replaced = False
            try:
                logger.remove(_stderr_id)
            except ValueError:  # the application removed our stand-in meanwhile
                _stderr_id = None
            else:
                _stderr_id = logger.add(sys.stderr)


class TaskContextFilter(logging.Filter):
    """Sets ``task_id``, ``task_name`` and ``task_type`` on each `logging.LogRecord`.

    ``handler.addFilter(actors.TaskContextFilter())``: records logged inside a task
    (a coroutine on its loop, or a plain function in a pool thread) carry the task's
    values, other records None, so a format string may name them. Values a record
    already has (actorflow's own lines bring theirs) are kept. Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        current = TASK_CONTEXT.get()
        if current is None:
            values: tuple[str | None, ...] = (None, None, None)
        else:
            values = (current.task_id, current.name or None, current.task_type or None)
        attrs = record.__dict__
        for field, value in zip(CONTEXT_FIELDS, values, strict=True):
            if attrs.get(field) is None:
                attrs[field] = value
        return True
