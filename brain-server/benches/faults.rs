//! Load-and-fault benchmark (issue 6, Acceptance): `cargo bench -p brain-server --bench faults`.
//!
//! Runs the built `brain-server` binary (a new process per scenario, started through
//! `sh -c 'ulimit -n …; exec …'`) and drives it over HTTP as clients would. Honest clients send
//! batches of valid events and, as the emitter does, send a batch again on a network error,
//! 408, 429 or 5xx (after a fixed pause, `Retry-After` not honoured, to keep scenarios short)
//! until it is answered 200 or the scenario's deadline passes. A 200 acknowledges each event
//! answered `accepted` or `duplicate`. After each scenario the server is stopped (SIGTERM) and
//! its database counted. Printed per scenario, and as a final table:
//!
//! - **acked**: distinct events acknowledged; **stored**: rows in `events` afterwards;
//! - **lost**: acknowledged but not stored (must be 0);
//! - **dups**: `(customer_id, event_id)` keys stored more than once (must be 0);
//! - **peak RSS**: `VmHWM` of the server process (`/proc/<pid>/status`) before it is stopped;
//! - **p99**: honest clients' time from a batch's first send to its acknowledgement (resends
//!   included; with no fault it is the request latency). The per-attempt p99 of 200 answers
//!   is printed in the details.
//!
//! Scenarios (each bounded by `BENCH_SCENARIO_SECS`):
//!
//! 1. **Disk fills up mid-ingest** (SQLite): the data directory is a tmpfs of `BENCH_DISK_MIB`
//!    (8) MiB (`mount`, so root only; `SKIPPED` otherwise) holding a ballast file of
//!    `BENCH_BALLAST_MIB` (6) MiB. Clients send flat out until the first non-200; after
//!    `BENCH_DISK_FULL_SECS` (3) more seconds of resending the ballast is deleted, each client
//!    delivers the batch it holds and `BENCH_DISK_AFTER` (1) new one, then stops.
//! 2. **Postgres restarted mid-ingest**: a private cluster (`initdb` from
//!    `/usr/lib/postgresql/<newest>/bin`, run as the `postgres` user when root, on a free
//!    port, in a temp dir; the machine's shared Postgres is never touched). Each client
//!    delivers `BENCH_PG_BATCHES` (40) batches; when a quarter of all events are acknowledged,
//!    `pg_ctl restart -m fast` (or, with `BENCH_PG_DOWN_SECS` > 0, stop, wait, start).
//!    `SKIPPED` with the reason when the cluster cannot be made.
//! 3. **1,000 slow clients beside 32 honest ones** (SQLite): honest clients each send a batch
//!    every `BENCH_PACE_MS` (200) ms, for `BENCH_BASE_SECS` (5) s alone, then for
//!    `BENCH_ATTACK_SECS` (20) s while `BENCH_SLOW_CLIENTS` (1000) connections trickle an
//!    endless request head, one byte every `BENCH_SLOW_BYTE_SECS` (2) s, reconnecting when
//!    closed. Prints both p99s and their ratio (goal ≤ 2). Honest clients open a new
//!    connection per request (as a `brain-emit flush` process does), or keep them alive with
//!    `BENCH_KEEPALIVE=1`. The server gets `ulimit -n` `BENCH_NOFILE` (4096); this process
//!    needs about 1,100 open files (`SKIPPED` below that).
//! 4. **150 concurrent 1 MiB rejected bodies** (SQLite): `BENCH_BIG_ROUNDS` (3) rounds of
//!    `BENCH_BIG_CLIENTS` (150) concurrent single-event bodies of `BENCH_BIG_BYTES`
//!    (1 048 000) bytes whose event is rejected (unknown `event_type`, payload over 16 KiB),
//!    beside the paced honest clients. Goal: peak RSS under 512 MiB.
//!
//! Other settings: `BENCH_CLIENTS` (32 honest clients), `BENCH_BATCH` (100 events per request),
//! `BENCH_CUSTOMERS` (4; client `c` uses customer `c % 4`'s key), `BENCH_RETRY_MS` (200),
//! `BENCH_SCENARIO_SECS` (60), `BENCH_SCENARIOS` (`1234`: which to run), `BENCH_BIN` (another
//! build of the server, e.g. an older commit's). Server logs (`RUST_LOG=warn`) are kept in
//! `target/tmp/faults/<scenario>.log`.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(clippy::unwrap_used, reason = "a benchmark aborts on any failure")]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads its settings and spawns its clients"
)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use shared_proto::{BatchResponse, ErrorBody, EventStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use uuid::Uuid;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn usize_setting(name: &str, default: usize) -> usize {
    usize::try_from(setting(name, default as u64)).unwrap()
}

/// Everything tunable, read once from the environment (see the module docs).
#[derive(Debug)]
struct Settings {
    clients: usize,
    batch: usize,
    customers: usize,
    retry: Duration,
    scenario: Duration,
    scenarios: String,
    disk_mib: u64,
    ballast_mib: u64,
    full_wait: Duration,
    disk_after: usize,
    pg_batches: usize,
    pg_down: Duration,
    pace: Duration,
    keepalive: bool,
    base: Duration,
    attack: Duration,
    slow_clients: usize,
    slow_byte: Duration,
    nofile: u64,
    big_clients: usize,
    big_bytes: usize,
    big_rounds: usize,
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            clients: usize_setting("BENCH_CLIENTS", 32).max(1),
            batch: usize_setting("BENCH_BATCH", 100).max(1),
            customers: usize_setting("BENCH_CUSTOMERS", 4).max(1),
            retry: Duration::from_millis(setting("BENCH_RETRY_MS", 200)),
            scenario: Duration::from_secs(setting("BENCH_SCENARIO_SECS", 60)),
            scenarios: std::env::var("BENCH_SCENARIOS").unwrap_or_else(|_| "1234".to_owned()),
            disk_mib: setting("BENCH_DISK_MIB", 8),
            ballast_mib: setting("BENCH_BALLAST_MIB", 6),
            full_wait: Duration::from_secs(setting("BENCH_DISK_FULL_SECS", 3)),
            disk_after: usize_setting("BENCH_DISK_AFTER", 1),
            pg_batches: usize_setting("BENCH_PG_BATCHES", 40),
            pg_down: Duration::from_secs(setting("BENCH_PG_DOWN_SECS", 0)),
            pace: Duration::from_millis(setting("BENCH_PACE_MS", 200).max(1)),
            keepalive: setting("BENCH_KEEPALIVE", 0) == 1,
            base: Duration::from_secs(setting("BENCH_BASE_SECS", 5)),
            attack: Duration::from_secs(setting("BENCH_ATTACK_SECS", 20)),
            slow_clients: usize_setting("BENCH_SLOW_CLIENTS", 1000),
            slow_byte: Duration::from_secs(setting("BENCH_SLOW_BYTE_SECS", 2).max(1)),
            nofile: setting("BENCH_NOFILE", 4096),
            big_clients: usize_setting("BENCH_BIG_CLIENTS", 150),
            big_bytes: usize_setting("BENCH_BIG_BYTES", 1_048_000),
            big_rounds: usize_setting("BENCH_BIG_ROUNDS", 3).max(1),
        }
    }
}

