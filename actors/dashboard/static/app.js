// actorflow dashboard: plain JavaScript, no build step, no outside resources.
// Everything that comes from a task (names, ids, arguments, errors) goes into the DOM as
// text (textContent / createTextNode), never as HTML.
"use strict";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const STATUSES = ["pending", "waiting", "queued", "running", "retrying", "completed", "failed", "cancelled"];
const KIND_TO_STATUS = {
  registered: "pending", waiting: "waiting", queued: "queued", started: "running",
  retrying: "retrying", completed: "completed", failed: "failed", cancelled: "cancelled",
  removed: "removed",
};
const COLOURS = {
  pending: "#d9d9d9", waiting: "#add8e6", queued: "#6fa8dc", running: "#ffd700",
  retrying: "#ffa500", completed: "#6abf69", failed: "#e06666", cancelled: "#8c8c8c",
};
const PALETTE = ["#2f5db8", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d"];
const SVGNS = "http://www.w3.org/2000/svg";
const PAGE_SIZE = 50;
const OTHER_TYPES = "__other__";  // the metrics' label of the types past their limit

const state = {
  config: { read_only: false, token_required: false },
  page: null,
  // The task table pages by cursor: `after` is the cursor the shown page starts after
  // (null: the first page, which shows new tasks as they come), `start` how many rows
  // the pages before it held; `back` the {after, start} of each page Next left, so that
  // Previous shows the page before again. Filters start over from the first page.
  tasks: { after: null, start: 0, back: [], status: "", type: "", q: "" },
  timers: [],
  samples: [],
  listeners: new Set(),
};

// -- small helpers ---------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

function statusBadge(status) {
  return el("span", { class: `status status-${STATUSES.includes(status) || status === "removed" ? status : "pending"}`, text: status });
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  if (value < 1) return `${(value * 1000).toFixed(1)} ms`;
  return `${value.toFixed(2)} s`;
}

function taskLink(taskId, text) {
  return el("a", { href: `#/task/${encodeURIComponent(taskId)}`, text: text === undefined ? taskId : text });
}

function token() { return sessionStorage.getItem("actorflow-token") || ""; }

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token()) h.Authorization = `Bearer ${token()}`;
  return h;
}

function showMessage(text) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.hidden = !text;
}

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const response = await fetch(path, opts);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (response.status === 401) askToken();
  if (!response.ok) throw new HttpError(response.status, (body && body.error) || String(body));
  return body;
}

async function action(name, taskId) {
  try {
    const result = await api(`api/actions/${name}?${new URLSearchParams({ id: taskId })}`, {
      method: "POST", headers: { "X-Actorflow-Action": "1" },
    });
    showMessage(name === "retry" ? `retried as ${result.retry}` : (result.cancelled ? "cancelled" : "already finished"));
    render();
  } catch (err) {
    showMessage(`${name} failed: ${err.message}`);
    if (err instanceof HttpError) render();  // e.g. the task was removed meanwhile: show what is left
  }
}

function askToken() {
  document.getElementById("token-form").hidden = false;
}

function every(ms, fn) { state.timers.push(setInterval(fn, ms)); }

// -- live events (server-sent events read with fetch, so the token goes in a header) --

async function listen() {
  const live = document.getElementById("live");
  for (;;) {
    try {
      const response = await fetch("api/events", { headers: headers() });
      if (response.status === 401) { askToken(); return; }
      if (!response.ok) throw new Error(`events: ${response.status}`);
      live.textContent = "live"; live.className = "live on";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const chunk = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of chunk.split("\n")) {
            if (line.startsWith("data: ")) {
              const event = JSON.parse(line.slice(6));
              for (const fn of state.listeners) fn(event);
            }
          }
        }
      }
    } catch (err) {
      // the server went away: try again shortly
    }
    live.textContent = "offline"; live.className = "live off";
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// -- pages -------------------------------------------------------------------------------

