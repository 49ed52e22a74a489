//! The harness: a real `brain-server` process over a fresh SQLite file or a fresh Postgres
//! database, customer boxes running the real `brain-emit`, and the reads of what each side
//! stored (the server's `events` and `dead_letters` tables, the emitter's queue).
//!
//! The binaries are this package's `e2e-brain-server` and `e2e-brain-emit` (see `src/bin/`),
//! which cargo builds before it runs these tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;
use tempfile::TempDir;
use test_support::TestDb;

/// The server binary: `brain_server::cli::main`, as `brain-server` runs it.
pub(crate) const SERVER_BIN: &str = env!("CARGO_BIN_EXE_e2e-brain-server");
/// The emitter binary: `brain_emit::run`, as `brain-emit` runs it.
pub(crate) const EMIT_BIN: &str = env!("CARGO_BIN_EXE_e2e-brain-emit");

/// Fixtures shared by the workspace.
pub(crate) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/claude-code");

/// Runs `f` to completion on a runtime of its own (the tests are synchronous).
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// A free loopback port (bound, then released).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Polls `f` every 100 ms until it holds or `timeout` has passed; the last answer.
pub(crate) fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

// ---------------------------------------------------------------------------------------------
// Postgres databases.

// ---------------------------------------------------------------------------------------------
// The server.

/// Which database a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The embedded default: `<data dir>/brain.db`.
    Sqlite,
    /// A fresh database given as `DATABASE_URL`.
    Postgres,
}

/// One stored event, as read back from the server's `events` table.
#[derive(Debug)]
pub(crate) struct StoredEvent {
    pub(crate) event_id: String,
    pub(crate) run_id: Option<String>,
    pub(crate) event_type: String,
    pub(crate) payload: Value,
}

/// What the server stored: its events, and the raw text of every event and dead letter (to
/// search for content that must never arrive).
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) events: Vec<StoredEvent>,
    pub(crate) all_text: String,
}

/// `(event_id, run_id, event_type, payload JSON)` as selected from `events`.
type EventRow = (String, Option<String>, String, String);

/// A `brain-server` with its own data dir and database, on its own loopback port. Not running
/// until [`Server::start`]; killed, and its Postgres database dropped, on drop.
#[derive(Debug)]
pub(crate) struct Server {
    child: Option<Child>,
    port: u16,
    data_dir: TempDir,
    pg: Option<TestDb>,
}

