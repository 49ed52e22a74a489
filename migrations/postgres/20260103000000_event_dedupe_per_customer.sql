-- Dedupe is scoped to the customer (SPEC §4): the same `event_id` sent by two customers is two
-- events, so one customer's ids can never hide another's event. The key of `events` becomes
-- (customer_id, event_id); the ingest insert's ON CONFLICT names the same pair.
-- Forward-only: never edit once applied; add a new file.

ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD PRIMARY KEY (customer_id, event_id);
