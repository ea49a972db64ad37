"""What a user installs: the wheel and the sdist built from this tree, and that an
installed copy works where a source checkout is not around.

The distributions are built without build isolation (nothing is downloaded) from a copy
of the tree, so the checkout gets no ``build/`` or ``*.egg-info``. The installs go into
fresh venvs that see this interpreter's site-packages (its dependencies) through a
``.pth`` file, without running that environment's own ``.pth`` hooks (such as an
editable install of this very checkout).
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VERSION = "0.1.0"
DIST_INFO = f"actorflow-{VERSION}.dist-info"
README_TEXT = (ROOT / "README.md").read_text(encoding="utf-8")
COPY_IGNORES = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
)
USER_PROGRAM = """\
import asyncio

from actors import ActorSystem


async def main() -> None:
    async with ActorSystem() as system:
        info = await system.task_manager.get_task("t")
        reveal_type(info)
        status: str = info.status.value
        print(status)
        reveal_type(await system.task_manager.submit(fetch, 1))


def sync_code() -> None:
    with ActorSystem() as system:
        reveal_type(system.blocking.submit(parse, "<p>"))


async def fetch(page: int) -> str:
    return str(page)


def parse(html: str) -> list[str]:
    return [html]


asyncio.run(main())
"""
MYPY_SAYS = [
    'prog.py:9: note: Revealed type is "actors.core._types.TaskInfo"',
    'prog.py:12: note: Revealed type is "str"',
    'prog.py:17: note: Revealed type is "list[str]"',
    "Success: no issues found in 1 source file",
]
"""What mypy strict prints about `USER_PROGRAM` against an installed actorflow."""


def _env() -> dict[str, str]:
    """The environment for a subprocess that must see only what is installed."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1")
    return env


def _run(
    args: list[str | Path], cwd: Path, timeout: float = 50
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, (done.args, done.stdout[-3000:], done.stderr[-3000:])
    return done


def _venv(path: Path) -> Path:
    """A venv at ``path`` whose interpreter also sees this one's site-packages (for the
    dependencies); returns its python."""
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent))
    python = path / "bin" / "python"
    purelib = _ok(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], path)
    ).stdout.strip()
    parents = dict.fromkeys([*site.getsitepackages(), sysconfig.get_path("purelib")])
    Path(purelib, "_parent_site_packages.pth").write_text("\n".join(parents) + "\n")
    return python


def _pip_install(python: Path, *args: str | Path) -> None:
    _ok(
        _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", *args], ROOT)
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("source") / "actorflow"
    shutil.copytree(ROOT, target, ignore=COPY_IGNORES)
    return target


@pytest.fixture(scope="module")
def dists(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist): the sdist first, then the wheel built from the sdist."""
    out = tmp_path_factory.mktemp("dist")
    _ok(_run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source], source))
    [wheel] = out.glob("*.whl")
    [sdist] = out.glob("*.tar.gz")
    return wheel, sdist


@pytest.fixture(scope="module")
def wheel_python(dists: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    python = _venv(tmp_path_factory.mktemp("wheel") / "venv")
    _pip_install(python, dists[0])
    return python


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A project directory with a ``benchmarks`` package of its own, broken on purpose."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("raise ImportError('not ours')\n")
    (tmp_path / "benchmarks" / "__main__.py").write_text("raise ImportError('not ours')\n")
    return tmp_path


def _mypy(python: Path, where: Path) -> subprocess.CompletedProcess[str]:
    (where / "prog.py").write_text(USER_PROGRAM)
    (where / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    return _run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            "mypy.ini",
            "--cache-dir",
            where / ".mypy_cache",
            "--python-executable",
            python,
            "prog.py",
        ],
        where,
    )


def test_the_wheel_ships_no_generic_top_level_name(dists: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(dists[0]) as wheel:
        names = set(wheel.namelist())
        top_level = wheel.read(f"{DIST_INFO}/top_level.txt").decode().split()
        metadata = wheel.read(f"{DIST_INFO}/METADATA").decode()
        entry_points = wheel.read(f"{DIST_INFO}/entry_points.txt").decode()
    assert {name.split("/")[0] for name in names} == {
        "actors",
        "supervisors",
        "actorflow_benchmarks",
        DIST_INFO,
    }
    assert sorted(top_level) == ["actorflow_benchmarks", "actors", "supervisors"]
    assert {"actors/py.typed", "supervisors/py.typed"} <= names
    assert {"actorflow_benchmarks/__main__.py", "actorflow_benchmarks/_workloads.py"} <= names
    assert [n for n in names if re.fullmatch(rf"{DIST_INFO}/(licenses/)?LICENSE", n)]
    assert "actorflow = actors.__main__:main" in entry_points
    for line in (
        "License: MIT",
        "Classifier: Programming Language :: Python :: 3.11",
        "Classifier: Programming Language :: Python :: 3.12",
        "Classifier: Programming Language :: Python :: 3.13",
        "Project-URL: Source, https://github.com/actorflow/actorflow",
        "Provides-Extra: demo",
    ):
        assert line in metadata.splitlines(), line


def test_the_sdist_carries_what_the_readme_links_to(dists: tuple[Path, Path]) -> None:
    with tarfile.open(dists[1]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    linked = set(re.findall(r"`((?:examples|docs|benchmarks|tests)/[\w./-]*)`", README_TEXT))
    assert {"examples/fastapi_service.py", "docs/", "benchmarks/"} <= linked
    for path in linked:
        assert any(name == path or name.startswith(path.rstrip("/") + "/") for name in names), path
    assert {"LICENSE", "README.md", "setup.cfg", "pyproject.toml", "tests/conftest.py"} <= names


def test_actorflow_bench_from_a_wheel_ignores_a_local_benchmarks_folder(
    wheel_python: Path, elsewhere: Path
) -> None:
    bindir = wheel_python.parent
    where = _ok(_run([wheel_python, "-c", "import actors; print(actors.__file__)"], elsewhere))
    assert Path(where.stdout.strip()).is_relative_to(bindir.parent)
    for command in ([bindir / "actorflow"], [wheel_python, "-m", "actors"]):
        done = _ok(_run([*command, "bench", "--help"], elsewhere))
        assert done.stdout.startswith("usage: actorflow bench [-h] [--scenario NAME]"), done.stdout
        assert done.stderr == ""
    version = _ok(_run([bindir / "actorflow", "--version"], elsewhere))
    assert version.stdout == f"actorflow {VERSION}\n"


def test_mypy_in_a_user_project_sees_the_installed_wheel(
    wheel_python: Path, tmp_path: Path
) -> None:
    done = _mypy(wheel_python, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == MYPY_SAYS


def test_mypy_in_a_user_project_sees_a_strict_editable_install(
    source: Path, tmp_path: Path
) -> None:
    """The README's advice for type checking against a checkout."""
    python = _venv(tmp_path / "venv")
    _pip_install(
        python, "--no-build-isolation", "--config-settings", "editable_mode=strict", "-e", source
    )
    project = tmp_path / "project"
    project.mkdir()
    done = _mypy(python, project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == MYPY_SAYS
