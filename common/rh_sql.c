/*
 * rh_sql.c - the statement table: all SQL text of the daemon and rhinoctl.
 *
 * Statements are sent unnamed with PQsendQueryParams/PQexecParams, never as
 * named prepared statements and never with session state (SET, LISTEN,
 * advisory locks), so that every connection can sit behind PgBouncer in
 * transaction mode.  Parameters are always bound, never spliced into text.
 *
 * The fence: every statement that moves a running job matches
 * (id, attempt, state = 'running').  The claim increments attempt, so a
 * worker that lost its job to a rescue and a re-claim holds an old attempt
 * and changes nothing.
 */
#include "config.h"

#include <stddef.h>

#include "rh_sql.h"

/*
 * Finalize a batch: arrays of (id, attempt, new state, retry delay in
 * seconds, error).  Completed/discarded rows leave rhino.jobs for
 * rhino.jobs_done in the same statement (completed ones only if $6, the
 * retention of completed jobs, is on); retryable rows stay with a new
 * run_at.  The final SELECT of each variant counts the rows that matched;
 * the rest were stale.
 */
#define RH_FINALIZE_CTES \
        "WITH f AS (" \
        "  SELECT * FROM unnest($1::bigint[], $2::int[], $3::rhino.job_state[], $4::float8[], $5::text[])" \
        "    AS f(id, attempt, state, delay, err))," \
        " d AS (" \
        "  DELETE FROM rhino.jobs j USING f" \
        "   WHERE j.id = f.id AND j.attempt = f.attempt AND j.state = 'running'" \
        "     AND f.state IN ('completed', 'discarded')" \
        "  RETURNING j.id, j.queue, j.kind, j.payload, f.state, j.priority, j.attempt, j.max_attempts," \
        "            j.run_at, j.created_at, j.attempted_at, j.crash_count," \
        "            j.errors + (f.state = 'discarded')::int, coalesce(f.err, j.last_error) AS last_error)," \
        " h AS (" \
        "  INSERT INTO rhino.jobs_done (id, queue, kind, payload, state, priority, attempt, max_attempts," \
        "                               run_at, created_at, attempted_at, crash_count, errors, last_error)" \
        "  SELECT * FROM d WHERE d.state <> 'completed' OR $6::bool)," \
        " r AS (" \
        "  UPDATE rhino.jobs j" \
        "     SET state = CASE WHEN f.delay > 0 THEN 'retryable' ELSE 'available' END::rhino.job_state," \
        "         run_at = now() + make_interval(secs => f.delay)," \
        "         last_error = f.err, worker_id = NULL, errors = j.errors + 1" \
        "    FROM f" \
        "   WHERE j.id = f.id AND j.attempt = f.attempt AND j.state = 'running'" \
        "     AND f.state = 'retryable'" \
        "  RETURNING j.id)"

/*
 * A timestamptz as ISO 8601 in UTC ("2030-01-01T12:00:00.000000Z"), the same
 * under any DateStyle and TimeZone: rhinoctl's --json output is an interface.
 */
#define RH_ISO(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

