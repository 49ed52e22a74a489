//! The Postgres statements: one function per statement, `TIMESTAMPTZ` times, `JSONB` payloads.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder, Transaction};
use uuid::Uuid;

use super::{
    AgentClaim, AgentRow, AgentSummary, AuditEntry, AuthKey, CHUNK_ROWS, CustomerRow, DbError,
    DeadLetter, EventRow, GroupWriter, HealthRow, KeyInfo, NewDeadLetter, NewKey, OverviewRow,
    ToolCallRow,
};

pub(super) async fn ping(pool: &PgPool) -> Result<(), DbError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

pub(super) async fn count(pool: &PgPool, sql: &'static str) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?)
}

#[derive(FromRow)]
struct KeyRow {
    key_id: String,
    customer_id: String,
    env: String,
    label: Option<String>,
    last4: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<KeyRow> for KeyInfo {
    fn from(r: KeyRow) -> Self {
        KeyInfo {
            key_id: r.key_id,
            customer_id: r.customer_id,
            env: r.env,
            label: r.label,
            last4: r.last4,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

async fn audit(
    tx: &mut Transaction<'_, Postgres>,
    actor: &str,
    action: &str,
    params: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, params) VALUES ($1, $2, $3, $4)")
        .bind(Utc::now())
        .bind(actor)
        .bind(action)
        .bind(sqlx::types::Json(params))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Returns (customer created, rotation).
pub(super) async fn mint_key(
    pool: &PgPool,
    name: &str,
    k: &NewKey,
    actor: &str,
) -> Result<(bool, bool), DbError> {
    let mut tx = pool.begin().await?;
    let created = sqlx::query(
        "INSERT INTO customers (customer_id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (customer_id) DO NOTHING",
    )
    .bind(&k.customer_id)
    .bind(name)
    .bind(k.created_at)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE customer_id = $1 AND revoked_at IS NULL",
    )
    .bind(&k.customer_id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO api_keys (key_id, customer_id, key_hash, env, label, last4, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&k.key_id)
    .bind(&k.customer_id)
    .bind(k.key_hash.as_str())
    .bind(&k.env)
    .bind(&k.label)
    .bind(&k.last4)
    .bind(k.created_at)
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
    pool: &PgPool,
    key_id: &str,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<Option<KeyInfo>, DbError> {
    let mut tx = pool.begin().await?;
    let row: Option<KeyRow> = sqlx::query_as(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1 \
         RETURNING key_id, customer_id, env, label, last4, created_at, revoked_at",
    )
    .bind(key_id)
    .bind(now)
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
    pool: &PgPool,
    customer_id: Option<&str>,
) -> Result<Vec<KeyInfo>, DbError> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT key_id, customer_id, env, label, last4, created_at, revoked_at FROM api_keys \
         WHERE ($1::text IS NULL OR customer_id = $1) ORDER BY created_at, key_id",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(KeyInfo::from).collect())
}

pub(super) async fn find_live_key(pool: &PgPool, hash: &str) -> Result<Option<AuthKey>, DbError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT key_id, customer_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
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
    received_at: DateTime<Utc>,
    event_id: Option<String>,
    raw: String,
    reason: String,
    message: String,
}

pub(super) async fn dead_letters(
    pool: &PgPool,
    customer_id: &str,
    limit: i64,
) -> Result<Vec<DeadLetter>, DbError> {
    let rows: Vec<DeadLetterRow> = sqlx::query_as(
        "SELECT id, customer_id, received_at, event_id, raw, reason, message FROM dead_letters \
         WHERE customer_id = $1 ORDER BY id DESC LIMIT $2",
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
            received_at: r.received_at,
            event_id: r.event_id,
            raw: r.raw,
            reason: r.reason,
            message: r.message,
        })
        .collect())
}

/// agent_id, customer_id, first_seen_at, last_seen_at, agent_version.
type AgentTuple = (String, String, DateTime<Utc>, DateTime<Utc>, Option<String>);
/// id, at, actor, action, params.
type AuditTuple = (i64, DateTime<Utc>, String, String, sqlx::types::Json<Value>);

pub(super) async fn agent(pool: &PgPool, agent_id: &str) -> Result<Option<AgentRow>, DbError> {
    let row: Option<AgentTuple> = sqlx::query_as(
        "SELECT agent_id, customer_id, first_seen_at, last_seen_at, agent_version FROM agents WHERE agent_id = $1",
    )
    .bind(agent_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(agent_id, customer_id, first_seen_at, last_seen_at, agent_version)| AgentRow {
            agent_id,
            customer_id,
            first_seen_at,
            last_seen_at,
            agent_version,
        },
    ))
}

