-- The catalog of datasets in PostgreSQL (citybrain_metadb runs each file once per database).
-- Definitions are JSON text, as in SQLite; times are microseconds since 1970 UTC.
CREATE TABLE datasets (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
