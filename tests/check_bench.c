/*
 * check_bench.c - a small run of every rhino-bench mode against a fresh
 * database, so that the harness cannot rot.
 *
 * Benchmarks are not tests: nothing here looks at a speed.  What is checked
 * is that each mode runs to the end (exit 0), writes the JSON records it
 * promises with the fields the compare script and the plots read, and that
 * every job it enqueued ended completed exactly once (rhino.jobs_done's
 * primary key rules out a second record; the counts rule out a missing one).
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rh_testlib.h"

typedef struct {
    char   *dsn;
    char   *json_path;
    char   *json;           /* the records, one per line */
    char   *out, *err;
    int     rc;
} bench_t;

/* Run rhino-bench MODE on a fresh migrated database with the extra arguments (NULL-terminated). */
static void
bench_run(bench_t *b, const char *mode, const char *const *extra)
{
    char *argv[40];
    int   a = 0;

    memset(b, 0, sizeof(*b));
    b->dsn = rt_db_create_migrated();
    /* an empty file in a scratch directory of the test's: rhino-bench appends to it */
    b->json_path = rt_write_file("records.jsonl", "");
    argv[a++] = (char *) rt_env("RHINO_BENCH_BIN");
    argv[a++] = (char *) mode;
    argv[a++] = "--dsn";
    argv[a++] = b->dsn;
    argv[a++] = "--rhino";
    argv[a++] = (char *) rt_env("RHINO_BIN");
    argv[a++] = "--json";
    argv[a++] = b->json_path;
    argv[a++] = "--label";
    argv[a++] = "check_bench";
    /* a rhino that does not finish fails the test with its log, well inside check's timeout */
    argv[a++] = "--timeout";
    argv[a++] = "60";
    for (int i = 0; extra[i] != NULL && a < 39; i++)
        argv[a++] = (char *) extra[i];
    argv[a] = NULL;
    b->rc = rt_run(argv, NULL, NULL, &b->out, &b->err);
    if (b->rc != 0)
        ck_abort_msg("rhino-bench %s exited %d\nstdout:\n%s\nstderr:\n%s", mode, b->rc, b->out, b->err);
    b->json = rt_read_file(b->json_path);
    ck_assert_ptr_nonnull(b->json);
}

static void
bench_free(bench_t *b)
{
    free(b->dsn);
    free(b->json_path);
    free(b->json);
    free(b->out);
    free(b->err);
}

/* The n-th line (0-based) of the records, malloc'd; NULL if there are fewer. */
static char *
record(const bench_t *b, int n)
{
    const char *p = b->json;

