/* check_ctl.c - rhinoctl and the SQL enqueue API, driven against a real PostgreSQL. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rh_db.h"
#include "rh_migrate.h"
#include "rh_sql.h"
#include "rh_testlib.h"


/* The advisory lock key of common/rh_migrate.c ("rhinomig"), held by a test to block migrators. */
#define CTL_MIGRATE_LOCK "8243955040938453351"


/* The count of the stats table row "QUEUE STATE COUNT" for queue and state, -1 if absent. */
static long
stats_count(const char *out, const char *queue, const char *state)
{
    const char *line = out;

    while (line != NULL && *line) {
        char q[256], s[64];
        long c;

        if (sscanf(line, "%255s %63s %ld", q, s, &c) == 3 && strcmp(q, queue) == 0 && strcmp(s, state) == 0)
            return c;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}

/* Every line of out is one JSON object (a minimal checker, below); returns the number of lines. */
static int json_lines(const char *out);

/* ---- text[] literals (common/rh_db.c) ----------------------------------- */

/* The literal the daemon binds for queue names reads back as those names, quotes and backslashes too. */
START_TEST(test_text_array_literal)
{
    char       *dsn = rt_db_create();
    PGconn     *conn = rt_connect(dsn);
    char       *items[] = { "default", "with \"quotes\"", "back\\slash", "comma,brace}", "" };
    char       *lit = rh_db_text_array(items, 5), *empty = rh_db_text_array(items, 0);
    const char *p[1] = { lit };
    PGresult   *res;

    ck_assert_ptr_nonnull(lit);
    ck_assert_str_eq(empty, "{}");
    res = PQexecParams(conn, "SELECT $1::text[] = ARRAY['default', 'with \"quotes\"', 'back\\slash', 'comma,brace}', '']",
                       1, NULL, p, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    ck_assert_msg(strcmp(PQgetvalue(res, 0, 0), "t") == 0, "%s did not read back as its items", lit);
    PQclear(res);
    free(lit);
    free(empty);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* ---- migrate ------------------------------------------------------------ */

/*
 * What migrate prints, for the migrations this build embeds (their number
 * and the highest version grow with every sql/NNN_*.sql file).
 */
static const char *
mig_applied_all(void)
{
    static char buf[96];

    snprintf(buf, sizeof(buf), "migrated: %d step(s) applied, schema at version %d", rh_nmigrations,
             rh_schema_latest);
    return buf;
}

static const char *
mig_already(void)
{
    static char buf[64];

    snprintf(buf, sizeof(buf), "schema already at version %d", rh_schema_latest);
    return buf;
}

START_TEST(test_migrate_empty_db)
{
    char   *dsn = rt_db_create(), *out, *err;
    PGconn *conn;
    int     rc;

    rc = rt_ctl(dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 0, "migrate exited %d: %s", rc, err);
    ck_assert_msg(strstr(out, mig_applied_all()) != NULL, "stdout: %s", out);
    ck_assert_str_eq(err, "");

    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'rhino' "
                                         "AND tablename IN ('jobs', 'jobs_done_rows', 'jobs_done_batches', "
                                         "'nodes', 'workers')"), 5);
    /* the history is a view of its two tables (sql/011_history_batches.sql) */
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM pg_views WHERE schemaname = 'rhino' "
                                         "AND viewname IN ('jobs_done', 'all_jobs')"), 2);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schema_migrations "
                                         "WHERE version = 1 AND name = '001_init'"), 1);
    /* the indexes new jobs enter at the right end fill their pages whole (sql/013_index_fillfactor.sql) */
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM pg_class"
                                         " WHERE oid IN ('rhino.jobs_pkey'::regclass, 'rhino.jobs_claim'::regclass)"
                                         "   AND 'fillfactor=100' = ANY (reloptions)"), 2);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

START_TEST(test_migrate_twice)
{
    char   *dsn = rt_db_create_migrated(), *out, *err;
    PGconn *conn;
    int     rc;

    rc = rt_ctl(dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 0, "second migrate exited %d: %s", rc, err);
    ck_assert_msg(strstr(out, mig_already()) != NULL, "stdout: %s", out);
    ck_assert_msg(strstr(out, "applied") == NULL, "second migrate applied something: %s", out);
    ck_assert_str_eq(err, "");

    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schema_migrations"), rh_nmigrations);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* Several migrators at once: the advisory lock makes one apply and the others find it done. */
START_TEST(test_migrate_concurrent)
{
    enum { N = 4 };
    char       *dsn = rt_db_create(), *env_dsn, *logs[N];
    char       *argv[] = { (char *) rt_env("RHINOCTL_BIN"), (char *) "migrate", NULL };
    char       *env[2];
    pid_t       pids[N];
    PGconn     *conn;
    int         applied = 0;

    ck_assert_int_ge(asprintf(&env_dsn, "RHINO_DSN=%s", dsn), 0);
    env[0] = env_dsn;
    env[1] = NULL;
    for (int i = 0; i < N; i++) {
        logs[i] = rt_write_file("migrate.log", "");
        pids[i] = rt_spawn(argv, env, logs[i]);
    }
    for (int i = 0; i < N; i++) {
        int   rc = rt_wait_exit(pids[i], 30);
        char *log = rt_read_file(logs[i]);

        ck_assert_msg(rc == 0, "migrator %d exited %d: %s", i, rc, log);
        if (strstr(log, mig_applied_all()) != NULL)
            applied++;
        else
            ck_assert_msg(strstr(log, mig_already()) != NULL, "migrator %d: %s", i, log);
        free(log);
        free(logs[i]);
    }
    ck_assert_int_eq(applied, 1);

    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schema_migrations"), rh_nmigrations);
    PQfinish(conn);
    free(env_dsn);
    free(dsn);
}
END_TEST

/* A failing step is rolled back whole, named in the error, and can be retried. */
START_TEST(test_migrate_failure_rolls_back)
{
    char   *dsn = rt_db_create(), *out, *err;
    PGconn *conn;
    int     rc;

    conn = rt_connect(dsn);
    /* an object that 001_init.sql creates, made first so that the step fails half-way */
    rt_exec(conn, "CREATE SCHEMA rhino; CREATE TABLE rhino.nodes (x int)");

    rc = rt_ctl(dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 1, "migrate exited %d: %s", rc, err);
    ck_assert_msg(strstr(err, "rhinoctl: migrate: ") == err, "stderr: %s", err);
    ck_assert_msg(strstr(err, "sql/001_init.sql") != NULL, "error does not name the file: %s", err);
    ck_assert_msg(strstr(err, "\"nodes\" already exists") != NULL, "no PostgreSQL message: %s", err);
    ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "more than one line: %s", err);
    ck_assert_str_eq(out, "");
    free(out);
    free(err);

    /* the type created before the failing statement went with the rollback */
    ck_assert_ptr_null(rt_query1(conn, "SELECT to_regtype('rhino.job_state')::text"));
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schema_migrations"), 0);

    rt_exec(conn, "DROP TABLE rhino.nodes");
    rc = rt_ctl(dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 0, "migrate after the fix exited %d: %s", rc, err);
    ck_assert_msg(strstr(out, mig_applied_all()) != NULL, "stdout: %s", out);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schema_migrations"), rh_nmigrations);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* A migrator waits for the lock another one holds, then applies. */
START_TEST(test_migrate_waits_for_lock)
{
    char   *dsn = rt_db_create(), *env_dsn, *log, *logpath;
    char   *argv[] = { (char *) rt_env("RHINOCTL_BIN"), (char *) "migrate", NULL };
    char   *env[2];
    PGconn *conn;
    pid_t   pid;
    int     rc;

    conn = rt_connect(dsn);
    rt_exec(conn, "SELECT pg_advisory_lock(" CTL_MIGRATE_LOCK ")");
    ck_assert_int_ge(asprintf(&env_dsn, "RHINO_DSN=%s", dsn), 0);
    env[0] = env_dsn;
    env[1] = NULL;
    logpath = rt_write_file("migrate.log", "");
    pid = rt_spawn(argv, env, logpath);

    ck_assert_msg(rt_wait_sql(conn, "SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory'"
                                    "   AND NOT granted AND database = (SELECT oid FROM pg_database"
                                    "                                    WHERE datname = current_database())", 20),
                  "rhinoctl migrate never waited for the migration lock");
    ck_assert_int_eq(rt_wait_exit(pid, 0.3), -1);
    ck_assert_ptr_null(rt_query1(conn, "SELECT to_regclass('rhino.jobs')::text"));

    rt_exec(conn, "SELECT pg_advisory_unlock(" CTL_MIGRATE_LOCK ")");
    rc = rt_wait_exit(pid, 30);
    log = rt_read_file(logpath);
    ck_assert_msg(rc == 0, "migrate exited %d: %s", rc, log);
    ck_assert_msg(strstr(log, mig_applied_all()) != NULL, "%s", log);
    free(log);
    log = rt_query1(conn, "SELECT to_regclass('rhino.jobs')::text");
    ck_assert_ptr_nonnull(log);
    ck_assert_str_eq(log, "rhino.jobs");
    PQfinish(conn);
    free(log);
    free(logpath);
    free(env_dsn);
    free(dsn);
}
END_TEST

/* rh_migrate() itself, on a connection that stays open: the lock and the transaction are let go. */
START_TEST(test_migrate_api)
{
    static const char held[] =
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()";
    char   *dsn, err[1024];
    PGconn *conn;
    int     applied = -1;

    dsn = rt_db_create();
    conn = rt_connect(dsn);
    ck_assert_msg(rh_migrate(conn, &applied, err, sizeof(err)) == 0, "rh_migrate: %s", err);
    ck_assert_int_eq(applied, rh_nmigrations);
    ck_assert_int_eq(rt_query_long(conn, held), 0);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    ck_assert_msg(rh_migrate(conn, &applied, err, sizeof(err)) == 0, "rh_migrate: %s", err);
    ck_assert_int_eq(applied, 0);
    ck_assert_int_eq(rt_query_long(conn, "SELECT max(version) FROM rhino.schema_migrations"),
                     rh_migrations[rh_nmigrations - 1].version);
    PQfinish(conn);
    free(dsn);

    /* a failing step: -1, the connection idle again and unlocked */
    dsn = rt_db_create();
    conn = rt_connect(dsn);
    rt_exec(conn, "CREATE SCHEMA rhino; CREATE TABLE rhino.jobs_done (x int)");
    applied = -1;
    ck_assert_int_eq(rh_migrate(conn, &applied, err, sizeof(err)), -1);
    ck_assert_int_eq(applied, 0);
    ck_assert_msg(strstr(err, "sql/001_init.sql") != NULL && strstr(err, "already exists") != NULL, "%s", err);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    ck_assert_int_eq(rt_query_long(conn, held), 0);
    ck_assert_ptr_null(rt_query1(conn, "SELECT to_regclass('rhino.jobs')::text"));
    PQfinish(conn);
    free(dsn);
}
END_TEST

/*
 * The empty database of conn brought to schema version `version` as
 * rhinoctl migrate of that release would have: the embedded steps up to it,
 * each recorded.  For the tests of a migration on the data its predecessors
 * let in.
 */
static void
db_at_schema(PGconn *conn, int version)
{
    char        ver[16];
    const char *params[2];
    PGresult   *res;

    rt_exec(conn, "CREATE SCHEMA rhino; CREATE TABLE rhino.schema_migrations (version int PRIMARY KEY,"
                  " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
    for (int i = 0; i < rh_nmigrations; i++) {
        if (rh_migrations[i].version > version)
            continue;
        rt_exec(conn, rh_migrations[i].sql);
        snprintf(ver, sizeof(ver), "%d", rh_migrations[i].version);
        params[0] = ver;
        params[1] = rh_migrations[i].name;
        res = PQexecParams(conn, "INSERT INTO rhino.schema_migrations (version, name) VALUES ($1::int, $2)",
                           2, NULL, params, NULL, NULL, 0);
        ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
    }
}

/*
 * Schema 14 (sql/014_finite_times.sql) on a database of schema 13 that holds
 * NaN and infinite timeouts, which 13 let in: the live jobs and the schedule
 * get NULL ([worker] job_timeout), the finite ones stay, the constraints are
 * validated and refuse them from then on, and a cancelled job with a NaN
 * timeout in the history is redriven with NULL.
 */
START_TEST(test_migrate_014_nonfinite_timeouts)
{
    char     *dsn = rt_db_create(), *out, *err, *v;
    PGconn   *conn = rt_connect(dsn);
    PGresult *res;
    int       rc;

    db_at_schema(conn, 13);
    rt_exec(conn, "SELECT rhino.enqueue('nan', timeout => 'NaN'), rhino.enqueue('inf', timeout => 'Infinity'),"
                  "       rhino.enqueue('fin', timeout => 30), rhino.enqueue('none')");
    rt_exec(conn, "SELECT rhino.cancel(rhino.enqueue('gone', timeout => 'NaN', run_at => now() + interval '1 h'))");
    rt_exec(conn, "SELECT rhino.schedule('s', '@daily', 'k', timeout => 'NaN')");

    rc = rt_ctl(dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 0, "migrate exited %d: %s", rc, err);
    free(out);
    free(err);

    v = rt_query1(conn, "SELECT string_agg(kind || '=' || coalesce(timeout::text, 'null'), ' ' ORDER BY kind)"
                        "  FROM rhino.jobs");
    ck_assert_str_eq(v, "fin=30 inf=null nan=null none=null");
    free(v);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schedules"
                                         " WHERE name = 's' AND timeout IS NULL"), 1);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM pg_constraint WHERE convalidated"
                                         "   AND conname IN ('jobs_timeout', 'schedules_timeout')"), 2);
    /* COPY and INSERT, which no function checks, meet the constraint */
    res = PQexec(conn, "INSERT INTO rhino.jobs (kind, timeout) VALUES ('k', 'NaN')");
    ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23514");
    PQclear(res);
    res = PQexec(conn, "UPDATE rhino.schedules SET timeout = 'Infinity'");
    ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23514");
    PQclear(res);

    /* the history kept its NaN; a redrive gives the job [worker] job_timeout */
    v = rt_query1(conn, "SELECT id FROM rhino.jobs_done WHERE kind = 'gone'");
    rc = rt_ctl(dsn, NULL, &out, &err, "retry", v, NULL);
    ck_assert_msg(rc == 0, "retry exited %d: %s", rc, err);
    free(out);
    free(err);
    free(v);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"
                                         " WHERE kind = 'gone' AND timeout IS NULL"), 1);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/*
 * rhinoctl with the NULL-terminated arguments (at most 8), in the
 * background, RHINO_DSN=dsn, stdout and stderr into a fresh file whose path
 * goes to *logpath (malloc'd).  For a run that is to wait on a lock the test
 * holds; rt_wait_exit and rt_read_file collect it.
 */
