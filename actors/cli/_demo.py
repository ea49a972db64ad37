"""The demo behind ``actorflow demo``: a small service on an embedded actor system.

What it runs, in a few seconds, with a live progress display and a final report:

- a pipeline: async ``fetch`` tasks (simulated I/O) feed CPU-bound ``parse`` functions
  on the thread pool, which feed ``summarise`` functions and one final report; each
  task gets what it needs as ``result_of(task_id)`` in its arguments (no shared state);
- a flaky feed that succeeds on its third attempt (tenacity backoff between attempts),
  an archive download that times out twice and fails, and the task that depends on
  it, cancelled with `DependencyFailedError` instead of waiting forever;
- an "external API" behind the circuit breaker ``external-api``: three failures open
  it; two calls made while it is open wait for it without spending an attempt; when it
  half-opens the first is its trial call, whose success closes it and releases the other;
- ``Kill`` sent to the ``task_manager`` actor mid-run: its supervisor restarts it and
  no task is lost;
- three tasks registered under the old task system before switching to the new one,
  still found (``backend == "old"``) and run after the switch;
- then durable tasks (`actors.cli._demo_durable`): a system with ``JOURNAL_PATH`` shuts
  down with work unfinished, and a new one restarts from its journal and finishes it.

The report checks every expectation explicitly: `demo` returns 0 only when all hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from tenacity import wait_exponential

from actors.api import ActorSystem
from actors.cli._checks import Expectations, print_line
from actors.cli._demo_durable import durable_phase
from actors.core import ActorSystemError, DependencyFailedError, TaskTimeoutError
from actors.engine import BreakerTransition, CircuitBreaker, result_of
from actors.runtime import CHILD_IDS
from supervisors import Kill

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from actors.api import UnifiedTaskManager
    from actors.core import TaskInfo
    from actors.observe import EventStream, MetricsSnapshot, TaskGraph
    from supervisors import ChildInfo

__all__ = ["demo"]

PAGES = 12
PAGES_PER_SUMMARY = 4
FETCHES_BEFORE_KILL = 3
BREAKER = "external-api"
RECOVERY_TIMEOUT = 1.0
WAIT_BOUND = 20.0
WORDS = (
    "actor",
    "mailbox",
    "supervisor",
    "restart",
    "backoff",
    "retry",
    "timeout",
    "circuit",
    "breaker",
    "graph",
    "metric",
    "event",
)
TYPES = ("legacy", "fetch", "parse", "summarise", "flaky", "archive", "external-api")
_EXTRAS_HINT = "actorflow demo needs rich and prometheus_client: pip install 'actorflow[demo]'"

_DASHBOARD_HINT = (
    "actorflow demo --dashboard needs starlette and uvicorn: pip install 'actorflow[dashboard]'"
)


# -- the service's work: plain, deterministic functions ------------------------------------


def page_text(page: int) -> str:
    """The text the simulated server returns for ``page`` (the same on every run)."""
    rng = random.Random(page)
    return " ".join(rng.choice(WORDS) for _ in range(300 + 40 * page))


async def fetch(page: int, delay: float) -> str:
    """Simulated I/O: wait, then return the page's text."""
    await asyncio.sleep(delay)
    return page_text(page)


def parse(text: str) -> Counter[str]:
    """CPU-bound: hash the page, then count its words (runs on the thread pool)."""
    digest = text.encode()
    for _ in range(2000):
        digest = hashlib.sha256(digest).digest()
    return Counter(text.split())


def summarise(counts: Iterable[Counter[str]]) -> Counter[str]:
    """Merge the word counts of some pages."""
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return total


def report(parts: Iterable[Counter[str]]) -> str:
    """The final report: total words and the three most common ones."""
    total = summarise(parts)
    top = ", ".join(word for word, _ in total.most_common(3))
    return f"{total.total()} words; most common: {top}"


