// Brain dashboard: plain JavaScript, no build step, no CDN (uPlot is vendored under /vendor/).
//
// The admin token comes from the URL fragment (#token=…) or is asked once, and is kept in
// sessionStorage. Every panel is one read of /v1/dashboard/*, narrowed by the customer picker
// and the window switch. When a read comes back empty the panel shows synthetic rows, marked
// "sample data" — never beside real rows.
//
// Nothing from the API is ever parsed as HTML: the DOM is built with createElement and text
// nodes. Each rendered figure carries the raw API value for tests and tools:
//   panel  <section data-panel data-query="/v1/dashboard/…" data-sample="true|false">
//   list   <table data-list="/tools">   (a JSON pointer into the read's response)
//   row    <tr data-index="3">          (the element's index in that list)
//   figure <td data-field="/calls" data-value="42">  (pointer into the element; JSON value)
// A figure outside a list points into the response itself; a figure the page computes (a sum
// over a list) says so: data-agg="sum" data-list="/customers" data-field="/cost_cents".
"use strict";

const TOKEN_KEY = "brain.adminToken";
const $ = (id) => document.getElementById(id);

// Script errors are kept where a test (or a curious operator, from the console) can read them.
window.brainErrors = [];
window.addEventListener("error", (e) => window.brainErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.brainErrors.push(String(e.reason)));

// ---- DOM building (text only, never HTML) ------------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "data") {
      for (const [dk, dv] of Object.entries(v)) if (dv !== undefined) el.dataset[dk] = dv;
    } else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of kids.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// A figure: `text` for people, the API's own value in data-value (JSON), its source in
// data-field. Sample figures carry no hooks.
function figure(tag, cls, field, raw, text, sample) {
  const data = sample ? {} : { field, value: JSON.stringify(raw === undefined ? null : raw) };
  return h(tag, { class: cls, data }, text);
}

// ---- formatting for people -------------------------------------------------------------------

const isNum = (n) => typeof n === "number" && Number.isFinite(n);
const fmtInt = (n) => (isNum(n) ? Math.round(n).toLocaleString("en-US") : "—");
const fmtCents = (c) =>
  isNum(c) ? "$" + (c / 100).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : "—";
function fmtMs(ms) {
  if (!isNum(ms)) return "—";
  if (ms < 1000) return Math.round(ms).toLocaleString("en-US") + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  if (ms < 3600000) return (ms / 60000).toFixed(1) + " min";
  if (ms < 172800000) return (ms / 3600000).toFixed(1) + " h";
  return (ms / 86400000).toFixed(1) + " d";
}
const fmtPct = (r) => (isNum(r) ? (r * 100).toFixed(r > 0 && r < 0.001 ? 2 : 1) + " %" : "—");
const fmtLoad = (l) => (isNum(l) ? l.toFixed(2) : "—");
function fmtTokens(n) {
  if (!isNum(n)) return "—";
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e8 ? 0 : 1) + " M";
  if (n >= 1e4) return (n / 1e3).toFixed(0) + " k";
  return fmtInt(n);
}
function fmtAge(seconds) {
  if (!isNum(seconds)) return "never";
  const s = Math.max(0, seconds);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 129600) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
const ageOf = (ts) => (ts ? (Date.now() - Date.parse(ts)) / 1000 : null);
const fmtAgo = (ts) => (ts ? fmtAge(ageOf(ts)) : "never");
// UTC, as the chart's buckets are.
const fmtTime = (ts) => (ts ? new Date(ts).toISOString().slice(0, 16).replace("T", " ") : "—");
const short = (s, n) => (typeof s === "string" && s.length > n ? s.slice(0, n - 1) + "…" : s);

// ---- the API ------------------------------------------------------------------------------------

// The URL fragment: `token=` is taken into sessionStorage and dropped from the address;
// `customer=`, `window=` and `status=` are the selection, so a view can be bookmarked.
function readFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  if (params.get("token")) sessionStorage.setItem(TOKEN_KEY, params.get("token"));
  if (params.has("customer")) sel.customer = params.get("customer");
  if (["24h", "7d", "30d", "90d"].includes(params.get("window"))) sel.window = params.get("window");
  if (Object.keys(STATUS).includes(params.get("status"))) sel.status = params.get("status");
  writeFragment();
}

function writeFragment() {
  const params = new URLSearchParams();
  if (sel.customer) params.set("customer", sel.customer);
  if (sel.window !== "24h") params.set("window", sel.window);
  if (sel.status) params.set("status", sel.status);
  const hash = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (hash ? "#" + hash : ""));
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

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

// A read's path with its query; empty parameters are left out.
function q(path, params) {
  const usp = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) usp.set(k, v);
  const s = usp.toString();
  return "/v1/dashboard/" + path + (s ? "?" + s : "");
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

// ---- panels -------------------------------------------------------------------------------------

const panel = (name) => document.querySelector(`[data-panel="${name}"]`);

// Marks a panel as showing `query`'s answer, or sample data.
function setPanel(name, query, sample, sub) {
  const p = panel(name);
  p.dataset.query = query;
  p.dataset.sample = String(sample);
  p.classList.toggle("is-sample", sample);
  p.querySelector(".sample-tag").hidden = !sample;
  const s = p.querySelector("h2 .sub");
  if (s && sub !== undefined) s.textContent = sub;
  return p;
}