static pid_t
ctl_spawn(const char *dsn, char **logpath, ...)
{
    char   *argv[10], *env[2], *env_dsn;
    va_list ap;
    pid_t   pid;
    int     n = 0;

    argv[n++] = (char *) rt_env("RHINOCTL_BIN");
    va_start(ap, logpath);
    for (char *a; (a = va_arg(ap, char *)) != NULL;) {
        ck_assert_int_lt(n, 9);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    ck_assert_int_ge(asprintf(&env_dsn, "RHINO_DSN=%s", dsn), 0);
    env[0] = env_dsn;
    env[1] = NULL;
    *logpath = rt_write_file("rhinoctl.log", "");
    pid = rt_spawn(argv, env, *logpath);
    free(env_dsn);
    return pid;
}

/*
 * Whether, within 20 s, a rhinoctl session of conn's database waits for a
 * lock (a table's, or a transaction's: a row or a unique index entry that an
 * open transaction wrote).  rh_db_connect names its sessions "rhino ctl".
 */
static int
ctl_waits_for_lock(PGconn *conn)
{
    return rt_wait_sql(conn, "SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = current_database()"
                             "   AND application_name = 'rhino ctl' AND wait_event_type = 'Lock'", 20);
}

/* res, of what, failed with SQLSTATE 23514 on constraint jobs_run_at_finite, named in the message too. */
static void
assert_run_at_refused(PGresult *res, const char *what)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *name = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

    ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "%s was not refused", what);
    ck_assert_msg(state != NULL && strcmp(state, "23514") == 0, "%s: %s", what, PQresultErrorMessage(res));
    ck_assert_msg(name != NULL && strcmp(name, "jobs_run_at_finite") == 0, "%s: %s", what, PQresultErrorMessage(res));
    ck_assert_msg(strstr(PQresultErrorMessage(res), "\"jobs_run_at_finite\"") != NULL, "%s: %s", what,
                  PQresultErrorMessage(res));
}

/*
 * Schema 15 (sql/015_finite_run_at.sql) on a database of schema 14 holding
 * the infinite run_at values that a direct INSERT or COPY still stored: a
 * '-infinity' job takes its created_at (still due, first in its queue as
 * before), or now() when that is in the future, an 'infinity' one the year
 * 9999 (still never due), the finite ones stay; the constraint is validated
 * and from then on refuses both from INSERT and COPY, naming itself.
 */
START_TEST(test_migrate_015_infinite_run_at)
{
    static const char copied[] = "copied\t-infinity\t2021-01-01 00:00:00+00\n";
    static const char refused[] = "ok\t2030-01-01\nk\t-infinity\n";
    char             *dsn = rt_db_create(), *out, *err, *v;
    PGconn           *conn = rt_connect(dsn);
    PGresult         *res;
    int               rc;

    db_at_schema(conn, 14);
    rt_exec(conn, "INSERT INTO rhino.jobs (kind, run_at, created_at, state) VALUES"
                  " ('due', '-infinity', '2020-01-02 03:04:05+00', 'available'),"
                  " ('due_retry', '-infinity', '2020-01-02 03:04:05+00', 'retryable'),"
                  " ('due_future_created', '-infinity', now() + interval '1 day', 'available'),"
                  " ('never', 'infinity', '2020-01-02 03:04:05+00', 'scheduled'),"
                  " ('never_avail', 'infinity', '2020-01-02 03:04:05+00', 'available'),"
                  " ('fin', '2030-01-01 00:00:00+00', '2020-01-02 03:04:05+00', 'scheduled')");
    /* and by COPY, the documented bulk path */
    res = PQexec(conn, "COPY rhino.jobs (kind, run_at, created_at) FROM STDIN");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COPY_IN);
    PQclear(res);
    ck_assert_int_eq(PQputCopyData(conn, copied, (int) strlen(copied)), 1);
    ck_assert_int_eq(PQputCopyEnd(conn, NULL), 1);
    res = PQgetResult(conn);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
    PQclear(res);
    ck_assert_ptr_null(PQgetResult(conn));
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE NOT isfinite(run_at)"), 6);

    rc = rt_ctl(dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 0, "migrate exited %d: %s", rc, err);
    free(out);
    free(err);

    rt_exec(conn, "SET TimeZone = 'UTC'");
    v = rt_query1(conn, "SELECT string_agg(kind || '=' || run_at::text || '/' || state::text, ' ' ORDER BY kind)"
                        "  FROM rhino.jobs WHERE kind <> 'due_future_created'");
    ck_assert_str_eq(v, "copied=2021-01-01 00:00:00+00/available due=2020-01-02 03:04:05+00/available"
                        " due_retry=2020-01-02 03:04:05+00/retryable fin=2030-01-01 00:00:00+00/scheduled"
                        " never=9999-12-31 00:00:00+00/scheduled never_avail=9999-12-31 00:00:00+00/available");
    free(v);
    /* due, not a day late: its created_at was in the future */
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'due_future_created'"
                                         "   AND run_at <= now() AND run_at > now() - interval '1 hour'"), 1);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM pg_constraint WHERE convalidated"
                                         "   AND conrelid = 'rhino.jobs'::regclass AND conname = 'jobs_run_at_finite'"),
                     1);

    /* INSERT and COPY, which no function checks, meet the constraint */
    res = PQexec(conn, "INSERT INTO rhino.jobs (kind, run_at) VALUES ('k', 'infinity')");
    assert_run_at_refused(res, "INSERT of infinity");
    PQclear(res);
    res = PQexec(conn, "UPDATE rhino.jobs SET run_at = '-infinity' WHERE kind = 'fin'");
    assert_run_at_refused(res, "UPDATE to -infinity");
    PQclear(res);
    res = PQexec(conn, "COPY rhino.jobs (kind, run_at) FROM STDIN");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COPY_IN);
    PQclear(res);
    ck_assert_int_eq(PQputCopyData(conn, refused, (int) strlen(refused)), 1);
    ck_assert_int_eq(PQputCopyEnd(conn, NULL), 1);
    res = PQgetResult(conn);
    assert_run_at_refused(res, "COPY of -infinity");
    PQclear(res);
    ck_assert_ptr_null(PQgetResult(conn));
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 7);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/*
 * A producer that commits an infinite run_at while migration 15 runs, after
 * its first UPDATE: the ALTER waits for the producer's transaction, its
 * validation then fails, and the step converts the row under the table's
 * lock and validates again instead of failing the upgrade.  The producer
 * holds its INSERT open until the migration waits for it, so that the row
 * is in neither the first UPDATE's snapshot nor the way of its locks.
 */
START_TEST(test_migrate_015_concurrent_producer)
{
    char   *dsn = rt_db_create(), *logpath, *log;
    PGconn *conn = rt_connect(dsn), *producer = rt_connect(dsn);
    pid_t   pid;
    int     waited, rc;

    db_at_schema(conn, 14);
    rt_exec(producer, "BEGIN");
    rt_exec(producer, "INSERT INTO rhino.jobs (kind, run_at, created_at)"
                      " VALUES ('late', '-infinity', '2020-01-02 03:04:05+00')");
    pid = ctl_spawn(dsn, &logpath, "migrate", NULL);
    waited = ctl_waits_for_lock(conn);
    rt_exec(producer, "COMMIT");
    rc = rt_wait_exit(pid, 30);
    log = rt_read_file(logpath);
    ck_assert_msg(waited, "migrate never waited for the producer's transaction: %s", log);
    ck_assert_msg(rc == 0, "migrate exited %d: %s", rc, log);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'late'"
                                         "   AND run_at = '2020-01-02 03:04:05+00'"), 1);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM pg_constraint WHERE convalidated"
                                         "   AND conname = 'jobs_run_at_finite'"), 1);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schema_migrations WHERE version = 15"), 1);
    PQfinish(producer);
    PQfinish(conn);
    free(log);
    free(logpath);
    free(dsn);
}
END_TEST

/* ---- enqueue -------------------------------------------------------------- */

START_TEST(test_enqueue_with_options)
{
    char   *dsn = rt_db_create_migrated(), *out, *err, sql[256], *v;
    PGconn *conn;
    long    id;
    int     rc;

    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "send_invoice", "{\"to\": \"a@b.c\", \"n\": 7}",
                 "--queue", "mail", "--priority", "-5", "--max-attempts", "3", NULL);
    ck_assert_msg(rc == 0, "enqueue exited %d: %s", rc, err);
    ck_assert_str_eq(err, "");
    id = strtol(out, &v, 10);
    ck_assert_msg(id > 0 && strcmp(v, "\n") == 0, "stdout is not one id: \"%s\"", out);

    conn = rt_connect(dsn);
    snprintf(sql, sizeof(sql),
             "SELECT kind || '|' || queue || '|' || priority || '|' || max_attempts || '|' || state"
             "       || '|' || (payload = '{\"n\": 7, \"to\": \"a@b.c\"}'::jsonb) || '|' || attempt"
             "  FROM rhino.jobs WHERE id = %ld", id);
    v = rt_query1(conn, sql);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "send_invoice|mail|-5|3|available|true|0");
    free(v);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 1);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* Defaults come from the SQL, and options may come before the command words. */
