//! End to end on real Claude Code sessions: the real `brain-emit` binary driven by the
//! recorded transcripts and hook payloads as Claude Code would drive it, the real
//! `brain-server` binary on SQLite and on Postgres, checked against ccusage's figures.

#![expect(
    clippy::disallowed_methods,
    reason = "the test reads its own knobs (CARGO, BRAIN_TEST_POSTGRES_URL, BRAIN_REQUIRE_POSTGRES)"
)]
#![expect(
    clippy::print_stderr,
    reason = "a skipped Postgres test must say so loudly"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/claude-code");

/// The sessions this project carries, by the name ccusage reports them under.
const SESSIONS: [&str; 4] = [
    "short",
    "tool_heavy",
    "subagent",
    "ae4a77f8-aedd-4bc1-888f-c94edc91af04",
];

// ---------------------------------------------------------------------------------------------
// Binaries and processes.

fn emit_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brain-emit"))
}

/// The `brain-server` binary of the same build; built on demand when this package's tests
/// run alone.
fn server_bin() -> PathBuf {
    let path = emit_bin().with_file_name("brain-server");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "brain-server", "--bin", "brain-server"])
            .status()
            .expect("run cargo build -p brain-server");
        assert!(status.success(), "cargo build -p brain-server failed");
    }
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Where the server keeps its data: the embedded SQLite file or a fresh Postgres database.
enum Backend {
    Sqlite { data_dir: PathBuf },
    Postgres { url: String },
}

impl Backend {
    fn database_url(&self) -> String {
        match self {
            Backend::Sqlite { data_dir } => {
                format!("sqlite://{}", data_dir.join("brain.db").display())
            }
            Backend::Postgres { url } => url.clone(),
        }
    }
}

struct Server {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    database_url: String,
}

