// zootrain dashboard: plain JavaScript against the REST API and its event stream; no build step.
"use strict";

const $ = (selector) => document.querySelector(selector);
const TERMINAL = ["succeeded", "failed", "cancelled"];
const JOB_ID = /^[0-9a-f]{20}$/;  // the service's own patterns (openapi.json)
const MODEL_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

// Every value that goes into a request's path is checked first, whether it came from the URL
// or from a response: a crafted link such as #job/..%2F..%2Fdatasets%2F<id> must not make the
// page send its token (and a DELETE) to another endpoint than the one it names.
function pathSegment(value, pattern, what) {
  if (typeof value !== "string" || !pattern.test(value)) {
    throw new Error(`not a valid ${what}: ${String(value).slice(0, 80)}`);
  }
  return encodeURIComponent(value);
}
let nextCursor = null;
let jobStream = null;

// -- the API token ---------------------------------------------------------------------------
// Kept in localStorage (this origin only) and sent as `Authorization: Bearer` on every request,
// the event stream included; never in a URL. Without storage (private modes), in memory.

const TOKEN_KEY = "zootrain.token";
let memoryToken = null;

function storedToken() {
  try { return localStorage.getItem(TOKEN_KEY) || null; } catch { return memoryToken; }
}

function storeToken(token) {
  memoryToken = token;
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
  } catch { /* storage unavailable: the in-memory copy lasts until the tab closes */ }
  renderAuth();
}

function withToken(headers = {}) {
  const token = storedToken();
  return token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
}

class AuthRequired extends Error {}

function renderAuth() {
  const signedIn = Boolean(storedToken());
  $("#token-form").hidden = signedIn;
  $("#signed-in").hidden = !signedIn;
}

// A 401 (or signing out): the prompt instead of half-loaded views; a refused token is forgotten.
function askForToken(detail, reason) {
  const refused = !reason && Boolean(storedToken());
  if (refused) storeToken(null);
  closeJobStream();
  document.querySelectorAll(".view").forEach((el) => { el.hidden = true; });
  $("#auth-reason").textContent = reason || (refused
    ? `The service refused the stored token${detail ? ` (${detail})` : ""}. Enter another one.`
    : "This zootrain service needs an API token to show jobs, models and workers.");
  $("#auth-prompt").hidden = false;
  $("#status").textContent = "";
  $("#token-input").focus();
  return new AuthRequired(detail || "an API token is needed");
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: withToken({ "Content-Type": "application/json", ...(options.headers || {}) }),
  });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (response.status === 401) throw askForToken(body?.detail);
  if (!response.ok) throw new Error(body?.detail || `${response.status} ${response.statusText}`);
  return body;
}

// -- Server-Sent Events over fetch() ---------------------------------------------------------
// EventSource cannot send an Authorization header, so this reads the stream itself and keeps
// EventSource's behaviour: `event:`/`data:`/`id:`/`retry:` fields, blank-line dispatch, and
// after a dropped or ended stream a reconnect that sends `Last-Event-ID`, so nothing is missed
// or repeated. `handlers` maps event names to functions of (data, id); close() stops it.

