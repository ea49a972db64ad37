"""A FastAPI service that embeds actorflow: submit named jobs, read tasks, serve metrics.

The actor system starts in the app's lifespan and stops with it. Endpoints:

- ``POST /tasks``: ``{"job": "fibonacci", "args": {"n": 90}}`` runs one of the server-side
  jobs below and answers ``202`` with the task id (``422`` for an unknown job or bad args);
- ``GET /tasks/{task_id}``: the task as JSON (``?wait=5`` waits up to 5 s for it to end);
  ``404`` for an id that was never registered or was cleaned up;
- ``GET /tasks``: the tasks, or only those of ``?status=`` and/or ``?task_type=``, one
  page at a time (``?offset=0&limit=100``, at most 1,000 a page; the header
  ``X-Total-Count`` says how many match);
- ``GET /metrics``: the metrics in the Prometheus text format.

A request body larger than ``MAX_BODY_BYTES`` is refused with ``413``; a request that does
not validate gets ``422`` naming the fields at fault, never echoing what was sent. The
actor system keeps finished tasks for an hour, 10,000 at most (its defaults), so a
long-running service stays bounded.

Serve it with ``uvicorn examples.fastapi_service:app``. Run as a script
(``python examples/fastapi_service.py``) it demonstrates itself through FastAPI's
`TestClient`, without a server, and exits 0. Needs ``pip install 'actorflow[examples]'``.
"""

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from actors import ActorSystem, TaskInfo, TaskNotFoundError, TaskStatus, UnifiedTaskManager

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_BODY_BYTES = 256 * 1024
"""Largest request body accepted (the largest job, a 100,000-character text, fits)."""
TOO_LARGE = f"request body too large (at most {MAX_BODY_BYTES} bytes)"
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_ERRORS_SHOWN = 10


# -- the jobs the server knows: plain functions run on the pool, coroutines on the loop ---


def fibonacci(n: int) -> int:
    """CPU-bound: runs on the actor system's thread pool."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def word_count(text: str) -> dict[str, int]:
    words = text.lower().split()
    return {"words": len(words), "distinct": len(set(words))}


async def fetch(url: str, delay: float) -> dict[str, Any]:
    """I/O-bound: runs on the server's event loop (simulated with a sleep)."""
    await asyncio.sleep(delay)
    return {"url": url, "status": 200, "bytes": 512}


class FibonacciArgs(BaseModel):
    n: int = Field(ge=0, le=10_000)


class WordCountArgs(BaseModel):
    text: str = Field(max_length=100_000)


class FetchArgs(BaseModel):
    url: str
    delay: float = Field(0.01, ge=0.0, le=5.0)


class FibonacciJob(BaseModel):
    job: Literal["fibonacci"]
    args: FibonacciArgs


class WordCountJob(BaseModel):
    job: Literal["word_count"]
    args: WordCountArgs


class FetchJob(BaseModel):
    job: Literal["fetch"]
    args: FetchArgs
    max_retries: int = Field(2, ge=0, le=5)
    timeout: float = Field(10.0, gt=0.0, le=60.0)


Job = Annotated[FibonacciJob | WordCountJob | FetchJob, Field(discriminator="job")]


class Submitted(BaseModel):
    task_id: str
    job: str


class TaskView(BaseModel):
    """A `TaskInfo` as JSON. Times are seconds on the system's monotonic clock."""

    task_id: str
    name: str
    status: TaskStatus
    task_type: str
    description: str
    metadata: dict[str, Any]
    dependencies: list[str]
    priority: str
    attempts: int
    max_retries: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    duration: float | None
    error: str | None
    backend: str
    result: Any = None

    @classmethod
    def of(cls, info: TaskInfo, result: Any = None) -> "TaskView":
        error = info.error
        return cls(
            task_id=info.task_id,
            name=info.name,
            status=info.status,
            task_type=info.task_type,
            description=info.description,
            metadata=dict(info.metadata),
            dependencies=list(info.dependencies),
            priority=info.priority.name.lower(),
            attempts=info.attempts,
            max_retries=info.max_retries,
            created_at=info.created_at,
            started_at=info.started_at,
            finished_at=info.finished_at,
            duration=info.duration,
            error=None if error is None else f"{type(error).__name__}: {error}",
            backend=info.backend,
            result=result,
        )


# -- guards: a bounded body, errors that never echo the input ------------------------------


def _too_large() -> JSONResponse:
    return JSONResponse({"detail": TOO_LARGE}, status_code=413)


class BodySizeLimit:
    """ASGI middleware: refuse a body over `MAX_BODY_BYTES` with 413, whether it declares its
    length or streams it (counted as it is read, so it is never held whole)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.max_bytes = MAX_BODY_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large()(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI lets an HTTPException raised while reading the body through.
                    raise HTTPException(413, TOO_LARGE)
            return message

        await self.app(scope, limited, send)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 naming where the request is wrong and how (the error type), never what was
    sent: FastAPI's default answer echoes the input, all of it."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    shown = [
        {"loc": [str(part) for part in error.get("loc", ())], "type": str(error.get("type"))}
        for error in errors[:MAX_ERRORS_SHOWN]
    ]
    return JSONResponse(
        {"detail": "invalid request", "errors": shown, "error_count": len(errors)},
        status_code=422,
    )


# -- the app --------------------------------------------------------------------------------


def create_app(config: Mapping[str, Any] | None = None) -> FastAPI:
    """A new app whose lifespan runs its own `ActorSystem` (``config``: its settings)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with ActorSystem(config) as system:
            app.state.system = system
            yield

    app = FastAPI(title="actorflow service", lifespan=lifespan)
    app.add_middleware(BodySizeLimit)
    app.add_exception_handler(RequestValidationError, validation_error)
    _add_routes(app)
    return app


