//! The SQLite statements: one function per statement, times as integer unix milliseconds,
//! payloads as JSON text.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{FromRow, QueryBuilder, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use super::{
    AgentClaim, AgentRow, AgentSummary, AuditEntry, AuthKey, CHUNK_ROWS, CustomerRow, DbError,
    DeadLetter, EventRow, GroupWriter, HealthRow, KeyInfo, NewDeadLetter, NewKey, OverviewRow,
    ToolCallRow, from_ms,
};

pub(super) async fn ping(pool: &SqlitePool) -> Result<(), DbError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

pub(super) async fn count(pool: &SqlitePool, sql: &'static str) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?)
}

#[derive(FromRow)]
struct KeyRow {
    key_id: String,
    customer_id: String,
    env: String,
    label: Option<String>,
    last4: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<KeyRow> for KeyInfo {
    fn from(r: KeyRow) -> Self {
        KeyInfo {
            key_id: r.key_id,
            customer_id: r.customer_id,
            env: r.env,
            label: r.label,
            last4: r.last4,
            created_at: from_ms(r.created_at),
            revoked_at: r.revoked_at.map(from_ms),
        }
    }
}

async fn audit(
    tx: &mut Transaction<'_, Sqlite>,
    actor: &str,
    action: &str,
    params: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, params) VALUES (?, ?, ?, ?)")
        .bind(Utc::now().timestamp_millis())
        .bind(actor)
        .bind(action)
        .bind(params.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Returns (customer created, rotation).
pub(super) async fn mint_key(
    pool: &SqlitePool,
    name: &str,
    k: &NewKey,
    actor: &str,
) -> Result<(bool, bool), DbError> {
    let mut tx = pool.begin().await?;
    let created = sqlx::query(
        "INSERT INTO customers (customer_id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (customer_id) DO NOTHING",
    )
    .bind(&k.customer_id)
    .bind(name)
    .bind(k.created_at.timestamp_millis())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE customer_id = ? AND revoked_at IS NULL",
    )
    .bind(&k.customer_id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO api_keys (key_id, customer_id, key_hash, env, label, last4, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&k.key_id)
    .bind(&k.customer_id)
    .bind(k.key_hash.as_str())
    .bind(&k.env)
    .bind(&k.label)
    .bind(&k.last4)
    .bind(k.created_at.timestamp_millis())
    .execute(&mut *tx)
    .await?;
    let rotated = live > 0;
    let params = json!({
        "customer_id": k.customer_id, "key_id": k.key_id, "label": k.label,
        "env": k.env, "last4": k.last4, "customer_created": created,
    });
    audit(
        &mut tx,
        actor,
        if rotated { "rotate" } else { "mint" },
        &params,
    )
    .await?;
    tx.commit().await?;
    Ok((created, rotated))
}

pub(super) async fn revoke_key(
    pool: &SqlitePool,
    key_id: &str,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<Option<KeyInfo>, DbError> {
    let mut tx = pool.begin().await?;
    let row: Option<KeyRow> = sqlx::query_as(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE key_id = ?1 \
         RETURNING key_id, customer_id, env, label, last4, created_at, revoked_at",
    )
    .bind(key_id)
    .bind(now.timestamp_millis())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = &row {
        audit(
            &mut tx,
            actor,
            "revoke",
            &json!({"key_id": key_id, "customer_id": r.customer_id}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(row.map(KeyInfo::from))
}

pub(super) async fn list_keys(
    pool: &SqlitePool,
    customer_id: Option<&str>,
) -> Result<Vec<KeyInfo>, DbError> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT key_id, customer_id, env, label, last4, created_at, revoked_at FROM api_keys \
         WHERE (?1 IS NULL OR customer_id = ?1) ORDER BY created_at, key_id",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(KeyInfo::from).collect())
}

pub(super) async fn find_live_key(
    pool: &SqlitePool,
    hash: &str,
) -> Result<Option<AuthKey>, DbError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT key_id, customer_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(key_id, customer_id)| AuthKey {
        key_id,
        customer_id,
    }))
}

#[derive(FromRow)]
struct DeadLetterRow {
    id: i64,
    customer_id: String,
    received_at: i64,
    event_id: Option<String>,
    raw: String,
    reason: String,
    message: String,
}

pub(super) async fn dead_letters(
    pool: &SqlitePool,
    customer_id: &str,
    limit: i64,
) -> Result<Vec<DeadLetter>, DbError> {
    let rows: Vec<DeadLetterRow> = sqlx::query_as(
        "SELECT id, customer_id, received_at, event_id, raw, reason, message FROM dead_letters \
         WHERE customer_id = ? ORDER BY id DESC LIMIT ?",
    )
    .bind(customer_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DeadLetter {
            id: r.id,
            customer_id: r.customer_id,
            received_at: from_ms(r.received_at),
            event_id: r.event_id,
            raw: r.raw,
            reason: r.reason,
            message: r.message,
        })
        .collect())
}

pub(super) async fn agent(pool: &SqlitePool, agent_id: &str) -> Result<Option<AgentRow>, DbError> {
    let row: Option<(String, String, i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT agent_id, customer_id, first_seen_at, last_seen_at, agent_version FROM agents WHERE agent_id = ?",
    )
    .bind(agent_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(agent_id, customer_id, first, last, agent_version)| AgentRow {
            agent_id,
            customer_id,
            first_seen_at: from_ms(first),
            last_seen_at: from_ms(last),
            agent_version,
        },
    ))
}

