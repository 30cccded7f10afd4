-- Schema version 16: the minute of re-marking after a change of limits
-- starts when a limited claim first sees the change, not at the call.
--
-- Why: a claim of the unlimited path whose snapshot was taken before
-- rhino.queue_config() committed still takes jobs of the queue, unmarked
-- (`counted` not set), so they would not count against the new limits.
-- rhino.claim_limited() therefore marks the queue's unmarked running jobs
-- for a while after a change.  Until now that while was the minute after
-- rhino.queues.limits_at, which is the now() of the queue_config() call:
-- the start of its transaction.  A transaction that called it and stayed
-- open for more than a minute committed a change whose minute was already
-- over, and every job that plain claims took while it was open (they could
-- not see the limit yet) ran uncounted: the limit could be exceeded for as
-- long as they ran.
--
-- Now each queue's rhino.queue_state row remembers which limits_at the
-- limited claims last saw (limits_seen) and when a claim first saw it
-- (limits_seen_at).  A claim holds that row's lock while it decides, so the
-- first one after the commit opens the minute, whatever the time of the
-- call.  Plain claims that could not see the change commit within
-- milliseconds of it, well inside that minute.  On the first claim after
-- this migration every limited queue opens one minute: harmless, the
-- marking only counts what runs.
--
-- Nothing else changes: the function is the one of
-- sql/009_limited_claim_by_tid.sql but for the test that opens the minute.
ALTER TABLE rhino.queue_state
    ADD COLUMN limits_seen    timestamptz,   -- the rhino.queues.limits_at the limited claims last saw
    ADD COLUMN limits_seen_at timestamptz;   -- when a claim first saw it: the re-marking minute starts here

CREATE OR REPLACE FUNCTION rhino.claim_limited(queues text[], batch int, worker bigint)
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
    v_mark    boolean;
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

        -- The first claim that sees a change of the limits (its commit, not
        -- its call) opens the minute in which unmarked running jobs of the
        -- queue are marked; s is locked, so exactly one claim opens it.
        IF q.limits_at IS DISTINCT FROM s.limits_seen THEN
            UPDATE rhino.queue_state st SET limits_seen = q.limits_at, limits_seen_at = clock_timestamp()
             WHERE st.name = v_name;
            v_mark := true;
        ELSE
            v_mark := s.limits_seen_at > now() - interval '1 minute';
        END IF;
        IF v_mark THEN
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
            -- The locked rows are updated where they were found (a TID scan)
            -- and returned by the UPDATE itself, as RH_STMT_CLAIM does.
            RETURN QUERY
                WITH u AS (
                    UPDATE rhino.jobs j
                       SET state = 'running', attempt = j.attempt + 1, attempted_at = v_now,
                           worker_id = claim_limited.worker, counted = true
                     WHERE j.ctid = ANY (ARRAY(
                           SELECT c.ctid FROM rhino.jobs c
                            WHERE c.state = 'available' AND c.queue = v_name AND c.run_at <= now()
                            ORDER BY c.priority, c.run_at, c.id
                            LIMIT v_n
                            FOR UPDATE SKIP LOCKED))
                    RETURNING j.id, j.attempt, j.max_attempts, j.queue, j.kind, j.payload::text AS payload,
                              j.timeout, j.errors, j.priority, j.run_at)
                SELECT u.id, u.attempt, u.max_attempts, u.queue, u.kind, u.payload, u.timeout, u.errors
                  FROM u ORDER BY u.priority, u.run_at, u.id;
            GET DIAGNOSTICS v_got = ROW_COUNT;
            CONTINUE WHEN v_got = 0;
            IF q.rate IS NOT NULL THEN
                UPDATE rhino.queue_state st SET tokens = v_tokens - v_got, refilled_at = v_now WHERE st.name = v_name;
            END IF;
            v_left := v_left - v_got;
            CONTINUE;
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
