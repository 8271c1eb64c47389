-- L1 settlement (coordinator/src/settle): one record per item to finalise on L1, in order. The
-- cursors (next item to settle, items enqueued) are rows of `counters`.
CREATE TABLE settlements (
    idx    bigint PRIMARY KEY,
    record text NOT NULL
);
