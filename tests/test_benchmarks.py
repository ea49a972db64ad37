"""The benchmark suite runs end to end (``--quick``), so it never rots.

No timing is asserted here: the figures are measurements, read by people from the
table and the JSON. What is asserted is that every scenario ran, produced numbers and
ratios computed from what it measured, and that the table names every scenario.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import BY_NAME
from benchmarks._core import Goal

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = list(BY_NAME)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--repeats", "1", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    document = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    return done, document


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_run_exits_zero(quick_run: tuple[subprocess.CompletedProcess[str], Any]) -> None:
    done, _ = quick_run
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_json_has_every_scenario_with_numbers(quick_run: tuple[Any, dict[str, Any]]) -> None:
    _, document = quick_run
    assert document["quick"] is True
    assert document["repeats"] == 1
    machine = document["machine"]
    for key in ("python", "pykka", "platform", "cpu_count", "machine_name", "date"):
        assert machine[key], key
    assert sorted(document["scenarios"]) == sorted(SCENARIOS)
    for name, scenario in document["scenarios"].items():
        assert "error" not in scenario, (name, scenario.get("error"))
        rows = scenario["results"]
        assert rows, name
        measured = [row for row in rows if row["status"] == "measured"]
        if name == "peers":
            # Ray and Dask are optional: a peer either ran or says it is not installed.
            assert all(row["status"] in ("measured", "not installed") for row in rows)
        else:
            assert measured == rows, name
            assert any(row["ratio"] is not None for row in rows), name
        for row in measured:
            figure = row["actorflow"]
            assert figure["unit"], (name, row["measure"])
            assert len(figure["samples"]) == 1
            assert all(_number(v) for v in figure["samples"]), (name, row["measure"])
            assert _number(figure["median"])
            if row["baseline"] is not None:
                assert all(_number(v) for v in row["baseline"]["samples"])
                ratio = row["ratio"]
                assert _number(ratio["median"]), (name, row["measure"])
                # The ratio is computed from the two figures, never typed in.
                expected = figure["samples"][0] / row["baseline"]["samples"][0]
                assert ratio["samples"] == [pytest.approx(expected)]
            if row["goal"] is not None:
                assert row["met"] in (True, False), (name, row["measure"])


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_output_fits_120_columns_without_warnings_or_tracebacks(
    quick_run: tuple[subprocess.CompletedProcess[str], Any],
) -> None:
    done, _ = quick_run
    lines = done.stdout.splitlines() + done.stderr.splitlines()
    assert len(done.stdout.splitlines()) > 10  # the table was printed
    assert [line for line in lines if len(line) > 120] == []
    noisy = [line for line in lines if "traceback" in line.lower() or "warning" in line.lower()]
    assert noisy == []


@pytest.mark.timeout(150)
def test_nothing_was_lost_when_the_task_manager_was_killed(
    quick_run: tuple[Any, dict[str, Any]],
) -> None:
    _, document = quick_run
    rows = document["scenarios"]["s5_restart"]["results"]
    lost = [row for row in rows if "tasks lost" in row["measure"]]
    assert [row["actorflow"]["samples"] for row in lost] == [[0.0]]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_table_names_every_scenario(
    quick_run: tuple[subprocess.CompletedProcess[str], Any],
) -> None:
    done, _ = quick_run
    for name in SCENARIOS:
        assert name in done.stdout, name
    for header in ("scenario", "actorflow", "baseline", "ratio", "goal", "met"):
        assert header in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_the_backends_scenario_reports_both_ratios(quick_run: tuple[Any, dict[str, Any]]) -> None:
    _, document = quick_run
    assert "s10_backends" in SCENARIOS
    rows = document["scenarios"]["s10_backends"]["results"]
    goals = {row["goal"]["text"]: row for row in rows if row["goal"] is not None}
    assert sorted(goals) == ["≤ 1.1x bare", "≥ 0.9x bare"]

    process = goals["≥ 0.9x bare"]  # (a) CPU-bound work on the process executor
    assert process["goal"]["at_least"] is True
    assert process["actorflow"]["unit"] == process["baseline"]["unit"] == "x"
    thread = goals["≤ 1.1x bare"]  # (b) GIL-releasing work on the thread executor
    assert thread["goal"]["at_least"] is False
    assert thread["actorflow"]["unit"] == thread["baseline"]["unit"] == "ms/fan-out"
    for row in (process, thread):
        for side in ("actorflow", "baseline"):
            assert all(_number(v) and v > 0 for v in row[side]["samples"]), (row["measure"], side)
        assert _number(row["ratio"]["median"])
        assert row["ratio"]["median"] > 0
        assert row["met"] in (True, False)
        limit, at_least = row["goal"]["limit"], row["goal"]["at_least"]
        ratio = row["ratio"]["median"]
        assert row["met"] == (ratio >= limit if at_least else ratio <= limit)


@pytest.mark.timeout(150)
def test_the_savina_scenario_reports_four_workloads_against_bare_pykka(
    quick_run: tuple[Any, dict[str, Any]],
) -> None:
    _, document = quick_run
    rows = document["scenarios"]["s11_savina"]["results"]
    workloads = ("ping-pong", "counting actor", "fork-join throughput", "thread ring")
    assert [row["measure"].split(",")[0] for row in rows] == [w for w in workloads for _ in "hr"]
    for handle, ref in zip(rows[::2], rows[1::2], strict=True):
        assert handle["measure"].endswith("supervised via ChildHandle vs bare")
        assert ref["measure"].endswith("supervised via raw ActorRef vs bare")
        assert handle["goal"]["text"] == "≤ 1.1x bare"
        assert ref["goal"] is None
        assert handle["baseline"] == ref["baseline"]  # one bare measurement, two ratios
        assert handle["baseline"]["label"] == "bare pykka.ThreadingActor"
        for row in (handle, ref):
            assert row["actorflow"]["unit"] == row["baseline"]["unit"] == "µs/msg"
            assert all(_number(v) and v > 0 for v in row["actorflow"]["samples"])
        ratio = handle["ratio"]["median"]
        assert handle["met"] == (ratio <= 1.1)


def test_a_speedup_goal_is_met_from_above() -> None:
    goal = Goal("≥ 0.9x bare", "ratio", 0.9, at_least=True)
    assert goal.met(0.95)
    assert goal.met(0.9)
    assert not goal.met(0.85)
    assert Goal("≤ 1.1x bare", "ratio", 1.1).met(1.0)
