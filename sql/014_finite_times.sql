-- Schema version 14: a job's timeout must be a finite number of seconds,
-- and rhino.enqueue's run_at a finite time.
--
-- Why: float8 takes 'NaN' and 'Infinity', and PostgreSQL sorts NaN above
-- every number, so CHECK (timeout > 0) let both in, and so did
-- rhino.enqueue and rhino.schedule.  The worker then ran such a job with no
-- deadline at all, not even [worker] job_timeout.  Now the functions refuse
-- them (22023, naming the argument) and the constraints of rhino.jobs and
-- rhino.schedules also require timeout < 'Infinity', which NaN is not.
--
-- Live jobs already stored with a NaN or infinite timeout get NULL, so
-- [worker] job_timeout applies to them from their next attempt (a job
-- running now keeps the deadline it was claimed with), and so do such
-- schedules.  The history keeps what it has; rhinoctl retry redrives such a
-- job with NULL.
--
-- Locks: a step runs in one transaction, so ADD CONSTRAINT ... NOT VALID
-- and then VALIDATE would still scan rhino.jobs under the ALTER's ACCESS
-- EXCLUSIVE lock, held to the commit.  What can be done without it is: the
-- UPDATE first, which locks only the rows it changes (claims and finalizes
-- go on), then the ALTER, whose validating scan
-- finds nothing to change: 175 ms for 1M live jobs (153 MB), the only time
-- claims wait.  A job enqueued with a NaN timeout by a transaction that
-- commits between the two would fail the validation; the DO block then
-- updates again, under the lock, and validates once more rather than fail
-- the migration.
UPDATE rhino.jobs SET timeout = NULL WHERE NOT timeout < 'Infinity';

DO $$
BEGIN
    BEGIN
        ALTER TABLE rhino.jobs DROP CONSTRAINT jobs_timeout,
            ADD CONSTRAINT jobs_timeout CHECK (timeout > 0 AND timeout < 'Infinity');
    EXCEPTION WHEN check_violation THEN
        -- the failed ALTER's lock went with its subtransaction: take it back
        LOCK TABLE rhino.jobs IN ACCESS EXCLUSIVE MODE;
        UPDATE rhino.jobs SET timeout = NULL WHERE NOT timeout < 'Infinity';
        ALTER TABLE rhino.jobs DROP CONSTRAINT jobs_timeout,
            ADD CONSTRAINT jobs_timeout CHECK (timeout > 0 AND timeout < 'Infinity');
    END;
END
$$;

-- A handful of rows: the lock first, then nothing can slip in between.
ALTER TABLE rhino.schedules DROP CONSTRAINT schedules_timeout,
    ADD CONSTRAINT schedules_timeout CHECK (timeout > 0 AND timeout < 'Infinity') NOT VALID;
UPDATE rhino.schedules SET timeout = NULL WHERE NOT timeout < 'Infinity';
ALTER TABLE rhino.schedules VALIDATE CONSTRAINT schedules_timeout;

-- run_at: '-infinity' was stored as an available job whose age
-- (now() - run_at) rhinoctl top and the queue gauge could not compute, and
-- 'infinity' as a job scheduled for ever; rhino.enqueue now refuses both
-- (22023).  Rows already stored are left as they are: such a job is claimed
-- first, or never promoted, as before, and top and the gauge read its age
-- as infinite.
--
-- sql/003_unique.sql's rhino.enqueue_job with the tests of run_at and
-- timeout added (rhino.enqueue calls it).
CREATE OR REPLACE FUNCTION rhino.enqueue_job(kind            text,
                                             payload         jsonb       DEFAULT '{}',
                                             queue           text        DEFAULT 'default',
                                             run_at          timestamptz DEFAULT now(),
                                             priority        int         DEFAULT 0,
                                             max_attempts    int         DEFAULT 25,
                                             timeout         float8      DEFAULT NULL,
                                             unique_key      text        DEFAULT NULL,
                                             unique_for      interval    DEFAULT NULL,
                                             concurrency_key text        DEFAULT NULL,
                                             OUT id          bigint,
                                             OUT existing    boolean)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_key    text := enqueue_job.unique_key;
    v_id     bigint;
    v_win_id bigint;            -- the id the throttle window was taken for
    v_state  rhino.job_state;
    v_queue  text;
