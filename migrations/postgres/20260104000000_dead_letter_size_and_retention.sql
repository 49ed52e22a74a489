-- Dead letters have a size cap and a retention (issue 6, case 3). A dead letter stores at most
-- the server's cap of the element's JSON (`raw`, cut at a character boundary); `raw_bytes` is
-- the size of the element as received and `truncated` says `raw` is cut short of it. Rows
-- written before this migration are whole: their size is that of `raw`. The index on
-- `received_at` serves the retention delete (dead letters older than the retention).
-- Forward-only: never edit once applied; add a new file.

ALTER TABLE dead_letters ADD COLUMN raw_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE dead_letters ADD COLUMN truncated BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE dead_letters SET raw_bytes = octet_length(raw);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
