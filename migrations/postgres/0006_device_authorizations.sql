-- Projection rows for device authorization requests (RFC 8628), by the SHA-256 of the device code.
CREATE TABLE device_authorizations (
    id TEXT PRIMARY KEY, subject TEXT, client_id TEXT, delegation_id TEXT, state TEXT NOT NULL
);
