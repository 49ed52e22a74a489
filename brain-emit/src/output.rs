//! Everything brain-emit prints, and the local log hooks write to: the one module allowed to
//! print.
//!
//! Hook subcommands never reach the stdout functions here; their problems go to
//! [`record_hook_problem`], which appends to `brain-emit.log` beside the spool (rotated at
//! 1 MiB) and falls back to stderr only when that file cannot be written.
//!
//! Nothing here uses `print!`/`eprint!`: they panic when the stream is closed (a hook whose
//! stderr pipe was closed would exit 101). Every write ignores its failure instead.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::config::Settings;
use crate::flush::{FlushOutcome, FlushReport};
use crate::spool::SpoolStats;

/// `writeln!` to stderr, ignoring failure: `eprintln!` panics when stderr is closed.
macro_rules! err_line {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `writeln!` to stdout, ignoring failure (a closed stdout pipe counts as success).
macro_rules! out_line {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Size at which the hook log is rotated to `brain-emit.log.1`, in bytes.
const LOG_ROTATE_BYTES: u64 = 1024 * 1024;

/// The hook log's path for a spool at `spool_path`.
pub(crate) fn log_path(spool_path: &Path) -> PathBuf {
    spool_path.with_file_name("brain-emit.log")
}

/// Appends one line about a hook problem to the log beside the spool; stderr if that fails.
pub(crate) fn record_hook_problem(spool_path: &Path, command: &str, message: &str) {
    let line = format!(
        "{} pid={} {command}: {}\n",
        Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        std::process::id(),
        message.replace('\n', " | ")
    );
    let path = log_path(spool_path);
    let written = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
            let _ = std::fs::rename(&path, path.with_extension("log.1"));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(line.as_bytes())
    })();
    if written.is_err() {
        // Never `eprint!`: it panics when stderr is closed, and a hook must not fail.
        let _ = write!(std::io::stderr(), "brain-emit: {line}");
    }
}

/// An error of a non-hook subcommand, with its cause chain, on stderr.
pub(crate) fn error(err: &anyhow::Error) {
    err_line!("brain-emit: error: {err:#}");
}

/// A warning on stderr (non-hook subcommands).
pub(crate) fn warn(message: &str) {
    err_line!("brain-emit: warning: {message}");
}

pub(crate) fn fmt_ms(ms: Option<i64>) -> String {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
        .map_or_else(
            || "never".to_owned(),
            |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
        )
}

pub(crate) fn fmt_age(ms: Option<u64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(ms) if ms < 1_000 => format!("{ms} ms"),
        Some(ms) if ms < 120_000 => format!("{} s", ms / 1_000),
        Some(ms) if ms < 7_200_000 => format!("{} min", ms / 60_000),
        Some(ms) => format!("{} h", ms / 3_600_000),
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    #[serde(flatten)]
    stats: &'a SpoolStats,
    agent_id: &'a str,
    agent_id_source: String,
    url: Option<&'a str>,
    api_key_configured: bool,
    env_file: &'a Path,
    warnings: &'a [String],
    /// The configuration errors that make `status` exit 1 (`config_error` among them).
    config_errors: &'a [String],
}