pub(super) async fn audit_log(pool: &PgPool, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
    let rows: Vec<AuditTuple> = sqlx::query_as(
        "SELECT id, at, actor, action, params FROM audit_log ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at, actor, action, params)| AuditEntry {
            id,
            at,
            actor,
            action,
            params: params.0,
        })
        .collect())
}

/// The ingest statements over one Postgres transaction.
pub(super) struct PgWriter<'a>(pub(super) &'a mut sqlx::PgConnection);

impl GroupWriter for PgWriter<'_> {
    async fn upsert_agents_insert_events(
        &mut self,
        claims: &[AgentClaim],
        rows: &[EventRow<'_>],
        now: DateTime<Utc>,
    ) -> Result<(HashMap<String, String>, HashSet<Uuid>), sqlx::Error> {
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
        // to their customer (of an id repeated among those, the first in group order: the
        // array's order); report every visible owner and every inserted id.
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
                    SELECT DISTINCT ON (e.id) e.id, e.ts, $5, e.customer_id, e.agent_id, e.run_id, e.event_type, e.payload::jsonb \
                    FROM UNNEST($6::uuid[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]) \
                      WITH ORDINALITY AS e(id, ts, customer_id, agent_id, run_id, event_type, payload, ord) \
                    WHERE EXISTS (SELECT 1 FROM owners o \
                                  WHERE o.agent_id = e.agent_id AND o.customer_id = e.customer_id) \
                    ORDER BY e.id, e.ord \
                    ON CONFLICT (event_id) DO NOTHING RETURNING event_id) \
             SELECT agent_id, customer_id, NULL::uuid FROM owners \
             UNION ALL \
             SELECT NULL, NULL, event_id FROM ev",
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
                (_, _, Some(id)) => {
                    inserted.insert(id);
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
    ) -> Result<HashSet<Uuid>, sqlx::Error> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let ts: Vec<DateTime<Utc>> = rows.iter().map(|r| r.ts).collect();
        let customers: Vec<&str> = rows.iter().map(|r| r.customer_id).collect();
        let agents: Vec<&str> = rows.iter().map(|r| r.agent_id).collect();
        let runs: Vec<Option<&str>> = rows.iter().map(|r| r.run_id).collect();
        let types: Vec<&str> = rows.iter().map(|r| r.event_type).collect();
        let payloads: Vec<&str> = rows.iter().map(|r| r.payload).collect();
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO events (event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload) \
             SELECT e.id, e.ts, $3, e.customer_id, e.agent_id, e.run_id, e.event_type, e.payload::jsonb \
             FROM UNNEST($1::uuid[], $2::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
               AS e(id, ts, customer_id, agent_id, run_id, event_type, payload) \
             ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
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
        rows: &[NewDeadLetter],
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        // 7 columns × 1000 rows: under the bind limit.
        for chunk in rows.chunks(CHUNK_ROWS) {
            let mut qb = QueryBuilder::<Postgres>::new(
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
            qb.build().execute(&mut *self.0).await?;
        }
        Ok(())
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

#[derive(FromRow)]
struct OverviewDbRow {
    customer_id: String,
    name: String,
    events: i64,
    sessions: i64,
    errors: i64,
    cost_cents: f64,
    agents: i64,
    last_seen: Option<DateTime<Utc>>,
}

pub(super) async fn overview(
    pool: &PgPool,
    since: DateTime<Utc>,
) -> Result<Vec<OverviewRow>, DbError> {
    let rows: Vec<OverviewDbRow> = sqlx::query_as(
        "SELECT c.customer_id, c.name, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE e.event_type = 'error' \
             OR (e.event_type = 'tool_call' AND e.payload->>'ok' = 'false')) AS errors, \
           COALESCE(SUM((e.payload->>'cost_cents')::float8) FILTER (WHERE e.event_type = 'llm_usage'), 0)::float8 AS cost_cents, \
           COUNT(DISTINCT e.agent_id) AS agents, \
           (SELECT MAX(a.last_seen_at) FROM agents a WHERE a.customer_id = c.customer_id) AS last_seen \
         FROM customers c LEFT JOIN events e ON e.customer_id = c.customer_id AND e.ts >= $1 \
         GROUP BY c.customer_id, c.name ORDER BY c.customer_id",
    )
    .bind(since)
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
            last_seen: r.last_seen,
        })
        .collect())
}

#[derive(FromRow)]
struct CustomerDbRow {
    customer_id: String,
    name: String,
    created_at: DateTime<Utc>,
    events: i64,
    sessions: i64,
    tool_calls: i64,
    errors: i64,
    cost_cents: f64,
    agents: i64,
    last_seen: Option<DateTime<Utc>>,
}

