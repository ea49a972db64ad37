"""Malformed calls across the public API: the right error, the bad value shown, no change.

Each row of `BAD_CALLS` is one call on a system that holds a pending task ``known`` and
a completed task ``done``. The call must raise the given `ActorsError` subclass whose
message contains ``repr`` of the bad value, and every task must be exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import pytest
from helpers import Hostile, refusal, refused_as_before

from actors import (
    ActorsError,
    ActorSystem,
    ActorSystemError,
    CancellationToken,
    ConfigError,
    DuplicateTaskError,
    InvalidTaskError,
    TaskGraph,
    TaskNode,
    TaskNotFoundError,
    TaskStatus,
    ThreadPoolClient,
    UnifiedTaskManager,
    configure_logging,
    load_config,
    prometheus_collector,
    render_prometheus,
    result_of,
)
from supervisors.testing import FakeClock

Call = Callable[[UnifiedTaskManager], Awaitable[Any]]


async def work() -> int:
    return 1


def not_a_wait_strategy(retry_state: object) -> float:
    return 1.0


def register(**overrides: Any) -> Call:
    """``register_task("job", work, **overrides)``; ``name``/``func``/``args`` too."""
    arguments: dict[str, Any] = {"name": "job", "func": work, **overrides}
    name = arguments.pop("name")
    func = arguments.pop("func")
    return lambda tm: tm.register_task(name, func, **arguments)


def call(method: str, *args: Any, **kwargs: Any) -> Call:
    return lambda tm: getattr(tm, method)(*args, **kwargs)


def submit(fn: Any) -> Call:
    return lambda tm: tm.thread_pool.submit(fn)


NAN = float("nan")
INF = float("inf")

# (id, call, error class, the bad value whose repr the message must contain)
BAD_CALLS: list[tuple[str, Call, type[ActorsError], object]] = [
    # register_task: every argument
    ("name-empty", register(name=""), InvalidTaskError, ""),
    ("name-int", register(name=42), InvalidTaskError, 42),
    ("name-none", register(name=None), InvalidTaskError, None),
    ("name-bytes", register(name=b"job"), InvalidTaskError, b"job"),
    ("func-int", register(func=42), InvalidTaskError, 42),
    ("func-str", register(func="work"), InvalidTaskError, "work"),
    ("func-called", register(func=None), InvalidTaskError, None),
    ("args-int", register(args=5), InvalidTaskError, 5),
    ("args-str", register(args="ab"), InvalidTaskError, "ab"),
    ("args-dict", register(args={"x": 1}), InvalidTaskError, {"x": 1}),
    ("kwargs-list", register(kwargs=[("x", 1)]), InvalidTaskError, [("x", 1)]),
    ("kwargs-int-key", register(kwargs={1: "x"}), InvalidTaskError, {1: "x"}),
    ("task_type-empty", register(task_type=""), InvalidTaskError, ""),
    ("task_type-int", register(task_type=3), InvalidTaskError, 3),
    ("description-none", register(description=None), InvalidTaskError, None),
    ("description-int", register(description=7), InvalidTaskError, 7),
    ("metadata-list", register(metadata=[("a", 1)]), InvalidTaskError, [("a", 1)]),
    ("metadata-str", register(metadata="a=1"), InvalidTaskError, "a=1"),
    ("priority-out-of-range", register(priority=7), InvalidTaskError, 7),
    ("priority-negative", register(priority=-1), InvalidTaskError, -1),
    ("priority-str", register(priority="HIGH"), InvalidTaskError, "HIGH"),
    ("priority-bool", register(priority=True), InvalidTaskError, True),
    ("priority-float", register(priority=1.0), InvalidTaskError, 1.0),
    ("dependencies-str", register(dependencies="known"), InvalidTaskError, "known"),
    ("dependencies-int", register(dependencies=5), InvalidTaskError, 5),
    ("dependencies-empty-id", register(dependencies=("",)), InvalidTaskError, ""),
    ("dependencies-int-id", register(dependencies=("known", 3)), InvalidTaskError, 3),
    (
        "dependencies-unknown",
        register(dependencies=("known", "ghost")),
        TaskNotFoundError,
        "ghost",
    ),
    (
        "dependencies-self",
        register(task_id="me", dependencies=("me",)),
        InvalidTaskError,
        "me",
    ),
    ("max_retries-negative", register(max_retries=-1), InvalidTaskError, -1),
    ("max_retries-float", register(max_retries=1.5), InvalidTaskError, 1.5),
    ("max_retries-bool", register(max_retries=True), InvalidTaskError, True),
    ("max_retries-str", register(max_retries="3"), InvalidTaskError, "3"),
    # equal to the default (0) but not it: checked, not taken for "not given"
    ("max_retries-false", register(max_retries=False), InvalidTaskError, False),
    ("retry_delay-false", register(retry_delay=False), InvalidTaskError, False),
    ("retry_delay-negative", register(retry_delay=-0.5), InvalidTaskError, -0.5),
    ("retry_delay-nan", register(retry_delay=NAN), InvalidTaskError, NAN),
    ("retry_delay-inf", register(retry_delay=INF), InvalidTaskError, INF),
    ("retry_delay-str", register(retry_delay="1"), InvalidTaskError, "1"),
    ("retry_wait-int", register(retry_wait=5), InvalidTaskError, 5),
    (
        "retry_wait-function",
        register(retry_wait=not_a_wait_strategy),
        InvalidTaskError,
        not_a_wait_strategy,
    ),
    ("timeout-zero", register(timeout=0), InvalidTaskError, 0),
    ("timeout-negative", register(timeout=-1), InvalidTaskError, -1),
    ("timeout-inf", register(timeout=INF), InvalidTaskError, INF),
    ("timeout-str", register(timeout="5"), InvalidTaskError, "5"),
    ("timeout-bool", register(timeout=True), InvalidTaskError, True),
    ("task_id-empty", register(task_id=""), InvalidTaskError, ""),
    ("task_id-int", register(task_id=7), InvalidTaskError, 7),
    ("task_id-duplicate", register(task_id="known"), DuplicateTaskError, "known"),
    ("task_id-duplicate-done", register(task_id="done"), DuplicateTaskError, "done"),
    # unknown ids, for every per-task call
    ("execute-unknown", call("execute_task", "ghost"), TaskNotFoundError, "ghost"),
    ("execute-wait-unknown", call("execute_task", "ghost", wait=True), TaskNotFoundError, "ghost"),
    ("wait-unknown", call("wait_for_task", "ghost", timeout=5), TaskNotFoundError, "ghost"),
    ("cancel-unknown", call("cancel_task", "ghost"), TaskNotFoundError, "ghost"),
    ("get-unknown", call("get_task", "ghost"), TaskNotFoundError, "ghost"),
    ("status-unknown", call("get_task_status", "ghost"), TaskNotFoundError, "ghost"),
    ("result-unknown", call("get_task_result", "ghost"), TaskNotFoundError, "ghost"),
    ("error-unknown", call("get_task_error", "ghost"), TaskNotFoundError, "ghost"),
    (
        "add_dependency-unknown-task",
        call("add_dependency", "ghost", "known"),
        TaskNotFoundError,
        "ghost",
    ),
    (
        "add_dependency-unknown-dependency",
        call("add_dependency", "known", "ghost"),
        TaskNotFoundError,
        "ghost",
    ),
    # malformed ids and flags
    ("get-none-id", call("get_task", None), InvalidTaskError, None),
    ("get-empty-id", call("get_task", ""), InvalidTaskError, ""),
    ("cancel-int-id", call("cancel_task", 3), InvalidTaskError, 3),
    ("add_dependency-int", call("add_dependency", "known", 3), InvalidTaskError, 3),
    ("execute-wait-str", call("execute_task", "known", wait="yes"), InvalidTaskError, "yes"),
    ("execute-wait-int", call("execute_task", "known", wait=1), InvalidTaskError, 1),
    ("wait-timeout-negative", call("wait_for_task", "known", timeout=-1), InvalidTaskError, -1),
    ("wait-timeout-str", call("wait_for_task", "known", timeout="1"), InvalidTaskError, "1"),
    ("wait-timeout-zero", call("wait_for_task", "known", timeout=0), InvalidTaskError, 0),
    ("execute-none-id", call("execute_task", None), InvalidTaskError, None),
    ("result-bytes-id", call("get_task_result", b"known"), InvalidTaskError, b"known"),
    # queries
    ("by_status-unknown", call("get_tasks_by_status", "done"), InvalidTaskError, "done"),
    ("by_status-int", call("get_tasks_by_status", 3), InvalidTaskError, 3),
    ("by_status-none", call("get_tasks_by_status", None), InvalidTaskError, None),
    ("by_type-empty", call("get_tasks_by_type", ""), InvalidTaskError, ""),
    ("by_type-none", call("get_tasks_by_type", None), InvalidTaskError, None),
    # cleanup
    ("max_age-negative", call("cleanup_completed_tasks", -1), InvalidTaskError, -1),
    ("max_age-str", call("cleanup_completed_tasks", "1"), InvalidTaskError, "1"),
    ("max_age-nan", call("cleanup_completed_tasks", NAN), InvalidTaskError, NAN),
    ("max_age-inf", call("cleanup_completed_tasks", INF), InvalidTaskError, INF),
    ("max_age-bool", call("cleanup_completed_tasks", True), InvalidTaskError, True),
    ("max_age-huge-int", call("cleanup_completed_tasks", 10**400), InvalidTaskError, 10**400),
    # the task graph: depth bounds the hops around= follows, nothing without it
    (
        "graph-depth-negative",
        call("get_task_graph", around="known", depth=-1),
        InvalidTaskError,
        -1,
    ),
    ("graph-depth-no-around", call("get_task_graph", depth=-1), InvalidTaskError, -1),
    ("graph-depth-str-no-around", call("get_task_graph", depth="2"), InvalidTaskError, "2"),
    # the switch
    ("use_new-str", call("use_new_task_system", "yes"), InvalidTaskError, "yes"),
    ("use_new-int", call("use_new_task_system", 1), InvalidTaskError, 1),
    ("use_new-none", call("use_new_task_system", None), InvalidTaskError, None),
    # the thread pool
    ("submit-int", submit(42), InvalidTaskError, 42),
    ("submit-str", submit("print"), InvalidTaskError, "print"),
    ("submit-none", submit(None), InvalidTaskError, None),
]


@pytest.fixture
async def tm(backend: str) -> AsyncIterator[UnifiedTaskManager]:
    config = {"USE_NEW_TASK_SYSTEM": backend == "new", "RESTART_BACKOFF_INITIAL": 0.0}
    async with ActorSystem(config, clock=FakeClock()) as system:
        manager = system.task_manager
        await manager.register_task("known", work, task_id="known")
        await manager.register_task("done", work, task_id="done")
        assert await manager.execute_task("done", wait=True) == 1
        yield manager


def test_the_table_is_large_enough() -> None:
    assert len(BAD_CALLS) >= 30
    assert len({row[0] for row in BAD_CALLS}) == len(BAD_CALLS)


@pytest.mark.parametrize(
    ("bad_call", "error", "bad_value"),
    [row[1:] for row in BAD_CALLS],
    ids=[row[0] for row in BAD_CALLS],
)
async def test_bad_call_is_refused_and_changes_nothing(
    tm: UnifiedTaskManager, bad_call: Call, error: type[ActorsError], bad_value: object
) -> None:
    assert repr(bad_value) in await refused_as_before(tm, bad_call, error)
    # The system still answers, and the pending task is untouched.
    assert await tm.get_task_status("known") is TaskStatus.PENDING
    assert await tm.get_task_result("done") == 1


# -- configuration ----------------------------------------------------------------------

BAD_CONFIGS: list[tuple[str, dict[str, Any], str, object]] = [
    ("concurrency-zero", {"MAX_CONCURRENT_TASKS": 0}, "MAX_CONCURRENT_TASKS", 0),
    ("concurrency-str", {"MAX_CONCURRENT_TASKS": "3"}, "MAX_CONCURRENT_TASKS", "3"),
    ("concurrency-float", {"MAX_CONCURRENT_TASKS": 2.5}, "MAX_CONCURRENT_TASKS", 2.5),
    ("workers-negative", {"MAX_THREAD_WORKERS": -1}, "MAX_THREAD_WORKERS", -1),
    ("use-new-str", {"USE_NEW_TASK_SYSTEM": "yes"}, "USE_NEW_TASK_SYSTEM", "yes"),
    ("use-new-int", {"USE_NEW_TASK_SYSTEM": 1}, "USE_NEW_TASK_SYSTEM", 1),
    ("backend-unknown", {"THREAD_POOL_BACKEND": "gpu"}, "THREAD_POOL_BACKEND", "gpu"),
    ("call-timeout-zero", {"CALL_TIMEOUT": 0}, "CALL_TIMEOUT", 0),
    ("backoff-nan", {"RESTART_BACKOFF_INITIAL": math.nan}, "RESTART_BACKOFF_INITIAL", math.nan),
    ("cleanup-negative", {"CLEANUP_INTERVAL": -1.0}, "CLEANUP_INTERVAL", -1.0),
    ("unknown-key", {"NO_SUCH_KEY": 1}, "NO_SUCH_KEY", "NO_SUCH_KEY"),
    ("lower-case-key", {"max_concurrent_tasks": 3}, "max_concurrent_tasks", "max_concurrent_tasks"),
    ("non-str-key", {1: 2}, "keys must be str", 1),
]


@pytest.mark.parametrize(
    ("config", "key", "bad_value"),
    [row[1:] for row in BAD_CONFIGS],
    ids=[row[0] for row in BAD_CONFIGS],
)
def test_bad_config_is_refused_naming_the_key(
    config: dict[str, Any], key: str, bad_value: object
) -> None:
    with pytest.raises(ConfigError) as raised:
        ActorSystem(config)
    message = str(raised.value)
    assert key in message
    assert repr(bad_value) in message


@pytest.mark.parametrize("config", [42, "MAX_CONCURRENT_TASKS=3", [("USE_NEW_TASK_SYSTEM", True)]])
def test_config_must_be_a_mapping(config: object) -> None:
    with pytest.raises(ConfigError) as raised:
        ActorSystem(config)
    assert repr(config) in str(raised.value)


# -- after shutdown ---------------------------------------------------------------------

AFTER_SHUTDOWN: list[tuple[str, Call]] = [
    ("register_task", register()),
    ("execute_task", call("execute_task", "known")),
    ("execute_task-wait", call("execute_task", "known", wait=True)),
    ("wait_for_task", call("wait_for_task", "known", timeout=1)),
    ("cancel_task", call("cancel_task", "known")),
    ("get_task", call("get_task", "known")),
    ("get_task_status", call("get_task_status", "known")),
    ("get_task_result", call("get_task_result", "known")),
    ("get_task_error", call("get_task_error", "known")),
    ("get_all_tasks", call("get_all_tasks")),
    ("get_tasks_by_status", call("get_tasks_by_status", TaskStatus.PENDING)),
    ("get_tasks_by_type", call("get_tasks_by_type", "default")),
    ("add_dependency", call("add_dependency", "known", "done")),
    ("cleanup_completed_tasks", call("cleanup_completed_tasks", 0)),
    ("use_new_task_system", call("use_new_task_system", False)),
    ("thread_pool.submit", submit(print)),
]


@pytest.mark.parametrize("backend", ["new", "old"])
@pytest.mark.parametrize(
    "late_call", [row[1] for row in AFTER_SHUTDOWN], ids=[row[0] for row in AFTER_SHUTDOWN]
)
async def test_calls_after_shutdown_fail(backend: str, late_call: Call) -> None:
    config = {"USE_NEW_TASK_SYSTEM": backend == "new", "RESTART_BACKOFF_INITIAL": 0.0}
    system = ActorSystem(config, clock=FakeClock())
    async with system:
        tm = system.task_manager
        await tm.register_task("known", work, task_id="known")
        await tm.register_task("done", work, task_id="done")
    assert system.running is False
    with pytest.raises(
        ActorSystemError, match=r"^the actor system is shut down; create a new ActorSystem$"
    ):
        await late_call(tm)


async def test_a_shut_down_system_cannot_start_again() -> None:
    system = ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0}, clock=FakeClock())
    async with system:
        pass
    await system.shutdown()  # a second shutdown is a no-op
    with pytest.raises(
        ActorSystemError, match=r"^the actor system was shut down; create a new one$"
    ):
        async with system:
            pass


async def test_a_depth_without_around_says_what_to_pass() -> None:
    async with ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0}, clock=FakeClock()) as system:
        with pytest.raises(InvalidTaskError) as raised:
            await system.task_manager.get_task_graph(depth=2)
    assert str(raised.value) == (
        "depth applies to around= only, got depth=2 without around; "
        "pass around=<task id>, or drop depth"
    )


def test_cleanup_of_a_huge_int_age_is_refused_not_overflowing() -> None:
    huge = 10**400
    with (
        ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0}) as system,
        pytest.raises(InvalidTaskError) as raised,
    ):
        system.blocking.cleanup_completed_tasks(huge)
    assert str(raised.value) == f"max_age must be a finite number of seconds >= 0, got {huge!r}"


@pytest.mark.parametrize("snapshot", [3, None, {"tasks_by_status": {}}])
def test_render_prometheus_takes_a_snapshot_only(snapshot: object) -> None:
    with pytest.raises(ConfigError) as raised:
        render_prometheus(snapshot)  # type: ignore[arg-type]
    assert str(raised.value) == (
        "render_prometheus takes a MetricsSnapshot (await task_manager.get_metrics()), "
        f"got {snapshot!r}"
    )


@pytest.mark.parametrize("system", [3, "system", object()], ids=["int", "str", "object"])
def test_a_client_needs_an_actor_system(system: object) -> None:
    assert refusal(InvalidTaskError, UnifiedTaskManager, system) == (
        f"system must be an ActorSystem or None (the module-level system, made on first "
        f"use), got {system!r}; an ActorSystem's client is system.task_manager"
    )


@pytest.mark.parametrize("client", [3, None, object()], ids=["int", "none", "object"])
def test_a_thread_pool_client_needs_a_task_manager_client(client: object) -> None:
    assert refusal(InvalidTaskError, ThreadPoolClient, client) == (
        f"ThreadPoolClient takes a UnifiedTaskManager, got {client!r}; a client's pool is "
        f"already there: system.task_manager.thread_pool (or unified_task_manager.thread_pool)"
    )


# -- a value whose repr raises ----------------------------------------------------------


class HostileKeys(Mapping[Any, Any]):
    """A mapping whose one key is `Hostile` (a dict could not even hold it)."""

    def __getitem__(self, key: object) -> Any:
        return 1

    def __iter__(self) -> Iterator[Any]:
        return iter([Hostile()])

    def __len__(self) -> int:
        return 1


SHOWN = "<Hostile object; repr() raised RuntimeError>"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: load_config({"MAX_CONCURRENT_TASKS": Hostile()}),
            ConfigError,
            f"MAX_CONCURRENT_TASKS must be an int >= 1, got {SHOWN} (from the config mapping)",
        ),
        (
            lambda: load_config(HostileKeys()),
            ConfigError,
            f"configuration keys must be str, got {SHOWN} (from the config mapping)",
        ),
        (
            lambda: load_config(env=Hostile()),
            ConfigError,
            "env must be a mapping of environment variables (str to str) or None "
            f"(os.environ), got {SHOWN}",
        ),
        (
            lambda: ActorSystem(Hostile()),
            ConfigError,
            f"config must be a mapping of upper-case keys or a Config, got {SHOWN}",
        ),
        (
            lambda: ActorSystem(probe=Hostile()),
            ConfigError,
            f"probe must be a callable returning a ResourceSample, got {SHOWN}",
        ),
        (
            lambda: result_of(Hostile()),
            InvalidTaskError,
            f"result_of() takes a task id (a non-empty str, as register_task returns), got {SHOWN}",
        ),
        (
            lambda: configure_logging(Hostile()),
            ConfigError,
            f"configure_logging takes booleans: enabled={SHOWN}, stdlib=False; pass True or False",
        ),
        (
            lambda: prometheus_collector(Hostile()),
            ConfigError,
            f"prometheus_collector needs an ActorSystem or a UnifiedTaskManager, got {SHOWN}",
        ),
        (
            lambda: CancellationToken().wait(Hostile()),
            InvalidTaskError,
            "timeout must be a finite number of seconds >= 0 or None (until cancelled), "
            f"got {SHOWN}",
        ),
        (
            lambda: TaskNode(Hostile(), "n", TaskStatus.PENDING, "t"),
            InvalidTaskError,
            f"TaskNode task_id must be a non-empty str, got {SHOWN}",
        ),
        (
            lambda: TaskGraph(Hostile()),
            InvalidTaskError,
            f"TaskGraph nodes must be an iterable of TaskNode, got {SHOWN}",
        ),
        (
            lambda: render_prometheus(Hostile()),
            ConfigError,
            "render_prometheus takes a MetricsSnapshot (await task_manager.get_metrics()), "
            f"got {SHOWN}",
        ),
    ],
)
def test_a_value_whose_repr_raises_is_refused_with_the_specific_error(
    call: Callable[[], object], error: type[ActorsError], message: str
) -> None:
    assert refusal(error, call) == message


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda tm: tm.register_task(Hostile(), work),
            f"name must be a non-empty str, got {SHOWN}",
        ),
        (
            lambda tm: tm.register_task("t", Hostile()),
            f"func must be callable, got {SHOWN}; pass the function itself, "
            "not the result of calling it",
        ),
        (
            lambda tm: tm.register_task("t", work, priority=Hostile()),
            f"priority must be a TaskPriority or one of its values 0, 1, 2, 3, got {SHOWN}",
        ),
        (
            lambda tm: tm.register_task("t", work, dependencies=[Hostile()]),
            f"each dependency must be a non-empty str task id, got {SHOWN}",
        ),
        (
            lambda tm: tm.register_task("t", work, timeout=Hostile()),
            f"timeout must be a finite number of seconds > 0 or None, got {SHOWN}",
        ),
        (
            lambda tm: tm.get_tasks_by_status(Hostile()),
            "status must be one of pending, waiting, queued, running, retrying, completed, "
            f"failed, cancelled; got {SHOWN}",
        ),
        (
            lambda tm: tm.get_tasks_by_type(Hostile()),
            f"task_type must be a non-empty str, got {SHOWN}",
        ),
        (lambda tm: tm.use_new_task_system(Hostile()), f"flag must be a bool, got {SHOWN}"),
        (lambda tm: tm.execute_task("known", wait=Hostile()), f"wait must be a bool, got {SHOWN}"),
        (
            lambda tm: tm.cleanup_completed_tasks(Hostile()),
            f"max_age must be a finite number of seconds >= 0, got {SHOWN}",
        ),
        (lambda tm: tm.thread_pool.submit(Hostile()), f"fn must be callable, got {SHOWN}"),
        (
            lambda tm: tm.map(work, Hostile()),
            "map() takes an iterable of arguments (a list, a range, a generator), "
            f"got {SHOWN}; for one call use submit()",
        ),
        (
            lambda tm: tm.get_task_page(after=Hostile()),
            f"after must be a PageCursor (a page's next), its str, or None, got {SHOWN}",
        ),
        (
            lambda tm: tm.get_task_page(task_type=Hostile()),
            f"task_type must be a non-empty str or None, got {SHOWN}",
        ),
    ],
)
async def test_a_registration_whose_value_repr_raises_is_refused_and_changes_nothing(
    tm: UnifiedTaskManager, call: Call, message: str
) -> None:
    assert await refused_as_before(tm, call, InvalidTaskError) == message


@pytest.mark.parametrize(
    ("child_id", "shown"),
    [(["task_manager"], "['task_manager']"), (Hostile(), SHOWN), ("nope", "'nope'")],
)
async def test_system_supervisor_child_refuses_an_unknown_or_unhashable_id(
    child_id: object, shown: str
) -> None:
    # An unhashable id raised a bare TypeError from the lookup (a raising hash, its own).
    async with ActorSystem(clock=FakeClock()) as system:
        with pytest.raises(ActorSystemError) as raised:
            system.supervisor.child(child_id)  # type: ignore[arg-type]
        assert str(raised.value) == (
            f"the actor system has no child {shown}; children: task_monitor, thread_pool, "
            "legacy_task_manager, task_manager, facade"
        )
        rows = await system.supervisor.which_children()
        assert [(r.status, r.restarts) for r in rows] == [("running", 0)] * 5
