"""A model of the task system, checked step by step against the real one (hypothesis).

`TaskSystemMachine` drives one `ActorSystem` per example through the public API —
register (with dependencies, duplicate ids, unknown and cross-system dependencies),
execute, cancel, add_dependency (cycles included), cleanup as the fake clock moves on,
switches between the old and the new task system — and a pure-Python `Model` through
the same steps. Each task (a coroutine or a plain function) runs a script, one outcome
per attempt: ``ok`` (return), ``fail`` (raise `Boom`: retried while retries remain) or
``hang`` (block until the test releases the attempt, which then returns or raises, or
until the task is cancelled). Scripts, retries, releases and dependencies decide every
outcome, so after each step the model says where each task must be; the test waits
until the system is there (outcomes delivered, hanging attempts started; each wait
bounded) and compares everything: which ids exist, statuses, attempts, dependencies,
owners, results and errors, how many times each body ran and completed, and that a
cancelled plain function's cancellation token was set.

Every call runs on one private event loop per example (`asyncio.Runner`), so coroutine
bodies run only while a step runs; plain functions run on pool threads. Where the
system may legitimately differ by timing — which failed dependency a cancelled task
names, when several failed — the model accepts any of them.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from actors import (
    ActorSystem,
    CancellationToken,
    DependencyCycleError,
    DependencyFailedError,
    DuplicateTaskError,
    InvalidTaskError,
    TaskCancelledError,
    TaskNotFoundError,
    TaskStatus,
    cancellation_token,
)
from actors.core import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, WAITING
from supervisors.testing import FakeClock

WAIT = 3.0
"""Upper bound, in real seconds, on waiting for the system to reach the model (every
task here ends or starts hanging within milliseconds; a failing example that waits out
this bound must not make shrinking outlast the test's timeout)."""

TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
OUTCOMES = ("ok", "fail", "hang")
SCRIPTS = st.lists(st.sampled_from(OUTCOMES), max_size=3).map(tuple)
"""One outcome per attempt; attempts past the end of the script succeed."""


class Boom(Exception):
    """What a ``fail`` attempt raises."""


class Abandoned(Exception):
    """What a plain ``hang`` attempt raises once its token is set (its outcome is
    discarded: the attempt was cancelled)."""


def not_found(task_id: str) -> str:
    return f"no task with id {task_id!r} (never registered, or cleaned up)"


# -- the model ----------------------------------------------------------------------------


@dataclass
class ModelTask:
    task_id: str
    backend: str
    script: tuple[str, ...]
    max_retries: int
    deps: list[str]
    status: TaskStatus = PENDING
    attempts: int = 0
    result: str | None = None
    error: tuple[type[BaseException], str] | None = None
    """The error as (type, message); for a dependency failure, see ``culprits``."""
    culprits: frozenset[str] | None = None
    """Cancelled by a failed dependency: the dependencies it may name (any of them that
    failed or was cancelled: which one the system names depends on timing)."""
    finished_at: float | None = None

    def outcome(self, attempt: int) -> str:
        return self.script[attempt - 1] if attempt <= len(self.script) else "ok"


def result_of(task_id: str, attempt: int) -> str:
    return f"{task_id} done at attempt {attempt}"


def boom_text(task_id: str, attempt: int) -> str:
    return f"{task_id} failed attempt {attempt}"


@dataclass
class Model:
    """The task system as a few dicts: what `BaseManager` and the facade promise."""

    tasks: dict[str, ModelTask] = field(default_factory=dict)
    now: float = 0.0
    use_new: bool = True
    dep_cancelled: list[str] = field(default_factory=list)

    @property
    def backend(self) -> str:
        return "new" if self.use_new else "old"

    def get(self, task_id: str) -> ModelTask:
        task = self.tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError(not_found(task_id))
        return task

    def dependents(self, task_id: str) -> list[str]:
        return [t.task_id for t in self.tasks.values() if task_id in t.deps]

    def transitive(self, start: str, edges: Callable[[str], Iterable[str]]) -> list[str]:
        seen = {start}
        found: list[str] = []
        queue = deque([start])
        while queue:
            for nxt in edges(queue.popleft()):
                if nxt not in seen:
                    seen.add(nxt)
                    found.append(nxt)
                    queue.append(nxt)
        return found

    def deps_of(self, task_id: str) -> list[str]:
        return self.tasks[task_id].deps

    # -- transitions ----------------------------------------------------------------------

    def finish(self, task: ModelTask, status: TaskStatus) -> None:
        task.status = status
        task.finished_at = self.now
        if status is COMPLETED:
            task.error = None
            for dep_id in self.dependents(task.task_id):
                d = self.tasks[dep_id]
                if d.status is WAITING and self.deps_done(d):
                    self.run(d)
            return
        for dep_id in self.transitive(task.task_id, self.dependents):
            d = self.tasks[dep_id]
            if d.status not in TERMINAL:
                self.cancel_by_dependency(d)

    def cancel_by_dependency(self, task: ModelTask) -> None:
        task.status = CANCELLED
        task.finished_at = self.now
        task.error = None
        task.culprits = frozenset()  # filled in at the end of the step
        self.dep_cancelled.append(task.task_id)

    def deps_failed(self, task: ModelTask) -> bool:
        return any(self.tasks[d].status in (FAILED, CANCELLED) for d in task.deps)

    def deps_done(self, task: ModelTask) -> bool:
        return all(self.tasks[d].status is COMPLETED for d in task.deps)

    def run(self, task: ModelTask) -> None:
        """A ready task runs its script, attempt after attempt, until it ends or hangs."""
        while True:
            task.attempts += 1
            outcome = task.outcome(task.attempts)
            if outcome == "hang":
                task.status = RUNNING
                return
            if self.attempt_ended(task, outcome):
                return

    def attempt_ended(self, task: ModelTask, outcome: str) -> bool:
        """The current attempt returned (``ok``) or raised; True if the task ended."""
        if outcome == "ok":
            task.result = result_of(task.task_id, task.attempts)
            self.finish(task, COMPLETED)
            return True
        task.error = (Boom, boom_text(task.task_id, task.attempts))
        if task.attempts > task.max_retries:
            self.finish(task, FAILED)
            return True
        return False

    def activate(self, task: ModelTask) -> None:
        if self.deps_failed(task):
            self.cancel_by_dependency(task)
            self.finish(task, CANCELLED)
        elif self.deps_done(task):
            self.run(task)
        else:
            task.status = WAITING

    def execute_tree(self, root: ModelTask) -> None:
        """Activate ``root`` and, first, every pending task it depends on (post-order)."""
        order: list[ModelTask] = []
        seen: set[str] = set()
        stack: list[tuple[ModelTask, bool]] = [(root, False)]
        while stack:
            current, expanded = stack.pop()
            if expanded:
                order.append(current)
                continue
            if current.task_id in seen:
                continue
            seen.add(current.task_id)
            stack.append((current, True))
            for dep in current.deps:
                d = self.tasks[dep]
                if d.status is PENDING and dep not in seen:
                    stack.append((d, False))
        for current in order:
            if current.status is PENDING:
                self.activate(current)

    # -- the API --------------------------------------------------------------------------

    def register(self, task: ModelTask, name: str) -> str:
        if task.task_id in self.tasks:
            msg = f"task id {task.task_id!r} is already registered; pick another or omit task_id"
            raise DuplicateTaskError(msg)
        for dep in task.deps:
            owner = self.tasks.get(dep)
            if owner is None:
                msg = f"dependency {dep!r} of task {name!r} is not registered; register it first"
                raise TaskNotFoundError(msg)
            if owner.backend != task.backend:
                msg = (
                    f"dependency {dep!r} belongs to the {owner.backend} task system, but new "
                    f"tasks go to the {task.backend} one; dependencies must stay in one system"
                )
                raise InvalidTaskError(msg)
        self.tasks[task.task_id] = task
        if self.deps_failed(task):
            self.cancel_by_dependency(task)
        return task.task_id

    def execute(self, task_id: str) -> bool:
        task = self.get(task_id)
        if task.status is not PENDING:
            return False
        self.execute_tree(task)
        return True

    def release(self, task_id: str, outcome: str) -> None:
        """The hanging attempt of ``task_id`` returns (``ok``) or raises (``fail``)."""
        task = self.tasks[task_id]
        if not self.attempt_ended(task, outcome):
            self.run(task)

    def cancel(self, task_id: str) -> bool:
        task = self.get(task_id)
        if task.status in TERMINAL:
            return False
        task.error = (TaskCancelledError, f"task {task_id!r} was cancelled")
        self.finish(task, CANCELLED)
        return True

    def add_dependency(self, task_id: str, depends_on: str) -> list[str] | None:
        """None, or the shortest cycle the edge would close (the system raises)."""
        task = self.get(task_id)
        dependency = self.get(depends_on)
        if task.backend != dependency.backend:
            msg = (
                f"task {task_id!r} belongs to the {task.backend} task system and "
                f"{depends_on!r} to the {dependency.backend} one; dependencies must stay in "
                "one system"
            )
            raise InvalidTaskError(msg)
        if task.status not in (PENDING, WAITING):
            msg = (
                f"cannot add a dependency to task {task_id!r}: it is {task.status.value}; "
                "dependencies can be added to pending or waiting tasks only"
            )
            raise InvalidTaskError(msg)
        if task_id == depends_on:
            return [task_id, task_id]
        if depends_on not in task.deps:
            path = self.shortest_path(depends_on, task_id)
            if path is not None:
                return [task_id, *path]
            task.deps.append(depends_on)
        if dependency.status in (FAILED, CANCELLED):
            self.cancel_by_dependency(task)
            self.finish(task, CANCELLED)
        elif task.status is WAITING and dependency.status is PENDING:
            self.execute_tree(dependency)
        return None

    def shortest_path(self, start: str, goal: str) -> list[str] | None:
        parent: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for dep in self.deps_of(node):
                if dep in parent:
                    continue
                parent[dep] = node
                if dep == goal:
                    path = [dep]
                    step = parent[dep]
                    while step is not None:
                        path.append(step)
                        step = parent[step]
                    return path[::-1]
                queue.append(dep)
        return None

    def cleanup(self, max_age: float) -> int:
        cutoff = self.now - max_age
        gone = {
            t.task_id
            for t in self.tasks.values()
            if t.finished_at is not None and t.finished_at <= cutoff
        }
        for task_id in gone:
            del self.tasks[task_id]
        for task in self.tasks.values():
            task.deps = [d for d in task.deps if d not in gone]
        return len(gone)

    def settle_culprits(self) -> None:
        """Tasks cancelled by a dependency in this step may name any dependency (direct
        or not) that failed or was cancelled."""
        for task_id in self.dep_cancelled:
            task = self.tasks.get(task_id)
            if task is None:
                continue
            task.culprits = frozenset(
                d
                for d in self.transitive(task_id, self.deps_of)
                if self.tasks[d].status in (FAILED, CANCELLED)
            )
        self.dep_cancelled.clear()


class Gate:
    """A hanging attempt: the test releases it with a verdict, or the system cancels it.

    A coroutine attempt awaits ``released``. A plain one blocks on its cancellation
    ``token``, which the system sets when it cancels the attempt (the verdict stays
    ``abandon``) and the test sets to release it (after setting the verdict).
    """

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt
        self.verdict = "abandon"
        self.released: asyncio.Event | None = None
        self.token: CancellationToken | None = None
        self.finished = threading.Event()
        self.exit = ""

    def release(self, verdict: str) -> None:
        """Runs on the event loop."""
        self.verdict = verdict
        if self.released is not None:
            self.released.set()
        else:
            assert self.token is not None
            self.token.cancel()  # all a pool thread can wait on; the verdict says why


# -- the machine --------------------------------------------------------------------------


class TaskSystemMachine(RuleBasedStateMachine):
    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.clock = FakeClock()
        self.runner = asyncio.Runner()
        self.executor = ThreadPoolExecutor(32, thread_name_prefix="model-default")
        self.runner.get_loop().set_default_executor(self.executor)
        self.system = ActorSystem(
            # The model cleans up by hand only: no periodic cleanup, no count bound.
            {
                "MAX_THREAD_WORKERS": 32,
                "RESTART_BACKOFF_INITIAL": 0.0,
                "CLEANUP_INTERVAL": 0,
                "MAX_FINISHED_TASKS": 0,
            },
            clock=self.clock,
        )
        self.runner.run(self.system.__aenter__())
        self.tm = self.system.task_manager
        self.next_id = 0
        self.lock = threading.Condition()
        self.runs: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        self.gates: dict[str, Gate] = {}
        """The hanging attempt of each task that has one (at most one per task)."""
        self.steps = 0

    def teardown(self) -> None:
        try:
            self.runner.run(self.system.shutdown())  # sets the token of hanging threads
        finally:
            self.runner.close()  # also shuts the default executor down
            self.executor.shutdown(wait=True)
        for task in self.model.tasks.values():
            ENDED[task.status.value] += 1
        STATS["examples"] += 1
        STATS["steps"] += self.steps
        STATS["tasks"] += self.next_id

    # -- helpers --------------------------------------------------------------------------

    def count(self, rule: str) -> None:
        self.steps += 1
        STATS[rule] += 1

    def call(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def outcome(self, coro: Any) -> tuple[Any, BaseException | None]:
        async def catch() -> tuple[Any, BaseException | None]:
            try:
                return await asyncio.wait_for(coro, WAIT), None
            except Exception as exc:
                return None, exc

        result: tuple[Any, BaseException | None] = self.runner.run(catch())
        return result

    def body(self, task_id: str, is_coroutine: bool, script: tuple[str, ...]) -> Any:
        def enter() -> tuple[int, str]:
            with self.lock:
                self.runs[task_id] += 1
                attempt = self.runs[task_id]
            return attempt, script[attempt - 1] if attempt <= len(script) else "ok"

        def hanging(gate: Gate) -> None:
            with self.lock:
                self.gates[task_id] = gate
                self.lock.notify_all()

        def end(attempt: int, verdict: str) -> str:
            if verdict == "fail":
                raise Boom(boom_text(task_id, attempt))
            with self.lock:
                self.successes[task_id] += 1
            return result_of(task_id, attempt)

        if is_coroutine:

            async def coroutine_body() -> str:
                attempt, outcome = enter()
                if outcome == "hang":
                    gate = Gate(attempt)
                    gate.released = asyncio.Event()
                    hanging(gate)
                    try:
                        await gate.released.wait()
                    except asyncio.CancelledError:
                        gate.exit = "cancelled"
                        raise
                    finally:
                        gate.finished.set()
                    outcome = gate.verdict
                return end(attempt, outcome)

            return coroutine_body

        def function_body() -> str:
            attempt, outcome = enter()
            if outcome == "hang":
                gate = Gate(attempt)
                gate.token = cancellation_token()
                hanging(gate)
                try:
                    gate.token.wait(WAIT * 3)
                finally:
                    gate.finished.set()
                outcome = gate.verdict
                if outcome == "abandon":
                    raise Abandoned(task_id)
            return end(attempt, outcome)

        return function_body

    def expect_same_error(self, got: BaseException | None, expected: BaseException) -> None:
        assert type(got) is type(expected), f"{got!r} != {expected!r}"
        assert str(got) == str(expected)

    def model_raises(self, action: Callable[[], Any]) -> tuple[Any, BaseException | None]:
        try:
            return action(), None
        except Exception as exc:
            return None, exc

    # -- rules ----------------------------------------------------------------------------

    @initialize(
        target=ids,
        tasks=st.lists(
            st.tuples(st.booleans(), SCRIPTS, st.integers(0, 2)), min_size=1, max_size=3
        ),
    )
    def first_tasks(self, tasks: list[tuple[bool, tuple[str, ...], int]]) -> Any:
        return multiple(*(self.register_task(*task, []) for task in tasks))

    @rule(
        target=ids,
        is_coroutine=st.booleans(),
        script=SCRIPTS,
        max_retries=st.integers(0, 2),
        then_execute=st.booleans(),
    )
    def register(
        self, is_coroutine: bool, script: tuple[str, ...], max_retries: int, then_execute: bool
    ) -> str:
        return self.register_task(is_coroutine, script, max_retries, [], then_execute)

    @rule(
        target=ids,
        is_coroutine=st.booleans(),
        script=SCRIPTS,
        max_retries=st.integers(0, 2),
        deps=st.lists(ids, min_size=1, max_size=3, unique=True),
        then_execute=st.booleans(),
    )
    def register_with_dependencies(
        self,
        is_coroutine: bool,
        script: tuple[str, ...],
        max_retries: int,
        deps: list[str],
        then_execute: bool,
    ) -> str:
        return self.register_task(is_coroutine, script, max_retries, deps, then_execute)

    def register_task(
        self,
        is_coroutine: bool,
        script: tuple[str, ...],
        max_retries: int,
        deps: list[str],
        then_execute: bool = False,
    ) -> str:
        self.count("register_with_dependencies" if deps else "register")
        task_id = f"t{self.next_id}"
        self.next_id += 1
        name = f"task {task_id}"
        task = ModelTask(task_id, self.model.backend, script, max_retries, list(deps))
        expected, error = self.model_raises(lambda: self.model.register(task, name))
        got, got_error = self.outcome(
            self.tm.register_task(
                name,
                self.body(task_id, is_coroutine, script),
                task_id=task_id,
                dependencies=deps,
                max_retries=max_retries,
            )
        )
        if error is None:
            assert got_error is None, got_error
            assert got == expected == task_id
            if then_execute:
                self.execute_task(task_id)
        else:
            self.expect_same_error(got_error, error)
        return task_id

    @rule(task_id=ids)
    def register_a_taken_id(self, task_id: str) -> None:
        self.count("register_a_taken_id")
        if task_id not in self.model.tasks:
            return
        error = DuplicateTaskError(
            f"task id {task_id!r} is already registered; pick another or omit task_id"
        )
        _, got_error = self.outcome(self.tm.register_task("again", int, task_id=task_id))
        self.expect_same_error(got_error, error)

    @rule(task_id=ids)
    def execute(self, task_id: str) -> None:
        self.count("execute")
        self.execute_task(task_id)

    def execute_task(self, task_id: str) -> None:
        expected, error = self.model_raises(lambda: self.model.execute(task_id))
        got, got_error = self.outcome(self.tm.execute_task(task_id))
        if error is None:
            assert got_error is None, got_error
            assert got is expected
        else:
            self.expect_same_error(got_error, error)

    @rule(task_id=ids)
    def cancel(self, task_id: str) -> None:
        self.count("cancel")
        self.cancel_task(task_id)

    @precondition(lambda self: bool(self.gates))
    @rule(data=st.data())
    def cancel_a_hanging_task(self, data: st.DataObject) -> None:
        """Cancel a task while its attempt runs (`cancel` rarely draws one)."""
        self.count("cancel_a_hanging_task")
        self.cancel_task(data.draw(st.sampled_from(sorted(self.gates)), label="task_id"))

    def cancel_task(self, task_id: str) -> None:
        task = self.model.tasks.get(task_id)
        was_hanging = task is not None and task.status is RUNNING
        expected, error = self.model_raises(lambda: self.model.cancel(task_id))
        got, got_error = self.outcome(self.tm.cancel_task(task_id))
        if error is None:
            assert got_error is None, got_error
            assert got is expected
        else:
            self.expect_same_error(got_error, error)
        if was_hanging:
            self.call(self.cancelled(self.gates.pop(task_id)))

    async def cancelled(self, gate: Gate) -> None:
        """A cancelled hanging attempt: a coroutine is cancelled; a plain function's
        token is set (which lets its thread go)."""
        if gate.token is not None:
            assert await asyncio.to_thread(gate.token.wait, WAIT), "token not set"
            STATS["threads_cancelled"] += 1
        else:
            STATS["coroutines_cancelled"] += 1
        assert await asyncio.to_thread(gate.finished.wait, WAIT), "the attempt did not end"
        assert gate.exit == ("" if gate.token is not None else "cancelled")

    @precondition(lambda self: bool(self.gates))
    @rule(data=st.data(), outcome=st.sampled_from(["ok", "fail"]))
    def release(self, data: st.DataObject, outcome: str) -> None:
        """A hanging attempt returns or raises now."""
        self.count("release")
        task_id = data.draw(st.sampled_from(sorted(self.gates)), label="task_id")
        assert self.model.tasks[task_id].status is RUNNING
        self.model.release(task_id, outcome)
        gate = self.gates.pop(task_id)
        self.call(self.on_loop(gate.release, outcome))

    async def on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    @rule(task_id=ids, depends_on=ids)
    def add_dependency(self, task_id: str, depends_on: str) -> None:
        self.count("add_dependency")
        cycle, error = self.model_raises(lambda: self.model.add_dependency(task_id, depends_on))
        got, got_error = self.outcome(self.tm.add_dependency(task_id, depends_on))
        if error is not None:
            self.expect_same_error(got_error, error)
        elif cycle is not None:
            assert isinstance(got_error, DependencyCycleError), got_error
            # The shortest cycle: as long as the model's, and every hop a dependency.
            real = got_error.cycle
            assert len(real) == len(cycle)
            assert real[0] == real[-1] == task_id
            assert real[1] == depends_on
            for a, b in itertools.pairwise(real[1:]):
                assert b in self.model.tasks[a].deps, f"{a} does not depend on {b}"
            expected_text = f"dependency cycle: {' -> '.join(real)}; remove one of these "
            assert str(got_error) == expected_text + "dependencies"
            STATS["cycles"] += 1
        else:
            assert got_error is None, got_error
            assert got is None

    @rule(
        seconds=st.sampled_from([0.0, 1.0, 3.0]),
        max_age=st.sampled_from([0.0, 2.0, 1000.0]),
    )
    def time_passes_then_cleanup(self, seconds: float, max_age: float) -> None:
        self.count("time_passes_then_cleanup")
        self.model.now += seconds
        self.clock.advance(seconds)
        expected = self.model.cleanup(max_age)
        got, got_error = self.outcome(self.tm.cleanup_completed_tasks(max_age))
        assert got_error is None, got_error
        assert got == expected
        STATS["cleaned"] += got

    @rule(flag=st.booleans())
    def switch_task_system(self, flag: bool) -> None:
        self.count("switch_task_system")
        self.model.use_new = flag
        got, got_error = self.outcome(self.tm.use_new_task_system(flag))
        assert got_error is None, got_error
        assert got is None

    # -- the check after every step ---------------------------------------------------------

    @invariant()
    def system_agrees_with_model(self) -> None:
        self.model.settle_culprits()
        self.call(self.settle())
        infos = self.call(self.tm.get_all_tasks())
        model = self.model.tasks
        # (Listed by creation time; on the fake clock every task has the same one.)
        assert sorted(i.task_id for i in infos) == sorted(model), "the task ids differ"
        assert len(infos) == len(model)
        completed = [t for t, m in model.items() if m.status is COMPLETED]
        results = self.call(self.results_of(completed))
        expected_results = [m.result for m in model.values() if m.status is COMPLETED]
        assert results == expected_results
        for info in infos:
            task = model[info.task_id]
            got = (info.status, info.attempts, info.dependencies, info.backend)
            assert got == (task.status, task.attempts, tuple(task.deps), task.backend), info.task_id
            assert self.runs[info.task_id] == task.attempts, info.task_id
            assert self.successes[info.task_id] == (task.status is COMPLETED), info.task_id
            self.check_error(task, info.error)

    async def results_of(self, task_ids: list[str]) -> list[Any]:
        return await asyncio.gather(*(self.tm.get_task_result(t) for t in task_ids))

    def check_error(self, task: ModelTask, error: BaseException | None) -> None:
        if task.culprits is not None:
            assert isinstance(error, DependencyFailedError), (task.task_id, error)
            assert error.task_id == task.task_id
            assert error.dependency in task.culprits, (task.task_id, error, task.culprits)
            culprit = self.model.tasks.get(error.dependency)
            if culprit is not None:
                assert str(error) == (
                    f"task {f'task {task.task_id}'!r} ({task.task_id}) cancelled: its "
                    f"dependency {f'task {error.dependency}'!r} ({error.dependency}) "
                    f"{culprit.status.value}"
                )
        elif task.error is None:
            assert error is None, (task.task_id, error)
        else:
            kind, text = task.error
            assert type(error) is kind, (task.task_id, error)
            assert str(error) == text

    async def settle(self) -> None:
        """Wait (bounded) until every task is where the model says: ended tasks have
        ended, and hanging ones have started their hanging attempt."""
        ended = [t for t, m in self.model.tasks.items() if m.status in TERMINAL]
        await asyncio.wait_for(
            asyncio.gather(*(self.tm.wait_for_task(t) for t in ended), return_exceptions=True),
            WAIT,
        )
        hanging = {t: m.attempts for t, m in self.model.tasks.items() if m.status is RUNNING}

        def started() -> bool:
            return all(t in self.gates and self.gates[t].attempt == n for t, n in hanging.items())

        def wait_started() -> bool:
            with self.lock:
                return self.lock.wait_for(started, WAIT)

        if hanging:
            assert await asyncio.to_thread(wait_started), "a hanging attempt did not start"
        with self.lock:
            assert set(self.gates) == set(hanging), "an attempt hangs that should not"


STATS: Counter[str] = Counter()
ENDED: Counter[str] = Counter()
RULES = {
    name
    for name, value in vars(TaskSystemMachine).items()
    if hasattr(value, "hypothesis_stateful_rule")
}


@pytest.mark.slow
def test_the_task_system_agrees_with_its_model(capsys: pytest.CaptureFixture[str]) -> None:
    STATS.clear()
    ENDED.clear()
    run_state_machine_as_test(
        TaskSystemMachine,
        settings=settings(
            max_examples=300,
            stateful_step_count=25,
            deadline=None,
            report_multiple_bugs=False,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    rules = ", ".join(f"{k} {v}" for k, v in sorted(STATS.items()) if k in RULES)
    with capsys.disabled():
        print(
            f"\nmodel: {STATS['examples']} examples, {STATS['steps']} steps, "
            f"{STATS['tasks']} tasks registered, {STATS['cycles']} cycles refused, "
            f"{STATS['cleaned']} tasks cleaned up; statuses at the end of the examples "
            f"{dict(sorted(ENDED.items()))}; hanging attempts cancelled: "
            f"{STATS['coroutines_cancelled']} coroutines, {STATS['threads_cancelled']} "
            "functions (token set); "
            f"the system agreed with the model after every step; rules: {rules}"
        )
