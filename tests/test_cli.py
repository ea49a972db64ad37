"""The ``actorflow`` command: its help, version, ``bench`` and ``demo``."""

from __future__ import annotations

import io
import socket
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.progress import Progress, TextColumn

import actors.cli._demo
import benchmarks.__main__
from actors.cli._cli import run
from actors.cli._demo import print_line


def test_bench_options_reach_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[list[str], str]] = []

    def fake_main(argv: list[str], prog: str) -> int:
        seen.append((list(argv), prog))
        return 0

    monkeypatch.setattr(benchmarks.__main__, "main", fake_main)
    assert run(["bench", "--quick", "--scenario", "s1_fanout", "--repeats", "1"]) == 0
    assert seen == [(["--quick", "--scenario", "s1_fanout", "--repeats", "1"], "actorflow bench")]


def test_an_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["nope"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_demo_dashboard_options_reach_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    import actors.cli._demo
    from actors.cli._demo import DashboardOption

    seen: list[object] = []

    def fake_demo(out: object, out_dir: object, dashboard: object) -> int:
        seen.append(dashboard)
        return 0

    monkeypatch.setattr(actors.cli._demo, "demo", fake_demo)
    assert run(["demo", "--dashboard", "--port", "8123", "--linger", "2.5"]) == 0
    assert run(["demo"]) == 0
    assert seen == [DashboardOption(8123, 2.5), None]


def test_a_taken_dashboard_port_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    """It ended in a traceback (exit 1)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run(["demo", "--dashboard", "--port", str(port), "--linger", "0"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (
        f"actorflow demo: error: --port {port}: the dashboard cannot listen on "
        f"127.0.0.1:{port}: [Errno 98] Address already in use"
    )
    assert "Traceback" not in "\n".join(out)


def test_an_out_folder_that_cannot_be_made_exits_2_before_the_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo ran its few seconds, then ended in a traceback from mkdir (exit 1)."""
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    assert run(["demo", "--out", str(taken / "sub")]) == 2
    assert capsys.readouterr().out == (
        f"actorflow demo: error: --out {taken / 'sub'}: cannot make that folder: "
        f"[Errno 20] Not a directory: '{taken / 'sub'}'\n"
    )


def test_the_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: actorflow [-h] [--version] COMMAND ...\n")
    assert "``" not in out
    assert "'actorflow demo'" in " ".join(out.split())
    assert "    demo " in out
    assert "    bench " in out


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("usage: actorflow [-h] [--version] COMMAND ...\n")
    assert "positional arguments:" in captured.out
    assert captured.err == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"actorflow {metadata.version('actorflow')}\n"


def test_bench_help_names_the_actorflow_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["bench", "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: actorflow bench [-h] [--scenario NAME]")


def test_bench_without_rich_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in sys.modules if n == "benchmarks" or n.startswith("benchmarks.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich.console", None)
    monkeypatch.setitem(sys.modules, "rich.progress", None)
    assert run(["bench", "--quick"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "actorflow bench needs rich: pip install 'actorflow[rich]'\n"
    assert captured.out == ""


def _demo_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("actorflow-demo-*"))


def test_demo_without_out_leaves_no_folder_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[Path] = []

    async def fake_run(console: Console, out_dir: Path, dashboard: object = None) -> Any:
        used.append(out_dir)
        (out_dir / "tasks.mmd").write_text("flowchart LR\n")
        return actors.cli._demo.Expectations()

    monkeypatch.setattr(actors.cli._demo, "_run", fake_run)
    before = _demo_folders()
    out = io.StringIO()
    assert actors.cli._demo.demo(out) == 0
    [folder] = used
    assert folder.name.startswith("actorflow-demo-")
    assert not folder.exists()
    assert _demo_folders() == before
    assert "(those files were temporary and are removed: --out DIR keeps them)" in out.getvalue()


def test_demo_with_out_keeps_its_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async def fake_run(console: Console, out_dir: Path, dashboard: object = None) -> Any:
        (out_dir / "tasks.mmd").write_text("flowchart LR\n")
        return actors.cli._demo.Expectations()

    monkeypatch.setattr(actors.cli._demo, "_run", fake_run)
    out = io.StringIO()
    assert actors.cli._demo.demo(out, tmp_path) == 0
    assert (tmp_path / "tasks.mmd").read_text() == "flowchart LR\n"
    assert "temporary" not in out.getvalue()


def test_a_styled_line_does_not_colour_the_live_progress_bars() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=60, color_system="standard")
    progress = Progress(TextColumn("{task.description}"), console=console, auto_refresh=False)
    with progress:
        progress.add_task("fetch", total=1)
        print_line(console, "Kill -> task_manager", "bold red")
    output = buffer.getvalue()
    assert "\x1b[1;31mKill -> task_manager\x1b[0m" in output
    assert "fetch" in output
    assert "\x1b[1;31mfetch" not in output


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--port", "70000", "must be an int from 0 (any free port) to 65535, got '70000'"),
        ("--port", "-1", "must be an int from 0 (any free port) to 65535, got '-1'"),
        ("--port", "http", "must be an int from 0 (any free port) to 65535, got 'http'"),
        *(
            (
                "--linger",
                value,
                f"must be a finite number of seconds >= 0, got {value!r} "
                "(leave --linger out to keep the dashboard open until Ctrl-C)",
            )
            for value in ("nan", "inf", "-1", "soon")
        ),
    ],
)
def test_a_bad_demo_option_is_a_usage_error_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    why: str,
) -> None:
    # --port 70000 ran the demo's actor system, then died with a traceback when the
    # dashboard refused it; --linger nan or -1 was taken as it was.
    import actors.cli._demo

    ran: list[object] = []
    monkeypatch.setattr(actors.cli._demo, "demo", lambda *args: ran.append(args) or 0)
    with pytest.raises(SystemExit) as exit_info:
        run(["demo", "--dashboard", f"{option}={value}"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"actorflow demo: error: argument {option}: {why}"
    )
    assert ran == []
