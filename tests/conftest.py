"""Shared fixtures. Every test is checked for leaked pykka actors, threads and task
records."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest
from helpers import WAIT
from loguru import logger

from actors import ActorSystem, UnifiedTaskManager, configure_logging
from actors.engine import TaskRecord
from supervisors.testing import FakeClock

LEAK_GRACE_SECONDS = 5.0


# -- the event loop the tests run on ----------------------------------------------------------
# `--event-loop uvloop` runs every async test on uvloop (what uvicorn, so FastAPI, runs
# by default), `--event-loop eager` on asyncio's loop with an eager task factory (3.12+);
# tests marked `loops` (tests/test_loops.py) and the contract (tests/contract/, both
# task systems) run on every one of them in every run.

LOOPS = ("asyncio", "uvloop", "eager")
"""asyncio's loop, uvloop's, and asyncio's with `asyncio.eager_task_factory` set on it
(Python 3.12+: an application that sets it app-wide starts every task eagerly)."""
try:
    import uvloop  # noqa: F401  (uvloop has wheels for Linux and macOS, none for Windows)

    HAVE_UVLOOP = True
except ImportError:
    HAVE_UVLOOP = False
HAVE_EAGER = hasattr(asyncio, "eager_task_factory")
CONTRACT = Path(__file__).with_name("contract")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--event-loop",
        choices=LOOPS,
        default="asyncio",
        help="the event loop every async test runs on (default: asyncio's own; eager: "
        "asyncio's with an eager task factory, 3.12+); tests marked `loops` and "
        "tests/contract run on all three whatever this says",
    )


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new event loop of ``name`` (in `LOOPS`)."""
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "eager":
        return _eager_loop
    import uvloop

    return uvloop.new_event_loop


def _eager_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    return loop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """pytest-asyncio's hook: the loops an async test runs on (one a run of it)."""
    if item.get_closest_marker("loops") is not None or item.path.is_relative_to(CONTRACT):
        names: tuple[str, ...] = LOOPS
    else:
        names = (config.getoption("--event-loop"),)
        if names == ("uvloop",) and not HAVE_UVLOOP:
            raise pytest.UsageError("--event-loop uvloop: uvloop is not installed")
        if names == ("eager",) and not HAVE_EAGER:
            raise pytest.UsageError("--event-loop eager: eager tasks are new in Python 3.12")
    # (the `loops` tests run on those there are: uvloop has no wheel for Windows)
    names = tuple(
        name
        for name in names
        if (name != "uvloop" or HAVE_UVLOOP) and (name != "eager" or HAVE_EAGER)
    )
    return {name: loop_factory(name) for name in names}


def _extra_threads(baseline: set[int]) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.ident not in baseline and t is not threading.current_thread() and t.is_alive()
    ]


def pytest_collection_finish() -> None:
    """Move what exists once the tests are collected (modules, classes, their caches)
    out of the collector's way: the per-test `gc.collect` then walks only what the
    tests made since (measured: 0.7 ms a test instead of 48 ms)."""
    gc.collect()
    gc.freeze()


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        item.stash[_CALL_FAILED] = True  # pytest keeps its traceback (and what it holds)
    return report


_records_left = 0
"""Task records alive after the last test (a leak already reported): the next test's
baseline, so one leak fails one test."""


def _live_task_records() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, TaskRecord))


@pytest.fixture(autouse=True)
def no_leaked_actors_or_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves pykka actors alive, threads running or task records
    reachable.

    Threads that are on their way out (an actor thread after its stop, a clock thread
    after its last timer) are joined, with a bound; a thread still alive after that
    bound is a leak. A task record still alive once the test's fixtures are torn down
    is held by something that outlives the test (a module-level cache, a session-long
    parameter whose traceback holds the test's frames, a thread-local, a timer...):
    `gc.get_referrers` from one record shows the chain.
    """
    global _records_left
    baseline = {t.ident for t in threading.enumerate() if t.ident is not None}
    records_before = _live_task_records() if _records_left else 0
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
    # This fixture is torn down after every other function-scoped one; pytest lets go
    # of their values only after the teardown, so drop them here before counting.
    funcargs = getattr(request.node, "funcargs", None)
    if funcargs:
        funcargs.clear()
    _records_left = _live_task_records()
    if _records_left > records_before and not request.node.stash.get(_CALL_FAILED, False):
        problems.append(
            f"{_records_left - records_before} task records left alive (see gc.get_referrers)"
        )
    if problems:
        pytest.fail("; ".join(problems))


# -- a fresh system per test, on each task system ----------------------------------------
# For test files that run every test against both managers (a file can define its own
# `backend`, `system` or `tm`, which then takes precedence; tests/contract/ does).


@pytest.fixture(params=["new", "old"])
def backend(request: pytest.FixtureRequest) -> str:
    """ "new" (the scheduler) or "old" (the seed's simple manager)."""
    return str(request.param)


@pytest.fixture(params=[True, False], ids=["new", "old"])
def new_system(request: pytest.FixtureRequest) -> bool:
    """``USE_NEW_TASK_SYSTEM`` for tests that start their own systems: True ("new"),
    then False ("old")."""
    return bool(request.param)


@pytest.fixture
async def system(backend: str) -> AsyncIterator[ActorSystem]:
    """A running system on ``backend``, on a `FakeClock`, without periodic cleanup (its
    timers would count with the ones a test waits on)."""
    config = {"USE_NEW_TASK_SYSTEM": backend == "new", "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config, clock=FakeClock()) as running:
        yield running


@pytest.fixture
def tm(system: ActorSystem) -> UnifiedTaskManager:
    return system.task_manager


@pytest.fixture
def log_records() -> Iterator[list[dict[str, Any]]]:
    """Every loguru record (DEBUG and up) logged during the test; afterwards actorflow's
    own logging is off again (`configure_logging(False)`), as it is by default."""
    records: list[dict[str, Any]] = []
    sink_id = logger.add(lambda message: records.append(message.record), level="DEBUG")
    try:
        yield records
    finally:
        logger.remove(sink_id)
        configure_logging(False)


@pytest.fixture
def stopper() -> Iterator[list[pykka.ActorRef[Any]]]:
    """The test appends the actors it starts; they are stopped after it, last first."""
    refs: list[pykka.ActorRef[Any]] = []
    yield refs
    for ref in reversed(refs):
        ref.stop(timeout=WAIT)
