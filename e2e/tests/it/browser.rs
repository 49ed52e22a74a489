//! The dashboard page in a real browser: Debian's Chromium, driven through chromedriver
//! (WebDriver, with `fantoccini`), against the real server holding replayed fixture sessions
//! and a few hand-made runs, errors and heartbeats.
//!
//! What is checked: every panel renders with no script error (the browser's console log and
//! the page's own `window.brainErrors`); every figure on the page equals the API's answer to
//! the same query (the page marks each figure with the read it came from: `data-query` on the
//! panel, `data-list`/`data-index` on the row, `data-field`/`data-value` on the cell; see
//! `dashboard/app.js`); the customer picker and the window switch narrow every panel; the
//! run status filter; an empty database shows labelled sample data in every panel and never
//! in a table with real rows; a 390 px wide phone viewport has no sideways page scroll.
//! Screenshots go to `target/browser-screenshots/`.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the tests say `SKIPPED` on stderr
//! and pass, unless `BRAIN_REQUIRE_TOOLS=1` (CI), where they fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, TimeDelta, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Map, Value, json};

use crate::helpers::{Backend, Emitter, Server, block_on, free_port};
use crate::sessions::{fire_direct, replay_session};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The admin token `helpers::Server` gives its servers.
const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

/// Whether Chromium and chromedriver are installed. When they are not: `SKIPPED` on stderr
/// (and `false`), or a panic under `BRAIN_REQUIRE_TOOLS=1`.
#[expect(
    clippy::print_stderr,
    reason = "a skipped test must say so where cargo test shows it"
)]
fn browser_available() -> bool {
    if Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file() {
        return true;
    }
    let required = std::env::var_os("BRAIN_REQUIRE_TOOLS").is_some_and(|v| v == "1");
    assert!(
        !required,
        "chromium/chromedriver are required (BRAIN_REQUIRE_TOOLS=1) but not installed \
         ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver"
    );
    eprintln!(
        "SKIPPED: chromium/chromedriver not installed ({CHROMIUM}, {CHROMEDRIVER}); the dashboard \
         browser tests did NOT run; set BRAIN_REQUIRE_TOOLS=1 to fail instead"
    );
    false
}

/// `target/browser-screenshots/` (the test binary lives in `target/<profile>/deps/`).
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test binary>")
        .to_path_buf();
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/browser-screenshots");
    dir
}

/// RFC 3339 UTC with milliseconds, `ago` before now.
fn ts_ago(ago: TimeDelta) -> String {
    (Utc::now() - ago).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn mins(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

// ---------------------------------------------------------------------------------------------
// The data: fixture sessions replayed through the real emitter, and hand-made events.

/// One envelope (SPEC §2).
fn envelope(ts: &str, event_type: &str, agent: &str, run: Option<&str>, payload: Value) -> Value {
    let mut e = json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "ts": ts,
        "event_type": event_type,
        "agent_id": agent,
        "payload": payload,
    });
    if let Some(run) = run {
        e["run_id"] = json!(run);
    }
    e
}

