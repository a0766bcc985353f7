-- Projection rows for the issuers whose assertions the server trusts (by issuer identifier).
CREATE TABLE trusted_issuers (
    id TEXT PRIMARY KEY, subject TEXT, client_id TEXT, delegation_id TEXT, state TEXT NOT NULL
);
