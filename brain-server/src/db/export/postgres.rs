//! The Postgres statements of the export (`TIMESTAMPTZ` times, `UUID` ids, `JSONB` payloads).

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::{ExportFilter, ExportRow, RowSink};
use crate::db::DbError;
use crate::db::admin::postgres::insert_audit;

/// event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload.
type Row = (
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    String,
    String,
    Option<String>,
    String,
    String,
);

pub(super) async fn export_events(
    pool: &PgPool,
    filter: &ExportFilter,
    sink: &mut impl RowSink,
) -> Result<u64, DbError> {
    let mut q = QueryBuilder::<Postgres>::new(
        "SELECT event_id::text, ts, ingested_at, customer_id, agent_id, run_id, event_type, \
         payload::text FROM events WHERE TRUE",
    );
    if let Some(since) = filter.since {
        q.push(" AND ts >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        q.push(" AND ts < ").push_bind(until);
    }
    if let Some(c) = &filter.customer_id {
        q.push(" AND customer_id = ").push_bind(c.clone());
    }
    if let Some(t) = &filter.event_type {
        q.push(" AND event_type = ").push_bind(t.clone());
    }
    q.push(" ORDER BY ts, customer_id, event_id");
    let mut rows = q.build_query_as::<Row>().fetch(pool);
    let mut n = 0;
    while let Some((
        event_id,
        ts,
        ingested_at,
        customer_id,
        agent_id,
        run_id,
        event_type,
        payload,
    )) = rows.try_next().await?
    {
        let row = ExportRow {
            event_id,
            ts,
            ingested_at,
            customer_id,
            agent_id,
            run_id,
            event_type,
            payload,
        };
        if !sink.push(row).await {
            break;
        }
        n += 1;
    }
    Ok(n)
}

pub(super) async fn record_audit(
    pool: &PgPool,
    actor: &str,
    action: &str,
    params: &Value,
) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    insert_audit(&mut tx, actor, action, params).await?;
    tx.commit().await?;
    Ok(())
}
