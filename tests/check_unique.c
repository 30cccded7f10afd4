/*
 * check_unique.c - unique jobs, throttle windows and wake-up notifications
 * (sql/003_unique.sql), through every way in: SQL, rhinoctl enqueue,
 * librhino (include/rhino-client.h), and a real rhino daemon running keyed
 * jobs.  Each test on a fresh database.
 */
#include "config.h"

#include <check.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rhino-client.h>

#include "rh_sql.h"
#include "rh_testlib.h"

/* ---- helpers --------------------------------------------------------------- */

/* rhino.enqueue_job(args): the id, and *existing. */
static long
enq(PGconn *conn, int *existing, const char *args)
{
    char  sql[1024];
    char *v;
    long  id;
    char  ex;

    snprintf(sql, sizeof(sql), "SELECT id || ' ' || existing FROM rhino.enqueue_job(%s)", args);
    v = rt_query1(conn, sql);
    ck_assert_msg(v != NULL, "no row from %s", sql);
    ck_assert_int_eq(sscanf(v, "%ld %c", &id, &ex), 2);
    if (existing != NULL)
        *existing = ex == 't';
    free(v);
    return id;
}

/* Run sql and expect it to fail with sqlstate and a message containing what. */
static void
expect_error(PGconn *conn, const char *sql, const char *sqlstate, const char *what)
{
    PGresult   *res = PQexec(conn, sql);
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "expected an error from: %s", sql);
    ck_assert_msg(st != NULL && strcmp(st, sqlstate) == 0, "SQLSTATE %s, not %s: %s", st ? st : "none", sqlstate,
                  PQresultErrorMessage(res));
    ck_assert_msg(strstr(PQresultErrorMessage(res), what) != NULL, "message lacks \"%s\": %s", what,
                  PQresultErrorMessage(res));
    PQclear(res);
}

/* The one row of an async query sent with PQsendQuery: "id existing". */
static char *
async_result(PGconn *conn)
{
    PGresult *res = PQgetResult(conn), *extra;
    char     *v;

    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "async enqueue failed: %s", PQresultErrorMessage(res));
    v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    while ((extra = PQgetResult(conn)) != NULL)
        PQclear(extra);
    return v;
}

/* ---- notifications --------------------------------------------------------- */

typedef struct {
    char   *payload[256];
    int     n;
} notes_t;

/*
 * LISTEN as a master does, and say in rhino.nodes that this "node" has an
 * idle worker: producers notify only then (rhino.wake).
 */
static PGconn *
listener(const char *dsn)
{
    PGconn *l = rt_connect(dsn);

    rt_exec(l, "LISTEN rhino_jobs");
    rt_exec(l, "INSERT INTO rhino.nodes (name, pid, lease_until, idle)"
               " VALUES ('test-listener', 1, now() + interval '1 hour', true)");
    return l;
}

/*
 * Collect what arrives on rhino_jobs until the payload "marker", which the
 * test sends last from a transaction of its own: notifications arrive in
 * commit order, so everything before the marker has arrived by then, and
 * nothing sent before it can still come.  The 30 s limit is for failure.
 */
static void
collect(PGconn *l, PGconn *sender, notes_t *nn)
{
    double deadline = rt_now() + 30;

    rt_exec(sender, "NOTIFY rhino_jobs, 'marker'");
    memset(nn, 0, sizeof(*nn));
    for (;;) {
        struct pollfd pfd = { PQsocket(l), POLLIN, 0 };
        PGnotify     *n;

        ck_assert_int_eq(PQconsumeInput(l), 1);
        while ((n = PQnotifies(l)) != NULL) {
            int marker = strcmp(n->extra, "marker") == 0;

            ck_assert_str_eq(n->relname, "rhino_jobs");
            if (!marker) {
                ck_assert_int_lt(nn->n, 256);
                nn->payload[nn->n++] = strdup(n->extra);
            }
            PQfreemem(n);
            if (marker)
                return;
        }
        ck_assert_msg(rt_now() < deadline, "the marker notification never arrived");
        poll(&pfd, 1, 100);
    }
}

static int
notes_count(const notes_t *nn, const char *queue)
{
    int c = 0;

    for (int i = 0; i < nn->n; i++)
        c += strcmp(nn->payload[i], queue) == 0;
    return c;
}

static void
notes_free(notes_t *nn)
{
    for (int i = 0; i < nn->n; i++)
        free(nn->payload[i]);
    nn->n = 0;
}

/* ============================================================================ */
/* SQL                                                                            */
/* ============================================================================ */

START_TEST(test_sql_duplicate_returns_live_id)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    long    a, b, c, d;
    int     ex;

    a = enq(conn, &ex, "'k', unique_key => 'order-1'");
    ck_assert_int_eq(ex, 0);
    b = enq(conn, &ex, "'k', '{\"other\": true}', unique_key => 'order-1'");
    ck_assert_int_eq(ex, 1);
    ck_assert_int_eq(a, b);
    c = enq(conn, &ex, "'k', unique_key => 'order-2'");
    ck_assert_int_eq(ex, 0);
    ck_assert_int_ne(a, c);
    /* rhino.enqueue returns the same ids */
    ck_assert_int_eq(rt_query_longf(conn, "SELECT rhino.enqueue('k', unique_key => 'order-1')"), a);
    /* jobs without a key are never folded */
    d = rt_query_longf(conn, "SELECT rhino.enqueue('k')");
    ck_assert_int_ne(d, rt_query_longf(conn, "SELECT rhino.enqueue('k')"));
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE unique_key = 'order-1'"), 1);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 4);
    /* the first payload stays */
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE id = %ld AND payload = '{}'", a), 1);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* Version 1's calls still reach the one rhino.enqueue: positional, named, untyped. */
START_TEST(test_sql_v1_calls_still_work)
{
    char       *dsn = rt_db_create_migrated();
    PGconn     *conn = rt_connect(dsn);
    const char *p[6] = { "untyped", "{\"a\": 1}", "q", NULL, "7", "3" };
    PGresult   *res;

    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                                  " WHERE n.nspname = 'rhino' AND p.proname = 'enqueue'"), 1);
    rt_exec(conn, "SELECT rhino.enqueue('a', '{}', 'q', now(), 5, 3)");
    rt_exec(conn, "SELECT rhino.enqueue('b', priority => 5::smallint, max_attempts => 2)");
    rt_exec(conn, "SELECT rhino.enqueue('c', '{}', 'q', now(), 1, 25, 30)");
    /* node-postgres and JDBC send untyped parameters */
    res = PQexecParams(conn, "SELECT rhino.enqueue($1, $2, $3, coalesce($4, now()), $5, $6)", 6, NULL, p, NULL,
                       NULL, 0);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
    PQclear(res);
    /* the README's node-postgres call: named arguments, every parameter untyped */
    for (int i = 0; i < 2; i++) {
        const char *np[6] = { "send_invoice", "{\"order\": 1}", "mail", "1", "invoice:1", "10 minutes" };

        res = PQexecParams(conn, "SELECT rhino.enqueue($1, $2, queue => $3, priority => $4, unique_key => $5,"
                                 "                     unique_for => $6) AS id", 6, NULL, np, NULL, NULL, 0);
        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
        PQclear(res);
    }
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE unique_key = 'invoice:1' AND queue = 'mail'"
                                  " AND priority = 1"), 1);
    /* the README's one-statement batch */
    rt_exec(conn, "SELECT rhino.enqueue('resize', p) FROM jsonb_array_elements('[{\"image\": 1}, {\"image\": 2}]')"
                  " AS p");
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'resize'"), 2);
    rt_exec(conn, "DELETE FROM rhino.jobs WHERE kind IN ('send_invoice', 'resize')");
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE unique_key IS NULL"), 4);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT priority FROM rhino.jobs WHERE kind = 'untyped'"), 7);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT timeout::int FROM rhino.jobs WHERE kind = 'c'"), 30);
    expect_error(conn, "SELECT rhino.enqueue('x', priority => 40000)", "22003", "smallint out of range");
    PQfinish(conn);
    free(dsn);
}
END_TEST

