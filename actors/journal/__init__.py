"""The durable-task journal: an SQLite file that outlives the process (issue 14).

`JournalStore` is the file, `JournalWriter` batches records into it (group commit),
`Codec` and `function_reference` turn a task into what the file holds. Its errors
(`JournalError` and subclasses) live with the others in `actors.core`.
"""

from actors.journal._codec import (
    SERIALIZERS,
    TAG,
    Codec,
    EncodedResult,
    error_fields,
    register_placeholder,
)
from actors.journal._functions import NOT_DURABLE, function_reference, resolve_function
from actors.journal._records import STATE_AT, Deletion, Record, StatusChange, TaskRow, merge
from actors.journal._store import SCHEMA_VERSION, SYNC_MODES, JournalStore
from actors.journal._writer import JournalWriter

__all__ = [
    "NOT_DURABLE",
    "SCHEMA_VERSION",
    "SERIALIZERS",
    "STATE_AT",
    "SYNC_MODES",
    "TAG",
    "Codec",
    "Deletion",
    "EncodedResult",
    "JournalStore",
    "JournalWriter",
    "Record",
    "StatusChange",
    "TaskRow",
    "error_fields",
    "function_reference",
    "merge",
    "register_placeholder",
    "resolve_function",
]
