"""Metrics: the quantile sketch against exact quantiles, the snapshot, the Prometheus text."""

from __future__ import annotations

import dataclasses
import itertools
import math
import pickle
import random
import re
import sys
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import PROPERTY
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from actors.core._errors import ActorsError
from actors.core._types import TaskStatus
from actors.engine import Transition
from actors.observe._metrics import (
    BREAKER_STATES,
    MetricsSnapshot,
    QuantileSketch,
    TimingStats,
    empty_snapshot,
    render_prometheus,
)

QUANTILES = (0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)
MIN_VALUE = 1e-9
# The bound is alpha exactly at a bucket's edges; leave room for float rounding only.
ROUNDING = 1 + 1e-9


def exact_quantile(ordered: list[float], q: float) -> float:
    """The element the sketch answers for: rank floor(q * (n - 1)) in sorted order."""
    return ordered[int(q * (len(ordered) - 1))]


def sketch_of(values: list[float], **options: float) -> QuantileSketch:
    sketch = QuantileSketch(**options)  # type: ignore[arg-type]
    for value in values:
        sketch.add_many([value])
    return sketch


def assert_within_alpha(sketch: QuantileSketch, values: list[float], q: float) -> None:
    exact = exact_quantile(sorted(values), q)
    estimate = sketch.quantile(q)
    if exact >= MIN_VALUE:
        assert abs(estimate - exact) <= sketch.alpha * exact * ROUNDING, (q, exact, estimate)
    else:  # the zero bucket: absolute error below the minimum
        assert abs(estimate - exact) < MIN_VALUE, (q, exact, estimate)


# --- accuracy -------------------------------------------------------------------------


def _distributions() -> dict[str, list[float]]:
    rng = random.Random(20240601)
    n = 20_000
    return {
        "uniform": [rng.uniform(0.0, 1.0) for _ in range(n)],
        "exponential": [rng.expovariate(1.0) for _ in range(n)],
        "lognormal": [rng.lognormvariate(0.0, 2.0) for _ in range(n)],
        "pareto": [rng.paretovariate(1.5) for _ in range(n)],
        "constant": [0.25] * 1000,
        "with_zeros": [0.0] * 5000 + [rng.uniform(0.001, 0.01) for _ in range(n)],
        "below_minimum": [10 ** rng.uniform(-12, -6) for _ in range(n)],
        "bimodal": [rng.gauss(0.005, 0.001) % 1 for _ in range(n)]
        + [rng.gauss(2.0, 0.1) for _ in range(n // 10)],
    }


DISTRIBUTIONS = _distributions()


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("alpha", [0.01, 0.001, 0.05])
def test_quantiles_within_alpha_of_exact(name: str, alpha: float) -> None:
    values = DISTRIBUTIONS[name]
    # Room for every bucket: the cap's collapsing is tested on its own below.
    sketch = sketch_of(values, alpha=alpha, max_buckets=100_000)
    assert sketch.bucket_count < 100_000
    for q in QUANTILES:
        assert_within_alpha(sketch, values, q)


@PROPERTY
@given(
    values=st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
            st.floats(min_value=0.0, max_value=1e-8),
        ),
        min_size=1,
        max_size=300,
    ),
    alpha=st.sampled_from([0.001, 0.01, 0.02, 0.1, 0.5]),
    q=st.floats(min_value=0.0, max_value=1.0),
)
def test_any_quantile_of_any_input_is_within_alpha(
    values: list[float], alpha: float, q: float
) -> None:
    sketch = sketch_of(values, alpha=alpha)
    for quantile in (q, *QUANTILES):
        assert_within_alpha(sketch, values, quantile)


def test_count_sum_mean_min_max_are_exact() -> None:
    rng = random.Random(7)
    values = [rng.expovariate(3.0) for _ in range(5000)] + [0.0, 1e-12, 123.456]
    sketch = sketch_of(values)
    total = 0.0
    for value in values:
        total += value
    assert sketch.count == len(values)
    assert sketch.sum == total
    assert sketch.mean == total / len(values)
    assert sketch.min == 0.0
    assert sketch.max == 123.456
    assert sketch.quantile(0.0) == 0.0
    assert sketch.quantile(1.0) == 123.456


