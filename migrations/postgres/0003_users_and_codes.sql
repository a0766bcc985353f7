-- Projection rows for local users (by username) and authorization codes (by SHA-256 of the code).
CREATE TABLE users (
    id TEXT PRIMARY KEY, subject TEXT, client_id TEXT, delegation_id TEXT, state TEXT NOT NULL
);
CREATE INDEX users_subject ON users (subject);
CREATE TABLE authorization_codes (
    id TEXT PRIMARY KEY, subject TEXT, client_id TEXT, delegation_id TEXT, state TEXT NOT NULL
);

-- State kept outside the ledger: secrets that must never enter events (password hashes, TOTP secrets)
-- and short-lived interaction state (login sessions, pending authorization requests, pushed requests).
-- None of it is an audit fact; the acts it enables are recorded as events.
CREATE TABLE off_ledger (
    namespace    TEXT   NOT NULL,
    key          TEXT   NOT NULL,
    value        TEXT   NOT NULL,
    expires_at   BIGINT,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX off_ledger_expiry ON off_ledger (expires_at);
