-- Rhino schema, version 5: claim-side queue controls.
--
--   * concurrency limits: at most max_running jobs of a queue run at once on
--     all hosts together, at most max_running_per_node on any one host (node),
--     at most per_key_max of one concurrency_key (a tenant, a customer);
--   * rate limits: a token bucket per queue (rate jobs per second, burst) and
--     one per concurrency_key (key_rate, key_burst);
--   * priority aging: every `aging`, the waiting jobs of a queue that have
--     waited at least that long move one priority level up, so that a low
--     priority cannot starve behind a steady stream of high ones.
--
-- Set with rhino.queue_config() or `rhinoctl queue NAME --max-running N ...`.
--
-- The hot path.  A queue without limits is claimed exactly as before: the
-- claim statement (common/rh_sql.c, RH_STMT_CLAIM) skips queues whose
-- rhino.queues row says `limited`, in the same primary-key lookup that already
-- skips paused ones.  Only workers whose queues include a limited one (the
-- reaper tells them, reaper/rh_limits.c) send RH_STMT_CLAIM_LIMITED, which
-- calls rhino.claim_limited() below and then claims the unlimited queues as
-- RH_STMT_CLAIM does.
--
-- A worker runs its jobs one after the other, so it holds at most one job of
-- a queue with a concurrency limit: a second would hold a slot without
-- running.  Rate-only queues are claimed in whole batches.
--
-- Counting running jobs without drift and without slowing unlimited queues.
-- A counter that every path out of 'running' must decrement (finalize,
-- retry, crash, quarantine, rescue, release, release-mine, cancel, and the
-- ones still to come) drifts the first time one path forgets.  Here the
-- count is derived from the rows: rhino.claim_limited() sets `counted` on
-- the jobs it claims, and the partial index jobs_counted holds exactly the
-- running, counted jobs.  Every path out of 'running' changes `state`, which
-- takes the row out of the index's predicate: nothing has to be released,
-- and no path can forget to.  A job of an unlimited queue is never counted,
-- so its claim and finalize only evaluate the predicate; they add no index
-- entry.  (An index on all running jobs by queue would cost every claim of
-- every queue one more index insertion per job.)
--
-- Why the limits cannot be exceeded under concurrent claims.  The claims of
-- one limited queue, from any worker on any host, are serialized by the row
-- lock on its rhino.queue_state row (SELECT ... FOR UPDATE), held until the
-- claiming transaction commits.  rhino.claim_limited() is VOLATILE and runs
-- in READ COMMITTED (it refuses anything else), so each of its statements
-- takes a new snapshot: the count it reads after it got the lock includes
-- every claim committed before, the one that held the lock last included
-- (PostgreSQL makes a transaction visible before it releases its locks).
-- Running jobs that leave 'running' concurrently only make the count too
-- high for a moment, never too low.  So when a claim admits k jobs,
-- running + k <= limit holds at its commit, and the next claimer starts
-- from there.
--
-- Changing limits.  rhino.queue_config() marks the jobs of the queue that are
-- running when a limit is set, so they count.  A claim of the unlimited path
-- that was already in flight when the change committed (its snapshot still
-- saw no limit) commits its jobs unmarked; for one minute after a change,
-- rhino.claim_limited() therefore marks any unmarked running job of the queue
-- before it counts.  A claim statement takes milliseconds, so the only
-- over-admission possible is within the few milliseconds around the change.

