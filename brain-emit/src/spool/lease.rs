//! The `lease` table: at most one flusher delivers at a time. A lease names its holder (a
//! random token) and expires unless renewed, so a dead holder never wedges delivery; a hook
//! claims it for the background flusher it is about to start inside its enqueue transaction.
//!
//! Two things keep a lease from outliving its holder by more than the TTL:
//!
//! - **The wall clock is not trusted.** No writer sets an expiry further than
//!   [`LEASE_TTL_MS`] ahead of its own clock, so a lease that expires later than
//!   `now + LEASE_TTL_MS` (plus [`CLOCK_SLACK_MS`]) was written by a clock that was ahead
//!   (or has since been stepped back): it is treated as expired, or it would block every
//!   other flusher for as long as the clock was off.
//! - **A dead holder is noticed at once.** A flusher records who it is (`pid`, and in
//!   `process` the boot id, PID namespace and start time, see [`ProcessId`]); when that
//!   process is gone (no `/proc/<pid>`, a zombie, or the PID reused by a process started at
//!   another time, or the machine rebooted since) its lease is free. A holder in another
//!   PID namespace cannot be checked and keeps its lease until it expires; so does a lease
//!   claimed by a hook for a flusher not started yet (`process` is NULL).

use std::sync::OnceLock;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{MetaKey, Spool, SpoolError, meta, now_ms};

/// How long a lease lasts without renewal, in ms; also the bound on how far ahead of the
/// reader's clock any lease may expire (longer TTLs asked of this module are cut to it).
pub const LEASE_TTL_MS: i64 = 30_000;

/// How far past `now + LEASE_TTL_MS` an expiry may lie before it counts as written by a
/// clock that was ahead, in ms: a reader's `now` may be taken a moment before the holder
/// renews, and a clock slewed by NTP moves by milliseconds, not hours.
const CLOCK_SLACK_MS: i64 = 5_000;

impl Spool {
    /// Takes the delivery lease for `token` when it is free, expired (see the module
    /// documentation for what counts), or already ours; for at most `ttl_ms`
    /// (≤ [`LEASE_TTL_MS`]) from now.
    ///
    /// # Errors
    /// [`SpoolError::Query`] when a statement fails.
    pub(crate) fn acquire_lease(&mut self, token: &str, ttl_ms: i64) -> Result<bool, SpoolError> {
        Ok(take(&self.conn, token, ttl_ms, now_ms(), ProcessId::own())?)
    }

    /// Extends our lease to `ttl_ms` (≤ [`LEASE_TTL_MS`]) from now and records this process
    /// as its holder (a flusher adopting the lease a hook claimed for it); false when it is
    /// no longer ours.
    ///
    /// # Errors
    /// [`SpoolError::Query`] when the statement fails.
    pub(crate) fn renew_lease(&mut self, token: &str, ttl_ms: i64) -> Result<bool, SpoolError> {
        let changed = self.conn.execute(
            "UPDATE lease SET expires_at_ms = ?2, pid = ?3, process = ?4 WHERE id = 1 AND holder = ?1",
            params![
                token,
                now_ms() + ttl_ms.min(LEASE_TTL_MS),
                std::process::id(),
                ProcessId::own().map(ProcessId::to_column),
            ],
        )?;
        Ok(changed == 1)
    }

    /// Gives the lease up if it is ours.
    pub(crate) fn release_lease(&mut self, token: &str) -> Result<(), SpoolError> {
        self.conn
            .execute("DELETE FROM lease WHERE id = 1 AND holder = ?1", [token])?;
        Ok(())
    }

    /// Whether someone holds a live lease.
    #[cfg(test)]
    pub(crate) fn lease_live(&self) -> Result<bool, SpoolError> {
        Ok(is_live(&self.conn, now_ms())?)
    }
}

/// The lease row as stored.
struct Lease {
    holder: String,
    pid: i64,
    process: Option<String>,
    expires_at_ms: i64,
}

