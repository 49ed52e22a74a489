//! brain-heartbeat: every 5 minutes (systemd timer), one `heartbeat` event with the host's
//! facts, enqueued through the `brain-emit` spool, then a flush of the whole spool.
//!
//! Life of a run: [`Cli`] → [`brain_emit::config::Settings`] (env file, environment, flags)
//! → [`collect`] reads the 1-minute load (sysinfo), the Docker-derived facts
//! ([`docker::read_facts`], absent when the host has no Docker socket) and the spool's own
//! figures → the event is enqueued → [`brain_emit::flush::flush`] delivers what the server
//! will take. An unreachable server is not a failure: the events stay spooled.
//!
//! `brain-heartbeat --check` sends nothing: [`check`] runs `brain-emit doctor`'s box checks
//! (env file, URL, key via `GET /v1/whoami`, spool) and asks the Docker socket, one line per
//! check, and exits 1 when one fails.

pub mod docker;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use brain_emit::config::Settings;
use brain_emit::doctor::{Check, Report, Status};
use brain_emit::flush::{FlushMode, FlushOutcome, FlushReport};
use brain_emit::spool::{Spool, SpoolStats};
use chrono::{DateTime, Utc};
use clap::Parser;
use shared_proto::{Event, Heartbeat, Payload};

use crate::docker::{DockerFacts, DockerSelectors};

/// Heartbeat payload field: hook invocations whose events could not be spooled at all
/// ([`SpoolStats::hooks_lost`]); already counted in `spool_dropped`.
pub const SPOOL_HOOKS_LOST: &str = "spool_hooks_lost";

/// Exit code for a configuration error (missing URL or key, refused credentials).
const EXIT_CONFIG: u8 = 1;
/// Exit code for an unexpected failure (the spool cannot be used).
const EXIT_UNEXPECTED: u8 = 2;

/// Reports host facts to Brain and flushes the local spool.
///
/// Configuration as for brain-emit: /etc/m8trx/brain.env (or $BRAIN_ENV_FILE), then the
/// environment, then flags.
#[derive(Debug, Parser)]
#[command(name = "brain-heartbeat", version, about)]
pub struct Cli {
    /// Settings shared with brain-emit (URL, key, spool, agent id).
    #[command(flatten)]
    pub global: brain_emit::cli::GlobalArgs,
    /// Path of the Docker Engine API socket.
    #[arg(long, env = "BRAIN_DOCKER_SOCKET", default_value = docker::DEFAULT_SOCKET)]
    pub docker_socket: PathBuf,
    /// Name of the Paperclip container, for `paperclip_uptime_s`.
    #[arg(long, env = "BRAIN_PAPERCLIP_CONTAINER", default_value = "paperclip")]
    pub paperclip_container: String,
    /// `key=value` label of the agent-runtime containers, for `agent_runtime_count`.
    #[arg(
        long,
        env = "BRAIN_AGENT_LABEL",
        default_value = "m8trx.role=agent-runtime"
    )]
    pub agent_label: String,
    /// Label holding an agent-runtime container's agent id (else its name).
    #[arg(long, env = "BRAIN_AGENT_ID_LABEL", default_value = "m8trx.agent_id")]
    pub agent_id_label: String,
    /// Label holding the agent's version (else the image tag).
    #[arg(
        long,
        env = "BRAIN_AGENT_VERSION_LABEL",
        default_value = "m8trx.agent_version"
    )]
    pub version_label: String,
    /// Enqueue the heartbeat but do not flush.
    #[arg(long)]
    pub no_flush: bool,
    /// Send nothing: check that this box is wired for the heartbeat (env file, URL, key
    /// asked of the server, spool, Docker socket), one line per check; exit 0 only when no
    /// check fails, 1 otherwise.
    #[arg(long, conflicts_with = "no_flush")]
    pub check: bool,
    /// With `--check`: print one JSON object instead of lines.
    #[arg(long, requires = "check")]
    pub json: bool,
}

impl Cli {
    fn selectors(&self) -> DockerSelectors {
        DockerSelectors {
            paperclip_container: self.paperclip_container.clone(),
            agent_label: self.agent_label.clone(),
            agent_id_label: self.agent_id_label.clone(),
            version_label: self.version_label.clone(),
        }
    }
}

