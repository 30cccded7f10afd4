/*
 * check_limits.c - queue limits and priority aging (sql/005_limits.sql)
 * against a real PostgreSQL and real rhino daemons.
 *
 * How "never more than N at once" is checked without timing assertions.
 * The limited claim stamps attempted_at with the clock it read after it
 * took the queue's lock, and the finalize stamps finished_at with the start
 * of its transaction, before its commit.  So if two jobs' recorded intervals
 * [attempted_at, finished_at) overlap, the later-claimed one was claimed
 * while the earlier one was still running and counted.  The largest number
 * of recorded intervals covering one instant can thus never exceed the
 * limit, whatever the scheduling; the tests compute it in SQL over
 * rhino.jobs_done.  They also sample the running count while the jobs run,
 * and check that the limit was reached (or that unrelated queues ran in
 * parallel), so that a claim that admitted nothing would fail too.
 *
 *  - sql: rhino.queue_config() validation; eight processes hammer
 *    rhino.claim_limited() and check, inside each claiming transaction and
 *    after its commit, that the counts they see are within the limits (with
 *    the queue lock removed, this test fails in every run).
 *  - global max_running with two daemons of two workers each; per node; per
 *    key; a token bucket (every window of claims obeys burst + rate * span);
 *    per-key buckets.
 *  - aging lets a low priority job run while a backlog of high ones waits;
 *    without aging it runs last.
 *  - unlimited queues: a node that serves none never calls
 *    rhino.claim_limited(), and a queue sharing workers with a slow limited
 *    one drains at once.
 *  - a limited job whose worker is killed with SIGKILL gives its slot back.
 *  - rhinoctl queue and rhinoctl stats.
 */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "rh_db.h"
#include "rh_sql.h"
#include "rh_testlib.h"

/* ---- daemons -------------------------------------------------------------- */

typedef struct {
    pid_t pid;
    char *ini;
    char  log[4096];
    char  env_dsn[4200];
    char  env_ledger[4200];
} lt_node_t;

typedef struct {
    char     *dsn;
    PGconn   *conn;
    char      ledger[4096];
    lt_node_t node[2];
    int       nnodes;
    int       allow_errors;    /* the test kills a worker: the master logs that as an error */
} lt_t;

/* A fresh migrated database; the ledger file sits in a fresh temp dir. */
static void
lt_setup(lt_t *t)
{
    char *dir;

    memset(t, 0, sizeof(*t));
    t->dsn = rt_db_create_migrated();
    t->conn = rt_connect(t->dsn);
    dir = rt_write_file("ledger", "");
    snprintf(t->ledger, sizeof(t->ledger), "%s", dir);
    free(dir);
}

/* Start a master named name with procs workers of batch jobs, serving queues. */
static void
lt_start(lt_t *t, const char *name, int procs, int batch, const char *queues)
{
    lt_node_t *n = &t->node[t->nnodes++];
    char       ini[8192], *slash;
    char      *argv[] = { (char *) rt_env("RHINO_BIN"), "-c", NULL, NULL };
    char      *env[3];

    ck_assert_int_le(t->nnodes, 2);
    snprintf(ini, sizeof(ini),
             "[worker]\nprocesses = %d\nbatch_size = %d\nqueues = %s\npoll_interval = 0.02\n"
             "[handlers]\npath = %s\n"
             "[retry]\nbase_delay = 0.05\nmax_delay = 0.2\n"
             "[reaper]\ninterval = 0.1\n"
             "[master]\nname = %s\nshutdown_timeout = 20\n",
             procs, batch, queues, rt_handlers_so(), name);
    n->ini = rt_write_file("rhino.ini", ini);
    snprintf(n->log, sizeof(n->log), "%s", n->ini);
    slash = strrchr(n->log, '/');
    strcpy(slash + 1, "rhino.log");
    snprintf(n->env_dsn, sizeof(n->env_dsn), "RHINO_DSN=%s", t->dsn);
    snprintf(n->env_ledger, sizeof(n->env_ledger), "RHINO_TEST_LEDGER=%s", t->ledger);
    argv[2] = n->ini;
    env[0] = n->env_dsn;
    env[1] = n->env_ledger;
    env[2] = NULL;
    n->pid = rt_spawn(argv, env, n->log);
    ck_assert_int_gt(n->pid, 0);
}

static void
lt_dump_logs(lt_t *t)
{
    for (int i = 0; i < t->nnodes; i++) {
        char *log = rt_read_file(t->node[i].log);

        fprintf(stderr, "---- rhino log (node %d) ----\n%s--------------------\n", i, log ? log : "(none)");
        free(log);
    }
}

/* SIGTERM every node and expect clean exits. */
static void
lt_stop(lt_t *t)
{
    for (int i = 0; i < t->nnodes; i++)
        if (t->node[i].pid > 0)
            kill(t->node[i].pid, SIGTERM);
    for (int i = 0; i < t->nnodes; i++) {
        int rc;

        if (t->node[i].pid <= 0)
            continue;
        rc = rt_wait_exit(t->node[i].pid, 30);
        if (rc != 0)
            lt_dump_logs(t);
        ck_assert_msg(rc == 0, "rhino (node %d) exited with %d after SIGTERM", i, rc);
        t->node[i].pid = 0;
    }
}

