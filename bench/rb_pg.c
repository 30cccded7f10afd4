/*
 * rb_pg.c - rhino-bench's statement table and the calls that run it.
 *
 * These statements measure; they are not part of Rhino, which is why they
 * live here and not in common/rh_sql.c (the statements Rhino's processes
 * send).  Each has a "what" for the error message when it fails.  Like
 * Rhino's own, parameters are always bound, never spliced into the text.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rh_db.h"
#include "rb_pg.h"
#include "rb_util.h"

/* The queue every bench job goes to; rhino-bench's rhino serves only it. */
#define RB_Q "$1"

typedef struct {
    rb_sql_id_t id;
    const char *what;       /* "checking the database for other jobs" */
    const char *sql;
    int         nparams;
} rb_stmt_t;

/*
 * The newest finished job's id: the rows' primary key, and the batches'
 * ranges (sql/011_history_batches.sql; a few hundred rows per million jobs).
 */
#define RB_DONE_MAX_ID \
        "greatest((SELECT coalesce(max(id), 0) FROM rhino.jobs_done_rows)," \
        "         (SELECT coalesce(max(max_id), 0) FROM rhino.jobs_done_batches))"

static const rb_stmt_t rb_stmts[RB_SQL__COUNT] = {
    /*
     * The call an application makes inside its own transaction (README,
     * "Enqueueing"): kind, payload, queue; everything else the function's
     * defaults.  Not rhinoctl's statement, which grows options of its own.
     */
    [RB_SQL_ENQUEUE] = { RB_SQL_ENQUEUE, "rhino.enqueue()",
        "SELECT rhino.enqueue($1, $2::jsonb, $3)", 3 },

    /* The settings every record carries, so that numbers are never read without them. */
    [RB_SQL_FACTS] = { RB_SQL_FACTS, "reading the server's version and settings",
        "SELECT current_setting('server_version'), current_setting('synchronous_commit'),"
        "       current_setting('shared_buffers'), current_setting('fsync'), current_setting('max_wal_size'),"
        "       current_setting('server_version_num')::int",
        0 },

    /*
     * rhino-bench empties rhino.jobs and rhino.jobs_done between
     * measurements: it refuses a database that holds any job of another
     * queue than its own.  EXISTS stops at the first such row.
     */
    [RB_SQL_FOREIGN_JOBS] = { RB_SQL_FOREIGN_JOBS, "checking the database for jobs that are not rhino-bench's",
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM rhino.jobs WHERE queue <> " RB_Q " LIMIT 1) a)"
        "     + (SELECT count(*) FROM (SELECT 1 FROM rhino.jobs_done_rows WHERE queue <> " RB_Q " LIMIT 1) b)"
        "     + (SELECT count(*) FROM (SELECT 1 FROM rhino.jobs_done_batches b"
        "                               WHERE EXISTS (SELECT 1 FROM unnest(b.queue) q WHERE q <> " RB_Q ") LIMIT 1) c)",
        1 },

    /* Another rhino on this database would take jobs or load the server during a measurement. */
    [RB_SQL_LIVE_NODES] = { RB_SQL_LIVE_NODES, "looking for rhino masters already running on this database",
        "SELECT coalesce(string_agg(name || ' (pid ' || pid || ')', ', '), '')"
        "  FROM rhino.nodes WHERE stopped_at IS NULL AND lease_until > now()",
        0 },

    [RB_SQL_RESET] = { RB_SQL_RESET, "emptying rhino.jobs and rhino.jobs_done",
        "TRUNCATE rhino.jobs, rhino.jobs_done_rows, rhino.jobs_done_batches", 0 },
    /*
     * Before a drain, as the peers' benchmarks do: a freshly filled table
     * has no statistics until autovacuum gets to it, and the steady state
     * is what is measured.  The CHECKPOINT keeps the load's dirty pages
     * from being written during the measurement.
     */
    [RB_SQL_ANALYZE] = { RB_SQL_ANALYZE, "ANALYZE of rhino.jobs", "ANALYZE rhino.jobs", 0 },
    /*
     * scale mode: a backlog of millions is measured in its steady state, in
     * which autovacuum has long made the loaded pages all-visible; without
     * it, that first vacuum of the whole table runs inside the measurement.
     */
    [RB_SQL_VACUUM] = { RB_SQL_VACUUM, "VACUUM of rhino.jobs", "VACUUM rhino.jobs", 0 },
    [RB_SQL_CHECKPOINT] = { RB_SQL_CHECKPOINT, "CHECKPOINT (needs a superuser or pg_checkpoint)", "CHECKPOINT", 0 },
    [RB_SQL_BEGIN] = { RB_SQL_BEGIN, "BEGIN", "BEGIN", 0 },
    [RB_SQL_COMMIT] = { RB_SQL_COMMIT, "COMMIT", "COMMIT", 0 },
    /* run_at of the COPY rows: COPY with a column list does not fall back to the column default. */
    [RB_SQL_NOW] = { RB_SQL_NOW, "reading the transaction's now()", "SELECT now()", 0 },
    /*
     * The id of the last job the COPY loaded, in its transaction.  One
     * session draws the ids of one COPY from the identity sequence one after
     * the other, and nothing else inserts into rhino.jobs while rhino-bench
     * runs, so the COPY's jobs are last-n+1 .. last.  (A count(*) would read
     * the whole table: under bloat mode's held snapshot, every dead row too.)
     */
    [RB_SQL_LAST_ID] = { RB_SQL_LAST_ID, "reading the ids of the jobs just loaded",
        "SELECT currval(pg_get_serial_sequence('rhino.jobs', 'id'))", 0 },
    /* The identity sequence's last id (0 before its first use), where the next load's ids begin. */
    [RB_SQL_SEQ_LAST] = { RB_SQL_SEQ_LAST, "reading rhino.jobs' id sequence",
        "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('rhino.jobs', 'id')::regclass), 0)", 0 },

    /* The server's clock and WAL position, as epoch seconds and text. */
    [RB_SQL_CLOCK] = { RB_SQL_CLOCK, "reading the server's clock and WAL position",
        "SELECT extract(epoch FROM clock_timestamp())::float8, pg_current_wal_lsn()::text",
        0 },

    /*
     * Drained?  Each test walks its own partial index (jobs_claim,
     * jobs_running) instead of a scan of the table; the clock and WAL
     * position are read in the same statement, at the moment the answer is
     * known.  max(id) of the history is the progress bar's.  The first test
     * is a scalar subquery in jobs_claim's order, not an EXISTS (which loses
     * its ORDER BY to the planner): as an EXISTS, the planner, believing
     * most rows available, picked a sequential scan that stops at the first
     * available row, and in a drain that row lies behind every job claimed
     * so far: 5 ms of the server's CPU per poll, every 10 ms, taken from the
     * rhino being measured (drain 38k -> 42k jobs/s).
     */
    [RB_SQL_DRAIN_POLL] = { RB_SQL_DRAIN_POLL, "polling rhino.jobs for unfinished jobs",
        "SELECT extract(epoch FROM clock_timestamp())::float8, pg_current_wal_lsn()::text,"
        "       (SELECT id FROM rhino.jobs WHERE state = 'available' AND queue = " RB_Q
        "         ORDER BY priority, run_at, id LIMIT 1) IS NULL"
        "   AND NOT EXISTS (SELECT 1 FROM rhino.jobs WHERE state = 'running'),"
        "       " RB_DONE_MAX_ID "",
        1 },
    /* Scale mode: are the jobs with ids $1..$2 (the first K loaded) all gone from rhino.jobs? */
    [RB_SQL_RANGE_DONE] = { RB_SQL_RANGE_DONE, "polling for the first jobs of the table",
        "SELECT extract(epoch FROM clock_timestamp())::float8,"
        "       NOT EXISTS (SELECT 1 FROM rhino.jobs WHERE id BETWEEN $1::int8 AND $2::int8),"
        "       " RB_DONE_MAX_ID "",
        2 },
    /* Trickle: every job of the queue and kind $2 finished? */
    [RB_SQL_KIND_DONE] = { RB_SQL_KIND_DONE, "polling for unfinished trickle jobs",
        "SELECT NOT EXISTS (SELECT 1 FROM rhino.jobs WHERE queue = " RB_Q " AND kind = $2)",
        2 },
    [RB_SQL_WAL_DIFF] = { RB_SQL_WAL_DIFF, "computing a WAL distance",
        "SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::int8", 2 },

    /*
     * Commits per job.  A backend sends its statistics to shared memory at
     * most once a second, and at exit; the harness's own are pushed now, and
     * rhino's backends are waited for until they are gone.
     */
    [RB_SQL_FLUSH_STATS] = { RB_SQL_FLUSH_STATS, "pg_stat_force_next_flush()",
        "SELECT pg_stat_force_next_flush()", 0 },
    [RB_SQL_XACT_COMMIT] = { RB_SQL_XACT_COMMIT, "reading pg_stat_database.xact_commit",
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()", 0 },
    /* rhino names its connections "rhino <role>" (common/rh_db.c); rhino-bench's are "rhino-bench". */
    [RB_SQL_RHINO_BACKENDS] = { RB_SQL_RHINO_BACKENDS, "counting rhino's connections",
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE 'rhino %'",
        0 },
    [RB_SQL_WORKERS_LIVE] = { RB_SQL_WORKERS_LIVE, "counting the workers of the rhino under test",
        "SELECT count(*) FROM rhino.workers w JOIN rhino.nodes n ON n.id = w.node_id"
        " WHERE n.name = $1 AND n.stopped_at IS NULL AND w.ended_at IS NULL",
        1 },

    /* The check after each run: completed, other outcomes, still live, still running. */
    [RB_SQL_COUNTS] = { RB_SQL_COUNTS, "counting the outcomes of the run",
        "SELECT (SELECT count(*) FROM rhino.jobs_done_rows WHERE queue = " RB_Q " AND state = 'completed')"
        "     + (SELECT count(*) FROM rhino.jobs_done_batches b CROSS JOIN LATERAL unnest(b.queue) q"
        "         WHERE q = " RB_Q "),"
        "       (SELECT count(*) FROM rhino.jobs_done_rows WHERE queue = " RB_Q " AND state <> 'completed'),"
        "       (SELECT count(*) FROM rhino.jobs WHERE queue = " RB_Q "),"
        "       (SELECT count(*) FROM rhino.jobs WHERE queue = " RB_Q " AND state <> 'available')",
        1 },
    /* attempted_at is the claim's now(): the first claim's start, on the server's clock. */
    [RB_SQL_FIRST_CLAIM] = { RB_SQL_FIRST_CLAIM, "reading the time of the first claim",
        "SELECT coalesce(extract(epoch FROM min(a))::float8, 0)"
        "  FROM (SELECT attempted_at FROM rhino.jobs_done_rows WHERE queue = " RB_Q
        "        UNION ALL"
        "        SELECT u.a FROM rhino.jobs_done_batches b CROSS JOIN LATERAL unnest(b.queue, b.attempted_at) u(q, a)"
        "         WHERE u.q = " RB_Q ") t(a)",
        1 },
    /*
     * Enqueue to completion, in microseconds: finished_at is now() of the
     * finalize transaction, i.e. when it began; its COMMIT comes after.
     * $2: only jobs enqueued at or after this time (the warm-up is left out).
     */
    [RB_SQL_COMPLETION_LATENCY] = { RB_SQL_COMPLETION_LATENCY, "reading the completion times of the trickle",
        "SELECT (extract(epoch FROM finished_at) * 1000000)::int8 - (payload->>'t')::int8"
        "  FROM rhino.jobs_done"
        " WHERE queue = " RB_Q " AND kind = 'bench.stamp' AND state = 'completed' AND (payload->>'t')::int8 >= $2::int8",
        2 },
    /* Bloat mode: completions between two server times ($2, $3 in epoch seconds). */
    [RB_SQL_DONE_BETWEEN] = { RB_SQL_DONE_BETWEEN, "counting the jobs finished in the window",
        "SELECT (SELECT count(*) FROM rhino.jobs_done_rows WHERE queue = " RB_Q
        "           AND finished_at >= to_timestamp($2::float8) AND finished_at < to_timestamp($3::float8))"
        "     + (SELECT count(*) FROM rhino.jobs_done_batches b CROSS JOIN LATERAL unnest(b.queue) q"
        "         WHERE q = " RB_Q
        "           AND b.finished_at >= to_timestamp($2::float8) AND b.finished_at < to_timestamp($3::float8))",
        3 },
    /* Bloat mode's backlog estimate. */
    [RB_SQL_DONE_MAX_ID] = { RB_SQL_DONE_MAX_ID, "reading the newest finished job",
        "SELECT " RB_DONE_MAX_ID, 0 },

    /* Dead tuples and sizes of the two job tables (pg_table_size includes TOAST and the free space map). */
    [RB_SQL_TABLE_STATS] = { RB_SQL_TABLE_STATS, "reading the size and dead tuples of the job tables",
        "SELECT CASE WHEN c.relname = 'jobs' THEN 'jobs' ELSE 'jobs_done' END, sum(coalesce(s.n_live_tup, 0)),"
        "       sum(coalesce(s.n_dead_tup, 0)), sum(pg_table_size(c.oid)), sum(pg_indexes_size(c.oid)),"
        "       sum(coalesce(s.autovacuum_count, 0) + coalesce(s.vacuum_count, 0))"
        "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
        " WHERE n.nspname = 'rhino' AND c.relname IN ('jobs', 'jobs_done_rows', 'jobs_done_batches')"
        " GROUP BY 1 ORDER BY 1",
        0 },

    /*
     * Bloat mode: a snapshot held open, as a long report or a forgotten
     * session would.  The SELECT is what takes the snapshot; from then on
     * VACUUM cannot remove any row version that died after it.
     */
    [RB_SQL_HOLD_BEGIN] = { RB_SQL_HOLD_BEGIN, "opening the REPEATABLE READ transaction",
        "BEGIN ISOLATION LEVEL REPEATABLE READ", 0 },
    [RB_SQL_HOLD_READ] = { RB_SQL_HOLD_READ, "taking the held snapshot",
        "SELECT count(*) FROM rhino.jobs", 0 },
};