/*
 * The scope: every live state holds the key; a finished job frees it.  The
 * transitions are made with the daemon's own statement shapes (UPDATE in
 * place, DELETE + INSERT into the history).
 */
START_TEST(test_sql_scope_live_states_then_free)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    long    id, again;
    int     ex;
    static const char *const states[] = { "available", "running", "retryable", "scheduled" };

    id = enq(conn, &ex, "'k', unique_key => 'key'");
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        char sql[256];

        snprintf(sql, sizeof(sql), "UPDATE rhino.jobs SET state = '%s', attempt = attempt + 1 WHERE id = %ld",
                 states[i], id);
        rt_exec(conn, sql);
        again = enq(conn, &ex, "'k', unique_key => 'key'");
        ck_assert_msg(again == id && ex, "state %s: got %ld (existing %d), want %ld", states[i], again, ex, id);
    }
    /* completed: moved to the history, key and all; the key is free again */
    rt_exec(conn, "WITH d AS (DELETE FROM rhino.jobs RETURNING *)"
                  " INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, max_attempts,"
                  "                              run_at, created_at, unique_key)"
                  " SELECT id, queue, kind, payload, 'completed', priority, attempt, max_attempts, run_at, created_at,"
                  "        unique_key FROM d");
    again = enq(conn, &ex, "'k', unique_key => 'key'");
    ck_assert_int_eq(ex, 0);
    ck_assert_int_ne(again, id);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.all_jobs WHERE unique_key = 'key'"), 2);

    /* a scheduled job holds its key until it has run */
    id = enq(conn, &ex, "'later', run_at => now() + interval '1 day', unique_key => 'sched'");
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE id = %ld AND state = 'scheduled'", id), 1);
    ck_assert_int_eq(enq(conn, &ex, "'later', unique_key => 'sched'"), id);
    ck_assert_int_eq(ex, 1);
    PQfinish(conn);
    free(dsn);
}
END_TEST

START_TEST(test_sql_throttle_window)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    long    first, id;
    int     ex;

    first = enq(conn, &ex, "'k', unique_key => 'w', unique_for => interval '1 hour'");
    ck_assert_int_eq(ex, 0);
    ck_assert_int_eq(enq(conn, &ex, "'k', unique_key => 'w', unique_for => interval '1 hour'"), first);
    ck_assert_int_eq(ex, 1);
    /* the first job completes: within the window, still the first job's id */
    rt_exec(conn, "DELETE FROM rhino.jobs");
    ck_assert_int_eq(enq(conn, &ex, "'k', unique_key => 'w', unique_for => interval '1 hour'"), first);
    ck_assert_int_eq(ex, 1);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 0);
    /* a plain unique_key enqueue looks at live jobs only */
    id = enq(conn, &ex, "'k', unique_key => 'w'");
    ck_assert_int_eq(ex, 0);
    ck_assert_int_ne(id, first);
    /* the window expires (moved back rather than waited for) while that job is still live */
    rt_exec(conn, "UPDATE rhino.unique_windows SET expires_at = now() - interval '1 s'");
    ck_assert_int_eq(enq(conn, &ex, "'k', unique_key => 'w', unique_for => interval '1 hour'"), id);
    ck_assert_int_eq(ex, 1);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT job_id FROM rhino.unique_windows WHERE unique_key = 'w'"), id);
    /* expired with no live job: a new job and a new window */
    rt_exec(conn, "DELETE FROM rhino.jobs");
    rt_exec(conn, "UPDATE rhino.unique_windows SET expires_at = now() - interval '1 s'");
    first = enq(conn, &ex, "'k', unique_key => 'w', unique_for => interval '1 hour'");
    ck_assert_int_eq(ex, 0);
    ck_assert_int_ne(first, id);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT job_id FROM rhino.unique_windows WHERE unique_key = 'w'"), first);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.unique_windows"
                                  " WHERE expires_at > now() + interval '59 min'"), 1);

    /* the reaper's prune: expired windows go, live ones stay */
    enq(conn, &ex, "'k', unique_key => 'old', unique_for => interval '1 hour'");
    rt_exec(conn, "UPDATE rhino.unique_windows SET expires_at = now() - interval '1 s' WHERE unique_key = 'old'");
    rt_exec(conn, rh_sql(RH_STMT_UNIQUE_PRUNE)->sql);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.unique_windows WHERE unique_key = 'old'"), 0);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.unique_windows WHERE unique_key = 'w'"), 1);
    PQfinish(conn);
    free(dsn);
}
END_TEST

