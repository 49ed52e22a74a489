//! Test helpers: a temp directory with its own spool and env file, and a runner for the real
//! `brain-emit` binary.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
