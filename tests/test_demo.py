"""``actorflow demo``: it runs end to end, reports what happened, and fails loudly."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import actors.cli._demo
from actors.cli._demo import demo

REPORT_LINES = [
    "no task lost: 39 of 39 registered tasks accounted for, all finished",
    "task_manager killed mid-run and restarted 1 time; metrics.restarts = {'task_manager': 1}",
    "supervision tree: task_monitor running (restarts 0), thread_pool running (restarts 0), "
    "legacy_task_manager running (restarts 0), task_manager running (restarts 1), "
    "facade running (restarts 0)",
    "old task system: 3 tasks found after the switch (backend=old), 3 completed",
    "pipeline: 28 tasks completed; report: 6240 words; most common: graph, actor, circuit",
    "flaky-feed: 'feed: 42 items' after 3 attempts; download-archive: TaskTimeoutError after "
    "2 attempts; unpack-archive: cancelled",
    "circuit external-api: closed -> open -> half_open -> closed",
    "retries 3, timeouts 2, failures 4",
    '  actorflow_actor_restarts_total{child="task_manager"} 1.0',
    '  actorflow_circuit_breaker_state{breaker="external-api",state="closed"} 1.0',
    "cleanup_completed_tasks(0.0) removed 39 finished tasks; 0 left",
    "durable tasks: phase 1 with JOURNAL_PATH=journal.db",
    "  2 invoices done, invoice-3 running, 3 pending: shut down",
    "durable tasks: phase 2 restarts from the journal",
    "  invoice-3 recovered 1 time(s); 3 pending invoices run; runs [1, 2, 3, 3, 4, 5, 6]",
    "all 27 expectations met",
]

FILES = ["tasks.mmd", "tasks.dot", "metrics.prom"] + (["tasks.svg"] if shutil.which("dot") else [])


def check_files(out_dir: Path, lines: list[str]) -> None:
    for name in FILES:
        assert f"wrote {out_dir / name}" in lines
    assert (out_dir / "tasks.mmd").read_text().startswith("flowchart LR\n")
    assert (out_dir / "tasks.dot").read_text().startswith("digraph")
    assert 'actorflow_tasks{status="completed"} 34.0' in (out_dir / "metrics.prom").read_text()
    if "tasks.svg" in FILES:
        assert "<svg" in (out_dir / "tasks.svg").read_text()


def test_the_console_script_runs_the_cli() -> None:
    [script] = entry_points(group="console_scripts", name="actorflow")
    assert script.value == "actors.__main__:main"


def test_actorflow_demo_command(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "actors", "demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    for line in REPORT_LINES:
        assert line in lines
    check_files(tmp_path, lines)
    assert elapsed < 30.0


def test_demo_in_process(tmp_path: Path) -> None:
    out = io.StringIO()
    assert demo(out, tmp_path) == 0
    lines = out.getvalue().splitlines()
    for line in REPORT_LINES:
        assert line in lines
    check_files(tmp_path, lines)


def test_a_failed_expectation_is_named_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actors.cli._demo, "expected_report", lambda: "something else")
    out = io.StringIO()
    assert demo(out, tmp_path) == 1
    lines = out.getvalue().splitlines()
    assert lines[-2:] == ["1 of 27 expectations FAILED:", "  - the report is right"]


def test_without_the_extras_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich.console", None)
    out = io.StringIO()
    assert demo(out) == 2
    assert out.getvalue() == (
        "actorflow demo needs rich and prometheus_client: pip install 'actorflow[demo]'\n"
    )


def test_demo_with_the_dashboard_prints_its_url(tmp_path: Path) -> None:
    from actors.cli._demo import DashboardOption

    out = io.StringIO()
    assert demo(out, tmp_path, DashboardOption(linger=0)) == 0
    lines = [line for line in out.getvalue().splitlines() if line.startswith("dashboard: ")]
    assert len(lines) == 1
    assert re.fullmatch(r"dashboard: http://127\.0\.0\.1:\d+/", lines[0])
