"""What a journal stores of a task's values: text (JSON) or bytes (pickle).

Functions are stored by reference: see `actors.journal._functions`.

Values (arguments, keyword arguments, metadata, results) use one of `SERIALIZERS`:

- ``"json"`` (the default): JSON text; ``None``, `bool`, `int`, `float` (NaN and the
  infinities included), `str`, `list` and `dict` with `str` keys as themselves; `tuple`,
  `bytes`, `set`, `frozenset` and dicts with other keys (or with the key ``TAG``) as a
  tagged object ``{"__actorflow__": kind, ...}`` that decodes to the same type; instances
  of classes registered with `register_placeholder` (``result_of`` references) as a
  tagged object too. Types are matched exactly: a subclass (an enum, a named tuple) is
  refused rather than decoded as its base. Anything else is refused with an error that
  names the argument, where in it, and the type.
- ``"pickle"`` (opt-in): bytes from `pickle`, which takes most objects. Reading a pickle
  runs code the file chose: use it only for a journal file you trust as much as your
  code. A codec built for ``"json"`` refuses to read pickled payloads.

JSON payloads are `str` (stored as TEXT), pickled ones `bytes` (BLOB): a payload says
which serializer wrote it.
"""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote
from operator import attrgetter
from typing import Any, NamedTuple

from actors.core import InvalidTaskError, JournalDecodeError, JournalEncodeError
from actors.engine import ResultOf
from actors.journal._functions import NOT_DURABLE as _NOT_DURABLE
from actors.journal._functions import type_name as _type_name

__all__ = [
    "SERIALIZERS",
    "TAG",
    "Codec",
    "EncodedResult",
    "Payload",
    "error_fields",
    "register_placeholder",
]

SERIALIZERS: tuple[str, ...] = ("json", "pickle")
"""The values ``JOURNAL_SERIALIZER`` accepts."""

TAG = "__actorflow__"
"""The key of the tagged JSON objects the codec writes for non-JSON types."""

Payload = str | bytes
"""An encoded value: JSON text (`str`) or a pickle (`bytes`)."""

_JSON_TYPES = (
    "None, bool, int, float, str, bytes, list, tuple, set, frozenset, dict and registered "
    "placeholders"
)


class EncodedResult(NamedTuple):
    """A task's result as journaled: a payload, or a note saying why there is none."""

    payload: Payload | None
    """The encoded result; None when it did not serialize (then ``note`` says so)."""
    note: str | None
    """``"result not serializable: <type>"`` (and where, or the pickle error), or None."""


# --- placeholders -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Placeholder:
    kind: type
    tag: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


_PLACEHOLDERS: dict[type, _Placeholder] = {}
_BY_TAG: dict[str, _Placeholder] = {}


def register_placeholder(
    cls: type,
    encode: Callable[[Any], Any],
    decode: Callable[[Any], Any],
    *,
    tag: str | None = None,
) -> None:
    """Let the JSON codec journal instances of ``cls`` (a ``result_of`` reference).

    An instance must have a `str` ``task_id`` attribute. ``encode(instance)`` returns a
    value the codec encodes (JSON types, tuples...); ``decode(value)`` rebuilds the
    instance. ``tag`` (default ``"module.qualname"`` of ``cls``) is written to the file,
    so it must stay the same across versions. Registering ``cls`` again replaces it.
    """
    if not isinstance(cls, type):
        raise InvalidTaskError(f"register_placeholder: cls must be a class, got {cls!r}")
    if not callable(encode) or not callable(decode):
        raise InvalidTaskError(
            f"register_placeholder: encode and decode must be callable, got {encode!r} "
            f"and {decode!r}"
        )
    name = f"{cls.__module__}.{cls.__qualname__}" if tag is None else tag
    if not isinstance(name, str) or not name:
        raise InvalidTaskError(f"register_placeholder: tag must be a non-empty str, got {tag!r}")
    taken = _BY_TAG.get(name)
    if taken is not None and taken.kind is not cls:
        raise InvalidTaskError(
            f"register_placeholder: tag {name!r} is taken by {_type_name(taken.kind)}; "
            "pass another tag"
        )
    old = _PLACEHOLDERS.pop(cls, None)
    if old is not None:
        del _BY_TAG[old.tag]
    entry = _Placeholder(cls, name, encode, decode)
    _PLACEHOLDERS[cls] = entry
    _BY_TAG[name] = entry


# --- JSON with tags -----------------------------------------------------------------------


