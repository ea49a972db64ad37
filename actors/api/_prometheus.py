"""`prometheus_collector`: the system's metrics as a collector in the application's registry.

``REGISTRY.register(actors.prometheus_collector(system))`` and every scrape reads a fresh
`MetricsSnapshot` from the system: the families of `render_prometheus` (the same code
yields them) including the run-time and wait-time histograms per task type.

A scrape runs `collect` in a plain thread (the HTTP server of ``start_http_server``, a
WSGI worker, ``asyncio.to_thread``): it asks the system for a snapshot the way the async
client does, and waits for the answer on a `concurrent.futures.Future` with a bound. It
refuses to wait on a thread that runs an event loop: that loop may be the one the
system answers on, and blocking it would stall the service for the whole bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from actors.api._client import UnifiedTaskManager
from actors.core import (
    MAX_SECONDS,
    ActorsError,
    ActorSystemError,
    ConfigError,
    finite_float,
    safe_repr,
    too_long,
)
from actors.observe import MetricsSnapshot, empty_snapshot, snapshot_collector
from actors.runtime import SystemRuntime
from actors.runtime.messages import GetMetrics
from supervisors import SupervisorError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from actors.api._system import ActorSystem

__all__ = ["MetricsCollector", "metrics_snapshot", "prometheus_collector"]

_INSTALL_HINT = (
    "prometheus_collector needs the prometheus_client package: pip install 'actorflow[prometheus]'"
)


class _FutureReply:
    """A reply channel that resolves a `concurrent.futures.Future` (any thread)."""

    __slots__ = ("future",)

    def __init__(self, future: Future[Any]) -> None:
        self.future = future

    # (The caller may cancel it meanwhile, from its own thread, as it gives up: an
    # answer to a cancelled call is dropped, never an error in the monitor's thread.)

    def set_result(self, value: Any) -> None:
        with contextlib.suppress(InvalidStateError):
            self.future.set_result(value)

    def set_exception(self, error: BaseException) -> None:
        with contextlib.suppress(InvalidStateError):
            self.future.set_exception(error)


def metrics_snapshot(system: SystemRuntime, timeout: float) -> MetricsSnapshot:
    """`get_metrics` for a thread without an event loop: blocks up to ``timeout`` seconds.

    Raises `ActorSystemError` when called on a thread running an event loop (use
    ``await tm.get_metrics()`` there, or run the scrape in a thread), when the system is
    stopped or failed, or when no answer comes within ``timeout``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        msg = (
            "metrics_snapshot() would block the event loop running in this thread: "
            "collect in another thread (await asyncio.to_thread(generate_latest, registry), "
            "or a sync route of your web framework), or use await tm.get_metrics()"
        )
        raise ActorSystemError(msg)
    future: Future[MetricsSnapshot] = Future()
    # (A failure or stop of the system meanwhile fails the future: no wait for the bound.)
    with system.thread_call(future) as facade:
        try:
            facade.tell(GetMetrics(_FutureReply(future)))
        except SupervisorError as exc:
            raise ActorSystemError(f"the actor system cannot take calls: {exc}") from exc
        try:
            return future.result(timeout)
        except FutureTimeout:
            if not future.cancel():  # answered as the wait gave up: that answer
                return future.result()
            msg = f"no metrics from the actor system within {timeout}s; it is overloaded or stuck"
            raise ActorSystemError(msg) from None


class MetricsCollector:
    """A prometheus_client collector of one actor system (see `prometheus_collector`)."""

    def __init__(self, source: SystemRuntime | UnifiedTaskManager, timeout: float) -> None:
        self._source = source
        self.timeout = timeout

    def _system(self) -> SystemRuntime:
        source = self._source
        return source._get_system() if isinstance(source, UnifiedTaskManager) else source

    def describe(self) -> Iterator[Metric]:
        """The families, without asking the system (registering never blocks)."""
        return snapshot_collector(empty_snapshot()).collect()

    def collect(self) -> Iterator[Metric]:
        """A fresh snapshot's families (blocks this thread up to ``timeout``)."""
        snapshot = metrics_snapshot(self._system(), self.timeout)
        return snapshot_collector(snapshot).collect()


def prometheus_collector(
    system: ActorSystem | UnifiedTaskManager, *, timeout: float = 5.0
) -> MetricsCollector:
    """A collector to register in the application's registry.

    ``REGISTRY.register(actors.prometheus_collector(system))``. ``system`` is an
    `ActorSystem` or a `UnifiedTaskManager` (the module-level ``unified_task_manager``
    too). Each scrape waits up to ``timeout`` seconds for a snapshot, and must run in a
    thread without an event loop (see `metrics_snapshot`). The families are those of
    `render_prometheus`, among them ``actorflow_task_execution_duration_seconds`` and
    ``actorflow_task_wait_duration_seconds``: histograms per task type with the buckets
    of ``METRICS_HISTOGRAM_BUCKETS``.
    """
    source: object = system
    if not isinstance(source, (SystemRuntime, UnifiedTaskManager)):
        msg = (
            "prometheus_collector needs an ActorSystem or a UnifiedTaskManager, "
            f"got {safe_repr(system)}"
        )
        raise ConfigError(msg)
    bound = finite_float(timeout)
    if bound is None or bound <= 0:
        raise ConfigError(
            f"timeout must be a finite number > 0 (seconds), got {safe_repr(timeout)}"
        )
    if bound > MAX_SECONDS:  # (each scrape waits for it in `Future.result`)
        raise ConfigError(too_long("timeout", timeout))
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ActorsError(_INSTALL_HINT) from exc
    return MetricsCollector(system, bound)