/// The binary under test.
fn binary() -> String {
    std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_brain-server").to_owned())
}

/// Where server logs are kept: `target/tmp/faults`.
fn log_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The last `n` lines of a file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The soft limit on open files of this process (`/proc/self/limits`).
fn own_nofile() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The peak resident set of process `pid`, in KiB.
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

/// The 99th percentile (nearest rank) of `v`, NaN when empty.
fn p99(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (v.len() as f64 * 0.99).ceil() as usize;
    v[rank.saturating_sub(1).min(v.len() - 1)]
}

/// `after - before`, per key, leaving out zeros.
fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The server process.

/// One customer's key.
#[derive(Debug, Clone)]
struct Key {
    customer: String,
    key: String,
}

/// The environment every invocation of the binary gets (nothing inherited).
fn base_command(program: &str, data_dir: &Path, db_url: Option<&str>) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("RUST_LOG", "warn")
        .env("BRAIN_DATA_DIR", data_dir)
        .env("BRAIN_ADMIN_TOKEN", "bench-admin-token")
        .env("BRAIN_RATE_LIMIT_PER_SEC", "1000000")
        .env("BRAIN_RATE_LIMIT_BURST", "1000000");
    if let Some(url) = db_url {
        c.env("DATABASE_URL", url);
    }
    c
}

/// Mints one key per customer with `brain-server mint-key`.
fn mint_keys(s: &Settings, data_dir: &Path, db_url: Option<&str>) -> Vec<Key> {
    (0..s.customers)
        .map(|n| {
            let customer = format!("faults{n}");
            let out = base_command(&binary(), data_dir, db_url)
                .args(["mint-key", &customer, &format!("Faults {n}")])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "mint-key failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            Key { customer, key }
        })
        .collect()
}

#[derive(Debug)]
struct Server {
    child: Child,
    pid: u32,
    base: String,
    log: PathBuf,
}

