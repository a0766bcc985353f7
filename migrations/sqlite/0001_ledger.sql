-- The append-only event log. Positions are assigned by the single writer under the write lock, so they
-- are gap-free and in commit order; the hash chains each event to the one before (see ARCHITECTURE.md).
CREATE TABLE events (
    position     INTEGER PRIMARY KEY,
    stream_id    TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    event_type   TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    metadata     TEXT    NOT NULL,
    recorded_at  INTEGER NOT NULL,
    hash         TEXT    NOT NULL,
    UNIQUE (stream_id, version)
);

-- The last appended event. Every append reads and advances it inside its transaction; it also lets
-- `audit verify` notice a truncated tail.
CREATE TABLE ledger_head (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    position     INTEGER NOT NULL,
    hash         TEXT    NOT NULL,
    recorded_at  INTEGER NOT NULL
);
INSERT INTO ledger_head (id, position, hash, recorded_at)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

-- Retried appends: the key maps to the result of the first attempt.
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY,
    result       TEXT NOT NULL
);

-- Projection rows: lookup columns plus the state the pure fold produced, as JSON.
CREATE TABLE clients (
    id TEXT PRIMARY KEY, subject TEXT, client_id TEXT, delegation_id TEXT, state TEXT NOT NULL
);
CREATE TABLE signing_keys (
    id TEXT PRIMARY KEY, subject TEXT, client_id TEXT, delegation_id TEXT, state TEXT NOT NULL
);
CREATE TABLE delegations (
    id TEXT PRIMARY KEY, subject TEXT, client_id TEXT, delegation_id TEXT, state TEXT NOT NULL
);
CREATE INDEX delegations_subject_client ON delegations (subject, client_id);
CREATE TABLE consents (
    id TEXT PRIMARY KEY, subject TEXT, client_id TEXT, delegation_id TEXT, state TEXT NOT NULL
);
CREATE INDEX consents_subject_client ON consents (subject, client_id);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY, subject TEXT, client_id TEXT, delegation_id TEXT, state TEXT NOT NULL
);
CREATE INDEX tokens_delegation ON tokens (delegation_id);
CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY, subject TEXT, client_id TEXT, delegation_id TEXT, state TEXT NOT NULL
);
CREATE INDEX refresh_tokens_delegation ON refresh_tokens (delegation_id);
