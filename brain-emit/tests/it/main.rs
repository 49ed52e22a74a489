//! Integration tests: the real `brain-emit` binary in temp dirs, real SQLite spools, real
//! Claude Code hook payloads and transcripts, and small stand-in upstreams on loopback. Runs
//! against the real `brain-server` live in the `e2e` package.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod faults;
mod fuzz;
mod helpers;
mod net;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use brain_emit::spool::{Spool, SpoolOptions, WhenFull};
use chrono::Utc;
use helpers::{Sandbox, fixture, payloads, run_with_stdin};
use serde_json::{Value, json};
use shared_proto::{AgentId, Event, Heartbeat, Payload};

const HOOKS: [&[&str]; 6] = [
    &["session.start", "--paperclip-run-id", "run_1"],
    &[
        "session.end",
        "--status",
        "success",
        "--exit-code",
        "0",
        "--duration-ms",
        "5",
    ],
    &["tool-start"],
    &["tool-call"],
    &["llm-usage"],
    &["error", "--kind", "k", "--message", "m"],
];

fn post_tool_use() -> Value {
    payloads("post_tool_use.json").remove(0)
}

#[test]
fn hooks_exit_zero_and_stay_silent_on_garbage_stdin() {
    let sb = Sandbox::new();
    for args in HOOKS {
        for stdin in [&b"not json at all {"[..], b"", b"[1,2,3]", b"\xff\xfe\x00"] {
            sb.hook(args, stdin);
        }
    }
    // Stdin-driven hooks recorded why they queued nothing.
    let log = sb.hook_log();
    assert!(log.contains("tool-call"), "log: {log}");
    assert!(log.contains("llm-usage"), "log: {log}");
}

#[test]
fn hooks_exit_zero_and_stay_silent_with_an_unwritable_spool() {
    let sb = Sandbox::new();
    // A spool whose parent "directory" is a regular file: unwritable even for root.
    let blocker = sb.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let mut cmd_env = Sandbox::new();
    cmd_env.spool = blocker.join("spool.db");
    let payload = serde_json::to_vec(&post_tool_use()).unwrap();
    for args in HOOKS {
        let out = cmd_env.hook(args, &payload);
        // The problem is reported on stderr (the log beside the spool is unwritable too).
        assert!(
            !out.stderr.is_empty(),
            "{args:?} said nothing about the unwritable spool"
        );
    }
}

#[test]
fn hooks_exit_zero_without_any_configuration() {
    let sb = Sandbox::new();
    sb.write_env("");
    // Env file path that does not exist: no config at all.
    let mut sb2 = Sandbox::new();
    sb2.env_file = sb.dir.path().join("missing.env");
    let payload = serde_json::to_vec(&post_tool_use()).unwrap();
    for s in [&sb, &sb2] {
        for args in HOOKS {
            s.hook(args, &payload);
        }
    }
    // Without an agent id the host fallback is used, and recorded.
    let rows = sb2.rows();
    assert!(!rows.is_empty());
    for r in &rows {
        assert!(r["agent_id"].as_str().unwrap().starts_with("host_"), "{r}");
    }
    let status = sb2.status();
    // Unique per installed system where /etc/machine-id exists (default cloud hostnames
    // repeat across customers).
    match std::fs::read_to_string("/etc/machine-id") {
        Ok(m) if !m.trim().is_empty() => {
            let want: String = m.trim().chars().take(32).collect();
            assert_eq!(
                status["agent_id_source"],
                "machine-id fallback (no agent id configured)"
            );
            assert_eq!(status["agent_id"], format!("host_{want}"));
        }
        _ => assert_eq!(
            status["agent_id_source"],
            "hostname fallback (no agent id configured, /etc/machine-id unreadable)"
        ),
    }
}

#[test]
fn hooks_exit_zero_on_bad_flags() {
    let sb = Sandbox::new();
    for args in [
        &["session.end", "--status", "exploded", "--exit-code", "1"][..],
        &["session.end"],
        &["error"],
        &["tool-call", "--no-such-flag"],
        &["session.start", "--url"],
    ] {
        sb.hook(args, b"{}");
    }
    assert!(sb.hook_log().contains("command line"));
    // Non-hook subcommands use exit 1 for usage errors.
    assert_eq!(sb.run(&["status", "--bogus"], b"").status.code(), Some(1));
}