impl Server {
    /// A server on `backend`; `None` when that is Postgres and Postgres is not here (see
    /// [`TestDb::create`]).
    pub(crate) fn new(backend: Backend) -> Option<Server> {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(TestDb::create("brain_e2e")?),
        };
        Some(Server {
            child: None,
            port: free_port(),
            data_dir: tempfile::tempdir().expect("server data dir"),
            pg,
        })
    }

    /// `brain-server args…` on this server's data dir and database.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SERVER_BIN);
        cmd.args(args)
            .env("BRAIN_DATA_DIR", self.data_dir.path())
            .env("BRAIN_ADMIN_TOKEN", "e2e-admin-token-0123456789abcdef")
            .env("BRAIN_RATE_LIMIT_PER_SEC", "10000")
            .env("BRAIN_RATE_LIMIT_BURST", "10000")
            .env_remove("BRAIN_LISTEN")
            .env_remove("DATABASE_URL");
        if let Some(db) = &self.pg {
            cmd.env("DATABASE_URL", &db.url);
        }
        cmd
    }

    /// Mints a key for `customer` (works with the server up or down); the plaintext key.
    pub(crate) fn mint_key(&self, customer: &str) -> String {
        let out = self
            .command(&["mint-key", customer, &format!("{customer} Inc")])
            .output()
            .expect("run brain-server mint-key");
        assert!(
            out.status.success(),
            "mint-key: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8 key")
            .trim()
            .to_owned()
    }

    /// Starts `serve` and waits until `/v1/healthz` answers 2xx.
    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let listen = format!("127.0.0.1:{}", self.port);
        let child = self
            .command(&["serve", "--listen", &listen])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn brain-server");
        self.child = Some(child);
        let client = reqwest::blocking::Client::new();
        let healthy = wait_until(Duration::from_secs(30), || {
            client
                .get(format!("{}/v1/healthz", self.url()))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        assert!(healthy, "brain-server did not become healthy on {listen}");
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL brain-server");
            child.wait().expect("reap brain-server");
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything in the server's `events` and `dead_letters` tables, read straight from its
    /// database (SQLite file or Postgres), not through the server.
    pub(crate) fn stored(&self) -> Stored {
        // The same two reads on either backend; only the casts differ.
        let (rows, dead): (Vec<EventRow>, Vec<(String,)>) = block_on(async {
            match &self.pg {
                None => {
                    let path = self.data_dir.path().join("brain.db");
                    let mut conn =
                        sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                            .await
                            .expect("open the server's SQLite file");
                    let rows = sqlx::query_as(
                        "SELECT event_id, run_id, event_type, CAST(payload AS TEXT) FROM events",
                    )
                    .fetch_all(&mut conn)
                    .await
                    .expect("select events");
                    let dead = sqlx::query_as("SELECT CAST(raw AS TEXT) FROM dead_letters")
                        .fetch_all(&mut conn)
                        .await
                        .expect("select dead letters");
                    let _ = conn.close().await;
                    (rows, dead)
                }
                Some(db) => {
                    let mut conn = sqlx::PgConnection::connect(&db.url)
                        .await
                        .expect("connect to the server's Postgres database");
                    let rows = sqlx::query_as(
                        "SELECT event_id::text, run_id, event_type, payload::text FROM events",
                    )
                    .fetch_all(&mut conn)
                    .await
                    .expect("select events");
                    let dead = sqlx::query_as("SELECT raw::text FROM dead_letters")
                        .fetch_all(&mut conn)
                        .await
                        .expect("select dead letters");
                    let _ = conn.close().await;
                    (rows, dead)
                }
            }
        });
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
            all_text.push('\n');
        }
        Stored { events, all_text }
    }
}

/// How a server's stored events fall into runs: agent id → run id (`None` for NULL) → event
/// type → count.
pub(crate) type RunsByAgent = BTreeMap<String, BTreeMap<Option<String>, BTreeMap<String, i64>>>;

impl Server {
    /// The stored events counted per agent, run id and event type, grouped by the server's
    /// own database (SQLite file or Postgres), not through the server: the join a run read
    /// makes.
    pub(crate) fn runs_by_agent(&self) -> RunsByAgent {
        const SQL: &str = "SELECT agent_id, run_id, event_type, COUNT(*) FROM events \
                           GROUP BY agent_id, run_id, event_type";
        let rows: Vec<(String, Option<String>, String, i64)> = block_on(async {
            match &self.pg {
                None => {
                    let path = self.data_dir.path().join("brain.db");
                    let mut conn =
                        sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                            .await
                            .expect("open the server's SQLite file");
                    let rows = sqlx::query_as(SQL)
                        .fetch_all(&mut conn)
                        .await
                        .expect("count events per run");
                    let _ = conn.close().await;
                    rows
                }
                Some(db) => {
                    let mut conn = sqlx::PgConnection::connect(&db.url)
                        .await
                        .expect("connect to the server's Postgres database");
                    let rows = sqlx::query_as(SQL)
                        .fetch_all(&mut conn)
                        .await
                        .expect("count events per run");
                    let _ = conn.close().await;
                    rows
                }
            }
        });
        let mut out = RunsByAgent::new();
        for (agent, run, event_type, n) in rows {
            out.entry(agent)
                .or_default()
                .entry(run)
                .or_default()
                .insert(event_type, n);
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Before the fields: the process goes first, then its database and data dir.
        self.kill9();
    }
}

// ---------------------------------------------------------------------------------------------
// The emitter.

/// One customer box: an env file, a spool, and `brain-emit` run as the hooks run it, with no
/// Brain variables from the test's own environment.
#[derive(Debug)]
pub(crate) struct Emitter {
    pub(crate) dir: TempDir,
    agent_id: String,
}

impl Emitter {
    /// A box whose agent id is `agent_id` and whose env file holds `env_file`.
    pub(crate) fn new(agent_id: &str, env_file: &str) -> Emitter {
        let e = Emitter {
            dir: tempfile::tempdir().expect("box dir"),
            agent_id: agent_id.to_owned(),
        };
        e.write_env(env_file);
        e
    }

