//! Noticing a damaged WAL. When SQLite rebuilds its WAL index (each hook process is the
//! first connection, so at nearly every open) it replays frames while their checksums chain;
//! at the first frame that does not, it stops, and every transaction committed after that
//! point is silently dropped (and later overwritten). This module looks for such
//! transactions so the loss leaves a trace (see `Spool::note_wal_loss` in `recovery`).
//!
//! The check (file format from SQLite's "WAL-mode file format" documentation) reads the
//! WAL and follows its checksum chain from the header, as SQLite's recovery does: frames of
//! an earlier WAL generation (other salts) are leftovers. A frame of this generation that
//! breaks the chain, followed by a commit frame of this generation, means committed
//! transactions were dropped: one per such commit frame. A WAL header whose own checksum is
//! wrong, with frames after it, means SQLite dropped every frame: lost, in unknown number.
//!
//! It never opens the `-shm` file (or the database file): closing a descriptor drops every
//! POSIX lock the process holds on that file, SQLite's included, and another process then
//! truncating the shared memory would crash this one with SIGBUS. The WAL file carries no
//! lock. The WAL is kept short (see `connection`), so reading it costs about what SQLite's
//! own recovery does, a fraction of a millisecond.
//!
//! A suspicion is confirmed under the write lock (no writer can then be half-way through
//! appending or restarting the WAL) before it is recorded; see [`Suspicion`].

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Most bytes of WAL read in one check (the automatic checkpoint keeps it near 4 MiB).
const MAX_WAL_BYTES: u64 = 16 * 1024 * 1024;

/// Committed transactions a damaged WAL made SQLite drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WalLoss {
    /// Identifies this damage (generation salts and the last dropped commit frame's header),
    /// so later opens that see the same leftover frames do not count them again.
    pub(super) key: String,
    /// Dropped commits (one per hook transaction); `None` when the WAL header itself is
    /// damaged and they cannot be told apart.
    pub(super) commits: Option<u64>,
}

/// A possible loss found without the write lock: confirm it with [`check`] again while
/// holding the lock before recording it.
pub(super) type Suspicion = WalLoss;

/// Looks for commits SQLite dropped from the WAL of the spool at `db`; `None` when there are
/// none or it cannot tell (no WAL, unreadable).
pub(super) fn check(db: &Path) -> Option<Suspicion> {
    let wal = File::open(side(db, "-wal")).ok()?;
    let wal_len = wal.metadata().ok()?.len().min(MAX_WAL_BYTES);
    if wal_len <= 32 {
        return None;
    }
    let mut bytes = vec![0u8; usize::try_from(wal_len).ok()?];
    wal.read_exact_at(&mut bytes, 0).ok()?;
    let (header, frames) = bytes.split_at(32);
    let header: &[u8; 32] = header.try_into().ok()?;
    let page_size = be(&header[8..]);
    let frame_len = 24 + usize::try_from(page_size).ok()?;
    if frames.len() < frame_len {
        return None;
    }
    let Some(big_endian) = byte_order(header) else {
        return Some(header_damaged(header));
    };
    let mut sum = (be(&header[24..]), be(&header[28..]));
    if !(512..=65_536).contains(&page_size) || checksum((0, 0), &header[..24], big_endian) != sum {
        return Some(header_damaged(header));
    }
    let salts = &header[16..24];
    let mut broken = false;
    let mut dropped = 0u64;
    let mut last_dropped: Option<&[u8]> = None;
    for frame in frames.chunks_exact(frame_len) {
        let (head, page) = frame.split_at(24);
        let ours = &head[8..16] == salts;
        let commit = be(&head[4..]) != 0;
        if !broken {
            let next = checksum(checksum(sum, &head[..8], big_endian), page, big_endian);
            if ours && next == (be(&head[16..]), be(&head[20..])) {
                sum = next;
                continue;
            }
            broken = true;
        }
        if ours && commit {
            dropped += 1;
            last_dropped = Some(head);
        }
    }
    let last = last_dropped?;
    Some(WalLoss {
        key: format!("{}:{}", hex(salts), hex(last)),
        commits: Some(dropped),
    })
}

fn header_damaged(header: &[u8; 32]) -> WalLoss {
    WalLoss {
        key: format!("header:{}", hex(header)),
        commits: None,
    }
}

/// Whether the WAL's checksums read words big-endian (magic 0x377f0683) or little-endian
/// (0x377f0682); `None` for a damaged magic number.
fn byte_order(header: &[u8; 32]) -> Option<bool> {
    match be(header) {
        0x377f_0682 => Some(false),
        0x377f_0683 => Some(true),
        _ => None,
    }
}

/// SQLite's WAL checksum of `data` (a multiple of 8 bytes) continuing from `(s0, s1)`.
fn checksum((mut s0, mut s1): (u32, u32), data: &[u8], big_endian: bool) -> (u32, u32) {
    let word = |b: &[u8]| {
        let w = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    for pair in data.chunks_exact(8) {
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

/// The big-endian `u32` at the start of `b`.
fn be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn side(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
