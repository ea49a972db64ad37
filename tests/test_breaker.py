"""The circuit breaker: exact state sequences on a fake clock, concurrency, outcomes."""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import Unprintable, fails_unprintably
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import ActorsError, configure_logging
from actors.core._errors import BreakerConfigError, CircuitOpenError
from actors.engine._breaker import (
    BreakerRegistry,
    BreakerState,
    BreakerStats,
    BreakerTransition,
    CircuitBreaker,
    Permit,
)
from supervisors import SYSTEM_CLOCK
from supervisors.testing import FakeClock

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
IN_FLIGHT = "circuit 'svc' is half-open and its {} trial calls are in flight"
BOUND = 10.0  # seconds; an upper bound on waits for other threads, never a delay


class Boom(Exception):
    """The failure the scripted service raises."""


def fail() -> None:
    raise Boom("down")


def succeed() -> str:
    return "ok"


def exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


class Recorder:
    """A listener that keeps every transition."""

    def __init__(self) -> None:
        self.transitions: list[BreakerTransition] = []

    def __call__(self, transition: BreakerTransition) -> None:
        self.transitions.append(transition)

    @property
    def edges(self) -> list[tuple[BreakerState, BreakerState]]:
        return [(t.old, t.new) for t in self.transitions]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=100.0)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make(clock: FakeClock, recorder: Recorder | None = None, **options: Any) -> CircuitBreaker:
    options.setdefault("failure_threshold", 3)
    options.setdefault("recovery_timeout", 30.0)
    return CircuitBreaker("svc", clock=clock, listener=recorder, **options)


def run(breaker: CircuitBreaker, step: str) -> None:
    """One scripted call: F fails, S succeeds."""
    if step == "F":
        with pytest.raises(Boom):
            breaker.call(fail)
    else:
        assert breaker.call(succeed) == "ok"


def half_open(clock: FakeClock, recorder: Recorder | None = None, **options: Any) -> CircuitBreaker:
    """A breaker (`make`, threshold 1, ``options``) that failed once, then waited out its
    30 s recovery timeout on ``clock``: its next calls are trial calls."""
    breaker = make(clock, recorder, failure_threshold=1, **options)
    run(breaker, "F")
    clock.advance(30.0)
    return breaker


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        run(breaker, "F")
    assert breaker.state is OPEN


