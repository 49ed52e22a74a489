//! Test helpers: a temp directory with its own spool and env file, and a runner for the real
//! `brain-emit` binary.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of the built `brain-emit` binary.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_brain-emit");

/// A fixture file under `fixtures/claude-code/`.
pub(crate) fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/claude-code")
        .join(rel)
}

/// The elements of a hook-payload fixture (each one is one hook stdin).
pub(crate) fn payloads(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture(&format!("hook-payloads/{name}"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A sandbox: temp dir, env file, spool path; every command runs with a clean Brain env.
pub(crate) struct Sandbox {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) spool: PathBuf,
    pub(crate) env_file: PathBuf,
    pub(crate) extra_env: Vec<(String, String)>,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool").join("spool.db");
        let env_file = dir.path().join("brain.env");
        std::fs::write(&env_file, "# test env file\nBRAIN_AGENT_ID=agent_test_1\n").unwrap();
        Sandbox {
            dir,
            spool,
            env_file,
            extra_env: Vec::new(),
        }
    }

    /// Replaces the env file's contents.
    pub(crate) fn write_env(&self, text: &str) {
        std::fs::write(&self.env_file, text).unwrap();
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        for var in [
            "BRAIN_URL",
            "BRAIN_API_KEY",
            "BRAIN_AGENT_ID",
            "PAPERCLIP_AGENT_ID",
            "BRAIN_RUN_ID",
            "PAPERCLIP_RUN_ID",
            "BRAIN_SPOOL_MAX_BYTES",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("BRAIN_ENV_FILE", &self.env_file)
            .env("BRAIN_SPOOL", &self.spool);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `brain-emit args…` with `stdin` and waits.
    pub(crate) fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_with_stdin(self.command(args), stdin)
    }

    /// Runs a hook and asserts the hook contract: exit 0 and nothing on stdout.
    pub(crate) fn hook(&self, args: &[&str], stdin: &[u8]) -> Output {
        let out = self.run(args, stdin);
        assert_hook_contract(args, &out);
        out
    }

    /// The queued envelopes, oldest first.
    pub(crate) fn rows(&self) -> Vec<Value> {
        let conn = rusqlite::Connection::open(&self.spool).unwrap();
        let mut stmt = conn.prepare("SELECT body FROM queue ORDER BY seq").unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
            .collect()
    }

    /// The queued envelopes' raw JSON text.
    pub(crate) fn raw_rows(&self) -> Vec<String> {
        let conn = rusqlite::Connection::open(&self.spool).unwrap();
        let mut stmt = conn.prepare("SELECT body FROM queue ORDER BY seq").unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A single SQL count on the spool.
    pub(crate) fn count(&self, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(&self.spool).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// `status --json` parsed.
    pub(crate) fn status(&self) -> Value {
        let out = self.run(&["status", "--json"], b"");
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The hook log beside the spool ("" when absent).
    pub(crate) fn hook_log(&self) -> String {
        std::fs::read_to_string(self.spool.with_file_name("brain-emit.log")).unwrap_or_default()
    }
}

pub(crate) fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        // A hook may exit before reading everything (e.g. bad flags): ignore EPIPE.
        let _ = input.write_all(stdin);
    }
    child.wait_with_output().unwrap()
}

pub(crate) fn assert_hook_contract(args: &[&str], out: &Output) {
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

/// A free loopback port (bound then released).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `brain-server` on embedded SQLite, killed on drop.
pub(crate) struct Server {
    pub(crate) child: Option<Child>,
    pub(crate) port: u16,
    pub(crate) data_dir: PathBuf,
    pub(crate) bin: PathBuf,
}

/// The `brain-server` binary next to ours, built when missing; `None` (with a loud message)
/// when it cannot be had.
pub(crate) fn server_binary() -> Option<PathBuf> {
    let bin = Path::new(BIN).with_file_name("brain-server");
    let works = |b: &Path| {
        Command::new(b).arg("--help").output().is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("mint-key")
        })
    };
    if works(&bin) {
        return Some(bin);
    }
    let built = Command::new(env!("CARGO"))
        .args(["build", "-p", "brain-server"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .is_ok_and(|s| s.success());
    if built && works(&bin) {
        return Some(bin);
    }
    eprintln!(
        "SKIPPED: brain-server binary unavailable (could not build it with `cargo build -p brain-server`)"
    );
    None
}

impl Server {
    /// Starts a server on a fresh data dir and port.
    pub(crate) fn start(bin: &Path, data_dir: &Path, port: u16) -> Server {
        let mut s = Server {
            child: None,
            port,
            data_dir: data_dir.to_path_buf(),
            bin: bin.to_path_buf(),
        };
        s.up();
        s
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_remove("DATABASE_URL")
            .env("BRAIN_DATA_DIR", &self.data_dir)
            .env("BRAIN_ADMIN_TOKEN", "test-admin-token-0123456789abcdef")
            .env("BRAIN_RATE_LIMIT_PER_SEC", "10000")
            .env("BRAIN_RATE_LIMIT_BURST", "10000");
        cmd
    }

    /// Mints a key for `customer`.
    pub(crate) fn mint_key(&self, customer: &str) -> String {
        let out = self
            .command()
            .args(["mint-key", customer, customer])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mint-key failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// (Re)starts the process and waits until it answers.
    pub(crate) fn up(&mut self) {
        let child = self
            .command()
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("brain-server did not start listening on {}", self.port);
    }

    /// Stops the process.
    pub(crate) fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Event ids in the server's store, via its export command; empty (with a note) when
    /// this server build has no working `export`.
    pub(crate) fn stored_event_ids(&self) -> Vec<String> {
        let out = self
            .command()
            .args(["export", "--format", "jsonl"])
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "NOTE: brain-server export unavailable; not cross-checking stored ids: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            );
            return Vec::new();
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.get("event_id").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.down();
    }
}
