-- The task history: a row per task, one per step attempt, the conditions'
-- snapshots and the append-only audit log. Records of one task are written
-- by any process that runs it; every write is idempotent.

CREATE TABLE dtask_history_tasks (
    task_id          uuid PRIMARY KEY,
    task_name        text NOT NULL,
    version          integer NOT NULL,
    status           text NOT NULL,
    submitter        text,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    ended_at         timestamptz,
    deadline         timestamptz,
    error            text,
    response_summary text,
    trace_id         text,
    revision         bigint NOT NULL,
    -- The latest saved TaskProgress as JSON (its serde form).
    progress         jsonb NOT NULL
);

CREATE INDEX dtask_history_tasks_newest ON dtask_history_tasks (created_at DESC, task_id DESC);
CREATE INDEX dtask_history_tasks_by_name ON dtask_history_tasks (task_name, created_at DESC, task_id DESC);
CREATE INDEX dtask_history_tasks_by_submitter ON dtask_history_tasks (submitter, created_at DESC, task_id DESC);
CREATE INDEX dtask_history_tasks_ended ON dtask_history_tasks (ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE dtask_history_attempts (
    task_id    uuid NOT NULL,
    step       text NOT NULL,
    kind       text NOT NULL,
    attempt    integer NOT NULL,
    step_order integer NOT NULL,
    host       text NOT NULL,
    worker     text NOT NULL,
    started_at timestamptz,
    ended_at   timestamptz,
    outcome    text,
    error      text,
    seq        bigserial,
    PRIMARY KEY (task_id, step, kind, attempt)
);

CREATE TABLE dtask_history_conditions (
    task_id  uuid NOT NULL,
    step     text NOT NULL,
    at       timestamptz NOT NULL,
    holds    boolean NOT NULL,
    snapshot jsonb NOT NULL,
    seq      bigserial,
    PRIMARY KEY (task_id, step, at)
);

CREATE TABLE dtask_history_audit (
    id       uuid PRIMARY KEY,
    task_id  uuid NOT NULL,
    at       timestamptz NOT NULL,
    actor    text NOT NULL,
    action   text NOT NULL,
    step     text,
    before   text,
    after    text,
    detail   text,
    trace_id text,
    seq      bigserial
);

CREATE INDEX dtask_history_audit_task ON dtask_history_audit (task_id, at, seq);