/* Kill what still runs; no sanitizer report, and no error unless the test provoked one. */
static void
lt_teardown(lt_t *t)
{
    for (int i = 0; i < t->nnodes; i++) {
        if (t->node[i].pid > 0) {
            kill(t->node[i].pid, SIGKILL);
            rt_wait_exit(t->node[i].pid, 5);
        }
        rt_check_log(t->node[i].log, NULL, t->allow_errors);
        free(t->node[i].ini);
    }
    PQfinish(t->conn);
    free(t->dsn);
}

static void
lt_wait(lt_t *t, const char *sql, double timeout)
{
    if (!rt_wait_sql(t->conn, sql, timeout)) {
        char *states = rt_query1(t->conn, "SELECT string_agg(queue || ':' || state || '=' || n, ' ') FROM "
                                 "(SELECT queue, state::text, count(*) n FROM rhino.all_jobs GROUP BY 1, 2) s");

        lt_dump_logs(t);
        ck_abort_msg("timed out after %.0f s waiting for: %s (jobs: %s)", timeout, sql, states ? states : "none");
    }
}

/*
 * Wait until no job of queue q is left in rhino.jobs, sampling meanwhile
 * the largest number of its jobs running at once (the invariant the limit
 * keeps: running rows, claimed or started).
 */
static long
lt_drain_sampling(lt_t *t, const char *q, double timeout)
{
    char   left[256], running[256];
    double t0 = rt_now();
    long   peak = 0;

    snprintf(left, sizeof(left), "SELECT count(*) FROM rhino.jobs WHERE queue = '%s'", q);
    snprintf(running, sizeof(running), "SELECT count(*) FROM rhino.jobs WHERE queue = '%s' AND state = 'running'", q);
    while (rt_query_long(t->conn, left) > 0) {
        long n = rt_query_long(t->conn, running);

        peak = n > peak ? n : peak;
        if (rt_now() - t0 > timeout) {
            lt_dump_logs(t);
            ck_abort_msg("queue %s not drained after %.0f s (peak running %ld)", q, timeout, peak);
        }
        usleep(2000);
    }
    return peak;
}

/*
 * The largest number of recorded run intervals [attempted_at, finished_at)
 * of the finished jobs selected by `runs` (columns id, grp, a, f) that
 * cover one instant, within one grp.  See the top of the file.
 */
static long
lt_max_overlap(lt_t *t, const char *runs)
{
    char sql[2048];

    snprintf(sql, sizeof(sql),
             "WITH r AS MATERIALIZED (%s)"
             " SELECT coalesce(max(n), 0) FROM ("
             "  SELECT r1.id, count(*) AS n FROM r r1"
             "    JOIN r r2 ON r2.grp IS NOT DISTINCT FROM r1.grp AND r2.a <= r1.a AND r2.f > r1.a"
             "   GROUP BY r1.id) x",
             runs);
    return rt_query_long(t->conn, sql);
}

/* The ledger ("kind id attempt pid" per run) as the temp table ledger(id, pid). */
static void
lt_load_ledger(lt_t *t)
{
    char *text = rt_read_file(t->ledger), *save = NULL, *line;

    rt_exec(t->conn, "CREATE TEMP TABLE ledger (id bigint, attempt int, pid int)");
    ck_assert_ptr_nonnull(text);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char kind[64], sql[256];
        long id;
        int  attempt, pid;

        ck_assert_int_eq(sscanf(line, "%63s %ld %d %d", kind, &id, &attempt, &pid), 4);
        snprintf(sql, sizeof(sql), "INSERT INTO ledger VALUES (%ld, %d, %d)", id, attempt, pid);
        rt_exec(t->conn, sql);
    }
    free(text);
}

/* ---- SQL only ------------------------------------------------------------- */

START_TEST(test_queue_config_validates)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    static const char *const bad[] = {
        "SELECT rhino.queue_config('q', max_running => 0)",
        "SELECT rhino.queue_config('q', max_running_per_node => -1)",
        "SELECT rhino.queue_config('q', per_key_max => 0)",
        "SELECT rhino.queue_config('q', rate => 0)",
        "SELECT rhino.queue_config('q', rate => 'NaN')",
        "SELECT rhino.queue_config('q', key_rate => -2)",
        "SELECT rhino.queue_config('q', burst => 5)",
        "SELECT rhino.queue_config('q', rate => 1, burst => 0)",
        "SELECT rhino.queue_config('q', aging => interval '-1 s')",
        "SELECT rhino.queue_config('', max_running => 1)",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        PGresult *res = PQexec(conn, bad[i]);

        ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "accepted: %s", bad[i]);
        ck_assert_msg(strstr(PQresultErrorMessage(res), "rhino.queue_config:") != NULL,
                      "%s: unclear error: %s", bad[i], PQresultErrorMessage(res));
        PQclear(res);
    }
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.queues"), 0);

    /* burst defaults to one second's worth; limited says which path claims it */
    rt_exec(conn, "SELECT rhino.queue_config('q', rate => 2.5)");
    ck_assert_int_eq(rt_query_long(conn, "SELECT burst FROM rhino.queues WHERE name = 'q'"), 3);
    ck_assert_int_eq(rt_query_long(conn, "SELECT limited::int FROM rhino.queues WHERE name = 'q'"), 1);
    /* every setting is given anew: aging alone does not limit the claim */
    rt_exec(conn, "SELECT rhino.queue_config('q', aging => interval '5 s')");
    ck_assert_int_eq(rt_query_long(conn, "SELECT (rate IS NULL AND NOT limited)::int FROM rhino.queues"), 1);
    /* a paused queue stays paused */
    rt_exec(conn, "UPDATE rhino.queues SET paused = true");
    rt_exec(conn, "SELECT rhino.queue_config('q', max_running => 4)");
    ck_assert_int_eq(rt_query_long(conn, "SELECT (paused AND limited)::int FROM rhino.queues"), 1);
    PQfinish(conn);
    free(dsn);
}
END_TEST