async function tasksPage(main) {
  const t = state.tasks;
  const statusSelect = el("select", { id: "filter-status" }, el("option", { value: "", text: "any status" }),
    ...STATUSES.map((s) => el("option", { value: s, text: s, selected: t.status === s })));
  const typeSelect = el("select", { id: "filter-type" }, el("option", { value: "", text: "any type" }));
  const search = el("input", { id: "filter-q", type: "search", placeholder: "search name or id", value: t.q });
  const apply = () => { t.status = statusSelect.value; t.type = typeSelect.value; t.q = search.value.trim(); t.after = null; t.start = 0; t.back = []; load(); };
  statusSelect.addEventListener("change", apply);
  typeSelect.addEventListener("change", apply);
  search.addEventListener("keydown", (e) => { if (e.key === "Enter") apply(); });
  const tbody = el("tbody", { id: "task-rows" });
  const info = el("span", { id: "page-info" });
  let shown = null;  // the page on screen: its next cursor and row count
  const prev = el("button", { id: "prev", text: "Previous", disabled: true, onclick: () => {
    if (!t.back.length) return;
    ({ after: t.after, start: t.start } = t.back.pop());
    turn();
  } });
  const next = el("button", { id: "next", text: "Next", disabled: true, onclick: () => {
    if (!shown || shown.next === null) return;
    t.back.push({ after: t.after, start: t.start });
    t.after = shown.next;
    t.start += shown.count;
    turn();
  } });
  function turn() {  // until the new page is in, a second click would reuse this one's cursor
    shown = null;
    prev.disabled = next.disabled = true;
    load();
  }
  main.append(
    el("h1", { text: "Tasks" }),
    el("div", { class: "filters" }, statusSelect, typeSelect, search, el("button", { text: "Filter", onclick: apply })),
    el("table", { id: "tasks" },
      el("thead", {}, el("tr", {}, ...["Name", "Id", "Type", "Status", "Attempts", "Run time", "Actions"].map((h) => el("th", { text: h })))),
      tbody),
    el("div", { class: "pager" }, prev, info, next),
  );
  try {
    const metrics = await api("api/metrics");
    // The types the metrics name (METRICS_MAX_TASK_TYPES, the first seen; the rest are
    // counted together under OTHER_TYPES, which is no type to filter by), and the one chosen.
    const byType = metrics.tasks_by_type;
    const shown = new Set(Object.keys(byType).filter((type) => type !== OTHER_TYPES));
    if (t.type) shown.add(t.type);
    for (const type of [...shown].sort()) {
      typeSelect.append(el("option", { value: type, text: type, selected: t.type === type }));
    }
    if (OTHER_TYPES in byType) {
      typeSelect.append(el("option", { value: "", disabled: true, text: "(more types, not listed)" }));
    }
  } catch (err) { /* the table says what went wrong */ }

  let stale = false;
  let loads = 0;  // a slow answer to an earlier load (a refresh, a page left) is dropped
  async function load() {
    const mine = ++loads;
    const params = new URLSearchParams({ limit: PAGE_SIZE });
    if (t.after !== null) params.set("after", t.after);
    if (t.status) params.set("status", t.status);
    if (t.type) params.set("type", t.type);
    if (t.q) params.set("q", t.q);
    let page;
    try {
      page = await api(`api/tasks?${params}`);
    } catch (err) {
      if (mine !== loads) return;
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 7, text: err.message })));
      prev.disabled = !t.back.length;
      return;
    }
    if (mine !== loads) return;
    stale = false;
    shown = { next: page.next, count: page.rows.length };
    tbody.replaceChildren(...page.rows.map(row));
    if (!page.rows.length) tbody.append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "no tasks" })));
    const first = t.start + 1;
    const last = t.start + page.rows.length;
    // (`start` counts the rows of the pages walked through: an estimate once tasks came and went)
    info.textContent = !page.total ? "0 tasks" : page.rows.length ? `${first}-${last} of ${page.total}` : `none left of ${page.total}`;
    prev.disabled = !t.back.length;
    next.disabled = page.next === null;
  }
  function row(r) {
    const cells = [
      el("td", {}, taskLink(r.task_id, r.name)),
      el("td", { class: "id", text: r.task_id }),
      el("td", { text: r.task_type }),
      el("td", { class: "status-cell" }, statusBadge(r.status)),
      el("td", { class: "attempts", text: r.attempts }),
      el("td", { text: seconds(r.duration) }),
      el("td", {}, actionButtons(r.task_id, r.status, r.status === "failed")),
    ];
    return el("tr", { "data-task-id": r.task_id, "data-status": r.status }, ...cells);
  }
  function onEvent(event) {
    if (!event.task_id) return;
    const status = KIND_TO_STATUS[event.kind];
    const tr = [...tbody.children].find((x) => x.dataset.taskId === event.task_id);
    if (tr && status) {
      tr.dataset.status = status;
      tr.querySelector(".status-cell").replaceChildren(statusBadge(status));
      const actions = tr.lastElementChild;
      actions.replaceChildren(actionButtons(event.task_id, status, status === "failed"));
    }
    stale = true;  // attempts, run times, new tasks, rows leaving the filter: next refresh
  }
  state.listeners.add(onEvent);
  every(2000, () => { if (stale) load(); });
  await load();
}

