/* check_ctl.c - rhinoctl and the SQL enqueue API, driven against a real PostgreSQL. */
#include "config.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rh_migrate.h"
#include "rh_testlib.h"

#define CTL_MAX_ARGS 16

/* The advisory lock key of common/rh_migrate.c ("rhinomig"), held by a test to block migrators. */
#define CTL_MIGRATE_LOCK "8243955040938453351"

/*
 * Run rhinoctl with the NULL-terminated arguments, RHINO_DSN set to dsn (or
 * removed from the environment when dsn is NULL), stdin_text on stdin.
 */
static int
ctl_run(const char *dsn, const char *stdin_text, char **out, char **err, ...)
{
    char       *argv[CTL_MAX_ARGS + 2], *env[2], *env_dsn = NULL;
    const char *a;
    va_list     ap;
    int         n = 0, rc;

    argv[n++] = (char *) rt_env("RHINOCTL_BIN");
    va_start(ap, err);
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(n, CTL_MAX_ARGS);
        argv[n++] = (char *) a;
    }
    va_end(ap);
    argv[n] = NULL;

    if (dsn != NULL)
        ck_assert_int_ge(asprintf(&env_dsn, "RHINO_DSN=%s", dsn), 0);
    /* a bare name removes the variable: no RHINO_DSN leaking in from the caller */
    env[0] = env_dsn ? env_dsn : (char *) "RHINO_DSN";
    env[1] = NULL;
    rc = rt_run(argv, env, stdin_text, out, err);
    free(env_dsn);
    return rc;
}

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

/* ---- migrate ------------------------------------------------------------ */

