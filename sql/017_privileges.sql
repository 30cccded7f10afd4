-- Schema version 17: least privilege.  Applications enqueue, cancel and
-- schedule through functions, without any right on Rhino's tables.
--
-- Why: the functions ran with the caller's rights (SECURITY INVOKER), so a
-- role that should only enqueue needed INSERT on rhino.jobs, SELECT on
-- rhino.nodes (the wake-up), rhino.unique_windows (unique_for) and, to
-- cancel, UPDATE and DELETE on rhino.jobs and INSERT on
-- rhino.jobs_done_rows: it could rewrite or delete any job.  And PostgreSQL
-- grants EXECUTE on every new function to PUBLIC, so any role that could
-- reach the schema could call the daemon's own functions too.
--
-- Now the functions an application calls run with the rights of their
-- owner, the role that ran `rhinoctl migrate` (SECURITY DEFINER), and
-- nobody may call any rhino function unless granted EXECUTE.  The README's
-- "Roles and privileges" lists the grants for an application, a bulk (COPY)
-- producer, monitoring, and a daemon role apart from the owner; no role is
-- created here (that needs CREATEROLE, and the names are the user's).
--
-- What makes a SECURITY DEFINER function safe to hand to a less trusted
-- role, and holds for each of the six below:
--   * search_path is pinned to pg_catalog, pg_temp for the call.  Otherwise
--     a caller could put a schema of its own before pg_catalog and have its
--     now(), pg_notify() or || operator run with the owner's rights.
--     pg_temp comes last, explicitly, so that a temporary table cannot
--     shadow anything (functions and operators are never looked up there).
--     Every table, function and type of Rhino in their bodies is already
--     schema-qualified (rhino.jobs, rhino.wake, rhino.job_state,
--     nextval('rhino.jobs_id_seq')); what is left unqualified comes from
--     pg_catalog, so the bodies stay as they are.
--   * no dynamic SQL: no EXECUTE, format() only builds error messages, and
--     every argument is a value in a statement, checked as before.
--   * they do only what their name says, on any job or schedule: an
--     application allowed to cancel may cancel any job, not only its own.
--
-- Cost: entering a SECURITY DEFINER function with a SET clause saves and
-- restores search_path, about 1-1.5 us per call on the 2-core test machine
-- (a plpgsql function returning its argument: 200k calls 0.17 s plain, 0.39
-- s so); rhino.enqueue pays it twice (itself and rhino.enqueue_job), a few
-- percent of its 60-150 us there, within the machine's noise in 30000-call
-- runs.  rhino.enqueue is no longer inlined into the caller's query (a
-- function with SET never is); it still calls rhino.enqueue_job once per job.
--
-- For later migrations: CREATE OR REPLACE FUNCTION restates the security
-- and SET clauses (leaving them out makes the function INVOKER again), while
-- it keeps the owner and the grants; a new function is executable by PUBLIC
-- until revoked (a per-schema default privilege cannot take that away).
-- tests/check_privileges.c fails on either.

-- Restated for its comment only: the body is version 3's.
CREATE OR REPLACE FUNCTION rhino.enqueue(kind            text,
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
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    -- one field of the record: rhino.enqueue_job is called once per call
    -- ((f()).* would call it once per field).  Not inlined into the
    -- caller's query since schema 17: a function with SET never is.
    SELECT (rhino.enqueue_job($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)).id
$$;
ALTER FUNCTION rhino.enqueue_job(text, jsonb, text, timestamptz, int, int, float8, text, interval, text)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION rhino.cancel(bigint)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION rhino.schedule(text, text, text, jsonb, text, int, int, float8, text, text)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION rhino.unschedule(text)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
-- the wake-up after a COPY (rhinoctl enqueue --bulk, librhino): a bulk
-- producer needs no SELECT on rhino.nodes, which names hosts and pids
ALTER FUNCTION rhino.wake(text)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- The rest stay SECURITY INVOKER: whoever calls them needs the rights on
-- the tables they touch, so they give nobody more than it has.  They are
-- for the owner (or a daemon role granted them): rhino.claim_limited,
-- rhino.limits_pick_keyed, rhino.stale_attempt (the workers),
-- rhino.queue_config (administration: it changes every host's claims),
-- rhino.jobs_done_by_id (payloads of finished jobs: monitoring),
-- rhino.cron_check (touches no table; the README grants it to
-- applications), and the trigger function rhino.jobs_done_insert.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA rhino FROM PUBLIC;
