"""The dashboard's HTTP API, every endpoint, through httpx's ASGI transport (and a real
uvicorn server for the event stream and `serve_dashboard`)."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from helpers import running_forever, spy_on_facade
from starlette.applications import Starlette
from starlette.routing import Mount

from actors import ActorSystem, ConfigError, InvalidTaskError, TaskStatus
from actors.dashboard import create_app
from actors.engine import MAX_FAILURES_KEPT
from actors.engine._query import (
    PageCursor,
    PageQuery,
    TaskPage,
    TaskRow,
    merge_rows,
    page_keys,
    page_rows,
    split_page,
)
from supervisors import Kill

HOSTILE = "<script>alert(1)</script>"
BREAKOUT = 'a"]; x --> y'
ACTION = {"X-Actorflow-Action": "1"}


def client_for(app: Any, base: str = "http://dash") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    async with ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0}) as system:
        yield system


@pytest.fixture
async def http(system: ActorSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(system)) as client:
        yield client


def double(x: int) -> int:
    return x * 2


async def fail_always(x: int) -> None:
    raise ValueError(f"bad input {x}")


# -- pages --------------------------------------------------------------------------------


async def test_the_page_and_its_files_are_served_with_relative_urls(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="static/app.js" defer></script>' in page.text
    assert '<link rel="stylesheet" href="static/style.css">' in page.text
    script = await http.get("/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text  # task data goes into the DOM as text only
    assert (await http.get("/static/style.css")).status_code == 200
    missing = await http.get("/static/secrets.txt")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no such file 'secrets.txt'"}


async def test_mounted_under_a_prefix(system: ActorSystem) -> None:
    outer = Starlette(routes=[Mount("/actorflow", create_app(system))])
    await system.task_manager.register_task("mounted", double, (1,))
    async with client_for(outer) as client:
        redirect = await client.get("/actorflow")
        assert redirect.status_code == 307
        assert redirect.headers["location"] == "http://dash/actorflow/"
        assert (await client.get("/actorflow/")).status_code == 200
        rows = (await client.get("/actorflow/api/tasks")).json()["rows"]
        assert [r["name"] for r in rows] == ["mounted"]


# -- the task table -----------------------------------------------------------------------


async def test_task_table_pages_filters_and_searches(
    system: ActorSystem, http: httpx.AsyncClient
) -> None:
    tm = system.task_manager
    ids = [
        await tm.register_task(f"job-{i}", double, (i,), task_type="even" if i % 2 == 0 else "odd")
        for i in range(7)
    ]
    assert await tm.execute_task(ids[0], wait=True) == 0
    assert await tm.execute_task(ids[3], wait=True) == 6

    first = (await http.get("/api/tasks", params={"limit": 3})).json()
    assert first["total"] == 7
    assert (first["offset"], first["limit"]) == (0, 3)
    assert [r["name"] for r in first["rows"]] == ["job-6", "job-5", "job-4"]
    row = first["rows"][0]
    assert row["task_id"] == ids[6]
    assert (row["status"], row["task_type"], row["attempts"], row["backend"]) == (
        "pending",
        "even",
        0,
        "new",
    )
    last = (await http.get("/api/tasks", params={"limit": 3, "offset": 6})).json()
    assert [r["name"] for r in last["rows"]] == ["job-0"]

    done = (await http.get("/api/tasks", params={"status": "completed"})).json()
    assert done["total"] == 2
    assert [r["name"] for r in done["rows"]] == ["job-3", "job-0"]
    assert done["rows"][0]["duration"] >= 0
    odd = (await http.get("/api/tasks", params={"type": "odd"})).json()
    assert [r["name"] for r in odd["rows"]] == ["job-5", "job-3", "job-1"]
    both = (await http.get("/api/tasks", params={"type": "odd", "status": "pending"})).json()
    assert [r["name"] for r in both["rows"]] == ["job-5", "job-1"]
    found = (await http.get("/api/tasks", params={"q": "JOB-4"})).json()
    assert [r["name"] for r in found["rows"]] == ["job-4"]
    by_id = (await http.get("/api/tasks", params={"q": ids[2]})).json()
    assert [r["name"] for r in by_id["rows"]] == ["job-2"]
    none = (await http.get("/api/tasks", params={"type": "nope"})).json()
    assert (none["total"], none["rows"]) == (0, [])


async def test_next_is_null_as_soon_as_nothing_follows(
    system: ActorSystem, http: httpx.AsyncClient
) -> None:
    """The page's Next button stops on a full last page: ``next`` says whether a row
    follows, not only whether the page is full (500 rows, the most a page holds, cannot
    look one further: there ``next`` is a full page's cursor)."""
    tm = system.task_manager
    ids = [await tm.register_task(f"job-{i}", double, (i,)) for i in range(4)]
    first = (await http.get("/api/tasks", params={"limit": 2})).json()
    assert ([r["task_id"] for r in first["rows"]], first["limit"]) == ([ids[3], ids[2]], 2)
    last = first["rows"][-1]
    assert first["next"] == f"{last['created_at']!r}/new/{ids[2]}"
    second = (await http.get("/api/tasks", params={"limit": 2, "after": first["next"]})).json()
    assert ([r["task_id"] for r in second["rows"]], second["next"]) == ([ids[1], ids[0]], None)
    assert (second["total"], second["offset"], second["limit"]) == (4, 0, 2)
    whole = (await http.get("/api/tasks", params={"limit": 4})).json()
    assert (len(whole["rows"]), whole["next"]) == (4, None)
    assert (await http.get("/api/tasks", params={"limit": 3, "offset": 1})).json()["next"] is None
    most = (await http.get("/api/tasks", params={"limit": 500})).json()
    assert (len(most["rows"]), most["next"]) == (4, None)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"status": "done"},
            "status must be one of pending, waiting, queued, running, retrying, completed, "
            "failed, cancelled; got 'done'",
        ),
        ({"limit": "0"}, "limit must be between 1 and 500, got 0"),
        ({"limit": "501"}, "limit must be between 1 and 500, got 501"),
        ({"limit": "ten"}, "limit must be an integer, got 'ten'"),
        ({"offset": "-1"}, "offset must be between 0 and 1000000000, got -1"),
        (
            {"after": "12.5/mine/t1"},
            "after must be a page's next cursor (<created_at>/<new|old>/<task_id>), "
            "got '12.5/mine/t1'",
        ),
        (
            {"after": "soon/new/t1"},
            "after must be a page's next cursor (<created_at>/<new|old>/<task_id>), "
            "got 'soon/new/t1'",
        ),
    ],
)
async def test_a_bad_filter_is_400(
    http: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    answer = await http.get("/api/tasks", params=params)
    assert answer.status_code == 400
    assert answer.json() == {"error": message}


async def test_both_task_systems_merge_newest_first(
    system: ActorSystem, http: httpx.AsyncClient
) -> None:
    tm = system.task_manager
    await tm.use_new_task_system(False)
    await tm.register_task("old-1", double, (1,))
    await tm.use_new_task_system(True)
    await tm.register_task("new-2", double, (2,))
    await tm.use_new_task_system(False)
    await tm.register_task("old-3", double, (3,))
    page = (await http.get("/api/tasks")).json()
    assert [(r["name"], r["backend"]) for r in page["rows"]] == [
        ("old-3", "old"),
        ("new-2", "new"),
        ("old-1", "old"),
    ]
    second = (await http.get("/api/tasks", params={"offset": 1, "limit": 1})).json()
    assert (second["total"], [r["name"] for r in second["rows"]]) == (3, ["new-2"])


def row(name: str, created: float) -> TaskRow:
    return TaskRow(name, name, TaskStatus.PENDING, "t", 0, created, None, None, "new")


def test_a_page_over_two_managers_interleaves_by_creation_time() -> None:
    new = [row("n5", 5.0), row("n3", 3.0), row("n1", 1.0)]
    old = [row("o4", 4.0), row("o2", 2.0)]
    query = PageQuery(offset=1, limit=3)
    keys = [[r.created_at for r in new], [r.created_at for r in old]]
    cuts = split_page(query, keys)
    assert cuts == [(1, 2), (0, 2)]  # merged: n5 | o4 n3 o2 | n1
    parts = [new[slice(*cuts[0])], old[slice(*cuts[1])]]
    page = merge_rows(query, 5, parts)
    assert page.total == 5
    assert [r.name for r in page.rows] == ["o4", "n3", "o2"]
    tie = split_page(PageQuery(offset=0, limit=1), [[2.0], [2.0]])
    assert tie == [(0, 1), (0, 0)]


def cursor_page(
    systems: dict[str, list[tuple[str, float]]], after: PageCursor | None, limit: int = 10
) -> list[str]:
    """The names on a page of ``systems`` (each a task system's records, oldest first),
    as the client builds it from the managers' two answers."""
    records = {
        backend: [
            cast(
                Any,
                SimpleNamespace(
                    task_id=name,
                    name=name,
                    status=TaskStatus.PENDING,
                    task_type="t",
                    attempts=0,
                    created_at=at,
                    started_at=None,
                    finished_at=None,
                ),
            )
            for name, at in tasks
        ]
        for backend, tasks in systems.items()
    }
    query = PageQuery(limit=limit, after=after)
    keys = [page_keys(records[b], query, b) for b in ("new", "old")]
    cuts = split_page(query, [k[1] for k in keys])
    parts = [
        page_rows(records[b], query, *cut, b, lambda _: ())
        for b, cut in zip(("new", "old"), cuts, strict=True)
    ]
    return [r.name for r in merge_rows(query, sum(k[0] for k in keys), parts).rows]


def test_a_cursor_page_starts_after_its_row_among_tasks_created_at_the_same_time() -> None:
    systems = {"new": [("a", 1.0), ("b", 2.0), ("c", 2.0)], "old": [("e", 1.0), ("d", 2.0)]}
    assert cursor_page(systems, None) == ["c", "b", "d", "a", "e"]
    assert cursor_page(systems, PageCursor(2.0, "new", "c")) == ["b", "d", "a", "e"]
    assert cursor_page(systems, PageCursor(2.0, "new", "b")) == ["d", "a", "e"]
    assert cursor_page(systems, PageCursor(2.0, "old", "d")) == ["a", "e"]
    assert cursor_page(systems, PageCursor(1.0, "new", "a")) == ["e"]
    assert cursor_page(systems, PageCursor(1.5, "old", "gone")) == ["a", "e"]  # removed
    first = TaskPage(5, (row("c", 2.0), row("b", 2.0)), 0, 2)
    assert first.next == PageCursor(2.0, "new", "b")
    assert PageCursor.parse(str(first.next)) == first.next
    assert str(first.next) == "2.0/new/b"
    assert TaskPage(5, (row("c", 2.0),), 0, 2).next is None  # not full: nothing after it


def test_page_query_checks_its_arguments() -> None:
    with pytest.raises(InvalidTaskError, match=r"^offset must be an int >= 0, got -1$"):
        PageQuery(offset=-1)
    with pytest.raises(InvalidTaskError, match=r"^search must be a non-empty str or None"):
        PageQuery(search="")
    assert PageQuery(status="failed", search="AbC").status is TaskStatus.FAILED
    assert PageQuery(search="AbC").search == "abc"


# -- task detail --------------------------------------------------------------------------


async def test_task_detail_shows_arguments_dependencies_and_failed_attempts(
    system: ActorSystem, http: httpx.AsyncClient
) -> None:
    tm = system.task_manager
    first = await tm.register_task("first", double, (21,), description="d", metadata={"k": [1]})
    second = await tm.register_task(
        "second", fail_always, (7,), dependencies=[first], max_retries=1
    )
    live = (await http.get(f"/api/tasks/{first}")).json()
    assert live["name"] == "first"
    assert live["args"] == ["21"]
    assert live["kwargs"] == {}
    assert live["function"].startswith("<function double at ")
    assert live["metadata"] == {"k": "[1]"}
    assert (live["dependents"], live["dependents_total"]) == ([second], 1)
    assert live["dependencies_total"] == 0
    assert live["dependencies"] == []
    assert live["failures"] == []
    assert live["retryable"] is False

    with pytest.raises(ValueError, match="bad input 7"):
        await tm.execute_task(second, wait=True)
    done = (await http.get(f"/api/tasks/{first}")).json()
    assert done["status"] == "completed"
    assert done["args"] is None  # a completed task does not keep its arguments
    failed = (await http.get(f"/api/tasks/{second}")).json()
    assert failed["status"] == "failed"
    assert failed["dependencies"] == [first]
    assert failed["error"] == {"type": "ValueError", "message": "bad input 7"}
    assert failed["args"] == ["7"]  # kept: it can be retried
    assert failed["retryable"] is True
    assert [(f["attempt"], f["error_type"], f["message"]) for f in failed["failures"]] == [
        (1, "ValueError", "bad input 7"),
        (2, "ValueError", "bad input 7"),
    ]
    traceback = failed["failures"][1]["traceback"]
    assert traceback.startswith("Traceback (most recent call last):")
    assert 'raise ValueError(f"bad input {x}")' in traceback
    assert traceback.endswith("ValueError: bad input 7\n")
    assert failed["started_at"] <= failed["finished_at"]
    assert failed["duration"] == failed["finished_at"] - failed["started_at"]


class Huge:
    def __repr__(self) -> str:
        return "H" * 1_000_000


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


async def test_a_completed_tasks_result_shows_cut_even_if_huge_or_its_repr_raises(
    system: ActorSystem, http: httpx.AsyncClient
) -> None:
    tm = system.task_manager
    answers = []
    for result in (21, Huge(), Unrepresentable(), "s" * 100_000):
        task = await tm.register_task("r", lambda v=result: v)
        assert (await http.get(f"/api/tasks/{task}")).json()["result"] is None  # not run
        await tm.execute_task(task, wait=True)
        answers.append((await http.get(f"/api/tasks/{task}")).json()["result"])
    assert answers[0] == "21"
    assert answers[1] == "H" * 98 + "..." + "H" * 99
    assert re.fullmatch(r"<Unrepresentable instance at 0x[0-9a-f]+>", answers[2])
    assert answers[3] == "'" + "s" * 97 + "..." + "s" * 98 + "'"

    async def raise_(error: BaseException) -> None:
        raise error

    errors = []
    for error in (ValueError("e" * 100_000), Unprintable()):
        task = await tm.register_task("e", raise_, (error,))
        with pytest.raises(type(error)):
            await tm.execute_task(task, wait=True)
        detail = (await http.get(f"/api/tasks/{task}")).json()
        assert (detail["status"], detail["result"]) == ("failed", None)
        errors.append((detail["error"], detail["failures"][0]["message"]))
    assert errors[0][0] == {"type": "ValueError", "message": "e" * 2000}
    assert len(errors[0][1]) < 100_000
    assert errors[1][0] == {
        "type": "Unprintable",
        "message": "<unprintable: RuntimeError('no str')>",
    }
    assert errors[1][1] == "<unprintable Unprintable: RuntimeError('no str')>"


async def test_a_task_page_lists_the_first_ids_of_many_dependents_and_says_how_many(
    system: ActorSystem, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task that 100,000 tasks depend on sent 1.7 MB of ids to its page, drawn as
    100,000 links each time the task changed."""
    from actors.dashboard import _app

    monkeypatch.setattr(_app, "DETAIL_MAX_IDS", 3)
    tm = system.task_manager
    root = await tm.register_task("root", double, (0,))
    kids = [await tm.register_task(f"k{i}", double, (i,), dependencies=[root]) for i in range(5)]
    fan_in = await tm.register_task("all", double, (9,), dependencies=kids)
    detail = (await http.get(f"/api/tasks/{root}")).json()
    assert (detail["dependents"], detail["dependents_total"]) == (kids[:3], 5)
    detail = (await http.get(f"/api/tasks/{fan_in}")).json()
    assert (detail["dependencies"], detail["dependencies_total"]) == (kids[:3], 5)
    assert (detail["dependents"], detail["dependents_total"]) == ([], 0)


async def test_the_failed_attempts_kept_are_bounded(system: ActorSystem) -> None:
    tm = system.task_manager
    retries = MAX_FAILURES_KEPT + 3
    task = await tm.register_task("flaky", fail_always, (1,), max_retries=retries)
    with pytest.raises(ValueError, match="bad input 1"):
        await tm.execute_task(task, wait=True)
    detail = await tm.get_task_detail(task)
    assert detail.info.attempts == retries + 1
    assert [f.attempt for f in detail.failures] == list(range(5, retries + 2))  # last 10


async def test_an_unknown_task_is_404(http: httpx.AsyncClient) -> None:
    answer = await http.get("/api/tasks/nope")
    assert answer.status_code == 404
    assert answer.json() == {"error": "no task with id 'nope' (never registered, or cleaned up)"}
    cancel = await http.post("/api/actions/cancel/nope", headers=ACTION)
    assert cancel.status_code == 404


async def test_a_task_id_goes_in_the_query_too_even_a_dot_dot(
    system: ActorSystem, http: httpx.AsyncClient
) -> None:
    """The browser resolves a path segment ``..`` away: ``api/tasks/..`` asked for the
    page itself, so the page asks ``api/task?id=..``."""
    tm = system.task_manager
    dots = await tm.register_task("dots", double, (1,), task_id="..")
    assert dots == ".."
    detail = await http.get("/api/task", params={"id": ".."})
    assert (detail.status_code, detail.json()["name"]) == (200, "dots")
    missing = await http.get("/api/task")
    assert (missing.status_code, missing.json()) == (
        400,
        {"error": "a task id is required: ?id=<task id>"},
    )
    assert (await http.get("/api/task", params={"id": "nope"})).status_code == 404
    refused = await http.post("/api/actions/cancel", params={"id": ".."})
    assert refused.status_code == 403  # the action header is needed here too
    cancel = await http.post("/api/actions/cancel", params={"id": ".."}, headers=ACTION)
    assert cancel.json() == {"task_id": "..", "cancelled": True}
    assert await tm.get_task_status(dots) is TaskStatus.CANCELLED
    retry = await http.post("/api/actions/retry", params={"id": ".."}, headers=ACTION)
    retried = "task '..' is cancelled; only a failed task can be retried"
    assert (retry.status_code, retry.json()) == (400, {"error": retried})


# -- actions ------------------------------------------------------------------------------


async def test_cancel_a_running_task(system: ActorSystem, http: httpx.AsyncClient) -> None:
    tm = system.task_manager
    task = await running_forever(tm)
    answer = await http.post(f"/api/actions/cancel/{task}", headers=ACTION)
    assert answer.status_code == 200
    assert answer.json() == {"task_id": task, "cancelled": True}
    assert await tm.get_task_status(task) is TaskStatus.CANCELLED
    again = await http.post(f"/api/actions/cancel/{task}", headers=ACTION)
    assert again.json() == {"task_id": task, "cancelled": False}


async def test_retry_runs_a_failed_task_again(system: ActorSystem, http: httpx.AsyncClient) -> None:
    tm = system.task_manager
    calls: list[int] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise RuntimeError("first time")
        return x + 1

    task = await tm.register_task("flaky", flaky, (41,), task_type="io")
    with pytest.raises(RuntimeError, match="first time"):
        await tm.execute_task(task, wait=True)
    answer = await http.post(f"/api/actions/retry/{task}", headers=ACTION)
    assert answer.status_code == 200
    new = answer.json()["retry"]
    assert answer.json() == {"task_id": task, "retry": new}
    assert await tm.wait_for_task(new, timeout=10) == 42
    info = await tm.get_task(new)
    assert (info.name, info.task_type, dict(info.metadata)) == ("flaky", "io", {"retry_of": task})
    assert await tm.get_task_status(task) is TaskStatus.FAILED  # the history stays
    refused = await http.post(f"/api/actions/retry/{new}", headers=ACTION)
    assert refused.status_code == 400
    assert refused.json() == {
        "error": f"task {new!r} is completed; only a failed task can be retried"
    }


async def test_actions_are_post_only_and_need_the_action_header(
    system: ActorSystem, http: httpx.AsyncClient
) -> None:
    task = await system.task_manager.register_task("t", double, (1,))
    for name in ("cancel", "retry"):
        answer = await http.get(f"/api/actions/{name}/{task}")
        assert answer.status_code == 405
        assert answer.headers["allow"] == "POST"
    bare = await http.post(f"/api/actions/cancel/{task}")
    assert bare.status_code == 403
    assert bare.json() == {"error": "actions need the header x-actorflow-action: 1"}
    assert await system.task_manager.get_task_status(task) is TaskStatus.PENDING


async def test_read_only_refuses_actions(system: ActorSystem) -> None:
    task = await system.task_manager.register_task("t", double, (1,))
    async with client_for(create_app(system, read_only=True)) as http:
        assert (await http.get("/api/config")).json() == {
            "read_only": True,
            "token_required": False,
        }
        for name in ("cancel", "retry"):
            answer = await http.post(f"/api/actions/{name}/{task}", headers=ACTION)
            assert answer.status_code == 403
            assert answer.json() == {"error": "the dashboard is read-only"}
        assert (await http.get("/api/tasks")).json()["total"] == 1
    assert await system.task_manager.get_task_status(task) is TaskStatus.PENDING


# -- token --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/config",
        "/api/tasks",
        "/api/tasks/x",
        "/api/graph",
        "/api/supervision",
        "/api/metrics",
        "/api/events",
    ],
)
async def test_every_api_call_needs_the_token(system: ActorSystem, path: str) -> None:
    expected = {"error": "a bearer token is required: Authorization: Bearer <token>"}
    async with client_for(create_app(system, token="s3cret")) as http:
        missing = await http.get(path)
        assert (missing.status_code, missing.json()) == (401, expected)
        wrong = await http.get(path, headers={"Authorization": "Bearer nope"})
        assert (wrong.status_code, wrong.json()) == (401, expected)
        basic = await http.get(path, headers={"Authorization": "Basic s3cret"})
        assert basic.status_code == 401


async def test_the_token_opens_the_api_and_actions(system: ActorSystem) -> None:
    task = await system.task_manager.register_task("t", double, (1,))
    good = {"Authorization": "Bearer s3cret"}
    async with client_for(create_app(system, token="s3cret")) as http:
        assert (await http.get("/")).status_code == 200  # the page holds no data
        assert (await http.get("/api/config", headers=good)).json() == {
            "read_only": False,
            "token_required": True,
        }
        refused = await http.post(f"/api/actions/cancel/{task}", headers=ACTION)
        assert refused.status_code == 401
        answer = await http.post(f"/api/actions/cancel/{task}", headers={**good, **ACTION})
        assert answer.json() == {"task_id": task, "cancelled": True}


async def test_dashboard_token_comes_from_the_config() -> None:
    async with ActorSystem({"DASHBOARD_TOKEN": "from-config"}) as system:
        http = client_for(create_app(system))
        async with http:
            assert (await http.get("/api/tasks")).status_code == 401
            ok = await http.get("/api/tasks", headers={"Authorization": "Bearer from-config"})
            assert ok.status_code == 200


def test_dashboard_token_is_checked_at_start_up() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^DASHBOARD_TOKEN must be a non-empty str or None, got '' \(from the config",
    ):
        ActorSystem({"DASHBOARD_TOKEN": ""})


async def test_create_app_checks_its_arguments(system: ActorSystem) -> None:
    with pytest.raises(InvalidTaskError, match=r"^system must be an ActorSystem, got 1$"):
        create_app(1)  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskError, match=r"^token must be a non-empty str or None"):
        create_app(system, token="")
    with pytest.raises(InvalidTaskError, match=r"^read_only must be a bool, got 'yes'$"):
        create_app(system, read_only="yes")  # type: ignore[arg-type]


# -- graph, supervision, metrics ----------------------------------------------------------


async def test_graph_as_json_and_as_escaped_mermaid_and_dot(
    system: ActorSystem, http: httpx.AsyncClient
) -> None:
    tm = system.task_manager
    a = await tm.register_task(HOSTILE, double, (1,))
    b = await tm.register_task(BREAKOUT, double, (2,), dependencies=[a])
    other = await tm.register_task("alone", double, (3,), task_type="other")
    graph = (await http.get("/api/graph")).json()
    assert graph["total"] == 3
    assert graph["truncated"] is False
    assert graph["nodes"] == [
        {"id": a, "name": HOSTILE, "status": "pending", "type": "default"},
        {"id": b, "name": BREAKOUT, "status": "pending", "type": "default"},
        {"id": other, "name": "alone", "status": "pending", "type": "other"},
    ]
    assert graph["edges"] == [[a, b]]
    around = (await http.get("/api/graph", params={"around": other})).json()
    assert [n["id"] for n in around["nodes"]] == [other]
    typed = (await http.get("/api/graph", params={"type": "default"})).json()
    assert [n["id"] for n in typed["nodes"]] == [a, b]
    mermaid = (await http.get("/api/graph", params={"format": "mermaid"})).text
    assert '    t0["#60;script#62;alert(1)#60;/script#62;<br>pending"]' in mermaid
    assert '    t1["a#quot;]; x --#62; y<br>pending"]' in mermaid
    assert "<script>" not in mermaid
    dot = (await http.get("/api/graph", params={"format": "dot"})).text
    assert 'label="a\\"]; x --> y\\npending"' in dot
    bad = await http.get("/api/graph", params={"format": "png"})
    assert bad.status_code == 400
    assert bad.json() == {"error": "format must be dot or mermaid, got 'png'"}
    missing = await http.get("/api/graph", params={"around": "nope"})
    assert missing.status_code == 404


async def test_graph_asks_for_the_newest_tasks_only(
    system: ActorSystem, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The graph page's query is one page of `GRAPH_MAX_NODES` rows (with their
    dependencies), not every task: the newest N come back, with the edges among them."""
    from actors.dashboard import _app

    monkeypatch.setattr(_app, "GRAPH_MAX_NODES", 4)
    tm = system.task_manager
    ids = await asyncio.gather(*(tm.register_task(f"old-{i}", double, (i,)) for i in range(300)))
    a = await tm.register_task("a", double, (1,), dependencies=[ids[-1]])  # edge out of the page
    b = await tm.register_task("b", double, (2,), dependencies=[a])
    c = await tm.register_task("c", double, (3,), dependencies=[a, b])
    d = await tm.register_task("d", double, (4,), task_type="other")

    sent = spy_on_facade(system, monkeypatch)
    graph = (await http.get("/api/graph")).json()
    assert (graph["total"], graph["truncated"]) == (304, True)
    assert [n["name"] for n in graph["nodes"]] == ["a", "b", "c", "d"]
    assert graph["edges"] == [[a, b], [a, c], [b, c]]
    assert [type(m).__name__ for m in sent] == ["PageKeys", "PageRows"]  # no GetAll
    assert [(type(m).__name__, m.query.offset, m.query.limit) for m in sent] == [
        ("PageKeys", 0, 4),
        ("PageRows", 0, 4),
    ]
    sent.clear()
    typed = (await http.get("/api/graph", params={"type": "default"})).json()
    assert (typed["total"], [n["id"] for n in typed["nodes"]]) == (303, [ids[-1], a, b, c])
    assert typed["edges"] == [[ids[-1], a], [a, b], [a, c], [b, c]]
    assert [(type(m).__name__, m.query.limit, m.query.task_type) for m in sent] == [
        ("PageKeys", 4, "default"),
        ("PageRows", 4, "default"),
    ]
    assert d in {n["id"] for n in graph["nodes"]}


async def test_a_cut_graph_around_a_task_keeps_it_and_its_nearest(
    system: ActorSystem, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut to the newest, a graph around a task with many dependents left the task out."""
    from actors.dashboard import _app

    monkeypatch.setattr(_app, "GRAPH_MAX_NODES", 4)
    tm = system.task_manager
    u0 = await tm.register_task("u0", double, (0,))
    u1 = await tm.register_task("u1", double, (1,), dependencies=[u0])
    root = await tm.register_task("root", double, (2,), dependencies=[u1])
    kids = [await tm.register_task(f"k{i}", double, (i,), dependencies=[root]) for i in range(5)]
    await tm.register_task("g", double, (9,), dependencies=[kids[0]])
    graph = (await http.get("/api/graph", params={"around": root})).json()
    assert (graph["total"], graph["truncated"]) == (9, True)
    assert [n["name"] for n in graph["nodes"]] == ["root", "k2", "k3", "k4"]
    assert graph["edges"] == [[root, kids[2]], [root, kids[3]], [root, kids[4]]]
    monkeypatch.setattr(_app, "GRAPH_MAX_NODES", 7)
    graph = (await http.get("/api/graph", params={"around": root})).json()
    assert [n["name"] for n in graph["nodes"]] == ["u1", "root", "k0", "k1", "k2", "k3", "k4"]
    monkeypatch.setattr(_app, "GRAPH_MAX_NODES", 8)
    graph = (await http.get("/api/graph", params={"around": kids[0]})).json()
    assert (graph["total"], graph["truncated"]) == (5, False)
    assert [n["name"] for n in graph["nodes"]] == ["u0", "u1", "root", "k0", "g"]


async def test_a_graph_around_a_task_is_read_task_by_task_as_the_snapshot_gives_it(
    system: ActorSystem, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Around a task, the graph came from a snapshot of every task (5.9 s among 100,000);
    now it is read hop by hop, and is the same graph (a larger one: from the snapshot)."""
    from actors.dashboard import _app

    tm = system.task_manager
    ids: list[str] = []
    for i in range(40):  # a DAG: each task on up to 3 of the 8 before it, two types
        deps = [ids[j] for j in range(max(0, i - 8), i) if (i * 7 + j * 3) % 3 == 0][:3]
        ids.append(
            await tm.register_task(
                f"n{i}", double, (i,), dependencies=deps, task_type="a" if i % 4 else "b"
            )
        )
    assert await tm.execute_task(ids[0], wait=True) == 0
    assert await tm.cleanup_completed_tasks(0) == 1
    ids = ids[1:]

    def shape(nodes: Any, edges: Any) -> tuple[list[str], set[tuple[str, str]]]:
        return list(nodes), {tuple(e) for e in edges}

    cases = [(t, None, d) for t in ids[::3] for d in (None, 0, 1, 2)]
    typed = [t for t in ids if (await tm.get_task(t)).task_type == "a"]
    cases += [(t, "a", d) for t in typed[::3] for d in (None, 2)]
    sent = spy_on_facade(system, monkeypatch)
    sizes: list[int] = []
    for around, task_type, depth in cases:
        params: dict[str, Any] = {"around": around}
        if task_type:
            params["type"] = task_type
        if depth is not None:
            params["depth"] = depth
        got = (await http.get("/api/graph", params=params)).json()
        want = await tm.get_task_graph(task_type=task_type, around=around, depth=depth)
        assert shape([n["id"] for n in got["nodes"]], got["edges"]) == shape(
            [n.task_id for n in want.nodes], want.edges
        ), (around, task_type, depth)
        assert got["total"] == len(want.nodes)
        sizes.append(got["total"])
    assert (min(sizes), max(sizes), len(sizes)) == (1, 15, 72)
    assert "GetAll" in {type(m).__name__ for m in sent}  # (the get_task_graph calls above)
    sent.clear()
    await http.get("/api/graph", params={"around": ids[20]})
    assert "GetAll" not in {type(m).__name__ for m in sent}
    other = next(t for t in ids if t not in typed)  # a task of type "b"
    wrong = await http.get("/api/graph", params={"around": other, "type": "a"})
    assert (wrong.status_code, wrong.json()) == (
        404,
        {"error": f"task {other!r} is not in the task graph"},
    )
    gone = await http.get("/api/graph", params={"around": "nope"})
    assert gone.json() == {"error": "task 'nope' is not in the task graph"}
    monkeypatch.setattr(_app, "AROUND_MAX_READS", 3)  # too many: from the snapshot
    sent.clear()
    big = (await http.get("/api/graph", params={"around": ids[20]})).json()
    want = await tm.get_task_graph(around=ids[20])
    assert big["total"] == len(want.nodes) > 3
    assert "GetAll" in {type(m).__name__ for m in sent}


async def test_supervision_tree_counts_a_restart(
    system: ActorSystem, http: httpx.AsyncClient
) -> None:
    tree = (await http.get("/api/supervision")).json()
    assert tree["root"] == "actorflow"
    assert [(c["id"], c["status"], c["restarts"]) for c in tree["children"]] == [
        ("task_monitor", "running", 0),
        ("thread_pool", "running", 0),
        ("legacy_task_manager", "running", 0),
        ("task_manager", "running", 0),
        ("facade", "running", 0),
    ]
    assert tree["counts"] == {"specs": 5, "active": 5, "restarting": 0, "stopped": 0}
    system.supervisor.child("task_manager").tell(Kill())
    await system.task_manager.get_task_page()  # answered by the restarted manager
    tree = (await http.get("/api/supervision")).json()
    restarts = {c["id"]: c["restarts"] for c in tree["children"]}
    assert restarts == {
        "task_monitor": 0,
        "thread_pool": 0,
        "legacy_task_manager": 0,
        "task_manager": 1,
        "facade": 0,
    }


async def test_metrics_for_the_charts(system: ActorSystem, http: httpx.AsyncClient) -> None:
    tm = system.task_manager
    for i in range(3):
        task = await tm.register_task(f"m{i}", double, (i,), task_type="calc")
        await tm.execute_task(task, wait=True)
    m = (await http.get("/api/metrics")).json()
    assert m["attempts_ended"] == 3
    assert m["tasks_by_status"] == {"completed": 3}
    assert m["tasks_by_type"] == {"calc": {"completed": 3}}
    assert list(m["p95_by_type"]) == ["calc"]
    assert m["p95_by_type"]["calc"] >= 0
    assert (m["ready_queue"], m["pool_queue"]) == (0, 0)
    assert set(m["mailbox_depth"]) == {
        "task_monitor",
        "thread_pool",
        "legacy_task_manager",
        "task_manager",
        "facade",
    }


# -- served: the event stream and serve_dashboard -----------------------------------------


async def test_events_stream_a_completion(system: ActorSystem) -> None:
    tm = system.task_manager
    server = system.serve_dashboard()
    assert server.url == f"http://127.0.0.1:{server.port}/"
    release = threading.Event()

    def gated() -> str:
        release.wait(10)
        return "ok"

    task = await tm.register_task("gated", gated)
    try:
        async with (
            httpx.AsyncClient(base_url=server.url) as client,
            client.stream("GET", "api/events") as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert await anext(lines) == ": connected"
            await tm.execute_task(task)
            release.set()

            async def until_completed() -> list[str]:
                kinds = []
                async for line in lines:
                    if line.startswith("data: "):
                        event = json.loads(line[6:])
                        assert event["task_id"] == task
                        kinds.append(event["kind"])
                        if event["kind"] == "completed":
                            return kinds
                return kinds

            kinds = await asyncio.wait_for(until_completed(), 10)
            assert kinds == ["queued", "started", "completed"]
    finally:
        release.set()
        server.stop()
    assert not server.running


async def test_serve_dashboard_stops_with_the_system() -> None:
    before = {t.name for t in threading.enumerate()}
    async with ActorSystem() as system:
        server = system.serve_dashboard(port=0)
        assert server.running
        assert f"actorflow-dashboard-{server.port}" in {t.name for t in threading.enumerate()}
        answer = await asyncio.to_thread(httpx.get, server.url + "api/config")
        assert answer.json() == {"read_only": False, "token_required": False}
    assert not server.running
    # The dashboard's thread is gone with the system (threads on their way out, such as
    # the clock's after its last timer, are the autouse fixture's to join).
    assert f"actorflow-dashboard-{server.port}" not in {t.name for t in threading.enumerate()}
    # (the test's loop's default executor ran `httpx.get`: "uvloop_0" on uvloop)
    executor = {"asyncio_0", "uvloop_0"}
    assert {t.name for t in threading.enumerate()} - {"actorflow-clock"} <= before | executor


async def test_serve_dashboard_checks_its_arguments(system: ActorSystem) -> None:
    with pytest.raises(InvalidTaskError, match=r"^port must be an int between 0 and 65535"):
        system.serve_dashboard(port=70000)
    with pytest.raises(InvalidTaskError, match=r"^host must be a non-empty str, got ''$"):
        system.serve_dashboard(host="")


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("a\x00b", "host name must not contain null character"),
        ("\u00e9" * 64, "encoding of hostname failed"),
        ("\ud800", "encoding of hostname failed"),
    ],
)
async def test_serve_dashboard_refuses_a_host_the_socket_cannot_take_and_closes_it(
    system: ActorSystem, host: str, why: str
) -> None:
    # The socket module raises TypeError (not OSError) for these: it escaped, as no
    # actors error, and the bound socket leaked.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(InvalidTaskError) as raised:
            system.serve_dashboard(host=host)
        assert str(raised.value) == (
            f"host must be a host name or an IP address, got {host!r}: {why}"
        )
        del raised
        gc.collect()
    assert [str(w.message) for w in caught] == []
    server = system.serve_dashboard(port=0)  # nothing was left half-made
    try:
        assert server.running
    finally:
        server.stop()


def test_importing_actors_does_not_import_starlette() -> None:
    code = "import sys, actors; print('starlette' in sys.modules, 'uvicorn' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False False"