@pytest.fixture
def joined() -> Iterator[list[threading.Thread]]:
    """Threads a test starts; all joined when it ends, whatever happened."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(BOUND)
    assert not [t.name for t in threads if t.is_alive()]


def start(threads: list[threading.Thread], target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target)
    threads.append(thread)
    thread.start()
    return thread


# The scripted failure pattern.


def test_scripted_failure_pattern_gives_the_exact_state_sequence(
    clock: FakeClock, recorder: Recorder
) -> None:
    breaker = make(clock, recorder)
    states = []
    for step in "FFSFFF":
        run(breaker, step)
        states.append((breaker.state, breaker.stats().consecutive_failures))
    assert states == [
        (CLOSED, 1),
        (CLOSED, 2),
        (CLOSED, 0),
        (CLOSED, 1),
        (CLOSED, 2),
        (OPEN, 3),
    ]
    assert breaker.retry_at() == 130.0

    with pytest.raises(
        CircuitOpenError, match=exact("circuit 'svc' is open; it half-opens in 30.0s")
    ):
        breaker.call(succeed)
    clock.advance(12.5)
    with pytest.raises(
        CircuitOpenError, match=exact("circuit 'svc' is open; it half-opens in 17.5s")
    ):
        breaker.call(succeed)

    clock.advance(17.5)
    assert breaker.state is HALF_OPEN
    assert breaker.retry_at() is None
    run(breaker, "F")  # the trial fails: open again, for a fresh recovery timeout
    assert breaker.state is OPEN
    assert breaker.retry_at() == 160.0

    clock.advance(29.9)
    assert breaker.state is OPEN
    clock.advance(0.1)
    run(breaker, "S")  # the trial succeeds: closed
    assert breaker.state is CLOSED

    assert recorder.edges == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]
    assert [t.at for t in recorder.transitions] == [100.0, 130.0, 130.0, 160.0, 160.0]
    assert {t.name for t in recorder.transitions} == {"svc"}
    assert [t.reason for t in recorder.transitions] == [
        "3 consecutive failures (threshold 3); last: Boom('down')",
        "recovery timeout of 30.0s passed",
        "trial call failed: Boom('down')",
        "recovery timeout of 30.0s passed",
        "1 of 1 trial calls succeeded",
    ]
    assert breaker.stats() == BreakerStats(
        name="svc",
        state=CLOSED,
        consecutive_failures=0,
        failures=6,
        successes=2,
        rejected=2,
        opened=2,
        retry_at=None,
    )


def test_open_breaker_does_not_run_the_call(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    run(breaker, "F")
    calls: list[int] = []
    with pytest.raises(CircuitOpenError) as raised:
        breaker.call(calls.append, 1)
    assert calls == []
    assert isinstance(raised.value, ActorsError)


def test_half_opens_lazily_without_any_timer(clock: FakeClock, recorder: Recorder) -> None:
    breaker = make(clock, recorder, failure_threshold=1)
    run(breaker, "F")
    clock.advance(1000.0)
    assert clock.pending() == 0
    assert recorder.edges == [(CLOSED, OPEN)]  # nothing happens until someone looks
    assert breaker.stats().state is HALF_OPEN
    assert recorder.edges == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]
    assert recorder.transitions[-1].at == 1100.0


def test_retry_at_follows_the_fake_clock(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=2, recovery_timeout=7.5)
    assert breaker.retry_at() is None
    run(breaker, "F")
    clock.advance(3.0)
    run(breaker, "F")  # opens at 103.0
    assert breaker.retry_at() == 110.5
    assert breaker.stats().retry_at == 110.5
    clock.advance(7.0)
    assert breaker.retry_at() == 110.5
    clock.advance(0.5)
    assert breaker.retry_at() is None
    assert breaker.stats().retry_at is None
    assert breaker.state is HALF_OPEN


def test_success_in_closed_resets_the_consecutive_count(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=2)
    for step in "FSFSFSFS":
        run(breaker, step)
    assert breaker.stats() == BreakerStats("svc", CLOSED, 0, 4, 4, 0, 0, None)


def test_reset_closes_and_keeps_the_totals(clock: FakeClock, recorder: Recorder) -> None:
    breaker = make(clock, recorder, failure_threshold=1)
    run(breaker, "F")
    breaker.reset()
    assert breaker.state is CLOSED
    assert recorder.edges == [(CLOSED, OPEN), (OPEN, CLOSED)]
    assert recorder.transitions[-1].reason == "reset"
    assert breaker.stats() == BreakerStats("svc", CLOSED, 0, 1, 0, 0, 1, None)
    breaker.reset()  # already closed: no transition
    assert len(recorder.transitions) == 2


# Half-open trial calls.


def test_half_open_admits_exactly_max_concurrent_trials_in_threads(
    clock: FakeClock, recorder: Recorder, joined: list[threading.Thread]
) -> None:
    breaker = half_open(clock, recorder, half_open_max_calls=2)
    entered = [threading.Event(), threading.Event()]
    go = [threading.Event(), threading.Event()]
    results: list[object] = [None, None]

    def trial(i: int) -> None:
        def body() -> str:
            entered[i].set()
            assert go[i].wait(BOUND)
            return f"trial {i}"

        results[i] = breaker.call(body)

    for i in range(2):
        start(joined, functools.partial(trial, i))
    assert entered[0].wait(BOUND)
    assert entered[1].wait(BOUND)  # both inside at once: no lock held around the call

    refused = "circuit 'svc' is half-open and its 2 trial calls are in flight"
    with pytest.raises(CircuitOpenError, match=exact(refused)):
        breaker.call(succeed)
    go[0].set()
    joined[0].join(BOUND)
    assert results[0] == "trial 0"
    assert breaker.state is HALF_OPEN  # one trial is still out
    refused = "circuit 'svc' is half-open and its 1 trial calls are in flight"
    with pytest.raises(CircuitOpenError, match=exact(refused)):
        breaker.call(succeed)
    go[1].set()
    joined[1].join(BOUND)
    assert results[1] == "trial 1"
    assert breaker.state is CLOSED
    assert recorder.edges == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert recorder.transitions[-1].reason == "2 of 2 trial calls succeeded"
    assert breaker.stats() == BreakerStats("svc", CLOSED, 0, 1, 2, 2, 1, None)


async def test_half_open_admits_exactly_max_concurrent_trials_in_asyncio(
    clock: FakeClock, recorder: Recorder
) -> None:
    breaker = half_open(clock, recorder, half_open_max_calls=2)
    entered = [asyncio.Event(), asyncio.Event()]
    go = [asyncio.Event(), asyncio.Event()]

    async def body(i: int) -> str:
        entered[i].set()
        await go[i].wait()
        return f"trial {i}"

    tasks = [asyncio.create_task(breaker.acall(body, i)) for i in range(2)]
    try:
        async with asyncio.timeout(BOUND):
            await entered[0].wait()
            await entered[1].wait()
        with pytest.raises(CircuitOpenError, match=exact(IN_FLIGHT.format(2))):
            await breaker.acall(body, 2)
        go[0].set()
        assert await asyncio.wait_for(tasks[0], BOUND) == "trial 0"
        assert breaker.state is HALF_OPEN
        with pytest.raises(CircuitOpenError, match=exact(IN_FLIGHT.format(1))):
            await breaker.acall(body, 2)
        go[1].set()
        assert await asyncio.wait_for(tasks[1], BOUND) == "trial 1"
    finally:
        for task in tasks:
            task.cancel()
    assert breaker.state is CLOSED
    assert recorder.edges == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert breaker.stats().rejected == 2


def test_one_failed_trial_reopens_even_if_the_other_succeeds(
    clock: FakeClock, recorder: Recorder
) -> None:
    breaker = half_open(clock, recorder, half_open_max_calls=2)
    first, second = breaker.acquire(), breaker.acquire()
    assert (first.trial, second.trial) == (True, True)
    breaker.release(first, None)
    assert breaker.state is HALF_OPEN
    breaker.release(second, Boom("still down"))
    assert breaker.state is OPEN
    assert breaker.retry_at() == 160.0
    assert recorder.transitions[-1].reason == "trial call failed: Boom('still down')"


def test_a_trial_from_an_earlier_half_open_does_not_count(
    clock: FakeClock, recorder: Recorder
) -> None:
    breaker = half_open(clock, recorder, half_open_max_calls=2)
    late, failing = breaker.acquire(), breaker.acquire()
    breaker.release(failing, Boom("x"))  # re-opens; `late` is from the old half-open
    clock.advance(30.0)
    assert breaker.state is HALF_OPEN
    fresh = breaker.acquire()
    breaker.release(late, None)  # counted in the totals, but not as a trial of this round
    assert breaker.state is HALF_OPEN
    assert breaker.acquire().trial  # the second slot of this round is still free
    refused = "circuit 'svc' is half-open and its 2 trial calls are in flight"
    with pytest.raises(CircuitOpenError, match=exact(refused)):
        breaker.acquire()
    breaker.release(fresh, None)
    assert breaker.stats().successes == 2


def test_a_call_begun_while_closed_does_not_move_a_later_state(
    clock: FakeClock, recorder: Recorder
) -> None:
    breaker = make(clock, recorder, failure_threshold=1)
    slow = breaker.acquire()
    run(breaker, "F")  # opens
    breaker.release(slow, Boom("late"))
    assert breaker.stats() == BreakerStats("svc", OPEN, 1, 2, 0, 0, 1, 130.0)
    clock.advance(30.0)
    slow_ok = breaker.acquire()  # a trial
    breaker.reset()
    breaker.release(slow_ok, Boom("after reset"))  # began before the reset: totals only
    assert breaker.state is CLOSED
    assert breaker.stats().failures == 3
    assert breaker.stats().consecutive_failures == 0


# Cancellation and interrupts count as neither.


async def never_returns() -> None:
    await asyncio.Event().wait()


async def a_hanging_call(breaker: CircuitBreaker) -> asyncio.Task[None]:
    """A task whose call through ``breaker`` has begun and never returns (cancel it)."""
    entered = asyncio.Event()

    async def hang() -> None:
        entered.set()
        await never_returns()

    task = asyncio.create_task(breaker.acall(hang))
    await asyncio.wait_for(entered.wait(), BOUND)
    return task


async def test_cancelled_trial_frees_its_slot_and_changes_nothing(
    clock: FakeClock, recorder: Recorder
) -> None:
    breaker = half_open(clock, recorder)
    task = await a_hanging_call(breaker)
    with pytest.raises(CircuitOpenError, match=exact(IN_FLIGHT.format(1))):
        await breaker.acall(never_returns)
    before = breaker.stats()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.stats() == before
    assert breaker.state is HALF_OPEN
    assert recorder.edges == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]

    async def ok() -> str:
        return "back"

    assert await breaker.acall(ok) == "back"  # the slot was given back
    assert breaker.state is CLOSED


async def test_cancelled_call_in_closed_keeps_the_consecutive_count(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=3)
    run(breaker, "F")
    run(breaker, "F")
    task = await a_hanging_call(breaker)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.stats() == BreakerStats("svc", CLOSED, 2, 2, 0, 0, 0, None)


@pytest.mark.parametrize(
    "interrupt",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1), GeneratorExit()],
    ids=lambda e: type(e).__name__,
)
def test_interrupts_release_the_permit_and_count_as_neither(
    clock: FakeClock, interrupt: BaseException
) -> None:
    interrupts = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)
    breaker = half_open(clock, exclude=interrupts)  # neither wins over exclude
    permit = breaker.acquire()
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    breaker.release(permit, interrupt)
    assert breaker.stats() == BreakerStats("svc", HALF_OPEN, 1, 1, 0, 1, 1, None)
    assert breaker.acquire().trial


# Excluded exceptions count as successes.


class NotFound(KeyError):
    pass


def test_excluded_exceptions_count_as_success(clock: FakeClock, recorder: Recorder) -> None:
    breaker = make(clock, recorder, failure_threshold=2, exclude=(KeyError,))

    def missing() -> None:
        raise NotFound("no such item")

    run(breaker, "F")
    with pytest.raises(NotFound):  # still raised to the caller
        breaker.call(missing)
    run(breaker, "F")
    assert breaker.stats() == BreakerStats("svc", CLOSED, 1, 2, 1, 0, 0, None)
    run(breaker, "F")
    clock.advance(30.0)
    with pytest.raises(NotFound):
        breaker.call(missing)  # a trial answered by the service: closes
    assert breaker.state is CLOSED
    assert recorder.edges == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


# Decorator and context managers.


def test_decorates_a_def(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=2)
    calls: list[int] = []

    @breaker
    def fetch(x: int, *, fail: bool = False) -> int:
        """Fetch x."""
        calls.append(x)
        if fail:
            raise Boom(x)
        return x * 2

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch x."
    assert not inspect.iscoroutinefunction(fetch)
    assert fetch(3) == 6
    for x in (4, 5):
        with pytest.raises(Boom):
            fetch(x, fail=True)
    with pytest.raises(CircuitOpenError):
        fetch(6)
    assert calls == [3, 4, 5]
    assert breaker.stats() == BreakerStats("svc", OPEN, 2, 2, 1, 1, 1, 130.0)


async def test_decorates_an_async_def(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    calls: list[int] = []

    @breaker
    async def fetch(x: int) -> int:
        """Fetch x."""
        calls.append(x)
        await asyncio.sleep(0)
        if x < 0:
            raise Boom(x)
        return x * 2

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch x."
    assert inspect.iscoroutinefunction(fetch)
    assert await fetch(3) == 6
    with pytest.raises(Boom):
        await fetch(-1)
    with pytest.raises(CircuitOpenError):
        await fetch(4)
    assert calls == [3, -1]
    assert breaker.stats() == BreakerStats("svc", OPEN, 1, 1, 1, 1, 1, 130.0)


def test_decorating_a_non_callable_is_refused(clock: FakeClock) -> None:
    breaker = make(clock)
    with pytest.raises(
        BreakerConfigError, match=exact("a circuit breaker decorates a callable, got 42")
    ):
        breaker(42)  # type: ignore[arg-type]


async def test_calling_a_non_callable_is_refused_and_not_counted(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    before = breaker.stats()
    with pytest.raises(BreakerConfigError) as called:
        breaker.call(42)  # type: ignore[arg-type]
    with pytest.raises(BreakerConfigError) as acalled:
        await breaker.acall("fetch")  # type: ignore[arg-type]
    assert str(called.value) == (
        "call() takes the function to call, got 42; pass the function itself "
        "and its arguments: breaker.call(fn, *args, **kwargs)"
    )
    assert str(acalled.value) == (
        "acall() takes the function to call, got 'fetch'; pass the function itself "
        "and its arguments: breaker.acall(fn, *args, **kwargs)"
    )
    assert breaker.stats() == before  # still closed, no failure counted
    assert breaker.call(int, "7") == 7


def test_with_block_records_the_outcome_and_never_suppresses(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=2)
    with breaker as entered:
        assert entered is breaker
    with breaker, breaker:  # nested blocks each hold their own permit
        pass
    with pytest.raises(Boom), breaker:
        raise Boom("in block")
    with pytest.raises(Boom), breaker:
        raise Boom("again")
    ran = False
    with pytest.raises(CircuitOpenError, match="is open"), breaker:
        ran = True
    assert not ran
    assert breaker.stats() == BreakerStats("svc", OPEN, 2, 2, 3, 1, 1, 130.0)


async def test_async_with_block_records_the_outcome(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1, half_open_max_calls=2)
    async with breaker as entered:
        assert entered is breaker
    with pytest.raises(Boom):
        async with breaker:
            raise Boom("in block")
    with pytest.raises(CircuitOpenError):
        async with breaker:
            pass
    clock.advance(30.0)
    inside = [asyncio.Event(), asyncio.Event()]
    go = asyncio.Event()

    async def trial(i: int) -> None:
        async with breaker:
            inside[i].set()
            await go.wait()

    tasks = [asyncio.create_task(trial(i)) for i in range(2)]
    try:
        async with asyncio.timeout(BOUND):
            await inside[0].wait()
            await inside[1].wait()
        go.set()
        await asyncio.wait_for(asyncio.gather(*tasks), BOUND)
    finally:
        for task in tasks:
            task.cancel()
    assert breaker.stats() == BreakerStats("svc", CLOSED, 0, 1, 3, 1, 1, None)


async def test_cancelled_async_with_block_counts_as_neither(clock: FakeClock) -> None:
    breaker = half_open(clock)
    entered = asyncio.Event()

    async def hang() -> None:
        async with breaker:
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await asyncio.wait_for(entered.wait(), BOUND)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.stats() == BreakerStats("svc", HALF_OPEN, 1, 1, 0, 0, 1, None)
    assert breaker.acquire().trial


# The lock is never held around the call, nor around the listener.


def test_a_blocked_call_does_not_block_another_threads_call(
    clock: FakeClock, joined: list[threading.Thread]
) -> None:
    breaker = make(clock)
    entered, go = threading.Event(), threading.Event()
    outcome: list[str] = []

    def blocked() -> str:
        entered.set()
        assert go.wait(BOUND)
        return "slow"

    start(joined, lambda: outcome.append(breaker.call(blocked)))
    assert entered.wait(BOUND)
    assert breaker.call(succeed) == "ok"  # would hang if the lock were held
    assert breaker.stats().successes == 1
    run(breaker, "F")
    go.set()
    joined[0].join(BOUND)
    assert outcome == ["slow"]
    assert breaker.stats() == BreakerStats("svc", CLOSED, 0, 1, 2, 0, 0, None)


def test_listener_runs_outside_the_lock_and_its_errors_are_contained(clock: FakeClock) -> None:
    seen: list[tuple[BreakerState, BreakerState, BreakerState]] = []
    breaker: CircuitBreaker

    def listener(transition: BreakerTransition) -> None:
        seen.append((transition.old, transition.new, breaker.stats().state))
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker("svc", 1, 30.0, clock=clock, listener=listener)
    with pytest.raises(Boom):  # the caller sees its own error, not the listener's
        breaker.call(fail)
    clock.advance(30.0)
    assert breaker.call(succeed) == "ok"
    assert seen == [(CLOSED, OPEN, OPEN), (OPEN, HALF_OPEN, HALF_OPEN), (HALF_OPEN, CLOSED, CLOSED)]


def test_counters_stay_exact_under_many_threads(
    clock: FakeClock, joined: list[threading.Thread]
) -> None:
    breaker = make(clock, failure_threshold=1_000_000)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(BOUND)
        for i in range(250):
            if i % 5 == 0:
                with pytest.raises(Boom):
                    breaker.call(fail)
            else:
                breaker.call(succeed)

    for _ in range(8):
        start(joined, worker)
    for thread in joined:
        thread.join(BOUND)
    stats = breaker.stats()
    assert (stats.failures, stats.successes, stats.state) == (400, 1600, CLOSED)


# Low-level permits.


def test_permit_misuse_is_refused(clock: FakeClock) -> None:
    breaker, other = make(clock), CircuitBreaker("other", clock=clock)
    permit = breaker.acquire()
    assert isinstance(permit, Permit)
    assert not permit.trial
    with pytest.raises(AttributeError):
        permit.trial = True  # type: ignore[misc]
    assert repr(permit) == "<Permit closed of circuit 'svc'>"
    foreign = (
        "permit must be a Permit that circuit 'other' gave out with acquire(), "
        "got <Permit closed of circuit 'svc'>"
    )
    with pytest.raises(BreakerConfigError, match=exact(foreign)):
        other.release(permit)
    breaker.release(permit)
    with pytest.raises(
        BreakerConfigError,
        match=exact("permit <Permit closed of circuit 'svc'> was already released"),
    ):
        breaker.release(permit)
    assert breaker.stats().successes == 1


# Arguments are checked when the breaker is built.


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("",), {}, "name must be a non-empty str, got ''"),
        ((None,), {}, "name must be a non-empty str, got None"),
        (("s", 0), {}, "failure_threshold must be an int >= 1, got 0"),
        (("s", True), {}, "failure_threshold must be an int >= 1, got True"),
        (("s", 2.0), {}, "failure_threshold must be an int >= 1, got 2.0"),
        (("s", 1, 0), {}, "recovery_timeout must be a finite number of seconds > 0, got 0"),
        (("s", 1, -1.5), {}, "recovery_timeout must be a finite number of seconds > 0, got -1.5"),
        (
            ("s", 1, float("inf")),
            {},
            "recovery_timeout must be a finite number of seconds > 0, got inf",
        ),
        (
            ("s", 1, float("nan")),
            {},
            "recovery_timeout must be a finite number of seconds > 0, got nan",
        ),
        (("s", 1, True), {}, "recovery_timeout must be a finite number of seconds > 0, got True"),
        (("s", 1, "30"), {}, "recovery_timeout must be a finite number of seconds > 0, got '30'"),
        (("s", 1, 1, 0), {}, "half_open_max_calls must be an int >= 1, got 0"),
        (("s", 1, 1, False), {}, "half_open_max_calls must be an int >= 1, got False"),
        (
            ("s", 1, 1, 1, [KeyError]),
            {},
            "exclude must be a tuple of exception classes, got [<class 'KeyError'>]",
        ),
        (
            ("s", 1, 1, 1, KeyError),
            {},
            "exclude must be a tuple of exception classes, got <class 'KeyError'>",
        ),
        (
            ("s", 1, 1, 1, (KeyError, int)),
            {},
            "exclude must be a tuple of exception classes, got (<class 'KeyError'>, <class 'int'>)",
        ),
        (
            ("s", 1, 1, 1, (KeyError(),)),
            {},
            "exclude must be a tuple of exception classes, got (KeyError(),)",
        ),
        (
            ("s",),
            {"clock": 5},
            "clock must be a supervisors.Clock (with a monotonic() method) or None, got 5",
        ),
        (("s",), {"listener": "log"}, "listener must be callable or None, got 'log'"),
    ],
)
def test_bad_arguments_are_refused_with_exact_messages(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(BreakerConfigError, match=exact(message)):
        CircuitBreaker(*args, **kwargs)


def test_defaults() -> None:
    breaker = CircuitBreaker("svc")
    assert (
        breaker.name,
        breaker.failure_threshold,
        breaker.recovery_timeout,
        breaker.half_open_max_calls,
        breaker.exclude,
    ) == ("svc", 5, 30.0, 1, ())
    assert breaker.clock is SYSTEM_CLOCK
    assert breaker.state is CLOSED
    assert repr(breaker) == "<CircuitBreaker 'svc' closed>"
    assert CircuitBreaker("x", 1, 2).recovery_timeout == 2.0


# Log lines.


def test_transitions_are_logged_bound_to_the_breaker(
    clock: FakeClock, log_records: list[dict[str, Any]]
) -> None:
    configure_logging(True)
    breaker = make(clock, failure_threshold=1)
    run(breaker, "F")
    clock.advance(30.0)
    run(breaker, "S")
    lines = [
        (r["level"].name, r["extra"]["breaker"], r["message"])
        for r in log_records
        if "breaker" in r["extra"]
    ]
    assert lines == [
        (
            "WARNING",
            "svc",
            "circuit 'svc': closed -> open "
            "(1 consecutive failures (threshold 1); last: Boom('down'))",
        ),
        ("INFO", "svc", "circuit 'svc': open -> half_open (recovery timeout of 30.0s passed)"),
        ("INFO", "svc", "circuit 'svc': half_open -> closed (1 of 1 trial calls succeeded)"),
    ]


# The registry.


def test_registry_maps_names_to_shared_breakers(clock: FakeClock, recorder: Recorder) -> None:
    registry = BreakerRegistry(clock=clock, listener=recorder)
    assert len(registry) == 0
    assert registry.get("llm-api") is None
    llm = registry.get_or_create("llm-api", failure_threshold=1, recovery_timeout=5.0)
    assert registry.get_or_create("llm-api", failure_threshold=9) is llm
    assert llm.failure_threshold == 1
    assert "llm-api" in registry
    assert "db" not in registry
    db = registry.add(CircuitBreaker("db", clock=clock))
    assert registry.add(db) is db
    with pytest.raises(
        BreakerConfigError,
        match=exact(
            "a different circuit breaker is already registered as 'db'; use get('db') to share it"
        ),
    ):
        registry.add(CircuitBreaker("db"))
    with pytest.raises(
        BreakerConfigError, match=exact("breaker must be a CircuitBreaker, got 'db'")
    ):
        registry.add("db")  # type: ignore[arg-type]
    assert registry.all() == [llm, db]
    assert len(registry) == 2
    assert registry.get("db") is db

    with pytest.raises(Boom):  # the registry's clock and listener were given to llm
        llm.call(fail)
    assert llm.retry_at() == 105.0
    assert recorder.edges == [(CLOSED, OPEN)]

    own = Recorder()
    mine = registry.get_or_create("mine", failure_threshold=1, listener=own)
    with pytest.raises(Boom):
        mine.call(fail)
    assert own.edges == [(CLOSED, OPEN)]
    assert recorder.edges == [(CLOSED, OPEN)]


def test_registry_checks_what_it_creates() -> None:
    registry = BreakerRegistry()
    with pytest.raises(
        BreakerConfigError, match=exact("failure_threshold must be an int >= 1, got 0")
    ):
        registry.get_or_create("svc", failure_threshold=0)
    assert "svc" not in registry
    with pytest.raises(BreakerConfigError, match=exact("listener must be callable or None, got 1")):
        BreakerRegistry(listener=1)  # type: ignore[arg-type]


def test_registry_creates_one_breaker_per_name_across_threads(
    joined: list[threading.Thread],
) -> None:
    registry = BreakerRegistry()
    barrier = threading.Barrier(8)
    got: list[CircuitBreaker] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait(BOUND)
        breaker = registry.get_or_create("shared")
        with lock:
            got.append(breaker)

    for _ in range(8):
        start(joined, worker)
    for thread in joined:
        thread.join(BOUND)
    assert len(got) == 8
    assert len({id(b) for b in got}) == 1
    assert len(registry) == 1


# Invariants under any single-threaded script.

_LEGAL = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (HALF_OPEN, CLOSED)}


@settings(max_examples=200, deadline=None)
@given(
    script=st.lists(
        st.one_of(
            st.sampled_from(["S", "F", "X", "C"]),
            st.floats(min_value=0.0, max_value=20.0, allow_nan=False),
        ),
        max_size=60,
    ),
    threshold=st.integers(1, 4),
    max_calls=st.integers(1, 3),
)
def test_invariants_hold_for_any_script(
    script: list[str | float], threshold: int, max_calls: int
) -> None:
    """S succeeds, F fails, X raises an excluded error, C is cancelled, a number advances."""
    clock = FakeClock()
    recorder = Recorder()
    breaker = CircuitBreaker(
        "svc", threshold, 10.0, max_calls, (KeyError,), clock=clock, listener=recorder
    )
    refused = succeeded = failed = 0
    for step in script:
        if isinstance(step, float):
            clock.advance(step)
            continue
        try:
            permit = breaker.acquire()
        except CircuitOpenError:
            refused += 1
            assert breaker.state in (OPEN, HALF_OPEN)
            continue
        error: BaseException | None = {
            "S": None,
            "F": Boom(),
            "X": KeyError(),
            "C": asyncio.CancelledError(),
        }[step]
        breaker.release(permit, error)
        succeeded += step in "SX"
        failed += step == "F"
    stats = breaker.stats()
    assert (stats.successes, stats.failures, stats.rejected) == (succeeded, failed, refused)
    assert stats.opened == sum(t.new is OPEN for t in recorder.transitions)
    assert set(recorder.edges) <= _LEGAL
    previous = CLOSED
    for transition in recorder.transitions:
        assert transition.old is previous
        previous = transition.new
    assert stats.state is previous
    assert (stats.retry_at is not None) == (stats.state is OPEN)
    if stats.state is CLOSED:
        assert stats.consecutive_failures < threshold


# A failure whose repr raises.


SHOWN = "<Unprintable object; repr() raised RuntimeError>"


def test_a_failure_whose_repr_raises_opens_the_breaker_and_propagates(
    clock: FakeClock, recorder: Recorder
) -> None:
    # The transition's reason showed the error with !r: at the threshold, building it
    # raised, so the breaker never opened and the caller got RuntimeError('repr').
    breaker = make(clock, recorder, failure_threshold=2)
    for _ in range(2):
        with pytest.raises(Unprintable):
            breaker.call(fails_unprintably)
    assert breaker.state is OPEN
    assert [(t.old, t.new, t.reason) for t in recorder.transitions] == [
        (CLOSED, OPEN, f"2 consecutive failures (threshold 2); last: {SHOWN}")
    ]
    clock.advance(30.0)
    with pytest.raises(Unprintable):
        breaker.call(fails_unprintably)  # a failed trial call
    assert breaker.state is OPEN
    assert recorder.transitions[-1].reason == f"trial call failed: {SHOWN}"
