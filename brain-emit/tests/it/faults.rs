//! Issue 6, agent side: the emitter under faults that are not crashes (answers that are not
//! Brain's, wrong clocks, dead flushers, full disks, damaged spools). Each test names the
//! case it covers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brain_emit::spool::Spool;
use chrono::Utc;
use shared_proto::{AgentId, ErrorPayload, Event, Payload};

use super::{edge_case_upstream, fixed_upstream, flush_wait_against, stop_upstream, wait_until};
use crate::helpers::Sandbox;

/// Queues `n` error events straight into the sandbox's spool (faster than `n` hooks).
pub(crate) fn queue_errors(sb: &Sandbox, n: usize) {
    let events: Vec<Event> = (0..n)
        .map(|i| {
            Event::new(
                uuid::Uuid::new_v4(),
                Utc::now(),
                AgentId::parse("agent_test_1").unwrap(),
                None,
                Payload::Error(ErrorPayload {
                    kind: "k".into(),
                    message_120c: format!("queued {i}"),
                    ..ErrorPayload::default()
                }),
            )
            .unwrap()
        })
        .collect();
    Spool::open(&sb.spool)
        .unwrap()
        .enqueue_all(&events)
        .unwrap();
}

/// Case 9: a 413 that is not Brain's error envelope with a size code (a proxy's HTML page, a
/// bare status, another code) is no verdict on the events: every row stays, nothing is
/// dead-lettered, `status` shows a configuration error and `flush --wait` exits 1.
#[test]
fn a_413_that_is_not_brains_size_verdict_keeps_every_row() {
    for body in [
        "<html><head><title>413 Request Entity Too Large</title></head><body><center><h1>413 Request Entity Too Large</h1></center><hr><center>nginx</center></body></html>",
        "",
        r#"{"error":{"code":"quota","message":"not a Brain size code"}}"#,
    ] {
        let sb = Sandbox::new();
        queue_errors(&sb, 40);
        let (port, upstream) = fixed_upstream("413 Payload Too Large", body);
        let out = flush_wait_against(&sb, port);
        stop_upstream(port);
        let served = upstream.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{body:?}: stderr: {stderr}");
        assert!(
            stderr.contains("413"),
            "{body:?}: the reason is given: {stderr}"
        );
        assert_eq!(served, 1, "{body:?}: no splitting on a foreign 413");
        assert_eq!(sb.rows().len(), 40, "{body:?}: every row kept");
        let status = sb.status();
        assert_eq!(status["dead_letters"], 0, "{body:?}");
        assert!(
            status["config_error"]
                .as_str()
                .is_some_and(|e| e.contains("413")),
            "{body:?}: {status}"
        );
    }
}

/// Case 9, the other side: Brain's own 413 still splits the batch, and an event Brain
/// refuses as too large even alone is dead-lettered (and the spool is then empty).
#[test]
fn brains_body_too_large_still_isolates_the_oversized_events() {
    let sb = Sandbox::new();
    queue_errors(&sb, 3);
    let (port, upstream) = fixed_upstream(
        "413 Payload Too Large",
        r#"{"error":{"code":"body_too_large","message":"the body is larger than 1048576 bytes"}}"#,
    );
    let out = flush_wait_against(&sb, port);
    stop_upstream(port);
    let served = upstream.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // [3] → [1] dead, [2] → [1] dead, [1] dead.
    assert_eq!(served, 5);
    assert!(sb.rows().is_empty());
    assert_eq!(sb.status()["dead_letters"], 3);
}

/// `flush --wait` to a loopback upstream that accepts every batch; the output, how long it
/// took, and the batch sizes the upstream saw.
fn flush_wait_to_a_good_upstream(sb: &Sandbox) -> (std::process::Output, Duration, Vec<usize>) {
    let (port, upstream) = edge_case_upstream(500, false);
    let started = Instant::now();
    let out = flush_wait_against(sb, port);
    let took = started.elapsed();
    stop_upstream(port);
    (out, took, upstream.join().unwrap())
}

