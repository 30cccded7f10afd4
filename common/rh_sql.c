/*
 * rh_sql.c - the statement table: all SQL text of the daemon and rhinoctl.
 *
 * Statements are sent with bound parameters, never spliced into text, and
 * without session state (SET, advisory locks), so that every connection can
 * sit behind PgBouncer in transaction mode.  The workers prepare theirs once
 * per connection ([database] prepare, worker/rh_worker.c send_query), named
 * "rhino_" and the name below; everyone else sends them unnamed.  LISTEN is
 * the master's alone (master/rh_listen.c).
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
 * The columns that travel unchanged with a job from rhino.jobs into
 * rhino.jobs_done (schema version 2), unqualified and qualified by j.
 */
#define RH_CARRIED   "unique_key, concurrency_key, timeout, cancel_requested_at"
#define RH_CARRIED_J "j.unique_key, j.concurrency_key, j.timeout, j.cancel_requested_at"

/*
 * Completed jobs go to the history as one row of rhino.jobs_done_batches
 * per statement, its columns arrays (sql/011_history_batches.sql: 4.7
 * instead of 7.3 ms per 1000 jobs, a row and a primary-key entry per job
 * being the cost).  RH_BATCH_INSERT(src, cond): the rows of CTE src that
 * satisfy cond, none when none does (HAVING: no empty batch row).  src has
 * the columns of RH_FINALIZE_CTES's d.
 */
#define RH_BATCH_INSERT(src, cond) \
        "  INSERT INTO rhino.jobs_done_batches (min_id, max_id, id, queue, kind, payload, priority, attempt," \
        "                                       errors, max_attempts, run_at, created_at, attempted_at," \
        "                                       crash_count, last_error, " RH_CARRIED ")" \
        "  SELECT min(id), max(id), array_agg(id), array_agg(queue), array_agg(kind), array_agg(payload)," \
        "         array_agg(priority), array_agg(attempt), array_agg(errors), array_agg(max_attempts)," \
        "         array_agg(run_at), array_agg(created_at), array_agg(attempted_at), array_agg(crash_count)," \
        "         array_agg(last_error), array_agg(unique_key), array_agg(concurrency_key), array_agg(timeout)," \
        "         array_agg(cancel_requested_at)" \
        "    FROM " src " WHERE " cond " HAVING count(*) > 0"

/*
 * The rows of src (a CTE of id, attempt and cur, 'running') that still run
 * that attempt, locked, with whether their cancellation was asked for.
 * Locked first so that the statement's DELETE and UPDATE decide on that
 * one value: see RH_FINALIZE_CTES.  Used there, by the releases and by the
 * crash report.
 */
#define RH_LOCK_CANCEL(src) \
        "  SELECT " src ".*, k.cancel FROM " src " CROSS JOIN LATERAL (" \
        "    SELECT j.cancel_requested_at IS NOT NULL AS cancel FROM rhino.jobs j" \
        "     WHERE j.id = " src ".id AND j.attempt = " src ".attempt AND j.state = " src ".cur FOR UPDATE) k"

/*
 * Finalize a batch: arrays of (id, attempt, new state, retry delay in
 * seconds, error).  Completed/discarded rows leave rhino.jobs for
 * rhino.jobs_done in the same statement (completed ones only if $6, the
 * retention of completed jobs, is on); retryable rows stay with a new
 * run_at; 'scheduled' is a snooze (RHINO_SNOOZE): the job runs again after
 * the delay, its error count untouched.  A job whose cancellation was
 * requested while it ran (rhino.cancel) is never retried or snoozed: unless
 * it completed, it goes to the history as cancelled.  Every failure is also
 * kept in rhino.job_errors.  The final SELECT of each variant counts the
 * rows that matched; the rest were stale.
 *
 * The fence compares j.state with f.cur, a column of the materialized CTE
 * that is always 'running', instead of with the literal.  With the literal,
 * `state = 'running'` is a restriction on rhino.jobs alone: the planner
 * estimates it from statistics taken when few or no jobs were running (one
 * row), matches it to the jobs_running partial index, and builds a nested
 * loop that rescans all 1000 rows of f for each running job: a million
 * comparisons and 0.5 to 4 s per batch (measured: a 100k drain ran at 1.6k
 * jobs/s).  As a join clause it is not a restriction, so the plan walks f
 * and probes the primary key once per job (10 ms per 1000; 22-40k jobs/s).
 *
 * Whether a retry or a snooze becomes a cancellation is read from l, which
 * locks those rows first, and not from a condition on j in d, r and s.
 * Each of them tests a row's version in the statement's snapshot, and,
 * when another transaction changed the row after that snapshot, its newest
 * version again (EvalPlanQual).  A rhino.cancel committed in between made
 * the snapshot's version fail d (no cancel yet) and the newest fail r (a
 * cancel): neither took the row, which stayed running under a live worker
 * that had counted it stale.  The lock returns the newest version, so the
 * three decide on one value; a cancel after it waits for this transaction.
 */
#define RH_FINALIZE_CTES \
        "WITH a AS MATERIALIZED (" \
        "  SELECT *, 'running'::rhino.job_state AS cur" \
        "    FROM unnest($1::bigint[], $2::int[], $3::rhino.job_state[], $4::float8[], $5::text[])" \
        "      AS a(id, attempt, state, delay, err))," \
        " l AS MATERIALIZED (" RH_LOCK_CANCEL("a") " WHERE a.state IN ('retryable', 'scheduled'))," \
        " f AS MATERIALIZED (" \
        "  SELECT a.*, coalesce(l.cancel, false) AS cancel FROM a LEFT JOIN l ON l.id = a.id)," \
        " d AS (" \
        "  DELETE FROM rhino.jobs j USING f" \
        "   WHERE j.id = f.id AND j.attempt = f.attempt AND j.state = f.cur" \
        "     AND (f.state IN ('completed', 'discarded') OR f.cancel)" \
        "  RETURNING j.id, j.queue, j.kind, j.payload," \
        "            CASE WHEN f.state = 'completed' OR j.cancel_requested_at IS NULL THEN f.state" \
        "                 ELSE 'cancelled' END AS state," \
        "            j.priority, j.attempt, j.max_attempts, j.run_at, j.created_at, j.attempted_at, j.crash_count," \
        "            j.errors + (f.state IN ('discarded', 'retryable'))::int AS errors," \
        "            coalesce(f.err, CASE WHEN f.state <> 'completed' AND j.cancel_requested_at IS NOT NULL" \
        "                                 THEN 'cancelled while running' END, j.last_error) AS last_error," \
        "            " RH_CARRIED_J ")," \
        " h AS (" \
        "  INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, max_attempts," \
        "                                    run_at, created_at, attempted_at, crash_count, errors, last_error," \
        "                                    " RH_CARRIED ")" \
        "  SELECT * FROM d WHERE d.state <> 'completed')," \
        " hb AS (" RH_BATCH_INSERT("d", "d.state = 'completed' AND $6::bool") ")," \
        " r AS (" \
        "  UPDATE rhino.jobs j" \
        "     SET state = CASE WHEN f.delay > 0 THEN 'retryable' ELSE 'available' END::rhino.job_state," \
        "         run_at = now() + make_interval(secs => f.delay)," \
        "         last_error = f.err, worker_id = NULL, errors = j.errors + 1" \
        "    FROM f" \
        "   WHERE j.id = f.id AND j.attempt = f.attempt AND j.state = f.cur" \
        "     AND f.state = 'retryable' AND NOT f.cancel" \
        "  RETURNING j.id)," \
        " s AS (" \
        "  UPDATE rhino.jobs j" \
        "     SET state = CASE WHEN f.delay > 0 THEN 'scheduled' ELSE 'available' END::rhino.job_state," \
        "         run_at = now() + make_interval(secs => f.delay), worker_id = NULL" \
        "    FROM f" \
        "   WHERE j.id = f.id AND j.attempt = f.attempt AND j.state = f.cur" \
        "     AND f.state = 'scheduled' AND NOT f.cancel" \
        "  RETURNING j.id)," \
        " e AS (" \
        "  INSERT INTO rhino.job_errors (job_id, attempt, kind, error)" \
        "  SELECT f.id, f.attempt, 'error', f.err FROM f" \
        "   WHERE f.state IN ('retryable', 'discarded')" \
        "     AND f.id IN (SELECT id FROM d UNION ALL SELECT id FROM r)" \
        "  ON CONFLICT DO NOTHING)"

/*
 * A timestamptz as ISO 8601 in UTC ("2030-01-01T12:00:00.000000Z"), the same
 * under any DateStyle and TimeZone: rhinoctl's --json output is an interface.
 */
#define RH_ISO(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/*
 * The two statements for a batch where every job completed
 * (RH_STMT_FINALIZE_DONE[_KEEP]): the fenced (id, attempt) pairs, and what
 * the worker reads back (rows matched, ids of the stale ones), as for
 * RH_STMT_FINALIZE.
 */
#define RH_DONE_F \
        "WITH f AS MATERIALIZED (" \
        "  SELECT *, 'running'::rhino.job_state AS cur FROM unnest($1::bigint[], $2::int[]) AS f(id, attempt)),"
/*
 * Their fence, as a restriction on the DELETE: the ctids of the rows that
 * still run the attempt, each found by one probe of the primary key per
 * outcome.  Written so that the plan cannot depend on the statistics (they
 * run as generic plans, RH_STMT_PLANS_GENERIC): LIMIT 1 keeps the LATERAL
 * subquery from being flattened into a join whose order the planner would
 * choose (for a table it believes empty: a walk of all of jobs_pkey with f
 * rescanned per row), f.cur keeps jobs_running out (see RH_FINALIZE_CTES),
 * and ctid = ANY is a TID scan.  A row another transaction updated after
 * our snapshot has a new ctid, not in the array: the DELETE's recheck
 * skips it, and RH_DONE_AGAIN looks for it once more.
 */
#define RH_DONE_MATCH \
        " WHERE j.ctid = ANY (ARRAY(SELECT x.tid FROM f CROSS JOIN LATERAL" \
        "                            (SELECT k.ctid AS tid FROM rhino.jobs k" \
        "                              WHERE k.id = f.id AND k.attempt = f.attempt AND k.state = f.cur" \
        "                              LIMIT 1) x))"
