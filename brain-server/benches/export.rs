//! Export benchmark (issue 8, item 3): `cargo bench -p brain-server --bench export`.
//!
//! Loads `BENCH_EVENTS` (1,000,000) events straight into a fresh SQLite database (one
//! `INSERT … SELECT` over a recursive CTE: loading is not what is measured), starts the built
//! `brain-server` binary on it as a child process, exports everything through the real
//! `GET /admin/export?format=csv` (then `jsonl`), reading the body as it streams, and prints
//! rows/s and the server's peak RSS (`VmHWM` of the process) after each. Goals: ≥ 200,000
//! rows/s, ≤ 64 MiB. The prune-under-ingest figure (issue 8, item 4) is not measured here yet.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(clippy::unwrap_used, reason = "a benchmark aborts on any failure")]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads its settings and spawns the server"
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-admin-token-0123456789";

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let n: i64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let bin = std::env::var("BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_brain-server").to_owned());
    let dir = tempfile::TempDir::new().unwrap();
    let status = Command::new(&bin)
        .arg("migrate")
        .env_clear()
        .env("BRAIN_DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    let url = format!("sqlite://{}", dir.path().join("brain.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let load = Instant::now();
    sqlx::query(
        "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?1) \
         INSERT INTO events (event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload) \
         SELECT printf('%08x-0000-4000-8000-%012x', i, i), 1767225600000 + i * 10, \
                1767225600000 + i * 10 + 500, 'cust_' || (i % 50), 'agent_' || (i % 500), \
                'run_' || (i / 40), 'tool_call', \
                '{\"tool_name\":\"Bash\",\"ok\":true,\"duration_ms\":' || (i % 1000) || ',\"tool_source\":\"builtin\"}' \
         FROM s",
    )
    .bind(n)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    println!(
        "loaded {n} events into SQLite in {:.1} s",
        load.elapsed().as_secs_f64()
    );

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = Command::new(&bin)
        .arg("serve")
        .env_clear()
        .env("BRAIN_DATA_DIR", dir.path())
        .env("BRAIN_ADMIN_TOKEN", TOKEN)
        .env("BRAIN_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while client
        .get(format!("{base}/v1/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "server up, peak RSS so far {:.1} MiB",
        vm_hwm_kib(server.id()) as f64 / 1024.0
    );
    for format in ["csv", "jsonl"] {
        let start = Instant::now();
        let resp = client
            .get(format!("{base}/admin/export?format={format}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let mut resp = resp;
        let (mut bytes, mut lines) = (0u64, 0u64);
        while let Some(chunk) = resp.chunk().await.unwrap() {
            bytes += chunk.len() as u64;
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        let rows = if format == "csv" { lines - 1 } else { lines };
        assert_eq!(rows, n.unsigned_abs(), "every row exported once");
        println!(
            "export {format}: {rows} rows, {:.0} MiB in {secs:.1} s = {:.0} rows/s (goal >= 200000); server peak RSS {:.1} MiB (goal <= 64)",
            bytes as f64 / 1048576.0,
            rows as f64 / secs,
            vm_hwm_kib(server.id()) as f64 / 1024.0
        );
    }
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
}
