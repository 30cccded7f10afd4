-- Schema version 11: completed jobs are kept as one row per finalized batch.
--
-- Why: moving each completed job into rhino.jobs_done as a row of its own
-- cost the finalize a heap insert and a primary-key entry per job, each its
-- own WAL record: 7.2-7.4 ms per 1000 jobs, against 3.0-3.1 ms for the same
-- finalize keeping no history; without the primary key the rows alone
-- still cost 5.4-5.5 ms.  One row per batch, its columns arrays, costs
-- 4.7-4.8 ms (pgbench -r, claim and finalize of 1000 on 300k queued,
-- alternated), and 250k-500k drains ran 1.19-1.27 times as fast.  The
-- history is still complete: every completed job, with every column it had,
-- its finished_at being the batch's (one statement, one now(), as before).
--
-- rhino.jobs_done is now a view of both tables with the columns, and the
-- column order, the table had, so queries that read it keep working.  The
-- table is renamed rhino.jobs_done_rows and keeps what is not a completed
-- job from a worker's batch: discarded and cancelled jobs (rhinoctl retry
-- and the dead-letter view read those by row), and completed jobs of older
-- versions.  Nothing in Rhino updates a finished job; the batch rows are
-- only ever inserted and deleted whole (retention, rhinoctl purge).
ALTER TABLE rhino.jobs_done RENAME TO jobs_done_rows;

CREATE TABLE rhino.jobs_done_batches (
    -- A key for logical replication's DELETEs; nothing looks a batch up by it.
    batch               bigint        GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finished_at         timestamptz   NOT NULL DEFAULT now(),
    -- The range of the ids in the batch, for lookups by id (the GiST index).
    min_id              bigint        NOT NULL,
    max_id              bigint        NOT NULL,
    id                  bigint[]      NOT NULL,
    queue               text[]        NOT NULL,
    kind                text[]        NOT NULL,
    payload             jsonb[]       NOT NULL,
    priority            smallint[]    NOT NULL,
    attempt             int[]         NOT NULL,
    errors              int[]         NOT NULL,
    max_attempts        int[]         NOT NULL,
    run_at              timestamptz[] NOT NULL,
    created_at          timestamptz[] NOT NULL,
    attempted_at        timestamptz[] NOT NULL,
    crash_count         int[]         NOT NULL,
    last_error          text[]        NOT NULL,
    unique_key          text[]        NOT NULL,
    concurrency_key     text[]        NOT NULL,
    timeout             float8[]      NOT NULL,
    cancel_requested_at timestamptz[] NOT NULL,
    CONSTRAINT jobs_done_batches_ids CHECK (min_id <= max_id)
) WITH (autovacuum_vacuum_insert_scale_factor = 0.05);

-- Retention and rhinoctl top read the history by finish time.
CREATE INDEX jobs_done_batches_finished ON rhino.jobs_done_batches (finished_at);
-- Lookups by id (rhinoctl show, rhino.cancel, a worker's check of where its
-- jobs stand after an ambiguous commit): the batches whose range holds it.
CREATE INDEX jobs_done_batches_range ON rhino.jobs_done_batches USING gist (int8range(min_id, max_id, '[]'));
-- rhinoctl list, newest first: the N newest completed jobs are in the N
-- batches with the highest max_id (each of those holds one id above any
-- id of a batch further down).
CREATE INDEX jobs_done_batches_newest ON rhino.jobs_done_batches (max_id);

-- The jobs of the batches one per row, with their batch's id range beside
-- them: the one place that says which array holds which column.  A condition
-- on min_id/max_id reaches the batches' range index through it.
CREATE VIEW rhino.jobs_done_batch_jobs AS
    SELECT u.id, u.queue, u.kind, u.payload, 'completed'::rhino.job_state AS state, u.priority, u.attempt,
           u.errors, u.max_attempts, u.run_at, u.created_at, u.attempted_at, b.finished_at, u.crash_count,
           u.last_error, u.unique_key, u.concurrency_key, u.timeout, u.cancel_requested_at,
           b.min_id, b.max_id
      FROM rhino.jobs_done_batches b
     CROSS JOIN LATERAL unnest(b.id, b.queue, b.kind, b.payload, b.priority, b.attempt, b.errors,
                               b.max_attempts, b.run_at, b.created_at, b.attempted_at, b.crash_count,
                               b.last_error, b.unique_key, b.concurrency_key, b.timeout, b.cancel_requested_at)
           AS u(id, queue, kind, payload, priority, attempt, errors, max_attempts, run_at, created_at,
                attempted_at, crash_count, last_error, unique_key, concurrency_key, timeout,
                cancel_requested_at);

