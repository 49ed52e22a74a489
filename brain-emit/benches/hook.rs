//! Hot-path benchmark: median wall time of one `brain-emit tool-call` hook invocation (release
//! binary, real PostToolUse payload on stdin, server down), against two baselines:
//! `sh -c 'exec true'` (the floor of starting any process) and a `sqlite3` CLI insert into a
//! WAL file (what a shell hook doing the same durable enqueue would cost).
//!
//! Run with `cargo bench -p brain-emit --bench hook`. Goals: ≤ 3× the first baseline and
//! ≤ 0.5× the second.

#![expect(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark binary: it reports on stdout and a failed setup is a failed run"
)]

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: `BRAIN_EMIT_BIN` (e.g. the static build of `cargo dist`) or the
/// release build cargo made for this bench.
fn binary() -> std::path::PathBuf {
    #[expect(clippy::disallowed_methods, reason = "the bench's own knob")]
    let chosen = std::env::var("BRAIN_EMIT_BIN");
    chosen.map_or_else(|_| env!("CARGO_BIN_EXE_brain-emit").into(), Into::into)
}
const WARMUP: usize = 20;
const RUNS: usize = 300;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..WARMUP {
        f();
    }
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn run(cmd: &mut Command, stdin: &[u8]) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
}

fn sqlite3_available() -> bool {
    Command::new("sqlite3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/claude-code/hook-payloads");
    let all: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("post_tool_use.json")).unwrap(),
    )
    .unwrap();
    // A typical (median-sized) payload from the real set.
    let mut sized: Vec<Vec<u8>> = all.iter().map(|p| serde_json::to_vec(p).unwrap()).collect();
    sized.sort_by_key(Vec::len);
    let payload = sized[sized.len() / 2].clone();

    // Server down: a port that was free a moment ago.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env_file = dir.path().join("brain.env");
    std::fs::write(
        &env_file,
        format!(
            "BRAIN_URL=http://127.0.0.1:{port}\nBRAIN_API_KEY=m8brain_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nBRAIN_AGENT_ID=agent_bench\n"
        ),
    )
    .unwrap();
    let spool = dir.path().join("spool.db");

    let bin = binary();
    println!("binary: {}", bin.display());
    let hook = time(RUNS, || {
        run(
            Command::new(&bin)
                .arg("tool-call")
                .env("BRAIN_ENV_FILE", &env_file)
                .env("BRAIN_SPOOL", &spool)
                .env_remove("BRAIN_URL")
                .env_remove("BRAIN_API_KEY"),
            &payload,
        );
    });
    let shell = time(RUNS, || {
        run(Command::new("sh").args(["-c", "exec true"]), b"")
    });

    println!(
        "payload: {} bytes (median of {} real PostToolUse payloads)",
        payload.len(),
        all.len()
    );
    println!(
        "brain-emit tool-call     median {:>8.3} ms",
        hook.as_secs_f64() * 1e3
    );
    println!(
        "sh -c 'exec true'        median {:>8.3} ms",
        shell.as_secs_f64() * 1e3
    );
    let r1 = hook.as_secs_f64() / shell.as_secs_f64();
    println!(
        "ratio to process floor   {r1:>8.2}x  (goal <= 3x: {})",
        if r1 <= 3.0 { "met" } else { "MISSED" }
    );

    if sqlite3_available() {
        let db = dir.path().join("baseline.db");
        let setup = Command::new("sqlite3")
            .arg(&db)
            .arg("PRAGMA journal_mode=WAL; CREATE TABLE q (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);")
            .output()
            .unwrap();
        assert!(setup.status.success());
        let row = r#"{"event_id":"0b6c0000-0000-4000-8000-000000000000","ts":"2026-05-03T14:32:00.123Z","event_type":"tool_call","agent_id":"agent_bench","payload":{"tool_name":"Edit","ok":true,"args_size_bytes":1234,"output_size_bytes":5678}}"#;
        let sql = format!("INSERT INTO q (body) VALUES ('{row}');");
        let sqlite = time(RUNS, || {
            run(Command::new("sqlite3").arg(&db).arg(&sql), b"")
        });
        println!(
            "sqlite3 CLI WAL insert   median {:>8.3} ms",
            sqlite.as_secs_f64() * 1e3
        );
        let r2 = hook.as_secs_f64() / sqlite.as_secs_f64();
        println!(
            "ratio to sqlite3 insert  {r2:>8.2}x  (goal <= 0.5x: {})",
            if r2 <= 0.5 { "met" } else { "MISSED" }
        );
    } else {
        println!("sqlite3 CLI not installed (apt package sqlite3): skipping that baseline");
    }
    let depth: i64 = rusqlite::Connection::open(&spool)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0))
        .unwrap();
    println!("events queued during the run: {depth}");
}
