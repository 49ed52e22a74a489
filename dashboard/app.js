// Brain dashboard: plain JavaScript, no build step, no CDN.
// Reads the admin token from the URL fragment (#token=…) or asks once; keeps it in
// sessionStorage; shows "brain online" from /v1/healthz; renders the dashboard reads.
// When a read comes back empty it renders clearly labelled synthetic SAMPLE rows instead.
"use strict";

const TOKEN_KEY = "brain.adminToken";
const $ = (id) => document.getElementById(id);

function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

class Unauthorized extends Error {}

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (resp.status === 401) throw new Unauthorized("the admin token was refused");
  const body = await resp.json().catch(() => null);
  if (!resp.ok) {
    const msg = body && body.error ? body.error.code + ": " + body.error.message : "HTTP " + resp.status;
    throw new Error(path + " → " + msg);
  }
  return body;
}

async function checkHealth() {
  const el = $("online");
  try {
    const resp = await fetch("/v1/healthz");
    const body = await resp.json();
    el.textContent = body.ok ? "brain online · v" + body.version : "brain degraded (database)";
    el.className = "pill " + (body.ok ? "ok" : "down");
  } catch (e) {
    el.textContent = "brain offline";
    el.className = "pill down";
  }
}

// ---- formatting ---------------------------------------------------------------------------

const fmtInt = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString());
const fmtCents = (c) => (c === null || c === undefined ? "—" : "$" + (c / 100).toFixed(2));
const fmtMs = (ms) => (ms === null || ms === undefined ? "—" : ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(1) + " s");
const fmtPct = (r) => (r === null || r === undefined ? "—" : (r * 100).toFixed(1) + " %");
function fmtAgo(ts) {
  if (!ts) return "never";
  const s = (Date.now() - Date.parse(ts)) / 1000;
  if (s < 90) return Math.max(0, Math.round(s)) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 129600) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// columns: [header, (row) => html-safe text, numeric?]
function renderTable(id, columns, rows, sample) {
  const head = "<tr>" + columns.map(([h, , num]) => `<th class="${num ? "num" : ""}">${esc(h)}</th>`).join("") + "</tr>";
  const body = rows
    .map((r) => `<tr class="${sample ? "sample" : ""}">` +
      columns.map(([, f, num]) => `<td class="${num ? "num" : ""}">${f(r)}</td>`).join("") + "</tr>")
    .join("");
  $(id).innerHTML = head + body;
  const tag = $(id + "-sample");
  if (tag) tag.hidden = !sample;
}

// ---- synthetic samples (shown only when a read is empty, always labelled SAMPLE) -------------

const now = () => new Date().toISOString();
const SAMPLE = {
  overview: [
    { customer_id: "sample-acme", name: "SAMPLE Acme", events: 1840, sessions: 42, errors: 3, cost_cents: 1275.5, agents: 6, last_seen: now() },
    { customer_id: "sample-globex", name: "SAMPLE Globex", events: 310, sessions: 9, errors: 0, cost_cents: 212.25, agents: 2, last_seen: now() },
  ],
  customers: [
    { customer_id: "sample-acme", name: "SAMPLE Acme", events: 52110, sessions: 1210, tool_calls: 40210, errors: 95, cost_cents: 38210.75, agents: 6, last_seen: now(), engagement: "active" },
    { customer_id: "sample-globex", name: "SAMPLE Globex", events: 8020, sessions: 230, tool_calls: 6100, errors: 12, cost_cents: 6120.0, agents: 2, last_seen: new Date(Date.now() - 3 * 864e5).toISOString(), engagement: "idle" },
  ],
  tools: [
    { tool_name: "Bash", calls: 820, errors: 31, error_rate: 0.0378, avg_duration_ms: 1840.2, p95_duration_ms: 9200 },
    { tool_name: "Read", calls: 640, errors: 2, error_rate: 0.0031, avg_duration_ms: 35.1, p95_duration_ms: 120 },
    { tool_name: "mcp__github__create_issue", calls: 18, errors: 1, error_rate: 0.0556, avg_duration_ms: 910.0, p95_duration_ms: 2400 },
  ],
  agents: [
    { agent_id: "sample_agent_1", customer_id: "sample-acme", agent_version: "2.1.0", sessions: 310, tool_calls: 9100, errors: 20, cost_cents: 8120.5, last_seen: now() },
  ],
};

// ---- reads ---------------------------------------------------------------------------------

async function loadOverview() {
  const d = await api("/v1/dashboard/overview?window=24h");
  const rows = d.customers.filter((c) => c.events > 0);
  const sample = rows.length === 0;
  renderTable("overview", [
    ["Customer", (r) => esc(r.name) + ` <span class="muted">${esc(r.customer_id)}</span>`],
    ["Sessions", (r) => fmtInt(r.sessions), true],
    ["Errors", (r) => fmtInt(r.errors), true],
    ["Cost", (r) => fmtCents(r.cost_cents), true],
    ["Agents", (r) => fmtInt(r.agents), true],
    ["Events", (r) => fmtInt(r.events), true],
    ["Last seen", (r) => fmtAgo(r.last_seen)],
  ], sample ? SAMPLE.overview : rows, sample);
}

