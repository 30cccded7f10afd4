/*
 * check_hosts.c - Rhino as it is deployed: behind PgBouncer in transaction
 * mode, and as several masters ("hosts") sharing one database.
 *
 *  - pgbouncer: a real pgbouncer (/usr/sbin/pgbouncer, pool_mode =
 *    transaction, default_pool_size = 2) in front of the test cluster; rhino
 *    runs through it with fast and transactional jobs, and every job must
 *    complete exactly once.  `rhinoctl migrate` goes to PostgreSQL directly
 *    (it takes a session advisory lock).
 *  - three masters with their own [master] name on one database: every job
 *    runs once and every master does work.
 *  - a vanished host: one master and all its children are SIGSTOPped while
 *    they hold running jobs; the other hosts rescue them once the lease
 *    (2 s) runs out; when it wakes up its completions are stale and change
 *    nothing, and it carries on.
 *  - throughput: the drain rate of one master against three (one worker
 *    each), printed as "HOSTS| ..." lines, not asserted (the machines that
 *    run this have two cores).
 *
 * The test handlers' fast jobs append to a ledger file (RHINO_TEST_LEDGER),
 * the transactional ones insert into the table "ledger": together they say
 * how often each job really ran.
 *
 * PgBouncer is started once, by main(), outside check's forked tests, so
 * that a failing test cannot leave it behind; so are the daemons: every pid
 * a test starts or stops is recorded in a shared table that main() kills
 * after the run.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "rh_testlib.h"

#define PGBOUNCER_BIN "/usr/sbin/pgbouncer"
#define POOL_SIZE     2

/* ---- pids to kill after the run, whatever the tests did ----------------- */

#define HX_MAXPIDS 256
static pid_t *hx_pids;          /* shared with the forked tests (MAP_SHARED) */

static void
hx_track(pid_t pid)
{
    for (int i = 0; i < HX_MAXPIDS; i++)
        if (__atomic_compare_exchange_n(&hx_pids[i], &(pid_t) { 0 }, pid, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return;
}

static void
hx_untrack(pid_t pid)
{
    for (int i = 0; i < HX_MAXPIDS; i++)
        if (hx_pids[i] == pid)
            hx_pids[i] = 0;
}

static void
hx_kill_tracked(void)
{
    for (int i = 0; i < HX_MAXPIDS; i++)
        if (hx_pids[i] > 0) {
            kill(hx_pids[i], SIGKILL);
            hx_pids[i] = 0;
        }
}

/* ---- helpers ------------------------------------------------------------ */

static void
hx_sleep(double s)
{
    usleep((useconds_t) (s * 1e6));
}

/* "key=value" list from a DSN with some keys replaced (NULL value: dropped). */
static char *
dsn_with(const char *dsn, const char *const repl[][2], int nrepl)
{
    PQconninfoOption *opts;
    char             *errmsg = NULL, *out;
    size_t            cap = 4096, len = 0;

    opts = PQconninfoParse(dsn, &errmsg);
    ck_assert_msg(opts != NULL, "not a connection string: %s", errmsg ? errmsg : "?");
    out = calloc(1, cap);
    ck_assert_ptr_nonnull(out);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        const char *v = o->val;
        int         replaced = 0;

        for (int i = 0; i < nrepl; i++)
            if (strcmp(o->keyword, repl[i][0]) == 0) {
                v = repl[i][1];
                replaced = 1;
            }
        if (!replaced && (o->val == NULL || strcmp(o->keyword, "hostaddr") == 0))
            continue;
        if (v == NULL)
            continue;
        len += (size_t) snprintf(out + len, cap - len, "%s%s='%s'", len ? " " : "", o->keyword, v);
        ck_assert_uint_lt(len, cap);
    }
    for (int i = 0; i < nrepl; i++) {
        int present = 0;

        for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
            present |= strcmp(o->keyword, repl[i][0]) == 0;
        if (!present && repl[i][1] != NULL)
            len += (size_t) snprintf(out + len, cap - len, " %s='%s'", repl[i][0], repl[i][1]);
    }
    PQconninfoFree(opts);
    return out;
}

/* One value of a DSN (malloc'd; NULL if not set). */
static char *
dsn_get(const char *dsn, const char *key)
{
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    char             *v = NULL;

    ck_assert_ptr_nonnull(opts);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, key) == 0 && o->val != NULL)
            v = strdup(o->val);
    PQconninfoFree(opts);
    return v;
}

/* ---- a rhino master ----------------------------------------------------- */

typedef struct {
    const char *name;
    char       *ini;
    char        log[4096];
    pid_t       pid;
} hx_master_t;

typedef struct {
    char        *dsn;           /* direct to PostgreSQL */
    PGconn      *conn;
    char         ledger[4096];
    char         env_ledger[4200];
    long         fast, tx;      /* jobs enqueued of each kind */
    hx_master_t  m[3];
    int          nm;
} hx_t;