long long rb_pg_statements;

const char *
rb_pg_sql(rb_sql_id_t id)
{
    return rb_stmts[id].sql;
}

static void
quiet_notice(void *arg, const PGresult *res)
{
    (void) arg;
    (void) res;
}

int
rb_pg_nparams(rb_sql_id_t id)
{
    return rb_stmts[id].nparams;
}

PGconn *
rb_pg_connect(const char *dsn)
{
    const char *keys[] = { "dbname", "fallback_application_name", NULL };
    const char *vals[] = { dsn, "rhino-bench", NULL };
    char        err[512];
    PGconn     *conn;

    if (rh_db_check_dsn(dsn, err, sizeof(err)) < 0)
        rb_die("%s", err);
    conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL)
        rb_die("out of memory while connecting");
    if (PQstatus(conn) != CONNECTION_OK)
        rb_die("cannot connect to the database: %s", rh_db_error(conn, NULL));
    /* "NOTICE: truncate cascades..." and the like are not for the user */
    PQsetNoticeReceiver(conn, quiet_notice, NULL);
    return conn;
}

PGresult *
rb_pg_run(PGconn *conn, rb_sql_id_t id, const char *const *params)
{
    const rb_stmt_t *s = &rb_stmts[id];
    PGresult        *res = PQexecParams(conn, s->sql, s->nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType   st = PQresultStatus(res);

    rb_pg_statements++;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[512];

        snprintf(msg, sizeof(msg), "%s", rh_db_error(conn, res));
        PQclear(res);
        rb_die("%s failed: %s", s->what, msg);
    }
    return res;
}