def expected_report() -> str:
    """What `report` must say, computed here without the actor system."""
    total = Counter(" ".join(page_text(p) for p in range(PAGES)).split())
    return f"{total.total()} words; most common: {', '.join(w for w, _ in total.most_common(3))}"


class Flaky:
    """A feed that is unavailable for its first two calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls < 3:
            raise ConnectionError(f"feed unavailable (call {self.calls})")
        return "feed: 42 items"


class ExternalApi:
    """A remote service that is down until `healthy` is set."""

    def __init__(self) -> None:
        self.healthy = False
        self.calls = 0

    async def __call__(self, query: str) -> str:
        self.calls += 1
        await asyncio.sleep(0.005)
        if not self.healthy:
            raise ConnectionError("external API: 503 Service Unavailable")
        return f"enriched {query}"


async def download_archive() -> None:
    await asyncio.sleep(10)  # far longer than its timeout


async def warm_cache(key: str) -> str:
    await asyncio.sleep(0.01)
    return f"warm:{key}"


# -- the run --------------------------------------------------------------------------------


class Demo:
    def __init__(self, system: ActorSystem, progress: Progress) -> None:
        self.system = system
        self.tm: UnifiedTaskManager = system.task_manager
        self.progress = progress
        self.checks = Expectations()
        self.loop = asyncio.get_running_loop()
        self.bars: dict[str, TaskID] = {t: progress.add_task(t, total=0, start=True) for t in TYPES}
        self.ids: list[str] = []
        self.finished: set[str] = set()
        self.all_seen = asyncio.Event()
        self.fetched = 0
        self.kill_now = asyncio.Event()
        self.transitions: list[BreakerTransition] = []
        self.flaky = Flaky()
        self.api = ExternalApi()
        self.unfinished_at_kill = 0
        self.old: list[str] = []
        self.final = self.flaky_id = self.archive = self.unpack = ""

    def say(self, text: str, style: str | None = None) -> None:
        print_line(self.progress.console, text, style)

    async def register(
        self, task_id: str, func: Callable[..., Any], *args: Any, **options: Any
    ) -> str:
        task_type = options.setdefault("task_type", "default")
        options.setdefault("task_id", task_id)
        await self.tm.register_task(task_id, func, args, **options)
        self.ids.append(task_id)
        self.all_seen.clear()
        bar = self.bars[task_type]
        self.progress.update(bar, total=(self.progress.tasks[bar].total or 0) + 1)
        return task_id

    # -- live: the event stream and the breaker's listener --------------------------------

    async def follow(self, stream: EventStream) -> None:
        """Advance the progress bars from the event stream; narrate retries."""
        terminal = {"completed", "failed", "cancelled"}
        async for event in stream:
            task_id, task_type = event.task_id, event.task_type
            if event.kind == "retrying":
                error = event.detail.get("error", "an error")
                self.say(f"  retrying {task_id} after {error}", style="yellow")
            elif event.kind in terminal and task_id is not None and task_id not in self.finished:
                self.finished.add(task_id)
                if task_type in self.bars:
                    self.progress.advance(self.bars[task_type])
                if task_type == "fetch":
                    self.fetched += 1
                    if self.fetched == FETCHES_BEFORE_KILL:
                        self.kill_now.set()
                if self.finished.issuperset(self.ids):
                    self.all_seen.set()

    def breaker_listener(self, transition: BreakerTransition) -> None:
        """Runs on whichever thread moved the breaker: hand the change to our loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
            self.loop.call_soon_threadsafe(self._breaker_moved, transition)

    def _breaker_moved(self, transition: BreakerTransition) -> None:
        self.transitions.append(transition)
        self.say(
            f"  circuit {transition.name}: {transition.old} -> {transition.new} "
            f"({transition.reason})",
            style="magenta",
        )

    # -- scenarios ------------------------------------------------------------------------

    async def legacy_then_switch(self) -> list[str]:
        """Register on the old task system, then switch new registrations to the new one."""
        await self.tm.use_new_task_system(False)
        old = [
            await self.register(f"legacy-{key}", warm_cache, key, task_type="legacy")
            for key in ("users", "prices", "routes")
        ]
        await self.tm.use_new_task_system(True)
        self.say(f"registered {len(old)} tasks on the old task system, then switched to the new")
        return old

    async def pipeline(self) -> str:
        """fetch -> parse -> summarise -> report; returns the report's id."""
        rng = random.Random(7)
        parts = []
        for first in range(0, PAGES, PAGES_PER_SUMMARY):
            parsed = []
            for page in range(first, first + PAGES_PER_SUMMARY):
                fetched = await self.register(
                    f"fetch-{page:02d}",
                    fetch,
                    page,
                    rng.uniform(0.05, 0.25),
                    task_type="fetch",
                    timeout=5.0,
                )
                parsed.append(
                    await self.register(
                        f"parse-{page:02d}",
                        parse,
                        result_of(fetched),  # the page fetch returns
                        task_type="parse",
                    )
                )
            parts.append(
                await self.register(
                    f"summary-{first // PAGES_PER_SUMMARY}",
                    summarise,
                    [result_of(p) for p in parsed],
                    task_type="summarise",
                )
            )
        return await self.register(
            "report", report, [result_of(p) for p in parts], task_type="summarise"
        )

    async def resilience(self) -> tuple[str, str, str]:
        flaky = await self.register(
            "flaky-feed",
            self.flaky,
            task_type="flaky",
            max_retries=3,
            retry_wait=wait_exponential(multiplier=0.05, max=1.0),
        )
        archive = await self.register(
            "download-archive",
            download_archive,
            task_type="archive",
            timeout=0.2,
            max_retries=1,
            retry_delay=0.05,
        )
        unpack = await self.register(
            "unpack-archive", warm_cache, "archive", task_type="archive", dependencies=[archive]
        )
        return flaky, archive, unpack

    async def circuit(self) -> None:
        """Three failures open the breaker; two calls wait for it; the first is its trial
        call when it half-opens, and its success closes it and releases the second."""
        tm = self.tm
        down = [
            await self.register(
                f"api-{i}", self.api, f"q{i}", task_type="external-api", circuit_breaker=BREAKER
            )
            for i in range(1, 4)
        ]
        for task_id in down:
            await tm.execute_task(task_id)
        await asyncio.gather(
            *(tm.wait_for_task(t, WAIT_BOUND) for t in down), return_exceptions=True
        )
        waiting = [
            await self.register(
                name, self.api, query, task_type="external-api", circuit_breaker=BREAKER
            )
            for name, query in (("api-first", "q4"), ("api-second", "q5"))
        ]
        for task_id in waiting:
            await tm.execute_task(task_id)  # the breaker is open: they wait for it
        self.api.healthy = True
        self.say("  the external API is healthy again; two calls wait for its breaker to half-open")
        await asyncio.gather(
            *(tm.wait_for_task(t, WAIT_BOUND) for t in waiting), return_exceptions=True
        )

    async def kill_task_manager(self) -> None:
        await asyncio.wait_for(self.kill_now.wait(), WAIT_BOUND)
        metrics = await self.tm.get_metrics()
        self.unfinished_at_kill = sum(
            n
            for status, n in metrics.tasks_by_status.items()
            if status not in ("completed", "failed", "cancelled")
        )
        self.system.supervisor.child("task_manager").tell(Kill())
        self.say(
            f"  Kill -> task_manager with {self.unfinished_at_kill} tasks unfinished",
            style="bold red",
        )

    async def run(self) -> dict[str, Any]:
        """Every scenario, concurrently where a service would; returns each task's outcome
        (its result, or the exception it ended with)."""
        tm = self.tm
        self.system.circuit_breakers.add(
            CircuitBreaker(
                BREAKER,
                failure_threshold=3,
                recovery_timeout=RECOVERY_TIMEOUT,
                listener=self.breaker_listener,
            )
        )
        async with tm.events() as stream:
            follower = asyncio.create_task(self.follow(stream))
            self.old = await self.legacy_then_switch()
            self.final = await self.pipeline()
            self.flaky_id, self.archive, self.unpack = await self.resilience()
            for task_id in (*self.old, self.final, self.flaky_id, self.unpack):
                await tm.execute_task(task_id)
            await asyncio.gather(self.kill_task_manager(), self.circuit())
            waits = [tm.wait_for_task(t, WAIT_BOUND) for t in self.ids]
            ends = await asyncio.gather(*waits, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_seen.wait(), 5.0)
        await follower
        self.checks.check("the event stream saw every task end", self.finished.issuperset(self.ids))
        return dict(zip(self.ids, ends, strict=True))


