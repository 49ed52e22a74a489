//! The SQLite half of the rollups: one upsert per table over a bound JSON array of rows
//! (`json_each`, one statement text whatever the number of rows), all of a group's run in one
//! call, the reads of `rollups verify` and the transaction of `rollups rebuild`. Times are
//! integer unix ms; text compares in byte order (SQLite's `BINARY` collation), as in Rust.

use futures_util::TryStreamExt as _;
use serde::Serialize;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments as _, AssertSqlSafe, Row as _, SqliteConnection, SqlitePool};
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

// Each upsert reads its rows from one bound JSON array of row arrays (`?2`, in key order;
// `?` is the shard), so its text is the same for any number of rows and stays prepared.
// `WHERE true` settles SQLite's parse of `INSERT … SELECT … ON CONFLICT`.

/// The upsert of `rollup_usage`.
const UPSERT_USAGE: &str = "INSERT INTO rollup_usage (customer_id, grain, bucket_start, model, \
       shard, llm_events, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, \
       cost_cents) \
     SELECT value->>0, value->>1, value->>2, value->>3, ?, value->>4, value->>5, value->>6, \
       value->>7, value->>8, value->>9 \
     FROM json_each(?) WHERE true \
     ON CONFLICT (customer_id, grain, bucket_start, model, shard) DO UPDATE SET \
       llm_events = llm_events + excluded.llm_events, \
       input_tokens = input_tokens + excluded.input_tokens, \
       output_tokens = output_tokens + excluded.output_tokens, \
       cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens, \
       cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, \
       cost_cents = cost_cents + excluded.cost_cents";

/// The upsert of `rollup_tools`.
const UPSERT_TOOLS: &str = "INSERT INTO rollup_tools (customer_id, grain, bucket_start, tool_name, \
       tool_source, mcp_server, shard, calls, failures, timed_calls, duration_sum_ms) \
     SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, ?, value->>6, \
       value->>7, value->>8, value->>9 \
     FROM json_each(?) WHERE true \
     ON CONFLICT (customer_id, grain, bucket_start, tool_name, tool_source, mcp_server, shard) \
     DO UPDATE SET \
       calls = calls + excluded.calls, \
       failures = failures + excluded.failures, \
       timed_calls = timed_calls + excluded.timed_calls, \
       duration_sum_ms = duration_sum_ms + excluded.duration_sum_ms";

/// The upsert of `rollup_tool_latency`.
const UPSERT_TOOL_LATENCY: &str = "INSERT INTO rollup_tool_latency (customer_id, grain, \
       bucket_start, tool_name, bucket, shard, calls) \
     SELECT value->>0, value->>1, value->>2, value->>3, value->>4, ?, value->>5 \
     FROM json_each(?) WHERE true \
     ON CONFLICT (customer_id, grain, bucket_start, tool_name, bucket, shard) DO UPDATE SET \
       calls = calls + excluded.calls";

/// The upsert of `rollup_agents`.
const UPSERT_AGENTS: &str = "INSERT INTO rollup_agents (agent_id, grain, bucket_start, shard, \
       customer_id, events, runs, runs_failed, runs_timed_out, tool_calls, tool_failures, \
       error_events, llm_events, cost_cents, first_ts, last_ts) \
     SELECT value->>0, value->>1, value->>2, ?, value->>3, value->>4, value->>5, value->>6, \
       value->>7, value->>8, value->>9, value->>10, value->>11, value->>12, value->>13, value->>14 \
     FROM json_each(?) WHERE true \
     ON CONFLICT (agent_id, grain, bucket_start, shard) DO UPDATE SET \
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
       last_ts = max(last_ts, excluded.last_ts)";

/// The upsert of `rollup_errors`.
const UPSERT_ERRORS: &str = "INSERT INTO rollup_errors (customer_id, grain, bucket_start, kind, \
       stack_hash, shard, events, first_ts, last_ts, example_message) \
     SELECT value->>0, value->>1, value->>2, value->>3, value->>4, ?, value->>5, value->>6, \
       value->>7, value->>8 \
     FROM json_each(?) WHERE true \
     ON CONFLICT (customer_id, grain, bucket_start, kind, stack_hash, shard) DO UPDATE SET \
       events = events + excluded.events, \
       first_ts = min(first_ts, excluded.first_ts), \
       last_ts = max(last_ts, excluded.last_ts), \
       example_message = min(example_message, excluded.example_message)";

/// The upsert of `rollup_ingest`.
const UPSERT_INGEST: &str = "INSERT INTO rollup_ingest (bucket_start, lag_bucket, shard, events) \
     SELECT value->>0, value->>1, ?, value->>2 \
     FROM json_each(?) WHERE true \
     ON CONFLICT (bucket_start, lag_bucket, shard) DO UPDATE SET \
       events = events + excluded.events";

