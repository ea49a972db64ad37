"""`ActorSystem`: the embedded actor system, as users hold it.

The supervision tree itself is `actors.runtime.SystemRuntime`; this adds what a user
reaches through the system: its client (``system.task_manager``), the dashboard, and
the blocking API for synchronous code (``with ActorSystem()``, ``system.blocking``:
`actors.api._blocking`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from actors.api._blocking import SWEEP_MARGIN, BlockingTaskManager, refuse_in_loop
from actors.api._client import UnifiedTaskManager
from actors.core import ActorSystemError, LoopThread
from actors.runtime import STOP_SLACK, SystemRuntime

if TYPE_CHECKING:
    from actors.dashboard import DashboardServer
    from supervisors import Clock

__all__ = ["ActorSystem"]


class ActorSystem(SystemRuntime):
    """The embedded actor system. ``async with ActorSystem({...}) as system:``.

    ``config`` is a mapping of the upper-case keys (or a `Config`); environment
    variables ``ACTORFLOW_*`` and a TOML file named by ``ACTORFLOW_CONFIG`` apply below
    it. ``clock`` replaces the wall clock (tests pass a fake one).
    """

    def __init__(
        self, config: object = None, *, clock: Clock | None = None, probe: object = None
    ) -> None:
        super().__init__(config, clock=clock, probe=probe)
        self.task_manager = UnifiedTaskManager(self)
        self._blocking: BlockingTaskManager | None = None

    # -- synchronous code: `with`, and `system.blocking` (actors.api._blocking) -----------

    def __enter__(self) -> ActorSystem:
        """``with ActorSystem(...) as system:`` in synchronous code: starts the system
        and its loop thread (where ``system.blocking`` runs calls, and so where coroutine
        tasks registered through it run). In a coroutine, use ``async with``."""
        refuse_in_loop("`with ActorSystem()` (use `async with ActorSystem()` there)")
        self.start()
        self._loop_thread_for_blocking()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop_blocking()

    @property
    def blocking(self) -> BlockingTaskManager:
        """The client's methods as plain blocking calls (`BlockingTaskManager`), for
        threads that run no event loop; they raise `BlockingCallError` on one."""
        blocking = self._blocking
        if blocking is None:
            with self._lock:
                if self._blocking is None:
                    self._blocking = BlockingTaskManager(self)
                blocking = self._blocking
        return blocking

    def _loop_thread_for_blocking(self) -> LoopThread:
        """The system's own loop thread (started on first use; every stop of the system
        ends it, `SystemRuntime._end_loop_thread`)."""
        runner = self._loop_thread
        if runner is None:
            with self._lock:
                if self._closed:
                    raise ActorSystemError(
                        "the actor system is shut down; create a new ActorSystem"
                    )
                if self._loop_thread is None:
                    self._loop_thread = LoopThread("actorflow-loop")
                runner = self._loop_thread
        return runner

    def _stop_blocking(self) -> None:
        """Shut down from synchronous code: on the loop thread, then stop it. A loop
        thread that never runs the shutdown (stuck, or gone) does not keep the tree
        running: it is stopped from here, by the same deadline. The wait for the
        shutdown is its bound (``SHUTDOWN_TIMEOUT`` + `STOP_SLACK`), a sweep more, and
        `CLOSE_SECONDS` more when the stop closes worker processes."""
        with self._lock:
            runner = self._loop_thread
            if runner is not None:  # another stop leaves the loop thread to this one
                self._loop_thread_keeper = threading.current_thread()
        try:
            if runner is not None and not self._closed:
                deadline = self._begin_stop()
                shutdown_timeout = self.config.SHUTDOWN_TIMEOUT
                bound = shutdown_timeout + STOP_SLACK + SWEEP_MARGIN
                named = f"SHUTDOWN_TIMEOUT={shutdown_timeout}s + {STOP_SLACK}s + {SWEEP_MARGIN}s"
                try:
                    runner.call(
                        self.shutdown(), bound, "system shutdown", named, extend=self._closing
                    )
                finally:
                    if not self._closed:  # the shutdown never reached the tree's stop
                        self._stop_until(deadline)
            elif not self._closed:
                self.stop_sync()
        finally:
            if runner is not None:
                try:
                    self._stop_loop_thread(runner)
                finally:
                    with self._lock:
                        if self._loop_thread_keeper is threading.current_thread():
                            self._loop_thread_keeper = None

    def _closing(self) -> tuple[float, str]:
        """Seconds more the wait for the shutdown gets once its bound has passed
        (`_stop_blocking`): `CLOSE_SECONDS` if the stop closes worker processes, else 0."""
        allowance = self._close_allowance()
        return allowance, f"CLOSE_SECONDS={allowance}s (closing worker processes)"

    def serve_dashboard(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        read_only: bool = False,
    ) -> DashboardServer:
        """Serve the dashboard with uvicorn in a thread (port 0: any free port); returns
        the running server (``.url``, ``.stop()``). It stops with the system. Needs the
        ``dashboard`` extra. ``token`` defaults to ``DASHBOARD_TOKEN``."""
        try:
            # The one upward import of the library: the optional dashboard extra, loaded
            # on demand (docs/architecture.md, "Layers").
            from actors.dashboard import DashboardServer
        except ImportError as exc:
            msg = (
                "the dashboard needs starlette and uvicorn: "
                f"pip install 'actorflow[dashboard]' ({exc})"
            )
            raise ActorSystemError(msg) from None
        # A failed system says so (it served a dashboard of a failed system).
        self._check_failed()
        if self._closed:
            raise ActorSystemError("the actor system was shut down; create a new one")
        server = DashboardServer(self, host, port, token=token, read_only=read_only)
        with self._lock:
            self._dashboards.append(server)
        try:
            return server.start()
        except BaseException:
            server.stop()
            raise
