"""The demo's second phase: durable tasks survive a restart (``JOURNAL_PATH``).

Phase one starts a system with a journal in the output directory and registers six
``invoice`` tasks (ids ``invoice-1`` ... ``invoice-6``): two complete, one is running
(it waits for the restart) and three are left pending when the system shuts down.
Phase two starts a new system on the same file, runs the same start-up code (the
registrations are idempotent: the journaled ids come back), and finishes the work: the
completed tasks keep their results and do not run again, the running one comes back
marked recovered and runs again, the pending ones run. Then a cleanup empties the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from actors.api import ActorSystem
from actors.cli._checks import print_line

if TYPE_CHECKING:
    from rich.console import Console

    from actors.api import UnifiedTaskManager
    from actors.cli._checks import Expectations

__all__ = ["durable_phase"]

INVOICES = 6
_RUNS: list[int] = []
_PHASE_ONE: list[asyncio.Event] = []
"""Set while phase one runs: invoice 3 then signals it started, and waits forever."""


async def invoice(number: int) -> int:
    """Bills invoice ``number`` (its total in cents). In phase one, invoice 3 is still
    running when the service goes down."""
    _RUNS.append(number)
    if number == 3 and _PHASE_ONE:
        _PHASE_ONE[-1].set()
        await asyncio.Event().wait()  # cancelled by the shutdown
    return number * 1250


async def _start_up(tm: UnifiedTaskManager) -> list[str]:
    """The service's start-up code: the same in both phases (idempotent)."""
    return [
        await tm.register_task("invoice", invoice, (n,), task_id=f"invoice-{n}")
        for n in range(1, INVOICES + 1)
    ]


async def durable_phase(console: Console, out_dir: Path, checks: Expectations) -> None:
    journal = out_dir / "journal.db"
    journal.unlink(missing_ok=True)
    config = {"JOURNAL_PATH": str(journal), "CLEANUP_INTERVAL": 0}
    _RUNS.clear()
    started = asyncio.Event()
    _PHASE_ONE.append(started)
    try:
        print_line(console, f"durable tasks: phase 1 with JOURNAL_PATH={journal.name}", "bold")
        async with ActorSystem(config) as system:
            tm = system.task_manager
            ids = await _start_up(tm)
            first = [await tm.execute_task(task_id, wait=True) for task_id in ids[:2]]
            await tm.execute_task(ids[2])
            await asyncio.wait_for(started.wait(), 10)
            print_line(console, "  2 invoices done, invoice-3 running, 3 pending: shut down")
        runs_before = list(_RUNS)
        _PHASE_ONE.clear()
        print_line(console, "durable tasks: phase 2 restarts from the journal", "bold")
        async with ActorSystem(config) as system:
            tm = system.task_manager
            again = await _start_up(tm)
            results = [await tm.get_task_result(task_id) for task_id in ids[:2]]
            recovered = await tm.wait_for_task(ids[2], timeout=10)
            info = await tm.get_task(ids[2])
            rest = [await tm.execute_task(task_id, wait=True) for task_id in ids[3:]]
            print_line(
                console,
                f"  invoice-3 recovered {info.recoveries} time(s); "
                f"{len(rest)} pending invoices run; runs {sorted(_RUNS)}",
            )
            removed = await tm.cleanup_completed_tasks(max_age=0)
        with closing(sqlite3.connect(journal)) as connection, connection:
            left = connection.execute("SELECT count(*) FROM tasks").fetchone()[0]
            integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        _PHASE_ONE.clear()
    checks.check(
        "durable: phase 1 completed 2 invoices and left invoice-3 running",
        first == [1250, 2500] and runs_before == [1, 2, 3],
    )
    checks.check("durable: the start-up code's registrations are idempotent", again == ids)
    checks.check(
        "durable: completed tasks keep their results and do not run again",
        results == [1250, 2500] and _RUNS.count(1) == 1 and _RUNS.count(2) == 1,
    )
    checks.check(
        "durable: the running task came back, marked recovered, and ran again",
        recovered == 3750 and info.recoveries == 1 and _RUNS.count(3) == 2,
    )
    checks.check("durable: the pending tasks ran after the restart", rest == [5000, 6250, 7500])
    checks.check(
        "durable: a cleanup empties the journal, which passes integrity_check",
        removed == INVOICES and left == 0 and integrity == "ok",
    )