static void
hx_setup(hx_t *h)
{
    char *dir;

    memset(h, 0, sizeof(*h));
    h->dsn = rt_db_create_migrated();
    h->conn = rt_connect(h->dsn);
    rt_exec(h->conn, "CREATE TABLE ledger (job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL)");
    dir = rt_write_file("ledger", "");
    snprintf(h->ledger, sizeof(h->ledger), "%s", dir);
    snprintf(h->env_ledger, sizeof(h->env_ledger), "RHINO_TEST_LEDGER=%s", h->ledger);
    free(dir);
}

/* n jobs, alternating kinds "ok" and "tx_ledger" (or all "ok" if fast_only), with payload. */
static void
hx_enqueue(hx_t *h, long n, int fast_only, const char *payload)
{
    char sql[1024];

    snprintf(sql, sizeof(sql), "INSERT INTO rhino.jobs (kind, payload) SELECT CASE WHEN %d = 1 OR g %% 2 = 0"
             " THEN 'ok' ELSE 'tx_ledger' END, '%s' FROM generate_series(1, %ld) g", fast_only, payload, n);
    rt_exec(h->conn, sql);
    h->fast = rt_query_long(h->conn, "SELECT count(*) FROM rhino.all_jobs WHERE kind = 'ok'");
    h->tx = rt_query_long(h->conn, "SELECT count(*) FROM rhino.all_jobs WHERE kind = 'tx_ledger'");
}

static void
hx_add_master(hx_t *h, const char *name, const char *extra)
{
    hx_master_t *m = &h->m[h->nm++];
    char         ini[16384], *slash;

    m->name = name;
    snprintf(ini, sizeof(ini),
             "[worker]\nprocesses = 2\nbatch_size = 100\npoll_interval = 0.05\n"
             "[handlers]\npath = %s\n"
             "[retry]\nbase_delay = 0.05\nmax_delay = 0.2\n"
             "[reaper]\ninterval = 0.1\n"
             "[master]\nname = %s\nshutdown_timeout = 20\n"
             "%s", rt_handlers_so(), name, extra ? extra : "");
    m->ini = rt_write_file("rhino.ini", ini);
    snprintf(m->log, sizeof(m->log), "%s", m->ini);
    slash = strrchr(m->log, '/');
    strcpy(slash + 1, "rhino.log");
}

static void
hx_start(hx_t *h, hx_master_t *m, const char *dsn)
{
    char  env_dsn[8200];
    char *argv[] = { (char *) rt_env("RHINO_BIN"), "-c", m->ini, NULL };
    char *env[] = { env_dsn, h->env_ledger, NULL };

    snprintf(env_dsn, sizeof(env_dsn), "RHINO_DSN=%s", dsn ? dsn : h->dsn);
    m->pid = rt_spawn(argv, env, m->log);
    ck_assert_int_gt(m->pid, 0);
    hx_track(m->pid);
}

static void
hx_dump_logs(hx_t *h)
{
    for (int i = 0; i < h->nm; i++) {
        char *log = rt_read_file(h->m[i].log);

        fprintf(stderr, "---- rhino log of %s ----\n%s-----------\n", h->m[i].name, log ? log : "(none)");
        free(log);
    }
}

static void
hx_stop(hx_t *h, hx_master_t *m)
{
    int rc;

    if (m->pid <= 0)
        return;
    kill(m->pid, SIGTERM);
    rc = rt_wait_exit(m->pid, 40);
    if (rc != 0)
        hx_dump_logs(h);
    ck_assert_msg(rc == 0, "master %s exited with %d after SIGTERM", m->name, rc);
    hx_untrack(m->pid);
    m->pid = 0;
}

static long
hx_done(hx_t *h)
{
    return rt_query_long(h->conn, "SELECT count(*) FROM rhino.jobs_done");
}

/* Wait until every job is finished; returns the seconds it took. */
static double
hx_drain(hx_t *h, double timeout)
{
    double t0 = rt_now();
    long   total = h->fast + h->tx;

    while (hx_done(h) < total) {
        if (rt_now() - t0 > timeout) {
            hx_dump_logs(h);
            ck_abort_msg("%ld of %ld jobs finished after %.0f s", hx_done(h), total, timeout);
        }
        hx_sleep(0.02);
    }
    return rt_now() - t0;
}

/* Lines of the ledger file loaded into table ledger_file (kind, job_id, attempt, pid). */
static void
hx_load_ledger_file(hx_t *h)
{
    char     *text = rt_read_file(h->ledger), *line, *save = NULL;
    PGresult *res;

    ck_assert_ptr_nonnull(text);
    rt_exec(h->conn, "DROP TABLE IF EXISTS ledger_file");
    rt_exec(h->conn, "CREATE TABLE ledger_file (kind text, job_id bigint, attempt int, pid int)");
    res = PQexec(h->conn, "COPY ledger_file FROM STDIN (DELIMITER ' ')");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COPY_IN);
    PQclear(res);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        ck_assert_int_eq(PQputCopyData(h->conn, line, (int) strlen(line)), 1);
        ck_assert_int_eq(PQputCopyData(h->conn, "\n", 1), 1);
    }
    ck_assert_int_eq(PQputCopyEnd(h->conn, NULL), 1);
    res = PQgetResult(h->conn);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "COPY of the ledger file: %s", PQresultErrorMessage(res));
    PQclear(res);
    PQclear(PQgetResult(h->conn));
    free(text);
}