pub(super) async fn audit_log(pool: &SqlitePool, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
    let rows: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
        "SELECT id, at, actor, action, params FROM audit_log ORDER BY id DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at, actor, action, params)| AuditEntry {
            id,
            at: from_ms(at),
            actor,
            action,
            params: serde_json::from_str(&params).unwrap_or(Value::Null),
        })
        .collect())
}

/// The ingest statements over one SQLite transaction.
pub(super) struct SqliteWriter<'a, 'c>(pub(super) &'a mut Transaction<'c, Sqlite>);

impl GroupWriter for SqliteWriter<'_, '_> {
    async fn upsert_agents_insert_events(
        &mut self,
        claims: &[AgentClaim],
        rows: &[EventRow<'_>],
        now: DateTime<Utc>,
    ) -> Result<(HashMap<String, String>, HashSet<Uuid>), sqlx::Error> {
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
    ) -> Result<HashSet<Uuid>, sqlx::Error> {
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
            qb.push(" ON CONFLICT (event_id) DO NOTHING RETURNING event_id");
            let ids: Vec<(String,)> = qb.build_query_as().fetch_all(&mut **self.0).await?;
            inserted.extend(ids.into_iter().filter_map(|(s,)| Uuid::parse_str(&s).ok()));
        }
        Ok(inserted)
    }

    async fn insert_dead_letters(
        &mut self,
        rows: &[NewDeadLetter],
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let now = now.timestamp_millis();
        for chunk in rows.chunks(CHUNK_ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO dead_letters (customer_id, received_at, event_id, raw, reason, message, dedupe_key) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.customer_id.clone())
                    .push_bind(now)
                    .push_bind(r.event_id.clone())
                    .push_bind(r.raw.clone())
                    .push_bind(r.reason.clone())
                    .push_bind(r.message.clone())
                    .push_bind(r.dedupe_key());
            });
            qb.push(" ON CONFLICT (dedupe_key) DO NOTHING");
            qb.build().execute(&mut **self.0).await?;
        }
        Ok(())
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

/// `errors` = `error` events plus failed tool calls (`ok` is false).
const ERRORS: &str = "e.event_type = 'error' OR (e.event_type = 'tool_call' AND json_extract(e.payload, '$.ok') = 0)";

#[derive(FromRow)]
struct OverviewDbRow {
    customer_id: String,
    name: String,
    events: i64,
    sessions: i64,
    errors: i64,
    cost_cents: f64,
    agents: i64,
    last_seen: Option<i64>,
}

pub(super) async fn overview(
    pool: &SqlitePool,
    since: DateTime<Utc>,
) -> Result<Vec<OverviewRow>, DbError> {
    let sql = format!(
        "SELECT c.customer_id, c.name, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE {ERRORS}) AS errors, \
           CAST(COALESCE(SUM(json_extract(e.payload, '$.cost_cents')) FILTER (WHERE e.event_type = 'llm_usage'), 0) AS REAL) AS cost_cents, \
           COUNT(DISTINCT e.agent_id) AS agents, \
           (SELECT MAX(a.last_seen_at) FROM agents a WHERE a.customer_id = c.customer_id) AS last_seen \
         FROM customers c LEFT JOIN events e ON e.customer_id = c.customer_id AND e.ts >= ? \
         GROUP BY c.customer_id, c.name ORDER BY c.customer_id"
    );
    let rows: Vec<OverviewDbRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(since.timestamp_millis())
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| OverviewRow {
            customer_id: r.customer_id,
            name: r.name,
            events: r.events,
            sessions: r.sessions,
            errors: r.errors,
            cost_cents: r.cost_cents,
            agents: r.agents,
            last_seen: r.last_seen.map(from_ms),
        })
        .collect())
}

#[derive(FromRow)]
struct CustomerDbRow {
    customer_id: String,
    name: String,
    created_at: i64,
    events: i64,
    sessions: i64,
    tool_calls: i64,
    errors: i64,
    cost_cents: f64,
    agents: i64,
    last_seen: Option<i64>,
}

