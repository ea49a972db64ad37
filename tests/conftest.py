"""Shared fixtures. Every test is checked for leaked pykka actors and threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pykka
import pytest

LEAK_GRACE_SECONDS = 5.0


def _extra_threads(baseline: set[int]) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.ident not in baseline and t is not threading.current_thread() and t.is_alive()
    ]


@pytest.fixture(autouse=True)
def no_leaked_actors_or_threads() -> Iterator[None]:
    """Fail the test if it leaves pykka actors alive or threads running.

    Threads that are on their way out (an actor thread after its stop, a clock thread
    after its last timer) are joined, with a bound; a thread still alive after that
    bound is a leak.
    """
    baseline = {t.ident for t in threading.enumerate() if t.ident is not None}
    yield
    leaked_actors = pykka.ActorRegistry.get_all()
    if leaked_actors:
        pykka.ActorRegistry.stop_all(timeout=LEAK_GRACE_SECONDS)
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    for thread in _extra_threads(baseline):
        thread.join(max(0.0, deadline - time.monotonic()))
    leaked_threads = _extra_threads(baseline)
    problems = []
    if leaked_actors:
        problems.append(f"{len(leaked_actors)} pykka actors left alive: {leaked_actors}")
    if leaked_threads:
        problems.append(f"threads still running: {[t.name for t in leaked_threads]}")
    if problems:
        pytest.fail("; ".join(problems))
