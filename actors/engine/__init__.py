"""The task engine: task records, the dependency graph, and every decision about a task.

Pure: no actors, no threads, no event loop; time comes from an injected clock. The
manager actors are thin shells over one `Engine` each, configured by a `Policy`.
"""

from actors.engine._engine import Engine, Policy, Port, StartFailed, Transition
from actors.engine._graph import DependencyGraph
from actors.engine._outcomes import retry_delay
from actors.engine._record import MAX_FAILURES_KEPT, Attempt, AttemptFailure, TaskRecord, Timer
from actors.engine._results import ResultOf, find_results, result_of, substitute

__all__ = [
    "MAX_FAILURES_KEPT",
    "Attempt",
    "AttemptFailure",
    "DependencyGraph",
    "Engine",
    "Policy",
    "Port",
    "ResultOf",
    "StartFailed",
    "TaskRecord",
    "Timer",
    "Transition",
    "find_results",
    "result_of",
    "retry_delay",
    "substitute",
]
