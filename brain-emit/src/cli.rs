//! The command line: clap types that mirror the flags, nothing more.
//!
//! [`crate::config::Settings::resolve`] turns [`GlobalArgs`] plus the environment and env
//! file into settings; the rest of the program never looks at these types for
//! configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use shared_proto::SessionStatus;

use crate::config::Overrides;

/// Hook-safe emitter of Brain telemetry events.
///
/// Hook subcommands (session.start, session.end, tool-start, tool-call, llm-usage, error)
/// queue events in a local SQLite spool and return at once; they print nothing on stdout and
/// always exit 0. `flush` delivers the spool to brain-server; `status` describes it;
/// `doctor` checks that this box is wired right.
///
/// Configuration: /etc/m8trx/brain.env (or $BRAIN_ENV_FILE), then the environment
/// (BRAIN_URL, BRAIN_API_KEY, BRAIN_AGENT_ID / PAPERCLIP_AGENT_ID, BRAIN_RUN_ID /
/// PAPERCLIP_RUN_ID, BRAIN_SPOOL, BRAIN_SPOOL_MAX_BYTES), then flags.
#[derive(Debug, Parser)]
#[command(name = "brain-emit", version, about, long_about)]
pub struct Cli {
    /// Settings that override the environment and env file.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The configuration overrides of this command line: the global flags, plus
    /// `session.start --paperclip-run-id` (a candidate for the run id).
    pub fn overrides(&self) -> Overrides {
        let mut overrides = self.global.overrides();
        if let Command::SessionStart(args) = &self.command {
            overrides
                .paperclip_run_id
                .clone_from(&args.paperclip_run_id);
        }
        overrides
    }
}

/// Flags accepted by every subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Base URL of brain-server [env: BRAIN_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The customer's API key [env: BRAIN_API_KEY]; prefer the env file.
    #[arg(long, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Path of the SQLite spool [env: BRAIN_SPOOL].
    #[arg(long, global = true, value_name = "PATH")]
    pub spool: Option<PathBuf>,
    /// Agent id [env: BRAIN_AGENT_ID, PAPERCLIP_AGENT_ID].
    #[arg(long, global = true, value_name = "ID")]
    pub agent_id: Option<String>,
    /// Run id [env: BRAIN_RUN_ID; then session.start's --paperclip-run-id, PAPERCLIP_RUN_ID;
    /// hooks fall back to the Claude session id].
    #[arg(long, global = true, value_name = "ID")]
    pub run_id: Option<String>,
}

impl GlobalArgs {
    /// The flags as configuration overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            url: self.url.clone(),
            api_key: self.api_key.clone(),
            spool: self.spool.clone(),
            agent_id: self.agent_id.clone(),
            run_id: self.run_id.clone(),
            paperclip_run_id: None,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hook: an agent run started (isolate wrapper, top of script).
    #[command(name = "session.start")]
    SessionStart(SessionStartArgs),
    /// Hook: an agent run ended (isolate wrapper, EXIT trap).
    #[command(name = "session.end")]
    SessionEnd(SessionEndArgs),
    /// Hook: PreToolUse JSON on stdin; records the start time for duration pairing.
    #[command(name = "tool-start")]
    ToolStart,
    /// Hook: PostToolUse or PostToolUseFailure JSON on stdin; queues a tool_call event.
    #[command(name = "tool-call")]
    ToolCall,
    /// Hook: Stop, SubagentStop or SessionEnd JSON on stdin; queues llm_usage events.
    #[command(name = "llm-usage")]
    LlmUsage,
    /// Hook: queues an error event.
    Error(ErrorArgs),
    /// Delivers the spool to brain-server now.
    Flush(FlushArgs),
    /// Describes the spool: depth, bytes, oldest event, drops, errors.
    Status(StatusArgs),
    /// Backfills llm_usage events from past Claude Code transcripts (files or directories).
    Import(ImportArgs),
    /// Checks that this box is wired right: env file, URL, key (asks the server), spool,
    /// Claude Code drop-in, heartbeat timer. Exits 0 only when no check fails.
    Doctor(DoctorArgs),
}

impl Command {
    /// Whether this is a hook subcommand (always exits 0, never prints on stdout).
    pub fn is_hook(&self) -> bool {
        !matches!(
            self,
            Command::Flush(_) | Command::Status(_) | Command::Import(_) | Command::Doctor(_)
        )
    }

    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::SessionStart(_) => "session.start",
            Command::SessionEnd(_) => "session.end",
            Command::ToolStart => "tool-start",
            Command::ToolCall => "tool-call",
            Command::LlmUsage => "llm-usage",
            Command::Error(_) => "error",
            Command::Flush(_) => "flush",
            Command::Status(_) => "status",
            Command::Import(_) => "import",
            Command::Doctor(_) => "doctor",
        }
    }
}

/// Names of the hook subcommands, for recognising them when the command line does not parse.
pub const HOOK_COMMANDS: [&str; 6] = [
    "session.start",
    "session.end",
    "tool-start",
    "tool-call",
    "llm-usage",
    "error",
];

