-- Rollups and run summaries (SPEC §6, issue 7), maintained by the ingest write in the same
-- transaction as the events they summarise: only events that the write inserted contribute,
-- so a resend (a duplicate) or a failed group (rolled back) can neither double count nor lose
-- a contribution. `brain-server rollups verify` recomputes every table here from `events`;
-- `rollups rebuild` replaces them. See docs/rollups.md for every column's definition.
--
-- Conventions shared by the rollup_* tables:
-- * `grain` is 'h' (a UTC hour), 'd' (a UTC day) or, for rollup_agents only, 'a' (all time,
--   `bucket_start` = 1970-01-01); `bucket_start` is the bucket's first instant. An event counts
--   in the bucket of its `ts` (when it happened), not of its arrival.
-- * `shard` is the index of the ingest writer that added the row (rebuild writes 0): writers
--   never wait on each other's row locks for one hot bucket. Reads and verify sum over it.
-- * customer_id '' in rollup_tools / rollup_tool_latency is the fleet-wide level (every
--   customer), kept because summing 200 customers' rows for a 30-day tool mix is too slow.
-- * Optional text dimensions use '' for "absent" (they are part of the primary key).
-- * Money is US cents (double precision, may be fractional); durations are milliseconds.
-- Forward-only: never edit once applied; add a new file.

-- llm_usage per customer × bucket × model.
CREATE TABLE rollup_usage (
    customer_id        TEXT NOT NULL,
    grain              TEXT NOT NULL,
    bucket_start       TIMESTAMPTZ NOT NULL,
    model              TEXT NOT NULL,
    shard              SMALLINT NOT NULL,
    llm_events         BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_cents         DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (customer_id, grain, bucket_start, model, shard)
);
CREATE INDEX rollup_usage_bucket ON rollup_usage (grain, bucket_start);

