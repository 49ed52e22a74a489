-- Dead letters have a size cap and a retention (issue 6, case 3). A dead letter stores at most
-- the server's cap of the element's JSON (`raw`, cut at a character boundary); `raw_bytes` is
-- the size of the element as received and `truncated` (0/1) says `raw` is cut short of it.
-- Rows written before this migration are whole: their size is that of `raw` (in UTF-8
-- bytes). The index on `received_at` serves the retention delete.
-- Forward-only: never edit once applied; add a new file.

ALTER TABLE dead_letters ADD COLUMN raw_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dead_letters ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0;
UPDATE dead_letters SET raw_bytes = length(CAST(raw AS BLOB));
CREATE INDEX dead_letters_received ON dead_letters (received_at);
