"""What an operator watches, with a real system (sixth round).

The Prometheus text parsed by prometheus_client's own parser: each family has its HELP
and TYPE once, a task type with quotes, a backslash and a newline comes back exact, and
the counters do not go down when the task manager and the monitor are killed. The
resource governor fed by a fake probe on a fake clock: the limit halves under pressure,
never below 1, grows back by one, and the change is in the metrics, the Prometheus gauge
and the dashboard's metrics. The dashboard: a full walk of 10,000 tasks over both task
systems, with ``MAX_FINISHED_TASKS`` evicting, pages neither repeat nor skip a task and
the total agrees with the metrics; the event stream goes on through a restart of the
monitor; a stopped system answers 503 with a clear error at once; a server that cannot
start (a taken port, an unknown host, a bad token) raises the specific error and leaves
no thread. (The OpenTelemetry spans of timeouts, cancels and nested tasks are in
tests/test_otel.py; the CLI's bad options in tests/test_cli.py.)
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors import ActorSystem, ActorSystemError, InvalidTaskError, TaskStatus
from actors.dashboard import create_app
from actors.observe import EventKind, MetricsSnapshot, ResourceSample, render_prometheus
from supervisors import Kill
from supervisors.testing import FakeClock

WEIRD = 'say "hi"\\now\nthen'
"""A task type with a quote, a backslash and a newline: label values escape all three."""


def double(x: int) -> int:
    return 2 * x


async def fail(x: int) -> None:
    raise ValueError(f"bad {x}")


async def hang() -> None:
    await asyncio.Event().wait()


async def restarted(tm: Any, child: str) -> MetricsSnapshot:
    """The metrics once they count a restart of ``child`` (the supervisor tells the
    monitor after the restart, so a call the restarted child answers may come first)."""

    async def poll() -> MetricsSnapshot:
        while True:
            metrics: MetricsSnapshot = await tm.get_metrics()
            if metrics.restarts.get(child):
                return metrics

    return await asyncio.wait_for(poll(), 10)


def families(text: str) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """The samples of each family, parsed by prometheus_client; checks that every family
    has exactly one HELP and one TYPE line."""
    lines = text.splitlines()
    helps = Counter(line.split()[2] for line in lines if line.startswith("# HELP "))
    types = Counter(line.split()[2] for line in lines if line.startswith("# TYPE "))
    assert set(helps) == set(types)
    assert set(helps.values()) == set(types.values()) == {1}
    out: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
    assert len(out) == len(helps)
    return out


def counters(parsed: dict[str, Any]) -> dict[str, float]:
    return {
        "retries": parsed["actorflow_task_retries"][("actorflow_task_retries_total", ())],
        "failures": parsed["actorflow_task_failures"][("actorflow_task_failures_total", ())],
        "timeouts": parsed["actorflow_task_timeouts"][("actorflow_task_timeouts_total", ())],
    }


async def test_prometheus_text_escapes_task_types_and_counters_survive_kills() -> None:
    async with ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0, "CLEANUP_INTERVAL": 0}) as system:
        tm = system.task_manager
        for i in range(3):
            task = await tm.register_task(f"f{i}", fail, (i,), task_type=WEIRD, max_retries=1)
            with pytest.raises(ValueError, match=rf"^bad {i}$"):
                await tm.execute_task(task, wait=True)
        slow = await tm.register_task("slow", hang, task_type=WEIRD, timeout=0.05)
        with pytest.raises(TimeoutError):
            await tm.execute_task(slow, wait=True)
        before = families(render_prometheus(await tm.get_metrics()))
        assert counters(before) == {"retries": 3.0, "failures": 4.0, "timeouts": 1.0}
        by_type = before["actorflow_tasks_by_type"]
        assert by_type == {
            ("actorflow_tasks_by_type", (("status", "failed"), ("task_type", WEIRD))): 4.0
        }
        text = render_prometheus(await tm.get_metrics())
        assert 'task_type="say \\"hi\\"\\\\now\\nthen"' in text
        for child in ("task_manager", "task_monitor"):
            system.supervisor.child(child).tell(Kill())
            metrics = await restarted(tm, child)
        after = families(render_prometheus(metrics))
    assert counters(after) == counters(before)
    assert after["actorflow_tasks_by_type"] == by_type
    restarts = after["actorflow_actor_restarts"]
    assert {labels: value for (_, labels), value in restarts.items() if value} == {
        (("child", "task_manager"),): 1.0,
        (("child", "task_monitor"),): 1.0,
    }


async def test_the_governor_moves_the_limit_within_bounds_and_shows_it() -> None:
    clock = FakeClock()
    samples = iter(
        [
            ResourceSample(99.0, 99.0),  # critical: 3 -> 1
            ResourceSample(99.0, 20.0),  # still critical: stays 1, never 0
            ResourceSample(10.0, 10.0),  # ok: 1 -> 2
            ResourceSample(10.0, 10.0),  # 2 -> 3
            ResourceSample(10.0, 10.0),  # at the ceiling: stays 3
        ]
    )
    config = {"RESOURCE_CHECK_INTERVAL": 5.0, "MAX_CONCURRENT_TASKS": 3, "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config, clock=clock, probe=lambda: next(samples)) as system:
        tm = system.task_manager
        limits, gauges = [], []
        async with (
            tm.events() as stream,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(system)), base_url="http://d"
            ) as http,
        ):
            for _ in range(5):
                await asyncio.to_thread(clock.wait_for_timers, 1)
                clock.advance(5.0)
                # The tick is the monitor's next message; a metrics call queues behind it.
                metrics = await tm.get_metrics()
                limits.append(metrics.concurrency_limit)
                parsed = families(render_prometheus(metrics))
                gauges.append(
                    parsed["actorflow_concurrency_limit"][("actorflow_concurrency_limit", ())]
                )
                assert (await http.get("/api/metrics")).json()["concurrency_limit"] == limits[-1]
            events = []
            async for event in stream:
                events.append((event.kind, event.detail["previous_limit"], event.detail["limit"]))
                if event.kind is EventKind.RESOURCE_OK:
                    break
    assert limits == [1, 1, 2, 3, 3]
    assert gauges == [1.0, 1.0, 2.0, 3.0, 3.0]
    assert metrics.max_concurrency == 3
    assert events == [
        (EventKind.RESOURCE_CRITICAL, 3, 1),
        (EventKind.RESOURCE_CRITICAL, 1, 1),
        (EventKind.RESOURCE_OK, 1, 2),
    ]


async def test_a_walk_of_10000_tasks_over_both_systems_agrees_with_the_metrics() -> None:
    config = {"MAX_FINISHED_TASKS": 100, "CLEANUP_INTERVAL": 0}
    async with ActorSystem(config) as system:
        tm = system.task_manager
        ids = []
        for i in range(10_000):
            if i in (4_000, 7_000):
                await tm.use_new_task_system(i == 7_000)
            # Ids of our own: a generated id ("t<random hex>-<n>") contains "t99" when its
            # random prefix starts with 99 (1 run in 256), and the search below matches
            # ids too: every k1 task would match it.
            task_id = f"id{i}"
            ids.append(
                await tm.register_task(
                    f"t{i}", double, (i,), task_type=f"k{i % 3}", task_id=task_id
                )
            )
        # 300 run to the end: MAX_FINISHED_TASKS keeps the newest 100 finished of each system
        done = ids[:150] + ids[4_000:4_150]
        for task in done:
            assert await tm.execute_task(task, wait=True) == 2 * ids.index(task)
        evicted = set(ids[:50] + ids[4_000:4_050])
        staying = [t for t in reversed(ids) if t not in evicted]
        seen, offset = [], 0
        while True:
            page = await tm.get_task_page(offset, 500)
            assert page.total == 9_900
            seen += [row.task_id for row in page.rows]
            if len(page.rows) < 500:
                break
            offset += 500
        assert seen == staying
        metrics = await tm.get_metrics()
        assert dict(metrics.tasks_by_status) == {
            TaskStatus.PENDING: 9_700,
            TaskStatus.COMPLETED: 200,
        }
        completed = await tm.get_task_page(0, 500, status="completed")
        assert completed.total == 200
        assert [r.task_id for r in completed.rows] == [t for t in staying if t in set(done)]
        k1 = await tm.get_task_page(0, 500, task_type="k1", search="T99")
        expected = [t for t, i in zip(ids, range(10_000), strict=True) if i % 3 == 1]
        expected = [t for t in reversed(expected) if f"t{ids.index(t)}".startswith("t99")]
        assert [r.task_id for r in k1.rows] == expected
        assert (
            k1.total
            == len(expected)
            == sum(1 for i in range(10_000) if i % 3 == 1 and str(i).startswith("99"))
        )


async def test_the_event_stream_goes_on_through_a_restart_of_the_monitor() -> None:
    async with ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0}) as system:
        tm = system.task_manager
        server = system.serve_dashboard()
        try:
            async with (
                httpx.AsyncClient(base_url=server.url) as client,
                client.stream("GET", "api/events") as stream,
            ):
                lines = stream.aiter_lines()
                assert await anext(lines) == ": connected"

                async def kinds_until_completed(task: str) -> list[str]:
                    kinds = []
                    async for line in lines:
                        if line.startswith("data: "):
                            event = json.loads(line[6:])
                            assert event["task_id"] == task
                            kinds.append(event["kind"])
                            if event["kind"] == "completed":
                                break
                    return kinds

                first = await tm.register_task("first", double, (1,))
                assert await tm.execute_task(first, wait=True) == 2
                assert await asyncio.wait_for(kinds_until_completed(first), 10) == [
                    "registered",
                    "queued",
                    "started",
                    "completed",
                ]
                system.supervisor.child("task_monitor").tell(Kill())
                assert (await restarted(tm, "task_monitor")).restarts["task_monitor"] == 1
                second = await tm.register_task("second", double, (2,))
                assert await tm.execute_task(second, wait=True) == 4
                assert await asyncio.wait_for(kinds_until_completed(second), 10) == [
                    "registered",
                    "queued",
                    "started",
                    "completed",
                ]
        finally:
            server.stop()
    assert not server.running


async def test_a_stopped_system_answers_503_at_once_and_its_server_thread_ends() -> None:
    async with ActorSystem() as system:
        app = create_app(system)
        server = system.serve_dashboard()
        name = f"actorflow-dashboard-{server.port}"
        assert name in {t.name for t in threading.enumerate()}
    assert name not in {t.name for t in threading.enumerate()}
    assert not server.running
    stopped = "the actor system is shut down; create a new ActorSystem"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://d"
    ) as http:
        answers = {}
        for path in ("/api/tasks", "/api/metrics", "/api/graph", "/api/events", "/api/tasks/x"):
            answer = await asyncio.wait_for(http.get(path), 5)
            answers[path] = (answer.status_code, answer.json())
        supervision = await asyncio.wait_for(http.get("/api/supervision"), 5)
    assert answers == {path: (503, {"error": stopped}) for path in answers}
    assert (supervision.status_code, supervision.json()) == (
        503,
        {"error": "the root supervisor is stopped"},
    )
    with pytest.raises(ActorSystemError, match=r"^the actor system was shut down; create a new"):
        system.serve_dashboard()


async def test_a_server_that_cannot_start_raises_and_leaves_nothing_running() -> None:
    async with ActorSystem() as system:
        threads = {t.name for t in threading.enumerate()}
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(
                ActorSystemError,
                match=rf"^the dashboard cannot listen on 127\.0\.0\.1:{port}: \[Errno 98\] ",
            ):
                system.serve_dashboard(port=port)
        with pytest.raises(
            ActorSystemError, match=r"^the dashboard cannot listen on no\.such\.host\.invalid:0: "
        ):
            system.serve_dashboard(host="no.such.host.invalid")
        with pytest.raises(
            InvalidTaskError, match=r"^token must be a non-empty str or None, got ''$"
        ):
            system.serve_dashboard(token="")
        with pytest.raises(InvalidTaskError, match=r"^read_only must be a bool, got 'yes'$"):
            system.serve_dashboard(read_only="yes")  # type: ignore[arg-type]
        assert system._dashboards == []
        assert {t.name for t in threading.enumerate()} == threads
        server = system.serve_dashboard(port=port)  # the port is free again: it listens
        answer = await asyncio.to_thread(httpx.get, server.url + "api/config")
        assert answer.json() == {"read_only": False, "token_required": False}
    assert not server.running


async def walk(
    http: httpx.AsyncClient, between: Any, *, by_cursor: bool, limit: int = 100
) -> list[str]:
    """Every row of the task table, page by page (by ``next`` cursor, or by offset),
    calling ``between()`` after each page."""
    seen: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        page = (await http.get("/api/tasks", params=params)).json()
        seen += [row["task_id"] for row in page["rows"]]
        if len(page["rows"]) < limit:
            assert page["next"] is None
        if page["next"] is None:  # (a full last page says so too: nothing follows)
            return seen
        last = page["rows"][-1]
        assert page["next"] == f"{last['created_at']!r}/{last['backend']}/{last['task_id']}"
        if by_cursor:
            params["after"] = page["next"]
        else:
            params["offset"] = params.get("offset", 0) + limit
        await between()


@pytest.mark.parametrize("by_cursor", [True, False])
async def test_a_walk_by_cursor_neither_repeats_nor_skips_while_tasks_churn(
    by_cursor: bool,
) -> None:
    """Tasks registered between two pages came again at the top of the next page (by
    offset: 10 repeats a page), and tasks removed behind the cursor (MAX_FINISHED_TASKS)
    made the next page skip as many. A walk by ``next`` has neither."""
    config = {"MAX_FINISHED_TASKS": 20, "CLEANUP_INTERVAL": 0}
    async with (
        ActorSystem(config) as system,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(system)), base_url="http://d"
        ) as http,
    ):
        tm = system.task_manager
        ids = []
        for i in range(1_000):
            if i == 500:
                await tm.use_new_task_system(False)
            ids.append(await tm.register_task(f"t{i}", double, (i,)))
        await tm.use_new_task_system(True)
        old_first = iter(ids[:100] + ids[500:600])
        added: list[str] = []

        async def churn() -> None:
            for _ in range(10):  # newer than every row walked so far
                added.append(await tm.register_task(f"new{len(added)}", double, (0,)))
            for _ in range(20):  # the oldest: the rows the walk comes to last
                task = next(old_first)
                assert await tm.execute_task(task, wait=True) == 2 * ids.index(task)

        seen = await walk(http, churn, by_cursor=by_cursor)
        left = {task.task_id for task in await tm.get_all_tasks()}
    stayed = [task for task in reversed(ids) if task in left]
    repeated = sorted(task for task, n in Counter(seen).items() if n > 1)
    skipped = [task for task in stayed if task not in seen]
    if by_cursor:
        assert (repeated, skipped) == ([], [])
        assert [task for task in seen if task in left] == stayed
        assert not set(seen) & set(added)
    else:  # what an offset walk does meanwhile (why the dashboard's API has `next`)
        assert (len(repeated), len(skipped)) == (60, 30)
