"""``python -m benchmarks`` (also ``actorflow bench``): every scenario, then one table.

Each scenario measures actorflow and its baseline in this process, alternating A B A B
over the repeats, and reports ratios. The exit code is 0 whether goals are met or not
(this is a measurement); it is 1 when a scenario failed or left actors or threads
behind, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from types import ModuleType

import pykka
from loguru import logger
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from . import (
    peers,
    s1_fanout,
    s2_sequential,
    s3_thread_pool,
    s4_dag,
    s5_restart,
    s6_memory,
    s7_responsiveness,
    s8_scaling,
    s9_overhead,
    s10_backends,
    s11_savina,
    s12_journal,
)
from ._core import Result, Settings, check_no_actors, scenario_steps
from ._report import load_average, machine_info, print_table, to_json, write_json

SCENARIOS: tuple[ModuleType, ...] = (
    s1_fanout,
    s2_sequential,
    s3_thread_pool,
    s4_dag,
    s5_restart,
    s6_memory,
    s7_responsiveness,
    s8_scaling,
    s9_overhead,
    s10_backends,
    s11_savina,
    s12_journal,
    peers,
)
BY_NAME = {module.NAME: module for module in SCENARIOS}
THREAD_GRACE_SECONDS = 10.0
PROG = "python -m benchmarks"
FULL_REPEATS = 5
QUICK_REPEATS = 3
"""--quick is a smoke run: fewer repeats (and smaller sizes) keep it under a minute."""


def _scenario(value: str) -> str:
    if value in BY_NAME:
        return value
    matches = [name for name in BY_NAME if name.split("_")[0] == value]
    if len(matches) == 1:
        return matches[0]
    raise argparse.ArgumentTypeError(
        f"unknown scenario {value!r}; choose from {', '.join(BY_NAME)} (or s1 ... s12)"
    )


def _repeats(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"--repeats must be an int >= 1, got {value!r}")
    return number


def parse_args(argv: Sequence[str] | None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="actorflow's benchmark suite: each scenario as a ratio to its baseline, "
        "measured in the same process, alternating A B A B.",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        type=_scenario,
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(BY_NAME)}",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (the run takes < 60 s)")
    parser.add_argument("--json", metavar="PATH", help="write machine-readable results here")
    parser.add_argument(
        "--repeats",
        type=_repeats,
        metavar="N",
        help=f"repeats per side (default {FULL_REPEATS}; {QUICK_REPEATS} with --quick)",
    )
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:  # ``actorflow bench -- --quick`` hands the separator on
        args = args[1:]
    parsed = parser.parse_args(args)
    if parsed.repeats is None:
        parsed.repeats = QUICK_REPEATS if parsed.quick else FULL_REPEATS
    return parsed


def _new_threads(baseline: set[int]) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.ident not in baseline and t is not threading.current_thread() and t.is_alive()
    ]


def _leftover_threads(baseline: set[int]) -> tuple[list[str], list[str]]:
    """Threads the run started that are still alive after a grace period: (leaked,
    process-wide pools of a peer library that live until the process exits)."""
    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    library = [t for t in _new_threads(baseline) if t.name.startswith(peers.LIBRARY_THREADS)]
    for thread in _new_threads(baseline):
        if thread not in library:
            thread.join(max(0.0, deadline - time.monotonic()))
    leaked = [t.name for t in _new_threads(baseline) if t not in library]
    return leaked, [t.name for t in library]


def run(args: argparse.Namespace) -> int:
    chosen = args.scenario or list(BY_NAME)
    modules = [module for module in SCENARIOS if module.NAME in chosen]
    results: list[Result] = []
    scenarios: dict[str, dict[str, object]] = {}
    failures = 0
    baseline_threads = {t.ident for t in threading.enumerate() if t.ident is not None}
    # Taken before measuring: the code measured is what was imported at start.
    machine = machine_info()
    started = time.perf_counter()
    progress = Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    with progress:
        for module in modules:
            base = Settings(quick=args.quick, repeats=args.repeats)
            total = scenario_steps(module, base) or 1
            task = progress.add_task(module.NAME, total=total)
            settings = Settings(
                quick=args.quick,
                repeats=args.repeats,
                advance=lambda task=task: progress.advance(task),
            )
            info: dict[str, object] = {"title": module.TITLE}
            t0 = time.perf_counter()
            try:
                rows = module.run(settings)
            except Exception as exc:
                failures += 1
                progress.console.print(
                    f"[red]{module.NAME} failed:[/red]\n{escape(traceback.format_exc())}"
                )
                info["error"] = f"{type(exc).__name__}: {exc}"
                rows = [
                    Result(
                        module.NAME,
                        "failed",
                        None,
                        status="error",
                        note=f"{type(exc).__name__}: {exc}",
                    )
                ]
                try:
                    check_no_actors(module.NAME)
                except Exception as leak:
                    info["error"] = f"{info['error']}; {leak}"
            info["elapsed_s"] = round(time.perf_counter() - t0, 3)
            progress.update(task, completed=total)
            scenarios[module.NAME] = info
            results.extend(rows)
    elapsed = time.perf_counter() - started
    leftovers, library_threads = _leftover_threads(baseline_threads)
    if pykka.ActorRegistry.get_all():
        failures += 1
        print(f"pykka actors left alive: {pykka.ActorRegistry.get_all()}", file=sys.stderr)
        pykka.ActorRegistry.stop_all(timeout=10)
    if leftovers:
        failures += 1
        print(f"threads left running: {leftovers}", file=sys.stderr)
    machine["load_average_at_end"] = load_average()
    mode = "quick" if args.quick else "full"
    title = (
        f"actorflow benchmarks ({mode} run, {args.repeats} repeats, {elapsed:.0f} s) — "
        f"{machine['machine_name']}, {machine['cpu_count']} CPUs, Python {machine['python']}, "
        f"pykka {machine['pykka']}"
    )
    print_table(results, title, {module.NAME: module.TITLE for module in modules})
    if args.json:
        document = to_json(
            results, machine=machine, quick=args.quick, repeats=args.repeats, scenarios=scenarios
        )
        document["elapsed_s"] = round(elapsed, 3)
        document["leftover_threads"] = leftovers
        document["peer_library_threads"] = library_threads
        write_json(args.json, document)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run the suite; ``prog`` names the command in usage and errors (``actorflow bench``
    passes its own)."""
    args = parse_args(argv, prog)
    # The suite is the application here: it owns loguru's handlers. None while it
    # measures (S9 adds its own null sink); the default one is put back afterwards.
    logger.remove()
    try:
        return run(args)
    finally:
        logger.remove()
        logger.add(sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
