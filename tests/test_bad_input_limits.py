"""Bad input, third sweep: waits past what `threading` takes, the fields of a `TaskNode`,
an int the journal cannot store, a clock that is none, and refusals that change nothing.

Every table row is one call, the exact `ActorsError` subclass it raises and the exact
message (or, for the wide tables, its key fragment). A wait of more than `MAX_SECONDS`
(1e9 s on Linux) is refused where it would reach a `threading` wait: past
``threading.TIMEOUT_MAX`` those raise `OverflowError` from deep inside a call.
"""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import DURATION_KEYS, refusal, refused_as_before

from actors import (
    ActorsError,
    ActorSystem,
    BreakerConfigError,
    CancellationToken,
    CircuitBreaker,
    Config,
    ConfigError,
    InvalidTaskError,
    JournalEncodeError,
    TaskGraph,
    TaskNode,
    TaskNotFoundError,
    TaskStatus,
    UnifiedTaskManager,
    load_config,
    prometheus_collector,
)
from actors.core import MAX_SECONDS
from actors.core._config import _RULES
from supervisors.testing import FakeClock

HUGE = 10**400
"""An int too large for a float: ``float(HUGE)`` raises `OverflowError`."""

LONG = f"{MAX_SECONDS:g}"  # "1e+09"
OVERFLOWS = "(a longer wait overflows threading's timeouts)"
PAST = math.nextafter(MAX_SECONDS, math.inf)
"""The first float a duration may not be."""


async def one() -> int:
    return 1


def plain(x: int = 1) -> int:
    return x


async def fails() -> None:
    raise RuntimeError("boom")


# -- configuration: every duration is at most MAX_SECONDS ----------------------------------


def test_every_float_key_but_the_percentages_is_a_bounded_duration() -> None:
    floats = {key for key, rule in _RULES.items() if rule.kind is float and rule.high is None}
    assert floats == set(DURATION_KEYS)
    assert all(_RULES[key].seconds for key in DURATION_KEYS)


def too_long(key: str, shown: str, source: str) -> str:
    return (
        f"{key} must be at most {LONG} seconds, as every duration setting {OVERFLOWS}, "
        f"got {shown} ({source}); use a shorter time"
    )


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "actorflow.toml"
    path.write_text(text)
    return path


# (id, how the config is built, the exact message): one row per source and kind of key.
TOO_LONG_CONFIGS: list[tuple[str, Callable[[Path], object], str]] = [
    (
        "call-timeout-mapping",
        lambda _: load_config({"CALL_TIMEOUT": 1e300}, env={}),
        too_long("CALL_TIMEOUT", "1e+300", "from the config mapping"),
    ),
    (
        "shutdown-timeout-config",
        lambda _: Config(SHUTDOWN_TIMEOUT=1e10),
        too_long("SHUTDOWN_TIMEOUT", "10000000000.0", "from Config()"),
    ),
    (
        "cleanup-interval-env",
        lambda _: load_config(env={"ACTORFLOW_CLEANUP_INTERVAL": "1e300"}),
        too_long(
            "CLEANUP_INTERVAL", "'1e300'", "from environment variable ACTORFLOW_CLEANUP_INTERVAL"
        ),
    ),
    (
        "backoff-max-toml",
        lambda tmp: load_config(toml_path=toml(tmp, "RESTART_BACKOFF_MAX = 1e300\n"), env={}),
        "",  # (the path is in the message: built in the test)
    ),
    (
        "breaker-recovery-replace",
        lambda _: Config().replace(BREAKER_RECOVERY_TIMEOUT=2_000_000_000),
        too_long("BREAKER_RECOVERY_TIMEOUT", "2000000000", "from Config.replace()"),
    ),
    (
        "within-seconds-system",
        lambda _: ActorSystem({"RESTART_WITHIN_SECONDS": 1e300}),
        too_long("RESTART_WITHIN_SECONDS", "1e+300", "from the config mapping"),
    ),
]


