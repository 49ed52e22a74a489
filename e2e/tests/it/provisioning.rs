//! The systemd units, checked by the tool their ecosystem uses (`systemd/check.sh`:
//! `systemd-analyze verify` and `security`) and against the paths brain-emit uses; and the
//! helpers the other provisioning tests share (`cloud_init`, `isolate`).
//!
//! A tool that is not installed makes its test say `SKIPPED` on stderr and pass, unless
//! `BRAIN_REQUIRE_TOOLS=1` (CI), where the test fails instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// Whether `tool` is on `PATH`. When it is not: `SKIPPED` on stderr (and `false`), or a panic
/// under `BRAIN_REQUIRE_TOOLS=1`.
#[expect(
    clippy::print_stderr,
    reason = "a skipped test must say so where cargo test shows it"
)]
pub(crate) fn tool_available(tool: &str, what: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    let required = std::env::var_os("BRAIN_REQUIRE_TOOLS").is_some_and(|v| v == "1");
    assert!(
        !required,
        "{tool} is required (BRAIN_REQUIRE_TOOLS=1) but not installed: {what} cannot be checked"
    );
    eprintln!(
        "SKIPPED: {tool} is not installed, {what} NOT checked; set BRAIN_REQUIRE_TOOLS=1 to fail instead"
    );
    false
}

/// Asserts that `out` is a success, showing its stdout and stderr otherwise.
pub(crate) fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `systemd/check.sh`: every unit passes `systemd-analyze verify` in a throw-away root with an
/// executable at each `ExecStart=` path, a unit with a misspelt directive is rejected there
/// (so the pass means something), and both services' `systemd-analyze security --offline`
/// exposure stays at or under 2.5.
#[test]
fn systemd_units_pass_verify_and_security() {
    if !tool_available("systemd-analyze", "the systemd units") {
        return;
    }
    let out = Command::new("bash")
        .arg(repo_root().join("systemd/check.sh"))
        .output()
        .expect("run systemd/check.sh");
    assert_ok("systemd/check.sh", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for unit in [
        "brain-server.service",
        "m8trx-brain-heartbeat.service",
        "m8trx-brain-heartbeat.timer",
    ] {
        assert!(
            stdout.contains(&format!("systemd-analyze verify {unit}: ok")),
            "{unit} not verified:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("negative control (misspelt directive) rejected by verify: ok"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("Overall exposure level").count(),
        2,
        "both services scored:\n{stdout}"
    );
}

/// The unit files and the provisioning script name the paths brain-emit itself uses: its
/// default env file, and its system spool, which the heartbeat's `StateDirectory=` creates and
/// keeps writable.
#[test]
fn units_and_provisioning_use_brain_emits_paths() {
    use brain_emit::config::{DEFAULT_ENV_FILE, SYSTEM_SPOOL_DIR};
    let read = |rel: &str| std::fs::read_to_string(repo_root().join(rel)).expect(rel);
    let unit = read("systemd/m8trx-brain-heartbeat.service");
    let state_dir = SYSTEM_SPOOL_DIR
        .strip_prefix("/var/lib/")
        .expect("the system spool is under /var/lib, where StateDirectory= creates it");
    for line in [
        format!("EnvironmentFile={DEFAULT_ENV_FILE}"),
        format!("StateDirectory={state_dir}"),
        format!("Environment=BRAIN_SPOOL={SYSTEM_SPOOL_DIR}/spool.db"),
        "ExecStart=/usr/local/bin/brain-heartbeat".to_owned(),
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "m8trx-brain-heartbeat.service lacks {line:?}"
        );
    }
    let script = read("cloud-init/m8trx-brain-provision.sh");
    for fragment in [
        format!("env_file=$root{DEFAULT_ENV_FILE}"),
        format!("\"$root{SYSTEM_SPOOL_DIR}\""),
    ] {
        assert!(
            script.contains(&fragment),
            "m8trx-brain-provision.sh lacks {fragment:?}"
        );
    }
}
