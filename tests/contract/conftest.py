"""The contract both task managers satisfy: the same tests, run against "new" and "old".

Time is a `FakeClock`: retry delays and timeouts pass only when a test advances it,
after `helpers.timers_armed` has shown the timer is armed. Nothing here sleeps; every
wait is on a task's outcome or an event, with a bound.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from helpers import make_system

from actors import UnifiedTaskManager
from supervisors.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def tm(backend: str, clock: FakeClock) -> AsyncIterator[UnifiedTaskManager]:
    async with make_system(backend, clock) as system:
        yield system.task_manager
