//! The requeue of a dead letter, shared by `POST /admin/dead-letters/{id}/requeue` and
//! `brain-server dead-letters requeue`: the stored element is validated with today's rules
//! ([`crate::ingest::validate`], as `POST /v1/events` does), written as its customer through
//! the ingest write ([`crate::db::Store::write_group`], so dedupe, agent ownership and rollups
//! apply), then the dead letter is marked and the audit entry written.
//!
//! The server hands the write to its writer (group commit, like ingest); the command line,
//! which has no writer, runs the same group write itself. Either way the event's transaction
//! is the ingest write's, and the mark and audit entry follow in a second one: a crash between
//! the two leaves the event stored and the dead letter unmarked, and a second requeue answers
//! `duplicate` and marks it. Requeue is idempotent: the event is stored once.

use std::future::Future;

use serde_json::value::RawValue;
use shared_proto::EventStatus;

use crate::db::ingest::Outcome;
use crate::db::{DbError, DeadLetter, Store};
use crate::ingest::validate::validate;
use crate::ingest::writer::WriteResult;
use crate::ingest::{Item, WriteJob, budget::InFlight};

/// Why a dead letter was not requeued.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequeueError {
    /// No dead letter has this id.
    #[error("dead letter {0} not found")]
    NotFound(i64),
    /// Only a prefix of the element was kept.
    #[error(
        "dead letter {id} keeps only {kept} of the element's {size} bytes; it cannot be requeued"
    )]
    Truncated {
        /// The dead letter.
        id: i64,
        /// Bytes kept.
        kept: usize,
        /// Bytes of the element as received.
        size: i64,
    },
    /// Today's rules still refuse it (validation, or the ingest write: `agent_forbidden`).
    #[error("{code}: {message}")]
    Refused {
        /// The rejection code.
        code: String,
        /// Why.
        message: String,
    },
    /// The ingest writer could not take the write (queue full, shutting down).
    #[error("the ingest writer is overloaded or stopping")]
    Overloaded,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a requeue did.
#[derive(Debug, Clone)]
pub(crate) struct Requeued {
    /// `Accepted` (stored now) or `Duplicate` (already stored).
    pub(crate) status: EventStatus,
    /// The event's id.
    pub(crate) event_id: String,
    /// The dead letter after its mark.
    pub(crate) dead_letter: DeadLetter,
}

/// Requeues the dead letter `id` for `actor`: `write` performs the ingest write of one job
/// (the server's writer, or [`Store::write_group`] directly) and `in_flight` is the job's
/// share of the in-flight budget (an empty one outside the server).
///
/// # Errors
/// [`RequeueError`] says why nothing was requeued.
pub(crate) async fn requeue<W, F>(
    store: &Store,
    id: i64,
    actor: &str,
    in_flight: InFlight,
    write: W,
) -> Result<Requeued, RequeueError>
where
    W: FnOnce(WriteJob) -> F,
    F: Future<Output = Result<WriteResult, RequeueError>>,
{
    let dead = store
        .dead_letter(id)
        .await?
        .ok_or(RequeueError::NotFound(id))?;
    if dead.truncated {
        return Err(RequeueError::Truncated {
            id,
            kept: dead.raw.len(),
            size: dead.raw_bytes,
        });
    }
    let element: &RawValue =
        serde_json::from_str(&dead.raw).map_err(|e| RequeueError::Refused {
            code: "malformed_json".to_owned(),
            message: format!("the stored element is not JSON: {e}"),
        })?;
    let item = validate(&dead.raw, element);
    let event_id = match &item {
        Item::Valid(ev) => ev.event_id.to_string(),
        Item::Rejected { code, message, .. } => {
            return Err(RequeueError::Refused {
                code: code.clone(),
                message: message.clone(),
            });
        }
    };
    let job = WriteJob {
        customer_id: dead.customer_id.clone(),
        items: vec![item],
        body: dead.raw.clone(),
        in_flight,
    };
    let outcome = write(job).await??.pop();
    let status = match outcome {
        Some(Outcome::Accepted(_)) => EventStatus::Accepted,
        Some(Outcome::Duplicate(_)) => EventStatus::Duplicate,
        Some(Outcome::Rejected { code, message, .. }) => {
            return Err(RequeueError::Refused { code, message });
        }
        None => {
            return Err(RequeueError::Refused {
                code: "internal".to_owned(),
                message: "the ingest write answered no outcome".to_owned(),
            });
        }
    };
    let status_name = if status == EventStatus::Accepted {
        "accepted"
    } else {
        "duplicate"
    };
    let dead_letter = store
        .mark_requeued(id, &event_id, status_name, actor)
        .await?;
    Ok(Requeued {
        status,
        event_id,
        dead_letter,
    })
}