impl Server {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(server_bin());
        cmd.args(args)
            .env("BRAIN_DATA_DIR", &self.data_dir)
            .env("DATABASE_URL", &self.database_url)
            .env("BRAIN_ADMIN_TOKEN", "e2e-admin-token")
            .env_remove("BRAIN_LISTEN");
        cmd
    }

    fn mint_key(&self, customer: &str) -> String {
        let out = self
            .command(&["mint-key", customer, &format!("{customer} Inc")])
            .output()
            .expect("run brain-server mint-key");
        assert!(
            out.status.success(),
            "mint-key: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).expect("utf-8 key");
        key.trim().to_owned()
    }

    fn start(&mut self) {
        assert!(self.child.is_none());
        let listen = format!("127.0.0.1:{}", self.port);
        let child = self
            .command(&["serve", "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn brain-server");
        self.child = Some(child);
        let client = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = client
                .get(format!("{}/v1/healthz", self.url()))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("brain-server did not become healthy");
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL brain-server");
            child.wait().expect("reap brain-server");
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One customer box: an env file, a spool, and the emitter run as the hooks run it.
struct Box_ {
    dir: TempDir,
    agent_id: String,
}

impl Box_ {
    fn new(url: &str, key: &str, agent_id: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(
            dir.path().join("brain.env"),
            format!("BRAIN_URL={url}\nBRAIN_API_KEY={key}\n"),
        )
        .expect("write env file");
        Box_ {
            dir,
            agent_id: agent_id.to_owned(),
        }
    }

    fn emit(&self, args: &[&str], stdin: Option<&Value>) -> Output {
        let mut cmd = Command::new(emit_bin());
        cmd.args(args)
            .env("BRAIN_ENV_FILE", self.dir.path().join("brain.env"))
            .env("BRAIN_SPOOL", self.dir.path().join("spool.db"))
            .env("BRAIN_AGENT_ID", &self.agent_id)
            .env_remove("BRAIN_URL")
            .env_remove("BRAIN_API_KEY")
            .env_remove("BRAIN_RUN_ID")
            .env_remove("PAPERCLIP_RUN_ID")
            .env_remove("PAPERCLIP_AGENT_ID")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn brain-emit");
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(v) = stdin {
            serde_json::to_writer(&mut pipe, v).expect("write hook payload");
        }
        drop(pipe);
        child.wait_with_output().expect("wait brain-emit")
    }

    /// Runs a hook subcommand and checks the hook rules: exit 0, nothing on stdout.
    fn hook(&self, sub: &str, payload: &Value) {
        let out = self.emit(&[sub], Some(payload));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{sub}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{sub} printed on stdout");
    }

    fn flush_wait(&self) -> Output {
        self.emit(&["flush", "--wait"], None)
    }

    fn status(&self) -> Value {
        let out = self.emit(&["status", "--json"], None);
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }
}

// ---------------------------------------------------------------------------------------------
// Replaying a transcript as Claude Code would.

/// What a transcript says happened, to compare the server's store with.
#[derive(Debug, Default)]
struct Expected {
    tool_uses: BTreeSet<String>,
    failures: BTreeSet<String>,
    /// Distinctive fragments of tool inputs and outputs that must never reach the server.
    secrets: BTreeSet<String>,
}

fn collect_fragments(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            let s = s.trim();
            if s.chars().count() >= 24 {
                out.insert(s.chars().take(40).collect());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_fragments(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_fragments(x, out)),
        _ => {}
    }
}

fn blocks(line: &Value) -> &[Value] {
    line.pointer("/message/content")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Replays one transcript file: appends it line by line to `live` (the path Claude Code would
/// be writing), firing PreToolUse / PostToolUse(Failure) around each tool call and Stop (or
/// SubagentStop) at every turn end and at cut points where a line is only half written.
fn replay(
    emitter: &Box_,
    session: &str,
    source: &Path,
    live: &Path,
    main_transcript: &Path,
    subagent: Option<&str>,
    expected: &mut Expected,
) {
    let text = fs::read_to_string(source).expect("read transcript");
    fs::create_dir_all(live.parent().expect("parent")).expect("mkdir live");
    let mut out = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(live)
        .expect("open live transcript");
    let common = |event: &str| {
        let mut p = json!({
            "session_id": session,
            "transcript_path": main_transcript,
            "cwd": "/home/agent/work",
            "permission_mode": "bypassPermissions",
            "hook_event_name": event,
        });
        if let Some(agent) = subagent {
            p["agent_id"] = json!(agent);
            p["agent_type"] = json!("general-purpose");
        }
        p
    };
    let stop = |cut: bool| {
        let mut p = common(if subagent.is_some() {
            "SubagentStop"
        } else {
            "Stop"
        });
        p["stop_hook_active"] = json!(false);
        p["last_assistant_message"] = json!(if cut { "…" } else { "Done." });
        if subagent.is_some() {
            p["agent_transcript_path"] = json!(live);
        }
        emitter.hook("llm-usage", &p);
    };
    let mut pending: HashMap<String, (String, Value)> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).expect("fixture line is JSON");
        // Every 97th line is written in two halves with a Stop in between, as when the hook
        // fires while Claude Code is still writing.
        if n % 97 == 50 && line.len() > 10 {
            let (a, b) = line.split_at(line.len() / 2);
            out.write_all(a.as_bytes()).expect("write half");
            out.flush().expect("flush");
            stop(true);
            out.write_all(b.as_bytes()).expect("write half");
            out.write_all(b"\n").expect("newline");
        } else {
            writeln!(out, "{line}").expect("write line");
        }
        out.flush().expect("flush");
        for b in blocks(&v) {
            match b.get("type").and_then(Value::as_str) {
                Some("tool_use") => {
                    let id = b["id"].as_str().expect("tool_use id").to_owned();
                    let name = b["name"].as_str().expect("tool name").to_owned();
                    collect_fragments(&b["input"], &mut expected.secrets);
                    expected.tool_uses.insert(id.clone());
                    let mut p = common("PreToolUse");
                    p["tool_name"] = json!(name);
                    p["tool_input"] = b["input"].clone();
                    p["tool_use_id"] = json!(id);
                    emitter.hook("tool-start", &p);
                    pending.insert(id, (name, b["input"].clone()));
                }
                Some("tool_result") => {
                    let id = b["tool_use_id"].as_str().expect("tool_use_id").to_owned();
                    let Some((name, input)) = pending.remove(&id) else {
                        continue;
                    };
                    collect_fragments(&b["content"], &mut expected.secrets);
                    let failed = b["is_error"].as_bool().unwrap_or(false);
                    let mut p = common(if failed {
                        "PostToolUseFailure"
                    } else {
                        "PostToolUse"
                    });
                    p["tool_name"] = json!(name);
                    p["tool_input"] = input;
                    p["tool_use_id"] = json!(id);
                    if failed {
                        expected.failures.insert(id);
                        p["error"] = b["content"].clone();
                    } else {
                        p["tool_response"] = b["content"].clone();
                    }
                    emitter.hook("tool-call", &p);
                }
                _ => {}
            }
        }
        let turn_end = v.pointer("/message/stop_reason").and_then(Value::as_str)
            == Some("end_turn")
            || v.get("subtype").and_then(Value::as_str) == Some("turn_duration");
        if turn_end {
            stop(false);
        }
    }
    stop(false);
}

/// Replays a whole session (main transcript, then each subagent) and ends it with SessionEnd.
fn replay_session(emitter: &Box_, live_root: &Path, session: &str) -> Expected {
    let mut expected = Expected::default();
    let src_dir = Path::new(FIXTURES).join("transcripts");
    let main_live = live_root.join(format!("{session}.jsonl"));
    replay(
        emitter,
        session,
        &src_dir.join(format!("{session}.jsonl")),
        &main_live,
        &main_live,
        None,
        &mut expected,
    );
    let sub_src = src_dir.join(session).join("subagents");
    if sub_src.is_dir() {
        let mut files: Vec<_> = fs::read_dir(&sub_src)
            .expect("read subagents")
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().expect("file name").to_owned();
            let agent = file
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_prefix("agent-"))
                .expect("agent-<id>.jsonl")
                .to_owned();
            let live = live_root.join(session).join("subagents").join(name);
            replay(
                emitter,
                session,
                &file,
                &live,
                &main_live,
                Some(&agent),
                &mut expected,
            );
        }
    }
    let mut end = json!({
        "session_id": session,
        "transcript_path": main_live,
        "cwd": "/home/agent/work",
        "hook_event_name": "SessionEnd",
        "reason": "other",
    });
    emitter.hook("llm-usage", &end);
    // A second SessionEnd (e.g. a retried hook) must add nothing.
    end["reason"] = json!("logout");
    emitter.hook("llm-usage", &end);
    expected
}

// ---------------------------------------------------------------------------------------------
// Reading the server's store.

/// One stored event, as read back from the `events` table.
#[derive(Debug)]
struct StoredEvent {
    event_id: String,
    run_id: Option<String>,
    event_type: String,
    payload: Value,
}

/// `(event_id, run_id, event_type, payload JSON)` as selected from `events`.
type EventRow = (String, Option<String>, String, String);

fn stored_events(backend: &Backend) -> (Vec<StoredEvent>, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let url = backend.database_url();
        // The same two reads on either backend; only the SQL's casts differ.
        let (events_sql, dead_sql) = match backend {
            Backend::Sqlite { .. } => (
                "SELECT event_id, run_id, event_type, CAST(payload AS TEXT) FROM events",
                "SELECT CAST(raw AS TEXT) FROM dead_letters",
            ),
            Backend::Postgres { .. } => (
                "SELECT event_id::text, run_id, event_type, payload::text FROM events",
                "SELECT raw::text FROM dead_letters",
            ),
        };
        let (rows, dead): (Vec<EventRow>, Vec<(String,)>) = match backend {
            Backend::Sqlite { .. } => {
                let pool = sqlx::SqlitePool::connect(&url)
                    .await
                    .expect("open server SQLite");
                (
                    sqlx::query_as(events_sql)
                        .fetch_all(&pool)
                        .await
                        .expect("select events"),
                    sqlx::query_as(dead_sql)
                        .fetch_all(&pool)
                        .await
                        .expect("select dead letters"),
                )
            }
            Backend::Postgres { .. } => {
                let pool = sqlx::PgPool::connect(&url).await.expect("connect Postgres");
                (
                    sqlx::query_as(events_sql)
                        .fetch_all(&pool)
                        .await
                        .expect("select events"),
                    sqlx::query_as(dead_sql)
                        .fetch_all(&pool)
                        .await
                        .expect("select dead letters"),
                )
            }
        };
        let mut all_text = String::new();
        let events = rows
            .into_iter()
            .map(|(event_id, run_id, event_type, payload)| {
                all_text.push_str(&payload);
                all_text.push('\n');
                StoredEvent {
                    event_id,
                    run_id,
                    event_type,
                    payload: serde_json::from_str(&payload).expect("payload is JSON"),
                }
            })
            .collect();
        for (d,) in dead {
            all_text.push_str(&d);
        }
        (events, all_text)
    })
}