/*
 * Every job completed; each transactional job has exactly one ledger row and
 * none is left over; each fast job ran at least once, and more than once only
 * if it is in the table `may_repeat` (when it exists).
 */
static void
hx_verify(hx_t *h, int may_repeat)
{
    long completed, missing_tx, extra_tx, missing_fast, repeated_fast, running;

    hx_load_ledger_file(h);
    completed = rt_query_long(h->conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'completed'");
    running = rt_query_long(h->conn, "SELECT count(*) FROM rhino.jobs");
    missing_tx = rt_query_long(h->conn, "SELECT count(*) FROM rhino.jobs_done d WHERE d.kind = 'tx_ledger'"
                                        " AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.job_id = d.id)");
    extra_tx = rt_query_long(h->conn, "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM ledger"
                                      " GROUP BY job_id) x")
             + rt_query_long(h->conn, "SELECT count(*) FROM ledger l WHERE NOT EXISTS (SELECT 1 FROM"
                                      " rhino.jobs_done d WHERE d.id = l.job_id AND d.state = 'completed')");
    missing_fast = rt_query_long(h->conn, "SELECT count(*) FROM rhino.jobs_done d WHERE d.kind = 'ok'"
                                          " AND NOT EXISTS (SELECT 1 FROM ledger_file f WHERE f.job_id = d.id)");
    repeated_fast = rt_query_long(h->conn, may_repeat
        ? "SELECT count(*) FROM (SELECT job_id FROM ledger_file GROUP BY job_id HAVING count(*) > 1) x"
          " WHERE job_id NOT IN (SELECT id FROM may_repeat)"
        : "SELECT count(*) FROM (SELECT job_id FROM ledger_file GROUP BY job_id HAVING count(*) > 1) x");
    fprintf(stderr, "HOSTS| verify: %ld completed of %ld, %ld left, tx rows missing %ld extra %ld,"
            " fast runs missing %ld repeated %ld\n", completed, h->fast + h->tx, running, missing_tx, extra_tx,
            missing_fast, repeated_fast);
    for (int i = 0; i < h->nm; i++)
        rt_check_log(h->m[i].log, h->m[i].name, 1);     /* errors are each test's own to judge */
    ck_assert_int_eq(completed, h->fast + h->tx);
    ck_assert_int_eq(running, 0);
    ck_assert_int_eq(missing_tx, 0);
    ck_assert_int_eq(extra_tx, 0);
    ck_assert_int_eq(missing_fast, 0);
    ck_assert_int_eq(repeated_fast, 0);
}

/* Stale finalizes and rolled-back batches that a master reported (text or JSON log). */
static long
hx_stale(hx_master_t *m)
{
    char *log = rt_read_file(m->log), *p;
    long  stale = 0;

    if (log == NULL)
        return 0;
    for (p = log; (p = strstr(p, "msg")) != NULL; p++) {
        long n, k;
        const char *q = p + 3;

        q += strspn(q, "\"=:");
        if (sscanf(q, "%ld of %ld finalizes were stale", &n, &k) == 2)
            stale += n;
        else if (sscanf(q, "transactional batch rolled back: %ld job(s) had been rescued", &n) == 1)
            stale += n;
    }
    free(log);
    return stale;
}

static int
hx_count_in_log(hx_master_t *m, const char *what)
{
    char *log = rt_read_file(m->log), *p;
    int   n = 0;

    for (p = log; p && (p = strstr(p, what)) != NULL; p++)
        n++;
    free(log);
    return n;
}

static void
hx_teardown(hx_t *h)
{
    for (int i = 0; i < h->nm; i++)
        if (h->m[i].pid > 0) {
            kill(h->m[i].pid, SIGKILL);
            rt_wait_exit(h->m[i].pid, 5);
        }
    PQfinish(h->conn);
}

/* ---- PgBouncer ---------------------------------------------------------- */

/* Set by main(): the port pgbouncer listens on, or 0 with the reason. */
static int  pgb_port;
static char pgb_error[1024];
static char pgb_log[4096];

/*
 * 6000 jobs through PgBouncer in transaction mode, 3 workers and the reaper
 * on a pool of POOL_SIZE server connections.  prepare: [database] prepare.
 * Off, as the README tells users of PgBouncer before 1.21: no error at all.
 * On: statements prepared on one server connection are missing on another
 * (or prepared there already by another worker: with 3 workers on 2 server
 * connections that happens at the first statement); the workers must notice,
 * say so, switch to unnamed statements, and still run every job once.
 */
static void
pgbouncer_run(int prepare)
{
    hx_t        h;
    char        port[16];
    const char *repl[3][2] = { { "host", "127.0.0.1" }, { "port", port }, { "hostaddr", NULL } };
    char       *pgb_dsn, *dbname, sql[512], extra[4096];
    long        backends_max = 0;
    double      t0;

    ck_assert_msg(pgb_port > 0, "pgbouncer did not start: %s", pgb_error);
    snprintf(port, sizeof(port), "%d", pgb_port);
    hx_setup(&h);
    pgb_dsn = dsn_with(h.dsn, repl, 3);
    dbname = dsn_get(h.dsn, "dbname");
    hx_enqueue(&h, 6000, 0, "{}");
    /* 3 workers + the reaper share POOL_SIZE server connections */
    /* the LISTEN connection holds session state: it goes to the server directly, as the README says */
    snprintf(extra, sizeof(extra), "[database]\nlisten_dsn = %s\n%s[worker]\nprocesses = 3\n[reaper]\nlease = 10\n",
             h.dsn, prepare ? "" : "prepare = off\n");
    hx_add_master(&h, "via-pgbouncer", extra);
    hx_start(&h, &h.m[0], pgb_dsn);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
             " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
             " AND application_name <> 'rhino listener'", dbname);
    t0 = rt_now();
    while (hx_done(&h) < h.fast + h.tx) {
        long b = rt_query_long(h.conn, sql);

        if (b > backends_max)
            backends_max = b;
        if (rt_now() - t0 > 120) {
            char *pl = rt_read_file(pgb_log);

            hx_dump_logs(&h);
            fprintf(stderr, "---- pgbouncer log ----\n%s\n", pl ? pl : "");
            ck_abort_msg("%ld of %ld jobs finished through pgbouncer after 120 s", hx_done(&h), h.fast + h.tx);
        }
        hx_sleep(0.02);
    }
    fprintf(stderr, "HOSTS| pgbouncer (transaction mode, pool %d, prepare %s): %ld jobs in %.2f s, at most %ld server"
            " connection(s) seen\n", POOL_SIZE, prepare ? "on" : "off", h.fast + h.tx, rt_now() - t0, backends_max);
    hx_stop(&h, &h.m[0]);
    hx_verify(&h, 0);
    if (prepare) {
        ck_assert_msg(hx_count_in_log(&h.m[0], "sending statements unnamed from now on") > 0,
                      "no worker said it stopped preparing statements behind pgbouncer");
    } else {
        ck_assert_int_eq(hx_stale(&h.m[0]), 0);
        ck_assert_msg(hx_count_in_log(&h.m[0], "level=error") == 0, "rhino logged errors through pgbouncer");
    }
    /* the pool really was shared: never more server connections than the pool allows */
    ck_assert_int_le(backends_max, POOL_SIZE);
    free(pgb_dsn);
    free(dbname);
    hx_teardown(&h);
}