class _Unsupported(Exception):
    """A value the JSON codec does not take; ``path`` grows as the error unwinds."""

    def __init__(self, kind: type, why: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.why = why
        self.path: list[str] = []


def _tagged(kind: str, items: list[Any]) -> dict[str, Any]:
    return {TAG: kind, "items": items}


def _items(values: Any) -> list[Any]:
    out: list[Any] = []
    for index, item in enumerate(values):
        try:
            out.append(_to_json(item))
        except _Unsupported as exc:
            exc.path.append(f"[{index}]")
            raise
    return out


def _to_json(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is list:
        return _items(value)
    if kind is dict:
        if TAG not in value and all(type(key) is str for key in value):
            out: dict[str, Any] = {}
            for key, item in value.items():
                try:
                    out[key] = _to_json(item)
                except _Unsupported as exc:
                    exc.path.append(f"[{key!r}]")
                    raise
            return out
        pairs: list[Any] = []
        for key, item in value.items():
            try:
                encoded_key = _to_json(key)
            except _Unsupported as exc:
                exc.path.append(f"[key {key!r}]")
                raise
            try:
                pairs.append([encoded_key, _to_json(item)])
            except _Unsupported as exc:
                exc.path.append(f"[{key!r}]")
                raise
        return _tagged("dict", pairs)
    if kind is tuple:
        return _tagged("tuple", _items(value))
    if kind is bytes:
        return {TAG: "bytes", "base64": base64.b64encode(value).decode("ascii")}
    if kind is set or kind is frozenset:
        return _tagged(kind.__name__, _items(value))
    entry = _PLACEHOLDERS.get(kind)
    if entry is None:
        raise _Unsupported(kind)
    if not isinstance(getattr(value, "task_id", None), str):
        raise _Unsupported(kind, "a placeholder without a str task_id")
    try:
        encoded = entry.encode(value)
    except Exception as exc:  # the registered encode is someone else's code
        raise _Unsupported(kind, f"whose encode raised {type(exc).__name__}: {exc}") from exc
    return {TAG: "placeholder", "type": entry.tag, "value": _to_json(encoded)}


def _from_tagged(obj: dict[str, Any]) -> Any:
    kind = obj.get(TAG)
    if kind is None:
        return obj
    if kind == "tuple":
        return tuple(obj["items"])
    if kind == "dict":
        return dict(obj["items"])
    if kind == "bytes":
        return base64.b64decode(obj["base64"])
    if kind == "set":
        return set(obj["items"])
    if kind == "frozenset":
        return frozenset(obj["items"])
    if kind == "placeholder":
        entry = _BY_TAG.get(obj["type"])
        if entry is None:
            raise ValueError(f"no placeholder class is registered for {obj['type']!r}")
        return entry.decode(obj["value"])
    raise ValueError(f"unknown tag {kind!r}")


_SCALARS = frozenset((str, int, float, bool, type(None)))
"""Types `_to_json` returns as they are."""
_EMPTY_JSON = "{}"

_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_loads = json.JSONDecoder(object_hook=_from_tagged).decode
_NULL = EncodedResult("null", None)
"""``None`` as a result (most tasks'), encoded once."""


_int_json = int.__repr__
"""An int's JSON (a bool's is not: it is no int here)."""


def _plain_list(values: Sequence[Any]) -> str | None:
    """``_dumps(values)`` when every value is an int or a str (exactly those types), in
    a third of the time; None otherwise."""
    parts: list[str] = []
    append = parts.append
    for value in values:
        kind = type(value)
        if kind is int:
            append(_int_json(value))
        elif kind is str:
            append(_quote(value))
        else:
            return None
    return f"[{','.join(parts)}]"


def _where(exc: _Unsupported) -> str:
    return "".join(reversed(exc.path))


# --- the codec ----------------------------------------------------------------------------


class Codec:
    """Encodes and decodes the values of tasks with one of `SERIALIZERS`.

    Every ``task`` argument is the task's name or id, for the messages.
    """

    __slots__ = ("empty", "serializer")

    def __init__(self, serializer: str = "json") -> None:
        if serializer not in SERIALIZERS:
            raise InvalidTaskError(
                f"serializer must be one of {', '.join(map(repr, SERIALIZERS))}, got {serializer!r}"
            )
        self.serializer = serializer
        self.empty: Payload = (
            _EMPTY_JSON if serializer == "json" else pickle.dumps({}, pickle.HIGHEST_PROTOCOL)
        )
        """An empty dict encoded (most keyword arguments and metadata)."""

    def __repr__(self) -> str:
        return f"Codec({self.serializer!r})"

    def encode_value(self, value: Any, *, what: str, task: str) -> Payload:
        """``value`` encoded; ``what`` names it in an error (``"argument 'x'"``).

        Raises `JournalEncodeError` naming ``what``, where inside it, and the type.
        """
        if self.serializer == "pickle":
            try:
                return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # pickle raises PicklingError, TypeError, AttributeError...
                raise JournalEncodeError(
                    f"task {task!r} cannot be durable: {what} ({_type_name(type(value))}) "
                    f"does not pickle ({type(exc).__name__}: {exc}){_NOT_DURABLE}"
                ) from exc
        try:
            return _dumps(_to_json(value))
        except _Unsupported as exc:
            why = exc.why or "not JSON-serializable"
            raise JournalEncodeError(
                f"task {task!r} cannot be durable: {what}{_where(exc)} is a "
                f"{_type_name(exc.kind)}, {why} (the JSON journal takes {_JSON_TYPES}; "
                f"JOURNAL_SERIALIZER='pickle' takes more){_NOT_DURABLE}"
            ) from None
        except RecursionError:
            raise JournalEncodeError(
                f"task {task!r} cannot be durable: {what} is nested too deeply (or contains "
                f"itself){_NOT_DURABLE}"
            ) from None

    def decode_value(self, payload: Payload, *, what: str, task: str) -> Any:
        """The value `encode_value` encoded. Raises `JournalDecodeError` naming ``what``."""
        if isinstance(payload, bytes):
            if self.serializer != "pickle":
                raise JournalDecodeError(
                    f"task {task!r}: {what} was journaled with pickle; set "
                    "JOURNAL_SERIALIZER='pickle' to read it (only if you trust the file)"
                )
            loader: Callable[[Any], Any] = pickle.loads
        else:
            loader = _loads
        try:
            return loader(payload)
        except Exception as exc:  # a damaged payload, or a class gone since
            raise JournalDecodeError(
                f"task {task!r}: {what} cannot be decoded ({type(exc).__name__}: {exc})"
            ) from exc

    def encode_args(
        self, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any], *, task: str
    ) -> tuple[Payload, Payload]:
        """The positional and keyword arguments, encoded; errors name the argument."""
        if self.serializer == "json":
            try:
                # ints and strs only (the common case): joined here, no encoder to call;
                # other scalars encode as themselves: no copy to walk.
                encoded = _plain_list(args)
                if encoded is None:
                    scalars = all(map(_SCALARS.__contains__, map(type, args)))
                    encoded = _dumps(args if scalars else _items(args))
                return encoded, _dumps(_to_json(dict(kwargs))) if kwargs else _EMPTY_JSON
            except (_Unsupported, RecursionError):
                pass  # find the argument, for the message
        else:
            try:
                return self.encode_value(tuple(args), what="", task=task), self.encode_value(
                    dict(kwargs), what="", task=task
                )
            except JournalEncodeError:
                pass
        for index, arg in enumerate(args):
            self.encode_value(arg, what=f"argument {index}", task=task)
        for name, arg in kwargs.items():
            self.encode_value(arg, what=f"argument {name!r}", task=task)
        # Each encodes alone, not together: only the one more level of nesting is left.
        raise JournalEncodeError(
            f"task {task!r} cannot be durable: its arguments are nested too deeply{_NOT_DURABLE}"
        )

    def decode_args(
        self, args: Payload, kwargs: Payload, *, task: str
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments `encode_args` encoded: a tuple and a dict."""
        return (
            tuple(self.decode_value(args, what="its arguments", task=task)),
            self.decode_value(kwargs, what="its keyword arguments", task=task),
        )

    def encode_result(self, value: Any, *, task: str) -> EncodedResult:
        """The result encoded, or a note ``"result not serializable: <type>"``; never raises
        for a value that does not serialize (it is recorded as such)."""
        if type(value) in _SCALARS and self.serializer == "json":
            if value is None:
                return _NULL
            # An int's JSON is its repr (a bool's is not: "true").
            payload = int.__repr__(value) if type(value) is int else _dumps(value)
            return tuple.__new__(EncodedResult, (payload, None))  # no `__new__` call in Python
        try:
            return EncodedResult(self.encode_value(value, what="result", task=task), None)
        except JournalEncodeError as exc:
            cause = exc.__cause__
        if self.serializer == "pickle":
            detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
            return EncodedResult(None, f"result not serializable: {_type_name(type(value))}"
                                 f"{detail}")  # fmt: skip
        try:
            _to_json(value)
        except _Unsupported as unsupported:
            where = _where(unsupported)
            at = f" (at result{where})" if where else ""
            return EncodedResult(
                None, f"result not serializable: {_type_name(unsupported.kind)}{at}"
            )
        except RecursionError:
            pass
        return EncodedResult(None, f"result not serializable: {_type_name(type(value))} "
                                   "(nested too deeply)")  # fmt: skip


def error_fields(error: BaseException) -> tuple[str, str]:
    """``(type, message)`` of a task's error as the journal stores them: the type's
    qualified name and its text, made storable (lone surrogates escaped)."""
    try:
        text = str(error)
    except Exception as exc:  # a broken __str__ of the user's exception
        text = f"<str() failed: {type(exc).__name__}>"
    return _type_name(type(error)), text.encode("utf-8", "backslashreplace").decode("utf-8")


# The task system's own placeholder journals under a tag that stays across versions.
register_placeholder(ResultOf, attrgetter("task_id"), ResultOf, tag="actorflow.result_of")