START_TEST(test_sql_bad_arguments)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);

    expect_error(conn, "SELECT rhino.enqueue('k', unique_for => interval '1 min')", "22023",
                 "unique_for needs a unique_key");
    expect_error(conn, "SELECT rhino.enqueue('k', unique_key => 'a', unique_for => interval '-1 min')", "22023",
                 "unique_for must be longer than 0");
    expect_error(conn, "SELECT rhino.enqueue('k', unique_key => '')", "22023", "unique_key must be 1 to 512");
    expect_error(conn, "SELECT rhino.enqueue('k', unique_key => repeat('x', 513))", "22023",
                 "unique_key must be 1 to 512");
    /* NaN sorts above every number: "timeout > 0" alone let it in, and the job ran with no deadline */
    expect_error(conn, "SELECT rhino.enqueue('k', timeout => 'NaN')", "22023",
                 "timeout must be a finite number of seconds above 0, not NaN");
    expect_error(conn, "SELECT rhino.enqueue_job('k', timeout => 'Infinity')", "22023",
                 "timeout must be a finite number of seconds above 0, not Infinity");
    expect_error(conn, "SELECT rhino.enqueue('k', unique_key => 'u', timeout => 0)", "22023",
                 "timeout must be a finite number of seconds above 0, not 0");
    expect_error(conn, "SELECT rhino.enqueue('k', run_at => '-infinity')", "22023",
                 "run_at must be a finite time, not -infinity");
    expect_error(conn, "SELECT rhino.enqueue_job('k', run_at => 'infinity', unique_key => 'u')", "22023",
                 "run_at must be a finite time, not infinity");
    /* COPY and INSERT bypass the function: the constraint refuses them too */
    expect_error(conn, "INSERT INTO rhino.jobs (kind, timeout) VALUES ('k', 'NaN')", "23514", "jobs_timeout");
    expect_error(conn, "INSERT INTO rhino.jobs (kind, timeout) VALUES ('k', 'Infinity')", "23514", "jobs_timeout");
    expect_error(conn, "INSERT INTO rhino.jobs (kind, run_at) VALUES ('k', '-infinity')", "23514", "jobs_run_at_finite");
    expect_error(conn, "INSERT INTO rhino.jobs (kind, run_at) VALUES ('k', 'infinity')", "23514", "jobs_run_at_finite");
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 0);
    PQfinish(conn);
    free(dsn);
}
END_TEST

START_TEST(test_sql_rollback_leaves_nothing)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    int     ex;

    rt_exec(conn, "BEGIN");
    enq(conn, &ex, "'k', unique_key => 'r'");
    enq(conn, &ex, "'k', unique_key => 'rw', unique_for => interval '1 hour'");
    rt_exec(conn, "ROLLBACK");
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 0);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.unique_windows"), 0);
    enq(conn, &ex, "'k', unique_key => 'r'");
    ck_assert_int_eq(ex, 0);
    enq(conn, &ex, "'k', unique_key => 'rw', unique_for => interval '1 hour'");
    ck_assert_int_eq(ex, 0);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/*
 * Two connections race one key: the second waits for the first's
 * transaction, then returns its job if it committed, or inserts its own if
 * it rolled back.  For a live key and for a throttle window.
 */
static void
race(const char *args, int commit_first)
{
    char   *dsn = rt_db_create_migrated(), sql[512], *v, expect[64];
    PGconn *a = rt_connect(dsn), *b = rt_connect(dsn), *obs = rt_connect(dsn);
    long    id_a;
    int     ex;

    rt_exec(a, "BEGIN");
    id_a = enq(a, &ex, args);
    ck_assert_int_eq(ex, 0);
    snprintf(sql, sizeof(sql), "SELECT id || ' ' || existing FROM rhino.enqueue_job(%s)", args);
    ck_assert_int_eq(PQsendQuery(b, sql), 1);
    ck_assert_msg(rt_wait_lock(obs, b, 30), "the second enqueue never waited for the first");
    rt_exec(a, commit_first ? "COMMIT" : "ROLLBACK");
    v = async_result(b);
    if (commit_first) {
        snprintf(expect, sizeof(expect), "%ld true", id_a);
        ck_assert_str_eq(v, expect);
    } else {
        ck_assert_msg(strtol(v, NULL, 10) != id_a && strstr(v, " f") != NULL, "after a rollback: %s", v);
    }
    free(v);
    ck_assert_int_eq(rt_query_longf(obs, "SELECT count(*) FROM rhino.jobs"), 1);
    PQfinish(a);
    PQfinish(b);
    PQfinish(obs);
    free(dsn);
}

START_TEST(test_sql_race_commit)
{
    race("'k', unique_key => 'race'", 1);
}
END_TEST

START_TEST(test_sql_race_rollback)
{
    race("'k', unique_key => 'race'", 0);
}
END_TEST

START_TEST(test_sql_race_window_commit)
{
    race("'k', unique_key => 'race', unique_for => interval '1 hour'", 1);
}
END_TEST

START_TEST(test_sql_race_window_rollback)
{
    race("'k', unique_key => 'race', unique_for => interval '1 hour'", 0);
}
END_TEST

/* Unforced: two connections fire at once, many rounds; one job per key every time. */
START_TEST(test_sql_race_free_running)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *a = rt_connect(dsn), *b = rt_connect(dsn);

    for (int round = 0; round < 30; round++) {
        char  sql[256], *va, *vb;
        const char *window = round % 2 ? ", unique_for => interval '1 hour'" : "";

        snprintf(sql, sizeof(sql), "SELECT id || ' ' || existing FROM rhino.enqueue_job('k', unique_key => 'r%d'%s)",
                 round, window);
        ck_assert_int_eq(PQsendQuery(a, sql), 1);
        ck_assert_int_eq(PQsendQuery(b, sql), 1);
        va = async_result(a);
        vb = async_result(b);
        ck_assert_int_eq(strtol(va, NULL, 10), strtol(vb, NULL, 10));
        ck_assert_msg((strstr(va, " t") != NULL) != (strstr(vb, " t") != NULL), "round %d: %s / %s", round, va, vb);
        free(va);
        free(vb);
    }
    ck_assert_int_eq(rt_query_longf(a, "SELECT count(*) FROM rhino.jobs"), 30);
    PQfinish(a);
    PQfinish(b);
    free(dsn);
}
END_TEST

/* ============================================================================ */
/* wake-ups                                                                       */
/* ============================================================================ */

