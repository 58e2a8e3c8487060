-- The progress tracker: each task's latest snapshot, and the log of its
-- changes that streams read (NOTIFY only wakes them, so none is lost).

CREATE TABLE dtask_progress (
    task_id          uuid PRIMARY KEY,
    task_name        text NOT NULL,
    status           text NOT NULL,
    submitter        text,
    created_at       timestamptz NOT NULL,
    revision         bigint NOT NULL,
    cancel_requested boolean NOT NULL DEFAULT false,
    ended_at         timestamptz,
    -- The TaskProgress as JSON (its serde form).
    body             jsonb NOT NULL
);

CREATE INDEX dtask_progress_newest ON dtask_progress (created_at DESC, task_id DESC);
CREATE INDEX dtask_progress_by_submitter ON dtask_progress (submitter, created_at DESC);

CREATE TABLE dtask_progress_changes (
    seq     bigserial PRIMARY KEY,
    task_id uuid NOT NULL,
    body    jsonb NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX dtask_progress_changes_task ON dtask_progress_changes (task_id, seq);
CREATE INDEX dtask_progress_changes_at ON dtask_progress_changes (at);
