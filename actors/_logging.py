"""Logging switch. Both packages are silent by default (``logger.disable``), as libraries
should be; `configure_logging` turns their lines on. Handlers stay the application's."""

from __future__ import annotations

from loguru import logger

__all__ = ["configure_logging"]


def configure_logging(enabled: bool = True) -> None:
    """Let actorflow's own log lines (``actors`` and ``supervisors``) through loguru."""
    for package in ("actors", "supervisors"):
        if enabled:
            logger.enable(package)
        else:
            logger.disable(package)