/// The upsert of `runs`. SQLite's two-argument min() is NULL when
/// either is; the end fields move together, to the greater (`ended_at`, `status`,
/// `exit_code`, `duration_ms`).
const UPSERT_RUNS: &str = concat!(
    "INSERT INTO runs (customer_id, run_id, agent_id, first_ts, last_ts, started_at, \
       ended_at, status, exit_code, duration_ms, events, tool_calls, tool_failures, \
       error_events, llm_events, cost_cents) \
     SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, \
       value->>7, value->>8, value->>9, value->>10, value->>11, value->>12, value->>13, \
       value->>14, value->>15 \
     FROM json_each(?) WHERE true \
     ON CONFLICT (customer_id, run_id) DO UPDATE SET \
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
);

/// The upsert of `run_models`.
const UPSERT_RUN_MODELS: &str = "INSERT INTO run_models (customer_id, run_id, model, llm_events, \
       input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_cents) \
     SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, \
       value->>7, value->>8 \
     FROM json_each(?) WHERE true \
     ON CONFLICT (customer_id, run_id, model) DO UPDATE SET \
       llm_events = llm_events + excluded.llm_events, \
       input_tokens = input_tokens + excluded.input_tokens, \
       output_tokens = output_tokens + excluded.output_tokens, \
       cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens, \
       cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, \
       cost_cents = cost_cents + excluded.cost_cents";

/// The upsert of `agent_heartbeats`: a row is replaced only by a
/// greater (`ts`, `event_id`).
const UPSERT_HEARTBEATS: &str = "INSERT INTO agent_heartbeats (agent_id, customer_id, ts, \
       event_id, paperclip_uptime_s, agent_runtime_count, host_load_1m, spool_depth, \
       spool_dropped, agent_versions) \
     SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, \
       value->>7, value->>8, value->>9 \
     FROM json_each(?) WHERE true \
     ON CONFLICT (agent_id) DO UPDATE SET \
       customer_id = excluded.customer_id, ts = excluded.ts, event_id = excluded.event_id, \
       paperclip_uptime_s = excluded.paperclip_uptime_s, \
       agent_runtime_count = excluded.agent_runtime_count, \
       host_load_1m = excluded.host_load_1m, spool_depth = excluded.spool_depth, \
       spool_dropped = excluded.spool_dropped, agent_versions = excluded.agent_versions \
     WHERE (excluded.ts, excluded.event_id) > (agent_heartbeats.ts, agent_heartbeats.event_id)";

