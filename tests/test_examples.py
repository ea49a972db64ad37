"""Every program in examples/ runs to completion and reports success (exit code 0)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))

EXPECTED = {
    "quickstart.py": ["task: 1+2=3 ok", "retried: fetched", "attempts: 3", "cleaned up: 5"],
    "supervision_tree.py": ["journal lines kept across restarts: 10"],
}


def test_every_example_has_expectations() -> None:
    assert sorted(p.name for p in EXAMPLES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for line in EXPECTED[path.name]:
        assert line in done.stdout.splitlines()