def task_manager(request: Request) -> UnifiedTaskManager:
    system: ActorSystem = request.app.state.system
    return system.task_manager


TM = Annotated[UnifiedTaskManager, Depends(task_manager)]


def _add_routes(app: FastAPI) -> None:
    @app.post("/tasks", status_code=202)
    async def submit(job: Job, tm: TM) -> Submitted:
        """Register one of the server's jobs and start it; answer with its id at once."""
        if isinstance(job, FibonacciJob):
            task_id = await tm.register_task(
                "fibonacci", fibonacci, kwargs=job.args.model_dump(), task_type="cpu"
            )
        elif isinstance(job, WordCountJob):
            task_id = await tm.register_task(
                "word_count", word_count, kwargs=job.args.model_dump(), task_type="cpu"
            )
        else:
            task_id = await tm.register_task(
                "fetch",
                fetch,
                kwargs=job.args.model_dump(),
                task_type="io",
                max_retries=job.max_retries,
                retry_delay=0.1,
                timeout=job.timeout,
            )
        await tm.execute_task(task_id)
        return Submitted(task_id=task_id, job=job.job)

    @app.get("/tasks/{task_id}")
    async def read_task(
        task_id: str,
        tm: TM,
        wait: Annotated[float | None, Query(gt=0.0, le=30.0)] = None,
    ) -> TaskView:
        """The task; with ``wait``, first wait up to that many seconds for it to end."""
        try:
            if wait is not None:
                # Its outcome (a result, or the exception it failed with) is in the view.
                with contextlib.suppress(Exception):
                    await tm.wait_for_task(task_id, timeout=wait)
            info = await tm.get_task(task_id)
            result = await tm.get_task_result(task_id)
        except TaskNotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return TaskView.of(info, result)

    @app.get("/tasks")
    async def list_tasks(
        tm: TM,
        response: Response,
        status: TaskStatus | None = None,
        task_type: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    ) -> list[TaskView]:
        """One page of the tasks (with ``status`` and/or ``task_type``, those), in the
        order they were registered; ``X-Total-Count`` says how many match."""
        if status is not None:
            infos = await tm.get_tasks_by_status(status)
            if task_type is not None:
                infos = [i for i in infos if i.task_type == task_type]
        elif task_type is not None:
            infos = await tm.get_tasks_by_type(task_type)
        else:
            infos = await tm.get_all_tasks()
        response.headers["X-Total-Count"] = str(len(infos))
        return [TaskView.of(i) for i in infos[offset : offset + limit]]

    @app.get("/metrics")
    async def metrics(tm: TM) -> Response:
        """Prometheus scrapes this."""
        return Response(await tm.render_prometheus(), media_type=PROMETHEUS_CONTENT_TYPE)


app = create_app()


# -- the script: the service demonstrates itself, no server needed --------------------------


def main() -> int:
    from fastapi.testclient import TestClient  # the demonstration's HTTP client (httpx)

    jobs = [
        {"job": "fibonacci", "args": {"n": 90}},
        {"job": "word_count", "args": {"text": "the actor restarts and the task goes on"}},
        {"job": "fetch", "args": {"url": "https://example.org/", "delay": 0.02}},
    ]
    ok = True
    with TestClient(app) as client:
        ids = []
        for body in jobs:
            answer = client.post("/tasks", json=body)
            print(f"POST /tasks {body['job']}: {answer.status_code}")
            ids.append(answer.json()["task_id"])
        for body, task_id in zip(jobs, ids, strict=True):
            task = client.get(f"/tasks/{task_id}", params={"wait": 10}).json()
            print(f"{body['job']}: {task['status']} -> {task['result']}")
            ok &= task["status"] == "completed"
        done = client.get("/tasks", params={"status": "completed"}).json()
        print(f"GET /tasks?status=completed: {len(done)} tasks")
        cpu = client.get("/tasks", params={"task_type": "cpu"}).json()
        print(f"GET /tasks?task_type=cpu: {sorted(t['name'] for t in cpu)}")
        missing = client.get("/tasks/no-such-task")
        print(f"GET /tasks/no-such-task: {missing.status_code}")
        bad = client.post("/tasks", json={"job": "rm -rf", "args": {}})
        print(f"POST /tasks with an unknown job: {bad.status_code} {bad.json()['errors']}")
        page = client.get("/tasks", params={"offset": 1, "limit": 1})
        print(f"GET /tasks?offset=1&limit=1: {len(page.json())} of {page.headers['x-total-count']}")
        huge = client.post("/tasks", content=b"x" * (MAX_BODY_BYTES + 1))
        print(f"POST /tasks with a {MAX_BODY_BYTES + 1}-byte body: {huge.status_code}")
        scrape = client.get("/metrics")
        print(f"GET /metrics: {scrape.headers['content-type']}")
        for line in scrape.text.splitlines():
            if line.startswith("actorflow_tasks{"):
                print(f"  {line}")
        ok &= len(done) == 3 and missing.status_code == 404 and bad.status_code == 422
        ok &= len(page.json()) == 1 and huge.status_code == 413
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
