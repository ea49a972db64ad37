"""The journal's groundwork: the codec, the SQLite store, the group-commit writer.

Nothing here starts an actor: the store and the writer are plain objects. The kill -9
test runs a child process that writes batches and is killed at a seeded random moment.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from actors import InvalidTaskError, TaskPriority
from actors.core import (
    JournalDecodeError,
    JournalEncodeError,
    JournalError,
    JournalFormatError,
    JournalFullError,
    JournalLockedError,
    JournalStoreError,
)
from actors.journal import (
    TAG,
    Codec,
    Deletion,
    EncodedResult,
    JournalStore,
    JournalWriter,
    StatusChange,
    TaskRow,
    error_fields,
    function_reference,
    merge,
    register_placeholder,
    resolve_function,
)

MODULE = __name__
NOT_DURABLE = "; pass durable=False to keep this task in memory only"
JSON_TAIL = (
    " (the JSON journal takes None, bool, int, float, str, bytes, list, tuple, set, "
    "frozenset, dict and registered placeholders; JOURNAL_SERIALIZER='pickle' takes more)"
    + NOT_DURABLE
)


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


# --- things to journal ---------------------------------------------------------------------


def plain_task(x: int) -> int:
    return x + 1


async def async_task() -> None:
    return None


class Jobs:
    def run(self) -> None:
        return None

    @classmethod
    def make(cls) -> Jobs:
        return cls()

    @staticmethod
    def helper() -> None:
        return None


@dataclass(frozen=True)
class ResultOf:
    """A stand-in for issue 12's ``result_of(task_id)`` placeholder."""

    task_id: str
    default: Any = None


register_placeholder(
    ResultOf, lambda ref: (ref.task_id, ref.default), lambda value: ResultOf(*value)
)


class Unregistered:
    task_id = "t"


class Pair(NamedTuple):
    a: int
    b: int


def shape(value: Any) -> Any:
    """``value`` with every type spelled out, so ``1``, ``1.0`` and ``True`` differ."""
    if isinstance(value, (list, tuple)):
        return (type(value), [shape(item) for item in value])
    if isinstance(value, (set, frozenset)):
        return (type(value), sorted(map(repr, value)))
    if isinstance(value, dict):
        return (type(value), [(shape(k), shape(v)) for k, v in value.items()])
    return (type(value), value)


VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**80,
    1.5,
    -0.0,
    math.inf,
    -math.inf,
    "",
    "héllo \u2603 \ud800",  # a lone surrogate too
    [],
    [1, [2, [3]]],
    (),
    (1,),
    ((1, 2), [3, (4,)]),
    {},
    {"a": 1, "b": [True, None]},
    {1: "one", 2.5: "two and a half", None: 0, (1, 2): {"x": (3,)}},
    {TAG: "not a tag", "tuple": (1,)},
    b"",
    b"\x00\xffbytes",
    set(),
    {1, "two", (3, 4)},
    frozenset({"a", frozenset({1})}),
    [ResultOf("a"), {"k": ResultOf("b", default=(1, 2))}],
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JournalStore]:
    journal = JournalStore(tmp_path / "journal.db", busy_timeout=0.05)
    yield journal
    journal.close()


def row(task_id: str, **changes: Any) -> TaskRow:
    codec = Codec()
    args, kwargs = codec.encode_args((1, ResultOf("dep")), {"k": (2,)}, task=task_id)
    base = TaskRow(
        task_id=task_id,
        name=f"name-{task_id}",
        task_type="fetch",
        function=function_reference(plain_task, task=task_id),
        args=args,
        kwargs=kwargs,
        priority=int(TaskPriority.HIGH),
        dependencies=("dep",),
        max_retries=2,
        retry_delay=0.5,
        timeout=3.0,
        executor="thread",
        circuit_breaker="api",
        description="a task",
        metadata=codec.encode_value({"owner": "me"}, what="metadata", task=task_id),
        on_dependency_failure="run",
        backend="new",
        status="pending",
        created_at=1000.0,
        updated_at=1000.0,
    )
    return base._replace(**changes)


# --- the codec: values ---------------------------------------------------------------------


