"""What mypy sees when a caller uses ``submit`` and ``map``: checked by ``mypy`` (listed in
pyproject's ``[tool.mypy] files``), never run by pytest (nothing here is a test function).

Each ``assert_type`` pins a caller's type; each ``# type: ignore[...]`` pins a call that
mypy must refuse (strict mode reports an ignore that is no longer needed). The blocking
twin's methods are derived from the async ones (``actors.api._blocking._blocking``), so
its lines here check that the derivation keeps every overload.
"""

from __future__ import annotations

from typing import assert_type

from actors import BlockingTaskManager, UnifiedTaskManager


async def double(x: int) -> int:
    return 2 * x


def triple(x: int) -> int:
    return 3 * x


def label(x: int, unit: str) -> str:
    return f"{x} {unit}"


async def async_client(tm: UnifiedTaskManager, flag: bool) -> None:
    assert_type(await tm.submit(double, 1), int)
    assert_type(await tm.submit(triple, 1, task_id="t"), int)
    assert_type(await tm.submit(label, 1, "kg", kwargs=None), str)
    assert_type(await tm.map(double, [1, 2]), list[int])
    assert_type(await tm.map(triple, [1, 2], name="t"), list[int])
    assert_type(await tm.map(triple, [1, 2], return_exceptions=False), list[int])
    assert_type(await tm.map(double, [1, 2], return_exceptions=True), list[int | BaseException])
    assert_type(await tm.map(triple, range(2), return_exceptions=True), list[int | BaseException])
    assert_type(await tm.map(triple, [1], return_exceptions=flag), list[int | BaseException])

    await tm.submit(label, "1", "kg")  # type: ignore[arg-type, call-arg]
    await tm.submit(triple, 1, unknown=1)  # type: ignore[call-overload]
    await tm.map(triple, ["a"])  # type: ignore[arg-type]
    await tm.map(triple, [1], task_id="x")  # type: ignore[call-overload]
    await tm.map(triple, [1], return_exceptions=1)  # type: ignore[call-overload]


def blocking_client(blocking: BlockingTaskManager, flag: bool) -> None:
    assert_type(blocking.submit(double, 1), int)
    assert_type(blocking.submit(triple, 1, task_id="t"), int)
    assert_type(blocking.submit(label, 1, "kg"), str)
    assert_type(blocking.map(double, [1, 2]), list[int])
    assert_type(blocking.map(triple, [1, 2]), list[int])
    assert_type(blocking.map(double, [1, 2], return_exceptions=True), list[int | BaseException])
    assert_type(blocking.map(triple, [1, 2], return_exceptions=True), list[int | BaseException])
    assert_type(blocking.map(triple, [1], return_exceptions=flag), list[int | BaseException])

    blocking.submit(label, "1", "kg")  # type: ignore[arg-type, call-arg]
    blocking.map(triple, ["a"])  # type: ignore[arg-type]
    blocking.map(triple, [1], return_exceptions=1)  # type: ignore[call-overload]