function eventStream(path, handlers, onError) {
  const controller = new AbortController();
  const stream = { closed: false, close() { this.closed = true; controller.abort(); } };
  let lastEventId = "";
  let retryMs = 3000;  // EventSource's usual reconnection delay; the stream's `retry:` sets it
  let progressed = false;  // an event arrived since the last (re)connect

  async function readOnce() {
    const headers = withToken({ Accept: "text/event-stream" });
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    const response = await fetch(path, { headers, cache: "no-store", signal: controller.signal });
    if (!response.ok) {
      const body = response.headers.get("content-type")?.includes("json")
        ? await response.json().catch(() => null) : null;
      if (response.status === 401) throw askForToken(body?.detail);
      const error = new Error(body?.detail || `${response.status} ${response.statusText}`);
      error.retry = [502, 503, 504].includes(response.status);
      throw error;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", eventType = "", data = [], idBuffer = lastEventId;
    const line = (text) => {
      if (text === "") {  // dispatch
        lastEventId = idBuffer;
        if (data.length) {
          const handler = handlers[eventType || "message"];
          progressed = true;
          if (handler) handler(data.join("\n"), lastEventId);
        }
        eventType = ""; data = [];
        return;
      }
      if (text.startsWith(":")) return;  // a comment: the service's keep-alive
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? "" : text.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") eventType = value;
      else if (field === "data") data.push(value);
      else if (field === "id" && !value.includes("\0")) idBuffer = value;
      else if (field === "retry" && /^\d+$/.test(value)) retryMs = Number(value);
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      // Lines end in \r\n, \n or \r; a \r at the very end may be half of a \r\n still to come.
      const lines = buffer.split(/\r\n|\r(?!$)|\n/);
      buffer = lines.pop();
      for (const text of lines) {
        line(text);
        if (stream.closed) { reader.cancel().catch(() => {}); return; }
      }
    }
  }

  (async () => {
    let failures = 0;
    while (!stream.closed) {
      progressed = false;
      try {
        await readOnce();  // the stream ended before the caller closed it: reconnect
      } catch (error) {
        if (stream.closed || error instanceof AuthRequired) return;
        if (error.retry === false) { stream.closed = true; onError(error); return; }
        // A network error or a 502/503/504: reconnect too.
      }
      if (stream.closed) return;
      failures = progressed ? 0 : failures + 1;
      // Backing off while reconnecting brings nothing new (a service that is down).
      const delay = Math.min(30000, retryMs * 2 ** Math.max(0, failures - 1));
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  })();
  return stream;
}

function closeJobStream() {
  if (jobStream) { jobStream.close(); jobStream = null; }
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

function stateBadge(state) {
  const span = document.createElement("span");
  span.className = `state ${state}`;
  span.textContent = state;
  return span;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

// -- views -----------------------------------------------------------------------------------

function show(view) {
  $("#auth-prompt").hidden = true;
  document.querySelectorAll(".view").forEach((el) => { el.hidden = el.id !== `view-${view}`; });
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === view));
  if (view !== "job") closeJobStream();
}

let routes = 0;  // only the newest navigation may write the status line

async function route() {
  const [view, arg] = (location.hash.slice(1) || "jobs").split("/");
  const current = ++routes;
  const status = (text) => { if (current === routes) $("#status").textContent = text; };
  try {
    if (view === "job" && arg) {
      const id = pathSegment(arg, JOB_ID, "job id");  // before anything is shown or asked for
      show("job");
      await openJob(id);
    }
    else if (view === "submit") { show("submit"); await loadAlgorithms(); }
    else if (view === "models") { show("models"); await loadModels(); }
    else if (view === "workers") { show("workers"); await loadWorkers(); }
    else { show("jobs"); await loadJobs(true); }
    await loadPaused();
    status("");
  } catch (error) {
    if (!(error instanceof AuthRequired)) status(error.message);
  }
}

let jobLoads = 0;  // only the newest load (a filter changed, a refresh) fills the table

async function loadJobs(reset) {
  const tbody = $("#jobs-table tbody");
  const current = ++jobLoads;
  const params = new URLSearchParams({ limit: "25" });
  const state = $("#state-filter").value;
  if (state) params.set("state", state);
  if (!reset && nextCursor) params.set("cursor", nextCursor);
  const page = await api(`/v1/jobs?${params}`);
  if (current !== jobLoads) return;  // an older answer, arriving after a newer request
  if (reset) tbody.replaceChildren();
  for (const job of page.items) {
    const tr = document.createElement("tr");
    tr.dataset.job = job.id;
    const stateTd = document.createElement("td");
    stateTd.append(stateBadge(job.state));
    tr.append(cell(job.id), cell(job.spec.model_name), cell(job.spec.algorithm),
      cell(job.spec.shards), stateTd, cell(when(job.created_at)));
    tr.addEventListener("click", () => { location.hash = `job/${job.id}`; });
    tbody.append(tr);
  }
  nextCursor = page.next_cursor;
  $("#more-jobs").hidden = !nextCursor;
}

function renderShard(shard) {
  let row = document.querySelector(`.shard[data-index="${shard.index}"]`);
  if (!row) {
    row = document.createElement("div");
    row.className = "shard";
    row.dataset.index = shard.index;
    row.innerHTML = '<span class="label"></span><div class="bar"><div></div></div><span class="info muted"></span>';
    const rows = [...document.querySelectorAll(".shard")];
    const after = rows.find((r) => Number(r.dataset.index) > shard.index);
    $("#shards").insertBefore(row, after || null);
  }
  row.dataset.state = shard.state;
  row.querySelector(".label").textContent = `shard ${shard.index}`;
  row.querySelector(".bar").className = `bar ${shard.state}`;
  const metric = shard.metrics ? Object.entries(shard.metrics)[0] : null;
  const parts = [shard.state, `attempt ${shard.attempts}`];
  if (shard.worker) parts.push(shard.worker);
  if (metric) parts.push(`${metric[0]} ${Number(metric[1]).toFixed(3)}`);
  // Why an attempt failed (a time or memory limit, an exception): also while it retries.
  if (shard.error) parts.push(shard.error);
  row.querySelector(".info").textContent = parts.join(" · ");
}

function renderJob(job) {
  $("#job-id").textContent = job.id;
  const badge = $("#job-state");
  badge.textContent = job.state;
  badge.className = `state ${job.state}`;
  const model = job.model ? ` → ${job.model.name} v${job.model.version}` : "";
  $("#job-summary").textContent =
    `${job.spec.algorithm} on ${job.spec.dataset.name || job.spec.dataset.kind}, ${job.spec.shards} shards${model}`;
  const finished = TERMINAL.includes(job.state);
  // A failed merge attempt that will be retried says why, until the job ends.
  const error = job.error || (!finished && job.merge_error ? `merge retrying: ${job.merge_error}` : "");
  $("#job-error").hidden = !error;
  $("#job-error").textContent = error;
  $("#cancel-job").hidden = finished;
}

async function openJob(id) {
  $("#shards").replaceChildren();
  const job = await api(`/v1/jobs/${id}`);
  renderJob(job);
  job.shards.forEach(renderShard);
  closeJobStream();
  const stream = eventStream(`/v1/jobs/${id}/events`, {
    job: (data) => {
      const record = JSON.parse(data);
      renderJob(record);
      if (TERMINAL.includes(record.state)) stream.close();
    },
    shard: (data) => renderShard(JSON.parse(data)),
  }, (error) => { $("#status").textContent = error.message; });
  jobStream = stream;
  $("#cancel-job").onclick = async () => {
    try { renderJob(await api(`/v1/jobs/${id}`, { method: "DELETE" })); }
    catch (error) { if (!(error instanceof AuthRequired)) $("#status").textContent = error.message; }
  };
}

async function loadAlgorithms() {
  const select = $("#algorithm-select");
  if (select.options.length) return;
  const schema = await api("/openapi.json");
  const names = schema.components.schemas.JobSpec.properties.algorithm.enum;
  for (const name of names) select.append(new Option(name, name, name === "random_forest_classifier", name === "random_forest_classifier"));
}

async function submitJob(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const error = $("#submit-error");
  error.hidden = true;
  try {
    const spec = {
      model_name: form.get("model_name"),
      algorithm: form.get("algorithm"),
      params: JSON.parse(form.get("params") || "{}"),
      dataset: { kind: "builtin", name: form.get("dataset") },
      shards: Number(form.get("shards")),
      partition: form.get("partition"),
    };
    const job = await api("/v1/jobs", {
      method: "POST",
      headers: { "Idempotency-Key": crypto.randomUUID() },
      body: JSON.stringify(spec),
    });
    location.hash = `job/${job.id}`;
  } catch (failure) {
    if (failure instanceof AuthRequired) return;
    error.textContent = failure.message;
    error.hidden = false;
  }
}

function scoreChart(versions) {
  // One group of bars a version: each shard model, the merged model and the baseline if any.
  const metric = (m) => m && (m.accuracy ?? m.r2 ?? m.adjusted_rand);
  const width = 640, barHeight = 10, gap = 3;
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.classList.add("chart");
  let y = 0;
  const bar = (label, value, color) => {
    if (value === undefined || value === null) return;
    const text = document.createElementNS(svgNS, "text");
    text.setAttribute("x", 0); text.setAttribute("y", y + barHeight - 1);
    text.textContent = label;
    const rect = document.createElementNS(svgNS, "rect");
    rect.setAttribute("x", 120); rect.setAttribute("y", y);
    rect.setAttribute("height", barHeight);
    rect.setAttribute("width", Math.max(1, (width - 200) * Math.max(0, value)));
    rect.setAttribute("fill", color);
    const num = document.createElementNS(svgNS, "text");
    num.setAttribute("x", 125 + (width - 200) * Math.max(0, value)); num.setAttribute("y", y + barHeight - 1);
    num.textContent = Number(value).toFixed(3);
    svg.append(text, rect, num);
    y += barHeight + gap;
  };
  for (const version of versions) {
    for (const shard of version.shard_metrics) bar(`v${version.version} shard ${shard.index}`, metric(shard.metrics), "#93c5fd");
    bar(`v${version.version} merged`, metric(version.metrics), "#15803d");
    if (version.baseline_metrics) bar(`v${version.version} baseline`, metric(version.baseline_metrics), "#f59e0b");
    y += 6;
  }
  svg.setAttribute("width", width);
  svg.setAttribute("height", Math.max(y, 10));
  return svg;
}

async function loadModels() {
  const container = $("#models");
  container.replaceChildren();
  for (const model of await api("/v1/models")) {
    const versions = await api(`/v1/models/${pathSegment(model.name, MODEL_NAME, "model name")}/versions`);
    const section = document.createElement("div");
    section.className = "model";
    const title = document.createElement("h3");
    title.textContent = `${model.name} (latest v${model.latest_version ?? "–"})`;
    const table = document.createElement("table");
    table.innerHTML = "<thead><tr><th>Version</th><th>Job</th><th>Algorithm</th><th>Shards</th><th>Metrics</th><th>Published</th></tr></thead>";
    const tbody = document.createElement("tbody");
    for (const version of versions) {
      const tr = document.createElement("tr");
      const metrics = Object.entries(version.metrics).map(([k, v]) => `${k} ${Number(v).toFixed(3)}`).join(", ");
      tr.append(cell(`v${version.version}`), cell(version.job_id), cell(version.algorithm),
        cell(version.shards), cell(metrics), cell(when(version.created_at)));
      tr.addEventListener("click", () => { location.hash = `job/${version.job_id}`; });
      tbody.append(tr);
    }
    table.append(tbody);
    section.append(title, scoreChart(versions.slice(-5)), table);
    container.append(section);
  }
  if (!container.children.length) container.textContent = "No model has been published yet.";
}

// The live configuration's paused flag (PATCH /v1/config), shown on every page.
async function loadPaused() {
  const config = await api("/v1/config");
  $("#paused-banner").hidden = !config.settings.paused;
}

async function loadWorkers() {
  const tbody = $("#workers-table tbody");
  tbody.replaceChildren();
  for (const worker of await api("/v1/workers")) {
    const tr = document.createElement("tr");
    tr.append(cell(worker.id), cell(worker.host), cell(worker.pid), cell(when(worker.started_at)),
      cell(worker.current.join(", ") || (worker.state && worker.state !== "active" ? worker.state : "idle")));
    tbody.append(tr);
  }
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();  // the form is never sent anywhere: the token stays out of URLs
  const input = $("#token-input");
  const token = input.value.trim();
  input.value = "";
  if (!token) return;
  storeToken(token);
  route();
});
$("#sign-out").addEventListener("click", () => {
  storeToken(null);
  askForToken(null, "Signed out: this browser no longer keeps the token.");
});
// Signing in or out in another tab of this dashboard applies here too.
window.addEventListener("storage", (event) => {
  if (event.key === TOKEN_KEY || event.key === null) { renderAuth(); route(); }
});

window.addEventListener("hashchange", route);
$("#state-filter").addEventListener("change", () => loadJobs(true));
$("#refresh-jobs").addEventListener("click", () => loadJobs(true));
$("#more-jobs").addEventListener("click", () => loadJobs(false));
$("#submit-form").addEventListener("submit", submitJob);
renderAuth();
route();
