"""The journal under real faults: a real SQLite file, real processes.

A second system on a journal in use, a file that is not a journal (left untouched), a
read-only file or directory, a full disk (a file size limit: EFBIG) and a file
deleted or renamed while the system runs: each ends in a clear `JournalError` naming
the file and the cause, bounded in time, never a hang nor a crash loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, add, file_rows, journal_config, sigkill_when_ready, start_worker
from loguru import logger

from actors import ActorSystem, EventKind, TaskStatus, configure_logging
from actors.core import JournalFormatError, JournalFullError, JournalLockedError, JournalStoreError
from actors.journal import JournalStore
from actors.runtime import _journal_link
from actors.runtime import _recovery as recovery
from actors.runtime import _system as system_module
from supervisors.testing import FakeClock


async def _journal(path: Path, *task_ids: str) -> None:
    """A journal at ``path`` holding the pending tasks ``task_ids``."""
    async with ActorSystem(journal_config(path)) as system:
        for task_id in task_ids:
            await system.task_manager.register_task("add", add, (1, 2), task_id=task_id)


# -- one journal, one system ----------------------------------------------------------------


async def test_a_second_system_on_a_journal_in_use_is_refused_naming_the_holder(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    worker = start_worker("jfault_worker.py", path, "hold")
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "ready\n"
        before = file_rows(path)
        with pytest.raises(JournalLockedError) as caught:
            async with ActorSystem(journal_config(path)):
                pass
        assert str(caught.value) == (
            f"cannot open journal {str(path)!r}: process {worker.pid} has it open, holding "
            f"{f'{path}.lock'!r}; two systems on one journal would both run its tasks: stop "
            "that one first, or give each system its own JOURNAL_PATH"
        )
        assert file_rows(path) == before == [("marker", "pending")]
    finally:
        worker.kill()
        worker.wait(WAIT)
        assert worker.stdout is not None
        worker.stdout.close()
    # SIGKILL let the lock go: the next system starts, with the task
    async with ActorSystem(journal_config(path)) as system:
        assert await system.task_manager.get_task_status("marker") is TaskStatus.PENDING


def test_a_second_store_in_this_process_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    first = JournalStore(path)
    with pytest.raises(JournalLockedError) as caught:
        JournalStore(path)
    assert str(caught.value) == (
        f"cannot open journal {str(path)!r}: this process (pid {os.getpid()}) has it open "
        f"already (another ActorSystem), holding {str(path) + '.lock'!r}; two systems on one "
        "journal would both run its tasks: stop that one first, or give each system its own "
        "JOURNAL_PATH"
    )
    first.close()
    JournalStore(path).close()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    sigkill_when_ready(start_worker("jfault_worker.py", path, "hold"))
    with JournalStore(path) as store:
        assert [row.task_id for row in store.load()] == ["marker"]


# -- files that are not a journal: refused, untouched ---------------------------------------


async def _damaged(tmp_path: Path, how: str) -> Path:
    path = tmp_path / "tasks.db"
    if how == "another application's database":
        with closing(sqlite3.connect(path)) as connection, connection:
            connection.execute("CREATE TABLE users (id)")
            connection.execute("INSERT INTO users VALUES (1)")
    elif how == "a newer actorflow's journal":
        await _journal(path, "kept")
        with closing(sqlite3.connect(path)) as connection, connection:
            connection.execute("UPDATE schema_version SET version = 3")
    elif how == "random bytes":
        path.write_bytes(bytes(range(256)) * 80)
    else:  # a journal of 300 tasks cut in half
        await _journal(path, *(f"t{i}" for i in range(300)))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("how", "message"),
    [
        (
            "another application's database",
            "it is an SQLite database but not an actorflow journal (its tables: users); "
            "choose another JOURNAL_PATH",
        ),
        (
            "a newer actorflow's journal",
            "its schema version is 3, this actorflow reads version 2; a newer actorflow "
            "wrote it: upgrade",
        ),
        (
            "random bytes",
            "it is not an SQLite database or is damaged (DatabaseError: file is not a database)",
        ),
        (
            "truncated",
            "it is not an SQLite database or is damaged (DatabaseError: database disk image "
            "is malformed)",
        ),
    ],
)
async def test_a_file_that_is_not_a_journal_is_refused_and_left_as_it_was(
    tmp_path: Path, how: str, message: str
) -> None:
    path = await _damaged(tmp_path, how)
    content = path.read_bytes()
    with pytest.raises(JournalFormatError) as caught:
        async with ActorSystem(journal_config(path)):
            pass
    assert str(caught.value) == f"cannot open journal {str(path)!r}: {message}"
    assert path.read_bytes() == content  # not even switched to WAL mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.db", "tasks.db.lock"]


# -- a read-only file or directory: refused at start ---------------------------------------

_TRY_START = """
import asyncio, sys
from actors import ActorSystem
async def main():
    try:
        async with ActorSystem({"JOURNAL_PATH": sys.argv[1], "CLEANUP_INTERVAL": 0}):
            print("started")
    except Exception as exc:
        print(type(exc).__name__, exc)