impl Lease {
    /// Whether the lease still binds others at `now` (Unix ms): not expired, not expiring
    /// implausibly far ahead, and its holder not known to be gone.
    fn binds_at(&self, now: i64) -> bool {
        self.expires_at_ms > now
            && self.expires_at_ms <= now + LEASE_TTL_MS + CLOCK_SLACK_MS
            && !holder_is_gone(self.pid, self.process.as_deref())
    }
}

fn read(conn: &Connection) -> Result<Option<Lease>, rusqlite::Error> {
    conn.prepare_cached("SELECT holder, pid, process, expires_at_ms FROM lease WHERE id = 1")?
        .query_row([], |r| {
            Ok(Lease {
                holder: r.get(0)?,
                pid: r.get(1)?,
                process: r.get(2)?,
                expires_at_ms: r.get(3)?,
            })
        })
        .optional()
}

/// Whether someone holds a lease that binds at `now` (Unix ms).
pub(super) fn is_live(conn: &Connection, now: i64) -> Result<bool, rusqlite::Error> {
    Ok(read(conn)?.is_some_and(|l| l.binds_at(now)))
}

/// Writes the lease for `token` until `now + ttl_ms` (at most [`LEASE_TTL_MS`]) when it is
/// free, no longer binding at `now`, or already held by `token`; whether it was taken.
/// `me` is recorded as the holder's process (`None`: unknown, trust the expiry).
///
/// The row is judged, then replaced only if it is still the row judged (same holder and
/// expiry), so two processes taking it at once cannot both win.
fn take(
    conn: &Connection,
    token: &str,
    ttl_ms: i64,
    now: i64,
    me: Option<&ProcessId>,
) -> Result<bool, rusqlite::Error> {
    let current = read(conn)?;
    let (seen_holder, seen_expiry) = match &current {
        Some(l) if l.holder != token && l.binds_at(now) => return Ok(false),
        Some(l) => (Some(l.holder.as_str()), Some(l.expires_at_ms)),
        None => (None, None),
    };
    let changed = conn
        .prepare_cached(
            "INSERT INTO lease (id, holder, pid, process, expires_at_ms) VALUES (1, ?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE
             SET holder = excluded.holder, pid = excluded.pid, process = excluded.process,
                 expires_at_ms = excluded.expires_at_ms
             WHERE lease.holder = ?5 AND lease.expires_at_ms = ?6",
        )?
        .execute(params![
            token,
            std::process::id(),
            me.map(ProcessId::to_column),
            now + ttl_ms.min(LEASE_TTL_MS),
            seen_holder,
            seen_expiry,
        ])?;
    Ok(changed == 1)
}

/// Claims the lease for a background flusher about to be spawned, when no binding lease is
/// held and the retry schedule allows it; returns the new holder's token.
///
/// The token is fresh, so "already ours" never applies. The hook's own process is not
/// recorded as the holder (it exits at once; the flusher records itself when it adopts
/// the lease), so until then only the expiry bounds the claim.
pub(super) fn claim_for_background(
    tx: &Transaction<'_>,
    ttl_ms: i64,
) -> Result<Option<String>, SpoolError> {
    let now = now_ms();
    let not_before = meta::get_i64(tx, MetaKey::NextAttemptAtMs)?;
    if not_before.is_some_and(|t| t > now) {
        return Ok(None);
    }
    let token = uuid::Uuid::new_v4().to_string();
    Ok(take(tx, &token, ttl_ms, now, None)?.then_some(token))
}

/// A process, precisely enough to tell later whether it still runs: the kernel boot it ran
/// in, its PID namespace, and its start time (so a reused PID is not mistaken for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcessId {
    /// `/proc/sys/kernel/random/boot_id`.
    boot_id: String,
    /// The `/proc/self/ns/pid` link, e.g. `pid:[4026531836]`.
    pid_ns: String,
    /// Field 22 of `/proc/<pid>/stat`: start time in clock ticks since boot.
    start_ticks: u64,
}