impl Server {
    /// Starts `brain-server serve` with `ulimit -n nofile`, logging to `log`, and waits until
    /// it answers.
    async fn start(s: &Settings, data_dir: &Path, db_url: Option<&str>, log: PathBuf) -> Server {
        let port = free_port();
        let child = base_command("/bin/sh", data_dir, db_url)
            .env("BRAIN_LISTEN", format!("127.0.0.1:{port}"))
            .arg("-c")
            .arg(format!("ulimit -n {} && exec \"$0\" serve", s.nofile))
            .arg(binary())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // `exec` keeps the process: this is the server's pid.
        let pid = child.id();
        let mut server = Server {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let start = Instant::now();
        loop {
            if probe
                .get(format!("{}/v1/healthz", server.base))
                .send()
                .await
                .is_ok()
            {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "the server exited at start ({status}):\n{}",
                    tail(&server.log, 20)
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the server did not answer within 30 s:\n{}",
                tail(&server.log, 20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 25 s); says what happened.
    async fn stop(mut self) -> String {
        let start = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return format!(
                    "SIGTERM: exited ({status}) after {:.1} s",
                    start.elapsed().as_secs_f64()
                );
            }
            if start.elapsed() > Duration::from_secs(25) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return "SIGTERM: still running after 25 s; killed".to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // After `stop` this finds the process gone; on a panic it ends the server.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Honest clients.

/// What the honest clients of one scenario (or phase) saw.
#[derive(Debug, Default)]
struct Tally {
    /// Events generated and sent at least once.
    sent: u64,
    /// Distinct `(customer_id, event_id)` answered `accepted` or `duplicate` in a 200.
    acked: HashSet<(String, String)>,
    /// Of those answers, how many said `duplicate` (a resend of an already committed event).
    duplicate_answers: u64,
    /// Events answered `rejected` (honest events: should be 0).
    rejected: u64,
    /// Events never acknowledged: the deadline passed, or a non-retryable answer.
    given_up: u64,
    /// Answers by status (`200`, `503 overloaded`, `transport: connect`, …).
    answers: BTreeMap<String, u64>,
    /// Latency of each attempt answered 200, ms.
    attempt_ms: Vec<f64>,
    /// From a batch's first send to its acknowledgement, ms.
    ack_ms: Vec<f64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.acked.extend(other.acked);
        self.duplicate_answers += other.duplicate_answers;
        self.rejected += other.rejected;
        self.given_up += other.given_up;
        for (k, v) in other.answers {
            *self.answers.entry(k).or_default() += v;
        }
        self.attempt_ms.extend(other.attempt_ms);
        self.ack_ms.extend(other.ack_ms);
    }

    /// Records one attempt's answer to a batch of `n` events of `customer`; `Some(acknowledged)`
    /// when the batch is done with (`last_chance`: no time is left for another attempt).
    fn record(
        &mut self,
        answer: Answer,
        customer: &str,
        n: u64,
        ms: f64,
        ack_ms: f64,
        last_chance: bool,
    ) -> Option<bool> {
        match answer {
            Answer::Ok(resp) => {
                *self.answers.entry("200".to_owned()).or_default() += 1;
                self.attempt_ms.push(ms);
                self.ack_ms.push(ack_ms);
                for r in resp.results {
                    match (r.status, r.event_id) {
                        (EventStatus::Rejected, _) => self.rejected += 1,
                        (status, Some(id)) => {
                            if status == EventStatus::Duplicate {
                                self.duplicate_answers += 1;
                            }
                            self.acked.insert((customer.to_owned(), id));
                        }
                        (_, None) => {}
                    }
                }
                Some(true)
            }
            Answer::Refused(label) => {
                *self.answers.entry(label).or_default() += 1;
                self.given_up += n;
                Some(false)
            }
            Answer::Retry(label) => {
                *self.answers.entry(label).or_default() += 1;
                if last_chance {
                    self.given_up += n;
                    Some(false)
                } else {
                    None
                }
            }
        }
    }
}

type Shared = Arc<Mutex<Tally>>;

/// One answer to a `POST /v1/events`.
enum Answer {
    Ok(BatchResponse),
    /// Retryable, as the emitter sees it: network error, 408, 429, 5xx.
    Retry(String),
    /// Anything else: the emitter would not send these events again.
    Refused(String),
}

/// The honest clients' shared HTTP side.
#[derive(Debug, Clone)]
struct Ingest {
    http: reqwest::Client,
    url: String,
    keys: Arc<Vec<Key>>,
    clients: usize,
    batch: usize,
    retry: Duration,
    pace: Duration,
    /// Answers other than 200 so far (any client).
    non_ok: Arc<AtomicU64>,
}

impl Ingest {
    fn new(s: &Settings, server: &Server, keys: Vec<Key>, keepalive: bool) -> Ingest {
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        http = if keepalive {
            http.pool_max_idle_per_host(s.clients)
        } else {
            http.pool_max_idle_per_host(0)
        };
        Ingest {
            http: http.build().unwrap(),
            url: format!("{}/v1/events", server.base),
            keys: Arc::new(keys),
            clients: s.clients,
            batch: s.batch,
            retry: s.retry,
            pace: s.pace,
            non_ok: Arc::new(AtomicU64::new(0)),
        }
    }

    async fn post(&self, key: &str, body: Vec<u8>) -> Answer {
        let resp = match self
            .http
            .post(&self.url)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(e) if e.is_timeout() => return Answer::Retry("transport: timeout".to_owned()),
            Err(e) if e.is_connect() => return Answer::Retry("transport: connect".to_owned()),
            Err(_) => return Answer::Retry("transport: other".to_owned()),
        };
        let status = resp.status();
        let Ok(bytes) = resp.bytes().await else {
            return Answer::Retry(format!("{} (answer cut)", status.as_u16()));
        };
        if status == 200 {
            return match serde_json::from_slice::<BatchResponse>(&bytes) {
                Ok(body) => Answer::Ok(body),
                Err(_) => Answer::Retry("200 unreadable".to_owned()),
            };
        }
        let code = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error.code)
            .unwrap_or_else(|_| "(no envelope)".to_owned());
        let label = format!("{} {code}", status.as_u16());
        if status == 408 || status == 429 || status.is_server_error() {
            Answer::Retry(label)
        } else {
            Answer::Refused(label)
        }
    }

    /// Sends a new batch for client `c` until it is acknowledged (true) or `deadline` passes.
    async fn deliver(&self, c: usize, deadline: Instant, tally: &Shared) -> bool {
        let key = &self.keys[c % self.keys.len()];
        let agent = format!("agent_faults_{c}");
        let events: Vec<Value> = (0..self.batch).map(|_| event(&agent)).collect();
        let body = serde_json::to_vec(&events).unwrap();
        let n = events.len() as u64;
        tally.lock().unwrap().sent += n;
        let first = Instant::now();
        loop {
            let t = Instant::now();
            let answer = self.post(&key.key, body.clone()).await;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if !matches!(answer, Answer::Ok(_)) {
                self.non_ok.fetch_add(1, Ordering::Relaxed);
            }
            let ack_ms = first.elapsed().as_secs_f64() * 1000.0;
            let last_chance = Instant::now() + self.retry >= deadline;
            let done =
                tally
                    .lock()
                    .unwrap()
                    .record(answer, &key.customer, n, ms, ack_ms, last_chance);
            if let Some(acked) = done {
                return acked;
            }
            tokio::time::sleep(self.retry).await;
        }
    }

    /// Every client sends a batch each `pace` (staggered), until `stop` is set or `deadline`.
    fn spawn_paced(
        &self,
        tally: &Shared,
        stop: &Arc<AtomicBool>,
        deadline: Instant,
    ) -> Vec<JoinHandle<()>> {
        (0..self.clients)
            .map(|c| {
                let (ingest, tally, stop) = (self.clone(), Arc::clone(tally), Arc::clone(stop));
                tokio::spawn(async move {
                    let offset = ingest.pace.mul_f64(c as f64 / ingest.clients as f64);
                    tokio::time::sleep(offset).await;
                    let mut tick = tokio::time::interval(ingest.pace);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                            break;
                        }
                        ingest.deliver(c, deadline, &tally).await;
                    }
                })
            })
            .collect()
    }
}

