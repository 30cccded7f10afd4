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

static const rh_stmt_t rh_stmts[RH_STMT__COUNT] = {

    /*
     * Claim up to $2 available jobs of the queues $1 for worker $3.
     * Per queue, a LATERAL subquery walks jobs_claim in index order and locks
     * with SKIP LOCKED; the outer ORDER BY merges the queues by priority.  The
     * CTE is MATERIALIZED so that the planner cannot re-run the LIMIT
     * subquery per updated row (and claim more than $2).  The worker row must
     * still be live: a worker that the reaper declared dead claims nothing.
     */
    [RH_STMT_CLAIM] = { RH_STMT_CLAIM, "claim",
        "WITH c AS MATERIALIZED ("
        "  SELECT j.id FROM unnest($1::text[]) AS q(name)"
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
     * Finalize a batch: arrays of (id, attempt, new state, retry delay in
     * seconds, error).  Completed/discarded rows leave rhino.jobs for
     * rhino.jobs_done in the same statement (completed ones only if $6, the
     * retention of completed jobs, is on); retryable rows stay with a new
     * run_at.  Returns how many rows matched; the rest were stale.
     */
    [RH_STMT_FINALIZE] = { RH_STMT_FINALIZE, "finalize",
        RH_FINALIZE_CTES
        " SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM r)",
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

    [RH_STMT_ENQUEUE] = { RH_STMT_ENQUEUE, "enqueue",
        "SELECT rhino.enqueue($1, $2::jsonb, $3, coalesce($4::timestamptz, now()), $5::int, $6::int)",
        6 },

    [RH_STMT_STATS] = { RH_STMT_STATS, "stats",
        "SELECT queue, state::text, count(*) FROM rhino.jobs GROUP BY 1, 2"
        " UNION ALL"
        " SELECT queue, state::text, count(*) FROM rhino.jobs_done GROUP BY 1, 2"
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
};

const rh_stmt_t *
rh_sql(rh_stmt_id_t id)
{
    return &rh_stmts[id];
}
