"""`actors.prometheus_collector`: the metrics in the application's own registry."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import actors
from actors import (
    ActorSystem,
    ActorSystemError,
    ConfigError,
    load_config,
    prometheus_collector,
    render_prometheus,
)
from actors.observe._histogram import Histogram, HistogramCounts
from supervisors.testing import FakeClock

BUCKETS = [0.3, 1, 4, 16]
RUN = "actorflow_task_execution_duration_seconds"
WAIT = "actorflow_task_wait_duration_seconds"


def histogram_samples(text: str, family: str) -> dict[tuple[str, str], float]:
    """(task_type, le or 'sum'/'count') -> value, for one histogram family."""
    found: dict[tuple[str, str], float] = {}
    for metric in text_string_to_metric_families(text):
        if metric.name != family:
            continue
        assert metric.type == "histogram"
        for sample in metric.samples:
            suffix = sample.name.removeprefix(family)
            key = sample.labels.get("le", suffix.removeprefix("_"))
            found[(sample.labels["task_type"], key)] = sample.value
    return found


async def run_for(tm: Any, clock: FakeClock, seconds: float, task_type: str) -> str:
    """One task that runs exactly ``seconds`` on the fake clock."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def work() -> None:
        started.set()
        await release.wait()

    task_id: str = await tm.register_task("t", work, task_type=task_type)
    await tm.execute_task(task_id)
    await asyncio.wait_for(started.wait(), 5)
    clock.advance(seconds)
    release.set()
    await tm.wait_for_task(task_id, timeout=5)
    return task_id


async def test_histograms_count_exactly_per_bucket_and_task_type() -> None:
    clock = FakeClock()
    config = {"MAX_CONCURRENT_TASKS": 1, "METRICS_HISTOGRAM_BUCKETS": BUCKETS}
    async with ActorSystem(config, clock=clock) as system:
        tm = system.task_manager
        registry = CollectorRegistry()
        registry.register(prometheus_collector(system))
        for seconds in (0.25, 0.5, 0.5, 2.0, 8.0, 64.0):
            await run_for(tm, clock, seconds, "io")
        # One task queued 3 s behind another (the limit is 1), which so runs 3 s.
        started = asyncio.Event()
        release = asyncio.Event()

        async def first() -> None:
            started.set()
            await release.wait()

        async def second() -> None:
            return None

        a = await tm.register_task("a", first, task_type="cpu")
        b = await tm.register_task("b", second, task_type="cpu")
        await tm.execute_task(a)
        await asyncio.wait_for(started.wait(), 5)
        await tm.execute_task(b)
        clock.advance(3.0)
        release.set()
        await tm.wait_for_task(b, timeout=5)
        await tm.get_metrics()  # (the outcomes are sent before a scrape: see below)
        text = (await asyncio.to_thread(generate_latest, registry)).decode()
        assert render_prometheus(await tm.get_metrics()) == text
    assert histogram_samples(text, RUN) == {
        ("cpu", "0.3"): 1.0,  # b ran 0 s
        ("cpu", "1.0"): 1.0,
        ("cpu", "4.0"): 2.0,  # a ran 3 s
        ("cpu", "16.0"): 2.0,
        ("cpu", "+Inf"): 2.0,
        ("cpu", "count"): 2.0,
        ("cpu", "sum"): 3.0,
        ("io", "0.3"): 1.0,
        ("io", "1.0"): 3.0,
        ("io", "4.0"): 4.0,
        ("io", "16.0"): 5.0,
        ("io", "+Inf"): 6.0,
        ("io", "count"): 6.0,
        ("io", "sum"): 75.25,
    }
    assert histogram_samples(text, WAIT) == {
        ("cpu", "0.3"): 1.0,  # a did not wait
        ("cpu", "1.0"): 1.0,
        ("cpu", "4.0"): 2.0,  # b waited 3 s
        ("cpu", "16.0"): 2.0,
        ("cpu", "+Inf"): 2.0,
        ("cpu", "count"): 2.0,
        ("cpu", "sum"): 3.0,
        ("io", "0.3"): 6.0,
        ("io", "1.0"): 6.0,
        ("io", "4.0"): 6.0,
        ("io", "16.0"): 6.0,
        ("io", "+Inf"): 6.0,
        ("io", "count"): 6.0,
        ("io", "sum"): 0.0,
    }


