"use strict";
// The operators' console: every lane live (GET /admin/queues every few seconds) over its last hour
// (GET /admin/metrics), each function's throughput and failure rate, every user's jobs, and the actions that
// mend them. Static and dependency-free like the upload page; the token is kept the same way.
// The API, the token and the link's fragment come from connection.js.
// #every= : milliseconds between two reads of the lanes (3 s by default), read once like #token.
const EVERY_MS = Math.min(60000, Math.max(500, Number(fragment.get("every")) || 3000));

const HOUR_MS = 3600 * 1000;
const METRICS_EVERY_MS = 60000;

async function api(method, path, body) {
  const response = await fetch(base() + path, {
    method,
    headers: { Authorization: "Bearer " + $("token").value, "Content-Type": "application/json", Accept: "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (response.status === 403 || response.status === 401) forbidden(response.status, data);
  return { status: response.status, data };
}

function forbidden(status, data) {
  $("console").hidden = true;
  if (status === 403) {
    $("forbidden").hidden = false;
    setStatus("operators only", "bad");
  } else {
    setStatus(`${data.code || "auth.required"}: paste an operator's token`, "bad");
    $("settings").open = true;
  }
  stop = true;
}

function setStatus(text, kind) {
  $("status").textContent = text;
  $("status").className = "status " + kind;
}

function report(text, kind = "ok") {
  const el = $("report");
  el.hidden = false;
  el.textContent = text;
  el.className = "report " + kind;
}

// Ask first: a modal dialog; resolves true when the operator goes ahead.
function confirmed(question) {
  const dialog = $("confirm");
  dialog.querySelector(".question").textContent = question;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

const cell = (text, cls) => {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
};
const age = (s) => (s === null || s === undefined ? "–" : s < 120 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`);

// ------------------------------------------------------------------ sparklines (inline SVG, drawn by hand)
const SVG = "http://www.w3.org/2000/svg";

// Every sparkline spans the same time: the last hour, or less when less is known (a stack that started a few
// minutes ago, a console just opened): from the first point read, so that a young stack's lines fill the box.
let knownSince = Date.now();
const spanStart = (now) => Math.max(now - HOUR_MS, Math.min(knownSince, now - 60000));

// points: [[epoch ms, value], ...] over the last hour; a missing count is zero (an idle queue publishes nothing).
function sparkline(points, now) {
  const width = 96, height = 22;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("class", "spark");
  const shown = points.filter(([t]) => t >= now - HOUR_MS).sort((a, b) => a[0] - b[0]);
  const max = Math.max(1, ...shown.map(([, v]) => v));
  svg.dataset.points = String(shown.length);
  svg.dataset.max = String(Math.max(0, ...shown.map(([, v]) => v)));
  svg.dataset.last = shown.length ? String(shown[shown.length - 1][1]) : "";
  const start = spanStart(now);
  const x = (t) => ((Math.max(t, start) - start) / (now - start)) * (width - 2) + 1;
  const y = (v) => height - 1 - (v / max) * (height - 3);
  const base = document.createElementNS(SVG, "line");
  base.setAttribute("x1", 1);
  base.setAttribute("x2", width - 1);
  base.setAttribute("y1", height - 1);
  base.setAttribute("y2", height - 1);
  base.setAttribute("class", "axis");
  svg.append(base);
  if (shown.length) {
    const line = document.createElementNS(SVG, "polyline");
    const coords = shown.length === 1 ? [[now - 60000, shown[0][1]], shown[0]] : shown;
    line.setAttribute("points", coords.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "));
    svg.append(line);
  }
  const title = document.createElementNS(SVG, "title");
  const minutes = Math.round((now - start) / 60000);
  title.textContent = `${minutes >= 60 ? "last hour" : `last ${minutes} min`}: max ${svg.dataset.max}`;
  svg.append(title);
  return svg;
}

// ------------------------------------------------------------------ lanes: live points over the last hour
const recorded = new Map();  // "presets-high/depth" -> [[t, v], ...] from GET /admin/metrics
const live = new Map();  // the same keys -> points this console read itself (GET /admin/queues)
let metrics = null;
let stop = false;

function series(key) {
  const past = recorded.get(key) || [];
  const own = live.get(key) || [];
  const from = own.length ? own[0][0] : Infinity;
  return [...past.filter(([t]) => t < from), ...own];
}

function remember(key, t, v) {
  if (v === null || v === undefined) return;
  const points = live.get(key) || [];
  points.push([t, v]);
  while (points.length && points[0][0] < t - HOUR_MS) points.shift();
  live.set(key, points);
}

async function refreshMetrics() {
  const r = await api("GET", "/admin/metrics?minutes=60");
  if (r.status !== 200) {
    $("lanes-note").textContent = r.status === 403 ? "" : `(last hour unavailable: ${r.data.code || r.status})`;
    return;
  }
  metrics = r.data;
  for (const q of metrics.queues) {
    for (const key of ["depth", "inFlight", "oldestAgeSeconds", "dlqDepth", "deleted"]) recorded.set(`${q.concern}-${q.lane}/${key}`, q[key] || []);
  }
  for (const points of [...recorded.values(), ...(metrics.functions || []).map((f) => f.series?.invocations || [])]) {
    for (const [t] of points) knownSince = Math.min(knownSince, t);
  }
  const since = spanStart(Date.now()) > Date.now() - HOUR_MS + 60000 ? ` (since ${new Date(spanStart(Date.now())).toLocaleTimeString()}: nothing older is known)` : "";
  $("lanes-note").textContent = `(sparklines: the last hour${since}, ${metrics.periodSeconds / 60}-minute points, then live every ${EVERY_MS / 1000} s)`;
  drawFunctions();
}

function drawFunctions() {
  const body = $("functions").querySelector("tbody");
  body.replaceChildren();
  for (const f of metrics?.functions || []) {
    const tr = document.createElement("tr");
    tr.dataset.function = f.function;
    const invocations = cell(String(f.invocations));
    invocations.append(sparkline(f.series?.invocations || [], Date.now()));
    tr.append(
      cell(f.function),
      invocations,
      cell(String(f.perMinute)),
      cell(String(f.errors), f.errors ? "bad" : ""),
      cell(f.failureRate === null ? "–" : `${f.failureRate} %`, f.failureRate ? "bad" : ""),
      cell(f.averageDurationMs === null ? "–" : `${Math.round(f.averageDurationMs)} ms`),
    );
    body.append(tr);
  }
  $("functions-note").textContent = metrics ? `(last ${metrics.minutes} minutes)` : "";
}

async function refreshLanes() {
  const r = await api("GET", "/admin/queues");
  if (r.status !== 200) return false;
  const now = Date.now();
  const body = $("lanes").querySelector("tbody");
  const rows = [];
  for (const q of r.data.queues) {
    const name = `${q.concern}-${q.lane}`;
    remember(`${name}/depth`, now, q.depth);
    remember(`${name}/inFlight`, now, q.inFlight);
    remember(`${name}/oldestAgeSeconds`, now, q.oldestAgeSeconds);
    remember(`${name}/dlqDepth`, now, q.dlqDepth);
    const tr = document.createElement("tr");
    tr.dataset.queue = name;
    const withSpark = (text, key, cls) => {
      const td = cell(text, cls);
      td.dataset.key = key;
      td.append(sparkline(series(`${name}/${key}`), now));
      return td;
    };
    const done = (recorded.get(`${name}/deleted`) || []).filter(([t]) => t >= now - HOUR_MS);
    const perMinute = done.reduce((sum, [, v]) => sum + v, 0) / 60;
    const action = document.createElement("td");
    if (q.dlq) {
      const button = document.createElement("button");
      button.textContent = "Redrive DLQ";
      button.className = "redrive";
      button.disabled = !q.dlqDepth;
      button.addEventListener("click", () => redrive(name, q.dlqDepth));
      action.append(button);
    }
    tr.append(
      cell(name, "queue"),
      withSpark(String(q.depth), "depth"),
      withSpark(String(q.inFlight), "inFlight"),
      withSpark(age(q.oldestAgeSeconds), "oldestAgeSeconds"),
      withSpark(String(q.dlqDepth ?? "–"), "dlqDepth", q.dlqDepth ? "bad" : ""),
      cell(perMinute ? perMinute.toFixed(1) : "0"),
      action,
    );
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  setStatus(`live · ${new Date(now).toLocaleTimeString()}`, "ok");
  return true;
}

// ------------------------------------------------------------------ jobs across users
const pages = [];  // the cursors of the pages shown so far (null: the first)
let nextCursor = null;

function filters() {
  const form = new FormData($("filters"));
  const query = new URLSearchParams();
  for (const name of ["state", "code", "owner", "limit"]) if (form.get(name)) query.set(name, String(form.get(name)).trim());
  for (const name of ["since", "until"]) if (form.get(name)) query.set(name, new Date(String(form.get(name))).toISOString());
  return query;
}

async function showJobs(cursor) {
  const query = filters();
  if (cursor) query.set("cursor", cursor);
  const r = await api("GET", `/admin/jobs?${query}`);
  const body = $("jobs").querySelector("tbody");
  if (r.status !== 200) {
    if (r.status !== 403) report(`${r.data.code}: ${r.data.message}`, "bad");
    return;
  }
  body.replaceChildren();
  for (const job of r.data.jobs) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = job.jobId;
    tr.dataset.state = job.state;
    const action = document.createElement("td");
    if (["failed", "cancelled"].includes(job.state)) {
      const button = document.createElement("button");
      button.textContent = "Retry";
      button.className = "retry";
      button.addEventListener("click", () => retryOne(job));
      action.append(button);
    }
    tr.append(
      cell(new Date(job.updatedAt).toLocaleString()),
      cell(job.owner),
      cell(job.name, "name"),
      cell(job.state, `state ${job.state}`),
      cell(job.error ? job.error.code : "", job.error ? "bad code" : "code"),
      cell(job.lane || ""),
      cell(String(job.retries ?? 0)),
      action,
    );
    body.append(tr);
  }
  if (!r.data.jobs.length) {
    const tr = document.createElement("tr");
    tr.append(cell("no jobs match", "empty"));
    tr.firstChild.colSpan = 8;
    body.append(tr);
  }
  nextCursor = r.data.nextCursor;
  $("next").disabled = !nextCursor;
  $("first").disabled = pages.length <= 1;
  $("page").textContent = `page ${pages.length}`;
}

// ------------------------------------------------------------------ actions: ask, act, say how many
async function retryOne(job) {
  if (!(await confirmed(`Retry ${job.owner}'s job ${job.name} (${job.error?.code || job.state})?`))) return;
  const r = await api("POST", "/admin/jobs/retry", { jobId: job.jobId });
  if (r.status !== 200) return report(`${r.data.code}: ${r.data.message}`, "bad");
  const skipped = r.data.jobs.filter((j) => j.result === "skipped").map((j) => j.code);
  report(`Retried ${r.data.retried} job${r.data.retried === 1 ? "" : "s"}${skipped.length ? `; skipped (${skipped.join(", ")})` : ""}.`);
  showJobs(pages[pages.length - 1]);
}

// Every failed job with a code, a bounded page at a time, following nextCursor.
async function retryCode(code) {
  if (!(await confirmed(`Retry every failed job with the code ${code}, of every user?`))) return;
  let retried = 0, skipped = 0, cursor = null, calls = 0;
  do {
    const r = await api("POST", "/admin/jobs/retry", { code, limit: 100, ...(cursor ? { cursor } : {}) });
    if (r.status !== 200) return report(`${r.data.code}: ${r.data.message} (retried ${retried} before that)`, "bad");
    retried += r.data.retried;
    skipped += r.data.skipped;
    cursor = r.data.nextCursor;
    report(`Retrying ${code}: ${retried} jobs so far…`);
  } while (cursor && ++calls < 50);
  report(`Retried ${retried} failed job${retried === 1 ? "" : "s"} with ${code}${skipped ? `; ${skipped} skipped` : ""}${cursor ? "; more remain, run it again" : ""}.`);
  showJobs(pages[pages.length - 1]);
}

async function redrive(queue, depth) {
  if (!(await confirmed(`Move the ${depth} message(s) of ${queue}'s dead-letter queue back to ${queue}?`))) return;
  const r = await api("POST", "/admin/dlq/redrive", { queue });
  if (r.status !== 200) return report(`${r.data.code}: ${r.data.message}`, "bad");
  const about = r.data.approximate ? "about " : "";
  report(`Redrove ${about}${r.data.messages} message${r.data.messages === 1 ? "" : "s"} of ${queue}'s DLQ${r.data.more ? "; more remain, run it again" : ""}.`);
  refreshLanes();
}

async function clean(days) {
  if (!(await confirmed(`Purge every ended job (ready, failed, cancelled) older than ${days} days, with its stored files when no other job needs them?`))) return;
  let purged = 0, files = 0, calls = 0, more = false;
  do {
    const r = await api("POST", "/admin/clean", { olderThanDays: days, limit: 500 });
    if (r.status !== 200) return report(`${r.data.code}: ${r.data.message} (purged ${purged} before that)`, "bad");
    purged += r.data.purged;
    files += r.data.filesDeleted;
    more = r.data.more && r.data.purged > 0;
  } while (more && ++calls < 20);
  report(`Purged ${purged} ended job${purged === 1 ? "" : "s"} older than ${days} days (${files} stored file${files === 1 ? "" : "s"} deleted)${more ? "; more remain, run it again" : ""}.`);
  showJobs(pages[pages.length - 1]);
}

// ------------------------------------------------------------------ wiring
$("filters").addEventListener("submit", (e) => {
  e.preventDefault();
  pages.length = 0;
  pages.push(null);
  showJobs(null);
});
$("next").addEventListener("click", () => {
  pages.push(nextCursor);
  showJobs(nextCursor);
});
$("first").addEventListener("click", () => {
  pages.length = 0;
  pages.push(null);
  showJobs(null);
});
$("retry-code").addEventListener("submit", (e) => {
  e.preventDefault();
  retryCode(String(new FormData(e.target).get("code")).trim());
});
$("clean").addEventListener("submit", (e) => {
  e.preventDefault();
  clean(Number(new FormData(e.target).get("days")));
});
$("connect").addEventListener("click", () => {
  sessionStorage.setItem("docpipe.api", $("api").value);
  sessionStorage.setItem("docpipe.token", $("token").value);
  location.reload();
});

async function run() {
  if (!$("token").value) return setStatus("paste an operator's token", "bad");
  if (!(await refreshLanes())) return;
  $("console").hidden = false;
  pages.push(null);
  showJobs(null);
  refreshMetrics().then(() => refreshLanes());
  let lastMetrics = Date.now();
  while (!stop) {
    await sleep(EVERY_MS);
    if (Date.now() - lastMetrics > METRICS_EVERY_MS) {
      lastMetrics = Date.now();
      refreshMetrics();
    }
    await refreshLanes().catch(() => setStatus("the API does not answer; trying again", "bad"));
  }
}
run();
