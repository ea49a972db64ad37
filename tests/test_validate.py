"""Registration arguments: normalised on success, named and shown on failure."""

from __future__ import annotations

import functools
import inspect
import math
import types
from collections import OrderedDict
from typing import Any

import pytest
import tenacity

from actors.core._errors import ActorsError, InvalidTaskError
from actors.core._types import TaskPriority
from actors.engine._results import result_of
from actors.engine._validate import (
    TaskSpec,
    is_coroutine_callable,
    validate_plain,
    validate_registration,
    validate_task_id,
    validate_timeout,
)


def work(x: int = 0) -> int:
    return x


async def async_work(x: int = 0) -> int:
    return x


class AsyncCallable:
    async def __call__(self) -> None:
        return None

    async def method(self) -> None:
        return None

    def sync_method(self) -> None:
        return None


class SyncCallable:
    def __call__(self) -> None:
        return None


def test_defaults() -> None:
    spec = validate_registration("job", work)
    assert spec == TaskSpec(
        task_id=None,
        name="job",
        func=work,
        args=(),
        kwargs={},
        task_type="default",
        description="",
        metadata=types.MappingProxyType({}),
        priority=TaskPriority.NORMAL,
        dependencies=(),
        max_retries=0,
        retry_delay=0.0,
        retry_wait=None,
        timeout=None,
        is_coroutine=False,
    )
    assert isinstance(spec.metadata, types.MappingProxyType)
    assert type(spec.retry_delay) is float


def test_every_argument_normalised() -> None:
    wait = tenacity.wait_fixed(2)
    kwargs = OrderedDict(x=1)
    metadata = {"owner": "ops"}
    spec = validate_registration(
        "job",
        async_work,
        [1, 2],
        kwargs,
        task_type="etl",
        description="moves data",
        metadata=metadata,
        priority=3,
        dependencies=iter(["a", "b", "a", "c", "b"]),
        max_retries=2,
        retry_delay=1,
        retry_wait=wait,
        timeout=5,
        task_id="job-1",
    )
    assert spec.task_id == "job-1"
    assert spec.args == (1, 2)
    assert spec.kwargs == {"x": 1}
    assert type(spec.kwargs) is dict
    assert spec.kwargs is not kwargs
    assert spec.task_type == "etl"
    assert spec.description == "moves data"
    assert spec.metadata == {"owner": "ops"}
    assert spec.priority is TaskPriority.CRITICAL
    assert spec.dependencies == ("a", "b", "c")
    assert spec.max_retries == 2
    assert spec.retry_delay == 1.0
    assert type(spec.retry_delay) is float
    assert spec.retry_wait is wait
    assert spec.timeout == 5.0
    assert type(spec.timeout) is float
    assert spec.is_coroutine is True
    # The caller's containers are copied: changing them later changes nothing.
    kwargs["y"] = 2
    metadata["owner"] = "someone else"
    assert spec.kwargs == {"x": 1}
    assert spec.metadata == {"owner": "ops"}
    with pytest.raises(TypeError):
        spec.metadata["owner"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):  # a named tuple: immutable
        spec.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("func", [work, async_work])
@pytest.mark.parametrize("kwargs", [None, {"x": 1}])
def test_options_left_as_defaults_give_the_spec_the_full_check_gives(
    func: Any, kwargs: dict[str, Any] | None
) -> None:
    # retry_delay=0 (an int) takes every option through its check; the defaults do not.
    quick = validate_registration("job", func, [1], kwargs)
    checked = validate_registration("job", func, [1], kwargs, retry_delay=0)
    assert quick._asdict() == checked._asdict()
    assert [type(value) for value in quick] == [type(value) for value in checked]
    assert quick.is_coroutine is (func is async_work)
    assert quick.args == (1,)
    assert quick.kwargs == ({} if kwargs is None else kwargs)
    assert quick.metadata == {}
    assert quick.priority is TaskPriority.NORMAL
    assert quick.on_dependency_failure == "cancel"


def test_a_placeholder_with_default_options_makes_a_dependency() -> None:
    spec = validate_registration("job", work, (result_of("a"),), {"y": [result_of("b")]})
    assert spec.dependencies == ("a", "b")
    assert spec.results == ("a", "b")


async def _async_generator() -> Any:
    yield 1


@pytest.mark.parametrize(
    "func",
    [work, async_work, functools.partial(async_work), AsyncCallable(), AsyncCallable().method],
)
@pytest.mark.parametrize(
    "args",
    [(), (1, "a"), [1], ((1,),), ([result_of("a")],), (result_of("a"), {"b": result_of("b")})],
)
def test_validate_plain_gives_the_spec_of_every_option_checked(func: Any, args: Any) -> None:
    # metadata={} takes every option through its check (`validate_plain` takes none).
    checked = validate_registration("job", func, args, metadata={})
    plain = validate_plain("job", func, args)
    assert plain._asdict() == checked._asdict()
    assert [type(value) for value in plain] == [type(value) for value in checked]
    assert plain.metadata == {}
    assert plain.kwargs == {}
    assert plain.kwargs is not validate_plain("job", func, args).kwargs  # a fresh dict each


