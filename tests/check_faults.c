/*
 * check_faults.c - the fault suite: exactly-once under chaos.
 *
 * Every cell enqueues thousands of transactional jobs (kind tx_ledger: the
 * handler inserts (job_id, attempt) into the table "ledger" inside the
 * transaction that completes the job), injects a fault while they run,
 * waits for the queue to empty and checks: every job completed (or
 * discarded where the cell means it), exactly one ledger row per completed
 * job and none for a discarded one, nothing left running, and progress
 * stalled for at most a few seconds.  One line per cell, "FAULTS| ...",
 * goes to the log; scripts/test prints them as a table.
 *
 * The suite runs its own PostgreSQL cluster (tests/pgcluster.sh with a base
 * directory and port of its own), because cell 4 restarts it and the other
 * suites must not see that (RHINO_FAULTS_PG_BASE and RHINO_FAULTS_PG_PORT
 * move it).  RHINO_FAULTS_LONG=1 runs the longer variant.
 */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "rh_testlib.h"

static int fx_long;

/*
 * Recovery bound.  The cells run with a 30 s lease: a stall of 10 s at
 * most proves that recovery came from the master's and the reaper's prompt
 * action, not from waiting out a lease, with room left for a busy 2-core
 * machine (a sanitized build, other suites).  Cell 8 means a lease wait
 * and uses a short lease of its own.
 */
#define FX_MAX_STALL 10.0

typedef struct {
    const char *cell;
    char       *dsn;
    PGconn     *conn;           /* reconnected on demand: cell 4 restarts the server */
    char       *ini;
    char        log[4096], env_dsn[4200];
    pid_t       pid;
    long        jobs;
    int         faults;
    /* progress watch */
    long        last_done;
    double      last_progress;
    double      stall;
} fx_t;

static void
pgcluster(const char *cmd)
{
    char  script[4096];
    char *argv[] = { script, (char *) cmd, NULL };
    char *err = NULL;
    int   rc;

    snprintf(script, sizeof(script), "%s/pgcluster.sh", rt_env("RHINO_TEST_SRCDIR"));
    rc = rt_run(argv, NULL, NULL, NULL, &err);
    ck_assert_msg(rc == 0, "pgcluster.sh %s failed (%d): %s", cmd, rc, err ? err : "");
    free(err);
}

/* A query that survives a server restart: reconnects and retries for up to 30 s. */
static long
fx_long_query(fx_t *fx, const char *sql)
{
    double t0 = rt_now();

    for (;;) {
        if (fx->conn == NULL || PQstatus(fx->conn) != CONNECTION_OK) {
            if (fx->conn)
                PQfinish(fx->conn);
            fx->conn = PQconnectdb(fx->dsn);
        }
        if (PQstatus(fx->conn) == CONNECTION_OK) {
            PGresult *res = PQexec(fx->conn, sql);
            if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
                long v = strtol(PQgetvalue(res, 0, 0), NULL, 10);
                PQclear(res);
                return v;
            }
            PQclear(res);
        }
        ck_assert_msg(rt_now() - t0 < 30, "%s: the database stayed unreachable: %s", fx->cell,
                      PQerrorMessage(fx->conn));
        usleep(50 * 1000);
    }
}

/* Sample progress; the longest time without any job finishing is the "stall". */
static long
fx_poll(fx_t *fx)
{
    long   done = fx_long_query(fx, "SELECT count(*) FROM rhino.jobs_done");
    double now = rt_now();

    if (done > fx->last_done || done >= fx->jobs) {
        fx->last_done = done;
        fx->last_progress = now;
    } else if (now - fx->last_progress > fx->stall) {
        fx->stall = now - fx->last_progress;
    }
    return done;
}

/* Sleep for `seconds` while watching progress. */
static void
fx_sleep(fx_t *fx, double seconds)
{
    double end = rt_now() + seconds;

    while (rt_now() < end) {
        fx_poll(fx);
        usleep(20 * 1000);
    }
}

