"""The core: errors, task types, configuration, the task context, logging, the loop bridge.

Imports nothing else from `actors` (only `supervisors`' clock types); every other layer
builds on it. See docs/architecture.md, "Layers".
"""

from actors.core import _errors, _types, _util
from actors.core._bridge import (
    NO_REPLY,
    SWEEP_INTERVAL,
    Call,
    Cancellable,
    LoopBridge,
    Reply,
    ReplyTo,
    WithdrawableReply,
    bridge_for,
)
from actors.core._config import BACKENDS, Config, load_config
from actors.core._context import (
    TASK_CONTEXT,
    CancellationToken,
    TaskScope,
    cancellation_token,
    current_task_id,
)
from actors.core._errors import *  # noqa: F403  (every error, as listed in its __all__)
from actors.core._logging import (
    TASK_LOGGING,
    SafeRepr,
    bind_task_id,
    configure_logging,
    safe_repr,
    unbind_task_id,
)
from actors.core._loop_thread import LoopThread, end_tasks
from actors.core._stdlib_logging import TaskContextFilter
from actors.core._types import *  # noqa: F403  (the task types and statuses, per its __all__)
from actors.core._util import *  # noqa: F403  (the helpers, as listed in its __all__)

__all__ = [
    "BACKENDS",
    "NO_REPLY",
    "SWEEP_INTERVAL",
    "TASK_CONTEXT",
    "TASK_LOGGING",
    "Call",
    "Cancellable",
    "CancellationToken",
    "Config",
    "LoopBridge",
    "LoopThread",
    "Reply",
    "ReplyTo",
    "SafeRepr",
    "TaskContextFilter",
    "TaskScope",
    "WithdrawableReply",
    "bind_task_id",
    "bridge_for",
    "cancellation_token",
    "configure_logging",
    "current_task_id",
    "end_tasks",
    "load_config",
    "safe_repr",
    "unbind_task_id",
]
__all__ += _errors.__all__
__all__ += _types.__all__
__all__ += _util.__all__