@pytest.mark.parametrize(
    ("name", "func", "args", "message"),
    [
        ("", async_work, (), r"name must be a non-empty str, got ''"),
        (b"job", async_work, (), r"name must be a non-empty str, got b'job'"),
        ("job", 42, (), r"func must be callable, got 42; .*"),
        ("job", _async_generator, (), r"func <function .+> is an async generator function: .*"),
        ("job", async_work, 5, r"args must be a tuple or a list, got 5; .*"),
        ("job", async_work, "ab", r"args must be a tuple or a list, got 'ab'; .*"),
        ("", 42, 5, r"name must be a non-empty str, got ''"),
    ],
)
def test_validate_plain_refuses_as_the_full_check_does(
    name: Any, func: Any, args: Any, message: str
) -> None:
    with pytest.raises(InvalidTaskError, match=f"^{message}$"):
        validate_registration(name, func, args, metadata={})
    with pytest.raises(InvalidTaskError, match=f"^{message}$"):
        validate_plain(name, func, args)


class _LooksLikeCancel:
    def __eq__(self, other: object) -> bool:
        return other == "cancel"

    __hash__ = object.__hash__


def test_an_option_equal_to_its_default_but_not_of_its_type_is_refused() -> None:
    odd = _LooksLikeCancel()
    with pytest.raises(InvalidTaskError, match=r"^on_dependency_failure must be 'cancel'"):
        validate_registration("job", work, on_dependency_failure=odd)  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskError, match=r"^max_retries must be an int >= 0, got True$"):
        validate_registration("job", work, max_retries=True)


def test_priority_member_kept() -> None:
    assert validate_registration("j", work, priority=TaskPriority.LOW).priority is TaskPriority.LOW


def test_combined_tenacity_wait_is_accepted() -> None:
    wait = tenacity.wait_fixed(1) + tenacity.wait_random(0, 1)
    assert validate_registration("j", work, retry_wait=wait).retry_wait is wait


BAD = [
    ({"name": ""}, r"name must be a non-empty str, got ''"),
    ({"name": None}, r"name must be a non-empty str, got None"),
    ({"name": b"job"}, r"name must be a non-empty str, got b'job'"),
    (
        {"func": 42},
        r"func must be callable, got 42; pass the function itself, not the result of calling it",
    ),
    (
        {"args": 5},
        r"args must be a tuple or a list, got 5; for one positional argument pass args=\(value,\)",
    ),
    (
        {"args": "ab"},
        r"args must be a tuple or a list, got 'ab'; "
        r"for one positional argument pass args=\(value,\)",
    ),
    ({"kwargs": [("x", 1)]}, r"kwargs must be a mapping or None, got \[\('x', 1\)\]"),
    (
        {"kwargs": {1: "x"}},
        r"kwargs keys must be str \(parameter names\), got 1 in \{1: 'x'\}",
    ),
    ({"task_type": ""}, r"task_type must be a non-empty str, got ''"),
    ({"task_type": None}, r"task_type must be a non-empty str, got None"),
    ({"description": None}, r"description must be a str, got None"),
    ({"metadata": ["a"]}, r"metadata must be a mapping or None, got \['a'\]"),
    (
        {"priority": 7},
        r"priority must be a TaskPriority or one of its values 0, 1, 2, 3, got 7",
    ),
    (
        {"priority": True},
        r"priority must be a TaskPriority or one of its values 0, 1, 2, 3, got True",
    ),
    (
        {"priority": "high"},
        r"priority must be a TaskPriority or one of its values 0, 1, 2, 3, got 'high'",
    ),
    (
        {"priority": 1.0},
        r"priority must be a TaskPriority or one of its values 0, 1, 2, 3, got 1.0",
    ),
    (
        {"dependencies": "a"},
        r"dependencies must be an iterable of task ids, not a str, got 'a'; "
        r"for one dependency pass a tuple: dependencies=\('a',\)",
    ),
    ({"dependencies": 3}, r"dependencies must be an iterable of task ids, got 3"),
    ({"dependencies": ["a", ""]}, r"each dependency must be a non-empty str task id, got ''"),
    ({"dependencies": ["a", 1]}, r"each dependency must be a non-empty str task id, got 1"),
    ({"max_retries": -1}, r"max_retries must be an int >= 0, got -1"),
    ({"max_retries": True}, r"max_retries must be an int >= 0, got True"),
    ({"max_retries": 1.0}, r"max_retries must be an int >= 0, got 1.0"),
    ({"max_retries": "3"}, r"max_retries must be an int >= 0, got '3'"),
    ({"retry_delay": -0.5}, r"retry_delay must be a finite number of seconds >= 0, got -0.5"),
    ({"retry_delay": math.inf}, r"retry_delay must be a finite number of seconds >= 0, got inf"),
    ({"retry_delay": math.nan}, r"retry_delay must be a finite number of seconds >= 0, got nan"),
    ({"retry_delay": False}, r"retry_delay must be a finite number of seconds >= 0, got False"),
    ({"retry_delay": "1"}, r"retry_delay must be a finite number of seconds >= 0, got '1'"),
    (
        {"retry_delay": 10**400},
        r"retry_delay must be a finite number of seconds >= 0, got 1000+",
    ),
    (
        {"retry_wait": 1.0},
        r"retry_wait must be a tenacity wait strategy \(such as "
        r"tenacity.wait_exponential\(\)\) or None, got 1.0",
    ),
    (
        {"retry_wait": lambda state: 1.0},
        r"retry_wait must be a tenacity wait strategy \(such as "
        r"tenacity.wait_exponential\(\)\) or None, got <function .+>",
    ),
    ({"timeout": 0}, r"timeout must be a finite number of seconds > 0 or None, got 0"),
    ({"timeout": -1.0}, r"timeout must be a finite number of seconds > 0 or None, got -1.0"),
    ({"timeout": math.inf}, r"timeout must be a finite number of seconds > 0 or None, got inf"),
    ({"timeout": True}, r"timeout must be a finite number of seconds > 0 or None, got True"),
    ({"task_id": ""}, r"task_id must be a non-empty str, got ''"),
    ({"task_id": 5}, r"task_id must be a non-empty str, got 5"),
    (
        {"task_id": "me", "dependencies": ["a", "me"]},
        r"task 'me' cannot depend on itself; remove 'me' from dependencies",
    ),
]


