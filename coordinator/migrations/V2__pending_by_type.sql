-- The pending walk (pg.rs `pending`) runs one ordered query per task type: this index serves it
-- whatever the planner's statistics say (a fresh, never analysed table included).
CREATE INDEX tasks_pending_by_type ON tasks (task_type, ord) WHERE state = 'pending';
DROP INDEX tasks_pending;