/// Runs of every status, errors, MCP tool calls, heartbeats (one box stale) and a week of
/// cost for `customer`'s agent `agent` (`salt` varies the amounts between customers).
fn hand_made(agent: &str, salt: u64) -> Vec<Value> {
    let now = ts_ago(TimeDelta::zero());
    let mut v = Vec::new();
    let runs = [
        ("success", 0, 95),
        ("failed", 1, 70),
        ("timeout", 124, 45),
        ("success", 0, 20),
    ];
    for (i, (status, exit, ago)) in runs.iter().enumerate() {
        let run = format!("run_{agent}_{i}");
        let start = ts_ago(mins(*ago));
        let end = ts_ago(mins(ago - 10));
        v.push(envelope(
            &start,
            "session.start",
            agent,
            Some(&run),
            json!({"paperclip_run_id": run, "agent_kind": "employee", "source": "schedule"}),
        ));
        v.push(envelope(
            &end,
            "tool_call",
            agent,
            Some(&run),
            json!({"tool_name": "mcp__github__create_issue", "ok": i != 1, "duration_ms": 800 + 100 * i as u64 + salt,
                   "tool_source": "mcp", "mcp_server": "github"}),
        ));
        v.push(envelope(
            &end,
            "llm_usage",
            agent,
            Some(&run),
            json!({"model": "claude-sonnet-4-5", "input_tokens": 1200 + salt, "output_tokens": 340,
                   "cache_read_tokens": 42_000, "cache_write_tokens": 3100,
                   "cost_cents": 12.5 + salt as f64, "total_turns": 3}),
        ));
        v.push(envelope(
            &end,
            "session.end",
            agent,
            Some(&run),
            json!({"status": status, "exit_code": exit, "duration_ms": 600_000}),
        ));
    }
    // Enough finished runs (over both customers) for a second page of runs.
    for i in 0..12 {
        let run = format!("run_{agent}_batch_{i}");
        for (event_type, ago, payload) in [
            (
                "session.start",
                150 + 20 * i,
                json!({"paperclip_run_id": run}),
            ),
            (
                "session.end",
                140 + 20 * i,
                json!({"status": "success", "exit_code": 0, "duration_ms": 600_000}),
            ),
        ] {
            v.push(envelope(
                &ts_ago(mins(ago)),
                event_type,
                agent,
                Some(&run),
                payload,
            ));
        }
    }
    // A run still going.
    let run = format!("run_{agent}_live");
    v.push(envelope(
        &ts_ago(mins(3)),
        "session.start",
        agent,
        Some(&run),
        json!({"paperclip_run_id": run}),
    ));
    v.push(envelope(
        &ts_ago(mins(2)),
        "tool_call",
        agent,
        Some(&run),
        json!({"tool_name": "mcp__linear__search", "ok": true, "duration_ms": 120 + salt,
               "tool_source": "mcp", "mcp_server": "linear"}),
    ));
    for (kind, stack, msg, n) in [
        (
            "hook_failed",
            Some("3f9a1c07"),
            "brain-emit: spool is locked <b>by</b> another writer",
            3,
        ),
        ("wrapper_timeout", None, "run exceeded its 3600 s budget", 1),
    ] {
        for k in 0..n {
            let mut p = json!({"kind": kind, "message_120c": msg});
            if let Some(s) = stack {
                p["stack_hash"] = json!(s);
            }
            v.push(envelope(&ts_ago(mins(30 + 5 * k)), "error", agent, None, p));
        }
    }
    // A week of cost, two models, one bucket a day.
    for day in 1..7_i64 {
        for (model, cents) in [
            ("claude-sonnet-4-5", 40.0 + (day * 7 % 5) as f64 * 9.0),
            ("claude-opus-4-1", 90.0 + (day * 3 % 4) as f64 * 25.0),
        ] {
            v.push(envelope(
                &ts_ago(mins(day * 24 * 60 - 30)),
                "llm_usage",
                agent,
                None,
                json!({"model": model, "input_tokens": 20_000 * day, "output_tokens": 3000,
                       "cache_read_tokens": 400_000, "cache_write_tokens": 12_000,
                       "cost_cents": cents + salt as f64, "total_turns": 9}),
            ));
        }
    }
    // This agent's box beats now; a second box of the customer last beat 40 min ago (stale).
    v.push(envelope(
        &now,
        "heartbeat",
        agent,
        None,
        json!({"paperclip_uptime_s": 86_400 + salt, "agent_runtime_count": 2, "host_load_1m": 1.25,
               "agent_versions": {agent: "2.1.3"}, "spool_depth": 0, "spool_dropped": 0}),
    ));
    let old_box = format!("{agent}_old_box");
    v.push(envelope(
        &ts_ago(mins(40)),
        "heartbeat",
        &old_box,
        None,
        json!({"paperclip_uptime_s": null, "agent_runtime_count": null, "host_load_1m": 3.5,
               "agent_versions": {old_box.clone(): "2.0.9"}, "spool_depth": 5230 + salt, "spool_dropped": 12}),
    ));
    v
}

/// A customer name that would run script if the page parsed API strings as HTML.
const HOSTILE_NAME: &str = "<img src=x onerror=\"window.pwned=1\">Evil & <b>Co</b>";

/// Posts `events` with `key`; every one must be accepted.
fn post_events(server: &Server, key: &str, events: &[Value]) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/events", server.url()))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(events).expect("events JSON"))
        .send()
        .expect("POST /v1/events");
    assert!(
        resp.status().is_success(),
        "POST /v1/events: {}",
        resp.status()
    );
    let body: Value =
        serde_json::from_slice(&resp.bytes().expect("ingest answer")).expect("ingest answer JSON");
    assert_eq!(
        body["rejected"],
        json!(0),
        "hand-made events rejected: {body}"
    );
}

/// Posts one event the server refuses (an unknown type): a dead letter for the ingestion
/// health panel.
fn post_refused(server: &Server, key: &str, agent: &str) {
    let bad = envelope(
        &ts_ago(mins(1)),
        "telemetry.unknown",
        agent,
        None,
        json!({}),
    );
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/events", server.url()))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!([bad])).expect("JSON"))
        .send()
        .expect("POST /v1/events");
    assert!(
        resp.status().is_success(),
        "a batch with a refused event is still a 200: {}",
        resp.status()
    );
}

