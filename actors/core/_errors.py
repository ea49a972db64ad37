"""Every error the task system raises. One base class; each subclass says when."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorSystemError",
    "ActorsError",
    "BlockingCallError",
    "BreakerConfigError",
    "CallTimeout",
    "CircuitOpenError",
    "ConfigError",
    "DependencyCycleError",
    "DependencyFailedError",
    "DuplicateTaskError",
    "InvalidTaskError",
    "JournalDecodeError",
    "JournalEncodeError",
    "JournalError",
    "JournalFormatError",
    "JournalFullError",
    "JournalLockedError",
    "JournalStoreError",
    "JournaledError",
    "SystemOverloadedError",
    "TaskCancelledError",
    "TaskFailedError",
    "TaskNotExecutedError",
    "TaskNotFoundError",
    "TaskRecoveryError",
    "TaskTimeoutError",
    "WaitTimeoutError",
]


class ActorsError(Exception):
    """Base class of every error actorflow's task system raises."""


class InvalidTaskError(ActorsError, ValueError):
    """An argument of a public call is of the wrong type or value.

    Raised before anything changes; the message names the argument and the value.
    """


class ConfigError(InvalidTaskError):
    """A configuration key is unknown or its value has the wrong type or range.

    Raised at start-up (or by `actors.configure`); the message names the key.
    """


class TaskNotFoundError(ActorsError, LookupError):
    """No task has the given id (never registered, or already cleaned up)."""

    @classmethod
    def for_id(cls, task_id: str) -> TaskNotFoundError:
        """The error of a call naming ``task_id``, which names no task."""
        return cls(f"no task with id {task_id!r} (never registered, or cleaned up)")


class TaskNotExecutedError(ActorsError):
    """``wait_for_task`` without a timeout on a task that was registered but never
    executed: nothing would ever end that wait. Execute it first (or pass a timeout, to
    wait for someone else to execute it)."""


class DuplicateTaskError(ActorsError):
    """``register_task(task_id=...)`` named an id that is already taken."""


class DependencyCycleError(ActorsError):
    """A dependency would close a cycle; the message lists it (``a -> b -> a``)."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(
            "dependency cycle: " + " -> ".join(cycle) + "; remove one of these dependencies"
        )


class DependencyFailedError(ActorsError):
    """A task was cancelled because a task it depends on failed or was cancelled.

    The message names both tasks by name and id: ``task 'parse' (t1a2b-3) cancelled: its
    dependency 'fetch' (t1a2b-2) failed`` (a name defaults to the id).
    """

    def __init__(
        self,
        task_id: str,
        dependency: str,
        dependency_status: str,
        task_name: str | None = None,
        dependency_name: str | None = None,
    ) -> None:
        self.task_id = task_id
        self.dependency = dependency
        self.dependency_status = dependency_status
        self.task_name = task_id if task_name is None else task_name
        self.dependency_name = dependency if dependency_name is None else dependency_name
        super().__init__(
            f"task {self.task_name!r} ({task_id}) cancelled: its dependency "
            f"{self.dependency_name!r} ({dependency}) {dependency_status}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (it is passed to a task with on_dependency_failure="run", which may
        # run in another process): rebuilt from its fields, not from its message.
        fields = (
            self.task_id,
            self.dependency,
            self.dependency_status,
            self.task_name,
            self.dependency_name,
        )
        return (type(self), fields, self.__dict__)


class TaskTimeoutError(ActorsError, TimeoutError):
    """An attempt ran longer than the task's ``timeout`` (retried while retries remain)."""


class WaitTimeoutError(ActorsError, TimeoutError):
    """``wait_for_task(timeout=...)`` gave up waiting: the task has not ended and goes on.

    Never the task's own outcome: a task that failed with a `TimeoutError` of its own
    (`TaskTimeoutError`, ``asyncio.wait_for``, ``socket.timeout``...) raises that error.
    """


class TaskCancelledError(ActorsError):
    """The task was cancelled with ``cancel_task`` (or the system shut down under it)."""