/// Builds the heartbeat payload from its three sources.
///
/// Docker-derived fields are `None` when `docker` is `None` (no Docker on the host, or the
/// engine failed): unknown, never invented.
///
/// `spool_dropped` counts every event the spool lost, hook invocations that could not write
/// to it at all (a full disk) included; those are also sent on their own as
/// `spool_hooks_lost`, a field the protocol does not name (payloads keep unknown fields).
pub fn collect(host_load_1m: f64, docker: Option<DockerFacts>, spool: &SpoolStats) -> Heartbeat {
    let docker_known = docker.is_some();
    let docker = docker.unwrap_or_default();
    let mut extra = serde_json::Map::new();
    extra.insert(SPOOL_HOOKS_LOST.to_owned(), spool.hooks_lost.into());
    Heartbeat {
        paperclip_uptime_s: docker.paperclip_uptime_s,
        agent_runtime_count: docker_known.then_some(docker.agent_runtime_count),
        host_load_1m: if host_load_1m.is_finite() {
            host_load_1m.max(0.0)
        } else {
            0.0
        },
        agent_versions: docker.agent_versions,
        spool_depth: Some(spool.depth),
        spool_dropped: Some(spool.dropped),
        extra,
    }
}

/// Runs one heartbeat and returns the process exit code: 0 when the heartbeat is spooled
/// (delivered or not), 1 for a configuration error, 2 when the spool cannot be used.
/// With `--check`, runs [`check`] instead.
pub fn run(cli: &Cli) -> ExitCode {
    let settings = Settings::resolve(&cli.global.overrides());
    if cli.check {
        return run_check(cli, &settings);
    }
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    match heartbeat(cli, &settings) {
        Ok(Some(report)) => exit_for(&settings, &report),
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(EXIT_UNEXPECTED)
        }
    }
}

/// The checks of `--check`: brain-emit doctor's box checks (env file, settings, URL,
/// server and key, spool, backlog) and whether the Docker Engine API answers.
pub fn check(cli: &Cli, settings: &Settings) -> Report {
    let mut checks = brain_emit::doctor::box_checks(settings);
    checks.push(docker_check(cli));
    Report::new(checks)
}

fn run_check(cli: &Cli, settings: &Settings) -> ExitCode {
    let report = check(cli, settings);
    let mut out = std::io::stdout().lock();
    let written = if cli.json {
        report.write_json(&mut out)
    } else {
        report.write_text(&mut out)
    };
    match written {
        // A closed stdout pipe counts as success.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            tracing::error!("writing the check report: {e}");
            ExitCode::from(EXIT_UNEXPECTED)
        }
        _ if report.ok => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_CONFIG),
    }
}

/// `docker`: the Engine API answers the heartbeat's own query. No socket at all is a
/// warning (SPEC §8: the heartbeat then reports the Docker facts as unknown); a socket that
/// does not answer is a failure.
fn docker_check(cli: &Cli) -> Check {
    let socket = cli.docker_socket.display();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Check::new(
                "docker",
                Status::Fail,
                format!("cannot start the runtime for the Docker query: {e}"),
            );
        }
    };
    match runtime.block_on(docker::read_facts(
        &cli.docker_socket,
        &cli.selectors(),
        Utc::now(),
    )) {
        Ok(Some(facts)) => Check::new(
            "docker",
            Status::Ok,
            format!(
                "{socket} answers: {} agent-runtime containers ({}), {}",
                facts.agent_runtime_count,
                cli.agent_label,
                match facts.paperclip_uptime_s {
                    Some(s) => format!("{} up {s} s", cli.paperclip_container),
                    None => format!("{} not running", cli.paperclip_container),
                }
            ),
        ),
        Ok(None) => Check::new(
            "docker",
            Status::Warn,
            format!(
                "no Docker socket at {socket}: the heartbeat will report Paperclip's uptime \
                 and the agent runtimes as unknown"
            ),
        ),
        Err(e) => Check::new(
            "docker",
            Status::Fail,
            format!("{:#}", anyhow::Error::new(e)),
        ),
    }
}

fn exit_for(settings: &Settings, report: &FlushReport) -> ExitCode {
    match &report.outcome {
        FlushOutcome::NotConfigured => {
            tracing::error!(
                "BRAIN_URL and BRAIN_API_KEY must be set (env file {}); the heartbeat stays spooled",
                settings.env_file.display()
            );
            ExitCode::from(EXIT_CONFIG)
        }
        FlushOutcome::ConfigError(reason) => {
            tracing::error!("the server refused this box's configuration: {reason}");
            ExitCode::from(EXIT_CONFIG)
        }
        FlushOutcome::Unavailable(reason) => {
            tracing::warn!(
                "server unavailable, {} events stay spooled: {reason}",
                report.remaining
            );
            ExitCode::SUCCESS
        }
        FlushOutcome::Drained | FlushOutcome::LeaseBusy | FlushOutcome::Deferred(_) => {
            ExitCode::SUCCESS
        }
    }
}