/* While no node has an idle worker, producers do not notify: NOTIFY serializes commits. */
START_TEST(test_no_notify_while_no_worker_idle)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn), *l = listener(dsn);
    notes_t nn;

    rt_exec(conn, "UPDATE rhino.nodes SET idle = false");
    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'busy')");
    collect(l, conn, &nn);
    ck_assert_int_eq(notes_count(&nn, "busy"), 0);
    /* a stopped node's idle flag does not count either */
    rt_exec(conn, "UPDATE rhino.nodes SET idle = true, stopped_at = now()");
    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'busy')");
    collect(l, conn, &nn);
    ck_assert_int_eq(notes_count(&nn, "busy"), 0);
    rt_exec(conn, "UPDATE rhino.nodes SET stopped_at = NULL");
    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'busy')");
    collect(l, conn, &nn);
    ck_assert_int_eq(notes_count(&nn, "busy"), 1);
    PQfinish(l);
    PQfinish(conn);
    free(dsn);
}
END_TEST

START_TEST(test_notify_once_per_queue_per_transaction)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn), *l = listener(dsn);
    notes_t nn;
    int     ex;

    /* one transaction: 3 jobs of a, 2 of b, a scheduled one of c, a duplicate of a keyed job of d */
    rt_exec(conn, "BEGIN");
    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'a') FROM generate_series(1, 3)");
    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'b') FROM generate_series(1, 2)");
    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'c', run_at => now() + interval '1 hour')");
    rt_exec(conn, "COMMIT");
    collect(l, conn, &nn);
    ck_assert_int_eq(notes_count(&nn, "a"), 1);
    ck_assert_int_eq(notes_count(&nn, "b"), 1);
    ck_assert_int_eq(nn.n, 2);            /* nothing for the scheduled job */
    notes_free(&nn);

    /* two transactions: one each; an existing keyed job: none; a rolled back one: none */
    enq(conn, &ex, "'k', queue => 'd', unique_key => 'dk'");
    enq(conn, &ex, "'k', queue => 'd'");
    enq(conn, &ex, "'k', queue => 'e', unique_key => 'dk'");
    ck_assert_int_eq(ex, 1);
    rt_exec(conn, "BEGIN");
    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'f')");
    rt_exec(conn, "ROLLBACK");
    collect(l, conn, &nn);
    ck_assert_int_eq(notes_count(&nn, "d"), 2);
    ck_assert_int_eq(nn.n, 2);
    notes_free(&nn);
    PQfinish(conn);
    PQfinish(l);
    free(dsn);
}
END_TEST

/* ============================================================================ */
/* rhinoctl enqueue                                                               */
/* ============================================================================ */

START_TEST(test_ctl_unique_key)
{
    char   *dsn = rt_db_create_migrated(), *out, *err, expect[64];
    PGconn *conn;
    long    id;
    int     rc;

    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", "--unique-key", "u1", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    id = strtol(out, NULL, 10);
    snprintf(expect, sizeof(expect), "%ld new\n", id);
    ck_assert_str_eq(out, expect);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", "{\"x\": 1}", "--unique-key", "u1", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    snprintf(expect, sizeof(expect), "%ld existing\n", id);
    ck_assert_str_eq(out, expect);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", "--unique-key", "u1", "--json", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    snprintf(expect, sizeof(expect), "{\"id\":%ld,\"existing\":true}\n", id);
    ck_assert_str_eq(out, expect);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", "--json", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(out, "\"existing\":false}\n") != NULL, "%s", out);
    free(out);
    free(err);

    /* a window: the second enqueue gets the first job even after it finished */
    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", "--unique-key", "w", "--unique-for", "1 hour", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    id = strtol(out, NULL, 10);
    free(out);
    free(err);
    conn = rt_connect(dsn);
    rt_exec(conn, "DELETE FROM rhino.jobs WHERE unique_key = 'w'");
    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", "--unique-key", "w", "--unique-for", "90 s", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    snprintf(expect, sizeof(expect), "%ld existing\n", id);
    ck_assert_str_eq(out, expect);
    free(out);
    free(err);

    /* --concurrency-key is stored, one job and --bulk */
    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "ck", "--concurrency-key", "tenant-7", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(out);
    free(err);
    rc = rt_ctl(dsn, "{}\n{}\n", &out, &err, "enqueue", "--bulk", "ckb", "--concurrency-key", "tenant\t8", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'ck' AND concurrency_key = 'tenant-7'"),
                     1);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'ckb'"
                                  " AND concurrency_key = E'tenant\\t8'"), 2);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE unique_key = 'u1'"), 1);
    PQfinish(conn);
    free(dsn);
}
END_TEST

START_TEST(test_ctl_usage_errors)
{
    static const char *const usage[][8] = {
        { "enqueue", "k", "--unique-for", "1 min", NULL },
        { "enqueue", "--bulk", "k", "--unique-key", "x", NULL },
        { "enqueue", "--bulk", "k", "--json", NULL },
        { "stats", "--unique-key", "x", NULL },
        { "enqueue", "k", "--unique-key", "", NULL },
        { "enqueue", "k", "--concurrency-key", "", NULL },
    };
    char *dsn = rt_db_create_migrated(), *out, *err;
    int   rc;

    for (size_t i = 0; i < sizeof(usage) / sizeof(usage[0]); i++) {
        /* no RHINO_DSN: a usage error must not need the database */
        rc = rt_ctl(NULL, NULL, &out, &err, usage[i][0], usage[i][1], usage[i][2], usage[i][3], usage[i][4],
                 usage[i][5], NULL);
        ck_assert_msg(rc == 2, "case %zu: exit %d: %s", i, rc, err);
        ck_assert_str_eq(out, "");
        free(out);
        free(err);
    }
    rc = rt_ctl(NULL, NULL, &out, &err, "enqueue", "k", "--unique-for", "1 min", NULL);
    ck_assert_msg(strstr(err, "--unique-for needs --unique-key") != NULL, "%s", err);
    free(out);
    free(err);
    /* a duration the server cannot read: named as the option, exit 1, nothing enqueued */
    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", "--unique-key", "x", "--unique-for", "soon", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "--unique-for") != NULL && strstr(err, "interval") != NULL, "%s", err);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", "--unique-key", "x", "--unique-for", "-5 min", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "not longer than 0") != NULL, "%s", err);
    free(out);
    free(err);
    {
        PGconn *conn = rt_connect(dsn);

        ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 0);
        PQfinish(conn);
    }
    free(dsn);
}
END_TEST