# -- the report -----------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


COUNTED = ("tasks", "completed", "failed", "cancelled", "retries")


def summary_table(infos: list[TaskInfo], metrics: MetricsSnapshot) -> Table:
    """Per task type: how many ended in each status, retries, p50/p95 run time."""
    from rich import box
    from rich.table import Table

    table = Table(
        title="tasks by type (run time per attempt, from metrics.execution_time)",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
    )
    table.add_column("type", min_width=max(len(t) for t in TYPES))
    for column in (*COUNTED, "p50 ms", "p95 ms"):
        table.add_column(column, justify="right", min_width=len(column))
    totals = Counter[str]()
    for task_type in TYPES:
        mine = [i for i in infos if i.task_type == task_type]
        row = Counter(i.status.value for i in mine)
        row["tasks"] = len(mine)
        row["retries"] = sum(max(0, i.attempts - 1) for i in mine)
        totals.update(row)
        stats = metrics.execution_time.get(task_type)
        timing = ("-", "-") if stats is None else (_ms(stats.p50), _ms(stats.p95))
        table.add_row(task_type, *(str(row[c]) for c in COUNTED), *timing)
    table.add_section()
    table.add_row("all", *(str(totals[c]) for c in COUNTED), "", "")
    return table


PROMETHEUS_SHOWN = (
    "actorflow_tasks{",
    "actorflow_task_retries_total ",
    "actorflow_task_timeouts_total ",
    "actorflow_task_failures_total ",
    "actorflow_actor_restarts_total{",
    'actorflow_circuit_breaker_state{breaker="external-api",state="closed"}',
)