fn event(agent: &str) -> Value {
    json!({
        "event_id": Uuid::new_v4().to_string(),
        "ts": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "event_type": "tool_call",
        "agent_id": agent,
        "run_id": "run_faults",
        "payload": {"tool_name": "Bash", "ok": true, "duration_ms": 42, "args_size_bytes": 120, "output_size_bytes": 2048},
    })
}

async fn join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        h.await.unwrap();
    }
}

/// A flag set after `after`.
fn flag_after(after: Duration) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        set.store(true, Ordering::SeqCst);
    });
    flag
}

fn take(tally: &Shared) -> Tally {
    std::mem::take(&mut *tally.lock().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Counting what was stored.

/// The database a scenario wrote to.
enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

/// What `events` holds after a scenario.
struct Stored {
    rows: u64,
    dup_keys: u64,
    keys: HashSet<(String, String)>,
}

const DUP_KEYS: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM events GROUP BY customer_id, event_id HAVING COUNT(*) > 1) d";

async fn count(db: &Db) -> Result<Stored, String> {
    count_rows(db)
        .await
        .map_err(|e| format!("FAILED: counting the stored events: {e}"))
}

async fn count_rows(db: &Db) -> Result<Stored, sqlx::Error> {
    let (rows, dup_keys): (Vec<(String, String)>, i64) = match db {
        Db::Sqlite(path) => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await?;
            let rows = sqlx::query_as("SELECT customer_id, event_id FROM events")
                .fetch_all(&pool)
                .await?;
            let dups = sqlx::query_scalar(DUP_KEYS).fetch_one(&pool).await?;
            pool.close().await;
            (rows, dups)
        }
        Db::Postgres(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await?;
            let rows = sqlx::query_as("SELECT customer_id, event_id::text FROM events")
                .fetch_all(&pool)
                .await?;
            let dups = sqlx::query_scalar(DUP_KEYS).fetch_one(&pool).await?;
            pool.close().await;
            (rows, dups)
        }
    };
    Ok(Stored {
        rows: rows.len() as u64,
        dup_keys: u64::try_from(dup_keys).unwrap_or(0),
        keys: rows.into_iter().collect(),
    })
}

/// One scenario's line of the final table.
struct Figures {
    acked: u64,
    stored: u64,
    lost: u64,
    dups: u64,
    rss_mib: f64,
    p99_ms: f64,
    note: String,
}

/// Prints the common detail lines and computes the table line.
fn report(
    tally: &Tally,
    stored: &Stored,
    rss_kib: u64,
    stopped: &str,
    log: &Path,
    rerun: &str,
    note: String,
) -> Figures {
    let lost: Vec<&(String, String)> = tally.acked.difference(&stored.keys).collect();
    let unacked_stored = stored.keys.difference(&tally.acked).count();
    println!(
        "  events: sent {}, acknowledged {} ({} answered duplicate), given up {}, rejected {}",
        tally.sent,
        tally.acked.len(),
        tally.duplicate_answers,
        tally.given_up,
        tally.rejected
    );
    println!(
        "  stored: {} rows; lost {}; duplicate keys {}; stored but never acknowledged {}",
        stored.rows,
        lost.len(),
        stored.dup_keys,
        unacked_stored
    );
    println!("  answers: {:?}", tally.answers);
    println!(
        "  p99: {:.1} ms per 200 answer; {:.1} ms first send -> acknowledged",
        p99(&tally.attempt_ms),
        p99(&tally.ack_ms)
    );
    println!(
        "  server: peak RSS {:.1} MiB; {stopped}; log {}",
        rss_kib as f64 / 1024.0,
        log.display()
    );
    if !lost.is_empty() || stored.dup_keys > 0 {
        println!(
            "  !!! {} ACKNOWLEDGED EVENTS LOST, {} DUPLICATE KEYS. Reproduce: BENCH_SCENARIOS={rerun} cargo bench -p brain-server --bench faults",
            lost.len(),
            stored.dup_keys
        );
        for (customer, id) in lost.iter().take(5) {
            println!("      lost: customer {customer}, event {id}");
        }
    }
    Figures {
        acked: tally.acked.len() as u64,
        stored: stored.rows,
        lost: lost.len() as u64,
        dups: stored.dup_keys,
        rss_mib: rss_kib as f64 / 1024.0,
        p99_ms: p99(&tally.ack_ms),
        note,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Disk filling up.

/// A tmpfs mounted for the scenario, unmounted on drop.
#[derive(Debug)]
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, mib: u64) -> Result<Mount, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Mount(dir.to_owned()))
        } else {
            Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!(
                "  WARNING: could not unmount {}; lazy unmount",
                self.0.display()
            );
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// `GET /v1/healthz`: status and body, shortened.
async fn healthz(base: &str) -> String {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match client.get(format!("{base}/v1/healthz")).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            format!("{status} {}", body.chars().take(160).collect::<String>())
        }
        Err(e) => format!("transport error ({e})"),
    }
}

