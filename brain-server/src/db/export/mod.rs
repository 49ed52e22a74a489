//! The export read: the stored events matching an [`ExportFilter`], streamed from the
//! database in `(ts, customer_id, event_id)` order (never collected), and the `export` audit
//! entry.

pub(super) mod postgres;
pub(super) mod sqlite;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{DbError, Store};

/// Which events an export holds: every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    /// Only events with `ts` at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events with `ts` before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only this customer's events.
    pub customer_id: Option<String>,
    /// Only events of this type.
    pub event_type: Option<String>,
}

/// One stored event as the export writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    /// The event's id (lower-case hyphenated UUID).
    pub event_id: String,
    /// When it happened.
    pub ts: DateTime<Utc>,
    /// When the server stored it.
    pub ingested_at: DateTime<Utc>,
    /// The customer whose key sent it.
    pub customer_id: String,
    /// The agent.
    pub agent_id: String,
    /// The run, when it has one.
    pub run_id: Option<String>,
    /// The event type.
    pub event_type: String,
    /// The payload as JSON text.
    pub payload: String,
}

/// Where [`Store::export_events`] hands each row.
pub(crate) trait RowSink: Send {
    /// Takes one row; `false` stops the read.
    fn push(&mut self, row: ExportRow) -> impl Future<Output = bool> + Send;
}

impl Store {
    /// Streams every event matching `filter` in `(ts, customer_id, event_id)` order to `sink`,
    /// one row at a time, as the database sends them; stops early when the sink answers
    /// `false` (the reader went away). Returns the rows passed on.
    ///
    /// # Errors
    /// [`DbError::Query`] when the read fails (the rows passed on before it stay passed on).
    pub(crate) async fn export_events(
        &self,
        filter: &ExportFilter,
        sink: &mut impl RowSink,
    ) -> Result<u64, DbError> {
        dispatch!(self, export_events(filter, sink))
    }

    /// Writes one audit entry (`actor`, `action`, `params`) in its own transaction: for an
    /// action that changes nothing else (an export).
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub(crate) async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        params: &Value,
    ) -> Result<(), DbError> {
        dispatch!(self, record_audit(actor, action, params))
    }
}
