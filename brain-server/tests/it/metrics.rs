//! `GET /metrics`: after real ingest over HTTP (accepted, duplicate, rejected by validation and
//! by `agent_forbidden`) and refused requests (404 with no route, 404 on a templated route,
//! 401), every series moves by exactly what was sent, labelled by route template (never the
//! raw path); a group write that fails counts one failed commit and no event; the text
//! parses; and `promtool check metrics` passes on a real scrape, as does
//! `promtool check rules` on `docs/prometheus-alerts.yml`. The sample Grafana dashboard and
//! the alert rules name only series the server exports.
//!
//! Each server has its own recorder (`brain-server/src/metrics.rs`), so values are this
//! server's alone; the tests still compare a scrape before and after, as an operator would.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use brain_server::Store;
use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, event, event_at, spawn_app, tool_call};

both!(
    ingest_and_http_series_move_by_what_was_sent,
    a_failed_commit_is_counted_and_counts_no_event,
);

/// One sample: name and labels.
type Series = (String, BTreeMap<String, String>);

/// A parsed scrape: every sample, and the families declared by `# HELP` / `# TYPE`.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<Series, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// The value of `name` with exactly `labels`, 0 when absent (a counter not yet touched).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Every label set of `name`.
    fn label_sets(&self, name: &str) -> Vec<&BTreeMap<String, String>> {
        self.samples
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, l)| l)
            .collect()
    }
}

/// Parses the Prometheus text format strictly enough for these tests: every line is a
/// `# HELP`, a `# TYPE`, or `name{k="v",…} value` with a float value; every sample belongs
/// to a declared family; no sample appears twice.
fn parse(text: &str) -> Scrape {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    let mut helps = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty(), "empty HELP: {line}");
            helps.insert(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap();
                let mut labels = BTreeMap::new();
                // Our label values hold no `",` or escapes.
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").unwrap();
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name, labels)
            }
        };
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad metric name in {line:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample without TYPE: {line}");
        assert!(helps.contains(family), "sample without HELP: {line}");
        assert!(
            samples.insert((name.to_owned(), labels), value).is_none(),
            "sample twice: {line}"
        );
    }
    Scrape { samples, types }
}

/// Scrapes the app's `/metrics`: the raw text and its parse.
async fn scrape(app: &TestApp) -> (String, Scrape) {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    let parsed = parse(&text);
    (text, parsed)
}

/// `after − before` of one series.
fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