#define STRESS_PROCS 8
#define STRESS_ITERS 150

/*
 * What one snapshot sees running is within the limits (st: 4, 2 per key;
 * other: 3): 0, or 1 (printed).
 */
static int
stress_check(PGconn *conn)
{
    PGresult *res = PQexec(conn, "SELECT (SELECT count(*) FROM rhino.jobs WHERE queue = 'st' AND state = 'running'),"
                                 "       (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM rhino.jobs"
                                 "          WHERE queue = 'st' AND state = 'running' GROUP BY concurrency_key) k),"
                                 "       (SELECT count(*) FROM rhino.jobs WHERE queue = 'other' AND state = 'running')");
    long      total, perkey, other;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "check: %s", PQerrorMessage(conn));
        PQclear(res);
        return 1;
    }
    total = atol(PQgetvalue(res, 0, 0));
    perkey = atol(PQgetvalue(res, 0, 1));
    other = atol(PQgetvalue(res, 0, 2));
    PQclear(res);
    if (total > 4 || perkey > 2 || other > 3) {
        fprintf(stderr, "over-admission: st %ld running (max 4), %ld of one key (max 2); other %ld (max 3)\n",
                total, perkey, other);
        return 1;
    }
    return 0;
}

/*
 * One claimer: claim, then check within the same transaction (the queue
 * locks still held, so no other claim can commit meanwhile) that what it
 * sees running is within the limits; finish about half of its jobs.
 * Exits 0, 1 on a violation (printed), 2 on a database error.
 */
static int
stress_child(const char *dsn, long worker)
{
    PGconn *conn = PQconnectdb(dsn);
    char    sql[512];

    if (PQstatus(conn) != CONNECTION_OK)
        return 2;
    srandom((unsigned) (getpid() * 7919));
    for (int i = 0; i < STRESS_ITERS; i++) {
        PGresult *res;

        PQclear(PQexec(conn, "BEGIN"));
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM rhino.claim_limited('{st,other}', %ld, %ld)",
                 1 + random() % 4, worker);
        res = PQexec(conn, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            fprintf(stderr, "claim: %s", PQerrorMessage(conn));
            return 2;
        }
        PQclear(res);
        if (stress_check(conn) != 0)
            return 1;
        /* hold the queue locks a little: a claim that did not wait for them would now overlap ours */
        PQclear(PQexec(conn, "SELECT pg_sleep(0.002)"));
        PQclear(PQexec(conn, "COMMIT"));
        /* and after the commit, when every claim committed before is visible too */
        if (stress_check(conn) != 0)
            return 1;
        snprintf(sql, sizeof(sql), "DELETE FROM rhino.jobs WHERE worker_id = %ld AND state = 'running'"
                                   " AND random() < 0.5", worker);
        PQclear(PQexec(conn, sql));
    }
    PQfinish(conn);
    return 0;
}

START_TEST(test_concurrent_claims_never_over_admit)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    pid_t   kids[STRESS_PROCS];
    long    first;

    rt_exec(conn, "INSERT INTO rhino.nodes (name, pid, lease_until) VALUES ('n', 1, now() + interval '1 hour')");
    rt_exec(conn, "INSERT INTO rhino.workers (node_id, slot, generation, pid, lease_until)"
                  " SELECT 1, g, 1, g, now() + interval '1 hour' FROM generate_series(1, 8) g");
    rt_exec(conn, "INSERT INTO rhino.jobs (kind, queue, concurrency_key)"
                  " SELECT 'ok', 'st', 'k' || (g % 3) FROM generate_series(1, 3000) g");
    rt_exec(conn, "INSERT INTO rhino.jobs (kind, queue) SELECT 'ok', 'other' FROM generate_series(1, 3000) g");
    rt_exec(conn, "SELECT rhino.queue_config('st', max_running => 4, per_key_max => 2)");
    rt_exec(conn, "SELECT rhino.queue_config('other', max_running => 3)");
    first = rt_query_long(conn, "SELECT min(id) FROM rhino.workers");
    for (int i = 0; i < STRESS_PROCS; i++) {
        kids[i] = fork();
        ck_assert_int_ge(kids[i], 0);
        if (kids[i] == 0)
            _exit(stress_child(dsn, first + i));
    }
    for (int i = 0; i < STRESS_PROCS; i++) {
        int st;

        ck_assert_int_eq(waitpid(kids[i], &st, 0), kids[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "claimer %d failed (status %d)", i, st);
    }
    /* and the claims did admit work: jobs were finished by the claimers */
    ck_assert_int_gt(rt_query_long(conn, "SELECT 3000 - count(*) FROM rhino.jobs WHERE queue = 'st'"), 100);
    ck_assert_int_le(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE queue = 'other'"
                                         " AND state = 'running'"), 3);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/*
 * A change of limits committed long after its call: the jobs that plain
 * claims took while the change was uncommitted (they could not see it) are
 * counted by the first limited claim after the commit.  The call's
 * transaction is made to look two minutes old by moving limits_at back, as
 * a transaction left open that long would have it; before schema 16 the
 * re-marking minute ran from the call, so these jobs went uncounted and
 * the limited claim admitted more.
 */