    for (int i = 0; i < n && p != NULL; i++) {
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    if (p == NULL || *p == '\0')
        return NULL;
    return strndup(p, strcspn(p, "\n"));
}

static int
count_records(const bench_t *b)
{
    int n = 0;

    for (const char *p = b->json; *p; p++)
        n += *p == '\n';
    return n;
}

/*
 * The record is one JSON object with the keys every record carries, its
 * measurement, and the given result keys.  Keys are looked for as "key":
 * (the writer never puts a space there).
 */
static void
expect_record(const char *rec, const char *mode, const char *measurement, const char *const *keys)
{
    char want[128];

    ck_assert_ptr_nonnull(rec);
    ck_assert_msg(rec[0] == '{' && rec[strlen(rec) - 1] == '}', "not one JSON object: %s", rec);
    snprintf(want, sizeof(want), "\"mode\":\"%s\"", mode);
    ck_assert_msg(strstr(rec, want) != NULL, "%s missing in %s", want, rec);
    snprintf(want, sizeof(want), "\"measurement\":\"%s\"", measurement);
    ck_assert_msg(strstr(rec, want) != NULL, "%s missing in %s", want, rec);
    {
        static const char *const common[] = {
            "\"tool\":\"rhino-bench\"", "\"label\":\"check_bench\"", "\"params\":{", "\"result\":{",
            "\"machine\":{", "\"hostname\":", "\"nproc\":", "\"cpu_model\":", "\"kernel\":", "\"loadavg_1m\":",
            "\"postgres\":{", "\"version\":", "\"synchronous_commit\":", "\"shared_buffers\":", "\"fsync\":",
            "\"max_wal_size\":", "\"git_commit\":", NULL
        };
        for (int i = 0; common[i] != NULL; i++)
            ck_assert_msg(strstr(rec, common[i]) != NULL, "%s missing in %s", common[i], rec);
    }
    for (int i = 0; keys[i] != NULL; i++) {
        snprintf(want, sizeof(want), "\"%s\":", keys[i]);
        ck_assert_msg(strstr(rec, want) != NULL, "%s missing in %s", want, rec);
    }
    /* a check, where the record has one, passed; an object nested as deep as this must be closed */
    ck_assert_msg(strstr(rec, "\"ok\":false") == NULL, "a check failed: %s", rec);
    {
        int depth = 0, in_str = 0;

        for (const char *p = rec; *p; p++) {
            if (in_str) {
                if (*p == '\\' && p[1] != '\0')
                    p++;
                else if (*p == '"')
                    in_str = 0;
            } else if (*p == '"') {
                in_str = 1;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                ck_assert_msg(--depth >= 0, "unbalanced: %s", rec);
            }
        }
        ck_assert_msg(depth == 0 && !in_str, "unbalanced: %s", rec);
    }
}

static long
db_long(const char *dsn, const char *sql)
{
    PGconn *conn = rt_connect(dsn);
    long    v = rt_query_long(conn, sql);

    PQfinish(conn);
    return v;
}

#define DONE_COMPLETED "SELECT count(*) FROM rhino.jobs_done WHERE queue = 'rhino-bench' AND state = 'completed'"
#define DONE_OTHER     "SELECT count(*) FROM rhino.jobs_done WHERE state <> 'completed'"
#define LIVE           "SELECT count(*) FROM rhino.jobs"
#define LIVE_CLAIMED   "SELECT count(*) FROM rhino.jobs WHERE state <> 'available'"

/* ---------------------------------------------------------------------- */

START_TEST(test_insert)
{
    static const char *const extra[] = { "insert", "-n", "2000", "--clients", "3", "--tx", "100", "--per-call", "300",
                                         "-w", "2", "-b", "100", NULL };
    static const char *const keys[] = { "jobs", "seconds", "jobs_per_s", "check", NULL };
    bench_t b;
    char   *r;

    bench_run(&b, extra[0], extra + 1);
    ck_assert_int_eq(count_records(&b), 3);
    expect_record(r = record(&b, 0), "insert", "copy", keys);
    free(r);
    /* the C API, in calls of 300 (the last one of 200): every job ran once (expect_record's check) */
    expect_record(r = record(&b, 1), "insert", "capi", keys);
    ck_assert_msg(strstr(r, "\"api\":\"rhino_enqueue_many\"") && strstr(r, "\"per_call\":300"), "%s", r);
    free(r);
    expect_record(r = record(&b, 2), "insert", "sql_enqueue", keys);
    ck_assert_msg(strstr(r, "\"clients\":3") && strstr(r, "\"tx\":100") && strstr(r, "\"pipeline\":true")
                  && strstr(r, "\"prepared\":true"), "%s", r);
    free(r);
    /* the last measurement's jobs, run by rhino afterwards: each completed once, none left */
    ck_assert_int_eq(db_long(b.dsn, DONE_COMPLETED), 2000);
    ck_assert_int_eq(db_long(b.dsn, DONE_OTHER), 0);
    ck_assert_int_eq(db_long(b.dsn, LIVE), 0);
    /* the SQL clients' payloads: n = 1..2000, each once */
    ck_assert_int_eq(db_long(b.dsn, "SELECT count(DISTINCT (payload->>'n')::int) FROM rhino.jobs_done "
                                    "WHERE (payload->>'n')::int BETWEEN 1 AND 2000"), 2000);
    bench_free(&b);
}
END_TEST

START_TEST(test_drain)
{
    static const char *const extra[] = { "drain", "-n", "3000", "-w", "2", "-b", "100", NULL };
    static const char *const keys[] = {
        "jobs", "seconds", "jobs_per_s", "jobs_per_s_from_first_claim", "cpu_us_per_job", "wal_bytes_per_job",
        "commits_per_job", "round_trips_per_job", "workers", "batch", "check", NULL
    };
    bench_t b;
    char   *r;

    bench_run(&b, extra[0], extra + 1);
    ck_assert_int_eq(count_records(&b), 1);
    expect_record(r = record(&b, 0), "drain", "drain", keys);
    ck_assert_msg(strstr(r, "\"workers\":2") && strstr(r, "\"batch\":100") && strstr(r, "\"n\":3000"), "%s", r);
    free(r);
    ck_assert_int_eq(db_long(b.dsn, DONE_COMPLETED), 3000);
    ck_assert_int_eq(db_long(b.dsn, DONE_OTHER), 0);
    ck_assert_int_eq(db_long(b.dsn, LIVE), 0);
    /* one claim each: nothing was rescued and run again */
    ck_assert_int_eq(db_long(b.dsn, "SELECT count(*) FROM rhino.jobs_done WHERE attempt <> 1"), 0);
    ck_assert_msg(strstr(b.out, "jobs/s") != NULL, "no table for people:\n%s", b.out);
    bench_free(&b);
}
END_TEST

/* The sweep bench/compare and bench/plot use: one record per (workers, batch). */
START_TEST(test_drain_sweep)
{
    static const char *const extra[] = { "drain", "-n", "500", "-w", "1,2", "-b", "50,100", NULL };
    static const char *const keys[] = { "jobs_per_s", "check", NULL };
    static const char *const want[] = {
        "\"workers\":1,\"batch\":50", "\"workers\":1,\"batch\":100",
        "\"workers\":2,\"batch\":50", "\"workers\":2,\"batch\":100"
    };
    bench_t b;

    bench_run(&b, extra[0], extra + 1);
    ck_assert_int_eq(count_records(&b), 4);
    for (int i = 0; i < 4; i++) {
        char *r = record(&b, i);

        expect_record(r, "drain", "drain", keys);
        ck_assert_msg(strstr(r, want[i]) != NULL, "record %d: %s missing in %s", i, want[i], r);
        free(r);
    }
    ck_assert_int_eq(db_long(b.dsn, DONE_COMPLETED), 500);
    ck_assert_int_eq(db_long(b.dsn, LIVE), 0);
    bench_free(&b);
}
END_TEST

START_TEST(test_trickle)
{
    static const char *const extra[] = {
        "trickle", "--rate", "100", "--seconds", "2", "--warmup", "0.5", "-w", "2", NULL
    };
    static const char *const keys[] = {
        "sent", "late", "achieved_rate", "stamped", "pickup", "enqueue_call", "after_commit", "completion", "p50_ms",
        "p90_ms", "p99_ms", "max_ms", "quantiles_ms", "check", NULL
    };
    bench_t b;
    char   *r;
    long    done;

    bench_run(&b, extra[0], extra + 1);
    ck_assert_int_eq(count_records(&b), 1);
    expect_record(r = record(&b, 0), "trickle", "trickle", keys);
    ck_assert_msg(strstr(r, "\"sent\":200,") != NULL && strstr(r, "\"stamped\":200,") != NULL, "%s", r);
    ck_assert_msg(strstr(r, "\"prepared\":true") != NULL, "%s", r);
    /* the latencies were measured, not left out: the objects are there, not null */
    ck_assert_msg(strstr(r, "\"pickup\":{") != NULL && strstr(r, "\"completion\":{") != NULL, "%s", r);
    /* ... and split at the enqueue's commit, matched job by job ("i" in the payload) */
    ck_assert_msg(strstr(r, "\"enqueue_call\":{") != NULL && strstr(r, "\"after_commit\":{") != NULL, "%s", r);
    free(r);
    done = db_long(b.dsn, DONE_COMPLETED);
    ck_assert_int_eq(done, 200);
    ck_assert_int_eq(db_long(b.dsn, LIVE), 0);
    ck_assert_int_eq(db_long(b.dsn, "SELECT count(*) FROM rhino.jobs_done WHERE kind <> 'bench.stamp'"), 0);
    bench_free(&b);
}
END_TEST

START_TEST(test_scale)
{
    static const char *const extra[] = {
        "scale", "--sizes", "1000,3000", "--first", "1000", "-w", "2", "-b", "100", NULL
    };
    static const char *const keys[] = { "queued", "first", "jobs_per_s", "check", NULL };
    static const char *const sum_keys[] = { "sizes", "jobs_per_s", "ratio_largest_to_smallest", NULL };
    bench_t b;
    char   *r;
    long    done, left;

    bench_run(&b, extra[0], extra + 1);
    ck_assert_int_eq(count_records(&b), 3);
    expect_record(r = record(&b, 0), "scale", "scale", keys);
    ck_assert_msg(strstr(r, "\"queued\":1000") != NULL, "%s", r);
    free(r);
    expect_record(r = record(&b, 1), "scale", "scale", keys);
    ck_assert_msg(strstr(r, "\"queued\":3000") != NULL, "%s", r);
    free(r);
    expect_record(r = record(&b, 2), "scale", "scale_summary", sum_keys);
    free(r);
    /* the last size: the first 1000 done, the rest handed back (or done) but none lost or left claimed */
    done = db_long(b.dsn, DONE_COMPLETED);
    left = db_long(b.dsn, LIVE);
    ck_assert_int_ge(done, 1000);
    ck_assert_int_eq(done + left, 3000);
    ck_assert_int_eq(db_long(b.dsn, LIVE_CLAIMED), 0);
    ck_assert_int_eq(db_long(b.dsn, DONE_OTHER), 0);
    bench_free(&b);
}
END_TEST

START_TEST(test_bloat)
{
    static const char *const extra[] = { "bloat", "-n", "2000", "--window", "2", "-w", "2", "-b", "100", NULL };
    static const char *const keys1[] = { "tables", "n_dead_tup", "table_bytes", "index_bytes", "jobs_per_s", "check", NULL };
    static const char *const keys2[] = {
        "window_seconds", "enqueued", "completed_in_window", "jobs_per_s", "tables_window_end", "tables_after",
        "n_dead_tup", "check", NULL
    };
    bench_t b;
    char   *r, *p;
    long    enqueued;

    bench_run(&b, extra[0], extra + 1);
    ck_assert_int_eq(count_records(&b), 2);
    expect_record(r = record(&b, 0), "bloat", "after_drain", keys1);
    free(r);
    expect_record(r = record(&b, 1), "bloat", "held_xmin", keys2);
    p = strstr(r, "\"enqueued\":");
    enqueued = strtol(p + 11, NULL, 10);
    ck_assert_int_gt(enqueued, 0);
    free(r);
    /* the first drain's jobs and every job enqueued in the window: completed once each */
    ck_assert_int_eq(db_long(b.dsn, DONE_COMPLETED), 2000 + enqueued);
    ck_assert_int_eq(db_long(b.dsn, LIVE), 0);
    ck_assert_int_eq(db_long(b.dsn, DONE_OTHER), 0);
    bench_free(&b);
}
END_TEST

/* ---- refusals: clear messages, and no measurement on a database that is not its own ---- */

/*
 * No database given: rhino-bench starts a throwaway cluster of its own,
 * measures on it and deletes it at exit.  Its directory is deleted only
 * after the server's stop succeeded, so a directory gone means a server
 * gone.  An empty RHINO_DSN is a mistake to name, not a wish for a cluster.
 */
START_TEST(test_no_database_starts_a_throwaway_cluster)
{
    char       *argv[] = { (char *) rt_env("RHINO_BENCH_BIN"), "insert", "-n", "500", "--clients", "2",
                           "--tx", "50", "--no-prepare", "--rhino", (char *) rt_env("RHINO_BIN"), "--timeout", "60",
                           NULL };
    char       *unset[] = { "RHINO_DSN", NULL };
    char       *empty[] = { "RHINO_DSN=", NULL };
    char       *out = NULL, *err = NULL, dir[256];
    const char *p;
    int         rc = rt_run(argv, unset, NULL, &out, &err);

    ck_assert_msg(rc == 0, "rhino-bench without a database exited %d\nstdout:\n%s\nstderr:\n%s", rc, out, err);
    p = strstr(err, "throwaway cluster in ");
    ck_assert_msg(p != NULL, "no word of a throwaway cluster: %s", err);
    p += strlen("throwaway cluster in ");
    snprintf(dir, sizeof(dir), "%.*s", (int) strcspn(p, " \n"), p);
    ck_assert_msg(strncmp(dir, "/tmp/rhino-bench-pg-", 20) == 0 || getenv("TMPDIR") != NULL, "%s", dir);
    ck_assert_msg(access(dir, F_OK) != 0, "the throwaway cluster %s is still there", dir);
    /* it measured: both measurements ran their jobs exactly once */
    ck_assert_msg(strstr(out, "500 completed exactly once") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "PostgreSQL 15") != NULL, "%s", out);
    /* --no-prepare: the SQL clients sent their calls unnamed */
    ck_assert_msg(strstr(out, "pipelined, unnamed") != NULL, "%s", out);
    free(out);
    free(err);

