-- Schema version 6: rhino.wake in PL/pgSQL.
--
-- rhino.enqueue_job calls rhino.wake once per new available job.  As a SQL
-- function called from PL/pgSQL (PERFORM), its body was parsed and planned
-- again on every call: PostgreSQL keeps a SQL function's plan only for the
-- duration of the calling query, and each PERFORM is a query of its own.
-- That was 85 of the 200 us one rhino.enqueue() call cost the server
-- (10,000 calls in one transaction: 2.0 s before, 1.1 s after), and it
-- capped 4 concurrent SQL producers near 6,000 jobs/s on two cores.  In
-- PL/pgSQL the statements are planned once per session.  Same signature,
-- same behaviour: notify channel rhino_jobs with the queue as payload, only
-- while some live node has an idle worker (rhino.nodes.idle, version 2).
CREATE OR REPLACE FUNCTION rhino.wake(queue text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM rhino.nodes n
                WHERE n.idle AND n.stopped_at IS NULL AND n.lease_until > now()) THEN
        PERFORM pg_notify('rhino_jobs', wake.queue);
    END IF;
END
$$;
