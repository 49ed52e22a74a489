//! The SQLite half of the rollups: chunked multi-row upserts (`VALUES` under the bind
//! limit), the reads of `rollups verify` and the transaction of `rollups rebuild`. Times are
//! integer unix ms; text compares in byte order (SQLite's `BINARY` collation), as in Rust.

use futures_util::TryStreamExt as _;
use sqlx::{QueryBuilder, Row as _, Sqlite, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::{
    Agg, Cell, Difference, Fold, Kind, REBUILD_CHUNK_ROWS, Rollups, TABLES, Table, TableRows,
};

/// Whether the `session.end` of an upserted `runs` row (`excluded`) is newer than the stored
/// one: by (`ended_at`, `status`, `exit_code`, `duration_ms`).
macro_rules! newer_end {
    () => {
        "(excluded.ended_at IS NOT NULL AND (runs.ended_at IS NULL \
          OR (excluded.ended_at, excluded.status, excluded.exit_code, excluded.duration_ms) \
             > (runs.ended_at, runs.status, runs.exit_code, runs.duration_ms)))"
    };
}

/// Most bound parameters per statement (SQLite's limit is 32,766).
const MAX_BINDS: usize = 32_000;

/// Rows per statement for a table of `columns` columns: at most `chunk`, under the limit.
fn rows_per(chunk: usize, columns: usize) -> usize {
    chunk.min(MAX_BINDS / columns).max(1)
}

/// Adds `r` to the rollup tables as writer `shard`, `chunk` rows per statement at most (fewer
/// when the bind limit says so), table by table in key order.
///
/// # Errors
/// When a statement fails.
pub(crate) async fn upsert(
    conn: &mut SqliteConnection,
    r: &Rollups<'_>,
    shard: i16,
    chunk: usize,
) -> Result<(), sqlx::Error> {
    let rows: Vec<_> = r.usage.iter().collect();
    for rows in rows.chunks(rows_per(chunk, 11)) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO rollup_usage (customer_id, grain, bucket_start, model, shard, llm_events, \
               input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_cents) ",
        );
        qb.push_values(rows, |mut b, (k, v)| {
            b.push_bind(k.0.as_ref())
                .push_bind(k.1)
                .push_bind(k.2)
                .push_bind(k.3.as_ref())
                .push_bind(shard)
                .push_bind(v.llm_events)
                .push_bind(v.tokens[0])
                .push_bind(v.tokens[1])
                .push_bind(v.tokens[2])
                .push_bind(v.tokens[3])
                .push_bind(v.cost_cents);
        });
        qb.push(
            " ON CONFLICT (customer_id, grain, bucket_start, model, shard) DO UPDATE SET \
               llm_events = llm_events + excluded.llm_events, \
               input_tokens = input_tokens + excluded.input_tokens, \
               output_tokens = output_tokens + excluded.output_tokens, \
               cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens, \
               cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, \
               cost_cents = cost_cents + excluded.cost_cents",
        );
        qb.build().execute(&mut *conn).await?;
    }
    let rows: Vec<_> = r.tools.iter().collect();
    for rows in rows.chunks(rows_per(chunk, 11)) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO rollup_tools (customer_id, grain, bucket_start, tool_name, tool_source, \
               mcp_server, shard, calls, failures, timed_calls, duration_sum_ms) ",
        );
        qb.push_values(rows, |mut b, (k, v)| {
            b.push_bind(k.0.as_ref())
                .push_bind(k.1)
                .push_bind(k.2)
                .push_bind(k.3.as_ref())
                .push_bind(k.4)
                .push_bind(k.5.as_ref())
                .push_bind(shard)
                .push_bind(v.calls)
                .push_bind(v.failures)
                .push_bind(v.timed_calls)
                .push_bind(v.duration_sum_ms);
        });
        qb.push(
            " ON CONFLICT (customer_id, grain, bucket_start, tool_name, tool_source, mcp_server, shard) \
             DO UPDATE SET \
               calls = calls + excluded.calls, \
               failures = failures + excluded.failures, \
               timed_calls = timed_calls + excluded.timed_calls, \
               duration_sum_ms = duration_sum_ms + excluded.duration_sum_ms",
        );
        qb.build().execute(&mut *conn).await?;
    }
    let rows: Vec<_> = r.tool_latency.iter().collect();
    for rows in rows.chunks(rows_per(chunk, 7)) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO rollup_tool_latency (customer_id, grain, bucket_start, tool_name, bucket, \
               shard, calls) ",
        );
        qb.push_values(rows, |mut b, (k, v)| {
            b.push_bind(k.0.as_ref())
                .push_bind(k.1)
                .push_bind(k.2)
                .push_bind(k.3.as_ref())
                .push_bind(k.4)
                .push_bind(shard)
                .push_bind(**v);
        });
        qb.push(
            " ON CONFLICT (customer_id, grain, bucket_start, tool_name, bucket, shard) DO UPDATE SET \
               calls = calls + excluded.calls",
        );
        qb.build().execute(&mut *conn).await?;
    }
    let rows: Vec<_> = r.agents.iter().collect();
    for rows in rows.chunks(rows_per(chunk, 16)) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO rollup_agents (agent_id, grain, bucket_start, shard, customer_id, events, \
               runs, runs_failed, runs_timed_out, tool_calls, tool_failures, error_events, llm_events, \
               cost_cents, first_ts, last_ts) ",
        );
        qb.push_values(rows, |mut b, (k, v)| {
            let a = &v.activity;
            b.push_bind(k.0.as_ref())
                .push_bind(k.1)
                .push_bind(k.2)
                .push_bind(shard)
                .push_bind(v.customer_id.as_ref())
                .push_bind(a.events)
                .push_bind(v.runs)
                .push_bind(v.runs_failed)
                .push_bind(v.runs_timed_out)
                .push_bind(a.tool_calls)
                .push_bind(a.tool_failures)
                .push_bind(a.error_events)
                .push_bind(a.llm_events)
                .push_bind(a.cost_cents)
                .push_bind(a.first_ts)
                .push_bind(a.last_ts);
        });
        qb.push(
            " ON CONFLICT (agent_id, grain, bucket_start, shard) DO UPDATE SET \
               events = events + excluded.events, \
               runs = runs + excluded.runs, \
               runs_failed = runs_failed + excluded.runs_failed, \
               runs_timed_out = runs_timed_out + excluded.runs_timed_out, \
               tool_calls = tool_calls + excluded.tool_calls, \
               tool_failures = tool_failures + excluded.tool_failures, \
               error_events = error_events + excluded.error_events, \
               llm_events = llm_events + excluded.llm_events, \
               cost_cents = cost_cents + excluded.cost_cents, \
               first_ts = min(first_ts, excluded.first_ts), \
               last_ts = max(last_ts, excluded.last_ts)",
        );
        qb.build().execute(&mut *conn).await?;
    }
    let rows: Vec<_> = r.errors.iter().collect();
    for rows in rows.chunks(rows_per(chunk, 10)) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO rollup_errors (customer_id, grain, bucket_start, kind, stack_hash, shard, \
               events, first_ts, last_ts, example_message) ",
        );
        qb.push_values(rows, |mut b, (k, v)| {
            b.push_bind(k.0.as_ref())
                .push_bind(k.1)
                .push_bind(k.2)
                .push_bind(k.3.as_ref())
                .push_bind(k.4.as_ref())
                .push_bind(shard)
                .push_bind(v.events)
                .push_bind(v.first_ts)
                .push_bind(v.last_ts)
                .push_bind(v.example_message.as_ref());
        });
        qb.push(
            " ON CONFLICT (customer_id, grain, bucket_start, kind, stack_hash, shard) DO UPDATE SET \
               events = events + excluded.events, \
               first_ts = min(first_ts, excluded.first_ts), \
               last_ts = max(last_ts, excluded.last_ts), \
               example_message = min(example_message, excluded.example_message)",
        );
        qb.build().execute(&mut *conn).await?;
    }
    let rows: Vec<_> = r.ingest.iter().collect();
    for rows in rows.chunks(rows_per(chunk, 4)) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO rollup_ingest (bucket_start, lag_bucket, shard, events) ",
        );
        qb.push_values(rows, |mut b, (k, v)| {
            b.push_bind(k.0)
                .push_bind(k.1)
                .push_bind(shard)
                .push_bind(**v);
        });
        qb.push(
            " ON CONFLICT (bucket_start, lag_bucket, shard) DO UPDATE SET \
               events = events + excluded.events",
        );
        qb.build().execute(&mut *conn).await?;
    }
    let rows: Vec<_> = r.runs.iter().collect();
    for rows in rows.chunks(rows_per(chunk, 16)) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO runs (customer_id, run_id, agent_id, first_ts, last_ts, started_at, \
               ended_at, status, exit_code, duration_ms, events, tool_calls, tool_failures, \
               error_events, llm_events, cost_cents) ",
        );
        qb.push_values(rows, |mut b, (k, v)| {
            let a = &v.activity;
            b.push_bind(k.0.as_ref())
                .push_bind(k.1.as_ref())
                .push_bind(v.agent_id.as_ref())
                .push_bind(a.first_ts)
                .push_bind(a.last_ts)
                .push_bind(v.started_at)
                .push_bind(v.end.map(|e| e.ended_at))
                .push_bind(v.end.map(|e| e.status))
                .push_bind(v.end.map(|e| e.exit_code))
                .push_bind(v.end.map(|e| e.duration_ms))
                .push_bind(a.events)
                .push_bind(a.tool_calls)
                .push_bind(a.tool_failures)
                .push_bind(a.error_events)
                .push_bind(a.llm_events)
                .push_bind(a.cost_cents);
        });
        // SQLite's two-argument min() is NULL when either is; the end fields move together,
        // to the greater (ended_at, status, exit_code, duration_ms).
        qb.push(concat!(
            " ON CONFLICT (customer_id, run_id) DO UPDATE SET \
               agent_id = min(agent_id, excluded.agent_id), \
               first_ts = min(first_ts, excluded.first_ts), \
               last_ts = max(last_ts, excluded.last_ts), \
               started_at = coalesce(min(started_at, excluded.started_at), started_at, excluded.started_at), \
               ended_at = CASE WHEN ",
            newer_end!(),
            " THEN excluded.ended_at ELSE ended_at END, \
               status = CASE WHEN ",
            newer_end!(),
            " THEN excluded.status ELSE status END, \
               exit_code = CASE WHEN ",
            newer_end!(),
            " THEN excluded.exit_code ELSE exit_code END, \
               duration_ms = CASE WHEN ",
            newer_end!(),
            " THEN excluded.duration_ms ELSE duration_ms END, \
               events = events + excluded.events, \
               tool_calls = tool_calls + excluded.tool_calls, \
               tool_failures = tool_failures + excluded.tool_failures, \
               error_events = error_events + excluded.error_events, \
               llm_events = llm_events + excluded.llm_events, \
               cost_cents = cost_cents + excluded.cost_cents",
        ));
        qb.build().execute(&mut *conn).await?;
    }
    let rows: Vec<_> = r.run_models.iter().collect();
    for rows in rows.chunks(rows_per(chunk, 9)) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO run_models (customer_id, run_id, model, llm_events, input_tokens, \
               output_tokens, cache_read_tokens, cache_write_tokens, cost_cents) ",
        );
        qb.push_values(rows, |mut b, (k, v)| {
            b.push_bind(k.0.as_ref())
                .push_bind(k.1.as_ref())
                .push_bind(k.2.as_ref())
                .push_bind(v.llm_events)
                .push_bind(v.tokens[0])
                .push_bind(v.tokens[1])
                .push_bind(v.tokens[2])
                .push_bind(v.tokens[3])
                .push_bind(v.cost_cents);
        });
        qb.push(
            " ON CONFLICT (customer_id, run_id, model) DO UPDATE SET \
               llm_events = llm_events + excluded.llm_events, \
               input_tokens = input_tokens + excluded.input_tokens, \
               output_tokens = output_tokens + excluded.output_tokens, \
               cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens, \
               cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, \
               cost_cents = cost_cents + excluded.cost_cents",
        );
        qb.build().execute(&mut *conn).await?;
    }
    let rows: Vec<_> = r.heartbeats.iter().collect();
    for rows in rows.chunks(rows_per(chunk, 10)) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO agent_heartbeats (agent_id, customer_id, ts, event_id, paperclip_uptime_s, \
               agent_runtime_count, host_load_1m, spool_depth, spool_dropped, agent_versions) ",
        );
        qb.push_values(rows, |mut b, (k, v)| {
            let f = &v.facts;
            b.push_bind(k.as_ref())
                .push_bind(v.customer_id.as_ref())
                .push_bind(v.ts)
                .push_bind(v.event_id.hyphenated().to_string())
                .push_bind(f.paperclip_uptime_s)
                .push_bind(f.agent_runtime_count)
                .push_bind(f.host_load_1m)
                .push_bind(f.spool_depth)
                .push_bind(f.spool_dropped)
                .push_bind(f.agent_versions.as_str());
        });
        qb.push(
            " ON CONFLICT (agent_id) DO UPDATE SET \
               customer_id = excluded.customer_id, ts = excluded.ts, event_id = excluded.event_id, \
               paperclip_uptime_s = excluded.paperclip_uptime_s, \
               agent_runtime_count = excluded.agent_runtime_count, \
               host_load_1m = excluded.host_load_1m, spool_depth = excluded.spool_depth, \
               spool_dropped = excluded.spool_dropped, agent_versions = excluded.agent_versions \
             WHERE (excluded.ts, excluded.event_id) > (agent_heartbeats.ts, agent_heartbeats.event_id)",
        );
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Folds every row of `events`, streamed.
async fn fold_events(conn: &mut SqliteConnection) -> Result<Fold, sqlx::Error> {
    type EventDbRow = (
        String,
        String,
        String,
        Option<String>,
        String,
        i64,
        i64,
        String,
    );
    let mut fold = Fold::default();
    let mut rows = sqlx::query_as::<_, EventDbRow>(
        "SELECT customer_id, event_id, agent_id, run_id, event_type, ts, ingested_at, payload \
         FROM events",
    )
    .fetch(&mut *conn);
    while let Some((customer, id, agent, run, event_type, ts, ingested_at, payload)) =
        rows.try_next().await?
    {
        let Ok(event_id) = Uuid::parse_str(&id) else {
            fold.events += 1;
            fold.unreadable.push(Difference {
                table: "events",
                key: format!("customer_id={customer:?}, event_id={id:?}"),
                column: "event_id",
                stored: "not a UUID".to_owned(),
                expected: "a UUID".to_owned(),
            });
            continue;
        };
        fold.add(
            &customer,
            event_id,
            &agent,
            run.as_deref(),
            &event_type,
            ts,
            ingested_at,
            &payload,
        );
    }
    Ok(fold)
}

