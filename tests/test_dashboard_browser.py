"""The dashboard in a real headless Chromium (Debian's ``/usr/bin/chromium``, driven by
the ``playwright`` package; never a browser that a tool downloads).

Each test serves the dashboard with uvicorn in a thread on 127.0.0.1 (port 0), keeps a
screenshot of each page it opens under its tmp dir, and fails on any console error,
page error or dialog (a hostile task name must never run as script).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import running_forever
from playwright.async_api import BrowserContext, ConsoleMessage, Dialog, Page, async_playwright
from playwright.async_api import expect as pw_expect

from actors import ActorSystem, TaskCancelledError, TaskStatus
from actors.dashboard import DashboardServer
from supervisors import Kill

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
HOSTILE = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
NOT_FOUND = "Failed to load resource: the server responded with a status of 404 (Not Found)"
BREAKOUT = 'a"]; x --> y'
LIVE_BOUND_MS = 1000  # a completion shows in an open page within one second
BOUND_MS = 10_000  # everything else: a generous upper bound, not a speed assertion

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)


@dataclass
class Browser:
    context: BrowserContext
    page: Page
    shots: Path
    problems: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    """Console errors a test expects (the browser logs an HTTP error answer as one)."""

    async def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    async with ActorSystem({"RESTART_BACKOFF_INITIAL": 0.0}) as system:
        yield system


@pytest.fixture
async def served(system: ActorSystem) -> AsyncIterator[DashboardServer]:
    server = system.serve_dashboard()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 800},
        )
        page = context.pages[0] if context.pages else await context.new_page()
        b = Browser(context, page, shots)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and message.text not in b.expected:
                b.problems.append(f"console: {message.text}")

        async def on_dialog(dialog: Dialog) -> None:
            b.problems.append(f"dialog: {dialog.message}")
            await dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda error: b.problems.append(f"page error: {error}"))
        page.on("dialog", on_dialog)
        try:
            yield b
        finally:
            await context.close()
    assert b.problems == []


async def open_live(browser: Browser, url: str) -> Page:
    page = browser.page
    await page.goto(url)
    await pw_expect(page.locator("#live")).to_have_text("live", timeout=BOUND_MS)
    return page


def double(x: int) -> int:
    return x * 2


async def test_table_shows_tasks_and_a_completion_live(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    tm = system.task_manager
    release = threading.Event()

    def gated() -> str:
        release.wait(30)
        return "done"

    plain = await tm.register_task("plain", double, (1,), task_type="calc")
    hostile = await tm.register_task(HOSTILE, double, (2,))
    task = await tm.register_task("gated", gated, task_type="io")
    try:
        page = await open_live(browser, served.url)
        rows = page.locator("#task-rows tr")
        await pw_expect(rows).to_have_count(3, timeout=BOUND_MS)
        assert await rows.evaluate_all("rs => rs.map(r => r.dataset.taskId)") == [
            task,
            hostile,
            plain,
        ]
        name_cell = page.locator(f'tr[data-task-id="{hostile}"] td').first
        await pw_expect(name_cell).to_have_text(HOSTILE)
        assert await page.locator("script").count() == 1  # app.js only: the name is text
        await pw_expect(page.locator("#page-info")).to_have_text("1-3 of 3")

        row = page.locator(f'tr[data-task-id="{task}"]')
        await tm.execute_task(task)
        await pw_expect(row).to_have_attribute("data-status", "running", timeout=BOUND_MS)
        release.set()
        assert await tm.wait_for_task(task, timeout=10) == "done"
        await pw_expect(row).to_have_attribute("data-status", "completed", timeout=LIVE_BOUND_MS)
        await pw_expect(row.locator(".status")).to_have_text("completed")
        await browser.shot("tasks")

        await page.select_option("#filter-type", "calc")
        await pw_expect(rows).to_have_count(1, timeout=BOUND_MS)
        await pw_expect(rows.first).to_have_attribute("data-task-id", plain)
    finally:
        release.set()


async def test_cancel_button_cancels_a_running_task(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    tm = system.task_manager
    task = await running_forever(tm)
    page = await open_live(browser, served.url)
    row = page.locator(f'tr[data-task-id="{task}"]')
    await pw_expect(row).to_have_attribute("data-status", "running", timeout=BOUND_MS)
    await row.locator("button.cancel").click()
    with pytest.raises(TaskCancelledError, match=f"task {task!r} was cancelled"):
        await tm.wait_for_task(task, timeout=10)
    await pw_expect(row).to_have_attribute("data-status", "cancelled", timeout=BOUND_MS)
    await pw_expect(row.locator("button.cancel")).to_have_count(0)
    await browser.shot("tasks-cancelled")


async def test_task_page_shows_attempts_and_a_hostile_name_as_text(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    tm = system.task_manager

    async def broken(x: int) -> None:
        raise ValueError(f"<b>bad</b> {x}")

    dep = await tm.register_task("dep", double, (1,))
    task = await tm.register_task(HOSTILE, broken, (7,), dependencies=[dep], max_retries=1)
    with pytest.raises(ValueError, match="bad"):
        await tm.execute_task(task, wait=True)
    page = await open_live(browser, f"{served.url}#/task/{task}")
    await pw_expect(page.locator("#task-name")).to_have_text(HOSTILE, timeout=BOUND_MS)
    await pw_expect(page.locator(".attempt")).to_have_count(2)
    await pw_expect(page.locator(".attempt strong").first).to_have_text("attempt 1: ValueError")
    await pw_expect(page.locator(".traceback").last).to_contain_text(
        'raise ValueError(f"<b>bad</b> {x}")'
    )
    await pw_expect(page.locator("#task-args")).to_contain_text("args: (7)")
    await pw_expect(page.locator("#task-detail b")).to_have_count(0)  # the error is text
    await pw_expect(page.locator(f'a[href="#/task/{dep}"]')).to_have_text(dep)
    await browser.shot("task")

    await page.locator("button.retry").click()
    await pw_expect(page.locator("#message")).to_contain_text("retried as ", timeout=BOUND_MS)
    new = (await page.locator("#message").text_content() or "").removeprefix("retried as ")
    with pytest.raises(ValueError, match="bad"):
        await tm.wait_for_task(new, timeout=10)
    assert (await tm.get_task(new)).metadata["retry_of"] == task


async def test_supervision_tree_shows_a_restart(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    page = await open_live(browser, f"{served.url}#/supervision")
    restarts = page.locator('li[data-child="task_manager"] .restarts')
    await pw_expect(restarts).to_have_text("restarts: 0", timeout=BOUND_MS)
    await pw_expect(page.locator("#supervision li")).to_have_count(5)
    system.supervisor.child("task_manager").tell(Kill())
    await system.task_manager.get_task_page()  # answered by the restarted manager
    await pw_expect(restarts).to_have_text("restarts: 1", timeout=BOUND_MS)
    await pw_expect(page.locator('li[data-child="facade"] .restarts')).to_have_text("restarts: 0")
    await browser.shot("supervision")


async def test_graph_renders_with_names_as_text(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    tm = system.task_manager
    a = await tm.register_task(HOSTILE, double, (1,))
    b = await tm.register_task(BREAKOUT, double, (2,), dependencies=[a])
    c = await tm.register_task("last", double, (3,), dependencies=[b])
    assert await tm.execute_task(c, wait=True) == 6
    page = await open_live(browser, f"{served.url}#/graph")
    nodes = page.locator("#graph-svg g.node")
    await pw_expect(nodes).to_have_count(3, timeout=BOUND_MS)
    await pw_expect(page.locator("#graph-svg path[marker-end]")).to_have_count(2)
    await pw_expect(nodes.nth(0).locator("text").first).to_have_text(HOSTILE)
    await pw_expect(nodes.nth(1).locator("text").first).to_have_text(BREAKOUT)
    await pw_expect(nodes.nth(2).locator("text").last).to_have_text("completed")
    xs = [await nodes.nth(i).get_attribute("transform") for i in range(3)]
    assert xs == ["translate(20,20)", "translate(270,20)", "translate(520,20)"]  # layered
    await browser.shot("graph")
    await page.get_by_text("Mermaid source").click()
    await pw_expect(page.locator("#graph-source")).to_contain_text("flowchart LR")
    await pw_expect(page.locator("#graph-source")).to_contain_text("#60;script#62;")


async def test_charts_draw_throughput_p95_and_queues(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    tm = system.task_manager
    for i in range(5):
        task = await tm.register_task(f"c{i}", double, (i,), task_type="calc")
        await tm.execute_task(task, wait=True)
    page = await open_live(browser, f"{served.url}#/charts")
    for chart in ("#chart-throughput", "#chart-p95", "#chart-queues"):
        await pw_expect(page.locator(chart)).to_have_count(1, timeout=BOUND_MS)
    await pw_expect(page.locator("#chart-p95 polyline")).to_have_count(1)
    await pw_expect(page.locator(".chart").nth(1).locator(".legend")).to_contain_text("calc: ")
    await pw_expect(page.locator("#chart-queues polyline")).to_have_count(3)
    await browser.shot("charts")


async def test_a_token_in_the_fragment_opens_a_secured_dashboard(
    system: ActorSystem, browser: Browser
) -> None:
    server = system.serve_dashboard(token="s3cret", read_only=True)
    try:
        task = await system.task_manager.register_task("secured", double, (1,))
        page = await open_live(browser, f"{server.url}#token=s3cret")
        assert page.url == f"{server.url}#/tasks"  # the token left the address bar
        row = page.locator(f'tr[data-task-id="{task}"]')
        await pw_expect(row).to_have_attribute("data-status", "pending", timeout=BOUND_MS)
        await pw_expect(row.locator("button")).to_have_count(0)  # read-only: no actions
        await browser.shot("tasks-read-only")
    finally:
        server.stop()
    assert await system.task_manager.get_task_status(task) is TaskStatus.PENDING


async def shown_ids(page: Page) -> list[str]:
    ids: list[str] = await page.locator("#task-rows tr").evaluate_all(
        "rs => rs.map(r => r.dataset.taskId)"
    )
    return ids


async def turn(page: Page, button: str, first: int) -> list[str]:
    """Click Next or Previous; the rows of the page that starts at row ``first``."""
    await page.locator(button).click()
    info = re.compile(rf"^{first}-\d+ of \d+$")
    await pw_expect(page.locator("#page-info")).to_have_text(info, timeout=BOUND_MS)
    return await shown_ids(page)


async def remove(system: ActorSystem, tasks: list[str]) -> None:
    tm = system.task_manager
    for task in tasks:
        assert await tm.cancel_task(task) is True
    assert await tm.cleanup_completed_tasks(0) == len(tasks)


async def test_next_walks_by_cursor_while_tasks_come_and_go_and_previous_goes_back(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    """Between two clicks on Next, 3 tasks are registered (newer than the walk: by
    offset they pushed 3 rows of the last page onto the next one again) and 2 removed
    ahead of it and 2 behind it (by offset: 2 rows skipped). By cursor every task shows
    exactly once, in order; Previous shows exactly the page before; a filter starts over."""
    tm = system.task_manager
    for i in range(1_000):
        await tm.register_task(f"job-{i}", double, (i,))
    first = await tm.get_task_page(0, 500)
    order = [r.task_id for r in first.rows]
    order += [r.task_id for r in (await tm.get_task_page(0, 500, after=first.next)).rows]
    assert len(set(order)) == 1_000
    page = await open_live(browser, served.url)
    await pw_expect(page.locator("#page-info")).to_have_text("1-50 of 1000", timeout=BOUND_MS)
    await pw_expect(page.locator("#prev")).to_be_disabled()
    pages = [await shown_ids(page)]
    seen = list(pages[0])
    added: list[str] = []
    ahead: list[str] = []
    while await page.locator("#next").is_enabled():
        if len(pages) >= 3:  # (the first page is live: it would show the new tasks first)
            for _ in range(3):
                added.append(await tm.register_task(f"new-{len(added)}", double, (0,)))
            unseen = [t for t in order if t not in seen and t not in ahead]
            ahead += [unseen[0], unseen[-1]]  # the next page's first row, the oldest
            behind = pages[1][len(pages) * 2 - 6 : len(pages) * 2 - 4]  # page 2's rows
            await remove(system, [unseen[0], unseen[-1], *behind])
        pages.append(await turn(page, "#next", len(seen) + 1))
        seen += pages[-1]
    assert len(pages) == 20
    assert seen == [t for t in order if t not in ahead]  # no repeat, no skip, in order
    assert len(ahead) == 34  # 17 turns with churn
    assert (len(pages[-1]), len(added)) == (16, 51)
    await pw_expect(page.locator("#page-info")).to_have_text(f"951-966 of {1000 + 51 - 68}")
    await browser.shot("tasks-last-page")

    assert await turn(page, "#prev", 951 - 50) == pages[-2]
    assert await turn(page, "#prev", 951 - 100) == pages[-3]
    assert await turn(page, "#next", 951 - 50) == pages[-2]
    await page.select_option("#filter-status", "pending")  # starts over from the first page
    await pw_expect(page.locator("#page-info")).to_have_text("1-50 of 983", timeout=BOUND_MS)
    assert await shown_ids(page) == added[::-1][:50]
    await pw_expect(page.locator("#prev")).to_be_disabled()


@pytest.mark.timeout(180)
async def test_a_hundred_thousand_tasks_show_one_page_and_a_capped_graph(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    """Registered while the page is open: its event stream takes 100,000 events (the
    server drops the oldest when the page falls behind), then the page reads one page."""
    tm = system.task_manager
    page = await open_live(browser, served.url)
    await pw_expect(page.locator("#page-info")).to_have_text("0 tasks", timeout=BOUND_MS)
    ids = await asyncio.gather(
        *(
            tm.register_task(f"job-{i}", double, (i,), task_type=f"type-{i % 3}")
            for i in range(100_000)
        )
    )
    newest = (await tm.get_task_page(0, 50)).rows
    rows = page.locator("#task-rows tr")
    await pw_expect(page.locator("#page-info")).to_have_text("1-50 of 100000", timeout=BOUND_MS)
    await pw_expect(page.locator("#live")).to_have_text("live")
    await page.reload()  # (the type list is read when the page opens)
    await pw_expect(page.locator("#page-info")).to_have_text("1-50 of 100000", timeout=BOUND_MS)
    await pw_expect(rows).to_have_count(50)
    assert await shown_ids(page) == [r.task_id for r in newest]
    assert await page.locator("#filter-type option").all_text_contents() == [
        "any type",
        "type-0",
        "type-1",
        "type-2",
    ]
    await page.select_option("#filter-type", "type-1")
    await pw_expect(page.locator("#page-info")).to_have_text("1-50 of 33333", timeout=BOUND_MS)
    await pw_expect(rows).to_have_count(50)
    await turn(page, "#next", 51)
    await pw_expect(rows).to_have_count(50)
    types = await rows.evaluate_all("rs => rs.map(r => r.children[2].textContent)")
    assert types == ["type-1"] * 50
    await browser.shot("tasks-100k")

    await page.goto(f"{served.url}#/graph")
    await pw_expect(page.locator("#graph-svg g.node")).to_have_count(300, timeout=BOUND_MS)
    await pw_expect(page.get_by_text("showing the newest 300 of 100000 tasks")).to_have_count(1)
    await page.fill("#graph-type", "type-2")
    await page.get_by_role("button", name="Show").click()
    await pw_expect(page.get_by_text("showing the newest 300 of 33333 tasks")).to_have_count(
        1, timeout=BOUND_MS
    )
    await pw_expect(page.locator("#graph-svg g.node")).to_have_count(300)
    await page.fill("#graph-type", "")
    await page.fill("#graph-around", ids[0])
    await page.get_by_role("button", name="Show").click()
    await pw_expect(page.locator("#graph-svg g.node")).to_have_count(1, timeout=BOUND_MS)
    await browser.shot("graph-100k")


async def test_an_img_tag_anywhere_in_a_task_shows_as_text(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    tm = system.task_manager

    def give(value: object) -> object:
        return value

    async def broken(**kwargs: object) -> None:
        raise ValueError(IMG)

    done = await tm.register_task(
        IMG, give, (IMG,), task_type=IMG, description=IMG, metadata={IMG: IMG}
    )
    failed = await tm.register_task(IMG, broken, (), {IMG: IMG}, task_type=IMG)
    assert await tm.execute_task(done, wait=True) == IMG
    with pytest.raises(ValueError, match="img"):
        await tm.execute_task(failed, wait=True)
    page = await open_live(browser, served.url)
    await pw_expect(page.locator("#task-rows tr")).to_have_count(2, timeout=BOUND_MS)
    names = page.locator("#task-rows tr td:first-child")
    assert await names.all_text_contents() == [IMG, IMG]
    assert await page.locator("#filter-type option").all_text_contents() == ["any type", IMG]
    await page.goto(f"{served.url}#/task/{done}")
    await pw_expect(page.locator("#task-name")).to_have_text(IMG, timeout=BOUND_MS)
    await pw_expect(page.locator("#task-result")).to_have_text(repr(IMG))
    fields = await page.locator("#task-detail dd").all_text_contents()
    assert fields.count(IMG) == 2  # type, description
    assert fields.count(repr(IMG)) == 2  # the metadata value, the result
    labels = await page.locator("#task-detail dt").all_text_contents()
    assert f"metadata {IMG}" in labels
    await page.goto(f"{served.url}#/task/{failed}")
    await pw_expect(page.locator(".attempt p")).to_have_text(IMG, timeout=BOUND_MS)
    await pw_expect(page.locator("#task-args")).to_contain_text(f"{IMG}={IMG!r}")
    await page.goto(f"{served.url}#/graph")
    await pw_expect(page.locator("#graph-svg g.node")).to_have_count(2, timeout=BOUND_MS)
    await pw_expect(page.locator("#graph-svg g.node text").first).to_have_text(IMG)
    assert await page.locator("img").count() == 0
    await browser.shot("img-tag")


async def test_an_action_on_a_task_removed_meanwhile_says_so_and_the_page_follows(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    """The page does not hear of the removal (its event stream is cut off): the click
    tells the server, whose 404 the page shows, and the table is read again."""
    tm = system.task_manager
    browser.expected.append(NOT_FOUND)
    await browser.page.route(
        "**/api/events",
        lambda route: route.fulfill(
            status=200, headers={"content-type": "text/event-stream"}, body=": connected\n\n"
        ),
    )
    kept = await tm.register_task("kept", double, (1,))
    gone = await tm.register_task("gone", double, (2,))
    page = browser.page
    await page.goto(served.url)
    rows = page.locator("#task-rows tr")
    await pw_expect(rows).to_have_count(2, timeout=BOUND_MS)
    await remove(system, [gone])
    await page.locator(f'tr[data-task-id="{gone}"] button.cancel').click()
    message = f"cancel failed: no task with id {gone!r} (never registered, or cleaned up)"
    await pw_expect(page.locator("#message")).to_have_text(message, timeout=BOUND_MS)
    await pw_expect(rows).to_have_count(1, timeout=BOUND_MS)
    await pw_expect(rows).to_have_attribute("data-task-id", kept)

    async def broken() -> None:
        raise ValueError("once")

    failed = await tm.register_task("failed", broken)
    with pytest.raises(ValueError, match="once"):
        await tm.execute_task(failed, wait=True)
    await page.goto(f"{served.url}#/task/{failed}")
    await pw_expect(page.locator("#task-name")).to_have_text("failed", timeout=BOUND_MS)
    assert await tm.cleanup_completed_tasks(0) == 1
    await page.locator("button.retry").click()
    message = f"retry failed: no task with id {failed!r} (never registered, or cleaned up)"
    await pw_expect(page.locator("#message")).to_have_text(message, timeout=BOUND_MS)
    await pw_expect(page.locator("#task-detail h1")).to_have_text(
        "Task not found", timeout=BOUND_MS
    )
    assert await tm.get_task_status(kept) is TaskStatus.PENDING


async def test_a_graph_around_a_task_with_many_dependents_draws_it_and_its_nearest(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    tm = system.task_manager
    root = await tm.register_task("root", double, (0,))
    kids = await asyncio.gather(
        *(tm.register_task(f"k{i}", double, (i,), dependencies=[root]) for i in range(400))
    )
    page = await open_live(browser, f"{served.url}#/graph")
    await page.fill("#graph-around", root)
    await page.get_by_role("button", name="Show").click()
    note = f"showing the 300 of the 401 tasks around {root} nearest to it"
    await pw_expect(page.get_by_text(note)).to_have_count(1, timeout=BOUND_MS)
    nodes = page.locator("#graph-svg g.node")
    await pw_expect(nodes).to_have_count(300)
    await pw_expect(page.locator("#graph-svg path[marker-end]")).to_have_count(299)
    drawn = await nodes.evaluate_all("ns => ns.map(n => n.dataset.taskId)")
    newest = kids[-299:]  # (gather registers them in order)
    assert drawn[0] == root
    assert set(drawn[1:]) == set(newest)
    await browser.shot("graph-around")


async def test_a_task_with_many_dependents_lists_the_first_and_says_how_many_more(
    system: ActorSystem,
    served: DashboardServer,
    browser: Browser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from actors.dashboard import _app

    monkeypatch.setattr(_app, "DETAIL_MAX_IDS", 50)
    tm = system.task_manager
    root = await tm.register_task("root", double, (0,))
    kids = await asyncio.gather(
        *(tm.register_task(f"k{i}", double, (i,), dependencies=[root]) for i in range(1_000))
    )
    page = await open_live(browser, f"{served.url}#/task/{root}")
    await pw_expect(page.locator("#task-name")).to_have_text("root", timeout=BOUND_MS)
    links = page.locator("#task-detail dd a")
    await pw_expect(links).to_have_count(50)
    assert await links.all_text_contents() == kids[:50]
    more = page.locator("#task-detail .more")
    await pw_expect(more).to_have_text(
        " and 950 more (the graph page shows those around this task)"
    )


async def test_a_dashboard_that_outlives_its_system_says_why_on_every_page(
    browser: Browser,
) -> None:
    """Mounted in a service, the dashboard can outlive its system: each page shows the
    503's reason (the charts said nothing and stood still)."""
    browser.expected.append(
        "Failed to load resource: the server responded with a status of 503 (Service Unavailable)"
    )
    async with ActorSystem() as system:
        await system.task_manager.register_task("before", double, (1,))
        server = DashboardServer(system).start()  # not the system's: it does not stop it
    try:
        assert server.running
        stopped = "the actor system is shut down; create a new ActorSystem"
        page = browser.page
        await page.goto(server.url)
        await pw_expect(page.locator("#task-rows")).to_have_text(stopped, timeout=BOUND_MS)
        await pw_expect(page.locator("#live")).to_have_text("offline")
        await page.goto(f"{server.url}#/graph")
        await pw_expect(page.locator("#graph")).to_have_text(stopped, timeout=BOUND_MS)
        await page.goto(f"{server.url}#/supervision")
        await pw_expect(page.locator("#supervision")).to_have_text(
            "the root supervisor is stopped", timeout=BOUND_MS
        )
        await page.goto(f"{server.url}#/charts")
        await pw_expect(page.locator("#charts-error")).to_have_text(
            f"no sample: {stopped}", timeout=BOUND_MS
        )
        await browser.shot("charts-stopped")
    finally:
        server.stop()