function actionButtons(taskId, status, retryable) {
  const box = el("span", { class: "actions" });
  if (state.config.read_only) return box;
  if (!TERMINAL.has(status) && status !== "removed") {
    box.append(el("button", { class: "danger cancel", text: "Cancel", onclick: () => action("cancel", taskId) }));
  }
  if (retryable) box.append(el("button", { class: "retry", text: "Retry", onclick: () => action("retry", taskId) }));
  return box;
}

async function taskPage(main, taskId) {
  const box = el("div", { id: "task-detail" });
  main.append(el("p", {}, el("a", { href: "#/tasks", text: "← all tasks" })), box);
  async function load() {
    let d;
    try {
      d = await api(`api/task?${new URLSearchParams({ id: taskId })}`);  // (an id may be "..")
    } catch (err) {
      box.replaceChildren(el("h1", { text: "Task not found" }), el("p", { text: err.message }));
      return;
    }
    const fields = el("dl", { class: "fields" });
    const field = (name, value) => fields.append(el("dt", { text: name }), el("dd", {}, value === null || value === undefined ? "" : value));
    field("id", d.task_id);
    field("status", statusBadge(d.status));
    field("type", d.task_type);
    field("description", d.description);
    field("priority", d.priority);
    field("attempts", `${d.attempts} (max retries ${d.max_retries})`);
    field("system", d.backend);
    const ago = (at) => `${seconds(Math.max(0, d.now - at))} ago`;
    field("registered", ago(d.created_at));
    field("started", d.started_at === null ? "not started" : ago(d.started_at));
    field("finished", d.finished_at === null ? "not finished" : ago(d.finished_at));
    field("run time", d.duration === null ? "" : seconds(d.duration));
    field("queued for", d.started_at === null ? "" : seconds(d.started_at - d.created_at));
    field("error", d.error ? `${d.error.type}: ${d.error.message}` : "");
    if (d.status === "completed") field("result", el("code", { id: "task-result", text: d.result }));
    for (const [k, v] of Object.entries(d.metadata)) field(`metadata ${k}`, v);
    const depList = (ids, total) => {
      if (!ids.length) return el("span", { class: "muted", text: "none" });
      const list = el("span", {}, ...ids.flatMap((id, i) => [i ? ", " : "", taskLink(id)]));
      if (total > ids.length) list.append(el("span", { class: "muted more", text: ` and ${total - ids.length} more (the graph page shows those around this task)` }));
      return list;
    };
    field("depends on", depList(d.dependencies, d.dependencies_total));
    field("dependents", depList(d.dependents, d.dependents_total));
    const args = d.args === null
      ? el("p", { class: "muted", text: "not kept: a task that completed or was cancelled drops its arguments" })
      : el("pre", { id: "task-args", text: `${d.function}\nargs: (${d.args.join(", ")})\nkwargs: {${Object.entries(d.kwargs || {}).map(([k, v]) => `${k}=${v}`).join(", ")}}` });
    const attempts = d.failures.length
      ? d.failures.map((f) => el("div", { class: "attempt" },
          el("strong", { text: `attempt ${f.attempt}: ${f.error_type}` }), " ",
          el("span", { class: "muted", text: `${seconds(Math.max(0, d.now - f.at))} ago` }),
          el("p", { text: f.message }),
          el("pre", { class: "traceback", text: f.traceback })))
      : [el("p", { class: "muted", text: "no failed attempts" })];
    box.replaceChildren(
      el("h1", { id: "task-name", text: d.name }),
      actionButtons(d.task_id, d.status, d.retryable),
      fields,
      el("h2", { text: "Arguments" }), args,
      el("h2", { text: "Failed attempts" }), ...attempts,
    );
  }
  state.listeners.add((event) => { if (event.task_id === taskId) load(); });
  await load();
}