START_TEST(test_enqueue_defaults_and_option_order)
{
    char   *dsn = rt_db_create_migrated(), *out, *err, *v;
    PGconn *conn;
    int     rc;

    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "plain", NULL);
    ck_assert_msg(rc == 0, "enqueue exited %d: %s", rc, err);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "--priority", "32767", "--queue", "early", "enqueue", "first", NULL);
    ck_assert_msg(rc == 0, "enqueue exited %d: %s", rc, err);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "--priority", "-32768", "low", NULL);
    ck_assert_msg(rc == 0, "enqueue exited %d: %s", rc, err);

    conn = rt_connect(dsn);
    v = rt_query1(conn, "SELECT queue || '|' || payload::text || '|' || priority || '|' || max_attempts"
                        "       || '|' || state || '|' || (run_at <= now())"
                        "  FROM rhino.jobs WHERE kind = 'plain'");
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "default|{}|0|25|available|true");
    free(v);
    v = rt_query1(conn, "SELECT queue || '|' || priority FROM rhino.jobs WHERE kind = 'first'");
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "early|32767");
    free(v);
    v = rt_query1(conn, "SELECT queue || '|' || priority FROM rhino.jobs WHERE kind = 'low'");
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "default|-32768");
    free(v);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

START_TEST(test_enqueue_run_at)
{
    char   *dsn = rt_db_create_migrated(), *out, *err, *at, sql[256];
    PGconn *conn;
    int     rc;

    conn = rt_connect(dsn);
    at = rt_query1(conn, "SELECT (now() + interval '1 hour')::text");

    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "later", "--run-at", at, NULL);
    ck_assert_msg(rc == 0, "enqueue exited %d: %s", rc, err);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "relative", "--run-at", "+2 hours", NULL);
    ck_assert_msg(rc == 0, "enqueue exited %d: %s", rc, err);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "past", "--run-at", "2001-02-03 04:05:06+00", NULL);
    ck_assert_msg(rc == 0, "enqueue exited %d: %s", rc, err);

    snprintf(sql, sizeof(sql), "SELECT (state = 'scheduled' AND run_at = '%s'::timestamptz)::int"
                               "  FROM rhino.jobs WHERE kind = 'later'", at);
    ck_assert_int_eq(rt_query_long(conn, sql), 1);
    ck_assert_int_eq(rt_query_long(conn, "SELECT (state = 'scheduled' AND run_at BETWEEN now() + interval '119 min'"
                                         "                                  AND now() + interval '121 min')::int"
                                         "  FROM rhino.jobs WHERE kind = 'relative'"), 1);
    ck_assert_int_eq(rt_query_long(conn, "SELECT (state = 'available' AND run_at = '2001-02-03 04:05:06+00')::int"
                                         "  FROM rhino.jobs WHERE kind = 'past'"), 1);
    PQfinish(conn);
    free(at);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

START_TEST(test_enqueue_bad_json)
{
    char   *dsn = rt_db_create_migrated(), *out, *err;
    PGconn *conn;
    int     rc;

    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", "{\"a\": nope}", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "rhinoctl: enqueue: ") == err, "stderr: %s", err);
    ck_assert_msg(strstr(err, "invalid input syntax for type json") != NULL, "stderr: %s", err);
    ck_assert_str_eq(out, "");

    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 0);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* Out-of-range numbers are refused before anything reaches the database. */
START_TEST(test_enqueue_bad_numbers)
{
    static const char *const cases[][3] = {
        { "--priority", "32768", "-32768 to 32767" },
        { "--priority", "-32769", "-32768 to 32767" },
        { "--priority", "5x", "-32768 to 32767" },
        { "--priority", "", "-32768 to 32767" },
        { "--max-attempts", "0", "from 1 to" },
        { "--max-attempts", "2147483648", "from 1 to" },
        { "--max-attempts", "many", "from 1 to" },
    };
    char   *dsn = rt_db_create_migrated(), *out, *err;
    PGconn *conn;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", cases[i][0], cases[i][1], NULL);

        ck_assert_msg(rc == 2, "%s \"%s\": exit %d", cases[i][0], cases[i][1], rc);
        ck_assert_msg(strstr(err, cases[i][0]) != NULL && strstr(err, cases[i][2]) != NULL,
                      "%s \"%s\": unclear message: %s", cases[i][0], cases[i][1], err);
        ck_assert_str_eq(out, "");
        free(out);
        free(err);
    }
    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 0);
    PQfinish(conn);
    free(dsn);
}
END_TEST

START_TEST(test_enqueue_unmigrated)
{
    char *dsn = rt_db_create(), *out, *err;
    int   rc;

    rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "run \"rhinoctl migrate\"") != NULL, "stderr: %s", err);
    ck_assert_str_eq(out, "");
    free(out);
    free(err);

    rc = rt_ctl(dsn, "{}\n", &out, &err, "enqueue", "--bulk", "k", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "run \"rhinoctl migrate\"") != NULL, "stderr: %s", err);
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "stats", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "run \"rhinoctl migrate\"") != NULL, "stderr: %s", err);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* ---- enqueue --bulk --------------------------------------------------------- */

START_TEST(test_bulk_10000)
{
    enum { N = 10000 };
    char   *dsn = rt_db_create_migrated(), *out, *err, *input, *p;
    PGconn *conn;
    int     rc;

    input = malloc((size_t) N * 32);
    ck_assert_ptr_nonnull(input);
    p = input;
    for (int i = 1; i <= N; i++)
        p += sprintf(p, "{\"n\": %d}\n", i);

    rc = rt_ctl(dsn, input, &out, &err, "enqueue", "--bulk", "bulk_kind", "--queue", "bq", NULL);
    ck_assert_msg(rc == 0, "enqueue --bulk exited %d: %s", rc, err);
    ck_assert_str_eq(out, "enqueued 10000 jobs\n");

    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'bulk_kind' AND queue = 'bq'"
                                         "   AND state = 'available' AND priority = 0 AND max_attempts = 25"), N);
    /* every payload arrived, each once */
    ck_assert_int_eq(rt_query_long(conn, "SELECT sum((payload->>'n')::bigint) FROM rhino.jobs"),
                     (long) N * (N + 1) / 2);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(DISTINCT payload) FROM rhino.jobs"), N);
    PQfinish(conn);
    free(input);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* COPY's text format escapes: backslashes and tabs in the input must reach the payload unchanged. */
START_TEST(test_bulk_escapes_and_options)
{
    const char *input =
        "{\"s\": \"back\\\\slash\"}\n"          /* JSON "back\\slash": one backslash */
        "{\"s\": \"tab\\tin\\\\nstring\"}\r\n"  /* JSON escapes \t and \\n, CRLF line end */
        "\t{\"s\":\t\"raw tabs around\"}\t\n"   /* raw tabs as JSON whitespace */
        "\n"
        "   \n"
        "{\"s\": \"\\\\N\"}\n"                  /* would be NULL in COPY if not escaped */
        "{\"s\": \"last, no newline\"}";
    char   *dsn = rt_db_create_migrated(), *out, *err;
    PGconn *conn;
    int     rc;

    rc = rt_ctl(dsn, input, &out, &err, "enqueue", "--bulk", "esc", "--queue", "q1",
                 "--priority", "7", "--max-attempts", "2", NULL);
    ck_assert_msg(rc == 0, "enqueue --bulk exited %d: %s", rc, err);
    ck_assert_str_eq(out, "enqueued 5 jobs\n");

    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'esc' AND queue = 'q1'"
                                         "   AND priority = 7 AND max_attempts = 2 AND state = 'available'"), 5);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE payload->>'s' IN ("
                                         "  E'back\\\\slash', E'tab\\tin\\\\nstring', 'raw tabs around',"
                                         "  E'\\\\N', 'last, no newline')"), 5);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

START_TEST(test_bulk_bad_line_inserts_nothing)
{
    char   *dsn = rt_db_create_migrated(), *out, *err;
    PGconn *conn;
    int     rc;

    rc = rt_ctl(dsn, "{\"a\": 1}\n{\"a\": 2}\n{\"a\": oops}\n{\"a\": 4}\n", &out, &err,
                 "enqueue", "--bulk", "k", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "rhinoctl: enqueue --bulk: ") == err, "stderr: %s", err);
    ck_assert_msg(strstr(err, "line 3") != NULL, "the bad line is not named: %s", err);
    ck_assert_msg(strstr(err, "json") != NULL, "stderr: %s", err);
    ck_assert_str_eq(out, "");
    free(out);
    free(err);

    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 0);

    /* skipped blank lines still count: the bad payload is on input line 4, COPY's row 3 */
    rc = rt_ctl(dsn, "{}\n\n{}\nnope\n{}\n", &out, &err, "enqueue", "--bulk", "k", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "line 4") != NULL, "wrong line: %s", err);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 0);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

START_TEST(test_bulk_run_at)
{
    char   *dsn = rt_db_create_migrated(), *out, *err;
    PGconn *conn;
    int     rc;

    rc = rt_ctl(dsn, "{}\n{}\n{}\n", &out, &err, "enqueue", "--bulk", "future", "--run-at", "+1 day", NULL);
    ck_assert_msg(rc == 0, "enqueue --bulk exited %d: %s", rc, err);
    ck_assert_str_eq(out, "enqueued 3 jobs\n");
    free(out);
    free(err);
    rc = rt_ctl(dsn, "{}\n{}\n", &out, &err, "enqueue", "--bulk", "past", "--run-at", "2001-01-01 00:00+00", NULL);
    ck_assert_msg(rc == 0, "enqueue --bulk exited %d: %s", rc, err);

    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'future' AND state = 'scheduled'"
                                         "   AND run_at BETWEEN now() + interval '23 hours' AND now() + interval '25 hours'"),
                     3);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'past' AND state = 'available'"
                                         "   AND run_at = '2001-01-01 00:00+00'"), 2);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* ---- stats -------------------------------------------------------------- */

START_TEST(test_stats)
{
    char   *dsn = rt_db_create_migrated(), *out, *err;
    PGconn *conn;
    int     rc;

    conn = rt_connect(dsn);
    rt_exec(conn, "SELECT rhino.enqueue('a', queue => 'mailq'), rhino.enqueue('b', queue => 'mailq'),"
                  "       rhino.enqueue('c'), rhino.enqueue('d', run_at => now() + interval '1 day')");
    rt_exec(conn, "INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt,"
                  "                             max_attempts, run_at, created_at)"
                  " VALUES (1000, 'mailq', 'a', '{}', 'completed', 0, 1, 25, now(), now())");

    rc = rt_ctl(dsn, NULL, &out, &err, "stats", NULL);
    ck_assert_msg(rc == 0, "stats exited %d: %s", rc, err);
    ck_assert_int_eq(stats_count(out, "mailq", "available"), 2);
    ck_assert_int_eq(stats_count(out, "mailq", "completed"), 1);
    ck_assert_int_eq(stats_count(out, "default", "available"), 1);
    ck_assert_int_eq(stats_count(out, "default", "scheduled"), 1);
    ck_assert_int_eq(stats_count(out, "default", "running"), -1);
    {
        const char *total = strstr(out, "\ntotal ");
        long        n = -1;

        ck_assert_msg(total != NULL, "no total line: %s", out);
        ck_assert_int_eq(sscanf(total + 7, "%ld", &n), 1);
        ck_assert_int_eq(n, 5);
    }
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "stats", "--json", NULL);
    ck_assert_msg(rc == 0, "stats --json exited %d: %s", rc, err);
    ck_assert_msg(strstr(out, "{\"queue\":\"mailq\",\"state\":\"available\",\"count\":2,\"paused\":false}\n") != NULL,
                  "%s", out);
    ck_assert_msg(strstr(out, "{\"queue\":\"default\",\"state\":\"scheduled\",\"count\":1,\"paused\":false}\n") != NULL,
                  "%s", out);
    ck_assert_int_eq(json_lines(out), 4);
    ck_assert_msg(strstr(out, "total") == NULL, "--json printed the table: %s", out);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* ---- the command line and the connection -------------------------------- */

