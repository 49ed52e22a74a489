//! `brain-emit flush` against a real `brain-server`: server down, wrong key, right key,
//! another customer's key, and the hooks' own background flusher. What the server stored is
//! read from its database, so every queued id is checked to have arrived.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::helpers::{Backend, Emitter, Server, payloads, wait_until};

/// The ids of the events the server stored.
fn stored_ids(server: &Server) -> BTreeSet<String> {
    server
        .stored()
        .events
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

fn flush_against_a_real_server(backend: Backend) {
    let Some(mut server) = Server::new(backend) else {
        return;
    };
    let url = server.url();
    // Hooks run unconfigured (no background flusher); flush gets URL + key by flag.
    let sb = Emitter::new(
        "agent_test_1",
        "# test env file\nBRAIN_AGENT_ID=agent_test_1\n",
    );
    let payload = serde_json::to_vec(&payloads("post_tool_use.json").remove(0)).unwrap();
    for _ in 0..3 {
        sb.hook(&["tool-call"], &payload);
    }
    sb.hook(&["error", "--kind", "k", "--message", "m"], b"");
    let queued: BTreeSet<String> = sb
        .queued()
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(queued.len(), 4, "four distinct events queued");

    // Server down (the key is minted on its data dir): --wait fails with a reason, rows stay.
    let key = server.mint_key("acme");
    let started = Instant::now();
    let out = sb.run(&["flush", "--wait", "--url", &url, "--api-key", &key], b"");
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unavailable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "--wait does not sleep on back-off"
    );
    assert_eq!(sb.queued().len(), 4);
    let status = sb.status();
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot reach"),
        "{status}"
    );

    // Wrong key: configuration error, rows kept.
    server.start();
    let bad = "m8brain_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = sb.run(&["flush", "--wait", "--url", &url, "--api-key", bad], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("configuration error"));
    assert_eq!(sb.queued().len(), 4);
    assert!(
        sb.status()["config_error"]
            .as_str()
            .unwrap()
            .contains("401")
    );
    assert!(stored_ids(&server).is_empty(), "nothing stored yet");

    // Server up, right key: everything delivered, spool empty, errors cleared, and the server
    // stored exactly the queued events.
    let out = sb.run(&["flush", "--wait", "--url", &url, "--api-key", &key], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepted 4"));
    assert!(sb.queued().is_empty());
    let status = sb.status();
    assert_eq!(status["depth"], 0);
    assert!(status["last_success_at_ms"].as_i64().is_some());
    assert!(status["config_error"].is_null());
    assert_eq!(
        stored_ids(&server),
        queued,
        "the server stored the queued ids"
    );

    // Another customer's key sending the same agent id: rejected (agent_forbidden) and kept
    // in the local dead-letter table, not retried forever; the server stores nothing of it.
    let other = server.mint_key("globex");
    sb.hook(&["error", "--kind", "k", "--message", "m2"], b"");
    let out = sb.run(
        &["flush", "--wait", "--url", &url, "--api-key", &other],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("rejected 1"));
    assert_eq!(sb.status()["dead_letters"], 1);
    assert_eq!(
        stored_ids(&server),
        queued,
        "a forbidden event is not stored"
    );

    // Hooks configured for delivery start a detached background flusher themselves.
    sb.write_env(&format!(
        "BRAIN_AGENT_ID=agent_test_1\nBRAIN_URL={url}\nBRAIN_API_KEY=\"{key}\"\n"
    ));
    let started = Instant::now();
    for _ in 0..5 {
        sb.hook(&["tool-call"], &payload);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "hooks do not wait on delivery"
    );
    assert!(
        wait_until(Duration::from_secs(15), || sb.queued().is_empty()),
        "the background flusher did not drain the spool; status: {}",
        sb.status()
    );
    assert_eq!(
        stored_ids(&server).len(),
        queued.len() + 5,
        "the background flusher delivered the five"
    );
}

mod flush_against_a_real_server {
    #[test]
    fn sqlite() {
        super::flush_against_a_real_server(super::Backend::Sqlite);
    }
    #[test]
    fn postgres() {
        super::flush_against_a_real_server(super::Backend::Postgres);
    }
}
