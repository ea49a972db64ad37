"""The runtime: the supervised actors, their typed messages, and the runners of attempts.

`SystemRuntime` starts the supervision tree: ``task_monitor``, ``thread_pool``,
``legacy_task_manager``, ``task_manager`` and ``facade``.
"""

from actors.runtime._backends import require_backend
from actors.runtime._durable import JournaledDefinition, durable_row
from actors.runtime._facade import TASK_SYSTEMS, new_task_id
from actors.runtime._outbox import outbox
from actors.runtime._shared import CHILD_IDS
from actors.runtime._system import STOP_SLACK, SupervisorClient, SystemRuntime

__all__ = [
    "CHILD_IDS",
    "STOP_SLACK",
    "TASK_SYSTEMS",
    "JournaledDefinition",
    "SupervisorClient",
    "SystemRuntime",
    "durable_row",
    "new_task_id",
    "outbox",
    "require_backend",
]
