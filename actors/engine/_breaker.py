"""Circuit breakers: fail fast while an external service is down, probe it when it may be back.

We wrote our own small breaker rather than take one off the shelf:

- pybreaker has no asyncio support, and it runs every call one at a time under its lock,
  so one slow call holds up every other caller of the same service;
- purgatory lets any number of trial calls through in half-open, and counts
  cancellation as a failure (cancelling a task would open the circuit);
- aiobreaker is unmaintained.

Semantics. A `CircuitBreaker` is CLOSED: calls go through and consecutive failures are
counted; a success resets the count, and reaching ``failure_threshold`` OPENs it. While
OPEN every call is refused with `CircuitOpenError`. Once ``recovery_timeout`` seconds have
passed since it opened the breaker is HALF_OPEN, evaluated lazily whenever the state is
read or a call is attempted (no timer threads). In HALF_OPEN exactly
``half_open_max_calls`` trial calls are let through; when all of them succeed it closes,
and any trial failure opens it again for a fresh ``recovery_timeout``.

Outcomes. An exception in ``exclude`` counts as a success (the service answered). A
`BaseException` that is not an `Exception` (`asyncio.CancelledError`,
`KeyboardInterrupt`, `SystemExit`, `GeneratorExit`) counts as neither: the call was
interrupted, not answered, so its permit is simply given back (a half-open trial slot
becomes free again). A call that began before the breaker last changed state counts in
the totals of `stats` but does not move the new state.

Locking. One `threading.Lock` guards the state and counters; it is never held while
the user's function runs, nor while the listener runs. Transitions are delivered to the
listener (and logged) in the order they happened, by whichever thread is delivering; a
listener must not block, and an exception it raises is logged, never passed to callers.
"""

from __future__ import annotations

import contextvars
import enum
import functools
import inspect
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack, cast

from loguru import logger

from actors.core import (
    BreakerConfigError,
    CircuitOpenError,
    ReadOnly,
    SafeRepr,
    attribute_reader,
    finite_float,
    safe_repr,
)
from supervisors import SYSTEM_CLOCK, Clock

__all__ = [
    "BreakerOptions",
    "BreakerRegistry",
    "BreakerState",
    "BreakerStats",
    "BreakerTransition",
    "CircuitBreaker",
    "Permit",
]

P = ParamSpec("P")
R = TypeVar("R")

Listener = Callable[["BreakerTransition"], None]


class BreakerState(enum.StrEnum):
    """Where a breaker is: letting calls through, refusing them, or probing (values:
    the lower-case names, ``"closed"``, ``"open"``, ``"half_open"``)."""

    CLOSED = enum.auto()
    OPEN = enum.auto()
    HALF_OPEN = enum.auto()


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """One state change, as given to the listener."""

    name: str
    old: BreakerState
    new: BreakerState
    at: float
    """The clock time at which the change was made (for half-open: first noticed)."""
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """A snapshot of a breaker: what `CircuitBreaker.stats` returns."""

    name: str
    state: BreakerState
    consecutive_failures: int
    failures: int
    """Calls that failed, in total."""
    successes: int
    """Calls that succeeded (or raised an excluded exception), in total."""
    rejected: int
    """Calls refused with `CircuitOpenError`, in total."""
    opened: int
    """Times the breaker opened (from closed or from half-open)."""
    retry_at: float | None
    """The clock time at which an open breaker half-opens; None unless open."""


_read_stats = attribute_reader(
    (field.name for field in fields(BreakerStats) if field.name != "retry_at"), prefix="_"
)
"""A breaker's counters and state, as the fields of `BreakerStats`."""


