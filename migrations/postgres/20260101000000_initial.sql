-- Brain's initial schema (Postgres). Forward-only: never edit once applied; add a new file.
-- Timestamps are TIMESTAMPTZ (UTC instants). Money is US cents (double precision, may be
-- fractional). Durations are milliseconds.

CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Only sha256(plaintext) is stored; the plaintext is shown once at minting.
CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (customer_id),
    key_hash    TEXT NOT NULL UNIQUE,
    env         TEXT NOT NULL,
    label       TEXT,
    last4       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX api_keys_customer ON api_keys (customer_id);

-- An agent belongs to the first customer that sent it.
CREATE TABLE agents (
    agent_id         TEXT PRIMARY KEY,
    customer_id      TEXT NOT NULL REFERENCES customers (customer_id),
    first_seen_at    TIMESTAMPTZ NOT NULL,
    last_seen_at     TIMESTAMPTZ NOT NULL,
    agent_version    TEXT,
    agent_version_at TIMESTAMPTZ
);
CREATE INDEX agents_customer ON agents (customer_id);

CREATE TABLE events (
    event_id    UUID PRIMARY KEY,
    ts          TIMESTAMPTZ NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL,
    customer_id TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    run_id      TEXT,
    event_type  TEXT NOT NULL,
    payload     JSONB NOT NULL
);
CREATE INDEX events_customer_ts ON events (customer_id, ts);
CREATE INDEX events_agent_ts ON events (agent_id, ts);
CREATE INDEX events_run ON events (run_id);
CREATE INDEX events_type_ts ON events (event_type, ts);
CREATE INDEX events_ingested ON events (ingested_at);

-- Everything the server was sent and did not store as an event, with why.
CREATE TABLE dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    customer_id TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    event_id    TEXT,
    raw         TEXT NOT NULL,
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX dead_letters_customer ON dead_letters (customer_id, received_at);

-- Admin actions (mint, rotate, revoke, ...). Never holds a plaintext key.
CREATE TABLE audit_log (
    id     BIGSERIAL PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    params JSONB NOT NULL
);
