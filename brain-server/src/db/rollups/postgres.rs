//! The Postgres half of the rollups: the upserts of every table in one statement (a chain of
//! data-modifying CTEs, each a multi-row upsert over `UNNEST`ed arrays, so a group's rollups
//! cost one round trip), the reads of `rollups verify` and the transaction of `rollups
//! rebuild`. Text is compared with `COLLATE "C"` (byte order), so `LEAST` picks what the Rust
//! fold picks whatever the database's collation.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments as _, AssertSqlSafe, PgConnection, PgPool, Row as _};
use uuid::Uuid;

use super::{Agg, Cell, Fold, Kind, REBUILD_CHUNK_ROWS, Rollups, TABLES, Table, TableRows};

/// Whether the `session.end` of an upserted `runs` row (`excluded`) is newer than the stored
/// one (`t`): by (`ended_at`, `status`, `exit_code`, `duration_ms`).
macro_rules! newer_end {
    () => {
        "(excluded.ended_at IS NOT NULL AND (t.ended_at IS NULL \
          OR (excluded.ended_at, excluded.status COLLATE \"C\", excluded.exit_code, excluded.duration_ms) \
             > (t.ended_at, t.status COLLATE \"C\", t.exit_code, t.duration_ms)))"
    };
}

/// unix ms → `TIMESTAMPTZ`.
fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The upsert of `rollup_usage` (parameter 1: the shard, where the table has one).
const UPSERT_USAGE: &str = "INSERT INTO rollup_usage AS t (customer_id, grain, bucket_start, model, shard, llm_events, \
               input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_cents) \
             SELECT u.c, u.g, u.b, u.m, $1, u.n, u.i, u.o, u.cr, u.cw, u.cost \
             FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::int8[], $7::int8[], \
                         $8::int8[], $9::int8[], $10::int8[], $11::float8[]) \
               AS u(c, g, b, m, n, i, o, cr, cw, cost) \
             ON CONFLICT (customer_id, grain, bucket_start, model, shard) DO UPDATE SET \
               llm_events = t.llm_events + excluded.llm_events, \
               input_tokens = t.input_tokens + excluded.input_tokens, \
               output_tokens = t.output_tokens + excluded.output_tokens, \
               cache_read_tokens = t.cache_read_tokens + excluded.cache_read_tokens, \
               cache_write_tokens = t.cache_write_tokens + excluded.cache_write_tokens, \
               cost_cents = t.cost_cents + excluded.cost_cents";

/// The upsert of `rollup_tools` (parameter 1: the shard, where the table has one).
const UPSERT_TOOLS: &str = "INSERT INTO rollup_tools AS t (customer_id, grain, bucket_start, tool_name, tool_source, \
               mcp_server, shard, calls, failures, timed_calls, duration_sum_ms) \
             SELECT u.c, u.g, u.b, u.n, u.s, u.m, $1, u.calls, u.failures, u.timed, u.dur \
             FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], \
                         $8::int8[], $9::int8[], $10::int8[], $11::int8[]) \
               AS u(c, g, b, n, s, m, calls, failures, timed, dur) \
             ON CONFLICT (customer_id, grain, bucket_start, tool_name, tool_source, mcp_server, shard) \
             DO UPDATE SET \
               calls = t.calls + excluded.calls, \
               failures = t.failures + excluded.failures, \
               timed_calls = t.timed_calls + excluded.timed_calls, \
               duration_sum_ms = t.duration_sum_ms + excluded.duration_sum_ms";

/// The upsert of `rollup_tool_latency` (parameter 1: the shard, where the table has one).
const UPSERT_TOOL_LATENCY: &str = "INSERT INTO rollup_tool_latency AS t (customer_id, grain, bucket_start, tool_name, bucket, \
               shard, calls) \
             SELECT u.c, u.g, u.b, u.n, u.k, $1, u.calls \
             FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::int4[], $7::int8[]) \
               AS u(c, g, b, n, k, calls) \
             ON CONFLICT (customer_id, grain, bucket_start, tool_name, bucket, shard) DO UPDATE SET \
               calls = t.calls + excluded.calls";

