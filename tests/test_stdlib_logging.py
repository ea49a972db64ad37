"""actorflow's log lines through the standard `logging` module, and `TaskContextFilter`."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from loguru import logger

from actors import ActorSystem, ConfigError, TaskContextFilter, configure_logging
from actors.core import _stdlib_logging as stdlib_logging

if TYPE_CHECKING:
    from loguru import Logger


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Capture]:
    """A handler on the ``actors``, ``supervisors`` and ``app`` loggers (level 1).

    Loguru's real default handler is left alone: `_stderr_id` is None here, as if the
    application had removed it (`test_the_default_loguru_handler_...` covers it).
    """
    monkeypatch.setattr(stdlib_logging, "_stderr_id", None)
    handler = Capture()
    loggers = [logging.getLogger(name) for name in ("actors", "supervisors", "app")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.addHandler(handler)
        log.setLevel(1)
    try:
        yield handler
    finally:
        configure_logging(False)
        for log, level in zip(loggers, levels, strict=True):
            log.removeHandler(handler)
            log.setLevel(level)


def as_actors(name: str = "actors.probe") -> Logger:
    """The loguru logger, with records named as if logged inside ``name``."""
    return logger.patch(lambda record: record.update(name=name))


async def noop() -> None:
    return None


async def fails() -> None:
    raise ValueError("boom")


async def test_lifecycle_lines_arrive_through_logging_with_levels_and_extras(
    captured: Capture,
) -> None:
    async with ActorSystem() as system:
        tm = system.task_manager
        quiet = await tm.register_task("quiet", noop)
        await tm.execute_task(quiet, wait=True)
        assert [r for r in captured.records if getattr(r, "task_id", None) == quiet] == []
        configure_logging(stdlib=True)
        ok = await tm.register_task("ok", noop, task_type="demo")
        await tm.execute_task(ok, wait=True)
        bad = await tm.register_task("bad", fails)
        with pytest.raises(ValueError, match=r"^boom$"):
            await tm.execute_task(bad, wait=True)
    lines = [
        (r.name, r.levelno, r.levelname, r.task_id, r.task_name, r.task_type, r.getMessage())  # type: ignore[attr-defined]
        for r in captured.records
        if getattr(r, "task_id", None) in (ok, bad)
    ]
    assert lines == [
        ("actors.engine._engine", 20, "INFO", ok, "ok", "demo", "task 'ok' registered"),
        ("actors.engine._engine", 20, "INFO", ok, "ok", "demo", "task 'ok' started (attempt 1)"),
        ("actors.engine._engine", 20, "INFO", ok, "ok", "demo", "task 'ok' completed"),
        ("actors.engine._engine", 20, "INFO", bad, "bad", "default", "task 'bad' registered"),
        (
            "actors.engine._engine",
            20,
            "INFO",
            bad,
            "bad",
            "default",
            "task 'bad' started (attempt 1)",
        ),
        (
            "actors.engine._engine",
            30,
            "WARNING",
            bad,
            "bad",
            "default",
            "task 'bad' failed: ValueError('boom')",
        ),
    ]


def test_levels_map_to_numbers_and_loguru_names(captured: Capture) -> None:
    configure_logging(stdlib=True)
    probe = as_actors()
    probe.trace("t")
    probe.debug("d")
    probe.info("i")
    probe.success("s")
    probe.warning("w")
    probe.error("e")
    probe.critical("c")
    assert [(r.name, r.levelno, r.levelname, r.getMessage()) for r in captured.records] == [
        ("actors.probe", 5, "TRACE", "t"),
        ("actors.probe", 10, "DEBUG", "d"),
        ("actors.probe", 20, "INFO", "i"),
        ("actors.probe", 25, "SUCCESS", "s"),
        ("actors.probe", 30, "WARNING", "w"),
        ("actors.probe", 40, "ERROR", "e"),
        ("actors.probe", 50, "CRITICAL", "c"),
    ]


def test_the_stdlib_logger_level_decides_and_exceptions_travel(captured: Capture) -> None:
    configure_logging(stdlib=True)
    logging.getLogger("supervisors").setLevel(logging.WARNING)
    probe = as_actors("supervisors._supervisor").bind(actor="root")
    probe.info("dropped by the stdlib level")
    try:
        raise KeyError("k")
    except KeyError:
        probe.exception("restart failed")
    assert [(r.levelno, r.getMessage(), r.actor) for r in captured.records] == [  # type: ignore[attr-defined]
        (40, "restart failed", "root")
    ]
    exc_info = captured.records[0].exc_info
    assert exc_info is not None
    assert (exc_info[0], str(exc_info[1])) == (KeyError, "'k'")


def test_only_actorflow_records_are_forwarded(captured: Capture) -> None:
    configure_logging(stdlib=True)
    as_actors("app.module").info("the app's own loguru line")
    as_actors("actorsx").info("a package that only starts like ours")
    as_actors("supervisors").info("ours")
    assert [r.getMessage() for r in captured.records] == ["ours"]


def test_turning_it_off_removes_the_sink(captured: Capture) -> None:
    configure_logging(stdlib=True)
    configure_logging(stdlib=True)  # twice: still one sink
    as_actors().info("one")
    sink_id = stdlib_logging._sink_id
    assert sink_id is not None
    configure_logging(True)  # loguru's own handlers again
    assert stdlib_logging._sink_id is None
    with pytest.raises(ValueError, match=rf"There is no existing handler with id {sink_id}"):
        logger.remove(sink_id)
    as_actors().info("two")
    configure_logging(stdlib=True)
    configure_logging(False)
    assert stdlib_logging._sink_id is None
    as_actors().info("three")
    assert [r.getMessage() for r in captured.records] == ["one"]


def test_bad_arguments_change_nothing(captured: Capture) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^configure_logging takes booleans: enabled=True, stdlib='yes'; pass True or False$",
    ):
        configure_logging(True, stdlib="yes")  # type: ignore[arg-type]
    assert stdlib_logging._sink_id is None


def test_the_default_loguru_handler_does_not_print_actorflow_lines_twice(
    monkeypatch: pytest.MonkeyPatch, captured: Capture
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    default = logger.add(stderr, format="{name}: {message}")  # stands in for handler 0
    monkeypatch.setattr(stdlib_logging, "_stderr_id", default)
    try:
        configure_logging(stdlib=True)
        as_actors().info("from actorflow")
        as_actors("app").info("from the app")
        replacement = stdlib_logging._stderr_id
        assert replacement not in (None, default)
        with pytest.raises(ValueError, match=rf"There is no existing handler with id {default}"):
            logger.remove(default)
        configure_logging(False)
        restored = stdlib_logging._stderr_id
        assert restored not in (None, default, replacement)
        configure_logging(True)
        as_actors().info("actorflow on loguru again")
    finally:
        if stdlib_logging._stderr_id is not None:
            logger.remove(stdlib_logging._stderr_id)
    # loguru's default format: "<time> | <level> | <name>:<function>:<line> - <message>"
    printed = [
        (line.split(" | ")[2].partition(":")[0], line.rpartition(" - ")[2])
        for line in stderr.getvalue().splitlines()
    ]
    assert printed == [("app", "from the app"), ("actors.probe", "actorflow on loguru again")]
    assert [r.getMessage() for r in captured.records] == ["from actorflow"]


@pytest.mark.parametrize("backend", ["new", "old"])
async def test_the_filter_gives_app_logging_the_task_context(
    backend: str, captured: Capture
) -> None:
    captured.addFilter(TaskContextFilter())
    app = logging.getLogger("app")

    async def in_coroutine() -> None:
        app.info("in a coroutine")

    def in_thread() -> None:
        app.info("in a pool thread")

    async with ActorSystem({"USE_NEW_TASK_SYSTEM": backend == "new"}) as system:
        tm = system.task_manager
        coro = await tm.register_task("coro", in_coroutine, task_type="io")
        thread = await tm.register_task("thread", in_thread, task_type="cpu")
        await tm.execute_task(coro, wait=True)
        await tm.execute_task(thread, wait=True)
        await asyncio.to_thread(app.info, "outside any task")
    assert [
        (r.getMessage(), r.task_id, r.task_name, r.task_type)  # type: ignore[attr-defined]
        for r in captured.records
    ] == [
        ("in a coroutine", coro, "coro", "io"),
        ("in a pool thread", thread, "thread", "cpu"),
        ("outside any task", None, None, None),
    ]
