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
// `sent` is the token the refused request carried: a 401 for a request sent before the user
// signed in arrives after the new token is stored, and must not forget a token never tried.
function askForToken(detail, reason, sent = storedToken()) {
  if (!reason && sent !== storedToken()) return new AuthRequired(detail || "an API token is needed");
  const refused = !reason && Boolean(sent);
  if (refused) storeToken(null);
  closeJobStream();
  stopOverviewRefresh();  // no refresh asking again every 5 s while the prompt is up
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
  const sent = storedToken();
  const response = await fetch(path, {
    ...options,
    headers: withToken({ "Content-Type": "application/json", ...(options.headers || {}) }),
  });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (response.status === 401) throw askForToken(body?.detail, undefined, sent);
  if (!response.ok) {
    const error = new Error(body?.detail || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

// A route another part of the service may not have (an older or partial deployment): null
// when it answers 404 or 405, so the panel can say "not available" instead of failing.
async function optional(path, options) {
  try {
    return await api(path, options);
  } catch (error) {
    if (error.status === 404 || error.status === 405) return null;
    throw error;
  }
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
    const sent = storedToken();
    const headers = withToken({ Accept: "text/event-stream" });
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    const response = await fetch(path, { headers, cache: "no-store", signal: controller.signal });
    if (!response.ok) {
      const body = response.headers.get("content-type")?.includes("json")
        ? await response.json().catch(() => null) : null;
      if (response.status === 401) throw askForToken(body?.detail, undefined, sent);
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
  if (view !== "overview") stopOverviewRefresh();
}

let routes = 0;  // only the newest navigation may write the status line

async function route() {
  const [view, arg] = (location.hash.slice(1) || "overview").split("/");
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
    else if (view === "overview") { show("overview"); await loadOverview(current); }
    else if (view === "model" && arg) {
      const name = pathSegment(decodeURIComponent(arg), MODEL_NAME, "model name");
      show("model");
      await openModel(name);
    }
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
  row.querySelector(".label").textContent =
    shard.role === "baseline" ? "baseline" : shard.role === "candidate" ? `candidate ${shard.index}` : `shard ${shard.index}`;
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
  // What the submit found doubtful but accepted, where the service reports it.
  const warnings = $("#job-warnings");
  warnings.replaceChildren(...(job.warnings || []).map((w) => element("li", w)));
  warnings.hidden = !(job.warnings || []).length;
  $("#cancel-job").hidden = finished;
  renderNotes(job);
  renderRounds(job);
}

// What partition "auto" chose and why (issue 15); the warnings and recall drops have their
// own panels.
function renderNotes(job) {
  const choice = job.partition_choice;
  const list = $("#job-notes");
  list.replaceChildren(...(choice ? [element("li", `partition auto chose ${choice.strategy}: ${choice.reason}`)] : []));
  list.hidden = !choice;
}

function renderRounds(job) {
  // A job training in rounds: its round and objective, and the objective by round as a line.
  let box = document.getElementById("job-rounds");
  if (!box) {
    box = document.createElement("div");
    box.id = "job-rounds";
    $("#job-summary").after(box);
  }
  const progress = job.rounds;
  box.hidden = !progress;
  if (!progress) return;
  const svgNS = "http://www.w3.org/2000/svg";
  const caption = document.createElement("p");
  caption.className = "muted";
  const change = progress.change == null ? "" : `, change ${Number(progress.change).toPrecision(3)}`;
  const objective = progress.objective == null ? "" : `, objective ${Number(progress.objective).toPrecision(6)}`;
  caption.textContent = `round ${progress.round}${objective}${change}`;
  const points = (progress.history || []).filter((p) => p.objective != null); // null: not finite
  const width = 480, height = 120;
  const svg = document.createElementNS(svgNS, "svg");
  svg.classList.add("chart");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  if (points.length > 1) {
    const values = points.map((p) => p.objective);
    const low = Math.min(...values), high = Math.max(...values);
    const first = points[0].round, last = points[points.length - 1].round;
    const x = (r) => 4 + ((width - 8) * (r - first)) / Math.max(1, last - first);
    const y = (v) => height - 4 - ((height - 8) * (v - low)) / Math.max(1e-300, high - low);
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", points.map((p) => `${x(p.round)},${y(p.objective)}`).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#15803d");
    svg.append(line);
  }
  box.replaceChildren(caption, svg);
}

async function openJob(id) {
  $("#shards").replaceChildren();
  $("#timeline").replaceChildren();
  $("#job-metrics").replaceChildren();
  const job = await api(`/v1/jobs/${id}`);
  const shown = { job, shards: new Map(job.shards.map((s) => [s.index, s])), version: null };
  openedJob = shown;
  renderJob(job);
  job.shards.forEach(renderShard);
  $("#job-spec").textContent = JSON.stringify(job.spec, null, 2);
  await renderJobDetails(shown);
  closeJobStream();
  const stream = eventStream(`/v1/jobs/${id}/events`, {
    job: (data) => {
      const record = JSON.parse(data);
      renderJob(record);
      shown.job = { ...record, shards: undefined };
      scheduleDetails(shown);
      if (TERMINAL.includes(record.state)) stream.close();
    },
    shard: (data) => {
      const record = JSON.parse(data);
      renderShard(record);
      shown.shards.set(record.index, record);
      scheduleDetails(shown);
    },
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
    const link = document.createElement("a");
    link.href = `#model/${model.name}`;
    link.textContent = model.name;
    title.append(link, ` (latest v${model.latest_version ?? "–"})`);
    const table = document.createElement("table");
    table.innerHTML = "<thead><tr><th>Version</th><th>Job</th><th>Algorithm</th><th>Shards</th><th>Metrics</th><th>Published</th><th>Recall drops</th></tr></thead>";
    const tbody = document.createElement("tbody");
    for (const version of versions) {
      const tr = document.createElement("tr");
      const metrics = Object.entries(version.metrics).map(([k, v]) => `${k} ${Number(v).toFixed(3)}`).join(", ");
      tr.append(cell(`v${version.version}`), cell(version.job_id), cell(version.algorithm),
        cell(version.shards), cell(metrics), cell(when(version.created_at)),
        cell([...new Set((version.class_report?.recall_drops || []).map((d) => String(d.label)))].join(", "), "error"));
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
  try {
    const config = await api("/v1/config");
    $("#paused-banner").hidden = !(config.settings && config.settings.paused === true);
  } catch (error) {
    if (error instanceof AuthRequired) throw error;
    $("#paused-banner").hidden = true;  // a service without /v1/config: nothing to say
  }
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

// -- the operations console: overview, a job's timeline and metrics, a model's page ----------

const SVG = "http://www.w3.org/2000/svg";
const PRIMARY_METRICS = ["accuracy", "r2", "adjusted_rand"];
const NOT_AVAILABLE = "not available";

function svgElement(name, attributes = {}, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function element(name, text, className) {
  const node = document.createElement(name);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function notAvailable(what) {
  return element("p", `${what}: ${NOT_AVAILABLE} on this service`, "muted not-available");
}

function primaryMetric(metrics) {
  if (!metrics) return null;
  const name = PRIMARY_METRICS.find((m) => typeof metrics[m] === "number")
    || Object.keys(metrics).find((m) => typeof metrics[m] === "number");
  return name ? { name, value: metrics[name] } : null;
}

function format(value) {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
  if (value === null || value === undefined) return "–";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function metricText(value) {
  return typeof value === "number" ? value.toFixed(3) : "–";
}

function seconds(from, to) {
  const s = (new Date(to) - new Date(from)) / 1000;
  return s < 120 ? `${s.toFixed(1)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
}

function jobLink(jobId, text) {
  const a = element("a", text ?? jobId);
  if (JOB_ID.test(jobId)) a.href = `#job/${jobId}`;
  return a;
}

// -- overview ---------------------------------------------------------------------------------

let overviewTimer = null;
let overviewLoads = 0;

function stopOverviewRefresh() {
  if (overviewTimer) { clearInterval(overviewTimer); overviewTimer = null; }
}

async function loadOverview(routeNumber) {
  stopOverviewRefresh();
  await refreshOverview();
  // Live, like Flower's front page; only while this view is the one shown.
  if (routeNumber === routes) {
    overviewTimer = setInterval(() => {
      refreshOverview().catch((error) => {
        if (!(error instanceof AuthRequired)) $("#status").textContent = error.message;
      });
    }, 5000);
  }
}

async function refreshOverview() {
  const current = ++overviewLoads;
  const [summary, workers, config] = await Promise.all([
    optional("/v1/overview"), api("/v1/workers"), optional("/v1/config"),
  ]);
  if (current !== overviewLoads) return;  // a newer refresh is under way
  renderCounts(summary);
  renderOverviewWorkers(workers);
  renderConfig(config);
  renderFailures(summary);
}

function renderCounts(summary) {
  const counts = $("#job-counts");
  counts.replaceChildren();
  if (!summary) {
    $("#queue-depth").textContent = NOT_AVAILABLE;
    counts.append(notAvailable("Jobs per state"));
    return;
  }
  $("#queue-depth").textContent = String(summary.queue_depth);
  for (const [state, count] of Object.entries(summary.jobs)) {
    const item = element("a", undefined, "count");
    item.href = "#jobs";
    item.dataset.state = state;
    item.addEventListener("click", () => { $("#state-filter").value = state; });
    item.append(element("strong", String(count)), " ", stateBadge(state));
    counts.append(item);
  }
}

// A worker's `state` (active, paused, draining) where the service reports one; what it
// does with its slots otherwise.
function workerState(worker) {
  if (worker.draining === true || worker.state === "draining") return "draining";
  if (worker.state === "paused") return "paused";
  return worker.current.length ? "training" : "idle";
}

function renderOverviewWorkers(workers) {
  const tbody = $("#overview-workers tbody");
  tbody.replaceChildren();
  for (const worker of workers) {
    const tr = document.createElement("tr");
    tr.dataset.worker = worker.id;
    const state = workerState(worker);
    tr.dataset.state = state;
    const stateTd = cell("");
    stateTd.append(stateBadge(state));
    const training = cell("");
    const since = cell("");
    for (const key of worker.current) {
      const [jobId, task] = key.split("/");
      const line = element("div");
      line.append(jobLink(jobId, `${jobId} · ${task === "merge" ? "merge" : `shard ${task}`}`));
      training.append(line);
      const at = worker.current_since?.[key];
      since.append(element("div", at ? `${when(at)} (${seconds(at, new Date())})` : "–"));
    }
    if (!worker.current.length) training.textContent = "idle";
    tr.append(cell(worker.id), stateTd, training, since,
      cell(`${worker.current.length}/${worker.capacity}`), cell(`${worker.host} · ${worker.pid}`),
      cell(when(worker.started_at)));
    tbody.append(tr);
  }
  if (!workers.length) {
    const tr = document.createElement("tr");
    const td = cell("No live worker: nothing is being trained.", "muted");
    td.colSpan = 7;
    tr.append(td);
    tbody.append(tr);
  }
}

let configShown = null;

function renderConfig(config) {
  configShown = config;
  const tbody = $("#config-table tbody");
  tbody.replaceChildren();
  const toggle = $("#pause-toggle");
  if (!config) {
    $("#config-meta").textContent = `Live configuration: ${NOT_AVAILABLE} on this service.`;
    $("#paused-banner").hidden = true;
    toggle.hidden = true;
    return;
  }
  const settings = config.settings || {};
  const paused = settings.paused === true;
  $("#paused-banner").hidden = !paused;
  const parts = [`version ${config.version}`];
  if (config.updated_at) parts.push(`updated ${when(config.updated_at)}`);
  if (config.updated_by) parts.push(`by ${config.updated_by}`);
  $("#config-meta").textContent = parts.join(" · ");
  // Which values the znode sets (the rest are the processes' start-up defaults), where the
  // service says; and a document written by hand that the processes refused.
  const overrides = config.overrides && typeof config.overrides === "object" ? config.overrides : null;
  for (const key of Object.keys(settings).sort()) {
    const tr = document.createElement("tr");
    tr.dataset.key = key;
    const origin = overrides === null ? "" : key in overrides ? "set live" : "default";
    tr.append(cell(key), cell(format(settings[key])), cell(origin, "muted"));
    tbody.append(tr);
  }
  if (config.rejected) {
    const tr = document.createElement("tr");
    const td = cell(`Version ${config.rejected.version} of the document was refused: ${config.rejected.error}`, "error");
    td.colSpan = 3;
    tr.append(td);
    tbody.append(tr);
  }
  toggle.hidden = false;
  toggle.textContent = paused ? "Resume" : "Pause";
}

async function togglePause() {
  const message = $("#config-message");
  message.textContent = "";
  const paused = configShown?.settings?.paused === true;
  try {
    const answer = await optional("/v1/config", {
      method: "PATCH",
      headers: { "Content-Type": "application/merge-patch+json" },
      // A JSON merge patch (RFC 7396) of the configuration document's settings.
      body: JSON.stringify({ settings: { paused: !paused } }),
    });
    if (answer === null) {
      message.textContent = `Pausing: ${NOT_AVAILABLE} on this service.`;
      return;
    }
    message.textContent = paused ? "Resumed." : "Paused.";
    await refreshOverview();
  } catch (error) {
    if (error instanceof AuthRequired) return;
    message.textContent = error.status === 403 ? `An admin token is needed: ${error.message}` : error.message;
  }
}

function renderFailures(summary) {
  const tbody = $("#failures tbody");
  tbody.replaceChildren();
  if (!summary) {
    const tr = document.createElement("tr");
    const td = cell(`Recent failures: ${NOT_AVAILABLE} on this service`, "muted not-available");
    td.colSpan = 5;
    tr.append(td);
    tbody.append(tr);
    return;
  }
  for (const failure of summary.recent_failures) {
    const tr = document.createElement("tr");
    tr.dataset.job = failure.job_id;
    const id = cell("");
    id.append(jobLink(failure.job_id));
    tr.append(id, cell(failure.model_name), cell(failure.algorithm), cell(failure.error, "error"),
      cell(when(failure.finished_at)));
    tbody.append(tr);
  }
  if (!summary.recent_failures.length) {
    const tr = document.createElement("tr");
    const td = cell("No failed job.", "muted");
    td.colSpan = 5;
    tr.append(td);
    tbody.append(tr);
  }
}

// -- a job's timeline and metrics -------------------------------------------------------------

let openedJob = null;
let detailsPending = false;

function scheduleDetails(shown) {
  // Events come in bursts (a shard's claim and the job's state): draw once per frame.
  if (detailsPending) return;
  detailsPending = true;
  requestAnimationFrame(() => {
    detailsPending = false;
    if (openedJob === shown) renderJobDetails(shown).catch((error) => {
      if (!(error instanceof AuthRequired)) $("#status").textContent = error.message;
    });
  });
}

async function renderJobDetails(shown) {
  const shards = [...shown.shards.values()].sort((a, b) => a.index - b.index);
  renderTimeline(shown.job, shards);
  const model = shown.job.model;
  if (model && !shown.version) {
    shown.version = await optional(
      `/v1/models/${pathSegment(model.name, MODEL_NAME, "model name")}/versions/${Number(model.version)}`);
  }
  renderJobMetrics(shown.job, shards, shown.version);
}

// Each attempt of each task as a bar: [{lane, start, end, kind, outcome, label, index, attempt}].
function timelineBars(job, shards) {
  const terminalAt = TERMINAL.includes(job.state) ? (job.finished_at || job.updated_at) : null;
  const openEnd = terminalAt || new Date().toISOString();
  const bars = [];
  for (const shard of shards) {
    const name = shard.role === "baseline" ? "baseline" : shard.role === "shard" ? `shard ${shard.index}` : `task ${shard.index}`;
    (shard.history || []).forEach((attempt, i) => {
      bars.push({
        lane: attempt.worker, start: attempt.claimed_at, end: attempt.ended_at || openEnd,
        kind: "attempt", outcome: attempt.ended_at ? attempt.outcome : (terminalAt ? "unknown" : "running"),
        label: `${name}, attempt ${i + 1}`, index: shard.index, attempt: i + 1, error: attempt.error,
      });
    });
  }
  (job.merges || []).forEach((attempt, i) => {
    bars.push({
      lane: attempt.worker, start: attempt.claimed_at, end: attempt.ended_at || openEnd,
      kind: "merge", outcome: attempt.ended_at ? attempt.outcome : (terminalAt ? "unknown" : "running"),
      label: `merge, attempt ${i + 1}`, index: "merge", attempt: i + 1, error: attempt.error,
    });
  });
  return bars;
}

function renderTimeline(job, shards) {
  const container = $("#timeline");
  const bars = timelineBars(job, shards);
  const anyHistory = shards.some((s) => "history" in s);
  if (!bars.length) {
    container.replaceChildren(anyHistory
      ? element("p", "No task has been claimed yet.", "muted")
      : notAvailable("Attempt history (per-attempt claims and results)"));
    return;
  }
  const lanes = [...new Set(bars.map((b) => b.lane))];
  const start = new Date(job.created_at).getTime();
  const published = job.state === "succeeded" && job.finished_at ? new Date(job.finished_at).getTime() : null;
  const finished = job.finished_at ? new Date(job.finished_at).getTime() : 0;
  const end = Math.max(start + 1000, finished, ...bars.map((b) => new Date(b.end).getTime()));
  const width = 1000, left = 230, right = 20, laneHeight = 26, top = 24;
  const x = (t) => left + ((new Date(t).getTime() - start) / (end - start)) * (width - left - right);
  const height = top + lanes.length * laneHeight + 24;
  const svg = svgElement("svg", { class: "timeline", width, height, viewBox: `0 0 ${width} ${height}` });
  // Time axis: offsets from the submit.
  for (let i = 0; i <= 5; i++) {
    const t = start + ((end - start) * i) / 5;
    const tx = left + ((width - left - right) * i) / 5;
    svg.append(svgElement("line", { x1: tx, x2: tx, y1: top - 6, y2: height - 20, class: "grid" }));
    svg.append(svgElement("text", { x: tx, y: top - 10, "text-anchor": i === 0 ? "start" : "middle", class: "tick" },
      i === 0 ? "submitted" : `+${((t - start) / 1000).toFixed(1)} s`));
  }
  lanes.forEach((lane, i) => {
    const y = top + i * laneHeight;
    if (i % 2 === 0) svg.append(svgElement("rect", { x: 0, y, width, height: laneHeight, class: "lane" }));
    svg.append(svgElement("text", { x: 4, y: y + laneHeight / 2 + 4, class: "lane-label" }, lane.slice(0, 34)));
  });
  for (const bar of bars) {
    const y = top + lanes.indexOf(bar.lane) * laneHeight + 4;
    const x0 = x(bar.start);
    const w = Math.max(3, x(bar.end) - x0);
    const group = svgElement("g", {
      class: `bar ${bar.kind} ${bar.outcome || "unknown"}`,
      "data-task": String(bar.index), "data-attempt": String(bar.attempt), "data-worker": bar.lane,
      "data-outcome": bar.outcome || "unknown",
    });
    group.append(svgElement("rect", { x: x0, y, width: w, height: laneHeight - 8, rx: 3 }));
    const short = bar.kind === "merge" ? "merge" : bar.label.startsWith("baseline") ? "baseline" : String(bar.index);
    if (w > 14) group.append(svgElement("text", { x: x0 + 3, y: y + laneHeight / 2 + 1, class: "bar-label" },
      bar.attempt > 1 ? `${short}·${bar.attempt}` : short));
    const detail = [`${bar.label} on ${bar.lane}`, `${when(bar.start)} → ${bar.outcome === "running" ? "now" : when(bar.end)} (${seconds(bar.start, bar.end)})`, bar.outcome];
    if (bar.error) detail.push(bar.error);
    group.append(svgElement("title", {}, detail.join("\n")));
    svg.append(group);
  }
  const ended = TERMINAL.includes(job.state) && !published && job.finished_at;
  if (ended) {
    const ex = x(job.finished_at);
    svg.append(svgElement("line", { x1: ex, x2: ex, y1: top - 4, y2: height - 20, class: `end ${job.state}` }));
    svg.append(svgElement("text", { x: Math.min(ex, width - 80), y: height - 6, class: `end-label ${job.state}` },
      `${job.state} at +${((new Date(job.finished_at).getTime() - start) / 1000).toFixed(1)} s`));
  }
  if (published) {
    const px = x(job.finished_at);
    svg.append(svgElement("line", { x1: px, x2: px, y1: top - 4, y2: height - 20, class: "publish" }));
    svg.append(svgElement("text", { x: Math.min(px, width - 80), y: height - 6, class: "publish-label" },
      `published ${job.model ? `v${job.model.version}` : ""} at +${((published - start) / 1000).toFixed(1)} s`));
  }
  const attempts = bars.filter((b) => b.kind === "attempt").length;
  const retried = attempts - shards.filter((s) => (s.history || []).length).length;
  const caption = element("p", `${attempts} attempts on ${lanes.length} workers` +
    (retried > 0 ? `, ${retried} of them retries or re-claims` : "") +
    `; queued ${bars.length ? seconds(job.created_at, bars.map((b) => b.start).sort()[0]) : "–"} before the first claim`, "muted");
  caption.id = "timeline-caption";
  container.replaceChildren(svg, caption);
}

// The per-class figures, under whichever name the version record gives them.
function perClass(record) {
  if (!record) return null;
  for (const key of ["per_class", "class_metrics", "per_class_metrics", "metrics_per_class"]) {
    if (record[key] && typeof record[key] === "object") return record[key];
  }
  return null;
}

function renderJobMetrics(job, shards, version) {
  const container = $("#job-metrics");
  const rows = [];  // [label, metrics, per-class]
  const report = version?.class_report || null;
  const shardOrder = (version?.shard_metrics || []).map((s) => s.index);
  const reported = (label) => {
    if (!report) return null;
    if (label === "merged") return report.merged?.length ? report.merged : null;
    if (label === "baseline") return report.baseline || null;
    const position = shardOrder.indexOf(Number(label.replace("shard ", "")));
    return position >= 0 ? report.shards?.[position] || null : null;
  };
  if (version) rows.push(["merged", version.metrics, reported("merged") || perClass(version)]);
  const fromVersion = new Map((version?.shard_metrics || []).map((s) => [s.index, s]));
  for (const shard of shards) {
    const label = shard.role === "baseline" ? "baseline" : shard.role === "shard" ? `shard ${shard.index}` : `task ${shard.index}`;
    const metrics = fromVersion.get(shard.index)?.metrics || shard.metrics;
    if (shard.role === "baseline" && version?.baseline_metrics) {
      rows.push([label, version.baseline_metrics, reported(label) || shard.class_metrics || perClass(shard)]);
    } else if (metrics) {
      rows.push([label, metrics, reported(label) || perClass(fromVersion.get(shard.index)) || perClass(shard)]);
    }
  }
  if (version?.baseline_metrics && !rows.some((r) => r[0] === "baseline")) {
    rows.push(["baseline", version.baseline_metrics, reported("baseline")]);
  }
  if (!rows.length) {
    container.replaceChildren(element("p", "No task has reported metrics yet.", "muted"));
    return;
  }
  const names = [...new Set(rows.flatMap(([, m]) => Object.keys(m || {})))];
  const table = element("table");
  table.id = "metrics-table";
  const head = element("tr");
  head.append(element("th", "Model"), ...names.map((n) => element("th", n)));
  const tbody = element("tbody");
  for (const [label, metrics] of rows) {
    const tr = element("tr");
    tr.dataset.model = label;
    tr.append(cell(label), ...names.map((n) => {
      const td = cell(metricText(metrics?.[n]));
      td.dataset.metric = n;
      return td;
    }));
    tbody.append(tr);
  }
  const thead = element("thead");
  thead.append(head);
  table.append(thead, tbody);
  const parts = [table];
  if (version?.baseline_gap) {
    parts.push(element("p", "Merged minus baseline: " + Object.entries(version.baseline_gap)
      .map(([k, v]) => `${k} ${v >= 0 ? "+" : ""}${metricText(v)}`).join(", "), "muted"));
  }
  const classRows = rows.filter(([, , pc]) => pc);
  const drops = report?.recall_drops || job.recall_drops || [];
  if (classRows.length) {
    parts.push(element("h4", "Per class"));
    if (drops.length) {
      const list = element("ul", undefined, "error");
      list.id = "recall-drops";
      for (const drop of drops) {
        const against = drop.against === "baseline" ? "the baseline" : `shard ${drop.shard}`;
        list.append(element("li", `class ${format(drop.label)}: recall ${metricText(drop.recall)} in the merged ` +
          `model against ${metricText(drop.reference_recall)} in ${against} (${drop.support} held-out rows)`));
      }
      parts.push(list);
    }
    parts.push(perClassTable(classRows));
  } else if (report?.note) {
    parts.push(element("p", `Per-class metrics: ${report.note}`, "muted"));
  } else {
    parts.push(element("p", `Per-class metrics: ${version ? NOT_AVAILABLE + " for this version" : "when the model is published"}`, "muted not-available"));
  }
  container.replaceChildren(...parts);
}

function perClassTable(rows) {
  // rows: [label, _, {class: {metric: value}} or [{class, metric: value}]]
  const normalized = rows.map(([label, , pc]) => [label, Array.isArray(pc)
    ? Object.fromEntries(pc.map((entry) => [String(entry.class ?? entry.label ?? "?"), entry]))
    : pc]);
  const classes = [...new Set(normalized.flatMap(([, pc]) => Object.keys(pc)))];
  const metrics = [...new Set(normalized.flatMap(([, pc]) => Object.values(pc)
    .flatMap((v) => (v && typeof v === "object" ? Object.keys(v) : []))))].filter((m) => m !== "class" && m !== "label");
  const table = element("table");
  table.id = "per-class-table";
  const head = element("tr");
  head.append(element("th", "Class"), element("th", "Model"), ...metrics.map((m) => element("th", m)));
  const tbody = element("tbody");
  for (const name of classes) {
    for (const [label, pc] of normalized) {
      const values = pc[name];
      if (!values) continue;
      const tr = element("tr");
      const value = (m) => (typeof values === "object" ? values[m] : values);
      tr.dataset.class = name;
      tr.dataset.model = label;
      tr.append(cell(name), cell(label), ...metrics.map((m) => cell(m === "support" ? format(value(m)) : metricText(value(m)))));
      tbody.append(tr);
    }
  }
  const thead = element("thead");
  thead.append(head);
  table.append(thead, tbody);
  return table;
}

// -- a model's page ---------------------------------------------------------------------------

// {alias: version} from the model's record, or gathered from its versions' records; null when
// this service records no aliases at all.
function modelAliases(summary, detail, versions) {
  const direct = detail?.aliases ?? summary?.aliases;
  if (direct && typeof direct === "object") return direct;
  if (!versions.some((v) => "aliases" in v)) return null;
  const found = {};
  for (const v of versions) for (const alias of v.aliases || []) found[alias] = v.version;
  return found;
}

async function openModel(name) {
  $("#model-name").textContent = name;
  const [summaries, detail, versions] = await Promise.all([
    api("/v1/models"), optional(`/v1/models/${name}`), api(`/v1/models/${name}/versions`),
  ]);
  const summary = summaries.find((m) => m.name === name) || null;
  const aliases = modelAliases(summary, detail, versions);
  const byVersion = {};
  for (const [alias, version] of Object.entries(aliases || {})) (byVersion[version] ||= []).push(alias);

  // Which version a predict without a version answers from: the record's word if it says,
  // else the champion alias, else the newest version not deleted.
  const declared = detail?.serving_version ?? summary?.serving_version;
  const reason = detail?.serving ?? summary?.serving;
  const served = typeof declared === "number" ? declared
    : (aliases && typeof aliases.champion === "number" ? aliases.champion : summary?.latest_version ?? null);
  const champion = typeof declared === "number" ? reason === "champion"
    : Boolean(aliases && typeof aliases.champion === "number");
  const why = champion ? "the champion alias" : "the newest version not deleted";
  const serving = $("#model-serving");
  serving.dataset.version = served ?? "";
  serving.textContent = served === null ? "No version is served: every version is deleted."
    : `Predictions are served from v${served} (${why}).`;

  const aliasBox = $("#model-aliases");
  if (aliases === null) aliasBox.replaceChildren(notAvailable("Aliases"));
  else if (!Object.keys(aliases).length) aliasBox.replaceChildren(element("p", "No alias set.", "muted"));
  else {
    const list = element("ul");
    list.id = "alias-list";
    for (const [alias, version] of Object.entries(aliases).sort()) {
      const li = element("li");
      li.dataset.alias = alias;
      li.dataset.version = String(version);
      li.append(element("strong", alias), ` → v${version}`);
      list.append(li);
    }
    aliasBox.replaceChildren(list);
  }

  $("#model-chart").replaceChildren(versionChart(versions));

  const tbody = $("#model-versions tbody");
  tbody.replaceChildren();
  for (const version of [...versions].reverse()) {
    const tr = document.createElement("tr");
    tr.dataset.version = String(version.version);
    if (version.deleted_at) tr.classList.add("deleted");
    const score = primaryMetric(version.metrics);
    const baseline = primaryMetric(version.baseline_metrics);
    const job = cell("");
    job.append(jobLink(version.job_id));
    const label = `v${version.version}${version.version === served ? " (served)" : ""}${version.deleted_at ? " (deleted)" : ""}`;
    const scoreTd = cell(score ? `${score.name} ${metricText(score.value)}` : "–");
    scoreTd.dataset.score = score ? String(score.value) : "";
    const promotion = version.promotion;
    const promoted = !promotion ? "" : `${promotion.promoted ? "took" : "refused"} ${promotion.alias}: ${promotion.reason}`;
    tr.append(cell(label), cell((byVersion[version.version] || []).join(", ")), job, cell(version.algorithm),
      cell(version.shards), scoreTd, cell(baseline ? metricText(baseline.value) : "–"), cell(promoted),
      cell(when(version.created_at)));
    tbody.append(tr);
  }

  const schemaFrom = versions.find((v) => v.version === served) || versions[versions.length - 1];
  $("#schema-version").textContent = schemaFrom ? `(v${schemaFrom.version})` : "";
  $("#model-schema").replaceChildren(schemaFrom && "input_schema" in schemaFrom && schemaFrom.input_schema === null
    ? element("p", "None: this version takes encoded feature rows (instances) only.", "muted")
    : schemaView(schemaFrom?.input_schema));
}

function versionChart(versions) {
  const points = versions.map((v) => ({
    version: v.version, at: new Date(v.created_at).getTime(), deleted: Boolean(v.deleted_at),
    merged: primaryMetric(v.metrics), baseline: primaryMetric(v.baseline_metrics),
    shards: (v.shard_metrics || []).map((s) => primaryMetric(s.metrics)?.value).filter((s) => typeof s === "number"),
  })).filter((p) => p.merged);
  if (!points.length) return element("p", "No version with a score.", "muted");
  const metric = points[points.length - 1].merged.name;
  const values = points.flatMap((p) => [p.merged.value, p.baseline?.value, ...p.shards]).filter((v) => typeof v === "number");
  let low = Math.min(...values), high = Math.max(...values);
  if (high - low < 0.02) { low -= 0.01; high += 0.01; }
  const pad = (high - low) * 0.1;
  low -= pad; high += pad;
  const width = 560, height = 240, left = 48, right = 16, top = 24, bottom = 36;
  const t0 = points[0].at, t1 = points[points.length - 1].at;
  const x = (t) => (t1 === t0 ? (left + width - right) / 2 : left + ((t - t0) / (t1 - t0)) * (width - left - right));
  const y = (v) => top + (1 - (v - low) / (high - low)) * (height - top - bottom);
  const svg = svgElement("svg", { class: "chart line-chart", width, height, viewBox: `0 0 ${width} ${height}` });
  for (let i = 0; i <= 4; i++) {
    const v = low + ((high - low) * i) / 4;
    svg.append(svgElement("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(svgElement("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" }, v.toFixed(3)));
  }
  svg.append(svgElement("text", { x: left, y: height - 4, class: "tick" }, when(new Date(t0).toISOString())));
  if (t1 !== t0) svg.append(svgElement("text", { x: width - right, y: height - 4, "text-anchor": "end", class: "tick" }, when(new Date(t1).toISOString())));
  const line = (series, className) => {
    const pts = points.filter((p) => series(p) !== undefined && series(p) !== null);
    if (pts.length > 1) svg.append(svgElement("polyline", { class: className, points: pts.map((p) => `${x(p.at)},${y(series(p))}`).join(" ") }));
  };
  line((p) => p.baseline?.value, "series baseline");
  line((p) => p.merged.value, "series merged");
  for (const p of points) {
    for (const s of p.shards) svg.append(svgElement("circle", { cx: x(p.at), cy: y(s), r: 2.5, class: "shard-point" }));
    if (p.baseline) svg.append(svgElement("circle", { cx: x(p.at), cy: y(p.baseline.value), r: 3.5, class: "baseline-point" }));
    const dot = svgElement("circle", {
      cx: x(p.at), cy: y(p.merged.value), r: 5, class: `point${p.deleted ? " deleted" : ""}`,
      "data-version": String(p.version), "data-score": String(p.merged.value),
    });
    dot.append(svgElement("title", {}, `v${p.version}: ${p.merged.name} ${metricText(p.merged.value)}${p.deleted ? " (deleted)" : ""}`));
    svg.append(dot);
    svg.append(svgElement("text", { x: x(p.at), y: y(p.merged.value) - 9, "text-anchor": "middle", class: "tick" }, `v${p.version}`));
  }
  const legend = element("p", `${metric} on the held-out rows: ● merged, ○ baseline (a single model on all rows), · each shard's model`, "muted");
  const box = element("div");
  box.append(svg, legend);
  return box;
}

function schemaView(schema) {
  if (schema === undefined || schema === null) return notAvailable("Input schema");
  const list = Array.isArray(schema) ? schema
    : Array.isArray(schema.features) ? schema.features : Array.isArray(schema.columns) ? schema.columns : null;
  if (!list) {
    const pre = element("pre", JSON.stringify(schema, null, 2));
    pre.id = "schema-json";
    return pre;
  }
  const rows = list.map((f) => (typeof f === "object" && f !== null ? f : { name: f }));
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const table = element("table");
  table.id = "schema-table";
  const head = element("tr");
  head.append(...keys.map((k) => element("th", k)));
  const tbody = element("tbody");
  for (const row of rows) {
    const tr = element("tr");
    tr.append(...keys.map((k) => cell(Array.isArray(row[k]) ? row[k].join(", ") : format(row[k]))));
    tbody.append(tr);
  }
  const thead = element("thead");
  thead.append(head);
  table.append(thead, tbody);
  return table;
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
$("#pause-toggle").addEventListener("click", togglePause);
renderAuth();
route();
