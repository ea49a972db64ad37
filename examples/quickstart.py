"""The seed document's snippets as one program, on the lazy `unified_task_manager`,
and a result passed along a dependency with `result_of`.

Run it: ``python examples/quickstart.py``. It prints what each step did and exits 0.
"""

from __future__ import annotations

import asyncio

from loguru import logger

from actors import TaskStatus, result_of, unified_task_manager


def my_function(a: int, b: int, param1: str = "") -> str:
    return f"{a}+{b}={a + b} {param1}".strip()


def shout(text: str) -> str:
    return f"{text}!"


def cpu_bound_function(n: int) -> int:
    return sum(i * i for i in range(n))


attempts = 0


async def flaky_fetch() -> str:
    global attempts
    attempts += 1
    if attempts < 3:
        raise ConnectionError(f"attempt {attempts}: service unavailable")
    return "fetched"


async def main() -> int:
    # Task creation and execution
    task_id = await unified_task_manager.register_task(
        name="My Task",
        func=my_function,
        args=(1, 2),
        kwargs={"param1": "ok"},
        task_type="my_task_type",
        description="Description of my task",
        metadata={"key": "value"},
    )
    await unified_task_manager.execute_task(task_id)
    print("task:", await unified_task_manager.wait_for_task(task_id, timeout=10))

    # Thread pool for CPU-bound work
    result = await unified_task_manager.thread_pool.submit(cpu_bound_function, 10_000)
    print("thread pool:", result)

    # Retries
    flaky = await unified_task_manager.register_task(
        name="Flaky fetch", func=flaky_fetch, max_retries=3, retry_delay=0.05
    )
    print("retried:", await unified_task_manager.execute_task(flaky, wait=True))
    print("attempts:", (await unified_task_manager.get_task(flaky)).attempts)

    # Dependencies
    dependency_task_id = await unified_task_manager.register_task(
        name="Load", func=my_function, args=(20, 22)
    )
    dependent = await unified_task_manager.register_task(
        name="Report", func=my_function, args=(1, 1), dependencies=[dependency_task_id]
    )
    print("dependent:", await unified_task_manager.execute_task(dependent, wait=True))
    print(
        "dependency status:", (await unified_task_manager.get_task_status(dependency_task_id)).value
    )

    # Results flow along dependencies: result_of(task_id) stands for that task's result
    loud = await unified_task_manager.register_task(
        name="Shout", func=shout, args=(result_of(dependency_task_id),)
    )
    print("result_of:", await unified_task_manager.execute_task(loud, wait=True))

    # Timeouts
    async def slow() -> None:
        await asyncio.sleep(10)

    timed = await unified_task_manager.register_task(name="Slow", func=slow, timeout=0.05)
    try:
        await unified_task_manager.execute_task(timed, wait=True)
    except TimeoutError as exc:
        print("timed out:", type(exc).__name__)

    # Monitoring
    done = await unified_task_manager.get_tasks_by_status(TaskStatus.COMPLETED)
    print("completed:", len(done))

    # Clean up completed tasks (older than 0 s here; the seed uses 24 hours)
    cleaned_up = await unified_task_manager.cleanup_completed_tasks(0.0)
    logger.info(f"Cleaned up {cleaned_up} completed tasks")
    print("cleaned up:", cleaned_up)

    await unified_task_manager.shutdown()
    return 0 if cleaned_up == 6 and len(done) == 5 and attempts == 3 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