impl ProcessId {
    /// This process; `None` without a readable `/proc`. Read once per process (three small
    /// reads) and kept: none of it changes while the process runs.
    fn own() -> Option<&'static ProcessId> {
        static OWN: OnceLock<Option<ProcessId>> = OnceLock::new();
        OWN.get_or_init(|| {
            Some(ProcessId {
                boot_id: boot_id()?,
                pid_ns: pid_namespace()?,
                start_ticks: proc_stat(std::process::id().into())?.start_ticks,
            })
        })
        .as_ref()
    }

    /// As stored in `lease.process`: the three fields separated by spaces.
    fn to_column(&self) -> String {
        format!("{} {} {}", self.boot_id, self.pid_ns, self.start_ticks)
    }

    fn from_column(s: &str) -> Option<ProcessId> {
        let mut parts = s.split(' ');
        let id = ProcessId {
            boot_id: parts.next()?.to_owned(),
            pid_ns: parts.next()?.to_owned(),
            start_ticks: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(id)
    }
}

/// Whether the lease holder recorded as `pid` + `process` has certainly stopped: it ran in
/// an earlier boot, or in our PID namespace with no live process of that PID and start
/// time. `false` whenever that cannot be told (no identity recorded, another namespace, no
/// `/proc`). Costs one small `/proc` read.
fn holder_is_gone(pid: i64, process: Option<&str>) -> bool {
    let (Some(holder), Some(me)) = (process.and_then(ProcessId::from_column), ProcessId::own())
    else {
        return false;
    };
    if holder.boot_id != me.boot_id {
        return true;
    }
    if holder.pid_ns != me.pid_ns {
        return false;
    }
    match proc_stat(pid) {
        None => true,
        Some(stat) => stat.zombie || stat.start_ticks != holder.start_ticks,
    }
}

/// What `/proc/<pid>/stat` says about a process.
struct ProcStat {
    /// State `Z` (zombie) or `X` (dead): it no longer runs.
    zombie: bool,
    /// Start time in clock ticks since boot.
    start_ticks: u64,
}

/// `/proc/<pid>/stat`, when such a process exists (in our PID namespace).
fn proc_stat(pid: i64) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may
/// hold spaces and parentheses itself, so fields are counted after the last `)`: state is
/// field 3, start time field 22.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        zombie: matches!(fields.first().copied(), Some("Z" | "X")),
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned()).filter(|s| !s.is_empty() && !s.contains(' '))
}

fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let link = link.to_str()?.to_owned();
    (!link.is_empty() && !link.contains(' ')).then_some(link)
}

#[cfg(test)]
pub(super) mod testing {
    //! Lease rows as other processes leave them, for tests.

    use super::*;

    /// Writes the lease row as a holder with `pid`, `process` and `expires_at_ms` would.
    pub(in crate::spool) fn put_lease(
        spool: &Spool,
        holder: &str,
        pid: i64,
        process: Option<String>,
        expires_at_ms: i64,
    ) {
        spool
            .conn
            .execute(
                "INSERT OR REPLACE INTO lease (id, holder, pid, process, expires_at_ms)
                 VALUES (1, ?1, ?2, ?3, ?4)",
                params![holder, pid, process, expires_at_ms],
            )
            .unwrap();
    }

    /// This process's identity as stored.
    pub(in crate::spool) fn own_process() -> String {
        ProcessId::own().unwrap().to_column()
    }

    /// A stored identity like ours but with another start time.
    pub(in crate::spool) fn own_process_started_at(ticks: u64) -> String {
        ProcessId {
            start_ticks: ticks,
            ..ProcessId::own().unwrap().clone()
        }
        .to_column()
    }

    /// A stored identity from another boot.
    pub(in crate::spool) fn process_of_another_boot() -> String {
        ProcessId {
            boot_id: "00000000-0000-0000-0000-000000000000".into(),
            ..ProcessId::own().unwrap().clone()
        }
        .to_column()
    }

    /// A stored identity in another PID namespace.
    pub(in crate::spool) fn process_in_another_namespace() -> String {
        ProcessId {
            pid_ns: "pid:[1]".into(),
            ..ProcessId::own().unwrap().clone()
        }
        .to_column()
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 290881 99";
        let stat = parse_stat(line).unwrap();
        assert_eq!((stat.zombie, stat.start_ticks), (false, 290_881));
        let zombie = "7 (x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 5 99";
        assert!(parse_stat(zombie).unwrap().zombie);
        assert!(parse_stat("7 (x) S 1").is_none());
    }
}
