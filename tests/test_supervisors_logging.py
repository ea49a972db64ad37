"""Supervisor events are loguru lines bound with the supervisor's and the child's ids;
the package is silent until enabled (library etiquette)."""

from __future__ import annotations

import threading
from typing import Any

from helpers import Echo
from loguru import logger
from tenacity import wait_none

from supervisors import (
    ChildSpec,
    Kill,
    RestartPolicy,
    Supervisor,
    SupervisorEvent,
    SupervisorEventKind,
)

TIMEOUT = 5.0


def run_to_escalation() -> None:
    escalated = threading.Event()

    def listen(event: SupervisorEvent) -> None:
        if event.kind is SupervisorEventKind.ESCALATED:
            escalated.set()

    ref = Supervisor.start(
        [ChildSpec("worker", Echo)],
        policy=RestartPolicy(wait=wait_none(), max_restarts=1, within_seconds=60),
        name="app",
        watchdog_interval=None,
        listener=listen,
    )
    try:
        worker = ref.proxy().child("worker").get(timeout=TIMEOUT)
        worker.tell(Kill())
        assert worker.ask("ping", timeout=TIMEOUT) == "ping"
        worker.tell(Kill())
        assert escalated.wait(TIMEOUT)
    finally:
        ref.stop(timeout=TIMEOUT)


def test_supervisor_lines_are_silent_by_default(log_records: list[dict[str, Any]]) -> None:
    run_to_escalation()
    assert [r for r in log_records if r["name"].startswith("supervisors")] == []


def test_supervisor_lines_are_bound_with_supervisor_and_child(
    log_records: list[dict[str, Any]],
) -> None:
    logger.enable("supervisors")
    run_to_escalation()
    lines = [
        (r["extra"].get("supervisor"), r["extra"].get("child"), r["level"].name, r["message"])
        for r in log_records
        if r["name"].startswith("supervisors._supervisor")
    ]
    assert lines[0] == ("app", "worker", "DEBUG", "child 'worker' started")
    assert (
        "app",
        "worker",
        "WARNING",
        "child 'worker' crashed: ActorKilled('killed by a Kill message')",
    ) in lines
    assert ("app", "worker", "INFO", "child 'worker' restart scheduled in 0.000s") in lines
    assert ("app", "worker", "DEBUG", "child 'worker' restarted") in lines
    assert ("app", "worker", "DEBUG", "child 'worker' escalated") in lines
    errors = [line for line in lines if line[2] == "ERROR"]
    assert len(errors) == 1
    assert errors[0][3].startswith(
        "restart intensity exceeded: 2 restarts in 60.0s (max 1) for child 'worker'"
    )