/// The `SELECT` of one table as `verify` reads it: summed over `shard`.
fn select(table: &Table) -> String {
    let mut cols = Vec::new();
    let mut keys = 0;
    let mut grouped = false;
    for &(name, _, agg) in table.columns {
        cols.push(match agg {
            Agg::Sum => format!("SUM({name})"),
            Agg::Min => format!("MIN({name})"),
            Agg::Max => format!("MAX({name})"),
            Agg::Key | Agg::Plain => name.to_owned(),
        });
        keys += usize::from(agg == Agg::Key);
        grouped |= matches!(agg, Agg::Sum | Agg::Min | Agg::Max);
    }
    let mut sql = format!("SELECT {} FROM {}", cols.join(", "), table.name);
    if grouped {
        let by: Vec<String> = (1..=keys).map(|i| i.to_string()).collect();
        sql.push_str(&format!(" GROUP BY {}", by.join(", ")));
    }
    sql
}

/// Reads one rollup table, summed over `shard`.
async fn read_table(conn: &mut SqliteConnection, table: &Table) -> Result<TableRows, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(select(table)))
        .fetch_all(&mut *conn)
        .await?;
    let mut out = TableRows::new();
    for row in rows {
        let mut key = Vec::new();
        let mut values = Vec::new();
        for (i, &(_, kind, agg)) in table.columns.iter().enumerate() {
            let cell = match kind {
                Kind::Text | Kind::Uuid => Cell::Text(row.try_get(i)?),
                Kind::Int => Cell::Int(row.try_get(i)?),
                Kind::Money => Cell::Money(row.try_get(i)?),
                Kind::Time => Cell::Time(row.try_get(i)?),
            };
            if agg == Agg::Key {
                key.push(cell);
            } else {
                values.push(cell);
            }
        }
        out.insert(super::render_key(table, &key), values);
    }
    Ok(out)
}