@pytest.mark.parametrize(
    ("build", "message"),
    [row[1:] for row in TOO_LONG_CONFIGS],
    ids=[row[0] for row in TOO_LONG_CONFIGS],
)
def test_a_duration_past_the_longest_wait_is_refused_naming_key_and_bound(
    tmp_path: Path, build: Callable[[Path], object], message: str
) -> None:
    if not message:
        path = str(tmp_path / "actorflow.toml")
        message = too_long("RESTART_BACKOFF_MAX", "1e+300", f"from TOML file {path!r}")
    assert refusal(ConfigError, build, tmp_path) == message


@pytest.mark.parametrize("key", DURATION_KEYS)
def test_each_duration_key_takes_the_bound_and_refuses_the_next_float(key: str) -> None:
    at_bound = {key: MAX_SECONDS}
    if key == "RESTART_BACKOFF_INITIAL":  # (it must stay <= RESTART_BACKOFF_MAX)
        at_bound["RESTART_BACKOFF_MAX"] = MAX_SECONDS
    assert getattr(load_config(at_bound, env={}), key) == MAX_SECONDS
    with pytest.raises(ConfigError) as raised:
        load_config({**at_bound, key: PAST}, env={})
    assert str(raised.value) == too_long(key, repr(PAST), "from the config mapping")


def test_a_too_large_int_is_still_refused_as_no_finite_number() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"CALL_TIMEOUT": HUGE}, env={})
    assert str(raised.value) == (
        f"CALL_TIMEOUT must be a finite number > 0, got {HUGE!r} (from the config mapping)"
    )


def test_blocking_calls_work_with_every_bound_at_its_longest() -> None:
    """CALL_TIMEOUT and SHUTDOWN_TIMEOUT at MAX_SECONDS, and a blocking timeout at it too:
    the sums the blocking side waits (3 x CALL_TIMEOUT + a margin for retry_task, the
    timeout + CALL_TIMEOUT + a margin for wait_for_task) stay below TIMEOUT_MAX."""
    config = {
        "CALL_TIMEOUT": MAX_SECONDS,
        "SHUTDOWN_TIMEOUT": MAX_SECONDS,
        "RESTART_BACKOFF_INITIAL": 0.0,
    }
    with ActorSystem(config) as system:
        blocking = system.blocking
        done = blocking.register_task("done", one)
        assert blocking.execute_task(done, wait=True) == 1
        assert blocking.wait_for_task(done, timeout=MAX_SECONDS) == 1
        failed = blocking.register_task("failed", fails)
        with pytest.raises(RuntimeError, match=r"^boom$"):
            blocking.execute_task(failed, wait=True)
        again = blocking.retry_task(failed)  # three calls into the system
        with pytest.raises(RuntimeError, match=r"^boom$"):
            blocking.wait_for_task(again, timeout=MAX_SECONDS)
        assert blocking.get_task_page().total == 3  # two calls
    assert system.running is False


# -- arguments that reach a threading wait ----------------------------------------------


@pytest.fixture
def system() -> Any:
    with ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0}) as running:
        yield running


def blocking_wait(system: ActorSystem, timeout: object) -> object:
    blocking = system.blocking
    task = blocking.register_task("done", one)
    blocking.execute_task(task, wait=True)
    return blocking.wait_for_task(task, timeout=timeout)  # type: ignore[arg-type]


def stream_get(system: ActorSystem, timeout: object) -> object:
    with system.blocking.events() as stream:
        return stream.get(timeout)  # type: ignore[arg-type]


def token_wait(system: ActorSystem, timeout: object) -> object:
    return CancellationToken().wait(timeout)  # type: ignore[arg-type]


def collector(system: ActorSystem, timeout: object) -> object:
    return prometheus_collector(system, timeout=timeout)  # type: ignore[arg-type]


