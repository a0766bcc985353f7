-- Client assertion ids already used (RFC 7523 §3: jti replay). Operational state, not ledger facts:
-- rows are deleted once the assertion has expired.
CREATE TABLE used_assertions (
    key          TEXT   PRIMARY KEY,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX used_assertions_expiry ON used_assertions (expires_at);
