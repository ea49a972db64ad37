"""examples/fastapi_service.py through FastAPI's TestClient: every endpoint, every answer."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

PATH = Path(__file__).resolve().parent.parent / "examples" / "fastapi_service.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_service", PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastapi_service"] = module  # pydantic resolves the models' names here
    spec.loader.exec_module(module)
    return module


service = load_example()


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(service.create_app()) as client:
        yield client


def submit(client: TestClient, body: dict[str, Any]) -> str:
    answer = client.post("/tasks", json=body)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"task_id": answer.json()["task_id"], "job": body["job"]}
    task_id: str = answer.json()["task_id"]
    return task_id


def finished(client: TestClient, task_id: str) -> dict[str, Any]:
    answer = client.get(f"/tasks/{task_id}", params={"wait": 10})
    assert answer.status_code == 200, answer.text
    task: dict[str, Any] = answer.json()
    return task


def test_a_job_runs_and_reads_back_as_json(client: TestClient) -> None:
    task_id = submit(client, {"job": "fibonacci", "args": {"n": 10}})
    task = finished(client, task_id)
    times = {k: task.pop(k) for k in ("created_at", "started_at", "finished_at", "duration")}
    assert task == {
        "task_id": task_id,
        "name": "fibonacci",
        "status": "completed",
        "task_type": "cpu",
        "description": "",
        "metadata": {},
        "dependencies": [],
        "priority": "normal",
        "attempts": 1,
        "max_retries": 0,
        "error": None,
        "backend": "new",
        "result": 55,
    }
    assert times["created_at"] <= times["started_at"] <= times["finished_at"]
    assert times["duration"] == times["finished_at"] - times["started_at"]


def test_each_job_gives_its_result(client: TestClient) -> None:
    words = submit(client, {"job": "word_count", "args": {"text": "to be or not to be"}})
    page = submit(client, {"job": "fetch", "args": {"url": "https://example.org/"}})
    assert finished(client, words)["result"] == {"words": 6, "distinct": 4}
    fetched = finished(client, page)
    assert (fetched["task_type"], fetched["max_retries"]) == ("io", 2)
    assert fetched["result"] == {"url": "https://example.org/", "status": 200, "bytes": 512}


def test_a_failed_task_shows_its_error(client: TestClient) -> None:
    body = {
        "job": "fetch",
        "args": {"url": "https://slow.example/", "delay": 5.0},
        "timeout": 0.05,
        "max_retries": 0,
    }
    task_id = submit(client, body)
    task = finished(client, task_id)
    assert (task["status"], task["attempts"], task["result"]) == ("failed", 1, None)
    assert task["error"] == (f"TaskTimeoutError: task {task_id!r} attempt 1 timed out after 0.05s")


def test_unknown_task_ids_are_404(client: TestClient) -> None:
    detail = {"detail": "no task with id 'nope' (never registered, or cleaned up)"}
    for params in ({}, {"wait": 1}):
        answer = client.get("/tasks/nope", params=params)
        assert (answer.status_code, answer.json()) == (404, detail)


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/tasks", {"job": "rm -rf", "args": {}}),
        ("POST", "/tasks", {"job": "fibonacci", "args": {"n": -1}}),
        ("POST", "/tasks", {"job": "fibonacci"}),
        ("POST", "/tasks", {"job": "fetch", "args": {"url": "u"}, "timeout": 0}),
        ("GET", "/tasks/x?wait=0", None),
        ("GET", "/tasks?status=bogus", None),
    ],
    ids=["unknown job", "bad arg", "no args", "bad timeout", "bad wait", "bad status"],
)
def test_bad_requests_are_422(
    client: TestClient, method: str, url: str, body: dict[str, Any] | None
) -> None:
    answer = client.request(method, url, json=body)
    assert answer.status_code == 422, answer.text
    document = answer.json()
    assert sorted(document) == ["detail", "error_count", "errors"]
    assert document["detail"] == "invalid request"
    assert document["error_count"] >= 1
    for error in document["errors"]:
        assert sorted(error) == ["loc", "type"]  # where and how, never the input
        assert error["loc"][0] in ("body", "query")
    assert client.get("/tasks").json() == []  # nothing was registered


def test_list_and_filter_tasks(client: TestClient) -> None:
    cpu = [submit(client, {"job": "fibonacci", "args": {"n": n}}) for n in (5, 6)]
    io = submit(client, {"job": "fetch", "args": {"url": "https://example.org/"}})
    for task_id in (*cpu, io):
        finished(client, task_id)

    def ids(**params: str) -> list[str]:
        answer = client.get("/tasks", params=params)
        assert answer.status_code == 200, answer.text
        return sorted(t["task_id"] for t in answer.json())

    assert ids() == sorted([*cpu, io])
    assert ids(status="completed") == sorted([*cpu, io])
    assert ids(task_type="cpu") == sorted(cpu)
    assert ids(status="completed", task_type="io") == [io]
    assert ids(status="failed") == []
    assert ids(task_type="none-of-these") == []


def test_metrics_in_the_prometheus_text_format(client: TestClient) -> None:
    finished(client, submit(client, {"job": "fibonacci", "args": {"n": 3}}))
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    assert samples[("actorflow_tasks", (("status", "completed"),))] == 1.0
    assert samples[("actorflow_task_execution_seconds_count", (("task_type", "cpu"),))] == 1.0


def test_the_lifespan_starts_and_stops_the_actor_system() -> None:
    app = service.create_app({"MAX_CONCURRENT_TASKS": 2})
    with TestClient(app):
        system = app.state.system
        assert system.running
        assert system.config.MAX_CONCURRENT_TASKS == 2
    assert not system.running


TOO_LARGE = {"detail": f"request body too large (at most {service.MAX_BODY_BYTES} bytes)"}


def test_a_10_mb_body_is_refused_with_413_and_not_echoed(client: TestClient) -> None:
    body = b'{"job": "word_count", "args": {"text": "' + b"a" * 10_000_000 + b'"}}'
    answer = client.post("/tasks", content=body, headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()) == (413, TOO_LARGE)
    assert len(answer.content) < 100
    assert client.get("/tasks").json() == []


def test_a_streamed_body_over_the_cap_is_refused_with_413(client: TestClient) -> None:
    chunk = b"a" * 65_536
    chunks = iter([chunk] * (service.MAX_BODY_BYTES // len(chunk) + 1))
    answer = client.post("/tasks", content=chunks, headers={"content-type": "application/json"})
    assert answer.request.headers.get("content-length") is None  # no declared length
    assert (answer.status_code, answer.json()) == (413, TOO_LARGE)
    assert client.get("/tasks").json() == []


def test_a_body_at_the_cap_is_read(client: TestClient) -> None:
    prefix, suffix = b'{"job": "fibonacci", "args": {"n": 10}', b"}"
    padding = b" " * (service.MAX_BODY_BYTES - len(prefix) - len(suffix))
    body = prefix + padding + suffix
    assert len(body) == service.MAX_BODY_BYTES
    answer = client.post("/tasks", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 202, answer.text
    assert finished(client, answer.json()["task_id"])["result"] == 55


def test_a_validation_error_names_the_field_and_never_echoes_the_input(
    client: TestClient,
) -> None:
    text = "secret " * 20_000  # 140,000 characters: over the job's 100,000; under the cap
    answer = client.post("/tasks", json={"job": "word_count", "args": {"text": text}})
    assert answer.status_code == 422
    assert answer.json() == {
        "detail": "invalid request",
        "errors": [{"loc": ["body", "word_count", "args", "text"], "type": "string_too_long"}],
        "error_count": 1,
    }
    assert b"secret" not in answer.content
    broken = client.post(
        "/tasks", content=b'{"job": "secret', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["errors"] == [{"loc": ["body", "8"], "type": "json_invalid"}]  # offset
    assert b"secret" not in broken.content


def test_the_listing_is_paged(client: TestClient) -> None:
    ids = [submit(client, {"job": "fibonacci", "args": {"n": n}}) for n in range(5)]
    for task_id in ids:
        finished(client, task_id)

    def page(**params: int) -> tuple[list[str], str]:
        answer = client.get("/tasks", params=params)
        assert answer.status_code == 200, answer.text
        return [t["task_id"] for t in answer.json()], answer.headers["x-total-count"]

    assert page() == (ids, "5")
    assert page(limit=2) == (ids[:2], "5")
    assert page(offset=2, limit=2) == (ids[2:4], "5")
    assert page(offset=4, limit=2) == (ids[4:], "5")
    assert page(offset=5) == ([], "5")
    for bad in ({"limit": 0}, {"limit": service.MAX_PAGE_SIZE + 1}, {"offset": -1}):
        answer = client.get("/tasks", params=bad)
        assert answer.status_code == 422, bad
        assert answer.json()["errors"][0]["loc"] == ["query", next(iter(bad))]


def test_serving_needs_no_test_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn imports the module: TestClient (and its httpx) are the script's alone."""
    for name in ("fastapi.testclient", "httpx", "httpx2"):
        monkeypatch.setitem(sys.modules, name, None)
    spec = importlib.util.spec_from_file_location("fastapi_service_served", PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fastapi_service_served", module)
    spec.loader.exec_module(module)
    assert [route.path for route in module.app.routes][-4:] == [
        "/tasks",
        "/tasks/{task_id}",
        "/tasks",
        "/metrics",
    ]
