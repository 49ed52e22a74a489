//! The ingest write: one group of ingest requests (see [`crate::ingest`]) in ONE transaction
//! on both backends: claim new agents, refuse agents owned by another customer, insert events
//! (`ON CONFLICT (customer_id, event_id) DO NOTHING` makes a resend a duplicate; dedupe is
//! scoped to the customer, so another customer's event with the same id is stored too),
//! dead-letter rejected elements, widen agent spans, apply heartbeat versions, commit.
//!
//! The algorithm (ownership, dedupe within the group, classification of every element) is
//! written once here, over the [`GroupWriter`] statements each backend implements in its
//! half. Nothing of a group is visible before its commit, and a failed group leaves nothing
//! behind: so a resend after any failure can neither lose nor double count a contribution.

mod postgres;
mod sqlite;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::rollups::{Facts, Rollups, StoredEvent};
use super::{DbError, Store};
use crate::ingest::{Item, WriteJob};

impl Store {
    /// Writes one group of ingest requests in a single transaction and returns, per request,
    /// the outcome of each element in request order. A dead letter stores at most
    /// `dead_letter_raw_bytes` of its element's JSON (see [`NewDeadLetter`]). The rollups
    /// (docs/rollups.md) get the contributions of the events this write inserted, in rows of
    /// `shard` (the writer's index); `None` leaves them alone (benchmarks only, to measure
    /// their cost). Nothing is visible before the commit; on an error nothing of the group was
    /// committed (the transaction is rolled back).
    ///
    /// # Errors
    /// [`DbError::Query`] when a statement or the commit fails.
    pub(crate) async fn write_group(
        &self,
        jobs: &[WriteJob],
        dead_letter_raw_bytes: usize,
        shard: Option<i16>,
    ) -> Result<Vec<Vec<Outcome>>, DbError> {
        let now = Utc::now();
        let cap = dead_letter_raw_bytes;
        match self {
            Store::Postgres(pool) => {
                // Concurrent writers' transactions can deadlock on agent rows (each widens
                // the spans of its group's agents, then sets heartbeat versions): Postgres
                // aborts one of them, which committed nothing, so it is simply run again.
                let mut attempt = 1;
                loop {
                    let mut tx = pool.begin().await?;
                    let written = async {
                        let out =
                            write_group_in(&mut postgres::PgWriter(&mut tx), jobs, now, cap, shard)
                                .await?;
                        tx.commit().await?;
                        Ok(out)
                    }
                    .await;
                    match written {
                        Err(DbError::Query(e))
                            if attempt < PG_ATTEMPTS && is_transaction_conflict(&e) =>
                        {
                            tracing::debug!(error = %e, attempt, "ingest transaction conflict; writing the group again");
                            attempt += 1;
                        }
                        other => return other,
                    }
                }
            }
            Store::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let out = write_group_in(&mut sqlite::SqliteWriter(&mut tx), jobs, now, cap, shard)
                    .await?;
                tx.commit().await?;
                Ok(out)
            }
        }
    }
}

/// How many times a Postgres group write is tried when it loses a transaction conflict.
const PG_ATTEMPTS: u32 = 3;

/// Whether Postgres aborted the transaction for a conflict with another one (SQLSTATE
/// `40P01` deadlock detected, `40001` serialization failure): running it again may succeed.
fn is_transaction_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c == "40P01" || c == "40001"),
        _ => false,
    }
}

/// What became of one element of an ingest request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored by this write.
    Accepted(Uuid),
    /// Already stored for this customer (by an earlier write or earlier in this group).
    Duplicate(Uuid),
    /// Dead-lettered by this write.
    Rejected {
        /// The element's `event_id`, when it had a readable one.
        event_id: Option<String>,
        /// The rejection code (`unknown_event_type`, `agent_forbidden`, …).
        code: String,
        /// Why, for a person.
        message: String,
    },
}

/// What identifies a stored event: (customer, `event_id`). Dedupe is scoped to the customer.
type EventKey = (String, Uuid);

/// An event row to insert (borrowing from the request).
#[derive(Debug, Clone, Copy)]
struct EventRow<'a> {
    event_id: Uuid,
    ts: DateTime<Utc>,
    customer_id: &'a str,
    agent_id: &'a str,
    run_id: Option<&'a str>,
    event_type: &'static str,
    payload: &'a str,
    /// What it adds to the rollups.
    facts: &'a Facts,
}

