-- The admin API (issue 8): a dead letter records that an operator requeued it (`requeued_at`,
-- first requeue; `requeued_event_id`, the event it was stored as). The row itself stays: it is
-- what the server was sent. The (customer_id, id) index serves the newest-first keyset pages
-- of one customer's dead letters.
-- Forward-only: never edit once applied; add a new file.

ALTER TABLE dead_letters ADD COLUMN requeued_at TIMESTAMPTZ;
ALTER TABLE dead_letters ADD COLUMN requeued_event_id TEXT;
CREATE INDEX dead_letters_customer_id ON dead_letters (customer_id, id);