// cols: { h: header, f: field pointer, get?: row => raw, fmt?: (raw, row) => text|Node,
//         num?: bool, cls?: (row) => class }
function renderTable(table, list, cols, rows, opts = {}) {
  const sample = !!opts.sample;
  table.replaceChildren();
  if (sample) delete table.dataset.list;
  else table.dataset.list = list;
  table.append(h("thead", {}, h("tr", {}, cols.map((c) => h("th", { class: c.num ? "num" : "", title: c.title }, c.h)))));
  const body = h("tbody");
  rows.forEach((item) => {
    const row = item.row;
    const tr = h("tr", {
      class: [sample ? "sample" : "", opts.rowClass ? opts.rowClass(row) : ""].join(" ").trim(),
      data: sample ? {} : { index: String(item.index) },
    });
    for (const c of cols) {
      const raw = c.get ? c.get(row) : pointer(row, c.f);
      const shown = c.fmt ? c.fmt(raw, row) : raw === null || raw === undefined ? "—" : String(raw);
      const cls = [c.num ? "num" : "", c.cls ? c.cls(row) : ""].join(" ").trim();
      const td = c.f ? figure("td", cls, c.f, raw, shown, sample) : h("td", { class: cls }, shown);
      if (typeof raw === "string" && typeof shown === "string" && shown !== raw) td.title = raw;
      if (c.also) {
        // A second figure in the same cell (a run's exit code beside its status, …).
        const raw2 = pointer(row, c.also.f);
        const text2 = c.also.fmt ? c.also.fmt(raw2, row) : String(raw2);
        if (text2) td.append(" ", figure("span", "muted", c.also.f, raw2, text2, sample));
      }
      tr.append(td);
    }
    if (opts.onclick && !sample) {
      tr.classList.add("clickable");
      tr.addEventListener("click", () => opts.onclick(row));
    }
    body.append(tr);
  });
  if (rows.length === 0) body.append(h("tr", { class: "none" }, h("td", { colspan: cols.length }, opts.none || "none")));
  table.append(body);
}

// `/a/b` of an object (JSON pointer, no escapes needed for our field names).
function pointer(obj, ptr) {
  if (!ptr) return undefined;
  let v = obj;
  for (const k of ptr.split("/").slice(1)) {
    if (v === null || v === undefined) return undefined;
    v = v[k];
  }
  return v;
}

const indexed = (list) => (list || []).map((row, index) => ({ row, index }));
const asSample = (list) => list.map((row) => ({ row, index: null }));

function badge(text, kind) {
  return h("span", { class: "badge " + kind }, text);
}

// ---- state: the selection ----------------------------------------------------------------------

const sel = { customer: "", window: "24h", status: "" };
const bucketFor = (w) => (w === "24h" || w === "1h" ? "hour" : "day");
const windowWords = { "1h": "last hour", "24h": "last 24 h", "7d": "last 7 days", "30d": "last 30 days", "90d": "last 90 days" };

// ---- synthetic samples (only for a panel whose read is empty; always labelled) ---------------

const HOUR = 3600e3;
const ago = (ms) => new Date(Date.now() - ms).toISOString();
const SAMPLE = {
  overview: { runs: 42, runs_failed: 2, runs_timed_out: 1, tool_calls: 1840, tool_failures: 31, error_events: 3, cost_cents: 5552.4, agents: 6 },
  customers: [
    { customer_id: "sample-acme", name: "Sample Acme", engagement: "high", runs_last_7d: 96, runs: 1210, runs_failed: 14, runs_timed_out: 3, tool_calls: 40210, tool_failures: 95, error_events: 12, cost_cents: 38210.75, agents: 6, last_seen: ago(0.2 * HOUR) },
    { customer_id: "sample-globex", name: "Sample Globex", engagement: "low", runs_last_7d: 4, runs: 230, runs_failed: 2, runs_timed_out: 0, tool_calls: 6100, tool_failures: 12, error_events: 1, cost_cents: 6120.0, agents: 2, last_seen: ago(70 * HOUR) },
  ],
  tools: [
    { tool_name: "Bash", tool_source: "builtin", mcp_server: null, calls: 820, failures: 31, failure_rate: 0.0378, p50_duration_ms: 410, p95_duration_ms: 9200, p99_duration_ms: 21000 },
    { tool_name: "Read", tool_source: "builtin", mcp_server: null, calls: 640, failures: 2, failure_rate: 0.0031, p50_duration_ms: 12, p95_duration_ms: 120, p99_duration_ms: 300 },
    { tool_name: "mcp__github__create_issue", tool_source: "mcp", mcp_server: "github", calls: 18, failures: 1, failure_rate: 0.0556, p50_duration_ms: 700, p95_duration_ms: 2400, p99_duration_ms: 2400 },
  ],
  mcp: [{ mcp_server: "github", tools: 1, calls: 18, failures: 1, failure_rate: 0.0556, p50_duration_ms: 700, p95_duration_ms: 2400, p99_duration_ms: 2400 }],
  runs: [
    { run_id: "sample_run_3", agent_id: "sample_agent_1", customer_id: "sample-acme", first_ts: ago(0.5 * HOUR), started_at: ago(0.5 * HOUR), status: "running", exit_code: null, duration_ms: null, tool_calls: 12, tool_failures: 0, error_events: 0, cost_cents: 35.2, models: [{ model: "claude-sonnet-4-5" }] },
    { run_id: "sample_run_2", agent_id: "sample_agent_1", customer_id: "sample-acme", first_ts: ago(2 * HOUR), status: "failed", exit_code: 1, duration_ms: 1800e3, tool_calls: 88, tool_failures: 6, error_events: 1, cost_cents: 412.8, models: [{ model: "claude-sonnet-4-5" }, { model: "claude-opus-4-1" }] },
    { run_id: "sample_run_1", agent_id: "sample_agent_2", customer_id: "sample-globex", first_ts: ago(5 * HOUR), status: "timeout", exit_code: 124, duration_ms: 3600e3, tool_calls: 140, tool_failures: 2, error_events: 0, cost_cents: 980.1, models: [{ model: "claude-opus-4-1" }] },
    { run_id: "sample_run_0", agent_id: "sample_agent_2", customer_id: "sample-globex", first_ts: ago(9 * HOUR), status: "success", exit_code: 0, duration_ms: 1080e3, tool_calls: 51, tool_failures: 1, error_events: 0, cost_cents: 150.0, models: [{ model: "claude-sonnet-4-5" }] },
  ],
  errorGroups: [
    { kind: "hook_failed", stack_hash: "3f9a1c", events: 7, customers: 2, first_seen: ago(30 * HOUR), last_seen: ago(1 * HOUR), example_message: "brain-emit: spool is locked (sample)" },
    { kind: "wrapper_timeout", stack_hash: null, events: 2, customers: 1, first_seen: ago(20 * HOUR), last_seen: ago(4 * HOUR), example_message: "run exceeded 3600 s (sample)" },
  ],
  toolFailures: [
    { tool_name: "Bash", failures: 31, calls: 820, failure_rate: 0.0378, mcp_server: null },
    { tool_name: "mcp__github__create_issue", failures: 1, calls: 18, failure_rate: 0.0556, mcp_server: "github" },
  ],
  fleet: [
    { agent_id: "sample_box_2", customer_id: "sample-globex", stale: true, last_heartbeat: ago(3 * HOUR), host_load_1m: 0.4, agent_runtime_count: 1, paperclip_uptime_s: null, spool_depth: 5230, spool_dropped: 12, versions: { sample_agent_2: "2.0.9" } },
    { agent_id: "sample_box_1", customer_id: "sample-acme", stale: false, last_heartbeat: ago(0.05 * HOUR), host_load_1m: 1.72, agent_runtime_count: 3, paperclip_uptime_s: 302400, spool_depth: 0, spool_dropped: 0, versions: { sample_agent_1: "2.1.0" } },
  ],
  health: { database: "sqlite", events_stored_last_hour: 5210, delay_p50_ms: 410, delay_p95_ms: 2900, late_events_last_hour: 12, events_total: 1840221, dead_letters_total: 9, dead_letters_last_24h: 2, customers_seen_last_24h: 14, agents_seen_last_24h: 131 },
  agents: [
    { agent_id: "sample_agent_1", customer_id: "sample-acme", agent_version: "2.1.0", runs: 310, runs_failed: 4, runs_timed_out: 1, tool_calls: 9100, tool_failures: 20, error_events: 3, cost_cents: 8120.5, last_seen: ago(0.2 * HOUR) },
    { agent_id: "sample_agent_2", customer_id: "sample-globex", agent_version: "2.0.9", runs: 120, runs_failed: 1, runs_timed_out: 0, tool_calls: 3020, tool_failures: 4, error_events: 0, cost_cents: 2210.0, last_seen: ago(3 * HOUR) },
  ],
};

