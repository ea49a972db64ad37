"""Group commit: records accumulate, one `flush` writes them all in one transaction.

`JournalWriter` is a plain object (no thread, no actor): the journal actor adds the
records of the engine's transitions and flushes when its mailbox is empty. Records of
one task coalesce, so a task that went pending -> queued -> running -> completed since
the last flush costs one row write. A failed flush is reported to ``on_error`` (never
raised) and its records stay pending, for the next flush, by this incarnation of the
actor or the next (the state-handover pattern of the supervised children: the writer
lives in the `JournalState` that outlives an incarnation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from actors.core import JournalError, JournalStoreError
from actors.journal._records import Record, StatusChange, TaskRow, merge
from actors.journal._store import JournalStore

__all__ = ["JournalWriter"]


def _grouped(records: Iterable[Record]) -> list[Record]:
    """``records`` with those of one kind together, each kind in order: rows, changes,
    then deletions (the store writes each run in a few statements). One pass, no sort."""
    rows: list[Record] = []
    changes: list[Record] = []
    other: list[Record] = []
    for record in records:
        kind = type(record)
        (changes if kind is StatusChange else rows if kind is TaskRow else other).append(record)
    rows += changes
    rows += other
    return rows


class JournalWriter:
    """Pending records of a `JournalStore`, coalesced per task, written by `flush`.

    ``on_error(error, records)`` is called with the `JournalError` of a failed flush and
    the number of records it kept pending.
    """

    __slots__ = ("_on_error", "_pending", "store")

    def __init__(
        self,
        store: JournalStore,
        *,
        on_error: Callable[[JournalError, int], object],
    ) -> None:
        self.store = store
        self._on_error = on_error
        self._pending: dict[str, Record] = {}

    def add_all(self, records: Iterable[Record]) -> None:
        """Queue each of ``records``, in order, merged with the task's pending record if
        there is one."""
        pending = self._pending
        get = pending.get
        for record in records:
            task_id = record.task_id
            earlier = get(task_id)
            pending[task_id] = record if earlier is None else merge(earlier, record)

    def flush(self) -> bool:
        """Write every pending record in one transaction.

        True: they are committed (or there was nothing to write). False: the error went
        to ``on_error`` and the records stay pending (records added later merge in).
        """
        if not self._pending:
            return True
        if not self._write(_grouped(self._pending.values())):
            return False
        self._pending.clear()
        return True

    def _write(self, batch: list[Record]) -> bool:
        """Write ``batch`` in one transaction; False (reported) if it failed."""
        try:
            self.store.write(batch)
        except Exception as exc:  # the store raises JournalError; anything else is wrapped
            error = (
                exc
                if isinstance(exc, JournalError)
                else JournalStoreError(
                    f"cannot write journal {self.store.path!r}: {type(exc).__name__}: {exc}"
                )
            )
            self._on_error(error, len(batch))
            return False
        return True

    def flush_changes(self, task_ids: Iterable[str]) -> bool | None:
        """Write the pending records of ``task_ids`` alone, in one transaction, when
        each is a `StatusChange` (its row is in the file: writing it before other
        tasks' records changes no row's place). None: one is not (nothing written;
        `flush` them all). True: committed, or nothing pending for them. False: the
        error went to ``on_error`` and they stay pending."""
        pending = self._pending
        batch: list[Record] = []
        for task_id in dict.fromkeys(task_ids):  # each once (a task started again)
            record = pending.get(task_id)
            if record is None:
                continue
            if type(record) is not StatusChange:
                return None
            batch.append(record)
        if not batch:
            return True
        if not self._write(batch):
            return False
        for record in batch:
            del pending[record.task_id]
        return True

    def pending(self) -> list[Record]:
        """The records not written yet, in order (a copy)."""
        return list(self._pending.values())

    def __len__(self) -> int:
        return len(self._pending)

    def __repr__(self) -> str:
        return f"JournalWriter({self.store!r}, pending={len(self._pending)})"