@pytest.mark.parametrize("serializer", ["json", "pickle"])
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_every_supported_value_round_trips_with_its_types(serializer: str, value: Any) -> None:
    codec = Codec(serializer)
    payload = codec.encode_value(value, what="argument 0", task="t")
    assert type(payload) is (str if serializer == "json" else bytes)
    decoded = codec.decode_value(payload, what="argument 0", task="t")
    assert shape(decoded) == shape(value)


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_nan_round_trips(serializer: str) -> None:
    codec = Codec(serializer)
    payload = codec.encode_value([math.nan], what="result", task="t")
    [decoded] = codec.decode_value(payload, what="result", task="t")
    assert math.isnan(decoded)


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_args_and_kwargs_round_trip_through_the_file(store: JournalStore, serializer: str) -> None:
    codec = Codec(serializer)
    args = tuple(VALUES)
    kwargs = {"first": (1, [2]), "ref": ResultOf("other"), "data": {3: b"x"}}
    encoded_args, encoded_kwargs = codec.encode_args(args, kwargs, task="t")
    store.write([row("t", args=encoded_args, kwargs=encoded_kwargs)])
    [loaded] = store.load()
    decoded_args, decoded_kwargs = codec.decode_args(loaded.args, loaded.kwargs, task="t")
    assert shape(decoded_args) == shape(args)
    assert shape(decoded_kwargs) == shape(kwargs)


@pytest.mark.parametrize(
    ("args", "encoded"),
    [
        ((), "[]"),
        ((7,), "[7]"),
        ((-3, 10**30), "[-3,1000000000000000000000000000000]"),
        (('é\n"x\u2028', 1), '["\\u00e9\\n\\"x\\u2028",1]'),
        ((True, 1), "[true,1]"),  # a bool is not an int here
        ((1.5, None, "a"), '[1.5,null,"a"]'),
    ],
)
def test_scalar_arguments_encode_as_the_json_encoder_writes_them(
    args: tuple[Any, ...], encoded: str
) -> None:
    """ints and strs are joined without the encoder (the common case): the same text."""
    codec = Codec()
    assert codec.encode_args(args, {}, task="t") == (encoded, "{}")
    assert encoded == json.dumps(args, separators=(",", ":"))
    assert codec.decode_args(encoded, "{}", task="t") == (args, {})


def test_a_placeholder_is_a_tagged_object_in_the_json() -> None:
    payload = Codec().encode_value(ResultOf("a"), what="argument 0", task="t")
    assert payload == (
        '{"__actorflow__":"placeholder","type":"test_journal_store.ResultOf",'
        '"value":{"__actorflow__":"tuple","items":["a",null]}}'
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            (1, threading.Lock()),
            {},
            "task 'fetch' cannot be durable: argument 1 is a _thread.lock, not "
            "JSON-serializable" + JSON_TAIL,
        ),
        (
            (),
            {"config": {"retries": [1, {"lock": threading.Lock()}]}},
            "task 'fetch' cannot be durable: argument 'config'['retries'][1]['lock'] is a "
            "_thread.lock, not JSON-serializable" + JSON_TAIL,
        ),
        (
            (TaskPriority.HIGH,),
            {},
            "task 'fetch' cannot be durable: argument 0 is a actors.core._types.TaskPriority, not "
            "JSON-serializable" + JSON_TAIL,
        ),
        (
            ([Pair(1, 2)],),
            {},
            "task 'fetch' cannot be durable: argument 0[0] is a test_journal_store.Pair, not "
            "JSON-serializable" + JSON_TAIL,
        ),
        (
            ({Pair(1, 2): 1},),
            {},
            "task 'fetch' cannot be durable: argument 0[key Pair(a=1, b=2)] is a "
            "test_journal_store.Pair, not JSON-serializable" + JSON_TAIL,
        ),
        (
            ({1: {(2, 3): [threading.Lock()]}},),
            {},
            "task 'fetch' cannot be durable: argument 0[1][(2, 3)][0] is a _thread.lock, not "
            "JSON-serializable" + JSON_TAIL,
        ),
        (
            (Unregistered(),),
            {},
            "task 'fetch' cannot be durable: argument 0 is a test_journal_store.Unregistered, "
            "not JSON-serializable" + JSON_TAIL,
        ),
        (
            (ResultOf(7),),  # type: ignore[arg-type]
            {},
            "task 'fetch' cannot be durable: argument 0 is a test_journal_store.ResultOf, a "
            "placeholder without a str task_id" + JSON_TAIL,
        ),
    ],
)
def test_a_value_that_does_not_serialize_is_refused_naming_where(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(JournalEncodeError, match=exactly(message)) as caught:
        Codec().encode_args(args, kwargs, task="fetch")
    assert isinstance(caught.value, InvalidTaskError)
    assert caught.value.__cause__ is None


def test_a_value_that_contains_itself_is_refused() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    with pytest.raises(
        JournalEncodeError,
        match=exactly(
            "task 't' cannot be durable: argument 0 is nested too deeply (or contains itself)"
            + NOT_DURABLE
        ),
    ):
        Codec().encode_args((looped,), {}, task="t")


def test_pickle_refusal_names_the_argument_and_the_pickle_error() -> None:
    with pytest.raises(
        JournalEncodeError,
        match=exactly(
            "task 't' cannot be durable: argument 'lock' (_thread.lock) does not pickle "
            "(TypeError: cannot pickle '_thread.lock' object)" + NOT_DURABLE
        ),
    ):
        Codec("pickle").encode_args((1,), {"lock": threading.Lock()}, task="t")


def test_a_json_codec_does_not_read_a_pickle() -> None:
    payload = Codec("pickle").encode_value((1, 2), what="result", task="t")
    with pytest.raises(
        JournalDecodeError,
        match=exactly(
            "task 't': result was journaled with pickle; set JOURNAL_SERIALIZER='pickle' to "
            "read it (only if you trust the file)"
        ),
    ):
        Codec("json").decode_value(payload, what="result", task="t")
    assert Codec("pickle").decode_value(payload, what="result", task="t") == (1, 2)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[1,", "its arguments cannot be decoded (JSONDecodeError: Expecting value: line 1 "
                "column 4 (char 3))"),
        ('{"__actorflow__":"placeholder","type":"gone.Class","value":1}',
         "its arguments cannot be decoded (ValueError: no placeholder class is registered "
         "for 'gone.Class')"),
        ('{"__actorflow__":"complex","items":[]}',
         "its arguments cannot be decoded (ValueError: unknown tag 'complex')"),
    ],
)  # fmt: skip
def test_a_damaged_payload_is_a_decode_error(payload: str, message: str) -> None:
    with pytest.raises(JournalDecodeError, match=exactly(f"task 't': {message}")):
        Codec().decode_args(payload, "{}", task="t")


