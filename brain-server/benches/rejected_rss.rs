//! Peak memory of the real server under a burst of large rejected bodies (issue 6, case 3):
//! `cargo bench -p brain-server --bench rejected_rss`.
//!
//! Starts the built `brain-server` binary (default settings: 256 MiB in-flight budget, 64 KiB
//! dead-letter cap) on SQLite (a temp dir) and, when reachable at `BRAIN_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), on a fresh Postgres database;
//! sends `BENCH_REQUESTS` (150) concurrent single-event bodies of `BENCH_BODY_BYTES`
//! (1 048 000) whose event is rejected (`payload_too_large`), each distinct; waits for every
//! answer and prints the answers by status and the server process's peak resident set
//! (`VmHWM` of `/proc/<pid>/status`), before and after the burst. Goal: under 512 MiB.
//! `BENCH_BIN` runs another build of the binary (e.g. an older commit's) for comparison.
//!
//! Measured on 2026-12-02 (2 cores, release build, four runs each): 150 bodies, all answered
//! 422, peak 150–247 MiB on SQLite and 192–249 MiB on Postgres; the build before the budget
//! and the dead-letter cap (6004645), 409–512 MiB and 472–484 MiB. With 400 bodies, more
//! than the 256 MiB budget holds at once: SQLite 412 MiB (all 422), Postgres 540 MiB (49
//! answered 503): the peak is about twice the bodies counted (allocator and per-request
//! working set), so a budget of half the memory to spare is the safe setting.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(clippy::unwrap_used, reason = "a benchmark aborts on any failure")]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads its settings and spawns its clients"
)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::json;
use uuid::Uuid;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The binary under test.
fn binary() -> String {
    std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_brain-server").to_owned())
}

fn command(data_dir: &std::path::Path, db_url: Option<&str>) -> Command {
    let mut c = Command::new(binary());
    c.env_clear()
        .env("RUST_LOG", "warn")
        .env("BRAIN_DATA_DIR", data_dir)
        .env("BRAIN_ADMIN_TOKEN", "bench-admin-token")
        .env("BRAIN_RATE_LIMIT_PER_SEC", "100000")
        .env("BRAIN_RATE_LIMIT_BURST", "100000");
    if let Some(url) = db_url {
        c.env("DATABASE_URL", url);
    }
    c
}

/// The peak resident set of process `pid`, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A single-event body of exactly `len` bytes, rejected for its payload size.
fn rejected_body(len: usize) -> Vec<u8> {
    let mut ev = json!({
        "event_id": Uuid::new_v4().to_string(),
        "ts": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "event_type": "tool_call",
        "agent_id": "agent_rss",
        "payload": {"tool_name": "Bash", "ok": true, "padding": ""},
    });
    let fill = len - ev.to_string().len();
    ev["payload"]["padding"] = json!("x".repeat(fill));
    ev.to_string().into_bytes()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run(name: &str, db_url: Option<&str>, requests: usize, body_bytes: usize) {
    let dir = tempfile::TempDir::new().unwrap();
    let out = command(dir.path(), db_url)
        .args(["mint-key", "bench", "Bench Inc"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server(
        command(dir.path(), db_url)
            .env("BRAIN_LISTEN", format!("127.0.0.1:{port}"))
            .arg("serve")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let start = Instant::now();
    while client
        .get(format!("{base}/v1/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle = vm_hwm_kib(pid);

    let bodies: Vec<Vec<u8>> = (0..requests).map(|_| rejected_body(body_bytes)).collect();
    let start = Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (client, url, key) = (client.clone(), format!("{base}/v1/events"), key.clone());
            tokio::spawn(async move {
                match client
                    .post(url)
                    .bearer_auth(key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(resp) => resp.status().as_u16().to_string(),
                    Err(e) => format!("transport error ({e})"),
                }
            })
        })
        .collect();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_default() += 1;
    }
    let took = start.elapsed();
    let peak = vm_hwm_kib(pid);
    println!(
        "== {name}: {requests} concurrent rejected bodies of {body_bytes} bytes, answered in {:.2} s",
        took.as_secs_f64()
    );
    println!("  answers by status: {statuses:?}");
    println!(
        "  server peak RSS (VmHWM): {:.1} MiB after the burst ({:.1} MiB idle before it); goal < 512 MiB",
        peak as f64 / 1024.0,
        idle as f64 / 1024.0
    );
    drop(server);
}

#[tokio::main]
async fn main() {
    let requests = usize::try_from(setting("BENCH_REQUESTS", 150)).unwrap();
    let body_bytes = usize::try_from(setting("BENCH_BODY_BYTES", 1_048_000)).unwrap();
    run("SQLite", None, requests, body_bytes).await;
    let Some(pg) = test_support::TestDb::create("brain_bench") else {
        println!("== Postgres: SKIPPED (unusable; see stderr)");
        return;
    };
    run("Postgres", Some(&pg.url), requests, body_bytes).await;
}
