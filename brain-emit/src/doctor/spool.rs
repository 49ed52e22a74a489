//! The `spool` check (it opens and can be written) and the `backlog` check (what waits in
//! it, and the drops, losses, salvages and errors `status` reports).

use super::{Check, Status};
use crate::config::Settings;
use crate::output::{fmt_age, fmt_ms};
use crate::spool::{Spool, SpoolStats};

/// Oldest queued event age past which delivery looks stuck: the heartbeat timer flushes
/// every 5 minutes, so anything older has missed a few flushes.
const STALE_MS: u64 = 15 * 60 * 1000;

/// `spool` and `backlog`.
pub(super) fn checks(settings: &Settings) -> Vec<Check> {
    let path = settings.spool_path.display();
    let opened = Spool::open_with(&settings.spool_path, settings.spool_options())
        .map_err(|e| format!("cannot open {path}: {}", crate::error_chain(&e)))
        .and_then(|mut spool| {
            spool
                .check_writable()
                .map_err(|e| format!("{path} cannot be written: {}", crate::error_chain(&e)))?;
            spool
                .with_recovery(|s| s.stats())
                .map_err(|e| format!("cannot read {path}: {}", crate::error_chain(&e)))
        });
    match opened {
        Ok(stats) => vec![
            Check::new("spool", Status::Ok, format!("{path} (writable)")),
            backlog(&stats),
        ],
        Err(why) => vec![
            Check::new("spool", Status::Fail, why),
            Check::new(
                "backlog",
                Status::Skip,
                "not checked: the spool cannot be used",
            ),
        ],
    }
}

/// What the spool holds and what went wrong with it: a warning for anything that means
/// events are waiting too long or were lost.
fn backlog(s: &SpoolStats) -> Check {
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut detail = format!(
        "{} events queued ({:.2} MiB of {:.0} MiB), oldest {}",
        s.depth,
        mb(s.bytes),
        mb(s.max_bytes),
        fmt_age(s.oldest_age_ms)
    );
    let mut problems = Vec::new();
    if s.oldest_age_ms.is_some_and(|a| a > STALE_MS) {
        problems.push(format!(
            "the oldest event has waited {}",
            fmt_age(s.oldest_age_ms)
        ));
    }
    if s.dropped > 0 {
        problems.push(format!(
            "{} dropped ({} heartbeats, {} hooks that could not write)",
            s.dropped, s.dropped_heartbeats, s.hooks_lost
        ));
    }
    if s.dead_letters > 0 {
        problems.push(format!("{} dead letters", s.dead_letters));
    }
    if let Some(e) = &s.config_error {
        problems.push(format!("last flush: configuration error: {e}"));
    } else if let Some(e) = &s.last_error {
        problems.push(format!(
            "last delivery error: {e} (at {})",
            fmt_ms(s.last_error_at_ms)
        ));
    }
    if let Some(e) = &s.last_hook_error {
        problems.push(format!("last hook error: {e}"));
    }
    if let Some(r) = &s.recovered_from {
        problems.push(format!(
            "a corrupt spool was moved aside to {r} (salvaged {}, lost {})",
            s.salvaged_rows.unwrap_or(0),
            s.lost_rows
                .map_or_else(|| "an unknown number".to_owned(), |n| n.to_string())
        ));
    }
    if let Some(t) = s.found_empty_at_ms {
        problems.push(format!("the spool was found empty at {}", fmt_ms(Some(t))));
    }
    if s.wal_lost_commits > 0 {
        problems.push(format!(
            "{} transactions lost to a damaged WAL",
            s.wal_lost_commits
        ));
    }
    detail.push_str(&format!("; last delivery {}", fmt_ms(s.last_success_at_ms)));
    if problems.is_empty() {
        Check::new("backlog", Status::Ok, detail)
    } else {
        detail.push_str("; ");
        detail.push_str(&problems.join("; "));
        Check::new("backlog", Status::Warn, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_spool_is_ok_and_trouble_warns() {
        let fresh = SpoolStats::default();
        assert_eq!(backlog(&fresh).status, Status::Ok);
        let stale = SpoolStats {
            depth: 3,
            oldest_age_ms: Some(STALE_MS + 1),
            ..SpoolStats::default()
        };
        let c = backlog(&stale);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("3 events queued"), "{c:?}");
        let lossy = SpoolStats {
            dropped: 4,
            hooks_lost: 1,
            config_error: Some("server refused the API key (401)".into()),
            ..SpoolStats::default()
        };
        let c = backlog(&lossy);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("4 dropped"), "{c:?}");
        assert!(c.detail.contains("401"), "{c:?}");
    }
}
