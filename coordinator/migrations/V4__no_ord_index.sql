-- The pending walk (pg.rs `pending`: `state = 'pending' AND task_type = $1 AND ord > $2 ORDER BY ord
-- LIMIT n`) must read tasks_pending_by_type. Once the table was analysed with a finished history,
-- the planner took the UNIQUE (ord) index instead, which gives the same order, and filtered every
-- finished task before the first pending one: 16 ms per get_task at 10,000 verified tasks, and
-- 105 get_task/s under 1,000 paced provers (load example, 2026-12-02). Without that index the
-- partial index is the only one that gives the order. `ord` is unique without it: it is taken from
-- the `next_order` counter, whose row the inserting transaction holds locked.
ALTER TABLE tasks DROP CONSTRAINT tasks_ord_key;
