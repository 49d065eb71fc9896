-- Governance in PostgreSQL (citybrain_metadb runs each file once per database, in order).
-- Times are microseconds since 1970 UTC, as in SQLite: the hub's Timestamp, never the server's clock.
CREATE TABLE departments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE principals (
    name TEXT PRIMARY KEY,
    department TEXT NOT NULL REFERENCES departments (id),
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL REFERENCES principals (name),
    hash BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    issued_by TEXT
);
CREATE TABLE grants (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset TEXT NOT NULL,
    department TEXT NOT NULL,
    purpose TEXT NOT NULL,
    fields TEXT NOT NULL,
    raw TEXT NOT NULL,
    days BIGINT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    expires_at BIGINT
);
CREATE INDEX grants_by_dataset ON grants (dataset, department);
CREATE TABLE linkages (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
-- The hub's identity: the fingerprint of the secret every node must share.
CREATE TABLE hub (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
