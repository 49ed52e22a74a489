//! `brain-emit doctor` on a healthy box and on boxes broken one way each: a real server with
//! a minted key, the shipped managed-settings drop-in wired to the binary under test, a
//! spool in the box's dir, and a stand-in `systemctl` for the timer.
//!
//! Every case checks the exit code and which checks fail, by name: the broken one, and
//! only the ones that cannot pass without it (a missing env file leaves no URL either).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Backend, EMIT_BIN, Emitter, Server, free_port, wait_until};

/// The checks of `doctor`, in the order it runs them.
const CHECKS: [&str; 9] = [
    "env_file", "settings", "url", "server", "spool", "backlog", "drop_in", "hooks", "timer",
];

/// The drop-in as shipped.
const SHIPPED_DROP_IN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../brain-emit/integrations/claude-code/50-m8trx-brain.json"
);

/// A box for doctor: an [`Emitter`] plus a drop-in and a `systemctl` in its dir.
struct DoctorBox {
    emitter: Emitter,
    drop_in: PathBuf,
    systemctl: PathBuf,
}

impl DoctorBox {
    /// A box configured for `url` with `key`, its drop-in wired to the binary under test.
    fn new(url: &str, key: &str) -> DoctorBox {
        let emitter = Emitter::configured("agent_doctor_1", url, key);
        let drop_in = emitter.dir.path().join("50-m8trx-brain.json");
        let b = DoctorBox {
            drop_in,
            systemctl: emitter.dir.path().join("systemctl"),
            emitter,
        };
        b.wire_drop_in_to(EMIT_BIN);
        // A systemctl that says the timer is active, and says so only for that unit.
        std::fs::write(
            &b.systemctl,
            "#!/bin/sh\n[ \"$1 $2\" = \"is-active m8trx-brain-heartbeat.timer\" ] && echo active && exit 0\necho inactive; exit 3\n",
        )
        .unwrap();
        std::fs::set_permissions(&b.systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
        b
    }

    /// Writes the shipped drop-in with its program replaced by `program`.
    fn wire_drop_in_to(&self, program: &str) {
        let shipped = std::fs::read_to_string(SHIPPED_DROP_IN).unwrap();
        assert!(shipped.contains("/usr/local/bin/brain-emit "));
        std::fs::write(
            &self.drop_in,
            shipped.replace("/usr/local/bin/brain-emit", program),
        )
        .unwrap();
    }

    /// `brain-emit doctor --json`, with `env` set after the box's own environment.
    fn doctor(&self, env: &[(&str, &Path)]) -> (Output, Value) {
        let mut cmd = self.emitter.command(&["doctor", "--json"]);
        cmd.env("BRAIN_DROP_IN", &self.drop_in)
            .env("BRAIN_SYSTEMCTL", &self.systemctl);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor --json printed no JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, report)
    }
}

/// The check named `name` in a report.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// The names of the checks with `status`.
fn with_status<'a>(report: &'a Value, status: &str) -> Vec<&'a str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

/// `report`'s failing checks are `failing`, the first one's detail holds `says`, and doctor
/// exited 1.
#[track_caller]
fn fails(case: &str, out: &Output, report: &Value, failing: &[&str], says: &str) {
    assert_eq!(out.status.code(), Some(1), "{case}: {report:#}");
    assert_eq!(report["ok"], false, "{case}");
    assert_eq!(with_status(report, "fail"), failing, "{case}: {report:#}");
    let detail = check(report, failing[0])["detail"].as_str().unwrap();
    assert!(detail.contains(says), "{case}: {detail}");
}