function sampleCost(win) {
  const bucket = bucketFor(win);
  const step = bucket === "hour" ? HOUR : 24 * HOUR;
  const n = { "24h": 24, "7d": 7, "30d": 30, "90d": 90 }[win] || 24;
  const start = Math.floor(Date.now() / step) * step - (n - 1) * step;
  const points = [];
  for (let i = 0; i < n; i++) {
    const t = new Date(start + i * step).toISOString();
    const wave = 1 + 0.5 * Math.sin(i / 2.5);
    points.push({ bucket_start: t, model: "claude-sonnet-4-5", cost_cents: Math.round(900 * wave) / 10, input_tokens: 2.1e5, output_tokens: 4.2e4, cache_read_tokens: 1.9e6, cache_write_tokens: 8e4 });
    points.push({ bucket_start: t, model: "claude-opus-4-1", cost_cents: Math.round(1500 * wave * (i % 3 === 0 ? 1.6 : 0.4)) / 10, input_tokens: 6e4, output_tokens: 1.1e4, cache_read_tokens: 5e5, cache_write_tokens: 2e4 });
  }
  return points;
}

// ---- panels: one read each ----------------------------------------------------------------------

let generation = 0; // a newer selection makes older answers stale: they are not drawn

// A figure tile of the headline strip.
function kpi(label, field, raw, text, opts = {}) {
  const valueData = opts.sample ? {} : { field, value: JSON.stringify(raw === undefined ? null : raw) };
  if (!opts.sample && opts.sumOf) Object.assign(valueData, { agg: "sum", list: opts.sumOf });
  const warn = isNum(raw) && raw > 0 && opts.alarm ? " " + opts.alarm : "";
  return h("div", { class: "kpi" + warn }, h("div", { class: "label" }, label), h("div", { class: "value", data: valueData }, text));
}

async function loadOverview(gen) {
  const query = q("overview", { window: sel.window });
  const d = await api(query);
  if (gen !== generation) return;
  const list = d.customers || [];
  const sample = list.length === 0;
  const p = setPanel("overview", query, sample, windowWords[sel.window] + " · " + (sel.customer ? customerName(sel.customer) : "all customers"));
  p.dataset.emptyWhen = "/customers";
  const box = p.querySelector(".kpis");
  box.replaceChildren();
  const FIELDS = [
    ["Runs", "/runs", fmtInt],
    ["Failed runs", "/runs_failed", fmtInt, "bad"],
    ["Timed-out runs", "/runs_timed_out", fmtInt, "warn"],
    ["Tool calls", "/tool_calls", fmtInt],
    ["Tool failures", "/tool_failures", fmtInt, "warn"],
    ["Error events", "/error_events", fmtInt, "bad"],
    ["Cost to serve", "/cost_cents", fmtCents],
    ["Active agents", "/agents", fmtInt],
  ];
  if (sample) {
    for (const [label, f, fmt, alarm] of FIELDS) {
      const raw = pointer(SAMPLE.overview, f);
      box.append(kpi(label, f, raw, fmt(raw), { sample: true, alarm }));
    }
    return;
  }
  if (sel.customer) {
    // One customer's own row of the overview.
    const i = list.findIndex((c) => c.customer_id === sel.customer);
    const row = i >= 0 ? list[i] : {};
    const holder = h("div", { class: "kpis-row", data: { list: "/customers" } });
    const inner = h("div", { class: "kpis-inner", data: i >= 0 ? { index: String(i) } : {} });
    for (const [label, f, fmt, alarm] of FIELDS) inner.append(kpi(label, f, pointer(row, f), fmt(pointer(row, f)), { alarm }));
    holder.append(inner);
    box.append(holder);
  } else {
    for (const [label, f, fmt, alarm] of FIELDS) {
      const sum = list.reduce((a, c) => a + (pointer(c, f) || 0), 0);
      box.append(kpi(label, f, sum, fmt(sum), { sumOf: "/customers", alarm }));
    }
  }
}

