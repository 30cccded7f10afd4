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

-- Whether a node has an idle worker its master can wake (master/rh_listen.c).
-- Producers notify only while some node has one: a NOTIFY takes a lock that
-- serializes the commits of every notifying transaction in the cluster,
-- through their WAL flush, so notifying while every worker is busy anyway
-- would cap concurrent enqueues for nothing (measured: 49 transactions/s
-- from 4 clients with a notify each).
ALTER TABLE rhino.nodes ADD COLUMN idle boolean NOT NULL DEFAULT false;

-- Wake an idle worker for queue, if any node has one; once per queue and
-- transaction at most (PostgreSQL folds identical notifications).
CREATE FUNCTION rhino.wake(queue text)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    SELECT pg_notify('rhino_jobs', wake.queue)
     WHERE EXISTS (SELECT 1 FROM rhino.nodes n
                    WHERE n.idle AND n.stopped_at IS NULL AND n.lease_until > now())
$$;

CREATE TABLE rhino.job_errors (
    job_id   bigint      NOT NULL,
    attempt  int         NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    kind     text        NOT NULL,   -- 'error' (the handler failed) or 'crash' (its worker died)
    error    text,
    PRIMARY KEY (job_id, attempt, kind)
);
-- the reaper's pruning, oldest first
CREATE INDEX job_errors_at ON rhino.job_errors (at);

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

-- The reaper's watch for cancellations of running jobs: only the few rows
-- with a request are in this index, so the claim and the finalize, whose
-- rows never match it, do not maintain it.
CREATE INDEX jobs_cancel_requested ON rhino.jobs (worker_id) WHERE cancel_requested_at IS NOT NULL;

-- Cancel one job, from any language, inside the caller's transaction.
-- Returns what happened:
--   'cancelled'         it had not started: it is in the history as cancelled
--                       and will never run;
--   'cancel_requested'  it is running: its worker is told (the reaper sees
--                       the request, the master flags the handler, which can
--                       check rhino_job_cancelled(), and stops the worker
--                       after [worker] cancel_grace); whatever the handler
--                       returns except RHINO_OK, the job ends cancelled and
--                       is never retried;
--   'already completed', 'already discarded', 'already cancelled': it had
--                       finished before (nothing changes);
--   NULL                no such job.
-- The row lock orders it against a concurrent claim: a job claimed while we
-- wait is seen running afterwards (each statement of a volatile function
-- takes a new snapshot).
CREATE FUNCTION rhino.cancel(job_id bigint)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    s rhino.job_state;
BEGIN
    SELECT j.state INTO s FROM rhino.jobs j WHERE j.id = cancel.job_id FOR UPDATE;
    IF NOT FOUND THEN
        SELECT d.state INTO s FROM rhino.jobs_done d WHERE d.id = cancel.job_id;
        RETURN 'already ' || s::text;   -- NULL when there is no such job
    END IF;
    IF s = 'running' THEN
        UPDATE rhino.jobs j SET cancel_requested_at = coalesce(j.cancel_requested_at, now())
         WHERE j.id = cancel.job_id;
        RETURN 'cancel_requested';
    END IF;
    WITH c AS (DELETE FROM rhino.jobs j WHERE j.id = cancel.job_id RETURNING j.*)
    INSERT INTO rhino.jobs_done (id, queue, kind, payload, state, priority, attempt, errors, max_attempts,
                                 run_at, created_at, attempted_at, crash_count, last_error,
                                 unique_key, concurrency_key, timeout, cancel_requested_at)
    SELECT c.id, c.queue, c.kind, c.payload, 'cancelled', c.priority, c.attempt, c.errors, c.max_attempts,
           c.run_at, c.created_at, c.attempted_at, c.crash_count, c.last_error,
           c.unique_key, c.concurrency_key, c.timeout, now()
      FROM c;
    RETURN 'cancelled';
END
$$;

-- Dead letters: discarded jobs with every error of every attempt, oldest
-- first ({attempt, at, kind, error}).  rhinoctl retry --discarded (or one
-- id) puts them back in the queue.
CREATE VIEW rhino.dead_letters AS
    SELECT d.id, d.queue, d.kind, d.payload, d.attempt, d.errors, d.crash_count, d.max_attempts,
           d.created_at, d.finished_at, d.last_error,
           coalesce((SELECT jsonb_agg(jsonb_build_object('attempt', e.attempt, 'at', e.at, 'kind', e.kind,
                                                         'error', e.error) ORDER BY e.at, e.attempt)
                       FROM rhino.job_errors e WHERE e.job_id = d.id), '[]'::jsonb) AS error_history
      FROM rhino.jobs_done d
     WHERE d.state = 'discarded';
