//! brain-heartbeat as a binary: against a fake Docker Engine API on a Unix socket (speaking
//! the Engine API's JSON), with no Docker at all, and with the server unreachable; and
//! `--check` against a stand-in brain-server answering `GET /v1/whoami`.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers panic on a broken test setup"
)]
mod helpers;

use serde_json::{Value, json};

use crate::helpers::{Box_, FakeBrain, FakeDocker};

#[test]
fn reports_docker_facts_and_spool_figures() {
    let docker = FakeDocker::start(
        json!([
            {"Id": "a1", "Names": ["/agent-acme-1"], "Image": "ghcr.io/m8trx/agent-runtime:2.1.39",
             "State": "running", "Labels": {"m8trx.role": "agent-runtime", "m8trx.agent_id": "agent_acme_1"}},
            {"Id": "a2", "Names": ["/agent-acme-2"], "Image": "ghcr.io/m8trx/agent-runtime:2.1.38",
             "State": "running", "Labels": {"m8trx.role": "agent-runtime", "m8trx.agent_version": "2.1.40"}}
        ]),
        Some(json!({"Id": "p1", "Name": "/paperclip",
            "State": {"Status": "running", "Running": true, "StartedAt": "2026-01-01T00:00:00.000000000Z"}})),
    );
    let b = Box_::new(None);
    let out = b.heartbeat(Some(&docker.socket));
    // No URL or key configured: a configuration error, but the heartbeat is spooled.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = b.spooled("heartbeat");
    assert_eq!(rows.len(), 1);
    let p = &rows[0]["payload"];
    assert_eq!(p["agent_runtime_count"], json!(2));
    assert_eq!(
        p["agent_versions"],
        json!({"agent_acme_1": "2.1.39", "agent-acme-2": "2.1.40"})
    );
    assert!(p["paperclip_uptime_s"].as_u64().unwrap() > 24 * 3600, "{p}");
    assert!(p["host_load_1m"].as_f64().unwrap() >= 0.0);
    assert_eq!(p["spool_depth"], json!(0));
    let requests = docker.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/containers/json?filters=")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r == "/containers/paperclip/json"),
        "{requests:?}"
    );
}

#[test]
fn without_docker_the_fields_are_null_not_invented() {
    let b = Box_::new(None);
    let missing = b.dir.path().join("no-docker.sock");
    b.heartbeat(Some(&missing));
    let rows = b.spooled("heartbeat");
    let p = &rows[0]["payload"];
    assert_eq!(p["paperclip_uptime_s"], Value::Null);
    assert_eq!(p["agent_runtime_count"], Value::Null);
    assert_eq!(p["agent_versions"], json!({}));
}

#[test]
fn paperclip_not_running_is_unknown_uptime() {
    let docker = FakeDocker::start(json!([]), None);
    let b = Box_::new(None);
    b.heartbeat(Some(&docker.socket));
    let p = &b.spooled("heartbeat")[0]["payload"];
    assert_eq!(p["paperclip_uptime_s"], Value::Null);
    assert_eq!(p["agent_runtime_count"], json!(0));
}

#[test]
fn an_unreachable_server_is_not_a_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = Box_::new(Some(&format!("http://127.0.0.1:{port}")));
    let first = b.heartbeat(None);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = b.heartbeat(None);
    assert_eq!(second.status.code(), Some(0));
    let rows = b.spooled("heartbeat");
    assert_eq!(rows.len(), 2, "both heartbeats stay spooled");
    assert_eq!(
        rows[1]["payload"]["spool_depth"],
        json!(1),
        "the second sees the first"
    );
}

/// Bad usage is an operator error: exit 1 with the reason on stderr (not clap's 2, which
/// means an unexpected failure); help and version succeed on stdout.
#[test]
fn bad_flags_exit_1_and_help_exits_0() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_brain-heartbeat"))
            .args(args)
            .env_clear()
            .output()
            .unwrap()
    };

    let out = run(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"),
        "{out:?}"
    );

    let out = run(&["--no-flush=maybe"]);
    assert_eq!(out.status.code(), Some(1), "a bad value too: {out:?}");

    for (flag, want) in [
        ("--help", "Usage: brain-heartbeat"),
        ("--version", "brain-heartbeat "),
    ] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(want),
            "{flag}: {out:?}"
        );
        assert!(out.stderr.is_empty(), "{flag}: {out:?}");
    }
}

/// The names of the checks with `status` in a `--check --json` report.
fn with_status<'a>(report: &'a Value, status: &str) -> Vec<&'a str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[test]
fn check_passes_on_a_wired_box_and_sends_nothing() {
    let brain = FakeBrain::start();
    let docker = FakeDocker::start(json!([]), None);
    let b = Box_::new(Some(&brain.url));
    let (code, report) = b.check(&docker.socket);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(
        with_status(&report, "ok"),
        [
            "env_file", "settings", "url", "server", "spool", "backlog", "docker"
        ],
        "{report:#}"
    );
    let server = &report["checks"][3]["detail"];
    assert!(
        server.as_str().unwrap().contains("customer acme"),
        "{server}"
    );
    assert!(b.spooled("heartbeat").is_empty(), "--check spools nothing");
}

#[test]
fn check_names_what_is_broken() {
    // Nothing configured: the settings fail and the server is not asked; no Docker socket
    // is only a warning (the heartbeat reports the Docker facts as unknown).
    let b = Box_::new(None);
    let (code, report) = b.check(&b.dir.path().join("no-docker.sock"));
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(with_status(&report, "fail"), ["settings"], "{report:#}");
    assert_eq!(
        with_status(&report, "skip"),
        ["url", "server"],
        "{report:#}"
    );
    assert_eq!(with_status(&report, "warn"), ["docker"], "{report:#}");

    // A key the server refuses, and a Docker socket path that is no socket.
    let brain = FakeBrain::start();
    let b = Box_::new(Some(&brain.url));
    std::fs::write(
        b.dir.path().join("brain.env"),
        format!(
            "BRAIN_URL={}\nBRAIN_API_KEY=m8brain_dev_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n",
            brain.url
        ),
    )
    .unwrap();
    let not_a_socket = b.dir.path().join("docker.sock");
    std::fs::write(&not_a_socket, b"").unwrap();
    let (code, report) = b.check(&not_a_socket);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        with_status(&report, "fail"),
        ["server", "docker"],
        "{report:#}"
    );
    assert!(
        report["checks"][3]["detail"]
            .as_str()
            .unwrap()
            .starts_with("key refused"),
        "{report:#}"
    );
}