    /// A box that delivers to `url` with `key`.
    pub(crate) fn configured(agent_id: &str, url: &str, key: &str) -> Emitter {
        Emitter::new(agent_id, &format!("BRAIN_URL={url}\nBRAIN_API_KEY={key}\n"))
    }

    /// Replaces the env file's contents.
    pub(crate) fn write_env(&self, text: &str) {
        std::fs::write(self.dir.path().join("brain.env"), text).expect("write env file");
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool.db")
    }

    /// `brain-emit args…` on this box, stdio not set.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(EMIT_BIN);
        cmd.args(args);
        self.environment(&mut cmd);
        cmd
    }

    /// Gives `cmd` this box's environment: its env file, spool and agent id, and none of the
    /// Brain variables of the test's own environment.
    pub(crate) fn environment(&self, cmd: &mut Command) {
        for var in [
            "BRAIN_URL",
            "BRAIN_API_KEY",
            "BRAIN_RUN_ID",
            "PAPERCLIP_RUN_ID",
            "PAPERCLIP_AGENT_ID",
            "BRAIN_SPOOL_MAX_BYTES",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("BRAIN_ENV_FILE", self.dir.path().join("brain.env"))
            .env("BRAIN_SPOOL", self.spool())
            .env("BRAIN_AGENT_ID", &self.agent_id);
    }

    /// Runs `brain-emit args…` with `stdin` and waits.
    pub(crate) fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn brain-emit");
        {
            let mut pipe = child.stdin.take().expect("stdin");
            // A command may exit before reading everything: ignore EPIPE.
            let _ = pipe.write_all(stdin);
        }
        child.wait_with_output().expect("wait brain-emit")
    }

    /// Runs a hook and checks the hook rules: exit 0, nothing on stdout.
    pub(crate) fn hook(&self, args: &[&str], stdin: &[u8]) {
        let out = self.run(args, stdin);
        assert_eq!(
            out.status.code(),
            Some(0),
            "hook {args:?} must exit 0; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "hook {args:?} printed on stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// Runs a stdin-driven hook with `payload` as its JSON input.
    pub(crate) fn hook_json(&self, sub: &str, payload: &Value) {
        self.hook(&[sub], &serde_json::to_vec(payload).expect("payload JSON"));
    }

    pub(crate) fn flush_wait(&self) -> Output {
        self.run(&["flush", "--wait"], b"")
    }

    /// `status --json`, parsed.
    pub(crate) fn status(&self) -> Value {
        let out = self.run(&["status", "--json"], b"");
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        // SPEC §7: exit 1 exactly when it reports a configuration error.
        let reports_config_error = status["config_errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty());
        assert_eq!(
            out.status.code(),
            Some(i32::from(reports_config_error)),
            "status: {status}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        status
    }

    /// The queued envelopes, oldest first, read from the spool file.
    pub(crate) fn queued(&self) -> Vec<Value> {
        let path = self.spool();
        let bodies: Vec<(String,)> = block_on(async {
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("open the spool");
            let rows = sqlx::query_as("SELECT body FROM queue ORDER BY seq")
                .fetch_all(&mut conn)
                .await
                .expect("select the queue");
            let _ = conn.close().await;
            rows
        });
        bodies
            .into_iter()
            .map(|(b,)| serde_json::from_str(&b).expect("queued body is JSON"))
            .collect()
    }
}

/// The elements of a hook-payload fixture (each one is one hook's stdin).
pub(crate) fn payloads(name: &str) -> Vec<Value> {
    let path = Path::new(FIXTURES).join("hook-payloads").join(name);
    let text = std::fs::read_to_string(path).expect("read hook payload fixture");
    serde_json::from_str(&text).expect("hook payload fixture is JSON")
}
