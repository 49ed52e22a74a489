//! Tests of the spool on its own: enqueue, the size bound, the lease, recovery.

use std::path::Path;

use chrono::Utc;
use shared_proto::{AgentId, Event, Heartbeat, Payload, ToolCall};
use uuid::Uuid;

use super::*;

fn tool_event() -> Event {
    Event::new(
        Uuid::new_v4(),
        Utc::now(),
        AgentId::parse("agent_1").unwrap(),
        None,
        Payload::ToolCall(ToolCall {
            tool_name: "Bash".into(),
            ok: true,
            ..ToolCall::default()
        }),
    )
    .unwrap()
}

fn heartbeat_event() -> Event {
    Event::new(
        Uuid::new_v4(),
        Utc::now(),
        AgentId::parse("agent_1").unwrap(),
        None,
        Payload::Heartbeat(Heartbeat {
            host_load_1m: 0.5,
            ..Heartbeat::default()
        }),
    )
    .unwrap()
}

#[test]
fn enqueue_is_idempotent_per_event_id_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path().join("s.db")).unwrap();
    let e = tool_event();
    assert_eq!(spool.enqueue(&e).unwrap().inserted, 1);
    assert_eq!(spool.enqueue(&e).unwrap().inserted, 0);
    let stats = spool.stats().unwrap();
    assert_eq!(stats.depth, 1);
    assert_eq!(stats.bytes, serde_json::to_string(&e).unwrap().len() as u64);
    assert!(stats.oldest_age_ms.is_some());
}

#[test]
fn full_spool_drops_heartbeats_first_then_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let one = serde_json::to_string(&tool_event()).unwrap().len() as u64;
    let mut spool = Spool::open_with(
        dir.path().join("s.db"),
        SpoolOptions {
            max_bytes: one * 4 + one / 2,
            when_full: WhenFull::DropOldest,
        },
    )
    .unwrap();
    let first = tool_event();
    spool.enqueue(&first).unwrap();
    spool.enqueue(&heartbeat_event()).unwrap();
    spool.enqueue(&tool_event()).unwrap();
    spool.enqueue(&tool_event()).unwrap();
    // Full: the heartbeat goes first although the first tool call is older.
    let o = spool.enqueue(&tool_event()).unwrap();
    assert_eq!((o.inserted, o.dropped), (1, 1));
    let stats = spool.stats().unwrap();
    assert_eq!((stats.dropped, stats.dropped_heartbeats), (1, 1));
    let ids: Vec<String> = spool
        .peek_batch(10, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    assert_eq!(ids[0], first.event_id().to_string());
    // No heartbeat left: now the oldest event goes.
    spool.enqueue(&tool_event()).unwrap();
    let ids: Vec<String> = spool
        .peek_batch(10, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    assert!(!ids.contains(&first.event_id().to_string()));
    let stats = spool.stats().unwrap();
    assert_eq!((stats.dropped, stats.dropped_heartbeats), (2, 1));
    assert!(stats.bytes <= stats.max_bytes);
}

#[test]
fn drop_newest_policy_keeps_queue() {
    let dir = tempfile::tempdir().unwrap();
    let one = serde_json::to_string(&tool_event()).unwrap().len() as u64;
    let mut spool = Spool::open_with(
        dir.path().join("s.db"),
        SpoolOptions {
            max_bytes: one + one / 2,
            when_full: WhenFull::DropNewest,
        },
    )
    .unwrap();
    let first = tool_event();
    spool.enqueue(&first).unwrap();
    let o = spool.enqueue(&tool_event()).unwrap();
    assert_eq!((o.inserted, o.dropped), (0, 1));
    let rows = spool.peek_batch(10, usize::MAX).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_id, first.event_id().to_string());
}