START_TEST(test_pgbouncer_transaction_mode)
{
    pgbouncer_run(0);
}
END_TEST

START_TEST(test_pgbouncer_prepared_falls_back)
{
    pgbouncer_run(1);
}
END_TEST

/* ---- several masters ---------------------------------------------------- */

START_TEST(test_three_masters_one_database)
{
    hx_t  h;
    long  nodes, per_node[3];
    char  sql[512];

    hx_setup(&h);
    hx_enqueue(&h, 20000, 0, "{}");
    hx_add_master(&h, "host-a", NULL);
    hx_add_master(&h, "host-b", NULL);
    hx_add_master(&h, "host-c", "[log]\nformat = json\n");
    for (int i = 0; i < 3; i++)
        hx_start(&h, &h.m[i], NULL);
    fprintf(stderr, "HOSTS| 3 masters x 2 workers: %ld jobs (%ld fast, %ld transactional) in %.2f s\n",
            h.fast + h.tx, h.fast, h.tx, hx_drain(&h, 240));
    for (int i = 0; i < 3; i++)
        hx_stop(&h, &h.m[i]);
    hx_verify(&h, 0);
    ck_assert_int_eq(rt_query_long(h.conn, "SELECT count(*) FROM rhino.nodes"), 3);
    /* who ran what: the pids of the ledgers, mapped to nodes through rhino.workers */
    rt_exec(h.conn, "CREATE TABLE runs AS SELECT pid FROM ledger UNION ALL SELECT pid FROM ledger_file");
    nodes = rt_query_long(h.conn, "SELECT count(DISTINCT w.node_id) FROM runs r JOIN rhino.workers w ON w.pid = r.pid");
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM runs r JOIN rhino.workers w ON w.pid = r.pid"
                 " JOIN rhino.nodes n ON n.id = w.node_id WHERE n.name = '%s'", h.m[i].name);
        per_node[i] = rt_query_long(h.conn, sql);
    }
    fprintf(stderr, "HOSTS| jobs run per master: host-a %ld, host-b %ld, host-c %ld\n", per_node[0], per_node[1],
            per_node[2]);
    ck_assert_int_eq(nodes, 3);
    ck_assert_int_eq(per_node[0] + per_node[1] + per_node[2], h.fast + h.tx);
    /* host-c logs JSON: every line one object */
    {
        char *log = rt_read_file(h.m[2].log), *save = NULL;
        int   lines = 0;

        ck_assert_ptr_nonnull(log);
        for (char *l = strtok_r(log, "\n", &save); l; l = strtok_r(NULL, "\n", &save), lines++)
            ck_assert_msg(l[0] == '{' && l[strlen(l) - 1] == '}' && strstr(l, "\"role\":") != NULL,
                          "not a JSON log line: %s", l);
        ck_assert_int_gt(lines, 0);
        free(log);
    }
    hx_teardown(&h);
}
END_TEST

