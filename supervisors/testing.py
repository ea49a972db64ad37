"""Test support: a fake clock whose time moves only when a test says so."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable

from supervisors._clock import TimerHandle

__all__ = ["FakeClock"]


class FakeClock:
    """A `Clock` for tests, modelled on trio's ``MockClock``.

    Time starts at ``start`` and moves only through `advance`, which runs every timer
    that falls due, in deadline order, in the calling thread. Timer callbacks must not
    block (the supervisors' callbacks only send a message).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[TimerHandle] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()

    def monotonic(self) -> float:
        with self._cond:
            return self._now

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        with self._cond:
            handle = TimerHandle(self._now + max(0.0, delay), next(self._seq), callback)
            heapq.heappush(self._heap, handle)
            self._cond.notify_all()
            return handle

    def pending(self) -> int:
        """Timers scheduled and neither fired nor cancelled."""
        with self._cond:
            return sum(1 for t in self._heap if not t.cancelled)

    def next_deadline(self) -> float | None:
        """The deadline of the earliest pending timer, or None."""
        with self._cond:
            live = [t.deadline for t in self._heap if not t.cancelled]
            return min(live) if live else None

    def pending_delays(self) -> list[float]:
        """Seconds from now to each pending timer, soonest first."""
        with self._cond:
            return sorted(t.deadline - self._now for t in self._heap if not t.cancelled)

    def wait_for_timers(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``count`` timers are pending (a sync point for tests).

        Raises `TimeoutError` after ``timeout`` real seconds.
        """

        def ready() -> bool:
            return sum(1 for t in self._heap if not t.cancelled) >= count

        with self._cond:
            if not self._cond.wait_for(ready, timeout):
                live = sum(1 for t in self._heap if not t.cancelled)
                msg = f"{live} timers pending after {timeout}s; expected at least {count}"
                raise TimeoutError(msg)

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds``, firing due timers; return how many fired."""
        if seconds != seconds:  # NaN passed '< 0' and made the clock's time NaN for good
            msg = f"advance() takes a number of seconds >= 0, got {seconds!r}"
            raise ValueError(msg)
        if seconds < 0:
            msg = f"cannot move time backwards: advance({seconds!r})"
            raise ValueError(msg)
        fired = 0
        with self._cond:
            target = self._now + seconds
        while True:
            with self._cond:
                if not self._heap or self._heap[0].deadline > target:
                    self._now = target
                    return fired
                head = heapq.heappop(self._heap)
                self._now = max(self._now, head.deadline)
            if not head.cancelled:
                head.callback()
                fired += 1