/// The upsert of `rollup_agents` (parameter 1: the shard, where the table has one).
const UPSERT_AGENTS: &str = "INSERT INTO rollup_agents AS t (agent_id, grain, bucket_start, shard, customer_id, events, \
               runs, runs_failed, runs_timed_out, tool_calls, tool_failures, error_events, llm_events, \
               cost_cents, first_ts, last_ts) \
             SELECT u.a, u.g, u.b, $1, u.c, u.events, u.runs, u.rf, u.rt, u.tc, u.tf, u.ee, u.le, \
               u.cost, u.f, u.l \
             FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::int8[], $7::int8[], \
                         $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], \
                         $14::float8[], $15::timestamptz[], $16::timestamptz[]) \
               AS u(a, g, b, c, events, runs, rf, rt, tc, tf, ee, le, cost, f, l) \
             ON CONFLICT (agent_id, grain, bucket_start, shard) DO UPDATE SET \
               events = t.events + excluded.events, \
               runs = t.runs + excluded.runs, \
               runs_failed = t.runs_failed + excluded.runs_failed, \
               runs_timed_out = t.runs_timed_out + excluded.runs_timed_out, \
               tool_calls = t.tool_calls + excluded.tool_calls, \
               tool_failures = t.tool_failures + excluded.tool_failures, \
               error_events = t.error_events + excluded.error_events, \
               llm_events = t.llm_events + excluded.llm_events, \
               cost_cents = t.cost_cents + excluded.cost_cents, \
               first_ts = LEAST(t.first_ts, excluded.first_ts), \
               last_ts = GREATEST(t.last_ts, excluded.last_ts)";

/// The upsert of `rollup_errors` (parameter 1: the shard, where the table has one).
const UPSERT_ERRORS: &str = "INSERT INTO rollup_errors AS t (customer_id, grain, bucket_start, kind, stack_hash, shard, \
               events, first_ts, last_ts, example_message) \
             SELECT u.c, u.g, u.b, u.k, u.h, $1, u.n, u.f, u.l, u.m \
             FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::int8[], \
                         $8::timestamptz[], $9::timestamptz[], $10::text[]) \
               AS u(c, g, b, k, h, n, f, l, m) \
             ON CONFLICT (customer_id, grain, bucket_start, kind, stack_hash, shard) DO UPDATE SET \
               events = t.events + excluded.events, \
               first_ts = LEAST(t.first_ts, excluded.first_ts), \
               last_ts = GREATEST(t.last_ts, excluded.last_ts), \
               example_message = LEAST(t.example_message COLLATE \"C\", excluded.example_message COLLATE \"C\")";

/// The upsert of `rollup_ingest` (parameter 1: the shard, where the table has one).
const UPSERT_INGEST: &str = "INSERT INTO rollup_ingest AS t (bucket_start, lag_bucket, shard, events) \
             SELECT u.b, u.k, $1, u.n FROM UNNEST($2::timestamptz[], $3::int4[], $4::int8[]) AS u(b, k, n) \
             ON CONFLICT (bucket_start, lag_bucket, shard) DO UPDATE SET events = t.events + excluded.events";

