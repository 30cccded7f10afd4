-- Rhino schema, version 3: unique jobs, throttle windows, wake-up notifications.
--
-- Unique jobs.  rhino.jobs.unique_key (added by version 2) is unique among the
-- rows of rhino.jobs, that is among the live jobs: available, scheduled,
-- running and retryable.  Once a job leaves rhino.jobs (completed, discarded,
-- cancelled) its key is free again.
--
-- Why exactly that scope, and not a subset of the live states: the index
-- predicate below does not mention state, so no UPDATE the daemon makes
-- (claim, retry, rescue, promote, crash count, release) can add a key to the
-- index or take one out; it only writes new versions of a row whose key is
-- already there.  Keys enter the index only by INSERT (rhino.enqueue, COPY,
-- rhinoctl retry's redrive) and leave it only by DELETE (finalize, discard,
-- quarantine, cancel), and a DELETE cannot violate uniqueness.  So none of
-- the daemon's transitions can ever fail with a unique violation.  A scope
-- such as "available or running" would break that: a retryable job with key k
-- next to a newer available job with key k would collide when promoted.
--
-- Cost: the index is partial (unique_key IS NOT NULL), so a job without a key
-- has no entry in it; its claim and finalize only evaluate the predicate.
CREATE UNIQUE INDEX jobs_unique_key ON rhino.jobs (unique_key) WHERE unique_key IS NOT NULL;

-- Throttle windows: "at most one job per key per period".  An enqueue with
-- unique_for takes the window of its key (or finds it taken and returns the
-- job that took it, even if that job has finished since).  Only enqueues
-- with unique_for read or write this table; the claim and the finalize never
-- touch it.  Expired rows are deleted by the reaper (rhino.unique_windows is
-- pruned with the history, in batches, SKIP LOCKED).
CREATE TABLE rhino.unique_windows (
    unique_key text        PRIMARY KEY,
    job_id     bigint      NOT NULL,    -- the job of this window (it may be finished, or pruned)
    expires_at timestamptz NOT NULL
);
CREATE INDEX unique_windows_expires ON rhino.unique_windows (expires_at);

-- Enqueue one job; returns its id and whether it is an existing job.
--
-- The parameters of version 1's rhino.enqueue, in the same order with the
-- same defaults, then:
--   unique_key       no second live job with this key: return the live one's id
--   unique_for       with unique_key: no second job with this key for this
--                    long after the first was enqueued, finished or not
--   concurrency_key  stored for per-key limits of the claim
--
-- Race-safe under READ COMMITTED without locks of our own: INSERT .. ON
-- CONFLICT DO NOTHING waits for a transaction that is inserting the same key
-- and then either inserts (it rolled back) or does nothing (it committed);
-- the next SELECT, with a new snapshot, sees the committed job.  If that job
-- finished in between, the loop inserts again.  Under REPEATABLE READ or
-- SERIALIZABLE a race with a concurrent transaction raises a serialization
-- failure (40001) instead, which the caller retries as any other.  None of
-- this waits on, or is waited on by, the daemon: its statements never insert
-- a key, and a live key has exactly one row.
--
-- A new job that is available now wakes the daemons listening on channel
-- rhino_jobs, with the queue as payload.  PostgreSQL folds identical
-- notifications of one transaction into one and delivers them at commit, so
-- a transaction enqueueing many jobs sends one per queue, and a rolled-back
-- one none.
CREATE FUNCTION rhino.enqueue_job(kind            text,
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

-- The one rhino.enqueue: version 1's, with the parameters above appended.
-- Dropped and created rather than overloaded, so that a call naming only
-- version 1's parameters (or passing them untyped, by position) has exactly
-- one candidate.  It returns the id alone, as it always did; rhino.enqueue_job
-- also says whether the job already existed.
DROP FUNCTION rhino.enqueue(text, jsonb, text, timestamptz, int, int, float8);

CREATE FUNCTION rhino.enqueue(kind            text,
                              payload         jsonb       DEFAULT '{}',
                              queue           text        DEFAULT 'default',
                              run_at          timestamptz DEFAULT now(),
                              priority        int         DEFAULT 0,
                              max_attempts    int         DEFAULT 25,
                              timeout         float8      DEFAULT NULL,
                              unique_key      text        DEFAULT NULL,
                              unique_for      interval    DEFAULT NULL,
                              concurrency_key text        DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$
    -- one field of the record: the planner inlines this body into the
    -- caller's query and calls rhino.enqueue_job once
    SELECT (rhino.enqueue_job($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)).id
$$;