LONG_WAITS: list[tuple[str, Callable[[ActorSystem, object], object], object, type, str]] = [
    (
        "blocking-wait_for_task",
        blocking_wait,
        1e10,
        InvalidTaskError,
        f"timeout must be at most {LONG} seconds, for a blocking call {OVERFLOWS}, got "
        "10000000000.0; await the async call for a longer one, or pass None (no bound)",
    ),
    (
        "blocking-wait_for_task-past-bound",
        blocking_wait,
        PAST,
        InvalidTaskError,
        f"timeout must be at most {LONG} seconds, for a blocking call {OVERFLOWS}, got "
        f"{PAST!r}; await the async call for a longer one, or pass None (no bound)",
    ),
    (
        "event-stream-get",
        stream_get,
        1e300,
        InvalidTaskError,
        f"timeout must be at most {LONG} seconds, for a blocking call {OVERFLOWS}, got "
        "1e+300; call get() again to wait longer",
    ),
    (
        "cancellation-token-wait",
        token_wait,
        1e10,
        InvalidTaskError,
        f"timeout must be at most {LONG} seconds {OVERFLOWS}, got 10000000000.0; or pass None",
    ),
    (
        "prometheus-collector",
        collector,
        1e10,
        ConfigError,
        f"timeout must be at most {LONG} seconds {OVERFLOWS}, got 10000000000.0",
    ),
    (
        "prometheus-collector-huge-int",  # was an OverflowError from float(timeout)
        collector,
        HUGE,
        ConfigError,
        f"timeout must be a finite number > 0 (seconds), got {HUGE!r}",
    ),
]


@pytest.mark.parametrize(
    ("call", "timeout", "error", "message"),
    [row[1:] for row in LONG_WAITS],
    ids=[row[0] for row in LONG_WAITS],
)
def test_a_wait_past_the_longest_is_refused_not_overflowing(
    system: ActorSystem,
    call: Callable[[ActorSystem, object], object],
    timeout: object,
    error: type[ActorsError],
    message: str,
) -> None:
    assert refusal(error, call, system, timeout) == message


async def test_the_async_wait_takes_a_longer_timeout() -> None:
    """Only the blocking side waits in `threading`: ``await wait_for_task`` takes it."""
    async with ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0}, clock=FakeClock()) as system:
        tm = system.task_manager
        task = await tm.register_task("done", one)
        assert await tm.execute_task(task, wait=True) == 1
        assert await tm.wait_for_task(task, timeout=1e300) == 1


def test_a_token_waits_up_to_the_bound() -> None:
    token = CancellationToken()
    token.cancel()
    assert token.wait(MAX_SECONDS) is True


# -- TaskNode: its fields are checked when it is made --------------------------------------

PENDING = TaskStatus.PENDING
STATUSES = ", ".join(f"TaskStatus.{status.name}" for status in TaskStatus)

BAD_NODES: list[tuple[str, tuple[object, ...], str]] = [
    ("id-int", (3, "n", PENDING, "t"), "TaskNode task_id must be a non-empty str, got 3"),
    ("id-empty", ("", "n", PENDING, "t"), "TaskNode task_id must be a non-empty str, got ''"),
    ("id-list", (["a"], "n", PENDING, "t"), "TaskNode task_id must be a non-empty str, got ['a']"),
    ("name-none", ("a", None, PENDING, "t"), "TaskNode name must be a str, got None"),
    ("name-bytes", ("a", b"n", PENDING, "t"), "TaskNode name must be a str, got b'n'"),
    (
        "status-value",
        ("a", "n", "pending", "t"),
        f"TaskNode status must be a TaskStatus ({STATUSES}), got 'pending'",
    ),
    (
        "status-none",
        ("a", "n", None, "t"),
        f"TaskNode status must be a TaskStatus ({STATUSES}), got None",
    ),
    (
        "status-nan",
        ("a", "n", math.nan, "t"),
        f"TaskNode status must be a TaskStatus ({STATUSES}), got nan",
    ),
    ("type-empty", ("a", "n", PENDING, ""), "TaskNode task_type must be a non-empty str, got ''"),
    ("type-int", ("a", "n", PENDING, 7), "TaskNode task_type must be a non-empty str, got 7"),
]


