-- The keyed ingest calls (idempotency keys) a seal covers, so that a call sent again to
-- another node is recognised after the node that took it sealed it (crates/hub/src/cluster.rs).
ALTER TABLE seals ADD COLUMN keys TEXT NOT NULL DEFAULT '[]';
