-- The current version of every stream, kept in the transaction that appends to it. Checking an append's
-- expected versions is then one primary-key lookup per stream, whatever the size of the log; reading
-- MAX(version) from events was cheap only while the planner chose the (stream_id, version) index.
CREATE TABLE streams (
    stream_id    TEXT   PRIMARY KEY,
    version      BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO streams (stream_id, version)
SELECT stream_id, MAX(version) FROM events GROUP BY stream_id;