BEGIN
    -- One test on the path of every enqueue, the messages only on failure.
    -- timeout is compared with 'Infinity' because NaN is not below it
    -- (PostgreSQL sorts NaN above every number, so "> 0" lets NaN through).
    -- A NULL run_at or timeout leaves the AND NULL or false, never true.
    IF NOT (isfinite(enqueue_job.run_at) AND enqueue_job.timeout > 0 AND enqueue_job.timeout < 'Infinity') THEN
        IF NOT isfinite(enqueue_job.run_at) THEN
            RAISE EXCEPTION 'rhino.enqueue: run_at must be a finite time, not %', enqueue_job.run_at
                  USING ERRCODE = '22023',
                        HINT = 'pass now() (or leave run_at out) to run the job at once, or the time to run it';
        END IF;
        RAISE EXCEPTION 'rhino.enqueue: timeout must be a finite number of seconds above 0, not %',
                        enqueue_job.timeout
              USING ERRCODE = '22023', HINT = 'pass NULL (or leave timeout out) for [worker] job_timeout';
    END IF;

    -- Most jobs have no key: one INSERT, and as few other expressions as
    -- possible (each costs plpgsql an evaluation; this path is the bulk of
    -- every application's enqueues).
    IF v_key IS NULL AND enqueue_job.unique_for IS NULL THEN
        INSERT INTO rhino.jobs (kind, payload, queue, run_at, priority, max_attempts, timeout, state,
                                concurrency_key)
        VALUES (enqueue_job.kind, coalesce(enqueue_job.payload, '{}'), coalesce(enqueue_job.queue, 'default'),
                coalesce(enqueue_job.run_at, now()),
                coalesce(enqueue_job.priority, 0)::smallint,       -- "smallint out of range" beyond +-32767
                coalesce(enqueue_job.max_attempts, 25), enqueue_job.timeout,
                CASE WHEN enqueue_job.run_at > now() THEN 'scheduled' ELSE 'available' END::rhino.job_state,
                enqueue_job.concurrency_key)
        RETURNING jobs.id, jobs.state, jobs.queue INTO v_id, v_state, v_queue;
        IF v_state = 'available' THEN
            PERFORM rhino.wake(v_queue);
        END IF;
        id := v_id;
        existing := false;
        RETURN;
    END IF;

    IF v_key IS NULL THEN
        RAISE EXCEPTION 'rhino.enqueue: unique_for needs a unique_key'
              USING ERRCODE = '22023', HINT = 'the window is per key: pass unique_key => ''...'' as well';
    END IF;
    IF length(v_key) NOT BETWEEN 1 AND 512 THEN
        RAISE EXCEPTION 'rhino.enqueue: unique_key must be 1 to 512 characters long, not %', length(v_key)
              USING ERRCODE = '22023';
    END IF;

    IF enqueue_job.unique_for IS NOT NULL THEN
        IF enqueue_job.unique_for <= interval '0' THEN
            RAISE EXCEPTION 'rhino.enqueue: unique_for must be longer than 0, not %', enqueue_job.unique_for
                  USING ERRCODE = '22023';
        END IF;
        -- Take the window: insert it, or renew it if it has expired.  A live
        -- window is left as it is, but locked (ON CONFLICT DO UPDATE locks the
        -- row even when its WHERE is false), so that it cannot be pruned
        -- before we read it.  A concurrent enqueue of the key waits here
        -- until our transaction ends, then finds the window taken.
        v_win_id := nextval('rhino.jobs_id_seq');
        INSERT INTO rhino.unique_windows AS w (unique_key, job_id, expires_at)
             VALUES (v_key, v_win_id, now() + enqueue_job.unique_for)
        ON CONFLICT (unique_key) DO UPDATE SET job_id = EXCLUDED.job_id, expires_at = EXCLUDED.expires_at
              WHERE w.expires_at <= now();
        IF NOT FOUND THEN
            SELECT w.job_id INTO v_id FROM rhino.unique_windows w WHERE w.unique_key = v_key;
            id := v_id;
            existing := true;
            RETURN;
        END IF;
    END IF;

    -- Look first: a repeat of a live key, the common case of a debounced
    -- producer, then costs one index lookup, no insert attempt and no
    -- sequence value.  Insert if there is none; if the insert finds one
    -- after all (a concurrent enqueue committed it), look again; if that
    -- job has finished meanwhile, the key is free: go round.
    FOR i IN 1 .. 100 LOOP
        SELECT j.id INTO v_id FROM rhino.jobs j WHERE j.unique_key = v_key;
        IF FOUND THEN
            existing := true;
            EXIT;
        END IF;
        INSERT INTO rhino.jobs (id, kind, payload, queue, run_at, priority, max_attempts, timeout, state,
                                unique_key, concurrency_key)
        VALUES (coalesce(v_win_id, nextval('rhino.jobs_id_seq')), enqueue_job.kind,
                coalesce(enqueue_job.payload, '{}'), coalesce(enqueue_job.queue, 'default'),
                coalesce(enqueue_job.run_at, now()),
                coalesce(enqueue_job.priority, 0)::smallint,
                coalesce(enqueue_job.max_attempts, 25), enqueue_job.timeout,
                CASE WHEN enqueue_job.run_at > now() THEN 'scheduled' ELSE 'available' END::rhino.job_state,
                v_key, enqueue_job.concurrency_key)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
        RETURNING jobs.id, jobs.state, jobs.queue INTO v_id, v_state, v_queue;
        IF FOUND THEN
            existing := false;
            EXIT;
        END IF;
    END LOOP;
    IF existing IS NULL THEN
        RAISE EXCEPTION 'rhino.enqueue: the live job of this unique_key kept changing; giving up'
              USING ERRCODE = '40001', HINT = 'retry the transaction';
    END IF;
    IF v_id <> v_win_id THEN
        -- the window is ours, but a job with the key was still live: the
        -- window stands for the job we return
        UPDATE rhino.unique_windows SET job_id = v_id WHERE unique_key = v_key;
    END IF;
    IF NOT existing AND v_state = 'available' THEN
        PERFORM rhino.wake(v_queue);
    END IF;
    id := v_id;
END
$$;

-- sql/004_cron.sql's rhino.schedule, with NaN and Infinity refused.
CREATE OR REPLACE FUNCTION rhino.schedule(name         text,
                                          cron         text,
                                          kind         text,
                                          payload      jsonb  DEFAULT '{}',
                                          queue        text   DEFAULT 'default',
                                          priority     int    DEFAULT 0,
                                          max_attempts int    DEFAULT 25,
                                          timeout      float8 DEFAULT NULL,
                                          missed       text   DEFAULT 'latest',
                                          source       text   DEFAULT 'sql')
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $fn$
#variable_conflict use_column
DECLARE
    existed boolean;
    changed boolean;
BEGIN
    IF schedule.name IS NULL OR length(schedule.name) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'rhino.schedule: name must be 1 to 255 characters long';
    END IF;
    PERFORM rhino.cron_check(schedule.cron);
    IF schedule.kind IS NULL OR length(schedule.kind) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: kind must be 1 to 255 characters long', schedule.name);
    END IF;
    IF length(coalesce(schedule.queue, 'default')) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: queue must be 1 to 255 characters long', schedule.name);
    END IF;
    IF coalesce(schedule.missed, 'latest') NOT IN ('latest', 'all', 'none') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: missed must be latest, all or none, not "%s"',
                             schedule.name, schedule.missed);
    END IF;
    IF coalesce(schedule.max_attempts, 25) < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: max_attempts must be at least 1', schedule.name);
    END IF;
    IF NOT (schedule.timeout > 0 AND schedule.timeout < 'Infinity') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: timeout must be a finite number of seconds above 0 (or NULL), not %s',
                             schedule.name, schedule.timeout);
    END IF;
    IF coalesce(schedule.source, 'sql') NOT IN ('sql', 'config') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: source must be sql or config', schedule.name);
    END IF;

    -- lock an existing row first: concurrent changes of one schedule then take turns
    SELECT true INTO existed FROM rhino.schedules s WHERE s.name = schedule.name FOR UPDATE;
    INSERT INTO rhino.schedules AS s (name, cron, kind, payload, queue, priority, max_attempts, timeout,
                                      missed, source)
    VALUES (schedule.name, schedule.cron, schedule.kind,
            coalesce(schedule.payload, '{}'),
            coalesce(schedule.queue, 'default'),
            coalesce(schedule.priority, 0)::smallint,          -- "smallint out of range" beyond +-32767
            coalesce(schedule.max_attempts, 25),
            schedule.timeout,
            coalesce(schedule.missed, 'latest'),
            coalesce(schedule.source, 'sql'))
    ON CONFLICT (name) DO UPDATE
       SET cron = excluded.cron, kind = excluded.kind, payload = excluded.payload, queue = excluded.queue,
           priority = excluded.priority, max_attempts = excluded.max_attempts, timeout = excluded.timeout,
           missed = excluded.missed, source = excluded.source, updated_at = now(),
           fired_until  = CASE WHEN s.cron = excluded.cron THEN s.fired_until
                               ELSE date_trunc('minute', now()) END,
           next_fire_at = CASE WHEN s.cron = excluded.cron THEN s.next_fire_at END,
           error        = CASE WHEN s.cron = excluded.cron THEN s.error END
     WHERE (s.cron, s.kind, s.payload, s.queue, s.priority, s.max_attempts, s.timeout, s.missed, s.source)
           IS DISTINCT FROM
           (excluded.cron, excluded.kind, excluded.payload, excluded.queue, excluded.priority,
            excluded.max_attempts, excluded.timeout, excluded.missed, excluded.source)
    RETURNING true INTO changed;
    RETURN CASE WHEN changed IS NULL THEN 'unchanged' WHEN existed THEN 'changed' ELSE 'created' END;
END
$fn$;