    out = err = NULL;
    rc = rt_run(argv, empty, NULL, &out, &err);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(strstr(err, "RHINO_DSN is set but empty") != NULL, "%s", err);
    free(out);
    free(err);
}
END_TEST

START_TEST(test_bad_options_are_named)
{
    static const char *const cases[][3] = {
        { "sprint", NULL, "unknown mode" },
        { "trickle", "--rate=abc", "--rate" },
        { "insert", "--workers=1,2", "only drain" },
        { "drain", "--set=worker", "--set" },
        { "drain", "--batch=5000", "--batch" },
        { "insert", "--per-call=0", "--per-call" },
        { "scale", "--sizes=1000", "--sizes" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[] = { (char *) rt_env("RHINO_BENCH_BIN"), (char *) cases[i][0], (char *) cases[i][1], NULL };
        char *env[] = { "RHINO_DSN=dbname=never_used", NULL };
        char *out = NULL, *err = NULL;
        int   rc = rt_run(argv, env, NULL, &out, &err);

        ck_assert_msg(rc == 2, "%s %s: exit %d\n%s", cases[i][0], cases[i][1], rc, err);
        ck_assert_msg(strstr(err, cases[i][2]) != NULL, "%s %s: the message does not say %s:\n%s",
                      cases[i][0], cases[i][1], cases[i][2], err);
        free(out);
        free(err);
    }
}
END_TEST

/* It empties the job tables, so a database with anybody else's jobs is refused and left alone. */
START_TEST(test_foreign_jobs_are_refused)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    char   *argv[] = { (char *) rt_env("RHINO_BENCH_BIN"), "drain", "-n", "10", "--rhino", (char *) rt_env("RHINO_BIN"), NULL };
    char   *env[2], *out = NULL, *err = NULL;
    int     rc;

    rt_exec(conn, "SELECT rhino.enqueue('send_invoice', '{}', 'mail')");
    ck_assert_int_ge(asprintf(&env[0], "RHINO_DSN=%s", dsn), 0);
    env[1] = NULL;
    rc = rt_run(argv, env, NULL, &out, &err);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "other than \"rhino-bench\"") != NULL, "%s", err);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs WHERE queue = 'mail'"), 1);
    PQfinish(conn);
    free(env[0]);
    free(out);
    free(err);
    free(dsn);
}
END_TEST

static Suite *
bench_suite(void)
{
    Suite *s = suite_create("bench");
    TCase *tc = tcase_create("modes");

    /* each test starts rhino once or a few times; the sanitizer build is slower */
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_insert);
    tcase_add_test(tc, test_drain);
    tcase_add_test(tc, test_drain_sweep);
    tcase_add_test(tc, test_trickle);
    tcase_add_test(tc, test_scale);
    tcase_add_test(tc, test_bloat);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_input");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_no_database_starts_a_throwaway_cluster);
    tcase_add_test(tc, test_bad_options_are_named);
    tcase_add_test(tc, test_foreign_jobs_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(bench_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
