"""actorflow's task system: supervised pykka actors behind an async client."""

from loguru import logger

from actors._client import ThreadPoolClient, UnifiedTaskManager, configure, unified_task_manager
from actors._config import Config, load_config
from actors._context import CancellationToken, cancellation_token, current_task_id
from actors._errors import (
    ActorsError,
    ActorSystemError,
    CircuitOpenError,
    ConfigError,
    DependencyCycleError,
    DependencyFailedError,
    DuplicateTaskError,
    InvalidTaskError,
    TaskCancelledError,
    TaskNotFoundError,
    TaskTimeoutError,
)
from actors._logging import configure_logging
from actors._system import ActorSystem, SupervisorClient
from actors._types import TaskInfo, TaskPriority, TaskStatus

__all__ = [
    "ActorSystem",
    "ActorSystemError",
    "ActorsError",
    "CancellationToken",
    "CircuitOpenError",
    "Config",
    "ConfigError",
    "DependencyCycleError",
    "DependencyFailedError",
    "DuplicateTaskError",
    "InvalidTaskError",
    "SupervisorClient",
    "TaskCancelledError",
    "TaskInfo",
    "TaskNotFoundError",
    "TaskPriority",
    "TaskStatus",
    "TaskTimeoutError",
    "ThreadPoolClient",
    "UnifiedTaskManager",
    "cancellation_token",
    "configure",
    "configure_logging",
    "current_task_id",
    "load_config",
    "unified_task_manager",
]

logger.disable("actors")