/// A server with two customers: `acme` (three fixture sessions replayed through the real
/// emitter, plus hand-made events) and `globex` (one session, plus hand-made events).
/// `None` when `backend` is Postgres and Postgres is not here (said by `TestDb::create`).
fn server_with_data(backend: Backend) -> Option<Server> {
    let mut server = Server::new(backend)?;
    server.start();
    let live = tempfile::tempdir().expect("live transcripts");
    for (customer, agent, sessions, salt) in [
        (
            "acme",
            "agent_acme_employee_42",
            &["tool_heavy", "subagent", "short"][..],
            0,
        ),
        ("globex", "agent_globex_ops_7", &["short"][..], 7),
    ] {
        let key = server.mint_key(customer);
        let emitter = Emitter::configured(agent, &server.url(), &key);
        for session in sessions {
            let fire = |p: &Value| fire_direct(&emitter, p);
            replay_session(&fire, &live.path().join(customer), session);
        }
        let out = emitter.flush_wait();
        assert_eq!(
            out.status.code(),
            Some(0),
            "flush --wait: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        post_events(&server, &key, &hand_made(agent, salt));
        if customer == "acme" {
            post_refused(&server, &key, agent);
        }
    }
    // A customer whose name is markup: the page must show it as text.
    let out = server
        .command(&["mint-key", "evil", HOSTILE_NAME])
        .output()
        .expect("run brain-server mint-key");
    assert!(
        out.status.success(),
        "mint-key evil: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(server)
}

// ---------------------------------------------------------------------------------------------
// The browser.

/// chromedriver on a port of its own, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::blocking::Client::new();
        let ready = crate::helpers::wait_until(Duration::from_secs(20), || {
            client
                .get(format!("{url}/status"))
                .send()
                .ok()
                .and_then(|r| r.bytes().ok())
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|s| s["value"]["ready"] == json!(true))
        });
        assert!(ready, "chromedriver did not become ready on {url}");
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session on `driver`, headless.
struct Browser {
    client: Client,
    driver_url: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    async fn open(driver: &Driver) -> Browser {
        let mut caps = Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,800", "--hide-scrollbars", "--lang=en-US",
                         "--no-first-run", "--disable-extensions"],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a chromium session from chromedriver");
        let session = client
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        Browser {
            client,
            driver_url: driver.url.clone(),
            session,
            http: reqwest::Client::new(),
        }
    }

    /// A chromedriver command outside WebDriver proper (the Chrome DevTools and the log).
    async fn vendor(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.driver_url, self.session);
        let resp = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("chromedriver answers");
        let status = resp.status();
        let v: Value = serde_json::from_slice(&resp.bytes().await.expect("chromedriver answer"))
            .expect("chromedriver JSON");
        assert!(status.is_success(), "{url}: {status} {v}");
        v["value"].clone()
    }

    /// The viewport: `width` × `height` CSS pixels, as a phone when `mobile`.
    async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.vendor(
            "goog/cdp/execute",
            json!({"cmd": "Emulation.setDeviceMetricsOverride",
                   "params": {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}}),
        )
        .await;
    }

    /// The console messages since the last call, as `level: message`.
    async fn console(&self) -> Vec<String> {
        let log = self.vendor("se/log", json!({"type": "browser"})).await;
        log.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["level"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until the page has finished loading the selection `key` (its `data-loaded`).
    async fn wait_loaded(&self, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self
                .js("return document.body.dataset.loaded || null;")
                .await;
            if v.as_str() == Some(key) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not finish loading {key:?} (at {v})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves the viewport, and the whole page (`name`-full.png), under target/browser-screenshots.
    async fn screenshots(&self, name: &str, width: u32, height: u32, mobile: bool) {
        let dir = screenshot_dir();
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("save screenshot");
        let full = self
            .js("return document.documentElement.scrollHeight;")
            .await
            .as_u64()
            .expect("scrollHeight");
        self.viewport(width, u32::try_from(full).expect("height fits"), mobile)
            .await;
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{name}-full.png")), png).expect("save screenshot");
        self.viewport(width, height, mobile).await;
    }

    /// Clicks the element `css` selects (WebDriver scrolls it into view; it must be visible).
    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Types `token` into the token form and submits it.
    async fn login(&self, token: &str) {
        let input = self
            .client
            .wait()
            .for_element(Locator::Id("token"))
            .await
            .expect("the token field");
        input.send_keys(token).await.expect("type the token");
        self.client
            .find(Locator::Css("#login-form button[type=submit]"))
            .await
            .expect("the submit button")
            .click()
            .await
            .expect("submit");
        // The form's answer: the dashboard, or the form again with a message.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let state = self
                .js("return [document.getElementById('login').hidden, !document.getElementById('login-error').hidden, document.body.dataset.loaded || ''];")
                .await;
            if state[1] == json!(true) || state[2] != json!("") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no answer to the token form: {state}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Picks `value` in the `<select id=…>` as a person would (a click on the option). Tried
    /// three times: the page's minutely refresh may replace an option between find and click.
    async fn choose(&self, select: &str, value: &str) {
        let mut last = None;
        for _ in 0..3 {
            let picked = async {
                self.client
                    .find(Locator::Id(select))
                    .await?
                    .select_by_value(value)
                    .await
            };
            match picked.await {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("#{select} = {value}: {last:?}");
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// What the page shows, and the API's answers.

/// Every panel, its query and figures, as the page rendered them.
const COLLECT: &str = r#"
return [...document.querySelectorAll('[data-panel]')].map((p) => {
  const tag = p.querySelector('.sample-tag');
  return {
    panel: p.dataset.panel,
    query: p.dataset.query || null,
    sample: p.dataset.sample || null,
    tag_visible: !!tag && !tag.hidden && tag.getClientRects().length > 0 && tag.textContent.trim().toLowerCase() === 'sample data',
    figures: [...p.querySelectorAll('[data-field]')].map((el) => {
      const list = el.dataset.agg ? el.dataset.list : (el.closest('[data-list]') || { dataset: {} }).dataset.list;
      const row = el.closest('[data-index]');
      return {
        field: el.dataset.field, value: el.dataset.value, agg: el.dataset.agg || null,
        list: list || null, index: row ? Number(row.dataset.index) : null,
        text: el.textContent,
      };
    }),
    tables: [...p.querySelectorAll('table')].map((t) => ({
      real: t.querySelectorAll('tr[data-index]').length,
      sample: t.querySelectorAll('tr.sample').length,
    })),
    empty_lists: (p.dataset.emptyWhen || '').split(',').filter((s) => s),
    filtered: p.dataset.filtered === 'true',
    chart: !!p.querySelector('.uplot canvas'),
    chart_total: p.querySelector('.chart') ? Number(p.querySelector('.chart').dataset.total) : null,
    text: p.innerText.length,
  };
});
"#;

/// `GET path` as the page asked it, with the admin bearer.
async fn api(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let resp = http
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    serde_json::from_slice(&resp.bytes().await.expect("dashboard answer")).expect("dashboard JSON")
}

/// Whether the page's figure equals the API's value (numbers as the same f64; a sum the page
/// computed to within 1e-9 relative, the additions' order may differ).
fn same(page: &Value, api: &Value, summed: bool) -> bool {
    match (page.as_f64(), api.as_f64()) {
        (Some(p), Some(a)) if summed => (p - a).abs() <= 1e-9 * a.abs().max(1.0),
        (Some(p), Some(a)) => p == a,
        _ => page == api,
    }
}

/// `Err(message)` unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Every figure of every panel equals the API's answer to the panel's query; sample panels
/// are exactly those whose read is empty (a filtered read never shows samples), are labelled,
/// and no table mixes sample and real rows; the cost chart's bars add up to the points. The
/// panels as collected.
async fn page_vs_api(b: &Browser, base: &str, ctx: &str) -> Result<Vec<Value>, String> {
    let panels = b.js(COLLECT).await;
    let panels = panels.as_array().expect("panels").clone();
    ensure!(panels.len() >= 9, "{ctx}: {} panels", panels.len());
    for p in &panels {
        let name = p["panel"].as_str().expect("panel name");
        let Some(query) = p["query"].as_str() else {
            return Err(format!(
                "{ctx}: panel {name} has no data-query (not rendered)"
            ));
        };
        ensure!(
            query.starts_with("/v1/dashboard/"),
            "{ctx}: {name} query {query}"
        );
        let resp = api(&b.http, base, query).await;
        ensure!(
            p["sample"] == json!("true") || p["sample"] == json!("false"),
            "{ctx}: {name} data-sample {}",
            p["sample"]
        );
        let sample = p["sample"] == json!("true");
        ensure!(
            p["tag_visible"].as_bool() == Some(sample),
            "{ctx}: {name}: the 'sample data' label must show exactly when the panel is sample \
             (sample {sample}, label shown {})",
            p["tag_visible"]
        );
        for t in p["tables"].as_array().expect("tables") {
            ensure!(
                t["real"] == json!(0) || t["sample"] == json!(0),
                "{ctx}: {name}: a table mixes real and sample rows: {t}"
            );
        }
        // The page says which lists being empty made it show samples.
        let lists: Vec<&str> = p["empty_lists"]
            .as_array()
            .expect("empty_lists")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        ensure!(!lists.is_empty(), "{ctx}: {name} has no data-empty-when");
        let api_empty = lists.iter().all(|l| match resp.pointer(l) {
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Null) | None => true,
            Some(Value::Number(n)) => n.as_f64() == Some(0.0),
            Some(_) => false,
        });
        let filtered = p["filtered"] == json!(true);
        ensure!(
            sample == (api_empty && !filtered),
            "{ctx}: {name}: sample data (shown: {sample}) iff {lists:?} empty in {query} and no \
             filter (filtered: {filtered}): {resp}"
        );
        let figures = p["figures"].as_array().expect("figures");
        if sample {
            ensure!(
                figures.is_empty(),
                "{ctx}: {name}: sample panel has API figures"
            );
            continue;
        }
        ensure!(
            !figures.is_empty() || api_empty,
            "{ctx}: {name}: no figures rendered"
        );
        for f in figures {
            let field = f["field"].as_str().expect("data-field");
            let shown: Value = serde_json::from_str(f["value"].as_str().expect("data-value"))
                .map_err(|e| format!("{ctx}: {name} {field}: data-value not JSON: {e}"))?;
            let (expected, summed) = match (f["agg"].as_str(), f["list"].as_str()) {
                (Some("sum"), Some(list)) => (json!(sum_of(&resp, list, field)), true),
                (Some(agg), _) => return Err(format!("{ctx}: {name}: unknown data-agg {agg}")),
                (None, Some(list)) => {
                    let Some(i) = f["index"].as_u64() else {
                        return Err(format!(
                            "{ctx}: {name} {field}: a list row without data-index"
                        ));
                    };
                    let Some(item) = resp
                        .pointer(list)
                        .and_then(|l| l.get(usize::try_from(i).expect("index")))
                    else {
                        return Err(format!("{ctx}: {name}: no {list}/{i} in {query}"));
                    };
                    (item.pointer(field).cloned().unwrap_or(Value::Null), false)
                }
                (None, None) => (resp.pointer(field).cloned().unwrap_or(Value::Null), false),
            };
            ensure!(
                same(&shown, &expected, summed),
                "{ctx}: {name}: {field} (list {}, row {}) shows {shown} ({:?}) but {query} says \
                 {expected}",
                f["list"],
                f["index"],
                f["text"]
            );
        }
        for f in figures {
            let (field, text) = (
                f["field"].as_str().expect("field"),
                f["text"].as_str().expect("text"),
            );
            let value: Value =
                serde_json::from_str(f["value"].as_str().expect("value")).expect("JSON");
            ensure!(
                shown_as(field, &value, text),
                "{ctx}: {name}: {field} = {value} is shown as {text:?}"
            );
        }
        if name == "cost" {
            let drawn = &p["chart_total"];
            let points = json!(sum_of(&resp, "/points", "/cost_cents"));
            ensure!(
                same(drawn, &points, true),
                "{ctx}: the cost chart's bars add up to {drawn}, the points to {points}"
            );
        }
    }
    Ok(panels)
}

/// Whether `text` is how the page should show `value`: money (`…_cents`) as dollars with two
/// decimals and thousands separators, a count as its digits with separators. Other figures
/// (durations, rates, token counts in k/M, times) are not checked here.
fn shown_as(field: &str, value: &Value, text: &str) -> bool {
    let with_commas = |n: u64| {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    if field.ends_with("_cents") {
        let Some(cents) = value.as_f64() else {
            return text == "—";
        };
        // Either rounding of a half cent is fine (float sums land on either side of it).
        [cents - 1e-6, cents + 1e-6].iter().any(|c| {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a rounded, non-negative number of cents well within u64"
            )]
            let whole = c.round().max(0.0) as u64;
            text == format!("${}.{:02}", with_commas(whole / 100), whole % 100)
        })
    } else if let Some(n) = value.as_u64() {
        let digits = text.trim_start_matches(['/', ' ']);
        let is_count = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == ',');
        !is_count || digits == with_commas(n)
    } else {
        true
    }
}

/// The sum of `field` over the elements of `list` in `resp`.
fn sum_of(resp: &Value, list: &str, field: &str) -> f64 {
    resp.pointer(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.pointer(field).and_then(Value::as_f64))
        .sum()
}

/// [`page_vs_api`], asserted. One retry after a reload: a window rounds to the hour, so the
/// page and the test may ask on either side of an hour's turn; a real mismatch fails twice.
async fn assert_page_matches_api(b: &Browser, base: &str, ctx: &str, key: &str) -> Vec<Value> {
    match page_vs_api(b, base, ctx).await {
        Ok(panels) => panels,
        Err(first) => {
            b.js("document.body.dataset.loaded = ''; document.getElementById('refresh').click(); return null;")
                .await;
            b.wait_loaded(key).await;
            page_vs_api(b, base, ctx)
                .await
                .unwrap_or_else(|second| panic!("{second}\n(first try: {first})"))
        }
    }
}

/// The panel named `name`.
fn panel<'a>(panels: &'a [Value], name: &str) -> &'a Value {
    panels
        .iter()
        .find(|p| p["panel"] == json!(name))
        .unwrap_or_else(|| panic!("no panel {name}"))
}

/// The raw value of the first figure `field` of panel `name`.
fn figure(panels: &[Value], name: &str, field: &str) -> Value {
    let f = panel(panels, name)["figures"]
        .as_array()
        .expect("figures")
        .iter()
        .find(|f| f["field"] == json!(field))
        .unwrap_or_else(|| panic!("panel {name} shows no {field}"));
    serde_json::from_str(f["value"].as_str().expect("value")).expect("JSON")
}

/// No script errors: the console (SEVERE entries) and the page's own record.
async fn assert_no_script_errors(b: &Browser, ctx: &str) {
    let severe: Vec<String> = b
        .console()
        .await
        .into_iter()
        .filter(|l| l.starts_with("SEVERE"))
        .collect();
    assert!(severe.is_empty(), "{ctx}: console errors: {severe:#?}");
    let errs = b.js("return window.brainErrors || null;").await;
    assert_eq!(errs, json!([]), "{ctx}: page errors");
    let banner = b
        .js("const e = document.getElementById('error'); return e.hidden ? '' : e.textContent;")
        .await;
    assert_eq!(banner, json!(""), "{ctx}: the page shows a read error");
}

/// The page is no wider than the viewport (no sideways scroll of the page itself).
async fn assert_no_overflow(b: &Browser, width: u64, ctx: &str) {
    let sw = b
        .js("return document.documentElement.scrollWidth;")
        .await
        .as_u64()
        .expect("scrollWidth");
    assert!(
        sw <= width,
        "{ctx}: the page is {sw} px wide in a {width} px viewport"
    );
}

/// The selection key the page sets in `data-loaded` once every panel is drawn.
fn loaded(customer: &str, window: &str, status: &str) -> String {
    format!("{customer}|{window}|{status}")
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Real data: every panel renders and equals the API, for all customers and for one picked
/// customer, for 24 h (hourly cost) and 7 days (daily cost), with the run status filter; at
/// 1280 × 800 and at 390 × 844.
fn dashboard_shows_the_apis_figures(backend: Backend) {
    if !browser_available() {
        return;
    }
    let Some(server) = server_with_data(backend) else {
        return;
    };
    // Screenshots from SQLite are named plainly, from Postgres with a prefix.
    let shot = |name: &str| match backend {
        Backend::Sqlite => name.to_owned(),
        Backend::Postgres => format!("postgres-{name}"),
    };
    let driver = Driver::start();
    let base = server.url();
    block_on(async {
        let b = Browser::open(&driver).await;
        b.viewport(1280, 800, false).await;
        b.client
            .goto(&format!("{base}/#token={ADMIN_TOKEN}"))
            .await
            .expect("open the page");
        b.wait_loaded(&loaded("", "24h", "")).await;
        assert_no_script_errors(&b, "all customers, 24 h").await;
        let all =
            assert_page_matches_api(&b, &base, "all customers, 24 h", &loaded("", "24h", "")).await;
        for p in &all {
            assert_eq!(
                p["sample"],
                json!("false"),
                "with data, panel {} shows samples",
                p["panel"]
            );
        }
        assert_eq!(
            panel(&all, "cost")["chart"],
            json!(true),
            "the cost chart is drawn"
        );
        assert_eq!(
            figure(&all, "health", "/dead_letters_last_24h"),
            json!(1),
            "the refused event is counted on the page"
        );
        // Strings from the API are text, never markup.
        let markup = b
            .js(r#"return {
                pwned: window.pwned === undefined ? null : window.pwned,
                elements: document.querySelectorAll('main img, main b, #customer img').length,
                option: [...document.querySelectorAll('#customer option')].map((o) => o.textContent).find((t) => t.includes('Evil')) || null,
                message: [...document.querySelectorAll('table.error-groups [data-field="/example_message"]')].map((e) => e.textContent).find((t) => t.includes('spool')) || null,
            };"#)
            .await;
        assert_eq!(markup["pwned"], json!(null), "a customer name ran script");
        assert_eq!(
            markup["elements"],
            json!(0),
            "API strings became elements: {markup}"
        );
        assert_eq!(
            markup["option"],
            json!(format!("{HOSTILE_NAME} (evil)")),
            "the picker shows the name as text"
        );
        assert_eq!(
            markup["message"],
            json!("brain-emit: spool is locked <b>by</b> another writer"),
            "the error example is shown as text"
        );
        // Failed and timed-out runs are marked.
        let marked = b
            .js(
                r#"return [...document.querySelectorAll('table.runs tr[data-index]')].map((tr) =>
                 [tr.querySelector('[data-field="/status"]').dataset.value, tr.className]);"#,
            )
            .await;
        let marked = marked.as_array().expect("runs");
        assert!(marked.len() >= 8, "runs of both customers: {marked:?}");
        for m in marked {
            let status = m[0].as_str().expect("status");
            let class = m[1].as_str().expect("class");
            match status {
                "\"failed\"" | "\"timeout\"" => {
                    assert!(class.contains("bad") || class.contains("warn"), "{m}")
                }
                _ => assert!(!class.contains("bad") && !class.contains("warn"), "{m}"),
            }
        }
        // Older runs: the next page by cursor, and back.
        b.click("[data-panel=sessions] button.more").await;
        b.wait_loaded(&loaded("", "24h", "")).await;
        let older = assert_page_matches_api(&b, &base, "older runs", &loaded("", "24h", "")).await;
        let q = panel(&older, "sessions")["query"].as_str().expect("query");
        assert!(q.contains("cursor="), "the older page reads by cursor: {q}");
        let first_of_older = figure(&older, "sessions", "/run_id");
        assert_ne!(
            first_of_older,
            figure(&all, "sessions", "/run_id"),
            "another page of runs"
        );
        b.click("[data-panel=sessions] button.newer").await;
        b.wait_loaded(&loaded("", "24h", "")).await;
        let newest =
            assert_page_matches_api(&b, &base, "newest runs", &loaded("", "24h", "")).await;
        let q = panel(&newest, "sessions")["query"].as_str().expect("query");
        assert!(!q.contains("cursor="), "back to the newest runs: {q}");
        // Stale boxes first.
        let stale = b
            .js(
                r#"return [...document.querySelectorAll('table.fleet tr[data-index]')].map((tr) =>
                 tr.querySelector('[data-field="/stale"]').dataset.value === 'true');"#,
            )
            .await;
        let stale: Vec<bool> = serde_json::from_value(stale).expect("stale flags");
        assert!(stale.contains(&true), "a stale box is shown: {stale:?}");
        assert!(
            stale.windows(2).all(|w| w[0] || !w[1]),
            "stale boxes first: {stale:?}"
        );
        b.screenshots(&shot("data-1280x800"), 1280, 800, false)
            .await;

        // One customer: every panel narrows to it.
        b.choose("customer", "globex").await;
        b.wait_loaded(&loaded("globex", "24h", "")).await;
        let one =
            assert_page_matches_api(&b, &base, "globex, 24 h", &loaded("globex", "24h", "")).await;
        for name in ["cost", "sessions", "errors", "tools", "fleet", "agents"] {
            let q = panel(&one, name)["query"].as_str().expect("query");
            assert!(q.contains("customer_id=globex"), "{name} reads {q}");
        }
        let cost_all = figure(&all, "overview", "/cost_cents");
        let cost_one = figure(&one, "overview", "/cost_cents");
        assert_ne!(
            cost_all, cost_one,
            "the headline cost changes with the customer"
        );
        let runs_one = b
            .js("return document.querySelectorAll('table.runs tr[data-index]').length;")
            .await;
        assert!(
            runs_one.as_u64() < Some(marked.len() as u64),
            "the runs narrow to the customer"
        );

        // A week, by day; then only failed runs.
        b.choose("window", "7d").await;
        b.wait_loaded(&loaded("globex", "7d", "")).await;
        let week =
            assert_page_matches_api(&b, &base, "globex, 7 days", &loaded("globex", "7d", "")).await;
        let q = panel(&week, "cost")["query"].as_str().expect("query");
        assert!(q.contains("bucket=day") && q.contains("window=7d"), "{q}");
        b.choose("status", "failed").await;
        b.wait_loaded(&loaded("globex", "7d", "failed")).await;
        assert_page_matches_api(
            &b,
            &base,
            "globex, 7 days, failed",
            &loaded("globex", "7d", "failed"),
        )
        .await;
        let statuses = b
            .js(r#"return [...document.querySelectorAll('table.runs [data-field="/status"]')].map((e) => e.dataset.value);"#)
            .await;
        assert_eq!(statuses, json!(["\"failed\""]), "only the failed run");
        b.screenshots(&shot("data-globex-7d-1280x800"), 1280, 800, false)
            .await;
        // The selection is in the address: a reload (or a bookmark) shows the same view.
        let hash = b.js("return location.hash;").await;
        assert_eq!(hash, json!("#customer=globex&window=7d&status=failed"));
        b.client.refresh().await.expect("reload");
        b.wait_loaded(&loaded("globex", "7d", "failed")).await;
        let picked = b
            .js("return ['customer', 'window', 'status'].map((id) => document.getElementById(id).value);")
            .await;
        assert_eq!(
            picked,
            json!(["globex", "7d", "failed"]),
            "the pickers after a reload"
        );
        assert_page_matches_api(
            &b,
            &base,
            "globex, 7 days, failed, reloaded",
            &loaded("globex", "7d", "failed"),
        )
        .await;

        // A customer's row in the customers table picks it too.
        b.choose("status", "").await;
        b.wait_loaded(&loaded("globex", "7d", "")).await;
        let row = b
            .js(
                r#"return [...document.querySelectorAll('table.customers tr[data-index]')]
                 .find((tr) => tr.textContent.includes('acme Inc')).dataset.index;"#,
            )
            .await;
        let row = row.as_str().expect("acme's row");
        b.click(&format!("table.customers tr[data-index=\"{row}\"]"))
            .await;
        b.wait_loaded(&loaded("acme", "7d", "")).await;
        let acme =
            assert_page_matches_api(&b, &base, "acme by its row", &loaded("acme", "7d", "")).await;
        let q = panel(&acme, "fleet")["query"].as_str().expect("query");
        assert!(
            q.contains("customer_id=acme"),
            "the row narrowed the fleet: {q}"
        );

        // Back to everyone, on a phone.
        b.choose("customer", "").await;
        b.choose("window", "24h").await;
        b.wait_loaded(&loaded("", "24h", "")).await;
        b.viewport(390, 844, true).await;
        b.client.refresh().await.expect("reload");
        b.wait_loaded(&loaded("", "24h", "")).await;
        assert_page_matches_api(&b, &base, "all customers, phone", &loaded("", "24h", "")).await;
        assert_no_overflow(&b, 390, "with data, 390 px").await;
        b.screenshots(&shot("data-390x844"), 390, 844, true).await;
        assert_no_script_errors(&b, "after every switch").await;
        b.close().await;
    });
}

#[test]
fn dashboard_shows_the_apis_figures_on_sqlite() {
    dashboard_shows_the_apis_figures(Backend::Sqlite);
}

#[test]
fn dashboard_shows_the_apis_figures_on_postgres() {
    dashboard_shows_the_apis_figures(Backend::Postgres);
}

/// An empty database: every panel shows labelled sample data, no table mixes it with real
/// rows, no script error; at 1280 × 800 and at 390 × 844 (no sideways scroll).
#[test]
fn empty_database_shows_labelled_samples() {
    if !browser_available() {
        return;
    }
    let mut server = Server::new(Backend::Sqlite).expect("a SQLite server");
    server.start();
    let driver = Driver::start();
    let base = server.url();
    block_on(async {
        let b = Browser::open(&driver).await;
        b.viewport(1280, 800, false).await;
        // No token yet: the page asks for it; a wrong one is refused, the right one opens it.
        b.client
            .goto(&format!("{base}/"))
            .await
            .expect("open the page");
        let shown = "return [document.getElementById('login').hidden, document.getElementById('app').hidden];";
        assert_eq!(
            b.js(shown).await,
            json!([false, true]),
            "the token form first"
        );
        b.login("not-the-token").await;
        let refused = b
            .js("const e = document.getElementById('login-error'); return e.hidden ? null : e.textContent;")
            .await;
        assert!(
            refused.as_str().is_some_and(|t| t.contains("refused")),
            "a wrong token is refused: {refused}"
        );
        assert_eq!(b.js(shown).await, json!([false, true]), "and asked again");
        b.login(ADMIN_TOKEN).await;
        b.wait_loaded(&loaded("", "24h", "")).await;
        assert_eq!(b.js(shown).await, json!([true, false]), "the dashboard");
        // A 401 in the console is the wrong token's answer, not a script error.
        b.console().await;
        b.client.refresh().await.expect("reload");
        b.wait_loaded(&loaded("", "24h", "")).await;
        assert_no_script_errors(&b, "empty").await;
        let panels = assert_page_matches_api(&b, &base, "empty", &loaded("", "24h", "")).await;
        for p in &panels {
            assert_eq!(
                p["sample"],
                json!("true"),
                "empty database: panel {} shows no sample",
                p["panel"]
            );
            assert!(
                p["text"].as_u64() > Some(40),
                "panel {} is blank: {p}",
                p["panel"]
            );
        }
        assert_eq!(panel(&panels, "cost")["chart"], json!(true), "sample chart");
        b.screenshots("empty-1280x800", 1280, 800, false).await;
        b.viewport(390, 844, true).await;
        b.client.refresh().await.expect("reload");
        b.wait_loaded(&loaded("", "24h", "")).await;
        assert_no_overflow(&b, 390, "empty, 390 px").await;
        b.screenshots("empty-390x844", 390, 844, true).await;
        assert_no_script_errors(&b, "empty, phone").await;
        b.close().await;
    });
}
