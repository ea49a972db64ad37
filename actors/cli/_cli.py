"""The ``actorflow`` command: ``actorflow demo`` and ``actorflow bench``."""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType

DESCRIPTION = (
    "actorflow: actor-model task management for Python services. "
    "Run 'actorflow demo' to see a small service run on an embedded actor system, "
    "'actorflow bench' for the benchmark suite."
)
BENCH_PROG = "actorflow bench"
# The benchmark suite as installed from a wheel; a source checkout has it as
# ``benchmarks/`` beside ``actors/`` (run there as ``python -m benchmarks``).
INSTALLED_BENCHMARKS = "actorflow_benchmarks"
BENCH_EXTRAS_HINT = "actorflow bench needs rich: pip install 'actorflow[rich]'"


def version() -> str:
    try:
        return metadata.version("actorflow")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _port(text: str) -> int:
    """``--port``: an int from 0 (any free port) to 65535, refused by argparse otherwise
    (the dashboard refused it only once the demo's actor system ran: a traceback)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        msg = f"must be an int from 0 (any free port) to 65535, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return port


def _linger(text: str) -> float:
    """``--linger``: a finite number of seconds >= 0 (NaN or a negative number was taken)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        msg = (
            f"must be a finite number of seconds >= 0, got {text!r} "
            "(leave --linger out to keep the dashboard open until Ctrl-C)"
        )
        raise argparse.ArgumentTypeError(msg)
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actorflow", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"actorflow {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo_parser = sub.add_parser(
        "demo",
        help="run a small service on an embedded actor system",
        description="Run a small service on an embedded actor system, with live progress "
        "and a report. Exit code 0 when every expectation held, 1 otherwise; "
        "on Ctrl-C (SIGINT) or SIGTERM its actor systems shut down and it exits 130 or 143.",
    )
    demo_parser.add_argument(
        "--out", metavar="DIR", help="write the task graph and metrics files here (and keep them)"
    )
    demo_parser.add_argument(
        "--dashboard", action="store_true", help="serve the live dashboard and print its URL"
    )
    demo_parser.add_argument(
        "--port", type=_port, default=0, help="the dashboard's port on 127.0.0.1 (0: any free one)"
    )
    demo_parser.add_argument(
        "--linger",
        type=_linger,
        default=None,
        metavar="SECONDS",
        help="keep the dashboard open this long after the demo (default: until Ctrl-C)",
    )
    sub.add_parser(
        "bench",
        help="run the benchmark suite ('actorflow bench --help' for its options)",
        add_help=False,
    )
    return parser


def _bench_package() -> str:
    """The import name of the benchmark suite that ships with this ``actors``: the
    repository's ``benchmarks/`` when ``actors`` is a source checkout (an editable install
    or PYTHONPATH), else the installed ``actorflow_benchmarks``. Never a ``benchmarks``
    package that merely happens to be importable (the current directory's, say)."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "benchmarks" / "__main__.py").is_file() and (checkout / "setup.cfg").is_file():
        loaded = sys.modules.get("benchmarks")
        if loaded is None:
            sys.path.insert(0, str(checkout))
            return "benchmarks"
        origin = Path(loaded.__file__ or "").resolve().parent
        if origin == checkout / "benchmarks":
            return "benchmarks"
    return INSTALLED_BENCHMARKS


def _load_bench() -> ModuleType | None:
    """The suite's ``__main__`` module; None (after printing what to install) without
    the ``rich`` extra it needs."""
    try:
        return importlib.import_module(f"{_bench_package()}.__main__")
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "rich":
            print(BENCH_EXTRAS_HINT, file=sys.stderr)
            return None
        raise


def _bench(arguments: list[str]) -> int:
    module = _load_bench()
    if module is None:
        return 2
    bench_main: Callable[..., int] = module.main
    return bench_main(arguments, prog=BENCH_PROG)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code.
    Without a command, the help goes to stdout and the exit code is 2 (as for any
    incomplete command line)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:  # everything after `bench` is the suite's own options
        return _bench(arguments[1:])
    parser = _parser()
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help(sys.stdout)
        return 2
    from actors.cli._demo import DashboardOption, demo

    option = DashboardOption(args.port, args.linger) if args.dashboard else None
    return demo(sys.stdout, args.out, option)
