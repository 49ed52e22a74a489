//! The subcommands the isolate wrapper calls with flags around an agent run:
//! `session.start`, `session.end` and `error`. No stdin.

use anyhow::Context;
use chrono::{DateTime, Utc};
use shared_proto::limits::MAX_ERROR_MESSAGE_CHARS;
use shared_proto::{ErrorPayload, Event, Payload, SessionEnd, SessionStart};
use uuid::Uuid;

use super::name;
use crate::cli::{ErrorArgs, SessionEndArgs, SessionStartArgs};
use crate::config::Settings;
use crate::envelope::event;

pub(super) fn session_start(
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

pub(super) fn session_end(
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

pub(super) fn error_event(
    settings: &Settings,
    args: &ErrorArgs,
    now: DateTime<Utc>,
) -> anyhow::Result<Event> {
    let payload = Payload::Error(ErrorPayload {
        kind: name(Some(&args.kind)).unwrap_or_else(|| "unknown".to_owned()),
        message_120c: args.message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect(),
        stack_hash: name(args.stack_hash.as_deref()),
        ..ErrorPayload::default()
    });
    event(settings, None, now, Uuid::new_v4(), payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    /// `session.start` as `run_hook` resolves it: `--paperclip-run-id` is among the
    /// overrides.
    fn start(paperclip: Option<&str>, env: &[(&str, &str)]) -> Event {
        let args = SessionStartArgs {
            paperclip_run_id: paperclip.map(str::to_owned),
            ..SessionStartArgs::default()
        };
        let flags = Overrides {
            paperclip_run_id: args.paperclip_run_id.clone(),
            ..Overrides::default()
        };
        let settings = Settings::resolve_for_test(&flags, "", env);
        session_start(&settings, &args, Utc::now()).expect("session.start builds")
    }

    fn run_of(e: &Event) -> Option<&str> {
        e.run_id().map(|r| r.as_str())
    }

    fn paperclip_of(e: &Event) -> serde_json::Value {
        e.payload_value()["paperclip_run_id"].clone()
    }

    #[test]
    fn paperclip_run_id_flag_is_the_envelope_run_id() {
        // The issue: `session.start --paperclip-run-id run_1` stored run_id NULL.
        let e = start(Some("run_1"), &[]);
        assert_eq!(run_of(&e), Some("run_1"));
        assert_eq!(paperclip_of(&e), "run_1");
    }

    #[test]
    fn brain_run_id_keeps_start_joined_with_the_hooks() {
        // The hooks see BRAIN_RUN_ID: the start carries it; the payload keeps Paperclip's id.
        let e = start(Some("pc_1"), &[("BRAIN_RUN_ID", "run_brain")]);
        assert_eq!(run_of(&e), Some("run_brain"));
        assert_eq!(paperclip_of(&e), "pc_1");
        // Without the flag the payload defaults to the run id.
        let e = start(None, &[("PAPERCLIP_RUN_ID", "pc_env")]);
        assert_eq!(run_of(&e), Some("pc_env"));
        assert_eq!(paperclip_of(&e), "pc_env");
    }

    #[test]
    fn invalid_paperclip_run_id_stays_in_the_payload() {
        let e = start(Some("run/1 bad"), &[]);
        assert_eq!(run_of(&e), None, "not a valid run id: no envelope run id");
        assert_eq!(paperclip_of(&e), "run/1 bad");
        let e = start(Some("run/1 bad"), &[("PAPERCLIP_RUN_ID", "pc_env")]);
        assert_eq!(run_of(&e), Some("pc_env"));
        assert_eq!(paperclip_of(&e), "run/1 bad");
    }

    #[test]
    fn session_end_and_error_carry_the_configured_run_id() {
        let settings = Settings::resolve_for_test(
            &Overrides::default(),
            "",
            &[("PAPERCLIP_RUN_ID", "run_pc")],
        );
        let end = SessionEndArgs {
            status: shared_proto::SessionStatus::Success,
            exit_code: 0,
            duration_ms: Some(1),
            started_at: None,
        };
        let e = session_end(&settings, &end, Utc::now()).expect("session.end builds");
        assert_eq!(run_of(&e), Some("run_pc"));
        let err = ErrorArgs {
            kind: "wrapper_failed".into(),
            message: "x".into(),
            stack_hash: None,
        };
        let e = error_event(&settings, &err, Utc::now()).expect("error builds");
        assert_eq!(run_of(&e), Some("run_pc"));
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
}
