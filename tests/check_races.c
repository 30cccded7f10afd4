/*
 * check_races.c - the statements that move a running job, against another
 * transaction that updates the same row at the same moment.
 *
 * A running job's row is not the worker's alone: rhino.cancel sets
 * cancel_requested_at, a queue limit sets counted, a rescue takes the job
 * away.  Each test starts a worker's statement (prepared, after the plan
 * settings a worker sends, in one transaction) while a second session holds
 * such a change uncommitted, waits until the server shows the statement
 * waiting for that row's lock, and only then commits the change.  The
 * statement's snapshot is so older than the change, and what it does with
 * the row's newest version is what is checked: a change that keeps the job
 * running under the same attempt must not make its outcome stale (it was,
 * and the job stayed running under a live worker, to run again later); a
 * rescue must.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rh_sql.h"
#include "rh_testlib.h"

typedef struct {
    char   *dsn;
    PGconn *conn;       /* checks and setup */
    long    worker_id;
} rc_db_t;

/* A fresh database with one live worker and jobs 1..n running its attempt 1. */
static void
rc_setup(rc_db_t *db, int n)
{
    char sql[512];

    db->dsn = rt_db_create_migrated();
    db->conn = rt_connect(db->dsn);
    rt_exec(db->conn, "INSERT INTO rhino.nodes (name, pid, lease_until) VALUES ('races', 1, now() + interval '1 hour')");
    db->worker_id = rt_query_long(db->conn,
                                  "INSERT INTO rhino.workers (node_id, slot, generation, pid, lease_until)"
                                  " SELECT id, 0, 0, 1, now() + interval '1 hour' FROM rhino.nodes RETURNING id");
    snprintf(sql, sizeof(sql),
             "INSERT INTO rhino.jobs (id, kind, state, attempt, attempted_at, worker_id)"
             " SELECT g, 'ok', 'running', 1, now(), %ld FROM generate_series(1, %d) g", db->worker_id, n);
    rt_exec(db->conn, sql);
}

static void
rc_teardown(rc_db_t *db)
{
    PQfinish(db->conn);
    free(db->dsn);
}

/*
 * Run statement id with params while racer (SQL, in its own transaction)
 * holds its change to a job's row: the change commits once the statement
 * waits for the row.  Returns the statement's first row as "col0|col1"
 * (malloc'd; an empty column for NULL); the statement's transaction commits.
 */
static char *
rc_race(rc_db_t *db, rh_stmt_id_t id, const char *const *params, const char *racer)
{
    const rh_stmt_t *st = rh_sql(id);
    PGconn          *w = rt_connect(db->dsn), *other = rt_connect(db->dsn);
    PGresult        *res;
    char            *row = NULL;
    int              waiting;

    rt_exec(other, "BEGIN");
    rt_exec(other, racer);
    rt_exec(w, "BEGIN");
    rt_exec(w, rh_sql(st->generic ? RH_STMT_PLANS_GENERIC : RH_STMT_PLANS_CUSTOM)->sql);
    res = PQprepare(w, "s", st->sql, 0, NULL);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "prepare %s: %s", st->name, PQerrorMessage(w));
    PQclear(res);
    ck_assert_int_eq(PQsendQueryPrepared(w, "s", st->nparams, params, NULL, NULL, 0), 1);
    waiting = rt_wait_lock(db->conn, w, 20);
    rt_exec(other, "COMMIT");
    ck_assert_msg(waiting, "%s never waited for the row that `%s` holds", st->name, racer);
    while ((res = PQgetResult(w)) != NULL) {
        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", st->name, PQresultErrorMessage(res));
        if (row == NULL && PQntuples(res) > 0) {
            const char *b = PQnfields(res) > 1 ? PQgetvalue(res, 0, 1) : "";
            size_t      len = strlen(PQgetvalue(res, 0, 0)) + strlen(b) + 2;

            row = malloc(len);
            snprintf(row, len, "%s|%s", PQgetvalue(res, 0, 0), b);
        }
        PQclear(res);
    }
    rt_exec(w, "COMMIT");
    PQfinish(w);
    PQfinish(other);
    return row ? row : strdup("");
}

/* The state of job id, in rhino.jobs or the history; "" when nowhere. */
static char *
rc_state(rc_db_t *db, int id)
{
    char  sql[256], *v;

    snprintf(sql, sizeof(sql), "SELECT state::text || coalesce(':' || last_error, '') FROM rhino.all_jobs WHERE id = %d",
             id);
    v = rt_query1(db->conn, sql);
    return v ? v : strdup("");
}