/* --bulk: one wake-up for the whole COPY, none for a future --run-at, none if the COPY fails. */
START_TEST(test_ctl_bulk_notifies_once)
{
    char   *dsn = rt_db_create_migrated(), *out, *err;
    PGconn *conn = rt_connect(dsn), *l = listener(dsn);
    notes_t nn;
    int     rc;

    rc = rt_ctl(dsn, "{}\n{}\n{}\n", &out, &err, "enqueue", "--bulk", "k", "--queue", "bulkq", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_str_eq(out, "enqueued 3 jobs\n");
    free(out);
    free(err);
    rc = rt_ctl(dsn, "{}\n", &out, &err, "enqueue", "--bulk", "k", "--queue", "later", "--run-at", "+1 hour", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(out);
    free(err);
    rc = rt_ctl(dsn, "{}\nnope\n", &out, &err, "enqueue", "--bulk", "k", "--queue", "bad", NULL);
    ck_assert_int_eq(rc, 1);
    free(out);
    free(err);
    collect(l, conn, &nn);
    ck_assert_int_eq(notes_count(&nn, "bulkq"), 1);
    ck_assert_int_eq(nn.n, 1);
    notes_free(&nn);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 4);
    PQfinish(conn);
    PQfinish(l);
    free(dsn);
}
END_TEST

/* ============================================================================ */
/* librhino                                                                       */
/* ============================================================================ */

START_TEST(test_client_enqueue_one)
{
    char              *dsn = rt_db_create_migrated();
    PGconn            *conn = rt_connect(dsn);
    rhino_error        err;
    int64_t            id, id2;
    bool               existing;
    double             later = 4102444800.5;     /* 2100-01-01T00:00:00.5Z */
    rhino_enqueue_opts o = { .queue = "mail", .priority = -3, .max_attempts = 4, .timeout = 2.5,
                             .unique_key = "inv-1", .concurrency_key = "tenant-1" };
    char              *v;

    ck_assert_msg(rhino_enqueue(conn, "send", "{\"n\": 1}", &o, &id, &existing, &err) == 0, "%s", err.message);
    ck_assert(!existing);
    ck_assert_msg(rhino_enqueue(conn, "send", NULL, &o, &id2, &existing, &err) == 0, "%s", err.message);
    ck_assert(existing);
    ck_assert_int_eq(id, id2);
    v = rt_query1(conn, "SELECT concat_ws('|', kind, queue, payload::text, priority, max_attempts, timeout, state,"
                        "                 unique_key, concurrency_key) FROM rhino.jobs");
    ck_assert_str_eq(v, "send|mail|{\"n\": 1}|-3|4|2.5|available|inv-1|tenant-1");
    free(v);

    /* defaults, and a run_at in the future */
    ck_assert_msg(rhino_enqueue(conn, "plain", NULL, NULL, &id, NULL, &err) == 0, "%s", err.message);
    v = rt_query1(conn, "SELECT concat_ws('|', queue, payload::text, priority, max_attempts, state,"
                        "                 timeout IS NULL, unique_key IS NULL) FROM rhino.jobs WHERE kind = 'plain'");
    ck_assert_str_eq(v, "default|{}|0|25|available|t|t");
    free(v);
    o = (rhino_enqueue_opts) { .run_at = &later };
    ck_assert_msg(rhino_enqueue(conn, "later", NULL, &o, NULL, NULL, &err) == 0, "%s", err.message);
    v = rt_query1(conn, "SELECT state || '|' || (run_at = '2100-01-01 00:00:00.5+00') FROM rhino.jobs"
                        " WHERE kind = 'later'");
    ck_assert_str_eq(v, "scheduled|true");
    free(v);

    /* a throttle window */
    o = (rhino_enqueue_opts) { .unique_key = "w", .unique_for = 3600 };
    ck_assert_msg(rhino_enqueue(conn, "w", NULL, &o, &id, &existing, &err) == 0, "%s", err.message);
    ck_assert(!existing);
    rt_exec(conn, "DELETE FROM rhino.jobs WHERE kind = 'w'");
    ck_assert_msg(rhino_enqueue(conn, "w", NULL, &o, &id2, &existing, &err) == 0, "%s", err.message);
    ck_assert(existing);
    ck_assert_int_eq(id, id2);
    /* autocommit stays autocommit: nothing left open */
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* Bad arguments are refused before anything is sent: the caller's transaction lives on. */
START_TEST(test_client_bad_arguments)
{
    static const struct {
        const char        *kind, *payload;
        rhino_enqueue_opts o;
        const char        *what;
    } cases[] = {
        { NULL, NULL, { 0 }, "kind must be 1 to 255" },
        { "", NULL, { 0 }, "kind must be 1 to 255" },
        { "k", "{\"a\": nope}", { 0 }, "payload is not valid JSON: unexpected character at byte 6" },
        { "k", "{\"a\": 1", { 0 }, "payload is not valid JSON: unexpected end" },
        { "k", "[1, 2] 3", { 0 }, "more after the value" },
        { "k", "\"tab\tin string\"", { 0 }, "control character" },
        { "k", NULL, { .priority = 32768 }, "priority 32768 is outside -32768..32767" },
        { "k", NULL, { .max_attempts = -1 }, "max_attempts must be at least 1" },
        { "k", NULL, { .timeout = -1 }, "timeout must be" },
        { "k", NULL, { .timeout = NAN }, "timeout must be" },
        { "k", NULL, { .timeout = INFINITY }, "timeout must be" },
        { "k", NULL, { .queue = "" }, "queue must be 1 to 255" },
        { "k", NULL, { .unique_key = "" }, "unique_key must be 1 to 512" },
        { "k", NULL, { .unique_for = 60 }, "unique_for needs a unique_key" },
        { "k", NULL, { .concurrency_key = "" }, "concurrency_key is empty" },
    };
    char       *dsn = rt_db_create_migrated();
    PGconn     *conn = rt_connect(dsn);
    rhino_error err;
    int64_t     id;

    rt_exec(conn, "BEGIN");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&err, 'x', sizeof(err));
        ck_assert_int_eq(rhino_enqueue(conn, cases[i].kind, cases[i].payload, &cases[i].o, &id, NULL, &err), -1);
        ck_assert_msg(strstr(err.message, "rhino_enqueue: ") == err.message, "case %zu: %s", i, err.message);
        ck_assert_msg(strstr(err.message, cases[i].what) != NULL, "case %zu: %s", i, err.message);
        ck_assert_str_eq(err.sqlstate, "");
        ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_INTRANS);
    }
    /* a bad object key: the offset is the key's opening quote (it was p - s with p NULL, undefined) */
    ck_assert_int_eq(rhino_enqueue(conn, "k", "{\"a\x01\":1}", NULL, &id, NULL, &err), -1);
    ck_assert_str_eq(err.message, "rhino_enqueue: payload is not valid JSON: control character in a string "
                                  "(escape it) at byte 1");
    ck_assert_int_eq(rhino_enqueue(conn, "k", "{\"ok\": 1, \"a\\q\": 1}", NULL, &id, NULL, &err), -1);
    ck_assert_str_eq(err.message, "rhino_enqueue: payload is not valid JSON: bad escape in a string at byte 10");
    /* the many path names the job */
    {
        rhino_job_spec jobs[3] = { { "k", "{}", { 0 } }, { "k", "{}", { 0 } }, { "k", "{\"x\":}", { 0 } } };

        ck_assert_int_eq(rhino_enqueue_many(conn, jobs, 3, NULL, NULL, &err), -1);
        ck_assert_msg(strstr(err.message, "rhino_enqueue_many: jobs[2]: payload is not valid JSON") != NULL, "%s",
                      err.message);
    }
    /* the transaction is intact: this commits */
    ck_assert_msg(rhino_enqueue(conn, "k", NULL, NULL, &id, NULL, &err) == 0, "%s", err.message);
    rt_exec(conn, "COMMIT");
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 1);

    /* a failed transaction is refused with advice; NULL err is allowed */
    rt_exec(conn, "BEGIN");
    PQclear(PQexec(conn, "SELECT no_such_column"));
    ck_assert_int_eq(rhino_enqueue(conn, "k", NULL, NULL, &id, NULL, &err), -1);
    ck_assert_msg(strstr(err.message, "roll it back first") != NULL, "%s", err.message);
    ck_assert_int_eq(rhino_enqueue(conn, "k", NULL, NULL, &id, NULL, NULL), -1);
    rt_exec(conn, "ROLLBACK");
    ck_assert_int_eq(rhino_enqueue(NULL, "k", NULL, NULL, &id, NULL, &err), -1);
    ck_assert_msg(strstr(err.message, "conn is NULL") != NULL, "%s", err.message);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* A server-side error has its SQLSTATE, and the message does not quote the payload. */
