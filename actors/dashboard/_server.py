"""`DashboardServer`: the dashboard on its own uvicorn server, in a thread."""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import TYPE_CHECKING, Any

import uvicorn

from actors.core import ActorSystemError, InvalidTaskError

if TYPE_CHECKING:
    from actors.api import ActorSystem

__all__ = ["DashboardServer"]

START_TIMEOUT = 10.0
"""Seconds `DashboardServer.start` waits for uvicorn to listen."""


class _Server(uvicorn.Server):
    """uvicorn's server, telling a thread when it listens (or gave up)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


class DashboardServer:
    """A running dashboard: `url` to open, `stop()` to end it (the system's shutdown
    stops it too). Made by `ActorSystem.serve_dashboard`."""

    def __init__(
        self,
        system: ActorSystem,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        read_only: bool = False,
    ) -> None:
        from actors.dashboard._app import create_app

        if not isinstance(host, str) or not host:
            raise InvalidTaskError(f"host must be a non-empty str, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidTaskError(f"port must be an int between 0 and 65535, got {port!r}")
        self.app = create_app(system, token=token, read_only=read_only)
        self._system = system
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ActorSystemError(f"the dashboard cannot listen on {host}:{port}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            # A NUL character, or a name IDNA cannot encode: the socket module raises
            # TypeError/ValueError, not OSError (they escaped, and the socket leaked).
            sock.close()
            raise InvalidTaskError(
                f"host must be a host name or an IP address, got {host!r}: {exc}"
            ) from None
        self._socket = sock
        self.host = host
        self.port: int = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        if _is_any(host):
            shown = "127.0.0.1" if family == socket.AF_INET else "[::1]"
        self.url = f"http://{shown}:{self.port}/"
        """Where to open the dashboard."""
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            ws="none",
        )
        self._server = _Server(config)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<DashboardServer {self.url} {'running' if self.running else 'stopped'}>"

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._server.should_exit

    def start(self) -> DashboardServer:
        """Start serving; returns once the server listens."""
        with self._lock:
            if self._thread is not None:
                return self
            self._thread = threading.Thread(
                target=self._server.run,
                kwargs={"sockets": [self._socket]},
                name=f"actorflow-dashboard-{self.port}",
                daemon=True,
            )
            self._thread.start()
        if not self._server.ready.wait(START_TIMEOUT) or not self._server.started:
            self.stop()
            msg = f"the dashboard did not start listening on {self.url} within {START_TIMEOUT}s"
            raise ActorSystemError(msg)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (idempotent): open event streams end, the thread is joined."""
        self._server.should_exit = True
        self.app.state.dashboard.stop_streams()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._socket.close()
        self._system._forget_dashboard(self)

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _is_any(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