START_TEST(test_limits_committed_late_count_running_jobs)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn), *cfg = rt_connect(dsn);
    long    first;

    rt_exec(conn, "INSERT INTO rhino.nodes (name, pid, lease_until) VALUES ('n', 1, now() + interval '1 hour')");
    rt_exec(conn, "INSERT INTO rhino.workers (node_id, slot, generation, pid, lease_until)"
                  " SELECT 1, g, 1, g, now() + interval '1 hour' FROM generate_series(1, 2) g");
    first = rt_query_long(conn, "SELECT min(id) FROM rhino.workers");
    rt_exec(conn, "INSERT INTO rhino.jobs (kind, queue) SELECT 'ok', 'late' FROM generate_series(1, 10)");

    rt_exec(cfg, "BEGIN");
    rt_exec(cfg, "SELECT rhino.queue_config('late', max_running => 2)");
    rt_exec(cfg, "UPDATE rhino.queues SET limits_at = limits_at - interval '2 minutes' WHERE name = 'late'");
    /* meanwhile a plain claim takes three jobs: running, not counted (what RH_STMT_CLAIM sets) */
    {
        char sql[256];

        snprintf(sql, sizeof(sql), "UPDATE rhino.jobs SET state = 'running', attempt = attempt + 1,"
                                   " attempted_at = now(), worker_id = %ld"
                                   " WHERE id IN (SELECT id FROM rhino.jobs WHERE queue = 'late' ORDER BY id LIMIT 3)",
                 first);
        rt_exec(conn, sql);
    }
    rt_exec(cfg, "COMMIT");

    /* three run against a limit of two: the limited claim admits nothing, and counts them */
    {
        char sql[128];

        snprintf(sql, sizeof(sql), "SELECT count(*) FROM rhino.claim_limited('{late}', 10, %ld)", first + 1);
        ck_assert_int_eq(rt_query_long(conn, sql), 0);
    }
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE queue = 'late' AND state = 'running'"
                                         " AND counted"), 3);
    /* and once they finish, the queue is claimed again, up to its limit */
    rt_exec(conn, "DELETE FROM rhino.jobs WHERE queue = 'late' AND state = 'running'");
    for (int w = 0; w < 2; w++) {
        char sql[128];

        snprintf(sql, sizeof(sql), "SELECT count(*) FROM rhino.claim_limited('{late}', 10, %ld)", first + w);
        ck_assert_int_eq(rt_query_long(conn, sql), 1);
    }
    PQfinish(cfg);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* Per-key buckets, claimed directly: every window of one key's claims obeys key_burst + key_rate * span. */
START_TEST(test_key_rate_buckets)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    double  t0 = rt_now();

    rt_exec(conn, "INSERT INTO rhino.nodes (name, pid, lease_until) VALUES ('n', 1, now() + interval '1 hour')");
    rt_exec(conn, "INSERT INTO rhino.workers (node_id, slot, generation, pid, lease_until)"
                  " VALUES (1, 0, 1, 1, now() + interval '1 hour')");
    rt_exec(conn, "INSERT INTO rhino.jobs (kind, queue, concurrency_key)"
                  " SELECT 'ok', 'kr', CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 200) g");
    rt_exec(conn, "SELECT rhino.queue_config('kr', key_rate => 4, key_burst => 2)");
    while (rt_now() - t0 < 1.5) {
        rt_exec(conn, "SELECT count(*) FROM rhino.claim_limited('{kr}', 50, 1)");
        usleep(20000);
    }
    /* both keys were served, each at about its own rate */
    ck_assert_int_ge(rt_query_long(conn, "SELECT count(DISTINCT concurrency_key) FROM rhino.jobs"
                                         " WHERE state = 'running'"), 2);
    ck_assert_int_le(rt_query_long(conn, "SELECT max(n) FROM (SELECT count(*) n FROM rhino.jobs"
                                         " WHERE state = 'running' GROUP BY concurrency_key) k"), 2 + 4 * 2);
    /* the bucket law, for every pair of claims of one key (ties: the same claim) */
    ck_assert_int_eq(rt_query_long(conn,
        "WITH c AS (SELECT concurrency_key AS k, attempted_at AS a,"
        "                  row_number() OVER (PARTITION BY concurrency_key ORDER BY attempted_at, id) AS i"
        "             FROM rhino.jobs WHERE state = 'running')"
        " SELECT count(*) FROM c c1 JOIN c c2 ON c2.k = c1.k AND c2.i > c1.i"
        "  WHERE c2.i - c1.i + 1 > 2 + 4 * extract(epoch FROM c2.a - c1.a) + 1e-6"
        "    AND c2.a > c1.a"), 0);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* ---- daemons -------------------------------------------------------------- */

