-- dtask's backends on PostgreSQL: saga states, idempotency keys, locks and
-- the work queue with its dead letters. Applied by PostgresConfig::connect
-- (sqlx migrations, under an advisory lock: concurrent starts are safe).

CREATE TABLE dtask_state (
    task_id    uuid PRIMARY KEY,
    -- The writer's fencing token; a save with a smaller one is refused.
    fence      bigint NOT NULL,
    format     text NOT NULL,
    bytes      bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE dtask_idempotency (
    key         text PRIMARY KEY,
    task_id     uuid NOT NULL,
    fingerprint text,
    expires_at  timestamptz NOT NULL
);

-- Every grant of any resource takes the next number: tokens only grow.
CREATE SEQUENCE dtask_lock_tokens;

CREATE TABLE dtask_locks (
    resource   text PRIMARY KEY,
    -- Who holds the lease (one id per grant).
    holder     uuid NOT NULL,
    token      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE dtask_queue (
    id             bigserial PRIMARY KEY,
    queue          text NOT NULL,
    message_id     uuid NOT NULL,
    task_id        uuid NOT NULL,
    task_name      text NOT NULL,
    format         text NOT NULL,
    schema_version integer NOT NULL,
    body           bytea NOT NULL,
    -- Deliveries so far; the lease of the consumer holding it, if any.
    deliveries     integer NOT NULL DEFAULT 0,
    lease          uuid,
    -- When it may be delivered (again): now for a waiting message, the end
    -- of the visibility timeout for one out for delivery.
    visible_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX dtask_queue_ready ON dtask_queue (queue, visible_at, id);

CREATE TABLE dtask_dead_letters (
    id             bigserial PRIMARY KEY,
    queue          text NOT NULL,
    message_id     uuid NOT NULL,
    task_id        uuid NOT NULL,
    task_name      text NOT NULL,
    format         text NOT NULL,
    schema_version integer NOT NULL,
    body           bytea NOT NULL,
    deliveries     integer NOT NULL,
    reason         text NOT NULL,
    dead_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX dtask_dead_letters_queue ON dtask_dead_letters (queue, id);