START_TEST(test_cli_version_help)
{
    char *out, *err;
    int   rc;

    rc = rt_ctl(NULL, NULL, &out, &err, "-V", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "rhinoctl " PACKAGE_VERSION "\n");
    free(out);
    free(err);
    rc = rt_ctl(NULL, NULL, &out, &err, "--version", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "rhinoctl " PACKAGE_VERSION "\n");
    free(out);
    free(err);

    rc = rt_ctl(NULL, NULL, &out, &err, "--help", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(strstr(out, "Usage: rhinoctl") != NULL && strstr(out, "enqueue --bulk") != NULL, "%s", out);
    {
        static const char *const cmds[] = {
            "  list ", "  show ID", "  retry ID", "  retry --discarded", "  cancel ID", "  pause QUEUE",
            "  resume QUEUE", "  purge --finished-before", "  top ", "Exit status: 0 ok, 1 ",
        };
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
            ck_assert_msg(strstr(out, cmds[i]) != NULL, "--help does not mention \"%s\": %s", cmds[i], out);
    }
    ck_assert_str_eq(err, "");
    free(out);
    free(err);
    rc = rt_ctl(NULL, NULL, &out, &err, "-h", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(strstr(out, "Usage: rhinoctl") != NULL, "%s", out);
    free(out);
    free(err);
}
END_TEST

/* Usage errors exit 2 with the usage on stderr, and never reach the database (RHINO_DSN is unset). */
START_TEST(test_cli_usage_errors)
{
    static const char *const cases[][6] = {
        { "frobnicate", NULL },
        { "--frobnicate", "stats", NULL },
        { NULL },
        { "enqueue", NULL },
        { "enqueue", "k", "{}", "extra", NULL },
        { "enqueue", "--bulk", "k", "{}", NULL },
        { "migrate", "--queue", "q", NULL },
        { "stats", "extra", NULL },
        { "enqueue", "--bulk", "k", "--json", NULL },    /* --json applies to one enqueue, not to --bulk */
        { "stats", "--kind", "k", NULL },
        { "list", "extra", NULL },
        { "list", "--bulk", NULL },
        { "show", NULL },
        { "show", "1", "2", NULL },
        { "show", "1", "--payload", NULL },
        { "retry", NULL },
        { "retry", "1", "--discarded", NULL },
        { "retry", "1", "--queue", "q", NULL },
        { "retry", "--queue", "q", NULL },
        { "retry", "--state", "discarded", NULL },
        { "cancel", NULL },
        { "cancel", "1", "--json", NULL },
        { "pause", NULL },
        { "resume", "a", "b", NULL },
        { "purge", NULL },
        { "purge", "--queue", "q", "--finished-before", NULL },
        { "top", "--json", NULL },
        { "list", "--once", NULL },
        { "migrate", "--interval", "2", NULL },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out, *err;
        /* each row is NULL-padded, so passing all of it ends the list at its first NULL */
        int   rc = rt_ctl(NULL, NULL, &out, &err, cases[i][0], cases[i][1], cases[i][2], cases[i][3],
                           cases[i][4], NULL);

        ck_assert_msg(rc == 2, "case %zu (%s ...): exit %d, stderr: %s", i, cases[i][0], rc, err);
        ck_assert_msg(strstr(err, "Usage: rhinoctl") != NULL, "case %zu: no usage: %s", i, err);
        ck_assert_str_eq(out, "");
        free(out);
        free(err);
    }
}
END_TEST

/* The DSN may hold a password: a failed connection must not show it. */
START_TEST(test_connect_error_hides_dsn)
{
    char *out, *err;
    int   rc;

    rc = rt_ctl("postgresql://rhino:S3cretPw@127.0.0.1:1/nodb", NULL, &out, &err, "stats", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "rhinoctl: cannot connect to the database: ") == err, "stderr: %s", err);
    ck_assert_msg(strstr(err, "S3cretPw") == NULL, "the password was printed: %s", err);
    ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "more than one line: %s", err);
    free(out);
    free(err);
}
END_TEST

START_TEST(test_config_file)
{
    char *dsn = rt_db_create_migrated(), *out, *err, *ini, *path;
    int   rc;

    ck_assert_int_ge(asprintf(&ini, "[database]\ndsn = %s\n[handlers]\npath = /nonexistent\n", dsn), 0);
    path = rt_write_file("rhino.ini", ini);
    free(ini);

    rc = rt_ctl(NULL, NULL, &out, &err, "-c", path, "enqueue", "from_config", NULL);
    ck_assert_msg(rc == 0, "enqueue -c exited %d: %s", rc, err);
    free(out);
    free(err);
    rc = rt_ctl(NULL, NULL, &out, &err, "stats", "--config", path, NULL);
    ck_assert_msg(rc == 0, "stats --config exited %d: %s", rc, err);
    ck_assert_int_eq(stats_count(out, "default", "available"), 1);
    free(out);
    free(err);
    free(path);

    /* RHINO_DSN wins over the file */
    path = rt_write_file("rhino.ini", "[database]\ndsn = host=127.0.0.1 port=1 dbname=nowhere\n"
                                      "[handlers]\npath = /nonexistent\n");
    rc = rt_ctl(dsn, NULL, &out, &err, "-c", path, "stats", NULL);
    ck_assert_msg(rc == 0, "RHINO_DSN did not override the file: exit %d: %s", rc, err);
    ck_assert_int_eq(stats_count(out, "default", "available"), 1);
    free(out);
    free(err);
    free(path);

    rc = rt_ctl(NULL, NULL, &out, &err, "-c", "/nonexistent/rhino.ini", "stats", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "/nonexistent/rhino.ini") != NULL, "stderr: %s", err);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* ---- the SQL API: what applications in any language call ------------------- */

START_TEST(test_sql_enqueue)
{
    char   *dsn = rt_db_create_migrated(), *v;
    PGconn *conn;
    long    id;
    char    sql[256];

    conn = rt_connect(dsn);

    id = rt_query_long(conn, "SELECT rhino.enqueue('k')");
    snprintf(sql, sizeof(sql), "SELECT kind || '|' || queue || '|' || payload::text || '|' || priority"
                               "       || '|' || max_attempts || '|' || state FROM rhino.jobs WHERE id = %ld", id);
    v = rt_query1(conn, sql);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "k|default|{}|0|25|available");
    free(v);

    /* priority as a plain integer, by name */
    id = rt_query_long(conn, "SELECT rhino.enqueue('k', '{}', 'q', now(), priority => 5)");
    snprintf(sql, sizeof(sql), "SELECT queue || '|' || priority || '|' || max_attempts FROM rhino.jobs WHERE id = %ld", id);
    v = rt_query1(conn, sql);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "q|5|25");
    free(v);

    /* positional, smallint */
    id = rt_query_long(conn, "SELECT rhino.enqueue('k2', '{\"a\": 1}', 'q2', now(), 7::smallint, 3)");
    snprintf(sql, sizeof(sql), "SELECT kind || '|' || queue || '|' || (payload->>'a') || '|' || priority"
                               "       || '|' || max_attempts FROM rhino.jobs WHERE id = %ld", id);
    v = rt_query1(conn, sql);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "k2|q2|1|7|3");
    free(v);

    /* positional, integer literal */
    id = rt_query_long(conn, "SELECT rhino.enqueue('k3', '{}', 'q3', now(), -2, 4)");
    snprintf(sql, sizeof(sql), "SELECT priority || '|' || max_attempts FROM rhino.jobs WHERE id = %ld", id);
    v = rt_query1(conn, sql);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "-2|4");
    free(v);

    /* a future run_at schedules; NULLs fall back to the defaults */
    id = rt_query_long(conn, "SELECT rhino.enqueue('k4', run_at => now() + interval '1 minute')");
    snprintf(sql, sizeof(sql), "SELECT state::text FROM rhino.jobs WHERE id = %ld", id);
    v = rt_query1(conn, sql);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "scheduled");
    free(v);
    id = rt_query_long(conn, "SELECT rhino.enqueue('k5', NULL::jsonb, NULL::text, NULL::timestamptz, "
                             "NULL::smallint, NULL::int)");
    snprintf(sql, sizeof(sql), "SELECT queue || '|' || payload::text || '|' || priority || '|' || max_attempts"
                               "       || '|' || state FROM rhino.jobs WHERE id = %ld", id);
    v = rt_query1(conn, sql);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "default|{}|0|25|available");
    free(v);

    /* named priority with everything else defaulted, and untyped NULLs (as drivers send) */
    id = rt_query_long(conn, "SELECT rhino.enqueue('k6', priority => 9)");
    snprintf(sql, sizeof(sql), "SELECT queue || '|' || priority FROM rhino.jobs WHERE id = %ld", id);
    v = rt_query1(conn, sql);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "default|9");
    free(v);
    {
        const char *params[6] = { "k7", NULL, NULL, NULL, NULL, NULL };
        PGresult   *res = PQexecParams(conn, "SELECT rhino.enqueue($1, $2, $3, $4, $5, $6)", 6, NULL, params,
                                       NULL, NULL, 0);
        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "untyped call failed: %s", PQresultErrorMessage(res));
        PQclear(res);
    }
    {
        PGresult *res = PQexec(conn, "SELECT rhino.enqueue('k8', priority => 40000)");
        ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
        ck_assert_msg(strstr(PQresultErrorMessage(res), "smallint out of range") != NULL, "%s",
                      PQresultErrorMessage(res));
        PQclear(res);
    }

    /* inside the caller's transaction: a rollback leaves no job */
    rt_exec(conn, "BEGIN");
    rt_exec(conn, "SELECT rhino.enqueue('rolled_back')");
    rt_exec(conn, "ROLLBACK");
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE kind = 'rolled_back'"), 0);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 8);

    PQfinish(conn);
    free(dsn);
}
END_TEST

/* ---- helpers for the admin commands ------------------------------------------ */

/*
 * A minimal JSON checker: enough to say that a line is one well-formed
 * value, not to read it.  Returns the position after the value, or NULL.
 */
static const char *json_value(const char *p, int depth);

static const char *
json_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return p;
}

static const char *
json_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (; *p != '"'; p++) {
        if (*p == '\0' || (unsigned char) *p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || p[i] == '\0')
                        return NULL;
                p += 4;
            } else if (*p == '\0' || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return p + 1;
}

static const char *
json_number(const char *p)
{
    const char *s;

    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (*p == '.') {
        s = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == s)
            return NULL;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        s = p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == s)
            return NULL;
    }
    return p;
}

static const char *
json_value(const char *p, int depth)
{
    char close;

    if (depth > 64)
        return NULL;
    p = json_ws(p);
    switch (*p) {
    case '"':
        return json_string(p);
    case 't':
        return strncmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f':
        return strncmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n':
        return strncmp(p, "null", 4) == 0 ? p + 4 : NULL;
    case '{':
    case '[':
        close = *p == '{' ? '}' : ']';
        p = json_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                p = json_string(json_ws(p));
                if (p == NULL || *(p = json_ws(p)) != ':')
                    return NULL;
                p++;
            }
            p = json_value(p, depth + 1);
            if (p == NULL)
                return NULL;
            p = json_ws(p);
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
        }
    default:
        return json_number(p);
    }
}

static int
json_lines(const char *out)
{
    int n = 0;

    for (const char *line = out; *line; n++) {
        const char *nl = strchr(line, '\n'), *end;

        ck_assert_msg(nl != NULL, "output does not end in a newline: %s", out);
        ck_assert_msg(*line == '{', "line %d is not an object: %.*s", n + 1, (int) (nl - line), line);
        end = json_value(line, 0);
        ck_assert_msg(end == nl, "line %d is not one JSON object: %.*s", n + 1, (int) (nl - line), line);
        line = nl + 1;
    }
    return n;
}

