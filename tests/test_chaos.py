"""Chaos: 10,000 mixed tasks while a driver kills a random child every 20-100 ms.

One seed decides everything about the work (`plan`): each task is a coroutine or a plain
function and is one of

- ``ok``       returns ``3 * i + 1`` (some after a short ``asyncio.sleep``, some with a
               generous timeout and retries they never need);
- ``flaky``    raises on its first 1-2 attempts, then returns (retries enough);
- ``fail``     raises `Boom` on every attempt (0-2 retries);
- ``timeout``  blocks until cancelled (a coroutine awaits forever, a function waits on
               its cancellation token), with a 20-80 ms timeout and 0-1 retries;
- ``cancel``   blocks until the test cancels it (only the first task of a group).

Tasks come in groups: alone, chains of 2-4, and diamonds (a <- b, c <- d). A task with
an ancestor that does not complete ends ``cancelled`` with a `DependencyFailedError`;
otherwise it ends as its own kind says. The work goes in batches of about 40 tasks
(register by depth, execute each group's last task, cancel the ``cancel`` ones, wait
for all), two batches in flight at once; every third batch switches between the new and
the old task system, so both are under fire and tasks outlive a switch. A batch lasts
about as long as its slowest timeouts, which spreads the 10,000 tasks over some 15 s:
two or three hundred kills.

Meanwhile a driver thread (its own seeded generator) sends `Kill` to a random child of
the root supervisor every 20-100 ms. Restarts back off from 1 ms (capped at 10 ms) with
an intensity limit far above the kill rate; a child that is down buffers calls in its
handle with the default capacity (1,000), which a batch never fills.

It checks, and prints: every task ended in exactly the state, result or error its plan
says, as `wait_for_task` and `get_all_tasks` report it (lost = 0); every body was entered
exactly once per attempt the plan allows and completed at most once (duplicated = 0;
a ``timeout`` attempt that timed out while its function still waited for a pool thread
never enters the body, and a ``cancel`` task may be cancelled before its body starts);
every call returned within its bound (hung = 0); each child was restarted exactly as
many times as it was killed, by the supervisor's count and by the monitor's; and the
monitor, killed as often as the rest, counted every task in its final status.

``pytest -m soak`` (not part of CI) runs twenty more seeds with 30,000 tasks each, and
five with a kill every 1-5 ms.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from actors import (
    ActorsError,
    ActorSystem,
    DependencyFailedError,
    TaskCancelledError,
    TaskInfo,
    TaskStatus,
    TaskTimeoutError,
    UnifiedTaskManager,
    cancellation_token,
)
from actors.runtime._shared import CHILD_IDS
from supervisors import ChildHandle, Kill

T = TypeVar("T")

CALL_BOUND = 30.0
"""Real seconds any one call may take before it counts as hung."""
BATCH = 40
HANG_BOUND = 60.0
"""A blocked plain function gives up after this long (only if its token is never set)."""

COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED


class Boom(Exception):
    """What ``fail`` and ``flaky`` attempts raise."""


class Abandoned(Exception):
    """What a blocked plain function raises once its token is set (outcome discarded)."""


# -- the plan ------------------------------------------------------------------------------


@dataclass
class Spec:
    """One task of the plan and what must become of it."""

    index: int
    kind: str
    coroutine: bool
    deps: list[int]
    max_retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    fail_first: int = 0
    """``flaky``: attempts that raise before one returns."""
    sleep: float = 0.0
    """``ok`` coroutines: an ``asyncio.sleep`` before returning."""
    # What must happen, filled in by `plan`:
    status: TaskStatus = COMPLETED
    attempts: int = 1
    ancestors: set[int] = field(default_factory=set)
    dependency_failed: bool = False
    """An ancestor does not complete: this task is cancelled without running."""

    @property
    def name(self) -> str:
        return f"chaos-{self.index}"


def plan(seed: int, count: int) -> list[list[Spec]]:
    """``count`` tasks in groups, in registration order (dependencies first)."""
    rng = random.Random(seed)
    groups: list[list[Spec]] = []
    index = 0

    def new(deps: list[int], head: bool) -> Spec:
        nonlocal index
        spec = Spec(index, "ok", rng.random() < 0.5, deps)
        index += 1
        roll = rng.random()
        if roll < 0.50:
            spec.kind = "ok"
            if spec.coroutine and rng.random() < 0.3:
                spec.sleep = rng.uniform(0.0, 0.005)
            if rng.random() < 0.1:
                spec.timeout, spec.max_retries = 30.0, 2
        elif roll < 0.66:
            spec.kind = "flaky"
            spec.fail_first = rng.randint(1, 2)
            spec.max_retries = spec.fail_first + rng.randint(0, 1)
            spec.retry_delay = rng.choice([0.0, 0.001, 0.005])
        elif roll < 0.82:
            spec.kind = "fail"
            spec.max_retries = rng.randint(0, 2)
            spec.retry_delay = rng.choice([0.0, 0.001])
        elif roll < 0.92 or not head:
            spec.kind = "timeout"
            spec.timeout = rng.uniform(0.02, 0.08)
            spec.max_retries = rng.randint(0, 1)
        else:
            spec.kind = "cancel"
        return spec

    while index < count:
        room = count - index
        shape = rng.random()
        if shape < 0.5 or room < 4:
            groups.append([new([], True)])
        elif shape < 0.75:
            chain: list[Spec] = []
            for _ in range(rng.randint(2, 4)):
                chain.append(new([chain[-1].index] if chain else [], not chain))
            groups.append(chain)
        else:
            a = new([], True)
            b = new([a.index], False)
            c = new([a.index], False)
            d = new([b.index, c.index], False)
            groups.append([a, b, c, d])

    by_index = {s.index: s for g in groups for s in g}
    for group in groups:
        for spec in group:  # dependencies come first in a group
            for dep in spec.deps:
                spec.ancestors |= {dep} | by_index[dep].ancestors
            if any(by_index[a].kind in ("fail", "timeout", "cancel") for a in spec.ancestors):
                spec.status, spec.attempts = CANCELLED, 0
                spec.dependency_failed = True
            elif spec.kind in ("fail", "timeout"):
                spec.status, spec.attempts = FAILED, spec.max_retries + 1
            elif spec.kind == "cancel":
                spec.status, spec.attempts = CANCELLED, 0  # 0 or 1: it may have started
            elif spec.kind == "flaky":
                spec.status, spec.attempts = COMPLETED, spec.fail_first + 1
    return groups


def result_of(i: int) -> int:
    return 3 * i + 1


# -- the work --------------------------------------------------------------------------------


class Bodies:
    """The task functions, and thread-safe counts of what they did."""

    def __init__(self, specs: dict[int, Spec]) -> None:
        self.specs = specs
        self.lock = threading.Lock()
        self.entered: Counter[int] = Counter()
        self.completed: Counter[int] = Counter()
        self.forever = asyncio.Event()  # never set

    def enter(self, i: int) -> int:
        with self.lock:
            self.entered[i] += 1
            return self.entered[i]

    def succeed(self, i: int) -> int:
        with self.lock:
            self.completed[i] += 1
        return result_of(i)

    async def coroutine(self, i: int) -> int:
        spec = self.specs[i]
        attempt = self.enter(i)
        if spec.kind in ("timeout", "cancel"):
            await self.forever.wait()
        if spec.kind == "fail" or (spec.kind == "flaky" and attempt <= spec.fail_first):
            raise Boom(f"task {i} attempt {attempt}")
        if spec.sleep:
            await asyncio.sleep(spec.sleep)
        return self.succeed(i)

    def function(self, i: int) -> int:
        spec = self.specs[i]
        attempt = self.enter(i)
        if spec.kind in ("timeout", "cancel"):
            cancellation_token().wait(HANG_BOUND)
            raise Abandoned(f"task {i} attempt {attempt}")
        if spec.kind == "fail" or (spec.kind == "flaky" and attempt <= spec.fail_first):
            raise Boom(f"task {i} attempt {attempt}")
        return self.succeed(i)


_BODIES: list[Bodies] = []
"""The current run's bodies, for the journal-on variant (whose task functions must be
importable by name: these two)."""


async def durable_coroutine(i: int) -> int:
    return await _BODIES[-1].coroutine(i)


def durable_function(i: int) -> int:
    return _BODIES[-1].function(i)


class ChaosDriver:
    """Kills a random child every ``every`` seconds (a random pause in that range) until
    stopped, from its own thread."""

    def __init__(
        self,
        system: ActorSystem,
        seed: int,
        every: tuple[float, float],
        children: tuple[str, ...] = CHILD_IDS,
    ) -> None:
        self.system = system
        self.children = children
        self.rng = random.Random(seed)
        self.every = every
        self.kills: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="chaos-driver")

    def run(self) -> None:
        # Waiting on the stop event is the pacing: it returns early only to stop.
        while not self.stop.wait(self.rng.uniform(*self.every)):
            child = self.rng.choice(self.children)
            self.system.supervisor.child(child).tell(Kill())
            self.kills[child] += 1

    def __enter__(self) -> ChaosDriver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join()


@dataclass
class Figures:
    seed: int
    tasks: int = 0
    coroutines: int = 0
    by_backend: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    hung: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    restarts: dict[str, int] = field(default_factory=dict)
    metric_restarts: dict[str, int] = field(default_factory=dict)
    metric_statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    children: tuple[str, ...] = CHILD_IDS

    def line(self) -> str:
        kills = ", ".join(f"{c} {self.kills[c]}" for c in self.children)
        restarts = ", ".join(f"{c} {self.restarts.get(c, 0)}" for c in self.children)
        return (
            f"chaos seed {self.seed}: {self.tasks} tasks ({self.coroutines} coroutines, "
            f"{self.tasks - self.coroutines} functions; new {self.by_backend['new']}, "
            f"old {self.by_backend['old']}) in {self.seconds:.1f}s; kinds "
            f"{dict(sorted(self.by_kind.items()))}; ended {dict(sorted(self.by_status.items()))}; "
            f"{self.calls} calls; kills {sum(self.kills.values())} ({kills}); "
            f"restarts {sum(self.restarts.values())} ({restarts}); the monitor counted "
            f"restarts {sum(self.metric_restarts.values())} and statuses "
            f"{dict(sorted(self.metric_statuses.items()))}; "
            f"lost = {len(self.lost)}, duplicated = {len(self.duplicated)}, "
            f"hung = {len(self.hung)}"
        )


async def run_chaos(
    seed: int,
    count: int,
    kill_every: tuple[float, float] = (0.02, 0.1),
    journal: str | None = None,
) -> Figures:
    groups = plan(seed, count)
    specs = {s.index: s for g in groups for s in g}
    bodies = Bodies(specs)
    _BODIES.append(bodies)
    children = CHILD_IDS if journal is None else (*CHILD_IDS, "journal")
    figures = Figures(seed, tasks=len(specs), children=children)
    figures.coroutines = sum(1 for s in specs.values() if s.coroutine)
    figures.by_kind = Counter(s.kind for s in specs.values())
    ids: dict[int, str] = {}
    outcomes: dict[int, Any] = {}

    async def bounded(what: str, call: Awaitable[T], bound: float = CALL_BOUND) -> T | None:
        figures.calls += 1
        try:
            return await asyncio.wait_for(call, bound)
        except TimeoutError as exc:
            if isinstance(exc, TaskTimeoutError):
                raise
            figures.hung.append(what)
            return None

    async def register(tm: UnifiedTaskManager, spec: Spec) -> None:
        if any(d not in ids for d in spec.deps):
            figures.lost.append(f"register {spec.index}: a dependency was not registered")
            return
        body: Callable[..., Any] = bodies.coroutine if spec.coroutine else bodies.function
        if journal is not None:
            body = durable_coroutine if spec.coroutine else durable_function
        try:
            task_id = await bounded(
                f"register {spec.index}",
                tm.register_task(
                    spec.name,
                    body,
                    (spec.index,),
                    dependencies=[ids[d] for d in spec.deps],
                    max_retries=spec.max_retries,
                    retry_delay=spec.retry_delay,
                    timeout=spec.timeout,
                    task_type=spec.kind,
                ),
            )
        except ActorsError as exc:
            figures.lost.append(f"register {spec.index}: {exc!r}")
            return
        if task_id is not None:
            ids[spec.index] = task_id

    async def settle(tm: UnifiedTaskManager, index: int) -> None:
        task_id = ids.get(index)
        if task_id is None:
            return
        try:
            outcomes[index] = await bounded(f"wait {index}", tm.wait_for_task(task_id))
        except Exception as exc:
            outcomes[index] = exc

    async def expect(what: str, call: Awaitable[Any], value: Any) -> None:
        try:
            got = await bounded(what, call)
        except ActorsError as exc:
            got = exc
        if got != value:
            figures.lost.append(f"{what}: got {got!r}, expected {value!r}")

    loop = asyncio.get_running_loop()
    # The old manager runs plain functions on the loop's default executor: as many
    # threads as the pool has, so blocked functions do not starve the others.
    default_executor = ThreadPoolExecutor(32, thread_name_prefix="chaos-default")
    loop.set_default_executor(default_executor)
    config = {
        "MAX_CONCURRENT_TASKS": 200,
        "MAX_THREAD_WORKERS": 32,
        "RESTART_BACKOFF_INITIAL": 0.001,
        "RESTART_BACKOFF_MAX": 0.01,
        "RESTART_RESET_AFTER": 0.05,
        "RESTART_MAX_RESTARTS": 1_000_000,
        "RESTART_WITHIN_SECONDS": 1.0,
        "MAX_FINISHED_TASKS": 0,  # every task is checked at the end (the soak runs 30,000)
        "JOURNAL_PATH": journal,
    }
    batches: list[list[list[Spec]]] = [[]]
    for group in groups:
        if sum(len(g) for g in batches[-1]) >= BATCH:
            batches.append([])
        batches[-1].append(group)

    started = time.perf_counter()
    try:
        async with ActorSystem(config) as system:
            tm = system.task_manager
            in_flight: asyncio.Future[Any] | None = None
            with ChaosDriver(system, seed + 1, kill_every, children) as driver:
                for number, batch in enumerate(batches):
                    backend = "new" if (number // 3) % 2 == 0 else "old"
                    await expect("switch", tm.use_new_task_system(backend == "new"), None)
                    members = [s for g in batch for s in g]
                    figures.by_backend[backend] += len(members)
                    depth = 0
                    while True:  # dependencies first: by depth within the group
                        layer = [g[depth] for g in batch if depth < len(g)]
                        if not layer:
                            break
                        await asyncio.gather(*(register(tm, s) for s in layer))
                        depth += 1
                    sinks = [g[-1] for g in batch if g[-1].index in ids]
                    await asyncio.gather(
                        *(
                            expect(f"execute {s.index}", tm.execute_task(ids[s.index]), True)
                            for s in sinks
                        )
                    )
                    heads = [g[0] for g in batch if g[0].kind == "cancel" and g[0].index in ids]
                    await asyncio.gather(
                        *(
                            expect(f"cancel {s.index}", tm.cancel_task(ids[s.index]), True)
                            for s in heads
                        )
                    )
                    if in_flight is not None:
                        await in_flight
                    in_flight = asyncio.gather(*(settle(tm, s.index) for s in members))
                assert in_flight is not None
                await in_flight
            figures.kills = driver.kills

            # One call through every child: each has handled every Kill sent to it and has
            # been restarted; the supervisor counted each restart before answering this.
            await bounded("final call through the facade and managers", tm.get_all_tasks())
            await bounded("final call to the pool", tm.thread_pool.submit(int, "7"))
            await bounded("final call to the monitor", tm.get_metrics())
            rows = await bounded("which_children", system.supervisor.which_children()) or []
            figures.restarts = {row.id: row.restarts for row in rows}
            metrics = await bounded("metrics", tm.get_metrics())
            infos = await bounded("get_all_tasks", tm.get_all_tasks()) or []
            if metrics is not None:
                figures.metric_restarts = dict(metrics.restarts)
                figures.metric_statuses = {
                    TaskStatus(k).value: n for k, n in metrics.tasks_by_status.items()
                }
            figures.seconds = time.perf_counter() - started
            assert [row.status for row in rows] == ["running"] * len(children)
    finally:
        default_executor.shutdown(wait=True)
        _BODIES.remove(bodies)

    check(specs, ids, outcomes, infos, bodies, figures)
    return figures


def check(
    specs: dict[int, Spec],
    ids: dict[int, str],
    outcomes: dict[int, Any],
    infos: list[TaskInfo],
    bodies: Bodies,
    figures: Figures,
) -> None:
    """Compare each task with its plan; mismatches go to ``figures.lost`` or
    ``figures.duplicated``."""
    by_id = {info.task_id: info for info in infos}
    index_of = {task_id: i for i, task_id in ids.items()}
    for i, spec in specs.items():
        task_id = ids.get(i)
        info = by_id.get(task_id) if task_id is not None else None
        if info is None:
            figures.lost.append(f"task {i} ({spec.kind}): not registered or not found")
            continue
        figures.by_status[info.status.value] += 1
        entered, completed = bodies.entered[i], bodies.completed[i]
        if spec.kind == "cancel" and not spec.dependency_failed:
            # Cancelled while blocked, or before its attempt began (possibly after the
            # manager started the attempt, before the body was called).
            runs_ok = entered <= info.attempts <= 1
        elif spec.kind == "timeout" and not spec.dependency_failed:
            # An attempt's time runs from its start in the manager: one that timed out
            # while its function still waited for a pool thread never entered the body.
            runs_ok = entered <= info.attempts == spec.attempts
        else:
            runs_ok = entered == info.attempts == spec.attempts
        if not runs_ok:
            figures.duplicated.append(
                f"task {i} ({spec.kind}): body entered {entered} times, "
                f"{info.attempts} attempts recorded; plan: {spec.attempts}"
            )
        if completed != (spec.status is COMPLETED):
            figures.duplicated.append(f"task {i} ({spec.kind}): completed {completed} times")
        problem = mismatch(spec, task_id, info, outcomes.get(i), specs, index_of, by_id)
        if problem is not None:
            figures.lost.append(f"task {i} ({spec.kind}): {problem}")
    if len(infos) != len(specs):
        figures.lost.append(f"{len(infos)} tasks listed, {len(specs)} registered")


def mismatch(
    spec: Spec,
    task_id: str,
    info: TaskInfo,
    outcome: Any,
    specs: dict[int, Spec],
    index_of: dict[str, int],
    by_id: dict[str, TaskInfo],
) -> str | None:
    """What is wrong with one task's end, or None."""
    if info.status is not spec.status:
        return f"ended {info.status.value}, expected {spec.status.value}"
    error = info.error
    if spec.status is COMPLETED:
        if error is not None or outcome != result_of(spec.index):
            return f"result {outcome!r}, error {error!r}"
        return None
    if outcome is not error:
        return f"wait_for_task raised {outcome!r}, the task's error is {error!r}"
    if spec.dependency_failed:
        if not isinstance(error, DependencyFailedError) or error.task_id != task_id:
            return f"error {error!r}, expected a DependencyFailedError"
        culprit = index_of.get(error.dependency)
        if culprit not in spec.ancestors or specs[culprit].status is COMPLETED:
            return f"{error!r} names {error.dependency!r}, which is no failed ancestor"
        status = by_id[error.dependency].status.value
        expected = (
            f"task {info.name!r} ({task_id}) cancelled: its dependency "
            f"{by_id[error.dependency].name!r} ({error.dependency}) {status}"
        )
        return None if str(error) == expected else f"message {str(error)!r}"
    if spec.kind == "cancel":
        expected_error: BaseException = TaskCancelledError(f"task {task_id!r} was cancelled")
    elif spec.kind == "fail":
        expected_error = Boom(f"task {spec.index} attempt {spec.attempts}")
    else:
        expected_error = TaskTimeoutError(
            f"task {task_id!r} attempt {spec.attempts} timed out after {spec.timeout}s"
        )
    if type(error) is not type(expected_error) or str(error) != str(expected_error):
        return f"error {error!r}, expected {expected_error!r}"
    return None