def test_one_value_is_every_quantile() -> None:
    sketch = sketch_of([0.125])
    assert [sketch.quantile(q) for q in QUANTILES] == [0.125] * len(QUANTILES)
    assert sketch.stats() == TimingStats(
        count=1, sum=0.125, mean=0.125, p50=0.125, p95=0.125, p99=0.125, max=0.125
    )


def test_stats_are_the_sketch_quantiles() -> None:
    values = DISTRIBUTIONS["lognormal"]
    sketch = sketch_of(values)
    stats = sketch.stats()
    assert stats == TimingStats(
        count=len(values),
        sum=sketch.sum,
        mean=sketch.mean,
        p50=sketch.quantile(0.5),
        p95=sketch.quantile(0.95),
        p99=sketch.quantile(0.99),
        max=max(values),
    )
    assert stats.p50 < stats.p95 < stats.p99 < stats.max


def test_empty_sketch_is_all_zeros() -> None:
    sketch = QuantileSketch()
    assert sketch.stats() == TimingStats(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert (sketch.count, sketch.sum, sketch.mean, sketch.min, sketch.max) == (0, 0.0, 0.0, 0, 0)
    assert [sketch.quantile(q) for q in QUANTILES] == [0.0] * len(QUANTILES)
    assert sketch.bucket_count == 0
    assert repr(sketch) == "<QuantileSketch alpha=0.01: 0 values, 0 buckets>"


# --- bounded memory -------------------------------------------------------------------


def test_bucket_count_is_bounded_under_a_million_widely_spread_values() -> None:
    rng = random.Random(42)
    values = [10 ** rng.uniform(-9, 6) for _ in range(1_000_000)]
    default = QuantileSketch()
    capped = QuantileSketch(max_buckets=256)
    for value in values:
        default.add_many([value])
        capped.add_many([value])
    # 15 decades at alpha 0.01 need ceil(15 * ln(10) / ln(1.01 / 0.99)) + 1 buckets.
    assert default.bucket_count == 1728 <= default.max_buckets == 2048
    assert capped.bucket_count == 256
    for q in QUANTILES:
        assert_within_alpha(default, values, q)
    # The capped sketch kept the top 256 buckets (values above ~6e3): the high quantiles
    # stay accurate, the low ones collapsed into its lowest bucket.
    for q in (0.95, 0.99, 0.999, 1.0):
        assert_within_alpha(capped, values, q)
    assert capped.quantile(0.01) == capped.quantile(0.5) == capped.quantile(0.6)
    assert capped.quantile(0.0) == min(values)
    assert (capped.count, capped.min, capped.max) == (len(values), min(values), max(values))


@PROPERTY
@given(
    values=st.lists(st.floats(min_value=0.0, max_value=1e300), max_size=200),
    max_buckets=st.integers(min_value=1, max_value=8),
)
def test_bucket_count_never_exceeds_the_cap(values: list[float], max_buckets: int) -> None:
    sketch = QuantileSketch(max_buckets=max_buckets)
    for value in values:
        sketch.add_many([value])
        assert sketch.bucket_count <= max_buckets
    if values:
        # The largest values keep their buckets, so the top is still within alpha.
        assert_within_alpha(sketch, values, 1.0)


def assert_same_sketch(a: QuantileSketch, b: QuantileSketch) -> None:
    assert (a.count, a.min, a.max, a.bucket_count) == (b.count, b.min, b.max, b.bucket_count)
    assert a.sum == pytest.approx(b.sum, rel=1e-12)
    # Every rank of a small sketch (so every bucket); 1001 ranks of a large one.
    steps = min(a.count - 1, 1000)
    ranks = [i / steps for i in range(steps + 1)] if steps else [0.0]
    assert [a.quantile(q) for q in ranks] == [b.quantile(q) for q in ranks]


@PROPERTY
@given(
    values=st.lists(st.floats(min_value=0.0, max_value=1e12), max_size=200),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=5),
    max_buckets=st.sampled_from([1, 2, 3, 5, 20, 2048]),
)
def test_add_many_equals_adding_one_by_one(
    values: list[float], cuts: list[int], max_buckets: int
) -> None:
    """In any chunks: the same count, min, max, buckets and every quantile, and the
    same sum to the last bit (the values are added in the same order)."""
    many = QuantileSketch(max_buckets=max_buckets)
    edges = [0, *sorted(min(cut, len(values)) for cut in cuts), len(values)]
    for start, stop in itertools.pairwise(edges):
        many.add_many(values[start:stop])
    one_by_one = sketch_of(values, max_buckets=max_buckets)
    assert many.sum == one_by_one.sum
    assert many.bucket_count <= max_buckets
    if values:
        assert_same_sketch(many, one_by_one)
    else:
        assert (many.count, many.sum, many.bucket_count) == (0, 0.0, 0)


