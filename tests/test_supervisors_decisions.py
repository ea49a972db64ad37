"""The supervisor's pure decisions (supervisors._decisions): no actors, no clock."""

from __future__ import annotations

import pytest
from helpers import tenacity_schedule
from hypothesis import given
from hypothesis import strategies as st
from tenacity import (
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
    wait_none,
)

from supervisors import Restart, Strategy
from supervisors._decisions import (
    add_restart,
    affected_children,
    backoff_delay,
    next_failure_count,
    prune_window,
    should_restart,
)

# -- the restart table ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "abnormal", "expected"),
    [
        (Restart.PERMANENT, False, True),
        (Restart.PERMANENT, True, True),
        (Restart.TRANSIENT, False, False),
        (Restart.TRANSIENT, True, True),
        (Restart.TEMPORARY, False, False),
        (Restart.TEMPORARY, True, False),
    ],
)
def test_restart_table(restart: Restart, abnormal: bool, expected: bool) -> None:
    assert should_restart(restart, abnormal) is expected


# -- restart intensity: a sliding window ----------------------------------------------


def test_prune_window_keeps_only_timestamps_younger_than_the_window() -> None:
    assert prune_window([0.0, 1.0, 4.9, 5.0, 6.0], now=10.0, within=5.0) == [6.0]
    assert prune_window([0.0, 1.0, 4.9, 5.0, 6.0], now=9.9, within=5.0) == [5.0, 6.0]


def test_add_restart_exceeds_only_on_the_restart_past_the_maximum() -> None:
    window: list[float] = []
    results = []
    for now in (0.0, 1.0, 2.0, 3.0):
        window, exceeded = add_restart(window, now, within=5.0, max_restarts=3)
        results.append(exceeded)
    assert results == [False, False, False, True]
    assert window == [0.0, 1.0, 2.0, 3.0]


def test_add_restart_spread_wider_than_the_window_never_exceeds() -> None:
    window: list[float] = []
    for now in (0.0, 2.0, 4.0, 6.0, 8.0, 10.0):
        window, exceeded = add_restart(window, now, within=5.0, max_restarts=3)
        assert exceeded is False
    assert window == [6.0, 8.0, 10.0]


def test_add_restart_with_zero_max_restarts_exceeds_at_once() -> None:
    assert add_restart([], 0.0, within=5.0, max_restarts=0) == ([0.0], True)


@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=10.0), max_size=30),
    within=st.floats(min_value=0.1, max_value=20.0),
    max_restarts=st.integers(min_value=0, max_value=10),
)
def test_add_restart_matches_a_direct_count(
    gaps: list[float], within: float, max_restarts: int
) -> None:
    window: list[float] = []
    history: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        history.append(now)
        window, exceeded = add_restart(window, now, within, max_restarts)
        inside = [t for t in history if now - t < within]
        assert window == inside
        assert window[-1] == now
        assert exceeded is (len(inside) > max_restarts)


# -- strategies -------------------------------------------------------------------------


ORDER = ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("strategy", "failed", "expected"),
    [
        (Strategy.ONE_FOR_ONE, "b", ["b"]),
        (Strategy.ONE_FOR_ALL, "b", ["a", "b", "c", "d"]),
        (Strategy.REST_FOR_ONE, "b", ["b", "c", "d"]),
        (Strategy.REST_FOR_ONE, "a", ["a", "b", "c", "d"]),
        (Strategy.REST_FOR_ONE, "d", ["d"]),
    ],
)
def test_affected_children(strategy: Strategy, failed: str, expected: list[str]) -> None:
    assert affected_children(strategy, ORDER, failed) == expected


@given(
    n=st.integers(min_value=1, max_value=20),
    data=st.data(),
    strategy=st.sampled_from(list(Strategy)),
)
def test_affected_children_are_in_start_order_and_include_the_failed_one(
    n: int, data: st.DataObject, strategy: Strategy
) -> None:
    order = [f"c{i}" for i in range(n)]
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    failed = order[index]
    ids = affected_children(strategy, order, failed)
    assert failed in ids
    assert ids == sorted(ids, key=order.index)
    expected = {
        Strategy.ONE_FOR_ONE: [failed],
        Strategy.ONE_FOR_ALL: order,
        Strategy.REST_FOR_ONE: order[index:],
    }[strategy]
    assert ids == expected


# -- the backoff counter and its reset ------------------------------------------------


@pytest.mark.parametrize(
    ("count", "stable_for", "reset_after", "expected"),
    [
        (0, 0.0, 10.0, 1),
        (3, 9.99, 10.0, 4),
        (3, 10.0, 10.0, 1),
        (7, 60.0, 10.0, 1),
    ],
)
def test_next_failure_count(
    count: int, stable_for: float, reset_after: float, expected: int
) -> None:
    assert next_failure_count(count, stable_for, reset_after) == expected


@given(
    count=st.integers(min_value=0, max_value=1000),
    stable_for=st.floats(min_value=0.0, max_value=1e6),
    reset_after=st.floats(min_value=0.001, max_value=1e6),
)
def test_next_failure_count_property(count: int, stable_for: float, reset_after: float) -> None:
    result = next_failure_count(count, stable_for, reset_after)
    assert result == (1 if stable_for >= reset_after else count + 1)


# -- the delay: tenacity's, never our own -------------------------------------------------


def test_backoff_delay_is_tenacitys_exponential_sequence() -> None:
    wait = wait_exponential(multiplier=1, max=100)
    delays = [backoff_delay(wait, n) for n in range(1, 9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0]
    assert delays == tenacity_schedule(wait, 8)


def test_backoff_delay_with_zero_jitter_is_exact() -> None:
    wait = wait_exponential_jitter(multiplier=0.5, max=10.0, jitter=0)
    delays = [backoff_delay(wait, n) for n in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert delays == tenacity_schedule(wait, 6)


def test_backoff_delay_of_combined_waits_adds_them() -> None:
    wait = wait_fixed(3) + wait_exponential(multiplier=1, max=100)
    delays = [backoff_delay(wait, n) for n in range(1, 5)]
    assert delays == [4.0, 5.0, 7.0, 11.0]
    assert delays == tenacity_schedule(wait, 4)


def test_backoff_delay_is_never_negative() -> None:
    assert backoff_delay(wait_fixed(-2), 1) == 0.0
    assert backoff_delay(wait_none(), 5) == 0.0


@given(
    attempt=st.integers(min_value=1, max_value=60),
    multiplier=st.floats(min_value=0.001, max_value=10.0),
    maximum=st.floats(min_value=0.001, max_value=1000.0),
)
def test_backoff_delay_without_jitter_property(
    attempt: int, multiplier: float, maximum: float
) -> None:
    wait = wait_exponential_jitter(multiplier=multiplier, max=maximum, jitter=0)
    assert backoff_delay(wait, attempt) == min(multiplier * 2 ** (attempt - 1), maximum)


@given(
    attempt=st.integers(min_value=1, max_value=12),
    jitter=st.floats(min_value=0.0, max_value=5.0),
)
def test_backoff_delay_with_jitter_stays_within_bounds(attempt: int, jitter: float) -> None:
    wait = wait_exponential_jitter(multiplier=1, max=1e9, jitter=jitter)
    base = 2.0 ** (attempt - 1)
    delay = backoff_delay(wait, attempt)
    assert base <= delay <= base + jitter