/// Per-model usage of one session from the golden ccusage output.
#[derive(Debug, Default, Clone, PartialEq)]
struct Usage {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    cost_cents: f64,
}

fn golden() -> BTreeMap<String, BTreeMap<String, Usage>> {
    let path = Path::new(FIXTURES).join("golden/ccusage-20.0.24-session-offline.json");
    let v: Value =
        serde_json::from_slice(&fs::read(path).expect("read golden")).expect("golden JSON");
    let mut out = BTreeMap::new();
    for s in v["session"].as_array().expect("sessions") {
        let mut models = BTreeMap::new();
        for m in s["modelBreakdowns"].as_array().expect("breakdowns") {
            let n = |k: &str| m[k].as_u64().expect("token count");
            models.insert(
                m["modelName"].as_str().expect("model").to_owned(),
                Usage {
                    input: n("inputTokens"),
                    output: n("outputTokens"),
                    cache_read: n("cacheReadTokens"),
                    cache_write: n("cacheCreationTokens"),
                    cost_cents: m["cost"].as_f64().expect("cost") * 100.0,
                },
            );
        }
        out.insert(s["period"].as_str().expect("period").to_owned(), models);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

fn postgres_backend() -> Option<Backend> {
    let base = std::env::var("BRAIN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("brain_e2e_{}", uuid::Uuid::new_v4().simple());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let created = rt.block_on(async {
        let pool = sqlx::PgPool::connect(&base).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await?;
        Ok::<_, sqlx::Error>(())
    });
    match created {
        Ok(()) => {
            let (prefix, _) = base.rsplit_once('/').expect("URL with a database");
            Some(Backend::Postgres {
                url: format!("{prefix}/{name}"),
            })
        }
        Err(e) if std::env::var("BRAIN_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("Postgres required (BRAIN_REQUIRE_POSTGRES=1) but unreachable at {base}: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED: Postgres unreachable at {base} ({e}); the Postgres end-to-end test did not run"
            );
            None
        }
    }
}