@pytest.mark.parametrize("value", [-1.0, -1e-300, math.nan, math.inf, -math.inf])
def test_add_many_refuses_what_is_not_a_duration_and_counts_none(value: float) -> None:
    sketch = sketch_of([0.5])
    with pytest.raises(
        ValueError, match=rf"^a duration must be a finite number >= 0, got {value!r}$"
    ):
        sketch.add_many([0.25, 1.0, value, 2.0])
    assert (sketch.count, sketch.sum, sketch.min, sketch.max) == (1, 0.5, 0.5, 0.5)
    assert sketch.bucket_count == 1


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1.0, -1e-300, math.nan, math.inf, -math.inf])
def test_adding_one_refuses_what_is_not_a_duration(value: float) -> None:
    sketch = QuantileSketch()
    with pytest.raises(
        ValueError, match=rf"^a duration must be a finite number >= 0, got {value!r}$"
    ):
        sketch.add_many([value])
    assert sketch.count == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alpha": 0.0}, r"^alpha must be between 0 and 1 \(exclusive\), got 0\.0$"),
        ({"alpha": 1.0}, r"^alpha must be between 0 and 1 \(exclusive\), got 1\.0$"),
        ({"alpha": math.nan}, r"^alpha must be between 0 and 1 \(exclusive\), got nan$"),
        ({"max_buckets": 0}, r"^max_buckets must be an int >= 1, got 0$"),
        ({"max_buckets": 2.5}, r"^max_buckets must be an int >= 1, got 2\.5$"),
        ({"max_buckets": True}, r"^max_buckets must be an int >= 1, got True$"),
        ({"min_value": 0.0}, r"^min_value must be a finite number > 0, got 0\.0$"),
        ({"min_value": math.inf}, r"^min_value must be a finite number > 0, got inf$"),
    ],
)
def test_bad_sketch_options_fail_when_built(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuantileSketch(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("q", [-0.1, 1.5, math.nan])
def test_quantile_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match=rf"^quantile must be between 0 and 1, got {q!r}$"):
        sketch_of([1.0]).quantile(q)


# --- the snapshot ---------------------------------------------------------------------


def hand_built() -> MetricsSnapshot:
    return MetricsSnapshot(
        tasks_by_status={"running": 2, "queued": 3, "completed": 10},
        tasks_by_type={
            "io": {"running": 2, "completed": 7},
            'say "hi"\n\\': {"queued": 3, "completed": 3},
        },
        execution_time={
            "io": TimingStats(count=7, sum=3.5, mean=0.5, p50=0.25, p95=1.5, p99=2.0, max=2.5)
        },
        wait_time={
            "io": TimingStats(
                count=9, sum=0.75, mean=0.75 / 9, p50=0.0625, p95=0.125, p99=0.5, max=0.5
            ),
            'say "hi"\n\\': TimingStats(3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        },
        retries=4,
        failures=1,
        timeouts=2,
        mailbox_depth={"task_manager": 5, "facade": 0},
        ready_queue=3,
        pool_queue=1,
        restarts={"task_manager": 2, "thread_pool": 0},
        concurrency_limit=4,
        max_concurrency=8,
        events_dropped=17,
        breakers={"llm-api": "half_open", "db": "closed"},
        resource={"cpu_percent": 12.5, "memory_percent": 40.0},
        taken_at=1234.5,
    )


def test_snapshot_is_immutable_all_the_way_down() -> None:
    snapshot = hand_built()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.retries = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.execution_time["io"].p50 = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError, match="does not support item assignment"):
        snapshot.tasks_by_status["running"] = 0  # type: ignore[index]
    with pytest.raises(TypeError, match="does not support item assignment"):
        snapshot.tasks_by_type["io"]["running"] = 0  # type: ignore[index]
    with pytest.raises(TypeError, match="does not support item assignment"):
        snapshot.tasks_by_type["new"] = {}  # type: ignore[index]
    for field in dataclasses.fields(MetricsSnapshot):
        value = getattr(snapshot, field.name)
        if isinstance(value, dict):
            pytest.fail(f"{field.name} is a mutable dict")


def test_snapshot_copies_what_it_is_built_from() -> None:
    by_status = {"running": 1}
    by_type = {"io": {"running": 1}}
    snapshot = dataclasses.replace(
        empty_snapshot(), tasks_by_status=by_status, tasks_by_type=by_type
    )
    by_status["running"] = 99
    by_type["io"]["running"] = 99
    by_type["cpu"] = {"queued": 1}
    assert dict(snapshot.tasks_by_status) == {"running": 1}
    assert {t: dict(c) for t, c in snapshot.tasks_by_type.items()} == {"io": {"running": 1}}


def test_snapshot_pickles_and_compares_by_value() -> None:
    snapshot = hand_built()
    assert snapshot == hand_built()
    assert pickle.loads(pickle.dumps(snapshot)) == snapshot
    assert dataclasses.replace(snapshot, retries=5) != snapshot


def test_empty_snapshot() -> None:
    snapshot = empty_snapshot(taken_at=7.5)
    assert snapshot.taken_at == 7.5
    assert empty_snapshot().taken_at == 0.0
    for field in dataclasses.fields(MetricsSnapshot):
        if field.name != "taken_at":
            assert not getattr(snapshot, field.name), field.name


def test_snapshot_refuses_an_unknown_breaker_state() -> None:
    with pytest.raises(
        ValueError,
        match=r"^circuit breaker 'llm' has state 'half-open'; "
        r"expected one of closed, open, half_open$",
    ):
        dataclasses.replace(empty_snapshot(), breakers={"llm": "half-open"})
    assert BREAKER_STATES == ("closed", "open", "half_open")


# --- Prometheus -----------------------------------------------------------------------

FAMILIES = [
    ("actorflow_tasks", "gauge"),
    ("actorflow_tasks_by_type", "gauge"),
    ("actorflow_task_execution_seconds", "summary"),
    ("actorflow_task_wait_seconds", "summary"),
    ("actorflow_task_retries", "counter"),
    ("actorflow_task_failures", "counter"),
    ("actorflow_task_timeouts", "counter"),
    ("actorflow_actor_mailbox_messages", "gauge"),
    ("actorflow_ready_queue_tasks", "gauge"),
    ("actorflow_pool_queue_tasks", "gauge"),
    ("actorflow_actor_restarts", "counter"),
    ("actorflow_concurrency_limit", "gauge"),
    ("actorflow_concurrency_limit_max", "gauge"),
    ("actorflow_events_dropped", "counter"),
    ("actorflow_circuit_breaker_state", "gauge"),
    ("actorflow_resource_percent", "gauge"),
    ("actorflow_task_execution_duration_seconds", "histogram"),
    ("actorflow_task_wait_duration_seconds", "histogram"),
]
WEIRD = 'say "hi"\n\\'


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, f"duplicate sample {key}"
            found[key] = sample.value
    return found


def test_render_prometheus_round_trips_through_the_parser() -> None:
    def s(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, tuple(sorted(labels.items())))

    expected = {
        s("actorflow_tasks", status="completed"): 10.0,
        s("actorflow_tasks", status="queued"): 3.0,
        s("actorflow_tasks", status="running"): 2.0,
        s("actorflow_tasks_by_type", task_type="io", status="completed"): 7.0,
        s("actorflow_tasks_by_type", task_type="io", status="running"): 2.0,
        s("actorflow_tasks_by_type", task_type=WEIRD, status="completed"): 3.0,
        s("actorflow_tasks_by_type", task_type=WEIRD, status="queued"): 3.0,
        s("actorflow_task_execution_seconds", task_type="io", quantile="0.5"): 0.25,
        s("actorflow_task_execution_seconds", task_type="io", quantile="0.95"): 1.5,
        s("actorflow_task_execution_seconds", task_type="io", quantile="0.99"): 2.0,
        s("actorflow_task_execution_seconds_count", task_type="io"): 7.0,
        s("actorflow_task_execution_seconds_sum", task_type="io"): 3.5,
        s("actorflow_task_wait_seconds", task_type="io", quantile="0.5"): 0.0625,
        s("actorflow_task_wait_seconds", task_type="io", quantile="0.95"): 0.125,
        s("actorflow_task_wait_seconds", task_type="io", quantile="0.99"): 0.5,
        s("actorflow_task_wait_seconds_count", task_type="io"): 9.0,
        s("actorflow_task_wait_seconds_sum", task_type="io"): 0.75,
        s("actorflow_task_wait_seconds", task_type=WEIRD, quantile="0.5"): 0.0,
        s("actorflow_task_wait_seconds", task_type=WEIRD, quantile="0.95"): 0.0,
        s("actorflow_task_wait_seconds", task_type=WEIRD, quantile="0.99"): 0.0,
        s("actorflow_task_wait_seconds_count", task_type=WEIRD): 3.0,
        s("actorflow_task_wait_seconds_sum", task_type=WEIRD): 0.0,
        s("actorflow_task_retries_total"): 4.0,
        s("actorflow_task_failures_total"): 1.0,
        s("actorflow_task_timeouts_total"): 2.0,
        s("actorflow_actor_mailbox_messages", actor="facade"): 0.0,
        s("actorflow_actor_mailbox_messages", actor="task_manager"): 5.0,
        s("actorflow_ready_queue_tasks"): 3.0,
        s("actorflow_pool_queue_tasks"): 1.0,
        s("actorflow_actor_restarts_total", child="task_manager"): 2.0,
        s("actorflow_actor_restarts_total", child="thread_pool"): 0.0,
        s("actorflow_concurrency_limit"): 4.0,
        s("actorflow_concurrency_limit_max"): 8.0,
        s("actorflow_events_dropped_total"): 17.0,
        s("actorflow_circuit_breaker_state", breaker="db", state="closed"): 1.0,
        s("actorflow_circuit_breaker_state", breaker="db", state="open"): 0.0,
        s("actorflow_circuit_breaker_state", breaker="db", state="half_open"): 0.0,
        s("actorflow_circuit_breaker_state", breaker="llm-api", state="closed"): 0.0,
        s("actorflow_circuit_breaker_state", breaker="llm-api", state="open"): 0.0,
        s("actorflow_circuit_breaker_state", breaker="llm-api", state="half_open"): 1.0,
        s("actorflow_resource_percent", resource="cpu"): 12.5,
        s("actorflow_resource_percent", resource="memory"): 40.0,
    }
    assert samples(render_prometheus(hand_built())) == expected


def test_metric_names_follow_prometheus_conventions() -> None:
    text = render_prometheus(hand_built())
    families = list(text_string_to_metric_families(text))
    # The parser strips `_total` from a counter's family name; the samples keep it.
    assert [(f.name, f.type) for f in families] == FAMILIES
    name = re.compile(r"^actorflow_[a-z_]+$")
    for family in families:
        assert name.match(family.name), family.name
        assert family.documentation, f"{family.name} has no HELP text"
        for sample in family.samples:
            assert name.match(sample.name), sample.name
            assert sample.name.endswith("_total") == (family.type == "counter"), sample.name
        if family.type == "summary":
            assert family.name.endswith("_seconds")
    # The exposition itself names counters with `_total`, and every family has HELP.
    for family_name, kind in FAMILIES:
        exposed = family_name + "_total" if kind == "counter" else family_name
        assert f"\n# TYPE {exposed} {kind}\n" in f"\n{text}"
        assert re.search(rf"^# HELP {exposed} \S", text, re.MULTILINE), exposed


def test_empty_snapshot_renders_every_family() -> None:
    text = render_prometheus(empty_snapshot())
    families = list(text_string_to_metric_families(text))
    assert [(f.name, f.type) for f in families] == FAMILIES
    assert samples(text) == {
        (name, ()): 0.0
        for name in (
            "actorflow_task_retries_total",
            "actorflow_task_failures_total",
            "actorflow_task_timeouts_total",
            "actorflow_ready_queue_tasks",
            "actorflow_pool_queue_tasks",
            "actorflow_concurrency_limit",
            "actorflow_concurrency_limit_max",
            "actorflow_events_dropped_total",
        )
    }


def test_render_prometheus_without_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(
        ActorsError,
        match=r"^render_prometheus needs the prometheus_client package: "
        r"pip install 'actorflow\[prometheus\]'$",
    ):
        render_prometheus(empty_snapshot())


# -- the monitor's status counts (`TaskMonitorActor._apply`), against a plain model ----

_LIVES = {
    "usual": ("pending", "queued", "running", "completed"),
    "simple": ("pending", "running", "completed"),
    "waited": ("pending", "waiting", "queued", "running", "completed"),
    "retried": ("pending", "queued", "running", "retrying", "queued", "running", "failed"),
    "cancelled": ("pending", "queued", "cancelled"),
}


def _monitor(max_types: int) -> Any:
    """A monitor actor's logic on its own state (no actor started: `_apply` only)."""
    from actors.core._config import Config
    from actors.runtime._monitor import MonitorState, TaskMonitorActor

    monitor = object.__new__(TaskMonitorActor)
    monitor.state = MonitorState()
    monitor.ctx = SimpleNamespace(config=Config(METRICS_MAX_TASK_TYPES=max_types))
    return monitor


def _modelled_counts(
    batches: list[list[Transition]], max_types: int
) -> tuple[list[tuple[Any, int]], list[tuple[str, list[tuple[Any, int]]]]]:
    """The status counts, key order included, as moving one transition at a time
    (the old status first) gives them: a type's label is its own name while fewer than
    ``max_types`` types hold one, freed (with its counts) with the type's last task."""
    by_status: Counter[Any] = Counter()
    by_type: dict[str, Counter[Any]] = {}
    labels: dict[str, str] = {}
    live: Counter[str] = Counter()
    for batch in batches:
        for t in batch:
            label = labels.get(t.task_type)
            if label is None:
                own = sum(1 for k, v in labels.items() if k == v)
                label = labels[t.task_type] = t.task_type if own < max_types else "__other__"
            counts = by_type.setdefault(label, Counter())
            if t.old is not None:
                by_status[t.old] -= 1
                counts[t.old] -= 1
            if t.new is not None:
                by_status[t.new] += 1
                counts[t.new] += 1
            if t.old is None:
                live[t.task_type] += 1
            elif t.new is None:
                live[t.task_type] -= 1
                if not live[t.task_type]:
                    del live[t.task_type]
                    if labels.pop(t.task_type) == t.task_type:
                        del by_type[t.task_type]
    return list(by_status.items()), [(k, list(v.items())) for k, v in by_type.items()]


@PROPERTY
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(_LIVES)), st.sampled_from("abcd"), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    st.randoms(use_true_random=False),
    st.integers(1, 3),
    st.integers(1, 20),
)
def test_the_monitor_counts_statuses_as_moving_one_transition_at_a_time(
    tasks: list[tuple[str, str, bool]], rnd: random.Random, max_types: int, batch: int
) -> None:
    # The usual moves are counted in ints per run of one label, the others one by one:
    # the counts, and the order their keys first came in, are those of the plain model,
    # whatever the interleaving of tasks, types, labels and batches.
    lives = []
    for number, (life, task_type, removed) in enumerate(tasks):
        statuses = [None, *(TaskStatus(s) for s in _LIVES[life]), *([None] if removed else [])]
        moves = list(itertools.pairwise(statuses))
        lives.append([(f"t{number}", task_type, old, new) for old, new in moves])
    flat = []
    while any(lives):
        life = rnd.choice([life for life in lives if life])
        task_id, task_type, old, new = life.pop(0)
        flat.append(Transition(task_id, task_id, task_type, old, new, 1, 0.0, 0.0, None))
    batches = [flat[i : i + batch] for i in range(0, len(flat), batch)]
    monitor = _monitor(max_types)
    for items in batches:
        monitor._apply(tuple(items), "new")
    state = monitor.state
    got_by_type = [(k, list(v.items())) for k, v in state.by_type.items()]
    assert (list(state.by_status.items()), got_by_type) == _modelled_counts(batches, max_types)
