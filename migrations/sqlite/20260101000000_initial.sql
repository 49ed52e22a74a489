-- Brain's initial schema (SQLite). Same logical schema as migrations/postgres.
-- Forward-only: never edit once applied; add a new file.
-- Timestamps are INTEGER unix milliseconds (UTC), so they sort and compare as numbers.
-- Money is US cents (REAL, may be fractional). Durations are milliseconds.

CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Only sha256(plaintext) is stored; the plaintext is shown once at minting.
CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (customer_id),
    key_hash    TEXT NOT NULL UNIQUE,
    env         TEXT NOT NULL,
    label       TEXT,
    last4       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX api_keys_customer ON api_keys (customer_id);

-- An agent belongs to the first customer that sent it.
CREATE TABLE agents (
    agent_id         TEXT PRIMARY KEY,
    customer_id      TEXT NOT NULL REFERENCES customers (customer_id),
    first_seen_at    INTEGER NOT NULL,
    last_seen_at     INTEGER NOT NULL,
    agent_version    TEXT,
    agent_version_at INTEGER
);
CREATE INDEX agents_customer ON agents (customer_id);

-- event_id is the lower-case hyphenated UUID.
CREATE TABLE events (
    event_id    TEXT PRIMARY KEY,
    ts          INTEGER NOT NULL,
    ingested_at INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    run_id      TEXT,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL CHECK (json_valid(payload))
);
CREATE INDEX events_customer_ts ON events (customer_id, ts);
CREATE INDEX events_agent_ts ON events (agent_id, ts);
CREATE INDEX events_run ON events (run_id);
CREATE INDEX events_type_ts ON events (event_type, ts);
CREATE INDEX events_ingested ON events (ingested_at);

-- Everything the server was sent and did not store as an event, with why.
CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    event_id    TEXT,
    raw         TEXT NOT NULL,
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX dead_letters_customer ON dead_letters (customer_id, received_at);

-- Admin actions (mint, rotate, revoke, ...). Never holds a plaintext key.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    params TEXT NOT NULL
);
