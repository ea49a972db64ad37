"""``actorflow demo`` and ``actorflow bench``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def run(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:  # everything after `bench` is the suite's own options
        from benchmarks.__main__ import main as bench_main

        code: int = bench_main(arguments[1:])
        return code
    parser = argparse.ArgumentParser(prog="actorflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo_parser = sub.add_parser("demo", help="run a small service on the embedded actor system")
    demo_parser.add_argument(
        "--out", metavar="DIR", help="write the task graph and metrics files here"
    )
    demo_parser.add_argument(
        "--dashboard", action="store_true", help="serve the live dashboard and print its URL"
    )
    demo_parser.add_argument(
        "--port", type=int, default=0, help="the dashboard's port on 127.0.0.1 (0: any free one)"
    )
    demo_parser.add_argument(
        "--linger",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep the dashboard open this long after the demo (default: until Ctrl-C)",
    )
    bench = sub.add_parser("bench", help="run the benchmark suite (python -m benchmarks)")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(arguments)
    from actors._demo import DashboardOption, demo

    option = DashboardOption(args.port, args.linger) if args.dashboard else None
    return demo(sys.stdout, args.out, option)