/*
 * Wait until pid is stopped (state T in /proc/pid/stat): kill() only queues
 * the SIGSTOP, and a master still running for that moment may fork its
 * reaper, which a list of its children taken too early would miss.  That
 * reaper, left running, renews the leases of the stopped workers (its
 * stopped master's process table still says they live), so they would never
 * be rescued: seen once in the sanitizer pass, when the freeze fell on the
 * moment the master starts its reaper (as soon as its workers are ready).
 */
static void
wait_stopped(pid_t pid)
{
    char   path[64], buf[512], *rp, state = '?';
    double until = rt_now() + 5;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    while (rt_now() < until) {
        FILE *f = fopen(path, "r");

        if (f != NULL) {
            if (fgets(buf, sizeof(buf), f) != NULL && (rp = strrchr(buf, ')')) != NULL)
                state = rp[2];
            fclose(f);
        }
        if (state == 'T' || state == 't')
            return;
        hx_sleep(0.005);
    }
    ck_abort_msg("process %d did not stop within 5 s of SIGSTOP (state %c)", (int) pid, state);
}

START_TEST(test_vanished_host_is_rescued)
{
    hx_t   h;
    pid_t  kids[64];
    int    nkids;
    long   held, workers_db, late, after;
    int    lost, dead;
    char   sql[1024];
    double t_stop, t_rescued;
    hx_master_t *b;

    hx_setup(&h);
    /*
     * No idle_in_transaction_session_timeout here: the fenced completion
     * and the COMMIT of a transactional batch go out in one flush, so a
     * frozen worker holds no lock on a job row and the rescue is never
     * blocked (this test caught that gap before the worker was changed).
     */
    /* 20 ms per job, 50 per batch: each worker is a second inside each batch */
    hx_enqueue(&h, 4000, 0, "{\"ms\": 20}");
    for (int i = 0; i < 3; i++)
        hx_add_master(&h, i == 0 ? "host-a" : i == 1 ? "host-b" : "host-c",
                      "[worker]\nbatch_size = 50\n[reaper]\nlease = 2\n");
    for (int i = 0; i < 3; i++)
        hx_start(&h, &h.m[i], NULL);
    b = &h.m[1];

    /* wait until host-b's workers hold running jobs, then freeze the whole host */
    snprintf(sql, sizeof(sql), "SELECT count(*) >= 20 FROM rhino.jobs j JOIN rhino.workers w ON w.id = j.worker_id"
             " JOIN rhino.nodes n ON n.id = w.node_id WHERE n.name = 'host-b' AND j.state = 'running'");
    ck_assert_msg(rt_wait_sql(h.conn, sql, 30), "host-b never held running jobs");
    ck_assert_int_eq(kill(b->pid, SIGSTOP), 0);
    wait_stopped(b->pid);
    nkids = rt_children_of(b->pid, kids, 64);
    for (int i = 0; i < nkids; i++) {
        hx_track(kids[i]);
        ck_assert_int_eq(kill(kids[i], SIGSTOP), 0);
    }
    t_stop = rt_now();
    /* the live workers rhino.workers knows for host-b are all among the children we stopped */
    {
        size_t o = (size_t) snprintf(sql, sizeof(sql), "SELECT count(*) FILTER (WHERE w.pid NOT IN (0");

        for (int i = 0; i < nkids; i++)
            o += (size_t) snprintf(sql + o, sizeof(sql) - o, ",%d", (int) kids[i]);
        snprintf(sql + o, sizeof(sql) - o, ")) * 1000 + count(*) FROM rhino.workers w JOIN rhino.nodes n"
                 " ON n.id = w.node_id WHERE n.name = 'host-b' AND w.ended_at IS NULL AND n.pid = %d", (int) b->pid);
    }
    workers_db = rt_query_long(h.conn, sql);
    if (workers_db < 1 || workers_db >= 1000 || nkids < 2)
        hx_dump_logs(&h);
    ck_assert_msg(workers_db >= 1 && workers_db < 1000, "host-b's live workers in rhino.workers (%ld, +1000 per"
                  " pid that is not a child of its master) do not match its %d children", workers_db, nkids);
    /* statements sent just before the freeze (a claim) still land: let them, then see what it holds */
    hx_sleep(0.3);
    rt_exec(h.conn, "CREATE TABLE may_repeat AS SELECT j.id FROM rhino.jobs j JOIN rhino.workers w"
                    " ON w.id = j.worker_id JOIN rhino.nodes n ON n.id = w.node_id"
                    " WHERE n.name = 'host-b' AND j.state = 'running'");
    held = rt_query_long(h.conn, "SELECT count(*) FROM may_repeat");
    ck_assert_int_gt(held, 0);

    /* the other hosts rescue its jobs once the 2 s lease has run out */
    while (rt_query_long(h.conn, "SELECT count(*) FROM may_repeat m JOIN rhino.jobs_done d ON d.id = m.id") < held) {
        if (rt_now() - t_stop > 30) {
            hx_dump_logs(&h);
            ck_abort_msg("the frozen host's %ld jobs were not rescued within 30 s", held);
        }
        hx_sleep(0.05);
    }
    t_rescued = rt_now() - t_stop;
    fprintf(stderr, "HOSTS| vanished host: %ld held jobs finished by the other hosts %.2f s after the freeze"
            " (lease 2 s)\n", held, t_rescued);
    ck_assert_double_lt(t_rescued, 2 + 3 + 6);

    /* it wakes up: its late completions are stale, it carries on */
    for (int i = 0; i < nkids; i++)
        kill(kids[i], SIGCONT);
    kill(b->pid, SIGCONT);
    hx_drain(&h, 120);
    hx_sleep(1.5);                 /* let its workers reach their fenced completions */
    /*
     * Its late completions are rejected as stale; or, where PostgreSQL ended
     * a frozen session (tcp keepalives, an operator's idle timeout), the worker
     * reconnects and replays them, fenced; or a worker's liveness check,
     * due after the freeze, goes out before its finalize and it exits
     * without sending one (it was declared dead: its jobs are others' now).
     * Whichever, nothing is recorded twice: hx_verify checks the effects.
     */
    late = hx_stale(b);
    lost = hx_count_in_log(b, "database connection lost");
    dead = hx_count_in_log(b, "was declared dead in rhino.workers");
    if (late == 0 && lost == 0 && dead == 0)
        hx_dump_logs(&h);
    ck_assert_msg(late > 0 || lost > 0 || dead > 0, "host-b's late completions were neither reported stale nor"
                  " replayed after a reconnect, and no worker of it saw it had been declared dead (it held %ld"
                  " jobs)", held);
    /* more work: host-b takes part again */
    hx_enqueue(&h, 1200, 0, "{\"ms\": 5}");
    hx_drain(&h, 120);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM ledger l JOIN rhino.workers w ON w.pid = l.pid"
             " JOIN rhino.nodes n ON n.id = w.node_id WHERE n.name = 'host-b' AND l.job_id >"
             " (SELECT max(id) - 1200 FROM rhino.jobs_done)");
    after = rt_query_long(h.conn, sql);
    fprintf(stderr, "HOSTS| after waking: host-b reported %ld stale completion(s) and %d lost connection(s),"
            " then ran %ld of 600 new transactional jobs\n", late, lost, after);
    ck_assert_int_gt(after, 0);
    for (int i = 0; i < 3; i++)
        hx_stop(&h, &h.m[i]);
    for (int i = 0; i < nkids; i++)
        hx_untrack(kids[i]);
    /* fast jobs may run twice only if they were rescued (a later attempt finished them) */
    rt_exec(h.conn, "INSERT INTO may_repeat SELECT id FROM rhino.jobs_done WHERE attempt > 1");
    hx_verify(&h, 1);
    hx_teardown(&h);
}
END_TEST

