//! brain-emit: the agent-side emitter of Brain telemetry (SPEC §7).
//!
//! Hook subcommands turn a Claude Code hook or an isolate-wrapper call into events and queue
//! them in a local SQLite [`spool`]; [`flush`] delivers the spool to `brain-server` in gzip'd
//! batches with back-off. `brain-heartbeat` uses this crate as a library:
//!
//! ```no_run
//! use brain_emit::config::Settings;
//! use brain_emit::flush::{flush, FlushMode};
//! use brain_emit::spool::Spool;
//! # fn heartbeat(event: shared_proto::Event) -> anyhow::Result<()> {
//! let settings = Settings::from_env();
//! let mut spool = Spool::open_with(&settings.spool_path, settings.spool_options())?;
//! let stats = spool.stats()?; // depth, dropped, … for the heartbeat payload
//! spool.enqueue(&event)?;
//! let report = flush(&settings, FlushMode::Foreground, None)?;
//! # Ok(()) }
//! ```
//!
//! Life of a hook call: [`run`] parses the command line → [`config::Settings::resolve`] →
//! `hooks::run` opens the spool, builds the event and enqueues it in one IMMEDIATE
//! transaction (claiming the delivery lease in the same transaction when nobody holds it) →
//! if it claimed the lease, spawns a detached `brain-emit flush --background` → exit 0.
//! Nothing on that path touches the network or prints on stdout.
//!
//! `status` describes the spool (exit 1 when it reports a configuration error); [`doctor`]
//! checks that the box is wired right (config, URL, key, spool, hooks, timer), and
//! `brain-heartbeat --check` runs the part of it the heartbeat needs.

pub mod cli;
pub mod config;
pub mod doctor;
mod envelope;
pub mod flush;
mod hooks;
mod import;
mod output;
pub mod spool;
pub mod usage;

use std::ffi::OsString;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command, DoctorArgs, FlushArgs, HOOK_COMMANDS, StatusArgs};
use crate::config::{Overrides, Settings};
use crate::flush::{FlushMode, FlushOutcome};
use crate::spool::{HookProblem, Spool};

/// Exit code for a user or configuration error.
const EXIT_USER: u8 = 1;
/// Exit code for an unexpected failure.
const EXIT_UNEXPECTED: u8 = 2;

/// Runs brain-emit with `args` (the program name first) and returns the process exit code.
///
/// Hook subcommands always return success, whatever happens, including a command line that
/// does not parse and a panic.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let is_hook_line = args
        .iter()
        .skip(1)
        .any(|a| a.to_str().is_some_and(|a| HOOK_COMMANDS.contains(&a)));
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                output::clap_error(&e);
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(EXIT_USER)
                } else {
                    ExitCode::SUCCESS
                };
            }
            if is_hook_line {
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    let settings = Settings::resolve(&Overrides::default());
                    output::record_hook_problem(
                        &settings.spool_path,
                        "command line",
                        &e.to_string(),
                    );
                }));
                return ExitCode::SUCCESS;
            }
            output::clap_error(&e);
            return ExitCode::from(EXIT_USER);
        }
    };
    if cli.command.is_hook() {
        // The whole hook, recording its problem included, runs under catch_unwind: a hook
        // exits 0 whatever happens.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| run_hook(&cli)));
        return ExitCode::SUCCESS;
    }
    init_tracing();
    let settings = Settings::resolve(&cli.overrides());
    match &cli.command {
        Command::Flush(args) => run_flush(&settings, args),
        Command::Status(args) => run_status(&settings, args),
        Command::Import(args) => run_import(&settings, &args.paths),
        Command::Doctor(args) => run_doctor(&settings, args),
        _ => ExitCode::SUCCESS,
    }
}