-- Limits and aging, per queue (NULL: none).  `limited` says whether the
-- claim must take the limited path; aging alone does not limit the claim.
ALTER TABLE rhino.queues
    ADD COLUMN max_running          int,
    ADD COLUMN max_running_per_node int,
    ADD COLUMN per_key_max          int,
    ADD COLUMN rate                 float8,
    ADD COLUMN burst                int,
    ADD COLUMN key_rate             float8,
    ADD COLUMN key_burst            int,
    ADD COLUMN aging                interval,
    ADD COLUMN limits_at            timestamptz,     -- when the limits last changed
    ADD COLUMN limited              boolean NOT NULL
        GENERATED ALWAYS AS (max_running IS NOT NULL OR max_running_per_node IS NOT NULL
                             OR per_key_max IS NOT NULL OR rate IS NOT NULL OR key_rate IS NOT NULL) STORED,
    ADD CONSTRAINT queues_max_running CHECK (max_running >= 1 AND max_running_per_node >= 1 AND per_key_max >= 1),
    ADD CONSTRAINT queues_rate  CHECK (rate > 0 AND rate <= 1000000 AND burst >= 1 AND (burst IS NULL OR rate IS NOT NULL)),
    ADD CONSTRAINT queues_key_rate CHECK (key_rate > 0 AND key_rate <= 1000000 AND key_burst >= 1
                                          AND (key_burst IS NULL OR key_rate IS NOT NULL)),
    ADD CONSTRAINT queues_aging CHECK (aging > interval '0');

-- The mutable side of a queue's limits, apart from rhino.queues so that the
-- row every claim reads stays unchanged: the lock that serializes the claims
-- of a limited queue, its token bucket, and the time of its last aging tick.
CREATE TABLE rhino.queue_state (
    name        text PRIMARY KEY REFERENCES rhino.queues (name) ON DELETE CASCADE,
    tokens      float8,                 -- the queue's bucket at refilled_at (NULL: full)
    refilled_at timestamptz,
    aged_at     timestamptz             -- the last aging tick (NULL: none yet)
) WITH (fillfactor = 50);

-- Token buckets per (queue, concurrency_key).  A key without a row has a full
-- bucket, so the reaper deletes the rows that have refilled completely.
CREATE TABLE rhino.queue_key_state (
    queue       text        NOT NULL,
    key         text        NOT NULL,
    tokens      float8      NOT NULL,
    refilled_at timestamptz NOT NULL,
    PRIMARY KEY (queue, key)
) WITH (fillfactor = 50);

-- Set by rhino.claim_limited() (and rhino.queue_config()) on the jobs that
-- count against their queue's limits while they run.  Never cleared: outside
-- 'running' it means nothing, see jobs_counted.
ALTER TABLE rhino.jobs ADD COLUMN counted boolean;

-- The running jobs of limited queues, by queue and key: the limited claim
-- counts through this index.  Only counted jobs enter it.
CREATE INDEX jobs_counted ON rhino.jobs (queue, concurrency_key) WHERE state = 'running' AND counted;

-- The available jobs that carry a concurrency_key, by key: when the head of
-- a queue with per-key limits is all jobs of keys that are at their limit
-- (one tenant enqueued 100000), the claim finds the other keys' jobs by a
-- skip scan over this index instead of walking the whole backlog.  Jobs
-- without a key (most jobs) have no entry.
CREATE INDEX jobs_keyed ON rhino.jobs (queue, concurrency_key, priority, run_at, id)
    WHERE state = 'available' AND concurrency_key IS NOT NULL;