/* ---- throughput --------------------------------------------------------- */

static double
drain_rate(int masters, long jobs)
{
    hx_t   h;
    double secs;

    hx_setup(&h);
    hx_enqueue(&h, jobs, 1, "{}");
    for (int i = 0; i < masters; i++)
        hx_add_master(&h, i == 0 ? "rate-a" : i == 1 ? "rate-b" : "rate-c",
                      "[worker]\nprocesses = 1\nbatch_size = 1000\n");
    for (int i = 0; i < masters; i++)
        hx_start(&h, &h.m[i], NULL);
    secs = hx_drain(&h, 240);
    for (int i = 0; i < masters; i++)
        hx_stop(&h, &h.m[i]);
    hx_verify(&h, 0);
    hx_teardown(&h);
    fprintf(stderr, "HOSTS| throughput: %d master(s) x 1 worker: %ld jobs in %.2f s = %.0f jobs/s\n", masters,
            jobs, secs, (double) jobs / secs);
    return (double) jobs / secs;
}

START_TEST(test_throughput_adds_up)
{
    long   jobs = 20000;
    double one = drain_rate(1, jobs), three = drain_rate(3, jobs);

    /* printed, not asserted: on two cores three hosts share the same CPUs and PostgreSQL */
    fprintf(stderr, "HOSTS| throughput: 1 master %.0f jobs/s, 3 masters %.0f jobs/s (x%.2f)\n", one, three,
            three / one);
}
END_TEST