fn run_hook(cli: &Cli) {
    let overrides = cli.overrides();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let settings = Settings::resolve(&overrides);
        let result = hooks::run(&cli.command, &settings, std::io::stdin().lock());
        (settings, result)
    }));
    // Every hook but `tool-start` (a record for pairing) would have queued events.
    let carries_events = !matches!(cli.command, Command::ToolStart);
    let mut kind = HookProblem::Other;
    let (spool_path, problem) = match outcome {
        Ok((settings, result)) => {
            let mut problems: Vec<String> = settings.warnings.clone();
            if let Err(e) = result {
                kind = HookProblem::of(&e, carries_events);
                problems.push(format!("{e:#}"));
            }
            (
                settings.spool_path,
                (!problems.is_empty()).then(|| problems.join("; ")),
            )
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            let settings = Settings::resolve(&overrides);
            (settings.spool_path, Some(format!("panicked: {what}")))
        }
    };
    if let Some(problem) = problem {
        output::record_hook_problem(&spool_path, cli.command.name(), &problem);
        // Best effort: make it visible in `status` (and a lost event in the heartbeat) too,
        // even when the spool could not take the write (a full disk).
        let _ = std::panic::catch_unwind(|| {
            spool::note_hook_problem(&spool_path, cli.command.name(), &problem, kind);
        });
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BRAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run_flush(settings: &Settings, args: &FlushArgs) -> ExitCode {
    let mode = if args.wait {
        FlushMode::Wait
    } else if args.background {
        FlushMode::Background
    } else {
        FlushMode::Foreground
    };
    let report = match flush::flush(settings, mode, args.lease_token.as_deref())
        .context("flushing the spool")
    {
        Ok(r) => r,
        Err(e) => {
            if !args.background {
                output::error(&e);
            }
            // SPEC §7: `flush --wait` exits 1, with the reason, whenever the spool was not
            // emptied, whatever the cause.
            return ExitCode::from(if mode == FlushMode::Wait {
                EXIT_USER
            } else {
                EXIT_UNEXPECTED
            });
        }
    };
    if args.background {
        return ExitCode::SUCCESS;
    }
    for w in &settings.warnings {
        output::warn(w);
    }
    output::flush_report(&report);
    let ok = match mode {
        FlushMode::Wait => report.remaining == 0,
        _ => matches!(
            report.outcome,
            FlushOutcome::Drained | FlushOutcome::LeaseBusy
        ),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_USER)
    }
}

fn run_import(settings: &Settings, paths: &[std::path::PathBuf]) -> ExitCode {
    match import::run(settings, paths) {
        Ok(report) => {
            output::import_report(&report);
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_USER)
            }
        }
        Err(e) => {
            output::error(&e);
            ExitCode::from(EXIT_USER)
        }
    }
}

fn run_status(settings: &Settings, args: &StatusArgs) -> ExitCode {
    // A spool found corrupt while reading its figures is salvaged and replaced as a hook or
    // flush would do, so `status` reports what was kept and lost instead of "malformed".
    let stats = match Spool::open_with(&settings.spool_path, settings.spool_options())
        .context("opening the spool")
        .and_then(|mut s| {
            s.with_recovery(|s| s.stats())
                .context("reading spool figures")
        }) {
        Ok(s) => s,
        Err(e) => {
            output::error(&e);
            return ExitCode::from(EXIT_USER);
        }
    };
    let config_errors = status_config_errors(settings, &stats);
    match output::status(settings, &stats, &config_errors, args.json) {
        // SPEC §7: `status` exits non-zero when it reports a configuration error.
        Ok(()) if !config_errors.is_empty() => ExitCode::from(EXIT_USER),
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout pipe counts as success.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            output::error(&anyhow::Error::new(e).context("writing status"));
            ExitCode::from(EXIT_UNEXPECTED)
        }
    }
}

/// The configuration errors `status` reports: the one the last flush recorded (key
/// refused, a URL that is not Brain) and a `BRAIN_URL` that is malformed on its face (no
/// scheme). A box with no URL or key configured is not one: `status` describes the spool
/// whatever the configuration, and `doctor` is the command that checks the wiring.
fn status_config_errors(settings: &Settings, stats: &spool::SpoolStats) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(url) = &settings.url
        && let Err(why) = doctor::parse_brain_url(url)
    {
        errors.push(format!("BRAIN_URL={url:?} {why}"));
    }
    errors.extend(stats.config_error.iter().cloned());
    errors
}

fn run_doctor(settings: &Settings, args: &DoctorArgs) -> ExitCode {
    let options = doctor::DoctorOptions {
        drop_in: args.drop_in.clone(),
        systemctl: args.systemctl.clone(),
    };
    let report = doctor::run(settings, &options);
    match output::doctor(&report, args.json) {
        Ok(()) => {}
        // A closed stdout pipe counts as success.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            output::error(&anyhow::Error::new(e).context("writing the doctor report"));
            return ExitCode::from(EXIT_UNEXPECTED);
        }
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_USER)
    }
}

/// `e` and its causes, joined by `": "` (as anyhow's `{:#}` shows a chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
