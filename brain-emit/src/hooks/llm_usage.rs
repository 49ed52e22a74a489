//! `llm-usage` (Stop, SubagentStop or SessionEnd JSON): which transcripts the hook reads,
//! then the session's usage sweep ([`crate::usage::sweep`]), which queues what was not
//! reported before.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use super::{HookInput, spawn_flusher};
use crate::config::Settings;
use crate::spool::Spool;
use crate::usage::sweep::sweep_session;

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

pub(super) fn llm_usage(
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
    // A transcript that cannot be read does not stop the others: what could be computed is
    // queued, and the problems are reported afterwards.
    let swept = sweep_session(spool, settings, session_id, now, claim, |ledger| {
        let mut problems = Vec::new();
        for file in &files {
            if let Err(e) = ledger.read_transcript(file) {
                problems.push(format!("{}: {e}", file.display()));
            }
        }
        Ok(problems)
    })?;
    if !swept.read.is_empty() {
        if let Some(token) = swept.token {
            let _ = spawn_flusher(settings, &token);
        }
        bail!(
            "some transcripts could not be read: {}",
            swept.read.join("; ")
        );
    }
    Ok(swept.token)
}