-- Configure a queue's limits and aging; returns its row.  Every setting is
-- given anew: a parameter left out (NULL) means "no such limit".  paused is
-- left as it is.  `rhinoctl queue NAME --rate 5` changes one setting and keeps
-- the others.
--
--   max_running           jobs of the queue running at once, all hosts together
--   max_running_per_node  ... on one host (one rhino master, rhino.nodes)
--   per_key_max           ... with one concurrency_key; jobs without a key are
--                         not limited per key
--   rate, burst           a token bucket for the queue: rate jobs per second
--                         start on average, at most burst at once after a pause
--                         (burst defaults to one second's worth, at least 1)
--   key_rate, key_burst   the same per concurrency_key
--   aging                 every aging, waiting jobs that waited at least that
--                         long move one priority level up (never above the
--                         best priority waiting in the queue)
CREATE FUNCTION rhino.queue_config(name                 text,
                                   max_running          int      DEFAULT NULL,
                                   max_running_per_node int      DEFAULT NULL,
                                   per_key_max          int      DEFAULT NULL,
                                   rate                 float8   DEFAULT NULL,
                                   burst                int      DEFAULT NULL,
                                   key_rate             float8   DEFAULT NULL,
                                   key_burst            int      DEFAULT NULL,
                                   aging                interval DEFAULT NULL)
RETURNS rhino.queues
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_burst     int := queue_config.burst;
    v_key_burst int := queue_config.key_burst;
    v_row       rhino.queues;
    v_old       rhino.queues;
BEGIN
    IF queue_config.name IS NULL OR length(queue_config.name) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'rhino.queue_config: the queue name must be 1 to 255 characters long'
              USING ERRCODE = '22023';
    END IF;
    IF queue_config.max_running < 1 OR queue_config.max_running_per_node < 1 OR queue_config.per_key_max < 1 THEN
        RAISE EXCEPTION 'rhino.queue_config: max_running, max_running_per_node and per_key_max must be at least 1'
              USING ERRCODE = '22023',
                    HINT = 'NULL removes a limit; to stop a queue, pause it (rhinoctl pause)';
    END IF;
    IF NOT (queue_config.rate > 0 AND queue_config.rate <= 1000000)
       OR NOT (queue_config.key_rate > 0 AND queue_config.key_rate <= 1000000) THEN
        RAISE EXCEPTION 'rhino.queue_config: rate and key_rate are jobs per second, above 0 and at most 1000000'
              USING ERRCODE = '22023', HINT = 'NULL removes a rate limit';
    END IF;
    IF (v_burst IS NOT NULL AND queue_config.rate IS NULL) OR (v_key_burst IS NOT NULL AND queue_config.key_rate IS NULL) THEN
        RAISE EXCEPTION 'rhino.queue_config: burst needs rate, and key_burst needs key_rate'
              USING ERRCODE = '22023';
    END IF;
    IF v_burst < 1 OR v_key_burst < 1 THEN
        RAISE EXCEPTION 'rhino.queue_config: burst and key_burst must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF queue_config.aging <= interval '0' THEN
        RAISE EXCEPTION 'rhino.queue_config: aging must be a positive interval' USING ERRCODE = '22023',
              HINT = 'NULL turns aging off';
    END IF;
    IF queue_config.rate IS NOT NULL THEN
        v_burst := coalesce(v_burst, greatest(1, ceil(queue_config.rate))::int);
    END IF;
    IF queue_config.key_rate IS NOT NULL THEN
        v_key_burst := coalesce(v_key_burst, greatest(1, ceil(queue_config.key_rate))::int);
    END IF;

    SELECT * INTO v_old FROM rhino.queues q WHERE q.name = queue_config.name;
    INSERT INTO rhino.queues AS q (name, max_running, max_running_per_node, per_key_max, rate, burst,
                                   key_rate, key_burst, aging, limits_at)
    VALUES (queue_config.name, queue_config.max_running, queue_config.max_running_per_node,
            queue_config.per_key_max, queue_config.rate, v_burst, queue_config.key_rate, v_key_burst,
            queue_config.aging, now())
    ON CONFLICT (name) DO UPDATE
       SET max_running = excluded.max_running, max_running_per_node = excluded.max_running_per_node,
           per_key_max = excluded.per_key_max, rate = excluded.rate, burst = excluded.burst,
           key_rate = excluded.key_rate, key_burst = excluded.key_burst, aging = excluded.aging,
           limits_at = CASE WHEN (q.max_running, q.max_running_per_node, q.per_key_max, q.rate, q.burst,
                                  q.key_rate, q.key_burst)
                                 IS NOT DISTINCT FROM
                                 (excluded.max_running, excluded.max_running_per_node, excluded.per_key_max,
                                  excluded.rate, excluded.burst, excluded.key_rate, excluded.key_burst)
                            THEN q.limits_at ELSE now() END
    RETURNING * INTO v_row;

    INSERT INTO rhino.queue_state (name) VALUES (queue_config.name) ON CONFLICT DO NOTHING;
    IF v_old.rate IS DISTINCT FROM v_row.rate OR v_old.burst IS DISTINCT FROM v_row.burst THEN
        -- a new bucket starts full
        UPDATE rhino.queue_state s SET tokens = NULL, refilled_at = NULL WHERE s.name = queue_config.name;
    END IF;
    IF v_old.key_rate IS DISTINCT FROM v_row.key_rate OR v_old.key_burst IS DISTINCT FROM v_row.key_burst THEN
        DELETE FROM rhino.queue_key_state k WHERE k.queue = queue_config.name;
    END IF;

    -- Jobs already running count from now on (see the top of this file).
    IF v_row.limited AND v_row.limits_at = now() THEN
        UPDATE rhino.jobs j SET counted = true
         WHERE j.queue = queue_config.name AND j.state = 'running' AND j.counted IS NOT TRUE;
    END IF;
    RETURN v_row;
END
$$;

-- The ids of up to p_want available jobs of queue p_queue that its per-key
-- limits admit now (at p_at), best first (priority, run_at, id).  Not
-- locked: the caller holds the queue's lock, and locks them as it claims.
--
-- The keys that have waiting jobs are found by a skip scan over jobs_keyed,
-- one index probe per key however many jobs it has, so that the head of the
-- queue being all jobs of one key at its limit (one tenant enqueued 100000)
-- costs nothing: each key's best jobs come from its own part of the index.
-- A key's room is per_key_max less its counted running jobs, and its
-- bucket's whole tokens.  Jobs without a key are not limited per key; they
-- are taken from the first 100 waiting jobs of the queue (they have no index
-- of their own: give every job of such a queue a key).
CREATE FUNCTION rhino.limits_pick_keyed(p_queue text, p_want bigint, p_at timestamptz,
                                        p_per_key int, p_key_rate float8, p_key_burst int)
RETURNS bigint[]
LANGUAGE plpgsql STABLE         -- plpgsql, not sql: it keeps its plans from one claim to the next
AS $$
DECLARE
    v_ids bigint[];
BEGIN
    WITH RECURSIVE keys AS (
        (SELECT j.concurrency_key AS k FROM rhino.jobs j
          WHERE j.state = 'available' AND j.queue = p_queue AND j.concurrency_key IS NOT NULL
          ORDER BY j.concurrency_key LIMIT 1)
        UNION ALL
        SELECT (SELECT j.concurrency_key FROM rhino.jobs j
                 WHERE j.state = 'available' AND j.queue = p_queue AND j.concurrency_key IS NOT NULL
                   AND j.concurrency_key > keys.k
                 ORDER BY j.concurrency_key LIMIT 1)
          FROM keys WHERE keys.k IS NOT NULL),
    running AS MATERIALIZED (
        SELECT j.concurrency_key AS k, count(*) AS n FROM rhino.jobs j
         WHERE j.queue = p_queue AND j.state = 'running' AND j.counted AND j.concurrency_key IS NOT NULL
         GROUP BY 1),
    room AS MATERIALIZED (
        SELECT keys.k,
               least(p_want,
                     CASE WHEN p_per_key IS NULL THEN p_want ELSE p_per_key - coalesce(running.n, 0) END,
                     CASE WHEN p_key_rate IS NULL THEN p_want
                          WHEN b.refilled_at IS NULL THEN p_key_burst     -- no row: a full bucket
                          ELSE floor(least(p_key_burst, b.tokens + p_key_rate
                                           * greatest(0, extract(epoch FROM p_at - b.refilled_at))))::bigint
                     END) AS room
          FROM keys
          LEFT JOIN running ON running.k = keys.k
          LEFT JOIN rhino.queue_key_state b ON b.queue = p_queue AND b.key = keys.k
         WHERE keys.k IS NOT NULL),
    candidates AS (
        SELECT c.id, c.priority, c.run_at
          FROM room
         CROSS JOIN LATERAL (
               SELECT j.id, j.priority, j.run_at FROM rhino.jobs j
                WHERE j.state = 'available' AND j.queue = p_queue AND j.concurrency_key = room.k
                  AND j.run_at <= now()
                ORDER BY j.priority, j.run_at, j.id
                LIMIT room.room) c
         WHERE room.room > 0
        UNION ALL
        SELECT h.id, h.priority, h.run_at
          FROM (SELECT j.id, j.concurrency_key, j.priority, j.run_at FROM rhino.jobs j
                 WHERE j.state = 'available' AND j.queue = p_queue AND j.run_at <= now()
                 ORDER BY j.priority, j.run_at, j.id
                 LIMIT 100) h
         WHERE h.concurrency_key IS NULL)
    SELECT coalesce(array_agg(x.id ORDER BY x.priority, x.run_at, x.id), '{}') INTO v_ids
      FROM (SELECT * FROM candidates ORDER BY priority, run_at, id LIMIT p_want) x;
    RETURN v_ids;
END
$$;

-- The limited half of the claim: up to `batch` jobs of the limited, unpaused
-- queues among `queues` that their limits admit now, claimed for `worker`
-- (the columns of the claim statement).  Queues are taken in name order, so
-- that two claimers never wait for each other's queue locks in a cycle.
-- See the top of this file for why the limits hold.
CREATE FUNCTION rhino.claim_limited(queues text[], batch int, worker bigint)
RETURNS TABLE (id bigint, attempt int, max_attempts int, queue text, kind text, payload text,
               timeout float8, errors int)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_node    bigint;
    v_left    bigint := claim_limited.batch;
    v_name    text;
    q         rhino.queues;
    s         rhino.queue_state;
    v_now     timestamptz;
    v_n       bigint;
    v_tokens  float8;
    v_ids     bigint[];
    v_claimed bigint[];
    v_got     int;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'rhino.claim_limited: needs READ COMMITTED, not %', current_setting('transaction_isolation')
              USING HINT = 'each of its statements must see the claims committed before it took the queue lock';
    END IF;
    SELECT w.node_id INTO v_node FROM rhino.workers w
     WHERE w.id = claim_limited.worker AND w.ended_at IS NULL AND w.lease_until > now();
    IF NOT FOUND THEN
        RETURN;                 -- a worker declared dead claims nothing
    END IF;

    FOR v_name IN SELECT p.name FROM rhino.queues p
                   WHERE p.name = ANY (claim_limited.queues) AND p.limited AND NOT p.paused
                   ORDER BY p.name LOOP
        EXIT WHEN v_left <= 0;

        -- The queue's lock: from here until our commit no other claim of this queue runs.
        SELECT * INTO s FROM rhino.queue_state st WHERE st.name = v_name FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO rhino.queue_state (name) VALUES (v_name) ON CONFLICT DO NOTHING;
            SELECT * INTO s FROM rhino.queue_state st WHERE st.name = v_name FOR UPDATE;
        END IF;
        -- The settings as they are now: a pause or a change committed while we waited applies.
        SELECT * INTO q FROM rhino.queues p WHERE p.name = v_name;
        CONTINUE WHEN NOT FOUND OR q.paused OR NOT q.limited;

        IF q.limits_at > now() - interval '1 minute' THEN
            UPDATE rhino.jobs j SET counted = true
              FROM (SELECT r.id FROM rhino.jobs r
                     WHERE r.queue = v_name AND r.state = 'running' AND r.counted IS NOT TRUE
                     FOR UPDATE SKIP LOCKED) m
             WHERE j.id = m.id;
        END IF;

        v_n := v_left;
        IF q.max_running IS NOT NULL OR q.max_running_per_node IS NOT NULL OR q.per_key_max IS NOT NULL THEN
            -- A worker runs its jobs one at a time: a second job of this queue
            -- in its hands would hold a slot without running.  So a worker
            -- holds at most one job of a queue with a concurrency limit, and
            -- max_running workers run max_running jobs at once.
            v_n := least(v_n, 1 - (SELECT count(*) FROM rhino.jobs j
                                    WHERE j.worker_id = claim_limited.worker AND j.state = 'running'
                                      AND j.queue = v_name));
        END IF;
        IF q.max_running IS NOT NULL AND v_n > 0 THEN
            v_n := least(v_n, q.max_running - (SELECT count(*) FROM rhino.jobs j
                                                WHERE j.queue = v_name AND j.state = 'running' AND j.counted));
        END IF;
        IF q.max_running_per_node IS NOT NULL AND v_n > 0 THEN
            v_n := least(v_n, q.max_running_per_node - (SELECT count(*) FROM rhino.jobs j
                                                          JOIN rhino.workers w ON w.id = j.worker_id
                                                         WHERE j.queue = v_name AND j.state = 'running'
                                                           AND j.counted AND w.node_id = v_node));
        END IF;
        -- after the lock: the clocks of successive holders never go backwards
        v_now := clock_timestamp();
        IF q.rate IS NOT NULL THEN
            v_tokens := CASE WHEN s.refilled_at IS NULL THEN q.burst
                             ELSE least(q.burst, s.tokens + q.rate
                                        * greatest(0, extract(epoch FROM v_now - s.refilled_at))) END;
            v_n := least(v_n, floor(v_tokens)::bigint);
        END IF;
        CONTINUE WHEN v_n <= 0;

        IF q.per_key_max IS NULL AND q.key_rate IS NULL THEN
            WITH u AS (
                UPDATE rhino.jobs j
                   SET state = 'running', attempt = j.attempt + 1, attempted_at = v_now,
                       worker_id = claim_limited.worker, counted = true
                  FROM (SELECT c.id FROM rhino.jobs c
                         WHERE c.state = 'available' AND c.queue = v_name AND c.run_at <= now()
                         ORDER BY c.priority, c.run_at, c.id
                         LIMIT v_n
                         FOR UPDATE SKIP LOCKED) c
                 WHERE j.id = c.id
                RETURNING j.id)
            SELECT array_agg(u.id) INTO v_claimed FROM u;
        ELSE
            v_ids := rhino.limits_pick_keyed(v_name, v_n, v_now, q.per_key_max, q.key_rate, q.key_burst);
            WITH u AS (
                UPDATE rhino.jobs j
                   SET state = 'running', attempt = j.attempt + 1, attempted_at = v_now,
                       worker_id = claim_limited.worker, counted = true
                  FROM (SELECT c.id FROM rhino.jobs c
                         WHERE c.id = ANY (v_ids) AND c.state = 'available'
                         FOR UPDATE SKIP LOCKED) c
                 WHERE j.id = c.id
                RETURNING j.id)
            SELECT array_agg(u.id) INTO v_claimed FROM u;
        END IF;
        v_got := coalesce(cardinality(v_claimed), 0);
        CONTINUE WHEN v_got = 0;

        IF q.rate IS NOT NULL THEN
            UPDATE rhino.queue_state st SET tokens = v_tokens - v_got, refilled_at = v_now WHERE st.name = v_name;
        END IF;
        IF q.key_rate IS NOT NULL THEN
            INSERT INTO rhino.queue_key_state AS b (queue, key, tokens, refilled_at)
            SELECT v_name, t.k,
                   coalesce((SELECT least(q.key_burst, o.tokens + q.key_rate
                                          * greatest(0, extract(epoch FROM v_now - o.refilled_at)))
                               FROM rhino.queue_key_state o WHERE o.queue = v_name AND o.key = t.k),
                            q.key_burst) - t.n,
                   v_now
              FROM (SELECT j.concurrency_key AS k, count(*) AS n FROM rhino.jobs j
                     WHERE j.id = ANY (v_claimed) AND j.concurrency_key IS NOT NULL GROUP BY 1) t
            ON CONFLICT (queue, key) DO UPDATE SET tokens = excluded.tokens, refilled_at = excluded.refilled_at;
        END IF;

        v_left := v_left - v_got;
        RETURN QUERY
            SELECT j.id, j.attempt, j.max_attempts, j.queue, j.kind, j.payload::text, j.timeout, j.errors
              FROM rhino.jobs j WHERE j.id = ANY (v_claimed)
             ORDER BY j.priority, j.run_at, j.id;
    END LOOP;
END
$$;
