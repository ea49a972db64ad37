"""Configuration: the seed's upper-case keys, validated once, with errors that say where.

Values come from four layers, later ones winning: the defaults of `Config`, a TOML file,
``ACTORFLOW_<KEY>`` environment variables, and the mapping given in code. Every layer is
checked in full (a bad value is an error even when a later layer overrides it), and every
error names the key, the value, what was expected and where the value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.core._errors import ConfigError
from actors.core._util import MAX_SECONDS, finite_float, safe_repr, too_long

__all__ = [
    "BACKENDS",
    "CONFIG_ENV_VAR",
    "ENV_PREFIX",
    "JOURNAL_SERIALIZERS",
    "JOURNAL_SYNC_MODES",
    "Config",
    "load_config",
]

BACKENDS: tuple[str, ...] = ("thread", "process", "dask")
"""The values `THREAD_POOL_BACKEND` (and ``executor=`` of a task) accept."""

JOURNAL_SYNC_MODES: tuple[str, ...] = ("normal", "full")
"""The values `JOURNAL_SYNC` accepts (`actors.journal.SYNC_MODES`, without importing it)."""

JOURNAL_SERIALIZERS: tuple[str, ...] = ("json", "pickle")
"""The values `JOURNAL_SERIALIZER` accepts (`actors.journal.SERIALIZERS`)."""

ENV_PREFIX = "ACTORFLOW_"
"""Environment variables ``ACTORFLOW_<KEY>`` set configuration keys."""

CONFIG_ENV_VAR = "ACTORFLOW_CONFIG"
"""Names the TOML file to read when `load_config` is given no ``toml_path``."""

TOML_TABLE = "actorflow"
"""A TOML file with this table is read from the table only (the rest is someone else's)."""

_ENV_TRUE = frozenset({"1", "true", "yes", "on"})
_ENV_FALSE = frozenset({"0", "false", "no", "off"})


def _default_thread_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


@dataclass(frozen=True, slots=True)
class _Rule:
    """What one key accepts: a kind, an optional lower bound, or a set of choices.

    A str rule without choices takes any non-empty str; ``optional`` also takes None.
    """

    kind: type
    low: int | None = None
    strict: bool = False
    """True: the value must be > low; False: >= low."""
    choices: tuple[str, ...] = ()
    high: float | None = None
    """An inclusive upper bound, if any."""
    optional: bool = False
    """None is a valid value (it means "not set")."""
    path: bool = False
    """A str rule that also takes an `os.PathLike` (stored as its str)."""
    seconds: bool = False
    """A float rule of a duration: at most `MAX_SECONDS` (a longer one overflows the
    `threading` waits it reaches, or the sums of them a blocking call waits)."""

    @property
    def expected(self) -> str:
        if self.kind is bool:
            return "a bool"
        if self.kind is tuple:
            return "a non-empty list of finite numbers > 0 in increasing order"
        if self.kind is str and self.choices:
            return "one of " + ", ".join(repr(choice) for choice in self.choices)
        if self.kind is str:
            text = "a non-empty str or path" if self.path else "a non-empty str"
            text = f"{text} or None" if self.optional else text
            return f"{text}, with no NUL character" if self.path else text
        text = "an int" if self.kind is int else "a finite number"
        if self.low is None:
            return text
        if self.high is not None:
            return f"{text} {'>' if self.strict else '>='} {self.low} and <= {self.high:g}"
        return f"{text} {'>' if self.strict else '>='} {self.low}"

    def check(self, value: object) -> Any:
        """The value as stored (ints become floats for float keys), or None if invalid.

        A None value of an ``optional`` key is valid: callers check for it first.
        """
        if self.kind is bool:
            return value if isinstance(value, bool) else None
        if self.kind is tuple:
            return _increasing(value)
        if self.kind is str and self.choices:
            return value if isinstance(value, str) and value in self.choices else None
        if self.kind is str:
            if self.path and isinstance(value, os.PathLike):
                value = os.fspath(value)
            if self.path and isinstance(value, str) and "\x00" in value:
                return None  # no file has it: opening it raised a bare ValueError at start
            return value if isinstance(value, str) and value else None
        if isinstance(value, bool):
            return None
        number: int | float
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                return None
            number = int(value)
        else:
            real = finite_float(value)
            if real is None:
                return None
            number = real
        if self.low is not None and (number <= self.low if self.strict else number < self.low):
            return None
        if self.high is not None and number > self.high:
            return None
        if self.seconds and number > MAX_SECONDS:
            return None
        return number

    def refusal(self, key: str, value: object, shown: object, source: str) -> ConfigError:
        """The error refusing ``value`` (shown as ``shown``: the raw text of a variable)."""
        if self.seconds:
            number = finite_float(value)
            if number is not None and number > MAX_SECONDS:
                return ConfigError(
                    f"{too_long(key, shown, 'as every duration setting')} ({source}); "
                    "use a shorter time"
                )
        return _invalid(key, self.expected, shown, source)


def _increasing(value: object) -> tuple[float, ...] | None:
    """A non-empty list/tuple of finite numbers > 0, strictly increasing, as floats."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    bounds: list[float] = []
    for item in value:
        number = finite_float(item)
        if number is None or number <= 0.0 or (bounds and number <= bounds[-1]):
            return None
        bounds.append(number)
    return tuple(bounds)


_RULES: dict[str, _Rule] = {
    "USE_NEW_TASK_SYSTEM": _Rule(bool),
    "MAX_CONCURRENT_TASKS": _Rule(int, 1),
    "MAX_THREAD_WORKERS": _Rule(int, 1),
    "THREAD_POOL_BACKEND": _Rule(str, choices=BACKENDS),
    "DASK_SCHEDULER_ADDRESS": _Rule(str, optional=True),
    "RESTART_MAX_RESTARTS": _Rule(int, 0),
    "RESTART_WITHIN_SECONDS": _Rule(float, 0, strict=True, seconds=True),
    "RESTART_BACKOFF_INITIAL": _Rule(float, 0, seconds=True),
    "RESTART_BACKOFF_MAX": _Rule(float, 0, seconds=True),
    "RESTART_RESET_AFTER": _Rule(float, 0, strict=True, seconds=True),
    "CLEANUP_INTERVAL": _Rule(float, 0, seconds=True),
    "CLEANUP_MAX_AGE": _Rule(float, 0, seconds=True),
    "MAX_FINISHED_TASKS": _Rule(int, 0),
    "MAILBOX_BUFFER_CAPACITY": _Rule(int, 0),
    "CALL_TIMEOUT": _Rule(float, 0, strict=True, seconds=True),
    "SHUTDOWN_TIMEOUT": _Rule(float, 0, strict=True, seconds=True),
    "RESOURCE_CHECK_INTERVAL": _Rule(float, 0, seconds=True),
    "CPU_HIGH_PERCENT": _Rule(float, 0, strict=True, high=100),
    "MEMORY_HIGH_PERCENT": _Rule(float, 0, strict=True, high=100),
    "CPU_CRITICAL_PERCENT": _Rule(float, 0, strict=True, high=100),
    "MEMORY_CRITICAL_PERCENT": _Rule(float, 0, strict=True, high=100),
    "EVENT_BUFFER_SIZE": _Rule(int, 1),
    "BREAKER_FAILURE_THRESHOLD": _Rule(int, 1),
    "BREAKER_RECOVERY_TIMEOUT": _Rule(float, 0, strict=True, seconds=True),
    "BREAKER_HALF_OPEN_MAX_CALLS": _Rule(int, 1),
    "METRICS_HISTOGRAM_BUCKETS": _Rule(tuple),
    "DASHBOARD_TOKEN": _Rule(str, optional=True),
    "METRICS_MAX_TASK_TYPES": _Rule(int, 1),
    "JOURNAL_PATH": _Rule(str, optional=True, path=True),
    "JOURNAL_SYNC": _Rule(str, choices=JOURNAL_SYNC_MODES),
    "JOURNAL_SERIALIZER": _Rule(str, choices=JOURNAL_SERIALIZERS),
    "MAX_RECOVERIES": _Rule(int, 0),
}


_ORDERED: tuple[tuple[str, str, str], ...] = (
    # (lower key, upper key, why the code needs lower <= upper)
    (
        "CPU_HIGH_PERCENT",
        "CPU_CRITICAL_PERCENT",
        "the governor warns above the high threshold before the critical one",
    ),
    (
        "MEMORY_HIGH_PERCENT",
        "MEMORY_CRITICAL_PERCENT",
        "the governor warns above the high threshold before the critical one",
    ),
    (
        "RESTART_BACKOFF_INITIAL",
        "RESTART_BACKOFF_MAX",
        "the restart backoff grows from the initial delay up to the longest one",
    ),
)
"""Pairs of keys whose values must be in order (lower <= upper), checked on every build."""


def _check_order(config: Config) -> None:
    """`ConfigError` naming both keys and values if a pair of `_ORDERED` is out of order."""
    for low_key, high_key, why in _ORDERED:
        low, high = getattr(config, low_key), getattr(config, high_key)
        if low > high:
            raise ConfigError(
                f"{low_key} ({low!r}) must be <= {high_key} ({high!r}): {why}; "
                f"lower {low_key} or raise {high_key}"
            )


def _invalid(key: str, expected: str, value: object, source: str) -> ConfigError:
    return ConfigError(f"{key} must be {expected}, got {safe_repr(value)} ({source})")


def _checked(key: str, value: object, source: str) -> Any:
    rule = _RULES[key]
    if value is None and rule.optional:
        return None
    stored = rule.check(value)
    if stored is None:
        raise rule.refusal(key, value, value, source)
    return stored


def _unknown(key: object, source: str, prefix: str = "") -> ConfigError:
    if not isinstance(key, str):
        return ConfigError(f"configuration keys must be str, got {safe_repr(key)} ({source})")
    matches = difflib.get_close_matches(key.upper(), _RULES)
    shown = [repr(prefix + match) for match in matches]
    if len(shown) > 1:
        hint = f" (did you mean {', '.join(shown[:-1])} or {shown[-1]}?)"
    elif shown:
        hint = f" (did you mean {shown[0]}?)"
    else:
        hint = f"; known keys: {', '.join(_RULES)}"
    return ConfigError(f"unknown configuration key {key!r} {source}{hint}")


def _from_mapping(mapping: Mapping[Any, Any], source: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in mapping.items():
        # A key that is no str is refused before the lookup: its hash may raise.
        if not isinstance(key, str) or key not in _RULES:
            raise _unknown(key, source)
        values[key] = _checked(key, value, source)
    return values


def _read_toml(path: str | os.PathLike[str], via: str) -> dict[str, Any]:
    shown = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(
            f"cannot read configuration file {shown!r}{via}: {exc.strerror or exc}"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {shown!r}{via} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:  # tomllib reads UTF-8 only; this is no TOMLDecodeError
        raise ConfigError(
            f"configuration file {shown!r}{via} is not valid TOML: it is not UTF-8 ({exc})"
        ) from exc
    except ValueError as exc:  # open() refuses a path with a NUL character
        raise ConfigError(f"cannot read configuration file {shown!r}{via}: {exc}") from exc
    source = f"from TOML file {shown!r}"
    if TOML_TABLE in data:
        table = data[TOML_TABLE]
        if not isinstance(table, dict):
            raise ConfigError(
                f"[{TOML_TABLE}] in configuration file {shown!r} must be a table, got {table!r}"
            )
        return _from_mapping(table, source)
    return _from_mapping(data, source)


def _parse_env(key: str, raw: str, source: str) -> object:
    rule = _RULES[key]
    text = raw.strip()
    if rule.kind is bool:
        if text.lower() in _ENV_TRUE:
            return True
        if text.lower() in _ENV_FALSE:
            return False
        raise _invalid(key, "a bool (1/0, true/false, yes/no or on/off)", raw, source)
    if rule.kind is int or rule.kind is float:
        # int() and float() take any Unicode digit (ARABIC-INDIC DIGIT THREE is 3, so is
        # FULLWIDTH DIGIT THREE): a value the operator may not have meant. ASCII only.
        if not text.isascii():
            raise _invalid(key, rule.expected + " written in ASCII digits", raw, source)
        try:
            return rule.kind(text)
        except ValueError:
            raise _invalid(key, rule.expected, raw, source) from None
    if rule.kind is tuple:  # comma-separated: "0.1,0.5,1"
        try:
            return [float(part) for part in text.split(",")]
        except ValueError:
            raise _invalid(key, rule.expected, raw, source) from None
    if rule.optional and not text:
        return None  # an empty variable means "not set"
    return text


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV_VAR:
            continue
        key = var[len(ENV_PREFIX) :]
        source = f"from environment variable {var}"
        if key not in _RULES:
            raise _unknown(key, source, prefix=ENV_PREFIX)
        raw = env[var]
        parsed = _parse_env(key, raw, source)
        if parsed is None:
            values[key] = None
            continue
        rule = _RULES[key]
        stored = rule.check(parsed)
        if stored is None:
            raise rule.refusal(key, parsed, raw, source)
        values[key] = stored
    return values


@dataclass(frozen=True, slots=True)
class Config:
    """The actor system's settings; every field is checked when the object is built.

    Build one with `load_config` (defaults < TOML file < environment < mapping) or
    directly; derive a changed copy with `replace`. Pairs of keys that must be in order
    (a high threshold <= its critical one, the initial backoff <= the longest) are checked
    together, after each key on its own. Every duration (in seconds) is at most
    `MAX_SECONDS` (1e9): the blocking calls and the stop wait for sums of them in
    `threading` waits, which overflow past ``threading.TIMEOUT_MAX``.
    """

    USE_NEW_TASK_SYSTEM: bool = True
    """New registrations go to the new task manager (False: the legacy one)."""
    MAX_CONCURRENT_TASKS: int = 100
    """At most this many tasks run at once in the new manager (>= 1)."""
    MAX_THREAD_WORKERS: int = field(default_factory=_default_thread_workers)
    """Threads of the thread-pool executor (>= 1); default min(32, cpu_count + 4). Also the
    worker processes of the ``process`` executor, and the most a LocalCluster of the
    ``dask`` executor starts (one per core at most)."""
    THREAD_POOL_BACKEND: str = "thread"
    """Which executor runs plain functions by default; one of `BACKENDS`: ``thread``
    (threads), ``process`` (worker processes, for pure-Python CPU work) or ``dask``."""
    DASK_SCHEDULER_ADDRESS: str | None = None
    """The Dask scheduler the ``dask`` executor connects to (``tcp://host:8786``); None
    starts a `distributed.LocalCluster` of worker processes on this machine."""
    RESTART_MAX_RESTARTS: int = 10
    """Restart intensity: at most this many restarts of a child (and at most this many
    failures of it in a row, each before it ran RESTART_RESET_AFTER seconds) ..."""
    RESTART_WITHIN_SECONDS: float = 5.0
    """... within this many seconds (a sliding window); one more escalates."""
    RESTART_BACKOFF_INITIAL: float = 0.01
    """Delay before the first restart of a child, in seconds (<= RESTART_BACKOFF_MAX)."""
    RESTART_BACKOFF_MAX: float = 5.0
    """Longest delay between restarts, in seconds."""
    RESTART_RESET_AFTER: float = 10.0
    """A child stable this many seconds starts its backoff from the first step again."""
    CLEANUP_INTERVAL: float = 60.0
    """Seconds between periodic cleanups of finished tasks; 0 turns it off (finished
    tasks are then kept until `cleanup_completed_tasks` or `MAX_FINISHED_TASKS`)."""
    CLEANUP_MAX_AGE: float = 3600.0
    """Periodic cleanup removes tasks finished longer ago than this, in seconds."""
    MAX_FINISHED_TASKS: int = 10_000
    """Finished tasks kept per task manager: when one more finishes, the one that
    finished first is removed (as a cleanup would). 0 keeps every finished task."""
    MAILBOX_BUFFER_CAPACITY: int = 1000
    """Callers' calls buffered for a child that is down or in backoff (>= 0); one more
    fails with `SystemOverloadedError`. The system's own messages are never refused."""
    CALL_TIMEOUT: float = 30.0
    """Upper bound, in seconds, on one call into an actor."""
    SHUTDOWN_TIMEOUT: float = 10.0
    """Upper bound, in seconds, on stopping the actor system: one deadline, set when the
    stop begins, for every stage (cancelling the tasks, the dashboards, each child's
    stop in reverse order, the pool's wait for functions still running). A child still
    stopping at the deadline is abandoned (it goes on stopping in its daemon thread);
    one that stops later records nothing more: a task manager stopped past it does not
    send the journal what it held back (those durable tasks come back as they were last
    written). ``STOP_SLACK`` (1 s) more for the journal's last write, then the file is
    closed, and for the system's loop threads to end (one still busy then is abandoned,
    with a warning); worker processes of the ``process`` and ``dask`` executors are
    killed and joined (a cluster closed) even past it, in ``CLOSE_SECONDS`` (5 s) at
    most, and the loop threads then get until that end too. ``with ActorSystem()``
    waits for all of it (and 2 s more for the answer to come back)."""
    RESOURCE_CHECK_INTERVAL: float = 0.0
    """Seconds between CPU/memory samples of the resource governor; 0 turns it off."""
    CPU_HIGH_PERCENT: float = 85.0
    """Above this CPU %, the governor lowers the concurrency limit (a warning event);
    <= CPU_CRITICAL_PERCENT."""
    MEMORY_HIGH_PERCENT: float = 85.0
    """Above this memory %, the governor lowers the concurrency limit (a warning event);
    <= MEMORY_CRITICAL_PERCENT."""
    CPU_CRITICAL_PERCENT: float = 95.0
    """Above this CPU %, the resource event is critical."""
    MEMORY_CRITICAL_PERCENT: float = 95.0
    """Above this memory %, the resource event is critical."""
    EVENT_BUFFER_SIZE: int = 1000
    """Events buffered per `events()` subscriber; past it the oldest are dropped."""
    BREAKER_FAILURE_THRESHOLD: int = 5
    """Consecutive failures that open a breaker created by name in register_task."""
    BREAKER_RECOVERY_TIMEOUT: float = 30.0
    """Seconds an open breaker (created by name) waits before half-opening."""
    BREAKER_HALF_OPEN_MAX_CALLS: int = 1
    """Trial calls a half-open breaker (created by name) lets through."""
    METRICS_HISTOGRAM_BUCKETS: tuple[float, ...] = (
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    )  # fmt: skip
    """Upper bounds, in seconds, of the run-time and wait-time histogram buckets of
    `actors.prometheus_collector` (``+Inf`` is added); increasing, each > 0. In the
    environment: comma-separated (``ACTORFLOW_METRICS_HISTOGRAM_BUCKETS=0.1,1,10``)."""
    DASHBOARD_TOKEN: str | None = None
    """The bearer token the dashboard's API asks for (None: no token; see README)."""
    METRICS_MAX_TASK_TYPES: int = 100
    """Task types the metrics label by name (>= 1). Tasks of further types are counted
    under the label ``"__other__"``; a type whose tasks were all cleaned up gives its
    label (and its timing statistics) up, so a later type can take it."""
    JOURNAL_PATH: str | None = None
    """The SQLite file that journals durable tasks, so a restart loses none of them
    (a str or path; None: tasks live in memory only, and nothing touches a disk)."""
    JOURNAL_SYNC: str = "normal"
    """When a journal commit is durable: ``normal`` (it survives a crash of the process)
    or ``full`` (it survives a power loss too; slower commits)."""
    JOURNAL_SERIALIZER: str = "json"
    """How task arguments and results are journaled: ``json`` (tagged JSON) or
    ``pickle`` (takes more types; reading a pickle runs code: trust the file as your code)."""
    MAX_RECOVERIES: int = 3
    """Times recovery runs again a task that was running at a crash (>= 0); at the next
    crash the task ends failed instead of crash-looping the service (a poison task)."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = _checked(spec.name, getattr(self, spec.name), "from Config()")
            object.__setattr__(self, spec.name, value)
        _check_order(self)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied, checked like every other source."""
        checked = _from_mapping(changes, "from Config.replace()")
        return dataclasses.replace(self, **checked)

    def as_dict(self) -> dict[str, Any]:
        """Every key and its value, in declaration order."""
        return {spec.name: getattr(self, spec.name) for spec in dataclasses.fields(self)}


def load_config(
    mapping: Mapping[str, Any] | None = None,
    *,
    toml_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build a `Config` from defaults < TOML file < ``ACTORFLOW_*`` variables < ``mapping``.

    ``env`` defaults to `os.environ`. Without ``toml_path``, a non-empty
    ``ACTORFLOW_CONFIG`` variable names the TOML file. The file holds the keys at top
    level, or under an ``[actorflow]`` table (then only that table is read). Raises
    `ConfigError` for an unknown key, a value of the wrong type or range, two values out
    of order (a ``*_HIGH_PERCENT`` above its ``*_CRITICAL_PERCENT``,
    ``RESTART_BACKOFF_INITIAL`` above ``RESTART_BACKOFF_MAX``; checked on the merged
    layers), or a file that cannot be read or parsed.
    """
    if env is not None and not isinstance(env, Mapping):
        raise ConfigError(
            f"env must be a mapping of environment variables (str to str) or None "
            f"(os.environ), got {safe_repr(env)}"
        )
    if toml_path is not None and not isinstance(toml_path, str | os.PathLike):
        raise ConfigError(
            f"toml_path must be the path of a TOML file (a str or os.PathLike) or None, "
            f"got {safe_repr(toml_path)}"
        )
    if env is not None:
        for name, text in env.items():
            if not isinstance(name, str) or not isinstance(text, str):
                # (sorted() over mixed keys, or .strip() of a value, raised bare errors)
                raise ConfigError(
                    f"env must be a mapping of environment variables (str to str) or None "
                    f"(os.environ), got {safe_repr(name)}: {safe_repr(text)}"
                )
    environ: Mapping[str, str] = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = toml_path
    via = ""
    if path is None and environ.get(CONFIG_ENV_VAR):
        path = environ[CONFIG_ENV_VAR]
        via = f" (named by {CONFIG_ENV_VAR})"
    if path is not None:
        values.update(_read_toml(path, via))
    values.update(_from_env(environ))
    if mapping is not None:
        given: object = mapping
        if not isinstance(given, Mapping):
            raise ConfigError(
                f"configuration must be a mapping of upper-case keys, got {safe_repr(given)}"
            )
        values.update(_from_mapping(given, "from the config mapping"))
    return Config(**values)