/*
 * d2: the rows of f that d did not delete, by id this time, fenced again
 * on the newest version.  Not only a rescue moves a running row: rhino.cancel
 * (cancel_requested_at) and the queue limits (counted) update it too, and
 * such a row, completed by its handler, had been counted stale and left
 * running under its live worker, to run again once that worker ended.
 * Found by id, the recheck reads the row's newest version and deletes it
 * if it still runs the attempt; a rescued row fails it and stays stale.
 * Only when d came back short (the one-time filter): the common batch
 * pays two counts.  The attempt is looked up in f per row, which is slow
 * only for many missed rows, as after a mass rescue.
 */
#define RH_DONE_AGAIN(ret) \
        " d2 AS (DELETE FROM rhino.jobs j" \
        "   WHERE (SELECT count(*) FROM d) < (SELECT count(*) FROM f)" \
        "     AND j.id = ANY (ARRAY(SELECT id FROM f EXCEPT SELECT id FROM d))" \
        "     AND j.attempt = (SELECT f.attempt FROM f WHERE f.id = j.id AND j.state = f.cur LIMIT 1)" \
        "  RETURNING " ret ")"
/* what RH_STMT_FINALIZE_DONE_KEEP's d and d2 return: the columns the history's batch row takes */
#define RH_DONE_KEPT \
        "j.id, j.queue, j.kind, j.payload, j.priority, j.attempt, j.max_attempts, j.run_at," \
        " j.created_at, j.attempted_at, j.crash_count, j.errors, j.last_error, " RH_CARRIED_J
#define RH_DONE_COUNT \
        " SELECT m.n, CASE WHEN m.n < (SELECT count(*) FROM f)" \
        "                  THEN ARRAY(SELECT id FROM f EXCEPT SELECT id FROM d EXCEPT SELECT id FROM d2) END" \
        "   FROM (SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM d2) AS n) m"

/*
 * CTEs c and h: the rows of rhino.jobs joined to using that satisfy where
 * leave for the history as cancelled, with attempt and last_error as given.
 * For a job whose cancellation was asked for (rhino.cancel) while it was
 * claimed: it is never made available again, by a rescue or a release.
 */
#define RH_CANCELLED(using, where, attempt, why) \
        " c AS (" \
        "  DELETE FROM rhino.jobs j USING " using \
        "   WHERE " where \
        "  RETURNING j.id, j.queue, j.kind, j.payload, 'cancelled'::rhino.job_state, j.priority, " attempt "," \
        "            j.max_attempts, j.run_at, j.created_at, j.attempted_at, j.crash_count, j.errors," \
        "            " why ", " RH_CARRIED_J ")," \
        " h AS (" \
        "  INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, max_attempts," \
        "                                    run_at, created_at, attempted_at, crash_count, errors, last_error," \
        "                                    " RH_CARRIED ")" \
        "  SELECT * FROM c)"

/*
 * The rescue of the jobs in CTE dead (tid, attempt, cancel: rows it locked),
 * by RH_STMT_RESCUE and RH_STMT_RESCUE_ORPHANS: available again, or, if
 * their cancellation was asked for, into the history as cancelled.  The
 * rows are found where dead locked them (ctid = ANY, a TID scan, as the
 * claim): joined to dead by id, the planner walked jobs_running first, every
 * entry a drain had left in it since the last vacuum, even when dead was
 * empty, twice a pass.  The lock keeps a row where it was found, with the
 * attempt it read, until this statement ends; the join on (ctid, attempt)
 * and the state stay all the same, as the fence every transition states.
 */
#define RH_RESCUE_TAIL \
        " u AS (" \
        "  UPDATE rhino.jobs j" \
        "     SET state = 'available', worker_id = NULL," \
        "         last_error = 'worker died during attempt ' || j.attempt" \
        "    FROM dead" \
        "   WHERE j.ctid = ANY (ARRAY(SELECT tid FROM dead WHERE NOT cancel))" \
        "     AND j.ctid = dead.tid AND j.attempt = dead.attempt AND j.state = 'running'" \
        "  RETURNING j.id)," \
        /* a job whose cancellation was asked for is not run again */ \
        RH_CANCELLED("dead", "j.ctid = ANY (ARRAY(SELECT tid FROM dead WHERE cancel))" \
                     " AND j.ctid = dead.tid AND j.attempt = dead.attempt AND j.state = 'running'", \
                     "j.attempt", "'cancelled while running; its worker died during attempt ' || j.attempt") \
        " SELECT id FROM u UNION ALL SELECT id FROM c"

/*
 * The claim's two halves, shared by RH_STMT_CLAIM and RH_STMT_CLAIM_LIMITED.
 * RH_CLAIM_PICK(n): the ctids of up to n available jobs of the queues $1 (not
 * paused, not limited), locked, for live worker $3.  RH_CLAIM_SET: the
 * UPDATE's tail that takes them, found by ctid, and what it returns to the
 * worker.  Why each piece is as it is: RH_STMT_CLAIM.
 */
#define RH_CLAIM_PICK(n) RH_CLAIM_PICK_Q("unnest($1::text[]) AS u(name)", "", n)
/* Both picks: the queues come from unnest (as u, with a column name), the walk's extra condition is after. */
#define RH_CLAIM_PICK_Q(unnest, after, n) \
        "  SELECT j.tid FROM (SELECT u.* FROM " unnest \
        "                     WHERE NOT EXISTS (SELECT 1 FROM rhino.queues p" \
        "                                        WHERE p.name = u.name AND (p.paused OR p.limited))) AS q" \
        "  CROSS JOIN LATERAL (" \
        "    SELECT ctid AS tid, id, priority, run_at FROM rhino.jobs" \
        "     WHERE state = 'available' AND queue = q.name AND run_at <= now()" after \
        "     ORDER BY priority, run_at, id" \
        "     LIMIT $2" \
        "     FOR UPDATE SKIP LOCKED) j" \
        "  WHERE EXISTS (SELECT 1 FROM rhino.workers w" \
        "                 WHERE w.id = $3 AND w.ended_at IS NULL AND w.lease_until > now())" \
        "  ORDER BY j.priority, j.run_at, j.id" \
        "  LIMIT " n
#define RH_CLAIM_SET \
        "    SET state = 'running', attempt = j.attempt + 1, attempted_at = now(), worker_id = $3" \
        "  WHERE j.ctid = ANY (ARRAY(SELECT tid FROM c))" \
        " RETURNING j.id, j.attempt, j.max_attempts, j.queue, j.kind, j.payload::text AS payload, j.timeout," \
        "           j.errors, j.priority, j.run_at"
/* what the worker reads of u, the UPDATE: the batch in the order it was picked */
#define RH_CLAIM_OUT \
        "SELECT id, attempt, max_attempts, queue, kind, payload, timeout, errors FROM u ORDER BY priority, run_at, id"
/*
 * RH_STMT_CLAIM's: the same, and the rest of each job's key in jobs_claim
 * (columns 8 and 9: priority, run_at; the id is column 0), from which the
 * worker takes where its next claim of the queue starts.  run_at in the
 * session's own text form, which the worker uses only when DateStyle is
 * ISO: then it carries its offset as digits and reads back as the same
 * instant ('infinity' included).  to_json(run_at) would be exact under any
 * DateStyle, but cost 0.5-1 ms per 1000 jobs, about a tenth of the claim.
 */
#define RH_CLAIM_OUT_KEY \
        "SELECT id, attempt, max_attempts, queue, kind, payload, timeout, errors, priority, run_at" \
        "  FROM u ORDER BY priority, run_at, id"
/*
 * RH_CLAIM_PICK with a start per queue: $4, $5 and $6 are arrays in the
 * order of $1 holding the key (priority, run_at, id) from which that
 * queue's walk of jobs_claim begins; NULL (a NULL array, or a NULL element)
 * starts at the queue's first entry, as RH_CLAIM_PICK does.  Why: every
 * job claimed leaves its entry in jobs_claim until VACUUM removes it, and
 * those entries are the oldest, in front of every walk.  Killed (LP_DEAD)
 * entries cost no heap visit, but their pages are still read: 200,000 of
 * them made picking 1000 jobs take 19 ms instead of 1.5, so a long drain
 * slowed as it went (1M jobs: 73.5k jobs/s against 99k for 250k).  The
 * worker starts from its last full batch's last key and comes back to the
 * first entry every [worker] rescan_interval, and whenever a claim comes
 * back short (rh_worker.c, "Where a claim starts").  The row comparison is
 * the walk's start in the index (Index Cond), in the generic plan too.
 */
#define RH_CLAIM_PICK_FROM(n) \
        RH_CLAIM_PICK_Q("unnest($1::text[], $4::int[], $5::timestamptz[], $6::int8[]) AS u(name, wp, wr, wi)", \
                        "       AND (priority, run_at, id) >= (coalesce(q.wp, -32768), coalesce(q.wr, '-infinity')," \
                        "                                      coalesce(q.wi, -9223372036854775808))", n)

/*
 * The queues with available jobs and the run_at of each one's oldest, as
 * two CTEs after WITH RECURSIVE: p, the (queue, priority) pairs of
 * jobs_claim, found by a skip scan (one index probe per pair, whatever the
 * backlog); q(queue, oldest), one more probe per pair, the oldest over a
 * queue's priorities.  Shared by the queue gauge and rhinoctl top, which
 * must both cost the same with 10M queued as with 10k.
 */
#define RH_QUEUES_OLDEST \
        "p(queue, priority) AS (" \
        "  (SELECT queue, priority FROM rhino.jobs WHERE state = 'available' ORDER BY queue, priority LIMIT 1)" \
        "  UNION ALL" \
        "  SELECT n.queue, n.priority FROM p CROSS JOIN LATERAL (" \
        "    SELECT j.queue, j.priority FROM rhino.jobs j" \
        "     WHERE j.state = 'available' AND (j.queue, j.priority) > (p.queue, p.priority)" \
        "     ORDER BY j.queue, j.priority LIMIT 1) n)," \
        " q AS (" \
        "  SELECT p.queue, min(o.run_at) AS oldest FROM p CROSS JOIN LATERAL (" \
        "    SELECT j.run_at FROM rhino.jobs j" \
        "     WHERE j.state = 'available' AND j.queue = p.queue AND j.priority = p.priority" \
        "     ORDER BY j.run_at LIMIT 1) o" \
        "   GROUP BY p.queue)"