async def test_the_collector_yields_todays_families_with_fresh_values() -> None:
    async def noop() -> None:
        return None

    async with ActorSystem() as system:
        tm = system.task_manager
        registry = CollectorRegistry()
        registry.register(prometheus_collector(tm))
        before = (await asyncio.to_thread(generate_latest, registry)).decode()
        task_id = await tm.register_task("n", noop, task_type="io")
        await tm.execute_task(task_id, wait=True)
        # A round trip from this loop first: its caller wakes before the task's outcome
        # leaves this loop's outbox, and a scrape's call from another thread does not
        # queue behind it there (it could reach the manager first: "running").
        await tm.get_metrics()
        after = (await asyncio.to_thread(generate_latest, registry)).decode()
    assert 'actorflow_tasks{status="completed"}' not in before
    assert 'actorflow_tasks{status="completed"} 1.0' in after.splitlines()
    assert 'actorflow_tasks_by_type{status="completed",task_type="io"} 1.0' in after.splitlines()
    names = [f.name for f in text_string_to_metric_families(after)]
    assert names == [
        "actorflow_tasks",
        "actorflow_tasks_by_type",
        "actorflow_task_execution_seconds",
        "actorflow_task_wait_seconds",
        "actorflow_task_retries",
        "actorflow_task_failures",
        "actorflow_task_timeouts",
        "actorflow_actor_mailbox_messages",
        "actorflow_ready_queue_tasks",
        "actorflow_pool_queue_tasks",
        "actorflow_actor_restarts",
        "actorflow_concurrency_limit",
        "actorflow_concurrency_limit_max",
        "actorflow_events_dropped",
        "actorflow_circuit_breaker_state",
        "actorflow_resource_percent",
        RUN,
        WAIT,
    ]


async def test_collect_on_an_event_loop_thread_is_refused() -> None:
    async with ActorSystem() as system:
        collector = prometheus_collector(system)
        with pytest.raises(
            ActorSystemError,
            match=r"^metrics_snapshot\(\) would block the event loop running in this thread: ",
        ):
            collector.collect()


def test_registering_asks_nothing_and_a_stopped_system_fails_clearly() -> None:
    system = ActorSystem()
    registry = CollectorRegistry()  # auto_describe: describe() names the families
    registry.register(prometheus_collector(system))
    assert system.running is False
    with pytest.raises(ValueError, match=r"Duplicated timeseries in CollectorRegistry"):
        registry.register(prometheus_collector(system))
    system.stop_sync()
    with pytest.raises(
        ActorSystemError, match=r"^the actor system is shut down; create a new ActorSystem$"
    ):
        generate_latest(registry)


async def test_a_scrape_that_gets_no_answer_is_bounded() -> None:
    async with ActorSystem() as system:
        collector = prometheus_collector(system, timeout=0.05)
        blocked = asyncio.Event()
        gate = asyncio.Event()
        facade = system.supervisor.child("facade")
        # Hold the facade's mailbox: the metrics call waits behind this one.
        facade.tell(actors.runtime.messages.GetBackend(_Blocking(blocked, gate)))
        await asyncio.wait_for(blocked.wait(), 5)
        try:
            with pytest.raises(
                ActorSystemError,
                match=r"^no metrics from the actor system within 0.05s; "
                r"it is overloaded or stuck$",
            ):
                await asyncio.to_thread(collector.collect)
        finally:
            gate.set()


class _AnsweredAsTheWaitGivesUp(Future[Any]):
    """A scrape's future whose bounded wait gives up just as the answer lands: it
    waits for the answer (up to 5 s), then reports a timeout all the same."""

    def result(self, timeout: float | None = None) -> Any:
        if timeout is None:
            return super().result()
        assert self.exception(5) is None  # (the answer is in)
        raise FutureTimeout


async def test_a_scrape_answered_as_its_wait_gives_up_returns_that_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from actors.api import _prometheus

    monkeypatch.setattr(_prometheus, "Future", _AnsweredAsTheWaitGivesUp)
    async with ActorSystem(clock=FakeClock()) as system:  # (one `taken_at` for both)
        snapshot = await asyncio.to_thread(_prometheus.metrics_snapshot, system, 0.05)
        assert snapshot == await system.task_manager.get_metrics()


class _GivenUpAsItIsAnswered(Future[Any]):
    """A scrape's future that its caller cancels (it gave up) just as the monitor,
    about to answer, has found it not done."""

    def done(self) -> bool:
        self.cancel()
        return False