class Report:
    """Reads the system's state after the run, checks each expectation, prints the facts."""

    def __init__(self, d: Demo, console: Console, outcomes: dict[str, Any]) -> None:
        self.d = d
        self.tm = d.tm
        self.console = console
        self.outcomes = outcomes
        self.check = d.checks.check
        self.by_id: dict[str, TaskInfo] = {}

    def print(self, text: str, style: str | None = None) -> None:
        print_line(self.console, text, style)

    def ended(self, task_id: str, status: str, error: type[BaseException] | None = None) -> bool:
        info = self.by_id.get(task_id)
        if info is None or info.status != status:
            return False
        return error is None or isinstance(self.outcomes.get(task_id), error)

    def attempts(self, task_id: str) -> int | None:
        info = self.by_id.get(task_id)
        return None if info is None else info.attempts

    async def write(self, out_dir: Path) -> None:
        tm, d = self.tm, self.d
        infos = await tm.get_all_tasks()
        metrics = await tm.get_metrics()
        children = await d.system.supervisor.which_children()
        graph = await tm.get_task_graph()
        prometheus = await tm.render_prometheus()
        self.by_id = {i.task_id: i for i in infos}
        self.supervision(infos, metrics, children)
        self.outcomes_of_scenarios(infos)
        self.breaker(metrics)
        retries = sum(max(0, i.attempts - 1) for i in infos)
        self.check(
            "metrics count retries, timeouts and failures",
            (metrics.retries, metrics.timeouts, metrics.failures) == (3, 2, 4)
            and retries == metrics.retries,
        )
        self.print(
            f"retries {metrics.retries}, timeouts {metrics.timeouts}, failures {metrics.failures}"
        )
        self.console.print(summary_table(infos, metrics))
        self.files(out_dir, graph, prometheus)
        removed = await tm.cleanup_completed_tasks(0.0)
        left = await tm.get_all_tasks()
        self.check("cleanup removed every finished task", removed == len(d.ids) and left == [])
        self.print(
            f"cleanup_completed_tasks(0.0) removed {removed} finished tasks; {len(left)} left"
        )

    def supervision(
        self, infos: list[TaskInfo], metrics: MetricsSnapshot, children: list[ChildInfo]
    ) -> None:
        d, n = self.d, len(self.d.ids)
        lost = sorted(set(d.ids) - set(self.by_id))
        unfinished = [i.task_id for i in infos if not i.done]
        if self.check("no task lost", not lost and not unfinished and len(infos) == n):
            self.print(f"no task lost: {n} of {n} registered tasks accounted for, all finished")
        else:
            self.print(f"LOST: {lost}; unfinished: {unfinished}", style="bold red")
        restarts = {c.id: c.restarts for c in children}
        self.check("task_manager was killed with tasks unfinished", d.unfinished_at_kill > 0)
        self.check(
            "metrics.restarts counts one restart", dict(metrics.restarts) == {"task_manager": 1}
        )
        self.check(
            "which_children shows the restart",
            restarts == {c: int(c == "task_manager") for c in CHILD_IDS},
        )
        self.print(
            f"task_manager killed mid-run and restarted {restarts.get('task_manager')} time; "
            f"metrics.restarts = {dict(metrics.restarts)}"
        )
        self.print(
            "supervision tree: "
            + ", ".join(f"{c.id} {c.status} (restarts {c.restarts})" for c in children)
        )
        olds = [self.by_id[t] for t in d.old if t in self.by_id]
        backends = Counter(i.backend for i in infos)
        self.check(
            "old tasks found after the switch, completed",
            len(olds) == 3
            and all(i.backend == "old" and i.status == "completed" for i in olds)
            and backends == {"old": 3, "new": n - 3},
        )
        self.print(
            f"old task system: {len(olds)} tasks found after the switch "
            f"(backend={','.join(sorted({i.backend for i in olds}))}), "
            f"{sum(i.status == 'completed' for i in olds)} completed"
        )

    def outcomes_of_scenarios(self, infos: list[TaskInfo]) -> None:
        d, outcomes = self.d, self.outcomes
        pipeline = [i.task_id for i in infos if i.task_type in ("fetch", "parse", "summarise")]
        self.check(
            "pipeline completed",
            len(pipeline) == 2 * PAGES + PAGES // PAGES_PER_SUMMARY + 1
            and all(self.ended(t, "completed") for t in pipeline),
        )
        self.check("the report is right", outcomes.get(d.final) == expected_report())
        self.print(f"pipeline: {len(pipeline)} tasks completed; report: {outcomes.get(d.final)}")
        self.check(
            "flaky-feed completed on its third attempt",
            self.ended(d.flaky_id, "completed") and self.attempts(d.flaky_id) == 3,
        )
        self.check(
            "download-archive timed out twice and failed",
            self.ended(d.archive, "failed", TaskTimeoutError) and self.attempts(d.archive) == 2,
        )
        self.check(
            "unpack-archive cancelled by its dependency",
            self.ended(d.unpack, "cancelled", DependencyFailedError),
        )
        unpack = self.by_id.get(d.unpack)
        self.print(
            f"flaky-feed: {outcomes.get(d.flaky_id)!r} after {self.attempts(d.flaky_id)} "
            f"attempts; download-archive: {type(outcomes.get(d.archive)).__name__} after "
            f"{self.attempts(d.archive)} attempts; unpack-archive: "
            f"{None if unpack is None else unpack.status}"
        )

    def breaker(self, metrics: MetricsSnapshot) -> None:
        moves = [(str(t.old), str(t.new)) for t in self.d.transitions]
        self.check(
            "three API failures",
            all(self.ended(f"api-{i}", "failed", ConnectionError) for i in (1, 2, 3)),
        )
        self.check(
            "api-first waited for the breaker, then completed as its half-open trial",
            self.ended("api-first", "completed") and self.attempts("api-first") == 1,
        )
        self.check(
            "api-second waited until the breaker closed, then completed",
            self.ended("api-second", "completed") and self.attempts("api-second") == 1,
        )
        self.check("refused calls never reached the API", self.d.api.calls == 5)
        self.check(
            "breaker opened, half-opened and closed",
            moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")],
        )
        self.check("metrics show the breaker closed", dict(metrics.breakers) == {BREAKER: "closed"})
        path = " -> ".join([moves[0][0], *(new for _, new in moves)]) if moves else "no change"
        self.print(f"circuit {BREAKER}: {path}")

    def files(self, out_dir: Path, graph: TaskGraph, prometheus: str) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [out_dir / "tasks.mmd", out_dir / "tasks.dot", out_dir / "metrics.prom"]
        written[0].write_text(graph.to_mermaid())
        written[1].write_text(graph.to_dot())
        written[2].write_text(prometheus)
        if shutil.which("dot") is not None:
            written.append(graph.render(out_dir / "tasks.svg"))
        self.check("graph and metrics files written", all(p.stat().st_size > 0 for p in written))
        self.check("the graph holds every task", len(graph.nodes) == len(self.d.ids))
        for p in written:
            self.print(f"wrote {p}")
        self.print("metrics (Prometheus text, a few lines):")
        for line in prometheus.splitlines():
            if line.startswith(PROMETHEUS_SHOWN):
                self.print(f"  {line}")


