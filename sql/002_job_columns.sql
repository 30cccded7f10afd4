-- Rhino schema, version 2: the columns the queue features of version 2 share.
--
-- Added in one migration, ahead of the features that use them, because the
-- statements that move a job between rhino.jobs and rhino.jobs_done (finalize,
-- crash, cancel, redrive) name every column they copy: a column that exists in
-- only one of the tables would be lost on the way.
--
--   unique_key       at most one live job per key (migration 3, unique jobs)
--   concurrency_key  per-key concurrency and rate limits (migration 5, queue limits)
--   timeout          now also kept in the history, so that a redriven job keeps
--                    its own deadline (version 1 dropped it)
--   cancel_requested_at  a running job asked to stop (rhinoctl cancel, rhino.cancel)
--
-- rhino.job_errors keeps the error of every failed attempt of every job (dead
-- letters stay explainable after their last_error was overwritten).  Only
-- failures write to it: a completed job costs it nothing.

ALTER TABLE rhino.jobs      ADD COLUMN unique_key text,
                            ADD COLUMN concurrency_key text,
                            ADD COLUMN cancel_requested_at timestamptz;
ALTER TABLE rhino.jobs_done ADD COLUMN unique_key text,
                            ADD COLUMN concurrency_key text,
                            ADD COLUMN timeout float8,
                            ADD COLUMN cancel_requested_at timestamptz;

CREATE TABLE rhino.job_errors (
    job_id   bigint      NOT NULL,
    attempt  int         NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    kind     text        NOT NULL,   -- 'error' (the handler failed) or 'crash' (its worker died)
    error    text,
    PRIMARY KEY (job_id, attempt, kind)
);

-- Columns can only be appended to a view in place.
CREATE OR REPLACE VIEW rhino.all_jobs AS
    SELECT id, queue, kind, payload, state, attempt, max_attempts, priority, run_at,
           created_at, attempted_at, NULL::timestamptz AS finished_at, last_error, worker_id,
           crash_count, timeout, errors, unique_key, concurrency_key, cancel_requested_at
      FROM rhino.jobs
    UNION ALL
    SELECT id, queue, kind, payload, state, attempt, max_attempts, priority, run_at,
           created_at, attempted_at, finished_at, last_error, NULL::bigint, crash_count, timeout, errors,
           unique_key, concurrency_key, cancel_requested_at
      FROM rhino.jobs_done;