#define ck_assert_state(db, id, want) do { \
        char *s_ = rc_state(db, id); \
        ck_assert_msg(strcmp(s_, want) == 0, "job %d is '%s', expected '%s'", id, s_, want); \
        free(s_); \
    } while (0)

/* A completed batch's finalize, with and without the history, against a cancel and a limit's mark. */
START_TEST(test_completed_batch_survives_a_concurrent_update)
{
    static const struct {
        rh_stmt_id_t id;
        const char  *racer;
    } cases[] = {
        { RH_STMT_FINALIZE_DONE,      "SELECT rhino.cancel(2)" },
        { RH_STMT_FINALIZE_DONE_KEEP, "SELECT rhino.cancel(2)" },
        { RH_STMT_FINALIZE_DONE,      "UPDATE rhino.jobs SET counted = true WHERE id = 2" },
        { RH_STMT_FINALIZE_DONE_KEEP, "UPDATE rhino.jobs SET counted = true WHERE id = 2" },
    };
    const char *params[] = { "{1,2,3}", "{1,1,1}" };

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        rc_db_t db;
        char   *row;

        rc_setup(&db, 3);
        row = rc_race(&db, cases[c].id, params, cases[c].racer);
        /* all three matched, none stale: the updated row was found again */
        ck_assert_msg(strcmp(row, "3|") == 0, "%s against `%s`: %s", rh_sql(cases[c].id)->name, cases[c].racer, row);
        free(row);
        ck_assert_int_eq(rt_query_long(db.conn, "SELECT count(*) FROM rhino.jobs"), 0);
        if (cases[c].id == RH_STMT_FINALIZE_DONE_KEEP)
            ck_assert_int_eq(rt_query_long(db.conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'completed'"
                                                    " AND id IN (1, 2, 3)"), 3);
        rc_teardown(&db);
    }
}
END_TEST

/* A rescue that commits under the finalize still fences it out: the job stays available, its outcome stale. */
START_TEST(test_concurrent_rescue_still_fences)
{
    static const rh_stmt_id_t ids[] = { RH_STMT_FINALIZE_DONE, RH_STMT_FINALIZE_DONE_KEEP, RH_STMT_FINALIZE };
    const char *done[] = { "{1,2,3}", "{1,1,1}" };
    const char *general[] = { "{1,2,3}", "{1,1,1}", "{completed,completed,retryable}", "{0,0,0}", "{NULL,NULL,x}",
                              "true" };

    for (size_t c = 0; c < sizeof(ids) / sizeof(ids[0]); c++) {
        rc_db_t db;
        char   *row;

        rc_setup(&db, 3);
        row = rc_race(&db, ids[c], ids[c] == RH_STMT_FINALIZE ? general : done,
                      "UPDATE rhino.jobs SET state = 'available', worker_id = NULL WHERE id = 2");
        ck_assert_msg(strcmp(row, "2|{2}") == 0, "%s: %s", rh_sql(ids[c])->name, row);
        free(row);
        ck_assert_state(&db, 2, "available");
        rc_teardown(&db);
    }
}
END_TEST

/* A retry and a snooze whose cancellation commits under the finalize end cancelled, not running. */
START_TEST(test_retry_and_snooze_see_a_concurrent_cancel)
{
    static const rh_stmt_id_t ids[] = { RH_STMT_FINALIZE, RH_STMT_FINALIZE_TX };
    const char *params[] = { "{1,2,3,4}", "{1,1,1,1}", "{retryable,scheduled,completed,retryable}", "{5,5,0,5}",
                             "{boom,NULL,NULL,bang}", "true" };

    for (size_t c = 0; c < sizeof(ids) / sizeof(ids[0]); c++) {
        rc_db_t db;
        char   *row;

        rc_setup(&db, 4);
        row = rc_race(&db, ids[c], params, "SELECT rhino.cancel(1), rhino.cancel(2), rhino.cancel(3)");
        if (ids[c] == RH_STMT_FINALIZE)
            ck_assert_msg(strcmp(row, "4|") == 0, "%s: %s", rh_sql(ids[c])->name, row);
        free(row);
        ck_assert_state(&db, 1, "cancelled:boom");
        ck_assert_state(&db, 2, "cancelled:cancelled while running");
        ck_assert_state(&db, 3, "completed");
        ck_assert_state(&db, 4, "retryable:bang");      /* no cancel asked: retried as before */
        rc_teardown(&db);
    }
}
END_TEST

