"""actorflow's task system: supervised pykka actors behind an async client."""

from loguru import logger

from actors._breaker import BreakerRegistry, BreakerState, CircuitBreaker
from actors._client import ThreadPoolClient, UnifiedTaskManager, configure, unified_task_manager
from actors._config import Config, load_config
from actors._context import CancellationToken, cancellation_token, current_task_id
from actors._errors import (
    ActorsError,
    ActorSystemError,
    BreakerConfigError,
    CallTimeout,
    CircuitOpenError,
    ConfigError,
    DependencyCycleError,
    DependencyFailedError,
    DuplicateTaskError,
    InvalidTaskError,
    JournaledError,
    JournalEncodeError,
    JournalError,
    SystemOverloadedError,
    TaskCancelledError,
    TaskFailedError,
    TaskNotFoundError,
    TaskRecoveryError,
    TaskTimeoutError,
    WaitTimeoutError,
)
from actors._events import Event, EventKind, EventStream
from actors._governor import ResourceSample
from actors._logging import configure_logging
from actors._metrics import MetricsSnapshot, TimingStats, render_prometheus
from actors._prometheus import prometheus_collector
from actors._stdlib_logging import TaskContextFilter
from actors._system import ActorSystem, SupervisorClient
from actors._taskgraph import GraphvizNotFoundError, TaskGraph, TaskNode
from actors._types import TaskInfo, TaskPriority, TaskStatus

__all__ = [
    "ActorSystem",
    "ActorSystemError",
    "ActorsError",
    "BreakerConfigError",
    "BreakerRegistry",
    "BreakerState",
    "CallTimeout",
    "CancellationToken",
    "CircuitBreaker",
    "CircuitOpenError",
    "Config",
    "ConfigError",
    "DependencyCycleError",
    "DependencyFailedError",
    "DuplicateTaskError",
    "Event",
    "EventKind",
    "EventStream",
    "GraphvizNotFoundError",
    "InvalidTaskError",
    "JournalEncodeError",
    "JournalError",
    "JournaledError",
    "MetricsSnapshot",
    "ResourceSample",
    "SupervisorClient",
    "SystemOverloadedError",
    "TaskCancelledError",
    "TaskContextFilter",
    "TaskFailedError",
    "TaskGraph",
    "TaskInfo",
    "TaskNode",
    "TaskNotFoundError",
    "TaskPriority",
    "TaskRecoveryError",
    "TaskStatus",
    "TaskTimeoutError",
    "ThreadPoolClient",
    "TimingStats",
    "UnifiedTaskManager",
    "WaitTimeoutError",
    "cancellation_token",
    "configure",
    "configure_logging",
    "current_task_id",
    "load_config",
    "prometheus_collector",
    "render_prometheus",
    "unified_task_manager",
]

logger.disable("actors")