def report(figures: Figures, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + figures.line())
        for label, items in (
            ("lost", figures.lost),
            ("duplicated", figures.duplicated),
            ("hung", figures.hung),
        ):
            for item in items[:10]:
                print(f"  {label}: {item}")


def assert_clean(figures: Figures) -> None:
    assert figures.lost == []
    assert figures.duplicated == []
    assert figures.hung == []
    assert sum(figures.kills.values()) > 0
    assert figures.restarts == {c: figures.kills[c] for c in figures.children}
    assert figures.metric_restarts == {c: n for c, n in figures.restarts.items() if n}
    # The monitor, killed as often as the rest, lost no lifecycle event either.
    assert figures.metric_statuses == figures.by_status


@pytest.mark.slow
async def test_chaos_10000_tasks_under_random_kills(capsys: pytest.CaptureFixture[str]) -> None:
    figures = await run_chaos(seed=20240607, count=10_000)
    report(figures, capsys)
    assert figures.tasks == 10_000
    assert set(figures.by_backend) == {"new", "old"}
    assert_clean(figures)


async def test_chaos_with_the_journal_on_and_killed_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Durable tasks (issue 14): the ``journal`` child is killed with the rest, and its
    file still holds every task in its final state (nothing lost)."""
    path = tmp_path / "tasks.db"
    figures = await run_chaos(seed=20261128, count=2_000, journal=str(path))
    report(figures, capsys)
    assert figures.kills["journal"] > 0
    assert_clean(figures)
    with closing(sqlite3.connect(path)) as connection, connection:
        journaled = Counter(
            dict(connection.execute("SELECT status, count(*) FROM tasks GROUP BY status"))
        )
    assert journaled == figures.by_status


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", range(1, 21))
async def test_chaos_soak(seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Many seeds, three times the tasks: ``pytest -m soak`` (not part of CI)."""
    figures = await run_chaos(seed=seed, count=30_000)
    report(figures, capsys)
    assert_clean(figures)


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", range(101, 106))
async def test_chaos_soak_with_a_kill_every_few_milliseconds(
    seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Twenty times the kill rate (every 1-5 ms): most calls meet a restarting child."""
    figures = await run_chaos(seed=seed, count=10_000, kill_every=(0.001, 0.005))
    report(figures, capsys)
    assert_clean(figures)


async def test_chaos_a_full_restart_buffer_and_a_burst_of_calls_during_a_kill(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17, item 1: the task manager is killed with 100 attempts running and its
    restart held until a burst of calls has filled its buffer (200) and every running
    attempt has ended into it. Calls past the buffer fail with `SystemOverloadedError`;
    no outcome is lost: 0 tasks stuck, every call ends."""
    from actors import SystemOverloadedError
    from actors.runtime._manager import TaskManagerActor

    capacity, n_tasks, running, burst = 200, 1000, 100, 1000
    restart_gate = threading.Event()
    restarting = threading.Event()
    original_on_start = TaskManagerActor.on_start
    starts = 0

    def on_start(self: TaskManagerActor) -> None:
        nonlocal starts
        starts += 1
        if starts > 1:  # the restart: hold it until the buffer is full
            restarting.set()
            restart_gate.wait(CALL_BOUND)
        original_on_start(self)

    monkeypatch.setattr(TaskManagerActor, "on_start", on_start)
    enqueued = threading.Condition()
    original_enqueue = ChildHandle._enqueue

    def enqueue(handle: ChildHandle, *args: Any) -> None:
        original_enqueue(handle, *args)
        with enqueued:
            enqueued.notify_all()

    monkeypatch.setattr(ChildHandle, "_enqueue", enqueue)
    loop = asyncio.get_running_loop()
    thread_gate = threading.Event()
    loop_gate = asyncio.Event()
    lock = threading.Lock()
    entered: Counter[int] = Counter()
    all_running = asyncio.Event()

    def enter(i: int) -> None:
        with lock:
            entered[i] += 1
            if len(entered) == running:
                loop.call_soon_threadsafe(all_running.set)

    async def coroutine(i: int) -> int:
        enter(i)
        await loop_gate.wait()
        if i % 10 == 0:
            raise Boom(f"task {i}")
        return result_of(i)

    def function(i: int) -> int:
        enter(i)
        thread_gate.wait(CALL_BOUND)
        if i % 10 == 0:
            raise Boom(f"task {i}")
        return result_of(i)

    config = {
        "MAX_CONCURRENT_TASKS": running,
        "MAX_THREAD_WORKERS": running,
        "MAILBOX_BUFFER_CAPACITY": capacity,
        "RESTART_BACKOFF_INITIAL": 0.0,
    }
    started = time.perf_counter()
    async with ActorSystem(config) as system:
        tm = system.task_manager
        ids = [
            await tm.register_task(f"burst-{i}", coroutine if i % 2 else function, (i,))
            for i in range(n_tasks)
        ]
        assert await asyncio.gather(*(tm.execute_task(t) for t in ids)) == [True] * n_tasks
        await asyncio.wait_for(all_running.wait(), CALL_BOUND)

        handle = system.supervisor.child("task_manager")
        handle.tell(Kill())
        assert await asyncio.to_thread(restarting.wait, CALL_BOUND)
        calls = [
            asyncio.ensure_future(
                tm.get_task_status(ids[i % n_tasks]) if i % 2 else tm.get_task(ids[i % n_tasks])
            )
            for i in range(burst)
        ]
        refused = 0
        for call in calls[capacity:]:
            try:
                await asyncio.wait_for(call, CALL_BOUND)
            except SystemOverloadedError:
                refused += 1
        assert handle.buffered_requests == capacity
        thread_gate.set()
        loop_gate.set()
        # Every running attempt ends while the task manager is down: its outcome waits
        # in the full buffer (the system's own messages are never refused).
        assert await asyncio.to_thread(
            _wait_for, enqueued, lambda: handle.buffered >= capacity + running, CALL_BOUND
        )
        buffered = handle.buffered
        restart_gate.set()

        answered = await asyncio.wait_for(asyncio.gather(*calls[:capacity]), CALL_BOUND)
        outcomes = await asyncio.gather(
            *(tm.wait_for_task(t, timeout=CALL_BOUND) for t in ids), return_exceptions=True
        )
        infos = await tm.get_all_tasks()
    seconds = time.perf_counter() - started

    stuck = [info.task_id for info in infos if info.status not in (COMPLETED, FAILED)]
    with capsys.disabled():
        print(
            f"\nburst during a kill: {n_tasks} tasks, {running} running at the kill, "
            f"{burst} calls ({capacity} buffered, {refused} refused), "
            f"{buffered - capacity} outcomes buffered past the cap, stuck = {len(stuck)}, "
            f"in {seconds:.1f}s"
        )
    assert stuck == []
    assert refused == burst - capacity
    assert len(answered) == capacity
    assert buffered >= capacity + running
    got = [repr(o) if isinstance(o, BaseException) else o for o in outcomes]
    assert got == [repr(Boom(f"task {i}")) if i % 10 == 0 else result_of(i) for i in range(n_tasks)]
    assert all(entered[i] == 1 for i in range(n_tasks))
    assert starts == 2


def _wait_for(cond: threading.Condition, predicate: Callable[[], bool], bound: float) -> bool:
    with cond:
        return cond.wait_for(predicate, bound)
