"""The live dashboard: ``create_app(system)`` is a Starlette app to mount; see README.

Needs the ``dashboard`` extra (starlette, uvicorn): ``pip install 'actorflow[dashboard]'``.
"""

from actors.dashboard._app import create_app
from actors.dashboard._server import DashboardServer

__all__ = ["DashboardServer", "create_app"]