// Customers: the picker's options and the engagement table.
let customers = [];
const customerName = (id) => (customers.find((c) => c.customer_id === id) || { name: id }).name;

function fillPicker(list) {
  const pick = $("customer");
  const keep = sel.customer;
  // Rebuilt only when the customers changed (a refresh must not close an open picker).
  const sig = JSON.stringify([keep, list.map((c) => [c.customer_id, c.name])]);
  if (pick.dataset.sig === sig) return showSelection();
  pick.dataset.sig = sig;
  pick.replaceChildren(h("option", { value: "" }, "All customers"));
  for (const c of list) pick.append(h("option", { value: c.customer_id }, c.name === c.customer_id ? c.name : `${c.name} (${c.customer_id})`));
  if (keep && !list.some((c) => c.customer_id === keep)) pick.append(h("option", { value: keep }, keep));
  pick.value = keep;
  showSelection();
}

async function loadCustomers(gen) {
  const query = q("customers", {});
  const d = await api(query);
  if (gen !== generation) return;
  const list = d.customers || [];
  customers = list;
  fillPicker(list);
  const sample = list.length === 0;
  const p = setPanel("customers", query, sample);
  p.dataset.emptyWhen = "/customers";
  const ENG = { high: "ok", medium: "ok", low: "idle", none: "muted", active: "ok", idle: "idle" };
  renderTable(p.querySelector("table"), "/customers", [
    { h: "Customer", f: "/name", fmt: (v, r) => h("span", {}, v, " ", h("span", { class: "muted" }, r.customer_id)) },
    { h: "Engagement", f: "/engagement", fmt: (v) => badge(v || "—", ENG[v] || "muted"), title: "runs in the last 7 days: high ≥ 70, medium 7–69, low 1–6" },
    { h: "Cost", f: "/cost_cents", fmt: fmtCents, num: true },
    { h: "Runs, 7 d", f: "/runs_last_7d", fmt: fmtInt, num: true },
    { h: "Runs", f: "/runs", fmt: fmtInt, num: true },
    { h: "Failed / timed out", f: "/runs_failed", fmt: fmtInt, num: true, cls: (r) => (r.runs_failed > 0 ? "error" : ""), also: { f: "/runs_timed_out", fmt: (v) => "/ " + fmtInt(v) } },
    { h: "Tool calls", f: "/tool_calls", fmt: fmtInt, num: true },
    { h: "Tool failures", f: "/tool_failures", fmt: fmtInt, num: true },
    { h: "Error events", f: "/error_events", fmt: fmtInt, num: true },
    { h: "Agents", f: "/agents", fmt: fmtInt, num: true },
    { h: "Last seen", f: "/last_seen", fmt: fmtAgo },
  ], sample ? asSample(SAMPLE.customers) : indexed(list), {
    sample,
    rowClass: (r) => (r.customer_id === sel.customer ? "selected" : ""),
    onclick: (r) => select({ customer: r.customer_id === sel.customer ? "" : r.customer_id }),
    none: "no customers yet",
  });
}

async function loadAgents(gen) {
  const query = q("agents", { customer_id: sel.customer });
  const d = await api(query);
  if (gen !== generation) return;
  const list = d.agents || [];
  const sample = list.length === 0;
  const p = setPanel("agents", query, sample, sel.customer ? "of " + customerName(sel.customer) + ", all time" : "all customers, all time");
  p.dataset.emptyWhen = "/agents";
  renderTable(p.querySelector("table"), "/agents", [
    { h: "Agent", f: "/agent_id", cls: () => "mono" },
    { h: "Cost", f: "/cost_cents", fmt: fmtCents, num: true },
    { h: "Runs", f: "/runs", fmt: fmtInt, num: true },
    { h: "Failed / timed out", f: "/runs_failed", fmt: fmtInt, num: true, cls: (r) => (r.runs_failed > 0 ? "error" : ""), also: { f: "/runs_timed_out", fmt: (v) => "/ " + fmtInt(v) } },
    { h: "Tool calls", f: "/tool_calls", fmt: fmtInt, num: true },
    { h: "Tool failures", f: "/tool_failures", fmt: fmtInt, num: true },
    { h: "Error events", f: "/error_events", fmt: fmtInt, num: true },
    { h: "Last seen", f: "/last_seen", fmt: fmtAgo },
    { h: "Version", f: "/agent_version", fmt: (v) => v || "—" },
    { h: "Customer", f: "/customer_id" },
  ], sample ? asSample(SAMPLE.agents) : indexed(list), { sample });
}

function rateBar(calls, max) {
  const w = max > 0 ? Math.max(2, Math.round((60 * calls) / max)) : 0;
  return h("span", {}, h("span", { class: "bar", style: `width:${w}px` }), fmtInt(calls));
}