#[test]
fn a_hundred_concurrent_tool_calls_all_land() {
    let sb = Sandbox::new();
    let payload = serde_json::to_vec(&post_tool_use()).unwrap();
    let children: Vec<_> = (0..100)
        .map(|_| {
            let mut cmd = sb.command(&["tool-call"]);
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut outputs = Vec::new();
    for mut child in children {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&payload).unwrap();
        outputs.push(child.wait_with_output().unwrap());
    }
    for out in &outputs {
        helpers::assert_hook_contract(&["tool-call"], out);
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows = sb.rows();
    assert_eq!(rows.len(), 100);
    let ids: HashSet<_> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 100, "every live event has its own UUIDv4");
    assert_eq!(sb.status()["depth"], 100);
    assert_eq!(sb.hook_log(), "");
}

#[test]
fn tool_start_and_tool_call_pair_for_duration() {
    let sb = Sandbox::new();
    let mut pre = payloads("pre_tool_use.json").remove(0);
    let mut post = post_tool_use();
    pre["tool_use_id"] = json!("toolu_pairing_test");
    post["tool_use_id"] = json!("toolu_pairing_test");
    sb.hook(&["tool-start"], &serde_json::to_vec(&pre).unwrap());
    assert_eq!(sb.count("SELECT COUNT(*) FROM tool_starts"), 1);
    std::thread::sleep(Duration::from_millis(120));
    sb.hook(&["tool-call"], &serde_json::to_vec(&post).unwrap());
    let rows = sb.rows();
    assert_eq!(
        rows.len(),
        1,
        "tool-start queues nothing; tool-call queues one event"
    );
    let p = &rows[0]["payload"];
    let d = p["duration_ms"].as_u64().expect("paired duration");
    assert!((120..10_000).contains(&d), "duration {d}");
    assert_eq!(p["tool_use_id"], "toolu_pairing_test");
    assert_eq!(
        sb.count("SELECT COUNT(*) FROM tool_starts"),
        0,
        "the start row is consumed"
    );

    // Payload duration wins over pairing; no start and no duration → no duration field.
    let mut with_duration = post_tool_use();
    with_duration["duration_ms"] = json!(42);
    sb.hook(&["tool-call"], &serde_json::to_vec(&with_duration).unwrap());
    let mut unpaired = post_tool_use();
    unpaired["tool_use_id"] = json!("toolu_never_started");
    sb.hook(&["tool-call"], &serde_json::to_vec(&unpaired).unwrap());
    let rows = sb.rows();
    assert_eq!(rows[1]["payload"]["duration_ms"], 42);
    assert!(rows[2]["payload"].get("duration_ms").is_none());
}

#[test]
fn failures_and_error_shaped_responses_are_not_ok() {
    let sb = Sandbox::new();
    let ok = post_tool_use();
    // PostToolUseFailure as Claude Code sends it: no tool_response, an `error` string.
    let mut failure = post_tool_use();
    failure["hook_event_name"] = json!("PostToolUseFailure");
    failure.as_object_mut().unwrap().remove("tool_response");
    failure["error"] = json!("Command failed with exit code 1");
    let mut error_string = post_tool_use();
    error_string["tool_response"] =
        json!("<tool_use_error>File has not been read yet.</tool_use_error>");
    let mut is_error = post_tool_use();
    is_error["tool_response"] = json!({"is_error": true, "content": "boom"});
    for p in [&ok, &failure, &error_string, &is_error] {
        sb.hook(&["tool-call"], &serde_json::to_vec(p).unwrap());
    }
    let oks: Vec<bool> = sb
        .rows()
        .iter()
        .map(|r| r["payload"]["ok"].as_bool().unwrap())
        .collect();
    assert_eq!(oks, [true, false, false, false]);
}

#[test]
fn mcp_tools_are_named_by_server() {
    let sb = Sandbox::new();
    for name in [
        "mcp__github__create_issue",
        "Bash",
        "mcp__plugin_acme_db__query",
    ] {
        let mut p = post_tool_use();
        p["tool_name"] = json!(name);
        sb.hook(&["tool-call"], &serde_json::to_vec(&p).unwrap());
    }
    let rows = sb.rows();
    let got: Vec<(Value, Value, Value)> = rows
        .iter()
        .map(|r| {
            let p = &r["payload"];
            (
                p["tool_name"].clone(),
                p["tool_source"].clone(),
                p.get("mcp_server").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                json!("mcp__github__create_issue"),
                json!("mcp"),
                json!("github")
            ),
            (json!("Bash"), json!("builtin"), Value::Null),
            (
                json!("mcp__plugin_acme_db__query"),
                json!("plugin"),
                json!("plugin_acme_db")
            ),
        ]
    );
}

/// Every string leaf of `v` (keys included) at least `min` bytes long.
fn strings(v: &Value, min: usize, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.len() >= min => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, min, out)),
        Value::Object(m) => {
            for (k, x) in m {
                if k.len() >= min {
                    out.push(k.clone());
                }
                strings(x, min, out);
            }
        }
        _ => {}
    }
}

#[test]
fn sizes_are_byte_lengths_and_no_content_leaks() {
    let sb = Sandbox::new();
    let all = payloads("post_tool_use.json");
    for p in &all {
        sb.hook(&["tool-call"], &serde_json::to_vec(p).unwrap());
    }
    let rows = sb.rows();
    assert_eq!(rows.len(), all.len());
    for (p, row) in all.iter().zip(&rows) {
        let payload = &row["payload"];
        assert_eq!(payload["tool_name"], p["tool_name"]);
        assert_eq!(payload["tool_use_id"], p["tool_use_id"]);
        assert_eq!(
            payload["args_size_bytes"].as_u64().unwrap(),
            serde_json::to_vec(&p["tool_input"]).unwrap().len() as u64
        );
        assert_eq!(
            payload["output_size_bytes"].as_u64().unwrap(),
            serde_json::to_vec(&p["tool_response"]).unwrap().len() as u64
        );
        assert_eq!(
            row["run_id"], p["session_id"],
            "run id falls back to the session id"
        );
    }
    // Metadata only: no string of any tool_input / tool_response (file paths, contents,
    // commands) appears anywhere in the queued envelopes.
    let spool_text = sb.raw_rows().join("\n");
    let mut secrets = Vec::new();
    for p in &all {
        strings(&p["tool_input"], 12, &mut secrets);
        strings(&p["tool_response"], 12, &mut secrets);
        strings(&p["cwd"], 12, &mut secrets);
        strings(&p["transcript_path"], 12, &mut secrets);
    }
    assert!(secrets.len() > 100);
    for s in &secrets {
        assert!(
            !spool_text.contains(s.as_str()),
            "leaked into the spool: {s:.80}"
        );
    }
    for needle in [
        "/Users/",
        "richardsongunde",
        "filePath",
        "structuredPatch",
        "content",
    ] {
        assert!(!spool_text.contains(needle), "leaked: {needle}");
    }
}