@pytest.mark.parametrize(
    ("fields", "message"), [row[1:] for row in BAD_NODES], ids=[row[0] for row in BAD_NODES]
)
def test_a_task_node_of_the_wrong_types_is_refused_when_made(
    fields: tuple[object, ...], message: str
) -> None:
    assert refusal(InvalidTaskError, TaskNode, *fields) == message


def test_a_good_task_node_draws() -> None:
    graph = TaskGraph((TaskNode("a", "", PENDING, "t"),))
    assert '"a" [label="\\npending"' in graph.to_dot()


# -- the public calls: wrong types, one table per area ------------------------------------

Call = Callable[[UnifiedTaskManager], Awaitable[Any]]


def page(**query: Any) -> Call:
    return lambda tm: tm.get_task_page(**query)


def client(method: str, *args: Any, **kwargs: Any) -> Call:
    return lambda tm: getattr(tm, method)(*args, **kwargs)


# (id, call, error class, the key fragment of its message)
QUERIES: list[tuple[str, Call, type[ActorsError], str]] = [
    ("page-offset-negative", page(offset=-1), InvalidTaskError, "offset must be an int >= 0"),
    ("page-offset-str", page(offset="0"), InvalidTaskError, "offset must be an int >= 0, got '0'"),
    ("page-offset-bool", page(offset=True), InvalidTaskError, "offset must be an int >= 0"),
    ("page-limit-zero", page(limit=0), InvalidTaskError, "limit must be between 1 and 500"),
    ("page-limit-huge", page(limit=HUGE), InvalidTaskError, "limit must be between 1 and 500"),
    (
        "page-limit-float",
        page(limit=2.5),
        InvalidTaskError,
        "limit must be an int between 1 and 500, got 2.5",
    ),
    ("page-status-unknown", page(status="done"), InvalidTaskError, "status must be one of"),
    ("page-status-int", page(status=3), InvalidTaskError, "status must be one of"),
    ("page-type-int", page(task_type=3), InvalidTaskError, "task_type must be a non-empty str"),
    ("page-search-int", page(search=3), InvalidTaskError, "search must be a non-empty str"),
    ("detail-none", client("get_task_detail", None), InvalidTaskError, "task_id must be"),
    ("detail-unknown", client("get_task_detail", "ghost"), TaskNotFoundError, "'ghost'"),
    ("retry-int", client("retry_task", 3), InvalidTaskError, "task_id must be"),
    ("retry-pending", client("retry_task", "known"), InvalidTaskError, "'known'"),
    ("graph-type-int", client("get_task_graph", task_type=3), InvalidTaskError, "task_type"),
    ("graph-around-int", client("get_task_graph", around=3), InvalidTaskError, "around must"),
    (
        "graph-depth-bool",
        client("get_task_graph", around="known", depth=True),
        InvalidTaskError,
        "depth must be an int >= 0 or None, got True",
    ),
    (
        "graph-depth-float",
        client("get_task_graph", around="known", depth=1.5),
        InvalidTaskError,
        "depth must be an int >= 0 or None, got 1.5",
    ),
    ("wait-nan", client("wait_for_task", "known", timeout=math.nan), InvalidTaskError, "nan"),
    ("wait-huge-int", client("wait_for_task", "known", timeout=HUGE), InvalidTaskError, "1000"),
    ("wait-bool", client("wait_for_task", "known", timeout=True), InvalidTaskError, "got True"),
    ("cleanup-none", client("cleanup_completed_tasks", None), InvalidTaskError, "got None"),
]

