"""The small shared helpers of `actors.core`: ReadOnly, ClosedOnExit, gc_paused,
attribute_reader, finite_float, TaskNotFoundError.for_id."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from fractions import Fraction

import pytest

from actors import CircuitBreaker, TaskNotFoundError
from actors.core import (
    BULK,
    ClosedOnExit,
    ReadOnly,
    attribute_reader,
    finite_float,
    gc_paused,
)


class Settings:
    limit = ReadOnly[int]()

    def __init__(self, limit: int) -> None:
        self._limit = limit


def test_read_only_reads_the_private_attribute_and_refuses_a_write() -> None:
    settings = Settings(3)
    with pytest.raises(AttributeError, match=r"^attribute 'limit' is read-only$"):
        settings.limit = 4
    assert (settings.limit, settings._limit) == (3, 3)
    assert isinstance(Settings.limit, ReadOnly)


def test_a_breaker_setting_is_read_only() -> None:
    breaker = CircuitBreaker("svc", failure_threshold=2, recovery_timeout=1.5)
    with pytest.raises(AttributeError, match=r"^attribute 'failure_threshold' is read-only$"):
        breaker.failure_threshold = 9
    assert (breaker.name, breaker.failure_threshold, breaker.recovery_timeout) == ("svc", 2, 1.5)


def test_closed_on_exit_closes_once_on_the_way_out_even_on_an_error() -> None:
    closed: list[str] = []

    class Thing(ClosedOnExit):
        def close(self) -> None:
            closed.append("closed")

    thing = Thing()
    with thing as entered:
        assert (entered is thing, closed) == (True, [])
    with pytest.raises(KeyError), thing:
        raise KeyError("x")
    assert closed == ["closed", "closed"]


def test_gc_paused_turns_the_gc_off_from_bulk_on_and_back_on_after() -> None:
    assert gc.isenabled()
    with gc_paused(BULK - 1):
        assert gc.isenabled()
    with gc_paused(BULK):
        assert not gc.isenabled()
    seen: list[bool] = []

    def fail() -> None:
        seen.append(gc.isenabled())
        raise ValueError("boom")

    with pytest.raises(ValueError, match=r"^boom$"):
        gc_paused()(fail)()
    assert (seen, gc.isenabled()) == ([False], True)

    @gc_paused()
    def load() -> bool:
        return gc.isenabled()

    assert (load(), gc.isenabled()) == (False, True)


def test_attribute_reader_reads_prefixed_attributes_by_field_name() -> None:
    @dataclass
    class Snapshot:
        count: int
        total: float

    class Live:
        def __init__(self) -> None:
            self._count, self._total = 2, 5.5

    read = attribute_reader(("count", "total"), prefix="_")
    assert read(Live()) == {"count": 2, "total": 5.5}
    assert Snapshot(**read(Live())) == Snapshot(2, 5.5)
    with pytest.raises(
        ValueError, match=r"^attribute_reader takes two names or more, got \('count',\)$"
    ):
        attribute_reader(["count"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1.5, 1.5), (2, 2.0), (Fraction(1, 4), 0.25), (float("inf"), None), (float("nan"), None),
     (10**400, None), (True, None), ("1", None), (None, None)],
)  # fmt: skip
def test_finite_float(value: object, expected: float | None) -> None:
    assert finite_float(value) == expected


def test_task_not_found_for_id_names_the_id() -> None:
    error = TaskNotFoundError.for_id("t-1")
    assert isinstance(error, TaskNotFoundError)
    assert str(error) == "no task with id 't-1' (never registered, or cleaned up)"