async fn ingest_and_http_series_move_by_what_was_sent(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let acme = app.mint("acme").await;
    let globex = app.mint("globex").await;
    let (_, before) = scrape(&app).await;

    // A batch: two accepted tool calls, one accepted session.start, one unknown type, one
    // missing its payload.
    let first = tool_call("agent_a", "Bash", true, 5);
    let mut unknown = tool_call("agent_a", "Bash", true, 5);
    unknown["event_type"] = json!("made.up");
    let mut no_payload = tool_call("agent_a", "Bash", true, 5);
    no_payload.as_object_mut().unwrap().remove("payload");
    let batch = json!([
        first,
        tool_call("agent_a", "Read", true, 7),
        event(
            "session.start",
            "agent_a",
            Some("run_1"),
            json!({"paperclip_run_id": "run_1"})
        ),
        unknown,
        no_payload,
    ]);
    let (status, body) = app.ingest(&acme, &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["accepted"], &body["duplicate"], &body["rejected"]),
        (&json!(3), &json!(0), &json!(2)),
        "{body}"
    );
    let codes: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["error"]["code"].as_str())
        .collect();
    let (unknown_code, missing_code) = (codes[0], codes[1]);
    assert_eq!(unknown_code, "unknown_event_type");

    // The first event again: a duplicate.
    let (status, body) = app.ingest(&acme, &first).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["duplicate"], 1);
    // Another customer's events for acme's agent: agent_forbidden; its own agent's event, ten
    // minutes old, accepted (the last group's oldest event: the lag gauge).
    let own = event_at(
        "tool_call",
        "agent_g",
        Some("run_g"),
        json!({"tool_name": "Bash", "ok": true, "duration_ms": 1}),
        TimeDelta::minutes(10),
    );
    let (status, body) = app
        .ingest(
            &globex,
            &json!([tool_call("agent_a", "Bash", true, 1), own]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"][0]["error"]["code"], "agent_forbidden");
    assert_eq!(body["accepted"], 1);

    // Refusals: no route (404), a templated route with an unknown id (404), a bad key (401),
    // no admin token on a nested route (401).
    let raw_path = "/no/such/path-4d2c";
    let resp = app.client.get(app.url(raw_path)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = app
        .client
        .get(app.url("/admin/customers/nobody-77/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = app
        .post_events(
            "m8brain_test_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
            &tool_call("agent_a", "Bash", true, 1),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .client
        .get(app.url("/v1/dashboard/overview"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let (_, after) = scrape(&app).await;
    let events =
        |labels: &[(&str, &str)]| delta(&before, &after, "brain_ingest_events_total", labels);

    // Ingest events by type and result; the code label only on rejections.
    assert_eq!(
        events(&[("event_type", "tool_call"), ("result", "accepted")]),
        3.0
    );
    assert_eq!(
        events(&[("event_type", "session.start"), ("result", "accepted")]),
        1.0
    );
    assert_eq!(
        events(&[("event_type", "tool_call"), ("result", "duplicate")]),
        1.0
    );
    assert_eq!(
        events(&[
            ("code", unknown_code),
            ("event_type", "unknown"),
            ("result", "rejected")
        ]),
        1.0
    );
    assert_eq!(
        events(&[
            ("code", missing_code),
            ("event_type", "unknown"),
            ("result", "rejected")
        ]),
        1.0
    );
    assert_eq!(
        events(&[
            ("code", "agent_forbidden"),
            ("event_type", "tool_call"),
            ("result", "rejected")
        ]),
        1.0
    );
    for labels in after.label_sets("brain_ingest_events_total") {
        assert_eq!(
            labels.contains_key("code"),
            labels["result"] == "rejected",
            "{labels:?}"
        );
    }
    let total: f64 = after
        .label_sets("brain_ingest_events_total")
        .into_iter()
        .map(|l| {
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            after.get("brain_ingest_events_total", &l)
        })
        .sum();
    assert_eq!(total, 8.0, "every element of the three requests, once");

    // HTTP requests by route template and status; never the raw path.
    let http = |route: &str, status: &str| {
        delta(
            &before,
            &after,
            "brain_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    let routes = after.label_sets("brain_http_requests_total");
    assert_eq!(http("/v1/events", "200"), 3.0, "{routes:?}");
    assert_eq!(http("/v1/events", "401"), 1.0, "{routes:?}");
    assert_eq!(http("unmatched", "404"), 1.0, "{routes:?}");
    assert_eq!(
        http("/admin/customers/{customer_id}/keys", "404"),
        1.0,
        "{routes:?}"
    );
    assert_eq!(http("/v1/dashboard/overview", "401"), 1.0, "{routes:?}");
    // The first scrape, counted after its answer.
    assert_eq!(
        after.get(
            "brain_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        ),
        1.0
    );
    for (name, labels) in after.samples.keys() {
        for value in labels.values() {
            assert!(
                !value.contains("path-4d2c") && !value.contains("nobody-77"),
                "raw path in {name}{labels:?}"
            );
        }
    }

    // Latency histograms by route: buckets from 1 ms to 10 s, cumulative, count = requests.
    assert_eq!(
        after.types["brain_http_request_duration_seconds"],
        "histogram"
    );
    let bucket = |le: &str| {
        after.get(
            "brain_http_request_duration_seconds_bucket",
            &[("le", le), ("route", "/v1/events")],
        )
    };
    let count = after.get(
        "brain_http_request_duration_seconds_count",
        &[("route", "/v1/events")],
    );
    assert_eq!(count, 4.0);
    assert_eq!(bucket("+Inf"), count);
    assert!(bucket("0.001") <= bucket("0.01") && bucket("0.01") <= bucket("10"));
    assert_eq!(bucket("10"), count, "no ingest request took 10 s");
    assert!(
        after.get(
            "brain_http_request_duration_seconds_sum",
            &[("route", "/v1/events")]
        ) > 0.0
    );

    // The writer: group sizes (events per committed group), commits, no failed commit.
    let groups = delta(&before, &after, "brain_ingest_group_events_count", &[]);
    let commits = delta(&before, &after, "brain_ingest_commits_total", &[]);
    assert!(
        (1.0..=3.0).contains(&groups),
        "three requests in 1..=3 groups: {groups}"
    );
    assert_eq!(groups, commits);
    assert_eq!(
        delta(&before, &after, "brain_ingest_group_events_sum", &[]),
        8.0
    );
    assert_eq!(delta(&before, &after, "brain_ingest_items_total", &[]), 8.0);
    assert_eq!(
        delta(&before, &after, "brain_ingest_requests_total", &[]),
        3.0
    );
    assert_eq!(after.get("brain_ingest_commit_failures_total", &[]), 0.0);
    assert_eq!(after.get("brain_ingest_failed_groups_total", &[]), 0.0);
    assert_eq!(after.get("brain_ingest_queue_depth", &[]), 0.0);
    assert_eq!(after.get("brain_ingest_queue_capacity", &[]), 4096.0);
    assert_eq!(after.get("brain_ingest_in_flight_bytes", &[]), 0.0);
    // The scrape's own connection at least.
    assert!(after.get("brain_http_connections", &[]) >= 1.0);

    // Oldest-event lag of the last group: its oldest accepted event is ten minutes old.
    let lag = after.get("brain_ingest_oldest_event_lag_seconds", &[]);
    assert!((590.0..900.0).contains(&lag), "lag {lag}");

    // Dead letters: the three rejections, counted in the database.
    assert_eq!(before.get("brain_dead_letters", &[]), 0.0);
    assert_eq!(after.get("brain_dead_letters", &[]), 3.0);

    // The pool, rollups, build.
    let (size, idle, max) = (
        after.get("brain_db_pool_connections", &[]),
        after.get("brain_db_pool_idle_connections", &[]),
        after.get("brain_db_pool_max_connections", &[]),
    );
    assert!(
        size >= 1.0 && idle <= size && size <= max,
        "{size} {idle} {max}"
    );
    assert_eq!(after.get("brain_rollups_in_transaction", &[]), 1.0);
    assert_eq!(
        after.get(
            "brain_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    app.stop().await;
}

/// Makes the insert of a dead letter whose raw JSON holds `"poison"` fail inside the
/// ingest transaction (after the group's events were inserted).
async fn poison_dead_letters(store: &Store) {
    match store {
        Store::Postgres(pool) => sqlx::raw_sql(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.raw LIKE '%\"poison\"%' THEN \
                 RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER poison BEFORE INSERT ON dead_letters \
               FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .execute(pool)
        .await
        .map(drop)
        .unwrap(),
        Store::Sqlite(pool) => sqlx::raw_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON dead_letters \
               WHEN NEW.raw LIKE '%\"poison\"%' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .execute(pool)
        .await
        .map(drop)
        .unwrap(),
    }
}

/// A group write that fails (a trigger refuses its dead letter) counts one failed commit and
/// no commit, moves no `brain_ingest_events_total` series (nothing was stored), and its
/// 5xx answer is counted under the ingest route.
async fn a_failed_commit_is_counted_and_counts_no_event(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    poison_dead_letters(app.store()).await;
    let (_, before) = scrape(&app).await;
    assert_eq!(before.get("brain_ingest_commit_failures_total", &[]), 0.0);

    let mut poison = tool_call("agent_a", "Bash", true, 1);
    poison["event_type"] = json!("poison");
    let resp = app
        .post_events(
            &key,
            &json!([tool_call("agent_a", "Bash", true, 2), poison]),
        )
        .await;
    let status = resp.status();
    assert!(status.is_server_error(), "{status}");

    let (_, after) = scrape(&app).await;
    assert_eq!(
        delta(&before, &after, "brain_ingest_commit_failures_total", &[]),
        1.0
    );
    assert_eq!(
        delta(&before, &after, "brain_ingest_commits_total", &[]),
        0.0
    );
    for labels in after.label_sets("brain_ingest_events_total") {
        let l: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            delta(&before, &after, "brain_ingest_events_total", &l),
            0.0,
            "{labels:?}"
        );
    }
    assert_eq!(
        delta(
            &before,
            &after,
            "brain_http_requests_total",
            &[("route", "/v1/events"), ("status", status.as_str())]
        ),
        1.0
    );
    assert_eq!(after.get("brain_dead_letters", &[]), 0.0);
    app.stop().await;
}

/// The repository's `docs/`.
fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// `promtool` when installed; otherwise a loud `SKIPPED` (and `None`), or a panic under
/// `BRAIN_REQUIRE_TOOLS=1` (CI).
#[expect(
    clippy::print_stderr,
    reason = "a skipped check says so where cargo test shows it"
)]
fn promtool() -> Option<&'static str> {
    const PROMTOOL: &str = "promtool";
    let found = Command::new(PROMTOOL)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(PROMTOOL);
    }
    let required = std::env::var_os("BRAIN_REQUIRE_TOOLS").is_some_and(|v| v == "1");
    assert!(
        !required,
        "promtool is required (BRAIN_REQUIRE_TOOLS=1) but not installed (apt-get install prometheus)"
    );
    eprintln!(
        "SKIPPED: promtool not installed (apt-get install prometheus); `promtool check metrics` \
         and `promtool check rules` did NOT run; set BRAIN_REQUIRE_TOOLS=1 to fail instead"
    );
    None
}

/// Runs `promtool args…` with `stdin`; panics with its output unless it exits 0.
fn run_promtool(promtool: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(promtool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The `brain_…` series names a text mentions (histogram suffixes stripped).
fn series_named_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("brain_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

/// `promtool check metrics` on a real scrape (after ingest and a 404, so every family has
/// samples), `promtool check rules` on the alert rules; the dashboard and the rules name only
/// exported series.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promtool_checks_a_real_scrape_and_the_alert_rules() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let key = app.mint("acme").await;
    let mut bad = tool_call("agent_a", "Bash", true, 5);
    bad["event_type"] = json!("made.up");
    let (status, _) = app
        .ingest(&key, &json!([tool_call("agent_a", "Bash", true, 5), bad]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let _ = app.client.get(app.url("/nope")).send().await.unwrap();
    let (text, scrape) = scrape(&app).await;
    app.stop().await;

    let exported: BTreeSet<String> = scrape.types.keys().cloned().collect();
    let rules_path = docs_dir().join("prometheus-alerts.yml");
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    let dashboard = std::fs::read_to_string(docs_dir().join("grafana-dashboard.json")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).unwrap();
    assert!(!parsed["panels"].as_array().unwrap().is_empty());
    for (what, text) in [("alert rules", &rules), ("dashboard", &dashboard)] {
        let named = series_named_in(text);
        assert!(!named.is_empty(), "{what} name no series");
        let unknown: Vec<_> = named.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{what} name series not exported: {unknown:?}"
        );
    }

    let Some(promtool) = promtool() else {
        return;
    };
    let out = run_promtool(promtool, &["check", "metrics"], &text);
    // promtool prints lint findings (and still exits 0 for some): there must be none.
    assert!(out.trim().is_empty(), "promtool check metrics:\n{out}");
    let out = run_promtool(
        promtool,
        &["check", "rules", rules_path.to_str().unwrap()],
        "",
    );
    assert!(out.contains("SUCCESS"), "{out}");
}