START_TEST(test_client_server_error_no_payload)
{
    char          *dsn = rt_db_create_migrated();
    PGconn        *conn = rt_connect(dsn);
    rhino_error    err;
    int64_t        id;
    const char    *secret = "{\"card\": \"4111-hunter2\\u0000\"}";     /* jsonb refuses \u0000 */
    rhino_job_spec jobs[3] = { { "k", "{}", { 0 } }, { "k", "{}", { 0 } }, { "k", NULL, { 0 } } };

    ck_assert_int_eq(rhino_enqueue(conn, "k", secret, NULL, &id, NULL, &err), -1);
    ck_assert_str_eq(err.sqlstate, "22P05");
    ck_assert_msg(strstr(err.message, "hunter2") == NULL, "the payload leaked: %s", err.message);
    ck_assert_msg(strstr(err.message, "rhino_enqueue: ") == err.message, "%s", err.message);
    /* the COPY path names the row */
    jobs[2].payload = secret;
    ck_assert_int_eq(rhino_enqueue_many(conn, jobs, 3, NULL, NULL, &err), -1);
    ck_assert_str_eq(err.sqlstate, "22P05");
    ck_assert_msg(strstr(err.message, "rhino_enqueue_many: jobs[2]: ") == err.message, "%s", err.message);
    ck_assert_msg(strstr(err.message, "hunter2") == NULL, "the payload leaked: %s", err.message);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 0);
    PQfinish(conn);
    free(dsn);
}
END_TEST

START_TEST(test_client_many_copy)
{
    enum { N = 2000 };
    char           *dsn = rt_db_create_migrated();
    PGconn         *conn = rt_connect(dsn), *l = listener(dsn);
    rhino_error     err;
    rhino_job_spec *jobs = calloc(N, sizeof(*jobs));
    int64_t        *ids = calloc(N, sizeof(*ids));
    bool           *ex = calloc(N, sizeof(*ex));
    char          (*payloads)[64] = calloc(N, sizeof(*payloads));
    double          later = 4102444800.0;
    notes_t         nn;

    for (int i = 0; i < N; i++) {
        snprintf(payloads[i], sizeof(payloads[i]), "{\"i\": %d, \"s\": \"tab\\there\"}", i);
        jobs[i].kind = i % 2 ? "odd" : "even";
        jobs[i].payload = payloads[i];
        jobs[i].opts.queue = i % 3 ? "q1" : "q2";
        jobs[i].opts.priority = i % 5;
        jobs[i].opts.concurrency_key = i % 7 ? NULL : "seven";
        jobs[i].opts.timeout = i % 11 ? 0 : 11;
        ex[i] = true;
    }
    jobs[5].opts.queue = "q3";
    jobs[5].opts.run_at = &later;          /* q3 receives only a scheduled job: no wake-up */

    rt_exec(conn, "BEGIN");
    ck_assert_msg(rhino_enqueue_many(conn, jobs, N, ids, ex, &err) == 0, "%s", err.message);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_INTRANS);
    rt_exec(conn, "COMMIT");
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), N);
    for (int i = 0; i < N; i += 97) {
        ck_assert(!ex[i]);
        ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE id = %lld AND (payload->>'i')::int = %d"
                                      " AND priority = %d AND payload->>'s' = E'tab\\there'",
                                (long long) ids[i], i, i % 5), 1);
    }
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(DISTINCT id) FROM rhino.jobs"), N);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE state = 'scheduled'"), 1);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE id = %lld AND state = 'scheduled'"
                                  " AND queue = 'q3' AND run_at = '2100-01-01 00:00:00+00'", (long long) ids[5]), 1);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE concurrency_key = 'seven'"), (N + 6) / 7);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE timeout = 11"), (N + 10) / 11);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE max_attempts <> 25"), 0);
    collect(l, conn, &nn);
    ck_assert_int_eq(notes_count(&nn, "q1"), 1);
    ck_assert_int_eq(notes_count(&nn, "q2"), 1);
    ck_assert_int_eq(nn.n, 2);
    notes_free(&nn);

    /* without ids and run_at (the plainest COPY), in autocommit */
    for (int i = 0; i < N; i++)
        jobs[i].opts.run_at = NULL;
    ck_assert_msg(rhino_enqueue_many(conn, jobs, N, NULL, NULL, &err) == 0, "%s", err.message);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 2 * N);
    ck_assert_int_eq(rhino_enqueue_many(conn, jobs, 0, NULL, NULL, &err), 0);
    free(jobs);
    free(ids);
    free(ex);
    free(payloads);
    PQfinish(conn);
    PQfinish(l);
    free(dsn);
}
END_TEST

