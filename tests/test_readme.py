"""The README tells the truth: its commands, its configuration table, its code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from actors import Config

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