def test_an_answer_to_a_scrape_that_gave_up_is_dropped() -> None:
    from actors.api._prometheus import _FutureReply

    for answer in ("set_result", "set_exception"):
        for future in (Future(), _GivenUpAsItIsAnswered()):
            future.cancel()
            value = ActorSystemError("late") if answer == "set_exception" else "late"
            getattr(_FutureReply(future), answer)(value)  # (no InvalidStateError)
            assert future.cancelled()


class _Blocking:
    """A reply whose delivery blocks the answering actor until ``gate`` is set."""

    def __init__(self, entered: asyncio.Event, gate: asyncio.Event) -> None:
        self.loop = asyncio.get_running_loop()
        self.entered = entered
        self.gate = gate

    def set_result(self, value: Any) -> None:
        self.loop.call_soon_threadsafe(self.entered.set)
        asyncio.run_coroutine_threadsafe(self.gate.wait(), self.loop).result(5)

    def set_exception(self, error: BaseException) -> None:
        self.set_result(None)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("system",), "prometheus_collector needs an ActorSystem or a UnifiedTaskManager, "),
        ((None, 0), "timeout must be a finite number > 0 (seconds), got 0"),
        ((None, float("inf")), "timeout must be a finite number > 0 (seconds), got inf"),
        ((None, True), "timeout must be a finite number > 0 (seconds), got True"),
    ],
)
def test_bad_arguments(arguments: tuple[Any, ...], message: str) -> None:
    system = ActorSystem()
    source = system if arguments[0] is None else arguments[0]
    kwargs = {"timeout": arguments[1]} if len(arguments) > 1 else {}
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        prometheus_collector(source, **kwargs)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ([], "[]"),
        ([1, 1], "[1, 1]"),
        ([2, 1], "[2, 1]"),
        ([0, 1], "[0, 1]"),
        ([1, float("inf")], "[1, inf]"),
        pytest.param([1, 10**400], repr([1, 10**400]), id="too-large-for-a-float"),
        (["1"], "['1']"),
        ([True], "[True]"),
        (1.0, "1.0"),
    ],
)
def test_bucket_configuration_is_checked(value: object, shown: str) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^METRICS_HISTOGRAM_BUCKETS must be a non-empty list of finite numbers > 0 in "
        r"increasing order, got " + shown.replace("[", r"\[").replace("]", r"\]") + r" \(",
    ):
        load_config({"METRICS_HISTOGRAM_BUCKETS": value}, env={})


def test_buckets_from_toml_and_environment(tmp_path: Any) -> None:
    path = tmp_path / "a.toml"
    path.write_text("METRICS_HISTOGRAM_BUCKETS = [0.5, 2]\n", encoding="utf-8")
    assert load_config(toml_path=path, env={}).METRICS_HISTOGRAM_BUCKETS == (0.5, 2.0)
    env = {"ACTORFLOW_METRICS_HISTOGRAM_BUCKETS": "0.1, 1,10"}
    assert load_config(env=env).METRICS_HISTOGRAM_BUCKETS == (0.1, 1.0, 10.0)
    with pytest.raises(
        ConfigError,
        match=r"^METRICS_HISTOGRAM_BUCKETS must be .*, got '1,x' "
        r"\(from environment variable ACTORFLOW_METRICS_HISTOGRAM_BUCKETS\)$",
    ):
        load_config(env={"ACTORFLOW_METRICS_HISTOGRAM_BUCKETS": "1,x"})


def test_histogram_buckets_are_le_and_cumulative() -> None:
    histogram = Histogram((1.0, 2.0))
    for value in (0.0, 1.0, 1.5, 2.0, 2.5):
        histogram.observe_many([value])
    assert histogram.counts() == HistogramCounts((1.0, 2.0), (2, 4), 5, 7.0)


def test_observe_many_counts_as_one_by_one() -> None:
    values = [0.0, 1.0, 1.5, 2.0, 2.5, 0.1, 0.2, 0.30000000000000004]
    one_by_one = Histogram((1.0, 2.0))
    for value in values:
        one_by_one.observe_many([value])
    many = Histogram((1.0, 2.0))
    many.observe_many(values[:3])
    many.observe_many([])
    many.observe_many(values[3:])
    assert many.counts() == one_by_one.counts()
    assert many.counts() == HistogramCounts((1.0, 2.0), (5, 7), 8, 7.6)
