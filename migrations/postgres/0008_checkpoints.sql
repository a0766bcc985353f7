-- The Merkle tree over the log (RFC 9162): the hash of every perfect subtree, by level and index. Level 0
-- holds one leaf per event (index = position - 1); the node at (level, idx) covers leaves
-- idx * 2^level .. (idx + 1) * 2^level - 1. Filled by the checkpointer from the log's tail, never on the
-- append path; a proof reads O(log n) rows by primary key.
CREATE TABLE merkle_nodes (
    level  BIGINT  NOT NULL,
    idx    BIGINT  NOT NULL,
    hash   TEXT    NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed checkpoints, one per tree size: nodes racing to sign the same size keep the first.
CREATE TABLE checkpoints (
    size         BIGINT PRIMARY KEY,
    head_hash    TEXT   NOT NULL,
    merkle_root  TEXT   NOT NULL,
    time         BIGINT NOT NULL,
    kid          TEXT   NOT NULL,
    signature    TEXT   NOT NULL
);

-- The public halves of the keys that signed checkpoints, published at /audit/checkpoint-keys.
CREATE TABLE checkpoint_keys (
    kid  TEXT PRIMARY KEY,
    jwk  TEXT NOT NULL
);