/* The checker itself, so that a pass of json_lines means something. */
START_TEST(test_json_checker)
{
    static const char *const good[] = {
        "{}", "{\"a\":1}", "{\"a\":-1.5e3,\"b\":[true,false,null],\"c\":{\"d\":\"\\u00e9\\n\"}}",
        "{\"a\": \"x\" , \"b\" : [ ] }",
    };
    static const char *const bad[] = {
        "{", "{\"a\":}", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{\"a\":01}", "{\"a\":tru}", "{\"a\":\"\\x\"}",
        "{\"a\":\"tab\there\"}", "{\"a\":[1,]}", "{\"a\":1}}", "{\"a\":.5}", "{\"a\":NaN}",
    };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *end = json_value(good[i], 0);
        ck_assert_msg(end != NULL && *end == '\0', "rejected good JSON %s", good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *end = json_value(bad[i], 0);
        ck_assert_msg(end == NULL || *end != '\0', "accepted bad JSON %s", bad[i]);
    }
}
END_TEST

/* Lines of out that contain s. */
static int
count_lines_with(const char *out, const char *s)
{
    int n = 0;

    for (const char *line = out; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t      len = nl ? (size_t) (nl - line) : strlen(line);
        char       *copy = strndup(line, len);

        ck_assert_ptr_nonnull(copy);
        n += strstr(copy, s) != NULL;
        free(copy);
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

/* The ids of the table rows (lines after the header starting with a number), in order. */
static int
table_ids(const char *out, long *ids, int max)
{
    const char *line = strchr(out, '\n');
    int         n = 0;

    while (line != NULL && *++line && n < max) {
        char *end;
        long  id = strtol(line, &end, 10);

        if (end != line && *end == ' ')
            ids[n++] = id;
        line = strchr(line, '\n');
    }
    return n;
}

/*
 * A migrated database with jobs in every state.  ids: 1 available (mail,
 * send), 2 scheduled (default, report), 3 retryable (default, send),
 * 4 running (default, send); in the history 101 completed, 102 discarded
 * (mail, send; attempt 5, errors 5, crash_count 2), 103 cancelled.
 */
static char *
db_with_jobs(PGconn **connp)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);

    rt_exec(conn, "SELECT rhino.enqueue('send', '{\"to\": \"a@example.com\"}', 'mail', priority => 3, max_attempts => 7)");
    rt_exec(conn, "SELECT rhino.enqueue('report', '{}', run_at => now() + interval '1 day')");
    rt_exec(conn, "SELECT rhino.enqueue('send', '{\"n\": 3}')");
    rt_exec(conn, "UPDATE rhino.jobs SET state = 'retryable', run_at = now() + interval '1 hour', errors = 1,"
                  " attempt = 1, last_error = 'first try failed' WHERE id = 3");
    rt_exec(conn, "SELECT rhino.enqueue('send', '{\"n\": 4}')");
    rt_exec(conn, "UPDATE rhino.jobs SET state = 'running', attempt = 1, attempted_at = now() WHERE id = 4");
    rt_exec(conn, "INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, errors, max_attempts,"
                  "                             run_at, created_at, finished_at, crash_count, last_error) VALUES"
                  " (101, 'mail', 'send', '{\"n\": 101}', 'completed', 0, 1, 0, 25, now(), now(), now(), 0, NULL),"
                  " (102, 'mail', 'send', '{\"secret\": \"s3cr3t\", \"n\": 102}', 'discarded', -2, 5, 5, 5,"
                  "  now(), now() - interval '1 hour', now(), 2, E'gave up:\\nline two'),"
                  " (103, 'default', 'report', '{\"n\": 103}', 'cancelled', 0, 0, 0, 25, now(), now(), now(), 0, NULL)");
    *connp = conn;
    return dsn;
}

/* ---- list ----------------------------------------------------------------------- */

START_TEST(test_list)
{
    PGconn *conn;
    char   *dsn = db_with_jobs(&conn), *out, *err;
    long    ids[16];
    int     rc, n;

    rc = rt_ctl(dsn, NULL, &out, &err, "list", NULL);
    ck_assert_msg(rc == 0, "list exited %d: %s", rc, err);
    ck_assert_msg(strncmp(out, "ID ", 3) == 0 && strstr(out, "STATE") != NULL, "no header: %s", out);
    n = table_ids(out, ids, 16);
    ck_assert_int_eq(n, 7);
    /* newest first, across both tables */
    ck_assert_int_eq(ids[0], 103);
    ck_assert_int_eq(ids[1], 102);
    ck_assert_int_eq(ids[2], 101);
    ck_assert_int_eq(ids[3], 4);
    ck_assert_int_eq(ids[6], 1);
    ck_assert_msg(strstr(out, "s3cr3t") == NULL, "the payload was shown without --payload: %s", out);
    /* a multi-line error stays on one row */
    ck_assert_int_eq(count_lines_with(out, "gave up: line two"), 1);
    ck_assert_str_eq(err, "");
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "list", "--queue", "mail", NULL);
    ck_assert_int_eq(rc, 0);
    n = table_ids(out, ids, 16);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(ids[0], 102);
    ck_assert_int_eq(ids[1], 101);
    ck_assert_int_eq(ids[2], 1);
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "list", "--kind", "send", "--state", "running", NULL);
    ck_assert_int_eq(rc, 0);
    n = table_ids(out, ids, 16);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(ids[0], 4);
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "list", "--state", "cancelled", NULL);
    ck_assert_int_eq(rc, 0);
    n = table_ids(out, ids, 16);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(ids[0], 103);
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "list", "--limit", "2", NULL);
    ck_assert_int_eq(rc, 0);
    n = table_ids(out, ids, 16);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(ids[1], 102);
    free(out);
    free(err);

    /* nothing matches: a header and no rows, still exit 0 */
    rc = rt_ctl(dsn, NULL, &out, &err, "list", "--queue", "nosuch", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(table_ids(out, ids, 16), 0);
    ck_assert_msg(strncmp(out, "ID ", 3) == 0, "%s", out);
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "list", "--payload", "--state", "discarded", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(strstr(out, "PAYLOAD") != NULL && strstr(out, "s3cr3t") != NULL, "%s", out);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

START_TEST(test_list_json)
{
    static const char *const keys[] = {
        "\"id\":", "\"queue\":", "\"kind\":", "\"state\":", "\"attempt\":", "\"errors\":", "\"crash_count\":",
        "\"max_attempts\":", "\"priority\":", "\"run_at\":", "\"created_at\":", "\"finished_at\":", "\"last_error\":",
    };
    static const char first[] =
        "{\"id\":103,\"queue\":\"default\",\"kind\":\"report\",\"state\":\"cancelled\",\"attempt\":0,\"errors\":0,"
        "\"crash_count\":0,\"max_attempts\":25,\"priority\":0,\"run_at\":\"20";
    PGconn *conn;
    char   *dsn = db_with_jobs(&conn), *out, *err, *line;
    int     rc;

    rc = rt_ctl(dsn, NULL, &out, &err, "list", "--json", NULL);
    ck_assert_msg(rc == 0, "list --json exited %d: %s", rc, err);
    ck_assert_int_eq(json_lines(out), 7);
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        ck_assert_msg(count_lines_with(out, keys[k]) == 7, "not every line has %s: %s", keys[k], out);
    ck_assert_int_eq(count_lines_with(out, "\"payload\":"), 0);
    ck_assert_msg(strstr(out, "s3cr3t") == NULL, "payload leaked: %s", out);
    /* the first line is the newest job, with typed values */
    line = strndup(out, (size_t) (strchr(out, '\n') - out));
    ck_assert_ptr_nonnull(line);
    ck_assert_msg(strncmp(line, first, strlen(first)) == 0, "first line: %s", line);
    free(line);
    ck_assert_msg(strstr(out, "\"id\":102,") != NULL && strstr(out, "\"priority\":-2,") != NULL &&
                  strstr(out, "\"crash_count\":2,") != NULL &&
                  strstr(out, "\"last_error\":\"gave up:\\u000aline two\"}") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "\"finished_at\":null,") != NULL, "live jobs have a null finished_at: %s", out);
    /* ISO 8601 in UTC */
    ck_assert_msg(strstr(out, "\"created_at\":\"20") != NULL && strstr(out, "Z\",\"finished_at\"") != NULL, "%s", out);
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "list", "--json", "--payload", "--queue", "mail", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(json_lines(out), 3);
    ck_assert_int_eq(count_lines_with(out, "\"payload\":{"), 3);
    ck_assert_msg(strstr(out, "\"payload\":{\"n\": 102, \"secret\": \"s3cr3t\"}}") != NULL, "%s", out);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* Bad values are usage errors (exit 2) and reach no database (RHINO_DSN is unset). */
START_TEST(test_bad_values)
{
    static const char *const cases[][6] = {
        { "list", "--state", "finished", NULL },
        { "list", "--limit", "0", NULL },
        { "list", "--limit", "1000001", NULL },
        { "list", "--limit", "ten", NULL },
        { "list", "--queue", "", NULL },
        { "show", "abc", NULL },
        { "show", "0", NULL },
        { "show", "3.5", NULL },
        { "show", " 3", NULL },
        { "show", "12x", NULL },
        { "cancel", "99999999999999999999", NULL },
        { "retry", "x1", NULL },
        { "pause", "", NULL },
        { "top", "--interval", "0.01", NULL },
        { "top", "--interval", "soon", NULL },
        { "top", "--limit", "-1", NULL },
        { "top", "--limit", "2000000001", NULL },
        { "top", "--limit", "many", NULL },
        { "purge", "--finished-before", "", NULL },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out, *err;
        int   rc = rt_ctl(NULL, NULL, &out, &err, cases[i][0], cases[i][1], cases[i][2], cases[i][3], NULL);

        ck_assert_msg(rc == 2, "case %zu (%s %s %s): exit %d, stderr: %s", i, cases[i][0], cases[i][1],
                      cases[i][2] ? cases[i][2] : "", rc, err);
        ck_assert_msg(strstr(err, "rhinoctl: ") == err, "case %zu: stderr: %s", i, err);
        ck_assert_str_eq(out, "");
        free(out);
        free(err);
    }
}
END_TEST

/* ---- show ----------------------------------------------------------------------- */

START_TEST(test_show)
{
    static const char *const fields[] = {
        "id", "queue", "kind", "state", "attempt", "errors", "max_attempts", "crash_count", "priority", "run_at",
        "created_at", "attempted_at", "finished_at", "worker_id", "timeout", "last_error", "payload",
    };
    PGconn *conn;
    char   *dsn = db_with_jobs(&conn), *out, *err;
    int     rc;

    rc = rt_ctl(dsn, NULL, &out, &err, "show", "102", NULL);
    ck_assert_msg(rc == 0, "show exited %d: %s", rc, err);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char  want[64];
        char *p;

        snprintf(want, sizeof(want), "%s ", fields[i]);
        p = strstr(out, want);
        ck_assert_msg(p != NULL && (p == out || p[-1] == '\n'), "no %s line: %s", fields[i], out);
    }
    ck_assert_msg(strstr(out, "\nstate         discarded\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "\ncrash_count   2\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "\npayload       {\"n\": 102, \"secret\": \"s3cr3t\"}\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "\nworker_id     -\n") != NULL, "%s", out);
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "show", "1", "--json", NULL);
    ck_assert_msg(rc == 0, "show --json exited %d: %s", rc, err);
    ck_assert_int_eq(json_lines(out), 1);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char want[64];

        snprintf(want, sizeof(want), "\"%s\":", fields[i]);
        ck_assert_msg(strstr(out, want) != NULL, "no %s: %s", want, out);
    }
    ck_assert_msg(strstr(out, "{\"id\":1,\"queue\":\"mail\",\"kind\":\"send\",\"state\":\"available\",") == out, "%s", out);
    ck_assert_msg(strstr(out, "\"payload\":{\"to\": \"a@example.com\"}}\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "\"max_attempts\":7,") != NULL && strstr(out, "\"priority\":3,") != NULL, "%s", out);
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "show", "999", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_str_eq(err, "rhinoctl: show: no job 999\n");
    ck_assert_str_eq(out, "");
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "show", "999", "--json", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_str_eq(out, "");
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* ---- retry ------------------------------------------------------------------------ */

START_TEST(test_retry_one)
{
    PGconn *conn;
    char   *dsn = db_with_jobs(&conn), *out, *err, *v;
    int     rc;

    rc = rt_ctl(dsn, NULL, &out, &err, "retry", "102", NULL);
    ck_assert_msg(rc == 0, "retry exited %d: %s", rc, err);
    ck_assert_str_eq(out, "redriven 1 jobs\n");
    free(out);
    free(err);
    /* everything kept but the counts; attempt keeps growing from where it was */
    v = rt_query1(conn, "SELECT queue || '|' || kind || '|' || state || '|' || priority || '|' || attempt || '|'"
                        "       || errors || '|' || crash_count || '|' || max_attempts || '|' || payload::text"
                        "       || '|' || (run_at <= now()) || '|' || (created_at < now() - interval '59 min')"
                        "  FROM rhino.jobs WHERE id = 102");
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "mail|send|available|-2|5|0|0|5|{\"n\": 102, \"secret\": \"s3cr3t\"}|true|true");
    free(v);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done WHERE id = 102"), 0);

    /* a cancelled job, by its id */
    rc = rt_ctl(dsn, NULL, &out, &err, "retry", "103", NULL);
    ck_assert_msg(rc == 0, "retry exited %d: %s", rc, err);
    ck_assert_str_eq(out, "redriven 1 jobs\n");
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE id = 103 AND state = 'available'"), 1);
    free(out);
    free(err);

    /* refused: a completed job, a live one, a missing one */
    rc = rt_ctl(dsn, NULL, &out, &err, "retry", "101", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "job 101 is completed") != NULL, "stderr: %s", err);
    ck_assert_str_eq(out, "");
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "retry", "102", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "job 102 is available, not finished") != NULL, "stderr: %s", err);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "retry", "5000", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_str_eq(err, "rhinoctl: retry: no job 5000\n");
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done WHERE id = 101"), 1);

    /* the re-inserted id does not disturb new ids */
    ck_assert_int_eq(rt_query_long(conn, "SELECT rhino.enqueue('after')"), 5);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/*
 * retry ID of a cancelled job whose unique key a newer live job holds: left
 * in the history, and the message names the key and that job, not "not
 * finished".  Once that job has finished the retry goes through.
 */