#define RUNS_OF(q) \
    "SELECT id, NULL::text AS grp, attempted_at AS a, finished_at AS f FROM rhino.jobs_done WHERE queue = '" q "'"

START_TEST(test_global_max_running_two_hosts)
{
    lt_t t;
    long peak, overlap;

    lt_setup(&t);
    rt_exec(t.conn, "SELECT rhino.queue_config('lim', max_running => 3)");
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue, payload)"
                    " SELECT 'ok', 'lim', '{\"ms\": 60}' FROM generate_series(1, 60)");
    lt_start(&t, "host-a", 2, 10, "lim");
    lt_start(&t, "host-b", 2, 10, "lim");
    peak = lt_drain_sampling(&t, "lim", 90);
    lt_stop(&t);

    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM rhino.jobs_done WHERE queue = 'lim'"
                                           " AND state = 'completed' AND attempt = 1"), 60);
    overlap = lt_max_overlap(&t, RUNS_OF("lim"));
    ck_assert_msg(peak <= 3, "sampled %ld jobs of lim running at once (max_running 3)", peak);
    ck_assert_msg(overlap <= 3, "%ld runs of lim overlapped (max_running 3)", overlap);
    /* and the limit was used, not just kept: several ran at once, on both hosts */
    ck_assert_msg(overlap >= 2, "never more than %ld of lim ran at once", overlap);
    lt_load_ledger(&t);
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(DISTINCT w.node_id) FROM ledger l"
                                           " JOIN rhino.workers w ON w.pid = l.pid"), 2);
    lt_teardown(&t);
}
END_TEST

START_TEST(test_per_node_limit)
{
    lt_t t;
    long per_node, overall;

    lt_setup(&t);
    rt_exec(t.conn, "SELECT rhino.queue_config('pn', max_running_per_node => 2)");
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue, payload)"
                    " SELECT 'ok', 'pn', '{\"ms\": 80}' FROM generate_series(1, 60)");
    /* three workers per host: the per-node limit, not one job per worker, is what binds */
    lt_start(&t, "host-a", 3, 10, "pn");
    lt_start(&t, "host-b", 3, 10, "pn");
    lt_drain_sampling(&t, "pn", 90);
    lt_stop(&t);

    lt_load_ledger(&t);
    /* the node of each run, from the pid of the worker that ran it */
    per_node = lt_max_overlap(&t, "SELECT d.id, w.node_id::text AS grp, d.attempted_at AS a, d.finished_at AS f"
                                  "  FROM rhino.jobs_done d JOIN ledger l ON l.id = d.id"
                                  "  JOIN rhino.workers w ON w.pid = l.pid WHERE d.queue = 'pn'");
    overall = lt_max_overlap(&t, RUNS_OF("pn"));
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM ledger"), 60);
    ck_assert_msg(per_node <= 2, "%ld runs of pn overlapped on one node (per node 2)", per_node);
    /* per node, not global: the two hosts together ran more than 2 */
    ck_assert_msg(overall >= 3, "never more than %ld of pn ran at once on two hosts", overall);
    lt_teardown(&t);
}
END_TEST

START_TEST(test_per_key_limit)
{
    lt_t t;
    long per_key, overall;

    lt_setup(&t);
    rt_exec(t.conn, "SELECT rhino.queue_config('pk', per_key_max => 1)");
    /* tenant a floods the head of the queue; b and c come after it */
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue, payload, concurrency_key, run_at)"
                    " SELECT 'ok', 'pk', '{\"ms\": 40}', 'a', now() - interval '1 minute' FROM generate_series(1, 30)");
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue, payload, concurrency_key)"
                    " SELECT 'ok', 'pk', '{\"ms\": 40}', CASE WHEN g % 2 = 0 THEN 'b' ELSE 'c' END"
                    "   FROM generate_series(1, 20) g");
    lt_start(&t, "host-a", 3, 10, "pk");
    lt_drain_sampling(&t, "pk", 90);
    lt_stop(&t);

    per_key = lt_max_overlap(&t, "SELECT id, concurrency_key AS grp, attempted_at AS a, finished_at AS f"
                                 "  FROM rhino.jobs_done WHERE queue = 'pk'");
    overall = lt_max_overlap(&t, RUNS_OF("pk"));
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM rhino.jobs_done WHERE queue = 'pk'"
                                           " AND state = 'completed'"), 50);
    ck_assert_msg(per_key <= 1, "%ld runs of one key overlapped (per key 1)", per_key);
    ck_assert_msg(overall >= 2, "the keys never ran side by side (at most %ld at once)", overall);
    /* b and c did not wait for a's backlog: the last of them finished before the last of a */
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT (max(finished_at) FILTER (WHERE concurrency_key <> 'a')"
                                           "         < max(finished_at) FILTER (WHERE concurrency_key = 'a'))::int"
                                           "  FROM rhino.jobs_done WHERE queue = 'pk'"), 1);
    lt_teardown(&t);
}
END_TEST