pub(super) async fn customers(pool: &PgPool) -> Result<Vec<CustomerRow>, DbError> {
    let rows: Vec<CustomerDbRow> = sqlx::query_as(
        "SELECT c.customer_id, c.name, c.created_at, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE e.event_type = 'tool_call') AS tool_calls, \
           COUNT(*) FILTER (WHERE e.event_type = 'error' \
             OR (e.event_type = 'tool_call' AND e.payload->>'ok' = 'false')) AS errors, \
           COALESCE(SUM((e.payload->>'cost_cents')::float8) FILTER (WHERE e.event_type = 'llm_usage'), 0)::float8 AS cost_cents, \
           (SELECT COUNT(*) FROM agents a WHERE a.customer_id = c.customer_id) AS agents, \
           MAX(e.ts) AS last_seen \
         FROM customers c LEFT JOIN events e ON e.customer_id = c.customer_id \
         GROUP BY c.customer_id, c.name, c.created_at ORDER BY c.customer_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| CustomerRow {
            customer_id: r.customer_id,
            name: r.name,
            created_at: r.created_at,
            events: r.events,
            sessions: r.sessions,
            tool_calls: r.tool_calls,
            errors: r.errors,
            cost_cents: r.cost_cents,
            agents: r.agents,
            last_seen: r.last_seen,
        })
        .collect())
}

#[derive(FromRow)]
struct AgentDbRow {
    agent_id: String,
    customer_id: String,
    agent_version: Option<String>,
    first_seen_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    events: i64,
    sessions: i64,
    tool_calls: i64,
    errors: i64,
    cost_cents: f64,
}

pub(super) async fn agents(
    pool: &PgPool,
    customer_id: Option<&str>,
) -> Result<Vec<AgentSummary>, DbError> {
    let rows: Vec<AgentDbRow> = sqlx::query_as(
        "SELECT a.agent_id, a.customer_id, a.agent_version, a.first_seen_at, a.last_seen_at, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE e.event_type = 'tool_call') AS tool_calls, \
           COUNT(*) FILTER (WHERE e.event_type = 'error' \
             OR (e.event_type = 'tool_call' AND e.payload->>'ok' = 'false')) AS errors, \
           COALESCE(SUM((e.payload->>'cost_cents')::float8) FILTER (WHERE e.event_type = 'llm_usage'), 0)::float8 AS cost_cents \
         FROM agents a LEFT JOIN events e ON e.agent_id = a.agent_id AND e.customer_id = a.customer_id \
         WHERE ($1::text IS NULL OR a.customer_id = $1) \
         GROUP BY a.agent_id ORDER BY a.customer_id, a.agent_id",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AgentSummary {
            agent_id: r.agent_id,
            customer_id: r.customer_id,
            agent_version: r.agent_version,
            first_seen: r.first_seen_at,
            last_seen: r.last_seen_at,
            events: r.events,
            sessions: r.sessions,
            tool_calls: r.tool_calls,
            errors: r.errors,
            cost_cents: r.cost_cents,
        })
        .collect())
}

pub(super) async fn tool_calls(
    pool: &PgPool,
    since: DateTime<Utc>,
    customer_id: Option<&str>,
) -> Result<Vec<ToolCallRow>, DbError> {
    let rows: Vec<(String, bool, Option<i64>)> = sqlx::query_as(
        "SELECT payload->>'tool_name', COALESCE((payload->>'ok')::boolean, false), \
           (payload->>'duration_ms')::bigint \
         FROM events WHERE event_type = 'tool_call' AND ts >= $1 \
           AND ($2::text IS NULL OR customer_id = $2)",
    )
    .bind(since)
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tool_name, ok, duration_ms)| ToolCallRow {
            tool_name,
            ok,
            duration_ms,
        })
        .collect())
}

pub(super) async fn health(pool: &PgPool, now: DateTime<Utc>) -> Result<HealthRow, DbError> {
    let hour_ago = now - chrono::TimeDelta::hours(1);
    let day_ago = now - chrono::TimeDelta::hours(24);
    let (events_total, events_last_hour, lag_avg_ms, lag_max_ms): (
        i64,
        i64,
        Option<f64>,
        Option<i64>,
    ) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM events), COUNT(*), \
               AVG(EXTRACT(EPOCH FROM (ingested_at - ts)) * 1000)::float8, \
               MAX(EXTRACT(EPOCH FROM (ingested_at - ts)) * 1000)::bigint \
             FROM events WHERE ingested_at >= $1",
    )
    .bind(hour_ago)
    .fetch_one(pool)
    .await?;
    let (dead_letters_total, dead_letters_last_24h): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE received_at >= $1) FROM dead_letters",
    )
    .bind(day_ago)
    .fetch_one(pool)
    .await?;
    let most_late: Option<(Uuid, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT event_id, ts, ingested_at FROM events WHERE ingested_at >= $1 \
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
        most_late: most_late.map(|(id, ts, at)| (id.to_string(), ts, at)),
    })
}
