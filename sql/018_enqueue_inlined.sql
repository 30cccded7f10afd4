-- Schema version 18: rhino.enqueue is inlined into the caller's query again.
--
-- Why: schema 17 made rhino.enqueue SECURITY DEFINER with a pinned
-- search_path, and a function with a SET clause is never inlined.  For a SQL
-- function that is not inlined, PostgreSQL 15 parses and plans its body at
-- each execution of the caller's statement, prepared or not: SQL
-- rhino.enqueue() from 4 clients (rhino-bench insert, 100 calls per
-- transaction, alternated on the 2-core test machine) went from 32.4k /
-- 33.5k jobs/s to 25.0k / 25.0k with schema 17, and back to 33.7k / 32.0k
-- with this change.  The three search_path switches (rhino.enqueue,
-- rhino.enqueue_job, rhino.wake) were not the cost: about 1 us each.
--
-- rhino.enqueue needs no rights of its own: its body is one call of
-- rhino.enqueue_job, schema-qualified, which stays SECURITY DEFINER with
-- its search_path pinned and does all the work with the owner's rights.
-- So rhino.enqueue runs with the caller's rights, as before schema 17, and
-- the caller needs EXECUTE on both (README, "Roles and privileges", grants
-- both; without EXECUTE on rhino.enqueue_job the call is refused, inlined
-- or not).  Inlining parses the body with the caller's search_path, which
-- cannot reach anything here: rhino.enqueue_job is qualified, and a caller
-- without CREATE on schema rhino cannot put a function of its own there.
-- CREATE OR REPLACE keeps the owner and the grants, and leaves out SECURITY
-- DEFINER and the SET clause, which is the point.
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
AS $$
    -- one field of the record: the planner inlines this body into the
    -- caller's query and calls rhino.enqueue_job (SECURITY DEFINER) once
    SELECT (rhino.enqueue_job($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)).id
$$;