/// The upsert of `runs` (parameter 1: the shard, where the table has one).
///
/// The end fields move together, to the greater (`ended_at`, `status`, `exit_code`,
/// `duration_ms`): the latest end wins, a tie the same way in any order.
const UPSERT_RUNS: &str = concat!(
    "INSERT INTO runs AS t (customer_id, run_id, agent_id, first_ts, last_ts, started_at, \
               ended_at, status, exit_code, duration_ms, events, tool_calls, tool_failures, \
               error_events, llm_events, cost_cents) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], \
               $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::text[], $9::int8[], \
               $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[], \
               $16::float8[]) \
             ON CONFLICT (customer_id, run_id) DO UPDATE SET \
               agent_id = LEAST(t.agent_id COLLATE \"C\", excluded.agent_id COLLATE \"C\"), \
               first_ts = LEAST(t.first_ts, excluded.first_ts), \
               last_ts = GREATEST(t.last_ts, excluded.last_ts), \
               started_at = LEAST(t.started_at, excluded.started_at), \
               ended_at = CASE WHEN ",
    newer_end!(),
    " THEN excluded.ended_at ELSE t.ended_at END, \
               status = CASE WHEN ",
    newer_end!(),
    " THEN excluded.status ELSE t.status END, \
               exit_code = CASE WHEN ",
    newer_end!(),
    " THEN excluded.exit_code ELSE t.exit_code END, \
               duration_ms = CASE WHEN ",
    newer_end!(),
    " THEN excluded.duration_ms ELSE t.duration_ms END, \
               events = t.events + excluded.events, \
               tool_calls = t.tool_calls + excluded.tool_calls, \
               tool_failures = t.tool_failures + excluded.tool_failures, \
               error_events = t.error_events + excluded.error_events, \
               llm_events = t.llm_events + excluded.llm_events, \
               cost_cents = t.cost_cents + excluded.cost_cents",
);

/// The upsert of `run_models` (parameter 1: the shard, where the table has one).
const UPSERT_RUN_MODELS: &str = "INSERT INTO run_models AS t (customer_id, run_id, model, llm_events, input_tokens, \
               output_tokens, cache_read_tokens, cache_write_tokens, cost_cents) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], \
               $6::int8[], $7::int8[], $8::int8[], $9::float8[]) \
             ON CONFLICT (customer_id, run_id, model) DO UPDATE SET \
               llm_events = t.llm_events + excluded.llm_events, \
               input_tokens = t.input_tokens + excluded.input_tokens, \
               output_tokens = t.output_tokens + excluded.output_tokens, \
               cache_read_tokens = t.cache_read_tokens + excluded.cache_read_tokens, \
               cache_write_tokens = t.cache_write_tokens + excluded.cache_write_tokens, \
               cost_cents = t.cost_cents + excluded.cost_cents";

/// The upsert of `agent_heartbeats` (parameter 1: the shard, where the table has one).
///
/// A row is replaced only by a greater (`ts`, `event_id`).
const UPSERT_HEARTBEATS: &str = "INSERT INTO agent_heartbeats AS t (agent_id, customer_id, ts, event_id, paperclip_uptime_s, \
               agent_runtime_count, host_load_1m, spool_depth, spool_dropped, agent_versions) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::uuid[], $5::int8[], \
               $6::int8[], $7::float8[], $8::int8[], $9::int8[], $10::text[]) \
             ON CONFLICT (agent_id) DO UPDATE SET \
               customer_id = excluded.customer_id, ts = excluded.ts, event_id = excluded.event_id, \
               paperclip_uptime_s = excluded.paperclip_uptime_s, \
               agent_runtime_count = excluded.agent_runtime_count, \
               host_load_1m = excluded.host_load_1m, spool_depth = excluded.spool_depth, \
               spool_dropped = excluded.spool_dropped, agent_versions = excluded.agent_versions \
             WHERE (excluded.ts, excluded.event_id) > (t.ts, t.event_id)";

