"""S5 restart: how long a killed actor takes to answer again, and that nothing is lost.

Latency: a `SupervisedActor` child under a `Supervisor` with zero backoff
(``tenacity.wait_none()``). One cycle: ``Kill`` through the child's `ChildHandle`, then
``handle.ask(...)`` until it answers; the answer must come from a new incarnation.
p50 and p99 over the cycles. Baseline: raw pykka, ``stop()`` + ``start()`` + first
``ask`` of a plain ThreadingActor (what a hand-rolled restart costs).

In flight: an `ActorSystem` with ``RESTART_BACKOFF_INITIAL=0``; 100 tasks (half
coroutines, half plain functions) are running, held on a gate, when the task manager
is killed; the gates open at once. Every task must end with its own result, and no
task body may run twice.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from typing import Any

import pykka
from tenacity import wait_none

from actors import ActorSystem
from supervisors import ChildSpec, Kill, RestartPolicy, SupervisedActor, Supervisor

from ._core import BenchmarkError, Figure, Goal, Result, Settings, alternate, column

NAME = "s5_restart"
TITLE = "restart latency and tasks in flight"
SIDES = 3
IN_FLIGHT = 100
ANSWER_TIMEOUT = 10.0


class UrnChild(SupervisedActor):
    """Answers every ask with its incarnation's urn."""

    def on_receive(self, message: Any) -> Any:
        return self.actor_urn


class UrnActor(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return self.actor_urn


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _summary(latencies: list[float]) -> dict[str, float]:
    return {"p50": percentile(latencies, 50) * 1e3, "p99": percentile(latencies, 99) * 1e3}


def supervised_restarts(cycles: int) -> dict[str, float]:
    # Zero backoff; a restart intensity that 1,000 back-to-back kills never trips. The
    # window is short on purpose: the supervisor prunes its list of restart times on
    # every restart, and a long window would make us measure that list, not a restart.
    policy = RestartPolicy(
        wait=wait_none(), max_restarts=1_000_000, within_seconds=0.05, reset_after=60.0
    )
    ref = Supervisor.start([ChildSpec("echo", UrnChild)], policy=policy, name="bench")
    latencies: list[float] = []
    try:
        handle = ref.proxy().child("echo").get(timeout=ANSWER_TIMEOUT)
        urn = handle.ask("ping", timeout=ANSWER_TIMEOUT)
        for _ in range(cycles):
            started = time.perf_counter()
            handle.tell(Kill())
            answer = handle.ask("ping", timeout=ANSWER_TIMEOUT)
            latencies.append(time.perf_counter() - started)
            if answer == urn:
                raise BenchmarkError(f"{NAME}: the killed incarnation answered")
            urn = answer
        restarts = ref.proxy().which_children().get(timeout=ANSWER_TIMEOUT)[0].restarts
    finally:
        ref.stop(timeout=ANSWER_TIMEOUT)
    if restarts != cycles:
        raise BenchmarkError(f"{NAME}: {cycles} kills but {restarts} restarts")
    return _summary(latencies)


def pykka_restarts(cycles: int) -> dict[str, float]:
    ref = UrnActor.start()
    latencies: list[float] = []
    try:
        urn = ref.ask("ping", timeout=ANSWER_TIMEOUT)
        for _ in range(cycles):
            started = time.perf_counter()
            ref.stop()
            ref = UrnActor.start()
            answer = ref.ask("ping", timeout=ANSWER_TIMEOUT)
            latencies.append(time.perf_counter() - started)
            if answer == urn:
                raise BenchmarkError(f"{NAME}: the stopped pykka actor answered")
            urn = answer
    finally:
        ref.stop()
    return _summary(latencies)


def in_flight(count: int = IN_FLIGHT) -> dict[str, float]:
    """Kill the task manager with ``count`` tasks running; lost and duplicated tasks."""
    runs: Counter[int] = Counter()
    lock = threading.Lock()
    thread_gate = threading.Event()

    async def run() -> list[Any]:
        loop = asyncio.get_running_loop()
        loop_gate = asyncio.Event()
        all_running = asyncio.Event()

        def started(i: int) -> None:
            with lock:
                runs[i] += 1
                if len(runs) == count:
                    loop.call_soon_threadsafe(all_running.set)

        async def coroutine_body(i: int) -> int:
            started(i)
            await loop_gate.wait()
            return i * 2

        def function_body(i: int) -> int:
            started(i)
            thread_gate.wait(60)
            return i * 2

        config = {
            "RESTART_BACKOFF_INITIAL": 0.0,
            "MAX_CONCURRENT_TASKS": count,
            "MAX_THREAD_WORKERS": count,
        }
        async with ActorSystem(config) as system:
            tm = system.task_manager
            ids = await asyncio.gather(
                *(
                    tm.register_task(f"t{i}", function_body if i % 2 else coroutine_body, (i,))
                    for i in range(count)
                )
            )
            await asyncio.gather(*(tm.execute_task(task_id) for task_id in ids))
            await asyncio.wait_for(all_running.wait(), 30)
            system.supervisor.child("task_manager").tell(Kill())
            loop_gate.set()
            thread_gate.set()
            outcomes = await asyncio.gather(
                *(tm.wait_for_task(task_id, timeout=60) for task_id in ids),
                return_exceptions=True,
            )
            children = await system.supervisor.which_children()
        restarts = {child.id: child.restarts for child in children}
        if restarts.get("task_manager") != 1:
            raise BenchmarkError(f"{NAME}: the task manager was not restarted once: {restarts}")
        return outcomes

    try:
        outcomes = asyncio.run(run())
    finally:
        thread_gate.set()
    lost = sum(1 for i, outcome in enumerate(outcomes) if outcome != i * 2)
    duplicated = sum(1 for i in range(count) if runs[i] > 1)
    return {"lost": float(lost), "duplicated": float(duplicated)}


def run(settings: Settings) -> list[Result]:
    cycles = settings.size(1_000, 300)
    samples = alternate(
        settings,
        NAME,
        {
            "actorflow": lambda: supervised_restarts(cycles),
            "pykka": lambda: pykka_restarts(cycles),
            "in_flight": in_flight,
        },
    )
    rows = []
    for key, limit in (("p50", 2.0), ("p99", 3.0)):
        rows.append(
            Result(
                NAME,
                f"{key} over {cycles:,} cycles: Kill -> first answer vs pykka stop+start+ask",
                Figure(f"Kill -> answer, {key}", "ms", column(samples["actorflow"], key)),
                Figure(f"stop + start + ask, {key}", "ms", column(samples["pykka"], key)),
                Goal(f"{key} ≤ {limit:g}x pykka", "ratio", limit),
            )
        )
    rows.append(
        Result(
            NAME,
            f"task_manager killed with {IN_FLIGHT} tasks in flight: tasks lost",
            Figure("tasks lost", f"of {IN_FLIGHT}", column(samples["in_flight"], "lost")),
            goal=Goal("lost = 0", "actorflow", 0.0, exact=True),
            note="no baseline: a raw pykka actor has no restart to survive",
        )
    )
    rows.append(
        Result(
            NAME,
            f"task_manager killed with {IN_FLIGHT} tasks in flight: bodies run twice",
            Figure(
                "tasks run twice", f"of {IN_FLIGHT}", column(samples["in_flight"], "duplicated")
            ),
            goal=Goal("= 0", "actorflow", 0.0, exact=True),
        )
    )
    return rows