START_TEST(test_migrate_empty_db)
{
    char   *dsn = rt_db_create(), *out, *err;
    PGconn *conn;
    int     rc;

    rc = ctl_run(dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 0, "migrate exited %d: %s", rc, err);
    ck_assert_msg(strstr(out, "migrated: 1 step(s) applied, schema at version 1") != NULL, "stdout: %s", out);
    ck_assert_str_eq(err, "");

    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'rhino' "
                                         "AND tablename IN ('jobs', 'jobs_done', 'nodes', 'workers')"), 4);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schema_migrations "
                                         "WHERE version = 1 AND name = '001_init'"), 1);
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

    rc = ctl_run(dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 0, "second migrate exited %d: %s", rc, err);
    ck_assert_msg(strstr(out, "schema already at version 1") != NULL, "stdout: %s", out);
    ck_assert_msg(strstr(out, "applied") == NULL, "second migrate applied something: %s", out);
    ck_assert_str_eq(err, "");

    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schema_migrations"), 1);
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
        if (strstr(log, "migrated: 1 step(s) applied") != NULL)
            applied++;
        else
            ck_assert_msg(strstr(log, "schema already at version 1") != NULL, "migrator %d: %s", i, log);
        free(log);
        free(logs[i]);
    }
    ck_assert_int_eq(applied, 1);

    conn = rt_connect(dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schema_migrations"), 1);
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

    rc = ctl_run(dsn, NULL, &out, &err, "migrate", NULL);
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
    rc = ctl_run(dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 0, "migrate after the fix exited %d: %s", rc, err);
    ck_assert_msg(strstr(out, "1 step(s) applied") != NULL, "stdout: %s", out);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schema_migrations"), 1);
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
    ck_assert_msg(strstr(log, "1 step(s) applied") != NULL, "%s", log);
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

/* ---- enqueue -------------------------------------------------------------- */

START_TEST(test_enqueue_with_options)
{
    char   *dsn = rt_db_create_migrated(), *out, *err, sql[256], *v;
    PGconn *conn;
    long    id;
    int     rc;

    rc = ctl_run(dsn, NULL, &out, &err, "enqueue", "send_invoice", "{\"to\": \"a@b.c\", \"n\": 7}",
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

    rc = ctl_run(dsn, NULL, &out, &err, "enqueue", "plain", NULL);
    ck_assert_msg(rc == 0, "enqueue exited %d: %s", rc, err);
    free(out);
    free(err);
    rc = ctl_run(dsn, NULL, &out, &err, "--priority", "32767", "--queue", "early", "enqueue", "first", NULL);
    ck_assert_msg(rc == 0, "enqueue exited %d: %s", rc, err);
    free(out);
    free(err);
    rc = ctl_run(dsn, NULL, &out, &err, "enqueue", "--priority", "-32768", "low", NULL);
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

    rc = ctl_run(dsn, NULL, &out, &err, "enqueue", "later", "--run-at", at, NULL);
    ck_assert_msg(rc == 0, "enqueue exited %d: %s", rc, err);
    free(out);
    free(err);
    rc = ctl_run(dsn, NULL, &out, &err, "enqueue", "relative", "--run-at", "+2 hours", NULL);
    ck_assert_msg(rc == 0, "enqueue exited %d: %s", rc, err);
    free(out);
    free(err);
    rc = ctl_run(dsn, NULL, &out, &err, "enqueue", "past", "--run-at", "2001-02-03 04:05:06+00", NULL);
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

    rc = ctl_run(dsn, NULL, &out, &err, "enqueue", "k", "{\"a\": nope}", NULL);
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
        int rc = ctl_run(dsn, NULL, &out, &err, "enqueue", "k", cases[i][0], cases[i][1], NULL);

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

    rc = ctl_run(dsn, NULL, &out, &err, "enqueue", "k", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "run \"rhinoctl migrate\"") != NULL, "stderr: %s", err);
    ck_assert_str_eq(out, "");
    free(out);
    free(err);

    rc = ctl_run(dsn, "{}\n", &out, &err, "enqueue", "--bulk", "k", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "run \"rhinoctl migrate\"") != NULL, "stderr: %s", err);
    free(out);
    free(err);

    rc = ctl_run(dsn, NULL, &out, &err, "stats", NULL);
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

    rc = ctl_run(dsn, input, &out, &err, "enqueue", "--bulk", "bulk_kind", "--queue", "bq", NULL);
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

    rc = ctl_run(dsn, input, &out, &err, "enqueue", "--bulk", "esc", "--queue", "q1",
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

    rc = ctl_run(dsn, "{\"a\": 1}\n{\"a\": 2}\n{\"a\": oops}\n{\"a\": 4}\n", &out, &err,
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
    rc = ctl_run(dsn, "{}\n\n{}\nnope\n{}\n", &out, &err, "enqueue", "--bulk", "k", NULL);
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

    rc = ctl_run(dsn, "{}\n{}\n{}\n", &out, &err, "enqueue", "--bulk", "future", "--run-at", "+1 day", NULL);
    ck_assert_msg(rc == 0, "enqueue --bulk exited %d: %s", rc, err);
    ck_assert_str_eq(out, "enqueued 3 jobs\n");
    free(out);
    free(err);
    rc = ctl_run(dsn, "{}\n{}\n", &out, &err, "enqueue", "--bulk", "past", "--run-at", "2001-01-01 00:00+00", NULL);
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
    rt_exec(conn, "INSERT INTO rhino.jobs_done (id, queue, kind, payload, state, priority, attempt,"
                  "                             max_attempts, run_at, created_at)"
                  " VALUES (1000, 'mailq', 'a', '{}', 'completed', 0, 1, 25, now(), now())");

    rc = ctl_run(dsn, NULL, &out, &err, "stats", NULL);
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

    rc = ctl_run(dsn, NULL, &out, &err, "stats", "--json", NULL);
    ck_assert_msg(rc == 0, "stats --json exited %d: %s", rc, err);
    ck_assert_msg(strstr(out, "{\"queue\":\"mailq\",\"state\":\"available\",\"count\":2}\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "{\"queue\":\"default\",\"state\":\"scheduled\",\"count\":1}\n") != NULL, "%s", out);
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

    rc = ctl_run(NULL, NULL, &out, &err, "-V", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "rhinoctl " PACKAGE_VERSION "\n");
    free(out);
    free(err);
    rc = ctl_run(NULL, NULL, &out, &err, "--version", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "rhinoctl " PACKAGE_VERSION "\n");
    free(out);
    free(err);

    rc = ctl_run(NULL, NULL, &out, &err, "--help", NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(strstr(out, "Usage: rhinoctl") != NULL && strstr(out, "enqueue --bulk") != NULL, "%s", out);
    ck_assert_str_eq(err, "");
    free(out);
    free(err);
    rc = ctl_run(NULL, NULL, &out, &err, "-h", NULL);
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
        { "enqueue", "k", "--json", NULL },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out, *err;
        /* each row is NULL-padded, so passing all of it ends the list at its first NULL */
        int   rc = ctl_run(NULL, NULL, &out, &err, cases[i][0], cases[i][1], cases[i][2], cases[i][3],
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

    rc = ctl_run("postgresql://rhino:S3cretPw@127.0.0.1:1/nodb", NULL, &out, &err, "stats", NULL);
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

    rc = ctl_run(NULL, NULL, &out, &err, "-c", path, "enqueue", "from_config", NULL);
    ck_assert_msg(rc == 0, "enqueue -c exited %d: %s", rc, err);
    free(out);
    free(err);
    rc = ctl_run(NULL, NULL, &out, &err, "stats", "--config", path, NULL);
    ck_assert_msg(rc == 0, "stats --config exited %d: %s", rc, err);
    ck_assert_int_eq(stats_count(out, "default", "available"), 1);
    free(out);
    free(err);
    free(path);

    /* RHINO_DSN wins over the file */
    path = rt_write_file("rhino.ini", "[database]\ndsn = host=127.0.0.1 port=1 dbname=nowhere\n"
                                      "[handlers]\npath = /nonexistent\n");
    rc = ctl_run(dsn, NULL, &out, &err, "-c", path, "stats", NULL);
    ck_assert_msg(rc == 0, "RHINO_DSN did not override the file: exit %d: %s", rc, err);
    ck_assert_int_eq(stats_count(out, "default", "available"), 1);
    free(out);
    free(err);
    free(path);

    rc = ctl_run(NULL, NULL, &out, &err, "-c", "/nonexistent/rhino.ini", "stats", NULL);
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

static Suite *
ctl_suite(void)
{
    Suite *s = suite_create("rhinoctl");
    TCase *tc;

    tc = tcase_create("migrate");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_migrate_empty_db);
    tcase_add_test(tc, test_migrate_twice);
    tcase_add_test(tc, test_migrate_concurrent);
    tcase_add_test(tc, test_migrate_failure_rolls_back);
    tcase_add_test(tc, test_migrate_waits_for_lock);
    tcase_add_test(tc, test_migrate_api);
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