@pytest.mark.parametrize(
    "task_id", ["a/b?c#d%e f", "..%2F..%2Fapi%2Fconfig", "ü 🙂/", "x/../y", "..", "."]
)
async def test_a_task_id_with_url_characters_opens_and_cancels_its_own_task(
    system: ActorSystem, served: DashboardServer, browser: Browser, task_id: str
) -> None:
    tm = system.task_manager
    other = await tm.register_task("other", double, (1,), task_id="y")
    task = await tm.register_task("odd", double, (2,), task_id=task_id)
    page = await open_live(browser, served.url)
    await pw_expect(page.locator("#task-rows tr")).to_have_count(2, timeout=BOUND_MS)
    await page.get_by_role("link", name="odd").click()
    await pw_expect(page.locator("#task-name")).to_have_text("odd", timeout=BOUND_MS)
    await pw_expect(page.locator("#task-detail dd").first).to_have_text(task_id)
    await page.locator("#task-detail button.cancel").click()
    await pw_expect(page.locator("#message")).to_have_text("cancelled", timeout=BOUND_MS)
    assert await tm.get_task_status(task) is TaskStatus.CANCELLED
    assert await tm.get_task_status(other) is TaskStatus.PENDING


async def test_the_graph_page_asks_for_one_graph_at_a_time(
    system: ActorSystem, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Around a task in 100,000 the graph query took 5.9 s (every task read), and the
    page asked again each second while events came, so the queries piled up on the
    server. Now a query asked for while one runs waits, and runs once after it."""
    from actors.dashboard import _app

    arrived = threading.Event()
    gate = threading.Event()
    original = _app._Dashboard.graph

    async def held(self: _app._Dashboard, request: Any) -> Any:
        arrived.set()
        await asyncio.to_thread(gate.wait, BOUND_MS / 1000)
        return await original(self, request)

    monkeypatch.setattr(_app._Dashboard, "graph", held)
    server = system.serve_dashboard()
    log: list[str] = []
    page = browser.page
    page.on("request", lambda r: log.append("asked") if "api/graph" in r.url else None)
    page.on("requestfinished", lambda r: log.append("answered") if "api/graph" in r.url else None)
    try:
        await page.clock.install()
        await open_live(browser, f"{server.url}#/graph")
        assert await asyncio.to_thread(arrived.wait, BOUND_MS / 1000)
        await page.evaluate(
            "() => { window.heard = 0; state.listeners.add(() => { window.heard++; }); }"
        )
        await system.task_manager.register_task("new", double, (1,))
        await page.wait_for_function("() => window.heard >= 1", timeout=BOUND_MS)
        await page.clock.run_for(3_000)  # three ticks of the page's refresh, the graph held
        gate.set()
        await pw_expect(page.locator("#graph-svg g.node")).to_have_count(1, timeout=BOUND_MS)
        assert log[:3] == ["asked", "answered", "asked"]
    finally:
        gate.set()
        server.stop()


async def test_the_type_filter_lists_no_other_label_and_says_more_types_exist(
    system: ActorSystem, served: DashboardServer, browser: Browser
) -> None:
    """The metrics name the first METRICS_MAX_TASK_TYPES types (100) and count the rest
    under "__other__": the filter offered "__other__", which matched no task."""
    tm = system.task_manager
    await asyncio.gather(
        *(tm.register_task(f"job-{i}", double, (i,), task_type=f"t{i:03}") for i in range(150))
    )
    page = await open_live(browser, served.url)
    await pw_expect(page.locator("#page-info")).to_have_text("1-50 of 150", timeout=BOUND_MS)
    options = page.locator("#filter-type option")
    await pw_expect(options).to_have_count(102)
    texts = await options.all_text_contents()
    assert texts == ["any type", *(f"t{i:03}" for i in range(100)), "(more types, not listed)"]
    await page.select_option("#filter-type", "t050")
    await pw_expect(page.locator("#page-info")).to_have_text("1-1 of 1", timeout=BOUND_MS)
    await pw_expect(page.locator("#filter-type option:checked")).to_have_text("t050")
