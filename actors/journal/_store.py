"""The journal file: SQLite in WAL mode, written in batches of one transaction each.

`JournalStore` is a plain object (no thread, no actor); the journal actor owns one. Its
calls are serialized by a lock, so it may be handed from thread to thread. Every error
it raises is a `JournalError` naming the file and the cause: `JournalFullError` (the
disk or the process's file size limit is full), `JournalLockedError` (another store,
in this process or another, has the file open, or another connection holds it), and
`JournalFormatError` (not a journal, or a newer one); the rest are `JournalStoreError`
(a read-only file or directory, a file deleted or replaced while open...). A failed
`write` is rolled back whole: what had been committed is intact.

One store at a time has a file open: it holds an exclusive ``flock`` on
``<path>.lock`` (which records its pid) until `close`, so a second system started
on the same ``JOURNAL_PATH`` is refused instead of running the same tasks again.

A forked child inherits an open store, but the file stays the parent's: in the child
(`_after_fork_in_child`) the store lets go of its copy of the lock's descriptor (a
flock lasts until the last copy is closed: the child's would have held it after the
parent closed its own) and never touches the SQLite connection again (SQLite forbids
using one across a fork); `write` and `load` raise `JournalStoreError` there.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import operator
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger

from actors.core import (
    ClosedOnExit,
    InvalidTaskError,
    JournalError,
    JournalFormatError,
    JournalFullError,
    JournalLockedError,
    JournalStoreError,
    gc_paused,
)
from actors.journal._records import Deletion, Record, StatusChange, TaskRow

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock file
    fcntl = None  # type: ignore[assignment]
try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None  # type: ignore[assignment]

__all__ = ["SCHEMA_VERSION", "SYNC_MODES", "JournalStore"]

_log = logger.bind(actor="journal")

SCHEMA_VERSION = 2
"""The version of the tables this code reads and writes. Version 1 (no ``backend``
column) is migrated when opened."""

SYNC_MODES: tuple[str, ...] = ("normal", "full")
"""The values ``JOURNAL_SYNC`` accepts: survive a crash of the process / a power loss."""

_APPLICATION_ID = 0x41664A31  # "AfJ1": marks the file as an actorflow journal

_COLUMNS = (
    "id", "name", "task_type", "function", "args", "kwargs", "priority", "dependencies",
    "max_retries", "retry_delay", "timeout", "executor", "circuit_breaker", "description",
    "metadata", "on_dependency_failure", "backend", "status", "created_at", "updated_at",
    "executed", "attempts", "recoveries", "result", "result_note", "error_type",
    "error_message", "started_at", "finished_at",
)  # fmt: skip
"""In `TaskRow` field order: a row loads with ``TaskRow(*row)``."""

_STATE = (
    "status", "updated_at", "executed", "attempts", "recoveries", "result", "result_note",
    "error_type", "error_message", "started_at", "finished_at",
)  # fmt: skip
assert StatusChange._fields[1:] == _STATE

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version SELECT {SCHEMA_VERSION}
    WHERE NOT EXISTS (SELECT * FROM schema_version);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    task_type TEXT NOT NULL,
    function TEXT NOT NULL,
    args BLOB NOT NULL,
    kwargs BLOB NOT NULL,
    priority INTEGER NOT NULL,
    dependencies TEXT NOT NULL,
    max_retries INTEGER NOT NULL,
    retry_delay REAL NOT NULL,
    timeout REAL,
    executor TEXT,
    circuit_breaker TEXT,
    description TEXT NOT NULL,
    metadata BLOB NOT NULL,
    on_dependency_failure TEXT NOT NULL,
    backend TEXT,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    executed INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    recoveries INTEGER NOT NULL,
    result BLOB,
    result_note TEXT,
    error_type TEXT,
    error_message TEXT,
    started_at REAL,
    finished_at REAL
);
PRAGMA application_id = {_APPLICATION_ID};
"""
# IF NOT EXISTS: two processes may create the same new file at once.
# BLOB columns have no type affinity: a JSON payload stays TEXT, a pickle stays BLOB.