/// The fold of `events` and every stored rollup table, in one snapshot (one read
/// transaction).
pub(super) async fn read_all(pool: &SqlitePool) -> Result<(Fold, Vec<TableRows>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let fold = fold_events(&mut tx).await?;
    let mut stored = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        stored.push(read_table(&mut tx, table).await?);
    }
    tx.commit().await?;
    Ok((fold, stored))
}

/// Replaces the rollup tables with the fold of `events` in one transaction; its first
/// statement takes the write lock, so no event is written meanwhile. Returns the events
/// folded and the fold.
pub(super) async fn rebuild(pool: &SqlitePool) -> Result<(u64, Rollups<'static>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(
        "DELETE FROM rollup_usage; DELETE FROM rollup_tools; DELETE FROM rollup_tool_latency; \
         DELETE FROM rollup_agents; DELETE FROM rollup_errors; DELETE FROM rollup_ingest; \
         DELETE FROM run_models; DELETE FROM runs; DELETE FROM agent_heartbeats;",
    )
    .execute(&mut *tx)
    .await?;
    let fold = fold_events(&mut tx).await?;
    if !fold.unreadable.is_empty() {
        tracing::warn!(
            events = fold.unreadable.len(),
            "stored events that do not parse were left out of the rollups"
        );
    }
    upsert(&mut tx, &fold.rollups, 0, REBUILD_CHUNK_ROWS).await?;
    tx.commit().await?;
    Ok((fold.events, fold.rollups))
}