def test_codec_refuses_an_unknown_serializer() -> None:
    with pytest.raises(
        InvalidTaskError, match=exactly("serializer must be one of 'json', 'pickle', got 'yaml'")
    ):
        Codec("yaml")


def test_register_placeholder_checks_its_arguments() -> None:
    with pytest.raises(
        InvalidTaskError, match=exactly("register_placeholder: cls must be a class, got 3")
    ):
        register_placeholder(3, str, str)  # type: ignore[arg-type]
    with pytest.raises(
        InvalidTaskError,
        match=exactly(
            "register_placeholder: tag 'test_journal_store.ResultOf' is taken by "
            "test_journal_store.ResultOf; pass another tag"
        ),
    ):
        register_placeholder(Unregistered, str, str, tag="test_journal_store.ResultOf")


# --- the codec: results and errors ---------------------------------------------------------


def test_encode_result_records_a_result_that_does_not_serialize() -> None:
    assert Codec().encode_result({"n": (1, 2)}, task="t") == EncodedResult(
        '{"n":{"__actorflow__":"tuple","items":[1,2]}}', None
    )
    assert Codec().encode_result(threading.Lock(), task="t") == EncodedResult(
        None, "result not serializable: _thread.lock"
    )
    assert Codec().encode_result([1, {"k": threading.Lock()}], task="t") == EncodedResult(
        None, "result not serializable: _thread.lock (at result[1]['k'])"
    )
    assert Codec("pickle").encode_result(threading.Lock(), task="t") == EncodedResult(
        None,
        "result not serializable: _thread.lock (TypeError: cannot pickle '_thread.lock' object)",
    )


def test_error_fields_are_storable_text() -> None:
    assert error_fields(ValueError("bad \ud800 value")) == ("ValueError", "bad \\ud800 value")
    assert error_fields(JournalFullError("x")) == ("actors.core._errors.JournalFullError", "x")


# --- the codec: functions by reference ------------------------------------------------------


@pytest.mark.parametrize(
    ("func", "reference"),
    [
        (plain_task, f"{MODULE}:plain_task"),
        (async_task, f"{MODULE}:async_task"),
        (Jobs, f"{MODULE}:Jobs"),
        (Jobs.make, f"{MODULE}:Jobs.make"),
        (Jobs.helper, f"{MODULE}:Jobs.helper"),
        (Jobs.run, f"{MODULE}:Jobs.run"),
        (os.path.join, "posixpath:join"),
        (print, "builtins:print"),
    ],
)
def test_a_function_is_journaled_by_reference(func: Any, reference: str) -> None:
    assert function_reference(func, task="t") == reference
    found = resolve_function(reference, task="t")
    assert found == func