/// Case 11: a lease written by a flusher whose clock ran 6 h ahead (its expiry is 6 h past
/// now + TTL) no longer blocks other flushers until the clock catches up.
#[test]
fn a_lease_left_by_a_clock_6_hours_ahead_does_not_block_delivery() {
    let sb = Sandbox::new();
    queue_errors(&sb, 5);
    let six_hours_ahead = Utc::now().timestamp_millis() + 6 * 3600 * 1000;
    rusqlite::Connection::open(&sb.spool)
        .unwrap()
        .execute(
            "INSERT INTO lease (id, holder, pid, expires_at_ms) VALUES (1, 'clock-ahead', ?1, ?2)",
            rusqlite::params![std::process::id(), six_hours_ahead],
        )
        .unwrap();
    let (out, took, seen) = flush_wait_to_a_good_upstream(&sb);
    assert_eq!(
        out.status.code(),
        Some(0),
        "took {took:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(seen, [5]);
    assert!(sb.rows().is_empty());
    // `status` does not show such a lease as a running flusher either.
    rusqlite::Connection::open(&sb.spool)
        .unwrap()
        .execute(
            "INSERT INTO lease (id, holder, pid, expires_at_ms) VALUES (1, 'clock-ahead', ?1, ?2)",
            rusqlite::params![std::process::id(), six_hours_ahead],
        )
        .unwrap();
    assert_eq!(sb.status()["lease_held"], false);
}

/// Case 11: a flusher killed (kill -9) while it holds the lease in the middle of a request
/// hands delivery over at once: the next `flush --wait` sees its process is gone instead of
/// waiting out the TTL (30 s).
#[test]
fn a_flusher_killed_while_holding_the_lease_is_taken_over_at_once() {
    let sb = Sandbox::new();
    queue_errors(&sb, 5);
    // Accepts connections (the kernel's backlog) and never answers: the request hangs.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", black_hole.local_addr().unwrap());
    let mut stuck = sb
        .command(&[
            "flush",
            "--wait",
            "--url",
            &url,
            "--api-key",
            "m8brain_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || sb.status()["lease_held"]
            == true),
        "the stuck flusher took the lease"
    );
    stuck.kill().unwrap();
    stuck.wait().unwrap();
    let (out, took, seen) = flush_wait_to_a_good_upstream(&sb);
    drop(black_hole);
    assert_eq!(
        out.status.code(),
        Some(0),
        "took {took:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(seen, [5]);
    assert!(sb.rows().is_empty());
}

/// A tmpfs of a few hundred KiB mounted on a fresh directory and unmounted on drop: a real
/// file system that fills up (ENOSPC), not a simulation.
struct TinyDisk {
    dir: PathBuf,
}

impl TinyDisk {
    /// Mounts it under `parent`; `None` (said on stderr as SKIPPED) when this machine does not
    /// let us mount, except under CI (`CI` set), where that fails the test.
    fn mount(parent: &Path) -> Option<TinyDisk> {
        let dir = parent.join("tiny-disk");
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
            .arg(&dir)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(TinyDisk { dir }),
            other => {
                let why = format!("cannot mount a tmpfs (needs root): {other:?}");
                assert!(std::env::var_os("CI").is_none(), "{why}");
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: {why}; the full-disk case is NOT checked"
                );
                None
            }
        }
    }

    /// Fills the disk with a file; returns its path (delete it to make room again).
    fn fill(&self) -> PathBuf {
        let filler = self.dir.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5Au8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Case 12: hooks that cannot spool because the disk is full leave a trace once space is
/// back: `status` counts them (on their own and in `dropped`, which the heartbeat reports)
/// and shows the last one's error.
#[test]
fn hooks_that_cannot_spool_on_a_full_disk_are_counted() {
    let mut sb = Sandbox::new();
    let Some(disk) = TinyDisk::mount(sb.dir.path()) else {
        return;
    };
    sb.spool = disk.dir.join("spool.db");
    sb.hook(&["error", "--kind", "k", "--message", "before"], b"");
    assert_eq!(sb.rows().len(), 1);
    let filler = disk.fill();
    for i in 0..3 {
        sb.hook(
            &["error", "--kind", "k", "--message", &format!("lost {i}")],
            b"",
        );
    }
    std::fs::remove_file(filler).unwrap();
    assert_eq!(sb.rows().len(), 1, "the disk really was full");
    let status = sb.status();
    assert_eq!(status["hooks_lost"], 3, "{status}");
    assert_eq!(status["dropped"], 3, "{status}");
    let last = status["last_hook_error"].as_str().unwrap_or_default();
    // SQLite says "disk I/O error" (growing the WAL index) or "database or disk is full".
    assert!(
        last.contains(" error: ") && (last.contains("disk I/O error") || last.contains("full")),
        "the last loss is the last hook error: {status}"
    );
    // Writable again: hooks spool as before, and the count stays.
    sb.hook(&["error", "--kind", "k", "--message", "after"], b"");
    assert_eq!(sb.rows().len(), 2);
    assert_eq!(sb.status()["hooks_lost"], 3);
    drop(disk);
}

/// Overwrites, with random bytes, the page of the sandbox's spool (checkpointed first, so
/// the page is read from the main file) that holds `needle`; returns the page number.
fn damage_the_page_holding(sb: &Sandbox, needle: &str) -> usize {
    let conn = rusqlite::Connection::open(&sb.spool).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&sb.spool).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap();
    let page = at / 4096;
    assert!(page > 0, "not the header page");
    let random: Vec<u8> = (0..4096 / 16)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .collect();
    bytes[page * 4096..(page + 1) * 4096].copy_from_slice(&random);
    std::fs::write(&sb.spool, bytes).unwrap();
    page
}

/// Case 10: random bytes over a page in the middle of a spool of 300 queued events. Hooks
/// keep writing; `flush --wait` then finds the damage, moves the file aside, and delivers
/// every row that was still readable (salvaged into the fresh spool); `status` says how
/// many were salvaged and lost, and counts the lost ones as dropped.
#[test]
fn flush_delivers_the_readable_rows_of_a_spool_damaged_in_the_middle() {
    let sb = Sandbox::new();
    queue_errors(&sb, 300);
    damage_the_page_holding(&sb, "queued 150\"");
    sb.hook(
        &["error", "--kind", "k", "--message", "after the damage"],
        b"",
    );
    let (out, took, seen) = flush_wait_to_a_good_upstream(&sb);
    assert_eq!(
        out.status.code(),
        Some(0),
        "took {took:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = sb.status();
    let salvaged = status["salvaged_rows"].as_u64().unwrap_or_default();
    let lost = status["lost_rows"].as_u64().unwrap_or_default();
    assert_eq!(salvaged + lost, 301, "{status}");
    assert!(lost > 0 && lost < 40, "one page of rows is lost: {status}");
    assert_eq!(
        seen.iter().sum::<usize>() as u64,
        salvaged,
        "every salvaged row delivered once: {seen:?}"
    );
    assert_eq!(status["depth"], 0);
    assert_eq!(
        status["dropped"], lost,
        "the lost rows are counted as drops"
    );
    let text = sb.run(&["status"], b"");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("salvaged {salvaged} queued events, lost {lost}")),
        "{text}"
    );
}

