"""Logging switch. Both packages are silent by default (``logger.disable``), as libraries
should be; `configure_logging` turns their lines on. Handlers stay the application's."""

from __future__ import annotations

from loguru import logger

from actors._errors import ConfigError
from actors._stdlib_logging import install_stdlib_sink, remove_stdlib_sink

__all__ = ["configure_logging", "lifecycle_logging"]

_enabled = False


def lifecycle_logging() -> bool:
    """Whether task lifecycle lines are built at all (free when logging is off)."""
    return _enabled


def configure_logging(enabled: bool = True, *, stdlib: bool = False) -> None:
    """Let actorflow's own log lines (``actors`` and ``supervisors``) through loguru.

    Task lifecycle lines (registered, started, retrying, completed, failed, cancelled)
    are bound with ``task_id``, ``task_name`` and ``task_type``. While logging is off
    they are not even built, so the hot path pays one boolean test per transition.

    ``stdlib=True`` sends those lines to the standard `logging` module instead of
    loguru's own handlers (levels mapped, bound values as `LogRecord` attributes; see
    `actors._stdlib_logging`); ``configure_logging(False)`` or a call without it removes
    that sink again. Pair it with `actors.TaskContextFilter` for the application's own
    `logging` lines inside tasks.
    """
    given: tuple[object, object] = (enabled, stdlib)
    if not all(isinstance(flag, bool) for flag in given):
        msg = (
            f"configure_logging takes booleans: enabled={enabled!r}, stdlib={stdlib!r}; "
            "pass True or False"
        )
        raise ConfigError(msg)
    global _enabled
    _enabled = enabled
    if enabled and stdlib:
        install_stdlib_sink()
    else:
        remove_stdlib_sink()
    for package in ("actors", "supervisors"):
        if enabled:
            logger.enable(package)
        else:
            logger.disable(package)
