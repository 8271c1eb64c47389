-- The failed-prover rule (scheduler.rs `may_take`) reads only the provers seen recently, through
-- this index, and those with a live assignment (`outstanding`); before, it read the `provers`
-- table a page at a time, so keys that had gone quiet made it longer (59-72 ms for one get_task
-- after 33,000 throwaway logins, an audit of 2026-12-05). The default keeps a row written by a
-- coordinator from before this migration valid (it only makes that key look quiet).
ALTER TABLE provers ADD COLUMN last_seen_ms bigint NOT NULL DEFAULT 0;
UPDATE provers SET last_seen_ms = (record::jsonb ->> 'last_seen_ms')::bigint;
CREATE INDEX provers_by_seen ON provers (last_seen_ms, public_key);