fn heartbeat(cli: &Cli, settings: &Settings) -> anyhow::Result<Option<FlushReport>> {
    let now = Utc::now();
    let docker = read_docker(cli, now);
    // sysinfo 0.40 reports a failure to read /proc/loadavg as an error; the heartbeat then
    // carries 0 rather than failing (the other facts are still worth sending).
    let load = match sysinfo::System::load_average() {
        Ok(l) => l.one,
        Err(e) => {
            tracing::warn!("host load unknown: {e}");
            0.0
        }
    };
    let mut spool = Spool::open_with(&settings.spool_path, settings.spool_options())
        .with_context(|| format!("opening the spool {}", settings.spool_path.display()))?;
    // A spool damaged past its header shows only when a statement reads the damaged page:
    // replace it as brain-emit's hooks do, and carry on.
    let stats = spool
        .with_recovery(|spool| spool.stats())
        .context("reading the spool's figures")?;
    let payload = collect(load, docker, &stats);
    let event = Event::new(
        uuid::Uuid::new_v4(),
        now,
        settings.agent_id.clone(),
        settings.run_id.clone(),
        Payload::Heartbeat(payload),
    )
    .context("building the heartbeat event")?;
    spool
        .with_recovery(|spool| spool.enqueue(&event))
        .context("spooling the heartbeat")?;
    drop(spool);
    if cli.no_flush {
        return Ok(None);
    }
    // `Wait`: deliver what the server takes now and stop at the first failure, without
    // sleeping on back-off; a oneshot timer unit should not linger.
    let report =
        brain_emit::flush::flush(settings, FlushMode::Wait, None).context("flushing the spool")?;
    Ok(Some(report))
}

fn read_docker(cli: &Cli, now: DateTime<Utc>) -> Option<DockerFacts> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!("cannot start the runtime for the Docker query: {e}");
            return None;
        }
    };
    match runtime.block_on(docker::read_facts(
        &cli.docker_socket,
        &cli.selectors(),
        now,
    )) {
        Ok(facts) => facts,
        Err(e) => {
            tracing::warn!("Docker facts unknown: {:#}", anyhow::Error::new(e));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn without_docker_the_docker_fields_are_unknown() {
        let stats = SpoolStats {
            depth: 7,
            dropped: 2,
            ..SpoolStats::default()
        };
        let hb = collect(0.5, None, &stats);
        assert_eq!(hb.extra[SPOOL_HOOKS_LOST], 0);
        assert_eq!(hb.paperclip_uptime_s, None);
        assert_eq!(hb.agent_runtime_count, None);
        assert!(hb.agent_versions.is_empty());
        assert_eq!((hb.spool_depth, hb.spool_dropped), (Some(7), Some(2)));
        let v = Payload::Heartbeat(hb).to_value();
        assert_eq!(v["paperclip_uptime_s"], serde_json::Value::Null);
        assert_eq!(v["agent_runtime_count"], serde_json::Value::Null);
    }

    #[test]
    fn a_nan_load_is_reported_as_zero_not_rejected() {
        let hb = collect(f64::NAN, None, &SpoolStats::default());
        assert_eq!(hb.host_load_1m, 0.0);
    }

    #[test]
    fn hooks_that_could_not_spool_are_reported_and_survive_validation() {
        let stats = SpoolStats {
            dropped: 5,
            hooks_lost: 3,
            ..SpoolStats::default()
        };
        let v = Payload::Heartbeat(collect(0.5, None, &stats)).to_value();
        assert_eq!(
            (&v["spool_dropped"], &v[SPOOL_HOOKS_LOST]),
            (&5.into(), &3.into())
        );
        // The server's validation keeps the field (payloads keep unknown fields).
        let serde_json::Value::Object(obj) = v else {
            panic!("not an object")
        };
        let back = Payload::parse(shared_proto::EventType::Heartbeat, obj).unwrap();
        let Payload::Heartbeat(hb) = back else {
            panic!("not a heartbeat")
        };
        assert_eq!(hb.extra[SPOOL_HOOKS_LOST], 3);
    }
}
