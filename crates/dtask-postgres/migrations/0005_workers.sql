-- The workers of a deployment: one row per worker, renewed by its
-- heartbeat and ignored (then deleted) once it expires.
CREATE TABLE IF NOT EXISTS dtask_workers (
    id         text PRIMARY KEY,
    info       text NOT NULL,
    expires_at timestamptz NOT NULL
);