/// Adds `r` to the rollup tables as writer `shard`, in one statement per `chunk` rows of each
/// table (the ingest write passes `usize::MAX`: one statement for the whole group). Tables
/// are written in a fixed order and each table's rows in key order, so concurrent writers
/// lock rows in one order.
///
/// # Errors
/// When a statement fails.
pub(crate) async fn upsert(
    conn: &mut PgConnection,
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
        let mut stmt = Statement::default();
        if let Some(rows) = usage.chunks(chunk).nth(round) {
            stmt.part("usage", UPSERT_USAGE, |a| {
                a.add(shard)?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.0.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(k, _)| k.1).collect::<Vec<&str>>())?;
                a.add(rows.iter().map(|(k, _)| at(k.2)).collect::<Vec<_>>())?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.3.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(_, v)| v.llm_events).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| v.tokens[0]).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| v.tokens[1]).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| v.tokens[2]).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| v.tokens[3]).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| v.cost_cents).collect::<Vec<f64>>())?;
                Ok(())
            })?;
        }
        if let Some(rows) = tools.chunks(chunk).nth(round) {
            stmt.part("tools", UPSERT_TOOLS, |a| {
                a.add(shard)?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.0.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(k, _)| k.1).collect::<Vec<&str>>())?;
                a.add(rows.iter().map(|(k, _)| at(k.2)).collect::<Vec<_>>())?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.3.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(k, _)| k.4).collect::<Vec<&str>>())?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.5.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(_, v)| v.calls).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| v.failures).collect::<Vec<i64>>())?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.timed_calls)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.duration_sum_ms)
                        .collect::<Vec<i64>>(),
                )?;
                Ok(())
            })?;
        }
        if let Some(rows) = tool_latency.chunks(chunk).nth(round) {
            stmt.part("tool_latency", UPSERT_TOOL_LATENCY, |a| {
                a.add(shard)?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.0.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(k, _)| k.1).collect::<Vec<&str>>())?;
                a.add(rows.iter().map(|(k, _)| at(k.2)).collect::<Vec<_>>())?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.3.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(k, _)| k.4).collect::<Vec<i32>>())?;
                a.add(rows.iter().map(|(_, v)| **v).collect::<Vec<i64>>())?;
                Ok(())
            })?;
        }
        if let Some(rows) = agents.chunks(chunk).nth(round) {
            stmt.part("agents", UPSERT_AGENTS, |a| {
                a.add(shard)?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.0.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(k, _)| k.1).collect::<Vec<&str>>())?;
                a.add(rows.iter().map(|(k, _)| at(k.2)).collect::<Vec<_>>())?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.customer_id.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.events)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(rows.iter().map(|(_, v)| v.runs).collect::<Vec<i64>>())?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.runs_failed)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.runs_timed_out)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.tool_calls)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.tool_failures)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.error_events)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.llm_events)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.cost_cents)
                        .collect::<Vec<f64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| at(v.activity.first_ts))
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| at(v.activity.last_ts))
                        .collect::<Vec<_>>(),
                )?;
                Ok(())
            })?;
        }
        if let Some(rows) = errors.chunks(chunk).nth(round) {
            stmt.part("errors", UPSERT_ERRORS, |a| {
                a.add(shard)?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.0.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(k, _)| k.1).collect::<Vec<&str>>())?;
                a.add(rows.iter().map(|(k, _)| at(k.2)).collect::<Vec<_>>())?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.3.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.4.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(_, v)| v.events).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| at(v.first_ts)).collect::<Vec<_>>())?;
                a.add(rows.iter().map(|(_, v)| at(v.last_ts)).collect::<Vec<_>>())?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.example_message.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                Ok(())
            })?;
        }
        if let Some(rows) = ingest.chunks(chunk).nth(round) {
            stmt.part("ingest", UPSERT_INGEST, |a| {
                a.add(shard)?;
                a.add(rows.iter().map(|(k, _)| at(k.0)).collect::<Vec<_>>())?;
                a.add(rows.iter().map(|(k, _)| k.1).collect::<Vec<i32>>())?;
                a.add(rows.iter().map(|(_, v)| **v).collect::<Vec<i64>>())?;
                Ok(())
            })?;
        }
        if let Some(rows) = runs.chunks(chunk).nth(round) {
            stmt.part("runs", UPSERT_RUNS, |a| {
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.0.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.1.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.agent_id.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| at(v.activity.first_ts))
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| at(v.activity.last_ts))
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.started_at.map(at))
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.end.map(|e| at(e.ended_at)))
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.end.map(|e| e.status))
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.end.map(|e| e.exit_code))
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.end.map(|e| e.duration_ms))
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.events)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.tool_calls)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.tool_failures)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.error_events)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.llm_events)
                        .collect::<Vec<i64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.activity.cost_cents)
                        .collect::<Vec<f64>>(),
                )?;
                Ok(())
            })?;
        }
        if let Some(rows) = run_models.chunks(chunk).nth(round) {
            stmt.part("run_models", UPSERT_RUN_MODELS, |a| {
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.0.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.1.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(k, _)| k.2.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(_, v)| v.llm_events).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| v.tokens[0]).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| v.tokens[1]).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| v.tokens[2]).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| v.tokens[3]).collect::<Vec<i64>>())?;
                a.add(rows.iter().map(|(_, v)| v.cost_cents).collect::<Vec<f64>>())?;
                Ok(())
            })?;
        }
        if let Some(rows) = heartbeats.chunks(chunk).nth(round) {
            stmt.part("heartbeats", UPSERT_HEARTBEATS, |a| {
                a.add(rows.iter().map(|(k, _)| k.as_ref()).collect::<Vec<&str>>())?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.customer_id.as_ref())
                        .collect::<Vec<&str>>(),
                )?;
                a.add(rows.iter().map(|(_, v)| at(v.ts)).collect::<Vec<_>>())?;
                a.add(rows.iter().map(|(_, v)| v.event_id).collect::<Vec<Uuid>>())?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.facts.paperclip_uptime_s)
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.facts.agent_runtime_count)
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.facts.host_load_1m)
                        .collect::<Vec<f64>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.facts.spool_depth)
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.facts.spool_dropped)
                        .collect::<Vec<_>>(),
                )?;
                a.add(
                    rows.iter()
                        .map(|(_, v)| v.facts.agent_versions.as_str())
                        .collect::<Vec<&str>>(),
                )?;
                Ok(())
            })?;
        }
        stmt.execute(&mut *conn).await?;
    }
    Ok(())
}

