//! Ingest: from a `POST /v1/events` body to committed rows.
//!
//! - [`budget`] counts the bytes of bodies held across all requests (read and not yet
//!   answered) and refuses a request that would go over the server-wide budget;
//! - [`body`] reads the body (size-capped, gunzipped) and splits it into its elements, each
//!   kept as its raw JSON text ([`serde_json::value::RawValue`], no copy, no second parse);
//! - [`validate`] turns each element into an [`Item`]: a [`ValidEvent`] ready to store, or a
//!   rejection with its code;
//! - [`writer`] queues the request as a [`WriteJob`] and commits groups of them
//!   ([`crate::db::Store::write_group`]), answering each request after its group's commit.
//!
//! A job keeps the body it came from, so a dead letter stores the element exactly as sent
//! (unknown fields, `ts` precision) by slicing the body, never by re-serializing.

pub(crate) mod body;
pub(crate) mod budget;
pub(crate) mod retention;
pub(crate) mod validate;
pub(crate) mod writer;

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{DateTime, Utc};
use shared_proto::{ErrorDetail, Event, EventResult, EventStatus, Payload};
use uuid::Uuid;

use crate::db::ingest::Outcome;
use crate::db::rollups::Facts;

/// One ingest request's elements, for the writer.
#[derive(Debug)]
pub(crate) struct WriteJob {
    /// The customer the request's key authenticates.
    pub(crate) customer_id: String,
    /// The elements, in request order.
    pub(crate) items: Vec<Item>,
    /// The body as received (after gunzip); each item's `raw` is a byte range of it.
    pub(crate) body: String,
    /// The body's share of the in-flight budget, given back when the job is dropped (after
    /// its group's commit, or when it is refused or abandoned).
    #[expect(dead_code, reason = "held for its Drop, which gives the bytes back")]
    pub(crate) in_flight: budget::InFlight,
}

impl WriteJob {
    /// The raw JSON text of the element at `span` of the body.
    pub(crate) fn raw(&self, span: &Range<usize>) -> &str {
        self.body.get(span.clone()).unwrap_or_default()
    }
}

/// One element of an ingest request, after validation.
#[derive(Debug)]
pub(crate) enum Item {
    /// A valid event, ready to store.
    Valid(ValidEvent),
    /// A rejected element, to dead-letter.
    Rejected {
        /// Its `event_id`, when it has a string one.
        event_id: Option<String>,
        /// Where its JSON text is in the body.
        raw: Range<usize>,
        /// The rejection code (`missing_field`, `unknown_event_type`, …).
        code: String,
        /// Why, for a person.
        message: String,
    },
}

/// A validated event in the form the database stores it, prepared by the request handler so
/// that the writer (the serial part) only moves data.
#[derive(Debug)]
pub(crate) struct ValidEvent {
    pub(crate) event_id: Uuid,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) agent_id: String,
    pub(crate) run_id: Option<String>,
    pub(crate) event_type: &'static str,
    /// The validated payload, serialized.
    pub(crate) payload: String,
    /// A heartbeat's `agent_versions`; empty for other types.
    pub(crate) agent_versions: BTreeMap<String, String>,
    /// What the event adds to the rollups (taken here, in the handler, so the writer only
    /// adds numbers).
    pub(crate) facts: Facts,
    /// Where its JSON text is in the body (for a dead letter when the agent is forbidden).
    pub(crate) raw: Range<usize>,
}

impl ValidEvent {
    /// The storable form of `ev`, whose JSON text is at `raw` in the body.
    pub(crate) fn new(ev: Event, raw: Range<usize>) -> Self {
        ValidEvent {
            event_id: ev.event_id(),
            ts: ev.ts(),
            agent_id: ev.agent_id().as_str().to_owned(),
            run_id: ev.run_id().map(|r| r.as_str().to_owned()),
            event_type: ev.event_type().as_str(),
            payload: ev.payload_json(),
            agent_versions: match ev.payload() {
                Payload::Heartbeat(hb) => hb.agent_versions.clone(),
                _ => BTreeMap::new(),
            },
            facts: Facts::of(ev.payload()),
            raw,
        }
    }
}

impl From<Outcome> for EventResult {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Accepted(id) => EventResult {
                event_id: Some(id.to_string()),
                status: EventStatus::Accepted,
                error: None,
            },
            Outcome::Duplicate(id) => EventResult {
                event_id: Some(id.to_string()),
                status: EventStatus::Duplicate,
                error: None,
            },
            Outcome::Rejected {
                event_id,
                code,
                message,
            } => EventResult {
                event_id,
                status: EventStatus::Rejected,
                error: Some(ErrorDetail { code, message }),
            },
        }
    }
}