#[test]
fn session_hooks_and_error_build_valid_events() {
    let sb = Sandbox::new();
    let mut sb = sb;
    sb.extra_env
        .push(("PAPERCLIP_RUN_ID".into(), "run_abc".into()));
    sb.hook(
        &[
            "session.start",
            "--agent-kind",
            "employee",
            "--source",
            "cron",
        ],
        b"",
    );
    sb.hook(
        &[
            "session.end",
            "--status",
            "timeout",
            "--exit-code",
            "124",
            "--started-at",
            &(Utc::now().timestamp() - 3).to_string(),
        ],
        b"",
    );
    let long = "x".repeat(500);
    sb.hook(
        &[
            "error",
            "--kind",
            "wrapper_failed",
            "--message",
            &long,
            "--stack-hash",
            "abc123",
        ],
        b"",
    );
    let rows = sb.rows();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        Event::parse(r.clone()).expect("every queued envelope is valid");
        assert_eq!(r["agent_id"], "agent_test_1");
        assert_eq!(r["run_id"], "run_abc");
    }
    assert_eq!(rows[0]["payload"]["paperclip_run_id"], "run_abc");
    assert_eq!(rows[0]["payload"]["agent_kind"], "employee");
    assert_eq!(rows[1]["payload"]["status"], "timeout");
    assert_eq!(rows[1]["payload"]["exit_code"], 124);
    let d = rows[1]["payload"]["duration_ms"].as_u64().unwrap();
    assert!((2_000..10_000).contains(&d), "duration {d}");
    assert_eq!(
        rows[2]["payload"]["message_120c"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        120
    );
}

/// Issue 7 item 6: `session.start --paperclip-run-id run_1` with no run id configured stored
/// `run_id` NULL. The flag is the envelope's run id when it can be one; when it cannot, it
/// stays in the payload only, the event is still queued, and no hook problem is recorded.
#[test]
fn paperclip_run_id_flag_sets_the_run_id() {
    let sb = Sandbox::new();
    sb.hook(&["session.start", "--paperclip-run-id", "run_1"], b"");
    sb.hook(
        &["session.start", "--paperclip-run-id", "paperclip run/1"],
        b"",
    );
    let rows = sb.rows();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["run_id"], "run_1");
    assert_eq!(rows[0]["payload"]["paperclip_run_id"], "run_1");
    assert!(
        rows[1].get("run_id").is_none_or(Value::is_null),
        "{}",
        rows[1]
    );
    assert_eq!(rows[1]["payload"]["paperclip_run_id"], "paperclip run/1");
    assert_eq!(sb.hook_log(), "", "no hook problem");
}

/// Per-model sums of the queued llm_usage events: (input, output, cache read, cache write,
/// cost cents, turns).
fn usage_sums(rows: &[Value]) -> BTreeMap<String, (u64, u64, u64, u64, f64, u64)> {
    let mut out: BTreeMap<String, (u64, u64, u64, u64, f64, u64)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r["event_type"] == "llm_usage") {
        let p = &r["payload"];
        let e = out
            .entry(p["model"].as_str().unwrap().to_owned())
            .or_default();
        e.0 += p["input_tokens"].as_u64().unwrap();
        e.1 += p["output_tokens"].as_u64().unwrap();
        e.2 += p["cache_read_tokens"].as_u64().unwrap();
        e.3 += p["cache_write_tokens"].as_u64().unwrap();
        e.4 += p["cost_cents"].as_f64().unwrap();
        e.5 += p["total_turns"].as_u64().unwrap();
    }
    out
}

fn golden(session: &str) -> BTreeMap<String, (u64, u64, u64, u64, f64)> {
    let text =
        std::fs::read_to_string(fixture("golden/ccusage-20.0.24-session-offline.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let s = v["session"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["period"] == session)
        .unwrap();
    s["modelBreakdowns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["modelName"].as_str().unwrap().to_owned(),
                (
                    m["inputTokens"].as_u64().unwrap(),
                    m["outputTokens"].as_u64().unwrap(),
                    m["cacheReadTokens"].as_u64().unwrap(),
                    m["cacheCreationTokens"].as_u64().unwrap(),
                    m["cost"].as_f64().unwrap() * 100.0,
                ),
            )
        })
        .collect()
}

fn assert_matches_golden(rows: &[Value], session: &str) {
    let got = usage_sums(rows);
    let want = golden(session);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (model, w) in &want {
        let g = &got[model];
        assert_eq!((g.0, g.1, g.2, g.3), (w.0, w.1, w.2, w.3), "{model} tokens");
        assert!((g.4 - w.4).abs() < 1e-6, "{model} cost {} vs {}", g.4, w.4);
    }
}