-- tool_call per customer (and fleet, '') × bucket × tool. `timed_calls` counts the calls that
-- carried `duration_ms`; `duration_sum_ms` is their sum.
CREATE TABLE rollup_tools (
    customer_id     TEXT NOT NULL,
    grain           TEXT NOT NULL,
    bucket_start    TIMESTAMPTZ NOT NULL,
    tool_name       TEXT NOT NULL,
    tool_source     TEXT NOT NULL,
    mcp_server      TEXT NOT NULL,
    shard           SMALLINT NOT NULL,
    calls           BIGINT NOT NULL,
    failures        BIGINT NOT NULL,
    timed_calls     BIGINT NOT NULL,
    duration_sum_ms BIGINT NOT NULL,
    -- INCLUDE: a tool mix over many buckets (the fleet level's 30 days) is an index-only scan
    -- instead of a heap page per row.
    PRIMARY KEY (customer_id, grain, bucket_start, tool_name, tool_source, mcp_server, shard)
        INCLUDE (calls, failures, timed_calls, duration_sum_ms)
);

-- The latency histogram of timed tool calls per customer (and fleet, '') × bucket × tool:
-- `bucket` is the index of a fixed log-linear duration bucket (docs/rollups.md), `calls` how
-- many calls fell in it. Sparse: only non-empty buckets have a row.
CREATE TABLE rollup_tool_latency (
    customer_id  TEXT NOT NULL,
    grain        TEXT NOT NULL,
    bucket_start TIMESTAMPTZ NOT NULL,
    tool_name    TEXT NOT NULL,
    bucket       INTEGER NOT NULL,
    shard        SMALLINT NOT NULL,
    calls        BIGINT NOT NULL,
    -- INCLUDE: a histogram over many buckets (the fleet level's 30 days) is an index-only scan
    -- instead of a heap page per row.
    PRIMARY KEY (customer_id, grain, bucket_start, tool_name, bucket, shard) INCLUDE (calls)
);

-- Activity per agent × bucket (grains 'h', 'd' and 'a'). `runs` counts session.start events;
-- `runs_failed` / `runs_timed_out` count session.end events with that status.
CREATE TABLE rollup_agents (
    agent_id       TEXT NOT NULL,
    grain          TEXT NOT NULL,
    bucket_start   TIMESTAMPTZ NOT NULL,
    shard          SMALLINT NOT NULL,
    customer_id    TEXT NOT NULL,
    events         BIGINT NOT NULL,
    runs           BIGINT NOT NULL,
    runs_failed    BIGINT NOT NULL,
    runs_timed_out BIGINT NOT NULL,
    tool_calls     BIGINT NOT NULL,
    tool_failures  BIGINT NOT NULL,
    error_events   BIGINT NOT NULL,
    llm_events     BIGINT NOT NULL,
    cost_cents     DOUBLE PRECISION NOT NULL,
    first_ts       TIMESTAMPTZ NOT NULL,
    last_ts        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (agent_id, grain, bucket_start, shard)
);
CREATE INDEX rollup_agents_customer ON rollup_agents (customer_id, grain, bucket_start);
CREATE INDEX rollup_agents_bucket ON rollup_agents (grain, bucket_start);

-- error events per customer × bucket × (kind, stack_hash). `example_message` is the least
-- `message_120c` of the bucket (deterministic, so verify can recompute it).
CREATE TABLE rollup_errors (
    customer_id     TEXT NOT NULL,
    grain           TEXT NOT NULL,
    bucket_start    TIMESTAMPTZ NOT NULL,
    kind            TEXT NOT NULL,
    stack_hash      TEXT NOT NULL,
    shard           SMALLINT NOT NULL,
    events          BIGINT NOT NULL,
    first_ts        TIMESTAMPTZ NOT NULL,
    last_ts         TIMESTAMPTZ NOT NULL,
    example_message TEXT NOT NULL,
    PRIMARY KEY (customer_id, grain, bucket_start, kind, stack_hash, shard)
);
CREATE INDEX rollup_errors_bucket ON rollup_errors (grain, bucket_start);

-- Events by the hour they were stored (`ingested_at`), for ingestion health: `lag` is
-- ingested_at − ts in ms, kept as a histogram over the same buckets as tool latency
-- (`lag_bucket`), so "how late do events arrive" reads as quantiles that a backfill of old
-- events moves only by its share.
CREATE TABLE rollup_ingest (
    bucket_start TIMESTAMPTZ NOT NULL,
    lag_bucket   INTEGER NOT NULL,
    shard        SMALLINT NOT NULL,
    events       BIGINT NOT NULL,
    PRIMARY KEY (bucket_start, lag_bucket, shard)
);

-- One row per agent run (events sharing a `run_id`), per customer. started_at/ended_at come
-- from session.start/session.end (NULL until seen); first_ts/last_ts span all its events.
-- status/exit_code/duration_ms are the session.end's (NULL: no end seen yet, "running").
-- `agent_id` is the least agent_id among the run's events (a run has one agent).
CREATE TABLE runs (
    customer_id   TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    first_ts      TIMESTAMPTZ NOT NULL,
    last_ts       TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ,
    ended_at      TIMESTAMPTZ,
    status        TEXT,
    exit_code     BIGINT,
    duration_ms   BIGINT,
    events        BIGINT NOT NULL,
    tool_calls    BIGINT NOT NULL,
    tool_failures BIGINT NOT NULL,
    error_events  BIGINT NOT NULL,
    llm_events    BIGINT NOT NULL,
    cost_cents    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (customer_id, run_id)
);
CREATE INDEX runs_first_ts ON runs (first_ts, customer_id, run_id);
CREATE INDEX runs_customer_first_ts ON runs (customer_id, first_ts, run_id);

-- llm_usage per run × model (a run's models, tokens beside cents).
CREATE TABLE run_models (
    customer_id        TEXT NOT NULL,
    run_id             TEXT NOT NULL,
    model              TEXT NOT NULL,
    llm_events         BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_cents         DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (customer_id, run_id, model)
);

-- The latest heartbeat of each agent (greatest (ts, event_id)), its payload's figures.
-- `agent_versions` is the payload's JSON object text.
CREATE TABLE agent_heartbeats (
    agent_id            TEXT PRIMARY KEY,
    customer_id         TEXT NOT NULL,
    ts                  TIMESTAMPTZ NOT NULL,
    event_id            UUID NOT NULL,
    paperclip_uptime_s  BIGINT,
    agent_runtime_count BIGINT,
    host_load_1m        DOUBLE PRECISION NOT NULL,
    spool_depth         BIGINT,
    spool_dropped       BIGINT,
    agent_versions      TEXT NOT NULL
);
CREATE INDEX agent_heartbeats_customer ON agent_heartbeats (customer_id);
