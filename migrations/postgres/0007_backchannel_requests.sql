-- Projection rows for backchannel authentication requests (OpenID CIBA), by the SHA-256 of the
-- auth_req_id. The approvals page finds a user's waiting requests by subject (set only while waiting).
CREATE TABLE backchannel_requests (
    id TEXT PRIMARY KEY, subject TEXT, client_id TEXT, delegation_id TEXT, state TEXT NOT NULL
);
CREATE INDEX backchannel_requests_subject ON backchannel_requests (subject);