def _local() -> Any:
    def inner() -> None:
        return None

    return inner


@pytest.mark.parametrize(
    ("func", "why"),
    [
        (lambda: 1, "its function '<lambda>' is a lambda, which has no name to find it by"),
        (
            _local(),
            "its function '_local.<locals>.inner' is defined inside another function, so it "
            "cannot be imported after a restart",
        ),
        (
            Jobs().run,
            "its function 'Jobs.run' is a method bound to an instance of "
            "test_journal_store.Jobs, and the instance is not journaled",
        ),
        (
            functools.partial(plain_task, 1),
            "its function is a functools.partial of <function plain_task at ADDRESS>, which is "
            "not journaled; register the function itself with its arguments",
        ),
        (
            Jobs(),
            "its function is a test_journal_store.Jobs instance, not a function or class: it "
            "has no qualified name to find it by",
        ),
    ],
)
def test_a_function_that_cannot_be_found_again_is_refused(func: Any, why: str) -> None:
    why = why.replace("ADDRESS", hex(id(plain_task)))
    with pytest.raises(
        JournalEncodeError, match=exactly(f"task 'job' cannot be durable: {why}{NOT_DURABLE}")
    ) as caught:
        function_reference(func, task="job")
    assert isinstance(caught.value, InvalidTaskError)


def test_a_function_shadowed_or_renamed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def other(x: int) -> int:
        return x

    original = plain_task
    monkeypatch.setattr(sys.modules[MODULE], "plain_task", other)
    with pytest.raises(
        JournalEncodeError,
        match=exactly(
            "task 'job' cannot be durable: its function 'plain_task' is not what "
            f"{MODULE}:plain_task names (redefined, or decorated without functools.wraps?)"
            + NOT_DURABLE
        ),
    ):
        function_reference(original, task="job")
    monkeypatch.undo()
    monkeypatch.setattr(plain_task, "__qualname__", "renamed")
    with pytest.raises(
        JournalEncodeError,
        match=exactly(
            "task 'job' cannot be durable: its function 'renamed' cannot be found as "
            f"{MODULE}:renamed (AttributeError: module '{MODULE}' has no attribute "
            "'renamed')" + NOT_DURABLE
        ),
    ):
        function_reference(plain_task, task="job")


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_colon", "'no_colon' is not a function reference (module:qualname)"),
        (
            "no_such_module_here:f",
            "its function no_such_module_here:f cannot be found (ModuleNotFoundError: No "
            "module named 'no_such_module_here')",
        ),
        (
            "os.path:nope",
            "its function os.path:nope cannot be found (AttributeError: module 'posixpath' "
            "has no attribute 'nope')",
        ),
        ("os:sep", "os:sep is a str, not a function"),
    ],
)
def test_resolving_a_reference_that_is_gone(reference: str, message: str) -> None:
    with pytest.raises(JournalDecodeError, match=exactly(f"task 'job': {message}")):
        resolve_function(reference, task="job")


# --- the store -----------------------------------------------------------------------------


def test_rows_round_trip_and_keep_their_order(store: JournalStore) -> None:
    rows = [row("b"), row("a", args=b"\x80\x05pickled", status="running", executed=True)]
    store.write(rows)
    assert store.load() == rows
    changed = row("b", name="renamed", dependencies=())
    store.write([changed])  # an upsert replaces the row and keeps its place
    assert store.load() == [changed, rows[1]]
    assert type(store.load()[1].args) is bytes


def test_a_status_change_replaces_the_state_and_never_clears_executed(
    store: JournalStore,
) -> None:
    store.write([row("t")])
    running = StatusChange("t", "running", 1001.0, executed=True, attempts=1, started_at=1001.0)
    store.write([running])
    assert store.load() == [
        row("t", status="running", updated_at=1001.0, executed=True, attempts=1,
            started_at=1001.0)
    ]  # fmt: skip
    done = StatusChange(
        "t", "completed", 1002.0, attempts=1, recoveries=2, result='"ok"', started_at=1001.0,
        finished_at=1002.0,
    )  # fmt: skip
    store.write([done, StatusChange("missing", "running", 1.0)])
    [loaded] = store.load()
    assert loaded == row(
        "t", status="completed", updated_at=1002.0, executed=True, attempts=1, recoveries=2,
        result='"ok"', started_at=1001.0, finished_at=1002.0,
    )  # fmt: skip


def test_deletion_records_delete_rows_and_a_missing_one_is_no_error(store: JournalStore) -> None:
    store.write([row("a"), row("b"), row("c")])
    store.write([Deletion("a"), Deletion("missing")])
    store.write([Deletion("c")])
    assert [task.task_id for task in store.load()] == ["b"]


