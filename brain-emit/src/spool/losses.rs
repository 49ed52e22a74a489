//! The losses file beside the spool (`<spool>.losses`): hook invocations whose events could
//! not be spooled at all (disk full, read-only or damaged file system, a lock held past the
//! busy timeout), counted where a full disk cannot stop the count.
//!
//! When the spool cannot take a write, neither can its `meta` table, and a new file (the
//! hook log) cannot be created either. So this file is created, at its full size
//! ([`FILE_BYTES`], real bytes, not a sparse hole), whenever a spool is opened and it is
//! missing, while there is room; a loss is then recorded by rewriting those bytes in place,
//! which needs no new block (ext4, xfs, tmpfs; not a copy-on-write file system). Writers
//! take an exclusive `flock` around read-modify-write, so concurrent hooks count every loss.
//!
//! The count is cumulative and never reset: `status` and the heartbeat report it (as part of
//! [`super::SpoolStats::dropped`] and on its own), and the last loss's message stands as the
//! last hook error until a later hook error replaces it. [`note_hook_problem`] is where a
//! hook's problem is recorded: here when it is a failed write, and in `meta` when the spool
//! takes it.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::{MetaKey, Spool, SpoolError, meta};

/// What a hook's problem did to its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookProblem {
    /// Nothing was lost to the spool (bad input, a flusher that could not start, …).
    Other,
    /// The spool could not take the hook's write; `lost_events` is false when the write
    /// carried no event (a `tool-start` record).
    SpoolWrite {
        /// Whether events were lost with it.
        lost_events: bool,
    },
}

impl HookProblem {
    /// [`HookProblem::SpoolWrite`] when a [`SpoolError`] is in `error`'s chain (the spool
    /// could not be opened, read or written), else [`HookProblem::Other`].
    pub(crate) fn of(error: &anyhow::Error, lost_events: bool) -> HookProblem {
        if error.chain().any(|c| c.is::<SpoolError>()) {
            HookProblem::SpoolWrite { lost_events }
        } else {
            HookProblem::Other
        }
    }
}

/// Records a hook's `problem` where `status` (and, for lost events, the heartbeat) shows
/// it: a failed spool write in the losses file beside the spool at `spool` (which a full disk
/// does not stop), and every problem as `meta`'s last hook error when the spool takes the
/// write. Best effort: a hook has already logged the problem and exits 0 regardless.
pub(crate) fn note_hook_problem(spool: &Path, command: &str, problem: &str, kind: HookProblem) {
    let now = Utc::now();
    let at_ms = now.timestamp_millis();
    let line = format!(
        "{} {command}: {problem}",
        now.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    if let HookProblem::SpoolWrite { lost_events } = kind
        && let Err(e) = record(spool, lost_events, &line, at_ms)
    {
        tracing::debug!(error = %e, "cannot count the lost hook write");
    }
    if let Ok(mut spool) = Spool::open(spool) {
        let _ = spool.note_hook_error(&line, at_ms);
    }
}

impl Spool {
    /// Stores `line` as the last hook error, which happened at `at_ms` (Unix ms).
    fn note_hook_error(&mut self, line: &str, at_ms: i64) -> Result<(), SpoolError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        meta::put(&tx, MetaKey::LastHookError, line)?;
        meta::put(&tx, MetaKey::LastHookErrorAtMs, &at_ms.to_string())?;
        tx.commit()?;
        Ok(())
    }
}

/// Size of the losses file, in bytes: one record, JSON padded with spaces.
const FILE_BYTES: usize = 4096;

/// Longest message kept for the last loss, in bytes (the record must fit [`FILE_BYTES`]).
const MAX_MESSAGE_BYTES: usize = 3000;

/// What the losses file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Losses {
    /// Hook invocations whose events could not be spooled (each counts once, though an
    /// `llm-usage` hook may have carried several events).
    pub(super) hooks_lost: u64,
    /// When the last loss happened, Unix ms.
    pub(super) last_at_ms: Option<i64>,
    /// The last loss: time, subcommand and error, one line.
    pub(super) last_error: Option<String>,
}

/// The losses file of the spool at `spool`: `<spool>.losses`.
pub(super) fn path_for(spool: &Path) -> PathBuf {
    let mut s = spool.as_os_str().to_owned();
    s.push(".losses");
    PathBuf::from(s)
}