async function loadTools(gen) {
  const query = q("tools", { window: sel.window, customer_id: sel.customer });
  const d = await api(query);
  if (gen !== generation) return;
  const tools = d.tools || [];
  const mcp = d.mcp_servers || [];
  const sample = tools.length === 0;
  const p = setPanel("tools", query, sample, windowWords[sel.window] + (sel.customer ? " · " + customerName(sel.customer) : " · whole fleet"));
  p.dataset.emptyWhen = "/tools,/mcp_servers";
  const maxCalls = Math.max(0, ...(sample ? SAMPLE.tools : tools).map((t) => t.calls));
  const pct = (field) => ({ h: field.h, f: field.f, fmt: fmtMs, num: true, title: "from a log histogram, within 3.1 %" });
  renderTable(p.querySelector("table.tools"), "/tools", [
    { h: "Tool", f: "/tool_name", cls: () => "mono" },
    { h: "Calls", f: "/calls", fmt: (v) => rateBar(v, maxCalls), num: true },
    { h: "Failure rate", f: "/failure_rate", fmt: fmtPct, num: true, cls: (r) => (r.failure_rate >= 0.05 ? "error" : "") },
    pct({ h: "p50", f: "/p50_duration_ms" }),
    pct({ h: "p95", f: "/p95_duration_ms" }),
    pct({ h: "p99", f: "/p99_duration_ms" }),
    { h: "Failures", f: "/failures", fmt: fmtInt, num: true },
    { h: "Source", f: "/tool_source", fmt: (v) => v || "—" },
    { h: "MCP server", f: "/mcp_server", fmt: (v) => v || "—" },
  ], sample ? asSample(SAMPLE.tools) : indexed(tools), { sample });
  renderTable(p.querySelector("table.mcp"), "/mcp_servers", [
    { h: "MCP server", f: "/mcp_server" },
    { h: "Calls", f: "/calls", fmt: fmtInt, num: true },
    { h: "Failure rate", f: "/failure_rate", fmt: fmtPct, num: true, cls: (r) => (r.failure_rate >= 0.05 ? "error" : "") },
    pct({ h: "p50", f: "/p50_duration_ms" }),
    pct({ h: "p95", f: "/p95_duration_ms" }),
    pct({ h: "p99", f: "/p99_duration_ms" }),
    { h: "Failures", f: "/failures", fmt: fmtInt, num: true },
    { h: "Tools", f: "/tools", fmt: fmtInt, num: true },
  ], sample ? asSample(SAMPLE.mcp) : indexed(mcp), {
    sample,
    none: "no MCP server was called in this window",
  });
}

async function loadErrors(gen) {
  const query = q("errors", { window: sel.window, customer_id: sel.customer });
  const d = await api(query);
  if (gen !== generation) return;
  const groups = d.errors || [];
  const fails = d.tool_failures || [];
  const sample = groups.length === 0 && fails.length === 0;
  const p = setPanel("errors", query, sample, windowWords[sel.window] + (sel.customer ? " · " + customerName(sel.customer) : ""));
  p.dataset.emptyWhen = "/errors,/tool_failures";
  renderTable(p.querySelector("table.error-groups"), "/errors", [
    { h: "Kind", f: "/kind" },
    { h: "Events", f: "/events", fmt: fmtInt, num: true },
    { h: "Last seen", f: "/last_seen", fmt: fmtAgo },
    { h: "Example message", f: "/example_message", cls: () => "wrap" },
    { h: "Stack", f: "/stack_hash", fmt: (v) => v || "—", cls: () => "mono" },
    { h: "Customers", f: "/customers", fmt: fmtInt, num: true },
    { h: "First seen", f: "/first_seen", fmt: fmtAgo },
  ], sample ? asSample(SAMPLE.errorGroups) : indexed(groups), {
    sample,
    none: "no error events in this window",
  });
  renderTable(p.querySelector("table.tool-failures"), "/tool_failures", [
    { h: "Tool", f: "/tool_name", cls: () => "mono" },
    { h: "Failures", f: "/failures", fmt: fmtInt, num: true },
    { h: "Failure rate", f: "/failure_rate", fmt: fmtPct, num: true },
    { h: "Calls", f: "/calls", fmt: fmtInt, num: true },
    { h: "MCP server", f: "/mcp_server", fmt: (v) => v || "—" },
  ], sample ? asSample(SAMPLE.toolFailures) : indexed(fails), {
    sample,
    none: "no tool call failed in this window",
  });
}

// A run's models, with each one's cost and tokens on hover.
function modelsCell(text, run) {
  const detail = (run.models || [])
    .map((m) => `${m.model}: ${fmtCents(m.cost_cents)}, ${fmtTokens(m.input_tokens)} in, ${fmtTokens(m.output_tokens)} out, ${fmtTokens(m.cache_read_tokens)} cache read`)
    .join("\n");
  return h("span", { title: detail || null }, text || "—");
}

const STATUS = { success: ["succeeded", "ok"], failed: ["failed", "bad"], timeout: ["timed out", "warn"], running: ["running", "running"], unknown: ["no start/end", "muted"] };
let runsCursor = ""; // the page of runs shown ("" = newest)
let runsBack = []; // cursors of the pages before it

