"""The README tells the truth: its commands, its configuration table, its code."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import re
import types
from pathlib import Path
from typing import Any

import pytest

import actors
from actors import Config

WAIT = 30.0

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    commands = re.findall(r"^python3 -m pip install .*$", README, flags=re.MULTILINE)
    assert commands[:2] == [
        "python3 -m pip install -e '.[dev]' && actorflow demo      # the main job: see it run",
        "python3 -m pip install -e '.[dev]' && python3 -m pytest   # the test suite",
    ]


def test_the_configuration_table_lists_every_key() -> None:
    table_keys = re.findall(r"^\| `([A-Z_]+)` \|", README, flags=re.MULTILINE)
    assert table_keys == [f.name for f in dataclasses.fields(Config)]


def test_the_supervision_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    [example] = [b for b in blocks if b.startswith("from tenacity import wait_exponential_jitter")]
    exec(compile(example, "<README supervision example>", "exec"), {})


# -- every Python block of the README runs ------------------------------------------------

BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)

FILLS: dict[str, list[tuple[str, str]]] = {
    # The tour's stubs get bodies (no network in a test).
    "def parse(html: str) -> dict:": [
        (
            "async def fetch(url: str) -> str:             # coroutines run on your event loop\n"
            "    ...\n",
            "async def fetch(url: str) -> str:\n    return f'<title>{url}</title>'\n",
        ),
        (
            "def parse(html: str) -> dict:                 # plain functions run on the thread "
            "pool\n    ...\n",
            "def parse(html: str) -> dict:\n"
            "    return {'title': html.removeprefix('<title>').removesuffix('</title>')}\n",
        ),
    ],
    # The event loop of "Operating it" stops after its first event.
    "async for event in tm.events(": [
        (
            "    print(event.kind, event.task_id, event.at) # retrying, completed, failed, "
            "cancelled,\n",
            "    print(event.kind, event.task_id, event.at)\n    break\n",
        )
    ],
}
"""Per block (found by a part of its text): replacements that fill its stubs in. Each
replaced text must be in the block: a README edit that moves it fails the test."""

PRINTS = {
    "def parse(html: str) -> dict:": re.escape("{'title': 'https://example.org'}"),
    "await tm.submit(fetch,": re.escape("<html>https://example.org</html> 1") + "$",
    "async for event in tm.events(": r"(registered|waiting|queued|started|completed) \S+ [\d.]+$",
}
"""Per block: a pattern that a line its run prints matches."""


def _name(block: str) -> str:
    return block.splitlines()[0][:60]


def _filled(block: str) -> str:
    for key, fills in FILLS.items():
        if key in block:
            for old, new in fills:
                assert old in block, f"the README block {_name(block)!r} no longer has {old!r}"
                block = block.replace(old, new)
    return block


async def _noop() -> None:
    pass


async def _feed(tm: actors.UnifiedTaskManager) -> None:
    """Tasks of type "io", one after the other, for a block that follows events."""
    while True:
        task_id = await tm.register_task("feed", _noop, task_type="io")
        await tm.execute_task(task_id, wait=True)


async def _run(code: types.CodeType, follows_events: bool) -> None:
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette

    async with actors.ActorSystem({"CLEANUP_INTERVAL": 0}) as system:
        tm = system.task_manager
        namespace: dict[str, Any] = {
            "__name__": "readme",
            "actors": actors,
            "system": system,
            "tm": tm,
            "REGISTRY": CollectorRegistry(),
            "app": Starlette(),
        }
        feeder = None
        if follows_events:  # the metrics it reads know the task type "io" already
            await tm.execute_task(await tm.register_task("first", _noop, task_type="io"), True)
            feeder = asyncio.ensure_future(_feed(tm))
        try:
            if code.co_flags & inspect.CO_COROUTINE:  # top-level await: on this loop
                await asyncio.wait_for(eval(code, namespace), WAIT)
            else:  # plain code (it may call asyncio.run): in a thread of its own
                await asyncio.wait_for(asyncio.to_thread(exec, code, namespace), WAIT)
        finally:
            if feeder is not None:
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)


def test_the_fills_match_the_blocks() -> None:
    for key in [*FILLS, *PRINTS]:
        assert sum(key in block for block in BLOCKS) == 1, key


@pytest.mark.parametrize("block", BLOCKS, ids=_name)
def test_every_python_block_runs(block: str, capsys: pytest.CaptureFixture[str]) -> None:
    source = _filled(block)
    code = compile(
        source, f"<README: {_name(block)}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    asyncio.run(_run(code, "tm.events(" in source))
    printed = capsys.readouterr().out.splitlines()
    for key, first in PRINTS.items():
        if key in block:
            assert any(re.match(first, line) for line in printed), printed[-5:]
