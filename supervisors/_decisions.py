"""The supervisor's decisions as pure functions: no threads, no clock reads.

Modelled on OTP's supervisor.erl: the restart table, restart intensity over a sliding
window, which children a strategy touches, and the backoff step, which asks a tenacity
wait strategy for the delay while the counter (and its reset) stays here, since tenacity
has no notion of a reset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from tenacity import RetryCallState
from tenacity.wait import wait_base

from supervisors._spec import Restart, Strategy

__all__ = [
    "add_restart",
    "affected_children",
    "backoff_delay",
    "next_failure_count",
    "prune_window",
    "should_restart",
]


def should_restart(restart: Restart, abnormal: bool) -> bool:
    """The restart table: (restart type x exit reason) -> restart or not."""
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return abnormal
    return False


def prune_window(restarts: Sequence[float], now: float, within: float) -> list[float]:
    """Restart timestamps still inside the sliding window ending at ``now``."""
    return [t for t in restarts if now - t < within]


def add_restart(
    restarts: Sequence[float], now: float, within: float, max_restarts: int
) -> tuple[list[float], bool]:
    """Record a restart at ``now``; True when the window now holds more than allowed."""
    window = [*prune_window(restarts, now, within), now]
    return window, len(window) > max_restarts


def affected_children(strategy: Strategy, order: Sequence[str], failed: str) -> list[str]:
    """The children a strategy restarts when ``failed`` fails, in start order."""
    if strategy is Strategy.ONE_FOR_ONE:
        return [failed]
    if strategy is Strategy.ONE_FOR_ALL:
        return list(order)
    return list(order[order.index(failed) :])


def next_failure_count(count: int, stable_for: float, reset_after: float) -> int:
    """The backoff counter after a failure: it restarts from 1 after a stable run."""
    return 1 if stable_for >= reset_after else count + 1


def backoff_delay(wait: wait_base, failure_count: int) -> float:
    """Ask tenacity for the delay before restart number ``failure_count`` (1-based)."""
    state = RetryCallState(retry_object=cast(Any, None), fn=None, args=(), kwargs={})
    state.attempt_number = failure_count
    return max(0.0, float(wait(state)))