async function loadSessions(gen) {
  const query = q("sessions", { window: sel.window, customer_id: sel.customer, status: sel.status, limit: 25, cursor: runsCursor });
  const d = await api(query);
  if (gen !== generation) return;
  const list = d.sessions || [];
  const filtered = !!sel.status || !!runsCursor;
  const sample = list.length === 0 && !filtered;
  const p = setPanel("sessions", query, sample,
    "newest first · " + windowWords[sel.window] + (sel.customer ? " · " + customerName(sel.customer) : "") + (runsCursor ? " · older page" : ""));
  p.dataset.emptyWhen = "/sessions";
  p.dataset.filtered = String(filtered);
  const statusCell = (v) => {
    const b = badge((STATUS[v] || [v || "—"])[0], (STATUS[v] || [, "muted"])[1]);
    // "unknown": events of a run the isolate wrapper did not start (a Claude session's hooks
    // alone); it may never "end".
    if (v === "unknown") b.title = "no session.start or session.end stored for this run id: hook events only";
    return b;
  };
  const cols = [
    { h: "Status", f: "/status", fmt: statusCell, also: { f: "/exit_code", fmt: (v) => (v === null || v === undefined ? "" : "exit " + v) } },
    { h: "Started (UTC)", f: "/first_ts", fmt: fmtTime, title: "time of the run's first event" },
    { h: "Duration", f: "/duration_ms", fmt: fmtMs, num: true },
    { h: "Cost", f: "/cost_cents", fmt: fmtCents, num: true },
    { h: "Tool calls / failed", f: "/tool_calls", fmt: fmtInt, num: true, also: { f: "/tool_failures", fmt: (v) => "/ " + fmtInt(v) }, cls: (r) => (r.tool_failures > 0 ? "error" : "") },
    { h: "Error events", f: "/error_events", fmt: fmtInt, num: true, cls: (r) => (r.error_events > 0 ? "error" : "") },
    { h: "Agent", f: "/agent_id", fmt: (v) => short(v, 22), cls: () => "mono" },
    { h: "Run", f: "/run_id", fmt: (v) => short(v, 20), cls: () => "mono", title: "run id (hover for the whole id)" },
    sel.customer ? null : { h: "Customer", f: "/customer_id" },
    { h: "Models", get: (r) => (r.models || []).map((m) => m.model.replace(/^claude-/, "")).join(", "), fmt: (v, r) => modelsCell(v, r) },
  ].filter(Boolean);
  const rows = sample ? asSample(SAMPLE.runs) : indexed(list);
  renderTable(p.querySelector("table.runs"), "/sessions", cols, rows, {
    sample,
    rowClass: (r) => (r.status === "failed" ? "bad" : r.status === "timeout" ? "warn" : ""),
    none: sel.status ? `no ${STATUS[sel.status][0]} runs in this window` : "no runs on this page",
  });
  // Paging: older by the read's cursor, newer by the cursors already walked.
  const newer = p.querySelector("button.newer");
  const older = p.querySelector("button.more");
  newer.hidden = !runsCursor;
  older.hidden = sample || !d.next_cursor;
  newer.onclick = () => {
    runsCursor = runsBack.pop() || "";
    refreshPanels(["sessions"]);
  };
  older.onclick = () => {
    runsBack.push(runsCursor);
    runsCursor = d.next_cursor;
    refreshPanels(["sessions"]);
  };
}

async function loadFleet(gen) {
  const query = q("fleet", { customer_id: sel.customer });
  const d = await api(query);
  if (gen !== generation) return;
  const list = d.agents || [];
  const sample = list.length === 0;
  const p = setPanel("fleet", query, sample);
  p.dataset.emptyWhen = "/agents";
  // Stale first (the read already orders them so; kept here should it change).
  const rows = (sample ? asSample(SAMPLE.fleet) : indexed(list))
    .map((x, i) => ({ ...x, order: i }))
    .sort((a, b) => (b.row.stale === true) - (a.row.stale === true) || a.order - b.order);
  const versions = (v) => Object.entries(v || {}).map(([a, ver]) => (Object.keys(v).length > 1 ? `${a} ${ver}` : ver)).join(", ") || "—";
  renderTable(p.querySelector("table.fleet"), "/agents", [
    { h: "State", f: "/stale", fmt: (v) => (v ? badge("stale", "bad") : badge("ok", "ok")) },
    { h: "Box (agent)", f: "/agent_id", cls: () => "mono" },
    { h: "Last heartbeat", f: "/last_heartbeat", fmt: fmtAgo },
    { h: "Spool depth", f: "/spool_depth", fmt: fmtInt, num: true, cls: (r) => (r.spool_depth > 1000 ? "error" : "") },
    { h: "Dropped", f: "/spool_dropped", fmt: fmtInt, num: true, cls: (r) => (r.spool_dropped > 0 ? "error" : "") },
    { h: "Customer", f: "/customer_id" },
    { h: "Load 1 m", f: "/host_load_1m", fmt: fmtLoad, num: true },
    { h: "Runtimes", f: "/agent_runtime_count", fmt: fmtInt, num: true },
    { h: "Versions", get: (r) => versions(r.versions) },
    { h: "Uptime", f: "/paperclip_uptime_s", fmt: (v) => (isNum(v) ? fmtMs(v * 1000) : "—"), num: true },
  ], rows, { sample, rowClass: (r) => (r.stale ? "bad" : ""), none: "no box has sent a heartbeat" });
}

async function loadHealth(gen) {
  const query = q("health", {});
  const d = await api(query);
  if (gen !== generation) return;
  const sample = !d.events_total;
  const p = setPanel("health", query, sample);
  p.dataset.emptyWhen = "/events_total";
  const s = sample ? SAMPLE.health : d;
  const dl = p.querySelector("dl");
  dl.replaceChildren();
  // A verdict first, in words.
  let verdict, kind;
  if (!s.events_stored_last_hour) { verdict = "Nothing stored in the last hour: are the boxes sending?"; kind = "warn"; }
  else if (isNum(s.delay_p95_ms) && s.delay_p95_ms > 5 * 60e3) { verdict = `Events arrive late: 1 in 20 is stored more than ${fmtMs(s.delay_p95_ms)} after it happened.`; kind = "warn"; }
  else { verdict = `Keeping up: events are stored a median ${fmtMs(s.delay_p50_ms)} after they happen.`; kind = "ok"; }
  if (s.dead_letters_last_24h > 0) { verdict += ` ${fmtInt(s.dead_letters_last_24h)} refused event(s) in the last 24 h.`; kind = kind === "ok" ? "warn" : kind; }
  dl.append(h("div", { class: "verdict " + kind }, verdict));
  const row = (label, field, fmt, bad) => {
    const raw = pointer(s, field);
    dl.append(h("dt", {}, label), figure("dd", bad && bad(raw) ? "bad" : "", field, raw, fmt(raw), sample));
  };
  row("Events stored, last hour", "/events_stored_last_hour", fmtInt);
  row("Delay, happened → stored (median)", "/delay_p50_ms", fmtMs);
  row("Delay, happened → stored (95th pct.)", "/delay_p95_ms", fmtMs, (v) => v > 5 * 60e3);
  row("Stored late (happened > 1 h before), last hour", "/late_events_last_hour", fmtInt);
  row("Refused events (dead letters), 24 h", "/dead_letters_last_24h", fmtInt, (v) => v > 0);
  row("Refused events, all time", "/dead_letters_total", fmtInt);
  row("Customers sending, 24 h", "/customers_seen_last_24h", fmtInt);
  row("Agents sending, 24 h", "/agents_seen_last_24h", fmtInt);
  row("Events stored, all time", "/events_total", fmtInt);
  row("Database", "/database", (v) => ({ sqlite: "SQLite (embedded)", postgres: "Postgres" })[v] || String(v));
}