/// A dead letter to insert: the element's JSON as received, cut to a size cap.
///
/// An element longer than the cap is stored cut at the last character boundary at or under
/// it, with `truncated` set and `raw_bytes` its full size; its `event_id`, code and message are
/// kept whole. The dedupe key is taken over the full text, so two long elements that differ
/// only past the cap are two dead letters.
#[derive(Debug)]
struct NewDeadLetter<'a> {
    customer_id: &'a str,
    event_id: Option<String>,
    /// The element's JSON text as received, at most the cap.
    raw: &'a str,
    /// The size of the element's JSON text as received, in bytes.
    raw_bytes: i64,
    /// Whether `raw` is cut short of the element.
    truncated: bool,
    reason: &'a str,
    message: String,
    /// Hex SHA-256 of (customer, reason, full raw). The insert skips a key already stored,
    /// so the same rejected element sent again (a client's resend after a lost answer) is
    /// kept once.
    dedupe_key: String,
}

impl<'a> NewDeadLetter<'a> {
    /// A dead letter of the element `full` (its whole JSON text), stored cut to `cap` bytes.
    fn new(
        customer_id: &'a str,
        event_id: Option<String>,
        full: &'a str,
        reason: &'a str,
        message: String,
        cap: usize,
    ) -> Self {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for part in [customer_id, reason, full] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let raw = cut(full, cap);
        NewDeadLetter {
            customer_id,
            event_id,
            raw,
            raw_bytes: i64::try_from(full.len()).unwrap_or(i64::MAX),
            truncated: raw.len() < full.len(),
            reason,
            message,
            dedupe_key: hex::encode(h.finalize()),
        }
    }
}