SUBMITS: list[tuple[str, Call, type[ActorsError], str]] = [
    (
        "submit-timeout-nan",
        lambda tm: tm.submit(one, timeout=math.nan),
        InvalidTaskError,
        "timeout must be a finite number of seconds > 0 or None, got nan",
    ),
    (
        "submit-unknown-option",
        lambda tm: tm.submit(one, retries=3),  # type: ignore[call-overload]
        InvalidTaskError,
        "submit() got unknown option(s) 'retries'",
    ),
    (
        "submit-executor",
        lambda tm: tm.submit(plain, executor="gpu"),  # type: ignore[call-overload]
        InvalidTaskError,
        "executor must be one of 'thread', 'process', 'dask' or None",
    ),
    ("map-int", lambda tm: tm.map(one, 3), InvalidTaskError, "map() takes an iterable"),
    ("map-str", lambda tm: tm.map(one, "ab"), InvalidTaskError, "got 'ab'; for one call use"),
    (
        "map-task_id",
        lambda tm: tm.map(one, [1], task_id="x"),  # type: ignore[call-overload]
        InvalidTaskError,
        "map() gives each task its own id",
    ),
    (
        "map-return_exceptions-int",
        lambda tm: tm.map(one, [1], return_exceptions=1),  # type: ignore[call-overload]
        InvalidTaskError,
        "return_exceptions must be a bool, got 1",
    ),
    (
        "map-max_retries-negative",
        lambda tm: tm.map(one, [1], max_retries=-1),
        InvalidTaskError,
        "max_retries must be an int >= 0, got -1",
    ),
    (
        "thread_pool-executor",
        lambda tm: tm.thread_pool.submit(print, executor="gpu"),
        InvalidTaskError,
        "executor must be one of",
    ),
]


@pytest.fixture
async def tm() -> AsyncIterator[UnifiedTaskManager]:
    async with ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0}, clock=FakeClock()) as running:
        manager = running.task_manager
        await manager.register_task("known", one, task_id="known")
        yield manager


@pytest.mark.parametrize(
    ("bad_call", "error", "fragment"),
    [row[1:] for row in QUERIES + SUBMITS],
    ids=[row[0] for row in QUERIES + SUBMITS],
)
async def test_a_query_or_submit_of_the_wrong_type_is_refused(
    tm: UnifiedTaskManager, bad_call: Call, error: type[ActorsError], fragment: str
) -> None:
    assert fragment in await refused_as_before(tm, bad_call, error)


class OnlyMonotonic:
    def monotonic(self) -> float:
        return 0.0


BUILDS: list[tuple[str, Callable[[], object], type[ActorsError], str]] = [
    ("breaker-name-none", lambda: CircuitBreaker(None), BreakerConfigError, "name must be"),  # type: ignore[arg-type]
    (
        "breaker-threshold-bool",
        lambda: CircuitBreaker("x", failure_threshold=True),
        BreakerConfigError,
        "failure_threshold must be an int >= 1, got True",
    ),
    (
        "breaker-threshold-float",
        lambda: CircuitBreaker("x", failure_threshold=2.0),  # type: ignore[arg-type]
        BreakerConfigError,
        "failure_threshold must be an int >= 1, got 2.0",
    ),
    (
        "breaker-recovery-huge-int",
        lambda: CircuitBreaker("x", recovery_timeout=HUGE),
        BreakerConfigError,
        "recovery_timeout must be a finite number of seconds > 0",
    ),
    (
        "breaker-recovery-str",
        lambda: CircuitBreaker("x", recovery_timeout="30"),  # type: ignore[arg-type]
        BreakerConfigError,
        "got '30'",
    ),
    (
        "breaker-half-open-negative",
        lambda: CircuitBreaker("x", half_open_max_calls=-1),
        BreakerConfigError,
        "half_open_max_calls must be an int >= 1, got -1",
    ),
    (
        "breaker-exclude-class",
        lambda: CircuitBreaker("x", exclude=ValueError),  # type: ignore[arg-type]
        BreakerConfigError,
        "exclude must be a tuple of exception classes",
    ),
    (
        "system-clock-int",
        lambda: ActorSystem(clock=3),  # type: ignore[arg-type]
        ConfigError,
        "clock must be a supervisors.Clock (with monotonic() and call_later() methods, such "
        "as supervisors.testing.FakeClock) or None (the system clock), got 3",
    ),
    (
        "system-clock-zero",  # was taken as "no clock": the system clock
        lambda: ActorSystem(clock=0),  # type: ignore[arg-type]
        ConfigError,
        "clock must be a supervisors.Clock",
    ),
    (
        "system-clock-without-call_later",  # was taken: the system schedules with call_later
        lambda: ActorSystem(clock=OnlyMonotonic()),  # type: ignore[arg-type]
        ConfigError,
        "clock must be a supervisors.Clock",
    ),
    (
        "system-config-list",
        lambda: ActorSystem([1]),
        ConfigError,
        "config must be a mapping of upper-case keys or a Config, got [1]",
    ),
    (
        "graph-filter-status",
        lambda: TaskGraph(()).filter(status="done"),  # type: ignore[arg-type]
        InvalidTaskError,
        "status must be a TaskStatus",
    ),
    (
        "graph-filter-type",
        lambda: TaskGraph(()).filter(task_type=3),  # type: ignore[arg-type]
        InvalidTaskError,
        "task_type must be a str or None, got 3",
    ),
    (
        "graph-neighbourhood-depth",
        lambda: TaskGraph(()).neighbourhood("a", depth=-1),
        InvalidTaskError,
        "depth must be an int >= 0 or None, got -1",
    ),
]


