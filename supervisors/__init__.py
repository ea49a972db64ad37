"""Supervision trees for pykka actors: OTP semantics, Akka-style backoff via tenacity."""

from loguru import logger

from supervisors._actor import SupervisedActor, ask_into
from supervisors._clock import SYSTEM_CLOCK, Clock, RealClock, TimerHandle
from supervisors._errors import (
    ActorKilled,
    BufferFullError,
    ChildSpecError,
    ConsecutiveFailuresExceeded,
    RestartIntensityExceeded,
    SafeRepr,
    SupervisorError,
    safe_repr,
)
from supervisors._handle import ChildHandle, ChildStatus
from supervisors._messages import Kill, StopBy
from supervisors._spec import ChildSpec, Restart, RestartPolicy, Strategy
from supervisors._supervisor import (
    ChildCounts,
    ChildInfo,
    Supervisor,
    SupervisorEvent,
    SupervisorEventKind,
    SupervisorState,
)

__all__ = [
    "SYSTEM_CLOCK",
    "ActorKilled",
    "BufferFullError",
    "ChildCounts",
    "ChildHandle",
    "ChildInfo",
    "ChildSpec",
    "ChildSpecError",
    "ChildStatus",
    "Clock",
    "ConsecutiveFailuresExceeded",
    "Kill",
    "RealClock",
    "Restart",
    "RestartIntensityExceeded",
    "RestartPolicy",
    "SafeRepr",
    "StopBy",
    "Strategy",
    "SupervisedActor",
    "Supervisor",
    "SupervisorError",
    "SupervisorEvent",
    "SupervisorEventKind",
    "SupervisorState",
    "TimerHandle",
    "ask_into",
    "safe_repr",
]

logger.disable("supervisors")
