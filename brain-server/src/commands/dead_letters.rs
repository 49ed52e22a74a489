//! `brain-server dead-letters list` and `dead-letters requeue`: dead letters from the command
//! line, as `GET /admin/dead-letters` and `POST /admin/dead-letters/{id}/requeue` (the same
//! store functions; the requeue is [`crate::requeue`]).

use anyhow::Context as _;
use shared_proto::EventStatus;
use shared_proto::admin::DeadLetterPage;

use super::{UserError, actor, checked_limit, json_text, out, time_text};
use crate::config::{DbConfig, Limits};
use crate::db::DeadLetterFilter;
use crate::ingest::budget::MemoryBudget;
use crate::requeue::{RequeueError, requeue as requeue_one};

/// The rollup shard the command line's requeue writes into (the server's writers use
/// 0..writers; sharing one only means one more writer may wait on a row lock).
const CLI_SHARD: i16 = 0;

/// Prints the newest `limit` dead letters (of one customer, with one reason, when given): a
/// tab-separated table without the raw element, or with `json` the page
/// `GET /admin/dead-letters` answers (raw elements included).
///
/// # Errors
/// [`UserError`] for a `--limit` outside 1–1000; any other error when the database cannot be
/// read or stdout written.
pub(super) async fn list(
    db: &DbConfig,
    customer: Option<String>,
    reason: Option<String>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let limit = checked_limit(limit)?;
    let store = crate::open_store(db).await?;
    let filter = DeadLetterFilter {
        customer_id: customer,
        reason,
        limit: limit + 1,
        ..DeadLetterFilter::default()
    };
    let rows = store.list_dead_letters(&filter).await;
    store.close().await;
    let mut rows = rows.context("listing dead letters")?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    if json {
        let page = DeadLetterPage {
            next_cursor: more
                .then(|| rows.last().map(|d| d.id.to_string()))
                .flatten(),
            dead_letters: rows.into_iter().map(Into::into).collect(),
        };
        return out(&json_text(&page)?);
    }
    let mut text = String::from(
        "id\treceived_at\tcustomer_id\treason\tevent_id\traw_bytes\ttruncated\trequeued_at\tmessage\n",
    );
    for d in rows {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            d.id,
            time_text(d.received_at),
            d.customer_id,
            d.reason,
            d.event_id.unwrap_or_default(),
            d.raw_bytes,
            d.truncated,
            d.requeued_at.map(time_text).unwrap_or_default(),
            d.message.replace(['\t', '\n'], " "),
        ));
    }
    out(&text)
}

/// Requeues the dead letter `id` (the group write of ingest, run here), prints
/// `accepted <event_id>` or `duplicate <event_id>`.
///
/// # Errors
/// [`UserError`] when there is no such dead letter, it is truncated, or it is still refused
/// (with the code); any other error for failures.
pub(super) async fn requeue(db: &DbConfig, id: i64) -> anyhow::Result<()> {
    let store = crate::open_store(db).await?;
    let limits = Limits::default();
    let budget = MemoryBudget::new(limits.in_flight_bytes);
    let writer = store.clone();
    let write = |job| async move {
        Ok(writer
            .write_group(&[job], limits.dead_letter_raw_bytes, Some(CLI_SHARD))
            .await
            .map(|mut per_job| per_job.pop().unwrap_or_default()))
    };
    let result = requeue_one(&store, id, &actor(), budget.guard(), write).await;
    store.close().await;
    match result {
        Ok(done) => {
            let status = if done.status == EventStatus::Accepted {
                "accepted"
            } else {
                "duplicate"
            };
            out(&format!("{status} {}\n", done.event_id))
        }
        Err(e @ (RequeueError::NotFound(_) | RequeueError::Truncated { .. })) => {
            Err(UserError(e.to_string()).into())
        }
        Err(RequeueError::Refused { code, message }) => Err(UserError(format!(
            "dead letter {id} is still refused: {code}: {message}"
        ))
        .into()),
        Err(e) => Err(e).context("requeueing the dead letter"),
    }
}