/* Enqueue n more tx_ledger jobs (payload from payload_sql, over g) and count them in. */
static void
fx_enqueue(fx_t *fx, long n, const char *payload_sql)
{
    char sql[2048];

    snprintf(sql, sizeof(sql), "INSERT INTO rhino.jobs (kind, payload) SELECT 'tx_ledger', %s"
             " FROM generate_series(1, %ld) g", payload_sql, n);
    rt_exec(fx->conn, sql);
    fx->jobs += n;
}

static void
fx_setup(fx_t *fx, const char *cell, long jobs, const char *payload_sql, const char *extra_ini)
{
    char ini[8192], *slash;

    memset(fx, 0, sizeof(*fx));
    fx->cell = cell;
    fx->dsn = rt_db_create_migrated();
    fx->conn = rt_connect(fx->dsn);
    rt_exec(fx->conn, "CREATE TABLE ledger (job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL)");
    fx_enqueue(fx, jobs, payload_sql);
    snprintf(ini, sizeof(ini),
             "[worker]\nprocesses = 2\nbatch_size = 1000\npoll_interval = 0.05\nmax_crashes = 1000\n"
             "job_timeout = 30\n"
             "[handlers]\npath = %s\n"
             "[retry]\nbase_delay = 0.05\nmax_delay = 0.5\n"
             "[reaper]\ninterval = 0.1\nlease = 30\n"
             "[master]\nshutdown_timeout = 20\nfast_shutdown_timeout = 2\n"
             "%s", rt_handlers_so(), extra_ini ? extra_ini : "");
    fx->ini = rt_write_file("rhino.ini", ini);
    snprintf(fx->log, sizeof(fx->log), "%s", fx->ini);
    slash = strrchr(fx->log, '/');
    strcpy(slash + 1, "rhino.log");
    snprintf(fx->env_dsn, sizeof(fx->env_dsn), "RHINO_DSN=%s", fx->dsn);
    fx->last_progress = rt_now();
}

static void
fx_start(fx_t *fx)
{
    char *argv[] = { (char *) rt_env("RHINO_BIN"), "-c", fx->ini, NULL };
    char *env[] = { fx->env_dsn, NULL };

    fx->pid = rt_spawn(argv, env, fx->log);
    ck_assert_int_gt(fx->pid, 0);
}

static void
fx_dump_log(fx_t *fx)
{
    char *log = rt_read_file(fx->log);

    fprintf(stderr, "---- rhino log (%s) ----\n%s-----------\n", fx->cell, log ? log : "(none)");
    free(log);
}

static void
fx_stop(fx_t *fx)
{
    int rc;

    if (fx->pid <= 0)
        return;
    kill(fx->pid, SIGTERM);
    rc = rt_wait_exit(fx->pid, 40);
    if (rc != 0)
        fx_dump_log(fx);
    ck_assert_msg(rc == 0, "%s: rhino exited with %d after SIGTERM", fx->cell, rc);
    fx->pid = 0;
}

/* Wait until every job is finished (completed or discarded). */
static void
fx_drain(fx_t *fx, double timeout)
{
    double t0 = rt_now();

    while (fx_poll(fx) < fx->jobs) {
        if (rt_now() - t0 > timeout) {
            fx_dump_log(fx);
            ck_abort_msg("%s: %ld of %ld jobs finished after %.0f s", fx->cell, fx->last_done, fx->jobs, timeout);
        }
        usleep(50 * 1000);
    }
}

/* Sum the stale finalizes rhino reported in its log. */
static long
fx_stale(fx_t *fx)
{
    char *log = rt_read_file(fx->log), *p;
    long  stale = 0;

    if (log == NULL)
        return 0;
    for (p = log; (p = strstr(p, "msg=\"")) != NULL; p++) {
        long n, m;
        if (sscanf(p, "msg=\"%ld of %ld finalizes were stale", &n, &m) == 2)
            stale += n;
        else if (sscanf(p, "msg=\"transactional batch rolled back: %ld job(s) had been rescued", &n) == 1)
            stale += n;
    }
    free(log);
    return stale;
}

/*
 * The verdict: lost = jobs not finished as the cell expects, or completed
 * without their ledger row; duplicates = extra ledger rows, or rows of jobs
 * that did not complete.  Prints the cell's line and asserts zero of both.
 */
