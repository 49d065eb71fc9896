-- The cluster's audit trail (crates/gov/src/audit_shared.rs): one hash chain every node
-- appends to. Each row is one record, the same line a node's calls.ndjson holds; the head
-- is one row, locked by every append, which sequences the chain across nodes.
CREATE TABLE audit_trail (
    seq BIGINT PRIMARY KEY,
    line TEXT NOT NULL
);
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    mac TEXT NOT NULL,
    sha TEXT NOT NULL,
    sig TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, mac, sha, sig) VALUES (1, 0, '', '', '');
