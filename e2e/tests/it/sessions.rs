//! Real Claude Code sessions end to end: the emitter driven by the recorded transcripts and
//! hook payloads as Claude Code would drive it, the server on SQLite and on Postgres, the store
//! checked against the transcripts and ccusage's figures; and a server killed mid-flush.
//!
//! The replay ([`replay_session`]) hands each hook's stdin JSON to a `fire` function: here
//! [`fire_direct`] runs the `brain-emit` subcommand for the event; `hook_protocol` runs the
//! commands the Claude Code settings file selects instead. [`assert_store_matches`] is the
//! check both use.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, Emitter, FIXTURES, Server, Stored};

/// The sessions this project carries, by the name ccusage reports them under.
pub(crate) const SESSIONS: [&str; 4] = [
    "short",
    "tool_heavy",
    "subagent",
    "ae4a77f8-aedd-4bc1-888f-c94edc91af04",
];

// ---------------------------------------------------------------------------------------------
// Replaying a transcript as Claude Code would.

/// What a transcript says happened, to compare the server's store with.
#[derive(Debug, Default)]
pub(crate) struct Expected {
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

/// Runs the `brain-emit` subcommand that handles `payload`'s `hook_event_name` on `emitter`,
/// checking the hook rules (exit 0, nothing on stdout).
pub(crate) fn fire_direct(emitter: &Emitter, payload: &Value) {
    let sub = match payload["hook_event_name"].as_str() {
        Some("PreToolUse") => "tool-start",
        Some("PostToolUse" | "PostToolUseFailure") => "tool-call",
        Some("Stop" | "SubagentStop" | "SessionEnd") => "llm-usage",
        other => panic!("no brain-emit subcommand for hook event {other:?}"),
    };
    emitter.hook_json(sub, payload);
}

/// Replays one transcript file: appends it line by line to `live` (the path Claude Code would
/// be writing), firing PreToolUse / PostToolUse(Failure) around each tool call and Stop (or
/// SubagentStop) at every turn end and at cut points where a line is only half written.
fn replay(
    fire: &dyn Fn(&Value),
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
        fire(&p);
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
                    fire(&p);
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
                    fire(&p);
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

/// Replays a whole session (main transcript, then each subagent) and ends it with SessionEnd,
/// twice. `fire` gets each hook's stdin JSON.
pub(crate) fn replay_session(fire: &dyn Fn(&Value), live_root: &Path, session: &str) -> Expected {
    let mut expected = Expected::default();
    let src_dir = Path::new(FIXTURES).join("transcripts");
    let main_live = live_root.join(format!("{session}.jsonl"));
    replay(
        fire,
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
                fire,
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
    fire(&end);
    // A second SessionEnd (e.g. a retried hook) must add nothing.
    end["reason"] = json!("logout");
    fire(&end);
    expected
}

// ---------------------------------------------------------------------------------------------
// ccusage's figures.

/// Per-model usage of one session from the golden ccusage output.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Usage {
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_write: u64,
    pub(crate) cost_cents: f64,
}

/// ccusage's per-model usage of each fixture session, by session name.
pub(crate) fn golden() -> BTreeMap<String, BTreeMap<String, Usage>> {
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

/// Checks the server's store against the replayed sessions: each session's tool calls (ids,
/// once each), its failed calls, its tokens and cost per model against ccusage's golden
/// figures; no event stored twice; no fragment of tool input or output anywhere.
pub(crate) fn assert_store_matches(stored: &Stored, expected: &BTreeMap<&str, Expected>) {
    let Stored {
        events,
        all_text: text,
    } = stored;
    let ids: BTreeSet<_> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), events.len(), "no event_id is stored twice");
    let golden = golden();
    for (session, exp) in expected {
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

// ---------------------------------------------------------------------------------------------
// The scenarios.

/// The acceptance scenario: replay every fixture session with the server down, check that a
/// flush fails and keeps everything, start the server, flush, and compare the store with the
/// transcripts and with ccusage.
fn sessions_end_to_end(backend: Backend) {
    let Some(mut server) = Server::new(backend) else {
        return;
    };
    let key = server.mint_key("acme");
    let emitter = Emitter::configured("agent_acme_employee_42", &server.url(), &key);
    let live = tempfile::tempdir().expect("live transcripts");

    let mut expected = BTreeMap::new();
    for session in SESSIONS {
        let fire = |p: &Value| fire_direct(&emitter, p);
        expected.insert(session, replay_session(&fire, live.path(), session));
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

    assert_store_matches(&server.stored(), &expected);
}

/// kill -9 of the server while a flush is under way, then a restart: nothing lost, nothing
/// stored twice.
fn kill9_mid_flush(backend: Backend) {
    let Some(mut server) = Server::new(backend) else {
        return;
    };
    let key = server.mint_key("globex");
    let emitter = Emitter::configured("agent_globex_1", &server.url(), &key);
    // Server down while the agent works: a few thousand events pile up in the spool.
    let total = 2_000usize;
    std::thread::scope(|s| {
        for t in 0..8 {
            let emitter = &emitter;
            s.spawn(move || {
                for i in (t..total).step_by(8) {
                    let out = emitter.run(
                        &["error", "--kind", "e2e", "--message", &format!("event {i}")],
                        b"",
                    );
                    assert_eq!(out.status.code(), Some(0));
                }
            });
        }
    });
    server.start();
    let mut flusher = emitter
        .command(&["flush", "--wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flush");
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
    let events = server.stored().events;
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
    sessions_end_to_end(Backend::Sqlite);
}

#[test]
fn real_sessions_end_to_end_on_postgres() {
    sessions_end_to_end(Backend::Postgres);
}

#[test]
fn kill9_mid_flush_on_sqlite() {
    kill9_mid_flush(Backend::Sqlite);
}

#[test]
fn kill9_mid_flush_on_postgres() {
    kill9_mid_flush(Backend::Postgres);
}
