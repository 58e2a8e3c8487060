-- The member step a message runs, for the members of a distributed
-- parallel group (NULL: the message runs the task itself).
ALTER TABLE dtask_queue ADD COLUMN IF NOT EXISTS member text;
ALTER TABLE dtask_dead_letters ADD COLUMN IF NOT EXISTS member text;