// ---- cost to serve: a stacked bar chart by model (uPlot) ----------------------------------------

const PALETTE = ["#3559c7", "#e0803a", "#2a9d8f", "#b5427a", "#8c6bc8", "#6b8e23", "#c9a227", "#5f7d95"];
const STEP_S = { hour: 3600, day: 86400, week: 604800 };
let costChart = null;

// Buckets from `since` to `until` (UTC; ISO weeks start on Monday, 4 days after the epoch).
function bucketGrid(since, until, bucket) {
  const step = STEP_S[bucket];
  const offset = bucket === "week" ? 4 * 86400 : 0;
  const align = (t) => Math.floor((t - offset) / step) * step + offset;
  const xs = [];
  for (let t = align(Date.parse(since) / 1000); t < Date.parse(until) / 1000; t += step) xs.push(t);
  return xs;
}

function drawCost(el, points, since, until, bucket) {
  const xs = bucketGrid(since, until, bucket);
  for (const p of points) {
    const t = Date.parse(p.bucket_start) / 1000;
    if (!xs.includes(t)) xs.push(t);
  }
  xs.sort((a, b) => a - b);
  const at = new Map(xs.map((t, i) => [t, i]));
  // Per model, its cents per bucket; models ordered costliest first (bottom of the stack).
  const per = new Map();
  for (const p of points) {
    if (!per.has(p.model)) per.set(p.model, new Array(xs.length).fill(0));
    per.get(p.model)[at.get(Date.parse(p.bucket_start) / 1000)] += p.cost_cents;
  }
  const models = [...per.keys()].sort((a, b) => per.get(b).reduce((x, y) => x + y, 0) - per.get(a).reduce((x, y) => x + y, 0) || (a < b ? -1 : 1));
  const own = models.map((m) => per.get(m));
  const stacked = [];
  own.forEach((vals, i) => stacked.push(vals.map((v, j) => v + (i > 0 ? stacked[i - 1][j] : 0))));
  el.dataset.total = String(own.reduce((a, vals) => a + vals.reduce((x, y) => x + y, 0), 0));
  el.dataset.models = JSON.stringify(models);

  // Drawn top of the stack first, so each lower band paints over the one above it.
  const order = models.map((_, i) => i).reverse();
  const width = Math.max(200, el.clientWidth || el.parentElement.clientWidth - 28);
  const height = window.innerWidth < 600 ? 200 : 240;
  const dollars = (c) => (c === null || c === undefined ? "—" : fmtCents(c));
  const opts = {
    width,
    height,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    legend: { live: true },
    cursor: { points: { show: false } },
    scales: {
      x: { time: true, range: (u, min, max) => [min - STEP_S[bucket] * 0.6, max + STEP_S[bucket] * 0.6] },
      y: { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 100] },
    },
    axes: [
      {
        stroke: "#6b7580", grid: { stroke: "#eef0f3" }, size: 40,
        incrs: bucket === "hour" ? [3600, 7200, 10800, 21600, 43200, 86400] : [86400, 172800, 604800, 1209600, 2419200],
        values: (u, splits) => splits.map((t) => fmtTick(t, bucket)),
      },
      { stroke: "#6b7580", grid: { stroke: "#eef0f3" }, values: (u, vals) => vals.map((v) => "$" + (v / 100).toLocaleString("en-US", { maximumFractionDigits: v < 1000 ? 2 : 0 })), size: 64 },
    ],
    series: [
      { label: bucket === "hour" ? "Hour (UTC)" : bucket === "day" ? "Day (UTC)" : "Week (UTC)", value: (u, t) => (t === null ? "—" : fmtBucket(t, bucket)) },
      ...order.map((i) => ({
        label: models[i],
        stroke: PALETTE[i % PALETTE.length],
        fill: PALETTE[i % PALETTE.length] + "cc",
        width: 0,
        paths: uPlot.paths.bars({ size: [0.8, 48], align: 0 }),
        points: { show: false },
        value: (u, v, si, idx) => (idx === null || idx === undefined ? "—" : dollars(own[i][idx])),
      })),
    ],
  };
  const data = [xs, ...order.map((i) => stacked[i])];
  if (costChart) costChart.destroy();
  el.replaceChildren();
  costChart = new uPlot(opts, data, el);
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
function fmtTick(t, bucket) {
  const d = new Date(t * 1000);
  const day = MONTHS[d.getUTCMonth()] + " " + d.getUTCDate();
  if (bucket !== "hour" || t % 86400 === 0) return day;
  return String(d.getUTCHours()).padStart(2, "0") + ":00";
}

function fmtBucket(t, bucket) {
  const d = new Date(t * 1000).toISOString();
  return bucket === "hour" ? d.slice(0, 13).replace("T", " ") + ":00" : d.slice(0, 10);
}

window.addEventListener("resize", () => {
  if (!costChart) return;
  const el = $("cost-chart");
  costChart.setSize({ width: Math.max(200, el.clientWidth), height: window.innerWidth < 600 ? 200 : 240 });
});