/// Case 10: a spool truncated to 0 bytes loses what it held; the next open says so, in
/// `status` (text and JSON), instead of starting an empty spool as if nothing happened.
#[test]
fn a_spool_truncated_to_0_bytes_leaves_a_trace() {
    let sb = Sandbox::new();
    for i in 0..5 {
        sb.hook(
            &["error", "--kind", "k", "--message", &format!("e{i}")],
            b"",
        );
    }
    let conn = rusqlite::Connection::open(&sb.spool).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    std::fs::File::create(&sb.spool).unwrap(); // truncates
    sb.hook(&["error", "--kind", "k", "--message", "after"], b"");
    assert_eq!(sb.rows().len(), 1);
    let status = sb.status();
    assert!(status["found_empty_at_ms"].is_i64(), "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("found empty")),
        "{status}"
    );
    let text = sb.run(&["status"], b"");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("found empty:"), "{text}");
    // A fresh spool where none was before is not reported.
    let fresh = Sandbox::new();
    fresh.hook(&["error", "--kind", "k", "--message", "first"], b"");
    assert!(fresh.status()["found_empty_at_ms"].is_null());
}

/// Case 10: random bytes over a frame in the middle of the WAL. SQLite drops every
/// transaction committed after it without a word; `status` now says how many (counted
/// once, and as dropped events).
#[test]
fn a_damaged_wal_leaves_a_trace() {
    let sb = Sandbox::new();
    for i in 0..12 {
        sb.hook(
            &["error", "--kind", "k", "--message", &format!("e{i}")],
            b"",
        );
    }
    let mut wal_path = sb.spool.clone().into_os_string();
    wal_path.push("-wal");
    let mut wal = std::fs::read(&wal_path).unwrap();
    let page = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
    let frame = 24 + page;
    let frames = (wal.len() - 32) / frame;
    assert!(
        frames > 12,
        "every hook's commit is still in the WAL: {frames} frames"
    );
    let at = 32 + (frames / 2) * frame + 24;
    let random: Vec<u8> = (0..page / 16)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .collect();
    wal[at..at + page].copy_from_slice(&random);
    std::fs::write(&wal_path, wal).unwrap();

    let status = sb.status();
    let lost = status["wal_lost_commits"].as_u64().unwrap_or_default();
    assert!(lost >= 1, "{status}");
    assert_eq!(sb.rows().len() as u64 + lost, 12, "{status}");
    assert_eq!(status["dropped"], lost);
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("WAL was damaged")),
        "{status}"
    );
    let text = sb.run(&["status"], b"");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("damaged WAL:"), "{text}");
    // Counted once, however often the spool is opened again.
    sb.hook(&["error", "--kind", "k", "--message", "after"], b"");
    assert_eq!(sb.status()["wal_lost_commits"], lost);
}

/// Case 10: `status` is often the first to read a damaged page (here the oldest rows'); it
/// salvages and replaces the spool as a hook or flush would, and reports the figures,
/// instead of failing with "database disk image is malformed".
#[test]
fn status_on_a_damaged_spool_salvages_and_reports() {
    let sb = Sandbox::new();
    queue_errors(&sb, 300);
    damage_the_page_holding(&sb, "queued 0\"");
    let out = sb.run(&["status", "--json"], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let salvaged = status["salvaged_rows"].as_u64().unwrap_or_default();
    let lost = status["lost_rows"].as_u64().unwrap_or_default();
    assert_eq!(salvaged + lost, 300, "{status}");
    assert!(lost > 0 && lost < 40, "{status}");
    assert_eq!(status["depth"], salvaged);
}