function layered(nodes, edges) {
  // Longest-path layering of a DAG: a task sits one layer right of its deepest dependency.
  const layer = new Map(nodes.map((n) => [n.id, 0]));
  const incoming = new Map(nodes.map((n) => [n.id, []]));
  for (const [dep, dependent] of edges) incoming.get(dependent).push(dep);
  const order = [];
  const seen = new Set();
  const visit = (id) => {
    if (seen.has(id)) return;
    seen.add(id);
    for (const dep of incoming.get(id)) visit(dep);
    order.push(id);
  };
  nodes.forEach((n) => visit(n.id));
  for (const id of order) {
    for (const dep of incoming.get(id)) layer.set(id, Math.max(layer.get(id), layer.get(dep) + 1));
  }
  const rows = new Map();
  const pos = new Map();
  for (const n of nodes) {
    const l = layer.get(n.id);
    const r = rows.get(l) || 0;
    rows.set(l, r + 1);
    pos.set(n.id, { x: 20 + l * 250, y: 20 + r * 56 });
  }
  return pos;
}

async function graphPage(main) {
  const typeInput = el("input", { id: "graph-type", placeholder: "task type" });
  const aroundInput = el("input", { id: "graph-around", placeholder: "around task id" });
  const wrap = el("div", { class: "graph-wrap", id: "graph" });
  const note = el("p", { class: "muted" });
  const source = el("pre", { id: "graph-source", hidden: true });
  const showSource = el("button", { text: "Mermaid source", onclick: async () => {
    source.hidden = !source.hidden;
    if (!source.hidden) source.textContent = await api(`api/graph?${query()}&format=mermaid`);
  } });
  const query = () => {
    const params = new URLSearchParams();
    if (typeInput.value.trim()) params.set("type", typeInput.value.trim());
    if (aroundInput.value.trim()) params.set("around", aroundInput.value.trim());
    return params.toString();
  };
  main.append(
    el("h1", { text: "Task graph" }),
    el("div", { class: "filters" }, typeInput, aroundInput, el("button", { text: "Show", onclick: () => load() }), showSource),
    note, wrap, source,
  );
  // One graph query at a time: with many tasks one can take seconds (around a task the
  // server reads every task), and events keep coming; asked meanwhile, it runs once after.
  let busy = false;
  let again = false;
  async function load() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do { again = false; await draw(); } while (again);
    } finally { busy = false; }
  }
  async function draw() {
    const q = query();
    const around = aroundInput.value.trim();
    let g;
    try {
      g = await api(`api/graph?${q}`);
    } catch (err) {
      wrap.replaceChildren(el("p", { text: err.message }));
      return;
    }
    note.textContent = !g.truncated ? `${g.total} tasks`
      : around ? `showing the ${g.nodes.length} of the ${g.total} tasks around ${around} nearest to it`
        : `showing the newest ${g.nodes.length} of ${g.total} tasks; filter by type or pick a task`;
    const pos = layered(g.nodes, g.edges);
    let width = 200; let height = 80;
    for (const p of pos.values()) { width = Math.max(width, p.x + 240); height = Math.max(height, p.y + 60); }
    const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "graph-svg" });
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#555" }));
    defs.append(marker);
    root.append(defs);
    for (const [dep, dependent] of g.edges) {
      const a = pos.get(dep); const b = pos.get(dependent);
      root.append(svg("path", { d: `M ${a.x + 210} ${a.y + 20} C ${a.x + 230} ${a.y + 20}, ${b.x - 20} ${b.y + 20}, ${b.x} ${b.y + 20}`, fill: "none", stroke: "#555", "marker-end": "url(#arrow)" }));
    }
    for (const n of g.nodes) {
      const p = pos.get(n.id);
      const group = svg("g", { class: "node", "data-task-id": n.id, transform: `translate(${p.x},${p.y})`, cursor: "pointer" });
      const title = svg("title");
      title.textContent = `${n.name} (${n.id}): ${n.status}`;
      group.append(title, svg("rect", { width: 210, height: 40, rx: 6, fill: COLOURS[n.status] || "#fff", stroke: "#333" }));
      const label = svg("text", { x: 8, y: 16 });
      label.textContent = n.name.length > 30 ? `${n.name.slice(0, 29)}…` : n.name;
      const sub = svg("text", { x: 8, y: 32, fill: "#333" });
      sub.textContent = n.status;
      group.append(label, sub);
      group.addEventListener("click", () => { location.hash = `#/task/${encodeURIComponent(n.id)}`; });
      root.append(group);
    }
    wrap.replaceChildren(root);
  }
  let stale = false;
  state.listeners.add(() => { stale = true; });
  every(1000, () => { if (stale) { stale = false; load(); } });
  await load();
}