asyncio.run(main())
"""


def _start_without_write_permission(path: Path) -> str:
    """What starting a system on ``path`` prints, in a process that file permissions
    bind (root, which they do not, drops the capabilities that bypass them)."""
    command = [sys.executable, "-c", _TRY_START, str(path)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot bind")
        caps = "-dac_override,-dac_read_search,-fowner"
        command = [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", *command]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("read_only", ["file", "directory"])
def test_a_read_only_journal_fails_the_start_naming_the_file(
    tmp_path: Path, read_only: str
) -> None:
    folder = tmp_path / "journal"
    folder.mkdir()
    path = folder / "tasks.db"
    asyncio.run(_journal(path, "kept"))
    content = path.read_bytes()
    if read_only == "file":
        path.chmod(0o444)
        cause = "attempt to write a readonly database, SQLITE_READONLY"
    else:  # the -wal and -shm files cannot be created
        folder.chmod(0o555)
        cause = "attempt to write a readonly database, SQLITE_READONLY_DIRECTORY"
    try:
        said = _start_without_write_permission(path)
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    assert said == (
        f"JournalStoreError cannot open journal {str(path)!r}: the file or its directory is "
        f"read-only for this process (OperationalError: {cause.split(', ')[0]}, "
        f"{cause.split(', ')[1]}); make both writable by this user or move JOURNAL_PATH"
    )
    assert path.read_bytes() == content
    assert file_rows(path) == [("kept", "pending")]


async def test_a_file_another_connection_keeps_locked_fails_the_start_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery, "BUSY_TIMEOUT", 0.1)
    path = tmp_path / "tasks.db"
    await _journal(path, "kept")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(JournalLockedError) as caught:
            async with ActorSystem(journal_config(path)):
                pass
        assert str(caught.value) == (
            f"cannot open journal {str(path)!r}: another connection holds the file "
            "(OperationalError: database is locked); give each system its own JOURNAL_PATH"
        )
    finally:
        other.close()
    assert file_rows(path) == [("kept", "pending")]


# -- a full disk: the process's file size limit ----------------------------------------------


def test_a_full_disk_is_a_clear_error_and_the_system_goes_on_from_memory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    worker = start_worker("jfault_worker.py", path, "full")
    try:
        out, _ = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0
    report, stopped = out.splitlines()
    said = json.loads(report)
    assert stopped == "stopped"
    # the first durable registration is answered as its write fails (it runs from
    # memory); once a write failed, the next ones are refused, naming the file and EFBIG
    error, message = said["event"]
    assert error == "JournalFullError"
    limit = message.split("RLIMIT_FSIZE = ")[1].split(" ")[0]
    assert message == (
        f"cannot write journal {str(path)!r}: the file reached this process's size limit "
        f"(RLIMIT_FSIZE = {limit} bytes, EFBIG) (OperationalError: disk I/O error, "
        "SQLITE_IOERR_WRITE); free space, raise the limit or move JOURNAL_PATH"
    )
    refused = [
        "JournalFullError",
        f"durable task 'echo' not registered: {message}; the journal tries that write again "
        "every 1 s and refuses new durable tasks until it succeeds (durable=False keeps a "
        "task in memory only)",
    ]
    assert said["registered"] == ["t0", refused, refused]
    assert (said["executed"], said["memory"]) == (0, 5)
    memory = [k for k in said["statuses"] if k not in ("before", "t0")]
    assert said["statuses"] == {"before": "pending", "t0": "completed", memory[0]: "completed"}
    assert said["errors"] >= 1
    # what was committed before is intact; the rest was never acknowledged as written
    assert file_rows(path) == [("before", "pending")]


# -- the file deleted or renamed while the system runs -------------------------------------


async def _journal_error(stream: object) -> tuple[str, str]:
    events = aiter(stream)  # type: ignore[call-overload]
    event = await asyncio.wait_for(anext(events), WAIT)
    while event.kind is not EventKind.JOURNAL_ERROR:
        event = await asyncio.wait_for(anext(events), WAIT)
    return event.detail["error"], event.detail["message"]


_GONE = (
    "cannot write journal {!r}: the file at that path is no longer the one this system "
    "opened (deleted, renamed or replaced while it ran); nothing written, the tasks go on in "
    "memory: put the file back at that path to journal again (a restart starts from what "
    "is there)"
)


async def test_a_journal_deleted_while_running_is_an_error_not_a_silent_loss(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    async with ActorSystem(journal_config(path)) as system:
        tm = system.task_manager
        await tm.register_task("add", add, (1, 2), task_id="a")
        for suffix in ("", "-wal", "-shm"):
            os.remove(f"{path}{suffix}")
        async with tm.events() as stream:
            await tm.register_task("add", add, (2, 3), task_id="b")
            assert await tm.execute_task("b", wait=True) == 5
            assert await _journal_error(stream) == ("JournalStoreError", _GONE.format(str(path)))
        metrics = await tm.get_metrics()
        assert metrics.journal_errors is not None
        assert metrics.journal_errors >= 1
    assert not path.exists()


def test_commits_survive_a_kill_9_after_the_wal_file_was_deleted(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    sigkill_when_ready(start_worker("jfault_worker.py", path, "wal-deleted"))
    assert file_rows(path) == [("before", "pending"), ("after", "pending"), ("marker", "pending")]


async def test_a_journal_renamed_away_and_back_gets_what_was_kept_pending(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    moved = tmp_path / "moved.db"
    async with ActorSystem(journal_config(path)) as system:
        tm = system.task_manager
        await tm.register_task("add", add, (1, 2), task_id="a")
        for suffix in ("", "-wal", "-shm"):
            os.rename(f"{path}{suffix}", f"{moved}{suffix}")
        async with tm.events() as stream:
            await tm.register_task("add", add, (2, 3), task_id="b")  # its write fails
            assert await _journal_error(stream) == ("JournalStoreError", _GONE.format(str(path)))
        with pytest.raises(JournalStoreError) as caught:
            await tm.register_task("add", add, (3, 4), task_id="c")
        assert str(caught.value) == (
            f"durable task 'add' not registered: {_GONE.format(str(path))}; the journal tries "
            "that write again every 1 s and refuses new durable tasks until it succeeds "
            "(durable=False keeps a task in memory only)"
        )
        for suffix in ("", "-wal", "-shm"):
            os.rename(f"{moved}{suffix}", f"{path}{suffix}")
        # registered again (idempotent): answered after a commit, which writes b's row
        assert await tm.register_task("add", add, (1, 2), task_id="a") == "a"
        await tm.register_task("add", add, (3, 4), task_id="c")
    assert file_rows(path) == [("a", "pending"), ("b", "pending"), ("c", "pending")]


def test_a_path_that_is_a_directory_or_under_none_is_refused_saying_so(tmp_path: Path) -> None:
    folder = tmp_path / "tasks.db"
    folder.mkdir()
    with pytest.raises(JournalStoreError) as caught:
        JournalStore(folder)
    assert str(caught.value) == (
        f"cannot open journal {str(folder)!r}: it is a directory (OperationalError: unable to "
        "open database file); JOURNAL_PATH names the file"
    )
    missing = tmp_path / "gone" / "tasks.db"
    with pytest.raises(JournalStoreError) as caught:
        JournalStore(missing)
    assert str(caught.value) == (
        f"cannot open journal {str(missing)!r}: its directory {str(missing.parent)!r} does not "
        "exist; create it or fix JOURNAL_PATH"
    )
    assert not missing.parent.exists()


async def test_a_start_that_fails_after_opening_the_journal_lets_the_file_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tasks.db"
    await _journal(path, "kept")

    def fails(*_: object) -> None:
        raise RuntimeError("no facade today")

    monkeypatch.setattr(system_module, "_facade_state", fails)
    with pytest.raises(RuntimeError, match=r"^no facade today$"):
        async with ActorSystem(journal_config(path)):
            pass
    monkeypatch.undo()
    async with ActorSystem(journal_config(path)) as system:  # not "this process has it open"
        assert await system.task_manager.get_task_status("kept") is TaskStatus.PENDING


async def test_a_failed_write_is_tried_again_by_a_timer_and_logged_once(
    tmp_path: Path, log_records: list[dict[str, Any]]
) -> None:
    configure_logging(True)
    path = tmp_path / "tasks.db"
    clock = FakeClock()
    written = threading.Event()

    def sink(message: Any) -> None:
        if message.record["message"].startswith("journal writes succeed again"):
            written.set()

    sink_id = logger.add(sink, level="WARNING")
    try:
        async with ActorSystem(journal_config(path), clock=clock) as system:
            tm = system.task_manager
            store = system._journal.store  # type: ignore[union-attr]
            with store._lock:
                pages = store._connection.execute("PRAGMA page_count").fetchone()[0]
                store._connection.execute(f"PRAGMA max_page_count = {pages}")
            pad = {"pad": "x" * 10_000}
            await tm.register_task("add", add, (1, 0), task_id="a", metadata=pad)  # fails
            for task_id in ("b", "c"):  # refused: nothing is tried, nothing logged
                with pytest.raises(JournalFullError):
                    await tm.register_task("add", add, (2, 0), task_id=task_id, metadata=pad)
            failed = (await tm.get_metrics()).journal_errors
            assert failed == 1
            with store._lock:
                store._connection.execute("PRAGMA max_page_count = 1000000")
            clock.advance(_journal_link.RETRY_EVERY)  # no batch comes: the timer tries
            assert await asyncio.to_thread(written.wait, WAIT)
            await tm.register_task("add", add, (3, 0), task_id="d")
    finally:
        logger.remove(sink_id)
    journal = [r for r in log_records if r["message"].startswith("journal write")]
    assert [(r["level"].name, r["message"]) for r in journal] == [
        (
            "ERROR",
            "journal write failed (1 records kept pending): cannot write journal "
            f"{str(path)!r}: the disk is full (OperationalError: database or disk is full); "
            "free space or move JOURNAL_PATH; until a write succeeds, the same error is not "
            "logged again (each is a journal_error event and counts in the journal_errors "
            "metric)",
        ),
        (
            "WARNING",
            "journal writes succeed again after 1 failed: the records kept pending are written",
        ),
    ]
    assert file_rows(path) == [("a", "pending"), ("d", "pending")]


async def test_a_stop_with_records_never_written_says_how_many(
    tmp_path: Path, log_records: list[dict[str, Any]]
) -> None:
    configure_logging(True)
    path = tmp_path / "tasks.db"
    async with ActorSystem(journal_config(path)) as system:
        tm = system.task_manager
        store = system._journal.store  # type: ignore[union-attr]
        with store._lock:
            pages = store._connection.execute("PRAGMA page_count").fetchone()[0]
            store._connection.execute(f"PRAGMA max_page_count = {pages}")
        pad = {"pad": "x" * 10_000}
        await tm.register_task("add", add, (1, 0), task_id="a", metadata=pad)  # not written
    closing_errors = [
        r["message"] for r in log_records if r["message"].startswith("closing the journal")
    ]
    assert closing_errors == [
        f"closing the journal with 1 records never written (cannot write journal "
        f"{str(path)!r}: the disk is full (OperationalError: database or disk is full); free "
        "space or move JOURNAL_PATH): the next start finds those tasks as the file last had "
        "them, or not at all"
    ]
    assert file_rows(path) == []