/* ---- main: pgbouncer's life outside the forked tests ---------------------- */

static int
free_port(void)
{
    struct sockaddr_in a;
    socklen_t          len = sizeof(a);
    int                fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0
        || getsockname(fd, (struct sockaddr *) &a, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static pid_t pgb_pid;
static char  pgb_dir[256];

/* A whole small file, without check's asserts (main() runs outside any test). */
static char *
slurp(const char *path)
{
    FILE  *f = fopen(path, "r");
    char  *buf;
    size_t n;

    if (f == NULL)
        return NULL;
    buf = calloc(1, 65536);
    if (buf != NULL) {
        n = fread(buf, 1, 65535, f);
        buf[n] = '\0';
    }
    fclose(f);
    return buf;
}

/*
 * Start pgbouncer in front of RHINO_TEST_DSN's server.  Under root it runs
 * as the postgres user (it refuses root), through runuser as
 * tests/pgcluster.sh runs PostgreSQL.  Returns 0, or -1 with pgb_error set.
 */
static int
pgbouncer_start(void)
{
    const char *dsn = getenv("RHINO_TEST_DSN");
    PQconninfoOption *opts;
    char        host[256] = "127.0.0.1", pgport[16] = "5432", user[64] = "postgres";
    char        ini[2048], path[512], conninfo[512];
    FILE       *f;
    int         as_root = geteuid() == 0, port;
    struct passwd *pw = NULL;

    if (dsn == NULL || *dsn == '\0') {
        snprintf(pgb_error, sizeof(pgb_error), "RHINO_TEST_DSN is not set");
        return -1;
    }
    if (access(PGBOUNCER_BIN, X_OK) != 0) {
        snprintf(pgb_error, sizeof(pgb_error), "%s: %s (scripts/deps installs the pgbouncer package)",
                 PGBOUNCER_BIN, strerror(errno));
        return -1;
    }
    opts = PQconninfoParse(dsn, NULL);
    if (opts == NULL) {
        snprintf(pgb_error, sizeof(pgb_error), "RHINO_TEST_DSN is not a connection string");
        return -1;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || *o->val == '\0')
            continue;
        if (strcmp(o->keyword, "host") == 0)
            snprintf(host, sizeof(host), "%s", o->val);
        else if (strcmp(o->keyword, "port") == 0)
            snprintf(pgport, sizeof(pgport), "%s", o->val);
        else if (strcmp(o->keyword, "user") == 0)
            snprintf(user, sizeof(user), "%s", o->val);
    }
    PQconninfoFree(opts);
    snprintf(pgb_dir, sizeof(pgb_dir), "/tmp/rhino-pgbouncer-XXXXXX");
    if (mkdtemp(pgb_dir) == NULL) {
        snprintf(pgb_error, sizeof(pgb_error), "mkdtemp: %s", strerror(errno));
        return -1;
    }
    port = free_port();
    snprintf(ini, sizeof(ini),
             "[databases]\n"
             "* = host=%s port=%s\n"
             "[pgbouncer]\n"
             "listen_addr = 127.0.0.1\n"
             "listen_port = %d\n"
             "unix_socket_dir =\n"
             "auth_type = trust\n"
             "auth_file = %s/userlist.txt\n"
             "pool_mode = transaction\n"
             "max_client_conn = 100\n"
             "default_pool_size = %d\n"
             "min_pool_size = 0\n"
             "reserve_pool_size = 0\n"
             "server_reset_query =\n"
             "ignore_startup_parameters = extra_float_digits\n"
             "pidfile = %s/pgbouncer.pid\n"
             "logfile = %s/pgbouncer.log\n"
             "log_connections = 0\n"
             "log_disconnections = 0\n",
             host, pgport, port, pgb_dir, POOL_SIZE, pgb_dir, pgb_dir);
    snprintf(path, sizeof(path), "%s/pgbouncer.ini", pgb_dir);
    if ((f = fopen(path, "w")) == NULL || fputs(ini, f) < 0 || fclose(f) != 0)
        goto io_error;
    snprintf(path, sizeof(path), "%s/userlist.txt", pgb_dir);
    if ((f = fopen(path, "w")) == NULL || fprintf(f, "\"%s\" \"\"\n", user) < 0 || fclose(f) != 0)
        goto io_error;
    snprintf(pgb_log, sizeof(pgb_log), "%s/pgbouncer.log", pgb_dir);
    if (as_root) {
        char file[512];

        pw = getpwnam("postgres");
        if (pw == NULL) {
            snprintf(pgb_error, sizeof(pgb_error), "running as root and there is no postgres user to run pgbouncer as");
            return -1;
        }
        /* pgbouncer writes its pid and log file in there */
        if (chown(pgb_dir, pw->pw_uid, pw->pw_gid) != 0)
            goto io_error;
        snprintf(file, sizeof(file), "%s/pgbouncer.ini", pgb_dir);
        if (chown(file, pw->pw_uid, pw->pw_gid) != 0)
            goto io_error;
        snprintf(file, sizeof(file), "%s/userlist.txt", pgb_dir);
        if (chown(file, pw->pw_uid, pw->pw_gid) != 0)
            goto io_error;
    }

    pgb_pid = fork();
    if (pgb_pid < 0)
        goto io_error;
    if (pgb_pid == 0) {
        char ini_path[512];

        int  null = open("/dev/null", O_RDWR);

        /* it logs to its file; stdout/stderr of the test (make's pipe) must not stay open in it */
        snprintf(ini_path, sizeof(ini_path), "%s/pgbouncer.ini", pgb_dir);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || chdir("/") != 0)
            _exit(127);
        if (as_root)
            execl("/usr/sbin/runuser", "runuser", "-u", "postgres", "--", PGBOUNCER_BIN, ini_path, (char *) NULL);
        else
            execl(PGBOUNCER_BIN, PGBOUNCER_BIN, ini_path, (char *) NULL);
        _exit(127);
    }

    /* ready when it accepts a connection */
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=%s dbname=postgres connect_timeout=2",
             port, user);
    for (double t0 = rt_now(); rt_now() - t0 < 15; hx_sleep(0.1)) {
        PGconn *c = PQconnectdb(conninfo);
        int     ok = PQstatus(c) == CONNECTION_OK;
        int     st;

        PQfinish(c);
        if (ok) {
            pgb_port = port;
            return 0;
        }
        if (waitpid(pgb_pid, &st, WNOHANG) == pgb_pid) {
            pgb_pid = 0;
            break;
        }
    }
    {
        char *log = slurp(pgb_log);

        snprintf(pgb_error, sizeof(pgb_error), "pgbouncer on port %d did not accept connections; its log:\n%s", port,
                 log ? log : "(none)");
        free(log);
    }
    return -1;