START_TEST(test_retry_key_held)
{
    char   *dsn = rt_db_create_migrated(), *out, *err, *old_id, *live_id, want[256];
    PGconn *conn = rt_connect(dsn);
    int     rc;

    old_id = rt_query1(conn, "SELECT rhino.enqueue('k', unique_key => 'order-7')");
    rt_exec(conn, "SELECT rhino.cancel(id) FROM rhino.jobs");
    live_id = rt_query1(conn, "SELECT rhino.enqueue('k', unique_key => 'order-7')");

    rc = rt_ctl(dsn, NULL, &out, &err, "retry", old_id, NULL);
    ck_assert_int_eq(rc, 1);
    snprintf(want, sizeof(want), "rhinoctl: retry: job %s is cancelled, but its unique key \"order-7\" is held by "
             "live job %s; retry it once that job has finished\n", old_id, live_id);
    ck_assert_str_eq(err, want);
    ck_assert_str_eq(out, "");
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'cancelled'"), 1);

    rt_exec(conn, "SELECT rhino.cancel(id) FROM rhino.jobs");
    rc = rt_ctl(dsn, NULL, &out, &err, "retry", old_id, NULL);
    ck_assert_msg(rc == 0, "retry exited %d: %s", rc, err);
    ck_assert_str_eq(out, "redriven 1 jobs\n");
    free(out);
    free(err);
    PQfinish(conn);
    free(old_id);
    free(live_id);
    free(dsn);
}
END_TEST

/*
 * The same key taken while the retry runs: a producer's enqueue of the key
 * is in flight (inserted, not committed) when the redrive looks for a live
 * holder, so the redrive finds none and its INSERT waits on the producer's
 * index entry; the producer then commits.  The retry must end as if the
 * holder had been there first (the message naming the key and the holder,
 * exit 1, the job still in the history), not with PostgreSQL's unique
 * violation.  retry --discarded, several jobs in one statement: the others
 * are redriven, the one whose key was taken stays in the history.
 */
START_TEST(test_retry_key_taken_meanwhile)
{
    char   *dsn = rt_db_create_migrated(), *logpath, *log, *old_id, *live_id, want[256];
    PGconn *conn = rt_connect(dsn), *producer = rt_connect(dsn);
    pid_t   pid;
    int     waited, rc;

    old_id = rt_query1(conn, "SELECT rhino.enqueue('k', unique_key => 'order-7')");
    rt_exec(conn, "SELECT rhino.cancel(id) FROM rhino.jobs");
    rt_exec(producer, "BEGIN");
    live_id = rt_query1(producer, "SELECT rhino.enqueue('k', unique_key => 'order-7')");
    pid = ctl_spawn(dsn, &logpath, "retry", old_id, NULL);
    waited = ctl_waits_for_lock(conn);
    rt_exec(producer, "COMMIT");
    rc = rt_wait_exit(pid, 30);
    log = rt_read_file(logpath);
    ck_assert_msg(waited, "retry never waited for the producer's key: %s", log);
    snprintf(want, sizeof(want), "rhinoctl: retry: job %s is cancelled, but its unique key \"order-7\" is held by "
             "live job %s; retry it once that job has finished\n", old_id, live_id);
    ck_assert_msg(rc == 1, "retry exited %d: %s", rc, log);
    ck_assert_str_eq(log, want);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'cancelled'"), 1);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 1);
    free(log);
    free(logpath);
    free(old_id);
    free(live_id);

    /* three discarded jobs, one keyed, redriven in one statement */
    rt_exec(conn, "SELECT rhino.cancel(id) FROM rhino.jobs");
    rt_exec(conn, "INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, errors,"
                  "                                 max_attempts, run_at, created_at, unique_key)"
                  " SELECT 5000 + g, 'default', 'k', '{}', 'discarded', 0, 3, 3, 3, now(), now(),"
                  "        CASE WHEN g = 2 THEN 'order-8' END"
                  "   FROM generate_series(1, 3) g");
    rt_exec(producer, "BEGIN");
    live_id = rt_query1(producer, "SELECT rhino.enqueue('k', unique_key => 'order-8')");
    pid = ctl_spawn(dsn, &logpath, "retry", "--discarded", NULL);
    waited = ctl_waits_for_lock(conn);
    rt_exec(producer, "COMMIT");
    rc = rt_wait_exit(pid, 30);
    log = rt_read_file(logpath);
    ck_assert_msg(waited, "retry --discarded never waited for the producer's key: %s", log);
    ck_assert_msg(rc == 0, "retry --discarded exited %d: %s", rc, log);
    ck_assert_str_eq(log, "redriven 2 jobs\n");
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE id IN (5001, 5003)"
                                         "   AND state = 'available'"), 2);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done"
                                         " WHERE id = 5002 AND state = 'discarded'"), 1);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE unique_key = 'order-8'"), 1);
    free(log);
    free(logpath);
    free(live_id);
    PQfinish(producer);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* More discarded jobs than one batch, filtered by queue and kind; the others stay. */
START_TEST(test_retry_discarded)
{
    char   *dsn = rt_db_create_migrated(), *out, *err;
    PGconn *conn = rt_connect(dsn);
    int     rc;

    rt_exec(conn, "INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, errors,"
                  "                             max_attempts, run_at, created_at, crash_count)"
                  " SELECT g, CASE WHEN g <= 300 THEN 'b' ELSE 'a' END, CASE WHEN g % 100 = 0 THEN 'y' ELSE 'x' END,"
                  "        jsonb_build_object('g', g), CASE WHEN g > 12000 THEN 'completed' WHEN g > 11800 THEN 'cancelled'"
                  "        ELSE 'discarded' END::rhino.job_state, 0, 3, 3, 3, now(), now(), 1"
                  "   FROM generate_series(1, 12500) g");
    /* b: 1..300 (3 of them kind y); y elsewhere: 114 discarded in a */

    rc = rt_ctl(dsn, NULL, &out, &err, "retry", "--discarded", "--queue", "b", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_str_eq(out, "redriven 300 jobs\n");
    ck_assert_str_eq(err, "");      /* no progress in a pipe */
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE queue = 'b'"), 300);

    rc = rt_ctl(dsn, NULL, &out, &err, "retry", "--kind", "y", "--discarded", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_str_eq(out, "redriven 115 jobs\n");
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "retry", "--discarded", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_str_eq(out, "redriven 11385 jobs\n");
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE state = 'available'"
                                         "   AND errors = 0 AND crash_count = 0 AND attempt = 3"), 11800);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'discarded'"), 0);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'cancelled'"), 200);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'completed'"), 500);

    /* nothing left: not an error */
    rc = rt_ctl(dsn, NULL, &out, &err, "retry", "--discarded", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "redriven 0 jobs\n");
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* ---- cancel ----------------------------------------------------------------------- */

START_TEST(test_cancel)
{
    PGconn *conn;
    char   *dsn = db_with_jobs(&conn), *out, *err, *v;
    int     rc;

    /* available, scheduled, retryable */
    for (int id = 1; id <= 3; id++) {
        char ids[16];

        snprintf(ids, sizeof(ids), "%d", id);
        rc = rt_ctl(dsn, NULL, &out, &err, "cancel", ids, NULL);
        ck_assert_msg(rc == 0, "cancel %d exited %d: %s", id, rc, err);
        ck_assert_msg(strcmp(out, "cancelled job ") > 0 && strstr(out, ids) != NULL, "%s", out);
        free(out);
        free(err);
    }
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE id <= 3"), 0);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done WHERE id <= 3 AND state = 'cancelled'"
                                         "   AND finished_at IS NOT NULL"), 3);
    v = rt_query1(conn, "SELECT kind || '|' || queue || '|' || payload::text || '|' || attempt || '|' || errors"
                        "       || '|' || last_error FROM rhino.jobs_done WHERE id = 3");
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "send|default|{\"n\": 3}|1|1|first try failed");
    free(v);

    /* running: the request is recorded for its worker (check_features runs it with a daemon) */
    rc = rt_ctl(dsn, NULL, &out, &err, "cancel", "4", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(strstr(out, "job 4 is running: cancellation requested") != NULL, "%s", out);
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE id = 4 AND state = 'running'"
                                         "   AND cancel_requested_at IS NOT NULL"), 1);

    /* finished: refused, naming the state */
    rc = rt_ctl(dsn, NULL, &out, &err, "cancel", "101", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_str_eq(err, "rhinoctl: cancel: job 101 is already completed\n");
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "cancel", "1", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_str_eq(err, "rhinoctl: cancel: job 1 is already cancelled\n");
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "cancel", "77", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_str_eq(err, "rhinoctl: cancel: no job 77\n");
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* ---- purge ------------------------------------------------------------------------ */

START_TEST(test_purge)
{
    char   *dsn = rt_db_create_migrated(), *out, *err;
    PGconn *conn = rt_connect(dsn);
    int     rc;

    /* 6000 finished 10 days ago (more than a batch), 100 three days ago, 10 now; and a live job */
    rt_exec(conn, "INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, max_attempts,"
                  "                             run_at, created_at, finished_at)"
                  " SELECT g, 'q', 'k', '{}', CASE WHEN g % 2 = 0 THEN 'completed' ELSE 'discarded' END::rhino.job_state,"
                  "        0, 1, 25, now(), now(),"
                  "        now() - CASE WHEN g <= 6000 THEN interval '10 days' WHEN g <= 6100 THEN interval '3 days'"
                  "                     ELSE interval '0' END"
                  "   FROM generate_series(1, 6110) g");
    /*
     * completed jobs as the workers keep them, a batch to a row: 7 batches
     * of 1000 ten days ago (more than one statement's 5 rows), 3 jobs now
     */
    rt_exec(conn, RT_BATCH_INSERT("now() - interval '10 days'",
                                  "generate_series(0, 6) b, generate_series(100001 + b * 1000, 101000 + b * 1000) g",
                                  "GROUP BY b"));
    rt_exec(conn, RT_BATCH_INSERT("now()", "generate_series(200001, 200003) g", ""));
    rt_exec(conn, "SELECT rhino.enqueue('live')");

    rc = rt_ctl(dsn, NULL, &out, &err, "purge", "--finished-before", "-7 days", NULL);
    ck_assert_msg(rc == 0, "purge exited %d: %s", rc, err);
    ck_assert_str_eq(out, "purged 13000 jobs\n");
    ck_assert_str_eq(err, "");
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done"), 113);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done_batches"), 1);

    /* an absolute timestamp */
    rc = rt_ctl(dsn, NULL, &out, &err, "purge", "--finished-before=2000-01-01 00:00+00", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "purged 0 jobs\n");
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "purge", "--finished-before", "-1 day", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "purged 100 jobs\n");
    free(out);
    free(err);

    /* a bad time is the database's "no": exit 1, naming the option */
    rc = rt_ctl(dsn, NULL, &out, &err, "purge", "--finished-before", "last tuesdayish", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "rhinoctl: purge: --finished-before: ") == err, "stderr: %s", err);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "purge", "--finished-before", "-3 fortnights", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "--finished-before") != NULL, "stderr: %s", err);
    free(out);
    free(err);

    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done"), 13);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 1);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* ---- pause, resume ---------------------------------------------------------------- */