START_TEST(test_client_many_unique)
{
    char          *dsn = rt_db_create_migrated();
    PGconn        *conn = rt_connect(dsn);
    rhino_error    err;
    int64_t        live, ids[5];
    bool           ex[5];
    rhino_job_spec jobs[5] = {
        { "k", "{\"n\": 0}", { .unique_key = "a" } },
        { "k", "{\"n\": 1}", { .unique_key = "b", .queue = "other" } },
        { "k", "{\"n\": 2}", { .unique_key = "a" } },             /* a repeat within the batch */
        { "k", "{\"n\": 3}", { .unique_key = "live" } },          /* already in the database */
        { "k", "{\"n\": 4}", { 0 } },                              /* no key: a new job */
    };

    ck_assert_msg(rhino_enqueue(conn, "k", NULL, &(rhino_enqueue_opts) { .unique_key = "live" }, &live, NULL,
                                &err) == 0, "%s", err.message);
    ck_assert_msg(rhino_enqueue_many(conn, jobs, 5, ids, ex, &err) == 0, "%s", err.message);
    ck_assert(!ex[0] && !ex[1] && ex[2] && ex[3] && !ex[4]);
    ck_assert_int_eq(ids[2], ids[0]);
    ck_assert_int_eq(ids[3], live);
    ck_assert_int_ne(ids[0], ids[1]);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 4);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE id = %lld AND queue = 'other'"
                                  " AND payload = '{\"n\": 1}'", (long long) ids[1]), 1);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE id = %lld AND unique_key IS NULL",
                            (long long) ids[4]), 1);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* Everything librhino does inside a transaction that rolls back leaves nothing behind. */
START_TEST(test_client_rollback_leaves_nothing)
{
    char          *dsn = rt_db_create_migrated();
    PGconn        *conn = rt_connect(dsn), *l = listener(dsn);
    rhino_error    err;
    int64_t        id, ids[2];
    notes_t        nn;
    rhino_job_spec plain[2] = { { "k", NULL, { 0 } }, { "k", NULL, { 0 } } };
    rhino_job_spec keyed[2] = { { "k", NULL, { .unique_key = "m" } }, { "k", NULL, { .unique_key = "n" } } };

    rt_exec(conn, "BEGIN");
    ck_assert_msg(rhino_enqueue(conn, "k", NULL, &(rhino_enqueue_opts) { .unique_key = "w", .unique_for = 60 }, &id,
                                NULL, &err) == 0, "%s", err.message);
    ck_assert_msg(rhino_enqueue_many(conn, plain, 2, ids, NULL, &err) == 0, "%s", err.message);
    ck_assert_msg(rhino_enqueue_many(conn, keyed, 2, NULL, NULL, &err) == 0, "%s", err.message);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_INTRANS);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 5);
    rt_exec(conn, "ROLLBACK");
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), 0);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.unique_windows"), 0);
    collect(l, conn, &nn);
    ck_assert_int_eq(nn.n, 0);
    PQfinish(conn);
    PQfinish(l);
    free(dsn);
}
END_TEST

/* examples/enqueue.c, as a user would run it. */
START_TEST(test_example_program)
{
    char       *dsn = rt_db_create_migrated(), *out, *err, prog[4096], *env[2], *slash;
    char       *argv[3];
    PGconn     *conn;
    int         rc;

    snprintf(prog, sizeof(prog), "%s", rt_env("RHINOCTL_BIN"));
    slash = strrchr(prog, '/');
    ck_assert_ptr_nonnull(slash);
    strcpy(slash + 1, "examples/enqueue");
    argv[0] = prog;
    argv[1] = (char *) "50";
    argv[2] = NULL;
    ck_assert_int_ge(asprintf(&env[0], "RHINO_DSN=%s", dsn), 0);
    env[1] = NULL;
    rc = rt_run(argv, env, NULL, &out, &err);
    ck_assert_msg(rc == 0, "exit %d: %s%s", rc, out, err);
    ck_assert_msg(strstr(out, "(new)") != NULL && strstr(out, "committed") != NULL, "%s", out);
    free(out);
    free(err);
    rc = rt_run(argv, env, NULL, &out, &err);
    ck_assert_msg(rc == 0 && strstr(out, "(existing)") != NULL, "exit %d: %s%s", rc, out, err);
    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'send_invoice'"), 1);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'hello'"), 100);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'report' AND state = 'scheduled'"),
                     2);
    PQfinish(conn);
    free(out);
    free(err);
    free(env[0]);
    free(dsn);
}
END_TEST

/* ============================================================================ */
/* a real daemon                                                                  */
/* ============================================================================ */

/* The daemon's log on stderr: check's failure messages have a size limit. */
static void
dump_log(const char *path)
{
    char *log = rt_read_file(path);

    fprintf(stderr, "---- rhino log ----\n%s-------------------\n", log ? log : "(none)");
    free(log);
}

/*
 * Keyed jobs, duplicated many times over from SQL and librhino, some of
 * them retried on the way, run exactly once each under a real rhino; the
 * keys travel into the history; once finished, a key takes a new job (which
 * runs too), while a throttled key keeps answering with its finished job.
 */
