"""The standard scenarios of tests/test_loops.py, run as a script in asyncio's debug mode.

``python -X dev -W error loops_worker.py LOOP`` (LOOP: asyncio, uvloop or eager) runs,
on event loops of that kind: a service's calls on one system under ``asyncio.run``
(dependencies, map, the thread pool, a failure, a timeout, a cancel, a stop while a
coroutine and a function run), the same through an `asyncio.Runner` that makes several
``run`` calls and a loop the script makes and closes itself, and two systems at once in
two threads, each with its own ``asyncio.run``. Every loop is in debug mode; a callback
that blocks its loop for a second is reported as asyncio reports it. Prints ``ok`` at
the end: the test then asserts that nothing else was printed (no warning, no "Task was
destroyed but it is pending!", no "coroutine ... was never awaited", no unclosed
resource at exit).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from actors import ActorSystem, TaskStatus, TaskTimeoutError, cancellation_token, result_of

SLOW_CALLBACK = 1.0
"""Seconds a callback may run before asyncio's debug mode reports it (0.1 by default:
on a loaded 2-core machine that reports scheduling noise, not a blocked loop)."""
WAIT = 10.0


def new_loop(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    def make() -> asyncio.AbstractEventLoop:
        if name == "uvloop":
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        if name == "eager":
            loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
        loop.set_debug(True)
        loop.slow_callback_duration = SLOW_CALLBACK
        return loop

    return make


def run(name: str, main: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(debug=True, loop_factory=new_loop(name)) as runner:
        runner.run(main)


async def fetch(i: int) -> int:
    await asyncio.sleep(0)
    return i


def parse(x: int) -> int:
    return 2 * x


def boom() -> None:
    raise ValueError("boom")


def waits_for_its_token() -> str:
    cancellation_token().wait(WAIT)
    return "late"


async def forever(started: asyncio.Event) -> None:
    started.set()
    await asyncio.get_running_loop().create_future()


async def service(system: ActorSystem, k: int = 0) -> None:
    """A service's calls on ``system``."""
    tm = system.task_manager
    page = await tm.register_task(f"fetch{k}", fetch, (k,))
    done = await tm.register_task(f"parse{k}", parse, (result_of(page),), task_type="cpu")
    assert await tm.execute_task(done, wait=True) == 2 * k
    assert await tm.map(fetch, range(300)) == list(range(300))
    assert await tm.map(parse, range(30), task_type="cpu") == [2 * i for i in range(30)]
    assert await tm.thread_pool.submit(parse, 21) == 42
    failing = await tm.register_task(f"boom{k}", boom)
    (failed,) = await asyncio.gather(tm.execute_task(failing, wait=True), return_exceptions=True)
    assert repr(failed) == "ValueError('boom')", failed
    started = asyncio.Event()
    timed = await tm.register_task(f"timed{k}", forever, (started,), timeout=0.05)
    (late,) = await asyncio.gather(tm.execute_task(timed, wait=True), return_exceptions=True)
    assert isinstance(late, TaskTimeoutError), late
    started = asyncio.Event()
    held = await tm.register_task(f"held{k}", forever, (started,))
    await tm.execute_task(held)
    await asyncio.wait_for(started.wait(), WAIT)
    assert await tm.cancel_task(held) is True
    assert await tm.get_task_status(held) is TaskStatus.CANCELLED
    await tm.get_metrics()
    await tm.render_prometheus()


async def stop_while_running(system: ActorSystem) -> None:
    """Leave a coroutine and a function running: the stop cancels them."""
    tm = system.task_manager
    started = asyncio.Event()
    await tm.execute_task(await tm.register_task("forever", forever, (started,)))
    await tm.execute_task(await tm.register_task("token", waits_for_its_token, task_type="cpu"))
    await asyncio.wait_for(started.wait(), WAIT)


async def one_system(new: bool) -> None:
    async with ActorSystem({"USE_NEW_TASK_SYSTEM": new, "CLEANUP_INTERVAL": 0}) as system:
        await service(system)
        answers: list[int] = []
        caller = threading.Thread(target=lambda: answers.append(system.blocking.submit(parse, 4)))
        caller.start()
        await asyncio.to_thread(caller.join, WAIT)
        assert answers == [8]
        await stop_while_running(system)


def main(name: str) -> None:
    for new in (True, False):
        run(name, one_system(new))

    # A Runner whose loop serves several runs: start, use, stop in separate ones.
    with asyncio.Runner(debug=True, loop_factory=new_loop(name)) as runner:
        system = ActorSystem({"CLEANUP_INTERVAL": 0})
        runner.run(system.__aenter__())
        runner.run(service(system, 1))
        runner.run(service(system, 2))
        runner.run(stop_while_running(system))
        runner.run(system.shutdown())

    # A loop the application makes, runs and closes itself (no asyncio.run).
    loop = new_loop(name)()
    try:
        system = ActorSystem({"CLEANUP_INTERVAL": 0})
        loop.run_until_complete(system.__aenter__())
        loop.run_until_complete(service(system, 3))
        loop.run_until_complete(system.shutdown())
    finally:
        loop.close()

    # Two systems at once, each on its own thread's loop.
    errors: list[BaseException] = []

    def in_a_thread(k: int) -> None:
        async def job() -> None:
            async with ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
                for _ in range(3):
                    await service(system, k)
                await stop_while_running(system)

        try:
            run(name, job())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=in_a_thread, args=(k,)) for k in (4, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
