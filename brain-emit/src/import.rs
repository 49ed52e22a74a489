//! `brain-emit import`: backfills `llm_usage` events from past Claude Code transcripts.
//!
//! Each session (`<session id>.jsonl` plus its `<session id>/subagents/*.jsonl`) is read
//! through the same per-session ledger the `llm-usage` hook keeps in the spool, by the same
//! loop ([`crate::usage::sweep`]), and events get the same UUIDv5 ids: importing twice, or importing a session the hooks already
//! reported, queues nothing new.
//!
//! A session whose stored ledger cannot be read is not imported (reported as a failure), and
//! after a spool recovery a session without a ledger only counts usage logged after the
//! recovery, exactly as the hook does: importing cannot double count what the hooks already
//! delivered before the spool was lost.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Settings;
use crate::spool::Spool;
use crate::usage::sweep::sweep_session;

/// What an import did.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ImportReport {
    /// Sessions read.
    pub(crate) sessions: u64,
    /// `llm_usage` events queued.
    pub(crate) events: u64,
    /// Transcripts that could not be read, with the reason.
    pub(crate) failures: Vec<String>,
}

/// Imports every session found under `paths` into the spool.
///
/// # Errors
/// When the spool cannot be used or no transcript is found.
pub(crate) fn run(settings: &Settings, paths: &[PathBuf]) -> anyhow::Result<ImportReport> {
    let mut sessions = Vec::new();
    for p in paths {
        collect(p, &mut sessions)
            .with_context(|| format!("looking for transcripts in {}", p.display()))?;
    }
    sessions.sort();
    sessions.dedup();
    if sessions.is_empty() {
        bail!("no Claude Code transcripts (*.jsonl) found");
    }
    let mut spool = Spool::open_with(&settings.spool_path, settings.spool_options())
        .with_context(|| format!("opening the spool {}", settings.spool_path.display()))?;
    let mut report = ImportReport::default();
    for main in &sessions {
        match import_session(settings, &mut spool, main) {
            Ok(n) => {
                report.sessions += 1;
                report.events += n;
            }
            Err(e) => report.failures.push(format!("{}: {e:#}", main.display())),
        }
    }
    Ok(report)
}

/// Main transcripts under `path`: the file itself, or `*.jsonl` files found recursively
/// outside `subagents/` directories.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "subagents") {
                collect(&p, out)?;
            }
        } else if p.extension().is_some_and(|e| e == "jsonl") {
            out.push(p);
        }
    }
    Ok(())
}

/// The time of a session's last activity: the last `timestamp` of its transcript, else the
/// file's modification time, else now.
fn last_activity(main: &Path) -> DateTime<Utc> {
    let from_lines = std::fs::read_to_string(main).ok().and_then(|text| {
        text.lines().rev().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let ts = v.get("timestamp")?.as_str()?;
            DateTime::parse_from_rfc3339(ts)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
    });
    from_lines
        .or_else(|| {
            std::fs::metadata(main)
                .and_then(|m| m.modified())
                .ok()
                .map(DateTime::<Utc>::from)
        })
        .map_or_else(Utc::now, |t| t.min(Utc::now()))
}

fn import_session(settings: &Settings, spool: &mut Spool, main: &Path) -> anyhow::Result<u64> {
    let session_id = main
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .context("transcript file name has no session id")?
        .to_owned();
    let ts = last_activity(main);
    let swept = sweep_session(spool, settings, &session_id, ts, false, |ledger| {
        Ok(ledger.read_session(main)?)
    })?;
    Ok(swept.outcome.inserted)
}