/// Space used and free on the file system of `dir`, and the sizes of the database files.
fn disk_usage(dir: &Path) -> String {
    let df = Command::new("df")
        .args(["-k", "--output=used,avail"])
        .arg(dir)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    let mut df = df.split_whitespace();
    let files: Vec<String> = ["brain.db", "brain.db-wal", "brain.db-shm", "ballast"]
        .iter()
        .filter_map(|f| {
            let len = std::fs::metadata(dir.join(f)).ok()?.len();
            Some(format!("{f} {} KiB", len / 1024))
        })
        .collect();
    format!(
        "used {} KiB, free {} KiB ({})",
        df.next().unwrap_or("?"),
        df.next().unwrap_or("?"),
        files.join(", ")
    )
}

async fn disk_full(s: &Settings) -> Result<Figures, String> {
    println!(
        "== 1. disk fills up mid-ingest: SQLite on a {} MiB tmpfs with a {} MiB ballast file, {} clients sending {} events/request flat out",
        s.disk_mib, s.ballast_mib, s.clients, s.batch
    );
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mount = Mount::tmpfs(&data, s.disk_mib)?;
    let ballast = data.join("ballast");
    let chunk = vec![0xA5u8; 1024 * 1024];
    let mut contents = Vec::new();
    for _ in 0..s.ballast_mib {
        contents.extend_from_slice(&chunk);
    }
    std::fs::write(&ballast, contents).map_err(|e| format!("cannot write the ballast: {e}"))?;
    let keys = mint_keys(s, &data, None);
    let log = log_dir().join("1-disk-full.log");
    let server = Server::start(s, &data, None, log.clone()).await;
    let ingest = Ingest::new(s, &server, keys, true);
    let tally: Shared = Arc::default();
    let freed = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + s.scenario;

    let handles: Vec<_> = (0..s.clients)
        .map(|c| {
            let (ingest, tally, freed) = (ingest.clone(), Arc::clone(&tally), Arc::clone(&freed));
            let after = s.disk_after;
            tokio::spawn(async move {
                let mut sent_after = 0;
                while Instant::now() < deadline {
                    if freed.load(Ordering::SeqCst) {
                        if sent_after >= after {
                            break;
                        }
                        sent_after += 1;
                    }
                    ingest.deliver(c, deadline, &tally).await;
                }
            })
        })
        .collect();

    // Wait for the first failure (at most half the scenario), keep the disk full a while,
    // then free the ballast.
    let fill_limit = start + s.scenario / 2;
    while ingest.non_ok.load(Ordering::Relaxed) == 0 && Instant::now() < fill_limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_failure = (ingest.non_ok.load(Ordering::Relaxed) > 0).then(|| start.elapsed());
    let acked_before = tally.lock().unwrap().acked.len();
    let at_failure = tally.lock().unwrap().answers.clone();
    if first_failure.is_some() {
        tokio::time::sleep(s.full_wait).await;
    }
    let at_free = tally.lock().unwrap().answers.clone();
    let health_full = healthz(&server.base).await;
    let disk_full = disk_usage(&data);
    std::fs::remove_file(&ballast).unwrap();
    freed.store(true, Ordering::SeqCst);
    let freed_at = start.elapsed();
    join(handles).await;
    let done_at = start.elapsed();
    let after_free = diff(&tally.lock().unwrap().answers, &at_free);
    let health_end = healthz(&server.base).await;
    let disk_end = disk_usage(&data);

    let rss = vm_hwm_kib(server.pid);
    let stopped = server.stop().await;
    let stored = count(&Db::Sqlite(data.join("brain.db"))).await?;
    drop(mount);

    let note = match first_failure {
        Some(t) => {
            println!(
                "  first non-200 at {:.1} s ({acked_before} events acknowledged by then); ballast freed at {:.1} s; clients done at {:.1} s",
                t.as_secs_f64(),
                freed_at.as_secs_f64(),
                done_at.as_secs_f64()
            );
            println!("  answers while full: {:?}", diff(&at_free, &at_failure));
            println!("  answers after freeing: {after_free:?}");
            println!("  just before freeing: healthz {health_full}");
            println!("    tmpfs {disk_full}");
            println!("  when the clients were done: healthz {health_end}");
            println!("    tmpfs {disk_end}");
            format!(
                "first non-200 at {:.1} s; after freeing: {}; tmpfs at the end: {}",
                t.as_secs_f64(),
                summary(&after_free),
                disk_end.split(" (").next().unwrap_or("")
            )
        }
        None => {
            println!(
                "  the disk never produced a non-200 within {:.0} s",
                (s.scenario / 2).as_secs_f64()
            );
            "disk never reported full".to_owned()
        }
    };
    let tally = take(&tally);
    Ok(report(&tally, &stored, rss, &stopped, &log, "1", note))
}

