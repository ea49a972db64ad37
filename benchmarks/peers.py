"""Peers: the S1 workload on Ray tasks and on Dask futures, when they are installed.

Each peer runs N no-op tasks (a plain function: Ray remote functions and Dask futures
take plain callables) submitted all at once and gathered, alternating with actorflow's
S1 in the same process; the ratio is actorflow / peer. The cluster (Ray's local
workers, Dask's in-process scheduler and threads) is started before the clock starts
and stopped after it stops. When a peer does not import, its row says "not installed";
nothing is installed for it.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from typing import Any

from ._core import US_PER_TASK, Figure, Result, Settings, alternate, column, per_task_us
from ._workloads import actorflow_fanout, expect, plain

NAME = "peers"
TITLE = "S1 on Ray tasks and Dask futures (when installed)"
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
    peers = sum(installed().values())
    return settings.repeats * 2 * peers


def ray_fanout(n: int) -> float:
    import ray

    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(plain)
        ray.get(task.remote(0))  # the workers are up before the clock starts
        started = time.perf_counter()
        results = ray.get([task.remote(i) for i in range(n)])
        elapsed = time.perf_counter() - started
    finally:
        ray.shutdown()
    expect(list(results), n, "Ray tasks")
    return per_task_us(elapsed, n)


def dask_fanout(n: int) -> float:
    from dask.distributed import Client

    with Client(processes=False, dashboard_address=None) as client:
        client.gather(client.submit(plain, -1, pure=False))
        started = time.perf_counter()
        futures = client.map(plain, range(n), pure=False)
        results = client.gather(futures)
        elapsed = time.perf_counter() - started
    expect(list(results), n, "Dask futures")
    return per_task_us(elapsed, n)


PEERS: dict[str, tuple[str, Callable[[int], float]]] = {
    "ray": ("Ray tasks", ray_fanout),
    "dask.distributed": ("Dask futures", dask_fanout),
}


def run(settings: Settings) -> list[Result]:
    # Quick: few tasks, since a Dask future costs about 2 ms here (the quick run must
    # stay under a minute).
    n = settings.size(20_000, 500)
    rows = []
    for module, present in installed().items():
        label, fanout = PEERS[module]
        if not present:
            rows.append(
                Result(
                    NAME,
                    f"S1 on {label}",
                    None,
                    status="not installed",
                    note=f"{module} does not import here; not measured",
                )
            )
            continue
        bound: Callable[[], Any] = lambda fanout=fanout: fanout(n)  # noqa: E731
        samples = alternate(
            settings,
            f"{NAME} {module}",
            {"actorflow": lambda: actorflow_fanout(n)["us"], "peer": bound},
        )
        rows.append(
            Result(
                NAME,
                f"N={n:,} S1: actorflow vs {label}",
                Figure("facade fan-out", US_PER_TASK, column(samples["actorflow"])),
                Figure(label, US_PER_TASK, column(samples["peer"])),
                note="no goal: where actorflow stands",
            )
        )
    return rows
