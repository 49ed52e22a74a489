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