def test_the_file_is_wal_with_the_chosen_sync(tmp_path: Path) -> None:
    for sync, level in [("normal", 1), ("full", 2)]:
        with JournalStore(tmp_path / f"{sync}.db", sync=sync) as journal:
            connection = journal._connection  # the store's own connection: its pragmas
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert connection.execute("PRAGMA synchronous").fetchone() == (level,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"path": ""},
            "journal path must be a non-empty str or path with no NUL character, got ''",
        ),
        (
            {"path": "j\x00.db"},
            "journal path must be a non-empty str or path with no NUL character, "
            "got 'j\\x00.db'",
        ),
        ({"path": "x.db", "sync": "off"},
         "journal sync must be one of 'normal', 'full', got 'off'"),
        ({"path": "x.db", "busy_timeout": -1}, "busy_timeout must be a number >= 0, got -1"),
        ({"path": "x.db", "busy_timeout": True}, "busy_timeout must be a number >= 0, got True"),
    ],
)  # fmt: skip
def test_the_store_checks_its_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTaskError, match=exactly(message)):
        JournalStore(**kwargs)


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, I am not a database, but I am long enough to look like one " * 20)
    with pytest.raises(
        JournalFormatError,
        match=exactly(
            f"cannot open journal {str(text)!r}: it is not an SQLite database or is damaged "
            "(DatabaseError: file is not a database)"
        ),
    ):
        JournalStore(text)
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as connection, connection:
        connection.execute("CREATE TABLE users (id)")
    connection.close()
    with pytest.raises(
        JournalFormatError,
        match=exactly(
            f"cannot open journal {str(other)!r}: it is an SQLite database but not an "
            "actorflow journal (its tables: users); choose another JOURNAL_PATH"
        ),
    ):
        JournalStore(other)
    missing = tmp_path / "no" / "such" / "dir.db"
    with pytest.raises(
        JournalStoreError,
        match=exactly(
            f"cannot open journal {str(missing)!r}: its directory {str(missing.parent)!r} does "
            "not exist; create it or fix JOURNAL_PATH"
        ),
    ):
        JournalStore(missing)


def test_a_journal_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    JournalStore(path).close()
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("UPDATE schema_version SET version = 3")
    connection.close()
    with pytest.raises(
        JournalFormatError,
        match=exactly(
            f"cannot open journal {str(path)!r}: its schema version is 3, this actorflow reads "
            "version 2; a newer actorflow wrote it: upgrade"
        ),
    ):
        JournalStore(path)


def test_a_value_sqlite_cannot_bind_fails_the_batch_whole(store: JournalStore) -> None:
    store.write([row("kept")])
    with pytest.raises(
        JournalStoreError,
        match=exactly(
            f"cannot write journal {store.path!r}: UnicodeEncodeError: 'utf-8' codec can't "
            "encode character '\\ud800' in position 0: surrogates not allowed"
        ),
    ):
        store.write([row("new"), row("bad", name="\ud800")])
    with pytest.raises(
        JournalStoreError,
        match=exactly(
            f"cannot write journal {store.path!r}: OverflowError: Python int too large to "
            "convert to SQLite INTEGER"
        ),
    ):
        store.write([StatusChange("kept", "running", 1.0, attempts=2**70)])
    with pytest.raises(
        JournalStoreError,
        match=exactly(
            f"cannot write journal {store.path!r}: a batch holds a str, not a TaskRow, "
            "StatusChange or Deletion"
        ),
    ):
        store.write(["nope"])  # type: ignore[list-item]
    assert store.load() == [row("kept")]


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    journal = JournalStore(tmp_path / "journal.db")
    journal.close()
    journal.close()
    with pytest.raises(
        JournalStoreError,
        match=exactly(
            f"cannot write journal {journal.path!r}: ProgrammingError: Cannot operate on a "
            "closed database."
        ),
    ):
        journal.write([row("t")])


def _integrity(path: str | Path) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()


