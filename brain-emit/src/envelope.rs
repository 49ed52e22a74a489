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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use shared_proto::ErrorPayload;

    fn run_of(env: &[(&str, &str)], session_id: Option<&str>) -> Option<String> {
        let settings = Settings::resolve_for_test(&Overrides::default(), "", env);
        let payload = Payload::Error(ErrorPayload {
            kind: "k".into(),
            message_120c: "m".into(),
            ..ErrorPayload::default()
        });
        event(&settings, session_id, Utc::now(), Uuid::new_v4(), payload)
            .expect("valid event")
            .run_id()
            .map(|r| r.as_str().to_owned())
    }

    #[test]
    fn hook_events_take_the_configured_run_id_before_the_session_id() {
        // The isolate wrapper exports BRAIN_RUN_ID: the hooks' events join its run.
        assert_eq!(
            run_of(&[("BRAIN_RUN_ID", "run_w")], Some("sess_1")).as_deref(),
            Some("run_w")
        );
        assert_eq!(
            run_of(&[("PAPERCLIP_RUN_ID", "run_p")], Some("sess_1")).as_deref(),
            Some("run_p")
        );
        // Nothing configured: the Claude session id, when it is a valid run id.
        assert_eq!(run_of(&[], Some("sess_1")).as_deref(), Some("sess_1"));
        assert_eq!(run_of(&[], Some("not a run id")), None);
        assert_eq!(run_of(&[], None), None);
    }
}