static void
fx_verify(fx_t *fx, long expect_discarded)
{
    long   completed, discarded, running, lost, dups, stale, locks;

    completed = fx_long_query(fx, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'completed'");
    discarded = fx_long_query(fx, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'discarded'");
    running = fx_long_query(fx, "SELECT count(*) FROM rhino.jobs WHERE state = 'running'");
    lost = fx->jobs - completed - discarded
         + fx_long_query(fx, "SELECT count(*) FROM rhino.jobs_done d WHERE d.state = 'completed'"
                             " AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.job_id = d.id)");
    dups = fx_long_query(fx, "SELECT coalesce(sum(n - 1), 0) FROM"
                             " (SELECT count(*) n FROM ledger GROUP BY job_id HAVING count(*) > 1) x")
         + fx_long_query(fx, "SELECT count(*) FROM ledger l WHERE NOT EXISTS"
                             " (SELECT 1 FROM rhino.jobs_done d WHERE d.id = l.job_id AND d.state = 'completed')");
    locks = fx_long_query(fx, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                              " WHERE c.relname LIKE 'jobs%' AND l.pid <> pg_backend_pid()");
    stale = fx_stale(fx);

    fprintf(stderr, "FAULTS| %-34s | %7ld | %6d | %4ld | %10ld | %5ld | %6.2f s |\n", fx->cell, fx->jobs,
            fx->faults, lost, dups, stale, fx->stall);
    rt_check_log(fx->log, fx->cell, 1);     /* the faults make errors: reports only */
    ck_assert_msg(lost == 0, "%s: %ld job(s) lost", fx->cell, lost);
    ck_assert_msg(dups == 0, "%s: %ld duplicate effect(s)", fx->cell, dups);
    ck_assert_msg(discarded == expect_discarded, "%s: %ld discarded, expected %ld", fx->cell, discarded,
                  expect_discarded);
    ck_assert_msg(running == 0, "%s: %ld job(s) left running", fx->cell, running);
    ck_assert_msg(locks == 0, "%s: %ld lock(s) left on the job tables", fx->cell, locks);
}

static void
fx_teardown(fx_t *fx)
{
    if (fx->pid > 0) {
        kill(fx->pid, SIGKILL);
        rt_wait_exit(fx->pid, 5);
    }
    if (fx->conn)
        PQfinish(fx->conn);
}

/* A random worker in the middle of a batch (holding running jobs); 0 if none. */
static long
fx_random_worker(fx_t *fx)
{
    return fx_long_query(fx, "SELECT coalesce((SELECT w.pid FROM rhino.workers w WHERE w.ended_at IS NULL"
                             " AND EXISTS (SELECT 1 FROM rhino.jobs j WHERE j.worker_id = w.id"
                             " AND j.state = 'running') ORDER BY random() LIMIT 1), 0)");
}

/* ---------------------------------------------------------------------- */

START_TEST(cell1_kill9_workers)
{
    fx_t fx;
    int  kills = fx_long ? 200 : 50;

    fx_setup(&fx, "1 kill -9 of random workers", fx_long ? 400000 : 100000, "'{}'", NULL);
    fx_start(&fx);
    while (fx.faults < kills) {
        long pid;

        fx_sleep(&fx, 0.1 + (rand() % 200) / 1000.0);
        pid = fx_random_worker(&fx);
        if (pid > 0 && kill((pid_t) pid, SIGKILL) == 0)
            fx.faults++;
        /*
         * The kills must land on busy workers, however fast this machine
         * drains between them: keep a backlog by topping the queue up
         * while it runs (the verdict counts every job enqueued).
         */
        if (fx.jobs - fx.last_done < 30000)
            fx_enqueue(&fx, 50000, "'{}'");
    }
    fx_drain(&fx, 180);
    fx_stop(&fx);
    fx_verify(&fx, 0);
    ck_assert_double_lt(fx.stall, FX_MAX_STALL);
    fx_teardown(&fx);
}
END_TEST

START_TEST(cell2_poison_handlers)
{
    fx_t fx;
    long poison;

    /* every 500th job segfaults, every 500th+1 aborts, every 1000th+2 loops until its deadline */
    fx_setup(&fx, "2 segfault/abort/endless handlers", fx_long ? 20000 : 5000,
             "CASE WHEN g % 500 = 1 THEN '{\"fault\": \"segv\"}'::jsonb"
             "     WHEN g % 500 = 2 THEN '{\"fault\": \"abort\"}'"
             "     WHEN g % 1000 = 3 THEN '{\"fault\": \"loop\"}' ELSE '{}' END",
             "[worker]\nbatch_size = 100\nmax_crashes = 2\njob_timeout = 1\n");
    poison = fx_long_query(&fx, "SELECT count(*) FROM rhino.jobs WHERE payload ? 'fault'");
    fx_start(&fx);
    fx_drain(&fx, 180);
    fx_stop(&fx);
    fx.faults = (int) fx_long_query(&fx, "SELECT coalesce(sum(crash_count), 0) FROM rhino.jobs_done");
    fx_verify(&fx, poison);
    /* each poison job was quarantined after exactly max_crashes crashes, with the reason */
    {
        long  ok = fx_long_query(&fx, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'discarded'"
                                      " AND crash_count = 2 AND last_error LIKE 'quarantined after 2 crash(es)%'");
        char *bad = rt_query1(fx.conn, "SELECT string_agg(id || ' ' || payload::text || ' crashes=' || crash_count"
                                       " || ' errors=' || errors || ' ' || coalesce(last_error, ''), '; ')"
                                       " FROM rhino.jobs_done WHERE state = 'discarded' AND NOT (crash_count = 2"
                                       " AND last_error LIKE 'quarantined after 2 crash(es)%')");
        ck_assert_msg(ok == poison, "%ld of %ld poison jobs quarantined as expected; others: %s", ok, poison,
                      bad ? bad : "none");
        free(bad);
    }
    ck_assert_int_eq(fx_long_query(&fx, "SELECT count(*) FROM rhino.jobs_done WHERE payload->>'fault' = 'loop'"
                                        " AND last_error LIKE '%timeout%'"),
                     fx_long_query(&fx, "SELECT count(*) FROM rhino.jobs_done WHERE payload->>'fault' = 'loop'"));
    ck_assert_double_lt(fx.stall, FX_MAX_STALL);
    fx_teardown(&fx);
}
END_TEST

START_TEST(cell3_terminate_backends)
{
    fx_t fx;
    int  rounds = fx_long ? 60 : 20;

    fx_setup(&fx, "3 pg_terminate_backend of rhino", fx_long ? 200000 : 60000, "'{}'", NULL);
    fx_start(&fx);
    fx_sleep(&fx, 0.5);
    for (int i = 0; i < rounds && fx.last_done < fx.jobs; i++) {
        fx.faults += (int) fx_long_query(&fx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                              " WHERE application_name LIKE 'rhino %'"
                                              " AND datname = current_database()");
        fx_sleep(&fx, 0.2 + (rand() % 200) / 1000.0);
    }
    fx_drain(&fx, 180);
    fx_stop(&fx);
    fx_verify(&fx, 0);
    ck_assert_double_lt(fx.stall, FX_MAX_STALL);
    fx_teardown(&fx);
}
END_TEST

START_TEST(cell4_postgres_restart)
{
    fx_t fx;

    fx_setup(&fx, "4 PostgreSQL restart fast+immediate", fx_long ? 300000 : 80000, "'{}'", NULL);
    fx_start(&fx);
    fx_sleep(&fx, 1.0);
    pgcluster("restart-fast");
    fx.faults++;
    fx_sleep(&fx, 2.0);
    pgcluster("restart-immediate");
    fx.faults++;
    fx_drain(&fx, 180);
    fx_stop(&fx);
    fx_verify(&fx, 0);
    ck_assert_double_lt(fx.stall, FX_MAX_STALL);
    fx_teardown(&fx);
}
END_TEST

START_TEST(cell5_master_sigkill)
{
    fx_t fx;

    fx_setup(&fx, "5 SIGKILL of the master, restart", fx_long ? 200000 : 60000, "'{}'", NULL);
    fx_start(&fx);
    fx_sleep(&fx, 1.0);
    ck_assert_int_eq(kill(fx.pid, SIGKILL), 0);
    rt_wait_exit(fx.pid, 5);
    fx.pid = 0;
    fx.faults++;
    /* the orphans drain and leave (PR_SET_PDEATHSIG), then a fresh start */
    for (double t0 = rt_now(); fx_long_query(&fx, "SELECT count(*) FROM pg_stat_activity WHERE application_name"
                                                  " LIKE 'rhino %' AND datname = current_database()") > 0;) {
        ck_assert_msg(rt_now() - t0 < 10, "rhino's sessions outlived the master by 10 s");
        fx_sleep(&fx, 0.05);
    }
    fx_start(&fx);
    fx_drain(&fx, 180);
    fx_stop(&fx);
    fx_verify(&fx, 0);
    ck_assert_double_lt(fx.stall, FX_MAX_STALL);
    fx_teardown(&fx);
}
END_TEST

START_TEST(cell6_sigterm_restart)
{
    fx_t fx;
    int  stops = fx_long ? 10 : 3;

    fx_setup(&fx, "6 SIGTERM in full batches, restart", fx_long ? 100000 : 30000, "'{\"ms\": 0}'", NULL);
    for (int i = 0; i < stops; i++) {
        fx_start(&fx);
        fx_sleep(&fx, 0.7);
        fx_stop(&fx);               /* exit 0 asserted */
        fx.faults++;
        ck_assert_int_eq(fx_long_query(&fx, "SELECT count(*) FROM rhino.jobs WHERE state = 'running'"), 0);
        ck_assert_int_eq(fx_long_query(&fx, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                                            " WHERE c.relname LIKE 'jobs%' AND l.pid <> pg_backend_pid()"), 0);
        fx.last_progress = rt_now();    /* the stopped gap is ours, not a stall */
    }
    fx_start(&fx);
    fx_drain(&fx, 180);
    fx_stop(&fx);
    fx_verify(&fx, 0);
    ck_assert_double_lt(fx.stall, FX_MAX_STALL);
    fx_teardown(&fx);
}
END_TEST

START_TEST(cell7_sighup_roll)
{
    fx_t fx;
    int  rolls = fx_long ? 20 : 5;

    fx_setup(&fx, "7 SIGHUP roll under load", fx_long ? 200000 : 60000, "'{}'", NULL);
    fx_start(&fx);
    fx_sleep(&fx, 0.5);
    for (int i = 0; i < rolls; i++) {
        kill(fx.pid, SIGHUP);
        fx.faults++;
        fx_sleep(&fx, 0.4);
    }
    fx_drain(&fx, 180);
    ck_assert_int_gt(fx_long_query(&fx, "SELECT max(generation) FROM rhino.workers"), 1);
    fx_stop(&fx);
    fx_verify(&fx, 0);
    ck_assert_int_eq(fx_stale(&fx), 0);     /* a roll drains: nothing goes stale */
    ck_assert_double_lt(fx.stall, FX_MAX_STALL);
    fx_teardown(&fx);
}
END_TEST

START_TEST(cell8_stale_worker)
{
    fx_t fx;
    long pid, held;
    char sql[512];

    /* 20 ms per job, 50 per batch: a worker spends a second inside each transaction */
    fx_setup(&fx, "8 stale worker (SIGSTOP past lease)", 2000, "'{\"ms\": 20}'",
             "[worker]\nbatch_size = 50\n[reaper]\nlease = 2\n");
    fx_start(&fx);
    ck_assert(rt_wait_sql(fx.conn, "SELECT count(*) > 0 FROM rhino.jobs WHERE state = 'running'", 20));
    pid = fx_long_query(&fx, "SELECT w.pid FROM rhino.workers w JOIN rhino.jobs j ON j.worker_id = w.id"
                             " WHERE j.state = 'running' LIMIT 1");
    ck_assert_int_eq(kill((pid_t) pid, SIGSTOP), 0);
    fx.faults++;
    snprintf(sql, sizeof(sql), "CREATE TABLE held AS SELECT j.id FROM rhino.jobs j JOIN rhino.workers w"
             " ON w.id = j.worker_id WHERE w.pid = %ld AND j.state = 'running'", pid);
    rt_exec(fx.conn, sql);
    held = fx_long_query(&fx, "SELECT count(*) FROM held");
    /* past its lease, its jobs are rescued and finished by the other worker */
    for (double t0 = rt_now();
         fx_long_query(&fx, "SELECT count(*) FROM held h JOIN rhino.jobs_done d ON d.id = h.id") < held;) {
        ck_assert_msg(rt_now() - t0 < 30, "the stopped worker's jobs were not rescued");
        fx_sleep(&fx, 0.1);
    }
    fx.last_progress = rt_now();
    /* it wakes up: its late completions must be rejected and its writes rolled back */
    ck_assert_int_eq(kill((pid_t) pid, SIGCONT), 0);
    fx_drain(&fx, 120);
    fx_sleep(&fx, 1.5);             /* let it reach its fenced completion */
    fx_stop(&fx);
    fx_verify(&fx, 0);
    ck_assert_msg(fx_stale(&fx) > 0, "the stale worker's completions were not rejected (held %ld jobs)", held);
    fx_teardown(&fx);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* regressions: one worker, one fault, a precise expectation              */

/* The pid of the worker of a one-worker daemon, once registered. */
static pid_t
rg_worker_pid(rt_daemon_t *d)
{
    rt_daemon_wait(d, "SELECT count(*) = 1 FROM rhino.workers WHERE ended_at IS NULL", 30);
    return (pid_t) rt_query_long(d->conn, "SELECT pid FROM rhino.workers WHERE ended_at IS NULL");
}

/* Refuse (0) or allow (1) new connections to the daemon's database, and cut the worker's. */
static void
rg_allow_connections(rt_daemon_t *d, int allow, int cut_worker)
{
    char   *db = rt_query1(d->conn, "SELECT current_database()"), sql[256];
    PGconn *admin = rt_connect(rt_env("RHINO_TEST_DSN"));   /* not from the database itself: refused */

    snprintf(sql, sizeof(sql), "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS %s", db, allow ? "true" : "false");
    rt_exec(admin, sql);
    PQfinish(admin);
    free(db);
    if (cut_worker)
        ck_assert_int_eq(rt_query_long(d->conn, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                                " WHERE application_name = 'rhino worker'"
                                                " AND datname = current_database()"), 1);
}

/*
 * An idle worker loses its connection while the database refuses new
 * ones, so it waits on its reconnect backoff; a wake-up (SIGUSR1, as the
 * master sends when a notification comes) used to stop that timer, and the
 * worker, not connected, then waited for nothing, forever.
 */
START_TEST(rg_wake_keeps_the_reconnect)
{
    rt_daemon_t d;
    pid_t       pid;

    rt_daemon_setup(&d, "[worker]\nprocesses = 1\npoll_interval = 60\n");
    d.allow_errors = 1;         /* the lost connection is logged as an error */
    rt_daemon_start(&d);
    pid = rg_worker_pid(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.nodes WHERE idle", 30);
    rg_allow_connections(&d, 0, 1);
    /* several, so that some land while it waits on its backoff, not inside a connect attempt */
    for (int i = 0; i < 10; i++) {
        usleep(150 * 1000);
        ck_assert_int_eq(kill(pid, SIGUSR1), 0);
    }
    rg_allow_connections(&d, 1, 0);
    rt_exec(d.conn, "SELECT rhino.enqueue('ok')");
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.jobs_done WHERE state = 'completed'", 20);
    /* the same worker, reconnected: nothing was killed or restarted */
    ck_assert_int_eq(rg_worker_pid(&d), pid);
    rt_daemon_stop(&d);
    rt_daemon_teardown(&d);
}
END_TEST

/*
 * SIGTERM while disconnected, holding an outcome: the worker keeps trying
 * to reconnect, records the outcome and exits.  It used to stop its
 * reconnect timer and hang until the master's SIGKILL, the outcome lost
 * and the job run again.
 */
START_TEST(rg_sigterm_while_disconnected_finalizes)
{
    rt_daemon_t d;
    double      t0;
    int         rc, *runs;

    rt_daemon_setup(&d, "[worker]\nprocesses = 1\n[master]\nshutdown_timeout = 30\n");
    d.allow_errors = 1;
    rt_exec(d.conn, "SELECT rhino.enqueue('ok', '{\"ms\": 1500}')");
    rt_daemon_start(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.jobs WHERE state = 'running'", 30);
    rg_allow_connections(&d, 0, 1);
    /* the handler returns, the finalize finds the connection gone: the outcome waits, pending */
    usleep(2500 * 1000);
    t0 = rt_now();
    kill(d.pid, SIGTERM);
    usleep(1000 * 1000);
    rg_allow_connections(&d, 1, 0);
    rc = rt_wait_exit(d.pid, 25);
    if (rc != 0)
        rt_daemon_dump_log(&d);
    ck_assert_msg(rc == 0, "rhino exited with %d after SIGTERM", rc);
    d.pid = 0;
    ck_assert_msg(rt_now() - t0 < 15, "the drain took %.1f s", rt_now() - t0);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'completed'"), 1);
    runs = rt_daemon_ledger_counts(&d, 1);
    ck_assert_int_eq(runs[1], 1);
    free(runs);
    rt_daemon_teardown(&d);
}
END_TEST

/* tests/pgcluster.sh CMD outside any test (check's asserts are not available there) */
static int
pgcluster_main(const char *cmd)
{
    char  script[4096];
    pid_t pid;
    int   st;

    snprintf(script, sizeof(script), "%s/pgcluster.sh", getenv("RHINO_TEST_SRCDIR"));
    pid = fork();
    if (pid == 0) {
        execl(script, script, cmd, (char *) NULL);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static Suite *
faults_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("cells");

    tcase_set_timeout(tc, fx_long ? 900 : 240);
    tcase_add_test(tc, cell1_kill9_workers);
    tcase_add_test(tc, cell2_poison_handlers);
    tcase_add_test(tc, cell3_terminate_backends);
    tcase_add_test(tc, cell4_postgres_restart);
    tcase_add_test(tc, cell5_master_sigkill);
    tcase_add_test(tc, cell6_sigterm_restart);
    tcase_add_test(tc, cell7_sighup_roll);
    tcase_add_test(tc, cell8_stale_worker);
    suite_add_tcase(s, tc);
    /* CK_RUN_CASE=regressions runs only these */
    tc = tcase_create("regressions");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, rg_wake_keeps_the_reconnect);
    tcase_add_test(tc, rg_sigterm_while_disconnected_finalizes);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr;
    int      failed;
    char     dsn[256];
    const char *port = getenv("RHINO_FAULTS_PG_PORT");

    fx_long = getenv("RHINO_FAULTS_LONG") && strcmp(getenv("RHINO_FAULTS_LONG"), "1") == 0;
    /* a cluster of our own: cell 4 restarts it */
    setenv("RHINO_PG_BASE", getenv("RHINO_FAULTS_PG_BASE") ? getenv("RHINO_FAULTS_PG_BASE")
                                                           : "/tmp/rhino-faults-pg", 1);
    setenv("RHINO_PG_PORT", port ? port : "55441", 1);
    srand((unsigned) getpid());
    if (getenv("RHINO_TEST_SRCDIR") == NULL) {
        fprintf(stderr, "RHINO_TEST_SRCDIR is not set: run through make check or scripts/test\n");
        return EXIT_FAILURE;
    }
    if (pgcluster_main("start") != 0) {
        fprintf(stderr, "cannot start the fault suite's PostgreSQL cluster\n");
        return EXIT_FAILURE;
    }
    snprintf(dsn, sizeof(dsn), "postgres://postgres@127.0.0.1:%s/rhino_test", getenv("RHINO_PG_PORT"));
    setenv("RHINO_TEST_DSN", dsn, 1);

    fprintf(stderr, "FAULTS| %-34s | %7s | %6s | %4s | %10s | %5s | %8s |\n", "cell", "jobs", "faults", "lost",
            "duplicates", "stale", "stall");
    sr = srunner_create(faults_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    pgcluster_main("stop");
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