/// `session.start` flags.
#[derive(Debug, Clone, Default, Args)]
pub struct SessionStartArgs {
    /// Paperclip's run id (default: the configured run id); also the event's run id when
    /// neither --run-id nor BRAIN_RUN_ID gives one and it is a valid run id.
    #[arg(long, value_name = "ID")]
    pub paperclip_run_id: Option<String>,
    /// What kind of agent runs.
    #[arg(long, value_name = "K")]
    pub agent_kind: Option<String>,
    /// What started the run.
    #[arg(long, value_name = "S")]
    pub source: Option<String>,
}

/// `session.end` flags.
#[derive(Debug, Clone, Args)]
pub struct SessionEndArgs {
    /// How the run ended: success, failed or timeout.
    #[arg(long, value_parser = parse_status)]
    pub status: SessionStatus,
    /// The wrapped process's exit code.
    #[arg(long, allow_negative_numbers = true)]
    pub exit_code: i64,
    /// Wall time of the run, ms.
    #[arg(long, conflicts_with = "started_at", value_name = "MS")]
    pub duration_ms: Option<u64>,
    /// When the run started: RFC 3339, or Unix seconds (`date +%s`) or ms (`date +%s%3N`).
    #[arg(long, value_name = "TS")]
    pub started_at: Option<String>,
}

fn parse_status(s: &str) -> Result<SessionStatus, String> {
    s.parse()
        .map_err(|_| "must be one of success, failed, timeout".to_owned())
}

/// `error` flags.
#[derive(Debug, Clone, Args)]
pub struct ErrorArgs {
    /// What kind of failure, e.g. `wrapper_failed`.
    #[arg(long)]
    pub kind: String,
    /// What happened; truncated to 120 characters.
    #[arg(long)]
    pub message: String,
    /// A hash identifying the stack or code site.
    #[arg(long, value_name = "H")]
    pub stack_hash: Option<String>,
}

/// `flush` flags.
#[derive(Debug, Clone, Default, Args)]
pub struct FlushArgs {
    /// Deliver everything the server takes now, ignoring back-off; exit 0 only when the
    /// spool is empty.
    #[arg(long, conflicts_with = "background")]
    pub wait: bool,
    /// Run as the detached background flusher a hook starts.
    #[arg(long, hide = true)]
    pub background: bool,
    /// Lease token claimed for this flusher by the hook that started it.
    #[arg(long, hide = true, requires = "background")]
    pub lease_token: Option<String>,
}

/// `import` arguments.
#[derive(Debug, Clone, Default, Args)]
pub struct ImportArgs {
    /// Session transcripts (`<session id>.jsonl`) or directories holding them (searched
    /// recursively; `subagents/` files are read with their session).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `status` flags.
#[derive(Debug, Clone, Default, Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `doctor` flags.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Print one JSON object (`{"ok": …, "checks": [{"name", "status", "detail"}]}`).
    #[arg(long)]
    pub json: bool,
    /// The Claude Code managed-settings drop-in that should wire the hooks.
    #[arg(
        long,
        env = crate::config::BRAIN_DROP_IN,
        value_name = "PATH",
        default_value = crate::doctor::DEFAULT_DROP_IN
    )]
    pub drop_in: PathBuf,
    /// `systemctl` to ask about the heartbeat timer (default: the one on PATH, when systemd
    /// runs); for tests.
    #[arg(long, env = crate::config::BRAIN_SYSTEMCTL, value_name = "PATH", hide = true)]
    pub systemctl: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn session_end_parses() {
        let cli = Cli::try_parse_from([
            "brain-emit",
            "session.end",
            "--status",
            "failed",
            "--exit-code",
            "-1",
            "--duration-ms",
            "5",
        ])
        .unwrap();
        let Command::SessionEnd(a) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(a.status, SessionStatus::Failed);
        assert_eq!(a.exit_code, -1);
    }

    #[test]
    fn paperclip_run_id_is_a_run_id_override_of_session_start_only() {
        let cli =
            Cli::try_parse_from(["brain-emit", "session.start", "--paperclip-run-id", "run_1"])
                .unwrap();
        let o = cli.overrides();
        assert_eq!(o.paperclip_run_id.as_deref(), Some("run_1"));
        assert_eq!(o.run_id, None);
        let cli = Cli::try_parse_from([
            "brain-emit",
            "--run-id",
            "r2",
            "session.end",
            "--status",
            "success",
            "--exit-code",
            "0",
        ])
        .unwrap();
        let o = cli.overrides();
        assert_eq!(o.paperclip_run_id, None);
        assert_eq!(o.run_id.as_deref(), Some("r2"));
    }

    #[test]
    fn doctor_flags() {
        let cli = Cli::try_parse_from(["brain-emit", "doctor", "--json", "--drop-in", "/x.json"])
            .unwrap();
        assert!(!cli.command.is_hook());
        let Command::Doctor(a) = cli.command else {
            panic!("wrong subcommand")
        };
        assert!(a.json);
        assert_eq!(a.drop_in, PathBuf::from("/x.json"));
    }

    #[test]
    fn hook_names_match_commands() {
        for name in HOOK_COMMANDS {
            assert!(
                Cli::command().find_subcommand(name).is_some(),
                "{name} is not a subcommand"
            );
        }
    }
}
