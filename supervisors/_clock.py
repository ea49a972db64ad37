"""Time behind an interface, so supervisors, backoff and timers can be tested with a fake.

`RealClock` runs timers on one scheduler thread per clock. The thread exists only while
timers are pending: it exits as soon as the heap is empty, so an idle process holds no
extra thread. One clock serves every timer of the process, so nothing a timer brings
may stop it: a delay of any size (one past ``threading.TIMEOUT_MAX``, or infinite, just
never comes due in the process's life) and any exception of a callback (logged).
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from loguru import logger

__all__ = ["SYSTEM_CLOCK", "Clock", "RealClock", "TimerHandle"]


@dataclass(slots=True, eq=False)
class TimerHandle:
    """A scheduled callback. `cancel()` is idempotent and safe from any thread."""

    deadline: float
    seq: int
    callback: Callable[[], object]
    on_cancel: Callable[[], object] | None = None
    """Called by the first `cancel()` (the clock's wake-up)."""
    _cancelled: bool = field(default=False, init=False)

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            if self.on_cancel is not None:
                self.on_cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def __lt__(self, other: TimerHandle) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


class Clock(Protocol):
    """What supervisors, retries and cleanup read time from."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` (which must not block) once ``delay`` seconds have passed."""
        ...


_MAX_WAIT = 3600.0
"""Longest single wait of the scheduler thread, in seconds: far below
``threading.TIMEOUT_MAX``, so a far deadline only makes it wake up once an hour."""


class RealClock:
    """Wall-clock time; timers fire on one lazily started scheduler thread."""

    def __init__(self, name: str = "actorflow-clock") -> None:
        self._name = name
        self._heap: list[TimerHandle] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count()

    # The C function itself: the hottest clock read costs no Python frame.
    monotonic = staticmethod(time.monotonic)

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        try:
            deadline = time.monotonic() + max(0.0, delay)
        except OverflowError:  # an int too large for a float: never due
            deadline = math.inf
        handle = TimerHandle(deadline, next(self._seq), callback, self._wake)
        with self._cond:
            heapq.heappush(self._heap, handle)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            else:
                self._cond.notify()
        return handle

    def pending(self) -> int:
        """Timers scheduled and not yet fired or cancelled."""
        with self._cond:
            return sum(1 for t in self._heap if not t.cancelled)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            # Whatever ended the loop, the next call_later starts a new thread.
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._thread = None
                    return
                head = self._heap[0]
                remaining = head.deadline - time.monotonic()
                if remaining > 0:
                    # A cancel wakes us: cancelled timers are popped above, and the thread
                    # exits as soon as nothing live is left.
                    if all(t.cancelled for t in self._heap):
                        self._heap.clear()
                        continue
                    self._cond.wait(min(remaining, _MAX_WAIT))
                    continue
                heapq.heappop(self._heap)
            if not head.cancelled:
                try:
                    head.callback()
                except BaseException as exc:  # even SystemExit: the clock serves everyone
                    logger.opt(exception=exc).error(
                        "timer callback {!r} raised; the clock goes on", head.callback
                    )


SYSTEM_CLOCK = RealClock()
"""The clock used when none is injected."""