/* A crash report (the reaper's) for a job whose cancellation commits meanwhile: cancelled, the crash counted. */
START_TEST(test_crash_report_sees_a_concurrent_cancel)
{
    rc_db_t     db;
    char       *row;
    const char *params[] = { "{1,2}", "{1,1}", "{killed,killed}", "3", "0.05", "1" };

    rc_setup(&db, 2);
    row = rc_race(&db, RH_STMT_CRASHED, params, "SELECT rhino.cancel(1)");
    /* discarded, retried, cancelled */
    ck_assert_msg(strcmp(row, "0|1") == 0, "crashed: %s", row);
    free(row);
    ck_assert_state(&db, 1, "cancelled:cancelled while running; the worker was stopped: killed");
    ck_assert_state(&db, 2, "retryable:crash 1 of 3: killed");
    ck_assert_int_eq(rt_query_long(db.conn, "SELECT count(*) FROM rhino.job_errors WHERE kind = 'crash'"), 2);
    rc_teardown(&db);
}
END_TEST

/*
 * A job interrupted by the stop's deadline (the reaper's report) whose
 * cancellation commits meanwhile: cancelled; the other available again,
 * its attempt kept, no crash counted, no error recorded.
 */
START_TEST(test_interrupted_report_sees_a_concurrent_cancel)
{
    rc_db_t     db;
    char       *row;
    const char *params[] = { "{1,2}", "{1,1}", "{\"interrupted: stop\",\"interrupted: stop\"}" };

    rc_setup(&db, 2);
    row = rc_race(&db, RH_STMT_INTERRUPTED, params, "SELECT rhino.cancel(1)");
    /* available, cancelled */
    ck_assert_msg(strcmp(row, "1|1") == 0, "interrupted: %s", row);
    free(row);
    ck_assert_state(&db, 1, "cancelled:cancelled while running; interrupted: stop");
    ck_assert_state(&db, 2, "available:interrupted: stop");
    ck_assert_int_eq(rt_query_long(db.conn, "SELECT count(*) FROM rhino.all_jobs"
                                            " WHERE attempt = 1 AND crash_count = 0 AND errors = 0"), 2);
    ck_assert_int_eq(rt_query_long(db.conn, "SELECT count(*) FROM rhino.job_errors"), 0);
    rc_teardown(&db);
}
END_TEST

/* Claimed jobs given back unstarted: one whose cancellation was asked for is cancelled, not made available. */
START_TEST(test_release_cancels_what_was_cancelled)
{
    rc_db_t db;
    char    wid[32], *row;
    const char *mine[] = { wid };
    const char *params[] = { "{1,2}", "{1,1}" };

    /* asked before the release began */
    rc_setup(&db, 4);
    rt_exec(db.conn, "SELECT rhino.cancel(2), rhino.cancel(4)");
    row = rc_race(&db, RH_STMT_RELEASE, params, "UPDATE rhino.jobs SET counted = true WHERE id = 1");
    free(row);
    ck_assert_state(&db, 1, "available");
    ck_assert_state(&db, 2, "cancelled:cancelled before it started");
    ck_assert_int_eq(rt_query_long(db.conn, "SELECT attempt FROM rhino.jobs WHERE id = 1"), 0);
    snprintf(wid, sizeof(wid), "%ld", db.worker_id);
    /* asked while the release ran */
    row = rc_race(&db, RH_STMT_RELEASE_MINE, mine, "SELECT rhino.cancel(3)");
    free(row);
    ck_assert_state(&db, 3, "cancelled:cancelled while claimed; its worker lost its connection during attempt 1");
    ck_assert_state(&db, 4, "cancelled:cancelled while claimed; its worker lost its connection during attempt 1");
    rc_teardown(&db);
}
END_TEST

static Suite *
races_suite(void)
{
    Suite *s = suite_create("races");
    TCase *tc = tcase_create("concurrent_updates");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_completed_batch_survives_a_concurrent_update);
    tcase_add_test(tc, test_concurrent_rescue_still_fences);
    tcase_add_test(tc, test_retry_and_snooze_see_a_concurrent_cancel);
    tcase_add_test(tc, test_crash_report_sees_a_concurrent_cancel);
    tcase_add_test(tc, test_interrupted_report_sees_a_concurrent_cancel);
    tcase_add_test(tc, test_release_cancels_what_was_cancelled);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(races_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
