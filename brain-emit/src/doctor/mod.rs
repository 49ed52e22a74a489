//! `brain-emit doctor`: is this box wired right? One [`Check`] per thing an operator would
//! otherwise look at by hand, each `ok`, `FAIL`, `warn` or `skip` with a one-line detail.
//!
//! The checks, in order: the env file (`env_file`), the URL and key it sets (`settings`),
//! the URL's shape (`url`), the server answering `GET /v1/whoami` with the key (`server`),
//! the spool (`spool`, writable) and what it holds (`backlog`), the Claude Code
//! managed-settings drop-in (`drop_in`) and its wiring of each hook to this binary
//! (`hooks`), and the heartbeat timer (`timer`). `brain-heartbeat --check` runs the first six
//! ([`box_checks`]) and a Docker check of its own.
//!
//! A `FAIL` is a configuration problem and makes the command exit 1; a `warn` (something
//! worth knowing that does not stop delivery, or a check this host cannot run, such as the
//! timer without systemd) and a `skip` (a check that needs one that failed) do not. This is
//! the one part of brain-emit besides [`crate::flush`] that uses the network; it is never on
//! a hook's path.

mod config;
mod hooks;
mod server;
mod spool;
mod timer;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::Settings;

pub(crate) use config::parse_brain_url;
pub use hooks::{DEFAULT_DROP_IN, INSTALLED_BIN};
pub use timer::TIMER_UNIT;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// As it should be.
    Ok,
    /// A configuration problem: the box is not wired right.
    Fail,
    /// Worth knowing, but delivery is not stopped (or this host cannot run the check).
    Warn,
    /// Not run, because a check it needs failed.
    Skip,
}

impl Status {
    /// How the status is shown in the text report: `ok`, `FAIL`, `warn`, `skip`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Warn => "warn",
            Status::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`env_file`, `url`, `server`, …).
    pub name: &'static str,
    /// How it came out.
    pub status: Status,
    /// What was found, for a person.
    pub detail: String,
}

impl Check {
    /// A check named `name`.
    pub fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
        }
    }
}

/// Every check's result, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when no check failed (warnings and skips allowed).
    pub ok: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// A report over `checks`.
    pub fn new(checks: Vec<Check>) -> Report {
        Report {
            ok: checks.iter().all(|c| c.status != Status::Fail),
            checks,
        }
    }

    /// The text report: one line per check, `<status> <name> <detail>`.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn write_text(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.checks {
            writeln!(
                out,
                "{:<4}  {:<width$}  {}",
                c.status.label(),
                c.name,
                c.detail
            )?;
        }
        Ok(())
    }

    /// The JSON report: `{"ok": bool, "checks": [{"name", "status", "detail"}]}`.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)
    }
}

/// Where `doctor` looks for what is not in [`Settings`].
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// The managed-settings drop-in that should wire the hooks.
    pub drop_in: PathBuf,
    /// `systemctl` to ask about the timer; `None`: `systemctl` on `PATH`, and only when
    /// systemd is running (`/run/systemd/system` exists).
    pub systemctl: Option<PathBuf>,
}

/// The checks shared by `brain-emit doctor` and `brain-heartbeat --check`: env file,
/// settings, URL, server and key, spool, backlog.
pub fn box_checks(settings: &Settings) -> Vec<Check> {
    let mut checks = vec![config::env_file(settings), config::settings(settings)];
    let url = config::url(settings);
    checks.push(url.0);
    checks.push(server::whoami(settings, url.1.as_ref()));
    checks.extend(spool::checks(settings));
    checks
}

/// Runs every check of `brain-emit doctor`.
pub fn run(settings: &Settings, options: &DoctorOptions) -> Report {
    let mut checks = box_checks(settings);
    checks.extend(hooks::checks(&options.drop_in));
    checks.push(timer::check(options.systemctl.as_deref()));
    Report::new(checks)
}