START_TEST(test_rate_limit)
{
    lt_t   t;
    double span;
    char  *s;

    lt_setup(&t);
    rt_exec(t.conn, "SELECT rhino.queue_config('rl', rate => 5, burst => 2)");
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue) SELECT 'ok', 'rl' FROM generate_series(1, 12)");
    lt_start(&t, "host-a", 2, 10, "rl");
    lt_drain_sampling(&t, "rl", 60);
    lt_stop(&t);

    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM rhino.jobs_done WHERE queue = 'rl'"), 12);
    /* 12 jobs at 5/s with a burst of 2 cannot start within less than (12 - 2) / 5 = 2 s */
    s = rt_query1(t.conn, "SELECT extract(epoch FROM max(attempted_at) - min(attempted_at))"
                          "  FROM rhino.jobs_done WHERE queue = 'rl'");
    span = atof(s);
    free(s);
    ck_assert_msg(span >= 2.0 - 1e-3, "12 jobs started within %.3f s at rate 5, burst 2", span);
    /* the bucket law holds for every window of claims, not only end to end */
    ck_assert_int_eq(rt_query_long(t.conn,
        "WITH c AS (SELECT attempted_at AS a, row_number() OVER (ORDER BY attempted_at, id) AS i"
        "             FROM rhino.jobs_done WHERE queue = 'rl')"
        " SELECT count(*) FROM c c1 JOIN c c2 ON c2.i > c1.i"
        "  WHERE c2.i - c1.i + 1 > 2 + 5 * extract(epoch FROM c2.a - c1.a) + 1e-6 AND c2.a > c1.a"), 0);
    lt_teardown(&t);
}
END_TEST

START_TEST(test_aging_lets_low_priority_run)
{
    lt_t t;
    long before_low, strict_before;

    lt_setup(&t);
    rt_exec(t.conn, "SELECT rhino.queue_config('aged', aging => interval '0.2 s')");
    /* the low job first, then a backlog of high ones that takes several seconds */
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue, priority, payload)"
                    " VALUES ('ok', 'aged', 5, '{\"low\": 1}'), ('ok', 'strict', 5, '{\"low\": 1}')");
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue, priority, payload)"
                    " SELECT 'ok', 'aged', 0, '{\"ms\": 20}' FROM generate_series(1, 250)");
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue, priority, payload)"
                    " SELECT 'ok', 'strict', 0, '{}' FROM generate_series(1, 50)");
    lt_start(&t, "host-a", 1, 1, "aged,strict");
    lt_wait(&t, "SELECT count(*) = 0 FROM rhino.jobs WHERE queue = 'strict'", 60);
    lt_wait(&t, "SELECT count(*) = 1 FROM rhino.jobs_done WHERE queue = 'aged' AND payload ? 'low'", 60);
    lt_stop(&t);

    before_low = rt_query_long(t.conn, "SELECT count(*) FROM rhino.jobs_done h, rhino.jobs_done l"
                                       " WHERE h.queue = 'aged' AND l.queue = 'aged' AND l.payload ? 'low'"
                                       "   AND NOT h.payload ? 'low' AND h.attempted_at < l.attempted_at");
    ck_assert_msg(before_low < 200, "the low job waited for %ld of 250 high ones", before_low);
    /* it ran at priority 0 after five ticks; the high ones never moved */
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT priority FROM rhino.jobs_done WHERE queue = 'aged'"
                                           " AND payload ? 'low'"), 0);
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM rhino.all_jobs WHERE queue = 'aged'"
                                           " AND NOT payload ? 'low' AND priority <> 0"), 0);
    /* strict priority stays the default: without aging the low job ran last */
    strict_before = rt_query_long(t.conn, "SELECT count(*) FROM rhino.jobs_done h, rhino.jobs_done l"
                                          " WHERE h.queue = 'strict' AND l.queue = 'strict' AND l.payload ? 'low'"
                                          "   AND NOT h.payload ? 'low' AND h.attempted_at <= l.attempted_at");
    ck_assert_int_eq(strict_before, 50);
    lt_teardown(&t);
}
END_TEST

/* rhino.claim_limited() calls seen by the statistics (track_functions), after the daemons stopped. */
static long
claim_limited_calls(lt_t *t)
{
    PGconn *c = rt_connect(t->dsn);
    long    n;

    rt_exec(c, "SELECT pg_stat_clear_snapshot()");
    n = rt_query_long(c, "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions"
                         " WHERE schemaname = 'rhino' AND funcname = 'claim_limited'");
    PQfinish(c);
    return n;
}

