"""The task engine: task records, the dependency graph, and every decision about a task.

Pure: no actors, no threads, no event loop; time comes from an injected clock. The
manager actors are thin shells over one `Engine` each, configured by a `Policy`.
"""

from actors.engine._engine import Engine, Policy, Port, StartFailed, Transition, deliver
from actors.engine._graph import DependencyGraph
from actors.engine._outcomes import INTERRUPTED, breaker_outcome, ended_cancelled, retry_delay
from actors.engine._record import (
    MAX_FAILURES_KEPT,
    Attempt,
    AttemptFailure,
    TaskRecord,
    Timer,
    failure_of,
)

__all__ = [
    "INTERRUPTED",
    "MAX_FAILURES_KEPT",
    "Attempt",
    "AttemptFailure",
    "DependencyGraph",
    "Engine",
    "Policy",
    "Port",
    "StartFailed",
    "TaskRecord",
    "Timer",
    "Transition",
    "breaker_outcome",
    "deliver",
    "ended_cancelled",
    "failure_of",
    "retry_delay",
]