/// Creates the losses file at its full size when it is missing; best effort (a later open
/// retries). Costs one `stat` when it exists.
///
/// Written under a temporary name and linked into place, so no reader or recorder ever sees
/// it half-written, and a concurrent creator never overwrites a recorded loss.
pub(super) fn ensure(spool: &Path) {
    let path = path_for(spool);
    if path.exists() {
        return;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let created = (|| -> std::io::Result<()> {
        let file = File::create(&tmp)?;
        file.write_all_at(&encode(&Losses::default()), 0)?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, &path)
    })();
    if let Err(e) = created
        && e.kind() != std::io::ErrorKind::AlreadyExists
    {
        tracing::debug!(error = %e, path = %path.display(), "cannot create the losses file");
    }
    let _ = std::fs::remove_file(&tmp);
}

/// What the losses file of the spool at `spool` says; zero when it is missing or unreadable.
pub(super) fn read(spool: &Path) -> Losses {
    let mut text = String::new();
    match File::open(path_for(spool)).and_then(|mut f| f.read_to_string(&mut text)) {
        Ok(_) => decode(&text),
        Err(_) => Losses::default(),
    }
}

/// Counts one hook invocation whose events could not be spooled (`lost_events`; false for a
/// failed write that lost no event, such as a `tool-start` record), and records `line` (one
/// line: time, subcommand, error) at `at_ms` (Unix ms) as the last loss.
///
/// # Errors
/// The I/O error when the losses file can neither be opened nor created, or not written.
fn record(spool: &Path, lost_events: bool, line: &str, at_ms: i64) -> std::io::Result<()> {
    let path = path_for(spool);
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ensure(spool);
            OpenOptions::new().read(true).write(true).open(&path)?
        }
        Err(e) => return Err(e),
    };
    file.lock()?;
    let mut buf = vec![0u8; FILE_BYTES];
    let n = file.read_at(&mut buf, 0)?;
    let mut losses = decode(&String::from_utf8_lossy(&buf[..n]));
    if lost_events {
        losses.hooks_lost += 1;
    }
    losses.last_at_ms = Some(at_ms);
    losses.last_error = Some(truncate(line, MAX_MESSAGE_BYTES).to_owned());
    file.write_all_at(&encode(&losses), 0)
    // Dropping the file releases the lock.
}

/// The record as stored: JSON, padded with spaces to [`FILE_BYTES`], ending in a newline.
fn encode(losses: &Losses) -> Vec<u8> {
    let mut out = serde_json::to_vec(losses).unwrap_or_else(|_| b"{}".to_vec());
    out.truncate(FILE_BYTES - 1);
    out.resize(FILE_BYTES - 1, b' ');
    out.push(b'\n');
    out
}

fn decode(text: &str) -> Losses {
    serde_json::from_str(text.trim_end_matches([' ', '\n', '\0'])).unwrap_or_default()
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_are_counted_in_place_and_survive_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("s.db");
        assert_eq!(read(&spool), Losses::default());
        ensure(&spool);
        assert_eq!(std::fs::metadata(path_for(&spool)).unwrap().len(), 4096);
        record(&spool, true, "t1 tool-call: disk full", 1).unwrap();
        record(&spool, false, "t2 tool-start: disk full", 2).unwrap();
        record(&spool, true, &"é".repeat(4000), 3).unwrap();
        let losses = read(&spool);
        assert_eq!((losses.hooks_lost, losses.last_at_ms), (2, Some(3)));
        assert!(losses.last_error.unwrap().len() <= MAX_MESSAGE_BYTES);
        assert_eq!(std::fs::metadata(path_for(&spool)).unwrap().len(), 4096);
        // A damaged record reads as zero and is rewritten whole by the next loss.
        std::fs::write(path_for(&spool), b"\xff garbage").unwrap();
        assert_eq!(read(&spool), Losses::default());
        record(&spool, true, "t4", 4).unwrap();
        assert_eq!(read(&spool).hooks_lost, 1);
    }

    #[test]
    fn concurrent_recorders_count_every_loss() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("s.db");
        ensure(&spool);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..25 {
                        record(&spool, true, "lost", i).unwrap();
                    }
                });
            }
        });
        assert_eq!(read(&spool).hooks_lost, 200);
    }
}
