-- Schema version 15: a live job's run_at must be a finite time, whoever
-- stores it.
--
-- Why: schema 14 made rhino.enqueue and rhinoctl refuse 'infinity' and
-- '-infinity', but rhino.jobs itself took them, and a producer that INSERTs
-- or COPYs into it directly (COPY is the documented bulk path) still stored
-- them: a '-infinity' job is claimed before every other job of its queue
-- and priority and has an age no gauge can show, an 'infinity' one is never
-- promoted nor claimed.  jobs_run_at_finite refuses both.  It costs one
-- isfinite() per row written, beside the five checks the table already has:
-- no index, nothing else on the COPY's path (500k-row COPYs, six pairs
-- alternated: within the noise, 1.9-2.6 s with it, 2.0-3.6 s without).
--
-- Rows already stored keep their meaning: '-infinity' was due, so it takes
-- the job's created_at (now() if that is in the future or not finite
-- either: only a direct INSERT or COPY could have made it so); 'infinity' was
-- "never", so it takes the last day that every client of Rhino can write
-- (librhino takes run_at up to the year 9999).  Such a job still waits for
-- ever in practice, and rhinoctl cancel or an UPDATE of run_at still reach
-- it.  The history keeps what it has: a redrive gives a job run_at = now().
--
-- Locks: a step runs in one transaction (common/rh_migrate.c), and adding a
-- CHECK constraint takes ACCESS EXCLUSIVE on rhino.jobs, NOT VALID or not,
-- held to the commit.  So ADD ... NOT VALID then VALIDATE, whose own lock
-- (SHARE UPDATE EXCLUSIVE) lets writers go on, would gain nothing here: the
-- validating scan would still run under the ADD's lock.  Only a step of its
-- own for the VALIDATE would help, and every host is stopped during a
-- migration ("Upgrading" in README.md), so all that waits for the scan is
-- producers, for one pass over the live jobs (1M jobs, 159 MB: 195-300 ms
-- on the 2-core development VM).  What does help is what 014 does: the
-- UPDATE first, which locks only the rows it changes, then the ALTER, whose
-- validating scan finds nothing to change.  A producer that commits an
-- infinite run_at between the two fails the validation; the DO block then
-- updates again, under the lock, and validates once more rather than fail
-- the migration (tests/check_ctl.c, test_migrate_015_concurrent_producer).
UPDATE rhino.jobs
   SET run_at = CASE WHEN run_at = 'infinity' THEN '9999-12-31 00:00:00+00'
                     WHEN isfinite(created_at) THEN least(created_at, now())
                     ELSE now() END
 WHERE NOT isfinite(run_at);

DO $$
BEGIN
    BEGIN
        ALTER TABLE rhino.jobs ADD CONSTRAINT jobs_run_at_finite CHECK (isfinite(run_at));
    EXCEPTION WHEN check_violation THEN
        -- the failed ALTER's lock went with its subtransaction: take it back
        LOCK TABLE rhino.jobs IN ACCESS EXCLUSIVE MODE;
        UPDATE rhino.jobs
           SET run_at = CASE WHEN run_at = 'infinity' THEN '9999-12-31 00:00:00+00'
                             WHEN isfinite(created_at) THEN least(created_at, now())
                             ELSE now() END
         WHERE NOT isfinite(run_at);
        ALTER TABLE rhino.jobs ADD CONSTRAINT jobs_run_at_finite CHECK (isfinite(run_at));
    END;
END
$$;

COMMENT ON CONSTRAINT jobs_run_at_finite ON rhino.jobs IS
    'run_at must be a finite time: now() (or leave it out) to run the job at once, or the time to run it';