/// The longest prefix of `text` of at most `cap` bytes that ends on a character boundary.
fn cut(text: &str, cap: usize) -> &str {
    let mut end = cap.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// `text` with each U+0000 written as the JSON escape `\u0000` (six characters). Postgres
/// cannot store a NUL in `TEXT`, and a rejected element's `event_id` (or the message quoting
/// its bad `ts` or `event_type`) may hold one; both backends store the same text. The
/// element's raw JSON needs no escaping: JSON text cannot hold a bare NUL.
fn escape_nul(text: &str) -> String {
    text.replace('\0', "\\u0000")
}

/// An agent first seen in this group: who claims it and the span of its events.
#[derive(Debug)]
struct AgentClaim {
    agent_id: String,
    customer_id: String,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// The statements one ingest transaction needs, implemented per backend over its transaction.
trait GroupWriter {
    /// Upserts the group's agents (a new agent is claimed by its claim's customer; the
    /// claimer's own agents have their span widened) and inserts the `rows` whose agent the
    /// row's customer owns (of those, the first row of each (customer, `event_id`); `rows` are
    /// sorted by that key, stably), skipping stored keys. Returns the owner of each claimed
    /// agent it could see (a missing one needs [`Self::agent_owners`]) and the inserted keys.
    async fn upsert_agents_insert_events(
        &mut self,
        claims: &[AgentClaim],
        rows: &[EventRow<'_>],
        now: DateTime<Utc>,
    ) -> Result<(HashMap<String, String>, HashSet<EventKey>), sqlx::Error>;
    /// The owner of each of these agents.
    async fn agent_owners(
        &mut self,
        agent_ids: &[String],
    ) -> Result<HashMap<String, String>, sqlx::Error>;
    /// Inserts events (one row per (customer, `event_id`)), skipping stored keys; returns the
    /// keys actually inserted.
    async fn insert_events(
        &mut self,
        rows: &[EventRow<'_>],
        now: DateTime<Utc>,
    ) -> Result<HashSet<EventKey>, sqlx::Error>;
    /// Widens `first_seen_at`/`last_seen_at` of agents to include these spans.
    async fn touch_agents(&mut self, spans: &[AgentClaim]) -> Result<(), sqlx::Error>;
    /// Inserts dead letters.
    async fn insert_dead_letters(
        &mut self,
        rows: &[NewDeadLetter],
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error>;
    /// Adds the rollup contributions `r` in rows of writer `shard` (docs/rollups.md).
    async fn upsert_rollups(&mut self, r: &Rollups<'_>, shard: i16) -> Result<(), sqlx::Error>;
    /// Sets `agent_version` of the customer's agents named in a heartbeat at `ts`, unless a
    /// later heartbeat already did.
    async fn set_agent_versions(
        &mut self,
        customer_id: &str,
        ts: DateTime<Utc>,
        versions: &BTreeMap<String, String>,
    ) -> Result<(), sqlx::Error>;
}

/// The first row of each (customer, `event_id`) in `rows` (sorted by that key, stably: the
/// first in group order).
fn first_per_id(mut rows: Vec<EventRow<'_>>) -> Vec<EventRow<'_>> {
    rows.dedup_by_key(|r| (r.customer_id, r.event_id));
    rows
}

/// The rollup contributions of the events of `rows` (sorted by (customer, `event_id`),
/// stably) that this write inserted, stored at `now`.
fn inserted_rollups<'a>(
    rows: &[EventRow<'a>],
    owners: &HashMap<String, String>,
    inserted: &HashSet<EventKey>,
    now: DateTime<Utc>,
) -> Rollups<'a> {
    let mut rollups = Rollups::default();
    let ingested_at = now.timestamp_millis();
    let mut previous: Option<(&str, Uuid)> = None;
    for r in rows {
        if owners.get(r.agent_id).map(String::as_str) != Some(r.customer_id) {
            continue;
        }
        let key = (r.customer_id, r.event_id);
        if previous == Some(key) {
            continue;
        }
        previous = Some(key);
        if !inserted.contains(&(r.customer_id.to_owned(), r.event_id)) {
            continue;
        }
        rollups.add(&StoredEvent {
            customer_id: r.customer_id,
            agent_id: r.agent_id,
            run_id: r.run_id,
            event_id: r.event_id,
            ts: r.ts.timestamp_millis(),
            ingested_at,
            facts: r.facts,
        });
    }
    rollups
}

/// The rejection code of an event whose agent belongs to another customer.
const AGENT_FORBIDDEN: &str = "agent_forbidden";

/// Rows per multi-row statement (8 columns × 1000 stays under both backends' bind limits).
const CHUNK_ROWS: usize = 1000;

/// The backend-independent ingest write: ownership, dedupe, inserts, agent upserts.
async fn write_group_in<W: GroupWriter>(
    w: &mut W,
    jobs: &[WriteJob],
    now: DateTime<Utc>,
    dead_letter_raw_bytes: usize,
    shard: Option<i16>,
) -> Result<Vec<Vec<Outcome>>, DbError> {
    // 1. Claims: the first request of the group that names an agent claims it for its
    //    customer (an existing owner is never replaced); the span covers that customer's
    //    events of the agent. Candidate rows: every valid event. An id repeated in the group
    //    by one customer is deduped only among the rows whose sender owns the agent (by the
    //    backend's insert), so that a copy under a forbidden agent cannot shadow the owner's
    //    copy; the same id sent by two customers is two events.
    let mut claims: BTreeMap<&str, AgentClaim> = BTreeMap::new();
    let mut rows = Vec::new();
    for job in jobs {
        for item in &job.items {
            let Item::Valid(ev) = item else { continue };
            let claim = claims
                .entry(ev.agent_id.as_str())
                .or_insert_with(|| AgentClaim {
                    agent_id: ev.agent_id.clone(),
                    customer_id: job.customer_id.clone(),
                    first: ev.ts,
                    last: ev.ts,
                });
            if claim.customer_id == job.customer_id {
                claim.first = claim.first.min(ev.ts);
                claim.last = claim.last.max(ev.ts);
            }
            rows.push(EventRow {
                event_id: ev.event_id,
                ts: ev.ts,
                customer_id: &job.customer_id,
                agent_id: &ev.agent_id,
                run_id: ev.run_id.as_deref(),
                event_type: ev.event_type,
                payload: &ev.payload,
                facts: &ev.facts,
            });
        }
    }
    // Sorted by the key (customer, event_id), so that concurrent writers lock the unique index
    // in one order. The sort is stable: rows with one key stay in group order, the first is
    // the one stored.
    rows.sort_by_key(|r| (r.customer_id, r.event_id));
    let claims: Vec<AgentClaim> = claims.into_values().collect();

    // 2. Agents and events, in one statement where the backend allows.
    let (mut owners, mut inserted) = if rows.is_empty() {
        (HashMap::new(), HashSet::new())
    } else {
        w.upsert_agents_insert_events(&claims, &rows, now).await?
    };
    // Claimed concurrently by another transaction after that statement's snapshot: look
    // again, and insert the events of those agents that turn out to be their customer's.
    let missing: Vec<String> = claims
        .iter()
        .filter(|c| !owners.contains_key(&c.agent_id))
        .map(|c| c.agent_id.clone())
        .collect();
    if !missing.is_empty() {
        owners.extend(w.agent_owners(&missing).await?);
        let late: Vec<EventRow<'_>> = rows
            .iter()
            .filter(|r| missing.iter().any(|m| m == r.agent_id))
            .filter(|r| owners.get(r.agent_id).map(String::as_str) == Some(r.customer_id))
            .copied()
            .collect();
        let late = first_per_id(late);
        if !late.is_empty() {
            inserted.extend(w.insert_events(&late, now).await?);
        }
    }

    // 3. Classify every element, in request order.
    let mut first_seen: HashSet<(&str, Uuid)> = HashSet::new();
    let mut dead = Vec::new();
    let mut spans: BTreeMap<&str, AgentClaim> = BTreeMap::new();
    let mut heartbeats = Vec::new();
    let mut outcomes: Vec<Vec<Outcome>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut job_outcomes = Vec::with_capacity(job.items.len());
        for item in &job.items {
            match item {
                Item::Rejected {
                    event_id,
                    raw,
                    code,
                    message,
                } => {
                    dead.push(NewDeadLetter::new(
                        &job.customer_id,
                        event_id.as_deref().map(escape_nul),
                        job.raw(raw),
                        code,
                        escape_nul(message),
                        dead_letter_raw_bytes,
                    ));
                    job_outcomes.push(Outcome::Rejected {
                        event_id: event_id.clone(),
                        code: code.clone(),
                        message: message.clone(),
                    });
                }
                Item::Valid(ev) => {
                    let id = ev.event_id;
                    let agent = ev.agent_id.as_str();
                    if owners.get(agent).map(String::as_str) != Some(job.customer_id.as_str()) {
                        let message = format!("agent_id `{agent}` belongs to another customer");
                        let event_id = id.to_string();
                        dead.push(NewDeadLetter::new(
                            &job.customer_id,
                            Some(event_id.clone()),
                            // The element as sent (unknown fields, `ts` precision).
                            job.raw(&ev.raw),
                            AGENT_FORBIDDEN,
                            message.clone(),
                            dead_letter_raw_bytes,
                        ));
                        job_outcomes.push(Outcome::Rejected {
                            event_id: Some(event_id),
                            code: AGENT_FORBIDDEN.to_owned(),
                            message,
                        });
                        continue;
                    }
                    // A duplicate still widens its agent's span and applies its heartbeat's
                    // versions: both are idempotent, so this changes nothing when the
                    // original write did it already.
                    let key = (job.customer_id.clone(), id);
                    let outcome = if !first_seen.insert((job.customer_id.as_str(), id))
                        || !inserted.contains(&key)
                    {
                        Outcome::Duplicate(id)
                    } else {
                        Outcome::Accepted(id)
                    };
                    let span = spans.entry(agent).or_insert_with(|| AgentClaim {
                        agent_id: agent.to_owned(),
                        customer_id: job.customer_id.clone(),
                        first: ev.ts,
                        last: ev.ts,
                    });
                    span.first = span.first.min(ev.ts);
                    span.last = span.last.max(ev.ts);
                    if !ev.agent_versions.is_empty() {
                        heartbeats.push((job.customer_id.as_str(), ev.ts, &ev.agent_versions));
                    }
                    job_outcomes.push(outcome);
                }
            }
        }
        outcomes.push(job_outcomes);
    }

    // 4. Rare follow-ups: dead letters; an agent named first in this group by a customer
    //    that does not own it (the owner's events still widen its span); heartbeat versions.
    if !dead.is_empty() {
        w.insert_dead_letters(&dead, now).await?;
    }
    let claimers: HashMap<&str, &str> = claims
        .iter()
        .map(|c| (c.agent_id.as_str(), c.customer_id.as_str()))
        .collect();
    let spans: Vec<AgentClaim> = spans
        .into_values()
        .filter(|s| claimers.get(s.agent_id.as_str()) != Some(&s.customer_id.as_str()))
        .collect();
    if !spans.is_empty() {
        w.touch_agents(&spans).await?;
    }
    for (customer_id, ts, versions) in heartbeats {
        w.set_agent_versions(customer_id, ts, versions).await?;
    }

    // 5. Rollups, last (their hot rows stay locked only until the commit): the contributions
    //    of exactly the events inserted above. Of the rows whose sender owns the agent, the
    //    first of each (customer, event_id) is the one stored (`rows` is sorted by that key,
    //    stably); it counts when this write inserted it (not a duplicate).
    if let Some(shard) = shard {
        let rollups = inserted_rollups(&rows, &owners, &inserted, now);
        if !rollups.is_empty() {
            w.upsert_rollups(&rollups, shard).await?;
        }
    }

    Ok(outcomes)
}