_UPSERT = (
    f"INSERT INTO tasks ({', '.join(_COLUMNS)}) VALUES {{values}} "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS[1:])
)
_FRESH_STATE = {"status": "'pending'", "executed": "0", "attempts": "0", "recoveries": "0"}
"""A just-registered task's state, as literals (the rest is NULL)."""
_FRESH_ROW = ("id", "name", "args", "dependencies", "created_at", "updated_at")
"""A fresh row's own values; the rest of its definition is often the same for a run
of rows (one function, its options), bound once per statement."""
_FRESH_SHARED = tuple(c for c in _COLUMNS[: _COLUMNS.index("status")] if c not in _FRESH_ROW)
_FRESH_LITERAL = tuple(c for c in _COLUMNS if c not in _FRESH_ROW and c not in _FRESH_SHARED)
_UPSERT_FRESH = (
    f"INSERT INTO tasks ({', '.join((*_FRESH_ROW, *_FRESH_SHARED, *_FRESH_LITERAL))}) SELECT "
    + ", ".join(
        [f"column{number}" for number in range(1, len(_FRESH_ROW) + 1)]
        + ["?"] * len(_FRESH_SHARED)
        + [_FRESH_STATE.get(column, "NULL") for column in _FRESH_LITERAL]
    )
    + " FROM (VALUES {values}) WHERE true ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS[1:])
)
# The shared parameters come first: SQLite numbers them in the order they appear.
# ``WHERE true``: SQLite's parser needs it between a SELECT and ON CONFLICT.
_UPDATE = (
    "UPDATE tasks SET "
    + ", ".join(
        f"executed = executed OR c.column{number}"
        if column == "executed"
        else f"{column} = c.column{number}"
        for number, column in enumerate(_STATE, start=2)
    )
    + " FROM (VALUES {values}) AS c WHERE tasks.id = c.column1"
)
_DELETE = "DELETE FROM tasks WHERE id IN (VALUES {values})"
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM tasks ORDER BY rowid"


_DEPENDENCIES = _COLUMNS.index("dependencies")


_dumps = json.dumps


class _Fresh:
    """The kind of a `TaskRow` of a task just registered (pending, never executed, no
    attempt, result or error: most rows): its statement binds the definition and the
    two times, and writes the state as literals."""


_STATEMENTS: dict[Any, tuple[str, int]] = {
    TaskRow: (_UPSERT, len(_COLUMNS)),
    StatusChange: (_UPDATE, len(StatusChange._fields)),
    _Fresh: (_UPSERT_FRESH, len(_FRESH_ROW)),
    Deletion: (_DELETE, 1),
}
"""Each kind of record: its statement (``{values}``: one row of parameters per record)
and the number of parameters of one record."""

_STEP = 32
_WIDEST = 256
"""Records per statement: a run of up to `_STEP` records is one statement of its exact
size; a longer one, statements of a multiple of `_STEP` records (at most `_WIDEST`) and
one for the rest. So a run of n records takes at most ceil(n / _WIDEST) + 1 statements,
from 39 sizes per kind of record: few enough for SQLite's statement cache
(`_CACHED_STATEMENTS`) to keep every one in use."""
_CACHED_STATEMENTS = 512

_SQL: dict[tuple[Any, int], str] = {}


def _sql(kind: Any, size: int) -> str:
    """The statement that writes ``size`` records of ``kind``."""
    sql = _SQL.get((kind, size))
    if sql is None:
        statement, width = _STATEMENTS[kind]
        one = f"({', '.join('?' * width)})"
        sql = _SQL[kind, size] = statement.format(values=", ".join([one] * size))
    return sql


Plan = list[tuple[str, list[Any]]]
"""The statements that write a batch, each with its parameters, in order."""