@dataclass(frozen=True, slots=True)
class DashboardOption:
    """``actorflow demo --dashboard``: serve the dashboard on ``port`` (0: any free one)
    while the demo runs, then keep it open ``linger`` seconds (None: until Ctrl-C)."""

    port: int = 0
    linger: float | None = None


class _NoDashboard(Exception):
    """``--dashboard`` cannot be served (its message names ``--port``): the demo stops."""


async def _run(
    console: Console, out_dir: Path, dashboard: DashboardOption | None = None
) -> Expectations:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn("{task.description:<13}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        console=console,
    )
    async with ActorSystem({"MAX_CONCURRENT_TASKS": 4}) as system:
        if dashboard is not None:
            try:
                server = system.serve_dashboard(port=dashboard.port)
            except ActorSystemError as exc:  # the port is taken, say: nothing ran yet
                raise _NoDashboard(f"--port {dashboard.port}: {exc}") from None
            console.print(f"dashboard: {server.url}", style="bold")
        d = Demo(system, progress)
        with progress:
            outcomes = await d.run()
        console.print()
        console.print("report", style="bold")
        await Report(d, console, outcomes).write(out_dir)
        if dashboard is not None and dashboard.linger != 0:
            how = "Ctrl-C" if dashboard.linger is None else f"{dashboard.linger:g}s"
            console.print(f"dashboard still open at {server.url} (stops after {how})")
            with contextlib.suppress(asyncio.CancelledError):
                if dashboard.linger is None:
                    await asyncio.Event().wait()
                else:
                    await asyncio.sleep(dashboard.linger)
    console.print()
    await durable_phase(console, out_dir, d.checks)  # restarts from a journal
    return d.checks