START_TEST(test_pause_resume_cli)
{
    char   *dsn = rt_db_create_migrated(), *out, *err, *since1, *since2;
    PGconn *conn = rt_connect(dsn);
    int     rc;

    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'mail')");
    rc = rt_ctl(dsn, NULL, &out, &err, "pause", "mail", NULL);
    ck_assert_msg(rc == 0, "pause exited %d: %s", rc, err);
    ck_assert_str_eq(out, "paused queue mail\n");
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.queues WHERE name = 'mail' AND paused"
                                         "   AND paused_at IS NOT NULL"), 1);
    since1 = rt_query1(conn, "SELECT paused_at::text FROM rhino.queues WHERE name = 'mail'");

    /* again: idempotent, the first time kept */
    rc = rt_ctl(dsn, NULL, &out, &err, "pause", "mail", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(strstr(out, "queue mail was already paused (since 20") == out, "%s", out);
    free(out);
    free(err);
    since2 = rt_query1(conn, "SELECT paused_at::text FROM rhino.queues WHERE name = 'mail'");
    ck_assert_str_eq(since1, since2);
    free(since1);
    free(since2);

    /* a queue without jobs can be paused ahead of time; stats shows both */
    rc = rt_ctl(dsn, NULL, &out, &err, "pause", "empty", NULL);
    ck_assert_int_eq(rc, 0);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "stats", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(count_lines_with(out, "paused"), 2);
    ck_assert_int_eq(stats_count(out, "mail", "available"), 1);
    ck_assert_int_eq(stats_count(out, "empty", "-"), 0);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "stats", "--json", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(json_lines(out), 2);
    ck_assert_msg(strstr(out, "{\"queue\":\"empty\",\"state\":null,\"count\":0,\"paused\":true}\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "{\"queue\":\"mail\",\"state\":\"available\",\"count\":1,\"paused\":true}\n") != NULL,
                  "%s", out);
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "resume", "mail", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "resumed queue mail\n");
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.queues WHERE paused"), 1);
    rc = rt_ctl(dsn, NULL, &out, &err, "resume", "mail", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "queue mail was not paused\n");
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "resume", "never", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "queue never was not paused\n");
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "stats", "--json", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(strstr(out, "{\"queue\":\"mail\",\"state\":\"available\",\"count\":1,\"paused\":false}\n") != NULL,
                  "%s", out);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* ---- top ------------------------------------------------------------------------- */

/* The line of a top frame whose first word is queue; NULL if none. */
static const char *
top_line(const char *frame, const char *queue)
{
    size_t n = strlen(queue);

    for (const char *line = frame; line && *line;) {
        if (strncmp(line, queue, n) == 0 && (line[n] == ' ' || line[n] == '\t'))
            return line;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return NULL;
}

/* The numbers of the row of queue in a top frame: available .. discarded/1m; 0 if no row. */
static int
top_row(const char *frame, const char *queue, long v[6], char *paused, size_t plen)
{
    const char *line = top_line(frame, queue);
    char        q[256], oldest[32], p[16];
    double      rate;

    if (line == NULL || sscanf(line, "%255s %ld %ld %ld %ld %ld %ld %lf %31s %15s", q, &v[0], &v[1], &v[2], &v[3],
                               &v[4], &v[5], &rate, oldest, p) != 10)
        return 0;
    snprintf(paused, plen, "%s", p);
    return 1;
}

/*
 * An infinite time: refused by enqueue --run-at (with --bulk too) and purge
 * --finished-before in option parsing, by rhino.enqueue on the server, and
 * by the constraint jobs_run_at_finite (schema 15) in a direct INSERT.  One
 * stored all the same (here with the constraint dropped; before schema 15
 * by any INSERT or COPY) does not break top or the queue gauge: its age is
 * infinite.
 */
START_TEST(test_infinite_times)
{
    static const char *const specs[] = { "-infinity", "infinity", " Infinity ", "+INFINITY" };
    char               *dsn = rt_db_create_migrated(), *out, *err, *v;
    PGconn             *conn = rt_connect(dsn);
    const char         *params[1] = { NULL };
    PGresult           *res;
    int                 rc;

    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        rc = rt_ctl(dsn, NULL, &out, &err, "enqueue", "k", "--run-at", specs[i], NULL);
        ck_assert_msg(rc == 2, "enqueue --run-at %s exited %d: %s", specs[i], rc, err);
        ck_assert_msg(strstr(err, "--run-at: ") != NULL && strstr(err, "is not a time a job can run at") != NULL,
                      "%s", err);
        free(out);
        free(err);
        rc = rt_ctl(dsn, "{}\n", &out, &err, "enqueue", "--bulk", "k", "--run-at", specs[i], NULL);
        ck_assert_msg(rc == 2, "enqueue --bulk --run-at %s exited %d: %s", specs[i], rc, err);
        free(out);
        free(err);
        rc = rt_ctl(dsn, NULL, &out, &err, "purge", "--finished-before", specs[i], NULL);
        ck_assert_msg(rc == 2, "purge --finished-before %s exited %d: %s", specs[i], rc, err);
        ck_assert_msg(strstr(err, "--finished-before: ") != NULL && strstr(err, "is not a finite time") != NULL,
                      "%s", err);
        free(out);
        free(err);
    }
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 0);
    /* what these are for still works: every finished job */
    rc = rt_ctl(dsn, NULL, &out, &err, "purge", "--finished-before", "now", NULL);
    ck_assert_msg(rc == 0, "purge --finished-before now exited %d: %s", rc, err);
    free(out);
    free(err);

    res = PQexec(conn, "SELECT rhino.enqueue('k', run_at => '-infinity')");
    ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22023");
    ck_assert_msg(strstr(PQresultErrorMessage(res), "run_at must be a finite time, not -infinity") != NULL, "%s",
                  PQresultErrorMessage(res));
    PQclear(res);

    res = PQexec(conn, "INSERT INTO rhino.jobs (kind, queue, run_at) VALUES ('k', 'inf', '-infinity')");
    ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23514");
    ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME), "jobs_run_at_finite");
    PQclear(res);

    rt_exec(conn, "ALTER TABLE rhino.jobs DROP CONSTRAINT jobs_run_at_finite");
    rt_exec(conn, "INSERT INTO rhino.jobs (kind, queue, run_at) VALUES ('k', 'inf', '-infinity'),"
                  " ('k', 'inf', now()), ('k', 'fin', now() - interval '2 minutes')");
    rc = rt_ctl(dsn, NULL, &out, &err, "top", "--once", NULL);
    ck_assert_msg(rc == 0, "top exited %d: %s", rc, err);
    ck_assert_msg(top_line(out, "inf") != NULL && strstr(top_line(out, "inf"), " inf ") != NULL, "%s", out);
    ck_assert_msg(top_line(out, "fin") != NULL && strstr(top_line(out, "fin"), " 2m0") != NULL, "%s", out);
    free(out);
    free(err);
    res = PQexecParams(conn, rh_sql(RH_STMT_QUEUE_DEPTH)->sql, 1, NULL, params, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
    ck_assert_int_eq(PQntuples(res), 2);
    for (int r = 0; r < 2; r++) {
        double age = strtod(PQgetvalue(res, r, 2), NULL);

        if (strcmp(PQgetvalue(res, r, 0), "inf") == 0)
            ck_assert_msg(isinf(age) && age > 0, "%s", PQgetvalue(res, r, 2));
        else
            ck_assert_msg(age >= 120 && age < 180, "%s: %s", PQgetvalue(res, r, 0), PQgetvalue(res, r, 2));
    }
    PQclear(res);
    v = rt_query1(conn, "SELECT count(*) FROM rhino.jobs");
    ck_assert_str_eq(v, "3");
    free(v);
    PQfinish(conn);
    free(dsn);
}
END_TEST

START_TEST(test_top_once)
{
    char   *dsn = rt_db_create_migrated(), *out, *err, paused[16];
    PGconn *conn = rt_connect(dsn);
    long    v[6];
    int     rc;

    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'mail') FROM generate_series(1, 3)");
    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'mail', run_at => now() + interval '1 hour')");
    rt_exec(conn, "UPDATE rhino.jobs SET run_at = now() - interval '2 minutes' WHERE id = 1");
    rt_exec(conn, "INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, max_attempts,"
                  "                             run_at, created_at, finished_at)"
                  " SELECT 100 + g, 'mail', 'k', '{}', CASE WHEN g <= 4 THEN 'completed' ELSE 'discarded' END::rhino.job_state,"
                  "        0, 1, 25, now(), now(), now() - interval '5 s' FROM generate_series(1, 5) g");
    rt_exec(conn, "INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, max_attempts,"
                  "                             run_at, created_at, finished_at)"
                  " VALUES (200, 'mail', 'k', '{}', 'completed', 0, 1, 25, now(), now(), now() - interval '2 min')");
    rt_exec(conn, "INSERT INTO rhino.queues (name, paused, paused_at) VALUES ('held', true, now())");

    rc = rt_ctl(dsn, NULL, &out, &err, "top", "--once", NULL);
    ck_assert_msg(rc == 0, "top exited %d: %s", rc, err);
    ck_assert_msg(strncmp(out, "rhino top ", 10) == 0, "%s", out);
    ck_assert_msg(strchr(out, '\033') == NULL, "ANSI codes in a pipe: %s", out);
    ck_assert_int_eq(count_lines_with(out, "rhino top "), 1);
    ck_assert_msg(top_row(out, "mail", v, paused, sizeof(paused)), "no mail row: %s", out);
    ck_assert_int_eq(v[0], 3);      /* available */
    ck_assert_int_eq(v[1], 1);      /* scheduled */
    ck_assert_int_eq(v[2], 0);
    ck_assert_int_eq(v[3], 0);
    ck_assert_int_eq(v[4], 4);      /* completed in the last minute: not the one 2 min ago */
    ck_assert_int_eq(v[5], 1);
    ck_assert_str_eq(paused, "no");
    ck_assert_msg(count_lines_with(out, "2m0") == 1, "the oldest available job's age: %s", out);
    ck_assert_msg(top_row(out, "held", v, paused, sizeof(paused)), "no row for the paused queue: %s", out);
    ck_assert_str_eq(paused, "yes");
    ck_assert_msg(strstr(out, "no live workers") != NULL, "%s", out);
    free(out);
    free(err);

    /* a wide interval counts the jobs of the last 10 s as throughput: 5 jobs / 10 s */
    rc = rt_ctl(dsn, NULL, &out, &err, "top", "--once", "--interval", "10", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(count_lines_with(out, " 0.5 ") == 1, "jobs/s: %s", out);
    PQfinish(conn);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

/* The cells of queue's row in a top frame, as printed ("12", "5+"): available .. retryable; 0 if no row. */
static int
top_cells(const char *frame, const char *queue, char cells[4][32])
{
    const char *line = top_line(frame, queue);
    char        q[256];

    return line != NULL && sscanf(line, "%255s %31s %31s %31s %31s", q, cells[0], cells[1], cells[2], cells[3]) == 5;
}

/*
 * top --limit: each frame counts up to N jobs per queue (available) and N
 * of each index's rows (running; scheduled and retryable together), so a
 * frame costs the same with 10M queued; a count at the limit shows as N+
 * and a line says what N+ means; --limit 0 and the default (100,000) count
 * these few exactly.
 */
START_TEST(test_top_limit)
{
    char   *dsn = rt_db_create_migrated(), *out, *err, c[4][32];
    PGconn *conn = rt_connect(dsn);
    int     rc;

    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'big') FROM generate_series(1, 12)");
    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'big', run_at => now() + interval '1 hour')"
                  "  FROM generate_series(1, 3)");
    rt_exec(conn, "SELECT rhino.enqueue('k', queue => 'small') FROM generate_series(1, 4)");
    rt_exec(conn, "UPDATE rhino.jobs SET state = 'retryable', run_at = now() + interval '1 hour'"
                  " WHERE id = (SELECT min(id) FROM rhino.jobs WHERE queue = 'small')");
    rt_exec(conn, "UPDATE rhino.jobs SET state = 'running', attempt = 1, worker_id = 7, attempted_at = now()"
                  " WHERE id IN (SELECT id FROM rhino.jobs WHERE queue = 'small' AND state = 'available' LIMIT 2)");

    /* 5: big's 12 available stop at 5; the 3 scheduled + 1 retryable and the 2 running are below it */
    rc = rt_ctl(dsn, NULL, &out, &err, "top", "--once", "--limit", "5", NULL);
    ck_assert_msg(rc == 0, "top exited %d: %s", rc, err);
    ck_assert_msg(top_cells(out, "big", c), "no big row: %s", out);
    ck_assert_str_eq(c[0], "5+");
    ck_assert_str_eq(c[1], "3");
    ck_assert_msg(top_cells(out, "small", c), "no small row: %s", out);
    ck_assert_str_eq(c[0], "1");
    ck_assert_str_eq(c[2], "2");
    ck_assert_str_eq(c[3], "1");
    ck_assert_msg(strstr(out, "at least N; top counts up to 5 jobs") != NULL, "%s", out);
    free(out);
    free(err);

    /* 2: the running count and the scheduled-and-retryable count stop too, so they read "at least" */
    rc = rt_ctl(dsn, NULL, &out, &err, "top", "--once", "--limit", "2", NULL);
    ck_assert_msg(rc == 0, "top exited %d: %s", rc, err);
    ck_assert_msg(top_cells(out, "small", c), "no small row: %s", out);
    ck_assert_str_eq(c[0], "1");                    /* below the limit: exact */
    ck_assert_str_eq(c[2], "2+");
    ck_assert_msg(c[3][strlen(c[3]) - 1] == '+', "retryable: %s", out);
    ck_assert_msg(top_cells(out, "big", c), "no big row: %s", out);
    ck_assert_str_eq(c[0], "2+");
    ck_assert_msg(c[1][strlen(c[1]) - 1] == '+', "scheduled: %s", out);
    free(out);
    free(err);

    /* 0 (spelled "00" too) counts all; so does the default limit, for so few */
    for (int i = 0; i < 3; i++) {
        rc = i < 2 ? rt_ctl(dsn, NULL, &out, &err, "top", "--once", "--limit", i == 0 ? "0" : "00", NULL)
                   : rt_ctl(dsn, NULL, &out, &err, "top", "--once", NULL);
        ck_assert_msg(rc == 0, "top exited %d: %s", rc, err);
        ck_assert_msg(top_cells(out, "big", c), "no big row: %s", out);
        ck_assert_str_eq(c[0], "12");
        ck_assert_str_eq(c[1], "3");
        ck_assert_msg(strchr(out, '+') == NULL && strstr(out, "at least") == NULL, "%s", out);
        free(out);
        free(err);
    }
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* Without --once: frames a blank line apart in a pipe; SIGINT and "q" end it with exit 0. */
START_TEST(test_top_frames)
{
    char   *dsn = rt_db_create_migrated(), *env_dsn, *log, *logpath, *out, *err;
    char   *argv[] = { (char *) rt_env("RHINOCTL_BIN"), (char *) "top", (char *) "--interval", (char *) "0.1", NULL };
    char   *env[2];
    pid_t   pid;
    double  t0;
    int     rc;

    ck_assert_int_ge(asprintf(&env_dsn, "RHINO_DSN=%s", dsn), 0);
    env[0] = env_dsn;
    env[1] = NULL;
    logpath = rt_write_file("top.log", "");
    pid = rt_spawn(argv, env, logpath);
    /* three frames, waited for rather than slept on: under ASan on a busy machine 0.7 s gave one */
    t0 = rt_now();
    do {
        usleep(100 * 1000);
        log = rt_read_file(logpath);
        rc = count_lines_with(log, "rhino top ");
        free(log);
    } while (rc < 3 && rt_now() - t0 < 20);
    ck_assert_int_eq(rt_wait_exit(pid, 0.01), -1);      /* still refreshing */
    kill(pid, SIGINT);
    rc = rt_wait_exit(pid, 5);
    log = rt_read_file(logpath);
    ck_assert_msg(rc == 0, "top exited %d after SIGINT: %s", rc, log);
    ck_assert_msg(count_lines_with(log, "rhino top ") >= 3, "too few frames: %s", log);
    ck_assert_msg(strstr(log, "workers\n\nrhino top ") != NULL, "frames not a blank line apart: %s", log);
    free(log);
    free(logpath);

    /* "q" on stdin */
    t0 = rt_now();
    rc = rt_ctl(dsn, "q\n", &out, &err, "top", "--interval", "5", NULL);
    ck_assert_msg(rc == 0, "top exited %d: %s", rc, err);
    ck_assert_msg(rt_now() - t0 < 4, "q did not quit at once");
    ck_assert_int_eq(count_lines_with(out, "rhino top "), 1);
    free(out);
    free(err);
    free(env_dsn);
    free(dsn);
}
END_TEST