static const rh_stmt_t rh_stmts[RH_STMT__COUNT] = {

    /*
     * Claim up to $2 available jobs of the queues $1 for worker $3.
     * Per queue, a LATERAL subquery walks jobs_claim in index order and locks
     * with SKIP LOCKED; the outer ORDER BY merges the queues by priority.  The
     * CTE is MATERIALIZED so that the planner cannot re-run the LIMIT
     * subquery per updated row (and claim more than $2).  The worker row must
     * still be live: a worker that the reaper declared dead claims nothing.
     * Paused queues (rhino.queues, rhinoctl pause) drop out of the list
     * first: one primary key lookup per queue per claim, not one per row.
     */
    [RH_STMT_CLAIM] = { RH_STMT_CLAIM, "claim",
        "WITH c AS MATERIALIZED ("
        "  SELECT j.id FROM (SELECT u.name FROM unnest($1::text[]) AS u(name)"
        "                     WHERE NOT EXISTS (SELECT 1 FROM rhino.queues p"
        "                                        WHERE p.name = u.name AND p.paused)) AS q(name)"
        "  CROSS JOIN LATERAL ("
        "    SELECT id, priority, run_at FROM rhino.jobs"
        "     WHERE state = 'available' AND queue = q.name AND run_at <= now()"
        "     ORDER BY priority, run_at, id"
        "     LIMIT $2"
        "     FOR UPDATE SKIP LOCKED) j"
        "  WHERE EXISTS (SELECT 1 FROM rhino.workers w"
        "                 WHERE w.id = $3 AND w.ended_at IS NULL AND w.lease_until > now())"
        "  ORDER BY j.priority, j.run_at, j.id"
        "  LIMIT $2)"
        " UPDATE rhino.jobs j"
        "    SET state = 'running', attempt = j.attempt + 1, attempted_at = now(), worker_id = $3"
        "   FROM c WHERE j.id = c.id"
        " RETURNING j.id, j.attempt, j.max_attempts, j.queue, j.kind, j.payload::text, j.timeout, j.errors",
        3 },

    /*
     * The pipelined finalize (RH_FINALIZE_CTES above).  Returns how many
     * rows matched; the rest were stale, and the second column lists their
     * ids (NULL when none, so the common case costs nothing) for the
     * worker's per-kind counters.
     */
    [RH_STMT_FINALIZE] = { RH_STMT_FINALIZE, "finalize",
        RH_FINALIZE_CTES
        " SELECT m.n, CASE WHEN m.n < (SELECT count(*) FROM f)"
        "                  THEN ARRAY(SELECT id FROM f EXCEPT SELECT id FROM d EXCEPT SELECT id FROM r) END"
        "   FROM (SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM r) AS n) m",
        6 },

    /*
     * The same inside a transactional batch: if any job is stale, raise
     * SQLSTATE RH409 so that the transaction, the handlers' writes with it,
     * cannot commit.
     */
    [RH_STMT_FINALIZE_TX] = { RH_STMT_FINALIZE_TX, "finalize_tx",
        RH_FINALIZE_CTES
        " SELECT rhino.stale_attempt((SELECT count(*) FROM f), (SELECT count(*) FROM d) + (SELECT count(*) FROM r))",
        6 },

    /* Where a job stands now: after an ambiguous commit, or a stale-attempt error. */
    [RH_STMT_JOB_STATES] = { RH_STMT_JOB_STATES, "job_states",
        "SELECT id, attempt, state::text, worker_id FROM rhino.all_jobs WHERE id = ANY($1::bigint[])",
        1 },

    /*
     * Give back claimed jobs whose handler never started (drain, lost
     * connection).  The attempt the claim took is returned too: the job did
     * not run, and attempt k was issued only to us, who give it up.
     */
    [RH_STMT_RELEASE] = { RH_STMT_RELEASE, "release",
        "UPDATE rhino.jobs j"
        "   SET state = 'available', attempt = j.attempt - 1, worker_id = NULL"
        "  FROM unnest($1::bigint[], $2::int[]) AS f(id, attempt)"
        " WHERE j.id = f.id AND j.attempt = f.attempt AND j.state = 'running'",
        2 },

    /*
     * After a lost connection the worker cannot know whether its last claim
     * committed.  In the same transaction that replays its pending
     * finalizes, it hands back everything else still running under its id.
     * The attempt stays consumed: the worker cannot tell what ran.
     */
    [RH_STMT_RELEASE_MINE] = { RH_STMT_RELEASE_MINE, "release_mine",
        "UPDATE rhino.jobs SET state = 'available', worker_id = NULL,"
        "       last_error = 'released after the worker lost its connection during attempt ' || attempt"
        " WHERE worker_id = $1 AND state = 'running'",
        1 },

    [RH_STMT_WORKER_REGISTER] = { RH_STMT_WORKER_REGISTER, "worker_register",
        "INSERT INTO rhino.workers (node_id, slot, generation, pid, lease_until)"
        " VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::float8)) RETURNING id",
        5 },

    [RH_STMT_WORKER_END] = { RH_STMT_WORKER_END, "worker_end",
        "UPDATE rhino.workers SET ended_at = now() WHERE id = $1 AND ended_at IS NULL",
        1 },

    [RH_STMT_WORKER_ALIVE] = { RH_STMT_WORKER_ALIVE, "worker_alive",
        "SELECT ended_at IS NULL AND lease_until > now() FROM rhino.workers WHERE id = $1",
        1 },

    [RH_STMT_SCHEMA_VERSION] = { RH_STMT_SCHEMA_VERSION, "schema_version",
        "SELECT coalesce(max(version), 0) FROM rhino.schema_migrations",
        0 },

    [RH_STMT_NODE_REGISTER] = { RH_STMT_NODE_REGISTER, "node_register",
        "INSERT INTO rhino.nodes (name, pid, lease_until)"
        " VALUES ($1, $2, now() + make_interval(secs => $3::float8)) RETURNING id",
        3 },

    /*
     * Renew the leases of this node and of its workers that the master sees
     * alive and not stopped ($3 slots, $4 their generations).  A worker
     * stopped with SIGSTOP, or a host that vanished, stops being renewed and
     * its jobs are rescued once its lease runs out.
     */
    [RH_STMT_LEASES_RENEW] = { RH_STMT_LEASES_RENEW, "leases_renew",
        "WITH n AS (UPDATE rhino.nodes SET lease_until = now() + make_interval(secs => $2::float8)"
        "            WHERE id = $1 AND stopped_at IS NULL)"
        " UPDATE rhino.workers w SET lease_until = now() + make_interval(secs => $2::float8)"
        "   FROM unnest($3::int[], $4::int[]) AS s(slot, gen)"
        "  WHERE w.node_id = $1 AND w.ended_at IS NULL AND w.slot = s.slot AND w.generation = s.gen",
        4 },

    /*
     * Jobs whose handler was running when its worker died ($3 says how:
     * a signal, an exit, a deadline).  Counted apart from handler errors;
     * at $4 crashes the job is discarded (a poison job must not take the
     * fleet down in a loop), below that it is retried after a backoff of
     * $5 * 2^crashes seconds, capped at $6, jittered.  Fenced by attempt.
     */
    [RH_STMT_CRASHED] = { RH_STMT_CRASHED, "crashed",
        "WITH r AS (SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[]) AS r(id, attempt, why)),"
        " q AS ("
        "  DELETE FROM rhino.jobs j USING r"
        "   WHERE j.id = r.id AND j.attempt = r.attempt AND j.state = 'running' AND j.crash_count + 1 >= $4"
        "  RETURNING j.id, j.queue, j.kind, j.payload, 'discarded'::rhino.job_state, j.priority, j.attempt,"
        "            j.max_attempts, j.run_at, j.created_at, j.attempted_at, j.crash_count + 1, j.errors,"
        "            'quarantined after ' || (j.crash_count + 1) || ' crash(es); last: ' || r.why),"
        " h AS ("
        "  INSERT INTO rhino.jobs_done (id, queue, kind, payload, state, priority, attempt, max_attempts,"
        "                               run_at, created_at, attempted_at, crash_count, errors, last_error)"
        "  SELECT * FROM q),"
        " u AS ("
        "  UPDATE rhino.jobs j"
        "     SET crash_count = j.crash_count + 1, state = 'retryable', worker_id = NULL,"
        "         run_at = now() + make_interval(secs => least($6::float8,"
        "                  $5::float8 * power(2, least(j.crash_count, 30))) * (0.5 + random() / 2)),"
        "         last_error = 'crash ' || (j.crash_count + 1) || ' of ' || $4 || ': ' || r.why"
        "    FROM r"
        "   WHERE j.id = r.id AND j.attempt = r.attempt AND j.state = 'running' AND j.crash_count + 1 < $4"
        "  RETURNING j.id)"
        " SELECT (SELECT count(*) FROM q), (SELECT count(*) FROM u)",
        6 },

    [RH_STMT_NODE_STOP] = { RH_STMT_NODE_STOP, "node_stop",
        "WITH w AS (UPDATE rhino.workers SET ended_at = now() WHERE node_id = $1 AND ended_at IS NULL)"
        " UPDATE rhino.nodes SET stopped_at = now() WHERE id = $1",
        1 },

    /*
     * The master's process table, seen by the reaper in shared memory, says
     * per slot the lowest generation that may still be alive.  Generations
     * only grow and the master publishes a slot's new generation before it
     * forks, so any row of this node with a lower generation is a dead
     * process, whatever the timing of its registration.
     */
    [RH_STMT_WORKERS_RECONCILE] = { RH_STMT_WORKERS_RECONCILE, "workers_reconcile",
        "UPDATE rhino.workers w SET ended_at = now()"
        "  FROM unnest($2::int[], $3::int[]) AS s(slot, min_live)"
        " WHERE w.node_id = $1 AND w.ended_at IS NULL AND w.slot = s.slot"
        "   AND w.generation < s.min_live",
        3 },

    /*
     * Make the running jobs of dead workers available again: workers that
     * ended, and workers whose lease ran out (a host that vanished, a
     * process stopped with SIGSTOP).
     * The update matches the attempt it read, so a job finalized or
     * re-claimed meanwhile is left alone.  The attempt stays consumed.
     */
    [RH_STMT_RESCUE] = { RH_STMT_RESCUE, "rescue",
        "WITH dead AS ("
        "  SELECT j.id, j.attempt FROM rhino.jobs j"
        "    LEFT JOIN rhino.workers w ON w.id = j.worker_id"
        "   WHERE j.state = 'running'"
        "     AND (w.id IS NULL OR w.ended_at IS NOT NULL OR w.lease_until < now())"
        "   LIMIT 10000"
        "   FOR UPDATE OF j SKIP LOCKED)"
        " UPDATE rhino.jobs j"
        "    SET state = 'available', worker_id = NULL,"
        "        last_error = 'worker died during attempt ' || j.attempt"
        "   FROM dead"
        "  WHERE j.id = dead.id AND j.attempt = dead.attempt AND j.state = 'running'",
        0 },

    [RH_STMT_PROMOTE] = { RH_STMT_PROMOTE, "promote",
        "UPDATE rhino.jobs j SET state = 'available'"
        "  FROM (SELECT id FROM rhino.jobs"
        "         WHERE state IN ('scheduled', 'retryable') AND run_at <= now()"
        "         ORDER BY run_at LIMIT 10000 FOR UPDATE SKIP LOCKED) due"
        " WHERE j.id = due.id",
        0 },

    /* Small batches, SKIP LOCKED: several hosts' reapers may prune at once. */
    [RH_STMT_PRUNE] = { RH_STMT_PRUNE, "prune",
        "DELETE FROM rhino.jobs_done d"
        " USING (SELECT id FROM rhino.jobs_done"
        "         WHERE finished_at < now() - make_interval(secs => least($1::float8, $2::float8))"
        "           AND ((state = 'completed' AND finished_at < now() - make_interval(secs => $1::float8))"
        "             OR (state <> 'completed' AND finished_at < now() - make_interval(secs => $2::float8)))"
        "         LIMIT 5000 FOR UPDATE SKIP LOCKED) old"
        " WHERE d.id = old.id",
        2 },

    /* Forget nodes gone for a day that have nothing left running. */
    [RH_STMT_GC_NODES] = { RH_STMT_GC_NODES, "gc_nodes",
        "DELETE FROM rhino.nodes n"
        " WHERE coalesce(n.stopped_at, n.lease_until) < now() - interval '1 day'"
        "   AND NOT EXISTS (SELECT 1 FROM rhino.jobs j JOIN rhino.workers w ON w.id = j.worker_id"
        "                    WHERE w.node_id = n.id AND j.state = 'running')",
        0 },

    /*
     * Queue depth and the age of the oldest due job, for GET /metrics: read
     * by the reaper every few seconds (one process per node, not per scrape)
     * from the jobs_claim partial index, which holds exactly these rows.
     */
    [RH_STMT_QUEUE_DEPTH] = { RH_STMT_QUEUE_DEPTH, "queue_depth",
        "SELECT queue, count(*), greatest(extract(epoch FROM now() - min(run_at)), 0)::float8"
        "  FROM rhino.jobs WHERE state = 'available' GROUP BY queue",
        0 },

    [RH_STMT_ENQUEUE] = { RH_STMT_ENQUEUE, "enqueue",
        "SELECT rhino.enqueue($1, $2::jsonb, $3, coalesce($4::timestamptz, now()), $5::int, $6::int)",
        6 },

    /*
     * Jobs per queue and state, and whether the queue is paused; a paused
     * queue without any job is one row with a NULL state and a count of 0.
     */
    [RH_STMT_STATS] = { RH_STMT_STATS, "stats",
        "WITH s AS ("
        "  SELECT queue, state::text AS state, count(*) AS n FROM rhino.jobs GROUP BY 1, 2"
        "  UNION ALL"
        "  SELECT queue, state::text, count(*) FROM rhino.jobs_done GROUP BY 1, 2)"
        " SELECT s.queue, s.state, s.n, coalesce(p.paused, false)"
        "   FROM s LEFT JOIN rhino.queues p ON p.name = s.queue"
        " UNION ALL"
        " SELECT p.name, NULL, 0, true FROM rhino.queues p"
        "  WHERE p.paused AND NOT EXISTS (SELECT 1 FROM s WHERE s.queue = p.name)"
        " ORDER BY 1, 2",
        0 },

    /*
     * rhinoctl enqueue --bulk: the run_at is resolved once, by the server's
     * clock, from an absolute timestamp ($1) or an interval from now ($2),
     * and returned as ISO 8601 in UTC so that it reads back the same under
     * any DateStyle; the second column says whether it is in the future.
     */
    [RH_STMT_CTL_RUN_AT] = { RH_STMT_CTL_RUN_AT, "ctl_run_at",
        "SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), t > now()"
        "  FROM (SELECT coalesce($1::timestamptz, now() + $2::interval, now())) AS s(t)",
        2 },

    [RH_STMT_CTL_COPY] = { RH_STMT_CTL_COPY, "ctl_copy",
        "COPY rhino.jobs (kind, queue, payload, priority, max_attempts, run_at, state) FROM STDIN",
        0 },

    /*
     * rhinoctl list: newest (highest id) first, filtered by queue $1, kind
     * $2, state $3 (NULL = any), at most $4 rows.  Both tables are read
     * backwards along their primary keys and merged, so the LIMIT stops
     * early.  The payload leaves the server only when asked for ($5): it
     * may hold personal data.
     */
    [RH_STMT_CTL_LIST] = { RH_STMT_CTL_LIST, "ctl_list",
        "SELECT id, queue, kind, state::text AS state, attempt, errors, crash_count, max_attempts, priority,"
        "       " RH_ISO("run_at") " AS run_at, " RH_ISO("created_at") " AS created_at,"
        "       " RH_ISO("finished_at") " AS finished_at, last_error,"
        "       CASE WHEN $5::bool THEN payload END AS payload"
        "  FROM rhino.all_jobs"
        " WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR kind = $2)"
        "   AND ($3::text IS NULL OR state = $3::rhino.job_state)"
        " ORDER BY id DESC LIMIT $4::int",
        5 },

    /* rhinoctl show: every column of one job, payload included. */
    [RH_STMT_CTL_SHOW] = { RH_STMT_CTL_SHOW, "ctl_show",
        "SELECT id, queue, kind, state::text AS state, attempt, errors, max_attempts, crash_count, priority,"
        "       " RH_ISO("run_at") " AS run_at, " RH_ISO("created_at") " AS created_at,"
        "       " RH_ISO("attempted_at") " AS attempted_at, " RH_ISO("finished_at") " AS finished_at,"
        "       worker_id, timeout, last_error, payload"
        "  FROM rhino.all_jobs WHERE id = $1::bigint",
        1 },

    /*
     * rhinoctl retry: move up to $6 finished jobs back into rhino.jobs as
     * available, with their error and crash counts reset.  Discarded ones,
     * and cancelled ones too if $4; one job ($1) or those of queue $2 and
     * kind $3 (NULL = any).  id, payload and attempt are kept: attempt must
     * keep growing, it is the fencing token.  Only jobs finished at or
     * before $5, the time the command started: a redriven job discarded
     * again meanwhile is not picked up a second time, so the loop ends.
     * One statement: the job is in exactly one of the tables at any time.
     */
    [RH_STMT_CTL_REDRIVE] = { RH_STMT_CTL_REDRIVE, "ctl_redrive",
        "WITH m AS ("
        "  DELETE FROM rhino.jobs_done d"
        "   USING (SELECT id FROM rhino.jobs_done"
        "           WHERE state IN ('discarded', 'cancelled') AND (state = 'discarded' OR $4::bool)"
        "             AND finished_at <= $5::timestamptz"
        "             AND ($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR queue = $2)"
        "             AND ($3::text IS NULL OR kind = $3)"
        "           ORDER BY finished_at LIMIT $6::int"
        "           FOR UPDATE SKIP LOCKED) s"
        "   WHERE d.id = s.id"
        "  RETURNING d.id, d.queue, d.kind, d.payload, d.priority, d.attempt, d.max_attempts,"
        "            d.created_at, d.attempted_at, d.last_error)"
        " INSERT INTO rhino.jobs (id, queue, kind, payload, state, priority, attempt, errors, max_attempts,"
        "                         run_at, created_at, attempted_at, crash_count, last_error)"
        " SELECT id, queue, kind, payload, 'available', priority, attempt, 0, max_attempts,"
        "        now(), created_at, attempted_at, 0, last_error FROM m",
        6 },

    /*
     * rhinoctl cancel: a job that has not started moves to the history as
     * cancelled.  A running job is left alone (no row returned): its worker
     * would not know.  Racing a claim is safe: the claim skips the row we
     * lock, and if the claim locked it first our DELETE re-reads it as
     * running and matches nothing.
     */
    [RH_STMT_CTL_CANCEL] = { RH_STMT_CTL_CANCEL, "ctl_cancel",
        "WITH c AS ("
        "  DELETE FROM rhino.jobs WHERE id = $1::bigint AND state IN ('available', 'scheduled', 'retryable')"
        "  RETURNING id, queue, kind, payload, priority, attempt, errors, max_attempts, run_at, created_at,"
        "            attempted_at, crash_count, last_error)"
        " INSERT INTO rhino.jobs_done (id, queue, kind, payload, state, priority, attempt, errors, max_attempts,"
        "                              run_at, created_at, attempted_at, crash_count, last_error)"
        " SELECT id, queue, kind, payload, 'cancelled', priority, attempt, errors, max_attempts, run_at,"
        "        created_at, attempted_at, crash_count, last_error FROM c"
        " RETURNING id",
        1 },

    /* rhinoctl pause: was it paused before, and since when it is. */
    [RH_STMT_CTL_PAUSE] = { RH_STMT_CTL_PAUSE, "ctl_pause",
        "WITH old AS (SELECT paused FROM rhino.queues WHERE name = $1)"
        " INSERT INTO rhino.queues AS q (name, paused, paused_at) VALUES ($1, true, now())"
        " ON CONFLICT (name) DO UPDATE"
        "   SET paused = true, paused_at = CASE WHEN q.paused THEN q.paused_at ELSE now() END"
        " RETURNING coalesce((SELECT paused FROM old), false), " RH_ISO("q.paused_at"),
        1 },

    /* rhinoctl resume: one row saying whether it was paused, or none for a queue never paused. */
    [RH_STMT_CTL_RESUME] = { RH_STMT_CTL_RESUME, "ctl_resume",
        "WITH old AS (SELECT paused FROM rhino.queues WHERE name = $1)"
        " UPDATE rhino.queues SET paused = false, paused_at = NULL WHERE name = $1"
        " RETURNING (SELECT paused FROM old)",
        1 },

    /* rhinoctl purge: one batch of $2 of the jobs finished before $1. */
    [RH_STMT_CTL_PURGE] = { RH_STMT_CTL_PURGE, "ctl_purge",
        "DELETE FROM rhino.jobs_done d"
        " USING (SELECT id FROM rhino.jobs_done WHERE finished_at < $1::timestamptz"
        "         LIMIT $2::int FOR UPDATE SKIP LOCKED) old"
        " WHERE d.id = old.id",
        2 },

    /*
     * rhinoctl top, per queue: live jobs by state and the age in seconds of
     * the oldest available one; completed and discarded jobs of the last
     * minute; finished jobs per second over the last $1 seconds.  The
     * history is read through jobs_done_finished, only the recent end.
     */
    [RH_STMT_CTL_TOP_QUEUES] = { RH_STMT_CTL_TOP_QUEUES, "ctl_top_queues",
        "WITH l AS ("
        "  SELECT queue,"
        "         count(*) FILTER (WHERE state = 'available') AS available,"
        "         count(*) FILTER (WHERE state = 'scheduled') AS scheduled,"
        "         count(*) FILTER (WHERE state = 'running') AS running,"
        "         count(*) FILTER (WHERE state = 'retryable') AS retryable,"
        "         extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'available'))::float8 AS oldest"
        "    FROM rhino.jobs GROUP BY queue),"
        " d AS ("
        "  SELECT queue,"
        "         count(*) FILTER (WHERE state = 'completed' AND finished_at > now() - interval '1 minute') AS completed,"
        "         count(*) FILTER (WHERE state = 'discarded' AND finished_at > now() - interval '1 minute') AS discarded,"
        "         count(*) FILTER (WHERE state <> 'cancelled'"
        "                            AND finished_at > now() - make_interval(secs => $1::float8)) AS recent"
        "    FROM rhino.jobs_done"
        "   WHERE finished_at > now() - greatest(interval '1 minute', make_interval(secs => $1::float8))"
        "   GROUP BY queue),"
        " lq AS ("
        "  SELECT coalesce(l.queue, d.queue) AS queue, l.available, l.scheduled, l.running, l.retryable, l.oldest,"
        "         d.completed, d.discarded, d.recent"
        "    FROM l FULL JOIN d ON d.queue = l.queue)"
        " SELECT coalesce(lq.queue, p.name), coalesce(lq.available, 0), coalesce(lq.scheduled, 0),"
        "        coalesce(lq.running, 0), coalesce(lq.retryable, 0), coalesce(lq.completed, 0),"
        "        coalesce(lq.discarded, 0), coalesce(lq.recent, 0) / $1::float8,"
        "        CASE WHEN lq.oldest IS NOT NULL THEN greatest(lq.oldest, 0) END,"
        "        coalesce(p.paused, false)"
        "   FROM lq FULL JOIN (SELECT name, paused FROM rhino.queues WHERE paused) p ON p.name = lq.queue"
        "  ORDER BY 1",
        1 },

    /* rhinoctl top: live workers per node, the jobs they run, the node's uptime in seconds. */
    [RH_STMT_CTL_TOP_NODES] = { RH_STMT_CTL_TOP_NODES, "ctl_top_nodes",
        "SELECT n.name, n.pid, count(*), coalesce(sum(r.n), 0),"
        "       extract(epoch FROM now() - n.started_at)::float8"
        "  FROM rhino.workers w JOIN rhino.nodes n ON n.id = w.node_id"
        "  CROSS JOIN LATERAL (SELECT count(*) AS n FROM rhino.jobs j"
        "                       WHERE j.worker_id = w.id AND j.state = 'running') r"
        " WHERE w.ended_at IS NULL AND w.lease_until > now()"
        " GROUP BY n.id ORDER BY n.name, n.id",
        0 },
};

const rh_stmt_t *
rh_sql(rh_stmt_id_t id)
{
    return &rh_stmts[id];
}
