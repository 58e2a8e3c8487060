-- The W3C trace context (`traceparent`) a message carries from the span
-- that published it to the worker's spans; NULL when it has none.
ALTER TABLE dtask_queue ADD COLUMN IF NOT EXISTS traceparent text;
ALTER TABLE dtask_dead_letters ADD COLUMN IF NOT EXISTS traceparent text;
