//! Request and response bodies of the HTTP API: batch results and the error envelope.

use serde::{Deserialize, Serialize};

/// The one error body every error response carries:
/// `{"error": {"code": "snake_case", "message": "…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The code and human message of an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `unknown_event_type`.
    pub code: String,
    /// A sentence for people; never internal error text.
    pub message: String,
}

impl ErrorBody {
    /// An error body with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// What happened to one event of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Stored now.
    Accepted,
    /// Its `event_id` was already stored; nothing changed.
    Duplicate,
    /// Not stored as an event; kept in the dead-letter table with the reason.
    Rejected,
}

/// The result for one event, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventResult {
    /// The event's id as sent; `None` when the element had no readable `event_id`.
    pub event_id: Option<String>,
    /// What happened to it.
    pub status: EventStatus,
    /// Why it was rejected (only for [`EventStatus::Rejected`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The 200 (or single-event 422) body of `POST /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// Events stored by this request.
    pub accepted: u32,
    /// Events whose id was already stored.
    pub duplicate: u32,
    /// Events dead-lettered.
    pub rejected: u32,
    /// One result per event, in request order.
    pub results: Vec<EventResult>,
}

impl BatchResponse {
    /// Builds the response from per-event results, counting each status.
    pub fn from_results(results: Vec<EventResult>) -> Self {
        let count =
            |s| u32::try_from(results.iter().filter(|r| r.status == s).count()).unwrap_or(u32::MAX);
        BatchResponse {
            accepted: count(EventStatus::Accepted),
            duplicate: count(EventStatus::Duplicate),
            rejected: count(EventStatus::Rejected),
            results,
        }
    }
}
