-- The seal book (crates/hub/src/cluster.rs): the segments each node sealed and copied to
-- the segment store every node reads, with the stream sequence their frames ran through.
-- A seal's number comes from its dataset's row in seal_heads, locked until the commit, so
-- numbers are committed in order and a reader reading "after n" misses none.
CREATE TABLE seal_heads (
    dataset TEXT PRIMARY KEY,
    last BIGINT NOT NULL
);
CREATE TABLE seals (
    dataset TEXT NOT NULL,
    owner TEXT NOT NULL,
    generation BIGINT NOT NULL,
    number BIGINT NOT NULL,
    through BIGINT NOT NULL,
    segments TEXT NOT NULL,
    PRIMARY KEY (dataset, owner, generation)
);
CREATE INDEX seals_by_number ON seals (dataset, number);