static const rh_stmt_t rh_stmts[RH_STMT__COUNT] = {

    /*
     * Claim up to $2 available jobs of the queues $1 for worker $3, each
     * queue's walk starting at its key in $4-$6 (RH_CLAIM_PICK_FROM).
     * Per queue, a LATERAL subquery walks jobs_claim in index order and locks
     * with SKIP LOCKED; the outer ORDER BY merges the queues by priority.  The
     * CTE is MATERIALIZED so that the planner cannot re-run the LIMIT
     * subquery per updated row (and claim more than $2).  The worker row must
     * still be live: a worker that the reaper declared dead claims nothing.
     * Paused queues (rhino.queues, rhinoctl pause) drop out of the list
     * first: one primary key lookup per queue per claim, not one per row.
     * Queues with limits drop out in the same lookup: they are claimed only
     * by RH_STMT_CLAIM_LIMITED (below, queue limits), which workers send
     * instead of this one while the reaper sees such a queue among theirs.
     * The UPDATE finds the locked rows by ctid (a TID scan), not by a second
     * walk down the primary key: 1.2 ms less per 1000 jobs.  A row locked
     * here cannot move before the UPDATE, which is in the same statement;
     * had a concurrent update moved it before the lock, the lock follows it
     * to its newest version, whose ctid is the one returned (and were it
     * not, the UPDATE would match nothing for that row: one job fewer in
     * this batch, still available, never claimed twice).
     */
    [RH_STMT_CLAIM] = { RH_STMT_CLAIM, "claim",
        "WITH c AS MATERIALIZED (" RH_CLAIM_PICK_FROM("$2") "),"
        " u AS (UPDATE rhino.jobs j" RH_CLAIM_SET ")"
        " " RH_CLAIM_OUT_KEY,
        6, 1 },

    /*
     * The pipelined finalize (RH_FINALIZE_CTES above).  Returns how many
     * rows matched; the rest were stale, and the second column lists their
     * ids (NULL when none, so the common case costs nothing) for the
     * worker's per-kind counters.
     */
    [RH_STMT_FINALIZE] = { RH_STMT_FINALIZE, "finalize",
        RH_FINALIZE_CTES
        " SELECT m.n, CASE WHEN m.n < (SELECT count(*) FROM f)"
        "                  THEN ARRAY(SELECT id FROM f EXCEPT SELECT id FROM d EXCEPT SELECT id FROM r"
        "                             EXCEPT SELECT id FROM s) END"
        "   FROM (SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM r) + (SELECT count(*) FROM s) AS n) m",
        6 },

    /*
     * The same inside a transactional batch: if any job is stale, raise
     * SQLSTATE RH409 so that the transaction, the handlers' writes with it,
     * cannot commit.
     */
    [RH_STMT_FINALIZE_TX] = { RH_STMT_FINALIZE_TX, "finalize_tx",
        RH_FINALIZE_CTES
        " SELECT rhino.stale_attempt((SELECT count(*) FROM f),"
        "                            (SELECT count(*) FROM d) + (SELECT count(*) FROM r) + (SELECT count(*) FROM s))",
        6 },

    /*
     * The common case, a batch whose every job completed: two arrays to
     * parse instead of five, no retry branch.  _DONE forgets the jobs
     * ([retention] completed = 0); _DONE_KEEP moves them to the history.
     * Measured on a 100k drain against the general statement: 30 instead of
     * 36 us of database CPU per job without history.
     */
    [RH_STMT_FINALIZE_DONE] = { RH_STMT_FINALIZE_DONE, "finalize_done",
        RH_DONE_F
        " d AS (DELETE FROM rhino.jobs j" RH_DONE_MATCH " RETURNING j.id),"
        RH_DONE_AGAIN("j.id")
        RH_DONE_COUNT,
        2, 1 },

    [RH_STMT_FINALIZE_DONE_KEEP] = { RH_STMT_FINALIZE_DONE_KEEP, "finalize_done_keep",
        RH_DONE_F
        " d AS (DELETE FROM rhino.jobs j" RH_DONE_MATCH " RETURNING " RH_DONE_KEPT "),"
        RH_DONE_AGAIN(RH_DONE_KEPT) ","
        " h AS (" RH_BATCH_INSERT("(SELECT * FROM d UNION ALL SELECT * FROM d2) dd", "true") ")"
        RH_DONE_COUNT,
        2, 1 },

    /* Where a job stands now: after an ambiguous commit, or a stale-attempt error. */
    [RH_STMT_JOB_STATES] = { RH_STMT_JOB_STATES, "job_states",
        "SELECT id, attempt, state::text, worker_id FROM rhino.jobs WHERE id = ANY($1::bigint[])"
        " UNION ALL"
        " SELECT id, attempt, state::text, NULL FROM rhino.jobs_done_by_id($1::bigint[])",
        1 },

    /*
     * Give back claimed jobs whose handler never started (drain, lost
     * connection).  The attempt the claim took is returned too: the job did
     * not run, and attempt k was issued only to us, who give it up.  A job
     * whose cancellation was asked for meanwhile goes to the history as
     * cancelled instead; l locks the rows first so that the UPDATE and the
     * DELETE decide on the same value (see RH_FINALIZE_CTES).
     */
    [RH_STMT_RELEASE] = { RH_STMT_RELEASE, "release",
        "WITH f AS MATERIALIZED ("
        "  SELECT *, 'running'::rhino.job_state AS cur FROM unnest($1::bigint[], $2::int[]) AS f(id, attempt)),"
        " l AS MATERIALIZED (" RH_LOCK_CANCEL("f") "),"
        " u AS ("
        "  UPDATE rhino.jobs j"
        "     SET state = 'available', attempt = j.attempt - 1, worker_id = NULL"
        "    FROM l"
        "   WHERE j.id = l.id AND j.attempt = l.attempt AND j.state = l.cur AND NOT l.cancel"   /* l.cur: see RH_FINALIZE_CTES */
        "  RETURNING j.id),"
        RH_CANCELLED("l", "j.id = l.id AND j.attempt = l.attempt AND j.state = l.cur AND l.cancel",
                     "j.attempt - 1", "'cancelled before it started'")
        " SELECT id FROM u UNION ALL SELECT id FROM c",
        2 },

    /*
     * After a lost connection the worker cannot know whether its last claim
     * committed.  In the same transaction that replays its pending
     * finalizes, it hands back everything else still running under its id.
     * The attempt stays consumed: the worker cannot tell what ran.  A job
     * whose cancellation was asked for goes to the history as cancelled, as
     * RH_STMT_RELEASE does.
     */
    [RH_STMT_RELEASE_MINE] = { RH_STMT_RELEASE_MINE, "release_mine",
        "WITH l AS MATERIALIZED ("
        "  SELECT j.id, j.attempt, j.state AS cur, j.cancel_requested_at IS NOT NULL AS cancel FROM rhino.jobs j"
        "   WHERE j.worker_id = $1 AND j.state = 'running' FOR UPDATE),"
        " u AS ("
        "  UPDATE rhino.jobs j SET state = 'available', worker_id = NULL,"
        "         last_error = 'released after the worker lost its connection during attempt ' || j.attempt"
        "    FROM l"
        "   WHERE j.id = l.id AND j.attempt = l.attempt AND j.state = l.cur AND NOT l.cancel"
        "  RETURNING j.id),"
        RH_CANCELLED("l", "j.id = l.id AND j.attempt = l.attempt AND j.state = l.cur AND l.cancel",
                     "j.attempt", "'cancelled while claimed; its worker lost its connection during attempt ' || j.attempt")
        " SELECT id FROM u UNION ALL SELECT id FROM c",
        1 },

    [RH_STMT_WORKER_REGISTER] = { RH_STMT_WORKER_REGISTER, "worker_register",
        "INSERT INTO rhino.workers (node_id, slot, generation, pid, lease_until)"
        " VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::float8)) RETURNING id",
        5 },

    [RH_STMT_WORKER_END] = { RH_STMT_WORKER_END, "worker_end",
        "UPDATE rhino.workers SET ended_at = now() WHERE id = $1 AND ended_at IS NULL",
        1 },

    /*
     * How a worker that prepares its statements ([database] prepare) has
     * them planned: one of these two precedes a statement whenever the
     * transaction is not yet in the mode the statement asks for (the
     * generic field above).  Both turn sequential scans off: no worker
     * statement wants one on rhino.jobs, and with them off the shapes marked
     * generic admit a single plan.
     *
     * Why not leave it to PostgreSQL: after five executions it switches a
     * prepared statement to a generic plan, and keeps it until the table is
     * analyzed again; one made while rhino.jobs was empty (a worker starting
     * on an idle queue) reads the whole table for every claim once a burst
     * arrives, a sequential scan and sort instead of jobs_claim, a nested
     * loop over it for the UPDATE.  Why not custom plans throughout:
     * planning the claim costs 0.43 ms and the finalize about as much,
     * every round; a round of one job pays it in full, and a trickle's
     * pickup p50 was 3.1-3.6 ms with custom plans against 1.42-1.56 ms with
     * these, alternated in the same minutes.
     *
     * Generic: the claim (jobs_claim for the pick, a TID scan for the
     * UPDATE), the finalize of a batch that all completed (a primary key
     * probe per job, a TID scan), the liveness check.  Custom: the rest,
     * which are rarer (failures, releases, reconnects) and join by id.
     * Both are local to the transaction, so that they never outlive it on a
     * pooled server connection.
     *
     * Both turn JIT compilation off as well.  A generic plan cannot know
     * the claim's LIMIT, so on a large table it is costed as if it read a
     * good part of it: with 10M jobs queued the claim's estimate passed
     * PostgreSQL's jit_optimize_above_cost, and every claim spent 170-210 ms
     * compiling (EXPLAIN ANALYZE: 8 ms without), which cut the drain from
     * 86k to 10k jobs/s (rhino-bench scale).  None of these statements runs
     * long enough for compiled expressions to pay back.
     */
    [RH_STMT_PLANS_GENERIC] = { RH_STMT_PLANS_GENERIC, "plans_generic",
        "SELECT set_config('plan_cache_mode', 'force_generic_plan', true),"
        "       set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)", 0 },

    [RH_STMT_PLANS_CUSTOM] = { RH_STMT_PLANS_CUSTOM, "plans_custom",
        "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
        "       set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)", 0 },

    [RH_STMT_WORKER_ALIVE] = { RH_STMT_WORKER_ALIVE, "worker_alive",
        "SELECT ended_at IS NULL AND lease_until > now() FROM rhino.workers WHERE id = $1",
        1, 1 },

    [RH_STMT_SCHEMA_VERSION] = { RH_STMT_SCHEMA_VERSION, "schema_version",
        "SELECT coalesce(max(version), 0) FROM rhino.schema_migrations",
        0 },

    [RH_STMT_NODE_REGISTER] = { RH_STMT_NODE_REGISTER, "node_register",
        "INSERT INTO rhino.nodes (name, pid, lease_until)"
        " VALUES ($1, $2, now() + make_interval(secs => $3::float8)) RETURNING id",
        3 },

    /*
     * Renew the leases of this node and of its workers that the master sees
     * alive and not stopped ($3 slots, $4 their generations), and say which
     * queues the node serves ($5, for rhino.wake: sql/010_wake_by_queue.sql).  A worker
     * stopped with SIGSTOP, or a host that vanished, stops being renewed and
     * its jobs are rescued once its lease runs out.
     */
    [RH_STMT_LEASES_RENEW] = { RH_STMT_LEASES_RENEW, "leases_renew",
        "WITH n AS (UPDATE rhino.nodes SET lease_until = now() + make_interval(secs => $2::float8),"
        "                                  queues = $5::text[]"
        "            WHERE id = $1 AND stopped_at IS NULL)"
        " UPDATE rhino.workers w SET lease_until = now() + make_interval(secs => $2::float8)"
        "   FROM unnest($3::int[], $4::int[]) AS s(slot, gen)"
        "  WHERE w.node_id = $1 AND w.ended_at IS NULL AND w.slot = s.slot AND w.generation = s.gen",
        5 },

    /*
     * Jobs whose handler was running when its worker died ($3 says how:
     * a signal, an exit, a deadline).  Counted apart from handler errors;
     * at $4 crashes the job is discarded (a poison job must not take the
     * fleet down in a loop), below that it is retried after a backoff of
     * $5 * 2^crashes seconds, capped at $6, jittered.  Fenced by attempt.
     * Whether a job was cancelled is read from r, which locks the rows
     * first, as in RH_FINALIZE_CTES: a cancel committed after the snapshot
     * failed both the DELETE and the UPDATE: the crash went uncounted, and
     * the job waited for the rescue.
     */
    [RH_STMT_CRASHED] = { RH_STMT_CRASHED, "crashed",
        "WITH a AS MATERIALIZED (SELECT *, 'running'::rhino.job_state AS cur"
        "                          FROM unnest($1::bigint[], $2::int[], $3::text[]) AS a(id, attempt, why)),"
        " r AS MATERIALIZED (" RH_LOCK_CANCEL("a") "),"
        " q AS ("
        "  DELETE FROM rhino.jobs j USING r"
        "   WHERE j.id = r.id AND j.attempt = r.attempt AND j.state = r.cur"
        "     AND (j.crash_count + 1 >= $4 OR r.cancel)"
        "  RETURNING j.id, j.queue, j.kind, j.payload,"
        "            CASE WHEN j.cancel_requested_at IS NULL THEN 'discarded' ELSE 'cancelled' END::rhino.job_state"
        "              AS state,"
        "            j.priority, j.attempt,"
        "            j.max_attempts, j.run_at, j.created_at, j.attempted_at, j.crash_count + 1, j.errors,"
        "            CASE WHEN j.cancel_requested_at IS NULL"
        "                 THEN 'quarantined after ' || (j.crash_count + 1) || ' crash(es); last: ' || r.why"
        "                 ELSE 'cancelled while running; the worker was stopped: ' || r.why END,"
        "            " RH_CARRIED_J "),"
        " h AS ("
        "  INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, max_attempts,"
        "                                    run_at, created_at, attempted_at, crash_count, errors, last_error,"
        "                                    " RH_CARRIED ")"
        "  SELECT * FROM q),"
        " u AS ("
        "  UPDATE rhino.jobs j"
        "     SET crash_count = j.crash_count + 1, state = 'retryable', worker_id = NULL,"
        "         run_at = now() + make_interval(secs => least($6::float8,"
        "                  $5::float8 * power(2, least(j.crash_count, 30))) * (0.5 + random() / 2)),"
        "         last_error = 'crash ' || (j.crash_count + 1) || ' of ' || $4 || ': ' || r.why"
        "    FROM r"
        "   WHERE j.id = r.id AND j.attempt = r.attempt AND j.state = r.cur AND j.crash_count + 1 < $4"
        "     AND NOT r.cancel"
        "  RETURNING j.id),"
        " e AS ("
        "  INSERT INTO rhino.job_errors (job_id, attempt, kind, error)"
        "  SELECT r.id, r.attempt, 'crash', r.why FROM r"
        "   WHERE r.id IN (SELECT id FROM q UNION ALL SELECT id FROM u)"
        "  ON CONFLICT DO NOTHING)"
        " SELECT (SELECT count(*) FROM q WHERE state = 'discarded'), (SELECT count(*) FROM u),"
        "        (SELECT count(*) FROM q WHERE state = 'cancelled')",
        6 },

    /*
     * Jobs whose handler was running when the master killed its worker at
     * the stop's own deadline ([master] shutdown_timeout after SIGTERM,
     * fast_shutdown_timeout after SIGINT, or at once on a second stop
     * signal; $3 says which, and becomes last_error).  Rhino cut the run
     * short, not the job: no crash is counted, no error recorded, and the
     * job is available again at once, in its place (run_at kept).
     * The attempt stays consumed, as in RH_STMT_RESCUE, and unlike
     * RH_STMT_RELEASE, which gives it back only because the handler never
     * started: this handler did run, maybe with external effects, and an
     * attempt number names one run (a handler keying its effects by
     * (id, attempt) must not see the cut run and the next one as the same).
     * The fence needs nothing more: the killed worker is dead (the master
     * reaped it), so no finalize of attempt k can still come, and the next
     * claim's k+1 is as fresh as after any rescue.  Fenced by attempt; a
     * job whose cancellation was asked for goes to the history as
     * cancelled instead (r locks the rows first, as in RH_STMT_CRASHED).
     * Returns how many were made available, how many cancelled.
     */
    [RH_STMT_INTERRUPTED] = { RH_STMT_INTERRUPTED, "interrupted",
        "WITH a AS MATERIALIZED (SELECT *, 'running'::rhino.job_state AS cur"
        "                          FROM unnest($1::bigint[], $2::int[], $3::text[]) AS a(id, attempt, why)),"
        " r AS MATERIALIZED (" RH_LOCK_CANCEL("a") "),"
        " u AS ("
        "  UPDATE rhino.jobs j SET state = 'available', worker_id = NULL, last_error = r.why"
        "    FROM r"
        "   WHERE j.id = r.id AND j.attempt = r.attempt AND j.state = r.cur AND NOT r.cancel"
        "  RETURNING j.id),"
        RH_CANCELLED("r", "j.id = r.id AND j.attempt = r.attempt AND j.state = r.cur AND r.cancel",
                     "j.attempt", "'cancelled while running; ' || r.why")
        " SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM c)",
        3 },

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
     * Every reaper pass sends it, so it starts from the few dead workers
     * and probes jobs_running for each; starting from the running jobs (2000
     * of them in a drain with two workers of 1000) cost 11 to 29 ms a pass.
     * The LATERAL subquery (its FOR UPDATE keeps it from being flattened)
     * fixes that order: written as a join, the planner started from
     * jobs_running whenever its statistics said few jobs run, and walked
     * every entry the drain had left in it since the last vacuum: 49 ms a
     * pass on average, 118 at most, with 10M jobs queued (2 passes a
     * second).
     */
    [RH_STMT_RESCUE] = { RH_STMT_RESCUE, "rescue",
        "WITH dead AS MATERIALIZED ("
        "  SELECT j.tid, j.attempt, j.cancel FROM rhino.workers w"
        "   CROSS JOIN LATERAL ("
        "     SELECT j.ctid AS tid, j.attempt, j.cancel_requested_at IS NOT NULL AS cancel FROM rhino.jobs j"
        "      WHERE j.worker_id = w.id AND j.state = 'running'"
        "        FOR UPDATE SKIP LOCKED) j"
        "   WHERE w.ended_at IS NOT NULL OR w.lease_until < now()"
        "   LIMIT 10000),"
        RH_RESCUE_TAIL,
        0 },

    /*
     * The same for running jobs whose worker row is gone altogether (rows
     * are removed with their node, by RH_STMT_GC_NODES, or an hour after
     * they ended, by RH_STMT_GC_WORKERS, each only once no job of theirs
     * runs; so this is for rows deleted by hand, or a very late claim).
     * It reads every running job, so the reaper sends it once a minute (and
     * in its first pass), not every pass.
     */
    [RH_STMT_RESCUE_ORPHANS] = { RH_STMT_RESCUE_ORPHANS, "rescue_orphans",
        "WITH dead AS MATERIALIZED ("
        "  SELECT j.ctid AS tid, j.attempt, j.cancel_requested_at IS NOT NULL AS cancel FROM rhino.jobs j"
        "   WHERE j.state = 'running'"
        "     AND NOT EXISTS (SELECT 1 FROM rhino.workers w WHERE w.id = j.worker_id)"
        "   LIMIT 10000"
        "   FOR UPDATE OF j SKIP LOCKED),"
        RH_RESCUE_TAIL,
        0 },

    /*
     * Due scheduled and retryable jobs become available, and the idle
     * workers of every host are woken once per queue (rh_listen.c) instead of
     * finding them at their next poll.  One row per queue woken.
     */
    /*
     * Running jobs of this node ($1) whose cancellation was asked for
     * (rhino.cancel), with the slot and generation of their worker, for the
     * master to flag (rhino_job_cancelled) and, after the grace period, to
     * stop.  Read through the tiny jobs_cancel_requested index.
     */
    [RH_STMT_CANCEL_REQUESTS] = { RH_STMT_CANCEL_REQUESTS, "cancel_requests",
        "SELECT j.id, j.attempt, w.slot, w.generation"
        "  FROM rhino.jobs j JOIN rhino.workers w ON w.id = j.worker_id"
        " WHERE j.cancel_requested_at IS NOT NULL AND j.state = 'running' AND w.node_id = $1",
        1 },

    /*
     * Due scheduled and retryable jobs become available, 10000 a pass, and
     * the nodes with idle workers are woken per queue.  The locked rows are
     * updated where they were found (ctid = ANY, a TID scan, as the claim):
     * 10000 promotions took 224-244 ms joined back by id, 193-210 ms so
     * (pgbench, 1M available and 50k due, alternated).  The lock taken in
     * the subquery keeps the row where it was found until the UPDATE.
     */
    [RH_STMT_PROMOTE] = { RH_STMT_PROMOTE, "promote",
        "WITH p AS ("
        "  UPDATE rhino.jobs j SET state = 'available'"
        "   WHERE j.ctid = ANY (ARRAY("
        "     SELECT ctid FROM rhino.jobs"
        "      WHERE state IN ('scheduled', 'retryable') AND run_at <= now()"
        "      ORDER BY run_at LIMIT 10000 FOR UPDATE SKIP LOCKED))"
        "  RETURNING j.queue)"
        " SELECT rhino.wake(q.queue) FROM (SELECT DISTINCT queue FROM p) q",
        0 },

    /*
     * Retention: completed jobs older than $1 seconds, discarded and
     * cancelled ones older than $2, in batches of 5000 so that no pass
     * holds locks for long.  One reaper at a time: a transaction-scoped
     * advisory lock ("rhinoprn"), which PgBouncer's transaction mode keeps
     * intact; a reaper that does not get it prunes nothing this time.
     *
     * The rows are deleted where the index scan found them (a TID scan),
     * without locking them first: at steady state the history loses as
     * many rows as the workers finish, and a batch of 5000 took 30 ms as
     * a join on id after FOR UPDATE SKIP LOCKED, 11-12 ms this way
     * (pgbench, 1M rows, alternated).  Nothing in Rhino updates a finished
     * row; one deleted meanwhile (rhinoctl retry, purge) is simply not
     * deleted twice, and a short batch only means the next one waits for
     * the next minute.
     */
    [RH_STMT_PRUNE] = { RH_STMT_PRUNE, "prune",
        "WITH d AS ("
        "DELETE FROM rhino.jobs_done_rows"
        " WHERE ctid = ANY (ARRAY("
        "   SELECT ctid FROM rhino.jobs_done_rows"
        "    WHERE finished_at < now() - make_interval(secs => least($1::float8, $2::float8))"
        "      AND ((state = 'completed' AND finished_at < now() - make_interval(secs => $1::float8))"
        "        OR (state <> 'completed' AND finished_at < now() - make_interval(secs => $2::float8)))"
        "      AND pg_try_advisory_xact_lock(8243955040938652270)"
        "    LIMIT 5000))"
        " RETURNING 1)"
        " SELECT count(*), count(*) FROM d",     /* rows and jobs, as RH_STMT_PRUNE_BATCHES */
        2 },

    /*
     * The same for the batches of completed jobs (all completed, each with
     * one finished_at): 5 batch rows, at most 5000 jobs, a statement.
     * Returns the number of jobs pruned.
     */
    [RH_STMT_PRUNE_BATCHES] = { RH_STMT_PRUNE_BATCHES, "prune_batches",
        "WITH b AS ("
        "  DELETE FROM rhino.jobs_done_batches"
        "   WHERE ctid = ANY (ARRAY("
        "     SELECT ctid FROM rhino.jobs_done_batches"
        "      WHERE finished_at < now() - make_interval(secs => $1::float8)"
        "        AND pg_try_advisory_xact_lock(8243955040938652270)"
        "      LIMIT 5))"
        "  RETURNING cardinality(id) AS n)"
        " SELECT count(*), coalesce(sum(n), 0) FROM b",
        1 },

    /*
     * The error history of jobs no longer live, once older than the longer
     * retention: it outlives the job's own row (a completed job is often
     * not kept at all) only as long as a dead letter would.
     */
    [RH_STMT_PRUNE_ERRORS] = { RH_STMT_PRUNE_ERRORS, "prune_errors",
        "DELETE FROM rhino.job_errors e"
        " USING (SELECT x.job_id, x.attempt, x.kind FROM rhino.job_errors x"
        "         WHERE x.at < now() - make_interval(secs => greatest($1::float8, $2::float8))"
        "           AND NOT EXISTS (SELECT 1 FROM rhino.jobs j WHERE j.id = x.job_id)"
        "           AND pg_try_advisory_xact_lock(8243955040938652270)"
        "         LIMIT 5000 FOR UPDATE SKIP LOCKED) old"
        " WHERE e.job_id = old.job_id AND e.attempt = old.attempt AND e.kind = old.kind",
        2 },

    /* Forget nodes gone for a day that have nothing left running. */
    [RH_STMT_GC_NODES] = { RH_STMT_GC_NODES, "gc_nodes",
        "DELETE FROM rhino.nodes n"
        " WHERE coalesce(n.stopped_at, n.lease_until) < now() - interval '1 day'"
        "   AND NOT EXISTS (SELECT 1 FROM rhino.jobs j JOIN rhino.workers w ON w.id = j.worker_id"
        "                    WHERE w.node_id = n.id AND j.state = 'running')",
        0 },

    /*
     * Forget worker rows that ended over an hour ago and hold no running
     * job: a live node otherwise keeps one row per worker process it ever
     * started (every roll, every crash), and RH_STMT_RESCUE probes
     * jobs_running once for each ended row on every pass.  A row with
     * running jobs stays until RH_STMT_RESCUE has made them available
     * (the same pass, before this).  Should a claim of a worker ended that
     * long ago still commit afterwards, its jobs would point at no row:
     * RH_STMT_RESCUE_ORPHANS takes them back within a minute.
     */
    /*
     * The reaper's VACUUM of the hot table ([reaper] vacuum_interval).
     * Every claimed job leaves its entry in jobs_claim until VACUUM, in
     * front of every walk of the queue from its first entry, which is how
     * every claim walks while jobs trickle in (RH_CLAIM_PICK_FROM).
     * Autovacuum comes at most once a minute (autovacuum_naptime): at 500
     * jobs/s the pickup p50 went from 1.6 ms to 4.0 ms over such a minute.
     * A VACUUM of a small rhino.jobs takes a few ms; one of a large one
     * reads every index whole, so a table of more than $2 rows (the
     * planner's estimate) is left to autovacuum, as is one with fewer than
     * $1 dead rows.  Column 1: may we VACUUM it at all (the owner's
     * privileges; otherwise PostgreSQL skips it with a warning)?
     */
    [RH_STMT_VACUUM_DUE] = { RH_STMT_VACUUM_DUE, "vacuum_due",
        "SELECT pg_has_role(c.relowner, 'USAGE'), coalesce(s.n_dead_tup, 0) >= $1::int8 AND c.reltuples <= $2::float4"
        "  FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
        " WHERE c.oid = 'rhino.jobs'::regclass",
        2 },

    /*
     * SKIP_LOCKED: if another VACUUM (autovacuum, another host's reaper)
     * has the table, skip this turn instead of waiting.  TRUNCATE false:
     * giving the file's empty tail back takes an ACCESS EXCLUSIVE lock,
     * which would stop every claim and enqueue for that moment.
     */
    [RH_STMT_VACUUM_HOT] = { RH_STMT_VACUUM_HOT, "vacuum_hot",
        "VACUUM (SKIP_LOCKED, TRUNCATE false) rhino.jobs",
        0 },

    [RH_STMT_GC_WORKERS] = { RH_STMT_GC_WORKERS, "gc_workers",
        "DELETE FROM rhino.workers w"
        " WHERE w.id IN (SELECT id FROM rhino.workers WHERE ended_at < now() - interval '1 hour' LIMIT 1000)"
        "   AND NOT EXISTS (SELECT 1 FROM rhino.jobs j WHERE j.worker_id = w.id AND j.state = 'running')",
        0 },

    /*
     * Queue depth and the age of the oldest due job, for GET /metrics: read
     * by the reaper every few seconds (one process per node, not per scrape)
     * from the jobs_claim partial index (queue, priority, run_at, id), which
     * holds exactly these rows.  A GROUP BY over the index is linear in the
     * backlog (2 s and three processes on two cores with 10M queued, while
     * the drain it reports on starved), so: a skip scan finds the (queue,
     * priority) pairs, one index probe each gives the pair's oldest run_at,
     * and the count stops at $1 per queue ([metrics] depth_limit; NULL
     * counts all).  The cost is then one probe per (queue, priority) pair
     * (at most 65,536 per queue: priority is a smallint) plus at most $1
     * index entries per queue, whatever the backlog.
     */
    [RH_STMT_QUEUE_DEPTH] = { RH_STMT_QUEUE_DEPTH, "queue_depth",
        "WITH RECURSIVE " RH_QUEUES_OLDEST
        " SELECT q.queue,"
        "        (SELECT count(*) FROM (SELECT FROM rhino.jobs j"
        "          WHERE j.state = 'available' AND j.queue = q.queue LIMIT $1::int8) c),"
        /* epochs subtracted, not timestamps: a run_at of -infinity (stored before schema 15, whose
           constraint refuses it) is infinitely old, where now() - '-infinity' is an error that took
           the whole gauge down */
        "        greatest(extract(epoch FROM now()) - extract(epoch FROM q.oldest), 0)::float8"
        "   FROM q",
        1 },

    /*
     * The one setting of the sessions that watch (the reaper's gauge
     * connection, rhinoctl top): a view of the queue must never take the
     * cores of the drain it reports on, and a count without a limit
     * (depth_limit = 0, top --limit 0) is a full index scan that PostgreSQL
     * would spread over parallel workers.
     */
    [RH_STMT_NO_PARALLEL] = { RH_STMT_NO_PARALLEL, "no_parallel",
        "SET max_parallel_workers_per_gather = 0",
        0 },

    /*
     * rhinoctl enqueue: the id, and whether it is an existing job (a live
     * one with the same unique key $7, or the one of $8's throttle window).
     */
    /*
     * The master's wake-up channel (master/rh_listen.c).  Sent with
     * PQsendQuery, the one statement that is not parameterized: it has no
     * parameter, and LISTEN takes none.
     */
    [RH_STMT_LISTEN] = { RH_STMT_LISTEN, "listen", "LISTEN rhino_jobs", 0 },

    /* The master: does node $1 have an idle worker to wake (rhino.wake)? */
    [RH_STMT_NODE_IDLE] = { RH_STMT_NODE_IDLE, "node_idle",
        "UPDATE rhino.nodes SET idle = $2::bool WHERE id = $1::bigint AND idle IS DISTINCT FROM $2::bool",
        2 },

    [RH_STMT_ENQUEUE] = { RH_STMT_ENQUEUE, "enqueue",
        "SELECT id, existing FROM rhino.enqueue_job($1, $2::jsonb, $3, coalesce($4::timestamptz, now()),"
        "                                           $5::int, $6::int, NULL, $7, $8::interval, $9)",
        9 },

    /*
     * Jobs per queue and state, and whether the queue is paused; a paused
     * queue without any job is one row with a NULL state and a count of 0.
     */
    [RH_STMT_STATS] = { RH_STMT_STATS, "stats",
        "WITH s AS ("
        "  SELECT queue, state::text AS state, count(*) AS n FROM rhino.jobs GROUP BY 1, 2"
        "  UNION ALL"
        /* completed jobs may be in both history tables (rows from before schema version 11) */
        "  SELECT queue, state, sum(n)::bigint FROM ("
        "    SELECT queue, state::text AS state, count(*) AS n FROM rhino.jobs_done_rows GROUP BY 1, 2"
        "    UNION ALL"
        "    SELECT q, 'completed', count(*) FROM rhino.jobs_done_batches b CROSS JOIN LATERAL unnest(b.queue) q"
        "     GROUP BY 1) h"
        "   GROUP BY 1, 2)"
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
        "COPY rhino.jobs (kind, queue, payload, priority, max_attempts, run_at, state, concurrency_key) FROM STDIN",
        0 },

    /*
     * The same when every other column takes its default (priority 0, 25
     * attempts, run_at = now(), the COPY's transaction start, as the server
     * clock resolves --run-at too, available, no key): the server parses
     * three fields a row instead of eight, the timestamp the dearest of
     * them.  Measured: 120k instead of 100k rows/s from psql.
     */
    [RH_STMT_CTL_COPY_MIN] = { RH_STMT_CTL_COPY_MIN, "ctl_copy_min",
        "COPY rhino.jobs (kind, queue, payload) FROM STDIN",
        0 },

    /*
     * rhinoctl list: newest (highest id) first, filtered by queue $1, kind
     * $2, state $3 (NULL = any), at most $4 rows.  The live jobs and the
     * history's rows are read backwards along their primary keys and
     * merged, so the LIMIT stops early.  Of the batches of completed jobs
     * (sql/011_history_batches.sql), without a queue or kind filter only
     * the $4 with the highest max_id can hold any of the $4 newest: each
     * batch further down has $4 batches above it, each with an id above
     * all of its own.  With such a filter every batch is unnested (a full
     * read of the completed history), and none when $3 names another
     * state.  The payload leaves the server only when asked for ($5): it
     * may hold personal data.
     */
    [RH_STMT_CTL_LIST] = { RH_STMT_CTL_LIST, "ctl_list",
        "SELECT id, queue, kind, state::text AS state, attempt, errors, crash_count, max_attempts, priority,"
        "       " RH_ISO("run_at") " AS run_at, " RH_ISO("created_at") " AS created_at,"
        "       " RH_ISO("finished_at") " AS finished_at, last_error,"
        "       CASE WHEN $5::bool THEN payload END AS payload"
        "  FROM (SELECT id, queue, kind, state, attempt, errors, crash_count, max_attempts, priority, run_at,"
        "               created_at, NULL::timestamptz AS finished_at, last_error, payload"
        "          FROM rhino.jobs"
        "        UNION ALL"
        "        SELECT id, queue, kind, state, attempt, errors, crash_count, max_attempts, priority, run_at,"
        "               created_at, finished_at, last_error, payload"
        "          FROM rhino.jobs_done_rows"
        "        UNION ALL"
        "        SELECT u.id, u.queue, u.kind, 'completed'::rhino.job_state, u.attempt, u.errors, u.crash_count,"
        "               u.max_attempts, u.priority, u.run_at, u.created_at, b.finished_at, u.last_error, u.payload"
        "          FROM (SELECT * FROM rhino.jobs_done_batches"
        "                 WHERE $3::text IS NULL OR $3::text = 'completed'"
        "                 ORDER BY max_id DESC"
        "                 LIMIT CASE WHEN $1::text IS NULL AND $2::text IS NULL THEN $4::int END) b"
        "         CROSS JOIN LATERAL unnest(b.id, b.queue, b.kind, b.attempt, b.errors, b.crash_count,"
        "                                   b.max_attempts, b.priority, b.run_at, b.created_at, b.last_error,"
        "                                   b.payload)"
        "               AS u(id, queue, kind, attempt, errors, crash_count, max_attempts, priority, run_at,"
        "                    created_at, last_error, payload)) a"
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
        "  FROM (SELECT id, queue, kind, state, attempt, errors, max_attempts, crash_count, priority, run_at,"
        "               created_at, attempted_at, NULL::timestamptz AS finished_at, worker_id, timeout,"
        "               last_error, payload"
        "          FROM rhino.jobs WHERE id = $1::bigint"
        "        UNION ALL"
        "        SELECT id, queue, kind, state, attempt, errors, max_attempts, crash_count, priority, run_at,"
        "               created_at, attempted_at, finished_at, NULL, timeout, last_error, payload"
        "          FROM rhino.jobs_done_by_id(ARRAY[$1::bigint])) a",
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
     *
     * A job whose unique key a live job holds stays in the history (two
     * live jobs cannot share a key).  The NOT EXISTS sees the holders
     * committed when the statement started.  A concurrent enqueue of the
     * key that commits later (the INSERT waits for it on the unique index)
     * would fail the INSERT with a unique violation, and the whole batch
     * with it, leaving rhinoctl only PostgreSQL's message to print.  So the
     * INSERT comes first and skips such a job (ON CONFLICT on the key only:
     * an id already live is still an error), and the DELETE takes from the
     * history only the jobs the INSERT wrote: the others of the batch are
     * redriven, and that one stays, as if its holder had been there first
     * (rhinoctl retry ID then names the key and the holder).
     */
    [RH_STMT_CTL_REDRIVE] = { RH_STMT_CTL_REDRIVE, "ctl_redrive",
        "WITH c AS MATERIALIZED ("
        "  SELECT w.* FROM ("
        "    SELECT cand.*, row_number() OVER (PARTITION BY cand.unique_key"
        "                                      ORDER BY cand.finished_at DESC, cand.id DESC) AS k"
        "      FROM (SELECT id, queue, kind, payload, priority, attempt, max_attempts, created_at, attempted_at,"
        "                   last_error, unique_key, concurrency_key, timeout, finished_at"
        "              FROM rhino.jobs_done_rows"
        "             WHERE state IN ('discarded', 'cancelled') AND (state = 'discarded' OR $4::bool)"
        "               AND finished_at <= $5::timestamptz"
        "               AND ($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR queue = $2)"
        "               AND ($3::text IS NULL OR kind = $3)"
        /* a unique key that a newer live job holds stays in the history */
        "               AND (unique_key IS NULL OR NOT EXISTS (SELECT 1 FROM rhino.jobs l"
        "                                                       WHERE l.unique_key = jobs_done_rows.unique_key))"
        "             ORDER BY finished_at LIMIT $6::int"
        "             FOR UPDATE SKIP LOCKED) cand) w"
        /* and of several finished jobs with one key, only the latest comes back to life */
        "   WHERE w.unique_key IS NULL OR w.k = 1),"
        " i AS ("
        "  INSERT INTO rhino.jobs (id, queue, kind, payload, state, priority, attempt, errors, max_attempts,"
        "                          run_at, created_at, attempted_at, crash_count, last_error,"
        "                          unique_key, concurrency_key, timeout)"
        "  SELECT id, queue, kind, payload, 'available', priority, attempt, 0, max_attempts,"
        "         now(), created_at, attempted_at, 0, last_error, unique_key, concurrency_key,"
        /* a NaN or infinite timeout stored before schema 14 fails jobs_timeout: [worker] job_timeout instead */
        "         CASE WHEN timeout < 'Infinity' THEN timeout END FROM c"
        /* a key taken since the NOT EXISTS looked: the job stays in the history (above) */
        "  ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING"
        "  RETURNING id)"
        " DELETE FROM rhino.jobs_done_rows d USING i WHERE d.id = i.id",
        6 },

    /*
     * rhinoctl retry ID found nothing to redrive in a discarded or cancelled
     * job: the unique key it carries and the live job holding it, if that is
     * why (RH_STMT_CTL_REDRIVE leaves such a job in the history).
     */
    [RH_STMT_CTL_KEY_HOLDER] = { RH_STMT_CTL_KEY_HOLDER, "ctl_key_holder",
        "SELECT d.unique_key, l.id FROM rhino.jobs_done_rows d JOIN rhino.jobs l ON l.unique_key = d.unique_key"
        " WHERE d.id = $1::bigint",
        1 },

    /*
     * rhinoctl cancel: rhino.cancel() (sql/002_job_columns.sql) says what
     * it did: cancelled, cancel_requested (running), a final state, or NULL.
     */
    [RH_STMT_CTL_CANCEL] = { RH_STMT_CTL_CANCEL, "ctl_cancel",
        "SELECT rhino.cancel($1::bigint)",
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

    /*
     * rhinoctl purge: one batch of $2 of the jobs finished before $1, by TID
     * as RH_STMT_PRUNE (17 against 27-30 ms per 5000).  Unlike the reaper's
     * prune, it locks its batch with SKIP LOCKED: purge stops at the first
     * batch that deletes nothing, so it must not pick the rows a pruning
     * reaper is deleting at the same moment.
     */
    [RH_STMT_CTL_PURGE] = { RH_STMT_CTL_PURGE, "ctl_purge",
        "DELETE FROM rhino.jobs_done_rows"
        " WHERE ctid = ANY (ARRAY(SELECT ctid FROM rhino.jobs_done_rows WHERE finished_at < $1::timestamptz"
        "                          LIMIT $2::int FOR UPDATE SKIP LOCKED))",
        2 },

    /* The same for the batches of completed jobs, $2 jobs' worth of them; returns the jobs purged. */
    [RH_STMT_CTL_PURGE_BATCHES] = { RH_STMT_CTL_PURGE_BATCHES, "ctl_purge_batches",
        "WITH b AS ("
        "  DELETE FROM rhino.jobs_done_batches"
        "   WHERE ctid = ANY (ARRAY(SELECT ctid FROM rhino.jobs_done_batches WHERE finished_at < $1::timestamptz"
        "                            LIMIT greatest($2::int / 1000, 1) FOR UPDATE SKIP LOCKED))"
        "  RETURNING cardinality(id) AS n)"
        " SELECT coalesce(sum(n), 0) FROM b",
        2 },

    /*
     * rhinoctl top, per queue: live jobs by state and the age in seconds of
     * the oldest available one; completed and discarded jobs of the last
     * minute; finished jobs per second over the last $1 seconds.  A frame
     * comes every second while someone watches, so nothing here may be
     * linear in the backlog (a GROUP BY over rhino.jobs took seconds of both
     * cores per frame with 10M queued): the available jobs are found as the
     * queue gauge finds them (RH_QUEUES_OLDEST) and counted up to $2 per
     * queue; running jobs come from jobs_running and scheduled and
     * retryable ones from jobs_due, at most $2 of each (those indexes do not
     * hold the queue, so that limit is over all queues; those counted are the
     * first to come due, in the order of jobs_due).  $2 NULL counts
     * all.  The last three columns say which counts stopped at $2, so they
     * read "at least".  The history is read through its finished_at
     * indexes, only the recent end.
     */
    [RH_STMT_CTL_TOP_QUEUES] = { RH_STMT_CTL_TOP_QUEUES, "ctl_top_queues",
        "WITH RECURSIVE " RH_QUEUES_OLDEST ","
        " av AS ("
        "  SELECT q.queue, q.oldest,"
        "         (SELECT count(*) FROM (SELECT FROM rhino.jobs j"
        "           WHERE j.state = 'available' AND j.queue = q.queue LIMIT $2::int8) c) AS available"
        "    FROM q),"
        " r AS ("
        "  SELECT queue, count(*) AS running"
        "    FROM (SELECT queue FROM rhino.jobs WHERE state = 'running' LIMIT $2::int8) x GROUP BY queue),"
        " s AS ("
        "  SELECT queue, count(*) FILTER (WHERE state = 'scheduled') AS scheduled,"
        "         count(*) FILTER (WHERE state = 'retryable') AS retryable"
        "    FROM (SELECT queue, state FROM rhino.jobs WHERE state IN ('scheduled', 'retryable')"
        "           ORDER BY run_at LIMIT $2::int8) x"
        "   GROUP BY queue),"
        " l AS ("
        "  SELECT coalesce(av.queue, r.queue, s.queue) AS queue, av.available, s.scheduled, r.running, s.retryable,"
        /* as in queue_depth: an infinite run_at makes an infinite age, not an error */
        "         (extract(epoch FROM now()) - extract(epoch FROM av.oldest))::float8 AS oldest"
        "    FROM av FULL JOIN r ON r.queue = av.queue"
        "    FULL JOIN s ON s.queue = coalesce(av.queue, r.queue)),"
        " d AS ("
        "  SELECT queue,"
        "         count(*) FILTER (WHERE state = 'completed' AND finished_at > now() - interval '1 minute') AS completed,"
        "         count(*) FILTER (WHERE state = 'discarded' AND finished_at > now() - interval '1 minute') AS discarded,"
        "         count(*) FILTER (WHERE state <> 'cancelled'"
        "                            AND finished_at > now() - make_interval(secs => $1::float8)) AS recent"
        "    FROM (SELECT queue, state, finished_at FROM rhino.jobs_done_rows"
        "          UNION ALL"
        "          SELECT q, 'completed', b.finished_at FROM rhino.jobs_done_batches b CROSS JOIN LATERAL unnest(b.queue) q)"
        "         h"
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
        "        coalesce(p.paused, false),"
        "        coalesce(lq.available >= $2::int8, false),"
        "        coalesce((SELECT sum(running) FROM r) >= $2::int8, false),"
        "        coalesce((SELECT sum(scheduled + retryable) FROM s) >= $2::int8, false)"
        "   FROM lq FULL JOIN (SELECT name, paused FROM rhino.queues WHERE paused) p ON p.name = lq.queue"
        "  ORDER BY 1",
        2 },

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

    /* ---- periodic jobs (common/rh_schedule.c, sql/004_cron.sql) ---- */

    /*
     * Create or change a schedule (rhinoctl schedule; the reaper, for the
     * [schedule NAME] sections of its config, with $10 = 'config'): says
     * created, changed or unchanged.  rhino.schedule() validates everything, the
     * cron expression included, and keeps an unchanged expression's place.
     */
    [RH_STMT_SCHEDULE_UPSERT] = { RH_STMT_SCHEDULE_UPSERT, "schedule_upsert",
        "SELECT rhino.schedule($1, $2, $3, coalesce($4::jsonb, '{}'), coalesce($5, 'default'),"
        "                      coalesce($6::int, 0), coalesce($7::int, 25), $8::float8,"
        "                      coalesce($9, 'latest'), $10)",
        10 },

    /* Config schedules that the config just applied ($1, a text[]) does not have. */
    [RH_STMT_SCHEDULE_ORPHANS] = { RH_STMT_SCHEDULE_ORPHANS, "schedule_orphans",
        "SELECT name FROM rhino.schedules WHERE source = 'config' AND name <> ALL ($1::text[]) ORDER BY name",
        1 },

    /*
     * The schedules due at $1 (NULL: now()), at most $2: those whose next
     * fire time has come, and new or changed ones (next_fire_at NULL).  The
     * clock is the database's, returned as whole epoch seconds with
     * fired_until (floored, as the fire statement compares it), so that
     * every host computes the same fire times.  Parked rows (next_fire_at =
     * infinity) never come.
     */
    [RH_STMT_SCHEDULES_DUE] = { RH_STMT_SCHEDULES_DUE, "schedules_due",
        "SELECT s.name, s.cron, s.missed, floor(extract(epoch FROM s.fired_until))::bigint, n.now"
        "  FROM (SELECT floor(extract(epoch FROM coalesce($1::timestamptz, now())))::bigint AS now) n"
        "  JOIN rhino.schedules s ON s.next_fire_at IS NULL OR s.next_fire_at <= to_timestamp(n.now)"
        " ORDER BY s.next_fire_at NULLS FIRST, s.name"
        " LIMIT $2::int",
        2 },

    /*
     * Fire one schedule ($1, whose expression the reaper read as $2): move
     * fired_until from $3 to $4 and next_fire_at to $5 (epoch seconds) only
     * if fired_until is still $3 -- a compare-and-set: under READ COMMITTED a
     * second host's UPDATE waits for the first and then re-checks the row,
     * finds fired_until moved, and matches nothing.  Then one fire row per
     * fire time in $6 (epoch seconds), ON CONFLICT DO NOTHING on (schedule,
     * fire_time), and a job only for each fire row that was new: the job ids
     * are drawn in the fire rows' INSERT so that the two stay linked.  The
     * job's run_at is its fire time.  Returns whether the schedule matched,
     * how many jobs were enqueued, and the newest job's id.
     */
    [RH_STMT_SCHEDULE_FIRE] = { RH_STMT_SCHEDULE_FIRE, "schedule_fire",
        "WITH s AS ("
        "  UPDATE rhino.schedules s"
        "     SET fired_until = to_timestamp($4::bigint), next_fire_at = to_timestamp($5::bigint), error = NULL"
        "   WHERE s.name = $1 AND s.cron = $2 AND floor(extract(epoch FROM s.fired_until))::bigint = $3::bigint"
        "  RETURNING s.name, s.kind, s.payload, s.queue, s.priority, s.max_attempts, s.timeout),"
        " f AS ("
        "  INSERT INTO rhino.schedule_fires (schedule_name, fire_time, job_id)"
        "  SELECT s.name, to_timestamp(t.t), nextval(pg_get_serial_sequence('rhino.jobs', 'id'))"
        "    FROM s CROSS JOIN unnest($6::bigint[]) AS t(t)"
        "  ON CONFLICT DO NOTHING"
        "  RETURNING fire_time, job_id),"
        " j AS ("
        "  INSERT INTO rhino.jobs (id, kind, payload, queue, priority, max_attempts, timeout, run_at, state)"
        "  SELECT f.job_id, s.kind, s.payload, s.queue, s.priority, s.max_attempts, s.timeout, f.fire_time,"
        "         'available'"
        "    FROM f CROSS JOIN s"
        "  RETURNING id)"
        " SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM j), (SELECT max(id) FROM j)",
        6 },

    /*
     * A schedule this rhino cannot parse (a newer schema's grammar): record
     * why and park it (next_fire_at = infinity) until rhino.schedule()
     * changes it.  A row comes back only the first time, to log once.
     */
    [RH_STMT_SCHEDULE_INVALID] = { RH_STMT_SCHEDULE_INVALID, "schedule_invalid",
        "UPDATE rhino.schedules SET error = $3, next_fire_at = 'infinity'"
        " WHERE name = $1 AND cron = $2 AND error IS DISTINCT FROM $3"
        " RETURNING name",
        3 },

    /*
     * Fire rows older than $1 seconds, in small batches (SKIP LOCKED: several
     * hosts may prune at once).  The newest row of each schedule stays: it
     * is what rhinoctl schedules shows as the last fire.
     */
    [RH_STMT_SCHEDULE_PRUNE] = { RH_STMT_SCHEDULE_PRUNE, "schedule_prune",
        "DELETE FROM rhino.schedule_fires f"
        " USING (SELECT o.schedule_name, o.fire_time FROM rhino.schedule_fires o"
        "         WHERE o.fire_time < now() - make_interval(secs => $1::float8)"
        "           AND EXISTS (SELECT 1 FROM rhino.schedule_fires n"
        "                        WHERE n.schedule_name = o.schedule_name AND n.fire_time > o.fire_time)"
        "         LIMIT 5000 FOR UPDATE SKIP LOCKED) old"
        " WHERE f.schedule_name = old.schedule_name AND f.fire_time = old.fire_time",
        1 },

    /*
     * rhinoctl schedules: every schedule with its last fire (the newest fire
     * row: a backward step along the primary key) and the database's clock
     * in epoch seconds, from which rhinoctl computes the next fire time.
     */
    [RH_STMT_CTL_SCHEDULES] = { RH_STMT_CTL_SCHEDULES, "ctl_schedules",
        "SELECT s.name, s.cron, s.kind, s.queue, s.missed, s.source, s.priority, s.max_attempts, s.timeout,"
        "       " RH_ISO("l.fire_time") " AS last_fire, l.job_id AS last_job_id, s.error, s.payload,"
        "       extract(epoch FROM s.fired_until)::bigint, floor(extract(epoch FROM now()))::bigint"
        "  FROM rhino.schedules s"
        "  LEFT JOIN LATERAL (SELECT f.fire_time, f.job_id FROM rhino.schedule_fires f"
        "                      WHERE f.schedule_name = s.name ORDER BY f.fire_time DESC LIMIT 1) l ON true"
        " ORDER BY s.name",
        0 },

    [RH_STMT_CTL_UNSCHEDULE] = { RH_STMT_CTL_UNSCHEDULE, "ctl_unschedule",
        "SELECT rhino.unschedule($1)",
        1 },

    /* ---- unique jobs, throttle windows, wake-ups (sql/003_unique.sql) ---- */

    /*
     * The reaper, with the history: forget throttle windows that have
     * expired.  Small batches, SKIP LOCKED: an enqueue holding a window's
     * row (it is renewing it) is left alone, and several hosts may prune.
     */
    [RH_STMT_UNIQUE_PRUNE] = { RH_STMT_UNIQUE_PRUNE, "unique_prune",
        "DELETE FROM rhino.unique_windows w"
        " USING (SELECT unique_key FROM rhino.unique_windows WHERE expires_at <= now()"
        "         LIMIT 5000 FOR UPDATE SKIP LOCKED) old"
        " WHERE w.unique_key = old.unique_key",
        0 },

    /*
     * rhinoctl enqueue --bulk: wake the daemons listening for the queue, in
     * the transaction of the COPY (delivered at its commit, and not at all
     * if it rolls back), as rhino.enqueue does for each job it adds.
     */
    [RH_STMT_CTL_NOTIFY] = { RH_STMT_CTL_NOTIFY, "ctl_notify",
        "SELECT rhino.wake($1)",
        1 },

    /*
     * rhinoctl enqueue --unique-for: a duration in PostgreSQL's interval
     * syntax ('90 s', '1 minute', '2h', '30' = seconds), as seconds; parsed
     * by the server like --run-at's '+10 min'.
     */
    [RH_STMT_CTL_DURATION] = { RH_STMT_CTL_DURATION, "ctl_duration",
        "SELECT extract(epoch FROM $1::interval)::float8",
        1 },

    /* ---- queue limits and priority aging (sql/005_limits.sql) ---------------------- */

    /*
     * RH_STMT_CLAIM for workers that serve a queue with limits (the reaper
     * tells them, RH_STMT_LIMITS_FLAG): rhino.claim_limited() claims what the
     * limited queues among $1 admit, counting and locking per queue, then the
     * unlimited queues fill the rest of the batch exactly as RH_STMT_CLAIM
     * does.  Limited first, so that a deep unlimited queue sharing the
     * workers cannot take every batch.  A separate statement because even a
     * never-executed function scan costs planning and an InitPlan per claim,
     * measured at +0.2 ms on a 10-job claim, which unlimited queues must not
     * pay.
     */
    [RH_STMT_CLAIM_LIMITED] = { RH_STMT_CLAIM_LIMITED, "claim_limited",
        "WITH l AS MATERIALIZED ("
        "  SELECT * FROM rhino.claim_limited($1::text[], $2::int, $3::bigint)),"
        " c AS MATERIALIZED (" RH_CLAIM_PICK("greatest($2 - (SELECT count(*) FROM l), 0)") "),"
        " u AS (UPDATE rhino.jobs j" RH_CLAIM_SET ")"
        " SELECT * FROM l UNION ALL (" RH_CLAIM_OUT ")",
        3 },

    /* Does any of the queues $1 have limits (and is not paused)?  The reaper, every pass. */
    [RH_STMT_LIMITS_FLAG] = { RH_STMT_LIMITS_FLAG, "limits_flag",
        "SELECT EXISTS (SELECT 1 FROM rhino.queues WHERE name = ANY ($1::text[]) AND limited AND NOT paused)",
        1 },

    /*
     * Priority aging, every reaper pass.  A queue's tick comes once per its
     * `aging` interval, taken by exactly one reaper of any host (the
     * queue_state row, SKIP LOCKED: a claim holding it delays the tick to the
     * next pass, never blocks the reaper).  At each tick every waiting job of
     * the queue that has waited at least one interval and whose priority is
     * worse than the best waiting one moves one level up; so a job that
     * waited n intervals has risen about n levels, and none rises past the
     * best waiting priority.  Jobs being claimed are skipped (SKIP LOCKED).
     * Returns how many jobs moved.  The locked rows are updated where they
     * were found (a TID scan): joined back by id, the plan was a sequential
     * scan of all of rhino.jobs and a hash join, every pass, whether a tick
     * was due or not (720 ms at 1.5M jobs), and on a table of 30k jobs or
     * more its cost passed PostgreSQL's JIT thresholds (96-476 ms a pass
     * compiling).  The reaper also runs it with JIT off (rh_limits.c).
     */
    [RH_STMT_AGE] = { RH_STMT_AGE, "age",
        "WITH t AS ("
        "  UPDATE rhino.queue_state s SET aged_at = now()"
        "    FROM (SELECT st.name, q.aging FROM rhino.queue_state st JOIN rhino.queues q ON q.name = st.name"
        "           WHERE q.aging IS NOT NULL AND NOT q.paused"
        "             AND (st.aged_at IS NULL OR st.aged_at <= now() - q.aging)"
        "           FOR UPDATE OF st SKIP LOCKED) d"
        "   WHERE s.name = d.name"
        "  RETURNING s.name, d.aging),"
        " a AS MATERIALIZED ("
        "  SELECT r.tid FROM t"
        "   CROSS JOIN LATERAL (SELECT min(priority) AS top FROM rhino.jobs"
        "                        WHERE state = 'available' AND queue = t.name) m"
        "   CROSS JOIN LATERAL (SELECT ctid AS tid FROM rhino.jobs"
        "                        WHERE state = 'available' AND queue = t.name AND priority > m.top"
        "                          AND run_at <= now() - t.aging"
        "                        FOR UPDATE SKIP LOCKED) r)"
        " UPDATE rhino.jobs j SET priority = j.priority - 1"
        "  WHERE j.ctid = ANY (ARRAY(SELECT tid FROM a)) AND j.state = 'available'",
        0 },

    /*
     * Forget the per-key token buckets that have refilled completely (a key
     * without a row has a full bucket), and those of queues without a key
     * rate.  Safe beside a claim: a claim that read a full bucket writes its
     * row anew, and a bucket a claim has just written is not full.
     */
    [RH_STMT_LIMITS_PRUNE] = { RH_STMT_LIMITS_PRUNE, "limits_prune",
        "DELETE FROM rhino.queue_key_state b"
        " USING rhino.queues q"
        " WHERE q.name = b.queue"
        "   AND (q.key_rate IS NULL"
        "        OR b.refilled_at + make_interval(secs => (q.key_burst - least(b.tokens, q.key_burst)) / q.key_rate)"
        "           <= now())",
        0 },

    /*
     * rhinoctl queue NAME --max-running N ...: $2..$9 are the new max_running,
     * max_running_per_node, per_key_max, rate, burst, key_rate, key_burst and
     * aging (seconds), each NULL to keep the current value or 'none' to
     * remove it.  A new rate without a burst gets the default burst.
     */
    [RH_STMT_CTL_QUEUE_SET] = { RH_STMT_CTL_QUEUE_SET, "ctl_queue_set",
        "SELECT (rhino.queue_config($1,"
        "   max_running => CASE WHEN $2::text IS NULL THEN q.max_running WHEN $2 <> 'none' THEN $2::int END,"
        "   max_running_per_node => CASE WHEN $3::text IS NULL THEN q.max_running_per_node"
        "                                WHEN $3 <> 'none' THEN $3::int END,"
        "   per_key_max => CASE WHEN $4::text IS NULL THEN q.per_key_max WHEN $4 <> 'none' THEN $4::int END,"
        "   rate => CASE WHEN $5::text IS NULL THEN q.rate WHEN $5 <> 'none' THEN $5::float8 END,"
        "   burst => CASE WHEN $6::text IS NOT NULL THEN CASE WHEN $6 <> 'none' THEN $6::int END"
        "                 WHEN $5::text IS NULL THEN q.burst END,"
        "   key_rate => CASE WHEN $7::text IS NULL THEN q.key_rate WHEN $7 <> 'none' THEN $7::float8 END,"
        "   key_burst => CASE WHEN $8::text IS NOT NULL THEN CASE WHEN $8 <> 'none' THEN $8::int END"
        "                     WHEN $7::text IS NULL THEN q.key_burst END,"
        "   aging => CASE WHEN $9::text IS NULL THEN q.aging"
        "                 WHEN $9 <> 'none' THEN make_interval(secs => $9::float8) END)).name"
        "  FROM (SELECT 1) AS one LEFT JOIN rhino.queues q ON q.name = $1",
        9 },

    /*
     * The limits and aging of queue $1 (one row, NULLs if it has none), or
     * of every queue that has some ($1 NULL), with how many of its jobs run
     * now; the last column is the same as one JSON object, for rhinoctl
     * stats --json.
     */
    [RH_STMT_CTL_QUEUES] = { RH_STMT_CTL_QUEUES, "ctl_queues",
        "SELECT n.name AS queue, coalesce(q.paused, false) AS paused, q.max_running, q.max_running_per_node, q.per_key_max,"
        "       q.rate, q.burst, q.key_rate, q.key_burst, extract(epoch FROM q.aging)::float8 AS aging,"
        "       r.running,"
        "       json_build_object('max_running', q.max_running, 'max_running_per_node', q.max_running_per_node,"
        "                         'per_key_max', q.per_key_max, 'rate', q.rate, 'burst', q.burst,"
        "                         'key_rate', q.key_rate, 'key_burst', q.key_burst,"
        "                         'aging', extract(epoch FROM q.aging)::float8, 'running', r.running) AS limits"
        "  FROM (SELECT p.name FROM rhino.queues p WHERE $1::text IS NULL AND (p.limited OR p.aging IS NOT NULL)"
        "        UNION ALL SELECT $1 WHERE $1::text IS NOT NULL) n"
        "  LEFT JOIN rhino.queues q ON q.name = n.name"
        " CROSS JOIN LATERAL (SELECT count(*) AS running FROM rhino.jobs j"
        "                      WHERE j.queue = n.name AND j.state = 'running') r"
        " ORDER BY n.name",
        1 },
};

const rh_stmt_t *
rh_sql(rh_stmt_id_t id)
{
    return &rh_stmts[id];
}
