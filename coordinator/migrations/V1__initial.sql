-- The coordinator's state in PostgreSQL (coordinator/src/store/pg.rs). Records are the JSON text
-- of the Rust types; the columns beside them are what the queries select, lock and order by.

CREATE TABLE tasks (
    task_id    text PRIMARY KEY,
    task_type  smallint NOT NULL,
    ord        bigint NOT NULL UNIQUE,
    state      text NOT NULL,
    updated_ms bigint NOT NULL,
    record     text NOT NULL,
    payload    text NOT NULL
);
-- get_task walks this, oldest first: its size is the pending work, not the history.
CREATE INDEX tasks_pending ON tasks (ord) WHERE state = 'pending';
-- /metrics counts the unfinished tasks through this; verified ones are counted in
-- verified_counts, so neither grows with the finished history.
CREATE INDEX tasks_unfinished ON tasks (task_type, state) WHERE state <> 'verified';
-- prune walks the verified tasks by age.
CREATE INDEX tasks_verified ON tasks (updated_ms) WHERE state = 'verified';
CREATE TABLE verified_counts (
    task_type smallint PRIMARY KEY,
    n         bigint NOT NULL
);

CREATE TABLE assignments (
    uuid        text PRIMARY KEY,
    task_id     text NOT NULL,
    state       text NOT NULL,
    deadline_ms bigint NOT NULL,
    record      text NOT NULL
);
-- The sweep reads the live assignments past their deadline.
CREATE INDEX assignments_live ON assignments (deadline_ms) WHERE state = 'live';
CREATE INDEX assignments_task ON assignments (task_id);
-- The live assignment of each public key (one at most).
CREATE TABLE outstanding (
    public_key text PRIMARY KEY,
    uuid       text NOT NULL
);

CREATE TABLE proofs (
    task_id text PRIMARY KEY,
    proof   text NOT NULL
);
CREATE TABLE challenges (
    nonce  text PRIMARY KEY,
    exp_ms bigint NOT NULL
);
CREATE INDEX challenges_exp ON challenges (exp_ms);
CREATE TABLE blocked (
    public_key text PRIMARY KEY,
    reason     text NOT NULL
);
CREATE TABLE invalid_proofs (
    public_key text PRIMARY KEY,
    n          bigint NOT NULL
);
CREATE TABLE proven (
    public_key text PRIMARY KEY,
    n          bigint NOT NULL
);
CREATE TABLE provers (
    public_key text PRIMARY KEY,
    record     text NOT NULL
);
CREATE TABLE accounts (
    idx    bigint PRIMARY KEY,
    record text NOT NULL
);
CREATE TABLE counters (
    name text PRIMARY KEY,
    v    bigint NOT NULL
);

-- The rows every verification updates exist from the start (no insert race on them).
INSERT INTO verified_counts (task_type, n) VALUES (1, 0), (2, 0);
INSERT INTO counters (name, v) VALUES ('next_unbatched_chunk', 0);