#[test]
fn llm_usage_queues_per_model_events_once() {
    let sb = Sandbox::new();
    let session = "ae4a77f8-aedd-4bc1-888f-c94edc91af04";
    let main = fixture(&format!("transcripts/{session}.jsonl"));
    let mut stop = payloads("stop.json").remove(0);
    stop["session_id"] = json!(session);
    stop["transcript_path"] = json!(main);
    sb.hook(&["llm-usage"], &serde_json::to_vec(&stop).unwrap());
    let first = sb.rows();
    assert!(!first.is_empty(), "log: {}", sb.hook_log());
    for r in &first {
        assert_eq!(r["event_type"], "llm_usage");
        assert_eq!(r["run_id"], session);
        Event::parse(r.clone()).unwrap();
    }
    // Re-running the same Stop queues nothing new.
    sb.hook(&["llm-usage"], &serde_json::to_vec(&stop).unwrap());
    assert_eq!(sb.rows().len(), first.len());

    // Each subagent's SubagentStop, then the SessionEnd sweep: the session adds up to
    // exactly what ccusage reports, nothing counted twice.
    let sub_dir = fixture(&format!("transcripts/{session}/subagents"));
    let mut subs: Vec<_> = std::fs::read_dir(&sub_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    subs.sort();
    let template = payloads("subagent_stop.json").remove(0);
    for sub in subs.iter().take(1) {
        let mut p = template.clone();
        p["session_id"] = json!(session);
        p["transcript_path"] = json!(main);
        p["agent_transcript_path"] = json!(sub);
        sb.hook(&["llm-usage"], &serde_json::to_vec(&p).unwrap());
    }
    let mut end = payloads("session_end.json").remove(0);
    end["session_id"] = json!(session);
    end["transcript_path"] = json!(main);
    sb.hook(&["llm-usage"], &serde_json::to_vec(&end).unwrap());
    sb.hook(&["llm-usage"], &serde_json::to_vec(&end).unwrap());
    let rows = sb.rows();
    assert_matches_golden(&rows, session);
    let ids: HashSet<_> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), rows.len());
    assert_eq!(sb.hook_log(), "");
}

#[test]
fn llm_usage_session_end_sweep_alone_matches_ccusage() {
    let sb = Sandbox::new();
    let session = "ae4a77f8-aedd-4bc1-888f-c94edc91af04";
    let mut end = payloads("session_end.json").remove(0);
    end["session_id"] = json!(session);
    end["transcript_path"] = json!(fixture(&format!("transcripts/{session}.jsonl")));
    sb.hook(&["llm-usage"], &serde_json::to_vec(&end).unwrap());
    assert_matches_golden(&sb.rows(), session);
}

fn heartbeat() -> Event {
    Event::new(
        uuid::Uuid::new_v4(),
        Utc::now(),
        AgentId::parse("agent_test_1").unwrap(),
        None,
        Payload::Heartbeat(Heartbeat {
            host_load_1m: 0.25,
            ..Heartbeat::default()
        }),
    )
    .unwrap()
}

#[test]
fn a_full_spool_drops_heartbeats_first_and_counts() {
    let mut sb = Sandbox::new();
    // Room for roughly five error events.
    sb.hook(&["error", "--kind", "k", "--message", "sizing"], b"");
    let one = sb.raw_rows()[0].len();
    std::fs::remove_dir_all(sb.spool.parent().unwrap()).unwrap();
    let max = one * 5 + one / 2;
    sb.extra_env
        .push(("BRAIN_SPOOL_MAX_BYTES".into(), max.to_string()));
    {
        let mut spool = Spool::open_with(
            &sb.spool,
            SpoolOptions {
                max_bytes: max as u64,
                when_full: WhenFull::DropOldest,
            },
        )
        .unwrap();
        spool.enqueue(&heartbeat()).unwrap();
        spool.enqueue(&heartbeat()).unwrap();
    }
    for i in 0..6 {
        sb.hook(
            &["error", "--kind", "k", "--message", &format!("event {i}")],
            b"",
        );
    }
    let rows = sb.rows();
    let kinds: Vec<&str> = rows
        .iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .collect();
    assert!(
        !kinds.contains(&"heartbeat"),
        "heartbeats go first: {kinds:?}"
    );
    let status = sb.status();
    assert_eq!(status["dropped_heartbeats"], 2);
    let dropped = status["dropped"].as_u64().unwrap();
    assert_eq!(dropped as usize, 2 + 6 - rows.len());
    assert!(status["bytes"].as_u64().unwrap() <= max as u64);
    // The newest events are the ones kept.
    assert_eq!(rows.last().unwrap()["payload"]["message_120c"], "event 5");
}

#[test]
fn a_corrupt_spool_is_moved_aside_and_work_continues() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.spool.parent().unwrap()).unwrap();
    std::fs::write(
        &sb.spool,
        b"this is not a SQLite database, not even close. ".repeat(200),
    )
    .unwrap();
    sb.hook(
        &["error", "--kind", "k", "--message", "after corruption"],
        b"",
    );
    assert_eq!(sb.rows().len(), 1);
    let aside: Vec<String> = std::fs::read_dir(sb.spool.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("spool.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let status = sb.status();
    assert_eq!(status["recovered_from"], aside[0].as_str());
}

#[test]
fn status_reports_an_empty_spool() {
    let sb = Sandbox::new();
    let out = sb.run(&["status"], b"");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("depth:          0 events"), "{text}");
    let s = sb.status();
    assert_eq!(s["depth"], 0);
    assert_eq!(s["agent_id"], "agent_test_1");
    assert_eq!(s["api_key_configured"], false);
}