START_TEST(test_daemon_runs_keyed_jobs_once)
{
    enum { KEYS = 40 };
    char        *dsn = rt_db_create_migrated(), ini[8192], ledger[4096], logp[4096], env_dsn[4200], env_led[4200];
    char        *inipath, *slash, *text, *save = NULL, *line, *log;
    PGconn      *conn = rt_connect(dsn);
    rhino_error  err;
    rhino_job_spec jobs[KEYS];
    char         keys[KEYS][16];
    int          runs[1024] = { 0 };
    long         throttled, maxid;
    pid_t        pid;
    int          rc;

    snprintf(ini, sizeof(ini),
             "[worker]\nprocesses = 2\nbatch_size = 50\npoll_interval = 0.05\n"
             "[handlers]\npath = %s/test_handlers.so\n"
             "[retry]\nbase_delay = 0.05\nmax_delay = 0.2\n"
             "[reaper]\ninterval = 0.1\n", rt_env("RHINO_TEST_HANDLERS"));
    inipath = rt_write_file("rhino.ini", ini);
    snprintf(ledger, sizeof(ledger), "%s", inipath);
    slash = strrchr(ledger, '/');
    strcpy(slash + 1, "ledger");
    snprintf(logp, sizeof(logp), "%s", inipath);
    slash = strrchr(logp, '/');
    strcpy(slash + 1, "rhino.log");
    snprintf(env_dsn, sizeof(env_dsn), "RHINO_DSN=%s", dsn);
    snprintf(env_led, sizeof(env_led), "RHINO_TEST_LEDGER=%s", ledger);

    /* 40 keys, each enqueued 3 times by SQL (every third one retries twice first) and once more by librhino */
    rt_exec(conn, "BEGIN");
    rt_exec(conn, "SELECT rhino.enqueue(CASE WHEN k % 3 = 0 THEN 'retry_twice' ELSE 'ok' END,"
                  "                     jsonb_build_object('k', k), unique_key => 'key-' || k)"
                  "  FROM generate_series(1, 40) k, generate_series(1, 3) dup");
    for (int k = 0; k < KEYS; k++) {
        snprintf(keys[k], sizeof(keys[k]), "key-%d", k + 1);
        jobs[k] = (rhino_job_spec) { "ok", NULL, { .unique_key = keys[k] } };
    }
    ck_assert_msg(rhino_enqueue_many(conn, jobs, KEYS, NULL, NULL, &err) == 0, "%s", err.message);
    rt_exec(conn, "COMMIT");
    throttled = rt_query_longf(conn, "SELECT rhino.enqueue('ok', unique_key => 'throttled', unique_for => interval '1 hour')");
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs"), KEYS + 1);

    {
        char *argv[] = { (char *) rt_env("RHINO_BIN"), (char *) "-c", inipath, NULL };
        char *env[] = { env_dsn, env_led, NULL };

        pid = rt_spawn(argv, env, logp);
    }
    if (!rt_wait_sql(conn, "SELECT count(*) = 41 FROM rhino.jobs_done WHERE state = 'completed'", 60)) {
        kill(pid, SIGKILL);
        dump_log(logp);
        ck_abort_msg("keyed jobs did not complete (the log is on stderr)");
    }
    /* while some ran, duplicates kept returning the live ids; now the keys are free */
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs_done WHERE unique_key LIKE 'key-%%'"), KEYS);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT count(*) FROM rhino.jobs_done WHERE kind = 'retry_twice'"
                                  " AND attempt = 3"), KEYS / 3);
    ck_assert_int_eq(rt_query_longf(conn, "SELECT rhino.enqueue('ok', unique_key => 'throttled',"
                                  "                     unique_for => interval '1 hour')"), throttled);
    rt_exec(conn, "SELECT rhino.enqueue('ok', unique_key => 'key-' || k) FROM generate_series(1, 40) k");
    if (!rt_wait_sql(conn, "SELECT count(*) = 81 FROM rhino.jobs_done WHERE state = 'completed'", 60)) {
        kill(pid, SIGKILL);
        dump_log(logp);
        ck_abort_msg("the second round did not complete (the log is on stderr)");
    }
    kill(pid, SIGTERM);
    rc = rt_wait_exit(pid, 30);
    if (rc != 0)
        dump_log(logp);
    ck_assert_msg(rc == 0, "rhino exited %d after SIGTERM", rc);

    /* the ledger: every job id ran exactly once (retry_twice three times, by attempt) */
    maxid = rt_query_longf(conn, "SELECT max(id) FROM rhino.jobs_done");
    ck_assert_int_lt(maxid, (long) (sizeof(runs) / sizeof(runs[0])));
    text = rt_read_file(ledger);
    ck_assert_ptr_nonnull(text);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char kind[64];
        long id;
        int  attempt, p;

        ck_assert_int_eq(sscanf(line, "%63s %ld %d %d", kind, &id, &attempt, &p), 4);
        ck_assert(id >= 1 && id <= maxid);
        runs[id]++;
    }
    free(text);
    {
        PGresult *res = PQexec(conn, "SELECT id, CASE WHEN kind = 'retry_twice' THEN 3 ELSE 1 END FROM rhino.jobs_done");

        ck_assert_int_eq(PQntuples(res), 81);
        for (int r = 0; r < PQntuples(res); r++) {
            long id = strtol(PQgetvalue(res, r, 0), NULL, 10);

            ck_assert_msg(runs[id] == atoi(PQgetvalue(res, r, 1)), "job %ld ran %d times", id, runs[id]);
        }
        PQclear(res);
    }
    log = rt_read_file(logp);
    if (log == NULL || strstr(log, "level=error") != NULL || strstr(log, "Sanitizer") != NULL ||
        strstr(log, "runtime error:") != NULL) {
        dump_log(logp);
        ck_abort_msg("rhino logged an error or a sanitizer report (the log is on stderr)");
    }
    free(log);
    PQfinish(conn);
    free(inipath);
    free(dsn);
}
END_TEST

static Suite *
unique_suite(void)
{
    Suite *s = suite_create("unique");
    TCase *tc;

    tc = tcase_create("sql");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sql_duplicate_returns_live_id);
    tcase_add_test(tc, test_sql_v1_calls_still_work);
    tcase_add_test(tc, test_sql_scope_live_states_then_free);
    tcase_add_test(tc, test_sql_throttle_window);
    tcase_add_test(tc, test_sql_bad_arguments);
    tcase_add_test(tc, test_sql_rollback_leaves_nothing);
    tcase_add_test(tc, test_sql_race_commit);
    tcase_add_test(tc, test_sql_race_rollback);
    tcase_add_test(tc, test_sql_race_window_commit);
    tcase_add_test(tc, test_sql_race_window_rollback);
    tcase_add_test(tc, test_sql_race_free_running);
    tcase_add_test(tc, test_notify_once_per_queue_per_transaction);
    tcase_add_test(tc, test_no_notify_while_no_worker_idle);
    suite_add_tcase(s, tc);

    tc = tcase_create("rhinoctl");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ctl_unique_key);
    tcase_add_test(tc, test_ctl_usage_errors);
    tcase_add_test(tc, test_ctl_bulk_notifies_once);
    suite_add_tcase(s, tc);

    tc = tcase_create("librhino");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_client_enqueue_one);
    tcase_add_test(tc, test_client_bad_arguments);
    tcase_add_test(tc, test_client_server_error_no_payload);
    tcase_add_test(tc, test_client_many_copy);
    tcase_add_test(tc, test_client_many_unique);
    tcase_add_test(tc, test_client_rollback_leaves_nothing);
    tcase_add_test(tc, test_example_program);
    suite_add_tcase(s, tc);

    tc = tcase_create("daemon");
    tcase_set_timeout(tc, 150);
    tcase_add_test(tc, test_daemon_runs_keyed_jobs_once);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(unique_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