#[test]
fn lease_is_exclusive_until_released_or_expired() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Spool::open(dir.path().join("s.db")).unwrap();
    let mut b = Spool::open(dir.path().join("s.db")).unwrap();
    assert!(a.acquire_lease("a", 30_000).unwrap());
    assert!(!b.acquire_lease("b", 30_000).unwrap());
    assert!(b.lease_live().unwrap());
    assert!(a.renew_lease("a", 30_000).unwrap());
    assert!(!b.renew_lease("b", 30_000).unwrap());
    a.release_lease("a").unwrap();
    assert!(b.acquire_lease("b", -1).unwrap()); // already expired
    assert!(a.acquire_lease("a", 30_000).unwrap());
}

#[test]
fn corrupt_file_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let mut spool = Spool::open(&path).unwrap();
    assert!(spool.recovered_from().is_some());
    spool.enqueue(&tool_event()).unwrap();
    assert_eq!(spool.stats().unwrap().depth, 1);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("s.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
}

/// A spool at `path` with `n` queued events, checkpointed into the main file, then page 3
/// overwritten: damage past the header that only a statement reading that page finds.
fn corrupt_past_the_header(path: &Path, n: usize) {
    {
        let mut spool = Spool::open(path).unwrap();
        let events: Vec<Event> = (0..n).map(|_| tool_event()).collect();
        spool.enqueue_all(&events).unwrap();
        spool
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() > 4096 * 8, "the spool spans many pages");
    bytes[4096 * 2..4096 * 3].fill(0xA5);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn with_recovery_replaces_a_spool_found_corrupt_and_runs_the_work_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    corrupt_past_the_header(&path, 2000);
    let mut spool = Spool::open(&path).unwrap();
    assert!(spool.recovered_from().is_none(), "the header is intact");
    // An enqueue reads the `event_id` index, whose root is the damaged page.
    let event = tool_event();
    let mut calls = 0;
    let outcome = spool
        .with_recovery(|s| {
            calls += 1;
            s.enqueue(&event)
        })
        .unwrap();
    assert_eq!(calls, 2);
    assert_eq!(outcome.inserted, 1);
    assert!(spool.recovered_from().is_some());
    assert!(spool.recovered_at_ms().unwrap().is_some());
    let stats = spool.stats().unwrap();
    // Only the index was damaged: every queued row is salvaged, then the new event queued.
    assert_eq!(stats.depth, 2001);
    assert_eq!(
        (stats.salvaged_rows, stats.lost_rows),
        (Some(2000), Some(0))
    );
    assert!(stats.recovered_from.unwrap().starts_with("s.db.corrupt-"));
    let last_error = stats.last_error.unwrap();
    assert!(last_error.contains("moved aside"), "{last_error}");
    assert!(last_error.contains("salvaged 2000"), "{last_error}");
    let rows = spool.peek_batch(3000, usize::MAX).unwrap();
    assert_eq!(rows.last().unwrap().event_id, event.event_id().to_string());
}

#[test]
fn with_recovery_leaves_other_failures_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut spool = Spool::open(&path).unwrap();
    spool.enqueue(&tool_event()).unwrap();
    let mut calls = 0;
    let err = spool
        .with_recovery(|_| -> Result<(), SpoolError> {
            calls += 1;
            Err(SpoolError::Query(rusqlite::Error::QueryReturnedNoRows))
        })
        .unwrap_err();
    assert!(matches!(err, SpoolError::Query(_)));
    assert_eq!(calls, 1);
    assert!(spool.recovered_from().is_none());
    assert_eq!(spool.depth().unwrap(), 1, "nothing was moved aside");
}

#[test]
fn meta_keys_are_stored_under_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path().join("s.db")).unwrap();
    spool.set_meta(MetaKey::LastHookError, "boom").unwrap();
    spool.record_failure("down", true, Some(1_234)).unwrap();
    let stored: String = spool
        .conn
        .query_row(
            "SELECT group_concat(key, ',') FROM (SELECT key FROM meta ORDER BY key)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        stored,
        "config_error,last_error,last_error_at_ms,last_hook_error,next_attempt_at_ms"
    );
    let stats = spool.stats().unwrap();
    assert_eq!(stats.last_hook_error.as_deref(), Some("boom"));
    assert_eq!(stats.next_attempt_at_ms, Some(1_234));
    assert_eq!(stats.config_error.as_deref(), Some("down"));
    // A delivery clears the failure and its schedule, not the hook's note.
    spool.settle(&[], &[], &[]).unwrap();
    let stats = spool.stats().unwrap();
    assert_eq!(
        (
            stats.last_error,
            stats.config_error,
            stats.next_attempt_at_ms
        ),
        (None, None, None)
    );
    assert_eq!(stats.last_hook_error.as_deref(), Some("boom"));
    assert!(stats.last_success_at_ms.is_some());
}

