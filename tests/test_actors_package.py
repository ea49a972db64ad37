"""The public surface of `actors`: the documented names and every client method."""

from __future__ import annotations

import actors

DESIGN_NAMES = {
    "unified_task_manager",
    "ActorSystem",
    "UnifiedTaskManager",
    "TaskStatus",
    "TaskPriority",
    "TaskInfo",
    "TaskGraph",
    "CircuitBreaker",
    "ActorsError",
    "InvalidTaskError",
    "TaskNotFoundError",
    "DuplicateTaskError",
    "DependencyCycleError",
    "DependencyFailedError",
    "TaskTimeoutError",
    "TaskCancelledError",
    "CircuitOpenError",
    "ActorSystemError",
    "configure",
    "configure_logging",
}

CLIENT_METHODS = {
    "register_task",
    "execute_task",
    "wait_for_task",
    "cancel_task",
    "get_task",
    "get_task_status",
    "get_task_result",
    "get_task_error",
    "get_all_tasks",
    "get_tasks_by_status",
    "get_tasks_by_type",
    "add_dependency",
    "get_task_graph",
    "cleanup_completed_tasks",
    "get_metrics",
    "render_prometheus",
    "events",
    "use_new_task_system",
    "shutdown",
    "submit",
}


def test_all_names_resolve_and_include_the_design_names() -> None:
    assert set(actors.__all__) >= DESIGN_NAMES
    for name in actors.__all__:
        assert getattr(actors, name) is not None
    assert len(set(actors.__all__)) == len(actors.__all__)


def test_the_client_has_every_design_method() -> None:
    assert set(dir(actors.UnifiedTaskManager)) >= CLIENT_METHODS
    assert callable(actors.unified_task_manager.thread_pool.submit)


def test_every_error_derives_from_actors_error() -> None:
    errors = [getattr(actors, n) for n in actors.__all__ if n.endswith("Error")]
    assert len(errors) >= 11
    assert all(issubclass(e, actors.ActorsError) for e in errors)
