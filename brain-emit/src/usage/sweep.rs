//! The one loop from transcripts to `llm_usage` events, shared by the `llm-usage` hook and
//! `import`: load the session's ledger from the spool, read transcripts into it, build one
//! event per model with new usage, and save the ledger with its events in one transaction,
//! redoing it all from the stored state when another process saved the ledger meanwhile.
//!
//! Event ids are UUIDv5 of the session and the cumulative totals reported so far, so the hook
//! and an import of the same session produce the same ids, and re-running queues nothing.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::Value;
use shared_proto::limits::MAX_NAME_CHARS;
use shared_proto::{Event, LlmUsage, Payload};
use uuid::Uuid;

use super::{ModelUsage, SessionLedger};
use crate::config::Settings;
use crate::envelope::event;
use crate::flush::LEASE_TTL_MS;
use crate::spool::{EnqueueOutcome, Spool, StoredLedger};

/// Most attempts at saving a session ledger when another process saved it concurrently.
const LEDGER_RETRIES: usize = 8;

/// Namespace of the UUIDv5 ids of `llm_usage` events.
const LLM_USAGE_NAMESPACE: Uuid = Uuid::from_u128(0x6d38_7472_785f_6272_6169_6e5f_6c6c_6d75);

/// What [`sweep_session`] did.
#[derive(Debug)]
pub(crate) struct Swept<R> {
    /// What the caller's `read` returned on the attempt that was saved.
    pub(crate) read: R,
    /// The enqueue of the session's new events.
    pub(crate) outcome: EnqueueOutcome,
    /// The lease claimed for a background flusher, when `claim` was set and it was free.
    pub(crate) token: Option<String>,
}

/// Brings the session `session_id` up to date: `read` folds transcripts into the session's
/// ledger, and whatever usage it adds is queued as `llm_usage` events stamped `ts`, saved
/// with the ledger in one transaction (claiming the delivery lease in it when `claim` is
/// set, as [`Spool::enqueue_and_claim`] does).
///
/// `read` may run several times (once per attempt), each time on a ledger freshly loaded
/// from the spool.
///
/// # Errors
/// When the spool fails, the stored ledger cannot be used (see [`ledger_for`]), `read` fails,
/// an event cannot be built, or the ledger kept changing underneath for
/// [`LEDGER_RETRIES`] attempts.
pub(crate) fn sweep_session<R>(
    spool: &mut Spool,
    settings: &Settings,
    session_id: &str,
    ts: DateTime<Utc>,
    claim: bool,
    mut read: impl FnMut(&mut SessionLedger) -> anyhow::Result<R>,
) -> anyhow::Result<Swept<R>> {
    for _ in 0..LEDGER_RETRIES {
        let stored = spool.load_ledger(session_id)?;
        let mut ledger = ledger_for(spool, session_id, stored.as_ref())?;
        let read_result = read(&mut ledger)?;
        let events = unreported_events(settings, session_id, ts, &mut ledger)?;
        let state = serde_json::to_string(&ledger).context("serializing the session ledger")?;
        let version = stored.as_ref().map(|s| s.version);
        if let Some((outcome, token)) = spool.save_ledger_and_enqueue(
            session_id,
            version,
            &state,
            &events,
            claim,
            LEASE_TTL_MS,
        )? {
            return Ok(Swept {
                read: read_result,
                outcome,
                token,
            });
        }
        // Another process saved this session's ledger meanwhile: redo from its state.
    }
    bail!("the session ledger kept changing underneath; gave up after {LEDGER_RETRIES} tries")
}

/// The ledger to continue a session with: the stored one, or a fresh one when none is stored
/// (ignoring usage from before a spool recovery, see
/// [`SessionLedger::ignoring_before`]).
///
/// # Errors
/// When the stored ledger cannot be read. It is never replaced by a fresh one: event ids
/// derive from its cumulative totals, so starting over would report the whole session to the
/// server a second time. Emitting nothing for the session undercounts; that is the lesser
/// harm, and the error is recorded where `status` shows it.
fn ledger_for(
    spool: &Spool,
    session_id: &str,
    stored: Option<&StoredLedger>,
) -> anyhow::Result<SessionLedger> {
    match stored {
        Some(s) => SessionLedger::from_json(&s.state).with_context(|| {
            format!(
                "the usage ledger of session {session_id} cannot be used; \
                 emitting no llm_usage for this session (starting over would count it twice)"
            )
        }),
        None => Ok(match spool.recovered_at_ms()? {
            Some(t) => SessionLedger::ignoring_before(t),
            None => SessionLedger::new(),
        }),
    }
}

/// One `llm_usage` event per model with usage not reported yet (marking it reported).
///
/// A report without tokens or turns is skipped: its id, derived from unchanged cumulative
/// token and turn totals, would repeat the previous report's.
fn unreported_events(
    settings: &Settings,
    session_id: &str,
    ts: DateTime<Utc>,
    ledger: &mut SessionLedger,
) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    for usage in ledger.take_unreported() {
        if usage.turns == 0
            && usage.input_tokens == 0
            && usage.output_tokens == 0
            && usage.cache_read_tokens == 0
            && usage.cache_write_5m_tokens == 0
            && usage.cache_write_1h_tokens == 0
        {
            continue;
        }
        let cumulative = ledger
            .reported(&usage.model)
            .unwrap_or_else(|| usage.clone());
        let id = llm_usage_id(session_id, &cumulative);
        events.push(event(
            settings,
            Some(session_id),
            ts,
            id,
            usage_payload(&usage),
        )?);
    }
    Ok(events)
}

/// The stable id of an `llm_usage` event: UUIDv5 of the session, the model and the
/// cumulative totals reported so far, so a re-run produces the same id (or nothing).
fn llm_usage_id(session_id: &str, cumulative: &ModelUsage) -> Uuid {
    let key = format!(
        "llm_usage\n{session_id}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        cumulative.model,
        cumulative.input_tokens,
        cumulative.output_tokens,
        cumulative.cache_read_tokens,
        cumulative.cache_write_5m_tokens,
        cumulative.cache_write_1h_tokens,
        cumulative.turns,
    );
    Uuid::new_v5(&LLM_USAGE_NAMESPACE, key.as_bytes())
}

/// The `llm_usage` payload of one report: cache writes of both lifetimes together (saturating:
/// an absurd transcript then fails the payload's upper bound and is refused, never wrapped),
/// cost 0 and `priced: false` for a model the price table does not know.
fn usage_payload(u: &ModelUsage) -> Payload {
    let mut extra = serde_json::Map::new();
    if !u.priced {
        // Unknown model: counted, cost 0, flagged.
        extra.insert("priced".into(), Value::Bool(false));
    }
    let cost = if u.cost_cents.is_finite() && u.cost_cents > 0.0 {
        u.cost_cents
    } else {
        0.0
    };
    Payload::LlmUsage(LlmUsage {
        model: u.model.chars().take(MAX_NAME_CHARS).collect(),
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cache_read_tokens: Some(u.cache_read_tokens),
        cache_write_tokens: Some(
            u.cache_write_5m_tokens
                .saturating_add(u.cache_write_1h_tokens),
        ),
        cost_cents: cost,
        total_turns: u.turns,
        extra,
    })
}
