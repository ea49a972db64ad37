"""Configuration: layers, parsing, and errors that name the key, the value and the source."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import DURATION_KEYS, PERCENT_KEYS

from actors import ActorSystem, journal
from actors.core import _config
from actors.core._config import BACKENDS, Config, load_config
from actors.core._errors import ActorsError, ConfigError, InvalidTaskError

DEFAULTS_WITHOUT_WORKERS: dict[str, Any] = {
    "USE_NEW_TASK_SYSTEM": True,
    "MAX_CONCURRENT_TASKS": 100,
    "THREAD_POOL_BACKEND": "thread",
    "DASK_SCHEDULER_ADDRESS": None,
    "RESTART_MAX_RESTARTS": 10,
    "RESTART_WITHIN_SECONDS": 5.0,
    "RESTART_BACKOFF_INITIAL": 0.01,
    "RESTART_BACKOFF_MAX": 5.0,
    "RESTART_RESET_AFTER": 10.0,
    "CLEANUP_INTERVAL": 60.0,
    "CLEANUP_MAX_AGE": 3600.0,
    "MAX_FINISHED_TASKS": 10_000,
    "MAILBOX_BUFFER_CAPACITY": 1000,
    "CALL_TIMEOUT": 30.0,
    "SHUTDOWN_TIMEOUT": 10.0,
    "RESOURCE_CHECK_INTERVAL": 0.0,
    "CPU_HIGH_PERCENT": 85.0,
    "MEMORY_HIGH_PERCENT": 85.0,
    "CPU_CRITICAL_PERCENT": 95.0,
    "MEMORY_CRITICAL_PERCENT": 95.0,
    "EVENT_BUFFER_SIZE": 1000,
    "BREAKER_FAILURE_THRESHOLD": 5,
    "BREAKER_RECOVERY_TIMEOUT": 30.0,
    "BREAKER_HALF_OPEN_MAX_CALLS": 1,
    "METRICS_HISTOGRAM_BUCKETS": (
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
        30.0,
        60.0,
        300.0,
    ),
    "DASHBOARD_TOKEN": None,
    "METRICS_MAX_TASK_TYPES": 100,
    "JOURNAL_PATH": None,
    "JOURNAL_SYNC": "normal",
    "JOURNAL_SERIALIZER": "json",
    "MAX_RECOVERIES": 3,
}

KEYS = [
    "USE_NEW_TASK_SYSTEM",
    "MAX_CONCURRENT_TASKS",
    "MAX_THREAD_WORKERS",
    "THREAD_POOL_BACKEND",
    "DASK_SCHEDULER_ADDRESS",
    "RESTART_MAX_RESTARTS",
    "RESTART_WITHIN_SECONDS",
    "RESTART_BACKOFF_INITIAL",
    "RESTART_BACKOFF_MAX",
    "RESTART_RESET_AFTER",
    "CLEANUP_INTERVAL",
    "CLEANUP_MAX_AGE",
    "MAX_FINISHED_TASKS",
    "MAILBOX_BUFFER_CAPACITY",
    "CALL_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "RESOURCE_CHECK_INTERVAL",
    "CPU_HIGH_PERCENT",
    "MEMORY_HIGH_PERCENT",
    "CPU_CRITICAL_PERCENT",
    "MEMORY_CRITICAL_PERCENT",
    "EVENT_BUFFER_SIZE",
    "BREAKER_FAILURE_THRESHOLD",
    "BREAKER_RECOVERY_TIMEOUT",
    "BREAKER_HALF_OPEN_MAX_CALLS",
    "METRICS_HISTOGRAM_BUCKETS",
    "DASHBOARD_TOKEN",
    "METRICS_MAX_TASK_TYPES",
    "JOURNAL_PATH",
    "JOURNAL_SYNC",
    "JOURNAL_SERIALIZER",
    "MAX_RECOVERIES",
]

FLOAT_KEYS = [*DURATION_KEYS, *PERCENT_KEYS]
INT_KEYS = [
    "MAX_CONCURRENT_TASKS",
    "MAX_THREAD_WORKERS",
    "RESTART_MAX_RESTARTS",
    "MAILBOX_BUFFER_CAPACITY",
    "MAX_FINISHED_TASKS",
    "EVENT_BUFFER_SIZE",
    "BREAKER_FAILURE_THRESHOLD",
    "BREAKER_HALF_OPEN_MAX_CALLS",
    "METRICS_MAX_TASK_TYPES",
    "MAX_RECOVERIES",
]

# key -> (smallest accepted value, largest rejected value, expected text)
BOUNDS: dict[str, tuple[Any, Any, str]] = {
    "MAX_CONCURRENT_TASKS": (1, 0, "an int >= 1"),
    "MAX_THREAD_WORKERS": (1, 0, "an int >= 1"),
    "RESTART_MAX_RESTARTS": (0, -1, "an int >= 0"),
    "MAILBOX_BUFFER_CAPACITY": (0, -1, "an int >= 0"),
    "MAX_FINISHED_TASKS": (0, -1, "an int >= 0"),
    "RESTART_WITHIN_SECONDS": (1e-9, 0.0, "a finite number > 0"),
    "RESTART_RESET_AFTER": (1e-9, 0.0, "a finite number > 0"),
    "CALL_TIMEOUT": (1e-9, 0.0, "a finite number > 0"),
    "SHUTDOWN_TIMEOUT": (1e-9, 0.0, "a finite number > 0"),
    "RESTART_BACKOFF_INITIAL": (0.0, -1e-9, "a finite number >= 0"),
    "RESOURCE_CHECK_INTERVAL": (0.0, -1e-9, "a finite number >= 0"),
    "EVENT_BUFFER_SIZE": (1, 0, "an int >= 1"),
    "BREAKER_FAILURE_THRESHOLD": (1, 0, "an int >= 1"),
    "BREAKER_HALF_OPEN_MAX_CALLS": (1, 0, "an int >= 1"),
    "METRICS_MAX_TASK_TYPES": (1, 0, "an int >= 1"),
    "MAX_RECOVERIES": (0, -1, "an int >= 0"),
    "BREAKER_RECOVERY_TIMEOUT": (1e-9, 0.0, "a finite number > 0"),
    "CPU_HIGH_PERCENT": (1e-9, 0.0, "a finite number > 0 and <= 100"),
    "MEMORY_HIGH_PERCENT": (1e-9, 0.0, "a finite number > 0 and <= 100"),
    "CPU_CRITICAL_PERCENT": (1e-9, 0.0, "a finite number > 0 and <= 100"),
    "MEMORY_CRITICAL_PERCENT": (1e-9, 0.0, "a finite number > 0 and <= 100"),
    "RESTART_BACKOFF_MAX": (0.0, -1e-9, "a finite number >= 0"),
    "CLEANUP_INTERVAL": (0.0, -1e-9, "a finite number >= 0"),
    "CLEANUP_MAX_AGE": (0.0, -1e-9, "a finite number >= 0"),
}

MAPPING = "from the config mapping"


def write(tmp_path: Path, text: str, name: str = "actorflow.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error(message: str) -> str:
    return "^" + re.escape(message) + "$"


# --- defaults and the Config object -----------------------------------------------------


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    config = load_config(env={})
    assert config == Config()
    assert config.as_dict() == {**DEFAULTS_WITHOUT_WORKERS, "MAX_THREAD_WORKERS": 6}
    assert list(config.as_dict()) == KEYS
    assert [field.name for field in dataclasses.fields(Config)] == KEYS


@pytest.mark.parametrize(("cpus", "workers"), [(None, 5), (1, 5), (8, 12), (28, 32), (64, 32)])
def test_default_thread_workers_follow_the_cpu_count(
    monkeypatch: pytest.MonkeyPatch, cpus: int | None, workers: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert workers == Config().MAX_THREAD_WORKERS


def test_backends_are_one_constant() -> None:
    assert BACKENDS == ("thread", "process", "dask")


def test_config_is_frozen_and_replace_checks() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.CALL_TIMEOUT = 1.0  # type: ignore[misc]
    changed = config.replace(CALL_TIMEOUT=2, USE_NEW_TASK_SYSTEM=False)
    assert changed.CALL_TIMEOUT == 2.0
    assert type(changed.CALL_TIMEOUT) is float
    assert changed.USE_NEW_TASK_SYSTEM is False
    assert config.CALL_TIMEOUT == 30.0
    assert changed.as_dict() == {
        **config.as_dict(),
        "CALL_TIMEOUT": 2.0,
        "USE_NEW_TASK_SYSTEM": False,
    }
    with pytest.raises(
        ConfigError,
        match=error("CALL_TIMEOUT must be a finite number > 0, got 0 (from Config.replace())"),
    ):
        config.replace(CALL_TIMEOUT=0)
    with pytest.raises(
        ConfigError,
        match=error(
            "unknown configuration key 'CALL_TIMOUT' from Config.replace() "
            "(did you mean 'CALL_TIMEOUT'?)"
        ),
    ):
        config.replace(CALL_TIMOUT=1.0)


def test_config_built_directly_is_checked() -> None:
    assert Config(MAX_CONCURRENT_TASKS=3).MAX_CONCURRENT_TASKS == 3
    assert Config(CLEANUP_INTERVAL=60).CLEANUP_INTERVAL == 60.0
    with pytest.raises(
        ConfigError, match=error("MAX_CONCURRENT_TASKS must be an int >= 1, got 0 (from Config())")
    ):
        Config(MAX_CONCURRENT_TASKS=0)


def test_config_error_is_an_invalid_task_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"CALL_TIMEOUT": -1}, env={})
    assert isinstance(caught.value, InvalidTaskError)
    assert isinstance(caught.value, ActorsError)
    assert isinstance(caught.value, ValueError)


# --- the mapping ----------------------------------------------------------------------------


def test_mapping_sets_keys() -> None:
    config = load_config(
        {
            "USE_NEW_TASK_SYSTEM": False,
            "MAX_CONCURRENT_TASKS": 4,
            "MAX_THREAD_WORKERS": 2,
            "THREAD_POOL_BACKEND": "thread",
            "RESTART_WITHIN_SECONDS": 1,
            "CLEANUP_MAX_AGE": 0,
        },
        env={},
    )
    assert config.USE_NEW_TASK_SYSTEM is False
    assert config.MAX_CONCURRENT_TASKS == 4
    assert config.MAX_THREAD_WORKERS == 2
    assert config.RESTART_WITHIN_SECONDS == 1.0
    assert type(config.RESTART_WITHIN_SECONDS) is float
    assert config.CLEANUP_MAX_AGE == 0.0
    assert type(config.CLEANUP_MAX_AGE) is float


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "MAX_CONCURENT_TASKS",
            "unknown configuration key 'MAX_CONCURENT_TASKS' from the config mapping "
            "(did you mean 'MAX_CONCURRENT_TASKS' or 'MAX_FINISHED_TASKS'?)",
        ),
        (
            "max_concurrent_tasks",
            "unknown configuration key 'max_concurrent_tasks' from the config mapping "
            "(did you mean 'MAX_CONCURRENT_TASKS' or 'MAX_FINISHED_TASKS'?)",
        ),
        (
            "RESTART_MAX",
            "unknown configuration key 'RESTART_MAX' from the config mapping (did you mean "
            "'RESTART_BACKOFF_MAX', 'RESTART_MAX_RESTARTS' or 'RESTART_RESET_AFTER'?)",
        ),
        (
            "RAY_ADDRESS",
            "unknown configuration key 'RAY_ADDRESS' from the config mapping; "
            "known keys: " + ", ".join(KEYS),
        ),
        (
            7,
            "configuration keys must be str, got 7 (from the config mapping)",
        ),
    ],
)
def test_unknown_key_in_mapping(key: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=error(message)):
        load_config({key: 1}, env={})


@pytest.mark.parametrize("key", INT_KEYS + FLOAT_KEYS)
@pytest.mark.parametrize("value", [True, False])
def test_bool_is_never_a_number(key: str, value: bool) -> None:
    expected = BOUNDS[key][2]
    with pytest.raises(
        ConfigError, match=error(f"{key} must be {expected}, got {value} ({MAPPING})")
    ):
        load_config({key: value}, env={})


@pytest.mark.parametrize("key", INT_KEYS)
def test_float_is_not_an_int(key: str) -> None:
    expected = BOUNDS[key][2]
    with pytest.raises(ConfigError, match=error(f"{key} must be {expected}, got 5.0 ({MAPPING})")):
        load_config({key: 5.0}, env={})


# key -> its partner of an ordered pair, set to the same value so the pair stays in order
# when the key is at its smallest (a critical threshold of 1e-9 under the default high 85
# would be refused for the order, not for the bound this test is about)
PARTNER_AT_SMALLEST = {
    "CPU_CRITICAL_PERCENT": "CPU_HIGH_PERCENT",
    "MEMORY_CRITICAL_PERCENT": "MEMORY_HIGH_PERCENT",
    "RESTART_BACKOFF_MAX": "RESTART_BACKOFF_INITIAL",
}


@pytest.mark.parametrize("key", BOUNDS)
def test_range_boundaries(key: str) -> None:
    smallest, rejected, expected = BOUNDS[key]
    mapping = {key: smallest}
    if key in PARTNER_AT_SMALLEST:
        mapping[PARTNER_AT_SMALLEST[key]] = smallest
    assert getattr(load_config(mapping, env={}), key) == smallest
    with pytest.raises(
        ConfigError, match=error(f"{key} must be {expected}, got {rejected!r} ({MAPPING})")
    ):
        load_config({key: rejected}, env={})


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", [float("inf"), float("nan"), "1.0", None, 10**400])
def test_floats_must_be_finite_numbers(key: str, value: Any) -> None:
    expected = BOUNDS[key][2]
    with pytest.raises(
        ConfigError, match=error(f"{key} must be {expected}, got {value!r} ({MAPPING})")
    ):
        load_config({key: value}, env={})


@pytest.mark.parametrize("value", [1, 0, "true", None])
def test_bool_key_takes_only_a_bool(value: Any) -> None:
    with pytest.raises(
        ConfigError,
        match=error(f"USE_NEW_TASK_SYSTEM must be a bool, got {value!r} ({MAPPING})"),
    ):
        load_config({"USE_NEW_TASK_SYSTEM": value}, env={})


@pytest.mark.parametrize("value", ["processes", "ray", "THREAD", "", 1, None])
def test_backend_must_be_listed(value: Any) -> None:
    with pytest.raises(
        ConfigError,
        match=error(
            "THREAD_POOL_BACKEND must be one of 'thread', 'process', 'dask', "
            f"got {value!r} ({MAPPING})"
        ),
    ):
        load_config({"THREAD_POOL_BACKEND": value}, env={})


@pytest.mark.parametrize("value", BACKENDS)
def test_every_backend_is_accepted(value: str) -> None:
    assert value == load_config({"THREAD_POOL_BACKEND": value}, env={}).THREAD_POOL_BACKEND


@pytest.mark.parametrize("value", ["tcp://127.0.0.1:8786", "scheduler:8786", None])
def test_dask_scheduler_address_is_a_str_or_none(value: str | None) -> None:
    config = load_config({"DASK_SCHEDULER_ADDRESS": value}, env={})
    assert value == config.DASK_SCHEDULER_ADDRESS


@pytest.mark.parametrize("value", ["", 8786, b"tcp://127.0.0.1:8786", True])
def test_dask_scheduler_address_rejects_other_values(value: Any) -> None:
    with pytest.raises(
        ConfigError,
        match=error(
            f"DASK_SCHEDULER_ADDRESS must be a non-empty str or None, got {value!r} ({MAPPING})"
        ),
    ):
        load_config({"DASK_SCHEDULER_ADDRESS": value}, env={})


@pytest.mark.parametrize(
    ("raw", "value"), [("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"), (" ", None), ("", None)]
)
def test_dask_scheduler_address_from_env(raw: str, value: str | None) -> None:
    config = load_config(env={"ACTORFLOW_DASK_SCHEDULER_ADDRESS": raw})
    assert value == config.DASK_SCHEDULER_ADDRESS


def test_journal_keys_from_mapping_env_and_toml(tmp_path: Path) -> None:
    config = load_config(
        {"JOURNAL_PATH": tmp_path / "tasks.db", "JOURNAL_SYNC": "full", "MAX_RECOVERIES": 0},
        env={},
    )
    assert str(tmp_path / "tasks.db") == config.JOURNAL_PATH
    assert (config.JOURNAL_SYNC, config.JOURNAL_SERIALIZER, config.MAX_RECOVERIES) == (
        "full",
        "json",
        0,
    )
    env = {
        "ACTORFLOW_JOURNAL_PATH": "/var/lib/app/tasks.db",
        "ACTORFLOW_JOURNAL_SERIALIZER": "pickle",
        "ACTORFLOW_MAX_RECOVERIES": "5",
    }
    config = load_config(env=env)
    assert (config.JOURNAL_PATH, config.JOURNAL_SERIALIZER, config.MAX_RECOVERIES) == (
        "/var/lib/app/tasks.db",
        "pickle",
        5,
    )
    assert load_config(env={"ACTORFLOW_JOURNAL_PATH": ""}).JOURNAL_PATH is None
    path = write(tmp_path, '[actorflow]\nJOURNAL_PATH = "t.db"\nJOURNAL_SYNC = "normal"\n')
    assert load_config(toml_path=path, env={}).JOURNAL_PATH == "t.db"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("JOURNAL_PATH", "", "a non-empty str or path or None, with no NUL character"),
        ("JOURNAL_PATH", 3, "a non-empty str or path or None, with no NUL character"),
        # It was taken, and opening the journal raised a bare ValueError at start.
        ("JOURNAL_PATH", "j\x00.db", "a non-empty str or path or None, with no NUL character"),
        ("JOURNAL_SYNC", "off", "one of 'normal', 'full'"),
        ("JOURNAL_SERIALIZER", "yaml", "one of 'json', 'pickle'"),
    ],
)
def test_journal_keys_reject_other_values(key: str, value: Any, expected: str) -> None:
    with pytest.raises(
        ConfigError, match=error(f"{key} must be {expected}, got {value!r} ({MAPPING})")
    ):
        load_config({key: value}, env={})


def test_journal_choices_are_the_journal_package_constants() -> None:
    assert _config.JOURNAL_SYNC_MODES == journal.SYNC_MODES
    assert _config.JOURNAL_SERIALIZERS == journal.SERIALIZERS
    assert _config._RULES["JOURNAL_SYNC"].choices is _config.JOURNAL_SYNC_MODES
    assert _config._RULES["JOURNAL_SERIALIZER"].choices is _config.JOURNAL_SERIALIZERS


def test_backend_set_comes_from_the_constant() -> None:
    # Adding a backend is one edit of BACKENDS (the rule is built from it).
    assert _config._RULES["THREAD_POOL_BACKEND"].choices is BACKENDS


def test_mapping_must_be_a_mapping() -> None:
    with pytest.raises(
        ConfigError,
        match=error("configuration must be a mapping of upper-case keys, got [('A', 1)]"),
    ):
        load_config([("A", 1)], env={})  # type: ignore[arg-type]


# --- TOML -----------------------------------------------------------------------------------


def test_toml_top_level(tmp_path: Path) -> None:
    path = write(
        tmp_path, "MAX_CONCURRENT_TASKS = 7\nCALL_TIMEOUT = 3\nUSE_NEW_TASK_SYSTEM = false\n"
    )
    config = load_config(toml_path=path, env={})
    assert config.MAX_CONCURRENT_TASKS == 7
    assert config.CALL_TIMEOUT == 3.0
    assert type(config.CALL_TIMEOUT) is float
    assert config.USE_NEW_TASK_SYSTEM is False
    assert load_config(toml_path=str(path), env={}) == config


def test_toml_actorflow_table_is_read_alone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'name = "my service"\n[database]\nurl = "x"\n[actorflow]\nMAX_THREAD_WORKERS = 3\n',
    )
    assert load_config(toml_path=path, env={}).MAX_THREAD_WORKERS == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "[actorflow]\nSHUTDOWN_TIMOUT = 1.0\n",
            lambda path: (
                f"unknown configuration key 'SHUTDOWN_TIMOUT' from TOML file {path!r} "
                "(did you mean 'SHUTDOWN_TIMEOUT'?)"
            ),
            id="unknown-key",
        ),
        pytest.param(
            "MAX_CONCURRENT_TASKS = 7\n[database]\nurl = 'x'\n",
            lambda path: (
                f"unknown configuration key 'database' from TOML file {path!r}; "
                "known keys: " + ", ".join(KEYS)
            ),
            id="other-tables-are-unknown-keys-without-an-actorflow-table",
        ),
        pytest.param(
            'MAX_CONCURRENT_TASKS = "8"\n',
            lambda path: (
                f"MAX_CONCURRENT_TASKS must be an int >= 1, got '8' (from TOML file {path!r})"
            ),
            id="wrong-type",
        ),
        pytest.param(
            "actorflow = 3\n",
            lambda path: f"[actorflow] in configuration file {path!r} must be a table, got 3",
            id="actorflow-must-be-a-table",
        ),
    ],
)
def test_toml_errors_name_the_file(
    tmp_path: Path, text: str, message: Callable[[str], str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=error(message(str(path)))):
        load_config(toml_path=path, env={})


def test_toml_syntax_error(tmp_path: Path) -> None:
    text = "MAX_CONCURRENT_TASKS 7\n"
    path = write(tmp_path, text)
    with pytest.raises(tomllib.TOMLDecodeError) as parsed:
        tomllib.loads(text)
    with pytest.raises(
        ConfigError,
        match=error(f"configuration file {str(path)!r} is not valid TOML: {parsed.value}"),
    ) as caught:
        load_config(toml_path=path, env={})
    assert isinstance(caught.value.__cause__, tomllib.TOMLDecodeError)


def test_load_config_refuses_an_env_that_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env=["ACTORFLOW_CALL_TIMEOUT=5"])  # type: ignore[arg-type]
    assert str(caught.value) == (
        "env must be a mapping of environment variables (str to str) or None (os.environ), "
        "got ['ACTORFLOW_CALL_TIMEOUT=5']"
    )


@pytest.mark.parametrize(
    ("env", "shown"),
    [
        ({"ACTORFLOW_MAX_CONCURRENT_TASKS": 3}, "'ACTORFLOW_MAX_CONCURRENT_TASKS': 3"),
        ({3: "3", "ACTORFLOW_CALL_TIMEOUT": "5"}, "3: '3'"),
    ],
)
def test_load_config_refuses_an_env_that_is_not_str_to_str(env: dict[Any, Any], shown: str) -> None:
    # A value that is no str raised AttributeError (.strip()); a key that is no str,
    # TypeError or AttributeError: no ConfigError, no name.
    with pytest.raises(ConfigError) as caught:
        load_config(env=env)
    assert str(caught.value) == (
        "env must be a mapping of environment variables (str to str) or None (os.environ), "
        f"got {shown}"
    )


def test_a_toml_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # tomllib raises UnicodeDecodeError (no TOMLDecodeError) for it: it escaped.
    path = tmp_path / "latin1.toml"
    path.write_bytes("NAME = 'caf\u00e9'\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(toml_path=path, env={})
    assert str(caught.value) == (
        f"configuration file {str(path)!r} is not valid TOML: it is not UTF-8 ('utf-8' codec "
        "can't decode byte 0xe9 in position 11: invalid continuation byte)"
    )
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


@pytest.mark.parametrize("named_by_env", [False, True])
def test_a_toml_path_with_a_nul_is_a_config_error(named_by_env: bool) -> None:
    # open() raises ValueError (no OSError) for it: it escaped.
    path = "actorflow\x00.toml"
    env, toml_path = ({"ACTORFLOW_CONFIG": path}, None) if named_by_env else ({}, path)
    with pytest.raises(ConfigError) as caught:
        load_config(toml_path=toml_path, env=env)
    via = " (named by ACTORFLOW_CONFIG)" if named_by_env else ""
    assert str(caught.value) == (
        f"cannot read configuration file {path!r}{via}: embedded null byte"
    )


def test_load_config_refuses_a_toml_path_that_is_not_a_path() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(toml_path=3, env={})  # type: ignore[arg-type]
    assert str(caught.value) == (
        "toml_path must be the path of a TOML file (a str or os.PathLike) or None, got 3"
    )


def test_toml_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(
        ConfigError,
        match=error(f"cannot read configuration file {str(path)!r}: {os.strerror(errno.ENOENT)}"),
    ) as caught:
        load_config(toml_path=path, env={})
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_toml_file_named_by_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "MAX_CONCURRENT_TASKS = 9\n")
    assert load_config(env={"ACTORFLOW_CONFIG": str(path)}).MAX_CONCURRENT_TASKS == 9
    # An explicit toml_path wins over ACTORFLOW_CONFIG.
    other = write(tmp_path, "MAX_CONCURRENT_TASKS = 2\n", name="other.toml")
    config = load_config(toml_path=other, env={"ACTORFLOW_CONFIG": str(path)})
    assert config.MAX_CONCURRENT_TASKS == 2
    # An empty ACTORFLOW_CONFIG names no file.
    assert load_config(env={"ACTORFLOW_CONFIG": ""}) == Config()


def test_missing_file_named_by_environment(tmp_path: Path) -> None:
    path = str(tmp_path / "gone.toml")
    with pytest.raises(
        ConfigError,
        match=error(
            f"cannot read configuration file {path!r} (named by ACTORFLOW_CONFIG): "
            f"{os.strerror(errno.ENOENT)}"
        ),
    ):
        load_config(env={"ACTORFLOW_CONFIG": path})


# --- environment ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("on", True),
        (" true ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("OFF", False),
    ],
)
def test_env_bool(raw: str, value: bool) -> None:
    config = load_config(env={"ACTORFLOW_USE_NEW_TASK_SYSTEM": raw})
    assert config.USE_NEW_TASK_SYSTEM is value


def test_env_numbers_and_strings() -> None:
    config = load_config(
        env={
            "ACTORFLOW_MAX_CONCURRENT_TASKS": " 12 ",
            "ACTORFLOW_CALL_TIMEOUT": "2.5",
            "ACTORFLOW_SHUTDOWN_TIMEOUT": "3",
            "ACTORFLOW_CLEANUP_MAX_AGE": "1e3",
            "ACTORFLOW_THREAD_POOL_BACKEND": "thread",
            "PATH": "/bin",
            "OTHER_MAX_CONCURRENT_TASKS": "nonsense",
        }
    )
    assert config.MAX_CONCURRENT_TASKS == 12
    assert config.CALL_TIMEOUT == 2.5
    assert config.SHUTDOWN_TIMEOUT == 3.0
    assert config.CLEANUP_MAX_AGE == 1000.0
    assert config.THREAD_POOL_BACKEND == "thread"


@pytest.mark.parametrize(
    ("var", "raw", "message"),
    [
        (
            "ACTORFLOW_USE_NEW_TASK_SYSTEM",
            "maybe",
            "USE_NEW_TASK_SYSTEM must be a bool (1/0, true/false, yes/no or on/off), "
            "got 'maybe' (from environment variable ACTORFLOW_USE_NEW_TASK_SYSTEM)",
        ),
        (
            "ACTORFLOW_MAX_CONCURRENT_TASKS",
            "ten",
            "MAX_CONCURRENT_TASKS must be an int >= 1, got 'ten' "
            "(from environment variable ACTORFLOW_MAX_CONCURRENT_TASKS)",
        ),
        (
            "ACTORFLOW_MAX_CONCURRENT_TASKS",
            "2.0",
            "MAX_CONCURRENT_TASKS must be an int >= 1, got '2.0' "
            "(from environment variable ACTORFLOW_MAX_CONCURRENT_TASKS)",
        ),
        (
            "ACTORFLOW_MAX_CONCURRENT_TASKS",
            "0",
            "MAX_CONCURRENT_TASKS must be an int >= 1, got '0' "
            "(from environment variable ACTORFLOW_MAX_CONCURRENT_TASKS)",
        ),
        (
            "ACTORFLOW_CALL_TIMEOUT",
            "soon",
            "CALL_TIMEOUT must be a finite number > 0, got 'soon' "
            "(from environment variable ACTORFLOW_CALL_TIMEOUT)",
        ),
        (
            "ACTORFLOW_CALL_TIMEOUT",
            "nan",
            "CALL_TIMEOUT must be a finite number > 0, got 'nan' "
            "(from environment variable ACTORFLOW_CALL_TIMEOUT)",
        ),
        (
            "ACTORFLOW_THREAD_POOL_BACKEND",
            "ray",
            "THREAD_POOL_BACKEND must be one of 'thread', 'process', 'dask', got 'ray' "
            "(from environment variable ACTORFLOW_THREAD_POOL_BACKEND)",
        ),
        (
            "ACTORFLOW_MAX_CONCURENT_TASKS",
            "3",
            "unknown configuration key 'MAX_CONCURENT_TASKS' from environment variable "
            "ACTORFLOW_MAX_CONCURENT_TASKS (did you mean 'ACTORFLOW_MAX_CONCURRENT_TASKS' or "
            "'ACTORFLOW_MAX_FINISHED_TASKS'?)",
        ),
        (
            "ACTORFLOW_",
            "3",
            "unknown configuration key '' from environment variable ACTORFLOW_; "
            "known keys: " + ", ".join(KEYS),
        ),
    ],
)
def test_env_errors_name_the_variable(var: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=error(message)):
        load_config(env={var: raw})


def test_default_env_is_os_environ() -> None:
    assert load_config() == load_config(env=dict(os.environ))


# --- layers ---------------------------------------------------------------------------------


def test_precedence_defaults_toml_env_mapping(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[actorflow]\nMAX_CONCURRENT_TASKS = 2\nMAX_THREAD_WORKERS = 2\nCALL_TIMEOUT = 2.0\n",
    )
    env = {"ACTORFLOW_MAX_THREAD_WORKERS": "3", "ACTORFLOW_CALL_TIMEOUT": "3"}
    config = load_config({"CALL_TIMEOUT": 4.0}, toml_path=path, env=env)
    assert config.MAX_CONCURRENT_TASKS == 2  # TOML over the default
    assert config.MAX_THREAD_WORKERS == 3  # environment over TOML
    assert config.CALL_TIMEOUT == 4.0  # mapping over environment
    assert config.SHUTDOWN_TIMEOUT == 10.0  # default


def test_a_bad_value_is_an_error_even_when_overridden(tmp_path: Path) -> None:
    path = write(tmp_path, "CALL_TIMEOUT = -1\n")
    with pytest.raises(
        ConfigError,
        match=error(
            f"CALL_TIMEOUT must be a finite number > 0, got -1 (from TOML file {str(path)!r})"
        ),
    ):
        load_config({"CALL_TIMEOUT": 1.0}, toml_path=path, env={})
    with pytest.raises(ConfigError, match=r"^unknown configuration key 'NOPE' from environment"):
        load_config({"CALL_TIMEOUT": 1.0}, env={"ACTORFLOW_NOPE": "1"})


# --- pairs of keys that must be in order ------------------------------------------------

HIGH_WHY = "the governor warns above the high threshold before the critical one"
BACKOFF_WHY = "the restart backoff grows from the initial delay up to the longest one"
ORDER_CASES = [
    ("CPU_HIGH_PERCENT", 99.0, "CPU_CRITICAL_PERCENT", 90.0, HIGH_WHY),
    ("MEMORY_HIGH_PERCENT", 90.5, "MEMORY_CRITICAL_PERCENT", 90.0, HIGH_WHY),
    ("RESTART_BACKOFF_INITIAL", 6.0, "RESTART_BACKOFF_MAX", 5.0, BACKOFF_WHY),
]


def order_error(low_key: str, low: float, high_key: str, high: float, why: str) -> str:
    return error(
        f"{low_key} ({low!r}) must be <= {high_key} ({high!r}): {why}; "
        f"lower {low_key} or raise {high_key}"
    )


@pytest.mark.parametrize(("low_key", "low", "high_key", "high", "why"), ORDER_CASES)
def test_pairs_out_of_order_are_refused_wherever_a_config_is_built(
    low_key: str, low: float, high_key: str, high: float, why: str
) -> None:
    message = order_error(low_key, low, high_key, high, why)
    with pytest.raises(ConfigError, match=message):
        load_config({low_key: low, high_key: high}, env={})
    with pytest.raises(ConfigError, match=message):
        Config(**{low_key: low, high_key: high})
    with pytest.raises(ConfigError, match=message):  # layers merged: env low, mapping high
        load_config({high_key: high}, env={f"ACTORFLOW_{low_key}": str(low)})
    config = Config()
    with pytest.raises(ConfigError, match=message):
        config.replace(**{low_key: low, high_key: high})
    assert config == Config()  # the rejected replace changed nothing


@pytest.mark.parametrize(("low_key", "low", "high_key", "high", "why"), ORDER_CASES)
def test_a_key_alone_is_checked_against_the_default_of_its_partner(
    low_key: str, low: float, high_key: str, high: float, why: str
) -> None:
    default_high = getattr(Config(), high_key)
    with pytest.raises(
        ConfigError, match=order_error(low_key, default_high + 1, high_key, default_high, why)
    ):
        load_config({low_key: default_high + 1}, env={})


@pytest.mark.parametrize(("low_key", "low", "high_key", "high", "why"), ORDER_CASES)
def test_equal_values_of_a_pair_are_accepted(
    low_key: str, low: float, high_key: str, high: float, why: str
) -> None:
    config = load_config({low_key: high, high_key: high}, env={})
    assert (getattr(config, low_key), getattr(config, high_key)) == (high, high)


def test_actor_system_refuses_a_contradictory_config_before_starting() -> None:
    message = order_error("CPU_HIGH_PERCENT", 99.0, "CPU_CRITICAL_PERCENT", 90.0, HIGH_WHY)
    with pytest.raises(ConfigError, match=message):
        ActorSystem({"CPU_HIGH_PERCENT": 99, "CPU_CRITICAL_PERCENT": 90})