#[test]
fn a_lease_expiring_further_ahead_than_the_ttl_does_not_bind() {
    use lease::testing::{own_process, put_lease};
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path().join("s.db")).unwrap();
    let me = i64::from(std::process::id());
    // Written by a flusher whose clock ran 6 h ahead (its process still runs).
    put_lease(
        &spool,
        "clock-ahead",
        me,
        Some(own_process()),
        now_ms() + 6 * 3600 * 1000,
    );
    assert!(!spool.lease_live().unwrap());
    assert!(!spool.stats().unwrap().lease_held);
    assert!(spool.acquire_lease("b", LEASE_TTL_MS).unwrap());
    // Within the TTL, a live holder's lease binds.
    put_lease(
        &spool,
        "honest",
        me,
        Some(own_process()),
        now_ms() + LEASE_TTL_MS - 1_000,
    );
    assert!(spool.lease_live().unwrap());
    assert!(!spool.acquire_lease("b", LEASE_TTL_MS).unwrap());
    // A holder that renewed a moment after the reader read its clock is not "ahead".
    put_lease(
        &spool,
        "just-renewed",
        me,
        Some(own_process()),
        now_ms() + LEASE_TTL_MS + 1_000,
    );
    assert!(!spool.acquire_lease("b", LEASE_TTL_MS).unwrap());
    // No writer sets an expiry past the bound, whatever TTL it is asked for.
    put_lease(&spool, "old", me, None, 0);
    assert!(spool.acquire_lease("b", 6 * 3600 * 1000).unwrap());
    assert!(spool.lease_live().unwrap());
}

#[test]
fn a_lease_whose_holder_is_gone_is_taken_at_once() {
    use lease::testing::*;
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path().join("s.db")).unwrap();
    let me = i64::from(std::process::id());
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = i64::from(child.id());
    child.wait().unwrap();
    let soon = now_ms() + LEASE_TTL_MS - 1_000;
    for (what, pid, process, taken) in [
        ("its PID is gone", dead, Some(own_process()), true),
        (
            "its PID was reused",
            me,
            Some(own_process_started_at(1)),
            true,
        ),
        (
            "it ran before a reboot",
            me,
            Some(process_of_another_boot()),
            true,
        ),
        ("it runs", me, Some(own_process()), false),
        (
            "another PID namespace",
            dead,
            Some(process_in_another_namespace()),
            false,
        ),
        ("a hook's claim, no process yet", dead, None, false),
        (
            "unreadable identity",
            dead,
            Some("garbage".to_owned()),
            false,
        ),
    ] {
        put_lease(&spool, "holder", pid, process, soon);
        assert_eq!(spool.lease_live().unwrap(), !taken, "{what}");
        assert_eq!(
            spool.acquire_lease("taker", LEASE_TTL_MS).unwrap(),
            taken,
            "{what}"
        );
        spool.release_lease("taker").unwrap();
    }
}

#[test]
fn a_version_1_spool_is_brought_up_to_date_keeping_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(schema::SCHEMA_V1).unwrap();
        conn.execute_batch(
            "INSERT INTO queue (event_id, event_type, body, size_bytes, enqueued_at_ms)
             VALUES ('e1', 'error', '{}', 2, 1);
             INSERT INTO lease VALUES (1, 'old', 1, 0);",
        )
        .unwrap();
    }
    let mut spool = Spool::open(&path).unwrap();
    let version: i64 = spool
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(spool.depth().unwrap(), 1);
    assert!(spool.acquire_lease("new", LEASE_TTL_MS).unwrap());
}