def test_a_full_disk_is_a_journal_full_error_and_loses_nothing(store: JournalStore) -> None:
    kept = [row(f"kept-{i}") for i in range(10)]
    store.write(kept)
    connection = store._connection  # a size limit on the store's own connection
    (pages,) = connection.execute("PRAGMA page_count").fetchone()
    connection.execute(f"PRAGMA max_page_count = {pages}")
    big = [row(f"big-{i}", description="x" * 10_000) for i in range(20)]
    errors: list[tuple[JournalError, int]] = []
    writer = JournalWriter(store, on_error=lambda error, count: errors.append((error, count)))
    writer.add_all(big)
    assert writer.flush() is False
    [(error, count)] = errors
    assert count == 20
    assert type(error) is JournalFullError
    assert str(error) == (
        f"cannot write journal {store.path!r}: the disk is full (OperationalError: database or "
        "disk is full); free space or move JOURNAL_PATH"
    )
    assert store.load() == kept
    assert _integrity(store.path) == [("ok",)]
    assert writer.pending() == big
    connection.execute("PRAGMA max_page_count = 1073741823")
    assert writer.flush() is True
    assert store.load() == kept + big
    assert (len(errors), len(writer)) == (1, 0)


def test_a_locked_file_is_a_journal_locked_error_and_loses_nothing(store: JournalStore) -> None:
    store.write([row("kept")])
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(JournalLockedError) as caught:
            store.write([row("new")])
        assert str(caught.value) == (
            f"cannot write journal {store.path!r}: another connection holds the file "
            "(OperationalError: database is locked); give each system its own JOURNAL_PATH"
        )
        assert store.load() == [row("kept")]  # WAL: reading goes on under the lock
        other.execute("ROLLBACK")
    finally:
        other.close()
    store.write([row("new")])
    assert store.load() == [row("kept"), row("new")]
    assert _integrity(store.path) == [("ok",)]


# --- the writer ----------------------------------------------------------------------------


def test_merge_coalesces_the_records_of_one_task() -> None:
    running = StatusChange("t", "running", 2.0, executed=True, attempts=1)
    done = StatusChange("t", "completed", 3.0, attempts=1, result="1")
    assert merge(None, running) is running
    assert merge(row("t"), running) == row(
        "t", status="running", updated_at=2.0, executed=True, attempts=1
    )
    assert merge(running, done) == done._replace(executed=True)
    assert merge(Deletion("t"), done) == Deletion("t")
    assert merge(done, Deletion("t")) == Deletion("t")
    assert merge(Deletion("t"), row("t")) == row("t")


def test_group_commit_writes_many_updates_in_one_transaction(store: JournalStore) -> None:
    statements: list[str] = []
    store._connection.set_trace_callback(statements.append)  # count what reaches SQLite
    writer = JournalWriter(store, on_error=pytest.fail)
    for i in range(50):
        writer.add_all([row(f"t{i}")])
        for attempt, status in enumerate(["queued", "running", "retrying", "running"]):
            writer.add_all([StatusChange(f"t{i}", status, 1001.0 + attempt, executed=True,
                                         attempts=attempt)])  # fmt: skip
    writer.add_all(
        StatusChange(f"t{i}", "completed", 1010.0, attempts=3, result="1") for i in range(25)
    )
    assert len(writer) == 50
    assert writer.flush() is True
    before = store._connection.total_changes
    assert [s for s in statements if not s.startswith("INSERT")] == ["BEGIN IMMEDIATE", "COMMIT"]
    # 50 rows in statements of 32 and 18 rows (one each would be 50).
    assert len(statements) == 4
    statements.clear()
    for i in range(50):
        writer.add_all([StatusChange(f"t{i}", "cancelled", 1020.0), Deletion(f"t{i}")])
    writer.add_all([row("late")])
    assert writer.flush() is True
    assert store._connection.total_changes - before == 51
    assert statements[0] == "BEGIN IMMEDIATE"
    assert statements[-1] == "COMMIT"
    assert len(statements) == 5  # the row, then the 50 deletions in 2 statements
    store._connection.set_trace_callback(None)
    assert store.load() == [row("late")]


def test_a_batch_of_one_statement_is_its_own_transaction(store: JournalStore) -> None:
    """A batch written by one statement is not wrapped in BEGIN and COMMIT (SQLite makes
    the statement a transaction); runs are cut in statements of exact sizes up to 32,
    then of multiples of 32 (at most 256) and the rest."""
    statements: list[str] = []
    store._connection.set_trace_callback(statements.append)
    store.write([row(f"t{i}") for i in range(31)])
    assert [s.split(" ", 1)[0] for s in statements] == ["INSERT"]
    statements.clear()
    store.write([StatusChange(f"t{i}", "queued", 2.0, executed=True) for i in range(31)])
    assert [s.split(" ", 1)[0] for s in statements] == ["UPDATE"]
    statements.clear()
    store.write([Deletion(f"t{i}") for i in range(300)])  # 256 + 32 + 12 (31 exist)
    assert [s.split(" ", 1)[0] for s in statements] == ["BEGIN", "DELETE", "DELETE", "DELETE",
                                                       "COMMIT"]  # fmt: skip
    assert [s.count("('t") for s in statements[1:4]] == [256, 32, 12]
    store._connection.set_trace_callback(None)
    assert store.load() == []


