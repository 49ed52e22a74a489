-- Dead letters are written idempotently: `dedupe_key` is the hex SHA-256 of
-- (customer_id, reason, raw), and the insert skips a key already stored. A request retried
-- after a partial write (by the server's writer, or resent by the client after a 5xx) adds no
-- second row. Rows written before this migration have no key (NULLs never conflict).
-- Forward-only: never edit once applied; add a new file.

ALTER TABLE dead_letters ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX dead_letters_dedupe ON dead_letters (dedupe_key);
