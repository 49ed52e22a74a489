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

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use shared_proto::limits::{MAX_ERROR_MESSAGE_CHARS, MAX_NAME_CHARS};
use shared_proto::{
    ErrorPayload, Event, LlmUsage, Payload, RunId, SessionEnd, SessionStart, ToolCall, ToolSource,
    env_vars,
};
use uuid::Uuid;

use crate::cli::{Command, ErrorArgs, SessionEndArgs, SessionStartArgs};
use crate::config::Settings;
use crate::flush::LEASE_TTL_MS;
use crate::spool::{Spool, SpoolError, StoredLedger};
use crate::usage::{ModelUsage, SessionLedger};

/// Most attempts at saving a session ledger when another hook saved it concurrently.
const LEDGER_RETRIES: usize = 8;

/// Namespace of the UUIDv5 ids of `llm_usage` events.
const LLM_USAGE_NAMESPACE: Uuid = Uuid::from_u128(0x6d38_7472_785f_6272_6169_6e5f_6c6c_6d75);

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
        let _ = spool.set_meta("agent_id_fallback", settings.agent_id.as_str());
    }
    let token = match enqueue(command, settings, &mut spool, input.as_ref(), now) {
        // Damage past the header shows only when a statement reads the damaged page: replace
        // the file as at open, and do the work once more on the fresh spool.
        Err(e) if is_spool_corruption(&e) => {
            spool
                .recover()
                .with_context(|| format!("replacing the corrupt spool ({e:#})"))?;
            enqueue(command, settings, &mut spool, input.as_ref(), now)?
        }
        other => other?,
    };
    if let Some(token) = token
        && let Err(e) = spawn_flusher(settings, &token)
    {
        let _ = spool.release_lease(&token);
        return Err(e.context("starting the background flusher"));
    }
    Ok(())
}