/// `{"200": 3, "503 x": 2}` as `200×3, 503 x×2`.
fn summary(answers: &BTreeMap<String, u64>) -> String {
    if answers.is_empty() {
        return "none".to_owned();
    }
    answers
        .iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// 2. Postgres restarted.

/// A private Postgres cluster in a temp dir, stopped on drop.
#[derive(Debug)]
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The server options (`pg_ctl -o`): port, socket directory, listen address.
    opts: String,
    as_postgres: bool,
}

impl Cluster {
    fn create() -> Result<Cluster, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no /usr/lib/postgresql: {e}"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .max()
            .map(|(_, bin)| bin)
            .ok_or("no /usr/lib/postgresql/*/bin/initdb")?;
        let dir = tempfile::Builder::new()
            .prefix("brain-faults-pg")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let as_postgres = id(&["-u"]).as_deref() == Some("0");
        if as_postgres {
            let uid = id(&["-u", "postgres"]).and_then(|v| v.parse().ok());
            let gid = id(&["-g", "postgres"]).and_then(|v| v.parse().ok());
            let (Some(uid), Some(gid)) = (uid, gid) else {
                return Err("running as root and there is no `postgres` user".to_owned());
            };
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown of the cluster dir: {e}"))?;
        }
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.path().display()
        );
        let cluster = Cluster {
            dir,
            bin,
            port,
            opts,
            as_postgres,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.start()?;
        Ok(cluster)
    }

    fn start(&self) -> Result<(), String> {
        self.pg_ctl(&["-w", "-t", "60", "-o", &self.opts, "start"])
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs a Postgres program (as `postgres` when we are root), its output to a file.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out_path = self.dir.path().join(format!("{program}.out"));
        let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let status = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {} failed ({status}): {}",
                args.last().unwrap_or(&""),
                tail(&out_path, 5)
            ))
        }
    }

    /// `pg_ctl -D <data> -l <log> <args>`.
    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = self.data();
        let log = self.dir.path().join("postgres.log");
        let mut all = vec!["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }
}

/// `id <args>`, trimmed.
fn id(args: &[&str]) -> Option<String> {
    let out = Command::new("id").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn postgres_restart(s: &Settings) -> Result<Figures, String> {
    let how = if s.pg_down.is_zero() {
        "pg_ctl restart -m fast".to_owned()
    } else {
        format!("pg_ctl stop -m fast, {} s down, start", s.pg_down.as_secs())
    };
    println!(
        "== 2. Postgres restarted mid-ingest: a private cluster; {} clients x {} batches of {}; {how} once a quarter is acknowledged",
        s.clients, s.pg_batches, s.batch
    );
    let cluster = tokio::task::spawn_blocking(Cluster::create)
        .await
        .unwrap()?;
    let url = cluster.url();
    let dir = tempfile::TempDir::new().unwrap();
    let keys = mint_keys(s, dir.path(), Some(&url));
    let log = log_dir().join("2-postgres-restart.log");
    let server = Server::start(s, dir.path(), Some(&url), log.clone()).await;
    let ingest = Ingest::new(s, &server, keys, true);
    let tally: Shared = Arc::default();
    let start = Instant::now();
    let deadline = start + s.scenario;
    let batches = s.pg_batches;
    let handles: Vec<_> = (0..s.clients)
        .map(|c| {
            let (ingest, tally) = (ingest.clone(), Arc::clone(&tally));
            tokio::spawn(async move {
                for _ in 0..batches {
                    if Instant::now() >= deadline {
                        break;
                    }
                    ingest.deliver(c, deadline, &tally).await;
                }
            })
        })
        .collect();

    let total = s.clients * s.pg_batches * s.batch;
    while tally.lock().unwrap().acked.len() < total / 4 && start.elapsed() < s.scenario / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let acked_at_restart = tally.lock().unwrap().acked.len();
    let before = tally.lock().unwrap().answers.clone();
    let restart_at = start.elapsed();
    let cluster = Arc::new(cluster);
    let restarted = {
        let (cluster, down) = (Arc::clone(&cluster), s.pg_down);
        tokio::task::spawn_blocking(move || {
            if down.is_zero() {
                cluster.pg_ctl(&["-m", "fast", "-w", "-t", "60", "restart"])
            } else {
                cluster.pg_ctl(&["-m", "fast", "-w", "-t", "60", "stop"])?;
                std::thread::sleep(down);
                cluster.start()
            }
        })
        .await
        .unwrap()
    };
    let restart_took = start.elapsed() - restart_at;
    join(handles).await;
    let done_at = start.elapsed();
    let after = diff(&tally.lock().unwrap().answers, &before);

    let rss = vm_hwm_kib(server.pid);
    let stopped = server.stop().await;

    println!(
        "  restart at {:.1} s ({acked_at_restart} events acknowledged by then), took {:.1} s{}; clients done at {:.1} s",
        restart_at.as_secs_f64(),
        restart_took.as_secs_f64(),
        match &restarted {
            Ok(()) => String::new(),
            Err(e) => format!(" (FAILED: {e})"),
        },
        done_at.as_secs_f64()
    );
    println!("  answers from the restart on: {after:?}");
    let failures: BTreeMap<String, u64> = after.into_iter().filter(|(k, _)| k != "200").collect();
    let mut note = format!("non-200 from the restart on: {}", summary(&failures));
    if let Err(e) = &restarted {
        note = format!("RESTART FAILED ({e}); {note}");
    }
    let stored = count(&Db::Postgres(url)).await?;
    drop(cluster);
    let tally = take(&tally);
    Ok(report(&tally, &stored, rss, &stopped, &log, "2", note))
}

// ---------------------------------------------------------------------------------------------
// 3. Slow clients.

/// One slow client: opens a connection and sends an endless request head, one byte per
/// `interval`; when the server closes it (or answers), opens another. Until `stop`.
async fn slow_client(
    addr: String,
    interval: Duration,
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicUsize>,
    closed: Arc<AtomicU64>,
) {
    const HEAD: &[u8] =
        b"POST /v1/events HTTP/1.1\r\nHost: brain\r\nContent-Type: application/json\r\nX-Slow: ";
    let mut first = true;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
            tokio::time::sleep(interval).await;
            continue;
        };
        if first {
            connected.fetch_add(1, Ordering::Relaxed);
            first = false;
        }
        let mut sent = 0;
        let mut buf = [0u8; 512];
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let byte = HEAD.get(sent).copied().unwrap_or(b'a');
            sent += 1;
            if stream.write_all(&[byte]).await.is_err() {
                break;
            }
            // Waiting for the next byte's turn, notice at once when the server closes.
            match tokio::time::timeout(interval, stream.read(&mut buf)).await {
                Err(_) => {}
                Ok(_) => break,
            }
        }
        closed.fetch_add(1, Ordering::Relaxed);
    }
}