io_error:
    snprintf(pgb_error, sizeof(pgb_error), "cannot prepare %s: %s", pgb_dir, strerror(errno));
    return -1;
}

/* Stop pgbouncer by the pid in its pidfile (runuser may not pass signals on), then reap runuser. */
static void
pgbouncer_stop(void)
{
    char  path[512], *text;
    pid_t real = 0;
    int   st;

    if (pgb_pid <= 0)
        return;
    snprintf(path, sizeof(path), "%s/pgbouncer.pid", pgb_dir);
    text = slurp(path);
    if (text != NULL)
        real = (pid_t) atoi(text);
    free(text);
    if (real > 0)
        kill(real, SIGTERM);
    kill(pgb_pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(pgb_pid, &st, WNOHANG) == pgb_pid) {
            pgb_pid = 0;
            break;
        }
        hx_sleep(0.05);
    }
    if (pgb_pid > 0) {
        if (real > 0)
            kill(real, SIGKILL);
        kill(pgb_pid, SIGKILL);
        waitpid(pgb_pid, &st, 0);
    }
    if (getenv("RHINO_TEST_KEEP") == NULL) {
        /* our own mkdtemp directory under /tmp: ini, userlist, log, pid */
        snprintf(path, sizeof(path), "%s/pgbouncer.ini", pgb_dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/userlist.txt", pgb_dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/pgbouncer.log", pgb_dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/pgbouncer.pid", pgb_dir);
        unlink(path);
        rmdir(pgb_dir);
    }
}

static Suite *
hosts_suite(void)
{
    Suite *s = suite_create("hosts");
    TCase *tc = tcase_create("pgbouncer");

    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_pgbouncer_transaction_mode);
    tcase_add_test(tc, test_pgbouncer_prepared_falls_back);
    suite_add_tcase(s, tc);

    tc = tcase_create("masters");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_three_masters_one_database);
    tcase_add_test(tc, test_vanished_host_is_rescued);
    tcase_add_test(tc, test_throughput_adds_up);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr;
    int      failed;

    hx_pids = mmap(NULL, sizeof(pid_t) * HX_MAXPIDS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (hx_pids == MAP_FAILED) {
        perror("mmap");
        return EXIT_FAILURE;
    }
    memset(hx_pids, 0, sizeof(pid_t) * HX_MAXPIDS);
    if (pgbouncer_start() < 0)
        fprintf(stderr, "check_hosts: %s\n", pgb_error);
    sr = srunner_create(hosts_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    hx_kill_tracked();
    pgbouncer_stop();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
