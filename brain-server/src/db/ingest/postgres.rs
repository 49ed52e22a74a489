//! The Postgres half of the ingest write: the [`GroupWriter`] statements over one transaction,
//! each a single statement over `UNNEST`ed arrays.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::db::rollups::Rollups;

use super::{AgentClaim, CHUNK_ROWS, EventKey, EventRow, GroupWriter, NewDeadLetter};

/// The ingest statements over one Postgres transaction.
pub(super) struct PgWriter<'a>(pub(super) &'a mut sqlx::PgConnection);

impl GroupWriter for PgWriter<'_> {
    async fn upsert_agents_insert_events(
        &mut self,
        claims: &[AgentClaim],
        rows: &[EventRow<'_>],
        now: DateTime<Utc>,
    ) -> Result<(HashMap<String, String>, HashSet<EventKey>), sqlx::Error> {
        let agent_ids: Vec<&str> = claims.iter().map(|c| c.agent_id.as_str()).collect();
        let claimers: Vec<&str> = claims.iter().map(|c| c.customer_id.as_str()).collect();
        let firsts: Vec<DateTime<Utc>> = claims.iter().map(|c| c.first).collect();
        let lasts: Vec<DateTime<Utc>> = claims.iter().map(|c| c.last).collect();
        let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let ts: Vec<DateTime<Utc>> = rows.iter().map(|r| r.ts).collect();
        let customers: Vec<&str> = rows.iter().map(|r| r.customer_id).collect();
        let agents: Vec<&str> = rows.iter().map(|r| r.agent_id).collect();
        let runs: Vec<Option<&str>> = rows.iter().map(|r| r.run_id).collect();
        let types: Vec<&str> = rows.iter().map(|r| r.event_type).collect();
        let payloads: Vec<&str> = rows.iter().map(|r| r.payload).collect();
        // ONE statement (one round trip, one commit): insert new agents (DO NOTHING takes no
        // lock on existing rows); widen the span of the claimer's own agents (only when
        // `last_seen_at` advances by more than a second, so concurrent writers rarely wait on
        // a hot agent row: it is exact to within 1 s); insert the events whose agent belongs
        // to their customer (of a (customer, id) repeated among those, the first in group
        // order: the array's order); report every visible owner and every inserted key.
        let out: Vec<(Option<String>, Option<String>, Option<Uuid>)> = sqlx::query_as(
            "WITH s AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) \
                          AS s(agent_id, customer_id, first, last)), \
             ins AS (INSERT INTO agents (agent_id, customer_id, first_seen_at, last_seen_at) \
                     SELECT agent_id, customer_id, first, last FROM s \
                     ON CONFLICT (agent_id) DO NOTHING \
                     RETURNING agent_id, customer_id), \
             upd AS (UPDATE agents a SET \
                       first_seen_at = LEAST(a.first_seen_at, s.first), \
                       last_seen_at = GREATEST(a.last_seen_at, s.last) \
                     FROM s WHERE a.agent_id = s.agent_id AND a.customer_id = s.customer_id \
                       AND (s.first < a.first_seen_at OR s.last > a.last_seen_at + interval '1 second')), \
             owners AS (SELECT agent_id, customer_id FROM ins \
                        UNION ALL \
                        SELECT a.agent_id, a.customer_id FROM agents a JOIN s ON a.agent_id = s.agent_id), \
             ev AS (INSERT INTO events (event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload) \
                    SELECT DISTINCT ON (e.customer_id, e.id) e.id, e.ts, $5, e.customer_id, e.agent_id, e.run_id, e.event_type, e.payload::jsonb \
                    FROM UNNEST($6::uuid[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]) \
                      WITH ORDINALITY AS e(id, ts, customer_id, agent_id, run_id, event_type, payload, ord) \
                    WHERE EXISTS (SELECT 1 FROM owners o \
                                  WHERE o.agent_id = e.agent_id AND o.customer_id = e.customer_id) \
                    ORDER BY e.customer_id, e.id, e.ord \
                    ON CONFLICT (customer_id, event_id) DO NOTHING RETURNING customer_id, event_id) \
             SELECT agent_id, customer_id, NULL::uuid FROM owners \
             UNION ALL \
             SELECT NULL, customer_id, event_id FROM ev",
        )
        .bind(agent_ids)
        .bind(claimers)
        .bind(firsts)
        .bind(lasts)
        .bind(now)
        .bind(ids)
        .bind(ts)
        .bind(customers)
        .bind(agents)
        .bind(runs)
        .bind(types)
        .bind(payloads)
        .fetch_all(&mut *self.0)
        .await?;
        let mut owners = HashMap::new();
        let mut inserted = HashSet::new();
        for row in out {
            match row {
                (Some(agent_id), Some(customer_id), _) => {
                    owners.insert(agent_id, customer_id);
                }
                (None, Some(customer_id), Some(id)) => {
                    inserted.insert((customer_id, id));
                }
                _ => {}
            }
        }
        Ok((owners, inserted))
    }

    async fn agent_owners(
        &mut self,
        agent_ids: &[String],
    ) -> Result<HashMap<String, String>, sqlx::Error> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT agent_id, customer_id FROM agents WHERE agent_id = ANY($1)")
                .bind(agent_ids)
                .fetch_all(&mut *self.0)
                .await?;
        Ok(rows.into_iter().collect())
    }

    async fn touch_agents(&mut self, spans: &[AgentClaim]) -> Result<(), sqlx::Error> {
        let ids: Vec<&str> = spans.iter().map(|c| c.agent_id.as_str()).collect();
        let firsts: Vec<DateTime<Utc>> = spans.iter().map(|c| c.first).collect();
        let lasts: Vec<DateTime<Utc>> = spans.iter().map(|c| c.last).collect();
        sqlx::query(
            "UPDATE agents a SET first_seen_at = LEAST(a.first_seen_at, s.first), \
             last_seen_at = GREATEST(a.last_seen_at, s.last) \
             FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[]) AS s(agent_id, first, last) \
             WHERE a.agent_id = s.agent_id AND (s.first < a.first_seen_at OR s.last > a.last_seen_at)",
        )
        .bind(ids)
        .bind(firsts)
        .bind(lasts)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn insert_events(
        &mut self,
        rows: &[EventRow<'_>],
        now: DateTime<Utc>,
    ) -> Result<HashSet<EventKey>, sqlx::Error> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let ts: Vec<DateTime<Utc>> = rows.iter().map(|r| r.ts).collect();
        let customers: Vec<&str> = rows.iter().map(|r| r.customer_id).collect();
        let agents: Vec<&str> = rows.iter().map(|r| r.agent_id).collect();
        let runs: Vec<Option<&str>> = rows.iter().map(|r| r.run_id).collect();
        let types: Vec<&str> = rows.iter().map(|r| r.event_type).collect();
        let payloads: Vec<&str> = rows.iter().map(|r| r.payload).collect();
        let inserted: Vec<(String, Uuid)> = sqlx::query_as(
            "INSERT INTO events (event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload) \
             SELECT e.id, e.ts, $3, e.customer_id, e.agent_id, e.run_id, e.event_type, e.payload::jsonb \
             FROM UNNEST($1::uuid[], $2::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
               AS e(id, ts, customer_id, agent_id, run_id, event_type, payload) \
             ON CONFLICT (customer_id, event_id) DO NOTHING RETURNING customer_id, event_id",
        )
        .bind(ids)
        .bind(ts)
        .bind(now)
        .bind(customers)
        .bind(agents)
        .bind(runs)
        .bind(types)
        .bind(payloads)
        .fetch_all(&mut *self.0)
        .await?;
        Ok(inserted.into_iter().collect())
    }

    async fn insert_dead_letters(
        &mut self,
        rows: &[NewDeadLetter<'_>],
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        // 9 columns × 1000 rows: under the bind limit.
        for chunk in rows.chunks(CHUNK_ROWS) {
            let mut qb = QueryBuilder::<Postgres>::new(
                "INSERT INTO dead_letters (customer_id, received_at, event_id, raw, raw_bytes, truncated, reason, message, dedupe_key) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.customer_id)
                    .push_bind(now)
                    .push_bind(r.event_id.clone())
                    .push_bind(r.raw)
                    .push_bind(r.raw_bytes)
                    .push_bind(r.truncated)
                    .push_bind(r.reason)
                    .push_bind(r.message.clone())
                    .push_bind(r.dedupe_key.clone());
            });
            qb.push(" ON CONFLICT (dedupe_key) DO NOTHING");
            qb.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn upsert_rollups(&mut self, r: &Rollups<'_>, shard: i16) -> Result<(), sqlx::Error> {
        // One statement for every table (data-modifying CTEs): arrays have no bind limit.
        crate::db::rollups::postgres::upsert(&mut *self.0, r, shard, usize::MAX).await
    }

    async fn set_agent_versions(
        &mut self,
        customer_id: &str,
        ts: DateTime<Utc>,
        versions: &BTreeMap<String, String>,
    ) -> Result<(), sqlx::Error> {
        let ids: Vec<&str> = versions.keys().map(String::as_str).collect();
        let vs: Vec<&str> = versions.values().map(String::as_str).collect();
        sqlx::query(
            "UPDATE agents a SET agent_version = v.version, agent_version_at = $2 \
             FROM UNNEST($3::text[], $4::text[]) AS v(agent_id, version) \
             WHERE a.agent_id = v.agent_id AND a.customer_id = $1 \
               AND (a.agent_version_at IS NULL OR a.agent_version_at <= $2)",
        )
        .bind(customer_id)
        .bind(ts)
        .bind(ids)
        .bind(vs)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }
}