class Permit:
    """Leave to make one call, from `CircuitBreaker.acquire`; give it back with `release`."""

    __slots__ = ("_epoch", "_owner", "_released", "_trial")

    def __init__(self, owner: CircuitBreaker, epoch: int, trial: bool) -> None:
        self._owner = owner
        self._epoch = epoch
        self._released = False
        self._trial = trial

    @property
    def trial(self) -> bool:
        """True when the call is one of the half-open trial calls."""
        return self._trial

    def __repr__(self) -> str:
        kind = "trial" if self.trial else "closed"
        return f"<Permit {kind} of circuit {self._owner.name!r}>"


class BreakerOptions(TypedDict, total=False):
    """The keyword arguments of `CircuitBreaker` after the name."""

    failure_threshold: int
    recovery_timeout: float
    half_open_max_calls: int
    exclude: tuple[type[BaseException], ...]
    clock: Clock | None
    listener: Listener | None


_SUCCESS, _FAILURE, _NEUTRAL = "success", "failure", "neutral"


def _positive_int(value: object, argument: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BreakerConfigError(f"{argument} must be an int >= 1, got {safe_repr(value)}")
    return value


def _positive_seconds(value: object, argument: str) -> float:
    number = finite_float(value)
    if number is None or number <= 0:
        raise BreakerConfigError(
            f"{argument} must be a finite number of seconds > 0, got {safe_repr(value)}"
        )
    return number


def _exception_classes(value: object) -> tuple[type[BaseException], ...]:
    if not isinstance(value, tuple) or not all(
        isinstance(item, type) and issubclass(item, BaseException) for item in value
    ):
        raise BreakerConfigError(
            f"exclude must be a tuple of exception classes, got {safe_repr(value)}"
        )
    return value


def _check_clock_and_listener(clock: object, listener: object) -> None:
    if clock is not None and not callable(getattr(clock, "monotonic", None)):
        raise BreakerConfigError(
            "clock must be a supervisors.Clock (with a monotonic() method) or None, "
            f"got {safe_repr(clock)}"
        )
    if listener is not None and not callable(listener):
        raise BreakerConfigError(f"listener must be callable or None, got {safe_repr(listener)}")


def _check_fn(fn: object, method: str) -> None:
    """`BreakerConfigError` unless ``fn`` is callable: before a permit is taken, so a bad
    argument is not counted as a failure of the guarded call."""
    if not callable(fn):
        raise BreakerConfigError(
            f"{method}() takes the function to call, got {safe_repr(fn)}; pass the function itself "
            f"and its arguments: breaker.{method}(fn, *args, **kwargs)"
        )


class CircuitBreaker:
    """A circuit breaker around calls to one external service (see the module docstring).

    Use it as ``breaker.call(fn, ...)``, ``await breaker.acall(fn, ...)``, as a decorator
    (``@breaker`` on a def or an async def), as a context manager (``with breaker:``,
    ``async with breaker:``), or through `acquire` / `release`. Every argument is checked
    here; a bad one raises `BreakerConfigError` naming it.
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        exclude: tuple[type[BaseException], ...] = (),
        *,
        clock: Clock | None = None,
        listener: Listener | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise BreakerConfigError(f"name must be a non-empty str, got {safe_repr(name)}")
        self._name = name
        self._failure_threshold = _positive_int(failure_threshold, "failure_threshold")
        self._recovery_timeout = _positive_seconds(recovery_timeout, "recovery_timeout")
        self._half_open_max_calls = _positive_int(half_open_max_calls, "half_open_max_calls")
        self._exclude = _exception_classes(exclude)
        _check_clock_and_listener(clock, listener)
        self._clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self._listener = listener
        self._watchers: list[Callable[[BreakerTransition], None]] = []
        self._log = logger.bind(breaker=name)
        self._lock = threading.Lock()
        # Everything below is guarded by self._lock.
        self._state = BreakerState.CLOSED
        self._epoch = 0  # bumped on every state change; permits from older epochs are stale
        self._consecutive_failures = 0
        self._retry_at = 0.0  # meaningful while OPEN
        self._trials_in_flight = 0
        self._trial_successes = 0
        self._failures = 0
        self._successes = 0
        self._rejected = 0
        self._opened = 0
        self._pending: deque[BreakerTransition] = deque()
        self._delivering = False
        # Permits of `with breaker:` blocks, per thread / asyncio task.
        self._entered: contextvars.ContextVar[tuple[Permit, ...]] = contextvars.ContextVar(
            f"breaker-{name}-permits", default=()
        )

    name = ReadOnly[str]()
    clock = ReadOnly[Clock]()
    """The clock this breaker reads (to schedule a retry for `retry_at`)."""
    failure_threshold = ReadOnly[int]()
    recovery_timeout = ReadOnly[float]()
    half_open_max_calls = ReadOnly[int]()
    exclude = ReadOnly[tuple[type[BaseException], ...]]()

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._name!r} {self._state}>"

    # State changes: _move, _to_*, _refresh and _record run under self._lock.

    def _move(self, new: BreakerState, now: float, reason: str) -> None:
        self._pending.append(BreakerTransition(self._name, self._state, new, now, reason))
        self._state = new
        self._epoch += 1
        self._trials_in_flight = 0
        self._trial_successes = 0

    def _to_open(self, reason: str) -> None:
        now = self._clock.monotonic()
        self._move(BreakerState.OPEN, now, reason)
        self._retry_at = now + self._recovery_timeout
        self._opened += 1

    def _to_closed(self, reason: str) -> None:
        self._move(BreakerState.CLOSED, self._clock.monotonic(), reason)
        self._consecutive_failures = 0

    def _refresh(self) -> float:
        """Half-open an open breaker whose recovery timeout has passed; return now."""
        now = self._clock.monotonic()
        if self._state is BreakerState.OPEN and now >= self._retry_at:
            self._move(
                BreakerState.HALF_OPEN, now, f"recovery timeout of {self._recovery_timeout}s passed"
            )
        return now

    def _deliver(self) -> None:
        """Log and hand pending transitions to the listener, in order, outside the lock.

        Only one thread delivers at a time; another thread's transitions (or ones made by
        the listener itself) are queued and delivered by that thread, so nobody waits.
        """
        if not self._pending:  # unlocked peek: a thread always sees its own appends
            return
        with self._lock:
            if self._delivering or not self._pending:
                return
            self._delivering = True
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        self._delivering = False
                        return
                    transition = self._pending.popleft()
                self._emit(transition)
        except BaseException:
            with self._lock:
                self._delivering = False
            raise

    def _emit(self, transition: BreakerTransition) -> None:
        level = "WARNING" if transition.new is BreakerState.OPEN else "INFO"
        self._log.log(
            level,
            "circuit {!r}: {} -> {} ({})",
            self._name,
            transition.old,
            transition.new,
            transition.reason,
        )
        listeners = [self._listener, *self._watchers] if self._listener else self._watchers
        for listener in listeners:
            try:
                listener(transition)
            except Exception as exc:
                self._log.opt(exception=exc).error(
                    "listener of circuit {!r} raised {}", self._name, SafeRepr(exc)
                )

    def watch(self, listener: Callable[[BreakerTransition], None]) -> None:
        """Also tell ``listener`` of every state change (a registry watches what it holds)."""
        if not callable(listener):
            raise BreakerConfigError(f"listener must be callable, got {listener!r}")
        if listener not in self._watchers:
            self._watchers.append(listener)

    def _classify(self, error: BaseException | None) -> str:
        if error is None:
            return _SUCCESS
        if not isinstance(error, Exception):
            return _NEUTRAL
        return _SUCCESS if isinstance(error, self._exclude) else _FAILURE

    # The low-level API.

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose timeout has passed reads half-open)."""
        with self._lock:
            self._refresh()
            state = self._state
        self._deliver()
        return state

    def retry_at(self) -> float | None:
        """The clock time at which this breaker half-opens, or None unless it is open."""
        with self._lock:
            self._refresh()
            retry_at = self._retry_at if self._state is BreakerState.OPEN else None
        self._deliver()
        return retry_at

    def available_calls(self) -> int | None:
        """How many calls `acquire` would let through now: None while closed (any
        number), 0 while open or half-open with every trial call taken, else the trial
        calls still free. Nothing is counted (a task manager asks before it starts tasks
        that wait for this breaker)."""
        with self._lock:
            self._refresh()
            if self._state is BreakerState.CLOSED:
                free: int | None = None
            elif self._state is BreakerState.OPEN:
                free = 0
            else:
                taken = self._trials_in_flight + self._trial_successes
                free = max(0, self._half_open_max_calls - taken)
        self._deliver()
        return free

    def stats(self) -> BreakerStats:
        """A frozen snapshot of the state and the counters."""
        with self._lock:
            self._refresh()
            retry_at = self._retry_at if self._state is BreakerState.OPEN else None
            stats = BreakerStats(**_read_stats(self), retry_at=retry_at)
        self._deliver()
        return stats

    def acquire(self) -> Permit:
        """Leave for one call, or `CircuitOpenError` if the breaker refuses it.

        Every permit must be given back with `release`, whatever happened to the call.
        """
        error: CircuitOpenError | None = None
        with self._lock:
            now = self._refresh()
            if self._state is BreakerState.CLOSED:
                permit = Permit(self, self._epoch, trial=False)
            elif self._state is BreakerState.OPEN:
                self._rejected += 1
                remaining = self._retry_at - now
                error = CircuitOpenError(
                    f"circuit {self._name!r} is open; it half-opens in {remaining:.1f}s"
                )
            elif self._trials_in_flight + self._trial_successes < self._half_open_max_calls:
                self._trials_in_flight += 1
                permit = Permit(self, self._epoch, trial=True)
            else:
                self._rejected += 1
                error = CircuitOpenError(
                    f"circuit {self._name!r} is half-open and its "
                    f"{self._trials_in_flight} trial calls are in flight"
                )
        self._deliver()
        if error is not None:
            raise error
        return permit

    def release(self, permit: Permit, error: BaseException | None = None) -> None:
        """Record the outcome of the call made under ``permit`` (``error`` None: success).

        An excluded exception is a success; a `BaseException` that is not an `Exception`
        (cancellation, interrupts) is neither and only gives the permit back.
        """
        if not isinstance(permit, Permit) or permit._owner is not self:
            raise BreakerConfigError(
                f"permit must be a Permit that circuit {self._name!r} gave out with acquire(), "
                f"got {safe_repr(permit)}"
            )
        outcome = self._classify(error)
        with self._lock:
            if permit._released:
                raise BreakerConfigError(f"permit {safe_repr(permit)} was already released")
            permit._released = True
            if outcome == _SUCCESS:
                self._successes += 1
            elif outcome == _FAILURE:
                self._failures += 1
            if permit._epoch == self._epoch:
                self._record(permit, outcome, error)
        self._deliver()

    def _record(self, permit: Permit, outcome: str, error: BaseException | None) -> None:
        """Move the state for an outcome of the current epoch (under the lock)."""
        if self._state is BreakerState.CLOSED:
            if outcome == _SUCCESS:
                self._consecutive_failures = 0
            elif outcome == _FAILURE:
                self._consecutive_failures += 1
                if self._consecutive_failures >= self._failure_threshold:
                    self._to_open(
                        f"{self._consecutive_failures} consecutive failures "
                        f"(threshold {self._failure_threshold}); last: {safe_repr(error)}"
                    )
        elif permit.trial:  # HALF_OPEN: OPEN always has a newer epoch than any permit
            self._trials_in_flight -= 1
            if outcome == _FAILURE:
                self._consecutive_failures += 1
                self._to_open(f"trial call failed: {safe_repr(error)}")
            elif outcome == _SUCCESS:
                self._trial_successes += 1
                if self._trial_successes >= self._half_open_max_calls:
                    self._to_closed(
                        f"{self._trial_successes} of {self._half_open_max_calls} "
                        "trial calls succeeded"
                    )

    def reset(self) -> None:
        """Close the breaker now, forgetting consecutive failures (totals are kept)."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                self._consecutive_failures = 0
                self._epoch += 1
            else:
                self._to_closed("reset")
        self._deliver()

    # The high-level API.

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)`` through the breaker; its result, or its exception raised."""
        _check_fn(fn, "call")
        permit = self.acquire()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.release(permit, exc)
            raise
        self.release(permit, None)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``await fn(*args, **kwargs)`` through the breaker (cancellation counts as neither)."""
        _check_fn(fn, "acall")
        permit = self.acquire()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self.release(permit, exc)
            raise
        self.release(permit, None)
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a def or an async def so every call goes through the breaker."""
        if not callable(fn):
            raise BreakerConfigError(f"a circuit breaker decorates a callable, got {safe_repr(fn)}")
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.acall(afn, *args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return self.call(fn, *args, **kwargs)

        return wrapper

    def __enter__(self) -> CircuitBreaker:
        permit = self.acquire()
        self._entered.set((*self._entered.get(), permit))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        *outer, permit = self._entered.get()
        self._entered.set(tuple(outer))
        self.release(permit, exc)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class BreakerRegistry:
    """Circuit breakers by name, shared by every task that talks to the same service.

    ``clock`` and ``listener`` are given to the breakers that `get_or_create` makes
    (unless the call names its own). Safe to use from any thread.
    """

    def __init__(self, *, clock: Clock | None = None, listener: Listener | None = None) -> None:
        _check_clock_and_listener(clock, listener)
        self._clock = clock
        self._listener = listener
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker | None:
        """The breaker called ``name``, or None."""
        with self._lock:
            return self._breakers.get(name)

    def add(self, breaker: CircuitBreaker) -> CircuitBreaker:
        """Register ``breaker`` under its name and return it (adding it again is a no-op).

        Raises `BreakerConfigError` (and changes nothing) if another breaker already has
        that name.
        """
        if not isinstance(breaker, CircuitBreaker):
            raise BreakerConfigError(f"breaker must be a CircuitBreaker, got {safe_repr(breaker)}")
        with self._lock:
            existing = self._breakers.get(breaker.name)
            if existing is None:
                self._breakers[breaker.name] = breaker
                if self._listener is not None and breaker._listener is not self._listener:
                    breaker.watch(self._listener)  # its changes reach the event stream too
                return breaker
        if existing is not breaker:
            raise _taken(breaker.name)
        return breaker

    def check(self, breaker: CircuitBreaker) -> None:
        """Raise what `add` would raise for ``breaker`` now (another breaker has its
        name), changing nothing: a registration checks it before it is sent."""
        existing = self.get(breaker.name)
        if existing is not None and existing is not breaker:
            raise _taken(breaker.name)

    def get_or_create(self, name: str, **defaults: Unpack[BreakerOptions]) -> CircuitBreaker:
        """The breaker called ``name``; made from ``defaults`` if there is none yet.

        ``defaults`` are `CircuitBreaker`'s keyword arguments; they are ignored when the
        breaker exists already.
        """
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                options: BreakerOptions = {"clock": self._clock, "listener": self._listener}
                options.update(defaults)
                breaker = CircuitBreaker(name, **options)
                self._breakers[name] = breaker
            return breaker

    def all(self) -> list[CircuitBreaker]:
        """Every registered breaker, in the order they were added."""
        with self._lock:
            return list(self._breakers.values())

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._breakers

    def __len__(self) -> int:
        with self._lock:
            return len(self._breakers)


def _taken(name: str) -> BreakerConfigError:
    return BreakerConfigError(
        f"a different circuit breaker is already registered as {name!r}; "
        f"use get({name!r}) to share it"
    )