def demo(
    out: TextIO,
    out_dir: str | os.PathLike[str] | None = None,
    dashboard: DashboardOption | None = None,
) -> int:
    """Run the demo, writing to ``out``; files go to ``out_dir`` (a temporary directory,
    removed before returning, if None); ``dashboard`` serves the dashboard meanwhile.
    Returns 0 when every expectation held, 1 otherwise, 2 without the extras, when
    ``out_dir`` cannot be made or written, or when the dashboard cannot listen on its
    port (the demo does not run then); 130 on Ctrl-C, 143 on SIGTERM (the actor systems
    shut down first)."""
    try:
        import prometheus_client  # noqa: F401
        from rich.console import Console
    except ImportError:
        print(_EXTRAS_HINT, file=out)
        return 2
    if dashboard is not None:
        try:
            import starlette  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            print(_DASHBOARD_HINT, file=out)
            return 2
    if out_dir is not None:  # before the demo runs, not in a traceback after it
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(
                f"actorflow demo: error: --out {out_dir}: cannot make that folder: {exc}", file=out
            )
            return 2
        if not os.access(out_dir, os.W_OK | os.X_OK):
            print(f"actorflow demo: error: --out {out_dir}: the folder is not writable", file=out)
            return 2
    started = time.perf_counter()
    console = Console(file=out, highlight=False, markup=False, emoji=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = max(console.width, 100)  # the summary table fits in a log
    terminated: list[int] = []
    previous = _on_sigterm(terminated)
    try:
        return _demo(console, out_dir, dashboard, started)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (made one by `_on_sigterm`)
        console.print("terminated" if terminated else "interrupted")
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    except _NoDashboard as exc:
        console.print(f"actorflow demo: error: {exc}", style="red")
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _on_sigterm(terminated: list[int]) -> signal.Handlers | Callable[..., Any] | int | None:
    """Make SIGTERM (a process manager stopping the demo) stop it as Ctrl-C does: the
    running systems shut down (their journals written and closed) and `demo` returns
    143. Returns the handler it replaced (None off the main thread: nothing is done)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        terminated.append(signum)
        handler = signal.getsignal(signal.SIGINT)  # asyncio.run's: cancels its main task
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, on_sigterm)


def _demo(
    console: Console,
    out_dir: str | os.PathLike[str] | None,
    dashboard: DashboardOption | None,
    started: float,
) -> int:
    console.print(
        "actorflow demo: a small service on an embedded actor system "
        "(fetch -> parse -> summarise, retries, a timeout, a circuit breaker, a crash)",
        style="bold",
    )
    if out_dir is not None:
        checks = _run_to_end(_run(console, Path(out_dir), dashboard))
    else:
        with tempfile.TemporaryDirectory(prefix="actorflow-demo-") as temporary:
            checks = _run_to_end(_run(console, Path(temporary), dashboard))
        console.print("(those files were temporary and are removed: --out DIR keeps them)")
    elapsed = time.perf_counter() - started
    console.print(f"finished in {elapsed:.1f}s")
    failed = checks.failed
    if failed:
        console.print(f"{len(failed)} of {len(checks.results)} expectations FAILED:", style="red")
        for name in failed:
            console.print(f"  - {name}", style="red")
        return 1
    console.print(f"all {len(checks.results)} expectations met", style="green")
    return 0


def _run_to_end(run: Coroutine[Any, Any, Expectations]) -> Expectations:
    """``asyncio.run(run)``, safe from a Ctrl-C (or SIGTERM) at any point: one that comes
    while the event loop is being made waits until it is whole (``asyncio.run`` would let
    the interrupt leave a half-made loop, whose ``__del__`` prints a traceback), and
    ``run`` is closed if it never started (no "never awaited" warning)."""
    runner = asyncio.Runner()
    try:
        held: list[int] = []
        previous = _hold_sigint(held)
        try:
            runner.get_loop()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if held:
            raise KeyboardInterrupt
        return runner.run(run)
    finally:
        runner.close()
        run.close()


def _hold_sigint(held: list[int]) -> signal.Handlers | Callable[..., Any] | int | None:
    """Record SIGINT in ``held`` instead of raising `KeyboardInterrupt` (on the main
    thread only); returns the handler to put back (None: nothing was changed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