def test_a_batch_the_lock_refused_is_written_merged_by_the_next_flush(
    store: JournalStore,
) -> None:
    errors: list[tuple[JournalError, int]] = []
    writer = JournalWriter(store, on_error=lambda error, count: errors.append((error, count)))
    writer.add_all([row("a"), StatusChange("a", "running", 2.0, executed=True, attempts=1)])
    writer.add_all([row("b")])
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    assert writer.flush() is False
    other.execute("ROLLBACK")
    other.close()
    assert [type(error) for error, _ in errors] == [JournalLockedError]
    assert errors[0][1] == 2
    assert writer.pending() == [
        row("a", status="running", updated_at=2.0, executed=True, attempts=1),
        row("b"),
    ]
    writer.add_all([StatusChange("b", "queued", 3.0, executed=True)])
    assert writer.flush() is True
    assert (len(writer), len(errors)) == (0, 1)
    assert store.load() == [
        row("a", status="running", updated_at=2.0, executed=True, attempts=1),
        row("b", status="queued", updated_at=3.0, executed=True),
    ]


def test_a_writer_reports_an_unexpected_error_as_a_journal_error(tmp_path: Path) -> None:
    class Broken(JournalStore):
        __slots__ = ()

        def write(self, batch: Any) -> None:
            raise RuntimeError("boom")

    errors: list[JournalError] = []
    with Broken(tmp_path / "j.db") as broken:
        writer = JournalWriter(broken, on_error=lambda error, _: errors.append(error))
        writer.add_all([row("t")])
        assert writer.flush() is False
    assert [str(error) for error in errors] == [
        f"cannot write journal {broken.path!r}: RuntimeError: boom"
    ]
    assert writer.pending() == [row("t")]


# --- kill -9 -------------------------------------------------------------------------------