#[test]
fn doctor_on_a_healthy_box_passes_every_check_and_the_json_has_its_shape() {
    let mut server = Server::new(Backend::Sqlite).unwrap();
    let key = server.mint_key("acme");
    server.start();
    let b = DoctorBox::new(&server.url(), &key);

    let (out, report) = b.doctor(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The shape: {"ok", "checks": [{"name", "status", "detail"}]}, every check, in order.
    let top: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(top, ["ok", "checks"]);
    assert_eq!(report["ok"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, ["name", "status", "detail"], "{c}");
            assert!(c["detail"].as_str().is_some_and(|d| !d.is_empty()), "{c}");
            c["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, CHECKS);
    assert_eq!(with_status(&report, "ok"), CHECKS, "{report:#}");

    // The details say what was found.
    let env_file = check(&report, "env_file")["detail"].as_str().unwrap();
    assert!(env_file.contains("named by BRAIN_ENV_FILE"), "{env_file}");
    let whoami = check(&report, "server")["detail"].as_str().unwrap();
    assert!(whoami.contains("customer acme, key key_"), "{whoami}");
    let hooks = check(&report, "hooks")["detail"].as_str().unwrap();
    assert!(hooks.contains("this binary"), "{hooks}");
    for event in [
        "PreToolUse",
        "PostToolUse",
        "PostToolUseFailure",
        "Stop",
        "SubagentStop",
        "SessionEnd",
    ] {
        assert!(hooks.contains(event), "{hooks}");
    }
    let backlog = check(&report, "backlog")["detail"].as_str().unwrap();
    assert!(backlog.starts_with("0 events queued"), "{backlog}");

    // The text form: one line per check, status first.
    let mut cmd = b.emitter.command(&["doctor"]);
    cmd.env("BRAIN_DROP_IN", &b.drop_in)
        .env("BRAIN_SYSTEMCTL", &b.systemctl);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), CHECKS.len(), "{text}");
    for (line, name) in lines.iter().zip(CHECKS) {
        let words: Vec<&str> = line.split_whitespace().take(2).collect();
        assert_eq!(words, ["ok", name], "{text}");
    }

    // Without the stand-in: the real systemctl when systemd runs, else a warning that does
    // not fail the run.
    if !Path::new("/run/systemd/system").is_dir() {
        let mut cmd = b.emitter.command(&["doctor", "--json"]);
        cmd.env("BRAIN_DROP_IN", &b.drop_in)
            .env_remove("BRAIN_SYSTEMCTL");
        let out = cmd.output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{report:#}");
        let timer = check(&report, "timer");
        assert_eq!(timer["status"], "warn");
        assert!(
            timer["detail"].as_str().unwrap().contains("no systemd"),
            "{timer}"
        );
    }
}

#[test]
fn doctor_names_each_broken_check() {
    let mut server = Server::new(Backend::Sqlite).unwrap();
    let key = server.mint_key("acme");
    server.start();
    let url = server.url();

    // Missing env file: nothing configured, so the settings fail too and the URL and server
    // checks are skipped, not failed.
    let b = DoctorBox::new(&url, &key);
    std::fs::remove_file(b.emitter.dir.path().join("brain.env")).unwrap();
    let (out, report) = b.doctor(&[]);
    fails(
        "missing env file",
        &out,
        &report,
        &["env_file", "settings"],
        "does not exist",
    );
    assert_eq!(with_status(&report, "skip"), ["url", "server"]);

    // A URL without a scheme: a configuration error, and the server is not asked.
    let b = DoctorBox::new(&url.replace("http://", ""), &key);
    let (out, report) = b.doctor(&[]);
    fails(
        "URL without a scheme",
        &out,
        &report,
        &["url"],
        "has no scheme",
    );
    assert_eq!(check(&report, "server")["status"], "skip");

    // Server down: unreachable, and only that.
    let b = DoctorBox::new(&format!("http://127.0.0.1:{}", free_port()), &key);
    let (out, report) = b.doctor(&[]);
    fails(
        "server down",
        &out,
        &report,
        &["server"],
        "server unreachable",
    );

    // Wrong URL: something that is not Brain answers 404 with its own page.
    let (foreign, _thread) = foreign_http_server();
    let b = DoctorBox::new(&foreign, &key);
    let (out, report) = b.doctor(&[]);
    fails(
        "wrong URL",
        &out,
        &report,
        &["server"],
        "wrong URL or a proxy",
    );
    assert!(
        check(&report, "server")["detail"]
            .as_str()
            .unwrap()
            .contains("404"),
        "{report:#}"
    );

    // Unwritable spool: its directory would have to be made under a regular file (the
    // tests may run as root, for whom permission bits are no obstacle).
    let b = DoctorBox::new(&url, &key);
    let blocker = b.emitter.dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let (out, report) = b.doctor(&[("BRAIN_SPOOL", &blocker.join("spool").join("spool.db"))]);
    fails("unwritable spool", &out, &report, &["spool"], "cannot open");
    assert_eq!(check(&report, "backlog")["status"], "skip");

    // Drop-in missing.
    let b = DoctorBox::new(&url, &key);
    std::fs::remove_file(&b.drop_in).unwrap();
    let (out, report) = b.doctor(&[]);
    fails(
        "drop-in missing",
        &out,
        &report,
        &["drop_in"],
        "does not exist",
    );
    assert_eq!(check(&report, "hooks")["status"], "skip");

    // Drop-in wiring another binary.
    let b = DoctorBox::new(&url, &key);
    b.wire_drop_in_to("/opt/elsewhere/brain-emit");
    let (out, report) = b.doctor(&[]);
    fails(
        "drop-in wiring another binary",
        &out,
        &report,
        &["hooks"],
        "PreToolUse runs /opt/elsewhere/brain-emit, not this binary",
    );

    // Timer inactive (the stand-in systemctl answers for another unit only).
    let b = DoctorBox::new(&url, &key);
    std::fs::write(&b.systemctl, "#!/bin/sh\necho inactive; exit 3\n").unwrap();
    let (out, report) = b.doctor(&[]);
    fails("timer inactive", &out, &report, &["timer"], "is inactive");

    // Revoked key: refused, as soon as the server sees the revocation (within 5 s).
    let b = DoctorBox::new(&url, &key);
    let (_, report) = b.doctor(&[]);
    let detail = check(&report, "server")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_id = detail
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap_or_else(|| panic!("no key id in {detail}"));
    let revoked = server.command(&["revoke-key", key_id]).output().unwrap();
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(15), || {
            last = b.doctor(&[]).1;
            check(&last, "server")["status"] == "fail"
        }),
        "the revoked key is still accepted: {last:#}"
    );
    let (out, report) = b.doctor(&[]);
    fails("revoked key", &out, &report, &["server"], "key refused");
}

/// A loopback HTTP server that is not Brain: every request gets a 404 HTML page.
fn foreign_http_server() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "<html><body><h1>404 Not Found</h1>nginx</body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, thread)
}

#[test]
fn status_exits_1_while_it_reports_a_configuration_error() {
    let key = "m8brain_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let b = Emitter::configured("agent_doctor_1", "brain.example:8080", key);
    let out = b.run(&["status"], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("CONFIG ERROR:   BRAIN_URL=\"brain.example:8080\" has no scheme"),
        "{text}"
    );
    // The helper checks the exit code against `config_errors`.
    assert_eq!(b.status()["config_errors"].as_array().unwrap().len(), 1);

    // Fixed: no configuration error to report (nothing was sent yet), exit 0.
    b.write_env(&format!(
        "BRAIN_URL=http://127.0.0.1:{}\nBRAIN_API_KEY={key}\n",
        free_port()
    ));
    let out = b.run(&["status"], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(b.status()["config_errors"], serde_json::json!([]));
}
