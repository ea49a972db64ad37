"""Every program in examples/ runs to completion and reports success (exit code 0)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))

EXPECTED = {
    "fastapi_service.py": [
        "POST /tasks fibonacci: 202",
        "fibonacci: completed -> 2880067194370816120",
        "word_count: completed -> {'words': 8, 'distinct': 7}",
        "fetch: completed -> {'url': 'https://example.org/', 'status': 200, 'bytes': 512}",
        "GET /tasks?status=completed: 3 tasks",
        "GET /tasks?task_type=cpu: ['fibonacci', 'word_count']",
        "GET /tasks/no-such-task: 404",
        "POST /tasks with an unknown job: 422 [{'loc': ['body'], 'type': 'union_tag_invalid'}]",
        "GET /tasks?offset=1&limit=1: 1 of 3",
        "POST /tasks with a 262145-byte body: 413",
        "GET /metrics: text/plain; version=0.0.4; charset=utf-8",
        '  actorflow_tasks{status="completed"} 3.0',
    ],
    "quickstart.py": [
        "task: 1+2=3 ok",
        "retried: fetched",
        "attempts: 3",
        "result_of: 20+22=42!",
        "cleaned up: 6",
    ],
    "supervision_tree.py": ["journal lines kept across restarts: 10"],
}


def test_every_example_has_expectations() -> None:
    assert sorted(p.name for p in EXAMPLES) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for line in EXPECTED[path.name]:
        assert line in done.stdout.splitlines()