START_TEST(test_unlimited_queues_unaffected)
{
    lt_t  t;
    char  sql[256];
    char *db;

    lt_setup(&t);
    db = rt_query1(t.conn, "SELECT current_database()");
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s SET track_functions = 'pl'", db);
    rt_exec(t.conn, sql);
    free(db);
    /* a limited queue exists, but this node does not serve it */
    rt_exec(t.conn, "SELECT rhino.queue_config('lim', max_running => 1)");
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue) SELECT 'ok', 'free' FROM generate_series(1, 500)");
    lt_start(&t, "host-a", 2, 50, "free");
    lt_drain_sampling(&t, "free", 60);
    lt_stop(&t);
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM rhino.jobs_done WHERE queue = 'free'"), 500);
    ck_assert_msg(claim_limited_calls(&t) == 0, "a node without limited queues called rhino.claim_limited()");

    /* sharing workers with a slow limited queue: the unlimited one drains while lim waits */
    t.nnodes = 0;
    free(t.node[0].ini);
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue, payload)"
                    " SELECT 'ok', 'lim', '{\"ms\": 200}' FROM generate_series(1, 20)");
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue) SELECT 'ok', 'free' FROM generate_series(1, 500)");
    lt_start(&t, "host-a", 2, 50, "lim,free");
    lt_wait(&t, "SELECT count(*) = 0 FROM rhino.jobs WHERE queue = 'free'", 60);
    ck_assert_int_ge(rt_query_long(t.conn, "SELECT count(*) FROM rhino.jobs WHERE queue = 'lim'"), 10);
    lt_drain_sampling(&t, "lim", 60);
    lt_stop(&t);
    ck_assert_int_gt(claim_limited_calls(&t), 0);
    ck_assert_int_le(lt_max_overlap(&t, RUNS_OF("lim")), 1);
    lt_teardown(&t);
}
END_TEST

START_TEST(test_killed_worker_releases_its_slot)
{
    lt_t  t;
    long  slow;
    char  sql[256], *pid, *got;

    lt_setup(&t);
    t.allow_errors = 1;
    rt_exec(t.conn, "SELECT rhino.queue_config('one', max_running => 1)");
    slow = rt_query_long(t.conn, "INSERT INTO rhino.jobs (kind, queue, payload)"
                                 " VALUES ('slow_once', 'one', '{\"ms\": 60000}') RETURNING id");
    lt_start(&t, "host-a", 2, 5, "one");
    snprintf(sql, sizeof(sql), "SELECT state = 'running' FROM rhino.jobs WHERE id = %ld", slow);
    lt_wait(&t, sql, 30);
    /* the slot is taken: the others wait, although a second worker is idle */
    rt_exec(t.conn, "INSERT INTO rhino.jobs (kind, queue) SELECT 'ok', 'one' FROM generate_series(1, 5)");
    usleep(500000);
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM rhino.jobs WHERE queue = 'one'"
                                           " AND state = 'running'"), 1);
    snprintf(sql, sizeof(sql), "SELECT w.pid FROM rhino.jobs j JOIN rhino.workers w ON w.id = j.worker_id"
                               " WHERE j.id = %ld", slow);
    pid = rt_query1(t.conn, sql);
    ck_assert_ptr_nonnull(pid);
    ck_assert_int_eq(kill((pid_t) atoi(pid), SIGKILL), 0);
    free(pid);
    /* its slot comes back, and everything runs, the killed job again */
    lt_drain_sampling(&t, "one", 60);
    lt_stop(&t);
    /* (whether the reaper counted its crash or rescued it, its slot is free once it is not running) */
    snprintf(sql, sizeof(sql), "SELECT state || ' attempt=' || attempt FROM rhino.jobs_done WHERE id = %ld", slow);
    got = rt_query1(t.conn, sql);
    ck_assert_msg(got != NULL && strcmp(got, "completed attempt=2") == 0, "the killed job: %s",
                  got ? got : "not finished");
    free(got);
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM rhino.jobs_done WHERE queue = 'one'"
                                           " AND state = 'completed'"), 6);
    ck_assert_int_le(lt_max_overlap(&t, RUNS_OF("one")), 1);
    lt_teardown(&t);
}
END_TEST

/* ---- rhinoctl --------------------------------------------------------------- */


