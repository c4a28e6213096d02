// zootrain dashboard: plain JavaScript against the REST API and its event stream; no build step.
"use strict";

const $ = (selector) => document.querySelector(selector);
let nextCursor = null;
let jobStream = null;

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "Content-Type": "application/json", ...(options.headers || {}) },
  });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(body?.detail || `${response.status} ${response.statusText}`);
  return body;
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
  document.querySelectorAll(".view").forEach((el) => { el.hidden = el.id !== `view-${view}`; });
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === view));
  if (view !== "job" && jobStream) { jobStream.close(); jobStream = null; }
}

async function route() {
  const [view, arg] = (location.hash.slice(1) || "jobs").split("/");
  try {
    if (view === "job" && arg) { show("job"); await openJob(arg); }
    else if (view === "submit") { show("submit"); await loadAlgorithms(); }
    else if (view === "models") { show("models"); await loadModels(); }
    else if (view === "workers") { show("workers"); await loadWorkers(); }
    else { show("jobs"); await loadJobs(true); }
    $("#status").textContent = "";
  } catch (error) {
    $("#status").textContent = error.message;
  }
}

async function loadJobs(reset) {
  const tbody = $("#jobs-table tbody");
  if (reset) { tbody.replaceChildren(); nextCursor = null; }
  const params = new URLSearchParams({ limit: "25" });
  const state = $("#state-filter").value;
  if (state) params.set("state", state);
  if (nextCursor) params.set("cursor", nextCursor);
  const page = await api(`/v1/jobs?${params}`);
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
  $("#job-error").hidden = !job.error;
  $("#job-error").textContent = job.error || "";
  const finished = ["succeeded", "failed", "cancelled"].includes(job.state);
  $("#cancel-job").hidden = finished;
}

async function openJob(id) {
  $("#shards").replaceChildren();
  const job = await api(`/v1/jobs/${id}`);
  renderJob(job);
  job.shards.forEach(renderShard);
  if (jobStream) jobStream.close();
  // The browser's EventSource reconnects by itself and sends Last-Event-ID: no update is lost.
  jobStream = new EventSource(`/v1/jobs/${id}/events`);
  jobStream.addEventListener("job", (event) => {
    const record = JSON.parse(event.data);
    renderJob(record);
    if (["succeeded", "failed", "cancelled"].includes(record.state)) jobStream.close();
  });
  jobStream.addEventListener("shard", (event) => renderShard(JSON.parse(event.data)));
  $("#cancel-job").onclick = async () => {
    try { renderJob(await api(`/v1/jobs/${id}`, { method: "DELETE" })); }
    catch (error) { $("#status").textContent = error.message; }
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
    const versions = await api(`/v1/models/${model.name}/versions`);
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

async function loadWorkers() {
  const tbody = $("#workers-table tbody");
  tbody.replaceChildren();
  for (const worker of await api("/v1/workers")) {
    const tr = document.createElement("tr");
    tr.append(cell(worker.id), cell(worker.host), cell(worker.pid), cell(when(worker.started_at)),
      cell(worker.current.join(", ") || "idle"));
    tbody.append(tr);
  }
}

window.addEventListener("hashchange", route);
$("#state-filter").addEventListener("change", () => loadJobs(true));
$("#refresh-jobs").addEventListener("click", () => loadJobs(true));
$("#more-jobs").addEventListener("click", () => loadJobs(false));
$("#submit-form").addEventListener("submit", submitJob);
route();