/// One upsert statement under construction: `WITH <table> AS (INSERT …), … SELECT 1`, one
/// data-modifying CTE per table with rows. Each table's `INSERT` is a fixed text whose
/// parameters are numbered from `$1`; they are renumbered to follow the parts before it,
/// so no value is ever written into the SQL (every value is a bound array).
#[derive(Default)]
struct Statement {
    sql: String,
    args: PgArguments,
}

impl Statement {
    /// Adds the CTE `name` running `insert`, and the parameters `bind` adds, in order.
    fn part(
        &mut self,
        name: &str,
        insert: &str,
        bind: impl FnOnce(&mut PgArguments) -> Result<(), BoxDynError>,
    ) -> Result<(), sqlx::Error> {
        self.sql
            .push_str(if self.sql.is_empty() { "WITH " } else { ", " });
        self.sql.push_str(name);
        self.sql.push_str(" AS (");
        push_renumbered(&mut self.sql, insert, self.args.len());
        self.sql.push(')');
        bind(&mut self.args).map_err(sqlx::Error::Encode)
    }

    /// Runs the statement (nothing when no table has rows).
    async fn execute(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.sql.is_empty() {
            return Ok(());
        }
        sqlx::query_with(AssertSqlSafe(self.sql + " SELECT 1"), self.args)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// Appends `part` to `sql` with each parameter `$n` written as `$(n + offset)`.
fn push_renumbered(sql: &mut String, part: &str, offset: usize) {
    let mut rest = part;
    while let Some(i) = rest.find('$') {
        sql.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(n) = rest[..digits].parse::<usize>() {
            let _ = write!(sql, "{}", n + offset);
            rest = &rest[digits..];
        }
    }
    sql.push_str(rest);
}

/// Folds every row of `events`, streamed.
async fn fold_events(conn: &mut PgConnection) -> Result<Fold, sqlx::Error> {
    type EventDbRow = (
        String,
        Uuid,
        String,
        Option<String>,
        String,
        DateTime<Utc>,
        DateTime<Utc>,
        String,
    );
    let mut fold = Fold::default();
    let mut rows = sqlx::query_as::<_, EventDbRow>(
        "SELECT customer_id, event_id, agent_id, run_id, event_type, ts, ingested_at, payload::text \
         FROM events",
    )
    .fetch(&mut *conn);
    while let Some((customer, id, agent, run, event_type, ts, ingested_at, payload)) =
        rows.try_next().await?
    {
        fold.add(
            &customer,
            id,
            &agent,
            run.as_deref(),
            &event_type,
            ts.timestamp_millis(),
            ingested_at.timestamp_millis(),
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
    for &(name, kind, agg) in table.columns {
        cols.push(match (agg, kind) {
            (Agg::Sum, Kind::Int) => format!("SUM({name})::int8"),
            (Agg::Sum, _) => format!("SUM({name})::float8"),
            (Agg::Min, Kind::Text) => format!("MIN({name} COLLATE \"C\")"),
            (Agg::Min, _) => format!("MIN({name})"),
            (Agg::Max, _) => format!("MAX({name})"),
            (_, Kind::Int) => format!("{name}::int8"),
            (_, Kind::Uuid) => format!("{name}::text"),
            _ => name.to_owned(),
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
async fn read_table(conn: &mut PgConnection, table: &Table) -> Result<TableRows, sqlx::Error> {
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
                Kind::Time => Cell::Time(
                    row.try_get::<Option<DateTime<Utc>>, _>(i)?
                        .map(|t| t.timestamp_millis()),
                ),
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

/// The fold of `events` and every stored rollup table, in one snapshot.
pub(super) async fn read_all(pool: &PgPool) -> Result<(Fold, Vec<TableRows>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let fold = fold_events(&mut tx).await?;
    let mut stored = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        stored.push(read_table(&mut tx, table).await?);
    }
    tx.commit().await?;
    Ok((fold, stored))
}

/// Replaces the rollup tables with the fold of `events` in one transaction, holding off
/// ingest (a SHARE lock on `events`) so that no event is missed or counted twice. Returns
/// the events folded and the fold.
pub(super) async fn rebuild(pool: &PgPool) -> Result<(u64, Rollups<'static>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE events IN SHARE MODE")
        .execute(&mut *tx)
        .await?;
    let fold = fold_events(&mut tx).await?;
    if !fold.unreadable.is_empty() {
        tracing::warn!(
            events = fold.unreadable.len(),
            "stored events that do not parse were left out of the rollups"
        );
    }
    sqlx::raw_sql(
        "DELETE FROM rollup_usage; DELETE FROM rollup_tools; DELETE FROM rollup_tool_latency; \
         DELETE FROM rollup_agents; DELETE FROM rollup_errors; DELETE FROM rollup_ingest; \
         DELETE FROM run_models; DELETE FROM runs; DELETE FROM agent_heartbeats;",
    )
    .execute(&mut *tx)
    .await?;
    upsert(&mut tx, &fold.rollups, 0, REBUILD_CHUNK_ROWS).await?;
    tx.commit().await?;
    Ok((fold.events, fold.rollups))
}

#[cfg(test)]
mod tests {
    use super::push_renumbered;

    #[test]
    fn parameters_are_renumbered_after_the_parts_before() {
        let mut sql = String::from("WITH a AS (SELECT $1, $2), ");
        push_renumbered(&mut sql, "b AS (SELECT $1::int8[], $10::text[])", 2);
        assert_eq!(
            sql,
            "WITH a AS (SELECT $1, $2), b AS (SELECT $3::int8[], $12::text[])"
        );
    }
}
