"""Micro-benchmark of the journal's groundwork (`actors.journal`), standalone.

    python -m benchmarks.journal_store [--rows 100000]

Measures, on a temporary file: batched writes (rows/s and commits/s by batch size, for
``JOURNAL_SYNC`` normal and full), status changes, the load of ``--rows`` rows (issue
14 asks recovery of 100,000 tasks in <= 3 s: the load is its first part), decoding their
arguments and functions, and the per-task cost of encoding a task (what a durable
``register_task`` would add).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from actors.journal import (
    Codec,
    JournalStore,
    JournalWriter,
    StatusChange,
    TaskRow,
    function_reference,
    resolve_function,
)


def work(x: int, *, scale: float = 1.0) -> float:
    return x * scale


def make_row(codec: Codec, index: int) -> TaskRow:
    task_id = f"task-{index:07d}"
    args, kwargs = codec.encode_args((index, [1, 2, 3]), {"scale": 0.5}, task=task_id)
    return TaskRow(
        task_id=task_id,
        name=f"work {index}",
        task_type="work",
        function=function_reference(work, task=task_id),
        args=args,
        kwargs=kwargs,
        priority=1,
        dependencies=(),
        max_retries=3,
        retry_delay=0.5,
        timeout=None,
        executor=None,
        circuit_breaker=None,
        description="",
        metadata="{}",
        on_dependency_failure="cancel",
        backend="new",
        status="pending",
        created_at=1.0,
        updated_at=1.0,
    )


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def writes(directory: Path, sync: str, batch: int, rows: list[TaskRow]) -> tuple[float, float]:
    """(rows/s, commits/s) writing ``rows`` as upserts in batches of ``batch``."""
    with JournalStore(directory / f"w-{sync}-{batch}.db", sync=sync) as store:
        seconds = timed(
            lambda: [store.write(rows[i : i + batch]) for i in range(0, len(rows), batch)]
        )
    commits = -(-len(rows) // batch)
    return len(rows) / seconds, commits / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    options = parser.parse_args()
    codec = Codec()
    count = options.rows

    encode = timed(lambda: [make_row(codec, i) for i in range(20_000)])
    print(f"encode a task (function_reference + encode_args + TaskRow): "
          f"{encode / 20_000 * 1e6:.1f} us")  # fmt: skip
    rows = [make_row(codec, i) for i in range(count)]

    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        print("batched upserts (new rows):")
        for sync in ("normal", "full"):
            for batch in (1, 10, 100, 1000):
                sample = rows[: min(count, 2_000 * batch)]
                per_row, commits = writes(directory, sync, batch, sample)
                print(f"  sync={sync:<6} batch={batch:>5}: {per_row:>10,.0f} rows/s "
                      f"{commits:>9,.0f} commits/s")  # fmt: skip

        path = directory / "load.db"
        with JournalStore(path) as store:
            fill = timed(lambda: [store.write(rows[i : i + 5000]) for i in range(0, count, 5000)])
            print(f"write {count:,} rows in batches of 5000: {fill:.2f} s "
                  f"({count / fill:,.0f} rows/s)")  # fmt: skip
            writer = JournalWriter(store, on_error=print)

            def changes() -> None:
                for i in range(count):
                    task_id = rows[i].task_id
                    writer.add_all((StatusChange(task_id, "queued", 2.0, executed=True),
                                    StatusChange(task_id, "running", 3.0, attempts=1)))  # fmt: skip
                    if i % 1000 == 999:
                        writer.flush()
                writer.flush()

            seconds = timed(changes)
            print(f"writer, 2 status changes per task coalesced, flush per 1000 tasks: "
                  f"{2 * count / seconds:,.0f} changes/s")  # fmt: skip
        file_size = path.stat().st_size  # closed: the WAL was checkpointed into it

        with JournalStore(path) as store:
            start = time.perf_counter()
            loaded = store.load()
            load = time.perf_counter() - start
            functions: dict[str, Callable[..., object]] = {}
            for task in loaded:
                if task.function not in functions:
                    functions[task.function] = resolve_function(task.function, task=task.task_id)
                codec.decode_args(task.args, task.kwargs, task=task.task_id)
            decode = time.perf_counter() - start - load
        assert len(loaded) == count
        print(f"load {count:,} rows: {load:.3f} s; decode their args and functions: "
              f"{decode:.3f} s; total {load + decode:.3f} s")  # fmt: skip
        print(f"file: {file_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
