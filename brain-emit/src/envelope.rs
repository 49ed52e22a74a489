//! Envelopes stamped with this box's identity: the one place an [`Event`] is built from a
//! payload, with the agent id and run id the configuration resolved (or, for hooks, the
//! Claude session id when no run id is configured).

use anyhow::Context;
use chrono::{DateTime, Utc};
use shared_proto::{Event, Payload, RunId};
use uuid::Uuid;

use crate::config::Settings;

/// The event `id` carrying `payload` at `ts`, from this box's agent; its run is the
/// configured run id, else `session_id` when it is a valid run id, else none.
///
/// # Errors
/// When the envelope is invalid (see [`Event::new`]).
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