void
rb_pg_do(PGconn *conn, rb_sql_id_t id, const char *const *params)
{
    PQclear(rb_pg_run(conn, id, params));
}

int
rb_pg_try(PGconn *conn, rb_sql_id_t id, const char *const *params, char *err, size_t errlen)
{
    const rb_stmt_t *s = &rb_stmts[id];
    PGresult        *res = PQexecParams(conn, s->sql, s->nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType   st = PQresultStatus(res);
    int              rc = 0;

    rb_pg_statements++;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", rh_db_error(conn, res));
        rc = -1;
    }
    PQclear(res);
    return rc;
}

long long
rb_pg_int(PGconn *conn, rb_sql_id_t id, const char *const *params)
{
    PGresult *res = rb_pg_run(conn, id, params);
    long long v = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;

    PQclear(res);
    return v;
}

int
rb_pg_bool(PGconn *conn, rb_sql_id_t id, const char *const *params)
{
    PGresult *res = rb_pg_run(conn, id, params);
    int       v = PQntuples(res) > 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;

    PQclear(res);
    return v;
}

double
rb_pg_float(PGconn *conn, rb_sql_id_t id, const char *const *params)
{
    PGresult *res = rb_pg_run(conn, id, params);
    double    v = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) ? strtod(PQgetvalue(res, 0, 0), NULL) : 0;

    PQclear(res);
    return v;
}