fn server_for(backend: &Backend, data_dir: &Path) -> Server {
    Server {
        child: None,
        port: free_port(),
        data_dir: data_dir.to_owned(),
        database_url: backend.database_url(),
    }
}

/// The acceptance scenario: replay every fixture session with the server down, check that a
/// flush fails and keeps everything, start the server, flush, and compare the store with the
/// transcripts and with ccusage.
fn sessions_end_to_end(backend: Backend) {
    let data = tempfile::tempdir().expect("data dir");
    let mut server = server_for(&backend, data.path());
    let key = server.mint_key("acme");
    let emitter = Box_::new(&server.url(), &key, "agent_acme_employee_42");
    let live = tempfile::tempdir().expect("live transcripts");

    let mut expected = BTreeMap::new();
    for session in SESSIONS {
        expected.insert(session, replay_session(&emitter, live.path(), session));
    }

    // Server down: everything stays spooled and `flush --wait` says so.
    let out = emitter.flush_wait();
    assert_eq!(
        out.status.code(),
        Some(1),
        "flush --wait with the server down must exit 1"
    );
    assert!(
        !out.stderr.is_empty(),
        "flush --wait must say why it failed"
    );
    let depth = emitter.status()["depth"].as_u64().expect("status depth");
    let tool_uses: usize = expected.values().map(|e| e.tool_uses.len()).sum();
    assert!(
        depth as usize >= tool_uses,
        "spool depth {depth} < {tool_uses} tool calls"
    );

    server.start();
    let out = emitter.flush_wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "flush --wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        emitter.status()["depth"].as_u64(),
        Some(0),
        "the spool is empty"
    );

    let (events, text) = stored_events(&backend);
    let ids: BTreeSet<_> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), events.len(), "no event_id is stored twice");
    let golden = golden();
    for (session, exp) in &expected {
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e.run_id.as_deref() == Some(session))
            .collect();
        let calls: BTreeSet<String> = mine
            .iter()
            .filter(|e| e.event_type == "tool_call")
            .map(|e| {
                e.payload["tool_use_id"]
                    .as_str()
                    .expect("tool_use_id")
                    .to_owned()
            })
            .collect();
        let call_rows = mine.iter().filter(|e| e.event_type == "tool_call").count();
        assert_eq!(
            call_rows,
            exp.tool_uses.len(),
            "{session}: tool_call events"
        );
        assert_eq!(calls, exp.tool_uses, "{session}: tool_use ids");
        let failed: BTreeSet<String> = mine
            .iter()
            .filter(|e| e.event_type == "tool_call" && e.payload["ok"] == json!(false))
            .map(|e| {
                e.payload["tool_use_id"]
                    .as_str()
                    .expect("tool_use_id")
                    .to_owned()
            })
            .collect();
        assert_eq!(failed, exp.failures, "{session}: failed tool calls");

        let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
        for e in mine.iter().filter(|e| e.event_type == "llm_usage") {
            let p = &e.payload;
            let u = usage
                .entry(p["model"].as_str().expect("model").to_owned())
                .or_default();
            let n = |k: &str| p[k].as_u64().unwrap_or(0);
            u.input += n("input_tokens");
            u.output += n("output_tokens");
            u.cache_read += n("cache_read_tokens");
            u.cache_write += n("cache_write_tokens");
            u.cost_cents += p["cost_cents"].as_f64().expect("cost_cents");
        }
        let want = &golden[*session];
        assert_eq!(
            usage.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{session}: models"
        );
        for (model, w) in want {
            let got = &usage[model];
            assert_eq!(
                (got.input, got.output, got.cache_read, got.cache_write),
                (w.input, w.output, w.cache_read, w.cache_write),
                "{session} {model}: tokens"
            );
            let rel = (got.cost_cents - w.cost_cents).abs() / w.cost_cents;
            assert!(
                rel <= 1e-4,
                "{session} {model}: cost {} ¢ vs ccusage {} ¢",
                got.cost_cents,
                w.cost_cents
            );
        }
    }
    for fragment in expected.values().flat_map(|e| &e.secrets) {
        assert!(
            !text.contains(fragment.as_str()),
            "tool content reached the server: {fragment:?}"
        );
    }
}

