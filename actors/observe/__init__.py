"""Observation: events, metrics and histograms, the task graph, the governor, tracing.

Plain data and pure functions fed from engine transitions; the monitor actor (runtime)
holds them.
"""

from actors.observe._events import Event, EventKind, EventStream, Subscriber, kind_of_transition
from actors.observe._governor import (
    GovernorPolicy,
    Pressure,
    ResourceSample,
    decide,
    psutil_probe,
)
from actors.observe._histogram import Histogram
from actors.observe._metrics import (
    MetricsSnapshot,
    QuantileSketch,
    TimingStats,
    empty_snapshot,
    render_prometheus,
    snapshot_collector,
)
from actors.observe._taskgraph import GraphvizNotFoundError, TaskGraph, TaskNode, check_depth
from actors.observe._tracing import (
    capture,
    end_span,
    new_trace,
    start_span,
    stop_span,
    traced_await,
    traced_call,
)

__all__ = [
    "Event",
    "EventKind",
    "EventStream",
    "GovernorPolicy",
    "GraphvizNotFoundError",
    "Histogram",
    "MetricsSnapshot",
    "Pressure",
    "QuantileSketch",
    "ResourceSample",
    "Subscriber",
    "TaskGraph",
    "TaskNode",
    "TimingStats",
    "capture",
    "check_depth",
    "decide",
    "empty_snapshot",
    "end_span",
    "kind_of_transition",
    "new_trace",
    "psutil_probe",
    "render_prometheus",
    "snapshot_collector",
    "start_span",
    "stop_span",
    "traced_await",
    "traced_call",
]