CREATE VIEW rhino.jobs_done AS
    SELECT id, queue, kind, payload, state, priority, attempt, errors, max_attempts, run_at, created_at,
           attempted_at, finished_at, crash_count, last_error, unique_key, concurrency_key, timeout,
           cancel_requested_at
      FROM rhino.jobs_done_rows
    UNION ALL
    SELECT id, queue, kind, payload, state, priority, attempt, errors, max_attempts, run_at, created_at,
           attempted_at, finished_at, crash_count, last_error, unique_key, concurrency_key, timeout,
           cancel_requested_at
      FROM rhino.jobs_done_batch_jobs;

-- A rhino of schema version 10 still running while this migration is applied
-- inserts finished jobs into rhino.jobs_done by name (its finalize, rescue and
-- crash statements are re-analyzed after the rename and find this view).
-- Without this trigger those inserts would fail, its finalize with them, and
-- jobs whose handlers had run would be rescued and run again.  New code
-- writes to the tables themselves.
CREATE FUNCTION rhino.jobs_done_insert()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO rhino.jobs_done_rows SELECT NEW.*;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_done_insert INSTEAD OF INSERT ON rhino.jobs_done
    FOR EACH ROW EXECUTE FUNCTION rhino.jobs_done_insert();
-- The table's defaults, which a view does not inherit.
ALTER VIEW rhino.jobs_done ALTER COLUMN finished_at SET DEFAULT now();
ALTER VIEW rhino.jobs_done ALTER COLUMN errors SET DEFAULT 0;
ALTER VIEW rhino.jobs_done ALTER COLUMN crash_count SET DEFAULT 0;

-- The finished jobs among ids, found through the indexes of both tables (a
-- condition on the view's id cannot reach the batches' range index).  STABLE:
-- it reads with its caller's snapshot, so a statement that also reads
-- rhino.jobs sees a job moving between them exactly once.
CREATE FUNCTION rhino.jobs_done_by_id(ids bigint[])
RETURNS SETOF rhino.jobs_done
LANGUAGE sql STABLE
AS $$
    SELECT * FROM rhino.jobs_done_rows r WHERE r.id = ANY (ids)
    UNION ALL
    SELECT id, queue, kind, payload, state, priority, attempt, errors, max_attempts, run_at, created_at,
           attempted_at, finished_at, crash_count, last_error, unique_key, concurrency_key, timeout,
           cancel_requested_at
      FROM rhino.jobs_done_batch_jobs
     WHERE int8range(min_id, max_id, '[]') && (SELECT int8range(min(x), max(x), '[]') FROM unnest(ids) x)
       AND id = ANY (ids)
$$;

-- Every job, finished ones included, as before (schema version 2's columns).
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

-- rhino.cancel (schema version 2) with the history read by id through the
-- indexes and written to the table of rows.
CREATE OR REPLACE FUNCTION rhino.cancel(job_id bigint)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    s rhino.job_state;
BEGIN
    SELECT j.state INTO s FROM rhino.jobs j WHERE j.id = cancel.job_id FOR UPDATE;
    IF NOT FOUND THEN
        SELECT d.state INTO s FROM rhino.jobs_done_by_id(ARRAY[cancel.job_id]) d;
        RETURN 'already ' || s::text;   -- NULL when there is no such job
    END IF;
    IF s = 'running' THEN
        UPDATE rhino.jobs j SET cancel_requested_at = coalesce(j.cancel_requested_at, now())
         WHERE j.id = cancel.job_id;
        RETURN 'cancel_requested';
    END IF;
    WITH c AS (DELETE FROM rhino.jobs j WHERE j.id = cancel.job_id RETURNING j.*)
    INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, errors, max_attempts,
                                      run_at, created_at, attempted_at, crash_count, last_error,
                                      unique_key, concurrency_key, timeout, cancel_requested_at)
    SELECT c.id, c.queue, c.kind, c.payload, 'cancelled', c.priority, c.attempt, c.errors, c.max_attempts,
           c.run_at, c.created_at, c.attempted_at, c.crash_count, c.last_error,
           c.unique_key, c.concurrency_key, c.timeout, now()
      FROM c;
    RETURN 'cancelled';
END
$$;