async function supervisionPage(main) {
  const box = el("div", { class: "tree", id: "supervision" });
  main.append(el("h1", { text: "Supervision tree" }), box);
  async function load() {
    let s;
    try { s = await api("api/supervision"); } catch (err) { box.replaceChildren(el("p", { text: err.message })); return; }
    const list = el("ul", {}, ...s.children.map((c) => el("li", { "data-child": c.id },
      el("strong", { text: c.id }), " ",
      el("span", { class: `child-status status ${c.status === "running" ? "status-completed" : "status-retrying"}`, text: c.status }), " ",
      el("span", { class: "restarts", text: `restarts: ${c.restarts}` }), " ",
      el("span", { class: "muted", text: `(${c.restart})` }))));
    box.replaceChildren(
      el("div", {}, el("strong", { text: s.root }), " ",
        el("span", { class: "muted", text: `one_for_one: ${s.counts.active} active, ${s.counts.restarting} restarting, ${s.counts.stopped} stopped` })),
      list);
  }
  every(1000, load);
  await load();
}

function lineChart(title, id, series, unit) {
  // series: {name: [values...]}, one point a second, newest last.
  const width = 460; const height = 180; const pad = 36;
  const all = Object.values(series).flat();
  const top = Math.max(1e-9, ...all) * 1.1;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id });
  root.append(svg("line", { x1: pad, y1: height - pad, x2: width - 8, y2: height - pad, stroke: "#999" }));
  root.append(svg("line", { x1: pad, y1: 8, x2: pad, y2: height - pad, stroke: "#999" }));
  const topLabel = svg("text", { x: 2, y: 16, fill: "#666" });
  topLabel.textContent = unit(top);
  root.append(topLabel);
  const legend = el("div", { class: "legend" });
  Object.entries(series).forEach(([name, values], i) => {
    const colour = PALETTE[i % PALETTE.length];
    const points = values.map((v, j) => {
      const x = pad + (j / 59) * (width - pad - 8);
      const y = height - pad - (v / top) * (height - pad - 8);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    }).join(" ");
    if (values.length) root.append(svg("polyline", { points, fill: "none", stroke: colour, "stroke-width": 2 }));
    const last = values.length ? values[values.length - 1] : 0;
    const swatch = el("i");
    swatch.style.background = colour;  // CSSOM, allowed by the page's CSP (no inline styles)
    legend.append(el("span", {}, swatch, `${name}: ${unit(last)}`));
  });
  return el("div", { class: "chart" }, el("h2", { text: title }), root, legend);
}