/* ---- pause against a running rhino ------------------------------------------------- */

/*
 * A paused queue's jobs are not claimed by a running rhino, a job already
 * running when its queue is paused finishes, and resume lets the rest run.
 */
START_TEST(test_pause_with_daemon)
{
    char   *dsn = rt_db_create_migrated(), *ini, *inipath, *logpath, *env_dsn, *out, *err, *log, paused[16];
    char   *argv[4];
    char   *env[2];
    PGconn *conn = rt_connect(dsn);
    pid_t   pid;
    long    v[6];
    int     rc;

    ck_assert_int_ge(asprintf(&ini, "[worker]\nprocesses = 2\nbatch_size = 10\npoll_interval = 0.05\n"
                                    "queues = default, held, flight\n"
                                    "[handlers]\npath = %s/test_handlers.so\n"
                                    "[reaper]\ninterval = 0.1\n", rt_env("RHINO_TEST_HANDLERS")), 0);
    inipath = rt_write_file("rhino.ini", ini);
    logpath = rt_write_file("rhino.log", "");
    ck_assert_int_ge(asprintf(&env_dsn, "RHINO_DSN=%s", dsn), 0);
    env[0] = env_dsn;
    env[1] = NULL;

    rc = rt_ctl(dsn, NULL, &out, &err, "pause", "held", NULL);
    ck_assert_msg(rc == 0, "pause exited %d: %s", rc, err);
    free(out);
    free(err);
    rt_exec(conn, "SELECT rhino.enqueue('ok', '{}', 'held') FROM generate_series(1, 10)");
    rt_exec(conn, "SELECT rhino.enqueue('ok', '{}', 'default') FROM generate_series(1, 10)");
    rt_exec(conn, "SELECT rhino.enqueue('ok', '{\"ms\": 1500}', 'flight')");

    argv[0] = (char *) rt_env("RHINO_BIN");
    argv[1] = (char *) "-c";
    argv[2] = inipath;
    argv[3] = NULL;
    pid = rt_spawn(argv, env, logpath);
    ck_assert_int_gt(pid, 0);

    /* the slow job is running: pause its queue, then add more to it */
    ck_assert_msg(rt_wait_sql(conn, "SELECT count(*) = 1 FROM rhino.jobs WHERE queue = 'flight' AND state = 'running'",
                              30), "the flight job never started");
    rc = rt_ctl(dsn, NULL, &out, &err, "pause", "flight", NULL);
    ck_assert_int_eq(rc, 0);
    free(out);
    free(err);
    rt_exec(conn, "SELECT rhino.enqueue('ok', '{}', 'flight') FROM generate_series(1, 5)");

    ck_assert_msg(rt_wait_sql(conn, "SELECT count(*) = 11 FROM rhino.jobs_done WHERE state = 'completed'"
                                    "   AND queue IN ('default', 'flight')", 30),
                  "the default jobs and the in-flight job did not complete");
    usleep(500 * 1000);     /* ten poll intervals: paused jobs would have been claimed by now */
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE queue IN ('held', 'flight')"
                                         "   AND state = 'available' AND attempt = 0"), 15);

    /* top sees the live workers and the paused queues */
    rc = rt_ctl(dsn, NULL, &out, &err, "top", "--once", NULL);
    ck_assert_msg(rc == 0, "top exited %d: %s", rc, err);
    ck_assert_msg(top_row(out, "held", v, paused, sizeof(paused)), "no held row: %s", out);
    ck_assert_int_eq(v[0], 10);
    ck_assert_str_eq(paused, "yes");
    ck_assert_msg(strstr(out, "no live workers") == NULL && strstr(out, "WORKERS") != NULL, "%s", out);
    {
        const char *hdr = strstr(out, "WORKERS");
        const char *row = strchr(hdr, '\n') + 1;
        char        node[256];
        long        npid = 0, workers = 0;

        ck_assert_int_eq(sscanf(row, "%255s %ld %ld", node, &npid, &workers), 3);
        ck_assert_int_eq(npid, pid);
        ck_assert_int_eq(workers, 2);
    }
    free(out);
    free(err);

    rc = rt_ctl(dsn, NULL, &out, &err, "resume", "held", NULL);
    ck_assert_int_eq(rc, 0);
    free(out);
    free(err);
    rc = rt_ctl(dsn, NULL, &out, &err, "resume", "flight", NULL);
    ck_assert_int_eq(rc, 0);
    free(out);
    free(err);
    ck_assert_msg(rt_wait_sql(conn, "SELECT count(*) = 26 FROM rhino.jobs_done WHERE state = 'completed'", 30),
                  "resumed queues did not run");
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done WHERE attempt <> 1"), 0);

    kill(pid, SIGTERM);
    rc = rt_wait_exit(pid, 30);
    log = rt_read_file(logpath);
    ck_assert_msg(rc == 0, "rhino exited %d after SIGTERM:\n%s", rc, log);
    free(log);
    rt_check_log(logpath, NULL, 0);
    PQfinish(conn);
    free(ini);
    free(inipath);
    free(logpath);
    free(env_dsn);
    free(dsn);
}
END_TEST

static Suite *
ctl_suite(void)
{
    Suite *s = suite_create("rhinoctl");
    TCase *tc;

    tc = tcase_create("migrate");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_text_array_literal);
    tcase_add_test(tc, test_migrate_empty_db);
    tcase_add_test(tc, test_migrate_twice);
    tcase_add_test(tc, test_migrate_concurrent);
    tcase_add_test(tc, test_migrate_failure_rolls_back);
    tcase_add_test(tc, test_migrate_waits_for_lock);
    tcase_add_test(tc, test_migrate_api);
    tcase_add_test(tc, test_migrate_014_nonfinite_timeouts);
    tcase_add_test(tc, test_migrate_015_infinite_run_at);
    tcase_add_test(tc, test_migrate_015_concurrent_producer);
    suite_add_tcase(s, tc);

    tc = tcase_create("enqueue");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_enqueue_with_options);
    tcase_add_test(tc, test_enqueue_defaults_and_option_order);
    tcase_add_test(tc, test_enqueue_run_at);
    tcase_add_test(tc, test_enqueue_bad_json);
    tcase_add_test(tc, test_enqueue_bad_numbers);
    tcase_add_test(tc, test_enqueue_unmigrated);
    suite_add_tcase(s, tc);

    tc = tcase_create("bulk");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bulk_10000);
    tcase_add_test(tc, test_bulk_escapes_and_options);
    tcase_add_test(tc, test_bulk_bad_line_inserts_nothing);
    tcase_add_test(tc, test_bulk_run_at);
    suite_add_tcase(s, tc);

    tc = tcase_create("stats");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_stats);
    suite_add_tcase(s, tc);

    tc = tcase_create("list_show");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_json_checker);
    tcase_add_test(tc, test_list);
    tcase_add_test(tc, test_list_json);
    tcase_add_test(tc, test_show);
    tcase_add_test(tc, test_bad_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("retry_cancel_purge");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_retry_one);
    tcase_add_test(tc, test_retry_key_held);
    tcase_add_test(tc, test_retry_key_taken_meanwhile);
    tcase_add_test(tc, test_retry_discarded);
    tcase_add_test(tc, test_cancel);
    tcase_add_test(tc, test_purge);
    suite_add_tcase(s, tc);

    tc = tcase_create("pause_top");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_pause_resume_cli);
    tcase_add_test(tc, test_top_once);
    tcase_add_test(tc, test_infinite_times);
    tcase_add_test(tc, test_top_limit);
    tcase_add_test(tc, test_top_frames);
    tcase_add_test(tc, test_pause_with_daemon);
    suite_add_tcase(s, tc);

    tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cli_version_help);
    tcase_add_test(tc, test_cli_usage_errors);
    tcase_add_test(tc, test_connect_error_hides_dsn);
    tcase_add_test(tc, test_config_file);
    suite_add_tcase(s, tc);

    tc = tcase_create("sql_api");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sql_enqueue);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(ctl_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
