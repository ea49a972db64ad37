"""Regressions of issue 17: items 17 (bounded metrics labels) and 18b (ASCII digits)."""

from __future__ import annotations

from typing import Any

import pytest

from actors import ActorSystem, ConfigError, load_config
from supervisors.testing import FakeClock

WAIT = 5.0
"""Upper bound, in real seconds, on waiting for anything in these tests."""


def make_system(clock: FakeClock | None = None, **config: Any) -> ActorSystem:
    return ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0, **config}, clock=clock or FakeClock())


# -- 17: bounded metrics labels ------------------------------------------------------------


async def test_task_types_past_the_bound_share_one_label_and_cleanup_frees_labels() -> None:
    async with make_system(METRICS_MAX_TASK_TYPES=2) as system:
        tm = system.task_manager
        for task_type in ("a", "b", "c", "a", "d"):
            task_id = await tm.register_task(task_type, lambda: None, task_type=task_type)
            await tm.execute_task(task_id, wait=True)
        metrics = await tm.get_metrics()
        assert {t: dict(c) for t, c in metrics.tasks_by_type.items()} == {
            "a": {"completed": 2},
            "b": {"completed": 1},
            "__other__": {"completed": 2},
        }
        assert {t: s.count for t, s in metrics.execution_time.items()} == {
            "a": 2,
            "b": 1,
            "__other__": 2,
        }
        assert {t: s.count for t, s in metrics.wait_time.items()} == {
            "a": 2,
            "b": 1,
            "__other__": 2,
        }

        assert await tm.cleanup_completed_tasks(max_age=0.0) == 5
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_type) == {}
        assert {t: s.count for t, s in metrics.execution_time.items()} == {"__other__": 2}

        for task_type in ("e", "f", "g"):
            task_id = await tm.register_task(task_type, lambda: None, task_type=task_type)
            await tm.execute_task(task_id, wait=True)
        metrics = await tm.get_metrics()
        assert {t: dict(c) for t, c in metrics.tasks_by_type.items()} == {
            "e": {"completed": 1},
            "f": {"completed": 1},
            "__other__": {"completed": 1},
        }
        assert {t: s.count for t, s in metrics.execution_time.items()} == {
            "__other__": 3,
            "e": 1,
            "f": 1,
        }
        assert system._state is not None
        monitor = system._state.states["task_monitor"]
        assert (monitor.own_labels, dict(monitor.live)) == (2, {"e": 1, "f": 1, "g": 1})


async def test_many_task_types_keep_the_metrics_bounded() -> None:
    async with make_system(METRICS_MAX_TASK_TYPES=3) as system:
        tm = system.task_manager
        for n in range(200):
            task_id = await tm.register_task("t", lambda: None, task_type=f"type{n}")
            await tm.execute_task(task_id, wait=True)
        metrics = await tm.get_metrics()
        assert sorted(metrics.tasks_by_type) == ["__other__", "type0", "type1", "type2"]
        assert metrics.tasks_by_type["__other__"] == {"completed": 197}
        assert await tm.cleanup_completed_tasks(max_age=0.0) == 200
        assert dict((await tm.get_metrics()).tasks_by_type) == {}  # the monitor heard it
        assert system._state is not None
        monitor = system._state.states["task_monitor"]
        assert (monitor.labels, dict(monitor.live), monitor.own_labels) == ({}, {}, 0)
        assert sorted(monitor.execution) == ["__other__"]
        assert sorted(monitor.by_type) == ["__other__"]


# -- 18b: numbers in the environment are ASCII -----------------------------------------------


@pytest.mark.parametrize(
    ("var", "raw", "message"),
    [
        (
            "ACTORFLOW_MAX_CONCURRENT_TASKS",
            "\u0663",  # ARABIC-INDIC DIGIT THREE: int() reads it as 3
            "MAX_CONCURRENT_TASKS must be an int >= 1 written in ASCII digits, got '\u0663' "
            "(from environment variable ACTORFLOW_MAX_CONCURRENT_TASKS)",
        ),
        (
            "ACTORFLOW_CALL_TIMEOUT",
            "\uff11.\uff15",  # FULLWIDTH 1.5: float() reads it as 1.5
            "CALL_TIMEOUT must be a finite number > 0 written in ASCII digits, got "
            "'\uff11.\uff15' (from environment variable ACTORFLOW_CALL_TIMEOUT)",
        ),
    ],
)
def test_numbers_from_the_environment_must_be_ascii(var: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(env={var: raw})
    assert str(raised.value) == message
    assert load_config(env={var: "3"}).as_dict()[var.removeprefix("ACTORFLOW_")] == 3