START_TEST(test_rhinoctl_queue)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    char   *out, *err;
    int     rc;

    rc = rt_ctl(dsn, NULL, &out, &err, "queue", "api", "--max-running", "5", "--per-key", "2", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(out, "api") != NULL, "%s", out);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "queue", "api", "--rate", "10", "--aging", "30s", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(out);
    free(err);
    /* options not given are kept; the burst defaults to the rate's second */
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.queues WHERE name = 'api' AND max_running = 5"
                                         " AND per_key_max = 2 AND rate = 10 AND burst = 10"
                                         " AND aging = interval '30 s' AND max_running_per_node IS NULL"), 1);
    rc = rt_ctl(dsn, NULL, &out, &err, "queue", "api", "--per-node", "3", "--max-running", "none", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.queues WHERE name = 'api'"
                                         " AND max_running IS NULL AND max_running_per_node = 3 AND rate = 10"), 1);

    /* show, as text and JSON */
    rc = rt_ctl(dsn, NULL, &out, &err, "queue", "api", "--json", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(out, "\"queue\":\"api\"") != NULL && strstr(out, "\"max_running\":null") != NULL &&
                  strstr(out, "\"max_running_per_node\":3") != NULL && strstr(out, "\"aging\":30") != NULL &&
                  strstr(out, "\"running\":0") != NULL, "%s", out);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "queue", "nothing", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(strstr(out, "no limits") != NULL, "%s", out);
    free(out);
    free(err);

    /* stats lists the limits too */
    rt_exec(conn, "INSERT INTO rhino.jobs (kind, queue) VALUES ('ok', 'api')");
    rc = rt_ctl(dsn, NULL, &out, &err, "stats", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(out, "PER NODE") != NULL && strstr(out, "10/s") != NULL, "%s", out);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "stats", "--json", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(out, "{\"queue\":\"api\",\"state\":\"available\",\"count\":1,\"paused\":false,"
                              "\"limits\":{") != NULL, "%s", out);
    free(out);
    free(err);

    /* bad values never reach the database */
    {
        static const char *const bad[][2] = {
            { "--max-running", "0" }, { "--max-running", "x" }, { "--per-key", "-1" }, { "--rate", "0" },
            { "--rate", "fast" }, { "--burst", "0" }, { "--aging", "5x" }, { "--aging", "0" },
            { "--key-rate", "nan" },
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            rc = rt_ctl(dsn, NULL, &out, &err, "queue", "api", bad[i][0], bad[i][1], NULL);
            ck_assert_msg(rc == 2, "%s %s: exit %d", bad[i][0], bad[i][1], rc);
            ck_assert_msg(strstr(err, bad[i][0]) != NULL, "%s %s: %s", bad[i][0], bad[i][1], err);
            free(out);
            free(err);
        }
    }
    /* a burst without a rate is refused by the database, with its reason */
    rc = rt_ctl(dsn, NULL, &out, &err, "queue", "api", "--rate", "none", "--burst", "4", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "burst needs rate") != NULL, "%s", err);
    free(out);
    free(err);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/*
 * The reaper's aging statement, every pass, must not cost with the size of
 * rhino.jobs: the rows it moves are updated where it found them (no
 * sequential scan of the table, whatever its statistics), and it runs with
 * JIT off (rh_db_exec_nojit), since the planner's estimate of the queues
 * that tick passed the JIT thresholds on a large table (96-476 ms a pass).
 * The control (the statement alone, every JIT threshold at 0) shows that
 * JIT is there to be kept off; without a JIT provider that half is skipped.
 */
START_TEST(test_aging_statement_is_cheap)
{
    PGconn     *conn = rt_connect(rt_db_create_migrated());
    const char *age = rh_sql(RH_STMT_AGE)->sql;
    char       *sql = malloc(strlen(age) + 256), *jit;
    PGresult   *res;
    int         seq = 0, compiled = 0;

    rt_exec(conn, "SELECT rhino.queue_config('limited', max_running => 2)");
    rt_exec(conn, "SELECT rhino.queue_config('aged', aging => '1 second')");
    rt_exec(conn, "INSERT INTO rhino.jobs (kind, queue) SELECT 'ok', 'big' FROM generate_series(1, 50000)");
    rt_exec(conn, "ANALYZE rhino.jobs");
    sprintf(sql, "EXPLAIN (COSTS OFF) %s", age);
    res = PQexec(conn, sql);
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    for (int r = 0; r < PQntuples(res); r++)
        seq += strstr(PQgetvalue(res, r, 0), "Seq Scan on jobs") != NULL;
    PQclear(res);
    ck_assert_msg(seq == 0, "the aging statement reads all of rhino.jobs");

    rt_exec(conn, "SET jit_above_cost = 0");
    rt_exec(conn, "SET jit_optimize_above_cost = 0");
    rt_exec(conn, "SET jit_inline_above_cost = 0");
    jit = rt_query1(conn, "SELECT pg_jit_available()");
    for (int off = 0; off < 2; off++) {
        sprintf(sql, "%sEXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF) %s", off ? RH_DB_NOJIT : "", age);
        res = PQexec(conn, sql);
        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(conn));
        compiled = 0;
        for (int r = 0; r < PQntuples(res); r++)
            compiled |= strncmp(PQgetvalue(res, r, 0), "JIT:", 4) == 0;
        PQclear(res);
        if (off)
            ck_assert_msg(!compiled, "the aging statement was JIT-compiled under RH_DB_NOJIT");
        else if (jit && strcmp(jit, "t") == 0)
            ck_assert_msg(compiled, "control: JIT was not used even with every threshold at 0");
    }
    free(jit);
    free(sql);
    PQfinish(conn);
}
END_TEST

static Suite *
limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *tc;

    tc = tcase_create("sql");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_queue_config_validates);
    tcase_add_test(tc, test_concurrent_claims_never_over_admit);
    tcase_add_test(tc, test_key_rate_buckets);
    tcase_add_test(tc, test_limits_committed_late_count_running_jobs);
    suite_add_tcase(s, tc);

    tc = tcase_create("daemons");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_global_max_running_two_hosts);
    tcase_add_test(tc, test_per_node_limit);
    tcase_add_test(tc, test_per_key_limit);
    tcase_add_test(tc, test_rate_limit);
    tcase_add_test(tc, test_aging_lets_low_priority_run);
    tcase_add_test(tc, test_unlimited_queues_unaffected);
    tcase_add_test(tc, test_killed_worker_releases_its_slot);
    suite_add_tcase(s, tc);

    tc = tcase_create("rhinoctl");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rhinoctl_queue);
    tcase_add_test(tc, test_aging_statement_is_cheap);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(limits_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
