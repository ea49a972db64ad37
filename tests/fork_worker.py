"""A preforking server in miniature (gunicorn ``--preload``); run as a script.

``python fork_worker.py DIRECTORY``: the "app module" uses the lazy
`unified_task_manager` with a journal (``DIRECTORY/master.db``) before any fork, as a
preloaded app may; then the master forks two workers. Each worker finds the master's
system refused, shuts it down (which stops nothing of the master's), journals to a file
of its own (``DIRECTORY/worker<N>.db``), runs a task and exits as a process does
(``sys.exit``: the interpreter's exit hooks run, and stop its own system), leaving its
system running. The master reaps them, runs a task again and exits the same way. Every
line is printed (and flushed) by the process named at its start.
"""

from __future__ import annotations

import asyncio
import os
import sys

from helpers import add

from actors import ActorSystemError, configure, unified_task_manager


async def task(x: int) -> int:
    return int(await unified_task_manager.submit(add, x, 100))


def say(line: str) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()  # before a fork too: a child would print the buffer again


def worker(n: int, directory: str) -> None:
    try:
        asyncio.run(task(n))
    except ActorSystemError as exc:
        say(f"worker {n}: refused: {str(exc).split(';')[0]}")
    asyncio.run(unified_task_manager.shutdown())
    configure({"JOURNAL_PATH": os.path.join(directory, f"worker{n}.db"), "CLEANUP_INTERVAL": 0})
    say(f"worker {n}: {asyncio.run(task(n))}")
    sys.exit(0)  # its system still runs: the exit hook stops it


def main(directory: str) -> None:
    configure({"JOURNAL_PATH": os.path.join(directory, "master.db"), "CLEANUP_INTERVAL": 0})
    say(f"master: {asyncio.run(task(1))}")
    children = []
    for n in (1, 2):
        pid = os.fork()
        if pid == 0:
            worker(n, directory)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        say(f"master: a worker exited with {os.waitstatus_to_exitcode(status)}")
    say(f"master: {asyncio.run(task(2))}")


if __name__ == "__main__":
    main(sys.argv[1])