/// kill -9 of the server while a flush is under way, then a restart: nothing lost, nothing
/// stored twice.
fn kill9_mid_flush(backend: Backend) {
    let data = tempfile::tempdir().expect("data dir");
    let mut server = server_for(&backend, data.path());
    let key = server.mint_key("globex");
    let emitter = Box_::new(&server.url(), &key, "agent_globex_1");
    // Server down while the agent works: a few thousand events pile up in the spool.
    let total = 2_000usize;
    std::thread::scope(|s| {
        for t in 0..8 {
            let emitter = &emitter;
            s.spawn(move || {
                for i in (t..total).step_by(8) {
                    let out = emitter.emit(
                        &["error", "--kind", "e2e", "--message", &format!("event {i}")],
                        None,
                    );
                    assert_eq!(out.status.code(), Some(0));
                }
            });
        }
    });
    server.start();
    let mut flush = Command::new(emit_bin());
    flush
        .args(["flush", "--wait"])
        .env("BRAIN_ENV_FILE", emitter.dir.path().join("brain.env"))
        .env("BRAIN_SPOOL", emitter.dir.path().join("spool.db"))
        .env("BRAIN_AGENT_ID", &emitter.agent_id)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut flusher = flush.spawn().expect("spawn flush");
    // Kill the server once the first batches have landed but before the last one has.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let depth = emitter.status()["depth"].as_u64().unwrap_or(0) as usize;
        if depth < total || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    server.kill9();
    let _ = flusher.wait();
    server.start();
    let out = emitter.flush_wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "flush after restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (events, _) = stored_events(&backend);
    let errors: Vec<_> = events.iter().filter(|e| e.event_type == "error").collect();
    let ids: BTreeSet<_> = errors.iter().map(|e| &e.event_id).collect();
    assert_eq!(
        errors.len(),
        total,
        "every event stored exactly once; spool status: {}",
        emitter.status()
    );
    assert_eq!(ids.len(), total, "no event_id stored twice");
}

#[test]
fn real_sessions_end_to_end_on_sqlite() {
    let data = tempfile::tempdir().expect("data dir");
    sessions_end_to_end(Backend::Sqlite {
        data_dir: data.path().to_owned(),
    });
}

#[test]
fn real_sessions_end_to_end_on_postgres() {
    if let Some(backend) = postgres_backend() {
        sessions_end_to_end(backend);
    }
}

#[test]
fn kill9_mid_flush_on_sqlite() {
    let data = tempfile::tempdir().expect("data dir");
    kill9_mid_flush(Backend::Sqlite {
        data_dir: data.path().to_owned(),
    });
}

#[test]
fn kill9_mid_flush_on_postgres() {
    if let Some(backend) = postgres_backend() {
        kill9_mid_flush(backend);
    }
}
