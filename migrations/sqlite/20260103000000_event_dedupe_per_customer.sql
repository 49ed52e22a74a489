-- Dedupe is scoped to the customer (SPEC §4): the same `event_id` sent by two customers is two
-- events, so one customer's ids can never hide another's event. The key of `events` becomes
-- (customer_id, event_id); the ingest insert's ON CONFLICT names the same pair. SQLite cannot
-- change a primary key in place: the table is rebuilt (same columns, same indexes), in the
-- migration's transaction. Nothing references `events`.
-- Forward-only: never edit once applied; add a new file.

CREATE TABLE events_new (
    event_id    TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    ingested_at INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    run_id      TEXT,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL CHECK (json_valid(payload)),
    PRIMARY KEY (customer_id, event_id)
);
INSERT INTO events_new (event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload)
    SELECT event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_customer_ts ON events (customer_id, ts);
CREATE INDEX events_agent_ts ON events (agent_id, ts);
CREATE INDEX events_run ON events (run_id);
CREATE INDEX events_type_ts ON events (event_type, ts);
CREATE INDEX events_ingested ON events (ingested_at);