def _write_run(plan: Plan, kind: type, run: list[Any]) -> None:
    """Plan the writing of ``run``, records of ``kind`` in order, in as few statements as
    `_STEP` and `_WIDEST` allow.

    One statement writes many records: SQLite does the work of all of them with the GIL
    released once, not once per record as ``executemany`` would. Per statement, the
    journal thread then waits for the GIL again while the other threads run (most of a
    flush's time under load), and every acknowledgement waits with it.
    """
    if kind is TaskRow:
        # In order (a row's place is its place in load order): runs of fresh rows that
        # share the rest of their definition, and of others, each in as few
        # statements as it takes. Dependencies are written as a JSON list.
        d = _DEPENDENCIES
        for shared, rows in itertools.groupby(run, _fresh_shared):
            if shared is None:
                params = [
                    (*row[:d], _dumps(row[d]) if row[d] else "[]", *row[d + 1 :]) for row in rows
                ]
                _write_chunks(plan, TaskRow, params)
            else:
                params = [
                    (task_id, name, args, _dumps(deps) if deps else "[]", created, updated)
                    for task_id, name, args, deps, created, updated in map(_fresh_row, rows)
                ]
                _write_chunks(plan, _Fresh, params, shared)
        return
    if kind is StatusChange:
        if len({change[0] for change in run}) != len(run):
            # Two changes of one task: ``UPDATE ... FROM`` would apply only one of them.
            plan += [(_sql(kind, 1), list(change)) for change in run]
            return
        # One change per task: the order between tasks does not matter. Changes are
        # grouped by which of their optional fields are None (most: queued, running,
        # completed), each group written with NULL literals for those: binding a
        # parameter costs SQLite more than the rest of the update.
        groups: dict[tuple[bool, ...], list[Any]] = {}
        for change in run:
            a, b, c, d, e, f = change[_OPTIONAL:]
            nulls = (a is None, b is None, c is None, d is None, e is None, f is None)
            group = groups.get(nulls)
            if group is None:
                group = groups[nulls] = []
            group.append(change)
        for key, changes in groups.items():
            if not any(key):
                _write_chunks(plan, StatusChange, changes)
                continue
            bound = _bound_of(key)  # the fields of each change that are bound
            _write_chunks(plan, _change_statement(key), list(map(bound, changes)))
        return
    _write_chunks(plan, kind, run)


_OPTIONAL = StatusChange._fields.index("result")
"""`StatusChange`'s fields from here on may be None."""


