-- Export and retention (issue 8, items 3-4). Same logical schema as migrations/postgres.
-- `events_ts` serves the export's order (ts, customer_id, event_id) and the retention's
-- batched `DELETE … WHERE ts < cutoff`.
-- `retention_state` holds one row: the cutoff (unix ms) up to which raw events were pruned
-- (`events_pruned_before`, NULL = never pruned). `rollups verify` and `rollups rebuild` cover
-- only the buckets at or after it; older rollup rows stay as they are.
-- Forward-only: never edit once applied; add a new file.

CREATE INDEX events_ts ON events (ts, customer_id, event_id);

CREATE TABLE retention_state (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    events_pruned_before INTEGER,
    pruned_at            INTEGER
);
INSERT INTO retention_state (id) VALUES (1);
