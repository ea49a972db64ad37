"""The public surface: `ActorSystem`, the `UnifiedTaskManager` client, the lazy client,
its blocking form (`BlockingTaskManager`), and the Prometheus collector."""

from actors.api._blocking import BlockingTaskManager
from actors.api._client import ThreadPoolClient, UnifiedTaskManager, configure, unified_task_manager
from actors.api._prometheus import prometheus_collector
from actors.api._system import ActorSystem

__all__ = [
    "ActorSystem",
    "BlockingTaskManager",
    "ThreadPoolClient",
    "UnifiedTaskManager",
    "configure",
    "prometheus_collector",
    "unified_task_manager",
]
