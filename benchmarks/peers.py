"""Peers: the S1 workload on Ray tasks, Ray actors and Dask futures, when installed.

Each peer runs N no-op calls submitted all at once and gathered, alternating with
actorflow's S1 in the same process; the ratio is actorflow / peer. Ray tasks and Dask
futures run a plain function (what they take); a Ray actor is called N times on one
actor, like S1's pykka baseline. Dask's in-process scheduler and threads are started
before the clock starts and stopped after it stops, per measurement. Ray is started
once for both of its rows (``ray.init`` takes seconds): local only (a new instance on
127.0.0.1, never a cluster found through ``RAY_ADDRESS``), 2 CPUs, no dashboard, no
usage statistics, its log lines at ERROR and above; it is shut down before the
scenario returns. When a peer does not import, its rows say "not installed"; nothing
is installed for it (``pip install 'actorflow[ray]'`` or ``'actorflow[dask]'``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from ._core import US_PER_TASK, Figure, Result, Settings, alternate, column, per_task_us
from ._workloads import actorflow_fanout, expect, plain

NAME = "peers"
TITLE = "S1 on Ray tasks, Ray actors and Dask futures (when installed)"
LIBRARY_THREADS = ("Dask-Offload",)
"""Thread name prefixes of process-wide pools a peer creates at first use and keeps for
the life of the process by design (dask's module-level offload executor): not a leak
of this suite, and not ours to stop."""


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def installed() -> dict[str, bool]:
    return {"ray": _imports("ray"), "dask.distributed": _imports("dask.distributed")}


def steps(settings: Settings) -> int:
    rows = sum(len(PEERS[module]) for module, present in installed().items() if present)
    return settings.repeats * 2 * rows


RAY_CPUS = 2
RAY_QUEUE_WARNING = 1_000_000


@contextlib.contextmanager
def ray_session() -> Iterator[Any]:
    """A local Ray instance for the measurements inside the block; shut down after."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # read when ray starts, so set first
    import ray

    ray.init(
        address="local",
        num_cpus=RAY_CPUS,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        _node_ip_address="127.0.0.1",
        # S1 queues all N calls on one actor at once, on purpose (as the pykka baseline
        # does); Ray would warn about it at 5,000.
        _system_config={"actor_excess_queueing_warn_threshold": RAY_QUEUE_WARNING},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


class RayNoop:
    """The Ray actor of the S1 workload: one method returning its argument."""

    def noop(self, i: int) -> int:
        return i


def ray_task_fanout(ray: Any, n: int) -> float:
    task = ray.remote(plain)
    ray.get(task.remote(0))  # a worker is up before the clock starts
    started = time.perf_counter()
    results = ray.get([task.remote(i) for i in range(n)])
    elapsed = time.perf_counter() - started
    expect(list(results), n, "Ray tasks")
    return per_task_us(elapsed, n)


def ray_actor_fanout(ray: Any, n: int) -> float:
    actor = ray.remote(RayNoop).remote()
    try:
        ray.get(actor.noop.remote(0))  # the actor is up before the clock starts
        started = time.perf_counter()
        results = ray.get([actor.noop.remote(i) for i in range(n)])
        elapsed = time.perf_counter() - started
    finally:
        ray.kill(actor)
    expect(list(results), n, "Ray actor calls")
    return per_task_us(elapsed, n)


def dask_fanout(n: int) -> float:
    from dask.distributed import Client

    # The scheduler always serves HTTP: ":0" takes a free port (8787 may be in use by
    # someone else, which distributed reports with a warning). Closing the cluster
    # closes its workers first, but a worker's heartbeat already in flight then fails
    # and is logged at ERROR with a traceback (distributed 2026.8): the cluster's
    # loggers are at CRITICAL while it lives. A failed measurement still raises.
    with Client(
        processes=False,
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": False},
        silence_logs=logging.CRITICAL,
    ) as client:
        client.gather(client.submit(plain, -1, pure=False))
        started = time.perf_counter()
        futures = client.map(plain, range(n), pure=False)
        results = client.gather(futures)
        elapsed = time.perf_counter() - started
    expect(list(results), n, "Dask futures")
    return per_task_us(elapsed, n)


PEERS: dict[str, tuple[str, ...]] = {
    "ray": ("Ray tasks", "Ray actor calls"),
    "dask.distributed": ("Dask futures",),
}


def _not_installed(label: str, module: str) -> Result:
    return Result(
        NAME,
        f"S1 on {label}",
        None,
        status="not installed",
        note=f"{module} does not import here; not measured",
    )


def _row(n: int, label: str, samples: dict[str, list[Any]]) -> Result:
    return Result(
        NAME,
        f"N={n:,} S1: actorflow vs {label}",
        Figure("facade fan-out", US_PER_TASK, column(samples["actorflow"])),
        Figure(label, US_PER_TASK, column(samples["peer"])),
        note="no goal: where actorflow stands",
    )


def _against(settings: Settings, n: int, where: str, peer: Callable[[], float]) -> Result:
    samples = alternate(
        settings, f"{NAME} {where}", {"actorflow": lambda: actorflow_fanout(n)["us"], "peer": peer}
    )
    return _row(n, where, samples)


def run(settings: Settings) -> list[Result]:
    # Quick: few tasks, since a Dask future costs about 2 ms here and a Ray task more
    # (the quick run must stay under a minute).
    n = settings.size(20_000, 500)
    present = installed()
    rows = []
    if present["ray"]:
        with ray_session() as ray:
            rows.append(_against(settings, n, "Ray tasks", lambda: ray_task_fanout(ray, n)))
            rows.append(_against(settings, n, "Ray actor calls", lambda: ray_actor_fanout(ray, n)))
    else:
        rows.extend(_not_installed(label, "ray") for label in PEERS["ray"])
    if present["dask.distributed"]:
        rows.append(_against(settings, n, "Dask futures", lambda: dask_fanout(n)))
    else:
        rows.append(_not_installed("Dask futures", "dask.distributed"))
    return rows
