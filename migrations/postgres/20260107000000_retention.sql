-- Export and retention (issue 8, items 3-4).
-- `events_ts` serves the export's order (ts, customer_id, event_id) and the retention's
-- batched `DELETE … WHERE ts < cutoff` (without it every batch would scan the table).
-- `retention_state` holds one row: the cutoff up to which raw events were pruned
-- (`events_pruned_before`, NULL = never pruned). `rollups verify` and `rollups rebuild` cover
-- only the buckets at or after it; older rollup rows are the long-term record and stay as
-- they are.
-- Forward-only: never edit once applied; add a new file.

CREATE INDEX events_ts ON events (ts, customer_id, event_id);

CREATE TABLE retention_state (
    id                   SMALLINT PRIMARY KEY CHECK (id = 1),
    events_pruned_before TIMESTAMPTZ,
    pruned_at            TIMESTAMPTZ
);
INSERT INTO retention_state (id) VALUES (1);