#[test]
fn flush_without_configuration_is_a_user_error() {
    let sb = Sandbox::new();
    sb.hook(&["error", "--kind", "k", "--message", "m"], b"");
    let out = sb.run(&["flush", "--wait"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not configured"));
    assert_eq!(sb.rows().len(), 1);
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

#[test]
fn background_flusher_leaves_rows_when_the_server_is_down() {
    let sb = Sandbox::new();
    let port = helpers::free_port();
    sb.write_env(&format!(
        "BRAIN_AGENT_ID=agent_test_1\nBRAIN_URL=http://127.0.0.1:{port}\nBRAIN_API_KEY=m8brain_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    ));
    let payload = serde_json::to_vec(&post_tool_use()).unwrap();
    sb.hook(&["tool-call"], &payload);
    // The flusher fails to connect and records it; the row stays.
    assert!(wait_until(Duration::from_secs(10), || {
        !sb.status()["last_error"].is_null()
    }));
    assert_eq!(sb.rows().len(), 1);
    let out = run_with_stdin(sb.command(&["status"]), b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot reach"));
}

/// A minimal HTTP/1.1 upstream on loopback for answers the real server does not give on
/// demand (413 for any batch over `max_batch` events, one 429 with `Retry-After` first).
/// Returns the port and a handle yielding, per request, the number of events it carried.
fn edge_case_upstream(
    max_batch: usize,
    first_429: bool,
) -> (u16, std::thread::JoinHandle<Vec<usize>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(false).unwrap();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut sent_429 = !first_429;
        let deadline = Instant::now() + Duration::from_secs(30);
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            if first.starts_with("QUIT") {
                break;
            }
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let mut json = String::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_string(&mut json)
                .unwrap();
            let events: Vec<Value> = serde_json::from_str(&json).unwrap();
            seen.push(events.len());
            let (status, extra, answer) = if !sent_429 {
                sent_429 = true;
                (
                    "429 Too Many Requests",
                    "Retry-After: 1\r\n",
                    json!({"error": {"code": "rate_limited", "message": "slow down"}}),
                )
            } else if events.len() > max_batch {
                (
                    "413 Payload Too Large",
                    "",
                    json!({"error": {"code": "too_many_events", "message": "too many events"}}),
                )
            } else {
                let results: Vec<Value> = events
                    .iter()
                    .map(|e| json!({"event_id": e["event_id"], "status": "accepted"}))
                    .collect();
                (
                    "200 OK",
                    "",
                    json!({"accepted": events.len(), "duplicate": 0, "rejected": 0, "results": results}),
                )
            };
            let text = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            if Instant::now() > deadline {
                break;
            }
        }
        seen
    });
    (port, handle)
}

fn stop_upstream(port: u16) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"QUIT\r\n").unwrap();
}

#[test]
fn a_413_splits_the_batch_instead_of_wedging_the_queue() {
    let sb = Sandbox::new();
    for i in 0..7 {
        sb.hook(
            &["error", "--kind", "k", "--message", &format!("e{i}")],
            b"",
        );
    }
    let (port, upstream) = edge_case_upstream(2, false);
    let url = format!("http://127.0.0.1:{port}");
    let out = sb.run(
        &[
            "flush",
            "--wait",
            "--url",
            &url,
            "--api-key",
            "m8brain_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ],
        b"",
    );
    stop_upstream(port);
    let seen = upstream.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sb.rows().is_empty());
    assert_eq!(seen[0], 7, "the whole queue is tried first");
    let delivered: usize = seen.iter().filter(|n| **n <= 2).sum();
    assert_eq!(
        delivered, 7,
        "every event delivered once after splitting: {seen:?}"
    );
    assert_eq!(sb.status()["dead_letters"], 0);
}

#[test]
fn a_429_is_retried_after_retry_after() {
    let sb = Sandbox::new();
    sb.hook(&["error", "--kind", "k", "--message", "m"], b"");
    let (port, upstream) = edge_case_upstream(500, true);
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    // Plain `flush` backs off and retries; `--wait` would stop at the 429.
    let out = sb.run(
        &[
            "flush",
            "--url",
            &url,
            "--api-key",
            "m8brain_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ],
        b"",
    );
    let elapsed = started.elapsed();
    stop_upstream(port);
    let seen = upstream.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(seen, [1, 1]);
    assert!(
        elapsed >= Duration::from_millis(1000),
        "Retry-After honoured: {elapsed:?}"
    );
    assert!(sb.rows().is_empty());
}

#[test]
fn import_backfills_once_and_shares_the_hook_ledger() {
    let sb = Sandbox::new();
    let session = "ae4a77f8-aedd-4bc1-888f-c94edc91af04";
    let main = fixture(&format!("transcripts/{session}.jsonl"));
    let out = sb.run(&["import", main.to_str().unwrap()], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 1 sessions"));
    let rows = sb.rows();
    assert_matches_golden(&rows, session);
    // Backfilled events carry the session's time, not the import's.
    for r in &rows {
        let ts = chrono::DateTime::parse_from_rfc3339(r["ts"].as_str().unwrap()).unwrap();
        assert!(ts < Utc::now() - chrono::TimeDelta::days(1), "{ts}");
        assert_eq!(r["run_id"], session);
    }
    // Importing again, or the SessionEnd hook for the same session, adds nothing.
    let out = sb.run(&["import", main.to_str().unwrap()], b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued 0"));
    let mut end = payloads("session_end.json").remove(0);
    end["session_id"] = json!(session);
    end["transcript_path"] = json!(main);
    sb.hook(&["llm-usage"], &serde_json::to_vec(&end).unwrap());
    assert_eq!(sb.rows().len(), rows.len());

    // A directory is searched; a path with no transcripts is a user error.
    let empty = sb.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(
        sb.run(&["import", empty.to_str().unwrap()], b"")
            .status
            .code(),
        Some(1)
    );
    let out = sb.run(&["import", fixture("transcripts").to_str().unwrap()], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 6 sessions"));
}

/// A loopback upstream answering every request with `status_line` and `body` (no JSON
/// content type unless the body is JSON); yields the number of requests it served.
fn fixed_upstream(
    status_line: &'static str,
    body: &'static str,
) -> (u16, std::thread::JoinHandle<usize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut served = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            if first.starts_with("QUIT") {
                break;
            }
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut sink = vec![0; len];
            let _ = reader.read_exact(&mut sink);
            served += 1;
            let _ = write!(
                stream,
                "HTTP/1.1 {status_line}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        served
    });
    (port, handle)
}

fn flush_wait_against(sb: &Sandbox, port: u16) -> std::process::Output {
    let url = format!("http://127.0.0.1:{port}");
    sb.run(
        &[
            "flush",
            "--wait",
            "--url",
            &url,
            "--api-key",
            "m8brain_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ],
        b"",
    )
}

#[test]
fn a_bare_400_from_a_non_brain_upstream_keeps_every_row() {
    let sb = Sandbox::new();
    for i in 0..5 {
        sb.hook(
            &["error", "--kind", "k", "--message", &format!("e{i}")],
            b"",
        );
    }
    // What nginx says to plain HTTP on a TLS port.
    let (port, upstream) = fixed_upstream(
        "400 Bad Request",
        "<html><head><title>400 The plain HTTP request was sent to HTTPS port</title></head></html>",
    );
    let out = flush_wait_against(&sb, port);
    stop_upstream(port);
    let served = upstream.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the spool was not emptied; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(served, 1, "no bisecting on a foreign 400");
    assert_eq!(sb.rows().len(), 5, "every row kept");
    let status = sb.status();
    assert_eq!(status["dead_letters"], 0);
    assert!(
        status["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("400")),
        "{status}"
    );
}

#[test]
fn a_brain_400_about_the_content_still_isolates_bad_events() {
    let sb = Sandbox::new();
    for i in 0..3 {
        sb.hook(
            &["error", "--kind", "k", "--message", &format!("e{i}")],
            b"",
        );
    }
    let (port, upstream) = fixed_upstream(
        "400 Bad Request",
        r#"{"error":{"code":"not_an_envelope","message":"the body must be an event object or an array of event objects"}}"#,
    );
    let out = flush_wait_against(&sb, port);
    stop_upstream(port);
    let served = upstream.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // [3] → [1] dead, [2] → [1] dead, [1] dead.
    assert_eq!(served, 5);
    assert!(sb.rows().is_empty());
    assert_eq!(sb.status()["dead_letters"], 3);
}

#[test]
fn flush_wait_exits_1_when_the_spool_cannot_be_used() {
    let sb = Sandbox::new();
    sb.hook(&["error", "--kind", "k", "--message", "m"], b"");
    // A spool written by a newer brain-emit: flushing cannot even start.
    rusqlite::Connection::open(&sb.spool)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let (port, upstream) = fixed_upstream("500 Internal Server Error", "");
    let out = flush_wait_against(&sb, port);
    stop_upstream(port);
    upstream.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("schema version 99"));
}

fn usage_rows(sb: &Sandbox) -> Vec<Value> {
    sb.rows()
        .into_iter()
        .filter(|r| r["event_type"] == "llm_usage")
        .collect()
}

#[test]
fn an_unreadable_ledger_is_never_replaced_so_nothing_is_counted_twice() {
    let sb = Sandbox::new();
    let session = "ae4a77f8-aedd-4bc1-888f-c94edc91af04";
    let main = fixture(&format!("transcripts/{session}.jsonl"));
    let mut stop = payloads("stop.json").remove(0);
    stop["session_id"] = json!(session);
    stop["transcript_path"] = json!(main);
    sb.hook(&["llm-usage"], &serde_json::to_vec(&stop).unwrap());
    let first = usage_rows(&sb);
    assert!(!first.is_empty(), "log: {}", sb.hook_log());
    let mut end = payloads("session_end.json").remove(0);
    end["session_id"] = json!(session);
    end["transcript_path"] = json!(main);
    let conn = rusqlite::Connection::open(&sb.spool).unwrap();
    for (what, sql) in [
        (
            "written by a newer brain-emit",
            "UPDATE ledgers SET state = json_set(state, '$.v', 99)",
        ),
        ("damaged", "UPDATE ledgers SET state = '{\"offsets\": {'"),
    ] {
        assert_eq!(conn.execute(sql, []).unwrap(), 1, "{what}");
        let before = sb.hook_log().len();
        sb.hook(&["llm-usage"], &serde_json::to_vec(&end).unwrap());
        assert_eq!(
            usage_rows(&sb).len(),
            first.len(),
            "{what} ledger: the session must not be emitted again"
        );
        let log = sb.hook_log();
        assert!(
            log[before..].contains("cannot be used"),
            "{what} ledger: the problem is recorded: {log}"
        );
        assert!(
            sb.status()["last_hook_error"]
                .as_str()
                .is_some_and(|e| e.contains(session)),
            "{what}"
        );
        // `import` refuses the session too.
        let out = sb.run(&["import", main.to_str().unwrap()], b"");
        assert_eq!(out.status.code(), Some(1), "{what}");
        assert_eq!(usage_rows(&sb).len(), first.len(), "{what}: import");
    }
    // The unreadable ledger is kept as it was (not overwritten by a fresh one).
    let state: String = conn
        .query_row("SELECT state FROM ledgers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(state, "{\"offsets\": {");
}

#[test]
fn after_a_spool_recovery_a_lost_ledger_does_not_re_emit_old_usage() {
    let sb = Sandbox::new();
    let session = "ae4a77f8-aedd-4bc1-888f-c94edc91af04";
    // The session's transcript, copied so it can grow.
    let transcript = sb.dir.path().join(format!("{session}.jsonl"));
    std::fs::copy(
        fixture(&format!("transcripts/{session}.jsonl")),
        &transcript,
    )
    .unwrap();
    // The spool holding this session's ledger is corrupt: its ledger is lost.
    std::fs::create_dir_all(sb.spool.parent().unwrap()).unwrap();
    std::fs::write(&sb.spool, b"not a SQLite database. ".repeat(400)).unwrap();
    let mut stop = payloads("stop.json").remove(0);
    stop["session_id"] = json!(session);
    stop["transcript_path"] = json!(transcript);
    sb.hook(&["llm-usage"], &serde_json::to_vec(&stop).unwrap());
    assert!(sb.status()["recovered_from"].is_string());
    assert_eq!(
        usage_rows(&sb),
        Vec::<Value>::new(),
        "usage logged before the recovery was delivered already or lost with the old spool"
    );
    // A response logged after the recovery is counted, once.
    std::thread::sleep(Duration::from_millis(5));
    let line = json!({
        "type": "assistant",
        "isSidechain": false,
        "sessionId": session,
        "requestId": "req_after_recovery",
        "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "message": {
            "id": "msg_after_recovery",
            "model": "claude-opus-4-6",
            "role": "assistant",
            "usage": {"input_tokens": 7, "output_tokens": 11, "cache_read_input_tokens": 13,
                      "cache_creation_input_tokens": 0}
        }
    });
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&transcript)
        .unwrap();
    std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()).unwrap();
    sb.hook(&["llm-usage"], &serde_json::to_vec(&stop).unwrap());
    let rows = usage_rows(&sb);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let p = &rows[0]["payload"];
    assert_eq!(
        (&p["input_tokens"], &p["output_tokens"], &p["total_turns"]),
        (&json!(7), &json!(11), &json!(1))
    );
    // Importing the session after the recovery adds nothing either.
    sb.run(&["import", transcript.to_str().unwrap()], b"");
    assert_eq!(usage_rows(&sb).len(), 1);
    assert_eq!(sb.hook_log(), "");
}

/// A spool with `n` queued error events, checkpointed into the main file (so a damaged page
/// is read from there, not from the WAL), then page 3 overwritten with garbage.
fn spool_corrupt_in_the_middle(sb: &Sandbox, n: usize) {
    {
        let mut spool = Spool::open(&sb.spool).unwrap();
        let events: Vec<Event> = (0..n)
            .map(|i| {
                Event::new(
                    uuid::Uuid::new_v4(),
                    Utc::now(),
                    AgentId::parse("agent_test_1").unwrap(),
                    None,
                    Payload::Error(shared_proto::ErrorPayload {
                        kind: "k".into(),
                        message_120c: format!("queued before the damage {i}"),
                        ..shared_proto::ErrorPayload::default()
                    }),
                )
                .unwrap()
            })
            .collect();
        spool.enqueue_all(&events).unwrap();
    }
    let conn = rusqlite::Connection::open(&sb.spool).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&sb.spool).unwrap();
    assert!(bytes.len() > 4096 * 8, "the spool spans many pages");
    bytes[4096 * 2..4096 * 3].fill(0xA5);
    std::fs::write(&sb.spool, bytes).unwrap();
}

fn corrupt_aside(sb: &Sandbox) -> Vec<String> {
    std::fs::read_dir(sb.spool.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("spool.db.corrupt-") && !n.ends_with("-wal") && !n.ends_with("-shm")
        })
        .collect()
}

#[test]
fn a_spool_corrupt_past_its_header_is_recovered_by_the_next_hook() {
    let sb = Sandbox::new();
    spool_corrupt_in_the_middle(&sb, 2000);
    let out = sb.hook(
        &["error", "--kind", "k", "--message", "after the damage"],
        b"",
    );
    assert!(out.stderr.is_empty());
    let rows = sb.rows();
    // The damage hit an index: every queued row was salvaged, then the new event queued.
    assert_eq!(rows.len(), 2001, "log: {}", sb.hook_log());
    assert_eq!(rows[2000]["payload"]["message_120c"], "after the damage");
    let aside = corrupt_aside(&sb);
    assert_eq!(aside.len(), 1, "{aside:?}");
    let status = sb.status();
    assert_eq!(status["recovered_from"], aside[0].as_str());
    assert_eq!(status["salvaged_rows"], 2000);
    // Further hooks use the fresh spool as usual.
    sb.hook(&["error", "--kind", "k", "--message", "next"], b"");
    assert_eq!(sb.rows().len(), 2002);
    assert_eq!(corrupt_aside(&sb).len(), 1);
}

#[test]
fn a_spool_corrupt_past_its_header_is_recovered_by_a_flush() {
    let sb = Sandbox::new();
    spool_corrupt_in_the_middle(&sb, 2000);
    let (port, upstream) = edge_case_upstream(500, false);
    let out = flush_wait_against(&sb, port);
    stop_upstream(port);
    let seen = upstream.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(corrupt_aside(&sb).len(), 1);
    let status = sb.status();
    assert!(status["recovered_from"].is_string(), "{status}");
    assert_eq!(status["depth"], 0);
    // Only an index was damaged: every row was salvaged and delivered (a batch sent before
    // the damage showed is sent again: at least once).
    assert_eq!(status["salvaged_rows"], 2000, "{status}");
    assert!(seen.iter().sum::<usize>() >= 2000, "{seen:?}");
    sb.hook(&["error", "--kind", "k", "--message", "next"], b"");
    assert_eq!(sb.rows().len(), 1);
}

#[test]
fn a_flush_compacts_ledgers_idle_for_30_days_without_recounting_them() {
    let sb = Sandbox::new();
    let old_session = "ae4a77f8-aedd-4bc1-888f-c94edc91af04";
    let main = fixture(&format!("transcripts/{old_session}.jsonl"));
    let mut end = payloads("session_end.json").remove(0);
    end["session_id"] = json!(old_session);
    end["transcript_path"] = json!(main);
    sb.hook(&["llm-usage"], &serde_json::to_vec(&end).unwrap());
    let mut recent = end.clone();
    recent["session_id"] = json!("short");
    recent["transcript_path"] = json!(fixture("transcripts/short.jsonl"));
    sb.hook(&["llm-usage"], &serde_json::to_vec(&recent).unwrap());
    let queued = usage_rows(&sb).len();
    let conn = rusqlite::Connection::open(&sb.spool).unwrap();
    let day_ms = 24 * 3600 * 1000_i64;
    conn.execute(
        "UPDATE ledgers SET updated_at_ms = ?1 WHERE session_key = ?2",
        rusqlite::params![Utc::now().timestamp_millis() - 31 * day_ms, old_session],
    )
    .unwrap();
    // A year-old tombstone goes entirely.
    conn.execute(
        "INSERT INTO ledgers VALUES ('ancient', '{\"v\":1,\"since\":0}', 3, ?1)",
        [Utc::now().timestamp_millis() - 400 * day_ms],
    )
    .unwrap();
    let size = |key: &str| -> Option<i64> {
        conn.query_row(
            "SELECT length(state) FROM ledgers WHERE session_key = ?1",
            [key],
            |r| r.get(0),
        )
        .ok()
    };
    let (old_before, recent_before) = (size(old_session).unwrap(), size("short").unwrap());
    assert!(old_before > 1000, "{old_before}");
    // The hook path never prunes.
    sb.hook(&["llm-usage"], &serde_json::to_vec(&recent).unwrap());
    assert_eq!(size(old_session), Some(old_before));
    // A flush does (even one that cannot deliver).
    sb.run(&["flush"], b"");
    assert!(size(old_session).unwrap() < 64, "compacted to a tombstone");
    assert_eq!(size("short"), Some(recent_before), "a live ledger is kept");
    assert_eq!(size("ancient"), None);
    // The session coming back reports nothing it reported before the pruning.
    sb.hook(&["llm-usage"], &serde_json::to_vec(&end).unwrap());
    assert_eq!(usage_rows(&sb).len(), queued);
    assert_eq!(sb.hook_log(), "");
}

#[test]
fn hooks_exit_zero_with_a_broken_stderr_and_an_unwritable_spool() {
    let sb = Sandbox::new();
    // A spool (and log) whose parent "directory" is a regular file: nowhere to record the
    // problem but stderr, and stderr is a pipe nobody reads any more.
    let blocker = sb.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let mut cmd_env = Sandbox::new();
    cmd_env.spool = blocker.join("spool.db");
    let payload = serde_json::to_vec(&post_tool_use()).unwrap();
    for args in HOOKS
        .iter()
        .copied()
        .chain([&["tool-call", "--no-such-flag"][..]])
    {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = cmd_env
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(writer)
            .spawn()
            .unwrap();
        {
            let mut input = child.stdin.take().unwrap();
            let _ = std::io::Write::write_all(&mut input, &payload);
        }
        let out = child.wait_with_output().unwrap();
        helpers::assert_hook_contract(args, &out);
    }
}
