"""The dashboard's Starlette app: a static page and a small JSON API over one system.

Every URL is relative to where the app is mounted. Reads are GETs; actions
(``/api/actions/cancel/<id>``, ``/api/actions/retry/<id>``) are POSTs only. A task's
routes also take its id as ``?id=<id>`` (``/api/task``, ``/api/actions/cancel``...),
which the page uses: a path cannot carry an id ``.`` or ``..``. With a
token, every ``/api/`` route needs ``Authorization: Bearer <token>`` (401 without
it); actions also need the header
``X-Actorflow-Action: 1`` (403 without it: a cross-site form cannot send it), and are
refused (403) in read-only mode. Names, arguments and errors go out as JSON data;
the page puts them in the DOM as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import reprlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from actors.api import ActorSystem
from actors.core import (
    ActorsError,
    InvalidTaskError,
    JournalDecodeError,
    TaskInfo,
    TaskNotFoundError,
    TaskStatus,
)
from actors.engine import MAX_PAGE_SIZE, TaskDetail, TaskPage, TaskRow
from actors.observe import TaskGraph, TaskNode

if TYPE_CHECKING:
    from actors.observe import Event

__all__ = ["DETAIL_MAX_IDS", "GRAPH_MAX_NODES", "SSE_HEARTBEAT_SECONDS", "create_app"]

GRAPH_MAX_NODES = 300
"""The graph page draws at most this many tasks (the newest, or around a task those
nearest to it); it says when it cut."""
AROUND_MAX_READS = 2000
"""A graph around a task is read task by task up to this many tasks; a larger one from a
snapshot of every task (`get_task_graph`)."""
DETAIL_MAX_IDS = 200
"""A task's page lists at most this many of its dependencies and of its dependents (the
first ones; ``dependencies_total`` and ``dependents_total`` say how many there are)."""
SSE_HEARTBEAT_SECONDS = 15.0
_STATIC = ("index.html", "app.js", "style.css")
_MEDIA = {"html": "text/html; charset=utf-8", "js": "text/javascript", "css": "text/css"}
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE_HEADERS = {
    **_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}
_ACTION_HEADER = "x-actorflow-action"
_STATUSES = frozenset(s.value for s in TaskStatus)

_repr = reprlib.Repr()
_repr.maxstring = 200
_repr.maxother = 200
_repr.maxlong = 60
_ARGS_CHARS = 2000


def _safe_repr(value: Any) -> str:
    try:
        text = _repr.repr(value)
    except Exception as exc:  # a broken __repr__ is shown, not raised
        text = f"<unrepresentable {type(value).__name__}: {exc!r}>"
    return text if len(text) <= _ARGS_CHARS else text[:_ARGS_CHARS] + "..."


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_SUMMARY = (
    "task_id",
    "name",
    "task_type",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
    "duration",
    "backend",
)
"""What a row of the task list shows; the detail view shows it too, and more."""


def _row(row: TaskRow | TaskInfo) -> dict[str, Any]:
    fields = {name: getattr(row, name) for name in _SUMMARY}
    fields["status"] = row.status.value
    return fields


def _graph_of(rows: tuple[TaskRow, ...]) -> TaskGraph:
    """The graph of a page of rows (newest first): nodes oldest first, as
    `TaskGraph.from_infos` orders them; the edges between two of them."""
    ordered = rows[::-1]
    present = {row.task_id for row in ordered}
    return TaskGraph(
        tuple(TaskNode(row.task_id, row.name, row.status, row.task_type) for row in ordered),
        tuple((dep, row.task_id) for row in ordered for dep in row.dependencies if dep in present),
    )


def _nearest(graph: TaskGraph, around: str, limit: int) -> TaskGraph:
    """The ``limit`` tasks of ``graph`` (the neighbourhood of ``around``) the fewest
    edges away from ``around`` (itself first; at a tie the newest), with the edges
    among them: what a cut graph around one task shows."""
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    for dep, dependent in graph.edges:
        up.setdefault(dependent, []).append(dep)
        down.setdefault(dep, []).append(dependent)
    distance = {around: 0}
    for step in (up, down):  # what it depends on, then what depends on it
        queue = deque([around])
        while queue:
            current = queue.popleft()
            for nxt in step.get(current, ()):
                if nxt not in distance:
                    distance[nxt] = distance[current] + 1
                    queue.append(nxt)
    age = {node.task_id: i for i, node in enumerate(graph.nodes)}  # oldest first
    ranked = sorted(distance, key=lambda task: (distance[task], -age.get(task, 0)))
    return graph._subgraph(ranked[:limit])


def _error(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    try:
        message = str(error)
    except Exception as exc:
        message = f"<unprintable: {exc!r}>"
    return {"type": type(error).__qualname__, "message": message[:_ARGS_CHARS]}


def _info(info: TaskInfo) -> dict[str, Any]:
    return {
        **_row(info),
        "description": info.description,
        "metadata": {str(k): _safe_repr(v) for k, v in info.metadata.items()},
        "dependencies": list(info.dependencies[:DETAIL_MAX_IDS]),
        "dependencies_total": len(info.dependencies),
        "priority": info.priority.name,
        "max_retries": info.max_retries,
        "error": _error(info.error),
    }


def _detail(detail: TaskDetail) -> dict[str, Any]:
    out = _info(detail.info)
    kept = detail.args is not None
    out.update(
        dependents=list(detail.dependents[:DETAIL_MAX_IDS]),
        dependents_total=len(detail.dependents),
        function=_safe_repr(detail.func) if detail.func is not None else None,
        args=[_safe_repr(a) for a in detail.args] if kept and detail.args is not None else None,
        kwargs=(
            {str(k): _safe_repr(v) for k, v in detail.kwargs.items()}
            if detail.kwargs is not None
            else None
        ),
        failures=[
            {
                "attempt": f.attempt,
                "at": f.at,
                "error_type": f.error_type,
                "message": f.message,
                "traceback": f.traceback,
            }
            for f in detail.failures
        ],
        retryable=detail.retryable,
    )
    return out


def _event(event: Event) -> dict[str, Any]:
    detail: dict[str, Any] = {}
    for key, value in event.detail.items():
        detail[str(key)] = value if isinstance(value, str | int | float | bool) else str(value)
    return {
        "kind": event.kind.value,
        "at": event.at,
        "task_id": event.task_id,
        "task_type": event.task_type,
        "task_name": event.task_name,
        "detail": detail,
    }


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(400, f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise HTTPError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def _task_id(request: Request) -> str:
    """The task of ``api/tasks/<id>`` or ``api/task?id=<id>`` (the page's form: a path
    segment cannot be ``.`` or ``..``, the browser resolves those away)."""
    task_id = request.path_params.get("task_id")
    if task_id is None:
        task_id = request.query_params.get("id")
    if not task_id:
        raise HTTPError(400, "a task id is required: ?id=<task id>")
    return str(task_id)


def _str_param(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    return raw if raw else None


class _Dashboard:
    """The handlers; one per app. ``stopping`` ends open event streams."""

    def __init__(self, system: ActorSystem, token: str | None, read_only: bool) -> None:
        self.system = system
        self.token = token
        self.read_only = read_only
        self.stopping: asyncio.Event | None = None
        self.stopping_loop: asyncio.AbstractEventLoop | None = None

    @property
    def tm(self) -> Any:
        return self.system.task_manager

    # -- plumbing ---------------------------------------------------------------------

    def _check_token(self, request: Request) -> None:
        if self.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            raise HTTPError(401, "a bearer token is required: Authorization: Bearer <token>")

    def api(
        self, handler: Callable[[Request], Awaitable[Any]], *, action: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                self._check_token(request)
                if action:
                    if self.read_only:
                        raise HTTPError(403, "the dashboard is read-only")
                    if request.headers.get(_ACTION_HEADER) != "1":
                        raise HTTPError(403, f"actions need the header {_ACTION_HEADER}: 1")
                result = await handler(request)
            except HTTPError as exc:
                return JSONResponse({"error": exc.message}, exc.status, headers=_HEADERS)
            except TaskNotFoundError as exc:
                return JSONResponse({"error": str(exc)}, 404, headers=_HEADERS)
            except (InvalidTaskError, JournalDecodeError) as exc:  # (a retry it cannot read)
                return JSONResponse({"error": str(exc)}, 400, headers=_HEADERS)
            except ActorsError as exc:
                return JSONResponse({"error": str(exc)}, 503, headers=_HEADERS)
            if isinstance(result, Response):
                return result
            return JSONResponse(result, headers=_HEADERS)

        return endpoint

    # -- pages --------------------------------------------------------------------------

    async def static(self, request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        if name not in _STATIC:
            return JSONResponse({"error": f"no such file {name!r}"}, 404, headers=_HEADERS)
        body = resources.files("actors.dashboard").joinpath("static", name).read_bytes()
        return Response(body, media_type=_MEDIA[name.rsplit(".", 1)[1]], headers=_PAGE_HEADERS)

    # -- API ----------------------------------------------------------------------------

    async def config(self, request: Request) -> Any:
        return {"read_only": self.read_only, "token_required": self.token is not None}

    async def tasks(self, request: Request) -> Any:
        status = _str_param(request, "status")
        if status is not None and status not in _STATUSES:
            known = ", ".join(s.value for s in TaskStatus)
            raise HTTPError(400, f"status must be one of {known}; got {status!r}")
        offset = _int_param(request, "offset", 0, 0, 10**9)
        limit = _int_param(request, "limit", 50, 1, MAX_PAGE_SIZE)
        # One row more than asked, when it may: `next` is then null as soon as nothing
        # follows (a full last page too), so the page's Next button knows when to stop.
        peek = min(limit + 1, MAX_PAGE_SIZE)
        page = await self.tm.get_task_page(
            offset,
            peek,
            status=status,
            task_type=_str_param(request, "type"),
            search=_str_param(request, "q"),
            after=_str_param(request, "after"),  # a page's next, as text
        )
        rows = page.rows[:limit]
        more = len(page.rows) > limit or (peek == limit and len(rows) == limit)
        cursor = TaskPage(page.total, rows, offset, limit).next if more else None
        return {
            "total": page.total,
            "offset": offset,
            "limit": limit,
            "rows": [_row(r) for r in rows],
            "next": None if cursor is None else str(cursor),
        }

    async def task(self, request: Request) -> Any:
        task_id = _task_id(request)
        found = await self.tm.get_task_detail(task_id)
        detail = _detail(found)
        detail["result"] = None
        if found.info.status is TaskStatus.COMPLETED:  # its repr, cut (even if repr raises)
            detail["result"] = _safe_repr(await self.tm.get_task_result(task_id))
        detail["now"] = self.system.clock.monotonic()  # the times are on the system clock
        return detail

    async def cancel(self, request: Request) -> Any:
        task_id = _task_id(request)
        return {"task_id": task_id, "cancelled": await self.tm.cancel_task(task_id)}

    async def retry(self, request: Request) -> Any:
        task_id = _task_id(request)
        return {"task_id": task_id, "retry": await self.tm.retry_task(task_id)}

    async def graph(self, request: Request) -> Any:
        task_type = _str_param(request, "type")
        around = _str_param(request, "around")
        depth = _int_param(request, "depth", -1, -1, 1000)
        if around is None:  # the newest tasks only: one page, not every task
            page = await self.tm.get_task_page(0, GRAPH_MAX_NODES, task_type=task_type)
            graph, total = _graph_of(page.rows), page.total
        else:
            hops = None if depth < 0 else depth
            near = await self._around(around, task_type, hops)
            if near is None:  # a large neighbourhood: from a snapshot of every task
                near = await self.tm.get_task_graph(task_type=task_type, around=around, depth=hops)
            graph = near
            total = len(graph.nodes)
            if total > GRAPH_MAX_NODES:  # (the newest would leave out ``around`` itself)
                graph = _nearest(graph, around, GRAPH_MAX_NODES)
        fmt = _str_param(request, "format")
        if fmt in ("dot", "mermaid"):
            text = graph.to_dot() if fmt == "dot" else graph.to_mermaid()
            return Response(text, media_type="text/plain; charset=utf-8", headers=_HEADERS)
        if fmt is not None:
            raise HTTPError(400, f"format must be dot or mermaid, got {fmt!r}")
        return {
            "total": total,
            "truncated": total > len(graph.nodes),
            "nodes": [
                {"id": n.task_id, "name": n.name, "status": n.status.value, "type": n.task_type}
                for n in graph.nodes
            ],
            "edges": [list(edge) for edge in graph.edges],
        }

    async def _around(
        self, around: str, task_type: str | None, depth: int | None
    ) -> TaskGraph | None:
        """`get_task_graph`'s ``around`` graph, read task by task (`get_task_detail`,
        one hop at a time) rather than from a snapshot of every task (5.9 s among 100,000
        tasks); None once it passes `AROUND_MAX_READS` tasks."""
        infos: dict[str, TaskInfo] = {}
        links: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}  # id -> (up, down)

        async def read(task_ids: list[str]) -> list[str]:
            """The ones of ``task_ids`` that exist (and are of ``task_type``), read."""
            found = await asyncio.gather(
                *(self.tm.get_task_detail(t) for t in task_ids), return_exceptions=True
            )
            kept = []
            for task_id, detail in zip(task_ids, found, strict=True):
                if isinstance(detail, TaskNotFoundError):
                    continue  # cleaned up meanwhile: the snapshot would not have it either
                if isinstance(detail, BaseException):
                    raise detail
                info = detail.info
                if task_type is not None and info.task_type != task_type:
                    continue
                infos[task_id] = info
                links[task_id] = (info.dependencies, detail.dependents)
                kept.append(task_id)
            return kept

        if not await read([around]):
            raise TaskNotFoundError(f"task {around!r} is not in the task graph")
        for side in (0, 1):  # what it depends on, then what depends on it
            reached = {around}
            frontier = [around]
            hops = 0
            while frontier and (depth is None or hops < depth):
                hops += 1
                nxt = [n for t in frontier for n in links[t][side] if n not in reached]
                nxt = list(dict.fromkeys(nxt))
                reached.update(nxt)
                if len(infos) + len(nxt) > AROUND_MAX_READS:
                    return None
                new = [n for n in nxt if n not in infos]
                await read(new)
                frontier = [n for n in nxt if n in infos]
        ordered = sorted(infos.values(), key=lambda info: info.created_at)
        keep = set(infos)
        return TaskGraph(
            tuple(TaskNode(i.task_id, i.name, i.status, i.task_type) for i in ordered),
            tuple((d, i.task_id) for i in ordered for d in i.dependencies if d in keep),
        )

    async def supervision(self, request: Request) -> Any:
        children = await self.system.supervisor.which_children()
        counts = await self.system.supervisor.count_children()
        return {
            "root": "actorflow",
            "children": [
                {
                    "id": c.id,
                    "status": c.status,
                    "restarts": c.restarts,
                    "restart": c.restart.value,
                    "is_supervisor": c.is_supervisor,
                }
                for c in children
            ],
            "counts": {
                "specs": counts.specs,
                "active": counts.active,
                "restarting": counts.restarting,
                "stopped": counts.stopped,
            },
        }

    async def metrics(self, request: Request) -> Any:
        m = await self.tm.get_metrics()
        return {
            "taken_at": m.taken_at,
            "tasks_by_status": dict(m.tasks_by_status),
            "tasks_by_type": {t: dict(c) for t, c in m.tasks_by_type.items()},
            "attempts_ended": sum(s.count for s in m.execution_time.values()),
            "p95_by_type": {t: s.p95 for t, s in m.execution_time.items()},
            "ready_queue": m.ready_queue,
            "pool_queue": m.pool_queue,
            "mailbox_depth": dict(m.mailbox_depth),
            "restarts": dict(m.restarts),
            "retries": m.retries,
            "failures": m.failures,
            "timeouts": m.timeouts,
            "concurrency_limit": m.concurrency_limit,
            "events_dropped": m.events_dropped,
            "breakers": dict(m.breakers),
        }

    async def events(self, request: Request) -> Any:
        stream = self.tm.events(task_type=_str_param(request, "type"))
        await stream.subscribe()  # errors answer here, before the stream starts
        stopping = self._stopping()
        return StreamingResponse(
            self._sse(stream, stopping),
            media_type="text/event-stream",
            headers={**_HEADERS, "X-Accel-Buffering": "no"},
        )

    def _stopping(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self.stopping is None or self.stopping_loop is not loop:
            self.stopping = asyncio.Event()
            self.stopping_loop = loop
        return self.stopping

    def stop_streams(self) -> None:
        """End every open event stream (from any thread)."""
        loop, event = self.stopping_loop, self.stopping
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    async def _sse(self, stream: Any, stopping: asyncio.Event) -> AsyncIterator[bytes]:
        """Events as they come; the subscriber's bounded buffer (``EVENT_BUFFER_SIZE``,
        oldest dropped) keeps a slow browser from slowing the system."""
        nxt: asyncio.Future[Any] = asyncio.ensure_future(anext(stream))
        stop = asyncio.ensure_future(stopping.wait())
        try:
            yield b": connected\n\n"
            while True:
                done, _ = await asyncio.wait(
                    {nxt, stop}, timeout=SSE_HEARTBEAT_SECONDS, return_when="FIRST_COMPLETED"
                )
                if stop in done:
                    return
                if nxt not in done:
                    yield b": keep-alive\n\n"
                    continue
                try:
                    event = nxt.result()
                except StopAsyncIteration:
                    return
                data = json.dumps(_event(event), separators=(",", ":"))
                yield f"data: {data}\n\n".encode()
                nxt = asyncio.ensure_future(anext(stream))
        finally:
            stop.cancel()
            nxt.cancel()
            with contextlib.suppress(BaseException):
                await nxt
            await stream.aclose()


def create_app(
    system: ActorSystem, *, token: str | None = None, read_only: bool = False
) -> Starlette:
    """The dashboard of ``system`` as a Starlette app; mount it anywhere, e.g.
    ``app.mount("/actorflow", create_app(system))``.

    ``token`` (default: the system's ``DASHBOARD_TOKEN``) makes every API call need
    ``Authorization: Bearer <token>``; ``read_only`` refuses cancel and retry (403).
    """
    if not isinstance(system, ActorSystem):
        raise InvalidTaskError(f"system must be an ActorSystem, got {system!r}")
    if token is None:
        token = system.config.DASHBOARD_TOKEN
    elif not isinstance(token, str) or not token:
        raise InvalidTaskError(f"token must be a non-empty str or None, got {token!r}")
    if not isinstance(read_only, bool):
        raise InvalidTaskError(f"read_only must be a bool, got {read_only!r}")
    d = _Dashboard(system, token, read_only)
    api = d.api
    routes = [
        Route("/", d.static, methods=["GET"]),
        Route("/static/{name}", d.static, methods=["GET"]),
        Route("/api/config", api(d.config), methods=["GET"]),
        Route("/api/tasks", api(d.tasks), methods=["GET"]),
        Route("/api/actions/cancel/{task_id:path}", api(d.cancel, action=True), methods=["POST"]),
        Route("/api/actions/retry/{task_id:path}", api(d.retry, action=True), methods=["POST"]),
        Route("/api/actions/cancel", api(d.cancel, action=True), methods=["POST"]),  # ?id=
        Route("/api/actions/retry", api(d.retry, action=True), methods=["POST"]),  # ?id=
        Route("/api/tasks/{task_id:path}", api(d.task), methods=["GET"]),
        Route("/api/task", api(d.task), methods=["GET"]),  # ?id=<task id>
        Route("/api/graph", api(d.graph), methods=["GET"]),
        Route("/api/supervision", api(d.supervision), methods=["GET"]),
        Route("/api/metrics", api(d.metrics), methods=["GET"]),
        Route("/api/events", api(d.events), methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.dashboard = d
    return app