async fn slow_clients(s: &Settings) -> Result<Figures, String> {
    println!(
        "== 3. {} slow clients beside {} honest ones: SQLite; honest clients send {} events every {} ms on {} connections; slow ones one header byte every {} s",
        s.slow_clients,
        s.clients,
        s.batch,
        s.pace.as_millis(),
        if s.keepalive { "kept-alive" } else { "new" },
        s.slow_byte.as_secs()
    );
    let need = s.slow_clients as u64 + s.clients as u64 + 100;
    if let Some(have) = own_nofile()
        && have < need
    {
        return Err(format!(
            "this process may open {have} files, needs {need}: run `ulimit -n {need}` first"
        ));
    }
    let dir = tempfile::TempDir::new().unwrap();
    let keys = mint_keys(s, dir.path(), None);
    let log = log_dir().join("3-slow-clients.log");
    let server = Server::start(s, dir.path(), None, log.clone()).await;
    let ingest = Ingest::new(s, &server, keys, s.keepalive);
    let start = Instant::now();
    let deadline = start + s.scenario;

    let base: Shared = Arc::default();
    join(ingest.spawn_paced(&base, &flag_after(s.base), deadline)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let addr = server.base.trim_start_matches("http://").to_owned();
    let attackers: Vec<_> = (0..s.slow_clients)
        .map(|_| {
            tokio::spawn(slow_client(
                addr.clone(),
                s.slow_byte,
                Arc::clone(&stop),
                Arc::clone(&connected),
                Arc::clone(&closed),
            ))
        })
        .collect();
    let connecting = Instant::now();
    while connected.load(Ordering::Relaxed) < s.slow_clients
        && connecting.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_took = connecting.elapsed();
    let attack: Shared = Arc::default();
    join(ingest.spawn_paced(&attack, &flag_after(s.attack), deadline)).await;
    stop.store(true, Ordering::SeqCst);
    join(attackers).await;

    let rss = vm_hwm_kib(server.pid);
    let stopped = server.stop().await;
    let stored = count(&Db::Sqlite(dir.path().join("brain.db"))).await?;

    let (base, attack) = (take(&base), take(&attack));
    let (p_base, p_attack) = (p99(&base.ack_ms), p99(&attack.ack_ms));
    let ratio = p_attack / p_base;
    println!(
        "  {} of {} slow clients connected within {:.1} s; server closed slow connections {} times",
        connected.load(Ordering::Relaxed),
        s.slow_clients,
        connect_took.as_secs_f64(),
        closed.load(Ordering::Relaxed)
    );
    println!(
        "  honest without the attack ({} s): {} batches acknowledged, p99 {p_base:.1} ms; answers {:?}",
        s.base.as_secs(),
        base.ack_ms.len(),
        base.answers
    );
    println!(
        "  honest under the attack ({} s): {} batches acknowledged, p99 {p_attack:.1} ms; answers {:?}",
        s.attack.as_secs(),
        attack.ack_ms.len(),
        attack.answers
    );
    println!("  honest p99 ratio, attack / none: {ratio:.2} (goal <= 2)");
    let note = format!("no-attack p99 {p_base:.1} ms; ratio {ratio:.2} (goal <= 2)");
    let mut all = base;
    all.merge(attack);
    let mut figures = report(&all, &stored, rss, &stopped, &log, "3", note);
    figures.p99_ms = p_attack;
    Ok(figures)
}

// ---------------------------------------------------------------------------------------------
// 4. Large rejected bodies.

/// A single-event body of about `len` bytes whose event is rejected.
fn rejected_body(len: usize) -> Vec<u8> {
    let mut ev = json!({
        "event_id": Uuid::new_v4().to_string(),
        "ts": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "event_type": "bench_unknown_type",
        "agent_id": "agent_faults_big",
        "payload": {"padding": ""},
    });
    let fill = len.saturating_sub(ev.to_string().len());
    ev["payload"]["padding"] = json!("x".repeat(fill));
    ev.to_string().into_bytes()
}

async fn rejected_bodies(s: &Settings) -> Result<Figures, String> {
    println!(
        "== 4. {} concurrent rejected bodies of {} bytes, {} rounds, beside {} honest clients (SQLite)",
        s.big_clients, s.big_bytes, s.big_rounds, s.clients
    );
    let dir = tempfile::TempDir::new().unwrap();
    let keys = mint_keys(s, dir.path(), None);
    let big_key = keys[0].key.clone();
    let log = log_dir().join("4-rejected-bodies.log");
    let server = Server::start(s, dir.path(), None, log.clone()).await;
    let idle = vm_hwm_kib(server.pid);
    let ingest = Ingest::new(s, &server, keys, s.keepalive);
    let deadline = Instant::now() + s.scenario;
    let tally: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let honest = ingest.spawn_paced(&tally, &stop, deadline);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let big = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut took = Vec::new();
    for _ in 0..s.big_rounds {
        let bodies: Vec<Vec<u8>> = (0..s.big_clients)
            .map(|_| rejected_body(s.big_bytes))
            .collect();
        let start = Instant::now();
        let tasks: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let (big, url, key) = (big.clone(), ingest.url.clone(), big_key.clone());
                tokio::spawn(async move {
                    let resp = big
                        .post(url)
                        .bearer_auth(key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match resp {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let bytes = resp.bytes().await.unwrap_or_default();
                            let code = serde_json::from_slice::<BatchResponse>(&bytes)
                                .ok()
                                .and_then(|b| b.results.into_iter().next()?.error)
                                .map(|e| e.code)
                                .or_else(|| {
                                    serde_json::from_slice::<ErrorBody>(&bytes)
                                        .ok()
                                        .map(|b| b.error.code)
                                })
                                .unwrap_or_default();
                            format!("{status} {code}")
                        }
                        Err(e) if e.is_timeout() => "transport: timeout".to_owned(),
                        Err(_) => "transport: other".to_owned(),
                    }
                })
            })
            .collect();
        for t in tasks {
            *statuses.entry(t.await.unwrap()).or_default() += 1;
        }
        took.push(start.elapsed().as_secs_f64());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    join(honest).await;

    let rss = vm_hwm_kib(server.pid);
    let stopped = server.stop().await;
    let stored = count(&Db::Sqlite(dir.path().join("brain.db"))).await?;
    println!(
        "  rejected bodies answered: {statuses:?}; rounds took {:?} s",
        took.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>()
    );
    println!("  server RSS idle before: {:.1} MiB", idle as f64 / 1024.0);
    let note = format!(
        "big bodies: {}; goal peak RSS < 512 MiB",
        summary(&statuses)
    );
    let tally = take(&tally);
    Ok(report(&tally, &stored, rss, &stopped, &log, "4", note))
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let s = Settings::from_env();
    println!(
        "faults bench: server {}; {} honest clients, {} events per request, {} customers; resend pause {} ms; scenario deadline {} s",
        binary(),
        s.clients,
        s.batch,
        s.customers,
        s.retry.as_millis(),
        s.scenario.as_secs()
    );
    let mut rows: Vec<(&str, Result<Figures, String>)> = Vec::new();
    if s.scenarios.contains('1') {
        rows.push(("1 disk fills (SQLite)", disk_full(&s).await));
    }
    if s.scenarios.contains('2') {
        rows.push(("2 Postgres restarted", postgres_restart(&s).await));
    }
    if s.scenarios.contains('3') {
        rows.push(("3 1000 slow clients", slow_clients(&s).await));
    }
    if s.scenarios.contains('4') {
        rows.push(("4 150 x 1 MiB rejected", rejected_bodies(&s).await));
    }

    println!();
    println!(
        "== Summary (goals: lost 0, dups 0; scenario 3 p99 ratio <= 2; scenario 4 peak RSS < 512 MiB)"
    );
    println!(
        "{:<24} {:>9} {:>9} {:>6} {:>5} {:>10} {:>12}  notes",
        "scenario", "acked", "stored", "lost", "dups", "peak RSS", "honest p99"
    );
    for (name, row) in &rows {
        match row {
            Ok(f) => println!(
                "{name:<24} {:>9} {:>9} {:>6} {:>5} {:>6.1} MiB {:>9.1} ms  {}",
                f.acked, f.stored, f.lost, f.dups, f.rss_mib, f.p99_ms, f.note
            ),
            Err(why) if why.starts_with("FAILED") => println!("{name:<24} {why}"),
            Err(why) => println!("{name:<24} SKIPPED: {why}"),
        }
    }
    if rows
        .iter()
        .any(|(_, r)| r.as_ref().is_ok_and(|f| f.lost > 0 || f.dups > 0))
    {
        println!(
            "!!! ACKNOWLEDGED EVENTS WERE LOST OR STORED TWICE: see the scenario details above"
        );
    }
}
