"""Logging switch. Both packages are silent by default (``logger.disable``), as libraries
should be; `configure_logging` turns their lines on. Handlers stay the application's."""

from __future__ import annotations

from loguru import logger

__all__ = ["configure_logging", "lifecycle_logging"]

_enabled = False


def lifecycle_logging() -> bool:
    """Whether task lifecycle lines are built at all (free when logging is off)."""
    return _enabled


def configure_logging(enabled: bool = True) -> None:
    """Let actorflow's own log lines (``actors`` and ``supervisors``) through loguru.

    Task lifecycle lines (registered, started, retrying, completed, failed, cancelled)
    are bound with ``task_id``, ``task_name`` and ``task_type``. While logging is off
    they are not even built, so the hot path pays one boolean test per transition.
    """
    global _enabled
    _enabled = enabled
    for package in ("actors", "supervisors"):
        if enabled:
            logger.enable(package)
        else:
            logger.disable(package)
