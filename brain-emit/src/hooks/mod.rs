//! The hook subcommands: turn a hook invocation into events in the spool, then return.
//!
//! Hard rules of this path: no network and no HTTP client, nothing on stdout, exit 0 whatever
//! happens. Failures are returned to [`crate::run`], which records them locally. After a
//! successful enqueue a detached `brain-emit flush --background` is started when delivery is
//! configured and the spool's lease could be claimed for it (claimed in the enqueue's own
//! transaction, so a burst of hooks starts one flusher, not hundreds).
//!
//! Metadata only: `tool_input` and `tool_response` are measured (serialized byte length) and
//! inspected for an error shape, never copied into an event.
//!
//! One file per kind of hook: [`wrapper`] (`session.start`, `session.end`, `error`: flags
//! from the isolate wrapper), [`tool`] (`tool-call`: PostToolUse JSON), [`llm_usage`]
//! (`llm-usage`: Stop, SubagentStop, SessionEnd JSON, through the usage ledger). This module
//! reads stdin, dispatches (`tool-start` is a single spool call, here), runs the spool work
//! through [`Spool::with_recovery`], and starts the background flusher.

mod llm_usage;
mod tool;
mod wrapper;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use shared_proto::env_vars;
use shared_proto::limits::MAX_NAME_CHARS;

use crate::cli::Command;
use crate::config::Settings;
use crate::flush::LEASE_TTL_MS;
use crate::spool::{MetaKey, Spool};

/// The fields of a Claude Code hook's stdin JSON that the emitter looks at.
#[derive(Debug, Default, Deserialize)]
struct HookInput {
    #[serde(default)]
    hook_event_name: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    transcript_path: Option<PathBuf>,
    #[serde(default)]
    agent_transcript_path: Option<PathBuf>,
    #[serde(default)]
    tool_name: Option<String>,
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    tool_input: Option<Value>,
    #[serde(default)]
    tool_response: Option<Value>,
    #[serde(default)]
    duration_ms: Option<Value>,
}

/// Runs one hook subcommand.
///
/// # Errors
/// Anything that kept the event from being queued; the caller records it and still exits 0.
pub(crate) fn run(command: &Command, settings: &Settings, stdin: impl Read) -> anyhow::Result<()> {
    let now = Utc::now();
    // Read stdin once, before anything can fail and be retried.
    let input = match command {
        Command::ToolStart | Command::ToolCall | Command::LlmUsage => Some(read_input(stdin)?),
        _ => None,
    };
    let mut spool = Spool::open_with(&settings.spool_path, settings.spool_options())
        .with_context(|| format!("opening the spool {}", settings.spool_path.display()))?;
    if settings.agent_id_source.is_fallback() {
        // Rare (misconfigured box): say so where `status` shows it.
        let _ = spool.set_meta(MetaKey::AgentIdFallback, settings.agent_id.as_str());
    }
    // Damage past the header shows only when a statement reads the damaged page: replace
    // the file as at open, and do the work once more on the fresh spool.
    let token =
        spool.with_recovery(|spool| enqueue(command, settings, spool, input.as_ref(), now))?;
    if let Some(token) = token
        && let Err(e) = spawn_flusher(settings, &token)
    {
        let _ = spool.release_lease(&token);
        return Err(e.context("starting the background flusher"));
    }
    Ok(())
}

/// Builds the hook's events and queues them; returns a lease token claimed for a background
/// flusher.
fn enqueue(
    command: &Command,
    settings: &Settings,
    spool: &mut Spool,
    input: Option<&HookInput>,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<String>> {
    let claim = settings.can_deliver();
    let input = || input.context("no hook input");
    Ok(match command {
        Command::SessionStart(args) => {
            let event = wrapper::session_start(settings, args, now)?;
            spool.enqueue_and_claim(&[event], claim, LEASE_TTL_MS)?.1
        }
        Command::SessionEnd(args) => {
            let event = wrapper::session_end(settings, args, now)?;
            spool.enqueue_and_claim(&[event], claim, LEASE_TTL_MS)?.1
        }
        Command::Error(args) => {
            let event = wrapper::error_event(settings, args, now)?;
            spool.enqueue_and_claim(&[event], claim, LEASE_TTL_MS)?.1
        }
        Command::ToolStart => {
            let id = input()?
                .tool_use_id
                .as_deref()
                .filter(|id| !id.is_empty())
                .context("PreToolUse input has no tool_use_id")?;
            spool.record_tool_start(id, now.timestamp_millis())?;
            None
        }
        Command::ToolCall => {
            let input = input()?;
            let tool_use_id = input.tool_use_id.as_deref().filter(|id| !id.is_empty());
            let mut build_error = None;
            let (_, token) = spool.take_tool_start_and_enqueue(
                tool_use_id,
                |started| match tool::tool_call_event(settings, input, started, now) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        build_error = Some(e);
                        None
                    }
                },
                claim,
                LEASE_TTL_MS,
            )?;
            if let Some(e) = build_error {
                return Err(e);
            }
            token
        }
        Command::LlmUsage => llm_usage::llm_usage(settings, spool, input()?, now, claim)?,
        Command::Flush(_) | Command::Status(_) | Command::Import(_) | Command::Doctor(_) => {
            bail!("not a hook subcommand")
        }
    })
}

fn read_input(mut stdin: impl Read) -> anyhow::Result<HookInput> {
    let mut buf = Vec::new();
    stdin
        .read_to_end(&mut buf)
        .context("reading the hook JSON on stdin")?;
    serde_json::from_slice(&buf).context("stdin is not a Claude Code hook JSON object")
}

/// A short free-text value cut to the payload's text limit; `None` when empty.
fn name(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(MAX_NAME_CHARS).collect())
}

/// Starts `brain-emit flush --background` detached: own process group, no stdio, not waited.
fn spawn_flusher(settings: &Settings, token: &str) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the brain-emit executable")?;
    let mut cmd = Process::new(exe);
    cmd.arg("flush")
        .arg("--background")
        .arg("--lease-token")
        .arg(token)
        .arg("--spool")
        .arg(&settings.spool_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // Pass what was resolved (flags included) through the environment, not argv, so the
    // key does not show in `ps`.
    if let Some(url) = &settings.url {
        cmd.env(env_vars::BRAIN_URL, url);
    }
    if let Some(key) = settings.api_key_plain() {
        cmd.env(env_vars::BRAIN_API_KEY, key);
    }
    cmd.spawn()
        .context("spawning brain-emit flush --background")?;
    Ok(())
}