async function loadCustomers() {
  const d = await api("/v1/dashboard/customers");
  const sample = d.customers.length === 0;
  renderTable("customers", [
    ["Customer", (r) => esc(r.name) + ` <span class="muted">${esc(r.customer_id)}</span>`],
    ["Engagement", (r) => `<span class="badge ${esc(r.engagement)}">${esc(r.engagement)}</span>`],
    ["Sessions", (r) => fmtInt(r.sessions), true],
    ["Tool calls", (r) => fmtInt(r.tool_calls), true],
    ["Errors", (r) => fmtInt(r.errors), true],
    ["Cost", (r) => fmtCents(r.cost_cents), true],
    ["Agents", (r) => fmtInt(r.agents), true],
    ["Events", (r) => fmtInt(r.events), true],
    ["Last seen", (r) => fmtAgo(r.last_seen)],
  ], sample ? SAMPLE.customers : d.customers, sample);
}

async function loadTools() {
  const d = await api("/v1/dashboard/tools?window=" + encodeURIComponent($("window").value));
  const sample = d.tools.length === 0;
  renderTable("tools", [
    ["Tool", (r) => esc(r.tool_name)],
    ["Calls", (r) => fmtInt(r.calls), true],
    ["Errors", (r) => fmtInt(r.errors), true],
    ["Error rate", (r) => fmtPct(r.error_rate), true],
    ["Avg", (r) => fmtMs(r.avg_duration_ms), true],
    ["p95", (r) => fmtMs(r.p95_duration_ms), true],
  ], sample ? SAMPLE.tools : d.tools, sample);
}

async function loadAgents() {
  const d = await api("/v1/dashboard/agents");
  const sample = d.agents.length === 0;
  renderTable("agents", [
    ["Agent", (r) => esc(r.agent_id)],
    ["Customer", (r) => esc(r.customer_id)],
    ["Version", (r) => esc(r.agent_version || "—")],
    ["Sessions", (r) => fmtInt(r.sessions), true],
    ["Tool calls", (r) => fmtInt(r.tool_calls), true],
    ["Errors", (r) => fmtInt(r.errors), true],
    ["Cost", (r) => fmtCents(r.cost_cents), true],
    ["Last seen", (r) => fmtAgo(r.last_seen)],
  ], sample ? SAMPLE.agents : d.agents, sample);
}

async function loadHealth() {
  const h = await api("/v1/dashboard/health");
  const late = h.most_late_event;
  const rows = [
    ["Events ingested, last hour", fmtInt(h.events_last_hour)],
    ["Events stored, total", fmtInt(h.events_total)],
    ["Ingestion lag (avg / max), last hour", fmtMs(h.ingest_lag_ms.avg) + " / " + fmtMs(h.ingest_lag_ms.max)],
    ["Latest-arriving event, last hour", late ? `${esc(late.event_id)} · happened ${fmtAgo(late.ts)} · lag ${fmtMs(late.lag_ms)}` : "—"],
    ["Dead letters (total / last 24 h)", fmtInt(h.dead_letters.total) + " / " + fmtInt(h.dead_letters.last_24h)],
    ["Writer (queue / commits / requests)", `${fmtInt(h.writer.queue_depth)} / ${fmtInt(h.writer.commits)} / ${fmtInt(h.writer.requests)}`],
  ];
  renderTable("health", [["Figure", (r) => esc(r[0])], ["Value", (r) => r[1]]], rows, false);
}

async function refresh() {
  checkHealth();
  const errors = [];
  const results = await Promise.allSettled([loadOverview(), loadCustomers(), loadTools(), loadAgents(), loadHealth()]);
  for (const r of results) {
    if (r.status === "rejected") {
      if (r.reason instanceof Unauthorized) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin("The admin token was refused; paste it again.");
        return;
      }
      errors.push(r.reason.message);
    }
  }
  $("error").hidden = errors.length === 0;
  $("error").textContent = errors.join(" · ");
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

function showLogin(message) {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  $("token").focus();
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  takeTokenFromFragment();
  checkHealth();
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    showApp();
  });
  $("refresh").addEventListener("click", () => (token() ? refresh() : showLogin()));
  $("forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(); });
  $("window").addEventListener("change", () => loadTools().catch((e) => { $("error").hidden = false; $("error").textContent = e.message; }));
  if (token()) showApp(); else showLogin();
  setInterval(() => { if (token() && !$("app").hidden) refresh(); }, 30000);
});