async function loadCost(gen) {
  const bucket = bucketFor(sel.window);
  const query = q("cost", { window: sel.window, bucket, customer_id: sel.customer });
  const d = await api(query);
  if (gen !== generation) return;
  const points = d.points || [];
  const sample = points.length === 0;
  const p = setPanel("cost", query, sample,
    "by model · " + windowWords[sel.window] + ", per " + bucket + (sel.customer ? " · " + customerName(sel.customer) : " · all customers"));
  p.dataset.emptyWhen = "/points";
  let pts = points, byModel = d.by_model || [], since = d.since, until = d.until;
  if (sample) {
    pts = sampleCost(sel.window);
    until = new Date().toISOString();
    since = pts[0].bucket_start;
    const tot = new Map();
    for (const x of pts) {
      const m = tot.get(x.model) || { model: x.model, llm_events: 0, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost_cents: 0 };
      for (const k of ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_cents"]) m[k] += x[k];
      m.llm_events += 3;
      tot.set(x.model, m);
    }
    byModel = [...tot.values()].sort((a, b) => b.cost_cents - a.cost_cents);
  }
  drawCost($("cost-chart"), pts, since, until, bucket);
  const models = JSON.parse($("cost-chart").dataset.models);
  const colour = (m) => PALETTE[Math.max(0, models.indexOf(m)) % PALETTE.length];
  const table = p.querySelector("table.models");
  renderTable(table, "/by_model", [
    { h: "Model", f: "/model", fmt: (v) => h("span", {}, h("span", { class: "swatch", style: "background:" + colour(v) }), v) },
    { h: "Cost", f: "/cost_cents", fmt: fmtCents, num: true },
    { h: "Input tokens", f: "/input_tokens", fmt: fmtTokens, num: true },
    { h: "Output tokens", f: "/output_tokens", fmt: fmtTokens, num: true },
    { h: "Cache read", f: "/cache_read_tokens", fmt: fmtTokens, num: true },
    { h: "Cache write", f: "/cache_write_tokens", fmt: fmtTokens, num: true },
    { h: "LLM reports", f: "/llm_events", fmt: fmtInt, num: true },
  ], sample ? asSample(byModel) : indexed(byModel), { sample });
  // Cost to serve per customer (all customers only: one customer is the model table).
  const byCustomer = sample ? SAMPLE.customers.map((c, i) => ({ ...byModel[i % byModel.length], customer_id: c.customer_id })) : d.by_customer || [];
  p.querySelector(".per-customer").hidden = !!sel.customer;
  renderTable(p.querySelector("table.by-customer"), "/by_customer", [
    { h: "Customer", f: "/customer_id", fmt: (v) => customerName(v) + (customerName(v) === v ? "" : " (" + v + ")") },
    { h: "Cost", f: "/cost_cents", fmt: fmtCents, num: true },
    { h: "Input tokens", f: "/input_tokens", fmt: fmtTokens, num: true },
    { h: "Output tokens", f: "/output_tokens", fmt: fmtTokens, num: true },
    { h: "Cache read", f: "/cache_read_tokens", fmt: fmtTokens, num: true },
    { h: "Cache write", f: "/cache_write_tokens", fmt: fmtTokens, num: true },
    { h: "LLM reports", f: "/llm_events", fmt: fmtInt, num: true },
  ], sel.customer ? [] : sample ? asSample(byCustomer) : indexed(byCustomer), { sample, none: "" });
  // The window's total (the chart's bars add up to it) and the price table used.
  const note = p.querySelector(".note");
  note.replaceChildren();
  const total = pts.reduce((a, x) => a + x.cost_cents, 0);
  const totalEl = sample ? h("strong", {}, fmtCents(total)) : h("strong", { data: { agg: "sum", list: "/points", field: "/cost_cents", value: JSON.stringify(total) } }, fmtCents(total));
  note.append("Total ", totalEl, " in the window. ");
  const prices = sample ? { source: "sample prices", as_of: "—" } : d.prices || {};
  note.append("Prices: ", figure("span", "", "/prices/source", prices.source, prices.source || "—", sample),
    ", checked ", figure("span", "", "/prices/as_of", prices.as_of, prices.as_of || "—", sample), ".");
}

// ---- refresh and selection ------------------------------------------------------------------------

const LOADERS = {
  overview: loadOverview, customers: loadCustomers, cost: loadCost, sessions: loadSessions,
  errors: loadErrors, tools: loadTools, fleet: loadFleet, health: loadHealth, agents: loadAgents,
};

// Loads `names` (default: every panel) for the current selection; when done, the body's
// data-loaded says which selection is on screen ("customer|window|status").
async function refreshPanels(names) {
  const gen = ++generation;
  const key = `${sel.customer}|${sel.window}|${sel.status}`;
  document.body.dataset.loaded = "";
  document.body.classList.add("loading");
  const todo = names || Object.keys(LOADERS);
  const results = await Promise.allSettled(todo.map((n) => LOADERS[n](gen)));
  if (gen !== generation) return;
  const errors = [];
  for (const r of results) {
    if (r.status !== "rejected") continue;
    if (r.reason instanceof Unauthorized) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("The admin token was refused; paste it again.");
      return;
    }
    errors.push(r.reason && r.reason.message ? r.reason.message : String(r.reason));
  }
  $("error").hidden = errors.length === 0;
  $("error").textContent = errors.join(" · ");
  $("updated").textContent = "updated " + new Date().toLocaleTimeString("en-GB");
  document.body.classList.remove("loading");
  document.body.dataset.loaded = key;
}

function refresh() {
  checkHealth();
  return refreshPanels();
}

// Changes the selection and redraws every panel.
function select(change) {
  Object.assign(sel, change);
  if ("customer" in change || "window" in change || "status" in change) { runsCursor = ""; runsBack = []; }
  showSelection();
  writeFragment();
  return refreshPanels();
}

function showSelection() {
  $("customer").value = sel.customer;
  $("window").value = sel.window;
  $("status").value = sel.status;
  $("scope").textContent = sel.customer ? "every panel shows " + customerName(sel.customer) + " only" : "";
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
  readFragment();
  showSelection();
  checkHealth();
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    showApp();
  });
  $("refresh").addEventListener("click", () => (token() ? refresh() : showLogin()));
  $("forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(); });
  $("customer").addEventListener("change", (e) => select({ customer: e.target.value }));
  $("window").addEventListener("change", (e) => select({ window: e.target.value }));
  $("status").addEventListener("change", (e) => select({ status: e.target.value }));
  if (token()) showApp(); else showLogin();
  setInterval(() => { if (token() && !$("app").hidden && !document.hidden) refresh(); }, 60000);
});