CHILD = """
import sys
from actors.journal import JournalStore, StatusChange, TaskRow

path, size = sys.argv[1], int(sys.argv[2])
store = JournalStore(path)
for batch in range(100_000):
    records = [
        TaskRow(f"{batch}-{i}", "n", "t", "m:f", "[]", "{}", 1, (), 0, 0.0, None, None, None,
                "x" * 200, "{}", "cancel", None, "pending", 1.0, 1.0)
        for i in range(size)
    ]
    if batch:
        records += [StatusChange(f"{batch - 1}-{i}", "running", 2.0, executed=True)
                    for i in range(size)]
    store.write(records)
    print(batch, flush=True)
"""


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_kill_9_loses_no_acknowledged_batch(tmp_path: Path, seed: int) -> None:
    # The child writes batches and prints each one once write() returned (acknowledged);
    # a timer kills it at a seeded random moment after its first batch: mid-transaction,
    # between two, or while printing.
    rng = random.Random(seed)
    size = rng.randint(1, 300)
    delay = rng.uniform(0.01, 0.25)
    path = tmp_path / "journal.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(size)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    killer = threading.Timer(delay, os.kill, (child.pid, signal.SIGKILL))
    try:
        acknowledged = [int(child.stdout.readline())]
        killer.start()
        acknowledged += [int(line) for line in child.stdout]  # until the kill closes it
    finally:
        killer.cancel()
        killer.join()
        child.kill()
        child.wait(timeout=10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert acknowledged == list(range(len(acknowledged)))
    assert _integrity(path) == [("ok",)]
    with JournalStore(path) as journal:
        rows = journal.load()
    batches: dict[int, list[TaskRow]] = {}
    for task in rows:
        batches.setdefault(int(task.task_id.split("-")[0]), []).append(task)
    written = sorted(batches)
    assert written == list(range(len(written)))  # committed batches are a prefix ...
    assert len(written) >= len(acknowledged)  # ... holding every acknowledged one
    assert len(written) <= len(acknowledged) + 1  # at most one committed, not printed
    assert all(len(tasks) == size for tasks in batches.values())  # each one whole
    last = written[-1]
    assert {task.status for n in written[:-1] for task in batches[n]} == (
        {"running"} if last else set()
    )
    assert {task.status for task in batches[last]} == {"pending"}


def test_a_batch_of_many_records_writes_each_one_in_order(store: JournalStore) -> None:
    # 300 records of a kind go in multi-row statements (256, 32, 4 x 3...): each record
    # must land on its own task, in order, and two changes of one task both apply.
    store.write([row(f"t{i:03d}", priority=i) for i in range(300)])
    store.write(
        [
            StatusChange(f"t{i:03d}", "running", 2000.0 + i, executed=i % 2 == 0, attempts=i)
            for i in range(299)
        ]
        + [
            StatusChange("t299", "failed", 3000.0, executed=True, error_type="E"),
            StatusChange("t299", "pending", 3001.0, attempts=7),
        ]
    )
    store.write([Deletion(f"t{i:03d}") for i in range(0, 300, 3)] + [Deletion("missing")])
    loaded = store.load()
    assert [r.task_id for r in loaded] == [f"t{i:03d}" for i in range(300) if i % 3]
    assert [(r.priority, r.status, r.updated_at, r.executed, r.attempts) for r in loaded] == [
        (i, "running", 2000.0 + i, i % 2 == 0, i) for i in range(1, 299) if i % 3
    ] + [(299, "pending", 3001.0, True, 7)]
    assert loaded[-1].error_type is None


def test_fresh_and_bare_records_mixed_with_others_keep_order_and_every_field(
    store: JournalStore,
) -> None:
    # A just-registered row and a change with no result, error or end time are written
    # with their own statements (literals for the state they do not carry): mixed with
    # the others in one batch, each row keeps its place and every field its value.
    rows = [
        row("full-1", status="queued", executed=True),
        row("fresh-1"),
        row("fresh-2", dependencies=(), priority=9, description="other"),
        row("full-2", attempts=1),
        row("fresh-3"),
    ]
    store.write(rows)
    assert store.load() == rows
    store.write(
        [
            StatusChange("fresh-1", "running", 2001.0, True, 1, 0, None, None, None, None, 2001.0),
            StatusChange("fresh-2", "failed", 2002.0, True, 1, 0, None, None, "E", "m", 2001.0,
                         2002.0),
            StatusChange("full-1", "queued", 2003.0, False, 2, 1),
            StatusChange("fresh-3", "completed", 2004.0, True, 1, 0, '"ok"', None, None, None,
                         2003.0, 2004.0),
        ]
    )  # fmt: skip
    assert store.load() == [
        rows[0]._replace(updated_at=2003.0, attempts=2, recoveries=1),
        rows[1]._replace(status="running", updated_at=2001.0, executed=True, attempts=1,
                         started_at=2001.0),
        rows[2]._replace(status="failed", updated_at=2002.0, executed=True, attempts=1,
                         error_type="E", error_message="m", started_at=2001.0,
                         finished_at=2002.0),
        rows[3],
        rows[4]._replace(status="completed", updated_at=2004.0, executed=True, attempts=1,
                         result='"ok"', started_at=2003.0, finished_at=2004.0),
    ]  # fmt: skip
    # A bare change clears what an earlier change had set.
    store.write([StatusChange("fresh-2", "queued", 2005.0, attempts=1)])
    assert store.load()[2] == rows[2]._replace(
        status="queued", updated_at=2005.0, executed=True, attempts=1
    )


def test_flush_changes_writes_the_starting_tasks_alone_or_says_to_flush_all(
    store: JournalStore,
) -> None:
    errors: list[tuple[JournalError, int]] = []
    writer = JournalWriter(store, on_error=lambda error, count: errors.append((error, count)))
    writer.add_all([row("a"), row("b")])
    assert writer.flush() is True
    running = StatusChange("a", "running", 2.0, executed=True, attempts=1, started_at=2.0)
    queued = StatusChange("b", "queued", 2.0, executed=True)
    writer.add_all([queued, row("c"), running])
    # Only "a"'s change is written: "b" and the new row "c" stay pending.
    assert writer.flush_changes(["a", "gone"]) is True
    assert store.load() == [
        row("a", status="running", updated_at=2.0, executed=True, attempts=1, started_at=2.0),
        row("b"),
    ]
    assert writer.pending() == [queued, row("c")]
    # A task whose row is not written yet: nothing is written, flush everything instead.
    assert writer.flush_changes(["b", "c"]) is None
    assert writer.pending() == [queued, row("c")]
    # A failed write keeps its records pending and is reported.
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        assert writer.flush_changes(["b"]) is False
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [(type(error), count) for error, count in errors] == [(JournalLockedError, 1)]
    assert writer.pending() == [queued, row("c")]
    assert writer.flush() is True
    assert [task.status for task in store.load()] == ["running", "queued", "pending"]
    assert (len(errors), len(writer)) == (1, 0)