@pytest.mark.parametrize(
    ("build", "error", "fragment"), [row[1:] for row in BUILDS], ids=[row[0] for row in BUILDS]
)
def test_a_breaker_system_or_graph_of_the_wrong_types_is_refused(
    build: Callable[[], object], error: type[ActorsError], fragment: str
) -> None:
    assert fragment in refusal(error, build)


# -- refusals change nothing ---------------------------------------------------------------


async def test_a_refused_map_leaves_no_breaker_behind(tm: UnifiedTaskManager) -> None:
    """The third item cannot be pickled for the process executor: before, the breaker the
    map names was made (and listed in the metrics) before that item was checked."""
    system = tm._get_system()
    before = await tm.get_all_tasks()
    lock = threading.Lock()
    with pytest.raises(InvalidTaskError) as raised:
        await tm.map(plain, [1, 2, lock], executor="process", circuit_breaker="svc")
    assert "cannot be pickled for the 'process' executor" in str(raised.value)
    assert system.circuit_breakers.get("svc") is None
    assert (await tm.get_metrics()).breakers == {}
    assert await tm.get_all_tasks() == before
    # A map that is taken shares the breaker, as before.
    assert await tm.map(plain, [1, 2], circuit_breaker="svc") == [1, 2]
    assert (await tm.get_metrics()).breakers == {"svc": "closed"}


async def test_a_durable_task_whose_max_retries_the_journal_cannot_store_is_refused(
    tmp_path: Path,
) -> None:
    """Before, the registration was answered with an id, the journal's write failed
    (sqlite3's OverflowError, counted in journal_errors) and a restart lost the task."""
    journal = str(tmp_path / "journal.db")
    config = {"RESTART_BACKOFF_INITIAL": 0.0, "JOURNAL_PATH": journal}
    async with ActorSystem(config) as system:
        tm = system.task_manager
        with pytest.raises(JournalEncodeError) as raised:
            await tm.register_task("big", plain, max_retries=2**63)
        assert str(raised.value) == (
            f"task 'big' cannot be durable: its max_retries ({2**63}) is above "
            f"{2**63 - 1} (2**63 - 1), the largest integer the journal stores; "
            "pass durable=False to keep this task in memory only"
        )
        largest = await tm.register_task("largest", plain, max_retries=2**63 - 1)
        in_memory = await tm.register_task("mem", plain, max_retries=HUGE, durable=False)
        assert [info.task_id for info in await tm.get_all_tasks()] == [largest, in_memory]
        assert (await tm.get_metrics()).journal_errors == 0
    async with ActorSystem(config) as again:
        assert [info.task_id for info in await again.task_manager.get_all_tasks()] == [largest]