pub(super) async fn customers(pool: &SqlitePool) -> Result<Vec<CustomerRow>, DbError> {
    let sql = format!(
        "SELECT c.customer_id, c.name, c.created_at, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE e.event_type = 'tool_call') AS tool_calls, \
           COUNT(*) FILTER (WHERE {ERRORS}) AS errors, \
           CAST(COALESCE(SUM(json_extract(e.payload, '$.cost_cents')) FILTER (WHERE e.event_type = 'llm_usage'), 0) AS REAL) AS cost_cents, \
           (SELECT COUNT(*) FROM agents a WHERE a.customer_id = c.customer_id) AS agents, \
           MAX(e.ts) AS last_seen \
         FROM customers c LEFT JOIN events e ON e.customer_id = c.customer_id \
         GROUP BY c.customer_id, c.name, c.created_at ORDER BY c.customer_id"
    );
    let rows: Vec<CustomerDbRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| CustomerRow {
            customer_id: r.customer_id,
            name: r.name,
            created_at: from_ms(r.created_at),
            events: r.events,
            sessions: r.sessions,
            tool_calls: r.tool_calls,
            errors: r.errors,
            cost_cents: r.cost_cents,
            agents: r.agents,
            last_seen: r.last_seen.map(from_ms),
        })
        .collect())
}

#[derive(FromRow)]
struct AgentDbRow {
    agent_id: String,
    customer_id: String,
    agent_version: Option<String>,
    first_seen_at: i64,
    last_seen_at: i64,
    events: i64,
    sessions: i64,
    tool_calls: i64,
    errors: i64,
    cost_cents: f64,
}

pub(super) async fn agents(
    pool: &SqlitePool,
    customer_id: Option<&str>,
) -> Result<Vec<AgentSummary>, DbError> {
    let sql = format!(
        "SELECT a.agent_id, a.customer_id, a.agent_version, a.first_seen_at, a.last_seen_at, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE e.event_type = 'tool_call') AS tool_calls, \
           COUNT(*) FILTER (WHERE {ERRORS}) AS errors, \
           CAST(COALESCE(SUM(json_extract(e.payload, '$.cost_cents')) FILTER (WHERE e.event_type = 'llm_usage'), 0) AS REAL) AS cost_cents \
         FROM agents a LEFT JOIN events e ON e.agent_id = a.agent_id AND e.customer_id = a.customer_id \
         WHERE (?1 IS NULL OR a.customer_id = ?1) \
         GROUP BY a.agent_id ORDER BY a.customer_id, a.agent_id"
    );
    let rows: Vec<AgentDbRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(customer_id)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| AgentSummary {
            agent_id: r.agent_id,
            customer_id: r.customer_id,
            agent_version: r.agent_version,
            first_seen: from_ms(r.first_seen_at),
            last_seen: from_ms(r.last_seen_at),
            events: r.events,
            sessions: r.sessions,
            tool_calls: r.tool_calls,
            errors: r.errors,
            cost_cents: r.cost_cents,
        })
        .collect())
}

pub(super) async fn tool_calls(
    pool: &SqlitePool,
    since: DateTime<Utc>,
    customer_id: Option<&str>,
) -> Result<Vec<ToolCallRow>, DbError> {
    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT json_extract(payload, '$.tool_name'), COALESCE(json_extract(payload, '$.ok'), 0), \
           json_extract(payload, '$.duration_ms') \
         FROM events WHERE event_type = 'tool_call' AND ts >= ?1 AND (?2 IS NULL OR customer_id = ?2)",
    )
    .bind(since.timestamp_millis())
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tool_name, ok, duration_ms)| ToolCallRow {
            tool_name,
            ok: ok != 0,
            duration_ms,
        })
        .collect())
}

pub(super) async fn health(pool: &SqlitePool, now: DateTime<Utc>) -> Result<HealthRow, DbError> {
    let hour_ago = (now - chrono::TimeDelta::hours(1)).timestamp_millis();
    let day_ago = (now - chrono::TimeDelta::hours(24)).timestamp_millis();
    let (events_total, events_last_hour, lag_avg_ms, lag_max_ms): (
        i64,
        i64,
        Option<f64>,
        Option<i64>,
    ) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM events), COUNT(*), \
               CAST(AVG(ingested_at - ts) AS REAL), MAX(ingested_at - ts) \
             FROM events WHERE ingested_at >= ?",
    )
    .bind(hour_ago)
    .fetch_one(pool)
    .await?;
    let (dead_letters_total, dead_letters_last_24h): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE received_at >= ?) FROM dead_letters",
    )
    .bind(day_ago)
    .fetch_one(pool)
    .await?;
    let most_late: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT event_id, ts, ingested_at FROM events WHERE ingested_at >= ? \
         ORDER BY ingested_at - ts DESC LIMIT 1",
    )
    .bind(hour_ago)
    .fetch_optional(pool)
    .await?;
    Ok(HealthRow {
        events_total,
        events_last_hour,
        lag_avg_ms,
        lag_max_ms,
        dead_letters_total,
        dead_letters_last_24h,
        most_late: most_late.map(|(id, ts, at)| (id, from_ms(ts), from_ms(at))),
    })
}
