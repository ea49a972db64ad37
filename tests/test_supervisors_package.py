"""The package's surface: a sorted, resolvable ``__all__``, and no import of ``actors``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import supervisors
import supervisors.testing


def isort_style(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: CONSTANTS, then CamelCase, then the rest, each alphabetical."""
    if name.isupper():
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("module", [supervisors, supervisors.testing], ids=lambda m: m.__name__)
def test_all_is_sorted_and_every_name_resolves(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert names == sorted(names, key=isort_style)
    assert len(set(names)) == len(names)
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == []


def test_the_documented_public_names_are_exported() -> None:
    documented = {
        "Supervisor",
        "ChildSpec",
        "Strategy",
        "Restart",
        "RestartPolicy",
        "SupervisedActor",
        "Kill",
        "ChildHandle",
        "SupervisorError",
        "RestartIntensityExceeded",
    }
    assert documented <= set(supervisors.__all__)


def test_supervisors_imports_nothing_from_actors() -> None:
    code = (
        "import supervisors, supervisors.testing, sys; "
        "leaked = sorted(m for m in sys.modules if m == 'actors' or m.startswith('actors.')); "
        "assert not leaked, leaked"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")
