// The status page: the latest triages (refreshed every few seconds), a detail view whose timeline
// follows the triage's event stream, and for an admin session replay, cancel and pause/resume.
// Every call goes to /ui/api/<path>, which the web process runs as /api/v1/<path> for this session.
"use strict";

const app = document.getElementById("app");
const role = app.dataset.role;
const csrf = app.dataset.csrf;
const RUN_LINK = "https://app.paradime.io/bolt/run_id/";
const EVENT_TYPES = ["received", "queued", "run_status", "artifact_fetched", "classified", "decided",
  "retry_sent", "slack_posted", "recheck_scheduled", "failed", "canceled", "message"];
let openId = null;
let stream = null;

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
  return node;
}

function notice(text) {
  const p = document.getElementById("notice");
  p.textContent = text || "";
  p.hidden = !text;
}

async function call(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") options.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const resp = await fetch("/ui/api/" + path, options);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(data.message || data.error || ("HTTP " + resp.status));
    err.status = resp.status;
    throw err;
  }
  return data;
}

function when(value) {
  if (value === null || value === undefined) return null;
  const ms = typeof value === "number" ? value * 1000 : Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

function age(value) {
  const ms = when(value);
  if (ms === null) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return s + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 129600) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}

function verdictOf(t) {
  return t.verdict || (t.decision && t.decision.action) || t.status || "";
}

function categoryOf(t) {
  if (t.category) return t.category;
  const first = (t.failures || [])[0];
  return first ? first.category : "";
}

function row(t) {
  const tr = el("tr", null, { "data-id": t.id });
  tr.appendChild(el("td", t.schedule_name || "—"));
  const run = el("td");
  if (t.run_id) run.appendChild(el("a", "run " + t.run_id, { href: RUN_LINK + t.run_id, target: "_blank",
    rel: "noopener" }));
  tr.appendChild(run);
  tr.appendChild(el("td", verdictOf(t), { class: "verdict" }));
  tr.appendChild(el("td", categoryOf(t)));
  tr.appendChild(el("td", age(t.received_at)));
  tr.addEventListener("click", () => openTriage(t.id));
  return tr;
}

function filters() {
  const params = new URLSearchParams({ limit: "50" });
  new FormData(document.getElementById("filters")).forEach((v, k) => { if (v) params.set(k, v); });
  return params.toString();
}

async function refresh() {
  try {
    const data = await call("GET", "triages?" + filters());
    const body = document.querySelector("#triages tbody");
    body.replaceChildren(...data.triages.map(row));
    notice("");
  } catch (err) {
    notice(err.status === 404 ? "The operations API is not available on this server."
      : "Could not load triages: " + err.message);
  }
}

function addEvent(e) {
  const list = document.getElementById("timeline");
  if (e.id !== undefined && list.querySelector(`[data-event="${CSS.escape(String(e.id))}"]`)) return;
  const when = e.at ? new Date(e.at).toLocaleTimeString() : "";
  const item = el("li", `${when} ${e.type || ""}: ${e.message || ""}`, { "data-event": String(e.id) });
  list.appendChild(item);
}

function follow(id) {
  if (stream) stream.close();
  stream = new EventSource("/ui/api/triages/" + encodeURIComponent(id) + "/stream");
  const take = (msg) => { try { addEvent(JSON.parse(msg.data)); } catch (_) { /* a heartbeat */ } };
  EVENT_TYPES.forEach((type) => stream.addEventListener(type, take));
  stream.addEventListener("end", () => stream.close());
}

async function openTriage(id) {
  openId = id;
  try {
    const [t, events] = await Promise.all([call("GET", "triages/" + encodeURIComponent(id)),
      call("GET", "triages/" + encodeURIComponent(id) + "/events")]);
    document.getElementById("detail").hidden = false;
    document.getElementById("detail-title").textContent =
      `${t.schedule_name || "run"} — run ${t.run_id || "?"} — ${t.status}`;
    const cancel = document.getElementById("cancel");  // a final triage has nothing left to cancel (409)
    if (cancel) cancel.hidden = ["done", "dead_letter", "canceled"].includes(t.status);
    const decision = t.decision || {};
    document.getElementById("detail-decision").textContent =
      [decision.action, decision.reason_code, decision.text].filter(Boolean).join(" · ");
    const evidence = document.getElementById("evidence");
    evidence.replaceChildren(...(t.failures || []).map((f) =>
      el("li", `${f.unique_id || f.node || "command"}: ${f.verdict} ${f.category}` +
        (f.rule ? ` (${f.rule})` : "") + (f.excerpt ? ` — ${f.excerpt}` : ""))));
    document.getElementById("timeline").replaceChildren();
    (events.events || []).forEach(addEvent);
    follow(id);
  } catch (err) {
    notice("Could not open the triage: " + err.message);
  }
}

async function act(method, path, body, done) {
  try {
    const result = await call(method, path, body);
    notice(done(result));
    refresh();
  } catch (err) {
    notice(err.message);
  }
}

async function showPauses() {
  const target = document.getElementById("pauses");
  try {
    const data = await call("GET", "retries/pauses");
    const pauses = data.pauses || [];
    target.textContent = pauses.length ? "Paused: " + pauses.map((p) =>
      `${p.schedule} until ${p.until}${p.reason ? " (" + p.reason + ")" : ""}`).join("; ") : "Retries not paused";
  } catch (err) {
    target.textContent = err.status === 404 ? "" : err.message;
  }
}

document.getElementById("filters").addEventListener("submit", (ev) => { ev.preventDefault(); refresh(); });
if (role === "admin") {
  const pause = document.getElementById("pause");
  pause.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = new FormData(pause);
    const body = { schedule: form.get("schedule") || "*", for_seconds: Number(form.get("for_seconds")),
      reason: form.get("reason") };
    act("POST", "retries/pause", body, () => "Retries paused").then(showPauses);
  });
  document.getElementById("resume").addEventListener("click", () => {
    const schedule = new FormData(pause).get("schedule") || "*";
    act("POST", "retries/resume", { schedule }, () => "Retries resumed").then(showPauses);
  });
  document.getElementById("replay").addEventListener("click", () =>
    act("POST", "triages/" + encodeURIComponent(openId) + "/replay", {}, (r) => "Replay queued: " + (r.id || "")));
  document.getElementById("cancel").addEventListener("click", () =>
    act("DELETE", "triages/" + encodeURIComponent(openId), undefined, () => "Canceled"));
  showPauses();
}
refresh();
setInterval(refresh, 2000);
