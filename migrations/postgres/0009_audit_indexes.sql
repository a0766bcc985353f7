-- The audit API's lookups, each an index seek whatever the ledger's length.
-- Time filters (`from`, `to`, `as_of`) find the first position recorded at or after an instant:
-- `recorded_at` never decreases along the log, so that is the first entry of this index at or after it.
CREATE INDEX events_recorded_at ON events (recorded_at, position);
-- A subject's state as of a point reads the tokens and refresh tokens issued to it.
CREATE INDEX tokens_subject ON tokens (subject);
CREATE INDEX refresh_tokens_subject ON refresh_tokens (subject);
