//! The SQLite half of the ingest write: the [`GroupWriter`] statements over one transaction,
//! chunked multi-row statements; times as integer unix milliseconds.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, Transaction};
use uuid::Uuid;

use crate::db::rollups::Rollups;

use super::{AgentClaim, CHUNK_ROWS, EventKey, EventRow, GroupWriter, NewDeadLetter};

/// The ingest statements over one SQLite transaction.
pub(super) struct SqliteWriter<'a, 'c>(pub(super) &'a mut Transaction<'c, Sqlite>);

impl GroupWriter for SqliteWriter<'_, '_> {
    async fn upsert_agents_insert_events(
        &mut self,
        claims: &[AgentClaim],
        rows: &[EventRow<'_>],
        now: DateTime<Utc>,
    ) -> Result<(HashMap<String, String>, HashSet<EventKey>), sqlx::Error> {
        for chunk in claims.chunks(CHUNK_ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO agents (agent_id, customer_id, first_seen_at, last_seen_at) ",
            );
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(c.agent_id.clone())
                    .push_bind(c.customer_id.clone())
                    .push_bind(c.first.timestamp_millis())
                    .push_bind(c.last.timestamp_millis());
            });
            qb.push(
                " ON CONFLICT (agent_id) DO UPDATE SET \
                   first_seen_at = min(first_seen_at, excluded.first_seen_at), \
                   last_seen_at = max(last_seen_at, excluded.last_seen_at) \
                 WHERE customer_id = excluded.customer_id",
            );
            qb.build().execute(&mut **self.0).await?;
        }
        let ids: Vec<String> = claims.iter().map(|c| c.agent_id.clone()).collect();
        let owners = self.agent_owners(&ids).await?;
        let own: Vec<EventRow<'_>> = rows
            .iter()
            .filter(|r| owners.get(r.agent_id).map(String::as_str) == Some(r.customer_id))
            .copied()
            .collect();
        let own = super::first_per_id(own);
        let inserted = self.insert_events(&own, now).await?;
        Ok((owners, inserted))
    }

    async fn agent_owners(
        &mut self,
        agent_ids: &[String],
    ) -> Result<HashMap<String, String>, sqlx::Error> {
        let mut owners = HashMap::new();
        for chunk in agent_ids.chunks(CHUNK_ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT agent_id, customer_id FROM agents WHERE agent_id IN (",
            );
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(id.clone());
            }
            qb.push(")");
            let rows: Vec<(String, String)> = qb.build_query_as().fetch_all(&mut **self.0).await?;
            owners.extend(rows);
        }
        Ok(owners)
    }

    async fn touch_agents(&mut self, spans: &[AgentClaim]) -> Result<(), sqlx::Error> {
        for chunk in spans.chunks(CHUNK_ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new("WITH s(agent_id, first, last) AS (");
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(c.agent_id.clone())
                    .push_bind(c.first.timestamp_millis())
                    .push_bind(c.last.timestamp_millis());
            });
            qb.push(
                ") UPDATE agents SET \
                   first_seen_at = min(first_seen_at, (SELECT s.first FROM s WHERE s.agent_id = agents.agent_id)), \
                   last_seen_at = max(last_seen_at, (SELECT s.last FROM s WHERE s.agent_id = agents.agent_id)) \
                 WHERE agent_id IN (SELECT agent_id FROM s)",
            );
            qb.build().execute(&mut **self.0).await?;
        }
        Ok(())
    }

    async fn insert_events(
        &mut self,
        rows: &[EventRow<'_>],
        now: DateTime<Utc>,
    ) -> Result<HashSet<EventKey>, sqlx::Error> {
        let now = now.timestamp_millis();
        let mut inserted = HashSet::with_capacity(rows.len());
        for chunk in rows.chunks(CHUNK_ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.event_id.hyphenated().to_string())
                    .push_bind(r.ts.timestamp_millis())
                    .push_bind(now)
                    .push_bind(r.customer_id)
                    .push_bind(r.agent_id)
                    .push_bind(r.run_id)
                    .push_bind(r.event_type)
                    .push_bind(r.payload);
            });
            qb.push(
                " ON CONFLICT (customer_id, event_id) DO NOTHING RETURNING customer_id, event_id",
            );
            let keys: Vec<(String, String)> = qb.build_query_as().fetch_all(&mut **self.0).await?;
            inserted.extend(
                keys.into_iter()
                    .filter_map(|(c, id)| Some((c, Uuid::parse_str(&id).ok()?))),
            );
        }
        Ok(inserted)
    }

    async fn insert_dead_letters(
        &mut self,
        rows: &[NewDeadLetter<'_>],
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let now = now.timestamp_millis();
        for chunk in rows.chunks(CHUNK_ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(
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
            qb.build().execute(&mut **self.0).await?;
        }
        Ok(())
    }

    async fn upsert_rollups(&mut self, r: &Rollups<'_>, shard: i16) -> Result<(), sqlx::Error> {
        crate::db::rollups::sqlite::upsert(self.0, r, shard, usize::MAX).await
    }

    async fn set_agent_versions(
        &mut self,
        customer_id: &str,
        ts: DateTime<Utc>,
        versions: &BTreeMap<String, String>,
    ) -> Result<(), sqlx::Error> {
        let ts = ts.timestamp_millis();
        for (agent_id, version) in versions {
            sqlx::query(
                "UPDATE agents SET agent_version = ?1, agent_version_at = ?2 \
                 WHERE agent_id = ?3 AND customer_id = ?4 \
                   AND (agent_version_at IS NULL OR agent_version_at <= ?2)",
            )
            .bind(version)
            .bind(ts)
            .bind(agent_id)
            .bind(customer_id)
            .execute(&mut **self.0)
            .await?;
        }
        Ok(())
    }
}
