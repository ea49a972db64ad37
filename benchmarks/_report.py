"""Presenting a run: the machine it ran on, the rich table, the JSON document."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._core import Result, fmt

__all__ = [
    "load_average",
    "machine_info",
    "print_table",
    "results_table",
    "to_json",
    "write_json",
]

TABLE_WIDTH = 120
"""The printed table fits a terminal this wide."""


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """Where and with what the figures were measured."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "pykka": _version("pykka"),
        "actorflow": _version("actorflow"),
        "actorflow_commit": _git("rev-parse", "--short", "HEAD") or None,
        "actorflow_uncommitted_changes": bool(
            _git("status", "--porcelain", "--", "actors", "supervisors")
        ),
        "tenacity": _version("tenacity"),
        "loguru": _version("loguru"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "machine_name": platform.node(),
        "load_average_at_start": load_average(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _met_text(result: Result) -> str:
    if result.status == "error":
        return "[red]error[/red]"
    met = result.met
    if met is None:
        return "—"
    return "[green]yes[/green]" if met else "[red]no[/red]"


def _figure_text(result: Result, which: str) -> str:
    figure = result.actorflow if which == "actorflow" else result.baseline
    if figure is None:
        return result.status if result.status != "measured" or which == "actorflow" else "—"
    return escape(f"{fmt(figure.median)} {figure.unit}")


def _ratio_text(result: Result) -> str:
    ratios = result.ratios
    if not ratios:
        return "—"
    spread = "" if len(ratios) == 1 else f"\n[dim]({fmt(min(ratios))}-{fmt(max(ratios))})[/dim]"
    return f"{fmt(statistics.median(ratios))}x{spread}"


def results_table(
    results: Iterable[Result], title: str, titles: Mapping[str, str] | None = None
) -> Table:
    """Medians and ratios, one block per scenario; spreads of the figures, their labels
    and every sample are in the JSON document (``--json``)."""
    table = Table(
        title=title,
        caption="medians; ratio = actorflow / baseline per repeat (min-max below it); "
        "figure labels, spreads and samples: --json",
        show_lines=True,
    )
    table.add_column("scenario: measure", ratio=1)
    table.add_column("actorflow")
    table.add_column("baseline")
    table.add_column("ratio", no_wrap=True)
    table.add_column("goal")
    table.add_column("met", no_wrap=True)
    current = None
    for result in results:
        if result.scenario != current:
            current = result.scenario
            about = (titles or {}).get(current)
            heading = f"[bold]{escape(current)}[/bold]"
            if about:
                heading += f" [dim]{escape(about)}[/dim]"
            table.add_row(heading, "", "", "", "", "")
        measure = escape(result.measure)
        if result.note:
            measure += f"\n[dim]{escape(result.note)}[/dim]"
        table.add_row(
            measure,
            _figure_text(result, "actorflow"),
            _figure_text(result, "baseline"),
            _ratio_text(result),
            result.goal.text if result.goal is not None else "—",
            _met_text(result),
        )
    return table


def print_table(results: list[Result], title: str, titles: Mapping[str, str] | None = None) -> None:
    """Print the table at most `TABLE_WIDTH` columns wide (narrower on a narrow terminal)."""
    console = Console()
    width = min(console.width, TABLE_WIDTH) if console.is_terminal else TABLE_WIDTH
    Console(width=width).print(results_table(results, title, titles))


def to_json(
    results: list[Result],
    *,
    machine: dict[str, Any],
    quick: bool,
    repeats: int,
    scenarios: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    by_scenario: dict[str, dict[str, Any]] = {
        name: {**info, "results": []} for name, info in scenarios.items()
    }
    for result in results:
        by_scenario[result.scenario]["results"].append(result.to_json())
    return {
        "suite": "actorflow benchmarks",
        "quick": quick,
        "repeats": repeats,
        "ratio": "actorflow / baseline per repeat; median with min-max",
        "machine": machine,
        "scenarios": by_scenario,
    }


def _finite(value: Any) -> Any:
    """NaN and infinities become null: the document stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def write_json(path: str, document: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(_finite(document), out, indent=2, ensure_ascii=False, allow_nan=False)
        out.write("\n")
