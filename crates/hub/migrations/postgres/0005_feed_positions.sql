-- Where each scene stands in each node's history of each dataset it reads, committed by
-- the node that holds the scene's lease, so that the node that takes it over starts
-- there (crates/hub/src/cluster.rs, `FeedBook`).
CREATE TABLE IF NOT EXISTS feed_positions (
    subscriber TEXT NOT NULL,
    origin TEXT NOT NULL,
    dataset TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (subscriber, origin, dataset)
);