@pytest.mark.parametrize(("changes", "message"), BAD)
def test_bad_argument_is_named_and_shown(changes: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"name": "job", "func": work, **changes}
    with pytest.raises(InvalidTaskError, match=f"^{message}$") as caught:
        validate_registration(**arguments)
    assert isinstance(caught.value, ActorsError)
    assert isinstance(caught.value, ValueError)


def test_first_bad_argument_in_signature_order_is_reported() -> None:
    with pytest.raises(InvalidTaskError, match=r"^func must be callable, got None; .*$"):
        validate_registration("job", None, args=5, max_retries=-1, task_id="")
    with pytest.raises(InvalidTaskError, match=r"^max_retries must be an int >= 0, got -1$"):
        validate_registration("job", work, max_retries=-1, timeout=0, task_id="")


def test_dependencies_accept_any_iterable_of_ids() -> None:
    assert validate_registration("j", work, dependencies={"a": 1}).dependencies == ("a",)
    assert validate_registration("j", work, dependencies=("b", "a")).dependencies == ("b", "a")
    gen = (x for x in ["c", "c"])
    assert validate_registration("j", work, dependencies=gen).dependencies == ("c",)


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (work, False),
        (async_work, True),
        (functools.partial(async_work, 1), True),
        (functools.partial(functools.partial(async_work), 1), True),
        (functools.partial(work, 1), False),
        (AsyncCallable(), True),
        (functools.partial(AsyncCallable()), True),
        (AsyncCallable().method, True),
        (AsyncCallable().sync_method, False),
        (AsyncCallable, False),  # calling the class builds an instance, not a coroutine
        (SyncCallable(), False),
        (print, False),
        (lambda: None, False),
        (len, False),
    ],
)
def test_coroutine_detection(func: Any, expected: bool) -> None:
    assert is_coroutine_callable(func) is expected
    assert validate_registration("j", func).is_coroutine is expected


@pytest.mark.skipif(
    not hasattr(inspect, "markcoroutinefunction"), reason="inspect marks are new in Python 3.12"
)
def test_a_plain_function_marked_as_a_coroutine_function_is_one() -> None:
    def marked() -> Any:
        return async_work()

    mark: Any = getattr(inspect, "markcoroutinefunction")  # noqa: B009  (3.12+)
    mark(marked)
    assert is_coroutine_callable(marked) is True
    assert validate_plain("j", marked, ()).is_coroutine is True


def test_validate_task_id() -> None:
    assert validate_task_id("abc") == "abc"
    with pytest.raises(InvalidTaskError, match=r"^task_id must be a non-empty str, got ''$"):
        validate_task_id("")
    with pytest.raises(InvalidTaskError, match=r"^depends_on must be a non-empty str, got None$"):
        validate_task_id(None, "depends_on")


def test_validate_timeout() -> None:
    assert validate_timeout(None) is None
    assert validate_timeout(2) == 2.0
    assert type(validate_timeout(2)) is float
    assert validate_timeout(0.5) == 0.5
    with pytest.raises(
        InvalidTaskError,
        match=r"^timeout must be a finite number of seconds > 0 or None, got -3$",
    ):
        validate_timeout(-3)
    with pytest.raises(
        InvalidTaskError,
        match=r"^timeout must be a finite number of seconds > 0 or None, got '1'$",
    ):
        validate_timeout("1")


def test_validate_registration_takes_register_tasks_arguments_in_its_order() -> None:
    # The outbox passes a register_task call's arguments on positionally
    # (`UnifiedTaskManager._build_register`): the two signatures must stay in step.
    from actors import UnifiedTaskManager

    theirs = list(inspect.signature(UnifiedTaskManager.register_task).parameters)
    mine = list(inspect.signature(validate_registration).parameters)
    assert theirs[1:] == [*mine, "durable"]