/// Whether `e` comes from SQLite finding the spool corrupt.
pub(crate) fn is_spool_corruption(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<SpoolError>())
        .any(SpoolError::is_corruption)
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
            let event = session_start(settings, args, now)?;
            spool.enqueue_and_claim(&[event], claim, LEASE_TTL_MS)?.1
        }
        Command::SessionEnd(args) => {
            let event = session_end(settings, args, now)?;
            spool.enqueue_and_claim(&[event], claim, LEASE_TTL_MS)?.1
        }
        Command::Error(args) => {
            let event = error_event(settings, args, now)?;
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
                |started| match tool_call_event(settings, input, started, now) {
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
        Command::LlmUsage => llm_usage(settings, spool, input()?, now, claim)?,
        Command::Flush(_) | Command::Status(_) | Command::Import(_) => {
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

pub(crate) fn event(
    settings: &Settings,
    session_id: Option<&str>,
    ts: DateTime<Utc>,
    id: Uuid,
    payload: Payload,
) -> anyhow::Result<Event> {
    let run_id = settings
        .run_id
        .clone()
        .or_else(|| session_id.and_then(|s| RunId::parse(s).ok()));
    Event::new(id, ts, settings.agent_id.clone(), run_id, payload).context("building the event")
}

/// A short free-text value cut to the payload's text limit; `None` when empty.
fn name(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(MAX_NAME_CHARS).collect())
}

fn session_start(
    settings: &Settings,
    args: &SessionStartArgs,
    now: DateTime<Utc>,
) -> anyhow::Result<Event> {
    let paperclip_run_id = name(args.paperclip_run_id.as_deref())
        .or_else(|| settings.run_id.as_ref().map(|r| r.as_str().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let payload = Payload::SessionStart(SessionStart {
        paperclip_run_id,
        agent_kind: name(args.agent_kind.as_deref()),
        source: name(args.source.as_deref()),
        ..SessionStart::default()
    });
    event(settings, None, now, Uuid::new_v4(), payload)
}

fn session_end(
    settings: &Settings,
    args: &SessionEndArgs,
    now: DateTime<Utc>,
) -> anyhow::Result<Event> {
    let duration_ms = match (args.duration_ms, args.started_at.as_deref()) {
        (Some(d), _) => d,
        (None, Some(ts)) => {
            let started = parse_started_at(ts)
                .with_context(|| format!("--started-at {ts:?} is not RFC 3339 or Unix time"))?;
            u64::try_from((now - started).num_milliseconds()).unwrap_or(0)
        }
        (None, None) => 0,
    };
    let payload = Payload::SessionEnd(SessionEnd {
        status: args.status,
        exit_code: args.exit_code,
        duration_ms,
        extra: serde_json::Map::new(),
    });
    event(settings, None, now, Uuid::new_v4(), payload)
}

/// RFC 3339, or Unix time in seconds (`date +%s`) or milliseconds (`date +%s%3N`).
fn parse_started_at(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        // Seconds until the year 5138; beyond that it must be milliseconds.
        return if n < 100_000_000_000 {
            DateTime::from_timestamp(n, 0)
        } else {
            DateTime::from_timestamp_millis(n)
        };
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn error_event(settings: &Settings, args: &ErrorArgs, now: DateTime<Utc>) -> anyhow::Result<Event> {
    let payload = Payload::Error(ErrorPayload {
        kind: name(Some(&args.kind)).unwrap_or_else(|| "unknown".to_owned()),
        message_120c: args.message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect(),
        stack_hash: name(args.stack_hash.as_deref()),
        ..ErrorPayload::default()
    });
    event(settings, None, now, Uuid::new_v4(), payload)
}

/// Counts bytes written through it.
struct ByteCount(u64);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Byte length of `v` serialized as compact JSON.
fn serialized_len(v: &Value) -> u64 {
    let mut n = ByteCount(0);
    // Serializing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut n, v);
    n.0
}

/// Whether a `tool_response` looks like a failure: `{"is_error": true}`, an object with a
/// non-empty `error`, a string starting with `Error` or `<tool_use_error>`, or a list of
/// content blocks one of which has `is_error: true`.
pub(crate) fn is_error_response(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.get("is_error").and_then(Value::as_bool) == Some(true)
                || m.get("error").is_some_and(|e| match e {
                    Value::Null | Value::Bool(false) => false,
                    Value::String(s) => !s.is_empty(),
                    _ => true,
                })
        }
        Value::String(s) => {
            let s = s.trim_start();
            s.starts_with("Error") || s.starts_with("<tool_use_error>")
        }
        Value::Array(items) => items
            .iter()
            .any(|i| i.get("is_error").and_then(Value::as_bool) == Some(true)),
        _ => false,
    }
}

/// `mcp__<server>__<tool>` → (mcp or plugin, server); anything else is builtin.
///
/// Plugin-provided MCP servers are named `plugin_<plugin>_<server>` by Claude Code; they are
/// reported as `tool_source = plugin`.
pub(crate) fn tool_origin(tool_name: &str) -> (ToolSource, Option<String>) {
    let Some(rest) = tool_name.strip_prefix("mcp__") else {
        return (ToolSource::Builtin, None);
    };
    let server = rest.split_once("__").map_or(rest, |(s, _)| s);
    if server.is_empty() {
        return (ToolSource::Mcp, None);
    }
    let source = if server.starts_with("plugin_") {
        ToolSource::Plugin
    } else {
        ToolSource::Mcp
    };
    (source, name(Some(server)))
}

fn tool_call_event(
    settings: &Settings,
    input: &HookInput,
    started_at_ms: Option<i64>,
    now: DateTime<Utc>,
) -> anyhow::Result<Event> {
    let tool_name = name(input.tool_name.as_deref()).context("hook input has no tool_name")?;
    let failure_hook = input.hook_event_name.as_deref() == Some("PostToolUseFailure");
    let ok = !failure_hook && !input.tool_response.as_ref().is_some_and(is_error_response);
    let duration_ms = input
        .duration_ms
        .as_ref()
        .and_then(|d| {
            d.as_u64()
                .or_else(|| d.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64))
        })
        .or_else(|| started_at_ms.and_then(|s| u64::try_from(now.timestamp_millis() - s).ok()));
    let (source, mcp_server) = tool_origin(&tool_name);
    let payload = Payload::ToolCall(ToolCall {
        duration_ms,
        ok,
        args_size_bytes: input.tool_input.as_ref().map(serialized_len),
        output_size_bytes: input.tool_response.as_ref().map(serialized_len),
        tool_use_id: name(input.tool_use_id.as_deref()),
        tool_source: Some(source),
        mcp_server,
        tool_name,
        extra: serde_json::Map::new(),
    });
    event(
        settings,
        input.session_id.as_deref(),
        now,
        Uuid::new_v4(),
        payload,
    )
}

/// The transcripts an `llm-usage` invocation reads.
fn transcripts_for(input: &HookInput, session_id: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match input.hook_event_name.as_deref() {
        Some("SubagentStop") => {
            files.extend(input.agent_transcript_path.clone());
        }
        Some("SessionEnd") => {
            if let Some(main) = &input.transcript_path {
                files.push(main.clone());
                if let Some(dir) = main.parent() {
                    files.extend(subagent_transcripts(
                        &dir.join(session_id).join("subagents"),
                    ));
                }
            }
        }
        _ => files.extend(input.transcript_path.clone()),
    }
    files
}

fn subagent_transcripts(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The stable id of an `llm_usage` event: UUIDv5 of the session, the model and the
/// cumulative totals reported so far, so a re-run produces the same id (or nothing).
pub(crate) fn llm_usage_id(session_id: &str, cumulative: &ModelUsage) -> Uuid {
    let key = format!(
        "llm_usage\n{session_id}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        cumulative.model,
        cumulative.input_tokens,
        cumulative.output_tokens,
        cumulative.cache_read_tokens,
        cumulative.cache_write_5m_tokens,
        cumulative.cache_write_1h_tokens,
        cumulative.turns,
    );
    Uuid::new_v5(&LLM_USAGE_NAMESPACE, key.as_bytes())
}

pub(crate) fn usage_payload(u: &ModelUsage) -> Payload {
    let mut extra = serde_json::Map::new();
    if !u.priced {
        // Unknown model: counted, cost 0, flagged.
        extra.insert("priced".into(), Value::Bool(false));
    }
    let cost = if u.cost_cents.is_finite() && u.cost_cents > 0.0 {
        u.cost_cents
    } else {
        0.0
    };
    Payload::LlmUsage(LlmUsage {
        model: u.model.chars().take(MAX_NAME_CHARS).collect(),
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cache_read_tokens: Some(u.cache_read_tokens),
        cache_write_tokens: Some(u.cache_write_5m_tokens + u.cache_write_1h_tokens),
        cost_cents: cost,
        total_turns: u.turns,
        extra,
    })
}

/// The ledger to continue a session with: the stored one, or a fresh one when none is stored
/// (ignoring usage from before a spool recovery, see
/// [`SessionLedger::ignoring_before`]).
///
/// # Errors
/// When the stored ledger cannot be read. It is never replaced by a fresh one: event ids
/// derive from its cumulative totals, so starting over would report the whole session to the
/// server a second time. Emitting nothing for the session undercounts; that is the lesser
/// harm, and the error is recorded where `status` shows it.
pub(crate) fn ledger_for(
    spool: &Spool,
    session_id: &str,
    stored: Option<&StoredLedger>,
) -> anyhow::Result<SessionLedger> {
    match stored {
        Some(s) => SessionLedger::from_json(&s.state).with_context(|| {
            format!(
                "the usage ledger of session {session_id} cannot be used; \
                 emitting no llm_usage for this session (starting over would count it twice)"
            )
        }),
        None => Ok(match spool.recovered_at_ms()? {
            Some(t) => SessionLedger::ignoring_before(t),
            None => SessionLedger::new(),
        }),
    }
}

fn llm_usage(
    settings: &Settings,
    spool: &mut Spool,
    input: &HookInput,
    now: DateTime<Utc>,
    claim: bool,
) -> anyhow::Result<Option<String>> {
    let session_id = input
        .session_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .context("hook input has no session_id")?;
    let files = transcripts_for(input, session_id);
    if files.is_empty() {
        bail!("hook input names no transcript to read");
    }
    let mut problems = Vec::new();
    for _ in 0..LEDGER_RETRIES {
        problems.clear();
        let stored = spool.load_ledger(session_id)?;
        let mut ledger = ledger_for(spool, session_id, stored.as_ref())?;
        for file in &files {
            if let Err(e) = ledger.read_transcript(file) {
                problems.push(format!("{}: {e}", file.display()));
            }
        }
        let mut events = Vec::new();
        for usage in ledger.take_unreported() {
            if usage.turns == 0
                && usage.input_tokens == 0
                && usage.output_tokens == 0
                && usage.cache_read_tokens == 0
                && usage.cache_write_5m_tokens == 0
                && usage.cache_write_1h_tokens == 0
            {
                continue;
            }
            let cumulative = ledger
                .reported(&usage.model)
                .unwrap_or_else(|| usage.clone());
            let id = llm_usage_id(session_id, &cumulative);
            events.push(event(
                settings,
                Some(session_id),
                now,
                id,
                usage_payload(&usage),
            )?);
        }
        let state = serde_json::to_string(&ledger).context("serializing the session ledger")?;
        let version = stored.as_ref().map(|s| s.version);
        if let Some((_, token)) = spool.save_ledger_and_enqueue(
            session_id,
            version,
            &state,
            &events,
            claim,
            LEASE_TTL_MS,
        )? {
            if !problems.is_empty() {
                // The events that could be computed are queued; report the rest.
                if let Some(token) = token {
                    let _ = spawn_flusher(settings, &token);
                }
                bail!(
                    "some transcripts could not be read: {}",
                    problems.join("; ")
                );
            }
            return Ok(token);
        }
        // Another hook saved this session's ledger meanwhile: redo from its state.
    }
    bail!("the session ledger kept changing underneath; gave up after {LEDGER_RETRIES} tries")
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_shapes() {
        assert!(is_error_response(
            &json!({"is_error": true, "content": "x"})
        ));
        assert!(is_error_response(&json!({"error": "boom"})));
        assert!(is_error_response(&json!("Error: file not found")));
        assert!(is_error_response(&json!(
            "<tool_use_error>File has not been read yet</tool_use_error>"
        )));
        assert!(is_error_response(
            &json!([{"type": "text", "text": "x", "is_error": true}])
        ));
        assert!(!is_error_response(&json!({"error": null, "stdout": "ok"})));
        assert!(!is_error_response(
            &json!({"type": "create", "filePath": "/x"})
        ));
        assert!(!is_error_response(&json!("all good")));
    }

    #[test]
    fn origins() {
        assert_eq!(tool_origin("Bash"), (ToolSource::Builtin, None));
        assert_eq!(
            tool_origin("mcp__github__create_issue"),
            (ToolSource::Mcp, Some("github".into()))
        );
        assert_eq!(
            tool_origin("mcp__plugin_acme_db__query"),
            (ToolSource::Plugin, Some("plugin_acme_db".into()))
        );
    }

    #[test]
    fn started_at_forms() {
        let t = parse_started_at("1700000000").unwrap();
        assert_eq!(t.timestamp(), 1_700_000_000);
        let t = parse_started_at("1700000000123").unwrap();
        assert_eq!(t.timestamp_millis(), 1_700_000_000_123);
        let t = parse_started_at("2026-05-03T14:32:00.123Z").unwrap();
        assert_eq!(t.timestamp_millis() % 1000, 123);
        assert!(parse_started_at("yesterday").is_none());
    }

    #[test]
    fn sizes_are_compact_byte_lengths() {
        let v = json!({"a": "é"});
        assert_eq!(serialized_len(&v), r#"{"a":"é"}"#.len() as u64);
    }
}
