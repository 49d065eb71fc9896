-- Work one node of a cluster does at a time (a scene), under a lease its holder renews and
-- another node takes over once it lapses (crates/hub/src/cluster.rs, `Leases`).
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    address TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