class TaskFailedError(ActorsError):
    """A task ended in a way that is not an ordinary exception of its own code.

    Its code raised a `BaseException` that is not an `Exception` (``SystemExit`` from
    ``sys.exit()``, ``KeyboardInterrupt``, ``GeneratorExit``, one of your own): that ends
    the task, not the program, and is never retried. Or its ``retry_wait`` raised (or
    gave no finite delay) after an attempt failed: the task is not retried. Or it raised
    ``StopIteration``, which an asyncio future cannot carry: its caller gets this error
    instead (retries, if any, went as for any exception). The original exception is the
    ``__cause__``; the message names it.
    """


class CircuitOpenError(ActorsError):
    """The circuit breaker guarding the call is open: the call failed fast."""


class BreakerConfigError(ActorsError, ValueError):
    """A circuit breaker (or a breaker registry) got a bad argument, or a permit was
    released twice or to the wrong breaker. Raised before anything changes; the
    message names the argument and the value."""


class ActorSystemError(ActorsError):
    """The actor system is stopped, or has failed (a child exhausted its restarts).

    The message names the child and the reason when the system failed.
    """


class BlockingCallError(ActorsError):
    """A call of ``system.blocking`` (or ``with ActorSystem()``) came from a thread that
    runs an event loop: it would block that loop, and deadlock if the loop is the
    system's own. Use the async client (``await system.task_manager...``) there."""


class CallTimeout(ActorSystemError):
    """A call into the actor system got no answer within its bound: ``CALL_TIMEOUT``,
    the call's own ``timeout`` (plus a margin), ``SHUTDOWN_TIMEOUT``...; the message
    names the bound used and its value. What the call had sent by then is not
    withdrawn: it may still take effect (check, e.g. with ``get_task``, before retrying
    a registration)."""


class SystemOverloadedError(ActorsError):
    """A call was refused because a child of the system is restarting and already holds
    ``MAILBOX_BUFFER_CAPACITY`` buffered calls (back-pressure, not a failure).

    Nothing changed; retry after a short backoff, or raise ``MAILBOX_BUFFER_CAPACITY``.
    The system's own messages (task outcomes, timers) are never refused this way.
    """


class JournalError(ActorsError):
    """The durable-task journal (``JOURNAL_PATH``) could not do what was asked.

    The message names the file or the task, and the cause.
    """


class JournalEncodeError(JournalError, InvalidTaskError):
    """A task cannot be journaled: its function cannot be found again by name after a
    restart (a lambda, a local function, a bound method...), one of its arguments does
    not serialize, or it takes the `result_of` a task kept in memory only
    (``durable=False``). Raised before anything changes; the message says which and why, and
    suggests ``durable=False`` (keep that task in memory only).
    """


class JournalDecodeError(JournalError):
    """A journaled task cannot be read back: its function is no longer importable, its
    payload was written with a serializer not trusted now (pickle while
    ``JOURNAL_SERIALIZER="json"``), or the payload is damaged; or a recovered task takes
    the `result_of` a task whose result is not in the journal (it did not serialize).
    The message names the task.
    """


class JournalStoreError(JournalError):
    """The journal file could not be opened, read or written (an SQLite or OS error).

    The message names the file and the cause. The more specific cases are subclasses.
    """


class JournalFullError(JournalStoreError):
    """A write to the journal failed because the disk (or the file's size limit) is full.

    The transaction was rolled back: what was committed before is intact.
    """


class JournalLockedError(JournalStoreError):
    """The journal is in use: another system (in another process, or in this one) has
    ``JOURNAL_PATH`` open, which the message names with its pid; or another connection
    kept the file locked for longer than the busy timeout. Nothing was written.
    """


class JournalFormatError(JournalStoreError):
    """The file is not an actorflow journal: not an SQLite database, an SQLite database
    of something else, damaged, or written by a newer actorflow (a newer schema).
    """


class TaskRecoveryError(ActorsError):
    """A durable task was running when the process died more than ``MAX_RECOVERIES``
    times in a row: recovery ends it ``failed`` with this error instead of running it
    again (a poison task that kills its process would crash-loop the service)."""


class JournaledError(ActorsError):
    """The error of a task that failed or was cancelled before a restart, as the journal
    kept it: ``error_type`` is the original type's qualified name, the message its text.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type

    def __str__(self) -> str:
        return f"{self.error_type}: {self.args[0]}"
