"""The ``actorflow`` command passes everything after ``bench`` to the benchmark suite."""

from __future__ import annotations

import pytest

import benchmarks.__main__
from actors._cli import run


def test_bench_options_reach_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(list(argv))
        return 0

    monkeypatch.setattr(benchmarks.__main__, "main", fake_main)
    assert run(["bench", "--quick", "--scenario", "s1_fanout", "--repeats", "1"]) == 0
    assert seen == [["--quick", "--scenario", "s1_fanout", "--repeats", "1"]]


def test_an_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["nope"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_demo_dashboard_options_reach_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    import actors._demo
    from actors._demo import DashboardOption

    seen: list[object] = []

    def fake_demo(out: object, out_dir: object, dashboard: object) -> int:
        seen.append(dashboard)
        return 0

    monkeypatch.setattr(actors._demo, "demo", fake_demo)
    assert run(["demo", "--dashboard", "--port", "8123", "--linger", "2.5"]) == 0
    assert run(["demo"]) == 0
    assert seen == [DashboardOption(8123, 2.5), None]