/// Adds `r` to the rollup tables as writer `shard`: one execution (every table's upsert, in a
/// fixed table order, each over its rows in key order) per `chunk` rows of each table; the
/// ingest write passes `usize::MAX`.
///
/// # Errors
/// When a statement fails.
pub(crate) async fn upsert(
    conn: &mut SqliteConnection,
    r: &Rollups<'_>,
    shard: i16,
    chunk: usize,
) -> Result<(), sqlx::Error> {
    let chunk = chunk.max(1);
    let usage: Vec<_> = r.usage.iter().collect();
    let tools: Vec<_> = r.tools.iter().collect();
    let tool_latency: Vec<_> = r.tool_latency.iter().collect();
    let agents: Vec<_> = r.agents.iter().collect();
    let errors: Vec<_> = r.errors.iter().collect();
    let ingest: Vec<_> = r.ingest.iter().collect();
    let runs: Vec<_> = r.runs.iter().collect();
    let run_models: Vec<_> = r.run_models.iter().collect();
    let heartbeats: Vec<_> = r.heartbeats.iter().collect();
    let most = [
        usage.len(),
        tools.len(),
        tool_latency.len(),
        agents.len(),
        errors.len(),
        ingest.len(),
        runs.len(),
        run_models.len(),
        heartbeats.len(),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    for round in 0..most.div_ceil(chunk) {
        let mut stmt = Statements::new(shard);
        if let Some(rows) = usage.chunks(chunk).nth(round) {
            stmt.part(
                UPSERT_USAGE,
                SHARDED,
                rows.iter().map(|(k, v)| {
                    let [i, o, cr, cw] = v.tokens;
                    (
                        &k.0,
                        k.1,
                        k.2,
                        &k.3,
                        v.llm_events,
                        i,
                        o,
                        cr,
                        cw,
                        v.cost_cents,
                    )
                }),
            )?;
        }
        if let Some(rows) = tools.chunks(chunk).nth(round) {
            stmt.part(
                UPSERT_TOOLS,
                SHARDED,
                rows.iter().map(|(k, v)| {
                    (
                        &k.0,
                        k.1,
                        k.2,
                        &k.3,
                        k.4,
                        &k.5,
                        v.calls,
                        v.failures,
                        v.timed_calls,
                        v.duration_sum_ms,
                    )
                }),
            )?;
        }
        if let Some(rows) = tool_latency.chunks(chunk).nth(round) {
            stmt.part(
                UPSERT_TOOL_LATENCY,
                SHARDED,
                rows.iter().map(|(k, v)| (&k.0, k.1, k.2, &k.3, k.4, **v)),
            )?;
        }
        if let Some(rows) = agents.chunks(chunk).nth(round) {
            stmt.part(
                UPSERT_AGENTS,
                SHARDED,
                rows.iter().map(|(k, v)| {
                    let a = &v.activity;
                    (
                        &k.0,
                        k.1,
                        k.2,
                        &v.customer_id,
                        a.events,
                        v.runs,
                        v.runs_failed,
                        v.runs_timed_out,
                        a.tool_calls,
                        a.tool_failures,
                        a.error_events,
                        a.llm_events,
                        a.cost_cents,
                        a.first_ts,
                        a.last_ts,
                    )
                }),
            )?;
        }
        if let Some(rows) = errors.chunks(chunk).nth(round) {
            stmt.part(
                UPSERT_ERRORS,
                SHARDED,
                rows.iter().map(|(k, v)| {
                    (
                        &k.0,
                        k.1,
                        k.2,
                        &k.3,
                        &k.4,
                        v.events,
                        v.first_ts,
                        v.last_ts,
                        &v.example_message,
                    )
                }),
            )?;
        }
        if let Some(rows) = ingest.chunks(chunk).nth(round) {
            stmt.part(
                UPSERT_INGEST,
                SHARDED,
                rows.iter().map(|(k, v)| (k.0, k.1, **v)),
            )?;
        }
        if let Some(rows) = runs.chunks(chunk).nth(round) {
            stmt.part(
                UPSERT_RUNS,
                UNSHARDED,
                rows.iter().map(|(k, v)| {
                    let a = &v.activity;
                    let end = v.end;
                    (
                        &k.0,
                        &k.1,
                        &v.agent_id,
                        a.first_ts,
                        a.last_ts,
                        v.started_at,
                        end.map(|e| e.ended_at),
                        end.map(|e| e.status),
                        end.map(|e| e.exit_code),
                        end.map(|e| e.duration_ms),
                        a.events,
                        a.tool_calls,
                        a.tool_failures,
                        a.error_events,
                        a.llm_events,
                        a.cost_cents,
                    )
                }),
            )?;
        }
        if let Some(rows) = run_models.chunks(chunk).nth(round) {
            stmt.part(
                UPSERT_RUN_MODELS,
                UNSHARDED,
                rows.iter().map(|(k, v)| {
                    let [i, o, cr, cw] = v.tokens;
                    (&k.0, &k.1, &k.2, v.llm_events, i, o, cr, cw, v.cost_cents)
                }),
            )?;
        }
        if let Some(rows) = heartbeats.chunks(chunk).nth(round) {
            stmt.part(
                UPSERT_HEARTBEATS,
                UNSHARDED,
                rows.iter().map(|(k, v)| {
                    let f = &v.facts;
                    (
                        k,
                        &v.customer_id,
                        v.ts,
                        v.event_id.hyphenated().to_string(),
                        f.paperclip_uptime_s,
                        f.agent_runtime_count,
                        f.host_load_1m,
                        f.spool_depth,
                        f.spool_dropped,
                        f.agent_versions.as_str(),
                    )
                }),
            )?;
        }
        stmt.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A part whose upsert binds the shard before its rows.
const SHARDED: bool = true;
/// A part whose table has no shard.
const UNSHARDED: bool = false;

/// The upserts of one round, run in one call: their texts joined by `;` (sqlx runs each
/// in turn, binding the anonymous parameters in order).
struct Statements {
    shard: i16,
    sql: String,
    args: SqliteArguments,
}

impl Statements {
    fn new(shard: i16) -> Self {
        Statements {
            shard,
            sql: String::new(),
            args: SqliteArguments::default(),
        }
    }

    /// Adds `upsert` over `rows` (each one row array of the JSON).
    fn part<T: Serialize>(
        &mut self,
        upsert: &str,
        sharded: bool,
        rows: impl Iterator<Item = T>,
    ) -> Result<(), sqlx::Error> {
        let json = serde_json::to_string(&rows.collect::<Vec<T>>())
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        if !self.sql.is_empty() {
            self.sql.push_str("; ");
        }
        self.sql.push_str(upsert);
        if sharded {
            self.args.add(self.shard).map_err(sqlx::Error::Encode)?;
        }
        self.args.add(json).map_err(sqlx::Error::Encode)
    }

    /// Runs the upserts (nothing when no table has rows).
    async fn execute(self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        if self.sql.is_empty() {
            return Ok(());
        }
        sqlx::query_with(AssertSqlSafe(self.sql), self.args)
            .execute(conn)
            .await?;
        Ok(())
    }
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