/// Prints `status`.
///
/// # Errors
/// Only when stdout is closed or full.
pub(crate) fn status(
    settings: &Settings,
    stats: &SpoolStats,
    config_errors: &[String],
    json: bool,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let v = StatusJson {
            stats,
            agent_id: settings.agent_id.as_str(),
            agent_id_source: settings.agent_id_source.to_string(),
            url: settings.url.as_deref(),
            api_key_configured: settings.api_key.is_some(),
            env_file: &settings.env_file,
            warnings: &settings.warnings,
            config_errors,
        };
        serde_json::to_writer_pretty(&mut out, &v)?;
        return writeln!(out);
    }
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    writeln!(out, "spool:          {}", stats.path.display())?;
    writeln!(
        out,
        "agent id:       {} ({})",
        settings.agent_id, settings.agent_id_source
    )?;
    writeln!(
        out,
        "server:         {} (API key {})",
        settings.url.as_deref().unwrap_or("not configured"),
        if settings.api_key.is_some() {
            "set"
        } else {
            "not set"
        }
    )?;
    writeln!(out, "depth:          {} events", stats.depth)?;
    writeln!(
        out,
        "size:           {:.2} MiB of {:.0} MiB",
        mb(stats.bytes),
        mb(stats.max_bytes)
    )?;
    writeln!(out, "oldest event:   {}", fmt_age(stats.oldest_age_ms))?;
    writeln!(
        out,
        "dropped:        {} ({} heartbeats, {} hooks that could not write to the spool)",
        stats.dropped, stats.dropped_heartbeats, stats.hooks_lost
    )?;
    writeln!(out, "dead letters:   {}", stats.dead_letters)?;
    writeln!(out, "last success:   {}", fmt_ms(stats.last_success_at_ms))?;
    match &stats.last_error {
        Some(e) => writeln!(
            out,
            "last error:     {e} (at {})",
            fmt_ms(stats.last_error_at_ms)
        )?,
        None => writeln!(out, "last error:     none")?,
    }
    for e in config_errors {
        writeln!(out, "CONFIG ERROR:   {e}")?;
    }
    if let Some(e) = &stats.last_hook_error {
        writeln!(out, "last hook error: {e}")?;
    }
    if let Some(t) = stats
        .next_attempt_at_ms
        .filter(|t| *t > Utc::now().timestamp_millis())
    {
        writeln!(out, "next retry:     not before {}", fmt_ms(Some(t)))?;
    }
    if stats.lease_held {
        writeln!(out, "flusher:        running")?;
    }
    if let Some(r) = &stats.recovered_from {
        let lost = stats
            .lost_rows
            .map_or_else(|| "an unknown number".to_owned(), |n| n.to_string());
        writeln!(
            out,
            "recovered:      a corrupt spool was moved aside to {r}; salvaged {} queued events, lost {lost}",
            stats.salvaged_rows.unwrap_or(0)
        )?;
    }
    if let Some(t) = stats.found_empty_at_ms {
        writeln!(
            out,
            "found empty:    at {} the spool file was empty where a spool had been; what it held is lost",
            fmt_ms(Some(t))
        )?;
    }
    if let Some(t) = stats.wal_damage_at_ms {
        writeln!(
            out,
            "damaged WAL:    last at {}; {} committed transactions lost in all",
            fmt_ms(Some(t)),
            stats.wal_lost_commits
        )?;
    }
    for w in &settings.warnings {
        writeln!(out, "warning:        {w}")?;
    }
    Ok(())
}

/// Prints the `doctor` report: one line per check, or JSON.
///
/// # Errors
/// Only when stdout is closed or full.
pub(crate) fn doctor(report: &crate::doctor::Report, json: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        report.write_json(&mut out)
    } else {
        report.write_text(&mut out)
    }
}

/// Prints the result of `flush`: one line on stdout (or JSON-free text), the reason on stderr
/// when the spool was not emptied.
pub(crate) fn flush_report(report: &FlushReport) {
    out_line!(
        "accepted {}, duplicate {}, rejected {}, remaining {}",
        report.accepted,
        report.duplicate,
        report.rejected,
        report.remaining
    );
    match &report.outcome {
        FlushOutcome::Drained => {}
        FlushOutcome::NotConfigured => {
            err_line!("brain-emit: not configured: set BRAIN_URL and BRAIN_API_KEY");
        }
        FlushOutcome::LeaseBusy => {
            err_line!("brain-emit: another flusher is delivering this spool")
        }
        FlushOutcome::Deferred(t) => {
            err_line!("brain-emit: backing off until {}", fmt_ms(Some(*t)));
        }
        FlushOutcome::Unavailable(r) => err_line!("brain-emit: server unavailable: {r}"),
        FlushOutcome::ConfigError(r) => err_line!("brain-emit: configuration error: {r}"),
    }
}

/// Prints the result of `import`.
pub(crate) fn import_report(report: &crate::import::ImportReport) {
    out_line!(
        "imported {} sessions, queued {} llm_usage events (run `brain-emit flush` to deliver)",
        report.sessions,
        report.events
    );
    for f in &report.failures {
        err_line!("brain-emit: could not import {f}");
    }
}

/// Prints clap's message for a command line that did not parse.
pub(crate) fn clap_error(e: &clap::Error) {
    let _ = e.print();
}