async function chartsPage(main) {
  const box = el("div", { class: "charts", id: "charts" });
  const problem = el("p", { id: "charts-error", hidden: true });
  main.append(el("h1", { text: "Live charts" }), el("p", { class: "muted", text: "one sample a second, the last minute" }), problem, box);
  async function sample() {
    let m;
    try {
      m = await api("api/metrics");
    } catch (err) {  // say why the charts stand still
      problem.textContent = `no sample: ${err.message}`;
      problem.hidden = false;
      return;
    }
    problem.hidden = true;
    state.samples.push(m);
    if (state.samples.length > 61) state.samples.shift();
    draw();
  }
  function draw() {
    const s = state.samples;
    const throughput = [];
    for (let i = 1; i < s.length; i++) {
      const dt = s[i].taken_at - s[i - 1].taken_at;
      throughput.push(dt > 0 ? Math.max(0, s[i].attempts_ended - s[i - 1].attempts_ended) / dt : 0);
    }
    const types = new Set(s.flatMap((m) => Object.keys(m.p95_by_type)));
    const p95 = {};
    for (const type of [...types].sort().slice(0, PALETTE.length)) p95[type] = s.map((m) => m.p95_by_type[type] || 0);
    const mailboxes = (m) => Object.values(m.mailbox_depth).reduce((a, b) => a + b, 0);
    box.replaceChildren(
      lineChart("Throughput (attempts ended per second)", "chart-throughput", { "attempts/s": throughput }, (v) => v.toFixed(1)),
      lineChart("p95 run time per type", "chart-p95", p95, seconds),
      lineChart("Queue depths", "chart-queues", {
        ready: s.map((m) => m.ready_queue), pool: s.map((m) => m.pool_queue), mailboxes: s.map(mailboxes),
      }, (v) => v.toFixed(0)),
    );
  }
  every(1000, sample);
  await sample();
}

// -- routing -----------------------------------------------------------------------------

async function render() {
  for (const timer of state.timers) clearInterval(timer);
  state.timers = [];
  state.listeners.clear();
  const hash = location.hash || "#/tasks";
  const main = document.getElementById("main");
  main.replaceChildren();
  const [, page, ...rest] = hash.split("/");
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.page === page || (page === "task" && a.dataset.page === "tasks"));
  if (page === "task") return taskPage(main, decodeURIComponent(rest.join("/")));
  if (page === "graph") return graphPage(main);
  if (page === "supervision") return supervisionPage(main);
  if (page === "charts") return chartsPage(main);
  return tasksPage(main);
}

async function start() {
  const match = /^#token=(.+)$/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("actorflow-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", `${location.pathname}${location.search}#/tasks`);
  }
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("actorflow-token", document.getElementById("token-input").value);
    document.getElementById("token-form").hidden = true;
    location.reload();
  });
  try { state.config = await api("api/config"); } catch (err) { showMessage(err.message); }
  window.addEventListener("hashchange", () => { showMessage(""); render(); });
  listen();
  await render();
}

start();