@functools.cache
def _bound_of(nulls: tuple[bool, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """What a change with the optional fields ``nulls`` binds: its fields up to
    `_OPTIONAL`, then the optional ones not None (a C-level getter)."""
    keep = [index for index, null in enumerate(nulls, _OPTIONAL) if not null]
    return operator.itemgetter(*range(_OPTIONAL), *keep)


def _change_statement(nulls: tuple[bool, ...]) -> tuple[str, tuple[bool, ...]]:
    """The key in `_STATEMENTS` of an update that sets the optional fields marked in
    ``nulls`` to NULL literals (registered on first use)."""
    key = ("change", nulls)
    if key not in _STATEMENTS:
        bound = [
            column
            for column, null in zip(_STATE, (False,) * (_OPTIONAL - 1) + nulls, strict=True)
            if not null
        ]
        sets = [
            f"executed = executed OR c.column{number}"
            if column == "executed"
            else f"{column} = c.column{number}"
            for number, column in enumerate(bound, start=2)
        ] + [
            f"{column} = NULL"
            for column, null in zip(_STATE[_OPTIONAL - 1 :], nulls, strict=True)
            if null
        ]
        _STATEMENTS[key] = (
            f"UPDATE tasks SET {', '.join(sets)} FROM (VALUES {{values}}) AS c "
            "WHERE tasks.id = c.column1",
            1 + len(bound),
        )
    return key


_FRESH_TAIL = (False, 0, 0, None, None, None, None, None, None)
"""A just-registered task's state after its status and two times: not executed, no
attempt, recovery, result, error or start and end times."""


_STATUS_AT = _COLUMNS.index("status")
_fresh_row = operator.itemgetter(*map(_COLUMNS.index, _FRESH_ROW))
_shared_of = operator.itemgetter(*map(_COLUMNS.index, _FRESH_SHARED))


def _fresh_shared(params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The values a fresh row shares with others (see `_UPSERT_FRESH`); None for a row
    that is not fresh (its state is not a just-registered task's)."""
    s = _STATUS_AT
    if params[s] == "pending" and params[s + 3 :] == _FRESH_TAIL:
        shared: tuple[Any, ...] = _shared_of(params)
        return shared
    return None


def _write_chunks(plan: Plan, kind: Any, run: list[Any], shared: tuple[Any, ...] = ()) -> None:
    """Plan ``run`` (parameters of records of ``kind``) in statements of the sizes
    `_STEP` and `_WIDEST` allow; ``shared``: parameters bound once per statement, before
    the records'."""
    start, end = 0, len(run)
    while start < end:
        left = end - start
        size = left if left <= _STEP else min(left - left % _STEP, _WIDEST)
        chunk = run[start : start + size]
        start += size
        plan.append((_sql(kind, size), [*shared, *_flat(chunk)]))


_flat = itertools.chain.from_iterable
_EXECUTED = _COLUMNS.index("executed")


def _load_row(row: tuple[Any, ...]) -> TaskRow:
    values = list(row)
    dependencies = values[_DEPENDENCIES]
    values[_DEPENDENCIES] = () if dependencies == "[]" else tuple(json.loads(dependencies))
    values[_EXECUTED] = values[_EXECUTED] == 1
    return TaskRow._make(values)


class JournalStore(ClosedOnExit):
    """One journal file, opened (and created, with its tables) by the constructor.

    ``sync`` is one of `SYNC_MODES`: ``"normal"`` (a commit survives a crash of the
    process) or ``"full"`` (it survives a power loss too, at a cost per commit).
    ``busy_timeout`` is how long, in seconds, a call waits for a file another connection
    has locked before raising `JournalLockedError`.
    """

    __slots__ = (
        "__weakref__",
        "_busy",
        "_connection",
        "_forked",
        "_identity",
        "_lock",
        "_lock_fd",
        "_pid",
        "path",
        "sync",
    )

    def __init__(
        self, path: str | os.PathLike[str], *, sync: str = "normal", busy_timeout: float = 5.0
    ) -> None:
        if (
            not isinstance(path, (str, os.PathLike))
            or not os.fspath(path)
            or "\x00" in os.fspath(path)
        ):
            raise InvalidTaskError(
                f"journal path must be a non-empty str or path with no NUL character, got {path!r}"
            )
        if sync not in SYNC_MODES:
            raise InvalidTaskError(
                f"journal sync must be one of {', '.join(map(repr, SYNC_MODES))}, got {sync!r}"
            )
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)):
            raise InvalidTaskError(f"busy_timeout must be a number >= 0, got {busy_timeout!r}")
        if not busy_timeout >= 0:
            raise InvalidTaskError(f"busy_timeout must be a number >= 0, got {busy_timeout!r}")
        self.path: str = os.fspath(path)
        self.sync = sync
        self._busy = busy_timeout
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._forked = False
        self._lock_fd = _take_lock(self.path)
        with _stores_lock:
            _open_stores.add(self)
        with self._lock:  # a fork waits until SQLite is done (`_before_fork`)
            try:
                self._connection = self._connect()
                try:
                    self._open()
                    self._identity = _identity(self.path)
                except BaseException:
                    self._connection.close()
                    raise
            except BaseException:
                _release(self._lock_fd)
                with _stores_lock:
                    _open_stores.discard(self)
                raise

    def _connect(self) -> sqlite3.Connection:
        try:
            return sqlite3.connect(
                self.path,
                timeout=self._busy,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=_CACHED_STATEMENTS,
            )
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc

    def _reopen(self) -> None:
        """The ``-wal`` file was deleted under the open connection, which goes on
        writing into its unlinked copy (a crash would lose every commit since the last
        checkpoint): close it, which checkpoints that copy into the database file, and
        open the file again, with a new ``-wal``."""
        _log.warning(
            "the journal's {!r} was deleted while the system ran: its commits are moved "
            "into {!r} and the file opened again",
            f"{self.path}-wal",
            self.path,
        )
        try:
            self._connection.close()
        except sqlite3.Error as exc:
            raise self._error("write", exc) from exc
        self._connection = self._connect()
        self._open()

    def _error(self, action: str, exc: BaseException) -> JournalError:
        """``exc`` as the specific `JournalError` naming the file and the cause."""
        code = getattr(exc, "sqlite_errorcode", -1) & 0xFF
        cause = f"{type(exc).__name__}: {exc}"
        where = f"cannot {action} journal {self.path!r}"
        if code == sqlite3.SQLITE_FULL:
            return JournalFullError(
                f"{where}: the disk is full ({cause}); free space or move JOURNAL_PATH"
            )
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return JournalLockedError(
                f"{where}: another connection holds the file ({cause}); give each system "
                "its own JOURNAL_PATH"
            )
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            return JournalFormatError(f"{where}: it is not an SQLite database or is damaged "
                                      f"({cause})")  # fmt: skip
        name = getattr(exc, "sqlite_errorname", None)
        if code == sqlite3.SQLITE_READONLY:
            return JournalStoreError(
                f"{where}: the file or its directory is read-only for this process "
                f"({cause}, {name}); make both writable by this user or move JOURNAL_PATH"
            )
        if code == sqlite3.SQLITE_CANTOPEN and os.path.isdir(self.path):
            return JournalStoreError(f"{where}: it is a directory ({cause}); "
                                     "JOURNAL_PATH names the file")  # fmt: skip
        if code == sqlite3.SQLITE_IOERR:
            # SQLite reports ENOSPC as SQLITE_FULL, any other failed write (EFBIG past
            # RLIMIT_FSIZE, EIO, EROFS...) as an I/O error without the errno: look.
            full = _out_of_space(self.path)
            if full is not None:
                return JournalFullError(f"{where}: {full} ({cause}, {name}); free space, "
                                        "raise the limit or move JOURNAL_PATH")  # fmt: skip
            return JournalStoreError(f"{where}: the operating system refused it ({cause}, {name})")
        return JournalStoreError(f"{where}: {cause}")

    def _open(self) -> None:
        connection = self._connection
        try:
            # Read first: a file that is not a journal is left as it was (WAL mode
            # would change its header for good).
            tables = {
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
            if tables and ("schema_version" not in tables or "tasks" not in tables):
                raise JournalFormatError(
                    f"cannot open journal {self.path!r}: it is an SQLite database but not an "
                    f"actorflow journal (its tables: {', '.join(sorted(tables))}); "
                    "choose another JOURNAL_PATH"
                )
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            connection.execute(f"PRAGMA synchronous = {self.sync.upper()}")
            if not tables:
                connection.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            versions = [v for (v,) in connection.execute("SELECT version FROM schema_version")]
            if versions == [1]:
                versions = self._migrate_1()
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        if versions != [SCHEMA_VERSION]:
            newer = len(versions) == 1 and isinstance(versions[0], int)
            raise JournalFormatError(
                f"cannot open journal {self.path!r}: its schema version is "
                f"{versions[0] if newer else versions!r}, this actorflow reads version "
                f"{SCHEMA_VERSION}" + ("; a newer actorflow wrote it: upgrade" if newer else "")
            )
        if mode.lower() != "wal" and self.path != ":memory:":
            raise JournalStoreError(
                f"cannot open journal {self.path!r}: SQLite refused WAL mode (journal mode "
                f"{mode!r}); put JOURNAL_PATH on a local file system"
            )
        try:  # a file SQLite opened read-only reads fine: fail now, not at each write
            connection.executescript(
                "BEGIN IMMEDIATE; UPDATE schema_version SET version = version; COMMIT;"
            )
        except sqlite3.Error as exc:
            self._rollback()
            raise self._error("open", exc) from exc

    def _migrate_1(self) -> list[Any]:
        """Version 1 -> 2: the ``backend`` column (NULL for the rows already there:
        recovery puts them into the current task system, as version 1 did). Returns the
        versions after it; another connection may have migrated the file first."""
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            versions = [v for (v,) in connection.execute("SELECT version FROM schema_version")]
            if versions == [1]:
                connection.execute("ALTER TABLE tasks ADD COLUMN backend TEXT")
                connection.execute(f"UPDATE schema_version SET version = {SCHEMA_VERSION}")
                versions = [SCHEMA_VERSION]
            connection.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return versions

    def write(self, batch: Sequence[Record]) -> None:
        """Apply ``batch`` in order in one transaction; returns once it is committed.

        On any error nothing of the batch is written and a `JournalError` is raised.
        """
        if not batch:
            return
        if self._forked:
            raise self._forked_error()
        with self._lock:
            identity = self._identity
            if identity is not None:  # two stats: ~0.1 us per task in S12's bursts
                if _identity(self.path) != identity:
                    raise JournalStoreError(
                        f"cannot write journal {self.path!r}: the file at that path is no "
                        "longer the one this system opened (deleted, renamed or replaced "
                        "while it ran); nothing written, the tasks go on in memory: put the "
                        "file back at that path to journal again (a restart starts from "
                        "what is there)"
                    )
                if not os.path.exists(f"{self.path}-wal"):
                    self._reopen()
            connection = self._connection
            try:
                plan: Plan = []
                for kind, run in itertools.groupby(batch, type):
                    if kind not in _STATEMENTS:
                        raise KeyError(kind)
                    _write_run(plan, kind, list(run))
                if len(plan) == 1:  # a transaction of its own: no BEGIN and COMMIT to wait for
                    connection.execute(*plan[0])
                else:
                    connection.execute("BEGIN IMMEDIATE")
                    for sql, params in plan:
                        connection.execute(sql, params)
                    connection.execute("COMMIT")
            except (sqlite3.Error, ValueError, TypeError, OverflowError, KeyError) as exc:
                # ValueError/TypeError/OverflowError: a value sqlite3 cannot bind (a str
                # with a lone surrogate, an int past 64 bits); KeyError: not a record.
                self._rollback()
                if isinstance(exc, KeyError):
                    raise JournalStoreError(
                        f"cannot write journal {self.path!r}: a batch holds a "
                        f"{exc.args[0].__qualname__}, not a TaskRow, StatusChange or Deletion"
                    ) from None
                raise self._error("write", exc) from exc

    def _rollback(self) -> None:
        # SQLite may have rolled it back itself (as after SQLITE_FULL), or be closed.
        with contextlib.suppress(sqlite3.Error):
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")

    @gc_paused()  # many rows at once, none holding a cycle
    def load(self) -> list[TaskRow]:
        """Every task in the journal, in the order first written."""
        if self._forked:
            raise self._forked_error()
        with self._lock:
            try:
                rows = self._connection.execute(_SELECT).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc
        try:
            return list(map(_load_row, rows))
        except (ValueError, TypeError) as exc:
            raise JournalFormatError(
                f"cannot read journal {self.path!r}: a row is damaged ({type(exc).__name__}: {exc})"
            ) from exc

    def close(self) -> None:
        """Close the file (idempotent). A later call raises `JournalStoreError`."""
        if self._forked:
            return  # the parent's file: nothing of it is closed here (`_left_by_fork`)
        with self._lock:
            self._identity = None  # no more checks: a write says it is closed
            try:
                self._connection.close()
            except sqlite3.Error as exc:
                raise self._error("close", exc) from exc
            finally:
                fd, self._lock_fd = self._lock_fd, None
                _release(fd)
                with _stores_lock:
                    _open_stores.discard(self)

    def __repr__(self) -> str:
        return f"JournalStore({self.path!r}, sync={self.sync!r})"

    def _left_by_fork(self) -> None:
        """In a forked child (`_after_fork_in_child`): the file is the parent's."""
        self._forked = True
        self._lock = threading.Lock()  # a thread of the parent may have held it
        self._identity = None
        fd, self._lock_fd = self._lock_fd, None
        _release(fd)  # the child's copy only: the parent's lock holds
        _abandoned.append(self._connection)  # never closed here, not even by the GC

    def _forked_error(self) -> JournalStoreError:
        return JournalStoreError(
            f"cannot use journal {self.path!r} in process {os.getpid()}: process "
            f"{self._pid} opened it, and this process is a fork of it; a child must not "
            "write its parent's journal: start a system with a JOURNAL_PATH of its own in "
            "the child"
        )


_open_stores: weakref.WeakSet[JournalStore] = weakref.WeakSet()
"""The stores open in this process (under ``_stores_lock``), for the fork hooks."""
_stores_lock = threading.Lock()
_held: list[threading.Lock] = []
"""The locks of the open stores, held by the thread that forks, while it forks."""

_abandoned: list[sqlite3.Connection] = []
"""In a forked child, the connections of the parent's stores (`_left_by_fork`)."""


def _before_fork() -> None:
    """Wait until no thread is inside SQLite with a store's file, and hold them so
    through the fork: a thread of the parent inside SQLite as it forks may hold one of
    SQLite's own mutexes (its memory or file-system locks), which no thread releases in
    the child, and the child's first SQLite call (a journal of its own) hangs."""
    with _stores_lock:
        stores = list(_open_stores)
    for store in stores:
        store._lock.acquire()
        _held.append(store._lock)


def _after_fork_in_parent() -> None:
    while _held:
        _held.pop().release()


def _after_fork_in_child() -> None:
    """Every store open at a fork is left to the parent (`JournalStore._left_by_fork`)."""
    global _stores_lock
    _stores_lock = threading.Lock()
    _held.clear()
    for store in list(_open_stores):
        store._left_by_fork()
    _open_stores.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


def _identity(path: str) -> tuple[int, int] | None:
    """The file at ``path`` (device, inode); None for ``:memory:`` or no file."""
    if path == ":memory:":
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)  # gone: never the identity of an open file
    return (stat.st_dev, stat.st_ino)


def _take_lock(path: str) -> int | None:
    """Lock ``<path>.lock`` (created if need be) for this store, or raise naming the
    holder: the descriptor that holds the lock (None for ``:memory:`` or off POSIX)."""
    if path == ":memory:" or fcntl is None:
        return None
    lock = f"{path}.lock"
    where = f"cannot open journal {path!r}"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            directory = os.path.dirname(os.path.abspath(path))
            raise JournalStoreError(
                f"{where}: its directory {directory!r} does not exist; create it or fix "
                "JOURNAL_PATH"
            ) from exc
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            why = "its directory is read-only for this process"
            what = "make it writable by this user or move JOURNAL_PATH"
        elif exc.errno == errno.ENOSPC:
            raise JournalFullError(
                f"{where}: the disk is full (creating its lock file {lock!r}: "
                f"{type(exc).__name__}: {exc}); free space or move JOURNAL_PATH"
            ) from exc
        else:
            why, what = "its lock file cannot be created", "fix JOURNAL_PATH"
        raise JournalStoreError(
            f"{where}: {why} (creating its lock file {lock!r}: {type(exc).__name__}: {exc}); {what}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        try:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise JournalStoreError(
                f"{where}: cannot lock {lock!r} ({type(exc).__name__}: {exc}); put "
                "JOURNAL_PATH on a local file system"
            ) from exc
        if holder == str(os.getpid()):
            who = f"this process (pid {holder}) has it open already (another ActorSystem)"
        elif holder.isdigit():
            who = f"process {holder} has it open"
        else:
            who = "another process has it open"
        raise JournalLockedError(
            f"{where}: {who}, holding {lock!r}; two systems on one journal would both run "
            "its tasks: stop that one first, or give each system its own JOURNAL_PATH"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the lock holds all the same; a refused system names no pid
    return fd


def _release(fd: int | None) -> None:
    """Let the lock of `_take_lock` go (the lock file stays: removing it would race
    with a store taking it)."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _out_of_space(path: str) -> str | None:
    """Why a write to ``path`` failed for lack of room, if it did: the process's file
    size limit (RLIMIT_FSIZE, EFBIG) or a full file system; None if neither shows."""
    if resource is not None:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            sizes = [path, f"{path}-wal"]
            with contextlib.suppress(OSError):
                if (
                    max(os.path.getsize(name) for name in sizes if os.path.exists(name)) + (1 << 16)
                    > limit
                ):
                    return (
                        f"the file reached this process's size limit (RLIMIT_FSIZE = {limit} "
                        "bytes, EFBIG)"
                    )
    with contextlib.suppress(OSError):
        stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
        if stat.f_bavail * stat.f_frsize < (1 << 16):
            return "the disk is full (ENOSPC)"
    return None
