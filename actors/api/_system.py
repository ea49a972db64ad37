"""`ActorSystem`: the embedded actor system, as users hold it.

The supervision tree itself is `actors.runtime.SystemRuntime`; this adds what a user
reaches through the system: its client (``system.task_manager``) and the dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.api._client import UnifiedTaskManager
from actors.core import ActorSystemError
from actors.runtime import SystemRuntime

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
